/* VM Generation ID (Microsoft's "Virtual Machine Generation ID"
 * specification, read by Linux's vmgenid driver): 16 random bytes in
 * reserved guest memory that change whenever the VM may have been
 * duplicated, here on every restore of a snapshot. */
#ifndef STASIS_VMGENID_H
#define STASIS_VMGENID_H

#include <stdbool.h>
#include <stdint.h>

#include "snapshot/state.h"

struct vm;

#define VMGENID_SIZE 16

/* No lock: the ID is only written before the vCPUs run (boot, restore). */
struct vmgenid {
	struct vm *vm;

	/* Saved state (vmgenid_state_desc). */
	uint64_t addr; /* guest physical; 0: no device (off, or an older VM) */
	uint8_t id[VMGENID_SIZE]; /* as the guest last saw it */
};

extern const struct state_desc vmgenid_state_desc;

/* Zeroes @g: no device until vmgenid_boot() or a restored record. */
void vmgenid_init(struct vmgenid *g, struct vm *vm);

/* At boot, after the ACPI tables are written: places a random ID at
 * PLATFORM_VMGENID_ADDR. Returns 0 or -errno. */
int vmgenid_boot(struct vmgenid *g);

/* After a restore, before the vCPUs run: when the snapshot had the device,
 * writes a new random ID into guest memory and pulses
 * PLATFORM_IRQ_ACPI_GED so that the guest's event device notifies it.
 * Returns 0 or -errno. */
int vmgenid_post_load(struct vmgenid *g);

/* The ID as 32 lowercase hex digits and a NUL, in guest byte order. */
void vmgenid_format(const struct vmgenid *g, char out[2 * VMGENID_SIZE + 1]);

#endif
