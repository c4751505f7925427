/* libFuzzer target for the snapshot reader: any bytes, read the way a
 * restore reads them, must fail cleanly or load, never crash or over-read. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "snapshot/chain.h"
#include "snapshot/snapfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PAYLOAD 4096u /* small, so the -EFBIG path is reached too */

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void set_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Rewrites the header and record checksums so that mutated files get
 * past them and reach the structural checks behind. */
static void fix_checksums(uint8_t *b, size_t size)
{
	XXH3_state_t *st;
	size_t off = SNAP_HEADER_SIZE;

	if (size < SNAP_HEADER_SIZE)
		return;
	set_le64(b + 120, XXH3_64bits(b, 120));
	st = XXH3_createState();
	if (!st)
		return;
	while (size - off >= SNAP_RECORD_HEADER_SIZE) {
		uint64_t len = le64(b + off + 8);
		uint8_t hdr[SNAP_RECORD_HEADER_SIZE];

		if (len > size - off - SNAP_RECORD_HEADER_SIZE)
			break;
		uint64_t covered = len;

		/* A version 2 MEMORY record's checksum stops at its data
		 * area: descriptor, chunk table, padding to a page. */
		if (le64(b + off) == (SNAP_REC_MEMORY | 2ull << 32) &&
		    len >= 64) {
			uint64_t t =
			    off + SNAP_RECORD_HEADER_SIZE + 64 +
			    le64(b + off + SNAP_RECORD_HEADER_SIZE + 32) * 32;
			uint64_t ps =
			    le64(b + off + SNAP_RECORD_HEADER_SIZE + 16) &
			    0xffffffffull;

			if (ps && !(ps & (ps - 1)) && t > off &&
			    ((t + ps - 1) & ~(ps - 1)) - off -
				    SNAP_RECORD_HEADER_SIZE <=
				len)
				covered = ((t + ps - 1) & ~(ps - 1)) - off -
					  SNAP_RECORD_HEADER_SIZE;
		}
		memcpy(hdr, b + off, sizeof(hdr));
		memset(hdr + 16, 0, 8);
		XXH3_64bits_reset(st);
		XXH3_64bits_update(st, hdr, sizeof(hdr));
		XXH3_64bits_update(st, b + off + SNAP_RECORD_HEADER_SIZE,
				   (size_t)covered);
		set_le64(b + off + 16, XXH3_64bits_digest(st));
		len = (len + 7) & ~7ull;
		if (len >= size - off - SNAP_RECORD_HEADER_SIZE)
			break;
		off += SNAP_RECORD_HEADER_SIZE + (size_t)len;
	}
	XXH3_freeState(st);
}

static void read_snapshot(const char *path, struct guest_mem *mem)
{
	struct snap_progress progress = { 0 };
	struct snap_memory_desc desc;
	struct snap_reader *r;
	struct snap_record rec;
	char err[256];
	void *p;

	r = snap_reader_open(path, err, sizeof(err));
	if (!r)
		return;
	while (snap_reader_next(r, &rec, err, sizeof(err)) > 0) {
		if (rec.type == SNAP_REC_MEMORY &&
		    rec.version == SNAP_MEMORY_VERSION) {
			/* What a lazy restore does: the table, then each
			 * chunk alone, then the whole record as verify. */
			struct snap_chunk_table t;
			static uint8_t chunk[SNAP_CHUNK_SIZE_MAX];
			unsigned region;

			if (snap_read_memory_desc(r, &rec, &desc, err,
						  sizeof(err)) ||
			    snap_read_memory_table(r, &rec, mem, &t, &region,
						   err, sizeof(err)))
				break;
			for (uint64_t i = 0; i < t.nchunks && i < 64; i++)
				snap_read_chunk(&t, i, chunk, true, err,
						sizeof(err));
			snap_chunk_table_free(&t);
			if (snap_verify_record(r, &rec, err, sizeof(err)) ||
			    snap_read_memory(r, &rec, mem, &progress, err,
					     sizeof(err)))
				break;
		} else if (rec.type == SNAP_REC_MEMORY) {
			if (snap_read_memory_desc(r, &rec, &desc, err,
						  sizeof(err)) ||
			    snap_read_memory(r, &rec, mem, &progress, err,
					     sizeof(err)))
				break;
		} else if (rec.type == SNAP_REC_VCPU) {
			if (snap_verify_record(r, &rec, err, sizeof(err)))
				break;
		} else {
			if (snap_read_payload(r, &rec,
					      rec.type == SNAP_REC_LINEAGE
						  ? SNAP_LINEAGE_PAYLOAD_MAX
						  : MAX_PAYLOAD,
					      &p, err, sizeof(err)))
				break;
			/* LINEAGE is decoded on every restore and inspect. */
			if (rec.type == SNAP_REC_LINEAGE) {
				struct snap_lineage lin;

				snap_lineage_decode(p, rec.length, &lin);
			}
			free(p);
		}
	}
	snap_reader_close(r);
}

/* The first byte picks the mode: odd fixes the checksums first. The file
 * and guest RAM are made once and reused: what an input leaves in RAM
 * cannot steer the reader, and a memfd and a mapping per input would cost
 * more than the reading itself. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static int fd = -1;
	char path[64];
	uint8_t *copy;

	if (size < 1)
		return 0;
	if (fd < 0) {
		fd = memfd_create("fuzz-snap", MFD_CLOEXEC);
		if (fd < 0)
			return 0;
		if (guest_mem_init(&mem, GUEST_MEM_MIN)) {
			close(fd);
			fd = -1;
			return 0;
		}
	}
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	if (data[0] & 1)
		fix_checksums(copy, size - 1);

	if (ftruncate(fd, 0) == 0 &&
	    pwrite(fd, copy, size - 1, 0) == (ssize_t)(size - 1)) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		read_snapshot(path, &mem);
	}
	free(copy);
	return 0;
}
