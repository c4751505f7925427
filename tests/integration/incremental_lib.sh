# Shared by the incremental snapshot tests (snap_incr_*.sh): what a full
# snapshot says guest memory holds, chunk by chunk, to compare two files'
# memory without restoring either.

# mem_digest FILE: one line per chunk of each MEMORY record of a full
# snapshot: "zero", or the XXH3-64 the table records for the chunk's whole
# uncompressed content (so files compressed or not compare equal). Fails
# on a chunk held by a parent: only full files say what memory is.
mem_digest() {
	python3 - "$1" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
off, regions = 128, 0
while off + 32 <= len(b):
    t, v, f, n = struct.unpack_from('<IHHQ', b, off)
    if t == 0xffff:
        break
    if t == 8:
        if v != 2:
            sys.exit('%s: MEMORY record version %d' % (sys.argv[1], v))
        d = off + 32
        gpa, size = struct.unpack_from('<QQ', b, d)
        nch = struct.unpack_from('<Q', b, d + 32)[0]
        for i in range(nch):
            o, ln, codec, fl, _, mask, h = struct.unpack_from('<QIBBHQQ', b, d + 64 + i * 32)
            if fl & 2:
                sys.exit('%s: chunk %d held by a parent' % (sys.argv[1], i))
            print('%x %d %s' % (gpa, i, 'zero' if fl & 1 else '%016x' % h))
        regions += 1
    off += 32 + ((n + 7) & ~7)
if not regions:
    sys.exit('%s: no MEMORY record' % sys.argv[1])
PY
}

# same_memory A B WHAT: the two full snapshots hold the same guest memory.
same_memory() {
	local a b
	a=$(mem_digest "$1") || fail "$3: cannot read $1"
	b=$(mem_digest "$2") || fail "$3: cannot read $2"
	[[ $a == "$b" ]] ||
		fail "$3: memory differs in $(diff <(echo "$a") <(echo "$b") | grep -c '^<') chunks, e.g. $(diff <(echo "$a") <(echo "$b") | sed -n 2p)"
}

# memtest_pass FILE: the number of memtest's last complete pass in FILE.
memtest_pass() {
	complete_text <"$1" | sed -n 's/^memtest: pass \([0-9]*\) ok.*/\1/p' | tail -n 1
}

# restore_and_save SNAP MODE OUT LOG: restores SNAP paused with --memory
# MODE and saves it at once, full, to OUT: what the restore put in memory.
restore_and_save() {
	local sock=$WORK/rs.sock
	rm -f "$sock"
	start_stasis "$4" restore "$1" --paused --memory "$2" \
		--api-socket "$sock" --serial "file:$4"
	wait_for_socket "$sock"
	ctl "$sock" snapshot "$3" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "restore of $1 (--memory $2)"
}
