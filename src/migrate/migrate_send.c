/* The source side of a migration (migrate.h): the snapshot writer over
 * the channel, the destination's checks before the pause, and the switch
 * after which this copy never runs again. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/file_io.h"
#include "core/le.h"
#include "core/log.h"
#include "core/vm.h"
#include "migrate/channel.h"
#include "memory/dirty_log.h"
#include "migrate/migrate.h"
#include "migrate/postcopy.h"
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
 * A page is clean from when it was sent until the dirty log reports a
 * write to it; the log reports every write completed after a collect
 * returns in the next collect, so a page read after a collect and written
 * meanwhile is only sent again, never taken for clean. */
struct precopy {
	bool on;
	struct guest_mem *mem;
	struct dirty_log *log;
	uint64_t *clean[GUEST_MEM_MAX_REGIONS];
	uint64_t *dirty[GUEST_MEM_MAX_REGIONS]; /* one collect */
	/* Every page collected: put back into the log if the migration
	 * fails, so that the VM's next incremental snapshot still sees
	 * them. */
	uint64_t *seen[GUEST_MEM_MAX_REGIONS];
	/* The guest writes its pages while they are sent: each frame's
	 * bytes are copied here first, so that its checksum is of what is
	 * sent. */
	uint8_t *bounce;
};

#define PAGE GUEST_MEM_PAGE

static bool bit(const uint64_t *bm, uint64_t p)
{
	return bm[p / 64] >> (p % 64) & 1;
}

static void precopy_free(struct precopy *pc)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(pc->clean[i]);
		free(pc->dirty[i]);
		free(pc->seen[i]);
	}
	free(pc->bounce);
	memset(pc, 0, sizeof(*pc));
}

/* The writer's sink: each write becomes DATA frames at its offset, and
 * with pre-copy, REF frames for the runs of guest memory the destination
 * holds already. */
struct send_sink {
	struct mig_chan *c;
	struct precopy *pc;
	struct postcopy_out *po; /* memory goes later when po->active */
	char err[256]; /* the channel's reason for the last failure */
};

/* Where in guest memory @p lies: its region, or -1. */
static int host_region(const struct guest_mem *m, const uint8_t *p)
{
	for (unsigned i = 0; i < m->nregions; i++)
		if (p >= m->regions[i].host &&
		    p < m->regions[i].host + m->regions[i].size)
			return (int)i;
	return -1;
}

/* One piece of a write at @off: clean pages as REF frames, the rest as
 * DATA. 1 when the piece is not guest memory (the caller sends it). */
static int sink_piece(struct send_sink *s, const struct iovec *v, uint64_t off)
{
	const uint8_t *p = v->iov_base;
	int r = s->pc && s->pc->on ? host_region(s->pc->mem, p) : -1;
	const struct mem_region *reg;
	uint64_t at, end;

	if (r < 0 || (uintptr_t)p % PAGE || v->iov_len % PAGE)
		return 1;
	reg = &s->pc->mem->regions[r];
	at = (uint64_t)(p - reg->host);
	end = at + v->iov_len;
	if (end > reg->size)
		return 1;
	while (at < end) {
		bool clean = bit(s->pc->clean[r], at / PAGE);
		uint64_t run = at, gpa = reg->gpa + at;
		struct iovec part;
		uint8_t ref[16];
		int ret;

		while (run < end && run - at < MIG_DATA_MAX &&
		       bit(s->pc->clean[r], run / PAGE) == clean)
			run += PAGE;
		if (clean) {
			put_le64(ref, gpa);
			put_le64(ref + 8, run - at);
			part = (struct iovec){ .iov_base = ref, .iov_len = 16 };
			ret = mig_send(s->c, MIG_REF, off, &part, 1, s->err,
				       sizeof(s->err));
		} else {
			part = (struct iovec){ .iov_base = reg->host + at,
					       .iov_len = run - at };
			ret = mig_send(s->c, MIG_DATA, off, &part, 1, s->err,
				       sizeof(s->err));
		}
		if (ret)
			return ret;
		off += run - at;
		at = run;
	}
	return 0;
}

static int sink_pwritev(void *ctx, struct iovec *iov, unsigned n, uint64_t off)
{
	struct send_sink *s = ctx;

	if (s->po && s->po->active)
		return postcopy_out_write(s->po, s->c, iov, n, off,
					  s->pc && s->pc->on ? s->pc->clean
							     : NULL,
					  s->err, sizeof(s->err));
	while (n) {
		struct iovec part[64], run = iov[0];
		unsigned k = 0;
		size_t len = 0;
		int ret;

		/* Guest memory comes a block at a time: adjacent blocks go
		 * as one piece. */
		for (unsigned j = 1;
		     j < n &&
		     (uint8_t *)run.iov_base + run.iov_len == iov[j].iov_base;
		     j++)
			run.iov_len += iov[j].iov_len;
		ret = sink_piece(s, &run, off);
		if (ret <= 0) {
			if (ret)
				return ret;
			off += run.iov_len;
			iov_advance(&iov, &n, run.iov_len);
			continue;
		}

		/* As many pieces as fit one frame; a piece too long for the
		 * rest of the frame is cut. With pre-copy, guest memory goes
		 * piece by piece (above). */
		while (k < n && k < 64 && len < MIG_DATA_MAX &&
		       (k == 0 || !s->pc || !s->pc->on ||
			host_region(s->pc->mem, iov[k].iov_base) < 0)) {
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
 * migration is stop-and-copy) where the host has no dirty log, or where
 * memory is mapped from a snapshot file (those pages are not in the
 * memfd the first round walks). */
static int precopy_init(struct precopy *pc, struct vm *vm)
{
	int ret;

	memset(pc, 0, sizeof(*pc));
	pc->mem = &vm->mem;
	pc->log = &vm->dirty;
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		size_t bytes = dirty_log_bitmap_words(&vm->mem, i) * 8;

		if (vm->mem.regions[i].file_mapped)
			return 0;
		pc->clean[i] = calloc(1, bytes);
		pc->dirty[i] = calloc(1, bytes);
		pc->seen[i] = calloc(1, bytes);
		if (!pc->clean[i] || !pc->dirty[i] || !pc->seen[i])
			return -ENOMEM;
	}
	pc->bounce = malloc(MIG_DATA_MAX);
	if (!pc->bounce)
		return -ENOMEM;
	ret = dirty_log_start(pc->log);
	if (ret) {
		log_info("migration: no dirty page log (%s): stop-and-copy",
			 strerror(-ret));
		return 0;
	}
	pc->on = true;
	return 0;
}

/* Sends pages [@p, @p + @n) of region @r as PAGES frames and marks them
 * clean; adds their bytes to *@bytes. */
static int precopy_send(struct precopy *pc, struct mig_chan *c, unsigned r,
			uint64_t p, uint64_t n, uint64_t *bytes, char *err,
			size_t errlen)
{
	const struct mem_region *reg = &pc->mem->regions[r];

	while (n) {
		uint64_t k = n < MIG_DATA_MAX / PAGE ? n : MIG_DATA_MAX / PAGE;
		struct iovec v = { .iov_base = pc->bounce,
				   .iov_len = k * PAGE };
		int ret;

		/* Clean first: a write after the read that follows is in
		 * the next collect, which clears it again. */
		for (uint64_t q = p; q < p + k; q++)
			pc->clean[r][q / 64] |= 1ull << (q % 64);
		memcpy(pc->bounce, reg->host + p * PAGE, k * PAGE);
		ret = mig_send(c, MIG_PAGES, reg->gpa + p * PAGE, &v, 1, err,
			       errlen);
		/* Not sent (a switch to post-copy stops here): not clean. */
		for (uint64_t q = p; ret && q < p + k; q++)
			pc->clean[r][q / 64] &= ~(1ull << (q % 64));
		if (ret)
			return ret;
		*bytes += k * PAGE;
		p += k;
		n -= k;
	}
	return 0;
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
	return 0;
}

/* Collects the log: the pages written since the last collect are no
 * longer clean (pc->dirty holds them). Their bytes in *@bytes. */
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
	for (unsigned r = 0; r < pc->mem->nregions; r++) {
		for (uint64_t w = 0; w < dirty_log_bitmap_words(pc->mem, r);
		     w++) {
			pc->seen[r][w] |= pc->dirty[r][w];
			pc->clean[r][w] &= ~pc->dirty[r][w];
			*bytes +=
			    (uint64_t)__builtin_popcountll(pc->dirty[r][w]) *
			    PAGE;
		}
	}
	return 0;
}

/* Sends again the pages the last collect found written. */
static int precopy_resend(struct precopy *pc, struct mig_chan *c,
			  uint64_t *bytes, char *err, size_t errlen)
{
	for (unsigned r = 0; r < pc->mem->nregions; r++) {
		uint64_t npages = pc->mem->regions[r].size / PAGE;

		for (uint64_t p = 0; p < npages;) {
			uint64_t q = p;
			int ret;

			if (!bit(pc->dirty[r], p)) {
				p = p % 64 || pc->dirty[r][p / 64] ? p + 1
								   : p + 64;
				continue;
			}
			while (q < npages && bit(pc->dirty[r], q))
				q++;
			ret = precopy_send(pc, c, r, p, q - p, bytes, err,
					   errlen);
			if (ret)
				return ret;
			p = q;
		}
	}
	return 0;
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

/* While the guest runs: all its memory, then rounds of what it dirtied,
 * until the rest fits the downtime budget at the rate the last round
 * went, or the rounds give out. Returns the rounds made. */
static int precopy_run(struct precopy *pc, struct mig_chan *c,
		       const struct migrate_opts *o, unsigned *rounds,
		       char *err, size_t errlen)
{
	unsigned budget = o->downtime_ms ? o->downtime_ms : MIGRATE_DOWNTIME_MS;
	uint64_t t0 = clock_now_ns(CLOCK_MONOTONIC);
	uint64_t sent = 0, left;
	int ret;

	*rounds = 1;
	ret = precopy_first(pc, c, &sent, err, errlen);
	while (!ret) {
		uint64_t us = (clock_now_ns(CLOCK_MONOTONIC) - t0) / 1000;
		/* bytes per ms at the last round's pace; at least 1 */
		uint64_t rate = us ? sent * 1000 / us + 1 : 1;

		ret = precopy_collect(pc, &left, err, errlen);
		if (ret)
			break;
		/* The pages just collected are clean no more; sent below
		 * or by the snapshot. */
		if (left / rate <= budget || *rounds >= MIGRATE_MAX_ROUNDS)
			break;
		(*rounds)++;
		t0 = clock_now_ns(CLOCK_MONOTONIC);
		sent = 0;
		ret = precopy_resend(pc, c, &sent, err, errlen);
	}
	return ret;
}

/* HELLO and WELCOME: "stasis-migrate PROTO VERSION" each way; with
 * @token (post-copy may be asked for) the HELLO ends in " postcopy" and
 * the WELCOME's " token HEX" is the priority connection's. */
static int send_hello(struct mig_chan *c, char *token, char *err, size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1], ver[64];
	struct mig_frame f;
	unsigned proto;
	int ret;

	snprintf(buf, sizeof(buf), "stasis-migrate %u %s%s", MIG_PROTO_VERSION,
		 STASIS_VERSION, token ? " postcopy" : "");
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
		snprintf(err, errlen,
			 "%s speaks migration protocol %u (stasis %s), this "
			 "stasis %u",
			 c->peer, proto, ver, MIG_PROTO_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (token && postcopy_parse_token(buf, token)) {
		snprintf(err, errlen, "%s cannot take a post-copy migration",
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
	char token[POSTCOPY_TOKEN_LEN + 1] = "";
	struct snap_writer *w = NULL;
	struct snapshot_dest dest = { 0 };
	struct snap_lineage lin = { 0 };
	uint64_t created_ns;
	struct mig_addr a;
	struct mig_chan c = { .fd = -1 };
	struct mig_frame f;
	char buf[MIG_CONTROL_MAX + 1];
	uint64_t t0 = clock_now_ns(CLOCK_MONOTONIC), tpause = 0;
	bool paused_here = false;
	int ret;

	memset(res, 0, sizeof(*res));
	ret = mig_addr_parse(o->dest, &a, err, errlen);
	if (ret)
		return ret;
	if (a.tcp && !o->insecure) {
		snprintf(err, errlen,
			 "%s: plain tcp carries guest memory unencrypted and "
			 "unauthenticated: add --insecure (TLS is not built "
			 "yet)",
			 o->dest);
		return -EINVAL;
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
	sink.pc = &pc;
	sink.po = &po;
	ret = send_hello(&c, may_postcopy ? token : NULL, err, errlen);
	if (!ret && may_postcopy)
		ret = postcopy_out_connect(&po, &a, token, err, errlen);
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
	}
	if (pc.on) {
		atomic_store(&vm->migrate_phase, MIGRATE_PRECOPY);
		/* At the timeout, post-copy instead of giving up: the rounds
		 * stop between two frames. */
		if (o->timeout_postcopy) {
			c.switch_ms = c.deadline_ms;
			c.deadline_ms = 0;
		}
		ret = precopy_run(&pc, &c, o, &res->rounds, err, errlen);
		c.switch_ms = 0;
		if (ret == -ETIME && o->timeout_postcopy) {
			log_info(
			    "migration: pre-copy did not converge in %u s: "
			    "switching to post-copy",
			    o->timeout_s);
			po.active = true;
			ret = 0;
		}
		if (ret)
			goto fail;
	}
	if (o->postcopy)
		po.active = true;
	if (po.active) {
		ret = mig_send(&c, MIG_POSTCOPY, 0, NULL, 0, err, errlen);
		if (ret)
			goto fail;
	}

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
	/* What the guest wrote since the last round is not clean. */
	if (pc.on) {
		uint64_t left;

		ret = precopy_collect(&pc, &left, err, errlen);
		if (ret)
			goto fail;
	}
	ret = snapshot_write_state(vm, w, err, errlen);
	if (!ret)
		ret = snap_write_memory(w, &vm->mem, &vm->snapshot_progress,
					err, errlen);
	/* Unsigned: the stream is checked frame by frame, and the key signs
	 * only the VM's files. */
	ret = snapshot_finish(vm, w, c.peer, ret, false, NULL, err, errlen);
	w = NULL;
	atomic_store(&vm->migrate_phase, MIGRATE_SWITCHING);
	if (!ret)
		ret = po.active ? postcopy_out_wait(&po, &c, MIG_READY, buf,
						    sizeof(buf), err, errlen)
				: mig_expect(&c, MIG_READY, &f, buf,
					     sizeof(buf), err, errlen);
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
	res->bytes_sent = c.sent + po.prio.sent;
	atomic_store(&vm->snapshot_active, false);
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
		return -ENOTCONN;
	}
	res->total_ms = (clock_now_ns(CLOCK_MONOTONIC) - t0) / 1000000;
	res->downtime_ms =
	    ((po.active ? po.running_ns : clock_now_ns(CLOCK_MONOTONIC)) -
	     tpause) /
	    1000000;
	atomic_store(&vm->migrate_phase, MIGRATE_DONE);
	mig_close(&c);
	postcopy_out_free(&po);
	precopy_free(&pc);
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
	pthread_mutex_lock(&vm->run_state_lock);
	if (paused_here)
		vm_resume(vm);
	atomic_store(&vm->snapshot_active, false);
	pthread_mutex_unlock(&vm->run_state_lock);
	return ret;
}
