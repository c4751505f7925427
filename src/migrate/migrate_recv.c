/* The destination side of a migration (migrate.h): one source accepted,
 * its snapshot stream rebuilt in a memory-backed spool that restore then
 * reads like a file, and the switch. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/file_io.h"
#include "core/le.h"
#include "core/log.h"
#include "memory/guest_mem.h"
#include "migrate/channel.h"
#include "migrate/mig_pool.h"
#include "migrate/migrate.h"
#include "snapshot/snapfile.h"
#include "snapshot/snapshot.h"

/* Header, CONFIG and CPUID come before the check: a few KiB in practice. */
#define PREFIX_MAX (16u << 20)
/* Beyond guest memory, what a complete stream may hold: chunk tables
 * (32 bytes per 256 KiB), vCPU and device records. */
#define RECORDS_MAX (64ull << 20)

struct migrate_in {
	struct mig_addr addr;
	struct mig_chan c;
	int spool; /* memfd: the snapshot as the source wrote it */
	uint64_t spool_end; /* end of the furthest write */
	char path[40]; /* /proc/self/fd/N, for snapshot_open */
	uint8_t *buf; /* one frame's payload */
	bool switched;
	struct mig_tls *tls; /* --tls-dir: every connection through it */
	unsigned nconn; /* what the source's HELLO asked for */
	char token[MIG_POOL_TOKEN_LEN + 1];
	struct mig_pool_in *pool; /* the connections beyond the first */
	char first_error[MIG_CONTROL_MAX]; /* what the source is told */
};

static void recv_error_hook(void *ctx, const char *line)
{
	struct migrate_in *in = ctx;

	if (!in->first_error[0])
		snprintf(in->first_error, sizeof(in->first_error), "%s", line);
}

static int recv_fail(char *err, size_t errlen, int code, const char *what,
		     int sys)
{
	snprintf(err, errlen, "%s: %s", what, strerror(sys));
	return code;
}

/* One DATA frame into the spool, within @limit bytes. */
static int spool_write(struct migrate_in *in, const struct mig_frame *f,
		       uint64_t limit, char *err, size_t errlen)
{
	struct iovec iov = { .iov_base = in->buf, .iov_len = f->length };
	int ret;

	if (f->offset > limit || f->length > limit - f->offset) {
		snprintf(err, errlen,
			 "the stream writes past %" PRIu64
			 " bytes, more than this VM can need (bytes %" PRIu64
			 "..%" PRIu64 ")",
			 limit, f->offset, f->offset + f->length);
		return -EFBIG;
	}
	ret = file_rw_full(in->spool, true, &iov, 1, f->offset);
	if (ret) {
		snprintf(err, errlen, "cannot hold the incoming VM here: %s",
			 strerror(-ret));
		return ret;
	}
	if (f->offset + f->length > in->spool_end)
		in->spool_end = f->offset + f->length;
	return 0;
}

/* PAGES: pre-copied guest memory, straight into the VM's (not running). */
static int recv_pages(struct migrate_in *in, const struct mig_frame *f,
		      struct guest_mem *mem, char *err, size_t errlen)
{
	void *p = mem ? guest_mem_ptr(mem, f->offset, f->length) : NULL;

	if (!p) {
		snprintf(err, errlen,
			 "PAGES frame for guest 0x%" PRIx64 "+0x%" PRIx32
			 " outside this VM's memory",
			 f->offset, f->length);
		return -EPROTO;
	}
	memcpy(p, in->buf, f->length);
	return 0;
}

/* REF: snapshot bytes that are guest memory this side holds already. */
static int recv_ref(struct migrate_in *in, const struct mig_frame *f,
		    struct guest_mem *mem, uint64_t limit, char *err,
		    size_t errlen)
{
	struct mig_frame data = *f;
	uint64_t gpa, len;
	void *p = NULL;

	if (f->length == 16) {
		gpa = get_le64(in->buf);
		len = get_le64(in->buf + 8);
		if (mem && len && len <= MIG_DATA_MAX)
			p = guest_mem_ptr(mem, gpa, len);
	}
	if (!p) {
		snprintf(err, errlen, "a REF frame names no memory of this VM");
		return -EPROTO;
	}
	memcpy(in->buf, p, len);
	data.length = (uint32_t)len;
	return spool_write(in, &data, limit, err, errlen);
}

/* Receives DATA frames (and PAGES and REF frames when @mem is given)
 * until one of type @until; returns its frame. */
static int recv_data_until(struct migrate_in *in, uint32_t until,
			   uint64_t limit, struct guest_mem *mem,
			   struct mig_frame *f, char *err, size_t errlen)
{
	for (;;) {
		int ret =
		    mig_recv(&in->c, f, in->buf, MIG_DATA_MAX, err, errlen);

		if (ret)
			return ret;
		/* What the other connections carry lands before the records
		 * that name guest memory. */
		if (mem && (f->type == MIG_REF || f->type == until)) {
			ret = mig_pool_in_wait(in->pool, err, errlen);
			if (ret)
				return ret;
		}
		if (f->type == until)
			return 0;
		if (f->type == MIG_PAGES && mem) {
			ret = mig_pool_in_order(in->pool, f->offset, f->length,
						err, errlen);
			if (!ret)
				ret = recv_pages(in, f, mem, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		if (f->type == MIG_REF && mem) {
			ret = recv_ref(in, f, mem, limit, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		if (f->type != MIG_DATA) {
			snprintf(err, errlen, "%s: unexpected %s frame",
				 in->c.peer, mig_frame_name(f->type));
			return -EPROTO;
		}
		ret = spool_write(in, f, limit, err, errlen);
		if (ret)
			return ret;
	}
}

static int recv_hello(struct migrate_in *in, char *err, size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1], ver[64], msg[256];
	struct mig_frame f;
	unsigned proto;
	int ret;

	ret = mig_expect(&in->c, MIG_HELLO, &f, buf, sizeof(buf), err, errlen);
	if (ret)
		return ret;
	if (sscanf(buf, "stasis-migrate %u %63s", &proto, ver) != 2) {
		snprintf(err, errlen, "%s: not a stasis migration", in->c.peer);
		return -EPROTO;
	}
	if (proto != MIG_PROTO_VERSION) {
		snprintf(msg, sizeof(msg),
			 "the destination speaks migration protocol %u "
			 "(stasis %s), the source %u",
			 MIG_PROTO_VERSION, STASIS_VERSION, proto);
		mig_send_text(&in->c, MIG_ERROR, 0, msg, NULL, 0);
		snprintf(err, errlen, "%s: %s", in->c.peer, msg);
		return -EPROTONOSUPPORT;
	}
	if (mig_pool_hello_connections(buf, &in->nconn)) {
		snprintf(msg, sizeof(msg),
			 "the source asks for more than %u connections",
			 MIG_POOL_MAX);
		mig_send_text(&in->c, MIG_ERROR, 0, msg, NULL, 0);
		snprintf(err, errlen, "%s: %s", in->c.peer, msg);
		return -EPROTO;
	}
	snprintf(buf, sizeof(buf), "stasis-migrate %u %s", MIG_PROTO_VERSION,
		 STASIS_VERSION);
	/* The further connections must show this to join. */
	if (in->nconn > 1) {
		if (mig_pool_make_token(in->token)) {
			snprintf(err, errlen, "cannot make a token: %s",
				 strerror(EIO));
			return -EIO;
		}
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf),
			 " token=%s", in->token);
	}
	return mig_send_text(&in->c, MIG_WELCOME, 0, buf, err, errlen);
}

int migrate_in_start(const char *listen, bool insecure, const char *tls_dir,
		     struct migrate_in **out, char *err, size_t errlen)
{
	struct migrate_in *in;
	struct mig_frame f;
	int lfd, ret;

	in = calloc(1, sizeof(*in));
	if (!in)
		return recv_fail(err, errlen, -ENOMEM, "receive", ENOMEM);
	in->spool = -1;
	in->c.fd = -1;
	ret = mig_addr_parse(listen, &in->addr, err, errlen);
	if (ret)
		goto fail;
	{
		char what[300];

		snprintf(what, sizeof(what), "--listen %s", listen);
		ret = mig_transport_check(&in->addr, what, insecure,
					  tls_dir != NULL, err, errlen);
	}
	/* Read here, before any privilege is dropped. */
	if (!ret && tls_dir)
		ret = mig_tls_load(tls_dir, &in->tls, err, errlen);
	if (ret)
		goto fail;
	in->buf = malloc(MIG_DATA_MAX);
	in->spool = memfd_create("stasis-incoming", MFD_CLOEXEC);
	if (!in->buf || in->spool < 0) {
		ret = recv_fail(err, errlen, -ENOMEM,
				"cannot make room for the incoming VM",
				in->buf ? errno : ENOMEM);
		goto fail;
	}
	snprintf(in->path, sizeof(in->path), "/proc/self/fd/%d", in->spool);
	lfd = mig_listen(&in->addr, err, errlen);
	if (lfd < 0) {
		ret = lfd;
		goto fail;
	}
	log_info("waiting for a VM on %s", listen);
	ret = mig_accept(lfd, &in->addr, &in->c, err, errlen);
	if (!ret && in->tls)
		ret = mig_tls_start(&in->c, in->tls, true, NULL, err, errlen);
	if (!ret)
		ret = recv_hello(in, err, errlen);
	if (!ret && in->nconn > 1)
		ret = mig_pool_in_accept(&in->pool, lfd, &in->addr, in->tls,
					 in->nconn - 1, in->token, err, errlen);
	close(lfd);
	if (!ret)
		log_info("migration from %s: %u connection%s%s", in->c.peer,
			 in->nconn ? in->nconn : 1, in->nconn > 1 ? "s" : "",
			 in->tls ? ", TLS" : "");
	/* One VM: nobody else may connect while it comes in. */
	if (!in->addr.tcp)
		unlink(in->addr.path);
	if (ret)
		goto fail;
	/* From here on, the source is told why this side gave up. */
	log_set_error_hook(recv_error_hook, in);
	ret = recv_data_until(in, MIG_CHECK, PREFIX_MAX, NULL, &f, err, errlen);
	if (ret)
		goto fail;
	*out = in;
	return 0;

fail:
	if (!in->first_error[0])
		snprintf(in->first_error, sizeof(in->first_error), "%s", err);
	migrate_in_end(in);
	return ret;
}

const char *migrate_in_path(const struct migrate_in *in)
{
	return in->path;
}

int migrate_in_receive(struct migrate_in *in, struct snapshot_image *img,
		       struct guest_mem *mem, char *err, size_t errlen)
{
	uint64_t limit = mem->size + mem->size / 64 + RECORDS_MAX;
	struct mig_frame f;
	int ret;

	ret = mig_pool_in_start(in->pool, mem, &in->c, err, errlen);
	if (!ret)
		ret = mig_send(&in->c, MIG_ACCEPT, 0, NULL, 0, err, errlen);
	if (!ret)
		ret = recv_data_until(in, MIG_COMMIT, limit, mem, &f, err,
				      errlen);
	/* The main connection stopped because another one failed: that
	 * one's reason is the reason. */
	if (ret && mig_pool_in_error(in->pool, err, errlen))
		ret = mig_pool_in_error(in->pool, err, errlen);
	if (ret)
		return ret;
	if (f.offset != in->spool_end) {
		snprintf(err, errlen,
			 "the stream ends at byte %" PRIu64
			 " but its COMMIT says %" PRIu64,
			 in->spool_end, f.offset);
		return -EPROTO;
	}
	return snap_reader_reload_size(img->r, err, errlen);
}

int migrate_in_switch(struct migrate_in *in, bool release_spool, char *err,
		      size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1];
	struct mig_frame f;
	int ret;

	/* Copied out: the spool's memory goes back before the guest runs
	 * and starts to need its own. */
	if (release_spool && ftruncate(in->spool, 0) < 0)
		log_warn("cannot release the incoming stream's memory: %s",
			 strerror(errno));
	ret = mig_send(&in->c, MIG_READY, 0, NULL, 0, err, errlen);
	if (!ret)
		ret = mig_expect(&in->c, MIG_GO, &f, buf, sizeof(buf), err,
				 errlen);
	if (ret) {
		char why[512];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen,
			 "no go from the source (%s): the VM is not started "
			 "here",
			 why);
		return ret;
	}
	in->switched = true;
	log_set_error_hook(NULL, NULL);
	/* The source stops for good whatever this says; if the answer is
	 * lost it stays paused and says so. */
	if (mig_send(&in->c, MIG_RUNNING, 0, NULL, 0, err, errlen))
		log_warn("%s; running the VM anyway", err);
	mig_pool_in_close(in->pool);
	in->pool = NULL;
	mig_close(&in->c);
	return 0;
}

void migrate_in_end(struct migrate_in *in)
{
	if (!in)
		return;
	log_set_error_hook(NULL, NULL);
	if (!in->switched && in->c.fd >= 0) {
		char msg[MIG_CONTROL_MAX + 64];

		snprintf(msg, sizeof(msg), "the destination refused the VM: %s",
			 in->first_error[0] ? in->first_error
					    : "it failed (see its log)");
		in->c.idle_ms = 1000;
		in->c.deadline_ms = 0;
		mig_send_text(&in->c, MIG_ERROR, 0, msg, NULL, 0);
	}
	mig_pool_in_close(in->pool);
	mig_close(&in->c);
	mig_tls_free(in->tls);
	if (in->spool >= 0)
		close(in->spool);
	free(in->buf);
	free(in);
}
