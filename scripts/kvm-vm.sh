#!/usr/bin/env bash
# Run a command where /dev/kvm exists, on a host that has none: boot a Debian
# kernel in QEMU's TCG emulator with AMD SVM, load kvm_amd, chroot into the
# host's root (shared read-only over 9p) and run the command there.
#
# Usage:
#   scripts/kvm-vm.sh prepare CACHE_DIR
#   scripts/kvm-vm.sh run CACHE_DIR WORKDIR [-e NAME=VALUE]... -- COMMAND [ARG]...
#
# See docs/testing-without-kvm.md for the why, the costs and the limits.
set -euo pipefail

readonly PROG=kvm-vm

# Tunables (environment). Defaults are sized for the 2-core CI machine.
KVMVM_TIMEOUT=${KVMVM_TIMEOUT:-1800} # host-side limit for one run, seconds
KVMVM_BOOT_TIMEOUT=${KVMVM_BOOT_TIMEOUT:-180} # until L1 reaches the command
KVMVM_STALL_TIMEOUT=${KVMVM_STALL_TIMEOUT:-120} # without an L1 heartbeat
KVMVM_MEM=${KVMVM_MEM:-4G}           # L1 RAM; TCG allocates it lazily
KVMVM_SMP=${KVMVM_SMP:-2}            # L1 vCPUs (one TCG thread each)
KVMVM_CPU=${KVMVM_CPU:-max}          # must expose svm and npt
KVMVM_DEBUG=${KVMVM_DEBUG:-0}        # 1: verbose kernel log, traced init
KVMVM_CONSOLE=${KVMVM_CONSOLE:-}     # keep the L1 serial console log here
KVMVM_KERNEL_PKG=${KVMVM_KERNEL_PKG:-} # default: what linux-image-amd64 pulls

# 9p message size: the 6.1 virtio transport caps it near 512 KB; big
# messages cut the number of (slow, emulated) round trips.
readonly MSIZE=512000

# Modules to load in L1; their dependencies are found from the .ko files.
readonly ROOT_MODULES="kvm_amd virtio_pci virtio_console 9pnet_virtio 9p"

# Exit statuses of the harness itself (the command's own status passes
# through unchanged): like timeout(1) and docker run.
readonly EXIT_TIMEOUT=124
readonly EXIT_HARNESS=125

die() {
	echo "$PROG: error: $*" >&2
	exit "$EXIT_HARNESS"
}

usage() {
	cat >&2 <<'EOF'
usage: kvm-vm.sh prepare CACHE_DIR
       kvm-vm.sh run CACHE_DIR WORKDIR [-e NAME=VALUE]... -- COMMAND [ARG]...
EOF
	exit "$EXIT_HARNESS"
}

# ---------------------------------------------------------------- prepare --

# The hash of this file goes into the cache stamp, so an edited init script
# or module list rebuilds the initramfs (but does not re-download).
script_hash() {
	sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
}

# apt-get download/ apt-cache need package lists; a fresh machine may have
# none or stale ones (security updates replace .debs). Update once, as root.
apt_refresh() {
	[[ ${APT_REFRESHED:-0} = 1 ]] && return 0
	[[ $(id -u) = 0 ]] || die "apt package lists are missing or stale and we are not root to run apt-get update"
	echo "$PROG: apt-get update" >&2
	apt-get -qq update >&2 || die "apt-get update failed"
	APT_REFRESHED=1
}

# Print the kernel package to use: the unsigned twin of the image that the
# linux-image-amd64 meta package depends on (same bits, no signature dance).
kernel_package() {
	if [[ -n $KVMVM_KERNEL_PKG ]]; then
		echo "$KVMVM_KERNEL_PKG"
		return
	fi
	local dep
	dep=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
	if [[ -z $dep ]]; then
		apt_refresh
		dep=$(apt-cache depends linux-image-amd64 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
	fi
	[[ -n $dep ]] || die "cannot resolve linux-image-amd64 with apt-cache"
	if apt-cache show "$dep-unsigned" >/dev/null 2>&1; then
		echo "$dep-unsigned"
	else
		echo "$dep"
	fi
}

# Download package $1 into directory $2 unless a .deb of it is there.
fetch_deb() {
	local pkg=$1 dir=$2
	compgen -G "$dir/${pkg}_*.deb" >/dev/null && return 0
	# Sandbox user root: apt's _apt user may not write to CACHE_DIR.
	if ! (cd "$dir" && apt-get -qq -o APT::Sandbox::User=root download "$pkg" >&2); then
		apt_refresh
		(cd "$dir" && apt-get -qq -o APT::Sandbox::User=root download "$pkg" >&2) ||
			die "apt-get download $pkg failed"
	fi
}

# Host tools are Debian packages; install the missing ones (CI machines may
# start clean). QEMU's pc machine needs SeaBIOS; xz(1) is optional (see
# extract_vmlinux) but cheap.
ensure_host_tools() {
	local pkgs=()
	command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
	[[ -e /usr/share/seabios/bios-256k.bin ]] || pkgs+=(seabios)
	command -v xz >/dev/null || pkgs+=(xz-utils)
	((${#pkgs[@]})) || return 0
	[[ $(id -u) = 0 ]] || die "missing host packages: ${pkgs[*]} (apt-get install them)"
	apt_refresh
	echo "$PROG: installing ${pkgs[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get -qq install -y "${pkgs[@]}" >&2 ||
		die "apt-get install ${pkgs[*]} failed"
}

# Print the value of the modinfo "depends=" field of module file $1. The
# .modinfo section is NUL-separated key=value strings, so no modinfo(8) needed.
module_depends() {
	tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '
}

# Copy modules $ROOT_MODULES and their dependencies from module tree $1 into
# directory $2 as NN-name.ko, NN being a valid load order.
collect_modules() {
	local tree=$1 out=$2 f n
	local -A path=() seen=()
	local order=()
	while IFS= read -r f; do
		n=${f##*/}
		n=${n%%.ko*}
		path[${n//-/_}]=$f
	done < <(find "$tree" -name '*.ko' -o -name '*.ko.xz')

	visit() {
		local name=${1//-/_} d
		[[ -n ${seen[$name]:-} ]] && return 0
		seen[$name]=1
		[[ -n ${path[$name]:-} ]] || die "module $name not found in the kernel package"
		local file=${path[$name]} tmp
		if [[ $file = *.xz ]]; then
			# busybox insmod cannot read compressed modules.
			tmp=$out/.unxz.ko
			"$BUSYBOX" xz -dc "$file" >"$tmp"
			file=$tmp
		fi
		for d in $(module_depends "$file"); do
			visit "$d"
		done
		order+=("$name")
		if [[ $file = "$out/.unxz.ko" ]]; then
			mv "$file" "$out/$(printf %02d ${#order[@]})-$name.ko"
		else
			cp "$file" "$out/$(printf %02d ${#order[@]})-$name.ko"
		fi
	}
	for n in $ROOT_MODULES; do
		visit "$n"
	done
	unset -f visit
}

# The L1 VM's /init (busybox sh, PID 1). The per-run /kvmvm/params and
# /kvmvm/cmd come from a second cpio archive appended to the initramfs.
write_init() {
	cat >"$1" <<'INIT'
#!/bin/sh
# PID 1 of the kvm-vm.sh L1 VM: load KVM, mount the host root, run the command.
PATH=/bin
export PATH

# Markers on the serial console tell the host how the run ended.
fail() {
	echo "KVMVM-ERROR $*" >/dev/ttyS0
	poweroff -f
	exit 1
}

mount -t proc proc /proc || fail "mount /proc failed"
mount -t sysfs sysfs /sys || fail "mount /sys failed"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev failed"
hostname kvm-vm
# Tests talk to servers on 127.0.0.1: the loopback interface must be up.
ip link set lo up || fail "cannot bring up the loopback interface"
. /kvmvm/params || fail "no /kvmvm/params in the initramfs"
if [ "$KVMVM_DEBUG" = 1 ]; then
	PS4='+ [$(cut -d" " -f1 /proc/uptime)] '
	set -x
fi

grep -qw svm /proc/cpuinfo || fail "the L1 vCPU has no svm flag (QEMU -cpu $KVMVM_CPU)"
for m in /lib/modules/*.ko; do
	insmod "$m" || fail "insmod ${m##*/} failed"
done
[ -c /dev/kvm ] || fail "/dev/kvm missing after loading kvm_amd"

o="trans=virtio,version=9p2000.L,msize=$KVMVM_MSIZE"
# The host root is read-only and does not change under us: cache freely.
mount -t 9p -o "$o,ro,cache=loose" hostroot /host || fail "mount of host root over 9p failed"
mount -t proc proc /host/proc &&
	mount -t sysfs sysfs /host/sys &&
	mount -t devtmpfs devtmpfs /host/dev &&
	mkdir -p /host/dev/pts /host/dev/shm &&
	mount -t devpts devpts /host/dev/pts &&
	mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm &&
	mount -t tmpfs -o mode=1777 tmpfs /host/tmp &&
	mount -t tmpfs -o mode=1777 tmpfs /host/var/tmp &&
	mount -t tmpfs -o mode=755 tmpfs /host/run ||
	fail "mounting /proc /sys /dev /tmp /var/tmp /run in the chroot failed"
# WORKDIR is read-write and shared with the host: no caching beyond mmap.
mkdir -p "/host$KVMVM_WORKDIR" 2>/dev/null
mount -t 9p -o "$o,rw,cache=mmap" workdir "/host$KVMVM_WORKDIR" ||
	fail "mount of $KVMVM_WORKDIR over 9p failed"
mkdir -p /host/run/kvmvm && cp /kvmvm/cmd /host/run/kvmvm/cmd ||
	fail "cannot install the command script"

# virtio-serial ports carry the command's stdout and stderr to the host,
# byte for byte and apart from the console.
port() {
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && echo "/dev/${p##*/}" && return 0
	done
	fail "virtio-serial port $1 not found"
}
out=$(port kvmvm.stdout) || exit 1
err=$(port kvmvm.stderr) || exit 1
# Progress on the command's stderr: a run that hangs later shows that the
# VM itself came up.
echo "KVMVM-UP" >/dev/ttyS0
# Heartbeat: the host ends a VM whose beats stop, i.e. whose timers no
# longer fire (the emulated L1 can stop making progress altogether).
(while :; do echo KVMVM-BEAT >/dev/ttyS0; sleep 10; done) &
echo "kvm-vm: L1 VM up after $(cut -d' ' -f1 /proc/uptime) s; running the command" >"$err"

chroot /host /bin/bash /run/kvmvm/cmd </dev/null >"$out" 2>"$err"
rc=$?

# The status first: the host ends a VM that hangs after this point.
echo "KVMVM-EXIT $rc" >/dev/ttyS0
sync
umount "/host$KVMVM_WORKDIR" 2>/dev/null
poweroff -f
INIT
	chmod 755 "$1"
}

# Write to $2 the kernel to boot, from bzImage $1. QEMU boots an uncompressed
# ELF vmlinux through its PVH entry point (CONFIG_PVH), skipping SeaBIOS's
# real-mode loader and the in-guest decompressor; under TCG that saves ~3 s
# per boot. Debian compresses with xz: find the xz stream and unpack it on the
# host (xz reports trailing garbage, hence the ELF check instead of its
# status). Without xz(1), or if that fails, boot the bzImage as it is.
extract_vmlinux() {
	local bz=$1 out=$2 off
	if command -v xz >/dev/null; then
		while IFS=: read -r off _; do
			tail -c +$((off + 1)) "$bz" | xz -dc >"$out" 2>/dev/null || true
			[[ $(head -c 4 "$out" | od -An -c | tr -d ' ') = 177ELF ]] && return 0
		done < <(LC_ALL=C grep -abo $'\xfd7zXZ\x00' "$bz")
	fi
	echo "$PROG: warning: booting the compressed kernel (slower)" >&2
	cp "$bz" "$out"
}

# Pack directory $1 into a newc cpio archive on stdout (the host may lack
# cpio(1); the cached static busybox has one).
pack_cpio() {
	(cd "$1" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null)
}

cmd_prepare() {
	local cache=$1
	mkdir -p "$cache" || die "cannot create $cache"
	cache=$(realpath "$cache")
	BUSYBOX=$cache/busybox
	local stamp=$cache/stamp

	# One prepare at a time per cache (parallel CI jobs share it).
	exec 9>"$cache/.lock"
	flock 9

	ensure_host_tools
	if [[ -f $stamp && -f $cache/kernel && -f $cache/initrd-base.cpio && -x $BUSYBOX ]] &&
		grep -qx "script=$(script_hash)" "$stamp"; then
		exec 9>&-
		return 0
	fi

	local kpkg
	kpkg=$(kernel_package)
	mkdir -p "$cache/debs"
	echo "$PROG: preparing $cache with $kpkg" >&2
	fetch_deb "$kpkg" "$cache/debs"
	fetch_deb busybox-static "$cache/debs"

	local tmp
	tmp=$(mktemp -d "$cache/.build.XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now
	trap "rm -rf '$tmp'" EXIT
	dpkg-deb -x "$(compgen -G "$cache/debs/busybox-static_*.deb" | head -n1)" "$tmp/bb" ||
		die "cannot unpack busybox-static"
	install -m 755 "$tmp/bb/bin/busybox" "$BUSYBOX"
	dpkg-deb -x "$(compgen -G "$cache/debs/${kpkg}_*.deb" | head -n1)" "$tmp/k" ||
		die "cannot unpack $kpkg"
	local vmlinuz tree
	vmlinuz=$(compgen -G "$tmp/k/boot/vmlinuz-*" | head -n1) || true
	tree=$(compgen -G "$tmp/k/lib/modules/*/kernel" | head -n1) || true
	[[ -n $vmlinuz && -n $tree ]] || die "$kpkg has no /boot/vmlinuz-* or module tree"

	# The initramfs: busybox, the modules, /init and empty mount points.
	local root=$tmp/root
	mkdir -p "$root"/{bin,dev,proc,sys,host,kvmvm,lib/modules}
	cp "$BUSYBOX" "$root/bin/busybox"
	for a in sh cat cut cp echo grep hostname insmod ip mkdir mount poweroff sync umount chroot sleep; do
		ln -s busybox "$root/bin/$a"
	done
	collect_modules "$tree" "$root/lib/modules"
	write_init "$root/init"
	# Uncompressed: fw_cfg loads it quickly, and TCG is slow at gunzip.
	pack_cpio "$root" >"$tmp/initrd-base.cpio"

	extract_vmlinux "$vmlinuz" "$tmp/kernel"
	mv "$tmp/kernel" "$cache/kernel"
	mv "$tmp/initrd-base.cpio" "$cache/initrd-base.cpio"
	printf 'kernel=%s\nscript=%s\n' "$(basename "$(compgen -G "$cache/debs/${kpkg}_*.deb" | head -n1)")" \
		"$(script_hash)" >"$stamp"
	rm -rf "$tmp"
	trap - EXIT
	exec 9>&-
	echo "$PROG: cache ready" >&2
}

# -------------------------------------------------------------------- run --

# console_tail FILE: the L1 console's last lines, heartbeats left out.
console_tail() {
	tr -d '\r' 2>/dev/null <"$1" | grep -av -e '^\s*$' -e KVMVM-BEAT |
		sed 's/^/  console: /' | tail -n 20 || true
}

cmd_run() {
	local cache=$1 workdir=$2
	shift 2
	local envs=() a
	while (($#)); do
		case $1 in
		-e)
			(($# >= 2)) || usage
			[[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "-e wants NAME=VALUE, got '$2'"
			envs+=("$2")
			shift 2
			;;
		--)
			shift
			break
			;;
		*) usage ;;
		esac
	done
	(($#)) || usage
	[[ -d $workdir ]] || die "WORKDIR $workdir is not a directory"
	workdir=$(realpath "$workdir")
	[[ $workdir != / ]] || die "WORKDIR must not be /"
	[[ $workdir != *$'\n'* && $workdir != *\"* && $workdir != *\$* && $workdir != *\`* && $workdir != *\\* ]] ||
		die "WORKDIR contains characters the VM's init cannot quote"
	[[ $KVMVM_TIMEOUT =~ ^[0-9]+$ ]] || die "KVMVM_TIMEOUT must be whole seconds"
	[[ $KVMVM_BOOT_TIMEOUT =~ ^[0-9]+$ ]] || die "KVMVM_BOOT_TIMEOUT must be whole seconds"
	[[ $KVMVM_STALL_TIMEOUT =~ ^[0-9]+$ ]] || die "KVMVM_STALL_TIMEOUT must be whole seconds"

	cmd_prepare "$cache"
	cache=$(realpath "$cache")

	local run
	run=$(mktemp -d "${TMPDIR:-/tmp}/kvm-vm.XXXXXX")
	local qpid=
	# shellcheck disable=SC2064 # expand $run now
	trap "[[ -n \$qpid ]] && kill \$qpid 2>/dev/null; rm -rf '$run'" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	# Per-run initramfs part: parameters for /init and the command script.
	mkdir -p "$run/extra/kvmvm"
	cat >"$run/extra/kvmvm/params" <<EOF
KVMVM_WORKDIR="$workdir"
KVMVM_MSIZE=$MSIZE
KVMVM_DEBUG=$KVMVM_DEBUG
KVMVM_CPU="$KVMVM_CPU"
EOF
	{
		echo '# generated by kvm-vm.sh: run in the chroot by /bin/bash'
		# Tells the host's watchdog that bash came up over 9p.
		echo 'echo KVMVM-CMD >/dev/ttyS0 2>/dev/null'
		printf 'cd -- %q || exit 125\n' "$workdir"
		printf 'exec env -i -- PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
		printf ' HOME=/root TERM=dumb LANG=C.UTF-8 KVMVM=1'
		for a in "${envs[@]}"; do printf ' %q' "$a"; done
		for a in "$@"; do printf ' %q' "$a"; done
		printf '\n'
	} >"$run/extra/kvmvm/cmd"
	# The kernel unpacks concatenated cpio archives in order.
	{
		cat "$cache/initrd-base.cpio"
		pack_cpio "$run/extra"
	} >"$run/initrd"

	# stdout/stderr travel guest port -> QEMU -> FIFO -> cat -> our fd 1/2.
	# QEMU's pipe chardev writes NAME.out and reads NAME.in. We hold each
	# .out open read-write (fds 7, 8) so that the cats' opens cannot block
	# if QEMU dies early; closing them after QEMU ends gives the cats EOF.
	# If our stdout goes away (`... | head`), the second cat drains the
	# FIFO so that the guest never blocks on a full port.
	local p attempt qrc console=$run/console.log
	for attempt in 1 2; do
		rm -f "$run"/{out,err}.{in,out} "$run/boot-stuck" "$console"
		for p in out err; do
			mkfifo "$run/$p.in" "$run/$p.out"
		done
		exec 7<>"$run/out.out" 8<>"$run/err.out"
		{ cat || exec cat >/dev/null; } <"$run/out.out" 7>&- 8>&- &
		local cat_out=$!
		{ cat >&2 || exec cat >/dev/null; } <"$run/err.out" 7>&- 8>&- &
		local cat_err=$!

		local append="console=ttyS0 panic=-1 rdinit=/init"
		if [[ $KVMVM_DEBUG = 1 ]]; then
			append+=" loglevel=7"
		else
			# Warnings and worse (soft lockups, hung tasks, panics) reach
			# the console log, shown when a run times out or breaks.
			append+=" quiet loglevel=5"
		fi
		# shellcheck disable=SC2054 # commas are QEMU's, not array separators
		local qemu=(
			qemu-system-x86_64 -nodefaults -no-user-config -no-reboot
			-accel tcg,thread=multi -cpu "$KVMVM_CPU" -smp "$KVMVM_SMP" -m "$KVMVM_MEM"
			-display none -vga none -monitor none
			-serial "file:$console"
			-kernel "$cache/kernel" -initrd "$run/initrd" -append "$append"
			-fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap
			-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
			-fsdev "local,id=workdir,path=${workdir//,/,,},security_model=none,multidevs=remap"
			-device virtio-9p-pci,fsdev=workdir,mount_tag=workdir
			-device virtio-serial-pci
			-chardev "pipe,id=stdout,path=$run/out" -device virtserialport,chardev=stdout,name=kvmvm.stdout
			-chardev "pipe,id=stderr,path=$run/err" -device virtserialport,chardev=stderr,name=kvmvm.stderr
		)
		qrc=0
		timeout -k 10 "$KVMVM_TIMEOUT" "${qemu[@]}" </dev/null >"$run/qemu.log" 2>&1 7>&- 8>&- &
		qpid=$!
		# Watchdog. L1 comes up and starts the command in 4-15 s: one
		# that has not after KVMVM_BOOT_TIMEOUT is stuck (seen rarely
		# under TCG, both in the boot and in starting bash over 9p): kill
		# it, and boot once more. And once /init
		# has reported the command's status, the VM has nothing left to
		# do but sync and power off: if that hangs (seen too), end it.
		(
			local beats last_beats=0 last_beat=0
			for ((i = 0; ; i += 2)); do
				kill -0 "$qpid" 2>/dev/null || exit 0
				if ! grep -aq KVMVM-CMD "$console" 2>/dev/null; then
					if ((i >= KVMVM_BOOT_TIMEOUT)); then
						touch "$run/boot-stuck"
						kill "$qpid" 2>/dev/null || true
						exit 0
					fi
				elif grep -aqE 'KVMVM-(EXIT|ERROR) ' "$console" 2>/dev/null; then
					sleep 30
					kill "$qpid" 2>/dev/null || true
					exit 0
				else
					beats=$(grep -ac KVMVM-BEAT "$console" 2>/dev/null)
					if ((beats != last_beats)); then
						last_beats=$beats last_beat=$i
					elif ((i - last_beat >= KVMVM_STALL_TIMEOUT)); then
						touch "$run/stalled"
						kill "$qpid" 2>/dev/null || true
						exit 0
					fi
				fi
				sleep 2
			done
		) 7>&- 8>&- &
		local watchdog=$!
		wait "$qpid" || qrc=$?
		qpid=
		kill "$watchdog" 2>/dev/null || true
		wait "$watchdog" 2>/dev/null || true
		exec 7>&- 8>&-
		wait "$cat_out" "$cat_err" || true
		[[ -e $run/boot-stuck ]] || break
		{
			echo "$PROG: warning: the VM did not come up within ${KVMVM_BOOT_TIMEOUT}s (attempt $attempt)"
			console_tail "$console"
		} >&2
		[[ $attempt = 2 ]] && die "the VM did not come up, twice"
	done

	[[ -n $KVMVM_CONSOLE ]] && cp "$console" "$KVMVM_CONSOLE"
	local status
	status=$(tr -d '\r' 2>/dev/null <"$console" | sed -n 's/^KVMVM-\(EXIT\|ERROR\) /\1 /p' | tail -n1) || true
	if [[ -e $run/stalled ]]; then
		{
			echo "$PROG: error: the VM stopped making progress (no heartbeat for ${KVMVM_STALL_TIMEOUT}s); VM killed"
			console_tail "$console"
		} >&2
		exit "$EXIT_TIMEOUT"
	fi
	if [[ $qrc = 124 ]]; then
		{
			echo "$PROG: error: timed out after ${KVMVM_TIMEOUT}s (KVMVM_TIMEOUT); VM killed"
			console_tail "$console"
		} >&2
		exit "$EXIT_TIMEOUT"
	fi
	case $status in
	"EXIT "*)
		exit "${status#EXIT }"
		;;
	"ERROR "*)
		die "in the VM: ${status#ERROR }"
		;;
	esac
	{
		echo "$PROG: error: the VM ended without an exit status (qemu status $qrc)"
		sed 's/^/  qemu: /' "$run/qemu.log" | tail -n 10 || true
		console_tail "$console"
	} >&2
	exit "$EXIT_HARNESS"
}

main() {
	(($# >= 1)) || usage
	local verb=$1
	shift
	case $verb in
	prepare)
		(($# == 1)) || usage
		cmd_prepare "$1"
		;;
	run)
		(($# >= 3)) || usage
		cmd_run "$@"
		;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
}

main "$@"
