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

#include "migrate/channel.h"
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
