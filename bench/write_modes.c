/* write_modes.c - how fast this host writes a snapshot-sized piece of
 * memory to a file and makes it durable, by each way a writer could do it:
 * through a bounce buffer, pwritev straight from the memory at several
 * I/O sizes, on one thread or two, O_DIRECT, and sync_file_range as it
 * goes; every mode ends with fsync. stasis's writer uses the fastest.
 * Build: cc -O2 -o write_modes bench/write_modes.c -lpthread
 * Run: ./write_modes DIR [MiB] [runs]   (prints one line per mode: MB/s) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct mode {
	const char *name;
	size_t io; /* bytes per call */
	int threads;
	int direct; /* O_DIRECT */
	int bounce; /* copy through a 1 MiB buffer first */
	int sfr; /* sync_file_range every 32 MiB */
};

static const struct mode modes[] = {
	{ "bounce 1M", 1 << 20, 1, 0, 1, 0 },
	{ "pwritev 256K", 256 << 10, 1, 0, 0, 0 },
	{ "pwritev 2M", 2 << 20, 1, 0, 0, 0 },
	{ "pwritev 8M", 8 << 20, 1, 0, 0, 0 },
	{ "pwritev 2M x2 threads", 2 << 20, 2, 0, 0, 0 },
	{ "pwritev 2M + sync_file_range", 2 << 20, 1, 0, 0, 1 },
	{ "O_DIRECT 2M", 2 << 20, 1, 1, 0, 0 },
	{ "O_DIRECT 8M", 8 << 20, 1, 1, 0, 0 },
	{ "O_DIRECT 8M x2 threads", 8 << 20, 2, 1, 0, 0 },
};

struct job {
	const struct mode *m;
	int fd;
	uint8_t *mem;
	size_t off, len;
	int err;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run_job(void *arg)
{
	struct job *j = arg;
	const size_t window = 32 << 20;
	uint8_t *buf = NULL;
	size_t done = 0;

	if (j->m->bounce && posix_memalign((void **)&buf, 4096, j->m->io))
		return (j->err = ENOMEM, NULL);
	while (done < j->len) {
		size_t n = j->len - done < j->m->io ? j->len - done : j->m->io;
		const uint8_t *src = j->mem + j->off + done;
		ssize_t w;

		if (buf) {
			memcpy(buf, src, n);
			src = buf;
		}
		w = pwrite(j->fd, src, n, (off_t)(j->off + done));
		if (w <= 0)
			return (j->err = w < 0 ? errno : EIO, NULL);
		done += (size_t)w;
		/* Start writeback of the window just filled; wait for the
		 * one before, so dirty pages never pile up. */
		if (j->m->sfr && done % window == 0) {
			sync_file_range(j->fd, (off_t)(j->off + done - window),
					window, SYNC_FILE_RANGE_WRITE);
			if (done >= 2 * window)
				sync_file_range(
				    j->fd, (off_t)(j->off + done - 2 * window),
				    window,
				    SYNC_FILE_RANGE_WAIT_BEFORE |
					SYNC_FILE_RANGE_WRITE |
					SYNC_FILE_RANGE_WAIT_AFTER);
		}
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 0) : 1024;
	int runs = argc > 3 ? atoi(argv[3]) : 3;
	size_t len = mib << 20;
	char path[4096];
	uint8_t *mem;
	int memfd;

	if (argc < 2) {
		fprintf(stderr, "usage: write_modes DIR [MiB] [runs]\n");
		return 2;
	}
	/* Guest memory is a memfd mapping in stasis: the same here. */
	memfd = memfd_create("write_modes", 0);
	if (memfd < 0 || ftruncate(memfd, (off_t)len))
		return perror("memfd"), 1;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED)
		return perror("mmap"), 1;
	for (size_t i = 0; i < len / 8; i++)
		((uint64_t *)mem)[i] = i * 0x9e3779b97f4a7c15ull;
	snprintf(path, sizeof(path), "%s/write_modes.%d", argv[1], getpid());
	for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
		const struct mode *m = &modes[k];
		double best = 0, sum = 0;

		for (int r = 0; r < runs; r++) {
			struct job jobs[2];
			pthread_t th[2];
			double t0, t;
			int fd, err = 0;

			fd = open(path,
				  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
				      (m->direct ? O_DIRECT : 0),
				  0600);
			if (fd < 0)
				return perror(path), 1;
			t0 = now();
			for (int i = 0; i < m->threads; i++) {
				jobs[i] = (struct job){
					.m = m,
					.fd = fd,
					.mem = mem,
					.off = len / m->threads * i,
					.len = len / m->threads,
				};
				pthread_create(&th[i], NULL, run_job, &jobs[i]);
			}
			for (int i = 0; i < m->threads; i++) {
				pthread_join(th[i], NULL);
				err |= jobs[i].err;
			}
			if (err || fsync(fd))
				return fprintf(stderr, "%s: %s\n", m->name,
					       strerror(err ? err : errno)),
				       1;
			t = now() - t0;
			close(fd);
			unlink(path);
			sum += len / t / 1e6;
			if (len / t / 1e6 > best)
				best = len / t / 1e6;
		}
		printf("%-30s %8.0f MB/s (best %.0f, %d runs of %zu MiB)\n",
		       m->name, sum / runs, best, runs, mib);
		fflush(stdout);
	}
	return 0;
}
