# Snapshots taken while the guest takes 2000 timer interrupts a second:
# pending interrupts and the timer state survive, in place and restored.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
start_stasis "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --cmdline "hz=2000"
wait_for_socket "$S"
counter_reaches "$WORK/a" 200 60
for i in $(seq 5); do
	ctl "$S" snapshot "$WORK/s$i.snap" --then resume >/dev/null
	v=$(last_counter "$WORK/a")
	# Where a run that hits its time limit stood.
	note "snapshot $i in place at counter $v"
	counter_reaches "$WORK/a" $((v + 100)) 60
done
ctl "$S" snapshot "$WORK/last.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "run"
grep -q ERROR "$WORK/a" && fail "$(grep ERROR "$WORK/a")"
# A counter that printed every tick may skip values at 2000 Hz, but never
# goes backwards.
check_increasing "$WORK/a"
rm -f "$S"
start_stasis "$WORK/b" restore "$WORK/last.snap" --api-socket "$S" --serial "file:$WORK/b"
wait_for_socket "$S"
wait_for_line "$WORK/b" "^counter: [0-9]+$" 60
v=$(first_counter "$WORK/b")
counter_reaches "$WORK/b" $((v + 200)) 60
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
check_increasing "$WORK/b"
before=$(last_counter "$WORK/a")
((v > before && v <= before + 2000)) || fail "restored counter $v after $before"
grep -q ERROR "$WORK/b" && fail "$(grep ERROR "$WORK/b")"
exit 0
