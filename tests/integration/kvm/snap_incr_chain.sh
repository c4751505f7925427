# Incremental snapshots: a chain of 20 layers taken while an SMP memtest
# guest rewrites its memory on every CPU restores, in every memory mode,
# to exactly the memory of the last snapshot (compared chunk by chunk with
# a full snapshot taken at the same paused instant); merged, it is the
# same; a layer over a paused VM holds nothing; a VM restored from the
# chain carries it on. Once with dirty rings (--track-dirty) and raw
# chunks, once with the bitmap started at the first snapshot and zstd.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../incremental_lib.sh"
S=$WORK/api.sock
LAYERS=${STASIS_INCR_LAYERS:-20}

# chain TAG COMPRESS [run options...]: boots, takes the full snapshot and
# LAYERS layers, each after memtest finished a pass past the previous one
# (so memory changed in between), then ref.snap at the same pause.
chain() {
	local tag=$1 comp=$2 d=$WORK/$1 last pass i
	shift 2
	mkdir -p "$d"
	rm -f "$S"
	start_stasis "$d/out" run --kernel "$GUESTS/memtest.elf" --debug-exit \
		--api-socket "$S" --serial "file:$d/out" --mem 96M --cpus 2 \
		--vmgenid off --cmdline "smp=1 mib=24" "$@"
	wait_for_socket "$S"
	wait_for_line "$d/out" "memtest: pass 1 ok" 120
	ctl "$S" snapshot "$d/0.snap" --compress "$comp" >/dev/null
	for ((i = 1; i <= LAYERS; i++)); do
		pass=$(memtest_pass "$d/out")
		wait_for_line "$d/out" "^memtest: pass $((pass + 1)) ok" 120
		last=resume
		((i < LAYERS)) || last=pause
		ctl "$S" snapshot "$d/$i.snap" --base "$d/$((i - 1)).snap" \
			--compress "$comp" --then "$last" >/dev/null
	done
	# The same instant, whole: what the chain must give back.
	ctl "$S" snapshot "$d/ref.snap" --then pause >/dev/null
	# Nothing ran since: a layer over it holds no chunk.
	ctl "$S" snapshot "$d/empty.snap" --base "$d/ref.snap" --then exit >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "$tag: the VM"
	grep -q MISMATCH "$d/out" && fail "$tag: memtest: $(grep -m1 MISMATCH "$d/out")"
	"$STASIS" inspect "$d/empty.snap" | grep -q "chunks=0/" ||
		fail "$tag: a layer over a paused VM stores chunks: $("$STASIS" inspect "$d/empty.snap" | grep MEMORY)"
	"$STASIS" verify "$d/$LAYERS.snap" >"$d/verify" 2>&1 ||
		fail "$tag: verify of the chain: $(cat "$d/verify")"
	"$STASIS" inspect "$d/$LAYERS.snap" >"$d/inspect"
	grep -q "chain: $LAYERS layers under this one" "$d/inspect" ||
		fail "$tag: inspect does not show the chain: $(grep -m2 -i 'chain\|LINEAGE' "$d/inspect")"
	# Something was left to the parents: layers are not full copies.
	(($(grep -c "from its parent" "$d/inspect") == LAYERS)) ||
		fail "$tag: inspect lists $(grep -c "from its parent" "$d/inspect") layers, not $LAYERS"
}

check_modes() {
	local tag=$1 d=$WORK/$1 m
	shift
	for m in "$@"; do
		restore_and_save "$d/$LAYERS.snap" "$m" "$d/back.$m.snap" "$d/r.$m"
		same_memory "$d/ref.snap" "$d/back.$m.snap" "$tag: chain restored with --memory $m"
	done
	restore_and_save "$d/empty.snap" copy "$d/back.empty.snap" "$d/r.empty"
	same_memory "$d/ref.snap" "$d/back.empty.snap" "$tag: empty layer restored"
	"$STASIS" merge "$d/$LAYERS.snap" -o "$d/merged.snap" >/dev/null
	"$STASIS" verify "$d/merged.snap" >/dev/null || fail "$tag: merged file does not verify"
	"$STASIS" inspect "$d/merged.snap" | grep -q "full snapshot" ||
		fail "$tag: merged file is not a full snapshot"
	same_memory "$d/ref.snap" "$d/merged.snap" "$tag: merged chain"
	restore_and_save "$d/merged.snap" copy "$d/back.merged.snap" "$d/r.merged"
	same_memory "$d/ref.snap" "$d/back.merged.snap" "$tag: merged chain restored"
}

chain ring none --track-dirty
check_modes ring ondemand copy map

# A VM restored from the chain is a parent in turn: its next snapshot is
# a layer over the file it came from, and that chain restores too.
d=$WORK/ring
rm -f "$S"
start_stasis "$d/out2" restore "$d/$LAYERS.snap" --api-socket "$S" \
	--serial "file:$d/out2"
wait_for_socket "$S"
wait_for_line "$d/out2" "memtest: pass [0-9]+ ok" 120
pass=$(memtest_pass "$d/out2")
wait_for_line "$d/out2" "^memtest: pass $((pass + 1)) ok" 120
ctl "$S" snapshot "$d/next.snap" --base "$d/$LAYERS.snap" --then pause >/dev/null
ctl "$S" snapshot "$d/ref2.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
"$STASIS" inspect "$d/next.snap" | grep -q "layer $((LAYERS + 1)) of a chain" ||
	fail "the restored VM's snapshot is not layer $((LAYERS + 1))"
restore_and_save "$d/next.snap" copy "$d/back.next.snap" "$d/r.next"
same_memory "$d/ref2.snap" "$d/back.next.snap" "layer over a restored VM"

chain bitmap zstd
check_modes bitmap ondemand copy
# A compressed chain cannot be mapped: one line, status 2.
rc=0
err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/bitmap/$LAYERS.snap" \
	--memory map --serial none 2>&1 >/dev/null </dev/null) || rc=$?
expect_status "$rc" 2 "map of a compressed chain"
[[ $(wc -l <<<"$err") == 1 && $err == *"cannot be mapped"* ]] ||
	fail "map of a compressed chain: '$err'"
note "$LAYERS layers, twice (ring and raw, bitmap and zstd): every mode restores the last instant"
