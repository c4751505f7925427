/* chunk_cost.c - what serving one chunk of guest memory costs on this host:
 * pread from a snapshot-sized file in the page cache, XXH3-64 of the chunk,
 * UFFDIO_COPY into a shared memfd mapping registered in MISSING mode. Used
 * to choose the MEMORY record's chunk size (docs/snapshot-format.md).
 * Build: cc -O2 -o chunk_cost bench/chunk_cost.c -lxxhash -lpthread
 * Run as root (or with vm.unprivileged_userfaultfd=1): ./chunk_cost [MiB] */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

struct ctx {
	int uffd, fd;
	uint8_t *mem, *buf;
	size_t chunk;
	volatile int stop;
};

/* Serves faults: the whole chunk around the faulting address. */
static void *handler(void *arg)
{
	struct ctx *c = arg;
	struct uffd_msg msg;

	while (!c->stop) {
		struct pollfd p = { .fd = c->uffd, .events = POLLIN };

		if (poll(&p, 1, 10) <= 0)
			continue;
		if (read(c->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		uint64_t off = (msg.arg.pagefault.address - (uintptr_t)c->mem) &
			       ~(uint64_t)(c->chunk - 1);
		if (pread(c->fd, c->buf, c->chunk, (off_t)off) !=
		    (ssize_t)c->chunk)
			abort();
		volatile uint64_t h = XXH3_64bits(c->buf, c->chunk);
		(void)h;
		struct uffdio_copy cp = { .dst = (uintptr_t)c->mem + off,
					  .src = (uintptr_t)c->buf,
					  .len = c->chunk };
		if (ioctl(c->uffd, UFFDIO_COPY, &cp) && errno != EEXIST)
			abort();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	size_t size = (argc > 1 ? strtoull(argv[1], NULL, 0) : 256) << 20;
	char path[] = "/var/tmp/chunk_cost.XXXXXX";
	int fd = mkstemp(path);
	uint8_t *data = malloc(size);

	unlink(path);
	for (size_t i = 0; i < size / 8; i++)
		((uint64_t *)data)[i] = i * 0x9e3779b97f4a7c15ull;
	if (write(fd, data, size) != (ssize_t)size)
		return 1;
	free(data);
	printf("%-8s %12s %12s %12s %12s %14s\n", "chunk", "pread us",
	       "xxh3 us", "copy us", "fault rt us", "fill MB/s");
	for (size_t chunk = 64 << 10; chunk <= 2 << 20; chunk <<= 1) {
		struct ctx c = { .fd = fd, .chunk = chunk };
		int memfd = memfd_create("cc", 0);
		double t_read = 0, t_hash = 0, t_copy = 0, t0, t1;
		size_t n = size / chunk, i;

		ftruncate(memfd, (off_t)size);
		c.mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			     memfd, 0);
		c.buf = aligned_alloc(4096, chunk);
		c.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		struct uffdio_api api = { .api = UFFD_API };
		struct uffdio_register reg = {
			.range = { (uintptr_t)c.mem, size },
			.mode = UFFDIO_REGISTER_MODE_MISSING
		};
		if (c.uffd < 0 || ioctl(c.uffd, UFFDIO_API, &api) ||
		    ioctl(c.uffd, UFFDIO_REGISTER, &reg)) {
			perror("userfaultfd");
			return 1;
		}
		/* Background fill of the first half: no faults involved. */
		for (i = 0; i < n / 2; i++) {
			t0 = now_us();
			pread(fd, c.buf, chunk, (off_t)(i * chunk));
			t1 = now_us();
			t_read += t1 - t0;
			volatile uint64_t h = XXH3_64bits(c.buf, chunk);
			(void)h;
			t0 = now_us();
			t_hash += t0 - t1;
			struct uffdio_copy cp = { .dst = (uintptr_t)c.mem +
							 i * chunk,
						  .src = (uintptr_t)c.buf,
						  .len = chunk };
			ioctl(c.uffd, UFFDIO_COPY, &cp);
			t_copy += now_us() - t0;
		}
		/* Faults on the second half, one touch per chunk. */
		pthread_t th;
		pthread_create(&th, NULL, handler, &c);
		t0 = now_us();
		for (i = n / 2; i < n; i++)
			(void)*(volatile uint8_t *)(c.mem + i * chunk + 100);
		t1 = now_us();
		c.stop = 1;
		pthread_join(th, NULL);
		double per = (t_read + t_hash + t_copy) / (n / 2);
		printf("%-8zu %12.1f %12.1f %12.1f %12.1f %14.0f\n",
		       chunk >> 10, t_read / (n / 2), t_hash / (n / 2),
		       t_copy / (n / 2), (t1 - t0) / (n - n / 2), chunk / per);
		munmap(c.mem, size);
		close(memfd);
		close(c.uffd);
		free(c.buf);
	}
	return 0;
}
