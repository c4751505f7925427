/* privdrop.c - `--user`: the user and groups stasis becomes once its host
 * resources are open, and the checks that it cannot become root again. */
#include "core/privdrop.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A decimal id below (uint32)-1, which the kernel reserves for "no
 * change". 0 or -EINVAL. */
static int privdrop_parse_id(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (!len || len > 10)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v >= UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static bool privdrop_is_number(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return len > 0;
}

int privdrop_parse(const char *s, struct run_user *out, char *err,
		   size_t errlen)
{
	struct run_user u = { .set = true };
	const char *colon = strchr(s, ':');
	size_t ulen = colon ? (size_t)(colon - s) : strlen(s);
	char name[256];
	struct passwd *pw = NULL;
	uint32_t id;

	if (!ulen || ulen >= sizeof(name) || (colon && !colon[1]) ||
	    (colon && strchr(colon + 1, ':'))) {
		snprintf(err, errlen, "--user: '%s' is not UID[:GID]", s);
		return -EINVAL;
	}
	memcpy(name, s, ulen);
	name[ulen] = '\0';
	if (privdrop_is_number(name, ulen)) {
		if (privdrop_parse_id(name, ulen, &id)) {
			snprintf(err, errlen, "--user: uid %s is out of range",
				 name);
			return -EINVAL;
		}
		u.uid = id;
		if (!colon)
			pw = getpwuid(u.uid);
	} else {
		pw = getpwnam(name);
		if (!pw) {
			snprintf(err, errlen, "--user: no user named '%s'",
				 name);
			return -EINVAL;
		}
		u.uid = pw->pw_uid;
	}
	if (u.uid == 0) {
		snprintf(
		    err, errlen,
		    "--user: uid 0 is root; leave --user out to stay root");
		return -EINVAL;
	}
	if (colon) {
		const char *g = colon + 1;
		struct group *gr;

		if (privdrop_is_number(g, strlen(g))) {
			if (privdrop_parse_id(g, strlen(g), &id)) {
				snprintf(err, errlen,
					 "--user: gid %s is out of range", g);
				return -EINVAL;
			}
			u.gid = id;
		} else {
			gr = getgrnam(g);
			if (!gr) {
				snprintf(err, errlen,
					 "--user: no group named '%s'", g);
				return -EINVAL;
			}
			u.gid = gr->gr_gid;
		}
	} else if (pw) {
		u.gid = pw->pw_gid;
	} else {
		snprintf(err, errlen,
			 "--user: uid %u is not in the user database; give "
			 "UID:GID",
			 (unsigned)u.uid);
		return -EINVAL;
	}
	/* Only a named user has a membership to keep. */
	if (!privdrop_is_number(name, ulen)) {
		int n = PRIVDROP_MAX_GROUPS;

		if (getgrouplist(name, u.gid, u.groups, &n) < 0) {
			snprintf(err, errlen,
				 "--user: %s is in more than %d groups", name,
				 PRIVDROP_MAX_GROUPS);
			return -EINVAL;
		}
		u.ngroups = (unsigned)n;
	}
	*out = u;
	return 0;
}

int privdrop_check(const struct run_user *u, char *err, size_t errlen)
{
	if (!u->set || geteuid() == 0)
		return 0;
	snprintf(err, errlen,
		 "--user needs stasis to start as root; it runs as uid %u "
		 "already",
		 (unsigned)geteuid());
	return -EPERM;
}

/* Threads of this process, or -1 when /proc cannot tell. */
static int privdrop_count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* True when any capability is left in the effective or permitted set. */
static bool privdrop_has_caps(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data))
		return true;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective || data[i].permitted)
			return true;
	return false;
}

int privdrop_apply(const struct run_user *u, char *err, size_t errlen)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	int ret;

	if (!u->set)
		return 0;
	ret = privdrop_count_threads();
	if (ret > 1) {
		snprintf(err, errlen,
			 "--user: %d threads exist; the drop must come first",
			 ret);
		return -EBUSY;
	}
	/* Groups and gid first: once the uid is gone, so is the right to
	 * change them. */
	if (setgroups(u->ngroups, u->groups) ||
	    setresgid(u->gid, u->gid, u->gid) ||
	    setresuid(u->uid, u->uid, u->uid)) {
		ret = -errno;
		snprintf(err, errlen, "--user %u:%u: %s", (unsigned)u->uid,
			 (unsigned)u->gid, strerror(-ret));
		return ret;
	}
	/* No exec'd program may gain what was given up (also set by the
	 * seccomp filters, which --seccomp off leaves out). */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (getresuid(&ruid, &euid, &suid) || getresgid(&rgid, &egid, &sgid) ||
	    ruid != u->uid || euid != u->uid || suid != u->uid ||
	    rgid != u->gid || egid != u->gid || sgid != u->gid) {
		snprintf(err, errlen, "--user: the ids did not change");
		return -EPERM;
	}
	if (!setuid(0) || !setgid(0) || !setgroups(0, NULL) ||
	    privdrop_has_caps()) {
		snprintf(err, errlen, "--user: root could be regained");
		return -EPERM;
	}
	return 0;
}
