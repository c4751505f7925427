# Helpers for the disk-identity tests (kvm/disk_identity*.sh), sourced
# after lib.sh: S is the running VM's API socket. Snapshots and restore
# outcomes, so each test states only which disk changes are accepted.

# snap NAME: a snapshot of the running VM, which carries on.
snap() {
	ctl "$S" snapshot "$WORK/$1.snap" --then resume >/dev/null
}

# accepted SNAP [restore options...]: the restore checks the disks and
# waits, paused; it is then shut down without the guest having run.
accepted() {
	local snap=$1 sock=$WORK/r.sock
	shift
	rm -f "$sock"
	start_stasis "$WORK/r" restore "$WORK/$snap.snap" --paused \
		--api-socket "$sock" --serial none "$@"
	local pid=$VM_PID
	wait_for_socket "$sock"
	ctl "$sock" shutdown >/dev/null
	wait_exit "$pid" 60
	[[ ! -s $WORK/r.err ]] || fail "restore of $snap said: $(cat "$WORK/r.err")"
}

# refused SNAP WHAT PATTERN [restore options...]: one line, status 2,
# matching PATTERN (which names the disk).
refused() {
	local snap=$1 what=$2 pat=$3 rc=0 err
	shift 3
	err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/$snap.snap" \
		--serial none "$@" 2>&1 >/dev/null </dev/null) || rc=$?
	[[ $rc == 2 ]] || fail "$what: restore status $rc, expected 2 ($err)"
	[[ $(printf '%s\n' "$err" | grep -c .) == 1 ]] || fail "$what: not one line: $err"
	[[ $err =~ $pat ]] || fail "$what: '$pat' not in: $err"
}
