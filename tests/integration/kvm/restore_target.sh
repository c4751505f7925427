# A restore target made ahead of time (stasis restore --wait): it waits
# with its VM prepared; requests it cannot serve (a missing file, a
# damaged one, one whose VM is larger than --mem-max or has other vCPUs)
# get a one-line error reply and leave it waiting; a good one then
# restores the counter guest, which carries on from where it was saved.
# In each memory mode, with the phase timings on stderr and in GET /vm.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock

start_stasis "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--mem 128M --api-socket "$S" --serial "file:$WORK/a" --cmdline "hz=100"
wait_for_socket "$S"
counter_reaches "$WORK/a" 20 60
ctl "$S" snapshot "$WORK/base.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "the VM saved"

# A larger VM with two vCPUs: more than the target takes.
rm -f "$S"
start_stasis "$WORK/big" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--mem 512M --cpus 2 --api-socket "$S" --serial "file:$WORK/big" \
	--cmdline "hz=100"
wait_for_socket "$S"
counter_reaches "$WORK/big" 5 60
ctl "$S" snapshot "$WORK/big.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60

# flip FILE OFFSET: inverts one byte of FILE.
flip() {
	python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0xFF]))
PY
}
# One byte of the CONFIG record (checked as the file is opened), and one
# in the middle of the stored memory (checked by a copy restore, after
# the VM has taken the rest of the file).
cp "$WORK/base.snap" "$WORK/config-damaged.snap"
flip "$WORK/config-damaged.snap" 200
cp "$WORK/base.snap" "$WORK/memory-damaged.snap"
flip "$WORK/memory-damaged.snap" $(($(stat -c %s "$WORK/base.snap") * 2 / 3))

# refused T WHAT PATTERN ARGS...: ctl T restore ARGS fails with one line
# matching PATTERN, and the target still waits.
refused() {
	local t=$1 what=$2 pat=$3 out
	shift 3
	if out=$("$STASIS" ctl "$t" restore "$@" 2>&1); then
		fail "$what: restored ($out)"
	fi
	[[ $(printf '%s\n' "$out" | wc -l) == 1 ]] || fail "$what: not one line: $out"
	grep -qE -- "$pat" <<<"$out" || fail "$what: '$out' does not match '$pat'"
	expect_state "$t" "waiting for a snapshot (PUT /vm/restore)" "after $what"
}

for mode in ondemand map copy; do
	T=$WORK/t-$mode.sock out=$WORK/t-$mode
	start_stasis "$out" restore --wait --api-socket "$T" --mem-max 256M \
		--serial "file:$out" --timings
	target=$VM_PID
	wait_for_socket "$T"
	expect_state "$T" "waiting for a snapshot (PUT /vm/restore)" "a new target"
	st=$(ctl "$T" status --json)
	grep -q '"memory_bytes": 268435456' <<<"$st" || fail "target status: $st"
	if [[ $mode == ondemand ]]; then
		refused "$T" "a missing file" "No such file" "$WORK/none.snap"
		refused "$T" "a damaged CONFIG" "CONFIG|checksum" "$WORK/config-damaged.snap"
		refused "$T" "a damaged memory chunk" "checksum|chunk" \
			"$WORK/memory-damaged.snap" --memory copy
		refused "$T" "a larger VM" "--mem-max" "$WORK/big.snap"
		# The VM's other requests, before there is one.
		for req in working-set "migrate unix:$WORK/none.sock"; do
			# shellcheck disable=SC2086 # the words are the arguments
			if msg=$("$STASIS" ctl "$T" $req 2>&1); then
				fail "$req on a waiting target: $msg"
			fi
			grep -q "no VM yet" <<<"$msg" || fail "$req on a waiting target: $msg"
		done
		pid_exited "$target" && fail "the target exited after refusals"
	fi
	reply=$(ctl "$T" restore "$WORK/base.snap" --memory "$mode")
	[[ $reply == *"(--memory $mode)"* ]] || fail "restore reply: $reply"
	wait_for_line "$out" "^counter: [0-9]+$" 60
	first=$(first_counter "$out")
	counter_reaches "$out" $((first + 20)) 60
	restored_continues "$WORK/a" "$out"
	expect_state "$T" running "the restored VM"
	# One restore per target.
	if again=$("$STASIS" ctl "$T" restore "$WORK/base.snap" 2>&1); then
		fail "a second restore into one target: $again"
	fi
	grep -q "restored a snapshot already" <<<"$again" || fail "second restore: $again"
	# The restored VM answers as any other: no recording was asked for.
	if msg=$("$STASIS" ctl "$T" working-set 2>&1); then
		fail "working-set on the restored VM: $msg"
	fi
	grep -q "no working set is being recorded" <<<"$msg" ||
		fail "working-set on the restored VM: $msg"
	st=$(ctl "$T" status --json)
	for k in kvm_us memory_us vcpus_us request_us file_us state_us \
		devices_us first_run_us first_exit_us; do
		grep -qE "\"$k\": [0-9]+" <<<"$st" || fail "status has no $k: $st"
	done
	ctl "$T" shutdown >/dev/null
	wait_exit "$target" 60
	expect_status "$RC" 0 "the target ($mode)"
	grep -q "^stasis: timings: first_exit " "$out.err" ||
		fail "no timings block on stderr: $(tail -n 3 "$out.err")"
	grep -q ERROR "$out" && fail "guest error after restore: $(grep ERROR "$out")"
done

# Two vCPUs, made (with their threads) before the request.
T=$WORK/t-smp.sock out=$WORK/t-smp
start_stasis "$out" restore --wait --api-socket "$T" --mem-max 512M --cpus 2 \
	--serial "file:$out"
target=$VM_PID
wait_for_socket "$T"
ctl "$T" restore "$WORK/big.snap" >/dev/null
wait_for_line "$out" "^counter: [0-9]+$" 60
first=$(first_counter "$out")
counter_reaches "$out" $((first + 20)) 60
restored_continues "$WORK/big" "$out"
ctl "$T" shutdown >/dev/null
wait_exit "$target" 60
expect_status "$RC" 0 "the two-vCPU target"

# Refused on the command line, in one line each.
for args in "--wait --api-socket $WORK/x.sock" "--wait --mem-max 1G" \
	"--wait --api-socket $WORK/x.sock --mem-max 1G $WORK/base.snap" \
	"--wait --api-socket $WORK/x.sock --mem-max 3" \
	"$WORK/base.snap --mem-max 1G"; do
	# shellcheck disable=SC2086 # the words are the arguments
	rc=0
	"$STASIS" restore $args >/dev/null 2>"$WORK/err" || rc=$?
	expect_status "$rc" 2 "restore $args"
	[[ $(wc -l <"$WORK/err") == 1 ]] || fail "restore $args: $(cat "$WORK/err")"
done
