/* VM Generation ID: the ID's bytes and their renewal on restore. The ACPI
 * side (VGEN with its ADDR method, the event device) is in boot/acpi.c. */
#include "devices/vmgenid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "core/log.h"
#include "core/platform.h"
#include "core/vm.h"

void vmgenid_init(struct vmgenid *g, struct vm *vm)
{
	memset(g, 0, sizeof(*g));
	g->vm = vm;
}

/* A fresh ID from the host's RNG, stored in guest memory. The spec asks
 * for a 128-bit value that is, for practical purposes, never repeated. */
static int vmgenid_renew(struct vmgenid *g)
{
	size_t got = 0;

	while (got < VMGENID_SIZE) {
		ssize_t n = getrandom(g->id + got, VMGENID_SIZE - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	return guest_mem_write(&g->vm->mem, g->addr, g->id, VMGENID_SIZE);
}

int vmgenid_boot(struct vmgenid *g)
{
	g->addr = PLATFORM_VMGENID_ADDR;
	return vmgenid_renew(g);
}

int vmgenid_post_load(struct vmgenid *g)
{
	char hex[2 * VMGENID_SIZE + 1];
	int ret;

	if (!g->addr)
		return 0;
	ret = vmgenid_renew(g);
	if (ret)
		return ret;
	/* An edge on the event device's line (ACPI 6.4, 5.6.9: OSPM runs
	 * _EVT, which does Notify (VGEN, 0x80)). The LAPICs and IOAPIC are
	 * restored by now, so the edge reaches the guest as it saved its
	 * routing; a guest that never set one up just reads the new ID. */
	ret = vm_set_irq(g->vm, PLATFORM_IRQ_ACPI_GED, 1);
	if (!ret)
		ret = vm_set_irq(g->vm, PLATFORM_IRQ_ACPI_GED, 0);
	if (ret)
		return ret;
	vmgenid_format(g, hex);
	log_debug("vmgenid: new generation ID %s", hex);
	return 0;
}

void vmgenid_format(const struct vmgenid *g, char out[2 * VMGENID_SIZE + 1])
{
	for (unsigned i = 0; i < VMGENID_SIZE; i++)
		snprintf(out + 2 * i, 3, "%02x", g->id[i]);
}

static int vmgenid_validate(const void *obj)
{
	const struct vmgenid *g = obj;

	/* Only where this stasis's tables put it (or no device at all). */
	return g->addr == 0 || g->addr == PLATFORM_VMGENID_ADDR ? 0 : -EINVAL;
}

static const struct state_field vmgenid_state_fields[] = {
	STATE_U64(struct vmgenid, addr, 1),
	STATE_U8_ARRAY(struct vmgenid, id, 1),
};

const struct state_desc vmgenid_state_desc = {
	.name = "vmgenid",
	.version = 1,
	.min_version = 1,
	.fields = vmgenid_state_fields,
	.nfields = STATE_NFIELDS(vmgenid_state_fields),
	.validate = vmgenid_validate,
};
