#!/usr/bin/env bash
# Runs the integration tests that need /dev/kvm, one line per test:
# "PASS name" or "FAIL name". Exits 1 when any failed. Run by
# tests/run-all.sh, directly or inside the nested test VM.
# `tests/run-kvm.sh --list` prints the names of the selected tests.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# selected: the test scripts STASIS_TESTS and STASIS_SLOW_TESTS select.
selected() {
	local t name
	for t in "$ROOT"/tests/integration/kvm/*.sh; do
		name=$(basename "$t" .sh)
		# STASIS_TESTS=GLOB runs a subset (e.g. 'snap_*').
		# shellcheck disable=SC2053 # a glob on purpose
		[[ $name == ${STASIS_TESTS:-*} ]] || continue
		case $name in
		slow_*) [ "${STASIS_SLOW_TESTS:-0}" = 1 ] || continue ;;
		esac
		echo "$t"
	done
}
if [ "${1:-}" = --list ]; then
	selected | xargs -r -n1 basename | sed 's/\.sh$//'
	exit 0
fi
BUILD=$(cd "${1:?usage: tests/run-kvm.sh BUILD_DIR | --list}" && pwd)
export STASIS=$BUILD/stasis GUESTS=$BUILD/guests ROOT BUILD
export STASIS_TIME_SCALE=${STASIS_TIME_SCALE:-1}
# Scratch space on a local file system: UNIX sockets cannot live on the
# nested VM's 9p share.
export TMPDIR=${TMPDIR:-/tmp}
# Leaks are checked by the unit tests; a VMM that exits through vm_destroy
# with vCPU threads gone is checked for memory errors here.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

if [ ! -c /dev/kvm ]; then
	echo "FAIL kvm-available (no /dev/kvm here)"
	exit 1
fi
# elapsed START_NS: seconds since START_NS, one decimal.
elapsed() {
	awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f s", (b - a) / 1e9 }'
}

# A hung test fails on its own instead of eating the whole run's budget.
TEST_LIMIT=${STASIS_TEST_LIMIT:-$((300 * STASIS_TIME_SCALE))}
suite_start=$(date +%s%N)
failed=0
# Not `< <(...)`: the nested VM's /dev has no /dev/fd.
mapfile -t tests <<<"$(selected)"
for t in "${tests[@]}"; do
	[ -n "$t" ] || continue
	name=$(basename "$t" .sh)
	start=$(date +%s%N)
	# Progress for logs watched live (CI): which test is running now.
	echo "RUN  $name"
	out=$(timeout -k 10 "$TEST_LIMIT" bash "$t" 2>&1)
	rc=$?
	if [ "$rc" = 0 ]; then
		echo "PASS $name ($(elapsed "$start"))"
	elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		echo "FAIL $name ($(elapsed "$start"), over its ${TEST_LIMIT} s limit)"
		echo "$out" | tail -n 40 | sed 's/^/      | /'
		failed=1
	else
		echo "FAIL $name ($(elapsed "$start"))"
		echo "$out" | tail -n 40 | sed 's/^/      | /'
		failed=1
	fi
done
echo "kvm suite: $(elapsed "$suite_start") in all"
exit $failed
