# memtest fills RAM with a seeded pattern and verifies it; the self-test
# (inject=1) proves the check can fail.
. "$(dirname "$0")/../lib.sh"
rc=$(run_guest memtest "$WORK/out" --mem 128M --cmdline "mib=32 passes=2 seed=7")
expect_status "$rc" 1 "memtest"
grep -q "memtest: pass 2 ok (32 MiB)" "$WORK/out" || fail "no second pass: $(tail -n 2 "$WORK/out")"
rc=$(run_guest memtest "$WORK/out2" --mem 128M --cmdline "mib=8 passes=1 inject=1")
expect_status "$rc" 5 "memtest inject=1 (exit code 2)"
grep -q "MISMATCH" "$WORK/out2" || fail "inject=1 found no mismatch"
# Asking for more than the VM has is the guest's error, not a crash.
rc=$(run_guest memtest "$WORK/out3" --mem 32M --cmdline "mib=64 passes=1")
expect_status "$rc" 3 "memtest too big (exit code 1)"
# smp=1: both CPUs rewrite and verify their slice pass after pass; the
# guest ends once each has made 3.
rc=$(run_guest memtest "$WORK/out4" --mem 128M --cpus 2 --cmdline "mib=32 smp=1 passes=3")
expect_status "$rc" 1 "memtest smp=1"
tail -n 1 "$WORK/out4" | grep -Eq "^memtest: pass [0-9]+ ok \(32 MiB, cpus=2 passes=([3-9]|[1-9][0-9]+),([3-9]|[1-9][0-9]+)\)" ||
	fail "smp=1: the last line is not both CPUs past pass 3: $(tail -n 2 "$WORK/out4")"
