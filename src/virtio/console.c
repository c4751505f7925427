/* virtio-console (virtio 1.2 section 5.3) with one port and no multiport:
 * guest output to stdout, a file or a UNIX socket client, and input from
 * stdin or that client. */
#include "virtio/devices.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/host_output.h"
#include "core/log.h"
#include "snapshot/state.h"
#include "virtio/device_priv.h"

/* Feature bits (5.3.3). */
#define VIRTIO_CONSOLE_F_SIZE 0
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2

/* Queues (5.3.2): port 0's receive and transmit queues. */
#define CONSOLE_RXQ 0
#define CONSOLE_TXQ 1

/* Config layout (5.3.4): struct virtio_console_config. */
#define CONSOLE_CFG_COLS 0
#define CONSOLE_CFG_ROWS 2
#define CONSOLE_CFG_MAX_NR_PORTS 4
#define CONSOLE_CFG_EMERG_WR 8
#define CONSOLE_CFG_LEN 12

/* A socket client that takes no output for this long is dropped, so a
 * client that stopped reading cannot hold the guest's console (a Linux
 * guest spins in its console write until the device takes the buffer).
 * stdout and files have no such limit: their output waits for the reader,
 * as a terminal's does. */
#define CONSOLE_CLIENT_TIMEOUT_MS 5000

struct virtio_console {
	enum console_mode mode;
	char *path; /* file or socket */
	/* stdout, the file or the client, never blocking; fd -1: output is
	 * dropped (no client). */
	struct host_output out;
	int in_fd; /* stdin or the client; -1: no input */
	int listen_fd; /* socket mode */
	uint16_t cols, rows;
	uint64_t stall_since; /* ns: since when the client took nothing */

	/* Saved (console_state_desc): how many bytes of the transmit chain
	 * at the head of the queue are already out. A reader that is full
	 * leaves that chain in the queue, so a snapshot then restores it
	 * with this count and the rest follows: nothing is written twice
	 * or lost. */
	uint32_t tx_done;

	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_CHAIN];
	struct virtio_device *vdev;
};

static const struct state_field console_state_fields[] = {
	STATE_U32(struct virtio_console, tx_done, 1),
};

/* Version 0 (no fields) is the console before tx_done: snapshots of it
 * restore with nothing half written. */
static const struct state_desc console_state_desc = {
	.name = "virtio-console",
	.version = 1,
	.min_version = 0,
	.fields = console_state_fields,
	.nfields = STATE_NFIELDS(console_state_fields),
};

static uint64_t console_features(struct virtio_device *vdev)
{
	return 1ull << VIRTIO_CONSOLE_F_SIZE |
	       1ull << VIRTIO_CONSOLE_F_EMERG_WRITE;
}

static void console_config_read(struct virtio_device *vdev, uint32_t off,
				uint8_t *data, uint32_t len)
{
	struct virtio_console *con = vdev->priv;
	uint8_t cfg[CONSOLE_CFG_LEN] = { 0 };

	put_le16(cfg + CONSOLE_CFG_COLS, con->cols);
	put_le16(cfg + CONSOLE_CFG_ROWS, con->rows);
	put_le32(cfg + CONSOLE_CFG_MAX_NR_PORTS, 1);
	virtio_config_copy(cfg, sizeof(cfg), off, data, len);
}

/* 5.3.4: a write to emerg_wr outputs one character at once, even before
 * the queues are set up. Runs on a vCPU thread: only the stdio and file
 * outputs, whose fd never changes, are used here. */
static void console_config_write(struct virtio_device *vdev, uint32_t off,
				 const uint8_t *data, uint32_t len)
{
	struct virtio_console *con = vdev->priv;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = 1 };

	if (off != CONSOLE_CFG_EMERG_WR || len == 0)
		return;
	if (con->mode == CONSOLE_STDIO || con->mode == CONSOLE_FILE)
		host_output_write(&con->out, &iov, 1);
}

/* Sets what the worker watches: the input, or the listening socket while
 * no client is connected. */
static void console_watch(struct virtio_console *con)
{
	con->vdev->extra_fd = con->in_fd >= 0 ? con->in_fd : con->listen_fd;
}

static void console_drop_client(struct virtio_console *con, const char *why)
{
	if (con->mode != CONSOLE_SOCKET || con->in_fd < 0)
		return;
	log_info("%s: console client %s", con->vdev->name, why);
	host_output_close(&con->out); /* the client's fd, also in_fd */
	con->in_fd = -1;
	con->stall_since = 0;
	virtio_device_wait_writable(con->vdev, -1, CONSOLE_TXQ, 0);
	console_watch(con);
}

static bool fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return fd >= 0 && poll(&p, 1, 0) == 1;
}

/* Receive queue: input straight into the guest's buffer. Only what is
 * already there is read, so the worker never blocks. */
static enum chain_result console_rx(void *opaque, const struct virtq_chain *c,
				    uint32_t *written)
{
	struct virtio_console *con = opaque;
	unsigned n;
	ssize_t r;

	if (!fd_readable(con->in_fd))
		return CHAIN_LATER;
	n = iov_slice(c->iov + c->nout, c->nin, 0, c->in_len, con->iov);
	if (n == 0) {
		*written = 0;
		return CHAIN_DONE;
	}
	do {
		r = readv(con->in_fd, con->iov, (int)n);
	} while (r < 0 && errno == EINTR);
	if (r > 0) {
		*written = (uint32_t)r;
		return CHAIN_DONE;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return CHAIN_LATER;
	/* End of input. */
	if (con->mode == CONSOLE_SOCKET) {
		console_drop_client(con, "left");
	} else {
		con->in_fd = -1;
		console_watch(con);
	}
	return CHAIN_LATER;
}

/* Delivers waiting input. Returns 0, -EIO for a broken queue, or -EAGAIN
 * when input waits but the receive queue has no buffers: it stays in the
 * fd, and the transport stops polling it until the driver adds buffers
 * (queue_notify), rather than spin. */
static int console_input(struct virtio_console *con)
{
	int r = virtio_queue_drain(con->vdev, CONSOLE_RXQ, &con->chain,
				   console_rx, con);

	if (r < 0)
		return -EIO;
	return r == 0 && fd_readable(con->in_fd) ? -EAGAIN : 0;
}

/* The reader took nothing more of the head chain: keep the chain and wait
 * for room; a socket client gets CONSOLE_CLIENT_TIMEOUT_MS from when it
 * stopped reading, then is dropped and the chain completes. */
static enum chain_result console_tx_wait(struct virtio_console *con)
{
	uint64_t now = clock_now_ns(CLOCK_MONOTONIC), waited;

	if (con->mode != CONSOLE_SOCKET) {
		virtio_device_wait_writable(con->vdev, con->out.fd, CONSOLE_TXQ,
					    0);
		return CHAIN_LATER;
	}
	if (!con->stall_since)
		con->stall_since = now;
	waited = (now - con->stall_since) / 1000000;
	if (waited >= CONSOLE_CLIENT_TIMEOUT_MS) {
		console_drop_client(con, "stopped reading");
		con->tx_done = 0;
		return CHAIN_DONE; /* the rest is dropped with the client */
	}
	virtio_device_wait_writable(
	    con->vdev, con->out.fd, CONSOLE_TXQ,
	    (unsigned)(CONSOLE_CLIENT_TIMEOUT_MS - waited));
	return CHAIN_LATER;
}

/* Transmit queue: the buffer goes out from where an earlier try left it
 * (tx_done). Output never blocks the worker: what the reader cannot take
 * now stays in the queue until it can. */
static enum chain_result console_tx(void *opaque, const struct virtq_chain *c,
				    uint32_t *written)
{
	struct virtio_console *con = opaque;
	unsigned n;
	ssize_t r;

	*written = 0;
	/* Nobody listens (output dropped), or a count the chain does not
	 * have (the chain is done). */
	if (con->out.fd < 0 || con->tx_done >= c->out_len) {
		con->tx_done = 0;
		return CHAIN_DONE;
	}
	n = iov_slice(c->iov, c->nout, con->tx_done, c->out_len - con->tx_done,
		      con->iov);
	r = host_output_write(&con->out, con->iov, n);
	if (r > 0) {
		con->stall_since = 0;
		con->tx_done += (uint32_t)r;
		if (con->tx_done == c->out_len) {
			con->tx_done = 0;
			return CHAIN_DONE;
		}
	}
	if (r > 0 || r == -EAGAIN)
		return console_tx_wait(con);
	/* The reader is gone, or the file cannot grow: this output is
	 * lost, as on a serial line with nobody at the other end. */
	if (con->mode == CONSOLE_SOCKET)
		console_drop_client(con, "went away");
	con->tx_done = 0;
	return CHAIN_DONE;
}

static void console_accept(struct virtio_console *con)
{
	int fd = accept4(con->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	host_output_adopt(&con->out, fd);
	con->in_fd = fd;
	con->stall_since = 0;
	console_watch(con);
	log_info("%s: console client connected", con->vdev->name);
}

static int console_queue_notify(struct virtio_device *vdev, unsigned q)
{
	struct virtio_console *con = vdev->priv;

	if (q == CONSOLE_RXQ)
		return console_input(con) == -EIO ? -EIO : 0;
	return virtio_queue_drain(vdev, q, &con->chain, console_tx, con) < 0
		   ? -EIO
		   : 0;
}

static int console_fd_ready(struct virtio_device *vdev)
{
	struct virtio_console *con = vdev->priv;

	if (con->mode == CONSOLE_SOCKET && con->in_fd < 0) {
		console_accept(con);
		return 0;
	}
	return console_input(con);
}

static void console_reset(struct virtio_device *vdev)
{
	struct virtio_console *con = vdev->priv;

	/* The driver took its buffers back: a chain half written is gone. */
	con->tx_done = 0;
	con->stall_since = 0;
}

static void console_destroy(struct virtio_device *vdev)
{
	struct virtio_console *con = vdev->priv;

	if (!con)
		return;
	host_output_close(&con->out); /* also a socket client's in_fd */
	if (con->mode == CONSOLE_SOCKET) {
		if (con->listen_fd >= 0) {
			close(con->listen_fd);
			unlink(con->path);
		}
	}
	free(con->path);
	free(con);
	vdev->priv = NULL;
}

static const struct virtio_device_ops console_ops = {
	.kind = "console",
	.device_id = VIRTIO_ID_CONSOLE,
	.num_queues = 2, /* 5.3.2: receiveq0, transmitq0 */
	.config_len = CONSOLE_CFG_LEN,
	.features = console_features,
	.config_read = console_config_read,
	.config_write = console_config_write,
	.queue_notify = console_queue_notify,
	.fd_ready = console_fd_ready,
	.reset = console_reset,
	.state_desc = &console_state_desc,
	.destroy = console_destroy,
};

static int console_open(struct virtio_console *con)
{
	struct winsize ws;
	int ret;

	con->cols = 80;
	con->rows = 25;
	switch (con->mode) {
	case CONSOLE_NONE:
		return 0;
	case CONSOLE_STDIO:
		ret = host_output_open(&con->out, STDOUT_FILENO);
		if (ret) {
			log_error("--console stdio: cannot use stdout: %s",
				  strerror(-ret));
			return ret;
		}
		con->in_fd = STDIN_FILENO;
		if (!ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) && ws.ws_col &&
		    ws.ws_row) {
			con->cols = ws.ws_col;
			con->rows = ws.ws_row;
		}
		return 0;
	case CONSOLE_FILE:
		/* Appended, so a restored VM's output follows the
		 * original's. */
		ret = open(con->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			   0644);
		if (ret < 0) {
			ret = -errno;
			log_error("--console: cannot open %s: %s", con->path,
				  strerror(-ret));
			return ret;
		}
		host_output_adopt(&con->out, ret);
		return 0;
	case CONSOLE_SOCKET:
		con->listen_fd = socket(
		    AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (con->listen_fd < 0)
			return -errno;
		ret = virtio_unix_bind(con->listen_fd, con->path);
		if (!ret && listen(con->listen_fd, 1))
			ret = -errno;
		if (ret) {
			log_error("--console: cannot listen on %s: %s",
				  con->path, strerror(-ret));
			close(con->listen_fd);
			con->listen_fd = -1;
		}
		return ret;
	}
	return -EINVAL;
}

int virtio_console_create(struct virtio_device *vdev, struct vm *vm,
			  enum console_mode mode, const char *path,
			  const char *name, uint8_t slot)
{
	struct virtio_console *con = calloc(1, sizeof(*con));
	int ret = -ENOMEM;

	if (!con)
		goto fail;
	con->mode = mode;
	con->in_fd = con->out.fd = con->listen_fd = -1;
	if (path && !(con->path = strdup(path)))
		goto fail;
	ret = console_open(con);
	if (ret)
		goto fail;
	ret = virtio_device_create(vdev, vm, &console_ops, con, name, slot);
	if (ret)
		goto fail;
	con->vdev = vdev;
	console_watch(con);
	return 0;
fail:
	if (ret == -ENOMEM)
		log_error("%s: out of memory", name);
	if (con) {
		vdev->priv = con;
		console_destroy(vdev);
	}
	return ret;
}
