# kill -9 of either side at random points of pre-copy. The link is a
# proxy that carries 16 MiB/s (tests/tools/migrate_proxy.py --rate), so
# pre-copy of memtest's 24 MiB fill lasts over a second on any host; each
# kill lands a seeded random delay after pre-copy began, and the test
# checks pre-copy was still going. A killed destination leaves the source
# running, unchanged: its next passes verify every word. A killed source
# leaves a destination that fails with one line, its guest never run.
# STASIS_KILL_SEED=N repeats a run's points (the seed is printed).
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
SEED=${STASIS_KILL_SEED:-$(($(date +%s%N) % 1000000))}
RANDOM=$SEED
note "seed $SEED"
KILLS=${STASIS_KILLS:-3}
RATE=$((16 << 20))
MAX_DELAY_MS=900
M=$WORK/m.sock P=$WORK/p.sock

# start_source NAME: memtest verifying a 24 MiB fill; SRC, SOCK, OUT.
start_source() {
	OUT=$WORK/$1 SOCK=$WORK/$1.sock
	start_stasis "$OUT" run --kernel "$GUESTS/memtest.elf" --debug-exit \
		--api-socket "$SOCK" --serial "file:$OUT" --mem 64M \
		--cmdline "mib=24 seed=$((RANDOM % 1000))"
	SRC=$VM_PID
	wait_for_socket "$SOCK"
	wait_for_line "$OUT" "memtest: pass 1 ok" 120
}

# precopy SOCK: the VM runs and its migration is in pre-copy.
precopy() {
	local st
	st=$("$STASIS" ctl "$1" status --json 2>/dev/null) || return 1
	# A prefix: the migration's status may carry more than its state.
	[[ $st == *'"migration": { "state": "precopy"'* && $st == *'"state": "running"'* ]]
}

# begin NAME: a destination behind the slow proxy, a migration to it in
# the background (CTL_PID), and a seeded random wait once pre-copy runs.
begin() {
	start_receive "$WORK/$1" "$M" "$WORK/$1.b.sock"
	start_proxy "$P" "$M" "$WORK/$1.count" --rate "$RATE"
	timeout -s KILL "$(scaled 120)" "$STASIS" ctl "$SOCK" migrate "unix:$P" \
		>"$WORK/$1.mig" 2>"$WORK/$1.mig.err" &
	CTL_PID=$!
	wait_until 60 precopy "$SOCK" || fail "$1: pre-copy never began: $(cat "$WORK/$1.mig.err")"
	DELAY=$((RANDOM % MAX_DELAY_MS))
	sleep "$(printf '0.%03d' "$DELAY")"
	precopy "$SOCK" || fail "$1: pre-copy was over $DELAY ms in: $("$STASIS" ctl "$SOCK" status --json)"
}

# source_intact WHAT: the source runs on and its next two passes verify
# every word.
source_intact() {
	expect_state "$SOCK" running "$1"
	local n
	n=$(line_count "$OUT" "^memtest: pass [0-9]+ ok")
	wait_for_count "$OUT" "^memtest: pass [0-9]+ ok" $((n + 2)) 60
	grep -q MISMATCH "$OUT" && fail "$1: $(grep MISMATCH "$OUT")"
	[[ $(line_count "$OUT" "memtest: start") == 1 ]] || fail "$1: memtest started over"
	return 0
}

start_source src0
for ((i = 1; i <= KILLS; i++)); do
	# --- The destination killed: the source runs on, unchanged.
	begin "d$i"
	kill -9 "$RECV_PID"
	rc=0
	wait "$CTL_PID" || rc=$?
	MIG_RC=$rc MIG_ERR=$(cat "$WORK/d$i.mig.err")
	expect_refused "destination killed after $DELAY ms" \
		"connection was closed|Connection reset|Broken pipe"
	source_intact "destination killed after $DELAY ms"
	note "destination killed $DELAY ms into pre-copy, $(cat "$WORK/d$i.count" 2>/dev/null || echo '?') bytes through"
done
for ((i = 1; i <= KILLS; i++)); do
	# --- The source killed: the destination fails cleanly, its guest
	# never ran.
	((i == 1)) || start_source "src$i"
	begin "s$i"
	kill -9 "$SRC"
	wait "$CTL_PID" 2>/dev/null || true
	wait_exit "$RECV_PID" 60
	[[ $RC != 0 ]] || fail "source killed after $DELAY ms: the destination exited 0"
	[[ ! -s $WORK/s$i ]] || fail "source killed after $DELAY ms: the guest ran at the destination: $(head -c 200 "$WORK/s$i")"
	[[ $(grep -c "stasis: error: " "$WORK/s$i.err") == 1 ]] ||
		fail "source killed after $DELAY ms: $(cat "$WORK/s$i.err")"
	note "source killed $DELAY ms into pre-copy: $(grep "stasis: error: " "$WORK/s$i.err")"
done
