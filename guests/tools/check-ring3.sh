#!/usr/bin/env bash
# check-ring3.sh - fails when a guest image's ring-3 code holds an
# instruction that does not work the same on every KVM. Ring 3 runs at
# IOPL 0 (docs/guest-kit.md, "Ring 3"): port I/O goes through the TSS
# I/O bitmap and the #GP handler carries out sti, cli and hlt. Refused:
#   int $n, int1, into  some hosts raise #UD for any of them in ring 3
#   popf, iret          would change IF or IOPL on some hosts and
#                       silently not on others
# Ring-0 code (sections .head.text and .text.ring0) is linked first and
# ends at the symbol guest_ring0_text_end; everything after it in .text
# is ring-3 code. Usage: check-ring3.sh IMAGE.elf...
# Prints one line per offending instruction; exits 1 if there was any.
set -u

status=0
for elf in "$@"; do
	end=$(nm "$elf" 2>/dev/null | awk '$3 == "guest_ring0_text_end" { print $1 }')
	if [ -z "$end" ]; then
		echo "$elf: no guest_ring0_text_end symbol (not linked with guest.ld?)"
		status=1
		continue
	fi
	if ! dis=$(objdump -d --no-show-raw-insn -j .text \
		--start-address="0x$end" "$elf" 2>&1); then
		echo "$elf: objdump failed: $dis"
		status=1
		continue
	fi
	# objdump lines: "  100a5b:\tout    %al,(%dx)"; "<name>:" heads a
	# function.
	bad=$(awk -F'\t' -v elf="$elf" '
		/^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ /, "", fn); sub(/:$/, "", fn) }
		NF >= 2 && $2 ~ /^(int[ \t]|int1|icebp|into|popf|iret)/ {
			addr = $1; gsub(/[ :]/, "", addr)
			printf "%s: ring-3 code at 0x%s %s: %s\n", elf, addr, fn, $2
		}' <<<"$dis")
	if [ -n "$bad" ]; then
		echo "$bad"
		status=1
	fi
done
exit $status
