# bench/lib.sh - shared by the bench/*.sh scripts: where to run (directly, or
# inside the nested KVM test VM), the timing helper, recording measurements,
# waiting for VMMs, and the statistics and table formatting. Sourced, not
# run.
# shellcheck shell=bash

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bench_die() {
	echo "bench: error: $*" >&2
	exit 1
}

bench_note() {
	echo "bench: $*" >&2
}

# bench_setup SCRIPT BUILD_DIR [ARGS...]: checks the build, builds the timing
# helper, and re-executes SCRIPT inside scripts/kvm-vm.sh when /dev/kvm cannot
# be opened here; where it can, picks the peer's CPU model. Sets BUILD,
# STASIS, GUESTS, BENCHTOOL, QEMU and (on KVM) QEMU_CPU.
bench_setup() {
	local script=$1 build=$2
	shift 2

	BUILD=$(cd "$build" 2>/dev/null && pwd) ||
		bench_die "no build directory $build (run: meson setup build && ninja -C build)"
	STASIS=$BUILD/stasis
	GUESTS=$BUILD/guests
	QEMU=${QEMU:-qemu-system-x86_64}
	[[ -x $STASIS ]] || bench_die "$STASIS is missing: run ninja -C $BUILD"
	for g in hello memtest counter; do
		[[ -f $GUESTS/$g.elf ]] || bench_die "$GUESTS/$g.elf is missing"
	done
	command -v "$QEMU" >/dev/null || bench_die "$QEMU is not installed"

	# The helper lives in the build tree, which the nested VM sees too.
	BENCHTOOL=$BUILD/bench/benchtool
	if [[ ! -x $BENCHTOOL || $BENCH_ROOT/bench/benchtool.c -nt $BENCHTOOL ]]; then
		mkdir -p "$BUILD/bench"
		${CC:-cc} -O2 -Wall -Wextra -o "$BENCHTOOL.tmp.$$" \
			"$BENCH_ROOT/bench/benchtool.c" ||
			bench_die "cannot build the timing helper"
		mv "$BENCHTOOL.tmp.$$" "$BENCHTOOL"
	fi

	# A character device we can open (read-only here: "<>" would create a
	# plain file where there is no device).
	if [[ -c /dev/kvm && -w /dev/kvm ]] && (exec 3</dev/kvm) 2>/dev/null; then
		bench_peer_cpu_choose
		return 0
	fi
	[[ ${KVMVM:-0} = 1 ]] && bench_die "/dev/kvm does not open even inside the nested VM"

	# No KVM here: run the same script in the nested test VM (see
	# docs/testing-without-kvm.md). Only BENCH_* and QEMU pass through.
	local cache=${KVMVM_CACHE:-/var/cache/stasis-kvm-vm} envs=() v
	for v in $(compgen -e); do
		case $v in
		BENCH_* | QEMU) envs+=(-e "$v=${!v}") ;;
		esac
	done
	bench_note "no /dev/kvm here: running inside the nested KVM VM (KVMVM_MEM=${KVMVM_MEM:-4G}, cache $cache); numbers are 50-100x slower than hardware, compare ratios"
	exec "$BENCH_ROOT/scripts/kvm-vm.sh" run "$cache" "$BENCH_ROOT" "${envs[@]}" \
		-- bash "$script" "$BUILD" "$@"
}

# ------------------------------------------------------ the two CPUs --
# stasis runs every benchmark with its default CPUID template, host: what
# this host's KVM offers (KVM_GET_SUPPORTED_CPUID) plus the hypervisor bit
# (src/cpu/cpuid.c, docs/cpu.md). Its QEMU counterpart is -cpu host, built
# from the same KVM query. Both show ARCH_CAPABILITIES (CPUID.7.0:EDX[29])
# where KVM offers it, as KVM emulates that MSR on every vendor; but QEMU
# 7.2 also writes MSR 0x10a at vCPU creation with the value KVM reported,
# and some KVMs refuse that write (KVM on PVM: QEMU aborts with "failed to
# set MSR 0x10a"). Where -cpu host does not start, the peer runs
# host,-arch-capabilities: the same CPU less that one bit and its MSR,
# which none of the guest-kit guests reads. The stasis commands pass
# --cpu-template "$BENCH_CPU_TEMPLATE" so that what is printed is what ran.
BENCH_CPU_TEMPLATE=host
BENCH_HELLO_LINE="hello from the stasis guest kit"

# bench_kvm_kind: one line on which KVM this is.
bench_kvm_kind() {
	local kind vm=""
	grep -qw hypervisor /proc/cpuinfo && vm=", in a VM (the host CPU shows the hypervisor flag)"
	if [[ ${KVMVM:-0} = 1 ]]; then
		echo "nested test VM (scripts/kvm-vm.sh): kvm_amd inside QEMU TCG with emulated SVM"
		return 0
	fi
	# kvm-pvm.ko is KVM without VT-x/AMD-V (paging and privilege done
	# in software), as cloud VMs without nested virtualisation offer.
	if [[ -d /sys/module/kvm_pvm ]]; then
		kind="KVM on PVM (kvm_pvm, software-virtualised)"
	elif [[ -d /sys/module/kvm_intel ]]; then
		kind="hardware KVM (kvm_intel, VT-x)"
	elif [[ -d /sys/module/kvm_amd ]]; then
		kind="hardware KVM (kvm_amd, AMD-V)"
	else
		kind="KVM of unknown kind (no kvm_intel, kvm_amd or kvm_pvm in /sys/module)"
	fi
	echo "$kind$vm"
}

# bench_qemu_starts CPU: whether QEMU with -cpu CPU starts here and runs
# the hello guest far enough for its first serial output (the CPU models
# that fail, fail before that: QEMU rejects the option or aborts creating
# the vCPU). On failure QEMU's status and first error lines are in
# BENCH_PROBE_ERR; when the guest ran but did not greet, its first line is
# in BENCH_PROBE_GUEST.
bench_qemu_starts() {
	local out rc=0
	BENCH_PROBE_ERR="" BENCH_PROBE_GUEST=""
	out=$(mktemp "${TMPDIR:-/tmp}/stasis-bench-probe.XXXXXX")
	# The braces' stderr takes bash's own word on a QEMU that aborts.
	# shellcheck disable=SC2054 # the commas are QEMU's
	{ timeout -k 5 180 "$QEMU" -M microvm -accel kvm -cpu "$1" -m 64M -smp 1 \
		-nodefaults -no-user-config -display none -serial stdio -no-reboot \
		-kernel "$GUESTS/hello.elf" -device isa-debug-exit,iobase=0xf4,iosize=4 \
		</dev/null >"$out" 2>"$out.err"; } 2>/dev/null || rc=$?
	if [[ -s $out ]]; then
		# hello leaves through isa-debug-exit with code 0: status 1.
		[[ $rc == 1 ]] && grep -qF "$BENCH_HELLO_LINE" "$out" ||
			BENCH_PROBE_GUEST="status $rc: $(head -n 1 "$out")"
		rm -f "$out" "$out.err"
		return 0
	fi
	BENCH_PROBE_ERR="status $rc: $(grep -v '^$' "$out.err" | head -n 2 | tr '\n' ' ')"
	rm -f "$out" "$out.err"
	return 1
}

# bench_peer_cpu_choose: sets QEMU_CPU, the peer's -cpu (BENCH_QEMU_CPU
# forces one), QEMU_CPU_WHY, and STASIS_ARCH_CAP (whether stasis's guest
# sees ARCH_CAPABILITIES: 1, 0, or ? if not known).
bench_peer_cpu_choose() {
	local line want c
	QEMU_CPU=""
	line=$("$BENCHTOOL" kvm-cpuid 2>&1) || line=""
	STASIS_ARCH_CAP=$(bench_kv "$line" arch_capabilities)
	[[ -n $STASIS_ARCH_CAP ]] || STASIS_ARCH_CAP="?"
	if [[ -n ${BENCH_QEMU_CPU:-} ]]; then
		QEMU_CPU=$BENCH_QEMU_CPU
		QEMU_CPU_WHY="set by BENCH_QEMU_CPU"
		bench_note "peer CPU: -cpu $QEMU_CPU ($QEMU_CPU_WHY)"
		return 0
	fi
	# The model matching stasis's first; the one without the MSR
	# where QEMU cannot start with it.
	for c in host host,-arch-capabilities; do
		if bench_qemu_starts "$c"; then
			QEMU_CPU=$c
			[[ -z $BENCH_PROBE_GUEST ]] ||
				bench_note "QEMU -cpu $c starts here, but its hello guest did not greet ($BENCH_PROBE_GUEST)"
			break
		fi
		bench_note "QEMU -cpu $c does not start here ($BENCH_PROBE_ERR)"
		want=${want:+$want; }"-cpu $c failed: $BENCH_PROBE_ERR"
	done
	[[ -n ${QEMU_CPU:-} ]] || bench_die "QEMU starts with no CPU model here: $want"
	if [[ $QEMU_CPU == host ]]; then
		QEMU_CPU_WHY="QEMU's counterpart of stasis's template host"
	else
		case $STASIS_ARCH_CAP in
		1) QEMU_CPU_WHY="-cpu host does not start here; differs from stasis's CPU in ARCH_CAPABILITIES only, which stasis's guest sees" ;;
		0) QEMU_CPU_WHY="-cpu host does not start here; KVM offers no ARCH_CAPABILITIES, so the same CPU as stasis's" ;;
		*) QEMU_CPU_WHY="-cpu host does not start here; whether stasis's guest sees ARCH_CAPABILITIES is not known ($line)" ;;
		esac
	fi
	bench_note "peer CPU: -cpu $QEMU_CPU ($QEMU_CPU_WHY)"
}

# ------------------------------------------------------------- results --
# A script that records measurements calls bench_workdir first (or sets RES,
# a directory of its own, and START, $SECONDS at its start).

# bench_workdir NAME: a scratch directory DIR under BENCH_DIR (or TMPDIR, or
# /tmp) with the results in RES, and SOCKDIR for UNIX sockets (a short path
# on a local file system); both are removed at exit, after a SIGKILL to
# every VMM the script put in PIDS. Sets DIR, SOCKDIR, RES, START, PIDS.
bench_workdir() {
	DIR=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/stasis-bench-$1.XXXXXX")
	SOCKDIR=$(mktemp -d /tmp/stasis-sock.XXXXXX)
	RES=$DIR/results
	START=$SECONDS
	PIDS=()
	mkdir -p "$RES"
	trap bench_cleanup EXIT
}

bench_cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$DIR" "$SOCKDIR"
}

# bench_put SCENARIO METRIC VALUE: records one measurement.
bench_put() {
	mkdir -p "$RES/$1"
	echo "$3" >>"$RES/$1/$2"
}

# bench_get SCENARIO METRIC: the median of its measurements, or "-".
bench_get() {
	if [[ -s $RES/$1/$2 ]]; then bench_median <"$RES/$1/$2"; else echo "-"; fi
}

# bench_step TEXT: progress on stderr, with the time since the start.
bench_step() {
	bench_note "$(printf '%4d s' $((SECONDS - START))) $*"
}

# bench_fail TEXT: a measurement that failed; listed at the end of the report
# and left out of the medians.
bench_fail() {
	bench_note "$*"
	echo "$*" >>"$RES/failures"
}

# bench_wait_for FILE TEXT PID SECONDS: until FILE contains TEXT. 1 if PID
# died or time ran out.
bench_wait_for() {
	local end=$((SECONDS + $4))
	until grep -qF "$2" "$1" 2>/dev/null; do
		kill -0 "$3" 2>/dev/null || return 1
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}

# bench_wait_exit PID SECONDS: waits for a VMM we started; SIGKILL at the end.
bench_wait_exit() {
	local end=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null && ((SECONDS < end)); do
		sleep 0.2
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# bench_mem_kib PID FIELD: Rss or Pss of a process, in KiB.
bench_mem_kib() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/smaps_rollup"
}

# bench_clones SNAP N RUN KEY READY: starts N restores of SNAP at once
# (--memory map), waits until each clone's serial shows READY, and records
# under KEY: ready_ms (first exec to all ready), per_s (clones per
# second), rss_mib and pss_mib (all clones), rss_each_mib, pss_each_mib;
# then stops them. bench/clones.sh and bench/snapshot.sh use it.
bench_clones() {
	local snap=$1 n=$2 run=$3 key=$4 ready=$5 i t0 t1 rss=0 pss=0 pids=() ok=1
	t0=$(date +%s%N)
	for ((i = 0; i < n; i++)); do
		"$STASIS" restore "$snap" --memory map \
			--api-socket "$SOCKDIR/c$i.sock" --serial "file:$DIR/c$i.out" \
			</dev/null >/dev/null 2>"$DIR/c$i.err" &
		pids+=($!)
		PIDS+=($!)
	done
	for ((i = 0; i < n; i++)); do
		bench_wait_for "$DIR/c$i.out" "$ready" "${pids[i]}" 120 || {
			ok=0
			bench_fail "$key: N=$n run $run: clone $i not ready: $(tail -n 1 "$DIR/c$i.err")"
			break
		}
	done
	t1=$(date +%s%N)
	if ((ok)); then
		for ((i = 0; i < n; i++)); do
			rss=$((rss + $(bench_mem_kib "${pids[i]}" Rss)))
			pss=$((pss + $(bench_mem_kib "${pids[i]}" Pss)))
		done
		bench_put "$key" ready_ms "$(bench_calc "(b - a) / 1e6" "$t0" "$t1")"
		bench_put "$key" per_s "$(bench_calc "c / ((b - a) / 1e9)" "$t0" "$t1" "$n")"
		bench_put "$key" rss_mib "$(bench_calc "a / 1024" "$rss")"
		bench_put "$key" pss_mib "$(bench_calc "a / 1024" "$pss")"
		bench_put "$key" pss_each_mib "$(bench_calc "a / 1024 / b" "$pss" "$n")"
		bench_put "$key" rss_each_mib "$(bench_calc "a / 1024 / b" "$rss" "$n")"
	fi
	for ((i = 0; i < n; i++)); do
		"$STASIS" ctl "$SOCKDIR/c$i.sock" shutdown >/dev/null 2>&1 || true
	done
	for ((i = 0; i < n; i++)); do
		bench_wait_exit "${pids[i]}" 60
		rm -f "$SOCKDIR/c$i.sock" "$DIR/c$i.out"
	done
}

# QMP request lifting QEMU's migration bandwidth cap (7.2 defaults to
# 128 MiB/s), so that a save measures the VMM, not the cap.
BENCH_QMP_NOCAP='{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1099511627776}}'

# bench_qemu_save QMP_SOCK FILE: QEMU's suspend to a file, from a fresh QMP
# client as for stasis ctl: stop, migrate exec:cat of the stopped VM until
# query-migrate says completed, fsync (stasis's snapshot is durable, QEMU's
# migration is not), cont. Prints "stop_us=A save_us=B" (A: connect,
# negotiation and stop; B: migrate, wait and fsync); on failure prints the
# last reply and returns 1.
bench_qemu_save() {
	local line mig wait fs
	line=$("$BENCHTOOL" qmp "$1" '{"execute": "stop"}' \
		"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat > $2\"}}" \
		wait-migrate cont-after-migrate) || { echo "$line" | tail -n 1; return 1; }
	mig=$(bench_kv "$(sed -n 3p <<<"$line")" us)
	wait=$(bench_kv "$(sed -n 4p <<<"$line")" us)
	fs=$(bench_kv "$("$BENCHTOOL" fsync "$2")" us)
	echo "stop_us=$(bench_calc "a + b" "$(bench_kv "$(sed -n 1p <<<"$line")" us)" \
		"$(bench_kv "$(sed -n 2p <<<"$line")" us)") save_us=$(bench_calc "a + b + c" "$mig" "$wait" "$fs")"
}

# bench_kv LINE KEY: the value of KEY=VALUE in LINE (empty if absent).
bench_kv() {
	local w
	for w in $1; do
		[[ $w == "$2="* ]] && { echo "${w#*=}"; return 0; }
	done
	return 0
}

# median of the numbers on stdin (empty input: "-").
bench_median() {
	sort -g | awk '{ v[NR] = $1 }
		END { if (!NR) { print "-"; exit }
		      if (NR % 2) print v[(NR + 1) / 2]
		      else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# min and max of the numbers on stdin as "MIN-MAX".
bench_range() {
	sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
		END { if (NR) printf "%s-%s", lo, hi; else print "-" }'
}

# bench_calc EXPR A [B [C]]: awk arithmetic on the variables a, b, c; "-"
# when any of them is "-" or empty (not measured).
bench_calc() {
	local expr=$1 v
	shift
	for v in "$@"; do
		[[ $v == - || -z $v ]] && { echo "-"; return; }
	done
	awk -v a="${1:-0}" -v b="${2:-0}" -v c="${3:-0}" "BEGIN { print $expr }" \
		2>/dev/null || echo "-"
}

# bench_fmt PRINTF_FORMAT VALUE: formats a number, passes "-" through.
bench_fmt() {
	[[ $2 == - || -z $2 ]] && { echo "-"; return; }
	awk -v v="$2" "BEGIN { printf \"$1\", v }"
}

# bench_verdict OK: PASS or MISS ("?" if it could not be measured).
bench_verdict() {
	case $1 in
	1) echo PASS ;;
	0) echo MISS ;;
	*) echo "?" ;;
	esac
}

# bench_machine: the report's header lines: the machine, which KVM, and
# the CPU each VMM gave its guest.
bench_machine() {
	local cpu arch
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
	case $STASIS_ARCH_CAP in
	1) arch="ARCH_CAPABILITIES, CPUID.7.0:EDX[29], shown" ;;
	0) arch="no ARCH_CAPABILITIES, CPUID.7.0:EDX[29]: KVM offers none" ;;
	*) arch="whether ARCH_CAPABILITIES is shown is not known" ;;
	esac
	echo "machine: $(nproc) CPUs, $cpu, Linux $(uname -r)"
	echo "environment: $(bench_kvm_kind)"
	echo "stasis: $("$STASIS" --version 2>&1 | head -n1), --cpu-template $BENCH_CPU_TEMPLATE ($arch)"
	echo "peer: $($QEMU --version | head -n1), -cpu $QEMU_CPU ($QEMU_CPU_WHY)"
}
