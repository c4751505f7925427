# Helpers for the lazy-restore tests (kvm/snap_lazy*.sh), sourced after
# lib.sh: S is the API socket. Chunk tables read from snapshot files, a
# memtest snapshot, and memtest's output.

# A working-set recording (--record-working-set) holds the background
# fill back until it ends: restores given these options keep fetching by
# faults for as long as a test needs, on any host speed.
HOLD=(--record-working-set=600000)

# chunk_table MODE FILE: reads the chunk tables of FILE's MEMORY records.
#   hashes     every chunk of every record: its flags and content hash
#   data       the file offset of the first record's chunk data
#   last-full  the first record's last chunk with all its blocks stored:
#              its index, guest address and file offset
chunk_table() {
	python3 - "$1" "$2" <<'PY'
import struct, sys
mode, path = sys.argv[1:3]
b = open(path, 'rb').read()
def memory_records():
    off = 128
    while off + 32 <= len(b):
        t, v, f, n = struct.unpack_from('<IHHQ', b, off)
        if t == 8 and v == 2:
            yield off + 32
        off += 32 + ((n + 7) & ~7)
for d in memory_records():
    gpa, size, ps, cs, bs = struct.unpack_from('<QQIII', b, d)
    nch = struct.unpack_from('<Q', b, d + 32)[0]
    data = (d + 64 + nch * 32 + ps - 1) & ~(ps - 1)
    if mode == 'data':
        print(data)
        break
    best = None
    for i in range(nch):
        o, ln, codec, fl, _, mask, h = struct.unpack_from('<QIBBHQQ', b, d + 64 + i * 32)
        if mode == 'hashes':
            print(fl & 1, '%016x' % h)
        elif mask == (1 << (cs // bs)) - 1:
            best = (i, gpa + i * cs, data + o)
    if mode == 'last-full':
        if best:
            print(*best)
        break
PY
}
# memtest_snapshot OUT SNAP [run options...]: memtest checking 16 MiB of
# 64, its serial output in OUT, saved to SNAP (--then exit) once OUT holds
# a whole pass line for last_pass (the start of pass 2's line ends pass
# 1's).
memtest_snapshot() {
	local out=$1 snap=$2
	shift 2
	rm -f "$S"
	start_stasis "$out" run --kernel "$GUESTS/memtest.elf" --debug-exit \
		--api-socket "$S" --serial "file:$out" --mem 64M --cmdline "mib=16" "$@"
	wait_for_socket "$S"
	wait_for_line "$out" "^memtest: pass 2 " 120
	ctl "$S" snapshot "$snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "memtest run saved to $snap"
	intact "$out"
}
# last_pass FILE: the number of the last whole memtest pass line in FILE.
last_pass() {
	complete_text <"$1" | sed -n 's/^memtest: pass \([0-9]*\) ok.*/\1/p' | tail -n 1
}
# intact FILE: memtest's output FILE shows no wrong word.
intact() {
	! grep -q MISMATCH "$1" || fail "$1: memory differs: $(grep MISMATCH "$1" | head -n 1)"
}
# same_memory SNAP OUT: SNAP restored paused with nothing filled in the
# background, then saved again at once (the save reads every chunk
# through the pager): the new file's memory is SNAP's, chunk for chunk.
same_memory() {
	rm -f "$S"
	start_stasis "$WORK/$2" restore "$1" --paused "${HOLD[@]}" \
		--api-socket "$S" --serial none
	wait_for_socket "$S"
	ctl "$S" snapshot "$WORK/$2.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "$2: paused restore saved again"
	chunk_table hashes "$1" >"$WORK/$2.want"
	chunk_table hashes "$WORK/$2.snap" >"$WORK/$2.got"
	[[ -s $WORK/$2.want ]] || fail "$2: no chunk table in $1"
	cmp -s "$WORK/$2.want" "$WORK/$2.got" || fail "$2: memory differs from $1 in $(diff "$WORK/$2.want" "$WORK/$2.got" | grep -c '^>') chunks"
}

