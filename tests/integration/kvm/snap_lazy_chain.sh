# Ten chained snapshot-restore cycles in ondemand mode: each lazy restore
# runs memtest through three more verified passes over its 16 MiB, then is
# saved again with --then exit, and the next cycle restores that file.
# In the end memory is intact: no pass found a wrong word, pass numbers
# only went up across the cycles, and the last file restored lazily and
# saved again at once holds the same memory chunk for chunk.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lazy_lib.sh"
CYCLES=${STASIS_LAZY_CYCLES:-10}
S=$WORK/api.sock
memtest_snapshot "$WORK/out.0" "$WORK/chain.snap" --vmgenid off
for ((i = 1; i <= CYCLES; i++)); do
	last=$(last_pass "$WORK/out.$((i - 1))")
	[[ -n $last ]] || fail "cycle $((i - 1)) printed no whole pass line"
	rm -f "$S"
	start_stasis "$WORK/out.$i" restore "$WORK/chain.snap" \
		--memory ondemand --api-socket "$S" --serial "file:$WORK/out.$i"
	wait_for_socket "$S"
	# The first whole line after a restore is the second; the start of
	# the third ends it, so the next cycle has a whole line to go on.
	wait_for_line "$WORK/out.$i" "^memtest: pass $((last + 3)) " 120
	ctl "$S" snapshot "$WORK/chain.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "cycle $i"
	intact "$WORK/out.$i"
	! grep -q "memtest: start" "$WORK/out.$i" || fail "cycle $i: memtest started over"
done
for ((i = 0; i <= CYCLES; i++)); do complete_text <"$WORK/out.$i"; done |
	sed -n 's/^memtest: pass \([0-9]*\) ok.*/\1/p' >"$WORK/passes"
awk 'NR > 1 && $1 <= prev { print "pass " prev " then " $1; bad = 1 } { prev = $1 } END { exit bad }' \
	"$WORK/passes" || fail "pass numbers went back across cycles"
"$STASIS" verify "$WORK/chain.snap" >/dev/null || fail "the last snapshot does not verify"
same_memory "$WORK/chain.snap" last-again
note "$CYCLES lazy cycles, $(wc -l <"$WORK/passes") verified passes, last pass $(tail -n 1 "$WORK/passes")"
