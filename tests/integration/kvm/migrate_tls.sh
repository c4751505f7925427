# Migration over TLS between two network namespaces joined by a veth pair
# this test makes (it needs root, ip(8) and openssl(1), and fails saying
# so without them). The certificates are made here, under two CAs: with
# good ones the counter guest moves and counts on, and memtest moves
# over four connections, and by post-copy, with every word intact; a
# source or a destination whose certificate is of the other CA, or a
# destination whose certificate names another address, is refused in the
# handshake (both sides say so in one line, the destination never makes
# a VM) and the source runs on; plain tcp without --insecure is refused.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/integration/migrate_lib.sh"
command -v openssl >/dev/null || fail "needs openssl(1) to make the test certificates"
netns_pair 10.213.8

make_ca "$WORK/ca" "stasis test CA"
make_ca "$WORK/other-ca" "another CA"
make_tls_dir "$WORK/ca" "$WORK/tls-a" source "IP:10.213.8.1"
make_tls_dir "$WORK/ca" "$WORK/tls-b" destination "IP:10.213.8.2,DNS:dest.test"
# Trusting the right CA, but with a certificate of the other one.
make_tls_dir "$WORK/other-ca" "$WORK/wrong-a" source "IP:10.213.8.1"
make_tls_dir "$WORK/other-ca" "$WORK/wrong-b" destination "IP:10.213.8.2"
cp "$WORK/ca/ca.pem" "$WORK/wrong-a/ca.pem"
cp "$WORK/ca/ca.pem" "$WORK/wrong-b/ca.pem"
# The right CA, the wrong address.
make_tls_dir "$WORK/ca" "$WORK/name-b" destination "IP:10.213.8.99"

in_ns "$NA" "$WORK/a" run --kernel "$GUESTS/counter.elf" --debug-exit \
	--api-socket "$WORK/a.sock" --serial "file:$WORK/a" --cmdline "hz=100"
SRC=$VM_PID
wait_for_socket "$WORK/a.sock"
counter_reaches "$WORK/a" 20 60

migrate_to "$WORK/a.sock" "tcp:10.213.8.2:7101"
expect_refused "tcp without --insecure or --tls-dir" "give --tls-dir DIR, or add --insecure"
migrate_to "$WORK/a.sock" "unix:$WORK/m.sock" --tls-dir "$WORK/tls-a"
expect_refused "--tls-dir on a UNIX socket" "--tls-dir is for tcp"
migrate_to "$WORK/a.sock" "tcp:10.213.8.2:7101" --tls-dir "$WORK/no-such-dir"
expect_refused "a missing --tls-dir" "cannot read .*no-such-dir/ca.pem"

# receive_in NAME TLS_DIR: a destination in NB on 10.213.8.2:PORT (one
# port per destination), its pid DST, its files $WORK/NAME.*.
PORT=7100
receive_in() {
	local name=$1 dir=$2
	PORT=$((PORT + 1))
	in_ns "$NB" "$WORK/$name" receive --listen "tcp:10.213.8.2:$PORT" \
		--tls-dir "$dir" --api-socket "$WORK/$name.sock" \
		--serial "file:$WORK/$name"
	DST=$VM_PID
	wait_for_line "$WORK/$name.err" "waiting for a VM on tcp:10.213.8.2:$PORT" 30
}

# refused NAME SRC_DIR SRC_REGEX DST_REGEX: a migration with the source's
# --tls-dir SRC_DIR to the destination NAME fails in the handshake with
# those lines on each side; the destination made no VM and the source
# counts on.
refused() {
	local name=$1 dir=$2 src_re=$3 dst_re=$4
	migrate_to "$WORK/a.sock" "tcp:10.213.8.2:$PORT" --tls-dir "$dir"
	expect_refused "$name: the source" "TLS.*$src_re"
	wait_exit "$DST" 60
	expect_status "$RC" 2 "$name: the destination"
	local err
	err=$(grep "error:" "$WORK/$name.err") || fail "$name: the destination said nothing"
	[[ $(printf '%s\n' "$err" | wc -l) == 1 ]] || fail "$name: not one line: $err"
	[[ $err =~ TLS.*$dst_re ]] || fail "$name: destination said '$err', not '$dst_re'"
	[[ ! -e $WORK/$name.sock ]] || fail "$name: the destination made a VM"
	still_counting "$WORK/a.sock" "$WORK/a" "$name: the source"
}

receive_in wrong-src "$WORK/tls-b"
refused wrong-src "$WORK/wrong-a" "the peer refused this side" \
	"the source's certificate is refused: .*issuer is unknown"

receive_in wrong-dst "$WORK/wrong-b"
refused wrong-dst "$WORK/tls-a" \
	"the destination's certificate is refused: .*issuer is unknown" \
	"the source refused this side"

receive_in wrong-name "$WORK/name-b"
refused wrong-name "$WORK/tls-a" \
	"the destination's certificate is refused: .*name in the certificate does not match" \
	"the source refused this side"

# One side with TLS, the other in plain tcp: refused by both, named.
PORT=$((PORT + 1))
in_ns "$NB" "$WORK/plain" receive --listen "tcp:10.213.8.2:$PORT" --insecure \
	--api-socket "$WORK/plain.sock" --serial "file:$WORK/plain"
DST=$VM_PID
wait_for_line "$WORK/plain.err" "waiting for a VM on tcp:10.213.8.2:$PORT" 30
migrate_to "$WORK/a.sock" "tcp:10.213.8.2:$PORT" --tls-dir "$WORK/tls-a"
expect_refused "TLS to a plain destination" "does not speak TLS"
wait_exit "$DST" 60
expect_status "$RC" 2 "the plain destination"
grep -q "speaks TLS: give --tls-dir here too" "$WORK/plain.err" ||
	fail "the plain destination said: $(cat "$WORK/plain.err")"
still_counting "$WORK/a.sock" "$WORK/a" "after TLS to a plain destination"

# Good certificates: the counter moves over and counts on.
receive_in b "$WORK/tls-b"
migrate_to "$WORK/a.sock" "tcp:10.213.8.2:$PORT" --tls-dir "$WORK/tls-a"
expect_migrated
wait_exit "$SRC" 60
expect_status "$RC" 0 "source after the migration"
wait_for_socket "$WORK/b.sock"
grep -q "migration from .*: 1 connection, TLS" "$WORK/b.err" ||
	fail "the destination did not say TLS: $(cat "$WORK/b.err")"
wait_for_line "$WORK/b" "^counter: [0-9]+$" 60
restored_continues "$WORK/a" "$WORK/b"
ctl "$WORK/b.sock" shutdown >/dev/null
wait_exit "$DST" 60
expect_status "$RC" 0 "destination after shutdown"

# memtest_over_tls NAME CPUS WHAT [migrate options...]: memtest with CPUS
# vCPUs rewriting 64 MiB at NAME.a migrates over TLS to NAME.b; every word
# is as it was and its passes go on there, then it shuts down.
memtest_over_tls() {
	local name=$1 cpus=$2 what=$3 last
	shift 3
	in_ns "$NA" "$WORK/$name.a" run --kernel "$GUESTS/memtest.elf" \
		--debug-exit --api-socket "$WORK/$name.a.sock" \
		--serial "file:$WORK/$name.a" --mem 128M --cpus "$cpus" \
		--cmdline "mib=64 smp=1"
	SRC=$VM_PID
	wait_for_socket "$WORK/$name.a.sock"
	wait_for_line "$WORK/$name.a" "memtest: pass 2 ok" 120
	receive_in "$name.b" "$WORK/tls-b"
	migrate_to "$WORK/$name.a.sock" "tcp:10.213.8.2:$PORT" \
		--tls-dir "$WORK/tls-a" "$@"
	expect_migrated
	wait_exit "$SRC" 60
	expect_status "$RC" 0 "$what source after the migration"
	wait_for_socket "$WORK/$name.b.sock"
	last=$(memtest_pass "$WORK/$name.a" tail)
	wait_for_line "$WORK/$name.b" \
		"^memtest: pass $((last + 2)) ok \(64 MiB, cpus=$cpus" 120
	memtest_intact "$WORK/$name.b" "$WORK/$name.a"
	ctl "$WORK/$name.b.sock" shutdown >/dev/null
	wait_exit "$DST" 60
	expect_status "$RC" 0 "$what destination after shutdown"
}

# memtest with 4 vCPUs, over TLS and four connections.
memtest_over_tls m 4 memtest --connections 4
grep -q "migration from .*: 4 connections, TLS" "$WORK/m.b.err" ||
	fail "the destination did not take 4 connections: $(cat "$WORK/m.b.err")"

# Post-copy over TLS: the priority connection runs through TLS too, and
# the destination's pager threads serve faults over it under their own
# seccomp filter.
memtest_over_tls p 2 post-copy --postcopy
[[ $MIG_OUT == *", post-copy: "*" faults, blocked p50 "* ]] ||
	fail "no post-copy report: $MIG_OUT"
