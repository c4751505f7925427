#include "core/file_io.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

void iov_advance(struct iovec **iov, unsigned *n, size_t bytes)
{
	while (*n && bytes >= (*iov)->iov_len) {
		bytes -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + bytes;
		(*iov)->iov_len -= bytes;
	}
}

int file_rw_full(int fd, bool write, struct iovec *iov, unsigned n,
		 uint64_t off)
{
	while (n) {
		int cnt = n > IOV_MAX ? IOV_MAX : (int)n;
		ssize_t r;

		if (off > INT64_MAX)
			return -EFBIG;
		r = write ? pwritev(fd, iov, cnt, (off_t)off)
			  : preadv(fd, iov, cnt, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return write ? -EIO : -ENODATA;
		off += (uint64_t)r;
		iov_advance(&iov, &n, (size_t)r);
	}
	return 0;
}
