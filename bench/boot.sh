#!/usr/bin/env bash
# bench/boot.sh - boot cost of the hello guest, stasis vs QEMU microvm: time
# from exec to the guest's first serial byte, and the VMM's peak RSS.
#
# Usage: bench/boot.sh [BUILD_DIR]      (default: build)
# Environment: BENCH_RUNS (10) runs of each VMM, interleaved; BENCH_MEM
# (256M) guest RAM; QEMU (qemu-system-x86_64); KVMVM_CACHE, KVMVM_MEM for the
# nested VM used when /dev/kvm does not open here.
# A benchmark, not a test: targets are reported PASS/MISS, and the exit
# status is 0 unless the benchmark itself broke.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_setup "$0" "${1:-$BENCH_ROOT/build}"

RUNS=${BENCH_RUNS:-10}
MEM=${BENCH_MEM:-256M}
HELLO_LINE="hello from the stasis guest kit"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stasis-bench-boot.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

stasis_cmd=("$STASIS" run --kernel "$GUESTS/hello.elf" --mem "$MEM" --cpus 1
	--serial stdio --debug-exit)
qemu_cmd=("$QEMU" -M microvm -accel kvm -cpu host -m "$MEM" -smp 1
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
	if [[ $(bench_kv "$line" exit) == 1 ]] && grep -qF "$HELLO_LINE" "$out"; then
		echo "$line" >>"$TMP/$label"
	else
		bench_note "$label run failed: $line"
		sed 's/^/    | /' "$TMP/$label.err" "$out" >&2 || true
		echo "$line" >>"$TMP/$label.failed"
	fi
}

bench_note "boot: $RUNS runs each of stasis and QEMU, hello guest, $MEM"
touch "$TMP/stasis" "$TMP/qemu"
for ((i = 1; i <= RUNS; i++)); do
	# Alternate who goes first, so neither always runs on a warm cache.
	if ((i % 2)); then
		one stasis "${stasis_cmd[@]}"
		one qemu "${qemu_cmd[@]}"
	else
		one qemu "${qemu_cmd[@]}"
		one stasis "${stasis_cmd[@]}"
	fi
done

# col LABEL KEY SCALE: the median of KEY over LABEL's runs, divided by SCALE.
col() {
	local v
	while read -r line; do
		v=$(bench_kv "$line" "$2")
		[[ -n $v && $v != -1 ]] && awk -v v="$v" -v s="$3" 'BEGIN { print v / s }'
	done <"$TMP/$1" | bench_median
}
colr() {
	local v
	while read -r line; do
		v=$(bench_kv "$line" "$2")
		[[ -n $v && $v != -1 ]] && awk -v v="$v" -v s="$3" 'BEGIN { printf "%.1f\n", v / s }'
	done <"$TMP/$1" | bench_range
}

ok_s=$(wc -l <"$TMP/stasis")
ok_q=$(wc -l <"$TMP/qemu")
ttfb_s=$(col stasis first_byte_us 1000)
ttfb_q=$(col qemu first_byte_us 1000)
rss_s=$(col stasis maxrss_kb 1024)
rss_q=$(col qemu maxrss_kb 1024)
hwm_s=$(col stasis hwm_kb 1024)
anon_s=$(col stasis rss_anon_kb 1024)
file_s=$(col stasis rss_file_kb 1024)
shm_s=$(col stasis rss_shmem_kb 1024)
anon_q=$(col qemu rss_anon_kb 1024)
file_q=$(col qemu rss_file_kb 1024)
shm_q=$(col qemu rss_shmem_kb 1024)
ratio_t=$(bench_calc "a / b" "$ttfb_s" "$ttfb_q")
ratio_r=$(bench_calc "a / b" "$rss_s" "$rss_q")

echo
echo "== boot: hello guest, $MEM RAM, 1 vCPU; medians of $RUNS runs (min-max) =="
bench_machine
printf '%-34s %22s %22s %12s\n' "" "stasis" "QEMU microvm" "stasis/QEMU"
printf '%-34s %22s %22s %12s\n' "exec to first serial byte (ms)" \
	"$(bench_fmt %.1f "$ttfb_s") ($(colr stasis first_byte_us 1000))" \
	"$(bench_fmt %.1f "$ttfb_q") ($(colr qemu first_byte_us 1000))" \
	"$(bench_fmt %.3f "$ratio_t")"
printf '%-34s %22s %22s %12s\n' "peak RSS (MiB, wait4 ru_maxrss)" \
	"$(bench_fmt %.1f "$rss_s") ($(colr stasis maxrss_kb 1024))" \
	"$(bench_fmt %.1f "$rss_q") ($(colr qemu maxrss_kb 1024))" \
	"$(bench_fmt %.3f "$ratio_r")"
printf '%-34s %22s %22s\n' "RSS at exit: anon (MiB)" \
	"$(bench_fmt %.1f "$anon_s")" "$(bench_fmt %.1f "$anon_q")"
printf '%-34s %22s %22s\n' "RSS at exit: file (MiB)" \
	"$(bench_fmt %.1f "$file_s")" "$(bench_fmt %.1f "$file_q")"
printf '%-34s %22s %22s\n' "RSS at exit: shmem (MiB)" \
	"$(bench_fmt %.1f "$shm_s")" "$(bench_fmt %.1f "$shm_q")"
printf '%-34s %22s %22s\n' "good runs" "$ok_s/$RUNS" "$ok_q/$RUNS"
echo "(stasis guest RAM is a memfd: the guest pages it touched are its shmem;"
echo " QEMU's guest RAM is anonymous memory, inside its anon figure.)"

echo
echo "targets:"
t1=$(bench_calc "(a <= b / 5) ? 1 : 0" "$ttfb_s" "$ttfb_q")
printf '  %-4s first byte <= 1/5 of QEMU: stasis/QEMU = %s (<= 0.200)\n' \
	"$(bench_verdict "$t1")" "$(bench_fmt %.3f "$ratio_t")"
# Touched guest memory = stasis's shmem (its memfd pages mapped in).
over=$(bench_calc "a - b" "$hwm_s" "$shm_s")
t2=$(bench_calc "(a <= 8 + b) ? 1 : 0" "$hwm_s" "$shm_s")
printf '  %-4s stasis RSS <= 8 MiB + guest memory touched: peak %s MiB, touched %s MiB, overhead %s MiB\n' \
	"$(bench_verdict "$t2")" "$(bench_fmt %.1f "$hwm_s")" \
	"$(bench_fmt %.1f "$shm_s")" "$(bench_fmt %.1f "$over")"
if [[ -s $TMP/stasis.failed || -s $TMP/qemu.failed ]]; then
	echo "  (some runs failed and are left out: see the messages above)"
fi
[[ $ok_s -gt 0 && $ok_q -gt 0 ]] || bench_die "no successful run of one of the VMMs"
