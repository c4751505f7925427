/* Incremental snapshot chains: the LINEAGE record, opening a chain with
 * every layer checked before any state is used, and merging the layers'
 * chunk tables (chain.h). */
#include "snapshot/chain.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/text.h"
#include "snapshot/state.h"

/* Sections of a LINEAGE record. */
enum {
	LINEAGE_SEC_IDS = 1,
	LINEAGE_SEC_PARENT_PATH = 2,
};

/* The fixed fields, as a state table (the codec writes them little-endian
 * one by one). */
struct lineage_ids {
	uint64_t vm_id_hi;
	uint64_t vm_id_lo;
	uint32_t depth;
	uint64_t parent_identity;
	uint64_t parent_created_ns;
};

static int lineage_validate(const void *obj)
{
	const struct lineage_ids *l = obj;

	if (l->depth > SNAP_CHAIN_MAX_DEPTH)
		return -EINVAL;
	/* A full snapshot names no parent. */
	if (!l->depth && (l->parent_identity || l->parent_created_ns))
		return -EINVAL;
	return 0;
}

static const struct state_field lineage_fields[] = {
	STATE_U64(struct lineage_ids, vm_id_hi, 1),
	STATE_U64(struct lineage_ids, vm_id_lo, 1),
	STATE_U32(struct lineage_ids, depth, 1),
	STATE_U64(struct lineage_ids, parent_identity, 1),
	STATE_U64(struct lineage_ids, parent_created_ns, 1),
};

static const struct state_desc lineage_desc = {
	.name = "lineage",
	.version = 1,
	.min_version = 1,
	.fields = lineage_fields,
	.nfields = STATE_NFIELDS(lineage_fields),
	.validate = lineage_validate,
};

void snap_chain_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int snap_lineage_encode(const struct snap_lineage *l, uint8_t **data,
			size_t *len)
{
	struct lineage_ids ids = {
		.vm_id_hi = l->vm_id[0],
		.vm_id_lo = l->vm_id[1],
		.depth = l->depth,
		.parent_identity = l->parent_identity,
		.parent_created_ns = l->parent_created_ns,
	};
	struct state_buf b = { 0 };
	int ret;

	ret = state_buf_put_table(&b, LINEAGE_SEC_IDS, &lineage_desc, &ids);
	if (!ret && l->depth)
		ret = state_buf_put(&b, LINEAGE_SEC_PARENT_PATH, 1,
				    l->parent_path, strlen(l->parent_path));
	if (ret) {
		state_buf_free(&b);
		return ret;
	}
	*data = b.data;
	*len = b.len;
	return 0;
}

int snap_lineage_decode(const uint8_t *data, size_t len, struct snap_lineage *l)
{
	struct state_cursor c = { .data = data, .len = len };
	struct lineage_ids ids = { 0 };
	struct state_section s;
	bool have_ids = false, have_path = false;
	int ret;

	memset(l, 0, sizeof(*l));
	while ((ret = state_cursor_next(&c, &s)) == 1) {
		if (s.tag == LINEAGE_SEC_IDS && !have_ids) {
			if (state_section_decode(&lineage_desc, &s, &ids))
				return -EINVAL;
			have_ids = true;
		} else if (s.tag == LINEAGE_SEC_PARENT_PATH && !have_path) {
			/* An absolute path, no NUL inside. */
			if (s.len == 0 || s.len > SNAP_LINEAGE_PATH_MAX ||
			    memchr(s.payload, '\0', s.len) ||
			    ((const char *)s.payload)[0] != '/')
				return -EINVAL;
			memcpy(l->parent_path, s.payload, s.len);
			l->parent_path[s.len] = '\0';
			have_path = true;
		} else {
			return -EINVAL;
		}
	}
	if (ret < 0 || !have_ids || have_path != (ids.depth > 0))
		return -EINVAL;
	l->vm_id[0] = ids.vm_id_hi;
	l->vm_id[1] = ids.vm_id_lo;
	l->depth = ids.depth;
	l->parent_identity = ids.parent_identity;
	l->parent_created_ns = ids.parent_created_ns;
	return 0;
}

unsigned snap_chain_regions(uint64_t mem_size, gpa_t gpa[], uint64_t size[])
{
	uint64_t low =
	    mem_size < GUEST_MEM_LOW_LIMIT ? mem_size : GUEST_MEM_LOW_LIMIT;

	gpa[0] = 0;
	size[0] = low;
	if (mem_size == low)
		return 1;
	gpa[1] = GUEST_MEM_HIGH_BASE;
	size[1] = mem_size - low;
	return 2;
}

/* A path for a message: escaped, bounded. */
static const char *q(char *buf, size_t len, const char *path)
{
	return text_escape(buf, len, path, strlen(path));
}

/* Reads the LINEAGE record that follows CONFIG, if any, from @r (which
 * must be at its first record). *@found is false for a file without. */
static int lineage_from_reader(struct snap_reader *r, struct snap_lineage *lin,
			       bool *found, struct snap_record *next,
			       bool *have_next, char *err, size_t errlen)
{
	struct snap_record rec;
	void *data = NULL;
	int ret;

	*found = false;
	*have_next = false;
	memset(lin, 0, sizeof(*lin));
	ret = snap_reader_next(r, &rec, err, errlen);
	if (ret <= 0 || rec.type != SNAP_REC_CONFIG) {
		if (ret == 0 || (ret > 0 && rec.type != SNAP_REC_CONFIG))
			snap_chain_err(err, errlen,
				       "snapshot: no CONFIG record");
		return ret < 0 ? ret : -EINVAL;
	}
	ret = snap_verify_record(r, &rec, err, errlen);
	if (ret)
		return ret;
	ret = snap_reader_next(r, &rec, err, errlen);
	if (ret < 0)
		return ret;
	if (ret == 0 || rec.type != SNAP_REC_LINEAGE) {
		*next = rec;
		*have_next = ret > 0;
		return 0;
	}
	ret = snap_read_payload(r, &rec, SNAP_LINEAGE_PAYLOAD_MAX, &data, err,
				errlen);
	if (ret)
		return ret;
	ret = rec.version == SNAP_LINEAGE_VERSION
		  ? snap_lineage_decode(data, rec.length, lin)
		  : -EINVAL;
	free(data);
	if (ret) {
		snap_chain_err(err, errlen,
			       "snapshot: malformed LINEAGE record");
		return -EINVAL;
	}
	*found = true;
	ret = snap_reader_next(r, next, err, errlen);
	if (ret < 0)
		return ret;
	*have_next = ret > 0;
	return 0;
}

int snap_lineage_read(const char *path, struct snap_lineage *lin,
		      uint64_t *identity, char *err, size_t errlen)
{
	struct snap_reader *r = snap_reader_open(path, err, errlen);
	struct snap_record next;
	bool found, have_next;
	int ret;

	if (!r)
		return -EINVAL;
	ret = snap_file_identity(snap_reader_fd(r), 0, identity);
	if (ret)
		snap_chain_err(err, errlen, "snapshot: %s",
			       ret == -ENODATA ? "truncated" : strerror(-ret));
	else
		ret = lineage_from_reader(r, lin, &found, &next, &have_next,
					  err, errlen);
	snap_reader_close(r);
	return ret;
}

/* Walks the rest of layer @l's records, reading its MEMORY records'
 * chunk tables for the regions of a VM of @mem_size and checking every
 * other record's checksum. Ends at END, so a truncated layer is
 * refused. */
static int layer_read_tables(struct snap_chain_layer *l,
			     struct snap_record *first, bool have_first,
			     uint64_t mem_size, char *err, size_t errlen)
{
	gpa_t gpa[GUEST_MEM_MAX_REGIONS];
	uint64_t size[GUEST_MEM_MAX_REGIONS];
	unsigned nreg = snap_chain_regions(mem_size, gpa, size);
	struct snap_record rec = *first;
	int ret = have_first ? 1 : 0;

	if (!have_first) {
		snap_chain_err(err, errlen,
			       "snapshot: truncated: no END record");
		return -EINVAL;
	}
	snap_reader_set_layer(l->r, l->lin.depth > 0);
	do {
		/* Nothing but memory is used from a parent; its other records
		 * are checked all the same, so that a damaged layer is
		 * refused as one, whatever part of it is damaged. */
		if (rec.type != SNAP_REC_MEMORY) {
			ret = snap_verify_record(l->r, &rec, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		if (l->ntables == nreg || rec.version != SNAP_MEMORY_VERSION) {
			snap_chain_err(
			    err, errlen,
			    "snapshot: memory records do not match the "
			    "VM's %u regions",
			    nreg);
			return -EINVAL;
		}
		ret = snap_read_chunk_table(
		    l->r, &rec, gpa[l->ntables], size[l->ntables],
		    &l->tables[l->ntables], err, errlen);
		if (ret)
			return ret;
		l->ntables++;
	} while ((ret = snap_reader_next(l->r, &rec, err, errlen)) == 1);
	if (ret < 0)
		return ret;
	if (l->ntables != nreg) {
		snap_chain_err(err, errlen,
			       "snapshot: %u memory records, not %u",
			       l->ntables, nreg);
		return -EINVAL;
	}
	return 0;
}

/* Why the file at a parent's path is not the parent: another VM's, a
 * layer of this VM that is not the one (the chain's files were moved or
 * swapped), or the parent itself changed since. */
static void layer_mismatch(const struct snap_chain_layer *l,
			   const struct snap_lineage *child, bool found,
			   char *err, size_t errlen)
{
	char a[256];

	q(a, sizeof(a), l->path);
	if (found && (l->lin.vm_id[0] != child->vm_id[0] ||
		      l->lin.vm_id[1] != child->vm_id[1]))
		snap_chain_err(
		    err, errlen,
		    "parent layer %s is a snapshot of another VM (vm "
		    "%016" PRIx64 "%016" PRIx64 ", not %016" PRIx64
		    "%016" PRIx64 ")",
		    a, l->lin.vm_id[0], l->lin.vm_id[1], child->vm_id[0],
		    child->vm_id[1]);
	else if (found && l->lin.depth != child->depth - 1)
		snap_chain_err(
		    err, errlen,
		    "parent layer %s is layer %u of this VM's chain, not "
		    "layer %u: the chain's files were moved or swapped",
		    a, l->lin.depth, child->depth - 1);
	else if (!found)
		snap_chain_err(
		    err, errlen,
		    "parent layer %s is not a snapshot of this VM (it has "
		    "no lineage)",
		    a);
	else
		snap_chain_err(
		    err, errlen,
		    "parent layer %s has changed since its child was "
		    "taken from it (its identity differs from the one "
		    "the child recorded)",
		    a);
}

int snap_chain_open(struct snap_chain *ch, const char *top_path, int top_fd,
		    const struct snap_lineage *top, uint64_t mem_size,
		    char *err, size_t errlen)
{
	const struct snap_lineage *child = top;
	char msg[512], a[256];
	int ret = 0;

	memset(ch, 0, sizeof(*ch));
	ch->fds[0] = top_fd;
	ch->names[0] = top_path;
	if (top->depth > SNAP_CHAIN_MAX_DEPTH) {
		snap_chain_err(
		    err, errlen,
		    "snapshot: a chain of %u layers is deeper than %d",
		    top->depth, SNAP_CHAIN_MAX_DEPTH);
		return -EINVAL;
	}
	while (child->depth > 0) {
		struct snap_chain_layer *l = &ch->layers[ch->n];
		struct snap_record first;
		bool found, have_first;
		uint64_t id;

		l->path = strdup(child->parent_path);
		if (!l->path)
			return -ENOMEM;
		ch->n++;
		q(a, sizeof(a), l->path);
		l->r = snap_reader_open(l->path, msg, sizeof(msg));
		if (!l->r) {
			snap_chain_err(err, errlen, "parent layer %s: %s", a,
				       msg);
			ret = -ENOENT;
			goto fail;
		}
		ret = snap_file_identity(snap_reader_fd(l->r), 0, &id);
		if (ret) {
			snap_chain_err(err, errlen, "parent layer %s: %s", a,
				       ret == -ENODATA ? "truncated"
						       : strerror(-ret));
			goto fail;
		}
		ret = lineage_from_reader(l->r, &l->lin, &found, &first,
					  &have_first, msg, sizeof(msg));
		if (ret) {
			snap_chain_err(err, errlen, "parent layer %s: %s", a,
				       msg);
			goto fail;
		}
		if (id != child->parent_identity || !found ||
		    l->lin.vm_id[0] != child->vm_id[0] ||
		    l->lin.vm_id[1] != child->vm_id[1] ||
		    l->lin.depth != child->depth - 1) {
			layer_mismatch(l, child, found, err, errlen);
			ret = -ESTALE;
			goto fail;
		}
		if (snap_reader_header(l->r)->page_size !=
		    (uint32_t)sysconf(_SC_PAGESIZE)) {
			snap_chain_err(err, errlen,
				       "parent layer %s: page size differs", a);
			ret = -EINVAL;
			goto fail;
		}
		ret = layer_read_tables(l, &first, have_first, mem_size, msg,
					sizeof(msg));
		if (ret) {
			snap_chain_err(err, errlen, "parent layer %s: %s", a,
				       msg);
			goto fail;
		}
		ch->fds[ch->n] = snap_reader_fd(l->r);
		ch->names[ch->n] = l->path;
		child = &l->lin;
	}
	return 0;
fail:
	snap_chain_close(ch);
	return ret;
}

void snap_chain_close(struct snap_chain *ch)
{
	for (unsigned i = 0; i < ch->n; i++) {
		struct snap_chain_layer *l = &ch->layers[i];

		for (unsigned t = 0; t < l->ntables; t++)
			snap_chunk_table_free(&l->tables[t]);
		if (l->r)
			snap_reader_close(l->r);
		free(l->path);
	}
	memset(ch, 0, sizeof(*ch));
}

int snap_chain_merge(struct snap_chain *ch, unsigned region,
		     struct snap_chunk_table *top, struct snap_chunk_table *out,
		     char *err, size_t errlen)
{
	*out = *top;
	top->chunks = NULL;
	snap_chunk_table_free(top);
	out->fds = ch->fds;
	out->names = ch->names;
	out->stored_chunks = 0;
	for (unsigned k = 0; k < ch->n; k++) {
		const struct snap_chunk_table *t =
		    &ch->layers[k].tables[region];
		char a[256];

		if (region >= ch->layers[k].ntables || t->gpa != out->gpa ||
		    t->size != out->size || t->chunk_size != out->chunk_size ||
		    t->block_size != out->block_size) {
			snap_chain_err(err, errlen,
				       "snapshot: parent layer %s cuts memory "
				       "otherwise than its child",
				       q(a, sizeof(a), ch->layers[k].path));
			return -EINVAL;
		}
	}
	for (uint64_t c = 0; c < out->nchunks; c++) {
		struct snap_chunk *e = &out->chunks[c];
		unsigned k = 0;

		e->layer = 0;
		while (e->flags & SNAP_CHUNK_PARENT) {
			if (k == ch->n) {
				snap_chain_err(
				    err, errlen,
				    "snapshot: memory chunk %" PRIu64
				    " is held by no layer of the chain",
				    c);
				return -EINVAL;
			}
			*e = ch->layers[k].tables[region].chunks[c];
			e->layer = (uint8_t)(++k);
		}
		if (!(e->flags & SNAP_CHUNK_ZERO))
			out->stored_chunks++;
	}
	return 0;
}
