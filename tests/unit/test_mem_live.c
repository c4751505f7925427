/* Live saves without KVM: guest RAM in a memfd, write-protected by
 * mem_live, written through snap_write_memory_from while a thread keeps
 * writing it as a vCPU would; the file read back must be memory exactly
 * as it was at mem_live_arm, whatever the copy buffer's size. Needs
 * userfaultfd (root, or vm.unprivileged_userfaultfd=1); fails loudly
 * without it. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot/mem_live.h"
#include "snapshot/pager.h"
#include "snapshot/snapfile.h"

#define PS 4096u
#define MEM (24u << 20)
#define TOUCHED (20u << 20) /* the last 4 MiB stay holes */
#define ERRLEN 512

struct writer {
	struct guest_mem *m;
	atomic_bool stop;
	atomic_uint_fast64_t rounds;
	pthread_t thread;
};

static void fill(struct guest_mem *m, uint64_t gen)
{
	for (uint64_t p = 0; p < TOUCHED / PS; p++) {
		uint64_t *w = guest_mem_ptr(m, p * PS, PS);

		if (p % 11 == 5)
			continue; /* some pages never written: holes */
		w[0] = gen;
		w[PS / 8 - 1] = p ^ gen;
	}
}

/* Writes every page, holes included, round after round, in an order that
 * jumps ahead of the save and behind it. */
static void *writer_main(void *arg)
{
	struct writer *wr = arg;
	uint64_t n = MEM / PS;

	while (!atomic_load(&wr->stop)) {
		uint64_t r = atomic_fetch_add(&wr->rounds, 1) + 100;

		for (uint64_t k = 0; k < n && !atomic_load(&wr->stop); k++) {
			uint64_t p = (k * 7919) % n;
			uint64_t *w = guest_mem_ptr(wr->m, p * PS, PS);

			w[0] = r;
			w[PS / 8 - 1] = p ^ r;
		}
	}
	return NULL;
}

/* Saves @m live with a copy buffer of @copy_max bytes while a thread
 * writes it, and checks the file holds the generation-1 memory. */
static void live_save_check(uint64_t copy_max, bool compress)
{
	struct snap_header h = { .page_size = PS };
	struct guest_mem m, back, want;
	struct mem_live_stats st;
	struct snap_mem_source src;
	struct snap_compress z = { .codec = SNAP_CODEC_LZ4 };
	struct writer wr = { .m = &m };
	struct mem_live *l;
	struct snap_writer *w;
	struct snap_reader *r;
	struct snap_record rec;
	char dir[] = "/tmp/test_mem_live.XXXXXX", path[64], err[ERRLEN];

	assert_int_equal(pager_probe(err, sizeof(err)), 0);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	assert_int_equal(guest_mem_init(&m, MEM), 0);
	assert_int_equal(guest_mem_init(&want, MEM), 0);
	fill(&m, 1);
	fill(&want, 1);

	if (mem_live_start(&l, &m, copy_max, SECCOMP_OFF, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(mem_live_prearm(l, err, sizeof(err)), 0);
	/* Written after the protection was laid, before the instant: these
	 * belong in the file. */
	fill(&m, 2);
	fill(&want, 2);
	assert_int_equal(mem_live_arm(l, NULL, err, sizeof(err)), 0);
	assert_int_equal(pthread_create(&wr.thread, NULL, writer_main, &wr), 0);
	while (atomic_load(&wr.rounds) == 0)
		sched_yield();

	strcpy(h.stasis_version, "test");
	w = snap_writer_open(path, &h, err, sizeof(err));
	assert_non_null(w);
	if (compress)
		assert_int_equal(snap_writer_set_compress(w, &z, 2), 0);
	assert_int_equal(
	    snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2, err, ERRLEN),
	    0);
	mem_live_source(l, &src);
	if (snap_write_memory_from(w, &m, &src, NULL, err, sizeof(err)))
		fail_msg("%s", err);
	mem_live_stop(l, &st);
	atomic_store(&wr.stop, true);
	pthread_join(wr.thread, NULL);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	/* The guest wrote meanwhile, and the bound held. */
	assert_true(st.faults > 0);
	assert_true(st.copy_peak_bytes <=
		    (copy_max ? copy_max : MEM_LIVE_COPY_MAX));
	if (copy_max == PS)
		assert_true(st.waits > 0);

	assert_int_equal(guest_mem_init(&back, MEM), 0);
	r = snap_reader_open(path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec.type, SNAP_REC_MEMORY);
	if (snap_read_memory(r, &rec, &back, NULL, err, sizeof(err)))
		fail_msg("%s", err);
	for (uint64_t p = 0; p < MEM / PS; p++)
		if (memcmp(guest_mem_ptr(&back, p * PS, PS),
			   guest_mem_ptr(&want, p * PS, PS), PS))
			fail_msg("page %lu is not the instant's (first word "
				 "%lu)",
				 (unsigned long)p,
				 (unsigned long)*(uint64_t *)guest_mem_ptr(
				     &back, p * PS, 8));
	snap_reader_close(r);
	guest_mem_destroy(&back);
	guest_mem_destroy(&want);
	guest_mem_destroy(&m);
	unlink(path);
	rmdir(dir);
}

static void test_live_default_buffer(void **state)
{
	live_save_check(0, false);
}

/* One page of room: nearly every write waits for the writer, which must
 * never wait for the fault thread. */
static void test_live_full_buffer(void **state)
{
	live_save_check(PS, false);
}

static void test_live_compressed(void **state)
{
	live_save_check(64 * PS, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_live_default_buffer),
		cmocka_unit_test(test_live_full_buffer),
		cmocka_unit_test(test_live_compressed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
