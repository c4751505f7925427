# virtio devices across snapshot and restore in a fresh process: a busy
# blktest and a busy nettest pair carry on without a reset, losing and
# repeating nothing; a disk changed after the snapshot is refused at
# restore unless --disk vouches for it.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock

# restore_blk OUT [restore options...]: restores blk.snap, wants two more
# passes than before the snapshot, clean, and shuts the VM down.
restore_blk() {
	local out=$1 want
	shift
	want=$(($(blk_last_pass "$WORK/blk.a") + 2))
	rm -f "$S"
	start_stasis "$out" restore "$WORK/blk.snap" --api-socket "$S" \
		--serial "file:$out" "$@"
	wait_for_socket "$S"
	wait_for_line "$out" "^blktest: pass $want ok" 120
	ctl "$S" shutdown >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "restored blktest ($out)"
	blk_clean "$out" restored
	blk_passes_continue "$WORK/blk.a" "$out"
}

# refused OUT [restore options...]: the restore fails with one line.
refused() {
	local out=$1 rc=0
	shift
	timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/blk.snap" \
		--serial "file:$out" "$@" </dev/null >/dev/null 2>"$out.err" || rc=$?
	[[ $rc != 0 && $rc != 137 ]] || fail "restore of a changed disk: status $rc"
	[[ $(wc -l <"$out.err") == 1 ]] || fail "restore error is not one line: $(cat "$out.err")"
	grep -q "disk.img" "$out.err" || fail "the error does not name the disk: $(cat "$out.err")"
	[[ ! -s $out ]] || fail "the refused VM ran: $(head -n 2 "$out")"
}

# --- virtio-blk: 16 requests in flight at any time, woken by MSI-X.
blk_snapshot "$WORK/blk.a" "$WORK/blk.snap"
cp --preserve=timestamps "$WORK/disk.img" "$WORK/disk.orig"

restore_blk "$WORK/blk.b"

# The restored VM wrote the disk: the snapshot no longer matches it.
refused "$WORK/blk.c"
grep -q "its first MiB differs" "$WORK/blk.c.err" || fail "blk.c: $(cat "$WORK/blk.c.err")"
# Back to the snapshot's image, then a byte changed beyond the tested
# sectors and beyond the hashed first MiB: the modification time tells.
cp --preserve=timestamps "$WORK/disk.orig" "$WORK/disk.img"
printf 'X' | dd of="$WORK/disk.img" bs=1 seek=$((3 << 20)) conv=notrunc status=none
refused "$WORK/blk.d"
grep -q "changed since the snapshot: modified at" "$WORK/blk.d.err" || fail "the error does not say the time differs: $(cat "$WORK/blk.d.err")"
# --disk vouches for it: the guest carries on, its sectors intact.
restore_blk "$WORK/blk.e" --disk "$WORK/disk.img"

declare -A pid
# --- virtio-net: a nettest pair, frames in flight both ways.
# last_recv FILE: frames received in order, from the last report.
last_recv() {
	sed -n 's/^nettest: sent [0-9]* recv \([0-9][0-9]*\) ok$/\1/p' "$1" | tail -n 1
}

# recv_at_least FILE N: the last report has received N frames or more.
recv_at_least() {
	local v
	v=$(last_recv "$1")
	[[ -n $v && $v -ge $2 ]]
}

# recv_reaches FILE N SECONDS
recv_reaches() {
	wait_until "$3" recv_at_least "$1" "$2" ||
		fail "nettest in $1 stuck at recv '$(last_recv "$1")', wanted $2"
}

net_clean() {
	grep -Eq '^nettest: (LOST|DUP|BAD|STALL|ERROR)' "$1" &&
		fail "$1: $(grep -E '^nettest: (LOST|DUP|BAD|STALL|ERROR)' "$1")"
	grep -q '^guest: ' "$1" && fail "$1: $(grep '^guest: ' "$1")"
	return 0
}

for r in a b; do
	p=$([[ $r == a ]] && echo b || echo a)
	start_stasis "$WORK/net$r.1" run --kernel "$GUESTS/nettest.elf" --debug-exit \
		--api-socket "$WORK/$r.api" --serial "file:$WORK/net$r.1" \
		--net "unix=$WORK/$r.sock,peer=$WORK/$p.sock" \
		--cmdline "role=$r stall_ms=$(scaled 60000)"
	pid[$r]=$VM_PID
done
wait_for_socket "$WORK/a.api"
wait_for_socket "$WORK/b.api"
recv_reaches "$WORK/neta.1" 200 120
recv_reaches "$WORK/netb.1" 200 60

# One side in place: A stops for its snapshot while B keeps sending.
ctl "$WORK/a.api" snapshot "$WORK/inplace.snap" --then resume >/dev/null
v=$(last_recv "$WORK/netb.1")
recv_reaches "$WORK/netb.1" $((v + 200)) 120
v=$(last_recv "$WORK/neta.1")
recv_reaches "$WORK/neta.1" $((v + 200)) 60

# Both sides in fresh processes: B paused first, so nothing more leaves
# it; then each is saved and exits.
ctl "$WORK/b.api" pause >/dev/null
ctl "$WORK/a.api" snapshot "$WORK/a.snap" --then exit >/dev/null
wait_exit "${pid[a]}" 60
expect_status "$RC" 0 "nettest a after snapshot --then exit"
ctl "$WORK/b.api" snapshot "$WORK/b.snap" --then exit >/dev/null
wait_exit "${pid[b]}" 60
expect_status "$RC" 0 "nettest b after snapshot --then exit"
net_clean "$WORK/neta.1"
net_clean "$WORK/netb.1"

# Both restored paused, then resumed: neither sends into a socket that
# is not there yet.
for r in a b; do
	rm -f "$WORK/$r.api"
	start_stasis "$WORK/net$r.2" restore "$WORK/$r.snap" --paused \
		--api-socket "$WORK/$r.api" --serial "file:$WORK/net$r.2"
	pid[$r]=$VM_PID
	wait_for_socket "$WORK/$r.api"
done
ctl "$WORK/a.api" resume >/dev/null
ctl "$WORK/b.api" resume >/dev/null
for r in a b; do
	v=$(last_recv "$WORK/net$r.1")
	recv_reaches "$WORK/net$r.2" $((v + 300)) 120
done
for r in a b; do
	ctl "$WORK/$r.api" shutdown >/dev/null
	wait_exit "${pid[$r]}" 60
	expect_status "$RC" 0 "restored nettest $r"
	net_clean "$WORK/net$r.2"
	if grep -q '^nettest: start' "$WORK/net$r.2"; then
		fail "nettest $r started over"
	fi
done
