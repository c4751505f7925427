# A guest exception is the guest's business (the kit reports it and exits
# 32+vector); a triple fault ends the VM as a crash with a register dump.
. "$(dirname "$0")/../lib.sh"
rc=$(run_guest fault "$WORK/pf" --cmdline "kind=pf")
expect_status "$rc" $(((32 + 14) * 2 + 1)) "page fault"
grep -q "guest: exception 14" "$WORK/pf" || fail "no #PF report: $(cat "$WORK/pf")"

rc=$(run_guest fault "$WORK/triple" --cmdline "kind=triple")
expect_status "$rc" 4 "triple fault"
grep -q "triple fault" "$WORK/triple.err" || fail "no triple-fault message: $(cat "$WORK/triple.err")"
grep -q "rip " "$WORK/triple.err" || fail "no register dump: $(cat "$WORK/triple.err")"
