/* Live saves: guest memory as it was at one instant, while the guest runs
 * on. At the pause every page of guest RAM is write-protected with
 * userfaultfd (UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT): most of it
 * ahead of the pause, with the guest running (a page written meanwhile is
 * only unprotected and marked), and in the pause only the pages marked
 * since (mem_live_prearm, mem_live_arm). A write to a
 * page the writer has not reached yet stops in a fault; a thread of the
 * "live" seccomp role copies the page's old contents aside, into a
 * buffer of bounded size, and removes the protection. The memory writer
 * (snap_write_memory_from) stages each batch of chunks from the memfd,
 * takes the copies over it, and unprotects the batch, so that faults
 * become rare behind it.
 *
 * The fault thread touches guest memory only through pread on the memfd
 * and the userfaultfd's ioctls, and takes no lock but its own: it can
 * never wait for a vCPU, a device worker (paused, parked or itself
 * faulting) or the writer. When the buffer is full a faulting write
 * waits until the writer frees room (it frees a batch's copies once the
 * batch is staged) or passes the page; the writer never waits for the
 * fault thread, and a fault of the writer's own thread is copied beyond
 * the bound rather than made to wait (docs/architecture.md, "Live
 * saves"). */
#ifndef STASIS_MEM_LIVE_H
#define STASIS_MEM_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "core/seccomp.h"
#include "memory/guest_mem.h"
#include "snapshot/snapfile.h"

/* Default bound of the copy-aside buffer. */
#define MEM_LIVE_COPY_MAX (32ull << 20)

struct mem_live;

/* What a live save's tracking cost. */
struct mem_live_stats {
	uint64_t faults; /* write faults served */
	uint64_t copied_pages; /* pages copied aside */
	uint64_t waits; /* faults that waited for room in the buffer */
	uint64_t over_bound; /* pages copied beyond the bound (writer's) */
	uint64_t copy_peak_bytes; /* most copy-aside memory in use at once */
	uint64_t extra_bytes; /* peak memory of tracking and staging */
};

/* Registers @mem's RAM for write-protect faults and starts the fault
 * thread (which loads the live role's seccomp filter in mode @seccomp);
 * protects nothing yet, so it may run while the guest does. The copy
 * buffer holds at most @copy_max bytes (0: MEM_LIVE_COPY_MAX). Guest RAM
 * must be memfd pages only (no --memory map pages, no lazy restore in
 * progress). Returns 0 or -errno with one line in @err. */
int mem_live_start(struct mem_live **out, struct guest_mem *mem,
		   uint64_t copy_max, enum seccomp_mode seccomp, char *err,
		   size_t errlen);

/* Write-protects all of guest RAM with the guest still running, so that
 * the pause has little left to do: until mem_live_arm a write fault only
 * removes the protection and marks the page. Then, up to
 * MEM_LIVE_PREARM_ROUNDS times while more than MEM_LIVE_REARM_SMALL pages
 * are marked, protects the marked pages again. Returns 0 or -errno with
 * @err. */
#define MEM_LIVE_PREARM_ROUNDS 4
#define MEM_LIVE_REARM_SMALL 256
int mem_live_prearm(struct mem_live *l, char *err, size_t errlen);

/* The snapshot's instant: protects the pages written since the last
 * round of mem_live_prearm (their number in *@pages), and from now on a
 * write fault copies the page aside first. The VM must be paused (no
 * vCPU or worker writing). Returns 0 or -errno with @err. */
int mem_live_arm(struct mem_live *l, uint64_t *pages, char *err, size_t errlen);

/* The writer's source of memory as it was at mem_live_arm. */
void mem_live_source(struct mem_live *l, struct snap_mem_source *src);

/* The reason the last stage() failed, if one did. */
const char *mem_live_error(const struct mem_live *l);

/* Unprotects everything (so nothing waits any more), stops the thread,
 * unregisters, frees; fills @st when not NULL. Safe at any point after
 * mem_live_start, on success or failure of the save. */
void mem_live_stop(struct mem_live *l, struct mem_live_stats *st);

#endif
