/* rngtest.c - reads entropy from virtio-rng (virtio 1.2 5.4) and checks it
 * does not look constant: bit balance, distinct byte values, no buffer
 * repeated. Arguments: bytes=N (4096) per round, rounds=R (1; 0 = forever),
 * timeout_ms=T (0 = wait forever for data: after a restore with
 * --clock advance the TSC jumps), and the common virtio ones (event_idx=,
 * indirect=, irq=wait|intx). inject=loop|range|len instead queues one
 * broken chain (two descriptors chained to each other; a buffer at 1 TiB;
 * a buffer of almost 4 GiB) and expects the device to refuse it with
 * NEEDS_RESET within 5 s: "rngtest: NEEDS_RESET after inject=K", code 0.
 * With recover_ms=T it instead checks for T ms that the device stays in
 * NEEDS_RESET (a snapshot may be taken then), resets it, sets it up again
 * ("rngtest: recovered after reset") and runs its rounds as usual. */
#include "guest.h"

#define RNG_BUF 256
#define RNG_INFLIGHT 8

static uint8_t bufs[RNG_INFLIGHT][RNG_BUF] __attribute__((aligned(64)));
static uint8_t last[RNG_BUF];
static uint32_t last_len;

static int popcount8(uint8_t v)
{
	int n = 0;

	for (; v; v &= v - 1)
		n++;
	return n;
}

static void fail(const char *what)
{
	guest_printf("rngtest: FAIL %s\n", what);
	guest_exit(GUEST_EXIT_RNGTEST);
}

/* Queues one broken chain; returns once the device shows NEEDS_RESET. */
static void inject(struct guest_virtio_dev *dev, struct guest_virtq *vq)
{
	const char *kind = guest_arg_is("inject", "loop")    ? "loop"
			   : guest_arg_is("inject", "range") ? "range"
			   : guest_arg_is("inject", "len")   ? "len"
							     : NULL;
	uint64_t buf0 = (uint64_t)(uintptr_t)bufs[0];
	uint64_t buf1 = (uint64_t)(uintptr_t)bufs[1];
	struct guest_virtq_desc d[2] = {
		{ buf0, 64, GUEST_VIRTQ_DESC_F_WRITE, 0 },
	};
	unsigned int n = 1;

	if (!kind) {
		guest_printf("rngtest: ERROR inject must be loop, range or "
			     "len\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	if (!strncmp(kind, "loop", 5)) {
		/* 2.7.5.3.1: a chain must end; this one never does. */
		d[0] = (struct guest_virtq_desc){ buf0, 64,
						  GUEST_VIRTQ_DESC_F_WRITE |
						      GUEST_VIRTQ_DESC_F_NEXT,
						  1 };
		d[1] = (struct guest_virtq_desc){ buf1, 64,
						  GUEST_VIRTQ_DESC_F_WRITE |
						      GUEST_VIRTQ_DESC_F_NEXT,
						  0 };
		n = 2;
	} else if (!strncmp(kind, "range", 6)) {
		d[0].addr = 1ull << 40;
	} else {
		d[0].len = 0xfffff000u;
	}
	guest_virtq_add_raw(vq, d, n, bufs[0]);
	guest_virtq_kick(vq);
	if (guest_virtq_wait(vq, NULL, 5000000)) {
		guest_printf("rngtest: FAIL device accepted inject=%s\n", kind);
		guest_exit(GUEST_EXIT_RNGTEST);
	}
	if (!guest_virtio_needs_reset(dev)) {
		guest_printf("rngtest: FAIL no NEEDS_RESET after inject=%s\n",
			     kind);
		guest_exit(GUEST_EXIT_RNGTEST);
	}
	guest_printf("rngtest: NEEDS_RESET after inject=%s\n", kind);
}

/* 2.1.2: NEEDS_RESET lasts until the driver resets the device. */
static void hold(struct guest_virtio_dev *dev, uint64_t ms)
{
	uint64_t end = guest_rdtsc() + guest_tsc_hz() / 1000 * ms;

	do {
		if (!guest_virtio_needs_reset(dev)) {
			guest_printf("rngtest: FAIL NEEDS_RESET went away "
				     "without a reset\n");
			guest_exit(GUEST_EXIT_RNGTEST);
		}
		guest_pause();
	} while (guest_rdtsc() < end);
}

/* Finds the device and brings it to DRIVER_OK with one queue; the reset
 * guest_virtio_init starts with is also how a driver leaves NEEDS_RESET
 * (2.1.2). */
static struct guest_virtq *setup(struct guest_virtio_dev *dev)
{
	if (guest_virtio_find(GUEST_VIRTIO_RNG, 0, dev) ||
	    guest_virtio_init(dev, guest_virtio_arg_features(dev)) ||
	    guest_virtq_setup(dev, 0, 64)) {
		guest_printf("rngtest: ERROR no usable virtio-rng\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	guest_virtio_driver_ok(dev);
	return &dev->vq[0];
}

void guest_main(void)
{
	uint64_t want = guest_arg_u64("bytes", 4096);
	uint64_t rounds = guest_arg_u64("rounds", 1), round;
	uint64_t timeout_us = guest_arg_u64("timeout_ms", 0) * 1000;
	struct guest_virtio_dev dev;
	struct guest_virtq *vq;
	unsigned int i;
	size_t i_len;

	guest_printf("rngtest: start\n");
	if (!want)
		want = 1;
	vq = setup(&dev);
	guest_printf(
	    "rngtest: features 0x%lx msix %s common 0x%lx\n", dev.features,
	    vq->vector == GUEST_VIRTIO_NO_VECTOR ? "off" : "on", dev.common);
	if (guest_arg("inject", &i_len)) {
		inject(&dev, vq);
		if (!guest_arg("recover_ms", &i_len))
			guest_exit(GUEST_EXIT_OK);
		hold(&dev, guest_arg_u64("recover_ms", 0));
		vq = setup(&dev);
		if (guest_virtio_needs_reset(&dev)) {
			guest_printf("rngtest: FAIL NEEDS_RESET survived a "
				     "reset\n");
			guest_exit(GUEST_EXIT_RNGTEST);
		}
		guest_printf("rngtest: recovered after reset\n");
	}
	for (i = 0; i < RNG_INFLIGHT; i++) {
		struct guest_vbuf b = { bufs[i], RNG_BUF, true };

		guest_virtq_add(vq, &b, 1, bufs[i]);
	}
	guest_virtq_kick(vq);

	for (round = 1; !rounds || round <= rounds; round++) {
		uint64_t got = 0, ones = 0, distinct = 0;
		uint32_t seen[256 / 32] = { 0 };

		while (got < want) {
			uint32_t len = 0;
			uint8_t *p = guest_virtq_wait(vq, &len, timeout_us);
			struct guest_vbuf b;

			if (!p) {
				guest_printf("rngtest: ERROR no entropy after "
					     "%lu bytes (device %s)\n",
					     got,
					     guest_virtio_needs_reset(&dev)
						 ? "needs reset"
						 : "silent");
				guest_exit(GUEST_EXIT_DEVICE);
			}
			if (len > RNG_BUF)
				fail("device wrote more than the buffer");
			/* A real source never repeats 8+ bytes verbatim. */
			if (len >= 8 && len == last_len &&
			    !memcmp(p, last, len))
				fail("buffer repeated");
			memcpy(last, p, len);
			last_len = len;
			for (i = 0; i < len && got < want; i++, got++) {
				ones += popcount8(p[i]);
				seen[p[i] / 32] |= 1u << (p[i] % 32);
			}
			b = (struct guest_vbuf){ p, RNG_BUF, true };
			guest_virtq_add(vq, &b, 1, p);
			guest_virtq_kick(vq);
		}
		for (i = 0; i < 256; i++)
			distinct += (seen[i / 32] >> (i % 32)) & 1;
		/* 8N bits: the share of ones is 1/2 +- 0.5/sqrt(8N); 45..55%
		 * is many sigmas for N >= 256. 4096 random bytes miss a given
		 * byte value with probability e^-16. */
		if (want >= 256 &&
		    (ones * 100 < want * 8 * 45 || ones * 100 > want * 8 * 55))
			fail("bits are unbalanced");
		if (want >= 4096 && distinct < 250)
			fail("too few distinct byte values");
		if (!ones)
			fail("all zero");
		guest_printf("rngtest: ok %lu bytes (ones %lu of %lu bits, %lu "
			     "byte values, %lu irqs)\n",
			     want, ones, want * 8, distinct,
			     guest_virtq_irqs(vq));
	}
	guest_exit(GUEST_EXIT_OK);
}
