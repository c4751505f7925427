/* The tests' HTTP client over unix sockets (http_unix.h). */
#include "http_unix.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

int http_unix_addr(struct sockaddr_un *addr, const char *path)
{
	size_t len = strlen(path);

	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (len >= sizeof(addr->sun_path))
		return -1;
	memcpy(addr->sun_path, path, len + 1);
	return 0;
}

int http_unix_connect(const char *path)
{
	struct sockaddr_un addr;
	int fd, saved;

	if (http_unix_addr(&addr, path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int http_unix_exchange(const char *sock, const char *raw, size_t len,
		       struct http_reply *rep, int timeout_ms)
{
	struct pollfd pfd;
	size_t got = 0;
	ssize_t n;
	char *sep;
	int fd, ready = 0;

	rep->status = -1;
	rep->timed_out = false;
	rep->raw[0] = '\0';
	rep->head = rep->body = rep->raw;
	fd = http_unix_connect(sock);
	if (fd < 0)
		return -1;
	while (len) {
		n = send(fd, raw, len, MSG_NOSIGNAL);
		if (n < 0)
			break; /* the server may refuse before reading it all */
		raw += n;
		len -= (size_t)n;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	while (got < HTTP_REPLY_MAX &&
	       (ready = poll(&pfd, 1, timeout_ms)) == 1) {
		n = recv(fd, rep->raw + got, HTTP_REPLY_MAX - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	rep->timed_out = ready == 0;
	close(fd);
	rep->raw[got] = '\0';
	rep->body = rep->raw + got;
	sep = strstr(rep->raw, "\r\n\r\n");
	if (sep) {
		*sep = '\0';
		rep->body = sep + 4;
	}
	if (sscanf(rep->raw, "HTTP/1.1 %d", &rep->status) != 1)
		rep->status = -1;
	return 0;
}

int http_unix_request(const char *sock, const char *method, const char *url,
		      const char *body, struct http_reply *rep, int timeout_ms)
{
	char *req;
	int n, ret;

	n = asprintf(&req,
		     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		     "Content-Length: %zu\r\n\r\n%s",
		     method, url, body ? strlen(body) : 0, body ? body : "");
	if (n < 0)
		return -1;
	ret = http_unix_exchange(sock, req, (size_t)n, rep, timeout_ms);
	free(req);
	return ret;
}

bool http_reply_well_formed(const struct http_reply *rep, char *why,
			    size_t whylen)
{
	struct json_object *obj, *e;
	bool ok;

	if (rep->status == 204 && !*rep->body)
		return true;
	if (rep->status != 200 && rep->status != 400 && rep->status != 409 &&
	    rep->status != 507) {
		snprintf(why, whylen, "status %d%s: %.80s", rep->status,
			 rep->timed_out ? " (timed out)" : "", rep->raw);
		return false;
	}
	obj = json_tokener_parse(rep->body);
	ok = obj && json_object_is_type(obj, json_type_object);
	if (ok && rep->status != 200)
		ok = json_object_object_get_ex(obj, "error", &e) &&
		     json_object_is_type(e, json_type_string) &&
		     !strchr(json_object_get_string(e), '\n');
	if (!ok)
		snprintf(why, whylen, "status %d, body %.80s", rep->status,
			 rep->body);
	json_object_put(obj);
	return ok;
}
