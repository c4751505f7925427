# smp starts every CPU through INIT-SIPI-SIPI on the in-kernel LAPIC and
# checks that all keep counting.
. "$(dirname "$0")/../lib.sh"
for n in 2 4; do
	rc=$(run_guest smp "$WORK/out$n" --cpus "$n" --cmdline "rounds=3 period_ms=300")
	expect_status "$rc" 1 "smp with $n CPUs: $(tail -n 2 "$WORK/out$n" | tr '\n' '|') $(head -n 4 "$WORK/out$n.err" | tr '\n' '|')"
	grep -q "smp: $n cpus online" "$WORK/out$n" || fail "$n CPUs: $(tail -n 3 "$WORK/out$n")"
	[[ $(grep -c "smp: cpus=$n totals=" "$WORK/out$n") -ge 3 ]] || fail "$n CPUs: no totals"
done
