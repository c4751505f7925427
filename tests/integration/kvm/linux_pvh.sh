#!/usr/bin/env bash
# Debian's stock kernel, unpacked to vmlinux, boots through its PVH entry:
# it prints its banner, our command line, exactly the e820 map stasis built
# (for 512 MiB, and for 4 GiB, which adds RAM above the 4 GiB hole) and finds
# KVM. Only the first few hundred milliseconds of the boot are needed, which
# also holds where KVM emulates all guest ring-0 code (docs/linux.md).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=tests/integration/kvm/linux_kernel.sh
source "$(dirname "$0")/linux_kernel.sh"

vmlinux=$(linux_image vmlinux)

# boot_pvh MIB: boots with MIB MiB of RAM, checks the early messages.
boot_pvh() {
	local mib=$1 out=$WORK/serial-$1 start=$SECONDS
	linux_boot "$out" --kernel "$vmlinux" --mem "${mib}M" \
		--cmdline "$LINUX_CMDLINE"
	# Where KVM emulates ring 0 the banner takes ~35 s, the rest follows
	# within a few seconds.
	linux_wait "$VM_PID" "$out" 'Linux version [0-9]' 300
	note "${mib} MiB: banner after $((SECONDS - start)) s"
	linux_wait "$VM_PID" "$out" 'Hypervisor detected: KVM' 120
	linux_stop "$VM_PID" "$out"
	note "${mib} MiB: 'Hypervisor detected: KVM' after $((SECONDS - start)) s"

	# From a file, not `linux_serial | grep -q`: on a fast host the kernel
	# has printed far more by now, and grep -q leaving at its match would
	# fail the pipeline with SIGPIPE.
	linux_serial "$out" >"$out.txt"
	grep -qxF "Command line: $LINUX_CMDLINE" "$out.txt" ||
		fail "the kernel did not get the command line '$LINUX_CMDLINE': $(grep 'Command line' "$out.txt" || true)"
	linux_check_e820 "$out" "$mib"
}

boot_pvh 512
boot_pvh 4096
