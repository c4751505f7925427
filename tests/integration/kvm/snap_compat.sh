# A snapshot this host cannot honour is refused with a message naming what
# differs: format version, page size, CPU vendor, CPU features. Also: the
# baseline CPU template restricts what the guest sees, and its snapshots
# restore.
. "$(dirname "$0")/../lib.sh"
EDIT=$BUILD/tests/tools/snapedit
S=$WORK/api.sock
start_stasis "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--cpu-template baseline --api-socket "$S" --serial "file:$WORK/a" \
	--mem 64M --cmdline "hz=50"
wait_for_socket "$S"
counter_reaches "$WORK/a" 5 60
ctl "$S" snapshot "$WORK/good.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
"$STASIS" inspect "$WORK/good.snap" >"$WORK/good.inspect"
grep -q '"cpu-template":"baseline"' "$WORK/good.inspect" ||
	fail "baseline template not recorded: $(grep CONFIG "$WORK/good.inspect")"

# refused NAME REGEX EDITS...: an edited copy is refused naming the cause.
refused() {
	local name=$1 re=$2 rc=0 err
	shift 2
	"$EDIT" "$WORK/good.snap" "$WORK/$name.snap" "$@" || fail "snapedit $*"
	err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/$name.snap" \
		--serial none 2>&1 </dev/null) || rc=$?
	[[ $rc == 2 ]] || fail "$name: restore status $rc, expected 2: $err"
	[[ $err =~ $re ]] || fail "$name: '$err' does not match '$re'"
}

refused format "format version 7 is newer than this stasis reads" --format-version 7
refused pagesize "page size 8192 differs from this host's 4096" --page-size 8192
if grep -q AuthenticAMD /proc/cpuinfo; then other=GenuineIntel; else other=AuthenticAMD; fi
refused vendor "another vendor" --vendor "$other"
# AVX-512 PF is a Xeon Phi feature no KVM host offers today.
refused feature "lacks: avx512pf \(CPUID.7.0:EBX\[26\]\)" --cpuid-set 7.0.EBX.26

# An unedited copy through the same tool restores: the refusals above come
# from the edits, not from the rewriting.
"$EDIT" "$WORK/good.snap" "$WORK/same.snap" || fail "snapedit copy"
rm -f "$S"
start_stasis "$WORK/b" restore "$WORK/same.snap" --api-socket "$S" --serial "file:$WORK/b"
wait_for_socket "$S"
wait_for_line "$WORK/b" "^counter: [0-9]+$" 60
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "restore of the rewritten copy"
restored_continues "$WORK/a" "$WORK/b"

# --- A virtio-net record of version 1, from a stasis before the control
# queue (snapedit --net-v1: two queues, three MSI-X vectors, the MAC
# only) restores as that device: netmig's frames flow both ways again, and
# so they do from the restored VM's own snapshot, which keeps that shape.
start_net_peer "$WORK/sw" "$WORK/sw.log"
# flowing OUT: both counts move on by 100 from now.
flows_past() {
	local f
	f=$(netmig_frames "$1")
	((${f% *} >= $2 && ${f#* } >= $3))
}
flowing() {
	local f
	f=$(netmig_frames "$1")
	f=${f:-0 0}
	wait_until 60 flows_past "$1" $((${f% *} + 100)) $((${f#* } + 100)) ||
		fail "$1: frames stuck at $f: $(tail -n 2 "$1" | tr '\n' '|')"
	grep -Eq '^(netmig: (DUP|BAD|ERROR)|guest: )' "$1" && fail "$1: $(grep -E '^(netmig|guest): ' "$1" | tail -n 1)"
	return 0
}
rm -f "$S"
start_stasis "$WORK/n" run --kernel "$GUESTS/netmig.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/n" --mem 32M \
	--net "unix=$WORK/n.net,peer=$WORK/sw" --cmdline "announce=0"
wait_for_socket "$S"
flowing "$WORK/n"
ctl "$S" snapshot "$WORK/net.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
"$EDIT" "$WORK/net.snap" "$WORK/net1.snap" --net-v1 1 || fail "snapedit --net-v1"
for v in 1 2; do
	rm -f "$S"
	start_stasis "$WORK/n$v" restore "$WORK/net$v.snap" --api-socket "$S" \
		--serial "file:$WORK/n$v" --net "unix=$WORK/n$v.net,peer=$WORK/sw"
	wait_for_socket "$S"
	flowing "$WORK/n$v"
	grep -q "^netmig: start" "$WORK/n$v" && fail "net v1, restore $v: the guest started over"
	if ((v == 1)); then
		ctl "$S" snapshot "$WORK/net2.snap" --then exit >/dev/null
	else
		ctl "$S" shutdown >/dev/null
	fi
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "net v1, restore $v"
done
