# The boot paths deliver exactly what stasis built: command line, memory
# map, initrd (checked by content) and RSDP, through PVH and through the
# Linux 64-bit boot protocol of a bzImage.
. "$(dirname "$0")/../lib.sh"
head -c 10000 /dev/urandom >"$WORK/initrd"
# FNV-1a 32 of the initrd, as the guest computes it.
h=2166136261
for b in $(od -An -v -tu1 "$WORK/initrd"); do
	h=$((((h ^ b) * 16777619) & 0xffffffff))
done
fnv=$(printf '0x%08x' "$h")
expected_e820="bootinfo: e820 0x0 0x9fc00 1
bootinfo: e820 0x9fc00 0x100000 2
bootinfo: e820 0x100000 0x8000000 1
bootinfo: e820 0xfeffc000 0xff000000 2"
for image in bootinfo.elf bootinfo.bzimage; do
	out=$WORK/$image.out
	rc=0
	timeout -s KILL "$(scaled 60)" "$STASIS" run --kernel "$GUESTS/$image" \
		--debug-exit --mem 128M --initrd "$WORK/initrd" \
		--cmdline "root=/dev/vda quiet x=\"a b\"" --serial "file:$out" \
		</dev/null || rc=$?
	expect_status "$rc" 1 "$image"
	grep -qx 'bootinfo: cmdline=root=/dev/vda quiet x="a b"' "$out" || fail "$image: cmdline: $(grep cmdline "$out")"
	[[ $(grep 'bootinfo: e820' "$out") == "$expected_e820" ]] || fail "$image: e820: $(grep e820 "$out")"
	grep -q "bootinfo: initrd 0x[0-9a-f]* 0x2710$" "$out" || fail "$image: initrd size: $(grep 'initrd ' "$out")"
	grep -qx "bootinfo: initrd-fnv $fnv" "$out" || fail "$image: initrd content: $(grep fnv "$out") want $fnv"
	grep -qx "bootinfo: rsdp 0xe0000" "$out" || fail "$image: rsdp: $(grep rsdp "$out")"
done
grep -q "protocol=pvh" "$WORK/bootinfo.elf.out" || fail "PVH path not taken"
grep -q "protocol=linux64" "$WORK/bootinfo.bzimage.out" || fail "64-bit protocol not taken"

# More than 3 GiB: RAM continues above the 4 GiB hole.
rc=0
timeout -s KILL "$(scaled 60)" "$STASIS" run --kernel "$GUESTS/bootinfo.elf" \
	--debug-exit --mem 4G --serial "file:$WORK/big" </dev/null || rc=$?
expect_status "$rc" 1 "4G bootinfo"
grep -qx "bootinfo: e820 0x100000 0xc0000000 1" "$WORK/big" || fail "4G low RAM: $(grep e820 "$WORK/big")"
grep -qx "bootinfo: e820 0x100000000 0x140000000 1" "$WORK/big" || fail "4G high RAM: $(grep e820 "$WORK/big")"
