# Bad input everywhere at once, against a real VM: 64 clients issue status,
# pause, resume and snapshot in random order for a minute
# (STASIS_API_LOAD_SECONDS), beside slow-loris connections, malformed
# requests and clients that hang up mid-snapshot (tests/tools/api_load.c).
# Every reply must arrive and be well formed. Then the VM must be
# consistent: stasis alive, its state as reported, the guest (memtest
# rewriting and verifying memory on both vCPUs) carrying on without a
# mismatch, and every snapshot the load wrote verifying and restoring to a
# guest that carries on: a snapshot whose memory changed while it was
# written fails memtest's check after the restore.
. "$(dirname "$0")/../lib.sh"
LOAD=$BUILD/tests/tools/api_load
S=$WORK/api.sock
SECS=${STASIS_API_LOAD_SECONDS:-60}

# memtest's CPU 0 pass count and both CPUs' totals, "n a,b", last line.
mem_passes() {
	sed -n 's/^memtest: pass \([0-9]*\) ok (.* passes=\([0-9,]*\))\r\{0,1\}$/\1 \2/p' "$1" | tail -n 1
}
mem_clean() {
	! grep -Eq "MISMATCH|ERROR|^guest: " "$1" ||
		fail "$2: $(grep -E "MISMATCH|ERROR|^guest: " "$1" | head -n 2)"
}

start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --mem 64M --cpus 2 \
	--cmdline "mib=32 smp=1"
wait_for_socket "$S"
wait_for_count "$WORK/a" "^memtest: pass" 2 60

rc=0
"$LOAD" --seconds "$SECS" --clients 64 --timeout-ms "$(($(scaled 120) * 1000))" \
	"$S" "$WORK" >"$WORK/load.out" 2>"$WORK/load.err" || rc=$?
cat "$WORK/load.out" >&2
[[ $rc == 0 ]] || fail "api_load: status $rc: $(head -n 3 "$WORK/load.err" | tr '\n' '|')"
pid_exited "$VM_PID" && fail "stasis died under the load: $(tail -n 3 "$WORK/a.err" | tr '\n' '|')"
# The load did all four things, and some snapshots were written.
for op in status pause resume snapshot; do
	grep -Eq " $op [1-9][0-9]* ok" "$WORK/load.out" || fail "no $op succeeded: $(cat "$WORK/load.out")"
done

# A snapshot a hung-up client asked for may still be running: wait until
# none is.
idle() {
	"$STASIS" ctl "$S" status --json >"$WORK/st.json" 2>/dev/null &&
		! grep -q '"snapshot": *{' "$WORK/st.json"
}
wait_until 120 idle || fail "a snapshot never ended: $(cat "$WORK/st.json")"
if grep -q '"state": *"paused"' "$WORK/st.json"; then
	# Paused: the guest must not move until resumed.
	n=$(wc -l <"$WORK/a")
	sleep "$(scaled 1)"
	[[ $(wc -l <"$WORK/a") == "$n" ]] || fail "reported paused, but the guest printed"
	ctl "$S" resume >/dev/null
else
	grep -q '"state": *"running"' "$WORK/st.json" || fail "status: $(cat "$WORK/st.json")"
fi
n=$(line_count "$WORK/a" "^memtest: pass")
wait_for_count "$WORK/a" "^memtest: pass" $((n + 2)) 60
mem_clean "$WORK/a" "memtest under the load"
before=$(mem_passes "$WORK/a")
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "shutdown after the load"
grep -q "ERROR: AddressSanitizer\|runtime error:" "$WORK/a.err" &&
	fail "sanitizer report: $(grep -m1 "AddressSanitizer\|runtime error:" "$WORK/a.err")"

# Every snapshot written under the load verifies and restores.
snaps=$(ls "$WORK"/load-*.snap "$WORK"/gone.snap 2>/dev/null) || true
[[ -n $snaps ]] || fail "no snapshot file after the load"
for f in $snaps; do
	name=$(basename "$f" .snap)
	"$STASIS" verify "$f" >/dev/null 2>"$WORK/$name.verify" ||
		fail "$name does not verify: $(cat "$WORK/$name.verify")"
	rm -f "$S"
	start_stasis "$WORK/$name.out" restore "$f" --api-socket "$S" \
		--serial "file:$WORK/$name.out"
	wait_for_socket "$S"
	wait_for_count "$WORK/$name.out" "^memtest: pass" 2 60
	mem_clean "$WORK/$name.out" "restored $name"
	ctl "$S" shutdown >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "restored $name"
done
note "before shutdown: memtest pass/passes $before; restored: $(echo $snaps | wc -w) snapshots"
