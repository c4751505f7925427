/* The source side of a migration (migrate.h): the snapshot writer over
 * the channel, the destination's checks before the pause, and the switch
 * after which this copy never runs again. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/file_io.h"
#include "core/le.h"
#include "core/log.h"
#include "core/text.h"
#include "core/vm.h"
#include "memory/dirty_log.h"
#include "migrate/channel.h"
#include "migrate/mig_pool.h"
#include "migrate/migrate.h"
#include "migrate/postcopy.h"
#include "snapshot/mem_dirty.h"
#include "snapshot/pager.h"
#include "snapshot/snapfile.h"
#include "snapshot/snapshot.h"

/* A switch with no default: a phase added without a name is a -Wswitch
 * warning, not a state GET /vm leaves out. */
const char *migrate_phase_name(enum migrate_phase p)
{
	switch (p) {
	case MIGRATE_NONE:
		return "none";
	case MIGRATE_CONNECTING:
		return "connecting";
	case MIGRATE_CHECKING:
		return "checking";
	case MIGRATE_PRECOPY:
		return "precopy";
	case MIGRATE_SENDING:
		return "sending";
	case MIGRATE_SWITCHING:
		return "switching";
	case MIGRATE_POSTCOPY:
		return "postcopy";
	case MIGRATE_DONE:
		return "done";
	case MIGRATE_LOST:
		return "lost";
	}
	return "?";
}

/* Pre-copy: which guest pages the destination holds as they are now.
 * A page is the destination's from when it was sent until the dirty log
 * reports a write to it (then it is pending); the log reports every write
 * completed after a collect returns in the next collect, so a page read
 * after a collect and written meanwhile is only sent again, never taken
 * for the destination's. */
struct precopy {
	bool on;
	struct guest_mem *mem;
	struct dirty_log *log;
	uint64_t *dirty[GUEST_MEM_MAX_REGIONS]; /* one collect */
	/* Every page collected: put back into the log if the migration
	 * fails, so that the VM's next incremental snapshot still sees
	 * them. */
	uint64_t *seen[GUEST_MEM_MAX_REGIONS];
	/* Pages collected and not sent again yet: the next round's, or at
	 * the pause the chunks the MEMORY record holds. */
	uint64_t *pending[GUEST_MEM_MAX_REGIONS];
	/* Pages the destination holds (sent at least once): a chunk's
	 * other pages are zero, and are hashed as such, never read. */
	uint64_t *held[GUEST_MEM_MAX_REGIONS];
	/* Chunks with pages sent in this round (hashed at its end); at the
	 * pause, the chunks the MEMORY record holds. */
	uint64_t *chunks[GUEST_MEM_MAX_REGIONS];
	uint32_t chunk_size, block_size;
	/* A HASH frame being filled: u64 gpa, u64 hash per chunk. */
	uint8_t hashes[MIG_CONTROL_MAX];
	unsigned nhashes;
	/* Test-only cap on pre-copy's rate (bytes/s; 0: none), from
	 * MIGRATE_RATE_ENV, and the bytes and start it counts from. */
	uint64_t cap, capped_bytes, cap_t0;
	struct migrate_stats *stats; /* GET /vm's; bytes_sent as they go */
	/* Test-only (MIGRATE_MISS_ENV): the first round that finds pages
	 * dirty leaves the highest one out, as a dirty log that missed a
	 * write would; the destination must refuse the VM. */
	bool miss;
	/* The guest writes its pages while they are sent: each frame's
	 * bytes are copied here first, so that its checksum is of what is
	 * sent. */
	uint8_t *bounce;
	/* --connections above 1: PAGES spread over these too. */
	struct mig_pool *pool;
};

/* The test suite's slow link (docs/testing.md): pre-copy's PAGES go out
 * at most this many bytes a second. */
#define MIGRATE_RATE_ENV "STASIS_TEST_MIGRATE_RATE"
#define MIGRATE_MISS_ENV "STASIS_TEST_MIGRATE_MISS"

#define PAGE GUEST_MEM_PAGE

static bool bit(const uint64_t *bm, uint64_t p)
{
	return bm[p / 64] >> (p % 64) & 1;
}

static void precopy_free(struct precopy *pc)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(pc->dirty[i]);
		free(pc->seen[i]);
		free(pc->pending[i]);
		free(pc->held[i]);
		free(pc->chunks[i]);
	}
	free(pc->bounce);
	memset(pc, 0, sizeof(*pc));
}

/* The writer's sink: each write becomes DATA frames at its offset. */
struct send_sink {
	struct mig_chan *c;
	struct postcopy_out *po; /* memory goes later when po->active */
	char err[256]; /* the channel's reason for the last failure */
};

static int sink_pwritev(void *ctx, struct iovec *iov, unsigned n, uint64_t off)
{
	struct send_sink *s = ctx;

	if (s->po && s->po->active)
		return postcopy_out_write(s->po, s->c, iov, n, off, s->err,
					  sizeof(s->err));
	while (n) {
		struct iovec part[64];
		unsigned k = 0;
		size_t len = 0;
		int ret;

		/* As many pieces as fit one frame; a piece too long for the
		 * rest of the frame is cut. */
		while (k < n && k < 64 && len < MIG_DATA_MAX) {
			size_t take = iov[k].iov_len;

			if (take > MIG_DATA_MAX - len)
				take = MIG_DATA_MAX - len;
			part[k] = (struct iovec){ .iov_base = iov[k].iov_base,
						  .iov_len = take };
			len += take;
			k++;
			if (take < iov[k - 1].iov_len)
				break;
		}
		ret = mig_send(s->c, MIG_DATA, off, part, k, s->err,
			       sizeof(s->err));
		if (ret)
			return ret;
		off += len;
		iov_advance(&iov, &n, len);
	}
	return 0;
}

static int sink_commit(void *ctx, uint64_t size, char *err, size_t errlen)
{
	struct send_sink *s = ctx;
	int ret = s->po && s->po->active
		      ? postcopy_out_flush(s->po, s->c, err, errlen)
		      : 0;

	return ret ? ret
		   : mig_send(s->c, MIG_COMMIT, size, NULL, 0, err, errlen);
}

static void sink_abort(void *ctx)
{
	/* The caller tells the destination why, on the channel. */
}

static const struct snap_sink send_sink_ops = {
	.pwritev = sink_pwritev,
	.commit = sink_commit,
	.abort = sink_abort,
};

/* Starts the dirty log and makes the bitmaps. Pre-copy stays off (the
 * migration is stop-and-copy) where the host has no dirty log, where
 * memory is mapped from a snapshot file (those pages are not in the
 * memfd the first round walks), or where pages are not the dirty log's
 * (hugepages: a chunk is then not 64 of its pages). */
static int precopy_init(struct precopy *pc, struct vm *vm)
{
	const char *cap = getenv(MIGRATE_RATE_ENV);
	int ret;

	memset(pc, 0, sizeof(*pc));
	pc->mem = &vm->mem;
	pc->log = &vm->dirty;
	pc->stats = &vm->migrate_stats;
	if (vm->mem.page_size != GUEST_MEM_PAGE)
		return 0;
	snap_chunk_geometry(GUEST_MEM_PAGE, &pc->chunk_size, &pc->block_size);
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		size_t bytes = dirty_log_bitmap_words(&vm->mem, i) * 8;
		uint64_t nchunks =
		    snap_chunks_for(vm->mem.regions[i].size, GUEST_MEM_PAGE);

		if (vm->mem.regions[i].file_mapped)
			return 0;
		pc->dirty[i] = calloc(1, bytes);
		pc->seen[i] = calloc(1, bytes);
		pc->pending[i] = calloc(1, bytes);
		pc->held[i] = calloc(1, bytes);
		pc->chunks[i] = calloc((nchunks + 63) / 64, 8);
		if (!pc->dirty[i] || !pc->seen[i] || !pc->pending[i] ||
		    !pc->held[i] || !pc->chunks[i])
			return -ENOMEM;
	}
	pc->bounce = malloc(MIG_DATA_MAX);
	if (!pc->bounce)
		return -ENOMEM;
	if (cap && *cap)
		pc->cap = strtoull(cap, NULL, 10);
	pc->miss = getenv(MIGRATE_MISS_ENV) != NULL;
	ret = dirty_log_start(pc->log);
	if (ret) {
		log_info("migration: no dirty page log (%s): stop-and-copy",
			 strerror(-ret));
		return 0;
	}
	pc->on = true;
	return 0;
}

/* The test-only cap: waits until @len more bytes fit its rate. */
static void precopy_cap(struct precopy *pc, uint64_t len)
{
	uint64_t now = clock_now_ns(CLOCK_MONOTONIC), due;

	if (!pc->cap)
		return;
	if (!pc->cap_t0)
		pc->cap_t0 = now;
	pc->capped_bytes += len;
	due = pc->cap_t0 + pc->capped_bytes * 1000000000ull / pc->cap;
	if (due > now) {
		struct timespec ts = {
			.tv_sec = (time_t)((due - now) / 1000000000ull),
			.tv_nsec = (long)((due - now) % 1000000000ull)
		};

		nanosleep(&ts, NULL);
	}
}

/* Sends pages [@p, @p + @n) of region @r as PAGES frames and marks them
 * held there and no longer pending, and their chunks to be hashed; adds their
 * bytes to
 * *@bytes. */
static int precopy_send(struct precopy *pc, struct mig_chan *c, unsigned r,
			uint64_t p, uint64_t n, uint64_t *bytes, char *err,
			size_t errlen)
{
	const struct mem_region *reg = &pc->mem->regions[r];
	uint64_t per = pc->chunk_size / PAGE;

	while (n) {
		uint64_t k = n < MIG_DATA_MAX / PAGE ? n : MIG_DATA_MAX / PAGE;
		struct iovec v = { .iov_base = pc->bounce,
				   .iov_len = k * PAGE };
		int ret;

		/* Sent first: a write after the read that follows is in
		 * the next collect, which makes it pending again. */
		for (uint64_t q = p; q < p + k; q++) {
			pc->held[r][q / 64] |= 1ull << (q % 64);
			pc->pending[r][q / 64] &= ~(1ull << (q % 64));
			pc->chunks[r][q / per / 64] |= 1ull << (q / per % 64);
		}
		memcpy(pc->bounce, reg->host + p * PAGE, k * PAGE);
		precopy_cap(pc, k * PAGE);
		ret = mig_pool_send_pages(pc->pool, c, reg->gpa + p * PAGE,
					  v.iov_base, v.iov_len, err, errlen);
		if (ret)
			return ret;
		atomic_store(&pc->stats->bytes_sent,
			     c->sent + mig_pool_sent(pc->pool));
		*bytes += k * PAGE;
		p += k;
		n -= k;
	}
	return 0;
}

static int precopy_flush_hashes(struct precopy *pc, struct mig_chan *c,
				char *err, size_t errlen)
{
	struct iovec v = { .iov_base = pc->hashes,
			   .iov_len = pc->nhashes * 16u };
	int ret = mig_send(c, MIG_HASH, 0, &v, 1, err, errlen);

	pc->nhashes = 0;
	return ret;
}

/* The end of a round: the hash of each chunk it sent pages of, taken from
 * guest memory as it is now, in HASH frames, for the destination to check
 * its copy against. A write since the pages were read makes the two
 * differ; the dirty log has it, and the chunk goes again (in a round, or
 * in the MEMORY record at the pause). A chunk whose hash matches is one
 * the destination holds exactly as the source had it. */
static int precopy_hash_round(struct precopy *pc, struct mig_chan *c, char *err,
			      size_t errlen)
{
	uint64_t per = pc->chunk_size / PAGE;
	int ret;

	for (unsigned r = 0; r < pc->mem->nregions; r++) {
		const struct mem_region *reg = &pc->mem->regions[r];
		uint64_t nchunks = snap_chunks_for(reg->size, PAGE);

		for (uint64_t ch = 0; ch < nchunks; ch++) {
			uint64_t start = ch * pc->chunk_size, h;
			uint64_t len = reg->size - start;

			if (!(pc->chunks[r][ch / 64] >> (ch % 64) & 1)) {
				if (!pc->chunks[r][ch / 64])
					ch |= 63;
				continue;
			}
			pc->chunks[r][ch / 64] &= ~(1ull << (ch % 64));
			if (len > pc->chunk_size)
				len = pc->chunk_size;
			ret = snap_hash_chunk(reg->host + start, len,
					      pc->block_size, pc->held[r],
					      ch * per, &h);
			if (ret) {
				snprintf(err, errlen, "pre-copy: %s",
					 strerror(-ret));
				return ret;
			}
			put_le64(pc->hashes + pc->nhashes * 16u,
				 reg->gpa + start);
			put_le64(pc->hashes + pc->nhashes * 16u + 8, h);
			if (++pc->nhashes == MIG_CONTROL_MAX / 16) {
				ret = precopy_flush_hashes(pc, c, err, errlen);
				if (ret)
					return ret;
			}
		}
	}
	/* Even empty: the destination knows from it that pre-copy runs. */
	return precopy_flush_hashes(pc, c, err, errlen);
}

/* Round 0: the pages the snapshot would hold (not zero, not a memfd
 * hole), found as the memory writer finds them. */
static int precopy_first(struct precopy *pc, struct mig_chan *c,
			 uint64_t *bytes, char *err, size_t errlen)
{
	for (unsigned r = 0; r < pc->mem->nregions; r++) {
		const struct mem_region *reg = &pc->mem->regions[r];
		uint64_t npages = reg->size / PAGE, stored, p = 0;
		uint8_t *bm = calloc(1, (npages + 7) / 8);
		int ret = bm ? snap_scan_region(pc->mem->memfd, reg, PAGE, bm,
						&stored)
			     : -ENOMEM;

		if (ret) {
			free(bm);
			snprintf(err, errlen,
				 "pre-copy: cannot scan guest memory: %s",
				 strerror(-ret));
			return ret;
		}
		while (!ret && p < npages) {
			uint64_t q = p;

			while (q < npages && (bm[q / 8] >> (q % 8) & 1))
				q++;
			if (q > p)
				ret = precopy_send(pc, c, r, p, q - p, bytes,
						   err, errlen);
			p = q + 1;
		}
		free(bm);
		if (ret)
			return ret;
	}
	/* The other connections carry only this round, the bulk: the
	 * destination checks hashes once all of it has landed, and later
	 * rounds go on the main connection, in order with their hashes. */
	int ret = mig_pool_finish(pc->pool, err, errlen);

	return ret ? ret : precopy_hash_round(pc, c, err, errlen);
}

/* Collects the log: the pages written since the last collect are no
 * longer what the destination holds (pc->dirty holds them) and wait to
 * be sent again (pc->pending). Their bytes in *@bytes. */
static int precopy_collect(struct precopy *pc, uint64_t *bytes, char *err,
			   size_t errlen)
{
	int ret;

	*bytes = 0;
	for (unsigned r = 0; r < pc->mem->nregions; r++)
		memset(pc->dirty[r], 0, dirty_log_bitmap_words(pc->mem, r) * 8);
	ret = dirty_log_collect(pc->log, pc->dirty);
	if (ret) {
		snprintf(err, errlen, "the dirty page log failed: %s",
			 strerror(-ret));
		return ret;
	}
	for (unsigned r = pc->mem->nregions; pc->miss && r-- > 0;) {
		for (uint64_t w = dirty_log_bitmap_words(pc->mem, r);
		     pc->miss && w-- > 0;) {
			if (!pc->dirty[r][w])
				continue;
			/* The highest page found dirty is the one missed. */
			pc->seen[r][w] |= pc->dirty[r][w];
			pc->dirty[r][w] &=
			    ~(1ull << (63 - __builtin_clzll(pc->dirty[r][w])));
			pc->miss = false;
		}
	}
	for (unsigned r = 0; r < pc->mem->nregions; r++) {
		for (uint64_t w = 0; w < dirty_log_bitmap_words(pc->mem, r);
		     w++) {
			pc->seen[r][w] |= pc->dirty[r][w];
			pc->pending[r][w] |= pc->dirty[r][w];
			*bytes +=
			    (uint64_t)__builtin_popcountll(pc->pending[r][w]) *
			    PAGE;
		}
	}
	return 0;
}

/* Sends again the pages collected and not sent since, then their
 * chunks' hashes. */
static int precopy_resend(struct precopy *pc, struct mig_chan *c,
			  uint64_t *bytes, char *err, size_t errlen)
{
	for (unsigned r = 0; r < pc->mem->nregions; r++) {
		uint64_t npages = pc->mem->regions[r].size / PAGE;

		for (uint64_t p = 0; p < npages;) {
			uint64_t q = p;
			int ret;

			if (!bit(pc->pending[r], p)) {
				p = p % 64 || pc->pending[r][p / 64] ? p + 1
								     : p + 64;
				continue;
			}
			while (q < npages && bit(pc->pending[r], q))
				q++;
			ret = precopy_send(pc, c, r, p, q - p, bytes, err,
					   errlen);
			if (ret)
				return ret;
			p = q;
		}
	}
	return precopy_hash_round(pc, c, err, errlen);
}

/* At the pause, after the last collect: the chunks with a page not sent
 * since it was written, which the MEMORY record holds; the destination
 * holds the others (SNAP_CHUNK_PARENT). */
static void precopy_pause_chunks(struct precopy *pc)
{
	uint64_t npages = 0, nchunks = 0;

	for (unsigned r = 0; r < pc->mem->nregions; r++) {
		uint64_t nc = snap_chunks_for(pc->mem->regions[r].size, PAGE);

		memset(pc->chunks[r], 0, (nc + 63) / 64 * 8);
		mem_dirty_chunks(pc->mem, r, pc->pending[r], pc->chunks[r],
				 &npages, &nchunks);
	}
}

/* Puts every page collected back into the log (a failed migration: the
 * VM's next incremental snapshot must still see them). */
static void precopy_abort(struct precopy *pc)
{
	if (!pc->on)
		return;
	for (unsigned r = 0; r < pc->mem->nregions; r++)
		dirty_log_return(pc->log, r, pc->seen[r]);
}

/* Auto-converge's next step: 20%, then 10 points more a round, up to
 * 99%. */
static unsigned throttle_step(unsigned pct)
{
	if (!pct)
		return MIGRATE_THROTTLE_FIRST;
	pct += MIGRATE_THROTTLE_STEP;
	return pct > MIGRATE_THROTTLE_MAX ? MIGRATE_THROTTLE_MAX : pct;
}

/* While the guest runs: all its memory, then rounds of what it dirtied,
 * until the rest fits the downtime budget at the rate the last round
 * went, or the rounds give out. With auto-converge, a round that dirties
 * more than half of what it sent (the link does not keep up) throttles
 * the vCPUs a step further. Returns the rounds made. */
static int precopy_run(struct vm *vm, struct precopy *pc, struct mig_chan *c,
		       const struct migrate_opts *o, struct migrate_result *res,
		       char *err, size_t errlen)
{
	unsigned budget = o->downtime_ms ? o->downtime_ms : MIGRATE_DOWNTIME_MS;
	struct migrate_stats *st = &vm->migrate_stats;
	uint64_t t0 = clock_now_ns(CLOCK_MONOTONIC);
	uint64_t sent = 0, left;
	bool shrinking;
	int ret;

	res->rounds = 1;
	atomic_store(&st->rounds, 1);
	ret = precopy_first(pc, c, &sent, err, errlen);
	while (!ret) {
		uint64_t us = (clock_now_ns(CLOCK_MONOTONIC) - t0) / 1000;
		/* bytes per ms at the last round's pace; at least 1 */
		uint64_t rate = us ? sent * 1000 / us + 1 : 1;

		ret = precopy_collect(pc, &left, err, errlen);
		if (ret)
			break;
		atomic_store(&st->bytes_sent, c->sent);
		atomic_store(&st->link_rate, rate * 1000);
		atomic_store(&st->dirty_rate,
			     (uint64_t)((unsigned __int128)left * 1000000 /
					(us ? us : 1)));
		atomic_store(&st->expected_downtime_ms, left / rate);
		/* The pages just collected are pending; sent below or by the
		 * snapshot. A round that fits the budget still goes on while
		 * the rounds shrink (it left less than half of what it sent):
		 * at a steady dirty rate each round is shorter than the last
		 * and so is what the pause sends, down to what the guest
		 * dirties in a round's fixed cost. The budget is the link's
		 * time; the pause spends more per byte (hashes, the
		 * destination's checks). */
		shrinking = left < sent / 2 && left > MIGRATE_SETTLED_BYTES;
		if ((left / rate <= budget && !shrinking) ||
		    res->rounds >= MIGRATE_MAX_ROUNDS)
			break;
		if (!o->no_auto_converge && left > sent / 2) {
			unsigned pct = throttle_step(res->throttle_pct);

			ret = vm_set_throttle(vm, pct);
			if (ret) {
				snprintf(err, errlen,
					 "cannot throttle the vCPUs: %s",
					 strerror(-ret));
				break;
			}
			if (pct != res->throttle_pct)
				log_info("migration: round %u dirtied %" PRIu64
					 " of %" PRIu64
					 " bytes sent: vCPUs throttled to %u%%",
					 res->rounds, left, sent, pct);
			res->throttle_pct = pct;
		}
		res->rounds++;
		atomic_store(&st->rounds, res->rounds);
		t0 = clock_now_ns(CLOCK_MONOTONIC);
		sent = 0;
		ret = precopy_resend(pc, c, &sent, err, errlen);
	}
	return ret;
}

/* HELLO and WELCOME: "stasis-migrate PROTO VERSION" each way. With
 * @conns above 1 the HELLO asks for them, with @postcopy it says that
 * post-copy may come (the destination answers " postcopy" when it can
 * serve one), and the WELCOME's token (into @token) ties the further
 * connections to this migration. */
static int send_hello(struct mig_chan *c, unsigned conns, bool postcopy,
		      char token[MIG_POOL_TOKEN_LEN + 1], char *err,
		      size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1], ver[64];
	struct mig_frame f;
	unsigned proto;
	int ret;

	snprintf(buf, sizeof(buf), "stasis-migrate %u %s", MIG_PROTO_VERSION,
		 STASIS_VERSION);
	if (conns > 1)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf),
			 " connections=%u", conns);
	if (postcopy)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf),
			 " postcopy");
	ret = mig_send_text(c, MIG_HELLO, 0, buf, err, errlen);
	if (!ret)
		ret = mig_expect(c, MIG_WELCOME, &f, buf, sizeof(buf), err,
				 errlen);
	if (ret)
		return ret;
	if (sscanf(buf, "stasis-migrate %u %63s", &proto, ver) != 2) {
		snprintf(err, errlen, "%s is not a stasis receive", c->peer);
		return -EPROTO;
	}
	if (proto != MIG_PROTO_VERSION) {
		/* The peer's words, one line of plain text. */
		text_escape_inplace(ver, sizeof(ver));
		snprintf(err, errlen,
			 "%s speaks migration protocol %u (stasis %s), this "
			 "stasis %u",
			 c->peer, proto, ver, MIG_PROTO_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (postcopy && !mig_text_has_word(buf, "postcopy")) {
		snprintf(err, errlen, "%s cannot take a post-copy migration",
			 c->peer);
		return -EPROTO;
	}
	if ((conns > 1 || postcopy) && mig_pool_welcome_token(buf, token)) {
		snprintf(err, errlen,
			 "%s gave no token for the further connections",
			 c->peer);
		return -EPROTO;
	}
	return 0;
}

/* After a failed send: the destination may have said why before it
 * closed (a damaged frame, no room). Its ERROR frame, if any, becomes the
 * reason: -ECONNABORTED with @err filled; else @ret as it was. */
static int peer_reason(struct mig_chan *c, int ret, char *err, size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1];
	struct mig_frame f;

	if (ret != -ECONNRESET && ret != -EPIPE)
		return ret;
	c->idle_ms = 1000;
	c->deadline_ms = 0;
	/* Frames already answered (ACCEPT, READY) are read past. */
	for (int i = 0; i < 4; i++) {
		int r = mig_recv(c, &f, buf, sizeof(buf) - 1, err, errlen);

		if (r == -ECONNABORTED)
			return r;
		if (r)
			break;
	}
	return ret;
}

int migrate_send(struct vm *vm, const struct migrate_opts *o,
		 struct migrate_result *res, char *err, size_t errlen)
{
	struct send_sink sink = { .err = "" };
	struct precopy pc = { .on = false };
	struct postcopy_out po = { .mem = &vm->mem, .prio = { .fd = -1 } };
	bool may_postcopy = o->postcopy || o->timeout_postcopy;
	struct snap_writer *w = NULL;
	struct snapshot_dest dest = { 0 };
	struct snap_lineage lin = { 0 };
	uint64_t created_ns;
	struct mig_addr a;
	struct mig_chan c = { .fd = -1 };
	struct mig_tls *tls = NULL;
	struct mig_pool *pool = NULL;
	char token[MIG_POOL_TOKEN_LEN + 1] = "";
	struct mig_frame f;
	char buf[MIG_CONTROL_MAX + 1];
	uint64_t t0 = clock_now_ns(CLOCK_MONOTONIC), tpause = 0;
	/* Where the pause goes, for STASIS_DEBUG: the log collected, the
	 * state and the memory written, the snapshot committed, the
	 * destination's READY, its RUNNING. */
	uint64_t tp[6] = { 0 };
	bool paused_here = false, layer = false;
	int ret;

	memset(res, 0, sizeof(*res));
	atomic_store(&vm->migrate_stats.rounds, 0);
	atomic_store(&vm->migrate_stats.bytes_sent, 0);
	atomic_store(&vm->migrate_stats.dirty_rate, 0);
	atomic_store(&vm->migrate_stats.link_rate, 0);
	atomic_store(&vm->migrate_stats.expected_downtime_ms, 0);
	ret = mig_addr_parse(o->dest, &a, err, errlen);
	if (ret)
		return ret;
	ret = mig_transport_check(&a, o->dest, o->insecure, o->tls_dir[0], err,
				  errlen);
	if (ret)
		return ret;
	/* The credentials before anything connects: a bad file is named
	 * and nothing moves. */
	if (o->tls_dir[0]) {
		ret = mig_tls_load(o->tls_dir, &tls, err, errlen);
		if (ret)
			return ret;
	}
	ret = postcopy_check_opts(o, err, errlen);
	if (ret)
		return ret;
	/* A lazily restored VM is sent whole: every chunk still in its old
	 * file is brought in first, while it runs. */
	if (vm->pager) {
		ret = pager_wait(vm->pager, err, errlen);
		if (ret)
			return ret;
	}
	atomic_store(&vm->migrate_phase, MIGRATE_CONNECTING);
	ret = mig_connect(&a, &c, err, errlen);
	if (ret)
		goto fail;
	if (o->timeout_s)
		c.deadline_ms =
		    (int64_t)(t0 / 1000000) + (int64_t)o->timeout_s * 1000;
	sink.c = &c;
	sink.po = &po;
	if (tls) {
		ret = mig_tls_start(&c, tls, false, a.host, err, errlen);
		if (ret)
			goto fail;
	}
	ret = send_hello(&c, o->connections, may_postcopy, token, err, errlen);
	if (!ret && may_postcopy)
		ret = postcopy_out_connect(&po, &a, tls, token, err, errlen);
	if (!ret)
		ret = mig_pool_open(&pool, &a, tls, &c, o->connections, token,
				    err, errlen);
	if (ret)
		goto fail;

	/* CONFIG and CPUID first, while the guest runs: the destination
	 * names a mismatch before anything else moves. */
	atomic_store(&vm->migrate_phase, MIGRATE_CHECKING);
	/* The stream is a full snapshot of this VM (LINEAGE with its id and
	 * no parent), written by the same steps as a file. */
	lin.vm_id[0] = vm->lineage.vm_id[0];
	lin.vm_id[1] = vm->lineage.vm_id[1];
	dest.path = c.peer;
	dest.sink = &send_sink_ops;
	dest.sink_ctx = &sink;
	w = snapshot_begin(vm, &dest, &o->compress, &lin, &created_ns, &ret,
			   err, errlen);
	if (!w)
		goto fail;
	ret = mig_send(&c, MIG_CHECK, 0, NULL, 0, err, errlen);
	if (!ret)
		ret = mig_expect(&c, MIG_ACCEPT, &f, buf, sizeof(buf), err,
				 errlen);
	if (ret)
		goto fail;

	/* Pre-copy, while the guest runs. Compressed chunks are not the
	 * guest's pages as they lie in memory, so compression sends all at
	 * the pause instead. */
	if (o->compress.codec == SNAP_CODEC_RAW && !o->postcopy) {
		ret = precopy_init(&pc, vm);
		if (ret) {
			snprintf(err, errlen, "pre-copy: %s", strerror(-ret));
			goto fail;
		}
		pc.pool = pool;
	}
	if (pc.on) {
		atomic_store(&vm->migrate_phase, MIGRATE_PRECOPY);
		/* At the timeout, post-copy instead of giving up: the rounds
		 * stop between two frames. */
		if (o->timeout_postcopy) {
			c.switch_ms = c.deadline_ms;
			c.deadline_ms = 0;
		}
		ret = precopy_run(vm, &pc, &c, o, res, err, errlen);
		c.switch_ms = 0;
		if (ret == -ETIME && o->timeout_postcopy) {
			log_info(
			    "migration: pre-copy did not converge in %u s: "
			    "switching to post-copy",
			    o->timeout_s);
			po.active = true;
			ret = 0;
		} else if (!ret) {
			/* The destination checks each round's chunks as they
			 * come: it is through with the last before the guest
			 * stops, not during the pause. */
			ret = mig_send(&c, MIG_SYNC, 0, NULL, 0, err, errlen);
			if (!ret)
				ret = mig_expect(&c, MIG_SYNC, &f, buf,
						 sizeof(buf), err, errlen);
		}
		if (ret)
			goto fail;
	}
	if (o->postcopy)
		po.active = true;
	/* Every page on the other connections lands before the pause (or
	 * the switch to post-copy, which lets go of them all). */
	ret = mig_pool_finish(pool, err, errlen);
	if (!ret && po.active)
		ret = mig_send(&c, MIG_POSTCOPY, 0, NULL, 0, err, errlen);
	if (ret)
		goto fail;

	atomic_store(&vm->migrate_phase, MIGRATE_SENDING);
	vm->snapshot_progress.done_bytes = 0;
	vm->snapshot_progress.total_bytes = 0;
	/* Under run_state_lock, as a snapshot's own pause: the API's pause
	 * and resume see snapshot_active and stay out until the end. */
	pthread_mutex_lock(&vm->run_state_lock);
	atomic_store(&vm->snapshot_active, true);
	if (!atomic_load(&vm->pause_requested)) {
		ret = vm_pause(vm);
		paused_here = !ret;
	}
	pthread_mutex_unlock(&vm->run_state_lock);
	if (ret) {
		snprintf(err, errlen, "cannot pause the VM: %s",
			 strerror(-ret));
		goto fail;
	}
	tpause = clock_now_ns(CLOCK_MONOTONIC);
	/* After pre-copy, the snapshot leaves what the destination holds to
	 * it; a post-copy sends all of memory, lazily. */
	layer = pc.on && !po.active;
	ret = snapshot_write_state(vm, w, err, errlen);
	tp[0] = clock_now_ns(CLOCK_MONOTONIC);
	/* What the guest wrote since the last round is not clean, nor what
	 * the devices wrote while their state was saved (net's pre_save
	 * delivers the frames waiting in its socket): collected after, and
	 * those chunks go in the MEMORY record; the others stay the
	 * destination's. */
	if (!ret && layer) {
		uint64_t left;

		pc.miss = false;
		ret = precopy_collect(&pc, &left, err, errlen);
		if (ret)
			goto fail;
		precopy_pause_chunks(&pc);
	}
	tp[1] = clock_now_ns(CLOCK_MONOTONIC);
	if (!ret)
		ret = snap_write_memory_layer(
		    w, &vm->mem,
		    layer ? (const uint64_t *const *)pc.chunks : NULL,
		    &vm->snapshot_progress, err, errlen);
	tp[2] = clock_now_ns(CLOCK_MONOTONIC);
	/* Unsigned: the stream is checked frame by frame, and the key signs
	 * only the VM's files. */
	ret = snapshot_finish(vm, w, c.peer, ret, false, NULL, err, errlen);
	w = NULL;
	tp[3] = clock_now_ns(CLOCK_MONOTONIC);
	atomic_store(&vm->migrate_phase, MIGRATE_SWITCHING);
	if (!ret)
		ret = po.active ? postcopy_out_wait(&po, &c, MIG_READY, buf,
						    sizeof(buf), err, errlen)
				: mig_expect(&c, MIG_READY, &f, buf,
					     sizeof(buf), err, errlen);
	tp[4] = clock_now_ns(CLOCK_MONOTONIC);
	if (ret)
		goto fail;

	/* The switch. From the GO on this copy must never run again: the
	 * destination may be running it, whatever becomes of the link. */
	atomic_store(&vm->migrated, true);
	ret = mig_send(&c, MIG_GO, 0, NULL, 0, err, errlen);
	res->postcopy = po.active;
	if (!ret && po.active) {
		atomic_store(&vm->migrate_phase, MIGRATE_POSTCOPY);
		ret = postcopy_out_finish(&po, &c, res, err, errlen);
	} else if (!ret) {
		ret = mig_expect(&c, MIG_RUNNING, &f, buf, sizeof(buf), err,
				 errlen);
	}
	res->bytes_sent = c.sent + mig_pool_sent(pool) + po.prio.sent;
	mig_pool_close(pool);
	pool = NULL;
	atomic_store(&vm->snapshot_active, false);
	/* Paused for good: the kicker has nothing left to throttle. */
	vm_set_throttle(vm, 0);
	if (ret) {
		char why[256];

		snprintf(why, sizeof(why), "%s", err);
		atomic_store(&vm->migrate_phase, MIGRATE_LOST);
		snprintf(err, errlen,
			 "the link to %s broke after the switch (%s): the VM "
			 "may be running there, so it stays paused here for "
			 "good; if it does not run there, save this copy "
			 "(ctl snapshot PATH --then exit) and restore that",
			 o->dest, why);
		mig_close(&c);
		postcopy_out_free(&po);
		precopy_free(&pc);
		mig_tls_free(tls);
		return -ENOTCONN;
	}
	tp[5] = clock_now_ns(CLOCK_MONOTONIC);
	log_debug("migration: paused %" PRIu64 " us: state %" PRIu64
		  ", collect %" PRIu64 ", memory %" PRIu64 ", commit %" PRIu64
		  ", the destination's restore %" PRIu64
		  ", the switch %" PRIu64,
		  (tp[5] - tpause) / 1000, (tp[0] - tpause) / 1000,
		  (tp[1] - tp[0]) / 1000, (tp[2] - tp[1]) / 1000,
		  (tp[3] - tp[2]) / 1000, (tp[4] - tp[3]) / 1000,
		  (tp[5] - tp[4]) / 1000);
	res->total_ms = (clock_now_ns(CLOCK_MONOTONIC) - t0) / 1000000;
	res->downtime_ms =
	    ((po.active ? po.running_ns : clock_now_ns(CLOCK_MONOTONIC)) -
	     tpause) /
	    1000000;
	atomic_store(&vm->migrate_phase, MIGRATE_DONE);
	mig_close(&c);
	postcopy_out_free(&po);
	precopy_free(&pc);
	mig_tls_free(tls);
	return 0;

fail:
	if (c.fd >= 0 && (ret == -ECONNRESET || ret == -EPIPE)) {
		char mine[512];

		snprintf(mine, sizeof(mine), "%s",
			 sink.err[0] ? sink.err : err);
		ret = peer_reason(&c, ret, err, errlen);
		if (ret == -ECONNABORTED)
			sink.err[0] = '\0';
		else
			snprintf(err, errlen, "%s", mine);
	}
	if (ret == -ECONNABORTED) {
		/* The destination's own reason. */
		char why[512];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "%s: %s", c.peer, why);
	} else if (sink.err[0]) {
		/* A DATA frame failed: the channel's reason is the better
		 * one (the writer only knows that a write failed). */
		snprintf(err, errlen, "%s", sink.err);
	}
	if (w)
		snap_writer_abort(w);
	mig_pool_close(pool);
	if (c.fd >= 0) {
		char msg[MIG_CONTROL_MAX];

		/* Best effort: the destination drops what it received. */
		snprintf(msg, sizeof(msg), "the source gave up: %s", err);
		c.idle_ms = 1000;
		c.deadline_ms = 0;
		mig_send_text(&c, MIG_ERROR, 0, msg, NULL, 0);
		mig_close(&c);
	}
	postcopy_out_free(&po);
	atomic_store(&vm->migrate_phase, MIGRATE_NONE);
	precopy_abort(&pc);
	precopy_free(&pc);
	mig_tls_free(tls);
	/* The guest runs on here at full speed. */
	vm_set_throttle(vm, 0);
	pthread_mutex_lock(&vm->run_state_lock);
	if (paused_here)
		vm_resume(vm);
	atomic_store(&vm->snapshot_active, false);
	pthread_mutex_unlock(&vm->run_state_lock);
	return ret;
}
