/* The source side of a migration (migrate.h): the snapshot writer over
 * the channel, the destination's checks before the pause, and the switch
 * after which this copy never runs again. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/file_io.h"
#include "core/log.h"
#include "core/vm.h"
#include "migrate/channel.h"
#include "migrate/migrate.h"
#include "snapshot/pager.h"
#include "snapshot/snapshot.h"

static const char *const phase_names[] = {
	[MIGRATE_NONE] = "none",	   [MIGRATE_CONNECTING] = "connecting",
	[MIGRATE_CHECKING] = "checking",   [MIGRATE_SENDING] = "sending",
	[MIGRATE_SWITCHING] = "switching", [MIGRATE_DONE] = "done",
	[MIGRATE_LOST] = "lost",
};

const char *migrate_phase_name(enum migrate_phase p)
{
	return (unsigned)p <= MIGRATE_LOST ? phase_names[p] : "?";
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The writer's sink: each write becomes DATA frames at its offset. */
struct send_sink {
	struct mig_chan *c;
	char err[256]; /* the channel's reason for the last failure */
};

static int sink_pwritev(void *ctx, struct iovec *iov, unsigned n, uint64_t off)
{
	struct send_sink *s = ctx;

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

	return mig_send(s->c, MIG_COMMIT, size, NULL, 0, err, errlen);
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

/* HELLO and WELCOME: "stasis-migrate PROTO VERSION" each way. */
static int send_hello(struct mig_chan *c, char *err, size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1], ver[64];
	struct mig_frame f;
	unsigned proto;
	int ret;

	snprintf(buf, sizeof(buf), "stasis-migrate %u %s", MIG_PROTO_VERSION,
		 STASIS_VERSION);
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
	struct snap_writer *w = NULL;
	struct snap_header hdr;
	struct mig_addr a;
	struct mig_chan c = { .fd = -1 };
	struct mig_frame f;
	char buf[MIG_CONTROL_MAX + 1];
	int64_t t0 = mono_ms(), tpause = 0;
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
		c.deadline_ms = t0 + (int64_t)o->timeout_s * 1000;
	sink.c = &c;
	ret = send_hello(&c, err, errlen);
	if (ret)
		goto fail;

	/* CONFIG and CPUID first, while the guest runs: the destination
	 * names a mismatch before anything else moves. */
	atomic_store(&vm->migrate_phase, MIGRATE_CHECKING);
	snapshot_header_init(vm, &hdr);
	w = snap_writer_open_sink(&send_sink_ops, &sink, c.peer, &hdr, err,
				  errlen);
	if (!w) {
		ret = -EIO;
		goto fail;
	}
	if (snap_writer_set_compress(w, &o->compress, 0)) {
		snprintf(err, errlen, "unknown compression");
		ret = -EINVAL;
		goto fail;
	}
	ret = snapshot_save_begin(vm, w, err, errlen);
	if (!ret)
		ret = mig_send(&c, MIG_CHECK, 0, NULL, 0, err, errlen);
	if (!ret)
		ret = mig_expect(&c, MIG_ACCEPT, &f, buf, sizeof(buf), err,
				 errlen);
	if (ret)
		goto fail;

	atomic_store(&vm->migrate_phase, MIGRATE_SENDING);
	vm->snapshot_progress.done_bytes = 0;
	vm->snapshot_progress.total_bytes = 0;
	atomic_store(&vm->snapshot_active, true);
	if (!atomic_load(&vm->pause_requested)) {
		ret = vm_pause(vm);
		if (ret) {
			snprintf(err, errlen, "cannot pause the VM: %s",
				 strerror(-ret));
			goto fail;
		}
		paused_here = true;
	}
	tpause = mono_ms();
	ret = snapshot_save_state(vm, w, &vm->snapshot_progress, false, err,
				  errlen);
	if (!ret) {
		ret = snap_writer_commit(w, err, errlen);
		w = NULL;
	}
	atomic_store(&vm->migrate_phase, MIGRATE_SWITCHING);
	if (!ret)
		ret = mig_expect(&c, MIG_READY, &f, buf, sizeof(buf), err,
				 errlen);
	if (ret)
		goto fail;

	/* The switch. From the GO on this copy must never run again: the
	 * destination may be running it, whatever becomes of the link. */
	atomic_store(&vm->migrated, true);
	ret = mig_send(&c, MIG_GO, 0, NULL, 0, err, errlen);
	if (!ret)
		ret = mig_expect(&c, MIG_RUNNING, &f, buf, sizeof(buf), err,
				 errlen);
	res->bytes_sent = c.sent;
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
		return -ENOTCONN;
	}
	res->total_ms = (uint64_t)(mono_ms() - t0);
	res->downtime_ms = (uint64_t)(mono_ms() - tpause);
	atomic_store(&vm->migrate_phase, MIGRATE_DONE);
	mig_close(&c);
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
	atomic_store(&vm->snapshot_active, false);
	atomic_store(&vm->migrate_phase, MIGRATE_NONE);
	if (paused_here)
		vm_resume(vm);
	return ret;
}
