#!/usr/bin/env bash
# Runs every stasis test against the build in $1 and ends with the line
# "N passed, N failed". Tests that need KVM run on /dev/kvm when this host
# has it, otherwise inside a nested test VM (scripts/kvm-vm.sh); if neither
# is possible they fail, loudly.
set -u
BUILD=$(cd "${1:?usage: tests/run-all.sh BUILD_DIR}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOGS=$BUILD/test-logs
KVMVM_CACHE=${KVMVM_CACHE:-/var/cache/stasis-kvm-vm}
rm -rf "$LOGS"
mkdir -p "$LOGS"

pass=0
fail=0
failed=()

# result NAME STATUS LOG: counts one test; shows the log of a failure.
result() {
	if [ "$2" -eq 0 ]; then
		pass=$((pass + 1))
		echo "PASS  $1"
	else
		fail=$((fail + 1))
		failed+=("$1")
		echo "FAIL  $1 (status $2)"
		[ -n "${3:-}" ] && [ -f "$3" ] && tail -n 30 "$3" | sed 's/^/      | /'
	fi
}

echo "== formatting (.clang-format)"
(cd "$ROOT" && git ls-files '*.c' '*.h' |
	xargs clang-format --dry-run --Werror) >"$LOGS/format.log" 2>&1
result clang-format $? "$LOGS/format.log"

echo "== unit tests"
for t in "$BUILD"/tests/unit/test_*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	name=unit/$(basename "$t")
	"$t" >"$LOGS/$(basename "$t").log" 2>&1
	result "$name" $? "$LOGS/$(basename "$t").log"
done

echo "== fuzz targets (bounded)"
"$ROOT/tests/fuzz/run.sh" "$LOGS" | while read -r status name; do
	echo "$status $name"
done >"$LOGS/fuzz.results"
while read -r status name; do
	result "fuzz/$name" "$status" "$LOGS/fuzz-$name.log"
done <"$LOGS/fuzz.results"

echo "== command line (no KVM needed)"
STASIS=$BUILD/stasis GUESTS=$BUILD/guests ROOT=$ROOT \
	bash "$ROOT/tests/integration/cli.sh" >"$LOGS/cli.log" 2>&1
result cli $? "$LOGS/cli.log"

echo "== nested-VM attempt rules (made-up output)"
bash "$ROOT/tests/nested-attempts-test.sh" >"$LOGS/nested-attempts.log" 2>&1
result nested-attempts $? "$LOGS/nested-attempts.log"

echo "== installation (meson install into a scratch DESTDIR)"
BUILD=$BUILD ROOT=$ROOT bash "$ROOT/tests/integration/install.sh" >"$LOGS/install.log" 2>&1
result install $? "$LOGS/install.log"

echo "== docs/api.yaml against the server's endpoint table"
{ "$BUILD/tests/unit/test_api" --endpoints-json >"$LOGS/endpoints.json" &&
	python3 "$ROOT/tests/tools/check_api_spec.py" "$ROOT/docs/api.yaml" "$LOGS/endpoints.json"; } >"$LOGS/api-spec.log" 2>&1
result api-spec $? "$LOGS/api-spec.log"

echo "== guest kit under QEMU (the peer)"
"$ROOT/guests/test-under-qemu.sh" "$BUILD" >"$LOGS/qemu-guests.log" 2>&1
result guests-under-qemu $? "$LOGS/qemu-guests.log"

echo "== Linux kernel for the KVM tests"
export STASIS_LINUX_CACHE=${STASIS_LINUX_CACHE:-$ROOT/build/linux}
KVMVM_CACHE=$KVMVM_CACHE "$ROOT/scripts/fetch-linux.sh" "$STASIS_LINUX_CACHE" >"$LOGS/fetch-linux.log" 2>&1
result fetch-linux $? "$LOGS/fetch-linux.log"

echo "== KVM integration tests"
kvm_log=$LOGS/kvm.log
# The verdicts counted: one line per test.
kvm_verdicts=$LOGS/kvm.verdicts
if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] &&
	python3 -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; then
	echo "   (on this host's /dev/kvm)"
	"$ROOT/tests/run-kvm.sh" "$BUILD" 2>&1 | tee "$kvm_log"
	kvm_status=${PIPESTATUS[0]}
	grep -E '^(PASS|FAIL) ' "$kvm_log" >"$kvm_verdicts"
else
	echo "   (this host has no usable /dev/kvm: each runs in its own nested"
	echo "    test VM, QEMU TCG with SVM; see docs/testing-without-kvm.md)"
	# Everything the guest runs must live under ROOT: the nested VM
	# sees the host's / read-only and ROOT read-write. One VM per test
	# (a boot costs 4-15 s) so that the host can time each test out:
	# rarely, the emulated L1 stops making progress altogether, and
	# nothing inside it can notice. Such a test is run again, up to
	# four times in all; a test that fails with a vCPU in its power-on
	# state (the emulator's crash, as far as is known) runs once more.
	# tests/nested-attempts.sh has these rules, and the log says when
	# either happened. Each step there costs 50-100x hardware, so the
	# snapshot chain runs 10 cycles.
	. "$ROOT/tests/nested-attempts.sh"
	: >"$kvm_log"
	: >"$kvm_verdicts"
	kvm_status=0
	for name in $("$ROOT/tests/run-kvm.sh" --list); do
		# The host's limit (420 s) comes after the test's own (300 s)
		# inside the VM, so a test that hangs while L1 lives fails;
		# only a VM that stops gets re-run.
		nested_run_test "$name" "$LOGS/kvm-$name.out" "$kvm_verdicts" \
			env KVMVM_TIMEOUT="${STASIS_NESTED_TEST_TIMEOUT:-420}" \
			"$ROOT/scripts/kvm-vm.sh" run "$KVMVM_CACHE" "$ROOT" \
			-e STASIS_TIME_SCALE="${STASIS_TIME_SCALE:-3}" \
			-e STASIS_TESTS="$name" \
			-e STASIS_SLOW_TESTS="${STASIS_SLOW_TESTS:-0}" \
			-e STASIS_CHAIN_CYCLES="${STASIS_CHAIN_CYCLES:-10}" \
			-e STASIS_NET_COUNT="${STASIS_NET_COUNT:-500}" \
			-e STASIS_TEST_LIMIT="${STASIS_TEST_LIMIT:-300}" \
			-e STASIS_LINUX_CACHE="$STASIS_LINUX_CACHE" \
			-- "$ROOT/tests/run-kvm.sh" "$BUILD"
		cat "$LOGS/kvm-$name.out" >>"$kvm_log"
	done
fi
nkvm=0
while read -r word name _; do
	case $word in
	PASS) pass=$((pass + 1)) nkvm=$((nkvm + 1)) ;;
	FAIL) fail=$((fail + 1)) nkvm=$((nkvm + 1)) failed+=("$name") ;;
	esac
done <"$kvm_verdicts"
# A harness that ran nothing, or died part way (any status but the
# runner's own 0 or 1), is a failure of its own.
if [ "$nkvm" -eq 0 ]; then
	result kvm-harness 1 "$kvm_log"
elif [ "$kvm_status" -gt 1 ]; then
	result kvm-harness "$kvm_status" "$kvm_log"
fi

echo
if [ "$fail" -gt 0 ]; then
	echo "failed: ${failed[*]}"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
