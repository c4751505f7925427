# memtest in a 5 GiB guest (RAM at 0-3 GiB and 4-6 GiB) with its region
# above 4 GiB, across the 5 GiB boundary: the guest kit maps RAM above
# 4 GiB with 2 MiB pages on every KVM, so every word there is written and
# read back at its own address (an alias or a missing mapping shows as a
# MISMATCH or a page fault, exit code 46). above= skips the low RAM
# without filling it.
. "$(dirname "$0")/../lib.sh"
rc=$(run_guest memtest "$WORK/out" --mem 5G \
	--cmdline "above=0x100000000 mib=1100 passes=2 ranges=1")
expect_status "$rc" 1 "memtest above 4 GiB"
grep -q "^memtest: pass 2 ok (1100 MiB)$" "$WORK/out" ||
	fail "no second pass: $(tail -n 2 "$WORK/out")"
high=0 top=0
while read -r _ _ start end; do
	((start >= 0x100000000)) || fail "a range below 4 GiB: $start $end"
	high=$((high + end - start))
	((end > top)) && top=$end
done < <(grep "^memtest: range " "$WORK/out")
((high == 1100 << 20)) ||
	fail "memtest holds $((high >> 20)) MiB above 4 GiB, want 1100: $(grep range "$WORK/out")"
((top > 0x140000000)) || fail "the region ends at $top, not past 5 GiB"
# The map ends with the RAM: 2 GiB above 4 GiB, and no more.
rc=$(run_guest memtest "$WORK/out2" --mem 5G \
	--cmdline "above=0x100000000 mib=2049 passes=1")
expect_status "$rc" 3 "memtest beyond the end of RAM (exit code 1)"
grep -q "memtest: ERROR cannot get 2049 MiB of RAM" "$WORK/out2" ||
	fail "no error for 2049 MiB above 4 GiB: $(tail -n 2 "$WORK/out2")"
