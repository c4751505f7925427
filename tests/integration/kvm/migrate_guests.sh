# Migration of busy guests: memtest with 4 vCPUs each rewriting its slice
# with every pass's generation, memtest with one vCPU verifying a 96 MiB
# fill, and blktest with 16 virtio-blk requests in flight. At the
# destination each finds its memory and disk exactly as left: its next
# passes verify every word and sector, and nothing starts over.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"

# move NAME DONE_REGEX [run options...]: runs guest NAME until DONE_REGEX,
# then migrates it; the destination's API socket is $WORK/NAME.b.sock,
# its pid DST.
move() {
	local name=$1 done_re=$2
	shift 2
	start_stasis "$WORK/$name.a" run --kernel "$GUESTS/$name.elf" --debug-exit \
		--api-socket "$WORK/$name.a.sock" --serial "file:$WORK/$name.a" "$@"
	local src=$VM_PID
	wait_for_socket "$WORK/$name.a.sock"
	wait_for_line "$WORK/$name.a" "$done_re" 120
	start_receive "$WORK/$name.b" "$WORK/m.sock" "$WORK/$name.b.sock"
	DST=$RECV_PID
	migrate_to "$WORK/$name.a.sock" "unix:$WORK/m.sock"
	expect_migrated
	wait_exit "$src" 60
	expect_status "$RC" 0 "$name source after the migration"
	wait_for_socket "$WORK/$name.b.sock"
}

# finish NAME: shuts the destination down.
finish() {
	ctl "$WORK/$1.b.sock" shutdown >/dev/null
	wait_exit "$DST" 60
	expect_status "$RC" 0 "$1 destination after shutdown"
}

# --- 4 vCPUs rewriting memory all the time; two more passes of every CPU
# after the migration.
move memtest "memtest: pass 2 ok" --mem 128M --cpus 4 --cmdline "mib=64 smp=1"
last=$(memtest_pass "$WORK/memtest.a" tail)
wait_for_line "$WORK/memtest.b" "^memtest: pass $((last + 2)) ok \(64 MiB, cpus=4" 120
memtest_intact "$WORK/memtest.b" "$WORK/memtest.a"
finish memtest

# --- One vCPU verifying a fill: every migrated word checked twice more.
for f in a b; do mv "$WORK/memtest.$f" "$WORK/smp.$f"; done
move memtest "memtest: pass 1 ok" --mem 256M --cmdline "mib=96 seed=11"
last=$(memtest_pass "$WORK/memtest.a" tail)
wait_for_line "$WORK/memtest.b" "^memtest: pass $((last + 2)) ok" 120
memtest_intact "$WORK/memtest.b" "$WORK/memtest.a"
finish memtest

# --- virtio-blk with requests in flight: the passes go on, none repeated
# or skipped, every sector as last written.
truncate -s 4M "$WORK/disk.img"
move blktest "^blktest: pass 2 ok" --mem 64M --disk "$WORK/disk.img" \
	--cmdline "sectors=1024 seed=5 irq=wait"
want=$(($(blk_last_pass "$WORK/blktest.a") + 2))
wait_for_line "$WORK/blktest.b" "^blktest: pass $want ok" 120
finish blktest
blk_clean "$WORK/blktest.a"
blk_clean "$WORK/blktest.b" restored
blk_passes_continue "$WORK/blktest.a" "$WORK/blktest.b"
