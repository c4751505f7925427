# Hugepage-backed guests (--hugepages 2M): guest RAM is a hugetlbfs memfd
# of 2 MiB pages; such a guest boots, snapshots and restores, lazily
# (ondemand: whole 2 MiB pages, and only those the guest touches while
# nothing fills in the background) and by copy, with memory exactly as
# saved; --memory map is refused in one line; the option is in the
# snapshot's config and the restore's --hugepages overrides it both ways;
# a host without enough free hugepages gets one line saying how to
# reserve them. The test reserves the hugepages itself, as root, and puts
# nr_hugepages back as it was.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lazy_lib.sh"
S=$WORK/api.sock
NR=/proc/sys/vm/nr_hugepages
[[ $(id -u) == 0 ]] || fail "needs root: it reserves hugepages itself (echo N > $NR)"
[[ -w $NR ]] || fail "$NR is not writable: cannot reserve hugepages"

# avail: free 2 MiB hugepages nobody has reserved.
avail() {
	awk '/^HugePages_Free:/ { f = $2 } /^HugePages_Rsvd:/ { r = $2 }
		END { print f - r }' /proc/meminfo
}
# ram_page PID: the kernel page size (kB) of stasis's guest RAM mapping.
ram_page() {
	awk '/memfd:stasis-ram/ { on = 1; next } /^[0-9a-f]+-[0-9a-f]+ / { on = 0 }
		on && /^KernelPageSize:/ { print $2; exit }' "/proc/$1/smaps"
}
# ram_huge_kb PID: kB of hugepages its guest RAM mapping has in.
ram_huge_kb() {
	awk '/memfd:stasis-ram/ { on = 1; next } /^[0-9a-f]+-[0-9a-f]+ / { on = 0 }
		on && /^(Shared|Private)_Hugetlb:/ { kb += $2 } END { print kb + 0 }' \
		"/proc/$1/smaps"
}

# Not enough free hugepages: one line, status 6, before any guest runs.
need=$(($(avail) + 1))
rc=0
err=$("$STASIS" run --kernel "$GUESTS/memtest.elf" --mem $((need * 2))M \
	--hugepages 2M --serial none 2>&1 </dev/null) || rc=$?
[[ $rc == 6 && $(grep -c . <<<"$err") == 1 ]] || fail "no free hugepages: status $rc: $err"
[[ $err == *"$need free 2 MiB hugepages needed"*"echo "*" > /proc/sys/vm/nr_hugepages"* ]] || fail "no free hugepages: $err"
rc=0
err=$("$STASIS" run --kernel "$GUESTS/memtest.elf" --mem 3M --hugepages 2M \
	--serial none 2>&1 </dev/null) || rc=$?
[[ $rc == 2 && $err == *"--mem must be a multiple of 2 MiB"* ]] || fail "--mem 3M: $rc $err"

old=$(cat "$NR")
at_exit sh -c "echo $old >$NR"
echo $((old + 40)) >"$NR" || fail "cannot write $NR"
(($(avail) >= 34)) || fail "could not reserve hugepages: $(avail) free after raising nr_hugepages from $old to $((old + 40)) (fragmented host memory?)"
note "nr_hugepages $old -> $(cat "$NR") for the test (put back at its end)"

start_stasis "$WORK/a" run --kernel "$GUESTS/memtest.elf" --debug-exit \
	--api-socket "$S" --serial "file:$WORK/a" --mem 64M --hugepages 2M \
	--cmdline "mib=16"
wait_for_socket "$S"
wait_for_line "$WORK/a" "memtest: pass 1 ok" 120
[[ $(ram_page "$VM_PID") == 2048 ]] || fail "boot: guest RAM pages of $(ram_page "$VM_PID") kB, not 2048"
ctl "$S" snapshot "$WORK/h.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "boot"
intact "$WORK/a"
"$STASIS" inspect "$WORK/h.snap" | grep -q '"hugepages":"2M"' || fail "the snapshot's config does not say hugepages"
last=$(last_pass "$WORK/a")

# Lazily, in whole huge pages: paused, with a recording holding the
# filler back, only what the restore itself read is in; once the
# recording ends everything arrives, 2 MiB at a time.
rm -f "$S"
start_stasis "$WORK/lazy" restore "$WORK/h.snap" --paused \
	"${HOLD[@]}" --api-socket "$S" --serial "file:$WORK/lazy"
wait_for_socket "$S"
[[ $(ram_page "$VM_PID") == 2048 ]] || fail "ondemand: RAM pages of $(ram_page "$VM_PID") kB"
early=$(ram_huge_kb "$VM_PID")
((early < 8192)) || fail "ondemand: $early kB in before the guest ran"
ctl "$S" resume >/dev/null
# (Its first whole line is the second: the snapshot may have cut the
# line of the pass in progress in two.)
wait_for_line "$WORK/lazy" "^memtest: pass $((last + 2)) ok" 120
"$STASIS" ctl "$S" working-set >/dev/null
wait_for_line "$WORK/lazy" "^memtest: pass $((last + 3)) ok" 120
late=$(ram_huge_kb "$VM_PID")
((late >= 16384 && late % 2048 == 0)) || fail "ondemand: $late kB in after two passes over 16 MiB"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "ondemand"
intact "$WORK/lazy"

# The default restore (ondemand, with the set just recorded), and copy.
for mode in ondemand copy; do
	rm -f "$S"
	start_stasis "$WORK/$mode" restore "$WORK/h.snap" --memory "$mode" \
		--api-socket "$S" --serial "file:$WORK/$mode"
	wait_for_socket "$S"
	wait_for_line "$WORK/$mode" "^memtest: pass $((last + 2)) ok" 120
	[[ $(ram_page "$VM_PID") == 2048 ]] || fail "$mode: RAM pages of $(ram_page "$VM_PID") kB"
	ctl "$S" shutdown >/dev/null
	wait_exit "$VM_PID" 60
	expect_status "$RC" 0 "$mode"
	intact "$WORK/$mode"
done
grep -q "prefetching" "$WORK/ondemand.err" || fail "ondemand: the working set was not used: $(cat "$WORK/ondemand.err")"

# One flipped byte in a chunk the guest reads: the whole 2 MiB page it
# belongs to is never installed; one line names the chunk (status 2).
read -r idx _ off < <(chunk_table last-full "$WORK/h.snap")
[[ -n $idx ]] || fail "no full chunk in h.snap"
cp "$WORK/h.snap" "$WORK/bad.snap"
flip_byte "$WORK/bad.snap" $((off + 777)) 0x04
rc=0
err=$(timeout -s KILL "$(scaled 120)" "$STASIS" restore "$WORK/bad.snap" \
	--serial "file:$WORK/bad" 2>&1 >/dev/null </dev/null) || rc=$?
[[ $rc == 2 && $(grep -c . <<<"$err") == 1 && $err == *"memory chunk $idx "*"checksum mismatch"* ]] || fail "damaged chunk on hugepages: status $rc: $err"
intact "$WORK/bad"

rc=0
err=$(timeout -s KILL "$(scaled 60)" "$STASIS" restore "$WORK/h.snap" \
	--memory map --serial none 2>&1 </dev/null) || rc=$?
[[ $rc == 2 && $(grep -c . <<<"$err") == 1 && $err == *"--memory map cannot back hugepages"* ]] || fail "map: status $rc: $err"

# Host policy: --hugepages off restores on ordinary pages, and a file
# saved so restores on hugepages with --hugepages 2M.
rm -f "$S"
start_stasis "$WORK/off" restore "$WORK/h.snap" --hugepages off \
	--api-socket "$S" --serial "file:$WORK/off"
wait_for_socket "$S"
wait_for_line "$WORK/off" "^memtest: pass $((last + 2)) ok" 120
[[ $(ram_page "$VM_PID") == 4 ]] || fail "--hugepages off: RAM pages of $(ram_page "$VM_PID") kB"
ctl "$S" snapshot "$WORK/plain.snap" --then exit >/dev/null
wait_exit "$VM_PID" 60
intact "$WORK/off"
! "$STASIS" inspect "$WORK/plain.snap" | grep -q '"hugepages"' || fail "--hugepages off still recorded"
last=$(last_pass "$WORK/off")
rm -f "$S"
start_stasis "$WORK/on" restore "$WORK/plain.snap" --hugepages 2M \
	--api-socket "$S" --serial "file:$WORK/on"
wait_for_socket "$S"
wait_for_line "$WORK/on" "^memtest: pass $((last + 2)) ok" 120
[[ $(ram_page "$VM_PID") == 2048 ]] || fail "--hugepages 2M: RAM pages of $(ram_page "$VM_PID") kB"
ctl "$S" shutdown >/dev/null
wait_exit "$VM_PID" 60
expect_status "$RC" 0 "--hugepages 2M"
intact "$WORK/on"
note "lazy hugepage restore: $early kB in before the guest ran, $late kB after"
