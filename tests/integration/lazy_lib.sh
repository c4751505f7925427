# Helpers for the lazy-restore tests (kvm/snap_lazy*.sh), sourced after
# lib.sh: S is the API socket. Chunk tables read from snapshot files, and
# memtest's output.

# A working-set recording (--record-working-set) holds the background
# fill back until it ends: restores given these options keep fetching by
# faults for as long as a test needs, on any host speed.
HOLD=(--record-working-set=600000)

# chunk_hashes FILE: one line per memory chunk of FILE, its flags and
# content hash, from the chunk tables.
chunk_hashes() {
	python3 - "$1" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
off = 128
while off + 32 <= len(b):
    t, v, f, n = struct.unpack_from('<IHHQ', b, off)
    if t == 8 and v == 2:
        d = off + 32
        nch = struct.unpack_from('<Q', b, d + 32)[0]
        for i in range(nch):
            o, ln, codec, fl, _, mask, h = struct.unpack_from('<QIBBHQQ', b, d + 64 + i * 32)
            print(fl & 1, '%016x' % h)
    off += 32 + ((n + 7) & ~7)
PY
}
# data_area FILE: file offset of the first MEMORY record's chunk data.
data_area() {
	python3 - "$1" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
off = 128
while off + 32 <= len(b):
    t, v, f, n = struct.unpack_from('<IHHQ', b, off)
    if t == 8 and v == 2:
        d = off + 32
        ps = struct.unpack_from('<I', b, d + 16)[0]
        nch = struct.unpack_from('<Q', b, d + 32)[0]
        print((d + 64 + nch * 32 + ps - 1) & ~(ps - 1))
        break
    off += 32 + ((n + 7) & ~7)
PY
}
last_pass() {
	complete_text <"$1" | sed -n 's/^memtest: pass \([0-9]*\) ok.*/\1/p' | tail -n 1
}
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
	chunk_hashes "$1" >"$WORK/$2.want"
	chunk_hashes "$WORK/$2.snap" >"$WORK/$2.got"
	[[ -s $WORK/$2.want ]] || fail "$2: no chunk table in $1"
	cmp -s "$WORK/$2.want" "$WORK/$2.got" || fail "$2: memory differs from $1 in $(diff "$WORK/$2.want" "$WORK/$2.got" | grep -c '^>') chunks"
}

