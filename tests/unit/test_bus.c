/* Range registration, overlap rules and dispatch of the I/O buses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bus/bus.h"

struct probe {
	uint64_t offset;
	uint32_t len;
	bool is_write;
	uint8_t data[8];
	int calls;
};

static void probe_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
		     bool is_write)
{
	struct probe *p = opaque;

	p->offset = offset;
	p->len = len;
	p->is_write = is_write;
	p->calls++;
	if (is_write)
		memcpy(p->data, data, len);
	else
		memset(data, 0xab, len);
}

static void test_dispatch_offsets(void **state)
{
	struct bus b;
	struct probe p = { 0 };
	uint8_t data[4] = { 1, 2, 3, 4 };

	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x3f8, 8, probe_io, &p, "uart"), 0);
	assert_int_equal(bus_dispatch(&b, 0x3fb, data, 1, true), 0);
	assert_int_equal(p.offset, 3);
	assert_int_equal(p.data[0], 1);
	assert_true(p.is_write);
	assert_int_equal(bus_dispatch(&b, 0x3f8, data, 4, false), 0);
	assert_int_equal(data[3], 0xab);
	bus_destroy(&b);
}

static void test_unclaimed_reads_all_ones(void **state)
{
	struct bus b;
	struct probe p = { 0 };
	uint8_t data[4] = { 0 };

	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x60, 1, probe_io, &p, "kbd"), 0);
	assert_int_equal(bus_dispatch(&b, 0x61, data, 2, false), -ENOENT);
	assert_int_equal(data[0], 0xff);
	assert_int_equal(data[1], 0xff);
	/* An access straddling the end of a range is not claimed. */
	assert_int_equal(bus_dispatch(&b, 0x60, data, 2, false), -ENOENT);
	assert_int_equal(p.calls, 0);
	bus_destroy(&b);
}

static void test_overlap_and_limits(void **state)
{
	struct bus b;
	struct probe p = { 0 };

	bus_init(&b, "mmio");
	assert_int_equal(bus_register(&b, 0x1000, 0x100, probe_io, &p, "a"), 0);
	assert_int_equal(bus_register(&b, 0x10ff, 1, probe_io, &p, "b"),
			 -EEXIST);
	assert_int_equal(bus_register(&b, 0xf00, 0x101, probe_io, &p, "c"),
			 -EEXIST);
	assert_int_equal(bus_register(&b, 0x1100, 1, probe_io, &p, "d"), 0);
	assert_int_equal(bus_register(&b, 0x2000, 0, probe_io, &p, "e"),
			 -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX, 2, probe_io, &p, "f"),
			 -EINVAL);
	assert_int_equal(bus_unregister(&b, 0x1000), 0);
	assert_int_equal(bus_unregister(&b, 0x1000), -ENOENT);
	assert_int_equal(bus_register(&b, 0x10ff, 1, probe_io, &p, "b"), 0);
	for (unsigned i = b.nranges; i < BUS_MAX_RANGES; i++)
		assert_int_equal(
		    bus_register(&b, 0x10000 + i * 16, 16, probe_io, &p, "x"),
		    0);
	assert_int_equal(bus_register(&b, 0x90000, 16, probe_io, &p, "full"),
			 -ENOSPC);
	bus_destroy(&b);
}

static void test_sorted_lookup(void **state)
{
	struct bus b;
	struct probe p[3] = { { 0 } };
	uint8_t d = 0;

	bus_init(&b, "pio");
	/* Registered out of order; each must still find its owner. */
	assert_int_equal(bus_register(&b, 0x70, 2, probe_io, &p[0], "rtc"), 0);
	assert_int_equal(bus_register(&b, 0x20, 2, probe_io, &p[1], "pic"), 0);
	assert_int_equal(bus_register(&b, 0xcf8, 8, probe_io, &p[2], "pci"), 0);
	assert_int_equal(bus_dispatch(&b, 0x71, &d, 1, true), 0);
	assert_int_equal(bus_dispatch(&b, 0x20, &d, 1, true), 0);
	assert_int_equal(bus_dispatch(&b, 0xcff, &d, 1, true), 0);
	assert_int_equal(p[0].calls, 1);
	assert_int_equal(p[1].calls, 1);
	assert_int_equal(p[2].calls, 1);
	assert_int_equal(p[2].offset, 7);
	bus_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_offsets),
		cmocka_unit_test(test_unclaimed_reads_all_ones),
		cmocka_unit_test(test_overlap_and_limits),
		cmocka_unit_test(test_sorted_lookup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
