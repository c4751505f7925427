/* Resume-or-boot for `stasis run --resume-from`: what counts as a snapshot
 * waiting at PATH, and setting a restored one aside. */
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

#include <cmocka.h>

#include "snapshot/snapshot.h"

struct dir {
	char path[64];
	char a[128]; /* DIR/vm.snap */
	char b[160]; /* DIR/vm.snap.resumed */
};

static int setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	snprintf(d->path, sizeof(d->path), "/tmp/stasis-resume-XXXXXX");
	if (!mkdtemp(d->path))
		return -1;
	snprintf(d->a, sizeof(d->a), "%s/vm.snap", d->path);
	snprintf(d->b, sizeof(d->b), "%s/vm.snap.resumed", d->path);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dir *d = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
	if (system(cmd))
		return -1;
	free(d);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_find(void **state)
{
	struct dir *d = *state;
	char err[256] = "", sub[192];

	/* Nothing there: boot. */
	assert_int_equal(snapshot_find_resume(d->a, err, sizeof(err)), 0);
	/* Anything there is for restore to judge, even an empty file or a
	 * dangling symlink: never silently booted over. */
	write_file(d->a, "");
	assert_int_equal(snapshot_find_resume(d->a, err, sizeof(err)), 1);
	unlink(d->a);
	assert_int_equal(symlink("/nonexistent/x.snap", d->a), 0);
	assert_int_equal(snapshot_find_resume(d->a, err, sizeof(err)), 1);
	unlink(d->a);
	/* Cannot tell (a path through a regular file): an error, not a
	 * boot. */
	write_file(d->a, "x");
	snprintf(sub, sizeof(sub), "%s/inside", d->a);
	assert_int_equal(snapshot_find_resume(sub, err, sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, "cannot look at"));
}

static void test_mark_resumed(void **state)
{
	struct dir *d = *state;
	char err[256] = "", buf[32];

	/* A restored file moves aside; the next resume would boot. */
	write_file(d->a, "first");
	assert_int_equal(snapshot_mark_resumed(d->a, err, sizeof(err)), 0);
	assert_int_equal(access(d->a, F_OK), -1);
	read_file(d->b, buf, sizeof(buf));
	assert_string_equal(buf, "first");
	assert_int_equal(snapshot_find_resume(d->a, err, sizeof(err)), 0);

	/* The next save's file replaces the older .resumed one. */
	write_file(d->a, "second");
	assert_int_equal(snapshot_mark_resumed(d->a, err, sizeof(err)), 0);
	read_file(d->b, buf, sizeof(buf));
	assert_string_equal(buf, "second");

	/* Nothing to rename: an error naming both paths. */
	assert_int_equal(snapshot_mark_resumed(d->a, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "cannot rename"));
	assert_non_null(strstr(err, ".resumed"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_find, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mark_resumed, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
