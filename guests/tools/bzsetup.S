/* bzsetup.S - the real-mode part of the guest bzImage: the Linux setup
 * header (boot protocol 2.15), and a small real-mode setup so BIOS
 * loaders (QEMU -M pc -kernel) can run it too. The setup acts as a 64-bit
 * boot loader would: E820 map from the BIOS, a fresh boot_params, an
 * identity map of the first GiB, then the payload's 64-bit entry.
 * Layout and fields: Linux Documentation/arch/x86/boot.rst. */

#define BP 0x1000		/* boot_params, from the setup segment base */
#define BP_E820_ENTRIES (BP + 0x1e8)
#define BP_HDR (BP + 0x1f1)
#define BP_E820_TABLE (BP + 0x2d0)
#define HDR_START 0x1f1
#define HDR_END 0x290		/* setup_header ends before 0x290 */
#define PML4 0x2000
#define PDPT 0x3000
#define PD 0x4000
#define ZERO_END 0x5000
#define STACK_TOP 0xf000	/* the command line sits at +0x10000 */
#define E820_MAX 128
#define SMAP 0x534d4150
#define BOOT_CS 0x10		/* __BOOT_CS / __BOOT_DS of the 64-bit */
#define BOOT_DS 0x18		/* boot protocol */
#define ENTRY64 0x100200	/* payload at 0x100000, 64-bit entry +0x200 */

	.code16
	.text
	.globl _start
_start:
	.org 0x1f1
setup_sects:		.byte 1
root_flags:		.word 0
syssize:		.long 0		/* mkbzimage */
ram_size:		.word 0
vid_mode:		.word 0xffff	/* NORMAL_VGA */
root_dev:		.word 0
boot_flag:		.word 0xaa55
	/* 0x200: real-mode entry, a two-byte jump */
	jmp setup_start
header:			.ascii "HdrS"
version:		.word 0x020f
realmode_swtch:		.long 0
start_sys_seg:		.word 0x1000
kernel_version:		.word 0
type_of_loader:		.byte 0
loadflags:		.byte 0x01	/* LOADED_HIGH */
setup_move_size:	.word 0
code32_start:		.long 0x100000
ramdisk_image:		.long 0
ramdisk_size:		.long 0
bootsect_kludge:	.long 0
heap_end_ptr:		.word 0
ext_loader_ver:		.byte 0
ext_loader_type:	.byte 0
cmd_line_ptr:		.long 0
initrd_addr_max:	.long 0x7fffffff
kernel_alignment:	.long 0x100000
relocatable_kernel:	.byte 0
min_alignment:		.byte 20
xloadflags:		.word 0x3	/* XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G */
cmdline_size:		.long 2047
hardware_subarch:	.long 0
hardware_subarch_data:	.quad 0
payload_offset:		.long 0
payload_length:		.long 0
setup_data:		.quad 0
pref_address:		.quad 0x100000
init_size:		.long 0		/* mkbzimage */
handover_offset:	.long 0
kernel_info_offset:	.long 0

/* Entered at CS = base/16 + 0x20, IP = 0 (boot.rst, "Running the kernel"). */
setup_start:
	cli
	cld
	movw %cs, %ax
	subw $0x20, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw $STACK_TOP, %sp

	/* Fresh boot_params and page tables, then the loader-filled header. */
	xorl %eax, %eax
	movw $BP, %di
	movw $(ZERO_END - BP) / 4, %cx
	rep stosl
	movw $HDR_START, %si
	movw $BP_HDR, %di
	movw $HDR_END - HDR_START, %cx
	rep movsb

	/* INT 15h, AX=E820h (ACPI 6.5 15.1), straight into e820_table. */
	movw $BP_E820_TABLE, %di
	xorl %ebx, %ebx
	xorw %bp, %bp
1:	movl $0xe820, %eax
	movl $SMAP, %edx
	movl $20, %ecx
	int $0x15
	jc 2f
	cmpl $SMAP, %eax
	jne 2f
	addw $20, %di
	incw %bp
	testl %ebx, %ebx
	jz 2f
	cmpw $E820_MAX, %bp
	jb 1b
2:	movw %bp, %ax
	movb %al, BP_E820_ENTRIES

	/* Fast A20 gate (port 0x92 bit 1). */
	inb $0x92, %al
	orb $0x02, %al
	andb $0xfe, %al
	outb %al, $0x92

	/* Identity-map 1 GiB with 2 MiB pages: payload, boot_params, the
	 * command line and the initrd all sit below that on a small VM. */
	xorl %ebx, %ebx
	movw %ds, %bx
	shll $4, %ebx
	leal PDPT + 3(%ebx), %eax
	movl %eax, PML4
	leal PD + 3(%ebx), %eax
	movl %eax, PDPT
	movw $PD, %di
	movl $0x83, %eax
	movw $512, %cx
3:	movl %eax, (%di)
	addl $0x200000, %eax
	addw $8, %di
	loop 3b

	leal gdt(%ebx), %eax
	movl %eax, gdt_base
	leal long64(%ebx), %eax
	movl %eax, far_target
	lgdtl gdt_ptr

	/* Long mode (SDM vol. 3A 10.8.5): PAE, CR3, EFER.LME, PE|PG. */
	movl %cr4, %eax
	orl $0x20, %eax
	movl %eax, %cr4
	leal PML4(%ebx), %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0
	ljmpl *far_target

	.code64
long64:
	movl $BOOT_DS, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %ebx, %ebx
	leaq BP(%rbx), %rsi
	movl $ENTRY64, %eax
	jmp *%rax

	.balign 8
gdt:
	.quad 0
	.quad 0
	.quad 0x00af9a000000ffff	/* BOOT_CS: 64-bit code */
	.quad 0x00cf92000000ffff	/* BOOT_DS */
gdt_ptr:
	.word 31
gdt_base:
	.long 0
far_target:
	.long 0
	.word BOOT_CS

	.org 1024		/* (setup_sects + 1) sectors */

	.section .note.GNU-stack, "", @progbits
