/* Helpers shared by the virtio device models (blk.c, net.c, console.c,
 * rng.c): queue draining, iovec slicing, config bytes. */
#ifndef STASIS_VIRTIO_DEVICE_PRIV_H
#define STASIS_VIRTIO_DEVICE_PRIV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/file_io.h"
#include "core/le.h"
#include "virtio/virtio.h"

/* What a chain handler tells virtio_queue_drain(). */
enum chain_result {
	CHAIN_DONE, /* push the chain with *written bytes */
	CHAIN_LATER, /* not now (no frame to receive, a full peer): the
		      * chain goes back to the avail ring untouched */
};

/* Handles one chain; sets *written to the bytes written to its
 * device-writable part. */
typedef enum chain_result (*chain_handler)(void *opaque,
					   const struct virtq_chain *c,
					   uint32_t *written);

/* Takes every available chain of queue @q in turn into @chain and hands it
 * to @handle, pushing each one it finished. Kicks are off while draining
 * and are re-enabled afterwards with a second look, since the driver may
 * have added buffers before it saw the change (2.7.10). Sends the queue's
 * interrupt once if anything was pushed. Returns 0 when the queue is
 * empty, 1 when @handle said CHAIN_LATER (the chain is returned, kicks are
 * on), or -EIO after putting the device into NEEDS_RESET for a broken
 * queue. */
int virtio_queue_drain(struct virtio_device *vdev, unsigned q,
		       struct virtq_chain *chain, chain_handler handle,
		       void *opaque);

/* Whether queue @q is set up by the driver and running. */
bool virtio_queue_ready(const struct virtio_device *vdev, unsigned q);

/* The @len bytes at offset @off of the iovec array @iov (@n entries) as a
 * new array in @out (room for @n entries). Returns the entry count; the
 * slice is shorter than @len when the array is. */
unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
		   struct iovec *out);

/* Binds the UNIX socket @fd at @path. A socket file left by a process that
 * is gone (nobody answers a connect) is replaced; a live one, or anything
 * there that is not a socket, is an error (-EADDRINUSE). Returns 0 or
 * -errno. */
int virtio_unix_bind(int fd, const char *path);

/* Copies the part [@off, @off + @len) of the device config image @cfg
 * (@cfg_len bytes) into @data, zeros past its end. Config reads of any
 * width at any offset go through here (4.1.4.3: the driver may read the
 * config in any width). */
void virtio_config_copy(const uint8_t *cfg, size_t cfg_len, uint32_t off,
			uint8_t *data, uint32_t len);

#endif
