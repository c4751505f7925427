/* The migration channel (channel.h): addresses, connecting and accepting,
 * and checksummed frames sent and received within a time bound. */
#include "migrate/channel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/clock.h"
#include "core/file_io.h"
#include "core/le.h"
#include "core/text.h"
#include "core/unix_socket.h"

#define FRAME_TYPE 0
#define FRAME_LENGTH 4
#define FRAME_OFFSET 8
#define FRAME_CHECKSUM 16
#define FRAME_MAGIC 24
static const char frame_magic[8] = { 'S', 'T', 'A', 'S', 'I', 'S', 'M', 'G' };

static const char *const frame_names[] = {
	[MIG_HELLO] = "HELLO",	     [MIG_WELCOME] = "WELCOME",
	[MIG_DATA] = "DATA",	     [MIG_CHECK] = "CHECK",
	[MIG_ACCEPT] = "ACCEPT",     [MIG_COMMIT] = "COMMIT",
	[MIG_READY] = "READY",	     [MIG_GO] = "GO",
	[MIG_RUNNING] = "RUNNING",   [MIG_ERROR] = "ERROR",
	[MIG_PAGES] = "PAGES",	     [MIG_REF] = "REF",
	[MIG_HASH] = "HASH",	     [MIG_SYNC] = "SYNC",
	[MIG_PRIORITY] = "PRIORITY", [MIG_POSTCOPY] = "POSTCOPY",
	[MIG_LAZY] = "LAZY",	     [MIG_FETCH] = "FETCH",
	[MIG_PUSHED] = "PUSHED",     [MIG_DONE] = "DONE",
};

__attribute__((format(printf, 4, 5))) static int
mig_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

bool mig_text_has_word(const char *text, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = strchr(text, ' '); p; p = strchr(p + 1, ' '))
		if (!strncmp(p + 1, word, n) && (!p[1 + n] || p[1 + n] == ' '))
			return true;
	return false;
}

const char *mig_frame_name(uint32_t type)
{
	if (type == 0 || type > MIG_FRAME_TYPE_MAX)
		return "unknown";
	return frame_names[type];
}

int mig_addr_parse(const char *s, struct mig_addr *a, char *err, size_t errlen)
{
	char quoted[128];
	const char *hp, *colon;
	size_t hlen;

	memset(a, 0, sizeof(*a));
	text_escape(quoted, sizeof(quoted), s, strlen(s));
	if (!strncmp(s, "unix:", 5)) {
		if (!s[5] || strlen(s + 5) >= sizeof(a->path))
			return mig_fail(err, errlen, -EINVAL,
					"'%s': a UNIX socket path must have "
					"1 to %zu bytes",
					quoted, sizeof(a->path) - 1);
		strcpy(a->path, s + 5);
		return 0;
	}
	if (strncmp(s, "tcp:", 4))
		return mig_fail(err, errlen, -EINVAL,
				"'%s' is not unix:PATH or tcp:HOST:PORT",
				quoted);
	hp = s + 4;
	colon = strrchr(hp, ':');
	if (!colon)
		return mig_fail(err, errlen, -EINVAL,
				"'%s': no port (tcp:HOST:PORT)", quoted);
	hlen = (size_t)(colon - hp);
	if (hlen >= 2 && hp[0] == '[' && hp[hlen - 1] == ']') {
		hp++;
		hlen -= 2;
	}
	if (!hlen || hlen >= sizeof(a->host))
		return mig_fail(err, errlen, -EINVAL, "'%s': bad host", quoted);
	{
		char *end;
		long port = strtol(colon + 1, &end, 10);

		if (!colon[1] || *end || port < 1 || port > 65535)
			return mig_fail(err, errlen, -EINVAL,
					"'%s': the port must be 1..65535",
					quoted);
		snprintf(a->port, sizeof(a->port), "%ld", port);
	}
	memcpy(a->host, hp, hlen);
	a->host[hlen] = '\0';
	a->tcp = true;
	return 0;
}

int mig_transport_check(const struct mig_addr *a, const char *what,
			bool insecure, bool tls, char *err, size_t errlen)
{
	char q[128];

	text_escape(q, sizeof(q), what, strlen(what));
	if (tls && insecure)
		return mig_fail(err, errlen, -EINVAL,
				"%s: --tls-dir and --insecure contradict each "
				"other",
				q);
	if (tls && !a->tcp)
		return mig_fail(err, errlen, -EINVAL,
				"%s: --tls-dir is for tcp (a UNIX socket "
				"admits only its own user's peers)",
				q);
	if (a->tcp && !tls && !insecure)
		return mig_fail(err, errlen, -EINVAL,
				"%s: plain tcp carries guest memory "
				"unencrypted and unauthenticated: give "
				"--tls-dir DIR, or add --insecure for a link "
				"you trust",
				q);
	return 0;
}

static void addr_name(const struct mig_addr *a, char *out, size_t len)
{
	char q[128];

	if (a->tcp) {
		text_escape(q, sizeof(q), a->host, strlen(a->host));
		snprintf(out, len, "tcp:%s:%s", q, a->port);
	} else {
		text_escape(q, sizeof(q), a->path, strlen(a->path));
		snprintf(out, len, "unix:%s", q);
	}
}

/* Waits until @fd is ready for @events within the channel's bounds:
 * 0, -ETIMEDOUT, or -errno. */
static int chan_wait(struct mig_chan *c, short events)
{
	struct pollfd p = { .fd = c->fd, .events = events };
	int timeout = c->idle_ms > 0 ? c->idle_ms : MIG_IDLE_TIMEOUT_MS;
	int ret;

	if (c->deadline_ms) {
		int64_t left =
		    c->deadline_ms -
		    (int64_t)(clock_now_ns(CLOCK_MONOTONIC) / 1000000);

		if (left <= 0)
			return -ETIMEDOUT;
		if (left < timeout)
			timeout = (int)left;
	}
	do
		ret = poll(&p, 1, timeout);
	while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return -errno;
	if (ret == 0)
		return -ETIMEDOUT;
	return 0;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static void chan_init(struct mig_chan *c, int fd, const struct mig_addr *a)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->idle_ms = MIG_IDLE_TIMEOUT_MS;
	addr_name(a, c->peer, sizeof(c->peer));
}

static void tcp_tune(int fd)
{
	int one = 1;

	/* Control frames are small and answered at once: no Nagle delay. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A non-blocking connect bounded by the channel's idle time. */
static int connect_bounded(struct mig_chan *c, const struct sockaddr *sa,
			   socklen_t len)
{
	int ret, soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (!connect(c->fd, sa, len))
		return 0;
	if (errno != EINPROGRESS && errno != EAGAIN)
		return -errno;
	ret = chan_wait(c, POLLOUT);
	if (ret)
		return ret;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		return -errno;
	return -soerr;
}

/* A UNIX stream socket and the address of @a's path in @sun. */
static int unix_stream_socket(const struct mig_addr *a, struct sockaddr_un *sun,
			      char *err, size_t errlen)
{
	int fd;

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, a->path, strlen(a->path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return mig_fail(err, errlen, -errno, "cannot make a socket: %s",
				strerror(errno));
	return fd;
}

int mig_connect(const struct mig_addr *a, struct mig_chan *c, char *err,
		size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int ret = -ECONNREFUSED, fd;

	chan_init(c, -1, a);
	if (!a->tcp) {
		struct sockaddr_un sun;

		fd = unix_stream_socket(a, &sun, err, errlen);
		if (fd < 0)
			return fd;
		c->fd = fd;
		/* Non-blocking before the connect: a listener that does not
		 * accept (its backlog full) is EAGAIN at once, never a wait
		 * without end. */
		ret = set_nonblock(fd);
		if (!ret && connect(fd, (struct sockaddr *)&sun, sizeof(sun)))
			ret = -errno;
		if (ret) {
			mig_close(c);
			return mig_fail(err, errlen, ret,
					"cannot connect to %s: %s", c->peer,
					ret == -EAGAIN
					    ? "it accepts no connection"
					    : strerror(-ret));
		}
		return 0;
	}
	ret = getaddrinfo(a->host, a->port, &hints, &res);
	if (ret)
		return mig_fail(err, errlen, -EHOSTUNREACH,
				"cannot resolve %s: %s", c->peer,
				gai_strerror(ret));
	ret = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		c->fd = fd;
		ret = connect_bounded(c, ai->ai_addr, ai->ai_addrlen);
		if (!ret)
			break;
		close(fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	if (ret)
		return mig_fail(err, errlen, ret, "cannot connect to %s: %s",
				c->peer, strerror(-ret));
	tcp_tune(c->fd);
	return 0;
}

int mig_listen(const struct mig_addr *a, char *err, size_t errlen)
{
	char name[160];
	int fd, ret;

	addr_name(a, name, sizeof(name));
	if (!a->tcp) {
		struct sockaddr_un sun;

		ret = unix_socket_clear_stale(a->path, SOCK_STREAM);
		if (ret)
			return mig_fail(
			    err, errlen, ret, "cannot listen on %s: %s", name,
			    ret == -EADDRINUSE ? "another process listens there"
					       : strerror(-ret));
		fd = unix_stream_socket(a, &sun, err, errlen);
		if (fd < 0)
			return fd;
		/* Made 0600 from the start: the VM's memory comes in here. */
		{
			mode_t old = umask(077);

			ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
			umask(old);
		}
		if (ret < 0 || listen(fd, 1) < 0) {
			ret = -errno;
			close(fd);
			return mig_fail(err, errlen, ret,
					"cannot listen on %s: %s", name,
					strerror(-ret));
		}
		return fd;
	}
	{
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_PASSIVE },
				*res;
		int one = 1;

		ret = getaddrinfo(a->host, a->port, &hints, &res);
		if (ret)
			return mig_fail(err, errlen, -EADDRNOTAVAIL,
					"cannot resolve %s: %s", name,
					gai_strerror(ret));
		fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
			    res->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			freeaddrinfo(res);
			return mig_fail(err, errlen, ret,
					"cannot make a socket: %s",
					strerror(-ret));
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		ret = bind(fd, res->ai_addr, res->ai_addrlen) < 0 ||
			      listen(fd, 1) < 0
			  ? -errno
			  : 0;
		freeaddrinfo(res);
		if (ret) {
			close(fd);
			return mig_fail(err, errlen, ret,
					"cannot listen on %s: %s", name,
					strerror(-ret));
		}
		return fd;
	}
}

int mig_accept(int lfd, const struct mig_addr *a, struct mig_chan *c, char *err,
	       size_t errlen)
{
	int fd;

	do
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	chan_init(c, fd, a);
	if (fd < 0)
		return mig_fail(err, errlen, -errno, "accept on %s: %s",
				c->peer, strerror(errno));
	if (!a->tcp) {
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
		    (cred.uid != 0 && cred.uid != getuid())) {
			mig_close(c);
			return mig_fail(err, errlen, -EACCES,
					"%s: refused a peer of another user",
					a->path);
		}
	} else {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char host[64], port[8];

		tcp_tune(fd);
		/* Messages name the source, not where this side listens. */
		if (!getpeername(fd, (struct sockaddr *)&ss, &sl) &&
		    !getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host),
				 port, sizeof(port),
				 NI_NUMERICHOST | NI_NUMERICSERV))
			snprintf(c->peer, sizeof(c->peer), "tcp:%s%s%s:%s",
				 strchr(host, ':') ? "[" : "", host,
				 strchr(host, ':') ? "]" : "", port);
	}
	if (set_nonblock(fd)) {
		int ret = -errno;

		mig_close(c);
		return mig_fail(err, errlen, ret, "%s", strerror(-ret));
	}
	return 0;
}

void mig_close(struct mig_chan *c)
{
	if (c->tls) {
		/* No close_notify: every exchange ends in a frame of its own
		 * (RUNNING, DONE, ERROR), so a cut stream is never taken for
		 * a whole one, and a close may come on a thread whose seccomp
		 * filter refuses the send (a post-copy destination's main
		 * thread, at the VM's end). */
		gnutls_deinit(c->tls);
		c->tls = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

struct mig_tls {
	gnutls_certificate_credentials_t cred;
};

#define TLS_FILE_MAX (1u << 20)

/* @dir/@name, whole, into @out (gnutls_free it). */
static int tls_read_file(const char *dir, const char *name, gnutls_datum_t *out,
			 char *err, size_t errlen)
{
	char path[4096], q[256];
	struct stat st;
	ssize_t n;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	text_escape(q, sizeof(q), path, strlen(path));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return mig_fail(err, errlen, -errno,
				"--tls-dir: cannot read %s: %s", q,
				strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > TLS_FILE_MAX) {
		ret = mig_fail(err, errlen, -EINVAL,
			       "--tls-dir: %s is not a PEM file of at most "
			       "1 MiB",
			       q);
		goto out;
	}
	out->data = gnutls_malloc((size_t)st.st_size + 1);
	if (!out->data) {
		ret = mig_fail(err, errlen, -ENOMEM, "--tls-dir: %s: %s", q,
			       strerror(ENOMEM));
		goto out;
	}
	n = pread(fd, out->data, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		ret = mig_fail(err, errlen, n < 0 ? -errno : -EIO,
			       "--tls-dir: cannot read %s: %s", q,
			       n < 0 ? strerror(errno) : "it changed size");
		gnutls_free(out->data);
		out->data = NULL;
		goto out;
	}
	out->data[n] = '\0';
	out->size = (unsigned)n;
out:
	close(fd);
	return ret;
}

void mig_tls_free(struct mig_tls *t)
{
	if (!t)
		return;
	if (t->cred)
		gnutls_certificate_free_credentials(t->cred);
	free(t);
}

int mig_tls_load(const char *dir, struct mig_tls **out, char *err,
		 size_t errlen)
{
	gnutls_datum_t ca = { 0 }, cert = { 0 }, key = { 0 };
	gnutls_x509_crt_t *crts = NULL;
	gnutls_x509_privkey_t pk = NULL;
	unsigned ncrts = 0;
	struct mig_tls *t;
	char q[256];
	int ret, g;

	*out = NULL;
	text_escape(q, sizeof(q), dir, strlen(dir));
	t = calloc(1, sizeof(*t));
	if (!t)
		return mig_fail(err, errlen, -ENOMEM, "--tls-dir: %s",
				strerror(ENOMEM));
	ret = tls_read_file(dir, "ca.pem", &ca, err, errlen);
	if (!ret)
		ret = tls_read_file(dir, "cert.pem", &cert, err, errlen);
	if (!ret)
		ret = tls_read_file(dir, "key.pem", &key, err, errlen);
	if (ret)
		goto out;
	if (gnutls_certificate_allocate_credentials(&t->cred)) {
		ret = mig_fail(err, errlen, -ENOMEM, "--tls-dir: %s",
			       strerror(ENOMEM));
		goto out;
	}
	/* Each file checked alone first, so that the error names it. */
	g = gnutls_certificate_set_x509_trust_mem(t->cred, &ca,
						  GNUTLS_X509_FMT_PEM);
	if (g <= 0) {
		ret =
		    mig_fail(err, errlen, -EINVAL,
			     "--tls-dir: %s/ca.pem holds no CA certificate%s%s",
			     q, g ? ": " : "", g ? gnutls_strerror(g) : "");
		goto out;
	}
	g = gnutls_x509_crt_list_import2(&crts, &ncrts, &cert,
					 GNUTLS_X509_FMT_PEM, 0);
	if (g < 0 || !ncrts) {
		ret =
		    mig_fail(err, errlen, -EINVAL,
			     "--tls-dir: %s/cert.pem holds no certificate%s%s",
			     q, g ? ": " : "", g ? gnutls_strerror(g) : "");
		goto out;
	}
	if (gnutls_x509_privkey_init(&pk) ||
	    (g = gnutls_x509_privkey_import(pk, &key, GNUTLS_X509_FMT_PEM))) {
		ret = mig_fail(err, errlen, -EINVAL,
			       "--tls-dir: %s/key.pem holds no private key "
			       "(unencrypted PEM): %s",
			       q, gnutls_strerror(g));
		goto out;
	}
	g = gnutls_certificate_set_x509_key_mem(t->cred, &cert, &key,
						GNUTLS_X509_FMT_PEM);
	if (g < 0) {
		ret = mig_fail(err, errlen, -EINVAL,
			       "--tls-dir: %s/cert.pem and key.pem: %s", q,
			       g == GNUTLS_E_CERTIFICATE_KEY_MISMATCH
				   ? "the key is not the certificate's"
				   : gnutls_strerror(g));
		goto out;
	}
	*out = t;
	t = NULL;
out:
	for (unsigned i = 0; i < ncrts; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	if (pk)
		gnutls_x509_privkey_deinit(pk);
	gnutls_free(ca.data);
	gnutls_free(cert.data);
	if (key.data) {
		gnutls_memset(key.data, 0, key.size);
		gnutls_free(key.data);
	}
	mig_tls_free(t);
	return ret;
}

/* Waits as the session asks (it may read while it sends, and the other
 * way round). */
static int tls_wait(struct mig_chan *c)
{
	return chan_wait(c, gnutls_record_get_direction(c->tls) ? POLLOUT
								: POLLIN);
}

/* What a GnuTLS error of the handshake or a record says to a user. */
static const char *tls_reason(struct mig_chan *c, int g)
{
	if (g == GNUTLS_E_FATAL_ALERT_RECEIVED)
		return gnutls_alert_get_name(gnutls_alert_get(c->tls));
	return gnutls_strerror(g);
}

/* After refusing a client: in TLS 1.3 the client's handshake is over
 * before the server checks its certificate, so the client may already be
 * sending its first frame. Closing now would answer that with a reset,
 * which can destroy the alert before the client reads it; so the rest is
 * read and dropped until the client closes (it does on the alert), for at
 * most a second. */
static void tls_linger(struct mig_chan *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int64_t end = (int64_t)(clock_now_ns(CLOCK_MONOTONIC) / 1000000) + 1000;
	char sink[4096];

	if (c->fd < 0 || shutdown(c->fd, SHUT_WR) < 0)
		return;
	for (;;) {
		int64_t left =
		    end - (int64_t)(clock_now_ns(CLOCK_MONOTONIC) / 1000000);
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
		n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return;
	}
}

/* True when @host is an IPv4 or IPv6 literal. */
static bool host_is_ip(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	       inet_pton(AF_INET6, host, buf) == 1;
}

int mig_tls_start(struct mig_chan *c, struct mig_tls *t, bool server,
		  const char *host, char *err, size_t errlen)
{
	gnutls_session_t s;
	int g, ret;

	/* Tickets would let a later connection skip the certificates. */
	g = gnutls_init(&s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
				GNUTLS_NONBLOCK | GNUTLS_NO_TICKETS |
				GNUTLS_NO_SIGNAL);
	if (g)
		return mig_fail(err, errlen, -ENOMEM, "%s: TLS: %s", c->peer,
				gnutls_strerror(g));
	c->tls = s;
	g = gnutls_set_default_priority(s);
	if (!g)
		g = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->cred);
	if (!g && !server && !host_is_ip(host))
		g = gnutls_server_name_set(s, GNUTLS_NAME_DNS, host,
					   strlen(host));
	if (g) {
		ret = mig_fail(err, errlen, -EPROTO, "%s: TLS: %s", c->peer,
			       gnutls_strerror(g));
		goto fail;
	}
	if (server) {
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
		/* Not naming our CA makes a client of another CA send its
		 * certificate all the same, so that the refusal names it. */
		gnutls_certificate_send_x509_rdn_sequence(s, 1);
	}
	/* The peer's chain must lead to ca.pem, and the destination's
	 * certificate must name the HOST the source connected to. */
	gnutls_session_set_verify_cert(s, server ? NULL : host, 0);
	gnutls_transport_set_int(s, c->fd);
	gnutls_handshake_set_timeout(s, 0);
	for (;;) {
		g = gnutls_handshake(s);
		if (g == GNUTLS_E_SUCCESS)
			break;
		if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED) {
			ret = tls_wait(c);
			if (ret) {
				mig_fail(err, errlen, ret,
					 "%s: TLS handshake: %s", c->peer,
					 ret == -ETIMEDOUT ? "timed out"
							   : strerror(-ret));
				goto fail;
			}
			continue;
		}
		if (!gnutls_error_is_fatal(g))
			continue;
		break;
	}
	if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		gnutls_datum_t why = { 0 };
		unsigned st = gnutls_session_get_verify_cert_status(s);

		gnutls_certificate_verification_status_print(
		    st, GNUTLS_CRT_X509, &why, 0);
		while (why.data && why.size &&
		       (why.data[why.size - 1] == ' ' ||
			why.data[why.size - 1] == '\0'))
			why.data[--why.size] = '\0';
		ret = mig_fail(err, errlen, -EACCES,
			       "%s: TLS: the %s's certificate is refused: %s",
			       c->peer, server ? "source" : "destination",
			       why.data ? (char *)why.data : "not trusted");
		gnutls_free(why.data);
		goto fail;
	}
	if (g == GNUTLS_E_NO_CERTIFICATE_FOUND ||
	    g == GNUTLS_E_CERTIFICATE_REQUIRED) {
		ret = mig_fail(err, errlen, -EACCES,
			       "%s: TLS: the %s sent no certificate", c->peer,
			       server ? "source" : "destination");
		goto fail;
	}
	if (g == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		ret = mig_fail(err, errlen, -EACCES,
			       "%s: TLS: the %s refused this side (%s)",
			       c->peer, server ? "source" : "destination",
			       tls_reason(c, g));
		goto fail;
	}
	if (g == GNUTLS_E_UNEXPECTED_PACKET_LENGTH ||
	    g == GNUTLS_E_UNEXPECTED_PACKET ||
	    g == GNUTLS_E_UNSUPPORTED_VERSION_PACKET) {
		ret = mig_fail(err, errlen, -EPROTO,
			       "%s: the peer does not speak TLS (it needs "
			       "--tls-dir too)",
			       c->peer);
		goto fail;
	}
	if (g) {
		ret = mig_fail(err, errlen, -EPROTO,
			       "%s: TLS handshake failed: %s", c->peer,
			       gnutls_strerror(g));
		goto fail;
	}
	return 0;

fail:
	/* The peer learns why, if the socket takes it now. */
	if (g < 0 && g != GNUTLS_E_FATAL_ALERT_RECEIVED)
		gnutls_alert_send_appropriate(s, g);
	gnutls_deinit(s);
	c->tls = NULL;
	if (server)
		tls_linger(c);
	return ret;
}

void mig_frame_encode(uint8_t out[MIG_FRAME_HEADER_SIZE],
		      const struct mig_frame *f)
{
	put_le32(out + FRAME_TYPE, f->type);
	put_le32(out + FRAME_LENGTH, f->length);
	put_le64(out + FRAME_OFFSET, f->offset);
	put_le64(out + FRAME_CHECKSUM, f->checksum);
	memcpy(out + FRAME_MAGIC, frame_magic, sizeof(frame_magic));
}

int mig_frame_decode(const uint8_t in[MIG_FRAME_HEADER_SIZE],
		     struct mig_frame *f, char *err, size_t errlen)
{
	if (memcmp(in + FRAME_MAGIC, frame_magic, sizeof(frame_magic)))
		return mig_fail(err, errlen, -EPROTO,
				"not a stasis migration stream (bad frame "
				"magic)");
	f->type = get_le32(in + FRAME_TYPE);
	f->length = get_le32(in + FRAME_LENGTH);
	f->offset = get_le64(in + FRAME_OFFSET);
	f->checksum = get_le64(in + FRAME_CHECKSUM);
	if (f->type == 0 || f->type > MIG_FRAME_TYPE_MAX)
		return mig_fail(err, errlen, -EPROTO, "unknown frame type %u",
				f->type);
	if (f->length > (f->type == MIG_DATA || f->type == MIG_PAGES
			     ? MIG_DATA_MAX
			     : MIG_CONTROL_MAX))
		return mig_fail(err, errlen, -EPROTO,
				"%s frame of %u bytes is too long",
				mig_frame_name(f->type), f->length);
	return 0;
}

/* XXH3-64 of the header with its checksum field zero, then the payload. */
static uint64_t frame_hash(const struct mig_frame *f, const struct iovec *iov,
			   unsigned n)
{
	struct mig_frame z = *f;
	uint8_t hdr[MIG_FRAME_HEADER_SIZE];
	XXH3_state_t *st = XXH3_createState();
	uint64_t h;

	/* Without a state (no memory), a hash nobody can match: the frame
	 * is refused rather than taken unchecked. */
	if (!st)
		return 0;
	z.checksum = 0;
	mig_frame_encode(hdr, &z);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, hdr, sizeof(hdr));
	for (unsigned i = 0; i < n; i++)
		XXH3_64bits_update(st, iov[i].iov_base, iov[i].iov_len);
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

/* One send or receive of what goes of @iov, through the TLS session when
 * there is one (record by record): the bytes, 0 (a receive's end of the
 * stream), -EAGAIN with the @events to wait for, -EINTR, or -errno (a TLS
 * failure: -EPROTO, its reason in c->tls_error). */
static ssize_t chan_io(struct mig_chan *c, bool out, struct iovec *iov,
		       unsigned n, short *events)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = n };
	ssize_t k;

	*events = out ? POLLOUT : POLLIN;
	if (!c->tls) {
		k = out ? sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT)
			: recvmsg(c->fd, &m, MSG_DONTWAIT);
		return k < 0 ? -errno : k;
	}
	k = out ? gnutls_record_send(c->tls, iov->iov_base, iov->iov_len)
		: gnutls_record_recv(c->tls, iov->iov_base, iov->iov_len);
	if (k >= 0)
		return k;
	switch (k) {
	case GNUTLS_E_INTERRUPTED:
		return -EINTR;
	case GNUTLS_E_AGAIN:
		/* It may read while it sends, and the other way round. */
		*events =
		    gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN;
		return -EAGAIN;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_PULL_ERROR:
		return -ECONNRESET;
	}
	snprintf(c->tls_error, sizeof(c->tls_error),
		 k == GNUTLS_E_FATAL_ALERT_RECEIVED
		     ? "the peer refused this side (%s)"
		     : "%s",
		 tls_reason(c, (int)k));
	return -EPROTO;
}

/* Sends (@out) or receives all of @iov (consumed) within the channel's
 * bounds; a receive that meets the end of the stream is -ECONNRESET. */
static int chan_xfer(struct mig_chan *c, bool out, struct iovec *iov,
		     unsigned n)
{
	iov_advance(&iov, &n, 0); /* no empty pieces: 0 means the end */
	while (n) {
		short events;
		ssize_t k = chan_io(c, out, iov, n, &events);

		if (k == 0 && !out)
			return -ECONNRESET;
		if (k < 0) {
			if (k == -EINTR)
				continue;
			if (k != -EAGAIN)
				return (int)k;
			k = chan_wait(c, events);
			if (k)
				return (int)k;
			continue;
		}
		if (out)
			c->sent += (uint64_t)k;
		else
			c->received += (uint64_t)k;
		iov_advance(&iov, &n, (size_t)k);
	}
	return 0;
}

static int chan_recv_all(struct mig_chan *c, void *buf, size_t len)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };

	return chan_xfer(c, false, &v, 1);
}

static int io_fail(struct mig_chan *c, int ret, const char *what, char *err,
		   size_t errlen)
{
	if (ret == -ECONNRESET || ret == -EPIPE)
		return mig_fail(err, errlen, -ECONNRESET,
				"%s: the connection was closed (%s)", c->peer,
				what);
	if (ret == -ETIMEDOUT)
		return mig_fail(err, errlen, ret, "%s: timed out (%s)", c->peer,
				what);
	if (ret == -EPROTO && c->tls_error[0])
		return mig_fail(err, errlen, ret, "%s: TLS: %s (%s)", c->peer,
				c->tls_error, what);
	return mig_fail(err, errlen, ret, "%s: %s (%s)", c->peer,
			strerror(-ret), what);
}

int mig_send(struct mig_chan *c, uint32_t type, uint64_t offset,
	     const struct iovec *iov, unsigned n, char *err, size_t errlen)
{
	struct iovec v[1 + 64];
	struct mig_frame f = { .type = type, .offset = offset };
	uint8_t hdr[MIG_FRAME_HEADER_SIZE];
	uint64_t len = 0;
	int ret;

	if (n > 64)
		return mig_fail(err, errlen, -EINVAL, "too many pieces");
	if (c->switch_ms &&
	    (int64_t)(clock_now_ns(CLOCK_MONOTONIC) / 1000000) >= c->switch_ms)
		return mig_fail(err, errlen, -ETIME, "%s: time to switch",
				c->peer);
	for (unsigned i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (len > (type == MIG_DATA || type == MIG_PAGES ? MIG_DATA_MAX
							 : MIG_CONTROL_MAX))
		return mig_fail(err, errlen, -EMSGSIZE, "frame too long");
	f.length = (uint32_t)len;
	f.checksum = frame_hash(&f, iov, n);
	mig_frame_encode(hdr, &f);
	v[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	if (n)
		memcpy(v + 1, iov, n * sizeof(*iov));
	ret = chan_xfer(c, true, v, n + 1);
	if (ret)
		return io_fail(c, ret, mig_frame_name(type), err, errlen);
	return 0;
}

int mig_send_text(struct mig_chan *c, uint32_t type, uint64_t offset,
		  const char *text, char *err, size_t errlen)
{
	struct iovec v = { .iov_base = (void *)text,
			   .iov_len =
			       text ? strnlen(text, MIG_CONTROL_MAX) : 0 };

	return mig_send(c, type, offset, &v, text ? 1 : 0, err, errlen);
}

int mig_recv(struct mig_chan *c, struct mig_frame *f, void *buf, size_t bufsize,
	     char *err, size_t errlen)
{
	uint8_t hdr[MIG_FRAME_HEADER_SIZE];
	struct iovec v;
	int ret;

	ret = chan_recv_all(c, hdr, sizeof(hdr));
	if (ret)
		return io_fail(c, ret, "waiting for a frame", err, errlen);
	ret = mig_frame_decode(hdr, f, err, errlen);
	/* A TLS record (handshake or alert, version 3.x) where a frame
	 * should be: the peer has --tls-dir and this side has not. */
	if (ret && !c->tls && (hdr[0] == 0x15 || hdr[0] == 0x16) && hdr[1] == 3)
		return mig_fail(err, errlen, -EPROTO,
				"%s speaks TLS: give --tls-dir here too",
				c->peer);
	if (ret)
		return ret;
	if (f->length > bufsize)
		return mig_fail(err, errlen, -EPROTO,
				"%s frame of %u bytes where at most %zu fit",
				mig_frame_name(f->type), f->length, bufsize);
	ret = chan_recv_all(c, buf, f->length);
	if (ret)
		return io_fail(c, ret, "in a frame", err, errlen);
	v = (struct iovec){ .iov_base = buf, .iov_len = f->length };
	if (frame_hash(f, &v, 1) != f->checksum)
		return mig_fail(err, errlen, -EBADMSG,
				"%s frame at stream byte %llu: checksum "
				"mismatch (the stream was damaged)",
				mig_frame_name(f->type),
				(unsigned long long)(c->received - f->length -
						     MIG_FRAME_HEADER_SIZE));
	if (f->type == MIG_ERROR) {
		char msg[MIG_CONTROL_MAX + 1];

		text_escape(msg, sizeof(msg), buf, f->length);
		return mig_fail(err, errlen, -ECONNABORTED, "%s", msg);
	}
	return 0;
}

int mig_expect(struct mig_chan *c, uint32_t type, struct mig_frame *f,
	       char *buf, size_t bufsize, char *err, size_t errlen)
{
	int ret;

	if (!bufsize)
		return -EINVAL;
	ret = mig_recv(c, f, buf, bufsize - 1, err, errlen);
	if (ret)
		return ret;
	buf[f->length] = '\0';
	if (f->type != type)
		return mig_fail(err, errlen, -EPROTO,
				"%s: expected a %s frame, got %s", c->peer,
				mig_frame_name(type), mig_frame_name(f->type));
	return 0;
}
