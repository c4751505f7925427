/* The incremental memory strategy of a snapshot: beside the full writer
 * (every chunk that is not zero), a layer over the VM's latest snapshot
 * holds only the chunks with a page written since, as the dirty log
 * (memory/dirty_log.h) reports them; the others are left to the parent.
 * Every snapshot, full or not, also collects and resets the log, so that
 * the next increment counts from it. */
#ifndef STASIS_MEM_DIRTY_H
#define STASIS_MEM_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"
#include "snapshot/chain.h"
#include "snapshot/snapfile.h"

struct vm;

struct mem_dirty_save {
	bool increment; /* a layer over lin.parent_path */
	bool tracking; /* the log ran before this snapshot: collect it */
	bool collected; /* pages holds what the log gave: returned on failure */
	struct snap_lineage lin; /* this file's LINEAGE */
	uint64_t *pages[GUEST_MEM_MAX_REGIONS]; /* dirty pages, 4 KiB each */
	uint64_t *chunks[GUEST_MEM_MAX_REGIONS]; /* chunks to write */
	uint64_t dirty_pages, dirty_chunks;
};

/* Before anything is written, with @vm paused: checks that @base (NULL
 * for a full snapshot) is the VM's latest snapshot, unchanged, not the
 * file @path would replace, and that the dirty log has run since it
 * (starting it at a VM's first snapshot). 0 or -errno with one line in
 * @err. */
int mem_dirty_prepare(struct vm *vm, const char *path, const char *base,
		      struct mem_dirty_save *s, char *err, size_t errlen);

/* Collects the log into @s (nothing when it was started only now), and
 * which chunks a layer holds. Call once nothing of stasis's own writes
 * guest memory before the memory is written: after the device state,
 * whose pre_save may write it (net delivers the frames waiting in its
 * socket), so that those pages are in this layer, not only the next.
 * 0 or -errno with one line in @err; nothing is collected on failure. */
int mem_dirty_collect(struct vm *vm, struct mem_dirty_save *s, char *err,
		      size_t errlen);

/* Sets in @chunks (a bit per chunk of region @i of @mem, chunk c in word
 * c / 64) each chunk that has a page set in @pages (the dirty log's
 * bitmap of that region); adds the pages and the chunks newly set to
 * *@npages_dirty and *@nchunks_dirty. Migration's pause uses it too. */
void mem_dirty_chunks(const struct guest_mem *mem, unsigned i,
		      const uint64_t *pages, uint64_t *chunks,
		      uint64_t *npages_dirty, uint64_t *nchunks_dirty);

/* Writes the MEMORY records: all of memory, or the dirty chunks. */
int mem_dirty_write(struct vm *vm, struct snap_writer *w,
		    struct mem_dirty_save *s, struct snap_progress *progress,
		    char *err, size_t errlen);

/* After the commit (@ok) or a failure: the VM's latest snapshot becomes
 * @path (its @identity and creation time @created_ns), or the collected
 * pages go back into the log. Frees @s. */
void mem_dirty_finish(struct vm *vm, struct mem_dirty_save *s, bool ok,
		      const char *path, uint64_t identity, uint64_t created_ns);

#endif
