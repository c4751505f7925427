/* benchtool.c - the timing helper of the bench scripts. It starts a VMM, talks
 * to its control socket (stasis HTTP API or QEMU QMP) and times everything with
 * CLOCK_MONOTONIC inside one process, so that no fork/exec of a shell tool ever
 * falls inside a measured interval.
 *
 * Every child gets STASIS_EXEC_NS, the CLOCK_MONOTONIC time of its exec,
 * which stasis restore --timings measures from.
 *
 * Built by the bench scripts with the host cc (bench/ is not part of the
 * Meson build). Every command prints one line of key=value pairs on stdout
 * (http and qmp add the reply); times are microseconds.
 *
 *   benchtool boot [--timeout-ms N] [--out FILE] [--kill-at-first] -- CMD...
 *       exec-to-first-stdout-byte, exit status, peak RSS (wait4), the RSS
 *       breakdown when the first byte arrives and, from a ptrace exit
 *       stop, just before the VMM exits.
 *   benchtool restore (--http SOCK | --qmp SOCK) [--timeout-ms N]
 *                     [--out FILE] [--no-output] -- CMD...
 *       CMD restores a paused VM: time until SOCK says it is ready, then
 *       resume it and time until its first stdout byte, then stop it.
 *   benchtool target --http SOCK --body JSON [--timeout-ms N] -- CMD...
 *       CMD is a waiting restore target (stasis restore --wait): once SOCK
 *       answers, send PUT /vm/restore with JSON and time, from just before
 *       the request, its reply and the first stdout byte, then stop it.
 *   benchtool http SOCK METHOD PATH [BODY]
 *   benchtool qmp SOCK CMD...   (CMD is JSON, wait-migrate or
 *       cont-after-migrate); prints
 *       the connect+negotiation time, then one line per command
 *   benchtool fsync FILE
 *   benchtool kvm-cpuid
 *       what this host's KVM_GET_SUPPORTED_CPUID offers in leaf 7.0 EDX,
 *       which stasis's default (host) CPUID template passes on unchanged:
 *       the bench scripts pick QEMU's -cpu from it (bench/lib.sh).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 600000 /* a 2 GiB snapshot in the nested VM is slow */
#define POLL_STEP_US 1000 /* readiness polling interval */

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000,
			       .tv_nsec = (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("benchtool: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

/* ------------------------------------------------------------ the child -- */

/* From /proc/PID/status, KiB; -1 if not read. */
struct rss {
	long hwm_kb, anon_kb, file_kb, shmem_kb;
};

struct child {
	pid_t pid;
	int out_fd; /* read end of the child's stdout */
	int copy_fd; /* where its output is copied, or -1 */
	int sig_fd; /* signalfd for SIGCHLD */
	int64_t *exec_us; /* shared page: the child's clock just before exec */
	int64_t first_byte_us; /* absolute, 0 until seen */
	int64_t bytes;
	bool traced, exited;
	int status;
	struct rusage ru;
	bool sample_first; /* read /proc/PID/status at the first byte */
	struct rss at_first, at_exit;
};

static void child_start(struct child *c, char **argv, bool trace)
{
	int out[2], go[2];
	sigset_t set;

	memset(c, 0, sizeof(*c));
	c->at_first = c->at_exit = (struct rss){ -1, -1, -1, -1 };
	c->copy_fd = -1;
	c->exec_us = mmap(NULL, sizeof(int64_t), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c->exec_us == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	c->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (c->sig_fd < 0 || pipe2(out, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	c->pid = fork();
	if (c->pid < 0)
		die("fork: %s", strerror(errno));
	if (c->pid == 0) {
		char b;

		sigprocmask(SIG_UNBLOCK, &set, NULL);
		dup2(out[1], STDOUT_FILENO);
		/* Wait until the parent has attached, so the exit stop is
		 * never missed. */
		close(go[1]);
		if (read(go[0], &b, 1) < 0)
			_exit(126);
		{
			struct timespec ts;
			char ns[32];

			clock_gettime(CLOCK_MONOTONIC, &ts);
			snprintf(ns, sizeof(ns), "%lld",
				 (long long)ts.tv_sec * 1000000000LL +
				     ts.tv_nsec);
			setenv("STASIS_EXEC_NS", ns, 1);
			*c->exec_us =
			    (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
		}
		execvp(argv[0], argv);
		fprintf(stderr, "benchtool: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	close(out[1]);
	close(go[0]);
	c->out_fd = out[0];
	if (trace) {
		/* SEIZE (not ATTACH): no SIGTRAP at exec, no stop now. Only
		 * the main thread is traced, the one that returns from main
		 * in both stasis and QEMU, so vCPU kicks are not slowed. */
		if (ptrace(PTRACE_SEIZE, c->pid, NULL,
			   (void *)PTRACE_O_TRACEEXIT) == 0)
			c->traced = true;
		else
			fprintf(stderr,
				"benchtool: ptrace: %s (no RSS "
				"breakdown)\n",
				strerror(errno));
	}
	if (write(go[1], "g", 1) != 1)
		die("write: %s", strerror(errno));
	close(go[1]);
}

static long status_kb(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);

	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static void child_read_status(const struct child *c, struct rss *rss)
{
	char path[64], buf[8192];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)c->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (!strstr(buf, "VmHWM:"))
		return;
	rss->hwm_kb = status_kb(buf, "VmHWM:");
	rss->anon_kb = status_kb(buf, "RssAnon:");
	rss->file_kb = status_kb(buf, "RssFile:");
	rss->shmem_kb = status_kb(buf, "RssShmem:");
}

static void child_reap(struct child *c)
{
	int st;
	pid_t p;

	while (!c->exited &&
	       (p = wait4(c->pid, &st, WNOHANG | __WALL, &c->ru)) > 0) {
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			c->exited = true;
			c->status = st;
			break;
		}
		if (!WIFSTOPPED(st))
			continue;
		if (st >> 8 == (SIGTRAP | (PTRACE_EVENT_EXIT << 8))) {
			/* The process is exiting but its memory is intact. */
			child_read_status(c, &c->at_exit);
			ptrace(PTRACE_CONT, c->pid, NULL, NULL);
		} else if (st >> 16 == PTRACE_EVENT_STOP) {
			ptrace(PTRACE_CONT, c->pid, NULL, NULL);
		} else {
			ptrace(PTRACE_CONT, c->pid, NULL,
			       (void *)(long)WSTOPSIG(st));
		}
	}
}

/* Moves output and reaps for up to @timeout_ms (0: just what is ready).
 * Returns when the timeout passes, the child exits, or (if @want_byte) a
 * new first byte arrived. */
static void child_pump(struct child *c, int timeout_ms, bool want_byte)
{
	int64_t end = now_us() + (int64_t)timeout_ms * 1000;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->out_fd, .events = POLLIN },
			{ .fd = c->sig_fd, .events = POLLIN },
		};
		int64_t left = end - now_us();
		int ret;

		if (left < 0)
			left = 0;
		ret = poll(pfd, 2, (int)((left + 999) / 1000));
		if (ret < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (ret > 0 && pfd[0].revents) {
			char buf[65536];
			ssize_t n = read(c->out_fd, buf, sizeof(buf));

			if (n > 0) {
				if (!c->first_byte_us) {
					c->first_byte_us = now_us();
					if (c->sample_first)
						child_read_status(c,
								  &c->at_first);
				}
				c->bytes += n;
				if (c->copy_fd >= 0 &&
				    write(c->copy_fd, buf, (size_t)n) != n)
					die("write: %s", strerror(errno));
				if (want_byte)
					return;
			} else if (n == 0) {
				close(c->out_fd);
				c->out_fd = -1; /* poll ignores it from now */
			}
		}
		if (ret > 0 && pfd[1].revents) {
			struct signalfd_siginfo si;

			while (read(c->sig_fd, &si, sizeof(si)) > 0)
				;
		}
		child_reap(c);
		if (c->exited || now_us() >= end)
			return;
	}
}

/* Waits for exit; SIGTERM after @grace_ms, SIGKILL 10 s later. */
static void child_finish(struct child *c, int grace_ms)
{
	child_pump(c, grace_ms, false);
	if (!c->exited) {
		kill(c->pid, SIGTERM);
		child_pump(c, 10000, false);
	}
	if (!c->exited) {
		kill(c->pid, SIGKILL);
		child_pump(c, 10000, false);
	}
	/* Output still in the pipe (not from grandchildren that keep it). */
	if (c->out_fd >= 0)
		child_pump(c, 0, false);
}

/* On a timeout: where each of the child's threads is, on stderr. */
static void child_dump(const struct child *c)
{
	static const char *const files[] = { "comm", "wchan", "stat", "stack" };
	char path[320], buf[4096];
	struct dirent *de;
	DIR *d;

	if (c->exited)
		return;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)c->pid);
	d = opendir(path);
	if (!d)
		return;
	fprintf(stderr, "benchtool: timed out; threads of %d:\n", (int)c->pid);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			ssize_t n;
			int fd;

			snprintf(path, sizeof(path), "/proc/%d/task/%s/%s",
				 (int)c->pid, de->d_name, files[i]);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n > 0) {
				buf[n] = '\0';
				fprintf(stderr, "  %s %s: %s%s", de->d_name,
					files[i], buf,
					buf[n - 1] == '\n' ? "" : "\n");
			}
		}
	}
	closedir(d);
}

static char *exit_str(const struct child *c, char *buf, size_t len)
{
	if (!c->exited)
		snprintf(buf, len, "running");
	else if (WIFEXITED(c->status))
		snprintf(buf, len, "%d", WEXITSTATUS(c->status));
	else
		snprintf(buf, len, "sig%d", WTERMSIG(c->status));
	return buf;
}

static int open_copy(const char *path)
{
	int fd;

	if (!path)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("cannot open %s: %s", path, strerror(errno));
	return fd;
}

/* --------------------------------------------------------------- sockets -- */

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		die("socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	/* Non-blocking: a UNIX connect blocks while the listener's backlog
	 * is full; then it fails with EAGAIN and the caller retries. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Milliseconds left until @deadline (absolute, us), at least 0. */
static int ms_left(int64_t deadline)
{
	int64_t left = (deadline - now_us() + 999) / 1000;

	return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* One HTTP/1.1 request with Connection: close; reads to EOF or until
 * @deadline (absolute, us). Returns the status code, or -1 if the
 * connection failed or timed out. The body goes to @resp. */
static int http_request_until(const char *sock, const char *method,
			      const char *path, const char *body, char *resp,
			      size_t resplen, int64_t deadline)
{
	char req[8192];
	size_t got = 0;
	int fd, status = -1, n;
	char *p;

	fd = unix_connect(sock);
	if (fd < 0)
		return -1;
	body = body ? body : "";
	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: localhost\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     method, path, strlen(body), body);
	if (n < 0 || (size_t)n >= sizeof(req) || write_all(fd, req, (size_t)n))
		goto out;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, ms_left(deadline)) <= 0)
			goto out;
		r = read(fd, resp + got, resplen - 1 - got);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == resplen - 1)
			break;
	}
	resp[got] = '\0';
	if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
		status = -1;
	p = strstr(resp, "\r\n\r\n");
	memmove(resp, p ? p + 4 : resp + got,
		strlen(p ? p + 4 : resp + got) + 1);
out:
	close(fd);
	return status;
}

static int http_request(const char *sock, const char *method, const char *path,
			const char *body, char *resp, size_t resplen)
{
	return http_request_until(sock, method, path, body, resp, resplen,
				  now_us() + (int64_t)IO_TIMEOUT_MS * 1000);
}

struct qmp {
	int fd;
	char buf[65536];
	size_t len;
};

/* Reads one line (a QMP message) into @line. Returns 0, or -1. */
static int qmp_read_line(struct qmp *q, char *line, size_t linelen)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);

		if (nl) {
			size_t n = (size_t)(nl - q->buf) + 1;
			size_t copy = n < linelen ? n : linelen - 1;

			memcpy(line, q->buf, copy);
			line[copy] = '\0';
			memmove(q->buf, q->buf + n, q->len - n);
			q->len -= n;
			return 0;
		}
		struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
		ssize_t r;

		if (q->len == sizeof(q->buf))
			return -1;
		if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0)
			return -1;
		r = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			return -1;
		q->len += (size_t)r;
	}
}

/* Sends @cmd and reads its reply, skipping events. Returns 0, or -1. */
static int qmp_command(struct qmp *q, const char *cmd, char *reply,
		       size_t replylen)
{
	if (write_all(q->fd, cmd, strlen(cmd)) || write_all(q->fd, "\n", 1))
		return -1;
	do {
		if (qmp_read_line(q, reply, replylen))
			return -1;
	} while (!strncmp(reply, "{\"timestamp\"", 12));
	return 0;
}

/* Connects and negotiates capabilities. Returns 0, or -1 if the socket is
 * not there yet or the greeting failed. */
static int qmp_open(struct qmp *q, const char *sock)
{
	char line[4096];

	q->len = 0;
	q->fd = unix_connect(sock);
	if (q->fd < 0)
		return -1;
	if (qmp_read_line(q, line, sizeof(line)) || !strstr(line, "QMP") ||
	    qmp_command(q, "{\"execute\":\"qmp_capabilities\"}", line,
			sizeof(line)) ||
	    !strstr(line, "\"return\"")) {
		close(q->fd);
		return -1;
	}
	return 0;
}

/* The value of "status" in a QMP reply, or "" */
static const char *qmp_status(const char *reply, char *buf, size_t len)
{
	const char *p = strstr(reply, "\"status\"");

	buf[0] = '\0';
	if (p && sscanf(p, "\"status\": \"%63[^\"]\"", buf) != 1 &&
	    sscanf(p, "\"status\":\"%63[^\"]\"", buf) != 1)
		buf[0] = '\0';
	(void)len;
	return buf;
}

/* Polls query-migrate until it is neither setup nor active. */
static int qmp_wait_migrate(struct qmp *q, char *reply, size_t replylen)
{
	int64_t end = now_us() + (int64_t)IO_TIMEOUT_MS * 1000;
	char st[64];

	for (;;) {
		if (now_us() > end)
			return -1;
		if (qmp_command(q, "{\"execute\":\"query-migrate\"}", reply,
				replylen))
			return -1;
		qmp_status(reply, st, sizeof(st));
		if (strcmp(st, "setup") && strcmp(st, "active") &&
		    strcmp(st, "device") && strcmp(st, "pre-switchover") &&
		    strcmp(st, "postcopy-active"))
			return strcmp(st, "completed") ? -1 : 0;
		sleep_us(POLL_STEP_US);
	}
}

/* cont, retried while QEMU is still finishing a migration that
 * query-migrate already reports completed ("Migration is not finalized
 * yet"). */
static int qmp_cont_after_migrate(struct qmp *q, char *reply, size_t replylen)
{
	int64_t end = now_us() + 60 * 1000000;

	for (;;) {
		if (qmp_command(q, "{\"execute\":\"cont\"}", reply, replylen))
			return -1;
		if (!strstr(reply, "not finalized") || now_us() > end)
			return 0;
		sleep_us(POLL_STEP_US);
	}
}

/* -------------------------------------------------------------- commands -- */

static int cmd_boot(int argc, char **argv)
{
	const char *out = NULL;
	int timeout_ms = 600000;
	bool kill_at_first = false;
	struct child c;
	char ex[32];
	int i;

	for (i = 0; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "--kill-at-first"))
			kill_at_first = true;
		else
			die("boot: unknown option %s", argv[i]);
	}
	if (i + 1 >= argc)
		die("boot: no command");
	child_start(&c, argv + i + 1, true);
	c.copy_fd = open_copy(out);
	c.sample_first = true;
	if (kill_at_first) {
		int64_t end = now_us() + (int64_t)timeout_ms * 1000;

		while (!c.first_byte_us && !c.exited && now_us() < end)
			child_pump(&c, 100, true);
		child_finish(&c, 0);
	} else {
		child_finish(&c, timeout_ms);
	}
	printf("first_byte_us=%" PRId64 " exit=%s maxrss_kb=%ld bytes=%" PRId64
	       " first_anon_kb=%ld first_file_kb=%ld first_shmem_kb=%ld"
	       " exit_hwm_kb=%ld exit_anon_kb=%ld exit_file_kb=%ld"
	       " exit_shmem_kb=%ld\n",
	       c.first_byte_us ? c.first_byte_us - *c.exec_us : -1,
	       exit_str(&c, ex, sizeof(ex)), c.ru.ru_maxrss, c.bytes,
	       c.at_first.anon_kb, c.at_first.file_kb, c.at_first.shmem_kb,
	       c.at_exit.hwm_kb, c.at_exit.anon_kb, c.at_exit.file_kb,
	       c.at_exit.shmem_kb);
	return 0;
}

static int cmd_restore(int argc, char **argv)
{
	const char *http = NULL, *qmp_sock = NULL, *out = NULL;
	int timeout_ms = 600000;
	bool want_output = true;
	int64_t ready = -1, resumed = -1, t = 0, end;
	struct qmp q = { .fd = -1 };
	char reply[8192], st[64], ex[32];
	struct child c;
	int i, ok = 0;

	for (i = 0; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--http") && i + 1 < argc)
			http = argv[++i];
		else if (!strcmp(argv[i], "--qmp") && i + 1 < argc)
			qmp_sock = argv[++i];
		else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "--no-output"))
			want_output = false;
		else
			die("restore: unknown option %s", argv[i]);
	}
	if (i + 1 >= argc || !http == !qmp_sock)
		die("restore: need --http SOCK or --qmp SOCK and a command");
	child_start(&c, argv + i + 1, false);
	c.copy_fd = open_copy(out);
	end = now_us() + (int64_t)timeout_ms * 1000;

	/* Ready: stasis serves its API only once the image is loaded; QEMU
	 * serves QMP at once and reports "inmigrate" until the incoming
	 * stream is complete, then "paused" (-S). */
	while (!c.exited && now_us() < end) {
		if (http) {
			/* One request may wait in the backlog until the
			 * server starts: give it all the time left. */
			if (http_request_until(http, "GET", "/vm", NULL, reply,
					       sizeof(reply), end) == 200) {
				ready = now_us();
				break;
			}
		} else if (q.fd >= 0 || qmp_open(&q, qmp_sock) == 0) {
			if (qmp_command(&q, "{\"execute\":\"query-status\"}",
					reply, sizeof(reply)))
				break;
			qmp_status(reply, st, sizeof(st));
			if (!strcmp(st, "paused") || !strcmp(st, "running")) {
				ready = now_us();
				break;
			}
			if (strcmp(st, "inmigrate") && strcmp(st, "prelaunch"))
				break; /* restore-vm, internal-error, ... */
		}
		child_pump(&c, POLL_STEP_US / 1000, false);
	}
	if (ready < 0) {
		child_dump(&c);
		goto done;
	}
	t = now_us();
	if (http)
		ok = http_request(http, "PUT", "/vm/resume", NULL, reply,
				  sizeof(reply)) == 204;
	else
		ok = !qmp_command(&q, "{\"execute\":\"cont\"}", reply,
				  sizeof(reply)) &&
		     strstr(reply, "\"return\"");
	if (!ok)
		goto done;
	resumed = now_us();
	c.first_byte_us = 0; /* count only output after the resume */
	while (want_output && !c.first_byte_us && !c.exited && now_us() < end)
		child_pump(&c, 100, true);
done:
	if (http)
		http_request_until(http, "PUT", "/vm/shutdown", NULL, reply,
				   sizeof(reply), now_us() + 10000000);
	else if (q.fd >= 0)
		qmp_command(&q, "{\"execute\":\"quit\"}", reply, sizeof(reply));
	child_finish(&c, 10000);
	printf("ready_us=%" PRId64 " resume_us=%" PRId64
	       " output_after_resume_us=%" PRId64 " exit=%s\n",
	       ready >= 0 ? ready - *c.exec_us : -1,
	       resumed >= 0 ? resumed - t : -1,
	       resumed >= 0 && c.first_byte_us ? c.first_byte_us - resumed : -1,
	       exit_str(&c, ex, sizeof(ex)));
	return ready >= 0 && ok ? 0 : 1;
}

struct target_req {
	const char *sock, *body;
	int status;
	int64_t done_us;
	char reply[8192];
};

static void *target_send(void *arg)
{
	struct target_req *r = arg;

	r->status = http_request(r->sock, "PUT", "/vm/restore", r->body,
				 r->reply, sizeof(r->reply));
	r->done_us = now_us();
	return NULL;
}

static int cmd_target(int argc, char **argv)
{
	struct target_req r = { .status = -1 };
	int timeout_ms = 600000;
	int64_t ready = -1, t0 = -1, end;
	char reply[8192], ex[32];
	struct child c;
	pthread_t th;
	bool sent = false;
	int i;

	for (i = 0; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--http") && i + 1 < argc)
			r.sock = argv[++i];
		else if (!strcmp(argv[i], "--body") && i + 1 < argc)
			r.body = argv[++i];
		else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else
			die("target: unknown option %s", argv[i]);
	}
	if (i + 1 >= argc || !r.sock || !r.body)
		die("target: need --http SOCK, --body JSON and a command");
	child_start(&c, argv + i + 1, false);
	end = now_us() + (int64_t)timeout_ms * 1000;
	while (!c.exited && now_us() < end) {
		if (http_request_until(r.sock, "GET", "/vm", NULL, reply,
				       sizeof(reply), end) == 200) {
			ready = now_us();
			break;
		}
		child_pump(&c, POLL_STEP_US / 1000, false);
	}
	if (ready < 0)
		goto done;
	/* The request from its own thread, so that the first byte is seen
	 * when it comes, not when the reply has. */
	c.first_byte_us = 0;
	t0 = now_us();
	if (pthread_create(&th, NULL, target_send, &r))
		goto done;
	sent = true;
	while (!c.first_byte_us && !c.exited && now_us() < end)
		child_pump(&c, 100, true);
	pthread_join(th, NULL);
done:
	http_request_until(r.sock, "PUT", "/vm/shutdown", NULL, reply,
			   sizeof(reply), now_us() + 10000000);
	child_finish(&c, 10000);
	printf("ready_us=%" PRId64 " reply_us=%" PRId64
	       " first_byte_us=%" PRId64 " status=%d exit=%s\n",
	       ready >= 0 ? ready - *c.exec_us : -1,
	       sent && r.status == 200 ? r.done_us - t0 : -1,
	       sent && c.first_byte_us ? c.first_byte_us - t0 : -1, r.status,
	       exit_str(&c, ex, sizeof(ex)));
	return sent && r.status == 200 && c.first_byte_us ? 0 : 1;
}

static int cmd_http(int argc, char **argv)
{
	static char resp[1 << 16];
	int64_t t;
	int status;

	if (argc < 3 || argc > 4)
		die("usage: benchtool http SOCK METHOD PATH [BODY]");
	t = now_us();
	status = http_request(argv[0], argv[1], argv[2],
			      argc == 4 ? argv[3] : NULL, resp, sizeof(resp));
	t = now_us() - t;
	printf("status=%d us=%" PRId64 "\n%s\n", status, t, resp);
	return status >= 200 && status < 300 ? 0 : 1;
}

static int cmd_qmp(int argc, char **argv)
{
	struct qmp q;
	char reply[16384];
	int64_t start, t;

	if (argc < 2)
		die("usage: benchtool qmp SOCK CMD...");
	/* Like any one-shot client: connect, greeting, capabilities. */
	t = now_us();
	if (qmp_open(&q, argv[0]))
		die("cannot open QMP at %s", argv[0]);
	printf("connect us=%" PRId64 "\n", now_us() - t);
	start = now_us();
	for (int i = 1; i < argc; i++) {
		int ret;

		t = now_us();
		if (!strcmp(argv[i], "wait-migrate"))
			ret = qmp_wait_migrate(&q, reply, sizeof(reply));
		else if (!strcmp(argv[i], "cont-after-migrate"))
			ret = qmp_cont_after_migrate(&q, reply, sizeof(reply));
		else
			ret = qmp_command(&q, argv[i], reply, sizeof(reply));
		printf("us=%" PRId64 " end_us=%" PRId64 " %s", now_us() - t,
		       now_us() - start, ret ? "FAILED " : "");
		fputs(reply, stdout);
		if (!strchr(reply, '\n'))
			putchar('\n');
		if (ret || strstr(reply, "\"error\""))
			return 1;
	}
	return 0;
}

/* fsync FILE: how long making a file durable takes (QEMU's migration to a
 * file does not fsync; stasis's snapshot does). */
static int cmd_fsync(int argc, char **argv)
{
	int64_t t;
	int fd;

	if (argc != 1)
		die("usage: benchtool fsync FILE");
	fd = open(argv[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("cannot open %s: %s", argv[0], strerror(errno));
	t = now_us();
	if (fsync(fd) < 0)
		die("fsync %s: %s", argv[0], strerror(errno));
	printf("us=%" PRId64 "\n", now_us() - t);
	close(fd);
	return 0;
}

/* kvm-cpuid: leaf 7.0 EDX of KVM_GET_SUPPORTED_CPUID and its bit 29,
 * ARCH_CAPABILITIES (SDM vol. 2A, CPUID leaf 07H), whose MSR (0x10a) is the
 * one QEMU's -cpu host cannot set on some hosts. */
static int cmd_kvm_cpuid(int argc, char **argv)
{
	enum { MAX_ENTRIES = 256 };
	struct kvm_cpuid2 *c;
	uint32_t edx = 0;
	bool found = false;
	int fd;

	(void)argv;
	if (argc)
		die("usage: benchtool kvm-cpuid");
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("cannot open /dev/kvm: %s", strerror(errno));
	c = calloc(1, sizeof(*c) + MAX_ENTRIES * sizeof(c->entries[0]));
	if (!c)
		die("out of memory");
	c->nent = MAX_ENTRIES;
	if (ioctl(fd, KVM_GET_SUPPORTED_CPUID, c) < 0)
		die("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	for (uint32_t i = 0; i < c->nent; i++) {
		if (c->entries[i].function == 7 && c->entries[i].index == 0) {
			edx = c->entries[i].edx;
			found = true;
		}
	}
	printf("leaf7=%d edx=0x%08" PRIx32 " arch_capabilities=%d\n", found,
	       edx, !!(edx & (1u << 29)));
	free(c);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && !strcmp(argv[1], "boot"))
		return cmd_boot(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "restore"))
		return cmd_restore(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "target"))
		return cmd_target(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "http"))
		return cmd_http(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "qmp"))
		return cmd_qmp(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "fsync"))
		return cmd_fsync(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "kvm-cpuid"))
		return cmd_kvm_cpuid(argc - 2, argv + 2);
	fputs("usage: benchtool boot|restore|target|http|qmp|fsync|kvm-cpuid "
	      "...\n"
	      "(see the source)\n",
	      stderr);
	return 2;
}
