/* Unit tests for the ACPI tables and the e820 map: parse what acpi_build and
 * e820_build produced back out of guest memory, as an OS would. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "boot/boot.h"
#include "core/platform.h"
#include "guest_peek.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

static uint8_t gm_sum(const struct guest_mem *m, gpa_t a, uint32_t len)
{
	const uint8_t *p = guest_mem_ptr(m, a, len);
	uint8_t s = 0;

	assert_non_null(p);
	for (uint32_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static void assert_in_acpi_area(gpa_t a, uint32_t len)
{
	assert_true(a >= PLATFORM_ACPI_TABLES);
	assert_true(a + len <= PLATFORM_ACPI_TABLES_END);
}

/* Checks signature, bounds and checksum of a table; returns its length. */
static uint32_t check_table(const struct guest_mem *m, gpa_t a, const char *sig)
{
	uint32_t len;

	assert_memory_equal(guest_mem_ptr(m, a, 4), sig, 4);
	len = gm_u32(m, a + 4);
	assert_true(len >= 36);
	assert_in_acpi_area(a, len);
	assert_int_equal(gm_sum(m, a, len), 0);
	assert_memory_equal(guest_mem_ptr(m, a + 10, 6), "STASIS", 6);
	return len;
}

/* The legacy RSDP search (ACPI 6.4, 5.2.5.1): 16-byte boundaries of the
 * BIOS area 0xE0000-0xFFFFF. */
static gpa_t scan_rsdp(const struct guest_mem *m)
{
	for (gpa_t a = 0xe0000; a < 0x100000; a += 16)
		if (memcmp(guest_mem_ptr(m, a, 8), "RSD PTR ", 8) == 0 &&
		    gm_sum(m, a, 20) == 0)
			return a;
	return 0;
}

struct tables {
	gpa_t rsdp, xsdt, fadt, madt, dsdt;
};

static void find_tables(const struct guest_mem *m, gpa_t rsdp, struct tables *t)
{
	uint32_t xlen;

	t->rsdp = scan_rsdp(m);
	assert_int_equal(t->rsdp, rsdp);
	assert_int_equal(gm_u8(m, rsdp + 15), 2); /* revision */
	assert_int_equal(gm_u32(m, rsdp + 20), 36); /* length */
	assert_int_equal(gm_sum(m, rsdp, 36), 0); /* extended checksum */
	t->xsdt = gm_u64(m, rsdp + 24);
	xlen = check_table(m, t->xsdt, "XSDT");
	assert_int_equal(xlen, 36 + 2 * 8);
	t->fadt = t->madt = 0;
	for (uint32_t off = 36; off < xlen; off += 8) {
		gpa_t a = gm_u64(m, t->xsdt + off);

		if (memcmp(guest_mem_ptr(m, a, 4), "FACP", 4) == 0)
			t->fadt = a;
		else if (memcmp(guest_mem_ptr(m, a, 4), "APIC", 4) == 0)
			t->madt = a;
	}
	assert_int_not_equal(t->fadt, 0);
	assert_int_not_equal(t->madt, 0);
	check_table(m, t->fadt, "FACP");
	check_table(m, t->madt, "APIC");
	t->dsdt = gm_u64(m, t->fadt + 140); /* X_DSDT */
	check_table(m, t->dsdt, "DSDT");
}

static void build(struct guest_mem *m, uint64_t size, unsigned ncpus,
		  struct tables *t)
{
	gpa_t rsdp = 0;

	assert_int_equal(guest_mem_init(m, size), 0);
	assert_int_equal(acpi_build(m, ncpus, 0, &rsdp), 0);
	find_tables(m, rsdp, t);
}

static void test_rsdp_and_checksums(void **state)
{
	struct guest_mem m;
	struct tables t;

	build(&m, 64 * MIB, 2, &t);
	assert_int_equal(t.rsdp, PLATFORM_ACPI_TABLES);
	assert_int_equal(t.rsdp % 16, 0);
	assert_int_equal(gm_u32(&m, t.rsdp + 16), 0); /* no RSDT */
	guest_mem_destroy(&m);
}

/* A generic address: System I/O, 8 bits at offset 0, byte access. */
static void check_gas_io8(const struct guest_mem *m, gpa_t a, uint16_t port)
{
	assert_int_equal(gm_u8(m, a), 1);
	assert_int_equal(gm_u8(m, a + 1), 8);
	assert_int_equal(gm_u8(m, a + 2), 0);
	assert_int_equal(gm_u8(m, a + 3), 1);
	assert_int_equal(gm_u64(m, a + 4), port);
}

static void test_fadt(void **state)
{
	struct guest_mem m;
	struct tables t;
	uint32_t flags;
	uint16_t iapc;

	build(&m, 64 * MIB, 1, &t);
	assert_int_equal(gm_u32(&m, t.fadt + 4), 276);
	assert_int_equal(gm_u8(&m, t.fadt + 8), 6); /* revision */
	assert_int_equal(gm_u8(&m, t.fadt + 131), 4); /* minor: 6.4 */
	assert_int_equal(gm_u32(&m, t.fadt + 36), 0); /* no FACS */
	assert_int_equal(gm_u32(&m, t.fadt + 40), 0); /* X_DSDT used */
	assert_int_equal(gm_u16(&m, t.fadt + 46), PLATFORM_IRQ_ACPI_SCI);
	flags = gm_u32(&m, t.fadt + 112);
	assert_true(flags & (1u << 20)); /* HW_REDUCED_ACPI */
	assert_true(flags & (1u << 10)); /* RESET_REG_SUP */
	iapc = gm_u16(&m, t.fadt + 109);
	assert_true(iapc & (1u << 2)); /* VGA not present */
	assert_false(iapc & (1u << 3)); /* MSI not supported: must be 0 */
	check_gas_io8(&m, t.fadt + 116, PLATFORM_PORT_ACPI_RESET);
	assert_int_equal(gm_u8(&m, t.fadt + 128), PLATFORM_ACPI_RESET_VALUE);
	check_gas_io8(&m, t.fadt + 244, PLATFORM_PORT_ACPI_SLEEP_CTL);
	check_gas_io8(&m, t.fadt + 256, PLATFORM_PORT_ACPI_SLEEP_STS);
	/* Hardware-reduced: no PM1, PM timer or GPE blocks. */
	assert_int_equal(gm_u32(&m, t.fadt + 56), 0);
	assert_int_equal(gm_u32(&m, t.fadt + 64), 0);
	assert_int_equal(gm_u32(&m, t.fadt + 76), 0);
	assert_int_equal(gm_u8(&m, t.fadt + 91), 0);
	assert_int_equal(gm_u64(&m, t.fadt + 208 + 4), 0);
	guest_mem_destroy(&m);
}

static void test_dsdt_s5(void **state)
{
	/* Name (\_S5, Package () { 5, Zero }). */
	static const uint8_t s5[] = { 0x08, 0x5c, '_',	'S',  '5',  '_',
				      0x12, 0x05, 0x02, 0x0a, 0x05, 0x00 };
	struct guest_mem m;
	struct tables t;
	uint32_t len;

	build(&m, 64 * MIB, 1, &t);
	len = gm_u32(&m, t.dsdt + 4);
	assert_int_equal(len, 36 + sizeof(s5));
	assert_int_equal(gm_u8(&m, t.dsdt + 8), 2);
	assert_memory_equal(guest_mem_ptr(&m, t.dsdt + 36, sizeof(s5)), s5,
			    sizeof(s5));
	assert_int_equal(PLATFORM_ACPI_S5_SLP_TYP, 5);
	guest_mem_destroy(&m);
}

static void check_madt(unsigned ncpus)
{
	struct guest_mem m;
	struct tables t;
	unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0;
	uint32_t len, off;

	build(&m, 64 * MIB, ncpus, &t);
	len = gm_u32(&m, t.madt + 4);
	assert_int_equal(gm_u8(&m, t.madt + 8), 5);
	assert_int_equal(gm_u32(&m, t.madt + 36), PLATFORM_LAPIC_BASE);
	assert_int_equal(gm_u32(&m, t.madt + 40), 1); /* PCAT_COMPAT */
	for (off = 44; off < len;) {
		gpa_t e = t.madt + off;
		uint8_t type = gm_u8(&m, e), elen = gm_u8(&m, e + 1);

		assert_true(elen >= 2);
		assert_true(off + elen <= len);
		switch (type) {
		case 0: /* Processor Local APIC */
			assert_int_equal(elen, 8);
			assert_int_equal(gm_u8(&m, e + 2), lapics);
			assert_int_equal(gm_u8(&m, e + 3), lapics);
			assert_int_equal(gm_u32(&m, e + 4), 1);
			lapics++;
			break;
		case 1: /* I/O APIC */
			assert_int_equal(elen, 12);
			assert_int_equal(gm_u8(&m, e + 2), ncpus);
			assert_int_equal(gm_u32(&m, e + 4),
					 PLATFORM_IOAPIC_BASE);
			assert_int_equal(gm_u32(&m, e + 8), 0);
			ioapics++;
			break;
		case 2: /* Interrupt Source Override */
			assert_int_equal(elen, 10);
			assert_int_equal(gm_u8(&m, e + 2), 0);
			if (gm_u8(&m, e + 3) == 0) {
				assert_int_equal(gm_u32(&m, e + 4), 2);
				assert_int_equal(gm_u16(&m, e + 8), 0x5);
			} else {
				assert_int_equal(gm_u8(&m, e + 3),
						 PLATFORM_IRQ_ACPI_SCI);
				assert_int_equal(gm_u32(&m, e + 4),
						 PLATFORM_IRQ_ACPI_SCI);
				assert_int_equal(gm_u16(&m, e + 8), 0xd);
			}
			isos++;
			break;
		case 4: /* Local APIC NMI */
			assert_int_equal(elen, 6);
			assert_int_equal(gm_u8(&m, e + 2), 0xff);
			assert_int_equal(gm_u8(&m, e + 5), 1); /* LINT1 */
			nmis++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", type);
		}
		off += elen;
	}
	assert_int_equal(off, len);
	assert_int_equal(lapics, ncpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 2);
	assert_int_equal(nmis, 1);
	guest_mem_destroy(&m);
}

static void test_madt_1(void **state)
{
	check_madt(1);
}

static void test_madt_2(void **state)
{
	check_madt(2);
}

static void test_madt_64(void **state)
{
	check_madt(64);
}

static void test_bad_ncpus(void **state)
{
	struct guest_mem m;
	gpa_t rsdp = 0;

	assert_int_equal(guest_mem_init(&m, 64 * MIB), 0);
	assert_int_equal(acpi_build(&m, 0, 0, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&m, PLATFORM_MAX_CPUS + 1, 0, &rsdp),
			 -EINVAL);
	guest_mem_destroy(&m);
}

/* A second build with fewer CPUs leaves nothing of the first behind. */
static void test_rebuild(void **state)
{
	struct guest_mem m;
	struct tables t;
	gpa_t rsdp;
	uint32_t len;

	build(&m, 64 * MIB, 64, &t);
	assert_int_equal(acpi_build(&m, 1, 0, &rsdp), 0);
	find_tables(&m, rsdp, &t);
	len = gm_u32(&m, t.madt + 4);
	assert_int_equal(len, 44 + 8 + 12 + 2 * 10 + 6);
	for (uint32_t i = 0; i < 63 * 8; i++)
		assert_int_equal(gm_u8(&m, t.madt + len + i), 0);
	guest_mem_destroy(&m);
}

/* The VM Generation ID's SSDT, byte for byte: guests may scan for this
 * fixed form (docs/devices.md), so it must not drift. */
static const uint8_t want_ssdt_aml[] = {
	0x10, 0x4b, 0x09, 0x5c, 0x5f, 0x53, 0x42, 0x5f, /* Scope (\_SB) */
	0x5b, 0x82, 0x44, 0x05, 0x56, 0x47, 0x45, 0x4e, /* Device (VGEN) */
	0x08, 0x5f, 0x48, 0x49, 0x44, 0x0d, 0x56, 0x4d, 0x47, 0x45, 0x4e,
	0x43, 0x54, 0x52, 0x00, /* _HID "VMGENCTR" */
	0x08, 0x5f, 0x43, 0x49, 0x44, 0x0d, 0x56, 0x4d, 0x5f, 0x47, 0x45,
	0x4e, 0x5f, 0x43, 0x4f, 0x55, 0x4e, 0x54, 0x45, 0x52, 0x00, /* _CID */
	0x08, 0x5f, 0x44, 0x44, 0x4e, 0x0d, 0x56, 0x4d, 0x5f, 0x47, 0x65,
	0x6e, 0x5f, 0x43, 0x6f, 0x75, 0x6e, 0x74, 0x65, 0x72, 0x00, /* _DDN */
	0x14, 0x14, 0x41, 0x44, 0x44, 0x52, 0x00, 0xa4, 0x12, 0x0c, 0x02,
	0x0c, 0x00, 0xf0, 0x0f, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, /* ADDR */
	0x5b, 0x82, 0x3c, 0x47, 0x45, 0x44, 0x30, /* Device (GED0) */
	0x08, 0x5f, 0x48, 0x49, 0x44, 0x0d, 0x41, 0x43, 0x50, 0x49, 0x30,
	0x30, 0x31, 0x33, 0x00, /* _HID "ACPI0013" */
	0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x0e, 0x0a, 0x0b, 0x89, 0x06,
	0x00, 0x03, 0x01, 0x0a, 0x00, 0x00, 0x00, 0x79, 0x00, /* _CRS */
	0x14, 0x13, 0x5f, 0x45, 0x56, 0x54, 0x01, 0x86, 0x5c, 0x2e, 0x5f,
	0x53, 0x42, 0x5f, 0x56, 0x47, 0x45, 0x4e, 0x0a, 0x80, /* _EVT */
};

/* A PkgLength (ACPI 6.4, 20.2.4) at @p: its value, its size in @n. */
static uint32_t pkg_length(const uint8_t *p, unsigned *n)
{
	uint32_t v = p[0] & 0x3f;

	*n = 1 + (p[0] >> 6);
	if (*n > 1)
		v = p[0] & 0x0f;
	for (unsigned i = 1; i < *n; i++)
		v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
	return v;
}

static void test_ssdt_vmgenid(void **state)
{
	struct guest_mem m;
	struct tables t;
	gpa_t rsdp = 0, ssdt = 0;
	const uint8_t *aml;
	uint32_t len, v;
	unsigned n;

	assert_int_equal(guest_mem_init(&m, 64 * MIB), 0);
	assert_int_equal(acpi_build(&m, 1, PLATFORM_VMGENID_ADDR, &rsdp), 0);
	/* The other tables stay where they are without the SSDT. */
	t.rsdp = scan_rsdp(&m);
	assert_int_equal(t.rsdp, rsdp);
	t.xsdt = gm_u64(&m, rsdp + 24);
	assert_int_equal(check_table(&m, t.xsdt, "XSDT"), 36 + 3 * 8);
	ssdt = gm_u64(&m, t.xsdt + 36 + 16);
	len = check_table(&m, ssdt, "SSDT");
	assert_int_equal(len, 36 + sizeof(want_ssdt_aml));
	assert_int_equal(gm_u8(&m, ssdt + 8), 2);
	assert_true(ssdt + len <= PLATFORM_VMGENID_ADDR);
	aml = guest_mem_ptr(&m, ssdt + 36, len - 36);
	assert_memory_equal(aml, want_ssdt_aml, sizeof(want_ssdt_aml));
	/* The package lengths nest: the scope ends with the table, the two
	 * devices fill it. */
	v = pkg_length(aml + 1, &n);
	assert_int_equal(1 + v, len - 36);
	v = pkg_length(aml + 10, &n);
	assert_int_equal(n, 2);
	assert_int_equal(8 + 2 + v + 2 + pkg_length(aml + 96, &n), len - 36);
	/* ADDR names the generation ID: low and high DWords. */
	assert_int_equal(gm_u32(&m, ssdt + 36 + 85),
			 (uint32_t)PLATFORM_VMGENID_ADDR);
	assert_int_equal(gm_u32(&m, ssdt + 36 + 90), 0);
	/* The ID is in memory the e820 map reserves. */
	{
		struct e820_entry map[E820_MAX_ENTRIES];
		size_t ne = e820_build(&m, map, E820_MAX_ENTRIES);
		bool reserved = false;

		for (size_t i = 0; i < ne; i++)
			if (map[i].addr <= PLATFORM_VMGENID_ADDR &&
			    PLATFORM_VMGENID_ADDR + 16 <=
				map[i].addr + map[i].size)
				reserved = map[i].type == E820_RESERVED;
		assert_true(reserved);
	}
	guest_mem_destroy(&m);
}

/* e820 */

struct span {
	uint64_t addr, end;
	uint32_t type;
};

static void check_e820(uint64_t size, const struct span *want, size_t nwant)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	struct guest_mem m;
	size_t n;

	assert_int_equal(guest_mem_init(&m, size), 0);
	n = e820_build(&m, map, E820_MAX_ENTRIES);
	assert_int_equal(n, nwant);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(map[i].addr, want[i].addr);
		assert_int_equal(map[i].addr + map[i].size, want[i].end);
		assert_int_equal(map[i].type, want[i].type);
		assert_true(map[i].size > 0);
		if (i)
			assert_true(map[i - 1].addr + map[i - 1].size <=
				    map[i].addr);
	}
	/* Every byte of RAM is listed as RAM, and nothing else is. */
	for (unsigned r = 0; r < m.nregions; r++) {
		uint64_t ram = 0;

		for (size_t i = 0; i < n; i++)
			if (map[i].type == E820_RAM &&
			    map[i].addr >= m.regions[r].gpa &&
			    map[i].addr < m.regions[r].gpa + m.regions[r].size)
				ram += map[i].size;
		if (m.regions[r].gpa == 0)
			ram += PLATFORM_KERNEL_LOAD - PLATFORM_EBDA_START;
		assert_int_equal(ram, m.regions[r].size);
	}
	/* Asking for fewer entries never writes past them. */
	assert_int_equal(e820_build(&m, map, 2), 2);
	assert_int_equal(e820_build(&m, map, 0), 0);
	guest_mem_destroy(&m);
}

#define KVM_PAGES                                                              \
	{                                                                      \
		PLATFORM_KVM_IDENTITY_MAP, PLATFORM_KVM_IDENTITY_MAP + 0x4000, \
		    E820_RESERVED                                              \
	}

static void test_e820_64m(void **state)
{
	const struct span want[] = {
		{ 0, PLATFORM_EBDA_START, E820_RAM },
		{ PLATFORM_EBDA_START, MIB, E820_RESERVED },
		{ MIB, 64 * MIB, E820_RAM },
		KVM_PAGES,
	};

	check_e820(64 * MIB, want, 4);
}

static void test_e820_3g(void **state)
{
	const struct span want[] = {
		{ 0, PLATFORM_EBDA_START, E820_RAM },
		{ PLATFORM_EBDA_START, MIB, E820_RESERVED },
		{ MIB, 3 * GIB, E820_RAM },
		KVM_PAGES,
	};

	check_e820(3 * GIB, want, 4);
}

static void test_e820_3g_4k(void **state)
{
	const struct span want[] = {
		{ 0, PLATFORM_EBDA_START, E820_RAM },
		{ PLATFORM_EBDA_START, MIB, E820_RESERVED },
		{ MIB, 3 * GIB, E820_RAM },
		KVM_PAGES,
		{ 4 * GIB, 4 * GIB + 4096, E820_RAM },
	};

	check_e820(3 * GIB + 4096, want, 5);
}

static void test_e820_8g(void **state)
{
	const struct span want[] = {
		{ 0, PLATFORM_EBDA_START, E820_RAM },
		{ PLATFORM_EBDA_START, MIB, E820_RESERVED },
		{ MIB, 3 * GIB, E820_RAM },
		KVM_PAGES,
		{ 4 * GIB, 9 * GIB, E820_RAM },
	};

	check_e820(8 * GIB, want, 5);
}

static void test_e820_hole_free(void **state)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	struct guest_mem m;
	size_t n;

	/* Nothing but the KVM pages is listed in the 4 GiB hole, so the
	 * PCI window, IOAPIC and LAPIC stay gaps. */
	assert_int_equal(guest_mem_init(&m, 8 * GIB), 0);
	n = e820_build(&m, map, E820_MAX_ENTRIES);
	for (size_t i = 0; i < n; i++) {
		uint64_t end = map[i].addr + map[i].size;

		assert_false(map[i].addr < PLATFORM_PCI_MMIO_BASE +
					       PLATFORM_PCI_MMIO_SIZE &&
			     end > PLATFORM_PCI_MMIO_BASE);
		assert_false(map[i].addr <= PLATFORM_IOAPIC_BASE &&
			     end > PLATFORM_IOAPIC_BASE);
		assert_false(map[i].addr <= PLATFORM_LAPIC_BASE &&
			     end > PLATFORM_LAPIC_BASE);
	}
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsdp_and_checksums),
		cmocka_unit_test(test_fadt),
		cmocka_unit_test(test_dsdt_s5),
		cmocka_unit_test(test_madt_1),
		cmocka_unit_test(test_madt_2),
		cmocka_unit_test(test_madt_64),
		cmocka_unit_test(test_bad_ncpus),
		cmocka_unit_test(test_rebuild),
		cmocka_unit_test(test_ssdt_vmgenid),
		cmocka_unit_test(test_e820_64m),
		cmocka_unit_test(test_e820_3g),
		cmocka_unit_test(test_e820_3g_4k),
		cmocka_unit_test(test_e820_8g),
		cmocka_unit_test(test_e820_hole_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
