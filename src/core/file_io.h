/* Whole transfers between memory and files (snapshot files, disk images):
 * short reads and writes are continued, never taken for the end. */
#ifndef STASIS_FILE_IO_H
#define STASIS_FILE_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* Drops the first @bytes of the iovec array *@iov (*@n entries) by moving
 * the pointers: what a short readv/writev leaves to do. */
void iov_advance(struct iovec **iov, unsigned *n, size_t bytes);

/* pwritev/preadv of all of @iov (@n entries, consumed) at @off, continued
 * after short transfers and EINTR. Returns 0, -ENODATA for a read that
 * meets the end of the file, -EIO for a write that moves nothing, -EFBIG
 * past the largest offset, or -errno. */
int file_rw_full(int fd, bool write, struct iovec *iov, unsigned n,
		 uint64_t off);

#endif
