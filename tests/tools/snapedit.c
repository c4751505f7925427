/* snapedit: rewrites a snapshot with one thing changed, so tests can check
 * that a restore refuses what this host cannot honour. A test tool, not
 * part of stasis. Usage:
 *   snapedit IN OUT [--page-size N] [--format-version N] [--vendor STR]
 *            [--cpuid-set FN.IDX.REG.BIT] [--blk-v1 1] [--net-v1 1]
 * --blk-v1 rewrites each virtio-blk model section as version 1 of its
 * table (size, mtime, first-MiB hash), as a stasis before the device and
 * inode identity wrote it. --net-v1 rewrites each virtio-net device as a
 * stasis before the control queue saved it: two queues, three MSI-X
 * vectors, a model section of version 1 (the MAC); its driver must not
 * have enabled the control queue.
 * Checksums are recomputed, so only the meaning changes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <xxhash.h>

#include "core/config.h"
#include "cpu/cpuid.h"
#include "memory/guest_mem.h"
#include "snapshot/snapfile.h"

struct edits {
	long page_size;
	long format_version;
	const char *vendor;
	uint32_t fn, idx, bit;
	int reg; /* 0..3 = EAX..EDX, -1 for none */
	bool blk_v1, net_v1;
};

/* Section tags of a DEVICE record (docs/snapshot-format.md). */
#define DEV_NAME 1
#define DEV_MODEL 4
/* virtio-blk table version 1: three u64. */
#define BLK_V1_LEN 24

/* In a DEVICE record of a virtio-blk device (name "blkN"), rewrites the
 * model section (tag 4) as version 1 in place: its first 24 bytes, the
 * version 1 fields. Shortens *len. */
static void edit_blk_v1(uint8_t *p, uint64_t *len)
{
	uint64_t off = 0;
	bool blk = false;

	while (off + 8 <= *len) {
		uint16_t tag = (uint16_t)(p[off] | p[off + 1] << 8);
		uint32_t n = (uint32_t)p[off + 4] | (uint32_t)p[off + 5] << 8 |
			     (uint32_t)p[off + 6] << 16 |
			     (uint32_t)p[off + 7] << 24;
		uint64_t padded = (n + 7ull) & ~7ull;

		if (off + 8 + padded > *len)
			return;
		if (tag == DEV_NAME)
			blk = n >= 3 && !memcmp(p + off + 8, "blk", 3);
		if (blk && tag == DEV_MODEL && n > BLK_V1_LEN &&
		    off + 8 + padded == *len) {
			p[off + 2] = 1;
			p[off + 3] = 0;
			p[off + 4] = BLK_V1_LEN;
			p[off + 5] = p[off + 6] = p[off + 7] = 0;
			*len = off + 8 + BLK_V1_LEN;
			return;
		}
		off += 8 + padded;
	}
}

/* The virtio-pci transport table (src/virtio/virtio_pci.c): 23 bytes of
 * common registers, 8 queues of 36 bytes, the MSI-X table (9 vectors of
 * 16 bytes), the pending bits (u64) and two booleans. */
#define TR_LEN 465
#define TR_VQ(q) (23 + 36 * (q))
#define TR_VQ_ENABLED 2
#define TR_VQ_MSIX 3
#define TR_MSIX(v) (311 + 16 * (v))
#define TR_PBA 455
#define PCI_CAP_PTR 0x34

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* In a DEVICE record of a virtio-net device (name "netN"): queue 2 and
 * vector 3 as a device without them saves them, the MSI-X table size and
 * notification length of PCI config space for two queues, and the model
 * section as version 1 (its padding keeps the record's length). Returns
 * -EINVAL when the driver used the control queue. */
static int edit_net_v1(uint8_t *p, uint64_t len)
{
	uint64_t off = 0;
	bool net = false;

	while (off + 8 <= len) {
		uint16_t tag = (uint16_t)(p[off] | p[off + 1] << 8);
		uint32_t n = le32(p + off + 4);
		uint64_t padded = (n + 7ull) & ~7ull;
		uint8_t *d = p + off + 8;

		if (off + 8 + padded > len)
			return 0;
		if (tag == DEV_NAME)
			net = n >= 3 && !memcmp(d, "net", 3);
		if (net && tag == 2 && n == TR_LEN) {
			uint8_t *q = d + TR_VQ(2);

			if (q[TR_VQ_ENABLED])
				return -EINVAL;
			memset(q, 0, 36);
			q[TR_VQ_MSIX] = q[TR_VQ_MSIX + 1] = 0xff;
			memset(d + TR_MSIX(3), 0, 16);
			d[TR_PBA] &= (uint8_t) ~(1u << 3);
		}
		if (net && tag == 3 && n >= 256) {
			for (unsigned o = d[PCI_CAP_PTR], hops = 0;
			     o && o + 16 <= 256 && hops < 48;
			     o = d[o + 1], hops++) {
				if (d[o] == 0x11) /* MSI-X: table size 3 */
					d[o + 2] = 2, d[o + 3] &= 0xf8;
				if (d[o] == 0x09 && d[o + 3] == 2) /* notify */
					d[o + 12] = 8, d[o + 13] = d[o + 14] =
							   d[o + 15] = 0;
			}
		}
		if (net && tag == DEV_MODEL && n == 8) {
			p[off + 2] = 1;
			p[off + 3] = 0;
			p[off + 4] = 6;
			d[6] = d[7] = 0;
		}
		off += 8 + padded;
	}
	return 0;
}

static int die(const char *msg)
{
	fprintf(stderr, "snapedit: %s\n", msg);
	return 1;
}

static int parse_cpuid_set(const char *s, struct edits *e)
{
	char reg[8];
	static const char *const names[] = { "EAX", "EBX", "ECX", "EDX" };

	if (sscanf(s, "%x.%u.%3[A-Z].%u", &e->fn, &e->idx, reg, &e->bit) != 4 ||
	    e->bit > 31)
		return -EINVAL;
	for (int i = 0; i < 4; i++)
		if (!strcmp(reg, names[i]))
			e->reg = i;
	return e->reg < 0 ? -EINVAL : 0;
}

static void edit_cpuid(struct kvm_cpuid2 *c, const struct edits *e)
{
	struct kvm_cpuid_entry2 *x;

	if (e->reg >= 0 && (x = cpuid_find(c, e->fn, e->idx))) {
		uint32_t *r[] = { &x->eax, &x->ebx, &x->ecx, &x->edx };

		*r[e->reg] |= 1u << e->bit;
	}
	if (e->vendor && (x = cpuid_find(c, 0, 0))) {
		char v[12] = { 0 };

		memcpy(v, e->vendor, strnlen(e->vendor, 12));
		memcpy(&x->ebx, v, 4);
		memcpy(&x->edx, v + 4, 4);
		memcpy(&x->ecx, v + 8, 4);
	}
}

/* Patches the header's format version and recomputes its checksum. */
static int patch_format_version(const char *path, uint32_t version)
{
	uint8_t hdr[128];
	uint64_t sum;
	FILE *f = fopen(path, "r+b");

	if (!f || fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr))
		return -EIO;
	for (int i = 0; i < 4; i++)
		hdr[8 + i] = (uint8_t)(version >> (8 * i));
	sum = XXH3_64bits(hdr, 120);
	for (int i = 0; i < 8; i++)
		hdr[120 + i] = (uint8_t)(sum >> (8 * i));
	fseek(f, 0, SEEK_SET);
	fwrite(hdr, 1, sizeof(hdr), f);
	return fclose(f) ? -EIO : 0;
}

int main(int argc, char **argv)
{
	struct edits e = { .page_size = 0, .format_version = 0, .reg = -1 };
	struct snap_header hdr;
	struct snap_reader *r;
	struct snap_writer *w;
	struct snap_record rec;
	struct guest_mem mem = { .memfd = -1 };
	struct vm_config cfg;
	char err[512];
	int ret;

	if (argc < 3)
		return die("usage: snapedit IN OUT [edits]");
	for (int i = 3; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--page-size"))
			e.page_size = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--format-version"))
			e.format_version = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--vendor"))
			e.vendor = argv[i + 1];
		else if (!strcmp(argv[i], "--blk-v1"))
			e.blk_v1 = atol(argv[i + 1]) != 0;
		else if (!strcmp(argv[i], "--net-v1"))
			e.net_v1 = atol(argv[i + 1]) != 0;
		else if (!strcmp(argv[i], "--cpuid-set")) {
			if (parse_cpuid_set(argv[i + 1], &e))
				return die("bad --cpuid-set (FN.IDX.REG.BIT)");
		} else
			return die("unknown option");
	}

	r = snap_reader_open(argv[1], err, sizeof(err));
	if (!r)
		return die(err);
	hdr = *snap_reader_header(r);
	if (e.page_size)
		hdr.page_size = (uint32_t)e.page_size;
	if (e.vendor)
		snprintf(hdr.cpu_vendor, sizeof(hdr.cpu_vendor), "%s",
			 e.vendor);
	w = snap_writer_open(argv[2], &hdr, err, sizeof(err));
	if (!w)
		return die(err);
	config_init(&cfg);
	while ((ret = snap_reader_next(r, &rec, err, sizeof(err))) == 1) {
		void *data = NULL;

		if (rec.type == SNAP_REC_MEMORY) {
			if (!mem.host && guest_mem_init(&mem, cfg.mem_size))
				return die("cannot allocate guest memory");
			if (snap_read_memory(r, &rec, &mem, NULL, err,
					     sizeof(err)))
				return die(err);
			continue;
		}
		if (snap_read_payload(r, &rec, 16 << 20, &data, err,
				      sizeof(err)))
			return die(err);
		if (rec.type == SNAP_REC_CONFIG) {
			char *text = strndup(data, rec.length);

			if (!text ||
			    config_load_json(&cfg, text, err, sizeof(err)))
				return die("bad CONFIG");
			free(text);
		}
		if (rec.type == SNAP_REC_CPUID) {
			struct kvm_cpuid2 *c;
			uint8_t *out;
			size_t len;

			if (cpuid_decode(data, rec.length, &c))
				return die("bad CPUID");
			edit_cpuid(c, &e);
			if (cpuid_encode(c, &out, &len))
				return die("cannot encode CPUID");
			free(data);
			free(c);
			data = out;
			rec.length = len;
		}
		if (rec.type == SNAP_REC_DEVICE && e.blk_v1)
			edit_blk_v1(data, &rec.length);
		if (rec.type == SNAP_REC_DEVICE && e.net_v1 &&
		    edit_net_v1(data, rec.length))
			return die(
			    "--net-v1: the driver used the control queue");
		if (snap_write_record(w, rec.type, rec.version, rec.flags, data,
				      rec.length, err, sizeof(err)))
			return die(err);
		free(data);
	}
	if (ret < 0)
		return die(err);
	if (mem.host && snap_write_memory(w, &mem, NULL, err, sizeof(err)))
		return die(err);
	if (snap_writer_commit(w, err, sizeof(err)))
		return die(err);
	snap_reader_close(r);
	guest_mem_destroy(&mem);
	config_free(&cfg);
	if (e.format_version &&
	    patch_format_version(argv[2], (uint32_t)e.format_version))
		return die("cannot patch the format version");
	return 0;
}
