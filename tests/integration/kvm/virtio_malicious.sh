# A guest that breaks its virtqueue on purpose (rngtest inject=: a
# descriptor loop, a buffer outside RAM, a buffer longer than RAM) gets
# its device put in NEEDS_RESET, and stasis carries on: it says so in one
# line, answers the API, snapshots and restores the VM with the device
# still in NEEDS_RESET, the driver's reset brings the device back, and
# the VM shuts down cleanly.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock

for kind in loop range len; do
	rc=$(run_guest rngtest "$WORK/$kind" --rng --cmdline "inject=$kind")
	expect_status "$rc" 1 "rngtest inject=$kind: $(tail -n 2 "$WORK/$kind" | tr '\n' '|')"
	grep -q "^rngtest: NEEDS_RESET after inject=$kind$" "$WORK/$kind" ||
		fail "inject=$kind: $(tail -n 2 "$WORK/$kind")"
	[[ $(grep -c . "$WORK/$kind.err") == 1 ]] &&
		grep -q "rng0: .*needs a reset" "$WORK/$kind.err" ||
		fail "inject=$kind: stasis stderr: $(cat "$WORK/$kind.err")"
done

# The device stays in NEEDS_RESET (the guest checks for recover_ms) while
# the VM is snapshotted, and after the restore the driver resets it and
# reads entropy again, woken by MSI-X.
start_stasis "$WORK/a" run --kernel "$GUESTS/rngtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --rng \
	--cmdline "inject=loop recover_ms=$(scaled 5000) rounds=0 irq=wait"
wait_for_socket "$S"
wait_for_line "$WORK/a" "^rngtest: NEEDS_RESET after inject=loop$" 60
expect_state "$S" running "status after NEEDS_RESET"
ctl "$S" snapshot "$WORK/a.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "run after snapshot --then exit"
grep -q "recovered" "$WORK/a" && fail "the guest recovered before the snapshot (recover_ms too short)"

rm -f "$S"
start_stasis "$WORK/b" restore "$WORK/a.snap" --api-socket "$S" --serial "file:$WORK/b"
wait_for_socket "$S"
wait_for_line "$WORK/b" "^rngtest: ok 4096 bytes" 120
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "restored rngtest shutdown"
grep -q "^rngtest: recovered after reset$" "$WORK/b" || fail "no recovery: $(cat "$WORK/b")"
if grep -Eq "^rngtest: (FAIL|ERROR|start)" "$WORK/b"; then
	fail "restored rngtest: $(grep -E '^rngtest: (FAIL|ERROR|start)' "$WORK/b")"
fi
