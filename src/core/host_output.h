/* Guest output to the host (serial and virtio-console to stdout, a file or
 * a socket client) written without ever blocking: a reader that stops
 * (a stopped pager, a full pipe, a terminal on XOFF) must not stall a vCPU
 * or a device worker, or a pause could never park them. */
#ifndef STASIS_HOST_OUTPUT_H
#define STASIS_HOST_OUTPUT_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Where guest output goes. @sock: written with send(MSG_DONTWAIT), since a
 * socket's O_NONBLOCK would be shared with every fd of its description. */
struct host_output {
	int fd; /* -1: output is dropped */
	bool sock;
	bool owned; /* closed by host_output_close() */
};

/* Output to what @fd (e.g. stdout) refers to, without changing @fd: pipes,
 * FIFOs and terminals are opened again through /proc/self/fd in
 * non-blocking mode, so the flag stays off the file description the shell
 * and stasis's own stdout and stderr share; other files are written
 * through a duplicate. Returns 0 or -errno. */
int host_output_open(struct host_output *out, int fd);

/* Output to @fd, which the caller opened for stasis alone (a file, an
 * accepted socket); it is made non-blocking and closed with @out. */
void host_output_adopt(struct host_output *out, int fd);

/* Writes as much of @iov (@n entries; the entries are modified) as the
 * reader takes now. Returns the bytes written (short when the reader is
 * full), -EAGAIN when none could be, or -errno (-EPIPE: the reader is
 * gone). An error after a partial write shows at the next call. */
ssize_t host_output_write(const struct host_output *out, struct iovec *iov,
			  unsigned n);

/* Closes what host_output_open() or host_output_adopt() opened; sets fd
 * to -1. */
void host_output_close(struct host_output *out);

#endif
