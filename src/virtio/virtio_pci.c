/* The modern virtio-pci transport (virtio 1.2, 4.1): config space and
 * capabilities, the BAR 0 registers, MSI-X through KVM irqfds and MSI
 * routes, INTx fallback, queue kicks through KVM ioeventfds, and the
 * worker thread that runs each device's queues. */
#include "virtio/virtio.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "bus/bus.h"
#include "core/clock.h"
#include "core/irq_routing.h"
#include "core/kvm.h"
#include "core/le.h"
#include "core/log.h"
#include "core/seccomp.h"
#include "core/vm.h"

#define VIRTIO_STATUS_DRIVER_BITS                              \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |    \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK | \
	 VIRTIO_STATUS_FAILED)
#define VIRTIO_TRANSPORT_FEATURES                                           \
	(1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_RING_INDIRECT_DESC | \
	 1ull << VIRTIO_F_RING_EVENT_IDX)

#define VIRTIO_PCI_CAP_LEN 16 /* struct virtio_pci_cap (4.1.4) */
#define VIRTIO_PCI_NOTIFY_CAP_LEN 20 /* + notify_off_multiplier */
#define PCI_MSIX_CAP_LEN 12
#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_INT_PIN_A 1

/* The class code each device presents (PCI code and ID assignment). */
static const struct {
	uint16_t device_id;
	uint32_t class_code;
} virtio_pci_classes[] = {
	{ VIRTIO_ID_NET, 0x020000 }, /* network, Ethernet */
	{ VIRTIO_ID_BLOCK, 0x010000 }, /* mass storage */
	{ VIRTIO_ID_CONSOLE, 0x078000 }, /* communication, other */
	{ VIRTIO_ID_RNG, 0xff0000 }, /* unassigned class */
};

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static unsigned virtio_nq(const struct virtio_device *vdev)
{
	return vdev->num_queues;
}

static bool virtio_live(const struct virtio_device *vdev)
{
	uint8_t s = __atomic_load_n(&vdev->status, __ATOMIC_ACQUIRE);

	return (s & VIRTIO_STATUS_DRIVER_OK) &&
	       !(s & VIRTIO_STATUS_NEEDS_RESET);
}

static void virtio_eventfd_signal(int fd)
{
	uint64_t one = 1;

	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("eventfd write: %s", strerror(errno));
}

static void virtio_eventfd_drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("eventfd read: %s", strerror(errno));
}

/* ------------------------------------------------------- interrupts -- */

/* INTx (4.1.4.5): pin A is high while the ISR has a bit set, MSI-X is off
 * and the command register does not disable INTx. Lock held. */
static void virtio_intx_update(struct virtio_device *vdev)
{
	uint16_t cmd = (uint16_t)get_le(vdev->pci.config + PCI_CFG_COMMAND, 2);
	bool level = vdev->isr && !vdev->msix_enabled &&
		     !(cmd & PCI_COMMAND_INTX_DISABLE);

	if (level == vdev->intx_level)
		return;
	vdev->intx_level = level;
	if (vm_set_irq(vdev->vm, vdev->intx_gsi, level))
		log_debug("%s: cannot drive GSI %u", vdev->name,
			  vdev->intx_gsi);
}

static uint32_t *msix_entry(struct virtio_device *vdev, unsigned v)
{
	return &vdev->msix_table[4 * v];
}

static bool virtio_msix_masked(struct virtio_device *vdev, unsigned v)
{
	return vdev->msix_masked ||
	       (msix_entry(vdev, v)[3] & PCI_MSIX_ENTRY_MASKED);
}

/* Points vector @v's GSI at its table entry when that changed. A failed
 * route (no KVM in unit tests) is retried at the next delivery. */
static void virtio_msix_route(struct virtio_device *vdev, unsigned v)
{
	const uint32_t *e = msix_entry(vdev, v);
	uint64_t addr = (uint64_t)e[1] << 32 | e[0];

	if (vdev->route_valid[v] && vdev->routed[v][0] == e[0] &&
	    vdev->routed[v][1] == e[1] && vdev->routed[v][2] == e[2])
		return;
	if (irq_routing_set_msi(&vdev->vm->irq_routing, vdev->gsi[v], addr,
				e[2])) {
		vdev->route_valid[v] = false;
		return;
	}
	memcpy(vdev->routed[v], e, sizeof(vdev->routed[v]));
	vdev->route_valid[v] = true;
}

/* Sends MSI-X vector @v, or marks it pending while masked (PCI 3.0,
 * 6.8.3.4). Lock held. */
static void virtio_msix_fire(struct virtio_device *vdev, unsigned v)
{
	const uint32_t *e;
	struct kvm_msi msi;

	if (v >= vdev->nvectors)
		return;
	if (virtio_msix_masked(vdev, v)) {
		vdev->msix_pba |= 1ull << v;
		return;
	}
	virtio_msix_route(vdev, v);
	/* Without an irqfd, inject directly; with no KVM at all (unit
	 * tests), the vector's eventfd still records the interrupt. */
	if (vdev->irq_assigned[v] || vdev->vm->vm_fd < 0) {
		virtio_eventfd_signal(vdev->irq_fd[v]);
		return;
	}
	e = msix_entry(vdev, v);
	msi = (struct kvm_msi){ .address_lo = e[0],
				.address_hi = e[1],
				.data = e[2] };
	if (kvm_ioctl(vdev->vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		log_debug("%s: KVM_SIGNAL_MSI failed", vdev->name);
}

/* After a change to vector @v's entry or the function's mask or enable:
 * keep its route current and deliver what was pending. Lock held. */
static void virtio_msix_update(struct virtio_device *vdev, unsigned v)
{
	if (!vdev->msix_enabled || virtio_msix_masked(vdev, v))
		return;
	virtio_msix_route(vdev, v);
	if (vdev->msix_pba & (1ull << v)) {
		vdev->msix_pba &= ~(1ull << v);
		virtio_msix_fire(vdev, v);
	}
}

/* The configuration change interrupt (4.1.4.5, 4.1.5.2). Lock held. */
static void virtio_config_interrupt(struct virtio_device *vdev)
{
	vdev->isr |= VIRTIO_ISR_CONFIG;
	if (vdev->msix_enabled) {
		if (vdev->config_msix_vector != VIRTIO_MSI_NO_VECTOR)
			virtio_msix_fire(vdev, vdev->config_msix_vector);
	} else {
		virtio_intx_update(vdev);
	}
}

void virtio_device_notify(struct virtio_device *vdev, unsigned q)
{
	struct virtq *vq;

	if (q >= virtio_nq(vdev))
		return;
	vq = &vdev->vq[q];
	pthread_mutex_lock(&vdev->lock);
	if (!virtq_needs_interrupt(vq))
		goto out;
	if (vdev->msix_enabled) {
		/* 4.1.5.1.2: no vector, no interrupt. */
		if (vq->msix_vector != VIRTIO_MSI_NO_VECTOR)
			virtio_msix_fire(vdev, vq->msix_vector);
	} else {
		vdev->isr |= VIRTIO_ISR_QUEUE;
		virtio_intx_update(vdev);
	}
out:
	pthread_mutex_unlock(&vdev->lock);
}

void virtio_device_config_changed(struct virtio_device *vdev)
{
	pthread_mutex_lock(&vdev->lock);
	vdev->config_generation++;
	virtio_config_interrupt(vdev);
	pthread_mutex_unlock(&vdev->lock);
}

void virtio_device_fail(struct virtio_device *vdev, const char *why)
{
	pthread_mutex_lock(&vdev->lock);
	if (!(vdev->status & VIRTIO_STATUS_NEEDS_RESET)) {
		log_warn("%s: %s; the device needs a reset", vdev->name, why);
		__atomic_store_n(&vdev->status,
				 vdev->status | VIRTIO_STATUS_NEEDS_RESET,
				 __ATOMIC_RELEASE);
		/* 2.1.2: tell the driver through a config change. */
		virtio_config_interrupt(vdev);
	}
	pthread_mutex_unlock(&vdev->lock);
}

/* --------------------------------------------------- common config -- */

static void virtq_reset(struct virtq *vq, bool exists)
{
	const struct guest_mem *mem = vq->mem;

	*vq = (struct virtq){ .size = exists ? VIRTQ_MAX_SIZE : 0,
			      .msix_vector = VIRTIO_MSI_NO_VECTOR,
			      .mem = mem };
}

/* Transport state back to its power-on values (4.1.4.3.1, status 0).
 * Lock held, worker parked. */
static void virtio_reset_locked(struct virtio_device *vdev)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		virtq_reset(&vdev->vq[q], q < virtio_nq(vdev));
	vdev->device_feature_select = vdev->driver_feature_select = 0;
	vdev->driver_features = 0;
	vdev->queue_select = 0;
	vdev->config_msix_vector = VIRTIO_MSI_NO_VECTOR;
	vdev->isr = 0;
	vdev->extra_fd_wait = false;
	vdev->out_wait_fd = -1;
	__atomic_store_n(&vdev->status, 0, __ATOMIC_RELEASE);
	virtio_intx_update(vdev);
}

static void virtio_reset(struct virtio_device *vdev)
{
	virtio_device_park(vdev);
	pthread_mutex_lock(&vdev->lock);
	virtio_reset_locked(vdev);
	if (vdev->ops->reset)
		vdev->ops->reset(vdev);
	pthread_mutex_unlock(&vdev->lock);
	virtio_device_unpark(vdev);
}

static void virtio_apply_features(struct virtio_device *vdev)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		vdev->vq[q].event_idx =
		    vdev->driver_features & (1ull << VIRTIO_F_RING_EVENT_IDX);
		vdev->vq[q].indirect = vdev->driver_features &
				       (1ull << VIRTIO_F_RING_INDIRECT_DESC);
	}
}

/* Wakes the worker on every enabled queue, as if the driver had kicked:
 * buffers made available before DRIVER_OK or a restore are then seen. */
static void virtio_kick_all(struct virtio_device *vdev)
{
	for (unsigned q = 0; q < virtio_nq(vdev); q++)
		if (vdev->vq[q].enabled)
			virtio_eventfd_signal(vdev->kick_fd[q]);
}

/* 2.1.1, 3.1.1: the driver only adds bits; FEATURES_OK sticks only for
 * an acceptable feature set (VERSION_1, nothing we did not offer), and
 * DRIVER_OK only after FEATURES_OK. Returns true for a reset (0). */
static bool virtio_write_status(struct virtio_device *vdev, uint8_t v)
{
	uint8_t old = vdev->status, bits = v & VIRTIO_STATUS_DRIVER_BITS;

	if (v == 0)
		return true;
	if ((bits & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t f = vdev->driver_features;

		if ((f & ~vdev->device_features) ||
		    !(f & (1ull << VIRTIO_F_VERSION_1)))
			bits &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		else
			virtio_apply_features(vdev);
	}
	if (!((old | bits) & VIRTIO_STATUS_FEATURES_OK))
		bits &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
	__atomic_store_n(&vdev->status, (uint8_t)(old | bits),
			 __ATOMIC_RELEASE);
	if ((bits & VIRTIO_STATUS_DRIVER_OK) &&
	    !(old & VIRTIO_STATUS_DRIVER_OK)) {
		virtio_eventfd_signal(vdev->ctl_fd);
		virtio_kick_all(vdev);
	}
	return false;
}

static uint16_t virtio_vector_or_none(const struct virtio_device *vdev,
				      uint64_t v)
{
	/* 4.1.5.1.2: a vector we cannot map reads back NO_VECTOR. */
	return v < vdev->nvectors ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static void virtio_enable_queue(struct virtio_device *vdev, unsigned q)
{
	struct virtq *vq = &vdev->vq[q];
	char why[64];

	if (virtq_check(vq)) {
		snprintf(why, sizeof(why),
			 "queue %u rings are not in guest RAM or misaligned",
			 q);
		/* Recursive lock: virtio_device_fail takes it again. */
		virtio_device_fail(vdev, why);
		return;
	}
	__atomic_store_n(&vq->enabled, true, __ATOMIC_RELEASE);
}

static void virtio_common_read(struct virtio_device *vdev, uint64_t off,
			       uint8_t *data, uint32_t len)
{
	uint8_t r[VIRTIO_PCI_COMMON_LEN] = { 0 };
	uint16_t qs = vdev->queue_select;
	uint64_t df = 0, gf = 0;

	if (off + len > sizeof(r))
		return;
	if (vdev->device_feature_select < 2)
		df =
		    vdev->device_features >> (32 * vdev->device_feature_select);
	if (vdev->driver_feature_select < 2)
		gf =
		    vdev->driver_features >> (32 * vdev->driver_feature_select);
	put_le(r + VIRTIO_PCI_COMMON_DFSELECT, vdev->device_feature_select, 4);
	put_le(r + VIRTIO_PCI_COMMON_DF, (uint32_t)df, 4);
	put_le(r + VIRTIO_PCI_COMMON_GFSELECT, vdev->driver_feature_select, 4);
	put_le(r + VIRTIO_PCI_COMMON_GF, (uint32_t)gf, 4);
	put_le(r + VIRTIO_PCI_COMMON_MSIX, vdev->config_msix_vector, 2);
	put_le(r + VIRTIO_PCI_COMMON_NUMQ, virtio_nq(vdev), 2);
	r[VIRTIO_PCI_COMMON_STATUS] = vdev->status;
	r[VIRTIO_PCI_COMMON_CFGGENERATION] = vdev->config_generation;
	put_le(r + VIRTIO_PCI_COMMON_Q_SELECT, qs, 2);
	if (qs < virtio_nq(vdev)) {
		const struct virtq *vq = &vdev->vq[qs];

		put_le(r + VIRTIO_PCI_COMMON_Q_SIZE, vq->size, 2);
		put_le(r + VIRTIO_PCI_COMMON_Q_MSIX, vq->msix_vector, 2);
		put_le(r + VIRTIO_PCI_COMMON_Q_ENABLE, vq->enabled, 2);
		put_le(r + VIRTIO_PCI_COMMON_Q_NOFF, qs, 2);
		put_le(r + VIRTIO_PCI_COMMON_Q_DESCLO, vq->desc_gpa, 8);
		put_le(r + VIRTIO_PCI_COMMON_Q_AVAILLO, vq->avail_gpa, 8);
		put_le(r + VIRTIO_PCI_COMMON_Q_USEDLO, vq->used_gpa, 8);
	}
	memcpy(data, r + off, len);
}

/* Sets 32 bits of a 64-bit queue address (4.1.4.3: the driver may write
 * either half, or both at once). */
static void set_addr(gpa_t *a, uint64_t field_off, uint64_t off, uint64_t v,
		     uint32_t len)
{
	if (len == 8 && off == field_off)
		*a = v;
	else if (len == 4 && off == field_off)
		*a = (*a & ~0xffffffffull) | (uint32_t)v;
	else if (len == 4 && off == field_off + 4)
		*a = (*a & 0xffffffffull) | v << 32;
}

/* Writes that do not match a field's width are ignored (4.1.3.1). Returns
 * true when the driver asked for a reset. */
static bool virtio_common_write(struct virtio_device *vdev, uint64_t off,
				const uint8_t *data, uint32_t len)
{
	uint64_t v = get_le(data, len);
	uint16_t qs = vdev->queue_select;
	struct virtq *vq = qs < virtio_nq(vdev) ? &vdev->vq[qs] : NULL;
	bool q_setup = vq && !vq->enabled;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		if (len == 4)
			vdev->device_feature_select = (uint32_t)v;
		return false;
	case VIRTIO_PCI_COMMON_GFSELECT:
		if (len == 4)
			vdev->driver_feature_select = (uint32_t)v;
		return false;
	case VIRTIO_PCI_COMMON_GF:
		/* 3.1.1: features are fixed once FEATURES_OK is set. */
		if (len == 4 && vdev->driver_feature_select < 2 &&
		    !(vdev->status & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned sh = 32 * vdev->driver_feature_select;

			vdev->driver_features =
			    (vdev->driver_features & ~(0xffffffffull << sh)) |
			    v << sh;
		}
		return false;
	case VIRTIO_PCI_COMMON_MSIX:
		if (len == 2)
			vdev->config_msix_vector =
			    virtio_vector_or_none(vdev, v);
		return false;
	case VIRTIO_PCI_COMMON_STATUS:
		return len == 1 && virtio_write_status(vdev, (uint8_t)v);
	case VIRTIO_PCI_COMMON_Q_SELECT:
		if (len == 2)
			vdev->queue_select = (uint16_t)v;
		return false;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		/* 2.7: split queues are a power of two; we offered the
		 * maximum, the driver may ask for less. */
		if (len == 2 && q_setup && is_pow2((uint32_t)v) &&
		    v <= VIRTQ_MAX_SIZE)
			vq->size = (uint16_t)v;
		return false;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (len == 2 && vq)
			vq->msix_vector = virtio_vector_or_none(vdev, v);
		return false;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		/* 4.1.4.3.2: only 1 is written; 0 needs queue reset, which
		 * we do not offer. */
		if (len == 2 && q_setup && v == 1)
			virtio_enable_queue(vdev, qs);
		return false;
	}
	if (!q_setup)
		return false;
	if (off >= VIRTIO_PCI_COMMON_Q_DESCLO &&
	    off < VIRTIO_PCI_COMMON_Q_AVAILLO)
		set_addr(&vq->desc_gpa, VIRTIO_PCI_COMMON_Q_DESCLO, off, v,
			 len);
	else if (off >= VIRTIO_PCI_COMMON_Q_AVAILLO &&
		 off < VIRTIO_PCI_COMMON_Q_USEDLO)
		set_addr(&vq->avail_gpa, VIRTIO_PCI_COMMON_Q_AVAILLO, off, v,
			 len);
	else if (off >= VIRTIO_PCI_COMMON_Q_USEDLO &&
		 off < VIRTIO_PCI_COMMON_LEN)
		set_addr(&vq->used_gpa, VIRTIO_PCI_COMMON_Q_USEDLO, off, v,
			 len);
	return false;
}

/* ------------------------------------------------------------ MSI-X -- */

static void virtio_msix_table_io(struct virtio_device *vdev, uint64_t off,
				 uint8_t *data, uint32_t len, bool is_write)
{
	/* PCI 3.0, 6.8.2: dword or aligned qword accesses. */
	if ((len != 4 && len != 8) || (off & (len - 1)))
		return;
	for (uint32_t i = 0; i < len; i += 4) {
		uint64_t o = off + i;
		unsigned v = (unsigned)(o / PCI_MSIX_ENTRY_SIZE);
		unsigned w = (unsigned)(o % PCI_MSIX_ENTRY_SIZE) / 4;

		if (v >= vdev->nvectors)
			continue;
		if (!is_write) {
			put_le(data + i, msix_entry(vdev, v)[w], 4);
			continue;
		}
		msix_entry(vdev, v)[w] = (uint32_t)get_le(data + i, 4);
		if (w == 3) /* only the mask bit is writable */
			msix_entry(vdev, v)[w] &= PCI_MSIX_ENTRY_MASKED;
		virtio_msix_update(vdev, v);
	}
}

static void virtio_msix_pba_read(struct virtio_device *vdev, uint64_t off,
				 uint8_t *data, uint32_t len)
{
	if ((len == 4 || len == 8) && off + len <= 8 && !(off & (len - 1)))
		put_le(data, vdev->msix_pba >> (8 * off), len);
}

static void virtio_pci_mmio(void *opaque, uint64_t off, uint8_t *data,
			    uint32_t len, bool is_write);

/* The PCI configuration access capability (4.1.4.9): a window through
 * config space into BAR 0, for drivers that cannot map the BAR yet. The
 * driver writes bar, offset and length, then reads or writes
 * pci_cfg_data. Accesses the window cannot express are ignored (reads see
 * whatever pci_cfg_data held). */
#define PCICFG_BAR 4
#define PCICFG_OFFSET 8
#define PCICFG_LENGTH 12
#define PCICFG_DATA 16
#define PCICFG_CAP_LEN 20

static bool virtio_pcicfg_target(const struct virtio_device *vdev,
				 uint32_t *off, uint32_t *len)
{
	const uint8_t *cap = vdev->pci.config + vdev->pcicfg_cap;

	*off = (uint32_t)get_le(cap + PCICFG_OFFSET, 4);
	*len = (uint32_t)get_le(cap + PCICFG_LENGTH, 4);
	/* 4.1.4.9.1: length 1, 2 or 4, offset aligned to it, inside the
	 * BAR. */
	return cap[PCICFG_BAR] == VIRTIO_PCI_BAR &&
	       (*len == 1 || *len == 2 || *len == 4) && !(*off % *len) &&
	       *off <= VIRTIO_PCI_BAR_SIZE - *len;
}

static bool virtio_pcicfg_data_hit(const struct virtio_device *vdev,
				   unsigned off, unsigned len)
{
	unsigned data = vdev->pcicfg_cap + PCICFG_DATA;

	return vdev->pcicfg_cap && off < data + 4 && off + len > data;
}

static void virtio_pcicfg_read(struct pci_device *dev, unsigned off,
			       unsigned len)
{
	struct virtio_device *vdev = dev->opaque;
	uint8_t *data = dev->config + vdev->pcicfg_cap + PCICFG_DATA;
	uint32_t boff, blen;

	if (!virtio_pcicfg_data_hit(vdev, off, len) ||
	    !virtio_pcicfg_target(vdev, &boff, &blen))
		return;
	memset(data, 0, 4);
	virtio_pci_mmio(vdev, boff, data, blen, false);
}

static void virtio_pcicfg_write(struct virtio_device *vdev, unsigned off,
				unsigned len)
{
	uint32_t boff, blen;

	if (!virtio_pcicfg_data_hit(vdev, off, len) ||
	    !virtio_pcicfg_target(vdev, &boff, &blen))
		return;
	virtio_pci_mmio(vdev, boff,
			vdev->pci.config + vdev->pcicfg_cap + PCICFG_DATA, blen,
			true);
}

/* The capability's message control changed: enable and function mask. */
static void virtio_pci_config_written(struct pci_device *dev, unsigned off,
				      unsigned len)
{
	struct virtio_device *vdev = dev->opaque;
	unsigned ctrl = vdev->msix_cap + 2u;
	uint16_t v;

	pthread_mutex_lock(&vdev->lock);
	if (off < ctrl + 2 && off + len > ctrl) {
		v = (uint16_t)get_le(dev->config + ctrl, 2);
		vdev->msix_enabled = v & PCI_MSIX_CTRL_ENABLE;
		vdev->msix_masked = v & PCI_MSIX_CTRL_MASKALL;
		for (unsigned i = 0; i < vdev->nvectors; i++)
			virtio_msix_update(vdev, i);
	}
	/* MSI-X enable or INTx disable may change the line. */
	virtio_intx_update(vdev);
	pthread_mutex_unlock(&vdev->lock);
	/* After the unlock: a BAR access takes the device lock itself. */
	virtio_pcicfg_write(vdev, off, len);
}

/* ------------------------------------------------------------- BAR 0 -- */

static void virtio_pci_mmio(void *opaque, uint64_t off, uint8_t *data,
			    uint32_t len, bool is_write)
{
	struct virtio_device *vdev = opaque;
	uint32_t cfg_len = vdev->ops->config_len;
	bool reset = false;

	pthread_mutex_lock(&vdev->lock);
	if (off < VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_LEN) {
		if (is_write)
			reset = virtio_common_write(vdev, off, data, len);
		else
			virtio_common_read(vdev, off, data, len);
	} else if (off == VIRTIO_PCI_ISR_OFF && !is_write) {
		/* 4.1.4.5: reading clears the ISR and lowers INTx. */
		data[0] = vdev->isr;
		vdev->isr = 0;
		virtio_intx_update(vdev);
	} else if (off >= VIRTIO_PCI_DEVICE_OFF &&
		   off - VIRTIO_PCI_DEVICE_OFF + len <= cfg_len) {
		uint32_t o = (uint32_t)(off - VIRTIO_PCI_DEVICE_OFF);

		if (is_write && vdev->ops->config_write)
			vdev->ops->config_write(vdev, o, data, len);
		else if (!is_write && vdev->ops->config_read)
			vdev->ops->config_read(vdev, o, data, len);
	} else if (off >= VIRTIO_PCI_NOTIFY_OFF &&
		   off < VIRTIO_PCI_NOTIFY_OFF +
			     VIRTIO_PCI_NOTIFY_MULT * virtio_nq(vdev)) {
		/* Reached only without an ioeventfd (or for an access of
		 * another width): kick the worker ourselves (4.1.4.4). */
		uint64_t o = off - VIRTIO_PCI_NOTIFY_OFF;

		if (is_write && o % VIRTIO_PCI_NOTIFY_MULT == 0)
			virtio_eventfd_signal(
			    vdev->kick_fd[o / VIRTIO_PCI_NOTIFY_MULT]);
	} else if (off >= VIRTIO_PCI_MSIX_TABLE_OFF &&
		   off < VIRTIO_PCI_MSIX_PBA_OFF) {
		virtio_msix_table_io(vdev, off - VIRTIO_PCI_MSIX_TABLE_OFF,
				     data, len, is_write);
	} else if (off >= VIRTIO_PCI_MSIX_PBA_OFF && !is_write) {
		virtio_msix_pba_read(vdev, off - VIRTIO_PCI_MSIX_PBA_OFF, data,
				     len);
	}
	pthread_mutex_unlock(&vdev->lock);
	/* Outside the lock: the worker may need it to finish its request
	 * before it parks. */
	if (reset)
		virtio_reset(vdev);
}

/* KVM_IOEVENTFD for queue @q's notify address in a BAR at @bar: a kick
 * then wakes the worker without an exit to stasis. */
static int virtio_ioeventfd(struct virtio_device *vdev, unsigned q,
			    uint64_t bar, bool assign)
{
	struct kvm_ioeventfd io = {
		.addr = bar + VIRTIO_PCI_NOTIFY_OFF +
			(uint64_t)q * VIRTIO_PCI_NOTIFY_MULT,
		.len = 2, /* the driver writes the 16-bit queue index */
		.fd = vdev->kick_fd[q],
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};
	int ret = kvm_ioctl(vdev->vm->vm_fd, KVM_IOEVENTFD, &io);

	return ret < 0 ? ret : 0;
}

static void virtio_unmap_bar(struct virtio_device *vdev, uint64_t addr)
{
	for (unsigned q = 0; q < virtio_nq(vdev); q++) {
		if (vdev->kick_assigned[q])
			virtio_ioeventfd(vdev, q, addr, false);
		vdev->kick_assigned[q] = false;
	}
	bus_unregister(&vdev->vm->mmio, addr);
}

static void virtio_map_bar(struct virtio_device *vdev, uint64_t addr)
{
	int ret = bus_register(&vdev->vm->mmio, addr, VIRTIO_PCI_BAR_SIZE,
			       virtio_pci_mmio, vdev, vdev->name);

	if (ret)
		log_warn("%s: cannot map BAR 0 at %#llx: %s", vdev->name,
			 (unsigned long long)addr, strerror(-ret));
	for (unsigned q = 0; q < virtio_nq(vdev); q++) {
		ret = virtio_ioeventfd(vdev, q, addr, true);
		vdev->kick_assigned[q] = ret == 0;
		/* Kicks still work through the MMIO handler. */
		if (ret && vdev->vm->vm_fd >= 0)
			log_warn("%s: no ioeventfd for queue %u: %s",
				 vdev->name, q, strerror(-ret));
	}
}

/* Called by the PCI code (host lock held) when BAR 0 moves. The bus is
 * changed without our lock: MMIO handlers take it under the bus lock. */
static void virtio_pci_bar_remap(struct pci_device *dev, int bar,
				 uint64_t old_addr, uint64_t new_addr)
{
	struct virtio_device *vdev = dev->opaque;

	if (bar != VIRTIO_PCI_BAR)
		return;
	if (old_addr)
		virtio_unmap_bar(vdev, old_addr);
	if (new_addr)
		virtio_map_bar(vdev, new_addr);
	pthread_mutex_lock(&vdev->lock);
	vdev->bar_addr = (uint32_t)new_addr;
	pthread_mutex_unlock(&vdev->lock);
}

/* ------------------------------------------------------------ worker -- */

static void virtio_worker_park(struct virtio_device *vdev)
{
	pthread_mutex_lock(&vdev->park_lock);
	vdev->parked = true;
	pthread_cond_broadcast(&vdev->park_cond);
	while (vdev->park_count && !atomic_load(&vdev->stop_requested))
		pthread_cond_wait(&vdev->park_cond, &vdev->park_lock);
	vdev->parked = false;
	pthread_mutex_unlock(&vdev->park_lock);
}

static void virtio_worker_result(struct virtio_device *vdev, int ret,
				 const char *what)
{
	char why[80];

	if (ret != -EIO)
		return;
	snprintf(why, sizeof(why), "%s broke the virtqueue rules", what);
	virtio_device_fail(vdev, why);
}

void virtio_device_wait_writable(struct virtio_device *vdev, int fd, unsigned q,
				 unsigned timeout_ms)
{
	vdev->out_wait_fd = fd;
	vdev->out_wait_queue = q;
	vdev->out_wait_deadline =
	    timeout_ms ? clock_now_ns(CLOCK_MONOTONIC) + timeout_ms * 1000000ull
		       : 0;
}

/* The poll timeout that ends an output wait with a deadline: -1 (none) or
 * the milliseconds left, rounded up so the wait never ends early. */
static int virtio_out_wait_timeout(const struct virtio_device *vdev)
{
	uint64_t now;

	if (vdev->out_wait_fd < 0 || !vdev->out_wait_deadline)
		return -1;
	now = clock_now_ns(CLOCK_MONOTONIC);
	if (now >= vdev->out_wait_deadline)
		return 0;
	return (int)((vdev->out_wait_deadline - now + 999999) / 1000000);
}

/* Waits for kicks, the device's extra fd, room for waiting output and
 * control requests; runs the device's callbacks one at a time, so between
 * two of them nothing is in flight: that is where it parks. */
static void *virtio_worker(void *arg)
{
	struct virtio_device *vdev = arg;
	unsigned nq = virtio_nq(vdev);

	if (seccomp_install(SECCOMP_ROLE_WORKER, vdev->vm->cfg.seccomp)) {
		vm_request_stop(vdev->vm, VM_STOP_CRASH, 0);
		return NULL;
	}
	while (!atomic_load(&vdev->stop_requested)) {
		struct pollfd pfd[VIRTIO_MAX_QUEUES + 3];
		nfds_t n = 0, extra = 0, out = 0;
		bool live = virtio_live(vdev);
		int timeout = -1;

		pfd[n++] =
		    (struct pollfd){ .fd = vdev->ctl_fd, .events = POLLIN };
		for (unsigned q = 0; q < nq; q++)
			pfd[n++] = (struct pollfd){ .fd = vdev->kick_fd[q],
						    .events = POLLIN };
		if (vdev->extra_fd >= 0 && live && !vdev->extra_fd_wait) {
			extra = n;
			pfd[n++] = (struct pollfd){ .fd = vdev->extra_fd,
						    .events = POLLIN };
		}
		if (vdev->out_wait_fd >= 0 && live) {
			out = n;
			pfd[n++] = (struct pollfd){ .fd = vdev->out_wait_fd,
						    .events = POLLOUT };
			timeout = virtio_out_wait_timeout(vdev);
		}
		if (poll(pfd, n, timeout) < 0) {
			if (errno != EINTR) {
				log_error("%s: poll: %s", vdev->name,
					  strerror(errno));
				break;
			}
			continue;
		}
		if (pfd[0].revents)
			virtio_eventfd_drain(vdev->ctl_fd);
		if (atomic_load(&vdev->stop_requested))
			break;
		/* Kicks that arrive meanwhile stay in their eventfds. */
		if (atomic_load(&vdev->park_requested)) {
			virtio_worker_park(vdev);
			continue;
		}
		for (unsigned q = 0; q < nq; q++) {
			if (!pfd[1 + q].revents)
				continue;
			virtio_eventfd_drain(vdev->kick_fd[q]);
			vdev->extra_fd_wait = false;
			if (virtio_live(vdev) &&
			    __atomic_load_n(&vdev->vq[q].enabled,
					    __ATOMIC_ACQUIRE))
				virtio_worker_result(
				    vdev, vdev->ops->queue_notify(vdev, q),
				    "the driver");
		}
		if (extra && pfd[extra].revents && vdev->ops->fd_ready &&
		    virtio_live(vdev)) {
			int ret = vdev->ops->fd_ready(vdev);

			if (ret == -EAGAIN)
				vdev->extra_fd_wait = true;
			virtio_worker_result(vdev, ret, "the driver");
		}
		/* Room for the waiting output (or an error to report), or
		 * its time is up: the device tries again. A kick above may
		 * have ended the wait already. */
		if (out && vdev->out_wait_fd >= 0 && virtio_live(vdev) &&
		    (pfd[out].revents || virtio_out_wait_timeout(vdev) == 0)) {
			unsigned q = vdev->out_wait_queue;

			vdev->out_wait_fd = -1;
			virtio_worker_result(vdev,
					     vdev->ops->queue_notify(vdev, q),
					     "the driver");
		}
	}
	/* Whoever waits for a park must not wait for a stopped worker. */
	pthread_mutex_lock(&vdev->park_lock);
	vdev->parked = true;
	pthread_cond_broadcast(&vdev->park_cond);
	pthread_mutex_unlock(&vdev->park_lock);
	return NULL;
}

int virtio_device_start(struct virtio_device *vdev)
{
	int ret;

	if (!vdev->created || vdev->worker_started)
		return 0;
	atomic_store(&vdev->stop_requested, false);
	ret = pthread_create(&vdev->worker, NULL, virtio_worker, vdev);
	if (ret) {
		log_error("%s: cannot start its worker thread: %s", vdev->name,
			  strerror(ret));
		return -ret;
	}
	vdev->worker_started = true;
	return 0;
}

void virtio_device_park(struct virtio_device *vdev)
{
	if (!vdev->created)
		return;
	pthread_mutex_lock(&vdev->park_lock);
	vdev->park_count++;
	atomic_store(&vdev->park_requested, true);
	if (vdev->worker_started &&
	    !pthread_equal(pthread_self(), vdev->worker)) {
		virtio_eventfd_signal(vdev->ctl_fd);
		while (!vdev->parked)
			pthread_cond_wait(&vdev->park_cond, &vdev->park_lock);
	}
	pthread_mutex_unlock(&vdev->park_lock);
}

void virtio_device_unpark(struct virtio_device *vdev)
{
	if (!vdev->created)
		return;
	pthread_mutex_lock(&vdev->park_lock);
	if (vdev->park_count && --vdev->park_count == 0) {
		atomic_store(&vdev->park_requested, false);
		pthread_cond_broadcast(&vdev->park_cond);
	}
	pthread_mutex_unlock(&vdev->park_lock);
}

static void virtio_worker_stop(struct virtio_device *vdev)
{
	if (!vdev->worker_started)
		return;
	pthread_mutex_lock(&vdev->park_lock);
	atomic_store(&vdev->stop_requested, true);
	pthread_cond_broadcast(&vdev->park_cond);
	pthread_mutex_unlock(&vdev->park_lock);
	virtio_eventfd_signal(vdev->ctl_fd);
	pthread_join(vdev->worker, NULL);
	vdev->worker_started = false;
	vdev->parked = false;
}

/* ---------------------------------------------------------- creation -- */

/* A virtio vendor capability (4.1.4) pointing into BAR 0. */
static int virtio_pci_add_cap(struct pci_device *dev, uint8_t type,
			      uint32_t off, uint32_t len, uint8_t cap_len)
{
	int o = pci_add_capability(dev, PCI_CAP_ID_VNDR, cap_len);

	if (o < 0)
		return o;
	dev->config[o + 2] = cap_len;
	dev->config[o + 3] = type;
	dev->config[o + 4] = VIRTIO_PCI_BAR;
	put_le(dev->config + o + 8, off, 4);
	put_le(dev->config + o + 12, len, 4);
	return o;
}

static int virtio_pci_setup_config(struct virtio_device *vdev, uint8_t slot)
{
	const struct virtio_device_ops *ops = vdev->ops;
	struct pci_device *dev = &vdev->pci;
	uint32_t class_code = 0xff0000, bar;
	int o;

	for (size_t i = 0;
	     i < sizeof(virtio_pci_classes) / sizeof(virtio_pci_classes[0]);
	     i++)
		if (virtio_pci_classes[i].device_id == ops->device_id)
			class_code = virtio_pci_classes[i].class_code;
	pci_device_init(dev, VIRTIO_PCI_VENDOR_ID,
			VIRTIO_PCI_DEVICE_ID_BASE + ops->device_id, class_code,
			VIRTIO_PCI_REVISION);
	/* 4.1.2.1: the subsystem device ID names the virtio device too. */
	put_le(dev->config + PCI_CFG_SUBSYS_VENDOR_ID, VIRTIO_PCI_VENDOR_ID, 2);
	put_le(dev->config + PCI_CFG_SUBSYS_ID, ops->device_id, 2);
	dev->config[PCI_CFG_INT_PIN] = PCI_INT_PIN_A;
	dev->config[PCI_CFG_INT_LINE] = (uint8_t)vdev->intx_gsi;

	bar = pci_host_alloc_bar(&vdev->vm->pci, VIRTIO_PCI_BAR_SIZE);
	if (!bar ||
	    pci_device_set_bar(dev, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, bar))
		return -ENOSPC;

	o = virtio_pci_add_cap(dev, VIRTIO_PCI_CAP_COMMON_CFG,
			       VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN,
			       VIRTIO_PCI_CAP_LEN);
	if (o >= 0)
		o = virtio_pci_add_cap(dev, VIRTIO_PCI_CAP_ISR_CFG,
				       VIRTIO_PCI_ISR_OFF, VIRTIO_PCI_ISR_LEN,
				       VIRTIO_PCI_CAP_LEN);
	if (o >= 0 && ops->config_len)
		o = virtio_pci_add_cap(dev, VIRTIO_PCI_CAP_DEVICE_CFG,
				       VIRTIO_PCI_DEVICE_OFF, ops->config_len,
				       VIRTIO_PCI_CAP_LEN);
	if (o >= 0) {
		o = virtio_pci_add_cap(dev, VIRTIO_PCI_CAP_NOTIFY_CFG,
				       VIRTIO_PCI_NOTIFY_OFF,
				       VIRTIO_PCI_NOTIFY_MULT * virtio_nq(vdev),
				       VIRTIO_PCI_NOTIFY_CAP_LEN);
		if (o >= 0) {
			vdev->notify_cap = (uint8_t)o;
			put_le(dev->config + o + 16, VIRTIO_PCI_NOTIFY_MULT, 4);
		}
	}
	if (o >= 0) {
		/* 4.1.4.9: bar, offset, length and data are the driver's. */
		o = virtio_pci_add_cap(dev, VIRTIO_PCI_CAP_PCI_CFG, 0, 0,
				       PCICFG_CAP_LEN);
		if (o >= 0) {
			vdev->pcicfg_cap = (uint8_t)o;
			dev->wmask[o + PCICFG_BAR] = 0xff;
			memset(dev->wmask + o + PCICFG_OFFSET, 0xff,
			       PCICFG_CAP_LEN - PCICFG_OFFSET);
		}
	}
	if (o >= 0) {
		/* PCI 3.0, 6.8.2: table size - 1; table and PBA in BAR 0. */
		o = pci_add_capability(dev, PCI_CAP_ID_MSIX, PCI_MSIX_CAP_LEN);
		if (o >= 0) {
			vdev->msix_cap = (uint8_t)o;
			put_le(dev->config + o + 2, vdev->nvectors - 1u, 2);
			put_le(dev->config + o + 4,
			       VIRTIO_PCI_MSIX_TABLE_OFF | VIRTIO_PCI_BAR, 4);
			put_le(dev->config + o + 8,
			       VIRTIO_PCI_MSIX_PBA_OFF | VIRTIO_PCI_BAR, 4);
			dev->wmask[o + 3] =
			    (PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_MASKALL) >> 8;
		}
	}
	if (o < 0)
		return o;
	(void)slot;
	dev->bar_remap = virtio_pci_bar_remap;
	dev->config_written = virtio_pci_config_written;
	dev->config_read = virtio_pcicfg_read;
	dev->opaque = vdev;
	return 0;
}

static int virtio_open_fds(struct virtio_device *vdev)
{
	int flags = EFD_CLOEXEC | EFD_NONBLOCK;

	vdev->ctl_fd = eventfd(0, flags);
	if (vdev->ctl_fd < 0)
		return -errno;
	for (unsigned q = 0; q < virtio_nq(vdev); q++) {
		vdev->kick_fd[q] = eventfd(0, flags);
		if (vdev->kick_fd[q] < 0)
			return -errno;
	}
	for (unsigned v = 0; v < vdev->nvectors; v++) {
		int ret;

		vdev->irq_fd[v] = eventfd(0, flags);
		if (vdev->irq_fd[v] < 0)
			return -errno;
		ret = irq_routing_alloc_msi(&vdev->vm->irq_routing,
					    &vdev->gsi[v]);
		if (ret)
			return ret;
		/* An irqfd on a GSI without a route yet injects nothing
		 * until the route is set; we never signal it before. */
		vdev->irq_assigned[v] =
		    irq_routing_irqfd(vdev->vm->vm_fd, vdev->irq_fd[v],
				      vdev->gsi[v], true) == 0;
	}
	return 0;
}

static void virtio_close_fds(struct virtio_device *vdev)
{
	for (unsigned v = 0; v < VIRTIO_MAX_VECTORS; v++) {
		if (vdev->irq_assigned[v])
			irq_routing_irqfd(vdev->vm->vm_fd, vdev->irq_fd[v],
					  vdev->gsi[v], false);
		vdev->irq_assigned[v] = false;
		if (vdev->irq_fd[v] >= 0)
			close(vdev->irq_fd[v]);
		vdev->irq_fd[v] = -1;
	}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (vdev->kick_fd[q] >= 0)
			close(vdev->kick_fd[q]);
		vdev->kick_fd[q] = -1;
	}
	if (vdev->ctl_fd >= 0)
		close(vdev->ctl_fd);
	vdev->ctl_fd = -1;
}

int virtio_device_create(struct virtio_device *vdev, struct vm *vm,
			 const struct virtio_device_ops *ops, void *priv,
			 const char *name, uint8_t slot)
{
	pthread_mutexattr_t attr;
	int ret;

	memset(vdev, 0, sizeof(*vdev));
	vdev->ctl_fd = vdev->extra_fd = vdev->out_wait_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vdev->kick_fd[q] = -1;
	for (unsigned v = 0; v < VIRTIO_MAX_VECTORS; v++)
		vdev->irq_fd[v] = -1;
	if (!ops->num_queues || ops->num_queues > VIRTIO_MAX_QUEUES ||
	    ops->config_len > VIRTIO_PCI_DEVICE_MAX || !ops->queue_notify ||
	    slot == 0 || slot >= PCI_NUM_SLOTS) {
		log_error("%s: invalid virtio device setup", name);
		return -EINVAL;
	}
	vdev->ops = ops;
	vdev->priv = priv;
	vdev->vm = vm;
	snprintf(vdev->name, sizeof(vdev->name), "%s", name);
	vdev->num_queues = ops->num_queues;
	vdev->nvectors = ops->num_queues + 1;
	vdev->intx_gsi = VIRTIO_PCI_INTX_GSI(slot);
	vdev->device_features = (ops->features ? ops->features(vdev) : 0) |
				VIRTIO_TRANSPORT_FEATURES;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vdev->vq[q].mem = &vm->mem;
	virtio_reset_locked(vdev); /* no lock yet: nobody else sees it */
	for (unsigned v = 0; v < vdev->nvectors; v++)
		msix_entry(vdev, v)[3] = PCI_MSIX_ENTRY_MASKED;

	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	ret = -pthread_mutex_init(&vdev->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (ret)
		goto err;
	pthread_mutex_init(&vdev->park_lock, NULL);
	pthread_cond_init(&vdev->park_cond, NULL);
	atomic_init(&vdev->park_requested, false);
	atomic_init(&vdev->stop_requested, false);

	ret = virtio_pci_setup_config(vdev, slot);
	if (!ret)
		ret = virtio_open_fds(vdev);
	if (!ret)
		ret = pci_add_device(&vm->pci, &vdev->pci, slot);
	if (ret)
		goto err_fds;
	vdev->created = true;
	return 0;

err_fds:
	virtio_close_fds(vdev);
	pthread_cond_destroy(&vdev->park_cond);
	pthread_mutex_destroy(&vdev->park_lock);
	pthread_mutex_destroy(&vdev->lock);
err:
	log_error("%s: cannot create the virtio-pci device in slot %u: %s",
		  name, slot, strerror(-ret));
	return ret;
}

int virtio_device_set_queues(struct virtio_device *vdev, unsigned nq)
{
	struct pci_device *dev = &vdev->pci;

	if (!vdev->created || vdev->worker_started || !nq ||
	    nq > vdev->ops->num_queues)
		return -EINVAL;
	pthread_mutex_lock(&vdev->lock);
	vdev->num_queues = (uint16_t)nq;
	vdev->nvectors = (uint16_t)(nq + 1);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		virtq_reset(&vdev->vq[q], q < nq);
	for (unsigned v = 0; v < VIRTIO_MAX_VECTORS; v++)
		memset(msix_entry(vdev, v), 0, 4 * sizeof(uint32_t));
	for (unsigned v = 0; v < vdev->nvectors; v++)
		msix_entry(vdev, v)[3] = PCI_MSIX_ENTRY_MASKED;
	vdev->msix_pba = 0;
	/* Read-only config space: what a restored config is checked
	 * against (config_init) changes with it. */
	put_le(dev->config + vdev->msix_cap + 2, vdev->nvectors - 1u, 2);
	put_le(dev->config_init + vdev->msix_cap + 2, vdev->nvectors - 1u, 2);
	put_le(dev->config + vdev->notify_cap + 12, VIRTIO_PCI_NOTIFY_MULT * nq,
	       4);
	put_le(dev->config_init + vdev->notify_cap + 12,
	       VIRTIO_PCI_NOTIFY_MULT * nq, 4);
	vdev->device_features =
	    (vdev->ops->features ? vdev->ops->features(vdev) : 0) |
	    VIRTIO_TRANSPORT_FEATURES;
	pthread_mutex_unlock(&vdev->lock);
	return 0;
}

void virtio_device_destroy(struct virtio_device *vdev)
{
	if (!vdev->created)
		return;
	virtio_worker_stop(vdev);
	if (vdev->bar_addr)
		virtio_unmap_bar(vdev, vdev->bar_addr);
	vdev->bar_addr = 0;
	if (vdev->ops->destroy)
		vdev->ops->destroy(vdev);
	virtio_close_fds(vdev);
	pthread_cond_destroy(&vdev->park_cond);
	pthread_mutex_destroy(&vdev->park_lock);
	pthread_mutex_destroy(&vdev->lock);
	vdev->created = false;
}

/* ---------------------------------------------------------- snapshot -- */

/* The saved transport state is read from a file: whatever it says must be
 * a state the guest could have reached on this device. */
static int virtio_pci_validate(const void *obj)
{
	const struct virtio_device *vdev = obj;
	unsigned nq = virtio_nq(vdev);

	if (vdev->status &
		~(VIRTIO_STATUS_DRIVER_BITS | VIRTIO_STATUS_NEEDS_RESET) ||
	    vdev->isr & ~(VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG) ||
	    vdev->driver_features & ~vdev->device_features)
		return -EINVAL;
	if (vdev->config_msix_vector != VIRTIO_MSI_NO_VECTOR &&
	    vdev->config_msix_vector >= vdev->nvectors)
		return -EINVAL;
	if (vdev->nvectors < 64 && (vdev->msix_pba >> vdev->nvectors))
		return -EINVAL;
	for (unsigned v = 0; v < VIRTIO_MAX_VECTORS; v++) {
		const uint32_t *e = &vdev->msix_table[4 * v];

		if (e[3] & ~PCI_MSIX_ENTRY_MASKED)
			return -EINVAL;
		if (v >= vdev->nvectors && (e[0] | e[1] | e[2] | e[3]))
			return -EINVAL;
	}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		const struct virtq *vq = &vdev->vq[q];

		if (q >= nq) {
			if (vq->size || vq->enabled)
				return -EINVAL;
			continue;
		}
		if (!is_pow2(vq->size) || vq->size > VIRTQ_MAX_SIZE)
			return -EINVAL;
		if (vq->msix_vector != VIRTIO_MSI_NO_VECTOR &&
		    vq->msix_vector >= vdev->nvectors)
			return -EINVAL;
		/* The same checks as at queue_enable: the rings are in this
		 * VM's RAM. */
		if (vq->enabled && virtq_check(vq))
			return -EINVAL;
	}
	return 0;
}

#define VQ_FIELDS(i)                                                  \
	STATE_U16(struct virtio_device, vq[i].size, 1),               \
	    STATE_BOOL(struct virtio_device, vq[i].enabled, 1),       \
	    STATE_U16(struct virtio_device, vq[i].msix_vector, 1),    \
	    STATE_U64(struct virtio_device, vq[i].desc_gpa, 1),       \
	    STATE_U64(struct virtio_device, vq[i].avail_gpa, 1),      \
	    STATE_U64(struct virtio_device, vq[i].used_gpa, 1),       \
	    STATE_U16(struct virtio_device, vq[i].last_avail, 1),     \
	    STATE_U16(struct virtio_device, vq[i].used_idx, 1),       \
	    STATE_U16(struct virtio_device, vq[i].signalled_used, 1), \
	    STATE_BOOL(struct virtio_device, vq[i].signalled_used_valid, 1)

_Static_assert(VIRTIO_MAX_QUEUES == 8, "one VQ_FIELDS line per queue");

static const struct state_field virtio_pci_state_fields[] = {
	STATE_U8(struct virtio_device, status, 1),
	STATE_U32(struct virtio_device, device_feature_select, 1),
	STATE_U32(struct virtio_device, driver_feature_select, 1),
	STATE_U64(struct virtio_device, driver_features, 1),
	STATE_U16(struct virtio_device, queue_select, 1),
	STATE_U16(struct virtio_device, config_msix_vector, 1),
	STATE_U8(struct virtio_device, isr, 1),
	STATE_U8(struct virtio_device, config_generation, 1),
	VQ_FIELDS(0),
	VQ_FIELDS(1),
	VQ_FIELDS(2),
	VQ_FIELDS(3),
	VQ_FIELDS(4),
	VQ_FIELDS(5),
	VQ_FIELDS(6),
	VQ_FIELDS(7),
	STATE_U32_ARRAY(struct virtio_device, msix_table, 1),
	STATE_U64(struct virtio_device, msix_pba, 1),
	STATE_BOOL(struct virtio_device, msix_enabled, 1),
	STATE_BOOL(struct virtio_device, msix_masked, 1),
};

const struct state_desc virtio_pci_state_desc = {
	.name = "virtio-pci",
	.version = 1,
	.min_version = 1,
	.fields = virtio_pci_state_fields,
	.nfields = STATE_NFIELDS(virtio_pci_state_fields),
	.validate = virtio_pci_validate,
};

int virtio_device_post_load(struct virtio_device *vdev, char *err,
			    size_t errlen)
{
	uint16_t ctrl;
	int ret;

	pthread_mutex_lock(&vdev->lock);
	/* The capability in config space is what the guest wrote last. */
	ctrl = (uint16_t)get_le(vdev->pci.config + vdev->msix_cap + 2, 2);
	vdev->msix_enabled = ctrl & PCI_MSIX_CTRL_ENABLE;
	vdev->msix_masked = ctrl & PCI_MSIX_CTRL_MASKALL;
	if (vdev->status & VIRTIO_STATUS_FEATURES_OK)
		virtio_apply_features(vdev);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vdev->vq[q].mem = &vdev->vm->mem;
	vdev->extra_fd_wait = false;
	vdev->out_wait_fd = -1; /* the queue is looked at below */
	/* Routes and lines as the restored registers say; pending vectors
	 * that are deliverable now are sent. */
	for (unsigned v = 0; v < vdev->nvectors; v++) {
		vdev->route_valid[v] = false;
		virtio_msix_update(vdev, v);
	}
	vdev->intx_level = false;
	virtio_intx_update(vdev);
	/* Kicks in flight at the snapshot are lost with their eventfds:
	 * make the worker look at every enabled queue once. */
	if (virtio_live(vdev))
		virtio_kick_all(vdev);
	pthread_mutex_unlock(&vdev->lock);
	/* BAR 0's MMIO range and ioeventfds, where the guest put it. */
	ret = pci_device_post_load(&vdev->pci);
	if (ret) {
		snprintf(err, errlen, "cannot map BAR 0: %s", strerror(-ret));
		return ret;
	}
	if (vdev->ops->post_load)
		ret = vdev->ops->post_load(vdev, err, errlen);
	return ret;
}
