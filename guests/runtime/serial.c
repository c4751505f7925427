/* serial.c - polled 16550A output on COM1, guest_exit and the spinlock;
 * used from ring 3 (through the I/O bitmap) and from the ring-0 fault report. */
#include "runtime.h"

#define COM1 0x3f8
#define UART_THR 0 /* transmit holding register (DLAB 0) */
#define UART_DLL 0 /* divisor latch low (DLAB 1) */
#define UART_IER 1
#define UART_DLM 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20
#define LCR_DLAB 0x80
#define LCR_8N1 0x03
#define DEBUG_EXIT_PORT 0xf4

/* Bounded spins for the fault path: a CPU may fault while holding the
 * lock, and a missing UART must not hang the report. */
#define SERIAL_SPIN_BOUND 1000000

void guest_spin_lock(struct guest_spinlock *lock)
{
	while (!guest_spin_trylock(lock))
		while (lock->locked)
			guest_pause();
}

bool guest_spin_trylock(struct guest_spinlock *lock)
{
	return __atomic_exchange_n(&lock->locked, 1, __ATOMIC_ACQUIRE) == 0;
}

void guest_spin_unlock(struct guest_spinlock *lock)
{
	__atomic_store_n(&lock->locked, 0, __ATOMIC_RELEASE);
}

/* 115200 8N1, FIFOs on, interrupts off: we poll LSR.THRE (16550A data
 * sheet, "Line Status Register"). */
void guest_serial_init(void)
{
	guest_outb(COM1 + UART_IER, 0x00);
	guest_outb(COM1 + UART_LCR, LCR_DLAB);
	guest_outb(COM1 + UART_DLL, 0x01);
	guest_outb(COM1 + UART_DLM, 0x00);
	guest_outb(COM1 + UART_LCR, LCR_8N1);
	guest_outb(COM1 + UART_FCR, 0x07);
	guest_outb(COM1 + UART_MCR, 0x03);
}

static void serial_put(char c, bool bounded)
{
	unsigned int spins = 0;

	while (!(guest_inb(COM1 + UART_LSR) & LSR_THRE)) {
		if (bounded && ++spins > SERIAL_SPIN_BOUND)
			break;
		guest_pause();
	}
	guest_outb(COM1 + UART_THR, c);
}

void guest_serial_write(const char *s, size_t n, bool bounded)
{
	struct guest_spinlock *lock = &guest_kit.serial_lock;
	bool locked = true;
	unsigned int spins = 0;
	size_t i;

	if (bounded) {
		while (!(locked = guest_spin_trylock(lock)) &&
		       ++spins < SERIAL_SPIN_BOUND)
			guest_pause();
	} else {
		guest_spin_lock(lock);
	}
	for (i = 0; i < n; i++)
		serial_put(s[i], bounded);
	if (locked)
		guest_spin_unlock(lock);
}

void guest_puts(const char *s)
{
	guest_serial_write(s, strlen(s), false);
}

void guest_exit(unsigned int code)
{
	guest_outl(DEBUG_EXIT_PORT, code);
	/* No exit device (bare metal): stop here, interrupts still served. */
	for (;;)
		guest_wait_interrupt();
}

void guest_wait_interrupt(void)
{
	__asm__ volatile("hlt" ::: "memory");
}
