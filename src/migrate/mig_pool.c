/* Several connections for a migration's memory (mig_pool.h): joining
 * them, spreading PAGES frames over them at the source, and applying
 * each connection's frames at the destination on a thread of its own. */
#include "migrate/mig_pool.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

/* Frames queued per extra connection at the source: enough to keep its
 * socket busy while the caller copies the next granule. */
#define POOL_SLOTS 4

int mig_pool_hello_connections(const char *hello, unsigned *n)
{
	const char *s = strstr(hello, " connections=");
	char *end;
	unsigned long v;

	*n = 1;
	if (!s)
		return 0;
	v = strtoul(s + strlen(" connections="), &end, 10);
	if ((*end && *end != ' ') || v < 1 || v > MIG_POOL_MAX)
		return -EINVAL;
	*n = (unsigned)v;
	return 0;
}

/* The 32 hex digits after @key in @text, or -ENOENT. */
static int token_after(const char *text, const char *key,
		       char token[MIG_POOL_TOKEN_LEN + 1])
{
	const char *s = strstr(text, key);

	if (!s)
		return -ENOENT;
	s += strlen(key);
	if (strspn(s, "0123456789abcdef") != MIG_POOL_TOKEN_LEN ||
	    (s[MIG_POOL_TOKEN_LEN] && s[MIG_POOL_TOKEN_LEN] != ' '))
		return -ENOENT;
	memcpy(token, s, MIG_POOL_TOKEN_LEN);
	token[MIG_POOL_TOKEN_LEN] = '\0';
	return 0;
}

int mig_pool_welcome_token(const char *welcome,
			   char token[MIG_POOL_TOKEN_LEN + 1])
{
	return token_after(welcome, " token=", token);
}

int mig_pool_make_token(char token[MIG_POOL_TOKEN_LEN + 1])
{
	uint8_t raw[MIG_POOL_TOKEN_LEN / 2];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -EIO;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(token + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

/* The source's side. */

struct pool_conn {
	struct mig_pool *p;
	unsigned index; /* 1.. (0 is the main channel) */
	struct mig_chan c;
	pthread_t thread;
	bool started, done;
	uint8_t *buf[POOL_SLOTS];
	uint64_t gpa[POOL_SLOTS];
	uint32_t len[POOL_SLOTS];
	unsigned head, count; /* the queue, under the pool's lock */
	uint64_t pages_bytes;
};

struct mig_pool {
	unsigned n; /* extra connections */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, finishing;
	int error; /* the first failure of any connection */
	char err[320];
	struct pool_conn conn[MIG_POOL_MAX - 1];
};

/* Records the first failure and wakes everyone: under the lock. */
static void pool_fail_locked(struct mig_pool *p, int ret, const char *why)
{
	if (!p->error) {
		p->error = ret;
		snprintf(p->err, sizeof(p->err), "%s", why);
	}
	pthread_cond_broadcast(&p->cond);
}

/* The same for connection @pc's failure, named. */
static void pool_fail_conn_locked(struct pool_conn *pc, int ret,
				  const char *why)
{
	char msg[300];

	snprintf(msg, sizeof(msg), "memory connection %u: %s", pc->index, why);
	pool_fail_locked(pc->p, ret, msg);
}

static void *pool_conn_main(void *arg)
{
	struct pool_conn *pc = arg;
	struct mig_pool *p = pc->p;
	char err[256];
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct iovec v;
		unsigned h;

		while (!p->stop && !p->error && !pc->count && !p->finishing)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop || p->error)
			break;
		if (!pc->count) {
			/* finishing, and all sent */
			pthread_mutex_unlock(&p->lock);
			ret = mig_send(&pc->c, MIG_COMMIT, pc->pages_bytes,
				       NULL, 0, err, sizeof(err));
			pthread_mutex_lock(&p->lock);
			if (ret)
				pool_fail_conn_locked(pc, ret, err);
			pc->done = true;
			pthread_cond_broadcast(&p->cond);
			break;
		}
		h = pc->head;
		pthread_mutex_unlock(&p->lock);
		v = (struct iovec){ .iov_base = pc->buf[h],
				    .iov_len = pc->len[h] };
		ret = mig_send(&pc->c, MIG_PAGES, pc->gpa[h], &v, 1, err,
			       sizeof(err));
		pthread_mutex_lock(&p->lock);
		if (ret) {
			pool_fail_conn_locked(pc, ret, err);
			break;
		}
		pc->pages_bytes += pc->len[h];
		pc->head = (h + 1) % POOL_SLOTS;
		pc->count--;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Connects extra connection @pc and joins it to the migration. */
static int pool_join(struct pool_conn *pc, const struct mig_addr *a,
		     struct mig_tls *tls, const struct mig_chan *main,
		     const char *token, char *err, size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1];
	struct mig_frame f;
	int ret;

	ret = mig_connect(a, &pc->c, err, errlen);
	if (ret)
		return ret;
	pc->c.idle_ms = main->idle_ms;
	pc->c.deadline_ms = main->deadline_ms;
	if (tls) {
		ret = mig_tls_start(&pc->c, tls, false, a->host, err, errlen);
		if (ret)
			return ret;
	}
	snprintf(buf, sizeof(buf), "stasis-migrate %u %s join=%s index=%u",
		 MIG_PROTO_VERSION, STASIS_VERSION, token, pc->index);
	ret = mig_send_text(&pc->c, MIG_HELLO, 0, buf, err, errlen);
	if (!ret)
		ret = mig_expect(&pc->c, MIG_WELCOME, &f, buf, sizeof(buf), err,
				 errlen);
	return ret;
}

int mig_pool_open(struct mig_pool **out, const struct mig_addr *a,
		  struct mig_tls *tls, struct mig_chan *main, unsigned n,
		  const char *token, char *err, size_t errlen)
{
	struct mig_pool *p;
	int ret = 0;

	*out = NULL;
	if (n <= 1)
		return 0;
	if (n > MIG_POOL_MAX)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "--connections: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	for (unsigned i = 0; i < MIG_POOL_MAX - 1; i++)
		p->conn[i].c.fd = -1;
	p->n = n - 1;
	for (unsigned i = 0; i < p->n && !ret; i++) {
		struct pool_conn *pc = &p->conn[i];
		char why[256];

		pc->p = p;
		pc->index = i + 1;
		for (unsigned s = 0; s < POOL_SLOTS && !ret; s++) {
			pc->buf[s] = malloc(MIG_POOL_GRANULE);
			if (!pc->buf[s]) {
				snprintf(why, sizeof(why), "%s",
					 strerror(ENOMEM));
				ret = -ENOMEM;
			}
		}
		if (!ret)
			ret = pool_join(pc, a, tls, main, token, why,
					sizeof(why));
		if (ret) {
			snprintf(err, errlen, "memory connection %u: %s",
				 pc->index, why);
			break;
		}
		ret = -pthread_create(&pc->thread, NULL, pool_conn_main, pc);
		if (ret)
			snprintf(err, errlen,
				 "memory connection %u: cannot start its "
				 "thread: %s",
				 pc->index, strerror(-ret));
		pc->started = !ret;
	}
	if (ret) {
		mig_pool_close(p);
		return ret;
	}
	*out = p;
	return 0;
}

static int pool_error(struct mig_pool *p, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", p->err);
	return p->error;
}

int mig_pool_send_pages(struct mig_pool *p, struct mig_chan *main, uint64_t gpa,
			const void *data, uint64_t len, char *err,
			size_t errlen)
{
	const uint8_t *d = data;

	while (len) {
		uint64_t piece = MIG_POOL_GRANULE - gpa % MIG_POOL_GRANULE;
		/* Once finished, everything goes on the main connection: the
		 * destination applies those pages after all of the others'
		 * (mig_pool_in_order). Only this thread sets finishing. */
		bool direct = !p || p->finishing;
		unsigned idx =
		    direct ? 0
			   : (unsigned)(gpa / MIG_POOL_GRANULE % (p->n + 1));
		struct pool_conn *pc;
		unsigned t;
		int ret;

		if (piece > len || direct)
			piece = len;
		if (idx == 0) {
			struct iovec v = { .iov_base = (void *)d,
					   .iov_len = piece };

			ret =
			    mig_send(main, MIG_PAGES, gpa, &v, 1, err, errlen);
			if (ret)
				return ret;
		} else {
			pc = &p->conn[idx - 1];
			pthread_mutex_lock(&p->lock);
			while (!p->error && pc->count == POOL_SLOTS)
				pthread_cond_wait(&p->cond, &p->lock);
			if (p->error) {
				ret = pool_error(p, err, errlen);
				pthread_mutex_unlock(&p->lock);
				return ret;
			}
			t = (pc->head + pc->count) % POOL_SLOTS;
			pthread_mutex_unlock(&p->lock);
			/* The slot at the tail is the caller's alone until it
			 * is counted. */
			memcpy(pc->buf[t], d, piece);
			pc->gpa[t] = gpa;
			pc->len[t] = (uint32_t)piece;
			pthread_mutex_lock(&p->lock);
			pc->count++;
			pthread_cond_broadcast(&p->cond);
			pthread_mutex_unlock(&p->lock);
		}
		if (p) {
			pthread_mutex_lock(&p->lock);
			ret = p->error ? pool_error(p, err, errlen) : 0;
			pthread_mutex_unlock(&p->lock);
			if (ret)
				return ret;
		}
		d += piece;
		gpa += piece;
		len -= piece;
	}
	return 0;
}

int mig_pool_finish(struct mig_pool *p, char *err, size_t errlen)
{
	int ret = 0;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	p->finishing = true;
	pthread_cond_broadcast(&p->cond);
	for (;;) {
		unsigned done = 0;

		for (unsigned i = 0; i < p->n; i++)
			done += p->conn[i].done;
		if (p->error || done == p->n)
			break;
		pthread_cond_wait(&p->cond, &p->lock);
	}
	if (p->error)
		ret = pool_error(p, err, errlen);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

uint64_t mig_pool_sent(const struct mig_pool *p)
{
	uint64_t s = 0;

	for (unsigned i = 0; p && i < p->n; i++)
		s += p->conn[i].c.sent;
	return s;
}

void mig_pool_close(struct mig_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++) {
		struct pool_conn *pc = &p->conn[i];

		/* A thread stuck in a send wakes up and fails. */
		if (pc->c.fd >= 0)
			shutdown(pc->c.fd, SHUT_RDWR);
		if (pc->started)
			pthread_join(pc->thread, NULL);
		mig_close(&pc->c);
		for (unsigned s = 0; s < POOL_SLOTS; s++)
			free(pc->buf[s]);
	}
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* The destination's side. */

struct pool_in_conn {
	struct mig_pool_in *p;
	unsigned index;
	struct mig_chan c;
	pthread_t thread;
	bool started;
	uint8_t *buf;
};

struct mig_pool_in {
	unsigned n;
	mig_pages_fn apply;
	void *ctx;
	struct mig_chan *main;
	pthread_mutex_t lock;
	int error;
	char err[320];
	bool joined;
	struct pool_in_conn conn[MIG_POOL_MAX - 1];
};

/* Waits up to the idle time for a connection on @lfd, then accepts it. */
static int accept_bounded(int lfd, const struct mig_addr *a, struct mig_chan *c,
			  char *err, size_t errlen)
{
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	int r;

	do
		r = poll(&pfd, 1, MIG_IDLE_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r <= 0) {
		snprintf(err, errlen,
			 "the source opened no further memory connection "
			 "within %d s",
			 MIG_IDLE_TIMEOUT_MS / 1000);
		return -ETIMEDOUT;
	}
	return mig_accept(lfd, a, c, err, errlen);
}

/* One extra connection: TLS, then its HELLO with our token. */
static int pool_in_join(struct pool_in_conn *pc, int lfd,
			const struct mig_addr *a, struct mig_tls *tls,
			const char *token, char *err, size_t errlen)
{
	char buf[MIG_CONTROL_MAX + 1], got[MIG_POOL_TOKEN_LEN + 1];
	struct mig_frame f;
	int ret;

	ret = accept_bounded(lfd, a, &pc->c, err, errlen);
	if (!ret && tls)
		ret = mig_tls_start(&pc->c, tls, true, NULL, err, errlen);
	if (!ret)
		ret = mig_expect(&pc->c, MIG_HELLO, &f, buf, sizeof(buf), err,
				 errlen);
	if (ret)
		return ret;
	if (token_after(buf, " join=", got) || strcmp(got, token)) {
		snprintf(err, errlen,
			 "%s: a connection that is not of this migration "
			 "(no or another token)",
			 pc->c.peer);
		mig_send_text(&pc->c, MIG_ERROR, 0, err, NULL, 0);
		return -EACCES;
	}
	snprintf(buf, sizeof(buf), "stasis-migrate %u %s", MIG_PROTO_VERSION,
		 STASIS_VERSION);
	return mig_send_text(&pc->c, MIG_WELCOME, 0, buf, err, errlen);
}

int mig_pool_in_accept(struct mig_pool_in **out, int lfd,
		       const struct mig_addr *a, struct mig_tls *tls,
		       unsigned n, const char *token, char *err, size_t errlen)
{
	struct mig_pool_in *p;
	int ret = 0;

	*out = NULL;
	if (!n)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "memory connections: %s",
			 strerror(ENOMEM));
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	for (unsigned i = 0; i < MIG_POOL_MAX - 1; i++)
		p->conn[i].c.fd = -1;
	p->n = n;
	for (unsigned i = 0; i < n && !ret; i++) {
		struct pool_in_conn *pc = &p->conn[i];
		char why[256];

		pc->p = p;
		pc->index = i + 1;
		pc->buf = malloc(MIG_POOL_GRANULE);
		if (!pc->buf) {
			snprintf(why, sizeof(why), "%s", strerror(ENOMEM));
			ret = -ENOMEM;
		} else {
			ret = pool_in_join(pc, lfd, a, tls, token, why,
					   sizeof(why));
		}
		if (ret)
			snprintf(err, errlen, "memory connection %u: %s",
				 pc->index, why);
	}
	if (ret) {
		mig_pool_in_close(p);
		return ret;
	}
	*out = p;
	return 0;
}

static void *pool_in_main(void *arg)
{
	struct pool_in_conn *pc = arg;
	struct mig_pool_in *p = pc->p;
	uint64_t bytes = 0;
	struct mig_frame f;
	char err[256];
	int ret;

	for (;;) {
		ret = mig_recv(&pc->c, &f, pc->buf, MIG_POOL_GRANULE, err,
			       sizeof(err));
		if (ret)
			break;
		if (f.type == MIG_COMMIT) {
			if (f.offset != bytes) {
				snprintf(err, sizeof(err),
					 "its COMMIT says %llu bytes of "
					 "pages, %llu came",
					 (unsigned long long)f.offset,
					 (unsigned long long)bytes);
				ret = -EPROTO;
			}
			break;
		}
		if (f.type != MIG_PAGES) {
			snprintf(err, sizeof(err), "unexpected %s frame",
				 mig_frame_name(f.type));
			ret = -EPROTO;
			break;
		}
		ret = p->apply(p->ctx, &f, pc->buf, err, sizeof(err));
		if (ret)
			break;
		bytes += f.length;
	}
	if (ret) {
		pthread_mutex_lock(&p->lock);
		if (!p->error) {
			p->error = ret;
			snprintf(p->err, sizeof(p->err),
				 "memory connection %u: %s", pc->index, err);
		}
		pthread_mutex_unlock(&p->lock);
		/* The main loop, waiting for its next frame, stops. */
		shutdown(p->main->fd, SHUT_RD);
	}
	return NULL;
}

int mig_pool_in_start(struct mig_pool_in *p, mig_pages_fn apply, void *ctx,
		      struct mig_chan *main, char *err, size_t errlen)
{
	if (!p)
		return 0;
	p->apply = apply;
	p->ctx = ctx;
	p->main = main;
	for (unsigned i = 0; i < p->n; i++) {
		struct pool_in_conn *pc = &p->conn[i];
		int ret = -pthread_create(&pc->thread, NULL, pool_in_main, pc);

		if (ret) {
			snprintf(err, errlen,
				 "memory connection %u: cannot start its "
				 "thread: %s",
				 pc->index, strerror(-ret));
			return ret;
		}
		pc->started = true;
	}
	return 0;
}

int mig_pool_in_error(struct mig_pool_in *p, char *err, size_t errlen)
{
	int ret;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	ret = p->error;
	if (ret)
		snprintf(err, errlen, "%s", p->err);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int mig_pool_in_order(struct mig_pool_in *p, uint64_t gpa, uint64_t len,
		      char *err, size_t errlen)
{
	if (!p || p->joined || !len)
		return 0;
	for (uint64_t g = gpa / MIG_POOL_GRANULE;
	     g <= (gpa + len - 1) / MIG_POOL_GRANULE; g++)
		if (g % (p->n + 1))
			return mig_pool_in_wait(p, err, errlen);
	return 0;
}

int mig_pool_in_wait(struct mig_pool_in *p, char *err, size_t errlen)
{
	if (!p)
		return 0;
	if (!p->joined) {
		for (unsigned i = 0; i < p->n; i++) {
			if (p->conn[i].started)
				pthread_join(p->conn[i].thread, NULL);
			p->conn[i].started = false;
		}
		p->joined = true;
	}
	return mig_pool_in_error(p, err, errlen);
}

void mig_pool_in_close(struct mig_pool_in *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n; i++) {
		struct pool_in_conn *pc = &p->conn[i];

		if (pc->c.fd >= 0)
			shutdown(pc->c.fd, SHUT_RDWR);
		if (pc->started)
			pthread_join(pc->thread, NULL);
		mig_close(&pc->c);
		free(pc->buf);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}
