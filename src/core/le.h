/* Little-endian byte access: snapshot records, device state tables, PCI
 * config space and virtio structures are all little-endian, whatever the
 * host, and are never read or written as raw C structs. */
#ifndef STASIS_LE_H
#define STASIS_LE_H

#include <stddef.h>
#include <stdint.h>

/* @width bytes (1 to 8) at @p. */
static inline uint64_t get_le(const uint8_t *p, size_t width)
{
	uint64_t v = 0;

	for (size_t i = width; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static inline void put_le(uint8_t *p, uint64_t v, size_t width)
{
	for (size_t i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)get_le(p, 2);
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)get_le(p, 4);
}

static inline uint64_t get_le64(const uint8_t *p)
{
	return get_le(p, 8);
}

static inline void put_le16(uint8_t *p, uint16_t v)
{
	put_le(p, v, 2);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	put_le(p, v, 4);
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	put_le(p, v, 8);
}

#endif
