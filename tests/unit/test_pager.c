/* Lazy restore without KVM: guest RAM registered with userfaultfd and
 * served from a version 2 snapshot file by the pager, while test threads
 * touch it as vCPUs and device workers would. Needs userfaultfd (root, or
 * vm.unprivileged_userfaultfd=1); fails loudly without it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot/pager.h"
#include "snapshot/snapfile.h"

#define PS 4096u
#define MEM (16u << 20)
#define CHUNK SNAP_CHUNK_SIZE
#define ERRLEN 512

struct ctx {
	char dir[64];
	char path[128];
	struct guest_mem src, dst;
	struct snap_reader *r;
	struct pager *pager;
	struct pager_opts opts; /* seccomp off: zero */
	/* The failure callback's line, and a condition to wait for it. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char line[ERRLEN];
	int calls;
};

/* Guest memory with data in most chunks, a few all zero, some with only
 * a few pages, never touched beyond 12 MiB. */
static void fill_src(struct guest_mem *m)
{
	for (uint64_t p = 0; p < (12u << 20) / PS; p++) {
		uint64_t chunk = p * PS / CHUNK;
		uint64_t *w = guest_mem_ptr(m, p * PS, PS);

		if (chunk % 7 == 3)
			continue; /* an all-zero chunk */
		if (chunk % 5 == 1 && p % 9)
			continue; /* a sparse one */
		for (unsigned i = 0; i < PS / 8; i++)
			w[i] = (p * PS + i * 8) * 0x9e3779b97f4a7c15ull + 1;
	}
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	struct snap_header h = { .page_size = PS };
	struct snap_writer *w;
	char err[ERRLEN];

	if (!c)
		return -1;
	strcpy(c->dir, "/tmp/test_pager.XXXXXX");
	if (!mkdtemp(c->dir))
		return -1;
	snprintf(c->path, sizeof(c->path), "%s/vm.snap", c->dir);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	assert_int_equal(guest_mem_init(&c->src, MEM), 0);
	fill_src(&c->src);
	strcpy(h.stasis_version, "test");
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(
	    snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2, err, 256), 0);
	assert_int_equal(snap_write_memory(w, &c->src, NULL, err, 256), 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	pager_stop(c->pager);
	snap_reader_close(c->r);
	guest_mem_destroy(&c->src);
	guest_mem_destroy(&c->dst);
	unlink(c->path);
	rmdir(c->dir);
	free(c);
	return 0;
}

/* Opens the snapshot, reads its chunk table and starts the pager over a
 * fresh, empty guest memory; with @cut, the file is cut to that length in
 * between, as if it had been truncated once the restore began. */
static void start_lazy_cut(struct ctx *c, off_t cut)
{
	struct snap_chunk_table t;
	struct page_source src;
	struct snap_record rec;
	char err[ERRLEN];
	unsigned region;

	assert_int_equal(pager_probe(err, sizeof(err)), 0);
	assert_int_equal(guest_mem_init(&c->dst, MEM), 0);
	c->r = snap_reader_open(c->path, err, sizeof(err));
	assert_non_null(c->r);
	assert_int_equal(snap_reader_next(c->r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(c->r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec.type, SNAP_REC_MEMORY);
	if (snap_read_memory_table(c->r, &rec, &c->dst, &t, &region, err,
				   sizeof(err)))
		fail_msg("%s", err);
	if (cut)
		assert_int_equal(truncate(c->path, cut), 0);
	assert_int_equal(page_source_file_init(&src, &t, 1), 0);
	if (pager_start(&c->pager, &c->dst, &src, &c->opts, err, sizeof(err)))
		fail_msg("%s", err);
}

static void start_lazy(struct ctx *c)
{
	start_lazy_cut(c, 0);
}

static void on_fail(void *arg, const char *line)
{
	struct ctx *c = arg;

	pthread_mutex_lock(&c->lock);
	snprintf(c->line, sizeof(c->line), "%s", line);
	c->calls++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Waits (bounded, generously) for the failure callback. */
static void wait_fail(struct ctx *c)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 120;
	pthread_mutex_lock(&c->lock);
	while (!c->calls)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &until))
			break;
	pthread_mutex_unlock(&c->lock);
	assert_int_equal(c->calls, 1);
}

static uint64_t memfd_allocated(const struct guest_mem *m)
{
	struct stat st;

	assert_int_equal(fstat(m->memfd, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* Everything arrives, equal to what was saved; untouched zero blocks take
 * no memory. */
static void test_lazy_fill(void **state)
{
	struct ctx *c = *state;
	char err[ERRLEN];
	struct stat st;

	start_lazy(c);
	assert_int_equal(pager_set_running(c->pager, on_fail, c), 0);
	if (pager_wait(c->pager, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(c->src.host, c->dst.host, MEM);
	assert_int_equal(c->calls, 0);
	assert_int_equal(stat(c->path, &st), 0);
	/* The stored pages and nothing else (the zero ones were just read
	 * by the comparison, with the pager gone: the kernel's holes). */
	assert_true(memfd_allocated(&c->dst) <=
		    memfd_allocated(&c->src) + (uint64_t)MEM);
}

struct toucher {
	struct ctx *c;
	unsigned seed;
	atomic_int done;
	uint64_t mismatches;
};

/* A vCPU-like thread: reads pages all over memory while the filler runs,
 * then writes a marker into some; the pager must never overwrite it. */
static void *touch_main(void *arg)
{
	struct toucher *t = arg;
	uint64_t x = t->seed;

	for (unsigned i = 0; i < 3000; i++) {
		uint64_t page, off;

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		page = (x >> 20) % (MEM / PS);
		off = page * PS + (x >> 8) % (PS / 8) * 8;
		if (*(volatile uint64_t *)(t->c->dst.host + off) !=
		    *(uint64_t *)(t->c->src.host + off))
			t->mismatches++;
		if (i % 3 == 0) {
			*(volatile uint64_t *)(t->c->dst.host + off) = ~0ull;
			*(uint64_t *)(t->c->src.host + off) = ~0ull;
		}
	}
	atomic_store(&t->done, 1);
	return NULL;
}

/* Two threads fault all over memory, and write to it, while the filler
 * brings the rest in: in the end every byte is what was saved or what
 * the threads wrote. */
static void test_lazy_concurrent(void **state)
{
	struct ctx *c = *state;
	struct toucher t[2] = { { .c = c, .seed = 1 }, { .c = c, .seed = 2 } };
	pthread_t th[2];
	char err[ERRLEN];

	start_lazy(c);
	assert_int_equal(pager_set_running(c->pager, on_fail, c), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, touch_main, &t[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(t[0].mismatches + t[1].mismatches, 0);
	if (pager_wait(c->pager, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(c->src.host, c->dst.host, MEM);
	assert_int_equal(c->calls, 0);
}

/* File offset of chunk @idx's data, from the file's own table. */
static uint64_t chunk_file_off(struct ctx *c, uint64_t idx)
{
	struct snap_chunk_table t;
	struct guest_mem tmp;
	struct snap_reader *r;
	struct snap_record rec;
	char err[ERRLEN];
	unsigned region;
	uint64_t off;

	assert_int_equal(guest_mem_init(&tmp, MEM), 0);
	r = snap_reader_open(c->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(
	    snap_read_memory_table(r, &rec, &tmp, &t, &region, err, 256), 0);
	assert_int_equal(t.chunks[idx].flags, 0);
	off = t.chunks[idx].file_off;
	snap_chunk_table_free(&t);
	snap_reader_close(r);
	guest_mem_destroy(&tmp);
	return off;
}

struct reader_thread {
	struct ctx *c;
	uint64_t off;
	uint64_t value;
};

static void *read_main(void *arg)
{
	struct reader_thread *rt = arg;

	rt->value = *(volatile uint64_t *)(rt->c->dst.host + rt->off);
	return NULL;
}

/* A flipped byte in chunk 20: caught, reported in one line with its guest
 * range and file offset, and its bytes never reach guest memory; the
 * thread that touched it stays blocked until the pager is stopped. */
static void test_lazy_corrupt(void **state)
{
	struct ctx *c = *state;
	struct reader_thread rt = { .c = c, .off = 20 * CHUNK + 104 };
	uint64_t off = chunk_file_off(c, 20), v;
	char expect[256], err[ERRLEN];
	uint8_t b;
	pthread_t th;
	int fd;

	fd = open(c->path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off + 104), 1);
	b ^= 0x01;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off + 104), 1);
	close(fd);

	start_lazy(c);
	assert_int_equal(pager_set_running(c->pager, on_fail, c), 0);
	assert_int_equal(pthread_create(&th, NULL, read_main, &rt), 0);
	wait_fail(c);
	snprintf(expect, sizeof(expect),
		 "snapshot: memory chunk 20 (guest 0x%x-0x%x) at file offset "
		 "0x%llx: checksum mismatch",
		 20 * CHUNK, 21 * CHUNK - 1, (unsigned long long)off);
	assert_string_equal(c->line, expect);
	assert_null(strchr(c->line, '\n'));
	assert_true(pager_failed(c->pager));
	assert_int_equal(pager_wait(c->pager, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, expect);
	/* Not in the memfd: reading the file side does not fault. */
	assert_int_equal(pread(c->dst.memfd, &v, 8, 20 * CHUNK + 104), 8);
	assert_int_equal(v, 0);
	/* Stopping releases the waiter onto a zero page, never the bad
	 * bytes. */
	pager_stop(c->pager);
	c->pager = NULL;
	pthread_join(th, NULL);
	assert_int_equal(rt.value, 0);
	assert_int_equal(c->calls, 1);
}

/* The file cut short during the restore: the first chunk past the end is
 * refused with one line, and nothing of it is installed. */
static void test_lazy_truncated(void **state)
{
	struct ctx *c = *state;
	uint64_t off = chunk_file_off(c, 30);

	start_lazy_cut(c, (off_t)off + 1000);
	assert_int_equal(pager_set_running(c->pager, on_fail, c), 0);
	wait_fail(c);
	assert_non_null(strstr(c->line, "memory chunk 30 (guest 0x780000-"
					"0x7bffff) at file offset"));
	assert_non_null(strstr(c->line,
			       "unexpected end of file (the snapshot was "
			       "truncated)"));
	/* Chunks before it came in whole; from it on nothing did. Read
	 * from the memfd's side: nothing is served through the mapping any
	 * more, not even zero pages. */
	{
		uint8_t *buf = malloc(32 * CHUNK);

		assert_non_null(buf);
		assert_int_equal(pread(c->dst.memfd, buf, 32 * CHUNK, 0),
				 32 * CHUNK);
		assert_memory_equal(c->src.host, buf, 30 * CHUNK);
		for (size_t i = 30 * CHUNK; i < 32 * CHUNK; i++)
			if (buf[i])
				fail_msg("byte 0x%zx of a failed chunk is in",
					 i);
		free(buf);
	}
}

/* A failure before the guest runs lets go of memory (stasis's own reads
 * then see zeros and end), is kept, and refuses the start. */
static void test_lazy_fail_before_running(void **state)
{
	struct ctx *c = *state;
	uint64_t off = chunk_file_off(c, 0);
	char err[ERRLEN];
	uint8_t b = 0xee;
	int fd;

	fd = open(c->path, O_RDWR);
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
	start_lazy(c);
	assert_int_equal(pager_wait(c->pager, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "memory chunk 0 (guest 0x0-0x3ffff)"));
	assert_int_equal(*(volatile uint8_t *)c->dst.host, 0);
	assert_int_equal(pager_set_running(c->pager, on_fail, c), -EBADMSG);
	assert_int_equal(c->calls, 0);
}

/* A snapshot of lazily restored memory, restored again, is the original:
 * chained restores lose nothing. */
static void test_lazy_chained(void **state)
{
	struct ctx *c = *state;
	struct snap_header h = { .page_size = PS };
	struct snap_writer *w;
	struct snap_reader *r;
	struct snap_record rec;
	struct guest_mem again;
	char err[ERRLEN], path2[160];

	start_lazy(c);
	assert_int_equal(pager_set_running(c->pager, on_fail, c), 0);
	/* What a snapshot does first: wait for every chunk. */
	assert_int_equal(pager_wait(c->pager, err, sizeof(err)), 0);
	snprintf(path2, sizeof(path2), "%s/again.snap", c->dir);
	strcpy(h.stasis_version, "test");
	w = snap_writer_open(path2, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(
	    snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2, err, 256), 0);
	assert_int_equal(snap_write_memory(w, &c->dst, NULL, err, 256), 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	assert_int_equal(guest_mem_init(&again, MEM), 0);
	r = snap_reader_open(path2, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	if (snap_read_memory(r, &rec, &again, NULL, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(c->src.host, again.host, MEM);
	snap_reader_close(r);
	guest_mem_destroy(&again);
	unlink(path2);
}

/* The chunk geometry of the test's memory, for working sets. */
static void test_geo(struct wset_region *geo)
{
	*geo = (struct wset_region){ .gpa = 0,
				     .size = MEM,
				     .chunk_size = CHUNK,
				     .nchunks = MEM / CHUNK };
}

/* A recording sees every chunk with data the guest reads as a fault, and
 * nothing else: no filling until it ends, zero pages not counted. */
static void test_lazy_record(void **state)
{
	struct ctx *c = *state;
	char err[ERRLEN];
	struct wset w;

	c->opts.record = true;
	start_lazy(c);
	assert_int_equal(pager_set_running(c->pager, on_fail, c), 0);
	assert_true(pager_recording(c->pager));
	/* Chunks 2 and 9 hold data, 3 and 50 are all zero. */
	for (unsigned k = 0; k < 4; k++) {
		static const unsigned chunks[4] = { 2, 3, 9, 50 };
		uint64_t off = chunks[k] * (uint64_t)CHUNK + 5 * PS + 8;

		assert_true(*(volatile uint64_t *)(c->dst.host + off) ==
			    *(uint64_t *)(c->src.host + off));
	}
	/* Nothing but what was read: the filler waits. */
	assert_true(memfd_allocated(&c->dst) <= 2 * CHUNK + 4 * PS);
	assert_int_equal(pager_record_stop(c->pager, &w), 0);
	assert_false(pager_recording(c->pager));
	assert_int_equal(w.nregions, 1);
	assert_int_equal(w.regions[0].nchunks, MEM / CHUNK);
	assert_true(w.regions[0].bits[0] == (1ull << 2 | 1ull << 9));
	wset_free(&w);
	assert_int_equal(pager_record_stop(c->pager, &w), -EALREADY);
	if (pager_wait(c->pager, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(c->src.host, c->dst.host, MEM);
}

/* A working set is brought in by the prefetch pass (its chunks with
 * data), then everything else, equal to what was saved. */
static void test_lazy_prefetch(void **state)
{
	struct ctx *c = *state;
	struct wset_region geo;
	char err[ERRLEN];
	struct wset w;

	test_geo(&geo);
	assert_int_equal(wset_alloc(&w, &geo, 1), 0);
	/* 5 and 20 hold data, 3 and 52 none. */
	w.regions[0].bits[0] = 1ull << 3 | 1ull << 5 | 1ull << 20 | 1ull << 52;
	c->opts.prefetch = &w;
	start_lazy(c);
	wset_free(&w); /* the pager has its own copy */
	assert_int_equal(pager_set_running(c->pager, on_fail, c), 0);
	if (pager_wait(c->pager, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(pager_prefetched(c->pager), 2);
	assert_memory_equal(c->src.host, c->dst.host, MEM);
	assert_int_equal(c->calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_lazy_fill),
		T(test_lazy_concurrent),
		T(test_lazy_corrupt),
		T(test_lazy_truncated),
		T(test_lazy_fail_before_running),
		T(test_lazy_chained),
		T(test_lazy_record),
		T(test_lazy_prefetch),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
