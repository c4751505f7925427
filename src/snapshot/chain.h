/* Chains of incremental snapshots: the LINEAGE record that says which VM a
 * file belongs to and which file it is a layer over, opening and checking
 * a chain before any of its state is used, and one chunk table per region
 * merged from every layer, so that each chunk is read from the layer that
 * holds it (by the restore's copy and map paths and by the lazy restore's
 * page source alike). docs/snapshot-format.md, "Incremental layers". */
#ifndef STASIS_CHAIN_H
#define STASIS_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory/guest_mem.h"
#include "snapshot/snapfile.h"

/* Layers a chain may have above its full snapshot. A restore opens every
 * layer at once (one descriptor and one chunk table per region each), so
 * the bound keeps that small; `stasis merge` flattens a chain into one
 * full file. */
#define SNAP_CHAIN_MAX_DEPTH 64
#define SNAP_LINEAGE_VERSION 1
/* Longest parent path a LINEAGE record holds. */
#define SNAP_LINEAGE_PATH_MAX 4095
/* Largest LINEAGE payload: the ids section (8 + 40 bytes) and the path
 * section (8 + the path padded to 8), with room to spare. */
#define SNAP_LINEAGE_PAYLOAD_MAX (64 + SNAP_LINEAGE_PATH_MAX + 1)

/* A LINEAGE record, decoded. */
struct snap_lineage {
	uint64_t vm_id[2]; /* random at the VM's first snapshot, kept after */
	uint32_t depth; /* layers under this file; 0: a full snapshot */
	uint64_t parent_identity; /* snap_file_identity of the parent */
	uint64_t parent_created_ns; /* the parent header's created_unix_ns */
	char parent_path[SNAP_LINEAGE_PATH_MAX + 1]; /* absolute; "" if none */
};

/* Formats one line into @err (the chain, merge and layer writer's
 * messages). */
void snap_chain_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Encodes @l as a LINEAGE payload (malloc'd into *@data, *@len bytes). */
int snap_lineage_encode(const struct snap_lineage *l, uint8_t **data,
			size_t *len);
/* Decodes and checks a LINEAGE payload. 0 or -EINVAL. */
int snap_lineage_decode(const uint8_t *data, size_t len,
			struct snap_lineage *l);

/* What a VM knows of its own snapshots, for the next increment: its id,
 * and the file its dirty log counts from (its latest snapshot, or the file
 * it was restored from). */
struct snap_vm_lineage {
	uint64_t vm_id[2];
	bool have_last;
	char last_path[SNAP_LINEAGE_PATH_MAX + 1];
	uint64_t last_identity;
	uint64_t last_created_ns;
	uint32_t last_depth;
};

/* One ancestor of a file being restored. */
struct snap_chain_layer {
	char *path;
	struct snap_reader *r;
	struct snap_lineage lin;
	struct snap_chunk_table tables[GUEST_MEM_MAX_REGIONS];
	unsigned ntables;
};

/* The ancestors of a layer, nearest first: layers[n - 1] is the full
 * snapshot. fds and names count the top file as layer 0, as the merged
 * tables' chunks do. */
struct snap_chain {
	unsigned n;
	struct snap_chain_layer layers[SNAP_CHAIN_MAX_DEPTH];
	int fds[SNAP_CHAIN_MAX_DEPTH + 1];
	const char *names[SNAP_CHAIN_MAX_DEPTH + 1];
};

/* The RAM regions a VM of @mem_size bytes has (guest_mem_init's layout):
 * their count, and gpa and size of each. */
unsigned snap_chain_regions(uint64_t mem_size, gpa_t gpa[], uint64_t size[]);

/* Opens and checks every ancestor of the file @top_path (fd @top_fd),
 * whose LINEAGE is @top, for a VM of @mem_size bytes: each parent must be
 * where its child names it, have the identity the child recorded, belong
 * to the same VM, sit at the depth below it, be complete, and cut memory
 * as the child does; its chunk tables are read and checked. Returns 0 or
 * -errno with one line in @err naming the layer and what is wrong with
 * it. Reads no guest memory. */
int snap_chain_open(struct snap_chain *ch, const char *top_path, int top_fd,
		    const struct snap_lineage *top, uint64_t mem_size,
		    char *err, size_t errlen);
void snap_chain_close(struct snap_chain *ch);

/* Resolves @top (the top file's table of region @region, taken over:
 * freed or moved into @out) against the ancestors: every chunk the top
 * leaves to its parent comes from the nearest layer that holds it. @out
 * reads through ch->fds; it lives no longer than @ch. 0 or -errno. */
int snap_chain_merge(struct snap_chain *ch, unsigned region,
		     struct snap_chunk_table *top, struct snap_chunk_table *out,
		     char *err, size_t errlen);

/* For `stasis inspect`: the identity of @path's file and its LINEAGE
 * (lin->depth 0 and vm_id 0 for a file without one). 0 or -errno. */
int snap_lineage_read(const char *path, struct snap_lineage *lin,
		      uint64_t *identity, char *err, size_t errlen);

/* `stasis merge CHILD -o OUT`: writes the state @child holds, with all
 * of memory from every layer of its chain, to @out atomically as one full
 * snapshot of the same VM (compressed with @c, NULL for none; never
 * signed). Every layer is checked as a restore checks it, and every chunk
 * on its way. 0 or -errno with one line in @err; on failure nothing is
 * at @out that was not there before. */
int snapshot_merge(const char *child, const char *out,
		   const struct snap_compress *c, char *err, size_t errlen);

#endif
