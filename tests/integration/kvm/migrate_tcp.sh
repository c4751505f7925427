# Migration over tcp between two network namespaces joined by a veth pair
# this test makes (it needs root and ip(8), and fails saying so without
# them): the counter guest moves from the first namespace to the second
# and back (over three connections), each side reaching the other only
# through the veth link.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
netns_pair 10.213.7

in_ns "$NA" "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$WORK/a.sock" --serial "file:$WORK/a" --cmdline "hz=100"
SRC=$VM_PID
wait_for_socket "$WORK/a.sock"
counter_reaches "$WORK/a" 20 60

# Plain tcp without --insecure is refused before anything connects.
migrate_to "$WORK/a.sock" "tcp:10.213.7.2:7001"
expect_refused "tcp without --insecure" "add --insecure"

# hop FROM_SOCK FROM_OUT NS ADDR TO [ctl options...]: receive in NS on
# ADDR, migrate there.
hop() {
	local from=$1 fromout=$2 ns=$3 addr=$4 to=$5
	shift 5
	rm -f "$WORK/$to.sock"
	in_ns "$ns" "$WORK/$to" receive --listen "tcp:$addr" --insecure \
		--api-socket "$WORK/$to.sock" --serial "file:$WORK/$to"
	local dst=$VM_PID
	wait_for_line "$WORK/$to.err" "waiting for a VM on tcp:$addr" 30
	migrate_to "$from" "tcp:$addr" --insecure "$@"
	expect_migrated
	wait_exit "$SRC" 60
	expect_status "$RC" 0 "source after the migration to $addr"
	wait_for_socket "$WORK/$to.sock"
	grep -q "migration from .*: ${n_conn:-1} connection" "$WORK/$to.err" ||
		fail "the destination did not take ${n_conn:-1}: $(cat "$WORK/$to.err")"
	wait_for_line "$WORK/$to" "^counter: [0-9]+$" 60
	restored_continues "$fromout" "$WORK/$to"
	SRC=$dst
}

hop "$WORK/a.sock" "$WORK/a" "$NB" 10.213.7.2:7001 b
# Back over three connections.
n_conn=3 hop "$WORK/b.sock" "$WORK/b" "$NA" 10.213.7.1:7002 c --connections 3
ctl "$WORK/c.sock" shutdown >/dev/null
wait_exit "$SRC" 60
expect_status "$RC" 0 "after shutdown"
