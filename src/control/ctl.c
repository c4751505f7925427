/* `stasis ctl`: a small HTTP/1.1 client for the control API on its UNIX
 * socket, printing readable results or the server's JSON. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "control/api.h"
#include "core/log.h"

/* Exit statuses; 2 and 6 match STASIS_EXIT_USAGE and STASIS_EXIT_HOST. */
#define CTL_EXIT_OK 0
#define CTL_EXIT_FAILED 1 /* the server refused, or answered nonsense */
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_UNREACHABLE 6 /* no server, or the connection failed */

#define CTL_RESPONSE_MAX (64 * 1024)
#define CTL_TIMEOUT_MS 30000 /* connect, send, and replies but snapshot's */
#define CTL_POLL_TIMEOUT_MS 1000 /* one progress poll */
#define CTL_PROGRESS_MS 100
#define CTL_BAR_WIDTH 30
#define CTL_ERR_MAX 512
#define MIB (1024.0 * 1024.0)

struct ctl_response {
	unsigned status;
	char *buf; /* CTL_RESPONSE_MAX + 1 bytes, the reply as received */
	size_t len;
	char *body; /* inside buf, NUL-terminated */
	size_t body_len;
};

struct ctl_args;

struct ctl_command {
	const char *name;
	const char *method;
	const char *url;
	const char *done; /* what a success means, for people */
	bool snapshot; /* takes PATH, --then, --compress, --live; no reply
			* timeout */
	/* prints a success for people; returns the exit status */
	int (*print)(const struct ctl_args *a, const struct ctl_command *cmd,
		     const struct ctl_response *r);
	bool restore; /* takes PATH, --memory, --clock, --paused; as snapshot */
	bool migrate; /* takes a destination and the migration options */
};

struct ctl_args {
	const char *socket_path;
	const struct ctl_command *cmd;
	const char *path;
	const char *then;
	const char *compress; /* NULL: the server's default */
	const char *memory, *clock; /* restore's; NULL: the target's */
	bool paused;
	bool live; /* --live */
	const char *base; /* NULL: a full snapshot */
	bool json;
	/* migrate: options passed on as they are, for the server to check
	 * (a NULL string or -1 number: not given) */
	bool insecure, postcopy, no_auto_converge;
	long long timeout_s, downtime_ms, connections;
	const char *on_timeout, *tls_dir;
};

struct ctl_progress {
	const char *socket_path;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	bool drawn;
	bool seen; /* t0/done0 hold the first observation, for the rate */
	int64_t t0;
	uint64_t done0;
};

static int64_t ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for @events on @fd until @deadline (monotonic ms, -1: never). */
static int ctl_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left;
	int ret;

	for (;;) {
		left = -1;
		if (deadline >= 0) {
			left = deadline - ctl_now_ms();
			if (left <= 0)
				return -ETIMEDOUT;
		}
		ret = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (ret > 0)
			return 0;
		if (ret < 0 && errno != EINTR)
			return -errno;
	}
}

static int ctl_connect(const char *path, int64_t deadline)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	struct timespec backoff = { 0, 10 * 1000 * 1000 };
	int fd, ret;

	if (len >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		ret = -errno;
		/* EAGAIN: the listen backlog is full; the server is busy. */
		if (ret != -EAGAIN && ret != -EINTR)
			goto err_close;
		if (ctl_now_ms() >= deadline) {
			ret = -ETIMEDOUT;
			goto err_close;
		}
		nanosleep(&backoff, NULL);
	}
	return fd;

err_close:
	close(fd);
	return ret;
}

static int ctl_send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
	ssize_t n;
	int ret;

	while (len) {
		ret = ctl_wait(fd, POLLOUT, deadline);
		if (ret)
			return ret;
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Parses the strict decimal @s of @len bytes. */
static int ctl_parse_u64(const char *s, size_t len, uint64_t *v)
{
	uint64_t n = 0;
	size_t i;

	if (!len)
		return -EPROTO;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || n > (UINT64_MAX - 9) / 10)
			return -EPROTO;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	*v = n;
	return 0;
}

/* Reads the headers of the reply in r->buf. Returns 0 with the status,
 * the body offset and Content-Length (UINT64_MAX if none), -EAGAIN if the
 * header is not complete yet, -EPROTO if it is malformed. */
static int ctl_parse_head(struct ctl_response *r, size_t *body_off,
			  uint64_t *clen)
{
	const char *end, *line, *eol, *colon, *val, *vend;
	uint64_t n;

	end = memmem(r->buf, r->len, "\r\n\r\n", 4);
	if (!end)
		return -EAGAIN;
	/* RFC 9112 section 4: HTTP-version SP 3DIGIT SP [reason] */
	if (end - r->buf < 12 || memcmp(r->buf, "HTTP/1.", 7) ||
	    r->buf[7] < '0' || r->buf[7] > '9' || r->buf[8] != ' ' ||
	    ctl_parse_u64(r->buf + 9, 3, &n) ||
	    (r->buf[12] != ' ' && r->buf[12] != '\r'))
		return -EPROTO;
	r->status = (unsigned)n;
	*clen = UINT64_MAX;
	/* end + 2: the status line may be the whole header */
	line =
	    (const char *)memchr(r->buf, '\n', (size_t)(end + 2 - r->buf)) + 1;
	for (; line < end + 2; line = eol + 2) {
		eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon)
			return -EPROTO;
		for (val = colon + 1;
		     val < eol && (*val == ' ' || *val == '\t'); val++)
			;
		for (vend = eol;
		     vend > val && (vend[-1] == ' ' || vend[-1] == '\t');
		     vend--)
			;
		if (colon - line == 14 &&
		    !strncasecmp(line, "Content-Length", 14)) {
			if (ctl_parse_u64(val, (size_t)(vend - val), &n) ||
			    (*clen != UINT64_MAX && *clen != n))
				return -EPROTO;
			*clen = n;
		} else if (colon - line == 17 &&
			   !strncasecmp(line, "Transfer-Encoding", 17)) {
			return -EPROTO; /* our server never sends chunked */
		}
	}
	*body_off = (size_t)(end + 4 - r->buf);
	return 0;
}

/* Returns 0 once r->buf holds a whole reply, -EAGAIN if more is needed
 * (and can still come: !@eof), -EPROTO if it is malformed. */
static int ctl_parse_response(struct ctl_response *r, bool eof)
{
	size_t off, avail;
	uint64_t clen;
	int ret;

	ret = ctl_parse_head(r, &off, &clen);
	if (ret == -EAGAIN && eof)
		return r->len ? -EPROTO : -ECONNRESET;
	if (ret)
		return ret;
	avail = r->len - off;
	if (r->status < 200 || r->status == 204 || r->status == 304)
		clen = 0; /* RFC 9112 section 6.3: no content */
	if (clen == UINT64_MAX) {
		if (!eof)
			return -EAGAIN;
		clen = avail;
	}
	if (clen > avail)
		return eof ? -EPROTO : -EAGAIN;
	r->body = r->buf + off;
	r->body_len = (size_t)clen;
	r->body[r->body_len] = '\0';
	return 0;
}

static int ctl_recv_response(int fd, struct ctl_response *r, int64_t deadline)
{
	bool eof = false;
	ssize_t n;
	int ret;

	for (;;) {
		if (r->len == CTL_RESPONSE_MAX)
			return -EMSGSIZE;
		ret = ctl_wait(fd, POLLIN, deadline);
		if (ret)
			return ret;
		n = recv(fd, r->buf + r->len, CTL_RESPONSE_MAX - r->len, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		if (!n)
			eof = true;
		r->len += (size_t)n;
		r->buf[r->len] = '\0';
		ret = ctl_parse_response(r, eof);
		if (ret != -EAGAIN)
			return ret;
	}
}

static void ctl_response_free(struct ctl_response *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* One request on a fresh connection. @reply_timeout_ms bounds the wait
 * for the reply (-1: none). Returns 0 or -errno with a reason in @err. */
static int ctl_request(const char *socket_path, const char *method,
		       const char *url, const char *body, int reply_timeout_ms,
		       struct ctl_response *r, char *err, size_t errlen)
{
	int64_t deadline = ctl_now_ms() + CTL_TIMEOUT_MS;
	size_t blen = body ? strlen(body) : 0;
	char *req = NULL;
	int fd, ret, n;

	memset(r, 0, sizeof(*r));
	r->buf = malloc(CTL_RESPONSE_MAX + 1);
	n = asprintf(&req,
		     "%s %s HTTP/1.1\r\nHost: localhost\r\n"
		     "Connection: close\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n%s",
		     method, url, blen, body ? body : "");
	if (!r->buf || n < 0) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto err_free;
	}
	fd = ctl_connect(socket_path, deadline);
	if (fd < 0) {
		ret = fd;
		snprintf(err, errlen, "cannot connect to %s: %s", socket_path,
			 strerror(-ret));
		goto err_free;
	}
	ret = ctl_send_all(fd, req, (size_t)n, deadline);
	if (!ret)
		ret = ctl_recv_response(fd, r,
					reply_timeout_ms < 0
					    ? -1
					    : ctl_now_ms() + reply_timeout_ms);
	close(fd);
	if (ret == -EPROTO) {
		snprintf(err, errlen, "malformed reply from %s", socket_path);
		goto err_free;
	} else if (ret == -EMSGSIZE) {
		snprintf(err, errlen, "reply from %s is larger than %d bytes",
			 socket_path, CTL_RESPONSE_MAX);
		goto err_free;
	} else if (ret == -ETIMEDOUT) {
		snprintf(err, errlen, "timed out talking to %s", socket_path);
		goto err_free;
	} else if (ret) {
		snprintf(err, errlen, "lost connection to %s: %s", socket_path,
			 strerror(-ret));
		goto err_free;
	}
	free(req);
	return 0;

err_free:
	free(req);
	ctl_response_free(r);
	return ret;
}

static struct json_object *ctl_parse_json(const struct ctl_response *r)
{
	char err[CTL_ERR_MAX];

	return api_parse_json_object(r->body, r->body_len, err, sizeof(err));
}

/* The server's words reach a terminal: no control characters. */
static void ctl_sanitize(char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
	}
}

static bool ctl_get_u64(struct json_object *obj, const char *key, uint64_t *v)
{
	struct json_object *val;

	if (!json_object_object_get_ex(obj, key, &val) ||
	    !json_object_is_type(val, json_type_int))
		return false;
	*v = json_object_get_uint64(val);
	return true;
}

static bool ctl_get_null(struct json_object *obj, const char *key)
{
	struct json_object *val;

	return json_object_object_get_ex(obj, key, &val) && !val;
}

/* Reads GET /vm's reply into @st (api.h units; last_pause_ns 0 when never
 * paused). Returns 0 or -EPROTO. */
static int ctl_parse_status(const struct ctl_response *r, struct vm_status *st)
{
	struct json_object *obj, *val, *snap;
	uint64_t ncpus, uptime_ms, pause_us = 0;
	const char *state;
	int ret = -EPROTO;

	memset(st, 0, sizeof(*st));
	obj = ctl_parse_json(r);
	if (!obj)
		return -EPROTO;
	if (!json_object_object_get_ex(obj, "state", &val) ||
	    !json_object_is_type(val, json_type_string))
		goto out;
	state = json_object_get_string(val);
	if (strcmp(state, "paused") && strcmp(state, "running") &&
	    strcmp(state, "waiting"))
		goto out;
	st->paused = !strcmp(state, "paused");
	st->waiting = !strcmp(state, "waiting");
	if (!ctl_get_u64(obj, "vcpus", &ncpus) || ncpus > UINT_MAX ||
	    !ctl_get_u64(obj, "memory_bytes", &st->mem_size) ||
	    !ctl_get_u64(obj, "uptime_ms", &uptime_ms) ||
	    (!ctl_get_null(obj, "last_pause_us") &&
	     !ctl_get_u64(obj, "last_pause_us", &pause_us)))
		goto out;
	st->ncpus = (unsigned)ncpus;
	st->uptime_ns = uptime_ms * 1000000;
	st->last_pause_ns = pause_us * 1000;
	if (!ctl_get_null(obj, "snapshot")) {
		if (!json_object_object_get_ex(obj, "snapshot", &snap) ||
		    !ctl_get_u64(snap, "done_bytes",
				 &st->snapshot_done_bytes) ||
		    !ctl_get_u64(snap, "total_bytes",
				 &st->snapshot_total_bytes))
			goto out;
		st->snapshot_active = true;
	}
	/* A migration under way: its phase and pre-copy so far. */
	if (json_object_object_get_ex(obj, "migration", &snap) &&
	    json_object_is_type(snap, json_type_object)) {
		uint64_t pct = 0;

		if (!json_object_object_get_ex(snap, "state", &val) ||
		    !json_object_is_type(val, json_type_string))
			goto out;
		/* The phases GET /vm names (migrate_phase_name). */
		static const char *const phases[] = {
			"connecting", "checking", "precopy", "sending",
			"switching",  "postcopy", "done",    "lost",
		};

		for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++)
			if (!strcmp(json_object_get_string(val), phases[i]))
				st->migration_state = phases[i];
		if (!st->migration_state)
			goto out;
		/* Optional: older servers have the state only. */
		ctl_get_u64(snap, "rounds", &st->migration_rounds);
		ctl_get_u64(snap, "bytes_sent", &st->migration_bytes_sent);
		ctl_get_u64(snap, "dirty_rate", &st->migration_dirty_rate);
		ctl_get_u64(snap, "link_rate", &st->migration_link_rate);
		ctl_get_u64(snap, "expected_downtime_ms",
			    &st->migration_expected_downtime_ms);
		ctl_get_u64(snap, "throttle_percent", &pct);
		st->migration_throttle_pct = pct > 100 ? 100 : (unsigned)pct;
	}
	/* Optional for older servers: what the last snapshot cost. */
	if (json_object_object_get_ex(obj, "last_snapshot", &snap) &&
	    json_object_is_type(snap, json_type_object)) {
		struct json_object *live;
		uint64_t pus, tms;

		if (!json_object_object_get_ex(snap, "live", &live) ||
		    !json_object_is_type(live, json_type_boolean) ||
		    !ctl_get_u64(snap, "pause_us", &pus) ||
		    !ctl_get_u64(snap, "total_ms", &tms) ||
		    !ctl_get_u64(snap, "extra_bytes",
				 &st->last_snapshot.extra_bytes))
			goto out;
		st->have_last_snapshot = true;
		st->last_snapshot.live = json_object_get_boolean(live);
		st->last_snapshot.pause_ns = pus * 1000;
		st->last_snapshot.total_ns = tms * 1000000;
	}
	ret = 0;
out:
	json_object_put(obj);
	return ret;
}

static void ctl_format_bytes(char *buf, size_t len, uint64_t n)
{
	const uint64_t gib = 1024ULL * 1024 * 1024, mib = 1024 * 1024;

	if (n && !(n % gib))
		snprintf(buf, len, "%llu GiB", (unsigned long long)(n / gib));
	else if (n && !(n % mib))
		snprintf(buf, len, "%llu MiB", (unsigned long long)(n / mib));
	else if (n >= mib)
		snprintf(buf, len, "%.1f MiB", (double)n / MIB);
	else
		snprintf(buf, len, "%llu bytes", (unsigned long long)n);
}

static int ctl_print_status(const struct ctl_args *a,
			    const struct ctl_command *cmd,
			    const struct ctl_response *r)
{
	struct vm_status st;
	char mem[32], done[32], total[32];
	uint64_t us;

	if (ctl_parse_status(r, &st)) {
		log_error("malformed status from %s", a->socket_path);
		return CTL_EXIT_FAILED;
	}
	ctl_format_bytes(mem, sizeof(mem), st.mem_size);
	if (st.waiting) {
		printf("state: waiting for a snapshot (PUT /vm/restore)\n"
		       "vcpus: %u\nmemory: at most %s\n",
		       st.ncpus, mem);
		return CTL_EXIT_OK;
	}
	printf("state: %s\nvcpus: %u\nmemory: %s\nuptime: %.1f s\n",
	       st.paused ? "paused" : "running", st.ncpus, mem,
	       (double)st.uptime_ns / 1e9);
	us = st.last_pause_ns / 1000;
	if (!st.last_pause_ns)
		printf("last pause: never\n");
	else if (us < 10000)
		printf("last pause: %llu us\n", (unsigned long long)us);
	else
		printf("last pause: %.1f ms\n", (double)us / 1000);
	if (st.snapshot_active) {
		ctl_format_bytes(done, sizeof(done), st.snapshot_done_bytes);
		ctl_format_bytes(total, sizeof(total), st.snapshot_total_bytes);
		printf("snapshot: %s of %s written\n", done, total);
	}
	if (st.migration_state)
		printf(
		    "migration: %s, round %llu, %.1f MiB sent, dirty "
		    "%.1f MiB/s, link %.1f MiB/s, expected downtime %llu ms, "
		    "throttle %u%%\n",
		    st.migration_state, (unsigned long long)st.migration_rounds,
		    (double)st.migration_bytes_sent / MIB,
		    (double)st.migration_dirty_rate / MIB,
		    (double)st.migration_link_rate / MIB,
		    (unsigned long long)st.migration_expected_downtime_ms,
		    st.migration_throttle_pct);
	if (st.have_last_snapshot) {
		ctl_format_bytes(mem, sizeof(mem),
				 st.last_snapshot.extra_bytes);
		printf("last snapshot: %s, paused %llu us, %.1f s in all%s%s\n",
		       st.last_snapshot.live ? "live" : "paused",
		       (unsigned long long)(st.last_snapshot.pause_ns / 1000),
		       (double)st.last_snapshot.total_ns / 1e9,
		       st.last_snapshot.live ? ", extra memory " : "",
		       st.last_snapshot.live ? mem : "");
	}
	return CTL_EXIT_OK;
}

static int ctl_print_done(const struct ctl_args *a,
			  const struct ctl_command *cmd,
			  const struct ctl_response *r)
{
	printf("%s\n", cmd->done);
	return CTL_EXIT_OK;
}

static int ctl_print_snapshot(const struct ctl_args *a,
			      const struct ctl_command *cmd,
			      const struct ctl_response *r)
{
	struct json_object *obj = ctl_parse_json(r), *val;
	char *path = NULL;

	if (obj && json_object_object_get_ex(obj, "path", &val) &&
	    json_object_is_type(val, json_type_string))
		path = strdup(json_object_get_string(val));
	if (path)
		ctl_sanitize(path);
	printf("snapshot written to %s\n", path ? path : a->path);
	/* A live save says what the guest felt of it. */
	if (obj && json_object_object_get_ex(obj, "live", &val) &&
	    json_object_get_boolean(val)) {
		struct json_object *p = NULL, *t = NULL, *x = NULL;

		json_object_object_get_ex(obj, "pause_us", &p);
		json_object_object_get_ex(obj, "total_ms", &t);
		json_object_object_get_ex(obj, "extra_bytes", &x);
		printf("live: paused %" PRId64 " us, %" PRId64
		       " ms in all, %" PRId64 " KiB of extra memory\n",
		       p ? json_object_get_int64(p) : 0,
		       t ? json_object_get_int64(t) : 0,
		       x ? json_object_get_int64(x) / 1024 : 0);
	}
	free(path);
	json_object_put(obj);
	return CTL_EXIT_OK;
}

static int ctl_print_migrate(const struct ctl_args *a,
			     const struct ctl_command *cmd,
			     const struct ctl_response *r)
{
	struct json_object *obj = ctl_parse_json(r), *pc = NULL;
	uint64_t bytes = 0, total = 0, down = 0, rounds = 0, pct = 0;
	uint64_t faults = 0, p50 = 0, p99 = 0;
	char post[128] = "";

	/* A post-copy's blocked time, as the destination measured it. */
	if (obj && json_object_object_get_ex(obj, "postcopy", &pc) && pc &&
	    ctl_get_u64(pc, "faults", &faults) &&
	    ctl_get_u64(pc, "blocked_p50_us", &p50) &&
	    ctl_get_u64(pc, "blocked_p99_us", &p99))
		snprintf(post, sizeof(post),
			 ", post-copy: %llu faults, blocked p50 %llu us p99 "
			 "%llu us",
			 (unsigned long long)faults, (unsigned long long)p50,
			 (unsigned long long)p99);
	if (!obj || !ctl_get_u64(obj, "bytes_sent", &bytes) ||
	    !ctl_get_u64(obj, "total_ms", &total) ||
	    !ctl_get_u64(obj, "downtime_ms", &down) ||
	    !ctl_get_u64(obj, "rounds", &rounds)) {
		json_object_put(obj);
		log_error("malformed reply from %s", a->socket_path);
		return CTL_EXIT_FAILED;
	}
	/* Optional: an older server does not throttle. */
	ctl_get_u64(obj, "throttle_percent", &pct);
	json_object_put(obj);
	printf("migrated: %.1f MiB sent in %llu ms, paused %llu ms, %llu "
	       "pre-copy rounds",
	       (double)bytes / MIB, (unsigned long long)total,
	       (unsigned long long)down, (unsigned long long)rounds);
	if (pct)
		printf(", throttled to %llu%%", (unsigned long long)pct);
	printf("%s\n", post);
	return CTL_EXIT_OK;
}

static int ctl_print_restore(const struct ctl_args *a,
			     const struct ctl_command *cmd,
			     const struct ctl_response *r)
{
	struct json_object *obj = ctl_parse_json(r), *val;
	char mode[16] = "?";

	if (obj && json_object_object_get_ex(obj, "memory", &val) &&
	    json_object_is_type(val, json_type_string))
		snprintf(mode, sizeof(mode), "%s", json_object_get_string(val));
	ctl_sanitize(mode);
	printf("restored %s (--memory %s)\n", a->path, mode);
	json_object_put(obj);
	return CTL_EXIT_OK;
}

static const struct ctl_command ctl_commands[] = {
	{ "status", "GET", "/vm", NULL, false, ctl_print_status, false, false },
	{ "pause", "PUT", "/vm/pause", "VM paused", false, ctl_print_done,
	  false, false },
	{ "resume", "PUT", "/vm/resume", "VM resumed", false, ctl_print_done,
	  false, false },
	{ "shutdown", "PUT", "/vm/shutdown", "VM shutting down", false,
	  ctl_print_done, false, false },
	{ "snapshot", "PUT", "/vm/snapshot", NULL, true, ctl_print_snapshot,
	  false, false },
	{ "restore", "PUT", "/vm/restore", NULL, false, ctl_print_restore, true,
	  false },
	{ "working-set", "PUT", "/vm/working-set", "working set written", false,
	  ctl_print_done, false, false },
	{ "migrate", "PUT", "/vm/migrate", NULL, false, ctl_print_migrate,
	  false, true },
};

/* Turns a finished request into output and an exit status. */
static int ctl_report(const struct ctl_args *a, int ret, const char *err,
		      const struct ctl_response *r)
{
	struct json_object *obj, *val;
	char msg[CTL_ERR_MAX];

	if (ret) {
		log_error("%s", err);
		return ret == -EPROTO || ret == -EMSGSIZE
			   ? CTL_EXIT_FAILED
			   : CTL_EXIT_UNREACHABLE;
	}
	if (r->status < 200 || r->status > 299) {
		obj = ctl_parse_json(r);
		if (obj && json_object_object_get_ex(obj, "error", &val) &&
		    json_object_is_type(val, json_type_string))
			snprintf(msg, sizeof(msg), "%s",
				 json_object_get_string(val));
		else
			snprintf(msg, sizeof(msg), "server answered HTTP %u",
				 r->status);
		json_object_put(obj);
		ctl_sanitize(msg);
		log_error("%s", msg);
		return CTL_EXIT_FAILED;
	}
	if (a->json) {
		/* The server's JSON, or {} for a reply without content; a
		 * script can rely on valid JSON when the exit status is 0. */
		obj = r->body_len ? ctl_parse_json(r) : NULL;
		if (r->body_len && !obj) {
			log_error("malformed reply from %s", a->socket_path);
			return CTL_EXIT_FAILED;
		}
		json_object_put(obj);
		printf("%s", r->body_len ? r->body : "{}");
		if (!r->body_len || r->body[r->body_len - 1] != '\n')
			printf("\n");
		return CTL_EXIT_OK;
	}
	return a->cmd->print(a, a->cmd, r);
}

static void ctl_progress_draw(struct ctl_progress *p, uint64_t done,
			      uint64_t total)
{
	char bar[CTL_BAR_WIDTH + 1];
	int64_t now = ctl_now_ms();
	double frac = 0, rate = 0;
	unsigned i, filled;

	if (total)
		frac = done >= total ? 1.0 : (double)done / (double)total;
	if (!p->seen) {
		p->seen = true;
		p->t0 = now;
		p->done0 = done;
	}
	if (now > p->t0 && done >= p->done0)
		rate = (double)(done - p->done0) / MIB /
		       ((double)(now - p->t0) / 1000);
	filled = (unsigned)(frac * CTL_BAR_WIDTH);
	for (i = 0; i < CTL_BAR_WIDTH; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[CTL_BAR_WIDTH] = '\0';
	/* \033[K clears what a longer previous line left behind. */
	fprintf(stderr, "\r[%s] %3u%%  %.1f/%.1f MiB  %.1f MiB/s\033[K", bar,
		(unsigned)(frac * 100), (double)done / MIB, (double)total / MIB,
		rate);
	p->drawn = true;
}

/* Pre-copy, before the pause: no bar (what is left is not known until
 * the guest stops), but the rounds, the rates and what the pause would
 * cost now. */
static void ctl_progress_draw_precopy(struct ctl_progress *p,
				      const struct vm_status *st)
{
	fprintf(stderr,
		"\r%s: round %llu, %.1f MiB sent, dirty %.1f MiB/s, link "
		"%.1f MiB/s, expected downtime %llu ms",
		st->migration_state, (unsigned long long)st->migration_rounds,
		(double)st->migration_bytes_sent / MIB,
		(double)st->migration_dirty_rate / MIB,
		(double)st->migration_link_rate / MIB,
		(unsigned long long)st->migration_expected_downtime_ms);
	if (st->migration_throttle_pct)
		fprintf(stderr, ", throttle %u%%", st->migration_throttle_pct);
	fprintf(stderr, "\033[K");
	p->drawn = true;
}

/* Polls GET /vm on its own connections while the snapshot request waits
 * on another; failed polls are skipped silently. */
static void *ctl_progress_main(void *arg)
{
	struct ctl_progress *p = arg;
	struct ctl_response r;
	struct vm_status st;
	struct timespec deadline;
	char err[CTL_ERR_MAX];

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		pthread_mutex_unlock(&p->lock);
		if (!ctl_request(p->socket_path, "GET", "/vm", NULL,
				 CTL_POLL_TIMEOUT_MS, &r, err, sizeof(err))) {
			if (r.status == 200 && !ctl_parse_status(&r, &st) &&
			    st.snapshot_active)
				ctl_progress_draw(p, st.snapshot_done_bytes,
						  st.snapshot_total_bytes);
			else if (r.status == 200 && st.migration_state &&
				 !strcmp(st.migration_state, "precopy"))
				ctl_progress_draw_precopy(p, &st);
			ctl_response_free(&r);
		}
		pthread_mutex_lock(&p->lock);
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_nsec += CTL_PROGRESS_MS * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		while (!p->stop &&
		       pthread_cond_timedwait(&p->wake, &p->lock, &deadline) !=
			   ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static int ctl_progress_start(struct ctl_progress *p, const char *socket_path)
{
	pthread_condattr_t attr;
	int ret;

	memset(p, 0, sizeof(*p));
	p->socket_path = socket_path;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &attr);
	pthread_condattr_destroy(&attr);
	ret = -pthread_create(&p->thread, NULL, ctl_progress_main, p);
	if (ret) {
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
	}
	return ret;
}

static void ctl_progress_stop(struct ctl_progress *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	if (p->drawn)
		fprintf(stderr, "\r\033[K");
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
}

/* @path made absolute against ctl's working directory into *@abs (NULL
 * when it is already): the user means their directory, not the one
 * stasis runs in. 0, or -1 with a line in @err. */
static int ctl_absolute_path(const char *path, char **abs, char *err,
			     size_t errlen)
{
	char *cwd;

	*abs = NULL;
	if (path[0] == '/')
		return 0;
	cwd = getcwd(NULL, 0);
	if (!cwd || asprintf(abs, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "",
			     path) < 0) {
		snprintf(err, errlen, "cannot resolve relative path %s: %s",
			 path, strerror(errno));
		free(cwd);
		*abs = NULL;
		return -1;
	}
	free(cwd);
	return 0;
}

/* @obj as a request body, when @ok (every key went in); puts @obj. NULL,
 * with a line in @err, when out of memory. */
static char *ctl_body_finish(struct json_object *obj, bool ok, char *err,
			     size_t errlen)
{
	const char *text = NULL;
	char *body = NULL;

	if (obj && ok)
		text = json_object_to_json_string_ext(
		    obj,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text)
		body = strdup(text);
	json_object_put(obj);
	if (!body)
		snprintf(err, errlen, "out of memory");
	return body;
}

/* {"path": ..., "then": ..., "compress": ..., "base": ..., "live": true}
 * ("compress", "base" and "live" only when given), with relative paths
 * made absolute: the user means their directory, not the one stasis runs
 * in. */
static char *ctl_snapshot_body(const struct ctl_args *a, char *err,
			       size_t errlen)
{
	struct json_object *obj;
	char *abs = NULL, *abs_base = NULL;
	bool ok;

	if (ctl_absolute_path(a->path, &abs, err, errlen) ||
	    (a->base && ctl_absolute_path(a->base, &abs_base, err, errlen))) {
		free(abs);
		return NULL;
	}
	obj = json_object_new_object();
	ok = obj &&
	     !json_object_object_add(
		 obj, "path", json_object_new_string(abs ? abs : a->path)) &&
	     !json_object_object_add(
		 obj, "then",
		 json_object_new_string(a->then ? a->then : "resume"));
	if (ok && a->compress)
		ok = !json_object_object_add(
		    obj, "compress", json_object_new_string(a->compress));
	if (ok && a->base)
		ok = !json_object_object_add(
		    obj, "base",
		    json_object_new_string(abs_base ? abs_base : a->base));
	if (ok && a->live)
		ok = !json_object_object_add(obj, "live",
					     json_object_new_boolean(1));
	free(abs);
	free(abs_base);
	return ctl_body_finish(obj, ok, err, errlen);
}

/* The migrate request: every option given, as given. */
static char *ctl_migrate_body(const struct ctl_args *a, char *err,
			      size_t errlen)
{
	struct json_object *obj = json_object_new_object();
	bool ok = true;

	if (!obj)
		return ctl_body_finish(NULL, false, err, errlen);
	ok = ok && !json_object_object_add(obj, "destination",
					   json_object_new_string(a->path));
	if (a->insecure)
		ok = ok && !json_object_object_add(obj, "insecure",
						   json_object_new_boolean(1));
	if (a->postcopy)
		ok = ok && !json_object_object_add(obj, "postcopy",
						   json_object_new_boolean(1));
	if (a->timeout_s >= 0)
		ok = ok &&
		     !json_object_object_add(
			 obj, "timeout_s", json_object_new_int64(a->timeout_s));
	if (a->downtime_ms >= 0)
		ok = ok && !json_object_object_add(
			       obj, "downtime_ms",
			       json_object_new_int64(a->downtime_ms));
	if (a->connections >= 0)
		ok = ok && !json_object_object_add(
			       obj, "connections",
			       json_object_new_int64(a->connections));
	if (a->on_timeout)
		ok = ok && !json_object_object_add(
			       obj, "on_timeout",
			       json_object_new_string(a->on_timeout));
	if (a->tls_dir) {
		char *abs = NULL;

		/* The VM reads it: a relative path is ctl's. */
		if (ctl_absolute_path(a->tls_dir, &abs, err, errlen)) {
			json_object_put(obj);
			return NULL;
		}
		ok = ok && !json_object_object_add(
			       obj, "tls_dir",
			       json_object_new_string(abs ? abs : a->tls_dir));
		free(abs);
	}
	if (a->compress)
		ok = ok &&
		     !json_object_object_add(
			 obj, "compress", json_object_new_string(a->compress));
	if (a->no_auto_converge)
		ok = ok && !json_object_object_add(obj, "auto_converge",
						   json_object_new_boolean(0));
	return ctl_body_finish(obj, ok, err, errlen);
}

/* {"path": ..., "memory": ..., "clock": ..., "paused": true}, only the
 * keys given; PATH made absolute as for a snapshot. */
static char *ctl_restore_body(const struct ctl_args *a, char *err,
			      size_t errlen)
{
	struct json_object *obj;
	char *abs = NULL;
	bool ok;

	if (ctl_absolute_path(a->path, &abs, err, errlen))
		return NULL;
	obj = json_object_new_object();
	ok = obj != NULL;
	ok =
	    ok && !json_object_object_add(
		      obj, "path", json_object_new_string(abs ? abs : a->path));
	if (ok && a->memory)
		ok = !json_object_object_add(obj, "memory",
					     json_object_new_string(a->memory));
	if (ok && a->clock)
		ok = !json_object_object_add(obj, "clock",
					     json_object_new_string(a->clock));
	if (ok && a->paused)
		ok = !json_object_object_add(obj, "paused",
					     json_object_new_boolean(1));
	free(abs);
	return ctl_body_finish(obj, ok, err, errlen);
}

/* A migrate option's number: 0..2^31. */
static int ctl_number(const char *opt, const char *s, long long *v)
{
	char *end;

	errno = 0;
	*v = s ? strtoll(s, &end, 10) : -1;
	if (!s || !*s || *end || errno || *v < 0 || *v > INT32_MAX) {
		log_error("%s takes a number", opt);
		return -EINVAL;
	}
	return 0;
}

/* --NAME VALUE or --NAME=VALUE at argv[*k]: the value ("" when missing),
 * or NULL when argv[*k] is another option. */
static const char *ctl_option_value(int argc, char **argv, int *k,
				    const char *name)
{
	size_t n = strlen(name);

	if (strncmp(argv[*k], name, n))
		return NULL;
	if (argv[*k][n] == '=')
		return argv[*k] + n + 1;
	if (argv[*k][n])
		return NULL;
	return *k + 1 < argc ? argv[++*k] : "";
}

static void ctl_usage(FILE *f)
{
	fprintf(f, "usage: stasis ctl SOCKET "
		   "status|pause|resume|shutdown|working-set [--json]\n"
		   "       stasis ctl SOCKET snapshot PATH "
		   "[--then resume|pause|exit]\n"
		   "                [--compress none|lz4|zstd[:LEVEL]] "
		   "[--live] [--base PARENT] [--json]\n"
		   "       stasis ctl SOCKET restore PATH "
		   "[--memory ondemand|map|copy]\n"
		   "                [--clock advance|frozen] [--paused] "
		   "[--json]\n"
		   "       stasis ctl SOCKET migrate unix:PATH|tcp:HOST:PORT "
		   "[--tls-dir DIR|--insecure]\n"
		   "                [--connections N] [--timeout-s N "
		   "[--on-timeout abort|postcopy]]\n"
		   "                [--postcopy] [--downtime-ms N] "
		   "[--no-auto-converge]\n"
		   "                [--compress ...] [--json]\n");
}

/* Returns 0, 1 for --help, or -EINVAL after printing why. */
static int ctl_parse_args(int argc, char **argv, struct ctl_args *a)
{
	bool options = true;
	const char *v;
	size_t i;
	int k;

	memset(a, 0, sizeof(*a));
	a->timeout_s = a->downtime_ms = a->connections = -1;
	for (k = 1; k < argc && strcmp(argv[k], "--"); k++) {
		if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h"))
			return 1;
	}
	if (argc < 3) {
		log_error("ctl needs a socket and a command");
		return -EINVAL;
	}
	a->socket_path = argv[1];
	for (i = 0; i < sizeof(ctl_commands) / sizeof(*ctl_commands); i++) {
		if (!strcmp(argv[2], ctl_commands[i].name))
			a->cmd = &ctl_commands[i];
	}
	if (!a->cmd) {
		log_error("unknown ctl command '%s' (usage: stasis ctl SOCKET "
			  "status|pause|resume|shutdown|working-set|snapshot "
			  "PATH|restore PATH|migrate DEST)",
			  argv[2]);
		return -EINVAL;
	}
	for (k = 3; k < argc; k++) {
		if (options && !strcmp(argv[k], "--")) {
			options = false;
		} else if (options && !strcmp(argv[k], "--json")) {
			a->json = true;
		} else if (options && !strcmp(argv[k], "--live")) {
			a->live = true;
		} else if (options &&
			   (v = ctl_option_value(argc, argv, &k, "--then"))) {
			a->then = v;
			if (strcmp(a->then, "resume") &&
			    strcmp(a->then, "pause") &&
			    strcmp(a->then, "exit")) {
				log_error("--then takes resume, pause or exit");
				return -EINVAL;
			}
		} else if (options && (v = ctl_option_value(argc, argv, &k,
							    "--compress"))) {
			struct snap_compress c;
			char cerr[128];

			a->compress = v;
			if (snap_compress_parse(a->compress, &c, cerr,
						sizeof(cerr))) {
				log_error("--compress: %s", cerr);
				return -EINVAL;
			}
		} else if (options && a->cmd->migrate &&
			   !strcmp(argv[k], "--no-auto-converge")) {
			a->no_auto_converge = true;
		} else if (options && a->cmd->migrate &&
			   (!strcmp(argv[k], "--insecure") ||
			    !strcmp(argv[k], "--postcopy"))) {
			if (argv[k][2] == 'i')
				a->insecure = true;
			else
				a->postcopy = true;
		} else if (options && a->cmd->migrate &&
			   (!strcmp(argv[k], "--timeout-s") ||
			    !strcmp(argv[k], "--downtime-ms") ||
			    !strcmp(argv[k], "--connections"))) {
			const char *opt = argv[k];
			long long *num =
			    !strcmp(opt, "--timeout-s")	    ? &a->timeout_s
			    : !strcmp(opt, "--downtime-ms") ? &a->downtime_ms
							    : &a->connections;

			if (ctl_number(opt, k + 1 < argc ? argv[++k] : NULL,
				       num))
				return -EINVAL;
		} else if (options && a->cmd->migrate &&
			   (!strcmp(argv[k], "--on-timeout") ||
			    !strcmp(argv[k], "--tls-dir"))) {
			const char **str =
			    argv[k][2] == 'o' ? &a->on_timeout : &a->tls_dir;

			if (k + 1 >= argc) {
				log_error("%s needs a value", argv[k]);
				return -EINVAL;
			}
			*str = argv[++k];
		} else if (options && a->cmd->restore &&
			   (v = ctl_option_value(argc, argv, &k, "--memory"))) {
			a->memory = v;
			if (strcmp(v, "ondemand") && strcmp(v, "map") &&
			    strcmp(v, "copy")) {
				log_error("--memory takes ondemand, map or "
					  "copy");
				return -EINVAL;
			}
		} else if (options && a->cmd->restore &&
			   (v = ctl_option_value(argc, argv, &k, "--clock"))) {
			a->clock = v;
			if (strcmp(v, "advance") && strcmp(v, "frozen")) {
				log_error("--clock takes advance or frozen");
				return -EINVAL;
			}
		} else if (options && a->cmd->restore &&
			   !strcmp(argv[k], "--paused")) {
			a->paused = true;
		} else if (options &&
			   (v = ctl_option_value(argc, argv, &k, "--base"))) {
			a->base = v;
			if (!a->base[0]) {
				log_error("--base needs the parent snapshot's "
					  "path");
				return -EINVAL;
			}
		} else if (options && argv[k][0] == '-' && argv[k][1]) {
			log_error("unknown ctl option '%s'", argv[k]);
			return -EINVAL;
		} else if ((a->cmd->snapshot || a->cmd->restore ||
			    a->cmd->migrate) &&
			   !a->path) {
			a->path = argv[k];
		} else {
			log_error("unexpected argument '%s'", argv[k]);
			return -EINVAL;
		}
	}
	if (a->cmd->snapshot || a->cmd->restore || a->cmd->migrate) {
		if (!a->path || !a->path[0]) {
			if (a->cmd->migrate)
				log_error("migrate needs a destination "
					  "(unix:PATH or tcp:HOST:PORT)");
			else
				log_error("%s needs a PATH", a->cmd->name);
			return -EINVAL;
		}
	}
	/* A migration takes --compress too: its stream is a snapshot. */
	if (!a->cmd->snapshot &&
	    (a->then || (a->compress && !a->cmd->migrate) || a->live ||
	     a->base)) {
		log_error("%s only applies to snapshot", a->then   ? "--then"
							 : a->live ? "--live"
							 : a->compress
							     ? "--compress"
							     : "--base");
		return -EINVAL;
	}
	return 0;
}

int ctl_main(int argc, char **argv)
{
	struct ctl_progress progress;
	struct ctl_response r;
	struct ctl_args a;
	char err[CTL_ERR_MAX];
	char *body = NULL;
	bool show_progress = false;
	int ret, status;

	ret = ctl_parse_args(argc, argv, &a);
	if (ret > 0) {
		ctl_usage(stdout);
		return CTL_EXIT_OK;
	}
	if (ret)
		return CTL_EXIT_USAGE; /* the one-line reason is printed */
	if (!a.cmd->snapshot && !a.cmd->restore && !a.cmd->migrate) {
		ret = ctl_request(a.socket_path, a.cmd->method, a.cmd->url,
				  NULL, CTL_TIMEOUT_MS, &r, err, sizeof(err));
		status = ctl_report(&a, ret, err, &r);
		goto out;
	}
	body = a.cmd->migrate	? ctl_migrate_body(&a, err, sizeof(err))
	       : a.cmd->restore ? ctl_restore_body(&a, err, sizeof(err))
				: ctl_snapshot_body(&a, err, sizeof(err));
	if (!body) {
		log_error("%s", err);
		return CTL_EXIT_FAILED;
	}
	if ((a.cmd->snapshot || a.cmd->migrate) && isatty(STDERR_FILENO))
		show_progress = !ctl_progress_start(&progress, a.socket_path);
	/* No reply timeout: writing a large guest may take minutes. */
	ret = ctl_request(a.socket_path, a.cmd->method, a.cmd->url, body, -1,
			  &r, err, sizeof(err));
	if (show_progress)
		ctl_progress_stop(&progress);
	status = ctl_report(&a, ret, err, &r);
out:
	if (!ret)
		ctl_response_free(&r);
	free(body);
	fflush(stdout);
	return status;
}
