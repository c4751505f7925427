/* Declarative, versioned device state: each device lists its saved fields in
 * a const table beside its struct; this codec writes them as fixed-width
 * little-endian values, never as raw structs. */
#ifndef STASIS_STATE_H
#define STASIS_STATE_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum state_kind {
	STATE_KIND_U8,
	STATE_KIND_U16,
	STATE_KIND_U32,
	STATE_KIND_U64,
	STATE_KIND_BOOL, /* a C bool, stored as one byte that must be 0 or 1 */
};

struct state_field {
	const char *name;
	enum state_kind kind;
	size_t offset; /* in the device struct */
	uint32_t count; /* array elements; 1 for a scalar */
	uint16_t since; /* first table version that has the field */
};

struct state_desc {
	const char *name;
	uint16_t version; /* what stasis writes now */
	uint16_t min_version; /* oldest version stasis still reads */
	const struct state_field *fields;
	unsigned nfields;
	/* Runs after a successful decode: checks cross-field invariants and
	 * clamps what the guest could otherwise use to escape (indices, sizes).
	 * Returns 0 or -EINVAL. May be NULL. */
	int (*validate)(const void *obj);
};

#define STATE_FIELD_SIZE(type, f) sizeof(((type *)0)->f)
#define STATE_ELEM_SIZE(type, f) sizeof(((type *)0)->f[0])

/* A scalar field; a static assertion ties the declared width to the C type. */
#define STATE_SCALAR_(type, f, kind_, width, since_)                          \
	{                                                                     \
		.name = #f, .kind = (kind_),                                  \
		.offset =                                                     \
		    offsetof(type, f) +                                       \
		    0 * sizeof(                                               \
			    char[STATE_FIELD_SIZE(type, f) == (width) ? 1     \
								      : -1]), \
		.count = 1, .since = (since_)                                 \
	}
#define STATE_U8(type, f, since) STATE_SCALAR_(type, f, STATE_KIND_U8, 1, since)
#define STATE_U16(type, f, since) \
	STATE_SCALAR_(type, f, STATE_KIND_U16, 2, since)
#define STATE_U32(type, f, since) \
	STATE_SCALAR_(type, f, STATE_KIND_U32, 4, since)
#define STATE_U64(type, f, since) \
	STATE_SCALAR_(type, f, STATE_KIND_U64, 8, since)
#define STATE_BOOL(type, f, since) \
	STATE_SCALAR_(type, f, STATE_KIND_BOOL, sizeof(bool), since)

/* A fixed-size array field of the given element width. */
#define STATE_ARRAY_(type, f, kind_, width, since_)                          \
	{                                                                    \
		.name = #f, .kind = (kind_),                                 \
		.offset =                                                    \
		    offsetof(type, f) +                                      \
		    0 * sizeof(                                              \
			    char[STATE_ELEM_SIZE(type, f) == (width) ? 1     \
								     : -1]), \
		.count = STATE_FIELD_SIZE(type, f) / (width),                \
		.since = (since_)                                            \
	}
#define STATE_U8_ARRAY(type, f, since) \
	STATE_ARRAY_(type, f, STATE_KIND_U8, 1, since)
#define STATE_U16_ARRAY(type, f, since) \
	STATE_ARRAY_(type, f, STATE_KIND_U16, 2, since)
#define STATE_U32_ARRAY(type, f, since) \
	STATE_ARRAY_(type, f, STATE_KIND_U32, 4, since)
#define STATE_U64_ARRAY(type, f, since) \
	STATE_ARRAY_(type, f, STATE_KIND_U64, 8, since)

#define STATE_NFIELDS(arr) (sizeof(arr) / sizeof((arr)[0]))

/* Bytes that state_encode() writes for @d at its current version. */
size_t state_encoded_size(const struct state_desc *d);

/* Bytes a stream of version @version holds for @d (fields newer than it are
 * absent). 0 when the version is not readable. */
size_t state_encoded_size_v(const struct state_desc *d, uint16_t version);

/* Writes @obj's fields at the current version into @out (exactly
 * state_encoded_size() bytes). Returns 0 or -ENOSPC. */
int state_encode(const struct state_desc *d, const void *obj, uint8_t *out,
		 size_t out_len);

/* Reads fields written at @version from @in into @obj, then runs
 * d->validate. Fields newer than @version keep the values @obj already has
 * (the caller's defaults). On error @obj may be partly written: decode into
 * a scratch copy. Returns 0, -EPROTO for a version outside
 * [min_version, version], -EINVAL for a bad length or value. */
int state_decode(const struct state_desc *d, uint16_t version, void *obj,
		 const uint8_t *in, size_t in_len);

/* Sections: a record payload made of tagged parts, each
 * {u16 tag, u16 version, u32 length, payload, zero padding to 8 bytes}.
 * A vCPU record, for instance, holds one section per kind of register. */
struct state_buf {
	uint8_t *data; /* heap, grows as needed; free() when done */
	size_t len;
	size_t cap;
};

#define STATE_SECTION_HEADER 8
#define STATE_SECTION_MAX (16u << 20) /* no section is larger */

/* Appends a section with raw bytes. Returns 0 or -ENOMEM/-E2BIG. */
int state_buf_put(struct state_buf *b, uint16_t tag, uint16_t version,
		  const void *payload, size_t len);
/* Appends a section holding @obj encoded with @d at its current version. */
int state_buf_put_table(struct state_buf *b, uint16_t tag,
			const struct state_desc *d, const void *obj);
void state_buf_free(struct state_buf *b);

struct state_cursor {
	const uint8_t *data;
	size_t len;
	size_t pos;
};

struct state_section {
	uint16_t tag;
	uint16_t version;
	uint32_t len;
	const uint8_t *payload;
};

/* Steps to the next section. Returns 1 with @s filled, 0 at the end, or
 * -EINVAL when a header or length runs past the buffer or padding is not
 * zero. */
int state_cursor_next(struct state_cursor *c, struct state_section *s);

/* Decodes a section with @d (version from the section). */
int state_section_decode(const struct state_desc *d,
			 const struct state_section *s, void *obj);

#endif
