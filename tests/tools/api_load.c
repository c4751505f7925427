/* api_load: bad input everywhere at once against a running stasis.
 *
 *   api_load [--seconds N] [--clients N] [--timeout-ms N] SOCKET DIR
 *
 * CLIENTS threads (64) issue status, pause, resume and snapshot requests
 * in random order for N seconds (60), snapshots to DIR/load-K.snap (see
 * pick_op for the mix). Beside
 * them, abusers: slow-loris connections held half sent, malformed requests,
 * and clients that close right after asking for a snapshot. Every reply
 * must be well formed and arrive within the timeout; a status reply must
 * name a state. Prints a summary, and exits 1 on the first kind of
 * failure seen (with what it was), 2 on bad usage. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "http_unix.h"

enum load_op { OP_STATUS, OP_PAUSE, OP_RESUME, OP_SNAPSHOT, OP_COUNT };

static const char *const op_names[OP_COUNT] = { "status", "pause", "resume",
						"snapshot" };

struct load_opts {
	const char *sock;
	const char *dir;
	unsigned seconds, clients;
	int timeout_ms;
};

struct load_client {
	const struct load_opts *o;
	unsigned seed;
	unsigned ok[OP_COUNT], refused[OP_COUNT];
	unsigned bad;
	char why[200];
};

static atomic_bool load_stop;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void client_bad(struct load_client *c, const char *fmt,
		       const char *detail)
{
	if (!c->bad++)
		snprintf(c->why, sizeof(c->why), fmt, detail);
}

/* A status reply names the VM's state. */
static bool status_names_state(const struct http_reply *rep)
{
	struct json_object *obj = json_tokener_parse(rep->body), *st;
	bool ok = false;

	if (obj && json_object_object_get_ex(obj, "state", &st) &&
	    json_object_is_type(st, json_type_string)) {
		const char *s = json_object_get_string(st);

		ok = !strcmp(s, "running") || !strcmp(s, "paused");
	}
	json_object_put(obj);
	return ok;
}

static int client_request(struct load_client *c, enum load_op op,
			  struct http_reply *rep)
{
	char body[600];

	switch (op) {
	case OP_STATUS:
		return http_unix_request(c->o->sock, "GET", "/vm", NULL, rep,
					 c->o->timeout_ms);
	case OP_PAUSE:
		return http_unix_request(c->o->sock, "PUT", "/vm/pause", NULL,
					 rep, c->o->timeout_ms);
	case OP_RESUME:
		return http_unix_request(c->o->sock, "PUT", "/vm/resume", NULL,
					 rep, c->o->timeout_ms);
	default:
		snprintf(body, sizeof(body),
			 "{\"path\": \"%s/load-%u.snap\", \"then\": \"%s\"}",
			 c->o->dir, rand_r(&c->seed) % 4,
			 rand_r(&c->seed) % 2 ? "resume" : "pause");
		return http_unix_request(c->o->sock, "PUT", "/vm/snapshot",
					 body, rep, c->o->timeout_ms);
	}
}

/* Status, pause and resume alike; a snapshot one time in a thousand,
 * about one a second from 64 clients: one takes a large part of a second,
 * so that pauses and resumes both land between snapshots and collide with
 * them, instead of finding one always running. */
static enum load_op pick_op(unsigned *seed)
{
	unsigned r = (unsigned)rand_r(seed) % 1000;

	return r == 0 ? OP_SNAPSHOT : (enum load_op)(r % 3);
}

static void *client_main(void *arg)
{
	struct load_client *c = arg;
	struct http_reply *rep = malloc(sizeof(*rep));
	char why[160];

	if (!rep) {
		client_bad(c, "%s", "out of memory");
		return NULL;
	}
	while (!atomic_load(&load_stop)) {
		enum load_op op = pick_op(&c->seed);

		if (client_request(c, op, rep)) {
			client_bad(c, "%s: cannot connect", op_names[op]);
			continue;
		}
		if (rep->timed_out) {
			client_bad(c, "%s: no reply within the timeout",
				   op_names[op]);
		} else if (!http_reply_well_formed(rep, why, sizeof(why))) {
			client_bad(c, "%s", why);
		} else if (op == OP_STATUS &&
			   (rep->status != 200 || !status_names_state(rep))) {
			client_bad(c, "status without a state: %.100s",
				   rep->body);
		} else if (rep->status < 300) {
			c->ok[op]++;
		} else if (rep->status == 409) {
			c->refused[op]++;
		} else {
			client_bad(c, "refused, not with 409: %.120s",
				   rep->body);
		}
	}
	free(rep);
	return NULL;
}

/* Half-sent requests, held open and replaced every second or so. */
static void *slow_loris_main(void *arg)
{
	static const char *const partial[] = {
		"",
		"GET /vm HTTP/1.1\r\n",
		"GET /vm HTTP/1.1\r\nHost: x\r\nX-Slow: a",
		"PUT /vm/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 100"
		"\r\n\r\n{\"path\": ",
	};
	struct load_client *c = arg;
	int fds[16];

	while (!atomic_load(&load_stop)) {
		for (int i = 0; i < 16; i++) {
			const char *p = partial[i % 4];

			fds[i] = http_unix_connect(c->o->sock);
			if (fds[i] >= 0 && *p)
				send(fds[i], p, strlen(p), MSG_NOSIGNAL);
		}
		sleep_ms(1000);
		for (int i = 0; i < 16; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		c->ok[OP_STATUS]++;
	}
	return NULL;
}

/* Requests no server may take: each gets an error status or is closed. */
static void *malformed_main(void *arg)
{
	static const char *const bad[] = {
		"GARBAGE\r\n\r\n",
		"GET /vm\r\n\r\n",
		"GET /vm HTTP/9.9\r\nHost: x\r\n\r\n",
		"\xff\xfe\x00\x01 / HTTP/1.1\r\n\r\n",
		"PUT /vm/pause HTTP/1.1\r\nHost: x\r\nContent-Length: "
		"-5\r\n\r\n",
		"PUT /vm/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
		"\r\n{\"path\": 17}",
		"PUT /vm/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n"
		"\r\n{\"pa\xffth\": \"x\"}",
		"GET /vm/../vm HTTP/1.1\r\nHost: x\r\n\r\n",
	};
	struct load_client *c = arg;
	struct http_reply *rep = malloc(sizeof(*rep));
	unsigned i = 0;

	if (!rep)
		return NULL;
	while (!atomic_load(&load_stop)) {
		const char *req = bad[i++ % (sizeof(bad) / sizeof(*bad))];

		if (http_unix_exchange(c->o->sock, req, strlen(req), rep,
				       c->o->timeout_ms)) {
			client_bad(c, "%s", "malformed: cannot connect");
		} else if (rep->timed_out) {
			client_bad(c, "malformed request %s unanswered", req);
		} else if (rep->status != -1 &&
			   (rep->status < 400 || rep->status > 505)) {
			client_bad(c, "malformed request took: %.80s",
				   rep->raw);
		} else {
			c->refused[OP_STATUS]++;
		}
		sleep_ms(20);
	}
	free(rep);
	return NULL;
}

/* Asks for a snapshot and hangs up before the reply. */
static void *disconnect_main(void *arg)
{
	struct load_client *c = arg;
	char req[700];
	int n, fd;

	n = snprintf(req, sizeof(req),
		     "PUT /vm/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: "
		     "%zu\r\n\r\n{\"path\": \"%s/gone.snap\"}",
		     strlen(c->o->dir) + 22, c->o->dir);
	while (!atomic_load(&load_stop)) {
		fd = http_unix_connect(c->o->sock);
		if (fd < 0) {
			client_bad(c, "%s", "disconnect: cannot connect");
		} else {
			send(fd, req, (size_t)n, MSG_NOSIGNAL);
			close(fd);
			c->ok[OP_SNAPSHOT]++;
		}
		sleep_ms(250);
	}
	return NULL;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int parse_opts(int argc, char **argv, struct load_opts *o)
{
	unsigned t = 120000;
	int i;

	*o = (struct load_opts){ .seconds = 60, .clients = 64 };
	for (i = 1; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
		int bad;

		if (!strcmp(argv[i], "--seconds"))
			bad = parse_uint(argv[i + 1], 3600, &o->seconds);
		else if (!strcmp(argv[i], "--clients"))
			bad = parse_uint(argv[i + 1], 512, &o->clients);
		else if (!strcmp(argv[i], "--timeout-ms"))
			bad = parse_uint(argv[i + 1], 3600000, &t);
		else
			bad = -1;
		if (bad) {
			fprintf(stderr, "api_load: bad option %s %s\n", argv[i],
				argv[i + 1]);
			return -1;
		}
	}
	if (argc - i != 2) {
		fprintf(stderr, "usage: api_load [--seconds N] [--clients N] "
				"[--timeout-ms N] SOCKET DIR\n");
		return -1;
	}
	o->timeout_ms = (int)t;
	o->sock = argv[i];
	o->dir = argv[i + 1];
	return 0;
}

int main(int argc, char **argv)
{
	static void *(*const abusers[])(void *) = {
		slow_loris_main,
		malformed_main,
		disconnect_main,
	};
	const unsigned nabuse = sizeof(abusers) / sizeof(*abusers);
	unsigned ok[OP_COUNT] = { 0 }, refused[OP_COUNT] = { 0 }, bad = 0;
	struct load_client *c;
	struct load_opts o;
	pthread_t *t;
	unsigned n;
	uint64_t end;

	if (parse_opts(argc, argv, &o))
		return 2;
	n = o.clients + nabuse;
	c = calloc(n, sizeof(*c));
	t = calloc(n, sizeof(*t));
	if (!c || !t) {
		fprintf(stderr, "api_load: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < n; i++) {
		c[i].o = &o;
		c[i].seed = 7919u * (i + 1);
		if (pthread_create(&t[i], NULL,
				   i < o.clients ? client_main
						 : abusers[i - o.clients],
				   &c[i])) {
			fprintf(stderr, "api_load: cannot start a thread\n");
			atomic_store(&load_stop, true);
			n = i;
			break;
		}
	}
	end = now_ms() + (uint64_t)o.seconds * 1000;
	while (now_ms() < end && n == o.clients + nabuse)
		sleep_ms(100);
	atomic_store(&load_stop, true);
	for (unsigned i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		if (c[i].bad && !bad)
			fprintf(stderr, "api_load: %s %u: %u bad, first: %s\n",
				i < o.clients ? "client" : "abuser", i,
				c[i].bad, c[i].why);
		bad += c[i].bad;
		for (int k = 0; k < OP_COUNT && i < o.clients; k++) {
			ok[k] += c[i].ok[k];
			refused[k] += c[i].refused[k];
		}
	}
	printf("api_load: %u clients, %u s:", o.clients, o.seconds);
	for (int k = 0; k < OP_COUNT; k++)
		printf(" %s %u ok %u refused;", op_names[k], ok[k], refused[k]);
	printf(" abusers: %u slow-loris rounds, %u malformed refused, %u "
	       "hang-ups; %u bad\n",
	       c[o.clients].ok[OP_STATUS], c[o.clients + 1].refused[OP_STATUS],
	       c[o.clients + 2].ok[OP_SNAPSHOT], bad);
	free(c);
	free(t);
	return bad || n != o.clients + nabuse ? 1 : 0;
}
