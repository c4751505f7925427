/* The snapshot file container: exact bytes, memory round trips, every
 * truncation and bit flip, and atomic replacement of the file. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "snapshot/snapfile.h"

#define PS 4096u
#define ERRLEN 256

#define assert_contains(hay, needle)                                      \
	do {                                                              \
		if (!strstr((hay), (needle)))                             \
			fail_msg("\"%s\" does not contain \"%s\"", (hay), \
				 (needle));                               \
	} while (0)

static const char config_json[] = "{\"vcpus\":1,\"mem\":\"8M\"}";

struct ctx {
	char dir[64];
	char path[128]; /* dir/vm.snap */
	char bad[128]; /* dir/bad.snap, for corrupted copies */
};

static int setup_dir(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -1;
	strcpy(c->dir, "/tmp/test_snapfile.XXXXXX");
	if (!mkdtemp(c->dir))
		return -1;
	snprintf(c->path, sizeof(c->path), "%s/vm.snap", c->dir);
	snprintf(c->bad, sizeof(c->bad), "%s/bad.snap", c->dir);
	*state = c;
	return 0;
}

static int teardown_dir(void **state)
{
	struct ctx *c = *state;
	struct dirent *e;
	DIR *d = opendir(c->dir);

	while (d && (e = readdir(d))) {
		/* The disk-full test's mount point, after a failure. */
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    unlinkat(dirfd(d), e->d_name, 0))
			unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
	}
	if (d)
		closedir(d);
	rmdir(c->dir);
	free(c);
	return 0;
}

/* Entries of @dir whose name starts with '.', other than . and ..: the
 * writer's temporary files. */
static int count_temp_files(const char *dir)
{
	struct dirent *e;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' && strcmp(e->d_name, ".") &&
		    strcmp(e->d_name, ".."))
			n++;
	}
	closedir(d);
	return n;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static void spit(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void set_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void set_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_header_checksum(uint8_t *buf)
{
	set_le64(buf + 120, XXH3_64bits(buf, 120));
}

/* Recomputes the checksum of the record whose header is at @off, so that
 * a test reaches the structural check it aims at. */
static void fix_record_checksum(uint8_t *buf, size_t off)
{
	XXH3_state_t *st = XXH3_createState();
	uint8_t hdr[32];

	memcpy(hdr, buf + off, 32);
	memset(hdr + 16, 0, 8);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, hdr, 32);
	XXH3_64bits_update(st, buf + off + 32, le64(buf + off + 8));
	set_le64(buf + off + 16, XXH3_64bits_digest(st));
	XXH3_freeState(st);
}

/* File offset of record @index's header, found by walking the lengths. */
static size_t record_at(const uint8_t *buf, size_t len, unsigned index)
{
	size_t off = SNAP_HEADER_SIZE;

	for (unsigned i = 0; i < index; i++) {
		assert_true(off + 32 <= len);
		off += 32 + ((le64(buf + off + 8) + 7) & ~7ull);
	}
	assert_true(off + 32 <= len);
	return off;
}

static void test_header(struct snap_header *h)
{
	memset(h, 0, sizeof(*h));
	h->page_size = PS;
	strcpy(h->stasis_version, "0.1.0-test");
	strcpy(h->cpu_vendor, "GenuineIntel");
	h->created_unix_ns = 0x1122334455667788ull;
}

static void fill_page(struct guest_mem *m, uint64_t page, uint8_t seed)
{
	uint8_t *p = guest_mem_ptr(m, page * PS, PS);

	assert_non_null(p);
	for (unsigned i = 0; i < PS; i++)
		p[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

/* Allocated bytes of a memfd: untouched RAM must stay unallocated. */
static uint64_t memfd_allocated(const struct guest_mem *m)
{
	struct stat st;

	assert_int_equal(fstat(m->memfd, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static bool all_zero_page(const uint8_t *p)
{
	for (unsigned i = 0; i < PS; i++)
		if (p[i])
			return false;
	return true;
}

static const uint8_t vcpu_blob[40] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };

/* CONFIG, VCPU, memory, END, in format @format (0: the current one). */
static void write_snapshot_format(const char *path, const struct guest_mem *m,
				  struct snap_progress *progress,
				  uint32_t format)
{
	char err[ERRLEN] = "";
	struct snap_header h;
	struct snap_writer *w;

	test_header(&h);
	h.format_version = format;
	w = snap_writer_open(path, &h, err, sizeof(err));
	if (!w)
		fail_msg("%s", err);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0,
					   config_json, strlen(config_json),
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_record(w, SNAP_REC_VCPU, 1, 0, vcpu_blob,
					   sizeof(vcpu_blob), err, sizeof(err)),
			 0);
	if (snap_write_memory(w, m, progress, err, sizeof(err)))
		fail_msg("%s", err);
	if (snap_writer_commit(w, err, sizeof(err)))
		fail_msg("%s", err);
}

static void write_snapshot(const char *path, const struct guest_mem *m,
			   struct snap_progress *progress)
{
	write_snapshot_format(path, m, progress, 0);
}

/* Reads and checks everything in @path the way a restore does. Returns 0
 * or the first error, with @err filled. */
static int read_all(const char *path, struct guest_mem *m, char *err,
		    size_t errlen)
{
	struct snap_reader *r;
	struct snap_record rec;
	void *p;
	int ret;

	err[0] = 0;
	r = snap_reader_open(path, err, errlen);
	if (!r)
		return -1;
	while ((ret = snap_reader_next(r, &rec, err, errlen)) > 0) {
		if (rec.type == SNAP_REC_MEMORY) {
			ret = snap_read_memory(r, &rec, m, NULL, err, errlen);
		} else if (rec.type == SNAP_REC_CONFIG) {
			ret = snap_read_payload(r, &rec, 1 << 20, &p, err,
						errlen);
			free(p);
		} else {
			ret = snap_verify_record(r, &rec, err, errlen);
		}
		if (ret)
			break;
	}
	snap_reader_close(r);
	return ret;
}

static void assert_read_fails(const char *path, struct guest_mem *m,
			      const char *expect)
{
	char err[ERRLEN];
	int ret = read_all(path, m, err, sizeof(err));

	if (ret >= 0)
		fail_msg("corrupt file accepted (expected \"%s\")",
			 expect ? expect : "any error");
	assert_true(strncmp(err, "snapshot: ", 10) == 0);
	assert_null(strchr(err, '\n'));
	if (expect)
		assert_contains(err, expect);
}

/* 8 MiB of RAM: data pages, a 3 MiB run (longer than one I/O), alternating
 * pages (more runs than one I/O vector holds), pages written with zeros,
 * and the rest never touched. Returns the number of pages to store. */
static uint64_t fill_guest(struct guest_mem *m)
{
	static const uint64_t singles[] = { 1, 2, 3, 2000, 2047 };
	uint64_t stored = 0;

	for (unsigned i = 0; i < sizeof(singles) / sizeof(singles[0]); i++)
		fill_page(m, singles[i], (uint8_t)i);
	stored += 5;
	for (uint64_t p = 16; p < 16 + 768; p++)
		fill_page(m, p, (uint8_t)p);
	stored += 768;
	for (uint64_t p = 1024; p < 1024 + 300; p += 2)
		fill_page(m, p, (uint8_t)(p * 3));
	stored += 150;
	/* Touched but zero: allocated in the memfd, yet not stored. */
	memset(guest_mem_ptr(m, 5 * PS, PS), 0, PS);
	fill_page(m, 6, 9);
	memset(guest_mem_ptr(m, 6 * PS, PS), 0, PS);
	/* One non-zero byte at the end of a page still stores it. */
	*(uint8_t *)guest_mem_ptr(m, 1500 * PS + PS - 1, 1) = 1;
	stored += 1;
	return stored;
}

/* Both formats: the one written now and the one older files have. */
static void round_trip(struct ctx *c, uint32_t format)
{
	struct snap_progress wp = { 0 }, rp = { 0 };
	struct guest_mem src, dst;
	struct snap_memory_desc desc;
	struct snap_reader *r;
	struct snap_record rec;
	char err[ERRLEN];
	uint64_t stored, before;
	void *p;

	assert_int_equal(guest_mem_init(&src, 8 << 20), 0);
	stored = fill_guest(&src);
	before = memfd_allocated(&src);
	write_snapshot_format(c->path, &src, &wp, format);
	/* Scanning for data read no hole: nothing new was allocated. */
	assert_int_equal(memfd_allocated(&src), before);
	assert_int_equal(wp.total_bytes, stored * PS);
	assert_int_equal(wp.done_bytes, stored * PS);
	assert_int_equal(count_temp_files(c->dir), 0);

	/* Restore into RAM that holds junk: unstored pages must end zero. */
	assert_int_equal(guest_mem_init(&dst, 8 << 20), 0);
	fill_page(&dst, 5, 0x55);
	fill_page(&dst, 1999, 0x66);
	fill_page(&dst, 100, 0x77);

	r = snap_reader_open(c->path, err, sizeof(err));
	if (!r)
		fail_msg("%s", err);
	assert_int_equal(snap_reader_header(r)->format_version, format);
	assert_int_equal(snap_reader_header(r)->page_size, PS);
	assert_string_equal(snap_reader_header(r)->stasis_version,
			    "0.1.0-test");
	assert_string_equal(snap_reader_header(r)->cpu_vendor, "GenuineIntel");
	assert_int_equal(snap_reader_header(r)->created_unix_ns,
			 0x1122334455667788ull);

	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec.type, SNAP_REC_CONFIG);
	assert_int_equal(rec.index, 0);
	assert_int_equal(snap_read_payload(r, &rec, 4096, &p, err, sizeof(err)),
			 0);
	assert_int_equal(rec.length, strlen(config_json));
	assert_memory_equal(p, config_json, rec.length);
	free(p);

	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec.type, SNAP_REC_VCPU);
	assert_int_equal(rec.version, 1);
	assert_int_equal(
	    snap_read_payload(r, &rec, sizeof(vcpu_blob), &p, err, sizeof(err)),
	    0);
	assert_memory_equal(p, vcpu_blob, sizeof(vcpu_blob));
	free(p);
	assert_int_equal(snap_read_payload(r, &rec, sizeof(vcpu_blob) - 1, &p,
					   err, sizeof(err)),
			 -EFBIG);
	assert_null(p);

	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec.type, SNAP_REC_MEMORY);
	assert_int_equal(
	    snap_read_memory_desc(r, &rec, &desc, err, sizeof(err)), 0);
	assert_int_equal(desc.gpa, 0);
	assert_int_equal(desc.size, 8 << 20);
	assert_int_equal(desc.page_size, PS);
	assert_int_equal(desc.stored_pages, stored);
	assert_int_equal(desc.stored_bytes, stored * PS);
	assert_int_equal(rec.version, format);
	assert_int_equal(snap_verify_record(r, &rec, err, sizeof(err)), 0);
	if (snap_read_memory(r, &rec, &dst, &rp, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(rp.total_bytes, stored * PS);
	assert_int_equal(rp.done_bytes, stored * PS);
	/* Only the stored pages take memory after a restore. */
	assert_int_equal(memfd_allocated(&dst), stored * PS);

	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 0);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 0);
	snap_reader_close(r);

	assert_memory_equal(src.host, dst.host, 8 << 20);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

static void test_round_trip(void **state)
{
	round_trip(*state, SNAP_FORMAT_VERSION);
}

static void test_round_trip_v1(void **state)
{
	round_trip(*state, 1);
}

/* The exact size and the page alignment, computed independently. */
/* Restoring with mapped memory: the guest sees the same bytes, writes to
 * it stay private (the file is unchanged), and a snapshot of the restored
 * memory includes the mapped pages, which the memfd knows nothing of. */
static void test_mapped_restore(void **state)
{
	struct ctx *c = *state;
	struct guest_mem src, dst, again;
	struct snap_reader *r;
	struct snap_record rec;
	char path[PATH_MAX], path2[PATH_MAX], err[ERRLEN];
	uint8_t *before;
	size_t before_len;
	int ret;

	snprintf(path, sizeof(path), "%s/mapped.snap", c->dir);
	snprintf(path2, sizeof(path2), "%s/mapped2.snap", c->dir);
	assert_int_equal(guest_mem_init(&src, (8u << 20)), 0);
	fill_guest(&src);
	write_snapshot(path, &src, NULL);
	before = slurp(path, &before_len);

	assert_int_equal(guest_mem_init(&dst, (8u << 20)), 0);
	r = snap_reader_open(path, err, sizeof(err));
	assert_non_null(r);
	snap_reader_set_map_memory(r, true);
	while ((ret = snap_reader_next(r, &rec, err, sizeof(err))) > 0) {
		if (rec.type == SNAP_REC_MEMORY)
			ret = snap_read_memory(r, &rec, &dst, NULL, err,
					       sizeof(err));
		else
			ret = snap_verify_record(r, &rec, err, sizeof(err));
		if (ret)
			fail_msg("%s", err);
	}
	snap_reader_close(r);
	/* The 768-page run was mapped, not copied into the memfd; only the
	 * short runs (156 pages) were. Checked before anything reads the
	 * holes, which would allocate them. */
	assert_true(guest_mem_page_file_mapped(&dst.regions[0], 100));
	assert_false(guest_mem_page_file_mapped(&dst.regions[0], 1));
	assert_true(memfd_allocated(&dst) <= 200 * PS);
	assert_memory_equal(src.host, dst.host, (8u << 20));

	/* Copy-on-write: the guest's writes never reach the file. */
	fill_page(&dst, 100, 77);
	fill_page(&src, 100, 77);
	{
		size_t len;
		uint8_t *now = slurp(path, &len);

		assert_int_equal(len, before_len);
		assert_memory_equal(now, before, len);
		free(now);
	}

	/* A snapshot of the restored VM holds every page, mapped ones too. */
	write_snapshot(path2, &dst, NULL);
	assert_int_equal(guest_mem_init(&again, (8u << 20)), 0);
	if (read_all(path2, &again, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(src.host, again.host, (8u << 20));
	free(before);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
	guest_mem_destroy(&again);
}

static void test_layout_and_size(void **state)
{
	struct ctx *c = *state;
	struct guest_mem m;
	uint64_t stored, off, mem_payload, pages_off;
	size_t len;
	uint8_t *buf;

	assert_int_equal(guest_mem_init(&m, 8 << 20), 0);
	stored = fill_guest(&m);
	write_snapshot_format(c->path, &m, NULL, 1);
	buf = slurp(c->path, &len);

	off = 128 + 32 + ((strlen(config_json) + 7) & ~7ul); /* VCPU */
	off += 32 + sizeof(vcpu_blob); /* MEMORY */
	assert_int_equal(le32(buf + off), SNAP_REC_MEMORY);
	mem_payload = off + 32;
	/* 2048 pages: a 256-byte bitmap after the 32-byte descriptor. */
	pages_off = (mem_payload + 32 + 256 + PS - 1) & ~(uint64_t)(PS - 1);
	assert_int_equal(le64(buf + off + 8),
			 pages_off - mem_payload + stored * PS);
	assert_int_equal(len, pages_off + stored * PS + 32);
	assert_int_equal(pages_off % PS, 0);
	/* Bitmap: pages 1, 2, 3 are in byte 0; 5 and 6 are not. */
	assert_int_equal(buf[mem_payload + 32], 0x0e);
	/* The first stored page (page 1) sits at the aligned offset. */
	assert_memory_equal(buf + pages_off, guest_mem_ptr(&m, PS, PS), PS);
	/* END is last. */
	assert_int_equal(le32(buf + len - 32), SNAP_REC_END);
	free(buf);
	guest_mem_destroy(&m);
}

/* Exact bytes of a file with one CONFIG record. */
static void test_exact_bytes(void **state)
{
	struct ctx *c = *state;
	static const uint8_t head[24] = {
		'S',  'T',  'A',  'S',	'I', 'S', 'S', 'N', /* magic */
		0x02, 0x00, 0x00, 0x00, /* format version */
		0x04, 0x03, 0x02, 0x01, /* byte-order mark */
		0x80, 0x00, 0x00, 0x00, /* header size */
		0x00, 0x10, 0x00, 0x00, /* page size */
	};
	static const uint8_t config_rec[16] = {
		0x01, 0x00, 0x00, 0x00, /* type CONFIG */
		0x02, 0x00, /* version */
		0x00, 0x00, /* flags */
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* length */
	};
	static const uint8_t end_rec[16] = {
		0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	char err[ERRLEN];
	struct snap_header h;
	struct snap_writer *w;
	uint8_t zero[64] = { 0 }, hdr[32];
	size_t len;
	uint8_t *b;

	test_header(&h);
	h.format_version = 99; /* no such format to write */
	assert_null(snap_writer_open(c->path, &h, err, sizeof(err)));
	h.format_version = 0; /* the current one */
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 2, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	b = slurp(c->path, &len);

	assert_int_equal(len, 128 + 32 + 8 + 32);
	assert_memory_equal(b, head, sizeof(head));
	assert_string_equal((char *)b + 24, "0.1.0-test");
	assert_memory_equal(b + 24 + 10, zero, 32 - 10);
	assert_memory_equal(b + 56, "GenuineIntel\0\0\0\0", 16);
	assert_int_equal(le64(b + 72), 0x1122334455667788ull);
	assert_memory_equal(b + 80, zero, 40); /* flags, reserved */
	assert_int_equal(le64(b + 120), XXH3_64bits(b, 120));

	assert_memory_equal(b + 128, config_rec, sizeof(config_rec));
	assert_memory_equal(b + 128 + 24, zero, 8); /* reserved */
	memcpy(hdr, b + 128, 32);
	memset(hdr + 16, 0, 8);
	{
		uint8_t whole[34];

		memcpy(whole, hdr, 32);
		memcpy(whole + 32, "{}", 2);
		assert_int_equal(le64(b + 128 + 16),
				 XXH3_64bits(whole, sizeof(whole)));
	}
	assert_memory_equal(b + 160, "{}\0\0\0\0\0\0", 8);
	assert_memory_equal(b + 168, end_rec, sizeof(end_rec));
	memcpy(hdr, end_rec, 16);
	memset(hdr + 16, 0, 16);
	assert_int_equal(le64(b + 168 + 16), XXH3_64bits(hdr, 32));
	assert_memory_equal(b + 168 + 24, zero, 8);
	free(b);
}

/* A small file for the exhaustive corruption loops: 2 MiB of RAM, three
 * stored pages. */
static void write_small(const char *path, struct guest_mem *m)
{
	assert_int_equal(guest_mem_init(m, 2 << 20), 0);
	fill_page(m, 0, 1);
	fill_page(m, 300, 3);
	write_snapshot(path, m, NULL);
}

static void test_truncated_anywhere(void **state)
{
	struct ctx *c = *state;
	struct guest_mem m;
	char err[ERRLEN];
	uint8_t *buf;
	size_t len;

	write_small(c->path, &m);
	buf = slurp(c->path, &len);
	assert_int_equal(read_all(c->path, &m, err, sizeof(err)), 0);
	/* Shortest last, so one write and then only truncations. */
	spit(c->bad, buf, len);
	for (size_t n = len; n-- > 0;) {
		assert_int_equal(truncate(c->bad, (off_t)n), 0);
		assert_read_fails(c->bad, &m, NULL);
	}
	spit(c->bad, buf, len - 32);
	assert_read_fails(c->bad, &m, "snapshot: truncated: no END record");
	spit(c->bad, buf, 100);
	assert_read_fails(c->bad, &m, "truncated header (100 of 128 bytes)");
	free(buf);
	guest_mem_destroy(&m);
}

static void test_bit_flip_anywhere(void **state)
{
	struct ctx *c = *state;
	struct guest_mem m;
	uint8_t *buf;
	size_t len;

	size_t structure;
	int fd;

	write_small(c->path, &m);
	buf = slurp(c->path, &len);
	spit(c->bad, buf, len);
	fd = open(c->bad, O_WRONLY);
	assert_true(fd >= 0);
	/* Every bit up to the end of the memory bitmap (header, record
	 * headers, payloads, descriptor), then one bit of every byte of the
	 * padding and pages, which only the checksum guards. */
	structure = record_at(buf, len, 2) + 32 + 32 + 64;
	for (size_t i = 0; i < len; i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			if (i >= structure && i < len - 32 && bit != i % 8)
				continue;
			buf[i] ^= (uint8_t)(1u << bit);
			assert_int_equal(pwrite(fd, buf + i, 1, (off_t)i), 1);
			assert_read_fails(c->bad, &m, NULL);
			buf[i] ^= (uint8_t)(1u << bit);
			assert_int_equal(pwrite(fd, buf + i, 1, (off_t)i), 1);
		}
	}
	close(fd);
	free(buf);
	guest_mem_destroy(&m);
}

static void test_bad_headers(void **state)
{
	struct ctx *c = *state;
	struct guest_mem m;
	char err[ERRLEN];
	uint8_t *buf;
	size_t len;

	write_small(c->path, &m);
	buf = slurp(c->path, &len);

	buf[0] = 'X';
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m,
			  "snapshot: bad magic (not a stasis snapshot)");
	buf[0] = 'S';

	/* The mark as a big-endian writer would store it. */
	memcpy(buf + 12, "\x01\x02\x03\x04", 4);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "big-endian snapshot");
	set_le32(buf + 12, SNAP_ENDIAN_MARK);

	set_le32(buf + 8, 3);
	spit(c->bad, buf, len);
	assert_null(snap_reader_open(c->bad, err, sizeof(err)));
	assert_string_equal(err, "snapshot: format version 3 is newer than "
				 "this stasis reads (1..2)");
	set_le32(buf + 8, 0);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "format version 0 is older");
	set_le32(buf + 8, 1);

	buf[30] ^= 1; /* inside stasis_version */
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "snapshot: header checksum mismatch");
	buf[30] ^= 1;

	/* Checksummed but invalid. */
	set_le32(buf + 80, 1);
	fix_header_checksum(buf);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "unknown header flags 0x1");
	set_le32(buf + 80, 0);

	buf[100] = 1;
	fix_header_checksum(buf);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "reserved header bytes");
	buf[100] = 0;

	set_le32(buf + 20, 12288);
	fix_header_checksum(buf);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "bad page size 12288");
	set_le32(buf + 20, PS);

	memset(buf + 24, 'v', 32); /* no NUL */
	fix_header_checksum(buf);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "not NUL-padded");

	assert_null(snap_reader_open(c->dir, err, sizeof(err)));
	assert_contains(err, "not a regular file");
	assert_null(snap_reader_open("/nonexistent/x.snap", err, sizeof(err)));
	assert_contains(err, "No such file");
	free(buf);
	guest_mem_destroy(&m);
}

static void test_bad_records(void **state)
{
	struct ctx *c = *state;
	struct guest_mem m;
	char err[ERRLEN], expect[128];
	uint8_t *buf, *big;
	size_t len, vcpu, end;

	write_small(c->path, &m);
	buf = slurp(c->path, &len);
	vcpu = record_at(buf, len, 1);
	end = len - 32;

	/* A flipped payload byte: the exact message. */
	buf[vcpu + 32 + 3] ^= 0x10;
	spit(c->bad, buf, len);
	snprintf(expect, sizeof(expect),
		 "snapshot: record 1 (VCPU) at offset 0x%zx: checksum mismatch",
		 vcpu);
	assert_int_not_equal(read_all(c->bad, &m, err, sizeof(err)), 0);
	assert_string_equal(err, expect);
	buf[vcpu + 32 + 3] ^= 0x10;

	/* Oversized lengths never wrap an offset. */
	set_le64(buf + vcpu + 8, 1ull << 63);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m,
			  "truncated: payload of 9223372036854775808");
	set_le64(buf + vcpu + 8, UINT64_MAX);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "truncated");
	/* A length off by a few bytes, checksum fixed: the padding that
	 * follows is no longer zero. */
	set_le64(buf + vcpu + 8, sizeof(vcpu_blob) + 4);
	fix_record_checksum(buf, vcpu);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "padding is not zero");
	set_le64(buf + vcpu + 8, 5);
	fix_record_checksum(buf, vcpu);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "padding is not zero");
	set_le64(buf + vcpu + 8, sizeof(vcpu_blob));
	fix_record_checksum(buf, vcpu);

	set_le64(buf + vcpu + 24, 1);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "reserved field is not zero");
	set_le64(buf + vcpu + 24, 0);

	buf[vcpu + 6] = 0x2;
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "unknown flags 0x2");
	buf[vcpu + 6] = 0;

	/* CONFIG must come first. */
	set_le32(buf + 128, SNAP_REC_CPUID);
	fix_record_checksum(buf, 128);
	spit(c->bad, buf, len);
	assert_read_fails(c->bad, &m, "the first record must be CONFIG");
	set_le32(buf + 128, SNAP_REC_CONFIG);
	fix_record_checksum(buf, 128);

	/* Anything after END, even one byte. */
	big = malloc(len + 8);
	memcpy(big, buf, len);
	memset(big + len, 0, 8);
	spit(c->bad, big, len + 8);
	assert_read_fails(c->bad, &m, "data after END (8 bytes)");
	spit(c->bad, big, len + 1);
	assert_read_fails(c->bad, &m, "data after END");
	/* A second END. */
	big = realloc(big, len + 32);
	memcpy(big + len, buf + end, 32);
	spit(c->bad, big, len + 32);
	assert_read_fails(c->bad, &m, "data after END");

	/* END with a payload, checksum fixed. */
	memset(big + len, 0, 8);
	set_le64(big + end + 8, 8);
	fix_record_checksum(big, end);
	spit(c->bad, big, len + 8);
	assert_read_fails(c->bad, &m, "no payload");
	free(big);
	free(buf);
	guest_mem_destroy(&m);
}

static void test_unknown_records(void **state)
{
	struct ctx *c = *state;
	struct snap_header h;
	struct snap_writer *w;
	struct snap_reader *r;
	struct snap_record rec;
	char err[ERRLEN];
	uint32_t types[4], indexes[4];
	unsigned n = 0;
	int ret;

	test_header(&h);
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_record(w, 0x1234, 1, SNAP_REC_OPTIONAL,
					   "later", 5, err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_record(w, SNAP_REC_CLOCK, 1,
					   SNAP_REC_OPTIONAL, "clk", 3, err,
					   sizeof(err)),
			 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);

	/* The unknown optional record is skipped; a known one marked
	 * optional is still returned. */
	r = snap_reader_open(c->path, err, sizeof(err));
	assert_non_null(r);
	while ((ret = snap_reader_next(r, &rec, err, sizeof(err))) > 0) {
		assert_true(n < 4);
		types[n] = rec.type;
		indexes[n++] = rec.index;
		assert_int_equal(snap_verify_record(r, &rec, err, sizeof(err)),
				 0);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(n, 2);
	assert_int_equal(types[0], SNAP_REC_CONFIG);
	assert_int_equal(types[1], SNAP_REC_CLOCK);
	/* The skipped record still counts in the numbering. */
	assert_int_equal(indexes[1], 2);
	snap_reader_close(r);

	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(
	    snap_write_record(w, 0x1234, 1, 0, "later", 5, err, sizeof(err)),
	    0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	r = snap_reader_open(c->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "snapshot: record 1 (unknown) at offset 0xa8: "
				 "unknown record type 0x1234 (not optional)");
	snap_reader_close(r);
}

/* Builds a memory record payload at file offset @payload_off the way the
 * format describes it, so that the reader's checks can be met one by one
 * with valid checksums. */
static uint8_t *mem_payload(uint64_t payload_off, uint64_t gpa, uint64_t size,
			    uint32_t ps, const uint64_t *pages, unsigned npages,
			    uint64_t stored, size_t extra, size_t *len)
{
	uint64_t nbits = size / ps, bm = ((nbits + 7) / 8 + 7) & ~7ull;
	uint64_t pad_off = payload_off + 32 + bm;
	uint64_t pages_off = (pad_off + ps - 1) & ~(uint64_t)(ps - 1);
	uint8_t *p;

	*len = (size_t)(pages_off - payload_off + stored * ps + extra);
	p = calloc(1, *len);
	assert_non_null(p);
	set_le64(p, gpa);
	set_le64(p + 8, size);
	set_le32(p + 16, ps);
	set_le64(p + 24, stored);
	for (unsigned i = 0; i < npages; i++)
		p[32 + pages[i] / 8] |= (uint8_t)(1u << (pages[i] % 8));
	memset(p + (pages_off - payload_off), 0xab, (size_t)(stored * ps));
	return p;
}

/* CONFIG "{}" at 128, so the memory payload starts at 128+40+32. */
#define MEM_PAYLOAD_OFF 200

static int write_mem_file(const char *path, uint16_t version, uint8_t *payload,
			  size_t len)
{
	char err[ERRLEN];
	struct snap_header h;
	struct snap_writer *w;

	test_header(&h);
	h.format_version = 1; /* these payloads are version 1 records */
	w = snap_writer_open(path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_record(w, SNAP_REC_MEMORY, version, 0,
					   payload, len, err, sizeof(err)),
			 0);
	free(payload);
	return snap_writer_commit(w, err, sizeof(err));
}

static void test_bad_memory_records(void **state)
{
	struct ctx *c = *state;
	const uint64_t two[] = { 0, 7 }, past[] = { 0, 510 };
	const uint64_t size = 2 << 20;
	struct guest_mem m;
	struct stat st;
	char err[ERRLEN];
	size_t len;
	uint8_t *p;

	assert_int_equal(guest_mem_init(&m, size), 0);

	/* Built by hand, it loads: the format is what the writer writes.
	 * This is the example in docs/snapshot-format.md. */
	p = mem_payload(MEM_PAYLOAD_OFF, 0, size, PS, two, 2, 2, 0, &len);
	assert_int_equal(len, 12088);
	assert_int_equal(p[32], 0x81);
	assert_int_equal(write_mem_file(c->path, 1, p, len), 0);
	assert_int_equal(stat(c->path, &st), 0);
	assert_int_equal(st.st_size, 12288 + 32);
	assert_int_equal(read_all(c->path, &m, err, sizeof(err)), 0);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&m, 7 * PS, 1), 0xab);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&m, 6 * PS, 1), 0);

	p = mem_payload(MEM_PAYLOAD_OFF, 0, size, PS, two, 2, 3, 0, &len);
	write_mem_file(c->path, 1, p, len);
	assert_read_fails(c->path, &m,
			  "bitmap marks 2 pages, the descriptor says 3");

	p = mem_payload(MEM_PAYLOAD_OFF, 0, size - 3 * PS, PS, past, 2, 2, 0,
			&len);
	write_mem_file(c->path, 1, p, len);
	assert_read_fails(c->path, &m, "bits past the region's last page");

	p = mem_payload(MEM_PAYLOAD_OFF, 0, size, PS, two, 2, 2, 8, &len);
	write_mem_file(c->path, 1, p, len);
	assert_read_fails(c->path, &m, "does not match the descriptor");

	p = mem_payload(MEM_PAYLOAD_OFF, 0, size, 8192, two, 2, 2, 0, &len);
	write_mem_file(c->path, 1, p, len);
	assert_read_fails(c->path, &m,
			  "page size 8192 differs from the header's 4096");

	p = mem_payload(MEM_PAYLOAD_OFF, 0, size + 100, PS, two, 2, 2, 0, &len);
	write_mem_file(c->path, 1, p, len);
	assert_read_fails(c->path, &m, "bad region");

	p = mem_payload(MEM_PAYLOAD_OFF, 1ull << 20, size, PS, two, 2, 2, 0,
			&len);
	write_mem_file(c->path, 1, p, len);
	assert_read_fails(c->path, &m, "matches no RAM region of this VM");

	p = mem_payload(MEM_PAYLOAD_OFF, 0, size, PS, two, 2, 2, 0, &len);
	set_le32(p + 20, 1);
	write_mem_file(c->path, 1, p, len);
	assert_read_fails(c->path, &m, "reserved descriptor field");

	p = mem_payload(MEM_PAYLOAD_OFF, 0, size, PS, two, 2, 2, 0, &len);
	p[32 + 64 + 5] = 1; /* in the padding before the pages */
	write_mem_file(c->path, 1, p, len);
	assert_read_fails(c->path, &m, "padding before the pages is not zero");

	p = mem_payload(MEM_PAYLOAD_OFF, 0, size, PS, two, 2, 2, 0, &len);
	write_mem_file(c->path, 2, p, len);
	assert_read_fails(c->path, &m, "memory record version 2");

	p = calloc(1, 16);
	write_mem_file(c->path, 1, p, 16);
	assert_read_fails(c->path, &m, "too short for a memory descriptor");
	guest_mem_destroy(&m);
}

/* The version 2 record of a 2 MiB region with pages 0 and 70 stored:
 * 8 chunks of 256 KiB, chunk 0 holds page 0 (block 0), chunk 1 page 70
 * (block 6), the others are zero. The example in docs/snapshot-format.md. */
static uint8_t *write_v2_small(const char *path, struct guest_mem *m,
			       size_t *len)
{
	char err[ERRLEN];
	struct snap_header h;
	struct snap_writer *w;

	assert_int_equal(guest_mem_init(m, 2 << 20), 0);
	fill_page(m, 0, 1);
	fill_page(m, 70, 2);
	test_header(&h);
	w = snap_writer_open(path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_memory(w, m, NULL, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	return slurp(path, len);
}

#define V2_REC 168 /* after the header and the 40-byte CONFIG record */
#define V2_DESC (V2_REC + 32)
#define V2_TABLE (V2_DESC + 64)
#define V2_DATA 4096

static void test_v2_exact_bytes(void **state)
{
	struct ctx *c = *state;
	static const uint8_t rec_head[16] = {
		0x08, 0x00, 0x00, 0x00, /* type MEMORY */
		0x02, 0x00, /* version 2 */
		0x00, 0x00, /* flags */
		0x38, 0x2f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 12088 */
	};
	static const uint8_t desc[64] = {
		0, 0,	 0,    0, 0, 0, 0, 0, /* gpa 0 */
		0, 0,	 0x20, 0, 0, 0, 0, 0, /* size 2 MiB */
		0, 0x10, 0,    0, /* page size 4096 */
		0, 0,	 0x04, 0, /* chunk size 256 KiB */
		0, 0x10, 0,    0, /* block size 4096 */
		0, 0,	 0,    0, /* reserved */
		8, 0,	 0,    0, 0, 0, 0, 0, /* 8 chunks */
		2, 0,	 0,    0, 0, 0, 0, 0, /* 2 stored */
		0, 0x20, 0,    0, 0, 0, 0, 0, /* 8192 data bytes */
		0, 0,	 0,    0, 0, 0, 0, 0, /* reserved */
	};
	uint8_t chunk[256 << 10], zero_entry[32] = { 0 }, *b, *e;
	XXH3_state_t *st = XXH3_createState();
	struct guest_mem m;
	size_t len;

	b = write_v2_small(c->path, &m, &len);
	assert_int_equal(len, V2_REC + 32 + 12088 + 32);
	assert_int_equal(le32(b + 8), 2); /* format version */
	assert_memory_equal(b + V2_REC, rec_head, sizeof(rec_head));
	assert_memory_equal(b + V2_DESC, desc, sizeof(desc));
	/* Chunk 0: data offset 0, 4096 bytes, raw, block 0. */
	e = b + V2_TABLE;
	assert_int_equal(le64(e), 0);
	assert_int_equal(le32(e + 8), 4096);
	assert_int_equal(e[12], 0);
	assert_int_equal(e[13], 0);
	assert_int_equal(le64(e + 16), 1);
	memset(chunk, 0, sizeof(chunk));
	memcpy(chunk, guest_mem_ptr(&m, 0, PS), PS);
	assert_int_equal(le64(e + 24), XXH3_64bits(chunk, sizeof(chunk)));
	/* Chunk 1: the next 4096 bytes, block 6 (page 70 = 64 + 6). */
	e += 32;
	assert_int_equal(le64(e), 4096);
	assert_int_equal(le32(e + 8), 4096);
	assert_int_equal(le64(e + 16), 1ull << 6);
	memset(chunk, 0, sizeof(chunk));
	memcpy(chunk + 6 * PS, guest_mem_ptr(&m, 70 * PS, PS), PS);
	assert_int_equal(le64(e + 24), XXH3_64bits(chunk, sizeof(chunk)));
	/* Chunks 2..7: the zero flag and nothing else. */
	zero_entry[13] = SNAP_CHUNK_ZERO;
	for (unsigned i = 2; i < 8; i++)
		assert_memory_equal(b + V2_TABLE + i * 32, zero_entry, 32);
	/* Zero padding up to the page-aligned data area, then the pages. */
	for (size_t i = V2_TABLE + 256; i < V2_DATA; i++)
		assert_int_equal(b[i], 0);
	assert_memory_equal(b + V2_DATA, guest_mem_ptr(&m, 0, PS), PS);
	assert_memory_equal(b + V2_DATA + PS, guest_mem_ptr(&m, 70 * PS, PS),
			    PS);
	/* The record checksum covers header, descriptor, table and padding,
	 * not the chunks. */
	{
		uint8_t hdr[32];

		memcpy(hdr, b + V2_REC, 32);
		memset(hdr + 16, 0, 8);
		XXH3_64bits_reset(st);
		XXH3_64bits_update(st, hdr, 32);
		XXH3_64bits_update(st, b + V2_DESC, V2_DATA - V2_DESC);
		assert_int_equal(le64(b + V2_REC + 16), XXH3_64bits_digest(st));
	}
	assert_int_equal(le32(b + V2_DATA + 2 * PS), SNAP_REC_END);
	XXH3_freeState(st);
	free(b);
	guest_mem_destroy(&m);
}

/* Recomputes a version 2 memory record's checksum (its header, descriptor,
 * table and padding, up to the data area). */
static void fix_v2_checksum(uint8_t *b)
{
	XXH3_state_t *st = XXH3_createState();
	uint8_t hdr[32];

	memcpy(hdr, b + V2_REC, 32);
	memset(hdr + 16, 0, 8);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, hdr, 32);
	XXH3_64bits_update(st, b + V2_DESC, V2_DATA - V2_DESC);
	set_le64(b + V2_REC + 16, XXH3_64bits_digest(st));
	XXH3_freeState(st);
}

/* Damaged chunk tables and chunks: each refused with one line. */
static void test_v2_bad_tables(void **state)
{
	struct ctx *c = *state;
	struct guest_mem m;
	size_t len;
	uint8_t *b;

	b = write_v2_small(c->path, &m, &len);

#define V2_CASE(edit, expect)                          \
	do {                                           \
		uint8_t *x = malloc(len);              \
		assert_non_null(x);                    \
		memcpy(x, b, len);                     \
		edit;                                  \
		fix_v2_checksum(x);                    \
		spit(c->bad, x, len);                  \
		assert_read_fails(c->bad, &m, expect); \
		free(x);                               \
	} while (0)

	/* lz4 claimed for bytes that did not shrink: no writer does that. */
	V2_CASE(x[V2_TABLE + 12] = SNAP_CODEC_LZ4,
		"chunk 0: 4096 bytes (lz4) at data offset 0x0, expected "
		"1..4095 at 0x0");
	V2_CASE(x[V2_TABLE + 12] = 3,
		"chunk 0: unknown codec 3 (this stasis reads none, lz4 and "
		"zstd)");
	V2_CASE(x[V2_TABLE + 2 * 32 + 13] = SNAP_CHUNK_ZERO | SNAP_CHUNK_PARENT,
		"chunk 2 is held by a parent snapshot");
	V2_CASE(x[V2_TABLE + 13] = 0x4, "chunk 0: unknown flags 0x4");
	V2_CASE(x[V2_TABLE + 14] = 1, "reserved bits set");
	V2_CASE(x[V2_TABLE + 3 * 32 + 16] = 1, "zero chunk 3 has data fields");
	V2_CASE(set_le32(x + V2_TABLE + 8, 8192),
		"chunk 0: 8192 bytes (none) at data offset 0x0, expected 4096 "
		"at 0x0");
	V2_CASE(set_le64(x + V2_TABLE + 32, 0),
		"chunk 1: 4096 bytes (none) at data offset 0x0, expected 4096 "
		"at 0x1000");
	V2_CASE(set_le64(x + V2_TABLE + 16, 0), "chunk 0: bad block mask");
	V2_CASE(
	    set_le64(x + V2_DESC + 40, 3),
	    "the table holds 2 chunks of 8192 bytes, the descriptor says 3");
	V2_CASE(set_le64(x + V2_DESC + 32, 9), "9 chunks (2 stored)");
	V2_CASE(set_le32(x + V2_DESC + 20, 4096), "bad chunk geometry");
	V2_CASE(set_le32(x + V2_DESC + 24, 2048), "bad chunk geometry");
	V2_CASE(set_le32(x + V2_DESC + 24, 8192),
		"chunk 0: 4096 bytes (none) at data offset 0x0, expected 8192 "
		"at 0x0");
	V2_CASE(set_le32(x + V2_DESC + 28, 1), "reserved descriptor field");
	V2_CASE(x[V2_TABLE + 300] = 1, "padding before the chunks");
	/* A flipped byte in a chunk: the record checksum does not cover it,
	 * the chunk's own does, and the line names where it is. */
	V2_CASE(x[V2_DATA + PS + 17] ^= 0x20,
		"memory chunk 1 (guest 0x40000-0x7ffff) at file offset "
		"0x2000: checksum mismatch");
	/* A damaged table without a fixed checksum. */
	{
		uint8_t *x = malloc(len);

		memcpy(x, b, len);
		x[V2_TABLE + 40] ^= 1;
		spit(c->bad, x, len);
		assert_read_fails(c->bad, &m,
				  "record 1 (MEMORY) at offset "
				  "0xa8: checksum mismatch");
		free(x);
	}
	/* Cut anywhere in the record: refused. */
	spit(c->bad, b, len);
	for (size_t n = V2_REC; n < len; n += 97) {
		assert_int_equal(truncate(c->bad, (off_t)n), 0);
		assert_read_fails(c->bad, &m, NULL);
		spit(c->bad, b, len);
	}
#undef V2_CASE
	free(b);
	guest_mem_destroy(&m);
}

/* snap_read_chunk on its own: the page source primitive lazy restores
 * use. Whole chunks come back verified, zero-filled where not stored. */
static void test_v2_read_chunk(void **state)
{
	struct ctx *c = *state;
	uint8_t *b, *chunk = malloc(256 << 10);
	struct snap_chunk_table t;
	struct guest_mem m, dst;
	struct snap_reader *r;
	struct snap_record rec;
	char err[ERRLEN];
	unsigned region;
	size_t len;

	b = write_v2_small(c->path, &m, &len);
	assert_int_equal(guest_mem_init(&dst, 2 << 20), 0);
	r = snap_reader_open(c->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec.type, SNAP_REC_MEMORY);
	assert_int_equal(snap_read_memory_table(r, &rec, &dst, &t, &region, err,
						sizeof(err)),
			 0);
	assert_int_equal(region, 0);
	assert_int_equal(t.nchunks, 8);
	assert_int_equal(t.stored_chunks, 2);
	assert_int_equal(t.chunks[1].file_off, V2_DATA + PS);
	memset(chunk, 0x5a, 256 << 10);
	assert_int_equal(snap_read_chunk(&t, 1, chunk, true, err, sizeof(err)),
			 0);
	assert_memory_equal(chunk, guest_mem_ptr(&m, 64 * PS, 256 << 10),
			    256 << 10);
	memset(chunk, 0x5a, 256 << 10);
	assert_int_equal(snap_read_chunk(&t, 5, chunk, true, err, sizeof(err)),
			 0);
	assert_memory_equal(
	    chunk, guest_mem_ptr(&m, 5 * (256 << 10), 256 << 10), 256 << 10);
	assert_int_equal(snap_read_chunk(&t, 8, chunk, true, err, sizeof(err)),
			 -EINVAL);
	/* The file cut short after the table was read. */
	assert_int_equal(truncate(c->path, V2_DATA + PS + 100), 0);
	assert_int_equal(snap_read_chunk(&t, 1, chunk, true, err, sizeof(err)),
			 -ENODATA);
	assert_string_equal(err, "snapshot: memory chunk 1 (guest "
				 "0x40000-0x7ffff) at file offset 0x2000: "
				 "unexpected end of file (the snapshot was "
				 "truncated)");
	snap_chunk_table_free(&t);
	snap_reader_close(r);
	free(chunk);
	free(b);
	guest_mem_destroy(&m);
	guest_mem_destroy(&dst);
}

/* A migration's destination (snap_load_chunks_held): memory already
 * holds chunks 0 and 1 as the source has them, and stale copies of 2
 * and 4, which the stream holds (2 rewritten, 4 zero now); the load
 * makes memory the source's, copying only what the stream holds, and a
 * chunk left to memory whose last check failed is refused. */
static void test_held_chunks(void **state)
{
	const uint64_t cs = 256 << 10, pages = cs / PS;
	struct ctx *c = *state;
	uint8_t held[8] = { SNAP_HELD_CHECKED,	 SNAP_HELD_CHECKED,
			    SNAP_HELD_UNCHECKED, SNAP_HELD_NONE,
			    SNAP_HELD_UNCHECKED, SNAP_HELD_NONE,
			    SNAP_HELD_NONE,	 SNAP_HELD_NONE };
	uint64_t sel[1] = { 1u << 2 | 1u << 4 }, h, h2;
	/* Page bitmaps: every page, and chunk 2's one written page. */
	uint64_t all[1] = { ~0ull }, sent[8] = { 0 };
	const uint64_t *sels[1] = { sel };
	struct guest_mem src, dst;
	struct snap_chunk_table t;
	struct snap_header hd;
	struct snap_writer *w;
	struct snap_reader *r;
	struct snap_record rec;
	char err[ERRLEN] = "";

	assert_int_equal(guest_mem_init(&src, 2 << 20), 0);
	assert_int_equal(guest_mem_init(&dst, 2 << 20), 0);
	for (uint64_t p = 0; p < 2 * pages; p++)
		fill_page(&src, p, (uint8_t)p);
	fill_page(&src, 2 * pages + 3, 9); /* chunk 2: one page */
	sent[(2 * pages + 3) / 64] |= 1ull << ((2 * pages + 3) % 64);
	memcpy(guest_mem_ptr(&dst, 0, 2 * cs), guest_mem_ptr(&src, 0, 2 * cs),
	       2 * cs);
	fill_page(&dst, 2 * pages + 5, 1); /* stale */
	fill_page(&dst, 4 * pages, 2); /* written, zero at the source */

	/* The hash pre-copy sends is the table's: blocks left out of the
	 * mask count as the zeros they are. */
	assert_int_equal(snap_hash_chunk(guest_mem_ptr(&src, 2 * cs, cs), cs,
					 PS, all, 0, &h),
			 0);
	assert_int_equal(snap_hash_chunk(guest_mem_ptr(&src, 2 * cs, cs), cs,
					 PS, sent, 2 * pages, &h2),
			 0);
	assert_true(h == h2);

	test_header(&hd);
	w = snap_writer_open(c->path, &hd, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0,
					   config_json, strlen(config_json),
					   err, sizeof(err)),
			 0);
	if (snap_write_memory_layer(w, &src, sels, NULL, err, sizeof(err)))
		fail_msg("%s", err);
	if (snap_writer_commit(w, err, sizeof(err)))
		fail_msg("%s", err);

	r = snap_reader_open(c->path, err, sizeof(err));
	assert_non_null(r);
	snap_reader_set_layer(r, true);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec.type, SNAP_REC_MEMORY);
	if (snap_read_chunk_table(r, &rec, 0, 2 << 20, &t, err, sizeof(err)))
		fail_msg("%s", err);
	assert_true(t.chunks[0].flags & SNAP_CHUNK_PARENT);
	assert_true(t.chunks[4].flags & SNAP_CHUNK_ZERO);
	assert_true(t.chunks[2].hash == h);
	if (snap_load_chunks_held(&t, &dst, 0, held, err, sizeof(err)))
		fail_msg("%s", err);
	assert_memory_equal(guest_mem_ptr(&dst, 0, 2 << 20),
			    guest_mem_ptr(&src, 0, 2 << 20), 2 << 20);

	/* Chunk 1's copy failed its last check, and the stream leaves it to
	 * memory: refused. */
	held[1] = SNAP_HELD_UNCHECKED;
	assert_int_equal(
	    snap_load_chunks_held(&t, &dst, 0, held, err, sizeof(err)),
	    -EBADMSG);
	assert_contains(err, "memory chunk 1 (guest 0x40000-0x7ffff)");
	assert_contains(err, "a write the dirty page log missed");
	snap_chunk_table_free(&t);
	snap_reader_close(r);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

/* RAM in two regions around the 4 GiB hole: only touched pages are read,
 * stored and restored; the rest stays unallocated on both sides. */
static void test_two_regions(void **state)
{
	struct ctx *c = *state;
	const uint64_t size = (3ull << 30) + (16ull << 20);
	const uint64_t gpas[] = { 0, 0xbffff000, GUEST_MEM_HIGH_BASE,
				  GUEST_MEM_HIGH_BASE + (16ull << 20) - PS };
	struct guest_mem src, dst;
	char err[ERRLEN];

	assert_int_equal(guest_mem_init(&src, size), 0);
	assert_int_equal(src.nregions, 2);
	for (unsigned i = 0; i < 4; i++) {
		uint8_t *p = guest_mem_ptr(&src, gpas[i], PS);

		memset(p, 0x10 + i, PS);
	}
	write_snapshot(c->path, &src, NULL);
	assert_int_equal(memfd_allocated(&src), 4 * PS);

	assert_int_equal(guest_mem_init(&dst, size), 0);
	if (read_all(c->path, &dst, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(memfd_allocated(&dst), 4 * PS);
	for (unsigned i = 0; i < 4; i++)
		assert_memory_equal(guest_mem_ptr(&dst, gpas[i], PS),
				    guest_mem_ptr(&src, gpas[i], PS), PS);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

/* 2 MiB pages: stored pages still start on a page boundary in the file,
 * after almost 2 MiB of padding. */
static void test_huge_page_size(void **state)
{
	struct ctx *c = *state;
	const uint32_t ps = 2u << 20;
	struct snap_memory_desc desc;
	struct snap_header h;
	struct snap_writer *w;
	struct snap_reader *r;
	struct snap_record rec;
	struct guest_mem src, dst;
	char err[ERRLEN];
	uint8_t *p;

	assert_int_equal(guest_mem_init(&src, 8 << 20), 0);
	p = guest_mem_ptr(&src, (2 << 20) + 12345, 1);
	*p = 0x42;
	test_header(&h);
	h.page_size = ps;
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	if (snap_write_memory(w, &src, NULL, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);

	assert_int_equal(guest_mem_init(&dst, 8 << 20), 0);
	r = snap_reader_open(c->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(snap_reader_header(r)->page_size, ps);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(
	    snap_read_memory_desc(r, &rec, &desc, err, sizeof(err)), 0);
	assert_int_equal(desc.stored_pages, 1);
	/* Descriptor and bitmap at 200, the page at 2 MiB, END after. */
	assert_int_equal(rec.offset, 200);
	assert_int_equal(rec.length, ps - 200 + ps);
	if (snap_read_memory(r, &rec, &dst, NULL, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 0);
	snap_reader_close(r);
	assert_memory_equal(dst.host, src.host, 8 << 20);
	guest_mem_destroy(&src);
	guest_mem_destroy(&dst);
}

/* A payload bigger than the reader's buffer is verified in pieces. */
static void test_large_payload(void **state)
{
	struct ctx *c = *state;
	const size_t big = (3u << 20) + 5;
	struct snap_header h;
	struct snap_writer *w;
	struct snap_reader *r;
	struct snap_record rec;
	char err[ERRLEN];
	uint8_t *data, *buf;
	void *back;
	size_t len;

	data = malloc(big);
	for (size_t i = 0; i < big; i++)
		data[i] = (uint8_t)(i * 31 + (i >> 12));
	test_header(&h);
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_record(w, SNAP_REC_DEVICE, 3, 0, data, big,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);

	r = snap_reader_open(c->path, err, sizeof(err));
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec.length, big);
	assert_int_equal(snap_verify_record(r, &rec, err, sizeof(err)), 0);
	assert_int_equal(
	    snap_read_payload(r, &rec, big, &back, err, sizeof(err)), 0);
	assert_memory_equal(back, data, big);
	free(back);
	/* A record that does not lie in the file is refused. */
	rec.length = big + 100;
	assert_int_equal(snap_verify_record(r, &rec, err, sizeof(err)),
			 -EINVAL);
	snap_reader_close(r);

	/* A flip in the last megabyte is found by the streamed check. */
	buf = slurp(c->path, &len);
	buf[len - 40] ^= 4;
	spit(c->bad, buf, len);
	r = snap_reader_open(c->bad, err, sizeof(err));
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(snap_verify_record(r, &rec, err, sizeof(err)),
			 -EBADMSG);
	assert_contains(err, "record 1 (DEVICE) at offset 0xa8: checksum");
	snap_reader_close(r);
	free(buf);
	free(data);
}

static void test_writer_rules(void **state)
{
	struct ctx *c = *state;
	struct snap_header h;
	struct snap_writer *w;
	struct guest_mem m;
	char err[ERRLEN];

	test_header(&h);
	assert_int_equal(guest_mem_init(&m, 2 << 20), 0);
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(
	    snap_write_record(w, SNAP_REC_VCPU, 1, 0, "x", 1, err, sizeof(err)),
	    -EINVAL);
	assert_contains(err, "the first record must be CONFIG");
	assert_int_equal(snap_write_memory(w, &m, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_contains(err, "the first record must be CONFIG, not MEMORY");
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 4, "{}", 2,
					   err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(
	    snap_write_record(w, SNAP_REC_END, 0, 0, NULL, 0, err, sizeof(err)),
	    -EINVAL);
	/* Committing nothing fails and leaves nothing behind. */
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), -EINVAL);
	assert_int_equal(access(c->path, F_OK), -1);
	assert_int_equal(count_temp_files(c->dir), 0);

	/* RAM that is not a whole number of pages. */
	h.page_size = 8192;
	guest_mem_destroy(&m);
	assert_int_equal(guest_mem_init(&m, (2 << 20) + 4096), 0);
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_memory(w, &m, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_contains(err, "not aligned to the page size 8192");
	snap_writer_abort(w);
	assert_int_equal(count_temp_files(c->dir), 0);

	h.page_size = 5000;
	assert_null(snap_writer_open(c->path, &h, err, sizeof(err)));
	assert_contains(err, "invalid header");
	test_header(&h);
	memset(h.stasis_version, 'x', sizeof(h.stasis_version));
	assert_null(snap_writer_open(c->path, &h, err, sizeof(err)));
	test_header(&h);
	assert_null(
	    snap_writer_open("/nonexistent/dir/vm.snap", &h, err, sizeof(err)));
	assert_contains(err, "No such file or directory");
	assert_null(snap_writer_open("/tmp/", &h, err, sizeof(err)));
	assert_contains(err, "names a directory");
	/* A relative path writes in the current directory. */
	assert_int_equal(chdir(c->dir), 0);
	w = snap_writer_open("rel.snap", &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	assert_int_equal(access("rel.snap", F_OK), 0);
	assert_int_equal(chdir("/"), 0);
	snap_writer_abort(NULL);
	guest_mem_destroy(&m);
}

static void write_old(const char *path)
{
	spit(path, "old snapshot", 12);
}

static void assert_old(const char *path)
{
	size_t len;
	uint8_t *b = slurp(path, &len);

	assert_int_equal(len, 12);
	assert_memory_equal(b, "old snapshot", 12);
	free(b);
}

static void test_commit_replaces_abort_keeps(void **state)
{
	struct ctx *c = *state;
	struct snap_header h;
	struct snap_writer *w;
	struct guest_mem m;
	struct stat st;
	char err[ERRLEN];

	write_old(c->path);
	test_header(&h);
	assert_int_equal(guest_mem_init(&m, 2 << 20), 0);
	fill_page(&m, 3, 3);

	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(count_temp_files(c->dir), 1);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_memory(w, &m, NULL, err, sizeof(err)), 0);
	assert_old(c->path);
	snap_writer_abort(w);
	assert_old(c->path);
	assert_int_equal(count_temp_files(c->dir), 0);

	write_snapshot(c->path, &m, NULL);
	assert_int_equal(count_temp_files(c->dir), 0);
	assert_int_equal(read_all(c->path, &m, err, sizeof(err)), 0);
	/* Guest memory is private: the file is not readable by others. */
	assert_int_equal(stat(c->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	guest_mem_destroy(&m);
}

/* A writer killed before commit leaves the old file and, at most, one
 * stray temporary file. */
static void test_killed_writer(void **state)
{
	struct ctx *c = *state;
	struct dirent *e;
	int status, stray = 0;
	pid_t pid;
	DIR *d;

	write_old(c->path);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct snap_header h;
		struct snap_writer *w;
		struct guest_mem m;
		char err[ERRLEN];

		test_header(&h);
		if (guest_mem_init(&m, 2 << 20))
			_exit(1);
		memset(m.host, 1, 1 << 20);
		w = snap_writer_open(c->path, &h, err, sizeof(err));
		if (!w ||
		    snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2, err,
				      sizeof(err)) ||
		    snap_write_memory(w, &m, NULL, err, sizeof(err)))
			_exit(1);
		raise(SIGKILL);
		_exit(1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_old(c->path);
	d = opendir(c->dir);
	while ((e = readdir(d))) {
		if (!strncmp(e->d_name, ".vm.snap.tmp.", 13))
			stray++;
	}
	closedir(d);
	assert_int_equal(stray, 1);
}

/* Fills a disk mid-write: the error says why, the old file survives and
 * no temporary file is left. With @fsize_limit, RLIMIT_FSIZE plays the
 * full disk and the write fails with EFBIG. */
static void write_until_full(const char *dir, bool fsize_limit, int expect)
{
	char path[256], err[ERRLEN];
	struct rlimit old, lim;
	struct snap_header h;
	struct snap_writer *w;
	struct guest_mem m;
	int ret;

	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	write_old(path);
	test_header(&h);
	/* Before the limit, which applies to the memfd as well. */
	assert_int_equal(guest_mem_init(&m, 8 << 20), 0);
	memset(m.host, 0x5a, 4 << 20);
	if (fsize_limit) {
		/* Without SIG_IGN the kernel kills us with SIGXFSZ instead
		 * of failing the write with EFBIG. */
		signal(SIGXFSZ, SIG_IGN);
		assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
		lim = old;
		lim.rlim_cur = 256 << 10;
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	}
	w = snap_writer_open(path, &h, err, sizeof(err));
	if (!w)
		fail_msg("%s", err);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	ret = snap_write_memory(w, &m, NULL, err, sizeof(err));
	assert_int_equal(ret, expect);
	assert_contains(err, strerror(-expect));
	assert_contains(err, "record 1 (MEMORY)");
	/* Later writes and the commit refuse: the file has a hole. */
	assert_int_equal(
	    snap_write_record(w, SNAP_REC_VCPU, 1, 0, "x", 1, err, sizeof(err)),
	    expect);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), expect);
	if (fsize_limit) {
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
		signal(SIGXFSZ, SIG_DFL);
	}
	assert_old(path);
	assert_int_equal(count_temp_files(dir), 0);
	unlink(path);
	guest_mem_destroy(&m);
}

static void test_file_size_limit(void **state)
{
	struct ctx *c = *state;

	write_until_full(c->dir, true, -EFBIG);
}

static void test_disk_full(void **state)
{
	struct ctx *c = *state;
	char small[128];

	snprintf(small, sizeof(small), "%s/small", c->dir);
	assert_int_equal(mkdir(small, 0700), 0);
	/* A private mount namespace, so the tmpfs cannot outlive us. */
	if (unshare(CLONE_NEWNS) ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", small, "tmpfs", 0, "size=1m,mode=0700")) {
		print_message("cannot mount a 1 MiB tmpfs (%s): failing the "
			      "write with RLIMIT_FSIZE instead\n",
			      strerror(errno));
		write_until_full(small, true, -EFBIG);
	} else {
		write_until_full(small, false, -ENOSPC);
		assert_int_equal(umount2(small, 0), 0);
	}
	assert_int_equal(rmdir(small), 0);
}

/* ---- compressed chunks ---- */

/* 8 MiB of RAM with fill_guest's pages, text-like lines in chunk 8 (they
 * compress well), and chunk 9 random (it does not, so it is stored raw).
 * Written with @comp on two threads. */
static void write_compressed(const char *path, struct guest_mem *m,
			     const struct snap_compress *comp,
			     struct snap_progress *progress, uint64_t *stored)
{
	static const char *const words[] = { "page",  "cache", "dentry",
					     "inode", "sched", "kworker" };
	char err[ERRLEN] = "";
	struct snap_header h;
	struct snap_writer *w;
	uint64_t x = 88172645463325252ull;
	uint8_t *p;

	assert_int_equal(guest_mem_init(m, 8 << 20), 0);
	*stored = fill_guest(m);
	p = guest_mem_ptr(m, 8 * (256 << 10), 256 << 10);
	for (size_t at = 0, i = 0; at < (256 << 10) - 32; i++)
		at += (size_t)sprintf((char *)p + at, "%s %zu\n", words[i % 6],
				      i * 37 % 1000);
	*stored = 0;
	p = guest_mem_ptr(m, 9 * (256 << 10), 256 << 10);
	for (size_t i = 0; i < (256 << 10); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
	for (uint64_t pg = 0; pg < (8u << 20) / PS; pg++)
		if (!all_zero_page(guest_mem_ptr(m, pg * PS, PS)))
			(*stored)++;
	test_header(&h);
	w = snap_writer_open(path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_writer_set_compress(w, comp, 2), 0);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	if (snap_write_memory(w, m, progress, err, sizeof(err)))
		fail_msg("%s", err);
	if (snap_writer_commit(w, err, sizeof(err)))
		fail_msg("%s", err);
}

/* Each codec: the memory comes back exactly, by a whole-record restore
 * and chunk by chunk (what a lazy restore does); the table says which
 * chunks are compressed; random data falls back to raw; a mapping restore
 * refuses the file in one line. */
static void test_compress_round_trip(void **state)
{
	static const struct snap_compress codecs[] = {
		{ SNAP_CODEC_RAW, 0 },	 { SNAP_CODEC_LZ4, 0 },
		{ SNAP_CODEC_ZSTD, 0 },	 { SNAP_CODEC_ZSTD, 3 },
		{ SNAP_CODEC_ZSTD, 19 },
	};
	struct ctx *c = *state;
	uint8_t *chunk = malloc(256 << 10);

	for (unsigned k = 0; k < sizeof(codecs) / sizeof(codecs[0]); k++) {
		struct snap_progress wp = { 0 };
		struct snap_memory_desc d;
		struct snap_chunk_table t;
		struct guest_mem src, dst;
		struct snap_reader *r;
		struct snap_record rec;
		char err[ERRLEN];
		uint64_t stored;
		unsigned region;
		struct stat st;

		write_compressed(c->path, &src, &codecs[k], &wp, &stored);
		assert_int_equal(wp.total_bytes, stored * PS);
		assert_int_equal(wp.done_bytes, stored * PS);
		assert_int_equal(stat(c->path, &st), 0);
		if (codecs[k].codec == SNAP_CODEC_RAW)
			assert_true((uint64_t)st.st_size > stored * PS);
		else /* the text chunk shrinks to a fraction */
			assert_true((uint64_t)st.st_size <
				    stored * PS - (128 << 10));

		assert_int_equal(guest_mem_init(&dst, 8 << 20), 0);
		fill_page(&dst, 5, 0x55);
		if (read_all(c->path, &dst, err, sizeof(err)))
			fail_msg("%s: %s", snap_codec_name(codecs[k].codec),
				 err);
		assert_memory_equal(src.host, dst.host, 8 << 20);

		r = snap_reader_open(c->path, err, sizeof(err));
		assert_non_null(r);
		assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)),
				 1);
		assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)),
				 1);
		assert_int_equal(
		    snap_read_memory_desc(r, &rec, &d, err, sizeof(err)), 0);
		assert_int_equal(d.raw_bytes, stored * PS);
		/* The file is its chunks, a table of 1 KiB and headers. */
		assert_true(d.stored_bytes < (uint64_t)st.st_size);
		assert_true((uint64_t)st.st_size - d.stored_bytes < 4 * PS);
		if (codecs[k].codec == SNAP_CODEC_RAW) {
			assert_int_equal(d.codec_chunks[SNAP_CODEC_RAW],
					 d.stored_chunks);
		} else {
			/* Chunk 9, the random one, is raw; chunk 8, the
			 * text, compressed. */
			assert_true(d.codec_chunks[SNAP_CODEC_RAW] >= 1);
			assert_true(d.codec_chunks[codecs[k].codec] >= 1);
			assert_int_equal(d.codec_chunks[SNAP_CODEC_RAW] +
					     d.codec_chunks[codecs[k].codec],
					 d.stored_chunks);
		}
		assert_int_equal(snap_read_memory_table(r, &rec, &dst, &t,
							&region, err,
							sizeof(err)),
				 0);
		assert_int_equal(t.chunks[9].codec, SNAP_CODEC_RAW);
		assert_int_equal(t.chunks[8].codec, codecs[k].codec);
		for (uint64_t i = 0; i < t.nchunks; i++) {
			memset(chunk, 0xa5, 256 << 10);
			if (snap_read_chunk(&t, i, chunk, true, err,
					    sizeof(err)))
				fail_msg("chunk %" PRIu64 ": %s", i, err);
			assert_memory_equal(
			    chunk,
			    guest_mem_ptr(&src, i * (256 << 10), 256 << 10),
			    256 << 10);
		}
		snap_chunk_table_free(&t);
		snap_reader_close(r);

		r = snap_reader_open(c->path, err, sizeof(err));
		assert_non_null(r);
		snap_reader_set_map_memory(r, true);
		assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)),
				 1);
		assert_int_equal(snap_reader_next(r, &rec, err, sizeof(err)),
				 1);
		if (codecs[k].codec == SNAP_CODEC_RAW) {
			assert_int_equal(snap_read_memory(r, &rec, &dst, NULL,
							  err, sizeof(err)),
					 0);
			assert_memory_equal(src.host, dst.host, 8 << 20);
		} else {
			assert_int_equal(snap_read_memory(r, &rec, &dst, NULL,
							  err, sizeof(err)),
					 -EOPNOTSUPP);
			assert_contains(err, "is compressed (");
			assert_contains(err, ") and cannot be mapped: restore "
					     "with --memory copy or ondemand");
			assert_null(strchr(err, '\n'));
		}
		snap_reader_close(r);
		guest_mem_destroy(&src);
		guest_mem_destroy(&dst);
	}
	free(chunk);
}

/* Recomputes the checksum of the version 2 memory record at @off (header,
 * descriptor, table, padding up to the data area). */
static void fix_mem2_checksum(uint8_t *b, size_t off)
{
	uint64_t n = le64(b + off + 32 + 32);
	size_t data = (off + 32 + 64 + 32 * n + PS - 1) & ~(size_t)(PS - 1);
	XXH3_state_t *st = XXH3_createState();
	uint8_t hdr[32];

	memcpy(hdr, b + off, 32);
	memset(hdr + 16, 0, 8);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, hdr, 32);
	XXH3_64bits_update(st, b + off + 32, data - off - 32);
	set_le64(b + off + 16, XXH3_64bits_digest(st));
	XXH3_freeState(st);
}

/* Damaged compressed chunks are refused in one line naming the chunk:
 * bytes flipped in the compressed data, and a table entry claiming fewer
 * blocks than the data decompresses to. */
static void test_compress_damaged(void **state)
{
	static const struct snap_compress codecs[] = {
		{ SNAP_CODEC_LZ4, 0 },
		{ SNAP_CODEC_ZSTD, 0 },
	};
	struct ctx *c = *state;

	for (unsigned k = 0; k < 2; k++) {
		struct guest_mem src;
		uint64_t stored, e, off, slen;
		size_t len, rec;
		char err[ERRLEN];
		uint8_t *b, *x;

		write_compressed(c->path, &src, &codecs[k], NULL, &stored);
		b = slurp(c->path, &len);
		rec = record_at(b, len, 1);
		/* Chunk 8 (the text), fully stored, compressed. */
		e = rec + 32 + 64 + 8 * 32;
		assert_int_equal(b[e + 12], codecs[k].codec);
		assert_int_equal(le64(b + e + 16), ~0ull);
		off =
		    ((rec + 32 + 64 + 32 * 32 + PS - 1) & ~(uint64_t)(PS - 1)) +
		    le64(b + e);
		slen = le32(b + e + 8);
		x = malloc(len);

		/* Flips anywhere in the compressed bytes. */
		for (uint64_t at = 0; at < slen; at += slen / 7 + 1) {
			memcpy(x, b, len);
			x[off + at] ^= 0x5a;
			spit(c->bad, x, len);
			assert_int_equal(
			    read_all(c->bad, &src, err, sizeof(err)) < 0, 1);
			assert_contains(err, "snapshot: memory chunk 8 (guest "
					     "0x200000-0x23ffff) at file "
					     "offset 0x");
			assert_null(strchr(err, '\n'));
		}
		/* One block fewer than was compressed. */
		memcpy(x, b, len);
		set_le64(x + e + 16, ~0ull >> 1);
		fix_mem2_checksum(x, rec);
		spit(c->bad, x, len);
		assert_true(read_all(c->bad, &src, err, sizeof(err)) < 0);
		if (codecs[k].codec == SNAP_CODEC_ZSTD)
			assert_contains(err, "zstd data decompresses to 262144 "
					     "bytes, not 258048");
		else
			assert_contains(err, "damaged lz4 data");
		/* Cut inside the compressed chunk. */
		spit(c->bad, b, off + slen / 2);
		assert_true(read_all(c->bad, &src, err, sizeof(err)) < 0);
		free(x);
		free(b);
		guest_mem_destroy(&src);
	}
}

/* The writer refuses what it cannot write. */
static void test_compress_rules(void **state)
{
	struct ctx *c = *state;
	struct snap_compress bad = { 7, 0 }, lz4 = { SNAP_CODEC_LZ4, 0 };
	struct snap_compress lvl = { SNAP_CODEC_ZSTD, 20 };
	char err[ERRLEN];
	struct snap_header h;
	struct snap_writer *w;

	test_header(&h);
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_writer_set_compress(w, &bad, 1), -EINVAL);
	assert_int_equal(snap_writer_set_compress(w, &lvl, 1), -EINVAL);
	assert_int_equal(snap_writer_set_compress(w, &lz4, 0), 0);
	snap_writer_abort(w);
	h.format_version = 1; /* format 1 has no chunks to compress */
	w = snap_writer_open(c->path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_writer_set_compress(w, &lz4, 1), -EINVAL);
	snap_writer_abort(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
		T(test_round_trip),
		T(test_round_trip_v1),
		T(test_mapped_restore),
		T(test_layout_and_size),
		T(test_exact_bytes),
		T(test_truncated_anywhere),
		T(test_bit_flip_anywhere),
		T(test_bad_headers),
		T(test_bad_records),
		T(test_unknown_records),
		T(test_bad_memory_records),
		T(test_v2_exact_bytes),
		T(test_v2_bad_tables),
		T(test_v2_read_chunk),
		T(test_held_chunks),
		T(test_compress_round_trip),
		T(test_compress_damaged),
		T(test_compress_rules),
		T(test_two_regions),
		T(test_huge_page_size),
		T(test_large_payload),
		T(test_writer_rules),
		T(test_commit_replaces_abort_keeps),
		T(test_killed_writer),
		T(test_file_size_limit),
		T(test_disk_full),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
