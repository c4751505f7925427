/* Incremental snapshots' memory: the dirty chunks since the VM's latest
 * snapshot, as a layer over it (mem_dirty.h). */
#include "snapshot/mem_dirty.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/log.h"
#include "core/text.h"
#include "core/vm.h"

static void mem_dirty_free(struct mem_dirty_save *s)
{
	for (unsigned i = 0; i < GUEST_MEM_MAX_REGIONS; i++) {
		free(s->pages[i]);
		free(s->chunks[i]);
		s->pages[i] = s->chunks[i] = NULL;
	}
}

/* Whether @base is the file the VM's dirty log counts from: the same
 * identity (so the same content, wherever it is now). */
static int mem_dirty_check_base(struct vm *vm, const char *path,
				const char *base, char *rp, char *err,
				size_t errlen)
{
	char target[PATH_MAX];
	const struct snap_vm_lineage *vl = &vm->lineage;
	struct snap_lineage lin;
	uint64_t id;
	char msg[512], a[256], b[256];
	int ret;

	text_escape(a, sizeof(a), base, strlen(base));
	if (!dirty_log_started(&vm->dirty) || !vl->have_last) {
		snap_chain_err(
		    err, errlen,
		    "--base %s: this VM has no snapshot its dirty pages "
		    "count from (take a full snapshot first)",
		    a);
		return -EINVAL;
	}
	if (!realpath(base, rp)) {
		ret = -errno;
		snap_chain_err(err, errlen, "--base %s: %s", a,
			       strerror(errno));
		return ret;
	}
	if (strlen(rp) > SNAP_LINEAGE_PATH_MAX) {
		snap_chain_err(err, errlen, "--base %s: path too long", a);
		return -ENAMETOOLONG;
	}
	/* A layer written over its own parent would name a file that no
	 * longer exists. */
	if (realpath(path, target) && !strcmp(target, rp)) {
		snap_chain_err(
		    err, errlen,
		    "--base %s: the new layer would replace its own parent", a);
		return -EINVAL;
	}
	ret = snap_lineage_read(rp, &lin, &id, msg, sizeof(msg));
	if (ret) {
		snap_chain_err(err, errlen, "--base %s: %s", a, msg);
		return -EINVAL;
	}
	if (lin.vm_id[0] != vl->vm_id[0] || lin.vm_id[1] != vl->vm_id[1]) {
		snap_chain_err(err, errlen,
			       "--base %s is a snapshot of another VM", a);
		return -EINVAL;
	}
	if (id != vl->last_identity) {
		snap_chain_err(
		    err, errlen,
		    "--base %s is not this VM's latest snapshot (%s): "
		    "only that one's dirty pages are known",
		    a,
		    text_escape(b, sizeof(b), vl->last_path,
				strlen(vl->last_path)));
		return -EINVAL;
	}
	if (vl->last_depth + 1 > SNAP_CHAIN_MAX_DEPTH) {
		snap_chain_err(
		    err, errlen,
		    "--base %s: the chain would have more than %d layers "
		    "(take a full snapshot, or stasis merge it first)",
		    a, SNAP_CHAIN_MAX_DEPTH);
		return -EINVAL;
	}
	return 0;
}

int mem_dirty_prepare(struct vm *vm, const char *path, const char *base,
		      struct mem_dirty_save *s, char *err, size_t errlen)
{
	struct snap_vm_lineage *vl = &vm->lineage;
	int ret;

	memset(s, 0, sizeof(*s));
	if (!vl->vm_id[0] && !vl->vm_id[1] &&
	    getrandom(vl->vm_id, sizeof(vl->vm_id), 0) !=
		(ssize_t)sizeof(vl->vm_id)) {
		snap_chain_err(err, errlen, "cannot make a VM id: %s",
			       strerror(errno));
		return -EIO;
	}
	s->lin.vm_id[0] = vl->vm_id[0];
	s->lin.vm_id[1] = vl->vm_id[1];
	if (base) {
		ret = mem_dirty_check_base(vm, path, base, s->lin.parent_path,
					   err, errlen);
		if (ret)
			return ret;
		s->increment = true;
		s->lin.depth = vl->last_depth + 1;
		s->lin.parent_identity = vl->last_identity;
		s->lin.parent_created_ns = vl->last_created_ns;
	}
	if (!dirty_log_started(&vm->dirty)) {
		/* The VM's first snapshot: from now on every write counts,
		 * so that the next snapshot can be an increment of this. */
		ret = dirty_log_start(&vm->dirty);
		if (ret)
			log_info("no dirty page log (%s): this VM's snapshots "
				 "will all be full",
				 strerror(-ret));
		return 0;
	}
	s->tracking = true;
	return 0;
}

int mem_dirty_collect(struct vm *vm, struct mem_dirty_save *s, char *err,
		      size_t errlen)
{
	const struct guest_mem *mem = &vm->mem;
	int ret;

	if (!s->tracking || s->collected)
		return 0;
	for (unsigned i = 0; i < mem->nregions; i++) {
		uint64_t words = dirty_log_bitmap_words(mem, i);
		uint64_t nchunks = snap_chunks_for(mem->regions[i].size, 4096);

		s->pages[i] = calloc(words, sizeof(uint64_t));
		s->chunks[i] = calloc((nchunks + 63) / 64, sizeof(uint64_t));
		if (!s->pages[i] || !s->chunks[i]) {
			mem_dirty_free(s);
			snap_chain_err(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	ret = dirty_log_collect(&vm->dirty, s->pages);
	if (ret) {
		mem_dirty_free(s);
		snap_chain_err(err, errlen,
			       "cannot read the dirty page log: %s",
			       strerror(-ret));
		return ret;
	}
	s->collected = true;
	for (unsigned i = 0; i < mem->nregions; i++)
		mem_dirty_chunks(mem, i, s->pages[i], s->chunks[i],
				 &s->dirty_pages, &s->dirty_chunks);
	return 0;
}

/* A chunk goes into the layer whole when any of its pages was written:
 * chunks are what the format checks and fetches. */
void mem_dirty_chunks(const struct guest_mem *mem, unsigned i,
		      const uint64_t *pages, uint64_t *chunks,
		      uint64_t *npages_dirty, uint64_t *nchunks_dirty)
{
	uint64_t npages = mem->regions[i].size / GUEST_MEM_PAGE;
	uint64_t per = SNAP_CHUNK_SIZE / GUEST_MEM_PAGE;

	for (uint64_t p = 0; p < npages; p++) {
		uint64_t c = p / per;

		if (!pages[p / 64]) {
			p |= 63;
			continue;
		}
		if (!(pages[p / 64] >> (p % 64) & 1))
			continue;
		(*npages_dirty)++;
		if (!(chunks[c / 64] >> (c % 64) & 1))
			(*nchunks_dirty)++;
		chunks[c / 64] |= 1ull << (c % 64);
	}
}

int mem_dirty_write(struct vm *vm, struct snap_writer *w,
		    struct mem_dirty_save *s, struct snap_progress *progress,
		    char *err, size_t errlen)
{
	return snap_write_memory_layer(
	    w, &vm->mem,
	    s->increment ? (const uint64_t *const *)s->chunks : NULL, progress,
	    err, errlen);
}

void mem_dirty_finish(struct vm *vm, struct mem_dirty_save *s, bool ok,
		      const char *path, uint64_t identity, uint64_t created_ns)
{
	struct snap_vm_lineage *vl = &vm->lineage;
	char rp[PATH_MAX];

	if (ok && realpath(path, rp) && strlen(rp) <= SNAP_LINEAGE_PATH_MAX) {
		snprintf(vl->last_path, sizeof(vl->last_path), "%s", rp);
		vl->last_identity = identity;
		vl->last_created_ns = created_ns;
		vl->last_depth = s->lin.depth;
		vl->have_last = true;
	} else if (ok) {
		/* Without its own path the file cannot be named by a child. */
		vl->have_last = false;
	} else if (s->collected) {
		for (unsigned i = 0; i < vm->mem.nregions; i++)
			dirty_log_return(&vm->dirty, i, s->pages[i]);
	}
	mem_dirty_free(s);
}
