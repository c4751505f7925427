/* Loading a kernel into guest memory: PVH ELF images (the guest kit, a Linux
 * vmlinux with its PVH note), Linux bzImage through the 64-bit boot
 * protocol, and a plain ELF64 vmlinux; plus the e820 map and ACPI tables
 * every boot path shares. Nothing here touches KVM: the result is guest
 * memory contents and the boot CPU's initial state. */
#ifndef STASIS_BOOT_H
#define STASIS_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"

/* Largest kernel and initrd image stasis reads. */
#define BOOT_KERNEL_MAX (512ull << 20)
#define BOOT_INITRD_MAX (2ull << 30)

enum boot_kind {
	BOOT_KIND_PVH, /* ELF with XEN_ELFNOTE_PHYS32_ENTRY */
	BOOT_KIND_BZIMAGE, /* Linux boot protocol >= 2.12, 64-bit entry */
	BOOT_KIND_ELF64, /* ELF64 without PVH note: Linux 64-bit entry */
};

struct boot_config {
	const uint8_t *kernel; /* whole image file */
	size_t kernel_len;
	const uint8_t *initrd; /* NULL when none */
	size_t initrd_len;
	const char *cmdline; /* never NULL; "" for none */
	unsigned ncpus;
	/* Where the VM Generation ID lives (PLATFORM_VMGENID_ADDR), or 0 for
	 * no generation ID device in the ACPI tables. */
	gpa_t vmgenid;
};

/* Initial state of the boot CPU; see PLATFORM_BOOT_* selectors. */
struct boot_cpu {
	bool long_mode; /* false: 32-bit flat protected mode, paging off */
	uint64_t rip;
	uint64_t rbx; /* PVH: hvm_start_info address */
	uint64_t rsi; /* Linux 64-bit protocol: boot_params address */
	uint64_t cr3; /* long mode: identity-mapped page tables */
	uint64_t gdt_base;
	uint16_t gdt_limit;
};

struct boot_result {
	enum boot_kind kind;
	gpa_t kernel_start, kernel_end;
	gpa_t initrd_addr; /* 0 when none */
	uint64_t initrd_size;
	gpa_t rsdp;
};

/* What an image file is, from its content alone. Returns 0 or -EINVAL with a
 * one-line reason in @err. */
int boot_probe(const uint8_t *img, size_t len, enum boot_kind *kind, char *err,
	       size_t errlen);

/* Loads kernel, initrd, command line, e820 map and ACPI tables into @mem and
 * fills @cpu. Returns 0 or -errno with a one-line reason in @err (-EINVAL: a
 * malformed image; -E2BIG: it does not fit in guest memory). */
int boot_load(struct guest_mem *mem, const struct boot_config *cfg,
	      struct boot_cpu *cpu, struct boot_result *res, char *err,
	      size_t errlen);

/* e820 types (ACPI 6.4, 15.1). */
#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

#define E820_MAX_ENTRIES 16

/* The guest's memory map: low RAM, EBDA and ISA hole reserved, RAM from
 * 1 MiB, RAM above 4 GiB, the KVM TSS pages reserved. Returns the count. */
size_t e820_build(const struct guest_mem *mem, struct e820_entry *out,
		  size_t max);

/* Writes RSDP, XSDT, MADT (one LAPIC per CPU, the IOAPIC, ISA overrides),
 * FADT (hardware-reduced, sleep and reset registers), DSDT (\_S5) and,
 * when @vmgenid is not 0, an SSDT with the VM Generation ID device whose
 * ADDR returns @vmgenid and the Generic Event Device that notifies it,
 * into the PLATFORM_ACPI_TABLES area (the ID itself is the caller's).
 * Returns 0 or -errno. */
int acpi_build(struct guest_mem *mem, unsigned ncpus, gpa_t vmgenid,
	       gpa_t *rsdp);

#endif
