/* Helpers shared by the virtio device models: the queue drain loop every
 * device uses, iovec slicing and config reads. */
#include "virtio/device_priv.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/unix_socket.h"

bool virtio_queue_ready(const struct virtio_device *vdev, unsigned q)
{
	/* The transport writes these on vCPU threads. */
	uint8_t status = __atomic_load_n(&vdev->status, __ATOMIC_ACQUIRE);

	return q < vdev->num_queues &&
	       __atomic_load_n(&vdev->vq[q].enabled, __ATOMIC_ACQUIRE) &&
	       vdev->vq[q].size && vdev->vq[q].mem &&
	       (status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(status & VIRTIO_STATUS_NEEDS_RESET);
}

int virtio_queue_drain(struct virtio_device *vdev, unsigned q,
		       struct virtq_chain *chain, chain_handler handle,
		       void *opaque)
{
	struct virtq *vq = &vdev->vq[q];
	bool pushed = false;
	int ret = 0;

	if (!virtio_queue_ready(vdev, q))
		return 0;
	for (;;) {
		uint32_t written = 0;
		int r;

		virtq_set_notify(vq, false);
		r = virtq_pop(vq, chain);
		if (r < 0) {
			virtio_device_fail(vdev, "a descriptor chain breaks "
						 "the rules of 2.7");
			ret = -EIO;
			break;
		}
		if (r == 0) {
			virtq_set_notify(vq, true);
			/* A buffer added before the driver saw the kick
			 * request would otherwise wait forever. */
			if (virtq_empty(vq))
				break;
			continue;
		}
		if (handle(opaque, chain, &written) == CHAIN_LATER) {
			/* Un-take the chain: its avail entry cannot have been
			 * reused, since the driver cannot make more than
			 * size buffers available (2.7.13.3). */
			vq->last_avail--;
			virtq_set_notify(vq, true);
			ret = 1;
			break;
		}
		virtq_chain_mark_written(vq, chain);
		virtq_push(vq, chain->head, written);
		pushed = true;
	}
	if (pushed)
		virtio_device_notify(vdev, q);
	return ret;
}

unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
		   struct iovec *out)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len; i++) {
		size_t chunk;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		chunk = iov[i].iov_len - off;
		if (chunk > len)
			chunk = len;
		out[k].iov_base = (uint8_t *)iov[i].iov_base + off;
		out[k].iov_len = chunk;
		k++;
		len -= chunk;
		off = 0;
	}
	return k;
}

void virtio_config_copy(const uint8_t *cfg, size_t cfg_len, uint32_t off,
			uint8_t *data, uint32_t len)
{
	memset(data, 0, len);
	if (off >= cfg_len)
		return;
	if (len > cfg_len - off)
		len = (uint32_t)(cfg_len - off);
	memcpy(data, cfg + off, len);
}

int virtio_unix_bind(int fd, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int type, ret;
	socklen_t len = sizeof(type);

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		return 0;
	if (errno != EADDRINUSE)
		return -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len))
		return -errno;
	ret = unix_socket_clear_stale(path, type);
	if (ret)
		return ret == -EEXIST ? -EADDRINUSE : ret;
	return bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
}
