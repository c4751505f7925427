/* PCI bus 0 behind configuration mechanism #1 (ports 0xcf8/0xcfc): a host
 * bridge in slot 0, and the config space model devices plug into. */
#ifndef STASIS_PCI_H
#define STASIS_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapshot/state.h"

struct vm;
struct pci_host;

#define PCI_CONFIG_SIZE 256
#define PCI_NUM_BARS 6
#define PCI_NUM_SLOTS 32

/* Type 0 header offsets (PCI Local Bus 3.0, 6.1). The PCI_CFG_ prefix
 * keeps them apart from <linux/pci_regs.h>. */
#define PCI_CFG_VENDOR_ID 0x00
#define PCI_CFG_DEVICE_ID 0x02
#define PCI_CFG_COMMAND 0x04
#define PCI_CFG_STATUS 0x06
#define PCI_CFG_REVISION 0x08
#define PCI_CFG_CLASS_PROG 0x09 /* class code: prog-if, subclass, class */
#define PCI_CFG_CACHE_LINE 0x0c
#define PCI_CFG_LATENCY 0x0d
#define PCI_CFG_HEADER_TYPE 0x0e
#define PCI_CFG_BAR0 0x10
#define PCI_CFG_SUBSYS_VENDOR_ID 0x2c
#define PCI_CFG_SUBSYS_ID 0x2e
#define PCI_CFG_CAP_PTR 0x34
#define PCI_CFG_INT_LINE 0x3c
#define PCI_CFG_INT_PIN 0x3d
#define PCI_CFG_HEADER_END 0x40 /* capabilities start here */

#define PCI_COMMAND_IO 0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_PARITY 0x0040
#define PCI_COMMAND_SERR 0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_CAP_LIST 0x0010

/* Slot 0: the host bridge stasis presents. Intel 82441FX: a real host
 * bridge every x86 guest knows, to which no driver binds (Linux applies
 * only harmless quirks to it); it names no hypervisor. */
#define PCI_HOST_VENDOR_ID 0x8086
#define PCI_HOST_DEVICE_ID 0x1237
#define PCI_HOST_CLASS 0x060000 /* bridge, host */

struct pci_device {
	/* Saved state (pci_device_state_desc). */
	uint8_t config[PCI_CONFIG_SIZE];

	/* Set up by the owner (pci_device_init, pci_device_set_bar,
	 * pci_add_capability, direct config/wmask stores) before
	 * pci_add_device(); constant afterwards. */
	uint8_t wmask[PCI_CONFIG_SIZE]; /* bits the guest may change */
	uint32_t bar_size[PCI_NUM_BARS]; /* 0: BAR not implemented */
	/* Called, with the host's lock held, whenever the address at which
	 * a BAR decodes changes: the guest moved it or toggled memory decode
	 * in the command register. 0 means "not decoded". The callback may
	 * take its device's lock and the MMIO bus lock but must not call
	 * into pci_host. */
	void (*bar_remap)(struct pci_device *dev, int bar, uint64_t old_addr,
			  uint64_t new_addr);
	/* Called, with the host's lock held, after the guest wrote config
	 * bytes [off, off + len) (the write mask already applied), so that a
	 * capability's owner sees e.g. MSI-X enable. Same rules as bar_remap.
	 * May be NULL. */
	void (*config_written)(struct pci_device *dev, unsigned off,
			       unsigned len);
	/* Called, with the host's lock held, before the guest reads config
	 * bytes [off, off + len), so that the owner can refresh a window
	 * whose contents live elsewhere (virtio's PCI configuration access
	 * capability). Same rules as bar_remap. May be NULL. */
	void (*config_read)(struct pci_device *dev, unsigned off, unsigned len);
	void *opaque; /* for the owner */

	/* Kept by the PCI code. */
	struct pci_host *host; /* NULL until pci_add_device() */
	uint8_t slot;
	uint16_t cap_end; /* first byte after the last capability */
	uint8_t cap_last; /* offset of the last capability, 0 when none */
	/* Config as it was when the device was added: a restored config must
	 * agree with it in every read-only bit outside the status register. */
	uint8_t config_init[PCI_CONFIG_SIZE];
	/* Where each BAR decodes as last told to bar_remap (0: nowhere). */
	uint32_t bar_mapped[PCI_NUM_BARS];
};

struct pci_host {
	pthread_mutex_t lock; /* the address latch and every config space */
	struct vm *vm;
	bool initialized;
	struct pci_device *slots[PCI_NUM_SLOTS];
	uint64_t bar_next; /* pci_host_alloc_bar() cursor; not saved */

	/* Saved state (pci_host_state_desc). */
	uint32_t addr; /* 0xcf8 latch */
	struct pci_device bridge; /* slot 0; its config is saved */
};

/* Config space of one device; devices embedding a struct pci_device save
 * it with this table. Decode into a device already set up as at creation
 * (validate compares read-only bits with its setup), then call
 * pci_device_post_load(). */
extern const struct state_desc pci_device_state_desc;
/* The 0xcf8 latch and the host bridge's config space. */
extern const struct state_desc pci_host_state_desc;

/* Claims ports 0xcf8 (4) and 0xcfc (4) on vm->pio and puts the host bridge
 * in slot 0. Returns 0 or -errno. */
int pci_host_init(struct pci_host *p, struct vm *vm);

/* Re-drives derived state of the bridge after state_decode(). Returns 0. */
int pci_host_post_load(struct pci_host *p);

/* Safe on a zeroed or never-initialised struct. */
void pci_host_destroy(struct pci_host *p);

/* Hands out @size bytes (a power of two, at least 16) of the 32-bit MMIO
 * window, naturally aligned, as firmware would assign a BAR. Allocation is
 * deterministic, so a VM built from the same config gets the same
 * addresses. Returns the address, or 0 when the window is full or @size is
 * invalid. */
uint32_t pci_host_alloc_bar(struct pci_host *p, uint32_t size);

/* Plugs @dev into bus 0 at @slot (1-31). @dev must be fully set up; its
 * config then becomes the reference for restores. Returns 0, -EINVAL for a
 * bad slot, -EEXIST when the slot is taken. */
int pci_add_device(struct pci_host *p, struct pci_device *dev, uint8_t slot);

/* Zeroes @dev and fills a type 0 header: IDs, class code (24 bits:
 * class << 16 | subclass << 8 | prog-if), revision; the command register,
 * cache line size, latency timer and interrupt line become writable. */
void pci_device_init(struct pci_device *dev, uint16_t vendor_id,
		     uint16_t device_id, uint32_t class_code, uint8_t revision);

/* Declares BAR @bar (0-5) as 32-bit non-prefetchable memory of @size bytes
 * (a power of two, 16 bytes to 2 GiB) at @addr (0 to leave it to the
 * guest, else aligned to @size). Returns 0 or -EINVAL. */
int pci_device_set_bar(struct pci_device *dev, int bar, uint32_t size,
		       uint32_t addr);

/* Appends a capability with ID @cap_id and @len bytes (ID and next pointer
 * included) to the capability list, dword aligned. The owner fills the
 * body (and its wmask) at the returned offset. Returns the offset, or
 * -EINVAL for @len < 2, -ENOSPC when config space is full. */
int pci_add_capability(struct pci_device *dev, uint8_t cap_id, uint8_t len);

/* After state_decode() of @dev's config: tells bar_remap where each BAR
 * decodes now. Call before the vCPUs run. Returns 0. */
int pci_device_post_load(struct pci_device *dev);

#endif
