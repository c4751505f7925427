# Every way a migration can fail before the switch leaves the VM running
# at the source, unchanged, with one line saying why; the destination
# never runs it. And after the switch, a lost link leaves the source
# paused for good: the guest never runs in two places.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
A=$WORK/a.sock M=$WORK/m.sock P=$WORK/p.sock
VERSION=$("$STASIS" --version)
VERSION=${VERSION#stasis }

# The source: memtest verifying a 32 MiB fill (about 33 MiB to send).
start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$A" --serial "file:$WORK/a" --mem 128M --cmdline "mib=32 seed=3"
SRC=$VM_PID
wait_for_socket "$A"
wait_for_line "$WORK/a" "memtest: pass 1 ok" 120

# source_intact WHAT: the source runs on and its memory is as it was: the
# next two passes verify every word.
source_intact() {
	expect_state "$A" running "$1"
	local n
	n=$(line_count "$WORK/a" "^memtest: pass [0-9]+ ok")
	wait_for_count "$WORK/a" "^memtest: pass [0-9]+ ok" $((n + 2)) 60
	grep -q MISMATCH "$WORK/a" && fail "$1: $(grep MISMATCH "$WORK/a")"
	return 0
}

# dest_failed OUT WHAT: the destination ended with an error and its guest
# never ran (nothing on its serial port).
dest_failed() {
	wait_exit "$RECV_PID" 60
	[[ $RC != 0 ]] || fail "$2: the destination exited 0"
	[[ ! -s $1 ]] || fail "$2: the guest ran at the destination: $(head -c 200 "$1")"
	grep -q "stasis: error: " "$1.err" || fail "$2: the destination said nothing: $(cat "$1.err")"
}

# via_proxy OUT [RECEIVE_OPTIONS...] -- [PROXY_OPTIONS...]: a destination
# behind the proxy, whose pid is PROXY_PID; the source migrates to $P.
via_proxy() {
	local out=$1 recv=()
	shift
	while [[ $1 != -- ]]; do
		recv+=("$1")
		shift
	done
	shift
	start_receive "$out" "$M" "$WORK/b.sock" "${recv[@]}"
	rm -f "$WORK/count"
	start_proxy "$P" "$M" "$WORK/count" "$@"
}

# --- Nobody listening.
migrate_to "$A" "unix:$WORK/nobody.sock"
expect_refused "no destination" "cannot connect to unix:.*nobody.sock"
source_intact "after a refused connection"

# --- Plain tcp needs --insecure, on both sides.
migrate_to "$A" "tcp:127.0.0.1:1"
expect_refused "tcp without --insecure" "add --insecure"
rc=0
"$STASIS" receive --listen tcp:127.0.0.1:1 2>"$WORK/tcp.err" </dev/null || rc=$?
[[ $rc == 2 ]] && grep -q "add --insecure" "$WORK/tcp.err" ||
	fail "receive on tcp without --insecure: status $rc, $(cat "$WORK/tcp.err")"

# --- A destination that cannot take this VM says why before any memory
# is sent: here, a --disk for a VM that has none.
truncate -s 1M "$WORK/extra.img"
via_proxy "$WORK/b1" --disk "$WORK/extra.img" --
migrate_to "$A" "unix:$P"
expect_refused "mismatch" "the destination refused the VM: --disk: the snapshot has 0 disks"
dest_failed "$WORK/b1" "mismatch"
wait "$PROXY_PID" || true
sent=$(cat "$WORK/count")
((sent < 65536)) || fail "mismatch: $sent bytes sent before it was named"
source_intact "after a mismatch"

# --- A byte flipped in memory on the way (at 4 MiB): the frame checksum
# catches it.
via_proxy "$WORK/b2" -- --corrupt-at $((4 << 20))
migrate_to "$A" "unix:$P"
expect_refused "corrupted stream" "checksum mismatch"
dest_failed "$WORK/b2" "corrupted stream"
grep -q "checksum mismatch" "$WORK/b2.err" || fail "corrupted: $(cat "$WORK/b2.err")"
source_intact "after a corrupted stream"

# --- One of four memory connections damaged in pre-copy: the migration
# fails as when the main one is, with that connection named.
via_proxy "$WORK/b2c" -- --conns 4 --damage 2 --corrupt-at $((2 << 20))
migrate_to "$A" "unix:$P" --connections 4
expect_refused "a memory connection corrupted" "memory connection 2: "
dest_failed "$WORK/b2c" "a memory connection corrupted"
grep -q "memory connection 2: .*checksum mismatch" "$WORK/b2c.err" ||
	fail "a memory connection corrupted: the destination said $(cat "$WORK/b2c.err")"
wait "$PROXY_PID" || true
source_intact "after a memory connection was corrupted"

# --- The stream cut short at 8 MiB.
via_proxy "$WORK/b3" -- --cut-at $((8 << 20))
migrate_to "$A" "unix:$P"
expect_refused "truncated stream" "connection was closed|Connection reset|Broken pipe"
dest_failed "$WORK/b3" "truncated stream"
source_intact "after a truncated stream"

# --- kill -9 of the destination mid-stream.
via_proxy "$WORK/b4" -- --stall-at $((6 << 20)) "$WORK/stalled"
rm -f "$WORK/stalled"
timeout -s KILL "$(scaled 120)" "$STASIS" ctl "$A" migrate "unix:$P" \
	>"$WORK/m4.out" 2>"$WORK/m4.err" &
CTL_PID=$!
wait_until 60 test -e "$WORK/stalled" || fail "the stream never reached 6 MiB"
kill -9 "$RECV_PID"
rc=0
wait "$CTL_PID" || rc=$?
MIG_RC=$rc MIG_ERR=$(cat "$WORK/m4.err")
expect_refused "destination killed" "connection was closed|Connection reset|Broken pipe"
source_intact "after the destination was killed"

# --- No room at the destination: a file-size limit, which its guest
# memory (128 MiB) meets first, as it would meet a full memory.
(
	trap '' XFSZ
	ulimit -f 4096
	exec "$STASIS" receive --listen "unix:$M" --api-socket "$WORK/b.sock" \
		--serial "file:$WORK/b5" </dev/null >"$WORK/b5.stdout" 2>"$WORK/b5.err"
) &
RECV_PID=$!
BG_PIDS+=("$RECV_PID")
wait_for_line "$WORK/b5.err" "waiting for a VM" 30
migrate_to "$A" "unix:$M"
expect_refused "no room" "the destination refused the VM: cannot allocate 128 MiB of guest memory: File too large"
dest_failed "$WORK/b5" "no room"
source_intact "after the destination ran out of room"

# --- --timeout-s: a destination that stops reading ends the migration in
# that time, and the source runs on.
via_proxy "$WORK/b8" -- --stall-at $((6 << 20)) "$WORK/stalled8"
t0=$SECONDS
migrate_to "$A" "unix:$P" --timeout-s 2
expect_refused "timeout" "timed out"
((SECONDS - t0 < $(scaled 20))) || fail "--timeout-s 2 took $((SECONDS - t0)) s"
dest_failed "$WORK/b8" "timeout"
source_intact "after a timeout"

# --- After the switch: the destination's RUNNING never arrives. The
# guest runs at the destination only; the source stays paused for good,
# refuses to resume, and says how to recover.
welcome="stasis-migrate 2 $VERSION"
# WELCOME, ACCEPT, pre-copy's SYNC, READY: the frames before GO.
ready=$((32 + ${#welcome} + 32 + 32 + 32))
via_proxy "$WORK/b6" -- --drop-replies-after "$ready"
migrate_to "$A" "unix:$P"
expect_refused "link lost after the switch" "broke after the switch.*stays paused here for good"
wait_for_socket "$WORK/b.sock"
expect_state "$WORK/b.sock" running "the destination after the switch"
wait_for_line "$WORK/b6" "^memtest: pass [0-9]+ ok" 60
expect_state "$A" paused "the source after the switch"
rc=0
"$STASIS" ctl "$A" resume 2>"$WORK/resume.err" || rc=$?
[[ $rc == 1 ]] && grep -q "migrated away" "$WORK/resume.err" ||
	fail "resume after the switch: status $rc, $(cat "$WORK/resume.err")"
n=$(line_count "$WORK/a" "^memtest: pass [0-9]+ ok")
ctl "$WORK/b.sock" shutdown >/dev/null
wait_exit "$RECV_PID" 60
expect_status "$RC" 0 "destination after shutdown"
# The source never ran again meanwhile; its copy can still be saved.
[[ $(line_count "$WORK/a" "^memtest: pass [0-9]+ ok") == "$n" ]] || fail "the source ran after the switch"
ctl "$A" snapshot "$WORK/left.snap" --then exit >/dev/null
wait_exit "$SRC" 60
expect_status "$RC" 0 "source saved after a lost switch"
"$STASIS" verify "$WORK/left.snap" >/dev/null || fail "the source's copy does not verify"

# --- kill -9 of the source mid-stream: the destination fails cleanly and
# never runs the half-received guest.
start_stasis "$WORK/k" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$WORK/k.sock" --serial "file:$WORK/k" --mem 128M --cmdline "mib=32 seed=9"
KSRC=$VM_PID
wait_for_socket "$WORK/k.sock"
wait_for_line "$WORK/k" "memtest: pass 1 ok" 120
rm -f "$WORK/stalled"
via_proxy "$WORK/b7" -- --hold-at $((6 << 20)) "$WORK/stalled"
timeout -s KILL "$(scaled 120)" "$STASIS" ctl "$WORK/k.sock" migrate "unix:$P" \
	>/dev/null 2>&1 &
wait_until 60 test -e "$WORK/stalled" || fail "the stream never reached 6 MiB"
# Held 6 MiB into 32 MiB of touched memory, the guest running: the
# source is in its first pre-copy round, which the status names.
st=$("$STASIS" ctl "$WORK/k.sock" status --json)
[[ $st == *'"migration": { "state": "precopy", "rounds": 1,'* && $st == *'"state": "running"'* ]] ||
	fail "status during pre-copy: $st"
kill -9 "$KSRC"
dest_failed "$WORK/b7" "source killed"
[[ $(grep -c "stasis: error: " "$WORK/b7.err") == 1 ]] || fail "source killed: $(cat "$WORK/b7.err")"

