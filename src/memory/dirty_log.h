/* Which guest pages were written since the last look: KVM's dirty log for
 * the vCPUs' writes, plus the pages stasis wrote itself.
 *
 * KVM sees only writes made by vCPUs. Everything stasis writes into guest
 * memory on its own (virtio buffers and used rings, the VM generation ID)
 * goes through guest_mem_write() or is followed by guest_mem_mark_dirty()
 * (memory/guest_mem.h), which sets bits in a second, software bitmap that
 * this module owns and merges into every collect. Two writers need no
 * mark: a restore's own loading of memory (copy, map, and the lazy
 * restore's UFFDIO_COPY) installs exactly the content of the snapshot the
 * log's baseline is, and tracking starts once that content is defined;
 * a lazy restore never installs a page anyone has seen, so a page read by
 * a collect's caller cannot change under it that way either.
 *
 * Two KVM mechanisms, chosen once per VM:
 * - DIRTY_LOG_RING (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]): per-vCPU rings of
 *   dirtied pages. KVM only lets a VM have rings when they are enabled
 *   before its first vCPU is created, so dirty_log_init(@want_ring) must
 *   run before vcpu_create; stasis asks for it only with --track-dirty.
 *   Rings cost a little kernel memory and nothing at run time while no
 *   slot logs.
 * - DIRTY_LOG_BITMAP: KVM_GET_DIRTY_LOG per memory slot, with
 *   KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 and KVM_CLEAR_DIRTY_LOG where the
 *   host has them (else the older get-and-reset). It can start at any
 *   time, so it is what a VM gets whose tracking starts at its first
 *   snapshot, or with --track-dirty on a host without rings.
 * Tracking (KVM_MEM_LOG_DIRTY_PAGES on the slots) costs a write-protect
 * fault per page and round, so it starts only when dirty_log_start is
 * called: at the first snapshot, at a restore, or at boot with
 * --track-dirty.
 *
 * Collecting is atomic with respect to later writes: every write that
 * completes after dirty_log_collect() returns is reported by the next
 * collect. A caller that reads page contents after collect returns
 * therefore never misses a change, paused (a snapshot) or running (the
 * rounds of a pre-copy migration). A write racing with the collect may be
 * reported twice, never not at all.
 *
 * Memory slot i must be guest_mem region i (core/vm.c creates them so).
 * Bitmaps passed in and out have one bit per GUEST_MEM_PAGE page of the
 * region, bit p of word p / 64, dirty_log_bitmap_words() words. */
#ifndef STASIS_DIRTY_LOG_H
#define STASIS_DIRTY_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"

enum dirty_log_mode {
	DIRTY_LOG_OFF = 0, /* not tracking */
	DIRTY_LOG_BITMAP, /* per-slot bitmaps */
	DIRTY_LOG_RING, /* per-vCPU rings */
};

/* Entries per vCPU ring (16 bytes each), lowered to the host's maximum. */
#define DIRTY_LOG_RING_ENTRIES 16384u

struct kvm_dirty_gfn;

struct dirty_ring {
	struct kvm_dirty_gfn *gfns; /* mmap of the vCPU's ring, or NULL */
	uint32_t fetch; /* next entry to look at */
};

struct dirty_log {
	int vm_fd; /* -1: software marks only (tests, tools) */
	struct guest_mem *mem;
	enum dirty_log_mode mode; /* DIRTY_LOG_OFF until started */
	bool ring_ready; /* rings enabled at VM creation */
	bool ring_acq_rel; /* the _ACQ_REL flavour: needs ordered accesses */
	bool manual_protect; /* KVM_CLEAR_DIRTY_LOG in bitmap mode */
	uint32_t ring_entries;
	unsigned nrings;
	struct dirty_ring *rings;
	/* Serialises collects and ring-full harvests. */
	pthread_mutex_t lock;
	/* Per region: KVM's bitmap (bitmap mode), pages harvested from the
	 * rings but not yet collected (ring mode), and stasis's own writes
	 * (published in mem->regions[i].dirty while started). */
	uint64_t *kvm_bm[GUEST_MEM_MAX_REGIONS];
	uint64_t *pending[GUEST_MEM_MAX_REGIONS];
	uint64_t *soft[GUEST_MEM_MAX_REGIONS];
	/* Counters, for status and tests. */
	uint64_t ring_full_exits;
	uint64_t ring_harvested;
};

/* Words of a bitmap for region @i of @mem. */
uint64_t dirty_log_bitmap_words(const struct guest_mem *mem, unsigned i);

/* Prepares @dl for @mem on VM @vm_fd (-1: no KVM, only stasis's own
 * marks are tracked). With @want_ring and a host that has rings, enables
 * them now: call before any vCPU exists. Starts nothing. 0 or -errno. */
int dirty_log_init(struct dirty_log *dl, int vm_fd, struct guest_mem *mem,
		   bool want_ring);

/* Maps vCPU @id's ring (after KVM_CREATE_VCPU, ids from 0 up, fewer than
 * @nvcpus). A no-op returning 0 when rings are not enabled. */
int dirty_log_attach_vcpu(struct dirty_log *dl, unsigned id, unsigned nvcpus,
			  int vcpu_fd);

/* Starts tracking: rings when they were enabled, else bitmaps. Pages
 * written from now on are reported by the first collect. Idempotent: 0
 * when already started. 0 or -errno (-ENOTSUP: the host has no dirty
 * log). */
int dirty_log_start(struct dirty_log *dl);

bool dirty_log_started(const struct dirty_log *dl);
const char *dirty_log_mode_name(enum dirty_log_mode m);

/* ORs into @out[i] (one bitmap per region of mem, dirty_log_bitmap_words
 * words each) every page written since the previous collect (or since
 * start) and resets the log. Callable while vCPUs run. -EINVAL when not
 * started; on a KVM error -errno, and the pages gathered so far are kept
 * for the next collect, so a failed collect loses nothing. */
int dirty_log_collect(struct dirty_log *dl, uint64_t *const *out);

/* Puts back @bm's pages into the log of region @i (a snapshot that
 * collected them and then failed), so that the next collect reports them
 * again. */
void dirty_log_return(struct dirty_log *dl, unsigned i, const uint64_t *bm);

/* A vCPU's KVM_EXIT_DIRTY_RING_FULL: harvests every ring into the
 * pending bitmaps and resets them, so that the vCPU can run on. 0 or
 * -errno. */
int dirty_log_ring_full(struct dirty_log *dl);

/* Stops tracking (slots stop logging; rings stay mapped, unused). What
 * was not collected is dropped. */
void dirty_log_stop(struct dirty_log *dl);

/* Stops and frees, for a VM about to be closed: the memory slots are left
 * logging (closing the VM frees them). Safe on a zeroed or
 * never-initialised-by-init struct whose vm_fd is -1 or valid. */
void dirty_log_destroy(struct dirty_log *dl);

/* Harvests one ring of @entries (a power of two) entries at @gfns into
 * dl->pending, marking each harvested entry for reset; returns the count.
 * Exposed for tests, which feed it a ring of their own. */
uint64_t dirty_log_harvest_ring(struct dirty_log *dl, struct dirty_ring *ring,
				uint32_t entries);

#endif
