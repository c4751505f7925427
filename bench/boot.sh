#!/usr/bin/env bash
# bench/boot.sh - boot cost of the hello guest, stasis vs QEMU microvm: time
# from exec to the guest's first serial byte, and the VMM's peak RSS.
#
# Usage: bench/boot.sh [BUILD_DIR]      (default: build)
# Environment: BENCH_RUNS (10) runs of each VMM, interleaved; BENCH_MEM
# (256M) guest RAM; QEMU (qemu-system-x86_64); BENCH_QEMU_CPU, QEMU's -cpu
# instead of the one bench/lib.sh picks; KVMVM_CACHE, KVMVM_MEM for the
# nested VM used when /dev/kvm does not open here.
# A benchmark, not a test: targets are reported PASS/MISS, and the exit
# status is 0 unless the benchmark itself broke.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_setup "$0" "${1:-$BENCH_ROOT/build}"

RUNS=${BENCH_RUNS:-10}
MEM=${BENCH_MEM:-256M}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stasis-bench-boot.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

stasis_cmd=("$STASIS" run --kernel "$GUESTS/hello.elf" --mem "$MEM" --cpus 1
	--cpu-template "$BENCH_CPU_TEMPLATE" --serial stdio --debug-exit)
qemu_cmd=("$QEMU" -M microvm -accel kvm -cpu "$QEMU_CPU" -m "$MEM" -smp 1
	-nodefaults -no-user-config -display none -serial stdio -no-reboot
	-kernel "$GUESTS/hello.elf"
	-device isa-debug-exit,iobase=0xf4,iosize=4)

# one VMM LABEL: one run; appends its key=value line to $TMP/LABEL.
one() {
	local label=$1 line out
	shift
	out=$TMP/$label.out
	line=$("$BENCHTOOL" boot --timeout-ms 120000 --out "$out" -- "$@" \
		2>"$TMP/$label.err") || true
	# hello exits through isa-debug-exit with code 0: status 1.
	if [[ $(bench_kv "$line" exit) == 1 ]] && grep -qF "$BENCH_HELLO_LINE" "$out"; then
		echo "$line" >>"$TMP/$label"
	else
		bench_note "$label run failed: $line"
		sed 's/^/    | /' "$TMP/$label.err" "$out" >&2 || true
		echo "$line" >>"$TMP/$label.failed"
	fi
}

# version LABEL CMD...: exec to the first byte of "--version": what process
# start-up alone (dynamic linking, reading the binary) costs.
version() {
	local label=$1 line
	shift
	line=$("$BENCHTOOL" boot --timeout-ms 60000 -- "$@" --version 2>/dev/null) || true
	[[ $(bench_kv "$line" exit) == 0 ]] && echo "$line" >>"$TMP/$label"
}

bench_note "boot: $RUNS runs each of stasis and QEMU, hello guest, $MEM"
touch "$TMP/stasis" "$TMP/qemu" "$TMP/stasis-v" "$TMP/qemu-v"
for ((i = 1; i <= RUNS; i++)); do
	# Alternate who goes first, so neither always runs on a warm cache.
	if ((i % 2)); then
		one stasis "${stasis_cmd[@]}"
		one qemu "${qemu_cmd[@]}"
	else
		one qemu "${qemu_cmd[@]}"
		one stasis "${stasis_cmd[@]}"
	fi
	version stasis-v "$STASIS"
	version qemu-v "$QEMU"
done

# vals LABEL KEY SCALE: KEY of each of LABEL's runs, divided by SCALE.
vals() {
	local v line
	while read -r line; do
		v=$(bench_kv "$line" "$2")
		[[ -n $v && $v != -1 ]] && awk -v v="$v" -v s="$3" 'BEGIN { printf "%.3f\n", v / s }'
	done <"$TMP/$1"
	return 0
}
med() { vals "$@" | bench_median; }
# cell LABEL KEY SCALE: "median (min-max)", one decimal.
cell() {
	local m r
	m=$(med "$@")
	r=$(vals "$@" | awk '{ printf "%.1f\n", $1 }' | bench_range)
	echo "$(bench_fmt %.1f "$m") ($r)"
}

ok_s=$(wc -l <"$TMP/stasis")
ok_q=$(wc -l <"$TMP/qemu")
ttfb_s=$(med stasis first_byte_us 1000)
ttfb_q=$(med qemu first_byte_us 1000)
ver_s=$(med stasis-v first_byte_us 1000)
ver_q=$(med qemu-v first_byte_us 1000)
rss_s=$(med stasis maxrss_kb 1024)
rss_q=$(med qemu maxrss_kb 1024)
shm_s=$(med stasis first_shmem_kb 1024)
ratio_t=$(bench_calc "a / b" "$ttfb_s" "$ttfb_q")

row() { printf '%-40s %22s %22s %12s\n' "$@"; }
echo
echo "== boot: hello guest, $MEM RAM, 1 vCPU; medians of $RUNS runs (min-max) =="
bench_machine
row "" "stasis" "QEMU microvm" "stasis/QEMU"
row "exec to first serial byte (ms)" "$(cell stasis first_byte_us 1000)" \
	"$(cell qemu first_byte_us 1000)" "$(bench_fmt %.3f "$ratio_t")"
row "  of which process start (ms) [1]" "$(cell stasis-v first_byte_us 1000)" \
	"$(cell qemu-v first_byte_us 1000)" \
	"$(bench_fmt %.3f "$(bench_calc "a / b" "$ver_s" "$ver_q")")"
row "peak RSS (MiB) [2]" "$(cell stasis maxrss_kb 1024)" \
	"$(cell qemu maxrss_kb 1024)" \
	"$(bench_fmt %.3f "$(bench_calc "a / b" "$rss_s" "$rss_q")")"
for k in anon file shmem; do
	row "  RSS $k at first byte (MiB)" \
		"$(bench_fmt %.1f "$(med stasis first_${k}_kb 1024)")" \
		"$(bench_fmt %.1f "$(med qemu first_${k}_kb 1024)")" ""
done
row "good runs" "$ok_s/$RUNS" "$ok_q/$RUNS" ""
echo "[1] exec to the first byte of '--version': loading the binary and its"
echo "    shared libraries, before any VM work."
echo "[2] wait4's ru_maxrss. stasis's guest RAM is a memfd, so the guest pages"
echo "    it touched show as its shmem; QEMU's guest RAM is anonymous memory."

echo
echo "targets:"
t1=$(bench_calc "(a <= b / 5) ? 1 : 0" "$ttfb_s" "$ttfb_q")
printf '  %-4s first byte <= 1/5 of QEMU: stasis/QEMU = %s (<= 0.200)\n' \
	"$(bench_verdict "$t1")" "$(bench_fmt %.3f "$ratio_t")"
# Guest memory touched = stasis's shmem (its memfd's pages mapped in).
over=$(bench_calc "a - b" "$rss_s" "$shm_s")
t2=$(bench_calc "(a <= 8 + b) ? 1 : 0" "$rss_s" "$shm_s")
printf '  %-4s stasis RSS <= 8 MiB + guest memory touched: peak %s MiB, touched %s MiB, overhead %s MiB\n' \
	"$(bench_verdict "$t2")" "$(bench_fmt %.1f "$rss_s")" \
	"$(bench_fmt %.1f "$shm_s")" "$(bench_fmt %.1f "$over")"
if [[ -s $TMP/stasis.failed || -s $TMP/qemu.failed ]]; then
	echo "  (some runs failed and are left out: see the messages above)"
fi
[[ $ok_s -gt 0 && $ok_q -gt 0 ]] || bench_die "no successful run of one of the VMMs"
