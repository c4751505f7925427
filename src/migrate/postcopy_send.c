/* The source side of post-copy (postcopy.h): the snapshot's chunk bytes
 * stay in the paused VM's memory, announced to the destination as LAZY
 * ranges; after the switch they are served on request on the priority
 * connection and pushed, in stream order, on the first. This copy never
 * runs again and its memory does not change, so the bytes sent are the
 * ones the snapshot writer hashed at the pause. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/le.h"
#include "core/log.h"
#include "migrate/postcopy.h"
#include "snapshot/snapfile.h"

#define PAGE GUEST_MEM_PAGE

int postcopy_check_opts(const struct migrate_opts *o, char *err, size_t errlen)
{
	if ((o->postcopy || o->timeout_postcopy) &&
	    o->compress.codec != SNAP_CODEC_RAW) {
		snprintf(err, errlen,
			 "post-copy sends guest memory as it lies in memory: "
			 "it cannot be combined with --compress");
		return -EINVAL;
	}
	if (o->timeout_postcopy && !o->timeout_s) {
		snprintf(err, errlen,
			 "--on-timeout postcopy needs --timeout-s");
		return -EINVAL;
	}
	return 0;
}

int postcopy_out_connect(struct postcopy_out *po, const struct mig_addr *a,
			 struct mig_tls *tls, const char *token, char *err,
			 size_t errlen)
{
	int ret = mig_connect(a, &po->prio, err, errlen);

	if (!ret && tls)
		ret =
		    mig_tls_start(&po->prio, tls, false, a->host, err, errlen);
	if (!ret)
		ret = mig_send_text(&po->prio, MIG_PRIORITY, 0, token, err,
				    errlen);
	return ret;
}

static int region_of(const struct guest_mem *m, const uint8_t *p)
{
	for (unsigned i = 0; i < m->nregions; i++)
		if (p >= m->regions[i].host &&
		    p < m->regions[i].host + m->regions[i].size)
			return (int)i;
	return -1;
}

/* Appends a piece, joining it to the last one where both the stream
 * and memory run on. */
static int piece_add(struct postcopy_out *po, uint64_t off, const uint8_t *host,
		     uint64_t len, bool lazy)
{
	struct postcopy_piece *last =
	    po->npieces ? &po->pieces[po->npieces - 1] : NULL;

	if (last && last->lazy == lazy && last->off + last->len == off &&
	    last->host + last->len == host) {
		last->len += len;
		return 0;
	}
	if (po->npieces == po->cap) {
		size_t cap = po->cap ? po->cap * 2 : 1024;
		struct postcopy_piece *n =
		    realloc(po->pieces, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		po->pieces = n;
		po->cap = cap;
	}
	po->pieces[po->npieces++] = (struct postcopy_piece){
		.off = off, .len = len, .host = host, .lazy = lazy
	};
	return 0;
}

static int lazy_flush(struct postcopy_out *po, struct mig_chan *c, char *err,
		      size_t errlen)
{
	uint8_t len[8];
	struct iovec v = { .iov_base = len, .iov_len = 8 };
	int ret;

	if (!po->lazy_len)
		return 0;
	put_le64(len, po->lazy_len);
	ret = mig_send(c, MIG_LAZY, po->lazy_off, &v, 1, err, errlen);
	po->lazy_len = 0;
	return ret;
}

static int cmp_piece(const void *a, const void *b)
{
	const struct postcopy_piece *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

int postcopy_out_flush(struct postcopy_out *po, struct mig_chan *c, char *err,
		       size_t errlen)
{
	/* FETCHes look pieces up by stream offset from now on. */
	qsort(po->pieces, po->npieces, sizeof(*po->pieces), cmp_piece);
	return lazy_flush(po, c, err, errlen);
}

/* A lazy run: joined to the pending LAZY range when it follows it. */
static int lazy_add(struct postcopy_out *po, struct mig_chan *c, uint64_t off,
		    uint64_t len, char *err, size_t errlen)
{
	int ret;

	po->lazy_bytes += len;
	if (po->lazy_len && po->lazy_off + po->lazy_len == off) {
		po->lazy_len += len;
		return 0;
	}
	ret = lazy_flush(po, c, err, errlen);
	po->lazy_off = off;
	po->lazy_len = len;
	return ret;
}

/* Guest memory at @p, @len bytes at stream @off: announced as LAZY, in
 * pieces the push and the FETCHes serve from the paused guest. */
static int write_memory(struct postcopy_out *po, struct mig_chan *c, int r,
			const uint8_t *p, uint64_t len, uint64_t off, char *err,
			size_t errlen)
{
	const struct mem_region *reg = &po->mem->regions[r];
	uint64_t at = (uint64_t)(p - reg->host), end = at + len;

	while (at < end) {
		uint64_t run =
		    end - at < MIG_DATA_MAX ? end - at : MIG_DATA_MAX;
		int ret = piece_add(po, off, reg->host + at, run, true);

		if (ret) {
			snprintf(err, errlen, "post-copy: out of memory");
			return ret;
		}
		ret = lazy_add(po, c, off, run, err, errlen);
		if (ret)
			return ret;
		off += run;
		at += run;
	}
	return 0;
}

int postcopy_out_write(struct postcopy_out *po, struct mig_chan *c,
		       const struct iovec *iov, unsigned n, uint64_t off,
		       char *err, size_t errlen)
{
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *p = iov[i].iov_base;
		uint64_t len = iov[i].iov_len, done = 0;
		int r = region_of(po->mem, p);
		int ret;

		if (!len)
			continue;
		if (r >= 0 && (uintptr_t)p % PAGE == 0 && len % PAGE == 0 &&
		    p + len <=
			po->mem->regions[r].host + po->mem->regions[r].size) {
			ret = write_memory(po, c, r, p, len, off, err, errlen);
			if (ret)
				return ret;
			off += len;
			continue;
		}
		/* Records, tables: as they are. */
		while (done < len) {
			uint64_t k = len - done < MIG_DATA_MAX ? len - done
							       : MIG_DATA_MAX;
			struct iovec v = { .iov_base = (void *)(p + done),
					   .iov_len = k };

			ret = mig_send(c, MIG_DATA, off, &v, 1, err, errlen);
			if (ret)
				return ret;
			off += k;
			done += k;
		}
	}
	return 0;
}

/* The first piece that ends after @off (pieces are in stream order). */
static size_t piece_find(const struct postcopy_out *po, uint64_t off)
{
	size_t lo = 0, hi = po->npieces;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (po->pieces[mid].off + po->pieces[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Sends [@off, @off + @len) on @c as DATA frames of at most @frame
 * bytes, from the pieces; -EPROTO when some byte is not guest memory
 * held here. */
static int send_range(struct postcopy_out *po, struct mig_chan *c, uint64_t off,
		      uint64_t len, uint64_t frame, char *err, size_t errlen)
{
	size_t i = piece_find(po, off);

	while (len) {
		struct iovec v[64];
		uint64_t start = off, got = 0;
		unsigned k = 0;
		int ret;

		while (got < len && got < frame && k < 64 && i < po->npieces &&
		       po->pieces[i].off <= off) {
			const struct postcopy_piece *pc = &po->pieces[i];
			uint64_t in = off - pc->off, take = pc->len - in;

			if (take > len - got)
				take = len - got;
			if (take > frame - got)
				take = frame - got;
			v[k++] =
			    (struct iovec){ .iov_base = (void *)(pc->host + in),
					    .iov_len = take };
			got += take;
			off += take;
			if (off == pc->off + pc->len)
				i++;
		}
		if (!got) {
			snprintf(err, errlen,
				 "%s asked for stream bytes %" PRIu64
				 "+%" PRIu64 ", which are no guest memory",
				 c->peer, off, len);
			return -EPROTO;
		}
		ret = mig_send(c, MIG_DATA, start, v, k, err, errlen);
		if (ret)
			return ret;
		len -= got;
	}
	return 0;
}

/* The first fetched range that ends after @off. */
static size_t fetched_find(const struct postcopy_out *po, uint64_t off)
{
	size_t lo = 0, hi = po->nfetched;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (po->fetched[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Adds [@off, @end), merged with its neighbours. */
static int fetched_add(struct postcopy_out *po, uint64_t off, uint64_t end)
{
	size_t i = fetched_find(po, off), j = i;

	/* Ranges [i, j) meet the new one (or touch it) and are merged. */
	if (i > 0 && po->fetched[i - 1].end == off)
		i--;
	while (j < po->nfetched && po->fetched[j].off <= end)
		j++;
	if (i < j) {
		if (po->fetched[i].off < off)
			off = po->fetched[i].off;
		if (po->fetched[j - 1].end > end)
			end = po->fetched[j - 1].end;
		memmove(&po->fetched[i + 1], &po->fetched[j],
			(po->nfetched - j) * sizeof(*po->fetched));
		po->nfetched -= j - i - 1;
		po->fetched[i] = (struct postcopy_range){ off, end };
		return 0;
	}
	if (po->nfetched == po->fcap) {
		size_t cap = po->fcap ? po->fcap * 2 : 256;
		struct postcopy_range *n =
		    realloc(po->fetched, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		po->fetched = n;
		po->fcap = cap;
	}
	memmove(&po->fetched[i + 1], &po->fetched[i],
		(po->nfetched - i) * sizeof(*po->fetched));
	po->fetched[i] = (struct postcopy_range){ off, end };
	po->nfetched++;
	return 0;
}

/* One FETCH from the priority channel, answered. */
static int serve_fetch(struct postcopy_out *po, char *err, size_t errlen)
{
	uint8_t buf[MIG_CONTROL_MAX];
	struct mig_frame f;
	uint64_t len;
	int ret;

	ret = mig_recv(&po->prio, &f, buf, sizeof(buf), err, errlen);
	if (ret)
		return ret;
	if (f.type != MIG_FETCH || f.length != 8) {
		snprintf(err, errlen,
			 "%s: unexpected %s frame on the priority "
			 "connection",
			 po->prio.peer, mig_frame_name(f.type));
		return -EPROTO;
	}
	len = get_le64(buf);
	/* A FETCH is one chunk's stored blocks: whole pages, which bounds
	 * how many disjoint ranges @fetched may come to hold. */
	if (!len || len % PAGE || len > SNAP_CHUNK_SIZE_MAX) {
		snprintf(err, errlen, "%s: a FETCH of %" PRIu64 " bytes",
			 po->prio.peer, len);
		return -EPROTO;
	}
	po->fetches++;
	po->fetched_bytes += len;
	ret =
	    send_range(po, &po->prio, f.offset, len, MIG_DATA_MAX, err, errlen);
	/* The destination holds it now: the push need not send it. */
	if (!ret && fetched_add(po, f.offset, f.offset + len)) {
		snprintf(err, errlen, "post-copy: out of memory");
		ret = -ENOMEM;
	}
	return ret;
}

/* The priority thread: every FETCH answered as it comes, beside the
 * push, so that a fault waits for no push frame. Ends at po->stop or at
 * the first error, kept in po->serve_ret (the destination then fails and
 * closes the first connection too, which the push sees). */
static void *serve_main(void *arg)
{
	struct postcopy_out *po = arg;
	char err[256] = "";
	int ret = 0;

	while (!ret && !atomic_load(&po->stop)) {
		struct pollfd p = { .fd = po->prio.fd, .events = POLLIN };
		int n = poll(&p, 1, 100);

		if (n < 0 && errno != EINTR)
			ret = -errno;
		else if (n > 0)
			ret = serve_fetch(po, err, sizeof(err));
	}
	pthread_mutex_lock(&po->lock);
	po->serve_ret = ret;
	snprintf(po->serve_err, sizeof(po->serve_err), "%s", err);
	pthread_mutex_unlock(&po->lock);
	return NULL;
}

int postcopy_out_wait(struct postcopy_out *po, struct mig_chan *c,
		      uint32_t type, char *buf, size_t bufsize, char *err,
		      size_t errlen)
{
	struct mig_frame f;

	if (!po->serving) {
		int ret;

		pthread_mutex_init(&po->lock, NULL);
		atomic_store(&po->stop, false);
		ret = pthread_create(&po->serve_thread, NULL, serve_main, po);
		if (ret) {
			pthread_mutex_destroy(&po->lock);
			snprintf(err, errlen,
				 "cannot start the post-copy thread: %s",
				 strerror(ret));
			return -ret;
		}
		po->serving = true;
	}
	return mig_expect(c, type, &f, buf, bufsize, err, errlen);
}

/* "faults N total_us T p50_us X p99_us Y max_us Z". Statistics only:
 * the destination holds every chunk once it says DONE, so text that does
 * not parse is a warning, not a failed migration. */
static void parse_done(const char *peer, const char *text,
		       struct migrate_postcopy_stats *st)
{
	unsigned long long n = 0, t = 0, p50 = 0, p99 = 0, mx = 0;

	if (sscanf(text,
		   "faults %llu total_us %llu p50_us %llu p99_us %llu "
		   "max_us %llu",
		   &n, &t, &p50, &p99, &mx) == 5) {
		st->faults = n;
		st->blocked_total_us = t;
		st->blocked_p50_us = p50;
		st->blocked_p99_us = p99;
		st->blocked_max_us = mx;
	} else {
		log_warn("post-copy: %s sent DONE without its fault statistics",
			 peer);
	}
	st->on = true;
	st->done = true;
}

int postcopy_out_finish(struct postcopy_out *po, struct mig_chan *c,
			struct migrate_result *res, char *err, size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1];
	int ret;

	ret = postcopy_out_wait(po, c, MIG_RUNNING, buf, sizeof(buf), err,
				errlen);
	if (ret)
		return ret;
	po->running_ns = clock_now_ns(CLOCK_MONOTONIC);
	/* The push: lazy pieces in stream order, the destination's faults
	 * served between frames. */
	for (size_t i = 0; i < po->npieces; i++) {
		const struct postcopy_piece *pc = &po->pieces[i];

		uint64_t at = pc->off, end = pc->off + pc->len;

		while (pc->lazy && at < end) {
			uint64_t k = end - at < POSTCOPY_PUSH_FRAME
					 ? end - at
					 : POSTCOPY_PUSH_FRAME;
			size_t r;

			/* What a FETCH brought is left out. */
			pthread_mutex_lock(&po->lock);
			ret = po->serve_ret;
			r = fetched_find(po, at);
			if (!ret && r < po->nfetched &&
			    po->fetched[r].off <= at) {
				at = po->fetched[r].end < end
					 ? po->fetched[r].end
					 : end;
				k = 0;
			} else if (r < po->nfetched &&
				   po->fetched[r].off - at < k) {
				k = po->fetched[r].off - at;
			}
			if (ret)
				snprintf(err, errlen, "%s", po->serve_err);
			pthread_mutex_unlock(&po->lock);
			if (ret)
				return ret;
			if (!k)
				continue;
			ret = send_range(po, c, at, k, POSTCOPY_PUSH_FRAME, err,
					 errlen);
			if (ret)
				return ret;
			at += k;
		}
	}
	ret = mig_send(c, MIG_PUSHED, po->lazy_bytes, NULL, 0, err, errlen);
	if (!ret)
		ret = postcopy_out_wait(po, c, MIG_DONE, buf, sizeof(buf), err,
					errlen);
	if (ret)
		return ret;
	parse_done(c->peer, buf, &res->pc);
	return 0;
}

void postcopy_out_free(struct postcopy_out *po)
{
	if (po->serving) {
		atomic_store(&po->stop, true);
		pthread_join(po->serve_thread, NULL);
		pthread_mutex_destroy(&po->lock);
		po->serving = false;
	}
	mig_close(&po->prio);
	free(po->fetched);
	po->fetched = NULL;
	po->nfetched = po->fcap = 0;
	free(po->pieces);
	po->pieces = NULL;
	po->npieces = po->cap = 0;
}
