/* The post-copy page source alone: chunks held since the switch read
 * from the spool, lazy ones waited for from the push, a chunk whose bytes
 * do not match its hash refused (its frame intact), a push that breaks
 * ending the wait with one line; the LAZY ranges' bounds; the blocked-time
 * histogram. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include <cmocka.h>
#include <xxhash.h>

#include "core/file_io.h"
#include "migrate/postcopy.h"
#include "snapshot/pager.h"
#include "snapshot/snapfile.h"

#define CS (64u << 10)
#define NCHUNKS 3
/* Chunk bytes start off a page boundary, as in a stream. */
#define BASE 1000u

struct fixture {
	int spool;
	int prio[2], data[2];
	struct mig_chan prio_in, data_in, data_out;
	struct postcopy_in *pi;
	struct page_source src;
	uint8_t content[NCHUNKS][CS];
};

static void chan_init(struct mig_chan *c, int fd, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->idle_ms = 2000;
	snprintf(c->peer, sizeof(c->peer), "%s", name);
}

/* Chunk 0 held since the switch, chunks 1 and 2 lazy. */
static void fixture_make(struct fixture *f)
{
	struct snap_chunk_table t = { 0 };
	char err[256];

	memset(f, 0, sizeof(*f));
	f->spool = memfd_create("test-spool", MFD_CLOEXEC);
	assert_true(f->spool >= 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->prio), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->data), 0);
	chan_init(&f->prio_in, f->prio[0], "prio");
	chan_init(&f->data_in, f->data[0], "data");
	chan_init(&f->data_out, f->data[1], "source");
	t.fd = f->spool;
	t.gpa = 0;
	t.size = (uint64_t)NCHUNKS * CS;
	t.page_size = 4096;
	t.chunk_size = CS;
	t.block_size = CS / 64;
	t.nchunks = NCHUNKS;
	t.stored_chunks = NCHUNKS;
	t.chunks = calloc(NCHUNKS, sizeof(*t.chunks));
	assert_non_null(t.chunks);
	for (unsigned i = 0; i < NCHUNKS; i++) {
		for (unsigned j = 0; j < CS; j++)
			f->content[i][j] = (uint8_t)(i * 31 + j * 7 + j / 4096);
		t.chunks[i] = (struct snap_chunk){
			.file_off = BASE + (uint64_t)i * CS,
			.stored_len = CS,
			.raw_len = CS,
			.codec = SNAP_CODEC_RAW,
			.block_mask = ~0ull,
			.hash = XXH3_64bits(f->content[i], CS),
		};
	}
	assert_int_equal(pwrite(f->spool, f->content[0], CS, BASE), CS);
	f->pi = postcopy_in_new(&f->prio_in, f->spool);
	assert_non_null(f->pi);
	assert_int_equal(postcopy_in_lazy(f->pi, BASE + CS, 2 * CS, 1 << 30,
					  err, sizeof(err)),
			 0);
	assert_int_equal(postcopy_in_source(f->pi, &f->src, &t, 1), 0);
	assert_null(t.chunks); /* taken over */
	assert_int_equal(f->src.nregions, 1);
	assert_int_equal(f->src.regions[0].nchunks, NCHUNKS);
	assert_int_equal(postcopy_in_start(f->pi, &f->data_in, SECCOMP_OFF, err,
					   sizeof(err)),
			 0);
}

static void fixture_free(struct fixture *f)
{
	postcopy_in_free(f->pi);
	mig_close(&f->data_out);
	mig_close(&f->data_in);
	mig_close(&f->prio_in);
	close(f->prio[1]);
	close(f->spool);
}

/* The source's push of chunk @i, with @flip a byte flipped first. */
static void push(struct fixture *f, unsigned i, bool flip)
{
	uint8_t buf[CS];
	struct iovec v = { .iov_base = buf, .iov_len = CS };
	char err[256];

	memcpy(buf, f->content[i], CS);
	if (flip)
		buf[CS / 2] ^= 0x40;
	assert_int_equal(mig_send(&f->data_out, MIG_DATA,
				  BASE + (uint64_t)i * CS, &v, 1, err,
				  sizeof(err)),
			 0);
}

static void test_held_then_pushed_then_corrupt(void **state)
{
	struct fixture f;
	uint8_t buf[CS];
	char err[512];
	struct migrate_postcopy_stats st;

	(void)state;
	fixture_make(&f);
	assert_int_equal(f.src.ops->chunk_mask(f.src.ctx, 0, 1), ~0ull);
	/* Held: read from the spool and checked at once. */
	assert_int_equal(
	    f.src.ops->read_chunk(f.src.ctx, 0, 0, buf, err, sizeof(err)), 0);
	assert_memory_equal(buf, f.content[0], CS);
	/* Lazy: the fill waits for the push. */
	push(&f, 1, false);
	assert_int_equal(
	    f.src.ops->read_chunk(f.src.ctx, 0, 1, buf, err, sizeof(err)), 0);
	assert_memory_equal(buf, f.content[1], CS);
	/* A chunk whose bytes are not what the source hashed at the pause,
	 * in a frame whose own checksum holds: refused, never installed. */
	push(&f, 2, true);
	assert_int_equal(
	    f.src.ops->read_chunk(f.src.ctx, 0, 2, buf, err, sizeof(err)),
	    -EBADMSG);
	assert_non_null(strstr(err, "checksum mismatch"));
	postcopy_in_stats(f.pi, &st);
	assert_true(st.on);
	assert_false(st.done);
	assert_int_equal(st.chunks_left, 1);
	assert_int_equal(st.faults, 0); /* no fault thread here */
	fixture_free(&f);
}

/* The source goes away before a lazy chunk came: the wait ends with the
 * reason, and so does every later one. */
static void test_link_breaks(void **state)
{
	struct fixture f;
	uint8_t buf[CS];
	char err[512];

	(void)state;
	fixture_make(&f);
	mig_close(&f.data_out);
	assert_true(
	    f.src.ops->read_chunk(f.src.ctx, 0, 1, buf, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "post-copy: the link to the source broke"));
	assert_true(
	    f.src.ops->read_chunk(f.src.ctx, 0, 2, buf, err, sizeof(err)) < 0);
	/* A held chunk is still served: it needs no link. */
	assert_int_equal(
	    f.src.ops->read_chunk(f.src.ctx, 0, 0, buf, err, sizeof(err)), 0);
	/* Failed after the source was made: left for the process's end
	 * (a pager thread may still be inside it), which the leak check is
	 * told. */
	assert_false(postcopy_in_free(f.pi));
#ifdef __SANITIZE_ADDRESS__
	__lsan_ignore_object(f.pi);
#endif
	f.pi = NULL;
	fixture_free(&f);
}

/* LAZY ranges come in stream order, in whole pages, within the
 * stream's bound. */
static void test_lazy_bounds(void **state)
{
	struct mig_chan c = { .fd = -1 };
	struct postcopy_in *pi = postcopy_in_new(&c, -1);
	char err[256];

	(void)state;
	assert_non_null(pi);
	assert_int_equal(
	    postcopy_in_lazy(pi, 100, 8192, 1 << 20, err, sizeof(err)), 0);
	assert_int_equal(
	    postcopy_in_lazy(pi, 4096, 4096, 1 << 20, err, sizeof(err)),
	    -EPROTO);
	assert_non_null(strstr(err, "out of order"));
	assert_int_equal(postcopy_in_lazy(pi, (1 << 20) - 4096, 8192, 1 << 20,
					  err, sizeof(err)),
			 -EPROTO);
	assert_int_equal(postcopy_in_lazy(pi, UINT64_MAX - 4095, 8192,
					  UINT64_MAX, err, sizeof(err)),
			 -EPROTO);
	assert_int_equal(
	    postcopy_in_lazy(pi, 9000, 0, 1 << 20, err, sizeof(err)), -EPROTO);
	assert_int_equal(
	    postcopy_in_lazy(pi, 9000, 100, 1 << 20, err, sizeof(err)),
	    -EPROTO); /* not whole pages */
	assert_int_equal(
	    postcopy_in_lazy(pi, 8292, 4096, 1 << 20, err, sizeof(err)), 0);
	assert_true(postcopy_in_free(pi));
}

/* Each bucket stands for a value within 1/16 below what it counts, and
 * buckets grow with the value. */
static void test_latency_buckets(void **state)
{
	unsigned prev = 0;

	(void)state;
	for (uint64_t us = 0; us < (1ull << 30); us = us * 9 / 8 + 1) {
		unsigned b = postcopy_lat_bucket(us);
		uint64_t v = postcopy_lat_value(b);

		assert_true(b >= prev);
		assert_true(b < POSTCOPY_LAT_BUCKETS);
		assert_true(v <= us);
		assert_true(us - v <= us / 16);
		prev = b;
	}
	assert_int_equal(postcopy_lat_bucket(UINT64_MAX),
			 POSTCOPY_LAT_BUCKETS - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_held_then_pushed_then_corrupt),
		cmocka_unit_test(test_link_breaks),
		cmocka_unit_test(test_lazy_bounds),
		cmocka_unit_test(test_latency_buckets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
