#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/) and runs each for
# FUZZ_SECONDS (default 20) from its seed corpus. Prints "STATUS NAME" per
# target for tests/run-all.sh; a target's log is LOGS/fuzz-NAME.log.
set -u
LOGS=${1:?usage: tests/fuzz/run.sh LOG_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ_BUILD=$ROOT/build-fuzz
SECONDS_EACH=${FUZZ_SECONDS:-20}

if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
	CC=clang meson setup "$FUZZ_BUILD" -Dfuzz=true >"$LOGS/fuzz-setup.log" 2>&1 ||
		{ echo "1 setup"; exit 0; }
fi
targets=$(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
for t in $targets; do
	if ! ninja -C "$FUZZ_BUILD" "tests/fuzz/$t" >"$LOGS/fuzz-$t.log" 2>&1; then
		echo "1 $t"
		continue
	fi
	corpus=$LOGS/corpus-$t
	mkdir -p "$corpus"
	[ -d "$ROOT/tests/fuzz/corpus/$t" ] && cp "$ROOT/tests/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null
	"$FUZZ_BUILD/tests/fuzz/$t" -max_total_time="$SECONDS_EACH" \
		-max_len=65536 -rss_limit_mb=1024 "$corpus" >>"$LOGS/fuzz-$t.log" 2>&1
	echo "$? $t"
done
