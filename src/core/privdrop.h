/* privdrop.h - `--user UID[:GID]`: once stasis holds every host resource
 * it needs, it gives up root for that user (docs/security.md). */
#ifndef STASIS_PRIVDROP_H
#define STASIS_PRIVDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Supplementary groups kept for a user given by name; more is refused. */
#define PRIVDROP_MAX_GROUPS 64

struct run_user {
	bool set; /* --user given */
	uid_t uid;
	gid_t gid;
	/* A user given by name keeps its supplementary groups (from the
	 * group database); one given as numbers keeps none. */
	unsigned ngroups;
	gid_t groups[PRIVDROP_MAX_GROUPS];
};

/* Parses "UID", "UID:GID", "NAME" or "NAME:GROUP" (names looked up in
 * the user and group databases). A user without a GID takes its primary
 * group; a bare UID must then exist in the user database. uid 0 and the
 * reserved id -1 are refused. Returns 0 or -EINVAL with a one-line reason
 * in @err. */
int privdrop_parse(const char *s, struct run_user *out, char *err,
		   size_t errlen);

/* Refuses, in @err, a --user stasis cannot honour: it is not running as
 * root. 0 or -EPERM. */
int privdrop_check(const struct run_user *u, char *err, size_t errlen);

/* Becomes @u for good: supplementary groups, then gid, then uid (real,
 * effective and saved), then checks that root cannot be regained (setuid(0)
 * and setgid(0) fail, no capability is left). It must run while the
 * process has one thread: glibc changes every thread's ids, and a thread
 * whose seccomp filter refuses those calls would be killed (-EBUSY if
 * another thread exists). Returns 0 or -errno with a reason in @err. */
int privdrop_apply(const struct run_user *u, char *err, size_t errlen);

#endif
