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
