# 100 chained cycles: restore, run a little, snapshot again. cpustate
# checks its registers and counter checks its continuity the whole way.
. "$(dirname "$0")/../lib.sh"
CYCLES=${STASIS_CHAIN_CYCLES:-100}

chain() {
	local name=$1 progress_re=$2 s=$WORK/$1.sock i
	shift 2
	start_stasis "$WORK/$name.0" run --kernel "$GUESTS/$name.elf" --debug-exit \
		--api-socket "$s" --serial "file:$WORK/$name.0" "$@"
	wait_for_socket "$s"
	wait_for_line "$WORK/$name.0" "$progress_re" 60
	ctl "$s" snapshot "$WORK/$name.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	for ((i = 1; i <= CYCLES; i++)); do
		rm -f "$s"
		start_stasis "$WORK/$name.$i" restore "$WORK/$name.snap" \
			--api-socket "$s" --serial "file:$WORK/$name.$i"
		wait_for_socket "$s"
		# Let the guest run until it prints one line of its own.
		wait_for_line "$WORK/$name.$i" "$progress_re" 60
		ctl "$s" snapshot "$WORK/$name.snap" --then exit >/dev/null
		wait_exit "$VM_PID" 60
		expect_status "$RC" 0 "$name cycle $i"
		if grep -Eq "ERROR|CORRUPT|MISMATCH|start$" "$WORK/$name.$i"; then
			fail "$name cycle $i: $(grep -E "ERROR|CORRUPT|MISMATCH|start$" "$WORK/$name.$i")"
		fi
	done
}

chain counter "^counter: [0-9]+$" --cmdline "hz=200"
# Continuity across all the cycles: join every run's output in order.
for ((i = 0; i <= CYCLES; i++)); do cat "$WORK/counter.$i"; done >"$WORK/all"
check_increasing "$WORK/all"

chain cpustate "cpustate: check [0-9]+ ok" --cmdline "hz=250 interval_ms=100"
note "$CYCLES cycles of counter and cpustate"
