/* stderr logging with one prefix, so every message says who printed it. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"

static bool log_quiet_flag;
static bool log_verbose_flag;
static void (*log_error_hook)(void *ctx, const char *line);
static void *log_error_hook_ctx;
/* This thread's copy of its last error (log_capture_errors). */
static __thread char *log_capture_buf;
static __thread size_t log_capture_len;

void log_capture_errors(char *buf, size_t len)
{
	log_capture_buf = len ? buf : NULL;
	log_capture_len = len;
	if (log_capture_buf)
		buf[0] = '\0';
}

void log_set_level(bool quiet, bool verbose)
{
	log_quiet_flag = quiet;
	log_verbose_flag = verbose || getenv("STASIS_DEBUG");
}

void log_set_error_hook(void (*hook)(void *ctx, const char *line), void *ctx)
{
	log_error_hook = hook;
	log_error_hook_ctx = ctx;
}

static void log_line(const char *tag, const char *fmt, va_list ap)
{
	char buf[1024], out[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* Messages quote file names, keys and guest or file data: whatever
	 * they hold, the line stays one line of plain text. */
	text_escape(out, sizeof(out), buf, strlen(buf));
	/* One write per line so that messages from vCPU threads don't mix. */
	fprintf(stderr, "stasis: %s%s\n", tag, out);
	if (log_error_hook && !strcmp(tag, "error: "))
		log_error_hook(log_error_hook_ctx, out);
}

void log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("error: ", fmt, ap);
	va_end(ap);
	if (log_capture_buf) {
		va_start(ap, fmt);
		vsnprintf(log_capture_buf, log_capture_len, fmt, ap);
		va_end(ap);
	}
}

void log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("warning: ", fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	if (log_quiet_flag)
		return;
	va_start(ap, fmt);
	log_line("", fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_verbose_flag)
		return;
	va_start(ap, fmt);
	log_line("debug: ", fmt, ap);
	va_end(ap);
}
