/* guest-layout.h - constants shared by the guest kit's assembly and C code.
 * Everything here is part of the image layout; change asm and C together. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

/* Load address: PVH and the Linux boot protocol both put us at 1 MiB. */
#define GUEST_LOAD_ADDR 0x100000

/* GDT selectors (Intel SDM vol. 3A 3.4.2). User selectors carry RPL 3. */
#define GUEST_SEL_CODE64 0x08
#define GUEST_SEL_DATA 0x10
#define GUEST_SEL_CODE32 0x18
#define GUEST_SEL_USER_DATA 0x23
#define GUEST_SEL_USER_CODE 0x2b
#define GUEST_SEL_TSS0 0x30 /* CPU n uses GUEST_SEL_TSS0 + 16 * n */

#define GUEST_MAX_CPUS 64
#define GUEST_GDT_FIXED 6 /* null, code64, data, code32, udata, ucode */
#define GUEST_GDT_SIZE (8 * (GUEST_GDT_FIXED + 2 * GUEST_MAX_CPUS))

/*
 * Per-CPU ring-0 block, aligned to its size: struct guest_cpu at the base
 * (with the TSS and its 8 KiB I/O permission bitmap), the IST stack (NMI,
 * #DF, #MC) up to GUEST_IST_TOP, the kernel stack above. Interrupt stubs
 * find struct guest_cpu by masking %rsp.
 */
#define GUEST_KBLOCK_SIZE 0x8000
#define GUEST_IST_TOP 0x5000
#define GUEST_CPU_TICKS 0 /* offset of guest_cpu.ticks */

/* The TSS I/O permission bitmap: one bit per port, 0 = allowed, for all
 * 65536 ports, then the 0xff byte the CPU may read past the last port's
 * bit (SDM vol. 1 19.5.2). */
#define GUEST_IOMAP_BYTES (65536 / 8)

/* Per-CPU ring-3 stack, aligned to its size; its lowest word points at
 * the CPU's struct guest_cpu so ring 3 can find itself from %rsp. */
#define GUEST_USTACK_SIZE 0x10000

#define GUEST_VEC_TIMER 0x40
#define GUEST_VEC_SPURIOUS 0xff
/* Device interrupts (MSI-X of the virtio drivers): vectors
 * GUEST_VEC_DEVICE .. + GUEST_DEVICE_VECTORS - 1, each only counted. */
#define GUEST_VEC_DEVICE 0x50
#define GUEST_DEVICE_VECTORS 16

#define GUEST_IOAPIC_BASE 0xfec00000
#define GUEST_LAPIC_BASE 0xfee00000
#define GUEST_LAPIC_EOI (GUEST_LAPIC_BASE + 0xb0)

/* RFLAGS for ring 3: IOPL 0 on every host (port I/O goes through the
 * TSS I/O bitmap; sti, cli and hlt trap to the #GP handler), IF clear
 * until the program enables interrupts; bit 1 is reserved-one (SDM vol. 1
 * 3.4.3). Some software-virtualised KVMs forbid ring-3 I/O and sti at any
 * IOPL, so the kit never relies on IOPL 3 anywhere. */
#define GUEST_RFLAGS_USER 0x0002
#define GUEST_RFLAGS_IF 0x200

#define GUEST_BOOT_PVH 1
#define GUEST_BOOT_LINUX32 2
#define GUEST_BOOT_LINUX64 3

/* xen/include/public/arch-x86/hvm/start_info.h */
#define GUEST_PVH_MAGIC 0x336ec578

#endif
