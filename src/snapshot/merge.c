/* `stasis merge`: a chain of incremental snapshots flattened into one full
 * file (chain.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/chain.h"
#include "snapshot/snapshot.h"

#define MERGE_RECORD_MAX (4u << 20)

/* Every region of @mem from the chain: the top file's table at @rec (read
 * by @r), resolved against @img's chain, read and checked chunk by chunk
 * into guest memory. */
static int merge_load_region(struct snapshot_image *img, struct snap_reader *r,
			     const struct snap_record *rec,
			     struct guest_mem *mem, char *err, size_t errlen)
{
	struct snap_chunk_table top, all;
	unsigned region;
	int ret;

	ret = snap_read_memory_table(r, rec, mem, &top, &region, err, errlen);
	if (ret)
		return ret;
	if (!img->chain) {
		all = top;
		top.chunks = NULL;
	} else {
		ret = snap_chain_merge(img->chain, region, &top, &all, err,
				       errlen);
		if (ret)
			return ret;
	}
	ret = snap_load_chunks(&all, mem, region, false, NULL, err, errlen);
	snap_chunk_table_free(&all);
	return ret;
}

int snapshot_merge(const char *child, const char *out,
		   const struct snap_compress *c, char *err, size_t errlen)
{
	struct snap_header hdr = { .format_version = SNAP_FORMAT_VERSION };
	struct snapshot_image img;
	struct snap_lineage lin;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	struct guest_mem mem = { .memfd = -1 };
	struct snap_record rec;
	bool memory_done = false;
	unsigned nmem = 0;
	uint8_t *lbuf = NULL;
	size_t llen;
	int ret;

	ret = snapshot_open(child, &img, err, errlen);
	if (ret)
		return ret;
	/* A second pass over the top file, record by record, from the
	 * start; the first (img) holds the chain open. */
	r = snap_reader_open(child, err, errlen);
	if (!r) {
		ret = -EINVAL;
		goto out;
	}
	snap_reader_set_layer(r, img.chain != NULL);
	ret = guest_mem_init(&mem, img.cfg.mem_size);
	if (ret) {
		snap_chain_err(err, errlen,
			       "cannot allocate %llu MiB of memory: %s",
			       (unsigned long long)(img.cfg.mem_size >> 20),
			       strerror(-ret));
		goto out;
	}
	hdr.page_size = snap_reader_header(r)->page_size;
	memcpy(hdr.stasis_version, STASIS_VERSION,
	       strlen(STASIS_VERSION) < sizeof(hdr.stasis_version)
		   ? strlen(STASIS_VERSION)
		   : sizeof(hdr.stasis_version) - 1);
	memcpy(hdr.cpu_vendor, snap_reader_header(r)->cpu_vendor,
	       sizeof(hdr.cpu_vendor));
	/* The state is of that instant, whenever it is merged. */
	hdr.created_unix_ns = snap_reader_header(r)->created_unix_ns;
	lin = img.lineage;
	lin.depth = 0;
	lin.parent_identity = lin.parent_created_ns = 0;
	lin.parent_path[0] = '\0';
	ret = snap_lineage_encode(&lin, &lbuf, &llen);
	if (ret)
		goto out;
	w = snap_writer_open(out, &hdr, err, errlen);
	if (!w) {
		ret = -EIO;
		goto out;
	}
	if (c && snap_writer_set_compress(w, c, 0)) {
		snap_chain_err(err, errlen, "snapshot: unknown compression");
		ret = -EINVAL;
		goto out;
	}
	while ((ret = snap_reader_next(r, &rec, err, errlen)) == 1) {
		void *data = NULL;

		if (rec.type == SNAP_REC_MEMORY) {
			if (memory_done || nmem == mem.nregions ||
			    rec.version != SNAP_MEMORY_VERSION) {
				snap_chain_err(
				    err, errlen,
				    "snapshot: unexpected MEMORY record");
				ret = -EINVAL;
				goto out;
			}
			ret =
			    merge_load_region(&img, r, &rec, &mem, err, errlen);
			if (ret)
				goto out;
			if (++nmem == mem.nregions) {
				ret = snap_write_memory(w, &mem, NULL, err,
							errlen);
				if (ret)
					goto out;
				memory_done = true;
			}
			continue;
		}
		/* A merged file is not what the key holder signed. */
		if (rec.type == SNAP_REC_SIGNATURE)
			continue;
		if (rec.type == SNAP_REC_LINEAGE) {
			ret = snap_write_record(
			    w, SNAP_REC_LINEAGE, SNAP_LINEAGE_VERSION,
			    SNAP_REC_OPTIONAL, lbuf, llen, err, errlen);
			if (ret)
				goto out;
			continue;
		}
		ret = snap_read_payload(r, &rec, MERGE_RECORD_MAX, &data, err,
					errlen);
		if (!ret)
			ret = snap_write_record(w, rec.type, rec.version,
						rec.flags, data, rec.length,
						err, errlen);
		free(data);
		if (ret)
			goto out;
	}
	if (ret < 0)
		goto out;
	if (!memory_done) {
		snap_chain_err(err, errlen,
			       "snapshot: %u memory records, not %u", nmem,
			       mem.nregions);
		ret = -EINVAL;
		goto out;
	}
	ret = snap_writer_commit(w, err, errlen);
	w = NULL;
out:
	if (w)
		snap_writer_abort(w);
	free(lbuf);
	guest_mem_destroy(&mem);
	if (r)
		snap_reader_close(r);
	snapshot_close(&img);
	return ret;
}
