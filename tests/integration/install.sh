# `meson install` into a scratch DESTDIR: the binary, the man pages, the
# systemd unit and the bash completion land in their places, the
# installed binary runs, and the pages, completion and unit agree with
# the binary's own --help. Needs no KVM. BUILD and ROOT come from
# tests/run-all.sh.
set -euo pipefail
: "${BUILD:?}" "${ROOT:?}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stasis-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() {
	echo "install: FAIL: $*" >&2
	exit 1
}
D=$WORK/dest
DESTDIR=$D meson install -C "$BUILD" --no-rebuild --quiet >"$WORK/log" 2>&1 ||
	fail "meson install: $(tail -n 5 "$WORK/log")"
prefix=$(meson introspect --buildoptions "$BUILD" |
	python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
P=$D$prefix
BIN=$P/bin/stasis
pages=(stasis stasis-run stasis-restore stasis-ctl stasis-inspect stasis-verify stasis-merge)
for f in "$BIN" "$P/lib/systemd/system/stasis@.service" \
	"$P/share/bash-completion/completions/stasis" \
	"${pages[@]/#/$P/share/man/man1/}"; do
	[[ $f == *man1/* ]] && f=$f.1
	[[ -f $f ]] || fail "not installed: ${f#"$D"}"
done
# Nothing lands outside DESTDIR's prefix.
extra=$(cd "$D" && find . -type f | grep -v "^\.$prefix/" || true)
[[ -z $extra ]] || fail "installed outside the prefix: $extra"

# The installed binary runs.
"$BIN" --version | grep -Eq '^stasis [0-9]+\.[0-9]+\.[0-9]+$' || fail "installed stasis --version"
"$BIN" --help >"$WORK/help" || fail "installed stasis --help"

# A man page per subcommand of --help, each clean roff naming every
# option that subcommand's --help lists, and the completion offering it.
for cmd in $(sed -n 's/^  \([a-z][a-z]*\) .*/\1/p' "$WORK/help" | sort -u); do
	page=$P/share/man/man1/stasis-$cmd.1
	[[ -f $page ]] || fail "no man page for 'stasis $cmd'"
	groff -man -Tutf8 -ww -z "$page" 2>"$WORK/groff" || fail "groff $page"
	[[ ! -s $WORK/groff ]] || fail "$page: $(head -n 3 "$WORK/groff")"
	grep -q "@VERSION@" "$page" && fail "$page: version not filled in"
	[[ $cmd == run || $cmd == restore || $cmd == receive ]] || continue
	"$BIN" "$cmd" --help | grep -o -- '--[a-z][a-z-]*' | sort -u >"$WORK/opts"
	while read -r opt; do
		grep -qF -- "${opt//-/\\-}" "$page" || fail "$page does not describe $opt"
		grep -qw -- "$opt" "$P/share/bash-completion/completions/stasis" ||
			fail "the bash completion lacks 'stasis $cmd $opt'"
	done <"$WORK/opts"
done
groff -man -Tutf8 -ww -z "$P/share/man/man1/stasis.1" 2>"$WORK/groff" && [[ ! -s $WORK/groff ]] ||
	fail "stasis.1: $(head -n 3 "$WORK/groff")"

# The completion completes: subcommands, options, fixed values.
if [[ -f /usr/share/bash-completion/bash_completion ]]; then
	complete_words() {
		bash -c '. /usr/share/bash-completion/bash_completion
			. "$1"; shift
			COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
			COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
			_stasis; printf "%s\n" "${COMPREPLY[@]}"' _ \
			"$P/share/bash-completion/completions/stasis" "$@"
	}
	# offers WORD ARGS...: completing ARGS offers WORD. The words are
	# taken whole before they are searched: bash writes them one line at
	# a time, and a `grep -q` that stops at the first match would leave
	# the next write a broken pipe, failing the pipeline (pipefail).
	offers() {
		local want=$1 got
		shift
		got=$(complete_words "$@") || return 1
		grep -qxF -- "$want" <<<"$got"
	}
	[[ $(complete_words stasis res) == restore ]] || fail "completion: stasis res"
	[[ $(complete_words stasis rec) == receive ]] || fail "completion: stasis rec"
	offers --on-term stasis run --on || fail "completion: run --on"
	offers snapshot: stasis run --on-term "" || fail "completion: --on-term values"
	offers stop stasis run --on-term "" || fail "completion: --on-term values"
	offers snapshot stasis ctl /x.sock sn || fail "completion: ctl"
	offers --postcopy stasis ctl /x.sock migrate unix:/m --po || fail "completion: ctl migrate --postcopy"
	offers postcopy stasis ctl /x.sock migrate unix:/m --on-timeout "" || fail "completion: --on-timeout values"
	offers --live stasis ctl /x.sock snapshot /x.snap --l || fail "completion: ctl snapshot --live"
else
	echo "install: bash-completion is not installed: completion not exercised" >&2
	exit 1
fi

# The unit is one systemd accepts, its ExecStart the installed binary.
unit=$P/lib/systemd/system/stasis@.service
grep -q "^ExecStart=$prefix/bin/stasis run " "$unit" || fail "ExecStart: $(grep ExecStart "$unit")"
if command -v systemd-analyze >/dev/null; then
	# verify wants the binary where ExecStart says and the page named
	# by Documentation=: point both into DESTDIR.
	sed "s|^ExecStart=$prefix/bin/stasis|ExecStart=$BIN|" "$unit" >"$WORK/stasis@check.service"
	MANPATH=$P/share/man systemd-analyze verify "$WORK/stasis@check.service" >"$WORK/verify" 2>&1 ||
		fail "systemd-analyze verify: $(cat "$WORK/verify")"
	[[ ! -s $WORK/verify ]] || fail "systemd-analyze verify: $(cat "$WORK/verify")"
else
	echo "install: systemd-analyze not found: the unit is not verified"
fi
echo "install: all checks passed"
