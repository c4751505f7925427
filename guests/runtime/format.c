/* format.c - printf-style formatting into a bounded buffer, and
 * guest_printf, which sends one formatted call to the serial port. */
#include "runtime.h"

#define PRINTF_LINE_MAX 512

struct out {
	char *buf;
	size_t size;
	size_t len; /* what the full output needs, like C99 snprintf */
};

static void out_char(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void out_pad(struct out *o, char c, int n)
{
	while (n-- > 0)
		out_char(o, c);
}

/* One number: digits, then the sign, padded to width. */
static void out_number(struct out *o, uint64_t v, bool negative,
		       unsigned int base, bool upper, int width, bool zero,
		       bool left)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0, len;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	len = n + (negative ? 1 : 0);
	if (!left && !zero)
		out_pad(o, ' ', width - len);
	if (negative)
		out_char(o, '-');
	if (!left && zero)
		out_pad(o, '0', width - len);
	while (n)
		out_char(o, tmp[--n]);
	if (left)
		out_pad(o, ' ', width - len);
}

static void out_string(struct out *o, const char *s, int width, bool left)
{
	int len;

	if (!s)
		s = "(null)";
	len = strlen(s);
	if (!left)
		out_pad(o, ' ', width - len);
	while (*s)
		out_char(o, *s++);
	if (left)
		out_pad(o, ' ', width - len);
}

int guest_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		bool zero = false, left = false;
		int width = 0, longs = 0;
		uint64_t u;
		int64_t s;

		if (*fmt != '%') {
			out_char(&o, *fmt);
			continue;
		}
		fmt++;
		for (;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			longs++;
			fmt++;
		}
		switch (*fmt) {
		case 'd':
		case 'i':
			s = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
			u = s < 0 ? -(uint64_t)s : (uint64_t)s;
			out_number(&o, u, s < 0, 10, false, width, zero, left);
			break;
		case 'u':
		case 'x':
		case 'X':
			u = longs ? va_arg(ap, uint64_t)
				  : va_arg(ap, unsigned int);
			out_number(&o, u, false, *fmt == 'u' ? 10 : 16,
				   *fmt == 'X', width, zero, left);
			break;
		case 'p':
			out_char(&o, '0');
			out_char(&o, 'x');
			u = (uint64_t)va_arg(ap, void *);
			out_number(&o, u, false, 16, false, width, zero, left);
			break;
		case 's':
			out_string(&o, va_arg(ap, const char *), width, left);
			break;
		case 'c':
			out_char(&o, (char)va_arg(ap, int));
			break;
		case '%':
			out_char(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			out_char(&o, '%');
			out_char(&o, *fmt);
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return o.len;
}

int guest_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = guest_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

void guest_printf(const char *fmt, ...)
{
	char line[PRINTF_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = guest_vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	guest_serial_write(line, n, false);
}
