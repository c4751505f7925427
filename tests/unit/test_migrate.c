/* The migration channel's frames and addresses, and the snapshot writer
 * over a sink: the bytes a migration carries are a snapshot file's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "memory/guest_mem.h"
#include "migrate/channel.h"
#include "migrate/mig_pool.h"
#include "snapshot/snapfile.h"

static void chan_pair(struct mig_chan *a, struct mig_chan *b, int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	a->fd = sv[0];
	b->fd = sv[1];
	a->idle_ms = b->idle_ms = 2000;
	strcpy(a->peer, "a");
	strcpy(b->peer, "b");
}

static void test_frames_round_trip(void **state)
{
	struct mig_chan a, b;
	struct mig_frame f;
	char buf[64], err[256];
	struct iovec iov[3] = { { "abc", 3 }, { "", 0 }, { "defgh", 5 } };
	int sv[2];

	(void)state;
	chan_pair(&a, &b, sv);
	assert_int_equal(
	    mig_send_text(&a, MIG_HELLO, 0, "hi", err, sizeof(err)), 0);
	assert_int_equal(
	    mig_send(&a, MIG_DATA, 1ull << 40, iov, 3, err, sizeof(err)), 0);
	assert_int_equal(
	    mig_send(&a, MIG_COMMIT, 77, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(
	    mig_expect(&b, MIG_HELLO, &f, buf, sizeof(buf), err, sizeof(err)),
	    0);
	assert_string_equal(buf, "hi");
	assert_int_equal(mig_recv(&b, &f, buf, sizeof(buf), err, sizeof(err)),
			 0);
	assert_int_equal(f.type, MIG_DATA);
	assert_int_equal(f.offset, 1ull << 40);
	assert_int_equal(f.length, 8);
	assert_memory_equal(buf, "abcdefgh", 8);
	/* Not the frame expected: named. */
	assert_int_equal(
	    mig_expect(&b, MIG_READY, &f, buf, sizeof(buf), err, sizeof(err)),
	    -EPROTO);
	assert_string_equal(err, "b: expected a READY frame, got COMMIT");
	assert_int_equal(a.sent, b.received);
	close(sv[0]);
	close(sv[1]);
}

/* One frame as the wire carries it. */
static size_t raw_frame(uint32_t type, const char *text, uint8_t *out)
{
	struct mig_chan a, b;
	char err[256];
	int sv[2];
	ssize_t n;

	chan_pair(&a, &b, sv);
	assert_int_equal(mig_send_text(&a, type, 5, text, err, sizeof(err)), 0);
	n = read(sv[1], out, 4096);
	assert_true(n >= MIG_FRAME_HEADER_SIZE);
	close(sv[0]);
	close(sv[1]);
	return (size_t)n;
}

/* Feeds @len raw bytes to a receiver (closing the sender after them);
 * returns what mig_recv says, its reason in @err. */
static int recv_raw(const uint8_t *raw, size_t len, char *err, size_t errlen)
{
	struct mig_chan a, b;
	struct mig_frame f;
	char buf[4096];
	int sv[2], ret;

	chan_pair(&a, &b, sv);
	assert_int_equal(write(sv[0], raw, len), (ssize_t)len);
	close(sv[0]);
	ret = mig_recv(&b, &f, buf, sizeof(buf), err, errlen);
	close(sv[1]);
	return ret;
}

static void test_damaged_frames(void **state)
{
	uint8_t raw[4096], bad[4096];
	char err[256];
	size_t n;

	(void)state;
	n = raw_frame(MIG_DATA, "some guest memory", raw);
	assert_int_equal(recv_raw(raw, n, err, sizeof(err)), 0);

	/* Any byte flipped, header or payload: refused. */
	for (size_t i = 0; i < n; i++) {
		int ret;

		memcpy(bad, raw, n);
		bad[i] ^= 0x40;
		ret = recv_raw(bad, n, err, sizeof(err));
		if (ret != -EBADMSG && ret != -EPROTO && ret != -ECONNRESET)
			fail_msg("byte %zu flipped: %d (%s)", i, ret, err);
	}
	memcpy(bad, raw, n);
	bad[n - 1] ^= 1;
	assert_int_equal(recv_raw(bad, n, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "DATA frame at stream byte 0: checksum "
				    "mismatch (the stream was damaged)"));
	memcpy(bad, raw, n);
	bad[24] = 'X';
	assert_int_equal(recv_raw(bad, n, err, sizeof(err)), -EPROTO);
	assert_string_equal(err, "not a stasis migration stream (bad frame "
				 "magic)");
	memcpy(bad, raw, n);
	bad[0] = 99;
	assert_int_equal(recv_raw(bad, n, err, sizeof(err)), -EPROTO);
	assert_string_equal(err, "unknown frame type 99");
	/* A control frame's length beyond its bound, checked before any of
	 * it is read. */
	n = raw_frame(MIG_HELLO, "x", raw);
	raw[5] = 0x10; /* length 0x1001 */
	assert_int_equal(recv_raw(raw, n, err, sizeof(err)), -EPROTO);
	assert_string_equal(err, "HELLO frame of 4097 bytes is too long");

	/* Cut anywhere: the end of the connection, named. */
	n = raw_frame(MIG_DATA, "0123456789", raw);
	for (size_t cut = 0; cut < n; cut++) {
		assert_int_equal(recv_raw(raw, cut, err, sizeof(err)),
				 -ECONNRESET);
		assert_non_null(strstr(err, "the connection was closed"));
	}
}

static void test_error_frame_escaped(void **state)
{
	uint8_t raw[4096];
	char err[256];
	size_t n;

	(void)state;
	n = raw_frame(MIG_ERROR, "no room\x1b[2J here", raw);
	assert_int_equal(recv_raw(raw, n, err, sizeof(err)), -ECONNABORTED);
	assert_string_equal(err, "no room\\x1b[2J here");
}

static void test_timeout(void **state)
{
	struct mig_chan a, b;
	struct mig_frame f;
	char buf[16], err[256];
	int sv[2];

	(void)state;
	chan_pair(&a, &b, sv);
	b.idle_ms = 50;
	assert_int_equal(mig_recv(&b, &f, buf, sizeof(buf), err, sizeof(err)),
			 -ETIMEDOUT);
	assert_string_equal(err, "b: timed out (waiting for a frame)");
	close(sv[0]);
	close(sv[1]);
}

/* A UNIX listener that never accepts and has no room left: the connect
 * fails at once instead of waiting for an accept that never comes. */
static void test_connect_not_accepted(void **state)
{
	char dir[] = "/tmp/test_migrate.XXXXXX", err[256], addr[160];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct mig_chan first, second;
	struct mig_addr a;
	int lfd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/in.sock", dir);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	/* A backlog of 0 holds one connection waiting for its accept. */
	assert_int_equal(listen(lfd, 0), 0);
	snprintf(addr, sizeof(addr), "unix:%s", sun.sun_path);
	assert_int_equal(mig_addr_parse(addr, &a, err, sizeof(err)), 0);
	assert_int_equal(mig_connect(&a, &first, err, sizeof(err)), 0);
	assert_int_equal(mig_connect(&a, &second, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "in.sock: it accepts no connection"));
	assert_int_equal(second.fd, -1);
	mig_close(&first);
	close(lfd);
	unlink(sun.sun_path);
	rmdir(dir);
}

static void test_addr_parse(void **state)
{
	static const struct {
		const char *s;
		const char *err; /* NULL: valid */
	} cases[] = {
		{ "unix:/tmp/m.sock", NULL },
		{ "tcp:10.0.0.2:4444", NULL },
		{ "tcp:[::1]:1", NULL },
		{ "tcp:host.example:65535", NULL },
		{ "unix:", "must have 1 to 107 bytes" },
		{ "tcp:h", "no port" },
		{ "tcp::5", "bad host" },
		{ "tcp:h:0", "the port must be 1..65535" },
		{ "tcp:h:65536", "the port must be 1..65535" },
		{ "tcp:h:12x", "the port must be 1..65535" },
		{ "udp:h:1", "is not unix:PATH or tcp:HOST:PORT" },
		{ "file\x1b:x", "'file\\x1b:x' is not unix:PATH" },
	};
	struct mig_addr a;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int ret = mig_addr_parse(cases[i].s, &a, err, sizeof(err));

		if (!cases[i].err
			? ret != 0
			: ret != -EINVAL || !strstr(err, cases[i].err))
			fail_msg("'%s': %d '%s'", cases[i].s, ret, err);
	}
	assert_int_equal(mig_addr_parse("tcp:[::1]:80", &a, err, sizeof(err)),
			 0);
	assert_true(a.tcp);
	assert_string_equal(a.host, "::1");
	assert_string_equal(a.port, "80");
}

/* A sink that applies each write to a buffer, as the destination's spool
 * does. */
struct buf_sink {
	uint8_t data[1 << 16];
	uint64_t end, committed;
	unsigned writes, aborts;
};

static int buf_pwritev(void *ctx, struct iovec *iov, unsigned n, uint64_t off)
{
	struct buf_sink *s = ctx;

	s->writes++;
	for (unsigned i = 0; i < n; i++) {
		assert_true(off + iov[i].iov_len <= sizeof(s->data));
		memcpy(s->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	if (off > s->end)
		s->end = off;
	return 0;
}

static int buf_commit(void *ctx, uint64_t size, char *err, size_t errlen)
{
	((struct buf_sink *)ctx)->committed = size;
	return 0;
}

static void buf_abort(void *ctx)
{
	((struct buf_sink *)ctx)->aborts++;
}

static const struct snap_sink buf_sink_ops = { buf_pwritev, buf_commit,
					       buf_abort };

static void write_records(struct snap_writer *w)
{
	char err[256];

	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_record(w, SNAP_REC_CPUID, 1, 0, "cpuid!", 6,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_record(w, SNAP_REC_DEVICE, 1, 0, "dev", 3,
					   err, sizeof(err)),
			 0);
}

/* The bytes through a sink are the file's, and a reader reads them. */
static void test_sink_writes_a_snapshot(void **state)
{
	struct snap_header hdr = { .page_size = 4096 };
	static struct buf_sink s;
	char path[] = "/tmp/test_migrate.XXXXXX", err[256];
	struct snap_writer *w;
	uint8_t *file;
	FILE *fp;
	long len;
	int fd;

	(void)state;
	strcpy(hdr.stasis_version, "test");
	hdr.created_unix_ns = 1234;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	w = snap_writer_open(path, &hdr, err, sizeof(err));
	write_records(w);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);

	w = snap_writer_open_sink(&buf_sink_ops, &s, "sink", &hdr, err,
				  sizeof(err));
	write_records(w);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	assert_int_equal(s.aborts, 0);
	assert_int_equal(s.committed, s.end);

	fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	rewind(fp);
	file = malloc((size_t)len);
	assert_int_equal(fread(file, 1, (size_t)len, fp), (size_t)len);
	fclose(fp);
	assert_int_equal(s.end, (uint64_t)len);
	assert_memory_equal(s.data, file, (size_t)len);
	free(file);
	unlink(path);

	/* An aborted sink writer tells the sink once. */
	memset(&s, 0, sizeof(s));
	w = snap_writer_open_sink(&buf_sink_ops, &s, "sink", &hdr, err,
				  sizeof(err));
	write_records(w);
	snap_writer_abort(w);
	assert_int_equal(s.aborts, 1);
	assert_int_equal(s.committed, 0);
}

static void test_transport_check(void **state)
{
	struct mig_addr tcp, unx;
	char err[256];

	(void)state;
	assert_int_equal(mig_addr_parse("tcp:h:1", &tcp, err, sizeof(err)), 0);
	assert_int_equal(mig_addr_parse("unix:/s", &unx, err, sizeof(err)), 0);
	assert_int_equal(
	    mig_transport_check(&tcp, "tcp:h:1", true, false, err, sizeof(err)),
	    0);
	assert_int_equal(
	    mig_transport_check(&tcp, "tcp:h:1", false, true, err, sizeof(err)),
	    0);
	assert_int_equal(mig_transport_check(&unx, "unix:/s", false, false, err,
					     sizeof(err)),
			 0);
	assert_int_equal(mig_transport_check(&tcp, "tcp:h:1", false, false, err,
					     sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "tcp:h:1: plain tcp carries guest memory "
				    "unencrypted and unauthenticated: give "
				    "--tls-dir DIR, or add --insecure"));
	assert_int_equal(
	    mig_transport_check(&tcp, "tcp:h:1", true, true, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "contradict"));
	assert_int_equal(
	    mig_transport_check(&unx, "unix:/s", false, true, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "unix:/s: --tls-dir is for tcp"));
}

/* The connection count of a HELLO and the token of a WELCOME. */
static void test_pool_hello(void **state)
{
	char tok[MIG_POOL_TOKEN_LEN + 1], tok2[MIG_POOL_TOKEN_LEN + 1];
	char text[128];
	unsigned n;

	(void)state;
	assert_int_equal(mig_pool_hello_connections("stasis-migrate 1 0.1", &n),
			 0);
	assert_int_equal(n, 1);
	assert_int_equal(mig_pool_hello_connections(
			     "stasis-migrate 1 0.1 connections=16", &n),
			 0);
	assert_int_equal(n, 16);
	assert_int_equal(mig_pool_hello_connections(
			     "stasis-migrate 1 0.1 connections=17", &n),
			 -EINVAL);
	assert_int_equal(mig_pool_hello_connections(
			     "stasis-migrate 1 0.1 connections=0", &n),
			 -EINVAL);
	assert_int_equal(mig_pool_hello_connections(
			     "stasis-migrate 1 0.1 connections=4x", &n),
			 -EINVAL);
	assert_int_equal(mig_pool_make_token(tok), 0);
	assert_int_equal(strlen(tok), MIG_POOL_TOKEN_LEN);
	snprintf(text, sizeof(text), "stasis-migrate 1 0.1 token=%s", tok);
	assert_int_equal(mig_pool_welcome_token(text, tok2), 0);
	assert_string_equal(tok, tok2);
	assert_int_equal(mig_pool_welcome_token("stasis-migrate 1 0.1", tok2),
			 -ENOENT);
	/* Words of the HELLO and WELCOME: whole words only. */
	assert_true(
	    mig_text_has_word("stasis-migrate 2 0.1 postcopy", "postcopy"));
	assert_true(mig_text_has_word("stasis-migrate 2 0.1 postcopy token=ab",
				      "postcopy"));
	assert_false(
	    mig_text_has_word("stasis-migrate 2 0.1 postcopyx", "postcopy"));
	assert_false(mig_text_has_word("stasis-migrate 2 0.1", "postcopy"));
	/* Short, long or not hex: no token. */
	assert_int_equal(mig_pool_welcome_token("x token=abc", tok2), -ENOENT);
	snprintf(text, sizeof(text), "x token=%s0", tok);
	assert_int_equal(mig_pool_welcome_token(text, tok2), -ENOENT);
	snprintf(text, sizeof(text), "x token=%.31sZ", tok);
	assert_int_equal(mig_pool_welcome_token(text, tok2), -ENOENT);
}

/* Certificates made here, in memory, for the TLS tests: a CA, and a
 * leaf certificate for "localhost" signed by it. */
struct test_cert {
	gnutls_x509_crt_t crt;
	gnutls_x509_privkey_t key;
};

static void cert_make(struct test_cert *c, const struct test_cert *issuer,
		      const char *cn, unsigned serial)
{
	unsigned char sn[4] = { 0, 0, (unsigned char)(serial >> 8),
				(unsigned char)serial };
	time_t now = time(NULL);

	assert_int_equal(gnutls_x509_privkey_init(&c->key), 0);
	assert_int_equal(gnutls_x509_privkey_generate(
			     c->key, GNUTLS_PK_ECDSA,
			     GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
			     0),
			 0);
	assert_int_equal(gnutls_x509_crt_init(&c->crt), 0);
	gnutls_x509_crt_set_version(c->crt, 3);
	gnutls_x509_crt_set_serial(c->crt, sn, sizeof(sn));
	gnutls_x509_crt_set_activation_time(c->crt, now - 3600);
	gnutls_x509_crt_set_expiration_time(c->crt, now + 86400);
	gnutls_x509_crt_set_dn_by_oid(c->crt, GNUTLS_OID_X520_COMMON_NAME, 0,
				      cn, (unsigned)strlen(cn));
	assert_int_equal(gnutls_x509_crt_set_key(c->crt, c->key), 0);
	gnutls_x509_crt_set_basic_constraints(c->crt, issuer ? 0 : 1, -1);
	if (!issuer) {
		gnutls_x509_crt_set_key_usage(c->crt, GNUTLS_KEY_KEY_CERT_SIGN |
							  GNUTLS_KEY_CRL_SIGN);
	} else {
		gnutls_x509_crt_set_key_usage(c->crt,
					      GNUTLS_KEY_DIGITAL_SIGNATURE);
		gnutls_x509_crt_set_key_purpose_oid(
		    c->crt, GNUTLS_KP_TLS_WWW_SERVER, 0);
		gnutls_x509_crt_set_key_purpose_oid(
		    c->crt, GNUTLS_KP_TLS_WWW_CLIENT, 0);
		gnutls_x509_crt_set_subject_alt_name(c->crt, GNUTLS_SAN_DNSNAME,
						     "localhost", 9,
						     GNUTLS_FSAN_SET);
	}
	assert_int_equal(gnutls_x509_crt_sign2(c->crt,
					       issuer ? issuer->crt : c->crt,
					       issuer ? issuer->key : c->key,
					       GNUTLS_DIG_SHA256, 0),
			 0);
}

static void cert_free(struct test_cert *c)
{
	gnutls_x509_crt_deinit(c->crt);
	gnutls_x509_privkey_deinit(c->key);
}

static void write_datum(const char *dir, const char *name, gnutls_datum_t *d)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, d->data, d->size), (ssize_t)d->size);
	close(fd);
	gnutls_free(d->data);
}

/* @dir/ca.pem (@ca's), cert.pem and key.pem (@leaf's). */
static void tls_dir_make(const char *dir, const struct test_cert *ca,
			 const struct test_cert *leaf)
{
	gnutls_datum_t d;

	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(
	    gnutls_x509_crt_export2(ca->crt, GNUTLS_X509_FMT_PEM, &d), 0);
	write_datum(dir, "ca.pem", &d);
	assert_int_equal(
	    gnutls_x509_crt_export2(leaf->crt, GNUTLS_X509_FMT_PEM, &d), 0);
	write_datum(dir, "cert.pem", &d);
	assert_int_equal(
	    gnutls_x509_privkey_export2(leaf->key, GNUTLS_X509_FMT_PEM, &d), 0);
	write_datum(dir, "key.pem", &d);
}

struct tls_fixture {
	char dir[64];
	char good_a[96], good_b[96], wrong[96];
};

static int tls_setup(void **state)
{
	struct tls_fixture *t = calloc(1, sizeof(*t));
	struct test_cert ca, other, a, b, w;

	strcpy(t->dir, "/tmp/test_migrate_tls.XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	cert_make(&ca, NULL, "test CA", 1);
	cert_make(&other, NULL, "another CA", 2);
	cert_make(&a, &ca, "source", 3);
	cert_make(&b, &ca, "destination", 4);
	cert_make(&w, &other, "wrong", 5);
	snprintf(t->good_a, sizeof(t->good_a), "%s/a", t->dir);
	snprintf(t->good_b, sizeof(t->good_b), "%s/b", t->dir);
	snprintf(t->wrong, sizeof(t->wrong), "%s/w", t->dir);
	tls_dir_make(t->good_a, &ca, &a);
	tls_dir_make(t->good_b, &ca, &b);
	/* Trusts the right CA, shows a certificate of the other. */
	tls_dir_make(t->wrong, &ca, &w);
	cert_free(&ca);
	cert_free(&other);
	cert_free(&a);
	cert_free(&b);
	cert_free(&w);
	*state = t;
	return 0;
}

static int tls_teardown(void **state)
{
	struct tls_fixture *t = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	assert_int_equal(system(cmd), 0);
	free(t);
	return 0;
}

/* The server's side of a TLS test, on a thread: the handshake, a HELLO
 * answered with a WELCOME, a DATA frame of the largest size (many TLS
 * records), and then silence, which must time out. */
struct tls_server {
	struct mig_chan c;
	struct mig_tls *tls;
	int ret, idle_ret;
	char err[256];
};

static void *tls_server_main(void *arg)
{
	struct tls_server *s = arg;
	char buf[MIG_CONTROL_MAX + 1];
	uint8_t *big = malloc(MIG_DATA_MAX);
	struct mig_frame f;

	assert_non_null(big);
	s->ret =
	    mig_tls_start(&s->c, s->tls, true, NULL, s->err, sizeof(s->err));
	if (!s->ret)
		s->ret = mig_expect(&s->c, MIG_HELLO, &f, buf, sizeof(buf),
				    s->err, sizeof(s->err));
	if (!s->ret)
		s->ret = mig_send_text(&s->c, MIG_WELCOME, 0, buf, s->err,
				       sizeof(s->err));
	if (!s->ret)
		s->ret = mig_recv(&s->c, &f, big, MIG_DATA_MAX, s->err,
				  sizeof(s->err));
	if (!s->ret) {
		assert_int_equal(f.type, MIG_DATA);
		assert_int_equal(f.length, MIG_DATA_MAX);
		for (size_t i = 0; i < MIG_DATA_MAX; i++)
			if (big[i] != (uint8_t)(i * 7))
				fail_msg("byte %zu", i);
		s->c.idle_ms = 50;
		s->idle_ret = mig_recv(&s->c, &f, buf, sizeof(buf), s->err,
				       sizeof(s->err));
	}
	free(big);
	return NULL;
}

/* A TLS session between @client_dir (expecting @host) and @server_dir
 * over a socket pair: the client's result, its reason in @err; the
 * server's in @srv. */
static int tls_try(const char *client_dir, const char *server_dir,
		   const char *host, struct tls_server *srv, char *err,
		   size_t errlen)
{
	struct mig_tls *ct;
	struct mig_chan a;
	struct mig_frame f;
	char buf[MIG_CONTROL_MAX + 1];
	uint8_t *big = malloc(MIG_DATA_MAX);
	pthread_t th;
	int sv[2], ret;

	assert_non_null(big);
	memset(srv, 0, sizeof(*srv));
	chan_pair(&a, &srv->c, sv);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(mig_tls_load(client_dir, &ct, err, errlen), 0);
	assert_int_equal(mig_tls_load(server_dir, &srv->tls, err, errlen), 0);
	assert_int_equal(pthread_create(&th, NULL, tls_server_main, srv), 0);
	ret = mig_tls_start(&a, ct, false, host, err, errlen);
	if (!ret)
		ret =
		    mig_send_text(&a, MIG_HELLO, 0, "through TLS", err, errlen);
	if (!ret)
		ret = mig_expect(&a, MIG_WELCOME, &f, buf, sizeof(buf), err,
				 errlen);
	if (!ret) {
		struct iovec v = { big, MIG_DATA_MAX };

		assert_string_equal(buf, "through TLS");
		for (size_t i = 0; i < MIG_DATA_MAX; i++)
			big[i] = (uint8_t)(i * 7);
		ret = mig_send(&a, MIG_DATA, 0, &v, 1, err, errlen);
	}
	pthread_join(th, NULL);
	mig_close(&a);
	mig_close(&srv->c);
	mig_tls_free(ct);
	mig_tls_free(srv->tls);
	free(big);
	return ret;
}

static void test_tls(void **state)
{
	struct tls_fixture *t = *state;
	struct tls_server srv;
	char err[512];

	/* Both of the CA, the name right: frames go through, and the idle
	 * bound holds under TLS. */
	assert_int_equal(
	    tls_try(t->good_a, t->good_b, "localhost", &srv, err, sizeof(err)),
	    0);
	assert_int_equal(srv.ret, 0);
	assert_int_equal(srv.idle_ret, -ETIMEDOUT);
	assert_string_equal(srv.err, "b: timed out (waiting for a frame)");

	/* The client's certificate of another CA: the server refuses it in
	 * the handshake, and the client hears it. */
	assert_int_not_equal(
	    tls_try(t->wrong, t->good_b, "localhost", &srv, err, sizeof(err)),
	    0);
	assert_int_equal(srv.ret, -EACCES);
	assert_non_null(strstr(srv.err, "b: TLS: the source's certificate is "
					"refused: "));
	assert_non_null(strstr(srv.err, "issuer is unknown"));
	assert_non_null(strstr(err, "a: TLS: the peer refused this side"));

	/* The server's certificate of another CA, or naming another host:
	 * the client refuses it. */
	assert_int_equal(
	    tls_try(t->good_a, t->wrong, "localhost", &srv, err, sizeof(err)),
	    -EACCES);
	assert_non_null(strstr(err, "a: TLS: the destination's certificate is "
				    "refused: "));
	assert_non_null(strstr(err, "issuer is unknown"));
	assert_int_equal(srv.ret, -EACCES);
	assert_non_null(strstr(srv.err, "the source refused this side"));
	assert_int_equal(tls_try(t->good_a, t->good_b, "dest.example", &srv,
				 err, sizeof(err)),
			 -EACCES);
	assert_non_null(strstr(err, "does not match"));
}

/* Each file of a --tls-dir missing or bad: named. */
static void test_tls_load_errors(void **state)
{
	struct tls_fixture *t = *state;
	char dir[128], path[192], cmd[1024], err[512];
	struct mig_tls *tls = NULL;
	static const struct {
		const char *file, *content, *err;
	} cases[] = {
		{ "ca.pem", NULL, "/ca.pem: No such file or directory" },
		{ "cert.pem", NULL, "/cert.pem: No such file or directory" },
		{ "key.pem", NULL, "/key.pem: No such file or directory" },
		{ "ca.pem", "junk", "/ca.pem holds no CA certificate" },
		{ "cert.pem", "junk", "/cert.pem holds no certificate" },
		{ "key.pem", "junk", "/key.pem holds no private key" },
	};

	(void)state;
	snprintf(dir, sizeof(dir), "%s/bad", t->dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'",
			 dir, t->good_a, dir);
		assert_int_equal(system(cmd), 0);
		snprintf(path, sizeof(path), "%s/%s", dir, cases[i].file);
		unlink(path);
		if (cases[i].content) {
			FILE *f = fopen(path, "w");

			assert_non_null(f);
			fputs(cases[i].content, f);
			fclose(f);
		}
		if (mig_tls_load(dir, &tls, err, sizeof(err)) >= 0 ||
		    !strstr(err, cases[i].err) || !strstr(err, dir) || tls)
			fail_msg("%s: '%s'", cases[i].file, err);
	}
	/* A key that is not the certificate's. */
	snprintf(cmd, sizeof(cmd),
		 "rm -rf '%s' && cp -r '%s' '%s' && cp '%s/key.pem' '%s'", dir,
		 t->good_a, dir, t->good_b, dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(mig_tls_load(dir, &tls, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "the key is not the certificate's"));
	assert_int_equal(mig_tls_load(t->good_a, &tls, err, sizeof(err)), 0);
	mig_tls_free(tls);
}

/* --connections: the destination's side on a thread, over a UNIX
 * listener. It accepts the main connection, answers the HELLO with a
 * token, takes the further connections, and applies PAGES from all of
 * them into its memory until the main connection's COMMIT. */
#define POOL_MEM (16u << 20)

struct pool_dest {
	struct mig_addr addr;
	int lfd;
	uint8_t *host;
	struct guest_mem mem;
	unsigned asked; /* connections the HELLO asked for */
	int ret;
	char err[512];
};

/* The destination's landing of a PAGES frame, as the pool's threads call
 * it: into guest memory, which must hold it. */
static int pool_apply(void *ctx, const struct mig_frame *f, const void *data,
		      char *err, size_t errlen)
{
	void *p = guest_mem_ptr(ctx, f->offset, f->length);

	if (!p) {
		snprintf(err, errlen, "PAGES frame outside this VM's memory");
		return -EPROTO;
	}
	memcpy(p, data, f->length);
	return 0;
}

static void *pool_dest_main(void *arg)
{
	struct pool_dest *d = arg;
	char buf[MIG_CONTROL_MAX + 1], token[MIG_POOL_TOKEN_LEN + 1];
	struct mig_pool_in *pool = NULL;
	uint8_t *frame = malloc(MIG_DATA_MAX);
	struct mig_chan c;
	struct mig_frame f;
	int ret;

	assert_non_null(frame);
	ret = mig_accept(d->lfd, &d->addr, &c, d->err, sizeof(d->err));
	if (!ret)
		ret = mig_expect(&c, MIG_HELLO, &f, buf, sizeof(buf), d->err,
				 sizeof(d->err));
	assert_int_equal(ret, 0);
	assert_int_equal(mig_pool_hello_connections(buf, &d->asked), 0);
	assert_int_equal(mig_pool_make_token(token), 0);
	snprintf(buf, sizeof(buf), "stasis-migrate 1 test token=%s", token);
	assert_int_equal(mig_send_text(&c, MIG_WELCOME, 0, buf, NULL, 0), 0);
	ret = mig_pool_in_accept(&pool, d->lfd, &d->addr, NULL, d->asked - 1,
				 token, d->err, sizeof(d->err));
	if (!ret)
		ret = mig_pool_in_start(pool, pool_apply, &d->mem, &c, d->err,
					sizeof(d->err));
	while (!ret) {
		void *p;

		ret = mig_recv(&c, &f, frame, MIG_DATA_MAX, d->err,
			       sizeof(d->err));
		if (ret)
			break;
		if (f.type == MIG_COMMIT) {
			ret = mig_pool_in_wait(pool, d->err, sizeof(d->err));
			break;
		}
		assert_int_equal(f.type, MIG_PAGES);
		ret = mig_pool_in_order(pool, f.offset, f.length, d->err,
					sizeof(d->err));
		if (ret)
			break;
		p = guest_mem_ptr(&d->mem, f.offset, f.length);
		assert_non_null(p);
		memcpy(p, frame, f.length);
	}
	if (ret && mig_pool_in_error(pool, d->err, sizeof(d->err)))
		ret = mig_pool_in_error(pool, d->err, sizeof(d->err));
	d->ret = ret;
	mig_pool_in_close(pool);
	mig_close(&c);
	free(frame);
	return NULL;
}

/* Connects a source with @n connections (token @bad_token instead of the
 * one given when not NULL). */
static int pool_source(struct pool_dest *d, unsigned n, const char *bad_token,
		       struct mig_chan *c, struct mig_pool **pool, char *err,
		       size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1], token[MIG_POOL_TOKEN_LEN + 1];
	struct mig_frame f;

	assert_int_equal(mig_connect(&d->addr, c, err, errlen), 0);
	snprintf(buf, sizeof(buf), "stasis-migrate 1 test connections=%u", n);
	assert_int_equal(mig_send_text(c, MIG_HELLO, 0, buf, err, errlen), 0);
	assert_int_equal(
	    mig_expect(c, MIG_WELCOME, &f, buf, sizeof(buf), err, errlen), 0);
	assert_int_equal(mig_pool_welcome_token(buf, token), 0);
	return mig_pool_open(pool, &d->addr, NULL, c, n,
			     bad_token ? bad_token : token, err, errlen);
}

static void pool_dest_start(struct pool_dest *d, const char *dir, pthread_t *th)
{
	char addr[160], err[256];

	memset(d, 0, sizeof(*d));
	snprintf(addr, sizeof(addr), "unix:%s/pool.sock", dir);
	assert_int_equal(mig_addr_parse(addr, &d->addr, err, sizeof(err)), 0);
	d->lfd = mig_listen(&d->addr, err, sizeof(err));
	assert_true(d->lfd >= 0);
	d->host = calloc(1, POOL_MEM);
	assert_non_null(d->host);
	guest_mem_wrap(&d->mem, d->host, POOL_MEM, 0);
	assert_int_equal(pthread_create(th, NULL, pool_dest_main, d), 0);
}

static void pool_dest_end(struct pool_dest *d, pthread_t th)
{
	pthread_join(th, NULL);
	close(d->lfd);
	unlink(d->addr.path);
}

static void test_pool(void **state)
{
	char dir[] = "/tmp/test_migrate_pool.XXXXXX", err[512];
	struct pool_dest d;
	struct mig_pool *pool;
	struct mig_chan c;
	uint8_t *src = malloc(POOL_MEM);
	pthread_t th;

	(void)state;
	assert_non_null(src);
	assert_non_null(mkdtemp(dir));

	/* Four connections, two rounds: the second rewrites runs that start
	 * and end inside granules, so a page sent twice travels twice on
	 * the same connection and its newer copy is the one that stays. */
	pool_dest_start(&d, dir, &th);
	assert_int_equal(pool_source(&d, 4, NULL, &c, &pool, err, sizeof(err)),
			 0);
	for (size_t i = 0; i < POOL_MEM; i++)
		src[i] = (uint8_t)(i * 13 + 1);
	for (uint64_t at = 0; at < POOL_MEM; at += MIG_DATA_MAX)
		assert_int_equal(mig_pool_send_pages(pool, &c, at, src + at,
						     MIG_DATA_MAX, err,
						     sizeof(err)),
				 0);
	for (uint64_t at = 0x3000; at + 0x2ff000 < POOL_MEM; at += 0x5f1000) {
		memset(src + at, (int)(at >> 12), 0x2ff000);
		assert_int_equal(mig_pool_send_pages(pool, &c, at, src + at,
						     0x2ff000, err,
						     sizeof(err)),
				 0);
	}
	assert_int_equal(mig_pool_finish(pool, err, sizeof(err)), 0);
	/* After the finish (a pause sending what was dirtied last), pages
	 * of every granule go on the main connection and land after all
	 * the others. */
	memset(src + 0x1ff000, 0xee, 0x202000);
	assert_int_equal(mig_pool_send_pages(pool, &c, 0x1ff000, src + 0x1ff000,
					     0x202000, err, sizeof(err)),
			 0);
	assert_int_equal(mig_send(&c, MIG_COMMIT, 0, NULL, 0, err, sizeof(err)),
			 0);
	assert_true(mig_pool_sent(pool) > POOL_MEM / 2);
	pool_dest_end(&d, th);
	assert_int_equal(d.ret, 0);
	assert_int_equal(d.asked, 4);
	assert_memory_equal(d.host, src, POOL_MEM);
	free(d.host);
	mig_pool_close(pool);
	mig_close(&c);

	/* A connection with another token is not of this migration: both
	 * sides fail, named. */
	pool_dest_start(&d, dir, &th);
	assert_int_not_equal(pool_source(&d, 3,
					 "0123456789abcdef0123456789abcdef", &c,
					 &pool, err, sizeof(err)),
			     0);
	assert_null(pool);
	assert_non_null(strstr(err, "memory connection 1: "));
	assert_non_null(strstr(err, "not of this migration"));
	mig_close(&c);
	pool_dest_end(&d, th);
	assert_int_equal(d.ret, -EACCES);
	assert_non_null(strstr(d.err, "memory connection 1: "));
	free(d.host);

	/* A frame one connection cannot apply fails the whole migration at
	 * the destination with that connection's reason, and the source
	 * hears of it. */
	pool_dest_start(&d, dir, &th);
	assert_int_equal(pool_source(&d, 2, NULL, &c, &pool, err, sizeof(err)),
			 0);
	{
		struct mig_frame f;
		char buf[64];
		int ret = mig_pool_send_pages(
		    pool, &c, (1ull << 40) + MIG_POOL_GRANULE, src,
		    MIG_POOL_GRANULE, err, sizeof(err));

		/* The source learns it at the latest when it waits for the
		 * destination's next answer. */
		if (!ret)
			ret = mig_pool_finish(pool, err, sizeof(err));
		if (!ret)
			ret = mig_recv(&c, &f, buf, sizeof(buf), err,
				       sizeof(err));
		assert_int_not_equal(ret, 0);
	}
	pool_dest_end(&d, th);
	assert_int_equal(d.ret, -EPROTO);
	assert_non_null(strstr(d.err, "memory connection 1: PAGES frame "
				      "outside this VM's memory"));
	free(d.host);
	mig_pool_close(pool);
	mig_close(&c);
	rmdir(dir);
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frames_round_trip),
		cmocka_unit_test(test_damaged_frames),
		cmocka_unit_test(test_error_frame_escaped),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_connect_not_accepted),
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_sink_writes_a_snapshot),
		cmocka_unit_test(test_transport_check),
		cmocka_unit_test(test_pool_hello),
		cmocka_unit_test(test_pool),
		cmocka_unit_test_setup_teardown(test_tls, tls_setup,
						tls_teardown),
		cmocka_unit_test_setup_teardown(test_tls_load_errors, tls_setup,
						tls_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
