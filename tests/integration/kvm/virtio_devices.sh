# Each virtio device works under stasis on KVM: virtio-blk (passes on a
# raw image with MSI-X and with INTx, GET_ID shows id=, the data reaches
# the image, a ,ro disk refuses writes), virtio-rng, and virtio-console
# to a file and over a UNIX socket that echoes a line back.
. "$(dirname "$0")/../lib.sh"

# blk_done_irqs FILE: the interrupt count of blktest's "done" line.
blk_done_irqs() {
	sed -n 's/^blktest: done, .* \([0-9][0-9]*\) irqs$/\1/p' "$1"
}

# virtio-blk with MSI-X: two passes over 512 sectors, woken by interrupts.
truncate -s 4M "$WORK/disk.img"
rc=$(run_guest blktest "$WORK/blk" --mem 64M --disk "$WORK/disk.img,id=stasis-kt-disk0" \
	--cmdline "passes=2 sectors=512 seed=7 irq=wait")
expect_status "$rc" 1 "blktest (MSI-X): $(tail -n 2 "$WORK/blk" | tr '\n' '|')"
grep -q '^blktest: id "stasis-kt-disk0"$' "$WORK/blk" || fail "GET_ID: $(grep 'id' "$WORK/blk")"
grep -q 'msix on$' "$WORK/blk" || fail "MSI-X not in use: $(grep capacity "$WORK/blk")"
[[ $(grep -c '^blktest: pass [12] ok (512 sectors)$' "$WORK/blk") == 2 ]] ||
	fail "blktest passes: $(grep pass "$WORK/blk" | tr '\n' '|')"
irqs=$(blk_done_irqs "$WORK/blk")
[[ -n $irqs && $irqs -gt 0 ]] || fail "no MSI-X interrupts counted: $(tail -n 1 "$WORK/blk")"
[[ ! -s $WORK/blk.err ]] || fail "stasis stderr: $(head -n 3 "$WORK/blk.err")"
# The writes reached the image: sector 3 holds blktest's header, magic
# "stasisbk", sector number 3, generation 2 (the last pass), seed 7.
magic=$(dd if="$WORK/disk.img" bs=1 skip=$((3 * 512)) count=8 status=none)
[[ $magic == stasisbk ]] || fail "sector 3 of the image has no blktest magic: '$magic'"
hdr=$(od -A n -t u8 -j $((3 * 512 + 8)) -N 24 "$WORK/disk.img" | tr -s ' \n' ' ')
[[ $hdr == " 3 2 7 " ]] || fail "sector 3 header on the image: '$hdr'"

# INTx (irq=intx): MSI-X left off, the line through the IOAPIC.
rc=$(run_guest blktest "$WORK/intx" --mem 64M --disk "$WORK/disk.img" \
	--cmdline "passes=1 sectors=256 seed=8 irq=intx")
expect_status "$rc" 1 "blktest (INTx): $(tail -n 2 "$WORK/intx" | tr '\n' '|')"
grep -q 'msix off$' "$WORK/intx" || fail "MSI-X on with irq=intx"
# Without id= the id is the device's name.
grep -q '^blktest: id "blk0"$' "$WORK/intx" || fail "default id: $(grep 'id' "$WORK/intx")"
irqs=$(blk_done_irqs "$WORK/intx")
[[ -n $irqs && $irqs -gt 0 ]] || fail "no INTx interrupts counted: $(tail -n 1 "$WORK/intx")"

# A read-only disk: RO offered, reads served, a write refused with IOERR,
# and the image is not changed.
sum=$(md5sum <"$WORK/disk.img")
rc=$(run_guest blktest "$WORK/ro" --mem 64M --disk "$WORK/disk.img,ro" \
	--cmdline "readonly=1 irq=wait")
expect_status "$rc" 1 "blktest readonly=1: $(tail -n 2 "$WORK/ro" | tr '\n' '|')"
grep -q '^blktest: read-only ok, write refused with status 1$' "$WORK/ro" ||
	fail "read-only disk: $(tail -n 2 "$WORK/ro")"
[[ $(md5sum <"$WORK/disk.img") == "$sum" ]] || fail "a read-only disk was written"

# virtio-rng, with MSI-X and with INTx.
rc=$(run_guest rngtest "$WORK/rng" --rng --cmdline "rounds=2 irq=wait")
expect_status "$rc" 1 "rngtest: $(tail -n 2 "$WORK/rng" | tr '\n' '|')"
[[ $(grep -c '^rngtest: ok 4096 bytes' "$WORK/rng") == 2 ]] || fail "rngtest rounds: $(cat "$WORK/rng")"
grep -q 'msix on' "$WORK/rng" || fail "rngtest without MSI-X"
rc=$(run_guest rngtest "$WORK/rngx" --rng --cmdline "irq=intx")
expect_status "$rc" 1 "rngtest (INTx): $(tail -n 2 "$WORK/rngx" | tr '\n' '|')"
grep -q 'msix off' "$WORK/rngx" || fail "rngtest irq=intx used MSI-X"
grep -Eq '^rngtest: ok 4096 bytes .*, [1-9][0-9]* irqs\)$' "$WORK/rngx" ||
	fail "rngtest INTx: $(grep ok "$WORK/rngx")"

# virtio-console to a file: the guest's lines appear there, in order.
S=$WORK/api.sock
start_stasis "$WORK/conf" run --kernel "$GUESTS/consoletest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/conf" --console "file:$WORK/con.out" \
	--cmdline "lines=3 interval_ms=50"
wait_for_socket "$S"
wait_for_line "$WORK/con.out" "^consoletest: line 3$" 60
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "consoletest (file) shutdown"
[[ $(cat "$WORK/con.out") == $'consoletest: line 1\nconsoletest: line 2\nconsoletest: line 3' ]] ||
	fail "console file: $(head -c 300 "$WORK/con.out")"

# virtio-console over a UNIX socket: a client reads a line, sends one and
# wants it echoed, then sends quit, which ends the guest with code 0.
start_stasis "$WORK/cons" run --kernel "$GUESTS/consoletest.elf" --debug-exit \
	--serial "file:$WORK/cons" --console "socket:$WORK/con.sock" \
	--cmdline "interval_ms=100"
timeout -s KILL "$(scaled 60)" python3 - "$WORK/con.sock" "$(scaled 60)" >"$WORK/client" 2>&1 <<'PY' ||
import re, socket, sys, time
path = sys.argv[1]
for _ in range(int(sys.argv[2]) * 10):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        break
    except OSError:
        s.close()
        time.sleep(0.1)
else:
    sys.exit("cannot connect to " + path)
got = b""
def wait_for(want):
    global got
    while not re.search(want, got):
        b = s.recv(4096)
        if not b:
            sys.exit("console closed; got %r" % got[-200:])
        got += b
# Output written before we connected was dropped: any line will do.
wait_for(rb"consoletest: line [0-9]+\n")
s.sendall(b"hello from the host\n")
wait_for(rb"hello from the host\n")
s.sendall(b"quit\n")
print("client: echoed")
PY
	fail "console client: $(cat "$WORK/client")"
wait_exit "$VM_PID" 60
expect_status "$RC" 1 "consoletest (socket) after quit: $(tail -n 2 "$WORK/cons" | tr '\n' '|')"
grep -q '^consoletest: got "hello from the host"$' "$WORK/cons" || fail "guest did not get the line"
grep -q '^consoletest: got "quit"$' "$WORK/cons" || fail "guest did not get quit"
