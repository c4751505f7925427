/* Internal interface between the files of src/boot: the bounded reader for
 * image bytes, little-endian writers for the tables we build, and the parsed
 * form of each kernel image kind. Nothing outside src/boot includes this. */
#ifndef STASIS_BOOT_PRIV_H
#define STASIS_BOOT_PRIV_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot/boot.h"

/* An untrusted byte string (a kernel image). Every read goes through the
 * img_* helpers, which check offset and length against overflow and fail
 * instead of reading past the end. */
struct img {
	const uint8_t *data;
	size_t len;
};

/* True when [off, off + n) lies inside the image. */
static inline bool img_has(const struct img *im, uint64_t off, uint64_t n)
{
	return off <= im->len && n <= im->len - off;
}

static inline bool img_u8(const struct img *im, uint64_t off, uint8_t *v)
{
	if (!img_has(im, off, 1))
		return false;
	*v = im->data[off];
	return true;
}

static inline bool img_u16(const struct img *im, uint64_t off, uint16_t *v)
{
	if (!img_has(im, off, 2))
		return false;
	*v = (uint16_t)(im->data[off] | im->data[off + 1] << 8);
	return true;
}

static inline bool img_u32(const struct img *im, uint64_t off, uint32_t *v)
{
	uint16_t lo, hi;

	if (!img_u16(im, off, &lo) || !img_u16(im, off + 2, &hi))
		return false;
	*v = (uint32_t)lo | (uint32_t)hi << 16;
	return true;
}

static inline bool img_u64(const struct img *im, uint64_t off, uint64_t *v)
{
	uint32_t lo, hi;

	if (!img_u32(im, off, &lo) || !img_u32(im, off + 4, &hi))
		return false;
	*v = (uint64_t)lo | (uint64_t)hi << 32;
	return true;
}

/* A buffer we fill ourselves (boot_params, ACPI tables). Offsets are our own
 * constants, so running past the end is a bug in stasis: assert. */
struct outbuf {
	uint8_t *data;
	size_t len;
};

static inline void out_put8(struct outbuf *b, size_t off, uint8_t v)
{
	assert(off < b->len);
	b->data[off] = v;
}

static inline void out_put16(struct outbuf *b, size_t off, uint16_t v)
{
	out_put8(b, off, (uint8_t)v);
	out_put8(b, off + 1, (uint8_t)(v >> 8));
}

static inline void out_put32(struct outbuf *b, size_t off, uint32_t v)
{
	out_put16(b, off, (uint16_t)v);
	out_put16(b, off + 2, (uint16_t)(v >> 16));
}

static inline void out_put64(struct outbuf *b, size_t off, uint64_t v)
{
	out_put32(b, off, (uint32_t)v);
	out_put32(b, off + 4, (uint32_t)(v >> 32));
}

static inline void out_put_bytes(struct outbuf *b, size_t off, const void *p,
				 size_t n)
{
	const uint8_t *s = p;

	for (size_t i = 0; i < n; i++)
		out_put8(b, off + i, s[i]);
}

/* Formats a one-line reason into @err (which may be NULL) and returns @rc. */
int boot_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "300 MiB", "12 KiB", "17 bytes": sizes in messages. */
void boot_fmt_size(char *buf, size_t buflen, uint64_t size);

/* ELF (ELF-64 Object File Format 1.5; System V gABI). */

#define ELF_MAX_PHDRS 64

struct elf_segment {
	unsigned index; /* program header number, for messages */
	uint64_t offset; /* in the file */
	uint64_t paddr;
	uint64_t filesz;
	uint64_t memsz;
};

struct elf_image {
	bool pvh; /* carries XEN_ELFNOTE_PHYS32_ENTRY */
	uint64_t entry; /* physical entry: PVH 32-bit or Linux 64-bit */
	uint64_t start, end; /* hull of the loadable segments */
	unsigned nsegs;
	struct elf_segment segs[ELF_MAX_PHDRS];
};

/* Validates an ELF64 x86-64 executable entirely from its bytes: headers,
 * program headers, notes, segment bounds and overlaps, the entry point.
 * Returns 0 or -EINVAL with a reason. */
int elf_parse(const struct img *im, struct elf_image *elf, char *err,
	      size_t errlen);

/* Copies the parsed segments into guest RAM and zeroes their bss; the
 * caller has checked that [elf->start, elf->end) is RAM. */
int elf_load(struct guest_mem *mem, const struct img *im,
	     const struct elf_image *elf);

/* Linux boot_params, the "zero page" (Documentation/arch/x86/zero-page.rst),
 * and its setup header, at the same offsets in a bzImage file
 * (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header"). */
#define BP_SIZE 4096
#define BP_ACPI_RSDP_ADDR 0x070 /* protocol 2.14 */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_ENTRY_SIZE 20 /* u64 addr, u64 size, u32 type */
#define BP_E820_MAX 128

#define HDR_START 0x1f1 /* setup_sects: first byte of the header */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_SYSSIZE 0x1f4
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260

#define BOOT_FLAG_MAGIC 0xaa55
#define HDR_MAGIC_VALUE 0x53726448 /* "HdrS" */
#define LOADER_TYPE_UNDEFINED 0xff /* no assigned boot loader id */
#define LOADFLAGS_LOADED_HIGH 0x01
#define LOADFLAGS_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x0001
#define XLF_CAN_BE_LOADED_ABOVE_4G 0x0002

/* Linux bzImage (Documentation/arch/x86/boot.rst). */

struct bzimage {
	uint16_t version; /* boot protocol, (major << 8) | minor */
	uint64_t hdr_end; /* setup header is [0x1f1, hdr_end) */
	uint64_t pm_offset; /* protected-mode code in the file */
	uint64_t pm_len; /* bytes of it we load */
	uint64_t load_addr; /* where it goes; entry at +0x200 */
	uint64_t start, end; /* memory the kernel needs (init_size) */
	uint32_t initrd_addr_max; /* highest byte the initrd may use */
	uint32_t cmdline_size; /* longest command line without NUL */
	bool above_4g; /* XLF_CAN_BE_LOADED_ABOVE_4G */
};

/* Validates a bzImage and works out where it loads. Returns 0 or -EINVAL
 * with a reason. */
int bzimage_parse(const struct img *im, struct bzimage *bz, char *err,
		  size_t errlen);

/* Copies the protected-mode code to bz->load_addr. */
int bzimage_load(struct guest_mem *mem, const struct img *im,
		 const struct bzimage *bz);

/* Copies the image's setup header into the zeroed @zero_page and fills the
 * fields a boot loader must write (type_of_loader, loadflags, heap). */
void bzimage_fill_header(const struct img *im, const struct bzimage *bz,
			 struct outbuf *zero_page);

#endif
