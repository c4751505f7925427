# Auto-converge: memtest rewriting 32 MiB pass after pass dirties memory
# faster than a link held (STASIS_TEST_MIGRATE_RATE) to a 32nd of the rate
# it dirties at alone, measured here first, so that the same holds on any
# host (a 32nd: the dirty log's write faults slow the guest down too).
# Without the throttle pre-copy never converges (the migration times out
# and the source runs on); a migration whose destination is killed while
# the vCPUs are throttled leaves them at full speed again; with the
# throttle on (the default) the VM moves, and ctl says how far it was
# throttled.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
PASS_RE="^memtest: pass [0-9]+ ok"
GUEST=(--kernel "$GUESTS/memtest.elf" --debug-exit --mem 128M --cmdline "mib=32 smp=1")

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# pass_ms OUT: milliseconds per pass of the guest writing OUT, over at
# least 2 s (and 4 passes) from the next pass on.
pass_ms() {
	local n t0 k=0
	n=$(line_count "$1" "$PASS_RE")
	wait_for_count "$1" "$PASS_RE" $((n + 1)) 60
	n=$(line_count "$1" "$PASS_RE") t0=$(now_ms)
	while (($(now_ms) - t0 < 2000 || k < 4)); do
		wait_for_count "$1" "$PASS_RE" $((n + k + 1)) 120
		k=$((k + 1))
	done
	echo $(((($(now_ms) - t0) + k / 2) / k))
}

# vcpu_sleeps PID: how often, in 1 s, the busiest thread of stasis PID
# (memtest's vCPU) left the CPU of its own accord. A throttled vCPU
# sleeps once in each of auto-converge's 10 ms periods; memtest at full
# speed never does (it makes no I/O but a line a pass). Counted, not
# timed: a busy host slows the guest down, but adds no sleeps.
vcpu_sleeps() {
	local best=0 tid t a b
	for t in /proc/"$1"/task/*; do
		a=$(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null) || continue
		((a > best)) && best=$a tid=${t##*/}
	done
	a=$(awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$1/task/$tid/status")
	sleep 1
	b=$(awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$1/task/$tid/status")
	echo $((b - a))
}

# How fast the guest dirties memory here, alone.
start_stasis "$WORK/probe" run "${GUEST[@]}" --api-socket "$WORK/p.sock" \
	--serial "file:$WORK/probe"
wait_for_socket "$WORK/p.sock"
wait_for_line "$WORK/probe" "$PASS_RE" 120
ms=$(pass_ms "$WORK/probe")
ctl "$WORK/p.sock" shutdown >/dev/null
wait_exit "$VM_PID" 60
# 32 MiB a pass; the link carries a 32nd of that rate.
rate=$(((32 << 20) * 1000 / ms / 32))
note "memtest: $ms ms a pass ($(((32 << 20) * 1000 / ms >> 20)) MiB/s), link capped at $((rate >> 20)) MiB/s"

STASIS_TEST_MIGRATE_RATE=$rate start_stasis "$WORK/a" run "${GUEST[@]}" \
	--api-socket "$WORK/a.sock" --serial "file:$WORK/a"
SRC=$VM_PID
wait_for_socket "$WORK/a.sock"
wait_for_line "$WORK/a" "$PASS_RE" 120

# source_intact WHAT: the source runs on, every word it verifies right.
source_intact() {
	expect_state "$WORK/a.sock" running "$1"
	grep -q MISMATCH "$WORK/a" && fail "$1: $(grep MISMATCH "$WORK/a")"
	return 0
}

# --- No throttle: every round leaves the whole working set dirty; ten
# rounds' time is not enough.
start_receive "$WORK/b1" "$WORK/m.sock" "$WORK/b1.sock"
secs=$(((10 * (32 << 20) / rate) + 2))
migrate_to "$WORK/a.sock" "unix:$WORK/m.sock" --no-auto-converge --timeout-s "$secs"
expect_refused "without auto-converge" "timed out"
wait_exit "$RECV_PID" 60
source_intact "after a migration that did not converge"

# --- Throttled, then the destination killed: the source runs on at full
# speed. The stream is held after six rounds' worth, each of which left
# the working set dirty and throttled the vCPUs a step further, so that
# the throttle stays where it is while the guest's pace is measured.
start_receive "$WORK/b2" "$WORK/m.sock" "$WORK/b2.sock"
rm -f "$WORK/held"
start_proxy "$WORK/p.sock" "$WORK/m.sock" "$WORK/count" --hold-at $((192 << 20)) "$WORK/held"
timeout -s KILL "$(scaled 300)" "$STASIS" ctl "$WORK/a.sock" migrate \
	"unix:$WORK/p.sock" >"$WORK/m2.out" 2>"$WORK/m2.err" &
CTL_PID=$!
wait_until 120 test -e "$WORK/held" || fail "the stream never reached 192 MiB: $(cat "$WORK/m2.err" "$WORK/m2.out")"
st=$("$STASIS" ctl "$WORK/a.sock" status --json)
[[ $st =~ \"throttle_percent\":\ ([0-9]+) ]] || fail "no throttle in the status: $st"
pct=${BASH_REMATCH[1]}
((pct >= 50)) || fail "throttled to $pct% only after 192 MiB: $st"
slow=$(vcpu_sleeps "$SRC")
kill -9 "$RECV_PID"
rc=0
wait "$CTL_PID" || rc=$?
MIG_RC=$rc MIG_ERR=$(cat "$WORK/m2.err")
expect_refused "destination killed while throttled" "connection was closed|Connection reset|Broken pipe"
wait "$PROXY_PID" || true
source_intact "after a throttled migration failed"
[[ $("$STASIS" ctl "$WORK/a.sock" status --json) == *'"migration": null'* ]] ||
	fail "a migration is still shown after it failed"
n=$(line_count "$WORK/a" "$PASS_RE")
wait_for_count "$WORK/a" "$PASS_RE" $((n + 2)) 60
fast=$(vcpu_sleeps "$SRC")
note "throttled to $pct%: the vCPU slept $slow times a second; after the failure $fast times"
# 100 periods a second; a few may go by while the host is busy elsewhere.
((slow >= 50)) || fail "throttled to $pct%, the vCPU slept only $slow times in 1 s"
((fast <= 10)) || fail "the vCPU still sleeps after the failure: $fast times in 1 s"

# --- With auto-converge, the default: the VM moves.
start_receive "$WORK/b3" "$WORK/m.sock" "$WORK/b3.sock"
DST=$RECV_PID
migrate_to "$WORK/a.sock" "unix:$WORK/m.sock" --timeout-s "$(scaled 240)" --downtime-ms 100
expect_migrated
[[ $MIG_OUT =~ throttled\ to\ ([0-9]+)%$ ]] || fail "no throttle reported: $MIG_OUT"
note "$MIG_OUT"
wait_exit "$SRC" 60
expect_status "$RC" 0 "source after the migration"
wait_for_socket "$WORK/b3.sock"
n=$(line_count "$WORK/b3" "$PASS_RE")
wait_for_count "$WORK/b3" "$PASS_RE" $((n + 2)) 120
grep -q MISMATCH "$WORK/b3" && fail "destination: $(grep MISMATCH "$WORK/b3")"
grep -q "memtest: start" "$WORK/b3" && fail "memtest started over at the destination"
ctl "$WORK/b3.sock" shutdown >/dev/null
wait_exit "$DST" 60
expect_status "$RC" 0 "destination after shutdown"
