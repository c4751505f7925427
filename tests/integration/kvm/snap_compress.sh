# Compressed snapshots: one guest state saved with each codec; every file
# restored lazily (ondemand) and by copy carries on with memory exactly as
# memtest wrote it (its next pass checks every byte); inspect names the
# codec and the ratio; text shrinks under lz4 and zstd; --memory map
# refuses a compressed file in one line; a bad --compress is refused by
# ctl and by the API without touching the VM.
. "$(dirname "$0")/../lib.sh"
S=$WORK/api.sock
start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --mem 64M \
	--cmdline "mib=24 mode=text"
wait_for_socket "$S"
wait_for_line "$WORK/a" "memtest: pass 1 ok" 120

# Refused before anything is written; the VM keeps running.
rc=0
out=$("$STASIS" ctl "$S" snapshot "$WORK/x.snap" --compress zstd:99 2>&1) || rc=$?
[[ $rc != 0 && $out == *"bad zstd level"* ]] || fail "ctl --compress zstd:99: status $rc: $out"
body=$(curl -s --unix-socket "$S" -X PUT http://localhost/vm/snapshot \
	-d "{\"path\": \"$WORK/x.snap\", \"compress\": \"gzip\"}")
[[ $body == *'unknown compression \"gzip\"'* ]] || fail "API compress gzip: $body"
[[ ! -e $WORK/x.snap ]] || fail "a refused snapshot left a file"

codecs=(none lz4 zstd zstd:9)
for c in "${codecs[@]}"; do
	want=$c
	[[ $c == zstd ]] && want=zstd:1 # the default level
	reply=$(ctl "$S" snapshot "$WORK/$c.snap" --compress "$c" --then pause --json)
	[[ $reply == *compress*"\"$want\""* ]] || fail "snapshot --compress $c: reply $reply"
done
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60

size() { stat -c %s "$1"; }
raw=$(size "$WORK/none.snap")
for c in lz4 zstd zstd:9; do
	s=$(size "$WORK/$c.snap")
	# Lines of words and numbers: lz4 and zstd both at least halve them.
	((s * 2 < raw)) || fail "$c: $s bytes, not half of the raw $raw"
	info=$("$STASIS" inspect "$WORK/$c.snap") || fail "inspect $c: $info"
	[[ $info == *"${c%%:*} "[1-9]* ]] || fail "inspect $c names no ${c%%:*} chunk: $info"
	[[ $info == *"compression ratio "[2-9]* || $info == *"compression ratio "[1-9][0-9]* ]] ||
		fail "inspect $c: no ratio of at least 2: $(grep 'ratio' <<<"$info")"
	note "$c: $s bytes of $raw raw"
done

for c in "${codecs[@]}"; do
	for mode in ondemand copy; do
		rm -f "$S"
		out=$WORK/r-$c-$mode
		start_stasis "$out" restore "$WORK/$c.snap" --memory "$mode" \
			--api-socket "$S" --serial "file:$out"
		wait_for_socket "$S"
		# A pass after the restore reads all 24 MiB back.
		wait_for_line "$out" "memtest: pass [0-9]+ ok" 120
		ctl "$S" shutdown >/dev/null
		wait_exit "$VM_PID" 60
		grep -q MISMATCH "$out" && fail "$c/$mode: $(grep MISMATCH "$out" | head -n 2)"
		grep -q "pass [0-9]* ok" "$out" || fail "$c/$mode: no pass"
	done
done

# Mapping needs raw chunks in the file's pages.
rc=0
err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/zstd.snap" \
	--memory map --serial none 2>&1 >/dev/null </dev/null) || rc=$?
[[ $rc != 0 ]] || fail "--memory map accepted a compressed file"
[[ $(printf '%s\n' "$err" | grep -c .) == 1 && $err == *"cannot be mapped"* ]] ||
	fail "--memory map on a compressed file: $err"
