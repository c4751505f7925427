#!/usr/bin/env bash
# bench/migrate.sh BUILD_DIR: migration on loopback, stasis beside QEMU
# 7.2 in one run, medians of BENCH_RUNS (3). For a 2 GiB guest: idle
# with 512 MiB touched, dirtying 32 MiB/s and dirtying 256 MiB/s, each
# memtest with 2 vCPUs and smp=1 tick_hz=1000 (CPU 0 prints "counter: T"
# at 1000 Hz; CPU 1 touches 512 MiB once and halts, or rewrites a
# 256 MiB working set paced to rate_mib=32 or 256), and the counter guest
# at 1000 Hz with 1 vCPU: total time, bytes sent, rounds, downtime as
# each VMM reports it, and downtime as the guest sees it: its counter
# lines stamped on the host as they come (CLOCK_MONOTONIC), the gap
# between the last line at the source and the first at the destination.
# QEMU runs the same guest with the same vCPU count. stasis migrates over a
# UNIX socket (pre-copy, its default; rounds as it reports them); QEMU
# over tcp to 127.0.0.1, pre-copy with its defaults and the bandwidth cap
# lifted, and post-copy where asked for (BENCH_POSTCOPY=1: QEMU's, and
# stasis's --postcopy with the destination's blocked time per fault).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup "$0" "${1:-build}" "${@:2}"
RUNS=${BENCH_RUNS:-3}
MEM=2G
bench_workdir migrate

# stamp OUT: stdin's lines, each prefixed with the host's monotonic ns.
stamp() {
	python3 -u -c '
import sys, time
out = open(sys.argv[1], "w", buffering=1)
for line in sys.stdin.buffer:
    out.write("%d %s\n" % (time.monotonic_ns(), line.decode("ascii", "replace").rstrip()))
' "$1"
}

# gap_ms A B: the last stamped counter line of A to the first of B, ms.
gap_ms() {
	local last first
	last=$(grep " counter: " "$1" | tail -n 1 | cut -d' ' -f1)
	first=$(grep " counter: " "$2" | head -n 1 | cut -d' ' -f1)
	[[ -n $last && -n $first ]] || { echo "-"; return; }
	bench_calc "(b - a) / 1e6" "$last" "$first"
}

# put_rate SCENARIO PREFIX FILE: the MiB a dirtying guest wrote in its
# last whole second at the source, as it counted them.
put_rate() {
	local w
	w=$(grep -o "memtest: second [0-9]* wrote [0-9]* MiB" "$3" | tail -n 1 | cut -d' ' -f5) || true
	[[ -n $w ]] && bench_put "$1" "$2_wrote" "$w"
	return 0
}

wait_file() { # FILE TEXT SECONDS
	local end=$((SECONDS + $3))
	until grep -qF "$2" "$1" 2>/dev/null; do
		((SECONDS < end)) || return 1
		sleep 0.05
	done
}

# stasis_run SCENARIO KERNEL CMDLINE READY_TEXT [postcopy]: one stasis
# migration.
stasis_run() {
	local sc=$1 kernel=$2 cmdline=$3 ready=$4 mode=${5:-precopy} a b out
	local p=stasis extra="" cpus=${CPUS[$sc]}
	if [[ $mode == postcopy ]]; then
		p=stasis_postcopy
		extra=', "postcopy": true'
	fi
	rm -f "$SOCKDIR"/*.sock "$DIR"/s.a "$DIR"/s.b
	"$STASIS" run --kernel "$kernel" --mem "$MEM" --cpus "$cpus" --cmdline "$cmdline" \
		--cpu-template "$BENCH_CPU_TEMPLATE" --api-socket "$SOCKDIR/a.sock" \
		--serial stdio </dev/null 2>"$DIR/s.a.err" > >(stamp "$DIR/s.a") &
	a=$!
	PIDS+=("$a")
	"$STASIS" receive --listen "unix:$SOCKDIR/m.sock" --api-socket "$SOCKDIR/b.sock" \
		--serial stdio </dev/null 2>"$DIR/s.b.err" > >(stamp "$DIR/s.b") &
	b=$!
	PIDS+=("$b")
	wait_file "$DIR/s.a" "$ready" 300 || { bench_fail "$sc: stasis guest not ready"; return 0; }
	wait_file "$DIR/s.b.err" "waiting for a VM" 30 || { bench_fail "$sc: no receive"; return 0; }
	sleep 0.5
	out=$("$BENCHTOOL" http "$SOCKDIR/a.sock" PUT /vm/migrate \
		"{\"destination\": \"unix:$SOCKDIR/m.sock\"$extra}" 2>&1) ||
		{ bench_fail "$sc: stasis migrate: $out"; return 0; }
	local body=${out#*\{}
	bench_put "$sc" "${p}_total_ms" "$(sed -n 's/.*"total_ms": *\([0-9]*\).*/\1/p' <<<"$body")"
	bench_put "$sc" "${p}_down_ms" "$(sed -n 's/.*"downtime_ms": *\([0-9]*\).*/\1/p' <<<"$body")"
	bench_put "$sc" "${p}_mib" "$(bench_calc "a / 1048576" "$(sed -n 's/.*"bytes_sent": *\([0-9]*\).*/\1/p' <<<"$body")")"
	bench_put "$sc" "${p}_rounds" "$(sed -n 's/.*"rounds": *\([0-9]*\).*/\1/p' <<<"$body")"
	if [[ $mode == postcopy ]]; then
		local k
		for k in faults blocked_p50_us blocked_p99_us; do
			bench_put "$sc" "${p}_$k" "$(sed -n "s/.*\"$k\": *\([0-9]*\).*/\1/p" <<<"$body")"
		done
	fi
	wait_file "$DIR/s.b" "counter:" 30 || true
	bench_put "$sc" "${p}_gap_ms" "$(gap_ms "$DIR/s.a" "$DIR/s.b")"
	put_rate "$sc" "$p" "$DIR/s.a"
	sleep 0.3
	"$BENCHTOOL" http "$SOCKDIR/b.sock" PUT /vm/shutdown >/dev/null 2>&1 || true
	bench_wait_exit "$b" 30
	bench_wait_exit "$a" 10
}

# qemu_run SCENARIO KERNEL CMDLINE READY_TEXT [postcopy]
qemu_run() {
	local sc=$1 kernel=$2 cmdline=$3 ready=$4 mode=${5:-precopy} a b line port
	port=$((20000 + RANDOM % 20000))
	local q=("$QEMU" -M microvm -accel kvm -cpu "$QEMU_CPU" -m "$MEM" -smp "${CPUS[$sc]}"
		-nodefaults -no-user-config -display none -no-reboot -kernel "$kernel"
		-append "$cmdline" -device isa-debug-exit,iobase=0xf4,iosize=4 -serial stdio)
	rm -f "$SOCKDIR"/*.qmp "$DIR"/q.a "$DIR"/q.b
	"${q[@]}" -qmp "unix:$SOCKDIR/a.qmp,server=on,wait=off" </dev/null 2>"$DIR/q.a.err" \
		> >(stamp "$DIR/q.a") &
	a=$!
	PIDS+=("$a")
	"${q[@]}" -qmp "unix:$SOCKDIR/b.qmp,server=on,wait=off" -incoming "tcp:127.0.0.1:$port" \
		</dev/null 2>"$DIR/q.b.err" > >(stamp "$DIR/q.b") &
	b=$!
	PIDS+=("$b")
	wait_file "$DIR/q.a" "$ready" 300 || { bench_fail "$sc: QEMU guest not ready"; return 0; }
	sleep 0.5
	local caps='{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "postcopy-ram", "state": true}]}}'
	if [[ $mode == postcopy ]]; then
		"$BENCHTOOL" qmp "$SOCKDIR/b.qmp" "$caps" >/dev/null ||
			{ bench_fail "$sc: QEMU destination refuses postcopy-ram"; return 0; }
		line=$("$BENCHTOOL" qmp "$SOCKDIR/a.qmp" "$BENCH_QMP_NOCAP" "$caps" \
			"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"tcp:127.0.0.1:$port\"}}" \
			'{"execute": "migrate-start-postcopy"}' wait-migrate 2>&1) ||
			{ bench_fail "$sc: QEMU postcopy: $(tail -n 1 <<<"$line")"; return 0; }
	else
		line=$("$BENCHTOOL" qmp "$SOCKDIR/a.qmp" "$BENCH_QMP_NOCAP" \
			"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"tcp:127.0.0.1:$port\"}}" \
			wait-migrate 2>&1) ||
			{ bench_fail "$sc: QEMU migrate: $(tail -n 1 <<<"$line")"; return 0; }
	fi
	line=$(tail -n 1 <<<"$line")
	local p=qemu_$mode
	bench_put "$sc" "${p}_total_ms" "$(sed -n 's/.*"total-time": *\([0-9]*\).*/\1/p' <<<"$line")"
	bench_put "$sc" "${p}_down_ms" "$(sed -n 's/.*"downtime": *\([0-9]*\).*/\1/p' <<<"$line")"
	bench_put "$sc" "${p}_mib" "$(bench_calc "a / 1048576" "$(sed -n 's/.*"transferred": *\([0-9]*\).*/\1/p' <<<"$line")")"
	bench_put "$sc" "${p}_rounds" "$(sed -n 's/.*"dirty-sync-count": *\([0-9]*\).*/\1/p' <<<"$line")"
	wait_file "$DIR/q.b" "counter:" 30 || true
	bench_put "$sc" "${p}_gap_ms" "$(gap_ms "$DIR/q.a" "$DIR/q.b")"
	put_rate "$sc" "$p" "$DIR/q.a"
	# The source stays paused after its migration: both are told to quit.
	"$BENCHTOOL" qmp "$SOCKDIR/b.qmp" '{"execute": "quit"}' >/dev/null 2>&1 || true
	"$BENCHTOOL" qmp "$SOCKDIR/a.qmp" '{"execute": "quit"}' >/dev/null 2>&1 || true
	bench_wait_exit "$b" 30
	bench_wait_exit "$a" 10
}

SCEN=(idle d32 dirty tick)
declare -A DESC=([idle]="idle, 512 MiB touched" [d32]="dirtying 32 MiB/s" [dirty]="dirtying 256 MiB/s" [tick]="counter at 1000 Hz")
declare -A KERNEL=([idle]=memtest [d32]=memtest [dirty]=memtest [tick]=counter)
declare -A CMD=([idle]="touch=512 smp=1 tick_hz=1000"
	[d32]="mib=256 smp=1 tick_hz=1000 rate_mib=32"
	[dirty]="mib=256 smp=1 tick_hz=1000 rate_mib=256" [tick]="hz=1000")
declare -A CPUS=([idle]=2 [d32]=2 [dirty]=2 [tick]=1)
declare -A READY=([idle]="memtest: touched 512 MiB" [d32]="memtest: second 3 wrote"
	[dirty]="memtest: second 3 wrote" [tick]="counter: 500")
for ((r = 1; r <= RUNS; r++)); do
	for sc in "${SCEN[@]}"; do
		bench_step "run $r/$RUNS: $sc"
		stasis_run "$sc" "$GUESTS/${KERNEL[$sc]}.elf" "${CMD[$sc]}" "${READY[$sc]}"
		qemu_run "$sc" "$GUESTS/${KERNEL[$sc]}.elf" "${CMD[$sc]}" "${READY[$sc]}"
		if [[ ${BENCH_POSTCOPY:-0} == 1 ]]; then
			stasis_run "$sc" "$GUESTS/${KERNEL[$sc]}.elf" "${CMD[$sc]}" "${READY[$sc]}" postcopy
			qemu_run "$sc" "$GUESTS/${KERNEL[$sc]}.elf" "${CMD[$sc]}" "${READY[$sc]}" postcopy
		fi
	done
done

bench_machine
echo "guest: $MEM RAM; medians of $RUNS runs; loopback (stasis: UNIX socket, QEMU: tcp 127.0.0.1)"
for sc in "${SCEN[@]}"; do
	echo "  ${DESC[$sc]}: ${KERNEL[$sc]} ${CMD[$sc]}, ${CPUS[$sc]} vCPU(s)"
done
echo
echo "| guest | VMM, mode | total ms | downtime ms (VMM) | gap the guest saw, ms | MiB sent | rounds |"
echo "|---|---|---:|---:|---:|---:|---:|"
for sc in "${SCEN[@]}"; do
	for p in stasis qemu_precopy stasis_postcopy qemu_postcopy; do
		[[ $p == *_postcopy && ${BENCH_POSTCOPY:-0} != 1 ]] && continue
		name=$p
		[[ $p == stasis ]] && name="stasis, pre-copy"
		[[ $p == stasis_postcopy ]] && name="stasis, post-copy"
		[[ $p == qemu_precopy ]] && name="QEMU, pre-copy"
		[[ $p == qemu_postcopy ]] && name="QEMU, post-copy"
		echo "| ${DESC[$sc]} | $name | $(bench_get "$sc" "${p}_total_ms") | $(bench_get "$sc" "${p}_down_ms") | $(bench_fmt %.0f "$(bench_get "$sc" "${p}_gap_ms")") | $(bench_fmt %.1f "$(bench_get "$sc" "${p}_mib")") | $(bench_get "$sc" "${p}_rounds") |"
	done
done
echo
echo "MiB the dirtying guests wrote in their last second at the source (their own count):"
for sc in d32 dirty; do
	line="  ${DESC[$sc]}:"
	for p in stasis qemu_precopy stasis_postcopy qemu_postcopy; do
		[[ $p == *_postcopy && ${BENCH_POSTCOPY:-0} != 1 ]] && continue
		line+=" $p $(bench_get "$sc" "${p}_wrote")"
	done
	echo "$line"
done
if [[ ${BENCH_POSTCOPY:-0} == 1 ]]; then
	echo
	echo "stasis post-copy, vCPU blocked time per fault that waited for a chunk (the destination's report):"
	echo
	echo "| guest | faults | blocked p50 us | blocked p99 us |"
	echo "|---|---:|---:|---:|"
	for sc in "${SCEN[@]}"; do
		echo "| ${DESC[$sc]} | $(bench_get "$sc" stasis_postcopy_faults) | $(bench_get "$sc" stasis_postcopy_blocked_p50_us) | $(bench_get "$sc" stasis_postcopy_blocked_p99_us) |"
	done
fi
[[ -s $RES/failures ]] && { echo "failures:"; sed 's/^/  /' "$RES/failures"; }
exit 0
