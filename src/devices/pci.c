/* PCI configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2), type 0
 * config headers with write masks, 32-bit memory BARs and capabilities. */
#include "devices/pci.h"

#include <errno.h>
#include <string.h>

#include "bus/bus.h"
#include "core/le.h"
#include "core/platform.h"
#include "core/vm.h"

/* CONFIG_ADDRESS fields (PCI 3.0, 3.2.2.3.2). */
#define PCI_ADDR_ENABLE 0x80000000u
#define PCI_ADDR_BUS(a) (((a) >> 16) & 0xff)
#define PCI_ADDR_SLOT(a) (((a) >> 11) & 0x1f)
#define PCI_ADDR_FUNC(a) (((a) >> 8) & 0x7)
#define PCI_ADDR_REG(a) ((a)&0xfc)
#define PCI_ADDR_RESERVED 0x3u /* bits 1:0 read as 0 */

#define PCI_PORT_LEN 4
#define PCI_BAR_FLAGS 0xfu /* memory BAR bits 3:0: type and prefetch */
#define PCI_BAR_MIN_SIZE 16u /* PCI 3.0, 6.2.5.1 */
#define PCI_BAR_MAX_SIZE 0x80000000u
#define PCI_CAP_ALIGN 4

static bool pci_is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

void pci_device_init(struct pci_device *dev, uint16_t vendor_id,
		     uint16_t device_id, uint32_t class_code, uint8_t revision)
{
	memset(dev, 0, sizeof(*dev));
	put_le16(dev->config + PCI_CFG_VENDOR_ID, vendor_id);
	put_le16(dev->config + PCI_CFG_DEVICE_ID, device_id);
	dev->config[PCI_CFG_REVISION] = revision;
	dev->config[PCI_CFG_CLASS_PROG] = (uint8_t)class_code;
	dev->config[PCI_CFG_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	dev->config[PCI_CFG_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	dev->config[PCI_CFG_HEADER_TYPE] = 0x00; /* type 0, one function */
	put_le16(dev->wmask + PCI_CFG_COMMAND,
		 PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
		     PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
		     PCI_COMMAND_INTX_DISABLE);
	dev->wmask[PCI_CFG_CACHE_LINE] = 0xff;
	dev->wmask[PCI_CFG_LATENCY] = 0xff;
	dev->wmask[PCI_CFG_INT_LINE] = 0xff;
}

int pci_device_set_bar(struct pci_device *dev, int bar, uint32_t size,
		       uint32_t addr)
{
	uint8_t *reg;

	if (bar < 0 || bar >= PCI_NUM_BARS || !pci_is_pow2(size) ||
	    size < PCI_BAR_MIN_SIZE || size > PCI_BAR_MAX_SIZE ||
	    (addr & (size - 1)))
		return -EINVAL;
	reg = dev->config + PCI_CFG_BAR0 + 4 * bar;
	dev->bar_size[bar] = size;
	/* Address bits below the size are read-only 0, so writing all ones
	 * reads back the size (PCI 3.0, 6.2.5.1); bits 3:0 = 0 say 32-bit,
	 * non-prefetchable memory. */
	put_le32(dev->wmask + PCI_CFG_BAR0 + 4 * bar, ~(size - 1));
	put_le32(reg, addr);
	return 0;
}

int pci_add_capability(struct pci_device *dev, uint8_t cap_id, uint8_t len)
{
	unsigned off = dev->cap_end ? dev->cap_end : PCI_CFG_HEADER_END;

	if (len < 2)
		return -EINVAL;
	off = (off + PCI_CAP_ALIGN - 1) & ~(PCI_CAP_ALIGN - 1u);
	if (off + len > PCI_CONFIG_SIZE)
		return -ENOSPC;
	dev->config[off] = cap_id;
	dev->config[off + 1] = 0; /* end of list */
	if (dev->cap_last)
		dev->config[dev->cap_last + 1] = (uint8_t)off;
	else
		dev->config[PCI_CFG_CAP_PTR] = (uint8_t)off;
	dev->config[PCI_CFG_STATUS] |= PCI_STATUS_CAP_LIST;
	dev->cap_last = (uint8_t)off;
	dev->cap_end = (uint16_t)(off + len);
	return (int)off;
}

/* Where BAR @bar decodes now: 0 when memory decode is off, the BAR is 0,
 * or the range would reach the top of the 32-bit space, which is also
 * where a BAR sits while the guest sizes it. */
static uint32_t pci_bar_decoded(const struct pci_device *dev, int bar)
{
	uint32_t size = dev->bar_size[bar];
	uint32_t addr;

	if (!size || !(dev->config[PCI_CFG_COMMAND] & PCI_COMMAND_MEMORY))
		return 0;
	addr = get_le32(dev->config + PCI_CFG_BAR0 + 4 * bar) & ~(size - 1) &
	       ~PCI_BAR_FLAGS;
	if (addr == 0 || (uint64_t)addr + size > UINT32_MAX)
		return 0;
	return addr;
}

/* Tells the owner about every BAR whose decoded address changed. */
static void pci_device_update_bars(struct pci_device *dev)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint32_t now = pci_bar_decoded(dev, i);
		uint32_t old = dev->bar_mapped[i];

		if (now == old)
			continue;
		dev->bar_mapped[i] = now;
		if (dev->bar_remap)
			dev->bar_remap(dev, i, old, now);
	}
}

static void pci_device_write_config(struct pci_device *dev, unsigned off,
				    const uint8_t *data, uint32_t len)
{
	bool remap = false;

	for (uint32_t i = 0; i < len; i++) {
		unsigned o = off + i;

		dev->config[o] = (uint8_t)((dev->config[o] & ~dev->wmask[o]) |
					   (data[i] & dev->wmask[o]));
		if ((o >= PCI_CFG_COMMAND && o < PCI_CFG_COMMAND + 2) ||
		    (o >= PCI_CFG_BAR0 && o < PCI_CFG_BAR0 + 4 * PCI_NUM_BARS))
			remap = true;
	}
	if (remap)
		pci_device_update_bars(dev);
	if (dev->config_written)
		dev->config_written(dev, off, len);
}

/* The device CONFIG_ADDRESS selects, or NULL: only bus 0, function 0 of
 * populated slots exist. */
static struct pci_device *pci_host_selected(const struct pci_host *p)
{
	uint32_t a = p->addr;

	if (!(a & PCI_ADDR_ENABLE) || PCI_ADDR_BUS(a) != 0 ||
	    PCI_ADDR_FUNC(a) != 0)
		return NULL;
	return p->slots[PCI_ADDR_SLOT(a)];
}

static void pci_addr_io(void *opaque, uint64_t offset, uint8_t *data,
			uint32_t len, bool is_write)
{
	struct pci_host *p = opaque;

	/* Only a dword access at 0xcf8 reaches CONFIG_ADDRESS; byte and
	 * word accesses are ordinary I/O that nothing here decodes. */
	if (offset != 0 || len != PCI_PORT_LEN) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (is_write)
		p->addr = get_le32(data) & ~PCI_ADDR_RESERVED;
	else
		put_le32(data, p->addr);
	pthread_mutex_unlock(&p->lock);
}

static void pci_data_io(void *opaque, uint64_t offset, uint8_t *data,
			uint32_t len, bool is_write)
{
	struct pci_host *p = opaque;
	struct pci_device *dev;
	unsigned off;

	pthread_mutex_lock(&p->lock);
	dev = pci_host_selected(p);
	/* The bus keeps offset + len within the 4 data ports, so the access
	 * stays inside the selected dword of config space. */
	off = PCI_ADDR_REG(p->addr) + (unsigned)offset;
	if (!dev) {
		/* Master abort: reads return all ones (PCI 3.0, 6.1). */
		if (!is_write)
			memset(data, 0xff, len);
	} else if (is_write) {
		pci_device_write_config(dev, off, data, len);
	} else {
		if (dev->config_read)
			dev->config_read(dev, off, len);
		memcpy(data, dev->config + off, len);
	}
	pthread_mutex_unlock(&p->lock);
}

int pci_host_init(struct pci_host *p, struct vm *vm)
{
	int ret;

	memset(p, 0, sizeof(*p));
	p->vm = vm;
	p->bar_next = PLATFORM_PCI_MMIO_BASE;
	pci_device_init(&p->bridge, PCI_HOST_VENDOR_ID, PCI_HOST_DEVICE_ID,
			PCI_HOST_CLASS, 0);
	memcpy(p->bridge.config_init, p->bridge.config, PCI_CONFIG_SIZE);
	p->bridge.host = p;
	p->slots[0] = &p->bridge;
	ret = pthread_mutex_init(&p->lock, NULL);
	if (ret)
		return -ret;
	ret = bus_register(&vm->pio, PLATFORM_PORT_PCI_ADDR, PCI_PORT_LEN,
			   pci_addr_io, p, "pci-addr");
	if (ret)
		goto err_lock;
	ret = bus_register(&vm->pio, PLATFORM_PORT_PCI_DATA, PCI_PORT_LEN,
			   pci_data_io, p, "pci-data");
	if (ret)
		goto err_addr;
	p->initialized = true;
	return 0;

err_addr:
	bus_unregister(&vm->pio, PLATFORM_PORT_PCI_ADDR);
err_lock:
	pthread_mutex_destroy(&p->lock);
	return ret;
}

int pci_host_post_load(struct pci_host *p)
{
	return pci_device_post_load(&p->bridge);
}

void pci_host_destroy(struct pci_host *p)
{
	if (!p->initialized)
		return;
	pthread_mutex_destroy(&p->lock);
	p->initialized = false;
}

uint32_t pci_host_alloc_bar(struct pci_host *p, uint32_t size)
{
	uint64_t base;

	if (!pci_is_pow2(size) || size < PCI_BAR_MIN_SIZE)
		return 0;
	pthread_mutex_lock(&p->lock);
	base = (p->bar_next + size - 1) & ~((uint64_t)size - 1);
	if (base + size > PLATFORM_PCI_MMIO_BASE + PLATFORM_PCI_MMIO_SIZE) {
		base = 0;
	} else {
		p->bar_next = base + size;
	}
	pthread_mutex_unlock(&p->lock);
	return (uint32_t)base;
}

int pci_add_device(struct pci_host *p, struct pci_device *dev, uint8_t slot)
{
	int ret = 0;

	if (slot == 0 || slot >= PCI_NUM_SLOTS)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	if (p->slots[slot]) {
		ret = -EEXIST;
		goto out;
	}
	dev->host = p;
	dev->slot = slot;
	memcpy(dev->config_init, dev->config, PCI_CONFIG_SIZE);
	memset(dev->bar_mapped, 0, sizeof(dev->bar_mapped));
	p->slots[slot] = dev;
	/* An owner that enabled decode itself gets its callbacks now. */
	pci_device_update_bars(dev);
out:
	pthread_mutex_unlock(&p->lock);
	return ret;
}

int pci_device_post_load(struct pci_device *dev)
{
	struct pci_host *p = dev->host;

	if (p)
		pthread_mutex_lock(&p->lock);
	pci_device_update_bars(dev);
	if (p)
		pthread_mutex_unlock(&p->lock);
	return 0;
}

/* A restored config must be one the guest could have produced on this
 * device: every bit it cannot write equals the value at setup. This keeps
 * the IDs, BAR types and sizes and the capability chain as the device
 * model expects them. The status register is exempt, as the device
 * itself may change it. */
static int pci_device_check_config(const struct pci_device *dev)
{
	for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++) {
		if (i == PCI_CFG_STATUS || i == PCI_CFG_STATUS + 1)
			continue;
		if ((dev->config[i] ^ dev->config_init[i]) & ~dev->wmask[i])
			return -EINVAL;
	}
	return 0;
}

static int pci_device_validate(const void *obj)
{
	return pci_device_check_config(obj);
}

static int pci_host_validate(const void *obj)
{
	const struct pci_host *p = obj;

	if (p->addr & PCI_ADDR_RESERVED)
		return -EINVAL;
	return pci_device_check_config(&p->bridge);
}

static const struct state_field pci_device_state_fields[] = {
	STATE_U8_ARRAY(struct pci_device, config, 1),
};

const struct state_desc pci_device_state_desc = {
	.name = "pci-device",
	.version = 1,
	.min_version = 1,
	.fields = pci_device_state_fields,
	.nfields = STATE_NFIELDS(pci_device_state_fields),
	.validate = pci_device_validate,
};

static const struct state_field pci_host_state_fields[] = {
	STATE_U32(struct pci_host, addr, 1),
	STATE_U8_ARRAY(struct pci_host, bridge.config, 1),
};

const struct state_desc pci_host_state_desc = {
	.name = "pci-host",
	.version = 1,
	.min_version = 1,
	.fields = pci_host_state_fields,
	.nfields = STATE_NFIELDS(pci_host_state_fields),
	.validate = pci_host_validate,
};
