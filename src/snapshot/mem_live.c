/* Write-protect tracking of guest RAM for live saves (mem_live.h): the
 * fault thread that copies pages aside, and the stage() the memory writer
 * takes each batch from. */
#include "snapshot/mem_live.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "snapshot/pager.h"

#define LIVE_PAGE 4096ull
#define LIVE_MSG_BATCH 16
/* Faults held for want of room: one per thread that can touch guest
 * memory is all there can be (a faulting thread waits), so this is
 * plenty; when full, the thread stops reading the userfaultfd. */
#define LIVE_PENDING_MAX 256
#define LIVE_NO_SLOT UINT32_MAX

/* A page copied aside: which page, and the next copy of its chunk. */
struct live_slot {
	uint64_t page; /* within its region */
	uint32_t next;
};

/* A page copied past the bound (mem_live.h says when). */
struct live_extra {
	unsigned region;
	uint64_t page;
	uint8_t *data;
};

struct live_region {
	uint8_t *host;
	uint64_t size;
	uint64_t file_offset;
	uint64_t nchunks;
	uint32_t *head; /* per chunk: first copy, or LIVE_NO_SLOT */
	uint64_t *copied; /* per chunk: bit i = page i has a copy */
	uint8_t *done; /* per chunk: staged by the writer */
	uint8_t *rearm; /* per page: unprotected before the instant */
};

struct mem_live {
	int uffd;
	int memfd;
	int wake_fd; /* eventfd: room was freed, or stop */
	unsigned nregions;
	struct live_region regions[GUEST_MEM_MAX_REGIONS];
	uint64_t pages_per_chunk;
	bool registered;
	enum seccomp_mode seccomp;
	pid_t writer_tid; /* the thread that called mem_live_start */

	pthread_mutex_t lock; /* guards the copies, chunk states, the phase */
	/* Before the instant (mem_live_prearm) a fault only unprotects and
	 * marks the page in rearm; from mem_live_arm on it copies. */
	bool armed;
	uint64_t rearm_pages;
	int fail; /* a page went unprotected without its copy */
	uint8_t *copies; /* nslots pages */
	struct live_slot *slots;
	uint32_t nslots;
	uint32_t free_head;
	uint32_t used;
	uint64_t pending[LIVE_PENDING_MAX]; /* fault addresses (thread only) */
	unsigned npending;
	struct mem_live_stats st;
	/* Pages copied past the bound for the writer's own thread. */
	struct live_extra *extra;
	size_t nextra;

	/* Start-up handshake: the thread's filter is loaded (or not). */
	pthread_cond_t cond;
	int thread_state; /* 0 starting, 1 running, -errno failed */
	atomic_bool stopping;
	pthread_t thread;
	bool started;
	char error[256];
};

static struct live_region *live_find(struct mem_live *l, uint64_t addr,
				     uint64_t *page)
{
	for (unsigned i = 0; i < l->nregions; i++) {
		struct live_region *r = &l->regions[i];

		if (addr >= (uintptr_t)r->host &&
		    addr - (uintptr_t)r->host < r->size) {
			*page = (addr - (uintptr_t)r->host) / LIVE_PAGE;
			return r;
		}
	}
	return NULL;
}

/* Removes the protection from [addr, addr + len), waking whoever faulted
 * there. Retried while the mapping is being changed (EAGAIN). */
static int live_unprotect(struct mem_live *l, uint64_t addr, uint64_t len)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = addr, .len = len },
		.mode = 0,
	};

	while (ioctl(l->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		if (errno != EAGAIN)
			return -errno;
	}
	return 0;
}

/* Copies page @page of @r from the memfd into @dst: pread reads what the
 * page holds without a fault, and zeros for a hole without filling it. */
static int live_read_page(struct mem_live *l, const struct live_region *r,
			  uint64_t page, uint8_t *dst)
{
	ssize_t n = pread(l->memfd, dst, LIVE_PAGE,
			  (off_t)(r->file_offset + page * LIVE_PAGE));

	if (n == (ssize_t)LIVE_PAGE)
		return 0;
	return n < 0 ? -errno : -EIO;
}

/* Serves one write fault at @addr from thread @tid. Returns 0 when served,
 * -ENOSPC when it must wait for room. */
static int live_serve(struct mem_live *l, uint64_t addr, pid_t tid)
{
	uint64_t page, c, bit;
	struct live_region *r = live_find(l, addr, &page);
	uint8_t *dst;
	uint32_t s;
	int ret = 0;

	if (!r) /* not guest RAM: cannot be ours, wake it */
		return live_unprotect(l, addr & ~(LIVE_PAGE - 1), LIVE_PAGE);
	c = page / l->pages_per_chunk;
	bit = 1ull << (page % l->pages_per_chunk);
	pthread_mutex_lock(&l->lock);
	if (!l->armed) {
		/* Unprotected under the lock, so that mem_live_arm either
		 * finds the mark or comes before it and makes this a copy. */
		if (!(r->rearm[page / 8] & (1u << (page % 8)))) {
			r->rearm[page / 8] |= (uint8_t)(1u << (page % 8));
			l->rearm_pages++;
		}
		ret = live_unprotect(l, addr & ~(LIVE_PAGE - 1), LIVE_PAGE);
		pthread_mutex_unlock(&l->lock);
		return ret;
	}
	if (r->done[c] || (r->copied[c] & bit))
		goto unlock; /* staged already, or a second fault */
	if (l->free_head != LIVE_NO_SLOT) {
		s = l->free_head;
		l->free_head = l->slots[s].next;
		dst = l->copies + (uint64_t)s * LIVE_PAGE;
		ret = live_read_page(l, r, page, dst);
		if (ret) {
			l->slots[s].next = l->free_head;
			l->free_head = s;
			goto unlock;
		}
		l->slots[s] =
		    (struct live_slot){ .page = page, .next = r->head[c] };
		r->head[c] = s;
		r->copied[c] |= bit;
		l->used++;
		if ((uint64_t)l->used * LIVE_PAGE > l->st.copy_peak_bytes)
			l->st.copy_peak_bytes = (uint64_t)l->used * LIVE_PAGE;
		l->st.copied_pages++;
	} else if (tid == l->writer_tid) {
		struct live_extra *grown =
		    realloc(l->extra, (l->nextra + 1) * sizeof(*l->extra));

		/* The writer must never wait for room only it can free. */
		dst = grown ? malloc(LIVE_PAGE) : NULL;
		if (grown)
			l->extra = grown;
		if (!dst || (ret = live_read_page(l, r, page, dst))) {
			free(dst);
			ret = ret ? ret : -ENOMEM;
			goto unlock;
		}
		l->extra[l->nextra++] = (struct live_extra){
			.region = (unsigned)(r - l->regions),
			.page = page,
			.data = dst,
		};
		r->copied[c] |= bit;
		l->st.over_bound++;
		l->st.copied_pages++;
	} else {
		ret = -ENOSPC;
	}
unlock:
	/* The page goes without its copy: the save must fail. */
	if (ret && ret != -ENOSPC && !l->fail)
		l->fail = ret;
	pthread_mutex_unlock(&l->lock);
	if (ret == -ENOSPC)
		return ret;
	if (ret && !l->error[0])
		snprintf(l->error, sizeof(l->error),
			 "live save: cannot copy a guest page aside: %s",
			 strerror(-ret));
	/* On failure the page is let go all the same: a guest never waits
	 * for a save that is failing (the save then reports the error). */
	return live_unprotect(l, addr & ~(LIVE_PAGE - 1), LIVE_PAGE);
}

static void live_fault(struct mem_live *l, uint64_t addr, pid_t tid)
{
	l->st.faults++;
	if (live_serve(l, addr, tid) != -ENOSPC)
		return;
	l->st.waits++;
	l->pending[l->npending++] = addr;
}

static void live_retry_pending(struct mem_live *l)
{
	unsigned kept = 0;

	for (unsigned i = 0; i < l->npending; i++)
		if (live_serve(l, l->pending[i], 0) == -ENOSPC)
			l->pending[kept++] = l->pending[i];
	l->npending = kept;
}

static void live_read_faults(struct mem_live *l)
{
	struct uffd_msg msg[LIVE_MSG_BATCH];
	ssize_t n;

	while (l->npending < LIVE_PENDING_MAX - LIVE_MSG_BATCH) {
		n = read(l->uffd, msg, sizeof(msg));
		if (n <= 0)
			return;
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			live_fault(l, msg[i].arg.pagefault.address,
				   (pid_t)msg[i].arg.pagefault.feat.ptid);
		}
	}
}

static void live_set_state(struct mem_live *l, int state)
{
	pthread_mutex_lock(&l->lock);
	l->thread_state = state;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static void *live_thread_main(void *arg)
{
	struct mem_live *l = arg;
	int ret = seccomp_install(SECCOMP_ROLE_LIVE, l->seccomp);

	live_set_state(l, ret ? ret : 1);
	if (ret)
		return NULL;
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = l->wake_fd, .events = POLLIN },
			{ .fd = l->uffd, .events = POLLIN },
		};
		uint64_t v;

		/* With no room for more held faults, only the writer's
		 * progress (wake_fd) can help. */
		if (poll(pfd, l->npending < LIVE_PENDING_MAX ? 2 : 1, -1) < 0)
			continue;
		if (pfd[0].revents & POLLIN) {
			if (read(l->wake_fd, &v, sizeof(v)) < 0)
				v = 0;
			live_retry_pending(l);
		}
		if (pfd[1].revents & POLLIN)
			live_read_faults(l);
		/* mem_live_stop has unprotected everything: what is held
		 * is released, then the thread ends. */
		if (atomic_load(&l->stopping)) {
			for (unsigned i = 0; i < l->npending; i++)
				live_unprotect(l,
					       l->pending[i] & ~(LIVE_PAGE - 1),
					       LIVE_PAGE);
			l->npending = 0;
			return NULL;
		}
	}
}

/* The writer's side: stage [off, off + len) of region @ri as it was at
 * the instant. The memfd's data ranges are read with pread (holes are
 * zero and stay holes), then the copies of pages written since are put
 * over them, the range's chunks are marked staged and its protection
 * removed. A page can only change once unprotected, and the fault thread
 * unprotects only after its copy is in place (both under the lock), so
 * whatever pread saw of a changed page is covered by its copy. */
/* Marks pages [@from, @to) of the staged range at @off in @present. */
static void live_present(uint8_t *present, uint64_t off, uint64_t from,
			 uint64_t to)
{
	for (uint64_t p = (from - off) / LIVE_PAGE; p < (to - off) / LIVE_PAGE;
	     p++)
		present[p / 8] |= (uint8_t)(1u << (p % 8));
}

static int live_stage(void *ctx, unsigned ri, uint64_t off, uint64_t len,
		      uint8_t *dst, uint8_t *present)
{
	struct mem_live *l = ctx;
	struct live_region *r = &l->regions[ri];
	uint64_t cs = l->pages_per_chunk * LIVE_PAGE, pos = off,
		 end = off + len;
	uint64_t c0 = off / cs, c1 = (end + cs - 1) / cs;
	bool freed = false;
	uint64_t one = 1;
	int ret, failed;

	if (ri >= l->nregions || end > r->size || off % cs)
		return -EINVAL;
	while (pos < end) {
		off_t data =
		    lseek(l->memfd, (off_t)(r->file_offset + pos), SEEK_DATA);
		off_t hole;
		uint64_t from, to;

		if (data < 0 && errno != ENXIO)
			goto io_fail;
		from = data < 0 ? end : (uint64_t)data - r->file_offset;
		if (from > end)
			from = end;
		/* A hole: zero, and left out (not even cleared). */
		if (from == end)
			break;
		from &= ~(LIVE_PAGE - 1);
		hole = lseek(l->memfd, data, SEEK_HOLE);
		if (hole < 0)
			goto io_fail;
		to = ((uint64_t)hole - r->file_offset + LIVE_PAGE - 1) &
		     ~(LIVE_PAGE - 1);
		if (to > end)
			to = end;
		live_present(present, off, from, to);
		while (from < to) {
			ssize_t n =
			    pread(l->memfd, dst + (from - off), to - from,
				  (off_t)(r->file_offset + from));

			if (n <= 0)
				goto io_fail;
			from += (uint64_t)n;
		}
		pos = to;
	}

	pthread_mutex_lock(&l->lock);
	for (uint64_t c = c0; c < c1; c++) {
		uint32_t s = r->head[c];

		while (s != LIVE_NO_SLOT) {
			uint32_t next = l->slots[s].next;

			memcpy(dst + (l->slots[s].page * LIVE_PAGE - off),
			       l->copies + (uint64_t)s * LIVE_PAGE, LIVE_PAGE);
			live_present(present, off, l->slots[s].page * LIVE_PAGE,
				     (l->slots[s].page + 1) * LIVE_PAGE);
			l->slots[s].next = l->free_head;
			l->free_head = s;
			l->used--;
			freed = true;
			s = next;
		}
		r->head[c] = LIVE_NO_SLOT;
		r->copied[c] = 0;
		r->done[c] = 1;
	}
	for (size_t i = 0; i < l->nextra;) {
		struct live_extra *e = &l->extra[i];

		if (e->region != ri || e->page * LIVE_PAGE < off ||
		    e->page * LIVE_PAGE >= end) {
			i++;
			continue;
		}
		memcpy(dst + (e->page * LIVE_PAGE - off), e->data, LIVE_PAGE);
		live_present(present, off, e->page * LIVE_PAGE,
			     (e->page + 1) * LIVE_PAGE);
		free(e->data);
		*e = l->extra[--l->nextra];
	}
	failed = l->fail;
	pthread_mutex_unlock(&l->lock);
	if (freed && write(l->wake_fd, &one, sizeof(one)) < 0)
		ret = 0; /* the thread polls again at the next fault */
	if (failed)
		return failed; /* l->error says why */
	ret = live_unprotect(l, (uintptr_t)r->host + off, len);
	if (ret)
		snprintf(l->error, sizeof(l->error),
			 "live save: cannot unprotect guest memory: %s",
			 strerror(-ret));
	return ret;

io_fail:
	ret = errno ? -errno : -EIO;
	snprintf(l->error, sizeof(l->error),
		 "live save: cannot read guest memory: %s", strerror(-ret));
	return ret;
}

void mem_live_source(struct mem_live *l, struct snap_mem_source *src)
{
	*src = (struct snap_mem_source){ .stage = live_stage, .ctx = l };
}

const char *mem_live_error(const struct mem_live *l)
{
	return l->error[0] ? l->error : NULL;
}

static int live_alloc(struct mem_live *l, const struct guest_mem *mem,
		      uint64_t copy_max)
{
	uint64_t bookkeeping = 0;

	l->pages_per_chunk = SNAP_CHUNK_SIZE / LIVE_PAGE;
	l->nregions = mem->nregions;
	for (unsigned i = 0; i < mem->nregions; i++) {
		struct live_region *r = &l->regions[i];
		uint64_t cs = SNAP_CHUNK_SIZE;

		r->host = mem->regions[i].host;
		r->size = mem->regions[i].size;
		r->file_offset = mem->regions[i].file_offset;
		r->nchunks = (r->size + cs - 1) / cs;
		r->head = malloc(r->nchunks * sizeof(*r->head));
		r->copied = calloc(r->nchunks, sizeof(*r->copied));
		r->done = calloc(r->nchunks, 1);
		r->rearm = calloc(r->size / LIVE_PAGE / 8 + 1, 1);
		if (!r->head || !r->copied || !r->done || !r->rearm)
			return -ENOMEM;
		for (uint64_t c = 0; c < r->nchunks; c++)
			r->head[c] = LIVE_NO_SLOT;
		bookkeeping +=
		    r->nchunks * (sizeof(*r->head) + sizeof(*r->copied) + 1);
	}
	l->nslots = (uint32_t)(copy_max / LIVE_PAGE);
	if (!l->nslots)
		l->nslots = 1;
	/* Untouched slots cost nothing (the kernel maps them on first use);
	 * the peak counts what was used. */
	l->copies = malloc((uint64_t)l->nslots * LIVE_PAGE);
	l->slots = malloc((uint64_t)l->nslots * sizeof(*l->slots));
	if (!l->copies || !l->slots)
		return -ENOMEM;
	for (uint32_t s = 0; s < l->nslots; s++)
		l->slots[s].next = s + 1 < l->nslots ? s + 1 : LIVE_NO_SLOT;
	l->free_head = 0;
	l->st.extra_bytes =
	    bookkeeping + (uint64_t)l->nslots * sizeof(*l->slots);
	return 0;
}

int mem_live_start(struct mem_live **out, struct guest_mem *mem,
		   uint64_t copy_max, enum seccomp_mode seccomp, char *err,
		   size_t errlen)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
					      UFFD_FEATURE_THREAD_ID };
	struct mem_live *l = calloc(1, sizeof(*l));
	int ret;

	*out = NULL;
	if (!l) {
		snprintf(err, errlen, "live save: out of memory");
		return -ENOMEM;
	}
	l->uffd = l->wake_fd = -1;
	l->memfd = mem->memfd;
	l->seccomp = seccomp;
	l->writer_tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	for (unsigned i = 0; i < mem->nregions; i++) {
		if (mem->regions[i].file_mapped) {
			snprintf(
			    err, errlen,
			    "live save: guest memory is partly mapped from "
			    "a snapshot file (restored with --memory map); "
			    "save without --live");
			ret = -ENOTSUP;
			goto fail;
		}
	}
	ret = live_alloc(l, mem, copy_max ? copy_max : MEM_LIVE_COPY_MAX);
	if (ret) {
		snprintf(err, errlen, "live save: out of memory");
		goto fail;
	}
	l->uffd = pager_open_uffd(err, errlen);
	if (l->uffd < 0) {
		ret = l->uffd;
		goto fail;
	}
	if (ioctl(l->uffd, UFFDIO_API, &api) < 0 ||
	    !(api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
		snprintf(err, errlen,
			 "live save: this kernel cannot write-protect shared "
			 "memory with userfaultfd (Linux 5.19 or later can)");
		ret = -ENOTSUP;
		goto fail;
	}
	for (unsigned i = 0; i < l->nregions; i++) {
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)l->regions[i].host,
				   .len = l->regions[i].size },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};

		if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0) {
			ret = -errno;
			snprintf(err, errlen,
				 "live save: cannot register guest memory for "
				 "write-protect: %s",
				 strerror(errno));
			goto fail;
		}
		l->registered = true;
	}
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "live save: eventfd: %s",
			 strerror(errno));
		goto fail;
	}
	ret = -pthread_create(&l->thread, NULL, live_thread_main, l);
	if (ret) {
		snprintf(err, errlen, "live save: cannot start a thread: %s",
			 strerror(-ret));
		goto fail;
	}
	l->started = true;
	pthread_mutex_lock(&l->lock);
	while (!l->thread_state)
		pthread_cond_wait(&l->cond, &l->lock);
	ret = l->thread_state < 0 ? l->thread_state : 0;
	pthread_mutex_unlock(&l->lock);
	if (ret) {
		snprintf(err, errlen,
			 "live save: cannot load the live thread's seccomp "
			 "filter: %s",
			 strerror(-ret));
		goto fail;
	}
	*out = l;
	return 0;

fail:
	mem_live_stop(l, NULL);
	return ret;
}

static int live_protect(struct mem_live *l, uint64_t addr, uint64_t len)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = addr, .len = len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	while (ioctl(l->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		if (errno != EAGAIN)
			return -errno;
	}
	return 0;
}

/* Takes the pages unprotected since the last call (under the lock, with
 * @arm: from now on faults copy) and protects them again, run by run.
 * Returns the pages protected, or -errno. */
static int64_t live_rearm(struct mem_live *l, bool arm)
{
	uint8_t *marks[GUEST_MEM_MAX_REGIONS] = { NULL };
	int64_t total = 0;
	int ret = 0;

	pthread_mutex_lock(&l->lock);
	for (unsigned i = 0; i < l->nregions; i++) {
		struct live_region *r = &l->regions[i];
		size_t n = r->size / LIVE_PAGE / 8 + 1;

		/* A fresh map for the next round; this one is ours. */
		marks[i] = r->rearm;
		r->rearm = calloc(n, 1);
		if (!r->rearm) {
			r->rearm = marks[i];
			marks[i] = NULL;
			ret = -ENOMEM;
		}
	}
	l->rearm_pages = 0;
	if (arm)
		l->armed = true;
	pthread_mutex_unlock(&l->lock);
	for (unsigned i = 0; i < l->nregions; i++) {
		struct live_region *r = &l->regions[i];
		uint64_t npages = r->size / LIVE_PAGE, p = 0;

		while (marks[i] && p < npages) {
			uint64_t q, word;

			/* Mostly nothing is marked: skip 64 pages at a time. */
			if (p % 64 == 0 && p + 64 <= npages) {
				memcpy(&word, marks[i] + p / 8, sizeof(word));
				if (!word) {
					p += 64;
					continue;
				}
			}
			if (!(marks[i][p / 8] & (1u << (p % 8)))) {
				p++;
				continue;
			}
			for (q = p;
			     q < npages && (marks[i][q / 8] & (1u << (q % 8)));
			     q++)
				;
			if (!ret)
				ret = live_protect(
				    l, (uintptr_t)r->host + p * LIVE_PAGE,
				    (q - p) * LIVE_PAGE);
			total += (int64_t)(q - p);
			p = q;
		}
		free(marks[i]);
	}
	return ret ? ret : total;
}

int mem_live_prearm(struct mem_live *l, char *err, size_t errlen)
{
	int64_t left;
	int ret = 0;

	for (unsigned i = 0; !ret && i < l->nregions; i++)
		ret = live_protect(l, (uintptr_t)l->regions[i].host,
				   l->regions[i].size);
	/* Rounds while they shrink the pages the pause must protect. */
	for (unsigned round = 0; !ret && round < MEM_LIVE_PREARM_ROUNDS;
	     round++) {
		pthread_mutex_lock(&l->lock);
		left = (int64_t)l->rearm_pages;
		pthread_mutex_unlock(&l->lock);
		if (left <= MEM_LIVE_REARM_SMALL)
			break;
		left = live_rearm(l, false);
		if (left < 0)
			ret = (int)left;
	}
	if (ret)
		snprintf(err, errlen,
			 "live save: cannot write-protect guest memory: %s",
			 strerror(-ret));
	return ret;
}

int mem_live_arm(struct mem_live *l, uint64_t *pages, char *err, size_t errlen)
{
	int64_t n = live_rearm(l, true);

	if (n < 0) {
		snprintf(err, errlen,
			 "live save: cannot write-protect guest memory: %s",
			 strerror((int)-n));
		return (int)n;
	}
	if (pages)
		*pages = (uint64_t)n;
	return 0;
}

void mem_live_stop(struct mem_live *l, struct mem_live_stats *st)
{
	uint64_t one = 1;

	if (!l)
		return;
	/* Nothing may wait once the save is over, whatever its outcome. */
	for (unsigned i = 0; l->registered && i < l->nregions; i++)
		live_unprotect(l, (uintptr_t)l->regions[i].host,
			       l->regions[i].size);
	if (l->started) {
		atomic_store(&l->stopping, true);
		if (write(l->wake_fd, &one, sizeof(one)) < 0)
			one = 0;
		pthread_join(l->thread, NULL);
	}
	for (unsigned i = 0; l->registered && i < l->nregions; i++) {
		struct uffdio_range r = {
			.start = (uintptr_t)l->regions[i].host,
			.len = l->regions[i].size,
		};

		ioctl(l->uffd, UFFDIO_UNREGISTER, &r);
	}
	if (st) {
		*st = l->st;
		st->extra_bytes +=
		    st->copy_peak_bytes +
		    (uint64_t)SNAP_WRITE_BATCH_CHUNKS * SNAP_CHUNK_SIZE;
	}
	if (l->uffd >= 0)
		close(l->uffd);
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	for (unsigned i = 0; i < l->nregions; i++) {
		free(l->regions[i].head);
		free(l->regions[i].copied);
		free(l->regions[i].done);
		free(l->regions[i].rearm);
	}
	for (size_t i = 0; i < l->nextra; i++)
		free(l->extra[i].data);
	free(l->extra);
	free(l->copies);
	free(l->slots);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l);
}
