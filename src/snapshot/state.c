/* Codec for the declarative state tables in state.h. */
#include "snapshot/state.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/le.h"

static size_t state_kind_width(enum state_kind k)
{
	switch (k) {
	case STATE_KIND_U8:
	case STATE_KIND_BOOL:
		return 1;
	case STATE_KIND_U16:
		return 2;
	case STATE_KIND_U32:
		return 4;
	case STATE_KIND_U64:
		return 8;
	}
	return 0;
}

size_t state_encoded_size_v(const struct state_desc *d, uint16_t version)
{
	size_t n = 0;

	if (version < d->min_version || version > d->version)
		return 0;
	for (unsigned i = 0; i < d->nfields; i++) {
		const struct state_field *f = &d->fields[i];

		if (f->since <= version)
			n += state_kind_width(f->kind) * f->count;
	}
	return n;
}

size_t state_encoded_size(const struct state_desc *d)
{
	return state_encoded_size_v(d, d->version);
}

static uint64_t field_load(const uint8_t *src, enum state_kind k)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	bool b;

	switch (k) {
	case STATE_KIND_U8:
		memcpy(&u8, src, 1);
		return u8;
	case STATE_KIND_BOOL:
		memcpy(&b, src, sizeof(b));
		return b;
	case STATE_KIND_U16:
		memcpy(&u16, src, 2);
		return u16;
	case STATE_KIND_U32:
		memcpy(&u32, src, 4);
		return u32;
	case STATE_KIND_U64:
		memcpy(&u64, src, 8);
		return u64;
	}
	return 0;
}

static void field_store(uint8_t *dst, enum state_kind k, uint64_t v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;
	bool b = v != 0;

	switch (k) {
	case STATE_KIND_U8:
		memcpy(dst, &u8, 1);
		break;
	case STATE_KIND_BOOL:
		memcpy(dst, &b, sizeof(b));
		break;
	case STATE_KIND_U16:
		memcpy(dst, &u16, 2);
		break;
	case STATE_KIND_U32:
		memcpy(dst, &u32, 4);
		break;
	case STATE_KIND_U64:
		memcpy(dst, &v, 8);
		break;
	}
}

/* In-memory width of one element (bool may be wider than its encoding). */
static size_t state_kind_host_width(enum state_kind k)
{
	return k == STATE_KIND_BOOL ? sizeof(bool) : state_kind_width(k);
}

int state_encode(const struct state_desc *d, const void *obj, uint8_t *out,
		 size_t out_len)
{
	const uint8_t *base = obj;
	size_t pos = 0;

	if (out_len < state_encoded_size(d))
		return -ENOSPC;
	for (unsigned i = 0; i < d->nfields; i++) {
		const struct state_field *f = &d->fields[i];
		size_t w = state_kind_width(f->kind);
		size_t hw = state_kind_host_width(f->kind);

		for (uint32_t e = 0; e < f->count; e++) {
			uint64_t v =
			    field_load(base + f->offset + e * hw, f->kind);

			put_le(out + pos, v, w);
			pos += w;
		}
	}
	return 0;
}

int state_decode(const struct state_desc *d, uint16_t version, void *obj,
		 const uint8_t *in, size_t in_len)
{
	uint8_t *base = obj;
	size_t pos = 0;

	if (version < d->min_version || version > d->version)
		return -EPROTO;
	if (in_len != state_encoded_size_v(d, version))
		return -EINVAL;
	for (unsigned i = 0; i < d->nfields; i++) {
		const struct state_field *f = &d->fields[i];
		size_t w = state_kind_width(f->kind);
		size_t hw = state_kind_host_width(f->kind);

		if (f->since > version)
			continue;
		for (uint32_t e = 0; e < f->count; e++) {
			uint64_t v = get_le(in + pos, w);

			if (f->kind == STATE_KIND_BOOL && v > 1)
				return -EINVAL;
			field_store(base + f->offset + e * hw, f->kind, v);
			pos += w;
		}
	}
	return d->validate ? d->validate(obj) : 0;
}

static int state_buf_reserve(struct state_buf *b, size_t extra)
{
	size_t need, cap;
	uint8_t *p;

	if (extra > SIZE_MAX - b->len)
		return -E2BIG;
	need = b->len + extra;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 1024;
	while (cap < need)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int state_buf_put(struct state_buf *b, uint16_t tag, uint16_t version,
		  const void *payload, size_t len)
{
	size_t padded = (len + 7) & ~(size_t)7;
	int ret;

	if (len > STATE_SECTION_MAX)
		return -E2BIG;
	ret = state_buf_reserve(b, STATE_SECTION_HEADER + padded);
	if (ret)
		return ret;
	put_le(b->data + b->len, tag, 2);
	put_le(b->data + b->len + 2, version, 2);
	put_le(b->data + b->len + 4, len, 4);
	if (len)
		memcpy(b->data + b->len + STATE_SECTION_HEADER, payload, len);
	memset(b->data + b->len + STATE_SECTION_HEADER + len, 0, padded - len);
	b->len += STATE_SECTION_HEADER + padded;
	return 0;
}

int state_buf_put_table(struct state_buf *b, uint16_t tag,
			const struct state_desc *d, const void *obj)
{
	size_t n = state_encoded_size(d);
	size_t padded = (n + 7) & ~(size_t)7;
	int ret;

	ret = state_buf_reserve(b, STATE_SECTION_HEADER + padded);
	if (ret)
		return ret;
	put_le(b->data + b->len, tag, 2);
	put_le(b->data + b->len + 2, d->version, 2);
	put_le(b->data + b->len + 4, n, 4);
	ret = state_encode(d, obj, b->data + b->len + STATE_SECTION_HEADER, n);
	if (ret)
		return ret;
	memset(b->data + b->len + STATE_SECTION_HEADER + n, 0, padded - n);
	b->len += STATE_SECTION_HEADER + padded;
	return 0;
}

void state_buf_free(struct state_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

int state_cursor_next(struct state_cursor *c, struct state_section *s)
{
	size_t left, padded;

	if (c->pos == c->len)
		return 0;
	left = c->len - c->pos;
	if (left < STATE_SECTION_HEADER)
		return -EINVAL;
	s->tag = (uint16_t)get_le(c->data + c->pos, 2);
	s->version = (uint16_t)get_le(c->data + c->pos + 2, 2);
	s->len = (uint32_t)get_le(c->data + c->pos + 4, 4);
	padded = ((size_t)s->len + 7) & ~(size_t)7;
	if (padded > left - STATE_SECTION_HEADER)
		return -EINVAL;
	s->payload = c->data + c->pos + STATE_SECTION_HEADER;
	for (size_t i = s->len; i < padded; i++)
		if (s->payload[i])
			return -EINVAL;
	c->pos += STATE_SECTION_HEADER + padded;
	return 1;
}

int state_section_decode(const struct state_desc *d,
			 const struct state_section *s, void *obj)
{
	return state_decode(d, s->version, obj, s->payload, s->len);
}
