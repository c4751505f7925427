/* Recording fakes of vm_set_irq() and vm_request_stop() for device tests;
 * see fake_vm.h. */
#include "fake_vm.h"

#include <errno.h>
#include <string.h>

int fake_irq_level[PLATFORM_IOAPIC_PINS];
unsigned fake_irq_raises[PLATFORM_IOAPIC_PINS];
unsigned fake_irq_bad_gsi;
unsigned fake_stop_count;
enum vm_stop_reason fake_stop_reason;
int fake_stop_status;

void fake_vm_reset(void)
{
	memset(fake_irq_level, 0, sizeof(fake_irq_level));
	memset(fake_irq_raises, 0, sizeof(fake_irq_raises));
	fake_irq_bad_gsi = 0;
	fake_stop_count = 0;
	fake_stop_reason = VM_RUNNING;
	fake_stop_status = 0;
}

int vm_set_irq(struct vm *vm, uint32_t gsi, int level)
{
	(void)vm;
	if (gsi >= PLATFORM_IOAPIC_PINS) {
		fake_irq_bad_gsi++;
		return -EINVAL; /* as KVM_IRQ_LINE would */
	}
	if (level && !fake_irq_level[gsi])
		fake_irq_raises[gsi]++;
	fake_irq_level[gsi] = level;
	return 0;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int exit_status)
{
	(void)vm;
	fake_stop_count++;
	fake_stop_reason = reason;
	fake_stop_status = exit_status;
}
