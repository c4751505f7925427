# --user: stasis opens what it needs as root, then runs the guest as uid
# 65534; pause, snapshot and resume still work through the API, a snapshot
# is written as that user, and a restore drops as well. Then stasis runs
# with no root at all, given /dev/kvm (in a private mount namespace, so
# the host's /dev/kvm is never changed), and refuses --user there.
. "$(dirname "$0")/../lib.sh"
[[ $(id -u) == 0 ]] || fail "needs root (it starts stasis as root and as uid 65534)"
NOBODY=65534
# The user may cross $WORK but not write in it; $WORK/u is theirs.
chmod 711 "$WORK"
U=$WORK/u
mkdir "$U"
chown "$NOBODY:$NOBODY" "$U"
S=$U/api.sock

# ids_of PID: "UID-line|GID-line|Groups-line|CapEff" from /proc/PID/status.
ids_of() {
	awk '/^(Uid|Gid|Groups|CapEff):/ { $1 = ""; sub(/^ /, ""); printf "%s|", $0 }' \
		"/proc/$1/status"
}

# The serial file sits in a directory only root may write: opened first.
start_stasis "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --cmdline "hz=100" \
	--user "$NOBODY:$NOBODY"
wait_for_socket "$S"
counter_reaches "$WORK/a" 20 60
ids=$(ids_of "$VM_PID")
[[ $ids == "65534 65534 65534 65534|65534 65534 65534 65534||0000000000000000|" ]] ||
	fail "after --user 65534:65534, /proc status says '$ids'"
[[ $(stat -c %u "$S") == "$NOBODY" ]] || fail "the API socket was not handed to uid $NOBODY"

ctl "$S" pause >/dev/null
expect_state "$S" paused "after pause"
ctl "$S" resume >/dev/null
expect_state "$S" running "after resume"
ctl "$S" snapshot "$U/live.snap" --then resume >/dev/null
[[ $(stat -c %u "$U/live.snap") == "$NOBODY" ]] || fail "live.snap not written by uid $NOBODY"
v=$(last_counter "$WORK/a")
counter_reaches "$WORK/a" $((v + 20)) 60
# Where the user may not write, the snapshot fails and the VM runs on.
if timeout -s KILL "$(scaled 60)" "$STASIS" ctl "$S" snapshot "$WORK/denied.snap" \
	>"$WORK/denied.out" 2>&1; then
	fail "a snapshot into a root-only directory succeeded as uid $NOBODY"
fi
[[ ! -e $WORK/denied.snap ]] || fail "denied.snap exists"
expect_state "$S" running "after a refused snapshot"
ctl "$S" snapshot "$U/exit.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "run --user after snapshot --then exit"
[[ ! -e $S ]] || fail "uid $NOBODY did not remove its API socket at exit"
"$STASIS" verify "$U/exit.snap" >/dev/null || fail "exit.snap does not verify"
check_increasing "$WORK/a"

# Restore by name: nobody's groups from the group database.
R=$U/r.sock
start_stasis "$WORK/b" restore "$U/exit.snap" --api-socket "$R" \
	--serial "file:$WORK/b" --memory copy --user nobody
wait_for_socket "$R"
wait_for_line "$WORK/b" "^counter: [0-9]+$" 60
ids=$(ids_of "$VM_PID")
[[ $ids == "65534 65534 65534 65534|65534 65534 65534 65534|"* ]] ||
	fail "restore --user nobody: /proc status says '$ids'"
restored_continues "$WORK/a" "$WORK/b"
ctl "$R" snapshot "$U/second.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "restore --user"
"$STASIS" verify "$U/second.snap" >/dev/null || fail "second.snap does not verify"

# "${AS_NOBODY[@]}" CMD...: CMD as uid 65534 with no groups and no
# capability, where /dev/kvm is a node that user owns. The mount namespace
# is this command's alone; CMD keeps the pid (unshare, sh and setpriv
# exec), so $! is stasis itself.
mknod "$WORK/kvm" c 10 232
chown "$NOBODY:$NOBODY" "$WORK/kvm"
AS_NOBODY=(unshare -m sh -c 'mount --bind "$0" /dev/kvm && exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$@"' "$WORK/kvm")

# Without root, --user is refused in one line.
rc=0
"${AS_NOBODY[@]}" "$STASIS" run --kernel "$GUESTS/counter.elf" --user 1000:1000 \
	</dev/null >/dev/null 2>"$WORK/refused.err" || rc=$?
expect_status "$rc" 2 "--user without root"
[[ $(wc -l <"$WORK/refused.err") == 1 ]] && grep -q "needs stasis to start as root" "$WORK/refused.err" ||
	fail "--user without root said: $(cat "$WORK/refused.err")"

# No root at all: run, snapshot, restore as uid 65534.
N=$U/n.sock
"${AS_NOBODY[@]}" "$STASIS" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$N" --serial "file:$U/c" --cmdline "hz=100" \
	</dev/null >"$U/c.stdout" 2>"$U/c.err" &
VM_PID=$!
BG_PIDS+=("$VM_PID")
wait_for_socket "$N"
counter_reaches "$U/c" 20 60
ids=$(ids_of "$VM_PID")
[[ $ids == "65534 65534 65534 65534|65534 65534 65534 65534||0000000000000000|" ]] ||
	fail "unprivileged run: /proc status says '$ids'"
ctl "$N" snapshot "$U/nobody.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "unprivileged run"
"${AS_NOBODY[@]}" "$STASIS" restore "$U/nobody.snap" --api-socket "$N" \
	--serial "file:$U/d" </dev/null >"$U/d.stdout" 2>"$U/d.err" &
VM_PID=$!
BG_PIDS+=("$VM_PID")
wait_for_socket "$N"
wait_for_line "$U/d" "^counter: [0-9]+$" 60
restored_continues "$U/c" "$U/d"
ctl "$N" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "unprivileged restore"
[[ $(stat -c '%a %u' /dev/kvm) == "600 0" ]] || note "host /dev/kvm is $(stat -c '%a %u' /dev/kvm) (this test does not change it)"
note "dropped to uid $NOBODY, snapshots written and restored as that user; ran with no root at all"
