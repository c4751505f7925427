/* codec_cost.c - what each --compress choice costs and saves on real
 * guest memory: loads the memory of a snapshot (written with --compress
 * none or any other), then saves it again with each codec the way stasis
 * does (snap_write_memory on one thread per CPU, fsync, rename) and
 * restores it by copy, and prints per codec: ratio (touched bytes over
 * bytes stored), save MB/s and restore MB/s of guest bytes.
 * Build (from the source root):
 *   cc -O2 -D_GNU_SOURCE -Isrc -o codec_cost bench/codec_cost.c \
 *      src/snapshot/snapfile.c src/snapshot/codec.c src/core/file_io.c \
 *      src/memory/guest_mem.c -lxxhash -lzstd -llz4 -lpthread
 * Run: ./codec_cost SNAPSHOT DIR [runs] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/snapfile.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Reads every MEMORY record of @path into @m, sized from the file. */
static int load(const char *path, struct guest_mem *m)
{
	struct snap_reader *r = snap_reader_open(path, NULL, 0);
	struct snap_memory_desc d;
	struct snap_record rec;
	char err[256];
	int ret, loaded = 0;

	if (!r)
		return -1;
	while ((ret = snap_reader_next(r, &rec, err, sizeof(err))) == 1) {
		if (rec.type != SNAP_REC_MEMORY)
			continue;
		if (snap_read_memory_desc(r, &rec, &d, err, sizeof(err)) ||
		    d.gpa != 0 || loaded++ || guest_mem_init(m, d.size) ||
		    snap_read_memory(r, &rec, m, NULL, err, sizeof(err))) {
			fprintf(stderr, "%s: %s (one region at 0 only)\n", path,
				err);
			snap_reader_close(r);
			return -1;
		}
	}
	snap_reader_close(r);
	if (ret < 0)
		fprintf(stderr, "%s: %s\n", path, err);
	return ret < 0 || !loaded ? -1 : 0;
}

/* Saves @m to @out with @c; returns seconds, fills the descriptor. */
static double save(const char *out, const struct guest_mem *m,
		   const struct snap_compress *c, struct snap_memory_desc *d)
{
	struct snap_header h = { .page_size = 4096 };
	struct snap_record rec;
	struct snap_writer *w;
	struct snap_reader *r;
	char err[256];
	double t0 = now(), t;

	w = snap_writer_open(out, &h, err, sizeof(err));
	if (!w || snap_writer_set_compress(w, c, 0) ||
	    snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2, err,
			      sizeof(err)) ||
	    snap_write_memory(w, m, NULL, err, sizeof(err)) ||
	    snap_writer_commit(w, err, sizeof(err))) {
		fprintf(stderr, "save: %s\n", err);
		exit(1);
	}
	t = now() - t0;
	r = snap_reader_open(out, err, sizeof(err));
	while (r && snap_reader_next(r, &rec, err, sizeof(err)) == 1)
		if (rec.type == SNAP_REC_MEMORY)
			snap_read_memory_desc(r, &rec, d, err, sizeof(err));
	snap_reader_close(r);
	return t;
}

static double restore(const char *out, struct guest_mem *dst)
{
	struct snap_reader *r;
	struct snap_record rec;
	char err[256];
	double t0 = now();

	r = snap_reader_open(out, err, sizeof(err));
	while (r && snap_reader_next(r, &rec, err, sizeof(err)) == 1) {
		if (rec.type == SNAP_REC_MEMORY &&
		    snap_read_memory(r, &rec, dst, NULL, err, sizeof(err))) {
			fprintf(stderr, "restore: %s\n", err);
			exit(1);
		}
	}
	snap_reader_close(r);
	return now() - t0;
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "none", "lz4", "zstd:1", "zstd:3",
					     "zstd:9" };
	struct guest_mem m = { .memfd = -1 }, dst = { .memfd = -1 };
	int runs = argc > 3 ? atoi(argv[3]) : 3;
	char out[4096];

	if (argc < 3) {
		fprintf(stderr, "usage: codec_cost SNAPSHOT DIR [runs]\n");
		return 2;
	}
	if (load(argv[1], &m) || guest_mem_init(&dst, m.size))
		return 1;
	snprintf(out, sizeof(out), "%s/codec_cost.%d.snap", argv[2], getpid());
	printf("%-8s %8s %10s %10s %12s %12s\n", "codec", "ratio", "touched",
	       "stored", "save MB/s", "restore MB/s");
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		struct snap_memory_desc d = { 0 };
		struct snap_compress c;
		double ts = 0, tr = 0;

		snap_compress_parse(names[k], &c, NULL, 0);
		for (int i = 0; i < runs; i++) {
			ts += save(out, &m, &c, &d);
			tr += restore(out, &dst);
		}
		if (memcmp(m.host, dst.host, m.size))
			return fprintf(stderr, "%s: memory differs\n",
				       names[k]),
			       1;
		printf("%-8s %8.2f %8.1fMi %8.1fMi %12.0f %12.0f\n", names[k],
		       d.stored_bytes ? (double)d.raw_bytes / d.stored_bytes
				      : 0,
		       d.raw_bytes / 1048576.0, d.stored_bytes / 1048576.0,
		       d.raw_bytes * runs / ts / 1e6,
		       d.raw_bytes * runs / tr / 1e6);
		fflush(stdout);
	}
	unlink(out);
	return 0;
}
