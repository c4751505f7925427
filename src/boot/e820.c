/* The guest's e820 memory map, shared by every boot path: the Linux
 * boot_params table, the PVH memmap and docs/boot.md all describe this. */
#include "boot/boot.h"
#include "core/platform.h"

/* KVM_SET_IDENTITY_MAP_ADDR takes one page and KVM_SET_TSS_ADDR three,
 * back to back from PLATFORM_KVM_IDENTITY_MAP (Documentation/virt/kvm/
 * api.rst). */
#define KVM_PRIVATE_PAGES_SIZE 0x4000ull

_Static_assert(PLATFORM_KVM_IDENTITY_MAP >= GUEST_MEM_LOW_LIMIT &&
		   PLATFORM_KVM_IDENTITY_MAP + KVM_PRIVATE_PAGES_SIZE <=
		       GUEST_MEM_HIGH_BASE,
	       "the KVM pages must sit in the hole, after low RAM");
_Static_assert(PLATFORM_KVM_TSS == PLATFORM_KVM_IDENTITY_MAP + 0x1000,
	       "the TSS follows the identity map page");

static void e820_add(struct e820_entry *out, size_t max, size_t *n,
		     uint64_t addr, uint64_t end, uint32_t type)
{
	if (end <= addr || *n >= max)
		return;
	out[*n] = (struct e820_entry){ .addr = addr,
				       .size = end - addr,
				       .type = type };
	(*n)++;
}

size_t e820_build(const struct guest_mem *mem, struct e820_entry *out,
		  size_t max)
{
	uint64_t low_end = 0;
	size_t n = 0;

	for (unsigned i = 0; i < mem->nregions; i++)
		if (mem->regions[i].gpa == 0)
			low_end = mem->regions[i].size;

	/* Conventional memory up to the EBDA. */
	e820_add(out, max, &n, 0,
		 low_end < PLATFORM_EBDA_START ? low_end : PLATFORM_EBDA_START,
		 E820_RAM);
	/* EBDA, VGA hole, option ROMs and the BIOS area, as on a PC. It is
	 * reserved rather than E820_ACPI because the ACPI tables at
	 * PLATFORM_ACPI_TABLES sit where a BIOS would put them and the RSDP
	 * must stay there (ACPI 6.4, 5.2.5.1): an ACPI-reclaim range may be
	 * reused by the OS once it has read the tables. */
	e820_add(out, max, &n, PLATFORM_EBDA_START, PLATFORM_KERNEL_LOAD,
		 E820_RESERVED);
	e820_add(out, max, &n, PLATFORM_KERNEL_LOAD, low_end, E820_RAM);
	/* KVM's identity map and TSS are in the hole below 4 GiB, so no RAM
	 * covers them; listing them reserved keeps Linux from handing that
	 * range to PCI BARs, which it takes from e820 gaps. */
	e820_add(out, max, &n, PLATFORM_KVM_IDENTITY_MAP,
		 PLATFORM_KVM_IDENTITY_MAP + KVM_PRIVATE_PAGES_SIZE,
		 E820_RESERVED);
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];

		if (r->gpa != 0)
			e820_add(out, max, &n, r->gpa, r->gpa + r->size,
				 E820_RAM);
	}
	return n;
}
