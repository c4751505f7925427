/* The page source of a post-copy migration (postcopy.h), for the
 * lazy-restore pager (snapshot/pager.h): chunks as the stream's MEMORY
 * records describe them, read from the spool the stream is rebuilt in
 * and checked against their XXH3-64 (snap_read_chunk), as from a file.
 * The bytes of a chunk the source still holds come either by the push
 * (a thread of ours writes it into the spool in stream order) or, for a
 * fault, by a FETCH on the priority connection, answered before the
 * push goes on. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/file_io.h"
#include "core/le.h"
#include "core/log.h"
#include "migrate/postcopy.h"
#include "snapshot/pager.h"
#include "snapshot/snapfile.h"

/* A chunk's state. */
enum {
	PC_HELD, /* in the spool since the switch, or no data */
	PC_LAZY, /* some of its bytes are still at the source */
	PC_FETCHED, /* fetched on the priority channel */
	PC_READ, /* read and checked: the pager has it */
};

struct lazy_range {
	uint64_t off, len;
	uint64_t before; /* lazy bytes of the ranges before it */
};

struct postcopy_in {
	struct mig_chan *prio; /* the fault thread's, under prio_lock */
	struct mig_chan *data; /* the push thread's */
	int spool;
	struct lazy_range *lazy; /* in stream order */
	size_t nlazy, cap;
	unsigned n;
	struct snap_chunk_table tables[GUEST_MEM_MAX_REGIONS];
	uint8_t *state[GUEST_MEM_MAX_REGIONS];
	bool source_made;
	enum seccomp_mode seccomp;

	pthread_mutex_t prio_lock;
	uint8_t *prio_buf;

	pthread_mutex_t lock; /* guards what follows */
	pthread_cond_t cond;
	uint64_t push_end; /* every lazy byte below it is in the spool */
	bool pushed; /* PUSHED came */
	bool done; /* every chunk read: DONE sent */
	bool stopping;
	uint64_t lazy_left; /* lazy chunks not yet read */
	int fail;
	char fail_line[512];
	uint64_t faults, total_us, max_us;
	uint64_t hist[POSTCOPY_LAT_BUCKETS];

	pthread_t thread;
	bool started;
};

unsigned postcopy_lat_bucket(uint64_t us)
{
	unsigned e, b;

	if (us < 32)
		return (unsigned)us;
	/* 16 steps per power of two: within 6%. */
	e = (unsigned)(63 - __builtin_clzll(us)) - 4;
	b = 32 + (e - 1) * 16 + (unsigned)((us >> e) - 16);
	return b < POSTCOPY_LAT_BUCKETS ? b : POSTCOPY_LAT_BUCKETS - 1;
}

uint64_t postcopy_lat_value(unsigned b)
{
	unsigned e;

	if (b < 32)
		return b;
	e = (b - 32) / 16 + 1;
	return (uint64_t)((b - 32) % 16 + 16) << e;
}

struct postcopy_in *postcopy_in_new(struct mig_chan *prio, int spool)
{
	struct postcopy_in *pi = calloc(1, sizeof(*pi));

	if (!pi)
		return NULL;
	pi->prio_buf = malloc(MIG_DATA_MAX);
	if (!pi->prio_buf) {
		free(pi);
		return NULL;
	}
	pi->prio = prio;
	pi->spool = spool;
	pthread_mutex_init(&pi->prio_lock, NULL);
	pthread_mutex_init(&pi->lock, NULL);
	pthread_cond_init(&pi->cond, NULL);
	return pi;
}

int postcopy_in_lazy(struct postcopy_in *pi, uint64_t off, uint64_t len,
		     uint64_t limit, char *err, size_t errlen)
{
	const struct lazy_range *last =
	    pi->nlazy ? &pi->lazy[pi->nlazy - 1] : NULL;

	/* Lazy runs are whole guest pages: at most one range per page of
	 * the stream's bound. */
	if (!len || len % 4096 || off > limit || len > limit - off ||
	    (last && off < last->off + last->len)) {
		snprintf(err, errlen,
			 "a LAZY frame for stream bytes %" PRIu64 "+%" PRIu64
			 " out of order or past the stream's bound",
			 off, len);
		return -EPROTO;
	}
	if (pi->nlazy == pi->cap) {
		size_t cap = pi->cap ? pi->cap * 2 : 64;
		struct lazy_range *n = realloc(pi->lazy, cap * sizeof(*n));

		if (!n) {
			snprintf(err, errlen, "post-copy: out of memory");
			return -ENOMEM;
		}
		pi->lazy = n;
		pi->cap = cap;
	}
	pi->lazy[pi->nlazy] = (struct lazy_range){
		.off = off,
		.len = len,
		.before = last ? last->before + last->len : 0,
	};
	pi->nlazy++;
	return 0;
}

/* The first lazy range that ends after @off. */
static size_t lazy_find(const struct postcopy_in *pi, uint64_t off)
{
	size_t lo = 0, hi = pi->nlazy;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pi->lazy[mid].off + pi->lazy[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether [@off, @off + @len) lies inside one lazy range: where the
 * source's push and FETCH answers may write (each of its frames stays in
 * one, since the source joins every LAZY run that the stream runs on). */
static bool range_in_lazy(const struct postcopy_in *pi, uint64_t off,
			  uint64_t len)
{
	size_t i = lazy_find(pi, off);

	return i < pi->nlazy && pi->lazy[i].off <= off &&
	       len <= pi->lazy[i].off + pi->lazy[i].len - off;
}

/* Whether [@off, @off + @len) meets a lazy range. */
static bool range_lazy(const struct postcopy_in *pi, uint64_t off, uint64_t len)
{
	size_t i = lazy_find(pi, off);

	return i < pi->nlazy && pi->lazy[i].off < off + len;
}

/* Lazy bytes of the stream before offset @off. */
static uint64_t lazy_pos(const struct postcopy_in *pi, uint64_t off)
{
	size_t i = lazy_find(pi, off);

	if (i == pi->nlazy)
		return i ? pi->lazy[i - 1].before + pi->lazy[i - 1].len : 0;
	return pi->lazy[i].before +
	       (off > pi->lazy[i].off ? off - pi->lazy[i].off : 0);
}

static void pi_fail(struct postcopy_in *pi, int code, const char *line)
{
	pthread_mutex_lock(&pi->lock);
	if (!pi->fail) {
		pi->fail = code ? code : -EIO;
		snprintf(pi->fail_line, sizeof(pi->fail_line), "%s", line);
	}
	pthread_cond_broadcast(&pi->cond);
	pthread_mutex_unlock(&pi->lock);
}

void postcopy_in_abort(struct postcopy_in *pi, const char *why)
{
	if (pi)
		pi_fail(pi, -ECANCELED, why);
}

static uint64_t pc_mask(void *ctx, unsigned region, uint64_t idx)
{
	struct postcopy_in *pi = ctx;

	return pi->tables[region].chunks[idx].block_mask;
}

/* One DATA frame of [@off, @off + @len) into the spool. */
static int spool_put(struct postcopy_in *pi, const struct mig_frame *f,
		     const uint8_t *buf, char *err, size_t errlen)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = f->length };
	int ret = file_rw_full(pi->spool, true, &v, 1, f->offset);

	if (ret)
		snprintf(err, errlen, "cannot hold the incoming memory: %s",
			 strerror(-ret));
	return ret;
}

/* FETCH on the priority channel for [@off, @off + @len), and its DATA
 * frames into the spool. */
static int fetch(struct postcopy_in *pi, uint64_t off, uint64_t len, char *err,
		 size_t errlen)
{
	uint8_t l[8];
	struct iovec v = { .iov_base = l, .iov_len = 8 };
	uint64_t at = off;
	int ret;

	put_le64(l, len);
	pthread_mutex_lock(&pi->prio_lock);
	ret = mig_send(pi->prio, MIG_FETCH, off, &v, 1, err, errlen);
	while (!ret && at < off + len) {
		struct mig_frame f;

		ret = mig_recv(pi->prio, &f, pi->prio_buf, MIG_DATA_MAX, err,
			       errlen);
		if (ret)
			break;
		if (f.type != MIG_DATA || f.offset != at || !f.length ||
		    f.length > off + len - at) {
			snprintf(err, errlen,
				 "the source answered a FETCH of %" PRIu64
				 "+%" PRIu64 " with %s at %" PRIu64,
				 off, len, mig_frame_name(f.type), f.offset);
			ret = -EPROTO;
			break;
		}
		ret = spool_put(pi, &f, pi->prio_buf, err, errlen);
		at += f.length;
	}
	pthread_mutex_unlock(&pi->prio_lock);
	return ret;
}

static bool present(const struct postcopy_in *pi, unsigned region, uint64_t idx)
{
	const struct snap_chunk *c = &pi->tables[region].chunks[idx];
	uint8_t st = pi->state[region][idx];

	return st != PC_LAZY || pi->push_end >= c->file_off + c->stored_len;
}

/* Makes sure the bytes of chunk @idx are in the spool: a fault fetches
 * them, the fill waits for the push. */
static int chunk_arrive(struct postcopy_in *pi, unsigned region, uint64_t idx,
			char *err, size_t errlen)
{
	const struct snap_chunk *c = &pi->tables[region].chunks[idx];
	int ret = 0;

	pthread_mutex_lock(&pi->lock);
	/* The fill waits for the push unless the chunk is far ahead of it:
	 * the guest's faults brought in the chunks between. */
	while (!present(pi, region, idx) && !pi->fail && !pi->stopping &&
	       !pager_on_fault_thread() &&
	       (c->file_off <= pi->push_end ||
		lazy_pos(pi, c->file_off) - lazy_pos(pi, pi->push_end) <=
		    POSTCOPY_LOOKAHEAD))
		pthread_cond_wait(&pi->cond, &pi->lock);
	if (present(pi, region, idx)) {
		ret = 0;
	} else if (pi->fail || pi->stopping) {
		ret = pi->fail ? pi->fail : -ECANCELED;
	} else {
		pthread_mutex_unlock(&pi->lock);
		ret = fetch(pi, c->file_off, c->stored_len, err, errlen);
		if (ret) {
			char line[512];

			snprintf(line, sizeof(line),
				 "post-copy: the link to the source broke "
				 "(%s): the guest stops here, and the source "
				 "keeps its paused copy",
				 err);
			pi_fail(pi, ret, line);
		}
		pthread_mutex_lock(&pi->lock);
		if (!ret)
			pi->state[region][idx] = PC_FETCHED;
		ret = pi->fail;
	}
	if (ret)
		snprintf(err, errlen, "%s",
			 pi->fail_line[0] ? pi->fail_line
					  : "post-copy: stopped");
	pthread_mutex_unlock(&pi->lock);
	return ret;
}

/* The spool's whole pages inside chunk @c go back: the pager has it. */
static void spool_release(struct postcopy_in *pi, const struct snap_chunk *c)
{
	uint64_t start = (c->file_off + 4095) & ~4095ull;
	uint64_t end = (c->file_off + c->stored_len) & ~4095ull;

	if (end > start)
		(void)fallocate(pi->spool,
				FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				(off_t)start, (off_t)(end - start));
}

static int pc_read(void *ctx, unsigned region, uint64_t idx, uint8_t *buf,
		   char *err, size_t errlen)
{
	struct postcopy_in *pi = ctx;
	bool fault = pager_on_fault_thread();
	uint64_t t0 = clock_now_ns(CLOCK_MONOTONIC), us;
	bool was_lazy;
	int ret;

	ret = chunk_arrive(pi, region, idx, err, errlen);
	if (!ret)
		ret = snap_read_chunk(&pi->tables[region], idx, buf, false, err,
				      errlen);
	if (ret)
		return ret;
	spool_release(pi, &pi->tables[region].chunks[idx]);
	us = (clock_now_ns(CLOCK_MONOTONIC) - t0) / 1000;
	pthread_mutex_lock(&pi->lock);
	was_lazy = pi->state[region][idx] == PC_LAZY ||
		   pi->state[region][idx] == PC_FETCHED;
	pi->state[region][idx] = PC_READ;
	if (was_lazy && !--pi->lazy_left)
		pthread_cond_broadcast(&pi->cond);
	if (fault) {
		pi->faults++;
		pi->total_us += us;
		if (us > pi->max_us)
			pi->max_us = us;
		pi->hist[postcopy_lat_bucket(us)]++;
	}
	pthread_mutex_unlock(&pi->lock);
	return 0;
}

/* The tables are the migration's (postcopy_in_free). */
static void pc_destroy(void *ctx)
{
}

static const struct page_source_ops mig_source_ops = {
	.chunk_mask = pc_mask,
	.read_chunk = pc_read,
	.destroy = pc_destroy,
};

int postcopy_in_source(struct postcopy_in *pi, struct page_source *src,
		       struct snap_chunk_table *tables, unsigned n)
{
	if (n > GUEST_MEM_MAX_REGIONS || pi->source_made)
		return -EINVAL;
	memset(src, 0, sizeof(*src));
	for (unsigned i = 0; i < n; i++) {
		struct snap_chunk_table *t = &tables[i];

		pi->state[i] = calloc(t->nchunks ? t->nchunks : 1, 1);
		if (!pi->state[i])
			return -ENOMEM;
		for (uint64_t c = 0; c < t->nchunks; c++) {
			const struct snap_chunk *ch = &t->chunks[c];

			if (ch->block_mask && ch->stored_len &&
			    range_lazy(pi, ch->file_off, ch->stored_len)) {
				pi->state[i][c] = PC_LAZY;
				pi->lazy_left++;
			}
		}
		pi->tables[i] = *t;
		page_source_set_region(src, i, t);
		t->chunks = NULL; /* taken over */
	}
	pi->n = n;
	pi->source_made = true;
	src->ops = &mig_source_ops;
	src->ctx = pi;
	src->nregions = n;
	return 0;
}

/* "faults N total_us T p50_us X p99_us Y max_us Z" (under the lock). */
static void stats_locked(const struct postcopy_in *pi,
			 struct migrate_postcopy_stats *st)
{
	uint64_t want50 = (pi->faults + 1) / 2;
	uint64_t want99 = pi->faults - pi->faults / 100;
	uint64_t seen = 0;

	st->on = true;
	st->done = pi->done;
	st->faults = pi->faults;
	st->blocked_total_us = pi->total_us;
	st->blocked_max_us = pi->max_us;
	st->chunks_left = pi->lazy_left;
	st->blocked_p50_us = st->blocked_p99_us = 0;
	for (unsigned b = 0; pi->faults && b < POSTCOPY_LAT_BUCKETS; b++) {
		uint64_t v = postcopy_lat_value(b);

		if (v > pi->max_us)
			v = pi->max_us;
		if (seen < want50 && seen + pi->hist[b] >= want50)
			st->blocked_p50_us = v;
		if (seen < want99 && seen + pi->hist[b] >= want99)
			st->blocked_p99_us = v;
		seen += pi->hist[b];
	}
}

void postcopy_in_stats(struct postcopy_in *pi,
		       struct migrate_postcopy_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!pi)
		return;
	pthread_mutex_lock(&pi->lock);
	stats_locked(pi, st);
	pthread_mutex_unlock(&pi->lock);
}

/* The push: DATA frames in stream order into the spool, until PUSHED. */
static int push_receive(struct postcopy_in *pi, uint8_t *buf, char *err,
			size_t errlen)
{
	for (;;) {
		struct mig_frame f;
		int ret =
		    mig_recv(pi->data, &f, buf, MIG_DATA_MAX, err, errlen);

		if (ret)
			return ret;
		if (f.type == MIG_PUSHED)
			break;
		if (f.type != MIG_DATA || f.offset < pi->push_end) {
			snprintf(err, errlen,
				 "%s: unexpected %s frame in the "
				 "push",
				 pi->data->peer, mig_frame_name(f.type));
			return -EPROTO;
		}
		if (!range_in_lazy(pi, f.offset, f.length)) {
			snprintf(err, errlen,
				 "%s: a pushed frame for stream bytes %" PRIu64
				 "+%" PRIu32 ", which are not lazy",
				 pi->data->peer, f.offset, f.length);
			return -EPROTO;
		}
		ret = spool_put(pi, &f, buf, err, errlen);
		if (ret)
			return ret;
		pthread_mutex_lock(&pi->lock);
		pi->push_end = f.offset + f.length;
		pthread_cond_broadcast(&pi->cond);
		pthread_mutex_unlock(&pi->lock);
	}
	pthread_mutex_lock(&pi->lock);
	pi->push_end = UINT64_MAX;
	pi->pushed = true;
	pthread_cond_broadcast(&pi->cond);
	pthread_mutex_unlock(&pi->lock);
	return 0;
}

static void *push_main(void *arg)
{
	struct postcopy_in *pi = arg;
	struct migrate_postcopy_stats st;
	char err[256], line[512], text[256];
	uint8_t *buf = NULL;
	int ret;

	ret = seccomp_install(SECCOMP_ROLE_UFFD, pi->seccomp);
	if (ret) {
		snprintf(err, sizeof(err), "cannot load the seccomp filter");
		goto fail;
	}
	buf = malloc(MIG_DATA_MAX);
	if (!buf) {
		ret = -ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	ret = push_receive(pi, buf, err, sizeof(err));
	if (ret)
		goto fail;
	/* Every byte is here; the source may go once the pager has read
	 * every chunk of them. */
	pthread_mutex_lock(&pi->lock);
	while (pi->lazy_left && !pi->fail && !pi->stopping)
		pthread_cond_wait(&pi->cond, &pi->lock);
	ret = pi->fail;
	if (!ret && !pi->stopping)
		pi->done = true;
	stats_locked(pi, &st);
	pthread_mutex_unlock(&pi->lock);
	if (ret || !st.done)
		goto out;
	/* Nothing reads the spool again. */
	if (ftruncate(pi->spool, 0) < 0)
		log_warn("cannot release the incoming stream's memory: %s",
			 strerror(errno));
	log_info("post-copy done: %" PRIu64 " faults waited for a chunk, "
		 "blocked p50 %" PRIu64 " us p99 %" PRIu64 " us (max %" PRIu64
		 " us, total %" PRIu64 " us)",
		 st.faults, st.blocked_p50_us, st.blocked_p99_us,
		 st.blocked_max_us, st.blocked_total_us);
	snprintf(text, sizeof(text),
		 "faults %" PRIu64 " total_us %" PRIu64 " p50_us %" PRIu64
		 " p99_us %" PRIu64 " max_us %" PRIu64,
		 st.faults, st.blocked_total_us, st.blocked_p50_us,
		 st.blocked_p99_us, st.blocked_max_us);
	if (mig_send_text(pi->data, MIG_DONE, 0, text, err, sizeof(err)))
		log_warn("post-copy: the source was not told it is done (%s); "
			 "it stays paused",
			 err);
	/* The source closes once it has read DONE. */
	pi->data->idle_ms = 5000;
	(void)mig_recv(pi->data, &(struct mig_frame){ 0 }, buf, MIG_DATA_MAX,
		       NULL, 0);
	goto out;
fail:
	snprintf(line, sizeof(line),
		 "post-copy: the link to the source broke (%s): the guest "
		 "stops here, and the source keeps its paused copy",
		 err);
	pi_fail(pi, ret, line);
out:
	free(buf);
	return NULL;
}

int postcopy_in_start(struct postcopy_in *pi, struct mig_chan *data,
		      enum seccomp_mode seccomp, char *err, size_t errlen)
{
	sigset_t all, old;
	int ret;

	pi->data = data;
	pi->seccomp = seccomp;
	/* Signals are the main thread's (vm_run). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&pi->thread, NULL, push_main, pi);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		snprintf(err, errlen, "cannot start the post-copy thread: %s",
			 strerror(ret));
		return -ret;
	}
	pi->started = true;
	return 0;
}

bool postcopy_in_free(struct postcopy_in *pi)
{
	bool failed;

	if (!pi)
		return true;
	pthread_mutex_lock(&pi->lock);
	pi->stopping = true;
	failed = pi->fail != 0;
	pthread_cond_broadcast(&pi->cond);
	pthread_mutex_unlock(&pi->lock);
	if (pi->data && pi->data->fd >= 0)
		shutdown(pi->data->fd, SHUT_RDWR);
	if (pi->prio && pi->prio->fd >= 0)
		shutdown(pi->prio->fd, SHUT_RDWR);
	if (pi->started)
		pthread_join(pi->thread, NULL);
	/* After a failure a pager thread may still be inside the source:
	 * the process ends and takes it along. */
	if (failed && pi->source_made)
		return false;
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		if (i < pi->n)
			snap_chunk_table_free(&pi->tables[i]);
		free(pi->state[i]);
	}
	free(pi->lazy);
	free(pi->prio_buf);
	pthread_mutex_destroy(&pi->lock);
	pthread_mutex_destroy(&pi->prio_lock);
	pthread_cond_destroy(&pi->cond);
	free(pi);
	return true;
}
