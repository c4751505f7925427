/* consoletest.c - talks over virtio-console port 0 (virtio 1.2 5.3): writes
 * "consoletest: line N" every interval and sends back every byte it
 * receives; a received line "quit" ends it with code 0. Arguments:
 * lines=N (0 = keep writing), interval_ms=T (200), and the common virtio
 * ones (event_idx=, indirect=, irq=wait is not used: it polls both queues). */
#include "guest.h"

#define RX_BUFS 8
#define TX_BUFS 16
#define BUF_SIZE 256
#define LINE_MAX 128

#define Q_RX 0 /* receiveq of port 0 (5.3.2) */
#define Q_TX 1 /* transmitq of port 0 */

static uint8_t rx_bufs[RX_BUFS][BUF_SIZE] __attribute__((aligned(64)));
static uint8_t tx_bufs[TX_BUFS][BUF_SIZE] __attribute__((aligned(64)));
static bool tx_busy[TX_BUFS];

static struct guest_virtio_dev dev;
static char line[LINE_MAX + 1];
static unsigned int line_len;

static void rx_post(uint8_t *buf)
{
	struct guest_vbuf b = { buf, BUF_SIZE, true };

	guest_virtq_add(&dev.vq[Q_RX], &b, 1, buf);
}

static void tx_reap(void)
{
	uint8_t *p;

	while ((p = guest_virtq_get(&dev.vq[Q_TX], NULL)))
		tx_busy[(p - tx_bufs[0]) / BUF_SIZE] = false;
}

/* Sends @len bytes, waiting for a free transmit buffer if needed. */
static void tx_send(const void *data, uint32_t len)
{
	unsigned int i;

	if (len > BUF_SIZE)
		len = BUF_SIZE;
	for (;;) {
		tx_reap();
		/* The ring may be smaller than our buffer pool. */
		for (i = 0; i < TX_BUFS && guest_virtq_free(&dev.vq[Q_TX]); i++)
			if (!tx_busy[i])
				goto found;
		if (guest_virtio_needs_reset(&dev)) {
			guest_printf("consoletest: ERROR device needs reset\n");
			guest_exit(GUEST_EXIT_DEVICE);
		}
		guest_pause();
	}
found:
	memcpy(tx_bufs[i], data, len);
	tx_busy[i] = true;
	guest_virtq_add(&dev.vq[Q_TX],
			&(struct guest_vbuf){ tx_bufs[i], len, false }, 1,
			tx_bufs[i]);
	guest_virtq_kick(&dev.vq[Q_TX]);
}

/* Collects echoed bytes into lines for the serial log. */
static void line_take(const uint8_t *p, uint32_t len)
{
	uint32_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == '\n' || p[i] == '\r') {
			if (!line_len)
				continue;
			line[line_len] = 0;
			guest_printf("consoletest: got \"%s\"\n", line);
			if (!strncmp(line, "quit", 5))
				guest_exit(GUEST_EXIT_OK);
			line_len = 0;
		} else if (line_len < LINE_MAX) {
			line[line_len++] =
			    p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
		}
	}
}

void guest_main(void)
{
	uint64_t lines = guest_arg_u64("lines", 0);
	uint64_t interval = guest_arg_u64("interval_ms", 200);
	uint64_t next, step, n = 0, echoed = 0, spins = 0;
	unsigned int i;

	guest_printf("consoletest: start\n");
	if (guest_virtio_find(GUEST_VIRTIO_CONSOLE, 0, &dev) ||
	    guest_virtio_init(&dev, guest_virtio_arg_features(&dev)) ||
	    guest_virtq_setup(&dev, Q_RX, 64) ||
	    guest_virtq_setup(&dev, Q_TX, 64)) {
		guest_printf("consoletest: ERROR no usable virtio-console\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	dev.wait_irq = false;
	guest_virtio_driver_ok(&dev);
	for (i = 0; i < RX_BUFS; i++)
		rx_post(rx_bufs[i]);
	guest_virtq_kick(&dev.vq[Q_RX]);
	guest_printf("consoletest: features 0x%lx\n", dev.features);

	step = guest_tsc_hz() / 1000 * (interval ? interval : 1);
	next = guest_rdtsc();
	for (;;) {
		uint32_t len = 0;
		uint8_t *p;

		if ((!lines || n < lines) && guest_rdtsc() >= next) {
			char text[64];
			int m = guest_snprintf(text, sizeof(text),
					       "consoletest: line %lu\n", ++n);

			tx_send(text, m);
			guest_printf("consoletest: wrote line %lu\n", n);
			next += step;
		}
		while ((p = guest_virtq_get(&dev.vq[Q_RX], &len))) {
			if (len > BUF_SIZE)
				len = BUF_SIZE;
			tx_send(p, len);
			echoed += len;
			line_take(p, len);
			rx_post(p);
			guest_virtq_kick(&dev.vq[Q_RX]);
		}
		tx_reap();
		/* The status read is a VM exit: not on every spin. */
		if (++spins % 1024 == 0 && guest_virtio_needs_reset(&dev)) {
			guest_printf("consoletest: ERROR device needs reset "
				     "(echoed %lu bytes)\n",
				     echoed);
			guest_exit(GUEST_EXIT_DEVICE);
		}
		guest_pause();
	}
}
