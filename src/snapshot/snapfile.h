/* The snapshot file: a fixed header, then typed, length-prefixed, 8-byte
 * aligned records, each with an xxh3 checksum, ending with an END record.
 * Writing is atomic (temporary file, fsync, rename, directory fsync);
 * reading is bounded and never trusts a length before checking it.
 * docs/snapshot-format.md is the specification. */
#ifndef STASIS_SNAPFILE_H
#define STASIS_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "memory/guest_mem.h"
#include "snapshot/codec.h"

#define SNAP_MAGIC "STASISSN" /* 8 bytes, no NUL */
/* Format 2: MEMORY records hold a chunk table (record version 2). */
#define SNAP_FORMAT_VERSION 2
/* Oldest format version this stasis reads (see the compatibility rule in
 * docs/snapshot-format.md). */
#define SNAP_FORMAT_MIN_VERSION 1
#define SNAP_ENDIAN_MARK 0x01020304u
#define SNAP_HEADER_SIZE 128
#define SNAP_RECORD_HEADER_SIZE 32
#define SNAP_ALIGN 8
/* Page sizes a snapshot may declare: powers of two in this range. */
#define SNAP_PAGE_SIZE_MIN 4096u
#define SNAP_PAGE_SIZE_MAX (1u << 30)
/* Layout versions of the SNAP_REC_MEMORY payload (owned by snapfile.c):
 * version 1 (format 1) is a page bitmap and the pages; version 2 (format 2)
 * a table of chunks, each with its own checksum, so that a chunk can be
 * read and verified alone. */
#define SNAP_MEMORY_VERSION_V1 1
#define SNAP_MEMORY_VERSION 2
/* Chunk size the writer uses (docs/snapshot-format.md says why), and the
 * range a reader accepts. */
#define SNAP_CHUNK_SIZE (256u << 10)
#define SNAP_CHUNK_SIZE_MIN (64u << 10)
#define SNAP_CHUNK_SIZE_MAX (2u << 20)
/* A chunk's block mask has one bit per block. */
#define SNAP_CHUNK_MAX_BLOCKS 64
/* Chunk table entry flags. */
#define SNAP_CHUNK_ZERO 0x1 /* all zero, nothing stored */
#define SNAP_CHUNK_PARENT 0x2 /* held by the parent (incremental layers) */
/* Chunk codecs (SNAP_CODEC_*) are in codec.h. */

/* Record types. A reader that meets an unknown type fails unless the
 * record carries SNAP_REC_OPTIONAL. */
enum snap_record_type {
	SNAP_REC_CONFIG = 1, /* the VM's configuration, JSON text */
	SNAP_REC_CPUID = 2, /* the guest-visible CPUID table */
	SNAP_REC_VCPU = 3, /* one vCPU's complete state */
	SNAP_REC_IRQCHIP = 4, /* in-kernel PIC master/slave and IOAPIC */
	SNAP_REC_PIT = 5, /* in-kernel PIT */
	SNAP_REC_CLOCK = 6, /* kvmclock and the host time at save */
	SNAP_REC_DEVICE = 7, /* one emulated device's state table */
	SNAP_REC_MEMORY = 8, /* one RAM region, zero pages left out */
	SNAP_REC_SIGNATURE = 9, /* optional: HMAC of all before it (sign.h) */
	SNAP_REC_LINEAGE = 10, /* optional: the VM's id and the parent layer */
	SNAP_REC_END = 0xffff,
};

#define SNAP_REC_OPTIONAL 0x1 /* record flag: readers may skip it */

/* The fixed header, as decoded (on disk: little-endian, see the docs). */
struct snap_header {
	uint32_t format_version;
	uint32_t page_size;
	char stasis_version[32]; /* NUL-terminated */
	char cpu_vendor[13]; /* CPUID leaf 0 vendor string, NUL-terminated */
	uint64_t created_unix_ns; /* host CLOCK_REALTIME at save */
	uint32_t flags; /* reserved, 0 */
};

struct snap_record {
	uint32_t type;
	uint16_t version;
	uint16_t flags;
	uint64_t length; /* payload bytes */
	uint64_t checksum; /* xxh3-64 of the record header and payload */
	uint64_t offset; /* file offset of the payload */
	uint32_t index; /* position in the file from 0, for messages */
};

/* Memory record payload: a 32-byte descriptor, a bitmap of stored pages
 * (bit i = page i is in the file), zero padding up to the next page
 * boundary in the file, then the stored pages in order. */
struct snap_memory_desc {
	uint64_t gpa;
	uint64_t size; /* bytes, a multiple of page_size */
	uint32_t page_size;
	uint32_t reserved;
	uint64_t stored_pages; /* version 1 */
	/* Both versions: bytes of guest memory in the file. */
	uint64_t stored_bytes;
	/* Version 2 (0 in version 1). */
	uint32_t chunk_size;
	uint32_t block_size;
	uint64_t nchunks;
	uint64_t stored_chunks;
	/* Version 2, from the table (snap_read_memory_desc): guest bytes
	 * the stored chunks hold before compression (stored_bytes is what
	 * the file holds), and the stored chunks per codec. */
	uint64_t raw_bytes;
	uint64_t codec_chunks[SNAP_CODEC_COUNT];
	uint64_t parent_chunks; /* held by the parent layer */
};

/* One chunk of a version 2 memory record, decoded and checked. */
struct snap_chunk {
	uint64_t file_off; /* absolute offset of the stored bytes */
	uint32_t stored_len;
	uint32_t raw_len; /* bytes of its stored blocks, uncompressed */
	uint8_t codec; /* SNAP_CODEC_* */
	uint8_t flags; /* SNAP_CHUNK_* */
	uint64_t block_mask; /* bit j: block j is stored (else zero) */
	uint64_t hash; /* XXH3-64 of the chunk's whole content */
	/* Which file of a chain holds it (snap_chunk_table.fds), 0 in a
	 * table of one file. */
	uint8_t layer;
};

/* A version 2 memory record's chunk table (snap_read_chunk_table). The
 * fd is the reader's; it stays valid until the reader is closed. */
struct snap_chunk_table {
	int fd;
	uint32_t rec_index; /* for messages */
	uint64_t chunk_base; /* number of chunks[0] in its record: messages */
	gpa_t gpa;
	uint64_t size;
	uint32_t page_size;
	uint32_t chunk_size;
	uint32_t block_size;
	uint64_t nchunks;
	uint64_t stored_chunks;
	uint64_t data_off; /* file offset of the data area */
	uint64_t data_bytes;
	struct snap_chunk *chunks; /* nchunks entries */
	/* A table merged from a chain of layers (snapshot/chain.h): chunk c
	 * is read from fds[chunks[c].layer], and messages name
	 * names[chunks[c].layer]. NULL for one file's table (then fd). */
	const int *fds;
	const char *const *names;
};

/* Progress for status reports and the ctl progress bar. Updated by the
 * writer and reader as memory moves; read from other threads. Both fields
 * only grow: zero the struct before a save or a restore. */
struct snap_progress {
	volatile uint64_t done_bytes;
	volatile uint64_t total_bytes;
};

struct snap_writer;

/* Creates a temporary file beside @path (same directory, so the final
 * rename is atomic) and writes the header. hdr->format_version 0 means
 * SNAP_FORMAT_VERSION; 1 writes the previous format (MEMORY version 1),
 * kept so that tests and tools can make the files older stasis wrote; any
 * other value is refused. Returns a writer or NULL
 * with a one-line reason in @err. Nothing exists at @path until commit. */
struct snap_writer *snap_writer_open(const char *path,
				     const struct snap_header *hdr, char *err,
				     size_t errlen);

/* Where a writer's bytes go when they do not go to a file of its own: a
 * migration's connection (migrate/), which carries each write with its
 * offset. The writer writes the same bytes at the same offsets as it
 * would to a file, a record's header after its payload included. */
struct snap_sink {
	/* Writes all of @iov (@n entries, which it may consume) at stream
	 * offset @off. Returns 0 or -errno. */
	int (*pwritev)(void *ctx, struct iovec *iov, unsigned n, uint64_t off);
	/* After END: the stream is complete, @size bytes. 0 or -errno with
	 * @err filled; abort is called after a failure. */
	int (*commit)(void *ctx, uint64_t size, char *err, size_t errlen);
	/* The stream will not be completed. */
	void (*abort)(void *ctx);
};

/* As snap_writer_open, with the bytes going to @sink instead of a file
 * (@name is for messages). Commit writes END and calls sink->commit,
 * with no fsync or rename; abort calls sink->abort. */
struct snap_writer *snap_writer_open_sink(const struct snap_sink *sink,
					  void *ctx, const char *name,
					  const struct snap_header *hdr,
					  char *err, size_t errlen);

/* Appends one record whose payload is @len bytes at @data. The first
 * record must be SNAP_REC_CONFIG; SNAP_REC_END is written by commit only.
 * Returns 0 or -errno (e.g. -ENOSPC) with @err filled; after an I/O error
 * the writer only accepts abort (commit fails). */
int snap_write_record(struct snap_writer *w, uint32_t type, uint16_t version,
		      uint16_t flags, const void *data, size_t len, char *err,
		      size_t errlen);

/* Appends one SNAP_REC_MEMORY record per region of @mem, leaving out
 * all-zero pages and never-touched ranges (memfd holes), writing page data
 * straight from guest memory. Guest memory must not change meanwhile
 * (vCPUs and device DMA stopped). @progress may be NULL. */
int snap_write_memory(struct snap_writer *w, const struct guest_mem *mem,
		      struct snap_progress *progress, char *err, size_t errlen);

/* Marks in @bm (one bit per @ps-byte page, zeroed by the caller) the
 * pages of @reg that the memory writer stores: not zero, in the memfd's
 * data ranges, or mapped from a snapshot file; their count in *@stored.
 * Holes are found with SEEK_DATA/SEEK_HOLE and never read (reading one
 * would allocate memory for it). Pre-copy's first round sends the same
 * pages. 0 or -errno. */
int snap_scan_region(int memfd, const struct mem_region *reg, uint32_t ps,
		     uint8_t *bm, uint64_t *stored);

/* Chunks the memory writer hashes, compresses and writes at a time; a
 * live save stages that many (SNAP_CHUNK_SIZE each) in a buffer. */
#define SNAP_WRITE_BATCH_CHUNKS 64

/* Where a live save's memory comes from (snapshot/mem_live.h): stage()
 * copies bytes [@off, @off + @len) of region @region of the guest memory
 * being written, as they were at the snapshot's instant, into @dst, and
 * sets bit i of @present (zeroed by the writer, one bit per page of the
 * range) for each page it copied; pages left out are zero (memfd holes)
 * and their bytes in @dst are not looked at. The writer calls it from one
 * thread, for consecutive ranges in order, and hashes, compresses and
 * writes only the staged copy. Returns 0 or -errno (the source keeps its
 * own reason). */
struct snap_mem_source {
	int (*stage)(void *ctx, unsigned region, uint64_t off, uint64_t len,
		     uint8_t *dst, uint8_t *present);
	void *ctx;
};

/* As snap_write_memory, but with @src (not NULL) the pages are taken
 * from it instead of guest memory, which may then change meanwhile:
 * nothing is scanned before, all-zero blocks are found in each staged
 * batch, and @progress counts the guest's whole size. Format 2 only. */
int snap_write_memory_from(struct snap_writer *w, const struct guest_mem *mem,
			   const struct snap_mem_source *src,
			   struct snap_progress *progress, char *err,
			   size_t errlen);

/* Like snap_write_memory, for an incremental layer: only the chunks whose
 * bit is set in @chunks[i] (one bit per chunk of region i, chunk c in
 * word c / 64) are written; the others are marked SNAP_CHUNK_PARENT, held
 * by the parent layer. @chunks NULL writes every chunk. */
int snap_write_memory_layer(struct snap_writer *w, const struct guest_mem *mem,
			    const uint64_t *const *chunks,
			    struct snap_progress *progress, char *err,
			    size_t errlen);

/* Chunks of SNAP_CHUNK_SIZE bytes in a region of @size bytes, as the
 * writer cuts it on a host with 4 KiB pages or smaller. */
uint64_t snap_chunks_for(uint64_t size, uint32_t page_size);

/* The identity of a snapshot file, by which an incremental layer names its
 * parent: XXH3-64 of the 128-byte header followed by the 32-byte header
 * of each record (checksums included) up to, not including, END, or the
 * first @limit bytes when @limit is not 0 (a file still being written).
 * It changes whenever any record's content or the file's creation time
 * does. Reads at most 32 bytes per record; 0 or -errno. */
int snap_file_identity(int fd, uint64_t limit, uint64_t *id);

/* Compresses the chunks of the memory records written after this call
 * with @c (codec.h) on @threads threads (0: one per online CPU, at most
 * SNAP_COMPRESS_MAX_THREADS). A chunk that does not shrink is stored raw.
 * Returns -EINVAL for an unknown codec or a format 1 writer. */
#define SNAP_COMPRESS_MAX_THREADS 16
int snap_writer_set_compress(struct snap_writer *w,
			     const struct snap_compress *c, unsigned threads);

/* Writes END, fsyncs, renames over @path and fsyncs the directory.
 * Frees @w whatever the outcome; on failure the temporary file is removed
 * and whatever was at @path before is untouched. */
int snap_writer_commit(struct snap_writer *w, char *err, size_t errlen);

/* Removes the temporary file and frees @w. */
void snap_writer_abort(struct snap_writer *w);

struct snap_reader;

/* Opens and checks the header (magic, endianness, format version range,
 * sizes). Returns a reader or NULL with a one-line reason in @err. */
struct snap_reader *snap_reader_open(const char *path, char *err,
				     size_t errlen);
void snap_reader_close(struct snap_reader *r);
/* The file grew since open (a migration's spool, opened on its first
 * records, then completed): reads to its new end from here on. */
int snap_reader_reload_size(struct snap_reader *r, char *err, size_t errlen);
const struct snap_header *snap_reader_header(const struct snap_reader *r);

/* Steps to the next record: checks the record header and that it lies
 * inside the file. Returns 1 with @rec filled, 0 after END, or -errno with
 * @err filled (truncation, bad alignment, unknown mandatory type, data
 * after END). Unknown optional records are skipped, never returned.
 * Payloads are not read or checksummed here. */
int snap_reader_next(struct snap_reader *r, struct snap_record *rec, char *err,
		     size_t errlen);

/* Reads a whole payload of at most @max bytes into a new buffer (free()),
 * verifying its checksum. -EFBIG when longer than @max. */
int snap_read_payload(struct snap_reader *r, const struct snap_record *rec,
		      size_t max, void **data, char *err, size_t errlen);

/* Checks a record's checksum without keeping the payload (streams it). */
int snap_verify_record(struct snap_reader *r, const struct snap_record *rec,
		       char *err, size_t errlen);

/* Loads a memory record into @mem: the region must match one of @mem's
 * regions exactly; pages not stored are left zero (the region is emptied
 * first). Verifies the checksum while reading; on failure the region holds
 * partial data, so the VM must not run. @progress may be NULL. */
int snap_read_memory(struct snap_reader *r, const struct snap_record *rec,
		     struct guest_mem *mem, struct snap_progress *progress,
		     char *err, size_t errlen);

/* With @map, snap_read_memory() maps large runs of stored pages from the
 * file into guest memory (private, copy-on-write) instead of copying them:
 * a restore then costs a checksum pass over the page cache, and guest
 * pages are read from the file only as the guest touches them. The file
 * must then stay unmodified while the VM runs; replacing it by rename, as
 * snapshots do, is safe. */
void snap_reader_set_map_memory(struct snap_reader *r, bool map);

/* Lets this reader's chunk tables hold SNAP_CHUNK_PARENT chunks (a layer
 * of a chain, whose parents were opened and checked by the caller);
 * refused otherwise. */
void snap_reader_set_layer(struct snap_reader *r, bool layer);

/* Loads every chunk of @t (one file's or a merged table) into region
 * @region of @mem, which must be empty: read and checked, or with @map
 * mapped from its file where raw and page-aligned and checked through
 * the mapping. Nothing runs meanwhile. 0 or -errno with one line. */
int snap_load_chunks(const struct snap_chunk_table *t, struct guest_mem *mem,
		     unsigned region, bool map, struct snap_progress *progress,
		     char *err, size_t errlen);

/* What guest memory already holds of a chunk before its MEMORY record is
 * read (a migration's destination, which pre-copy filled): nothing (it
 * reads as zero), a copy checked against the hash its sender computed,
 * or a copy not (or no longer) checked. */
#define SNAP_HELD_NONE 0
#define SNAP_HELD_CHECKED 1
#define SNAP_HELD_UNCHECKED 2

/* Loads the chunks of @t into region @region of @mem, which holds what
 * @held says (one SNAP_HELD_* per chunk): a SNAP_CHUNK_PARENT chunk is
 * the copy in memory, refused unless checked or never written; a zero
 * chunk is cleared; every other chunk is read and checked as by
 * snap_read_chunk (with its zero blocks cleared). 0 or -errno with one
 * line in @err; on failure the VM must not run. */
int snap_load_chunks_held(const struct snap_chunk_table *t,
			  struct guest_mem *mem, unsigned region,
			  const uint8_t *held, char *err, size_t errlen);

/* The chunk and block sizes the writer uses for page size @page_size. */
void snap_chunk_geometry(uint32_t page_size, uint32_t *chunk_size,
			 uint32_t *block_size);

/* The hash a chunk table holds for a chunk of @len bytes at @base, whose
 * blocks of @block_size bytes (a multiple of 4 KiB) are in memory where a
 * 4 KiB page of theirs is marked in @pages (bit per page, the chunk's
 * first at @first_page), and zero elsewhere: those are not read (a memfd
 * hole would be allocated). 0, or -EINVAL or -ENOMEM. */
int snap_hash_chunk(const uint8_t *base, uint64_t len, uint32_t block_size,
		    const uint64_t *pages, uint64_t first_page, uint64_t *hash);

/* Decodes a memory record's descriptor (for inspect) and checks its layout
 * and bitmap (version 1) or chunk table (version 2), without the checksum
 * or the pages. */
int snap_read_memory_desc(struct snap_reader *r, const struct snap_record *rec,
			  struct snap_memory_desc *desc, char *err,
			  size_t errlen);

/* Reads, checks and checksums a version 2 memory record's descriptor and
 * chunk table into @t (free with snap_chunk_table_free). The record must
 * describe exactly the region @gpa, @size (so the table's size follows the
 * VM's memory, never a number in the file); unknown codecs and chunks
 * held by a parent snapshot are refused. Chunk data is not read. */
int snap_read_chunk_table(struct snap_reader *r, const struct snap_record *rec,
			  gpa_t gpa, uint64_t size, struct snap_chunk_table *t,
			  char *err, size_t errlen);
void snap_chunk_table_free(struct snap_chunk_table *t);

/* For a version 2 record: finds the region of @mem it describes, reads
 * its chunk table into @t (snap_read_chunk_table) and empties the region,
 * so that what the file does not hold reads as zero. *@region is its index
 * in mem->regions. Reads no chunk: lazy restores fetch them later. */
int snap_read_memory_table(struct snap_reader *r, const struct snap_record *rec,
			   struct guest_mem *mem, struct snap_chunk_table *t,
			   unsigned *region, char *err, size_t errlen);

/* Bytes of guest memory chunk @idx covers (the last may be short). */
uint64_t snap_chunk_len(const struct snap_chunk_table *t, uint64_t idx);

/* Reads chunk @idx of @t from the file into @dst (snap_chunk_len bytes)
 * and checks its XXH3-64. Its stored blocks land at their place in @dst;
 * the others are zero-filled when @fill_zeros, else left as they are (the
 * hash counts them as zero either way: the caller knows they are).
 * Thread-safe: uses no state of the reader. Returns 0; -EBADMSG for a
 * checksum mismatch, -ENODATA when the file ends early, -EPROTO for an
 * unknown codec, -EBADMSG too for compressed data that is damaged or
 * decompresses to another size, or -errno; @err then holds one line naming the
 * chunk's guest address range and file offset. On failure @dst holds unverified
 * bytes: the caller must not let the guest see them. */
int snap_read_chunk(const struct snap_chunk_table *t, uint64_t idx,
		    uint8_t *dst, bool fill_zeros, char *err, size_t errlen);

const char *snap_record_type_name(uint32_t type);

/* For the signature (sign.c), which covers the file's bytes as written
 * or read: the open file (-1 for a sink's writer), and where the writer's
 * next record goes. */
int snap_writer_fd(const struct snap_writer *w);
uint64_t snap_writer_offset(const struct snap_writer *w);
int snap_reader_fd(const struct snap_reader *r);

#endif
