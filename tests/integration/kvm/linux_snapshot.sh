#!/usr/bin/env bash
# A real kernel snapshotted early in its boot and restored in a new process
# carries on exactly as a boot that was never interrupted. Run A boots
# Debian's vmlinux (PVH), is paused as soon as the banner shows and
# snapshotted (--then exit); run C boots again from scratch; run B restores
# A's file (default --clock advance). A's console followed by B's must read
# like C's, line for line, from the first line to K lines past the snapshot
# point (the line the snapshot cut in two included), once printk timestamps
# and the few messages that measure time are masked.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=tests/integration/kvm/linux_kernel.sh
source "$(dirname "$0")/linux_kernel.sh"

# Lines compared past the snapshot point. Where KVM emulates guest ring 0,
# Debian's kernel stops about 50 lines after its banner (docs/linux.md);
# stay well inside that.
K=20
# Where everything runs natively the kernel races to its last message (the
# panic for want of a root file system) in about a second: then C ends
# there, and so must B.
END_RE='end Kernel panic'
vmlinux=$(linux_image vmlinux)
args=(--kernel "$vmlinux" --mem 256M --cmdline "$LINUX_CMDLINE")
sock=$WORK/api.sock
snap=$WORK/linux.snap

# A: boot; pause as soon as the banner shows (polled every 10 ms, to catch
# fast hosts early in the boot); snapshot and exit.
start=$SECONDS
linux_boot "$WORK/a" "${args[@]}" --api-socket "$sock"
wait_for_socket "$sock"
LINUX_POLL=0.01 linux_wait "$VM_PID" "$WORK/a" 'Linux version [0-9]' 300
ctl "$sock" pause >/dev/null
n=$(wc -l <"$WORK/a")
ctl "$sock" snapshot "$snap" --then exit >/dev/null
wait_exit "$VM_PID" 120
expect_status "$RC" 0 "run A after snapshot --then exit"
[[ $(wc -l <"$WORK/a") == "$n" ]] || fail "run A printed after it was paused"
note "A: snapshot after $((SECONDS - start)) s, after line $n ($(stat -c %s "$snap") bytes)"

# C: the reference, never interrupted, to K lines past the snapshot point.
c_done() {
	linux_has_lines "$WORK/c" $((n + K)) || grep -q "$END_RE" "$WORK/c"
}
start=$SECONDS
linux_boot "$WORK/c" "${args[@]}"
linux_wait_until "$VM_PID" "$WORK/c" "$((n + K)) lines" 600 c_done
linux_stop "$VM_PID" "$WORK/c"
lines=$(wc -l <"$WORK/c")
target=$((lines < n + K ? lines : n + K))
((target > n)) ||
	fail "the snapshot came after the kernel's last message (line $n of $lines): nothing left to compare"
note "C: $target lines after $((SECONDS - start)) s"

# B: the restored kernel prints the rest, up to the same line.
start=$SECONDS
: >"$WORK/b"
start_stasis "$WORK/b" restore "$snap" --serial "file:$WORK/b"
linux_wait_lines "$VM_PID" "$WORK/b" $((target - n)) 300
linux_stop "$VM_PID" "$WORK/b"
note "B: $((target - n)) lines $((SECONDS - start)) s after the restore"

# normalise FILE: its first target messages without timestamps, with the
# numbers that measure time masked (the scheduler clock's offset when
# kvm-clock starts, elapsed milliseconds) and without the audit subsystem's
# first message, which its own thread prints at a time of its choosing.
# Dropping it may leave one side a line shorter: compare the common part.
normalise() {
	linux_serial "$1" | head -n "$target" | sed -E \
		-e 's/(sched offset of )[0-9]+/\1N/' \
		-e 's/ in [0-9]+ms$/ in Nms/' \
		-e '/^audit: type=2000 /d'
}
cat "$WORK/a" "$WORK/b" >"$WORK/ab"
normalise "$WORK/ab" >"$WORK/ab.all"
normalise "$WORK/c" >"$WORK/c.all"
ab_lines=$(wc -l <"$WORK/ab.all")
c_lines=$(wc -l <"$WORK/c.all")
common=$((ab_lines < c_lines ? ab_lines : c_lines))
# (Files, not <(...): the nested test VM has no /dev/fd.)
head -n "$common" "$WORK/ab.all" >"$WORK/ab.txt"
head -n "$common" "$WORK/c.all" >"$WORK/c.txt"
diff -u "$WORK/c.txt" "$WORK/ab.txt" >"$WORK/diff" ||
	fail "the restored boot (A then B, +++) differs from an uninterrupted one (C, ---); the snapshot came after line $n:
$(cat "$WORK/diff")"
