# Signed snapshots: a VM run with --sign-key writes signed snapshots that
# inspect shows with their key id and verify --key accepts; restore
# --require-signed brings one back (and the restored VM signs its own),
# and refuses with one line, before the guest runs, an unsigned file, a
# file whose VCPU state was changed with its checksum recomputed, a file
# signed with another key, and a key file others can read.
. "$(dirname "$0")/../lib.sh"
DAMAGE=$BUILD/tests/tools/snapdamage
S=$WORK/api.sock
K=$WORK/vm.key
K2=$WORK/other.key
(
	umask 077
	head -c 32 /dev/urandom >"$K"
	head -c 48 /dev/urandom >"$K2"
)

# refused SNAP WHAT PATTERN [restore options...]: status 2, one line
# matching PATTERN, and the guest never ran.
refused() {
	local snap=$1 what=$2 pat=$3 rc=0 err
	shift 3
	rm -f "$WORK/refused.out"
	err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/$snap" \
		--serial "file:$WORK/refused.out" "$@" 2>&1 >/dev/null </dev/null) || rc=$?
	[[ $rc == 2 ]] || fail "$what: restore status $rc, expected 2 ($err)"
	[[ $(printf '%s\n' "$err" | grep -c .) == 1 ]] || fail "$what: not one line: $err"
	[[ $err =~ $pat ]] || fail "$what: '$pat' not in: $err"
	[[ ! -s $WORK/refused.out ]] || fail "$what: the guest ran: $(head -n 2 "$WORK/refused.out")"
}

# run_until SNAP OUT [stasis arguments...]: runs (or restores) the counter,
# waits for 3 more ticks, and snapshots it to SNAP with --then exit.
run_until() {
	local snap=$1 out=$2 from
	shift 2
	rm -f "$S"
	start_stasis "$out" "$@" --api-socket "$S" --serial "file:$out"
	wait_for_socket "$S"
	from=$(last_counter "$out")
	counter_reaches "$out" $((${from:-0} + 3)) 60
	ctl "$S" snapshot "$WORK/$snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "$out: snapshot --then exit"
	[[ ! -s $out.err ]] || fail "$out: stasis said: $(cat "$out.err")"
}

run_until a.snap "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--mem 64M --sign-key "$K"
id=$("$STASIS" inspect "$WORK/a.snap" | sed -n 's/^  signed: HMAC-SHA256, key id \([0-9a-f]\{16\}\) (not checked.*/\1/p')
[[ -n $id ]] || fail "inspect shows no signature: $("$STASIS" inspect "$WORK/a.snap" | tail -n 3)"
"$STASIS" inspect --json "$WORK/a.snap" | grep -Eq "\"key_id\": ?\"$id\"" || fail "inspect --json has no key id"
out=$("$STASIS" verify "$WORK/a.snap" --key "$K") || fail "verify --key: $out"
[[ $out == *"signature valid, key id $id"* ]] || fail "verify --key said: $out"
rc=0
err=$("$STASIS" verify "$WORK/a.snap" --key "$K2" 2>&1 >/dev/null) || rc=$?
[[ $rc == 1 && $err == *"signed with key id $id, not this key's"* ]] || fail "verify with another key: status $rc: $err"

# Restored with --require-signed: it runs on, and signs its own snapshots.
run_until b.snap "$WORK/b" restore "$WORK/a.snap" --require-signed "$K"
restored_continues "$WORK/a" "$WORK/b"
"$STASIS" verify "$WORK/b.snap" --key "$K" >/dev/null || fail "the restored VM's snapshot is not signed with the key"

# An older reader's view: restored without a key, a signed file is an
# ordinary one; that VM's snapshots are not signed.
run_until u.snap "$WORK/u" restore "$WORK/a.snap"
"$STASIS" inspect "$WORK/u.snap" | grep -q '^  not signed$' || fail "u.snap: $("$STASIS" inspect "$WORK/u.snap" | tail -n 2)"
refused u.snap "an unsigned snapshot" "u\.snap: not signed .*--require-signed" --require-signed "$K"

# Forged: a VCPU payload changed (seed 3 damages a VCPU record) with its
# checksum recomputed, so the framing and every checksum hold (the check
# gets past them to the tag: the message says so); only the tag tells.
"$DAMAGE" "$WORK/a.snap" "$WORK/f.snap" 3 | grep -q ': VCPU record' || fail "snapdamage 3 did not pick a VCPU record"
cmp -s "$WORK/a.snap" "$WORK/f.snap" && fail "snapdamage changed nothing"
refused f.snap "a forged snapshot" "f\.snap: signature does not match" --require-signed "$K"
refused a.snap "another key" "signed with key id $id, not this key's" --require-signed "$K2"

# A key file that others can read is no secret: refused before the file.
cp "$K" "$WORK/open.key"
chmod 644 "$WORK/open.key"
refused a.snap "a world-readable key" "open to group or others .*chmod 600" --require-signed "$WORK/open.key"
rc=0
"$STASIS" run --kernel "$GUESTS/counter.elf" --sign-key "$WORK/open.key" --serial none </dev/null >/dev/null 2>"$WORK/run.err" || rc=$?
expect_status "$rc" 2 "run --sign-key with a world-readable key"
grep -q "chmod 600" "$WORK/run.err" || fail "run --sign-key said: $(cat "$WORK/run.err")"
