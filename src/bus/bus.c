/* Sorted range table with binary search, shared by the PIO and MMIO buses. */
#include "bus/bus.h"

#include <errno.h>
#include <string.h>

void bus_init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
	pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
	pthread_rwlock_destroy(&b->lock);
	b->nranges = 0;
}

/* Index of the first range whose base is greater than @addr. */
static unsigned bus_upper_bound(const struct bus *b, uint64_t addr)
{
	unsigned lo = 0, hi = b->nranges;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (b->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn,
		 void *opaque, const char *name)
{
	unsigned i;
	int ret = 0;

	if (len == 0 || base + len < base || !fn)
		return -EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	if (b->nranges == BUS_MAX_RANGES) {
		ret = -ENOSPC;
		goto out;
	}
	i = bus_upper_bound(b, base);
	if (i > 0) {
		const struct bus_range *prev = &b->ranges[i - 1];

		if (prev->base + prev->len > base) {
			ret = -EEXIST;
			goto out;
		}
	}
	if (i < b->nranges && base + len > b->ranges[i].base) {
		ret = -EEXIST;
		goto out;
	}
	memmove(&b->ranges[i + 1], &b->ranges[i],
		(b->nranges - i) * sizeof(b->ranges[0]));
	b->ranges[i] = (struct bus_range){ .base = base,
					   .len = len,
					   .fn = fn,
					   .opaque = opaque,
					   .name = name };
	b->nranges++;
out:
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

int bus_unregister(struct bus *b, uint64_t base)
{
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&b->lock);
	for (unsigned i = 0; i < b->nranges; i++) {
		if (b->ranges[i].base != base)
			continue;
		memmove(&b->ranges[i], &b->ranges[i + 1],
			(b->nranges - i - 1) * sizeof(b->ranges[0]));
		b->nranges--;
		ret = 0;
		break;
	}
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

int bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len,
		 bool is_write)
{
	const struct bus_range *r = NULL;
	struct bus_range found;
	unsigned i;

	pthread_rwlock_rdlock(&b->lock);
	i = bus_upper_bound(b, addr);
	if (i > 0) {
		r = &b->ranges[i - 1];
		/* The whole access must fall inside the range. */
		if (addr - r->base >= r->len || len > r->len - (addr - r->base))
			r = NULL;
	}
	if (r)
		found = *r;
	pthread_rwlock_unlock(&b->lock);

	if (!r) {
		if (!is_write)
			memset(data, 0xff, len);
		return -ENOENT;
	}
	found.fn(found.opaque, addr - found.base, data, len, is_write);
	return 0;
}
