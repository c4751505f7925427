# Lazy restores (--memory ondemand, the default): a guest that verifies
# its memory carries on after a restore; one flipped byte in a chunk it
# reads stops the VM with one line naming the chunk's guest range and file
# offset (status 2) before the guest can print a wrong value, and leaves
# the file as it was; a truncated file is refused cleanly.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lazy_lib.sh"
S=$WORK/api.sock
G=$WORK/good.snap
memtest_snapshot "$WORK/a" "$G"

# An intact file: memtest's next passes check every word it wrote. The
# guest numbers its passes on from the snapshot's (a fast host ran
# thousands before it), so wait for two past the last one it printed.
last=$(last_pass "$WORK/a")
[[ -n $last ]] || fail "no complete pass line before the snapshot"
rm -f "$S"
start_stasis "$WORK/b" restore "$G" --memory ondemand --api-socket "$S" \
	--serial "file:$WORK/b"
wait_for_socket "$S"
wait_for_line "$WORK/b" "^memtest: pass $((last + 2)) ok" 120
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "lazy restore"
intact "$WORK/b"

# The last full chunk of the first memory record (inside memtest's
# pattern): its index, guest address and file offset, from the table.
read -r idx gpa off < <(chunk_table last-full "$G")
[[ -n $idx ]] || fail "no full chunk found in $G"
cp "$G" "$WORK/bad.snap"
flip_byte "$WORK/bad.snap" $((off + 1000)) 0x10
sum=$(sha256sum <"$WORK/bad.snap")
rc=0
err=$(timeout -s KILL "$(scaled 120)" "$STASIS" restore "$WORK/bad.snap" \
	--serial "file:$WORK/c" 2>&1 >/dev/null </dev/null) || rc=$?
[[ $rc == 2 ]] || fail "corrupt chunk: restore status $rc, expected 2: $err"
[[ $(printf '%s\n' "$err" | grep -c .) == 1 ]] || fail "corrupt chunk: more than one line: $err"
want=$(printf 'memory chunk %d (guest 0x%x-0x%x) at file offset 0x%x: checksum mismatch' \
	"$idx" "$gpa" $((gpa + 262143)) "$off")
[[ $err == *"$want"* ]] || fail "corrupt chunk: '$err' does not name '$want'"
intact "$WORK/c"
[[ $(sha256sum <"$WORK/bad.snap") == "$sum" ]] || fail "the snapshot file was changed"

# A truncated file is refused before anything runs.
head -c $((off + 4096)) "$G" >"$WORK/short.snap"
rc=0
err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/short.snap" \
	--serial none 2>&1 >/dev/null </dev/null) || rc=$?
[[ $rc == 2 ]] || fail "truncated: restore status $rc, expected 2: $err"
[[ $(printf '%s\n' "$err" | grep -c .) == 1 && $err == *truncated* ]] || fail "truncated: $err"
