# A snapshot that cannot be written (no space, no such directory) is an
# error reply; the VM keeps running, or stays paused when it was, and an
# earlier file at the path is untouched.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --mem 128M --cmdline "touch=32"
wait_for_socket "$S"
wait_for_line "$WORK/a" "memtest: touched 32 MiB" 120

# A 4 MiB file system for a 32 MiB snapshot.
mkdir "$WORK/small"
mount -t tmpfs -o size=4m tmpfs "$WORK/small" || fail "cannot mount a tmpfs (root needed)"
at_exit umount "$WORK/small"
echo "earlier" >"$WORK/small/snap"

rc=0
"$STASIS" ctl "$S" snapshot "$WORK/small/snap" --then exit 2>"$WORK/err" || rc=$?
expect_status "$rc" 1 "snapshot to a full file system"
grep -q "No space left on device" "$WORK/err" || fail "error reply: $(cat "$WORK/err")"
[[ $(cat "$WORK/small/snap") == earlier ]] || fail "the earlier file was changed"
[[ $(ls -a "$WORK/small" | wc -l) == 3 ]] || fail "left behind: $(ls -a "$WORK/small")"
expect_state "$S" running "after a failed snapshot"
# The guest goes on: one more heartbeat than it had printed by the time
# the error came back. On a fast host the error comes back before the
# first heartbeat (count 0).
n=$(line_count "$WORK/a" "^memtest: idle [0-9]+$")
wait_for_count "$WORK/a" "^memtest: idle [0-9]+$" $((n + 1)) 60

# Paused before: stays paused after the failure.
ctl "$S" pause >/dev/null
rc=0
"$STASIS" ctl "$S" snapshot "$WORK/no/such/dir/snap" 2>"$WORK/err" || rc=$?
expect_status "$rc" 1 "snapshot into a missing directory"
grep -q "No such file or directory" "$WORK/err" || fail "error reply: $(cat "$WORK/err")"
expect_state "$S" paused "paused, after a failed snapshot"

# Running, and asked to pause afterwards: paused after the failure too.
ctl "$S" resume >/dev/null
rc=0
"$STASIS" ctl "$S" snapshot "$WORK/small/snap" --then pause 2>"$WORK/err" || rc=$?
expect_status "$rc" 1 "second snapshot to a full file system"
expect_state "$S" paused "after a failure with --then pause"
ctl "$S" resume >/dev/null
ctl "$S" snapshot "$WORK/ok.snap" --then resume >/dev/null
"$STASIS" verify "$WORK/ok.snap" >/dev/null || fail "snapshot after failures"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "shutdown"
