#!/usr/bin/env bash
# bench/virtio.sh - virtio-blk throughput and IOPS as the blktest guest sees
# them (bench=1), stasis vs QEMU (pc machine, modern virtio-blk-pci) on the
# same kind of raw image, beside what the host gets from that file system
# itself (dd, fio); and snapshot time with a 1 GiB and an 8 GiB sparse disk
# attached (disks are not copied, so it should not grow with them).
#
# Usage: bench/virtio.sh [BUILD_DIR]      (default: build)
# Environment:
#   BENCH_RUNS      runs of each measurement, stasis and QEMU interleaved (3)
#   BENCH_DISK_MIB  MiB the guest writes then reads sequentially, also the
#                   range of its random requests (256)
#   BENCH_RAND_MS   length of each random 4 KiB phase, ms (3000)
#   BENCH_MEM       guest RAM (256M)
#   BENCH_DIR       where the images go (${TMPDIR:-/tmp}); the host figures
#                   are measured on the same file system
#   QEMU            qemu-system-x86_64
#   BENCH_QEMU_CPU  QEMU's -cpu, instead of the one bench/lib.sh picks
#   KVMVM_CACHE, KVMVM_MEM  for the nested VM used when /dev/kvm does not
#                   open here
# A benchmark, not a test: targets are reported PASS/MISS, and the exit
# status is 0 unless the benchmark itself broke.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_setup "$0" "${1:-$BENCH_ROOT/build}"

RUNS=${BENCH_RUNS:-3}
DISK_MIB=${BENCH_DISK_MIB:-256}
RAND_MS=${BENCH_RAND_MS:-3000}
MEM=${BENCH_MEM:-256M}
SNAP_DISKS="1G 8G"
[[ -f $GUESTS/blktest.elf ]] || bench_die "$GUESTS/blktest.elf is missing"
[[ $DISK_MIB =~ ^[1-9][0-9]*$ && $RAND_MS =~ ^[1-9][0-9]*$ ]] ||
	bench_die "BENCH_DISK_MIB and BENCH_RAND_MS must be positive integers"
FIO=$(command -v fio || true)

bench_workdir virtio
put() { bench_put "$@"; }
get() { bench_get "$@"; }
step() { bench_step "$@"; }
fail() { bench_fail "$@"; }

# Both VMMs page-cache the image (stasis always, QEMU by its default
# cache=writeback), so the host figures are taken through the page cache
# too; the O_DIRECT ones show what the storage itself does.
# 128 KiB requests (per_req=256 sectors), 16 in flight. A request that
# never completes ends the guest after a minute (timeout_ms), not the run.
SECTORS=$((DISK_MIB * 2048))
BENCH_ARGS="bench=1 sectors=$SECTORS per_req=256 depth=16 bench_ms=$RAND_MS timeout_ms=60000"
# A guest busy on its disk during snapshots: write, flush, read, verify 4
# MiB over and over.
BUSY_ARGS="passes=0 sectors=8192 seed=7 timeout_ms=60000"
BLK_TIMEOUT_MS=$((900000 + 2 * RAND_MS))

# stasis_cmd IMAGE ARGS [OPTIONS...]: sets CMD, a stasis run of blktest.
stasis_cmd() {
	CMD=("$STASIS" run --kernel "$GUESTS/blktest.elf" --mem "$MEM" --cpus 1
		--cpu-template "$BENCH_CPU_TEMPLATE" --debug-exit --disk "$1" --cmdline "$2" "${@:3}")
}

# qemu_cmd IMAGE ARGS [OPTIONS...]: sets CMD, the same under QEMU: the pc
# machine (microvm has no PCI at 0xcf8), a modern-only virtio-blk-pci.
# shellcheck disable=SC2054 # the commas are QEMU's
qemu_cmd() {
	CMD=("$QEMU" -M pc -accel kvm -cpu "$QEMU_CPU" -m "$MEM" -smp 1 -nodefaults
		-no-user-config -display none -no-reboot
		-kernel "$GUESTS/blktest.elf" -append "$2"
		-device isa-debug-exit,iobase=0xf4,iosize=4
		-drive "file=$1,format=raw,if=none,id=d0"
		-device virtio-blk-pci,disable-legacy=on,drive=d0 "${@:3}")
}

# ------------------------------------------------- virtio-blk throughput --

# put_num SCENARIO METRIC VALUE: records VALUE unless it is "-".
put_num() {
	[[ $3 == - || -z $3 ]] || put "$@"
}

# blk_figures LABEL OUT: the four figures of a blktest bench=1 output.
blk_figures() {
	local k l
	for k in seq_write seq_read; do
		l=$(grep -m1 "^blktest: bench $k " "$2") || continue
		put_num blk "${1}_$k" "$(bench_calc "a / b" \
			"$(bench_kv "$l" bytes)" "$(bench_kv "$l" us)")"
	done
	for k in rand_read rand_write; do
		l=$(grep -m1 "^blktest: bench $k " "$2") || continue
		put_num blk "${1}_$k" "$(bench_calc "a * 1e6 / b" \
			"$(bench_kv "$l" ops)" "$(bench_kv "$l" us)")"
	done
}

# blk_run stasis|qemu: one blktest bench=1 run on a fresh sparse image.
blk_run() {
	local vmm=$1 img=$DIR/blk.img out=$DIR/blk-$1.out line
	rm -f "$img" "$out"
	truncate -s "${DISK_MIB}M" "$img"
	case $vmm in
	stasis) stasis_cmd "$img" "$BENCH_ARGS" --serial stdio ;;
	qemu) qemu_cmd "$img" "$BENCH_ARGS" -serial stdio ;;
	esac
	line=$("$BENCHTOOL" boot --timeout-ms "$BLK_TIMEOUT_MS" --out "$out" -- \
		"${CMD[@]}" </dev/null 2>"$DIR/blk-$vmm.err") || true
	# blktest exits through isa-debug-exit with code 0: status 1.
	if [[ $(bench_kv "$line" exit) == 1 ]] &&
		grep -q '^blktest: bench done' "$out"; then
		blk_figures "$vmm" "$out"
		echo ok >>"$RES/blk-$vmm.good"
	else
		fail "blk $vmm: exit $(bench_kv "$line" exit); $(tail -q -n 2 "$out" "$DIR/blk-$vmm.err" 2>/dev/null | tr '\n' ' ')"
	fi
	rm -f "$img"
}

# dd_mbs DD_ARGS...: MB/s of one dd run; fails if dd does (O_DIRECT on
# tmpfs, for one).
dd_mbs() {
	local out secs
	out=$(LC_ALL=C dd "$@" 2>&1 | tail -n 1) || return 1
	secs=$(sed -n 's/.* copied, \([0-9.e+-]*\) s.*/\1/p' <<<"$out")
	[[ -n $secs ]] || return 1
	bench_calc "a / b / 1e6" "${out%% *}" "$secs"
}

# fio_iops randread|randwrite FILE: 4 KiB random IOPS over the whole file
# for RAND_MS, one synchronous thread through the page cache (as the
# guests' requests reach the image), not dropping what is cached; writes
# end with an fsync, as the guest's with a FLUSH.
fio_iops() {
	local out field=8 extra=()
	[[ $1 == randwrite ]] && field=49 && extra=(--end_fsync=1)
	out=$("$FIO" --name=bench --filename="$2" --rw="$1" --bs=4k \
		--size="${DISK_MIB}M" --ioengine=psync --direct=0 --invalidate=0 \
		--time_based --runtime="${RAND_MS}ms" "${extra[@]}" \
		--output-format=terse --terse-version=3 2>&1) || return 1
	awk -F';' -v f="$field" 'NF > 100 { print $f; exit }' <<<"$out"
}

# host_run: the guest's sequence on the host, on the same file system.
host_run() {
	local img=$DIR/host.img count=$((DISK_MIB * 8)) v
	rm -f "$img"
	v=$(dd_mbs if=/dev/zero of="$img" bs=128K count="$count" conv=fdatasync) &&
		put_num blk host_seq_write "$v"
	v=$(dd_mbs if="$img" of=/dev/null bs=128K) && put_num blk host_seq_read "$v"
	if [[ -n $FIO ]]; then
		v=$(fio_iops randread "$img") && put_num blk host_rand_read "$v"
		v=$(fio_iops randwrite "$img") && put_num blk host_rand_write "$v"
	fi
	v=$(dd_mbs if=/dev/zero of="$img" bs=128K count="$count" \
		oflag=direct conv=notrunc,fdatasync) && put_num blk direct_seq_write "$v"
	v=$(dd_mbs if="$img" of=/dev/null bs=128K iflag=direct) &&
		put_num blk direct_seq_read "$v"
	rm -f "$img"
}

# ------------------------------------------------ snapshot with a disk --

# busy_start VMM SCENARIO OUT: starts CMD (blktest BUSY_ARGS with its serial
# in OUT) in the background and waits for its first pass; sets PID. 1 if
# it did not get there.
busy_start() {
	"${CMD[@]}" </dev/null 2>"$3.err" &
	PID=$!
	PIDS+=("$PID")
	bench_wait_for "$3" "blktest: pass 1 ok" "$PID" 600 && return 0
	fail "$2: $1 blktest did not start: $(tail -q -n 2 "$3" "$3.err" 2>/dev/null | tr '\n' ' ')"
	bench_wait_exit "$PID" 1
	return 1
}

# busy_check VMM SCENARIO OUT: the guest carried on across the snapshots,
# losing nothing.
busy_check() {
	sleep 1
	if grep -E 'CORRUPT|ERROR' "$3" >&2; then
		fail "$2: $1 blktest failed after a snapshot"
	fi
}

# snap_stasis SIZE: stasis runs blktest on a sparse disk of SIZE and is
# snapshotted RUNS times while it works (then resume).
snap_stasis() {
	local size=$1 sc=snap-$1 img=$DIR/snap.img out=$DIR/ss.out
	local sock=$SOCKDIR/s.sock snap=$DIR/s.snap line i
	rm -f "$img" "$out"
	truncate -s "$size" "$img"
	stasis_cmd "$img" "$BUSY_ARGS" --serial "file:$out" --api-socket "$sock"
	busy_start stasis "$sc" "$out" || return 0
	for ((i = 1; i <= RUNS; i++)); do
		sleep 0.5
		rm -f "$snap"
		line=$("$BENCHTOOL" http "$sock" PUT /vm/snapshot \
			"{\"path\": \"$snap\", \"then\": \"resume\"}") ||
			{ fail "$sc: stasis snapshot failed: $(tr '\n' ' ' <<<"$line")"; continue; }
		put_num "$sc" s_save_s "$(bench_calc "a / 1e6" "$(bench_kv "$(head -n 1 <<<"$line")" us)")"
		put_num "$sc" s_file_mib "$(bench_calc "a / 1048576" "$(stat -c %s "$snap")")"
	done
	busy_check stasis "$sc" "$out"
	"$BENCHTOOL" http "$sock" PUT /vm/shutdown >/dev/null || true
	bench_wait_exit "$PID" 60
	rm -f "$img" "$snap"
}

# snap_qemu SIZE: the same under QEMU: stop, migrate to a file, fsync, cont.
snap_qemu() {
	local size=$1 sc=snap-$1 img=$DIR/snap.img out=$DIR/qs.out
	local sock=$SOCKDIR/q.sock snap=$DIR/q.snap line i
	rm -f "$img" "$out"
	truncate -s "$size" "$img"
	qemu_cmd "$img" "$BUSY_ARGS" -serial "file:$out" \
		-qmp "unix:$sock,server=on,wait=off"
	busy_start QEMU "$sc" "$out" || return 0
	"$BENCHTOOL" qmp "$sock" "$BENCH_QMP_NOCAP" >/dev/null ||
		fail "$sc: QEMU migrate-set-parameters failed"
	for ((i = 1; i <= RUNS; i++)); do
		sleep 0.5
		rm -f "$snap"
		line=$(bench_qemu_save "$sock" "$snap") ||
			{ fail "$sc: QEMU save failed: $line"; continue; }
		put_num "$sc" q_save_s "$(bench_calc "a / 1e6" "$(bench_kv "$line" save_us)")"
		put_num "$sc" q_file_mib "$(bench_calc "a / 1048576" "$(stat -c %s "$snap")")"
	done
	busy_check QEMU "$sc" "$out"
	"$BENCHTOOL" qmp "$sock" '{"execute": "quit"}' >/dev/null || true
	bench_wait_exit "$PID" 60
	rm -f "$img" "$snap"
}

# ---------------------------------------------------------------- main --

FSTYPE=$(stat -f -c %T "$DIR")
touch "$RES/blk-stasis.good" "$RES/blk-qemu.good"
bench_note "virtio: $RUNS runs, $DISK_MIB MiB sequential, ${RAND_MS} ms random per phase, images in $DIR ($FSTYPE)${FIO:+, fio}"
[[ -n $FIO ]] || bench_note "fio is not installed: no host IOPS figures (scripts/install-deps.sh installs it)"
for ((i = 1; i <= RUNS; i++)); do
	step "virtio-blk run $i/$RUNS"
	# Alternate who goes first, so neither always finds a warm cache.
	if ((i % 2)); then
		blk_run stasis
		blk_run qemu
	else
		blk_run qemu
		blk_run stasis
	fi
	step "host run $i/$RUNS"
	host_run
done
for size in $SNAP_DISKS; do
	step "snapshot with a $size disk: stasis x$RUNS"
	snap_stasis "$size"
	step "snapshot with a $size disk: QEMU x$RUNS"
	snap_qemu "$size"
done

# -------------------------------------------------------------- report --

f0() { bench_fmt %.0f "$1"; }
f2() { bench_fmt %.2f "$1"; }
ok_s=$(wc -l <"$RES/blk-stasis.good")
ok_q=$(wc -l <"$RES/blk-qemu.good")

echo
echo "== virtio: blktest bench=1, $MEM RAM, 1 vCPU; medians of $RUNS runs =="
bench_machine
echo "images: $DIR ($FSTYPE); total time $((SECONDS - START)) s"
echo
echo "-- virtio-blk: $DISK_MIB MiB sequential in 128 KiB requests, 4 KiB random for $RAND_MS ms; 16 in flight --"
row() { printf '%-22s %9s %9s %7s | %9s %7s | %9s\n' "$@"; }
row "" "stasis" "QEMU" "stasis/" "host" "stasis/" "host"
row "" "" "" "QEMU" "cached" "host" "O_DIRECT"
for k in seq_write seq_read rand_read rand_write; do
	case $k in
	seq_*) unit="MB/s" ;;
	*) unit="IOPS" ;;
	esac
	s=$(get blk "stasis_$k")
	q=$(get blk "qemu_$k")
	h=$(get blk "host_$k")
	row "${k/_/ } ($unit)" "$(f0 "$s")" "$(f0 "$q")" \
		"$(f2 "$(bench_calc "a / b" "$s" "$q")")" "$(f0 "$h")" \
		"$(f2 "$(bench_calc "a / b" "$s" "$h")")" "$(f0 "$(get blk "direct_$k")")"
done
row "good runs" "$ok_s/$RUNS" "$ok_q/$RUNS" "" "" "" ""
echo "guest figures: blktest's own, timed with the TSC from the first request"
echo "to the last completion (writes: and the FLUSH after them). QEMU: -M pc,"
echo "virtio-blk-pci disable-legacy=on, -drive format=raw (cache=writeback,"
echo "aio=threads). host cached: dd bs=128K of as many bytes, conv=fdatasync"
echo "for the write, then reading it back (page cache, as the guests' reads);"
echo "fio 4 KiB psync randread / randwrite (end_fsync), one job, no"
echo "invalidation. host O_DIRECT: the same dd with oflag/iflag=direct (\"-\""
echo "where the file system refuses O_DIRECT, e.g. tmpfs)."
echo
echo "-- snapshot while blktest works on a sparse disk (then resume) --"
printf '%-6s | %9s %9s %7s | %10s %10s\n' "disk" "stasis s" "QEMU s" "QEMU/" \
	"stasis" "QEMU"
printf '%-6s | %9s %9s %7s | %10s %10s\n' "" "" "" "stasis" "file MiB" \
	"file MiB"
for size in $SNAP_DISKS; do
	s=$(get "snap-$size" s_save_s)
	q=$(get "snap-$size" q_save_s)
	printf '%-6s | %9s %9s %7s | %10s %10s\n' "$size" "$(bench_fmt %.3f "$s")" \
		"$(bench_fmt %.3f "$q")" "$(f2 "$(bench_calc "a / b" "$q" "$s")")" \
		"$(f2 "$(get "snap-$size" s_file_mib)")" "$(f2 "$(get "snap-$size" q_file_mib)")"
done
s1=$(get snap-1G s_save_s)
s8=$(get snap-8G s_save_s)
q1=$(get snap-1G q_save_s)
q8=$(get snap-8G q_save_s)
printf '%-6s | %9s %9s\n' "8G/1G" "$(f2 "$(bench_calc "a / b" "$s8" "$s1")")" \
	"$(f2 "$(bench_calc "a / b" "$q8" "$q1")")"
echo "stasis: PUT /vm/snapshot (pause, flush and identify each disk, write,"
echo "fsync, resume); QEMU: stop, migrate exec:cat of the stopped VM until"
echo "completed, fsync of the file, cont. Neither copies the disk."

echo
echo "targets:"
for k in seq_write seq_read rand_read rand_write; do
	s=$(get blk "stasis_$k")
	q=$(get blk "qemu_$k")
	printf '  %-4s %-10s stasis >= 80%% of QEMU: %s vs %s (%s%%)\n' \
		"$(bench_verdict "$(bench_calc "(a >= 0.8 * b) ? 1 : 0" "$s" "$q")")" \
		"$k" "$(f0 "$s")" "$(f0 "$q")" "$(f0 "$(bench_calc "100 * a / b" "$s" "$q")")"
done
for k in seq_write seq_read; do
	s=$(get blk "stasis_$k")
	h=$(get blk "host_$k")
	printf '  %-4s %-10s stasis >= 50%% of the host (cached): %s vs %s MB/s (%s%%)\n' \
		"$(bench_verdict "$(bench_calc "(a >= 0.5 * b) ? 1 : 0" "$s" "$h")")" \
		"$k" "$(f0 "$s")" "$(f0 "$h")" "$(f0 "$(bench_calc "100 * a / b" "$s" "$h")")"
done
printf '  %-4s snapshot with an 8 GiB disk <= 1.2x that with 1 GiB: %s s vs %s s\n' \
	"$(bench_verdict "$(bench_calc "(a <= 1.2 * b) ? 1 : 0" "$s8" "$s1")")" \
	"$(bench_fmt %.3f "$s8")" "$(bench_fmt %.3f "$s1")"
f1=$(get snap-1G s_file_mib)
f8=$(get snap-8G s_file_mib)
printf '  %-4s snapshot file with an 8 GiB disk <= that with 1 GiB + 1 MiB: %s vs %s MiB\n' \
	"$(bench_verdict "$(bench_calc "(a <= b + 1) ? 1 : 0" "$f8" "$f1")")" \
	"$(f2 "$f8")" "$(f2 "$f1")"
if [[ -s $RES/failures ]]; then
	echo
	echo "failures (left out of the medians):"
	sed 's/^/  /' "$RES/failures"
fi
[[ $ok_s -gt 0 && $ok_q -gt 0 ]] ||
	bench_die "no successful virtio-blk run of one of the VMMs"
exit 0
