/* The migration channel: one connected stream socket (UNIX or TCP) that
 * carries checksummed frames between the source and the destination of a
 * migration. The snapshot record stream rides in DATA frames, each a write
 * at an offset of the snapshot the destination rebuilds; the other frames
 * are the handshake and the switch. docs/migration.md is the
 * specification. */
#ifndef STASIS_MIGRATE_CHANNEL_H
#define STASIS_MIGRATE_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Protocol version in HELLO and WELCOME; a peer with another one is
 * refused before any state moves. */
#define MIG_PROTO_VERSION 2
#define MIG_FRAME_HEADER_SIZE 32
/* Largest payload of a DATA frame and of any other frame. */
#define MIG_DATA_MAX (4u << 20)
#define MIG_CONTROL_MAX 4096u
/* How long one send or receive may make no progress before the peer is
 * taken for gone, unless the caller sets another bound. */
#define MIG_IDLE_TIMEOUT_MS 30000

enum mig_frame_type {
	MIG_HELLO = 1, /* source: protocol and stasis versions (text) */
	MIG_WELCOME = 2, /* destination: the same, it accepts the peer */
	MIG_DATA = 3, /* source: payload bytes at snapshot offset `offset` */
	MIG_CHECK = 4, /* source: header, CONFIG and CPUID are sent */
	MIG_ACCEPT = 5, /* destination: this host can run that VM */
	MIG_COMMIT = 6, /* source: the snapshot is complete, `offset` long */
	MIG_READY = 7, /* destination: all restored and verified, paused */
	MIG_GO = 8, /* source: run it (the switch); it never runs here again */
	MIG_RUNNING = 9, /* destination: the guest runs here */
	MIG_ERROR = 10, /* either: a one-line reason, then the sender closes */
	MIG_PAGES = 11, /* source, pre-copy: guest memory at guest `offset` */
	MIG_REF = 12, /* protocol 1 only, refused since */
	MIG_HASH = 13, /* source, pre-copy: u64 gpa, u64 hash per chunk the
			* round sent pages of, for the destination to check
			* its copy against */
	MIG_SYNC = 14, /* source: answer when all before is applied;
			* destination: the answer */
	/* Post-copy (docs/migration.md, "Post-copy"). */
	MIG_PRIORITY = 15, /* source, on the priority connection: the token
			    * the WELCOME gave (text) */
	MIG_POSTCOPY = 16, /* source: this stream switches to post-copy */
	MIG_LAZY = 17, /* source: snapshot bytes at `offset`, u64 length in
			* the payload, come after the switch */
	MIG_FETCH = 18, /* destination, priority connection: send snapshot
			 * bytes at `offset`, u64 length, now */
	MIG_PUSHED = 19, /* source: every lazy byte is sent */
	MIG_DONE = 20, /* destination: every chunk is in; the fault
			* statistics (text) */
	MIG_FRAME_TYPE_MAX = MIG_DONE,
};

struct mig_addr {
	bool tcp; /* else UNIX */
	char path[108]; /* UNIX: sun_path */
	char host[256]; /* TCP */
	char port[8];
};

/* Parses "unix:PATH" or "tcp:HOST:PORT" (HOST may be [v6]). 0 or -EINVAL
 * with a one-line reason in @err. */
int mig_addr_parse(const char *s, struct mig_addr *a, char *err, size_t errlen);

/* TLS credentials (ca.pem, cert.pem, key.pem of a --tls-dir), loaded
 * once and shared by every connection of a migration. */
struct mig_tls;

/* What each side allows on @a: tcp needs @tls or an explicit @insecure
 * (not both); TLS is for tcp only (a UNIX socket is checked by its
 * peer's uid instead). @what names the address in the error. 0 or
 * -EINVAL with a one-line reason. */
int mig_transport_check(const struct mig_addr *a, const char *what,
			bool insecure, bool tls, char *err, size_t errlen);

struct mig_chan {
	int fd;
	void *tls; /* the GnuTLS session, or NULL: the socket as it is */
	char tls_error[128]; /* the TLS reason for the last -EPROTO */
	int idle_ms; /* MIG_IDLE_TIMEOUT_MS unless set */
	int64_t deadline_ms; /* CLOCK_MONOTONIC ms; 0: none */
	/* CLOCK_MONOTONIC ms after which mig_send starts no new frame
	 * (-ETIME, nothing sent): a pre-copy that switches to post-copy at
	 * its timeout stops between frames. 0: none. */
	int64_t switch_ms;
	uint64_t sent; /* bytes on the wire, headers included */
	uint64_t received;
	char peer[160]; /* "unix:PATH" or "tcp:HOST:PORT", for messages */
};

struct mig_frame {
	uint32_t type;
	uint32_t length;
	uint64_t offset;
	uint64_t checksum;
};

/* Connects to @a. 0 or -errno with a one-line reason naming the address. */
int mig_connect(const struct mig_addr *a, struct mig_chan *c, char *err,
		size_t errlen);

/* Binds and listens on @a (a stale UNIX socket is replaced, nothing else).
 * Returns the listening fd or -errno with @err filled. */
int mig_listen(const struct mig_addr *a, char *err, size_t errlen);

/* Waits for one peer on @lfd (UNIX: of our uid or root only). 0 or
 * -errno with @err filled. */
int mig_accept(int lfd, const struct mig_addr *a, struct mig_chan *c, char *err,
	       size_t errlen);

void mig_close(struct mig_chan *c);

/* Reads @dir/ca.pem, cert.pem and key.pem (each at most 1 MiB) into
 * credentials for either side. A missing, unreadable or bad file is
 * -errno with a one-line reason naming it. */
int mig_tls_load(const char *dir, struct mig_tls **out, char *err,
		 size_t errlen);
void mig_tls_free(struct mig_tls *t);

/* Runs the TLS handshake on the connected @c, within its time bounds:
 * as the client (@server false) it requires a certificate of @t's CA
 * that names @host (a DNS name, or an IP address against the
 * certificate's IP addresses); as the server, a client certificate of
 * @t's CA. Both sides present @t's certificate. A peer that fails is
 * refused with an alert and -EACCES (or -errno) with a one-line reason.
 * From then on every frame on @c goes through the session. */
int mig_tls_start(struct mig_chan *c, struct mig_tls *t, bool server,
		  const char *host, char *err, size_t errlen);

/* Sends one frame with the payload in @iov (@n entries, not consumed). */
int mig_send(struct mig_chan *c, uint32_t type, uint64_t offset,
	     const struct iovec *iov, unsigned n, char *err, size_t errlen);
/* A frame whose payload is the C string @text (may be NULL: empty). */
int mig_send_text(struct mig_chan *c, uint32_t type, uint64_t offset,
		  const char *text, char *err, size_t errlen);

/* Receives one frame into @f and its payload into @buf (@bufsize bytes;
 * a longer payload, an unknown type or a bad checksum is refused). A
 * peer's ERROR frame is returned as -ECONNABORTED with its text, escaped,
 * in @err. */
int mig_recv(struct mig_chan *c, struct mig_frame *f, void *buf, size_t bufsize,
	     char *err, size_t errlen);

/* Receives one frame that must be of @type; text payloads come back
 * NUL-terminated in @buf. */
int mig_expect(struct mig_chan *c, uint32_t type, struct mig_frame *f,
	       char *buf, size_t bufsize, char *err, size_t errlen);

const char *mig_frame_name(uint32_t type);

/* Whether the HELLO or WELCOME text @text holds the word @word (after a
 * space, and followed by a space or its end). */
bool mig_text_has_word(const char *text, const char *word);

/* Encodes and decodes a frame header (the checksum field as given). */
void mig_frame_encode(uint8_t out[MIG_FRAME_HEADER_SIZE],
		      const struct mig_frame *f);
int mig_frame_decode(const uint8_t in[MIG_FRAME_HEADER_SIZE],
		     struct mig_frame *f, char *err, size_t errlen);

#endif
