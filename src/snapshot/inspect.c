/* `stasis inspect` and `stasis verify`: read a snapshot without a VM,
 * checking every checksum and decoding every record stasis knows. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/log.h"
#include "core/text.h"
#include "cpu/cpuid.h"
#include "cpu/vcpu_state.h"
#include "snapshot/chain.h"
#include "snapshot/inspect.h"
#include "snapshot/sign.h"
#include "snapshot/snapfile.h"
#include "snapshot/snapshot.h"

#define INSPECT_PAYLOAD_MAX (4u << 20)

/* What one record says, for the report. */
struct inspect_record {
	struct snap_record rec;
	bool checksum_ok;
	char summary[256];
	/* A SIGNATURE record: its key id, as 16 hex digits. */
	bool signed_;
	char key_id[17];
};

static void inspect_vcpu(const void *data, size_t len, char *out, size_t n)
{
	struct vcpu_state *st = calloc(1, sizeof(*st));
	char err[128];

	if (!st) {
		snprintf(out, n, "out of memory");
		return;
	}
	if (vcpu_state_decode(data, len, st, err, sizeof(err))) {
		snprintf(out, n, "malformed: %s", err);
	} else {
		const char *mode = (st->sregs.efer & (1u << 10)) ? "long"
				   : (st->sregs.cr0 & 1)	 ? "protected"
								 : "real";

		snprintf(out, n,
			 "rip=0x%llx rsp=0x%llx cr3=0x%llx cpl=%u mode=%s "
			 "msrs=%u xsave=%u mp_state=%u",
			 st->regs.rip, st->regs.rsp, st->sregs.cr3,
			 st->sregs.cs.selector & 3, mode, st->nmsrs,
			 st->xsave_size, st->mp_state.mp_state);
	}
	vcpu_state_free(st);
	free(st);
}

/* Reads and checks one record; fills @ir. Returns 0 when the record is
 * sound, -errno otherwise (with the reason in ir->summary). */
static int inspect_one(struct snap_reader *r, struct inspect_record *ir,
		       uint64_t *stored, uint64_t *raw, uint64_t *ram,
		       struct snap_lineage *lin)
{
	const struct snap_record *rec = &ir->rec;
	char err[256];
	void *data = NULL;
	int ret;

	ir->summary[0] = '\0';
	ir->signed_ = false;
	if (rec->type == SNAP_REC_MEMORY) {
		struct snap_memory_desc d;

		ret = snap_read_memory_desc(r, rec, &d, err, sizeof(err));
		if (!ret)
			ret = snap_verify_record(r, rec, err, sizeof(err));
		ir->checksum_ok = ret == 0;
		if (ret) {
			snprintf(ir->summary, sizeof(ir->summary), "%s", err);
			return ret;
		}
		*stored += d.stored_bytes;
		*ram += d.size;
		if (!d.chunk_size) { /* version 1: pages, never compressed */
			*raw += d.stored_bytes;
			snprintf(ir->summary, sizeof(ir->summary),
				 "gpa=0x%" PRIx64 " size=%" PRIu64
				 " MiB stored=%" PRIu64 " pages (%" PRIu64
				 " MiB)",
				 d.gpa, d.size >> 20, d.stored_pages,
				 d.stored_bytes >> 20);
			return 0;
		}
		*raw += d.raw_bytes;
		snprintf(
		    ir->summary, sizeof(ir->summary),
		    "gpa=0x%" PRIx64 " size=%" PRIu64
		    " MiB stored=%.2f MiB of %.2f MiB touched "
		    "(ratio %.2f) chunks=%" PRIu64 "/%" PRIu64 " of %" PRIu32
		    " KiB (%" PRIu64 " from the parent) codec: none %" PRIu64
		    " lz4 %" PRIu64 " zstd %" PRIu64,
		    d.gpa, d.size >> 20, (double)d.stored_bytes / (1 << 20),
		    (double)d.raw_bytes / (1 << 20),
		    d.stored_bytes
			? (double)d.raw_bytes / (double)d.stored_bytes
			: 1.0,
		    d.stored_chunks, d.nchunks, d.chunk_size >> 10,
		    d.parent_chunks, d.codec_chunks[SNAP_CODEC_RAW],
		    d.codec_chunks[SNAP_CODEC_LZ4],
		    d.codec_chunks[SNAP_CODEC_ZSTD]);
		return 0;
	}
	ret = snap_read_payload(r, rec, INSPECT_PAYLOAD_MAX, &data, err,
				sizeof(err));
	ir->checksum_ok = ret == 0;
	if (ret) {
		snprintf(ir->summary, sizeof(ir->summary), "%s", err);
		return ret;
	}
	switch (rec->type) {
	case SNAP_REC_CONFIG:
		snprintf(ir->summary, sizeof(ir->summary), "%.*s",
			 (int)(rec->length < 200 ? rec->length : 200),
			 (const char *)data);
		break;
	case SNAP_REC_CPUID: {
		struct kvm_cpuid2 *c;

		if (cpuid_decode(data, rec->length, &c) == 0) {
			snprintf(ir->summary, sizeof(ir->summary), "%u entries",
				 c->nent);
			free(c);
		} else {
			snprintf(ir->summary, sizeof(ir->summary), "malformed");
			ret = -EINVAL;
		}
		break;
	}
	case SNAP_REC_VCPU:
		inspect_vcpu(data, rec->length, ir->summary,
			     sizeof(ir->summary));
		if (!strncmp(ir->summary, "malformed", 9))
			ret = -EINVAL;
		break;
	case SNAP_REC_SIGNATURE: {
		struct snap_signature sig;

		if (snap_signature_decode(data, rec->length, &sig) ||
		    sig.algorithm != SNAP_SIG_HMAC_SHA256) {
			snprintf(ir->summary, sizeof(ir->summary),
				 "malformed or unknown algorithm");
			ret = -EINVAL;
			break;
		}
		ir->signed_ = true;
		snap_key_id_format(sig.key_id, ir->key_id);
		snprintf(ir->summary, sizeof(ir->summary),
			 "HMAC-SHA256, key id %s", ir->key_id);
		break;
	}
	case SNAP_REC_LINEAGE:
		if (rec->version != SNAP_LINEAGE_VERSION ||
		    snap_lineage_decode(data, rec->length, lin)) {
			snprintf(ir->summary, sizeof(ir->summary), "malformed");
			ret = -EINVAL;
			break;
		}
		if (lin->depth)
			snprintf(ir->summary, sizeof(ir->summary),
				 "vm %016" PRIx64 "%016" PRIx64
				 ", layer %u over %.160s (identity %016" PRIx64
				 ")",
				 lin->vm_id[0], lin->vm_id[1], lin->depth,
				 lin->parent_path, lin->parent_identity);
		else
			snprintf(ir->summary, sizeof(ir->summary),
				 "vm %016" PRIx64 "%016" PRIx64
				 ", full snapshot",
				 lin->vm_id[0], lin->vm_id[1]);
		/* Its memory records may leave chunks to the parent. */
		snap_reader_set_layer(r, lin->depth > 0);
		break;
	case SNAP_REC_DEVICE:
		/* The first section is the device's name. */
		if (rec->length >= 8) {
			const uint8_t *p = data;
			uint32_t n = p[4] | p[5] << 8 | (uint32_t)p[6] << 16;

			if (n <= rec->length - 8 && n < 32)
				snprintf(ir->summary, sizeof(ir->summary),
					 "%.*s", (int)n, (const char *)p + 8);
		}
		break;
	default:
		break;
	}
	free(data);
	/* The summary quotes the file: printed and put in JSON escaped. */
	text_escape_inplace(ir->summary, sizeof(ir->summary));
	return ret;
}

static int inspect_file(const char *path, bool as_json, bool verify_only,
			const struct snap_key *key, bool chain);

/* A layer's chain: every ancestor opened and checked as a restore does
 * (where each is, its identity, VM and depth, its tables), then listed
 * with what it holds, or, verifying, each checked whole. Returns the
 * count of problems. */
static unsigned inspect_chain(const char *path, const struct snap_lineage *lin,
			      uint64_t ram, bool as_json, bool verify_only,
			      struct json_object *root)
{
	struct snap_chain *ch = calloc(1, sizeof(*ch));
	struct json_object *arr = NULL;
	unsigned bad = 0;
	char err[512];

	if (!ch) {
		log_error("%s: out of memory", path);
		return 1;
	}
	if (snap_chain_open(ch, path, -1, lin, ram, err, sizeof(err))) {
		if (as_json)
			json_object_object_add(root, "chain_error",
					       json_object_new_string(err));
		else
			log_error("%s: %s", path, err);
		free(ch);
		return 1;
	}
	if (as_json)
		arr = json_object_new_array();
	else if (!verify_only)
		printf("  chain: %u layer%s under this one, all present and "
		       "unchanged\n",
		       ch->n, ch->n == 1 ? "" : "s");
	for (unsigned k = 0; k < ch->n; k++) {
		const struct snap_chain_layer *l = &ch->layers[k];
		uint64_t stored = 0, parent = 0, bytes = 0;
		char q[256];

		for (unsigned t = 0; t < l->ntables; t++) {
			stored += l->tables[t].stored_chunks;
			bytes += l->tables[t].data_bytes;
			for (uint64_t c = 0; c < l->tables[t].nchunks; c++)
				parent += !!(l->tables[t].chunks[c].flags &
					     SNAP_CHUNK_PARENT);
		}
		text_escape(q, sizeof(q), l->path, strlen(l->path));
		if (as_json) {
			struct json_object *o = json_object_new_object();

			json_object_object_add(o, "path",
					       json_object_new_string(l->path));
			json_object_object_add(
			    o, "depth", json_object_new_int((int)l->lin.depth));
			json_object_object_add(
			    o, "stored_chunks",
			    json_object_new_int64((int64_t)stored));
			json_object_object_add(
			    o, "parent_chunks",
			    json_object_new_int64((int64_t)parent));
			json_object_object_add(
			    o, "stored_bytes",
			    json_object_new_int64((int64_t)bytes));
			json_object_array_add(arr, o);
		} else if (!verify_only) {
			printf("    layer %u %s: %" PRIu64
			       " chunks stored (%.2f MiB), %" PRIu64
			       " from its parent\n",
			       l->lin.depth, q, stored,
			       (double)bytes / (1 << 20), parent);
		}
		/* Each file whole: its chunks and records, once. */
		if (verify_only &&
		    inspect_file(l->path, false, true, NULL, false))
			bad++;
	}
	if (as_json)
		json_object_object_add(root, "chain", arr);
	snap_chain_close(ch);
	free(ch);
	return bad;
}

int snapshot_inspect(const char *path, bool as_json, bool verify_only,
		     const struct snap_key *key)
{
	return inspect_file(path, as_json, verify_only, key, true);
}

static int inspect_file(const char *path, bool as_json, bool verify_only,
			const struct snap_key *key, bool chain)
{
	struct snap_lineage lin = { 0 };
	struct json_object *root = NULL, *records = NULL;
	const struct snap_header *hdr;
	struct snap_reader *r;
	struct inspect_record ir;
	uint64_t stored = 0, raw = 0, ram = 0;
	unsigned n = 0, bad = 0;
	char key_id[17] = "";
	int last_rank = 0;
	char err[256];
	int ret;

	r = snap_reader_open(path, err, sizeof(err));
	if (!r) {
		log_error("%s: %s", path, err);
		return verify_only ? 1 : 2;
	}
	hdr = snap_reader_header(r);
	if (as_json) {
		root = json_object_new_object();
		records = json_object_new_array();
		json_object_object_add(root, "path",
				       json_object_new_string(path));
		json_object_object_add(
		    root, "format_version",
		    json_object_new_int((int)hdr->format_version));
		json_object_object_add(
		    root, "stasis_version",
		    json_object_new_string(hdr->stasis_version));
		json_object_object_add(
		    root, "page_size",
		    json_object_new_int((int)hdr->page_size));
		json_object_object_add(root, "cpu_vendor",
				       json_object_new_string(hdr->cpu_vendor));
		json_object_object_add(
		    root, "created_unix_ns",
		    json_object_new_int64((int64_t)hdr->created_unix_ns));
	} else if (!verify_only) {
		printf("snapshot %s\n  format %u, written by stasis %s, page "
		       "size %u, CPU %s\n",
		       path, hdr->format_version, hdr->stasis_version,
		       hdr->page_size, hdr->cpu_vendor);
	}

	while ((ret = snap_reader_next(r, &ir.rec, err, sizeof(err))) == 1) {
		int rank = snapshot_record_rank(ir.rec.type);
		int rr = inspect_one(r, &ir, &stored, &raw, &ram, &lin);

		/* The same order rule restore enforces. */
		if (!rr && rank >= 0 && rank < last_rank) {
			snprintf(ir.summary, sizeof(ir.summary),
				 "record out of order");
			rr = -EINVAL;
		}
		if (rank > last_rank)
			last_rank = rank;

		n++;
		if (rr)
			bad++;
		if (ir.signed_)
			memcpy(key_id, ir.key_id, sizeof(key_id));
		if (as_json) {
			struct json_object *o = json_object_new_object();

			json_object_object_add(
			    o, "type",
			    json_object_new_string(
				snap_record_type_name(ir.rec.type)));
			json_object_object_add(
			    o, "version", json_object_new_int(ir.rec.version));
			json_object_object_add(
			    o, "offset",
			    json_object_new_int64((int64_t)ir.rec.offset));
			json_object_object_add(
			    o, "size",
			    json_object_new_int64((int64_t)ir.rec.length));
			json_object_object_add(
			    o, "checksum_ok",
			    json_object_new_boolean(ir.checksum_ok));
			json_object_object_add(
			    o, "summary", json_object_new_string(ir.summary));
			json_object_array_add(records, o);
		} else if (!verify_only) {
			printf("  %-8s v%u %10" PRIu64 " bytes  %s  %s\n",
			       snap_record_type_name(ir.rec.type),
			       ir.rec.version, ir.rec.length,
			       ir.checksum_ok ? "ok " : "BAD", ir.summary);
		} else if (rr) {
			log_error("%s: %s", path, ir.summary);
		}
	}
	if (ret < 0) {
		bad++;
		if (!as_json)
			log_error("%s: %s", path, err);
	}
	if (chain && lin.depth && ret >= 0) {
		if (!as_json && !verify_only)
			printf("  layer %u of a chain of incremental "
			       "snapshots\n",
			       lin.depth);
		bad +=
		    inspect_chain(path, &lin, ram, as_json, verify_only, root);
	}
	/* With a key, the signature too: a file whose checksums are all
	 * sound may still not be the one the key holder wrote. */
	if (key && ret >= 0) {
		struct stat st;
		char why[256];

		if (snap_verify_signature(path, key, &st, why, sizeof(why))) {
			bad++;
			if (!as_json)
				log_error("%s: %s", path, why);
			else
				snprintf(err, sizeof(err), "%s", why);
			ret = -EKEYREJECTED;
		}
	}
	if (as_json) {
		json_object_object_add(root, "records", records);
		json_object_object_add(root, "memory_bytes",
				       json_object_new_int64((int64_t)ram));
		json_object_object_add(root, "stored_memory_bytes",
				       json_object_new_int64((int64_t)stored));
		json_object_object_add(root, "touched_memory_bytes",
				       json_object_new_int64((int64_t)raw));
		json_object_object_add(root, "ok",
				       json_object_new_boolean(bad == 0));
		json_object_object_add(root, "signed",
				       json_object_new_boolean(*key_id));
		if (*key_id)
			json_object_object_add(root, "key_id",
					       json_object_new_string(key_id));
		if (key)
			json_object_object_add(
			    root, "signature_ok",
			    json_object_new_boolean(ret != -EKEYREJECTED &&
						    bad == 0));
		if (ret < 0)
			json_object_object_add(root, "error",
					       json_object_new_string(err));
		printf("%s\n", json_object_to_json_string_ext(
				   root, JSON_C_TO_STRING_PRETTY |
					     JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(root);
	} else if (!verify_only) {
		printf("  memory: %" PRIu64 " MiB of RAM, %.2f MiB touched, "
		       "%.2f MiB stored (%.2f%% of RAM, compression ratio "
		       "%.2f)\n",
		       ram >> 20, (double)raw / (1 << 20),
		       (double)stored / (1 << 20),
		       ram ? 100.0 * (double)stored / (double)ram : 0.0,
		       stored ? (double)raw / (double)stored : 1.0);
		printf("  %u records, %s\n", n,
		       bad ? "PROBLEMS FOUND" : "all checksums ok");
		if (*key_id)
			printf("  signed: HMAC-SHA256, key id %s (%s)\n",
			       key_id,
			       !key  ? "not checked: give verify --key FILE"
			       : bad ? "NOT VALID"
				     : "valid");
		else
			printf("  not signed\n");
	} else if (!bad) {
		if (chain)
			printf("%s: ok (%u records%s%s%s%s)\n", path, n,
			       key ? ", signature valid, key id " : "",
			       key ? key_id : "",
			       !key && *key_id
				   ? ", signed, signature not checked"
				   : "",
			       lin.depth ? ", every layer of its chain" : "");
	}
	snap_reader_close(r);
	if (verify_only)
		return bad ? 1 : 0;
	return bad ? 1 : 0;
}
