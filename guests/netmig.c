/* netmig.c - a virtio-net guest (virtio 1.2 5.1) that keeps frames in
 * flight both ways while it is migrated, and announces itself afterwards.
 * It sends numbered frames to its peer (a test's socket) with up to 32 in
 * the transmit queue, and checks the numbered frames the peer sends it:
 * in order, never repeated, each intact (gaps are counted: frames the
 * peer sent to the old host while the VM moved are lost, as on any
 * network). With CTRL_VQ and GUEST_ANNOUNCE it answers the config
 * interrupt that sets VIRTIO_NET_S_ANNOUNCE with a gratuitous RARP frame
 * and an ANNOUNCE_ACK on the control queue (5.1.6.5.4), then checks the
 * bit is clear. Arguments: announce=0 (do not accept the two features),
 * pps=N (data frames per second, 1000), smp=1 (every other CPU rewrites
 * and checks a 1 MiB slice of its own meanwhile, generation after
 * generation), count=N (end with code 0 once N frames are sent and
 * gone; 0, the default: never), and the common virtio ones. */
#include "guest.h"

#define ETHERTYPE 0x88b5 /* IEEE 802 local experimental */
#define ETHERTYPE_RARP 0x8035
#define MAGIC 0x47494d4eu /* "NMIG" */
#define NET_HDR 12 /* virtio_net_hdr with VERSION_1 (5.1.6) */
#define ETH_HDR 14
#define FRAME_LEN 128
#define FRAME_MIN 60
#define BUF_SIZE 1536 /* >= 1526: no MRG_RXBUF, no GSO (5.1.6.3.1) */
#define RX_BUFS 128
#define TX_BUFS 32

/* 5.1.3, 5.1.4 */
#define NET_F_MAC 5
#define NET_F_STATUS 16
#define NET_F_CTRL_VQ 17
#define NET_F_GUEST_ANNOUNCE 21
#define CFG_MAC 0
#define CFG_STATUS 6
#define S_ANNOUNCE 2

/* 5.1.6.5 */
#define CTRL_ANNOUNCE 3
#define CTRL_ANNOUNCE_ACK 0
#define CTRL_OK 0
#define CTRL_TIMEOUT_US 2000000

#define SLICE_WORDS (1u << 17) /* 1 MiB per CPU with smp=1 */
#define MAX_CPUS 16

#define Q_RX 0
#define Q_TX 1
#define Q_CTRL 2

struct msg {
	uint32_t magic;
	uint32_t pad;
	uint64_t seq;
} __attribute__((packed));

static struct {
	struct guest_virtio_dev dev;
	uint8_t (*rx)[BUF_SIZE];
	uint8_t (*tx)[BUF_SIZE];
	uint8_t *ctrl; /* request: class, command; then the ack byte */
	bool tx_busy[TX_BUFS];
	uint8_t mac[6];
	bool ctrl_vq;
	uint64_t sent, recv_last, recv_count, gaps, others, announced;
	uint64_t config_irqs;
	uint64_t *slice[MAX_CPUS];
	volatile uint64_t passes[MAX_CPUS];
	volatile bool go; /* the slices are allocated */
	unsigned int cpus;
} n;

static uint64_t slice_word(unsigned int cpu, uint64_t i, uint64_t gen)
{
	return guest_mix64(gen << 32 ^ (uint64_t)cpu << 24 ^ i);
}

/* smp=1, on every CPU but the first: checks generation g - 1 of its
 * slice and writes g, for ever. Memory the migration must carry exactly
 * while the first CPU keeps the network busy. */
static void slice_cpu(unsigned int cpu)
{
	uint64_t *w;

	while (!n.go || cpu >= MAX_CPUS)
		guest_pause();
	guest_mb();
	w = n.slice[cpu];
	for (uint64_t g = 1;; g++) {
		for (uint64_t i = 0; i < SLICE_WORDS; i++) {
			if (g > 1 && w[i] != slice_word(cpu, i, g - 1)) {
				guest_printf("netmig: MISMATCH cpu %u word "
					     "%lu generation %lu\n",
					     cpu, i, g - 1);
				guest_exit(GUEST_EXIT_MEMTEST);
			}
			w[i] = slice_word(cpu, i, g);
		}
		n.passes[cpu] = g;
	}
}

static uint64_t slice_passes(void)
{
	uint64_t sum = 0;

	for (unsigned int c = 1; c < n.cpus; c++)
		sum += n.passes[c];
	return sum;
}

static void slices_start(void)
{
	n.cpus = 1;
	if (!guest_arg_u64("smp", 0))
		return;
	n.cpus = guest_cpus_start(slice_cpu);
	if (n.cpus != guest_cpus_known() || n.cpus > MAX_CPUS) {
		guest_printf("netmig: ERROR %u of %u cpus started (smp=1 "
			     "takes at most %u)\n",
			     n.cpus, guest_cpus_known(), MAX_CPUS);
		guest_exit(GUEST_EXIT_FAIL);
	}
	for (unsigned int c = 1; c < n.cpus; c++) {
		n.slice[c] = guest_alloc(SLICE_WORDS * 8ull, 4096);
		if (!n.slice[c]) {
			guest_printf("netmig: ERROR not enough RAM\n");
			guest_exit(GUEST_EXIT_FAIL);
		}
	}
	guest_mb();
	n.go = true;
}

static uint8_t fill_byte(uint64_t seq, unsigned int i)
{
	return (uint8_t)(guest_mix64(seq) >> (8 * (i % 8))) ^ (uint8_t)i;
}

static void tx_reap(void)
{
	uint8_t *p;

	while ((p = guest_virtq_get(&n.dev.vq[Q_TX], NULL)))
		n.tx_busy[(p - n.tx[0]) / BUF_SIZE] = false;
}

/* A free transmit buffer with a zero virtio_net_hdr and our Ethernet
 * header, or NULL when all are in flight. */
static uint8_t *tx_frame(uint16_t type, int *slot)
{
	uint8_t *b;

	tx_reap();
	for (*slot = 0; *slot < TX_BUFS; (*slot)++)
		if (!n.tx_busy[*slot])
			break;
	if (*slot == TX_BUFS)
		return NULL;
	b = n.tx[*slot];
	memset(b, 0, NET_HDR + FRAME_LEN);
	memset(b + NET_HDR, 0xff, 6); /* broadcast */
	memcpy(b + NET_HDR + 6, n.mac, 6);
	b[NET_HDR + 12] = type >> 8;
	b[NET_HDR + 13] = type & 0xff;
	return b + NET_HDR;
}

static bool tx_queue(int slot, uint32_t len)
{
	if (guest_virtq_add(
		&n.dev.vq[Q_TX],
		&(struct guest_vbuf){ n.tx[slot], NET_HDR + len, false }, 1,
		n.tx[slot]))
		return false;
	n.tx_busy[slot] = true;
	return true;
}

static bool send_data(uint64_t seq)
{
	struct msg *m;
	uint8_t *eth;
	int slot;

	eth = tx_frame(ETHERTYPE, &slot);
	if (!eth)
		return false;
	m = (struct msg *)(eth + ETH_HDR);
	*m = (struct msg){ .magic = MAGIC, .seq = seq };
	for (unsigned int i = ETH_HDR + sizeof(*m); i < FRAME_LEN; i++)
		eth[i] = fill_byte(seq, i);
	return tx_queue(slot, FRAME_LEN);
}

/* A gratuitous RARP request for our own address (RFC 903: opcode 3,
 * sender and target both us), the frame a moved host sends so that
 * switches learn its new port. */
static bool send_rarp(void)
{
	uint8_t *eth, *a;
	int slot;

	eth = tx_frame(ETHERTYPE_RARP, &slot);
	if (!eth)
		return false;
	a = eth + ETH_HDR;
	a[1] = 1; /* hardware: Ethernet */
	a[2] = 0x08; /* protocol: IPv4 */
	a[4] = 6;
	a[5] = 4;
	a[7] = 3; /* reverse request */
	memcpy(a + 8, n.mac, 6);
	memcpy(a + 18, n.mac, 6);
	return tx_queue(slot, FRAME_MIN);
}

static __attribute__((noreturn)) void fail(const char *what, uint64_t want,
					   uint64_t got)
{
	guest_printf("netmig: %s expected %lu got %lu (sent %lu recv %lu)\n",
		     what, want, got, n.sent, n.recv_count);
	guest_exit(GUEST_EXIT_NETTEST);
}

static void on_frame(const uint8_t *eth, uint32_t len)
{
	const struct msg *m = (const struct msg *)(eth + ETH_HDR);

	if (len < ETH_HDR + sizeof(*m) || eth[12] != ETHERTYPE >> 8 ||
	    eth[13] != (ETHERTYPE & 0xff) || m->magic != MAGIC) {
		n.others++;
		return;
	}
	if (m->seq <= n.recv_last)
		fail("DUP or reordered frame:", n.recv_last + 1, m->seq);
	if (len != FRAME_LEN)
		fail("BAD frame length:", FRAME_LEN, len);
	for (unsigned int i = ETH_HDR + sizeof(*m); i < len; i++)
		if (eth[i] != fill_byte(m->seq, i))
			fail("BAD frame content at byte", i, eth[i]);
	if (m->seq != n.recv_last + 1)
		n.gaps++;
	n.recv_last = m->seq;
	n.recv_count++;
}

/* One control request (5.1.6.5); returns the device's ack, or -1 when no
 * answer came. */
static int ctrl_request(uint8_t class, uint8_t cmd)
{
	struct guest_virtq *q = &n.dev.vq[Q_CTRL];
	struct guest_vbuf b[2] = { { n.ctrl, 2, false },
				   { n.ctrl + 2, 1, true } };

	n.ctrl[0] = class;
	n.ctrl[1] = cmd;
	n.ctrl[2] = 0xee;
	if (guest_virtq_add(q, b, 2, n.ctrl))
		return -1;
	guest_virtq_kick(q);
	if (!guest_virtq_wait(q, NULL, CTRL_TIMEOUT_US))
		return -1;
	return n.ctrl[2];
}

static uint16_t status(void)
{
	return guest_virtio_cfg16(&n.dev, CFG_STATUS);
}

/* 5.1.6.5.4: on a config change with ANNOUNCE set, send the gratuitous
 * packet, then acknowledge; the bit is clear once the ack is used. */
static void announce(void)
{
	uint16_t st = status();
	int ack;

	if (!(st & S_ANNOUNCE))
		return;
	while (!send_rarp()) {
		guest_virtq_kick(&n.dev.vq[Q_TX]);
		guest_pause();
	}
	guest_virtq_kick(&n.dev.vq[Q_TX]);
	ack = ctrl_request(CTRL_ANNOUNCE, CTRL_ANNOUNCE_ACK);
	st = status();
	n.announced++;
	guest_printf("netmig: announced %lu: rarp sent, ack %d, status 0x%x\n",
		     n.announced, ack, st);
	if (ack != CTRL_OK || (st & S_ANNOUNCE)) {
		guest_printf("netmig: ERROR the announcement was not "
			     "acknowledged\n");
		guest_exit(GUEST_EXIT_DEVICE);
	}
}

static void setup(void)
{
	uint64_t want = 1ull << NET_F_MAC | 1ull << NET_F_STATUS;
	unsigned int i;
	int ack;

	if (guest_arg_u64("announce", 1))
		want |= 1ull << NET_F_CTRL_VQ | 1ull << NET_F_GUEST_ANNOUNCE;
	if (guest_virtio_find(GUEST_VIRTIO_NET, 0, &n.dev) ||
	    guest_virtio_init(&n.dev,
			      guest_virtio_arg_features(&n.dev) | want) ||
	    guest_virtq_setup(&n.dev, Q_RX, RX_BUFS) ||
	    guest_virtq_setup(&n.dev, Q_TX, TX_BUFS)) {
		guest_printf("netmig: ERROR no usable virtio-net\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	n.ctrl_vq = guest_virtio_has(&n.dev, NET_F_CTRL_VQ);
	if (n.ctrl_vq && guest_virtq_setup(&n.dev, Q_CTRL, 8)) {
		guest_printf("netmig: ERROR no control queue\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	n.dev.wait_irq = false; /* it polls */
	n.rx = guest_alloc((uint64_t)RX_BUFS * BUF_SIZE, 4096);
	n.tx = guest_alloc((uint64_t)TX_BUFS * BUF_SIZE, 4096);
	n.ctrl = guest_alloc(64, 64);
	if (!n.rx || !n.tx || !n.ctrl || n.dev.vq[Q_RX].size < RX_BUFS) {
		guest_printf("netmig: ERROR not enough RAM or queue room\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	for (i = 0; i < 6; i++)
		n.mac[i] = guest_virtio_cfg8(&n.dev, CFG_MAC + i);
	guest_virtio_driver_ok(&n.dev);
	for (i = 0; i < RX_BUFS; i++)
		guest_virtq_add(&n.dev.vq[Q_RX],
				&(struct guest_vbuf){ n.rx[i], BUF_SIZE, true },
				1, n.rx[i]);
	guest_virtq_kick(&n.dev.vq[Q_RX]);
	guest_printf("netmig: mac %02x:%02x:%02x:%02x:%02x:%02x features "
		     "0x%lx status 0x%x\n",
		     n.mac[0], n.mac[1], n.mac[2], n.mac[3], n.mac[4], n.mac[5],
		     n.dev.features, status());
	if (n.ctrl_vq) {
		/* A class the device does not know is refused, and harms
		 * nothing. */
		ack = ctrl_request(0xff, 0);
		guest_printf("netmig: control queue: class 0xff ack %d\n", ack);
		if (ack != 1) {
			guest_printf("netmig: ERROR expected VIRTIO_NET_ERR\n");
			guest_exit(GUEST_EXIT_DEVICE);
		}
	}
}

void guest_main(void)
{
	uint64_t hz, now, next_send, next_report, gap, pps, count;
	struct guest_virtq *rxq;
	unsigned int spins = 0;
	bool bit_alone = false;

	guest_printf("netmig: start\n");
	setup();
	slices_start();
	rxq = &n.dev.vq[Q_RX];
	hz = guest_tsc_hz();
	pps = guest_arg_u64("pps", 1000);
	count = guest_arg_u64("count", 0);
	gap = hz / (pps ? pps : 1);
	next_send = next_report = guest_rdtsc();
	n.config_irqs = guest_virtio_config_irqs(&n.dev);
	/* Ring 3 starts with interrupts off; the config interrupt is what
	 * it waits for (the queues it polls). */
	__asm__ volatile("sti" ::: "memory");

	for (;;) {
		uint32_t len;
		uint8_t *p;
		uint64_t irqs;

		now = guest_rdtsc();
		while ((p = guest_virtq_get(rxq, &len))) {
			if (len > NET_HDR && len <= BUF_SIZE)
				on_frame(p + NET_HDR, len - NET_HDR);
			guest_virtq_add(
			    rxq, &(struct guest_vbuf){ p, BUF_SIZE, true }, 1,
			    p);
		}
		guest_virtq_kick(rxq);
		/* Paced, so a test's peer keeps up; after a pause the
		 * backlog goes out at once and fills the queue. */
		while (now >= next_send && (!count || n.sent < count) &&
		       send_data(n.sent + 1)) {
			n.sent++;
			next_send += gap;
		}
		guest_virtq_kick(&n.dev.vq[Q_TX]);
		irqs = guest_virtio_config_irqs(&n.dev);
		if (n.ctrl_vq && irqs != n.config_irqs) {
			n.config_irqs = irqs;
			announce();
		}
		if (now >= next_report) {
			guest_printf("netmig: sent %lu recv %lu last %lu gaps "
				     "%lu config irqs %lu cpus %u passes %lu "
				     "ok\n",
				     n.sent, n.recv_count, n.recv_last, n.gaps,
				     n.config_irqs, n.cpus, slice_passes());
			next_report = now + hz;
			/* The bit without its interrupt would never be
			 * seen by a driver that waits for it: a second
			 * with it set and no interrupt is a failure. */
			if (n.ctrl_vq && (status() & S_ANNOUNCE) &&
			    guest_virtio_config_irqs(&n.dev) == n.config_irqs) {
				if (bit_alone) {
					guest_printf("netmig: ERROR announce "
						     "bit without an "
						     "interrupt\n");
					guest_exit(GUEST_EXIT_DEVICE);
				}
				bit_alone = true;
			} else {
				bit_alone = false;
			}
		}
		tx_reap();
		if (count && n.sent == count &&
		    guest_virtq_free(&n.dev.vq[Q_TX]) == n.dev.vq[Q_TX].size) {
			guest_printf("netmig: done, %lu frames sent, %lu "
				     "received, %lu gaps\n",
				     n.sent, n.recv_count, n.gaps);
			guest_exit(GUEST_EXIT_OK);
		}
		if (++spins % 1024 == 0 && guest_virtio_needs_reset(&n.dev)) {
			guest_printf("netmig: ERROR device needs reset\n");
			guest_exit(GUEST_EXIT_DEVICE);
		}
		guest_pause();
	}
}
