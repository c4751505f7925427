/* The guest's ACPI tables (ACPI 6.4, chapter 5): RSDP, XSDT, a
 * hardware-reduced FADT, a DSDT holding \_S5, the MADT and, with a VM
 * Generation ID, an SSDT declaring it and the event device that notifies
 * it. */
#include <errno.h>
#include <string.h>

#include "boot/boot_priv.h"
#include "core/platform.h"

/* Identity written into every table header (ACPI 6.4, 5.2.6). */
#define ACPI_OEM_ID "STASIS" /* exactly 6 bytes */
#define ACPI_OEM_TABLE_ID "STASISVM" /* exactly 8 bytes */
#define ACPI_CREATOR_ID "STAS"
#define ACPI_OEM_REVISION 1
#define ACPI_CREATOR_REVISION 1

/* Tables are 16-byte aligned: the RSDP must be (5.2.5.1), the rest for
 * tidiness. */
#define ACPI_ALIGN 16

/* System Description Table Header (5.2.6). */
#define SDT_HDR_SIZE 36
#define SDT_LENGTH 4
#define SDT_REVISION 8
#define SDT_CHECKSUM 9
#define SDT_OEM_ID 10
#define SDT_OEM_TABLE_ID 16
#define SDT_OEM_REVISION 24
#define SDT_CREATOR_ID 28
#define SDT_CREATOR_REVISION 32

/* RSDP (5.2.5.3), revision 2: ACPI 2.0+ with an XSDT. */
#define RSDP_SIZE 36
#define RSDP_CHECKSUM 8 /* over the first 20 bytes (ACPI 1.0 part) */
#define RSDP_OEM_ID 9
#define RSDP_REVISION 15
#define RSDP_RSDT 16 /* left 0: the XSDT supersedes it */
#define RSDP_LENGTH 20
#define RSDP_XSDT 24
#define RSDP_EXT_CHECKSUM 32 /* over all 36 bytes */
#define RSDP_V1_SIZE 20

/* XSDT (5.2.8): header, then 64-bit table addresses. */
#define XSDT_REVISION 1
#define XSDT_MAX_ENTRIES 3 /* FADT, MADT, the SSDT when there is one */
#define XSDT_SIZE(n) (SDT_HDR_SIZE + 8 * (n))

/* FADT (5.2.9, table 5.9), revision 6.4. */
#define FADT_SIZE 276
#define FADT_REVISION 6
#define FADT_MINOR_REVISION 4
#define FADT_SCI_INT 46
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_MINOR_VERSION 131
#define FADT_X_DSDT 140
#define FADT_SLEEP_CONTROL_REG 244
#define FADT_SLEEP_STATUS_REG 256
#define FADT_HYPERVISOR_ID 268

/* IA-PC boot architecture flags (5.2.9.3): no VGA to probe. "8042" stays
 * clear so Linux skips probing a keyboard controller it has no use for;
 * "MSI not supported" stays clear for virtio-pci. */
#define IAPC_VGA_NOT_PRESENT (1u << 2)
/* FADT fixed feature flags (5.2.9). PWR_BUTTON and SLP_BUTTON set
 * mean "no fixed-feature button"; RESET_REG_SUP advertises RESET_REG;
 * HW_REDUCED_ACPI says there is no PM1/GPE/PM timer hardware (4.1). */
#define FADT_F_PWR_BUTTON (1u << 4)
#define FADT_F_SLP_BUTTON (1u << 5)
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)
#define FADT_HYPERVISOR_NAME "STASISVM" /* 8 bytes */

/* Generic Address Structure (5.2.3.2). */
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

/* DSDT: a definition block (5.2.11.1). */
#define DSDT_REVISION 2 /* 64-bit AML integers */

/* MADT (5.2.12), revision 5 in ACPI 6.4. */
#define MADT_REVISION 5
#define MADT_LAPIC_ADDR 36
#define MADT_FLAGS 40
#define MADT_HDR_SIZE 44
#define MADT_PCAT_COMPAT 1u /* dual 8259s present: mask them */
#define MADT_LAPIC 0 /* Processor Local APIC, 5.2.12.2 */
#define MADT_LAPIC_SIZE 8
#define MADT_LAPIC_ENABLED 1u
#define MADT_IOAPIC 1 /* I/O APIC, 5.2.12.3 */
#define MADT_IOAPIC_SIZE 12
#define MADT_ISO 2 /* Interrupt Source Override, 5.2.12.5 */
#define MADT_ISO_SIZE 10
#define MADT_LAPIC_NMI 4 /* Local APIC NMI, 5.2.12.7 */
#define MADT_LAPIC_NMI_SIZE 6
#define MADT_ALL_PROCESSORS 0xff
/* MPS INTI flags (5.2.12.5): polarity in bits 1:0, trigger in 3:2. */
#define MPS_ACTIVE_HIGH 0x1
#define MPS_EDGE (0x1 << 2)
#define MPS_LEVEL (0x3 << 2)
#define ISA_BUS 0
#define ISA_IRQ_PIT 0
#define GSI_PIT 2 /* the PIT is wired to IOAPIC pin 2, as on PCs */
#define LAPIC_LINT1 1

#define MADT_MAX_SIZE                                          \
	(MADT_HDR_SIZE + PLATFORM_MAX_CPUS * MADT_LAPIC_SIZE + \
	 MADT_IOAPIC_SIZE + 2 * MADT_ISO_SIZE + MADT_LAPIC_NMI_SIZE)

/* Name (\_S5, Package () { PLATFORM_ACPI_S5_SLP_TYP, 0 }), AML encoded
 * by hand (ACPI 6.4, 20.2: DefName, NameString, DefPackage, PkgLength,
 * ByteConst). OSPM writes element 0 into SLP_TYP of the sleep control
 * register to power off (7.4.2 \_Sx, 4.8.3.7). */
static const uint8_t dsdt_aml[] = {
	0x08, /* NameOp */
	0x5c, /* RootChar '\' */
	'_', /* NameSeg: four characters, */
	'S', /* the name "_S5" */
	'5', /* padded with '_' */
	'_',
	0x12, /* PackageOp */
	0x05, /* PkgLength, one byte (bits 7:6 = 0, value in bits 5:0):
	       * it counts itself plus the 4 bytes that follow */
	0x02, /* NumElements */
	0x0a, /* BytePrefix: a ByteConst follows */
	PLATFORM_ACPI_S5_SLP_TYP, /* element 0: SLP_TYPa */
	0x00, /* ZeroOp: element 1, SLP_TYPb (unused) */
};

/*
 * SSDT (5.2.11.2) for the VM Generation ID, as Microsoft's "Virtual Machine
 * Generation ID" specification and Linux's vmgenid driver expect it:
 *
 *   Scope (\_SB) {
 *     Device (VGEN) {
 *       Name (_HID, "VMGENCTR")
 *       Name (_CID, "VM_GEN_COUNTER")
 *       Name (_DDN, "VM_Gen_Counter")
 *       Method (ADDR) { Return (Package () { low32, high32 }) }
 *     }
 *     Device (GED0) {                  // Generic Event Device, 5.6.9
 *       Name (_HID, "ACPI0013")
 *       Name (_CRS, ResourceTemplate () {
 *         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive)
 *           { PLATFORM_IRQ_ACPI_GED } })
 *       Method (_EVT, 1) { Notify (\_SB.VGEN, 0x80) }
 *     }
 *   }
 *
 * Hardware-reduced ACPI has no GPE block (4.1), so the event device is how
 * stasis raises the notification after a restore. AML encoded by hand
 * (20.2); ADDR always holds two DWordConsts, whatever the address, so the
 * bytes keep one fixed form that docs/devices.md describes and guests may
 * scan for. PkgLength is one byte (bits 7:6 = 0) up to 63, else two bytes
 * (bits 7:6 = 1, low nibble in byte 0 bits 3:0, the rest in byte 1); it
 * counts itself and what follows it in the package.
 */
#define SSDT_REVISION 2
#define SSDT_ADDR_LOW 85 /* offsets of the patched values in ssdt_aml */
#define SSDT_ADDR_HIGH 90
#define SSDT_GED_GSI 130
/* String literals keep one AML element a line; the literal's NUL is not
 * part of the table (SSDT_AML_LEN). */
static const char ssdt_aml[] =
    /* Scope (\_SB), PkgLength 155 (2 bytes) */
    "\x10\x4b\x09\\_SB_"
    /* Device (VGEN), PkgLength 84 (2 bytes) */
    "\x5b\x82\x44\x05VGEN"
    /* Name (_HID, "VMGENCTR") */
    "\x08_HID\x0dVMGENCTR\0"
    /* Name (_CID, "VM_GEN_COUNTER") */
    "\x08_CID\x0dVM_GEN_COUNTER\0"
    /* Name (_DDN, "VM_Gen_Counter") */
    "\x08_DDN\x0dVM_Gen_Counter\0"
    /* Method (ADDR, 0), PkgLength 20: Return (Package (2) { DWordConst,
     * DWordConst }), the package's PkgLength 12 */
    "\x14\x14"
    "ADDR\x00\xa4\x12\x0c\x02"
    "\x0c\x00\x00\x00\x00"
    "\x0c\x00\x00\x00\x00"
    /* Device (GED0), PkgLength 60 */
    "\x5b\x82\x3cGED0"
    /* Name (_HID, "ACPI0013") */
    "\x08_HID\x0d"
    "ACPI0013\0"
    /* Name (_CRS, Buffer (11) {...}), PkgLength 14: an Extended Interrupt
     * Descriptor (6.4.3.6: length 6, flags consumer | edge, active high,
     * exclusive; one interrupt number), then the End Tag (6.4.2.9) */
    "\x08_CRS\x11\x0e\x0a\x0b"
    "\x89\x06\x00\x03\x01\x00\x00\x00\x00"
    "\x79\x00"
    /* Method (_EVT, 1), PkgLength 19: Notify (\_SB.VGEN, 0x80) */
    "\x14\x13_EVT\x01"
    "\x86\\\x2e_SB_VGEN\x0a\x80";
#define SSDT_AML_LEN (sizeof(ssdt_aml) - 1)

#define SSDT_SIZE (SDT_HDR_SIZE + SSDT_AML_LEN)
_Static_assert(SSDT_AML_LEN == 156, "the SSDT's PkgLengths count 156");

/* SLP_TYP is a 3-bit field of the sleep control register (4.8.3.7). */
_Static_assert(PLATFORM_ACPI_S5_SLP_TYP <= 7, "SLP_TYP is 3 bits");
#define DSDT_SIZE (SDT_HDR_SIZE + sizeof(dsdt_aml))

static uint8_t acpi_sum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum = (uint8_t)(sum + p[i]);
	return sum;
}

/* Stores the byte that makes [0, n) sum to zero at @at (5.2.6). */
static void acpi_set_checksum(struct outbuf *b, size_t n, size_t at)
{
	out_put8(b, at, 0);
	out_put8(b, at, (uint8_t)(0 - acpi_sum(b->data, n)));
}

static void acpi_header(struct outbuf *b, const char *sig, uint32_t len,
			uint8_t rev)
{
	out_put_bytes(b, 0, sig, 4);
	out_put32(b, SDT_LENGTH, len);
	out_put8(b, SDT_REVISION, rev);
	out_put_bytes(b, SDT_OEM_ID, ACPI_OEM_ID, 6);
	out_put_bytes(b, SDT_OEM_TABLE_ID, ACPI_OEM_TABLE_ID, 8);
	out_put32(b, SDT_OEM_REVISION, ACPI_OEM_REVISION);
	out_put_bytes(b, SDT_CREATOR_ID, ACPI_CREATOR_ID, 4);
	out_put32(b, SDT_CREATOR_REVISION, ACPI_CREATOR_REVISION);
}

/* A one-byte System I/O register. The FADT requires bit width 8 and bit
 * offset 0 for the sleep registers (5.2.9, SLEEP_CONTROL_REG). */
static void acpi_gas_io8(struct outbuf *b, size_t off, uint16_t port)
{
	out_put8(b, off, GAS_SYSTEM_IO);
	out_put8(b, off + 1, 8); /* register bit width */
	out_put8(b, off + 2, 0); /* register bit offset */
	out_put8(b, off + 3, GAS_ACCESS_BYTE);
	out_put64(b, off + 4, port);
}

/* Seals the table's checksum and copies it into guest memory. */
static int acpi_commit(struct guest_mem *mem, gpa_t at, struct outbuf *b,
		       size_t len)
{
	acpi_set_checksum(b, len, SDT_CHECKSUM);
	return guest_mem_write(mem, at, b->data, len);
}

static size_t madt_size(unsigned ncpus)
{
	return MADT_HDR_SIZE + ncpus * MADT_LAPIC_SIZE + MADT_IOAPIC_SIZE +
	       2 * MADT_ISO_SIZE + MADT_LAPIC_NMI_SIZE;
}

static void madt_iso(struct outbuf *b, size_t off, uint8_t irq, uint32_t gsi,
		     uint16_t flags)
{
	out_put8(b, off, MADT_ISO);
	out_put8(b, off + 1, MADT_ISO_SIZE);
	out_put8(b, off + 2, ISA_BUS);
	out_put8(b, off + 3, irq);
	out_put32(b, off + 4, gsi);
	out_put16(b, off + 8, flags);
}

static void madt_fill(struct outbuf *b, unsigned ncpus)
{
	size_t off = MADT_HDR_SIZE;

	acpi_header(b, "APIC", (uint32_t)madt_size(ncpus), MADT_REVISION);
	out_put32(b, MADT_LAPIC_ADDR, (uint32_t)PLATFORM_LAPIC_BASE);
	out_put32(b, MADT_FLAGS, MADT_PCAT_COMPAT);
	/* KVM numbers vCPU i with APIC id i; use the same for the ACPI
	 * processor UID. */
	for (unsigned i = 0; i < ncpus; i++, off += MADT_LAPIC_SIZE) {
		out_put8(b, off, MADT_LAPIC);
		out_put8(b, off + 1, MADT_LAPIC_SIZE);
		out_put8(b, off + 2, (uint8_t)i);
		out_put8(b, off + 3, (uint8_t)i);
		out_put32(b, off + 4, MADT_LAPIC_ENABLED);
	}
	/* The IOAPIC takes the first id after the CPUs'. */
	out_put8(b, off, MADT_IOAPIC);
	out_put8(b, off + 1, MADT_IOAPIC_SIZE);
	out_put8(b, off + 2, (uint8_t)ncpus);
	out_put8(b, off + 3, 0);
	out_put32(b, off + 4, (uint32_t)PLATFORM_IOAPIC_BASE);
	out_put32(b, off + 8, 0); /* GSI base */
	off += MADT_IOAPIC_SIZE;
	madt_iso(b, off, ISA_IRQ_PIT, GSI_PIT, MPS_EDGE | MPS_ACTIVE_HIGH);
	off += MADT_ISO_SIZE;
	/* The SCI is a level-triggered interrupt (5.2.9, SCI_INT); our
	 * device model asserts it high. */
	madt_iso(b, off, PLATFORM_IRQ_ACPI_SCI, PLATFORM_IRQ_ACPI_SCI,
		 MPS_LEVEL | MPS_ACTIVE_HIGH);
	off += MADT_ISO_SIZE;
	/* LINT1 of every CPU is the NMI line, as on PCs. */
	out_put8(b, off, MADT_LAPIC_NMI);
	out_put8(b, off + 1, MADT_LAPIC_NMI_SIZE);
	out_put8(b, off + 2, MADT_ALL_PROCESSORS);
	out_put16(b, off + 3, MPS_EDGE | MPS_ACTIVE_HIGH);
	out_put8(b, off + 5, LAPIC_LINT1);
}

static void fadt_fill(struct outbuf *b, gpa_t dsdt)
{
	acpi_header(b, "FACP", FADT_SIZE, FADT_REVISION);
	/* No FACS: optional when HW_REDUCED_ACPI is set (5.2.10). DSDT
	 * (32-bit) stays 0 because X_DSDT is used. */
	out_put16(b, FADT_SCI_INT, PLATFORM_IRQ_ACPI_SCI);
	out_put16(b, FADT_IAPC_BOOT_ARCH, IAPC_VGA_NOT_PRESENT);
	out_put32(b, FADT_FLAGS,
		  FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON | FADT_F_RESET_REG_SUP |
		      FADT_F_HW_REDUCED_ACPI);
	acpi_gas_io8(b, FADT_RESET_REG, PLATFORM_PORT_ACPI_RESET);
	out_put8(b, FADT_RESET_VALUE, PLATFORM_ACPI_RESET_VALUE);
	out_put8(b, FADT_MINOR_VERSION, FADT_MINOR_REVISION);
	out_put64(b, FADT_X_DSDT, dsdt);
	/* Hardware-reduced sleep: the sleep control and status registers
	 * replace PM1 (4.8.3.7). */
	acpi_gas_io8(b, FADT_SLEEP_CONTROL_REG, PLATFORM_PORT_ACPI_SLEEP_CTL);
	acpi_gas_io8(b, FADT_SLEEP_STATUS_REG, PLATFORM_PORT_ACPI_SLEEP_STS);
	out_put_bytes(b, FADT_HYPERVISOR_ID, FADT_HYPERVISOR_NAME, 8);
}

static void rsdp_fill(struct outbuf *b, gpa_t xsdt)
{
	out_put_bytes(b, 0, "RSD PTR ", 8);
	out_put_bytes(b, RSDP_OEM_ID, ACPI_OEM_ID, 6);
	out_put8(b, RSDP_REVISION, 2);
	out_put32(b, RSDP_RSDT, 0);
	out_put32(b, RSDP_LENGTH, RSDP_SIZE);
	out_put64(b, RSDP_XSDT, xsdt);
	acpi_set_checksum(b, RSDP_V1_SIZE, RSDP_CHECKSUM);
	acpi_set_checksum(b, RSDP_SIZE, RSDP_EXT_CHECKSUM);
}

#define ACPI_ALIGN_UP(x) (((x) + ACPI_ALIGN - 1) & ~(gpa_t)(ACPI_ALIGN - 1))

/* Where each table goes. The RSDP comes first: PLATFORM_ACPI_TABLES is
 * inside the 0xE0000-0xFFFFF window OSes scan for it (5.2.5.1). */
struct acpi_layout {
	gpa_t rsdp, xsdt, fadt, dsdt, madt, ssdt, end;
	unsigned nxsdt;
};

/* The SSDT, when there is one, goes last so that the other tables sit
 * where they always have. */
static void acpi_layout(unsigned ncpus, bool ssdt, struct acpi_layout *l)
{
	l->nxsdt = ssdt ? 3 : 2;
	l->rsdp = PLATFORM_ACPI_TABLES;
	l->xsdt = ACPI_ALIGN_UP(l->rsdp + RSDP_SIZE);
	l->fadt = ACPI_ALIGN_UP(l->xsdt + XSDT_SIZE(l->nxsdt));
	l->dsdt = ACPI_ALIGN_UP(l->fadt + FADT_SIZE);
	l->madt = ACPI_ALIGN_UP(l->dsdt + DSDT_SIZE);
	l->end = l->madt + madt_size(ncpus);
	l->ssdt = 0;
	if (ssdt) {
		l->ssdt = ACPI_ALIGN_UP(l->end);
		l->end = l->ssdt + SSDT_SIZE;
	}
}

_Static_assert(PLATFORM_ACPI_TABLES % ACPI_ALIGN == 0 &&
		   PLATFORM_ACPI_TABLES + 5 * ACPI_ALIGN + RSDP_SIZE +
			   XSDT_SIZE(XSDT_MAX_ENTRIES) + FADT_SIZE + DSDT_SIZE +
			   MADT_MAX_SIZE + SSDT_SIZE <=
		       PLATFORM_VMGENID_ADDR,
	       "the ACPI tables fit before the generation ID");
_Static_assert(SSDT_SIZE <= MADT_MAX_SIZE,
	       "acpi_build's buffer holds the SSDT");
_Static_assert(PLATFORM_VMGENID_ADDR % 8 == 0 &&
		   PLATFORM_VMGENID_ADDR + 16 <= PLATFORM_ACPI_TABLES_END,
	       "the generation ID is 8-byte aligned in the table area");

static void ssdt_fill(struct outbuf *b, gpa_t vmgenid)
{
	acpi_header(b, "SSDT", SSDT_SIZE, SSDT_REVISION);
	out_put_bytes(b, SDT_HDR_SIZE, ssdt_aml, SSDT_AML_LEN);
	out_put32(b, SDT_HDR_SIZE + SSDT_ADDR_LOW, (uint32_t)vmgenid);
	out_put32(b, SDT_HDR_SIZE + SSDT_ADDR_HIGH, (uint32_t)(vmgenid >> 32));
	out_put32(b, SDT_HDR_SIZE + SSDT_GED_GSI, PLATFORM_IRQ_ACPI_GED);
}

int acpi_build(struct guest_mem *mem, unsigned ncpus, gpa_t vmgenid,
	       gpa_t *rsdp)
{
	uint8_t buf[MADT_MAX_SIZE > FADT_SIZE ? MADT_MAX_SIZE : FADT_SIZE];
	struct outbuf b = { .data = buf, .len = sizeof(buf) };
	struct acpi_layout l;
	uint8_t *area;
	int ret;

	if (ncpus == 0 || ncpus > PLATFORM_MAX_CPUS)
		return -EINVAL;
	area = guest_mem_ptr(mem, PLATFORM_ACPI_TABLES,
			     PLATFORM_ACPI_TABLES_END - PLATFORM_ACPI_TABLES);
	if (!area)
		return -EFAULT;
	/* Nothing stale may be found by the OS's RSDP scan. */
	memset(area, 0, PLATFORM_ACPI_TABLES_END - PLATFORM_ACPI_TABLES);
	acpi_layout(ncpus, vmgenid != 0, &l);

	memset(buf, 0, sizeof(buf));
	acpi_header(&b, "DSDT", DSDT_SIZE, DSDT_REVISION);
	out_put_bytes(&b, SDT_HDR_SIZE, dsdt_aml, sizeof(dsdt_aml));
	ret = acpi_commit(mem, l.dsdt, &b, DSDT_SIZE);
	if (ret)
		return ret;

	memset(buf, 0, sizeof(buf));
	fadt_fill(&b, l.dsdt);
	ret = acpi_commit(mem, l.fadt, &b, FADT_SIZE);
	if (ret)
		return ret;

	memset(buf, 0, sizeof(buf));
	madt_fill(&b, ncpus);
	ret = acpi_commit(mem, l.madt, &b, l.end - l.madt);
	if (ret)
		return ret;

	if (l.ssdt) {
		memset(buf, 0, sizeof(buf));
		ssdt_fill(&b, vmgenid);
		ret = acpi_commit(mem, l.ssdt, &b, SSDT_SIZE);
		if (ret)
			return ret;
	}

	memset(buf, 0, sizeof(buf));
	acpi_header(&b, "XSDT", XSDT_SIZE(l.nxsdt), XSDT_REVISION);
	out_put64(&b, SDT_HDR_SIZE, l.fadt);
	out_put64(&b, SDT_HDR_SIZE + 8, l.madt);
	if (l.ssdt)
		out_put64(&b, SDT_HDR_SIZE + 16, l.ssdt);
	ret = acpi_commit(mem, l.xsdt, &b, XSDT_SIZE(l.nxsdt));
	if (ret)
		return ret;

	memset(buf, 0, sizeof(buf));
	rsdp_fill(&b, l.xsdt);
	ret = guest_mem_write(mem, l.rsdp, buf, RSDP_SIZE);
	if (ret)
		return ret;
	*rsdp = l.rsdp;
	return 0;
}
