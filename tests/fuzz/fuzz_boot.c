/* libFuzzer target for the kernel image parsers: arbitrary bytes go through
 * boot_probe and boot_load into a small guest. Build with
 * clang -fsanitize=fuzzer,address,undefined -Isrc, this file, the .c files
 * of src/boot and src/memory/guest_mem.c. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boot/boot.h"

#define FUZZ_GUEST_MEM (32ull << 20)
#define FUZZ_INITRD_MAX 4096

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libFuzzer calls in with no context pointer, so the guest lives here;
 * creating a memfd per input would dominate the run time. */
static struct guest_mem fuzz_mem;
static char fuzz_long_cmdline[3000];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (guest_mem_init(&fuzz_mem, FUZZ_GUEST_MEM))
		abort();
	memset(fuzz_long_cmdline, 'x', sizeof(fuzz_long_cmdline) - 1);
	return 0;
}

/* Byte 0 picks the options: bit 0 an initrd (the input's tail), bit 1 a
 * command line longer than most kernels accept, bits 2-7 the vCPU count.
 * The rest is the kernel image. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct boot_config cfg = { .cmdline = "console=ttyS0" };
	struct boot_result res;
	struct boot_cpu cpu;
	enum boot_kind kind;
	char err[256];
	uint8_t opts;
	uint8_t *k;

	if (size < 1)
		return 0;
	opts = data[0];
	data++;
	size--;
	cfg.kernel = data;
	cfg.kernel_len = size;
	if (opts & 1) {
		size_t n =
		    size / 4 < FUZZ_INITRD_MAX ? size / 4 : FUZZ_INITRD_MAX;

		cfg.kernel_len = size - n;
		cfg.initrd = data + cfg.kernel_len;
		cfg.initrd_len = n;
	}
	if (opts & 2)
		cfg.cmdline = fuzz_long_cmdline;
	cfg.ncpus = 1 + (opts >> 2);

	/* Copies of exactly the given length, so that ASan sees any read
	 * past the end. */
	k = malloc(cfg.kernel_len ? cfg.kernel_len : 1);
	if (!k)
		return 0;
	memcpy(k, cfg.kernel, cfg.kernel_len);
	cfg.kernel = k;

	boot_probe(k, cfg.kernel_len, &kind, err, sizeof(err));
	boot_load(&fuzz_mem, &cfg, &cpu, &res, err, sizeof(err));
	free(k);
	return 0;
}
