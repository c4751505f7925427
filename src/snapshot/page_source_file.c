/* The page source of a lazy restore from a local snapshot file: chunks
 * as its MEMORY records' tables describe them, read with pread and checked
 * against their XXH3-64 (snap_read_chunk). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/pager.h"

struct file_source {
	unsigned n;
	struct snap_chunk_table tables[GUEST_MEM_MAX_REGIONS];
};

static uint64_t file_source_mask(void *ctx, unsigned region, uint64_t idx)
{
	struct file_source *fs = ctx;

	return fs->tables[region].chunks[idx].block_mask;
}

static int file_source_read(void *ctx, unsigned region, uint64_t idx,
			    uint8_t *buf, char *err, size_t errlen)
{
	struct file_source *fs = ctx;

	return snap_read_chunk(&fs->tables[region], idx, buf, false, err,
			       errlen);
}

static void file_source_destroy(void *ctx)
{
	struct file_source *fs = ctx;

	for (unsigned i = 0; i < fs->n; i++)
		snap_chunk_table_free(&fs->tables[i]);
	free(fs);
}

static const struct page_source_ops file_source_ops = {
	.chunk_mask = file_source_mask,
	.read_chunk = file_source_read,
	.destroy = file_source_destroy,
};

void page_source_set_region(struct page_source *src, unsigned i,
			    const struct snap_chunk_table *t)
{
	src->regions[i] = (struct page_source_region){
		.gpa = t->gpa,
		.size = t->size,
		.chunk_size = t->chunk_size,
		.block_size = t->block_size,
		.nchunks = t->nchunks,
		.stored_chunks = t->stored_chunks,
	};
}

int page_source_file_init(struct page_source *src,
			  struct snap_chunk_table *tables, unsigned n)
{
	struct file_source *fs;

	if (n > GUEST_MEM_MAX_REGIONS)
		return -EINVAL;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	memset(src, 0, sizeof(*src));
	fs->n = n;
	for (unsigned i = 0; i < n; i++) {
		const struct snap_chunk_table *t = &tables[i];

		fs->tables[i] = *t;
		page_source_set_region(src, i, t);
		/* Taken over: the caller's copy must not be freed too. */
		tables[i].chunks = NULL;
	}
	src->ops = &file_source_ops;
	src->ctx = fs;
	src->nregions = n;
	return 0;
}
