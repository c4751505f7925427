# tests/nested-attempts.sh - how tests/run-all.sh runs one KVM test inside
# the nested test VM (scripts/kvm-vm.sh): which attempts it makes and which
# verdict counts. Sourced by run-all.sh, and by tests/nested-attempts-test.sh,
# which checks these rules on made-up output. Never used on a host's own
# /dev/kvm: there every verdict counts as it comes.
# shellcheck shell=bash

# Part of the line stasis logs after a triple fault's register dump when
# the vCPU holds its power-on values (src/core/vcpu.c, vcpu_exit_shutdown).
# Under the emulated SVM of the nested VM such a crash has, so far, only
# been the emulator's; tests/integration/lib.sh prints the line when a
# test fails.
NESTED_RESET_MARK="these are its power-on values"
# Nested VMs one run of a test may take when they end without a verdict.
NESTED_VM_ATTEMPTS=4

# nested_verdict NAME FILE: the last verdict line of test NAME in FILE.
nested_verdict() {
	grep -E "^(PASS|FAIL) $1 " "$2" | tail -n 1
}

# nested_crash_suspected NAME FILE: whether FILE, the output of one run of
# test NAME, fails it and shows stasis's reset-state line.
nested_crash_suspected() {
	[[ $(nested_verdict "$1" "$2") == FAIL* ]] && grep -qF "$NESTED_RESET_MARK" "$2"
}

# nested_run_once NAME OUT CMD...: one run of test NAME. CMD boots one
# nested VM that runs it; a VM that ends with no verdict and a status
# above 1 (it stopped, timed out, or the harness failed) is booted again,
# up to NESTED_VM_ATTEMPTS in all. A test's own failure, or a verdict
# printed before the VM hung on its way out, ends the run. Output goes to
# stdout and to OUT (truncated first), ending in one verdict line: the
# test's own, or "FAIL NAME (no verdict ...)".
nested_run_once() {
	local name=$1 out=$2 attempt=0 st=0
	shift 2
	: >"$out"
	while ((attempt < NESTED_VM_ATTEMPTS)); do
		attempt=$((attempt + 1))
		"$@" 2>&1 | grep --line-buffered -v '^kvm-vm: L1 VM up' | tee -a "$out"
		st=${PIPESTATUS[0]}
		[[ -n $(nested_verdict "$name" "$out") ]] && return 0
		((st <= 1)) && break
		echo "   ($name: the nested VM ended with status $st, attempt $attempt)" | tee -a "$out"
	done
	echo "FAIL $name (no verdict; nested VM status $st, attempt $attempt)" | tee -a "$out"
}

# nested_run_test NAME OUT VERDICTS CMD...: runs test NAME (nested_run_once)
# and, when that run fails showing the reset-state line, once more, saying
# so; a second crash fails. Every run's output stays in OUT (truncated
# first) and goes to stdout; the verdict that counts, the last run's, is
# appended to VERDICTS.
nested_run_test() {
	local name=$1 out=$2 verdicts=$3 run=$2.run
	shift 3
	: >"$out"
	nested_run_once "$name" "$run" "$@"
	cat "$run" >>"$out"
	if nested_crash_suspected "$name" "$run"; then
		echo "   ($name: emulator crash suspected: reset-state dump; re-running once)" | tee -a "$out"
		nested_run_once "$name" "$run" "$@"
		cat "$run" >>"$out"
	fi
	nested_verdict "$name" "$run" >>"$verdicts"
	rm -f "$run"
}
