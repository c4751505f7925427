# The disk identity at restore, on one host: a 64 MiB image changed past
# its first MiB with its mtime put back, a `cp --preserve=all` copy
# written back over it, and a copy renamed over its path are each refused
# with one line naming the disk; a snapshot whose disk record is in the
# older version 1 still restores, checked on size, mtime and first MiB as
# before. disk_identity_hash.sh covers verify=hash and block devices.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
D=$WORK/disk.img

truncate -s 64M "$D"
printf 'stasis disk identity\n' | dd of="$D" conv=notrunc status=none
# The counter guest never touches the disk: only this script changes it,
# and the VM keeps running so that each case gets a fresh snapshot.
start_stasis "$WORK/vm" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/vm" --mem 32M --disk "$D"
wait_for_socket "$S"
counter_reaches "$WORK/vm" 3 60
. "$(dirname "$0")/../disk_identity_lib.sh"
snap s1
accepted s1
# 4 KiB written at 32 MiB, the modification time put back as it was.
mtime=$(stat -c %y "$D")
dd if=/dev/urandom of="$D" bs=4k seek=8192 count=1 conv=notrunc status=none
touch -d "$mtime" "$D"
[[ $(stat -c %y "$D") == "$mtime" ]] || fail "touch -d did not put the mtime back"
refused s1 "write at 32 MiB, mtime put back" "disk\.img changed since the snapshot: its status changed .*ctime"

# A copy with every time preserved, written back over the image.
snap s2
cp --preserve=all "$D" "$WORK/copy.img"
cp --preserve=all "$WORK/copy.img" "$D"
refused s2 "cp --preserve=all over it" "disk\.img changed since the snapshot: its status changed"

# A snapshot as a stasis before the device and inode identity wrote it
# (virtio-blk table version 1: size, mtime, first MiB) still restores,
# checked as it was then: so it misses the write at 32 MiB with the mtime
# put back, which the same snapshot in version 2 refuses.
snap s4
"$BUILD/tests/tools/snapedit" "$WORK/s4.snap" "$WORK/v1.snap" --blk-v1 1 || fail "snapedit --blk-v1"
accepted v1
mtime=$(stat -c %y "$D")
dd if=/dev/urandom of="$D" bs=4k seek=8192 count=1 conv=notrunc status=none
touch -d "$mtime" "$D"
accepted v1
refused s4 "write at 32 MiB, version 2" "disk\.img changed since the snapshot: its status changed"
touch "$D"
refused v1 "a version 1 record, mtime changed" "disk\.img changed since the snapshot: modified at"

# A copy renamed over the path: another inode, the same bytes and times.
# Last, since the running VM keeps the old file open, so its later
# snapshots would describe that one.
snap s3
cp --preserve=all "$D" "$WORK/copy.img"
mv "$WORK/copy.img" "$D"
refused s3 "a copy renamed over the path" "disk\.img changed since the snapshot: another file"
# Vouched for: accepted.
accepted s3 --disk "$D"

ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
