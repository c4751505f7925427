/* Unit tests for the per-role seccomp filters: each role's filter lets
 * through what that role does and stops stasis with SIGSYS, naming the
 * role, on anything else. Each case runs in a forked child, since a
 * filter cannot be taken off again. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/seccomp.h"

/* What a child does once its filter is loaded; returns its exit code. */
typedef int (*child_fn)(void);

struct child_result {
	int status; /* from waitpid */
	char err[512]; /* what it wrote to stderr */
};

/* Forks; the child installs @role's filter in @mode and runs @fn. */
static void run_child(enum seccomp_role role, enum seccomp_mode mode,
		      child_fn fn, struct child_result *res)
{
	int pipefd[2];
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		seccomp_report_init();
		if (seccomp_install(role, mode))
			_exit(90);
		_exit(fn());
	}
	close(pipefd[1]);
	while ((n = read(pipefd[0], res->err + got,
			 sizeof(res->err) - 1 - (size_t)got)) > 0)
		got += n;
	res->err[got] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &res->status, 0), pid);
}

static int make_socketpair(void)
{
	int sv[2];

	return socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ? 10 : 0;
}

static int make_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	return fd >= 0 ? 0 : 10;
}

static int allowed_calls(void)
{
	struct timespec ts;

	/* What every thread does: its pid, the time, a write. */
	if (getpid() <= 0)
		return 11;
	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		return 12;
	if (write(STDERR_FILENO, "", 0) < 0)
		return 13;
	return 0;
}

static int tty_ioctl(void)
{
	struct termios t;

	/* fd 0 may be anything; only whether the call was let through
	 * matters. */
	(void)ioctl(STDIN_FILENO, TCGETS, &t);
	return 0;
}

static int kvm_run_ioctl(void)
{
	(void)ioctl(STDIN_FILENO, KVM_RUN, 0);
	return 0;
}

static void *thread_main(void *arg)
{
	return arg;
}

static int start_thread(void)
{
	pthread_t t;
	void *ret = NULL;

	if (pthread_create(&t, NULL, thread_main, (void *)0x5))
		return 20;
	pthread_join(t, &ret);
	return ret == (void *)0x5 ? 0 : 21;
}

static bool died_of_sigsys(const struct child_result *r)
{
	return WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGSYS;
}

static bool exited(const struct child_result *r, int code)
{
	return WIFEXITED(r->status) && WEXITSTATUS(r->status) == code;
}

/* Every role: allowed calls pass; socketpair() is on no list, so it stops
 * the process with SIGSYS and one line that names the role. */
static void test_every_role_refuses_socketpair(void **state)
{
	(void)state;
	for (int role = 0; role < SECCOMP_ROLE_COUNT; role++) {
		struct child_result r;
		char want[64];

		run_child((enum seccomp_role)role, SECCOMP_ON, allowed_calls,
			  &r);
		assert_true(exited(&r, 0));

		run_child((enum seccomp_role)role, SECCOMP_ON, make_socketpair,
			  &r);
		if (!died_of_sigsys(&r))
			fail_msg("role %s: status 0x%x, stderr '%s'",
				 seccomp_role_name((enum seccomp_role)role),
				 r.status, r.err);
		snprintf(want, sizeof(want),
			 "the %s thread made system call %d",
			 seccomp_role_name((enum seccomp_role)role),
			 (int)__NR_socketpair);
		if (!strstr(r.err, want))
			fail_msg("role %s: stderr '%s' lacks '%s'",
				 seccomp_role_name((enum seccomp_role)role),
				 r.err, want);
		/* One line. */
		assert_non_null(strchr(r.err, '\n'));
		assert_null(strchr(strchr(r.err, '\n') + 1, '\n'));
	}
}

/* ioctl numbers are checked: only main may set the terminal's mode, only
 * a vCPU may run KVM_RUN. */
static void test_ioctl_numbers(void **state)
{
	struct child_result r;

	(void)state;
	run_child(SECCOMP_ROLE_MAIN, SECCOMP_ON, tty_ioctl, &r);
	assert_true(exited(&r, 0));
	run_child(SECCOMP_ROLE_VCPU, SECCOMP_ON, tty_ioctl, &r);
	assert_true(died_of_sigsys(&r));
	assert_non_null(strstr(r.err, "the vcpu thread"));
	run_child(SECCOMP_ROLE_VCPU, SECCOMP_ON, kvm_run_ioctl, &r);
	assert_true(exited(&r, 0));
	run_child(SECCOMP_ROLE_MAIN, SECCOMP_ON, kvm_run_ioctl, &r);
	assert_true(died_of_sigsys(&r));
	run_child(SECCOMP_ROLE_WORKER, SECCOMP_ON, kvm_run_ioctl, &r);
	assert_true(died_of_sigsys(&r));
	run_child(SECCOMP_ROLE_API, SECCOMP_ON, kvm_run_ioctl, &r);
	assert_true(died_of_sigsys(&r));
}

/* The API role starts a thread per connection; a vCPU may not. */
static void test_threads(void **state)
{
	struct child_result r;

	(void)state;
	run_child(SECCOMP_ROLE_API, SECCOMP_ON, start_thread, &r);
	if (!exited(&r, 0))
		fail_msg("api thread: status 0x%x, stderr '%s'", r.status,
			 r.err);
	run_child(SECCOMP_ROLE_VCPU, SECCOMP_ON, start_thread, &r);
	assert_false(exited(&r, 0));
}

/* A new socket: only the API role, whose thread connects a migration to
 * its destination. */
static void test_only_api_makes_sockets(void **state)
{
	(void)state;
	for (int role = 0; role < SECCOMP_ROLE_COUNT; role++) {
		struct child_result r;

		run_child((enum seccomp_role)role, SECCOMP_ON, make_socket, &r);
		if (role == SECCOMP_ROLE_API ? !exited(&r, 0)
					     : !died_of_sigsys(&r))
			fail_msg("role %s: socket() gave status 0x%x",
				 seccomp_role_name((enum seccomp_role)role),
				 r.status);
	}
}

static void *stack_live_main(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)seccomp_install(SECCOMP_ROLE_LIVE, SECCOMP_ON);
}

/* What a live snapshot's fault thread does: load the live filter on top
 * of the api one it inherits. */
static int stack_live_filter(void)
{
	pthread_t t;
	void *ret = (void *)1;

	if (pthread_create(&t, NULL, stack_live_main, NULL))
		return 20;
	pthread_join(t, &ret);
	return ret ? 22 : 0;
}

static int prctl_get_dumpable(void)
{
	return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) < 0 ? 23 : 0;
}

/* prctl is filtered by its option: the api role may stack a filter (and
 * every role may name its thread), nothing else. */
static void test_prctl_options(void **state)
{
	struct child_result r;

	(void)state;
	run_child(SECCOMP_ROLE_API, SECCOMP_ON, stack_live_filter, &r);
	if (!exited(&r, 0))
		fail_msg("api stacking live: status 0x%x, stderr '%s'",
			 r.status, r.err);
	run_child(SECCOMP_ROLE_API, SECCOMP_ON, prctl_get_dumpable, &r);
	assert_true(died_of_sigsys(&r));
	run_child(SECCOMP_ROLE_VCPU, SECCOMP_ON, stack_live_filter, &r);
	assert_false(exited(&r, 0));
}

/* log: what would be refused is made (the kernel logs it); off: no
 * filter at all. */
static void test_log_and_off(void **state)
{
	struct child_result r;

	(void)state;
	run_child(SECCOMP_ROLE_VCPU, SECCOMP_LOG, make_socket, &r);
	assert_true(exited(&r, 0));
	run_child(SECCOMP_ROLE_VCPU, SECCOMP_OFF, make_socket, &r);
	assert_true(exited(&r, 0));
	run_child(SECCOMP_ROLE_VCPU, SECCOMP_LOG, tty_ioctl, &r);
	assert_true(exited(&r, 0));
}

static void test_mode_parse(void **state)
{
	enum seccomp_mode m;

	(void)state;
	assert_int_equal(seccomp_mode_parse("on", &m), 0);
	assert_int_equal(m, SECCOMP_ON);
	assert_int_equal(seccomp_mode_parse("log", &m), 0);
	assert_int_equal(m, SECCOMP_LOG);
	assert_int_equal(seccomp_mode_parse("off", &m), 0);
	assert_int_equal(m, SECCOMP_OFF);
	assert_int_equal(seccomp_mode_parse("ON", &m), -EINVAL);
	assert_int_equal(seccomp_mode_parse("", &m), -EINVAL);
	assert_string_equal(seccomp_mode_name(SECCOMP_LOG), "log");
	assert_string_equal(seccomp_role_name(SECCOMP_ROLE_UFFD), "uffd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_role_refuses_socketpair),
		cmocka_unit_test(test_only_api_makes_sockets),
		cmocka_unit_test(test_ioctl_numbers),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_prctl_options),
		cmocka_unit_test(test_log_and_off),
		cmocka_unit_test(test_mode_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
