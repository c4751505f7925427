/* Guest RAM in a memfd, split around the 4 GiB hole; checked accessors. */
#include "memory/guest_mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

int guest_mem_init(struct guest_mem *m, uint64_t size)
{
	return guest_mem_init_paged(m, size, 4096);
}

int guest_mem_init_paged(struct guest_mem *m, uint64_t size, uint64_t page_size)
{
	bool huge = page_size == GUEST_MEM_HUGE_2M;
	uint64_t low;
	int err;

	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	if (size < GUEST_MEM_MIN || size > GUEST_MEM_MAX || (size & 0xfff) ||
	    (page_size != 4096 && !huge) || (huge && size % page_size))
		return -EINVAL;

	m->memfd =
	    memfd_create("stasis-ram",
			 MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
	if (m->memfd < 0)
		return -errno;
	m->page_size = page_size;
	if (ftruncate(m->memfd, (off_t)size) < 0)
		goto fail_errno;
	/* MAP_NORESERVE: untouched RAM costs nothing, which keeps stasis's
	 * footprint at the memory the guest actually uses. Hugepages are
	 * reserved at mmap instead: a guest that later touched a page the
	 * host no longer has would get SIGBUS, so it fails here. */
	m->host = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | (huge ? 0 : MAP_NORESERVE), m->memfd, 0);
	if (m->host == MAP_FAILED) {
		m->host = NULL;
		goto fail_errno;
	}
	m->size = m->mapped = size;

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
				 .page_size = 4096,
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

int guest_mem_limit(struct guest_mem *m, uint64_t size)
{
	uint64_t low;

	if (m->memfd < 0 || size < GUEST_MEM_MIN || size > m->size ||
	    (size & 0xfff))
		return -EINVAL;
	for (unsigned i = 0; i < m->nregions; i++)
		if (m->regions[i].file_mapped)
			return -EINVAL;
	low = size < GUEST_MEM_LOW_LIMIT ? size : GUEST_MEM_LOW_LIMIT;
	m->regions[0].size = low;
	m->nregions = 1;
	if (size > low) {
		/* size <= m->size, so the reserve has its high region. */
		m->regions[1].size = size - low;
		m->nregions = 2;
	}
	m->size = size;
	return 0;
}

void guest_mem_destroy(struct guest_mem *m)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		free(m->regions[i].file_mapped);
	if (m->host)
		munmap(m->host, m->mapped ? m->mapped : m->size);
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

/* A "Key:   N ..." line's number from /proc/meminfo; -1 when missing. */
static long long guest_mem_meminfo(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

int guest_mem_huge_check(uint64_t size, char *err, size_t errlen)
{
	char text[4096];
	long long free_pages, total, rsvd, need = (long long)(size >> 21);
	FILE *f = fopen("/proc/meminfo", "re");
	size_t n = 0;

	if (f) {
		n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
	}
	text[n] = '\0';
	free_pages = guest_mem_meminfo(text, "\nHugePages_Free:");
	total = guest_mem_meminfo(text, "\nHugePages_Total:");
	rsvd = guest_mem_meminfo(text, "\nHugePages_Rsvd:");
	/* Free counts pages others reserved but have not touched yet. */
	if (free_pages >= 0 && rsvd > 0)
		free_pages = free_pages > rsvd ? free_pages - rsvd : 0;
	/* Only the default hugepage size is counted there. */
	if (guest_mem_meminfo(text, "\nHugepagesize:") != 2048)
		free_pages = total = -1;
	if (free_pages >= need)
		return 0;
	if (free_pages < 0)
		snprintf(err, errlen,
			 "--hugepages 2M: cannot tell how many 2 MiB "
			 "hugepages are free (/proc/meminfo); %lld needed",
			 need);
	else
		snprintf(err, errlen,
			 "--hugepages 2M: %lld free 2 MiB hugepages needed, "
			 "the host has %lld free of %lld (HugePages_Free - "
			 "HugePages_Rsvd, nr_hugepages); as root: echo %lld > "
			 "/proc/sys/vm/nr_hugepages",
			 need, free_pages, total, total - free_pages + need);
	return -ENOMEM;
}
