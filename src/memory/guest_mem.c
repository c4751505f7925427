/* Guest RAM in a memfd, split around the 4 GiB hole; checked accessors. */
#include "memory/guest_mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int guest_mem_init(struct guest_mem *m, uint64_t size)
{
	uint64_t low;
	int err;

	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	if (size < GUEST_MEM_MIN || size > GUEST_MEM_MAX || (size & 0xfff))
		return -EINVAL;

	m->memfd = memfd_create("stasis-ram", MFD_CLOEXEC);
	if (m->memfd < 0)
		return -errno;
	if (ftruncate(m->memfd, (off_t)size) < 0)
		goto fail_errno;
	/* MAP_NORESERVE: untouched RAM costs nothing, which keeps stasis's
	 * footprint at the memory the guest actually uses. */
	m->host = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
	if (m->host == MAP_FAILED) {
		m->host = NULL;
		goto fail_errno;
	}
	m->size = size;

	low = size < GUEST_MEM_LOW_LIMIT ? size : GUEST_MEM_LOW_LIMIT;
	m->regions[0] = (struct mem_region){
		.gpa = 0, .size = low, .file_offset = 0, .host = m->host
	};
	m->nregions = 1;
	if (size > low) {
		m->regions[1] = (struct mem_region){ .gpa = GUEST_MEM_HIGH_BASE,
						     .size = size - low,
						     .file_offset = low,
						     .host = m->host + low };
		m->nregions = 2;
	}
	return 0;

fail_errno:
	err = -errno;
	guest_mem_destroy(m);
	return err;
}

void guest_mem_wrap(struct guest_mem *m, uint8_t *host, uint64_t low,
		    uint64_t high)
{
	*m = (struct guest_mem){ .memfd = -1,
				 .host = host,
				 .size = low + high,
				 .nregions = high ? 2 : 1 };
	m->regions[0] = (struct mem_region){ .size = low, .host = host };
	if (high)
		m->regions[1] = (struct mem_region){ .gpa = GUEST_MEM_HIGH_BASE,
						     .size = high,
						     .file_offset = low,
						     .host = host + low };
}

void guest_mem_destroy(struct guest_mem *m)
{
	for (unsigned i = 0; i < m->nregions; i++)
		free(m->regions[i].file_mapped);
	if (m->host)
		munmap(m->host, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
}

const struct mem_region *guest_mem_region(const struct guest_mem *m, gpa_t gpa)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct mem_region *r = &m->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

void *guest_mem_ptr(const struct guest_mem *m, gpa_t gpa, uint64_t len)
{
	const struct mem_region *r = guest_mem_region(m, gpa);
	uint64_t off;

	if (!r)
		return NULL;
	off = gpa - r->gpa;
	/* off < r->size here, so r->size - off cannot underflow. */
	if (len > r->size - off)
		return NULL;
	return r->host + off;
}

int guest_mem_read(const struct guest_mem *m, gpa_t gpa, void *buf, size_t len)
{
	const void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *m, gpa_t gpa, const void *buf,
		    size_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	guest_mem_mark_dirty(m, gpa, len);
	return 0;
}

static void guest_mem_mark_region(const struct mem_region *r, uint64_t off,
				  uint64_t len)
{
	uint64_t *bm = __atomic_load_n(&r->dirty, __ATOMIC_ACQUIRE);
	uint64_t first, last;

	if (!bm || len == 0)
		return;
	if (len > r->size - off)
		len = r->size - off;
	first = off / GUEST_MEM_PAGE;
	last = (off + len - 1) / GUEST_MEM_PAGE;
	for (uint64_t p = first; p <= last; p++)
		__atomic_fetch_or(&bm[p / 64], 1ull << (p % 64),
				  __ATOMIC_RELEASE);
}

void guest_mem_mark_dirty(const struct guest_mem *m, gpa_t gpa, uint64_t len)
{
	const struct mem_region *r = guest_mem_region(m, gpa);

	if (r)
		guest_mem_mark_region(r, gpa - r->gpa, len);
}

void guest_mem_mark_dirty_host(const struct guest_mem *m, const void *host,
			       uint64_t len)
{
	uintptr_t h = (uintptr_t)host;

	for (unsigned i = 0; i < m->nregions; i++) {
		const struct mem_region *r = &m->regions[i];
		uintptr_t base = (uintptr_t)r->host;

		if (r->host && h >= base && h - base < r->size) {
			guest_mem_mark_region(r, h - base, len);
			return;
		}
	}
}

gpa_t guest_mem_end(const struct guest_mem *m)
{
	const struct mem_region *r = &m->regions[m->nregions - 1];

	return r->gpa + r->size;
}

int guest_mem_map_file(struct guest_mem *m, gpa_t gpa, uint64_t len, int fd,
		       uint64_t file_off)
{
	struct mem_region *r = (struct mem_region *)guest_mem_region(m, gpa);
	uint64_t first, npages;
	void *p;

	if (!r || !guest_mem_ptr(m, gpa, len) ||
	    (gpa | len | file_off) & (GUEST_MEM_PAGE - 1))
		return -EINVAL;
	if (!r->file_mapped) {
		r->file_mapped = calloc(1, r->size / GUEST_MEM_PAGE / 8 + 1);
		if (!r->file_mapped)
			return -ENOMEM;
	}
	/* MAP_FIXED replaces the memfd pages under this range; KVM sees the
	 * change through its MMU notifier like any other remap. */
	p = mmap(r->host + (gpa - r->gpa), len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, (off_t)file_off);
	if (p == MAP_FAILED)
		return -errno;
	first = (gpa - r->gpa) / GUEST_MEM_PAGE;
	npages = len / GUEST_MEM_PAGE;
	for (uint64_t i = first; i < first + npages; i++)
		r->file_mapped[i / 8] |= (uint8_t)(1u << (i % 8));
	return 0;
}

bool guest_mem_page_file_mapped(const struct mem_region *r, uint64_t page)
{
	return r->file_mapped && page < r->size / GUEST_MEM_PAGE &&
	       (r->file_mapped[page / 8] & (1u << (page % 8)));
}
