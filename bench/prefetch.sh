#!/usr/bin/env bash
# bench/prefetch.sh - post-restore latency with and without working-set
# prefetch, beside QEMU's restore of the same guest in the same run.
#
# The guest is memtest reread=1: it fills N MiB, then waits for a byte on
# COM1 and verifies every word, timing that pass with the TSC. It is saved
# while it waits; each restore is given the byte at once (stdin), so the
# pass is the restored guest's first touch of its working set (a byte
# every 5 ms on stdin: a byte that arrived before the restore was done
# would be lost with the UART state it restores, as QEMU's is). Measured
# per restore: the pass as the guest timed it, and exec of the VMM to the
# pass's line on the serial port (restore plus pass; polled every 5 ms).
# stasis restores with --memory ondemand without a working set
# (--prefetch off), with the SNAPSHOT.wset a first restore recorded
# (--record-working-set, ended by `ctl working-set` once the pass is
# done), and with --memory copy for reference; QEMU with -incoming
# "exec:cat FILE" of a migration of the waiting guest.
#
# Usage: bench/prefetch.sh [BUILD_DIR]      (default: build)
# Environment:
#   BENCH_RUNS   restores of each kind, interleaved (5)
#   BENCH_MEM    guest RAM (256M)
#   BENCH_MIB    MiB the guest fills (200)
#   BENCH_REREAD MiB of it the guest re-reads after the restore, the last
#                ones (50): its working set, a part of what the file holds,
#                which a plain background fill would reach last
#   BENCH_DIR    where snapshot files go (${TMPDIR:-/tmp})
#   BENCH_HUGEPAGES  1: the stasis restores again with --hugepages 2M
#                (needs BENCH_MEM of free 2 MiB hugepages, reserved by
#                root beforehand: echo N > /proc/sys/vm/nr_hugepages);
#                default: when that many are free
#   QEMU, BENCH_QEMU_CPU, KVMVM_CACHE  as for the other benchmarks
# A benchmark, not a test: the exit status is 0 unless it broke.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_setup "$0" "${1:-$BENCH_ROOT/build}"

RUNS=${BENCH_RUNS:-5}
MEM=${BENCH_MEM:-256M}
MIB=${BENCH_MIB:-200}
REREAD=${BENCH_REREAD:-50}
bench_workdir prefetch
ARGS="mib=$MIB reread=1 reread_mib=$REREAD"

# boot_wait PID OUT: the guest is filled and waiting for its byte.
boot_wait() {
	bench_wait_for "$2" "memtest: ready 1" "$1" $((120 + MIB)) ||
		bench_die "the guest did not get ready: $(tail -n 3 "$2" "$2.err" 2>/dev/null)"
}

# now_ms: CLOCK_REALTIME in ms, with a fraction.
now_ms() {
	local t
	t=$(date +%s%N)
	echo "$((t / 1000000)).$(printf '%06d' $((t % 1000000)))"
}

# feed: a byte every 5 ms until the reader goes.
feed() {
	while printf x 2>/dev/null; do sleep 0.005; done
}

# one KIND CMD...: one restore fed the byte; records exec-to-line and the
# guest's own pass time under KIND.
one() {
	local kind=$1 out=$DIR/run.out pid t0 t1 end us
	shift
	rm -f "$out"
	t0=$(now_ms)
	"$@" < <(feed) >"$out" 2>"$DIR/run.err" &
	pid=$!
	PIDS+=("$pid")
	end=$((SECONDS + 60 + MIB / 4))
	until grep -q "memtest: reread" "$out" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= end)); then
			bench_fail "$kind: no pass line: $(tail -n 2 "$out" "$DIR/run.err" 2>/dev/null | tr '\n' ' ')"
			kill -9 "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			return 0
		fi
		sleep 0.005
	done
	t1=$(now_ms)
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	us=$(sed -n 's/^memtest: reread [0-9]* MiB in \([0-9]*\) us.*/\1/p' "$out" | head -n 1)
	[[ -n $us ]] || { bench_fail "$kind: unreadable pass line: $(head -c 200 "$out")"; return 0; }
	bench_put "$kind" total_ms "$(bench_calc "a - b" "$t1" "$t0")"
	bench_put "$kind" pass_ms "$(bench_calc "a / 1000" "$us")"
	if [[ $kind == *prefetch ]] && ! grep -q "prefetching" "$DIR/run.err"; then
		bench_fail "prefetch: the working set was not used: $(head -n 2 "$DIR/run.err")"
	fi
}

# --- stasis: the snapshot, then the working set of a first restore.
S=$SOCKDIR/s.sock
SNAP=$DIR/stasis.snap
"$STASIS" run --kernel "$GUESTS/memtest.elf" --mem "$MEM" \
	--cpu-template "$BENCH_CPU_TEMPLATE" --serial "file:$DIR/s.out" \
	--api-socket "$S" --cmdline "$ARGS" 2>"$DIR/s.out.err" &
pid=$!
PIDS+=("$pid")
boot_wait "$pid" "$DIR/s.out"
"$STASIS" ctl "$S" snapshot "$SNAP" --then exit >/dev/null
bench_wait_exit "$pid" 60
bench_step "stasis: saved; recording the working set"
rm -f "$S"
"$STASIS" restore "$SNAP" --record-working-set=600000 --api-socket "$S" \
	--serial stdio < <(feed) >"$DIR/rec.out" 2>"$DIR/rec.err" &
pid=$!
PIDS+=("$pid")
bench_wait_for "$DIR/rec.out" "memtest: reread" "$pid" $((120 + MIB)) ||
	bench_die "the recording restore made no pass: $(tail -n 2 "$DIR/rec.out" "$DIR/rec.err")"
"$STASIS" ctl "$S" working-set >/dev/null
bench_wait_exit "$pid" 1
[[ -f $SNAP.wset ]] || bench_die "no $SNAP.wset: $(cat "$DIR/rec.err")"
WSET_LINE=$(grep "working set:" "$DIR/rec.err" | head -n 1)

# --- QEMU: a live migration of the waiting guest into a file, so that
# the destination runs the guest once it is in.
Q=$SOCKDIR/q.sock
QSNAP=$DIR/qemu.snap
QBASE=("$QEMU" -M microvm -accel kvm -cpu "$QEMU_CPU" -m "$MEM" -smp 1 -nodefaults
	-no-user-config -display none -no-reboot -kernel "$GUESTS/memtest.elf"
	-append "$ARGS" -device isa-debug-exit,iobase=0xf4,iosize=4)
"${QBASE[@]}" -serial "file:$DIR/q.out" -qmp "unix:$Q,server=on,wait=off" \
	2>"$DIR/q.out.err" &
pid=$!
PIDS+=("$pid")
QEMU_OK=1
if bench_wait_for "$DIR/q.out" "memtest: ready 1" "$pid" $((120 + MIB)) &&
	"$BENCHTOOL" qmp "$Q" "$BENCH_QMP_NOCAP" \
		"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat > $QSNAP\"}}" \
		wait-migrate '{"execute": "quit"}' >/dev/null; then
	bench_wait_exit "$pid" 60
else
	bench_fail "QEMU: could not save the guest: $(tail -n 2 "$DIR/q.out" "$DIR/q.out.err" 2>/dev/null | tr '\n' ' ')"
	bench_wait_exit "$pid" 1
	QEMU_OK=0
fi

HUGE=${BENCH_HUGEPAGES:-}
free_huge=$(awk '/^HugePages_Free:/ { f = $2 } /^HugePages_Rsvd:/ { r = $2 } END { print f - r }' /proc/meminfo)
need_huge=$((${MEM%M} / 2))
if [[ -z $HUGE ]]; then
	HUGE=0
	((free_huge >= need_huge)) && HUGE=1
fi
if ((HUGE)) && ((free_huge < need_huge)); then
	bench_die "BENCH_HUGEPAGES=1: $need_huge free 2 MiB hugepages needed, $free_huge free"
fi
((HUGE)) || bench_note "no --hugepages 2M rows: $free_huge free 2 MiB hugepages, $need_huge needed (BENCH_HUGEPAGES)"

bench_step "restores x$RUNS, interleaved"
for ((i = 1; i <= RUNS; i++)); do
	one ondemand "$STASIS" restore "$SNAP" --prefetch off --serial stdio
	one prefetch "$STASIS" restore "$SNAP" --serial stdio
	one copy "$STASIS" restore "$SNAP" --memory copy --serial stdio
	if ((QEMU_OK)); then
		one qemu "${QBASE[@]}" -serial stdio -incoming "exec:cat $QSNAP"
	fi
	if ((HUGE)); then
		one h-ondemand "$STASIS" restore "$SNAP" --hugepages 2M \
			--prefetch off --serial stdio
		one h-prefetch "$STASIS" restore "$SNAP" --hugepages 2M --serial stdio
		one h-copy "$STASIS" restore "$SNAP" --hugepages 2M --memory copy \
			--serial stdio
	fi
done

# --- report
cell() {
	local m r
	m=$(bench_get "$1" "$2")
	r=$([[ -s $RES/$1/$2 ]] && bench_range <"$RES/$1/$2" || echo -)
	echo "$(bench_fmt %.1f "$m") ($r)"
}
echo
bench_machine
echo "guest: memtest reread=1, $MIB MiB of $MEM filled, the last $REREAD MiB re-read after the restore; medians of $RUNS (min-max), ms"
echo "working set: $WSET_LINE"
echo
echo "| restore | guest's pass (ms) | exec to the pass's line (ms) |"
echo "|---|---:|---:|"
echo "| QEMU -incoming | $(cell qemu pass_ms) | $(cell qemu total_ms) |"
echo "| stasis ondemand, --prefetch off | $(cell ondemand pass_ms) | $(cell ondemand total_ms) |"
echo "| stasis ondemand, working set prefetched | $(cell prefetch pass_ms) | $(cell prefetch total_ms) |"
echo "| stasis --memory copy | $(cell copy pass_ms) | $(cell copy total_ms) |"
if ((HUGE)); then
	echo "| stasis --hugepages 2M, ondemand, --prefetch off | $(cell h-ondemand pass_ms) | $(cell h-ondemand total_ms) |"
	echo "| stasis --hugepages 2M, ondemand, prefetched | $(cell h-prefetch pass_ms) | $(cell h-prefetch total_ms) |"
	echo "| stasis --hugepages 2M, --memory copy | $(cell h-copy pass_ms) | $(cell h-copy total_ms) |"
fi
echo
echo "prefetch speed-up of the guest's pass: $(bench_fmt %.2f "$(bench_calc "a / b" "$(bench_get ondemand pass_ms)" "$(bench_get prefetch pass_ms)")")x; of exec to its end: $(bench_fmt %.2f "$(bench_calc "a / b" "$(bench_get ondemand total_ms)" "$(bench_get prefetch total_ms)")")x"
echo "QEMU / stasis with prefetch, exec to the pass's end: $(bench_fmt %.2f "$(bench_calc "a / b" "$(bench_get qemu total_ms)" "$(bench_get prefetch total_ms)")")"
if ((HUGE)); then
	echo "with --hugepages 2M: prefetch speed-up of the pass $(bench_fmt %.2f "$(bench_calc "a / b" "$(bench_get h-ondemand pass_ms)" "$(bench_get h-prefetch pass_ms)")")x; QEMU / stasis prefetched, exec to the pass's end: $(bench_fmt %.2f "$(bench_calc "a / b" "$(bench_get qemu total_ms)" "$(bench_get h-prefetch total_ms)")")"
fi
if [[ -s $RES/failures ]]; then
	echo
	echo "failed measurements:"
	sed 's/^/  /' "$RES/failures"
fi
