/* Unit tests for --user: what privdrop_parse() accepts and refuses, and
 * that privdrop_apply() leaves a process that cannot become root again.
 * The drops run in forked children; they need root (skipped without). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/privdrop.h"

static void test_parse_numbers(void **state)
{
	struct run_user u;
	char err[256];

	(void)state;
	assert_int_equal(privdrop_parse("65534:65534", &u, err, sizeof(err)),
			 0);
	assert_true(u.set);
	assert_int_equal(u.uid, 65534);
	assert_int_equal(u.gid, 65534);
	/* Numbers only: no supplementary group is kept. */
	assert_int_equal(u.ngroups, 0);
	assert_int_equal(privdrop_parse("4000:4001", &u, err, sizeof(err)), 0);
	assert_int_equal(u.uid, 4000);
	assert_int_equal(u.gid, 4001);
	/* uid 65534 is "nobody" in the user database: its primary group. */
	assert_int_equal(privdrop_parse("65534", &u, err, sizeof(err)), 0);
	assert_int_equal(u.gid, 65534);
	assert_int_equal(u.ngroups, 0);
}

static void test_parse_names(void **state)
{
	struct run_user u;
	char err[256];

	(void)state;
	assert_int_equal(privdrop_parse("nobody", &u, err, sizeof(err)), 0);
	assert_int_equal(u.uid, 65534);
	assert_int_equal(u.gid, 65534);
	/* A named user keeps its groups, its primary one among them. */
	assert_true(u.ngroups >= 1);
	assert_int_equal(u.groups[0], 65534);
	assert_int_equal(privdrop_parse("nobody:nogroup", &u, err, sizeof(err)),
			 0);
	assert_int_equal(u.gid, 65534);
	assert_int_equal(privdrop_parse("nobody:0", &u, err, sizeof(err)), 0);
	assert_int_equal(u.gid, 0);
}

static void expect_refused(const char *s, const char *why)
{
	struct run_user u = { .set = false };
	char err[256] = "";

	assert_int_equal(privdrop_parse(s, &u, err, sizeof(err)), -EINVAL);
	assert_false(u.set);
	assert_non_null(strstr(err, why));
	assert_null(strchr(err, '\n'));
}

static void test_parse_refused(void **state)
{
	(void)state;
	expect_refused("", "is not UID[:GID]");
	expect_refused(":5", "is not UID[:GID]");
	expect_refused("5:", "is not UID[:GID]");
	expect_refused("5:6:7", "is not UID[:GID]");
	expect_refused("0", "uid 0 is root");
	expect_refused("root", "uid 0 is root");
	expect_refused("0:65534", "uid 0 is root");
	expect_refused("4294967295:1", "out of range");
	expect_refused("99999999999:1", "out of range");
	expect_refused("5:4294967295", "out of range");
	expect_refused("no-such-user-here", "no user named");
	expect_refused("nobody:no-such-group-here", "no group named");
	/* A bare uid nobody has: which group is not known. */
	expect_refused("3999999", "give UID:GID");
}

static void test_check_and_unset(void **state)
{
	struct run_user none = { .set = false }, u = { .set = true };
	char err[256] = "";

	(void)state;
	assert_int_equal(privdrop_check(&none, err, sizeof(err)), 0);
	assert_int_equal(privdrop_apply(&none, err, sizeof(err)), 0);
	assert_int_equal(privdrop_check(&u, err, sizeof(err)),
			 geteuid() == 0 ? 0 : -EPERM);
}

/* Runs @fn in a child and returns its exit code (-1: killed). */
static int in_child(int (*fn)(void))
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn());
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int child_drop(void)
{
	struct run_user u;
	uid_t r, e, s;
	gid_t rg, eg, sg, groups[4];
	char err[256];

	if (privdrop_parse("65534:65534", &u, err, sizeof(err)) ||
	    privdrop_apply(&u, err, sizeof(err)))
		return 10;
	if (getresuid(&r, &e, &s) || r != 65534 || e != 65534 || s != 65534)
		return 11;
	if (getresgid(&rg, &eg, &sg) || rg != 65534 || eg != 65534 ||
	    sg != 65534)
		return 12;
	if (getgroups(4, groups) != 0)
		return 13;
	/* Nothing brings root back. */
	if (!setuid(0) || !seteuid(0) || !setresuid(0, 0, 0) || !setgid(0))
		return 14;
	/* A second drop (to anyone else) is refused too. */
	u.uid = 1;
	if (!privdrop_apply(&u, err, sizeof(err)))
		return 15;
	return 0;
}

static int child_named(void)
{
	struct run_user u;
	gid_t groups[PRIVDROP_MAX_GROUPS];
	char err[256];
	int n;

	if (privdrop_parse("nobody", &u, err, sizeof(err)) ||
	    privdrop_apply(&u, err, sizeof(err)))
		return 10;
	n = getgroups(PRIVDROP_MAX_GROUPS, groups);
	if (n != (int)u.ngroups || (n && groups[0] != u.groups[0]))
		return 11;
	return getuid() == 65534 ? 0 : 12;
}

static void *idle_thread(void *arg)
{
	pause();
	return arg;
}

/* A second thread exists: the drop is refused, nothing changed. */
static int child_threaded(void)
{
	struct run_user u;
	pthread_t t;
	char err[256] = "";

	if (pthread_create(&t, NULL, idle_thread, NULL))
		return 10;
	if (privdrop_parse("65534:65534", &u, err, sizeof(err)))
		return 11;
	if (privdrop_apply(&u, err, sizeof(err)) != -EBUSY)
		return 12;
	if (!strstr(err, "threads exist"))
		return 13;
	return getuid() == 0 ? 0 : 14;
}

static void test_apply(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(in_child(child_drop), 0);
	assert_int_equal(in_child(child_named), 0);
	assert_int_equal(in_child(child_threaded), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test(test_parse_names),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_check_and_unset),
		cmocka_unit_test(test_apply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
