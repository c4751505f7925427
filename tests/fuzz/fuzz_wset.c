/* libFuzzer target for the working-set file parser (snapshot/wset.h):
 * any bytes, against the geometry and identity they name themselves (so
 * that mutations reach the bitmap checks) and against a fixed one, must
 * be refused with one line or decode to a set within its regions. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/le.h"
#include "snapshot/wset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *b, size_t size, const struct wset_region *geo,
		  unsigned n, uint64_t id)
{
	char err[256] = "";
	struct wset w;
	int ret = wset_decode(b, size, geo, n, id, &w, err, sizeof(err));

	if (ret) {
		/* One line, always. */
		if (!err[0] || strchr(err, '\n'))
			abort();
		return;
	}
	if (w.nregions != n)
		abort();
	for (unsigned i = 0; i < n; i++) {
		uint64_t c = w.regions[i].nchunks;

		if (c % 64 && w.regions[i].bits[c / 64] >> (c % 64))
			abort();
	}
	(void)wset_count(&w);
	wset_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct wset_region fixed[2] = {
		{ .gpa = 0,
		  .size = 3ull << 30,
		  .chunk_size = 256 << 10,
		  .nchunks = 12288 },
		{ .gpa = 1ull << 32,
		  .size = 1ull << 30,
		  .chunk_size = 256 << 10,
		  .nchunks = 4096 },
	};
	struct wset_region geo[GUEST_MEM_MAX_REGIONS];
	unsigned n = 0;
	uint8_t *b;

	if (size > WSET_FILE_MAX + 16)
		return 0;
	check(data, size, fixed, 1, 0);
	check(data, size, fixed, 2, size >= 24 ? get_le64(data + 16) : 0);
	b = malloc(size ? size : 1);
	if (!b)
		return 0;
	memcpy(b, data, size);
	/* The checksum made right, and the file's own regions as the
	 * snapshot's, so mutations reach the checks behind them. */
	if (size >= WSET_HEADER_SIZE + 8) {
		put_le64(b + size - 8, XXH3_64bits(b, size - 8));
		n = get_le32(b + 24);
		if (n > GUEST_MEM_MAX_REGIONS ||
		    size < WSET_HEADER_SIZE + n * WSET_REGION_SIZE + 8)
			n = 0;
		for (unsigned i = 0; i < n; i++) {
			const uint8_t *r =
			    b + WSET_HEADER_SIZE + i * WSET_REGION_SIZE;

			geo[i] = (struct wset_region){
				.gpa = get_le64(r),
				.size = get_le64(r + 8),
				.chunk_size = get_le32(r + 16),
				.nchunks = get_le64(r + 24),
			};
		}
		check(b, size, geo, n, get_le64(b + 16));
	}
	free(b);
	return 0;
}
