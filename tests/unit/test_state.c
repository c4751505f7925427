/* The declarative state codec: exact bytes, versions, and bad input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "snapshot/state.h"

struct demo {
	uint8_t a;
	uint16_t b;
	uint32_t c;
	uint64_t d;
	bool on;
	uint8_t fifo[3];
	uint32_t regs[2];
	uint16_t added_in_v2;
	void *not_saved;
};

static int demo_validate(const void *obj)
{
	const struct demo *d = obj;

	return d->a > 200 ? -EINVAL : 0;
}

static const struct state_field demo_fields[] = {
	STATE_U8(struct demo, a, 1),
	STATE_U16(struct demo, b, 1),
	STATE_U32(struct demo, c, 1),
	STATE_U64(struct demo, d, 1),
	STATE_BOOL(struct demo, on, 1),
	STATE_U8_ARRAY(struct demo, fifo, 1),
	STATE_U32_ARRAY(struct demo, regs, 1),
	STATE_U16(struct demo, added_in_v2, 2),
};

static const struct state_desc demo_desc = {
	.name = "demo",
	.version = 2,
	.min_version = 1,
	.fields = demo_fields,
	.nfields = STATE_NFIELDS(demo_fields),
	.validate = demo_validate,
};

static const struct demo demo_value = {
	.a = 0x11,
	.b = 0x2233,
	.c = 0x44556677,
	.d = 0x8899aabbccddeeffull,
	.on = true,
	.fifo = { 1, 2, 3 },
	.regs = { 0xa0b0c0d0, 0x01020304 },
	.added_in_v2 = 0xbeef,
};

/* Little-endian, fixed width, in table order: never the C layout. */
static const uint8_t demo_bytes_v2[] = {
	0x11, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 0xff, 0xee, 0xdd,
	0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x01, 0x01, 0x02, 0x03, 0xd0,
	0xc0, 0xb0, 0xa0, 0x04, 0x03, 0x02, 0x01, 0xef, 0xbe,
};

static void test_exact_bytes(void **state)
{
	uint8_t out[64];

	assert_int_equal(state_encoded_size(&demo_desc), sizeof(demo_bytes_v2));
	assert_int_equal(
	    state_encode(&demo_desc, &demo_value, out, sizeof(out)), 0);
	assert_memory_equal(out, demo_bytes_v2, sizeof(demo_bytes_v2));
}

static void test_round_trip(void **state)
{
	struct demo back = { 0 };

	assert_int_equal(state_decode(&demo_desc, 2, &back, demo_bytes_v2,
				      sizeof(demo_bytes_v2)),
			 0);
	assert_int_equal(back.a, demo_value.a);
	assert_int_equal(back.b, demo_value.b);
	assert_int_equal(back.c, demo_value.c);
	assert_true(back.d == demo_value.d);
	assert_true(back.on);
	assert_memory_equal(back.fifo, demo_value.fifo, 3);
	assert_int_equal(back.regs[0], demo_value.regs[0]);
	assert_int_equal(back.regs[1], demo_value.regs[1]);
	assert_int_equal(back.added_in_v2, 0xbeef);
}

static void test_old_version_keeps_defaults(void **state)
{
	struct demo back = { .added_in_v2 = 7 };

	/* A version 1 stream lacks the last field. */
	assert_int_equal(state_encoded_size_v(&demo_desc, 1),
			 sizeof(demo_bytes_v2) - 2);
	assert_int_equal(state_decode(&demo_desc, 1, &back, demo_bytes_v2,
				      sizeof(demo_bytes_v2) - 2),
			 0);
	assert_int_equal(back.added_in_v2, 7);
	assert_int_equal(back.c, demo_value.c);
}

static void test_bad_input(void **state)
{
	struct demo back = { 0 };
	uint8_t bytes[sizeof(demo_bytes_v2)];

	/* Truncated and overlong streams. */
	for (size_t n = 0; n < sizeof(demo_bytes_v2); n++)
		assert_int_equal(
		    state_decode(&demo_desc, 2, &back, demo_bytes_v2, n),
		    -EINVAL);
	/* Versions outside [min, current]. */
	assert_int_equal(state_decode(&demo_desc, 0, &back, demo_bytes_v2,
				      sizeof(demo_bytes_v2)),
			 -EPROTO);
	assert_int_equal(state_decode(&demo_desc, 3, &back, demo_bytes_v2,
				      sizeof(demo_bytes_v2)),
			 -EPROTO);
	/* A bool that is neither 0 nor 1. */
	memcpy(bytes, demo_bytes_v2, sizeof(bytes));
	bytes[15] = 2;
	assert_int_equal(
	    state_decode(&demo_desc, 2, &back, bytes, sizeof(bytes)), -EINVAL);
	/* The device's own validation. */
	memcpy(bytes, demo_bytes_v2, sizeof(bytes));
	bytes[0] = 201;
	assert_int_equal(
	    state_decode(&demo_desc, 2, &back, bytes, sizeof(bytes)), -EINVAL);
}

static void test_encode_needs_room(void **state)
{
	uint8_t out[8];

	assert_int_equal(
	    state_encode(&demo_desc, &demo_value, out, sizeof(out)), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_bytes),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_old_version_keeps_defaults),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_encode_needs_room),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
