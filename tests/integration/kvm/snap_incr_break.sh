# Every way a chain of incremental snapshots can break is refused in one
# line (status 2) before any state is used, and touches no file: a
# missing layer, two layers swapped, a layer replaced by another VM's, a
# truncated layer; a layer damaged at random offsets is refused so, or
# (when the byte is one nothing reads, a chunk a later layer replaced)
# restores the memory the chain holds; verify finds every one.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../incremental_lib.sh"
S=$WORK/api.sock
RUNS=${STASIS_DAMAGE_RUNS:-6}

# chain_of DIR N: a memtest VM's full snapshot and N layers in DIR.
chain_of() {
	local d=$1 n=$2 i pass
	mkdir -p "$d"
	rm -f "$S"
	start_stasis "$d/out" run --kernel "$GUESTS/memtest.elf" --debug-exit \
		--api-socket "$S" --serial "file:$d/out" --mem 64M --vmgenid off \
		--cmdline "mib=8"
	wait_for_socket "$S"
	wait_for_line "$d/out" "memtest: pass 1 ok" 120
	ctl "$S" snapshot "$d/0.snap" >/dev/null
	for ((i = 1; i <= n; i++)); do
		pass=$(memtest_pass "$d/out")
		wait_for_line "$d/out" "^memtest: pass $((pass + 1)) ok" 120
		ctl "$S" snapshot "$d/$i.snap" --base "$d/$((i - 1)).snap" \
			$( ((i < n)) || echo --then exit) >/dev/null
	done
	wait_exit "$VM_PID" 60
}

chain_of "$WORK/a" 3
chain_of "$WORK/b" 1
A=$WORK/a
mkdir "$WORK/good"
cp -p "$A"/*.snap "$WORK/good/"
restore_and_save "$A/3.snap" copy "$WORK/ref.snap" "$WORK/r.ref"

sums() { sha256sum "$A"/?.snap "$WORK/b"/*.snap 2>/dev/null; }
put_back() { rm -f "$A"/?.snap; cp -p "$WORK/good/"*.snap "$A/"; }

# refused WHAT PATTERN: restoring the chain's top fails in one line that
# matches PATTERN, with status 2, and every file is as it was.
refused() {
	local before after rc=0 err
	before=$(sums)
	err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$A/3.snap" \
		--memory copy --serial none 2>&1 >/dev/null </dev/null) || rc=$?
	after=$(sums)
	expect_status "$rc" 2 "$1"
	[[ $(wc -l <<<"$err") == 1 ]] || fail "$1: not one line: $err"
	[[ $err =~ $2 ]] || fail "$1: '$err' does not match '$2'"
	[[ $before == "$after" ]] || fail "$1: a file changed"
	"$STASIS" verify "$A/3.snap" >/dev/null 2>&1 && fail "$1: verify passes"
	note "$1: $err"
}

mv "$A/1.snap" "$WORK/aside.snap"
refused "missing layer" "parent layer .*/a/1\.snap.*No such file"
put_back

mv "$A/1.snap" "$WORK/x.snap"
mv "$A/2.snap" "$A/1.snap"
mv "$WORK/x.snap" "$A/2.snap"
refused "swapped layers" "parent layer .*/a/2\.snap is layer 1 of this VM's chain, not layer 2"
put_back

cp "$WORK/b/1.snap" "$A/1.snap"
refused "another VM's layer" "parent layer .*/a/1\.snap is a snapshot of another VM"
put_back

cp "$WORK/b/0.snap" "$A/0.snap"
refused "another VM's full snapshot" "parent layer .*/a/0\.snap is a snapshot of another VM"
put_back

truncate -s -4096 "$A/1.snap"
refused "truncated layer" "parent layer .*/a/1\.snap.*trunc"
put_back

# An older snapshot of this VM at the parent's path: changed.
cp "$WORK/good/0.snap" "$WORK/c0.snap"
restore_and_save "$A/2.snap" copy "$WORK/later.snap" "$WORK/r.later"
cp "$WORK/later.snap" "$A/2.snap"
refused "parent replaced" "parent layer .*/a/2\.snap (is not a snapshot of this VM|has changed|is layer)"
put_back

# Damage: one byte flipped at a random offset of a random layer.
RANDOM=${STASIS_DAMAGE_SEED:-9}
for ((k = 1; k <= RUNS; k++)); do
	l=$((RANDOM % 3))
	f=$A/$l.snap
	size=$(stat -c %s "$f")
	off=$(((RANDOM * 32768 + RANDOM) % size))
	flip_byte "$f" "$off" 0x20
	before=$(sums)
	rc=0
	rm -f "$S"
	start_stasis "$WORK/d$k" restore "$A/3.snap" --paused --memory copy \
		--api-socket "$S" --serial none
	wait_until 60 eval 'socket_answers "$S" || pid_exited "$VM_PID"' ||
		fail "damage $k: neither refused nor restored"
	if pid_exited "$VM_PID"; then
		wait_exit "$VM_PID" 10
		expect_status "$RC" 2 "damage $k (layer $l offset $off)"
		[[ $(wc -l <"$WORK/d$k.err") == 1 ]] ||
			fail "damage $k: not one line: $(cat "$WORK/d$k.err")"
		note "damage $k (layer $l offset $off): $(cat "$WORK/d$k.err")"
	else
		ctl "$S" snapshot "$WORK/d$k.snap" --then exit >/dev/null
		wait_exit "$VM_PID" 60
		same_memory "$WORK/ref.snap" "$WORK/d$k.snap" "damage $k (layer $l offset $off) restored"
		note "damage $k (layer $l offset $off): restored, memory intact"
	fi
	after=$(sums)
	[[ $before == "$after" ]] || fail "damage $k: a file changed"
	"$STASIS" verify "$A/3.snap" >/dev/null 2>&1 &&
		fail "damage $k (layer $l offset $off): verify passes"
	put_back
done
