# Migration over UNIX sockets between two stasis processes: the counter
# guest continues at the destination, the source exits 0 once the
# destination runs it, and the VM then goes back and forth (MIGRATE_ROUNDS
# times, 50 by default): each leg starts where the last one stopped.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
ROUNDS=${MIGRATE_ROUNDS:-50}

start_stasis "$WORK/c0" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$WORK/s0.sock" --serial "file:$WORK/c0" --cmdline "hz=100"
SRC=$VM_PID
wait_for_socket "$WORK/s0.sock"
counter_reaches "$WORK/c0" 20 60

# The status shows no migration before one.
[[ $("$STASIS" ctl "$WORK/s0.sock" status --json) == *'"migration": null'* ]] ||
	fail "status before a migration: $("$STASIS" ctl "$WORK/s0.sock" status --json)"

for ((i = 1; i <= ROUNDS; i++)); do
	prev=$WORK/c$((i - 1)) cur=$WORK/c$i
	start_receive "$cur" "$WORK/m.sock" "$WORK/s$i.sock"
	DST=$RECV_PID
	migrate_to "$WORK/s$((i - 1)).sock" "unix:$WORK/m.sock"
	expect_migrated
	wait_exit "$SRC" 60
	expect_status "$RC" 0 "source of leg $i after the migration"
	wait_for_socket "$WORK/s$i.sock"
	expect_state "$WORK/s$i.sock" running "destination of leg $i"
	wait_for_line "$cur" "^counter: [0-9]+$" 60
	restored_continues "$prev" "$cur"
	grep -q "^counter: 0$" "$cur" && fail "leg $i: the guest started over"
	SRC=$DST
done
note "$ROUNDS migrations, counter $(first_counter "$WORK/c1") .. $(last_counter "$WORK/c$ROUNDS")"

ctl "$WORK/s$ROUNDS.sock" shutdown >/dev/null
wait_exit "$SRC" 60
expect_status "$RC" 0 "last destination after shutdown"
