# memtest in a 5 GiB guest with a region that runs past 4 GiB: the guest
# kit maps RAM above 4 GiB with 2 MiB pages on every KVM, so every word up
# there is written and read back at its own address (an alias or a missing
# mapping shows as a MISMATCH or a page fault, exit code 46).
. "$(dirname "$0")/../lib.sh"
# Low RAM free to memtest is 0x200000-0xc0000000 (3070 MiB); 3136 MiB
# must take at least 66 MiB above 4 GiB.
rc=$(run_guest memtest "$WORK/out" --mem 5G --cmdline "mib=3136 passes=2 ranges=1")
expect_status "$rc" 1 "memtest above 4 GiB"
grep -q "^memtest: pass 2 ok (3136 MiB)$" "$WORK/out" ||
	fail "no second pass: $(tail -n 2 "$WORK/out")"
high=0
while read -r _ _ start end; do
	if ((end > 0x100000000)); then
		lo=$((start > 0x100000000 ? start : 0x100000000))
		high=$((high + end - lo))
	fi
done < <(grep "^memtest: range " "$WORK/out")
((high >= 66 << 20)) ||
	fail "memtest held $((high >> 20)) MiB above 4 GiB, want >= 66: $(grep range "$WORK/out")"
