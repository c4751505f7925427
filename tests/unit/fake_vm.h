/* Stand-ins for the core calls devices make (vm_set_irq, vm_request_stop),
 * recording what they were asked so device tests run without KVM. */
#ifndef STASIS_TEST_FAKE_VM_H
#define STASIS_TEST_FAKE_VM_H

#include "core/platform.h"
#include "core/vm.h"

/* Last level driven per GSI, and how many 0 -> 1 transitions. */
extern int fake_irq_level[PLATFORM_IOAPIC_PINS];
extern unsigned fake_irq_raises[PLATFORM_IOAPIC_PINS];
/* Calls to vm_set_irq() for a GSI outside the IOAPIC's pins. */
extern unsigned fake_irq_bad_gsi;

/* Number of vm_request_stop() calls and the arguments of the last one. */
extern unsigned fake_stop_count;
extern enum vm_stop_reason fake_stop_reason;
extern int fake_stop_status;

/* Clears everything recorded. */
void fake_vm_reset(void);

#endif
