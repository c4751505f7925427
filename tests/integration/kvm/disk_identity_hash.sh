# verify=hash and block devices at restore: a disk given with
# verify=hash (beside a plain one, blk0) is checked by content, so a plain
# copy renamed over its path restores, as does a copy at another path
# given to restore with verify=hash, and a byte changed at 48 MiB is
# refused; a block device (a loop device behind a link, where this host
# has loop devices) is told apart from another with the same bytes.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
D=$WORK/disk.img
H=$WORK/hashed.img

truncate -s 1M "$D"
truncate -s 64M "$H"
printf 'stasis hashed disk\n' | dd of="$H" conv=notrunc status=none
start_stasis "$WORK/vm" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/vm" --mem 32M \
	--disk "$D" --disk "$H,verify=hash"
wait_for_socket "$S"
counter_reaches "$WORK/vm" 3 60
. "$(dirname "$0")/../disk_identity_lib.sh"
snap s1
# The verify=hash disk: a plain copy (new inode and times, as on another
# host) renamed over its path passes on its content...
cp "$H" "$WORK/h2.img"
mv "$WORK/h2.img" "$H"
accepted s1
# ... and so does a copy at another path given to restore with verify=hash.
cp "$H" "$WORK/moved.img"
accepted s1 --disk "$WORK/moved.img,id=blk1,verify=hash"
# One byte changed at 48 MiB: refused, by content, there and at its path.
printf 'X' | dd of="$WORK/moved.img" bs=1 seek=$((48 << 20)) conv=notrunc status=none
err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/s1.snap" --serial none \
	--disk "$WORK/moved.img,id=blk1,verify=hash" 2>&1 >/dev/null </dev/null) && fail "a changed copy was accepted"
[[ $err == *"moved.img changed since the snapshot: its content hash differs"* ]] || fail "changed copy: $err"
printf 'X' | dd of="$H" bs=1 seek=$((48 << 20)) conv=notrunc status=none
refused s1 "hashed disk changed at 48 MiB" "hashed\.img changed since the snapshot: its content hash differs"

ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60

# A block device, where losetup can make one (root and the loop driver;
# the nested test VM has no loop driver: test_virtio_devices covers it on
# a host that has one). The disk is a link to the device, so that another
# device can be put at its path.
cp "$H" "$WORK/b1.img"
cp "$H" "$WORK/b2.img"
if L1=$(losetup -f --show "$WORK/b1.img" 2>/dev/null); then
	L2=$(losetup -f --show "$WORK/b2.img") || fail "a second loop device"
	trap 'losetup -d "$L1" "$L2"; cleanup' EXIT
	ln -s "$L1" "$WORK/bdev"
	rm -f "$S"
	start_stasis "$WORK/bd" run --kernel "$GUESTS/counter.elf" --debug-exit \
		--api-socket "$S" --serial "file:$WORK/bd" --mem 32M --disk "$WORK/bdev"
	wait_for_socket "$S"
	ctl "$S" snapshot "$WORK/bd.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	accepted bd
	# The same bytes and size on another device at the recorded path.
	ln -sfn "$L2" "$WORK/bdev"
	refused bd "another block device" "bdev changed since the snapshot: another block device"
else
	note "no loop device here: the block device case is left to test_virtio_devices"
fi
