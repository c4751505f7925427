/* pci.c - PCI bus 0 from ring 3: configuration mechanism #1, the function
 * list, BAR sizing and placement of memory BARs firmware left unassigned,
 * and the capability walk. Register offsets: PCI Local Bus 3.0, 6.1. */
#include "runtime.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_ENABLE 0x80000000u

#define PCI_VENDOR 0x00
#define PCI_DEVICE 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_CLASS_REV 0x08
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_DEVICE 0x2e
#define PCI_CAP_PTR 0x34
#define PCI_IRQ_LINE 0x3c
#define PCI_IRQ_PIN 0x3d

#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_CAP_LIST 0x10

#define PCI_BAR_IO 0x1
#define PCI_BAR_MEM_TYPE_MASK 0x6
#define PCI_BAR_MEM_TYPE_64 0x4

/* A capability list has at most (256 - 64) / 4 entries. */
#define PCI_CAP_MAX 48

/*
 * Where unassigned memory BARs go: holes below 4 GiB, tried in order. The
 * first is where stasis's own allocator places BARs (docs/devices.md);
 * each candidate range is still checked against every memory-map entry
 * and every BAR already placed, so RAM and firmware's choices are safe.
 * The top stops below the IOAPIC and LAPIC pages.
 */
static const struct {
	uint64_t start, end;
} bar_windows[] = {
	{ 0xe0000000, 0xfec00000 },
	{ 0xc0000000, 0xe0000000 },
	{ 0x80000000, 0xc0000000 },
};

static uint32_t config_address(const struct guest_pci_dev *d, unsigned int off)
{
	return PCI_ENABLE | (uint32_t)d->bus << 16 | (uint32_t)d->slot << 11 |
	       (uint32_t)d->func << 8 | (off & 0xfc);
}

uint32_t guest_pci_read32(const struct guest_pci_dev *d, unsigned int off)
{
	guest_outl(PCI_CONFIG_ADDRESS, config_address(d, off));
	return guest_inl(PCI_CONFIG_DATA);
}

uint16_t guest_pci_read16(const struct guest_pci_dev *d, unsigned int off)
{
	guest_outl(PCI_CONFIG_ADDRESS, config_address(d, off));
	return guest_inw(PCI_CONFIG_DATA + (off & 2));
}

uint8_t guest_pci_read8(const struct guest_pci_dev *d, unsigned int off)
{
	guest_outl(PCI_CONFIG_ADDRESS, config_address(d, off));
	return guest_inb(PCI_CONFIG_DATA + (off & 3));
}

void guest_pci_write32(const struct guest_pci_dev *d, unsigned int off,
		       uint32_t v)
{
	guest_outl(PCI_CONFIG_ADDRESS, config_address(d, off));
	guest_outl(PCI_CONFIG_DATA, v);
}

void guest_pci_write16(const struct guest_pci_dev *d, unsigned int off,
		       uint16_t v)
{
	guest_outl(PCI_CONFIG_ADDRESS, config_address(d, off));
	guest_outw(PCI_CONFIG_DATA + (off & 2), v);
}

/* Sizes BAR @i (PCI 3.0 6.2.5.1: write all ones, read the mask back,
 * restore), with decode already off. Returns the number of BAR registers
 * it used (2 for a 64-bit BAR). */
static unsigned int bar_probe(struct guest_pci_dev *d, unsigned int i)
{
	unsigned int off = PCI_BAR0 + 4 * i;
	uint32_t orig = guest_pci_read32(d, off), mask, orig_hi, mask_hi = 0;
	struct guest_pci_bar *bar = &d->bar[i];
	uint64_t size_mask;

	guest_pci_write32(d, off, 0xffffffff);
	mask = guest_pci_read32(d, off);
	guest_pci_write32(d, off, orig);
	if (!mask || mask == 0xffffffff)
		return 1;
	if (orig & PCI_BAR_IO) {
		bar->io = true;
		size_mask = mask & ~3u;
		/* A 16-bit I/O decoder reads 0 in the upper half. */
		if (!(size_mask & 0xffff0000))
			size_mask |= 0xffff0000;
		bar->size = (uint32_t)(~size_mask + 1);
		bar->addr = orig & ~3u;
		return 1;
	}
	if ((orig & PCI_BAR_MEM_TYPE_MASK) == PCI_BAR_MEM_TYPE_64 &&
	    i + 1 < GUEST_PCI_BARS) {
		orig_hi = guest_pci_read32(d, off + 4);
		guest_pci_write32(d, off + 4, 0xffffffff);
		mask_hi = guest_pci_read32(d, off + 4);
		guest_pci_write32(d, off + 4, orig_hi);
		bar->is64 = true;
		size_mask = (uint64_t)mask_hi << 32 | (mask & ~0xfu);
		bar->size = ~size_mask + 1;
		bar->addr = (uint64_t)orig_hi << 32 | (orig & ~0xfu);
		return 2;
	}
	size_mask = 0xffffffff00000000ull | (mask & ~0xfu);
	bar->size = ~size_mask + 1;
	bar->addr = orig & ~0xfu;
	return 1;
}

static void func_probe(struct guest_pci_dev *d)
{
	uint16_t cmd = guest_pci_read16(d, PCI_COMMAND);
	uint32_t class_rev = guest_pci_read32(d, PCI_CLASS_REV);
	unsigned int i;

	d->vendor = guest_pci_read16(d, PCI_VENDOR);
	d->device = guest_pci_read16(d, PCI_DEVICE);
	d->class_code = class_rev >> 8;
	if ((guest_pci_read8(d, PCI_HEADER_TYPE) & 0x7f) != 0)
		return; /* a bridge: bus 0 only, no BARs handled */
	d->subsys_vendor = guest_pci_read16(d, PCI_SUBSYS_VENDOR);
	d->subsys_device = guest_pci_read16(d, PCI_SUBSYS_DEVICE);
	d->irq_line = guest_pci_read8(d, PCI_IRQ_LINE);
	d->irq_pin = guest_pci_read8(d, PCI_IRQ_PIN);
	/* Decode off while the BARs hold all ones (PCI 3.0 6.2.5.1). */
	guest_pci_write16(d, PCI_COMMAND,
			  cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
	for (i = 0; i < GUEST_PCI_BARS;)
		i += bar_probe(d, i);
	guest_pci_write16(d, PCI_COMMAND, cmd);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* The end of whatever already uses part of [at, at + size), or 0. */
static uint64_t range_conflict(uint64_t at, uint64_t size)
{
	const struct guest_boot_info *b = &guest_kit.boot;
	unsigned int i, j;

	for (i = 0; i < b->memmap_count; i++)
		if (overlaps(at, size, b->memmap[i].start, b->memmap[i].size))
			return b->memmap[i].start + b->memmap[i].size;
	for (i = 0; i < guest_kit.pci_count; i++) {
		const struct guest_pci_dev *d = &guest_kit.pci[i];

		for (j = 0; j < GUEST_PCI_BARS; j++) {
			const struct guest_pci_bar *bar = &d->bar[j];

			if (!bar->io && bar->addr &&
			    overlaps(at, size, bar->addr, bar->size))
				return bar->addr + bar->size;
		}
	}
	return 0;
}

/* A naturally aligned free range of @size in the BAR windows, or 0. */
static uint64_t bar_place(uint64_t size)
{
	unsigned int w;

	for (w = 0; w < sizeof(bar_windows) / sizeof(bar_windows[0]); w++) {
		uint64_t at = (bar_windows[w].start + size - 1) & ~(size - 1);
		uint64_t end;

		while (at + size <= bar_windows[w].end) {
			end = range_conflict(at, size);
			if (!end)
				return at;
			at = (end + size - 1) & ~(size - 1);
		}
	}
	return 0;
}

static void bar_write(struct guest_pci_dev *d, unsigned int i, uint64_t addr)
{
	uint16_t cmd = guest_pci_read16(d, PCI_COMMAND);

	guest_pci_write16(d, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
	guest_pci_write32(d, PCI_BAR0 + 4 * i, (uint32_t)addr);
	if (d->bar[i].is64)
		guest_pci_write32(d, PCI_BAR0 + 4 * i + 4,
				  (uint32_t)(addr >> 32));
	guest_pci_write16(d, PCI_COMMAND, cmd);
	d->bar[i].addr = addr;
}

/* Places the unassigned memory BARs, largest first so alignment wastes
 * little. A BAR that fits nowhere stays at 0 and its device is unusable. */
static void bars_assign(void)
{
	for (;;) {
		struct guest_pci_dev *best_dev = NULL;
		unsigned int i, j, best_bar = 0;
		uint64_t best_size = 0, at;

		for (i = 0; i < guest_kit.pci_count; i++) {
			struct guest_pci_dev *d = &guest_kit.pci[i];

			for (j = 0; j < GUEST_PCI_BARS; j++) {
				struct guest_pci_bar *bar = &d->bar[j];

				if (!bar->io && bar->size && !bar->addr &&
				    bar->size > best_size) {
					best_dev = d;
					best_bar = j;
					best_size = bar->size;
				}
			}
		}
		if (!best_dev)
			return;
		at = bar_place(best_size);
		if (!at) {
			guest_printf("guest: pci %02x.%x bar %u: no room for "
				     "0x%lx bytes\n",
				     best_dev->slot, best_dev->func, best_bar,
				     best_size);
			/* Mark it absent so the loop ends. */
			best_dev->bar[best_bar].size = 0;
			continue;
		}
		bar_write(best_dev, best_bar, at);
	}
}

static struct guest_pci_dev *func_add(uint8_t slot, uint8_t func)
{
	struct guest_pci_dev *d;

	if (guest_kit.pci_count == GUEST_PCI_MAX_FUNCS)
		return NULL;
	d = &guest_kit.pci[guest_kit.pci_count];
	memset(d, 0, sizeof(*d));
	d->slot = slot;
	d->func = func;
	if (guest_pci_read16(d, PCI_VENDOR) == 0xffff)
		return NULL;
	guest_kit.pci_count++;
	func_probe(d);
	return d;
}

unsigned int guest_pci_scan(void)
{
	bool reassign = guest_arg_is("pci", "reassign");
	unsigned int slot, func, i, j;

	if (guest_kit.pci_scanned)
		return guest_kit.pci_count;
	guest_kit.pci_scanned = true;
	for (slot = 0; slot < 32; slot++) {
		struct guest_pci_dev *d = func_add(slot, 0);

		if (!d || !(guest_pci_read8(d, PCI_HEADER_TYPE) & 0x80))
			continue;
		for (func = 1; func < 8; func++)
			func_add(slot, func);
	}
	/* A BAR beyond our identity map is moved below 4 GiB too. */
	for (i = 0; i < guest_kit.pci_count; i++)
		for (j = 0; j < GUEST_PCI_BARS; j++) {
			struct guest_pci_bar *bar = &guest_kit.pci[i].bar[j];

			if (!bar->io && (reassign || bar->addr + bar->size >
							 guest_kit.map_top))
				bar->addr = 0;
		}
	bars_assign();
	return guest_kit.pci_count;
}

struct guest_pci_dev *guest_pci_dev(unsigned int index)
{
	return index < guest_kit.pci_count ? &guest_kit.pci[index] : NULL;
}

unsigned int guest_pci_find_cap(const struct guest_pci_dev *d, uint8_t id,
				unsigned int from)
{
	unsigned int off, n;

	if (!(guest_pci_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return 0;
	off = from ? guest_pci_read8(d, from + 1)
		   : guest_pci_read8(d, PCI_CAP_PTR);
	for (n = 0; n < PCI_CAP_MAX; n++) {
		off &= 0xfc; /* the low two bits are reserved (6.7) */
		if (off < 0x40)
			return 0;
		if (guest_pci_read8(d, off) == id)
			return off;
		off = guest_pci_read8(d, off + 1);
	}
	return 0;
}

void guest_pci_enable(const struct guest_pci_dev *d, bool intx_off)
{
	uint16_t cmd = guest_pci_read16(d, PCI_COMMAND);

	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	if (intx_off)
		cmd |= PCI_COMMAND_INTX_DISABLE;
	else
		cmd &= ~PCI_COMMAND_INTX_DISABLE;
	guest_pci_write16(d, PCI_COMMAND, cmd);
}
