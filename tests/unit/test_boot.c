/* Unit tests for kernel loading: synthetic PVH ELF, plain ELF64 and bzImage
 * images are probed and loaded into guest memory, and malformed ones must
 * fail with the right error and a useful reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "boot/boot.h"
#include "core/platform.h"
#include "guest_peek.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

static void put16(uint8_t *b, size_t off, uint16_t v)
{
	b[off] = (uint8_t)v;
	b[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *b, size_t off, uint32_t v)
{
	put16(b, off, (uint16_t)v);
	put16(b, off + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *b, size_t off, uint64_t v)
{
	put32(b, off, (uint32_t)v);
	put32(b, off + 4, (uint32_t)(v >> 32));
}

/* A synthetic ELF64 kernel: header, a PT_LOAD and a PT_NOTE program
 * header, a GNU note (which must be skipped) and optionally the Xen PVH
 * entry note, then the segment's bytes. */
#define ELF_LEN 0x1800
#define ELF_PHDR0 0x40
#define ELF_PHDR1 0x78
#define ELF_NOTES 0x100
#define ELF_DATA 0x1000
#define ELF_VADDR 0xffffffff81200000ull
#define ELF_PADDR 0x200000ull
#define ELF_FILESZ 0x800
#define ELF_MEMSZ 0x3000
#define ELF_ENTRY (ELF_PADDR + 0x20)
#define PVH_ENTRY (ELF_PADDR + 0x10)

static void make_elf(uint8_t *b, bool pvh, unsigned desc_size)
{
	size_t n = ELF_NOTES;

	memset(b, 0, ELF_LEN);
	memcpy(b, "\177ELF", 4);
	b[4] = 2; /* ELFCLASS64 */
	b[5] = 1; /* little-endian */
	b[6] = 1; /* EV_CURRENT */
	put16(b, 16, 2); /* ET_EXEC */
	put16(b, 18, 62); /* EM_X86_64 */
	put32(b, 20, 1);
	put64(b, 24, ELF_ENTRY); /* physical, as Linux links vmlinux */
	put64(b, 32, ELF_PHDR0);
	put16(b, 52, 64);
	put16(b, 54, 56);
	put16(b, 56, 2);

	put32(b, ELF_PHDR0, 1); /* PT_LOAD */
	put32(b, ELF_PHDR0 + 4, 7);
	put64(b, ELF_PHDR0 + 8, ELF_DATA);
	put64(b, ELF_PHDR0 + 16, ELF_VADDR);
	put64(b, ELF_PHDR0 + 24, ELF_PADDR);
	put64(b, ELF_PHDR0 + 32, ELF_FILESZ);
	put64(b, ELF_PHDR0 + 40, ELF_MEMSZ);
	put64(b, ELF_PHDR0 + 48, 0x1000);

	/* GNU ABI tag note: namesz 4, descsz 16, type 1. */
	put32(b, n, 4);
	put32(b, n + 4, 16);
	put32(b, n + 8, 1);
	memcpy(b + n + 12, "GNU", 4);
	n += 12 + 4 + 16;
	if (pvh) {
		put32(b, n, 4);
		put32(b, n + 4, desc_size);
		put32(b, n + 8, 18); /* XEN_ELFNOTE_PHYS32_ENTRY */
		memcpy(b + n + 12, "Xen", 4);
		if (desc_size == 8)
			put64(b, n + 16, PVH_ENTRY);
		else
			put32(b, n + 16, (uint32_t)PVH_ENTRY);
		n += 16 + desc_size;
	}
	put32(b, ELF_PHDR1, 4); /* PT_NOTE */
	put64(b, ELF_PHDR1 + 8, ELF_NOTES);
	put64(b, ELF_PHDR1 + 32, n - ELF_NOTES);
	put64(b, ELF_PHDR1 + 40, n - ELF_NOTES);
	put64(b, ELF_PHDR1 + 48, 4);

	for (size_t i = 0; i < ELF_FILESZ; i++)
		b[ELF_DATA + i] = (uint8_t)(i * 7 + 1);
}

/* A synthetic bzImage: one setup sector after the boot sector, then
 * 4 KiB of "protected-mode code". */
#define BZ_PM_OFF 0x400
#define BZ_PM_LEN 0x1000
#define BZ_LEN (BZ_PM_OFF + BZ_PM_LEN)
#define BZ_PREF 0x1000000ull
#define BZ_INIT_SIZE 0x800000u

static void make_bz(uint8_t *b, uint16_t version)
{
	memset(b, 0, BZ_LEN);
	b[0x1f1] = 1; /* setup_sects */
	put32(b, 0x1f4, BZ_PM_LEN / 16); /* syssize */
	put16(b, 0x1fe, 0xaa55);
	b[0x200] = 0xeb;
	b[0x201] = 0x6a; /* header ends at 0x26c */
	memcpy(b + 0x202, "HdrS", 4);
	put16(b, 0x206, version);
	b[0x211] = 0x01; /* LOADED_HIGH */
	put32(b, 0x214, 0x100000); /* code32_start */
	put32(b, 0x22c, 0x7fffffff); /* initrd_addr_max */
	put32(b, 0x230, 0x200000); /* kernel_alignment */
	b[0x234] = 1; /* relocatable */
	put16(b, 0x236, 0x3); /* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G */
	put32(b, 0x238, 2047); /* cmdline_size */
	put64(b, 0x258, BZ_PREF);
	put32(b, 0x260, BZ_INIT_SIZE);
	for (size_t i = 0; i < BZ_PM_LEN; i++)
		b[BZ_PM_OFF + i] = (uint8_t)(i * 13 + 5);
}

struct load {
	struct guest_mem mem;
	struct boot_cpu cpu;
	struct boot_result res;
	char err[256];
	int ret;
};

static int do_load(struct load *l, uint64_t memsize, const uint8_t *k,
		   size_t klen, const uint8_t *initrd, size_t ilen,
		   const char *cmdline)
{
	struct boot_config cfg = { .kernel = k,
				   .kernel_len = klen,
				   .initrd = initrd,
				   .initrd_len = ilen,
				   .cmdline = cmdline,
				   .ncpus = 2 };

	memset(l, 0, sizeof(*l));
	assert_int_equal(guest_mem_init(&l->mem, memsize), 0);
	l->ret =
	    boot_load(&l->mem, &cfg, &l->cpu, &l->res, l->err, sizeof(l->err));
	return l->ret;
}

/* Expects boot_probe and boot_load to fail with @rc and a reason holding
 * @msg. */
static void expect_fail(const uint8_t *k, size_t klen, int rc, const char *msg)
{
	struct load l;
	enum boot_kind kind;
	char err[256] = "";

	if (rc == -EINVAL) {
		assert_int_equal(boot_probe(k, klen, &kind, err, sizeof(err)),
				 -EINVAL);
		if (msg && !strstr(err, msg))
			fail_msg("probe said \"%s\", expected \"%s\"", err,
				 msg);
	}
	do_load(&l, 64 * MIB, k, klen, NULL, 0, "");
	assert_int_equal(l.ret, rc);
	assert_true(strlen(l.err) > 0);
	if (msg && !strstr(l.err, msg))
		fail_msg("load said \"%s\", expected \"%s\"", l.err, msg);
	guest_mem_destroy(&l.mem);
}

static void check_gdt(const struct load *l)
{
	assert_int_equal(l->cpu.gdt_base, PLATFORM_BOOT_GDT);
	assert_int_equal(l->cpu.gdt_limit, 31);
	assert_int_equal(gm_u64(&l->mem, PLATFORM_BOOT_GDT), 0);
	assert_int_equal(gm_u64(&l->mem, PLATFORM_BOOT_GDT + 0x08),
			 0x00cf9b000000ffffull);
	assert_int_equal(gm_u64(&l->mem, PLATFORM_BOOT_GDT + 0x10),
			 0x00af9b000000ffffull);
	assert_int_equal(gm_u64(&l->mem, PLATFORM_BOOT_GDT + 0x18),
			 0x00cf93000000ffffull);
}

static void check_page_tables(const struct load *l)
{
	const struct guest_mem *m = &l->mem;

	assert_int_equal(l->cpu.cr3, PLATFORM_BOOT_PML4);
	assert_int_equal(gm_u64(m, PLATFORM_BOOT_PML4), PLATFORM_BOOT_PDPT | 3);
	assert_int_equal(gm_u64(m, PLATFORM_BOOT_PML4 + 8), 0);
	for (unsigned i = 0; i < 4; i++) {
		gpa_t pd = PLATFORM_BOOT_PD + i * 0x1000;

		assert_int_equal(gm_u64(m, PLATFORM_BOOT_PDPT + i * 8), pd | 3);
		for (unsigned j = 0; j < 512; j++)
			assert_int_equal(gm_u64(m, pd + j * 8),
					 (i * GIB + j * 2 * MIB) | 0x83);
	}
	assert_int_equal(gm_u64(m, PLATFORM_BOOT_PDPT + 4 * 8), 0);
}

static void check_cmdline(const struct load *l, const char *s)
{
	size_t n = strlen(s) + 1;

	assert_memory_equal(guest_mem_ptr(&l->mem, PLATFORM_BOOT_CMDLINE, n), s,
			    n);
}

/* The e820 table in boot_params equals e820_build's output. */
static void check_zero_page_e820(const struct load *l)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	gpa_t zp = PLATFORM_BOOT_ZERO_PAGE;
	size_t n = e820_build(&l->mem, map, E820_MAX_ENTRIES);

	assert_int_equal(gm_u8(&l->mem, zp + 0x1e8), n);
	for (size_t i = 0; i < n; i++) {
		gpa_t e = zp + 0x2d0 + i * 20;

		assert_int_equal(gm_u64(&l->mem, e), map[i].addr);
		assert_int_equal(gm_u64(&l->mem, e + 8), map[i].size);
		assert_int_equal(gm_u32(&l->mem, e + 16), map[i].type);
	}
}

static void test_probe_kinds(void **state)
{
	static uint8_t elf[ELF_LEN], bz[BZ_LEN];
	enum boot_kind kind;
	char err[128];

	make_elf(elf, true, 4);
	assert_int_equal(boot_probe(elf, ELF_LEN, &kind, err, sizeof(err)), 0);
	assert_int_equal(kind, BOOT_KIND_PVH);
	make_elf(elf, true, 8);
	assert_int_equal(boot_probe(elf, ELF_LEN, &kind, err, sizeof(err)), 0);
	assert_int_equal(kind, BOOT_KIND_PVH);
	make_elf(elf, false, 0);
	assert_int_equal(boot_probe(elf, ELF_LEN, &kind, err, sizeof(err)), 0);
	assert_int_equal(kind, BOOT_KIND_ELF64);
	make_bz(bz, 0x020f);
	assert_int_equal(boot_probe(bz, BZ_LEN, &kind, err, sizeof(err)), 0);
	assert_int_equal(kind, BOOT_KIND_BZIMAGE);
	/* A NULL reason buffer is fine. */
	assert_int_equal(boot_probe(bz, 10, &kind, NULL, 0), -EINVAL);
}

static void test_probe_bad_magic(void **state)
{
	uint8_t junk[4096];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 31 + 7);
	expect_fail(junk, sizeof(junk), -EINVAL,
		    "kernel: not an ELF or bzImage (bad magic)");
	expect_fail(junk, 100, -EINVAL, "not an ELF or bzImage");
	expect_fail(junk, 0, -EINVAL, "not an ELF or bzImage");
}

static void check_pvh(unsigned desc_size)
{
	static uint8_t elf[ELF_LEN];
	static uint8_t initrd[10000];
	struct e820_entry map[E820_MAX_ENTRIES];
	const gpa_t si = PLATFORM_BOOT_START_INFO;
	gpa_t memmap, modlist;
	uint8_t *bss;
	struct load l;
	size_t n;

	make_elf(elf, true, desc_size);
	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i ^ 0x5a);
	assert_int_equal(do_load(&l, 64 * MIB, elf, ELF_LEN, initrd,
				 sizeof(initrd), "console=ttyS0 quiet"),
			 0);
	const struct guest_mem *m = &l.mem;

	/* Segment bytes at p_paddr, bss zeroed. */
	assert_memory_equal(guest_mem_ptr(m, ELF_PADDR, ELF_FILESZ),
			    elf + ELF_DATA, ELF_FILESZ);
	bss = guest_mem_ptr(m, ELF_PADDR + ELF_FILESZ, ELF_MEMSZ - ELF_FILESZ);
	for (size_t i = 0; i < ELF_MEMSZ - ELF_FILESZ; i++)
		assert_int_equal(bss[i], 0);
	assert_int_equal(l.res.kind, BOOT_KIND_PVH);
	assert_int_equal(l.res.kernel_start, ELF_PADDR);
	assert_int_equal(l.res.kernel_end, ELF_PADDR + ELF_MEMSZ);

	/* Entry state: 32-bit, %ebx = start info. */
	assert_false(l.cpu.long_mode);
	assert_int_equal(l.cpu.rip, PVH_ENTRY);
	assert_int_equal(l.cpu.rbx, si);
	check_gdt(&l);

	/* hvm_start_info. */
	assert_int_equal(gm_u32(m, si), 0x336ec578);
	assert_int_equal(gm_u32(m, si + 4), 1);
	assert_int_equal(gm_u32(m, si + 8), 0);
	assert_int_equal(gm_u64(m, si + 24), PLATFORM_BOOT_CMDLINE);
	check_cmdline(&l, "console=ttyS0 quiet");
	assert_int_equal(gm_u64(m, si + 32), l.res.rsdp);
	assert_memory_equal(guest_mem_ptr(m, l.res.rsdp, 8), "RSD PTR ", 8);

	memmap = gm_u64(m, si + 40);
	n = e820_build(m, map, E820_MAX_ENTRIES);
	assert_int_equal(gm_u32(m, si + 48), n);
	assert_true(memmap >= si + 56);
	for (size_t i = 0; i < n; i++) {
		gpa_t e = memmap + i * 24;

		assert_int_equal(gm_u64(m, e), map[i].addr);
		assert_int_equal(gm_u64(m, e + 8), map[i].size);
		assert_int_equal(gm_u32(m, e + 16), map[i].type);
		assert_int_equal(gm_u32(m, e + 20), 0);
	}

	/* The initrd is module 0. */
	assert_int_equal(gm_u32(m, si + 12), 1);
	modlist = gm_u64(m, si + 16);
	assert_true(modlist >= memmap + n * 24);
	assert_true(modlist + 32 <= PLATFORM_BOOT_ZERO_PAGE);
	assert_int_equal(gm_u64(m, modlist), l.res.initrd_addr);
	assert_int_equal(gm_u64(m, modlist + 8), sizeof(initrd));
	assert_int_equal(gm_u64(m, modlist + 16), 0);
	assert_int_equal(l.res.initrd_size, sizeof(initrd));
	assert_memory_equal(guest_mem_ptr(m, l.res.initrd_addr, sizeof(initrd)),
			    initrd, sizeof(initrd));
	guest_mem_destroy(&l.mem);
}

static void test_pvh_load(void **state)
{
	check_pvh(4);
}

static void test_pvh_load_desc8(void **state)
{
	check_pvh(8);
}

static void test_pvh_no_initrd(void **state)
{
	static uint8_t elf[ELF_LEN];
	struct load l;

	make_elf(elf, true, 4);
	assert_int_equal(do_load(&l, 64 * MIB, elf, ELF_LEN, NULL, 0, ""), 0);
	assert_int_equal(gm_u32(&l.mem, PLATFORM_BOOT_START_INFO + 12), 0);
	assert_int_equal(gm_u64(&l.mem, PLATFORM_BOOT_START_INFO + 16), 0);
	assert_int_equal(l.res.initrd_addr, 0);
	assert_int_equal(l.res.initrd_size, 0);
	check_cmdline(&l, "");
	guest_mem_destroy(&l.mem);
}

static void test_elf64_load(void **state)
{
	static uint8_t elf[ELF_LEN];
	static uint8_t initrd[5000];
	const gpa_t zp = PLATFORM_BOOT_ZERO_PAGE;
	struct load l;

	make_elf(elf, false, 0);
	memset(initrd, 0xa5, sizeof(initrd));
	assert_int_equal(do_load(&l, 64 * MIB, elf, ELF_LEN, initrd,
				 sizeof(initrd), "root=/dev/vda"),
			 0);
	const struct guest_mem *m = &l.mem;

	assert_int_equal(l.res.kind, BOOT_KIND_ELF64);
	assert_memory_equal(guest_mem_ptr(m, ELF_PADDR, ELF_FILESZ),
			    elf + ELF_DATA, ELF_FILESZ);
	assert_true(l.cpu.long_mode);
	assert_int_equal(l.cpu.rip, ELF_ENTRY);
	assert_int_equal(l.cpu.rsi, zp);
	assert_int_equal(l.cpu.rbx, 0);
	check_gdt(&l);
	check_page_tables(&l);

	/* Minimal setup header (boot.rst offsets). */
	assert_int_equal(gm_u16(m, zp + 0x1fe), 0xaa55);
	assert_memory_equal(guest_mem_ptr(m, zp + 0x202, 4), "HdrS", 4);
	assert_true(gm_u16(m, zp + 0x206) >= 0x020e);
	assert_int_equal(gm_u8(m, zp + 0x210), 0xff);
	assert_int_equal(gm_u32(m, zp + 0x228), PLATFORM_BOOT_CMDLINE);
	assert_int_equal(gm_u32(m, zp + 0x0c8), 0);
	check_cmdline(&l, "root=/dev/vda");
	assert_int_equal(gm_u32(m, zp + 0x218), l.res.initrd_addr);
	assert_int_equal(gm_u32(m, zp + 0x21c), sizeof(initrd));
	assert_int_equal(gm_u32(m, zp + 0x0c0), 0);
	assert_int_equal(gm_u32(m, zp + 0x0c4), 0);
	assert_int_equal(gm_u64(m, zp + 0x070), l.res.rsdp);
	check_zero_page_e820(&l);
	assert_memory_equal(guest_mem_ptr(m, l.res.initrd_addr, sizeof(initrd)),
			    initrd, sizeof(initrd));
	guest_mem_destroy(&l.mem);
}

/* An e_entry that is a virtual address is translated through its
 * segment. */
static void test_elf64_virtual_entry(void **state)
{
	static uint8_t elf[ELF_LEN];
	struct load l;

	make_elf(elf, false, 0);
	put64(elf, 24, ELF_VADDR + 0x40);
	assert_int_equal(do_load(&l, 64 * MIB, elf, ELF_LEN, NULL, 0, ""), 0);
	assert_int_equal(l.cpu.rip, ELF_PADDR + 0x40);
	guest_mem_destroy(&l.mem);
}

static void test_bzimage_load(void **state)
{
	static uint8_t bz[BZ_LEN];
	static uint8_t initrd[3 * 4096 + 17];
	const gpa_t zp = PLATFORM_BOOT_ZERO_PAGE;
	struct load l;

	make_bz(bz, 0x020f);
	memset(initrd, 0x3c, sizeof(initrd));
	assert_int_equal(do_load(&l, 64 * MIB, bz, BZ_LEN, initrd,
				 sizeof(initrd), "console=ttyS0"),
			 0);
	const struct guest_mem *m = &l.mem;

	/* Relocatable: loaded at pref_address, entry at +0x200. */
	assert_int_equal(l.res.kind, BOOT_KIND_BZIMAGE);
	assert_memory_equal(guest_mem_ptr(m, BZ_PREF, BZ_PM_LEN),
			    bz + BZ_PM_OFF, BZ_PM_LEN);
	assert_int_equal(l.res.kernel_start, BZ_PREF);
	assert_int_equal(l.res.kernel_end, BZ_PREF + BZ_INIT_SIZE);
	assert_true(l.cpu.long_mode);
	assert_int_equal(l.cpu.rip, BZ_PREF + 0x200);
	assert_int_equal(l.cpu.rsi, zp);
	check_gdt(&l);
	check_page_tables(&l);

	/* The image's setup header is copied ... */
	assert_memory_equal(guest_mem_ptr(m, zp + 0x1f1, 0x210 - 0x1f1),
			    bz + 0x1f1, 0x210 - 0x1f1);
	assert_int_equal(gm_u32(m, zp + 0x260), BZ_INIT_SIZE);
	assert_int_equal(gm_u64(m, zp + 0x258), BZ_PREF);
	assert_int_equal(gm_u16(m, zp + 0x236), 0x3);
	/* ... and the loader's fields written. */
	assert_int_equal(gm_u8(m, zp + 0x210), 0xff);
	assert_int_equal(gm_u8(m, zp + 0x211), 0x81);
	assert_int_equal(gm_u16(m, zp + 0x224), 0xde00);
	assert_int_equal(gm_u32(m, zp + 0x214), BZ_PREF);
	assert_int_equal(gm_u32(m, zp + 0x228), PLATFORM_BOOT_CMDLINE);
	check_cmdline(&l, "console=ttyS0");
	assert_int_equal(gm_u32(m, zp + 0x218), l.res.initrd_addr);
	assert_int_equal(gm_u32(m, zp + 0x21c), sizeof(initrd));
	assert_int_equal(gm_u64(m, zp + 0x070), l.res.rsdp);
	check_zero_page_e820(&l);
	/* Nothing beyond the header end was copied from the image. */
	assert_int_equal(gm_u32(m, zp + 0x26c), 0);
	guest_mem_destroy(&l.mem);
}

/* acpi_rsdp_addr exists from protocol 2.14 on. */
static void test_bzimage_rsdp_needs_2_14(void **state)
{
	static uint8_t bz[BZ_LEN];
	struct load l;

	make_bz(bz, 0x020c);
	assert_int_equal(do_load(&l, 64 * MIB, bz, BZ_LEN, NULL, 0, ""), 0);
	assert_int_equal(gm_u64(&l.mem, PLATFORM_BOOT_ZERO_PAGE + 0x70), 0);
	assert_int_not_equal(l.res.rsdp, 0);
	guest_mem_destroy(&l.mem);
}

static void test_bzimage_alignment(void **state)
{
	static uint8_t bz[BZ_LEN];
	struct load l;

	make_bz(bz, 0x020f);
	put64(bz, 0x258, BZ_PREF + 0x1000);
	assert_int_equal(do_load(&l, 64 * MIB, bz, BZ_LEN, NULL, 0, ""), 0);
	assert_int_equal(l.cpu.rip, BZ_PREF + 0x200000 + 0x200);
	guest_mem_destroy(&l.mem);
}

/* A non-relocatable kernel loads at code32_start and runs from
 * pref_address: both ranges are kept free. */
static void test_bzimage_non_relocatable(void **state)
{
	static uint8_t bz[BZ_LEN];
	struct load l;

	make_bz(bz, 0x020f);
	bz[0x234] = 0;
	assert_int_equal(do_load(&l, 64 * MIB, bz, BZ_LEN, NULL, 0, ""), 0);
	assert_int_equal(l.cpu.rip, 0x100000 + 0x200);
	assert_int_equal(l.res.kernel_start, 0x100000);
	assert_int_equal(l.res.kernel_end, BZ_PREF + BZ_INIT_SIZE);
	assert_memory_equal(guest_mem_ptr(&l.mem, 0x100000, BZ_PM_LEN),
			    bz + BZ_PM_OFF, BZ_PM_LEN);
	guest_mem_destroy(&l.mem);
}

/* initrd placement */

static void check_initrd_clear(const struct load *l, uint64_t size)
{
	gpa_t a = l->res.initrd_addr;

	assert_int_equal(a % 4096, 0);
	assert_true(a >= PLATFORM_KERNEL_LOAD);
	assert_true(a + size <= l->res.kernel_start || a >= l->res.kernel_end);
}

static void test_initrd_top(void **state)
{
	static uint8_t bz[BZ_LEN];
	static uint8_t initrd[12345];
	struct load l;

	make_bz(bz, 0x020f);
	assert_int_equal(
	    do_load(&l, 64 * MIB, bz, BZ_LEN, initrd, sizeof(initrd), ""), 0);
	assert_int_equal(l.res.initrd_addr,
			 (64 * MIB - sizeof(initrd)) & ~0xfffull);
	check_initrd_clear(&l, sizeof(initrd));
	guest_mem_destroy(&l.mem);
}

static void test_initrd_addr_max(void **state)
{
	static uint8_t bz[BZ_LEN];
	static uint8_t initrd[12345];
	struct load l;

	make_bz(bz, 0x020f);
	put32(bz, 0x22c, 0x2ffffff); /* below 48 MiB */
	assert_int_equal(
	    do_load(&l, 64 * MIB, bz, BZ_LEN, initrd, sizeof(initrd), ""), 0);
	assert_int_equal(l.res.initrd_addr,
			 (48 * MIB - sizeof(initrd)) & ~0xfffull);
	assert_true(l.res.initrd_addr + sizeof(initrd) - 1 <= 0x2ffffff);
	check_initrd_clear(&l, sizeof(initrd));
	guest_mem_destroy(&l.mem);
}

/* When the space under initrd_addr_max is the kernel's, the initrd goes
 * below the kernel. */
static void test_initrd_below_kernel(void **state)
{
	static uint8_t bz[BZ_LEN];
	uint64_t size = 10 * MIB;
	uint8_t *initrd = calloc(1, size);
	struct load l;

	assert_non_null(initrd);
	make_bz(bz, 0x020f);
	put32(bz, 0x22c, 20 * MIB - 1);
	assert_int_equal(do_load(&l, 64 * MIB, bz, BZ_LEN, initrd, size, ""),
			 0);
	assert_int_equal(l.res.initrd_addr, BZ_PREF - size);
	check_initrd_clear(&l, size);
	guest_mem_destroy(&l.mem);
	free(initrd);
}

/* A kernel that can take it gets the initrd above 4 GiB when it does not
 * fit below initrd_addr_max. */
static void test_initrd_above_4g(void **state)
{
	static uint8_t bz[BZ_LEN];
	uint64_t size = 40 * MIB;
	uint8_t *initrd = malloc(size);
	struct load l;

	assert_non_null(initrd);
	memset(initrd, 0x77, size);
	make_bz(bz, 0x020f);
	put32(bz, 0x22c, 32 * MIB - 1);
	assert_int_equal(
	    do_load(&l, 3 * GIB + 64 * MIB, bz, BZ_LEN, initrd, size, ""), 0);
	assert_int_equal(l.res.initrd_addr, 4 * GIB + 64 * MIB - size);
	assert_int_equal(gm_u32(&l.mem, PLATFORM_BOOT_ZERO_PAGE + 0x218),
			 (uint32_t)l.res.initrd_addr);
	assert_int_equal(gm_u32(&l.mem, PLATFORM_BOOT_ZERO_PAGE + 0x0c0), 1);
	assert_int_equal(gm_u8(&l.mem, l.res.initrd_addr + size - 1), 0x77);
	guest_mem_destroy(&l.mem);

	/* Without XLF_CAN_BE_LOADED_ABOVE_4G it does not fit. */
	put16(bz, 0x236, 0x1);
	assert_int_equal(
	    do_load(&l, 3 * GIB + 64 * MIB, bz, BZ_LEN, initrd, size, ""),
	    -E2BIG);
	assert_non_null(strstr(l.err, "initrd (40 MiB) does not fit below "
				      "0x2000000 in 3136 MiB"));
	guest_mem_destroy(&l.mem);
	free(initrd);
}

static void test_initrd_too_big(void **state)
{
	static uint8_t elf[ELF_LEN];
	size_t size = 300 * MIB;
	/* Never touched: placement fails before any byte is read. */
	uint8_t *initrd =
	    mmap(NULL, size, PROT_READ,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct load l;

	assert_true(initrd != MAP_FAILED);
	make_elf(elf, true, 4);
	assert_int_equal(do_load(&l, 256 * MIB, elf, ELF_LEN, initrd, size, ""),
			 -E2BIG);
	assert_non_null(strstr(l.err, "initrd (300 MiB) does not fit below "
				      "0x10000000"));
	assert_non_null(strstr(l.err, "256 MiB of guest memory"));
	guest_mem_destroy(&l.mem);
	munmap(initrd, size);
}

static void test_initrd_empty(void **state)
{
	static uint8_t elf[ELF_LEN];
	static uint8_t initrd[1];
	struct load l;

	make_elf(elf, true, 4);
	assert_int_equal(do_load(&l, 64 * MIB, elf, ELF_LEN, initrd, 0, ""),
			 -EINVAL);
	assert_non_null(strstr(l.err, "initrd"));
	guest_mem_destroy(&l.mem);
}

/* malformed images */

static void test_truncated_elf(void **state)
{
	static uint8_t elf[ELF_LEN];

	make_elf(elf, true, 4);
	for (size_t len = 0; len < ELF_LEN; len++) {
		enum boot_kind kind;
		char err[256] = "";

		assert_int_equal(boot_probe(elf, len, &kind, err, sizeof(err)),
				 -EINVAL);
		assert_true(strncmp(err, "kernel: ", 8) == 0);
	}
	expect_fail(elf, 40, -EINVAL, "ELF header truncated");
	expect_fail(elf, 0x70, -EINVAL,
		    "ELF program header 0 extends past end of file");
	expect_fail(elf, 0xa0, -EINVAL,
		    "ELF program header 1 extends past end of file");
	expect_fail(elf, ELF_LEN - 1, -EINVAL, "extends past end of file");
}

static void test_truncated_bzimage(void **state)
{
	static uint8_t bz[BZ_LEN];

	make_bz(bz, 0x020f);
	for (size_t len = 0; len < BZ_LEN; len++) {
		enum boot_kind kind;
		char err[256] = "";

		assert_int_equal(boot_probe(bz, len, &kind, err, sizeof(err)),
				 -EINVAL);
		assert_true(strncmp(err, "kernel: ", 8) == 0);
	}
	/* Loading truncated images, a sample of lengths. */
	for (size_t len = 0; len < BZ_LEN; len += 97)
		expect_fail(bz, len, -EINVAL, "kernel: ");
	expect_fail(bz, 0x250, -EINVAL, "truncated inside its setup header");
	expect_fail(bz, BZ_PM_OFF, -EINVAL, "truncated");
	expect_fail(bz, BZ_LEN - 16, -EINVAL, "syssize");
}

/* Malformed images as table rows: a valid image with up to two fields
 * overwritten, and the error and reason that must come back. */
struct poke {
	size_t off;
	unsigned width; /* 0: unused */
	uint64_t val;
};

enum base_image { BASE_PVH, BASE_PVH_DESC8, BASE_ELF64, BASE_BZ_2_15 };

struct bad_image {
	enum base_image base;
	struct poke poke[2];
	int rc;
	const char *msg;
};

static void poke(uint8_t *b, const struct poke *p)
{
	switch (p->width) {
	case 1:
		b[p->off] = (uint8_t)p->val;
		break;
	case 2:
		put16(b, p->off, (uint16_t)p->val);
		break;
	case 4:
		put32(b, p->off, (uint32_t)p->val);
		break;
	case 8:
		put64(b, p->off, p->val);
		break;
	}
}

static void run_bad_images(const struct bad_image *t, size_t n)
{
	static uint8_t img[ELF_LEN > BZ_LEN ? ELF_LEN : BZ_LEN];

	for (size_t i = 0; i < n; i++) {
		size_t len = ELF_LEN;

		switch (t[i].base) {
		case BASE_PVH:
			make_elf(img, true, 4);
			break;
		case BASE_PVH_DESC8:
			make_elf(img, true, 8);
			break;
		case BASE_ELF64:
			make_elf(img, false, 0);
			break;
		case BASE_BZ_2_15:
			make_bz(img, 0x020f);
			len = BZ_LEN;
			break;
		}
		poke(img, &t[i].poke[0]);
		poke(img, &t[i].poke[1]);
		expect_fail(img, len, t[i].rc, t[i].msg);
	}
}

#define XEN_NOTE (ELF_NOTES + 32) /* after the GNU note */

static void test_bz_bad_header(void **state)
{
	static const struct bad_image t[] = {
		{ BASE_BZ_2_15,
		  { { 0x206, 2, 0x020a } },
		  -EINVAL,
		  "kernel: bzImage boot protocol 2.10 too old: 64-bit entry "
		  "needs 2.12" },
		{ BASE_BZ_2_15,
		  { { 0x206, 2, 0x020b } },
		  -EINVAL,
		  "2.11 too old" },
		{ BASE_BZ_2_15,
		  { { 0x236, 2, 0x2 } },
		  -EINVAL,
		  "XLF_KERNEL_64" },
		{ BASE_BZ_2_15,
		  { { 0x1fe, 2, 0x1234 } },
		  -EINVAL,
		  "boot_flag 0x1234" },
		{ BASE_BZ_2_15, { { 0x211, 1, 0 } }, -EINVAL, "zImage" },
		{ BASE_BZ_2_15, { { 0x200, 1, 0x90 } }, -EINVAL, "no jump" },
		/* The header would end at 0x252, before init_size. */
		{ BASE_BZ_2_15,
		  { { 0x201, 1, 0x50 } },
		  -EINVAL,
		  "before init_size" },
		{ BASE_BZ_2_15,
		  { { 0x230, 4, 0x3000 } },
		  -EINVAL,
		  "not a power of two" },
		{ BASE_BZ_2_15,
		  { { 0x258, 8, 0xfffffffffffff000ull } },
		  -EINVAL,
		  "above 4 GiB" },
		/* 256 bytes of code: no room for the entry at +0x200. */
		{ BASE_BZ_2_15, { { 0x1f4, 4, 0x10 } }, -EINVAL, "too short" },
		/* Not relocatable, loaded below 1 MiB. */
		{ BASE_BZ_2_15,
		  { { 0x234, 1, 0 }, { 0x214, 4, 0x90000 } },
		  -EINVAL,
		  "code32_start 0x90000 is below 1 MiB" },
		/* 16 MiB + 60 MiB of init_size in 64 MiB. */
		{ BASE_BZ_2_15,
		  { { 0x260, 4, 60 * MIB } },
		  -E2BIG,
		  "64 MiB of guest memory" },
	};

	run_bad_images(t, sizeof(t) / sizeof(t[0]));
}

static void test_elf_bad_header(void **state)
{
	static const struct bad_image t[] = {
		{ BASE_PVH, { { 4, 1, 1 } }, -EINVAL, "kernel: ELF is 32-bit" },
		{ BASE_PVH, { { 5, 1, 2 } }, -EINVAL, "little-endian" },
		{ BASE_PVH, { { 6, 1, 0 } }, -EINVAL, "version 0" },
		{ BASE_PVH, { { 18, 2, 3 } }, -EINVAL, "machine 3" },
		{ BASE_PVH, { { 16, 2, 3 } }, -EINVAL, "not ET_EXEC" },
		{ BASE_PVH, { { 56, 2, 0 } }, -EINVAL, "no program headers" },
		{ BASE_PVH,
		  { { 56, 2, 0xffff } },
		  -EINVAL,
		  "65535 program headers" },
		{ BASE_PVH, { { 54, 2, 32 } }, -EINVAL, "program header size" },
		/* PT_PHDR instead of PT_LOAD: nothing left to load. */
		{ BASE_PVH,
		  { { ELF_PHDR0, 4, 6 } },
		  -EINVAL,
		  "no loadable segment" },
	};

	run_bad_images(t, sizeof(t) / sizeof(t[0]));
}

static void test_elf_bad_segments(void **state)
{
	static const struct bad_image t[] = {
		{ BASE_ELF64,
		  { { ELF_PHDR0 + 24, 8, 100 * MIB }, { 24, 8, ELF_VADDR } },
		  -E2BIG,
		  "64 MiB of guest memory" },
		/* In the hole below 4 GiB. */
		{ BASE_ELF64,
		  { { ELF_PHDR0 + 24, 8, 0xe0000000 }, { 24, 8, ELF_VADDR } },
		  -E2BIG,
		  "beyond the end of RAM" },
		{ BASE_PVH,
		  { { ELF_PHDR0 + 24, 8, 0x7000 } },
		  -EINVAL,
		  "boot area below 1 MiB" },
		{ BASE_PVH,
		  { { ELF_PHDR0 + 40, 8, ELF_FILESZ - 1 } },
		  -EINVAL,
		  "larger than p_memsz" },
		/* The note header turned into a PT_LOAD over the first. */
		{ BASE_PVH,
		  { { ELF_PHDR1, 4, 1 },
		    { ELF_PHDR1 + 24, 8, ELF_PADDR + ELF_MEMSZ - 1 } },
		  -EINVAL,
		  "ELF segments 0 and 1 overlap" },
		{ BASE_PVH,
		  { { XEN_NOTE + 16, 4, 0x900000 } },
		  -EINVAL,
		  "PVH entry 0x900000 is not inside any loadable segment" },
		{ BASE_ELF64,
		  { { 24, 8, 0x900000 } },
		  -EINVAL,
		  "entry point 0x900000 is not inside any loadable segment" },
		/* A huge memsz is the guest's problem, not an overflow. */
		{ BASE_PVH,
		  { { ELF_PHDR0 + 40, 8, GIB } },
		  -E2BIG,
		  "guest memory" },
	};

	run_bad_images(t, sizeof(t) / sizeof(t[0]));
}

static void test_elf_overflow(void **state)
{
	static const struct bad_image t[] = {
		{ BASE_PVH,
		  { { ELF_PHDR0 + 8, 8, UINT64_MAX - 0x10 } },
		  -EINVAL,
		  "extends past end of file" },
		{ BASE_PVH,
		  { { ELF_PHDR0 + 32, 8, UINT64_MAX },
		    { ELF_PHDR0 + 40, 8, UINT64_MAX } },
		  -EINVAL,
		  "extends past end of file" },
		{ BASE_PVH,
		  { { ELF_PHDR0 + 24, 8, UINT64_MAX - 0x100 } },
		  -EINVAL,
		  "overflows" },
		{ BASE_PVH,
		  { { ELF_PHDR0 + 16, 8, UINT64_MAX - 0x100 } },
		  -EINVAL,
		  "overflows" },
		{ BASE_PVH,
		  { { 32, 8, UINT64_MAX - 8 } },
		  -EINVAL,
		  "past end of file" },
		{ BASE_PVH,
		  { { ELF_PHDR1 + 8, 8, UINT64_MAX - 3 } },
		  -EINVAL,
		  "extends past end of file" },
	};

	run_bad_images(t, sizeof(t) / sizeof(t[0]));
}

static void test_elf_bad_notes(void **state)
{
	static const struct bad_image t[] = {
		{ BASE_PVH,
		  { { ELF_NOTES, 4, 0xffffffff } },
		  -EINVAL,
		  "runs past its segment" },
		{ BASE_PVH,
		  { { ELF_NOTES + 4, 4, 0xfffffff0 } },
		  -EINVAL,
		  "runs past its segment" },
		{ BASE_PVH,
		  { { XEN_NOTE + 4, 4, 2 } },
		  -EINVAL,
		  "2-byte value" },
		{ BASE_PVH_DESC8,
		  { { XEN_NOTE + 16, 8, 0x100000000ull } },
		  -EINVAL,
		  "above 4 GiB" },
		/* A note cut after 5 bytes. */
		{ BASE_PVH,
		  { { ELF_PHDR1 + 32, 8, 5 } },
		  -EINVAL,
		  "truncated" },
	};

	run_bad_images(t, sizeof(t) / sizeof(t[0]));
}

/* A command line of @max bytes loads, one of @max + 1 is refused. */
static void check_cmdline_limit(const uint8_t *k, size_t klen, size_t max)
{
	char *s = malloc(max + 2);
	char want[64];
	struct load l;

	assert_non_null(s);
	memset(s, 'a', max + 1);
	s[max] = '\0';
	assert_int_equal(do_load(&l, 64 * MIB, k, klen, NULL, 0, s), 0);
	check_cmdline(&l, s);
	guest_mem_destroy(&l.mem);

	s[max] = 'a';
	s[max + 1] = '\0';
	assert_int_equal(do_load(&l, 64 * MIB, k, klen, NULL, 0, s), -E2BIG);
	snprintf(want, sizeof(want), "command line is %zu bytes", max + 1);
	assert_non_null(strstr(l.err, want));
	snprintf(want, sizeof(want), "at most %zu", max);
	assert_non_null(strstr(l.err, want));
	guest_mem_destroy(&l.mem);
	free(s);
}

static void test_cmdline_too_long(void **state)
{
	static uint8_t bz[BZ_LEN], elf[ELF_LEN];

	/* bzImage: the kernel's cmdline_size; PVH: our 64 KiB buffer. */
	make_bz(bz, 0x020f);
	check_cmdline_limit(bz, BZ_LEN, 2047);
	make_elf(elf, true, 4);
	check_cmdline_limit(elf, ELF_LEN, PLATFORM_BOOT_CMDLINE_MAX - 1);
	/* A kernel asking for more than 64 KiB gets 64 KiB. */
	put32(bz, 0x238, 0x100000);
	check_cmdline_limit(bz, BZ_LEN, PLATFORM_BOOT_CMDLINE_MAX - 1);
}

static void test_kernel_too_big(void **state)
{
	size_t size = BOOT_KERNEL_MAX + 4096;
	uint8_t *k = mmap(NULL, size, PROT_READ,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	assert_true(k != MAP_FAILED);
	expect_fail(k, size, -E2BIG, "larger than the 512 MiB");
	munmap(k, size);
}

static void test_bad_ncpus(void **state)
{
	static uint8_t elf[ELF_LEN];
	struct boot_config cfg = {
		.kernel = elf, .kernel_len = ELF_LEN, .cmdline = "", .ncpus = 0
	};
	struct boot_result res;
	struct boot_cpu cpu;
	struct guest_mem m;
	char err[128];

	make_elf(elf, true, 4);
	assert_int_equal(guest_mem_init(&m, 64 * MIB), 0);
	assert_int_equal(boot_load(&m, &cfg, &cpu, &res, err, sizeof(err)),
			 -EINVAL);
	cfg.ncpus = PLATFORM_MAX_CPUS + 1;
	assert_int_equal(boot_load(&m, &cfg, &cpu, &res, err, sizeof(err)),
			 -EINVAL);
	cfg.ncpus = PLATFORM_MAX_CPUS;
	assert_int_equal(boot_load(&m, &cfg, &cpu, &res, err, sizeof(err)), 0);
	guest_mem_destroy(&m);
}

/* Random byte flips of valid images: any result is fine, a crash or a
 * sanitizer report is not. */
static void test_mutations(void **state)
{
	static uint8_t elf[ELF_LEN], bz[BZ_LEN],
	    img[ELF_LEN > BZ_LEN ? ELF_LEN : BZ_LEN];
	static uint8_t initrd[4096];
	struct boot_config cfg = { .initrd = initrd,
				   .initrd_len = sizeof(initrd),
				   .cmdline = "console=ttyS0",
				   .ncpus = 1 };
	struct boot_result res;
	struct boot_cpu cpu;
	struct guest_mem m;
	uint32_t seed = 12345;
	char err[256];

	make_elf(elf, true, 4);
	make_bz(bz, 0x020f);
	assert_int_equal(guest_mem_init(&m, 32 * MIB), 0);
	for (unsigned round = 0; round < 4000; round++) {
		const uint8_t *base = round & 1 ? bz : elf;
		size_t len = round & 1 ? BZ_LEN : ELF_LEN;
		unsigned flips;
		enum boot_kind kind;

		memcpy(img, base, len);
		seed = seed * 1103515245 + 12345;
		flips = 1 + (seed >> 16) % 4;
		for (unsigned f = 0; f < flips; f++) {
			/* Bias towards the headers, where parsing happens. */
			size_t span = (seed >> 8) & 1 ? 0x300 : len;

			seed = seed * 1103515245 + 12345;
			img[(seed >> 8) % span] = (uint8_t)(seed >> 24);
		}
		boot_probe(img, len, &kind, err, sizeof(err));
		cfg.kernel = img;
		cfg.kernel_len = len;
		boot_load(&m, &cfg, &cpu, &res, err, sizeof(err));
	}
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_kinds),
		cmocka_unit_test(test_probe_bad_magic),
		cmocka_unit_test(test_pvh_load),
		cmocka_unit_test(test_pvh_load_desc8),
		cmocka_unit_test(test_pvh_no_initrd),
		cmocka_unit_test(test_elf64_load),
		cmocka_unit_test(test_elf64_virtual_entry),
		cmocka_unit_test(test_bzimage_load),
		cmocka_unit_test(test_bzimage_rsdp_needs_2_14),
		cmocka_unit_test(test_bzimage_alignment),
		cmocka_unit_test(test_bzimage_non_relocatable),
		cmocka_unit_test(test_initrd_top),
		cmocka_unit_test(test_initrd_addr_max),
		cmocka_unit_test(test_initrd_below_kernel),
		cmocka_unit_test(test_initrd_above_4g),
		cmocka_unit_test(test_initrd_too_big),
		cmocka_unit_test(test_initrd_empty),
		cmocka_unit_test(test_truncated_elf),
		cmocka_unit_test(test_truncated_bzimage),
		cmocka_unit_test(test_bz_bad_header),
		cmocka_unit_test(test_elf_bad_header),
		cmocka_unit_test(test_elf_bad_segments),
		cmocka_unit_test(test_elf_overflow),
		cmocka_unit_test(test_elf_bad_notes),
		cmocka_unit_test(test_cmdline_too_long),
		cmocka_unit_test(test_kernel_too_big),
		cmocka_unit_test(test_bad_ncpus),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
