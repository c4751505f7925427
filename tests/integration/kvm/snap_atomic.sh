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

# Kill stasis part way through the next one: as soon as it reports
# progress, or after a short delay.
"$STASIS" ctl "$S" snapshot "$WORK/snap" --then resume >/dev/null 2>&1 &
BG_PIDS+=($!)
for ((i = 0; i < $(scaled 100); i++)); do
	done_bytes=$("$STASIS" ctl "$S" status --json 2>/dev/null | sed -n 's/.*"done_bytes": *\([0-9]*\).*/\1/p')
	[[ -n $done_bytes && $done_bytes -gt 0 ]] && break
	sleep 0.05
done
kill -9 "$VM_PID"
wait_exit "$VM_PID" 30
note "killed after ${done_bytes:-?} bytes of the second snapshot"
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
