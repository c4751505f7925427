# The damage campaign: a snapshot of a small VM (counter guest, a read-only
# disk, an rng, so that there are virtio DEVICE records) is damaged at
# random in one payload of CONFIG, CPUID, CLOCK, VCPU, IRQCHIP, PIT, DEVICE
# or MEMORY, its checksum recomputed (tests/tools/snapdamage.c, seeded),
# and restored under the sanitizer build. Every restore must end one of
# these ways: a clean refusal (status 2, one line), a VM that runs (its
# own end, the guest's debug exit, or still running when the test stops
# it with SIGTERM),
# or a guest crash reported cleanly (status 4). Never a sanitizer report,
# a host crash or a hang. STASIS_DAMAGE_RUNS sets the count (24; seeds
# from STASIS_DAMAGE_SEED, 1), one in four with --memory copy, the others
# mapped;
# snap_damage_b.sh runs the next 24 seeds, so that each stays within one
# test's time in the nested test VM.
. "$(dirname "$0")/../lib.sh"
DAMAGE=$BUILD/tests/tools/snapdamage
RUNS=${STASIS_DAMAGE_RUNS:-24}
FIRST=${DAMAGE_FIRST_SEED:-${STASIS_DAMAGE_SEED:-1}}
S=$WORK/api.sock

truncate -s 1M "$WORK/disk.img"
# The counter runs until stopped: a restored VM that runs is given a
# second (scaled), then SIGTERM (which stasis answers by exiting, 143).
start_stasis "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --mem 32M \
	--disk "$WORK/disk.img,ro" --rng --cmdline "hz=10"
wait_for_socket "$S"
counter_reaches "$WORK/a" 2 60
ctl "$S" snapshot "$WORK/good.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "counter after snapshot --then exit"
"$STASIS" verify "$WORK/good.snap" >/dev/null || fail "the good snapshot does not verify"

# The sanitizers end the process with a status of their own, told apart
# from stasis's; their reports are searched for too.
export ASAN_OPTIONS=detect_leaks=0:exitcode=99:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=98

declare -A seen=()
refused=0 ran=0 crashed=0
for ((seed = FIRST; seed < FIRST + RUNS; seed++)); do
	what=$("$DAMAGE" "$WORK/good.snap" "$WORK/d.snap" "$seed") || fail "snapdamage $seed: $what"
	type=${what#*: }
	seen[${type%% *}]=1
	mode=map
	((seed % 4 == 1)) && mode=copy
	# verify reads every record: it may find a damaged layout (1), never
	# crash. Every fourth seed, to keep the campaign's time down.
	rc=0
	: >"$WORK/v.err"
	if ((seed % 4 == 0)); then
		"$STASIS" verify "$WORK/d.snap" >/dev/null 2>"$WORK/v.err" || rc=$?
	fi
	[[ $rc == 0 || $rc == 1 ]] || fail "$what: verify status $rc: $(head -c 600 "$WORK/v.err")"
	rc=0
	timeout --preserve-status -k "$(scaled 10)" -s TERM "$(scaled 1)" "$STASIS" restore "$WORK/d.snap" \
		--serial none --memory "$mode" </dev/null >/dev/null 2>"$WORK/r.err" || rc=$?
	if grep -Eq 'Sanitizer|runtime error|SUMMARY:' "$WORK/r.err" "$WORK/v.err"; then
		fail "$what ($mode): sanitizer report: $(grep -E -m3 'Sanitizer|runtime error' "$WORK/r.err" "$WORK/v.err")"
	fi
	case $rc in
	2)
		[[ $(grep -c . "$WORK/r.err") == 1 ]] && grep -q '^stasis: error: ' "$WORK/r.err" ||
			fail "$what: a refusal that is not one line: $(head -c 600 "$WORK/r.err")"
		refused=$((refused + 1))
		;;
	0 | 143) ran=$((ran + 1)) ;;
	4) crashed=$((crashed + 1)) ;;
	*)
		# An odd status is the guest's own debug exit: it ran, and
		# may have seen its state was odd (counter code 3).
		((rc % 2 == 1 && rc < 128)) ||
			fail "$what ($mode): restore status $rc: $(head -c 600 "$WORK/r.err")"
		ran=$((ran + 1))
		;;
	esac
done
note "$RUNS restores (seeds $FIRST..$((FIRST + RUNS - 1))): $refused refused, $ran ran, $crashed guest crashes"
# Every payload type was damaged at least once (the tool takes them in
# turn), once there are runs enough for all eight.
if ((RUNS >= 8)); then
	for t in CONFIG CPUID CLOCK VCPU IRQCHIP PIT DEVICE MEMORY; do
		[[ -n ${seen[$t]:-} ]] || fail "no $t record was damaged"
	done
fi
# The refusals were not all of one kind: the damage reached past the
# first checks.
((refused < RUNS)) || fail "every damaged snapshot was refused: nothing ran"
