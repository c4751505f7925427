/* One-line messages on stderr, prefixed with "stasis: ". Bytes outside
 * printable ASCII are shown escaped (\xNN, text_escape). */
#ifndef STASIS_LOG_H
#define STASIS_LOG_H

#include <stdbool.h>
#include <stddef.h>

/* "stasis: error: ...". */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "stasis: warning: ...". */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "stasis: ..." unless quiet. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Only with --verbose / STASIS_DEBUG=1. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void log_set_level(bool quiet, bool verbose);

/* Also hands every error line, as printed (escaped, without the prefix),
 * to @hook; NULL removes it. `stasis receive` tells the source of a
 * migration why the destination gave up this way. Set and removed on the
 * main thread while no other thread logs. */
void log_set_error_hook(void (*hook)(void *ctx, const char *line), void *ctx);
/* From now on this thread's log_error() also copies its message (without
 * the prefix) into @buf, the last one winning, so that a request can be
 * answered with the reason the operation printed; @len 0 stops it. */
void log_capture_errors(char *buf, size_t len);

#endif
