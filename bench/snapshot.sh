#!/usr/bin/env bash
# bench/snapshot.sh - pause, snapshot and restore costs, stasis vs QEMU
# microvm (migration to a file) on the same guest images in the same run:
# save beside dd and QEMU, compressed, incremental and live saves; restore
# to ready, to the first guest instruction and to the first guest output
# in each memory mode, with and without working-set prefetch, by exec and
# into a waiting target; the restore's phases; clones per second and RSS
# per clone.
#
# Usage: bench/snapshot.sh [BUILD_DIR]      (default: build)
# Environment:
#   BENCH_QUICK      1: a check that runs in a few minutes (256M/10 and
#                    2G/10, one run each, 5 clones, two codecs, the 1%
#                    increment only); the figures are then not medians
#   BENCH_RUNS       repetitions of each measurement (3) for guests under
#                    8 GiB; BENCH_RUNS_BIG (1) for 8 GiB and larger, whose
#                    every save and copy restore moves gigabytes
#   BENCH_SCENARIOS  "MEM/PCT ..." guest RAM and % of it the memtest guest
#                    touches; default "256M/10 256M/100 2G/10 2G/100 8G/10
#                    8G/100", without 2G/100 and 8G inside the nested VM
#   BENCH_MODES      restore --memory modes of the restore matrix
#                    ("ondemand map copy")
#   BENCH_DIR        where snapshot files go (${TMPDIR:-/tmp}); the dd
#                    baseline is measured there too
#   BENCH_CODECS     --compress choices measured on realistic memory
#                    ("none lz4 zstd:1 zstd:3"); "" skips that part
#   BENCH_CODEC_MEM  RAM of the codec guests (256M); memtest mode=text
#                    fills all but 56 MiB of it
#   BENCH_LINUX      a vmlinux for the Linux early-boot codec guest
#                    (default: $STASIS_LINUX_CACHE/vmlinux when present)
#   BENCH_DIRTY      % of a 2 GiB guest dirtied for incremental saves ("1 10")
#   BENCH_CLONES     clone counts ("1 20"), of a 256 MiB guest, 10% filled
#   QEMU             qemu-system-x86_64
#   BENCH_QEMU_CPU   QEMU's -cpu, instead of the one bench/lib.sh picks
#   KVMVM_CACHE, KVMVM_MEM (8G here)  for the nested VM used when /dev/kvm
#                    does not open
# Options the binary lacks (working-set prefetch, incremental and live
# snapshots) give rows that say "n/a (...)" instead of failing.
# A benchmark, not a test: targets are reported PASS/MISS, and the exit
# status is 0 unless the benchmark itself broke.
set -euo pipefail
# A 2 GiB guest, its snapshot and the restored copy must fit in the nested VM.
export KVMVM_MEM=${KVMVM_MEM:-8G}
source "$(dirname "$0")/lib.sh"
bench_setup "$0" "${1:-$BENCH_ROOT/build}"

QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-3}
RUNS_BIG=${BENCH_RUNS_BIG:-1}
((QUICK)) && RUNS=1 RUNS_BIG=1
RUNS_SMALL=$RUNS
if [[ -n ${BENCH_SCENARIOS:-} ]]; then
	SCENARIOS=$BENCH_SCENARIOS
elif ((QUICK)); then
	SCENARIOS="256M/10 2G/10"
elif [[ ${KVMVM:-0} = 1 ]]; then
	SCENARIOS="256M/10 256M/100 2G/10"
	bench_note "nested VM: 2G/100 and 8G left out (touching 2 GiB there takes minutes per VMM); BENCH_SCENARIOS='256M/10 256M/100 2G/10 2G/100' runs it"
else
	SCENARIOS="256M/10 256M/100 2G/10 2G/100 8G/10 8G/100"
fi
MODES=${BENCH_MODES:-ondemand map copy}
DIRTY=${BENCH_DIRTY:-$( ((QUICK)) && echo 1 || echo "1 10")}
SNAP_CLONES=${BENCH_CLONES:-$( ((QUICK)) && echo "1 5" || echo "1 20")}
# The guest prints every BEAT_MS once it has touched its memory: the first
# output after a restore comes at most that long after the guest runs.
BEAT_MS=2
bench_workdir snap

put() { bench_put "$@"; }
get() { bench_get "$@"; }
step() { bench_step "$@"; }
fail() { bench_fail "$@"; }

# wait_touched FILE MIB PID: until the memtest guest says it touched MIB
# MiB; 1 at once when it stopped on an exception or error (a guest kit
# that mapped RAM above 4 GiB with 1 GiB pages faulted at 4 GiB where the
# MMU refuses the pages CPUID offers, as KVM on PVM does), when PID died
# or after 120 s + 1 s per MiB.
wait_touched() {
	local end=$((SECONDS + 120 + $2))
	until grep -qF "memtest: touched $2 MiB" "$1" 2>/dev/null; do
		grep -qE "guest: exception|memtest: ERROR" "$1" 2>/dev/null && return 1
		kill -0 "$3" 2>/dev/null || return 1
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}

# runs_for SCENARIO: how often its measurements are repeated.
runs_for() {
	local mib
	mib=$(mib_of "${1%/*}")
	((mib >= 8192)) && echo "$RUNS_BIG" || echo "$RUNS_SMALL"
}

# timing_at FILE NAME: the ms since exec of restore phase NAME in a
# --timings block on stderr (FILE), or nothing.
timing_at() {
	awk -v n="$2" '$2 == "timings:" && $3 == n { v = $4 } END { if (v != "") print v }' "$1" 2>/dev/null
}

# The phases of a restore, in order (stasis restore --timings).
PHASES="main file kvm memory vcpus machine state devices first_run first_exit"
TARGET_PHASES="request file machine state devices first_run first_exit"

# put_phases KEY FILE: each phase's length (ms, since the one before it)
# from the --timings block in FILE; main counts from exec.
put_phases() {
	local key=$1 file=$2 prev=0 at p list=$PHASES
	[[ $key == */target* ]] && { list=$TARGET_PHASES; prev=$(timing_at "$file" request); }
	for p in $list; do
		at=$(timing_at "$file" "$p")
		[[ -n $at ]] || continue
		[[ $p == request ]] && { prev=$at; continue; }
		put "$key" "ph_$p" "$(bench_calc "a - b" "$at" "$prev")"
		prev=$at
	done
}

mib_of() {
	case $1 in
	*G) echo $((${1%G} * 1024)) ;;
	*M) echo "${1%M}" ;;
	*) bench_die "bad memory size $1" ;;
	esac
}

# Everything memtest can get is RAM minus the first MiB, its image and the
# firmware's bits: "100%" is the RAM size less 4 MiB.
touch_mib() {
	local mib=$1 pct=$2 n
	n=$((mib * pct / 100))
	((n > mib - 4)) && n=$((mib - 4))
	echo "$n"
}

# qemu_base MEM KERNEL CMDLINE: sets QBASE, the QEMU command line shared by
# the run and the restore of one scenario.
qemu_base() {
	QBASE=("$QEMU" -M microvm -accel kvm -cpu "$QEMU_CPU" -m "$1" -smp 1 -nodefaults
		-no-user-config -display none -no-reboot -kernel "$2"
		-append "$3" -device isa-debug-exit,iobase=0xf4,iosize=4)
}

file_size() { stat -c %s "$1"; }
to_mib() { awk -v v="$1" 'BEGIN { printf "%.2f", v / 1048576 }'; }

# dd_bw SCENARIO BYTES: the dd baseline on the snapshot file system, MB/s.
dd_bw() {
	local count out secs
	count=$((($2 + 1048575) / 1048576))
	out=$(dd if=/dev/zero of="$DIR/dd.tmp" bs=1M count="$count" conv=fsync 2>&1) ||
		{ fail "$1: dd failed: $out"; return 0; }
	rm -f "$DIR/dd.tmp"
	secs=$(echo "$out" | sed -n 's/.* copied, \([0-9.e+-]*\) s.*/\1/p')
	put "$1" dd_mbs "$(awk -v b="$((count * 1048576))" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }')"
}

# ------------------------------------------------------------- stasis --

stasis_scenario() {
	local sc=$1 mem=$2 mib=$3 sock=$SOCKDIR/s.sock out=$DIR/s.out pid line i
	local snap=$DIR/stasis.snap us RUNS
	RUNS=$(runs_for "$sc")
	rm -f "$out"
	"$STASIS" run --kernel "$GUESTS/memtest.elf" --mem "$mem" --cpus 1 \
		--cpu-template "$BENCH_CPU_TEMPLATE" --serial "file:$out" --api-socket "$sock" \
		--cmdline "mode=touch mib=$mib beat_ms=$BEAT_MS" 2>"$DIR/s.err" &
	pid=$!
	PIDS+=("$pid")
	if ! wait_touched "$out" "$mib" "$pid"; then
		fail "$sc: stasis guest did not touch its memory: $(cat "$out" "$DIR/s.err" 2>/dev/null | tail -n 3)"
		bench_wait_exit "$pid" 1
		return 0
	fi
	step "$sc: stasis touched; pause x$RUNS"
	for ((i = 1; i <= RUNS; i++)); do
		sleep 0.5
		line=$("$BENCHTOOL" http "$sock" PUT /vm/pause | head -n1) ||
			{ fail "$sc: stasis pause failed: $line"; continue; }
		put "$sc" s_pause_rtt_ms "$(bench_calc "a / 1000" "$(bench_kv "$line" us)")"
		us=$("$BENCHTOOL" http "$sock" GET /vm | sed -n 's/.*"last_pause_us": *\([0-9]*\).*/\1/p') || true
		[[ -n $us ]] && put "$sc" s_pause_us "$us"
		"$BENCHTOOL" http "$sock" PUT /vm/resume >/dev/null ||
			fail "$sc: stasis resume failed"
	done
	step "$sc: stasis snapshot x$RUNS"
	for ((i = 1; i <= RUNS; i++)); do
		sleep 0.5
		rm -f "$snap"
		line=$("$BENCHTOOL" http "$sock" PUT /vm/snapshot \
			"{\"path\": \"$snap\", \"then\": \"resume\"}") ||
			{ fail "$sc: stasis snapshot failed: $(echo $line)"; continue; }
		us=$(bench_kv "$(echo "$line" | head -n1)" us)
		put "$sc" s_save_s "$(bench_calc "a / 1e6" "$us")"
		put "$sc" s_file_mib "$(to_mib "$(file_size "$snap")")"
		put "$sc" s_save_mbs "$(bench_calc "a / b" "$(file_size "$snap")" "$us")"
	done
	((HAVE_LIVE)) && live_saves "$sc" "$sock" "$pid" "$RUNS"
	"$BENCHTOOL" http "$sock" PUT /vm/shutdown >/dev/null || true
	bench_wait_exit "$pid" 60
	[[ -f $snap ]] || return 0
	step "$sc: dd"
	dd_bw "$sc" "$(file_size "$snap")"
	# Each memory mode, to ready: ondemand (default; chunks are read as
	# the guest touches them), map (mapped, every chunk verified first)
	# and copy (all read before the VM is ready, like QEMU's -incoming).
	for mode in $MODES; do
		[[ $mode == map || $HAVE_MEMORY_MODES == 1 ]] || continue
		step "$sc: stasis restore --memory $mode x$RUNS"
		for ((i = 1; i <= RUNS; i++)); do
			line=$("$BENCHTOOL" restore --http "$SOCKDIR/r.sock" --no-output \
				--timeout-ms $(((300 + mib) * 1000)) -- \
				"$STASIS" restore "$snap" --api-socket "$SOCKDIR/r.sock" \
				--paused --serial none \
				$([[ $HAVE_MEMORY_MODES == 1 ]] && echo --memory $mode) \
				2>"$DIR/r.err") ||
				{ fail "$sc: stasis restore --memory $mode failed: $line $(tail -n 30 "$DIR/r.err")"; continue; }
			put "$sc" "s_ready_${mode}_s" "$(bench_calc "a / 1e6" "$(bench_kv "$line" ready_us)")"
			put "$sc" s_resume_ms "$(bench_calc "a / 1000" "$(bench_kv "$line" resume_us)")"
		done
	done
	restore_matrix "$sc" "$mem" "$snap" "$RUNS" noprefetch
	if ((HAVE_WSET)); then
		record_working_set "$sc" "$snap" && restore_matrix "$sc" "$mem" "$snap" "$RUNS" prefetch
	fi
	rm -f "$snap" "$snap.wset"
}

# restore_matrix SCENARIO MEM SNAP RUNS noprefetch|prefetch: for each
# memory mode, RUNS restores by exec and RUNS into a waiting target, each
# timed to vCPU 0's first KVM_RUN (the first guest instruction; from
# --timings) and to the guest's first serial byte.
restore_matrix() {
	local sc=$1 mem=$2 snap=$3 runs=$4 pf=$5 mode i line fi extra=()
	[[ $pf == noprefetch ]] && ((HAVE_WSET)) && extra=(--prefetch off)
	for mode in $MODES; do
		step "$sc: stasis restore --memory $mode ($pf) by exec and into a target x$runs"
		for ((i = 1; i <= runs; i++)); do
			line=$("$BENCHTOOL" boot --kill-at-first --timeout-ms 600000 -- \
				"$STASIS" restore "$snap" --serial stdio --memory "$mode" \
				--timings "${extra[@]}" 2>"$DIR/m.err")
			if grep -q '^first_byte_us=[0-9]' <<<"$line"; then
				put "$sc/$mode/$pf" exec_out_ms "$(bench_calc "a / 1000" "$(bench_kv "$line" first_byte_us)")"
				fi=$(timing_at "$DIR/m.err" first_run)
				[[ -n $fi ]] && put "$sc/$mode/$pf" exec_first_ms "$fi"
				if [[ $pf == noprefetch ]]; then
					put_phases "$sc/$mode/exec" "$DIR/m.err"
				fi
			else
				fail "$sc: restore --memory $mode ($pf) printed nothing: $line $(grep -v timings "$DIR/m.err" | tail -n 2)"
			fi
			rm -f "$SOCKDIR/t.sock"
			line=$("$BENCHTOOL" target --http "$SOCKDIR/t.sock" --timeout-ms 600000 \
				--body "{\"path\": \"$snap\", \"memory\": \"$mode\"}" -- \
				"$STASIS" restore --wait --api-socket "$SOCKDIR/t.sock" \
				--mem-max "$mem" --serial stdio --timings "${extra[@]}" \
				2>"$DIR/t.err")
			if grep -q 'first_byte_us=[0-9]' <<<"$line"; then
				put "$sc/$mode/$pf" target_out_ms "$(bench_calc "a / 1000" "$(bench_kv "$line" first_byte_us)")"
				put "$sc/$mode/$pf" target_reply_ms "$(bench_calc "a / 1000" "$(bench_kv "$line" reply_us)")"
				fi=$(bench_calc "a - b" "$(timing_at "$DIR/t.err" first_run)" "$(timing_at "$DIR/t.err" request)")
				[[ $fi != - ]] && put "$sc/$mode/$pf" target_first_ms "$fi"
				# An if, not &&: as the loop's last command a false
				# test would end the function with status 1 (set -e).
				if [[ $pf == noprefetch ]]; then
					put_phases "$sc/$mode/target" "$DIR/t.err"
				fi
			else
				fail "$sc: target restore --memory $mode ($pf) failed: $line $(grep -v timings "$DIR/t.err" | tail -n 2)"
			fi
		done
	done
}

# record_working_set SCENARIO SNAP: one restore with --record-working-set,
# which leaves SNAP.wset beside the snapshot for the restores after it.
record_working_set() {
	local sc=$1 snap=$2 pid
	rm -f "$snap.wset" "$SOCKDIR/w.sock"
	step "$sc: recording the working set (--record-working-set=500)"
	"$STASIS" restore "$snap" --record-working-set=500 --serial none \
		--api-socket "$SOCKDIR/w.sock" </dev/null >/dev/null 2>"$DIR/w.err" &
	pid=$!
	PIDS+=("$pid")
	local end=$((SECONDS + 120))
	while [[ ! -s $snap.wset ]] && kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do
		sleep 0.2
	done
	"$STASIS" ctl "$SOCKDIR/w.sock" shutdown >/dev/null 2>&1 || true
	bench_wait_exit "$pid" 60
	[[ -s $snap.wset ]] && return 0
	fail "$sc: --record-working-set left no $snap.wset: $(tail -n 2 "$DIR/w.err")"
	return 1
}

# live_saves SCENARIO SOCK PID RUNS: snapshots with --live (the guest runs
# while its memory is written): the pause the VM reports, the request to
# the complete file, and the memory the process grew by meanwhile (peak
# RSS, reset before each, minus RSS before).
live_saves() {
	local sc=$1 sock=$2 pid=$3 runs=$4 i line before hwm us
	step "$sc: stasis live snapshot x$runs"
	for ((i = 1; i <= runs; i++)); do
		rm -f "$DIR/live.snap"
		echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
		before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
		line=$("$BENCHTOOL" http "$sock" PUT /vm/snapshot \
			"{\"path\": \"$DIR/live.snap\", \"then\": \"resume\", \"live\": true}") ||
			{ fail "$sc: live snapshot failed: $(echo $line)"; continue; }
		hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
		us=$(bench_kv "$(echo "$line" | head -n1)" us)
		put "$sc" live_total_s "$(bench_calc "a / 1e6" "$us")"
		put "$sc" live_extra_mib "$(bench_calc "(a - b) / 1024" "$hwm" "$before")"
		us=$("$BENCHTOOL" http "$sock" GET /vm | sed -n 's/.*"last_pause_us": *\([0-9]*\).*/\1/p') || true
		[[ -n $us ]] && put "$sc" live_pause_us "$us"
	done
	rm -f "$DIR/live.snap"
}

# --------------------------------------------------------------- QEMU --

qemu_scenario() {
	local sc=$1 mem=$2 mib=$3 sock=$SOCKDIR/q.sock out=$DIR/q.out pid line i
	local snap=$DIR/qemu.snap RUNS
	RUNS=$(runs_for "$sc")
	qemu_base "$mem" "$GUESTS/memtest.elf" "mode=touch mib=$mib beat_ms=$BEAT_MS"
	rm -f "$out"
	"${QBASE[@]}" -serial "file:$out" -qmp "unix:$sock,server=on,wait=off" \
		2>"$DIR/q.err" &
	pid=$!
	PIDS+=("$pid")
	if ! wait_touched "$out" "$mib" "$pid"; then
		fail "$sc: QEMU guest did not touch its memory: $(cat "$out" "$DIR/q.err" 2>/dev/null | tail -n 3)"
		bench_wait_exit "$pid" 1
		return 0
	fi
	"$BENCHTOOL" qmp "$sock" "$BENCH_QMP_NOCAP" >/dev/null ||
		fail "$sc: QEMU migrate-set-parameters failed"
	step "$sc: QEMU touched; stop+save x$RUNS"
	for ((i = 1; i <= RUNS; i++)); do
		sleep 0.5
		rm -f "$snap"
		# stop, save, resume: stop is QEMU's pause; the save is a
		# migration of the stopped VM into a file.
		line=$(bench_qemu_save "$sock" "$snap") ||
			{ fail "$sc: QEMU save failed: $line"; continue; }
		put "$sc" q_stop_rtt_ms "$(bench_calc "a / 1000" "$(bench_kv "$line" stop_us)")"
		put "$sc" q_save_s "$(bench_calc "a / 1e6" "$(bench_kv "$line" save_us)")"
		put "$sc" q_file_mib "$(to_mib "$(file_size "$snap")")"
	done
	# A destination starts the guest by itself only if the source was
	# running: for the first output, a live migration of the running
	# guest to another file (the source stops at its end).
	"$BENCHTOOL" qmp "$sock" \
		"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat > $DIR/qemu-live.snap\"}}" \
		wait-migrate >/dev/null || fail "$sc: QEMU live migration to a file failed"
	"$BENCHTOOL" qmp "$sock" '{"execute": "quit"}' >/dev/null || true
	bench_wait_exit "$pid" 60
	if [[ -s $DIR/qemu-live.snap ]]; then
		step "$sc: QEMU restore to first output x$RUNS"
		first_bytes "$sc" q_out_ms 1000 "$DIR/qo.err" QEMU \
			"${QBASE[@]}" -serial stdio -incoming "exec:cat $DIR/qemu-live.snap"
	fi
	rm -f "$DIR/qemu-live.snap"
	[[ -f $snap ]] || return 0
	step "$sc: QEMU restore x$RUNS"
	for ((i = 1; i <= RUNS; i++)); do
		line=$("$BENCHTOOL" restore --qmp "$SOCKDIR/qr.sock" --no-output \
			--timeout-ms $(((300 + mib) * 1000)) -- "${QBASE[@]}" \
			-serial stdio -qmp "unix:$SOCKDIR/qr.sock,server=on,wait=off" \
			-S -incoming "exec:cat $snap" 2>"$DIR/qr.err") ||
			{ fail "$sc: QEMU restore failed: $line $(tail -n 2 "$DIR/qr.err")"; continue; }
		put "$sc" q_ready_s "$(bench_calc "a / 1e6" "$(bench_kv "$line" ready_us)")"
		put "$sc" q_resume_ms "$(bench_calc "a / 1000" "$(bench_kv "$line" resume_us)")"
	done
	rm -f "$snap"
}

# ---------------------------------- restore to first output (counter) --

# first_bytes SC KEY DIV ERR WHO CMD...: runs the restore CMD RUNS times,
# each killed at its first serial byte, and puts the time from exec to
# that byte (us / DIV) as KEY of SC; WHO names it in a failure, whose
# stderr is in ERR.
first_bytes() {
	local sc=$1 key=$2 div=$3 err=$4 who=$5 line i
	shift 5
	for ((i = 1; i <= RUNS; i++)); do
		line=$("$BENCHTOOL" boot --kill-at-first --timeout-ms 600000 -- \
			"$@" 2>"$err")
		if grep -q '^first_byte_us=[0-9]' <<<"$line"; then
			put "$sc" "$key" "$(bench_calc "a / $div" "$(bench_kv "$line" first_byte_us)")"
		else
			fail "$sc: $who restore printed nothing: $line $(tail -n 2 "$err")"
		fi
	done
}

# A guest that prints on every tick (counter hz=1000: as fast as it can in
# the nested VM) shows when a restored guest runs again: exec of the
# restore to its first serial byte, no --paused.
first_output() {
	local mem=$1 sc=out-$1 sock=$SOCKDIR/c.sock pid line i snap
	local kernel=$GUESTS/counter.elf args="hz=1000"

	# stasis
	snap=$DIR/c-stasis.snap
	"$STASIS" run --kernel "$kernel" --mem "$mem" \
		--cpu-template "$BENCH_CPU_TEMPLATE" --serial "file:$DIR/c.out" \
		--api-socket "$sock" --cmdline "$args" 2>"$DIR/c.err" &
	pid=$!
	PIDS+=("$pid")
	if bench_wait_for "$DIR/c.out" "counter: 5" "$pid" 120 &&
		"$BENCHTOOL" http "$sock" PUT /vm/snapshot \
			"{\"path\": \"$snap\", \"then\": \"exit\"}" >/dev/null; then
		bench_wait_exit "$pid" 60
		first_bytes "$sc" s_first_s 1e6 "$DIR/c.err" stasis \
			"$STASIS" restore "$snap" --serial stdio
	else
		fail "$sc: stasis counter snapshot failed: $(tail -n 3 "$DIR/c.out" "$DIR/c.err")"
		bench_wait_exit "$pid" 1
	fi
	rm -f "$snap" "$DIR/c.out"

	# QEMU: a destination starts the guest by itself only if the source
	# was running, so this one is a live migration (the source stops at
	# its end); -incoming without -S then runs the guest once it is in.
	snap=$DIR/c-qemu.snap
	qemu_base "$mem" "$kernel" "$args"
	"${QBASE[@]}" -serial "file:$DIR/c.out" -qmp "unix:$sock,server=on,wait=off" \
		2>"$DIR/c.err" &
	pid=$!
	PIDS+=("$pid")
	if bench_wait_for "$DIR/c.out" "counter: 5" "$pid" 120 &&
		"$BENCHTOOL" qmp "$sock" "$BENCH_QMP_NOCAP" \
			"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat > $snap\"}}" \
			wait-migrate '{"execute": "quit"}' >/dev/null; then
		bench_wait_exit "$pid" 60
		first_bytes "$sc" q_first_s 1e6 "$DIR/c.err" QEMU \
			"${QBASE[@]}" -serial stdio -incoming "exec:cat $snap"
	else
		fail "$sc: QEMU counter snapshot failed: $(tail -n 3 "$DIR/c.out" "$DIR/c.err")"
		bench_wait_exit "$pid" 1
	fi
	rm -f "$snap" "$DIR/c.out"
}

# codec_guest NAME ARGS...: boots a stasis guest (ARGS after --mem),
# waits for the line READY_RE in its console, pauses it, then saves the
# same state with each codec of CODECS RUNS times (then: pause), keeping
# file size and time. The ratio is the none file over each codec's.
codec_guest() {
	local name=$1 ready=$2 secs=$3 sock=$SOCKDIR/c.sock out=$DIR/codec.out
	local snap=$DIR/codec.snap pid line us c i
	shift 3
	rm -f "$out" "$sock"
	"$STASIS" run --mem "$CODEC_MEM" --cpus 1 --serial "file:$out" \
		--api-socket "$sock" "$@" 2>"$DIR/codec.err" &
	pid=$!
	PIDS+=("$pid")
	if ! bench_wait_for "$out" "$ready" "$pid" "$secs"; then
		fail "codec $name: guest not ready: $(tail -n 3 "$out" "$DIR/codec.err" 2>/dev/null)"
		bench_wait_exit "$pid" 1
		return 0
	fi
	"$BENCHTOOL" http "$sock" PUT /vm/pause >/dev/null ||
		fail "codec $name: pause failed"
	for c in $CODECS; do
		step "codec $name: $c x$RUNS"
		for ((i = 1; i <= RUNS; i++)); do
			rm -f "$snap"
			line=$("$BENCHTOOL" http "$sock" PUT /vm/snapshot \
				"{\"path\": \"$snap\", \"then\": \"pause\", \"compress\": \"$c\"}") ||
				{ fail "codec $name: snapshot $c failed: $(echo $line)"; continue; }
			us=$(bench_kv "$(echo "$line" | head -n1)" us)
			put "$name/$c" bytes "$(file_size "$snap")"
			put "$name/$c" us "$us"
		done
	done
	"$BENCHTOOL" http "$sock" PUT /vm/shutdown >/dev/null || true
	bench_wait_exit "$pid" 60
	rm -f "$snap"
}

# incremental PCT: a 2 GiB guest with 100% touched, a full snapshot (the
# parent) while it runs, then PCT% of its memory rewritten, then a
# snapshot --base of the parent: time and file size, RUNS times (each on a
# fresh guest, as each dirties once).
incremental() {
	local pct=$1 mib dirty sock=$SOCKDIR/i.sock out=$DIR/i.out pid line us i runs
	mib=$(touch_mib 2048 100)
	dirty=$((2048 * pct / 100))
	runs=$(runs_for 2G/100)
	for ((i = 1; i <= runs; i++)); do
		rm -f "$out" "$sock" "$DIR/parent.snap" "$DIR/incr.snap"
		# Dirtied well after the parent is written (a full save of 2 GiB
		# here takes seconds); the line says when.
		"$STASIS" run --kernel "$GUESTS/memtest.elf" --mem 2G --cpus 1 \
			--cpu-template "$BENCH_CPU_TEMPLATE" --serial "file:$out" \
			--api-socket "$sock" --cmdline "mode=touch mib=$mib dirty=$dirty dirty_at=30" \
			2>"$DIR/i.err" &
		pid=$!
		PIDS+=("$pid")
		if ! wait_touched "$out" "$mib" "$pid"; then
			fail "incremental $pct%: guest did not touch its memory"
			bench_wait_exit "$pid" 1
			continue
		fi
		"$STASIS" ctl "$sock" snapshot "$DIR/parent.snap" --then resume >/dev/null ||
			fail "incremental $pct%: parent snapshot failed"
		grep -q "memtest: dirtied" "$out" &&
			fail "incremental $pct%: the guest dirtied before the parent was written (left in)"
		bench_wait_for "$out" "memtest: dirtied $dirty MiB" "$pid" 120 ||
			fail "incremental $pct%: the guest did not dirty its memory"
		line=$("$BENCHTOOL" http "$sock" PUT /vm/snapshot \
			"{\"path\": \"$DIR/incr.snap\", \"then\": \"resume\", \"base\": \"$DIR/parent.snap\"}") ||
			{ fail "incremental $pct%: snapshot --base failed: $(echo $line)"; line=""; }
		if [[ -n $line ]]; then
			us=$(bench_kv "$(echo "$line" | head -n1)" us)
			put "incr/$pct" save_ms "$(bench_calc "a / 1000" "$us")"
			put "incr/$pct" file_mib "$(to_mib "$(file_size "$DIR/incr.snap")")"
			put "incr/$pct" dirty_mib "$dirty"
		fi
		"$BENCHTOOL" http "$sock" PUT /vm/shutdown >/dev/null || true
		bench_wait_exit "$pid" 60
	done
	rm -f "$DIR/parent.snap" "$DIR/incr.snap"
}

# clone_base: the clones of bench/clones.sh (bench_clones in lib.sh) of a
# 256 MiB vmgenid guest with 10% of it filled: clones per second and RSS
# and PSS per clone.
clone_base() {
	local sock=$SOCKDIR/cb.sock pid n r runs
	runs=$(runs_for 256M/10)
	"$STASIS" run --kernel "$GUESTS/vmgenid.elf" --mem 256M \
		--cpu-template "$BENCH_CPU_TEMPLATE" --api-socket "$sock" \
		--serial "file:$DIR/cb.out" --cmdline "hz=100 touch=26" \
		</dev/null >/dev/null 2>"$DIR/cb.err" &
	pid=$!
	PIDS+=("$pid")
	if ! bench_wait_for "$DIR/cb.out" "counter: 5" "$pid" 120 ||
		! "$STASIS" ctl "$sock" snapshot "$DIR/clone.snap" --then exit >/dev/null; then
		fail "clones: the vmgenid guest did not start or save: $(tail -n 2 "$DIR/cb.err")"
		bench_wait_exit "$pid" 1
		return 0
	fi
	bench_wait_exit "$pid" 60
	for n in $SNAP_CLONES; do
		CLONE_KEYS+=("$n")
		for ((r = 1; r <= runs; r++)); do
			step "clones: N=$n, run $r of $runs"
			bench_clones "$DIR/clone.snap" "$n" "$r" "clones/$n" "vmgenid: memory ok"
		done
	done
	rm -f "$DIR/clone.snap"
}

# ---------------------------------------------------------------- main --

START=$SECONDS
# stasis restore --memory map|copy (map is the default where it exists).
HAVE_MEMORY_MODES=0
"$STASIS" restore --help 2>&1 | grep -q -- --memory && HAVE_MEMORY_MODES=1
# Options built elsewhere: rows for them say n/a where the binary lacks
# them.
HAVE_WSET=0 HAVE_INCR=0 HAVE_LIVE=0
"$STASIS" restore --help 2>&1 | grep -q -- --record-working-set && HAVE_WSET=1
"$STASIS" ctl --help 2>&1 | grep -q -- --base && HAVE_INCR=1
"$STASIS" ctl --help 2>&1 | grep -q -- --live && HAVE_LIVE=1
"$STASIS" restore --help 2>&1 | grep -q -- --wait ||
	bench_die "$STASIS has no restore --wait (the waiting target rows need it)"
FSTYPE=$(stat -f -c %T "$DIR")
bench_note "snapshot: scenarios $SCENARIOS, $RUNS runs each, files in $DIR ($FSTYPE)"
for s in $SCENARIOS; do
	mem=${s%/*}
	pct=${s#*/}
	mib=$(touch_mib "$(mib_of "$mem")" "$pct")
	put "$s" touched_mib "$mib"
	step "$s: stasis, touching $mib MiB"
	stasis_scenario "$s" "$mem" "$mib"
	step "$s: QEMU, touching $mib MiB"
	qemu_scenario "$s" "$mem" "$mib"
done
CODECS=${BENCH_CODECS-$( ((QUICK)) && echo "none lz4" || echo "none lz4 zstd:1 zstd:3")}
CODEC_MEM=${BENCH_CODEC_MEM:-256M}
LINUX=${BENCH_LINUX:-${STASIS_LINUX_CACHE:+$STASIS_LINUX_CACHE/vmlinux}}
CODEC_GUESTS=()
if [[ -n $CODECS ]]; then
	# The codecs are compared against none, so none is always measured.
	[[ " $CODECS " == *" none "* ]] || CODECS="none $CODECS"
	text_mib=$(($(mib_of "$CODEC_MEM") - 56))
	CODEC_GUESTS+=(memtest-text)
	codec_guest memtest-text "memtest: pass 1 ok" $((120 + text_mib)) \
		--kernel "$GUESTS/memtest.elf" --cmdline "mib=$text_mib mode=text"
	if ((QUICK)); then
		bench_note "codec: BENCH_QUICK leaves the Linux guest out"
	elif [[ -n $LINUX && -f $LINUX ]]; then
		CODEC_GUESTS+=(linux-boot)
		# Early boot: the kernel, its page tables and slabs, up to the
		# point it stops for want of a root file system.
		# (bench_wait_for looks for a fixed string: without a root
		# file system, early boot ends in this panic.)
		codec_guest linux-boot "Kernel panic" 300 \
			--kernel "$LINUX" --cmdline "console=ttyS0 nokaslr"
	else
		bench_note "codec: no vmlinux (BENCH_LINUX or STASIS_LINUX_CACHE); the Linux guest is left out"
	fi
fi
if ((HAVE_INCR)); then
	for d in $DIRTY; do
		step "incremental: 2G guest, $d% dirtied since the parent"
		incremental "$d"
	done
fi
CLONE_KEYS=()
if [[ -n $SNAP_CLONES ]]; then
	step "clones: the vmgenid guest, 256 MiB, 26 MiB filled"
	clone_base
fi
OUT_MEMS=$(for s in $SCENARIOS; do echo "${s%/*}"; done | sort -u | sort -h)
((QUICK)) && OUT_MEMS=""
for mem in $OUT_MEMS; do
	step "restore to first output, counter guest, $mem"
	first_output "$mem"
done

# -------------------------------------------------------------- report --

f0() { bench_fmt %.0f "$1"; }
f1() { bench_fmt %.1f "$1"; }
f2() { bench_fmt %.2f "$1"; }
f3() { bench_fmt %.3f "$1"; }

echo
echo "== snapshot: memtest guest (mode=touch), 1 vCPU; medians of $RUNS runs ($RUNS_BIG for 8 GiB and more)$( ((QUICK)) && echo ", BENCH_QUICK: single runs") =="
bench_machine
echo "snapshot files: $DIR ($FSTYPE); total time $((SECONDS - START)) s"
echo
echo "-- pause and save --"
printf '%-9s %7s | %9s %9s %9s | %8s %8s | %9s %9s | %8s %8s %6s\n' \
	"" "touched" "pause" "pause" "QEMU" "save" "save" "file" "file" \
	"stasis" "dd" "save/"
printf '%-9s %7s | %9s %9s %9s | %8s %8s | %9s %9s | %8s %8s %6s\n' \
	"scenario" "MiB" "stasis us" "ctl ms" "stop ms" "stasis s" "QEMU s" \
	"stasis MiB" "QEMU MiB" "MB/s" "MB/s" "dd"
for s in $SCENARIOS; do
	printf '%-9s %7s | %9s %9s %9s | %8s %8s | %9s %9s | %8s %8s %6s\n' \
		"$s%" "$(get "$s" touched_mib)" "$(f0 "$(get "$s" s_pause_us)")" \
		"$(f1 "$(get "$s" s_pause_rtt_ms)")" "$(f1 "$(get "$s" q_stop_rtt_ms)")" \
		"$(f2 "$(get "$s" s_save_s)")" "$(f2 "$(get "$s" q_save_s)")" \
		"$(f1 "$(get "$s" s_file_mib)")" "$(f1 "$(get "$s" q_file_mib)")" \
		"$(f0 "$(get "$s" s_save_mbs)")" "$(f0 "$(get "$s" dd_mbs)")" \
		"$(f2 "$(bench_calc "a / b" "$(get "$s" s_save_mbs)" "$(get "$s" dd_mbs)")")"
done
echo "pause stasis = last_pause_us (request to all vCPUs parked); ctl = the"
echo "PUT /vm/pause round trip; QEMU stop = QMP connect, negotiation and stop,"
echo "both from a fresh client (like stasis ctl). save = request"
echo "to file complete: stasis PUT /vm/snapshot (pauses, writes, fsyncs,"
echo "resumes); QEMU migrate exec:cat of the stopped VM until query-migrate"
echo "says completed, plus an fsync of the file. dd = dd bs=1M conv=fsync of"
echo "the stasis file's size on the same file system."
echo
echo "-- restore (to ready: exec until the paused VM answers its socket) --"
printf '%-9s | %9s %9s %9s %9s | %9s %9s %9s | %9s %9s\n' "" "ready" "ready" "ready" "ready" \
	"QEMU/" "QEMU/" "QEMU/" "resume" "resume"
printf '%-9s | %9s %9s %9s %9s | %9s %9s %9s | %9s %9s\n' "scenario" "stasis s" \
	"stasis s" "stasis s" "QEMU s" "stasis" "stasis" "stasis" "stasis ms" "QEMU ms"
printf '%-9s | %9s %9s %9s %9s | %9s %9s %9s | %9s %9s\n' "" "ondemand" "map" "copy" "" \
	"ondemand" "map" "copy" "" ""
for s in $SCENARIOS; do
	printf '%-9s | %9s %9s %9s %9s | %9s %9s %9s | %9s %9s\n' "$s%" \
		"$(f3 "$(get "$s" s_ready_ondemand_s)")" \
		"$(f3 "$(get "$s" s_ready_map_s)")" "$(f3 "$(get "$s" s_ready_copy_s)")" \
		"$(f3 "$(get "$s" q_ready_s)")" \
		"$(f1 "$(bench_calc "a / b" "$(get "$s" q_ready_s)" "$(get "$s" s_ready_ondemand_s)")")" \
		"$(f1 "$(bench_calc "a / b" "$(get "$s" q_ready_s)" "$(get "$s" s_ready_map_s)")")" \
		"$(f1 "$(bench_calc "a / b" "$(get "$s" q_ready_s)" "$(get "$s" s_ready_copy_s)")")" \
		"$(f1 "$(get "$s" s_resume_ms)")" "$(f1 "$(get "$s" q_resume_ms)")"
done
echo "stasis: restore --paused --memory M until GET /vm answers (it serves"
echo "the API once the image is loaded; ondemand fetches memory as the guest"
echo "touches it, after ready; map and copy verify every chunk before);"
echo "QEMU: -S -incoming 'exec:cat FILE' until query-status leaves inmigrate."
echo "resume = PUT /vm/resume / QMP cont."
echo
if [[ -n $OUT_MEMS ]]; then
	echo "-- restore to first guest output (counter hz=1000, nothing touched) --"
	printf '%-9s | %9s %9s %9s\n' "RAM" "stasis s" "QEMU s" "QEMU/stasis"
	for mem in $OUT_MEMS; do
		printf '%-9s | %9s %9s %9s\n' "$mem" "$(f2 "$(get "out-$mem" s_first_s)")" \
			"$(f2 "$(get "out-$mem" q_first_s)")" \
			"$(f1 "$(bench_calc "a / b" "$(get "out-$mem" q_first_s)" "$(get "out-$mem" s_first_s)")")"
	done
	echo "exec of 'stasis restore FILE' / 'qemu -incoming' (not paused) until the"
	echo "first serial byte of the restored guest."
	echo
fi

# matrix_table noprefetch|prefetch: the restore matrix.
matrix_table() {
	local pf=$1 sc mode k
	printf '%-9s %-8s | %9s %9s | %9s %9s %9s | %9s | %7s %7s\n' "" "" \
		"exec" "exec" "target" "target" "target" "QEMU" "QEMU/" "QEMU/"
	printf '%-9s %-8s | %9s %9s | %9s %9s %9s | %9s | %7s %7s\n' "scenario" \
		"memory" "1st insn" "1st out" "1st insn" "reply" "1st out" "1st out" \
		"exec" "target"
	for sc in $SCENARIOS; do
		for mode in $MODES; do
			k=$sc/$mode/$pf
			printf '%-9s %-8s | %9s %9s | %9s %9s %9s | %9s | %7s %7s\n' \
				"$sc%" "$mode" "$(f2 "$(get "$k" exec_first_ms)")" \
				"$(f2 "$(get "$k" exec_out_ms)")" \
				"$(f2 "$(get "$k" target_first_ms)")" \
				"$(f2 "$(get "$k" target_reply_ms)")" \
				"$(f2 "$(get "$k" target_out_ms)")" \
				"$(f1 "$(get "$sc" q_out_ms)")" \
				"$(f1 "$(bench_calc "a / b" "$(get "$sc" q_out_ms)" "$(get "$k" exec_out_ms)")")" \
				"$(f1 "$(bench_calc "a / b" "$(get "$sc" q_out_ms)" "$(get "$k" target_out_ms)")")"
		done
	done
}

echo "-- restore to the first guest instruction and output, ms (memtest touch, beat every $BEAT_MS ms) --"
echo "without working-set prefetch$( ((HAVE_WSET)) && echo " (--prefetch off)"):"
matrix_table noprefetch
echo "exec: from the exec of 'stasis restore FILE --memory M' (not paused):"
echo "1st insn = vCPU 0's first KVM_RUN that ran the guest entered (--timings,"
echo "from \$STASIS_EXEC_NS), 1st out = first serial byte. target: a waiting"
echo "target (restore --wait --mem-max RAM, made beforehand), from just before"
echo "PUT /vm/restore {\"path\", \"memory\"}: to its first KVM_RUN (from the"
echo "request's arrival), to the reply, to the first serial byte. QEMU: exec"
echo "of -incoming 'exec:cat FILE' of a live-migrated running guest until its"
echo "first serial byte (QEMU has no first-instruction mark). Ratios: QEMU"
echo "1st out over stasis's."
echo
if ((HAVE_WSET)); then
	echo "with working-set prefetch (PATH.wset recorded by --record-working-set=500):"
	matrix_table prefetch
else
	echo "with working-set prefetch: n/a (no --record-working-set)"
fi
echo

echo "-- restore phases, ms (each phase's length; medians; --memory ondemand) --"
printf '%-9s %-7s |' "scenario" "path"
for p in $PHASES; do printf ' %8s' "$p"; done
printf '\n'
for sc in $SCENARIOS; do
	for path in exec target; do
		printf '%-9s %-7s |' "$sc%" "$path"
		for p in $PHASES; do
			if [[ $path == target && " $TARGET_PHASES " != *" $p "* ]]; then
				printf ' %8s' "ahead"
			else
				printf ' %8s' "$(f2 "$(get "$sc/ondemand/$path" "ph_$p")")"
			fi
		done
		printf '\n'
	done
done
echo "main: exec to main(); file: snapshot open, header, CONFIG, CPUID checked;"
echo "kvm: /dev/kvm, capabilities, KVM_CREATE_VM; memory: guest memory and its"
echo "slots; vcpus: irqchip, host CPUID, MSR list, vCPUs; machine: CPUID set,"
echo "devices made; state: every record applied; devices: lazy memory serving"
echo "started, device state rebuilt, clock set; first_run: to vCPU 0's first"
echo "KVM_RUN (threads, filters); first_exit: the guest's first stretch."
echo "A target does kvm, memory and vcpus ahead ('ahead'); its file counts from"
echo "the request's arrival."
echo

echo "-- incremental saves (2 GiB guest, 100% touched, PCT% dirtied since the parent) --"
if ((HAVE_INCR)); then
	printf '%-8s | %9s | %9s %9s\n' "dirtied" "MiB" "save ms" "file MiB"
	for d in $DIRTY; do
		printf '%-8s | %9s | %9s %9s\n' "$d%" "$(get "incr/$d" dirty_mib)" \
			"$(f1 "$(get "incr/$d" save_ms)")" "$(f1 "$(get "incr/$d" file_mib)")"
	done
	echo "save: PUT /vm/snapshot {\"base\": PARENT} (then resume) to the fsynced file."
else
	echo "n/a (option missing: stasis ctl snapshot --base)"
fi
echo
echo "-- live saves (--live: the guest runs while memory is written) --"
if ((HAVE_LIVE)); then
	printf '%-9s | %9s %9s %10s\n' "scenario" "pause us" "total s" "extra MiB"
	for sc in $SCENARIOS; do
		printf '%-9s | %9s %9s %10s\n' "$sc%" "$(f0 "$(get "$sc" live_pause_us)")" \
			"$(f2 "$(get "$sc" live_total_s)")" "$(f1 "$(get "$sc" live_extra_mib)")"
	done
	echo "pause: last_pause_us after it; total: request to fsynced file; extra:"
	echo "peak RSS during it (VmHWM, reset first) minus RSS before."
else
	echo "n/a (option missing: stasis ctl snapshot --live)"
fi
echo
if ((${#CLONE_KEYS[@]})); then
	echo "-- clones (vmgenid guest, 256 MiB, 26 MiB filled, restore --memory map; bench_clones) --"
	printf '%-4s | %12s %10s | %12s %12s\n' N "all ready ms" "clones/s" "RSS MiB each" "PSS MiB each"
	for n in "${CLONE_KEYS[@]}"; do
		printf '%-4s | %12s %10s | %12s %12s\n' "$n" "$(f1 "$(get "clones/$n" ready_ms)")" \
			"$(f1 "$(get "clones/$n" per_s)")" "$(f1 "$(get "clones/$n" rss_each_mib)")" \
			"$(f1 "$(get "clones/$n" pss_each_mib)")"
	done
	echo "ready: first exec until every clone printed 'vmgenid: memory ok'."
	echo
fi

echo
echo "targets:"
for s in $SCENARIOS; do
	v=$(get "$s" s_pause_us)
	printf '  %-4s %-9s pause <= 1 ms: %s us\n' \
		"$(bench_verdict "$(bench_calc "(a <= 1000) ? 1 : 0" "$v")")" "$s%" "$(f0 "$v")"
done
for s in $SCENARIOS; do
	v=$(get "$s" s_file_mib)
	t=$(get "$s" touched_mib)
	printf '  %-4s %-9s snapshot file <= touched + 1 MiB: %s MiB for %s MiB touched\n' \
		"$(bench_verdict "$(bench_calc "(a <= b + 1) ? 1 : 0" "$v" "$t")")" "$s%" "$(f1 "$v")" "$t"
done
for s in $SCENARIOS; do
	v=$(get "$s" s_save_mbs)
	d=$(get "$s" dd_mbs)
	printf '  %-4s %-9s save >= 80%% of dd bandwidth: %s of %s MB/s (%s%%)\n' \
		"$(bench_verdict "$(bench_calc "(a >= 0.8 * b) ? 1 : 0" "$v" "$d")")" "$s%" \
		"$(f0 "$v")" "$(f0 "$d")" "$(f0 "$(bench_calc "100 * a / b" "$v" "$d")")"
done
for s in $SCENARIOS; do
	[[ $s == 2G/10 ]] || continue
	for mode in $MODES; do
		v=$(get "$s" "s_ready_${mode}_s")
		[[ $v == - && $mode == copy ]] && continue
		r=$(bench_calc "a / b" "$(get "$s" q_ready_s)" "$v")
		printf '  %-4s %-9s restore to ready >= 5x faster than QEMU (--memory %s): %sx (%s s vs %s s)\n' \
			"$(bench_verdict "$(bench_calc "(a >= 5) ? 1 : 0" "$r")")" "$s%" "$mode" \
			"$(f1 "$r")" "$(f2 "$v")" "$(f2 "$(get "$s" q_ready_s)")"
	done
done
lo=256M/10 hi=8G/100
[[ " $SCENARIOS " == *" $hi "* ]] || hi=$(echo "$SCENARIOS" | tr ' ' '\n' | tail -n 1)
a=$(get "$hi/ondemand/noprefetch" exec_first_ms) b=$(get "$lo/ondemand/noprefetch" exec_first_ms)
printf '  %-4s first instruction independent of size: %s%% %s ms <= 1.2x %s%% %s ms (ondemand)\n' \
	"$(bench_verdict "$(bench_calc "(a <= 1.2 * b) ? 1 : 0" "$a" "$b")")" "$hi" "$(f2 "$a")" "$lo" "$(f2 "$b")"
printf '  %-4s %-9s first instruction <= 5 ms from exec (hardware KVM; here: %s): %s ms\n' \
	"$(bench_verdict "$(bench_calc "(a <= 5) ? 1 : 0" "$b")")" "$lo%" "$(bench_kvm_kind | cut -d' ' -f1-4)" "$(f2 "$b")"
a=$(get "$lo/ondemand/noprefetch" target_first_ms)
printf '  %-4s %-9s into a waiting target, first instruction p50 <= 0.5 ms: %s ms\n' \
	"$(bench_verdict "$(bench_calc "(a <= 0.5) ? 1 : 0" "$a")")" "$lo%" "$(f2 "$a")"
if [[ " $SCENARIOS " == *" 2G/100 "* ]]; then
	for mode in $MODES; do
		r=$(bench_calc "a / b" "$(get 2G/100 q_out_ms)" "$(get "2G/100/$mode/noprefetch" exec_out_ms)")
		printf '  %-4s 2G/100%%   first output >= 20x faster than QEMU (--memory %s): %sx\n' \
			"$(bench_verdict "$(bench_calc "(a >= 20) ? 1 : 0" "$r")")" "$mode" "$(f1 "$r")"
	done
fi
if [[ " $SNAP_CLONES " == *" 1 "* && " $SNAP_CLONES " == *" 20 "* ]]; then
	one=$(get clones/1 rss_mib) all=$(get clones/20 pss_mib)
	printf '  %-4s 20 clones hold <= 1.3x one VM: PSS of all %s MiB, one VM RSS %s MiB (%sx)\n' \
		"$(bench_verdict "$(bench_calc "(a <= 1.3 * b) ? 1 : 0" "$all" "$one")")" \
		"$(f1 "$all")" "$(f1 "$one")" "$(f2 "$(bench_calc "a / b" "$all" "$one")")"
fi
if ((HAVE_INCR)) && [[ " $DIRTY " == *" 1 "* ]]; then
	printf '  %-4s incremental, 2 GiB / 1%% dirtied: <= 50 ms and a file <= dirtied + 1 MiB: %s ms, %s MiB\n' \
		"$(bench_verdict "$(bench_calc "(a <= 50 && b <= c + 1) ? 1 : 0" "$(get incr/1 save_ms)" "$(get incr/1 file_mib)" "$(get incr/1 dirty_mib)")")" \
		"$(f1 "$(get incr/1 save_ms)")" "$(f1 "$(get incr/1 file_mib)")"
fi
if ((HAVE_LIVE)); then
	for sc in $SCENARIOS; do
		v=$(get "$sc" live_pause_us)
		printf '  %-4s %-9s live snapshot pause <= 5 ms: %s us\n' \
			"$(bench_verdict "$(bench_calc "(a <= 5000) ? 1 : 0" "$v")")" "$sc%" "$(f0 "$v")"
	done
fi
if ((${#CODEC_GUESTS[@]})); then
	echo
	echo "-- compression (--compress), memory of a paused guest, $CODEC_MEM RAM --"
	echo "ratio = none file / codec file; MB/s = guest bytes in the none file per"
	echo "second of save (request to fsynced, renamed file), on $(nproc) CPUs"
	printf '%-13s %-8s | %10s %7s | %8s %9s\n' guest codec "file MiB" ratio "save s" "MB/s in"
	for g in "${CODEC_GUESTS[@]}"; do
		base=$(get "$g/none" bytes)
		for c in $CODECS; do
			b=$(get "$g/$c" bytes)
			u=$(get "$g/$c" us)
			printf '%-13s %-8s | %10s %7s | %8s %9s\n' "$g" "$c" \
				"$(f1 "$(bench_calc "a / 1048576" "$b")")" \
				"$(f2 "$(bench_calc "a / b" "$base" "$b")")" \
				"$(f3 "$(bench_calc "a / 1e6" "$u")")" \
				"$(f0 "$(bench_calc "a / b" "$base" "$u")")"
		done
	done
	for g in "${CODEC_GUESTS[@]}"; do
		[[ $g == linux-boot ]] || continue
		for c in $CODECS; do
			[[ $c == zstd* ]] || continue
			r=$(bench_calc "a / b" "$(get "$g/none" bytes)" "$(get "$g/$c" bytes)")
			m=$(bench_calc "a / b" "$(get "$g/none" bytes)" "$(get "$g/$c" us)")
			printf '  %-4s %-9s %s shrinks Linux >= 3x at >= 1000 MB/s: %sx at %s MB/s\n' \
				"$(bench_verdict "$(bench_calc "(a >= 3 && b >= 1000) ? 1 : 0" "$r" "$m")")" \
				"$g" "$c" "$(f2 "$r")" "$(f0 "$m")"
		done
	done
fi
if [[ -s $RES/failures ]]; then
	echo
	echo "failures (left out of the medians):"
	sed 's/^/  /' "$RES/failures"
fi
exit 0
