/* Outside text in stasis's own messages: one UTF-8 check for what parsers
 * accept, one escape for what messages quote. */
#ifndef STASIS_TEXT_H
#define STASIS_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Whether @len bytes at @s are well-formed UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). On false, *bad_at (if
 * not NULL) is the offset of the first byte of the bad sequence. */
bool text_is_utf8(const char *s, size_t len, size_t *bad_at);

/* Copies @len bytes of @s into @out (@outlen bytes, always NUL-terminated)
 * with every byte outside printable ASCII written as \xNN, so a message
 * quoting a file name, a JSON key or a URL stays one line of plain text on
 * any terminal. A backslash is copied as is, so escaping twice changes
 * nothing. When @out is too small the copy ends with "...". Returns @out. */
char *text_escape(char *out, size_t outlen, const char *s, size_t len);

/* text_escape of a C string, in place (@s has room for @size bytes);
 * what cannot fit is cut, ending in "...". */
void text_escape_inplace(char *s, size_t size);

#endif
