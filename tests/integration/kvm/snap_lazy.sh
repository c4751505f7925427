# Lazy restores (--memory ondemand, the default): a guest that verifies
# its memory carries on after a restore; one flipped byte in a chunk it
# reads stops the VM with one line naming the chunk's guest range and file
# offset (status 2) before the guest can print a wrong value, and leaves
# the file as it was; a truncated file is refused cleanly.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --mem 64M --cmdline "mib=16"
wait_for_socket "$S"
wait_for_line "$WORK/a" "memtest: pass 1 ok" 120
ctl "$S" snapshot "$WORK/good.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
G=$WORK/good.snap

# An intact file: memtest's next passes check every word it wrote. The
# guest numbers its passes on from the snapshot's (a fast host ran
# thousands before it), so wait for two past the last one it printed.
last=$(complete_text <"$WORK/a" | sed -n 's/^memtest: pass \([0-9]*\) ok.*/\1/p' | tail -n 1)
[[ -n $last ]] || fail "no complete pass line before the snapshot"
rm -f "$S"
start_stasis "$WORK/b" restore "$G" --memory ondemand --api-socket "$S" \
	--serial "file:$WORK/b"
wait_for_socket "$S"
wait_for_line "$WORK/b" "^memtest: pass $((last + 2)) ok" 120
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
grep -q MISMATCH "$WORK/b" && fail "memory differs after a lazy restore: $(grep MISMATCH "$WORK/b" | head -n 2)"

# The last full chunk of the first memory record (inside memtest's
# pattern): its index, guest address and file offset, from the table.
read -r idx gpa off < <(python3 - "$G" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
off = 128
while off + 32 <= len(b):
    t, v, f, n = struct.unpack_from('<IHHQ', b, off)
    if t == 8 and v == 2:
        d = off + 32
        gpa, size, ps, cs, bs = struct.unpack_from('<QQIII', b, d)
        nch = struct.unpack_from('<Q', b, d + 32)[0]
        data = (d + 64 + nch * 32 + ps - 1) & ~(ps - 1)
        best = None
        for i in range(nch):
            o, ln, codec, fl, _, mask, h = struct.unpack_from('<QIBBHQQ', b, d + 64 + i * 32)
            if mask == (1 << (cs // bs)) - 1:
                best = (i, gpa + i * cs, data + o)
        print(*best)
        break
    off += 32 + ((n + 7) & ~7)
PY
)
[[ -n $idx ]] || fail "no full chunk found in $G"
cp "$G" "$WORK/bad.snap"
b=$(od -An -tu1 -j $((off + 1000)) -N 1 "$WORK/bad.snap" | tr -d ' ')
printf "$(printf '\\%03o' $((b ^ 0x10)))" | dd of="$WORK/bad.snap" bs=1 seek=$((off + 1000)) conv=notrunc status=none
sum=$(sha256sum <"$WORK/bad.snap")
rc=0
err=$(timeout -s KILL "$(scaled 120)" "$STASIS" restore "$WORK/bad.snap" \
	--serial "file:$WORK/c" 2>&1 >/dev/null </dev/null) || rc=$?
[[ $rc == 2 ]] || fail "corrupt chunk: restore status $rc, expected 2: $err"
[[ $(printf '%s\n' "$err" | grep -c .) == 1 ]] || fail "corrupt chunk: more than one line: $err"
want=$(printf 'memory chunk %d (guest 0x%x-0x%x) at file offset 0x%x: checksum mismatch' \
	"$idx" "$gpa" $((gpa + 262143)) "$off")
[[ $err == *"$want"* ]] || fail "corrupt chunk: '$err' does not name '$want'"
grep -q MISMATCH "$WORK/c" && fail "the guest saw the damaged chunk: $(grep MISMATCH "$WORK/c" | head -n 1)"
[[ $(sha256sum <"$WORK/bad.snap") == "$sum" ]] || fail "the snapshot file was changed"

# A truncated file is refused before anything runs.
head -c $((off + 4096)) "$G" >"$WORK/short.snap"
rc=0
err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/short.snap" \
	--serial none 2>&1 >/dev/null </dev/null) || rc=$?
[[ $rc == 2 ]] || fail "truncated: restore status $rc, expected 2: $err"
[[ $(printf '%s\n' "$err" | grep -c .) == 1 && $err == *truncated* ]] || fail "truncated: $err"
