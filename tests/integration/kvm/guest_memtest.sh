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
# smp=1 tick_hz: CPU 0 prints a counter line per tick while CPU 1
# rewrites 8 MiB paced to 8 MiB/s (unpaced it writes far more a second);
# the guest ends once CPU 1 has made 3 passes.
rc=$(run_guest memtest "$WORK/out5" --mem 128M --cpus 2 --cmdline "mib=8 smp=1 tick_hz=1000 rate_mib=8 passes=3")
expect_status "$rc" 1 "memtest smp=1 tick_hz=1000 rate_mib=8"
grep -q "^counter: 1000$" "$WORK/out5" || fail "tick_hz: no counter line 1000: $(tail -n 2 "$WORK/out5")"
grep "^counter: " "$WORK/out5" | awk '{ if ($2 <= last) { print; exit 1 } last = $2 }' >/dev/null ||
	fail "tick_hz: the counter lines repeat or go back"
w=$(sed -n 's/^memtest: second 2 wrote \([0-9]*\) MiB (8 MiB, cpus=2 passes=0,[0-9]*)$/\1/p' "$WORK/out5")
[[ -n $w ]] && ((w >= 5 && w <= 11)) || fail "rate_mib=8: second 2 wrote '${w}' MiB: $(grep 'second' "$WORK/out5")"
