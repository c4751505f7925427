/* Resume-or-boot for `stasis run --resume-from PATH`: whether a snapshot
 * waits at PATH, and setting it aside once it has been restored. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/snapshot.h"

#define RESUMED_SUFFIX ".resumed"

int snapshot_find_resume(const char *path, char *err, size_t errlen)
{
	struct stat st;

	/* lstat: a dangling symlink is something there, which restore then
	 * refuses by name, rather than a reason to boot. */
	if (!lstat(path, &st))
		return 1;
	if (errno == ENOENT)
		return 0;
	snprintf(err, errlen, "cannot look at %s: %s", path, strerror(errno));
	return -errno;
}

/* Fsyncs the directory holding @path, so a rename in it is on disk. */
static int sync_parent_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, ret = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd))
		ret = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
}

int snapshot_mark_resumed(const char *path, char *err, size_t errlen)
{
	char to[PATH_MAX];
	int ret;

	if ((size_t)snprintf(to, sizeof(to), "%s%s", path, RESUMED_SUFFIX) >=
	    sizeof(to)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	if (rename(path, to)) {
		ret = -errno;
		snprintf(err, errlen, "cannot rename %s to %s: %s", path, to,
			 strerror(-ret));
		return ret;
	}
	ret = sync_parent_dir(path);
	if (ret) {
		snprintf(err, errlen, "cannot sync the directory of %s: %s", to,
			 strerror(-ret));
		return ret;
	}
	return 0;
}
