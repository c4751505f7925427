/* entry.S - boot entries (PVH, Linux 32- and 64-bit), the switch to long
 * mode, the AP real-mode trampoline, interrupt stubs and the ring-3 entry.
 * All of it runs in ring 0 (sections .head.text and .text.ring0). Ring-0
 * code here sticks to plain moves, stack ops and the system
 * instructions it needs (see docs/guest-kit.md, "ring-0 constraints"). */
#include "guest-layout.h"

#define CR0_PE 0x00000001
#define CR0_NW 0x20000000
#define CR0_CD 0x40000000
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define CR4_SMEP 0x100000
#define CR4_SMAP 0x200000
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

/* Page-table entry bits (SDM vol. 3A 4.5). Every page is user-accessible:
 * ring 3 reaches the LAPIC, ACPI tables and all RAM directly. */
#define PTE_P 0x01
#define PTE_W 0x02
#define PTE_U 0x04
#define PTE_PWT 0x08
#define PTE_PCD 0x10
#define PTE_PS 0x80
#define PTE_TABLE (PTE_P | PTE_W | PTE_U)
#define PTE_LARGE (PTE_P | PTE_W | PTE_U | PTE_PS)

/* Xen ELF note type 18, XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/
 * elfnote.h): the 32-bit physical entry point used by PVH loaders. */
	.section .note.xen, "a"
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 4			/* descsz */
	.long 18		/* type */
	.asciz "Xen"
	.balign 4
	.long guest_entry
	.balign 4

/*
 * Image offset 0 (physical 0x100000): the PVH entry, which is also
 * code32_start of the bzImage. PVH passes the start info in %ebx
 * (hvm_start_info ABI); the Linux 32-bit boot protocol passes boot_params
 * in %esi and %ebx = 0 (boot.rst, "32-bit boot protocol"). The PVH magic
 * tells them apart. Both: flat 32-bit protected mode, paging off.
 */
	.section .head.text, "ax"
	.code32
	.globl guest_entry
guest_entry:
	cli
	cld
	movl $GUEST_BOOT_LINUX32, %eax
	movl %esi, %edx
	cmpl $GUEST_PVH_MAGIC, (%ebx)
	jne 1f
	movl $GUEST_BOOT_PVH, %eax
	movl %ebx, %edx
1:	movl %eax, guest_boot_protocol
	movl %edx, guest_boot_info_addr
	lgdt guest_gdt_ptr
	ljmp $GUEST_SEL_CODE32, $start32

/* Image offset 0x200: the 64-bit Linux boot protocol entry (boot.rst,
 * "64-bit boot protocol"): long mode, identity-mapped, %rsi = boot_params. */
	.org 0x200
	.code64
	.globl guest_entry_linux64
guest_entry_linux64:
	cli
	cld
	movl $GUEST_BOOT_LINUX64, guest_boot_protocol(%rip)
	movq %rsi, guest_boot_info_addr(%rip)
	/* The protocol promises no stack. Our pages are all user pages, so
	 * SMEP/SMAP, if the loader set them, must go before our CR3 does. */
	leaq guest_bsp_kblock + GUEST_KBLOCK_SIZE(%rip), %rsp
	movq %cr4, %rax
	andq $~(CR4_SMEP | CR4_SMAP), %rax
	movq %rax, %cr4
	movl $guest_pml4, %eax
	movq %rax, %cr3
	lgdt guest_gdt_ptr(%rip)
	pushq $GUEST_SEL_CODE64
	leaq 1f(%rip), %rax
	pushq %rax
	lretq
1:	movl $GUEST_SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	jmp bsp_start64

	.section .text.ring0, "ax"
	.code32
start32:
	movl $GUEST_SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $bsp_start64, %edi
	/* fall through */

/* Protected mode, paging off -> long mode (SDM vol. 3A 10.8.5). Shared by
 * the boot CPU and the APs; %edi holds the 64-bit continuation. */
long_mode_enter32:
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $guest_pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	/* An AP leaves INIT with caching disabled (CD, NW set). */
	movl %cr0, %eax
	andl $~(CR0_CD | CR0_NW), %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $GUEST_SEL_CODE64, $1f
	.code64
1:	movl %edi, %edi
	jmp *%rdi

bsp_start64:
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	leaq guest_bsp_kblock + GUEST_KBLOCK_SIZE(%rip), %rsp
	call guest_ring0_start_bsp
2:	hlt
	jmp 2b

/*
 * AP start-up (SDM vol. 3A 9.4.4): the SIPI starts the AP in real mode at
 * vector * 0x1000. This block is copied to that page; everything in it is
 * addressed relative to %cs. It loads our GDT and jumps straight to 32-bit
 * code in the image.
 */
	.code16
	.globl guest_trampoline_start, guest_trampoline_end
guest_trampoline_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl tramp_gdt_ptr - guest_trampoline_start
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $GUEST_SEL_CODE32, $ap_start32
	.balign 4
tramp_gdt_ptr:
	.word GUEST_GDT_SIZE - 1
	.long guest_gdt
guest_trampoline_end:

	.code32
ap_start32:
	movl $GUEST_SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $ap_start64, %edi
	jmp long_mode_enter32

	.code64
ap_start64:
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movq guest_ap_boot_cpu(%rip), %rdi
	leaq GUEST_KBLOCK_SIZE(%rdi), %rsp
	call guest_ring0_start_ap
3:	hlt
	jmp 3b

/* guest_ring0_enter_user(entry, stack, arg): iretq to ring 3 with IOPL 0
 * and interrupts off (SDM vol. 3A 6.14.3 frame layout). */
	.globl guest_ring0_enter_user
guest_ring0_enter_user:
	movl $GUEST_SEL_USER_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	pushq $GUEST_SEL_USER_DATA
	pushq %rsi
	pushq $GUEST_RFLAGS_USER
	pushq $GUEST_SEL_USER_CODE
	pushq %rdi
	movq %rdx, %rdi
	iretq

/*
 * Interrupt stubs, one per vector at a 16-byte stride so ring0.c can fill
 * the IDT arithmetically. Vectors that push an error code (SDM vol. 3A
 * table 6-1) get none pushed here; the rest push 0 to keep one frame.
 */
	.balign 16
	.globl guest_isr_table
guest_isr_table:
	vector = 0
	.rept 256
	.balign 16
	.if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
	.else
	pushq $0
	.endif
	pushq $vector
	jmp isr_report
	vector = vector + 1
	.endr

/* Fatal path: save the registers, report, exit. Never returns. */
isr_report:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call guest_ring0_trap
4:	hlt
	jmp 4b

/* LAPIC timer: count the tick in this CPU's block, EOI, return. Kept to a
 * handful of instructions: on some hosts ring 0 is emulated. */
	.balign 16
	.globl guest_isr_timer
guest_isr_timer:
	pushq %rax
	movq %rsp, %rax
	andq $-GUEST_KBLOCK_SIZE, %rax
	incq GUEST_CPU_TICKS(%rax)
	movl $GUEST_LAPIC_EOI, %eax
	movl $0, (%rax)
	popq %rax
	iretq

/*
 * #GP. Ring 3 runs at IOPL 0, so its sti and cli (SDM vol. 2B, STI, CLI)
 * and its hlt (privileged) trap here with error code 0. Carry out those
 * three on its behalf and step over the one-byte instruction: sti and cli
 * set or clear IF in the frame that iretq restores; hlt is "sti; hlt;
 * cli" here, waiting for the next interrupt (sti's one-instruction
 * shadow makes that race-free). Anything else is fatal and reported as
 * before. A handful of instructions: on some hosts ring 0 is emulated.
 * Frame: error code, rip, cs, rflags, rsp, ss; plus %rax once pushed.
 */
	.balign 16
	.globl guest_isr_gp
guest_isr_gp:
	testb $3, 16(%rsp)
	jz gp_fatal
	cmpq $0, (%rsp)
	jne gp_fatal
	pushq %rax
	movq 16(%rsp), %rax
	movb (%rax), %al
	cmpb $0xf4, %al		/* hlt */
	je gp_hlt
	cmpb $0xfb, %al		/* sti */
	je gp_sti
	cmpb $0xfa, %al		/* cli */
	jne gp_fatal_pop
	andq $~GUEST_RFLAGS_IF, 32(%rsp)
	jmp gp_step
gp_sti:
	orq $GUEST_RFLAGS_IF, 32(%rsp)
	jmp gp_step
gp_hlt:
	sti
	hlt
	cli
gp_step:
	incq 16(%rsp)
	popq %rax
	addq $8, %rsp
	iretq
gp_fatal_pop:
	popq %rax
gp_fatal:
	pushq $13
	jmp isr_report

/* Device vectors (MSI-X, edge-triggered): vector GUEST_VEC_DEVICE + i
 * counts into guest_irq_counts[i], then EOI. One 16-byte slot per vector
 * so ring0.c can fill the IDT arithmetically; the ring-3 driver does the
 * real work by looking at its queues. Interrupts are only ever sent to
 * the boot CPU, so the increment needs no lock. */
	.balign 16
	.globl guest_isr_device
guest_isr_device:
	i = 0
	.rept GUEST_DEVICE_VECTORS
	.balign 16
	incq guest_irq_counts + 8 * i(%rip)
	jmp isr_device_eoi
	i = i + 1
	.endr
isr_device_eoi:
	pushq %rax
	movl $GUEST_LAPIC_EOI, %eax
	movl $0, (%rax)
	popq %rax
	iretq

/* LAPIC spurious vector: no EOI (SDM vol. 3A 11.9). */
	.balign 16
	.globl guest_isr_spurious
guest_isr_spurious:
	iretq

	.data
	.balign 8
	.globl guest_boot_protocol, guest_boot_info_addr, guest_ap_boot_cpu
guest_boot_protocol:
	.long 0
	.long 0
guest_boot_info_addr:
	.quad 0
guest_ap_boot_cpu:
	.quad 0
	.globl guest_irq_counts
guest_irq_counts:
	.fill GUEST_DEVICE_VECTORS, 8, 0

/* GDT (SDM vol. 3A 3.4.5): fixed entries, then one 16-byte TSS descriptor
 * per CPU that ring0.c fills in. */
	.balign 16
	.globl guest_gdt
guest_gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08 code64, DPL 0 */
	.quad 0x00cf92000000ffff	/* 0x10 data, DPL 0 */
	.quad 0x00cf9a000000ffff	/* 0x18 code32, DPL 0 */
	.quad 0x00cff2000000ffff	/* 0x20 data, DPL 3 */
	.quad 0x00affa000000ffff	/* 0x28 code64, DPL 3 */
	.fill 2 * GUEST_MAX_CPUS, 8, 0
guest_gdt_end:

	.balign 8
	.word 0, 0, 0
guest_gdt_ptr:
	.word GUEST_GDT_SIZE - 1
	.quad guest_gdt

/*
 * Identity map of the first 4 GiB, built at assembly time so boot runs no
 * loop: 2 MiB pages, the ones holding the IOAPIC and LAPIC uncached. PDPT
 * entries 4..511 start non-present; ring 3 fills them with 2 MiB-page
 * directories for the RAM the memory map reports (boot.c,
 * guest_boot_map_high). 1 GiB pages are never used: some KVM hosts report
 * them in CPUID and then refuse them.
 */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl guest_pml4, guest_pdpt
guest_pml4:
	.quad guest_pdpt + PTE_TABLE
	.fill 511, 8, 0
guest_pdpt:
	.quad guest_pd + PTE_TABLE
	.quad guest_pd + 0x1000 + PTE_TABLE
	.quad guest_pd + 0x2000 + PTE_TABLE
	.quad guest_pd + 0x3000 + PTE_TABLE
	.fill 508, 8, 0
guest_pd:
	page = 0
	.rept 2048
	.if (page == (0xfec00000 >> 21)) || (page == (0xfee00000 >> 21))
	.quad (page << 21) + PTE_LARGE + PTE_PCD + PTE_PWT
	.else
	.quad (page << 21) + PTE_LARGE
	.endif
	page = page + 1
	.endr

	.section .note.GNU-stack, "", @progbits
