# cpustate keeps every GPR and vector register loaded in ring 3 across
# timer interrupts and checks them: the VMM must preserve the register file.
. "$(dirname "$0")/../lib.sh"
rc=$(run_guest cpustate "$WORK/out" --cmdline "checks=4 hz=250 interval_ms=200")
expect_status "$rc" 1 "cpustate"
grep -q "cpustate: check 4 ok" "$WORK/out" || fail "$(tail -n 3 "$WORK/out")"
rc=$(run_guest cpustate "$WORK/out2" --cmdline "checks=2 inject=gpr")
expect_status "$rc" 9 "cpustate inject=gpr (exit code 4)"
grep -q "CORRUPT" "$WORK/out2" || fail "inject=gpr went unnoticed"
