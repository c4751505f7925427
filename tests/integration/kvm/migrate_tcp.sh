# Migration over tcp between two network namespaces joined by a veth pair
# this test makes (it needs root and ip(8), and fails saying so without
# them): the counter guest moves from the first namespace to the second
# and back, each side reaching the other only through the veth link.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
[[ $(id -u) == 0 ]] || fail "needs root to make two network namespaces and a veth pair"
command -v ip >/dev/null || fail "needs ip(8) (iproute2) to make network namespaces"

NA=stasis-ma$$ NB=stasis-mb$$ VA=smva$$ VB=smvb$$
ip netns add "$NA" || fail "cannot make network namespace $NA"
at_exit ip netns del "$NA"
ip netns add "$NB" || fail "cannot make network namespace $NB"
at_exit ip netns del "$NB"
ip link add "$VA" type veth peer name "$VB" || fail "cannot make a veth pair"
ip link set "$VA" netns "$NA"
ip link set "$VB" netns "$NB"
ip -n "$NA" addr add 10.213.7.1/24 dev "$VA"
ip -n "$NB" addr add 10.213.7.2/24 dev "$VB"
ip -n "$NA" link set "$VA" up
ip -n "$NB" link set "$VB" up
ip -n "$NA" link set lo up
ip -n "$NB" link set lo up

# in_ns NS OUT ARGS...: stasis ARGS in namespace NS, in the background.
in_ns() {
	local ns=$1 out=$2
	shift 2
	ip netns exec "$ns" "$STASIS" "$@" </dev/null >"$out.stdout" 2>"$out.err" &
	VM_PID=$!
	BG_PIDS+=("$VM_PID")
}

in_ns "$NA" "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$WORK/a.sock" --serial "file:$WORK/a" --cmdline "hz=100"
SRC=$VM_PID
wait_for_socket "$WORK/a.sock"
counter_reaches "$WORK/a" 20 60

# Plain tcp without --insecure is refused before anything connects.
migrate_to "$WORK/a.sock" "tcp:10.213.7.2:7001"
expect_refused "tcp without --insecure" "add --insecure"

# hop FROM_SOCK FROM_OUT NS ADDR TO: receive in NS on ADDR, migrate there.
hop() {
	local from=$1 fromout=$2 ns=$3 addr=$4 to=$5
	rm -f "$WORK/$to.sock"
	in_ns "$ns" "$WORK/$to" receive --listen "tcp:$addr" --insecure \
		--api-socket "$WORK/$to.sock" --serial "file:$WORK/$to"
	local dst=$VM_PID
	wait_for_line "$WORK/$to.err" "waiting for a VM on tcp:$addr" 30
	migrate_to "$from" "tcp:$addr" --insecure
	expect_migrated
	wait_exit "$SRC" 60
	expect_status "$RC" 0 "source after the migration to $addr"
	wait_for_socket "$WORK/$to.sock"
	wait_for_line "$WORK/$to" "^counter: [0-9]+$" 60
	restored_continues "$fromout" "$WORK/$to"
	SRC=$dst
}

hop "$WORK/a.sock" "$WORK/a" "$NB" 10.213.7.2:7001 b
hop "$WORK/b.sock" "$WORK/b" "$NA" 10.213.7.1:7002 c
ctl "$WORK/c.sock" shutdown >/dev/null
wait_exit "$SRC" 60
expect_status "$RC" 0 "after shutdown"
