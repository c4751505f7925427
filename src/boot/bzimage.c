/* Linux bzImage kernels through the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst): header checks, load address, and the
 * setup header copied into boot_params. */
#include <errno.h>
#include <string.h>

#include "boot/boot_priv.h"
#include "core/platform.h"

#define SECTOR_SIZE 512
/* setup_sects == 0 means 4 (boot.rst, "The Real-Mode Kernel Header"). */
#define SETUP_SECTS_DEFAULT 4
/* The 64-bit entry is at +0x200 of the protected-mode code (boot.rst,
 * "64-bit Boot Protocol") and needs xloadflags, protocol 2.12. */
#define BZ_ENTRY_64 0x200
#define BZ_MIN_VERSION 0x020c
/* Every setup header starts with a short jump over itself; its 8-bit
 * displacement at 0x201 gives the header's end: 0x202 + that byte. */
#define X86_JMP_SHORT 0xeb
/* heap_end_ptr: boot.rst's sample layout gives setup a full 64 KiB segment
 * with the heap ending at 0xe000, and the field holds that minus 0x200. The
 * real-mode setup never runs on the 64-bit path, but the field is marked
 * obligatory. */
#define BZ_HEAP_END_PTR (0xe000 - 0x200)

static int bz_version_too_old(uint16_t v, char *err, size_t errlen)
{
	return boot_fail(err, errlen, -EINVAL,
			 "kernel: bzImage boot protocol %u.%02u too old: "
			 "64-bit entry needs %u.%02u",
			 v >> 8, v & 0xff, BZ_MIN_VERSION >> 8,
			 BZ_MIN_VERSION & 0xff);
}

/* Works out where the protected-mode code goes and the memory the kernel
 * needs there: init_size bytes from its runtime start (boot.rst, init_size),
 * which for a relocatable kernel is the load address aligned up to
 * kernel_alignment and otherwise pref_address. */
static int bz_place(const struct img *im, struct bzimage *bz, char *err,
		    size_t errlen)
{
	uint64_t pref, runtime, end;
	uint32_t code32, align, init_size;
	uint8_t reloc;

	if (!img_u8(im, HDR_RELOCATABLE, &reloc) ||
	    !img_u32(im, HDR_KERNEL_ALIGNMENT, &align) ||
	    !img_u32(im, HDR_CODE32_START, &code32) ||
	    !img_u64(im, HDR_PREF_ADDRESS, &pref) ||
	    !img_u32(im, HDR_INIT_SIZE, &init_size))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage setup header truncated");

	if (reloc) {
		uint64_t want =
		    pref > PLATFORM_KERNEL_LOAD ? pref : PLATFORM_KERNEL_LOAD;

		if (align == 0 || (align & (align - 1)))
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: bzImage kernel_alignment "
					 "0x%x is not a power of two",
					 align);
		if (want > UINT32_MAX)
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: bzImage pref_address 0x%llx "
					 "is above 4 GiB",
					 (unsigned long long)want);
		bz->load_addr = (want + align - 1) & ~((uint64_t)align - 1);
		runtime = bz->load_addr;
	} else {
		/* code32_start defaults to the load address, 0x100000 for a
		 * bzImage (boot.rst, "Loading The Rest of The Kernel"). */
		bz->load_addr = code32 ? code32 : PLATFORM_KERNEL_LOAD;
		if (bz->load_addr < PLATFORM_KERNEL_LOAD)
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: bzImage code32_start 0x%llx "
					 "is below 1 MiB",
					 (unsigned long long)bz->load_addr);
		runtime = pref ? pref : bz->load_addr;
		if (runtime < PLATFORM_KERNEL_LOAD || runtime > UINT32_MAX)
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: bzImage pref_address 0x%llx "
					 "is outside 1 MiB..4 GiB",
					 (unsigned long long)runtime);
	}
	/* Both addresses are below 4 GiB and the sizes are at most a file
	 * length or 32 bits: the sums below cannot overflow. */
	bz->start = bz->load_addr < runtime ? bz->load_addr : runtime;
	bz->end = bz->load_addr + bz->pm_len;
	end = runtime + init_size;
	if (end > bz->end)
		bz->end = end;
	return 0;
}

int bzimage_parse(const struct img *im, struct bzimage *bz, char *err,
		  size_t errlen)
{
	uint32_t magic, syssize;
	uint16_t boot_flag = 0, xloadflags;
	uint8_t jump, jump_len, setup_sects, loadflags;
	uint64_t setup_len;

	memset(bz, 0, sizeof(*bz));
	if (!img_u32(im, HDR_MAGIC, &magic) || magic != HDR_MAGIC_VALUE)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: not an ELF or bzImage (bad magic)");
	if (!img_u16(im, HDR_BOOT_FLAG, &boot_flag) ||
	    boot_flag != BOOT_FLAG_MAGIC)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage boot_flag 0x%04x is not "
				 "0xaa55",
				 boot_flag);
	if (!img_u16(im, HDR_VERSION, &bz->version))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage setup header truncated");
	if (bz->version < BZ_MIN_VERSION)
		return bz_version_too_old(bz->version, err, errlen);

	if (!img_u8(im, HDR_JUMP, &jump) ||
	    !img_u8(im, HDR_JUMP + 1, &jump_len) || jump != X86_JMP_SHORT)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage has no jump at 0x200, so the "
				 "setup header length is unknown");
	bz->hdr_end = HDR_MAGIC + jump_len;
	if (bz->hdr_end < HDR_INIT_SIZE + 4)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage setup header ends at 0x%llx, "
				 "before init_size (0x%x)",
				 (unsigned long long)bz->hdr_end,
				 HDR_INIT_SIZE);
	if (!img_has(im, 0, bz->hdr_end))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage truncated inside its setup "
				 "header (%zu bytes)",
				 im->len);

	/* The header is all present now: these reads succeed. */
	if (!img_u8(im, HDR_LOADFLAGS, &loadflags) ||
	    !img_u16(im, HDR_XLOADFLAGS, &xloadflags) ||
	    !img_u8(im, HDR_SETUP_SECTS, &setup_sects) ||
	    !img_u32(im, HDR_SYSSIZE, &syssize) ||
	    !img_u32(im, HDR_INITRD_ADDR_MAX, &bz->initrd_addr_max) ||
	    !img_u32(im, HDR_CMDLINE_SIZE, &bz->cmdline_size))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage setup header truncated");
	if (!(loadflags & LOADFLAGS_LOADED_HIGH))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: zImage (loadflags LOADED_HIGH "
				 "clear) is not supported");
	if (!(xloadflags & XLF_KERNEL_64))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage has no 64-bit entry point "
				 "(xloadflags XLF_KERNEL_64 clear)");
	bz->above_4g = xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G;

	/* The protected-mode code follows the boot sector and setup code:
	 * (setup_sects + 1) sectors (boot.rst, "Loading The Rest of The
	 * Kernel"); syssize counts it in 16-byte paragraphs. */
	setup_len =
	    ((uint64_t)(setup_sects ? setup_sects : SETUP_SECTS_DEFAULT) + 1) *
	    SECTOR_SIZE;
	if (setup_len >= im->len)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage truncated: kernel code "
				 "starts at 0x%llx, file is %zu bytes",
				 (unsigned long long)setup_len, im->len);
	bz->pm_offset = setup_len;
	bz->pm_len = im->len - setup_len;
	if (syssize) {
		uint64_t sys_bytes = (uint64_t)syssize * 16;

		if (sys_bytes > bz->pm_len)
			return boot_fail(err, errlen, -EINVAL,
					 "kernel: bzImage truncated: syssize "
					 "says 0x%llx bytes of kernel code, "
					 "file holds 0x%llx",
					 (unsigned long long)sys_bytes,
					 (unsigned long long)bz->pm_len);
		bz->pm_len = sys_bytes;
	}
	if (bz->pm_len <= BZ_ENTRY_64)
		return boot_fail(err, errlen, -EINVAL,
				 "kernel: bzImage kernel code is %llu bytes, "
				 "too short for the 64-bit entry at +0x200",
				 (unsigned long long)bz->pm_len);
	return bz_place(im, bz, err, errlen);
}

int bzimage_load(struct guest_mem *mem, const struct img *im,
		 const struct bzimage *bz)
{
	/* bzimage_parse checked pm_offset + pm_len against the file. */
	return guest_mem_write(mem, bz->load_addr, im->data + bz->pm_offset,
			       bz->pm_len);
}

void bzimage_fill_header(const struct img *im, const struct bzimage *bz,
			 struct outbuf *zp)
{
	uint8_t loadflags;

	/* 64-bit boot protocol: boot_params holds the image's setup header
	 * from 0x1f1 to its end, then the loader writes its own fields. */
	out_put_bytes(zp, HDR_START, im->data + HDR_START,
		      bz->hdr_end - HDR_START);
	loadflags = zp->data[HDR_LOADFLAGS];
	loadflags |= LOADFLAGS_LOADED_HIGH | LOADFLAGS_CAN_USE_HEAP;
	out_put8(zp, HDR_LOADFLAGS, loadflags);
	out_put8(zp, HDR_TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
	out_put16(zp, HDR_HEAP_END_PTR, BZ_HEAP_END_PTR);
	/* A relocatable kernel loaded away from its default must be told
	 * where it is (boot.rst, code32_start). */
	out_put32(zp, HDR_CODE32_START, (uint32_t)bz->load_addr);
}
