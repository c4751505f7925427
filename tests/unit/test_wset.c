/* Working-set files (snapshot/wset.h): exact bytes, a round trip through
 * an atomic save, and each way a file can be damaged or another
 * snapshot's, refused with its own code and line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmocka.h>

#include "core/le.h"
#include "snapshot/wset.h"

#define ID 0x1122334455667788ull

/* 3 GiB + 2 MiB: the two regions of guest_mem_init, in 256 KiB chunks
 * (the second one's 8 chunks leave most of its one word unused). */
static const struct wset_region geo[2] = {
	{ .gpa = 0,
	  .size = 3ull << 30,
	  .chunk_size = 256 << 10,
	  .nchunks = 12288 },
	{ .gpa = 1ull << 32,
	  .size = 2 << 20,
	  .chunk_size = 256 << 10,
	  .nchunks = 8 },
};

static void make(struct wset *w)
{
	assert_int_equal(wset_alloc(w, geo, 2), 0);
	w->snapshot_id = ID;
	w->record_ms = 1000;
	w->regions[0].bits[0] = 0x5;
	w->regions[0].bits[191] = 1ull << 63;
	w->regions[1].bits[0] = 0x80;
}

static void encode(uint8_t **b, size_t *len)
{
	struct wset w;

	make(&w);
	assert_int_equal(wset_encode(&w, b, len), 0);
	wset_free(&w);
}

/* Re-seals @b after an edit, so that the check behind the checksum is
 * what refuses it. */
static void reseal(uint8_t *b, size_t len)
{
	put_le64(b + len - 8, XXH3_64bits(b, len - 8));
}

static int decode(const uint8_t *b, size_t len, char *err)
{
	struct wset w;
	int ret = wset_decode(b, len, geo, 2, ID, &w, err, 256);

	if (!ret)
		wset_free(&w);
	return ret;
}

static void test_layout(void **state)
{
	char err[256];
	struct wset w;
	uint8_t *b;
	size_t len;

	encode(&b, &len);
	/* Header, two region entries, 192 + 1 bitmap words, checksum. */
	assert_int_equal(len, 64 + 2 * 32 + 193 * 8 + 8);
	assert_memory_equal(b, "STASISWS", 8);
	assert_int_equal(get_le32(b + 8), 1);
	assert_int_equal(get_le32(b + 12), 64);
	assert_true(get_le64(b + 16) == ID);
	assert_int_equal(get_le32(b + 24), 2);
	assert_int_equal(get_le32(b + 28), 1000);
	assert_int_equal(get_le64(b + 32), 4);
	assert_true(get_le64(b + 96) == 1ull << 32);
	assert_int_equal(get_le32(b + 96 + 16), 256 << 10);
	assert_int_equal(get_le64(b + 96 + 24), 8);
	assert_int_equal(get_le64(b + 128), 0x5);
	assert_true(get_le64(b + 128 + 191 * 8) == 1ull << 63);
	assert_int_equal(get_le64(b + 128 + 192 * 8), 0x80);
	assert_true(get_le64(b + len - 8) == XXH3_64bits(b, len - 8));
	assert_int_equal(wset_decode(b, len, geo, 2, ID, &w, err, sizeof(err)),
			 0);
	assert_int_equal(wset_count(&w), 4);
	assert_int_equal(w.record_ms, 1000);
	assert_true(w.regions[0].bits[191] == 1ull << 63);
	wset_free(&w);
	free(b);
}

static void test_damaged(void **state)
{
	char err[256];
	uint8_t *b;
	size_t len;

	encode(&b, &len);
	/* A flipped bit anywhere: the checksum. */
	b[200] ^= 1;
	assert_int_equal(decode(b, len, err), -EBADMSG);
	assert_string_equal(err, "working-set file: checksum mismatch");
	b[200] ^= 1;
	/* Cut short, or empty. */
	assert_int_equal(decode(b, len - 8, err), -EBADMSG);
	assert_int_equal(decode(b, 40, err), -EBADMSG);
	assert_non_null(strstr(err, "truncated"));
	assert_int_equal(decode(b, 0, err), -EBADMSG);
	/* Sealed again but wrong inside: version, reserved bytes, a chunk
	 * past the end of a region, a count that is not the bits'. */
	put_le32(b + 8, 2);
	reseal(b, len);
	assert_int_equal(decode(b, len, err), -EBADMSG);
	put_le32(b + 8, 1);
	b[50] = 1;
	reseal(b, len);
	assert_int_equal(decode(b, len, err), -EBADMSG);
	b[50] = 0;
	put_le64(b + 128 + 192 * 8, 0x180);
	reseal(b, len);
	assert_int_equal(decode(b, len, err), -EBADMSG);
	assert_non_null(strstr(err, "past its end"));
	put_le64(b + 128 + 192 * 8, 0x80);
	put_le64(b + 32, 5);
	reseal(b, len);
	assert_int_equal(decode(b, len, err), -EBADMSG);
	put_le64(b + 32, 4);
	put_le32(b + 24, 3);
	reseal(b, len);
	assert_int_equal(decode(b, len, err), -EBADMSG);
	put_le32(b + 24, 2);
	reseal(b, len);
	assert_int_equal(decode(b, len, err), 0);
	free(b);
}

static void test_stale(void **state)
{
	struct wset_region other[2];
	char err[256];
	struct wset w;
	uint8_t *b;
	size_t len;

	encode(&b, &len);
	assert_int_equal(wset_decode(b, len, geo, 2, ID + 1, &w, err, 256),
			 -ESTALE);
	assert_string_equal(err,
			    "working-set file belongs to another snapshot");
	assert_int_equal(wset_decode(b, len, geo, 1, ID, &w, err, 256),
			 -ESTALE);
	memcpy(other, geo, sizeof(other));
	other[1].nchunks = 9;
	assert_int_equal(wset_decode(b, len, other, 2, ID, &w, err, 256),
			 -ESTALE);
	memcpy(other, geo, sizeof(other));
	other[0].chunk_size = 128 << 10;
	assert_int_equal(wset_decode(b, len, other, 2, ID, &w, err, 256),
			 -ESTALE);
	free(b);
}

static void test_identity(void **state)
{
	struct wset_identity a, b;

	wset_identity_init(&a, 2, 1000);
	wset_identity_add(&a, 0xabc, 4096);
	wset_identity_init(&b, 2, 1000);
	wset_identity_add(&b, 0xabc, 4096);
	assert_true(wset_identity_final(&a) == wset_identity_final(&b));
	wset_identity_init(&b, 2, 1000);
	wset_identity_add(&b, 0xabd, 4096);
	assert_true(wset_identity_final(&a) != wset_identity_final(&b));
	wset_identity_init(&b, 2, 1001);
	wset_identity_add(&b, 0xabc, 4096);
	assert_true(wset_identity_final(&a) != wset_identity_final(&b));
}

static void test_save_load(void **state)
{
	char dir[] = "/tmp/test_wset.XXXXXX", path[64], err[256];
	struct wset w, back;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap.wset", dir);
	assert_int_equal(wset_load(path, geo, 2, ID, &back, err, sizeof(err)),
			 -ENOENT);
	make(&w);
	assert_int_equal(wset_save(path, &w, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(wset_load(path, geo, 2, ID, &back, err, sizeof(err)),
			 0);
	assert_int_equal(wset_count(&back), 4);
	assert_memory_equal(back.regions[0].bits, w.regions[0].bits, 192 * 8);
	wset_free(&back);
	/* Replaced whole by the next save. */
	w.regions[1].bits[0] = 0;
	assert_int_equal(wset_save(path, &w, err, sizeof(err)), 0);
	assert_int_equal(wset_load(path, geo, 2, ID, &back, err, sizeof(err)),
			 0);
	assert_int_equal(wset_count(&back), 3);
	wset_free(&back);
	wset_free(&w);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0); /* no temporary file left */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_damaged),
		cmocka_unit_test(test_stale),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_save_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
