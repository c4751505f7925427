#!/usr/bin/env bash
# A real kernel snapshotted early in its boot and restored in a new process
# carries on exactly as a boot that was never interrupted. Run A boots
# Debian's vmlinux (PVH), is paused as soon as the banner shows and
# snapshotted (--then exit); run B restores A's file (default --clock
# advance); run C boots again from scratch. A's console followed by B's
# must read like C's, line for line, from the first line to K lines past
# the snapshot point (the line the snapshot cut in two included), once
# printk timestamps and the few messages that measure time are masked.
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

# done_after FILE COUNT: FILE has COUNT lines, or the kernel's last message.
done_after() {
	linux_has_lines "$1" "$2" || grep -q "$END_RE" "$1"
}

min() {
	echo $(($1 < $2 ? $1 : $2))
}

# B: the restored kernel prints K more lines, right away: the longer it was
# suspended, the further its clocks jump, and a long jump may wake the
# kernel's lockup detectors once they run.
start=$SECONDS
: >"$WORK/b"
start_stasis "$WORK/b" restore "$snap" --serial "file:$WORK/b"
linux_wait_until "$VM_PID" "$WORK/b" "$K lines" 300 done_after "$WORK/b" "$K"
linux_stop "$VM_PID" "$WORK/b"
note "B: $(wc -l <"$WORK/b") lines $((SECONDS - start)) s after the restore"

# C: the reference, never interrupted, to K lines past the snapshot point.
start=$SECONDS
linux_boot "$WORK/c" "${args[@]}"
linux_wait_until "$VM_PID" "$WORK/c" "$((n + K)) lines" 600 done_after "$WORK/c" $((n + K))
linux_stop "$VM_PID" "$WORK/c"
note "C: $(wc -l <"$WORK/c") lines after $((SECONDS - start)) s"

cat "$WORK/a" "$WORK/b" >"$WORK/ab"
target=$(min $((n + K)) "$(min "$(wc -l <"$WORK/ab")" "$(wc -l <"$WORK/c")")")
((target > n)) ||
	fail "the snapshot came after the kernel's last message (line $n): nothing left to compare"

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
normalise "$WORK/ab" >"$WORK/ab.all"
normalise "$WORK/c" >"$WORK/c.all"
common=$(min "$(wc -l <"$WORK/ab.all")" "$(wc -l <"$WORK/c.all")")
# (Files, not <(...): the nested test VM has no /dev/fd.)
head -n "$common" "$WORK/ab.all" >"$WORK/ab.txt"
head -n "$common" "$WORK/c.all" >"$WORK/c.txt"
diff -u "$WORK/c.txt" "$WORK/ab.txt" >"$WORK/diff" ||
	fail "the restored boot (A then B, +++) differs from an uninterrupted one (C, ---); the snapshot came after line $n:
$(cat "$WORK/diff")"
