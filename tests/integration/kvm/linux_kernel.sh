#!/usr/bin/env bash
# Helpers for the tests that boot Debian's stock kernel (linux_*.sh and
# slow_linux_*.sh), sourced after lib.sh. Run on its own, as
# tests/run-kvm.sh runs every script here, it checks that the kernel cache
# is complete, so that a missing cache shows up as its own failure.
#
# The cache is filled on the host by scripts/fetch-linux.sh (tests/run-all.sh
# calls it); inside the nested test VM there is no network, so nothing here
# downloads. See docs/linux.md.

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	# shellcheck source=tests/integration/lib.sh
	source "$(dirname "$0")/../lib.sh"
fi
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
LINUX_CACHE=${STASIS_LINUX_CACHE:-$ROOT/build/linux}

# Options every boot uses: the console and the early console on COM1 (the
# decompressor of a bzImage prints through earlyprintk too), no KASLR so that
# runs are comparable.
# shellcheck disable=SC2034 # used by the tests that source this file
LINUX_CMDLINE="console=ttyS0 earlyprintk=ttyS0 nokaslr"

# linux_image vmlinux|vmlinuz: prints the cached kernel's path; fails, never
# skips, when the cache is incomplete.
linux_image() {
	local f=$LINUX_CACHE/$1
	[[ -s $f && -f $LINUX_CACHE/stamp ]] ||
		fail "no $1 in the Linux kernel cache $LINUX_CACHE: run scripts/fetch-linux.sh $LINUX_CACHE on the host first (tests/run-all.sh does; the nested test VM cannot download)"
	echo "$f"
}

# linux_boot OUT [stasis run options...]: starts `stasis run` in the
# background with the serial console in OUT, stderr in OUT.err; sets VM_PID.
linux_boot() {
	local out=$1
	shift
	: >"$out"
	start_stasis "$out" run --serial "file:$out" "$@"
}

# linux_alive PID: true while stasis runs (an exited child stays a zombie,
# which kill -0 still finds, until this shell waits for it).
linux_alive() {
	kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1") != Z* ]]
}

# linux_stopped_early PID OUT: true when stasis has exited because KVM could
# not emulate an instruction (exit status 4, "KVM internal error" on stderr).
# On hosts where KVM emulates all guest ring-0 code, Debian's kernel stops
# that way part of the way through its boot (docs/linux.md).
linux_stopped_early() {
	local rc=0
	linux_alive "$1" && return 1
	wait "$1" || rc=$?
	LINUX_EXIT=$rc
	[[ $rc == 4 ]] && grep -q 'KVM internal error' "$2.err"
}

# linux_wait PID OUT REGEX SECONDS: waits until OUT has a line matching the
# extended REGEX. If stasis ends first the test fails at once, unless the
# line is there all the same.
linux_wait() {
	linux_wait_until "$1" "$2" "a line matching '$3'" "$4" grep -Eq "$3" "$2"
}

# linux_wait_lines PID OUT COUNT SECONDS: the same, until OUT has COUNT
# complete lines.
linux_wait_lines() {
	linux_wait_until "$1" "$2" "$3 lines" "$4" linux_has_lines "$2" "$3"
}

linux_has_lines() {
	(($(wc -l <"$1") >= $2))
}

# linux_wait_until PID OUT WHAT SECONDS COMMAND...: polls COMMAND every
# LINUX_POLL seconds (default 0.1).
linux_wait_until() {
	local pid=$1 out=$2 what=$3 secs=$4 deadline
	shift 4
	deadline=$((SECONDS + $(scaled "$secs")))
	while ((SECONDS < deadline)); do
		"$@" && return 0
		if ! linux_alive "$pid"; then
			"$@" && return 0
			linux_stopped_early "$pid" "$out" || true
			fail "stasis ended (status ${LINUX_EXIT:-?}) before $what in $out; last output: $(linux_tail "$out"); stderr: $(grep -v 'unclaimed port' "$out.err" | tail -n 15)"
		fi
		sleep "${LINUX_POLL:-0.1}"
	done
	fail "no $what in $out within $(scaled "$secs") s; last output: $(linux_tail "$out")"
}

# linux_tail OUT: the last lines of OUT on one line, for messages.
linux_tail() {
	tr -d '\r' <"$1" | tail -n 3 | tr '\n' '|'
}

# linux_stop PID OUT: stops a Linux boot that has shown what was needed. A
# stasis still running gets SIGTERM; one that has already ended must have
# ended through an emulation failure (see linux_stopped_early).
linux_stop() {
	local pid=$1 out=$2
	if linux_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		wait_exit "$pid" 60 >/dev/null
		return 0
	fi
	linux_stopped_early "$pid" "$out" ||
		fail "stasis ended with status $LINUX_EXIT while Linux was booting: $(grep -v 'unclaimed port' "$out.err" | tail -n 15)"
	note "Linux stopped on an instruction KVM cannot emulate, after the lines checked (expected where KVM emulates guest ring 0)"
}

# linux_serial OUT: the console output without carriage returns and printk
# timestamps, one kernel message a line.
linux_serial() {
	tr -d '\r' <"$1" | sed -E 's/^\[ *[0-9]+\.[0-9]+\] //'
}

# linux_e820_expected MIB: the BIOS-e820 lines Linux prints for the memory
# map stasis builds for MIB MiB of RAM (docs/boot.md, "The e820 map"): RAM up
# to the EBDA, the EBDA-to-1-MiB hole, RAM to the end of low memory (at most
# 3 GiB), KVM's identity-map page and TSS, and RAM above 4 GiB for the rest.
linux_e820_expected() {
	local bytes=$(($1 << 20)) low_limit=$((3 << 30)) low
	low=$((bytes < low_limit ? bytes : low_limit))
	local fmt='BIOS-e820: [mem 0x%016x-0x%016x] %s\n'
	# shellcheck disable=SC2059 # the format is ours
	{
		printf "$fmt" 0 $((0x9fc00 - 1)) usable
		printf "$fmt" $((0x9fc00)) $((0x100000 - 1)) reserved
		printf "$fmt" $((0x100000)) $((low - 1)) usable
		printf "$fmt" $((0xfeffc000)) $((0xff000000 - 1)) reserved
		if ((bytes > low_limit)); then
			printf "$fmt" $((1 << 32)) $(((1 << 32) + bytes - low_limit - 1)) usable
		fi
	}
}

# linux_check_e820 OUT MIB: the BIOS-e820 lines in OUT are exactly those for
# MIB MiB of RAM, in order.
linux_check_e820() {
	local got want
	got=$(linux_serial "$1" | grep -o 'BIOS-e820: .*') || true
	want=$(linux_e820_expected "$2")
	[[ $got == "$want" ]] ||
		fail "the e820 map Linux got for $2 MiB differs from the one stasis builds:
--- expected
$want
--- got
$got"
}

# Run on its own: only check the cache.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	for image in vmlinux vmlinuz; do
		linux_image "$image" >/dev/null
	done
	[[ $(od -An -c -N 4 "$LINUX_CACHE/vmlinux" | tr -d ' ') == 177ELF ]] ||
		fail "$LINUX_CACHE/vmlinux is not an ELF file"
	[[ $(od -An -c -j $((0x202)) -N 4 "$LINUX_CACHE/vmlinuz" | tr -d ' ') == HdrS ]] ||
		fail "$LINUX_CACHE/vmlinuz is not a bzImage"
	note "kernel cache $LINUX_CACHE: $(sed -n 's/^release=//p' "$LINUX_CACHE/stamp")"
fi
