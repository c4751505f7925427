/* runtime.h - the guest kit runtime's internal interface: state shared by
 * its files and the hooks between assembly, ring 0 and ring 3. */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

#include "guest.h"

/* Register frame built by the exception stubs in entry.S. */
struct guest_trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

/* The identity map: entry.S maps the first 4 GiB; boot.c extends it with
 * 2 MiB pages over the RAM above, up to one PDPT's reach. Page-table
 * entry bits (SDM vol. 3A 4.5): present, writable, user, page size. */
#define GUEST_MAP_LOW (4ull << 30)
#define GUEST_MAP_LIMIT (512ull << 30)
#define GUEST_PTE_TABLE 0x07ull
#define GUEST_PTE_LARGE 0x87ull

/* All mutable runtime state, in one place. */
struct guest_kit {
	struct guest_boot_info boot;
	struct guest_spinlock serial_lock;
	struct guest_spinlock calibrate_lock;
	uint64_t tsc_hz;
	uint64_t lapic_hz; /* LAPIC timer counts per second at divide 16 */
	uint64_t alloc_next;
	uint64_t map_top; /* end of the identity map usable for RAM */
	struct guest_cpu *cpus[GUEST_MAX_CPUS];
	unsigned int cpus_known;
	struct guest_pci_dev pci[GUEST_PCI_MAX_FUNCS];
	unsigned int pci_count;
	bool pci_scanned;
	unsigned int irq_slots_used; /* device vectors handed out */
};

extern struct guest_kit guest_kit;

/* entry.S */
extern uint32_t guest_boot_protocol;
extern uint64_t guest_boot_info_addr;
extern struct guest_cpu *volatile guest_ap_boot_cpu;
extern uint64_t guest_gdt[];
extern uint64_t guest_pdpt[512];
extern const uint8_t guest_trampoline_start[], guest_trampoline_end[];
extern const uint8_t guest_isr_table[], guest_isr_timer[], guest_isr_gp[],
    guest_isr_spurious[], guest_isr_device[];
extern uint8_t guest_image_start[], guest_image_end[];
__attribute__((noreturn)) void
guest_ring0_enter_user(void (*entry)(void *), uint64_t stack, void *arg);

/* Code that runs only in ring 0 goes in its own section, which the link
 * keeps at the start of the image (guest.ld) so that the ring-3 check
 * (guests/tools/check-ring3.sh) knows where ring-3 code begins. */
#define GUEST_RING0 __attribute__((section(".text.ring0")))

/* ring0.c: runs in ring 0, on the CPU's kernel stack. */
void guest_ring0_start_bsp(void);
void guest_ring0_start_ap(struct guest_cpu *cpu);
void guest_ring0_trap(struct guest_trap_frame *frame);
extern uint8_t guest_bsp_kblock[GUEST_KBLOCK_SIZE];
extern uint8_t guest_bsp_ustack[GUEST_USTACK_SIZE];

/* Ring-3 entry points the ring-0 code iretq's to. */
void guest_runtime_bsp_main(void *unused);
void guest_runtime_ap_main(void *cpu);

void guest_serial_init(void);
void guest_serial_write(const char *s, size_t n, bool bounded);
void guest_boot_parse(void);
void guest_lapic_init_local(void);
uint32_t guest_lapic_id(void);
void guest_lapic_send_ipi(uint32_t apic_id, uint32_t icr_low);
unsigned int guest_acpi_cpus(uint32_t *apic_ids, unsigned int max);
int guest_acpi_gsi(unsigned int line, uint64_t *ioapic, unsigned int *pin,
		   uint16_t *flags);

static inline void guest_cpuid_raw(uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(out[0]), "=b"(out[1]), "=c"(out[2]),
			   "=d"(out[3])
			 : "a"(leaf), "c"(sub));
}

#endif
