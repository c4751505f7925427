# A write the dirty page log missed is caught: the source hashes each
# chunk from its own memory at the end of a round, so a chunk whose page
# it did not send again fails its check at the destination, which then
# refuses the VM when the pause leaves that chunk to its memory; the
# source runs on. STASIS_TEST_MIGRATE_MISS makes the first round that
# finds dirty pages leave the highest one out; the guest (memtest touch
# mode) inverts the first MiB of its 64 once, a few seconds after its
# fill, while pre-copy's first round is still under way (held to
# 8 MiB/s by STASIS_TEST_MIGRATE_RATE), and writes nothing else there.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"

# The first round takes 8 s (scaled), the write comes 3 s (scaled)
# after the fill.
STASIS_TEST_MIGRATE_MISS=1 STASIS_TEST_MIGRATE_RATE=$(((8 << 20) / STASIS_TIME_SCALE)) \
	start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$WORK/a.sock" --serial "file:$WORK/a" --mem 128M \
	--cmdline "touch=64 dirty=1 dirty_at=$(scaled 3)"
SRC=$VM_PID
wait_for_socket "$WORK/a.sock"
wait_for_line "$WORK/a" "^memtest: touched 64 MiB" 120
has_line "$WORK/a" "memtest: dirtied" && fail "the guest wrote before the migration began"
start_receive "$WORK/b" "$WORK/m.sock" "$WORK/b.sock"
migrate_to "$WORK/a.sock" "unix:$WORK/m.sock"
has_line "$WORK/a" "memtest: dirtied 1 MiB" || fail "the guest never wrote during the migration"
expect_refused "a missed write" "the destination refused the VM: .*memory chunk [0-9]+ .*checksum mismatch: the copy held here is not the source's \(a write the dirty page log missed\)"
wait_exit "$RECV_PID" 60
[[ $RC != 0 ]] || fail "the destination exited 0"
[[ ! -s $WORK/b ]] || fail "the guest ran at the destination: $(head -c 200 "$WORK/b")"

# The source runs on.
expect_state "$WORK/a.sock" running "the source after the refusal"
n=$(line_count "$WORK/a" "^memtest: idle")
wait_for_count "$WORK/a" "^memtest: idle" $((n + 2)) 60
ctl "$WORK/a.sock" shutdown >/dev/null
wait_exit "$SRC" 60
