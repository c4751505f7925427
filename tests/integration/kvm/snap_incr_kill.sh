# kill -9 while an incremental snapshot is being written leaves the VM's
# earlier files (the full snapshot and the layers under the one being
# written) as they were, the chain restorable, and nothing at the new
# path.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../incremental_lib.sh"
S=$WORK/api.sock
D=$WORK/snaps
mkdir "$D"

tmp_exists() {
	compgen -G "$D/.2.snap.tmp.*" >/dev/null || [[ -e $D/2.snap ]]
}

killed=0
for ((try = 1; try <= 3 && !killed; try++)); do
	rm -f "$S" "$D"/*.snap "$D"/.*.tmp.*
	start_stasis "$WORK/out$try" run --kernel "$GUESTS/memtest.elf" \
		--debug-exit --api-socket "$S" --serial "file:$WORK/out$try" \
		--mem 512M --cpus 2 --cmdline "smp=1 mib=$((160 * try))"
	wait_for_socket "$S"
	wait_for_line "$WORK/out$try" "memtest: pass 1 ok" 120
	ctl "$S" snapshot "$D/0.snap" >/dev/null
	pass=$(memtest_pass "$WORK/out$try")
	wait_for_line "$WORK/out$try" "^memtest: pass $((pass + 1)) ok" 120
	ctl "$S" snapshot "$D/1.snap" --base "$D/0.snap" >/dev/null
	pass=$(memtest_pass "$WORK/out$try")
	wait_for_line "$WORK/out$try" "^memtest: pass $((pass + 1)) ok" 120
	before=$(sha256sum "$D/0.snap" "$D/1.snap")
	# zstd:19 over memtest's incompressible pattern runs at a few MB/s
	# on any host: the save is still being written when the kill lands.
	"$STASIS" ctl "$S" snapshot "$D/2.snap" --base "$D/1.snap" \
		--compress zstd:19 >/dev/null 2>&1 &
	CTL=$!
	POLL=0.002 wait_until 60 tmp_exists || fail "no temporary file appeared"
	kill -9 "$VM_PID"
	wait_exit "$VM_PID" 30
	wait "$CTL" || true
	if [[ -e $D/2.snap ]]; then
		note "try $try: the save finished before the kill; more memory"
		continue
	fi
	killed=1
done
((killed)) || fail "every save finished before kill -9 could reach it"
[[ $(sha256sum "$D/0.snap" "$D/1.snap") == "$before" ]] ||
	fail "an earlier snapshot changed"
"$STASIS" verify "$D/1.snap" >"$WORK/verify" 2>&1 ||
	fail "the chain no longer verifies: $(cat "$WORK/verify")"
restore_and_save "$D/1.snap" copy "$WORK/back.snap" "$WORK/r"
note "killed during the save of layer 2; layer 1 and its parent intact"
