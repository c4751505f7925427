# bench/lib.sh - shared by the bench/*.sh scripts: where to run (directly, or
# inside the nested KVM test VM), the timing helper, recording measurements,
# waiting for VMMs, and the statistics and table formatting. Sourced, not
# run.
# shellcheck shell=bash

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bench_die() {
	echo "bench: error: $*" >&2
	exit 1
}

bench_note() {
	echo "bench: $*" >&2
}

# bench_setup SCRIPT BUILD_DIR [ARGS...]: checks the build, builds the timing
# helper, and re-executes SCRIPT inside scripts/kvm-vm.sh when /dev/kvm cannot
# be opened here. Sets BUILD, STASIS, GUESTS, BENCHTOOL, QEMU.
bench_setup() {
	local script=$1 build=$2
	shift 2

	BUILD=$(cd "$build" 2>/dev/null && pwd) ||
		bench_die "no build directory $build (run: meson setup build && ninja -C build)"
	STASIS=$BUILD/stasis
	GUESTS=$BUILD/guests
	QEMU=${QEMU:-qemu-system-x86_64}
	[[ -x $STASIS ]] || bench_die "$STASIS is missing: run ninja -C $BUILD"
	for g in hello memtest counter; do
		[[ -f $GUESTS/$g.elf ]] || bench_die "$GUESTS/$g.elf is missing"
	done
	command -v "$QEMU" >/dev/null || bench_die "$QEMU is not installed"

	# The helper lives in the build tree, which the nested VM sees too.
	BENCHTOOL=$BUILD/bench/benchtool
	if [[ ! -x $BENCHTOOL || $BENCH_ROOT/bench/benchtool.c -nt $BENCHTOOL ]]; then
		mkdir -p "$BUILD/bench"
		${CC:-cc} -O2 -Wall -Wextra -o "$BENCHTOOL.tmp.$$" \
			"$BENCH_ROOT/bench/benchtool.c" ||
			bench_die "cannot build the timing helper"
		mv "$BENCHTOOL.tmp.$$" "$BENCHTOOL"
	fi

	# A character device we can open (read-only here: "<>" would create a
	# plain file where there is no device).
	if [[ -c /dev/kvm && -w /dev/kvm ]] && (exec 3</dev/kvm) 2>/dev/null; then
		return 0
	fi
	[[ ${KVMVM:-0} = 1 ]] && bench_die "/dev/kvm does not open even inside the nested VM"

	# No KVM here: run the same script in the nested test VM (see
	# docs/testing-without-kvm.md). Only BENCH_* and QEMU pass through.
	local cache=${KVMVM_CACHE:-/var/cache/stasis-kvm-vm} envs=() v
	for v in $(compgen -e); do
		case $v in
		BENCH_* | QEMU) envs+=(-e "$v=${!v}") ;;
		esac
	done
	bench_note "no /dev/kvm here: running inside the nested KVM VM (KVMVM_MEM=${KVMVM_MEM:-4G}, cache $cache); numbers are 50-100x slower than hardware, compare ratios"
	exec "$BENCH_ROOT/scripts/kvm-vm.sh" run "$cache" "$BENCH_ROOT" "${envs[@]}" \
		-- bash "$script" "$BUILD" "$@"
}

# ------------------------------------------------------------- results --
# A script that records measurements calls bench_workdir first (or sets RES,
# a directory of its own, and START, $SECONDS at its start).

# bench_workdir NAME: a scratch directory DIR under BENCH_DIR (or TMPDIR, or
# /tmp) with the results in RES, and SOCKDIR for UNIX sockets (a short path
# on a local file system); both are removed at exit, after a SIGKILL to
# every VMM the script put in PIDS. Sets DIR, SOCKDIR, RES, START, PIDS.
bench_workdir() {
	DIR=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/stasis-bench-$1.XXXXXX")
	SOCKDIR=$(mktemp -d /tmp/stasis-sock.XXXXXX)
	RES=$DIR/results
	START=$SECONDS
	PIDS=()
	mkdir -p "$RES"
	trap bench_cleanup EXIT
}

bench_cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$DIR" "$SOCKDIR"
}

# bench_put SCENARIO METRIC VALUE: records one measurement.
bench_put() {
	mkdir -p "$RES/$1"
	echo "$3" >>"$RES/$1/$2"
}

# bench_get SCENARIO METRIC: the median of its measurements, or "-".
bench_get() {
	if [[ -s $RES/$1/$2 ]]; then bench_median <"$RES/$1/$2"; else echo "-"; fi
}

# bench_step TEXT: progress on stderr, with the time since the start.
bench_step() {
	bench_note "$(printf '%4d s' $((SECONDS - START))) $*"
}

# bench_fail TEXT: a measurement that failed; listed at the end of the report
# and left out of the medians.
bench_fail() {
	bench_note "$*"
	echo "$*" >>"$RES/failures"
}

# bench_wait_for FILE TEXT PID SECONDS: until FILE contains TEXT. 1 if PID
# died or time ran out.
bench_wait_for() {
	local end=$((SECONDS + $4))
	until grep -qF "$2" "$1" 2>/dev/null; do
		kill -0 "$3" 2>/dev/null || return 1
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}

# bench_wait_exit PID SECONDS: waits for a VMM we started; SIGKILL at the end.
bench_wait_exit() {
	local end=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null && ((SECONDS < end)); do
		sleep 0.2
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# QMP request lifting QEMU's migration bandwidth cap (7.2 defaults to
# 128 MiB/s), so that a save measures the VMM, not the cap.
BENCH_QMP_NOCAP='{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1099511627776}}'

# bench_qemu_save QMP_SOCK FILE: QEMU's suspend to a file, from a fresh QMP
# client as for stasis ctl: stop, migrate exec:cat of the stopped VM until
# query-migrate says completed, fsync (stasis's snapshot is durable, QEMU's
# migration is not), cont. Prints "stop_us=A save_us=B" (A: connect,
# negotiation and stop; B: migrate, wait and fsync); on failure prints the
# last reply and returns 1.
bench_qemu_save() {
	local line mig wait fs
	line=$("$BENCHTOOL" qmp "$1" '{"execute": "stop"}' \
		"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat > $2\"}}" \
		wait-migrate cont-after-migrate) || { echo "$line" | tail -n 1; return 1; }
	mig=$(bench_kv "$(sed -n 3p <<<"$line")" us)
	wait=$(bench_kv "$(sed -n 4p <<<"$line")" us)
	fs=$(bench_kv "$("$BENCHTOOL" fsync "$2")" us)
	echo "stop_us=$(bench_calc "a + b" "$(bench_kv "$(sed -n 1p <<<"$line")" us)" \
		"$(bench_kv "$(sed -n 2p <<<"$line")" us)") save_us=$(bench_calc "a + b + c" "$mig" "$wait" "$fs")"
}

# bench_kv LINE KEY: the value of KEY=VALUE in LINE (empty if absent).
bench_kv() {
	local w
	for w in $1; do
		[[ $w == "$2="* ]] && { echo "${w#*=}"; return 0; }
	done
	return 0
}

# median of the numbers on stdin (empty input: "-").
bench_median() {
	sort -g | awk '{ v[NR] = $1 }
		END { if (!NR) { print "-"; exit }
		      if (NR % 2) print v[(NR + 1) / 2]
		      else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# min and max of the numbers on stdin as "MIN-MAX".
bench_range() {
	sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
		END { if (NR) printf "%s-%s", lo, hi; else print "-" }'
}

# bench_calc EXPR A [B [C]]: awk arithmetic on the variables a, b, c; "-"
# when any of them is "-" or empty (not measured).
bench_calc() {
	local expr=$1 v
	shift
	for v in "$@"; do
		[[ $v == - || -z $v ]] && { echo "-"; return; }
	done
	awk -v a="${1:-0}" -v b="${2:-0}" -v c="${3:-0}" "BEGIN { print $expr }" \
		2>/dev/null || echo "-"
}

# bench_fmt PRINTF_FORMAT VALUE: formats a number, passes "-" through.
bench_fmt() {
	[[ $2 == - || -z $2 ]] && { echo "-"; return; }
	awk -v v="$2" "BEGIN { printf \"$1\", v }"
}

# bench_verdict OK: PASS or MISS ("?" if it could not be measured).
bench_verdict() {
	case $1 in
	1) echo PASS ;;
	0) echo MISS ;;
	*) echo "?" ;;
	esac
}

bench_machine() {
	local cpu
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
	echo "machine: $(nproc) CPUs, $cpu, Linux $(uname -r)$([[ ${KVMVM:-0} = 1 ]] && echo ', nested KVM VM (kvm-vm.sh)')"
	echo "stasis: $("$STASIS" --version 2>&1 | head -n1), $($QEMU --version | head -n1)"
}
