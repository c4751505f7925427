# Migration over UNIX sockets between two stasis processes: the counter
# guest continues at the destination, the source exits 0 once the
# destination runs it, and the VM then goes back and forth between two
# places, A and B (the same API and listening socket paths each time),
# MIGRATE_ROUNDS times (50 by default): each leg starts where the last one
# stopped, with no tick repeated and no more missing than the leg's pause
# explains. The guest has 32 MiB, so that 50 legs stay quick.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
ROUNDS=${MIGRATE_ROUNDS:-50}

HZ=100
# place I: where leg I runs, A for even legs and B for odd ones.
place() { ((${1} % 2)) && echo B || echo A; }

start_stasis "$WORK/c0" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$WORK/A.sock" --serial "file:$WORK/c0" --mem 32M \
	--cmdline "hz=$HZ"
SRC=$VM_PID
wait_for_socket "$WORK/A.sock"
counter_reaches "$WORK/c0" 20 60

# The status shows no migration before one.
[[ $("$STASIS" ctl "$WORK/A.sock" status --json) == *'"migration": null'* ]] ||
	fail "status before a migration: $("$STASIS" ctl "$WORK/A.sock" status --json)"

worst=0
for ((i = 1; i <= ROUNDS; i++)); do
	prev=$WORK/c$((i - 1)) cur=$WORK/c$i
	from=$WORK/$(place $((i - 1))).sock to=$WORK/$(place "$i").sock
	start_receive "$cur" "$WORK/m$(place "$i").sock" "$to"
	DST=$RECV_PID
	migrate_to "$from" "unix:$WORK/m$(place "$i").sock"
	expect_migrated
	wait_exit "$SRC" 60
	expect_status "$RC" 0 "source of leg $i after the migration"
	wait_for_socket "$to"
	expect_state "$to" running "destination of leg $i"
	wait_for_line "$cur" "^counter: [0-9]+$" 60
	# The ticks the pause can account for, and a few for the lines in
	# flight around it.
	paused=$(sed -n 's/.* paused \([0-9]*\) ms.*/\1/p' <<<"$MIG_OUT")
	[[ -n $paused ]] || fail "leg $i: no pause in '$MIG_OUT'"
	restored_continues "$prev" "$cur" $((paused * HZ / 1000 + 5))
	grep -q "^counter: 0$" "$cur" && fail "leg $i: the guest started over"
	gap=$(($(first_counter "$cur") - $(last_counter "$prev")))
	((gap > worst)) && worst=$gap
	SRC=$DST
done
note "$ROUNDS migrations, counter $(first_counter "$WORK/c1") .. $(last_counter "$WORK/c$ROUNDS"), largest step $worst ticks, $SECONDS s"

ctl "$WORK/$(place "$ROUNDS").sock" shutdown >/dev/null
wait_exit "$SRC" 60
expect_status "$RC" 0 "last destination after shutdown"
