/* Working sets: which chunks of a snapshot's memory a restored guest
 * touched first, kept in SNAPSHOT.wset beside the snapshot, so that later
 * lazy restores of the same snapshot bring those chunks in first, in one
 * sequential pass (docs/snapshot-format.md, "Working-set files"). */
#ifndef STASIS_WSET_H
#define STASIS_WSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"

#define WSET_MAGIC "STASISWS" /* 8 bytes, no NUL */
#define WSET_VERSION 1
#define WSET_HEADER_SIZE 64
#define WSET_REGION_SIZE 32
/* 1 TiB of RAM in 64 KiB chunks is 2 MiB of bitmap: a file is never
 * larger than this, so a reader never allocates by a number in it. */
#define WSET_FILE_MAX ((4u << 20) + 4096u)
/* The default recording window of --record-working-set, in ms. */
#define WSET_RECORD_MS_DEFAULT 1000u
#define WSET_RECORD_MS_MAX 3600000u

/* One RAM region's chunks, as the snapshot's MEMORY record cuts them. */
struct wset_region {
	gpa_t gpa;
	uint64_t size;
	uint32_t chunk_size;
	uint64_t nchunks;
	uint64_t *bits; /* ceil(nchunks / 64) words; bit i: chunk i is in */
};

struct wset {
	uint64_t snapshot_id; /* wset_identity of the snapshot */
	uint32_t record_ms; /* how long the recording ran */
	unsigned nregions;
	struct wset_region regions[GUEST_MEM_MAX_REGIONS];
};

/* The identity of a snapshot's content a working set belongs to: its
 * header's creation time and format version and each MEMORY record's
 * checksum and length (a version 2 record's checksum covers its chunk
 * table, so every chunk's hash). Fed record by record. */
struct wset_identity {
	uint64_t words[2 + 2 * GUEST_MEM_MAX_REGIONS];
	unsigned n;
};
void wset_identity_init(struct wset_identity *id, uint32_t format_version,
			uint64_t created_unix_ns);
void wset_identity_add(struct wset_identity *id, uint64_t rec_checksum,
		       uint64_t rec_length);
uint64_t wset_identity_final(const struct wset_identity *id);

/* Gives @w @n regions of geometry @geo (gpa, size, chunk_size, nchunks
 * read from it), every bit clear. 0 or -ENOMEM. */
int wset_alloc(struct wset *w, const struct wset_region *geo, unsigned n);
void wset_free(struct wset *w);

/* Chunks in @w. */
uint64_t wset_count(const struct wset *w);

/* The file's bytes for @w (free() them). 0 or -ENOMEM. */
int wset_encode(const struct wset *w, uint8_t **out, size_t *len);

/* Parses @len bytes as a working-set file for the snapshot of identity
 * @id whose memory is cut as @geo (@n regions; their bits are ignored).
 * Fills @w (wset_free it) and returns 0; -EBADMSG for a damaged file,
 * -ESTALE for one that belongs to another snapshot, each with one line in
 * @err. A pure function (the fuzz target). */
int wset_decode(const uint8_t *buf, size_t len, const struct wset_region *geo,
		unsigned n, uint64_t id, struct wset *w, char *err,
		size_t errlen);

/* Reads and decodes @path (wset_decode). -ENOENT, silently, when nothing
 * is there; other errors with one line in @err. */
int wset_load(const char *path, const struct wset_region *geo, unsigned n,
	      uint64_t id, struct wset *w, char *err, size_t errlen);

/* Writes @w to @path atomically (a temporary file beside it, fsync,
 * rename, directory fsync), mode 0600. 0 or -errno with one line. */
int wset_save(const char *path, const struct wset *w, char *err, size_t errlen);

#endif
