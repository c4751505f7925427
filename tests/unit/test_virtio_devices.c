/* The virtio device models (blk, net, console, rng) against the virtio 1.2
 * spec: feature bits, config layout, and requests driven through split
 * queues built in fake guest memory, with a fake transport (fake_virtio.c)
 * and no KVM. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/falloc.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_virtio.h"
#include "virtio/devices.h"

#define RAM_SIZE (4u << 20)
#define QSIZE 64
#define QUEUE_GPA(q) (0x10000ull + 0x4000ull * (q))
#define DATA_GPA 0x100000ull

/* 5.2.6 */
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_GET_LIFETIME 10
#define T_DISCARD 11
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

/* A driver's view: guest RAM at 0, the queues' rings, a bump allocator for
 * buffers. */
struct guest {
	struct guest_mem mem;
	uint8_t *ram;
	struct virtio_device vdev;
	uint16_t avail_idx[VIRTIO_MAX_QUEUES];
	uint16_t used_seen[VIRTIO_MAX_QUEUES];
	uint16_t next_desc[VIRTIO_MAX_QUEUES];
	gpa_t data;
	char dir[64];
};

struct buf {
	gpa_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

static struct guest *guest_new(void)
{
	struct guest *g = calloc(1, sizeof(*g));

	assert_non_null(g);
	g->ram = aligned_alloc(4096, RAM_SIZE);
	assert_non_null(g->ram);
	memset(g->ram, 0, RAM_SIZE);
	guest_mem_wrap(&g->mem, g->ram, RAM_SIZE, 0);
	g->data = DATA_GPA;
	g->vdev.extra_fd = -1;
	g->vdev.ctl_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		g->vdev.kick_fd[q] = -1;
	snprintf(g->dir, sizeof(g->dir), "/tmp/stasis-vdev-XXXXXX");
	assert_non_null(mkdtemp(g->dir));
	fake_virtio_reset();
	return g;
}

/* The driver's side of setup (3.1.1): features, queues, DRIVER_OK. */
static void guest_start(struct guest *g)
{
	struct virtio_device *v = &g->vdev;

	v->driver_features = v->ops->features(v) | 1ull << VIRTIO_F_VERSION_1;
	for (unsigned q = 0; q < v->ops->num_queues; q++) {
		v->vq[q] = (struct virtq){ .size = QSIZE,
					   .enabled = true,
					   .desc_gpa = QUEUE_GPA(q),
					   .avail_gpa = QUEUE_GPA(q) + 0x1000,
					   .used_gpa = QUEUE_GPA(q) + 0x2000,
					   .mem = &g->mem };
		assert_int_equal(virtq_check(&v->vq[q]), 0);
	}
	v->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
}

static void guest_free(struct guest *g)
{
	char cmd[128];

	if (g->vdev.ops)
		g->vdev.ops->destroy(&g->vdev);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g->dir);
	assert_int_equal(system(cmd), 0);
	free(g->ram);
	free(g);
}

static void *gptr(struct guest *g, gpa_t gpa)
{
	assert_true(gpa < RAM_SIZE);
	return g->ram + gpa;
}

static gpa_t galloc(struct guest *g, uint32_t len)
{
	gpa_t gpa = g->data;

	g->data = (g->data + len + 15) & ~15ull;
	assert_true(g->data < RAM_SIZE);
	memset(gptr(g, gpa), 0, len);
	return gpa;
}

/* Makes @n buffers one chain and available on queue @q (2.7.13); returns
 * its head. */
static uint16_t add_chain(struct guest *g, unsigned q, const struct buf *b,
			  unsigned n)
{
	uint16_t head = g->next_desc[q] % QSIZE;

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (head + i) % QSIZE;
		uint8_t *d = gptr(g, QUEUE_GPA(q) + 16ull * idx);
		uint16_t flags = (b[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
		uint16_t next = (idx + 1) % QSIZE;

		memcpy(d, &b[i].gpa, 8);
		memcpy(d + 8, &b[i].len, 4);
		memcpy(d + 12, &flags, 2);
		memcpy(d + 14, &next, 2);
	}
	g->next_desc[q] += n;
	memcpy(
	    gptr(g, QUEUE_GPA(q) + 0x1000 + 4 + 2 * (g->avail_idx[q] % QSIZE)),
	    &head, 2);
	g->avail_idx[q]++;
	memcpy(gptr(g, QUEUE_GPA(q) + 0x1000 + 2), &g->avail_idx[q], 2);
	return head;
}

static uint16_t used_idx(struct guest *g, unsigned q)
{
	uint16_t v;

	memcpy(&v, gptr(g, QUEUE_GPA(q) + 0x2000 + 2), 2);
	return v;
}

/* The next used element of queue @q; fails the test when there is none. */
static void next_used(struct guest *g, unsigned q, uint16_t *head,
		      uint32_t *len)
{
	uint32_t id;
	unsigned slot = g->used_seen[q] % QSIZE;

	assert_true(used_idx(g, q) != g->used_seen[q]);
	memcpy(&id, gptr(g, QUEUE_GPA(q) + 0x2000 + 4 + 8 * slot), 4);
	memcpy(len, gptr(g, QUEUE_GPA(q) + 0x2000 + 8 + 8 * slot), 4);
	*head = (uint16_t)id;
	g->used_seen[q]++;
}

static uint32_t cfg32(struct guest *g, uint32_t off, uint32_t len)
{
	uint8_t b[8] = { 0 };
	uint64_t v = 0;

	g->vdev.ops->config_read(&g->vdev, off, b, len);
	for (uint32_t i = 0; i < len; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return (uint32_t)v;
}

static uint64_t cfg64(struct guest *g, uint32_t off)
{
	uint8_t b[8];
	uint64_t v = 0;

	g->vdev.ops->config_read(&g->vdev, off, b, 8);
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

/* ---------------------------------------------------------------- blk -- */

#define DISK_SECTORS 4096 /* 2 MiB */

static void make_image(const char *path, size_t size, uint8_t fill)
{
	uint8_t *b = malloc(size);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);

	assert_non_null(b);
	assert_true(fd >= 0);
	memset(b, fill, size);
	assert_int_equal(write(fd, b, size), (ssize_t)size);
	close(fd);
	free(b);
}

static struct guest *blk_guest(bool ro, const char *id)
{
	struct guest *g = guest_new();
	char path[128];
	struct disk_config cfg = { .path = path,
				   .readonly = ro,
				   .id = (char *)id };

	snprintf(path, sizeof(path), "%s/disk.img", g->dir);
	make_image(path, DISK_SECTORS * 512, 0xa5);
	assert_int_equal(virtio_blk_create(&g->vdev, NULL, &cfg, "blk0", 3), 0);
	guest_start(g);
	return g;
}

static void disk_path(struct guest *g, char *path, size_t n)
{
	snprintf(path, n, "%s/disk.img", g->dir);
}

/* One request: header, optional data, status (5.2.6). Returns the status
 * byte; *used_len gets the used element's length. */
static uint8_t blk_req(struct guest *g, uint32_t type, uint64_t sector,
		       gpa_t data, uint32_t len, bool data_write,
		       uint32_t *used_len)
{
	gpa_t hdr = galloc(g, 16), status = galloc(g, 1);
	struct buf b[3];
	unsigned n = 0;
	uint16_t head, got;
	uint32_t ulen;

	memcpy(gptr(g, hdr), &type, 4);
	memset(gptr(g, hdr + 4), 0, 4);
	memcpy(gptr(g, hdr + 8), &sector, 8);
	*(uint8_t *)gptr(g, status) = 0xff;
	b[n++] = (struct buf){ hdr, 16, false };
	if (len)
		b[n++] = (struct buf){ data, len, data_write };
	b[n++] = (struct buf){ status, 1, true };
	head = add_chain(g, 0, b, n);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), 0);
	next_used(g, 0, &got, &ulen);
	assert_int_equal(got, head);
	if (used_len)
		*used_len = ulen;
	return *(uint8_t *)gptr(g, status);
}

static void test_blk_features_and_config(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	uint64_t f = g->vdev.ops->features(&g->vdev);

	assert_int_equal(g->vdev.ops->device_id, 2); /* 5.2.1 */
	assert_int_equal(g->vdev.ops->num_queues, 1);
	/* 5.2.3: SIZE_MAX 1, SEG_MAX 2, BLK_SIZE 6, FLUSH 9, DISCARD 13;
	 * no RO, GEOMETRY, TOPOLOGY, CONFIG_WCE, MQ or WRITE_ZEROES. */
	assert_true(
	    f == (1ull << 1 | 1ull << 2 | 1ull << 6 | 1ull << 9 | 1ull << 13));
	/* 5.2.4: struct virtio_blk_config offsets. */
	assert_true(g->vdev.ops->config_len >= 48);
	assert_true(cfg64(g, 0) == DISK_SECTORS); /* capacity */
	assert_true(cfg32(g, 8, 4) >= 4096); /* size_max */
	assert_int_equal(cfg32(g, 12, 4), VIRTQ_MAX_CHAIN - 2); /* seg_max */
	assert_int_equal(cfg32(g, 16, 4), 0); /* geometry, not offered */
	assert_int_equal(cfg32(g, 20, 4), 512); /* blk_size */
	assert_int_equal(cfg32(g, 36, 4), 1u << 21); /* max_discard_sectors */
	assert_int_equal(cfg32(g, 40, 4), 32); /* max_discard_seg */
	assert_int_equal(cfg32(g, 44, 4), 8); /* discard_sector_alignment */
	assert_int_equal(cfg32(g, 48, 4), 0); /* max_write_zeroes_sectors */
	/* Byte-wide reads see the same bytes; past the end reads zero. */
	assert_int_equal(cfg32(g, 1, 1), (DISK_SECTORS >> 8) & 0xff);
	assert_int_equal(cfg32(g, 0x800, 4), 0);
	guest_free(g);

	g = blk_guest(true, NULL);
	assert_true(g->vdev.ops->features(&g->vdev) & 1ull << 5); /* RO */
	guest_free(g);
}

static void test_blk_read_write(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	gpa_t data = galloc(g, 1024), back = galloc(g, 1024);
	uint8_t file[1024];
	uint32_t used;
	char path[128];
	int fd;

	for (int i = 0; i < 1024; i++)
		((uint8_t *)gptr(g, data))[i] = (uint8_t)(i * 7);
	assert_int_equal(blk_req(g, T_OUT, 3, data, 1024, false, &used), S_OK);
	assert_int_equal(used, 1); /* only the status byte is writable */
	disk_path(g, path, sizeof(path));
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, file, 1024, 3 * 512), 1024);
	assert_memory_equal(file, gptr(g, data), 1024);
	/* Neighbours untouched. */
	assert_int_equal(pread(fd, file, 1, 3 * 512 - 1), 1);
	assert_int_equal(file[0], 0xa5);
	close(fd);

	assert_int_equal(blk_req(g, T_IN, 3, back, 1024, true, &used), S_OK);
	assert_int_equal(used, 1025);
	assert_memory_equal(gptr(g, back), gptr(g, data), 1024);
	assert_int_equal(blk_req(g, T_FLUSH, 0, 0, 0, false, NULL), S_OK);
	assert_true(fake_virtio_notifies[0] >= 3);
	assert_int_equal(fake_virtio_fails, 0);
	guest_free(g);
}

/* 2.6.4: the device must not assume how the driver splits a request into
 * descriptors. */
static void test_blk_split_descriptors(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	gpa_t hdr = galloc(g, 16), d1 = galloc(g, 100), d2 = galloc(g, 412);
	gpa_t st = galloc(g, 1);
	uint32_t type = T_IN, len;
	uint64_t sector = 1;
	uint16_t head;
	struct buf b[] = {
		{ hdr, 5, false }, { hdr + 5, 11, false }, { d1, 100, true },
		{ d2, 412, true }, { st, 1, true },
	};

	memcpy(gptr(g, hdr), &type, 4);
	memcpy(gptr(g, hdr + 8), &sector, 8);
	add_chain(g, 0, b, 5);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), 0);
	next_used(g, 0, &head, &len);
	assert_int_equal(*(uint8_t *)gptr(g, st), S_OK);
	assert_int_equal(len, 513);
	assert_int_equal(((uint8_t *)gptr(g, d1))[0], 0xa5);
	assert_int_equal(((uint8_t *)gptr(g, d2))[411], 0xa5);
	guest_free(g);
}

static void test_blk_errors(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	gpa_t data = galloc(g, 1024);

	/* Past the end, partly past, overflowing the sector arithmetic. */
	assert_int_equal(blk_req(g, T_IN, DISK_SECTORS, data, 512, true, NULL),
			 S_IOERR);
	assert_int_equal(
	    blk_req(g, T_OUT, DISK_SECTORS - 1, data, 1024, false, NULL),
	    S_IOERR);
	assert_int_equal(
	    blk_req(g, T_IN, UINT64_MAX / 256, data, 512, true, NULL), S_IOERR);
	/* Not a whole number of sectors. */
	assert_int_equal(blk_req(g, T_IN, 0, data, 100, true, NULL), S_IOERR);
	/* The last sector itself is fine. */
	assert_int_equal(
	    blk_req(g, T_IN, DISK_SECTORS - 1, data, 512, true, NULL), S_OK);
	/* Types not offered. */
	assert_int_equal(blk_req(g, T_GET_LIFETIME, 0, data, 16, true, NULL),
			 S_UNSUPP);
	assert_int_equal(blk_req(g, 0x7777, 0, 0, 0, false, NULL), S_UNSUPP);
	assert_int_equal(fake_virtio_fails, 0);
	guest_free(g);
}

static void test_blk_readonly(void **state)
{
	struct guest *g = blk_guest(true, NULL);
	gpa_t data = galloc(g, 512), seg = galloc(g, 16);
	uint8_t b[512];
	char path[128];
	uint64_t sector = 0;
	uint32_t num = 1;
	int fd;

	memset(gptr(g, data), 0x11, 512);
	/* 5.2.6.2: writes to a read-only device fail. */
	assert_int_equal(blk_req(g, T_OUT, 0, data, 512, false, NULL), S_IOERR);
	memcpy(gptr(g, seg), &sector, 8);
	memcpy(gptr(g, seg + 8), &num, 4);
	assert_int_equal(blk_req(g, T_DISCARD, 0, seg, 16, false, NULL),
			 S_IOERR);
	assert_int_equal(blk_req(g, T_IN, 0, data, 512, true, NULL), S_OK);
	assert_int_equal(((uint8_t *)gptr(g, data))[0], 0xa5);
	assert_int_equal(blk_req(g, T_FLUSH, 0, 0, 0, false, NULL), S_OK);
	disk_path(g, path, sizeof(path));
	fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, b, 512, 0), 512);
	close(fd);
	assert_int_equal(b[0], 0xa5);
	guest_free(g);
}

static void test_blk_get_id(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	gpa_t id = galloc(g, 20);
	uint8_t want[20] = "blk0";
	uint32_t used;

	memset(gptr(g, id), 0xee, 20);
	assert_int_equal(blk_req(g, T_GET_ID, 0, id, 20, true, &used), S_OK);
	assert_int_equal(used, 21);
	/* 5.2.6: NUL-padded to 20 bytes. */
	assert_memory_equal(gptr(g, id), want, 20);
	guest_free(g);

	g = blk_guest(false, "abcdefghij0123456789");
	id = galloc(g, 20);
	assert_int_equal(blk_req(g, T_GET_ID, 0, id, 20, true, NULL), S_OK);
	assert_memory_equal(gptr(g, id), "abcdefghij0123456789", 20);
	guest_free(g);
}

static void put_seg(struct guest *g, gpa_t at, uint64_t sector, uint32_t num,
		    uint32_t flags)
{
	memcpy(gptr(g, at), &sector, 8);
	memcpy(gptr(g, at + 8), &num, 4);
	memcpy(gptr(g, at + 12), &flags, 4);
}

/* Whether the file system holding @path punches holes: tried on a
 * scratch file beside it. */
static bool punch_hole_works(const char *path)
{
	char scratch[160];
	bool ok;
	int fd;

	snprintf(scratch, sizeof(scratch), "%s.punch", path);
	fd = open(scratch, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8192), 0);
	ok =
	    !fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);
	close(fd);
	unlink(scratch);
	return ok;
}

static void test_blk_discard(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	gpa_t seg = galloc(g, 64);
	uint8_t b[8 * 512], zero[8 * 512] = { 0 };
	char path[128];
	struct stat st;
	int fd;

	/* Two segments: 8 sectors at 8, 8 sectors at 64. */
	put_seg(g, seg, 8, 8, 0);
	put_seg(g, seg + 16, 64, 8, 0);
	assert_int_equal(blk_req(g, T_DISCARD, 0, seg, 32, false, NULL), S_OK);
	disk_path(g, path, sizeof(path));
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, DISK_SECTORS * 512); /* KEEP_SIZE */
	/* Where the file system punches holes (tmpfs, ext4, xfs...), both
	 * ranges must read as zeros; one that cannot keeps the data, which a
	 * discard allows. */
	if (punch_hole_works(path)) {
		assert_int_equal(pread(fd, b, sizeof(b), 8 * 512),
				 (ssize_t)sizeof(b));
		assert_memory_equal(b, zero, sizeof(b));
		assert_int_equal(pread(fd, b, sizeof(b), 64 * 512),
				 (ssize_t)sizeof(b));
		assert_memory_equal(b, zero, sizeof(b));
	}
	assert_int_equal(pread(fd, b, 1, 7 * 512), 1);
	assert_int_equal(b[0], 0xa5);
	assert_int_equal(pread(fd, b, 1, 16 * 512), 1);
	assert_int_equal(b[0], 0xa5);
	close(fd);

	/* 5.2.6.2: the unmap flag or an unknown flag on a discard. */
	put_seg(g, seg, 0, 8, 1);
	assert_int_equal(blk_req(g, T_DISCARD, 0, seg, 16, false, NULL),
			 S_UNSUPP);
	put_seg(g, seg, 0, 8, 0x80);
	assert_int_equal(blk_req(g, T_DISCARD, 0, seg, 16, false, NULL),
			 S_UNSUPP);
	/* Beyond the disk, beyond max_discard_sectors, a torn segment. */
	put_seg(g, seg, DISK_SECTORS - 4, 8, 0);
	assert_int_equal(blk_req(g, T_DISCARD, 0, seg, 16, false, NULL),
			 S_IOERR);
	put_seg(g, seg, 0, (1u << 21) + 1, 0);
	assert_int_equal(blk_req(g, T_DISCARD, 0, seg, 16, false, NULL),
			 S_IOERR);
	assert_int_equal(blk_req(g, T_DISCARD, 0, seg, 12, false, NULL),
			 S_IOERR);
	guest_free(g);
}

/* A header too short to read, a chain without a status byte: the device
 * answers what it can and carries on. */
static void test_blk_malformed(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	gpa_t hdr = galloc(g, 16), st = galloc(g, 1);
	struct buf shorthdr[] = { { hdr, 8, false }, { st, 1, true } };
	struct buf nostatus[] = { { hdr, 16, false } };
	struct buf outside[] = { { RAM_SIZE - 8, 16, false }, { st, 1, true } };
	uint16_t head;
	uint32_t len;

	add_chain(g, 0, shorthdr, 2);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), 0);
	next_used(g, 0, &head, &len);
	assert_int_equal(*(uint8_t *)gptr(g, st), S_IOERR);
	add_chain(g, 0, nostatus, 1);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), 0);
	next_used(g, 0, &head, &len);
	assert_int_equal(len, 0);
	assert_int_equal(fake_virtio_fails, 0);

	/* A buffer outside guest RAM breaks the queue: NEEDS_RESET. */
	add_chain(g, 0, outside, 2);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), -EIO);
	assert_int_equal(fake_virtio_fails, 1);
	assert_true(g->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
	guest_free(g);
}

/* With EVENT_IDX (2.7.10) the device asks for a kick at the next new
 * buffer once it has drained the queue: avail_event = avail idx. */
static void test_blk_event_idx(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	gpa_t data = galloc(g, 512);
	uint16_t avail_event;

	g->vdev.vq[0].event_idx = true;
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    blk_req(g, T_IN, (uint64_t)i, data, 512, true, NULL), S_OK);
	memcpy(&avail_event, gptr(g, QUEUE_GPA(0) + 0x2000 + 4 + 8 * QSIZE), 2);
	assert_int_equal(avail_event, 3);
	guest_free(g);
}

/* Random requests, seeded: every one is answered with a valid status, the
 * device writes nothing outside the chain's writable buffers, and the
 * image keeps its size. */
static void test_blk_random_requests(void **state)
{
	static const uint32_t types[] = {
		T_IN,		T_OUT,	   T_FLUSH, T_GET_ID,
		T_GET_LIFETIME, T_DISCARD, 13,	    99
	};
	struct guest *g = blk_guest(false, NULL);
	uint8_t *before = malloc(0x10000);
	char path[128];
	unsigned ok = 0;
	struct stat st;

	assert_non_null(before);
	srand(4);
	for (int i = 0; i < 2000; i++) {
		uint32_t type = types[rand() % 8];
		uint64_t sector = rand() % 4 ? (uint64_t)(rand() % 4200)
					     : (uint64_t)rand() << 40 | rand();
		/* Discard segments (16 bytes) or whole and torn sectors. */
		uint32_t olen = rand() % 2 ? 16u * (uint32_t)(rand() % 9)
					   : 128u * (uint32_t)(rand() % 9);
		uint32_t ilen = 128u * (uint32_t)(rand() % 9);
		gpa_t hdr = DATA_GPA, out = hdr + 0x100, in = out + 0x1000;
		gpa_t st_gpa = in + 0x1000;
		struct buf b[4];
		unsigned n = 0;
		uint8_t status;
		uint16_t head;
		uint32_t len;

		memset(gptr(g, DATA_GPA), 0xcc, 0x10000);
		memcpy(gptr(g, hdr), &type, 4);
		memcpy(gptr(g, hdr + 8), &sector, 8);
		for (uint32_t k = 0; k < olen; k++)
			((uint8_t *)gptr(g, out))[k] = (uint8_t)rand();
		b[n++] = (struct buf){ hdr, 16, false };
		if (olen)
			b[n++] = (struct buf){ out, olen, false };
		if (ilen)
			b[n++] = (struct buf){ in, ilen, true };
		b[n++] = (struct buf){ st_gpa, 1, true };
		memcpy(before, gptr(g, DATA_GPA), 0x10000);
		add_chain(g, 0, b, n);
		assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), 0);
		next_used(g, 0, &head, &len);
		assert_int_equal(len, ilen + 1);
		status = *(uint8_t *)gptr(g, st_gpa);
		assert_true(status <= S_UNSUPP);
		ok += status == S_OK;
		/* Only [in, in + ilen) and the status byte may change. */
		assert_memory_equal(before, gptr(g, DATA_GPA), in - DATA_GPA);
		assert_memory_equal(before + (in + ilen - DATA_GPA),
				    gptr(g, in + ilen), st_gpa - in - ilen);
		assert_memory_equal(before + (st_gpa + 1 - DATA_GPA),
				    gptr(g, st_gpa + 1),
				    0x10000 - (st_gpa + 1 - DATA_GPA));
	}
	assert_int_equal(fake_virtio_fails, 0);
	assert_true(ok > 200); /* not only errors */
	disk_path(g, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, DISK_SECTORS * 512);
	free(before);
	guest_free(g);
}

static void test_blk_identity(void **state)
{
	struct guest *g = blk_guest(false, NULL);
	const struct state_desc *d = g->vdev.ops->state_desc;
	gpa_t data = galloc(g, 512);
	struct timespec times[2];
	char err[512], path[128];
	uint8_t saved[64];
	struct stat st;
	int fd;

	disk_path(g, path, sizeof(path));
	assert_non_null(d);
	assert_non_null(g->vdev.ops->pre_save);
	/* A write, then the snapshot's pre-save: the identity is the
	 * image's after the write. */
	memset(gptr(g, data), 0x5a, 512);
	assert_int_equal(blk_req(g, T_OUT, 0, data, 512, false, NULL), S_OK);
	assert_int_equal(g->vdev.ops->pre_save(&g->vdev), 0);
	assert_int_equal(virtio_blk_check_identity(&g->vdev, err, sizeof(err)),
			 0);
	assert_true(state_encoded_size(d) <= sizeof(saved));
	assert_int_equal(state_encode(d, g->vdev.priv, saved, sizeof(saved)),
			 0);
	assert_int_equal(g->vdev.ops->post_load(&g->vdev, err, sizeof(err)), 0);

	/* The same bytes and size but a new mtime. */
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	times[0] = st.st_atim;
	times[1] = st.st_mtim;
	times[1].tv_nsec = (times[1].tv_nsec + 1) % 1000000000;
	assert_int_equal(futimens(fd, times), 0);
	assert_int_equal(virtio_blk_check_identity(&g->vdev, err, sizeof(err)),
			 -ESTALE);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "modified"));
	/* Restore's path gives the same one line back to its caller. */
	memset(err, 0, sizeof(err));
	assert_int_equal(g->vdev.ops->post_load(&g->vdev, err, sizeof(err)),
			 -ESTALE);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "modified"));
	assert_null(strchr(err, '\n'));

	/* A byte of the first MiB changed, the mtime put back. */
	assert_int_equal(pwrite(fd, "x", 1, 4096), 1);
	times[1] = st.st_mtim;
	assert_int_equal(futimens(fd, times), 0);
	assert_int_equal(virtio_blk_check_identity(&g->vdev, err, sizeof(err)),
			 -ESTALE);
	assert_non_null(strstr(err, "first MiB"));

	/* Grown. */
	assert_int_equal(ftruncate(fd, DISK_SECTORS * 512 + 4096), 0);
	assert_int_equal(virtio_blk_check_identity(&g->vdev, err, sizeof(err)),
			 -ESTALE);
	assert_non_null(strstr(err, "bytes"));
	close(fd);
	guest_free(g);

	/* Restore: a fresh device on the (changed) image takes the recorded
	 * identity from the state record and refuses it, unless the disk
	 * was given again (replaced). */
	for (int replaced = 0; replaced < 2; replaced++) {
		struct disk_config cfg = { .path = path, .replaced = replaced };

		g = guest_new();
		snprintf(path, sizeof(path), "%s/disk.img", g->dir);
		make_image(path, DISK_SECTORS * 512, 0x77);
		assert_int_equal(
		    virtio_blk_create(&g->vdev, NULL, &cfg, "blk0", 3), 0);
		assert_int_equal(state_decode(d, d->version, g->vdev.priv,
					      saved, state_encoded_size(d)),
				 0);
		err[0] = '\0';
		assert_int_equal(
		    g->vdev.ops->post_load(&g->vdev, err, sizeof(err)),
		    replaced ? 0 : -ESTALE);
		/* Refused: the reason names the disk and what differs. */
		if (!replaced) {
			assert_non_null(strstr(err, path));
			assert_non_null(
			    strstr(err, "changed since the snapshot"));
		}
		guest_free(g);
	}
}

/* A snapshot's virtio-blk record for the image at @path: a device on it
 * (with verify=hash when @verify), pre-saved, encoded at the current
 * table version into @saved. */
static size_t blk_save_record(const char *path, bool verify, uint8_t *saved,
			      size_t n)
{
	struct guest *g = guest_new();
	struct disk_config cfg = { .path = (char *)path,
				   .verify_hash = verify };
	const struct state_desc *d;
	size_t len;

	assert_int_equal(virtio_blk_create(&g->vdev, NULL, &cfg, "blk0", 3), 0);
	d = g->vdev.ops->state_desc;
	len = state_encoded_size(d);
	assert_true(len <= n);
	assert_int_equal(g->vdev.ops->pre_save(&g->vdev), 0);
	assert_int_equal(state_encode(d, g->vdev.priv, saved, len), 0);
	guest_free(g);
	return len;
}

/* A restore of that record onto the image now at @path: a fresh device
 * opened by path, the record decoded at @version, post_load. */
static int blk_restore_record(const char *path, const uint8_t *saved,
			      uint16_t version, bool replaced, bool verify,
			      char *err, size_t errlen)
{
	struct guest *g = guest_new();
	struct disk_config cfg = { .path = (char *)path,
				   .replaced = replaced,
				   .verify_hash = verify };
	const struct state_desc *d;
	int ret;

	assert_int_equal(virtio_blk_create(&g->vdev, NULL, &cfg, "blk0", 3), 0);
	d = g->vdev.ops->state_desc;
	assert_int_equal(state_decode(d, version, g->vdev.priv, saved,
				      state_encoded_size_v(d, version)),
			 0);
	err[0] = '\0';
	ret = g->vdev.ops->post_load(&g->vdev, err, errlen);
	if (ret) {
		assert_non_null(strstr(err, path));
		assert_null(strchr(err, '\n'));
	}
	guest_free(g);
	return ret;
}

/* Sets @path's mtime back to @mtime, as `touch -d` does. */
static void set_mtime(const char *path, struct timespec mtime)
{
	struct timespec t[2] = { { .tv_nsec = UTIME_OMIT }, mtime };

	assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

static void run_cmd(const char *fmt, const char *a, const char *b)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), fmt, a, b);
	assert_int_equal(system(cmd), 0);
}

/* What the version 2 identity catches on one host: a write past the
 * hashed first MiB with the mtime put back, a copy with every time
 * preserved, a file renamed over the path; and what verify=hash lets
 * through (a copy) and catches (any changed byte). */
static void test_blk_identity_same_host(void **state)
{
	char dir[] = "/tmp/stasis-blkid-XXXXXX", img[128], copy[128], err[512];
	uint8_t saved[128], v1[128];
	struct stat st;
	size_t len;

	assert_non_null(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	snprintf(copy, sizeof(copy), "%s/copy.img", dir);
	make_image(img, 3 << 20, 0x3c);
	len = blk_save_record(img, false, saved, sizeof(saved));
	assert_int_equal(stat(img, &st), 0);
	/* Unchanged: accepted, again and again. */
	assert_int_equal(
	    blk_restore_record(img, saved, 2, false, false, err, sizeof(err)),
	    0);
	assert_int_equal(
	    blk_restore_record(img, saved, 2, false, false, err, sizeof(err)),
	    0);

	/* 4 KiB written at 2 MiB, past the first MiB, the mtime put back:
	 * the ctime tells. A version 1 record (size, mtime, first MiB) is
	 * checked as before, and misses it. */
	{
		uint8_t junk[4096];
		int fd = open(img, O_WRONLY);

		memset(junk, 0xee, sizeof(junk));
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, junk, sizeof(junk), 2 << 20),
				 (ssize_t)sizeof(junk));
		close(fd);
	}
	set_mtime(img, st.st_mtim);
	assert_int_equal(
	    blk_restore_record(img, saved, 2, false, false, err, sizeof(err)),
	    -ESTALE);
	assert_non_null(strstr(err, "ctime"));
	memcpy(v1, saved, len);
	assert_int_equal(
	    blk_restore_record(img, v1, 1, false, false, err, sizeof(err)), 0);
	/* Vouched for: accepted. */
	assert_int_equal(
	    blk_restore_record(img, saved, 2, true, false, err, sizeof(err)),
	    0);

	/* A write right after the snapshot, within the kernel's time tick:
	 * the snapshot waited for the tick to pass, so ctime still moves. */
	for (int i = 0; i < 20; i++) {
		int fd;

		blk_save_record(img, false, saved, sizeof(saved));
		fd = open(img, O_WRONLY);
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(pwrite(fd, "y", 1, (2 << 20) + i), 1);
		close(fd);
		set_mtime(img, st.st_mtim);
		if (blk_restore_record(img, saved, 2, false, false, err,
				       sizeof(err)) != -ESTALE)
			fail_msg("a write at once after the snapshot (try %d) "
				 "was not seen",
				 i);
	}

	/* A copy with everything preserved, renamed over the path. */
	make_image(img, 3 << 20, 0x3c);
	len = blk_save_record(img, false, saved, sizeof(saved));
	run_cmd("cp --preserve=all '%s' '%s'", img, copy);
	assert_int_equal(
	    blk_restore_record(copy, saved, 2, false, false, err, sizeof(err)),
	    -ESTALE);
	assert_non_null(strstr(err, "another file"));
	run_cmd("mv '%s' '%s'", copy, img);
	assert_int_equal(
	    blk_restore_record(img, saved, 2, false, false, err, sizeof(err)),
	    -ESTALE);
	assert_non_null(strstr(err, "another file"));
	/* ... yet a copy is what verify=hash accepts, on its content, but
	 * only when the snapshot holds the hash. */
	assert_int_equal(
	    blk_restore_record(img, saved, 2, true, true, err, sizeof(err)),
	    -ESTALE);
	assert_non_null(strstr(err, "no hash"));
	len = blk_save_record(img, true, saved, sizeof(saved));
	run_cmd("cp '%s' '%s'", img, copy);
	assert_int_equal(
	    blk_restore_record(copy, saved, 2, true, true, err, sizeof(err)),
	    0);
	/* The config says verify=hash (not replaced): a copy renamed over
	 * the path passes on its content too. */
	run_cmd("mv '%s' '%s'", copy, img);
	assert_int_equal(
	    blk_restore_record(img, saved, 2, false, true, err, sizeof(err)),
	    0);
	/* One byte at the end, size and first MiB the same: refused. */
	{
		int fd = open(img, O_WRONLY);

		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, "x", 1, (3 << 20) - 1), 1);
		close(fd);
	}
	assert_int_equal(
	    blk_restore_record(img, saved, 2, false, true, err, sizeof(err)),
	    -ESTALE);
	assert_non_null(strstr(err, "content hash"));
	(void)len;
	run_cmd("rm -rf '%s'%s", dir, "");
}

/* Attaches @img to a free loop device, its name in @dev; false when this
 * host cannot (not root, no losetup, no loop driver). */
static bool loop_attach(const char *img, char *dev, size_t n)
{
	char cmd[256];
	FILE *p;
	bool ok;

	if (geteuid() != 0)
		return false;
	snprintf(cmd, sizeof(cmd), "losetup -f --show '%s' 2>/dev/null", img);
	p = popen(cmd, "r");
	if (!p)
		return false;
	ok = fgets(dev, (int)n, p) && !strncmp(dev, "/dev/loop", 9);
	pclose(p);
	if (ok)
		dev[strcspn(dev, "\n")] = '\0';
	return ok;
}

/* A block device: its device number is compared, not its node's times
 * (they move only with writes through that node); a write through the
 * loop device's file, past the first MiB, is caught by verify=hash only. */
static void test_blk_identity_block_device(void **state)
{
	char dir[] = "/tmp/stasis-blkid-XXXXXX", img[128], img2[128], dev[64],
	     dev2[64], err[512];
	uint8_t saved[128];
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/a.img", dir);
	snprintf(img2, sizeof(img2), "%s/b.img", dir);
	make_image(img, 2 << 20, 0x11);
	make_image(img2, 2 << 20, 0x11);
	if (!loop_attach(img, dev, sizeof(dev))) {
		run_cmd("rm -rf '%s'%s", dir, "");
		skip(); /* needs root and a loop device */
	}
	assert_true(loop_attach(img2, dev2, sizeof(dev2)));
	blk_save_record(dev, false, saved, sizeof(saved));
	assert_int_equal(
	    blk_restore_record(dev, saved, 2, false, false, err, sizeof(err)),
	    0);
	/* The same size and contents on another device. */
	assert_int_equal(
	    blk_restore_record(dev2, saved, 2, false, false, err, sizeof(err)),
	    -ESTALE);
	assert_non_null(strstr(err, "another block device"));
	/* A regular file where the device was. */
	assert_int_equal(
	    blk_restore_record(img, saved, 2, false, false, err, sizeof(err)),
	    -ESTALE);

	/* With verify=hash, a write behind the device's back is caught. */
	blk_save_record(dev, true, saved, sizeof(saved));
	fd = open(img, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "x", 1, (3 << 19)), 1);
	assert_int_equal(fsync(fd), 0);
	close(fd);
	run_cmd("blockdev --flushbufs '%s'%s", dev, "");
	assert_int_equal(
	    blk_restore_record(dev, saved, 2, false, true, err, sizeof(err)),
	    -ESTALE);
	assert_non_null(strstr(err, "content hash"));
	run_cmd("losetup -d '%s' '%s'", dev, dev2);
	run_cmd("rm -rf '%s'%s", dir, "");
}

/* The saved identity's flags: unknown bits are refused at decode. */
static void test_blk_identity_bad_flags(void **state)
{
	char dir[] = "/tmp/stasis-blkid-XXXXXX", img[128];
	uint8_t saved[128];
	struct guest *g;
	struct disk_config cfg = { .path = img };
	const struct state_desc *d;
	size_t len;

	assert_non_null(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	make_image(img, 1 << 20, 0);
	len = blk_save_record(img, false, saved, sizeof(saved));
	/* saved_ident follows the three u64 of version 1. */
	saved[24] |= 0x80;
	g = guest_new();
	assert_int_equal(virtio_blk_create(&g->vdev, NULL, &cfg, "blk0", 3), 0);
	d = g->vdev.ops->state_desc;
	assert_int_not_equal(state_decode(d, 2, g->vdev.priv, saved, len), 0);
	guest_free(g);
	run_cmd("rm -rf '%s'%s", dir, "");
}

static void test_blk_missing_image(void **state)
{
	struct guest *g = guest_new();
	struct disk_config cfg = { .path = "/nonexistent/disk.img" };

	assert_int_equal(virtio_blk_create(&g->vdev, NULL, &cfg, "blk0", 3),
			 -ENOENT);
	assert_null(g->vdev.priv);
	guest_free(g);
}

/* ---------------------------------------------------------------- rng -- */

static void test_rng(void **state)
{
	struct guest *g = guest_new();
	gpa_t a = galloc(g, 16), b = galloc(g, 48), r = galloc(g, 8);
	struct buf chain[] = { { a, 16, true }, { b, 48, true } };
	struct buf readonly[] = { { r, 8, false } };
	uint8_t zero[48] = { 0 };
	uint16_t head;
	uint32_t len;

	assert_int_equal(virtio_rng_create(&g->vdev, NULL, "rng0", 4), 0);
	assert_int_equal(g->vdev.ops->device_id, 4); /* 5.4.1 */
	assert_int_equal(g->vdev.ops->num_queues, 1);
	assert_int_equal(g->vdev.ops->config_len, 0);
	assert_true(g->vdev.ops->features(&g->vdev) == 0);
	guest_start(g);
	add_chain(g, 0, chain, 2);
	add_chain(g, 0, readonly, 1);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), 0);
	next_used(g, 0, &head, &len);
	assert_int_equal(len, 64);
	/* 2^-128 and 2^-384 chances of a false failure. */
	assert_memory_not_equal(gptr(g, a), zero, 16);
	assert_memory_not_equal(gptr(g, b), zero, 48);
	next_used(g, 0, &head, &len);
	assert_int_equal(len, 0);
	assert_int_equal(fake_virtio_notifies[0], 1); /* one interrupt */
	guest_free(g);
}

/* ------------------------------------------------------------ console -- */

static void test_console_file(void **state)
{
	struct guest *g = guest_new();
	gpa_t a = galloc(g, 6), b = galloc(g, 5);
	struct buf chain[] = { { a, 6, false }, { b, 5, false } };
	char path[128], out[64] = "";
	uint64_t f;
	uint16_t head;
	uint32_t len;
	int fd;

	snprintf(path, sizeof(path), "%s/console.log", g->dir);
	assert_int_equal(virtio_console_create(&g->vdev, NULL, CONSOLE_FILE,
					       path, "console0", 5),
			 0);
	assert_int_equal(g->vdev.ops->device_id, 3); /* 5.3.1 */
	assert_int_equal(g->vdev.ops->num_queues, 2);
	f = g->vdev.ops->features(&g->vdev);
	/* 5.3.3: SIZE 0 and EMERG_WRITE 2; no MULTIPORT (1). */
	assert_true(f == (1ull << 0 | 1ull << 2));
	/* 5.3.4: cols 0, rows 2, max_nr_ports 4, emerg_wr 8. */
	assert_int_equal(g->vdev.ops->config_len, 12);
	assert_int_equal(cfg32(g, 0, 2), 80);
	assert_int_equal(cfg32(g, 2, 2), 25);
	assert_int_equal(cfg32(g, 4, 4), 1);
	assert_int_equal(g->vdev.extra_fd, -1); /* a file has no input */
	guest_start(g);

	memcpy(gptr(g, a), "hello ", 6);
	memcpy(gptr(g, b), "world", 5);
	add_chain(g, 1, chain, 2);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 1), 0);
	next_used(g, 1, &head, &len);
	assert_int_equal(len, 0);
	/* Emergency write (5.3.4): one character at once. */
	g->vdev.ops->config_write(&g->vdev, 8, (const uint8_t *)"!\0\0\0", 4);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, out, sizeof(out) - 1), 12);
	close(fd);
	assert_string_equal(out, "hello world!");
	guest_free(g);
}

/* A console on a socket in @g's directory (its address in *@sa), started,
 * with a client connected and accepted; @rcvbuf, when not 0, is the
 * client's receive buffer size. Returns the client. */
static int console_socket_client(struct guest *g, struct sockaddr_un *sa,
				 int rcvbuf)
{
	int c;

	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/con.sock", g->dir);
	assert_int_equal(virtio_console_create(&g->vdev, NULL, CONSOLE_SOCKET,
					       sa->sun_path, "console0", 5),
			 0);
	guest_start(g);
	assert_true(g->vdev.extra_fd >= 0); /* the listening socket */
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(c >= 0);
	if (rcvbuf)
		setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	assert_int_equal(connect(c, (struct sockaddr *)sa, sizeof(*sa)), 0);
	assert_int_equal(g->vdev.ops->fd_ready(&g->vdev), 0); /* accept */
	return c;
}

static void test_console_socket(void **state)
{
	struct guest *g = guest_new();
	struct sockaddr_un sa;
	gpa_t in = galloc(g, 16), out = galloc(g, 4);
	struct buf rx[] = { { in, 16, true } };
	struct buf tx[] = { { out, 4, false } };
	char got[8] = "";
	uint16_t head;
	uint32_t len;
	int c = console_socket_client(g, &sa, 0);

	assert_int_equal(write(c, "abc", 3), 3);
	/* No receive buffer yet: the input waits in the socket. */
	assert_int_equal(g->vdev.ops->fd_ready(&g->vdev), -EAGAIN);
	add_chain(g, 0, rx, 1);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), 0);
	next_used(g, 0, &head, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(gptr(g, in), "abc", 3);

	memcpy(gptr(g, out), "xyz\n", 4);
	add_chain(g, 1, tx, 1);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 1), 0);
	assert_int_equal(read(c, got, sizeof(got)), 4);
	assert_memory_equal(got, "xyz\n", 4);

	/* The client leaves: the device listens again. */
	close(c);
	add_chain(g, 0, rx, 1);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 0), 0);
	assert_int_equal(used_idx(g, 0), 1);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(g->vdev.ops->fd_ready(&g->vdev), 0);
	assert_int_equal(write(c, "z", 1), 1);
	assert_int_equal(g->vdev.ops->fd_ready(&g->vdev), 0);
	next_used(g, 0, &head, &len);
	assert_int_equal(len, 1);
	close(c);
	guest_free(g);
}

/* A reader that cannot keep up (a pipe of one page here): the chain stays
 * in the queue, the worker is asked to wait for room, and the count of
 * bytes already out is device state, so a snapshot taken then and
 * restored writes the rest and nothing twice. */
static void test_console_full_reader(void **state)
{
	struct guest *g = guest_new();
	enum { LEN = 10000 };
	gpa_t a = galloc(g, LEN);
	struct buf chain[] = { { a, LEN, false } };
	const struct state_desc *d;
	uint8_t saved[16], *want = gptr(g, a), got[LEN];
	char path[128];
	size_t have = 0;
	ssize_t r;
	uint16_t head;
	uint32_t len;
	int rd;

	for (unsigned i = 0; i < LEN; i++)
		want[i] = (uint8_t)(i * 7 + i / 251);
	snprintf(path, sizeof(path), "%s/fifo", g->dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	rd = open(path, O_RDONLY | O_NONBLOCK);
	assert_true(rd >= 0);
	assert_int_equal(virtio_console_create(&g->vdev, NULL, CONSOLE_FILE,
					       path, "console0", 5),
			 0);
	assert_true(fcntl(rd, F_SETPIPE_SZ, 4096) >= 4096);
	d = g->vdev.ops->state_desc;
	assert_non_null(d);
	guest_start(g);
	add_chain(g, 1, chain, 1);

	/* The first page goes out; the rest waits with the chain. */
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 1), 0);
	assert_int_equal(used_idx(g, 1), 0);
	assert_true(g->vdev.out_wait_fd >= 0);
	assert_int_equal(g->vdev.out_wait_queue, 1);
	assert_int_equal(g->vdev.out_wait_deadline, 0); /* no limit */
	r = read(rd, got, sizeof(got));
	assert_true(r > 0 && r < LEN);
	have = (size_t)r;

	/* Saved now, and loaded into a device that lost the count (as a
	 * fresh process would have it): the count comes back. */
	assert_true(state_encoded_size(d) <= sizeof(saved));
	assert_int_equal(state_encode(d, g->vdev.priv, saved, sizeof(saved)),
			 0);
	g->vdev.ops->reset(&g->vdev);
	assert_int_equal(
	    state_decode(d, 1, g->vdev.priv, saved, state_encoded_size(d)), 0);

	/* Room again, as the worker would see it: the rest follows. */
	while (have < LEN) {
		g->vdev.out_wait_fd = -1;
		assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 1), 0);
		r = read(rd, got + have, sizeof(got) - have);
		assert_true(r > 0);
		have += (size_t)r;
	}
	next_used(g, 1, &head, &len);
	assert_int_equal(len, 0);
	assert_int_equal(g->vdev.out_wait_fd, -1);
	assert_memory_equal(got, want, LEN);
	/* Nothing more: the chain was not written twice. */
	assert_int_equal(read(rd, got, 1), -1);
	assert_int_equal(errno, EAGAIN);
	close(rd);
	guest_free(g);
}

/* A socket client that stops reading: output waits with a time limit
 * (after which the client is dropped), and continues when it reads. */
static void test_console_socket_full(void **state)
{
	struct guest *g = guest_new();
	struct sockaddr_un sa;
	enum { LEN = 60000 };
	gpa_t out = galloc(g, LEN);
	struct buf tx[] = { { out, LEN, false } };
	uint8_t got[LEN];
	int c = console_socket_client(g, &sa, 4096), sent = 0;
	uint16_t head;
	uint32_t len;
	ssize_t r;

	memset(gptr(g, out), 'x', LEN);
	/* Chains until the client's socket is full. */
	while (g->vdev.out_wait_fd < 0) {
		assert_true(sent < 1000);
		add_chain(g, 1, tx, 1);
		assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 1), 0);
		sent++;
	}
	assert_int_equal(g->vdev.out_wait_queue, 1);
	assert_true(g->vdev.out_wait_deadline > 0 &&
		    g->vdev.out_wait_deadline <= 5000);
	assert_int_equal(used_idx(g, 1), sent - 1);
	/* The client reads everything; the waiting chain completes. */
	for (size_t total = 0; total < (size_t)sent * LEN; total += (size_t)r) {
		g->vdev.out_wait_fd = -1;
		assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 1), 0);
		r = recv(c, got, sizeof(got), MSG_DONTWAIT);
		assert_true(r > 0);
		assert_memory_equal(got, gptr(g, out), (size_t)r);
	}
	assert_int_equal(used_idx(g, 1), sent);
	while (used_idx(g, 1) != g->used_seen[1])
		next_used(g, 1, &head, &len);
	close(c);
	guest_free(g);
}

/* ---------------------------------------------------------------- net -- */

#define NET_HDR 12

static struct guest *net_guest(const char *dir, const char *self,
			       const char *peer, const char *mac)
{
	struct guest *g = guest_new();
	char spec[300], err[256];
	struct net_config cfg;

	snprintf(spec, sizeof(spec), "unix=%s/%s%s%s%s%s", dir ? dir : g->dir,
		 self, peer ? ",peer=" : "", peer ? (dir ? dir : g->dir) : "",
		 peer ? "/" : "", peer ? peer : "");
	if (mac) {
		strcat(spec, ",mac=");
		strcat(spec, mac);
	}
	assert_int_equal(config_parse_net(&cfg, spec, err, sizeof(err)), 0);
	assert_int_equal(virtio_net_create(&g->vdev, NULL, &cfg, 0, "net0", 6),
			 0);
	config_free_net(&cfg);
	guest_start(g);
	return g;
}

/* Sends frame @seq (60 bytes) from @g: header then frame, split in two
 * descriptors. */
static void net_send(struct guest *g, uint32_t seq)
{
	gpa_t h = galloc(g, NET_HDR), f = galloc(g, 60);
	struct buf b[] = { { h, NET_HDR, false }, { f, 60, false } };

	memset(gptr(g, f), 0xff, 6); /* broadcast */
	memcpy(gptr(g, f + 14), &seq, 4);
	add_chain(g, 1, b, 2);
}

static void net_add_rx(struct guest *g, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct buf b = { galloc(g, 1526), 1526, true };

		add_chain(g, 0, &b, 1);
	}
}

/* The next received frame's sequence number; checks the header. */
static uint32_t net_recv(struct guest *g)
{
	uint16_t head, nbuf;
	uint32_t len, seq;
	gpa_t at;

	next_used(g, 0, &head, &len);
	assert_int_equal(len, NET_HDR + 60);
	/* Our chains are one descriptor: find its buffer. */
	memcpy(&at, gptr(g, QUEUE_GPA(0) + 16ull * head), 8);
	assert_int_equal(((uint8_t *)gptr(g, at))[0], 0); /* flags */
	assert_int_equal(((uint8_t *)gptr(g, at))[1], 0); /* gso none */
	memcpy(&nbuf, gptr(g, at + 10), 2);
	assert_int_equal(nbuf, 1); /* num_buffers (5.1.6.4) */
	memcpy(&seq, gptr(g, at + NET_HDR + 14), 4);
	return seq;
}

static void test_net_config(void **state)
{
	struct guest *g = net_guest(NULL, "a", NULL, "52:54:00:aa:bb:cc");
	struct guest *h = net_guest(NULL, "b", NULL, NULL);
	const struct state_desc *d;
	uint8_t mac[6], mac2[6], saved[8];

	assert_int_equal(g->vdev.ops->device_id, 1); /* 5.1.1 */
	assert_int_equal(g->vdev.ops->num_queues, 3);
	/* 5.1.3: MAC 5, STATUS 16, CTRL_VQ 17 and GUEST_ANNOUNCE 21; no
	 * offloads, no MRG_RXBUF. */
	assert_true(g->vdev.ops->features(&g->vdev) ==
		    (1ull << 5 | 1ull << 16 | 1ull << 17 | 1ull << 21));
	/* 5.1.4: mac 0, status 6, max_virtqueue_pairs 8. */
	assert_true(g->vdev.ops->config_len >= 10);
	g->vdev.ops->config_read(&g->vdev, 0, mac, 6);
	assert_memory_equal(mac, "\x52\x54\x00\xaa\xbb\xcc", 6);
	assert_int_equal(cfg32(g, 6, 2), 1); /* VIRTIO_NET_S_LINK_UP */
	assert_int_equal(cfg32(g, 8, 2), 1);
	/* Without mac=: locally administered unicast, one per socket. */
	h->vdev.ops->config_read(&h->vdev, 0, mac2, 6);
	assert_int_equal(mac2[0], 0x52);
	assert_int_equal(mac2[0] & 1, 0);
	assert_memory_not_equal(mac, mac2, 6);
	/* The saved state is the MAC (version 1), the queue count and the
	 * announce bit (version 2): a restore onto another backend keeps
	 * the address the guest read; a multicast one is refused. */
	d = g->vdev.ops->state_desc;
	assert_int_equal(d->version, 2);
	assert_int_equal(state_encoded_size(d), 8);
	assert_int_equal(state_encoded_size_v(d, 1), 6);
	assert_int_equal(state_encode(d, g->vdev.priv, saved, sizeof(saved)),
			 0);
	assert_int_equal(saved[6], 3); /* rx, tx, control */
	assert_int_equal(saved[7], 0); /* no announcement pending */
	assert_int_equal(state_decode(d, 1, h->vdev.priv, saved, 6), 0);
	h->vdev.ops->config_read(&h->vdev, 0, mac2, 6);
	assert_memory_equal(mac2, mac, 6);
	saved[0] |= 1;
	assert_int_equal(state_decode(d, 1, h->vdev.priv, saved, 6), -EINVAL);
	guest_free(g);
	guest_free(h);
}

/* One control request (5.1.6.5) on queue 2: @out readable bytes, then
 * @in writable ones (0: none). Returns the ack byte the device wrote to
 * the last writable byte, or -1 when it wrote none; *@len the used
 * length. */
static int net_ctrl_request(struct guest *g, const uint8_t *out,
			    uint32_t out_len, uint32_t in_len, uint32_t *len)
{
	struct buf b[2];
	unsigned n = 0;
	uint16_t head;
	gpa_t ack = 0;

	if (out_len) {
		b[n] = (struct buf){ galloc(g, out_len), out_len, false };
		memcpy(gptr(g, b[n].gpa), out, out_len);
		n++;
	}
	if (in_len) {
		b[n] = (struct buf){ galloc(g, in_len), in_len, true };
		ack = b[n].gpa + in_len - 1;
		memset(gptr(g, b[n].gpa), 0xee, in_len);
		n++;
	}
	add_chain(g, 2, b, n);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 2), 0);
	next_used(g, 2, &head, len);
	if (!in_len)
		return -1;
	return *(uint8_t *)gptr(g, ack) == 0xee ? -1 : *(uint8_t *)gptr(g, ack);
}

/* VIRTIO_NET_F_GUEST_ANNOUNCE (5.1.6.5.4): the announce bit in the
 * status until the driver's ANNOUNCE_ACK on the control queue; every
 * other request is answered VIRTIO_NET_ERR and breaks nothing. */
static void test_net_announce(void **state)
{
	struct guest *g = net_guest(NULL, "a", NULL, NULL);
	const uint8_t ack_cmd[] = { 3, 0 }, bad_class[] = { 0xff, 0 },
		      bad_cmd[] = { 3, 1 }, long_cmd[] = { 3, 0, 0 };
	uint8_t saved[8];
	uint32_t len;

	assert_int_equal(cfg32(g, 6, 2), 1);
	assert_int_equal(virtio_net_announce(&g->vdev), 0);
	assert_int_equal(fake_virtio_config_changes, 1);
	assert_int_equal(cfg32(g, 6, 2), 1 | 2); /* LINK_UP | ANNOUNCE */
	/* The pending bit is saved. */
	assert_int_equal(state_encode(g->vdev.ops->state_desc, g->vdev.priv,
				      saved, sizeof(saved)),
			 0);
	assert_int_equal(saved[7], 1);
	/* Wrong requests are refused, the bit stays. */
	assert_int_equal(net_ctrl_request(g, bad_class, 2, 1, &len), 1);
	assert_int_equal(len, 1);
	assert_int_equal(net_ctrl_request(g, bad_cmd, 2, 1, &len), 1);
	assert_int_equal(net_ctrl_request(g, long_cmd, 3, 1, &len), 1);
	assert_int_equal(net_ctrl_request(g, ack_cmd, 1, 1, &len), 1);
	assert_int_equal(net_ctrl_request(g, NULL, 0, 1, &len), 1);
	assert_int_equal(net_ctrl_request(g, ack_cmd, 2, 4, &len), 1);
	assert_int_equal(len, 4);
	/* Nowhere to answer: the chain comes back with nothing written. */
	assert_int_equal(net_ctrl_request(g, ack_cmd, 2, 0, &len), -1);
	assert_int_equal(len, 0);
	assert_int_equal(cfg32(g, 6, 2), 1 | 2);
	/* The acknowledgement clears it. */
	assert_int_equal(net_ctrl_request(g, ack_cmd, 2, 1, &len), 0);
	assert_int_equal(cfg32(g, 6, 2), 1);
	assert_int_equal(fake_virtio_fails, 0);
	/* A reset forgets a pending announcement. */
	assert_int_equal(virtio_net_announce(&g->vdev), 0);
	g->vdev.ops->reset(&g->vdev);
	assert_int_equal(cfg32(g, 6, 2), 1);
	guest_free(g);
}

/* A driver that did not accept CTRL_VQ and GUEST_ANNOUNCE gets neither:
 * no announcement, and its queue 2 is never looked at. */
static void test_net_announce_not_negotiated(void **state)
{
	struct guest *g = net_guest(NULL, "a", NULL, NULL);
	const uint8_t ack_cmd[] = { 3, 0 };
	struct buf b[2];

	g->vdev.driver_features &= ~(1ull << 17 | 1ull << 21);
	assert_int_equal(virtio_net_announce(&g->vdev), -EOPNOTSUPP);
	assert_int_equal(fake_virtio_config_changes, 0);
	assert_int_equal(cfg32(g, 6, 2), 1);
	b[0] = (struct buf){ galloc(g, 2), 2, false };
	memcpy(gptr(g, b[0].gpa), ack_cmd, 2);
	b[1] = (struct buf){ galloc(g, 1), 1, true };
	add_chain(g, 2, b, 2);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 2), 0);
	assert_int_equal(used_idx(g, 2), 0);
	/* GUEST_ANNOUNCE without the control queue cannot be acknowledged:
	 * no announcement either. */
	g->vdev.driver_features |= 1ull << 21;
	assert_int_equal(virtio_net_announce(&g->vdev), -EOPNOTSUPP);
	guest_free(g);
}

/* A version 1 record (the MAC only) restores as the device it was then:
 * two queues, no control queue offered, nothing to announce. */
static void test_net_load_v1(void **state)
{
	struct guest *g = net_guest(NULL, "a", NULL, NULL);
	const struct state_desc *d = g->vdev.ops->state_desc;
	uint8_t v1[6] = { 0x52, 0x54, 0, 1, 2, 3 }, v2[8];

	assert_int_equal(state_decode(d, 1, g->vdev.priv, v1, sizeof(v1)), 0);
	assert_int_equal(g->vdev.ops->load_layout(&g->vdev, 1), 0);
	assert_int_equal(g->vdev.num_queues, 2);
	assert_true(g->vdev.device_features == (1ull << 5 | 1ull << 16));
	/* Saved again, it says so, and reads back as two queues. */
	assert_int_equal(state_encode(d, g->vdev.priv, v2, sizeof(v2)), 0);
	assert_int_equal(v2[6], 2);
	assert_int_equal(state_decode(d, 2, g->vdev.priv, v2, sizeof(v2)), 0);
	assert_int_equal(g->vdev.ops->load_layout(&g->vdev, 2), 0);
	assert_int_equal(g->vdev.num_queues, 2);
	/* No queue count but 2 or 3, no announcement without a control
	 * queue. */
	v2[6] = 4;
	assert_int_equal(state_decode(d, 2, g->vdev.priv, v2, sizeof(v2)),
			 -EINVAL);
	v2[6] = 2;
	v2[7] = 1;
	assert_int_equal(state_decode(d, 2, g->vdev.priv, v2, sizeof(v2)),
			 -EINVAL);
	v2[6] = 3;
	assert_int_equal(state_decode(d, 2, g->vdev.priv, v2, sizeof(v2)), 0);
	assert_int_equal(g->vdev.ops->load_layout(&g->vdev, 2), 0);
	assert_int_equal(g->vdev.num_queues, 3);
	guest_free(g);
}

static void test_net_round_trip(void **state)
{
	struct guest *a = net_guest(NULL, "a", "b", NULL);
	struct guest *b = net_guest(a->dir, "b", "a", NULL);

	net_send(a, 1);
	assert_int_equal(a->vdev.ops->queue_notify(&a->vdev, 1), 0);
	assert_int_equal(used_idx(a, 1), 1);
	/* No receive buffers: the frame stays in the socket. */
	assert_int_equal(b->vdev.ops->fd_ready(&b->vdev), -EAGAIN);
	assert_int_equal(used_idx(b, 0), 0);
	net_add_rx(b, 2);
	assert_int_equal(b->vdev.ops->queue_notify(&b->vdev, 0), 0);
	assert_int_equal(net_recv(b), 1);
	/* And back. */
	net_send(b, 2);
	assert_int_equal(b->vdev.ops->queue_notify(&b->vdev, 1), 0);
	net_add_rx(a, 1);
	assert_int_equal(a->vdev.ops->fd_ready(&a->vdev), 0);
	assert_int_equal(net_recv(a), 2);
	assert_int_equal(fake_virtio_fails, 0);
	guest_free(b);
	guest_free(a);
}

#define FULL_PEER_FRAMES 28

/* A peer that does not read: frames wait in the transmit queue, none is
 * dropped, and all arrive in order once it reads. */
static void test_net_full_peer(void **state)
{
	struct guest *a = net_guest(NULL, "a", "b", NULL);
	struct guest *b = net_guest(a->dir, "b", "a", NULL);
	unsigned sent, got = 0;
	int ctl = eventfd(1, EFD_CLOEXEC);
	int kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	eventfd_t kicks;

	/* The transport wants the worker: the wait for room ends at once. */
	assert_true(ctl >= 0 && kick >= 0);
	a->vdev.ctl_fd = ctl;
	a->vdev.kick_fd[1] = kick;
	/* 28 chains of two descriptors fit the queue; the peer's socket
	 * holds fewer datagrams (net.unix.max_dgram_qlen, 10 by default). */
	for (uint32_t i = 0; i < FULL_PEER_FRAMES; i++)
		net_send(a, i);
	assert_int_equal(a->vdev.ops->queue_notify(&a->vdev, 1), 0);
	sent = used_idx(a, 1);
	assert_true(sent > 0 && sent < FULL_PEER_FRAMES);
	/* The device kicked itself to try again after a park. */
	assert_int_equal(eventfd_read(kick, &kicks), 0);
	assert_true(kicks >= 1);
	assert_int_equal(a->vdev.vq[1].last_avail, sent);
	while (got < FULL_PEER_FRAMES) {
		net_add_rx(b, 4);
		assert_int_equal(b->vdev.ops->queue_notify(&b->vdev, 0), 0);
		while (used_idx(b, 0) != b->used_seen[0])
			assert_int_equal(net_recv(b), got++);
		/* A kick of either queue retries the waiting frames. */
		assert_int_equal(a->vdev.ops->queue_notify(&a->vdev, 0), 0);
	}
	assert_int_equal(used_idx(a, 1), FULL_PEER_FRAMES);
	close(ctl);
	close(kick);
	a->vdev.kick_fd[1] = -1;
	guest_free(b);
	guest_free(a);
}

/* Without peer=, replies go to the last sender. */
static void test_net_reply_to_sender(void **state)
{
	struct guest *a = net_guest(NULL, "a", "b", NULL);
	struct guest *b = net_guest(a->dir, "b", NULL, NULL);

	net_send(b, 7); /* nobody to send to yet: dropped */
	assert_int_equal(b->vdev.ops->queue_notify(&b->vdev, 1), 0);
	assert_int_equal(used_idx(b, 1), 1);
	net_send(a, 8);
	assert_int_equal(a->vdev.ops->queue_notify(&a->vdev, 1), 0);
	net_add_rx(b, 1);
	assert_int_equal(b->vdev.ops->queue_notify(&b->vdev, 0), 0);
	assert_int_equal(net_recv(b), 8);
	net_send(b, 9);
	assert_int_equal(b->vdev.ops->queue_notify(&b->vdev, 1), 0);
	net_add_rx(a, 1);
	assert_int_equal(a->vdev.ops->fd_ready(&a->vdev), 0);
	assert_int_equal(net_recv(a), 9);
	guest_free(b);
	guest_free(a);
}

/* The tap backend, as root, in a network namespace of its own: a frame the
 * guest sends comes out of the interface, and one sent into the interface
 * reaches the guest. Skipped where tap devices cannot be made. */
#define TAP_NAME "stasis-t0"
#define TAP_ETHERTYPE 0x88b5 /* IEEE 802 local experimental */

static int tap_up(void)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int ret = -1;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP_NAME);
	if (s >= 0 && !ioctl(s, SIOCGIFFLAGS, &ifr)) {
		ifr.ifr_flags |= IFF_UP;
		ret = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (s >= 0)
		close(s);
	return ret;
}

static void test_net_tap(void **state)
{
	struct guest *g;
	struct sockaddr_ll ll = { .sll_family = AF_PACKET,
				  .sll_protocol = htons(ETH_P_ALL) };
	struct timeval tv = { .tv_sec = 2 };
	uint8_t frame[60], got[2048];
	uint16_t head, type = htons(TAP_ETHERTYPE);
	uint32_t len, seq;
	char err[256];
	struct net_config cfg;
	ssize_t n;
	int ps, fd;

	if (access("/dev/net/tun", R_OK | W_OK) || unshare(CLONE_NEWNET))
		skip();
	g = guest_new();
	assert_int_equal(
	    config_parse_net(&cfg, "tap=" TAP_NAME, err, sizeof(err)), 0);
	assert_int_equal(virtio_net_create(&g->vdev, NULL, &cfg, 0, "net0", 6),
			 0);
	config_free_net(&cfg);
	guest_start(g);
	assert_true(g->vdev.extra_fd >= 0);
	/* No IPv6 chatter from the kernel on the new interface. */
	fd =
	    open("/proc/sys/net/ipv6/conf/" TAP_NAME "/disable_ipv6", O_WRONLY);
	if (fd >= 0) {
		assert_int_equal(write(fd, "1", 1), 1);
		close(fd);
	}
	assert_int_equal(tap_up(), 0);
	ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	assert_true(ps >= 0);
	ll.sll_ifindex = (int)if_nametoindex(TAP_NAME);
	assert_true(ll.sll_ifindex > 0);
	assert_int_equal(bind(ps, (struct sockaddr *)&ll, sizeof(ll)), 0);
	setsockopt(ps, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	/* Guest to host. */
	net_send(g, 41);
	memcpy(gptr(g, g->data - 64 + 12), &type, 2);
	assert_int_equal(g->vdev.ops->queue_notify(&g->vdev, 1), 0);
	assert_int_equal(used_idx(g, 1), 1);
	do {
		n = recv(ps, got, sizeof(got), 0);
		assert_true(n > 0);
	} while (n < 18 || memcmp(got + 12, &type, 2));
	memcpy(&seq, got + 14, 4);
	assert_int_equal(seq, 41);

	/* Host to guest. */
	memset(frame, 0, sizeof(frame));
	memset(frame, 0xff, 6);
	memcpy(frame + 12, &type, 2);
	seq = 42;
	memcpy(frame + 14, &seq, 4);
	assert_int_equal(sendto(ps, frame, sizeof(frame), 0,
				(struct sockaddr *)&ll, sizeof(ll)),
			 (ssize_t)sizeof(frame));
	for (int tries = 0; tries < 200 && used_idx(g, 0) == 0; tries++) {
		if (tries == 0)
			net_add_rx(g, 4);
		g->vdev.ops->fd_ready(&g->vdev);
		usleep(10000);
	}
	assert_int_equal(used_idx(g, 0), 1);
	next_used(g, 0, &head, &len);
	assert_int_equal(len, NET_HDR + 60);
	{
		gpa_t at;

		memcpy(&at, gptr(g, QUEUE_GPA(0) + 16ull * head), 8);
		assert_memory_equal(gptr(g, at + NET_HDR), frame, 60);
	}
	close(ps);
	guest_free(g);
}

static void test_net_bad_backend(void **state)
{
	struct guest *g = guest_new();
	struct net_config cfg = { .backend = NET_BACKEND_UNIX,
				  .path = "/nonexistent/dir/sock" };

	assert_true(virtio_net_create(&g->vdev, NULL, &cfg, 0, "net0", 6) < 0);
	assert_null(g->vdev.priv);
	guest_free(g);
}

/* --net unix=PATH takes over a socket its dead owner left, but never
 * removes anything else found at PATH. */
static void test_net_socket_path(void **state)
{
	char dir[] = "/tmp/stasis-net-path.XXXXXX", path[64];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct net_config cfg = { .backend = NET_BACKEND_UNIX, .path = path };
	struct guest *g;
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sock", dir);

	/* A regular file: refused and kept. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "data", 4), 4);
	close(fd);
	g = guest_new();
	assert_true(virtio_net_create(&g->vdev, NULL, &cfg, 0, "net0", 6) < 0);
	guest_free(g);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 4);
	assert_int_equal(unlink(path), 0);

	/* A socket whose owner is gone: replaced. */
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	g = guest_new();
	assert_int_equal(virtio_net_create(&g->vdev, NULL, &cfg, 0, "net0", 6),
			 0);
	guest_free(g); /* destroys the device, which removes its socket */
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blk_features_and_config),
		cmocka_unit_test(test_blk_read_write),
		cmocka_unit_test(test_blk_split_descriptors),
		cmocka_unit_test(test_blk_errors),
		cmocka_unit_test(test_blk_readonly),
		cmocka_unit_test(test_blk_get_id),
		cmocka_unit_test(test_blk_discard),
		cmocka_unit_test(test_blk_malformed),
		cmocka_unit_test(test_blk_event_idx),
		cmocka_unit_test(test_blk_random_requests),
		cmocka_unit_test(test_blk_identity),
		cmocka_unit_test(test_blk_identity_same_host),
		cmocka_unit_test(test_blk_identity_bad_flags),
		cmocka_unit_test(test_blk_identity_block_device),
		cmocka_unit_test(test_blk_missing_image),
		cmocka_unit_test(test_rng),
		cmocka_unit_test(test_console_file),
		cmocka_unit_test(test_console_socket),
		cmocka_unit_test(test_console_full_reader),
		cmocka_unit_test(test_console_socket_full),
		cmocka_unit_test(test_net_config),
		cmocka_unit_test(test_net_announce),
		cmocka_unit_test(test_net_announce_not_negotiated),
		cmocka_unit_test(test_net_load_v1),
		cmocka_unit_test(test_net_round_trip),
		cmocka_unit_test(test_net_full_peer),
		cmocka_unit_test(test_net_reply_to_sender),
		cmocka_unit_test(test_net_tap),
		cmocka_unit_test(test_net_bad_backend),
		cmocka_unit_test(test_net_socket_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
