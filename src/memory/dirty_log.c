/* The dirty page tracker: KVM's dirty ring or dirty bitmap, merged with
 * the pages stasis wrote itself (dirty_log.h says which and why). */
#include "memory/dirty_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

static int dirty_ioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, req, arg);
	} while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : ret;
}

static int dirty_cap(int fd, long cap)
{
	int ret = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return ret < 0 ? 0 : ret;
}

uint64_t dirty_log_bitmap_words(const struct guest_mem *mem, unsigned i)
{
	uint64_t pages = mem->regions[i].size / GUEST_MEM_PAGE;

	return (pages + 63) / 64;
}

const char *dirty_log_mode_name(enum dirty_log_mode m)
{
	switch (m) {
	case DIRTY_LOG_OFF:
		return "off";
	case DIRTY_LOG_BITMAP:
		return "bitmap";
	case DIRTY_LOG_RING:
		return "ring";
	}
	return "?";
}

static void dirty_log_free_maps(struct dirty_log *dl)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(dl->kvm_bm[i]);
		free(dl->pending[i]);
		free(dl->soft[i]);
		dl->kvm_bm[i] = dl->pending[i] = dl->soft[i] = NULL;
	}
}

int dirty_log_init(struct dirty_log *dl, int vm_fd, struct guest_mem *mem,
		   bool want_ring)
{
	memset(dl, 0, sizeof(*dl));
	dl->vm_fd = vm_fd;
	dl->mem = mem;
	pthread_mutex_init(&dl->lock, NULL);
	for (unsigned i = 0; i < mem->nregions; i++) {
		uint64_t words = dirty_log_bitmap_words(mem, i);

		dl->kvm_bm[i] = calloc(words, sizeof(uint64_t));
		dl->pending[i] = calloc(words, sizeof(uint64_t));
		dl->soft[i] = calloc(words, sizeof(uint64_t));
		if (!dl->kvm_bm[i] || !dl->pending[i] || !dl->soft[i]) {
			dirty_log_free_maps(dl);
			return -ENOMEM;
		}
	}
	if (want_ring && vm_fd >= 0) {
		long cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
		int max = dirty_cap(vm_fd, cap);
		uint32_t entries = DIRTY_LOG_RING_ENTRIES;
		struct kvm_enable_cap ec = { 0 };

		if (max <= 0) {
			cap = KVM_CAP_DIRTY_LOG_RING;
			max = dirty_cap(vm_fd, cap);
		}
		/* No rings here: bitmaps do the same job, started later. */
		if (max <= 0)
			return 0;
		while (entries * sizeof(struct kvm_dirty_gfn) > (uint64_t)max)
			entries /= 2;
		ec.cap = (uint32_t)cap;
		ec.args[0] = entries * sizeof(struct kvm_dirty_gfn);
		if (entries < 64 || dirty_ioctl(vm_fd, KVM_ENABLE_CAP, &ec) < 0)
			return 0;
		dl->ring_ready = true;
		dl->ring_acq_rel = cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
		dl->ring_entries = entries;
	}
	return 0;
}

int dirty_log_attach_vcpu(struct dirty_log *dl, unsigned id, unsigned nvcpus,
			  int vcpu_fd)
{
	size_t len = (size_t)dl->ring_entries * sizeof(struct kvm_dirty_gfn);
	void *p;

	if (!dl->ring_ready)
		return 0;
	if (!dl->rings) {
		dl->rings = calloc(nvcpus, sizeof(*dl->rings));
		if (!dl->rings)
			return -ENOMEM;
		dl->nrings = nvcpus;
	}
	if (id >= dl->nrings)
		return -EINVAL;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd,
		 (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * sysconf(_SC_PAGESIZE));
	if (p == MAP_FAILED)
		return -errno;
	dl->rings[id].gfns = p;
	dl->rings[id].fetch = 0;
	return 0;
}

static int dirty_log_set_slots(struct dirty_log *dl, bool on)
{
	for (unsigned i = 0; i < dl->mem->nregions; i++) {
		const struct mem_region *r = &dl->mem->regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = i,
			.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->host,
		};
		int ret =
		    dirty_ioctl(dl->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr);

		if (ret < 0)
			return ret;
	}
	return 0;
}

int dirty_log_start(struct dirty_log *dl)
{
	int ret;

	if (dl->mode != DIRTY_LOG_OFF)
		return 0;
	if (dl->vm_fd >= 0) {
		if (!dl->ring_ready) {
			struct kvm_enable_cap ec = {
				.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
				.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
			};

			/* Without it GET_DIRTY_LOG resets as it reads, which
			 * is as correct, only slower for large VMs. */
			dl->manual_protect =
			    (dirty_cap(dl->vm_fd,
				       KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) &
			     KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) &&
			    dirty_ioctl(dl->vm_fd, KVM_ENABLE_CAP, &ec) == 0;
		}
		ret = dirty_log_set_slots(dl, true);
		if (ret < 0) {
			dirty_log_set_slots(dl, false);
			return ret == -EINVAL ? -ENOTSUP : ret;
		}
	}
	/* Stasis's own writes count from now on too. */
	for (unsigned i = 0; i < dl->mem->nregions; i++)
		__atomic_store_n(&dl->mem->regions[i].dirty, dl->soft[i],
				 __ATOMIC_RELEASE);
	dl->mode = dl->ring_ready ? DIRTY_LOG_RING : DIRTY_LOG_BITMAP;
	return 0;
}

bool dirty_log_started(const struct dirty_log *dl)
{
	return dl->mode != DIRTY_LOG_OFF;
}

uint64_t dirty_log_harvest_ring(struct dirty_log *dl, struct dirty_ring *ring,
				uint32_t entries)
{
	uint64_t n = 0;

	for (;;) {
		struct kvm_dirty_gfn *e =
		    &ring->gfns[ring->fetch & (entries - 1)];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		uint32_t slot;
		uint64_t off;

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		slot = e->slot & 0xffff; /* address space 0 only on x86 */
		off = e->offset;
		if (slot < dl->mem->nregions &&
		    off < dl->mem->regions[slot].size / GUEST_MEM_PAGE)
			dl->pending[slot][off / 64] |= 1ull << (off % 64);
		/* Handing the entry back (KVM API, "dirty ring"). */
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
				 __ATOMIC_RELEASE);
		ring->fetch++;
		n++;
	}
	return n;
}

/* Under dl->lock: every ring's entries into pending, then one reset so
 * that KVM write-protects those pages again. */
static int dirty_log_harvest_rings(struct dirty_log *dl)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < dl->nrings; i++)
		if (dl->rings[i].gfns)
			n += dirty_log_harvest_ring(dl, &dl->rings[i],
						    dl->ring_entries);
	dl->ring_harvested += n;
	if (n && dl->vm_fd >= 0) {
		int ret = dirty_ioctl(dl->vm_fd, KVM_RESET_DIRTY_RINGS, NULL);

		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Under dl->lock: each slot's KVM bitmap into pending, reset in KVM. The
 * pages are write-protected again (CLEAR) before the caller reads them. */
static int dirty_log_fetch_bitmaps(struct dirty_log *dl)
{
	for (unsigned i = 0; i < dl->mem->nregions; i++) {
		uint64_t words = dirty_log_bitmap_words(dl->mem, i);
		struct kvm_dirty_log get = { .slot = i,
					     .dirty_bitmap = dl->kvm_bm[i] };
		int ret;

		memset(dl->kvm_bm[i], 0, words * sizeof(uint64_t));
		ret = dirty_ioctl(dl->vm_fd, KVM_GET_DIRTY_LOG, &get);
		if (ret < 0)
			return ret;
		if (dl->manual_protect) {
			struct kvm_clear_dirty_log clr = {
				.slot = i,
				.num_pages =
				    (uint32_t)(dl->mem->regions[i].size /
					       GUEST_MEM_PAGE),
				.first_page = 0,
				.dirty_bitmap = dl->kvm_bm[i],
			};

			ret = dirty_ioctl(dl->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr);
			if (ret < 0) {
				/* Not cleared: GET reports them again. */
				return ret;
			}
		}
		for (uint64_t w = 0; w < words; w++)
			dl->pending[i][w] |= dl->kvm_bm[i][w];
	}
	return 0;
}

int dirty_log_collect(struct dirty_log *dl, uint64_t *const *out)
{
	int ret = 0;

	if (dl->mode == DIRTY_LOG_OFF)
		return -EINVAL;
	pthread_mutex_lock(&dl->lock);
	if (dl->vm_fd >= 0)
		ret = dl->mode == DIRTY_LOG_RING ? dirty_log_harvest_rings(dl)
						 : dirty_log_fetch_bitmaps(dl);
	if (ret == 0) {
		for (unsigned i = 0; i < dl->mem->nregions; i++) {
			uint64_t words = dirty_log_bitmap_words(dl->mem, i);

			for (uint64_t w = 0; w < words; w++) {
				uint64_t soft = __atomic_exchange_n(
				    &dl->soft[i][w], 0, __ATOMIC_ACQ_REL);

				out[i][w] |= dl->pending[i][w] | soft;
				dl->pending[i][w] = 0;
			}
		}
	}
	pthread_mutex_unlock(&dl->lock);
	return ret;
}

void dirty_log_return(struct dirty_log *dl, unsigned i, const uint64_t *bm)
{
	uint64_t words;

	if (i >= dl->mem->nregions || !dl->pending[i])
		return;
	words = dirty_log_bitmap_words(dl->mem, i);
	pthread_mutex_lock(&dl->lock);
	for (uint64_t w = 0; w < words; w++)
		dl->pending[i][w] |= bm[w];
	pthread_mutex_unlock(&dl->lock);
}

int dirty_log_ring_full(struct dirty_log *dl)
{
	int ret;

	pthread_mutex_lock(&dl->lock);
	dl->ring_full_exits++;
	ret = dirty_log_harvest_rings(dl);
	pthread_mutex_unlock(&dl->lock);
	return ret;
}

/* Stops tracking; @slots: tell KVM too (pointless when the VM goes). */
static void dirty_log_halt(struct dirty_log *dl, bool slots)
{
	if (dl->mode == DIRTY_LOG_OFF)
		return;
	if (slots && dl->vm_fd >= 0)
		dirty_log_set_slots(dl, false);
	/* The soft bitmaps stay allocated until destroy: a device thread
	 * may still hold the pointer it loaded. */
	for (unsigned i = 0; i < dl->mem->nregions; i++)
		__atomic_store_n(&dl->mem->regions[i].dirty, NULL,
				 __ATOMIC_RELEASE);
	pthread_mutex_lock(&dl->lock);
	if (dl->mode == DIRTY_LOG_RING)
		dirty_log_harvest_rings(dl);
	for (unsigned i = 0; i < dl->mem->nregions; i++)
		memset(dl->pending[i], 0,
		       dirty_log_bitmap_words(dl->mem, i) * sizeof(uint64_t));
	pthread_mutex_unlock(&dl->lock);
	dl->mode = DIRTY_LOG_OFF;
}

void dirty_log_stop(struct dirty_log *dl)
{
	dirty_log_halt(dl, true);
}

void dirty_log_destroy(struct dirty_log *dl)
{
	size_t len = (size_t)dl->ring_entries * sizeof(struct kvm_dirty_gfn);

	if (!dl->mem)
		return;
	/* The slots keep logging until the VM's fd closes, which frees them:
	 * a memslot update here would only add milliseconds to every exit
	 * of a VM that tracked (each restored one does). */
	dirty_log_halt(dl, false);
	for (unsigned i = 0; i < dl->nrings; i++)
		if (dl->rings[i].gfns)
			munmap(dl->rings[i].gfns, len);
	free(dl->rings);
	dirty_log_free_maps(dl);
	pthread_mutex_destroy(&dl->lock);
	memset(dl, 0, sizeof(*dl));
	dl->vm_fd = -1;
}
