/* virtio devices on the PCI bus: the split virtqueue (virtqueue.c), the
 * modern virtio-pci transport (virtio_pci.c) and the contract between the
 * transport and each device model (blk.c, net.c, console.c, rng.c).
 * Section numbers are those of the virtio 1.2 specification. */
#ifndef STASIS_VIRTIO_H
#define STASIS_VIRTIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/pci.h"
#include "memory/guest_mem.h"
#include "snapshot/state.h"

struct vm;

/* Device IDs (5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* Transport-level feature bits (6). */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Split virtqueue layout (2.7): descriptor flags, ring flags and the
 * alignment of each part. */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1
#define VIRTQ_DESC_SIZE 16
#define VIRTQ_DESC_ALIGN 16
#define VIRTQ_AVAIL_ALIGN 2
#define VIRTQ_USED_ALIGN 4
/* Bytes of each part for a queue of @n entries, event fields included. */
#define VIRTQ_DESC_BYTES(n) ((uint64_t)(n)*VIRTQ_DESC_SIZE)
#define VIRTQ_AVAIL_BYTES(n) (6 + 2 * (uint64_t)(n))
#define VIRTQ_USED_BYTES(n) (6 + 8 * (uint64_t)(n))

/* Limits of this implementation. */
#define VIRTQ_MAX_SIZE 1024 /* largest queue size offered (2.7) */
#define VIRTQ_MAX_CHAIN 256 /* descriptors in one chain, indirect included */
#define VIRTIO_MAX_QUEUES 8

/* ------------------------------------------------------------ virtqueue -- */

/* One split virtqueue (2.7). The addresses and sizes are written by the
 * driver through the transport; the indices are ours. */
struct virtq {
	/* Saved state (in virtio_pci's queue table). */
	uint16_t size; /* negotiated; a power of two <= VIRTQ_MAX_SIZE */
	bool enabled;
	uint16_t msix_vector; /* VIRTIO_MSI_NO_VECTOR when none */
	gpa_t desc_gpa, avail_gpa, used_gpa;
	uint16_t last_avail; /* next avail ring entry to take */
	uint16_t used_idx; /* next used ring entry to fill (shadow of idx) */
	uint16_t
	    signalled_used; /* used_idx at the last interrupt (event idx) */
	bool signalled_used_valid;

	/* Set up by the transport. */
	const struct guest_mem *mem;
	bool event_idx; /* VIRTIO_F_RING_EVENT_IDX negotiated */
	bool indirect; /* VIRTIO_F_RING_INDIRECT_DESC negotiated */
};

/* A descriptor chain taken from the avail ring, as host iovecs into guest
 * memory: the device-readable buffers first (out), then the device-writable
 * ones (in). Every iovec lies inside guest RAM. */
struct virtq_chain {
	uint16_t head;
	unsigned nout, nin;
	struct iovec iov[VIRTQ_MAX_CHAIN];
	uint64_t out_len, in_len; /* byte totals */
};

/* Checks the queue's addresses and size against guest memory (2.7: ring
 * alignment, sizes; each part inside one RAM region). Call when the driver
 * enables the queue. Returns 0 or -EINVAL. virtq_pop and virtq_push check
 * again on every call, so a queue that was never checked is still safe. */
int virtq_check(const struct virtq *vq);

/* Takes the next available chain into @chain. Returns 1 when one was
 * taken, 0 when the ring is empty, -EIO when the driver broke the rules
 * (avail index jumped by more than the queue size, head out of range, a
 * loop, a chain longer than VIRTQ_MAX_CHAIN or the queue size, a buffer
 * outside guest RAM, a readable buffer after a writable one, a nested,
 * empty or oversized indirect table, an indirect descriptor without
 * VIRTIO_F_RING_INDIRECT_DESC). Zero-length descriptors are skipped. Each
 * descriptor is read once, so a driver rewriting the table meanwhile cannot
 * make a checked buffer unchecked. On -EIO the caller puts the device into
 * NEEDS_RESET (virtio_device_fail). */
int virtq_pop(struct virtq *vq, struct virtq_chain *chain);

/* Returns chain @head to the driver with @written bytes written to its
 * device-writable part (2.7.8). Does nothing when the rings are not in
 * guest RAM. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t written);

/* Whether the driver wants an interrupt for what was pushed since the last
 * one (VIRTQ_AVAIL_F_NO_INTERRUPT or used_event, 2.7.7 and 2.7.10); updates
 * the signalled index when it does. */
bool virtq_needs_interrupt(struct virtq *vq);

/* Whether there is nothing to take. */
bool virtq_empty(const struct virtq *vq);

/* With event idx, tells the driver to notify us once avail reaches the
 * current index (2.7.10); without, flips VIRTQ_USED_F_NO_NOTIFY. After
 * enabling, check virtq_empty() again: the driver may have added buffers
 * before it saw the change. */
void virtq_set_notify(struct virtq *vq, bool enable);

/* Copy helpers over a chain: read from its device-readable part, write to
 * its device-writable part, starting @off bytes in; return bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, size_t off, void *buf,
			size_t len);
size_t virtq_chain_write(const struct virtq_chain *c, size_t off,
			 const void *buf, size_t len);

/* Reports the device-writable buffers of @c to the dirty log as written
 * (memory/dirty_log.h): all of them, since a device may write any byte of
 * them (2.7.8: the used length is only an upper bound). Call after the
 * writes, before the chain is pushed. */
void virtq_chain_mark_written(const struct virtq *vq,
			      const struct virtq_chain *c);

/* -------------------------------------------------------------- devices -- */

struct virtio_device;

/* What a device model provides. Callbacks run on the device's worker
 * thread, except config_read/config_write (vCPU threads, with the device's
 * lock held) and reset (with the lock held, worker parked). */
struct virtio_device_ops {
	const char *kind; /* "blk", "net", "console", "rng": record names */
	uint16_t device_id; /* VIRTIO_ID_* */
	uint16_t num_queues;
	uint32_t config_len; /* bytes of device-specific config (4.1.4.6) */

	/* Device feature bits; the transport adds VERSION_1, INDIRECT_DESC
	 * and EVENT_IDX. */
	uint64_t (*features)(struct virtio_device *vdev);
	void (*config_read)(struct virtio_device *vdev, uint32_t off,
			    uint8_t *data, uint32_t len);
	void (*config_write)(struct virtio_device *vdev, uint32_t off,
			     const uint8_t *data, uint32_t len);
	/* Queue @q has new buffers (or was just enabled). Process what can
	 * be processed now; returns 0, or -EIO for a broken queue. */
	int (*queue_notify)(struct virtio_device *vdev, unsigned q);
	/* An extra fd of the device (tap, socket, console input) is
	 * readable; see extra_fd. Returns 0, -EIO for a broken queue, or
	 * -EAGAIN when it cannot take more input now (e.g. no receive
	 * buffers): extra_fd is then not polled until the next queue_notify.
	 * May be NULL. */
	int (*fd_ready)(struct virtio_device *vdev);
	/* Driver reset (status written 0, 4.1.4.3.1): drop device state. */
	void (*reset)(struct virtio_device *vdev);
	/* Device-specific saved state: desc describes the device struct
	 * (vdev->priv). May be NULL. post_load runs after decode; on
	 * failure it returns -errno with one line in @err saying why (blk:
	 * which disk changed and how). */
	const struct state_desc *state_desc;
	int (*post_load)(struct virtio_device *vdev, char *err, size_t errlen);
	/* Restore: runs after the model's table is decoded (at @version, 0
	 * when the record has no model section) and before the transport's,
	 * so a model whose queue count depends on its saved state takes the
	 * shape the snapshot was written with (virtio_device_set_queues).
	 * Returns 0 or -errno. May be NULL. */
	int (*load_layout)(struct virtio_device *vdev, uint16_t version);
	/* Frees what the device opened; safe after a failed create. */
	void (*destroy)(struct virtio_device *vdev);
	/* Snapshot: runs with the worker parked, before state_desc is
	 * encoded, so the device can bring its saved fields up to date (blk
	 * flushes the image and records its identity). Returns 0 or -errno,
	 * which fails the snapshot. May be NULL. */
	int (*pre_save)(struct virtio_device *vdev);
};

#define VIRTIO_MSI_NO_VECTOR 0xffff /* 4.1.5.1.2 */
/* MSI-X vectors: one for config changes, one per queue. */
#define VIRTIO_MAX_VECTORS (VIRTIO_MAX_QUEUES + 1)

/* One virtio-pci device: transport state, queues and the device model's
 * private struct. */
struct virtio_device {
	struct pci_device pci; /* first: pci->opaque points back here */
	const struct virtio_device_ops *ops;
	void *priv; /* the device model's struct */
	char name[32]; /* "blk0", "net1": the DEVICE record name */
	struct vm *vm;
	/* Transport registers and queue setup. Recursive, so that a device
	 * callback run under it may call virtio_device_notify(). */
	pthread_mutex_t lock;
	bool created; /* virtio_device_create() succeeded */

	/* Saved transport state (virtio_pci_state_desc). */
	uint8_t status;
	uint32_t device_feature_select, driver_feature_select;
	uint64_t driver_features; /* as written by the driver */
	uint16_t queue_select;
	uint16_t config_msix_vector;
	uint8_t isr;
	uint8_t config_generation;
	struct virtq vq[VIRTIO_MAX_QUEUES];
	/* MSI-X table: address lo, address hi, data, vector control for each
	 * vector in turn (PCI 3.0, 6.8.2.6), and the pending bits. */
	uint32_t msix_table[VIRTIO_MAX_VECTORS * 4];
	uint64_t msix_pba;
	bool msix_enabled, msix_masked; /* from the capability's control */

	/* Set up at creation. */
	uint16_t num_queues; /* ops->num_queues, or fewer: set_queues */
	uint16_t nvectors; /* num_queues + 1 */
	uint8_t msix_cap; /* config space offset of the MSI-X capability */
	uint8_t notify_cap; /* ... of the notification one */
	uint8_t pcicfg_cap; /* ... of the PCI configuration access one */
	uint32_t intx_gsi; /* pin A's GSI (docs/virtio.md) */
	uint64_t device_features; /* what ops->features offered, + ours */

	/* Derived, rebuilt on load. */
	uint32_t bar_addr; /* where BAR 0 decodes, 0: nowhere */
	bool intx_level; /* the line as last driven */
	int extra_fd; /* set by the device model, -1 when none */
	int kick_fd[VIRTIO_MAX_QUEUES]; /* ioeventfds of the notify area */
	bool kick_assigned[VIRTIO_MAX_QUEUES]; /* KVM_IOEVENTFD at bar_addr */
	int irq_fd[VIRTIO_MAX_VECTORS]; /* irqfds, one per MSI-X vector */
	bool irq_assigned[VIRTIO_MAX_VECTORS]; /* KVM_IRQFD done */
	uint32_t gsi[VIRTIO_MAX_VECTORS];
	uint32_t routed[VIRTIO_MAX_VECTORS][3]; /* MSI route as committed */
	bool route_valid[VIRTIO_MAX_VECTORS];
	pthread_t worker;
	bool worker_started;
	int ctl_fd; /* eventfd: wakes the worker to park or stop */
	atomic_bool park_requested, stop_requested;
	unsigned park_count; /* nested park requests (under park_lock) */
	bool parked;
	/* Set when fd_ready returned -EAGAIN: extra_fd is not polled again
	 * until a queue notify. Worker only. */
	bool extra_fd_wait;
	/* Output a device could not finish now (a console reader that is
	 * full): the worker polls out_wait_fd for room, or waits until
	 * out_wait_deadline (CLOCK_MONOTONIC ns; 0: no limit), and then
	 * notifies queue out_wait_queue again. -1: none. Worker only. */
	int out_wait_fd;
	unsigned out_wait_queue;
	uint64_t out_wait_deadline;
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;
};

/* ------------------------------------------------- virtio-pci layout -- */

/* PCI identity (4.1.2): modern-only devices, revision 1. */
#define VIRTIO_PCI_VENDOR_ID 0x1af4
#define VIRTIO_PCI_DEVICE_ID_BASE 0x1040 /* + VIRTIO_ID_* */
#define VIRTIO_PCI_REVISION 1

/* BAR 0, 32-bit memory: every structure at a fixed offset (4.1.4). */
#define VIRTIO_PCI_BAR 0
#define VIRTIO_PCI_BAR_SIZE 0x8000
#define VIRTIO_PCI_COMMON_OFF 0x0000
#define VIRTIO_PCI_COMMON_LEN 0x38 /* through queue_device */
#define VIRTIO_PCI_ISR_OFF 0x1000
#define VIRTIO_PCI_ISR_LEN 4
#define VIRTIO_PCI_DEVICE_OFF 0x2000
#define VIRTIO_PCI_DEVICE_MAX 0x1000 /* largest config_len */
#define VIRTIO_PCI_NOTIFY_OFF 0x3000
#define VIRTIO_PCI_NOTIFY_MULT 4 /* notify_off_multiplier */
#define VIRTIO_PCI_MSIX_TABLE_OFF 0x4000
#define VIRTIO_PCI_MSIX_PBA_OFF 0x5000

/* Vendor capability cfg_type (4.1.4). */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11

/* Common configuration structure offsets (4.1.4.3). */
#define VIRTIO_PCI_COMMON_DFSELECT 0x00
#define VIRTIO_PCI_COMMON_DF 0x04
#define VIRTIO_PCI_COMMON_GFSELECT 0x08
#define VIRTIO_PCI_COMMON_GF 0x0c
#define VIRTIO_PCI_COMMON_MSIX 0x10
#define VIRTIO_PCI_COMMON_NUMQ 0x12
#define VIRTIO_PCI_COMMON_STATUS 0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT 0x16
#define VIRTIO_PCI_COMMON_Q_SIZE 0x18
#define VIRTIO_PCI_COMMON_Q_MSIX 0x1a
#define VIRTIO_PCI_COMMON_Q_ENABLE 0x1c
#define VIRTIO_PCI_COMMON_Q_NOFF 0x1e
#define VIRTIO_PCI_COMMON_Q_DESCLO 0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI 0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO 0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI 0x2c
#define VIRTIO_PCI_COMMON_Q_USEDLO 0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI 0x34

/* MSI-X capability (PCI 3.0, 6.8.2): message control bits. */
#define PCI_MSIX_CTRL_ENABLE 0x8000
#define PCI_MSIX_CTRL_MASKALL 0x4000
#define PCI_MSIX_ENTRY_MASKED 1

/* ISR bits (4.1.4.5). */
#define VIRTIO_ISR_QUEUE 1
#define VIRTIO_ISR_CONFIG 2

/* Legacy INTx: pin A of slot s is GSI 16 + (s - 1) % 8, level-triggered,
 * active high, written to the interrupt line register (docs/virtio.md). */
#define VIRTIO_PCI_INTX_GSI(slot) (16u + ((unsigned)(slot)-1u) % 8u)

/* Creates the transport for a device model (@ops, @priv), plugs it into
 * the PCI bus at @slot and names it @name. Zeroes @vdev first (set
 * extra_fd afterwards); ops->features runs here. Needs vm->pci,
 * vm->irq_routing and vm->mem set up. On failure nothing is left open and
 * @priv is the caller's to free. Returns 0 or -errno with a one-line
 * reason printed. */
int virtio_device_create(struct virtio_device *vdev, struct vm *vm,
			 const struct virtio_device_ops *ops, void *priv,
			 const char *name, uint8_t slot);

/* Restore, before the transport's state is decoded and the worker runs:
 * gives the device @nq queues (1 to ops->num_queues) instead of all its
 * model offers, with the MSI-X table size, notification area and feature
 * bits (ops->features runs again) that go with them, as a device of an
 * older model version had. Returns 0 or -EINVAL. */
int virtio_device_set_queues(struct virtio_device *vdev, unsigned nq);

/* Starts the worker thread (after boot or restore, before the vCPUs). */
int virtio_device_start(struct virtio_device *vdev);

/* Parks the worker between requests: on return nothing of this device
 * touches guest memory or its state, and no request is half done. Used by
 * the pause protocol before a snapshot and around a driver reset. Parks
 * nest: each park needs one unpark. Kicks that arrive meanwhile are kept
 * and handled after the last unpark. Never call from the worker itself. */
void virtio_device_park(struct virtio_device *vdev);
void virtio_device_unpark(struct virtio_device *vdev);

/* From the worker, in ops->queue_notify: queue @q has output that @fd
 * cannot take now. The worker calls queue_notify(@q) again once @fd has
 * room or, when @timeout_ms is not 0, after that long at the latest; it
 * parks meanwhile as usual, so a stuck reader never blocks a pause. @fd -1
 * ends a wait (the fd is being closed). */
void virtio_device_wait_writable(struct virtio_device *vdev, int fd, unsigned q,
				 unsigned timeout_ms);

/* Sends queue @q's interrupt if the driver wants one (MSI-X vector through
 * its irqfd, else INTx with ISR bit 0). */
void virtio_device_notify(struct virtio_device *vdev, unsigned q);

/* Device config changed (e.g. a resized disk): ISR bit 1 and the config
 * vector; bumps config_generation. */
void virtio_device_config_changed(struct virtio_device *vdev);

/* The guest broke the rules: set NEEDS_RESET, raise the config interrupt,
 * stop processing until the driver resets the device (2.1.2). Logs one
 * line naming the device and @why. */
void virtio_device_fail(struct virtio_device *vdev, const char *why);

/* Snapshot: the transport's table (struct virtio_device; its validate
 * checks the state against the device as created) and the post-load step:
 * MSI-X state from config space, MSI routes and pending vectors, INTx,
 * BAR 0 and its ioeventfds, one look at every enabled queue, then
 * ops->post_load. Call after guest memory is restored, before
 * virtio_device_start. Returns 0, or -errno with one line in @err (not
 * naming the device: the caller does). */
extern const struct state_desc virtio_pci_state_desc;
int virtio_device_post_load(struct virtio_device *vdev, char *err,
			    size_t errlen);

/* Stops the worker and frees everything; safe on a zeroed struct. */
void virtio_device_destroy(struct virtio_device *vdev);

#endif
