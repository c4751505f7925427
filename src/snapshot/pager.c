/* The fault handler of lazy restores (pager.h): userfaultfd on guest RAM,
 * a fault thread that serves touched chunks first, a fill thread that
 * brings in a working set first (when given), then the rest; and the
 * recording of which chunks the guest asks for. Memory is installed in
 * units of one chunk, or of one host page where that is larger (2 MiB
 * hugetlbfs pages: userfaultfd installs a huge page whole or not at
 * all). */
#include "snapshot/pager.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGER_PAGE 4096ull
#define PAGER_MSG_BATCH 16

/* A unit's state: CAS from MISSING to BUSY claims it for one thread. */
enum { CHUNK_MISSING, CHUNK_BUSY, CHUNK_DONE };

struct pager_region {
	uint8_t *host;
	struct page_source_region geo;
	uint64_t unit; /* bytes installed at once: a chunk or a host page */
	uint64_t per_unit; /* chunks per unit */
	uint64_t nunits;
	bool whole; /* huge pages: a unit is installed whole, zeros too */
	_Atomic uint8_t *state; /* per unit */
	uint8_t *has_data; /* per unit: some chunk of it holds data */
	_Atomic uint64_t *touched; /* per chunk, while recording */
	uint64_t *prefetch; /* per chunk, or NULL */
};

struct pager {
	int uffd;
	int stop_fd; /* eventfd: wakes the fault thread */
	struct page_source src;
	unsigned nregions;
	struct pager_region regions[GUEST_MEM_MAX_REGIONS];
	uint64_t stored_total;
	atomic_uint_fast64_t done; /* chunks with data installed */
	atomic_int
	    faults_active; /* the fault thread is serving: filler waits */
	atomic_bool stopping;
	atomic_bool recording;
	atomic_uint_fast64_t prefetched;
	uint64_t page; /* host page size of guest RAM */

	pthread_mutex_t lock; /* guards what follows */
	pthread_cond_t cond;
	bool complete; /* every chunk is in; memory let go */
	bool registered;
	bool running; /* pager_set_running was called */
	int fail_code;
	char fail_line[512];
	void (*on_fail)(void *, const char *);
	void *fail_ctx;

	pthread_t fault_thread, fill_thread;
	bool fault_started, fill_started;
	enum seccomp_mode seccomp;
};

int pager_open_uffd(char *err, size_t errlen)
{
	int fd, dev, e1;

	/* Kernel faults (KVM, syscalls on guest buffers) must be served
	 * too, so UFFD_USER_MODE_ONLY is no option. */
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	e1 = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	snprintf(err, errlen,
		 "userfaultfd is not available (%s; /dev/userfaultfd: %s): "
		 "vm.unprivileged_userfaultfd=1, access to /dev/userfaultfd "
		 "or CAP_SYS_PTRACE would allow it",
		 strerror(e1), dev < 0 ? strerror(errno) : "refused");
	return -e1;
}

int pager_probe(char *err, size_t errlen)
{
	int fd = pager_open_uffd(err, errlen);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

/* Lets go of guest memory (under the lock): faults from now on are the
 * kernel's. @wake: also wake the faults queued but not yet read, which
 * unregistering does not (once every chunk with data is in, they want a
 * zero page). */
static void pager_unregister(struct pager *p, bool wake)
{
	for (unsigned i = 0; p->registered && i < p->nregions; i++) {
		struct uffdio_range r = {
			.start = (uintptr_t)p->regions[i].host,
			.len = p->regions[i].geo.size,
		};

		ioctl(p->uffd, UFFDIO_UNREGISTER, &r);
		if (wake)
			ioctl(p->uffd, UFFDIO_WAKE, &r);
	}
	p->registered = false;
}

/* Records the first failure. Before the guest runs, memory is let go so
 * that stasis's own reads (device post-load) end; after, the callback
 * stops the VM and everything unserved stays unserved. */
static void pager_fail(struct pager *p, int code, const char *line)
{
	void (*cb)(void *, const char *) = NULL;
	char copy[sizeof(p->fail_line)];

	pthread_mutex_lock(&p->lock);
	if (!p->fail_code) {
		p->fail_code = code ? code : -EIO;
		snprintf(p->fail_line, sizeof(p->fail_line), "%s", line);
		if (p->running) {
			cb = p->on_fail;
			snprintf(copy, sizeof(copy), "%s", line);
		} else {
			pager_unregister(p, false);
		}
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	if (cb)
		cb(p->fail_ctx, copy);
}

bool pager_failed(struct pager *p)
{
	bool f;

	pthread_mutex_lock(&p->lock);
	f = p->fail_code != 0;
	pthread_mutex_unlock(&p->lock);
	return f;
}

/* Installs @len bytes at @dst from @src. Pages present already (the guest
 * or the other thread got there first) are skipped: what is there is
 * verified content, or the guest's own writes to it. */
static int pager_copy(struct pager *p, uint8_t *dst, const uint8_t *src,
		      uint64_t len)
{
	while (len) {
		struct uffdio_copy c = { .dst = (uintptr_t)dst,
					 .src = (uintptr_t)src,
					 .len = len };
		uint64_t adv;

		if (ioctl(p->uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		if (errno == EAGAIN && c.copy > 0)
			adv = (uint64_t)c.copy;
		else if (errno == EAGAIN)
			continue;
		else if (errno == EEXIST)
			adv = c.copy > 0 ? (uint64_t)c.copy : p->page;
		else
			return -errno;
		dst += adv;
		src += adv;
		len -= adv;
	}
	return 0;
}

static void pager_zero_page(struct pager *p, uint64_t addr)
{
	struct uffdio_zeropage z = {
		.range = { .start = addr & ~(PAGER_PAGE - 1),
			   .len = PAGER_PAGE },
	};

	while (ioctl(p->uffd, UFFDIO_ZEROPAGE, &z) && errno == EAGAIN)
		z.zeropage = 0;
}

static void pager_wake(struct pager *p, uint64_t addr)
{
	struct uffdio_range r = { .start = addr & ~(p->page - 1),
				  .len = p->page };

	ioctl(p->uffd, UFFDIO_WAKE, &r);
}

/* Reads and checks the chunks of unit @u into @buf (zeroed first) and
 * installs the unit whole: a huge page cannot be installed in parts. */
static int pager_install_unit(struct pager *p, unsigned ri, uint64_t u,
			      uint8_t *buf, uint64_t len, char *line,
			      size_t linelen)
{
	struct pager_region *r = &p->regions[ri];
	uint64_t first = u * r->per_unit, cs = r->geo.chunk_size;
	int ret;

	memset(buf, 0, len);
	for (uint64_t c = first; c < first + r->per_unit && c < r->geo.nchunks;
	     c++) {
		if (!p->src.ops->chunk_mask(p->src.ctx, ri, c))
			continue;
		ret = p->src.ops->read_chunk(
		    p->src.ctx, ri, c, buf + (c - first) * cs, line, linelen);
		if (ret)
			return ret;
	}
	ret = pager_copy(p, r->host + u * r->unit, buf, len);
	if (ret)
		snprintf(line, linelen,
			 "snapshot: installing guest memory at 0x%llx failed: "
			 "%s",
			 (unsigned long long)(r->geo.gpa + u * r->unit),
			 strerror(-ret));
	return ret;
}

/* Reads and checks chunk @idx into @buf and installs its stored blocks,
 * one copy per run of them: the others stay for zero pages. */
static int pager_install_chunk(struct pager *p, unsigned ri, uint64_t idx,
			       uint8_t *buf, uint64_t len, char *line,
			       size_t linelen)
{
	struct pager_region *r = &p->regions[ri];
	uint64_t bs = r->geo.block_size, start = idx * r->geo.chunk_size;
	uint64_t mask = p->src.ops->chunk_mask(p->src.ctx, ri, idx);
	int ret;

	ret = p->src.ops->read_chunk(p->src.ctx, ri, idx, buf, line, linelen);
	if (ret)
		return ret;
	for (uint64_t j = 0, nb = (len + bs - 1) / bs, k; j < nb; j = k) {
		uint64_t off = j * bs, end;

		for (k = j; k < nb && (mask >> k & 1); k++)
			;
		if (k == j) {
			k++;
			continue;
		}
		end = k * bs < len ? k * bs : len;
		ret =
		    pager_copy(p, r->host + start + off, buf + off, end - off);
		if (ret) {
			snprintf(line, linelen,
				 "snapshot: installing guest memory at 0x%llx "
				 "failed: %s",
				 (unsigned long long)(r->geo.gpa + start + off),
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* Claims, reads, checks and installs unit @u of region @ri. Returns
 * false when another thread has it (it will wake the waiters). */
static bool pager_serve(struct pager *p, unsigned ri, uint64_t u, uint8_t *buf)
{
	struct pager_region *r = &p->regions[ri];
	uint64_t start = u * r->unit, len = r->geo.size - start;
	uint8_t expect = CHUNK_MISSING;
	char line[512];
	int ret;

	if (!atomic_compare_exchange_strong(&r->state[u], &expect, CHUNK_BUSY))
		return false;
	if (len > r->unit)
		len = r->unit;
	if (!r->whole)
		ret =
		    pager_install_chunk(p, ri, u, buf, len, line, sizeof(line));
	else
		ret =
		    pager_install_unit(p, ri, u, buf, len, line, sizeof(line));
	if (ret) {
		/* Stays BUSY: nobody installs it. */
		pager_fail(p, ret, line);
		return true;
	}
	atomic_store(&r->state[u], CHUNK_DONE);
	if (r->has_data[u] &&
	    atomic_fetch_add(&p->done, 1) + 1 == p->stored_total) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	return true;
}

/* While recording: the chunks holding data that a fault at @off of
 * region @ri brings in. */
static void pager_record(struct pager *p, unsigned ri, uint64_t off)
{
	struct pager_region *r = &p->regions[ri];
	uint64_t idx = off / r->geo.chunk_size, first, last;

	if (!r->whole) {
		uint64_t blk = off % r->geo.chunk_size / r->geo.block_size;

		first = last = idx;
		if (!(p->src.ops->chunk_mask(p->src.ctx, ri, idx) >> blk & 1))
			return; /* a zero page: nothing to fetch */
	} else {
		first = off / r->unit * r->per_unit;
		last = first + r->per_unit - 1;
		if (last >= r->geo.nchunks)
			last = r->geo.nchunks - 1;
	}
	for (uint64_t c = first; c <= last; c++)
		if (p->src.ops->chunk_mask(p->src.ctx, ri, c))
			atomic_fetch_or(&r->touched[c / 64], 1ull << (c % 64));
}

static void pager_fault(struct pager *p, uint64_t addr, uint8_t *buf)
{
	for (unsigned ri = 0; ri < p->nregions; ri++) {
		struct pager_region *r = &p->regions[ri];
		uint64_t off = addr - (uintptr_t)r->host, idx, blk;

		if (addr < (uintptr_t)r->host || off >= r->geo.size)
			continue;
		if (pager_failed(p))
			return; /* nothing more is served */
		if (atomic_load(&p->recording))
			pager_record(p, ri, off);
		idx = off / r->unit;
		blk = off % r->geo.chunk_size / r->geo.block_size;
		if (!r->whole &&
		    !(p->src.ops->chunk_mask(p->src.ctx, ri, idx) >> blk & 1))
			pager_zero_page(p, addr);
		else if (!pager_serve(p, ri, idx, buf) &&
			 atomic_load(&r->state[idx]) == CHUNK_DONE)
			pager_wake(p, addr); /* a stale message */
		return;
	}
}

/* Each pager thread first loads its seccomp filter; one that cannot is a
 * failed restore, never an unfiltered thread. Then it takes a buffer for
 * one unit (a page or a chunk, whichever is larger). NULL: the thread
 * ends. */
static uint8_t *pager_thread_start(struct pager *p)
{
	uint8_t *buf;

	if (seccomp_install(SECCOMP_ROLE_UFFD, p->seccomp)) {
		pager_fail(p, -EPERM,
			   "lazy restore: cannot load the seccomp filter");
		return NULL;
	}
	buf = malloc(SNAP_CHUNK_SIZE_MAX > p->page ? SNAP_CHUNK_SIZE_MAX
						   : p->page);
	/* A thread that cannot serve must say so: the guest would wait. */
	if (!buf)
		pager_fail(p, -ENOMEM, "lazy restore: out of memory");
	return buf;
}

static _Thread_local bool on_fault_thread;

bool pager_on_fault_thread(void)
{
	return on_fault_thread;
}

static void *pager_fault_main(void *arg)
{
	struct pager *p = arg;
	uint8_t *buf;

	on_fault_thread = true;
	buf = pager_thread_start(p);

	while (buf && !atomic_load(&p->stopping)) {
		struct pollfd pfd[2] = { { .fd = p->uffd, .events = POLLIN },
					 { .fd = p->stop_fd,
					   .events = POLLIN } };
		struct uffd_msg msg[PAGER_MSG_BATCH];
		ssize_t n;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		atomic_store(&p->faults_active, 1);
		n = read(p->uffd, msg, sizeof(msg));
		for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(msg[0]);
		     i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				pager_fault(p, msg[i].arg.pagefault.address,
					    buf);
		atomic_store(&p->faults_active, 0);
	}
	free(buf);
	return NULL;
}

/* Lets go of guest memory once all of it is in: later faults (zero
 * blocks) are then the kernel's, at full speed, with no thread of ours. */
static void pager_complete(struct pager *p)
{
	uint64_t one = 1;

	pthread_mutex_lock(&p->lock);
	while (!p->fail_code && atomic_load(&p->done) < p->stored_total &&
	       !atomic_load(&p->stopping))
		pthread_cond_wait(&p->cond, &p->lock);
	if (!p->fail_code && !atomic_load(&p->stopping)) {
		pager_unregister(p, true);
		p->complete = true;
		pthread_cond_broadcast(&p->cond);
		/* A failed write leaves the fault thread up; harmless. */
		(void)!write(p->stop_fd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&p->lock);
}

/* Whether unit @u of @r holds a chunk of the working set. */
static bool pager_unit_prefetched(const struct pager_region *r, uint64_t u)
{
	uint64_t first = u * r->per_unit;

	for (uint64_t c = first; c < first + r->per_unit && c < r->geo.nchunks;
	     c++)
		if (r->prefetch[c / 64] >> (c % 64) & 1)
			return true;
	return false;
}

/* One pass over every unit with data (@prefetch: only the working
 * set's), in source order, behind the guest's faults. False when the
 * pager stops or failed. */
static bool pager_fill_pass(struct pager *p, uint8_t *buf, bool prefetch)
{
	const struct timespec step = { .tv_nsec = 50000 };

	for (unsigned ri = 0; ri < p->nregions; ri++) {
		struct pager_region *r = &p->regions[ri];

		if (prefetch && !r->prefetch)
			continue;
		for (uint64_t u = 0; u < r->nunits; u++) {
			if (atomic_load(&p->stopping) || pager_failed(p))
				return false;
			if (!r->has_data[u] ||
			    (prefetch && !pager_unit_prefetched(r, u)))
				continue;
			/* Faults first: the guest is waiting on those. A
			 * working set is what the guest is about to fault
			 * in: it goes on beside them, on a core of its own
			 * where there is one. */
			while (!prefetch && atomic_load(&p->faults_active) &&
			       !atomic_load(&p->stopping))
				nanosleep(&step, NULL);
			if (pager_serve(p, ri, u, buf) && prefetch)
				atomic_fetch_add(&p->prefetched, 1);
		}
	}
	return true;
}

static void *pager_fill_main(void *arg)
{
	struct pager *p = arg;
	uint8_t *buf;

	buf = pager_thread_start(p);
	if (!buf)
		return NULL;
	/* A recording sees every chunk the guest touches as a fault: no
	 * filling until it ends. */
	pthread_mutex_lock(&p->lock);
	while (atomic_load(&p->recording) && !atomic_load(&p->stopping) &&
	       !p->fail_code)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (pager_fill_pass(p, buf, true) && pager_fill_pass(p, buf, false))
		pager_complete(p);
	free(buf);
	return NULL;
}

/* Cuts region @r into units of @page bytes or one chunk, whichever is
 * larger, and notes which hold data. */
static int pager_region_init(struct pager *p, unsigned ri, uint64_t page)
{
	struct pager_region *r = &p->regions[ri];
	uint64_t cs = r->geo.chunk_size, words = (r->geo.nchunks + 63) / 64;

	r->unit = cs > page ? cs : page;
	r->per_unit = r->unit / cs;
	r->whole = page > PAGER_PAGE;
	if (!cs || cs % PAGER_PAGE || r->unit % cs ||
	    (r->whole && (r->geo.size % r->unit || r->geo.gpa % page ||
			  (uintptr_t)r->host % page)) ||
	    r->geo.nchunks != (r->geo.size + cs - 1) / cs)
		return -EINVAL;
	r->nunits = (r->geo.size + r->unit - 1) / r->unit;
	r->state = calloc(r->nunits ? r->nunits : 1, 1);
	r->has_data = calloc(r->nunits ? r->nunits : 1, 1);
	r->touched = calloc(words ? words : 1, sizeof(*r->touched));
	if (!r->state || !r->has_data || !r->touched)
		return -ENOMEM;
	for (uint64_t c = 0; c < r->geo.nchunks; c++)
		if (p->src.ops->chunk_mask(p->src.ctx, ri, c))
			r->has_data[c / r->per_unit] = 1;
	for (uint64_t u = 0; u < r->nunits; u++)
		p->stored_total += r->has_data[u];
	return 0;
}

/* Copies the working set @w, whose geometry must be the source's. */
static int pager_set_prefetch(struct pager *p, const struct wset *w)
{
	if (w->nregions != p->nregions)
		return -EINVAL;
	for (unsigned i = 0; i < p->nregions; i++) {
		struct pager_region *r = &p->regions[i];
		uint64_t words = (r->geo.nchunks + 63) / 64;

		if (w->regions[i].nchunks != r->geo.nchunks ||
		    w->regions[i].chunk_size != r->geo.chunk_size)
			return -EINVAL;
		r->prefetch = calloc(words ? words : 1, sizeof(uint64_t));
		if (!r->prefetch)
			return -ENOMEM;
		memcpy(r->prefetch, w->regions[i].bits, words * 8);
	}
	return 0;
}

int pager_start(struct pager **out, struct guest_mem *mem,
		struct page_source *src, const struct pager_opts *opts,
		char *err, size_t errlen)
{
	bool huge = opts->page_size > PAGER_PAGE;
	sigset_t all, old;
	struct uffdio_api api = { .api = UFFD_API };
	struct pager *p;
	int ret;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p) {
		if (src->ops)
			src->ops->destroy(src->ctx);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	p->src = *src;
	p->uffd = -1;
	p->seccomp = opts->seccomp;
	p->page = huge ? opts->page_size : PAGER_PAGE;
	atomic_store(&p->recording, opts->record);
	p->stop_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (src->nregions != mem->nregions) {
		snprintf(err, errlen,
			 "the page source has %u regions, guest "
			 "memory %u",
			 src->nregions, mem->nregions);
		ret = -EINVAL;
		goto fail;
	}
	p->nregions = src->nregions;
	for (unsigned i = 0; i < p->nregions; i++) {
		struct pager_region *r = &p->regions[i];

		r->geo = src->regions[i];
		r->host = mem->regions[i].host;
		if (r->geo.gpa != mem->regions[i].gpa ||
		    r->geo.size != mem->regions[i].size ||
		    r->geo.chunk_size > SNAP_CHUNK_SIZE_MAX) {
			snprintf(err, errlen,
				 "the page source does not match "
				 "guest memory");
			ret = -EINVAL;
			goto fail;
		}
		ret = pager_region_init(p, i, p->page);
		if (ret) {
			snprintf(err, errlen,
				 ret == -ENOMEM
				     ? "out of memory"
				     : "chunks of %u bytes do not fit host "
				       "pages of %llu",
				 r->geo.chunk_size,
				 (unsigned long long)p->page);
			goto fail;
		}
	}
	if (opts->prefetch && (ret = pager_set_prefetch(p, opts->prefetch))) {
		snprintf(err, errlen, "the working set does not match memory");
		goto fail;
	}
	p->uffd = pager_open_uffd(err, errlen);
	if (p->uffd < 0) {
		ret = p->uffd;
		goto fail;
	}
	if (ioctl(p->uffd, UFFDIO_API, &api) < 0 ||
	    !(api.features & (huge ? UFFD_FEATURE_MISSING_HUGETLBFS
				   : UFFD_FEATURE_MISSING_SHMEM))) {
		ret = -ENOTSUP;
		snprintf(err, errlen,
			 "userfaultfd cannot serve %s memory on this kernel",
			 huge ? "hugetlbfs" : "shared");
		goto fail;
	}
	for (unsigned i = 0; i < p->nregions; i++) {
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)p->regions[i].host,
				   .len = p->regions[i].geo.size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (ioctl(p->uffd, UFFDIO_REGISTER, &reg) < 0) {
			ret = -errno;
			snprintf(err, errlen,
				 "userfaultfd: cannot register "
				 "guest memory: %s",
				 strerror(errno));
			goto fail;
		}
		p->registered = true;
	}
	p->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (p->stop_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	/* The threads start before vm_run blocks SIGTERM and the like in
	 * the main thread: they must never take a signal meant for it (a
	 * SIGTERM that saves the VM would otherwise end the process). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&p->fault_thread, NULL, pager_fault_main, p);
	if (!ret) {
		p->fault_started = true;
		ret = pthread_create(&p->fill_thread, NULL, pager_fill_main, p);
		p->fill_started = ret == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		snprintf(err, errlen, "cannot start the pager: %s",
			 strerror(ret));
		ret = -ret;
		goto fail;
	}
	*out = p;
	return 0;

fail:
	pager_stop(p);
	return ret;
}

int pager_set_running(struct pager *p, void (*on_fail)(void *, const char *),
		      void *ctx)
{
	int ret;

	pthread_mutex_lock(&p->lock);
	p->on_fail = on_fail;
	p->fail_ctx = ctx;
	p->running = true;
	ret = p->fail_code;
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int pager_record_stop(struct pager *p, struct wset *w)
{
	struct wset_region geo[GUEST_MEM_MAX_REGIONS];
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	if (!atomic_exchange(&p->recording, false))
		ret = -EALREADY;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (ret || !w)
		return ret;
	for (unsigned i = 0; i < p->nregions; i++)
		geo[i] = (struct wset_region){
			.gpa = p->regions[i].geo.gpa,
			.size = p->regions[i].geo.size,
			.chunk_size = p->regions[i].geo.chunk_size,
			.nchunks = p->regions[i].geo.nchunks,
		};
	ret = wset_alloc(w, geo, p->nregions);
	for (unsigned i = 0; !ret && i < p->nregions; i++)
		for (uint64_t k = 0; k < (geo[i].nchunks + 63) / 64; k++)
			w->regions[i].bits[k] =
			    atomic_load(&p->regions[i].touched[k]);
	return ret;
}

bool pager_recording(struct pager *p)
{
	return atomic_load(&p->recording);
}

uint64_t pager_prefetched(struct pager *p)
{
	return atomic_load(&p->prefetched);
}

int pager_error(struct pager *p, char *err, size_t errlen)
{
	int ret;

	pthread_mutex_lock(&p->lock);
	ret = p->fail_code;
	if (ret)
		snprintf(err, errlen, "%s", p->fail_line);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int pager_wait(struct pager *p, char *err, size_t errlen)
{
	pthread_mutex_lock(&p->lock);
	while (!p->complete && !p->fail_code)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	return pager_error(p, err, errlen);
}

void pager_stop(struct pager *p)
{
	uint64_t one = 1;

	if (!p)
		return;
	atomic_store(&p->stopping, true);
	pthread_mutex_lock(&p->lock);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	/* The fault thread polls it; a full counter wakes it too. */
	if (p->stop_fd >= 0)
		(void)!write(p->stop_fd, &one, sizeof(one));
	if (p->fill_started)
		pthread_join(p->fill_thread, NULL);
	if (p->fault_started)
		pthread_join(p->fault_thread, NULL);
	if (p->uffd >= 0)
		close(p->uffd); /* unregisters, wakes any waiter */
	if (p->stop_fd >= 0)
		close(p->stop_fd);
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(p->regions[i].state);
		free(p->regions[i].has_data);
		free(p->regions[i].touched);
		free(p->regions[i].prefetch);
	}
	if (p->src.ops)
		p->src.ops->destroy(p->src.ctx);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}
