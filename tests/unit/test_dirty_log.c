/* The dirty log without KVM: stasis's own writes, collect and reset,
 * pages put back after a failed snapshot, harvesting a dirty ring laid out
 * as KVM lays it out, and no page lost to a collect racing with writes. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "memory/dirty_log.h"
#include "memory/guest_mem.h"

#define LOW (2u << 20)
#define HIGH (1u << 20)

struct fixture {
	uint8_t *ram;
	struct guest_mem mem;
	struct dirty_log dl;
	uint64_t *bm[GUEST_MEM_MAX_REGIONS];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->ram = calloc(1, LOW + HIGH);
	guest_mem_wrap(&f->mem, f->ram, LOW, HIGH);
	assert_int_equal(dirty_log_init(&f->dl, -1, &f->mem, true), 0);
	for (unsigned i = 0; i < f->mem.nregions; i++)
		f->bm[i] = calloc(dirty_log_bitmap_words(&f->mem, i), 8);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dirty_log_destroy(&f->dl);
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		free(f->bm[i]);
	free(f->ram);
	free(f);
	return 0;
}

static bool bit(const uint64_t *bm, uint64_t p)
{
	return bm[p / 64] >> (p % 64) & 1;
}

static uint64_t count(const struct fixture *f, unsigned i)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < dirty_log_bitmap_words(&f->mem, i); w++)
		n += (uint64_t)__builtin_popcountll(f->bm[i][w]);
	return n;
}

static void clear(struct fixture *f)
{
	for (unsigned i = 0; i < f->mem.nregions; i++)
		memset(f->bm[i], 0, dirty_log_bitmap_words(&f->mem, i) * 8);
}

static void test_off_until_started(void **state)
{
	struct fixture *f = *state;
	uint8_t b = 1;

	assert_false(dirty_log_started(&f->dl));
	assert_int_equal(dirty_log_collect(&f->dl, f->bm), -EINVAL);
	/* Written before the start: not the log's business. */
	assert_int_equal(guest_mem_write(&f->mem, 0x3000, &b, 1), 0);
	assert_int_equal(dirty_log_start(&f->dl), 0);
	assert_string_equal(dirty_log_mode_name(f->dl.mode), "bitmap");
	assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
	assert_int_equal(count(f, 0) + count(f, 1), 0);
}

static void test_own_writes_marked(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[8] = { 0 };

	assert_int_equal(dirty_log_start(&f->dl), 0);
	/* Inside one page, across two, in the high region, through a host
	 * pointer as the virtqueue code has them. */
	assert_int_equal(guest_mem_write(&f->mem, 0x5010, buf, 4), 0);
	assert_int_equal(guest_mem_write(&f->mem, 0x1ffe, buf, 4), 0);
	assert_int_equal(
	    guest_mem_write(&f->mem, GUEST_MEM_HIGH_BASE + 0x7000, buf, 8), 0);
	guest_mem_mark_dirty_host(&f->mem, f->ram + 0x40000, 0x2000);
	/* Outside RAM: ignored, no crash. */
	guest_mem_mark_dirty(&f->mem, LOW + 0x1000, 16);
	guest_mem_mark_dirty_host(&f->mem, buf, sizeof(buf));

	assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
	assert_true(bit(f->bm[0], 5));
	assert_true(bit(f->bm[0], 1));
	assert_true(bit(f->bm[0], 2));
	assert_true(bit(f->bm[0], 0x40));
	assert_true(bit(f->bm[0], 0x41));
	assert_true(bit(f->bm[1], 7));
	assert_int_equal(count(f, 0), 5);
	assert_int_equal(count(f, 1), 1);

	/* Collected means reset. */
	clear(f);
	assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
	assert_int_equal(count(f, 0) + count(f, 1), 0);
}

static void test_return_after_failure(void **state)
{
	struct fixture *f = *state;
	uint8_t b = 7;

	assert_int_equal(dirty_log_start(&f->dl), 0);
	assert_int_equal(guest_mem_write(&f->mem, 0x9000, &b, 1), 0);
	assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
	assert_true(bit(f->bm[0], 9));
	/* The snapshot that took them failed: the next one needs them. */
	dirty_log_return(&f->dl, 0, f->bm[0]);
	clear(f);
	assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
	assert_true(bit(f->bm[0], 9));
	assert_int_equal(count(f, 0), 1);
}

static void test_stop_drops_and_unhooks(void **state)
{
	struct fixture *f = *state;
	uint8_t b = 7;

	assert_int_equal(dirty_log_start(&f->dl), 0);
	assert_non_null(f->mem.regions[0].dirty);
	dirty_log_stop(&f->dl);
	assert_null(f->mem.regions[0].dirty);
	assert_int_equal(guest_mem_write(&f->mem, 0x9000, &b, 1), 0);
	assert_int_equal(dirty_log_start(&f->dl), 0);
	assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
	assert_int_equal(count(f, 0), 0);
}

static void put_gfn(struct kvm_dirty_gfn *g, uint32_t slot, uint64_t off)
{
	g->slot = slot;
	g->offset = off;
	__atomic_store_n(&g->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
}

static void test_ring_harvest(void **state)
{
	struct fixture *f = *state;
	struct kvm_dirty_gfn gfns[8];
	struct dirty_ring ring = { .gfns = gfns, .fetch = 6 };

	memset(gfns, 0, sizeof(gfns));
	assert_int_equal(dirty_log_start(&f->dl), 0);
	/* Entries wrap around the end of the ring, as KVM pushes them. */
	put_gfn(&gfns[6], 0, 3);
	put_gfn(&gfns[7], 1, 200);
	put_gfn(&gfns[0], 0, 511);
	put_gfn(&gfns[1], 5, 1); /* no such slot: ignored */
	put_gfn(&gfns[2], 0, LOW / 4096); /* past the slot: ignored */
	assert_int_equal(dirty_log_harvest_ring(&f->dl, &ring, 8), 5);
	assert_int_equal(ring.fetch, 11);
	for (unsigned i = 0; i < 8; i++)
		if (i <= 2 || i >= 6)
			assert_int_equal(gfns[i].flags, KVM_DIRTY_GFN_F_RESET);
	/* Nothing new: the reset entries are not harvested twice. */
	assert_int_equal(dirty_log_harvest_ring(&f->dl, &ring, 8), 0);

	assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
	assert_true(bit(f->bm[0], 3));
	assert_true(bit(f->bm[0], 511));
	assert_true(bit(f->bm[1], 200));
	assert_int_equal(count(f, 0), 2);
	assert_int_equal(count(f, 1), 1);
}

struct racer {
	struct fixture *f;
	uint64_t pages;
	atomic_bool done;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;

	for (uint64_t p = 0; p < r->pages; p++) {
		uint8_t b = (uint8_t)p;

		guest_mem_write(&r->f->mem, p * GUEST_MEM_PAGE, &b, 1);
	}
	atomic_store(&r->done, true);
	return NULL;
}

/* Collects while another thread writes: the union of every collect,
 * with one after the writer finished, must hold every page written. */
static void test_collect_races_writes(void **state)
{
	struct fixture *f = *state;
	struct racer r = { .f = f, .pages = LOW / GUEST_MEM_PAGE };
	pthread_t t;
	unsigned rounds = 0;

	assert_int_equal(dirty_log_start(&f->dl), 0);
	assert_int_equal(pthread_create(&t, NULL, racer_main, &r), 0);
	while (!atomic_load(&r.done)) {
		assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
		rounds++;
	}
	pthread_join(t, NULL);
	assert_int_equal(dirty_log_collect(&f->dl, f->bm), 0);
	assert_true(rounds >= 1);
	assert_int_equal(count(f, 0), r.pages);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_off_until_started, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_own_writes_marked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_return_after_failure,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_drops_and_unhooks,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_harvest, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_collect_races_writes,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
