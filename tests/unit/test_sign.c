/* Signed snapshots (src/snapshot/sign.c): key files, signing, and a check
 * that refuses a changed byte anywhere, a missing tag and a wrong key. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "memory/guest_mem.h"
#include "snapshot/sign.h"
#include "snapshot/snapfile.h"

struct ctx {
	char dir[64];
	char snap[128];
	char key[128];
	char key2[128];
};

static void write_file(const char *path, const void *buf, size_t len,
		       mode_t mode)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, mode);

	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static uint8_t *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size);
	assert_non_null(b);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	uint8_t k[32];

	assert_non_null(c);
	snprintf(c->dir, sizeof(c->dir), "/tmp/stasis-sign-XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->snap, sizeof(c->snap), "%s/vm.snap", c->dir);
	snprintf(c->key, sizeof(c->key), "%s/key", c->dir);
	snprintf(c->key2, sizeof(c->key2), "%s/key2", c->dir);
	for (int i = 0; i < 32; i++)
		k[i] = (uint8_t)(i * 7 + 1);
	write_file(c->key, k, sizeof(k), 0600);
	k[31] ^= 1;
	write_file(c->key2, k, sizeof(k), 0600);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	assert_int_equal(system(cmd), 0);
	free(c);
	return 0;
}

/* A small snapshot: CONFIG, a VCPU blob, one MEMORY record (two pages
 * stored), signed with @key when not NULL. */
static void write_snapshot(const char *path, const struct snap_key *key)
{
	struct snap_header h = { .page_size = 4096,
				 .stasis_version = "test",
				 .cpu_vendor = "TestVendor" };
	static const uint8_t vcpu[40] = { 1, 2, 3, 4, 5 };
	struct guest_mem m;
	struct snap_writer *w;
	char err[256];

	assert_int_equal(guest_mem_init(&m, 8 << 20), 0);
	memset(m.host, 0x5a, 4096);
	memset(m.host + 5 * 4096, 0xa5, 4096);
	w = snap_writer_open(path, &h, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(snap_write_record(w, SNAP_REC_CONFIG, 1, 0, "{}", 2,
					   err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_record(w, SNAP_REC_VCPU, 1, 0, vcpu,
					   sizeof(vcpu), err, sizeof(err)),
			 0);
	assert_int_equal(snap_write_memory(w, &m, NULL, err, sizeof(err)), 0);
	if (key)
		assert_int_equal(snap_sign(w, key, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
	guest_mem_destroy(&m);
}

static void test_key_files(void **state)
{
	struct ctx *c = *state;
	struct snap_key k, k2;
	char err[256], path[160], id[17];
	uint8_t bytes[40] = { 0 };

	assert_int_equal(snap_key_load(c->key, &k, err, sizeof(err)), 0);
	assert_int_equal(k.len, 32);
	assert_int_equal(snap_key_load(c->key2, &k2, err, sizeof(err)), 0);
	assert_memory_not_equal(k.id, k2.id, SNAP_KEY_ID_LEN);
	snap_key_id_format(k.id, id);
	assert_int_equal(strlen(id), 16);

	/* Too short, readable by others, writable by the group, missing, a
	 * directory: each refused, one line naming the file. */
	snprintf(path, sizeof(path), "%s/short", c->dir);
	write_file(path, bytes, 31, 0600);
	assert_int_equal(snap_key_load(path, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "31 bytes"));
	snprintf(path, sizeof(path), "%s/open", c->dir);
	write_file(path, bytes, 40, 0644);
	assert_int_equal(snap_key_load(path, &k, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "chmod 600"));
	write_file(path, bytes, 40, 0620);
	assert_int_equal(snap_key_load(path, &k, err, sizeof(err)), -EPERM);
	write_file(path, bytes, 40, 0400);
	assert_int_equal(snap_key_load(path, &k, err, sizeof(err)), 0);
	assert_int_equal(k.len, 40);
	snprintf(path, sizeof(path), "%s/none", c->dir);
	assert_int_equal(snap_key_load(path, &k, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
	assert_int_equal(snap_key_load(c->dir, &k, err, sizeof(err)), -EINVAL);
	assert_null(strchr(err, '\n'));
}

static void test_sign_and_verify(void **state)
{
	struct ctx *c = *state;
	struct snap_key k, k2;
	struct stat st;
	char err[256];

	assert_int_equal(snap_key_load(c->key, &k, err, sizeof(err)), 0);
	assert_int_equal(snap_key_load(c->key2, &k2, err, sizeof(err)), 0);
	write_snapshot(c->snap, &k);
	assert_int_equal(
	    snap_verify_signature(c->snap, &k, &st, err, sizeof(err)), 0);
	/* A wrong key: its id differs, said so. */
	assert_int_equal(
	    snap_verify_signature(c->snap, &k2, &st, err, sizeof(err)),
	    -EKEYREJECTED);
	assert_non_null(strstr(err, "key id"));
	/* Another key with the same id (an id is a hint, not the check):
	 * the tag does not match. */
	memcpy(k2.id, k.id, SNAP_KEY_ID_LEN);
	assert_int_equal(
	    snap_verify_signature(c->snap, &k2, &st, err, sizeof(err)),
	    -EKEYREJECTED);
	assert_non_null(strstr(err, "does not match"));
	/* A file without the tag. */
	write_snapshot(c->snap, NULL);
	assert_int_equal(
	    snap_verify_signature(c->snap, &k, &st, err, sizeof(err)), -ENOKEY);
	assert_non_null(strstr(err, "not signed"));
	/* Readers that do not check signatures see a valid file either way:
	 * the record is optional and well framed. */
	write_snapshot(c->snap, &k);
	{
		struct snap_reader *r =
		    snap_reader_open(c->snap, err, sizeof(err));
		struct snap_record rec;
		unsigned sig = 0;
		int ret;

		assert_non_null(r);
		while ((ret = snap_reader_next(r, &rec, err, sizeof(err))) ==
		       1) {
			assert_int_equal(
			    snap_verify_record(r, &rec, err, sizeof(err)), 0);
			sig += rec.type == SNAP_REC_SIGNATURE;
		}
		assert_int_equal(ret, 0);
		assert_int_equal(sig, 1);
		snap_reader_close(r);
	}
}

/* Every single byte of a signed file changed (the header, each record
 * header and checksum, each payload, the padding, the SIGNATURE record
 * and END): each is refused, whichever check catches it. */
static void test_every_byte(void **state)
{
	struct ctx *c = *state;
	struct snap_key k;
	struct stat st;
	char err[256], bad[160];
	uint8_t *good;
	size_t len;

	assert_int_equal(snap_key_load(c->key, &k, err, sizeof(err)), 0);
	write_snapshot(c->snap, &k);
	good = read_file(c->snap, &len);
	snprintf(bad, sizeof(bad), "%s/bad.snap", c->dir);
	/* Page data is the bulk: every byte of the rest, every 61st byte
	 * of the pages. One byte changed in place, then put back. */
	write_file(bad, good, len, 0600);
	{
		int fd = open(bad, O_WRONLY);

		assert_true(fd >= 0);
		for (size_t i = 0; i < len; i++) {
			bool page = i >= 4096 && i + 4096 < len - 200;
			uint8_t x = good[i] ^ 0x20;

			if (page && i % 61)
				continue;
			assert_int_equal(pwrite(fd, &x, 1, (off_t)i), 1);
			if (!snap_verify_signature(bad, &k, &st, err,
						   sizeof(err)))
				fail_msg("byte %zu of %zu changed, still "
					 "accepted",
					 i, len);
			assert_null(strchr(err, '\n'));
			assert_int_equal(pwrite(fd, good + i, 1, (off_t)i), 1);
		}
		close(fd);
	}
	assert_int_equal(snap_verify_signature(bad, &k, &st, err, sizeof(err)),
			 0);
	/* Cut short, or with a byte appended. */
	write_file(bad, good, len - 1, 0600);
	assert_int_not_equal(
	    snap_verify_signature(bad, &k, &st, err, sizeof(err)), 0);
	write_file(bad, good, len, 0600);
	{
		int fd = open(bad, O_WRONLY | O_APPEND);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, "x", 1), 1);
		close(fd);
	}
	assert_int_not_equal(
	    snap_verify_signature(bad, &k, &st, err, sizeof(err)), 0);
	free(good);
}

/* snap_same_file: a rewrite, even of the same bytes, is another state. */
static void test_same_file(void **state)
{
	struct ctx *c = *state;
	struct stat a, b;
	struct snap_key k;
	char err[256];

	assert_int_equal(snap_key_load(c->key, &k, err, sizeof(err)), 0);
	write_snapshot(c->snap, &k);
	assert_int_equal(stat(c->snap, &a), 0);
	assert_int_equal(stat(c->snap, &b), 0);
	assert_true(snap_same_file(&a, &b));
	write_snapshot(c->snap, &k);
	assert_int_equal(stat(c->snap, &b), 0);
	assert_false(snap_same_file(&a, &b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_key_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sign_and_verify, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_every_byte, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_same_file, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
