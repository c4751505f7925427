/* A small HTTP/1.1 client over a unix socket for the tests and test tools
 * that drive the control API: one request per connection, the reply read
 * until the server closes, and the checks a well-formed reply must pass. */
#ifndef STASIS_TESTS_HTTP_UNIX_H
#define STASIS_TESTS_HTTP_UNIX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/un.h>

#define HTTP_REPLY_MAX (128 * 1024)

struct http_reply {
	int status; /* -1: no status line (closed, timed out, garbage) */
	bool timed_out; /* no byte for the whole timeout */
	char *head; /* inside raw */
	char *body;
	char raw[HTTP_REPLY_MAX + 1];
};

/* Fills @addr for @path; -1 when the path does not fit. Async-signal-safe. */
int http_unix_addr(struct sockaddr_un *addr, const char *path);

/* A connected socket to @path, or -1 with errno set. */
int http_unix_connect(const char *path);

/* Sends @raw as is on a new connection to @sock and reads the reply until
 * the server closes or @timeout_ms pass without a byte. Returns 0, or -1
 * when no connection could be made. */
int http_unix_exchange(const char *sock, const char *raw, size_t len,
		       struct http_reply *rep, int timeout_ms);

/* One request with Content-Length and "Connection: close". */
int http_unix_request(const char *sock, const char *method, const char *url,
		      const char *body, struct http_reply *rep, int timeout_ms);

/* Whether @rep is what the control API may answer: a status line and
 * either no body (204), a JSON object (200), or for an error status (400,
 * 409, 507) a JSON object whose "error" is one line. Otherwise @why says
 * what was wrong. */
bool http_reply_well_formed(const struct http_reply *rep, char *why,
			    size_t whylen);

#endif
