# The VM Generation ID: the guest finds it through the SSDT, it stays the
# same while the VM runs (and across an in-place snapshot), and every
# restore writes a new one and fires the event line before the guest runs
# again; restores of one file get different IDs. With --vmgenid off the
# tables have no such device and snapshots restore without one.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock

# ids FILE: the IDs the guest printed, in order.
ids() {
	complete_text <"$1" | sed -n 's/^vmgenid: id=\([0-9a-f]\{32\}\) notify=[0-9]*\r\{0,1\}$/\1/p'
}
# last_notify FILE: the event count on the last ID line.
last_notify() {
	complete_text <"$1" | sed -n 's/^vmgenid: id=[0-9a-f]* notify=\([0-9]*\)\r\{0,1\}$/\1/p' | tail -n 1
}

start_stasis "$WORK/a" run --kernel "$GUESTS/vmgenid.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --cmdline "hz=100 touch=8"
wait_for_socket "$S"
wait_for_line "$WORK/a" "^vmgenid: addr=0xff000 gsi=10 routed=1 touched=8" 60
counter_reaches "$WORK/a" 10 60
id0=$(ids "$WORK/a")
[[ $id0 =~ ^[0-9a-f]{32}$ ]] || fail "boot ID '$id0'"
[[ $id0 != 00000000000000000000000000000000 ]] || fail "boot ID is zero"

# In place: the VM was never duplicated, its ID stays.
ctl "$S" snapshot "$WORK/inplace.snap" --then resume >/dev/null
v=$(last_counter "$WORK/a")
counter_reaches "$WORK/a" $((v + 10)) 60
[[ $(ids "$WORK/a") == "$id0" ]] || fail "ID changed without a restore: $(ids "$WORK/a" | tr '\n' ' ')"
ctl "$S" snapshot "$WORK/exit.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "run after snapshot --then exit"
"$STASIS" inspect "$WORK/exit.snap" | grep -Eq "DEVICE .* vmgenid$" ||
	fail "no vmgenid device record in the snapshot"

# restore_vm FILE OUT [snapshot]: restores, waits for the guest to see a
# new ID, then shuts the VM down (or snapshots it to OUT.snap).
restore_vm() {
	local snap=$1 out=$2 sock=$WORK/r.sock
	rm -f "$sock"
	start_stasis "$out" restore "$snap" --api-socket "$sock" --serial "file:$out"
	wait_for_socket "$sock"
	wait_for_line "$out" "^vmgenid: memory ok" 60
	local first
	first=$(first_counter "$out")
	counter_reaches "$out" $((first + 10)) 60
	if [[ ${3:-} == snapshot ]]; then
		ctl "$sock" snapshot "$out.snap" --then exit >/dev/null
	else
		ctl "$sock" shutdown >/dev/null
	fi
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "restored VM"
	grep -q ERROR "$out" && fail "guest error after restore: $(grep ERROR "$out")"
	[[ $(ids "$out" | wc -l) == 1 ]] || fail "$out: more than one new ID: $(ids "$out" | tr '\n' ' ')"
	return 0
}

restore_vm "$WORK/exit.snap" "$WORK/b1"
restore_vm "$WORK/exit.snap" "$WORK/b2" snapshot
id1=$(ids "$WORK/b1") id2=$(ids "$WORK/b2")
note "IDs: boot $id0, restores $id1 $id2"
[[ $id1 != "$id0" && $id2 != "$id0" ]] || fail "a restore kept the saved ID $id0"
[[ $id1 != "$id2" ]] || fail "two restores of one file got the same ID $id1"
# The event device fired once per restore: the guest counts its edges.
[[ $(last_notify "$WORK/b1") == 1 ]] || fail "b1: notify count $(last_notify "$WORK/b1"), wanted 1"
restored_continues "$WORK/a" "$WORK/b1"

# A restored VM's own snapshot: new ID again, second event.
restore_vm "$WORK/b2.snap" "$WORK/c"
id3=$(ids "$WORK/c")
[[ $id3 != "$id2" && $id3 != "$id1" && $id3 != "$id0" ]] || fail "chained restore reused an ID ($id3)"
[[ $(last_notify "$WORK/c") == 2 ]] || fail "c: notify count $(last_notify "$WORK/c"), wanted 2"

# --vmgenid off: no SSDT device; the counter guest's snapshot, which has
# no vmgenid record (as files from before the device), restores.
rc=$(run_guest vmgenid "$WORK/off" --vmgenid off)
# GUEST_EXIT_OK through the debug-exit port: (0 << 1) | 1.
expect_status "$rc" 1 "vmgenid guest without the device"
grep -q "^vmgenid: none" "$WORK/off" || fail "device found with --vmgenid off: $(head -n 3 "$WORK/off")"
start_stasis "$WORK/d" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--vmgenid off --api-socket "$S" --serial "file:$WORK/d"
wait_for_socket "$S"
counter_reaches "$WORK/d" 10 60
ctl "$S" snapshot "$WORK/off.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
"$STASIS" inspect "$WORK/off.snap" >"$WORK/off.inspect"
grep -Eq "DEVICE .* vmgenid$" "$WORK/off.inspect" &&
	fail "a vmgenid record with --vmgenid off"
grep -q '"vmgenid":"off"' "$WORK/off.inspect" || fail "--vmgenid off not recorded"
rm -f "$WORK/r.sock"
start_stasis "$WORK/e" restore "$WORK/off.snap" --api-socket "$WORK/r.sock" --serial "file:$WORK/e"
wait_for_socket "$WORK/r.sock"
wait_for_line "$WORK/e" "^counter: [0-9]+$" 60
ctl "$WORK/r.sock" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "restore without a vmgenid record"
restored_continues "$WORK/d" "$WORK/e"
