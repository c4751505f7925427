/* Post-copy migration, both sides (docs/migration.md, "Post-copy"): the
 * source's snapshot goes without its memory's chunk bytes, the
 * destination runs the guest on the lazy-restore pager (snapshot/pager.h)
 * with a page source that asks the source for a faulted chunk on a second
 * connection (the priority channel) while the source pushes every other
 * chunk on the first. Internal to migrate/. */
#ifndef STASIS_MIGRATE_POSTCOPY_H
#define STASIS_MIGRATE_POSTCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/seccomp.h"
#include "memory/guest_mem.h"
#include "migrate/channel.h"
#include "migrate/mig_pool.h"
#include "migrate/migrate.h"

/* Push frames are this long at most, so that a priority request waits
 * for at most one of them at the source. */
#define POSTCOPY_PUSH_FRAME (256u << 10)
/* The destination's fill waits for the push for a chunk at most this
 * many lazy bytes ahead of it; one further ahead (the guest's faults took
 * the ones between) is fetched, and the push then leaves it out. */
#define POSTCOPY_LOOKAHEAD (1u << 20)

/* ---- Source. ---- */

/* One run of the snapshot's bytes that is guest memory as it lies in
 * the (paused) source VM. */
struct postcopy_piece {
	uint64_t off; /* stream offset */
	uint64_t len;
	const uint8_t *host;
	bool lazy; /* not at the destination yet: pushed */
};

struct postcopy_out {
	const struct guest_mem *mem;
	struct mig_chan prio; /* fd -1 until connected */
	bool active; /* the stream is post-copy: the sink defers memory */
	struct postcopy_piece *pieces;
	size_t npieces, cap;
	uint64_t lazy_off, lazy_len; /* a LAZY range not sent yet */
	uint64_t lazy_bytes, fetched_bytes, fetches;
	uint64_t running_ns; /* CLOCK_MONOTONIC when RUNNING came */
	/* Stream ranges FETCHed, sorted and disjoint: the push leaves them
	 * out. */
	struct postcopy_range {
		uint64_t off, end;
	} * fetched;
	size_t nfetched, fcap;
	/* The thread that answers FETCHes from the COMMIT on; the lock
	 * guards @fetched and its result. */
	bool serving;
	pthread_t serve_thread;
	pthread_mutex_t lock;
	atomic_bool stop;
	int serve_ret;
	char serve_err[256];
};

/* Refuses what post-copy cannot do with these options: 0 or -EINVAL
 * with one line in @err. */
int postcopy_check_opts(const struct migrate_opts *o, char *err, size_t errlen);

/* Connects the priority channel to @a (through TLS with @tls when not
 * NULL), presenting the WELCOME's @token (mig_pool.h). */
int postcopy_out_connect(struct postcopy_out *po, const struct mig_addr *a,
			 struct mig_tls *tls, const char *token, char *err,
			 size_t errlen);

/* The sink's write of @iov at @off while post-copy is active: guest
 * memory is kept as pieces and announced as LAZY (all of it: what a
 * pre-copy sent before the switch is not relied on), anything else is
 * sent as DATA. */
int postcopy_out_write(struct postcopy_out *po, struct mig_chan *c,
		       const struct iovec *iov, unsigned n, uint64_t off,
		       char *err, size_t errlen);

/* Sends the LAZY range still pending (before COMMIT). */
int postcopy_out_flush(struct postcopy_out *po, struct mig_chan *c, char *err,
		       size_t errlen);

/* Waits for a frame of @type on @c; the first call starts the thread
 * that serves the priority channel (from the COMMIT on the destination's
 * pager may fault), which postcopy_out_free ends. */
int postcopy_out_wait(struct postcopy_out *po, struct mig_chan *c,
		      uint32_t type, char *buf, size_t bufsize, char *err,
		      size_t errlen);

/* After GO: RUNNING, the push of every lazy piece with the priority
 * requests served first, PUSHED, and the destination's DONE, whose
 * statistics go into @res. */
int postcopy_out_finish(struct postcopy_out *po, struct mig_chan *c,
			struct migrate_result *res, char *err, size_t errlen);

void postcopy_out_free(struct postcopy_out *po);

/* ---- Destination. ---- */

struct postcopy_in;
struct page_source;
struct snap_chunk_table;

/* A post-copy receive over @prio (the priority channel) into @spool, the
 * memfd the stream is rebuilt in. NULL when out of memory. */
struct postcopy_in *postcopy_in_new(struct mig_chan *prio, int spool);

/* A LAZY frame: [@off, @off + @len) of the stream comes later; within
 * @limit. 0 or -EPROTO with @err filled. */
int postcopy_in_lazy(struct postcopy_in *pi, uint64_t off, uint64_t len,
		     uint64_t limit, char *err, size_t errlen);

/* The page source over @tables (taken over) of the stream's MEMORY
 * records: a chunk the stream holds is read from the spool; one still
 * to come is fetched on the priority channel for a fault, or waited for
 * from the push for the pager's fill. Every chunk is checked against its
 * hash (snap_read_chunk) before the pager installs it. */
int postcopy_in_source(struct postcopy_in *pi, struct page_source *src,
		       struct snap_chunk_table *tables, unsigned n);

/* After RUNNING: a thread that receives the push on @data, then, once
 * every chunk is in, sends DONE with the statistics. Its seccomp filter
 * is the pager's. */
int postcopy_in_start(struct postcopy_in *pi, struct mig_chan *data,
		      enum seccomp_mode seccomp, char *err, size_t errlen);

/* This side gave up (@why): every wait for a chunk ends with it. */
void postcopy_in_abort(struct postcopy_in *pi, const char *why);

void postcopy_in_stats(struct postcopy_in *pi,
		       struct migrate_postcopy_stats *st);

/* Ends the thread (its connections shut down) and frees @pi; false when
 * it failed after its page source was made: then a pager thread may
 * still be in it, and it is left for the process's end. */
bool postcopy_in_free(struct postcopy_in *pi);

/* The blocked-time histogram: bucket of @us, and the value a bucket
 * stands for (its lower bound). Exposed for the unit test. */
unsigned postcopy_lat_bucket(uint64_t us);
uint64_t postcopy_lat_value(unsigned bucket);
#define POSTCOPY_LAT_BUCKETS 640

#endif
