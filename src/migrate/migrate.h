/* Live migration: a running VM's snapshot record stream sent over a
 * socket to `stasis receive`, which restores it and runs it once the
 * source has stopped for good. The source side runs on the control API
 * thread that asked for it; the destination side is `stasis receive`
 * around restore. docs/migration.md describes the protocol and what each
 * failure leaves behind. */
#ifndef STASIS_MIGRATE_H
#define STASIS_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/codec.h"

struct vm;
struct snapshot_image;

/* What PUT /vm/migrate and `stasis ctl S migrate` ask for. */
struct migrate_opts {
	char dest[256]; /* unix:PATH or tcp:HOST:PORT */
	bool insecure; /* tcp without TLS, asked for explicitly */
	/* tcp through TLS with the ca.pem, cert.pem and key.pem in it (an
	 * absolute path); "": none. */
	char tls_dir[1024];
	/* Connections for pre-copy's memory, 1..MIG_POOL_MAX (0: 1). */
	unsigned connections;
	unsigned timeout_s; /* 0: none; else the source gives up after it */
	/* Pre-copy stops when what is left would take at most this long to
	 * send at the rate measured (MIGRATE_DOWNTIME_MS when 0). */
	unsigned downtime_ms;
	struct snap_compress compress;
	/* Auto-converge is on unless this is set (`--no-auto-converge`,
	 * "auto_converge": false). */
	bool no_auto_converge;
	/* Switch to post-copy at once, after the checks. */
	bool postcopy;
	/* At timeout_s: abort (the source runs on), or switch to
	 * post-copy (all of memory then comes lazily: what the rounds sent
	 * is let go at the destination). */
	bool timeout_postcopy;
};

/* What a post-copy destination reports: the faults that waited for a
 * chunk and how long (the vCPU or device thread that touched it was
 * blocked meanwhile). */
struct migrate_postcopy_stats {
	bool on; /* this VM came by post-copy */
	bool done; /* every chunk is in */
	uint64_t faults;
	uint64_t blocked_total_us;
	uint64_t blocked_p50_us;
	uint64_t blocked_p99_us;
	uint64_t blocked_max_us;
	uint64_t chunks_left; /* chunks still at the source */
};

/* Where a migration stands, for GET /vm. */
enum migrate_phase {
	MIGRATE_NONE,
	MIGRATE_CONNECTING, /* connecting, versions exchanged */
	MIGRATE_CHECKING, /* the destination checks config and CPU */
	MIGRATE_PRECOPY, /* memory sent while the guest runs, in rounds */
	MIGRATE_SENDING, /* paused: state and memory on their way */
	MIGRATE_SWITCHING, /* sent; waiting for the destination */
	MIGRATE_POSTCOPY, /* it runs there; memory still going */
	MIGRATE_DONE, /* the destination runs the VM */
	MIGRATE_LOST, /* the link broke after the switch: paused for good */
};

const char *migrate_phase_name(enum migrate_phase p);

#define MIGRATE_DOWNTIME_MS 30
/* Pre-copy gives up converging after this many rounds. */
#define MIGRATE_MAX_ROUNDS 30
/* Rounds go on while they shrink, until what is left is this small (a
 * chunk: what the pause sends for one written page). */
#define MIGRATE_SETTLED_BYTES (256u << 10)
/* Auto-converge's steps: the share of time a throttled vCPU spends
 * outside KVM_RUN, first, added each round that still does not shrink,
 * and at most. */
#define MIGRATE_THROTTLE_FIRST 20
#define MIGRATE_THROTTLE_STEP 10
#define MIGRATE_THROTTLE_MAX 99

struct migrate_result {
	unsigned rounds; /* pre-copy rounds, 0 for stop-and-copy */
	uint64_t bytes_sent; /* on the wire */
	uint64_t total_ms; /* request to the destination running */
	uint64_t downtime_ms; /* pause to the destination running */
	unsigned throttle_pct; /* auto-converge's last step, 0 for none */
	bool postcopy; /* it switched to post-copy */
	struct migrate_postcopy_stats pc; /* the destination's report */
};

/* Sends @vm (running or paused) to o->dest: handshake, CONFIG and CPUID
 * checked by the destination, then paused, the rest of the records, the
 * destination's READY, the switch. Call with vm->snapshot_lock held.
 * Returns 0 once the destination runs the VM (after a post-copy, once
 * all of its memory has reached the destination and the destination
 * said so): the caller stops this one.
 * Before the switch, any failure returns -errno with a one-line reason in
 * @err and leaves the VM as it was (running, or paused if it was). After
 * it (vm->migrated set), a broken link returns -ENOTCONN and the VM stays
 * paused for good, @err saying how to recover. */
int migrate_send(struct vm *vm, const struct migrate_opts *o,
		 struct migrate_result *res, char *err, size_t errlen);

/* The destination: one incoming VM. */
struct migrate_in;

/* Listens on @listen (unix:PATH, tcp:HOST:PORT with @insecure or
 * through TLS with the credentials in @tls_dir, read first), accepts one
 * source (and the further memory connections it asks for), exchanges
 * versions, and receives the snapshot header,
 * CONFIG and CPUID into a memory-backed spool. Then migrate_in_path()
 * opens as a snapshot (snapshot_open) for the checks restore makes.
 * From here on, every error stasis logs is also what the source is told
 * (the first one) if the migration fails. */
int migrate_in_start(const char *listen, bool insecure, const char *tls_dir,
		     struct migrate_in **out, char *err, size_t errlen);
const char *migrate_in_path(const struct migrate_in *in);

/* After the checks (the VM is created from the snapshot's config and
 * CPUID on this host, its memory @mem): tells the source to go on,
 * receives pre-copied pages into @mem and the rest of the stream until
 * its COMMIT, and makes @img's reader see all of it. The stream is
 * bounded by @mem's size plus the records. */
struct guest_mem;
int migrate_in_receive(struct migrate_in *in, struct snapshot_image *img,
		       struct guest_mem *mem, char *err, size_t errlen);

/* Restored and verified: READY, wait for the source's GO, answer
 * RUNNING. Returns 0 when the guest may run here; the spool's memory is
 * given back first when @release_spool (memory copied out of it). */
int migrate_in_switch(struct migrate_in *in, bool release_spool, char *err,
		      size_t errlen);

/* The seccomp mode of the post-copy receiving thread (the VM's). */
void migrate_in_set_seccomp(struct migrate_in *in, int mode);

/* Whether the source switched this migration to post-copy (known once
 * migrate_in_receive returned): the VM is then restored with its memory
 * served lazily, by migrate_in_page_source. */
bool migrate_in_postcopy(const struct migrate_in *in);

/* snapshot_image.page_source for a post-copy migration (ctx: the
 * struct migrate_in). */
struct page_source;
struct snap_chunk_table;
int migrate_in_page_source(void *ctx, struct page_source *src,
			   struct snap_chunk_table *tables, unsigned n);

/* The post-copy report for GET /vm (st->on false when there is none). */
void migrate_in_postcopy_stats(struct migrate_in *in,
			       struct migrate_postcopy_stats *st);

/* Ends the incoming migration; before the switch the source is told it
 * failed, with the first error logged since migrate_in_start. */
void migrate_in_end(struct migrate_in *in);

#endif
