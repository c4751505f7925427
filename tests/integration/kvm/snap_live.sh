# Live snapshots (snapshot --live): a guest writing a generation number
# into every page of 96 MiB, pass after pass (memtest mode=gen, more than
# the 32 MiB copy-aside buffer holds, so guest writes also wait for room),
# is saved while it runs, with 1 and 2 vCPUs, raw and lz4; the restored
# guest then checks page by page that memory is the instant of the save
# (each page holds the generation its CPU's saved cursor says, with its
# tag) for two full sweeps. The reply and GET /vm report the pause, the
# total time and the extra memory. A live save that fails (an unwritable
# directory) leaves the VM running and the earlier file intact; so does
# kill -9 in the middle of one. A VM restored ondemand is saved live after
# its fill; one restored with --memory map is refused in one line.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock


# A number field of a JSON reply.
json_num() {
	local v=${1#*\"$2\": }
	echo "${v%%[,\} ]*}"
}

for cpus in 1 2; do
	for c in none lz4; do
		name=live-$cpus-$c
		rm -f "$S"
		start_stasis "$WORK/$name" run --kernel "$GUESTS/memtest.elf" \
			--debug-exit --api-socket "$S" --serial "file:$WORK/$name" \
			--mem 192M --cpus "$cpus" --cmdline "mode=gen mib=96 smp=1"
		wait_for_socket "$S"
		wait_for_line "$WORK/$name" "memtest: gen [0-9]+ ok" 120
		reply=$(ctl "$S" snapshot "$WORK/$name.snap" --live --compress "$c" \
			--then exit --json)
		[[ $reply == *'"live": true'* ]] || fail "$name: reply $reply"
		pause=$(json_num "$reply" pause_us)
		extra=$(json_num "$reply" extra_bytes)
		total=$(json_num "$reply" total_ms)
		[[ $pause =~ ^[0-9]+$ && $extra =~ ^[0-9]+$ && $total =~ ^[0-9]+$ ]] ||
			fail "$name: no pause_us/extra_bytes/total_ms in $reply"
		((extra > 0)) || fail "$name: no extra memory reported: $reply"
		note "$name: paused $pause us, $total ms in all, $extra bytes extra"
		wait_exit "$VM_PID" 60
		expect_status "$RC" 0 "$name: snapshot --live --then exit"
		grep -q MISMATCH "$WORK/$name" && fail "$name: source: $(grep MISMATCH "$WORK/$name")"
		"$STASIS" verify "$WORK/$name.snap" >/dev/null || fail "$name: verify failed"

		rm -f "$S"
		out=$WORK/$name.r
		start_stasis "$out" restore "$WORK/$name.snap" --api-socket "$S" \
			--serial "file:$out"
		# 512 generations past the first printed: every page of every
		# slice checked twice against the saved cursor's pattern. A
		# mismatch ends the guest (debug-exit) at once.
		restored_done() {
			gens_past "$out" 512 || grep -q MISMATCH "$out" || pid_exited "$VM_PID"
		}
		wait_until 120 restored_done ||
			fail "$name: restored guest made no progress: $(tail -n 2 "$out" | tr '\n' '|')"
		grep -q MISMATCH "$out" && fail "$name: restored memory is not one instant: $(grep MISMATCH "$out" | head -n 1)"
		pid_exited "$VM_PID" && fail "$name: the restored VM ended: $(tail -n 2 "$out.err" "$out" | tr '\n' '|')"
		ctl "$S" shutdown >/dev/null
		wait_exit "$VM_PID" 60
	done
done

# A VM restored ondemand (the default) is saved live once its fill is
# done, running; the second generation of file is one instant too. One
# restored with --memory map is refused in one line and runs on.
name=live-1-none
rm -f "$S"
out=$WORK/$name.od
start_stasis "$out" restore "$WORK/$name.snap" --api-socket "$S" \
	--serial "file:$out"
wait_for_socket "$S"
ctl "$S" snapshot "$WORK/$name.2.snap" --live --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "$name: live save of a VM restored ondemand"
rm -f "$S"
out=$WORK/$name.2.r
start_stasis "$out" restore "$WORK/$name.2.snap" --api-socket "$S" \
	--serial "file:$out"
wait_until 120 restored_done || fail "$name.2: no progress: $(tail -n 2 "$out" | tr '\n' '|')"
grep -q MISMATCH "$out" && fail "$name.2: restored memory is not one instant: $(grep MISMATCH "$out" | head -n 1)"
pid_exited "$VM_PID" && fail "$name.2: the restored VM ended: $(tail -n 2 "$out.err" | tr '\n' '|')"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60

rm -f "$S"
start_stasis "$WORK/map" restore "$WORK/$name.snap" --memory map \
	--api-socket "$S" --serial "file:$WORK/map"
wait_for_socket "$S"
rc=0
err=$("$STASIS" ctl "$S" snapshot "$WORK/map.snap" --live 2>&1) || rc=$?
[[ $rc != 0 && $(grep -c . <<<"$err") == 1 && $err == *"--memory map"* ]] ||
	fail "live save of a --memory map VM: status $rc: $err"
[[ ! -e $WORK/map.snap ]] || fail "a refused live save left a file"
expect_state "$S" running "after a refused live save"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60

# Failure and kill -9: the earlier file stays, the VM runs on.
rm -f "$S"
start_stasis "$WORK/k" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/k" --mem 320M --cpus 2 \
	--cmdline "mode=gen mib=256 smp=1"
wait_for_socket "$S"
wait_for_line "$WORK/k" "memtest: gen [0-9]+ ok" 120
mkdir "$WORK/d"
ctl "$S" snapshot "$WORK/d/vm.snap" >/dev/null
cp "$WORK/d/vm.snap" "$WORK/orig.snap"
rc=0
out=$("$STASIS" ctl "$S" snapshot "$WORK/none/vm.snap" --live 2>&1) || rc=$?
[[ $rc != 0 && $out == *"$WORK/none"* ]] || fail "live save into a missing directory: status $rc: $out"
expect_state "$S" running "after a failed live save"
n=$(line_count "$WORK/k" "memtest: gen")
wait_for_count "$WORK/k" "memtest: gen" $((n + 1)) 60

# zstd:19 makes the save slow enough to be caught in the middle.
"$STASIS" ctl "$S" snapshot "$WORK/d/vm.snap" --live --compress zstd:19 \
	>"$WORK/kill.out" 2>&1 &
BG_PIDS+=($!)
tmp_exists() { compgen -G "$WORK/d/.vm.snap.tmp.*" >/dev/null; }
wait_until 60 tmp_exists || fail "the live save wrote no temporary file"
status=$(curl -s --unix-socket "$S" http://localhost/vm)
[[ $status == *'"state": "running"'* && $status == *'"snapshot": {'* ]] ||
	fail "during a live save GET /vm says $status"
kill -9 "$VM_PID"
wait "$VM_PID" 2>/dev/null || true
cmp -s "$WORK/d/vm.snap" "$WORK/orig.snap" || fail "kill -9 during a live save changed the earlier file"
"$STASIS" verify "$WORK/d/vm.snap" >/dev/null || fail "the earlier file no longer verifies"
