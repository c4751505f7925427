/* mkbzimage.c - host tool: builds a Linux bzImage (boot protocol 2.15)
 * from the real-mode setup (bzsetup.S, which carries the setup header) and
 * a guest ELF loaded at 1 MiB. See docs/guest-kit.md.
 * Usage: mkbzimage <bzsetup.elf> <guest.elf> <out.bzimage> */
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_ADDR 0x100000u
#define SECTOR 512
#define MAX_IMAGE (64u << 20)

/* Setup header fields (Linux Documentation/arch/x86/boot.rst); the rest
 * are set in bzsetup.S. */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_SYSSIZE 0x1f4
#define HDR_HEADER 0x202
#define HDR_INIT_SIZE 0x260
#define HDRS_MAGIC "HdrS"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v);
	put16(p + 2, v >> 16);
}

static int read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET))
		goto fail_close;
	*len = n;
	*data = malloc(n ? n : 1);
	if (!*data)
		goto fail_close;
	if (fread(*data, 1, n, f) != (size_t)n)
		goto fail_free;
	fclose(f);
	return 0;
fail_free:
	free(*data);
fail_close:
	fclose(f);
	return -EIO;
}

/* Lays every PT_LOAD segment of an ELF file out flat from base, bss
 * included as zeros (a bzImage loader copies the payload but clears
 * nothing); the length is rounded up to 16 bytes. */
static int elf_flatten(const char *path, uint64_t base, uint8_t **out,
		       size_t *out_len)
{
	const Elf64_Ehdr *eh;
	const Elf64_Phdr *ph;
	uint8_t *elf = NULL, *img;
	uint64_t end = base;
	size_t len = 0;
	int i, err;

	err = read_file(path, &elf, &len);
	if (err)
		return err;
	err = -EINVAL;
	eh = (const void *)elf;
	if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
	    eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
	    (len - eh->e_phoff) / sizeof(Elf64_Phdr) < eh->e_phnum)
		goto out_free;
	ph = (const void *)(elf + eh->e_phoff);
	for (i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (ph[i].p_paddr < base || ph[i].p_filesz > ph[i].p_memsz ||
		    ph[i].p_memsz > MAX_IMAGE ||
		    ph[i].p_paddr - base > MAX_IMAGE - ph[i].p_memsz ||
		    ph[i].p_offset > len ||
		    len - ph[i].p_offset < ph[i].p_filesz)
			goto out_free;
		if (ph[i].p_paddr + ph[i].p_memsz > end)
			end = ph[i].p_paddr + ph[i].p_memsz;
	}
	*out_len = (end - base + 15) & ~15ull;
	err = -ENOMEM;
	img = calloc(1, *out_len ? *out_len : 1);
	if (!img)
		goto out_free;
	for (i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD)
			memcpy(img + (ph[i].p_paddr - base),
			       elf + ph[i].p_offset, ph[i].p_filesz);
	*out = img;
	err = 0;
out_free:
	free(elf);
	return err;
}

/* The setup must be whole sectors, as its header says; the payload size
 * fields are only known here. */
static int setup_patch(uint8_t *setup, size_t setup_len, size_t payload_len)
{
	if (setup_len < 0x268 || memcmp(setup + HDR_HEADER, HDRS_MAGIC, 4) ||
	    setup_len != (size_t)(setup[HDR_SETUP_SECTS] + 1) * SECTOR)
		return -EINVAL;
	put32(setup + HDR_SYSSIZE, payload_len / 16);
	put32(setup + HDR_INIT_SIZE, (payload_len + 0xfff) & ~0xfffu);
	return 0;
}

static int write_file(const char *path, const uint8_t *a, size_t alen,
		      const uint8_t *b, size_t blen)
{
	FILE *f = fopen(path, "wb");
	int err = 0;

	if (!f)
		return -errno;
	if (fwrite(a, 1, alen, f) != alen || fwrite(b, 1, blen, f) != blen)
		err = -EIO;
	if (fclose(f) && !err)
		err = -EIO;
	return err;
}

int main(int argc, char **argv)
{
	uint8_t *setup = NULL, *payload = NULL;
	size_t setup_len, payload_len;
	int err, ret = 1;

	if (argc != 4) {
		fprintf(stderr,
			"usage: %s <bzsetup.elf> <guest.elf> <out.bzimage>\n",
			argv[0]);
		return 2;
	}
	err = elf_flatten(argv[1], 0, &setup, &setup_len);
	if (err) {
		fprintf(stderr, "mkbzimage: %s: %s\n", argv[1], strerror(-err));
		goto out;
	}
	err = elf_flatten(argv[2], LOAD_ADDR, &payload, &payload_len);
	if (err) {
		fprintf(stderr, "mkbzimage: %s: not a guest ELF at 1 MiB: %s\n",
			argv[2], strerror(-err));
		goto out;
	}
	if (setup_patch(setup, setup_len, payload_len)) {
		fprintf(stderr, "mkbzimage: %s: bad setup header\n", argv[1]);
		goto out;
	}
	err = write_file(argv[3], setup, setup_len, payload, payload_len);
	if (err) {
		fprintf(stderr, "mkbzimage: %s: %s\n", argv[3], strerror(-err));
		goto out;
	}
	ret = 0;
out:
	free(setup);
	free(payload);
	return ret;
}
