/* smp.c - starts the APs listed in the MADT with INIT-SIPI-SIPI (SDM vol.
 * 3A 9.4.4.1) from ring 3, one at a time, each with its own ring-0 block
 * and ring-3 stack. */
#include "runtime.h"

#define ICR_INIT 0x00004500 /* INIT, level assert */
#define ICR_STARTUP 0x00004600 /* start-up; vector = page number */
#define LOW_MEM_TOP 0xa0000
#define AP_START_TIMEOUT_US 5000000

/* A RAM page below 640 KiB for the real-mode trampoline (the SIPI vector
 * is a page number below 1 MiB), from 0x8000 up: clear of the real-mode
 * IVT and BIOS data area at the bottom. */
static uint64_t trampoline_page(void)
{
	const struct guest_boot_info *b = &guest_kit.boot;
	uint64_t page = 0x8000;
	unsigned int i;

	for (; page + 0x1000 <= LOW_MEM_TOP; page += 0x1000)
		for (i = 0; i < b->memmap_count; i++)
			if (b->memmap[i].type == GUEST_MEM_RAM &&
			    b->memmap[i].start <= page &&
			    page + 0x1000 <=
				b->memmap[i].start + b->memmap[i].size)
				return page;
	return 0;
}

static struct guest_cpu *ap_prepare(unsigned int index, uint32_t apic_id,
				    void (*fn)(unsigned int))
{
	struct guest_cpu *cpu =
	    guest_alloc(GUEST_KBLOCK_SIZE, GUEST_KBLOCK_SIZE);
	void *ustack = guest_alloc(GUEST_USTACK_SIZE, GUEST_USTACK_SIZE);

	if (!cpu || !ustack)
		return NULL;
	memset(cpu, 0, sizeof(*cpu));
	cpu->index = index;
	cpu->apic_id = apic_id;
	cpu->entry = fn;
	cpu->user_stack = (uint64_t)ustack;
	*(struct guest_cpu **)ustack = cpu;
	return cpu;
}

static bool ap_wait_online(struct guest_cpu *cpu, uint64_t us)
{
	uint64_t end = guest_rdtsc() + guest_tsc_hz() / 1000000 * us;

	while (!cpu->online) {
		if (guest_rdtsc() > end)
			return false;
		guest_pause();
	}
	return true;
}

unsigned int guest_cpus_start(void (*fn)(unsigned int index))
{
	uint32_t ids[GUEST_MAX_CPUS];
	unsigned int n, i, online = 1, count = 1;
	uint32_t self = guest_lapic_id();
	uint64_t page;

	n = guest_acpi_cpus(ids, GUEST_MAX_CPUS);
	if (guest_calibrate())
		return online;
	guest_kit.cpus[0]->apic_id = self;
	page = trampoline_page();
	if (!page) {
		guest_printf("guest: no low page for the AP trampoline\n");
		return online;
	}
	memcpy((void *)page, guest_trampoline_start,
	       guest_trampoline_end - guest_trampoline_start);

	/* INIT every AP, wait the 10 ms the MP start-up algorithm asks for
	 * once, then start them one by one. */
	for (i = 0; i < n; i++) {
		if (ids[i] == self)
			continue;
		guest_kit.cpus[count] = ap_prepare(count, ids[i], fn);
		if (!guest_kit.cpus[count]) {
			guest_printf("guest: out of memory for cpu %u\n",
				     count);
			break;
		}
		guest_lapic_send_ipi(ids[i], ICR_INIT);
		count++;
	}
	guest_kit.cpus_known = count;
	guest_delay_us(10000);
	for (i = 1; i < count; i++) {
		struct guest_cpu *cpu = guest_kit.cpus[i];

		guest_ap_boot_cpu = cpu;
		guest_lapic_send_ipi(cpu->apic_id, ICR_STARTUP | (page >> 12));
		if (!ap_wait_online(cpu, 200))
			guest_lapic_send_ipi(cpu->apic_id,
					     ICR_STARTUP | (page >> 12));
		if (!ap_wait_online(cpu, AP_START_TIMEOUT_US)) {
			guest_printf("guest: cpu %u (apic %u) did not start\n",
				     i, cpu->apic_id);
			continue;
		}
		online++;
	}
	return online;
}

unsigned int guest_cpus_known(void)
{
	return guest_kit.cpus_known;
}

struct guest_cpu *guest_cpu(unsigned int index)
{
	return index < guest_kit.cpus_known ? guest_kit.cpus[index] : NULL;
}
