#!/usr/bin/env bash
# Checks the rules of tests/nested-attempts.sh on made-up output of
# tests/run-kvm.sh, with a stand-in for the nested VM, and that a failing
# integration test shows stasis's reset-state line where run-all.sh reads
# it. Needs no KVM. Ends with "N passed, N failed".
# shellcheck disable=SC2034 # the outputs below are read through ${!v}
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tests/nested-attempts.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/stasis-nested-attempts.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

check() {
	if [[ $1 == 0 ]]; then
		pass=$((pass + 1))
		echo "ok    $2"
	else
		fail=$((fail + 1))
		echo "FAIL  $2"
	fi
}

# Outputs of one nested VM running test t, as run-kvm.sh prints them.
crash="RUN  t
FAIL t (41.0 s)
      | t: FAIL: smp with 4 CPUs: exit status 4, expected 1
      | t: stasis stderr, out4.err:stasis: error: vCPU 2: triple fault (KVM_EXIT_SHUTDOWN)
      | t: stasis stderr, out4.err:stasis: error: vCPU 2: these are its power-on values: this host's KVM resets a vCPU that shut down, so the state before the fault is not known
kvm suite: 41.2 s in all"
plain_fail="RUN  t
FAIL t (3.0 s)
      | t: FAIL: exit status 2, expected 1
kvm suite: 3.1 s in all"
passed="RUN  t
PASS t (2.0 s)
kvm suite: 2.1 s in all"
# A test that crashes a guest on purpose and passes (guest_faults).
passed_mark="RUN  t
stasis: error: vCPU 0: these are its power-on values: this host's KVM resets
PASS t (2.0 s)"
# Another test's name that starts with t.
other="RUN  t2
FAIL t2 (1.0 s)
      | stasis: error: vCPU 0: these are its power-on values
PASS t (1.0 s)"
stopped="RUN  t"

# fake_vm: one "nested VM": prints the next scripted output, exits with
# its status. Each run of a case scripts its VMs as STATUS:VARIABLE pairs.
fake_vm() {
	local n s v
	n=$(($(cat "$T/calls") + 1))
	echo "$n" >"$T/calls"
	s=$(sed -n "${n}p" "$T/script")
	[[ -n $s ]] || { echo "fake_vm: no VM $n scripted"; return 125; }
	v=${s#*:}
	printf '%s\n' "${!v}"
	return "${s%%:*}"
}

# case_run TITLE VERDICT CALLS NOTES VM...: runs test t on the scripted VMs;
# checks the counted verdict line starts with VERDICT, that CALLS VMs were
# booted, and that the re-run note appears NOTES times.
case_run() {
	local title=$1 want=$2 calls=$3 notes=$4 got n
	shift 4
	printf '%s\n' "$@" >"$T/script"
	echo 0 >"$T/calls"
	: >"$T/verdicts"
	nested_run_test t "$T/out" "$T/verdicts" fake_vm >"$T/stdout" 2>&1
	got=$(cat "$T/verdicts")
	[[ $(wc -l <"$T/verdicts") == 1 && $got == "$want"* ]]
	check $? "$title: counted verdict '$got'"
	[[ $(cat "$T/calls") == "$calls" ]]
	check $? "$title: $calls nested VM(s) booted (got $(cat "$T/calls"))"
	n=$(grep -c "t: emulator crash suspected: reset-state dump; re-running once" "$T/out")
	[[ $n == "$notes" ]]
	check $? "$title: the re-run note $notes time(s) in the log (got $n)"
	cmp -s "$T/out" "$T/stdout"
	check $? "$title: the log is what was shown"
}

case_run "crash, then a pass" "PASS t " 2 1 1:crash 0:passed
grep -q "^FAIL t (41.0 s)" "$T/out" && grep -q "^PASS t (2.0 s)" "$T/out"
check $? "crash, then a pass: both runs stay in the log"
case_run "crash twice" "FAIL t " 2 1 1:crash 1:crash
case_run "a plain failure" "FAIL t " 1 0 1:plain_fail
case_run "a pass whose guest crashed on purpose" "PASS t " 1 0 0:passed_mark
case_run "another test's crash line" "PASS t " 1 0 0:other
case_run "a failure, then a crash is not reached" "FAIL t " 1 0 1:plain_fail 1:crash
case_run "VM stops are apart from the crash re-run" "PASS t " 5 1 \
	124:stopped 1:crash 124:stopped 124:stopped 0:passed
case_run "a VM that never gives a verdict" "FAIL t (no verdict; nested VM status 124, attempt 4)" \
	4 0 124:stopped 124:stopped 124:stopped 124:stopped 0:passed
case_run "no verdict, status 1: no re-run" "FAIL t (no verdict; nested VM status 1, attempt 1)" \
	1 0 1:stopped 0:passed
case_run "a crash, then a VM that never gives a verdict" "FAIL t (no verdict" 5 1 \
	1:crash 124:stopped 124:stopped 124:stopped 124:stopped

# stasis still logs the line the rule looks for.
grep -qF "$NESTED_RESET_MARK" "$ROOT/src/core/vcpu.c"
check $? "src/core/vcpu.c logs '$NESTED_RESET_MARK'"

# A failing integration test shows stasis's reset-state line in the last
# 40 lines of its output (what run-kvm.sh shows of a failure); a passing
# one prints nothing of it.
mkdir -p "$T/kvm"
cat >"$T/kvm/fake.sh" <<EOF
. "$ROOT/tests/integration/lib.sh"
printf 'stasis: error: vCPU 1: triple fault (KVM_EXIT_SHUTDOWN)\\n' >"\$WORK/g.err"
for i in \$(seq 60); do echo "stasis: error: vCPU 1: rip 0x\$i"; done >>"\$WORK/g.err"
echo "stasis: error: vCPU 1: $NESTED_RESET_MARK: this host's KVM resets" >>"\$WORK/g.err"
for i in \$(seq 60); do echo "progress \$i"; done >&2
[[ \${FAKE_FAIL:-0} == 1 ]] && fail "exit status 4, expected 1"
exit 0
EOF
out=$(STASIS=/bin/false GUESTS=$T TMPDIR=$T FAKE_FAIL=1 bash "$T/kvm/fake.sh" 2>&1)
tail -n 40 <<<"$out" | grep -q "fake: stasis stderr, g.err:.*$NESTED_RESET_MARK"
check $? "a failing test's last 40 lines show the reset-state line"
tail -n 40 <<<"$out" | grep -q "fake: stasis stderr, g.err:.*KVM_EXIT_SHUTDOWN"
check $? "a failing test's last 40 lines show the triple-fault line"
out=$(STASIS=/bin/false GUESTS=$T TMPDIR=$T bash "$T/kvm/fake.sh" 2>&1)
! grep -qF "$NESTED_RESET_MARK" <<<"$out"
check $? "a passing test does not show it"

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
