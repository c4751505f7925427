/* Test helper: little-endian reads of guest memory that fail the test when
 * the address is not RAM. Shared by the boot and ACPI unit tests; include
 * after <cmocka.h>. */
#ifndef STASIS_TEST_GUEST_PEEK_H
#define STASIS_TEST_GUEST_PEEK_H

#include <stdint.h>

#include "memory/guest_mem.h"

static inline uint8_t gm_u8(const struct guest_mem *m, gpa_t a)
{
	const uint8_t *p = guest_mem_ptr(m, a, 1);

	assert_non_null(p);
	return *p;
}

static inline uint16_t gm_u16(const struct guest_mem *m, gpa_t a)
{
	return (uint16_t)(gm_u8(m, a) | gm_u8(m, a + 1) << 8);
}

static inline uint32_t gm_u32(const struct guest_mem *m, gpa_t a)
{
	return gm_u16(m, a) | (uint32_t)gm_u16(m, a + 2) << 16;
}

static inline uint64_t gm_u64(const struct guest_mem *m, gpa_t a)
{
	return gm_u32(m, a) | (uint64_t)gm_u32(m, a + 4) << 32;
}

#endif
