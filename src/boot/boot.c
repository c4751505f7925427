/* Boot entry points: recognise a kernel image, plan where everything goes,
 * then write kernel, initrd, command line, tables and the boot CPU state.
 * The memory layout is described in docs/boot.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "boot/boot_priv.h"
#include "core/platform.h"

#define PAGE_SIZE 0x1000ull
#define PAGE_MASK (PAGE_SIZE - 1)
#define MIB (1ull << 20)
#define GIB (1ull << 30)
#define FOUR_GIB (4ull << 30)

/* Boot GDT (Intel SDM vol. 3A, 3.4.5): flat 4 GiB segments, accessed. The
 * 64-bit boot protocol wants __BOOT_CS 0x10 and __BOOT_DS 0x18 (boot.rst,
 * "64-bit Boot Protocol"); PVH enters through the 32-bit code segment. */
#define GDT_ENTRIES 4
#define GDT_CODE32 0x00cf9b000000ffffull /* G, D, P, code exec/read */
#define GDT_CODE64 0x00af9b000000ffffull /* G, L, P, code exec/read */
#define GDT_DATA 0x00cf93000000ffffull /* G, B, P, data read/write */

_Static_assert(PLATFORM_BOOT_CS32 == 1 * 8 && PLATFORM_BOOT_CS64 == 2 * 8 &&
		   PLATFORM_BOOT_DS == 3 * 8,
	       "GDT slots match the selectors");

/* Identity map of the first 4 GiB with 2 MiB pages (SDM vol. 3A, 4.5). */
#define PTE_PRESENT (1ull << 0)
#define PTE_WRITE (1ull << 1)
#define PTE_LARGE (1ull << 7)
#define PAGE_TABLE_ENTRIES 512
#define BOOT_PDS 4

/* hvm_start_info, version 1 (Xen public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578u
#define HVM_START_VERSION 1
#define HVM_SI_MAGIC 0
#define HVM_SI_VERSION 4
#define HVM_SI_FLAGS 8
#define HVM_SI_NR_MODULES 12
#define HVM_SI_MODLIST_PADDR 16
#define HVM_SI_CMDLINE_PADDR 24
#define HVM_SI_RSDP_PADDR 32
#define HVM_SI_MEMMAP_PADDR 40
#define HVM_SI_MEMMAP_ENTRIES 48
#define HVM_SI_SIZE 56
#define HVM_MEMMAP_ENTRY_SIZE 24 /* u64 addr, u64 size, u32 type, u32 0 */
#define HVM_MODLIST_ENTRY_SIZE 32 /* u64 paddr, size, cmdline_paddr, 0 */

/* What a boot_params built for a plain ELF vmlinux claims to be: the newest
 * protocol whose loader-written fields we fill (acpi_rsdp_addr is 2.14). */
#define ELF64_BOOT_PROTOCOL 0x020f

_Static_assert(HVM_SI_SIZE + E820_MAX_ENTRIES * HVM_MEMMAP_ENTRY_SIZE +
		       HVM_MODLIST_ENTRY_SIZE <=
		   PLATFORM_BOOT_ZERO_PAGE - PLATFORM_BOOT_START_INFO,
	       "start info, memmap and modlist fit before the zero page");
_Static_assert(E820_MAX_ENTRIES <= BP_E820_MAX, "e820 fits boot_params");
_Static_assert(PLATFORM_BOOT_CMDLINE + PLATFORM_BOOT_CMDLINE_MAX <=
		   PLATFORM_EBDA_START,
	       "the command line sits in low RAM");

int boot_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void boot_fmt_size(char *buf, size_t buflen, uint64_t size)
{
	if (size >= MIB && size % MIB == 0)
		snprintf(buf, buflen, "%llu MiB",
			 (unsigned long long)(size / MIB));
	else if (size >= MIB)
		snprintf(buf, buflen, "%.1f MiB", (double)size / MIB);
	else if (size >= 1024)
		snprintf(buf, buflen, "%llu KiB",
			 (unsigned long long)((size + 1023) / 1024));
	else
		snprintf(buf, buflen, "%llu bytes", (unsigned long long)size);
}

static bool boot_is_elf(const struct img *im)
{
	return img_has(im, 0, 4) && memcmp(im->data, "\177ELF", 4) == 0;
}

/* Where the kernel goes and what it accepts, worked out before anything is
 * written to guest memory. */
struct boot_plan {
	enum boot_kind kind;
	struct elf_image elf; /* PVH, ELF64 */
	struct bzimage bz; /* BZIMAGE */
	gpa_t kernel_start, kernel_end; /* memory the kernel needs */
	gpa_t entry;
	uint64_t cmdline_max; /* longest command line, without NUL */
	uint64_t initrd_limit; /* initrd ends at or below this, under 4G */
	bool initrd_high; /* the kernel takes an initrd above 4 GiB */
	gpa_t initrd_addr;
	uint16_t protocol; /* boot_params version we present */
};

static int boot_plan_kernel(const struct img *im, struct boot_plan *p,
			    char *err, size_t errlen)
{
	int ret;

	memset(p, 0, sizeof(*p));
	if (boot_is_elf(im)) {
		ret = elf_parse(im, &p->elf, err, errlen);
		if (ret)
			return ret;
		p->kind = p->elf.pvh ? BOOT_KIND_PVH : BOOT_KIND_ELF64;
		p->kernel_start = p->elf.start;
		p->kernel_end = p->elf.end;
		p->entry = p->elf.entry;
		/* Module addresses (PVH) and ext_ramdisk_image (64-bit
		 * Linux) are 64-bit. */
		p->initrd_limit = FOUR_GIB;
		p->initrd_high = true;
		p->cmdline_max = PLATFORM_BOOT_CMDLINE_MAX - 1;
		p->protocol = ELF64_BOOT_PROTOCOL;
		return 0;
	}
	if (!img_has(im, 0, HDR_MAGIC + 4))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: not an ELF or bzImage (file is only "
				 "%zu bytes)",
				 im->len);
	ret = bzimage_parse(im, &p->bz, err, errlen);
	if (ret)
		return ret;
	p->kind = BOOT_KIND_BZIMAGE;
	p->kernel_start = p->bz.start;
	p->kernel_end = p->bz.end;
	p->entry = p->bz.load_addr + 0x200;
	p->initrd_limit = (uint64_t)p->bz.initrd_addr_max + 1;
	p->initrd_high = p->bz.above_4g;
	p->cmdline_max = p->bz.cmdline_size;
	if (p->cmdline_max > PLATFORM_BOOT_CMDLINE_MAX - 1)
		p->cmdline_max = PLATFORM_BOOT_CMDLINE_MAX - 1;
	p->protocol = p->bz.version;
	return 0;
}

int boot_probe(const uint8_t *img, size_t len, enum boot_kind *kind, char *err,
	       size_t errlen)
{
	struct img im = { .data = img, .len = img ? len : 0 };
	struct boot_plan plan;
	int ret;

	ret = boot_plan_kernel(&im, &plan, err, errlen);
	if (ret)
		return ret;
	*kind = plan.kind;
	return 0;
}

/* Finds the highest page-aligned spot for the initrd below @top that stays
 * clear of the boot area and the kernel, or 0. */
static gpa_t boot_fit_low(uint64_t size, uint64_t top, gpa_t kstart, gpa_t kend)
{
	gpa_t a;

	if (size > top)
		return 0;
	a = (top - size) & ~PAGE_MASK;
	if (a < kend && a + size > kstart) {
		/* Overlaps the kernel: try just below it. */
		if (size > kstart)
			return 0;
		a = (kstart - size) & ~PAGE_MASK;
	}
	if (a < PLATFORM_KERNEL_LOAD || a + size > top)
		return 0;
	return a;
}

/* boot.rst, initrd_addr_max: load the initrd as high as possible. Below
 * 4 GiB first, since every kernel can reach it; above only when the kernel
 * says it can take that. */
static int boot_place_initrd(const struct guest_mem *mem, uint64_t size,
			     struct boot_plan *p, char *err, size_t errlen)
{
	const struct mem_region *low = &mem->regions[0];
	uint64_t top =
	    low->size < p->initrd_limit ? low->size : p->initrd_limit;
	char sz[32], total[32];

	p->initrd_addr =
	    boot_fit_low(size, top, p->kernel_start, p->kernel_end);
	if (p->initrd_addr)
		return 0;
	if (p->initrd_high && mem->nregions > 1) {
		const struct mem_region *high = &mem->regions[1];

		if (size <= high->size) {
			p->initrd_addr =
			    (high->gpa + high->size - size) & ~PAGE_MASK;
			if (p->initrd_addr >= high->gpa)
				return 0;
		}
	}
	boot_fmt_size(sz, sizeof(sz), size);
	boot_fmt_size(total, sizeof(total), mem->size);
	return boot_fail(err, errlen, -E2BIG,
			 "initrd (%s) does not fit below 0x%llx%s in %s of "
			 "guest memory",
			 sz, (unsigned long long)top,
			 p->initrd_high && mem->nregions > 1 ? " or above 4 GiB"
							     : "",
			 total);
}

static int boot_check(const struct guest_mem *mem,
		      const struct boot_config *cfg, char *err, size_t errlen)
{
	char sz[32];

	if (!mem || mem->nregions == 0 || mem->regions[0].gpa != 0)
		return boot_fail(err, errlen, -EINVAL,
				 "guest memory is not set up");
	if (!cfg->kernel || !cfg->cmdline)
		return boot_fail(err, errlen, -EINVAL,
				 "no kernel image or command line");
	if (cfg->ncpus == 0 || cfg->ncpus > PLATFORM_MAX_CPUS)
		return boot_fail(err, errlen, -EINVAL,
				 "%u vCPUs: stasis supports 1 to %d",
				 cfg->ncpus, PLATFORM_MAX_CPUS);
	if (cfg->kernel_len > BOOT_KERNEL_MAX) {
		boot_fmt_size(sz, sizeof(sz), cfg->kernel_len);
		return boot_fail(err, errlen, -E2BIG,
				 "kernel: image (%s) is larger than the "
				 "%llu MiB stasis accepts",
				 sz, BOOT_KERNEL_MAX / MIB);
	}
	if (cfg->initrd && cfg->initrd_len == 0)
		return boot_fail(err, errlen, -EINVAL, "initrd: file is empty");
	if (cfg->initrd && cfg->initrd_len > BOOT_INITRD_MAX) {
		boot_fmt_size(sz, sizeof(sz), cfg->initrd_len);
		return boot_fail(err, errlen, -E2BIG,
				 "initrd (%s) is larger than the %llu MiB "
				 "stasis accepts",
				 sz, BOOT_INITRD_MAX / MIB);
	}
	return 0;
}

static int boot_write_gdt(struct guest_mem *mem)
{
	uint8_t buf[GDT_ENTRIES * 8] = { 0 };
	struct outbuf b = { .data = buf, .len = sizeof(buf) };

	out_put64(&b, PLATFORM_BOOT_CS32, GDT_CODE32);
	out_put64(&b, PLATFORM_BOOT_CS64, GDT_CODE64);
	out_put64(&b, PLATFORM_BOOT_DS, GDT_DATA);
	return guest_mem_write(mem, PLATFORM_BOOT_GDT, buf, sizeof(buf));
}

/* PML4[0] -> PDPT, PDPT[0..3] -> four page directories of 2 MiB pages:
 * the identity map the 64-bit boot protocol requires for the kernel, the
 * zero page and the command line (boot.rst, "64-bit Boot Protocol"). */
static int boot_write_page_tables(struct guest_mem *mem)
{
	uint8_t page[PAGE_SIZE];
	struct outbuf b = { .data = page, .len = sizeof(page) };
	int ret;

	memset(page, 0, sizeof(page));
	out_put64(&b, 0, PLATFORM_BOOT_PDPT | PTE_PRESENT | PTE_WRITE);
	ret = guest_mem_write(mem, PLATFORM_BOOT_PML4, page, sizeof(page));
	if (ret)
		return ret;

	memset(page, 0, sizeof(page));
	for (unsigned i = 0; i < BOOT_PDS; i++)
		out_put64(&b, i * 8,
			  (PLATFORM_BOOT_PD + i * PAGE_SIZE) | PTE_PRESENT |
			      PTE_WRITE);
	ret = guest_mem_write(mem, PLATFORM_BOOT_PDPT, page, sizeof(page));
	if (ret)
		return ret;

	for (unsigned i = 0; i < BOOT_PDS; i++) {
		for (unsigned j = 0; j < PAGE_TABLE_ENTRIES; j++)
			out_put64(&b, j * 8,
				  ((uint64_t)i * GIB + (uint64_t)j * 2 * MIB) |
				      PTE_PRESENT | PTE_WRITE | PTE_LARGE);
		ret = guest_mem_write(mem, PLATFORM_BOOT_PD + i * PAGE_SIZE,
				      page, sizeof(page));
		if (ret)
			return ret;
	}
	return 0;
}

/* Both the PVH memmap and boot_params.e820_table start each entry with
 * u64 addr, u64 size, u32 type; only their strides differ. */
static void boot_put_e820(struct outbuf *b, size_t off, size_t stride,
			  const struct e820_entry *map, size_t n)
{
	for (size_t i = 0; i < n; i++, off += stride) {
		out_put64(b, off, map[i].addr);
		out_put64(b, off + 8, map[i].size);
		out_put32(b, off + 16, map[i].type);
	}
}

/* hvm_start_info with the memory map and the initrd as module 0 right
 * after it (Xen PVH start-info ABI, version 1). */
static int boot_write_start_info(struct guest_mem *mem,
				 const struct boot_plan *p,
				 uint64_t initrd_size, gpa_t rsdp,
				 const struct e820_entry *map, size_t n)
{
	uint8_t page[PLATFORM_BOOT_ZERO_PAGE - PLATFORM_BOOT_START_INFO];
	struct outbuf b = { .data = page, .len = sizeof(page) };
	size_t memmap = HVM_SI_SIZE;
	size_t modlist = memmap + n * HVM_MEMMAP_ENTRY_SIZE;

	memset(page, 0, sizeof(page));
	out_put32(&b, HVM_SI_MAGIC, HVM_START_MAGIC);
	out_put32(&b, HVM_SI_VERSION, HVM_START_VERSION);
	out_put32(&b, HVM_SI_FLAGS, 0);
	out_put64(&b, HVM_SI_CMDLINE_PADDR, PLATFORM_BOOT_CMDLINE);
	out_put64(&b, HVM_SI_RSDP_PADDR, rsdp);
	out_put64(&b, HVM_SI_MEMMAP_PADDR, PLATFORM_BOOT_START_INFO + memmap);
	out_put32(&b, HVM_SI_MEMMAP_ENTRIES, (uint32_t)n);
	/* The memmap types are the e820 ones. */
	boot_put_e820(&b, memmap, HVM_MEMMAP_ENTRY_SIZE, map, n);
	if (initrd_size) {
		out_put32(&b, HVM_SI_NR_MODULES, 1);
		out_put64(&b, HVM_SI_MODLIST_PADDR,
			  PLATFORM_BOOT_START_INFO + modlist);
		out_put64(&b, modlist, p->initrd_addr);
		out_put64(&b, modlist + 8, initrd_size);
	}
	return guest_mem_write(mem, PLATFORM_BOOT_START_INFO, page,
			       sizeof(page));
}

/* boot_params for the Linux 64-bit entry: the bzImage's own setup header,
 * or a minimal one for a plain vmlinux, plus the fields the loader owns
 * (Documentation/arch/x86/zero-page.rst). */
static int boot_write_zero_page(struct guest_mem *mem, const struct img *im,
				const struct boot_plan *p, uint64_t initrd_size,
				gpa_t rsdp, const struct e820_entry *map,
				size_t n)
{
	uint8_t page[BP_SIZE];
	struct outbuf b = { .data = page, .len = sizeof(page) };

	memset(page, 0, sizeof(page));
	if (p->kind == BOOT_KIND_BZIMAGE) {
		bzimage_fill_header(im, &p->bz, &b);
	} else {
		out_put16(&b, HDR_BOOT_FLAG, BOOT_FLAG_MAGIC);
		out_put32(&b, HDR_MAGIC, HDR_MAGIC_VALUE);
		out_put16(&b, HDR_VERSION, p->protocol);
		out_put8(&b, HDR_TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
		out_put8(&b, HDR_LOADFLAGS, LOADFLAGS_LOADED_HIGH);
		out_put32(&b, HDR_CMDLINE_SIZE,
			  (uint32_t)PLATFORM_BOOT_CMDLINE_MAX - 1);
	}
	out_put32(&b, HDR_CMD_LINE_PTR, (uint32_t)PLATFORM_BOOT_CMDLINE);
	out_put32(&b, BP_EXT_CMD_LINE_PTR,
		  (uint32_t)(PLATFORM_BOOT_CMDLINE >> 32));
	out_put32(&b, HDR_RAMDISK_IMAGE, (uint32_t)p->initrd_addr);
	out_put32(&b, HDR_RAMDISK_SIZE, (uint32_t)initrd_size);
	out_put32(&b, BP_EXT_RAMDISK_IMAGE, (uint32_t)(p->initrd_addr >> 32));
	out_put32(&b, BP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));
	out_put8(&b, BP_E820_ENTRIES, (uint8_t)n);
	boot_put_e820(&b, BP_E820_TABLE, BP_E820_ENTRY_SIZE, map, n);
	if (p->protocol >= 0x020e)
		out_put64(&b, BP_ACPI_RSDP_ADDR, rsdp);
	return guest_mem_write(mem, PLATFORM_BOOT_ZERO_PAGE, page,
			       sizeof(page));
}

static int boot_write(struct guest_mem *mem, const struct boot_config *cfg,
		      const struct img *im, const struct boot_plan *p,
		      gpa_t *rsdp)
{
	struct e820_entry map[E820_MAX_ENTRIES];
	uint64_t initrd_size = cfg->initrd ? cfg->initrd_len : 0;
	size_t n;
	int ret;

	ret = acpi_build(mem, cfg->ncpus, cfg->vmgenid, rsdp);
	if (ret)
		return ret;
	if (p->kind == BOOT_KIND_BZIMAGE)
		ret = bzimage_load(mem, im, &p->bz);
	else
		ret = elf_load(mem, im, &p->elf);
	if (ret)
		return ret;
	if (initrd_size) {
		ret = guest_mem_write(mem, p->initrd_addr, cfg->initrd,
				      initrd_size);
		if (ret)
			return ret;
	}
	ret = guest_mem_write(mem, PLATFORM_BOOT_CMDLINE, cfg->cmdline,
			      strlen(cfg->cmdline) + 1);
	if (ret)
		return ret;
	ret = boot_write_gdt(mem);
	if (ret)
		return ret;
	n = e820_build(mem, map, E820_MAX_ENTRIES);
	if (p->kind == BOOT_KIND_PVH)
		return boot_write_start_info(mem, p, initrd_size, *rsdp, map,
					     n);
	ret = boot_write_zero_page(mem, im, p, initrd_size, *rsdp, map, n);
	if (ret)
		return ret;
	return boot_write_page_tables(mem);
}

int boot_load(struct guest_mem *mem, const struct boot_config *cfg,
	      struct boot_cpu *cpu, struct boot_result *res, char *err,
	      size_t errlen)
{
	const struct mem_region *low;
	struct img im;
	struct boot_plan plan;
	char sz[32], total[32];
	size_t cmdlen;
	gpa_t rsdp = 0;
	int ret;

	memset(cpu, 0, sizeof(*cpu));
	memset(res, 0, sizeof(*res));
	ret = boot_check(mem, cfg, err, errlen);
	if (ret)
		return ret;
	im = (struct img){ .data = cfg->kernel, .len = cfg->kernel_len };
	ret = boot_plan_kernel(&im, &plan, err, errlen);
	if (ret)
		return ret;

	low = &mem->regions[0];
	if (plan.kernel_end > low->size) {
		boot_fmt_size(sz, sizeof(sz),
			      plan.kernel_end - plan.kernel_start);
		boot_fmt_size(total, sizeof(total), mem->size);
		return boot_fail(err, errlen, -E2BIG,
				 "kernel: needs %s at 0x%llx-0x%llx, beyond "
				 "the end of RAM below 4 GiB (0x%llx) in %s of "
				 "guest memory",
				 sz, (unsigned long long)plan.kernel_start,
				 (unsigned long long)plan.kernel_end,
				 (unsigned long long)low->size, total);
	}
	cmdlen = strlen(cfg->cmdline);
	if (cmdlen > plan.cmdline_max)
		return boot_fail(err, errlen, -E2BIG,
				 "command line is %zu bytes; the kernel "
				 "accepts at most %llu",
				 cmdlen, (unsigned long long)plan.cmdline_max);
	if (cfg->initrd) {
		ret =
		    boot_place_initrd(mem, cfg->initrd_len, &plan, err, errlen);
		if (ret)
			return ret;
	}

	ret = boot_write(mem, cfg, &im, &plan, &rsdp);
	if (ret)
		return boot_fail(err, errlen, ret,
				 "cannot write boot data to guest memory: %s",
				 strerror(-ret));

	cpu->rip = plan.entry;
	cpu->gdt_base = PLATFORM_BOOT_GDT;
	cpu->gdt_limit = GDT_ENTRIES * 8 - 1;
	if (plan.kind == BOOT_KIND_PVH) {
		/* PVH entry: 32-bit protected mode, paging off, %ebx holds
		 * the start info (Xen docs/misc/pvh.pandoc). */
		cpu->long_mode = false;
		cpu->rbx = PLATFORM_BOOT_START_INFO;
	} else {
		cpu->long_mode = true;
		cpu->rsi = PLATFORM_BOOT_ZERO_PAGE;
		cpu->cr3 = PLATFORM_BOOT_PML4;
	}

	res->kind = plan.kind;
	res->kernel_start = plan.kernel_start;
	res->kernel_end = plan.kernel_end;
	res->initrd_addr = cfg->initrd ? plan.initrd_addr : 0;
	res->initrd_size = cfg->initrd ? cfg->initrd_len : 0;
	res->rsdp = rsdp;
	return 0;
}
