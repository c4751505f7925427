/* Working-set files (wset.h): encoding, the bounded parser, atomic
 * saving. */
#include "snapshot/wset.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/le.h"

void wset_identity_init(struct wset_identity *id, uint32_t format_version,
			uint64_t created_unix_ns)
{
	memset(id, 0, sizeof(*id));
	id->words[0] = format_version;
	id->words[1] = created_unix_ns;
	id->n = 2;
}

void wset_identity_add(struct wset_identity *id, uint64_t rec_checksum,
		       uint64_t rec_length)
{
	/* More records than regions never restore; they change nothing. */
	if (id->n + 2 > sizeof(id->words) / sizeof(id->words[0]))
		return;
	id->words[id->n++] = rec_checksum;
	id->words[id->n++] = rec_length;
}

uint64_t wset_identity_final(const struct wset_identity *id)
{
	uint8_t buf[sizeof(id->words)];

	for (unsigned i = 0; i < id->n; i++)
		put_le64(buf + 8 * i, id->words[i]);
	return XXH3_64bits(buf, 8 * (size_t)id->n);
}

static uint64_t wset_words(uint64_t nchunks)
{
	return nchunks / 64 + (nchunks % 64 != 0);
}

int wset_alloc(struct wset *w, const struct wset_region *geo, unsigned n)
{
	memset(w, 0, sizeof(*w));
	if (n > GUEST_MEM_MAX_REGIONS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		struct wset_region *r = &w->regions[i];

		*r = geo[i];
		r->bits =
		    calloc(wset_words(r->nchunks) ? wset_words(r->nchunks) : 1,
			   sizeof(uint64_t));
		if (!r->bits) {
			wset_free(w);
			return -ENOMEM;
		}
		w->nregions = i + 1;
	}
	w->nregions = n;
	return 0;
}

void wset_free(struct wset *w)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++)
		free(w->regions[i].bits);
	memset(w, 0, sizeof(*w));
}

uint64_t wset_count(const struct wset *w)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < w->nregions; i++)
		for (uint64_t k = 0; k < wset_words(w->regions[i].nchunks); k++)
			n += (uint64_t)__builtin_popcountll(
			    w->regions[i].bits[k]);
	return n;
}

static size_t wset_size(const struct wset_region *r, unsigned n)
{
	size_t len = WSET_HEADER_SIZE + (size_t)n * WSET_REGION_SIZE + 8;

	for (unsigned i = 0; i < n; i++)
		len += 8 * wset_words(r[i].nchunks);
	return len;
}

int wset_encode(const struct wset *w, uint8_t **out, size_t *len)
{
	size_t size = wset_size(w->regions, w->nregions), at;
	uint8_t *b = calloc(1, size);

	if (!b)
		return -ENOMEM;
	memcpy(b, WSET_MAGIC, 8);
	put_le32(b + 8, WSET_VERSION);
	put_le32(b + 12, WSET_HEADER_SIZE);
	put_le64(b + 16, w->snapshot_id);
	put_le32(b + 24, w->nregions);
	put_le32(b + 28, w->record_ms);
	put_le64(b + 32, wset_count(w));
	at = WSET_HEADER_SIZE;
	for (unsigned i = 0; i < w->nregions; i++, at += WSET_REGION_SIZE) {
		const struct wset_region *r = &w->regions[i];

		put_le64(b + at, r->gpa);
		put_le64(b + at + 8, r->size);
		put_le32(b + at + 16, r->chunk_size);
		put_le64(b + at + 24, r->nchunks);
	}
	for (unsigned i = 0; i < w->nregions; i++)
		for (uint64_t k = 0; k < wset_words(w->regions[i].nchunks);
		     k++, at += 8)
			put_le64(b + at, w->regions[i].bits[k]);
	put_le64(b + at, XXH3_64bits(b, at));
	*out = b;
	*len = size;
	return 0;
}

static bool wset_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

int wset_decode(const uint8_t *buf, size_t len, const struct wset_region *geo,
		unsigned n, uint64_t id, struct wset *w, char *err,
		size_t errlen)
{
	uint64_t count, found;
	unsigned nregions;
	size_t at;
	int ret;

	memset(w, 0, sizeof(*w));
	if (len < 8 || memcmp(buf, WSET_MAGIC, 8)) {
		snprintf(err, errlen, "not a working-set file (bad magic)");
		return -EBADMSG;
	}
	if (len < WSET_HEADER_SIZE + 8 || len > WSET_FILE_MAX) {
		snprintf(err, errlen, "working-set file of %zu bytes: %s", len,
			 len > WSET_FILE_MAX ? "too large" : "truncated");
		return -EBADMSG;
	}
	if (get_le64(buf + len - 8) != XXH3_64bits(buf, len - 8)) {
		snprintf(err, errlen, "working-set file: checksum mismatch");
		return -EBADMSG;
	}
	if (get_le32(buf + 8) != WSET_VERSION ||
	    get_le32(buf + 12) != WSET_HEADER_SIZE) {
		snprintf(err, errlen,
			 "working-set file version %u (header %u bytes) is "
			 "not %u",
			 get_le32(buf + 8), get_le32(buf + 12), WSET_VERSION);
		return -EBADMSG;
	}
	if (!wset_zero(buf + 40, WSET_HEADER_SIZE - 40)) {
		snprintf(err, errlen, "working-set file: reserved bytes set");
		return -EBADMSG;
	}
	nregions = get_le32(buf + 24);
	if (nregions > GUEST_MEM_MAX_REGIONS ||
	    len < wset_size(geo, 0) + (size_t)nregions * WSET_REGION_SIZE) {
		snprintf(err, errlen,
			 "working-set file: %u regions in %zu bytes", nregions,
			 len);
		return -EBADMSG;
	}
	/* Everything past here is well formed; whether it is this
	 * snapshot's is the next question. */
	if (get_le64(buf + 16) != id || nregions != n) {
		snprintf(err, errlen,
			 "working-set file belongs to another snapshot");
		return -ESTALE;
	}
	at = WSET_HEADER_SIZE;
	for (unsigned i = 0; i < n; i++, at += WSET_REGION_SIZE) {
		/* No file that fits could hold more (nor would a sum of its
		 * sizes wrap). */
		if (geo[i].nchunks > 8ull * WSET_FILE_MAX) {
			snprintf(err, errlen,
				 "working-set file: region %u of %llu chunks",
				 i, (unsigned long long)geo[i].nchunks);
			return -ESTALE;
		}
		if (get_le64(buf + at) != geo[i].gpa ||
		    get_le64(buf + at + 8) != geo[i].size ||
		    get_le32(buf + at + 16) != geo[i].chunk_size ||
		    get_le32(buf + at + 20) != 0 ||
		    get_le64(buf + at + 24) != geo[i].nchunks) {
			snprintf(err, errlen,
				 "working-set file: region %u does not match "
				 "the snapshot's memory",
				 i);
			return -ESTALE;
		}
	}
	if (len != wset_size(geo, n)) {
		snprintf(err, errlen,
			 "working-set file: %zu bytes, its regions need %zu",
			 len, wset_size(geo, n));
		return -EBADMSG;
	}
	ret = wset_alloc(w, geo, n);
	if (ret) {
		snprintf(err, errlen, "out of memory");
		return ret;
	}
	for (unsigned i = 0; i < n; i++) {
		struct wset_region *r = &w->regions[i];
		uint64_t words = wset_words(r->nchunks);

		for (uint64_t k = 0; k < words; k++, at += 8)
			r->bits[k] = get_le64(buf + at);
		/* Bits past the last chunk must be clear. */
		if (r->nchunks % 64 &&
		    r->bits[words - 1] >> (r->nchunks % 64)) {
			snprintf(err, errlen,
				 "working-set file: region %u names chunks "
				 "past its end",
				 i);
			wset_free(w);
			return -EBADMSG;
		}
	}
	count = get_le64(buf + 32);
	found = wset_count(w);
	if (count != found) {
		snprintf(err, errlen,
			 "working-set file: %llu chunks counted, %llu listed",
			 (unsigned long long)count, (unsigned long long)found);
		wset_free(w);
		return -EBADMSG;
	}
	w->snapshot_id = id;
	w->record_ms = get_le32(buf + 28);
	return 0;
}

int wset_load(const char *path, const struct wset_region *geo, unsigned n,
	      uint64_t id, struct wset *w, char *err, size_t errlen)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd, ret;

	memset(w, 0, sizeof(*w));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = -errno;
		if (ret != -ENOENT)
			snprintf(err, errlen, "cannot open it: %s",
				 strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    st.st_size > (off_t)WSET_FILE_MAX) {
		snprintf(err, errlen, "not a regular file of at most %u bytes",
			 WSET_FILE_MAX);
		close(fd);
		return -EBADMSG;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r =
		    pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	ret = wset_decode(buf, got, geo, n, id, w, err, errlen);
	free(buf);
	return ret;
}

/* Writes all of @len bytes at @b to @fd. */
static int wset_write_all(int fd, const uint8_t *b, size_t len)
{
	while (len) {
		ssize_t r = write(fd, b, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		b += r;
		len -= (size_t)r;
	}
	return 0;
}

int wset_save(const char *path, const struct wset *w, char *err, size_t errlen)
{
	char tmp[PATH_MAX], dir[PATH_MAX], base[PATH_MAX];
	const char *dname;
	uint8_t *b = NULL;
	size_t len;
	int fd, dfd, ret;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir) ||
	    snprintf(base, sizeof(base), "%s", path) >= (int)sizeof(base)) {
		snprintf(err, errlen, "path too long");
		return -ENAMETOOLONG;
	}
	dname = dirname(dir); /* may be a static ".", not @dir */
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.XXXXXX", dname,
		     basename(base)) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "path too long");
		return -ENAMETOOLONG;
	}
	ret = wset_encode(w, &b, &len);
	if (ret) {
		snprintf(err, errlen, "out of memory");
		return ret;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create a file beside it: %s",
			 strerror(-ret));
		free(b);
		return ret;
	}
	ret = wset_write_all(fd, b, len);
	free(b);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write it: %s", strerror(-ret));
		return ret;
	}
	/* The rename itself must survive a crash too. */
	dfd = open(dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd))
			ret = -errno;
		close(dfd);
	}
	if (ret)
		snprintf(err, errlen, "written, but its directory: %s",
			 strerror(-ret));
	return ret;
}
