/* ACPI sleep control/status and reset registers (ACPI 6.4, 4.8.3.6 Reset
 * Register, 4.8.3.7 Sleep Control and Status Registers). */
#include "devices/acpi_pm.h"

#include <errno.h>
#include <string.h>

#include "bus/bus.h"
#include "core/platform.h"
#include "core/vm.h"

/* Sleep control register: SLP_TYP in bits 4:2, SLP_EN (write-only) in bit
 * 5; sleep status register: WAK_STS in bit 7, write 1 to clear. Other bits
 * are reserved and read as 0. */
#define ACPI_SLP_TYP_SHIFT 2
#define ACPI_SLP_TYP_MASK 0x1c
#define ACPI_SLP_EN 0x20
#define ACPI_WAK_STS 0x80

/* The three registers, in port order from PLATFORM_PORT_ACPI_SLEEP_CTL. */
#define ACPI_PM_SLEEP_CTL 0
#define ACPI_PM_SLEEP_STS 1
#define ACPI_PM_RESET 2
#define ACPI_PM_NPORTS 3

_Static_assert(PLATFORM_PORT_ACPI_SLEEP_STS ==
		       PLATFORM_PORT_ACPI_SLEEP_CTL + ACPI_PM_SLEEP_STS &&
		   PLATFORM_PORT_ACPI_RESET ==
		       PLATFORM_PORT_ACPI_SLEEP_CTL + ACPI_PM_RESET,
	       "ACPI PM ports must be contiguous");

/* Handles one byte; returns the stop it requests, or VM_RUNNING. */
static enum vm_stop_reason acpi_pm_write(struct acpi_pm *p, unsigned reg,
					 uint8_t val)
{
	unsigned slp_typ = (val & ACPI_SLP_TYP_MASK) >> ACPI_SLP_TYP_SHIFT;

	switch (reg) {
	case ACPI_PM_SLEEP_CTL:
		p->sleep_ctl = val & ACPI_SLP_TYP_MASK;
		if (!(val & ACPI_SLP_EN))
			break;
		if (slp_typ == PLATFORM_ACPI_S5_SLP_TYP)
			return VM_STOP_POWEROFF;
		/* Other sleep states are not offered in the DSDT; should a
		 * guest try one anyway, it wakes at once: OSPM polls WAK_STS
		 * (4.8.3.7) and would otherwise spin forever. */
		p->sleep_sts |= ACPI_WAK_STS;
		break;
	case ACPI_PM_SLEEP_STS:
		p->sleep_sts &= ~(val & ACPI_WAK_STS);
		break;
	case ACPI_PM_RESET:
		if (val == PLATFORM_ACPI_RESET_VALUE)
			return VM_STOP_RESET;
		break;
	}
	return VM_RUNNING;
}

static uint8_t acpi_pm_read(const struct acpi_pm *p, unsigned reg)
{
	switch (reg) {
	case ACPI_PM_SLEEP_CTL:
		return p->sleep_ctl;
	case ACPI_PM_SLEEP_STS:
		return p->sleep_sts;
	}
	return 0; /* the reset register is write-only */
}

static void acpi_pm_io(void *opaque, uint64_t offset, uint8_t *data,
		       uint32_t len, bool is_write)
{
	struct acpi_pm *p = opaque;
	enum vm_stop_reason stop = VM_RUNNING;

	pthread_mutex_lock(&p->lock);
	/* Byte registers; the range bounds offset + len to the three. */
	for (uint32_t i = 0; i < len; i++) {
		unsigned reg = (unsigned)(offset + i);

		if (!is_write)
			data[i] = acpi_pm_read(p, reg);
		else if (stop == VM_RUNNING)
			stop = acpi_pm_write(p, reg, data[i]);
	}
	pthread_mutex_unlock(&p->lock);
	if (stop != VM_RUNNING)
		vm_request_stop(p->vm, stop, 0);
}

int acpi_pm_init(struct acpi_pm *p, struct vm *vm)
{
	int ret;

	memset(p, 0, sizeof(*p));
	p->vm = vm;
	ret = pthread_mutex_init(&p->lock, NULL);
	if (ret)
		return -ret;
	ret = bus_register(&vm->pio, PLATFORM_PORT_ACPI_SLEEP_CTL,
			   ACPI_PM_NPORTS, acpi_pm_io, p, "acpi-pm");
	if (ret) {
		pthread_mutex_destroy(&p->lock);
		return ret;
	}
	p->initialized = true;
	return 0;
}

int acpi_pm_post_load(struct acpi_pm *p)
{
	(void)p;
	return 0;
}

void acpi_pm_destroy(struct acpi_pm *p)
{
	if (!p->initialized)
		return;
	pthread_mutex_destroy(&p->lock);
	p->initialized = false;
}

static int acpi_pm_validate(const void *obj)
{
	const struct acpi_pm *p = obj;

	/* Only bits the device itself can set. */
	if ((p->sleep_ctl & ~ACPI_SLP_TYP_MASK) ||
	    (p->sleep_sts & ~ACPI_WAK_STS))
		return -EINVAL;
	return 0;
}

static const struct state_field acpi_pm_state_fields[] = {
	STATE_U8(struct acpi_pm, sleep_ctl, 1),
	STATE_U8(struct acpi_pm, sleep_sts, 1),
};

const struct state_desc acpi_pm_state_desc = {
	.name = "acpi-pm",
	.version = 1,
	.min_version = 1,
	.fields = acpi_pm_state_fields,
	.nfields = STATE_NFIELDS(acpi_pm_state_fields),
	.validate = acpi_pm_validate,
};
