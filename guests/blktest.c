/* blktest.c - writes, flushes, reads back and verifies sectors of a
 * virtio-blk disk (virtio 1.2 5.2) in passes, forever or P times. Each
 * sector holds its number, a generation (the pass that last wrote it) and
 * the seed, then a stream derived from the three; the generation of every
 * sector is also kept in guest RAM, so after a snapshot and restore a lost
 * write (older generation on disk) or a write replayed from the past shows
 * as a CORRUPT line. Arguments: seed=S (1), sectors=N (2048, clamped to the
 * disk), start=F (0, first sector), passes=P (0 = forever), depth=D (16
 * requests in flight), per_req=K (8 sectors per request), discard=0 (skip
 * DISCARD even if offered), timeout_ms=T (0 = wait forever), inject=stale
 * (self-test: in pass 2, rewrite one sector with its pass-1 content, as a
 * device replaying an old write would), readonly=1 (the disk must offer
 * RO: read sector F, then write it, which the device must refuse with
 * IOERR, and end), disk=I (0; which virtio-blk device, counting from 0
 * in PCI slot order: under stasis, the order of the --disk options), and
 * the common virtio ones (event_idx=, indirect=, irq=wait). bench=1 times
 * instead of testing: sequential write (then FLUSH) and read of the
 * tested sectors, then 4 KiB random reads and writes for bench_ms=T (2000)
 * each, timed by the TSC; contents are not checked. */
#include "guest.h"

#define SECTOR 512
#define WORDS (SECTOR / 8)
#define MAGIC 0x6b62736973617473ull /* "stasisbk" in memory order */

/* virtio-blk feature bits (5.2.3) and config offsets (5.2.4). */
#define BLK_F_RO 5
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH 9
#define BLK_F_DISCARD 13
#define CFG_CAPACITY 0
#define CFG_BLK_SIZE 20
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_DISCARD_ALIGN 44

/* Request types and status values (5.2.6). */
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define ID_BYTES 20

struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_discard {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct blk_req {
	struct blk_hdr hdr;
	struct blk_discard discard;
	uint8_t status;
	bool busy;
	uint8_t *data;
	uint64_t sector;
	uint32_t count;
};

static struct {
	struct guest_virtio_dev dev;
	struct guest_virtq *vq;
	struct blk_req *reqs;
	unsigned int depth, per_req;
	uint32_t
	    *gen; /* per tested sector: last generation written, 0 = none */
	uint64_t seed, start, sectors, pass, timeout_us;
	uint64_t verified;
} t;

static void pattern(uint64_t *w, uint64_t sector, uint32_t gen)
{
	uint64_t x =
	    guest_mix64(t.seed ^ guest_mix64(sector ^ guest_mix64(gen)));
	unsigned int i;

	w[0] = MAGIC;
	w[1] = sector;
	w[2] = gen;
	w[3] = t.seed;
	for (i = 4; i < WORDS; i++) {
		/* xorshift64 (Marsaglia 2003). */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x | 1;
	}
}

static void verify(const uint8_t *data, uint64_t sector)
{
	uint64_t want[WORDS];
	const uint64_t *got = (const uint64_t *)data;
	uint32_t gen = t.gen[sector - t.start];
	unsigned int i;

	if (!gen)
		return; /* discarded since it was written: content undefined */
	pattern(want, sector, gen);
	for (i = 0; i < WORDS; i++)
		if (got[i] != want[i])
			break;
	if (i == WORDS) {
		t.verified++;
		return;
	}
	if (got[0] == MAGIC)
		guest_printf("blktest: CORRUPT sector %lu pass %lu word %u: "
			     "expected gen %u, disk has sector %lu gen %lu "
			     "seed %lu (%s)\n",
			     sector, t.pass, i, gen, got[1], got[2], got[3],
			     got[1] != sector	? "misplaced write"
			     : got[2] < gen	? "lost write"
			     : got[2] > gen	? "write from the future"
			     : got[3] != t.seed ? "other seed"
						: "data differs");
	else
		guest_printf("blktest: CORRUPT sector %lu pass %lu word %u: "
			     "expected gen %u, got 0x%016lx (not ours)\n",
			     sector, t.pass, i, gen, got[i]);
	guest_exit(GUEST_EXIT_BLKTEST);
}

static void complete(struct blk_req *r)
{
	uint32_t i;

	if (r->status != S_OK) {
		guest_printf("blktest: ERROR request type %u sector %lu "
			     "status %u\n",
			     r->hdr.type, r->sector, r->status);
		guest_exit(GUEST_EXIT_DEVICE);
	}
	if (r->hdr.type == T_IN)
		for (i = 0; i < r->count; i++)
			verify(r->data + i * SECTOR, r->sector + i);
	r->busy = false;
}

/* Waits for one request to come back and handles it. */
static void reap(void)
{
	struct blk_req *r = guest_virtq_wait(t.vq, NULL, t.timeout_us);

	if (!r) {
		guest_printf("blktest: ERROR no completion (device %s)\n",
			     guest_virtio_needs_reset(&t.dev) ? "needs reset"
							      : "silent");
		guest_exit(GUEST_EXIT_DEVICE);
	}
	complete(r);
}

static struct blk_req *req_get(void)
{
	unsigned int i;

	for (;;) {
		for (i = 0; i < t.depth; i++)
			if (!t.reqs[i].busy)
				return &t.reqs[i];
		guest_virtq_kick(t.vq);
		reap();
	}
}

static void drain(void)
{
	unsigned int i;

	guest_virtq_kick(t.vq);
	for (i = 0; i < t.depth; i++)
		while (t.reqs[i].busy)
			reap();
}

/* Queues one request: header, optional data, status (5.2.6). */
static void submit(struct blk_req *r, uint32_t type, uint64_t sector,
		   uint32_t count, void *data, uint32_t len)
{
	struct guest_vbuf b[3];
	unsigned int n = 0;

	r->hdr = (struct blk_hdr){ type, 0, sector };
	r->sector = sector;
	r->count = count;
	r->status = 0xff;
	r->busy = true;
	b[n++] = (struct guest_vbuf){ &r->hdr, sizeof(r->hdr), false };
	if (len)
		b[n++] =
		    (struct guest_vbuf){ data, len,
					 type == T_IN || type == T_GET_ID };
	b[n++] = (struct guest_vbuf){ &r->status, 1, true };
	if (guest_virtq_add(t.vq, b, n, r)) {
		/* Cannot happen: depth <= queue size. */
		guest_printf("blktest: ERROR queue full\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
}

/* Every tested sector once, in order. Writes fill in the pattern and the
 * bookkeeping unless @fill is false (bench: the buffers go as they are and
 * nothing read back is checked). */
static void phase(uint32_t type, bool fill)
{
	uint64_t s = t.start, end = t.start + t.sectors;

	while (s < end) {
		struct blk_req *r = req_get();
		uint32_t n = end - s < t.per_req ? end - s : t.per_req, i;

		if (type == T_OUT && fill)
			for (i = 0; i < n; i++) {
				t.gen[s + i - t.start] = t.pass;
				pattern((uint64_t *)(r->data + i * SECTOR),
					s + i, t.pass);
			}
		submit(r, type, s, n, r->data, n * SECTOR);
		s += n;
	}
	drain();
}

/* One request on its own, all others finished first; returns it. */
static struct blk_req *one(uint32_t type, void *data, uint32_t len)
{
	struct blk_req *r = req_get();

	drain();
	submit(r, type, 0, 0, data, len);
	guest_virtq_kick(t.vq);
	r = guest_virtq_wait(t.vq, NULL, t.timeout_us);
	if (!r) {
		guest_printf("blktest: ERROR no completion for type %u\n",
			     type);
		guest_exit(GUEST_EXIT_DEVICE);
	}
	r->busy = false;
	if (r->status != S_OK && !(type == T_GET_ID && r->status == S_UNSUPP)) {
		guest_printf("blktest: ERROR request type %u status %u\n", type,
			     r->status);
		guest_exit(GUEST_EXIT_DEVICE);
	}
	return r;
}

static void get_id(void)
{
	char id[ID_BYTES + 1];
	unsigned int i;
	struct blk_req *r;

	memset(id, 0, sizeof(id));
	r = one(T_GET_ID, id, ID_BYTES);
	if (r->status == S_UNSUPP) {
		guest_printf("blktest: id unsupported\n");
		return;
	}
	/* 5.2.6: up to 20 bytes, NUL-terminated only when shorter. */
	for (i = 0; i < ID_BYTES && id[i]; i++)
		if (id[i] < 0x20 || id[i] > 0x7e)
			id[i] = '?';
	guest_printf("blktest: id \"%s\"\n", id);
}

/* Discards one request's worth of sectors, chosen by pass, when the device
 * offers DISCARD and the range fits its limits (5.2.4, 5.2.6.2). Those
 * sectors' contents are undefined until the next pass rewrites them. */
static void discard(uint64_t max_sectors, uint64_t align)
{
	struct blk_req *r;
	uint64_t chunks = t.sectors / t.per_req, s;
	uint32_t i;

	if (!chunks || t.per_req > max_sectors || (align && t.per_req % align))
		return;
	s = t.start + (t.pass % chunks) * t.per_req;
	if (align && s % align)
		return;
	r = req_get();
	drain();
	r->discard = (struct blk_discard){ s, t.per_req, 0 };
	submit(r, T_DISCARD, 0, 0, &r->discard, sizeof(r->discard));
	guest_virtq_kick(t.vq);
	drain();
	for (i = 0; i < t.per_req; i++)
		t.gen[s - t.start + i] = 0;
	if (t.pass == 1)
		guest_printf("blktest: discard ok (%u sectors at %lu)\n",
			     t.per_req, s);
}

/* Writes sector start + sectors / 2 with last pass's content behind the
 * bookkeeping's back. */
static void inject_stale(void)
{
	struct blk_req *r = req_get();
	uint64_t s = t.start + t.sectors / 2;

	pattern((uint64_t *)r->data, s, t.pass - 1);
	submit(r, T_OUT, s, 1, r->data, SECTOR);
	drain();
}

/* Microseconds since @tsc0; hz / 1000 keeps the product in 64 bits for
 * hours of cycles. */
static uint64_t bench_us(uint64_t tsc0)
{
	return (guest_rdtsc() - tsc0) * 1000 / (guest_tsc_hz() / 1000);
}

/* Sequential: the tested sectors in per_req-sector requests, depth in
 * flight; a write pass ends with a FLUSH (as dd conv=fdatasync does). */
static void bench_seq(uint32_t type, const char *name)
{
	uint64_t tsc0 = guest_rdtsc(), us, bytes = t.sectors * SECTOR;

	phase(type, false);
	if (type == T_OUT && guest_virtio_has(&t.dev, BLK_F_FLUSH))
		one(T_FLUSH, NULL, 0);
	us = bench_us(tsc0);
	guest_printf("blktest: bench %s bytes=%lu us=%lu mb_s=%lu\n", name,
		     bytes, us, us ? bytes / us : 0);
}

/* Random: 4 KiB requests at 4 KiB-aligned sectors of the tested range,
 * depth in flight, for @ms; the time includes draining the last ones (and
 * the FLUSH after writes). */
static void bench_rand(uint32_t type, const char *name, uint64_t ms)
{
	uint64_t slots = t.sectors / 8, ops = 0, tsc0, limit, us;

	limit = guest_tsc_hz() / 1000 * ms;
	tsc0 = guest_rdtsc();
	while (guest_rdtsc() - tsc0 < limit) {
		struct blk_req *r = req_get();
		uint64_t s =
		    t.start + guest_mix64(t.seed ^ ops << 1 ^ type) % slots * 8;

		submit(r, type, s, 8, r->data, 8 * SECTOR);
		ops++;
	}
	drain();
	if (type == T_OUT && guest_virtio_has(&t.dev, BLK_F_FLUSH))
		one(T_FLUSH, NULL, 0);
	us = bench_us(tsc0);
	guest_printf("blktest: bench %s ops=%lu us=%lu iops=%lu\n", name, ops,
		     us, us ? ops * 1000000 / us : 0);
}

static void bench(void)
{
	uint64_t ms = guest_arg_u64("bench_ms", 2000);

	if (t.per_req < 8 || t.start % 8 || t.sectors < 8 || !ms) {
		guest_printf(
		    "blktest: ERROR bench needs per_req >= 8, start a "
		    "multiple of 8, 8 sectors or more, bench_ms > 0\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	guest_printf("blktest: bench %lu sectors from %lu, %u per request, "
		     "depth %u, tsc %lu Hz\n",
		     t.sectors, t.start, t.per_req, t.depth, guest_tsc_hz());
	/* Written first, so that reads find data rather than holes. */
	bench_seq(T_OUT, "seq_write");
	bench_seq(T_IN, "seq_read");
	bench_rand(T_IN, "rand_read", ms);
	bench_rand(T_OUT, "rand_write", ms);
	guest_printf("blktest: bench done, %lu kicks, %lu kicks suppressed, "
		     "%lu irqs\n",
		     t.vq->kicks, t.vq->kicks_skipped, guest_virtq_irqs(t.vq));
}

/* readonly=1: a read-only disk (RO offered, 5.2.3) serves reads and
 * refuses writes with IOERR even when the driver did not negotiate RO. */
static void readonly_check(void)
{
	struct blk_req *r = &t.reqs[0];
	int i;

	for (i = 0; i < 2; i++) {
		uint32_t type = i ? T_OUT : T_IN;

		if (type == T_OUT)
			pattern((uint64_t *)r->data, t.start, 1);
		submit(r, type, t.start, 1, r->data, SECTOR);
		guest_virtq_kick(t.vq);
		if (guest_virtq_wait(t.vq, NULL, t.timeout_us) != r) {
			guest_printf("blktest: ERROR no completion for type "
				     "%u\n",
				     type);
			guest_exit(GUEST_EXIT_DEVICE);
		}
		r->busy = false;
		if (r->status != (type == T_OUT ? S_IOERR : S_OK)) {
			guest_printf("blktest: ERROR read-only disk: type %u "
				     "status %u\n",
				     type, r->status);
			guest_exit(GUEST_EXIT_DEVICE);
		}
	}
	guest_printf("blktest: read-only ok, write refused with status %u\n",
		     S_IOERR);
	guest_exit(GUEST_EXIT_OK);
}

void guest_main(void)
{
	uint64_t passes = guest_arg_u64("passes", 0), cap, want;
	uint64_t disk = guest_arg_u64("disk", 0);
	uint64_t disc_max = 0, disc_align = 0;
	bool discard_on;
	unsigned int i;
	uint8_t *data;

	guest_printf("blktest: start\n");
	t.seed = guest_arg_u64("seed", 1);
	t.start = guest_arg_u64("start", 0);
	want = guest_arg_u64("sectors", 2048);
	t.depth = guest_arg_u64("depth", 16);
	t.per_req = guest_arg_u64("per_req", 8);
	t.timeout_us = guest_arg_u64("timeout_ms", 0) * 1000;
	if (!t.depth || t.depth > 256 || !t.per_req || t.per_req > 256) {
		guest_printf("blktest: ERROR bad depth or per_req\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	/* Bus 0 holds at most 256 functions; a larger index must not wrap
	 * around to a disk that exists. */
	if (disk > 255 || guest_virtio_find(GUEST_VIRTIO_BLK, disk, &t.dev) ||
	    guest_virtio_init(&t.dev, guest_virtio_arg_features(&t.dev) |
					  1ull << BLK_F_FLUSH |
					  1ull << BLK_F_DISCARD |
					  1ull << BLK_F_BLK_SIZE) ||
	    guest_virtq_setup(&t.dev, 0, 256)) {
		guest_printf("blktest: ERROR no usable virtio-blk disk %lu\n",
			     disk);
		guest_exit(GUEST_EXIT_FAIL);
	}
	t.vq = &t.dev.vq[0];
	/* Without indirect descriptors a request takes three. */
	if (t.depth > (t.vq->use_indirect ? t.vq->size : t.vq->size / 3))
		t.depth = t.vq->use_indirect ? t.vq->size : t.vq->size / 3;
	guest_virtio_driver_ok(&t.dev);
	cap = guest_virtio_cfg64(&t.dev, CFG_CAPACITY);
	if (!(t.dev.offered & (1ull << BLK_F_RO)) !=
	    !guest_arg_u64("readonly", 0)) {
		guest_printf("blktest: ERROR disk is %s\n",
			     t.dev.offered & (1ull << BLK_F_RO)
				 ? "read-only"
				 : "writable, readonly=1 wants read-only");
		guest_exit(GUEST_EXIT_FAIL);
	}
	if (t.start >= cap) {
		guest_printf("blktest: ERROR start %lu beyond capacity %lu\n",
			     t.start, cap);
		guest_exit(GUEST_EXIT_FAIL);
	}
	t.sectors = want && want < cap - t.start ? want : cap - t.start;
	discard_on = guest_virtio_has(&t.dev, BLK_F_DISCARD) &&
		     guest_arg_u64("discard", 1);
	if (discard_on) {
		disc_max = guest_virtio_cfg32(&t.dev, CFG_MAX_DISCARD_SECTORS);
		disc_align = guest_virtio_cfg32(&t.dev, CFG_DISCARD_ALIGN);
		if (!guest_virtio_cfg32(&t.dev, CFG_MAX_DISCARD_SEG))
			discard_on = false;
	}
	guest_printf("blktest: capacity %lu sectors, blk_size %u, features "
		     "0x%lx, disk %lu, testing %lu sectors from %lu, msix %s\n",
		     cap,
		     guest_virtio_has(&t.dev, BLK_F_BLK_SIZE)
			 ? guest_virtio_cfg32(&t.dev, CFG_BLK_SIZE)
			 : SECTOR,
		     t.dev.features, disk, t.sectors, t.start,
		     t.vq->vector == GUEST_VIRTIO_NO_VECTOR ? "off" : "on");

	t.reqs = guest_alloc(sizeof(*t.reqs) * t.depth, 64);
	data = guest_alloc((uint64_t)t.depth * t.per_req * SECTOR, 4096);
	t.gen = guest_alloc(4 * t.sectors, 64);
	if (!t.reqs || !data || !t.gen) {
		guest_printf("blktest: ERROR not enough RAM\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	memset(t.reqs, 0, sizeof(*t.reqs) * t.depth);
	memset(t.gen, 0, 4 * t.sectors);
	for (i = 0; i < t.depth; i++)
		t.reqs[i].data = data + (uint64_t)i * t.per_req * SECTOR;

	get_id();
	if (guest_arg_u64("readonly", 0))
		readonly_check();
	if (guest_arg_u64("bench", 0)) {
		bench();
		guest_exit(GUEST_EXIT_OK);
	}
	for (t.pass = 1; !passes || t.pass <= passes; t.pass++) {
		t.verified = 0;
		phase(T_OUT, true);
		if (t.pass == 2 && guest_arg_is("inject", "stale"))
			inject_stale();
		if (guest_virtio_has(&t.dev, BLK_F_FLUSH))
			one(T_FLUSH, NULL, 0);
		phase(T_IN, true);
		guest_printf("blktest: pass %lu ok (%lu sectors)\n", t.pass,
			     t.verified);
		if (discard_on)
			discard(disc_max, disc_align);
	}
	guest_printf("blktest: done, %lu kicks, %lu kicks suppressed, %lu "
		     "irqs\n",
		     t.vq->kicks, t.vq->kicks_skipped, guest_virtq_irqs(t.vq));
	guest_exit(GUEST_EXIT_OK);
}
