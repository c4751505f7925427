# Pause parks every vCPU (the guest stops counting), resume lets it go on;
# repeated requests are refused; status reports the pause latency.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
start_stasis "$WORK/a" run --kernel "$GUESTS/smp.elf" --debug-exit --cpus 2 \
	--api-socket "$S" --serial "file:$WORK/a" --cmdline "period_ms=200"
wait_for_socket "$S"
wait_for_line "$WORK/a" "smp: cpus=2 totals" 60

ctl "$S" pause >/dev/null
ctl "$S" status --json >"$WORK/st.json"
grep -q '"state": *"paused"' "$WORK/st.json" || fail "status: $(cat "$WORK/st.json")"
grep -Eq '"last_pause_us": *[0-9]+' "$WORK/st.json" || fail "no pause latency: $(cat "$WORK/st.json")"
n=$(wc -l <"$WORK/a")
totals=$(line_count "$WORK/a" "^smp: cpus=2 totals=")
# Nothing may happen: a window of time is the only way to show that. A
# running guest prints every 200 ms.
sleep "$(scaled 1)"
[[ $(wc -l <"$WORK/a") == "$n" ]] || fail "the guest printed while paused"
rc=0
"$STASIS" ctl "$S" pause 2>"$WORK/err" || rc=$?
expect_status "$rc" 1 "second pause"
grep -q "already paused" "$WORK/err" || fail "second pause: $(cat "$WORK/err")"

ctl "$S" resume >/dev/null
# Progress: a totals line printed after the resume.
wait_until 60 count_reaches "$WORK/a" "^smp: cpus=2 totals=" $((totals + 1)) ||
	fail "no progress after resume: $(tail -n 2 "$WORK/a" | tr '\n' '|')"
[[ $(wc -l <"$WORK/a") -gt $n ]] || fail "no progress after resume"
rc=0
"$STASIS" ctl "$S" resume 2>"$WORK/err" || rc=$?
expect_status "$rc" 1 "second resume"

# Many quick pause/resume cycles must neither hang nor lose a vCPU.
for i in $(seq 20); do
	ctl "$S" pause >/dev/null
	ctl "$S" resume >/dev/null
done
# The guest reports a CPU that made no progress for 3 periods (smp's
# stall=3) and exits: 5 more totals lines (one more than that, and one for
# a line being written when counted), or its report, show whether the
# cycles lost a vCPU.
totals=$(line_count "$WORK/a" "^smp: cpus=2 totals=")
stalled_or_counted() {
	has_line "$WORK/a" STALL || count_reaches "$WORK/a" "^smp: cpus=2 totals=" $((totals + 5))
}
wait_until 60 stalled_or_counted ||
	fail "stuck after pause/resume cycles: $(tail -n 2 "$WORK/a" | tr '\n' '|')"
grep -q STALL "$WORK/a" && fail "a CPU stalled: $(grep STALL "$WORK/a")"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "shutdown"
