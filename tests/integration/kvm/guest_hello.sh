# hello prints exactly one line and exits through the debug-exit port with
# code 0, i.e. status 1, as under QEMU's isa-debug-exit.
. "$(dirname "$0")/../lib.sh"
rc=$(run_guest hello "$WORK/out")
expect_status "$rc" 1 "hello"
[[ $(cat "$WORK/out") == "hello from the stasis guest kit" ]] ||
	fail "unexpected output: $(head -c 200 "$WORK/out")"
[[ ! -s $WORK/out.err ]] || fail "stasis printed on stderr: $(cat "$WORK/out.err")"

# Serial on stdout is the default.
out=$(timeout -s KILL "$(scaled 60)" "$STASIS" run --kernel "$GUESTS/hello.elf" \
	--debug-exit </dev/null) && fail "status 0 from a debug-exit guest"
[[ $out == "hello from the stasis guest kit" ]] || fail "stdout: $out"

# The same options from a JSON config file, with a flag overriding it.
cat >"$WORK/vm.json" <<JSON
{"kernel": "$GUESTS/hello.elf", "mem": "64M", "cpus": 4, "debug_exit": true,
 "serial": "none"}
JSON
rc=0
timeout -s KILL "$(scaled 60)" "$STASIS" run --config "$WORK/vm.json" \
	--serial "file:$WORK/out2" </dev/null || rc=$?
expect_status "$rc" 1 "hello from --config"
[[ $(cat "$WORK/out2") == "hello from the stasis guest kit" ]] || fail "config run output"

# Without --debug-exit the port is unclaimed: the guest's write is ignored
# and it halts; stasis must still stop on SIGTERM with 128+15.
start_stasis "$WORK/out3" run --kernel "$GUESTS/hello.elf" --serial "file:$WORK/out3"
wait_for_line "$WORK/out3" "hello from" 30
kill -TERM "$VM_PID"
wait_exit "$VM_PID" 30
expect_status "$RC" 143 "SIGTERM"

# Power-off (ACPI S5) ends stasis with status 0; a reset request too, with
# a message saying stasis does not reboot guests.
rc=$(run_guest hello "$WORK/off" --cmdline "end=poweroff")
expect_status "$rc" 0 "ACPI power-off"
rc=$(run_guest hello "$WORK/reset" --cmdline "end=reset")
expect_status "$rc" 0 "ACPI reset"
grep -q "reset" "$WORK/reset.err" || fail "no reset message: $(cat "$WORK/reset.err")"
