# After a restore in a fresh process, memtest finds its pattern, cpustate
# finds its registers, and a 2-vCPU smp guest keeps all CPUs counting.
. "$(dirname "$0")/../lib.sh"

# cycle NAME WAIT_RE AFTER_RE ARGS...: runs a guest until WAIT_RE, saves it
# with --then exit, restores it and waits for AFTER_RE to appear anew.
cycle() {
	local name=$1 wait_re=$2 after_re=$3 s=$WORK/$1.sock
	shift 3
	start_stasis "$WORK/$name.a" run --kernel "$GUESTS/$name.elf" --debug-exit \
		--api-socket "$s" --serial "file:$WORK/$name.a" "$@"
	wait_for_socket "$s"
	wait_for_line "$WORK/$name.a" "$wait_re" 90
	ctl "$s" snapshot "$WORK/$name.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "$name: run"
	rm -f "$s"
	start_stasis "$WORK/$name.b" restore "$WORK/$name.snap" --api-socket "$s" \
		--serial "file:$WORK/$name.b"
	wait_for_socket "$s"
	wait_for_line "$WORK/$name.b" "$after_re" 120
	ctl "$s" shutdown >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "$name: restored run"
}

cycle memtest "memtest: pass 1 ok" "memtest: pass [0-9]+ ok" \
	--mem 128M --cmdline "mib=48 seed=11"
grep -q MISMATCH "$WORK/memtest.b" && fail "memtest after restore: $(grep MISMATCH "$WORK/memtest.b")"
# The restored guest went on with the next pass, it did not start over.
grep -q "memtest: start" "$WORK/memtest.b" && fail "memtest restarted"

cycle cpustate "cpustate: check 2 ok" "cpustate: check [0-9]+ ok" \
	--cmdline "hz=250 interval_ms=200"
grep -q CORRUPT "$WORK/cpustate.b" && fail "cpustate after restore: $(grep CORRUPT "$WORK/cpustate.b")"
grep -q "cpustate: start" "$WORK/cpustate.b" && fail "cpustate restarted"

cycle smp "smp: cpus=2 totals" "smp: cpus=2 totals" --cpus 2 --cmdline "period_ms=300"
grep -q STALL "$WORK/smp.b" && fail "smp after restore: $(grep STALL "$WORK/smp.b")"
# Every CPU's total grew after the restore: compare the last line before
# with the last line after.
before=$(complete_text <"$WORK/smp.a" | sed -n 's/^smp: cpus=2 totals=//p' | tail -n 1)
after=$(complete_text <"$WORK/smp.b" | sed -n 's/^smp: cpus=2 totals=//p' | tail -n 1)
[[ $before =~ ^[0-9]+,[0-9]+$ && $after =~ ^[0-9]+,[0-9]+$ ]] ||
	fail "smp totals unreadable: '$before' -> '$after'"
IFS=, read -r b0 b1 <<<"$before"
IFS=, read -r a0 a1 <<<"$after"
((a0 > b0 && a1 > b1)) || fail "smp totals did not grow: $before -> $after"
