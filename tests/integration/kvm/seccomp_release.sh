# The suite runs the sanitizer build, whose seccomp filters also let the
# ASan/UBSan runtime through (docs/security.md). The release build's
# filters are the ones users get: run tests that reach every thread role
# (vCPUs, each kind of virtio worker, the API and its snapshots, main's
# SIGTERM save and teardown, restore, a migration through TLS over four
# connections) against it, and see that no thread
# was refused a call.
. "$(dirname "$0")/../lib.sh"
RELEASE=${STASIS_RELEASE:-$ROOT/build/stasis}
[[ -x $RELEASE ]] || fail "no release build at $RELEASE (make check builds it)"
for t in virtio_snapshot virtio_devices managed_save snap_counter migrate_tls; do
	rc=0
	STASIS=$RELEASE bash "$(dirname "$0")/$t.sh" >"$WORK/$t.log" 2>&1 || rc=$?
	if grep -q "seccomp:" "$WORK/$t.log"; then
		fail "$t with the release build: $(grep "seccomp:" "$WORK/$t.log" | head -n 3)"
	fi
	[[ $rc == 0 ]] || fail "$t with the release build: status $rc: $(tail -n 5 "$WORK/$t.log")"
done
exit 0
