/* boot.c - what the loader handed over (PVH start info or Linux
 * boot_params), command-line arguments, and the RAM allocator. */
#include "runtime.h"

/* xen/include/public/arch-x86/hvm/start_info.h, version 1. */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/* Offsets in struct boot_params, the "zero page" (Linux
 * Documentation/arch/x86/zero-page.rst and boot.rst). */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define BP_E820_ENTRY_SIZE 20

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void copy_cmdline(uint64_t paddr)
{
	const char *s = (const char *)paddr;
	char *d = guest_kit.boot.cmdline;
	size_t i;

	if (!paddr)
		return;
	for (i = 0; i + 1 < GUEST_CMDLINE_MAX && s[i]; i++)
		d[i] = s[i];
	d[i] = '\0';
}

static void add_range(uint64_t start, uint64_t size, uint32_t type)
{
	struct guest_boot_info *b = &guest_kit.boot;

	if (b->memmap_count < GUEST_MEMMAP_MAX)
		b->memmap[b->memmap_count++] =
		    (struct guest_mem_range){ start, size, type };
}

static void add_module(uint64_t start, uint64_t size)
{
	struct guest_boot_info *b = &guest_kit.boot;

	if (size && b->module_count < GUEST_MODULES_MAX)
		b->modules[b->module_count++] =
		    (struct guest_module){ start, size };
}

static void parse_pvh(const struct hvm_start_info *si)
{
	uint32_t i;

	copy_cmdline(si->cmdline_paddr);
	guest_kit.boot.rsdp = si->rsdp_paddr;
	for (i = 0; si->modlist_paddr && i < si->nr_modules; i++) {
		const struct hvm_modlist_entry *m =
		    (const void *)(si->modlist_paddr + i * sizeof(*m));
		add_module(m->paddr, m->size);
	}
	if (si->version < 1 || !si->memmap_paddr)
		return;
	for (i = 0; i < si->memmap_entries; i++) {
		const struct hvm_memmap_table_entry *e =
		    (const void *)(si->memmap_paddr + i * sizeof(*e));
		add_range(e->addr, e->size, e->type);
	}
}

static void parse_linux(const uint8_t *bp)
{
	unsigned int i, n = bp[BP_E820_ENTRIES];

	copy_cmdline(rd32(bp + BP_CMD_LINE_PTR) |
		     (uint64_t)rd32(bp + BP_EXT_CMD_LINE_PTR) << 32);
	add_module(rd32(bp + BP_RAMDISK_IMAGE) |
		       (uint64_t)rd32(bp + BP_EXT_RAMDISK_IMAGE) << 32,
		   rd32(bp + BP_RAMDISK_SIZE) |
		       (uint64_t)rd32(bp + BP_EXT_RAMDISK_SIZE) << 32);
	guest_kit.boot.rsdp = rd64(bp + BP_ACPI_RSDP_ADDR);
	if (n > BP_E820_MAX)
		n = BP_E820_MAX;
	for (i = 0; i < n; i++) {
		const uint8_t *e = bp + BP_E820_TABLE + i * BP_E820_ENTRY_SIZE;
		add_range(rd64(e), rd64(e + 8), rd32(e + 16));
	}
}

/*
 * Extends the identity map past 4 GiB to cover the highest RAM the memory
 * map reports (at most GUEST_MAP_LIMIT), with 2 MiB pages only: they are
 * part of long mode on every CPU (SDM vol. 3A 4.5), whereas 1 GiB pages are
 * a CPUID feature that at least one KVM host (PVM) reports and then
 * refuses. One page directory per GiB comes from the allocator, below
 * 4 GiB, so the tables cost 4 KiB per GiB of RAM above 4 GiB and nothing
 * for smaller guests. This runs in ring 3 (every page is user-writable) so
 * that ring 0 keeps running no loop. The PDPT entries go from non-present
 * to present, which needs no TLB invalidation (SDM vol. 3A 4.10.4.3), and
 * the other CPUs are not started yet. Without memory for the tables the map
 * stays at 4 GiB and so does the allocator.
 */
static void guest_boot_map_high(void)
{
	const struct guest_boot_info *b = &guest_kit.boot;
	uint64_t top = 0, gib, n, i, j;
	uint64_t *pd;

	for (i = 0; i < b->memmap_count; i++) {
		const struct guest_mem_range *r = &b->memmap[i];
		uint64_t end = r->start + r->size;

		if (r->type != GUEST_MEM_RAM || end < r->start)
			continue;
		if (end > top)
			top = end;
	}
	if (top > GUEST_MAP_LIMIT)
		top = GUEST_MAP_LIMIT;
	if (top <= GUEST_MAP_LOW)
		return;
	n = (top - GUEST_MAP_LOW + (1ull << 30) - 1) >> 30;
	pd = guest_alloc(n * 4096, 4096);
	if (!pd)
		return;
	for (i = 0; i < n; i++) {
		gib = (GUEST_MAP_LOW >> 30) + i;
		for (j = 0; j < 512; j++)
			pd[i * 512 + j] =
			    (gib << 30) + (j << 21) + GUEST_PTE_LARGE;
	}
	/* Every directory is complete before an entry points to it. */
	__asm__ volatile("" ::: "memory");
	for (i = 0; i < n; i++)
		((volatile uint64_t *)guest_pdpt)[(GUEST_MAP_LOW >> 30) + i] =
		    (uint64_t)&pd[i * 512] + GUEST_PTE_TABLE;
	guest_kit.map_top = GUEST_MAP_LOW + (n << 30);
}

void guest_boot_parse(void)
{
	guest_kit.boot.protocol = guest_boot_protocol;
	if (guest_boot_protocol == GUEST_BOOT_PVH)
		parse_pvh((const void *)guest_boot_info_addr);
	else
		parse_linux((const void *)guest_boot_info_addr);

	guest_kit.map_top = GUEST_MAP_LOW;
	guest_kit.alloc_next = (uint64_t)guest_image_end;
	guest_boot_map_high();
}

const struct guest_boot_info *guest_boot(void)
{
	return &guest_kit.boot;
}

/* Arguments are space-separated "key=value" or bare "key" words. */
const char *guest_arg(const char *key, size_t *len)
{
	const char *p = guest_kit.boot.cmdline;
	size_t klen = strlen(key);

	while (*p) {
		const char *word = p;
		size_t wlen = 0;

		while (word[wlen] && word[wlen] != ' ')
			wlen++;
		p = word + wlen;
		while (*p == ' ')
			p++;
		if (wlen < klen || strncmp(word, key, klen))
			continue;
		if (wlen == klen) {
			*len = 0;
			return word + wlen;
		}
		if (word[klen] == '=') {
			*len = wlen - klen - 1;
			return word + klen + 1;
		}
	}
	return NULL;
}

/* Decimal, or hex with 0x; anything else gives def. */
uint64_t guest_arg_u64(const char *key, uint64_t def)
{
	size_t len, i = 0;
	const char *v = guest_arg(key, &len);
	uint64_t n = 0;
	unsigned int base = 10;

	if (!v || !len)
		return def;
	if (len > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
		base = 16;
		i = 2;
	}
	for (; i < len; i++) {
		char c = v[i];
		unsigned int d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return def;
		n = n * base + d;
	}
	return n;
}

bool guest_arg_is(const char *key, const char *value)
{
	size_t len;
	const char *v = guest_arg(key, &len);

	return v && len == strlen(value) && !strncmp(v, value, len);
}

static uint64_t align_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

/* Lowest fit at or above alloc_next in RAM, clear of boot modules. */
void *guest_alloc(uint64_t size, uint64_t align)
{
	const struct guest_boot_info *b = &guest_kit.boot;
	uint64_t best = UINT64_MAX;
	unsigned int i, j;

	for (i = 0; i < b->memmap_count; i++) {
		const struct guest_mem_range *r = &b->memmap[i];
		uint64_t end = r->start + r->size, at;
		bool moved = true;

		if (r->type != GUEST_MEM_RAM)
			continue;
		if (end > guest_kit.map_top)
			end = guest_kit.map_top;
		at = r->start > guest_kit.alloc_next ? r->start
						     : guest_kit.alloc_next;
		at = align_up(at, align);
		while (moved) {
			moved = false;
			for (j = 0; j < b->module_count; j++) {
				const struct guest_module *m = &b->modules[j];

				if (at < m->start + m->size &&
				    m->start < at + size) {
					at =
					    align_up(m->start + m->size, align);
					moved = true;
				}
			}
		}
		if (at + size <= end && at < best)
			best = at;
	}
	if (best == UINT64_MAX)
		return NULL;
	guest_kit.alloc_next = best + size;
	return (void *)best;
}
