/* virtio-rng (virtio 1.2 section 5.4): one request queue whose
 * device-writable buffers are filled from the host's getrandom(). */
#include "virtio/devices.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "core/log.h"
#include "virtio/device_priv.h"

/* Bytes given per request at most: 5.4.6.1 lets the device fill less than
 * the whole buffer, and a bound keeps one request short. */
#define RNG_MAX_PER_REQUEST 65536

struct virtio_rng {
	struct virtq_chain chain;
};

static uint64_t rng_features(struct virtio_device *vdev)
{
	return 0; /* 5.4.3: none */
}

static void rng_config_read(struct virtio_device *vdev, uint32_t off,
			    uint8_t *data, uint32_t len)
{
	virtio_config_copy(NULL, 0, off, data, len); /* 5.4.4: none */
}

static void rng_config_write(struct virtio_device *vdev, uint32_t off,
			     const uint8_t *data, uint32_t len)
{
}

static enum chain_result rng_fill(void *opaque, const struct virtq_chain *c,
				  uint32_t *written)
{
	size_t want = c->in_len < RNG_MAX_PER_REQUEST ? (size_t)c->in_len
						      : RNG_MAX_PER_REQUEST;
	size_t done = 0;

	/* Straight into guest memory: getrandom() writes each iovec. */
	for (unsigned i = c->nout; i < c->nout + c->nin && done < want; i++) {
		uint8_t *p = c->iov[i].iov_base;
		size_t len = c->iov[i].iov_len;

		if (len > want - done)
			len = want - done;
		while (len) {
			ssize_t n = getrandom(p, len, 0);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				goto out;
			p += n;
			len -= (size_t)n;
			done += (size_t)n;
		}
	}
out:
	*written = (uint32_t)done;
	return CHAIN_DONE;
}

static int rng_queue_notify(struct virtio_device *vdev, unsigned q)
{
	struct virtio_rng *rng = vdev->priv;

	return virtio_queue_drain(vdev, q, &rng->chain, rng_fill, rng) < 0
		   ? -EIO
		   : 0;
}

static void rng_reset(struct virtio_device *vdev)
{
}

static void rng_destroy(struct virtio_device *vdev)
{
	free(vdev->priv);
	vdev->priv = NULL;
}

static const struct virtio_device_ops rng_ops = {
	.kind = "rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1, /* 5.4.2: requestq */
	.config_len = 0,
	.features = rng_features,
	.config_read = rng_config_read,
	.config_write = rng_config_write,
	.queue_notify = rng_queue_notify,
	.reset = rng_reset,
	.destroy = rng_destroy,
};

int virtio_rng_create(struct virtio_device *vdev, struct vm *vm,
		      const char *name, uint8_t slot)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int ret;

	if (!rng) {
		log_error("%s: out of memory", name);
		return -ENOMEM;
	}
	ret = virtio_device_create(vdev, vm, &rng_ops, rng, name, slot);
	if (ret) {
		vdev->priv = NULL;
		free(rng);
		return ret;
	}
	vdev->extra_fd = -1;
	return 0;
}
