# Working-set prefetch: `restore --record-working-set` writes SNAPSHOT.wset
# (ended by `ctl working-set`, or by its time running out) naming the
# chunks the guest faulted in; later lazy restores of that snapshot load
# them first and memory stays exactly as saved; `--prefetch off` ignores
# the file; a damaged one, or one that belongs to another snapshot (by
# content, not by path), is ignored with one warning line; recording
# needs ondemand.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lazy_lib.sh"
S=$WORK/api.sock
G=$WORK/good.snap
W=$G.wset
memtest_snapshot "$WORK/a" "$G"
last=$(last_pass "$WORK/a")
[[ -n $last ]] || fail "no whole pass line before the snapshot"

# restore_runs NAME [options...]: a lazy restore of $G whose guest makes
# two more verified passes over its 16 MiB; leaves its stderr in
# $WORK/NAME.err.
restore_runs() {
	local name=$1
	shift
	rm -f "$S"
	start_stasis "$WORK/$name" restore "$G" --api-socket "$S" \
		--serial "file:$WORK/$name" "$@"
	wait_for_socket "$S"
	wait_for_line "$WORK/$name" "^memtest: pass $((last + 2)) ok" 120
	ctl "$S" shutdown >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "$name"
	intact "$WORK/$name"
}

# Recording until the control request: the guest reads all of its pattern
# meanwhile, so at least its 64 chunks are in the set.
rm -f "$S"
start_stasis "$WORK/rec" restore "$G" "${HOLD[@]}" \
	--api-socket "$S" --serial "file:$WORK/rec"
wait_for_socket "$S"
# (The first whole line after a restore is the second: the snapshot may
# have cut the line of the pass in progress in two.)
wait_for_line "$WORK/rec" "^memtest: pass $((last + 2)) ok" 120
[[ ! -e $W ]] || fail "$W written before the recording ended"
out=$("$STASIS" ctl "$S" working-set) || fail "ctl working-set: $out"
[[ $out == "working set written" ]] || fail "ctl working-set said: $out"
[[ -f $W ]] || fail "no $W after ctl working-set"
[[ $(stat -c %a "$W") == 600 ]] || fail "$W has mode $(stat -c %a "$W")"
rc=0
err=$("$STASIS" ctl "$S" working-set 2>&1) || rc=$?
[[ $rc == 1 && $err == *"no working set is being recorded"* ]] || fail "second ctl working-set: $rc $err"
wait_for_line "$WORK/rec" "^memtest: pass $((last + 3)) ok" 120
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "recording restore"
intact "$WORK/rec"
n=$(sed -n 's/.*working set: \([0-9]*\) chunks in .*/\1/p' "$WORK/rec.err")
[[ -n $n ]] || fail "no working-set line: $(cat "$WORK/rec.err")"
((n >= 64 && n <= 256)) || fail "working set of $n chunks, expected 64..256 (16 MiB touched of 64)"
cp "$W" "$WORK/recorded.wset"

# The recorded set is used by the next restore, and memory is intact.
restore_runs pre
grep -q "good.snap.wset: prefetching $n chunks first" "$WORK/pre.err" || fail "prefetch not used: $(cat "$WORK/pre.err")"
# --prefetch off: not even looked at.
restore_runs off --prefetch off
! grep -q "wset" "$WORK/off.err" || fail "--prefetch off: $(cat "$WORK/off.err")"

# A recording that ends on time, with no request.
rm -f "$W"
rm -f "$S"
start_stasis "$WORK/timed" restore "$G" --record-working-set=300 \
	--api-socket "$S" --serial "file:$WORK/timed"
wait_for_socket "$S"
wait_until 60 test -f "$W" || fail "the 300 ms recording wrote no $W"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
grep -q "working set: [0-9]* chunks in [0-9]* ms" "$WORK/timed.err" || fail "timed recording: $(cat "$WORK/timed.err")"

# A damaged file: one flipped byte in its bitmap. Ignored, in one line.
cp "$WORK/recorded.wset" "$W"
flip_byte "$W" 100 0x5a
restore_runs damaged
[[ $(grep -c . "$WORK/damaged.err") == 1 ]] || fail "damaged: $(cat "$WORK/damaged.err")"
grep -q "warning: .*good.snap.wset: working-set file: checksum mismatch; not used" "$WORK/damaged.err" || fail "damaged: $(cat "$WORK/damaged.err")"
head -c 40 "$WORK/recorded.wset" >"$W"
restore_runs short
grep -q "warning: .*truncated; not used" "$WORK/short.err" || fail "truncated: $(cat "$WORK/short.err")"

# Content identity: the same snapshot under another name uses its set;
# another snapshot at this name does not.
cp "$G" "$WORK/moved.snap"
cp "$WORK/recorded.wset" "$WORK/moved.snap.wset"
rm -f "$S"
start_stasis "$WORK/moved" restore "$WORK/moved.snap" --api-socket "$S" \
	--serial "file:$WORK/moved"
wait_for_socket "$S"
# A whole pass line in its output first (pass last + 2's, ended by the
# next one's start), to number the stale restore's passes from.
wait_for_line "$WORK/moved" "^memtest: pass $((last + 3)) " 120
ctl "$S" snapshot "$WORK/other.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
grep -q "moved.snap.wset: prefetching $n chunks first" "$WORK/moved.err" || fail "moved: $(cat "$WORK/moved.err")"
mv "$WORK/other.snap" "$G"
cp "$WORK/recorded.wset" "$W"
last=$(last_pass "$WORK/moved")
[[ -n $last ]] || fail "moved: no whole pass line before its snapshot"
restore_runs stale
grep -q "warning: .*good.snap.wset: working-set file belongs to another snapshot; not used" "$WORK/stale.err" || fail "stale: $(cat "$WORK/stale.err")"

# A save ends the recording (it reads every chunk, so the filler must go
# on): SIGTERM with --on-term during a recording saves, and the set is
# written first.
rm -f "$S" "$W"
start_stasis "$WORK/term" restore "$G" "${HOLD[@]}" \
	--on-term "snapshot:$WORK/term.snap" --api-socket "$S" --serial "file:$WORK/term"
wait_for_socket "$S"
kill -TERM "$VM_PID"
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "SIGTERM save during a recording"
[[ -f $W ]] || fail "SIGTERM save: no $W"
"$STASIS" verify "$WORK/term.snap" >/dev/null || fail "SIGTERM save: the file does not verify"

# Recording needs the faults of ondemand.
rc=0
err=$("$STASIS" restore "$G" --memory copy --record-working-set --serial none 2>&1 </dev/null) || rc=$?
[[ $rc == 2 && $(grep -c . <<<"$err") == 1 && $err == *"needs --memory ondemand"* ]] || fail "copy + record: $rc $err"
rc=0
err=$("$STASIS" restore "$G" --record-working-set=0 --serial none 2>&1 </dev/null) || rc=$?
[[ $rc == 2 && $err == *"--record-working-set: '0'"* ]] || fail "record 0: $rc $err"
note "working set of $n chunks recorded and prefetched"
