# A snapshot is written atomically: a stasis killed with SIGKILL while it
# writes leaves no partial file at the target path, and an earlier
# snapshot there survives intact.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --mem 1G --cmdline "touch=600"
wait_for_socket "$S"
wait_for_line "$WORK/a" "memtest: touched 600 MiB" 300

# An earlier snapshot at the path.
ctl "$S" snapshot "$WORK/snap" --then resume >/dev/null
sum=$(sha256sum <"$WORK/snap")
size=$(stat -c %s "$WORK/snap")
((size > 600 * 1024 * 1024)) || fail "snapshot of 600 MiB touched is only $size bytes"

# Kill stasis part way through the next one: as soon as its temporary
# file (".snap.tmp.XXXXXX" beside the target) holds 1 MiB. Watching the
# file rather than asking the API for progress keeps the kill close behind
# the condition: on a fast host the whole 600 MiB may take a tenth of a
# second.
tmp_started() {
	[[ -n $(find "$WORK" -maxdepth 1 -name '.snap.tmp.*' -size +1M) ]]
}
"$STASIS" ctl "$S" snapshot "$WORK/snap" --then resume >/dev/null 2>&1 &
CTL_PID=$!
BG_PIDS+=("$CTL_PID")
POLL=0.005 wait_until 60 tmp_started ||
	fail "no temporary file of the second snapshot grew past 1 MiB: $(ls -a "$WORK")"
kill -9 "$VM_PID"
wait_exit "$VM_PID" 30
wait_exit "$CTL_PID" 30
# The kill came part way through: the snapshot did not complete, and its
# temporary file is left shorter than the earlier, complete one.
((RC != 0)) || fail "the second snapshot completed before the kill: nothing was cut short"
tmp=$(find "$WORK" -maxdepth 1 -name '.snap.tmp.*')
[[ -n $tmp && $(stat -c %s "$tmp") -lt $size ]] ||
	fail "no partial temporary file after the kill: $(ls -la "$WORK")"
note "killed after $(stat -c %s "$tmp") of $size bytes of the second snapshot"
[[ $(sha256sum <"$WORK/snap") == "$sum" ]] || fail "the earlier snapshot changed"
"$STASIS" verify "$WORK/snap" >/dev/null || fail "the earlier snapshot no longer verifies"
# Whatever is left over is a temporary file beside it, never at the path.
ls -a "$WORK" | grep -v -E '^(\.|\.\.|a|a\.err|a\.stdout|api\.sock|snap|\.snap\.tmp\..*)$' && fail "unexpected files: $(ls -a "$WORK")"

# The kept snapshot restores and the guest is well.
rm -f "$S"
start_stasis "$WORK/b" restore "$WORK/snap" --api-socket "$S" --serial "file:$WORK/b"
wait_for_socket "$S"
wait_for_line "$WORK/b" "memtest: idle" 60
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "restore after kill"
