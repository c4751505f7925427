/* nettest.c - two guests exchange numbered Ethernet frames over virtio-net
 * (virtio 1.2 5.1) and check that the frames each receives are exactly
 * 1, 2, 3, ...: none lost, duplicated or reordered, each intact. A window
 * of unacknowledged frames (cumulative acks, piggybacked or on their own)
 * keeps a slow peer from being flooded, so a device that never drops
 * frames while buffers are posted sees no loss. Arguments: role=a|b
 * (required; the two guests take different roles), count=N (frames to
 * send and receive, 0 = forever), window=W (32), frame=B (256 bytes, 60 to
 * 1514), stall_ms=T (0 = off: fail if nothing arrives for T ms once
 * running), inject=dup|lost (self-test of the peer's checker: frame 50 is
 * sent twice, or not at all), and the common virtio ones (event_idx=,
 * indirect=; irq=wait is ignored, both queues are polled). */
#include "guest.h"

#define ETHERTYPE 0x88b5 /* IEEE 802 local experimental */
#define MAGIC 0x4e545354u /* "NTST" */
#define NET_HDR 12 /* virtio_net_hdr with VERSION_1 (5.1.6) */
#define ETH_HDR 14
#define FRAME_MIN 60
#define FRAME_MAX 1514
#define BUF_SIZE 1536 /* >= 1526: no MRG_RXBUF, no GSO (5.1.6.3.1) */
#define RX_BUFS 128
#define TX_BUFS 64
#define SYNC_US 100000
#define INJECT_AT 50

#define NET_F_MAC 5
#define CFG_MAC 0

#define Q_RX 0
#define Q_TX 1

enum kind { K_SYNC = 1, K_DATA = 2, K_ACK = 3 };
#define SYNC_HEARD 1 /* flags of a SYNC: "I have heard from you" */

struct msg {
	uint32_t magic;
	uint8_t kind, role;
	uint16_t flags;
	uint64_t seq; /* DATA: frame number, from 1 */
	uint64_t ack; /* DATA, ACK: last frame received in order */
	uint16_t len; /* DATA: frame length incl. the Ethernet header */
	uint16_t pad[3];
} __attribute__((packed));

static struct {
	struct guest_virtio_dev dev;
	uint8_t (*rx)[BUF_SIZE];
	uint8_t (*tx)[BUF_SIZE];
	bool tx_busy[TX_BUFS];
	uint8_t mac[6], peer[6];
	uint8_t role;
	uint64_t count, window, frame;
	uint64_t sent, acked, recv, ack_sent;
	bool heard, running, sync_reply;
	uint64_t others; /* frames that were not ours */
	bool inject_dup, inject_lost;
} n;

static uint8_t fill_byte(uint8_t role, uint64_t seq, unsigned int i)
{
	return (uint8_t)(guest_mix64(seq << 8 | role) >> (8 * (i % 8))) ^
	       (i / 8);
}

static __attribute__((noreturn)) void fail(const char *what, uint64_t want,
					   uint64_t got)
{
	guest_printf("nettest: %s expected %lu got %lu (sent %lu recv %lu)\n",
		     what, want, got, n.sent, n.recv);
	guest_exit(GUEST_EXIT_NETTEST);
}

static void tx_reap(void)
{
	uint8_t *p;

	while ((p = guest_virtq_get(&n.dev.vq[Q_TX], NULL)))
		n.tx_busy[(p - n.tx[0]) / BUF_SIZE] = false;
}

static int tx_slot(void)
{
	int i;

	tx_reap();
	for (i = 0; i < TX_BUFS; i++)
		if (!n.tx_busy[i])
			return i;
	return -1;
}

/* Queues one frame; false when no transmit buffer is free. */
static bool send(enum kind kind, uint16_t flags, uint64_t seq)
{
	int slot = tx_slot();
	uint8_t *b, *eth;
	struct msg *m;
	uint32_t len = kind == K_DATA ? n.frame : FRAME_MIN, i;

	if (slot < 0)
		return false;
	b = n.tx[slot];
	memset(b, 0, NET_HDR); /* no checksum offload, no GSO */
	eth = b + NET_HDR;
	memcpy(eth, n.peer, 6);
	memcpy(eth + 6, n.mac, 6);
	eth[12] = ETHERTYPE >> 8;
	eth[13] = ETHERTYPE & 0xff;
	m = (struct msg *)(eth + ETH_HDR);
	*m = (struct msg){ .magic = MAGIC,
			   .kind = kind,
			   .role = n.role,
			   .flags = flags,
			   .seq = seq,
			   .ack = n.recv,
			   .len = len };
	for (i = ETH_HDR + sizeof(*m); i < len; i++)
		eth[i] = kind == K_DATA ? fill_byte(n.role, seq, i) : 0;
	/* The ring may be smaller than our buffer pool. */
	if (guest_virtq_add(&n.dev.vq[Q_TX],
			    &(struct guest_vbuf){ b, NET_HDR + len, false }, 1,
			    b))
		return false;
	n.tx_busy[slot] = true;
	if (kind != K_SYNC)
		n.ack_sent = n.recv;
	return true;
}

static void on_ack(uint64_t ack)
{
	if (ack > n.sent)
		fail("BAD ack beyond what was sent:", n.sent, ack);
	if (ack < n.acked)
		fail("BAD ack went backwards:", n.acked, ack);
	n.acked = ack;
}

static void on_frame(const uint8_t *eth, uint32_t len)
{
	const struct msg *m = (const struct msg *)(eth + ETH_HDR);
	uint32_t i;

	if (len < ETH_HDR + sizeof(*m) || eth[12] != ETHERTYPE >> 8 ||
	    eth[13] != (ETHERTYPE & 0xff) || m->magic != MAGIC ||
	    m->role == n.role) {
		n.others++;
		return;
	}
	if (!n.heard)
		memcpy(n.peer, eth + 6, 6);
	n.heard = true;
	switch (m->kind) {
	case K_SYNC:
		if (m->flags & SYNC_HEARD)
			n.running = true;
		else
			n.sync_reply = true;
		return;
	case K_DATA:
		n.running = true;
		if (m->seq <= n.recv)
			fail("DUP frame:", n.recv + 1, m->seq);
		if (m->seq != n.recv + 1)
			fail("LOST frame:", n.recv + 1, m->seq);
		if (m->len != len || len < FRAME_MIN || len > FRAME_MAX)
			fail("BAD frame length:", m->len, len);
		for (i = ETH_HDR + sizeof(*m); i < len; i++)
			if (eth[i] != fill_byte(m->role, m->seq, i))
				fail("BAD frame content at byte", i, eth[i]);
		n.recv = m->seq;
		on_ack(m->ack);
		return;
	case K_ACK:
		n.running = true;
		on_ack(m->ack);
		return;
	default:
		n.others++;
	}
}

static void setup(void)
{
	unsigned int i;
	const char *role;
	size_t len;

	role = guest_arg("role", &len);
	if (!role || len != 1 || (role[0] != 'a' && role[0] != 'b')) {
		guest_printf("nettest: ERROR role=a or role=b is required\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	n.role = role[0];
	n.count = guest_arg_u64("count", 0);
	n.window = guest_arg_u64("window", 32);
	n.frame = guest_arg_u64("frame", 256);
	n.inject_dup = guest_arg_is("inject", "dup");
	n.inject_lost = guest_arg_is("inject", "lost");
	if (n.frame < FRAME_MIN || n.frame > FRAME_MAX || !n.window ||
	    n.window > RX_BUFS / 4) {
		guest_printf("nettest: ERROR frame must be 60..1514 and window "
			     "1..%u\n",
			     RX_BUFS / 4);
		guest_exit(GUEST_EXIT_FAIL);
	}
	if (guest_virtio_find(GUEST_VIRTIO_NET, 0, &n.dev) ||
	    guest_virtio_init(&n.dev, guest_virtio_arg_features(&n.dev) |
					  1ull << NET_F_MAC) ||
	    guest_virtq_setup(&n.dev, Q_RX, RX_BUFS) ||
	    guest_virtq_setup(&n.dev, Q_TX, TX_BUFS)) {
		guest_printf("nettest: ERROR no usable virtio-net\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	n.dev.wait_irq = false; /* it polls both queues */
	if (n.dev.vq[Q_RX].size < RX_BUFS) {
		guest_printf("nettest: ERROR receive queue too small\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	n.rx = guest_alloc((uint64_t)RX_BUFS * BUF_SIZE, 4096);
	n.tx = guest_alloc((uint64_t)TX_BUFS * BUF_SIZE, 4096);
	if (!n.rx || !n.tx) {
		guest_printf("nettest: ERROR not enough RAM\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	/* 5.1.4: the MAC is only valid with VIRTIO_NET_F_MAC; otherwise make
	 * up a locally administered one from the role. */
	for (i = 0; i < 6; i++)
		n.mac[i] =
		    guest_virtio_has(&n.dev, NET_F_MAC)
			? guest_virtio_cfg8(&n.dev, CFG_MAC + i)
			: (uint8_t[]){ 0x02, 0x73, 0x74, 0, 0, n.role }[i];
	memset(n.peer, 0xff, 6); /* broadcast until the peer is heard */
	guest_virtio_driver_ok(&n.dev);
	for (i = 0; i < RX_BUFS; i++)
		guest_virtq_add(&n.dev.vq[Q_RX],
				&(struct guest_vbuf){ n.rx[i], BUF_SIZE, true },
				1, n.rx[i]);
	guest_virtq_kick(&n.dev.vq[Q_RX]);
	guest_printf("nettest: role %c mac %02x:%02x:%02x:%02x:%02x:%02x "
		     "features 0x%lx window %lu frame %lu count %lu\n",
		     n.role, n.mac[0], n.mac[1], n.mac[2], n.mac[3], n.mac[4],
		     n.mac[5], n.dev.features, n.window, n.frame, n.count);
}

static bool finished(void)
{
	return n.count && n.sent == n.count && n.acked == n.count &&
	       n.recv == n.count && n.ack_sent == n.count;
}

void guest_main(void)
{
	uint64_t hz, next_sync, next_report, last_rx, stall;
	struct guest_virtq *rxq, *txq;
	unsigned int spins = 0;
	bool was_running = false;

	guest_printf("nettest: start\n");
	setup();
	rxq = &n.dev.vq[Q_RX];
	txq = &n.dev.vq[Q_TX];
	hz = guest_tsc_hz();
	stall = guest_arg_u64("stall_ms", 0) * (hz / 1000);
	next_sync = next_report = last_rx = guest_rdtsc();

	for (;;) {
		uint64_t now = guest_rdtsc();
		uint32_t len;
		uint8_t *p;
		bool sent_data = false;

		while ((p = guest_virtq_get(rxq, &len))) {
			if (len > NET_HDR && len <= BUF_SIZE)
				on_frame(p + NET_HDR, len - NET_HDR);
			guest_virtq_add(
			    rxq, &(struct guest_vbuf){ p, BUF_SIZE, true }, 1,
			    p);
			last_rx = now;
		}
		guest_virtq_kick(rxq);
		if (n.running && !was_running) {
			guest_printf("nettest: peer heard, running\n");
			was_running = true;
		}

		if ((n.sync_reply || (!n.running && now >= next_sync)) &&
		    send(K_SYNC, n.heard ? SYNC_HEARD : 0, 0)) {
			n.sync_reply = false;
			next_sync = now + hz / 1000000 * SYNC_US;
		}
		while (n.running && n.sent - n.acked < n.window &&
		       (!n.count || n.sent < n.count) &&
		       send(K_DATA, 0, n.sent + 1)) {
			n.sent++;
			sent_data = true;
			if (n.sent == INJECT_AT && n.inject_dup)
				send(K_DATA, 0, n.sent);
			if (n.sent + 1 == INJECT_AT && n.inject_lost)
				n.sent++;
		}
		/* An ack of its own when data does not carry it soon enough. */
		if (n.recv != n.ack_sent &&
		    (!sent_data || n.recv - n.ack_sent >= n.window / 4))
			send(K_ACK, 0, 0);
		guest_virtq_kick(txq);

		if (now >= next_report || finished()) {
			guest_printf("nettest: sent %lu recv %lu ok\n", n.sent,
				     n.recv);
			next_report = now + hz;
		}
		if (finished()) {
			/* Let the last frames (our final ack) leave. */
			while (guest_virtq_free(txq) < txq->size &&
			       guest_rdtsc() - now < hz)
				tx_reap();
			guest_printf("nettest: done, %lu frames each way, %lu "
				     "others, %lu kicks, %lu suppressed\n",
				     n.count, n.others, txq->kicks,
				     txq->kicks_skipped);
			guest_exit(GUEST_EXIT_OK);
		}
		if (stall && n.running && now - last_rx > stall) {
			guest_printf("nettest: STALL nothing received for "
				     "%lu ms (sent %lu recv %lu)\n",
				     stall / (hz / 1000), n.sent, n.recv);
			guest_exit(GUEST_EXIT_NETTEST);
		}
		if (++spins % 1024 == 0 && guest_virtio_needs_reset(&n.dev)) {
			guest_printf("nettest: ERROR device needs reset\n");
			guest_exit(GUEST_EXIT_DEVICE);
		}
		guest_pause();
	}
}
