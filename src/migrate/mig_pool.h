/* Several connections for a migration's memory (--connections N): the
 * main channel and N - 1 more, opened after the handshake, each through
 * TLS like the first when it is, and tied to this migration by a token
 * the destination gave in its WELCOME. Pre-copy's PAGES frames are
 * spread over them by guest address, and each connection's frames are
 * applied at the destination by a thread of its own. docs/migration.md
 * describes the protocol. */
#ifndef STASIS_MIGRATE_MIG_POOL_H
#define STASIS_MIGRATE_MIG_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/channel.h"

#define MIG_POOL_MAX 16
/* A guest page always travels on the connection of its granule, so that
 * a page sent again in a later round can never overtake its older copy:
 * each connection's frames are applied in order. */
#define MIG_POOL_GRANULE (1u << 20)
/* A token's hex digits (128 random bits), after "token=" in the
 * WELCOME and "join=" in a further connection's HELLO. */
#define MIG_POOL_TOKEN_LEN 32

/* The connection count a HELLO asks for ("connections=N" after the
 * versions; 1 when absent), or -EINVAL when out of 1..MIG_POOL_MAX. */
int mig_pool_hello_connections(const char *hello, unsigned *n);
/* The token of a WELCOME (the destination's answer to connections above
 * 1 or to a post-copy offer) into @token, or -ENOENT. */
int mig_pool_welcome_token(const char *welcome,
			   char token[MIG_POOL_TOKEN_LEN + 1]);
/* A fresh random token. */
int mig_pool_make_token(char token[MIG_POOL_TOKEN_LEN + 1]);

/* The source's side. */
struct mig_pool;

/* Opens @n - 1 connections besides @main to @a (TLS with @tls when not
 * NULL), each joined with HELLO "stasis-migrate PROTO VERSION join=TOKEN
 * index=I" and the destination's WELCOME, and starts a sending thread
 * for each. 0 or -errno with a one-line reason. */
int mig_pool_open(struct mig_pool **out, const struct mig_addr *a,
		  struct mig_tls *tls, struct mig_chan *main, unsigned n,
		  const char *token, char *err, size_t errlen);

/* Sends the guest memory @data (@len bytes at guest @gpa, already
 * copied out of the running guest by the caller) as PAGES frames: each
 * granule's part on its connection, the main one's at once on @main,
 * the others' copied and queued to their threads. @p NULL, or after
 * mig_pool_finish: all on @main. The first failure of any connection is this
 * call's or a later one's -errno. */
int mig_pool_send_pages(struct mig_pool *p, struct mig_chan *main, uint64_t gpa,
			const void *data, uint64_t len, char *err,
			size_t errlen);

/* Waits until every queued frame is sent and ends each extra
 * connection's pages with a COMMIT (offset: the PAGES bytes it carried).
 * Call before the pause: the destination applies all of them before it
 * checks a HASH or reads the COMMIT on the main channel. */
int mig_pool_finish(struct mig_pool *p, char *err, size_t errlen);

/* Bytes on the wire of the extra connections. */
uint64_t mig_pool_sent(const struct mig_pool *p);

/* Stops the threads and closes the extra connections; NULL is fine. */
void mig_pool_close(struct mig_pool *p);

/* The destination's side. */
struct mig_pool_in;

/* Accepts @n more connections on @lfd (each within the idle time, TLS
 * with @tls when not NULL), each of which must join with @token; one
 * that does not fails the migration. */
int mig_pool_in_accept(struct mig_pool_in **out, int lfd,
		       const struct mig_addr *a, struct mig_tls *tls,
		       unsigned n, const char *token, char *err, size_t errlen);

/* How a PAGES frame lands: the destination's one step for every
 * connection, the main one's included, so that each keeps the same
 * bookkeeping (which pages came, which chunks await their hash). Called
 * from several threads at once, for different granules. */
typedef int (*mig_pages_fn)(void *ctx, const struct mig_frame *f,
			    const void *data, char *err, size_t errlen);

/* Starts a thread per connection that applies its PAGES frames with
 * @apply(@ctx, ...) until its COMMIT. A thread that fails shuts down
 * @main's reading side, so that the main loop stops too; mig_pool_in_wait
 * then names the reason. */
int mig_pool_in_start(struct mig_pool_in *p, mig_pages_fn apply, void *ctx,
		      struct mig_chan *main, char *err, size_t errlen);

/* Waits for every thread's COMMIT: 0, or the first failure's -errno
 * with its reason. Once done, later calls return the same at once. */
int mig_pool_in_wait(struct mig_pool_in *p, char *err, size_t errlen);

/* Before the main connection's PAGES frame for [@gpa, @gpa + @len) is
 * applied: when that range holds a granule of another connection (the
 * source sends it on the main one after mig_pool_finish), waits for all
 * of them first, so that no older copy lands after it. */
int mig_pool_in_order(struct mig_pool_in *p, uint64_t gpa, uint64_t len,
		      char *err, size_t errlen);

/* The first failure of a thread, if any (for a main loop that stopped
 * because of it): its reason in @err and its -errno, else 0. */
int mig_pool_in_error(struct mig_pool_in *p, char *err, size_t errlen);

void mig_pool_in_close(struct mig_pool_in *p);

#endif
