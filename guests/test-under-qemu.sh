#!/usr/bin/env bash
# test-under-qemu.sh - boots every test guest under QEMU (TCG) with bounded
# arguments and checks its serial output and exit status; also checks that
# the runtime (which runs in ring 0) avoids instructions some hosts' ring-0
# emulation rejects. Usage: guests/test-under-qemu.sh [build-dir]
# Exits 77 (skip) without QEMU; prints "N passed, N failed" at the end.
set -u

build=${1:-build}
guests=$build/guests
qemu=${QEMU:-qemu-system-x86_64}
limit=${GUEST_TEST_TIMEOUT:-60}

if ! command -v "$qemu" >/dev/null 2>&1; then
	echo "SKIP: $qemu not found"
	exit 77
fi
if [ ! -f "$guests/hello.elf" ]; then
	echo "no guest images in $guests (build first)" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
name=
out=
status=
problems=

# A fixed initrd whose FNV-1a 32 is known: 4000 lines, 80000 bytes.
for i in $(seq 1 4000); do printf 'stasis initrd %05d\n' "$i"; done >"$tmp/initrd"
initrd_fnv=0xf4546159
initrd_size=0x13880

# run NAME IMAGE APPEND [extra qemu args]: boots one guest. The variables
# machine (microvm) and cpu (max) may be set for one call. A guest that
# must be stopped by the time limit shows status 124.
run() {
	name=$1
	local image=$2 append=$3
	shift 3
	out=$tmp/$name.out
	problems=
	timeout "${wait_s:-$limit}" "$qemu" -M "${machine:-microvm}" \
		-accel tcg -cpu "${cpu:-max}" -m 256M -kernel "$guests/$image" \
		-device isa-debug-exit,iobase=0xf4,iosize=4 -nographic \
		-no-reboot -append "$append" "$@" </dev/null >"$out" 2>"$tmp/$name.err"
	status=$?
}

fail() {
	problems="$problems; $*"
}

want_status() {
	[ "$status" = "$1" ] || fail "status $status, want $1"
}

want_line() {
	grep -qE "$1" "$out" || fail "no line matching '$1'"
}

# no_line RE [FILE]: FILE (default: this case's output) has no such line.
no_line() {
	! grep -qE "$1" "${2:-$out}" || fail "unexpected line matching '$1'${2:+ in ${2##*/}}"
}

want_count() {
	local n
	n=$(grep -cE "$1" "$out")
	[ "$n" -eq "$2" ] || fail "$n lines matching '$1', want $2"
}

# counter values must start at 1 or more, never repeat or go back.
want_increasing() {
	local bad
	bad=$(grep -E "^$1: [0-9]+$" "$out" |
		awk '{ if ($2 <= last) { print; exit } last = $2 }')
	[ -z "$bad" ] || fail "not increasing at '$bad'"
}

done_case() {
	if [ -z "$problems" ]; then
		passed=$((passed + 1))
		echo "ok   $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name${problems}"
		sed 's/^/    | /' "$out" | tail -n 20
	fi
}

# Status is (code << 1) | 1 for guest_exit(code).
run hello hello.elf ''
want_status 1
[ "$(cat "$out")" = "hello from the stasis guest kit" ] ||
	fail "output is not exactly the one hello line"
done_case

run counter counter.elf 'max=20'
want_status 1
want_line '^counter: start$'
want_line '^counter: 20$'
want_increasing counter
no_line ERROR
done_case

run counter-1khz counter.elf 'hz=1000 max=500'
want_status 1
want_line '^counter: 500$'
want_increasing counter
done_case

run memtest memtest.elf 'mib=32 seed=7 passes=2'
want_status 1
want_line '^memtest: start$'
want_line '^memtest: pass 2 ok \(32 MiB\)$'
done_case

# 5 GiB (QEMU puts RAM at 0-3 GiB and 4-6 GiB, as stasis does), the
# region above 4 GiB and across 5 GiB: the runtime's 2 MiB-page map there.
wait_s=$((limit * 2)) run memtest-high memtest.elf 'above=0x100000000 mib=1100 passes=1 ranges=1' -m 5G
want_status 1
want_line '^memtest: range 0x100000000 0x144c00000$'
want_line '^memtest: pass 1 ok \(1100 MiB\)$'
done_case

run memtest-inject memtest.elf 'passes=2 inject=1'
want_status 5
want_line '^memtest: MISMATCH at 0x[0-9a-f]+ expected 0x[0-9a-f]+ got 0x[0-9a-f]+$'
done_case

run memtest-too-big memtest.elf 'mib=1024 passes=1'
want_status 3
want_line '^memtest: ERROR'
done_case

wait_s=6 run memtest-touch memtest.elf 'touch=8'
want_status 124
want_line '^memtest: touched 8 MiB$'
want_line '^memtest: idle 2$'
done_case

# smp=1 tick_hz: CPU 0 ticks, the other CPU writes 4 MiB/s (about 1 MiB
# in each quarter second); unpaced, TCG writes several times that.
run memtest-tick-rate memtest.elf 'mib=4 smp=1 tick_hz=100 rate_mib=4 passes=2' -smp 2
want_status 1
want_line '^counter: 100$'
want_increasing counter
want_line '^memtest: second 1 wrote [2-6] MiB \(4 MiB, cpus=2 passes=0,[0-9]+\)$'
no_line ERROR
done_case

wait_s=8 run memtest-tick-touch memtest.elf 'touch=8 smp=1 tick_hz=100' -smp 2
want_status 124
want_line '^memtest: touched 8 MiB$'
want_line '^counter: 200$'
want_increasing counter
no_line '^memtest: second'
done_case

run memtest-tick-1cpu memtest.elf 'mib=8 smp=1 tick_hz=100'
want_status 3
want_line '^memtest: ERROR tick_hz needs 2 or more cpus'
done_case

run memtest-rate-no-smp memtest.elf 'mib=8 rate_mib=8'
want_status 3
want_line '^memtest: ERROR tick_hz=0 rate_mib=8 need smp=1'
done_case

run cpustate cpustate.elf 'checks=3'
want_status 1
want_line '^cpustate: state='
want_line '^cpustate: check 3 ok$'
no_line CORRUPT
done_case

run cpustate-1khz cpustate.elf 'checks=2 hz=1000 interval_ms=300'
want_status 1
want_line '^cpustate: check 2 ok$'
done_case

cpu=qemu64 run cpustate-sse cpustate.elf 'checks=2'
want_status 1
want_line '^cpustate: state=sse '
want_line '^cpustate: check 2 ok$'
done_case

run cpustate-inject-gpr cpustate.elf 'checks=5 inject=gpr'
want_status 9
want_line '^cpustate: CORRUPT r12 expected '
done_case

run cpustate-inject-xmm cpustate.elf 'checks=5 inject=xmm'
want_status 9
want_line '^cpustate: CORRUPT xmm5 '
done_case

for n in 1 2 4; do
	run "smp-$n" smp.elf 'rounds=3 period_ms=300' -smp "$n"
	want_status 1
	want_line "^smp: $n cpus online$"
	want_count "^smp: cpus=$n totals=[0-9]+(,[0-9]+){$((n - 1))}$" 3
	no_line STALL
	done_case
done

run bootinfo bootinfo.elf 'alpha=1 beta=two' -initrd "$tmp/initrd"
want_status 1
want_line '^bootinfo: start$'
want_line '^bootinfo: protocol=pvh$'
want_line '^bootinfo: cmdline=alpha=1 beta=two'
want_line '^bootinfo: e820 0x100000 0x[0-9a-f]+ 1$'
want_line "^bootinfo: initrd 0x[0-9a-f]+ $initrd_size$"
want_line "^bootinfo: initrd-fnv $initrd_fnv$"
want_line '^bootinfo: rsdp 0x[1-9a-f][0-9a-f]*$'
done_case

# QEMU boots a bzImage through its real-mode setup, which then enters the
# 64-bit boot protocol entry the way a 64-bit loader (stasis) does.
machine=pc run bootinfo-bzimage bootinfo.bzimage 'alpha=1 beta=two' \
	-initrd "$tmp/initrd" -nic none
want_status 1
want_line '^bootinfo: protocol=linux64$'
want_line '^bootinfo: cmdline=alpha=1 beta=two'
want_line '^bootinfo: e820 0x100000 0x[0-9a-f]+ 1$'
want_line "^bootinfo: initrd 0x[0-9a-f]+ $initrd_size$"
want_line "^bootinfo: initrd-fnv $initrd_fnv$"
done_case

run fault-pf fault.elf 'kind=pf'
want_status $((((32 + 14) << 1) | 1))
want_line '^guest: exception 14 #PF cpu=0 rip=0x[0-9a-f]+ err=0x[0-9a-f]+ cr2=0x10000000000 '
done_case

run fault-ud fault.elf 'kind=ud'
want_status $((((32 + 6) << 1) | 1))
want_line '^guest: exception 6 #UD '
done_case

# virtio guests: QEMU's own modern virtio-pci devices (disable-legacy=on)
# on the pc machine, whose PCI is at 0xcf8 and whose SeaBIOS boots a PVH
# ELF; SeaBIOS assigns the BARs, pci=reassign makes the guest do it.
# Two vCPUs (the guests use one): with a single vCPU TCG leaves out the
# guest's fences, so the driver's mfence between publishing the avail index
# and reading avail_event (virtio 1.2 2.7.13.4) does not order them against
# QEMU's device thread, and now and then a needed kick is skipped and the
# guest waits forever (seen: about one blktest bench=1 run in ten).
vio() {
	machine=pc run "$@" -nic none -vga none -smp 2
}

vio rngtest rngtest.elf 'rounds=2' -device virtio-rng-pci,disable-legacy=on
want_status 1
want_line '^rngtest: features 0x1[0-9a-f]{8} msix on '
want_count '^rngtest: ok 4096 bytes ' 2
done_case

vio rngtest-reassign-wait rngtest.elf \
	'rounds=1 bytes=8192 pci=reassign irq=wait event_idx=0 indirect=0' \
	-device virtio-rng-pci,disable-legacy=on
want_status 1
want_line '^rngtest: features 0x100000000 msix on common 0xe[0-9a-f]{7}$'
want_line '^rngtest: ok 8192 bytes .* [1-9][0-9]* irqs\)$'
done_case

# A descriptor loop must put the device into NEEDS_RESET and the driver
# must see it. (QEMU takes a buffer at 1 TiB as unassigned memory, and
# hangs on a 4 GiB one, so only inject=loop is checked here.)
vio rngtest-inject-loop rngtest.elf 'inject=loop' \
	-device virtio-rng-pci,disable-legacy=on
want_status 1
want_line '^rngtest: NEEDS_RESET after inject=loop$'
done_case

# INTx through the IOAPIC instead of MSI-X.
vio rngtest-intx rngtest.elf 'bytes=65536 irq=intx' \
	-device virtio-rng-pci,disable-legacy=on
want_status 1
want_line '^rngtest: features 0x130000000 msix off '
want_line '^rngtest: ok 65536 bytes .* [1-9][0-9]* irqs\)$'
done_case

truncate -s 8M "$tmp/disk.img"
blk="-drive file=$tmp/disk.img,format=raw,if=none,id=d0 -device"
blk_dev=virtio-blk-pci,disable-legacy=on,drive=d0,serial=stasis-disk-0

# shellcheck disable=SC2086 # $blk is several words on purpose
vio blktest blktest.elf 'passes=3 seed=5' $blk "$blk_dev"
want_status 1
want_line '^blktest: capacity 16384 sectors, .* disk 0, testing 2048 sectors from 0, msix on$'
want_line '^blktest: id "stasis-disk-0"$'
want_line '^blktest: discard ok \(8 sectors at [0-9]+\)$'
want_count '^blktest: pass [123] ok \(2048 sectors\)$' 3
no_line CORRUPT
done_case

# Chained (not indirect) descriptors, no event index, interrupts, BARs
# placed by the guest; odd request sizes reaching the end of the disk.
# shellcheck disable=SC2086
vio blktest-plain blktest.elf \
	'passes=2 seed=9 start=16000 sectors=0 per_req=7 depth=5 indirect=0 event_idx=0 irq=wait pci=reassign' \
	$blk "$blk_dev"
want_status 1
want_line '^blktest: .* testing 384 sectors from 16000, msix on$'
want_line '^blktest: pass 2 ok \(384 sectors\)$'
want_line '^blktest: done, .* [1-9][0-9]* irqs$'
done_case

# shellcheck disable=SC2086
vio blktest-intx blktest.elf 'passes=1 sectors=512 irq=intx' $blk "$blk_dev"
want_status 1
want_line '^blktest: .* msix off$'
want_line '^blktest: pass 1 ok \(512 sectors\)$'
want_line '^blktest: done, .* [1-9][0-9]* irqs$'
done_case

# The checker itself: a replayed old write must be reported.
# shellcheck disable=SC2086
vio blktest-inject blktest.elf 'passes=3 inject=stale' $blk "$blk_dev"
want_status 13
want_line '^blktest: pass 1 ok'
want_line '^blktest: CORRUPT sector 1024 pass 2 word 2: expected gen 2, disk has sector 1024 gen 1 seed 1 \(lost write\)$'
done_case

# The timing mode bench/virtio.sh uses: every phase reports, none is empty.
# shellcheck disable=SC2086
vio blktest-bench blktest.elf 'bench=1 sectors=4096 per_req=64 bench_ms=200' \
	$blk "$blk_dev"
want_status 1
want_line '^blktest: bench 4096 sectors from 0, 64 per request, depth 16, tsc [1-9][0-9]* Hz$'
want_line '^blktest: bench seq_write bytes=2097152 us=[1-9][0-9]* mb_s=[0-9]+$'
want_line '^blktest: bench seq_read bytes=2097152 us=[1-9][0-9]* mb_s=[0-9]+$'
want_line '^blktest: bench rand_read ops=[1-9][0-9]* us=[1-9][0-9]* iops=[0-9]+$'
want_line '^blktest: bench rand_write ops=[1-9][0-9]* us=[1-9][0-9]* iops=[0-9]+$'
want_line '^blktest: bench done, '
no_line 'pass 1'
done_case

# disk=I takes the I-th virtio-blk function in slot order: here the
# second, smaller disk. There is no third.
truncate -s 2M "$tmp/disk1.img"
blk1="-drive file=$tmp/disk1.img,format=raw,if=none,id=d1 -device"
blk1_dev=virtio-blk-pci,disable-legacy=on,drive=d1,serial=stasis-disk-1
# shellcheck disable=SC2086
vio blktest-disk1 blktest.elf 'passes=1 disk=1' $blk "$blk_dev" $blk1 "$blk1_dev"
want_status 1
want_line '^blktest: capacity 4096 sectors, .* disk 1, testing 2048 sectors from 0, msix on$'
want_line '^blktest: id "stasis-disk-1"$'
want_line '^blktest: pass 1 ok \(2048 sectors\)$'
done_case

# shellcheck disable=SC2086
vio blktest-nodisk blktest.elf 'disk=2' $blk "$blk_dev" $blk1 "$blk1_dev"
want_status 3
want_line '^blktest: ERROR no usable virtio-blk disk 2$'
done_case

# consoletest: this script is the console's other end, over a TCP socket:
# it waits for two lines, sends one and wants it echoed, then sends quit.
name=consoletest
out=$tmp/$name.out
problems=
port=$((20000 + RANDOM % 20000))
timeout "$limit" "$qemu" -M pc -accel tcg -cpu max -m 256M -smp 2 \
	-kernel "$guests/consoletest.elf" -nic none -vga none \
	-device isa-debug-exit,iobase=0xf4,iosize=4 -nographic -no-reboot \
	-append 'interval_ms=100' \
	-chardev "socket,id=c0,host=127.0.0.1,port=$port,server=on,wait=off" \
	-device virtio-serial-pci,disable-legacy=on \
	-device virtconsole,chardev=c0 </dev/null >"$out" 2>"$tmp/$name.err" &
qemu_pid=$!
connected=
for _ in $(seq 50); do
	if exec 3<>"/dev/tcp/127.0.0.1/$port"; then
		connected=1
		break
	fi
	sleep 0.2
done 2>/dev/null
lines=0
echoed=
if [ -n "$connected" ]; then
	while IFS= read -r -t 20 l <&3; do
		case $l in "consoletest: line "*) lines=$((lines + 1)) ;; esac
		[ "$lines" -ge 2 ] && break
	done
	printf 'ping-stasis-42\n' >&3
	while IFS= read -r -t 20 l <&3; do
		[ "$l" = ping-stasis-42 ] && echoed=1 && break
	done
	printf 'quit\n' >&3
	exec 3<&-
fi
wait "$qemu_pid"
status=$?
[ -n "$connected" ] || fail "could not connect to the console socket"
[ "$lines" -ge 2 ] || fail "read $lines console lines, want 2"
[ -n "$echoed" ] || fail "the line sent was not echoed"
want_status 1
want_line '^consoletest: wrote line 2$'
want_line '^consoletest: got "ping-stasis-42"$'
want_line '^consoletest: got "quit"$'
done_case

# nettest: two QEMU instances joined by a pair of UNIX datagram sockets
# (-netdev dgram), as stasis's rootless backend joins two VMs.
# net_pair NAME ARGS_A ARGS_B: sets out (role a) and out_b, status and
# status_b.
net_pair() {
	name=$1
	out=$tmp/$name-a.out
	out_b=$tmp/$name-b.out
	problems=
	local role peer mac args
	for role in a b; do
		if [ $role = a ]; then
			peer=b mac=01 args=$2
		else
			peer=a mac=02 args=$3
		fi
		timeout "$limit" "$qemu" -M pc -accel tcg -cpu max -m 256M -smp 2 \
			-kernel "$guests/nettest.elf" -vga none -nographic \
			-device isa-debug-exit,iobase=0xf4,iosize=4 -no-reboot \
			-append "role=$role $args" -netdev "dgram,id=n0,local.type=unix,local.path=$tmp/$name-$role.sock,remote.type=unix,remote.path=$tmp/$name-$peer.sock" \
			-device "virtio-net-pci,disable-legacy=on,netdev=n0,mac=52:54:00:00:00:$mac" \
			</dev/null >"$tmp/$name-$role.out" 2>"$tmp/$name-$role.err" &
		eval "pid_$role=\$!"
	done
	# shellcheck disable=SC2154 # set by the eval above
	wait "$pid_a"
	status=$?
	# shellcheck disable=SC2154
	wait "$pid_b"
	status_b=$?
}

net_pair nettest 'count=2000' 'count=2000'
want_status 1
[ "$status_b" = 1 ] || fail "role b status $status_b, want 1"
want_line '^nettest: role a mac 52:54:00:00:00:01 features 0x130000020 '
want_line '^nettest: done, 2000 frames each way, 0 others'
grep -q '^nettest: done, 2000 frames each way' "$out_b" ||
	fail "role b did not finish"
no_line 'LOST|DUP|BAD'
no_line 'LOST|DUP|BAD' "$out_b"
done_case

net_pair nettest-plain \
	'count=1000 frame=1514 window=8 indirect=0 event_idx=0 pci=reassign' \
	'count=1000 frame=60 window=1'
want_status 1
[ "$status_b" = 1 ] || fail "role b status $status_b, want 1"
want_line '^nettest: role a .* features 0x100000020 window 8 frame 1514 '
want_line '^nettest: done, 1000 frames each way'
no_line 'LOST|DUP|BAD'
grep -q '^nettest: done, 1000 frames each way' "$out_b" ||
	fail "role b did not finish"
no_line 'LOST|DUP|BAD' "$out_b"
done_case

# The checker: a frame sent twice must be reported by the receiver.
net_pair nettest-inject 'count=300 inject=dup stall_ms=2000' \
	'count=300 stall_ms=2000'
# Role a sent the duplicate; the frames it got were right.
no_line 'LOST|DUP|BAD'
out=$out_b
status=$status_b
want_status 15
want_line '^nettest: DUP frame: expected 51 got 50 '
done_case

# netmig against QEMU's virtio-net, its control queue included, with the
# migration tests' peer (tests/tools/net_peer.py) at the other end of a
# datagram socket: every frame it sent arrives once, in order.
name=netmig
out=$tmp/$name.out
problems=
python3 "$(dirname "$0")/../tests/tools/net_peer.py" "$tmp/netmig-sw" \
	"$tmp/netmig-sw.log" &
peer_pid=$!
for _ in $(seq 50); do
	[ -S "$tmp/netmig-sw" ] && break
	sleep 0.1
done
timeout "$limit" "$qemu" -M pc -accel tcg -cpu max -m 256M -smp 2 \
	-kernel "$guests/netmig.elf" -vga none -nographic \
	-device isa-debug-exit,iobase=0xf4,iosize=4 -no-reboot \
	-append "count=1000 pps=500 smp=1" \
	-netdev "dgram,id=n0,local.type=unix,local.path=$tmp/netmig.sock,remote.type=unix,remote.path=$tmp/netmig-sw" \
	-device "virtio-net-pci,disable-legacy=on,netdev=n0,mac=52:54:00:00:00:09" \
	</dev/null >"$out" 2>"$tmp/$name.err"
status=$?
kill "$peer_pid" 2>/dev/null
wait "$peer_pid" 2>/dev/null
want_status 1
want_line '^netmig: mac 52:54:00:00:00:09 features 0x130230020 '
want_line '^netmig: control queue: class 0xff ack 1$'
want_line '^netmig: done, 1000 frames sent, [1-9][0-9]* received'
no_line 'DUP|BAD|ERROR|MISMATCH'
awk '$1 == "data" { if ($3 != ++n) exit 1 } END { exit n != 1000 }' \
	"$tmp/netmig-sw.log" || fail "the peer did not get frames 1 to 1000 in order"
done_case

# The runtime must not contain what ring-0 emulation rejects, nor any
# x87/SSE/AVX register use (ring 0 saves no vector state).
name=runtime-instructions
out=$tmp/runtime.dis
problems=
if objdump -d "$guests/libguest-runtime.a" >"$out" 2>/dev/null; then
	no_line '[[:space:]](xsave|xrstor|fxsave|fxrstor|cmpxchg16b|int3)'
	no_line '%(xmm|ymm|zmm|st|k[0-7]\b)'
else
	fail "objdump failed"
fi
done_case

# Ring 3 runs at IOPL 0 on every host: no guest's ring-3 code may use
# int n or an IOPL-sensitive instruction the #GP handler does not carry
# out. The checker must also catch them: a made-up image with each.
name=ring3-instructions
problems=
out=$tmp/ring3.out
"$(dirname "$0")/tools/check-ring3.sh" "$guests"/*.elf >"$out" 2>&1 ||
	fail "$(head -n 5 "$out" | tr '\n' ' ')"
cat >"$tmp/bad.S" <<'EOF_S'
	.text
	.globl _start, guest_ring0_text_end
_start:	int $0x80
guest_ring0_text_end:
	sti
	cli
	hlt
	inb $0x60, %al
	int3
	int $0x80
	int1
	popfq
	iretq
EOF_S
if cc -c "$tmp/bad.S" -o "$tmp/bad.o" &&
	ld -Ttext=0x100000 -e _start "$tmp/bad.o" -o "$tmp/bad.elf"; then
	"$(dirname "$0")/tools/check-ring3.sh" "$tmp/bad.elf" >"$out" 2>&1
	[ "$(grep -c 'ring-3 code at' "$out")" = 4 ] ||
		fail "checker found $(grep -c 'ring-3 code at' "$out") of 4: $(cat "$out")"
	for insn in 'int +\$0x80' int1 popf iretq; do
		grep -Eq "<guest_ring0_text_end>: $insn" "$out" || fail "checker missed $insn"
	done
else
	fail "cannot build the checker's test image"
fi
done_case

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
