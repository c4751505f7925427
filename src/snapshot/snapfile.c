/* The snapshot file container (docs/snapshot-format.md): atomic writer,
 * bounded reader, memory records that leave out zero and untouched pages. */
#include "snapshot/snapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/file_io.h"
#include "core/le.h"
#include "core/text.h"

/* Header field offsets (docs/snapshot-format.md, "Header"). */
#define HDR_MAGIC 0
#define HDR_FORMAT_VERSION 8
#define HDR_ENDIAN 12
#define HDR_HEADER_SIZE 16
#define HDR_PAGE_SIZE 20
#define HDR_STASIS_VERSION 24
#define HDR_CPU_VENDOR 56
#define HDR_CPU_VENDOR_FIELD 16 /* 13 bytes of string, 3 of padding */
#define HDR_CREATED 72
#define HDR_FLAGS 80
#define HDR_RESERVED 84
#define HDR_CHECKSUM 120

/* Record header field offsets. */
#define REC_TYPE 0
#define REC_VERSION 4
#define REC_FLAGS 6
#define REC_LENGTH 8
#define REC_CHECKSUM 16
#define REC_RESERVED 24

#define MEM_DESC_SIZE 32
/* Version 2: a 64-byte descriptor, then 32 bytes per chunk. */
#define MEM2_DESC_SIZE 64
#define MEM2_ENTRY_SIZE 32
#define END_VERSION 0

/* The reader's scratch buffer: payloads and bitmaps are streamed through
 * it, so verifying a record never holds more than this. */
#define SNAP_BUF_SIZE (1u << 20)
/* Largest single page transfer, small enough that the pages are still in
 * cache when they are hashed right after the syscall. */
#define SNAP_IO_MAX (2u << 20)
#define SNAP_IOV_MAX 64

#define ZERO_BLOCK_SIZE 4096
static const uint8_t zero_block[ZERO_BLOCK_SIZE];
/* snap_record_type_name()'s answer for a type it does not know. */
static const char unknown_type[] = "unknown";

struct snap_writer {
	int fd;
	int dirfd;
	char *path; /* final path, for messages */
	char *base; /* final name inside dirfd */
	char *tmp_name; /* temporary name inside dirfd */
	uint64_t off; /* where the next record starts */
	uint32_t page_size;
	uint32_t format_version; /* what the header says: 1 or 2 */
	uint32_t nrecords;
	int io_error; /* sticky: a record may be half written */
	XXH3_state_t *xxh;
	struct snap_compress compress; /* snap_writer_set_compress() */
	unsigned threads; /* compressing threads, >= 1 */
	/* snap_writer_open_sink(): where the bytes go instead of fd. */
	const struct snap_sink *sink;
	void *sink_ctx;
};

struct snap_reader {
	int fd;
	uint64_t size;
	uint64_t next_off;
	uint32_t index;
	bool done;
	struct snap_header hdr;
	uint8_t *buf; /* bufsize bytes */
	size_t bufsize; /* SNAP_BUF_SIZE, or the file size if smaller */
	XXH3_state_t *xxh;
	bool map_memory; /* snap_reader_set_map_memory() */
	bool layer; /* snap_reader_set_layer(): PARENT chunks allowed */
};

/* Gathers guest pages into one preadv/pwritev, hashing them in file order. */
struct page_io {
	int fd; /* reads */
	struct snap_writer *w; /* writes */
	bool write;
	XXH3_state_t *xxh;
	struct snap_progress *progress;
	uint64_t file_off; /* file offset of iov[0] */
	size_t bytes;
	unsigned n;
	struct iovec iov[SNAP_IOV_MAX];
};

/* Where the parts of a memory record payload lie in the file. */
struct mem_layout {
	struct snap_memory_desc desc;
	uint64_t npages;
	uint64_t bitmap_off;
	uint64_t bitmap_bytes;
	uint64_t pad_off;
	uint64_t pad;
	uint64_t pages_off;
	/* Version 2: the table at bitmap_off (bitmap_bytes long), then pad
	 * bytes up to the data area at pages_off. */
	uint64_t data_bytes;
	bool allow_parent; /* the reader reads a layer */
};

__attribute__((format(printf, 4, 5))) static int
snap_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || !errlen)
		return code;
	n = snprintf(err, errlen, "snapshot: ");
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - n, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* A failure located at a record: "record 5 (MEMORY) at offset 0x1234: ". */
__attribute__((format(printf, 6, 7))) static int
rec_fail(char *err, size_t errlen, int code, const struct snap_record *rec,
	 uint64_t rec_off, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return snap_fail(err, errlen, code,
			 "record %" PRIu32 " (%s) at offset 0x%" PRIx64 ": %s",
			 rec->index, snap_record_type_name(rec->type), rec_off,
			 msg);
}

/* -EIO from a read that met the end of the file means the file shrank
 * under us; say so rather than "Input/output error". */
static const char *io_strerror(int code)
{
	if (code == -ENODATA)
		return "unexpected end of file";
	return strerror(-code);
}

const char *snap_record_type_name(uint32_t type)
{
	switch (type) {
	case SNAP_REC_CONFIG:
		return "CONFIG";
	case SNAP_REC_CPUID:
		return "CPUID";
	case SNAP_REC_VCPU:
		return "VCPU";
	case SNAP_REC_IRQCHIP:
		return "IRQCHIP";
	case SNAP_REC_PIT:
		return "PIT";
	case SNAP_REC_CLOCK:
		return "CLOCK";
	case SNAP_REC_DEVICE:
		return "DEVICE";
	case SNAP_REC_MEMORY:
		return "MEMORY";
	case SNAP_REC_SIGNATURE:
		return "SIGNATURE";
	case SNAP_REC_LINEAGE:
		return "LINEAGE";
	case SNAP_REC_END:
		return "END";
	}
	return unknown_type;
}

int snap_writer_fd(const struct snap_writer *w)
{
	return w->fd;
}

uint64_t snap_writer_offset(const struct snap_writer *w)
{
	return w->off;
}

int snap_reader_fd(const struct snap_reader *r)
{
	return r->fd;
}

static bool type_is_known(uint32_t type)
{
	return snap_record_type_name(type) != unknown_type;
}

/* Callers keep @v below 2^63, so these cannot wrap. */
static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static uint64_t align8(uint64_t v)
{
	return align_up(v, SNAP_ALIGN);
}

static bool page_size_valid(uint32_t ps)
{
	return ps >= SNAP_PAGE_SIZE_MIN && ps <= SNAP_PAGE_SIZE_MAX &&
	       (ps & (ps - 1)) == 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	while (len) {
		size_t n = len < ZERO_BLOCK_SIZE ? len : ZERO_BLOCK_SIZE;

		if (memcmp(p, zero_block, n))
			return false;
		p += n;
		len -= n;
	}
	return true;
}

/* Bitmap bytes for @npages pages: one bit each, padded to 8 bytes. */
static uint64_t bitmap_bytes(uint64_t npages)
{
	return align8((npages + 7) / 8);
}

static bool bit_test(const uint8_t *bm, uint64_t i)
{
	return (bm[i / 8] >> (i % 8)) & 1;
}

/* Finds the first run of set bits in bits [*pos, nbits) of @bm. Returns
 * false when there is none, else true with the run in *pos and *len. */
static bool bitmap_next_run(const uint8_t *bm, uint64_t nbits, uint64_t *pos,
			    uint64_t *len)
{
	uint64_t i = *pos, start;

	while (i < nbits && !bit_test(bm, i))
		i += (i % 8 == 0 && bm[i / 8] == 0) ? 8 : 1;
	if (i >= nbits)
		return false;
	start = i;
	while (i < nbits && bit_test(bm, i))
		i += (i % 8 == 0 && bm[i / 8] == 0xff) ? 8 : 1;
	if (i > nbits)
		i = nbits;
	*pos = start;
	*len = i - start;
	return true;
}

static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return file_rw_full(fd, false, &iov, 1, off);
}

/* Every byte the writer puts out goes through here: to its file, or to
 * the sink a migration gave it. */
static int writer_pwritev(struct snap_writer *w, struct iovec *iov, unsigned n,
			  uint64_t off)
{
	if (w->sink)
		return w->sink->pwritev(w->sink_ctx, iov, n, off);
	return file_rw_full(w->fd, true, iov, n, off);
}

static int writer_write(struct snap_writer *w, const void *buf, size_t len,
			uint64_t off)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return writer_pwritev(w, &iov, 1, off);
}

static int write_zeros(struct snap_writer *w, uint64_t len, uint64_t off)
{
	while (len) {
		size_t n = len < ZERO_BLOCK_SIZE ? len : ZERO_BLOCK_SIZE;
		int ret = writer_write(w, zero_block, n, off);

		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

static void hash_zeros(XXH3_state_t *xxh, uint64_t len)
{
	while (len) {
		size_t n = len < ZERO_BLOCK_SIZE ? len : ZERO_BLOCK_SIZE;

		XXH3_64bits_update(xxh, zero_block, n);
		len -= n;
	}
}

static int page_io_flush(struct page_io *io)
{
	struct iovec iov[SNAP_IOV_MAX];
	int ret;

	if (!io->n)
		return 0;
	/* file_rw_full consumes its vector; keep ours for hashing. */
	memcpy(iov, io->iov, io->n * sizeof(iov[0]));
	ret = io->write ? writer_pwritev(io->w, iov, io->n, io->file_off)
			: file_rw_full(io->fd, false, iov, io->n, io->file_off);
	if (ret)
		return ret;
	for (unsigned i = 0; io->xxh && i < io->n; i++)
		XXH3_64bits_update(io->xxh, io->iov[i].iov_base,
				   io->iov[i].iov_len);
	if (io->progress)
		io->progress->done_bytes += io->bytes;
	io->file_off += io->bytes;
	io->bytes = 0;
	io->n = 0;
	return 0;
}

/* Queues @len bytes of guest memory at @p, next in file order. */
static int page_io_add(struct page_io *io, uint8_t *p, uint64_t len)
{
	while (len) {
		size_t take;
		int ret;

		if (io->n == SNAP_IOV_MAX || io->bytes == SNAP_IO_MAX) {
			ret = page_io_flush(io);
			if (ret)
				return ret;
		}
		take = SNAP_IO_MAX - io->bytes;
		if (take > len)
			take = (size_t)len;
		io->iov[io->n++] =
		    (struct iovec){ .iov_base = p, .iov_len = take };
		io->bytes += take;
		p += take;
		len -= take;
	}
	return 0;
}

static void record_header_encode(uint8_t out[SNAP_RECORD_HEADER_SIZE],
				 uint32_t type, uint16_t version,
				 uint16_t flags, uint64_t length,
				 uint64_t checksum)
{
	memset(out, 0, SNAP_RECORD_HEADER_SIZE);
	put_le32(out + REC_TYPE, type);
	put_le16(out + REC_VERSION, version);
	put_le16(out + REC_FLAGS, flags);
	put_le64(out + REC_LENGTH, length);
	put_le64(out + REC_CHECKSUM, checksum);
}

/* Starts a record checksum: the header with its checksum field zeroed. */
static void record_hash_start(XXH3_state_t *xxh, uint32_t type,
			      uint16_t version, uint16_t flags, uint64_t length)
{
	uint8_t hdr[SNAP_RECORD_HEADER_SIZE];

	record_header_encode(hdr, type, version, flags, length, 0);
	XXH3_64bits_reset(xxh);
	XXH3_64bits_update(xxh, hdr, sizeof(hdr));
}

/* Copies a string into a fixed on-disk field, NUL-padded. The caller has
 * checked that it fits with its NUL. */
static void put_str(uint8_t *field, size_t field_len, const char *s)
{
	memset(field, 0, field_len);
	memcpy(field, s, strnlen(s, field_len));
}

static void header_encode(const struct snap_header *h, uint32_t version,
			  uint8_t out[SNAP_HEADER_SIZE])
{
	memset(out, 0, SNAP_HEADER_SIZE);
	memcpy(out + HDR_MAGIC, SNAP_MAGIC, 8);
	put_le32(out + HDR_FORMAT_VERSION, version);
	put_le32(out + HDR_ENDIAN, SNAP_ENDIAN_MARK);
	put_le32(out + HDR_HEADER_SIZE, SNAP_HEADER_SIZE);
	put_le32(out + HDR_PAGE_SIZE, h->page_size);
	put_str(out + HDR_STASIS_VERSION, sizeof(h->stasis_version),
		h->stasis_version);
	put_str(out + HDR_CPU_VENDOR, sizeof(h->cpu_vendor), h->cpu_vendor);
	put_le64(out + HDR_CREATED, h->created_unix_ns);
	put_le32(out + HDR_FLAGS, h->flags);
	put_le64(out + HDR_CHECKSUM, XXH3_64bits(out, HDR_CHECKSUM));
}

/* A NUL-padded string field: at least one NUL, and only NULs after it. */
static bool str_field_valid(const uint8_t *field, size_t len)
{
	size_t n = strnlen((const char *)field, len);

	return n < len && all_zero(field + n, len - n);
}

static int header_decode(const uint8_t *b, uint64_t file_size,
			 struct snap_header *h, char *err, size_t errlen)
{
	uint32_t v, mark, hsize;

	if (file_size < 8 || memcmp(b + HDR_MAGIC, SNAP_MAGIC, 8))
		return snap_fail(err, errlen, -EINVAL,
				 "bad magic (not a stasis snapshot)");
	if (file_size < SNAP_HEADER_SIZE)
		return snap_fail(err, errlen, -EINVAL,
				 "truncated header (%" PRIu64 " of %d bytes)",
				 file_size, SNAP_HEADER_SIZE);
	/* Magic, byte order and format version sit at these offsets in every
	 * format version, so they are judged before anything else. */
	mark = get_le32(b + HDR_ENDIAN);
	if (mark == __builtin_bswap32(SNAP_ENDIAN_MARK))
		return snap_fail(err, errlen, -EPROTO,
				 "big-endian snapshot (this stasis reads "
				 "little-endian only)");
	if (mark != SNAP_ENDIAN_MARK)
		return snap_fail(err, errlen, -EINVAL,
				 "bad byte-order mark 0x%08" PRIx32, mark);
	v = get_le32(b + HDR_FORMAT_VERSION);
	if (v > SNAP_FORMAT_VERSION || v < SNAP_FORMAT_MIN_VERSION)
		return snap_fail(err, errlen, -EPROTO,
				 "format version %" PRIu32
				 " is %s than this stasis reads (%d..%d)",
				 v, v > SNAP_FORMAT_VERSION ? "newer" : "older",
				 SNAP_FORMAT_MIN_VERSION, SNAP_FORMAT_VERSION);
	hsize = get_le32(b + HDR_HEADER_SIZE);
	if (hsize != SNAP_HEADER_SIZE)
		return snap_fail(err, errlen, -EINVAL,
				 "header size %" PRIu32 ", expected %d", hsize,
				 SNAP_HEADER_SIZE);
	if (XXH3_64bits(b, HDR_CHECKSUM) != get_le64(b + HDR_CHECKSUM))
		return snap_fail(err, errlen, -EBADMSG,
				 "header checksum mismatch");

	memset(h, 0, sizeof(*h));
	h->format_version = v;
	h->page_size = get_le32(b + HDR_PAGE_SIZE);
	h->created_unix_ns = get_le64(b + HDR_CREATED);
	h->flags = get_le32(b + HDR_FLAGS);
	if (!page_size_valid(h->page_size))
		return snap_fail(err, errlen, -EINVAL, "bad page size %" PRIu32,
				 h->page_size);
	if (!str_field_valid(b + HDR_STASIS_VERSION,
			     sizeof(h->stasis_version)) ||
	    !str_field_valid(b + HDR_CPU_VENDOR, HDR_CPU_VENDOR_FIELD))
		return snap_fail(err, errlen, -EINVAL,
				 "header string not NUL-padded");
	if (h->flags)
		return snap_fail(err, errlen, -EINVAL,
				 "unknown header flags 0x%" PRIx32, h->flags);
	if (!all_zero(b + HDR_RESERVED, HDR_CHECKSUM - HDR_RESERVED))
		return snap_fail(err, errlen, -EINVAL,
				 "reserved header bytes are not zero");
	memcpy(h->stasis_version, b + HDR_STASIS_VERSION,
	       sizeof(h->stasis_version));
	memcpy(h->cpu_vendor, b + HDR_CPU_VENDOR, sizeof(h->cpu_vendor));
	return 0;
}

/* Splits @path into its directory and final name. */
static int split_path(const char *path, char **dir, char **base)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		*dir = strdup(".");
		*base = strdup(path);
	} else {
		*dir = slash == path ? strdup("/")
				     : strndup(path, (size_t)(slash - path));
		*base = strdup(slash + 1);
	}
	if (!*dir || !*base) {
		free(*dir);
		free(*base);
		*dir = NULL;
		*base = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* A writer for @hdr whose messages name @path, with nothing open yet. */
static struct snap_writer *writer_new(const char *path,
				      const struct snap_header *hdr, char *err,
				      size_t errlen)
{
	struct snap_writer *w;

	if (!page_size_valid(hdr->page_size) || hdr->flags ||
	    (hdr->format_version && hdr->format_version != 1 &&
	     hdr->format_version != SNAP_FORMAT_VERSION) ||
	    strnlen(hdr->stasis_version, sizeof(hdr->stasis_version)) >=
		sizeof(hdr->stasis_version) ||
	    strnlen(hdr->cpu_vendor, sizeof(hdr->cpu_vendor)) >=
		sizeof(hdr->cpu_vendor)) {
		snap_fail(err, errlen, -EINVAL,
			  "invalid header (page size %" PRIu32
			  ", flags 0x%" PRIx32 ") for %s",
			  hdr->page_size, hdr->flags, path);
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		snap_fail(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	w->fd = -1;
	w->dirfd = -1;
	w->page_size = hdr->page_size;
	w->threads = 1;
	w->format_version =
	    hdr->format_version ? hdr->format_version : SNAP_FORMAT_VERSION;
	w->xxh = XXH3_createState();
	w->path = strdup(path);
	if (!w->xxh || !w->path) {
		snap_fail(err, errlen, -ENOMEM, "out of memory");
		snap_writer_abort(w);
		return NULL;
	}
	return w;
}

/* Writes the header at offset 0 (the writer's first bytes). */
static int writer_put_header(struct snap_writer *w,
			     const struct snap_header *hdr, char *err,
			     size_t errlen)
{
	uint8_t hbuf[SNAP_HEADER_SIZE];
	int ret;

	header_encode(hdr, w->format_version, hbuf);
	ret = writer_write(w, hbuf, sizeof(hbuf), 0);
	if (ret)
		return snap_fail(err, errlen, ret, "writing %s failed: %s",
				 w->path, strerror(-ret));
	w->off = SNAP_HEADER_SIZE;
	return 0;
}

struct snap_writer *snap_writer_open(const char *path,
				     const struct snap_header *hdr, char *err,
				     size_t errlen)
{
	struct snap_writer *w;
	char *dir = NULL, *tmpl = NULL;

	w = writer_new(path, hdr, err, errlen);
	if (!w)
		return NULL;
	if (split_path(path, &dir, &w->base)) {
		snap_fail(err, errlen, -ENOMEM, "out of memory");
		goto free_writer;
	}
	if (!w->base[0]) {
		snap_fail(err, errlen, -EISDIR, "%s names a directory", path);
		goto free_writer;
	}
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0) {
		snap_fail(err, errlen, -errno, "cannot open directory %s: %s",
			  dir, strerror(errno));
		goto free_writer;
	}
	/* A named temporary rather than O_TMPFILE: linkat() cannot replace
	 * an existing snapshot, rename() can, atomically. */
	if (asprintf(&tmpl, "%s/.%s.tmp.XXXXXX", dir, w->base) < 0) {
		tmpl = NULL;
		snap_fail(err, errlen, -ENOMEM, "out of memory");
		goto free_writer;
	}
	/* mkostemp creates the file 0600: it will hold guest memory. */
	w->fd = mkostemp(tmpl, O_CLOEXEC);
	if (w->fd < 0) {
		snap_fail(err, errlen, -errno,
			  "cannot create a temporary file in %s: %s", dir,
			  strerror(errno));
		goto free_writer;
	}
	w->tmp_name = strdup(tmpl + strlen(dir) + 1);
	if (!w->tmp_name) {
		unlink(tmpl);
		snap_fail(err, errlen, -ENOMEM, "out of memory");
		goto free_writer;
	}
	if (writer_put_header(w, hdr, err, errlen))
		goto free_writer;
	free(tmpl);
	free(dir);
	return w;

free_writer:
	/* Closes, removes the temporary file if there is one, frees. */
	snap_writer_abort(w);
	free(tmpl);
	free(dir);
	return NULL;
}

struct snap_writer *snap_writer_open_sink(const struct snap_sink *sink,
					  void *ctx, const char *name,
					  const struct snap_header *hdr,
					  char *err, size_t errlen)
{
	struct snap_writer *w = writer_new(name, hdr, err, errlen);

	if (!w)
		return NULL;
	w->sink = sink;
	w->sink_ctx = ctx;
	if (writer_put_header(w, hdr, err, errlen)) {
		snap_writer_abort(w);
		return NULL;
	}
	return w;
}

void snap_writer_abort(struct snap_writer *w)
{
	if (!w)
		return;
	if (w->sink)
		w->sink->abort(w->sink_ctx);
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp_name)
		unlinkat(w->dirfd, w->tmp_name, 0);
	if (w->dirfd >= 0)
		close(w->dirfd);
	XXH3_freeState(w->xxh);
	free(w->tmp_name);
	free(w->base);
	free(w->path);
	free(w);
}

/* Refuses writes after an I/O error or before CONFIG. */
static int writer_check(struct snap_writer *w, uint32_t type, char *err,
			size_t errlen)
{
	if (w->io_error)
		return snap_fail(err, errlen, w->io_error,
				 "%s: an earlier write failed", w->path);
	if (w->nrecords == 0 && type != SNAP_REC_CONFIG)
		return snap_fail(err, errlen, -EINVAL,
				 "the first record must be CONFIG, not %s",
				 snap_record_type_name(type));
	return 0;
}

static int writer_io_fail(struct snap_writer *w, int code, uint32_t type,
			  char *err, size_t errlen)
{
	w->io_error = code;
	return snap_fail(err, errlen, code,
			 "writing record %" PRIu32 " (%s) of %s failed: %s",
			 w->nrecords, snap_record_type_name(type), w->path,
			 strerror(-code));
}

int snap_write_record(struct snap_writer *w, uint32_t type, uint16_t version,
		      uint16_t flags, const void *data, size_t len, char *err,
		      size_t errlen)
{
	uint8_t hdr[SNAP_RECORD_HEADER_SIZE];
	struct iovec iov[3];
	uint64_t pad = align8(len) - len;
	int ret;

	if (type == SNAP_REC_END || (flags & ~SNAP_REC_OPTIONAL))
		return snap_fail(err, errlen, -EINVAL,
				 "cannot write record type 0x%" PRIx32
				 " with flags 0x%x",
				 type, flags);
	ret = writer_check(w, type, err, errlen);
	if (ret)
		return ret;
	if (len > INT64_MAX - SNAP_RECORD_HEADER_SIZE - SNAP_ALIGN - w->off)
		return writer_io_fail(w, -EFBIG, type, err, errlen);

	record_hash_start(w->xxh, type, version, flags, len);
	XXH3_64bits_update(w->xxh, data, len);
	record_header_encode(hdr, type, version, flags, len,
			     XXH3_64bits_digest(w->xxh));
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
	iov[2] =
	    (struct iovec){ .iov_base = (void *)zero_block, .iov_len = pad };
	ret = writer_pwritev(w, iov, 3, w->off);
	if (ret)
		return writer_io_fail(w, ret, type, err, errlen);
	w->off += SNAP_RECORD_HEADER_SIZE + len + pad;
	w->nrecords++;
	return 0;
}

int snap_scan_region(int memfd, const struct mem_region *reg, uint32_t ps,
		     uint8_t *bm, uint64_t *stored)
{
	uint64_t pos = 0;

	*stored = 0;
	while (pos < reg->size) {
		off_t data, hole;
		uint64_t start, end;

		data = lseek(memfd, (off_t)(reg->file_offset + pos), SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO) /* nothing but hole from pos */
				break;
			return -errno;
		}
		if ((uint64_t)data >= reg->file_offset + reg->size)
			break;
		hole = lseek(memfd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		start =
		    ((uint64_t)data - reg->file_offset) & ~(uint64_t)(ps - 1);
		end = align_up((uint64_t)hole - reg->file_offset, ps);
		if (end > reg->size)
			end = reg->size;
		for (uint64_t p = start / ps; p < end / ps; p++) {
			if (all_zero(reg->host + p * ps, ps))
				continue;
			bm[p / 8] |= (uint8_t)(1u << (p % 8));
			(*stored)++;
		}
		pos = end;
	}
	/* Pages a restore mapped from a snapshot file are not in the memfd
	 * at all. */
	if (reg->file_mapped) {
		for (uint64_t p = 0; p < reg->size / ps; p++) {
			if (!guest_mem_page_file_mapped(reg, p * (ps / 4096)) ||
			    bit_test(bm, p) || all_zero(reg->host + p * ps, ps))
				continue;
			bm[p / 8] |= (uint8_t)(1u << (p % 8));
			(*stored)++;
		}
	}
	return 0;
}

/* Ends a MEMORY record of @version at @rec_off whose payload (@length
 * bytes) is written and hashed: its header goes last, so a header with a
 * valid checksum is never followed by data that was not written. The next
 * record starts at @end, rounded up to 8. */
static int memory_record_seal(struct snap_writer *w, uint16_t version,
			      uint64_t rec_off, uint64_t length, uint64_t end)
{
	uint8_t hdr[SNAP_RECORD_HEADER_SIZE];
	int ret;

	record_header_encode(hdr, SNAP_REC_MEMORY, version, 0, length,
			     XXH3_64bits_digest(w->xxh));
	ret = writer_write(w, hdr, sizeof(hdr), rec_off);
	if (ret)
		return ret;
	w->off = align8(end);
	w->nrecords++;
	return 0;
}

/* Writes one memory record: descriptor, bitmap and padding, then the pages
 * straight from guest memory, then the header with the checksum of all. */
static int write_memory_record(struct snap_writer *w,
			       const struct mem_region *reg, const uint8_t *bm,
			       uint64_t stored, struct snap_progress *progress)
{
	uint64_t ps = w->page_size, npages = reg->size / ps;
	uint64_t rec_off = w->off, bm_off, bm_len, pad_off, pages_off, length;
	uint8_t desc[MEM_DESC_SIZE];
	struct page_io io = {
		.w = w, .write = true, .xxh = w->xxh, .progress = progress
	};
	struct iovec iov[2];
	uint64_t pos = 0, run;
	int ret;

	bm_off = rec_off + SNAP_RECORD_HEADER_SIZE + MEM_DESC_SIZE;
	bm_len = bitmap_bytes(npages);
	pad_off = bm_off + bm_len;
	pages_off = align_up(pad_off, ps);
	length = pages_off + stored * ps - (rec_off + SNAP_RECORD_HEADER_SIZE);
	if (pages_off + stored * ps > INT64_MAX)
		return -EFBIG;

	memset(desc, 0, sizeof(desc));
	put_le64(desc + 0, reg->gpa);
	put_le64(desc + 8, reg->size);
	put_le32(desc + 16, (uint32_t)ps);
	put_le64(desc + 24, stored);

	record_hash_start(w->xxh, SNAP_REC_MEMORY, SNAP_MEMORY_VERSION_V1, 0,
			  length);
	XXH3_64bits_update(w->xxh, desc, sizeof(desc));
	XXH3_64bits_update(w->xxh, bm, bm_len);
	hash_zeros(w->xxh, pages_off - pad_off);
	iov[0] = (struct iovec){ .iov_base = desc, .iov_len = sizeof(desc) };
	iov[1] = (struct iovec){ .iov_base = (void *)bm, .iov_len = bm_len };
	ret = writer_pwritev(w, iov, 2, bm_off - MEM_DESC_SIZE);
	if (!ret)
		ret = write_zeros(w, pages_off - pad_off, pad_off);
	if (ret)
		return ret;

	io.file_off = pages_off;
	while (bitmap_next_run(bm, npages, &pos, &run)) {
		ret = page_io_add(&io, reg->host + pos * ps, run * ps);
		if (ret)
			return ret;
		pos += run;
	}
	ret = page_io_flush(&io);
	if (ret)
		return ret;

	/* The pages end on a page boundary, so this is already 8-aligned. */
	return memory_record_seal(w, SNAP_MEMORY_VERSION_V1, rec_off, length,
				  pages_off + stored * ps);
}

/* Whether any page of [first, first + n) is marked in @bm. */
static bool bitmap_any(const uint8_t *bm, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n; p++)
		if (bit_test(bm, p))
			return true;
	return false;
}

/* The geometry a version 2 record of page size @ps uses. */
static void chunk_geometry(uint64_t ps, uint32_t *chunk, uint32_t *block)
{
	uint64_t cs = ps > SNAP_CHUNK_SIZE ? ps : SNAP_CHUNK_SIZE;
	uint64_t bs = cs / SNAP_CHUNK_MAX_BLOCKS;

	*chunk = (uint32_t)cs;
	*block = (uint32_t)(bs > ps ? bs : ps);
}

/* Bytes of block @j of a chunk of @len bytes (the last one may be short);
 * @j must be inside the chunk. */
static uint64_t block_len(uint64_t len, uint64_t bs, unsigned j)
{
	uint64_t left = len - (uint64_t)j * bs;

	return left < bs ? left : bs;
}

static unsigned chunk_blocks(uint64_t len, uint64_t bs)
{
	return (unsigned)((len + bs - 1) / bs);
}

/* XXH3-64 of the @len bytes of a chunk at @base whose blocks (of @bs
 * bytes) are there where @mask has their bit, and zero elsewhere: those
 * are counted as zeros without being read (reading a memfd hole would
 * allocate memory for it). The one hash of a chunk, for every writer and
 * reader of chunk tables. */
static uint64_t hash_blocks(const uint8_t *base, uint64_t len, uint64_t bs,
			    uint64_t mask, XXH3_state_t *st)
{
	unsigned nb = chunk_blocks(len, bs);

	if (nb == 64 ? mask == ~0ull : mask == (1ull << nb) - 1)
		return XXH3_64bits(base, len);
	XXH3_64bits_reset(st);
	for (unsigned j = 0; j < nb; j++) {
		uint64_t n = block_len(len, bs, j);

		if (mask >> j & 1)
			XXH3_64bits_update(st, base + (uint64_t)j * bs, n);
		else
			hash_zeros(st, n);
	}
	return XXH3_64bits_digest(st);
}

int snap_hash_chunk(const uint8_t *base, uint64_t len, uint32_t block_size,
		    const uint64_t *pages, uint64_t first_page, uint64_t *hash)
{
	uint64_t per = block_size / 4096, mask = 0;
	XXH3_state_t *st;

	if (block_size < 4096 || block_size % 4096 ||
	    len > (uint64_t)block_size * SNAP_CHUNK_MAX_BLOCKS)
		return -EINVAL;
	/* A block is read when any of its pages is marked. */
	for (uint64_t b = 0; b * block_size < len; b++)
		for (uint64_t q = first_page + b * per;
		     q < first_page + (b + 1) * per; q++)
			if (pages[q / 64] >> (q % 64) & 1)
				mask |= 1ull << b;
	st = XXH3_createState();
	if (!st)
		return -ENOMEM;
	*hash = hash_blocks(base, len, block_size, mask, st);
	XXH3_freeState(st);
	return 0;
}

void snap_chunk_geometry(uint32_t page_size, uint32_t *chunk_size,
			 uint32_t *block_size)
{
	chunk_geometry(page_size, chunk_size, block_size);
}

/* Chunks handed to the workers at a time: enough to keep every thread
 * busy, few enough that their compressed copies stay small (16 MiB of
 * 256 KiB chunks) and are written while still in cache. */
#define CHUNK_BATCH SNAP_WRITE_BATCH_CHUNKS

/* One chunk on its way to the file. */
struct chunk_job {
	bool parent; /* not in this layer: held by its parent */
	uint8_t *host; /* the chunk in guest memory */
	uint64_t len; /* its bytes */
	uint64_t mask; /* stored blocks; 0 for a zero chunk */
	uint64_t stored; /* bytes of its stored blocks */
	uint64_t hash;
	uint8_t *out; /* room for the compressed bytes (a chunk) */
	size_t out_len; /* compressed size; 0: stored raw */
};

/* A batch of jobs shared by the workers; each takes the next job. */
struct chunk_batch {
	struct chunk_job *jobs;
	unsigned n;
	uint32_t bs;
	atomic_uint next;
};

/* One worker's own tools: a compressor (NULL: hash only), a buffer to
 * gather a chunk's stored blocks, a hash state. */
struct chunk_worker {
	struct chunk_batch *b;
	struct snap_compressor *z;
	uint8_t *gather;
	XXH3_state_t *xxh;
	pthread_t thread;
	bool started;
};

/* Hashes chunk @j (the whole chunk, blocks left out counted as zeros,
 * without reading, and so allocating, the memfd holes among them) and
 * compresses its stored blocks when that saves at least a sixteenth. */
static void chunk_job_run(struct chunk_worker *wk, struct chunk_job *j)
{
	unsigned nb = chunk_blocks(j->len, wk->b->bs);
	uint64_t bs = wk->b->bs, full = nb == 64 ? ~0ull : (1ull << nb) - 1;
	const uint8_t *src = j->host;

	j->out_len = 0;
	j->hash = hash_blocks(j->host, j->len, wk->b->bs, j->mask, wk->xxh);
	if (!wk->z)
		return;
	if (j->mask != full) {
		uint64_t at = 0;

		for (unsigned k = 0; k < nb; k++) {
			uint64_t n = block_len(j->len, bs, k);

			if (!(j->mask >> k & 1))
				continue;
			memcpy(wk->gather + at, j->host + (uint64_t)k * bs, n);
			at += n;
		}
		src = wk->gather;
	}
	j->out_len = snap_compressor_run(wk->z, src, j->stored, j->out,
					 j->stored - j->stored / 16);
}

static void *chunk_worker_main(void *arg)
{
	struct chunk_worker *wk = arg;
	unsigned i;

	while ((i = atomic_fetch_add(&wk->b->next, 1)) < wk->b->n)
		if (wk->b->jobs[i].mask)
			chunk_job_run(wk, &wk->b->jobs[i]);
	return NULL;
}

/* Runs a batch on @n workers: worker 0 is the calling thread, the others
 * threads of their own for this batch only. A thread that cannot be
 * started leaves its share to the others. */
static void chunk_batch_run(struct chunk_worker *wk, unsigned n)
{
	atomic_store(&wk[0].b->next, 0);
	for (unsigned i = 1; i < n; i++)
		wk[i].started = !pthread_create(&wk[i].thread, NULL,
						chunk_worker_main, &wk[i]);
	chunk_worker_main(&wk[0]);
	for (unsigned i = 1; i < n; i++)
		if (wk[i].started)
			pthread_join(wk[i].thread, NULL);
}

static void chunk_workers_free(struct chunk_worker *wk, unsigned n)
{
	for (unsigned i = 0; wk && i < n; i++) {
		snap_compressor_free(wk[i].z);
		free(wk[i].gather);
		XXH3_freeState(wk[i].xxh);
	}
	free(wk);
}

static struct chunk_worker *chunk_workers_new(struct snap_writer *w,
					      struct chunk_batch *b, unsigned n,
					      uint32_t cs)
{
	struct chunk_worker *wk = calloc(n, sizeof(*wk));
	bool compress = w->compress.codec != SNAP_CODEC_RAW;

	for (unsigned i = 0; wk && i < n; i++) {
		wk[i].b = b;
		wk[i].xxh = XXH3_createState();
		if (compress) {
			wk[i].z = snap_compressor_new(&w->compress);
			wk[i].gather = malloc(cs);
		}
		if (!wk[i].xxh || (compress && (!wk[i].z || !wk[i].gather))) {
			chunk_workers_free(wk, n);
			return NULL;
		}
	}
	return wk;
}

/* Marks in @j the blocks of its chunk at @start that hold data: pages
 * @bm marks (a full save's scan, bit per page of the region), or with
 * @staged the blocks that have a page @bm marks (bit per page from
 * @bm_base on: what the live save's source staged) and are not all zero
 * in the staged copy (a live save cannot scan memory that keeps changing
 * up front). */
static void chunk_job_mask(struct chunk_job *j, const uint8_t *bm,
			   uint64_t bm_base, bool staged, uint64_t start,
			   uint64_t ps, uint32_t bs)
{
	unsigned nb = chunk_blocks(j->len, bs);

	for (unsigned b = 0; b < nb; b++) {
		uint64_t n = block_len(j->len, bs, b);

		if (!bitmap_any(bm, (start - bm_base + (uint64_t)b * bs) / ps,
				n / ps) ||
		    (staged && all_zero(j->host + (uint64_t)b * bs, n)))
			continue;
		j->mask |= 1ull << b;
		j->stored += n;
	}
}

/* Writes one version 2 memory record: the stored blocks of every chunk,
 * raw or compressed, batch after batch in chunk order, then the chunk
 * table, the descriptor and last the header with the checksum of
 * descriptor, table and padding. Without @src the chunks come straight
 * from guest memory and @bm marks the pages that are not zero; with @src
 * each batch is first staged by @src (region @ri) into a buffer of the
 * writer's, and its zero blocks are found there. */
static int write_memory_record_v2(struct snap_writer *w,
				  const struct mem_region *reg, unsigned ri,
				  const uint8_t *bm, const uint64_t *sel,
				  const struct snap_mem_source *src,
				  struct snap_progress *progress)
{
	uint64_t ps = w->page_size, nchunks, table_bytes, pos, length;
	uint64_t rec_off = w->off, table_off, data_off, stored_chunks = 0;
	uint8_t desc[MEM2_DESC_SIZE];
	bool compress = w->compress.codec != SNAP_CODEC_RAW;
	/* Compressed sizes are not what the progress counts (guest bytes):
	 * each batch reports its guest bytes once written. */
	struct page_io io = { .w = w,
			      .write = true,
			      .xxh = NULL,
			      .progress = compress || src ? NULL : progress };
	struct chunk_job jobs[CHUNK_BATCH];
	struct chunk_batch batch = { .jobs = jobs };
	struct chunk_worker *wk = NULL;
	unsigned nworkers = w->threads;
	uint8_t *table = NULL, *outbuf = NULL, *staged = NULL, *present = NULL;
	uint32_t cs, bs;
	struct iovec iov[2];
	int ret;

	if (ps > SNAP_CHUNK_SIZE_MAX)
		return -EINVAL;
	chunk_geometry(ps, &cs, &bs);
	batch.bs = bs;
	nchunks = (reg->size + cs - 1) / cs;
	table_bytes = nchunks * MEM2_ENTRY_SIZE;
	table_off = rec_off + SNAP_RECORD_HEADER_SIZE + MEM2_DESC_SIZE;
	data_off = align_up(table_off + table_bytes, ps);
	if (data_off + reg->size > INT64_MAX)
		return -EFBIG;
	table = calloc(1, table_bytes);
	wk = chunk_workers_new(w, &batch, nworkers, cs);
	if (compress)
		outbuf = malloc((size_t)CHUNK_BATCH * cs);
	if (src) {
		staged = malloc((size_t)CHUNK_BATCH * cs);
		present = malloc(bitmap_bytes((uint64_t)CHUNK_BATCH * cs / ps));
	}
	if (!table || !wk || (compress && !outbuf) ||
	    (src && (!staged || !present))) {
		ret = -ENOMEM;
		goto out;
	}

	io.file_off = data_off;
	pos = data_off;
	for (uint64_t c0 = 0; c0 < nchunks; c0 += CHUNK_BATCH) {
		uint64_t guest_bytes = 0;

		uint64_t batch_off = c0 * cs, batch_len;

		batch.n = (unsigned)(nchunks - c0 < CHUNK_BATCH ? nchunks - c0
								: CHUNK_BATCH);
		batch_len = reg->size - batch_off;
		if (batch_len > (uint64_t)batch.n * cs)
			batch_len = (uint64_t)batch.n * cs;
		if (src) {
			memset(present, 0, bitmap_bytes(batch_len / ps));
			ret = src->stage(src->ctx, ri, batch_off, batch_len,
					 staged, present);
			if (ret)
				goto out;
		}
		for (unsigned k = 0; k < batch.n; k++) {
			uint64_t start = (c0 + k) * cs, len = reg->size - start;
			struct chunk_job *j = &jobs[k];

			if (len > cs)
				len = cs;
			*j = (struct chunk_job){
				.host = src ? staged + (size_t)k * cs
					    : reg->host + start,
				.len = len,
				.out = outbuf ? outbuf + (size_t)k * cs : NULL,
			};
			if (sel &&
			    !(sel[(c0 + k) / 64] >> ((c0 + k) % 64) & 1)) {
				j->parent = true;
				continue;
			}
			if (src)
				chunk_job_mask(j, present, batch_off, true,
					       start, ps, bs);
			else
				chunk_job_mask(j, bm, 0, false, start, ps, bs);
		}
		/* A layer's batch of chunks all left to the parent has
		 * nothing to hash: no threads for it. */
		for (unsigned k = 0; k < batch.n; k++) {
			if (jobs[k].mask) {
				chunk_batch_run(wk, nworkers);
				break;
			}
		}
		for (unsigned k = 0; k < batch.n; k++) {
			uint8_t *e = table + (c0 + k) * MEM2_ENTRY_SIZE;
			struct chunk_job *j = &jobs[k];
			uint64_t len = j->out_len ? j->out_len : j->stored;

			if (j->parent) {
				e[13] = SNAP_CHUNK_PARENT;
				continue;
			}
			if (!j->mask) {
				e[13] = SNAP_CHUNK_ZERO;
				continue;
			}
			if (j->out_len) {
				ret = page_io_add(&io, j->out, j->out_len);
				e[12] = w->compress.codec;
			} else {
				ret = 0;
				for (unsigned b = 0;
				     !ret && b < chunk_blocks(j->len, bs); b++)
					if (j->mask >> b & 1)
						ret = page_io_add(
						    &io,
						    j->host + (uint64_t)b * bs,
						    block_len(j->len, bs, b));
				e[12] = SNAP_CODEC_RAW;
			}
			if (ret)
				goto out;
			put_le64(e + 0, pos - data_off);
			put_le32(e + 8, (uint32_t)len);
			put_le64(e + 16, j->mask);
			put_le64(e + 24, j->hash);
			pos += len;
			guest_bytes += j->stored;
			stored_chunks++;
		}
		/* The queued vectors point into this batch's buffers. */
		ret = page_io_flush(&io);
		if (ret)
			goto out;
		/* A live save counts guest memory gone through, whether
		 * stored or zero: its total is the guest's size. */
		if (src && progress)
			progress->done_bytes += batch_len;
		else if (compress && progress)
			progress->done_bytes += guest_bytes;
	}

	/* Compressed chunks may end anywhere: the next record starts on
	 * the next 8-byte boundary. */
	length = pos - (rec_off + SNAP_RECORD_HEADER_SIZE);
	memset(desc, 0, sizeof(desc));
	put_le64(desc + 0, reg->gpa);
	put_le64(desc + 8, reg->size);
	put_le32(desc + 16, (uint32_t)ps);
	put_le32(desc + 20, cs);
	put_le32(desc + 24, bs);
	put_le64(desc + 32, nchunks);
	put_le64(desc + 40, stored_chunks);
	put_le64(desc + 48, pos - data_off);

	record_hash_start(w->xxh, SNAP_REC_MEMORY, SNAP_MEMORY_VERSION, 0,
			  length);
	XXH3_64bits_update(w->xxh, desc, sizeof(desc));
	XXH3_64bits_update(w->xxh, table, table_bytes);
	hash_zeros(w->xxh, data_off - (table_off + table_bytes));
	iov[0] = (struct iovec){ .iov_base = desc, .iov_len = sizeof(desc) };
	iov[1] = (struct iovec){ .iov_base = table, .iov_len = table_bytes };
	ret = writer_pwritev(w, iov, 2, table_off - MEM2_DESC_SIZE);
	if (!ret)
		ret = write_zeros(w, data_off - (table_off + table_bytes),
				  table_off + table_bytes);
	if (!ret)
		ret = write_zeros(w, align8(pos) - pos, pos);
	if (ret)
		goto out;
	ret = memory_record_seal(w, SNAP_MEMORY_VERSION, rec_off, length, pos);
out:
	chunk_workers_free(wk, nworkers);
	free(staged);
	free(present);
	free(outbuf);
	free(table);
	return ret;
}

int snap_writer_set_compress(struct snap_writer *w,
			     const struct snap_compress *c, unsigned threads)
{
	long cpus;

	if (!snap_codec_name(c->codec) ||
	    (c->codec != SNAP_CODEC_RAW && w->format_version < 2) ||
	    (c->codec == SNAP_CODEC_ZSTD && c->level &&
	     (c->level < SNAP_ZSTD_LEVEL_MIN ||
	      c->level > SNAP_ZSTD_LEVEL_MAX)))
		return -EINVAL;
	w->compress = *c;
	if (!threads) {
		cpus = sysconf(_SC_NPROCESSORS_ONLN);
		threads = cpus > 0 ? (unsigned)cpus : 1;
	}
	w->threads = threads < SNAP_COMPRESS_MAX_THREADS
			 ? threads
			 : SNAP_COMPRESS_MAX_THREADS;
	return 0;
}

/* A live save: nothing is scanned up front (memory keeps changing); each
 * region's batches are staged by @src and their zeros found there. */
static int write_memory_staged(struct snap_writer *w,
			       const struct guest_mem *mem,
			       const struct snap_mem_source *src,
			       struct snap_progress *progress, char *err,
			       size_t errlen)
{
	int ret;

	if (w->format_version < 2)
		return snap_fail(err, errlen, -EINVAL,
				 "a live save needs format 2");
	for (unsigned i = 0; progress && i < mem->nregions; i++)
		progress->total_bytes += mem->regions[i].size;
	for (unsigned i = 0; i < mem->nregions; i++) {
		ret = write_memory_record_v2(w, &mem->regions[i], i, NULL, NULL,
					     src, progress);
		/* A record may be half written: the writer takes no more. */
		if (ret)
			return writer_io_fail(w, ret, SNAP_REC_MEMORY, err,
					      errlen);
	}
	return 0;
}

int snap_write_memory_from(struct snap_writer *w, const struct guest_mem *mem,
			   const struct snap_mem_source *src,
			   struct snap_progress *progress, char *err,
			   size_t errlen)
{
	int ret = writer_check(w, SNAP_REC_MEMORY, err, errlen);

	if (ret)
		return ret;
	if (mem->nregions > GUEST_MEM_MAX_REGIONS)
		return snap_fail(err, errlen, -EINVAL, "bad guest memory");
	if (src)
		return write_memory_staged(w, mem, src, progress, err, errlen);
	return snap_write_memory(w, mem, progress, err, errlen);
}

uint64_t snap_chunks_for(uint64_t size, uint32_t page_size)
{
	uint32_t cs, bs;

	chunk_geometry(page_size, &cs, &bs);
	return (size + cs - 1) / cs;
}

/* The non-zero pages of the chunks @sel selects, into @bm: an increment
 * looks only at what was written, never at the rest of memory. */
static void scan_chunks(const struct mem_region *reg, uint32_t ps,
			const uint64_t *sel, uint8_t *bm, uint64_t *stored)
{
	uint32_t cs, bs;
	uint64_t nchunks;

	chunk_geometry(ps, &cs, &bs);
	nchunks = (reg->size + cs - 1) / cs;
	*stored = 0;
	for (uint64_t c = 0; c < nchunks; c++) {
		uint64_t end = (c + 1) * (uint64_t)cs;

		if (!(sel[c / 64] >> (c % 64) & 1))
			continue;
		if (end > reg->size)
			end = reg->size;
		for (uint64_t p = c * cs / ps; p < end / ps; p++) {
			if (all_zero(reg->host + p * ps, ps))
				continue;
			bm[p / 8] |= (uint8_t)(1u << (p % 8));
			(*stored)++;
		}
	}
}

int snap_write_memory(struct snap_writer *w, const struct guest_mem *mem,
		      struct snap_progress *progress, char *err, size_t errlen)
{
	return snap_write_memory_layer(w, mem, NULL, progress, err, errlen);
}

int snap_write_memory_layer(struct snap_writer *w, const struct guest_mem *mem,
			    const uint64_t *const *chunks,
			    struct snap_progress *progress, char *err,
			    size_t errlen)
{
	uint8_t *bitmaps[GUEST_MEM_MAX_REGIONS] = { NULL };
	uint64_t stored[GUEST_MEM_MAX_REGIONS] = { 0 };
	uint64_t ps = w->page_size, total = 0;
	unsigned i;
	int ret;

	ret = writer_check(w, SNAP_REC_MEMORY, err, errlen);
	if (ret)
		return ret;
	if (mem->nregions > GUEST_MEM_MAX_REGIONS)
		return snap_fail(err, errlen, -EINVAL, "bad guest memory");

	/* First find what to store, so that the progress total is known
	 * before any page is written. */
	for (i = 0; i < mem->nregions; i++) {
		const struct mem_region *reg = &mem->regions[i];

		if (reg->size == 0 || reg->size % ps || reg->gpa % ps) {
			ret = snap_fail(
			    err, errlen, -EINVAL,
			    "RAM region at 0x%" PRIx64
			    " is not aligned to the page size %" PRIu64,
			    reg->gpa, ps);
			goto free_bitmaps;
		}
		bitmaps[i] = calloc(1, bitmap_bytes(reg->size / ps));
		if (!bitmaps[i]) {
			ret = snap_fail(err, errlen, -ENOMEM, "out of memory");
			goto free_bitmaps;
		}
		if (chunks) {
			if (w->format_version < 2) {
				ret = snap_fail(err, errlen, -EINVAL,
						"format 1 has no layers");
				goto free_bitmaps;
			}
			scan_chunks(reg, (uint32_t)ps, chunks[i], bitmaps[i],
				    &stored[i]);
			ret = 0;
		} else {
			ret = snap_scan_region(mem->memfd, reg, (uint32_t)ps,
					       bitmaps[i], &stored[i]);
		}
		if (ret) {
			snap_fail(err, errlen, ret,
				  "cannot scan guest memory: %s",
				  strerror(-ret));
			goto free_bitmaps;
		}
		total += stored[i] * ps;
	}
	if (progress)
		progress->total_bytes += total;

	for (i = 0; i < mem->nregions; i++) {
		if (w->format_version == 1)
			ret =
			    write_memory_record(w, &mem->regions[i], bitmaps[i],
						stored[i], progress);
		else
			ret = write_memory_record_v2(
			    w, &mem->regions[i], i, bitmaps[i],
			    chunks ? chunks[i] : NULL, NULL, progress);
		if (ret) {
			writer_io_fail(w, ret, SNAP_REC_MEMORY, err, errlen);
			goto free_bitmaps;
		}
	}
	ret = 0;

free_bitmaps:
	for (i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		free(bitmaps[i]);
	return ret;
}

int snap_writer_commit(struct snap_writer *w, char *err, size_t errlen)
{
	uint8_t hdr[SNAP_RECORD_HEADER_SIZE];
	int ret;

	ret = writer_check(w, SNAP_REC_END, err, errlen);
	if (ret)
		goto remove_tmp;

	record_hash_start(w->xxh, SNAP_REC_END, END_VERSION, 0, 0);
	record_header_encode(hdr, SNAP_REC_END, END_VERSION, 0, 0,
			     XXH3_64bits_digest(w->xxh));
	ret = writer_write(w, hdr, sizeof(hdr), w->off);
	if (ret) {
		writer_io_fail(w, ret, SNAP_REC_END, err, errlen);
		goto remove_tmp;
	}
	if (w->sink) {
		ret = w->sink->commit(
		    w->sink_ctx, w->off + SNAP_RECORD_HEADER_SIZE, err, errlen);
		/* Committed or not, the sink has been told its outcome. */
		if (!ret)
			w->sink = NULL;
		goto remove_tmp;
	}
	/* The data must be on disk before the name points at it, or a crash
	 * could leave a complete-looking name over missing blocks. */
	if (fsync(w->fd) < 0) {
		ret = snap_fail(err, errlen, -errno, "fsync of %s failed: %s",
				w->path, strerror(errno));
		goto remove_tmp;
	}
	ret = close(w->fd);
	w->fd = -1;
	if (ret < 0) {
		ret = snap_fail(err, errlen, -errno, "closing %s failed: %s",
				w->path, strerror(errno));
		goto remove_tmp;
	}
	if (renameat(w->dirfd, w->tmp_name, w->dirfd, w->base) < 0) {
		ret = snap_fail(err, errlen, -errno, "cannot rename to %s: %s",
				w->path, strerror(errno));
		goto remove_tmp;
	}
	free(w->tmp_name);
	w->tmp_name = NULL; /* renamed: nothing left to remove */
	/* Makes the rename itself durable. */
	if (fsync(w->dirfd) < 0)
		ret =
		    snap_fail(err, errlen, -errno,
			      "%s written, but the directory fsync failed: %s",
			      w->path, strerror(errno));

remove_tmp:
	snap_writer_abort(w);
	return ret;
}

struct snap_reader *snap_reader_open(const char *path, char *err, size_t errlen)
{
	uint8_t hbuf[SNAP_HEADER_SIZE];
	struct snap_reader *r;
	struct stat st;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r) {
		snap_fail(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	r->fd = -1;
	r->xxh = XXH3_createState();
	if (!r->xxh) {
		snap_fail(err, errlen, -ENOMEM, "out of memory");
		goto free_reader;
	}
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		snap_fail(err, errlen, -errno, "cannot open %s: %s", path,
			  strerror(errno));
		goto free_reader;
	}
	if (fstat(r->fd, &st) < 0) {
		snap_fail(err, errlen, -errno, "cannot stat %s: %s", path,
			  strerror(errno));
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		snap_fail(err, errlen, -EINVAL, "%s is not a regular file",
			  path);
		goto close_fd;
	}
	r->size = (uint64_t)st.st_size;

	memset(hbuf, 0, sizeof(hbuf));
	ret = read_full(r->fd, hbuf,
			r->size < SNAP_HEADER_SIZE ? r->size : SNAP_HEADER_SIZE,
			0);
	if (ret) {
		snap_fail(err, errlen, ret, "reading %s: %s", path,
			  io_strerror(ret));
		goto close_fd;
	}
	if (header_decode(hbuf, r->size, &r->hdr, err, errlen))
		goto close_fd;
	/* No chunk is larger than the file: small files get a small buffer
	 * (at least the header's 128 bytes, enough for a descriptor). */
	r->bufsize = r->size < SNAP_BUF_SIZE ? (size_t)r->size : SNAP_BUF_SIZE;
	r->buf = malloc(r->bufsize);
	if (!r->buf) {
		snap_fail(err, errlen, -ENOMEM, "out of memory");
		goto close_fd;
	}
	r->next_off = SNAP_HEADER_SIZE;
	return r;

close_fd:
	close(r->fd);
free_reader:
	XXH3_freeState(r->xxh);
	free(r->buf);
	free(r);
	return NULL;
}

int snap_reader_reload_size(struct snap_reader *r, char *err, size_t errlen)
{
	struct stat st;
	size_t want;
	uint8_t *buf;

	if (fstat(r->fd, &st) < 0)
		return snap_fail(err, errlen, -errno, "cannot stat: %s",
				 strerror(errno));
	if ((uint64_t)st.st_size < r->size)
		return snap_fail(err, errlen, -EINVAL,
				 "the snapshot shrank while it was read");
	r->size = (uint64_t)st.st_size;
	want = r->size < SNAP_BUF_SIZE ? (size_t)r->size : SNAP_BUF_SIZE;
	if (want > r->bufsize) {
		buf = realloc(r->buf, want);
		if (!buf)
			return snap_fail(err, errlen, -ENOMEM, "out of memory");
		r->buf = buf;
		r->bufsize = want;
	}
	return 0;
}

void snap_reader_close(struct snap_reader *r)
{
	if (!r)
		return;
	close(r->fd);
	XXH3_freeState(r->xxh);
	free(r->buf);
	free(r);
}

const struct snap_header *snap_reader_header(const struct snap_reader *r)
{
	return &r->hdr;
}

/* Checks the END record at @off and that nothing follows it. */
static int reader_end(struct snap_reader *r, const struct snap_record *rec,
		      uint64_t off, char *err, size_t errlen)
{
	if (rec->length || rec->flags || rec->version != END_VERSION)
		return rec_fail(err, errlen, -EINVAL, rec, off,
				"END must have version 0, no flags and no "
				"payload");
	record_hash_start(r->xxh, SNAP_REC_END, END_VERSION, 0, 0);
	if (XXH3_64bits_digest(r->xxh) != rec->checksum)
		return rec_fail(err, errlen, -EBADMSG, rec, off,
				"checksum mismatch");
	if (r->size != off + SNAP_RECORD_HEADER_SIZE)
		return rec_fail(err, errlen, -EINVAL, rec, off,
				"data after END (%" PRIu64 " bytes)",
				r->size - off - SNAP_RECORD_HEADER_SIZE);
	r->done = true;
	return 0;
}

int snap_reader_next(struct snap_reader *r, struct snap_record *rec, char *err,
		     size_t errlen)
{
	uint8_t hdr[SNAP_RECORD_HEADER_SIZE], pad[SNAP_ALIGN];
	uint64_t off, left, padded;
	int ret;

	while (!r->done) {
		off = r->next_off;
		left = r->size - off;
		if (left == 0)
			return snap_fail(err, errlen, -EINVAL,
					 "truncated: no END record");
		if (left < SNAP_RECORD_HEADER_SIZE)
			return snap_fail(err, errlen, -EINVAL,
					 "truncated: record %" PRIu32
					 " header at offset 0x%" PRIx64
					 " needs %d bytes, %" PRIu64 " left",
					 r->index, off, SNAP_RECORD_HEADER_SIZE,
					 left);
		ret = read_full(r->fd, hdr, sizeof(hdr), off);
		if (ret)
			return snap_fail(err, errlen, ret,
					 "reading record %" PRIu32
					 " at offset 0x%" PRIx64 ": %s",
					 r->index, off, io_strerror(ret));
		memset(rec, 0, sizeof(*rec));
		rec->type = get_le32(hdr + REC_TYPE);
		rec->version = get_le16(hdr + REC_VERSION);
		rec->flags = get_le16(hdr + REC_FLAGS);
		rec->length = get_le64(hdr + REC_LENGTH);
		rec->checksum = get_le64(hdr + REC_CHECKSUM);
		rec->offset = off + SNAP_RECORD_HEADER_SIZE;
		rec->index = r->index;
		left -= SNAP_RECORD_HEADER_SIZE;

		if (get_le64(hdr + REC_RESERVED))
			return rec_fail(err, errlen, -EINVAL, rec, off,
					"reserved field is not zero");
		if (rec->flags & ~SNAP_REC_OPTIONAL)
			return rec_fail(err, errlen, -EINVAL, rec, off,
					"unknown flags 0x%x", rec->flags);
		if (r->index == 0 && rec->type != SNAP_REC_CONFIG)
			return rec_fail(err, errlen, -EINVAL, rec, off,
					"the first record must be CONFIG");
		if (rec->type == SNAP_REC_END) {
			ret = reader_end(r, rec, off, err, errlen);
			if (ret)
				return ret;
			break;
		}
		if (!type_is_known(rec->type) &&
		    !(rec->flags & SNAP_REC_OPTIONAL))
			return rec_fail(err, errlen, -EINVAL, rec, off,
					"unknown record type 0x%" PRIx32
					" (not optional)",
					rec->type);
		/* Compared before anything is added to the length, so a
		 * length of 2^63 or 2^64-1 cannot wrap. */
		if (rec->length > left)
			return rec_fail(err, errlen, -EINVAL, rec, off,
					"truncated: payload of %" PRIu64
					" bytes, %" PRIu64 " left in the file",
					rec->length, left);
		padded = align8(rec->length);
		if (padded > left)
			return rec_fail(err, errlen, -EINVAL, rec, off,
					"truncated: padding after the payload "
					"is missing");
		/* Padding is outside the checksum, so it must be zero. */
		if (padded != rec->length) {
			ret = read_full(r->fd, pad, padded - rec->length,
					rec->offset + rec->length);
			if (ret)
				return rec_fail(err, errlen, ret, rec, off,
						"%s", io_strerror(ret));
			if (!all_zero(pad, padded - rec->length))
				return rec_fail(err, errlen, -EINVAL, rec, off,
						"padding is not zero");
		}
		r->next_off = rec->offset + padded;
		r->index++;
		if (type_is_known(rec->type))
			return 1;
		/* An unknown optional record: skipped. */
	}
	return 0;
}

/* The caller's record must lie inside the file (it came from next(), but
 * it is the caller's struct). Returns the record header's offset. */
static int check_rec(const struct snap_reader *r, const struct snap_record *rec,
		     char *err, size_t errlen)
{
	if (rec->offset < SNAP_HEADER_SIZE + SNAP_RECORD_HEADER_SIZE ||
	    rec->offset > r->size || rec->length > r->size - rec->offset)
		return snap_fail(err, errlen, -EINVAL,
				 "record %" PRIu32 " lies outside the file",
				 rec->index);
	return 0;
}

static uint64_t rec_header_off(const struct snap_record *rec)
{
	return rec->offset - SNAP_RECORD_HEADER_SIZE;
}

static int checksum_result(struct snap_reader *r, const struct snap_record *rec,
			   char *err, size_t errlen)
{
	if (XXH3_64bits_digest(r->xxh) != rec->checksum)
		return rec_fail(err, errlen, -EBADMSG, rec, rec_header_off(rec),
				"checksum mismatch");
	return 0;
}

/* Reads @len bytes of @rec at file offset @off into @buf, feeding them
 * to the record checksum when @hash. */
static int read_part(struct snap_reader *r, const struct snap_record *rec,
		     void *buf, size_t len, uint64_t off, bool hash, char *err,
		     size_t errlen)
{
	int ret = read_full(r->fd, buf, len, off);

	if (ret)
		return rec_fail(err, errlen, ret, rec, rec_header_off(rec),
				"%s", io_strerror(ret));
	if (hash)
		XXH3_64bits_update(r->xxh, buf, len);
	return 0;
}

/* The next piece of @rec for a streaming loop: the bytes at @off, at most
 * @left of them and at most r->bufsize, read into r->buf. Returns how
 * many, or -errno with @err filled. */
static int64_t read_chunk(struct snap_reader *r, const struct snap_record *rec,
			  uint64_t off, uint64_t left, bool hash, char *err,
			  size_t errlen)
{
	size_t n = left < r->bufsize ? (size_t)left : r->bufsize;
	int ret = read_part(r, rec, r->buf, n, off, hash, err, errlen);

	return ret ? ret : (int64_t)n;
}

int snap_read_payload(struct snap_reader *r, const struct snap_record *rec,
		      size_t max, void **data, char *err, size_t errlen)
{
	void *buf;
	int ret;

	*data = NULL;
	ret = check_rec(r, rec, err, errlen);
	if (ret)
		return ret;
	if (rec->length > max)
		return rec_fail(err, errlen, -EFBIG, rec, rec_header_off(rec),
				"payload of %" PRIu64
				" bytes exceeds the limit of %zu",
				rec->length, max);
	buf = malloc(rec->length ? (size_t)rec->length : 1);
	if (!buf)
		return snap_fail(err, errlen, -ENOMEM, "out of memory");
	record_hash_start(r->xxh, rec->type, rec->version, rec->flags,
			  rec->length);
	ret = read_part(r, rec, buf, (size_t)rec->length, rec->offset, true,
			err, errlen);
	if (!ret)
		ret = checksum_result(r, rec, err, errlen);
	if (ret) {
		free(buf);
		return ret;
	}
	*data = buf;
	return 0;
}

static int mem2_verify(struct snap_reader *r, const struct snap_record *rec,
		       char *err, size_t errlen);

int snap_verify_record(struct snap_reader *r, const struct snap_record *rec,
		       char *err, size_t errlen)
{
	int64_t n;
	int ret;

	if (rec->type == SNAP_REC_MEMORY && rec->version == SNAP_MEMORY_VERSION)
		return mem2_verify(r, rec, err, errlen);

	ret = check_rec(r, rec, err, errlen);
	if (ret)
		return ret;
	record_hash_start(r->xxh, rec->type, rec->version, rec->flags,
			  rec->length);
	for (uint64_t done = 0; done < rec->length; done += (uint64_t)n) {
		n = read_chunk(r, rec, rec->offset + done, rec->length - done,
			       true, err, errlen);
		if (n < 0)
			return (int)n;
	}
	return checksum_result(r, rec, err, errlen);
}

/* A memory record whose version the file's format does not hold. */
static int memory_version_fail(const struct snap_reader *r,
			       const struct snap_record *rec, char *err,
			       size_t errlen)
{
	return rec_fail(err, errlen, -EPROTO, rec, rec_header_off(rec),
			"memory record version %u is not supported in format "
			"version %" PRIu32 " (format 1 holds version 1, "
			"format 2 version 2)",
			rec->version, r->hdr.format_version);
}

/* Decodes and checks a version 2 descriptor into @m, starting the record
 * checksum with it when @hash. */
/* What both MEMORY versions check first: a MEMORY record of @version in
 * a file of @format, long enough for its @desc_size-byte descriptor,
 * which is read into @buf (hashed when @hash). */
static int memory_desc_read(struct snap_reader *r,
			    const struct snap_record *rec, uint16_t version,
			    uint32_t format, uint8_t *buf, size_t desc_size,
			    bool hash, char *err, size_t errlen)
{
	uint64_t roff = rec_header_off(rec);
	int ret;

	ret = check_rec(r, rec, err, errlen);
	if (ret)
		return ret;
	if (rec->type != SNAP_REC_MEMORY)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"not a memory record");
	if (rec->version != version || r->hdr.format_version != format)
		return memory_version_fail(r, rec, err, errlen);
	if (rec->length < desc_size)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"too short for a memory descriptor");
	if (hash)
		record_hash_start(r->xxh, rec->type, rec->version, rec->flags,
				  rec->length);
	return read_part(r, rec, buf, desc_size, rec->offset, hash, err,
			 errlen);
}

/* The region a MEMORY descriptor names: the header's page size, and a
 * non-empty, page-aligned range that does not wrap. */
static int memory_region_check(const struct snap_reader *r,
			       const struct snap_record *rec, uint64_t gpa,
			       uint64_t size, uint64_t ps, char *err,
			       size_t errlen)
{
	uint64_t roff = rec_header_off(rec);

	if (ps != r->hdr.page_size)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"page size %" PRIu64
				" differs from the header's %" PRIu32,
				ps, r->hdr.page_size);
	if (size == 0 || size % ps || gpa % ps || gpa + size < gpa)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"bad region: gpa 0x%" PRIx64 " size 0x%" PRIx64,
				gpa, size);
	return 0;
}

static int mem2_desc(struct snap_reader *r, const struct snap_record *rec,
		     struct mem_layout *m, bool hash, char *err, size_t errlen)
{
	struct snap_memory_desc *d = &m->desc;
	uint64_t roff = rec_header_off(rec), ps, cs, bs, expect;
	uint8_t b[MEM2_DESC_SIZE];
	int ret;

	memset(m, 0, sizeof(*m));
	ret = memory_desc_read(r, rec, SNAP_MEMORY_VERSION, SNAP_FORMAT_VERSION,
			       b, MEM2_DESC_SIZE, hash, err, errlen);
	if (ret)
		return ret;
	memset(m, 0, sizeof(*m));
	d->gpa = get_le64(b + 0);
	d->size = get_le64(b + 8);
	d->page_size = get_le32(b + 16);
	d->chunk_size = get_le32(b + 20);
	d->block_size = get_le32(b + 24);
	d->reserved = get_le32(b + 28);
	d->nchunks = get_le64(b + 32);
	d->stored_chunks = get_le64(b + 40);
	m->data_bytes = get_le64(b + 48);

	ps = d->page_size;
	cs = d->chunk_size;
	bs = d->block_size;
	if (d->reserved || get_le64(b + 56))
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"reserved descriptor field is not zero");
	ret = memory_region_check(r, rec, d->gpa, d->size, ps, err, errlen);
	if (ret)
		return ret;
	if (cs < SNAP_CHUNK_SIZE_MIN || cs > SNAP_CHUNK_SIZE_MAX ||
	    (cs & (cs - 1)) || cs < ps || bs < ps || bs > cs ||
	    (bs & (bs - 1)) || cs / bs > SNAP_CHUNK_MAX_BLOCKS)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"bad chunk geometry: chunk %" PRIu64
				" bytes, block %" PRIu64 " bytes",
				cs, bs);
	if (d->nchunks != (d->size - 1) / cs + 1 ||
	    d->stored_chunks > d->nchunks)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"%" PRIu64 " chunks (%" PRIu64
				" stored) for a region of 0x%" PRIx64 " bytes",
				d->nchunks, d->stored_chunks, d->size);
	/* nchunks < 2^48 (size < 2^64, chunks >= 2^16): no term wraps,
	 * only their sum can. */
	m->allow_parent = r->layer;
	m->npages = d->size / ps;
	m->bitmap_off = rec->offset + MEM2_DESC_SIZE;
	m->bitmap_bytes = d->nchunks * MEM2_ENTRY_SIZE;
	if (m->bitmap_bytes > r->size)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"truncated: a chunk table of %" PRIu64
				" bytes does not fit in the file",
				m->bitmap_bytes);
	m->pad_off = m->bitmap_off + m->bitmap_bytes;
	m->pages_off = align_up(m->pad_off, ps);
	m->pad = m->pages_off - m->pad_off;
	if (__builtin_add_overflow(MEM2_DESC_SIZE + m->bitmap_bytes + m->pad,
				   m->data_bytes, &expect) ||
	    expect != rec->length)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"length %" PRIu64
				" does not match the descriptor",
				rec->length);
	return 0;
}

uint64_t snap_chunk_len(const struct snap_chunk_table *t, uint64_t idx)
{
	uint64_t left = t->size - idx * t->chunk_size;

	return left < t->chunk_size ? left : t->chunk_size;
}

/* Decodes table entry @idx at @e and checks it against the layout and the
 * running data offset *@next (relative to the data area). */
static int mem2_entry(const struct snap_record *rec, const struct mem_layout *m,
		      uint64_t idx, const uint8_t *e, uint64_t *next,
		      uint64_t *stored, struct snap_chunk *out, char *err,
		      size_t errlen)
{
	const struct snap_memory_desc *d = &m->desc;
	uint64_t roff = rec_header_off(rec), len, expect = 0;
	uint64_t bs = d->block_size;
	struct snap_chunk c = {
		.file_off = get_le64(e + 0),
		.stored_len = get_le32(e + 8),
		.codec = e[12],
		.flags = e[13],
		.block_mask = get_le64(e + 16),
		.hash = get_le64(e + 24),
	};
	unsigned nb;

	len = d->size - idx * d->chunk_size;
	if (len > d->chunk_size)
		len = d->chunk_size;
	nb = chunk_blocks(len, bs);
	if (c.flags & SNAP_CHUNK_PARENT) {
		if (!m->allow_parent)
			return rec_fail(err, errlen, -EPROTO, rec, roff,
					"chunk %" PRIu64
					" is held by a parent snapshot, which "
					"this file does not name",
					idx);
		if (c.flags != SNAP_CHUNK_PARENT || c.file_off ||
		    c.stored_len || c.codec || c.block_mask || c.hash ||
		    get_le16(e + 14))
			return rec_fail(err, errlen, -EINVAL, rec, roff,
					"parent chunk %" PRIu64
					" has data fields set",
					idx);
		*out = c;
		return 0;
	}
	if (c.flags & ~SNAP_CHUNK_ZERO || get_le16(e + 14))
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"chunk %" PRIu64
				": unknown flags 0x%x or reserved bits set",
				idx, c.flags);
	if (c.flags & SNAP_CHUNK_ZERO) {
		if (c.file_off || c.stored_len || c.codec || c.block_mask ||
		    c.hash)
			return rec_fail(
			    err, errlen, -EINVAL, rec, roff,
			    "zero chunk %" PRIu64 " has data fields set", idx);
		*out = c;
		return 0;
	}
	if (!snap_codec_name(c.codec))
		return rec_fail(err, errlen, -EPROTO, rec, roff,
				"chunk %" PRIu64
				": unknown codec %u (this stasis reads none, "
				"lz4 and zstd)",
				idx, c.codec);
	if (!c.block_mask || (nb < 64 && c.block_mask >> nb))
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"chunk %" PRIu64 ": bad block mask 0x%" PRIx64,
				idx, c.block_mask);
	for (unsigned j = 0; j < nb; j++)
		if (c.block_mask >> j & 1)
			expect += block_len(len, bs, j);
	c.raw_len = (uint32_t)expect;
	/* Chunks follow each other with no gap, in chunk order; a raw one
	 * holds exactly its blocks, a compressed one fewer bytes (a writer
	 * stores raw what does not shrink), so none exceeds a chunk. */
	if ((c.codec == SNAP_CODEC_RAW
		 ? c.stored_len != expect
		 : !c.stored_len || c.stored_len >= expect) ||
	    c.file_off != *next || c.stored_len > m->data_bytes - *next)
		return rec_fail(
		    err, errlen, -EINVAL, rec, roff,
		    "chunk %" PRIu64 ": %" PRIu32
		    " bytes (%s) at data offset 0x%" PRIx64
		    ", expected %s%" PRIu64 " at 0x%" PRIx64,
		    idx, c.stored_len, snap_codec_name(c.codec), c.file_off,
		    c.codec == SNAP_CODEC_RAW ? "" : "1..",
		    c.codec == SNAP_CODEC_RAW ? expect : expect - 1, *next);
	*next += c.stored_len;
	(*stored)++;
	c.file_off += m->pages_off;
	*out = c;
	return 0;
}

static int verify_one_chunk(struct snap_reader *r, const struct mem_layout *m,
			    uint64_t idx, const struct snap_chunk *c,
			    uint8_t *buf, char *err, size_t errlen);

/* Streams the chunk table and the padding after it through r->buf,
 * checking every entry (into @out when not NULL) and feeding the record
 * checksum when @hash. With @verify_buf (one chunk's bytes), each chunk's
 * data is read into it and checked as its entry goes by. */
static int mem2_table(struct snap_reader *r, const struct snap_record *rec,
		      struct mem_layout *m, bool hash, struct snap_chunk *out,
		      uint8_t *verify_buf, char *err, size_t errlen)
{
	uint64_t roff = rec_header_off(rec), next = 0, stored = 0, idx = 0;
	/* Whole entries per read; the buffer holds at least one (it is at
	 * least as large as the 128-byte header). */
	uint64_t per = r->bufsize / MEM2_ENTRY_SIZE;
	int64_t n;
	int ret;

	for (uint64_t done = 0; done < m->bitmap_bytes; done += (uint64_t)n) {
		uint64_t left = m->bitmap_bytes - done;

		if (left > per * MEM2_ENTRY_SIZE)
			left = per * MEM2_ENTRY_SIZE;
		n = read_chunk(r, rec, m->bitmap_off + done, left, hash, err,
			       errlen);
		if (n < 0)
			return (int)n;
		for (int64_t i = 0; i < n; i += MEM2_ENTRY_SIZE, idx++) {
			struct snap_chunk c;

			ret = mem2_entry(rec, m, idx, r->buf + i, &next,
					 &stored, &c, err, errlen);
			if (!ret && verify_buf &&
			    !(c.flags & SNAP_CHUNK_PARENT))
				ret = verify_one_chunk(r, m, idx, &c,
						       verify_buf, err, errlen);
			if (ret)
				return ret;
			if (out)
				out[idx] = c;
			if (c.flags & SNAP_CHUNK_PARENT)
				m->desc.parent_chunks++;
			else if (!(c.flags & SNAP_CHUNK_ZERO)) {
				m->desc.raw_bytes += c.raw_len;
				m->desc.codec_chunks[c.codec]++;
			}
		}
	}
	if (stored != m->desc.stored_chunks || next != m->data_bytes)
		return rec_fail(
		    err, errlen, -EINVAL, rec, roff,
		    "the table holds %" PRIu64 " chunks of %" PRIu64
		    " bytes, the descriptor says %" PRIu64 " of %" PRIu64,
		    stored, next, m->desc.stored_chunks, m->data_bytes);
	m->desc.stored_bytes = m->data_bytes;
	m->desc.stored_pages = m->data_bytes / m->desc.page_size;
	for (uint64_t done = 0; done < m->pad; done += (uint64_t)n) {
		n = read_chunk(r, rec, m->pad_off + done, m->pad - done, hash,
			       err, errlen);
		if (n < 0)
			return (int)n;
		if (!all_zero(r->buf, (size_t)n))
			return rec_fail(err, errlen, -EINVAL, rec, roff,
					"padding before the chunks is not "
					"zero");
	}
	return 0;
}

/* Checks the record checksum of a version 2 record whose descriptor
 * mem2_desc() fed to it: table and padding are hashed as bytes first, so
 * that a damaged table is reported as a checksum mismatch, and decoded
 * only once known intact. */
static int mem2_checksum(struct snap_reader *r, const struct snap_record *rec,
			 const struct mem_layout *m, char *err, size_t errlen)
{
	uint64_t left = m->bitmap_bytes + m->pad;
	int64_t n;

	for (uint64_t done = 0; done < left; done += (uint64_t)n) {
		n = read_chunk(r, rec, m->bitmap_off + done, left - done, true,
			       err, errlen);
		if (n < 0)
			return (int)n;
	}
	return checksum_result(r, rec, err, errlen);
}

void snap_chunk_table_free(struct snap_chunk_table *t)
{
	free(t->chunks);
	memset(t, 0, sizeof(*t));
	t->fd = -1;
}

int snap_read_chunk_table(struct snap_reader *r, const struct snap_record *rec,
			  gpa_t gpa, uint64_t size, struct snap_chunk_table *t,
			  char *err, size_t errlen)
{
	struct mem_layout m;
	int ret;

	memset(t, 0, sizeof(*t));
	t->fd = -1;
	ret = mem2_desc(r, rec, &m, true, err, errlen);
	if (ret)
		return ret;
	/* The table is allocated only for the VM's own region, so its size
	 * follows the VM's memory, not a number in the file. */
	if (m.desc.gpa != gpa || m.desc.size != size)
		return rec_fail(err, errlen, -EINVAL, rec, rec_header_off(rec),
				"region gpa 0x%" PRIx64 " size 0x%" PRIx64
				" matches no RAM region of this VM",
				m.desc.gpa, m.desc.size);
	ret = mem2_checksum(r, rec, &m, err, errlen);
	if (ret)
		return ret;
	t->chunks = calloc(m.desc.nchunks, sizeof(*t->chunks));
	if (!t->chunks)
		return snap_fail(err, errlen, -ENOMEM, "out of memory");
	ret = mem2_table(r, rec, &m, false, t->chunks, NULL, err, errlen);
	if (ret) {
		snap_chunk_table_free(t);
		return ret;
	}
	t->fd = r->fd;
	t->rec_index = rec->index;
	t->gpa = m.desc.gpa;
	t->size = m.desc.size;
	t->page_size = m.desc.page_size;
	t->chunk_size = m.desc.chunk_size;
	t->block_size = m.desc.block_size;
	t->nchunks = m.desc.nchunks;
	t->stored_chunks = m.desc.stored_chunks;
	t->data_off = m.pages_off;
	t->data_bytes = m.data_bytes;
	return 0;
}

static int chunk_fd(const struct snap_chunk_table *t,
		    const struct snap_chunk *c)
{
	return t->fds ? t->fds[c->layer] : t->fd;
}

/* One line about chunk @idx: its guest range and where it is in the file
 * (and which file, in a chain). */
static int chunk_fail(const struct snap_chunk_table *t, uint64_t idx, char *err,
		      size_t errlen, int code, const char *what)
{
	uint64_t gpa = t->gpa + idx * t->chunk_size;
	const struct snap_chunk *c = &t->chunks[idx];
	char where[160] = "";

	if (t->names) {
		char q[128];

		snprintf(where, sizeof(where), " of %s",
			 text_escape(q, sizeof(q), t->names[c->layer],
				     strlen(t->names[c->layer])));
	}
	return snap_fail(err, errlen, code,
			 "memory chunk %" PRIu64 " (guest 0x%" PRIx64
			 "-0x%" PRIx64 ") at file offset 0x%" PRIx64 "%s: %s",
			 t->chunk_base + idx, gpa,
			 gpa + snap_chunk_len(t, idx) - 1, c->file_off, where,
			 what);
}

/* XXH3-64 of chunk @idx whose stored blocks are at their place in @base;
 * the others count as zero. */
static uint64_t chunk_hash(const struct snap_chunk_table *t, uint64_t idx,
			   const uint8_t *base, XXH3_state_t *st)
{
	return hash_blocks(base, snap_chunk_len(t, idx), t->block_size,
			   t->chunks[idx].block_mask, st);
}

/* Checks chunk @idx, whose stored blocks are in place at @base. */
static int chunk_check(const struct snap_chunk_table *t, uint64_t idx,
		       const uint8_t *base, char *err, size_t errlen)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t h;

	if (!st)
		return snap_fail(err, errlen, -ENOMEM, "out of memory");
	h = chunk_hash(t, idx, base, st);
	XXH3_freeState(st);
	if (h != t->chunks[idx].hash)
		return chunk_fail(t, idx, err, errlen, -EBADMSG,
				  "checksum mismatch");
	return 0;
}

/* Scatters the @len bytes of stored blocks at @src to their places in
 * chunk @idx at @dst, zero-filling the others when @fill_zeros. */
static void chunk_scatter(const struct snap_chunk_table *t, uint64_t idx,
			  const uint8_t *src, uint8_t *dst, bool fill_zeros)
{
	uint64_t len = snap_chunk_len(t, idx), bs = t->block_size;
	uint64_t mask = t->chunks[idx].block_mask;

	for (unsigned j = 0; j < chunk_blocks(len, bs); j++) {
		uint64_t bl = block_len(len, bs, j);
		uint8_t *p = dst + (uint64_t)j * bs;

		if (mask >> j & 1) {
			memcpy(p, src, bl);
			src += bl;
		} else if (fill_zeros) {
			memset(p, 0, bl);
		}
	}
}

/* A compressed chunk: its stored bytes read into a buffer of their own,
 * decompressed (straight into @dst when every block is stored), then
 * checked against the hash of the uncompressed content. */
static int read_chunk_compressed(const struct snap_chunk_table *t, uint64_t idx,
				 uint8_t *dst, bool fill_zeros, char *err,
				 size_t errlen)
{
	const struct snap_chunk *c = &t->chunks[idx];
	bool direct = c->raw_len == snap_chunk_len(t, idx);
	uint8_t *in, *raw = NULL;
	char what[96];
	size_t got;
	int ret;

	if (!snap_codec_name(c->codec))
		return chunk_fail(t, idx, err, errlen, -EPROTO,
				  "unknown codec");
	/* The table reader bounds both sizes by the chunk size. */
	in = malloc(c->stored_len);
	if (!direct)
		raw = malloc(c->raw_len);
	if (!in || (!direct && !raw)) {
		ret = snap_fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	ret = read_full(chunk_fd(t, c), in, c->stored_len, c->file_off);
	if (ret == -ENODATA) {
		ret = chunk_fail(t, idx, err, errlen, ret,
				 "unexpected end of file (the snapshot was "
				 "truncated)");
		goto out;
	}
	if (ret) {
		ret = chunk_fail(t, idx, err, errlen, ret, strerror(-ret));
		goto out;
	}
	ret = snap_codec_decompress(c->codec, in, c->stored_len,
				    direct ? dst : raw, c->raw_len, &got);
	if (ret) {
		if (got && got != c->raw_len)
			snprintf(what, sizeof(what),
				 "%s data decompresses to %zu bytes, not "
				 "%" PRIu32,
				 snap_codec_name(c->codec), got, c->raw_len);
		else
			snprintf(what, sizeof(what), "damaged %s data",
				 snap_codec_name(c->codec));
		ret = chunk_fail(t, idx, err, errlen, ret, what);
		goto out;
	}
	if (!direct)
		chunk_scatter(t, idx, raw, dst, fill_zeros);
	ret = chunk_check(t, idx, dst, err, errlen);
out:
	free(raw);
	free(in);
	return ret;
}

int snap_read_chunk(const struct snap_chunk_table *t, uint64_t idx,
		    uint8_t *dst, bool fill_zeros, char *err, size_t errlen)
{
	struct iovec iov[SNAP_CHUNK_MAX_BLOCKS / 2 + 1];
	const struct snap_chunk *c;
	uint64_t len, bs = t->block_size;
	unsigned nb, n = 0;
	int ret;

	if (idx >= t->nchunks)
		return snap_fail(err, errlen, -EINVAL,
				 "memory chunk %" PRIu64 " out of range", idx);
	c = &t->chunks[idx];
	len = snap_chunk_len(t, idx);
	nb = chunk_blocks(len, bs);
	if (c->flags & SNAP_CHUNK_ZERO) {
		if (fill_zeros)
			memset(dst, 0, len);
		return 0;
	}
	if (c->flags & SNAP_CHUNK_PARENT)
		return chunk_fail(t, idx, err, errlen, -EPROTO,
				  "held by a parent layer that was not "
				  "resolved");
	if (c->codec != SNAP_CODEC_RAW)
		return read_chunk_compressed(t, idx, dst, fill_zeros, err,
					     errlen);
	/* One vector element per run of stored blocks: at most 32. */
	for (unsigned j = 0; j < nb; j++) {
		uint8_t *p = dst + (uint64_t)j * bs;
		uint64_t bl = block_len(len, bs, j);

		if (!(c->block_mask >> j & 1)) {
			if (fill_zeros)
				memset(p, 0, bl);
			continue;
		}
		if (n &&
		    (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == p)
			iov[n - 1].iov_len += bl;
		else
			iov[n++] =
			    (struct iovec){ .iov_base = p, .iov_len = bl };
	}
	ret = file_rw_full(chunk_fd(t, c), false, iov, n, c->file_off);
	if (ret == -ENODATA)
		return chunk_fail(t, idx, err, errlen, ret,
				  "unexpected end of file (the snapshot was "
				  "truncated)");
	if (ret)
		return chunk_fail(t, idx, err, errlen, ret, strerror(-ret));
	return chunk_check(t, idx, dst, err, errlen);
}

/* Reads chunk @idx, decoded as @c, into @buf and checks it: a table of
 * that one chunk, so that verifying allocates nothing that grows with the
 * file. */
static int verify_one_chunk(struct snap_reader *r, const struct mem_layout *m,
			    uint64_t idx, const struct snap_chunk *c,
			    uint8_t *buf, char *err, size_t errlen)
{
	uint64_t start = idx * m->desc.chunk_size;
	struct snap_chunk one = *c;
	struct snap_chunk_table t = {
		.fd = r->fd,
		.gpa = m->desc.gpa + start,
		.size = m->desc.size - start < m->desc.chunk_size
			    ? m->desc.size - start
			    : m->desc.chunk_size,
		.page_size = m->desc.page_size,
		.chunk_size = m->desc.chunk_size,
		.block_size = m->desc.block_size,
		.nchunks = 1,
		.chunk_base = idx,
		.chunks = &one,
	};

	return snap_read_chunk(&t, 0, buf, true, err, errlen);
}

/* Checks a version 2 record: descriptor, table and padding against the
 * record checksum, then every chunk against its own. */
static int mem2_verify(struct snap_reader *r, const struct snap_record *rec,
		       char *err, size_t errlen)
{
	struct mem_layout m;
	uint8_t *buf;
	int ret;

	ret = mem2_desc(r, rec, &m, true, err, errlen);
	if (!ret)
		ret = mem2_checksum(r, rec, &m, err, errlen);
	if (ret)
		return ret;
	buf = malloc(m.desc.chunk_size);
	if (!buf)
		return snap_fail(err, errlen, -ENOMEM, "out of memory");
	ret = mem2_desc(r, rec, &m, false, err, errlen);
	if (!ret)
		ret = mem2_table(r, rec, &m, false, NULL, buf, err, errlen);
	free(buf);
	return ret;
}

/* Decodes and checks a memory record's descriptor, bitmap and padding,
 * streaming them through r->buf (and into the checksum when @hash). */
static int memory_layout(struct snap_reader *r, const struct snap_record *rec,
			 struct mem_layout *m, bool hash, char *err,
			 size_t errlen)
{
	struct snap_memory_desc *d = &m->desc;
	uint64_t roff = rec_header_off(rec), done, ones = 0, expect;
	uint64_t ps;
	int64_t n;
	int ret;

	ret = memory_desc_read(r, rec, SNAP_MEMORY_VERSION_V1, 1, r->buf,
			       MEM_DESC_SIZE, hash, err, errlen);
	if (ret)
		return ret;
	d->gpa = get_le64(r->buf + 0);
	d->size = get_le64(r->buf + 8);
	d->page_size = get_le32(r->buf + 16);
	d->reserved = get_le32(r->buf + 20);
	d->stored_pages = get_le64(r->buf + 24);

	ps = d->page_size;
	if (d->reserved)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"reserved descriptor field is not zero");
	ret = memory_region_check(r, rec, d->gpa, d->size, ps, err, errlen);
	if (ret)
		return ret;
	m->npages = d->size / ps;
	if (d->stored_pages > m->npages)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"%" PRIu64
				" stored pages in a region of %" PRIu64,
				d->stored_pages, m->npages);
	/* All terms are bounded (bitmap < 2^62, offsets < 2^63, pages <=
	 * size), only their sum can wrap. */
	m->bitmap_off = rec->offset + MEM_DESC_SIZE;
	m->bitmap_bytes = bitmap_bytes(m->npages);
	m->pad_off = m->bitmap_off + m->bitmap_bytes;
	m->pages_off = align_up(m->pad_off, ps);
	m->pad = m->pages_off - m->pad_off;
	if (__builtin_add_overflow(MEM_DESC_SIZE + m->bitmap_bytes + m->pad,
				   d->stored_pages * ps, &expect) ||
	    expect != rec->length)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"length %" PRIu64
				" does not match the descriptor",
				rec->length);

	/* expect == length <= the file size: these reads are in bounds. */
	for (done = 0; done < m->bitmap_bytes; done += (uint64_t)n) {
		n = read_chunk(r, rec, m->bitmap_off + done,
			       m->bitmap_bytes - done, hash, err, errlen);
		if (n < 0)
			return (int)n;
		for (int64_t i = 0; i < n; i++) {
			uint64_t first = (done + i) * 8;
			unsigned valid = 0xff;

			if (first >= m->npages)
				valid = 0;
			else if (m->npages - first < 8)
				valid = (1u << (m->npages - first)) - 1;
			if (r->buf[i] & ~valid)
				return rec_fail(err, errlen, -EINVAL, rec, roff,
						"bitmap has bits past the "
						"region's last page");
			ones += (uint64_t)__builtin_popcount(r->buf[i]);
		}
	}
	if (ones != d->stored_pages)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"bitmap marks %" PRIu64
				" pages, the descriptor says %" PRIu64,
				ones, d->stored_pages);
	for (done = 0; done < m->pad; done += (uint64_t)n) {
		n = read_chunk(r, rec, m->pad_off + done, m->pad - done, hash,
			       err, errlen);
		if (n < 0)
			return (int)n;
		if (!all_zero(r->buf, (size_t)n))
			return rec_fail(err, errlen, -EINVAL, rec, roff,
					"padding before the pages is not zero");
	}
	return 0;
}

int snap_read_memory_desc(struct snap_reader *r, const struct snap_record *rec,
			  struct snap_memory_desc *desc, char *err,
			  size_t errlen)
{
	struct mem_layout m;
	int ret;

	if (rec->type == SNAP_REC_MEMORY &&
	    rec->version == SNAP_MEMORY_VERSION) {
		ret = mem2_desc(r, rec, &m, false, err, errlen);
		if (!ret)
			ret = mem2_table(r, rec, &m, false, NULL, NULL, err,
					 errlen);
	} else {
		ret = memory_layout(r, rec, &m, false, err, errlen);
		m.desc.stored_bytes = m.desc.stored_pages * m.desc.page_size;
	}
	if (ret)
		return ret;
	*desc = m.desc;
	return 0;
}

/* Runs of at least this many pages are mapped from the file rather than
 * copied, and at most SNAP_MAP_MAX_RUNS of them per region, which bounds
 * the number of mappings (each run splits the memfd mapping in two). */
#define SNAP_MAP_MIN_PAGES 16
#define SNAP_MAP_MAX_RUNS 8192

/* Maps one run of stored pages from the file over guest memory, after
 * queued copies (their file offsets come first), and feeds it to the
 * checksum through the new mapping: page-cache pages, nothing copied. */
static int map_run(struct page_io *io, struct guest_mem *mem, gpa_t gpa,
		   uint8_t *host, uint64_t len)
{
	int ret = page_io_flush(io);

	if (ret)
		return ret;
	ret = guest_mem_map_file(mem, gpa, len, io->fd, io->file_off);
	if (ret)
		return ret;
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < SNAP_IO_MAX ? (size_t)(len - done)
						    : SNAP_IO_MAX;

		XXH3_64bits_update(io->xxh, host + done, n);
		done += n;
		if (io->progress)
			io->progress->done_bytes += n;
	}
	io->file_off += len;
	return 0;
}

int snap_read_memory_table(struct snap_reader *r, const struct snap_record *rec,
			   struct guest_mem *mem, struct snap_chunk_table *t,
			   unsigned *region, char *err, size_t errlen)
{
	const struct mem_region *reg = NULL;
	struct mem_layout m;
	unsigned i;
	int ret;

	ret = mem2_desc(r, rec, &m, false, err, errlen);
	if (ret)
		return ret;
	for (i = 0; i < mem->nregions && i < GUEST_MEM_MAX_REGIONS; i++) {
		if (mem->regions[i].gpa == m.desc.gpa &&
		    mem->regions[i].size == m.desc.size) {
			reg = &mem->regions[i];
			break;
		}
	}
	if (!reg)
		return rec_fail(err, errlen, -EINVAL, rec, rec_header_off(rec),
				"region gpa 0x%" PRIx64 " size 0x%" PRIx64
				" matches no RAM region of this VM",
				m.desc.gpa, m.desc.size);
	ret =
	    snap_read_chunk_table(r, rec, reg->gpa, reg->size, t, err, errlen);
	if (ret)
		return ret;
	/* Blocks not in the file must read as zero; punching the region
	 * makes them so without allocating memory, whatever it held. */
	if (mem->memfd >= 0 &&
	    fallocate(mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)reg->file_offset, (off_t)reg->size) < 0) {
		ret =
		    snap_fail(err, errlen, -errno,
			      "cannot clear guest memory: %s", strerror(errno));
		snap_chunk_table_free(t);
		return ret;
	}
	if (mem->memfd < 0)
		memset(reg->host, 0, reg->size);
	*region = i;
	return 0;
}

/* A run of stored blocks, contiguous in both the file and guest memory,
 * waiting to be mapped or copied. */
struct mem2_run {
	uint64_t off; /* offset in the region */
	uint64_t file_off;
	uint64_t len;
};

static int mem2_run_flush(struct snap_reader *r, struct guest_mem *mem,
			  const struct mem_region *reg, struct mem2_run *run,
			  unsigned *mapped_runs)
{
	int ret;

	if (!run->len)
		return 0;
	if (r->map_memory && *mapped_runs < SNAP_MAP_MAX_RUNS &&
	    run->len >= SNAP_MAP_MIN_PAGES * 4096ull) {
		(*mapped_runs)++;
		ret = guest_mem_map_file(mem, reg->gpa + run->off, run->len,
					 r->fd, run->file_off);
	} else {
		ret = read_full(r->fd, reg->host + run->off, (size_t)run->len,
				run->file_off);
	}
	run->len = 0;
	return ret;
}

/* One run of a chain's chunk, from the file of the layer holding it. */
static int map_or_copy(const struct snap_chunk_table *t,
		       const struct snap_chunk *c, struct guest_mem *mem,
		       const struct mem_region *reg, struct mem2_run *run,
		       unsigned *mapped_runs)
{
	int fd = chunk_fd(t, c), ret;

	if (!run->len)
		return 0;
	if (*mapped_runs < SNAP_MAP_MAX_RUNS) {
		(*mapped_runs)++;
		ret = guest_mem_map_file(mem, reg->gpa + run->off, run->len, fd,
					 run->file_off);
	} else {
		ret = read_full(fd, reg->host + run->off, (size_t)run->len,
				run->file_off);
	}
	run->len = 0;
	return ret;
}

/* Loads a version 2 record up front: each chunk read (or, with
 * map_memory and 4 KiB pages, mapped) into guest memory, then checked
 * against its hash before the guest runs. */
static int read_memory_v2(struct snap_reader *r, const struct snap_record *rec,
			  struct guest_mem *mem, struct snap_progress *progress,
			  char *err, size_t errlen)
{
	struct mem2_run run = { 0 };
	struct snap_chunk_table t;
	const struct mem_region *reg;
	unsigned region, mapped_runs = 0;
	bool map;
	int ret;

	ret = snap_read_memory_table(r, rec, mem, &t, &region, err, errlen);
	if (ret)
		return ret;
	reg = &mem->regions[region];
	map = r->map_memory && t.page_size == 4096 && mem->memfd >= 0;
	/* Compressed chunks have no page in the file to map, and the raw
	 * ones after them are no longer page-aligned: a mapping restore
	 * refuses the file rather than copying behind the caller's back. */
	for (uint64_t i = 0; r->map_memory && i < t.nchunks; i++) {
		if (t.chunks[i].codec == SNAP_CODEC_RAW)
			continue;
		ret =
		    rec_fail(err, errlen, -EOPNOTSUPP, rec, rec_header_off(rec),
			     "memory chunk %" PRIu64
			     " is compressed (%s) and cannot be mapped: "
			     "restore with --memory copy or ondemand",
			     i, snap_codec_name(t.chunks[i].codec));
		goto out;
	}
	if (progress)
		progress->total_bytes += t.data_bytes;
	for (uint64_t i = 0; i < t.nchunks; i++) {
		const struct snap_chunk *c = &t.chunks[i];
		uint64_t start = i * t.chunk_size, len = snap_chunk_len(&t, i);
		uint64_t file_off = c->file_off;

		if (c->flags & SNAP_CHUNK_ZERO)
			continue;
		if (!map) {
			ret = snap_read_chunk(&t, i, reg->host + start, false,
					      err, errlen);
			if (ret)
				goto out;
			if (progress)
				progress->done_bytes += c->stored_len;
			continue;
		}
		for (unsigned j = 0; j < chunk_blocks(len, t.block_size); j++) {
			uint64_t off = start + (uint64_t)j * t.block_size;
			uint64_t n = block_len(len, t.block_size, j);

			if (!(c->block_mask >> j & 1))
				continue;
			if (run.len && (run.off + run.len != off ||
					run.file_off + run.len != file_off)) {
				ret = mem2_run_flush(r, mem, reg, &run,
						     &mapped_runs);
				if (ret)
					goto io_fail;
			}
			if (!run.len) {
				run.off = off;
				run.file_off = file_off;
			}
			run.len += n;
			file_off += n;
		}
	}
	ret = mem2_run_flush(r, mem, reg, &run, &mapped_runs);
	if (ret)
		goto io_fail;
	/* Mapped pages are checked through the mapping: straight from the
	 * page cache, before any guest instruction runs. */
	for (uint64_t i = 0; map && i < t.nchunks; i++) {
		if (t.chunks[i].flags & SNAP_CHUNK_ZERO)
			continue;
		ret = chunk_check(&t, i, reg->host + i * t.chunk_size, err,
				  errlen);
		if (ret)
			goto out;
		if (progress)
			progress->done_bytes += t.chunks[i].stored_len;
	}
	ret = 0;
	goto out;
io_fail:
	ret = rec_fail(err, errlen, ret, rec, rec_header_off(rec), "%s",
		       io_strerror(ret));
out:
	snap_chunk_table_free(&t);
	return ret;
}

int snap_read_memory(struct snap_reader *r, const struct snap_record *rec,
		     struct guest_mem *mem, struct snap_progress *progress,
		     char *err, size_t errlen)
{
	unsigned mapped_runs = 0;
	struct page_io io = {
		.fd = r->fd, .write = false, .xxh = r->xxh, .progress = progress
	};
	uint64_t roff = rec_header_off(rec), loaded = 0, ps;
	const struct mem_region *reg = NULL;
	struct mem_layout m;
	int64_t n;
	int ret;

	if (rec->type == SNAP_REC_MEMORY && rec->version == SNAP_MEMORY_VERSION)
		return read_memory_v2(r, rec, mem, progress, err, errlen);
	ret = memory_layout(r, rec, &m, true, err, errlen);
	if (ret)
		return ret;
	ps = m.desc.page_size;
	for (unsigned i = 0; i < mem->nregions && i < GUEST_MEM_MAX_REGIONS;
	     i++) {
		if (mem->regions[i].gpa == m.desc.gpa &&
		    mem->regions[i].size == m.desc.size)
			reg = &mem->regions[i];
	}
	if (!reg)
		return rec_fail(err, errlen, -EINVAL, rec, roff,
				"region gpa 0x%" PRIx64 " size 0x%" PRIx64
				" matches no RAM region of this VM",
				m.desc.gpa, m.desc.size);
	/* Pages not in the file must read as zero; punching the region
	 * makes them so without allocating memory, whatever it held. */
	if (fallocate(mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)reg->file_offset, (off_t)reg->size) < 0)
		return snap_fail(err, errlen, -errno,
				 "cannot clear guest memory: %s",
				 strerror(errno));
	if (progress)
		progress->total_bytes += m.desc.stored_pages * ps;

	/* The bitmap is read a second time, chunk by chunk, so that no
	 * allocation grows with the region; the counts guard against the
	 * file changing between the passes. */
	io.file_off = m.pages_off;
	for (uint64_t done = 0; done < m.bitmap_bytes; done += (uint64_t)n) {
		uint64_t base = done * 8, nbits, pos = 0, run;

		if (base >= m.npages) /* only the bitmap's zero tail left */
			break;
		n = read_chunk(r, rec, m.bitmap_off + done,
			       m.bitmap_bytes - done, false, err, errlen);
		if (n < 0)
			return (int)n;
		nbits = m.npages - base < (uint64_t)n * 8 ? m.npages - base
							  : (uint64_t)n * 8;
		while (bitmap_next_run(r->buf, nbits, &pos, &run)) {
			if (run > m.desc.stored_pages - loaded)
				return rec_fail(err, errlen, -EIO, rec, roff,
						"bitmap changed while reading");
			/* Large runs are mapped when the file's pages are
			 * the host's pages (the usual case). */
			if (r->map_memory && ps == 4096 &&
			    run >= SNAP_MAP_MIN_PAGES &&
			    mapped_runs < SNAP_MAP_MAX_RUNS) {
				mapped_runs++;
				ret = map_run(
				    &io, mem, reg->gpa + (base + pos) * ps,
				    reg->host + (base + pos) * ps, run * ps);
			} else {
				ret = page_io_add(&io,
						  reg->host + (base + pos) * ps,
						  run * ps);
			}
			if (ret)
				return rec_fail(err, errlen, ret, rec, roff,
						"%s", io_strerror(ret));
			loaded += run;
			pos += run;
		}
	}
	ret = page_io_flush(&io);
	if (ret)
		return rec_fail(err, errlen, ret, rec, roff, "%s",
				io_strerror(ret));
	if (loaded != m.desc.stored_pages)
		return rec_fail(err, errlen, -EIO, rec, roff,
				"bitmap changed while reading");
	return checksum_result(r, rec, err, errlen);
}

void snap_reader_set_map_memory(struct snap_reader *r, bool map)
{
	r->map_memory = map;
}

void snap_reader_set_layer(struct snap_reader *r, bool layer)
{
	r->layer = layer;
}

int snap_file_identity(int fd, uint64_t limit, uint64_t *id)
{
	uint8_t hdr[SNAP_RECORD_HEADER_SIZE];
	XXH3_state_t *xxh = XXH3_createState();
	uint8_t head[SNAP_HEADER_SIZE];
	struct stat st;
	uint64_t off = SNAP_HEADER_SIZE, end;
	int ret;

	if (!xxh)
		return -ENOMEM;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	end = limit ? limit : (uint64_t)st.st_size;
	if (end > (uint64_t)st.st_size)
		end = (uint64_t)st.st_size;
	ret = read_full(fd, head, sizeof(head), 0);
	if (ret)
		goto out;
	XXH3_64bits_reset(xxh);
	XXH3_64bits_update(xxh, head, sizeof(head));
	/* Each header is bounded by the file before its length is used. */
	while (off + SNAP_RECORD_HEADER_SIZE <= end) {
		uint64_t len, next;

		ret = read_full(fd, hdr, sizeof(hdr), off);
		if (ret)
			goto out;
		if (get_le32(hdr) == SNAP_REC_END)
			break;
		XXH3_64bits_update(xxh, hdr, sizeof(hdr));
		len = get_le64(hdr + 8);
		if (len > end - off - SNAP_RECORD_HEADER_SIZE) {
			ret = -ENODATA;
			goto out;
		}
		next = align8(off + SNAP_RECORD_HEADER_SIZE + len);
		off = next;
	}
	*id = XXH3_64bits_digest(xxh);
	ret = 0;
out:
	XXH3_freeState(xxh);
	return ret;
}

/* Maps or copies each run of stored blocks of a raw chunk, then checks
 * the chunk through guest memory; the others are read and checked. */
int snap_load_chunks(const struct snap_chunk_table *t, struct guest_mem *mem,
		     unsigned region, bool map, struct snap_progress *progress,
		     char *err, size_t errlen)
{
	const struct mem_region *reg = &mem->regions[region];
	unsigned mapped_runs = 0;
	int ret;

	map = map && t->page_size == 4096 && mem->memfd >= 0;
	for (uint64_t i = 0; map && i < t->nchunks; i++)
		if (!(t->chunks[i].flags &
		      (SNAP_CHUNK_ZERO | SNAP_CHUNK_PARENT)) &&
		    t->chunks[i].codec != SNAP_CODEC_RAW)
			return chunk_fail(t, i, err, errlen, -EOPNOTSUPP,
					  "compressed, cannot be mapped: "
					  "restore with --memory copy or "
					  "ondemand");
	if (progress)
		for (uint64_t i = 0; i < t->nchunks; i++)
			progress->total_bytes += t->chunks[i].stored_len;
	for (uint64_t i = 0; i < t->nchunks; i++) {
		const struct snap_chunk *c = &t->chunks[i];
		uint64_t start = i * t->chunk_size, len = snap_chunk_len(t, i);
		uint64_t file_off = c->file_off;
		struct mem2_run run = { 0 };

		if (c->flags & SNAP_CHUNK_ZERO)
			continue;
		if (!map || mapped_runs >= SNAP_MAP_MAX_RUNS) {
			ret = snap_read_chunk(t, i, reg->host + start, false,
					      err, errlen);
			if (ret)
				return ret;
			goto done;
		}
		for (unsigned j = 0; j < chunk_blocks(len, t->block_size);
		     j++) {
			uint64_t off = start + (uint64_t)j * t->block_size;
			uint64_t n = block_len(len, t->block_size, j);

			if (!(c->block_mask >> j & 1))
				continue;
			if (run.len && run.off + run.len != off) {
				ret = map_or_copy(t, c, mem, reg, &run,
						  &mapped_runs);
				if (ret)
					return chunk_fail(t, i, err, errlen,
							  ret,
							  io_strerror(ret));
			}
			if (!run.len) {
				run.off = off;
				run.file_off = file_off;
			}
			run.len += n;
			file_off += n;
		}
		ret = map_or_copy(t, c, mem, reg, &run, &mapped_runs);
		if (ret)
			return chunk_fail(t, i, err, errlen, ret,
					  io_strerror(ret));
		ret = chunk_check(t, i, reg->host + start, err, errlen);
		if (ret)
			return ret;
done:
		if (progress)
			progress->done_bytes += c->stored_len;
	}
	return 0;
}

int snap_load_chunks_held(const struct snap_chunk_table *t,
			  struct guest_mem *mem, unsigned region,
			  const uint8_t *held, char *err, size_t errlen)
{
	const struct mem_region *reg = &mem->regions[region];
	int ret;

	for (uint64_t i = 0; i < t->nchunks; i++) {
		const struct snap_chunk *c = &t->chunks[i];
		uint64_t start = i * t->chunk_size, len = snap_chunk_len(t, i);

		if (c->flags & SNAP_CHUNK_PARENT) {
			/* Never written here reads as the zeros it was at
			 * the source when pre-copy began. */
			if (held[i] == SNAP_HELD_UNCHECKED)
				return chunk_fail(
				    t, i, err, errlen, -EBADMSG,
				    "checksum mismatch: the copy held here is "
				    "not the source's (a write the dirty page "
				    "log missed)");
			continue;
		}
		if (c->flags & SNAP_CHUNK_ZERO) {
			if (held[i] == SNAP_HELD_NONE)
				continue;
			/* Zero now, but pre-copy wrote it: punched, so
			 * that it costs no memory. */
			if (mem->memfd < 0 ||
			    fallocate(mem->memfd,
				      FALLOC_FL_PUNCH_HOLE |
					  FALLOC_FL_KEEP_SIZE,
				      (off_t)(reg->file_offset + start),
				      (off_t)len) < 0)
				memset(reg->host + start, 0, len);
			continue;
		}
		ret =
		    snap_read_chunk(t, i, reg->host + start, true, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}
