# Command-line and input checks that need no KVM: every bad input gives one
# clear line on stderr and a non-zero exit, never a crash or a hang.
set -u
. "$(dirname "$0")/lib.sh"

# expect RC REGEX -- ARGS...: runs stasis, checks status and stderr.
expect() {
	local want=$1 re=$2 rc=0 err lines
	shift 3
	err=$(timeout -s KILL "$(scaled 20)" "$STASIS" "$@" 2>&1 >/dev/null </dev/null) || rc=$?
	[[ $rc == "$want" ]] || fail "stasis $*: status $rc, expected $want ($err)"
	[[ $err =~ $re ]] || fail "stasis $*: stderr '$err' does not match '$re'"
	lines=$(printf '%s\n' "$err" | grep -c .) || true
	[[ $lines -le 1 ]] || fail "stasis $*: $lines lines of errors, expected one: $err"
}

# Usage and option errors: status 2.
expect 2 "usage" -- 
expect 2 "unknown command" -- frobnicate
expect 2 "--kernel is required" -- run
expect 2 "unknown or incomplete option '--bogus'" -- run --kernel x --bogus
expect 2 "--mem: 'lots' is not a size" -- run --kernel x --mem lots
expect 2 "--mem: .* outside" -- run --kernel x --mem 1k
expect 2 "--mem: .* outside" -- run --kernel x --mem 2T
expect 2 "--cpus: '0' is not a number from 1 to 64" -- run --kernel x --cpus 0
expect 2 "--cpus" -- run --kernel x --cpus 65
expect 2 "--cpus" -- run --kernel x --cpus two
expect 2 "--serial: 'tcp:1' is not" -- run --kernel x --serial tcp:1
expect 2 "--cpu-template: 'fast' is not" -- run --kernel x --cpu-template fast
expect 2 "unexpected argument 'extra'" -- run --kernel x extra
expect 2 "--cmdline: longer than" -- run --kernel x --cmdline "$(head -c 5000 /dev/zero | tr '\0' a)"

# Config files.
echo '{"kernel": "x", "cpus": "many"}' >"$WORK/bad.json"
expect 2 "--config: .*bad.json: --cpus" -- run --config "$WORK/bad.json"
echo '{"kernal": "x"}' >"$WORK/typo.json"
expect 2 "unknown key \"kernal\"" -- run --config "$WORK/typo.json"
echo '{"kernel": ' >"$WORK/cut.json"
expect 2 "not valid JSON" -- run --config "$WORK/cut.json"
expect 2 "cannot open" -- run --config "$WORK/none.json"

# Kernel images are checked before any KVM work.
expect 2 "kernel: cannot open" -- run --kernel "$WORK/missing"
: >"$WORK/empty"
expect 2 "empty" -- run --kernel "$WORK/empty"
head -c 4096 /dev/urandom >"$WORK/random"
expect 2 "not an ELF or bzImage" -- run --kernel "$WORK/random"
expect 2 "is not a regular file" -- run --kernel "$WORK"
head -c 100 "$GUESTS/hello.elf" >"$WORK/truncated.elf"
expect 2 "kernel" -- run --kernel "$WORK/truncated.elf"
head -c 600 "$GUESTS/bootinfo.bzimage" >"$WORK/truncated.bz"
expect 2 "kernel" -- run --kernel "$WORK/truncated.bz"
expect 2 "initrd: cannot open" -- run --kernel "$GUESTS/hello.elf" --initrd "$WORK/missing"

# Snapshot files: inspect and verify never crash on garbage.
head -c 300 /dev/urandom >"$WORK/garbage.snap"
expect 1 "bad magic" -- verify "$WORK/garbage.snap"
expect 1 "cannot open" -- verify "$WORK/missing.snap"
expect 2 "usage" -- verify
expect 2 "bad magic" -- restore "$WORK/garbage.snap"
expect 2 "usage" -- restore
expect 2 "--clock: 'slow' is not" -- restore --clock slow x
expect 2 "usage: stasis restore --wait" -- restore --wait --mem-max 1G
expect 2 "usage: stasis restore --wait" -- restore --wait --api-socket "$WORK/t.sock"
expect 2 "usage: stasis restore --wait" -- restore --wait --api-socket "$WORK/t.sock" --mem-max 1G x.snap
expect 2 "--mem-max: '3' is not a size" -- restore --wait --api-socket "$WORK/t.sock" --mem-max 3
expect 2 "--mem-max: '2T' is not a size" -- restore --wait --api-socket "$WORK/t.sock" --mem-max 2T
expect 2 "--cpus: '0' is not a vCPU count" -- restore --wait --api-socket "$WORK/t.sock" --mem-max 1G --cpus 0
expect 2 "--user cannot be used with --wait" -- restore --wait --api-socket "$WORK/t.sock" --mem-max 1G --user 65534
expect 2 "--mem-max and --cpus are for --wait" -- restore --mem-max 1G x.snap

# Migration: receive takes restore's options, with --listen and no FILE.
expect 2 "usage: stasis receive --listen" -- receive
expect 2 "usage: stasis receive --listen" -- receive --listen "unix:$WORK/m.sock" x.snap
expect 2 "'udp:h:1' is not unix:PATH or tcp:HOST:PORT" -- receive --listen udp:h:1
expect 2 "add --insecure" -- receive --listen tcp:127.0.0.1:7
expect 2 "give --tls-dir DIR, or add --insecure" -- receive --listen tcp:127.0.0.1:7
expect 2 "--tls-dir is for tcp" -- receive --listen "unix:$WORK/m.sock" --tls-dir "$WORK"
expect 2 "--tls-dir and --insecure contradict" -- receive --listen tcp:127.0.0.1:7 --tls-dir "$WORK" --insecure
expect 2 "--tls-dir: cannot read .*/nothing/ca.pem: No such file" -- receive --listen tcp:127.0.0.1:7 --tls-dir "$WORK/nothing"
expect 2 "unknown or incomplete option '--tls-dir'" -- restore x --tls-dir /x
expect 2 "a migration stream is not signed" -- receive --listen "unix:$WORK/m.sock" --require-signed k
expect 2 "--clock: 'slow' is not" -- receive --listen "unix:$WORK/m.sock" --clock slow
expect 2 "unknown or incomplete option '--listen'" -- restore x --listen unix:/x
: >"$WORK/plain"
expect 2 "cannot listen on unix:.*plain" -- receive --listen "unix:$WORK/plain"
expect 2 "migrate needs a destination" -- ctl "$WORK/none.sock" migrate
expect 2 "--then only applies to snapshot" -- ctl "$WORK/none.sock" migrate unix:/x --then exit
expect 2 "--timeout-s takes a number" -- ctl "$WORK/none.sock" migrate unix:/x --timeout-s soon
expect 2 "--connections takes a number" -- ctl "$WORK/none.sock" migrate unix:/x --connections many
expect 2 "--tls-dir needs a value" -- ctl "$WORK/none.sock" migrate tcp:h:1 --tls-dir

# Managed save and resume-or-boot (docs/install.md).
expect 2 "--on-term: 'save' is not snapshot:PATH or stop" -- run --kernel x --on-term save
expect 2 "--on-term: 'snapshot:' is not" -- restore --on-term snapshot: x
expect 2 "--resume-from: path empty" -- run --kernel x --resume-from ""
# Nothing at PATH: boots (here a kernel that is none, so it stops there).
err=$(timeout -s KILL 20 "$STASIS" run --kernel "$WORK/random" --resume-from "$WORK/none.snap" 2>&1 </dev/null) && fail "booted a random kernel"
[[ $err == *"$WORK/none.snap does not exist: booting $WORK/random"* && $err == *"not an ELF or bzImage"* ]] ||
	fail "--resume-from, nothing there: $err"
# Something that is not a snapshot: refused with status 2, left alone.
cp "$WORK/garbage.snap" "$WORK/resume.snap"
rc=0
err=$(timeout -s KILL 20 "$STASIS" run --kernel "$GUESTS/hello.elf" --resume-from "$WORK/resume.snap" 2>&1 </dev/null) || rc=$?
[[ $rc == 2 && $err == *"resuming from $WORK/resume.snap"* && $err == *"bad magic"* ]] ||
	fail "--resume-from garbage: status $rc: $err"
cmp -s "$WORK/resume.snap" "$WORK/garbage.snap" || fail "--resume-from changed a refused file"
[[ ! -e $WORK/resume.snap.resumed ]] || fail "a refused file was set aside"
"$STASIS" run --help | grep -q -- '--on-term snapshot:PATH' || fail "run --help lacks --on-term"
"$STASIS" restore --help | grep -q -- '--on-term' || fail "restore --help lacks --on-term"

# The control client.
expect 6 "cannot connect to" -- ctl "$WORK/no.sock" status
expect 2 "usage" -- ctl "$WORK/no.sock" dance
expect 2 "--base needs" -- ctl "$WORK/no.sock" snapshot "$WORK/x.snap" --base ""
expect 2 "--base only applies to snapshot" -- ctl "$WORK/no.sock" status --base "$WORK/x.snap"
# Each value option takes --NAME VALUE and --NAME=VALUE alike.
expect 2 "--then takes resume, pause or exit" -- ctl "$WORK/no.sock" snapshot "$WORK/x.snap" --then=later
expect 2 "--then takes resume, pause or exit" -- ctl "$WORK/no.sock" snapshot "$WORK/x.snap" --then
expect 2 "--compress: " -- ctl "$WORK/no.sock" snapshot "$WORK/x.snap" --compress=gzip
expect 2 "--base needs" -- ctl "$WORK/no.sock" snapshot "$WORK/x.snap" --base=
expect 2 "unknown ctl option '--thenx'" -- ctl "$WORK/no.sock" snapshot "$WORK/x.snap" --thenx

# merge: usage, and a file that is no snapshot, each in one line.
expect 2 "usage: stasis merge" -- merge
expect 2 "usage: stasis merge" -- merge "$WORK/x.snap"
printf 'not a snapshot' >"$WORK/junk.snap"
expect 2 "bad magic" -- merge "$WORK/junk.snap" -o "$WORK/out.snap"
[[ ! -e $WORK/out.snap ]] || fail "merge of junk left an output"

# Without /dev/kvm a valid kernel gets a message naming the cause.
if [[ ! -e /dev/kvm ]]; then
	expect 6 "/dev/kvm does not exist" -- run --kernel "$GUESTS/hello.elf"
fi

# Whole outputs, not piped into grep -q (SIGPIPE under pipefail).
out=$("$STASIS" --version) || fail "--version: status $?"
[[ $out =~ ^stasis\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version: $out"
out=$("$STASIS" run --help) || fail "run --help: status $?"
[[ $out == *--debug-exit* ]] || fail "run --help does not mention --debug-exit"
echo "cli: all checks passed"
