# Several virtio-blk disks at once: three images of different sizes, the
# middle one read-only. blktest's disk=I reaches the I-th --disk (its
# GET_ID and capacity), writes land on that image only, the ro disk
# refuses writes, and disk=3 does not exist. A busy blktest on the third
# disk is snapshotted with all three attached; at restore a change to
# the first image is refused with one line naming it, restore --disk for
# that image alone still refuses a changed third one, even with its times
# put back (and --disk id=d-c for the third alone still refuses the
# first), and with the third vouched for too the guest carries on.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
A=$WORK/a.img
B=$WORK/b.img
C=$WORK/c.img
DISKS=(--disk "$A,id=d-a" --disk "$B,ro,id=d-b" --disk "$C,id=d-c")

# Sizes in sectors, all different, so a capacity line tells the disks apart.
truncate -s 4M "$A"
truncate -s 3M "$B"
truncate -s 5M "$C"
# b gets contents of its own, so that reads from it are not of a hole.
printf 'stasis read-only disk b\n' | dd of="$B" conv=notrunc status=none

# sums: the checksums of the three images, one line.
sums() {
	md5sum "$A" "$B" "$C" | cut -d' ' -f1 | tr '\n' ' '
}

# blk_hdr IMAGE SECTOR: blktest's header in that sector, "magic N gen seed".
blk_hdr() {
	local magic
	magic=$(dd if="$1" bs=1 skip=$(($2 * 512)) count=8 status=none)
	echo "$magic$(od -A n -t u8 -j $(($2 * 512 + 8)) -N 24 "$1" | tr -s ' \n' ' ')"
}

# blk_line OUT DISK SECTORS: blktest found disk DISK with SECTORS sectors.
blk_line() {
	grep -Eq "^blktest: capacity $3 sectors, .* disk $2, testing [0-9]+ sectors from 0, msix on$" "$1" ||
		fail "$1: capacity line for disk $2 ($3 sectors): $(grep '^blktest: capacity' "$1")"
}

# --- disk=2, the last and largest: passes, and only c.img is written.
before=$(sums)
rc=$(run_guest blktest "$WORK/c" --mem 64M "${DISKS[@]}" \
	--cmdline "disk=2 passes=2 sectors=512 seed=7 irq=wait")
expect_status "$rc" 1 "blktest disk=2: $(tail -n 2 "$WORK/c" | tr '\n' '|')"
grep -q '^blktest: id "d-c"$' "$WORK/c" || fail "disk=2 GET_ID: $(grep 'id' "$WORK/c")"
blk_line "$WORK/c" 2 10240
[[ $(grep -c '^blktest: pass [12] ok (512 sectors)$' "$WORK/c") == 2 ]] ||
	fail "disk=2 passes: $(grep pass "$WORK/c" | tr '\n' '|')"
[[ ! -s $WORK/c.err ]] || fail "stasis stderr: $(head -n 3 "$WORK/c.err")"
# Sector 3: magic, sector 3, generation 2 (the last pass), seed 7.
hdr=$(blk_hdr "$C" 3)
[[ $hdr == "stasisbk 3 2 7 " ]] || fail "sector 3 of c.img: '$hdr'"
after=$(sums)
[[ ${after%% *} == "${before%% *}" ]] || fail "disk=2 wrote a.img"
[[ $(cut -d' ' -f2 <<<"$after") == $(cut -d' ' -f2 <<<"$before") ]] || fail "disk=2 wrote b.img"

# --- disk=1, the read-only one: reads served, a write refused.
before=$(sums)
rc=$(run_guest blktest "$WORK/b" --mem 64M "${DISKS[@]}" \
	--cmdline "disk=1 readonly=1 irq=wait")
expect_status "$rc" 1 "blktest disk=1 readonly=1: $(tail -n 2 "$WORK/b" | tr '\n' '|')"
grep -q '^blktest: id "d-b"$' "$WORK/b" || fail "disk=1 GET_ID: $(grep 'id' "$WORK/b")"
blk_line "$WORK/b" 1 6144
grep -q '^blktest: read-only ok, write refused with status 1$' "$WORK/b" ||
	fail "disk=1 read-only: $(tail -n 2 "$WORK/b")"
[[ $(sums) == "$before" ]] || fail "disk=1 readonly=1 changed an image"

# --- disk=0, the first: its own capacity, its data on a.img only.
rc=$(run_guest blktest "$WORK/a" --mem 64M "${DISKS[@]}" \
	--cmdline "disk=0 passes=1 sectors=256 seed=9 irq=wait")
expect_status "$rc" 1 "blktest disk=0: $(tail -n 2 "$WORK/a" | tr '\n' '|')"
grep -q '^blktest: id "d-a"$' "$WORK/a" || fail "disk=0 GET_ID: $(grep 'id' "$WORK/a")"
blk_line "$WORK/a" 0 8192
grep -q '^blktest: pass 1 ok (256 sectors)$' "$WORK/a" || fail "disk=0: $(grep pass "$WORK/a")"
hdr=$(blk_hdr "$A" 3)
[[ $hdr == "stasisbk 3 1 9 " ]] || fail "sector 3 of a.img: '$hdr'"
after=$(sums)
[[ ${after#* } == "${before#* }" ]] || fail "disk=0 wrote b.img or c.img"

# --- disk=3: there is no fourth disk.
rc=$(run_guest blktest "$WORK/none" --mem 64M "${DISKS[@]}" --cmdline "disk=3")
expect_status "$rc" 3 "blktest disk=3 (exit code 1): $(tail -n 2 "$WORK/none" | tr '\n' '|')"
grep -q '^blktest: ERROR no usable virtio-blk disk 3$' "$WORK/none" ||
	fail "disk=3: $(tail -n 2 "$WORK/none")"

# --- A busy blktest on disk=2, snapshotted with all three attached.
start_stasis "$WORK/snap.a" run --kernel "$GUESTS/blktest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/snap.a" --mem 64M "${DISKS[@]}" \
	--cmdline "disk=2 sectors=1024 seed=5 irq=wait"
wait_for_socket "$S"
wait_for_line "$WORK/snap.a" "^blktest: pass 2 ok" 120
ctl "$S" snapshot "$WORK/disks.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "blktest run after snapshot --then exit"
blk_clean "$WORK/snap.a"
last=$(blk_last_pass "$WORK/snap.a")
# c.img's times as the snapshot recorded them, to put back later.
touch -r "$C" "$WORK/c.times"

# refused OUT NAME WHAT [restore options...]: the restore fails with one
# line that names image NAME, says WHAT, and names no other image.
refused() {
	local out=$1 name=$2 what=$3 rc=0 other
	shift 3
	timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/disks.snap" \
		--serial "file:$out" "$@" </dev/null >/dev/null 2>"$out.err" || rc=$?
	[[ $rc != 0 && $rc != 137 ]] || fail "$out: restore of a changed disk: status $rc"
	[[ $(wc -l <"$out.err") == 1 ]] || fail "$out: restore error is not one line: $(cat "$out.err")"
	grep -qF "disk $WORK/$name changed since the snapshot: $what" "$out.err" ||
		fail "$out: wanted $name and '$what': $(cat "$out.err")"
	for other in a.img b.img c.img; do
		if [[ $other != "$name" ]] && grep -qF "$other" "$out.err"; then
			fail "$out: names $other too: $(cat "$out.err")"
		fi
	done
	[[ ! -s $out ]] || fail "$out: the refused VM ran: $(head -n 2 "$out")"
}

# One byte of a.img changed, in its hashed first MiB: refused, by name.
printf 'X' | dd of="$A" bs=1 seek=$((100 * 512)) conv=notrunc status=none
refused "$WORK/r.1" a.img "its first MiB differs"
# --disk for a.img alone (the first --disk replaces the first disk) does
# not vouch for the others: c.img with another modification time is
# still refused.
touch -d '2001-02-03 04:05:06' "$C"
refused "$WORK/r.2" c.img "modified at" --disk "$A,id=d-a"
# By id, c.img alone is vouched for (though given first): a.img is still
# checked and refused. Two --disk for one disk are an error.
refused "$WORK/r.3" a.img "its first MiB differs" --disk "$C,id=d-c"
rc=0
"$STASIS" restore "$WORK/disks.snap" --disk "$C,id=d-c" --disk "$C,id=d-c" \
	</dev/null >/dev/null 2>"$WORK/r.4.err" || rc=$?
[[ $rc == 2 || $rc == 1 ]] && grep -q "is replaced twice" "$WORK/r.4.err" ||
	fail "two --disk for d-c: status $rc: $(cat "$WORK/r.4.err")"
# Its times put back: still refused, the kernel's ctime moved.
touch -r "$WORK/c.times" "$C"
refused "$WORK/r.5" c.img "its status changed" --disk "$A,id=d-a"

# With c.img's contents as they were, --disk for a.img and for c.img
# lets the guest carry on: the pass in progress at the snapshot ends
# first, then more, no CORRUPT.
want=$((last + 2))
rm -f "$S"
start_stasis "$WORK/snap.b" restore "$WORK/disks.snap" --api-socket "$S" \
	--serial "file:$WORK/snap.b" --disk "$A,id=d-a" --disk "$C,id=d-c"
wait_for_socket "$S"
wait_for_line "$WORK/snap.b" "^blktest: pass $want ok" 120
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "restored blktest"
blk_clean "$WORK/snap.b" restored
blk_passes_continue "$WORK/snap.a" "$WORK/snap.b"
