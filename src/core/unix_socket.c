/* Stale UNIX socket paths: probed, and removed only when they are sockets
 * that nobody serves. */
#include "core/unix_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int unix_socket_clear_stale(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A live owner accepts (stream), or is bound (datagram); a dead one
	 * leaves a path that refuses. */
	if (!connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) ||
	    errno == EAGAIN)
		ret = -EADDRINUSE;
	else if (errno != ECONNREFUSED)
		ret = -errno;
	else if (unlink(path) && errno != ENOENT)
		ret = -errno;
	close(fd);
	return ret;
}
