#!/usr/bin/env bash
# Debian's stock bzImage boots through the 64-bit boot protocol to the
# kernel's banner, with the e820 map stasis put in the zero page. Slow where
# KVM emulates guest ring 0 (~35 minutes of decompression there), hence only
# with STASIS_SLOW_TESTS=1; a few seconds elsewhere.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=tests/integration/kvm/linux_kernel.sh
source "$(dirname "$0")/linux_kernel.sh"

vmlinuz=$(linux_image vmlinuz)
out=$WORK/serial
start=$SECONDS
linux_boot "$out" --kernel "$vmlinuz" --mem 512M --cmdline "$LINUX_CMDLINE"
linux_wait "$VM_PID" "$out" "KASLR disabled: 'nokaslr' on cmdline\." 120
note "decompressor's line after $((SECONDS - start)) s"
linux_wait "$VM_PID" "$out" 'Linux version [0-9]' 5400
note "banner after $((SECONDS - start)) s"
linux_wait "$VM_PID" "$out" 'Hypervisor detected: KVM' 600
linux_stop "$VM_PID" "$out"
linux_check_e820 "$out" 512
