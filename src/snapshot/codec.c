/* Chunk codecs for snapshot memory: lz4 and zstd through their Debian
 * libraries, behind one small interface (codec.h). */
#include "snapshot/codec.h"

#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "core/text.h"

static const char *const codec_names[SNAP_CODEC_COUNT] = {
	[SNAP_CODEC_RAW] = "none",
	[SNAP_CODEC_LZ4] = "lz4",
	[SNAP_CODEC_ZSTD] = "zstd",
};

const char *snap_codec_name(uint8_t codec)
{
	return codec < SNAP_CODEC_COUNT ? codec_names[codec] : NULL;
}

int snap_compress_parse(const char *s, struct snap_compress *out, char *err,
			size_t errlen)
{
	const char *colon = strchr(s, ':');
	size_t n = colon ? (size_t)(colon - s) : strlen(s);
	char shown[48]; /* @s as an error quotes it: one line, escaped */

	memset(out, 0, sizeof(*out));
	for (uint8_t i = 0; i < SNAP_CODEC_COUNT; i++) {
		if (strlen(codec_names[i]) != n ||
		    strncmp(s, codec_names[i], n))
			continue;
		out->codec = i;
		if (!colon)
			return 0;
		if (i != SNAP_CODEC_ZSTD)
			break;
		/* A level is one or two digits, nothing else. */
		const char *p = colon + 1;
		int level = 0;

		for (n = 0; p[n] >= '0' && p[n] <= '9' && n < 3; n++)
			level = level * 10 + (p[n] - '0');
		if (!n || p[n] || level < SNAP_ZSTD_LEVEL_MIN ||
		    level > SNAP_ZSTD_LEVEL_MAX) {
			snprintf(
			    err, errlen,
			    "bad zstd level in \"%s\": expected %d..%d",
			    text_escape(shown, sizeof(shown), s, strlen(s)),
			    SNAP_ZSTD_LEVEL_MIN, SNAP_ZSTD_LEVEL_MAX);
			return -EINVAL;
		}
		out->level = level;
		return 0;
	}
	snprintf(err, errlen,
		 "unknown compression \"%s\": expected none, lz4, zstd or "
		 "zstd:LEVEL",
		 text_escape(shown, sizeof(shown), s, strlen(s)));
	return -EINVAL;
}

void snap_compress_format(const struct snap_compress *c, char *buf, size_t len)
{
	const char *name = snap_codec_name(c->codec);

	if (c->codec == SNAP_CODEC_ZSTD)
		snprintf(buf, len, "zstd:%d",
			 c->level ? c->level : SNAP_ZSTD_LEVEL_DEFAULT);
	else
		snprintf(buf, len, "%s", name ? name : "?");
}

struct snap_compressor {
	uint8_t codec;
	int level;
	ZSTD_CCtx *zc;
	void *lz4_state; /* LZ4_sizeofState() bytes */
};

struct snap_compressor *snap_compressor_new(const struct snap_compress *c)
{
	struct snap_compressor *z = calloc(1, sizeof(*z));

	if (!z)
		return NULL;
	z->codec = c->codec;
	z->level = c->level ? c->level : SNAP_ZSTD_LEVEL_DEFAULT;
	if (c->codec == SNAP_CODEC_ZSTD) {
		z->zc = ZSTD_createCCtx();
		if (!z->zc ||
		    ZSTD_isError(ZSTD_CCtx_setParameter(
			z->zc, ZSTD_c_compressionLevel, z->level)) ||
		    /* The size is known: the frame records it, and a reader
		     * checks it before it decompresses. */
		    ZSTD_isError(ZSTD_CCtx_setParameter(
			z->zc, ZSTD_c_contentSizeFlag, 1)))
			goto fail;
	} else if (c->codec == SNAP_CODEC_LZ4) {
		z->lz4_state = malloc((size_t)LZ4_sizeofState());
		if (!z->lz4_state)
			goto fail;
	} else if (c->codec != SNAP_CODEC_RAW) {
		goto fail;
	}
	return z;
fail:
	snap_compressor_free(z);
	return NULL;
}

void snap_compressor_free(struct snap_compressor *z)
{
	if (!z)
		return;
	ZSTD_freeCCtx(z->zc);
	free(z->lz4_state);
	free(z);
}

size_t snap_compressor_run(struct snap_compressor *z, const void *src,
			   size_t len, void *dst, size_t cap)
{
	size_t n;
	int r;

	switch (z->codec) {
	case SNAP_CODEC_ZSTD:
		n = ZSTD_compress2(z->zc, dst, cap, src, len);
		/* dstSize_tooSmall when it does not shrink enough. */
		return ZSTD_isError(n) || n >= cap ? 0 : n;
	case SNAP_CODEC_LZ4:
		if (len > (size_t)LZ4_MAX_INPUT_SIZE || cap > (size_t)INT32_MAX)
			return 0;
		r = LZ4_compress_fast_extState(z->lz4_state, src, dst, (int)len,
					       (int)cap, 1);
		return r <= 0 || (size_t)r >= cap ? 0 : (size_t)r;
	default:
		return 0;
	}
}

int snap_codec_decompress(uint8_t codec, const void *src, size_t srclen,
			  void *dst, size_t dstlen, size_t *got)
{
	unsigned long long content;
	size_t n;
	int r;

	*got = 0;
	switch (codec) {
	case SNAP_CODEC_ZSTD:
		/* The frame says its size: a wrong one is refused before any
		 * byte is produced. */
		content = ZSTD_getFrameContentSize(src, srclen);
		if (content == ZSTD_CONTENTSIZE_ERROR ||
		    content == ZSTD_CONTENTSIZE_UNKNOWN)
			return -EBADMSG;
		if (content != dstlen) {
			*got = content > SIZE_MAX ? SIZE_MAX : (size_t)content;
			return -EBADMSG;
		}
		n = ZSTD_decompress(dst, dstlen, src, srclen);
		if (ZSTD_isError(n))
			return -EBADMSG;
		*got = n;
		return n == dstlen ? 0 : -EBADMSG;
	case SNAP_CODEC_LZ4:
		if (srclen > (size_t)INT32_MAX || dstlen > (size_t)INT32_MAX)
			return -EBADMSG;
		/* The safe decoder never writes past dstlen; a block that
		 * wants more fails. */
		r = LZ4_decompress_safe(src, dst, (int)srclen, (int)dstlen);
		if (r < 0)
			return -EBADMSG;
		*got = (size_t)r;
		return (size_t)r == dstlen ? 0 : -EBADMSG;
	default:
		return -EPROTO;
	}
}
