/* One UTF-8 check and one escape for outside bytes in messages. */
#include "core/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the UTF-8 sequence at @p (@n bytes left), 0 if malformed. */
static size_t text_utf8_seq(const uint8_t *p, size_t n)
{
	uint32_t cp, min;
	size_t len;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
		min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
		min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
		min = 0x10000;
	} else {
		return 0; /* a continuation byte, 0xc0, 0xc1, 0xf5..0xff */
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool text_is_utf8(const char *s, size_t len, size_t *bad_at)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;

	while (i < len) {
		size_t n = text_utf8_seq(p + i, len - i);

		if (!n) {
			if (bad_at)
				*bad_at = i;
			return false;
		}
		i += n;
	}
	return true;
}

char *text_escape(char *out, size_t outlen, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0, i, total = 0;
	bool cut;

	if (!outlen)
		return out;
	for (i = 0; i < len; i++)
		total += (uint8_t)s[i] >= 0x20 && (uint8_t)s[i] < 0x7f ? 1 : 4;
	cut = total >= outlen;
	for (i = 0; i < len; i++) {
		uint8_t ch = (uint8_t)s[i];
		size_t need = ch >= 0x20 && ch < 0x7f ? 1 : 4;

		/* When it is cut, room is kept for the "...". */
		if (n + need + (cut ? 3 : 0) >= outlen) {
			if (outlen > 3 && n + 3 < outlen) {
				memcpy(out + n, "...", 3);
				n += 3;
			}
			break;
		}
		if (need == 1) {
			out[n++] = (char)ch;
		} else {
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		}
	}
	out[n] = '\0';
	return out;
}

void text_escape_inplace(char *s, size_t size)
{
	size_t len = strnlen(s, size);
	char *copy;

	if (!size)
		return;
	if (len == size)
		s[--len] = '\0';
	copy = malloc(len + 1);
	if (!copy) {
		/* No memory: blank what cannot be shown rather than show it. */
		for (size_t i = 0; i < len; i++)
			if ((uint8_t)s[i] < 0x20 || (uint8_t)s[i] >= 0x7f)
				s[i] = '?';
		return;
	}
	memcpy(copy, s, len + 1);
	text_escape(s, size, copy, len);
	free(copy);
}
