/* Guest output to the host never blocks: a full pipe or socket gives a
 * short count or -EAGAIN, stdout's own file description keeps its
 * blocking mode, and a reader that left gives -EPIPE. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/host_output.h"

/* Writes 1 KiB pieces until the reader is full; returns the total. */
static size_t fill(struct host_output *out)
{
	static char junk[1024];
	size_t total = 0;
	ssize_t r;

	for (;;) {
		struct iovec iov = { junk, sizeof(junk) };

		r = host_output_write(out, &iov, 1);
		if (r == -EAGAIN)
			return total;
		assert_true(r > 0);
		total += (size_t)r;
		assert_true(total < (64u << 20));
	}
}

static void test_pipe_reopened_nonblocking(void **state)
{
	struct host_output out;
	char buf[8192];
	int p[2];

	assert_int_equal(pipe(p), 0);
	assert_true(fcntl(p[0], F_SETPIPE_SZ, 4096) >= 4096);
	assert_int_equal(host_output_open(&out, p[1]), 0);
	assert_int_not_equal(out.fd, p[1]);
	assert_false(out.sock);
	/* The caller's fd (stdout's description) stays blocking. */
	assert_false(fcntl(p[1], F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(out.fd, F_GETFL) & O_NONBLOCK);
	assert_true(fill(&out) >= 4096);
	/* Room for a part: a short count, then -EAGAIN. */
	assert_true(read(p[0], buf, 4096) > 0);
	{
		static char big[16384];
		struct iovec iov[3] = { { big, 0 },
					{ big, sizeof(big) / 2 },
					{ big, sizeof(big) / 2 } };
		ssize_t r = host_output_write(&out, iov, 3);

		assert_true(r > 0 && r < (ssize_t)sizeof(big));
	}
	close(p[0]);
	{
		struct iovec iov = { buf, 1 };

		assert_int_equal(host_output_write(&out, &iov, 1), -EPIPE);
	}
	host_output_close(&out);
	assert_int_equal(out.fd, -1);
	/* The caller's fd is still open. */
	assert_true(fcntl(p[1], F_GETFD) >= 0);
	close(p[1]);
}

static void test_socket_dontwait(void **state)
{
	struct host_output out;
	int sv[2], fl;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fl = fcntl(sv[1], F_GETFL);
	assert_int_equal(host_output_open(&out, sv[1]), 0);
	assert_true(out.sock);
	/* A socket's O_NONBLOCK would be everybody's: it is left alone,
	 * and writes still never wait. */
	assert_int_equal(fcntl(sv[1], F_GETFL), fl);
	assert_true(fill(&out) > 0);
	close(sv[0]);
	{
		char c = 'x';
		struct iovec iov = { &c, 1 };

		assert_int_equal(host_output_write(&out, &iov, 1), -EPIPE);
	}
	host_output_close(&out);
	close(sv[1]);
}

static void test_adopt_and_dropped(void **state)
{
	struct host_output out = { .fd = -1 };
	struct iovec iov = { "x", 1 };
	int p[2];

	assert_int_equal(host_output_write(&out, &iov, 1), -EBADF);
	assert_int_equal(pipe(p), 0);
	host_output_adopt(&out, p[1]);
	assert_true(fcntl(p[1], F_GETFL) & O_NONBLOCK);
	assert_int_equal(host_output_write(&out, &iov, 1), 1);
	host_output_close(&out);
	/* Adopted: closed with it. */
	assert_int_equal(fcntl(p[1], F_GETFD), -1);
	close(p[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_reopened_nonblocking),
		cmocka_unit_test(test_socket_dontwait),
		cmocka_unit_test(test_adopt_and_dropped),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
