/* acpi.c - finds ACPI tables from the RSDP and lists the CPUs in the MADT
 * (ACPI 6.5 sections 5.2.5 RSDP, 5.2.8 XSDT, 5.2.12 MADT). */
#include "runtime.h"

#define SDT_HEADER_LEN 36
#define MADT_ENTRIES 44
#define MADT_LAPIC 0
#define MADT_X2APIC 9
#define MADT_IOAPIC 1
#define MADT_ISO 2 /* interrupt source override */
#define MADT_ENABLED 0x1

static bool checksum_ok(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return sum == 0;
}

static const uint8_t *rsdp_check(uint64_t addr)
{
	const uint8_t *p = (const uint8_t *)addr;

	if (!addr || memcmp(p, "RSD PTR ", 8) || !checksum_ok(p, 20))
		return NULL;
	return p;
}

/* A low physical address, hidden from the compiler's bounds checks. */
static uint16_t low_read16(uint64_t addr)
{
	const uint16_t *p;

	__asm__("" : "=r"(p) : "0"(addr));
	return *p;
}

/* Without rsdp_paddr, fall back to the legacy BIOS search: the first KiB
 * of the EBDA, then 0xe0000-0xfffff on 16-byte boundaries (5.2.5.1). */
static const uint8_t *rsdp_find(void)
{
	const uint8_t *p = rsdp_check(guest_kit.boot.rsdp);
	uint64_t a, ebda;

	if (p)
		return p;
	ebda = (uint64_t)low_read16(0x40e) << 4;
	for (a = ebda; ebda && a < ebda + 1024; a += 16)
		if ((p = rsdp_check(a)))
			return p;
	for (a = 0xe0000; a < 0x100000; a += 16)
		if ((p = rsdp_check(a)))
			return p;
	return NULL;
}

static const uint8_t *sdt_check(uint64_t addr, const char sig[4])
{
	const uint8_t *t = (const uint8_t *)addr;
	uint32_t len;

	if (!addr || memcmp(t, sig, 4))
		return NULL;
	memcpy(&len, t + 4, sizeof(len));
	if (len < SDT_HEADER_LEN || !checksum_ok(t, len))
		return NULL;
	return t;
}

const void *guest_acpi_table(const char sig[4])
{
	const uint8_t *rsdp = rsdp_find(), *root;
	uint32_t len, rsdt;
	uint64_t xsdt = 0, entry;
	size_t width, i;

	if (!rsdp)
		return NULL;
	memcpy(&rsdt, rsdp + 16, sizeof(rsdt));
	if (rsdp[15] >= 2)
		memcpy(&xsdt, rsdp + 24, sizeof(xsdt));
	if ((root = sdt_check(xsdt, "XSDT")))
		width = 8;
	else if ((root = sdt_check(rsdt, "RSDT")))
		width = 4;
	else
		return NULL;
	memcpy(&len, root + 4, sizeof(len));
	for (i = SDT_HEADER_LEN; i + width <= len; i += width) {
		const uint8_t *t;

		entry = 0;
		memcpy(&entry, root + i, width);
		if ((t = sdt_check(entry, sig)))
			return t;
	}
	return NULL;
}

/* Enabled local APICs, in MADT order; online-capable ones are not
 * running yet and cannot be started. */
unsigned int guest_acpi_cpus(uint32_t *apic_ids, unsigned int max)
{
	const uint8_t *madt = guest_acpi_table("APIC");
	uint32_t len, id, flags;
	unsigned int n = 0;
	size_t i;

	if (!madt)
		return 0;
	memcpy(&len, madt + 4, sizeof(len));
	for (i = MADT_ENTRIES; i + 2 <= len && madt[i + 1] >= 2;
	     i += madt[i + 1]) {
		const uint8_t *e = madt + i;

		if (e[0] == MADT_LAPIC && e[1] >= 8) {
			id = e[3];
			memcpy(&flags, e + 4, sizeof(flags));
		} else if (e[0] == MADT_X2APIC && e[1] >= 16) {
			memcpy(&id, e + 4, sizeof(id));
			memcpy(&flags, e + 8, sizeof(flags));
		} else {
			continue;
		}
		/* xAPIC mode can only address IDs below 255. */
		if (!(flags & MADT_ENABLED) || id >= 255 || n >= max)
			continue;
		apic_ids[n++] = id;
	}
	return n;
}

/*
 * Where ISA/PCI interrupt line @line arrives: the MADT's interrupt source
 * overrides (type 2) map an ISA IRQ to a GSI with polarity and trigger
 * flags; an I/O APIC (type 1) serves GSIs from its base. Without a MADT:
 * GSI = line on the IOAPIC at 0xfec00000. Returns 0, or -1 when no I/O
 * APIC has that GSI. Pins are below 24 on every IOAPIC we meet.
 */
int guest_acpi_gsi(unsigned int line, uint64_t *ioapic, unsigned int *pin,
		   uint16_t *flags)
{
	const uint8_t *madt = guest_acpi_table("APIC");
	uint32_t len, gsi = line, base, addr;
	size_t i;

	*flags = 0;
	if (!madt) {
		*ioapic = GUEST_IOAPIC_BASE;
		*pin = line;
		return line < 24 ? 0 : -1;
	}
	memcpy(&len, madt + 4, sizeof(len));
	for (i = MADT_ENTRIES; i + 2 <= len && madt[i + 1] >= 2;
	     i += madt[i + 1]) {
		const uint8_t *e = madt + i;

		if (e[0] == MADT_ISO && e[1] >= 10 && e[3] == line) {
			memcpy(&gsi, e + 4, sizeof(gsi));
			memcpy(flags, e + 8, sizeof(*flags));
		}
	}
	for (i = MADT_ENTRIES; i + 2 <= len && madt[i + 1] >= 2;
	     i += madt[i + 1]) {
		const uint8_t *e = madt + i;

		if (e[0] != MADT_IOAPIC || e[1] < 12)
			continue;
		memcpy(&addr, e + 4, sizeof(addr));
		memcpy(&base, e + 8, sizeof(base));
		if (gsi >= base && gsi - base < 24) {
			*ioapic = addr;
			*pin = gsi - base;
			return 0;
		}
	}
	return -1;
}
