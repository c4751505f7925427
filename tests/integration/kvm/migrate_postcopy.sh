# Post-copy migration: the guest runs at the destination before its
# memory is there, each chunk it touches fetched on the priority
# connection, the rest pushed. The counter continues; memtest writing a
# generation into every page on 1 and 4 vCPUs finds every page exactly as
# the source left it; a pre-copy that cannot converge switches to
# post-copy at its timeout; and kill -9 of either side at a random point
# of the push leaves the survivor as docs/migration.md says (the source
# paused for good with a copy that saves and verifies, the destination
# stopped with one line), never the guest running in two places; the
# source killed between the COMMIT and the GO leaves a destination whose
# pager waits for memory: it gives up in one line, the guest never ran;
# and a chunk that no longer matches its hash is refused.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
M=$WORK/m.sock P=$WORK/p.sock


# first_gen / last_gen FILE: CPU 0's generation in the first or last
# "memtest: gen" line.
first_gen() { grep -Eo '^memtest: gen [0-9]+' "$1" | head -n 1 | grep -Eo '[0-9]+$'; }
last_gen() { grep -Eo '^memtest: gen [0-9]+' "$1" | tail -n 1 | grep -Eo '[0-9]+$'; }

# gen_intact OUT SOURCE_OUT PID WHAT: the destination's memtest checks
# every page twice over (512 generations) with no mismatch, and goes on
# from where the source stopped.
gen_intact() {
	local out=$1 src=$2 pid=$3
	gen_done() { gens_past "$out" 512 || grep -qs MISMATCH "$out" || pid_exited "$pid"; }
	wait_until 120 gen_done || fail "$4: no progress: $(tail -n 2 "$out" | tr '\n' '|')"
	grep -q MISMATCH "$out" && fail "$4: memory is not the source's: $(grep MISMATCH "$out" | head -n 1)"
	pid_exited "$pid" && fail "$4: the destination ended: $(tail -n 2 "$out.err" | tr '\n' '|')"
	grep -q "memtest: start" "$out" && fail "$4: memtest started over"
	local before after
	before=$(last_gen "$src") after=$(first_gen "$out")
	((after >= before)) || fail "$4: generation $after after $before"
}

# postcopy_reported WHAT: the last migration printed the destination's
# blocked time (some faults, for a guest that touches its memory).
postcopy_reported() {
	[[ $MIG_OUT =~ post-copy:\ ([0-9]+)\ faults,\ blocked\ p50\ ([0-9]+)\ us\ p99\ ([0-9]+)\ us$ ]] ||
		fail "$1: no post-copy report in '$MIG_OUT'"
	FAULTS=${BASH_REMATCH[1]}
	((BASH_REMATCH[2] <= BASH_REMATCH[3])) || fail "$1: p50 above p99: $MIG_OUT"
}

# dest_done SOCK: the destination's status says every chunk is in.
dest_done() {
	[[ $("$STASIS" ctl "$1" status --json 2>/dev/null) == *'"postcopy": { "state": "done"'* ]]
}

# --- The counter, post-copy at once.
start_stasis "$WORK/c0" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$WORK/s0.sock" --serial "file:$WORK/c0" --cmdline "hz=100"
SRC=$VM_PID
wait_for_socket "$WORK/s0.sock"
counter_reaches "$WORK/c0" 20 60
start_receive "$WORK/c1" "$M" "$WORK/s1.sock"
DST=$RECV_PID
migrate_to "$WORK/s0.sock" "unix:$M" --postcopy
expect_migrated
postcopy_reported counter
[[ $MIG_OUT == *", 0 pre-copy rounds, "* ]] || fail "counter: pre-copy rounds before --postcopy: $MIG_OUT"
wait_exit "$SRC" 60
expect_status "$RC" 0 "counter source after the migration"
wait_for_socket "$WORK/s1.sock"
wait_until 30 dest_done "$WORK/s1.sock" || fail "counter: status $("$STASIS" ctl "$WORK/s1.sock" status --json)"
grep -q "post-copy done: $FAULTS faults" "$WORK/c1.err" || fail "counter: the destination's log: $(cat "$WORK/c1.err")"
wait_for_line "$WORK/c1" "^counter: [0-9]+$" 60
restored_continues "$WORK/c0" "$WORK/c1"
still_counting "$WORK/s1.sock" "$WORK/c1" "counter after post-copy"
ctl "$WORK/s1.sock" shutdown >/dev/null
wait_exit "$DST" 60
expect_status "$RC" 0 "counter destination after shutdown"

# --- memtest generations on 1 and 4 vCPUs: every page exact.
for cpus in 1 4; do
	name=gen$cpus
	start_stasis "$WORK/$name.a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
		--api-socket "$WORK/$name.a.sock" --serial "file:$WORK/$name.a" \
		--mem 192M --cpus "$cpus" --cmdline "mode=gen mib=96 smp=1"
	SRC=$VM_PID
	wait_for_socket "$WORK/$name.a.sock"
	wait_for_line "$WORK/$name.a" "memtest: gen [0-9]+ ok" 120
	start_receive "$WORK/$name.b" "$M" "$WORK/$name.b.sock"
	DST=$RECV_PID
	migrate_to "$WORK/$name.a.sock" "unix:$M" --postcopy
	expect_migrated
	postcopy_reported "$name"
	((FAULTS > 0)) || fail "$name: memtest sweeping its pages made no fault: $MIG_OUT"
	wait_exit "$SRC" 60
	expect_status "$RC" 0 "$name source after the migration"
	grep -q MISMATCH "$WORK/$name.a" && fail "$name: source: $(grep MISMATCH "$WORK/$name.a")"
	gen_intact "$WORK/$name.b" "$WORK/$name.a" "$DST" "$name"
	note "$name: $MIG_OUT"
	ctl "$WORK/$name.b.sock" shutdown >/dev/null
	wait_exit "$DST" 60
	expect_status "$RC" 0 "$name destination after shutdown"
done

# --- A pre-copy that cannot converge (4 vCPUs rewriting 96 MiB, a link
# of 16 MiB/s) switches to post-copy at its timeout; the destination lets
# go of what pre-copy sent and every page comes again, lazily.
name=timeout
start_stasis "$WORK/$name.a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$WORK/$name.a.sock" --serial "file:$WORK/$name.a" \
	--mem 192M --cpus 4 --cmdline "mode=gen mib=96 smp=1"
SRC=$VM_PID
wait_for_socket "$WORK/$name.a.sock"
wait_for_line "$WORK/$name.a" "memtest: gen [0-9]+ ok" 120
start_receive "$WORK/$name.b" "$M" "$WORK/$name.b.sock"
DST=$RECV_PID
start_proxy "$P" "$M" "$WORK/count" --rate $((16 << 20))
migrate_to "$WORK/$name.a.sock" "unix:$P" --timeout-s 2 --on-timeout postcopy
expect_migrated
postcopy_reported "$name"
[[ $MIG_OUT =~ ,\ ([0-9]+)\ pre-copy\ rounds ]] && ((BASH_REMATCH[1] >= 1)) ||
	fail "$name: no pre-copy round before the switch: $MIG_OUT"
grep -q "pre-copy did not converge in 2 s: switching to post-copy" "$WORK/$name.a.err" ||
	fail "$name: the source did not say it switched: $(cat "$WORK/$name.a.err")"
wait_exit "$SRC" 60
expect_status "$RC" 0 "$name source after the migration"
gen_intact "$WORK/$name.b" "$WORK/$name.a" "$DST" "$name"
note "$name: $MIG_OUT"
ctl "$WORK/$name.b.sock" shutdown >/dev/null
wait_exit "$DST" 60

# --- kill -9 during the push. The proxy stops reading the source's
# first connection at a random byte past the switch (the stream before
# the push is under 1 MiB: records, tables and LAZY frames), so the kill
# lands while memory is still on its way; the priority connection goes
# on, so the guest runs meanwhile on what it fetches.
for victim in source destination; do
	name=kill-$victim
	start_stasis "$WORK/$name.a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
		--api-socket "$WORK/$name.a.sock" --serial "file:$WORK/$name.a" \
		--mem 192M --cpus 2 --cmdline "mode=gen mib=96 smp=1"
	SRC=$VM_PID
	wait_for_socket "$WORK/$name.a.sock"
	wait_for_line "$WORK/$name.a" "memtest: gen [0-9]+ ok" 120
	start_receive "$WORK/$name.b" "$M" "$WORK/$name.b.sock"
	DST=$RECV_PID
	rm -f "$WORK/held"
	hold=$(($(shuf -i 4-63 -n 1) << 20))
	start_proxy "$P" "$M" "$WORK/count" --hold-at "$hold" "$WORK/held"
	migrate_to "$WORK/$name.a.sock" "unix:$P" --postcopy &
	MIG_JOB=$!
	wait_until 60 test -e "$WORK/held" || fail "$name: the stream never reached byte $hold"
	wait_for_line "$WORK/$name.b.err" "post-copy: the guest runs" 60
	note "$name: held at byte $hold"
	# Both sides say where it stands: the source serves the memory, the
	# destination runs with the push not through (it is held).
	st=$(ctl "$WORK/$name.a.sock" status --json)
	[[ $st == *'"migration": { "state": "postcopy", '* ]] || fail "$name: source status $st"
	st=$(ctl "$WORK/$name.b.sock" status --json)
	[[ $st == *'"postcopy": { "state": "running", "faults": '* ]] || fail "$name: destination status $st"
	if [[ $victim == source ]]; then
		kill -9 "$SRC"
		wait_exit "$DST" 60
		[[ $RC != 0 ]] || fail "$name: the destination exited 0 without its memory"
		errs=$(grep -c "stasis: error: " "$WORK/$name.b.err") || true
		[[ $errs == 1 ]] || fail "$name: $errs error lines: $(cat "$WORK/$name.b.err")"
		grep -q "stasis: error: post-copy: the link to the source broke" "$WORK/$name.b.err" ||
			fail "$name: the destination's reason: $(cat "$WORK/$name.b.err")"
		wait "$MIG_JOB" || true
	else
		kill -9 "$DST"
		wait "$MIG_JOB" || true
		wait_until 60 pid_exited "$PROXY_PID" || true
		# The ctl in the background wrote its result to mig.err.
		MIG_ERR=$(cat "$WORK/mig.err")
		[[ $(printf '%s\n' "$MIG_ERR" | wc -l) == 1 && $MIG_ERR == *"broke after the switch"*"stays paused here for good"* ]] ||
			fail "$name: ctl migrate said: $MIG_ERR"
		pid_exited "$SRC" && fail "$name: the source exited"
		expect_state "$WORK/$name.a.sock" paused "$name source"
		rc=0
		err=$("$STASIS" ctl "$WORK/$name.a.sock" resume 2>&1) || rc=$?
		[[ $rc != 0 && $err == *"never runs here again"* ]] ||
			fail "$name: resume of the source: status $rc: $err"
		# The way back: the paused copy saves, verifies and runs on.
		ctl "$WORK/$name.a.sock" snapshot "$WORK/$name.snap" --then exit >/dev/null
		wait_exit "$SRC" 60
		expect_status "$RC" 0 "$name: the source's save"
		"$STASIS" verify "$WORK/$name.snap" >/dev/null || fail "$name: the saved copy does not verify"
		start_stasis "$WORK/$name.r" restore "$WORK/$name.snap" \
			--api-socket "$WORK/$name.r.sock" --serial "file:$WORK/$name.r"
		gen_intact "$WORK/$name.r" "$WORK/$name.a" "$VM_PID" "$name: restored copy"
		ctl "$WORK/$name.r.sock" shutdown >/dev/null
		wait_exit "$VM_PID" 60
	fi
	kill "$PROXY_PID" 2>/dev/null || true
done

# --- The source killed between the COMMIT and the GO: the destination
# has its pager up, its fill waiting for a push that will never come; it
# gives up in one line, and the guest never ran. The proxy drops the
# destination's READY, so the source is still waiting for it.
name=kill-before-go
VERSION=$("$STASIS" --version)
VERSION=${VERSION#stasis }
start_stasis "$WORK/$name.a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$WORK/$name.a.sock" --serial "file:$WORK/$name.a" \
	--mem 192M --cmdline "mode=gen mib=96 smp=1"
SRC=$VM_PID
wait_for_socket "$WORK/$name.a.sock"
wait_for_line "$WORK/$name.a" "memtest: gen [0-9]+ ok" 120
start_receive "$WORK/$name.b" "$M" "$WORK/$name.b.sock"
DST=$RECV_PID
welcome="stasis-migrate 2 $VERSION postcopy token=0123456789abcdef0123456789abcdef"
start_proxy "$P" "$M" "$WORK/count" --drop-replies-after $((32 + ${#welcome} + 32))
migrate_to "$WORK/$name.a.sock" "unix:$P" --postcopy &
MIG_JOB=$!
switching() { [[ $("$STASIS" ctl "$WORK/$name.a.sock" status --json 2>/dev/null) == *'"state": "switching"'* ]]; }
wait_until 60 switching || fail "$name: the source never waited for READY"
kill -9 "$SRC"
wait "$MIG_JOB" || true
wait_exit "$DST" 60
expect_status "$RC" 2 "$name: the destination"
[[ ! -s $WORK/$name.b ]] || fail "$name: the guest ran at the destination: $(head -c 200 "$WORK/$name.b")"
errs=$(grep -c "stasis: error: " "$WORK/$name.b.err") || true
[[ $errs == 1 ]] || fail "$name: $errs error lines: $(cat "$WORK/$name.b.err")"
note "$name: $(grep "stasis: error: " "$WORK/$name.b.err")"
kill "$PROXY_PID" 2>/dev/null || true

# --- A chunk that does not match the hash the source computed at the
# pause is refused: the source's memory is changed behind its back (as
# root, through /proc/PID/mem) after the pause, in a chunk the idle guest
# does not touch and the slow push (16 MiB/s) has not reached yet. The
# destination stops with the chunk's checksum mismatch in one line, and
# the source stays paused with the lost link's message.
name=corrupt
start_stasis "$WORK/$name.a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$WORK/$name.a.sock" --serial "file:$WORK/$name.a" \
	--mem 128M --cmdline "touch=64"
SRC=$VM_PID
wait_for_socket "$WORK/$name.a.sock"
wait_for_line "$WORK/$name.a" "memtest: idle" 120
start_receive "$WORK/$name.b" "$M" "$WORK/$name.b.sock"
DST=$RECV_PID
start_proxy "$P" "$M" "$WORK/count" --rate $((16 << 20))
migrate_to "$WORK/$name.a.sock" "unix:$P" --postcopy &
MIG_JOB=$!
wait_for_line "$WORK/$name.b.err" "post-copy: the guest runs" 60
# Guest RAM is the source's stasis-ram memfd mapping, guest address 0 at
# its start: one byte at 60 MiB, in the 64 MiB the guest filled.
python3 - "$SRC" $((60 << 20)) <<'PY' || fail "$name: cannot change the source's memory"
import sys
pid, off = sys.argv[1], int(sys.argv[2])
for line in open("/proc/%s/maps" % pid):
    if "stasis-ram" in line:
        start = int(line.split("-")[0], 16)
        break
else:
    sys.exit("no guest memory mapping")
with open("/proc/%s/mem" % pid, "r+b", buffering=0) as m:
    m.seek(start + off)
    b = m.read(1)
    m.seek(start + off)
    m.write(bytes([b[0] ^ 0x5a]))
PY
wait_exit "$DST" 60
expect_status "$RC" 2 "$name: the destination"
errs=$(grep -c "stasis: error: " "$WORK/$name.b.err") || true
[[ $errs == 1 ]] && grep -q "stasis: error: .*checksum mismatch" "$WORK/$name.b.err" ||
	fail "$name: the destination said: $(cat "$WORK/$name.b.err")"
note "$name: $(grep "stasis: error: " "$WORK/$name.b.err")"
wait "$MIG_JOB" || true
MIG_ERR=$(cat "$WORK/mig.err")
[[ $MIG_ERR == *"broke after the switch"*"stays paused here for good"* ]] ||
	fail "$name: ctl migrate said: $MIG_ERR"
expect_state "$WORK/$name.a.sock" paused "$name source"
kill "$PROXY_PID" 2>/dev/null || true
