#!/usr/bin/env bash
# bench/clones.sh - clones of one snapshot: N restores of a 256 MiB guest
# (64 MiB of it filled with a pattern) started at once with --memory map,
# timed from the first exec until every clone has checked its memory after
# seeing its new VM Generation ID; then the memory they hold together.
#
# Usage: bench/clones.sh [BUILD_DIR]      (default: build)
# Environment:
#   BENCH_RUNS    repetitions of each N (3); medians are printed
#   BENCH_CLONES  the values of N ("1 5 20")
#   BENCH_TOUCH   MiB the guest fills before the snapshot (64)
#   BENCH_DIR     where the snapshot file goes (${TMPDIR:-/tmp})
#   KVMVM_CACHE, KVMVM_MEM  for the nested VM used when /dev/kvm does not
#                 open
# A benchmark, not a test: the exit status is 0 unless it broke. The target
# (20 clones hold at most 1.3x one VM's RSS, counted as PSS) is reported
# PASS/MISS.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_setup "$0" "${1:-$BENCH_ROOT/build}"
[[ -f $GUESTS/vmgenid.elf ]] || bench_die "$GUESTS/vmgenid.elf is missing"

RUNS=${BENCH_RUNS:-3}
CLONES=${BENCH_CLONES:-1 5 20}
TOUCH=${BENCH_TOUCH:-64}
bench_workdir clones

bench_step "booting the guest and saving it"
"$STASIS" run --kernel "$GUESTS/vmgenid.elf" --mem 256M \
	--cpu-template "$BENCH_CPU_TEMPLATE" --api-socket "$SOCKDIR/base.sock" \
	--serial "file:$DIR/base.out" --cmdline "hz=100 touch=$TOUCH" \
	</dev/null >/dev/null 2>"$DIR/base.err" &
PIDS+=($!)
base=$!
bench_wait_for "$DIR/base.out" "counter: 5" "$base" 120 ||
	bench_die "the guest did not start: $(tail -n 2 "$DIR/base.err")"
"$STASIS" ctl "$SOCKDIR/base.sock" snapshot "$DIR/base.snap" --then exit >/dev/null ||
	bench_die "snapshot failed"
bench_wait_exit "$base" 60

for n in $CLONES; do
	for ((r = 1; r <= RUNS; r++)); do
		bench_step "N=$n, run $r of $RUNS"
		bench_clones "$DIR/base.snap" "$n" "$r" "$n" "vmgenid: memory ok"
	done
done

get() { bench_get "$@"; }
f1() { bench_fmt "%.1f" "$1"; }
echo
bench_machine | sed -n 1,3p
echo "guest: vmgenid guest, 256 MiB, $TOUCH MiB filled; snapshot $(du -m "$DIR/base.snap" | cut -f1) MiB; restore --memory map; medians of $RUNS runs"
echo
printf '%-4s %14s %12s %14s %14s %16s %16s\n' N "all ready ms" "clones/s" \
	"RSS MiB all" "PSS MiB all" "RSS MiB/clone" "PSS MiB/clone"
for n in $CLONES; do
	printf '%-4s %14s %12s %14s %14s %16s %16s\n' "$n" \
		"$(f1 "$(get "$n" ready_ms)")" "$(f1 "$(get "$n" per_s)")" \
		"$(f1 "$(get "$n" rss_mib)")" "$(f1 "$(get "$n" pss_mib)")" \
		"$(f1 "$(get "$n" rss_each_mib)")" "$(f1 "$(get "$n" pss_each_mib)")"
done
echo
echo "ready: from the first exec until every clone has printed 'vmgenid:"
echo "memory ok' (it saw its new ID and read back all $TOUCH MiB). RSS counts"
echo "each clone's shared page-cache pages in full; PSS divides them among"
echo "the clones that map them."
if [[ " $CLONES " == *" 1 "* && " $CLONES " == *" 20 "* ]]; then
	one=$(get 1 rss_mib) all=$(get 20 pss_mib)
	echo
	echo "target:"
	printf '  %-4s 20 clones hold <= 1.3x one VM: PSS of all %s MiB, one VM RSS %s MiB (%sx)\n' \
		"$(bench_verdict "$(bench_calc "(a <= 1.3 * b) ? 1 : 0" "$all" "$one")")" \
		"$(f1 "$all")" "$(f1 "$one")" "$(bench_fmt "%.2f" "$(bench_calc "a / b" "$all" "$one")")"
fi
if [[ -s $RES/failures ]]; then
	echo
	echo "failures (left out of the medians):"
	sed 's/^/  /' "$RES/failures"
fi
exit 0
