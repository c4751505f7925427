/* A stand-in for the virtio-pci transport (virtio_pci.c) that records what
 * the device models ask of it, so they can be tested without a VM. */
#ifndef STASIS_TEST_FAKE_VIRTIO_H
#define STASIS_TEST_FAKE_VIRTIO_H

#include "virtio/virtio.h"

/* virtio_device_notify() calls per queue, virtio_device_fail() calls. */
extern unsigned fake_virtio_notifies[VIRTIO_MAX_QUEUES];
extern unsigned fake_virtio_fails;
/* virtio_device_config_changed() calls. */
extern unsigned fake_virtio_config_changes;
/* What the next virtio_device_create() returns (0: it succeeds). */
extern int fake_virtio_create_ret;

void fake_virtio_reset(void);

#endif
