#include "core/host_output.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file_io.h"

int host_output_open(struct host_output *out, int fd)
{
	char path[32];
	struct stat st;
	int nfd;

	out->fd = -1;
	out->owned = false;
	out->sock = false;
	if (fstat(fd, &st))
		return -errno;
	out->sock = S_ISSOCK(st.st_mode);
	if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
		/* A new open file description of the same pipe or
		 * terminal: O_NONBLOCK there changes nobody else's fd. */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		nfd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (nfd >= 0) {
			out->fd = nfd;
			out->owned = true;
			return 0;
		}
	}
	/* Regular files take writes without waiting for a reader; sockets
	 * are written with MSG_DONTWAIT. A pipe that /proc cannot reopen (no
	 * /proc) is written through the duplicate and may block: the one
	 * case left to the caller's environment. */
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (nfd < 0)
		return -errno;
	out->fd = nfd;
	out->owned = true;
	return 0;
}

void host_output_adopt(struct host_output *out, int fd)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	out->fd = fd;
	out->sock = !fstat(fd, &st) && S_ISSOCK(st.st_mode);
	out->owned = true;
}

ssize_t host_output_write(const struct host_output *out, struct iovec *iov,
			  unsigned n)
{
	size_t done = 0;
	ssize_t r;

	if (out->fd < 0)
		return -EBADF;
	for (;;) {
		/* Zero-length entries would make a zero-byte write look
		 * like a full reader. */
		while (n && iov->iov_len == 0) {
			iov++;
			n--;
		}
		if (!n)
			return (ssize_t)done;
		if (out->sock) {
			struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n };

			r = sendmsg(out->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		} else {
			r = writev(out->fd, iov,
				   n > IOV_MAX ? IOV_MAX : (int)n);
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (done)
				return (ssize_t)done;
			return r == 0 || errno == EAGAIN ? -EAGAIN : -errno;
		}
		done += (size_t)r;
		iov_advance(&iov, &n, (size_t)r);
	}
}

void host_output_close(struct host_output *out)
{
	if (out->owned && out->fd >= 0)
		close(out->fd);
	out->fd = -1;
	out->owned = false;
}
