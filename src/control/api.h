/* The control API: HTTP/1.1 with JSON bodies on a UNIX socket, served by
 * libmicrohttpd, and the `stasis ctl` client. The server knows the VM only
 * through struct api_ops, so it can be tested without KVM. docs/api.md is
 * the reference. */
#ifndef STASIS_API_H
#define STASIS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/migrate.h"
#include "snapshot/codec.h"

/* What the VM does once a snapshot is written. */
enum vm_then {
	VM_THEN_RESUME,
	VM_THEN_PAUSE,
	VM_THEN_EXIT,
};

struct timings;

/* What a snapshot cost: its reply, and GET /vm's "last_snapshot". */
struct snapshot_stats {
	bool live; /* written with the guest running (--live) */
	uint64_t pause_ns; /* the guest stood still */
	uint64_t total_ns; /* request to complete file */
	uint64_t extra_bytes; /* memory beyond the guest's, at peak (live) */
};

struct vm_status {
	bool waiting; /* a restore target that has not restored yet */
	bool paused;
	unsigned ncpus;
	uint64_t mem_size;
	uint64_t uptime_ns;
	uint64_t last_pause_ns; /* request-to-parked time of the last pause,
				 * 0 if the VM was never paused */
	bool snapshot_active;
	uint64_t snapshot_done_bytes;
	uint64_t snapshot_total_bytes;
	/* migrate_phase_name() of a migration under way, else NULL. */
	const char *migration_state;
	/* Its pre-copy so far (migrate_stats in core/vm.h) and the vCPUs'
	 * auto-converge throttle, percent. */
	uint64_t migration_rounds;
	uint64_t migration_bytes_sent;
	uint64_t migration_dirty_rate; /* bytes/s, the last round */
	uint64_t migration_link_rate; /* bytes/s, the last round */
	uint64_t migration_expected_downtime_ms;
	unsigned migration_throttle_pct;
	/* A post-copy destination's report (postcopy.on false otherwise). */
	struct migrate_postcopy_stats postcopy;
	/* The restore's phases (core/timings.h); NULL for a booted VM. */
	const struct timings *timings;
	bool have_last_snapshot; /* one was written since stasis started */
	struct snapshot_stats last_snapshot;
};

/* PUT /vm/restore into a waiting restore target (stasis restore --wait):
 * the snapshot and how to restore it. */
enum api_memory {
	API_MEMORY_DEFAULT, /* the target's own --memory, else ondemand */
	API_MEMORY_ONDEMAND,
	API_MEMORY_MAP,
	API_MEMORY_COPY,
};

enum api_clock {
	API_CLOCK_DEFAULT, /* the target's own --clock */
	API_CLOCK_ADVANCE,
	API_CLOCK_FROZEN,
};

struct api_restore {
	char *path; /* the caller's buffer */
	enum api_memory memory; /* in: asked for; out: the mode used */
	enum api_clock clock;
	bool paused; /* stay paused until PUT /vm/resume */
};

/* "ondemand", "map", "copy" ("default" for API_MEMORY_DEFAULT). */
const char *api_memory_name(enum api_memory m);

/* Callbacks run on the server's threads, possibly several at once (a
 * status poll while a snapshot runs); they must not call api_server_stop.
 * Each returns 0 or -errno and may fill @err with a one-line reason. The errno
 * picks the HTTP status: -EALREADY 409 (already paused/running), -EBUSY 409
 * (snapshot running), -EINVAL 400, -ENOENT/-EACCES/-ENOSPC/-EROFS/-EIO on the
 * snapshot path 507 for -ENOSPC else 500, anything else 500. */
struct api_ops {
	int (*pause)(void *ctx, char *err, size_t errlen);
	int (*resume)(void *ctx, char *err, size_t errlen);
	/* @base: NULL, or the parent of an incremental snapshot. @live: the
	 * guest runs on while memory is written. Fills @stats on success. */
	int (*snapshot)(void *ctx, const char *path, const char *base,
			enum vm_then then, const struct snap_compress *compress,
			bool live, struct snapshot_stats *stats, char *err,
			size_t errlen);
	int (*shutdown)(void *ctx, char *err, size_t errlen);
	/* Optional: PUT /vm/migrate (absent: 500). Returns once the
	 * destination runs the VM, or it failed. */
	int (*migrate)(void *ctx, const struct migrate_opts *o,
		       struct migrate_result *res, char *err, size_t errlen);
	void (*status)(void *ctx, struct vm_status *st);
	/* Optional (NULL: PUT /vm/restore answers 409): serves a snapshot
	 * into a waiting target. Returns once the VM is restored, just
	 * before its vCPUs start (0), or refused with the target still
	 * waiting (-EINVAL: the request or the file; -EBUSY: not waiting). */
	int (*restore)(void *ctx, struct api_restore *req, char *err,
		       size_t errlen);
	/* Ends a working-set recording (--record-working-set) and writes
	 * it: -EALREADY (409) when none runs. */
	int (*working_set)(void *ctx, char *err, size_t errlen);
	/* Optional: run first on the thread that starts the server's own
	 * threads, which inherit what it sets (stasis: the API role's
	 * seccomp filter). A failure stops api_server_start. */
	int (*thread_init)(void *ctx);
	/* Optional: run on the caller's thread once the socket is bound and
	 * listening, before the server has any thread of its own (stasis:
	 * gives up root, so the socket could be bound where only root may).
	 * A failure stops api_server_start. */
	int (*listening)(void *ctx, char *err, size_t errlen);
};

/* What each endpoint answers, declared beside the routing table that
 * serves it (api.c): the unit tests provoke every status listed and check
 * every body's fields, and docs/api.yaml is checked against this. Lists
 * end with 0 or NULL. */
struct api_endpoint {
	const char *url;
	const char *method;
	/* Statuses of this endpoint's own; every endpoint can also answer
	 * api_common_statuses. */
	const unsigned *statuses;
	const char *const *request_keys; /* NULL: no body, or {} */
	const char *const *request_required;
	/* The success body's fields ("a.b" for b in object a); NULL: no
	 * body. Error bodies are { "error": ... } everywhere. */
	const char *const *reply_fields;
};

/* 403 (peer uid), 405 (method), 413 (body too large), 500 (out of memory,
 * or the operation failed); 0-terminated. */
extern const unsigned api_common_statuses[];
/* The status for a URL that is no endpoint. */
#define API_STATUS_NO_ENDPOINT 404

/* The endpoints, in routing order; NULL past the last. */
const struct api_endpoint *api_endpoint_get(size_t i);

/* Request bodies larger than this are refused with 413. */
#define API_BODY_MAX (64 * 1024)

struct api_server;

/* Binds @socket_path (mode 0600; an existing socket file there is replaced
 * only if nothing listens on it), refuses peers whose uid is neither ours
 * nor root, and serves requests on its own threads. Returns 0 or -errno with a
 * one-line reason in @err. */
int api_server_start(struct api_server **out, const char *socket_path,
		     const struct api_ops *ops, void *ctx, char *err,
		     size_t errlen);

/* Stops serving, waits for handlers to finish, removes the socket file. */
void api_server_stop(struct api_server *s);

/* Parses and validates the body of PUT /vm/snapshot: a JSON object with a
 * string "path" (required, non-empty, no NUL, shorter than @pathlen) and
 * an optional "then" ("resume", the default, "pause" or "exit") and an
 * optional "compress" ("none", "lz4", "zstd" or "zstd:LEVEL", as
 * --compress takes it; SNAP_COMPRESS_DEFAULT_CODEC when absent) and an
 * optional boolean "live" (false when absent), the optional "base" (a path
 * as "path" is, into @base, @pathlen bytes too; "" when absent: a full
 * snapshot); any other key is an error. A
 * pure function (the fuzz target). Returns 0, -EINVAL or -EMSGSIZE (more than
 * API_BODY_MAX bytes) with a one-line reason in
 * @err. */
int api_parse_snapshot_request(const char *body, size_t len, char *path,
			       size_t pathlen, char *base, enum vm_then *then,
			       struct snap_compress *compress, bool *live,
			       char *err, size_t errlen);

/* Parses and validates the body of PUT /vm/restore: a JSON object with
 * "path" (required, as for a snapshot) and the optional "memory"
 * ("ondemand", "map" or "copy"), "clock" ("advance" or "frozen") and
 * "paused" (a boolean); any other key is an error. A pure function.
 * Returns 0, -EINVAL or -EMSGSIZE with a one-line reason in @err. */
int api_parse_restore_request(const char *body, size_t len, char *path,
			      size_t pathlen, struct api_restore *req,
			      char *err, size_t errlen);

/* Parses and validates the body of PUT /vm/migrate: a JSON object with
 * a string "destination" (unix:PATH or tcp:HOST:PORT, required), and
 * optional "insecure" (boolean), "timeout_s" (1..86400), "downtime_ms"
 * (1..60000) and "compress" (as for snapshots). Keys of features this
 * stasis does not have yet ("postcopy", "connections" above 1,
 * "on_timeout", "tls_dir") are refused by name. A pure function. 0, -EINVAL or
 * -EMSGSIZE with a one-line reason in @err. */
int api_parse_migrate_request(const char *body, size_t len,
			      struct migrate_opts *o, char *err, size_t errlen);

struct json_object;

/* Parses @len bytes (no NUL terminator needed) as exactly one JSON object:
 * strict RFC 8259, valid UTF-8, bounded nesting, no \u0000, nothing but
 * whitespace after it. The one door for JSON into the server and into
 * ctl. Returns the object (the caller puts it) or NULL with a one-line
 * reason in @err. */
struct json_object *api_parse_json_object(const char *body, size_t len,
					  char *err, size_t errlen);

/* `stasis ctl SOCKET COMMAND ...`: argv[0] is "ctl". Returns the exit
 * status (0 only on success). */
int ctl_main(int argc, char **argv);

#endif
