/* Guest physical memory: one memfd holding all RAM, mapped once into stasis,
 * and the only door through which stasis reads or writes guest memory. */
#ifndef STASIS_GUEST_MEM_H
#define STASIS_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A guest physical address: never a host pointer. */
typedef uint64_t gpa_t;

/* RAM above this address is moved to 4 GiB so that the range below 4 GiB
 * stays free for the LAPIC, IOAPIC, PCI BARs and firmware-style tables. */
#define GUEST_MEM_LOW_LIMIT 0xC0000000ull
#define GUEST_MEM_HIGH_BASE 0x100000000ull

/* The page the dirty log and the file mappings count in. */
#define GUEST_MEM_PAGE 4096ull

/* Smallest and largest RAM sizes stasis accepts (--mem). */
#define GUEST_MEM_MIN (2ull << 20)
#define GUEST_MEM_MAX (1ull << 40)

#define GUEST_MEM_MAX_REGIONS 2

/* One contiguous stretch of guest RAM, backed by memfd bytes
 * [file_offset, file_offset + size). */
struct mem_region {
	gpa_t gpa;
	uint64_t size;
	uint64_t file_offset;
	uint8_t *host; /* mapping of this region inside guest_mem.host */
	/* Pages mapped from a snapshot file (guest_mem_map_file), one bit
	 * per 4 KiB page; NULL when none is. Such pages are not in the
	 * memfd: whoever looks for guest data must look here too. */
	uint8_t *file_mapped;
	/* Pages stasis itself wrote (virtio buffers and rings, the VM
	 * generation ID), one bit per GUEST_MEM_PAGE page, set atomically
	 * after the write; NULL while no dirty log runs (memory/dirty_log.h
	 * owns it). KVM's log sees only the vCPUs' writes. */
	uint64_t *dirty;
};

/* Host page size of guest RAM backed by hugetlbfs (--hugepages 2M). */
#define GUEST_MEM_HUGE_2M (2ull << 20)

struct guest_mem {
	int memfd;
	/* 4096, or GUEST_MEM_HUGE_2M when RAM comes from hugetlbfs: then
	 * every range mapped, emptied or installed must be 2 MiB aligned. */
	uint64_t page_size;
	uint8_t *host; /* the whole memfd, mapped shared */
	uint64_t size; /* total RAM bytes */
	/* Bytes of the memfd mapped at host: size, or more after
	 * guest_mem_limit() (a restore target's reserve). */
	uint64_t mapped;
	unsigned nregions;
	struct mem_region regions[GUEST_MEM_MAX_REGIONS];
};

/* Creates @size bytes of guest RAM (a multiple of 4 KiB) laid out around the
 * 4 GiB hole. Returns 0 or -errno. */
int guest_mem_init(struct guest_mem *m, uint64_t size);

/* Narrows memory made by guest_mem_init() to its first @size bytes of
 * RAM, laid out as guest_mem_init(@size) would: a smaller guest's regions
 * are a prefix of a larger one's, at the same memfd offsets. The rest
 * stays mapped (and registered with KVM by whoever did) but is no RAM to
 * the accessors. Returns 0 or -EINVAL (@size invalid or over the size,
 * or a page already mapped from a file). */
int guest_mem_limit(struct guest_mem *m, uint64_t size);

/* The same with RAM of @page_size pages: 4096, or GUEST_MEM_HUGE_2M for
 * hugetlbfs (memfd MFD_HUGETLB | MFD_HUGE_2MB, reserved in whole at
 * mmap, so a host without enough free hugepages fails here: -ENOMEM;
 * guest_mem_huge_check says so in one line first). @size must then be a
 * multiple of 2 MiB. */
int guest_mem_init_paged(struct guest_mem *m, uint64_t size,
			 uint64_t page_size);

/* Whether the host has @size bytes of free 2 MiB hugepages, from
 * /proc/meminfo: 0, or -ENOMEM with one line in @err saying how many
 * there are and how to reserve more. */
int guest_mem_huge_check(uint64_t size, char *err, size_t errlen);

/* Describes the caller's buffer @host as guest RAM without a memfd (unit
 * tests and fuzz targets): @low bytes at guest address 0 and, when @high is
 * not 0, the next @high bytes at GUEST_MEM_HIGH_BASE, adjacent in @host as
 * guest_mem_init lays them out. @host stays the caller's. */
void guest_mem_wrap(struct guest_mem *m, uint8_t *host, uint64_t low,
		    uint64_t high);

/* Unmaps and closes; safe on a zeroed or already destroyed guest_mem. */
void guest_mem_destroy(struct guest_mem *m);

/* Host pointer to [gpa, gpa + len) when that whole range is RAM inside one
 * region, else NULL. Checks for overflow; len 0 is allowed. */
void *guest_mem_ptr(const struct guest_mem *m, gpa_t gpa, uint64_t len);

/* Copies between guest RAM and a host buffer. Return 0 or -EFAULT when the
 * range is not entirely RAM. guest_mem_write marks what it wrote dirty. */
int guest_mem_read(const struct guest_mem *m, gpa_t gpa, void *buf, size_t len);
int guest_mem_write(const struct guest_mem *m, gpa_t gpa, const void *buf,
		    size_t len);

/* Records that stasis wrote [gpa, gpa + len) (or the host bytes [host,
 * host + len) inside a region), for the dirty log: call it after the
 * write, so that a log collected meanwhile loses nothing. Costs one load
 * while no log runs; ranges outside RAM are ignored. Thread-safe.
 * Whoever writes guest memory through guest_mem_ptr() must call it. */
void guest_mem_mark_dirty(const struct guest_mem *m, gpa_t gpa, uint64_t len);
void guest_mem_mark_dirty_host(const struct guest_mem *m, const void *host,
			       uint64_t len);

/* Maps @len bytes of the file @fd at @file_off over guest RAM at @gpa,
 * private and copy-on-write: the guest reads the file's pages (straight
 * from the page cache, no copy) until it writes them. The range must be
 * page-aligned RAM inside one region. Returns 0 or -errno. */
int guest_mem_map_file(struct guest_mem *m, gpa_t gpa, uint64_t len, int fd,
		       uint64_t file_off);

/* Whether page @page of @r is mapped from a file. */
bool guest_mem_page_file_mapped(const struct mem_region *r, uint64_t page);

/* The highest guest physical address + 1 that is RAM. */
gpa_t guest_mem_end(const struct guest_mem *m);

/* Region that holds @gpa, or NULL. */
const struct mem_region *guest_mem_region(const struct guest_mem *m, gpa_t gpa);

#endif
