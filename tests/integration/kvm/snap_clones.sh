# Clones: twenty VMs restored at once from one snapshot of a 256 MiB guest
# (64 MiB of it filled with a pattern) each carry on from the saved point
# with the memory as saved, each with its own serial, API socket and a VM
# Generation ID of its own. Prints their total RSS and PSS against one
# VM's; the memory figures are reported, not asserted.
. "$(dirname "$0")/../lib.sh"
N=${STASIS_CLONES:-20}
S=$WORK/api.sock

start_stasis "$WORK/a" run --kernel "$GUESTS/vmgenid.elf" --debug-exit \
	--mem 256M --api-socket "$S" --serial "file:$WORK/a" \
	--cmdline "hz=100 touch=64"
wait_for_socket "$S"
wait_for_line "$WORK/a" "^vmgenid: addr=" 60
counter_reaches "$WORK/a" 10 60
ctl "$S" snapshot "$WORK/base.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "the VM cloned"
saved_id=$(sed -n 's/^vmgenid: id=\([0-9a-f]*\) .*/\1/p' "$WORK/a" | tail -n 1)

# mem_kib PID FIELD: Rss or Pss of a process, in KiB.
mem_kib() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/smaps_rollup"
}

# clone_ready OUT: the clone saw its new ID, checked its memory and went on
# counting.
clone_ready() {
	has_line "$1" "^vmgenid: memory ok" || return 1
	local first
	first=$(first_counter "$1")
	[[ -n $first ]] && counter_at_least "$1" $((first + 10))
}

start_clone() {
	local i=$1
	rm -f "$WORK/c$i.sock"
	start_stasis "$WORK/c$i" restore "$WORK/base.snap" --memory map \
		--api-socket "$WORK/c$i.sock" --serial "file:$WORK/c$i"
	PIDS[i]=$VM_PID
}

stop_clone() {
	local i=$1
	ctl "$WORK/c$i.sock" shutdown >/dev/null
	wait_exit "${PIDS[i]}" 60
	expect_status "$RC" 0 "clone $i"
}

# One VM alone, for the baseline.
declare -a PIDS
start_clone 0
wait_until 60 clone_ready "$WORK/c0" || fail "the single restore did not carry on: $(tail -n 3 "$WORK/c0")"
one_rss=$(mem_kib "${PIDS[0]}" Rss) one_pss=$(mem_kib "${PIDS[0]}" Pss)
stop_clone 0

# N at once.
for ((i = 1; i <= N; i++)); do start_clone "$i"; done
for ((i = 1; i <= N; i++)); do
	wait_until 120 clone_ready "$WORK/c$i" ||
		fail "clone $i did not carry on: $(tail -n 3 "$WORK/c$i" | tr '\n' '|')"
done
rss=0 pss=0
for ((i = 1; i <= N; i++)); do
	rss=$((rss + $(mem_kib "${PIDS[i]}" Rss)))
	pss=$((pss + $(mem_kib "${PIDS[i]}" Pss)))
done
for ((i = 1; i <= N; i++)); do stop_clone "$i"; done

for ((i = 0; i <= N; i++)); do
	grep -q ERROR "$WORK/c$i" && fail "clone $i: $(grep ERROR "$WORK/c$i")"
	restored_continues "$WORK/a" "$WORK/c$i"
	sed -n 's/^vmgenid: id=\([0-9a-f]*\) notify=1.*/\1/p' "$WORK/c$i"
done >"$WORK/ids"
[[ $(wc -l <"$WORK/ids") == $((N + 1)) ]] || fail "not every clone reported one new ID: $(wc -l <"$WORK/ids")"
[[ $(sort -u "$WORK/ids" | wc -l) == $((N + 1)) ]] || fail "clones share a generation ID"
grep -qx "$saved_id" "$WORK/ids" && fail "a clone kept the saved ID $saved_id"
note "one VM: RSS $((one_rss / 1024)) MiB, PSS $((one_pss / 1024)) MiB"
note "$N clones: RSS $((rss / 1024)) MiB in all ($((rss / N / 1024)) MiB each), PSS $((pss / 1024)) MiB in all ($((pss / N / 1024)) MiB each); PSS total / one VM's RSS = $(awk -v a="$pss" -v b="$one_rss" 'BEGIN { printf "%.2f", a / b }')"
