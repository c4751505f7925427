/* Incremental layers without KVM: the LINEAGE record's codec and what it
 * refuses, layers written with chunks left to the parent (refused by a
 * reader that does not read a layer), a chain's tables merged so that
 * each chunk comes from the nearest layer holding it, and file identity
 * changing with content. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot/chain.h"
#include "snapshot/snapfile.h"

static void test_lineage_round_trip(void **state)
{
	struct snap_lineage a = { .vm_id = { 0x1122, 0x3344 },
				  .depth = 3,
				  .parent_identity = 0xabcdef,
				  .parent_created_ns = 42 },
			    b;
	uint8_t *data;
	size_t len;

	strcpy(a.parent_path, "/var/tmp/p.snap");
	assert_int_equal(snap_lineage_encode(&a, &data, &len), 0);
	assert_int_equal(snap_lineage_decode(data, len, &b), 0);
	assert_memory_equal(&a, &b, offsetof(struct snap_lineage, parent_path));
	assert_string_equal(b.parent_path, "/var/tmp/p.snap");
	/* Every truncation is refused, never read past. */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(snap_lineage_decode(data, n, &b), -EINVAL);
	free(data);
}

static void test_lineage_refused(void **state)
{
	struct snap_lineage a = { .vm_id = { 1, 2 }, .depth = 1 }, b;
	uint8_t *data;
	size_t len;

	/* A layer needs an absolute parent path. */
	strcpy(a.parent_path, "relative.snap");
	assert_int_equal(snap_lineage_encode(&a, &data, &len), 0);
	assert_int_equal(snap_lineage_decode(data, len, &b), -EINVAL);
	free(data);
	/* Deeper than the bound. */
	strcpy(a.parent_path, "/p");
	a.depth = SNAP_CHAIN_MAX_DEPTH + 1;
	assert_int_equal(snap_lineage_encode(&a, &data, &len), 0);
	assert_int_equal(snap_lineage_decode(data, len, &b), -EINVAL);
	free(data);
	/* A full snapshot names no parent. */
	a.depth = 0;
	a.parent_identity = 5;
	assert_int_equal(snap_lineage_encode(&a, &data, &len), 0);
	assert_int_equal(snap_lineage_decode(data, len, &b), -EINVAL);
	free(data);
}

/* The longest parent path fits the payload bound every reader of the
 * record uses. */
static void test_lineage_longest_path(void **state)
{
	struct snap_lineage a = { .vm_id = { 7, 8 }, .depth = 1 }, b;
	uint8_t *data;
	size_t len;

	memset(a.parent_path, 'p', SNAP_LINEAGE_PATH_MAX);
	a.parent_path[0] = '/';
	a.parent_path[SNAP_LINEAGE_PATH_MAX] = '\0';
	assert_int_equal(snap_lineage_encode(&a, &data, &len), 0);
	assert_true(len <= SNAP_LINEAGE_PAYLOAD_MAX);
	assert_int_equal(snap_lineage_decode(data, len, &b), 0);
	assert_string_equal(b.parent_path, a.parent_path);
	free(data);
}

#define MEM (4u << 20) /* 16 chunks */

static char dir[] = "/tmp/stasis-chain-XXXXXX";

/* Writes a file of @mem with only the chunks in @sel (NULL: all). */
static void write_file(const char *name, const struct guest_mem *mem,
		       const uint64_t *sel)
{
	struct snap_header h = { .page_size = 4096 };
	const uint64_t *chunks[GUEST_MEM_MAX_REGIONS] = { sel };
	char path[256], err[256];
	struct snap_writer *w;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	strcpy(h.stasis_version, "test");
	w = snap_writer_open(path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_memory_layer(w, mem, sel ? chunks : NULL,
						 NULL, err, sizeof(err)),
			 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
}

static int read_table(const char *name, bool layer, struct snap_chunk_table *t,
		      struct snap_reader **out, char *err)
{
	char path[256];
	struct snap_record rec;
	struct snap_reader *r;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	r = snap_reader_open(path, err, 256);
	assert_non_null(r);
	snap_reader_set_layer(r, layer);
	while ((ret = snap_reader_next(r, &rec, err, 256)) == 1)
		if (rec.type == SNAP_REC_MEMORY)
			break;
	assert_int_equal(ret, 1);
	ret = snap_read_chunk_table(r, &rec, 0, MEM, t, err, 256);
	*out = r;
	return ret;
}

static void test_layers_merge(void **state)
{
	uint8_t *ram, *buf = malloc(256 << 10);
	struct snap_chunk_table base, top, merged;
	struct snap_reader *rb, *rt, *rx;
	struct snap_chain ch;
	struct guest_mem mem;
	uint64_t sel = (1u << 2) | (1u << 5), id1, id2;
	char err[256], path[256];
	int fd;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(guest_mem_init(&mem, MEM), 0);
	ram = mem.host;
	memset(ram + 2 * (256 << 10), 0xaa, 4096);
	memset(ram + 5 * (256 << 10), 0xbb, 256 << 10);
	memset(ram + 9 * (256 << 10), 0xcc, 8192);
	write_file("base.snap", &mem, NULL);
	/* Then chunks 2 and 5 change (5 to all zero), 9 does not. */
	memset(ram + 2 * (256 << 10), 0x11, 4096);
	memset(ram + 5 * (256 << 10), 0, 256 << 10);
	write_file("top.snap", &mem, &sel);

	/* Not read as a layer: the parent's chunks are refused. */
	assert_int_equal(read_table("top.snap", false, &top, &rx, err),
			 -EPROTO);
	assert_non_null(strstr(err, "held by a parent snapshot"));
	snap_reader_close(rx);

	assert_int_equal(read_table("base.snap", false, &base, &rb, err), 0);
	assert_int_equal(read_table("top.snap", true, &top, &rt, err), 0);
	assert_int_equal(top.stored_chunks, 1); /* chunk 2; 5 is zero now */
	assert_true(top.chunks[9].flags & SNAP_CHUNK_PARENT);
	assert_true(top.chunks[5].flags & SNAP_CHUNK_ZERO);

	memset(&ch, 0, sizeof(ch));
	ch.n = 1;
	ch.layers[0].r = rb;
	ch.layers[0].tables[0] = base;
	ch.layers[0].ntables = 1;
	ch.layers[0].path = strdup("base.snap");
	ch.fds[0] = snap_reader_fd(rt);
	ch.fds[1] = snap_reader_fd(rb);
	ch.names[0] = "top.snap";
	ch.names[1] = "base.snap";
	assert_int_equal(
	    snap_chain_merge(&ch, 0, &top, &merged, err, sizeof(err)), 0);
	assert_int_equal(merged.chunks[2].layer, 0);
	assert_int_equal(merged.chunks[9].layer, 1);
	assert_true(merged.chunks[5].flags & SNAP_CHUNK_ZERO);
	/* Each chunk reads as memory was at the top's instant. */
	assert_int_equal(
	    snap_read_chunk(&merged, 2, buf, true, err, sizeof(err)), 0);
	assert_memory_equal(buf, ram + 2 * (256 << 10), 256 << 10);
	assert_int_equal(
	    snap_read_chunk(&merged, 9, buf, true, err, sizeof(err)), 0);
	assert_memory_equal(buf, ram + 9 * (256 << 10), 256 << 10);
	snap_chunk_table_free(&merged);
	snap_chain_close(&ch); /* closes rb, frees base's table */
	snap_reader_close(rt);

	/* The identity follows the content. */
	snprintf(path, sizeof(path), "%s/top.snap", dir);
	fd = open(path, O_RDONLY);
	assert_int_equal(snap_file_identity(fd, 0, &id1), 0);
	close(fd);
	/* The same again: the same identity. Another byte: another. */
	write_file("top.snap", &mem, &sel);
	fd = open(path, O_RDONLY);
	assert_int_equal(snap_file_identity(fd, 0, &id2), 0);
	close(fd);
	assert_int_equal(id1, id2);
	ram[2 * (256 << 10) + 100] = 0x22;
	write_file("top.snap", &mem, &sel);
	fd = open(path, O_RDONLY);
	assert_int_equal(snap_file_identity(fd, 0, &id2), 0);
	close(fd);
	assert_int_not_equal(id1, id2);

	snprintf(path, sizeof(path), "%s/top.snap", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/base.snap", dir);
	unlink(path);
	rmdir(dir);
	free(buf);
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lineage_round_trip),
		cmocka_unit_test(test_lineage_refused),
		cmocka_unit_test(test_lineage_longest_path),
		cmocka_unit_test(test_layers_merge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
