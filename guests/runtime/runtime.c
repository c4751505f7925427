/* runtime.c - the ring-3 side of start-up on each CPU, and small queries
 * about the CPU. */
#include "runtime.h"

struct guest_kit guest_kit;

void guest_runtime_bsp_main(void *unused)
{
	(void)unused;
	guest_kit.cpus[0] = (struct guest_cpu *)guest_bsp_kblock;
	guest_kit.cpus[0]->online = 1;
	guest_kit.cpus_known = 1;
	guest_serial_init();
	guest_boot_parse();
	guest_main();
	guest_exit(GUEST_EXIT_OK);
}

void guest_runtime_ap_main(void *arg)
{
	struct guest_cpu *cpu = arg;

	guest_lapic_init_local();
	cpu->online = 1;
	cpu->entry(cpu->index);
	for (;;)
		guest_wait_interrupt();
}

void guest_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	guest_cpuid_raw(leaf, sub, out);
}

/* 0 when the OS side of XSAVE is off (CPUID.1:ECX.OSXSAVE, bit 27). */
uint64_t guest_xcr0(void)
{
	uint32_t r[4], lo, hi;

	guest_cpuid_raw(1, 0, r);
	if (!(r[2] & (1u << 27)))
		return 0;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}
