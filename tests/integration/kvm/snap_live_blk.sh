# A live snapshot with virtio-blk I/O in flight (blktest, 16 requests at
# any time, each sector's generation also kept in guest RAM): the disk
# requests wait while memory is written, so the disk left behind by
# --then exit is the one of the snapshot's instant; the restore accepts
# it (unchanged identity) and blktest carries on with no sector older or
# newer than its RAM says, from the pass it was in at the instant, with no
# pass lost or repeated after it. A disk written after
# the instant would be refused as changed, or show as CORRUPT.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock

truncate -s 4M "$WORK/disk.img"
start_stasis "$WORK/blk.a" run --kernel "$GUESTS/blktest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/blk.a" --mem 256M --cpus 2 \
	--disk "$WORK/disk.img" --cmdline "sectors=1024 seed=7 irq=wait"
wait_for_socket "$S"
wait_for_line "$WORK/blk.a" "^blktest: pass 2 ok" 120
# The snapshot's instant is somewhere between the request and the reply;
# passes the guest ends meanwhile are ended again after the restore.
at_request=$(blk_last_pass "$WORK/blk.a")
reply=$(ctl "$S" snapshot "$WORK/blk.snap" --live --then exit --json)
[[ $reply == *'"live": true'* ]] || fail "snapshot --live: $reply"
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "blktest after snapshot --live --then exit"
blk_clean "$WORK/blk.a"

want=$(($(blk_last_pass "$WORK/blk.a") + 2))
rm -f "$S"
start_stasis "$WORK/blk.b" restore "$WORK/blk.snap" --api-socket "$S" \
	--serial "file:$WORK/blk.b"
restored_done() {
	has_line "$WORK/blk.b" "^blktest: pass $want ok" || pid_exited "$VM_PID"
}
wait_until 120 restored_done || fail "restored blktest: no pass $want: $(tail -n 2 "$WORK/blk.b" | tr '\n' '|')"
pid_exited "$VM_PID" && fail "the restore ended: $(cat "$WORK/blk.b.err" | head -n 2) $(tail -n 2 "$WORK/blk.b" | tr '\n' '|')"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "restored blktest"
blk_clean "$WORK/blk.b" restored
# The restored guest's passes run on from the instant, one by one: the
# first ends the pass in progress then (or the next, when its line was
# being printed at the instant), and none is lost or repeated after it.
last_a=$(blk_last_pass "$WORK/blk.a")
sed -n 's/^blktest: pass \([0-9][0-9]*\) ok .*/\1/p' "$WORK/blk.b" >"$WORK/blk.b.passes"
first=$(head -n 1 "$WORK/blk.b.passes")
((first > at_request && first <= last_a + 2)) ||
	fail "restored blktest began with pass $first; the instant lies between passes $at_request and $last_a"
awk -v f="$first" '$1 != f + NR - 1 { print "pass " $1 " where pass " f + NR - 1 " was due"; bad = 1; exit }
	END { exit bad }' "$WORK/blk.b.passes" >"$WORK/blk.b.gap" ||
	fail "restored blktest: $(cat "$WORK/blk.b.gap")"

# While a live save runs, disk requests wait and the guest's memory goes
# on changing; after it (--then resume) the disk works again.
rm -f "$S"
start_stasis "$WORK/blk.c" run --kernel "$GUESTS/blktest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/blk.c" --mem 256M \
	--disk "$WORK/disk.img" --cmdline "sectors=1024 seed=9 irq=wait"
wait_for_socket "$S"
wait_for_line "$WORK/blk.c" "^blktest: pass 1 ok" 120
ctl "$S" snapshot "$WORK/blk2.snap" --live >/dev/null
n=$(blk_last_pass "$WORK/blk.c")
wait_for_line "$WORK/blk.c" "^blktest: pass $((n + 2)) ok" 120
expect_state "$S" running "after snapshot --live"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
blk_clean "$WORK/blk.c"
