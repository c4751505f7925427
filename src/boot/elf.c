/* ELF64 kernel images: a vmlinux or guest kit kernel, with or without the
 * Xen PVH entry note. The file is hostile input: every field is checked. */
#include <errno.h>
#include <string.h>

#include "boot/boot_priv.h"
#include "core/platform.h"

/* ELF-64 Object File Format 1.5, section 3 (file header) and 6 (program
 * header). */
#define EI_CLASS 4
#define EI_DATA 5
#define EI_VERSION 6
#define ELFCLASS32 1
#define ELFCLASS64 2
#define ELFDATA2LSB 1
#define EV_CURRENT 1
#define ET_EXEC 2
#define EM_X86_64 62

#define EHDR_SIZE 64
#define EHDR_TYPE 16
#define EHDR_MACHINE 18
#define EHDR_ENTRY 24
#define EHDR_PHOFF 32
#define EHDR_PHENTSIZE 54
#define EHDR_PHNUM 56

#define PHDR_SIZE 56
#define PHDR_TYPE 0
#define PHDR_OFFSET 8
#define PHDR_VADDR 16
#define PHDR_PADDR 24
#define PHDR_FILESZ 32
#define PHDR_MEMSZ 40
#define PHDR_ALIGN 48

#define PT_LOAD 1
#define PT_NOTE 4

/* A note entry: namesz, descsz, type, then name and desc, each padded to
 * the note alignment (gABI "Note Section"). */
#define NOTE_HDR_SIZE 12

/* Xen public/elfnote.h: the 32-bit physical entry of a PVH kernel. The
 * note's owner name is "Xen" with its NUL. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define XEN_NOTE_NAME "Xen"
#define XEN_NOTE_NAMESZ 4

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Scans one PT_NOTE segment, [off, off + size) of the file, for the PVH
 * entry note, setting elf->pvh and elf->entry when it is there. Returns 0
 * or -EINVAL. */
static int elf_scan_notes(const struct img *im, unsigned ph, uint64_t off,
			  uint64_t size, uint64_t align, struct elf_image *elf,
			  char *err, size_t errlen)
{
	uint64_t pos = 0;

	/* Notes are 4-byte aligned (what Linux emits, even in ELF64), or
	 * 8-byte aligned when the segment says so (GNU property notes). */
	align = align == 8 ? 8 : 4;
	while (pos < size) {
		uint32_t namesz, descsz, type;
		uint64_t name_off, desc_off, next;

		if (size - pos < NOTE_HDR_SIZE)
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: ELF note in program header "
					 "%u is truncated",
					 ph);
		/* The segment lies inside the file (checked by the caller),
		 * so these reads cannot fail. */
		if (!img_u32(im, off + pos, &namesz) ||
		    !img_u32(im, off + pos + 4, &descsz) ||
		    !img_u32(im, off + pos + 8, &type))
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: ELF note extends past end of "
					 "file");
		name_off = pos + NOTE_HDR_SIZE;
		/* 32-bit sizes in 64-bit arithmetic: no overflow. */
		desc_off = name_off + align_up(namesz, align);
		next = desc_off + align_up(descsz, align);
		if (desc_off + descsz > size)
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: ELF note in program header "
					 "%u runs past its segment",
					 ph);

		if (namesz == XEN_NOTE_NAMESZ &&
		    img_has(im, off + name_off, namesz) &&
		    memcmp(im->data + off + name_off, XEN_NOTE_NAME,
			   XEN_NOTE_NAMESZ) == 0 &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY) {
			uint64_t entry;
			uint32_t e32;

			/* Linux emits the entry as .long or as a pointer
			 * (.quad): accept both widths. */
			if (descsz == 4 && img_u32(im, off + desc_off, &e32)) {
				entry = e32;
			} else if (descsz == 8 &&
				   img_u64(im, off + desc_off, &entry)) {
				if (entry > UINT32_MAX)
					return boot_fail(
					    err, errlen, -EINVAL,
					    "kernel: PVH entry 0x%llx is "
					    "above 4 GiB",
					    (unsigned long long)entry);
			} else {
				return boot_fail(err, errlen, -EINVAL,
						 "kernel: PVH entry note has a "
						 "%u-byte value, expected 4 or "
						 "8",
						 descsz);
			}
			elf->pvh = true;
			elf->entry = entry;
		}
		pos = next;
	}
	return 0;
}

/* Reads and checks program header @i; fills @seg for PT_LOAD. */
static int elf_read_phdr(const struct img *im, uint64_t phoff,
			 uint16_t phentsize, unsigned i, uint32_t *type,
			 struct elf_segment *seg, uint64_t *vaddr,
			 uint64_t *align, char *err, size_t errlen)
{
	/* The caller checked phoff <= file length: no overflow here. */
	uint64_t at = phoff + (uint64_t)i * phentsize;

	if (!img_u32(im, at + PHDR_TYPE, type) ||
	    !img_u64(im, at + PHDR_OFFSET, &seg->offset) ||
	    !img_u64(im, at + PHDR_VADDR, vaddr) ||
	    !img_u64(im, at + PHDR_PADDR, &seg->paddr) ||
	    !img_u64(im, at + PHDR_FILESZ, &seg->filesz) ||
	    !img_u64(im, at + PHDR_MEMSZ, &seg->memsz) ||
	    !img_u64(im, at + PHDR_ALIGN, align))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF program header %u extends past "
				 "end of file",
				 i);
	seg->index = i;
	if (*type != PT_LOAD && *type != PT_NOTE)
		return 0;
	if (!img_has(im, seg->offset, seg->filesz))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF program header %u: data at "
				 "0x%llx+0x%llx extends past end of file "
				 "(%zu bytes)",
				 i, (unsigned long long)seg->offset,
				 (unsigned long long)seg->filesz, im->len);
	if (*type == PT_NOTE)
		return 0;
	if (seg->filesz > seg->memsz)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF segment %u has p_filesz 0x%llx "
				 "larger than p_memsz 0x%llx",
				 i, (unsigned long long)seg->filesz,
				 (unsigned long long)seg->memsz);
	if (seg->memsz > UINT64_MAX - seg->paddr ||
	    seg->memsz > UINT64_MAX - *vaddr)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF segment %u: address + size "
				 "overflows",
				 i);
	/* Below 1 MiB live the GDT, start info, boot_params, page tables,
	 * command line and ACPI tables (docs/boot.md). */
	if (seg->memsz && seg->paddr < PLATFORM_KERNEL_LOAD)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF segment %u at 0x%llx overlaps "
				 "the boot area below 1 MiB",
				 i, (unsigned long long)seg->paddr);
	return 0;
}

/* Entry of a plain ELF64 kernel as a physical address. The gABI makes
 * e_entry virtual, so translate through the segment that holds it; Linux
 * instead links vmlinux with a physical e_entry (phys_startup_64), which is
 * found in a segment's physical range. */
static int elf_find_entry(const struct img *im, struct elf_image *elf,
			  uint64_t e_entry, const uint64_t *vaddrs, char *err,
			  size_t errlen)
{
	for (unsigned i = 0; i < elf->nsegs; i++) {
		const struct elf_segment *s = &elf->segs[i];

		if (e_entry >= vaddrs[i] && e_entry - vaddrs[i] < s->memsz) {
			elf->entry = s->paddr + (e_entry - vaddrs[i]);
			return 0;
		}
	}
	for (unsigned i = 0; i < elf->nsegs; i++) {
		const struct elf_segment *s = &elf->segs[i];

		if (e_entry >= s->paddr && e_entry - s->paddr < s->memsz) {
			elf->entry = e_entry;
			return 0;
		}
	}
	return boot_fail(err, errlen, -EINVAL,
			 "kernel: ELF entry point 0x%llx is not inside any "
			 "loadable segment",
			 (unsigned long long)e_entry);
}

int elf_parse(const struct img *im, struct elf_image *elf, char *err,
	      size_t errlen)
{
	uint64_t vaddrs[ELF_MAX_PHDRS];
	uint16_t type, machine, phentsize, phnum;
	uint64_t e_entry, phoff;
	uint8_t cls, data, version;
	int ret;

	memset(elf, 0, sizeof(*elf));
	if (!img_u8(im, EI_CLASS, &cls) || !img_u8(im, EI_DATA, &data) ||
	    !img_u8(im, EI_VERSION, &version) || im->len < EHDR_SIZE)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF header truncated (%zu bytes, "
				 "need %d)",
				 im->len, EHDR_SIZE);
	if (cls == ELFCLASS32)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF is 32-bit; stasis loads ELF64 "
				 "x86-64 kernels");
	if (cls != ELFCLASS64)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF class %u is not ELFCLASS64", cls);
	if (data != ELFDATA2LSB)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF is not little-endian");
	if (version != EV_CURRENT)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF version %u is not 1", version);
	/* The header is 64 bytes and present: these reads succeed. */
	if (!img_u16(im, EHDR_TYPE, &type) ||
	    !img_u16(im, EHDR_MACHINE, &machine) ||
	    !img_u64(im, EHDR_ENTRY, &e_entry) ||
	    !img_u64(im, EHDR_PHOFF, &phoff) ||
	    !img_u16(im, EHDR_PHENTSIZE, &phentsize) ||
	    !img_u16(im, EHDR_PHNUM, &phnum))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF header truncated");
	if (machine != EM_X86_64)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF machine %u is not x86-64 (%d)",
				 machine, EM_X86_64);
	if (type != ET_EXEC)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF type %u is not ET_EXEC", type);
	if (phnum == 0)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF has no program headers");
	/* 0xffff (PN_XNUM) means the count lives in section 0: no kernel
	 * needs that many. */
	if (phnum > ELF_MAX_PHDRS)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF has %u program headers; stasis "
				 "reads at most %d",
				 phnum, ELF_MAX_PHDRS);
	if (phentsize < PHDR_SIZE)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF program header size %u is "
				 "smaller than %d",
				 phentsize, PHDR_SIZE);
	if (phoff > im->len)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF program headers at 0x%llx start "
				 "past end of file (%zu bytes)",
				 (unsigned long long)phoff, im->len);
	/* The whole table first, so that a truncated file is reported as
	 * such rather than as a bad segment. */
	for (unsigned i = 0; i < phnum; i++)
		if (!img_has(im, phoff + (uint64_t)i * phentsize, PHDR_SIZE))
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: ELF program header %u "
					 "extends past end of file",
					 i);

	for (unsigned i = 0; i < phnum; i++) {
		struct elf_segment seg;
		uint64_t vaddr, align;
		uint32_t ptype = 0;

		ret = elf_read_phdr(im, phoff, phentsize, i, &ptype, &seg,
				    &vaddr, &align, err, errlen);
		if (ret)
			return ret;
		if (ptype == PT_NOTE) {
			ret = elf_scan_notes(im, i, seg.offset, seg.filesz,
					     align, elf, err, errlen);
			if (ret)
				return ret;
		}
		if (ptype != PT_LOAD || seg.memsz == 0)
			continue;
		for (unsigned j = 0; j < elf->nsegs; j++) {
			const struct elf_segment *o = &elf->segs[j];

			if (seg.paddr < o->paddr + o->memsz &&
			    o->paddr < seg.paddr + seg.memsz)
				return boot_fail(err, errlen, -EINVAL,
						 "kernel: ELF segments %u and "
						 "%u overlap",
						 o->index, i);
		}
		vaddrs[elf->nsegs] = vaddr;
		elf->segs[elf->nsegs++] = seg;
	}
	if (elf->nsegs == 0)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: ELF has no loadable segment");

	elf->start = UINT64_MAX;
	for (unsigned i = 0; i < elf->nsegs; i++) {
		const struct elf_segment *s = &elf->segs[i];

		if (s->paddr < elf->start)
			elf->start = s->paddr;
		if (s->paddr + s->memsz > elf->end)
			elf->end = s->paddr + s->memsz;
	}

	if (!elf->pvh)
		return elf_find_entry(im, elf, e_entry, vaddrs, err, errlen);
	for (unsigned i = 0; i < elf->nsegs; i++) {
		const struct elf_segment *s = &elf->segs[i];

		if (elf->entry >= s->paddr && elf->entry - s->paddr < s->memsz)
			return 0;
	}
	return boot_fail(err, errlen, -EINVAL,
			 "kernel: PVH entry 0x%llx is not inside any loadable "
			 "segment",
			 (unsigned long long)elf->entry);
}

int elf_load(struct guest_mem *mem, const struct img *im,
	     const struct elf_image *elf)
{
	for (unsigned i = 0; i < elf->nsegs; i++) {
		const struct elf_segment *s = &elf->segs[i];
		uint8_t *p = guest_mem_ptr(mem, s->paddr, s->memsz);

		if (!p)
			return -EFAULT;
		/* elf_parse checked offset + filesz against the file. */
		memcpy(p, im->data + s->offset, s->filesz);
		memset(p + s->filesz, 0, s->memsz - s->filesz);
	}
	return 0;
}
