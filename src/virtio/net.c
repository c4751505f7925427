/* virtio-net (virtio 1.2 section 5.1) without offloads: one receive and
 * one transmit queue, a MAC address and link status, the control queue
 * for the guest's announcement after a migration, over a host tap device
 * or a rootless UNIX datagram socket (one frame per datagram). */
#include "virtio/devices.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/log.h"
#include "core/vm.h"
#include "virtio/device_priv.h"

/* Feature bits (5.1.3). */
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
/* Config status bits (5.1.4). */
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2

/* Queues (5.1.2): receiveq1, transmitq1, controlq (without MQ the
 * control queue is the third). A device restored from a snapshot of
 * table version 1 has the first two only, as it had when it was saved. */
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_CTRLQ 2
#define NET_NUM_QUEUES 3
#define NET_QUEUES_V1 2

/* Control requests (5.1.6.5): class and command, then the ack. */
#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0
#define NET_CTRL_HDR_LEN 2

/* Config layout (5.1.4): struct virtio_net_config up to mtu. */
#define NET_CFG_MAC 0
#define NET_CFG_STATUS 6
#define NET_CFG_MAX_VQ_PAIRS 8
#define NET_CFG_MTU 10
#define NET_CFG_LEN 12

/* 5.1.6: struct virtio_net_hdr is 12 bytes with VERSION_1 (num_buffers
 * always present). */
#define NET_HDR_LEN 12
#define NET_HDR_NUM_BUFFERS 10

/* An Ethernet frame without FCS: header and at most 1500 bytes of
 * payload, or larger from a peer with a bigger MTU; anything beyond the
 * bounce buffer is dropped. */
#define NET_ETH_HLEN 14
#define NET_FRAME_MAX 65536

/* How long one wait for a full peer lasts before looking again. */
#define NET_TX_WAIT_MS 100

struct virtio_net {
	/* Saved (net_state_desc): the guest read this address, so a
	 * restore keeps it even when the backend changes. */
	uint8_t mac[6];
	/* Saved since version 2: NET_NUM_QUEUES, or NET_QUEUES_V1 for a
	 * device first restored from version 1. */
	uint8_t nqueues;
	/* Saved since version 2: VIRTIO_NET_S_ANNOUNCE is set, until the
	 * driver's ANNOUNCE_ACK (5.1.6.5.4). Under vdev->lock. */
	bool announce;

	enum net_backend backend;
	int fd; /* tap or our datagram socket */
	char *path; /* bound socket path, unlinked on destroy */
	struct sockaddr_un peer; /* where frames go (unix backend) */
	socklen_t peer_len; /* 0: no peer known yet */
	bool peer_fixed; /* peer= given, else the last sender */
	bool connected; /* fd connect()ed to peer: poll tells writability */
	/* Frames are waiting but the driver has given no receive buffers;
	 * cleared when it adds some. */
	bool rx_waiting;
	uint64_t rx_dropped, tx_dropped;
	uint64_t ctrl_refused; /* control requests answered VIRTIO_NET_ERR */

	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_CHAIN];
	uint8_t frame[NET_FRAME_MAX];
	struct virtio_device *vdev;
};

static const struct state_field net_state_fields[] = {
	STATE_U8_ARRAY(struct virtio_net, mac, 1),
	STATE_U8(struct virtio_net, nqueues, 2),
	STATE_BOOL(struct virtio_net, announce, 2),
};

static int net_state_validate(const void *obj)
{
	const struct virtio_net *net = obj;

	if (net->mac[0] & 1) /* never a multicast address */
		return -EINVAL;
	if (net->nqueues != NET_NUM_QUEUES && net->nqueues != NET_QUEUES_V1)
		return -EINVAL;
	/* No control queue, no announcement. */
	return net->announce && net->nqueues != NET_NUM_QUEUES ? -EINVAL : 0;
}

static const struct state_desc net_state_desc = {
	.name = "virtio-net",
	.version = 2,
	.min_version = 1,
	.fields = net_state_fields,
	.nfields = STATE_NFIELDS(net_state_fields),
	.validate = net_state_validate,
};

static uint64_t net_features(struct virtio_device *vdev)
{
	uint64_t f = 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS;

	/* 5.1.3.1: GUEST_ANNOUNCE needs the control queue. */
	if (vdev->num_queues > NET_CTRLQ)
		f |= 1ull << VIRTIO_NET_F_CTRL_VQ |
		     1ull << VIRTIO_NET_F_GUEST_ANNOUNCE;
	return f;
}

/* Whether the driver accepted feature @bit (FEATURES_OK set with it). */
static bool net_has(const struct virtio_device *vdev, unsigned bit)
{
	uint8_t status = __atomic_load_n(&vdev->status, __ATOMIC_ACQUIRE);

	return (status & VIRTIO_STATUS_FEATURES_OK) &&
	       (vdev->driver_features >> bit & 1);
}

/* The announcement needs both features (5.1.3.1): a driver that took
 * GUEST_ANNOUNCE without CTRL_VQ could never acknowledge it. */
static bool net_can_announce(const struct virtio_device *vdev)
{
	return vdev->num_queues > NET_CTRLQ &&
	       net_has(vdev, VIRTIO_NET_F_CTRL_VQ) &&
	       net_has(vdev, VIRTIO_NET_F_GUEST_ANNOUNCE);
}

static void net_config_read(struct virtio_device *vdev, uint32_t off,
			    uint8_t *data, uint32_t len)
{
	struct virtio_net *net = vdev->priv;
	uint8_t cfg[NET_CFG_LEN] = { 0 };
	uint16_t status = VIRTIO_NET_S_LINK_UP;

	if (net->announce && net_can_announce(vdev))
		status |= VIRTIO_NET_S_ANNOUNCE;
	memcpy(cfg + NET_CFG_MAC, net->mac, 6);
	put_le16(cfg + NET_CFG_STATUS, status);
	put_le16(cfg + NET_CFG_MAX_VQ_PAIRS, 1);
	put_le16(cfg + NET_CFG_MTU, 1500);
	virtio_config_copy(cfg, sizeof(cfg), off, data, len);
}

static void net_config_write(struct virtio_device *vdev, uint32_t off,
			     const uint8_t *data, uint32_t len)
{
	/* 5.1.4: the config is read-only without CTRL_MAC_ADDR. */
}

/* Takes one frame from the backend into @buf. Returns its length, 0 when
 * none is waiting, or -errno. */
static ssize_t net_backend_recv(struct virtio_net *net, void *buf, size_t len)
{
	struct sockaddr_un from;
	socklen_t fromlen = sizeof(from);
	ssize_t r;

	do {
		if (net->backend == NET_BACKEND_TAP)
			r = read(net->fd, buf, len);
		else
			r = recvfrom(net->fd, buf, len, MSG_TRUNC,
				     (struct sockaddr *)&from, &fromlen);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (net->backend == NET_BACKEND_UNIX && !net->peer_fixed &&
	    fromlen > offsetof(struct sockaddr_un, sun_path) &&
	    fromlen <= sizeof(from)) {
		/* Without peer=, replies go to whoever spoke last. */
		net->peer = from;
		net->peer_len = fromlen;
	}
	return r;
}

/* Receive queue: one frame per chain, header first (5.1.6.4). A frame is
 * only taken from the backend once a chain is in hand, so a frame that
 * finds no buffer stays in the socket or tap queue. */
static enum chain_result net_rx(void *opaque, const struct virtq_chain *c,
				uint32_t *written)
{
	struct virtio_net *net = opaque;
	uint8_t hdr[NET_HDR_LEN] = { 0 };
	ssize_t r;

	*written = 0;
	for (;;) {
		r = net_backend_recv(net, net->frame, sizeof(net->frame));
		if (r <= 0)
			return CHAIN_LATER; /* nothing (or an error) now */
		if ((size_t)r <= sizeof(net->frame) &&
		    NET_HDR_LEN + (uint64_t)r <= c->in_len)
			break;
		/* Larger than our bounce buffer or this chain (without
		 * MRG_RXBUF the driver gives full-size buffers, 5.1.6.3.1):
		 * a frame no NIC could take. */
		net->rx_dropped++;
	}
	/* No offloads: flags and gso_type 0; one buffer (5.1.6.4). */
	put_le16(hdr + NET_HDR_NUM_BUFFERS, 1);
	virtq_chain_write(c, 0, hdr, sizeof(hdr));
	virtq_chain_write(c, NET_HDR_LEN, net->frame, (size_t)r);
	*written = NET_HDR_LEN + (uint32_t)r;
	return CHAIN_DONE;
}

static bool net_backend_readable(const struct virtio_net *net)
{
	struct pollfd p = { .fd = net->fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Delivers waiting frames. Returns 0, -EIO for a broken queue, or
 * -EAGAIN when frames wait but the receive queue has no buffers: they
 * stay in the backend, and the transport stops polling it until the
 * driver adds buffers (queue_notify), rather than spin. */
static int net_input(struct virtio_net *net)
{
	int r =
	    virtio_queue_drain(net->vdev, NET_RXQ, &net->chain, net_rx, net);

	if (r < 0)
		return -EIO;
	net->rx_waiting = r == 0 && net_backend_readable(net);
	return net->rx_waiting ? -EAGAIN : 0;
}

/* Sends one frame. Returns 0 when sent or dropped for good, -EAGAIN when
 * the backend cannot take it now. */
static int net_backend_send(struct virtio_net *net, struct iovec *iov,
			    unsigned n)
{
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n };
	ssize_t r;

	if (net->backend == NET_BACKEND_TAP) {
		do {
			r = writev(net->fd, iov, (int)n);
		} while (r < 0 && errno == EINTR);
	} else {
		if (!net->peer_len) {
			net->tx_dropped++; /* nobody to send to yet */
			return 0;
		}
		/* A connected socket lets poll() say when a full peer has
		 * room again; connect whenever the peer is there. */
		if (net->peer_fixed && !net->connected)
			net->connected =
			    !connect(net->fd, (struct sockaddr *)&net->peer,
				     net->peer_len);
		if (!net->connected) {
			msg.msg_name = &net->peer;
			msg.msg_namelen = net->peer_len;
		}
		do {
			r = sendmsg(net->fd, &msg, MSG_NOSIGNAL);
		} while (r < 0 && errno == EINTR);
	}
	if (r >= 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
		return -EAGAIN;
	/* The peer is gone or restarting (a cable pulled out): the frame is
	 * lost, as on a real link, and the next send connects afresh. */
	if (net->connected &&
	    (errno == ECONNREFUSED || errno == ENOENT || errno == ENOTCONN)) {
		struct sockaddr_un none = { .sun_family = AF_UNSPEC };

		connect(net->fd, (struct sockaddr *)&none, sizeof(none));
		net->connected = false;
	}
	net->tx_dropped++;
	return 0;
}

/* Transmit queue: header then frame in the readable part (5.1.6.2). */
static enum chain_result net_tx(void *opaque, const struct virtq_chain *c,
				uint32_t *written)
{
	struct virtio_net *net = opaque;
	uint64_t len = c->out_len > NET_HDR_LEN ? c->out_len - NET_HDR_LEN : 0;
	unsigned n;

	*written = 0;
	if (len < NET_ETH_HLEN || len > NET_FRAME_MAX) {
		net->tx_dropped++; /* not a frame */
		return CHAIN_DONE;
	}
	n = iov_slice(c->iov, c->nout, NET_HDR_LEN, len, net->iov);
	return net_backend_send(net, net->iov, n) == -EAGAIN ? CHAIN_LATER
							     : CHAIN_DONE;
}

/* The peer's queue is full and a frame waits in our transmit queue (put
 * back, not dropped). Waits a little for room, receiving meanwhile so two
 * VMs sending to each other cannot both wait forever, and returns early
 * when the transport wants the worker (park or stop). Returns false when
 * the worker is wanted. */
static bool net_tx_wait(struct virtio_net *net)
{
	struct pollfd p[2] = {
		{ .fd = net->fd, .events = POLLIN },
		{ .fd = net->vdev->ctl_fd, .events = POLLIN },
	};

	if (net->rx_waiting)
		p[0].events = 0;
	/* Only a connected datagram socket reports the peer's room. */
	if (net->connected)
		p[0].events |= POLLOUT;
	if (poll(p, 2, net->connected ? NET_TX_WAIT_MS : 1) < 0 &&
	    errno != EINTR)
		return false;
	if (p[1].revents) {
		/* Kick ourselves, so the worker tries the waiting frames
		 * again once it is unparked: the driver may have nothing
		 * more to send, and so no kick of its own. */
		if (net->vdev->kick_fd[NET_TXQ] >= 0)
			eventfd_write(net->vdev->kick_fd[NET_TXQ], 1);
		return false;
	}
	if (p[0].revents & POLLIN)
		return net_input(net) != -EIO;
	return true;
}

static int net_output(struct virtio_net *net)
{
	int r;

	while ((r = virtio_queue_drain(net->vdev, NET_TXQ, &net->chain, net_tx,
				       net)) == 1)
		if (!net_tx_wait(net))
			break;
	return r < 0 ? -EIO : 0;
}

/* Control queue (5.1.6.5): class and command in the device-readable
 * part, the ack in the last byte of the device-writable part. Only
 * ANNOUNCE_ACK exists here, with no command data (5.1.6.5.4); every other
 * class or command, a request of another size, or one from a driver that
 * did not accept GUEST_ANNOUNCE, is answered VIRTIO_NET_ERR. A chain with
 * nowhere to put the ack is returned unanswered. */
static enum chain_result net_ctrl(void *opaque, const struct virtq_chain *c,
				  uint32_t *written)
{
	struct virtio_net *net = opaque;
	struct virtio_device *vdev = net->vdev;
	uint8_t hdr[NET_CTRL_HDR_LEN], ack = VIRTIO_NET_ERR;

	*written = 0;
	if (!c->in_len) {
		net->ctrl_refused++;
		return CHAIN_DONE;
	}
	if (c->out_len == NET_CTRL_HDR_LEN && c->in_len == 1 &&
	    virtq_chain_read(c, 0, hdr, sizeof(hdr)) == sizeof(hdr) &&
	    hdr[0] == VIRTIO_NET_CTRL_ANNOUNCE &&
	    hdr[1] == VIRTIO_NET_CTRL_ANNOUNCE_ACK && net_can_announce(vdev)) {
		/* 5.1.6.5.4: the bit is clear before the buffer is used. */
		pthread_mutex_lock(&vdev->lock);
		net->announce = false;
		pthread_mutex_unlock(&vdev->lock);
		ack = VIRTIO_NET_OK;
	} else {
		net->ctrl_refused++;
	}
	virtq_chain_write(c, c->in_len - 1, &ack, 1);
	*written = c->in_len > UINT32_MAX ? UINT32_MAX : (uint32_t)c->in_len;
	return CHAIN_DONE;
}

static int net_control(struct virtio_net *net)
{
	/* A driver that did not accept the control queue has none. */
	if (!net_has(net->vdev, VIRTIO_NET_F_CTRL_VQ))
		return 0;
	return virtio_queue_drain(net->vdev, NET_CTRLQ, &net->chain, net_ctrl,
				  net) < 0
		   ? -EIO
		   : 0;
}

static int net_queue_notify(struct virtio_device *vdev, unsigned q)
{
	struct virtio_net *net = vdev->priv;

	if (q == NET_CTRLQ)
		return net_control(net);
	if (q == NET_RXQ && net_input(net) == -EIO)
		return -EIO;
	/* A receive kick also retries frames a full peer left waiting in
	 * the transmit queue. */
	return net_output(net);
}

static int net_fd_ready(struct virtio_device *vdev)
{
	return net_input(vdev->priv);
}

/* Snapshot, worker parked: frames the peer sent before this VM paused may
 * still wait in the socket or tap queue, which ends with the process if
 * it exits after the snapshot. Deliver what the posted receive buffers
 * take, so those frames are in guest memory, in the snapshot; the rest
 * (none while the driver keeps buffers posted) stays queued. */
static int net_pre_save(struct virtio_device *vdev)
{
	int r = net_input(vdev->priv);

	/* -EIO: the queue broke, the device is in NEEDS_RESET and saved so. */
	return r == -EAGAIN || r == -EIO ? 0 : r;
}

static void net_reset(struct virtio_device *vdev)
{
	struct virtio_net *net = vdev->priv;

	net->rx_waiting = false;
	net->announce = false;
}

/* Restore: version 1 had no control queue, so the device keeps the two
 * queues (and three MSI-X vectors) its driver found; a version 2 record
 * says which shape it had. */
static int net_load_layout(struct virtio_device *vdev, uint16_t version)
{
	struct virtio_net *net = vdev->priv;

	if (version < 2) {
		net->nqueues = NET_QUEUES_V1;
		net->announce = false;
	}
	return virtio_device_set_queues(vdev, net->nqueues);
}

int virtio_net_announce(struct virtio_device *vdev)
{
	struct virtio_net *net = vdev->priv;
	uint8_t status;

	if (!vdev->ops || !net || strcmp(vdev->ops->kind, "net"))
		return -ENODEV;
	status = __atomic_load_n(&vdev->status, __ATOMIC_ACQUIRE);
	if (!(status & VIRTIO_STATUS_DRIVER_OK) ||
	    (status & VIRTIO_STATUS_NEEDS_RESET) || !net_can_announce(vdev))
		return -EOPNOTSUPP;
	pthread_mutex_lock(&vdev->lock);
	net->announce = true;
	pthread_mutex_unlock(&vdev->lock);
	/* 5.1.6.5.4: the driver looks at the status on a config change. */
	virtio_device_config_changed(vdev);
	return 0;
}

unsigned virtio_net_announce_all(struct vm *vm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->nvirtio; i++)
		if (virtio_net_announce(&vm->virtio[i]) == 0)
			n++;
	return n;
}

static void net_destroy(struct virtio_device *vdev)
{
	struct virtio_net *net = vdev->priv;

	if (!net)
		return;
	if (net->fd >= 0)
		close(net->fd);
	if (net->path)
		unlink(net->path);
	free(net->path);
	free(net);
	vdev->priv = NULL;
}

static const struct virtio_device_ops net_ops = {
	.kind = "net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = NET_NUM_QUEUES,
	.config_len = NET_CFG_LEN,
	.features = net_features,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.queue_notify = net_queue_notify,
	.fd_ready = net_fd_ready,
	.reset = net_reset,
	.state_desc = &net_state_desc,
	.load_layout = net_load_layout,
	.destroy = net_destroy,
	.pre_save = net_pre_save,
};

static int net_open_tap(struct virtio_net *net, const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int ret;

	net->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (net->fd < 0) {
		ret = -errno;
		log_error("--net: cannot open /dev/net/tun: %s",
			  strerror(-ret));
		return ret;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(net->fd, TUNSETIFF, &ifr)) {
		ret = -errno;
		log_error("--net: cannot attach to tap %s: %s", name,
			  strerror(-ret));
		return ret;
	}
	return 0;
}

static int net_open_unix(struct virtio_net *net, const struct net_config *cfg)
{
	int ret;

	net->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (net->fd < 0)
		return -errno;
	ret = virtio_unix_bind(net->fd, cfg->path);
	if (ret) {
		log_error("--net: cannot bind %s: %s", cfg->path,
			  strerror(-ret));
		return ret;
	}
	net->path = strdup(cfg->path);
	if (!net->path)
		return -ENOMEM;
	if (cfg->peer) {
		net->peer.sun_family = AF_UNIX;
		snprintf(net->peer.sun_path, sizeof(net->peer.sun_path), "%s",
			 cfg->peer);
		net->peer_len = sizeof(net->peer);
		net->peer_fixed = true;
	}
	return 0;
}

/* Without mac=: 52:54:00 (locally administered, unicast) and three bytes
 * from the backend's name and the device index, so two VMs linked through
 * their sockets get different addresses, and a restore the same one. */
static void net_default_mac(const struct net_config *cfg, unsigned index,
			    uint8_t mac[6])
{
	const char *key =
	    cfg->backend == NET_BACKEND_TAP ? cfg->tap : cfg->path;
	uint64_t h = XXH3_64bits(key, strlen(key)) + index;

	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

int virtio_net_create(struct virtio_device *vdev, struct vm *vm,
		      const struct net_config *cfg, unsigned index,
		      const char *name, uint8_t slot)
{
	struct virtio_net *net = calloc(1, sizeof(*net));
	int ret;

	if (!net) {
		log_error("%s: out of memory", name);
		return -ENOMEM;
	}
	net->fd = -1;
	net->nqueues = NET_NUM_QUEUES;
	net->backend = cfg->backend;
	if (cfg->mac_set)
		memcpy(net->mac, cfg->mac, 6);
	else
		net_default_mac(cfg, index, net->mac);
	ret = cfg->backend == NET_BACKEND_TAP ? net_open_tap(net, cfg->tap)
					      : net_open_unix(net, cfg);
	if (ret)
		goto fail;
	ret = virtio_device_create(vdev, vm, &net_ops, net, name, slot);
	if (ret)
		goto fail;
	net->vdev = vdev;
	vdev->extra_fd = net->fd;
	return 0;
fail:
	if (ret == -ENOMEM)
		log_error("%s: out of memory", name);
	vdev->priv = net;
	net_destroy(vdev);
	return ret;
}
