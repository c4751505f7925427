# Shared helpers for the integration tests: each test is a bash script
# that sources this file, runs stasis on guest-kit images and exits 0 when
# every check held. STASIS and GUESTS come from tests/run-all.sh.
set -euo pipefail

: "${STASIS:?STASIS must point at the stasis binary}"
: "${GUESTS:?GUESTS must point at the built guest images}"
# Emulated hosts (the nested test VM) are slower: scale every timeout.
: "${STASIS_TIME_SCALE:=1}"

TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stasis-$TEST_NAME.XXXXXX")
BG_PIDS=()

cleanup() {
	local rc=$? pid
	for pid in "${BG_PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	# A failing test ends with stasis's own lines on a triple fault, from
	# any stasis stderr here: in the nested VM, tests/run-all.sh runs a
	# test once more when they show a vCPU in its power-on state.
	if [[ $rc != 0 ]]; then
		find "$WORK" -maxdepth 2 -name '*.err' -size -20M \
			-exec grep -H -e 'KVM_EXIT_SHUTDOWN' -e 'power-on values' {} + 2>/dev/null |
			head -n 8 | sed "s|^$WORK/|$TEST_NAME: stasis stderr, |" >&2 || true
	fi
	# STASIS_KEEP_WORK=DIR keeps copies of the scratch files there.
	if [[ -n ${STASIS_KEEP_WORK:-} ]]; then
		mkdir -p "$STASIS_KEEP_WORK/$TEST_NAME"
		find "$WORK" -maxdepth 1 -type f -size -20M \
			-exec cp {} "$STASIS_KEEP_WORK/$TEST_NAME/" \;
		echo "$TEST_NAME: scratch files kept in $STASIS_KEEP_WORK/$TEST_NAME" >&2
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
	echo "$TEST_NAME: FAIL: $*" >&2
	exit 1
}

note() {
	echo "$TEST_NAME: $*" >&2
}

# scaled SECONDS: prints SECONDS times the time scale (integer).
scaled() {
	echo $(($1 * STASIS_TIME_SCALE))
}

# run_guest NAME OUTFILE [stasis run options...]: runs a guest to its end
# with the debug-exit port, serial output into OUTFILE; prints the status.
run_guest() {
	local name=$1 out=$2
	shift 2
	local rc=0
	timeout -s KILL "$(scaled 120)" "$STASIS" run \
		--kernel "$GUESTS/$name.elf" --debug-exit \
		--serial "file:$out" "$@" </dev/null 2>"$out.err" || rc=$?
	echo "$rc"
}

# start_vm OUTFILE SOCKET [stasis run|restore arguments...]: starts stasis
# in the background with an API socket; sets VM_PID.
start_stasis() {
	local out=$1
	shift
	"$STASIS" "$@" </dev/null >"$out.stdout" 2>"$out.err" &
	VM_PID=$!
	BG_PIDS+=("$VM_PID")
}

# wait_for_socket SOCKET: waits until the control API answers.
wait_for_socket() {
	local sock=$1 i
	for ((i = 0; i < $(scaled 300); i++)); do
		if [[ -S $sock ]] && "$STASIS" ctl "$sock" status >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	fail "control socket $sock never answered"
}

# wait_for_line FILE REGEX SECONDS: waits until FILE has a line matching.
wait_for_line() {
	local file=$1 re=$2 secs=$3 i
	for ((i = 0; i < $(scaled "$secs") * 10; i++)); do
		if [[ -f $file ]] && grep -Eq "$re" "$file"; then
			return 0
		fi
		sleep 0.1
	done
	fail "no line matching '$re' in $file within $(scaled "$secs") s: $(tail -n 3 "$file" 2>/dev/null | tr '\n' '|')"
}

# wait_exit PID SECONDS: waits for a background stasis and sets RC to its
# exit status. (Not in $(...): only this shell can wait for its child.)
wait_exit() {
	local pid=$1 secs=$2 i
	RC=0
	for ((i = 0; i < $(scaled "$secs") * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null || [[ $(ps -o stat= -p "$pid") == Z* ]]; then
			wait "$pid" || RC=$?
			return 0
		fi
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	fail "stasis (pid $pid) did not exit within $(scaled "$secs") s"
}

# expect_status GOT WANT WHAT
expect_status() {
	[[ $1 == "$2" ]] || fail "$3: exit status $1, expected $2"
}

# complete_text: stdin up to its last newline. A snapshot with --then exit
# can stop the guest half way through a line ("counter: 32" of 323), which
# the restored VM finishes in its own output; a live file may end in a line
# still being written.
complete_text() {
	local t
	t=$(
		cat
		echo .
	)
	t=${t%.}
	if [[ $t == *$'\n' ]]; then
		printf '%s' "$t"
	elif [[ $t == *$'\n'* ]]; then
		printf '%s\n' "${t%$'\n'*}"
	fi
}

# counter_sed: the counter values of the lines on stdin.
counter_sed() {
	sed -n 's/^counter: \([0-9][0-9]*\)\r\{0,1\}$/\1/p'
}

# counter_values FILE: the counter values of FILE's complete lines, one per
# line.
counter_values() {
	complete_text <"$1" | counter_sed
}

# check_increasing FILE: the counter values are strictly increasing.
check_increasing() {
	counter_values "$1" | awk 'NR > 1 && $1 <= prev { print "not increasing at " prev " -> " $1; bad = 1 } { prev = $1 } END { exit bad }' ||
		fail "counter in $1 is not strictly increasing"
}

# ctl SOCKET ARGS...: the control client, failing the test on error.
ctl() {
	timeout -s KILL "$(scaled 120)" "$STASIS" ctl "$@" ||
		fail "stasis ctl $* failed (status $?)"
}

# last_counter FILE: the last complete counter value in FILE.
last_counter() {
	# Only the file's end: a 2000 Hz counter writes megabytes, and this is
	# polled. A line cut at the chunk's start does not match the pattern;
	# one still being written at its end is left out.
	tail -c 4096 "$1" 2>/dev/null | complete_text | counter_sed | tail -n 1
}

# first_counter FILE: the first counter value in FILE.
first_counter() {
	head -c 4096 "$1" 2>/dev/null | complete_text | counter_sed | head -n 1
}

# counter_reaches FILE N SECONDS: waits until the counter reaches N.
counter_reaches() {
	local file=$1 n=$2 end=$((SECONDS + $(scaled "$3"))) v
	while ((SECONDS < end)); do
		v=$(last_counter "$file")
		[[ -n $v && $v -ge $n ]] && return 0
		sleep 0.1
	done
	fail "counter in $file stuck at '$(last_counter "$file")', wanted $n"
}

# restored_continues BEFORE AFTER [MAX_GAP]: the restored guest's first
# complete value follows the last one printed before the snapshot. The
# counter prints each new tick it sees, so on a loaded host printing may
# fall a few ticks behind: the gap may be up to MAX_GAP (default 100, one
# second at hz=100), never backwards, never a restart.
restored_continues() {
	local before after gap=${3:-100}
	before=$(last_counter "$1")
	after=$(first_counter "$2")
	[[ -n $before && -n $after ]] || fail "no counter values ($before, $after)"
	((after > before && after <= before + gap)) ||
		fail "counter jumped from $before (before) to $after (after restore)"
	check_increasing "$2"
}

# blk_last_pass FILE: the number of blktest's last completed pass.
blk_last_pass() {
	sed -n 's/^blktest: pass \([0-9][0-9]*\) ok .*/\1/p' "$1" | tail -n 1
}

# blk_clean FILE [restored]: no corruption, no device error; a restored
# guest did not start over.
blk_clean() {
	grep -Eq '^blktest: (CORRUPT|ERROR)' "$1" && fail "$1: $(grep -E '^blktest: (CORRUPT|ERROR)' "$1")"
	[[ ${2:-} == restored ]] && grep -q '^blktest: start' "$1" && fail "$1: blktest started over"
	grep -q '^guest: ' "$1" && fail "$1: $(grep '^guest: ' "$1")"
	return 0
}

# blk_passes_continue ORIGINAL RESTORED: the original's passes then the
# restored VM's (joined where the snapshot cut a line in two) count 1, 2,
# 3... with no pass repeated or skipped: the pass in progress at the
# snapshot is the first to end after the restore.
blk_passes_continue() {
	cat "$1" "$2" | sed -n 's/^blktest: pass \([0-9][0-9]*\) ok .*/\1/p' |
		awk '$1 != NR { print "pass " $1 " where pass " NR " was due"; bad = 1; exit }
			END { exit bad }' >"$2.passes" ||
		fail "$2: across the restore: $(cat "$2.passes")"
}
