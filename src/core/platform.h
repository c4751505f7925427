/* The fixed shape of the stasis machine: ports, IRQ lines and addresses that
 * the devices, the ACPI tables and the boot code must all agree on. */
#ifndef STASIS_PLATFORM_H
#define STASIS_PLATFORM_H

/* Legacy ISA ports. */
#define PLATFORM_PORT_COM1 0x3f8
#define PLATFORM_PORT_COM1_LEN 8
#define PLATFORM_IRQ_COM1 4
#define PLATFORM_PORT_RTC 0x70 /* index 0x70, data 0x71 */
#define PLATFORM_PORT_RTC_LEN 2
#define PLATFORM_IRQ_RTC 8
#define PLATFORM_PORT_I8042_DATA 0x60
#define PLATFORM_PORT_I8042_CMD 0x64
#define PLATFORM_PORT_DEBUG_EXIT 0xf4
#define PLATFORM_PORT_DEBUG_EXIT_LEN 4

/* PCI configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2). */
#define PLATFORM_PORT_PCI_ADDR 0xcf8
#define PLATFORM_PORT_PCI_DATA 0xcfc

/* Hardware-reduced ACPI (ACPI 6.4, 4.1): the FADT points at these I/O
 * ports. Sleep control takes SLP_TYP/SLP_EN (4.8.3.7); the reset register
 * takes PLATFORM_ACPI_RESET_VALUE. */
#define PLATFORM_PORT_ACPI_SLEEP_CTL 0x600
#define PLATFORM_PORT_ACPI_SLEEP_STS 0x601
#define PLATFORM_PORT_ACPI_RESET 0x602
#define PLATFORM_ACPI_RESET_VALUE 0x01
#define PLATFORM_ACPI_S5_SLP_TYP 5 /* \_S5 package value in the DSDT */
#define PLATFORM_IRQ_ACPI_SCI 9
/* The Generic Event Device (ACPI 6.4, 5.6.9) the SSDT declares beside the
 * VM Generation ID device: an edge on this GSI makes OSPM run its _EVT,
 * which notifies the generation ID device (docs/devices.md). ISA IRQ 10 is
 * otherwise unused, and Linux takes ISA IRQs as edge, active high. */
#define PLATFORM_IRQ_ACPI_GED 10

/* Interrupt controllers (in-kernel, KVM). */
#define PLATFORM_LAPIC_BASE 0xfee00000ull
#define PLATFORM_IOAPIC_BASE 0xfec00000ull
#define PLATFORM_IOAPIC_PINS 24

/* 32-bit MMIO window for PCI BARs, inside the hole below 4 GiB. */
#define PLATFORM_PCI_MMIO_BASE 0xe0000000ull
#define PLATFORM_PCI_MMIO_SIZE 0x10000000ull /* 256 MiB */

/* KVM needs three pages for the VMX TSS and one for the identity map;
 * they sit just below the IOAPIC and are reserved in the e820 map. */
#define PLATFORM_KVM_IDENTITY_MAP 0xfeffc000ull
#define PLATFORM_KVM_TSS 0xfeffd000ull

/* Low memory used by the boot code (below 1 MiB; see docs/boot.md). */
#define PLATFORM_BOOT_GDT 0x1000ull
#define PLATFORM_BOOT_START_INFO 0x6000ull /* hvm_start_info + tables */
#define PLATFORM_BOOT_ZERO_PAGE 0x7000ull /* Linux boot_params */
#define PLATFORM_BOOT_PML4 0x9000ull
#define PLATFORM_BOOT_PDPT 0xa000ull
#define PLATFORM_BOOT_PD 0xb000ull /* four pages: 4 GiB of 2 MiB pages */
#define PLATFORM_BOOT_CMDLINE 0x20000ull
#define PLATFORM_BOOT_CMDLINE_MAX 0x10000ull /* 64 KiB incl. NUL */
#define PLATFORM_EBDA_START 0x9fc00ull
#define PLATFORM_ACPI_TABLES 0xe0000ull /* RSDP and tables, 128 KiB */
#define PLATFORM_ACPI_TABLES_END 0x100000ull
/* The 16-byte VM Generation ID, in the last page of the (e820-reserved)
 * ACPI table area, after the tables; the SSDT's VGEN.ADDR returns it. */
#define PLATFORM_VMGENID_ADDR 0xff000ull
#define PLATFORM_KERNEL_LOAD 0x100000ull /* 1 MiB */

#define PLATFORM_MAX_CPUS 64

/* Boot GDT selectors (at PLATFORM_BOOT_GDT). The Linux 64-bit boot protocol
 * wants __BOOT_CS = 0x10 (64-bit code) and __BOOT_DS = 0x18; PVH entry uses
 * the 32-bit code segment. */
#define PLATFORM_BOOT_CS32 0x08
#define PLATFORM_BOOT_CS64 0x10
#define PLATFORM_BOOT_DS 0x18

#endif
