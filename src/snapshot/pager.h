/* Lazy restore of guest memory: the guest runs before its memory is read,
 * and each piece is fetched, verified and installed when first touched.
 *
 * Two parts, each swappable:
 * - a PAGE SOURCE says how guest memory is cut into chunks, which blocks of
 *   each chunk hold data, and reads one chunk on request, verified. The one
 *   here serves a snapshot file (page_source_file_init); a post-copy
 *   migration's asks the source (migrate/page_source_mig.c).
 * - the PAGER (fault handler) registers guest RAM with userfaultfd in
 *   MISSING mode and asks the source for the chunk of each fault, on a
 *   thread of its own; a second thread brings in the remaining chunks in
 *   source order, stepping aside whenever faults are waiting. Blocks the
 *   source holds no data for are installed as zero pages. Every access
 *   to guest RAM (vCPUs through KVM, virtio workers, a snapshot being
 *   written) faults and is served the same way.
 * A chunk that fails its check is never installed: the pager stops
 * serving and reports one line (docs/architecture.md, "Lazy restore"). */
#ifndef STASIS_PAGER_H
#define STASIS_PAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/seccomp.h"
#include "memory/guest_mem.h"
#include "snapshot/snapfile.h"
#include "snapshot/wset.h"

/* One contiguous stretch of guest RAM as the source cuts it. */
struct page_source_region {
	gpa_t gpa;
	uint64_t size;
	uint32_t chunk_size; /* a power of two, at most SNAP_CHUNK_SIZE_MAX */
	uint32_t block_size; /* chunk_size / block_size <= 64 */
	uint64_t nchunks;
	uint64_t stored_chunks; /* chunks with data */
};

struct page_source_ops {
	/* Which blocks of chunk @idx of region @region hold data (bit j for
	 * block j); 0 for a chunk that is all zero. */
	uint64_t (*chunk_mask)(void *ctx, unsigned region, uint64_t idx);
	/* Reads chunk @idx into @buf (its stored blocks at their place;
	 * others untouched) and checks it. Returns 0 or -errno with one line
	 * in @err naming the chunk's guest range and where it came from.
	 * Called from two threads at once, for different chunks. */
	int (*read_chunk)(void *ctx, unsigned region, uint64_t idx,
			  uint8_t *buf, char *err, size_t errlen);
	void (*destroy)(void *ctx);
};

struct page_source {
	const struct page_source_ops *ops;
	void *ctx;
	unsigned nregions;
	struct page_source_region regions[GUEST_MEM_MAX_REGIONS];
};

/* A source serving the chunk tables @tables (one per region, in the order
 * of @mem's regions; taken over and freed by destroy) from their file,
 * which must stay open as long as the source. */
int page_source_file_init(struct page_source *src,
			  struct snap_chunk_table *tables, unsigned n);

/* Region @i of @src as chunk table @t cuts it (every source over
 * snapshot chunk tables describes its regions so). */
void page_source_set_region(struct page_source *src, unsigned i,
			    const struct snap_chunk_table *t);

struct pager;

/* A new userfaultfd (close-on-exec, non-blocking) that serves kernel
 * faults too (KVM's, syscalls'), from the syscall or /dev/userfaultfd;
 * shared with the live save's write-protect tracking (mem_live.h). Returns
 * the fd or -errno with one line in @err. */
int pager_open_uffd(char *err, size_t errlen);

/* Whether this process may use userfaultfd (the syscall, else
 * /dev/userfaultfd): 0, or -errno with one line in @err saying why not. */
int pager_probe(char *err, size_t errlen);

/* How a pager serves memory, beside its source. */
struct pager_opts {
	/* Each pager thread loads the uffd role's seccomp filter in this
	 * mode first. */
	enum seccomp_mode seccomp;
	/* Host page size of guest RAM: 0 or 4096, or 2 MiB for hugetlbfs
	 * (GUEST_MEM_HUGE_2M): then whole 2 MiB pages are installed, each
	 * from the chunks it covers. */
	uint64_t page_size;
	/* Chunks to bring in first, in one pass in source order, before the
	 * rest (a working set, wset.h); NULL for none. Geometry must match
	 * the source's. The pager copies it. */
	const struct wset *prefetch;
	/* Record which chunks faults ask for until pager_record_stop; the
	 * fill thread waits until then, so that every chunk the guest
	 * touches meanwhile is a fault. */
	bool record;
};

/* Registers @mem's RAM (whose regions must match @src's, and be empty)
 * and starts the fault and fill threads. @src is the pager's from now
 * on. Returns 0 or -errno with one line in @err. */
int pager_start(struct pager **out, struct guest_mem *mem,
		struct page_source *src, const struct pager_opts *opts,
		char *err, size_t errlen);

/* Ends a recording (pager_opts.record) and lets the fill thread go on.
 * With @w, also gives it the chunks faults asked for so far (geometry
 * of the source, w->snapshot_id left 0; wset_free it). 0, -EALREADY when
 * no recording runs (any more), -ENOMEM. */
int pager_record_stop(struct pager *p, struct wset *w);

/* Whether a recording runs. */
bool pager_recording(struct pager *p);

/* Chunks the prefetch pass has brought in so far. */
uint64_t pager_prefetched(struct pager *p);

/* Called once, before the guest or any device worker runs. From now on a
 * failed chunk calls @on_fail(@ctx, line) once, from a pager thread, and
 * the pager serves nothing more: whoever touches unserved memory waits
 * until the process ends. Before this call a failure instead releases all
 * memory (it reads as zero, only stasis itself can be reading it) and is
 * kept for pager_error. Returns -EBADMSG or the like when a chunk has
 * failed already (then @on_fail is not called), else 0. */
int pager_set_running(struct pager *p, void (*on_fail)(void *, const char *),
		      void *ctx);

/* The failure so far: 0, or its code with its line in @err. */
int pager_error(struct pager *p, char *err, size_t errlen);

/* Waits until every chunk is in guest memory (then the pager has let go
 * of it) and returns 0, or a failure's code and line. */
int pager_wait(struct pager *p, char *err, size_t errlen);

/* Whether the calling thread is a pager's fault thread: a page source
 * whose chunks come over a link asks for a fault's chunk at once, and
 * lets the fill wait for them in order. */
bool pager_on_fault_thread(void);

/* Whether a chunk failed. */
bool pager_failed(struct pager *p);

/* Stops the threads, lets go of guest memory, frees everything. Only
 * when no thread can be waiting for a chunk that failed. */
void pager_stop(struct pager *p);

#endif
