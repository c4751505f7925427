/* Hardware-reduced ACPI power management: the sleep control, sleep status
 * and reset registers the FADT points at (ACPI 6.4, 4.8.3.7 and 4.8.3.6). */
#ifndef STASIS_ACPI_PM_H
#define STASIS_ACPI_PM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapshot/state.h"

struct vm;

struct acpi_pm {
	pthread_mutex_t lock;
	struct vm *vm;
	bool initialized;

	/* Saved state (acpi_pm_state_desc). */
	uint8_t sleep_ctl; /* SLP_TYP as last written; SLP_EN reads 0 */
	uint8_t sleep_sts; /* WAK_STS */
};

extern const struct state_desc acpi_pm_state_desc;

/* Claims PLATFORM_PORT_ACPI_SLEEP_CTL, _STS and _RESET (one byte each,
 * contiguous) on vm->pio. SLP_EN with SLP_TYP == PLATFORM_ACPI_S5_SLP_TYP
 * stops the VM with VM_STOP_POWEROFF; PLATFORM_ACPI_RESET_VALUE written to
 * the reset register stops it with VM_STOP_RESET. Returns 0 or -errno. */
int acpi_pm_init(struct acpi_pm *p, struct vm *vm);

/* Nothing derived to rebuild (the SCI is never raised). Returns 0. */
int acpi_pm_post_load(struct acpi_pm *p);

/* Safe on a zeroed or never-initialised struct. */
void acpi_pm_destroy(struct acpi_pm *p);

#endif
