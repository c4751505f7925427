#!/usr/bin/env bash
# Debian's stock bzImage, entered through the 64-bit boot protocol: its
# decompressor runs, reads our command line from the zero page and says so
# ("KASLR disabled: 'nokaslr' on cmdline."). That is all this test waits
# for: where KVM emulates guest ring 0 the decompression itself would take
# ~35 minutes (slow_linux_bzimage.sh goes on to the kernel's banner).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=tests/integration/kvm/linux_kernel.sh
source "$(dirname "$0")/linux_kernel.sh"

vmlinuz=$(linux_image vmlinuz)
out=$WORK/serial
start=$SECONDS
linux_boot "$out" --kernel "$vmlinuz" --mem 512M --cmdline "$LINUX_CMDLINE"
linux_wait "$VM_PID" "$out" "KASLR disabled: 'nokaslr' on cmdline\." 120
linux_stop "$VM_PID" "$out"
note "decompressor's line after $((SECONDS - start)) s"
