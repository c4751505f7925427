/* seccomp.h - a seccomp-bpf filter per thread role, installed once the
 * thread's set-up is done (docs/security.md). */
#ifndef STASIS_SECCOMP_H
#define STASIS_SECCOMP_H

/* What a thread does, and so which system calls it may make. The snapshot
 * writer runs in the thread that asked for a snapshot (an API connection,
 * or main), so its calls are part of those two roles' lists. */
enum seccomp_role {
	SECCOMP_ROLE_MAIN, /* signals, stdin, teardown */
	SECCOMP_ROLE_VCPU, /* KVM_RUN and the devices it emulates */
	SECCOMP_ROLE_WORKER, /* a virtio device's backend I/O */
	SECCOMP_ROLE_API, /* the control API's threads and snapshots */
	SECCOMP_ROLE_UFFD, /* serves guest memory faults from a snapshot */
	SECCOMP_ROLE_LIVE, /* copies pages aside during a live snapshot */
	SECCOMP_ROLE_COUNT,
};

/* Zero is off, so a zeroed configuration (a test's) installs nothing;
 * config_init() makes "on" the default. */
enum seccomp_mode {
	SECCOMP_OFF,
	SECCOMP_ON, /* a refused call stops stasis with SIGSYS */
	SECCOMP_LOG, /* a refused call is logged by the kernel, then made */
};

/* "main", "vcpu", "worker", "api", "uffd", "live". */
const char *seccomp_role_name(enum seccomp_role role);

/* Parses "on", "log" or "off"; 0 or -EINVAL. */
int seccomp_mode_parse(const char *s, enum seccomp_mode *out);
const char *seccomp_mode_name(enum seccomp_mode mode);

/* Installs the SIGSYS handler that names the thread role of a refused
 * call. Call once, in the main thread, before any filter. */
void seccomp_report_init(void);

/* Loads @role's filter into the calling thread only (no_new_privs is set
 * first); threads it creates afterwards inherit it. SECCOMP_OFF does
 * nothing. Returns 0 or -errno (a message is logged). */
int seccomp_install(enum seccomp_role role, enum seccomp_mode mode);

#endif
