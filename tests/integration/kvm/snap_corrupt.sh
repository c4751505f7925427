# Damaged snapshot files: truncated, bit-flipped, wrong magic, an oversized
# length, records out of order. verify says no (status 1), restore refuses
# with one clean line (status 2): never a crash, a hang or a huge
# allocation.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --mem 64M --cmdline "mib=4"
wait_for_socket "$S"
wait_for_line "$WORK/a" "memtest: pass 1 ok" 60
ctl "$S" snapshot "$WORK/good.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
G=$WORK/good.snap
"$STASIS" verify "$G" >/dev/null || fail "the good snapshot does not verify"
size=$(stat -c %s "$G")

# Record layout from inspect: payload offset and length of each record.
"$STASIS" inspect --json "$G" >"$WORK/layout.json"
offsets=($(sed -n 's/.*"offset": *\([0-9]*\).*/\1/p' "$WORK/layout.json"))
sizes=($(sed -n 's/.*"size": *\([0-9]*\).*/\1/p' "$WORK/layout.json"))
types=($(sed -n 's/.*"type": *"\([A-Z]*\)".*/\1/p' "$WORK/layout.json"))
[[ ${#offsets[@]} -ge 8 && ${#offsets[@]} == "${#types[@]}" ]] || fail "inspect --json layout: $(head -c 300 "$WORK/layout.json")"
idx() {
	local i
	for i in "${!types[@]}"; do
		[[ ${types[$i]} == "$1" ]] && { echo "$i"; return; }
	done
	fail "no $1 record"
}

# bad NAME [verify]: verify and restore must both refuse $WORK/NAME
# cleanly; with "verify", only verify is run (restores cost a VM each, so
# they are tried on a representative subset).
bad() {
	local f=$WORK/$1 rc=0 err
	err=$(timeout -s KILL "$(scaled 30)" "$STASIS" verify "$f" 2>&1 >/dev/null) || rc=$?
	[[ $rc == 1 ]] || fail "$1: verify status $rc ($err)"
	[[ ${2:-} == verify ]] && return 0
	rc=0
	err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$f" --serial none 2>&1 >/dev/null </dev/null) || rc=$?
	[[ $rc == 2 ]] || fail "$1: restore status $rc, expected 2 ($err)"
	[[ $(printf '%s\n' "$err" | grep -c .) == 1 ]] || fail "$1: restore said: $err"
	[[ $err == *"stasis: error: "* ]] || fail "$1: restore said: $err"
}

# Truncations, from nothing to one byte short.
for len in 0 7 64 127 128 140 $((offsets[1] + 3)) $((size / 2)) $((size - 32)) $((size - 1)); do
	head -c "$len" "$G" >"$WORK/trunc-$len"
	case $len in
	0 | 140 | $((size - 1))) bad "trunc-$len" ;;
	*) bad "trunc-$len" verify ;;
	esac
done

# One flipped byte in the header, each record's header and each payload.
cp "$G" "$WORK/magic"
flip_byte "$WORK/magic" 0
bad magic
cp "$G" "$WORK/hdr"
flip_byte "$WORK/hdr" 40
bad hdr
for i in "${!types[@]}"; do
	mode=verify
	case ${types[$i]} in VCPU | MEMORY) mode= ;; esac
	cp "$G" "$WORK/rechdr-$i"
	flip_byte "$WORK/rechdr-$i" $((offsets[$i] - 28))
	bad "rechdr-$i" $mode
	if [[ ${sizes[$i]} -gt 0 ]]; then
		cp "$G" "$WORK/payload-$i"
		flip_byte "$WORK/payload-$i" $((offsets[$i] + sizes[$i] - 1))
		bad "payload-$i" $mode
	fi
done

# An oversized length (2^62) in the VCPU record's header.
v=$(idx VCPU)
cp "$G" "$WORK/huge"
printf '\x00\x00\x00\x00\x00\x00\x00\x40' | dd of="$WORK/huge" bs=1 seek=$((offsets[v] - 32 + 8)) conv=notrunc status=none
bad huge

# Records out of order: CLOCK moved behind the first VCPU record.
c=$(idx CLOCK)
rec_start() { echo $((offsets[$1] - 32)); }
rec_end() { echo $((offsets[$1] + (sizes[$1] + 7) / 8 * 8)); }
# part START END: bytes [START, END) of the good file.
part() {
	dd if="$G" iflag=skip_bytes,count_bytes skip="$1" count=$(($2 - $1)) bs=64k status=none
}
{
	part 0 "$(rec_start "$c")"
	part "$(rec_start "$v")" "$(rec_end "$v")"
	part "$(rec_start "$c")" "$(rec_end "$c")"
	part "$(rec_end "$v")" "$size"
} >"$WORK/reordered"
[[ $(stat -c %s "$WORK/reordered") == "$size" ]] || fail "reordering changed the size"
bad reordered

# Garbage after END.
cp "$G" "$WORK/trailing"
printf 'x' >>"$WORK/trailing"
bad trailing

# The good file is still good, and restores.
"$STASIS" verify "$G" >/dev/null || fail "good snapshot damaged by the test"
