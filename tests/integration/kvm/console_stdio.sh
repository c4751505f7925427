# Guest output to stdout never holds up a pause: with --console stdio and
# --serial stdio written into a pipe whose reader has stopped (a stopped
# pager, a terminal on XOFF), pause and snapshot still complete. The
# virtio-console line half written when the pipe filled is finished by the
# restored VM: the original's output followed by the restored one's is
# every line once, in order.
. "$(dirname "$0")/../lib.sh"

# A reader that takes nothing until asked: holds the FIFO open with a
# one-page buffer, writes WORK/full once the buffer holds FULL bytes and
# drains into OUT (until every writer is gone; unbuffered, so that OUT
# shows at once what came) once WORK/go exists.
cat >"$WORK/reader.py" <<'PY'
import fcntl, os, struct, sys, termios, time
fifo, out, work, full = sys.argv[1:5]
fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
fcntl.fcntl(fd, 1031, 4096)  # F_SETPIPE_SZ: one page
open(work + "/ready", "w").close()
while not os.path.exists(work + "/go"):
    n = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
    if n >= int(full) and not os.path.exists(work + "/full"):
        open(work + "/full", "w").close()
    time.sleep(0.01)
os.set_blocking(fd, True)
with open(out, "wb", buffering=0) as f:
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        f.write(b)
PY

# start_reader NAME FULL: a stopped reader on WORK/NAME.fifo draining into
# WORK/NAME.out when WORK/NAME/go appears, WORK/NAME/full once FULL bytes
# wait in the pipe; sets READER_PID.
start_reader() {
	local name=$1
	mkdir -p "$WORK/$name"
	mkfifo "$WORK/$name.fifo"
	python3 "$WORK/reader.py" "$WORK/$name.fifo" "$WORK/$name.out" "$WORK/$name" "$2" \
		2>"$WORK/$name.reader.err" &
	READER_PID=$!
	BG_PIDS+=("$READER_PID")
	wait_for_file "$WORK/$name/ready" 30
}

wait_for_file() {
	wait_until "$2" test -e "$1" || fail "$1 did not appear within $(scaled "$2") s"
}

# last_wrote FILE: the number of consoletest's last "wrote line N" on the
# serial port (0 before the first).
last_wrote() {
	local n
	n=$(sed -n 's/^consoletest: wrote line \([0-9][0-9]*\)$/\1/p' "$1" | tail -n 1)
	echo "${n:-0}"
}

wrote_at_least() {
	(($(last_wrote "$1") >= $2))
}

# size_above FILE BYTES: FILE is larger than BYTES.
size_above() {
	local n
	n=$(stat -c %s "$1" 2>/dev/null) || return 1
	((n > $2))
}

# ctl_within SECONDS ARGS...: stasis ctl ARGS must answer within SECONDS
# (scaled): a worker or vCPU stuck writing would hold it forever.
ctl_within() {
	local secs rc=0
	secs=$(scaled "$1")
	shift
	timeout -s KILL "$secs" "$STASIS" ctl "$@" >/dev/null || rc=$?
	((rc == 0)) || fail "stasis ctl $* did not succeed within $secs s with stdout full (status $rc)"
}

# --- virtio-console on stdout ------------------------------------------
# Lines 1-9 of "consoletest: line N\n" take 20 bytes, 10-99 21, 100-999 22:
# lines 1 to 191 fill 4094 bytes of the one-page pipe, and a line does not
# go into a pipe that has no room for all of it. The guest has 16 transmit
# buffers, so it writes up to line 191 + 16 = 207 before it must wait.
start_reader con 4000
S=$WORK/con.sock
"$STASIS" run --kernel "$GUESTS/consoletest.elf" --debug-exit --api-socket "$S" \
	--serial "file:$WORK/con.serial" --console stdio --cmdline "interval_ms=1" \
	</dev/null >"$WORK/con.fifo" 2>"$WORK/con.err" &
VM_PID=$!
BG_PIDS+=("$VM_PID")
wait_for_socket "$S"
wait_for_file "$WORK/con/full" 120
# Pause only once the guest has written more than the pipe can hold
# (lines 1 to 195 are 4182 bytes): then some of its output is surely
# waiting in stasis, not merely in the pipe.
wait_until 120 wrote_at_least "$WORK/con.serial" 195 ||
	fail "consoletest stopped at line $(last_wrote "$WORK/con.serial") with the pipe full; it should get to 207"
ctl_within 30 "$S" pause
ctl_within 60 "$S" snapshot "$WORK/con.snap" --then exit
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "stasis after snapshot --then exit: $(head -n 3 "$WORK/con.err")"
touch "$WORK/con/go"
wait_exit "$READER_PID" 30
[[ -s $WORK/con.out ]] || fail "nothing reached the pipe"

# Restored with stdout a file: it finishes the half-written line first.
start_stasis "$WORK/con2" restore "$WORK/con.snap" --api-socket "$S" \
	--serial "file:$WORK/con2.serial"
wait_for_socket "$S"
wait_for_count "$WORK/con2.stdout" '^consoletest: line' 20 60
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "restored consoletest shutdown: $(head -n 3 "$WORK/con2.err")"
cat "$WORK/con.out" "$WORK/con2.stdout" >"$WORK/con.all"
python3 - "$WORK/con.all" "$(wc -c <"$WORK/con.out")" <<'PY' || fail "console output across the snapshot is not every line once"
import re, sys
data = open(sys.argv[1], "rb").read()
cut = int(sys.argv[2])
lines = data.split(b"\n")
if lines[-1] == b"":
    lines.pop()
else:
    lines.pop()  # the restored VM was shut down mid-line
nums = []
for l in lines:
    m = re.fullmatch(rb"consoletest: line ([0-9]+)", l)
    if not m:
        sys.exit("not a consoletest line: %r (at the cut: %r)" % (l, data[cut - 40:cut + 40]))
    nums.append(int(m.group(1)))
if nums != list(range(1, len(nums) + 1)):
    bad = next(i for i, n in enumerate(nums) if n != i + 1)
    sys.exit("line %d is number %d" % (bad + 1, nums[bad]))
after = data[:cut].count(b"\n")
if len(nums) <= after + 10:
    sys.exit("the restored VM wrote only %d lines" % (len(nums) - after))
print("%d lines, %d before the snapshot" % (len(nums), after))
PY
note "console: $(wc -l <"$WORK/con.all") lines across the snapshot, none lost or repeated"

# --- serial on stdout ---------------------------------------------------
# The UART runs on the vCPU thread: a full pipe must not hold it in write.
# It writes byte by byte, so the pipe fills to its last byte, and the next
# byte finds it full.
start_reader ser 4096
S=$WORK/ser.sock
"$STASIS" run --kernel "$GUESTS/counter.elf" --debug-exit --api-socket "$S" \
	--serial stdio </dev/null >"$WORK/ser.fifo" 2>"$WORK/ser.err" &
VM_PID=$!
BG_PIDS+=("$VM_PID")
wait_for_socket "$S"
wait_for_file "$WORK/ser/full" 120
ctl_within 30 "$S" pause
ctl_within 30 "$S" resume
touch "$WORK/ser/go"
# Reading again, the guest's output flows again: more than the page the
# pipe held comes through.
wait_until 60 size_above "$WORK/ser.out" $((4096 + 200)) ||
	fail "no serial output after the reader came back: $(stat -c %s "$WORK/ser.out") bytes"
ctl_within 30 "$S" shutdown
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "counter shutdown with a stalled serial reader: $(head -n 3 "$WORK/ser.err")"
wait_exit "$READER_PID" 30
# The pipe held one page when the reader came back; more came after.
(($(wc -c <"$WORK/ser.out") > 4096 + 200)) ||
	fail "no serial output after the reader came back: $(wc -c <"$WORK/ser.out") bytes"
grep -Eq '^counter: [0-9]+$' "$WORK/ser.out" || fail "no counter lines: $(head -c 200 "$WORK/ser.out")"
