#!/usr/bin/env bash
# `make demo`: boots the bundled guests, then suspends a running guest to a
# file and brings it back in a fresh process. On a host without /dev/kvm it
# runs itself inside the nested test VM (docs/testing-without-kvm.md).
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
S=$BUILD/stasis
G=$BUILD/guests

if ! python3 -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; then
	if [[ ${KVMVM:-0} == 1 ]]; then
		echo "demo: no usable /dev/kvm even in the nested VM" >&2
		exit 1
	fi
	echo "demo: this host has no usable /dev/kvm; running the demo in the"
	echo "      nested test VM (QEMU TCG + SVM): everything is ~50x slower."
	exec "$ROOT/scripts/kvm-vm.sh" run "${KVMVM_CACHE:-/var/cache/stasis-kvm-vm}" \
		"$ROOT" -- "$ROOT/scripts/demo.sh" "$BUILD"
fi

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }
W=$(mktemp -d /tmp/stasis-demo.XXXXXX)
trap 'rm -rf "$W"' EXIT

step "hello: the smallest guest (exit code 0 = status 1 via debug-exit)" \
	"stasis run --kernel hello.elf --debug-exit"
"$S" run --kernel "$G/hello.elf" --debug-exit || echo "(exit status $?)"

step "bootinfo: what the guest received through PVH" \
	"stasis run --kernel bootinfo.elf --debug-exit --mem 512M --cmdline 'demo=1'"
"$S" run --kernel "$G/bootinfo.elf" --debug-exit --mem 512M --cmdline 'demo=1' || true

step "smp: four vCPUs started by the guest, all counting" \
	"stasis run --kernel smp.elf --debug-exit --cpus 4 --cmdline rounds=2"
"$S" run --kernel "$G/smp.elf" --debug-exit --cpus 4 --cmdline "rounds=2" || true

step "suspend: a counting guest, saved to a file while it runs" \
	"stasis run --kernel counter.elf --api-socket api.sock ... & stasis ctl api.sock snapshot counter.snap --then exit"
"$S" run --kernel "$G/counter.elf" --debug-exit --api-socket "$W/api.sock" \
	--serial "file:$W/before" --cmdline "hz=10" &
pid=$!
for _ in $(seq 300); do
	[[ $(grep -c '^counter: [0-9]' "$W/before" 2>/dev/null) -ge 5 ]] && break
	sleep 0.1
done
"$S" ctl "$W/api.sock" status
"$S" ctl "$W/api.sock" snapshot "$W/counter.snap" --then exit
wait "$pid" || true
echo "last lines before the snapshot:"
tail -n 3 "$W/before"

step "the snapshot file" "stasis inspect counter.snap"
"$S" inspect "$W/counter.snap"

step "resume: a fresh process carries on counting" \
	"stasis restore counter.snap"
"$S" restore "$W/counter.snap" --api-socket "$W/api2.sock" --serial "file:$W/after" &
pid=$!
for _ in $(seq 300); do
	[[ $(grep -c '^counter: [0-9]' "$W/after" 2>/dev/null) -ge 5 ]] && break
	sleep 0.1
done
"$S" ctl "$W/api2.sock" shutdown
wait "$pid" || true
echo "first lines after the restore:"
head -n 3 "$W/after"
echo
echo "demo: done"
