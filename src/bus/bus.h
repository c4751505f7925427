/* Port I/O and MMIO dispatch: devices claim address ranges and get one
 * handler call per guest access. */
#ifndef STASIS_BUS_H
#define STASIS_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* One handler signature for port I/O and MMIO. @offset is relative to the
 * start of the claimed range; @data holds @len bytes (1, 2, 4 or 8),
 * little-endian; on a read the handler fills it (it arrives zeroed).
 * Handlers run on vCPU threads, concurrently: a device serialises its own
 * state with its own lock. */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data,
			  uint32_t len, bool is_write);

#define BUS_MAX_RANGES 64

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_io_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name; /* "pio" or "mmio", for messages */
	/* Sorted by base; registrations happen before vCPUs run or under the
	 * write lock, dispatch takes the read lock. */
	pthread_rwlock_t lock;
	unsigned nranges;
	struct bus_range ranges[BUS_MAX_RANGES];
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);

/* Claims [base, base + len). Returns 0, -EEXIST on overlap, -ENOSPC when the
 * table is full, -EINVAL for an empty or wrapping range. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn,
		 void *opaque, const char *name);

/* Removes the range starting at @base; -ENOENT when there is none. */
int bus_unregister(struct bus *b, uint64_t base);

/* Sends one access to the device owning @addr. Returns 0, or -ENOENT when
 * no device claims the whole access (reads then see all ones, as on real
 * hardware with nothing decoding the address). */
int bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len,
		 bool is_write);

#endif
