# Shared helpers for the integration tests: each test is a bash script
# that sources this file, runs stasis on guest-kit images and exits 0 when
# every check held. STASIS and GUESTS come from tests/run-all.sh.
# -E: the ERR trap below also fires inside functions and subshells.
set -eEuo pipefail

: "${STASIS:?STASIS must point at the stasis binary}"
: "${GUESTS:?GUESTS must point at the built guest images}"
# Emulated hosts (the nested test VM) are slower: scale every timeout.
: "${STASIS_TIME_SCALE:=1}"

TEST_NAME=$(basename "$0" .sh)
BG_PIDS=()
# Set once this shell has said why the test fails.
TEST_SAID=

# A test that stops must say why: set -e ends the script on any failing
# command, which would otherwise go unexplained (a grep -c of nothing, a
# pipeline cut short). The ERR trap names the command, its line and its
# status before the shell dies. Bash runs it under the same rules as set -e:
# not for `cmd || ...`, `cmd && ...` (but the last), `if cmd`, `while cmd`
# or `! cmd`, nor inside functions called there. In a command substitution
# set -e is off (so a failure there ends nothing and is not reported); the
# assignment that receives a failed substitution fails in turn and is
# reported, in the shell that dies of it.
test_on_err() {
	local status=$1 cmd=$2 pipe=$3 line=${BASH_LINENO[0]} src=${BASH_SOURCE[1]}
	local where="" i
	[[ $- == *e* ]] || return 0
	if [[ ${FUNCNAME[1]} != main || $src != "$0" ]]; then
		where=" (${src##*/}, in ${FUNCNAME[1]}"
		# The first frame in the test script itself.
		for ((i = 1; i < ${#FUNCNAME[@]} - 1; i++)); do
			if [[ ${BASH_SOURCE[i + 1]} == "$0" ]]; then
				where+=", called from line ${BASH_LINENO[i]}"
				break
			fi
		done
		where+=")"
	fi
	[[ $pipe == *" "* ]] && where+=" (pipeline statuses: $pipe)"
	echo "$TEST_NAME: FAIL: line $line: $cmd exited $status$where" >&2
	TEST_SAID=1
}
trap 'test_on_err "$?" "$BASH_COMMAND" "${PIPESTATUS[*]}"' ERR

# The runner's time limit (SIGTERM from timeout) ends a test too: say what
# it was doing. The EXIT trap then cleans up.
test_on_term() {
	echo "$TEST_NAME: FAIL: killed by SIGTERM (time limit?) while running: $1" >&2
	TEST_SAID=1
	exit 143
}
trap 'test_on_term "$BASH_COMMAND"' TERM

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stasis-$TEST_NAME.XXXXXX")

# at_exit COMMAND [ARG...]: runs COMMAND when the test ends, before the
# scratch directory goes (e.g. unmounting something mounted there).
AT_EXIT=()
at_exit() {
	AT_EXIT+=("$(printf '%q ' "$@")")
}

cleanup() {
	local rc=${1:-0} pid c
	for c in "${AT_EXIT[@]}"; do
		eval "$c" || true
	done
	for pid in "${BG_PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	# A failing test ends with stasis's own lines on a triple fault or a
	# refused system call, from any stasis stderr here: in the nested VM,
	# tests/run-all.sh runs a test once more when they show a vCPU in its
	# power-on state.
	if [[ $rc != 0 ]]; then
		find "$WORK" -maxdepth 2 -name '*.err' -size -20M \
			-exec grep -H -e 'KVM_EXIT_SHUTDOWN' -e 'power-on values' \
			-e 'seccomp:' {} + 2>/dev/null |
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

# test_on_exit LAST_COMMAND: cleans up; a non-zero exit that nothing
# explained (an explicit exit, a script ending in a failed `a && b`) says
# so, with the last command run.
test_on_exit() {
	local status=$?
	# Cleaning up is not the test: nothing here is a failure to report.
	trap - ERR
	if ((status != 0)) && [[ -z $TEST_SAID ]]; then
		echo "$TEST_NAME: FAIL: exited with status $status without a message; last command: $1" >&2
	fi
	cleanup "$status"
	return "$status"
}
trap 'test_on_exit "$BASH_COMMAND"' EXIT

# fail MESSAGE: says why the test fails, and where (the test's line that
# called it, directly or through helpers), and ends it.
fail() {
	local i at=""
	for ((i = 0; i < ${#BASH_LINENO[@]} - 1; i++)); do
		if [[ ${BASH_SOURCE[i + 1]} == "$0" ]]; then
			at=" (line ${BASH_LINENO[i]})"
			break
		fi
	done
	echo "$TEST_NAME: FAIL: $*$at" >&2
	TEST_SAID=1
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

# wait_until SECONDS COMMAND [ARG...]: polls COMMAND every 0.1 s (POLL)
# until it succeeds, for at most SECONDS (scaled) of wall time; returns 1
# then, for the caller to say what did not happen (`|| fail ...`). A
# condition, never a fixed sleep: it ends as soon as the condition holds
# on a fast host and waits long enough on a slow one.
wait_until() {
	local end=$((SECONDS + $(scaled "$1") + 1))
	shift
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep "${POLL:-0.1}"
	done
}

# socket_answers SOCKET: the control API answers a status request.
socket_answers() {
	[[ -S $1 ]] && "$STASIS" ctl "$1" status >/dev/null 2>&1
}

# wait_for_socket SOCKET: waits until the control API answers.
wait_for_socket() {
	wait_until 60 socket_answers "$1" ||
		fail "control socket $1 never answered within $(scaled 60) s"
}

# has_line FILE REGEX: FILE exists and has a line matching the extended
# REGEX.
has_line() {
	[[ -f $1 ]] && grep -Eq -- "$2" "$1"
}

# wait_for_line FILE REGEX SECONDS: waits until FILE has a line matching.
wait_for_line() {
	wait_until "$3" has_line "$1" "$2" ||
		fail "no line matching '$2' in $1 within $(scaled "$3") s: $(tail -n 3 "$1" 2>/dev/null | tr '\n' '|')"
}

# line_count FILE REGEX: the number of FILE's lines matching the extended
# REGEX; 0 (and status 0) when none do or FILE does not exist yet. Not
# `grep -c`, which exits 1 on a count of 0: on a fast host a count is often
# taken before the guest printed its first such line.
line_count() {
	local n
	n=$(grep -Ec -- "$2" "$1" 2>/dev/null) || true
	echo "${n:-0}"
}

# count_reaches FILE REGEX N: at least N lines of FILE match REGEX.
count_reaches() {
	(($(line_count "$1" "$2") >= $3))
}

# wait_for_count FILE REGEX N SECONDS: waits until N lines of FILE match
# REGEX. For "the next line": take the count when the event of interest
# has happened (after it, never before), then wait for count + 1.
wait_for_count() {
	wait_until "$4" count_reaches "$1" "$2" "$3" ||
		fail "$1: $(line_count "$1" "$2") lines matching '$2' after $(scaled "$4") s, wanted $3: $(tail -n 3 "$1" 2>/dev/null | tr '\n' '|')"
}

# wait_exit PID SECONDS: waits for a background stasis and sets RC to its
# exit status. (Not in $(...): only this shell can wait for its child.)
wait_exit() {
	local pid=$1 secs=$2
	RC=0
	if wait_until "$secs" pid_exited "$pid"; then
		wait "$pid" || RC=$?
		return 0
	fi
	kill -9 "$pid" 2>/dev/null || true
	fail "stasis (pid $pid) did not exit within $(scaled "$secs") s"
}

# pid_exited PID: PID has ended (a child that exited stays a zombie, which
# kill -0 still finds, until this shell waits for it).
pid_exited() {
	! kill -0 "$1" 2>/dev/null || [[ $(ps -o stat= -p "$1") == Z* ]]
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

# vm_state SOCKET: the VM's state word from status (running, paused).
# Read whole, not piped into grep -q: grep exits at its match, and under
# pipefail a writer still writing then fails the pipeline with SIGPIPE.
vm_state() {
	local st
	st=$(ctl "$1" status) || return 1
	st=${st#*state: }
	echo "${st%%$'\n'*}"
}

# expect_state SOCKET STATE WHAT: the VM is in STATE.
expect_state() {
	local st
	st=$(vm_state "$1") || fail "$3: no status"
	[[ $st == "$2" ]] || fail "$3: state '$st', expected '$2'"
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

# counter_at_least FILE N: the last complete counter value is N or more.
counter_at_least() {
	local v
	v=$(last_counter "$1")
	[[ -n $v && $v -ge $2 ]]
}

# counter_reaches FILE N SECONDS: waits until the counter reaches N.
counter_reaches() {
	wait_until "$3" counter_at_least "$1" "$2" ||
		fail "counter in $1 stuck at '$(last_counter "$1")', wanted $2"
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

# flip_byte FILE OFFSET [MASK]: XORs the byte at OFFSET with MASK (0xff)
# in place.
flip_byte() {
	local b
	b=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
	[[ -n $b ]] || fail "flip_byte: $1 has no byte at $2"
	printf "$(printf '\\%03o' $((b ^ ${3:-0xff})))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# blk_last_pass FILE: the number of blktest's last completed pass.
blk_last_pass() {
	sed -n 's/^blktest: pass \([0-9][0-9]*\) ok .*/\1/p' "$1" | tail -n 1
}

# blk_snapshot OUT SNAP: blktest on a fresh 4 MiB disk ($WORK/disk.img),
# 16 requests in flight woken by MSI-X, its serial output in OUT, saved to
# SNAP (--then exit) once it has made two passes.
blk_snapshot() {
	truncate -s 0 "$WORK/disk.img"
	truncate -s 4M "$WORK/disk.img"
	rm -f "$S"
	start_stasis "$1" run --kernel "$GUESTS/blktest.elf" --debug-exit \
		--api-socket "$S" --serial "file:$1" --mem 64M \
		--disk "$WORK/disk.img" --cmdline "sectors=1024 seed=5 irq=wait"
	wait_for_socket "$S"
	wait_for_line "$1" "^blktest: pass 2 ok" 120
	ctl "$S" snapshot "$2" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "blktest run saved to $2"
	blk_clean "$1"
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

# gens_past FILE MARGIN: the last "memtest: gen" line of FILE shows every
# CPU at least MARGIN generations past the first such line.
gens_past() {
	local first last
	first=$(grep -Eo 'gens=[0-9,]+' "$1" 2>/dev/null | head -n 1) || return 1
	last=$(grep -Eo 'gens=[0-9,]+' "$1" 2>/dev/null | tail -n 1) || return 1
	[[ -n $first && -n $last ]] || return 1
	local -a a b
	IFS=, read -ra a <<<"${first#gens=}"
	IFS=, read -ra b <<<"${last#gens=}"
	((${#a[@]} == ${#b[@]})) || return 1
	for i in "${!a[@]}"; do
		((b[i] >= a[i] + $2)) || return 1
	done
}

# start_net_peer SOCKET LOG: tests/tools/net_peer.py, the network at the
# datagram SOCKET that netmig talks to, its log in LOG.
start_net_peer() {
	python3 "$ROOT/tests/tools/net_peer.py" "$1" "$2" &
	BG_PIDS+=("$!")
	wait_until 30 test -S "$1" || fail "the net peer at $1 did not start"
}

# netmig_frames OUT: netmig's last counts of frames sent and received in
# the serial output OUT, "S R" (nothing before its first report).
netmig_frames() {
	complete_text <"$1" | sed -n 's/^netmig: sent \([0-9]*\) recv \([0-9]*\) .* ok.*/\1 \2/p' | tail -n 1
}
