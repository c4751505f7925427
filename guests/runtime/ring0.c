/* ring0.c - the whole ring-0 part in C: per-CPU TSS/IDT/FPU setup before
 * dropping to ring 3, and the fatal-exception report. Kept short and
 * loop-light: on some hosts every ring-0 instruction is emulated. */
#include "runtime.h"

/* The IST stack sits between struct guest_cpu and GUEST_IST_TOP: keep it
 * at least 8 KiB deep. */
_Static_assert(sizeof(struct guest_cpu) + 0x2000 <= GUEST_IST_TOP,
	       "struct guest_cpu leaves too little room for the IST stack");
_Static_assert(__builtin_offsetof(struct guest_cpu, iomap) ==
		   __builtin_offsetof(struct guest_cpu, tss) +
		       sizeof(struct guest_tss),
	       "the I/O bitmap must follow the TSS");

#define CR0_MP (1u << 1)
#define CR0_EM (1u << 2)
#define CR0_TS (1u << 3)
#define CR0_NE (1u << 5)
#define CR4_OSFXSR (1u << 9)
#define CR4_OSXMMEXCPT (1u << 10)
#define CR4_OSXSAVE (1u << 18)
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_ENABLE (1u << 11)

/* XCR0 bits (SDM vol. 1 13.3): x87, SSE, AVX, and the three AVX-512
 * components, which must be enabled together. */
#define XCR0_X87_SSE 0x3ull
#define XCR0_AVX 0x4ull
#define XCR0_AVX512 0xe0ull

struct idt_gate {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type; /* P, DPL, type 0xe = 64-bit interrupt gate */
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t reserved;
};

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));

uint8_t guest_bsp_kblock[GUEST_KBLOCK_SIZE]
    __attribute__((aligned(GUEST_KBLOCK_SIZE)));
uint8_t guest_bsp_ustack[GUEST_USTACK_SIZE]
    __attribute__((aligned(GUEST_USTACK_SIZE)));

static const char *const exception_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "res",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "res", "res",
	"res", "res", "res", "res", "#HV", "#VC", "#SX", "res",
};

static GUEST_RING0 void idt_set(unsigned int vector, const void *handler,
				unsigned int dpl, unsigned int ist)
{
	uint64_t addr = (uint64_t)handler;
	struct idt_gate *g = &idt[vector];

	g->offset_low = addr & 0xffff;
	g->selector = GUEST_SEL_CODE64;
	g->ist = ist;
	g->type = 0x8e | (dpl << 5);
	g->offset_mid = (addr >> 16) & 0xffff;
	g->offset_high = addr >> 32;
}

static GUEST_RING0 void idt_build(void)
{
	unsigned int v;

	for (v = 0; v < 256; v++)
		idt_set(v, guest_isr_table + 16 * v, 0, 0);
	for (v = 0; v < GUEST_DEVICE_VECTORS; v++)
		idt_set(GUEST_VEC_DEVICE + v, guest_isr_device + 16 * v, 0, 0);
	/* NMI, #DF and #MC run on IST1 so a broken stack still reports. */
	idt[2].ist = 1;
	idt[8].ist = 1;
	idt[18].ist = 1;
	/* int3 from ring 3 reports as #BP, not as #GP. No other gate is open
	 * to ring 3: some hosts raise #UD for any ring-3 int n. */
	idt_set(3, guest_isr_table + 16 * 3, 3, 0);
	/* Ring 3's trapped sti, cli and hlt (entry.S). */
	idt_set(13, guest_isr_gp, 0, 0);
	idt_set(GUEST_VEC_TIMER, guest_isr_timer, 0, 0);
	idt_set(GUEST_VEC_SPURIOUS, guest_isr_spurious, 0, 0);
}

static GUEST_RING0 uint64_t read_cr(int which)
{
	uint64_t v = 0;

	if (which == 0)
		__asm__ volatile("mov %%cr0, %0" : "=r"(v));
	else if (which == 2)
		__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	else
		__asm__ volatile("mov %%cr4, %0" : "=r"(v));
	return v;
}

/* SSE always; XSAVE, AVX and AVX-512 state when CPUID offers them, so
 * ring-3 programs can use vector registers (SDM vol. 3A 13.1, 13.3). */
static GUEST_RING0 void fpu_enable(void)
{
	uint32_t r[4];
	uint64_t cr0 = read_cr(0), cr4 = read_cr(4), xcr0 = XCR0_X87_SSE;
	uint64_t supported;
	bool avx;

	cr0 = (cr0 & ~(uint64_t)(CR0_EM | CR0_TS)) | CR0_MP | CR0_NE;
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
	cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
	guest_cpuid_raw(1, 0, r);
	if (!(r[2] & (1u << 26))) {
		__asm__ volatile("mov %0, %%cr4" : : "r"(cr4));
		return;
	}
	cr4 |= CR4_OSXSAVE;
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4));
	avx = r[2] & (1u << 28);
	guest_cpuid_raw(0xd, 0, r);
	supported = ((uint64_t)r[3] << 32) | r[0];
	if (avx && (supported & XCR0_AVX)) {
		xcr0 |= XCR0_AVX;
		guest_cpuid_raw(7, 0, r);
		if ((r[1] & (1u << 16)) &&
		    (supported & XCR0_AVX512) == XCR0_AVX512)
			xcr0 |= XCR0_AVX512;
	}
	__asm__ volatile("xsetbv"
			 :
			 : "c"(0), "a"((uint32_t)xcr0),
			   "d"((uint32_t)(xcr0 >> 32)));
}

static GUEST_RING0 void cpu_setup(struct guest_cpu *cpu)
{
	uint8_t *block = (uint8_t *)cpu;
	uint64_t tss = (uint64_t)&cpu->tss;
	uint64_t *desc = &guest_gdt[GUEST_GDT_FIXED + 2 * cpu->index];
	uint16_t sel = GUEST_SEL_TSS0 + 16 * cpu->index;
	struct desc_ptr idtr = { sizeof(idt) - 1, (uint64_t)idt };
	uint32_t lo, hi;

	cpu->tss.rsp[0] = (uint64_t)(block + GUEST_KBLOCK_SIZE);
	cpu->tss.ist[0] = (uint64_t)(block + GUEST_IST_TOP);
	/* Every port open to ring 3 (the bitmap is zero: bss for the boot
	 * CPU, cleared by ap_prepare for the others), and the byte past the
	 * last port's bit all ones (SDM vol. 1 19.5.2). */
	cpu->tss.iomap_base = sizeof(struct guest_tss);
	cpu->iomap[GUEST_IOMAP_BYTES] = 0xff;
	/* Available 64-bit TSS descriptor (SDM vol. 3A 8.2.3); its limit
	 * takes in the I/O bitmap. */
	desc[0] = (sizeof(struct guest_tss) + sizeof(cpu->iomap) - 1) |
		  ((tss & 0xffffff) << 16) | (0x89ull << 40) |
		  (((tss >> 24) & 0xff) << 56);
	desc[1] = tss >> 32;
	__asm__ volatile("ltr %0" : : "r"(sel));
	__asm__ volatile("lidt %0" : : "m"(idtr));

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_APIC_BASE));
	if (!(lo & APIC_BASE_ENABLE))
		__asm__ volatile("wrmsr"
				 :
				 : "c"(MSR_APIC_BASE),
				   "a"(lo | APIC_BASE_ENABLE), "d"(hi));
	fpu_enable();
}

GUEST_RING0 void guest_ring0_start_bsp(void)
{
	struct guest_cpu *cpu = (struct guest_cpu *)guest_bsp_kblock;

	cpu->user_stack = (uint64_t)guest_bsp_ustack;
	*(struct guest_cpu **)guest_bsp_ustack = cpu;
	idt_build();
	cpu_setup(cpu);
	/* -8: the return-address slot a callee expects (SysV ABI 3.2.2). */
	guest_ring0_enter_user(guest_runtime_bsp_main,
			       cpu->user_stack + GUEST_USTACK_SIZE - 8, NULL);
}

GUEST_RING0 void guest_ring0_start_ap(struct guest_cpu *cpu)
{
	cpu_setup(cpu);
	guest_ring0_enter_user(guest_runtime_ap_main,
			       cpu->user_stack + GUEST_USTACK_SIZE - 8, cpu);
}

GUEST_RING0 void guest_ring0_trap(struct guest_trap_frame *f)
{
	struct guest_cpu *cpu =
	    (struct guest_cpu *)((uint64_t)f &
				 ~(uint64_t)(GUEST_KBLOCK_SIZE - 1));
	char line[200];
	int n;

	if (f->vector < 32) {
		n = guest_snprintf(line, sizeof(line),
				   "guest: exception %lu %s cpu=%u rip=0x%lx "
				   "err=0x%lx cr2=0x%lx rsp=0x%lx cs=0x%lx\n",
				   f->vector, exception_names[f->vector],
				   cpu->index, f->rip, f->error, read_cr(2),
				   f->rsp, f->cs);
	} else {
		n = guest_snprintf(
		    line, sizeof(line),
		    "guest: unexpected interrupt %lu cpu=%u rip=0x%lx\n",
		    f->vector, cpu->index, f->rip);
	}
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	guest_serial_write(line, n, true);
	guest_exit(f->vector < 32 ? GUEST_EXIT_EXCEPTION + f->vector
				  : GUEST_EXIT_UNEXPECTED_IRQ);
}
