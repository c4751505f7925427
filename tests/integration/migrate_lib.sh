# Helpers for the migration tests (sourced after lib.sh): a destination
# waiting with `stasis receive`, a migration, and the checks that the VM
# runs in exactly one place.

PROXY=$ROOT/tests/tools/migrate_proxy.py

# start_receive OUT LISTEN_SOCKET API_SOCKET [receive options...]: starts a
# destination listening on unix:LISTEN_SOCKET, serial output into OUT;
# sets RECV_PID and waits until it listens.
start_receive() {
	local out=$1 listen=$2 api=$3
	shift 3
	rm -f "$listen" "$api"
	start_stasis "$out" receive --listen "unix:$listen" --api-socket "$api" \
		--serial "file:$out" "$@"
	RECV_PID=$VM_PID
	wait_for_line "$out.err" "waiting for a VM on unix:$listen" 30
}

# start_proxy LISTEN CONNECT COUNT [proxy options...]: starts
# tests/tools/migrate_proxy.py between unix:LISTEN and unix:CONNECT,
# counting bytes into COUNT; sets PROXY_PID and waits until it listens.
start_proxy() {
	local listen=$1 connect=$2 count=$3
	shift 3
	rm -f "$listen"
	python3 "$PROXY" "$listen" "$connect" "$count" "$@" &
	PROXY_PID=$!
	BG_PIDS+=("$PROXY_PID")
	wait_until 30 test -S "$listen" || fail "the proxy did not start"
}

# migrate_to SOCKET DEST [ctl options...]: ctl migrate; sets MIG_RC, the
# reply in MIG_OUT and the error in MIG_ERR.
migrate_to() {
	local sock=$1 dest=$2
	shift 2
	MIG_RC=0
	MIG_OUT=$(timeout -s KILL "$(scaled 120)" "$STASIS" ctl "$sock" migrate \
		"$dest" "$@" 2>"$WORK/mig.err") || MIG_RC=$?
	MIG_ERR=$(cat "$WORK/mig.err")
}

# expect_migrated: the last migrate_to succeeded.
expect_migrated() {
	((MIG_RC == 0)) || fail "migration failed (status $MIG_RC): $MIG_ERR"
	[[ $MIG_OUT == "migrated: "* ]] || fail "migrate printed '$MIG_OUT'"
}

# expect_refused WHAT REGEX: the last migrate_to failed with one line
# matching REGEX.
expect_refused() {
	((MIG_RC == 1)) || fail "$1: ctl migrate status $MIG_RC, expected 1 ($MIG_ERR)"
	[[ $(printf '%s\n' "$MIG_ERR" | wc -l) == 1 ]] || fail "$1: not one line: $MIG_ERR"
	[[ $MIG_ERR =~ $2 ]] || fail "$1: error '$MIG_ERR' does not match '$2'"
}

# still_counting SOCKET OUT WHAT: the VM at SOCKET runs and its counter
# moves on.
still_counting() {
	expect_state "$1" running "$3"
	local v
	v=$(last_counter "$2")
	counter_reaches "$2" $((v + 10)) 60
}

# make_ca DIR NAME: a throwaway CA (ca.pem, ca.key) in DIR, made now with
# openssl(1): the suite never keeps a key.
make_ca() {
	local dir=$1 name=$2
	mkdir -p "$dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 -subj "/CN=$name" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
		fail "openssl cannot make a CA in $dir"
}

# make_tls_dir CA_DIR DIR CN SAN: a --tls-dir in DIR: CA_DIR's ca.pem, and
# a certificate for CN (subjectAltName SAN, e.g. IP:10.0.0.2,DNS:x) signed
# by that CA, for both TLS server and client use.
make_tls_dir() {
	local ca=$1 dir=$2 cn=$3 san=$4
	mkdir -p "$dir"
	cp "$ca/ca.pem" "$dir/ca.pem"
	printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
		"$san" >"$dir/ext.cnf"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/key.pem" -out "$dir/req.csr" -subj "/CN=$cn" 2>/dev/null &&
		openssl x509 -req -in "$dir/req.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
			-CAcreateserial -out "$dir/cert.pem" -days 2 \
			-extfile "$dir/ext.cnf" 2>/dev/null ||
		fail "openssl cannot make a certificate in $dir"
	chmod 600 "$dir/key.pem"
}

# netns_pair PREFIX: two network namespaces NA and NB joined by a veth
# pair, NA at PREFIX.1/24 and NB at PREFIX.2/24, removed when the test
# ends. It needs root and ip(8), and fails saying so without them.
netns_pair() {
	local p=$1
	[[ $(id -u) == 0 ]] || fail "needs root to make two network namespaces and a veth pair"
	command -v ip >/dev/null || fail "needs ip(8) (iproute2) to make network namespaces"
	NA=stasis-ma$$ NB=stasis-mb$$
	local va=smva$$ vb=smvb$$
	ip netns add "$NA" || fail "cannot make network namespace $NA"
	at_exit ip netns del "$NA"
	ip netns add "$NB" || fail "cannot make network namespace $NB"
	at_exit ip netns del "$NB"
	ip link add "$va" type veth peer name "$vb" || fail "cannot make a veth pair"
	ip link set "$va" netns "$NA"
	ip link set "$vb" netns "$NB"
	ip -n "$NA" addr add "$p.1/24" dev "$va"
	ip -n "$NB" addr add "$p.2/24" dev "$vb"
	ip -n "$NA" link set "$va" up
	ip -n "$NB" link set "$vb" up
	ip -n "$NA" link set lo up
	ip -n "$NB" link set lo up
}

# in_ns NS OUT ARGS...: stasis ARGS in namespace NS, in the background;
# sets VM_PID.
in_ns() {
	local ns=$1 out=$2
	shift 2
	ip netns exec "$ns" "$STASIS" "$@" </dev/null >"$out.stdout" 2>"$out.err" &
	VM_PID=$!
	BG_PIDS+=("$VM_PID")
}

# memtest_pass FILE head|tail: CPU 0's first or last pass number.
memtest_pass() {
	complete_text <"$1" | sed -n 's/^memtest: pass \([0-9]*\) ok.*/\1/p' | "$2" -n 1
}

# memtest_intact OUT BEFORE: no mismatch, no restart, passes go on.
memtest_intact() {
	grep -q MISMATCH "$1" && fail "$1: $(grep MISMATCH "$1")"
	grep -q "memtest: start" "$1" && fail "$1: memtest started over"
	local last first
	last=$(memtest_pass "$2" tail) first=$(memtest_pass "$1" head)
	[[ -n $first && $first -gt $last ]] || fail "$1: pass '$first' after pass $last"
}
