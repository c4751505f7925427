# 100 chained cycles: restore, run a little, snapshot again. cpustate keeps
# every register loaded and checks it; its check number must keep growing
# across all the cycles (no cycle starts over or goes back).
. "$(dirname "$0")/../lib.sh"
CYCLES=${STASIS_CHAIN_CYCLES:-100}
S=$WORK/api.sock
PROGRESS="cpustate: check [0-9]+ ok"

start_stasis "$WORK/out.0" run --kernel "$GUESTS/cpustate.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/out.0" --mem 32M \
	--cmdline "hz=250 interval_ms=50"
wait_for_socket "$S"
wait_for_line "$WORK/out.0" "$PROGRESS" 60
ctl "$S" snapshot "$WORK/chain.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
for ((i = 1; i <= CYCLES; i++)); do
	rm -f "$S"
	start_stasis "$WORK/out.$i" restore "$WORK/chain.snap" \
		--api-socket "$S" --serial "file:$WORK/out.$i"
	wait_for_socket "$S"
	# Let the guest complete at least one check of its own.
	wait_for_line "$WORK/out.$i" "$PROGRESS" 60
	ctl "$S" snapshot "$WORK/chain.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "cycle $i"
	if grep -Eq "CORRUPT|ERROR|start$" "$WORK/out.$i"; then
		fail "cycle $i: $(grep -E "CORRUPT|ERROR|start$" "$WORK/out.$i")"
	fi
done
# Joined in order, the outputs form one run whose checks only go up.
for ((i = 0; i <= CYCLES; i++)); do cat "$WORK/out.$i"; done |
	sed -n 's/^cpustate: check \([0-9]*\) ok\r\{0,1\}$/\1/p' >"$WORK/checks"
[[ $(wc -l <"$WORK/checks") -gt $CYCLES ]] || fail "only $(wc -l <"$WORK/checks") checks in $CYCLES cycles"
awk 'NR > 1 && $1 <= prev { print "check " prev " then " $1; bad = 1 } { prev = $1 } END { exit bad }' \
	"$WORK/checks" || fail "check numbers went back across cycles"
"$STASIS" verify "$WORK/chain.snap" >/dev/null || fail "last snapshot does not verify"
note "$CYCLES cycles, $(tail -n 1 "$WORK/checks") register checks passed"
