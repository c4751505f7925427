/* 16550A UART: registers per the National PC16550D datasheet (section 8),
 * enough for Linux's 8250 driver and for polled output. */
#include "devices/uart.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/platform.h"
#include "core/vm.h"

/* Register offsets (PC16550D Table II). DLAB = LCR bit 7 switches offsets 0
 * and 1 to the divisor latch. */
#define UART_RBR 0 /* read: receiver buffer */
#define UART_THR 0 /* write: transmitter holding */
#define UART_IER 1
#define UART_IIR 2 /* read */
#define UART_FCR 2 /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI 0x01 /* received data available (and timeout) */
#define UART_IER_THRI 0x02 /* transmitter holding register empty */
#define UART_IER_RLSI 0x04 /* receiver line status */
#define UART_IER_MSI 0x08 /* modem status */
#define UART_IER_MASK 0x0f /* bits 7:4 are always 0 on a 16550A */

/* IIR interrupt identification, highest priority first (Table IV). */
#define UART_IIR_NO_INT 0x01
#define UART_IIR_RLSI 0x06
#define UART_IIR_RDI 0x04
#define UART_IIR_TIMEOUT 0x0c
#define UART_IIR_THRI 0x02
#define UART_IIR_MSI 0x00
#define UART_IIR_FIFO_BITS 0xc0 /* both set while FCR bit 0 is set */

#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04
#define UART_FCR_DMA 0x08
#define UART_FCR_TRIGGER 0xc0
/* FCR bits 1 and 2 self-clear; only these are remembered. */
#define UART_FCR_KEPT (UART_FCR_ENABLE | UART_FCR_DMA | UART_FCR_TRIGGER)

#define UART_LCR_DLAB 0x80

#define UART_MCR_DTR 0x01
#define UART_MCR_RTS 0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08 /* gates the IRQ line on PC hardware */
#define UART_MCR_LOOP 0x10
#define UART_MCR_MASK 0x1f

#define UART_LSR_DR 0x01
#define UART_LSR_OE 0x02
#define UART_LSR_PE 0x04
#define UART_LSR_FE 0x08
#define UART_LSR_BI 0x10
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_LSR_ERRORS (UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI)

#define UART_MSR_DCTS 0x01
#define UART_MSR_DDSR 0x02
#define UART_MSR_TERI 0x04
#define UART_MSR_DDCD 0x08
#define UART_MSR_DELTAS 0x0f
#define UART_MSR_CTS 0x10
#define UART_MSR_DSR 0x20
#define UART_MSR_RI 0x40
#define UART_MSR_DCD 0x80

/* How long a vCPU may wait for a full output (a slow reader) before the
 * byte is dropped: a reader that stopped must not stall the guest, and a
 * pause kicks the vCPU out of the wait at once. */
#define UART_TX_WAIT_MS 500

static unsigned uart_rx_capacity(const struct uart *u)
{
	/* With FIFOs off the 16550A behaves as a 16450: one holding byte. */
	return (u->fcr & UART_FCR_ENABLE) ? UART_FIFO_SIZE : 1;
}

static unsigned uart_rx_trigger(const struct uart *u)
{
	/* FCR bits 7:6 select 1, 4, 8 or 14 bytes (PC16550D 8.4). */
	static const uint8_t levels[4] = { 1, 4, 8, 14 };

	if (!(u->fcr & UART_FCR_ENABLE))
		return 1;
	return levels[(u->fcr & UART_FCR_TRIGGER) >> 6];
}

/* Modem status inputs: in loopback the outputs feed the inputs (DTR->DSR,
 * RTS->CTS, OUT1->RI, OUT2->DCD, PC16550D 8.6); otherwise a peer that is
 * always ready is connected. */
static uint8_t uart_msr_inputs(const struct uart *u)
{
	uint8_t in = 0;

	if (!(u->mcr & UART_MCR_LOOP))
		return UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	if (u->mcr & UART_MCR_DTR)
		in |= UART_MSR_DSR;
	if (u->mcr & UART_MCR_RTS)
		in |= UART_MSR_CTS;
	if (u->mcr & UART_MCR_OUT1)
		in |= UART_MSR_RI;
	if (u->mcr & UART_MCR_OUT2)
		in |= UART_MSR_DCD;
	return in;
}

/* Latches new modem inputs and the delta bits their change sets. */
static void uart_update_msr(struct uart *u)
{
	uint8_t in = uart_msr_inputs(u);
	uint8_t changed = (u->msr ^ in) & 0xf0;
	uint8_t deltas = u->msr & UART_MSR_DELTAS;

	if (changed & UART_MSR_CTS)
		deltas |= UART_MSR_DCTS;
	if (changed & UART_MSR_DSR)
		deltas |= UART_MSR_DDSR;
	if (changed & UART_MSR_DCD)
		deltas |= UART_MSR_DDCD;
	/* TERI is set on the trailing edge of RI only. */
	if ((changed & UART_MSR_RI) && !(in & UART_MSR_RI))
		deltas |= UART_MSR_TERI;
	u->msr = in | deltas;
}

/* The pending interrupt of highest priority (PC16550D Table IV), without
 * the FIFO bits. */
static uint8_t uart_pending_id(const struct uart *u)
{
	if ((u->ier & UART_IER_RLSI) && (u->lsr_err & UART_LSR_ERRORS))
		return UART_IIR_RLSI;
	if (u->ier & UART_IER_RDI) {
		if (u->rx_count >= uart_rx_trigger(u))
			return UART_IIR_RDI;
		/* Below the trigger level the real chip raises a timeout after
		 * four character times without FIFO activity; we have no timer
		 * and host input arrives in bursts, so it is raised at once. */
		if (u->rx_count > 0)
			return UART_IIR_TIMEOUT;
	}
	if ((u->ier & UART_IER_THRI) && u->thr_ipending)
		return UART_IIR_THRI;
	if ((u->ier & UART_IER_MSI) && (u->msr & UART_MSR_DELTAS))
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

/* Drives the IRQ line when its level changes; @force re-drives it. */
static void uart_update_irq(struct uart *u, bool force)
{
	int level =
	    uart_pending_id(u) != UART_IIR_NO_INT && (u->mcr & UART_MCR_OUT2);

	if (!force && level == u->irq_level)
		return;
	u->irq_level = level;
	vm_set_irq(u->vm, PLATFORM_IRQ_COM1, level);
}

static void uart_rx_push(struct uart *u, uint8_t c)
{
	if (u->rx_count >= uart_rx_capacity(u)) {
		/* Overrun (PC16550D 8.4, LSR bit 1): with FIFOs the new
		 * character is lost; a 16450 overwrites its holding byte. */
		u->lsr_err |= UART_LSR_OE;
		if (!(u->fcr & UART_FCR_ENABLE))
			u->rx_fifo[u->rx_head] = c;
		return;
	}
	u->rx_fifo[(u->rx_head + u->rx_count) % UART_FIFO_SIZE] = c;
	u->rx_count++;
}

static uint8_t uart_rx_pop(struct uart *u)
{
	uint8_t c;

	if (u->rx_count == 0)
		return 0;
	c = u->rx_fifo[u->rx_head];
	u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
	u->rx_count--;
	return c;
}

static void uart_rx_clear(struct uart *u)
{
	u->rx_head = 0;
	u->rx_count = 0;
}

/* Sends one byte to the host. Errors are dropped: the guest cannot be told
 * and must not stop because the console went away. */
static void uart_tx_byte(struct uart *u, uint8_t c)
{
	bool waited = false;

	if (!u->out || u->out->fd < 0)
		return;
	for (;;) {
		struct pollfd p = { .fd = u->out->fd, .events = POLLOUT };
		struct iovec iov = { .iov_base = &c, .iov_len = 1 };
		ssize_t n = host_output_write(u->out, &iov, 1);

		if (n == 1) {
			u->tx_stalled = false;
			return;
		}
		if (n != -EAGAIN)
			return;
		/* A full output: wait a little for room, but only once
		 * until the reader comes back, so that a stuck reader costs
		 * one delay and not one per byte. */
		if (waited || u->tx_stalled)
			return;
		waited = true;
		if (poll(&p, 1, UART_TX_WAIT_MS) <= 0) {
			u->tx_stalled = true;
			return;
		}
	}
}

static void uart_write_thr(struct uart *u, uint8_t c)
{
	/* In loopback the transmitter feeds the receiver and the serial
	 * output stays idle (PC16550D 8.6). */
	if (u->mcr & UART_MCR_LOOP)
		uart_rx_push(u, c);
	else
		uart_tx_byte(u, c);
	/* Transmission is instantaneous: THR empties again at once, which
	 * raises a fresh THRE interrupt. */
	u->thr_ipending = true;
}

static void uart_write_ier(struct uart *u, uint8_t val)
{
	uint8_t old = u->ier;

	u->ier = val & UART_IER_MASK;
	/* Enabling THRI while THR is empty raises THRE at once; Linux's
	 * "THRE test" in serial8250_do_startup relies on it. */
	if ((u->ier & UART_IER_THRI) && !(old & UART_IER_THRI))
		u->thr_ipending = true;
}

static void uart_write_fcr(struct uart *u, uint8_t val)
{
	/* Toggling FCR0 empties both FIFOs; the other bits are programmed
	 * only while FCR0 is written as 1 (PC16550D 8.5). */
	if ((val ^ u->fcr) & UART_FCR_ENABLE)
		uart_rx_clear(u);
	if (!(val & UART_FCR_ENABLE)) {
		u->fcr = 0;
		return;
	}
	if (val & UART_FCR_CLEAR_RX)
		uart_rx_clear(u);
	/* UART_FCR_CLEAR_TX: the transmitter never holds data. */
	u->fcr = val & UART_FCR_KEPT;
}

static void uart_write(struct uart *u, unsigned reg, uint8_t val)
{
	bool dlab = u->lcr & UART_LCR_DLAB;

	switch (reg) {
	case UART_THR:
		if (dlab)
			u->dll = val;
		else
			uart_write_thr(u, val);
		break;
	case UART_IER:
		if (dlab)
			u->dlm = val;
		else
			uart_write_ier(u, val);
		break;
	case UART_FCR:
		uart_write_fcr(u, val);
		break;
	case UART_LCR:
		u->lcr = val;
		break;
	case UART_MCR:
		u->mcr = val & UART_MCR_MASK;
		uart_update_msr(u);
		break;
	case UART_LSR:
	case UART_MSR:
		/* Writable only in factory test modes; ignored. */
		break;
	case UART_SCR:
		u->scr = val;
		break;
	}
}

static uint8_t uart_read_iir(struct uart *u)
{
	uint8_t id = uart_pending_id(u);

	/* Reading IIR while it names THRE clears that source (Table IV). */
	if (id == UART_IIR_THRI)
		u->thr_ipending = false;
	if (u->fcr & UART_FCR_ENABLE)
		id |= UART_IIR_FIFO_BITS;
	return id;
}

static uint8_t uart_read_lsr(struct uart *u)
{
	uint8_t val = UART_LSR_THRE | UART_LSR_TEMT | u->lsr_err;

	if (u->rx_count > 0)
		val |= UART_LSR_DR;
	/* Error bits are cleared by the read (PC16550D 8.4). */
	u->lsr_err = 0;
	return val;
}

static uint8_t uart_read(struct uart *u, unsigned reg)
{
	bool dlab = u->lcr & UART_LCR_DLAB;
	uint8_t val = 0;

	switch (reg) {
	case UART_RBR:
		val = dlab ? u->dll : uart_rx_pop(u);
		break;
	case UART_IER:
		val = dlab ? u->dlm : u->ier;
		break;
	case UART_IIR:
		val = uart_read_iir(u);
		break;
	case UART_LCR:
		val = u->lcr;
		break;
	case UART_MCR:
		val = u->mcr;
		break;
	case UART_LSR:
		val = uart_read_lsr(u);
		break;
	case UART_MSR:
		val = u->msr;
		u->msr &= ~UART_MSR_DELTAS;
		break;
	case UART_SCR:
		val = u->scr;
		break;
	}
	return val;
}

static void uart_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
		    bool is_write)
{
	struct uart *u = opaque;

	pthread_mutex_lock(&u->lock);
	/* Registers are bytes; a wider access touches consecutive ones. */
	for (uint32_t i = 0; i < len; i++) {
		unsigned reg = (unsigned)(offset + i) % PLATFORM_PORT_COM1_LEN;

		if (is_write)
			uart_write(u, reg, data[i]);
		else
			data[i] = uart_read(u, reg);
	}
	uart_update_irq(u, false);
	pthread_mutex_unlock(&u->lock);
}

int uart_init(struct uart *u, struct vm *vm, const struct host_output *out)
{
	int ret;

	memset(u, 0, sizeof(*u));
	u->vm = vm;
	u->out = out;
	u->irq_level = 0; /* a fresh VM's line is low */
	u->dll = 1; /* 115200 baud; the datasheet leaves it undefined */
	u->msr = uart_msr_inputs(u);
	ret = pthread_mutex_init(&u->lock, NULL);
	if (ret)
		return -ret;
	ret = bus_register(&vm->pio, PLATFORM_PORT_COM1, PLATFORM_PORT_COM1_LEN,
			   uart_io, u, "uart");
	if (ret) {
		pthread_mutex_destroy(&u->lock);
		return ret;
	}
	u->initialized = true;
	return 0;
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	/* In loopback the serial input is disconnected (PC16550D 8.6). */
	if (!(u->mcr & UART_MCR_LOOP)) {
		while (n < len && u->rx_count < uart_rx_capacity(u))
			uart_rx_push(u, buf[n++]);
		uart_update_irq(u, false);
	}
	pthread_mutex_unlock(&u->lock);
	return n;
}

bool uart_rx_ready(struct uart *u)
{
	bool ready;

	pthread_mutex_lock(&u->lock);
	ready = !(u->mcr & UART_MCR_LOOP) && u->rx_count < uart_rx_capacity(u);
	pthread_mutex_unlock(&u->lock);
	return ready;
}

int uart_post_load(struct uart *u)
{
	pthread_mutex_lock(&u->lock);
	/* The input lines are not state: recompute them from MCR, keeping
	 * the latched deltas. */
	u->msr = (u->msr & UART_MSR_DELTAS) | uart_msr_inputs(u);
	uart_update_irq(u, true);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

void uart_destroy(struct uart *u)
{
	if (!u->initialized)
		return;
	pthread_mutex_destroy(&u->lock);
	u->initialized = false;
}

/* Rejects what the device could never reach: a FIFO index or count out of
 * range (they index rx_fifo) and reserved register bits. */
static int uart_validate(const void *obj)
{
	const struct uart *u = obj;

	if (u->rx_head >= UART_FIFO_SIZE || u->rx_count > uart_rx_capacity(u))
		return -EINVAL;
	if ((u->ier & ~UART_IER_MASK) || (u->mcr & ~UART_MCR_MASK) ||
	    (u->lsr_err & ~UART_LSR_ERRORS) || (u->fcr & ~UART_FCR_KEPT))
		return -EINVAL;
	if (!(u->fcr & UART_FCR_ENABLE) && u->fcr)
		return -EINVAL;
	return 0;
}

static const struct state_field uart_state_fields[] = {
	STATE_U8(struct uart, ier, 1),
	STATE_U8(struct uart, lcr, 1),
	STATE_U8(struct uart, mcr, 1),
	STATE_U8(struct uart, lsr_err, 1),
	STATE_U8(struct uart, msr, 1),
	STATE_U8(struct uart, scr, 1),
	STATE_U8(struct uart, fcr, 1),
	STATE_U8(struct uart, dll, 1),
	STATE_U8(struct uart, dlm, 1),
	STATE_BOOL(struct uart, thr_ipending, 1),
	STATE_U8_ARRAY(struct uart, rx_fifo, 1),
	STATE_U8(struct uart, rx_head, 1),
	STATE_U8(struct uart, rx_count, 1),
};

const struct state_desc uart_state_desc = {
	.name = "uart",
	.version = 1,
	.min_version = 1,
	.fields = uart_state_fields,
	.nfields = STATE_NFIELDS(uart_state_fields),
	.validate = uart_validate,
};
