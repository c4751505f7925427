/* The destination side of a migration (migrate.h): one source accepted,
 * its snapshot stream rebuilt in a memory-backed spool that restore then
 * reads like a file, and the switch. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
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
#include "migrate/postcopy.h"
#include "snapshot/pager.h"
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
	/* Pre-copy: whether it ran (a PAGES or HASH frame came), the pages
	 * received of each region (a bit per page), and what guest memory
	 * holds of each chunk (SNAP_HELD_*), which restore reads. */
	bool precopy;
	uint64_t *got[GUEST_MEM_MAX_REGIONS];
	uint8_t *held[GUEST_MEM_MAX_REGIONS];
	uint32_t chunk_size, block_size;
	struct guest_mem *mem; /* where PAGES land */
	/* Post-copy: offered in the HELLO (then a further connection is
	 * the priority channel), chosen by a POSTCOPY frame. */
	bool postcopy_offered;
	struct mig_chan prio;
	struct postcopy_in *pi;
	int seccomp;
};

static void recv_error_hook(void *ctx, const char *line)
{
	struct migrate_in *in = ctx;

	if (!in->first_error[0])
		snprintf(in->first_error, sizeof(in->first_error), "%s", line);
	/* A pager thread waiting for a chunk gives up with us. */
	postcopy_in_abort(in->pi, line);
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

/* The region of @mem that holds [@gpa, @gpa + @len) whole, or -1. */
static int recv_region(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; mem && i < mem->nregions; i++) {
		const struct mem_region *reg = &mem->regions[i];

		if (gpa >= reg->gpa && gpa - reg->gpa <= reg->size &&
		    len <= reg->size - (gpa - reg->gpa))
			return (int)i;
	}
	return -1;
}

/* PAGES: pre-copied guest memory @data, straight into the VM's (not
 * running); its chunks are unchecked until their HASH. From the main
 * connection and the pool's threads at once (mig_pool.h), for different
 * granules: a granule's pages share no bitmap word with another's only
 * when regions start on 64-page boundaries, so the bits are set
 * atomically. */
static int recv_pages(void *ctx, const struct mig_frame *f, const void *data,
		      char *err, size_t errlen)
{
	struct migrate_in *in = ctx;
	struct guest_mem *mem = in->mem;
	int r = recv_region(mem, f->offset, f->length);
	const struct mem_region *reg;
	uint64_t first, n;

	if (r >= 0 && !in->held[r]) {
		snprintf(err, errlen,
			 "pre-copied pages cannot land in memory of %" PRIu64
			 "-byte pages (--hugepages): migrate with --compress "
			 "or restore on 4 KiB pages",
			 mem->page_size);
		return -EPROTO;
	}
	if (r < 0 || f->offset % GUEST_MEM_PAGE || f->length % GUEST_MEM_PAGE) {
		snprintf(err, errlen,
			 "PAGES frame for guest 0x%" PRIx64 "+0x%" PRIx32
			 " outside this VM's memory",
			 f->offset, f->length);
		return -EPROTO;
	}
	reg = &mem->regions[r];
	first = (f->offset - reg->gpa) / GUEST_MEM_PAGE;
	n = f->length / GUEST_MEM_PAGE;
	memcpy(reg->host + (f->offset - reg->gpa), data, f->length);
	for (uint64_t p = first; p < first + n; p++) {
		__atomic_fetch_or(&in->got[r][p / 64], 1ull << (p % 64),
				  __ATOMIC_RELAXED);
		in->held[r][p * GUEST_MEM_PAGE / in->chunk_size] =
		    SNAP_HELD_UNCHECKED;
	}
	return 0;
}

/* HASH: the source's hash of chunks it sent pages of; each is checked in
 * place now, against the pages received (the others are zero here). */
static int recv_hash(struct migrate_in *in, const struct mig_frame *f,
		     struct guest_mem *mem, char *err, size_t errlen)
{
	uint64_t per = in->chunk_size / GUEST_MEM_PAGE;

	if (f->length % 16) {
		snprintf(err, errlen, "a HASH frame of %" PRIu32 " bytes",
			 f->length);
		return -EPROTO;
	}
	in->precopy = true;
	for (uint32_t k = 0; k < f->length; k += 16) {
		uint64_t gpa = get_le64(in->buf + k), want, h, len, start;
		uint64_t ch;
		int r = recv_region(mem, gpa, 1), ret;
		const struct mem_region *reg;

		if (r < 0 || !in->held[r] ||
		    (gpa - mem->regions[r].gpa) % in->chunk_size) {
			snprintf(err, errlen,
				 "a HASH frame names guest 0x%" PRIx64
				 ", no chunk of this VM",
				 gpa);
			return -EPROTO;
		}
		reg = &mem->regions[r];
		want = get_le64(in->buf + k + 8);
		start = gpa - reg->gpa;
		ch = start / in->chunk_size;
		len = reg->size - start;
		if (len > in->chunk_size)
			len = in->chunk_size;
		ret = snap_hash_chunk(reg->host + start, len, in->block_size,
				      in->got[r], ch * per, &h);
		if (ret) {
			snprintf(err, errlen,
				 "cannot check pre-copied memory: %s",
				 strerror(-ret));
			return ret;
		}
		/* A mismatch is not an error yet: the guest wrote the chunk
		 * after its pages were read, and it comes again. */
		in->held[r][ch] =
		    h == want ? SNAP_HELD_CHECKED : SNAP_HELD_UNCHECKED;
	}
	return 0;
}

/* POSTCOPY: the memory of this stream comes after the switch (there
 * must be a priority channel); LAZY: which bytes of it. */
static int recv_postcopy(struct migrate_in *in, const struct mig_frame *f,
			 uint64_t limit, char *err, size_t errlen)
{
	uint64_t len;
	int ret;

	if (f->type == MIG_POSTCOPY) {
		if (in->pi || in->prio.fd < 0) {
			snprintf(err, errlen,
				 "%s: a POSTCOPY frame without a priority "
				 "connection",
				 in->c.peer);
			return -EPROTO;
		}
		/* What pre-copy brought is let go (every page comes again,
		 * lazily): the pager installs into memory that holds nothing,
		 * and the stream's MEMORY records are whole. The other
		 * connections' pages land first. */
		ret = mig_pool_in_wait(in->pool, err, errlen);
		if (ret)
			return ret;
		for (unsigned i = 0; in->precopy && i < in->mem->nregions;
		     i++) {
			const struct mem_region *reg = &in->mem->regions[i];

			if (fallocate(in->mem->memfd,
				      FALLOC_FL_PUNCH_HOLE |
					  FALLOC_FL_KEEP_SIZE,
				      (off_t)reg->file_offset,
				      (off_t)reg->size) < 0) {
				snprintf(err, errlen,
					 "post-copy: cannot let go of the "
					 "pre-copied memory: %s",
					 strerror(errno));
				return -errno;
			}
		}
		in->precopy = false;
		in->pi = postcopy_in_new(&in->prio, in->spool);
		if (!in->pi) {
			snprintf(err, errlen, "post-copy: out of memory");
			return -ENOMEM;
		}
		return 0;
	}
	if (!in->pi || f->length != 8) {
		snprintf(err, errlen, "%s: a LAZY frame outside post-copy",
			 in->c.peer);
		return -EPROTO;
	}
	len = get_le64(in->buf);
	ret = postcopy_in_lazy(in->pi, f->offset, len, limit, err, errlen);
	if (!ret && f->offset + len > in->spool_end)
		in->spool_end = f->offset + len;
	return ret;
}

/* The second connection of a source that offered post-copy, on @lfd,
 * presenting the WELCOME's token. */
static int accept_priority(struct migrate_in *in, int lfd, char *err,
			   size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1];
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	struct mig_frame f;
	int ret;

	do
		ret = poll(&p, 1, MIG_IDLE_TIMEOUT_MS);
	while (ret < 0 && errno == EINTR);
	if (ret <= 0) {
		snprintf(err, errlen,
			 "%s: no priority connection came for post-copy",
			 in->c.peer);
		return -ETIMEDOUT;
	}
	ret = mig_accept(lfd, &in->addr, &in->prio, err, errlen);
	if (!ret && in->tls)
		ret =
		    mig_tls_start(&in->prio, in->tls, true, NULL, err, errlen);
	if (!ret)
		ret = mig_expect(&in->prio, MIG_PRIORITY, &f, buf, sizeof(buf),
				 err, errlen);
	if (!ret && strcmp(buf, in->token)) {
		snprintf(err, errlen,
			 "%s: the second connection is not the source's",
			 in->prio.peer);
		ret = -EACCES;
	}
	return ret;
}

/* Receives DATA frames (and, when @mem is given, the pre-copy and
 * post-copy frames: PAGES, HASH, SYNC, POSTCOPY, LAZY) until one of type
 * @until; returns its frame. Any other type is refused. */
static int recv_data_until(struct migrate_in *in, uint32_t until,
			   uint64_t limit, struct guest_mem *mem,
			   struct mig_frame *f, char *err, size_t errlen)
{
	for (;;) {
		int ret =
		    mig_recv(&in->c, f, in->buf, MIG_DATA_MAX, err, errlen);

		if (ret)
			return ret;
		/* What the other connections carry (the first round) lands
		 * before the hashes that check it and the records that name
		 * guest memory. */
		if (mem && (f->type == MIG_HASH || f->type == until)) {
			ret = mig_pool_in_wait(in->pool, err, errlen);
			if (ret)
				return ret;
		}
		if (f->type == until)
			return 0;
		/* Nothing of pre-copy after the switch to post-copy. */
		if (in->pi && (f->type == MIG_PAGES || f->type == MIG_HASH ||
			       f->type == MIG_SYNC)) {
			snprintf(err, errlen, "%s: a %s frame after POSTCOPY",
				 in->c.peer, mig_frame_name(f->type));
			return -EPROTO;
		}
		if (f->type == MIG_PAGES && mem) {
			ret = mig_pool_in_order(in->pool, f->offset, f->length,
						err, errlen);
			if (!ret)
				ret = recv_pages(in, f, in->buf, err, errlen);
			in->precopy = true;
			if (ret)
				return ret;
			continue;
		}
		if (f->type == MIG_HASH && mem) {
			ret = recv_hash(in, f, mem, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		/* Every frame before it is applied and checked. */
		if (f->type == MIG_SYNC && mem) {
			ret =
			    mig_send(&in->c, MIG_SYNC, 0, NULL, 0, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		if ((f->type == MIG_POSTCOPY || f->type == MIG_LAZY) && mem) {
			ret = recv_postcopy(in, f, limit, err, errlen);
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
	/* Post-copy needs userfaultfd here: without it the offer is not
	 * taken up, and a source that asks for it is refused by name. */
	in->postcopy_offered = mig_text_has_word(buf, "postcopy") &&
			       !pager_probe(msg, sizeof(msg));
	snprintf(buf, sizeof(buf), "stasis-migrate %u %s%s", MIG_PROTO_VERSION,
		 STASIS_VERSION, in->postcopy_offered ? " postcopy" : "");
	/* The further connections (memory, post-copy's priority one) must
	 * show this to join. */
	if (in->nconn > 1 || in->postcopy_offered) {
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
	in->prio.fd = -1;
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
	/* A source that may switch to post-copy comes back at once for
	 * the priority channel, with the token, then for the memory
	 * connections. */
	if (!ret && in->postcopy_offered)
		ret = accept_priority(in, lfd, err, errlen);
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

	/* Pre-copy's bookkeeping, for memory of the dirty log's pages (a
	 * source with others sends no pre-copy). */
	snap_chunk_geometry(GUEST_MEM_PAGE, &in->chunk_size, &in->block_size);
	for (unsigned i = 0; mem->page_size == GUEST_MEM_PAGE &&
			     i < mem->nregions && i < GUEST_MEM_MAX_REGIONS;
	     i++) {
		uint64_t pages = mem->regions[i].size / GUEST_MEM_PAGE;

		in->got[i] = calloc((pages + 63) / 64, 8);
		in->held[i] = calloc(
		    snap_chunks_for(mem->regions[i].size, GUEST_MEM_PAGE), 1);
		if (!in->got[i] || !in->held[i])
			return recv_fail(err, errlen, -ENOMEM,
					 "cannot make room for the incoming VM",
					 ENOMEM);
	}
	in->mem = mem;
	ret = mig_pool_in_start(in->pool, recv_pages, in, &in->c, err, errlen);
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
	/* After pre-copy the stream's MEMORY records hold only what changed
	 * since: the rest is in guest memory, checked as it came, and the
	 * restore copies in only the chunks the stream holds. */
	if (in->precopy) {
		img->held_memory = true;
		img->copy_memory = true;
		img->ondemand = false;
		for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
			img->held[i] = in->held[i];
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
	if ((release_spool || in->precopy) && ftruncate(in->spool, 0) < 0)
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
	/* Post-copy: the push comes on this connection from RUNNING on. A
	 * destination that cannot take it tells the source nothing more:
	 * the source stays paused, and this one does not run the guest. */
	if (in->pi &&
	    postcopy_in_start(in->pi, &in->c, (enum seccomp_mode)in->seccomp,
			      err, errlen)) {
		postcopy_in_abort(in->pi, err);
		return -EIO;
	}
	/* The source stops for good whatever this says; if the answer is
	 * lost it stays paused and says so. */
	if (mig_send(&in->c, MIG_RUNNING, 0, NULL, 0, err, errlen))
		log_warn("%s; running the VM anyway", err);
	mig_pool_in_close(in->pool);
	in->pool = NULL;
	if (in->pi) {
		log_info("post-copy: the guest runs; its memory comes from %s",
			 in->c.peer);
		return 0;
	}
	mig_close(&in->c);
	return 0;
}

bool migrate_in_postcopy(const struct migrate_in *in)
{
	return in && in->pi;
}

int migrate_in_page_source(void *ctx, struct page_source *src,
			   struct snap_chunk_table *tables, unsigned n)
{
	struct migrate_in *in = ctx;

	return postcopy_in_source(in->pi, src, tables, n);
}

void migrate_in_postcopy_stats(struct migrate_in *in,
			       struct migrate_postcopy_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (in && in->pi && in->switched)
		postcopy_in_stats(in->pi, st);
}

void migrate_in_set_seccomp(struct migrate_in *in, int mode)
{
	in->seccomp = mode;
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
	/* After a failed post-copy a pager thread may still use the
	 * channels: the process ends with them. */
	if (in->pi && !postcopy_in_free(in->pi) && in->switched)
		return;
	mig_close(&in->c);
	mig_close(&in->prio);
	mig_tls_free(in->tls);
	if (in->spool >= 0)
		close(in->spool);
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(in->got[i]);
		free(in->held[i]);
	}
	free(in->buf);
	free(in);
}
