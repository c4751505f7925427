#!/usr/bin/env bash
# The soak (docs/reliability.md), outside `make check`: chained
# snapshot-restore cycles of two SMP guests, then every libFuzzer target
# for a long while. Usage: tests/soak.sh [BUILD] (default build-san).
#
#   SOAK_CYCLES=N            cycles (1000); 0 skips the VMs
#   SOAK_FUZZ_SECONDS=S      seconds per fuzz target (600); 0 skips fuzzing
#   SOAK_FUZZ_SNAPFILE_SECONDS=S   the snapshot reader's (3 x the above)
#   SOAK_FUZZ_TARGETS="a b"  which targets (all of tests/fuzz/fuzz_*.c)
#   SOAK_LOG=DIR             logs and the working corpora (build-soak/)
#
# A cycle restores each VM from the snapshot the last cycle wrote, with
# --memory map, copy and ondemand in turn,
# lets the guest finish new passes of its own check, and writes the next
# snapshot with --then exit:
#   memtest smp=1 on 2 vCPUs: each CPU rewrites its slice of 32 MiB with a
#     new pattern every pass and verifies it, so memory changes on every
#     CPU all the time; a word restored wrong is a MISMATCH line;
#   blktest on 2 vCPUs (its test runs on CPU 0): writes, flushes and
#     verifies a 4 MiB virtio-blk disk pass after pass, keeping every
#     sector's generation in RAM, so a lost or replayed write is CORRUPT.
# No single guest does both, so each cycle runs the two VMs one after the
# other. A divergence (a MISMATCH, CORRUPT or ERROR line, a guest that
# started over, a pass count that went back, a failed exit) ends the soak
# with status 1 and its cycle number.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build-san}" && pwd)
CYCLES=${SOAK_CYCLES:-1000}
FUZZ_S=${SOAK_FUZZ_SECONDS:-600}
FUZZ_SNAP_S=${SOAK_FUZZ_SNAPFILE_SECONDS:-$((3 * FUZZ_S))}
LOG=${SOAK_LOG:-$ROOT/build-soak}
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)
export STASIS=$BUILD/stasis GUESTS=$BUILD/guests STASIS_TIME_SCALE=${STASIS_TIME_SCALE:-1}
# As tests/run-kvm.sh: leaks are the unit tests' business.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
TMPDIR=${TMPDIR:-/tmp}
export TMPDIR

# soak_cycles: the VM part, in a subshell that uses the integration tests'
# helpers (lib.sh: its scratch directory, fail, ctl, wait_*).
soak_cycles() (
	TEST_NAME=soak
	# shellcheck source=integration/lib.sh
	. "$ROOT/tests/integration/lib.sh"
	[[ -c /dev/kvm ]] || fail "no /dev/kvm"
	local modes=(map copy ondemand) i mode m b S=$WORK/api.sock t0=$SECONDS
	note "$CYCLES cycles, memory modes: ${modes[*]}"

	# memtest's last line's pass counts, "a,b".
	mem_passes() {
		sed -n 's/^memtest: pass [0-9]* ok (.* passes=\([0-9,]*\))\r\{0,1\}$/\1/p' "$1" | tail -n 1
	}
	# mem_check FILE PREV CYCLE: no mismatch, no restart; every CPU's
	# count is at least PREV's, CPU 0's higher.
	mem_check() {
		if grep -Eq "MISMATCH|ERROR|^memtest: start|^guest: " "$1"; then
			fail "cycle $3: memtest: $(grep -E "MISMATCH|ERROR|start|^guest: " "$1" | head -n 2)"
		fi
		local now
		now=$(mem_passes "$1")
		awk -v a="$2" -v b="$now" 'BEGIN {
			n = split(a, x, ","); m = split(b, y, ",")
			if (m != n || y[1] <= x[1]) exit 1
			for (i = 2; i <= n; i++) if (y[i] < x[i]) exit 1 }' ||
			fail "cycle $3: memtest pass counts went from $2 to $now"
	}

	# blk_check BEFORE AFTER CYCLE: joined where the snapshot cut a line,
	# the passes count up by one with none repeated or skipped.
	blk_check() {
		cat "$1" "$2" | sed -n 's/^blktest: pass \([0-9][0-9]*\) ok .*/\1/p' |
			awk 'NR > 1 && $1 != prev + 1 { print "pass " $1 " after " prev; bad = 1; exit }
				{ prev = $1 } END { exit bad }' >"$2.passes" ||
			fail "cycle $3: blktest: $(cat "$2.passes")"
	}

	# Cycle 0: both guests booted, then snapshotted.
	m=$WORK/mem.0
	start_stasis "$m" run --kernel "$GUESTS/memtest.elf" --debug-exit \
		--api-socket "$S" --serial "file:$m" --mem 64M --cpus 2 \
		--cmdline "mib=32 smp=1"
	wait_for_socket "$S"
	wait_for_count "$m" "^memtest: pass" 2 60
	ctl "$S" snapshot "$WORK/mem.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "memtest cycle 0"
	rm -f "$S"
	truncate -s 4M "$WORK/disk.img"
	b=$WORK/blk.0
	start_stasis "$b" run --kernel "$GUESTS/blktest.elf" --debug-exit \
		--api-socket "$S" --serial "file:$b" --mem 64M --cpus 2 \
		--disk "$WORK/disk.img" --cmdline "sectors=1024 seed=11"
	wait_for_socket "$S"
	wait_for_line "$b" "^blktest: pass 2 ok" 60
	ctl "$S" snapshot "$WORK/blk.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "blktest cycle 0"
	blk_clean "$b"
	local mprev bprev
	mprev=$(mem_passes "$WORK/mem.0")
	bprev=$(blk_last_pass "$b")

	for ((i = 1; i <= CYCLES; i++)); do
		mode=${modes[i % ${#modes[@]}]}
		# memtest: two more of CPU 0's passes, so one ran whole here.
		m=$WORK/mem.$i
		rm -f "$S"
		start_stasis "$m" restore "$WORK/mem.snap" --memory "$mode" \
			--api-socket "$S" --serial "file:$m"
		wait_for_socket "$S"
		wait_for_count "$m" "^memtest: pass" 2 60
		ctl "$S" snapshot "$WORK/mem.snap" --then exit >/dev/null
		wait_exit "$VM_PID" 60
		expect_status "$RC" 0 "cycle $i ($mode): memtest"
		mem_check "$m" "$mprev" "$i"
		mprev=$(mem_passes "$m")

		b=$WORK/blk.$i
		rm -f "$S"
		start_stasis "$b" restore "$WORK/blk.snap" --memory "$mode" \
			--api-socket "$S" --serial "file:$b"
		wait_for_socket "$S"
		wait_for_line "$b" "^blktest: pass $((bprev + 2)) ok" 60
		ctl "$S" snapshot "$WORK/blk.snap" --then exit >/dev/null
		wait_exit "$VM_PID" 60
		expect_status "$RC" 0 "cycle $i ($mode): blktest"
		blk_clean "$b" restored
		blk_check "$WORK/blk.$((i - 1))" "$b" "$i"
		bprev=$(blk_last_pass "$b")
		# Keep the two outputs the next cycle compares with; a soak of
		# 1000 cycles would otherwise keep every one.
		rm -f "$WORK/mem.$((i - 1))"* "$WORK/blk.$((i - 1))"*
		if ((i % 50 == 0 || i == CYCLES)); then
			note "cycle $i: 0 divergences; memtest passes $mprev, blktest pass $bprev, $((SECONDS - t0)) s"
		fi
	done
	"$STASIS" verify "$WORK/mem.snap" >/dev/null || fail "the last memtest snapshot does not verify"
	"$STASIS" verify "$WORK/blk.snap" >/dev/null || fail "the last blktest snapshot does not verify"
	note "PASS $CYCLES cycles, 0 divergences, $((SECONDS - t0)) s"
)

# soak_fuzz: each target for its time from tests/fuzz/corpus/TARGET plus
# what earlier soaks found (LOG/corpus/TARGET); what adds coverage is
# merged back into tests/fuzz/corpus/TARGET (commit only a small set).
soak_fuzz() {
	local fb=$ROOT/build-fuzz t secs rc runs bad=0
	if [[ ! -f $fb/build.ninja ]]; then
		CC=clang meson setup "$fb" -Dfuzz=true >"$LOG/fuzz-setup.log" 2>&1 ||
			{ echo "soak: fuzz: meson setup failed ($LOG/fuzz-setup.log)"; return 1; }
	fi
	local targets=${SOAK_FUZZ_TARGETS:-$(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')}
	for t in $targets; do
		ninja -C "$fb" "tests/fuzz/$t" >"$LOG/fuzz-$t.build.log" 2>&1 ||
			{ echo "soak: fuzz: $t does not build"; bad=1; continue; }
		secs=$FUZZ_S
		[[ $t == fuzz_snapfile ]] && secs=$FUZZ_SNAP_S
		mkdir -p "$LOG/corpus/$t" "$LOG/crashes/$t" "$ROOT/tests/fuzz/corpus/$t"
		rc=0
		"$fb/tests/fuzz/$t" -max_total_time="$secs" -max_len=65536 \
			-rss_limit_mb=1024 -print_final_stats=1 \
			-artifact_prefix="$LOG/crashes/$t/" \
			"$LOG/corpus/$t" "$ROOT/tests/fuzz/corpus/$t" \
			>"$LOG/fuzz-$t.log" 2>&1 || rc=$?
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG/fuzz-$t.log" | tail -n 1)
		echo "soak: fuzz: $t: ${runs:-?} executions in $secs s, status $rc, crashes: $(ls "$LOG/crashes/$t" | wc -l)"
		((rc == 0)) || bad=1
		"$fb/tests/fuzz/$t" -merge=1 -max_len=65536 "$ROOT/tests/fuzz/corpus/$t" \
			"$LOG/corpus/$t" >"$LOG/fuzz-$t.merge.log" 2>&1 ||
			echo "soak: fuzz: $t: merging the corpus failed ($LOG/fuzz-$t.merge.log)"
	done
	return "$bad"
}

status=0
if ((CYCLES > 0)); then
	soak_cycles || status=1
fi
if ((FUZZ_S > 0)); then
	soak_fuzz || status=1
fi
exit "$status"
