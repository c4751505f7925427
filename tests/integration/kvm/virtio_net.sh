# Two stasis VMs linked by virtio-net over a pair of UNIX datagram sockets
# (no root): nettest role a and role b exchange numbered frames both ways
# and each receives every frame exactly once, in order.
. "$(dirname "$0")/../lib.sh"
COUNT=${STASIS_NET_COUNT:-500}
declare -A pid

# Sockets live in WORK, which the runner puts on a local file system.
for r in a b; do
	p=$([[ $r == a ]] && echo b || echo a)
	start_stasis "$WORK/$r" run --kernel "$GUESTS/nettest.elf" --debug-exit \
		--serial "file:$WORK/$r" --net "unix=$WORK/$r.sock,peer=$WORK/$p.sock" \
		--cmdline "role=$r count=$COUNT stall_ms=$(scaled 20000)"
	pid[$r]=$VM_PID
done
wait_exit "${pid[a]}" 180
rc_a=$RC
wait_exit "${pid[b]}" 60
rc_b=$RC
for r in a b; do
	grep -Eq '^nettest: (LOST|DUP|BAD|STALL)' "$WORK/$r" &&
		fail "role $r: $(grep -E '^nettest: (LOST|DUP|BAD|STALL)' "$WORK/$r")"
done
expect_status "$rc_a" 1 "nettest role a: $(tail -n 2 "$WORK/a" | tr '\n' '|')"
expect_status "$rc_b" 1 "nettest role b: $(tail -n 2 "$WORK/b" | tr '\n' '|')"
for r in a b; do
	grep -q "^nettest: done, $COUNT frames each way" "$WORK/$r" ||
		fail "role $r did not finish: $(tail -n 2 "$WORK/$r")"
	grep -q "^nettest: sent $COUNT recv $COUNT ok$" "$WORK/$r" ||
		fail "role $r counts: $(grep sent "$WORK/$r" | tail -n 1)"
	[[ ! -s $WORK/$r.err ]] || fail "stasis $r stderr: $(head -n 3 "$WORK/$r.err")"
done
# Each VM got its own MAC address, derived from its socket path.
mac_a=$(sed -n 's/^nettest: role a mac \([0-9a-f:]*\) .*/\1/p' "$WORK/a")
mac_b=$(sed -n 's/^nettest: role b mac \([0-9a-f:]*\) .*/\1/p' "$WORK/b")
[[ $mac_a == 52:54:00:* && $mac_b == 52:54:00:* && $mac_a != "$mac_b" ]] ||
	fail "MAC addresses '$mac_a' and '$mac_b'"
# The sockets go with the VMs.
[[ ! -e $WORK/a.sock && ! -e $WORK/b.sock ]] || fail "socket files left behind"
