/* virtio.c - a small modern virtio-pci driver for the test guests, in ring
 * 3: capability discovery, feature negotiation, MSI-X vectors and split
 * virtqueues with indirect descriptors and event index. Section numbers
 * are those of the virtio 1.2 specification. */
#include "runtime.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_MODERN_BASE 0x1040 /* 4.1.2.1: 0x1040 + device type */
#define VIRTIO_PCI_TRANS_FIRST 0x1000 /* transitional: subsystem = type */
#define VIRTIO_PCI_TRANS_LAST 0x103f

/* virtio_pci_cap (4.1.4) field offsets and cfg_type values. */
#define CAP_CFG_TYPE 3
#define CAP_BAR 4
#define CAP_OFFSET 8
#define CAP_LENGTH 12
#define CAP_NOTIFY_MULT 16
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4

/* virtio_pci_common_cfg (4.1.4.3). */
#define COMMON_DFSELECT 0
#define COMMON_DF 4
#define COMMON_GFSELECT 8
#define COMMON_GF 12
#define COMMON_MSIX 16
#define COMMON_NUMQ 18
#define COMMON_STATUS 20
#define COMMON_CFGGEN 21
#define COMMON_Q_SELECT 22
#define COMMON_Q_SIZE 24
#define COMMON_Q_MSIX 26
#define COMMON_Q_ENABLE 28
#define COMMON_Q_NOFF 30
#define COMMON_Q_DESC 32
#define COMMON_Q_DRIVER 40
#define COMMON_Q_DEVICE 48
#define COMMON_LEN 56 /* what we use of it */

/* Device status (2.1). */
#define STATUS_ACKNOWLEDGE 0x01
#define STATUS_DRIVER 0x02
#define STATUS_DRIVER_OK 0x04
#define STATUS_FEATURES_OK 0x08
#define STATUS_NEEDS_RESET 0x40
#define STATUS_FAILED 0x80

/* MSI-X capability (PCI 3.0 6.8.2) and its table entries. */
#define MSIX_CONTROL 2
#define MSIX_TABLE 4
#define MSIX_CTL_ENABLE 0x8000
#define MSIX_CTL_MASKALL 0x4000
#define MSIX_CTL_SIZE 0x07ff
#define MSIX_ENTRY_SIZE 16
#define MSI_ADDRESS_BASE 0xfee00000u /* SDM vol. 3A 11.11.1 */

/* Split ring flags (2.7.7, 2.7.10). */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* I/O APIC (82093AA data sheet 3.0): index at 0, data at 0x10. */
#define IOAPIC_INDEX 0x00
#define IOAPIC_DATA 0x10
#define IOAPIC_REDIR 0x10 /* entry n: registers 0x10 + 2n, + 2n + 1 */
#define IOAPIC_ACTIVE_LOW (1u << 13)
#define MADT_POLARITY_MASK 0x3 /* MPS INTI flags (ACPI 6.5 5.2.12.5) */
#define MADT_POLARITY_LOW 0x3

#define RESET_POLLS 1000000
#define STATUS_CHECK_POLLS 1024 /* polls between NEEDS_RESET checks */

static uint8_t status_read(const struct guest_virtio_dev *dev)
{
	return guest_mmio_read8(dev->common + COMMON_STATUS);
}

static void status_set(struct guest_virtio_dev *dev, uint8_t bits)
{
	guest_mmio_write8(dev->common + COMMON_STATUS, status_read(dev) | bits);
}

static void ioapic_write(uint64_t base, uint32_t reg, uint32_t v)
{
	guest_mmio_write32(base + IOAPIC_INDEX, reg);
	guest_mmio_write32(base + IOAPIC_DATA, v);
}

static bool is_virtio(const struct guest_pci_dev *d, uint16_t type)
{
	if (d->vendor != VIRTIO_PCI_VENDOR)
		return false;
	if (d->device == VIRTIO_PCI_MODERN_BASE + type)
		return true;
	return d->device >= VIRTIO_PCI_TRANS_FIRST &&
	       d->device <= VIRTIO_PCI_TRANS_LAST && d->subsys_device == type;
}

/* The MMIO address of a capability's structure, or 0 if it does not lie
 * inside an assigned memory BAR (4.1.4.1: the driver ignores those). */
static uint64_t cap_address(const struct guest_pci_dev *d, unsigned int cap,
			    uint32_t *length)
{
	uint8_t bar = guest_pci_read8(d, cap + CAP_BAR);
	uint32_t off = guest_pci_read32(d, cap + CAP_OFFSET);
	const struct guest_pci_bar *b;

	*length = guest_pci_read32(d, cap + CAP_LENGTH);
	if (bar >= GUEST_PCI_BARS)
		return 0;
	b = &d->bar[bar];
	if (b->io || !b->addr || !b->size || off > b->size ||
	    *length > b->size - off)
		return 0;
	return b->addr + off;
}

static int caps_locate(struct guest_virtio_dev *dev)
{
	const struct guest_pci_dev *d = dev->pci;
	unsigned int cap = 0;
	uint32_t len;
	uint64_t addr;

	while ((cap = guest_pci_find_cap(d, GUEST_PCI_CAP_VENDOR, cap))) {
		uint8_t type = guest_pci_read8(d, cap + CAP_CFG_TYPE);

		addr = cap_address(d, cap, &len);
		if (!addr)
			continue;
		/* 4.1.4: use the first instance of each structure. */
		if (type == CAP_COMMON && !dev->common && len >= COMMON_LEN) {
			dev->common = addr;
		} else if (type == CAP_NOTIFY && !dev->notify_base) {
			dev->notify_base = addr;
			dev->notify_mult =
			    guest_pci_read32(d, cap + CAP_NOTIFY_MULT);
		} else if (type == CAP_ISR && !dev->isr && len >= 1) {
			dev->isr = addr;
		} else if (type == CAP_DEVICE && !dev->device_cfg) {
			dev->device_cfg = addr;
			dev->device_cfg_len = len;
		}
	}
	if (!dev->common || !dev->notify_base || !dev->isr) {
		guest_printf("guest: virtio %02x.%x lacks a common, notify or "
			     "ISR structure\n",
			     d->slot, d->func);
		return -1;
	}
	dev->msix_cap = guest_pci_find_cap(d, GUEST_PCI_CAP_MSIX, 0);
	if (dev->msix_cap) {
		uint32_t t = guest_pci_read32(d, dev->msix_cap + MSIX_TABLE);
		const struct guest_pci_bar *b = &d->bar[t & 7];

		dev->msix_entries =
		    (guest_pci_read16(d, dev->msix_cap + MSIX_CONTROL) &
		     MSIX_CTL_SIZE) +
		    1;
		if ((t & 7) >= GUEST_PCI_BARS || b->io || !b->addr ||
		    (t & ~7u) + (uint64_t)dev->msix_entries * MSIX_ENTRY_SIZE >
			b->size)
			dev->msix_cap = 0; /* unusable: poll */
		else
			dev->msix_table = b->addr + (t & ~7u);
	}
	return 0;
}

int guest_virtio_find(uint16_t type, unsigned int index,
		      struct guest_virtio_dev *dev)
{
	unsigned int i, n = guest_pci_scan(), seen = 0;

	memset(dev, 0, sizeof(*dev));
	dev->config_vector = GUEST_VIRTIO_NO_VECTOR;
	for (i = 0; i < n; i++) {
		struct guest_pci_dev *d = guest_pci_dev(i);

		if (!is_virtio(d, type) || seen++ != index)
			continue;
		dev->pci = d;
		dev->type = type;
		if (caps_locate(dev))
			return -1;
		guest_pci_enable(d, dev->msix_cap != 0);
		return 0;
	}
	guest_printf("guest: no virtio device of type %u (index %u)\n", type,
		     index);
	return -1;
}

/* Points MSI-X table entry @entry at a fresh device vector on this CPU;
 * returns the vector number for the device (the entry) or NO_VECTOR. */
static uint16_t msix_entry_claim(struct guest_virtio_dev *dev, uint16_t entry,
				 unsigned int *slot)
{
	uint64_t e;

	if (!dev->msix_on || entry >= dev->msix_entries ||
	    guest_kit.irq_slots_used >= GUEST_DEVICE_VECTORS)
		return GUEST_VIRTIO_NO_VECTOR;
	*slot = guest_kit.irq_slots_used++;
	e = dev->msix_table + (uint64_t)entry * MSIX_ENTRY_SIZE;
	/* Fixed delivery, edge, physical destination (SDM vol. 3A 11.11). */
	guest_mmio_write32(e, MSI_ADDRESS_BASE | guest_lapic_id() << 12);
	guest_mmio_write32(e + 4, 0);
	guest_mmio_write32(e + 8, GUEST_VEC_DEVICE + *slot);
	guest_mmio_write32(e + 12, 0); /* unmasked */
	return entry;
}

static void msix_enable(struct guest_virtio_dev *dev)
{
	const struct guest_pci_dev *d = dev->pci;
	unsigned int slot;
	uint16_t ctl, v;

	if (!dev->msix_cap)
		return;
	guest_lapic_init_local(); /* the LAPIC must accept the vectors */
	ctl = guest_pci_read16(d, dev->msix_cap + MSIX_CONTROL);
	guest_pci_write16(d, dev->msix_cap + MSIX_CONTROL,
			  (ctl | MSIX_CTL_ENABLE) & ~MSIX_CTL_MASKALL);
	dev->msix_on = true;
	v = msix_entry_claim(dev, 0, &slot);
	if (v == GUEST_VIRTIO_NO_VECTOR)
		return;
	/* 4.1.5.1.2: the device answers NO_VECTOR if it cannot map it. */
	guest_mmio_write16(dev->common + COMMON_MSIX, v);
	if (guest_mmio_read16(dev->common + COMMON_MSIX) == v) {
		dev->config_vector = v;
		dev->config_irq_slot = slot;
	}
}

/*
 * INTx (4.1.5.3): the function's interrupt line, routed through the I/O
 * APIC to a device vector, edge-triggered on purpose. The line rises when
 * the device sets the ISR and falls when the driver reads it, so a waiter
 * reads the ISR before each look at its queues: a completion after that
 * read raises the line again and makes a new edge, one before it is seen
 * by the look. No level-triggered handler is needed in ring 0.
 */
int guest_irq_route_line(unsigned int line, unsigned int *slot)
{
	uint64_t ioapic;
	unsigned int pin;
	uint16_t flags;
	uint32_t low;

	if (guest_acpi_gsi(line, &ioapic, &pin, &flags) ||
	    guest_kit.irq_slots_used >= GUEST_DEVICE_VECTORS)
		return -1;
	*slot = guest_kit.irq_slots_used++;
	guest_lapic_init_local();
	/* Redirection entry (82093AA data sheet 3.2.4): fixed, physical
	 * destination, edge; active low only if the MADT says so. */
	low = GUEST_VEC_DEVICE + *slot;
	if ((flags & MADT_POLARITY_MASK) == MADT_POLARITY_LOW)
		low |= IOAPIC_ACTIVE_LOW;
	ioapic_write(ioapic, IOAPIC_REDIR + 2 * pin + 1,
		     guest_lapic_id() << 24);
	ioapic_write(ioapic, IOAPIC_REDIR + 2 * pin, low);
	return 0;
}

static int intx_enable(struct guest_virtio_dev *dev)
{
	const struct guest_pci_dev *d = dev->pci;

	/* Line 0 or 0xff: nobody routed it (PCI 3.0 6.2.4). */
	if (!d->irq_pin || !d->irq_line || d->irq_line == 0xff ||
	    guest_irq_route_line(d->irq_line, &dev->intx_slot))
		return -1;
	guest_pci_enable(d, false);
	dev->intx = true;
	return 0;
}

uint64_t guest_virtio_arg_features(struct guest_virtio_dev *dev)
{
	uint64_t f = 0;

	if (guest_arg_u64("event_idx", 1))
		f |= 1ull << GUEST_VIRTIO_F_EVENT_IDX;
	if (guest_arg_u64("indirect", 1))
		f |= 1ull << GUEST_VIRTIO_F_INDIRECT_DESC;
	dev->force_intx = guest_arg_is("irq", "intx");
	dev->wait_irq = dev->force_intx || guest_arg_is("irq", "wait");
	return f;
}

int guest_virtio_init(struct guest_virtio_dev *dev, uint64_t wanted)
{
	uint64_t c = dev->common;
	unsigned int polls = 0;

	/* 3.1.1: reset, then wait until the device shows it is done. */
	guest_mmio_write8(c + COMMON_STATUS, 0);
	while (status_read(dev) != 0) {
		if (++polls > RESET_POLLS) {
			guest_printf("guest: virtio device does not reset\n");
			return -1;
		}
		guest_pause();
	}
	status_set(dev, STATUS_ACKNOWLEDGE);
	status_set(dev, STATUS_DRIVER);
	guest_mmio_write32(c + COMMON_DFSELECT, 0);
	dev->offered = guest_mmio_read32(c + COMMON_DF);
	guest_mmio_write32(c + COMMON_DFSELECT, 1);
	dev->offered |= (uint64_t)guest_mmio_read32(c + COMMON_DF) << 32;
	if (!(dev->offered & (1ull << GUEST_VIRTIO_F_VERSION_1))) {
		guest_printf("guest: virtio device lacks VERSION_1\n");
		goto failed;
	}
	dev->features =
	    dev->offered & (wanted | 1ull << GUEST_VIRTIO_F_VERSION_1);
	guest_mmio_write32(c + COMMON_GFSELECT, 0);
	guest_mmio_write32(c + COMMON_GF, (uint32_t)dev->features);
	guest_mmio_write32(c + COMMON_GFSELECT, 1);
	guest_mmio_write32(c + COMMON_GF, (uint32_t)(dev->features >> 32));
	status_set(dev, STATUS_FEATURES_OK);
	if (!(status_read(dev) & STATUS_FEATURES_OK)) {
		guest_printf("guest: virtio device refused features 0x%lx\n",
			     dev->features);
		goto failed;
	}
	if (dev->msix_cap && !dev->force_intx)
		msix_enable(dev);
	else if (dev->wait_irq && intx_enable(dev))
		guest_printf("guest: virtio %02x.%x: no INTx route, polling\n",
			     dev->pci->slot, dev->pci->func);
	/* irq=wait: a slow timer so a timeout can fire while we sleep. */
	if (dev->wait_irq && guest_timer_start(100))
		dev->wait_irq = false;
	return 0;
failed:
	status_set(dev, STATUS_FAILED);
	return -1;
}

bool guest_virtio_has(const struct guest_virtio_dev *dev, unsigned int bit)
{
	return dev->features & (1ull << bit);
}

void guest_virtio_driver_ok(struct guest_virtio_dev *dev)
{
	status_set(dev, STATUS_DRIVER_OK);
}

bool guest_virtio_needs_reset(const struct guest_virtio_dev *dev)
{
	return status_read(dev) & (STATUS_NEEDS_RESET | STATUS_FAILED);
}

uint8_t guest_virtio_cfg8(const struct guest_virtio_dev *dev, unsigned int off)
{
	return off + 1 <= dev->device_cfg_len
		   ? guest_mmio_read8(dev->device_cfg + off)
		   : 0;
}

uint16_t guest_virtio_cfg16(const struct guest_virtio_dev *dev,
			    unsigned int off)
{
	return off + 2 <= dev->device_cfg_len
		   ? guest_mmio_read16(dev->device_cfg + off)
		   : 0;
}

uint32_t guest_virtio_cfg32(const struct guest_virtio_dev *dev,
			    unsigned int off)
{
	return off + 4 <= dev->device_cfg_len
		   ? guest_mmio_read32(dev->device_cfg + off)
		   : 0;
}

/* 2.5.1 / 4.1.3.1: a 64-bit field is read as two 32-bit halves, retried
 * until config_generation says no change happened in between. */
uint64_t guest_virtio_cfg64(const struct guest_virtio_dev *dev,
			    unsigned int off)
{
	uint8_t gen;
	uint64_t v;

	if (off + 8 > dev->device_cfg_len)
		return 0;
	do {
		gen = guest_mmio_read8(dev->common + COMMON_CFGGEN);
		v = guest_mmio_read32(dev->device_cfg + off);
		v |= (uint64_t)guest_mmio_read32(dev->device_cfg + off + 4)
		     << 32;
	} while (gen != guest_mmio_read8(dev->common + COMMON_CFGGEN));
	return v;
}

static void write64(uint64_t addr, uint64_t v)
{
	guest_mmio_write32(addr, (uint32_t)v);
	guest_mmio_write32(addr + 4, (uint32_t)(v >> 32));
}

static void *zalloc(uint64_t size)
{
	void *p = guest_alloc(size, 4096);

	if (p)
		memset(p, 0, size);
	return p;
}

int guest_virtq_setup(struct guest_virtio_dev *dev, unsigned int q,
		      uint16_t max_size)
{
	struct guest_virtq *vq = &dev->vq[q];
	uint64_t c = dev->common;
	uint16_t size, i, v;
	unsigned int slot = 0;

	if (q >= GUEST_VIRTIO_MAX_QUEUES ||
	    q >= guest_mmio_read16(c + COMMON_NUMQ)) {
		guest_printf("guest: virtio queue %u does not exist\n", q);
		return -1;
	}
	guest_mmio_write16(c + COMMON_Q_SELECT, q);
	size = guest_mmio_read16(c + COMMON_Q_SIZE);
	if (!size) {
		guest_printf("guest: virtio queue %u is not available\n", q);
		return -1;
	}
	if (max_size && size > max_size)
		size = max_size;
	/* Keep a power of two: 2.7 requires one for split queues. */
	while (size & (size - 1))
		size &= size - 1;

	memset(vq, 0, sizeof(*vq));
	vq->dev = dev;
	vq->index = q;
	vq->size = size;
	vq->desc = zalloc(16ull * size);
	vq->avail = zalloc(6 + 2ull * size);
	vq->used = zalloc(6 + 8ull * size);
	vq->tokens = zalloc(sizeof(void *) * size);
	vq->use_indirect = guest_virtio_has(dev, GUEST_VIRTIO_F_INDIRECT_DESC);
	if (vq->use_indirect)
		vq->indirect = zalloc(16ull * GUEST_VIRTQ_MAX_SEGS * size);
	if (!vq->desc || !vq->avail || !vq->used || !vq->tokens ||
	    (vq->use_indirect && !vq->indirect)) {
		guest_printf("guest: no memory for virtio queue %u\n", q);
		return -1;
	}
	for (i = 0; i < size; i++)
		vq->desc[i].next = i + 1;
	vq->num_free = size;
	/* Poll mode: no interrupts wanted (2.7.7); event idx ignores the
	 * flag and gets used_event only when waiting (2.7.10). */
	if (!dev->wait_irq)
		vq->avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;

	guest_mmio_write16(c + COMMON_Q_SIZE, size);
	write64(c + COMMON_Q_DESC, (uint64_t)(uintptr_t)vq->desc);
	write64(c + COMMON_Q_DRIVER, (uint64_t)(uintptr_t)vq->avail);
	write64(c + COMMON_Q_DEVICE, (uint64_t)(uintptr_t)vq->used);
	vq->vector = GUEST_VIRTIO_NO_VECTOR;
	v = msix_entry_claim(dev, 1 + q, &slot);
	if (v != GUEST_VIRTIO_NO_VECTOR) {
		guest_mmio_write16(c + COMMON_Q_MSIX, v);
		if (guest_mmio_read16(c + COMMON_Q_MSIX) == v) {
			vq->vector = v;
			vq->irq_slot = slot;
		}
	}
	vq->notify_addr =
	    dev->notify_base +
	    (uint64_t)guest_mmio_read16(c + COMMON_Q_NOFF) * dev->notify_mult;
	guest_mmio_write16(c + COMMON_Q_ENABLE, 1);
	if (q >= dev->nqueues)
		dev->nqueues = q + 1;
	return 0;
}

uint64_t guest_virtio_config_irqs(const struct guest_virtio_dev *dev)
{
	if (dev->intx)
		return guest_irq_counts[dev->intx_slot];
	return dev->config_vector == GUEST_VIRTIO_NO_VECTOR
		   ? 0
		   : guest_irq_counts[dev->config_irq_slot];
}

uint64_t guest_virtq_irqs(const struct guest_virtq *vq)
{
	if (vq->dev->intx)
		return guest_irq_counts[vq->dev->intx_slot];
	return vq->vector == GUEST_VIRTIO_NO_VECTOR
		   ? 0
		   : guest_irq_counts[vq->irq_slot];
}

static uint16_t desc_take(struct guest_virtq *vq)
{
	uint16_t d = vq->free_head;

	vq->free_head = vq->desc[d].next;
	vq->num_free--;
	return d;
}

int guest_virtq_add(struct guest_virtq *vq, const struct guest_vbuf *bufs,
		    unsigned int n, void *token)
{
	bool indirect = vq->use_indirect && n > 1;
	unsigned int need = indirect ? 1 : n, i;
	uint16_t head, d, prev = 0;

	if (!n || n > GUEST_VIRTQ_MAX_SEGS || need > vq->num_free || !token)
		return -1;
	head = desc_take(vq);
	if (indirect) {
		/* 2.7.5.3: one descriptor points at a table of n. */
		struct guest_virtq_desc *t =
		    &vq->indirect[(unsigned int)head * GUEST_VIRTQ_MAX_SEGS];

		for (i = 0; i < n; i++) {
			t[i].addr = (uint64_t)(uintptr_t)bufs[i].addr;
			t[i].len = bufs[i].len;
			t[i].flags =
			    (bufs[i].writable ? GUEST_VIRTQ_DESC_F_WRITE : 0) |
			    (i + 1 < n ? GUEST_VIRTQ_DESC_F_NEXT : 0);
			t[i].next = i + 1 < n ? i + 1 : 0;
		}
		vq->desc[head].addr = (uint64_t)(uintptr_t)t;
		vq->desc[head].len = n * sizeof(*t);
		vq->desc[head].flags = GUEST_VIRTQ_DESC_F_INDIRECT;
	} else {
		for (i = 0; i < n; i++) {
			d = i ? desc_take(vq) : head;
			if (i)
				vq->desc[prev].next = d;
			vq->desc[d].addr = (uint64_t)(uintptr_t)bufs[i].addr;
			vq->desc[d].len = bufs[i].len;
			vq->desc[d].flags =
			    (bufs[i].writable ? GUEST_VIRTQ_DESC_F_WRITE : 0) |
			    (i + 1 < n ? GUEST_VIRTQ_DESC_F_NEXT : 0);
			prev = d;
		}
	}
	vq->tokens[head] = token;
	vq->avail[2 + (vq->avail_idx & (vq->size - 1))] = head;
	vq->avail_idx++;
	return 0;
}

int guest_virtq_add_raw(struct guest_virtq *vq,
			const struct guest_virtq_desc *descs, unsigned int n,
			void *token)
{
	uint16_t slot[GUEST_VIRTQ_MAX_SEGS];
	unsigned int i;

	if (!n || n > GUEST_VIRTQ_MAX_SEGS || n > vq->num_free || !token)
		return -1;
	for (i = 0; i < n; i++)
		slot[i] = desc_take(vq);
	for (i = 0; i < n; i++) {
		vq->desc[slot[i]].addr = descs[i].addr;
		vq->desc[slot[i]].len = descs[i].len;
		vq->desc[slot[i]].flags = descs[i].flags;
		vq->desc[slot[i]].next =
		    descs[i].next < n ? slot[descs[i].next] : descs[i].next;
	}
	vq->tokens[slot[0]] = token;
	vq->avail[2 + (vq->avail_idx & (vq->size - 1))] = slot[0];
	vq->avail_idx++;
	return 0;
}

void guest_virtq_kick(struct guest_virtq *vq)
{
	uint16_t old = vq->avail[1], now = vq->avail_idx;
	bool notify;

	if (old == now)
		return;
	/* 2.7.13: descriptors and ring entries before the index. x86 keeps
	 * stores in order, so a compiler barrier is enough here. */
	guest_barrier();
	vq->avail[1] = now;
	/* The index store must be visible before we read the device's
	 * suppression state, or both sides may wait (2.7.13.4). */
	guest_mb();
	if (guest_virtio_has(vq->dev, GUEST_VIRTIO_F_EVENT_IDX)) {
		uint16_t ev =
		    *(volatile uint16_t *)(vq->used + 4 + 8 * vq->size);

		/* vring_need_event (2.7.10). */
		notify = (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
	} else {
		notify =
		    !(*(volatile uint16_t *)vq->used & VIRTQ_USED_F_NO_NOTIFY);
	}
	if (notify) {
		/* 4.1.4.4.1: write the queue index to its notify address. */
		guest_mmio_write16(vq->notify_addr, vq->index);
		vq->kicks++;
	} else {
		vq->kicks_skipped++;
	}
}

void *guest_virtq_get(struct guest_virtq *vq, uint32_t *len)
{
	uint16_t used_idx = *(volatile uint16_t *)(vq->used + 2);
	volatile struct guest_virtq_used_elem *e;
	uint32_t id, n = 0;
	uint16_t d;
	void *token;

	if (used_idx == vq->last_used)
		return NULL;
	/* Loads are not reordered with loads on x86: the entry is read after
	 * the index. */
	guest_barrier();
	e = (volatile struct guest_virtq_used_elem *)(vq->used + 4 +
						      8 * (vq->last_used &
							   (vq->size - 1)));
	id = e->id;
	if (len)
		*len = e->len;
	if (id >= vq->size || !vq->tokens[id]) {
		/* The device returned something we never gave it. */
		guest_printf("guest: virtio queue %u: bad used id %u\n",
			     vq->index, id);
		status_set(vq->dev, STATUS_FAILED);
		return NULL;
	}
	vq->last_used++;
	if (vq->dev->wait_irq &&
	    guest_virtio_has(vq->dev, GUEST_VIRTIO_F_EVENT_IDX))
		vq->avail[2 + vq->size] = vq->last_used; /* used_event */
	token = vq->tokens[id];
	vq->tokens[id] = NULL;
	/* Give the chain's descriptors back to the free list. */
	d = id;
	while ((vq->desc[d].flags & GUEST_VIRTQ_DESC_F_NEXT) && n < vq->size) {
		d = vq->desc[d].next;
		n++;
	}
	vq->desc[d].next = vq->free_head;
	vq->free_head = id;
	vq->num_free += n + 1;
	return token;
}

void *guest_virtq_wait(struct guest_virtq *vq, uint32_t *len,
		       uint64_t timeout_us)
{
	uint64_t end = 0;
	unsigned int polls = 0;
	bool intx = vq->dev->intx;
	bool sleep =
	    vq->dev->wait_irq && (intx || vq->vector != GUEST_VIRTIO_NO_VECTOR);
	void *token;

	if (timeout_us)
		end = guest_rdtsc() + guest_tsc_hz() / 1000000 * timeout_us;
	for (;;) {
		/* INTx: reading the ISR lowers the line (4.1.4.5.1). */
		if (sleep && intx)
			guest_mmio_read8(vq->dev->isr);
		token = guest_virtq_get(vq, len);
		if (token)
			return token;
		if (sleep || ++polls % STATUS_CHECK_POLLS == 0) {
			if (guest_virtio_needs_reset(vq->dev))
				return NULL;
			if (end && guest_rdtsc() > end)
				return NULL;
		}
		/* sti;hlt in ring 0 cannot miss an interrupt that came after
		 * the check above: it is pending until then. */
		if (sleep)
			guest_wait_interrupt();
		else
			guest_pause();
	}
}
