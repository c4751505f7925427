/* bootinfo.c - prints what the loader passed (command line, memory map,
 * initrd with a checksum, RSDP), whether booted by PVH or as a bzImage. */
#include "guest.h"

/* FNV-1a, 32-bit (Fowler/Noll/Vo): offset basis 2166136261, prime
 * 16777619. */
static uint32_t fnv1a32(const uint8_t *p, uint64_t n)
{
	uint32_t h = 2166136261u;

	while (n--) {
		h ^= *p++;
		h *= 16777619u;
	}
	return h;
}

void guest_main(void)
{
	static const char *const protocols[] = { "none", "pvh", "linux32",
						 "linux64" };
	const struct guest_boot_info *b = guest_boot();
	unsigned int i;

	guest_printf("bootinfo: start\n");
	guest_printf("bootinfo: protocol=%s\n",
		     protocols[b->protocol < 4 ? b->protocol : 0]);
	guest_printf("bootinfo: cmdline=%s\n", b->cmdline);
	for (i = 0; i < b->memmap_count; i++)
		guest_printf(
		    "bootinfo: e820 0x%lx 0x%lx %u\n", b->memmap[i].start,
		    b->memmap[i].start + b->memmap[i].size, b->memmap[i].type);
	if (!b->module_count)
		guest_printf("bootinfo: initrd none\n");
	for (i = 0; i < b->module_count; i++) {
		const struct guest_module *m = &b->modules[i];

		guest_printf("bootinfo: initrd 0x%lx 0x%lx\n", m->start,
			     m->size);
		guest_printf("bootinfo: initrd-fnv 0x%08x\n",
			     fnv1a32((const uint8_t *)m->start, m->size));
	}
	guest_printf("bootinfo: rsdp 0x%lx\n", b->rsdp);
	guest_exit(GUEST_EXIT_OK);
}
