/* snapdamage: damages one record payload of a snapshot at random, then
 * recomputes that record's checksum, so that only the meaning changes and
 * the restore code (not the container's checks) has to cope. A test tool,
 * not part of stasis. Usage:
 *   snapdamage IN OUT SEED
 * The same SEED gives the same damage. The record's type is picked in
 * turn by SEED among CONFIG, CPUID, CLOCK, VCPU, IRQCHIP, PIT, DEVICE and
 * MEMORY (those present), the record of that type and the bytes at random.
 * Prints one line saying what was changed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "snapshot/snapfile.h"

#define MAX_RECORDS 4096
#define MAX_FILE (1ull << 30)

static const uint32_t damage_types[] = {
	SNAP_REC_CONFIG,  SNAP_REC_CPUID, SNAP_REC_CLOCK,  SNAP_REC_VCPU,
	SNAP_REC_IRQCHIP, SNAP_REC_PIT,	  SNAP_REC_DEVICE, SNAP_REC_MEMORY,
};
#define NTYPES (sizeof(damage_types) / sizeof(damage_types[0]))

struct rec {
	uint32_t type;
	uint64_t hdr; /* offset of the record header */
	uint64_t len; /* payload bytes */
};

static uint64_t rng_state;

/* splitmix64: small, and the same sequence on every host. */
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
	return n ? rng_next() % n : 0;
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int die(const char *msg)
{
	fprintf(stderr, "snapdamage: %s\n", msg);
	return 1;
}

/* Reads the whole file: snapshots of the test guests are small. */
static uint8_t *read_file(const char *path, uint64_t *size)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    (uint64_t)n > MAX_FILE || fseek(f, 0, SEEK_SET))
		goto out;
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	*size = (uint64_t)n;
out:
	if (f)
		fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	static struct rec recs[MAX_RECORDS];
	unsigned nrecs = 0, pick[MAX_RECORDS], npick = 0, ntries;
	uint64_t size, off = SNAP_HEADER_SIZE, seed;
	uint32_t type = 0;
	uint8_t *f;
	struct rec *r;
	FILE *out;
	unsigned changes;

	if (argc != 4)
		return die("usage: snapdamage IN OUT SEED");
	seed = strtoull(argv[3], NULL, 0);
	f = read_file(argv[1], &size);
	if (!f || size < SNAP_HEADER_SIZE)
		return die("cannot read the snapshot");
	while (off + SNAP_RECORD_HEADER_SIZE <= size && nrecs < MAX_RECORDS) {
		struct rec *x = &recs[nrecs++];

		x->type = (uint32_t)get_le(f + off, 4);
		x->hdr = off;
		x->len = get_le(f + off + 8, 8);
		if (x->len > size - off - SNAP_RECORD_HEADER_SIZE)
			return die("a record runs past the end");
		off += SNAP_RECORD_HEADER_SIZE + ((x->len + 7) & ~7ull);
		if (x->type == SNAP_REC_END)
			break;
	}

	/* The type in turn by seed (so a run of N seeds covers each type
	 * about N / 8 times), skipping those the file lacks. */
	rng_state = seed * 0x2545f4914f6cdd1dull + 1;
	for (ntries = 0; ntries < NTYPES && !npick; ntries++) {
		type = damage_types[(seed + ntries) % NTYPES];
		for (unsigned i = 0; i < nrecs; i++)
			if (recs[i].type == type && recs[i].len)
				pick[npick++] = i;
	}
	if (!npick)
		return die("no record to damage");
	r = &recs[pick[rng_below(npick)]];

	/* 1 to 4 changes; half of them in the first 64 bytes, where
	 * section headers, lengths and descriptors are. */
	changes = 1 + (unsigned)rng_below(4);
	printf("seed %" PRIu64 ": %s record at 0x%" PRIx64 " (%" PRIu64
	       " bytes):",
	       seed, snap_record_type_name(type), r->hdr, r->len);
	for (unsigned i = 0; i < changes; i++) {
		uint64_t span = r->len < 64 || rng_below(2) ? r->len : 64;
		uint64_t at = rng_below(span);
		uint8_t *p = f + r->hdr + SNAP_RECORD_HEADER_SIZE + at;
		uint8_t was = *p;

		switch (rng_below(4)) {
		case 0:
			*p ^= (uint8_t)(1u << rng_below(8));
			break;
		case 1:
			*p = (uint8_t)rng_next();
			break;
		case 2:
			*p = 0;
			break;
		default:
			*p = 0xff;
			break;
		}
		printf(" +%" PRIu64 " %02x->%02x", at, was, *p);
	}
	printf("\n");

	/* The record checksum covers its header (checksum field zero) and
	 * the payload (docs/snapshot-format.md). */
	{
		XXH3_state_t *h = XXH3_createState();
		uint8_t hdr[SNAP_RECORD_HEADER_SIZE];

		if (!h)
			return die("out of memory");
		memcpy(hdr, f + r->hdr, sizeof(hdr));
		memset(hdr + 16, 0, 8);
		XXH3_64bits_reset(h);
		XXH3_64bits_update(h, hdr, sizeof(hdr));
		XXH3_64bits_update(h, f + r->hdr + SNAP_RECORD_HEADER_SIZE,
				   (size_t)r->len);
		put_le64(f + r->hdr + 16, XXH3_64bits_digest(h));
		XXH3_freeState(h);
	}
	out = fopen(argv[2], "wb");
	if (!out || fwrite(f, 1, (size_t)size, out) != size || fclose(out))
		return die("cannot write the output");
	free(f);
	return 0;
}
