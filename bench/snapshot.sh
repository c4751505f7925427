#!/usr/bin/env bash
# bench/snapshot.sh - pause, snapshot and restore costs, stasis vs QEMU
# microvm (migration to a file) on the same guest images in the same run.
#
# Usage: bench/snapshot.sh [BUILD_DIR]      (default: build)
# Environment:
#   BENCH_RUNS       repetitions of each measurement (3)
#   BENCH_SCENARIOS  "MEM/PCT ..." guest RAM and % of it the memtest guest
#                    touches; default "256M/10 256M/100 2G/10 2G/100", without
#                    2G/100 inside the nested VM (it alone takes ~15 min there)
#   BENCH_DIR        where snapshot files go (${TMPDIR:-/tmp}); the dd
#                    baseline is measured there too
#   BENCH_CODECS     --compress choices measured on realistic memory
#                    ("none lz4 zstd:1 zstd:3"); "" skips that part
#   BENCH_CODEC_MEM  RAM of the codec guests (256M); memtest mode=text
#                    fills all but 56 MiB of it
#   BENCH_LINUX      a vmlinux for the Linux early-boot codec guest
#                    (default: $STASIS_LINUX_CACHE/vmlinux when present)
#   QEMU             qemu-system-x86_64
#   BENCH_QEMU_CPU   QEMU's -cpu, instead of the one bench/lib.sh picks
#   KVMVM_CACHE, KVMVM_MEM (8G here)  for the nested VM used when /dev/kvm
#                    does not open
# A benchmark, not a test: targets are reported PASS/MISS, and the exit
# status is 0 unless the benchmark itself broke.
set -euo pipefail
# A 2 GiB guest, its snapshot and the restored copy must fit in the nested VM.
export KVMVM_MEM=${KVMVM_MEM:-8G}
source "$(dirname "$0")/lib.sh"
bench_setup "$0" "${1:-$BENCH_ROOT/build}"

RUNS=${BENCH_RUNS:-3}
if [[ -n ${BENCH_SCENARIOS:-} ]]; then
	SCENARIOS=$BENCH_SCENARIOS
elif [[ ${KVMVM:-0} = 1 ]]; then
	SCENARIOS="256M/10 256M/100 2G/10"
	bench_note "nested VM: 2G/100 left out (touching 2 GiB there takes minutes per VMM); BENCH_SCENARIOS='256M/10 256M/100 2G/10 2G/100' runs it"
else
	SCENARIOS="256M/10 256M/100 2G/10 2G/100"
fi
bench_workdir snap

put() { bench_put "$@"; }
get() { bench_get "$@"; }
step() { bench_step "$@"; }
fail() { bench_fail "$@"; }

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
	local snap=$DIR/stasis.snap us
	rm -f "$out"
	"$STASIS" run --kernel "$GUESTS/memtest.elf" --mem "$mem" --cpus 1 \
		--cpu-template "$BENCH_CPU_TEMPLATE" --serial "file:$out" --api-socket "$sock" \
		--cmdline "mode=touch mib=$mib" 2>"$DIR/s.err" &
	pid=$!
	PIDS+=("$pid")
	if ! bench_wait_for "$out" "memtest: touched $mib MiB" "$pid" $((120 + mib)); then
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
	"$BENCHTOOL" http "$sock" PUT /vm/shutdown >/dev/null || true
	bench_wait_exit "$pid" 60
	[[ -f $snap ]] || return 0
	step "$sc: dd"
	dd_bw "$sc" "$(file_size "$snap")"
	# Both memory modes: map (default; pages are read from the file as
	# the guest touches them) and copy (all read before the VM is ready,
	# like QEMU's -incoming).
	for mode in map copy; do
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
	rm -f "$snap"
}

# --------------------------------------------------------------- QEMU --

qemu_scenario() {
	local sc=$1 mem=$2 mib=$3 sock=$SOCKDIR/q.sock out=$DIR/q.out pid line i
	local snap=$DIR/qemu.snap
	qemu_base "$mem" "$GUESTS/memtest.elf" "mode=touch mib=$mib"
	rm -f "$out"
	"${QBASE[@]}" -serial "file:$out" -qmp "unix:$sock,server=on,wait=off" \
		2>"$DIR/q.err" &
	pid=$!
	PIDS+=("$pid")
	if ! bench_wait_for "$out" "memtest: touched $mib MiB" "$pid" $((120 + mib)); then
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
	"$BENCHTOOL" qmp "$sock" '{"execute": "quit"}' >/dev/null || true
	bench_wait_exit "$pid" 60
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
		for ((i = 1; i <= RUNS; i++)); do
			line=$("$BENCHTOOL" boot --kill-at-first --timeout-ms 300000 -- \
				"$STASIS" restore "$snap" --serial stdio 2>"$DIR/c.err")
			if grep -q '^first_byte_us=[0-9]' <<<"$line"; then
				put "$sc" s_first_s "$(bench_calc "a / 1e6" "$(bench_kv "$line" first_byte_us)")"
			else
				fail "$sc: stasis restore printed nothing: $line $(tail -n 2 "$DIR/c.err")"
			fi
		done
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
		for ((i = 1; i <= RUNS; i++)); do
			line=$("$BENCHTOOL" boot --kill-at-first --timeout-ms 300000 -- \
				"${QBASE[@]}" -serial stdio -incoming "exec:cat $snap" \
				2>"$DIR/c.err")
			if grep -q '^first_byte_us=[0-9]' <<<"$line"; then
				put "$sc" q_first_s "$(bench_calc "a / 1e6" "$(bench_kv "$line" first_byte_us)")"
			else
				fail "$sc: QEMU restore printed nothing: $line $(tail -n 2 "$DIR/c.err")"
			fi
		done
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

# ---------------------------------------------------------------- main --

START=$SECONDS
# stasis restore --memory map|copy (map is the default where it exists).
HAVE_MEMORY_MODES=0
"$STASIS" restore --help 2>&1 | grep -q -- --memory && HAVE_MEMORY_MODES=1
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
CODECS=${BENCH_CODECS-none lz4 zstd:1 zstd:3}
CODEC_MEM=${BENCH_CODEC_MEM:-256M}
LINUX=${BENCH_LINUX:-${STASIS_LINUX_CACHE:+$STASIS_LINUX_CACHE/vmlinux}}
CODEC_GUESTS=()
if [[ -n $CODECS ]]; then
	# The codecs are compared against none, so none is always measured.
	[[ " $CODECS " == *" none "* ]] || CODECS="none $CODECS"
	text_mib=$(($(mib_of "$CODEC_MEM") - 56))
	CODEC_GUESTS+=(memtest-text)
	codec_guest memtest-text "memtest: pass 1 ok" $((120 + text_mib)) 		--kernel "$GUESTS/memtest.elf" --cmdline "mib=$text_mib mode=text"
	if [[ -n $LINUX && -f $LINUX ]]; then
		CODEC_GUESTS+=(linux-boot)
		# Early boot: the kernel, its page tables and slabs, up to the
		# point it stops for want of a root file system.
		codec_guest linux-boot "Kernel panic|Run /init|VFS: " 300 			--kernel "$LINUX" --cmdline "console=ttyS0 nokaslr"
	else
		bench_note "codec: no vmlinux (BENCH_LINUX or STASIS_LINUX_CACHE); the Linux guest is left out"
	fi
fi
OUT_MEMS=$(for s in $SCENARIOS; do echo "${s%/*}"; done | sort -u | sort -h)
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
echo "== snapshot: memtest guest (mode=touch), 1 vCPU; medians of $RUNS runs =="
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
printf '%-9s | %9s %9s %9s | %9s %9s | %9s %9s\n' "" "ready" "ready" "ready" \
	"QEMU/" "QEMU/" "resume" "resume"
printf '%-9s | %9s %9s %9s | %9s %9s | %9s %9s\n' "scenario" "stasis s" \
	"stasis s" "QEMU s" "stasis" "stasis" "stasis ms" "QEMU ms"
printf '%-9s | %9s %9s %9s | %9s %9s | %9s %9s\n' "" "map" "copy" "" "map" \
	"copy" "" ""
for s in $SCENARIOS; do
	printf '%-9s | %9s %9s %9s | %9s %9s | %9s %9s\n' "$s%" \
		"$(f2 "$(get "$s" s_ready_map_s)")" "$(f2 "$(get "$s" s_ready_copy_s)")" \
		"$(f2 "$(get "$s" q_ready_s)")" \
		"$(f1 "$(bench_calc "a / b" "$(get "$s" q_ready_s)" "$(get "$s" s_ready_map_s)")")" \
		"$(f1 "$(bench_calc "a / b" "$(get "$s" q_ready_s)" "$(get "$s" s_ready_copy_s)")")" \
		"$(f1 "$(get "$s" s_resume_ms)")" "$(f1 "$(get "$s" q_resume_ms)")"
done
echo "stasis: restore --paused [--memory map|copy] until GET /vm answers (it"
echo "serves the API once the image is loaded; with map, guest memory is"
echo "mapped from the file and read as the guest touches it, after ready);"
echo "QEMU: -S -incoming 'exec:cat FILE' until query-status leaves inmigrate."
echo "resume = PUT /vm/resume / QMP cont."
echo
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
	for mode in map copy; do
		v=$(get "$s" "s_ready_${mode}_s")
		[[ $v == - && $mode == copy ]] && continue
		r=$(bench_calc "a / b" "$(get "$s" q_ready_s)" "$v")
		printf '  %-4s %-9s restore to ready >= 5x faster than QEMU (--memory %s): %sx (%s s vs %s s)\n' \
			"$(bench_verdict "$(bench_calc "(a >= 5) ? 1 : 0" "$r")")" "$s%" "$mode" \
			"$(f1 "$r")" "$(f2 "$v")" "$(f2 "$(get "$s" q_ready_s)")"
	done
done
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
