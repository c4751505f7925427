# Managed save: with --on-term snapshot:PATH, SIGTERM saves the VM and
# stasis exits 0, running or paused; `run --resume-from PATH` boots when
# nothing is at PATH, restores PATH when it is there and sets it aside as
# PATH.resumed; a failed save leaves the VM running (or paused) and
# serving, and SIGINT still discards it.
. "$(dirname "$0")/../lib.sh"
SNAP=$WORK/vm.snap
S=$WORK/api.sock
opts=(--kernel "$GUESTS/counter.elf" --debug-exit --cmdline "hz=100"
	--api-socket "$S" --resume-from "$SNAP" --on-term "snapshot:$SNAP")

# Nothing at PATH: a fresh boot, saved by SIGTERM.
start_stasis "$WORK/a" run "${opts[@]}" --serial "file:$WORK/a"
wait_for_socket "$S"
grep -q "$SNAP does not exist: booting" "$WORK/a.err" ||
	fail "no boot line: $(cat "$WORK/a.err")"
counter_reaches "$WORK/a" 20 60
kill -TERM "$VM_PID"
wait_exit "$VM_PID" 120
expect_status "$RC" 0 "SIGTERM with --on-term (running)"
grep -q "SIGTERM: VM saved to $SNAP" "$WORK/a.err" ||
	fail "no saved line: $(cat "$WORK/a.err")"
"$STASIS" verify "$SNAP" >/dev/null || fail "the saved file does not verify"

# The same command line resumes it, and the file is set aside.
start_stasis "$WORK/b" run "${opts[@]}" --serial "file:$WORK/b"
wait_for_socket "$S"
grep -q "resuming from $SNAP" "$WORK/b.err" ||
	fail "no resume line: $(cat "$WORK/b.err")"
[[ ! -e $SNAP && -f $SNAP.resumed ]] || fail "$SNAP was not renamed .resumed"
wait_for_line "$WORK/b" "^counter: [0-9]+$" 60
b0=$(first_counter "$WORK/b")
counter_reaches "$WORK/b" $((b0 + 20)) 60
restored_continues "$WORK/a" "$WORK/b"

# SIGTERM while paused saves too.
ctl "$S" pause >/dev/null
kill -TERM "$VM_PID"
wait_exit "$VM_PID" 120
expect_status "$RC" 0 "SIGTERM with --on-term (paused)"
"$STASIS" verify "$SNAP" >/dev/null || fail "the paused save does not verify"

# A save that fails: the VM runs on, paused stays paused, and the API
# still answers; another SIGTERM tries again.
bad=$WORK/no-such-dir/vm.snap
start_stasis "$WORK/c" run "${opts[@]}" --serial "file:$WORK/c" \
	--on-term "snapshot:$bad"
wait_for_socket "$S"
wait_for_line "$WORK/c" "^counter: [0-9]+$" 60
restored_continues "$WORK/b" "$WORK/c"
kill -TERM "$VM_PID"
wait_for_line "$WORK/c.err" "SIGTERM: cannot save the VM to $bad: .*; it stays running" 60
v=$(last_counter "$WORK/c")
counter_reaches "$WORK/c" $((v + 20)) 60
ctl "$S" status | grep -q "state: running" || fail "not running after a failed save"
ctl "$S" pause >/dev/null
kill -TERM "$VM_PID"
wait_for_line "$WORK/c.err" "it stays paused" 60
ctl "$S" status | grep -q "state: paused" || fail "not paused after a failed save"
ctl "$S" resume >/dev/null
v=$(last_counter "$WORK/c")
counter_reaches "$WORK/c" $((v + 20)) 60
[[ $(grep -c "cannot save" "$WORK/c.err") == 2 ]] ||
	fail "expected one line per failed save: $(cat "$WORK/c.err")"
[[ ! -e $SNAP ]] || fail "$SNAP appeared although the save went elsewhere"

# SIGINT discards the VM, as without --on-term.
kill -INT "$VM_PID"
wait_exit "$VM_PID" 60
expect_status "$RC" 130 "SIGINT with --on-term"
[[ ! -e $SNAP ]] || fail "SIGINT wrote a snapshot"

# Something at PATH that is not a snapshot is refused and left alone.
head -c 4096 /dev/urandom >"$SNAP"
cp "$SNAP" "$WORK/garbage"
rc=0
"$STASIS" run "${opts[@]}" --serial none </dev/null 2>"$WORK/d.err" || rc=$?
expect_status "$rc" 2 "--resume-from a file that is not a snapshot"
grep -q "bad magic" "$WORK/d.err" || fail "no reason given: $(cat "$WORK/d.err")"
cmp -s "$SNAP" "$WORK/garbage" || fail "the refused file was changed"
