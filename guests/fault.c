/* fault.c - raises one CPU exception in ring 3 on purpose, to exercise the
 * runtime's fault report and exit code (32 + vector).
 * Argument: kind=pf|gp|ud|de|bp|triple (default pf). triple wipes the IDT
 * (the kit maps all memory user-accessible) and then faults, so the CPU
 * cannot deliver the fault, nor the double fault: a triple fault, which
 * the VMM must report as a crash. */
#include "guest.h"

void guest_main(void)
{
	guest_printf("fault: start\n");
	if (guest_arg_is("kind", "gp")) {
		/* A non-canonical address (SDM vol. 3A 3.3.7.1). */
		*(volatile uint64_t *)0x8000000000000000ull = 1;
	} else if (guest_arg_is("kind", "ud")) {
		__asm__ volatile("ud2");
	} else if (guest_arg_is("kind", "de")) {
		uint32_t a = 1, d = 0, zero = 0;

		__asm__ volatile("divl %2" : "+a"(a), "+d"(d) : "r"(zero));
	} else if (guest_arg_is("kind", "triple")) {
		struct {
			uint16_t limit;
			uint64_t base;
		} __attribute__((packed)) idtr;
		volatile uint8_t *idt;

		/* SIDT is allowed in ring 3 while CR4.UMIP is clear. */
		__asm__ volatile("sidt %0" : "=m"(idtr));
		idt = (volatile uint8_t *)idtr.base;
		for (uint32_t i = 0; i <= idtr.limit; i++)
			idt[i] = 0;
		__asm__ volatile("ud2");
	} else if (guest_arg_is("kind", "bp")) {
		__asm__ volatile("int3");
	} else {
		/* Beyond the identity map: 512 GiB and up is not mapped. */
		*(volatile uint64_t *)(1ull << 40) = 1;
	}
	guest_printf("fault: ERROR no fault raised\n");
	guest_exit(GUEST_EXIT_FAIL);
}
