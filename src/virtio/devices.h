/* The virtio device models stasis offers, each in its own file: block
 * (blk.c), network (net.c), console (console.c) and entropy (rng.c). */
#ifndef STASIS_VIRTIO_DEVICES_H
#define STASIS_VIRTIO_DEVICES_H

#include "core/config.h"
#include "virtio/virtio.h"

/* Each creates its device model from the config, then the transport
 * (virtio_device_create) at @slot with record name @name. Returns 0 or
 * -errno after printing a one-line reason (e.g. a missing disk image). On
 * failure nothing is left open. */
int virtio_blk_create(struct virtio_device *vdev, struct vm *vm,
		      const struct disk_config *cfg, const char *name,
		      uint8_t slot);
int virtio_net_create(struct virtio_device *vdev, struct vm *vm,
		      const struct net_config *cfg, unsigned index,
		      const char *name, uint8_t slot);
int virtio_console_create(struct virtio_device *vdev, struct vm *vm,
			  enum console_mode mode, const char *path,
			  const char *name, uint8_t slot);
/* The disk-consistency rule at restore (docs/virtio.md): the image behind
 * a restored virtio-blk device must be the one recorded when the snapshot
 * was taken: same size and first-MiB hash, and either the same whole-image
 * hash (verify=hash) or the same file (device, inode, ctime, mtime; for a
 * block device its device number). Returns 0, or -ESTALE with one line
 * naming the disk and what differs in @err. The device's post_load runs
 * it unless the disk was replaced at restore (disk_config.replaced; then
 * only the hash is checked, with verify=hash). */
int virtio_blk_check_identity(struct virtio_device *vdev, char *err,
			      size_t errlen);

/* After a migration (docs/migration.md): sets VIRTIO_NET_S_ANNOUNCE in
 * the config status and raises the config interrupt, so the guest sends
 * its gratuitous packets and acknowledges on the control queue (virtio
 * 1.2 5.1.6.5.4). Returns 0, -ENODEV when @vdev is not a network device,
 * or -EOPNOTSUPP when its driver is not running with CTRL_VQ and
 * GUEST_ANNOUNCE. */
int virtio_net_announce(struct virtio_device *vdev);
/* virtio_net_announce on every network device of @vm; returns how many
 * announce. */
unsigned virtio_net_announce_all(struct vm *vm);

int virtio_rng_create(struct virtio_device *vdev, struct vm *vm,
		      const char *name, uint8_t slot);

#endif
