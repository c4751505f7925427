# Lazy restores while they are still fetching: the snapshot file cut
# short, or changed in place, under a running lazy restore stops the VM
# with one line (status 2) before the guest sees a wrong byte; a file
# replaced by rename is harmless. Two vCPUs rewriting their memory, and
# virtio-blk requests in flight, while every chunk still has to come in
# by a fault, leave memory exactly as saved: a paused lazy restore saved
# again holds chunk for chunk the content of the file it came from, and
# the guests carry on checking their own.
#
# A working-set recording (--record-working-set) holds the background
# fill back until it ends: that is how these restores are kept fetching
# for as long as the test needs, on any host speed.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lazy_lib.sh"
S=$WORK/api.sock

# One memtest snapshot (no VM generation ID: it is the one thing a
# restore writes into guest memory).
M=$WORK/m.snap
memtest_snapshot "$WORK/a" "$M" --vmgenid off
last=$(last_pass "$WORK/a")
[[ -n $last ]] || fail "no whole pass line before the snapshot"
data=$(chunk_table data "$M")
[[ -n $data ]] || fail "no chunk data area in $M"
same_memory "$M" m-again

# held NAME: starts a paused lazy restore of $WORK/NAME.snap whose chunks
# all still have to be fetched.
held() {
	rm -f "$S"
	start_stasis "$WORK/$1" restore "$WORK/$1.snap" --paused "${HOLD[@]}" \
		--api-socket "$S" --serial "file:$WORK/$1"
	wait_for_socket "$S"
}
# stops_cleanly NAME WHAT: the restored guest, resumed, stops on its
# first fault with one line matching WHAT and status 2, having printed
# nothing wrong.
stops_cleanly() {
	# The VM may stop before its reply to the resume is sent.
	"$STASIS" ctl "$S" resume >/dev/null 2>&1 || true
	wait_exit "$VM_PID" 60
	expect_status "$RC" 2 "$1"
	[[ $(grep -c . "$WORK/$1.err") == 1 ]] || fail "$1: not one line: $(cat "$WORK/$1.err")"
	grep -Eq "$2" "$WORK/$1.err" || fail "$1: $(cat "$WORK/$1.err")"
	intact "$WORK/$1"
	! grep -q "pass $((last + 2)) ok" "$WORK/$1" || fail "$1: the guest passed a check it cannot have made"
}

# Cut short under the restore: the chunk data is gone.
cp "$M" "$WORK/cut.snap"
held cut
truncate -s "$data" "$WORK/cut.snap"
stops_cleanly cut "memory chunk [0-9]+ \(guest 0x[0-9a-f]+-0x[0-9a-f]+\) at file offset 0x[0-9a-f]+"

# Changed in place under the restore: every stored byte zeroed.
cp "$M" "$WORK/changed.snap"
held changed
size=$(stat -c %s "$M")
dd if=/dev/zero of="$WORK/changed.snap" bs=4096 seek=$((data / 4096)) \
	count=$(((size - data) / 4096 - 1)) conv=notrunc status=none
stops_cleanly changed "memory chunk [0-9]+ \(guest 0x[0-9a-f]+-0x[0-9a-f]+\) at file offset 0x[0-9a-f]+: checksum mismatch"
[[ $(stat -c %s "$WORK/changed.snap") == "$size" ]] || fail "changed: the file was resized"

# Replaced by rename under the restore: the restore keeps reading the
# file it opened.
cp "$M" "$WORK/renamed.snap"
held renamed
cp "$WORK/cut.snap" "$WORK/renamed.new"
mv "$WORK/renamed.new" "$WORK/renamed.snap"
ctl "$S" resume >/dev/null
# (The pass in progress at the snapshot may have had its line cut in two:
# the first whole line is the one after it.)
wait_for_line "$WORK/renamed" "^memtest: pass $((last + 2)) ok" 120
"$STASIS" ctl "$S" working-set >/dev/null
wait_for_line "$WORK/renamed" "^memtest: pass $((last + 3)) ok" 120
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "renamed"
intact "$WORK/renamed"

# Two vCPUs, each rewriting and checking its half of 64 MiB pass after
# pass: their writes land in chunks not fetched yet, from both at once.
start_stasis "$WORK/smp" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/smp" --mem 128M --cpus 2 \
	--vmgenid off --cmdline "mib=64 smp=1"
wait_for_socket "$S"
wait_for_line "$WORK/smp" "memtest: pass 2 ok" 120
ctl "$S" snapshot "$WORK/smp.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
intact "$WORK/smp"
same_memory "$WORK/smp.snap" smp-again
last=$(last_pass "$WORK/smp")
for how in held default; do
	rm -f "$S"
	if [[ $how == held ]]; then
		start_stasis "$WORK/smp-$how" restore "$WORK/smp.snap" "${HOLD[@]}" \
			--api-socket "$S" --serial "file:$WORK/smp-$how"
	else
		start_stasis "$WORK/smp-$how" restore "$WORK/smp.snap" \
			--memory ondemand --api-socket "$S" --serial "file:$WORK/smp-$how"
	fi
	wait_for_socket "$S"
	wait_for_line "$WORK/smp-$how" "^memtest: pass $((last + 2)) ok \(64 MiB, cpus=2" 120
	ctl "$S" shutdown >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "smp $how"
	intact "$WORK/smp-$how"
	grep -q "ERROR" "$WORK/smp-$how" && fail "smp $how: $(grep ERROR "$WORK/smp-$how")"
done

# virtio-blk with 16 requests in flight at the snapshot: the device
# worker completes them into guest buffers still to be fetched.
blk_snapshot "$WORK/blk.a" "$WORK/blk.snap"
want=$(($(blk_last_pass "$WORK/blk.a") + 2))
rm -f "$S"
start_stasis "$WORK/blk.b" restore "$WORK/blk.snap" "${HOLD[@]}" \
	--api-socket "$S" --serial "file:$WORK/blk.b"
wait_for_socket "$S"
wait_for_line "$WORK/blk.b" "^blktest: pass $want ok" 120
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "blktest, held lazy restore"
blk_clean "$WORK/blk.b" restored
blk_passes_continue "$WORK/blk.a" "$WORK/blk.b"
