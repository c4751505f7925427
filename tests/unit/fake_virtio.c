/* A stand-in for the virtio-pci transport: creating a device fills in the
 * fields the device models use; notifications and failures are counted. */
#include "fake_virtio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

unsigned fake_virtio_notifies[VIRTIO_MAX_QUEUES];
unsigned fake_virtio_fails;
unsigned fake_virtio_config_changes;
int fake_virtio_create_ret;

void fake_virtio_reset(void)
{
	memset(fake_virtio_notifies, 0, sizeof(fake_virtio_notifies));
	fake_virtio_fails = 0;
	fake_virtio_config_changes = 0;
	fake_virtio_create_ret = 0;
}

int virtio_device_create(struct virtio_device *vdev, struct vm *vm,
			 const struct virtio_device_ops *ops, void *priv,
			 const char *name, uint8_t slot)
{
	if (fake_virtio_create_ret)
		return fake_virtio_create_ret;
	vdev->ops = ops;
	vdev->priv = priv;
	vdev->vm = vm;
	snprintf(vdev->name, sizeof(vdev->name), "%s", name);
	vdev->num_queues = ops->num_queues;
	vdev->nvectors = ops->num_queues + 1;
	vdev->device_features = ops->features ? ops->features(vdev) : 0;
	vdev->extra_fd = -1;
	vdev->ctl_fd = -1;
	vdev->out_wait_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vdev->kick_fd[q] = -1;
	return 0;
}

void virtio_device_notify(struct virtio_device *vdev, unsigned q)
{
	if (q < VIRTIO_MAX_QUEUES)
		fake_virtio_notifies[q]++;
}

/* As the worker sees it: the fields it would poll. */
void virtio_device_wait_writable(struct virtio_device *vdev, int fd, unsigned q,
				 unsigned timeout_ms)
{
	vdev->out_wait_fd = fd;
	vdev->out_wait_queue = q;
	vdev->out_wait_deadline = timeout_ms; /* ms, not a time, here */
}

void virtio_device_config_changed(struct virtio_device *vdev)
{
	fake_virtio_config_changes++;
}

int virtio_device_set_queues(struct virtio_device *vdev, unsigned nq)
{
	if (!nq || nq > vdev->ops->num_queues)
		return -EINVAL;
	vdev->num_queues = nq;
	vdev->nvectors = nq + 1;
	vdev->device_features = vdev->ops->features(vdev);
	return 0;
}

void virtio_device_fail(struct virtio_device *vdev, const char *why)
{
	vdev->status |= VIRTIO_STATUS_NEEDS_RESET;
	fake_virtio_fails++;
}
