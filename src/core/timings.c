/* Restore phase time stamps: finding the exec time, marking, reporting. */
#include "core/timings.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"

static const char *const timings_names[TIMING_COUNT] = {
	[TIMING_MAIN] = "main",	      [TIMING_KVM] = "kvm",
	[TIMING_MEMORY] = "memory",   [TIMING_VCPUS] = "vcpus",
	[TIMING_REQUEST] = "request", [TIMING_FILE] = "file",
	[TIMING_MACHINE] = "machine", [TIMING_STATE] = "state",
	[TIMING_DEVICES] = "devices", [TIMING_RUN] = "first_run",
	[TIMING_EXIT] = "first_exit",
};

const char *timings_name(enum timing_mark m)
{
	return m < TIMING_COUNT ? timings_names[m] : "?";
}

/* $STASIS_EXEC_NS, if it is a time in the last minute and not ahead of
 * @now; 0 otherwise. */
static uint64_t timings_exec_from_env(uint64_t now)
{
	const char *s = getenv(TIMINGS_EXEC_ENV);
	unsigned long long v;
	char *end;

	if (!s || !*s)
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v == 0 || v > now || now - v > 60000000000ull)
		return 0;
	return v;
}

/* The process's start from /proc/self/stat (field 22, clock ticks of
 * CLOCK_BOOTTIME), carried over to CLOCK_MONOTONIC; 0 if unreadable. */
static uint64_t timings_exec_from_proc(uint64_t now)
{
	char buf[1024], *p;
	unsigned long long ticks;
	long hz = sysconf(_SC_CLK_TCK);
	uint64_t boot_now, start;
	ssize_t n;
	int fd, field;

	fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || hz <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name (field 2) may hold spaces: count after its ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	for (field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &ticks) != 1)
		return 0;
	start = (uint64_t)ticks * (1000000000ull / (uint64_t)hz);
	boot_now = clock_now_ns(CLOCK_BOOTTIME);
	if (start > boot_now || boot_now - start > now)
		return 0;
	return now - (boot_now - start);
}

void timings_init(struct timings *t, bool report)
{
	uint64_t now = clock_now_ns(CLOCK_MONOTONIC);

	memset(t, 0, sizeof(*t));
	t->report = report;
	t->exec_ns = timings_exec_from_env(now);
	t->exec_source = "$" TIMINGS_EXEC_ENV;
	if (!t->exec_ns) {
		t->exec_ns = timings_exec_from_proc(now);
		t->exec_source = "/proc/self/stat starttime, to 10 ms";
	}
	if (!t->exec_ns) {
		t->exec_ns = now;
		t->exec_source = "unknown: main() stands for exec";
	}
	atomic_store(&t->at[TIMING_MAIN], now);
}

void timings_reset_from(struct timings *t, enum timing_mark m)
{
	for (int i = m; t && i < TIMING_COUNT; i++)
		atomic_store(&t->at[i], 0);
}

void timings_mark(struct timings *t, enum timing_mark m)
{
	uint64_t zero = 0;

	if (t && m < TIMING_COUNT)
		atomic_compare_exchange_strong(&t->at[m], &zero,
					       clock_now_ns(CLOCK_MONOTONIC));
}

int64_t timings_us(const struct timings *t, enum timing_mark m)
{
	uint64_t at;

	if (!t || m >= TIMING_COUNT)
		return -1;
	at = atomic_load(&t->at[m]);
	if (!at)
		return -1;
	return at > t->exec_ns ? (int64_t)((at - t->exec_ns) / 1000) : 0;
}

void timings_print(const struct timings *t)
{
	enum timing_mark order[TIMING_COUNT];
	char buf[2048];
	size_t len;
	int64_t prev = 0;

	len = (size_t)snprintf(buf, sizeof(buf),
			       "stasis: timings: ms since exec (exec time: "
			       "%s)%s\n",
			       t->exec_source,
			       t->target ? "; a waiting target's phases "
					   "up to vcpus came before the request"
					 : "");
	/* In the order they happened: a plain restore opens the file
	 * before KVM, a waiting target after. */
	for (int n = 0; n < TIMING_COUNT; n++)
		order[n] = n;
	for (int i = 1; i < TIMING_COUNT; i++)
		for (int j = i; j > 0 && timings_us(t, order[j - 1]) >
					     timings_us(t, order[j]);
		     j--) {
			enum timing_mark tmp = order[j];

			order[j] = order[j - 1];
			order[j - 1] = tmp;
		}
	for (int n = 0; n < TIMING_COUNT && len < sizeof(buf); n++) {
		int64_t us = timings_us(t, order[n]);

		if (us < 0)
			continue;
		len += (size_t)snprintf(
		    buf + len, sizeof(buf) - len,
		    "stasis: timings: %-10s %9.3f  (+%.3f)\n",
		    timings_names[order[n]], us / 1000.0, (us - prev) / 1000.0);
		prev = us;
	}
	if (len > sizeof(buf))
		len = sizeof(buf);
	if (write(STDERR_FILENO, buf, len) < 0) {
		/* Nothing to tell: stderr is where it would have gone. */
	}
}
