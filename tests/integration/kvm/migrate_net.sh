# Migration with virtio-net I/O in flight, and the guest's announcement
# (VIRTIO_NET_F_GUEST_ANNOUNCE). netmig streams numbered frames to a test
# peer (tests/tools/net_peer.py) with its transmit queue full, and checks
# the numbered frames the peer streams back. With 1 and with 4 vCPUs:
# (the other 3 rewriting and checking memory of their own all the time),
# every frame the guest sent reaches the peer exactly once and in order
# across the switch (those still queued at the pause go out from the
# destination); received frames stay in order, none repeated or damaged;
# at the destination the guest gets the config interrupt with
# VIRTIO_NET_S_ANNOUNCE, its RARP frame arrives at the destination's
# backend, and after its ACK the bit is clear. A guest that did not
# accept the features is never asked; a restore from a file does not
# announce. And blktest with 4 vCPUs and requests in flight (the 1 vCPU
# case is migrate_guests.sh's).
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"

# start_peer NAME: the network at $WORK/NAME.sw, its log $WORK/NAME.log.
start_peer() {
	start_net_peer "$WORK/$1.sw" "$WORK/$1.log"
}

# netmig_field OUT FIELD: the guest's last reported count of frames sent
# (FIELD 1) or received (2).
netmig_field() {
	local f
	f=$(netmig_frames "$1")
	[[ -n $f ]] || return 0
	if (($2 == 1)); then echo "${f% *}"; else echo "${f#* }"; fi
}

# field_at_least OUT FIELD N
field_at_least() {
	local v
	v=$(netmig_field "$1" "$2")
	((${v:-0} >= $3))
}

# progresses OUT FIELD WHAT: the count (1 sent, 2 received) moves on by
# 100 from now.
progresses() {
	local v
	v=$(netmig_field "$1" "$2")
	wait_until 60 field_at_least "$1" "$2" $((${v:-0} + 100)) ||
		fail "$3: netmig count $2 stuck at ${v:-0}: $(tail -n 2 "$1" | tr '\n' '|')"
}

# net_clean OUT: no failure line.
net_clean() {
	grep -Eq '^(netmig: (DUP|BAD|ERROR|MISMATCH)|guest: )' "$1" &&
		fail "$1: $(grep -E '^(netmig: (DUP|BAD|ERROR|MISMATCH)|guest: )' "$1")"
	return 0
}

# tx_exact NAME: the data frames at the peer are 1, 2, 3, ... none lost,
# repeated or damaged.
tx_exact() {
	grep -q '^BAD' "$WORK/$1.log" && fail "$1: damaged frame: $(grep -m1 '^BAD' "$WORK/$1.log")"
	awk '$1 == "data" { if ($3 != ++n) { print "frame " $3 " where " n " was due"; bad = 1; exit } }
		END { if (!n) { print "no frames"; bad = 1 } exit bad }' "$WORK/$1.log" >"$WORK/$1.tx" ||
		fail "$1: at the peer: $(cat "$WORK/$1.tx")"
}

# move NAME ARGS [run options...]: netmig (pps=1000 and ARGS) with its
# own peer; frames flow both ways, then it migrates. The destination's
# API socket is $WORK/NAME.b.sock, its pid DST, the guest's MAC in MAC.
move() {
	local name=$1 args=$2
	shift 2
	start_peer "$name"
	start_stasis "$WORK/$name.a" run --kernel "$GUESTS/netmig.elf" --debug-exit \
		--api-socket "$WORK/$name.a.sock" --serial "file:$WORK/$name.a" \
		--net "unix=$WORK/$name.a.net,peer=$WORK/$name.sw" \
		--cmdline "pps=1000 $args" "$@"
	local src=$VM_PID
	wait_for_socket "$WORK/$name.a.sock"
	wait_for_line "$WORK/$name.a" "^netmig: mac " 60
	MAC=$(sed -n 's/^netmig: mac \([0-9a-f:]*\) .*/\1/p' "$WORK/$name.a")
	progresses "$WORK/$name.a" 1 "$name source sending"
	progresses "$WORK/$name.a" 2 "$name source receiving"
	start_receive "$WORK/$name.b" "$WORK/m.sock" "$WORK/$name.b.sock" \
		--net "unix=$WORK/$name.b.net,peer=$WORK/$name.sw"
	DST=$RECV_PID
	migrate_to "$WORK/$name.a.sock" "unix:$WORK/m.sock"
	expect_migrated
	wait_exit "$src" 60
	expect_status "$RC" 0 "$name source after the migration"
	wait_for_socket "$WORK/$name.b.sock"
	grep -q "^netmig: start" "$WORK/$name.b" && fail "$name: the guest started over"
	progresses "$WORK/$name.b" 1 "$name destination sending"
	progresses "$WORK/$name.b" 2 "$name destination receiving"
	net_clean "$WORK/$name.a"
	net_clean "$WORK/$name.b"
}

# finish NAME: shuts the destination down; the frames were exact.
finish() {
	ctl "$WORK/$1.b.sock" shutdown >/dev/null
	wait_exit "$DST" 60
	expect_status "$RC" 0 "$1 destination after shutdown"
	tx_exact "$1"
}

# announced NAME: one announcement at the destination, acknowledged, the
# bit clear; the RARP for MAC came in from the destination's backend.
announced() {
	wait_for_line "$WORK/$1.b" "^netmig: announced 1: rarp sent, ack 0, status 0x1$" 60
	grep -q "^netmig: announced" "$WORK/$1.a" && fail "$1: announced before the migration"
	awk -v from="from $WORK/$1.b.net" -v want="rarp $MAC $MAC $MAC op 3" \
		'$0 == from { dst = 1 } $0 == want { if (dst) found = 1; else early = 1 }
		END { exit !(found && !early) }' "$WORK/$1.log" ||
		fail "$1: no RARP for $MAC from the destination's backend: $(grep -E '^(from|rarp)' "$WORK/$1.log")"
	# And no second one: the ACK cleared the bit.
	progresses "$WORK/$1.b" 1 "$1 after the announcement"
	[[ $(grep -c "^netmig: announced" "$WORK/$1.b") == 1 ]] || fail "$1: announced more than once"
	[[ $(grep -c "^rarp " "$WORK/$1.log") == 1 ]] || fail "$1: more than one RARP"
}

# --- 1 and 4 vCPUs, frames in flight both ways, the announcement.
# passes OUT: the other CPUs' generations so far.
passes() {
	complete_text <"$1" | sed -n 's/^netmig: .* cpus [0-9]* passes \([0-9]*\) ok.*/\1/p' | tail -n 1
}
passes_past() { (($(passes "$1") > $2)); }

for cpus in 1 4; do
	move "n$cpus" "smp=1" --mem 64M --cpus "$cpus"
	grep -q "^netmig: control queue: class 0xff ack 1$" "$WORK/n$cpus.a" ||
		fail "n$cpus: an unknown control class was not refused"
	announced "n$cpus"
	if ((cpus == 4)); then
		# Each of the other CPUs checks two more generations of its
		# slice at the destination.
		grep -q " cpus 4 passes " "$WORK/n4.b" || fail "n4: not 4 cpus: $(tail -n 1 "$WORK/n4.b")"
		p=$(passes "$WORK/n4.b")
		wait_until 60 passes_past "$WORK/n4.b" $((p + 6)) ||
			fail "n4: the other CPUs stopped at $(passes "$WORK/n4.b") generations"
		net_clean "$WORK/n4.b"
	fi
	note "$cpus vCPUs: $(netmig_field "$WORK/n$cpus.b" 1) frames sent, gaps at the switch: $(complete_text <"$WORK/n$cpus.b" | sed -n 's/.* gaps \([0-9]*\) .*/\1/p' | tail -n 1)"
	if ((cpus == 1)); then
		# A restore from a file is not a move: no announcement.
		ctl "$WORK/n1.b.sock" snapshot "$WORK/n1.snap" --then exit >/dev/null
		wait_exit "$DST" 60
		expect_status "$RC" 0 "n1 destination after the snapshot"
		start_stasis "$WORK/n1.c" restore "$WORK/n1.snap" \
			--api-socket "$WORK/n1.c.sock" --serial "file:$WORK/n1.c" \
			--net "unix=$WORK/n1.c.net,peer=$WORK/n1.sw"
		DST=$VM_PID
		wait_for_socket "$WORK/n1.c.sock"
		progresses "$WORK/n1.c" 1 "n1 restored"
		progresses "$WORK/n1.c" 1 "n1 restored"
		grep -q "^netmig: announced" "$WORK/n1.c" && fail "a restore announced"
		net_clean "$WORK/n1.c"
		ctl "$WORK/n1.c.sock" shutdown >/dev/null
		wait_exit "$DST" 60
		expect_status "$RC" 0 "n1 restored after shutdown"
		tx_exact n1
	else
		finish "n$cpus"
	fi
done

# --- A guest that does not accept CTRL_VQ and GUEST_ANNOUNCE has no
# control queue and is never asked to announce.
move n0 "announce=0" --mem 64M
grep -q "^netmig: control queue" "$WORK/n0.a" && fail "n0: a control queue without CTRL_VQ"
progresses "$WORK/n0.b" 1 "n0 destination"
grep -q "^netmig: announced" "$WORK/n0.b" && fail "n0: announced without the features"
grep -q "^rarp " "$WORK/n0.log" && fail "n0: a RARP without the features"
finish n0

# --- blktest on 4 vCPUs with 16 requests in flight: its passes go on, none
# repeated or skipped, every sector as last written.
truncate -s 4M "$WORK/disk.img"
start_stasis "$WORK/blk.a" run --kernel "$GUESTS/blktest.elf" --debug-exit \
	--api-socket "$WORK/blk.a.sock" --serial "file:$WORK/blk.a" --mem 64M \
	--cpus 4 --disk "$WORK/disk.img" --cmdline "sectors=1024 seed=7 irq=wait"
SRC=$VM_PID
wait_for_socket "$WORK/blk.a.sock"
wait_for_line "$WORK/blk.a" "^blktest: pass 2 ok" 120
start_receive "$WORK/blk.b" "$WORK/m.sock" "$WORK/blk.b.sock"
DST=$RECV_PID
migrate_to "$WORK/blk.a.sock" "unix:$WORK/m.sock"
expect_migrated
wait_exit "$SRC" 60
expect_status "$RC" 0 "blktest source after the migration"
want=$(($(blk_last_pass "$WORK/blk.a") + 2))
wait_for_line "$WORK/blk.b" "^blktest: pass $want ok" 120
ctl "$WORK/blk.b.sock" shutdown >/dev/null
wait_exit "$DST" 60
expect_status "$RC" 0 "blktest destination after shutdown"
blk_clean "$WORK/blk.a"
blk_clean "$WORK/blk.b" restored
blk_passes_continue "$WORK/blk.a" "$WORK/blk.b"
