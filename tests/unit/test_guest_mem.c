/* Guest memory layout around the 4 GiB hole and the checked accessors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "memory/guest_mem.h"

static void test_small_is_one_region(void **state)
{
	struct guest_mem m;

	assert_int_equal(guest_mem_init(&m, 64 << 20), 0);
	assert_int_equal(m.nregions, 1);
	assert_int_equal(m.regions[0].gpa, 0);
	assert_int_equal(m.regions[0].size, 64 << 20);
	assert_int_equal(guest_mem_end(&m), 64 << 20);
	guest_mem_destroy(&m);
}

static void test_large_splits_at_hole(void **state)
{
	struct guest_mem m;
	uint64_t size = 4ull << 30;

	assert_int_equal(guest_mem_init(&m, size), 0);
	assert_int_equal(m.nregions, 2);
	assert_int_equal(m.regions[0].size, GUEST_MEM_LOW_LIMIT);
	assert_int_equal(m.regions[1].gpa, GUEST_MEM_HIGH_BASE);
	assert_int_equal(m.regions[1].size, size - GUEST_MEM_LOW_LIMIT);
	assert_int_equal(m.regions[1].file_offset, GUEST_MEM_LOW_LIMIT);
	assert_int_equal(guest_mem_end(&m),
			 GUEST_MEM_HIGH_BASE + size - GUEST_MEM_LOW_LIMIT);
	/* The hole is not RAM. */
	assert_null(guest_mem_ptr(&m, GUEST_MEM_LOW_LIMIT, 1));
	assert_null(guest_mem_ptr(&m, 0xfee00000, 4));
	assert_non_null(guest_mem_ptr(&m, GUEST_MEM_HIGH_BASE, 4096));
	guest_mem_destroy(&m);
}

static void test_bad_sizes(void **state)
{
	struct guest_mem m;

	assert_int_equal(guest_mem_init(&m, 0), -EINVAL);
	assert_int_equal(guest_mem_init(&m, GUEST_MEM_MIN - 4096), -EINVAL);
	assert_int_equal(guest_mem_init(&m, (64 << 20) + 1), -EINVAL);
	assert_int_equal(guest_mem_init(&m, GUEST_MEM_MAX + 4096), -EINVAL);
	guest_mem_destroy(&m); /* safe after failure */
}

static void test_bounds_and_overflow(void **state)
{
	struct guest_mem m;
	uint8_t buf[16] = { 1, 2, 3 }, back[16];
	uint64_t size = 8 << 20;

	assert_int_equal(guest_mem_init(&m, size), 0);
	assert_non_null(guest_mem_ptr(&m, size - 16, 16));
	assert_null(guest_mem_ptr(&m, size - 15, 16));
	assert_null(guest_mem_ptr(&m, size, 0));
	assert_null(guest_mem_ptr(&m, 16, UINT64_MAX));
	assert_null(guest_mem_ptr(&m, UINT64_MAX, 2));
	assert_int_equal(guest_mem_write(&m, 0x1000, buf, sizeof(buf)), 0);
	assert_int_equal(guest_mem_read(&m, 0x1000, back, sizeof(back)), 0);
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(guest_mem_write(&m, size - 8, buf, 16), -EFAULT);
	assert_int_equal(guest_mem_read(&m, size - 8, back, 16), -EFAULT);
	guest_mem_destroy(&m);
}

static void test_memfd_backs_mapping(void **state)
{
	struct guest_mem m;
	uint32_t v = 0xdeadbeef, got = 0;

	assert_int_equal(guest_mem_init(&m, 4 << 20), 0);
	assert_int_equal(guest_mem_write(&m, 0x2000, &v, sizeof(v)), 0);
	/* Snapshots read RAM through the memfd: it must see guest writes. */
	assert_int_equal(pread(m.memfd, &got, sizeof(got), 0x2000),
			 sizeof(got));
	assert_int_equal(got, v);
	guest_mem_destroy(&m);
}

/* A restore target's reserve narrowed to a smaller guest: the same layout
 * as that guest's own, at the same memfd offsets, and the rest no RAM. */
static void test_limit_to_smaller_guest(void **state)
{
	struct guest_mem m, want;
	uint64_t reserve = 5ull << 30;

	assert_int_equal(guest_mem_init(&m, reserve), 0);
	assert_int_equal(guest_mem_limit(&m, reserve + 4096), -EINVAL);
	assert_int_equal(guest_mem_limit(&m, 4ull << 30), 0);
	assert_int_equal(guest_mem_init(&want, 4ull << 30), 0);
	assert_int_equal(m.nregions, want.nregions);
	for (unsigned i = 0; i < m.nregions; i++) {
		assert_int_equal(m.regions[i].gpa, want.regions[i].gpa);
		assert_int_equal(m.regions[i].size, want.regions[i].size);
		assert_int_equal(m.regions[i].file_offset,
				 want.regions[i].file_offset);
	}
	guest_mem_destroy(&want);
	assert_non_null(guest_mem_ptr(&m, GUEST_MEM_HIGH_BASE, 4096));
	assert_null(guest_mem_ptr(&m, guest_mem_end(&m), 1));
	/* Down to one region; a size not in pages is refused. */
	assert_int_equal(guest_mem_limit(&m, 256 << 20), 0);
	assert_int_equal(m.nregions, 1);
	assert_int_equal(m.size, 256 << 20);
	assert_int_equal(m.mapped, reserve);
	assert_null(guest_mem_ptr(&m, 256 << 20, 1));
	assert_int_equal(guest_mem_limit(&m, (128 << 20) + 1), -EINVAL);
	assert_int_equal(guest_mem_limit(&m, 512 << 20), -EINVAL);
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_is_one_region),
		cmocka_unit_test(test_large_splits_at_hole),
		cmocka_unit_test(test_bad_sizes),
		cmocka_unit_test(test_bounds_and_overflow),
		cmocka_unit_test(test_memfd_backs_mapping),
		cmocka_unit_test(test_limit_to_smaller_guest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
