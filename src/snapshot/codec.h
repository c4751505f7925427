/* Compression of snapshot memory chunks: the codecs a MEMORY record
 * version 2 chunk may be stored with (docs/snapshot-format.md), how a
 * user names one (--compress, the API's "compress"), and whole-buffer
 * compress and decompress calls for them. */
#ifndef STASIS_CODEC_H
#define STASIS_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Codec ids as stored in a chunk table entry. */
#define SNAP_CODEC_RAW 0
#define SNAP_CODEC_LZ4 1
#define SNAP_CODEC_ZSTD 2
#define SNAP_CODEC_COUNT 3

/* zstd levels --compress accepts (the library's negative "fast" levels
 * are left out: lz4 covers that ground). */
#define SNAP_ZSTD_LEVEL_MIN 1
#define SNAP_ZSTD_LEVEL_MAX 19

/* What a snapshot's memory is compressed with. */
struct snap_compress {
	uint8_t codec; /* SNAP_CODEC_* */
	int level; /* zstd only; 0 = SNAP_ZSTD_LEVEL_DEFAULT */
};

#define SNAP_ZSTD_LEVEL_DEFAULT 1

/* The default for snapshots that do not name one (docs/performance.md
 * has the measurements behind it). */
#define SNAP_COMPRESS_DEFAULT_CODEC SNAP_CODEC_RAW

/* Parses "none", "lz4", "zstd" or "zstd:LEVEL" into @out. Returns 0, or
 * -EINVAL with one line in @err. */
int snap_compress_parse(const char *s, struct snap_compress *out, char *err,
			size_t errlen);

/* "none", "lz4", "zstd" for a known id, else NULL. */
const char *snap_codec_name(uint8_t codec);

/* Writes @c as --compress would take it ("zstd:3") into @buf. */
void snap_compress_format(const struct snap_compress *c, char *buf, size_t len);

/* A compressor of one thread: holds the codec's working memory, so that
 * chunk after chunk reuses it. */
struct snap_compressor;

struct snap_compressor *snap_compressor_new(const struct snap_compress *c);
void snap_compressor_free(struct snap_compressor *z);

/* Compresses @len bytes at @src into @dst (@cap bytes). Returns the
 * compressed size, or 0 when it would not be smaller than @cap (the
 * caller then stores the bytes raw) or on any codec error. */
size_t snap_compressor_run(struct snap_compressor *z, const void *src,
			   size_t len, void *dst, size_t cap);

/* Decompresses @srclen bytes at @src, which @codec produced, into exactly
 * @dstlen bytes at @dst. Returns 0; -EPROTO for an unknown codec; -EBADMSG
 * when the data is damaged or decompresses to another size (*@got then
 * holds that size when known, else 0). */
int snap_codec_decompress(uint8_t codec, const void *src, size_t srclen,
			  void *dst, size_t dstlen, size_t *got);

#endif
