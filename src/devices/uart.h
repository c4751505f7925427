/* 16550A UART on COM1: the guest's console. Guest output goes to a host fd,
 * host input is fed in by the caller through uart_receive(). */
#ifndef STASIS_UART_H
#define STASIS_UART_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/host_output.h"
#include "snapshot/state.h"

struct vm;

#define UART_FIFO_SIZE 16 /* PC16550D: 16-byte receive FIFO */

struct uart {
	pthread_mutex_t lock;
	struct vm *vm;
	const struct host_output *out; /* guest output; NULL discards */
	bool initialized;
	int irq_level; /* last level driven on the IRQ line */
	bool tx_stalled; /* out stayed full: drop without waiting */

	/* Saved state (uart_state_desc). */
	uint8_t ier; /* interrupt enable, bits 3:0 */
	uint8_t lcr; /* line control; bit 7 is DLAB */
	uint8_t mcr; /* modem control, bits 4:0 */
	uint8_t lsr_err; /* sticky LSR error bits (OE), cleared on LSR read */
	uint8_t msr; /* modem status: inputs in 7:4, deltas in 3:0 */
	uint8_t scr; /* scratch */
	uint8_t fcr; /* last FIFO control write (bits 0, 3, 7:6 kept) */
	uint8_t dll, dlm; /* divisor latch */
	bool thr_ipending; /* THR-empty interrupt pending */
	uint8_t rx_fifo[UART_FIFO_SIZE];
	uint8_t rx_head; /* index of the oldest byte */
	uint8_t rx_count;
};

extern const struct state_desc uart_state_desc;

/* Resets @u to power-on values, claims PLATFORM_PORT_COM1 on vm->pio and
 * drives PLATFORM_IRQ_COM1. @out receives guest output (not owned, must
 * outlive @u; NULL or fd -1 discards it). Returns 0 or the negative errno
 * of bus_register(). */
int uart_init(struct uart *u, struct vm *vm, const struct host_output *out);

/* Puts host input into the receive FIFO. Returns how many bytes were taken
 * (0 when the FIFO is full or the UART is in loopback); the caller keeps
 * the rest and retries later. */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len);

/* True when uart_receive() would take at least one byte. */
bool uart_rx_ready(struct uart *u);

/* Rebuilds derived state after state_decode() and re-drives the IRQ line.
 * Call before the vCPUs run. Returns 0. */
int uart_post_load(struct uart *u);

/* Safe on a zeroed or never-initialised struct. */
void uart_destroy(struct uart *u);

#endif
