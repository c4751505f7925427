/* Legacy devices driven through the PIO bus as a guest driver would, and
 * their save -> load round trips through the state codec. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "core/platform.h"
#include "core/vm.h"
#include "snapshot/state.h"

#include "fake_vm.h"

#define COM1 PLATFORM_PORT_COM1
#define UART_IRQ PLATFORM_IRQ_COM1
#define RTC_INDEX PLATFORM_PORT_RTC
#define RTC_DATA (PLATFORM_PORT_RTC + 1)

/* --- a VM with only buses and devices ----------------------------------- */

struct test_vm {
	struct vm vm;
	int out[2]; /* UART output pipe: out[0] is read by the tests */
	struct host_output uart_out; /* out[1] */
};

static struct test_vm *test_vm_create(void)
{
	struct test_vm *t = calloc(1, sizeof(*t));
	struct vm *vm;

	assert_non_null(t);
	vm = &t->vm;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	assert_int_equal(pipe2(t->out, O_NONBLOCK | O_CLOEXEC), 0);
	t->uart_out = (struct host_output){ .fd = t->out[1] };
	assert_int_equal(uart_init(&vm->uart, vm, &t->uart_out), 0);
	assert_int_equal(rtc_init(&vm->rtc, vm), 0);
	assert_int_equal(i8042_init(&vm->i8042, vm), 0);
	assert_int_equal(debug_exit_init(&vm->debug_exit, vm), 0);
	assert_int_equal(pci_host_init(&vm->pci, vm), 0);
	assert_int_equal(acpi_pm_init(&vm->acpi_pm, vm), 0);
	return t;
}

static void test_vm_free(struct test_vm *t)
{
	struct vm *vm = &t->vm;

	uart_destroy(&vm->uart);
	rtc_destroy(&vm->rtc);
	i8042_destroy(&vm->i8042);
	debug_exit_destroy(&vm->debug_exit);
	pci_host_destroy(&vm->pci);
	acpi_pm_destroy(&vm->acpi_pm);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	close(t->out[0]);
	close(t->out[1]);
	free(t);
}

static int setup(void **state)
{
	fake_vm_reset();
	*state = test_vm_create();
	return 0;
}

static int teardown(void **state)
{
	test_vm_free(*state);
	return 0;
}

static struct vm *vm_of(void **state)
{
	return &((struct test_vm *)*state)->vm;
}

/* --- guest port I/O ----------------------------------------------------- */

static void out_n(struct vm *vm, uint16_t port, uint32_t val, uint32_t len)
{
	uint8_t d[4];

	for (uint32_t i = 0; i < len; i++)
		d[i] = (uint8_t)(val >> (8 * i));
	bus_dispatch(&vm->pio, port, d, len, true);
}

static uint32_t in_n(struct vm *vm, uint16_t port, uint32_t len)
{
	uint8_t d[4] = { 0 };
	uint32_t v = 0;

	bus_dispatch(&vm->pio, port, d, len, false);
	for (uint32_t i = 0; i < len; i++)
		v |= (uint32_t)d[i] << (8 * i);
	return v;
}

static void outb(struct vm *vm, uint16_t port, uint8_t v)
{
	out_n(vm, port, v, 1);
}

static uint8_t inb(struct vm *vm, uint16_t port)
{
	return (uint8_t)in_n(vm, port, 1);
}

static void outl(struct vm *vm, uint16_t port, uint32_t v)
{
	out_n(vm, port, v, 4);
}

static uint32_t inl(struct vm *vm, uint16_t port)
{
	return in_n(vm, port, 4);
}

/* --- state codec helpers ------------------------------------------------ */

static size_t kind_width(enum state_kind k)
{
	switch (k) {
	case STATE_KIND_U8:
	case STATE_KIND_BOOL:
		return 1;
	case STATE_KIND_U16:
		return 2;
	case STATE_KIND_U32:
		return 4;
	case STATE_KIND_U64:
		return 8;
	}
	return 0;
}

/* Byte offset of field @name in an encoded stream of @d. */
static size_t enc_offset(const struct state_desc *d, const char *name)
{
	size_t off = 0;

	for (unsigned i = 0; i < d->nfields; i++) {
		if (!strcmp(d->fields[i].name, name))
			return off;
		off += kind_width(d->fields[i].kind) * d->fields[i].count;
	}
	fail_msg("no field %s in %s", name, d->name);
	return 0;
}

/* Encodes @obj; the caller frees the result. */
static uint8_t *save(const struct state_desc *d, const void *obj, size_t *len)
{
	uint8_t *buf;

	*len = state_encoded_size(d);
	buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	assert_int_equal(state_encode(d, obj, buf, *len), 0);
	return buf;
}

static int load(const struct state_desc *d, void *obj, const uint8_t *buf,
		size_t len)
{
	return state_decode(d, d->version, obj, buf, len);
}

/* vm_request_stop() was called @count times so far, last with @reason and
 * @status. */
static void expect_stop(unsigned count, enum vm_stop_reason reason, int status)
{
	assert_int_equal(fake_stop_count, count);
	assert_int_equal(fake_stop_reason, reason);
	assert_int_equal(fake_stop_status, status);
}

/* --- UART --------------------------------------------------------------- */

/* The checks of Linux's 8250 autoconfig(), in its order. */
static void test_uart_probe(void **state)
{
	struct vm *vm = vm_of(state);

	/* IER existence test: only bits 3:0 exist. */
	outb(vm, COM1 + 1, 0);
	assert_int_equal(inb(vm, COM1 + 1), 0);
	outb(vm, COM1 + 1, 0x0f);
	assert_int_equal(inb(vm, COM1 + 1), 0x0f);
	outb(vm, COM1 + 1, 0xff);
	assert_int_equal(inb(vm, COM1 + 1), 0x0f); /* no UUE bit (XScale) */
	outb(vm, COM1 + 1, 0);

	/* Scratch register. */
	outb(vm, COM1 + 7, 0xa5);
	assert_int_equal(inb(vm, COM1 + 7), 0xa5);
	outb(vm, COM1 + 7, 0x5a);
	assert_int_equal(inb(vm, COM1 + 7), 0x5a);

	/* Loopback: MCR = LOOP | OUT2 | RTS reflects as DCD | CTS. */
	outb(vm, COM1 + 4, 0x1a);
	assert_int_equal(inb(vm, COM1 + 6) & 0xf0, 0x90);
	outb(vm, COM1 + 4, 0x1f);
	assert_int_equal(inb(vm, COM1 + 6) & 0xf0, 0xf0);
	outb(vm, COM1 + 4, 0);
	/* Not in loopback: DCD, DSR and CTS are asserted. */
	assert_int_equal(inb(vm, COM1 + 6) & 0xf0, 0xb0);

	/* FIFO: IIR bits 7:6 say 16550A. */
	outb(vm, COM1 + 2, 0x01);
	assert_int_equal(inb(vm, COM1 + 2) >> 6, 3);
	/* No EFR behind DLAB (ST16C650 test): offset 2 is still IIR. */
	outb(vm, COM1 + 3, 0xbf);
	assert_int_not_equal(inb(vm, COM1 + 2), 0);
	outb(vm, COM1 + 3, 0);
	/* No 64-byte FIFO (16750 test): IIR bit 5 stays 0. */
	outb(vm, COM1 + 2, 0x21);
	assert_int_equal(inb(vm, COM1 + 2) & 0x20, 0);
	outb(vm, COM1 + 2, 0);
	assert_int_equal(inb(vm, COM1 + 2) & 0xc0, 0);

	/* Idle line: THRE and TEMT, no data. */
	assert_int_equal(inb(vm, COM1 + 5), 0x60);
}

static void test_uart_divisor_latch(void **state)
{
	struct vm *vm = vm_of(state);
	uint8_t c;

	outb(vm, COM1 + 1, 0x05);
	outb(vm, COM1 + 3, 0x83); /* DLAB, 8N1 */
	outb(vm, COM1 + 0, 0x0c);
	outb(vm, COM1 + 1, 0x00);
	assert_int_equal(inb(vm, COM1 + 0), 0x0c);
	assert_int_equal(inb(vm, COM1 + 1), 0x00);
	assert_int_equal(inb(vm, COM1 + 3), 0x83);
	outb(vm, COM1 + 3, 0x03);
	/* The divisor writes did not touch IER or transmit anything. */
	assert_int_equal(inb(vm, COM1 + 1), 0x05);
	outb(vm, COM1 + 3, 0x80);
	assert_int_equal(inb(vm, COM1 + 0), 0x0c);
	outb(vm, COM1 + 3, 0x03);
	assert_int_equal(read(((struct test_vm *)*state)->out[0], &c, 1), -1);
}

static void test_uart_fifo_overrun(void **state)
{
	struct vm *vm = vm_of(state);

	outb(vm, COM1 + 2, 0x07); /* FIFO on, both cleared */
	outb(vm, COM1 + 4, 0x10); /* loopback */
	for (int i = 0; i < UART_FIFO_SIZE + 1; i++)
		outb(vm, COM1, (uint8_t)('a' + i));
	assert_int_equal(inb(vm, COM1 + 5), 0x60 | 0x02 | 0x01);
	/* OE is cleared by the LSR read; the data stays. */
	assert_int_equal(inb(vm, COM1 + 5), 0x61);
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		assert_int_equal(inb(vm, COM1), 'a' + i);
	assert_int_equal(inb(vm, COM1 + 5), 0x60);

	/* FCR bit 1 empties the receive FIFO. */
	outb(vm, COM1, 'x');
	outb(vm, COM1 + 2, 0x03);
	assert_int_equal(inb(vm, COM1 + 5), 0x60);

	/* Without FIFOs the holding byte is overwritten. */
	outb(vm, COM1 + 2, 0x00);
	outb(vm, COM1, '1');
	outb(vm, COM1, '2');
	assert_int_equal(inb(vm, COM1 + 5), 0x63);
	assert_int_equal(inb(vm, COM1), '2');
	assert_int_equal(inb(vm, COM1 + 5), 0x60);
}

static void test_uart_thre_interrupt(void **state)
{
	struct vm *vm = vm_of(state);
	unsigned raises;

	outb(vm, COM1 + 4, 0x08); /* OUT2: let the IRQ through */
	assert_int_equal(fake_irq_level[UART_IRQ], 0);
	assert_int_equal(inb(vm, COM1 + 2), 0x01);

	/* Linux's THRE test: enabling THRI raises THRE at once ... */
	outb(vm, COM1 + 1, 0x02);
	assert_int_equal(fake_irq_level[UART_IRQ], 1);
	raises = fake_irq_raises[UART_IRQ];
	/* ... reading IIR naming it clears it ... */
	assert_int_equal(inb(vm, COM1 + 2), 0x02);
	assert_int_equal(fake_irq_level[UART_IRQ], 0);
	assert_int_equal(inb(vm, COM1 + 2), 0x01);
	/* ... and re-enabling raises it again. */
	outb(vm, COM1 + 1, 0x00);
	outb(vm, COM1 + 1, 0x02);
	assert_int_equal(inb(vm, COM1 + 2), 0x02);
	assert_int_equal(fake_irq_raises[UART_IRQ], raises + 1);

	/* A transmitted byte empties THR again: a new THRE. */
	outb(vm, COM1, 'z');
	assert_int_equal(fake_irq_level[UART_IRQ], 1);
	assert_int_equal(inb(vm, COM1 + 2), 0x02);

	/* Same thing with FIFOs on: IIR carries 0xc0. */
	outb(vm, COM1 + 2, 0x01);
	outb(vm, COM1, 'z');
	assert_int_equal(inb(vm, COM1 + 2), 0xc2);
	assert_int_equal(inb(vm, COM1 + 2), 0xc1);

	/* OUT2 gates the line even with THRE pending. */
	outb(vm, COM1, 'z');
	assert_int_equal(fake_irq_level[UART_IRQ], 1);
	outb(vm, COM1 + 4, 0x00);
	assert_int_equal(fake_irq_level[UART_IRQ], 0);
	assert_int_equal(inb(vm, COM1 + 2), 0xc2);
}

static void test_uart_rx_interrupt(void **state)
{
	struct vm *vm = vm_of(state);
	struct uart *u = &vm->uart;
	uint8_t buf[20];

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	outb(vm, COM1 + 1, 0x01); /* RDI */

	/* 16450 mode: one byte at a time, RDA as soon as it arrives; the
	 * line stays low until OUT2 is set. */
	assert_int_equal(uart_receive(u, buf, 3), 1);
	assert_false(uart_rx_ready(u));
	assert_int_equal(inb(vm, COM1 + 2), 0x04);
	assert_int_equal(fake_irq_level[UART_IRQ], 0);
	outb(vm, COM1 + 4, 0x08);
	assert_int_equal(fake_irq_level[UART_IRQ], 1);
	assert_int_equal(inb(vm, COM1 + 5) & 0x01, 0x01);
	assert_int_equal(inb(vm, COM1), 0);
	assert_int_equal(fake_irq_level[UART_IRQ], 0);
	assert_true(uart_rx_ready(u));

	/* FIFO, trigger level 4: below it a character timeout, at it RDA. */
	outb(vm, COM1 + 2, 0x41);
	assert_int_equal(uart_receive(u, buf, 2), 2);
	assert_int_equal(inb(vm, COM1 + 2), 0xcc);
	assert_int_equal(fake_irq_level[UART_IRQ], 1);
	assert_int_equal(uart_receive(u, buf + 2, 2), 2);
	assert_int_equal(inb(vm, COM1 + 2), 0xc4);
	/* The FIFO takes 16 bytes; the caller keeps the rest. */
	assert_int_equal(uart_receive(u, buf + 4, 16), 12);
	assert_false(uart_rx_ready(u));
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		assert_int_equal(inb(vm, COM1), i);
	assert_int_equal(inb(vm, COM1 + 2), 0xc1);
	assert_int_equal(fake_irq_level[UART_IRQ], 0);
	assert_true(uart_rx_ready(u));

	/* Loopback disconnects the serial input. */
	outb(vm, COM1 + 4, 0x18);
	assert_false(uart_rx_ready(u));
	assert_int_equal(uart_receive(u, buf, 1), 0);
	outb(vm, COM1 + 4, 0x08);

	/* Line status interrupt on overrun, cleared by reading LSR. */
	outb(vm, COM1 + 1, 0x04);
	outb(vm, COM1 + 4, 0x18);
	for (int i = 0; i < UART_FIFO_SIZE + 1; i++)
		outb(vm, COM1, 'x');
	assert_int_equal(inb(vm, COM1 + 2), 0xc6);
	assert_int_equal(fake_irq_level[UART_IRQ], 1);
	assert_int_equal(inb(vm, COM1 + 5) & 0x02, 0x02);
	assert_int_equal(fake_irq_level[UART_IRQ], 0);
}

static void test_uart_modem_status_interrupt(void **state)
{
	struct vm *vm = vm_of(state);

	outb(vm, COM1 + 1, 0x08); /* MSI */
	outb(vm, COM1 + 4, 0x18); /* loopback + OUT2: DCD, CTS/DSR drop */
	assert_int_equal(fake_irq_level[UART_IRQ], 1);
	assert_int_equal(inb(vm, COM1 + 2), 0x00);
	/* DCD stays, CTS and DSR fell: DCTS | DDSR. */
	assert_int_equal(inb(vm, COM1 + 6), 0x80 | 0x02 | 0x01);
	assert_int_equal(fake_irq_level[UART_IRQ], 0);
	/* RI rising sets nothing, falling sets TERI. */
	outb(vm, COM1 + 4, 0x1c);
	assert_int_equal(inb(vm, COM1 + 6), 0xc0);
	outb(vm, COM1 + 4, 0x18);
	assert_int_equal(inb(vm, COM1 + 6), 0x84);
}

static void test_uart_output(void **state)
{
	struct test_vm *t = *state;
	struct vm *vm = &t->vm;
	char got[8] = { 0 };
	struct timespec t0, t1;
	uint8_t junk[4096];

	outb(vm, COM1, 'o');
	outb(vm, COM1, 'k');
	outb(vm, COM1 + 4, 0x10); /* loopback output stays inside */
	outb(vm, COM1, '!');
	outb(vm, COM1 + 4, 0x00);
	outb(vm, COM1, '\n');
	assert_int_equal(read(t->out[0], got, sizeof(got)), 3);
	assert_string_equal(got, "ok\n");

	/* A full non-blocking pipe: bytes are dropped after one short wait,
	 * not one wait per byte, and the guest keeps running. */
	memset(junk, 'j', sizeof(junk));
	while (write(t->out[1], junk, sizeof(junk)) > 0)
		;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 20; i++)
		outb(vm, COM1, 'x');
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	assert_int_equal(inb(vm, COM1 + 5) & 0x60, 0x60);
	/* Once the reader drains, output flows again. */
	while (read(t->out[0], junk, sizeof(junk)) > 0)
		;
	outb(vm, COM1, 'y');
	assert_int_equal(read(t->out[0], got, 1), 1);
	assert_int_equal(got[0], 'y');
}

/* Drives @vm's UART into a state with something in every saved field. */
static void uart_make_state(struct vm *vm)
{
	const uint8_t in[6] = { 'h', 'e', 'l', 'l', 'o', '!' };

	outb(vm, COM1 + 3, 0x80);
	outb(vm, COM1 + 0, 0x30);
	outb(vm, COM1 + 1, 0x01);
	outb(vm, COM1 + 3, 0x1b);
	outb(vm, COM1 + 2, 0x81); /* FIFO, trigger 8 */
	outb(vm, COM1 + 7, 0x42);
	outb(vm, COM1 + 4, 0x0b); /* DTR, RTS, OUT2 */
	outb(vm, COM1 + 1, 0x03); /* RDI, THRI */
	assert_int_equal(uart_receive(&vm->uart, in, sizeof(in)), 6);
	assert_int_equal(inb(vm, COM1), 'h'); /* rx_head moves off 0 */
}

/* Reads every register through the bus, side effects included. */
static void uart_observe(struct vm *vm, uint8_t *out, size_t n)
{
	static const uint8_t regs[] = { 1, 3, 4, 7, 6, 2, 5, 0, 0,
					5, 2, 0, 0, 0, 5, 2, 2 };

	assert_true(n >= sizeof(regs) + 2);
	for (size_t i = 0; i < sizeof(regs); i++)
		out[i] = inb(vm, COM1 + regs[i]);
	outb(vm, COM1 + 3, 0x9b);
	out[sizeof(regs)] = inb(vm, COM1);
	out[sizeof(regs) + 1] = inb(vm, COM1 + 1);
	outb(vm, COM1 + 3, 0x1b);
}

static void test_uart_snapshot(void **state)
{
	struct vm *vm = vm_of(state);
	struct test_vm *t2 = test_vm_create();
	uint8_t a[32] = { 0 }, b[32] = { 0 }, *buf, *buf2;
	size_t len, len2;

	uart_make_state(vm);
	buf = save(&uart_state_desc, &vm->uart, &len);
	fake_vm_reset();
	assert_int_equal(load(&uart_state_desc, &t2->vm.uart, buf, len), 0);
	assert_int_equal(uart_post_load(&t2->vm.uart), 0);
	/* post_load re-drives the pending interrupt. */
	assert_int_equal(fake_irq_level[UART_IRQ], 1);
	/* Same bytes when saved again, same behaviour when driven. */
	buf2 = save(&uart_state_desc, &t2->vm.uart, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	uart_observe(vm, a, sizeof(a));
	uart_observe(&t2->vm, b, sizeof(b));
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(b[7], 'e');
	free(buf2);
	free(buf);
	test_vm_free(t2);
}

static void test_uart_snapshot_rejects_corruption(void **state)
{
	struct vm *vm = vm_of(state);
	struct uart scratch = vm->uart;
	size_t len, head = enc_offset(&uart_state_desc, "rx_head");
	size_t count = enc_offset(&uart_state_desc, "rx_count");
	size_t fcr = enc_offset(&uart_state_desc, "fcr");
	uint8_t *buf;

	uart_make_state(vm);
	buf = save(&uart_state_desc, &vm->uart, &len);
	buf[count] = UART_FIFO_SIZE + 1;
	assert_int_equal(load(&uart_state_desc, &scratch, buf, len), -EINVAL);
	buf[count] = 2;
	buf[head] = UART_FIFO_SIZE;
	assert_int_equal(load(&uart_state_desc, &scratch, buf, len), -EINVAL);
	/* Two bytes held with FIFOs off cannot happen. */
	buf[head] = 0;
	buf[fcr] = 0;
	assert_int_equal(load(&uart_state_desc, &scratch, buf, len), -EINVAL);
	buf[count] = 1;
	assert_int_equal(load(&uart_state_desc, &scratch, buf, len), 0);
	/* Truncated stream, unknown version. */
	assert_int_equal(load(&uart_state_desc, &scratch, buf, len - 1),
			 -EINVAL);
	assert_int_equal(state_decode(&uart_state_desc, 2, &scratch, buf, len),
			 -EPROTO);
	free(buf);
}

/* --- RTC ---------------------------------------------------------------- */

static uint8_t cmos_read(struct vm *vm, uint8_t idx)
{
	outb(vm, RTC_INDEX, idx);
	return inb(vm, RTC_DATA);
}

static void cmos_write(struct vm *vm, uint8_t idx, uint8_t val)
{
	outb(vm, RTC_INDEX, idx);
	outb(vm, RTC_DATA, val);
}

static unsigned from_bcd(uint8_t v)
{
	return (v >> 4) * 10u + (v & 0x0f);
}

/* Reads the RTC as Linux's mc146818_get_time() does (wait for UIP to
 * clear, then the registers) and converts to seconds since the epoch. */
static time_t rtc_read_once(struct vm *vm)
{
	static const uint8_t regs[7] = { 0x00, 0x02, 0x04, 0x07,
					 0x08, 0x09, 0x32 };
	uint8_t b = cmos_read(vm, 0x0b), hour_raw = 0;
	unsigned v[7];
	struct tm tm = { 0 };

	while (cmos_read(vm, 0x0a) & 0x80)
		;
	for (int i = 0; i < 7; i++) {
		uint8_t raw = cmos_read(vm, regs[i]);

		if (i == 2) {
			hour_raw = raw;
			raw &= 0x7f; /* 12-hour mode: bit 7 is PM */
		}
		v[i] = (b & 0x04) ? raw : from_bcd(raw);
	}
	if (!(b & 0x02)) {
		assert_true(v[2] >= 1 && v[2] <= 12);
		v[2] = v[2] % 12 + (hour_raw & 0x80 ? 12 : 0);
	}
	tm.tm_sec = (int)v[0];
	tm.tm_min = (int)v[1];
	tm.tm_hour = (int)v[2];
	tm.tm_mday = (int)v[3];
	tm.tm_mon = (int)v[4] - 1;
	tm.tm_year = (int)(v[6] * 100 + v[5]) - 1900;
	return timegm(&tm);
}

/* Two equal reads in a row, so that a descheduled test thread cannot mix
 * fields from either side of a second boundary. */
static time_t rtc_guest_time(struct vm *vm)
{
	for (;;) {
		time_t a = rtc_read_once(vm);

		if (rtc_read_once(vm) == a)
			return a;
	}
}

/* True when @t is the host time now plus @offset, within a second. */
static bool near_host(time_t t, int64_t offset)
{
	time_t now = time(NULL) + offset;

	return t >= now - 1 && t <= now + 1;
}

static void test_rtc_bcd_and_binary(void **state)
{
	struct vm *vm = vm_of(state);
	uint8_t dow;
	time_t now;
	struct tm tm;

	assert_int_equal(cmos_read(vm, 0x0b), 0x02); /* 24h, BCD */
	assert_int_equal(cmos_read(vm, 0x0a) & 0x7f, 0x26);
	assert_true(near_host(rtc_guest_time(vm), 0));
	/* BCD digits never exceed 9. */
	assert_true((cmos_read(vm, 0x00) & 0x0f) <= 9);

	cmos_write(vm, 0x0b, 0x06); /* binary, 24h */
	assert_true(near_host(rtc_guest_time(vm), 0));
	assert_true(cmos_read(vm, 0x00) < 60);
	cmos_write(vm, 0x0b, 0x04); /* binary, 12h */
	assert_true(near_host(rtc_guest_time(vm), 0));
	cmos_write(vm, 0x0b, 0x00); /* BCD, 12h */
	assert_true(near_host(rtc_guest_time(vm), 0));

	/* Day of week: 1 = Sunday. */
	cmos_write(vm, 0x0b, 0x06);
	dow = cmos_read(vm, 0x06);
	now = time(NULL);
	gmtime_r(&now, &tm);
	assert_true(dow >= 1 && dow <= 7);
	assert_true(dow == tm.tm_wday + 1 || dow == (tm.tm_wday + 6) % 7 + 1);
	assert_int_equal(rtc_get_offset(&vm->rtc), 0);
}

/* Sets the guest clock to 2001-02-03 04:05:06 the way Linux does. */
static void rtc_set_2001(struct vm *vm)
{
	uint8_t b = cmos_read(vm, 0x0b);

	cmos_write(vm, 0x0b, b | 0x80);
	cmos_write(vm, 0x00, 0x06);
	cmos_write(vm, 0x02, 0x05);
	cmos_write(vm, 0x04, 0x04);
	cmos_write(vm, 0x07, 0x03);
	cmos_write(vm, 0x08, 0x02);
	cmos_write(vm, 0x09, 0x01);
	cmos_write(vm, 0x32, 0x20);
	/* Frozen while SET: reads return what was written. */
	assert_int_equal(cmos_read(vm, 0x00), 0x06);
	assert_int_equal(cmos_read(vm, 0x0a) & 0x80, 0);
	cmos_write(vm, 0x0b, b);
}

static void test_rtc_set_time(void **state)
{
	struct vm *vm = vm_of(state);
	struct tm tm = { .tm_year = 101,
			 .tm_mon = 1,
			 .tm_mday = 3,
			 .tm_hour = 4,
			 .tm_min = 5,
			 .tm_sec = 6 };
	time_t want = timegm(&tm);
	int64_t off;

	rtc_set_2001(vm);
	off = rtc_get_offset(&vm->rtc);
	assert_true(near_host(want, off));
	assert_true(near_host(rtc_guest_time(vm), off));
	assert_int_equal(cmos_read(vm, 0x09), 0x01);
	assert_int_equal(cmos_read(vm, 0x32), 0x20);

	/* Moving the clock, as a restore with --clock frozen does. */
	rtc_adjust_offset(&vm->rtc, -3600);
	assert_int_equal(rtc_get_offset(&vm->rtc), off - 3600);
	assert_int_equal(cmos_read(vm, 0x04), 0x03);

	/* A field written while the clock runs changes just that field. */
	cmos_write(vm, 0x09, 0x07);
	assert_int_equal(cmos_read(vm, 0x09), 0x07);
	assert_int_equal(cmos_read(vm, 0x08), 0x02);

	/* 12-hour write: 4 PM. */
	cmos_write(vm, 0x0b, 0x80);
	cmos_write(vm, 0x04, 0x84);
	cmos_write(vm, 0x0b, 0x00);
	assert_int_equal(cmos_read(vm, 0x04), 0x84);
	cmos_write(vm, 0x0b, 0x02);
	assert_int_equal(cmos_read(vm, 0x04), 0x16);

	/* Garbage time registers normalise instead of misbehaving. */
	cmos_write(vm, 0x0b, 0x82);
	cmos_write(vm, 0x08, 0xff);
	cmos_write(vm, 0x07, 0x00);
	cmos_write(vm, 0x32, 0xff);
	cmos_write(vm, 0x0b, 0x02);
	(void)rtc_guest_time(vm);
	/* The offset saturates rather than overflowing. */
	rtc_adjust_offset(&vm->rtc, INT64_MAX);
	rtc_adjust_offset(&vm->rtc, INT64_MAX);
	assert_true(rtc_get_offset(&vm->rtc) > 0);
	(void)rtc_guest_time(vm);
}

static void test_rtc_registers_and_ram(void **state)
{
	struct vm *vm = vm_of(state);

	for (unsigned i = 0x0e; i < 0x80; i++)
		if (i != 0x32)
			cmos_write(vm, (uint8_t)i, (uint8_t)(i ^ 0x5a));
	for (unsigned i = 0x0e; i < 0x80; i++)
		if (i != 0x32)
			assert_int_equal(cmos_read(vm, (uint8_t)i), i ^ 0x5a);
	/* The NMI-disable bit of the index is ignored. */
	assert_int_equal(cmos_read(vm, 0x80 | 0x20), 0x20 ^ 0x5a);
	/* C has no flags (no interrupts), D says the battery is fine; both
	 * ignore writes. */
	cmos_write(vm, 0x0c, 0xff);
	cmos_write(vm, 0x0d, 0x00);
	assert_int_equal(cmos_read(vm, 0x0c), 0);
	assert_int_equal(cmos_read(vm, 0x0d), 0x80);
	/* Interrupt enables in B are kept but raise nothing; SET clears
	 * UIE. */
	cmos_write(vm, 0x0b, 0x72);
	assert_int_equal(cmos_read(vm, 0x0b), 0x72);
	assert_int_equal(cmos_read(vm, 0x0c), 0);
	cmos_write(vm, 0x0b, 0xf2);
	assert_int_equal(cmos_read(vm, 0x0b), 0xe2);
	cmos_write(vm, 0x0b, 0x02);
	assert_int_equal(fake_irq_raises[PLATFORM_IRQ_RTC], 0);
	/* UIP is read-only. */
	cmos_write(vm, 0x0a, 0xa6);
	assert_int_equal(cmos_read(vm, 0x0a) & 0x7f, 0x26);
}

static void test_rtc_snapshot(void **state)
{
	struct vm *vm = vm_of(state);
	struct test_vm *t2 = test_vm_create();
	struct rtc scratch;
	size_t len, idx = enc_offset(&rtc_state_desc, "index");
	size_t off = enc_offset(&rtc_state_desc, "offset");
	uint8_t *buf;

	rtc_set_2001(vm);
	cmos_write(vm, 0x40, 0x99);
	cmos_write(vm, 0x0b, 0x06);
	outb(vm, RTC_INDEX, 0x40);
	buf = save(&rtc_state_desc, &vm->rtc, &len);
	assert_int_equal(load(&rtc_state_desc, &t2->vm.rtc, buf, len), 0);
	assert_int_equal(rtc_post_load(&t2->vm.rtc), 0);
	assert_int_equal(rtc_get_offset(&t2->vm.rtc), rtc_get_offset(&vm->rtc));
	/* The index latch survived: a data read needs no index write. */
	assert_int_equal(inb(&t2->vm, RTC_DATA), 0x99);
	assert_int_equal(cmos_read(&t2->vm, 0x0b), 0x06);
	assert_true(rtc_guest_time(&t2->vm) - rtc_guest_time(vm) <= 1);

	scratch = t2->vm.rtc;
	buf[idx] = 0x80;
	assert_int_equal(load(&rtc_state_desc, &scratch, buf, len), -EINVAL);
	buf[idx] = 0x40;
	memset(buf + off, 0x7f, 8); /* offset beyond any date */
	assert_int_equal(load(&rtc_state_desc, &scratch, buf, len), -EINVAL);
	free(buf);
	test_vm_free(t2);
}

/* --- i8042 -------------------------------------------------------------- */

#define KBD_DATA PLATFORM_PORT_I8042_DATA
#define KBD_CMD PLATFORM_PORT_I8042_CMD

static void test_i8042_commands(void **state)
{
	struct vm *vm = vm_of(state);

	/* Idle: nothing to read, input buffer free (Linux's kb_wait). */
	assert_int_equal(inb(vm, KBD_CMD) & 0x03, 0);
	outb(vm, KBD_CMD, 0xaa);
	assert_int_equal(inb(vm, KBD_CMD) & 0x0b, 0x09); /* OBF, A2 */
	assert_int_equal(inb(vm, KBD_DATA), 0x55);
	assert_int_equal(inb(vm, KBD_CMD) & 0x01, 0);
	assert_int_equal(inb(vm, KBD_CMD) & 0x04, 0x04); /* SYS */

	outb(vm, KBD_CMD, 0x20);
	assert_int_equal(inb(vm, KBD_DATA), 0x45);
	outb(vm, KBD_CMD, 0x60);
	outb(vm, KBD_DATA, 0x30);
	assert_int_equal(inb(vm, KBD_CMD) & 0x08, 0); /* last write: data */
	outb(vm, KBD_CMD, 0x20);
	assert_int_equal(inb(vm, KBD_DATA), 0x30);

	/* Port enable/disable toggle the CTR bits. */
	outb(vm, KBD_CMD, 0xae);
	outb(vm, KBD_CMD, 0xa8);
	outb(vm, KBD_CMD, 0x20);
	assert_int_equal(inb(vm, KBD_DATA), 0x00);
	outb(vm, KBD_CMD, 0xad);
	outb(vm, KBD_CMD, 0xa7);
	outb(vm, KBD_CMD, 0x20);
	assert_int_equal(inb(vm, KBD_DATA), 0x30);

	/* Interface tests pass; aux loopback shows AUX OBF. */
	outb(vm, KBD_CMD, 0xab);
	assert_int_equal(inb(vm, KBD_DATA), 0x00);
	outb(vm, KBD_CMD, 0xd3);
	outb(vm, KBD_DATA, 0x5a);
	assert_int_equal(inb(vm, KBD_CMD) & 0x21, 0x21);
	assert_int_equal(inb(vm, KBD_DATA), 0x5a);
	/* Bytes for the absent keyboard vanish. */
	outb(vm, KBD_DATA, 0xff);
	assert_int_equal(inb(vm, KBD_CMD) & 0x01, 0);
	assert_int_equal(fake_stop_count, 0);
}

static void test_i8042_reset(void **state)
{
	struct vm *vm = vm_of(state);

	/* A20 through the output port does not reset ... */
	outb(vm, KBD_CMD, 0xd1);
	outb(vm, KBD_DATA, 0xdf);
	outb(vm, KBD_CMD, 0xd0);
	assert_int_equal(inb(vm, KBD_DATA), 0xdf);
	outb(vm, KBD_CMD, 0xf1); /* pulse without the reset bit */
	assert_int_equal(fake_stop_count, 0);
	/* ... pulsing the reset line does (Linux reboot=k). */
	outb(vm, KBD_CMD, 0xfe);
	expect_stop(1, VM_STOP_RESET, 0);
	/* So does dropping bit 0 through the output port. */
	outb(vm, KBD_CMD, 0xd1);
	outb(vm, KBD_DATA, 0xde);
	expect_stop(2, VM_STOP_RESET, 0);
}

static void test_i8042_snapshot(void **state)
{
	struct vm *vm = vm_of(state);
	struct test_vm *t2 = test_vm_create();
	struct i8042 scratch;
	size_t len, cmd = enc_offset(&i8042_state_desc, "pending_cmd");
	size_t full = enc_offset(&i8042_state_desc, "out_full");
	uint8_t *buf;

	outb(vm, KBD_CMD, 0xaa); /* 0x55 waiting in the buffer */
	outb(vm, KBD_CMD, 0x60); /* and a CTR write half done */
	buf = save(&i8042_state_desc, &vm->i8042, &len);
	assert_int_equal(load(&i8042_state_desc, &t2->vm.i8042, buf, len), 0);
	assert_int_equal(i8042_post_load(&t2->vm.i8042), 0);
	assert_int_equal(inb(&t2->vm, KBD_CMD), inb(vm, KBD_CMD));
	assert_int_equal(inb(&t2->vm, KBD_DATA), 0x55);
	outb(&t2->vm, KBD_DATA, 0x11);
	outb(&t2->vm, KBD_CMD, 0x20);
	assert_int_equal(inb(&t2->vm, KBD_DATA), 0x11);

	scratch = t2->vm.i8042;
	buf[cmd] = 0x99;
	assert_int_equal(load(&i8042_state_desc, &scratch, buf, len), -EINVAL);
	buf[cmd] = 0;
	buf[full] = 0; /* AUX data without a full buffer */
	buf[enc_offset(&i8042_state_desc, "out_aux")] = 1;
	assert_int_equal(load(&i8042_state_desc, &scratch, buf, len), -EINVAL);
	buf[full] = 2; /* not a bool */
	assert_int_equal(load(&i8042_state_desc, &scratch, buf, len), -EINVAL);
	free(buf);
	test_vm_free(t2);
}

/* --- debug exit --------------------------------------------------------- */

static void test_debug_exit(void **state)
{
	struct vm *vm = vm_of(state);
	struct debug_exit scratch = vm->debug_exit;
	uint8_t one = 0;

	outb(vm, PLATFORM_PORT_DEBUG_EXIT, 0x00);
	expect_stop(1, VM_STOP_DEBUG_EXIT, 1);
	outb(vm, PLATFORM_PORT_DEBUG_EXIT, 0x31);
	expect_stop(2, VM_STOP_DEBUG_EXIT, 0x63);
	out_n(vm, PLATFORM_PORT_DEBUG_EXIT, 0x1234, 2);
	expect_stop(3, VM_STOP_DEBUG_EXIT, 0x2469);
	outl(vm, PLATFORM_PORT_DEBUG_EXIT, 0x40000000);
	expect_stop(4, VM_STOP_DEBUG_EXIT, (int)0x80000001u);
	/* Any port of the four, any width that fits. */
	outb(vm, PLATFORM_PORT_DEBUG_EXIT + 3, 0x7f);
	expect_stop(5, VM_STOP_DEBUG_EXIT, 0xff);
	assert_int_equal(inl(vm, PLATFORM_PORT_DEBUG_EXIT), 0);
	assert_int_equal(fake_stop_count, 5);

	/* Nothing to save; a stream with bytes in it is not one of ours. */
	assert_int_equal(state_encoded_size(&debug_exit_state_desc), 0);
	assert_int_equal(load(&debug_exit_state_desc, &scratch, &one, 0), 0);
	assert_int_equal(load(&debug_exit_state_desc, &scratch, &one, 1),
			 -EINVAL);
	assert_int_equal(debug_exit_post_load(&scratch), 0);
}

/* --- PCI ---------------------------------------------------------------- */

#define PCI_ADDR PLATFORM_PORT_PCI_ADDR
#define PCI_DATA PLATFORM_PORT_PCI_DATA

static uint32_t cfg_addr(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read(struct vm *vm, unsigned slot, unsigned reg,
			 uint32_t len)
{
	outl(vm, PCI_ADDR, cfg_addr(0, slot, 0, reg));
	return in_n(vm, (uint16_t)(PCI_DATA + (reg & 3)), len);
}

static void cfg_write(struct vm *vm, unsigned slot, unsigned reg, uint32_t val,
		      uint32_t len)
{
	outl(vm, PCI_ADDR, cfg_addr(0, slot, 0, reg));
	out_n(vm, (uint16_t)(PCI_DATA + (reg & 3)), val, len);
}

static void test_pci_host_bridge(void **state)
{
	struct vm *vm = vm_of(state);

	/* Linux's pci_check_type1(): a byte write at 0xcfb does not touch
	 * the latch, which then reads back what was written. */
	outb(vm, 0xcfb, 0x01);
	outl(vm, PCI_ADDR, 0x80000000);
	assert_int_equal(inl(vm, PCI_ADDR), 0x80000000);
	assert_int_equal(inb(vm, PCI_ADDR), 0xff);
	outl(vm, PCI_ADDR, 0x80000003);
	assert_int_equal(inl(vm, PCI_ADDR), 0x80000000);

	assert_int_equal(cfg_read(vm, 0, 0x00, 4),
			 PCI_HOST_DEVICE_ID << 16 | PCI_HOST_VENDOR_ID);
	assert_int_equal(cfg_read(vm, 0, 0x02, 2), PCI_HOST_DEVICE_ID);
	assert_int_equal(cfg_read(vm, 0, 0x01, 1), PCI_HOST_VENDOR_ID >> 8);
	assert_int_equal(cfg_read(vm, 0, 0x0a, 2), 0x0600); /* host bridge */
	assert_int_equal(cfg_read(vm, 0, 0x0e, 1), 0x00);
	assert_int_equal(cfg_read(vm, 0, 0x10, 4), 0); /* no BARs */

	/* Absent: empty slots, other functions, other buses, no enable. */
	assert_int_equal(cfg_read(vm, 5, 0x00, 4), 0xffffffff);
	assert_int_equal(cfg_read(vm, 31, 0x0e, 1), 0xff);
	outl(vm, PCI_ADDR, cfg_addr(0, 0, 1, 0));
	assert_int_equal(inl(vm, PCI_DATA), 0xffffffff);
	outl(vm, PCI_ADDR, cfg_addr(1, 0, 0, 0));
	assert_int_equal(inl(vm, PCI_DATA), 0xffffffff);
	outl(vm, PCI_ADDR, 0x00000000);
	assert_int_equal(inl(vm, PCI_DATA), 0xffffffff);
	out_n(vm, PCI_DATA, 0x12345678, 4); /* ignored */
	assert_int_equal(cfg_read(vm, 0, 0x00, 4),
			 PCI_HOST_DEVICE_ID << 16 | PCI_HOST_VENDOR_ID);
}

static void test_pci_read_only_bits(void **state)
{
	struct vm *vm = vm_of(state);

	cfg_write(vm, 0, 0x00, 0xffffffff, 4);
	assert_int_equal(cfg_read(vm, 0, 0x00, 4),
			 PCI_HOST_DEVICE_ID << 16 | PCI_HOST_VENDOR_ID);
	cfg_write(vm, 0, 0x04, 0xffffffff, 4);
	assert_int_equal(cfg_read(vm, 0, 0x04, 2), 0x0547);
	assert_int_equal(cfg_read(vm, 0, 0x06, 2), 0x0000);
	cfg_write(vm, 0, 0x08, 0xffffffff, 4);
	assert_int_equal(cfg_read(vm, 0, 0x08, 4), PCI_HOST_CLASS << 8);
	cfg_write(vm, 0, 0x0c, 0xffffffff, 4);
	assert_int_equal(cfg_read(vm, 0, 0x0c, 4), 0x0000ffff);
	cfg_write(vm, 0, 0x3c, 0xffffffff, 4);
	assert_int_equal(cfg_read(vm, 0, 0x3c, 4), 0x000000ff);
	/* Word write in the middle of a dword. */
	cfg_write(vm, 0, 0x3e, 0xabcd, 2);
	cfg_write(vm, 0, 0x3c, 0x0b, 1);
	assert_int_equal(cfg_read(vm, 0, 0x3c, 4), 0x0000000b);
}

struct remap_log {
	int calls;
	int bar;
	uint64_t old_addr, new_addr;
};

struct test_pci_dev {
	struct pci_device pci;
	struct remap_log log;
};

static void test_bar_remap(struct pci_device *dev, int bar, uint64_t old_addr,
			   uint64_t new_addr)
{
	struct remap_log *log = &((struct test_pci_dev *)dev->opaque)->log;

	log->calls++;
	log->bar = bar;
	log->old_addr = old_addr;
	log->new_addr = new_addr;
}

/* A device with a 4 KiB BAR0 placed like firmware would, a 16 KiB BAR2 left
 * to the guest, and two capabilities. */
static void test_dev_setup(struct test_pci_dev *d, struct pci_host *host)
{
	uint32_t bar0 = pci_host_alloc_bar(host, 0x1000);
	int cap;

	memset(d, 0, sizeof(*d));
	pci_device_init(&d->pci, 0x1234, 0x5678, 0xff0000, 1);
	d->pci.opaque = d;
	d->pci.bar_remap = test_bar_remap;
	assert_int_equal(bar0, PLATFORM_PCI_MMIO_BASE);
	assert_int_equal(pci_device_set_bar(&d->pci, 0, 0x1000, bar0), 0);
	assert_int_equal(pci_device_set_bar(&d->pci, 2, 0x4000, 0), 0);
	cap = pci_add_capability(&d->pci, 0x09, 6);
	assert_int_equal(cap, 0x40);
	d->pci.config[cap + 2] = 0x77; /* read-only body byte */
	d->pci.wmask[cap + 3] = 0xff; /* writable body byte */
	assert_int_equal(pci_add_capability(&d->pci, 0x11, 12), 0x48);
}

static void test_pci_device_bars(void **state)
{
	struct vm *vm = vm_of(state);
	struct test_pci_dev d;
	struct remap_log *log = &d.log;

	test_dev_setup(&d, &vm->pci);
	/* Bad BAR declarations. */
	assert_int_equal(pci_device_set_bar(&d.pci, 6, 0x1000, 0), -EINVAL);
	assert_int_equal(pci_device_set_bar(&d.pci, 1, 0x1800, 0), -EINVAL);
	assert_int_equal(pci_device_set_bar(&d.pci, 1, 8, 0), -EINVAL);
	assert_int_equal(pci_device_set_bar(&d.pci, 1, 0x1000, 0x800), -EINVAL);
	assert_int_equal(pci_add_device(&vm->pci, &d.pci, 0), -EINVAL);
	assert_int_equal(pci_add_device(&vm->pci, &d.pci, 32), -EINVAL);
	assert_int_equal(pci_add_device(&vm->pci, &d.pci, 3), 0);
	assert_int_equal(pci_add_device(&vm->pci, &d.pci, 3), -EEXIST);
	assert_int_equal(log->calls, 0);

	assert_int_equal(cfg_read(vm, 3, 0x00, 4), 0x56781234);
	assert_int_equal(cfg_read(vm, 3, 0x08, 4), 0xff000001);
	/* Capability list: status bit, pointer, chain. */
	assert_int_equal(cfg_read(vm, 3, 0x06, 2) & 0x10, 0x10);
	assert_int_equal(cfg_read(vm, 3, 0x34, 1), 0x40);
	assert_int_equal(cfg_read(vm, 3, 0x40, 2), 0x4809);
	assert_int_equal(cfg_read(vm, 3, 0x48, 2), 0x0011);
	cfg_write(vm, 3, 0x40, 0xffffffff, 4);
	assert_int_equal(cfg_read(vm, 3, 0x40, 4), 0xff774809);

	/* Sizing: all ones reads back the size mask, type bits 0. */
	assert_int_equal(cfg_read(vm, 3, 0x10, 4), PLATFORM_PCI_MMIO_BASE);
	cfg_write(vm, 3, 0x10, 0xffffffff, 4);
	assert_int_equal(cfg_read(vm, 3, 0x10, 4), 0xfffff000);
	cfg_write(vm, 3, 0x18, 0xffffffff, 4);
	assert_int_equal(cfg_read(vm, 3, 0x18, 4), 0xffffc000);
	cfg_write(vm, 3, 0x14, 0xffffffff, 4); /* unimplemented BAR1 */
	assert_int_equal(cfg_read(vm, 3, 0x14, 4), 0);
	cfg_write(vm, 3, 0x30, 0xffffffff, 4); /* no expansion ROM */
	assert_int_equal(cfg_read(vm, 3, 0x30, 4), 0);
	cfg_write(vm, 3, 0x10, PLATFORM_PCI_MMIO_BASE, 4);
	cfg_write(vm, 3, 0x18, 0, 4);
	assert_int_equal(log->calls, 0); /* decode was off throughout */

	/* Memory decode on: BAR0 appears, BAR2 (at 0) does not. */
	cfg_write(vm, 3, 0x04, 0x0006, 2);
	assert_int_equal(log->calls, 1);
	assert_int_equal(log->bar, 0);
	assert_int_equal(log->old_addr, 0);
	assert_int_equal(log->new_addr, PLATFORM_PCI_MMIO_BASE);
	/* The guest places BAR2; low bits it cannot set are dropped. */
	cfg_write(vm, 3, 0x18, 0xe0104fff, 4);
	assert_int_equal(log->calls, 2);
	assert_int_equal(log->bar, 2);
	assert_int_equal(log->new_addr, 0xe0104000);
	/* Sizing with decode on unmaps, restoring maps again. */
	cfg_write(vm, 3, 0x10, 0xffffffff, 4);
	assert_int_equal(log->calls, 3);
	assert_int_equal(log->old_addr, PLATFORM_PCI_MMIO_BASE);
	assert_int_equal(log->new_addr, 0);
	cfg_write(vm, 3, 0x10, PLATFORM_PCI_MMIO_BASE, 4);
	assert_int_equal(log->calls, 4);
	assert_int_equal(log->new_addr, PLATFORM_PCI_MMIO_BASE);
	/* Byte writes to one BAR byte move it. */
	cfg_write(vm, 3, 0x11, 0x20, 1);
	assert_int_equal(log->calls, 5);
	assert_int_equal(log->old_addr, PLATFORM_PCI_MMIO_BASE);
	assert_int_equal(log->new_addr, PLATFORM_PCI_MMIO_BASE + 0x2000);
	/* Rewriting the same value is no change. */
	cfg_write(vm, 3, 0x04, 0x0006, 2);
	assert_int_equal(log->calls, 5);
	/* Decode off: both go away. */
	cfg_write(vm, 3, 0x04, 0x0000, 2);
	assert_int_equal(log->calls, 7);
	assert_int_equal(log->new_addr, 0);
}

static void test_pci_alloc_bar(void **state)
{
	struct pci_host *p = &vm_of(state)->pci;

	assert_int_equal(pci_host_alloc_bar(p, 0x1001), 0);
	assert_int_equal(pci_host_alloc_bar(p, 8), 0);
	assert_int_equal(pci_host_alloc_bar(p, 0x100), PLATFORM_PCI_MMIO_BASE);
	assert_int_equal(pci_host_alloc_bar(p, 0x4000),
			 PLATFORM_PCI_MMIO_BASE + 0x4000);
	assert_int_equal(pci_host_alloc_bar(p, 0x100),
			 PLATFORM_PCI_MMIO_BASE + 0x8000);
	/* A window-sized BAR no longer fits; a smaller one still does. */
	assert_int_equal(pci_host_alloc_bar(p, PLATFORM_PCI_MMIO_SIZE), 0);
	assert_int_equal(pci_host_alloc_bar(p, PLATFORM_PCI_MMIO_SIZE / 2),
			 PLATFORM_PCI_MMIO_BASE + PLATFORM_PCI_MMIO_SIZE / 2);
	assert_int_equal(pci_host_alloc_bar(p, PLATFORM_PCI_MMIO_SIZE / 2), 0);
}

static void test_pci_snapshot(void **state)
{
	struct vm *vm = vm_of(state);
	struct test_vm *t2 = test_vm_create();
	struct test_pci_dev d, d2;
	struct pci_device scratch;
	struct pci_host hscratch;
	size_t len, hlen;
	uint8_t *buf, *hbuf;
	size_t cfg = enc_offset(&pci_device_state_desc, "config");

	test_dev_setup(&d, &vm->pci);
	assert_int_equal(pci_add_device(&vm->pci, &d.pci, 3), 0);
	cfg_write(vm, 3, 0x18, 0xe0200000, 4);
	cfg_write(vm, 3, 0x04, 0x0006, 2);
	cfg_write(vm, 3, 0x43, 0x5a, 1);
	cfg_write(vm, 0, 0x0d, 0x40, 1); /* bridge latency timer */
	outl(vm, PCI_ADDR, cfg_addr(0, 3, 0, 0x18)); /* latch left here */

	hbuf = save(&pci_host_state_desc, &vm->pci, &hlen);
	buf = save(&pci_device_state_desc, &d.pci, &len);

	/* Restore into a fresh VM whose device was set up the same way. */
	test_dev_setup(&d2, &t2->vm.pci);
	assert_int_equal(pci_add_device(&t2->vm.pci, &d2.pci, 3), 0);
	assert_int_equal(load(&pci_host_state_desc, &t2->vm.pci, hbuf, hlen),
			 0);
	assert_int_equal(pci_host_post_load(&t2->vm.pci), 0);
	assert_int_equal(load(&pci_device_state_desc, &d2.pci, buf, len), 0);
	assert_int_equal(d2.log.calls, 0);
	assert_int_equal(pci_device_post_load(&d2.pci), 0);
	/* post_load maps both BARs where the guest had them. */
	assert_int_equal(d2.log.calls, 2);
	assert_int_equal(d2.pci.bar_mapped[0], PLATFORM_PCI_MMIO_BASE);
	assert_int_equal(d2.pci.bar_mapped[2], 0xe0200000);
	/* The latch survived: a data read goes to slot 3, register 0x18. */
	assert_int_equal(inl(&t2->vm, PCI_DATA), 0xe0200000);
	for (unsigned reg = 0; reg < PCI_CONFIG_SIZE; reg += 4) {
		assert_int_equal(cfg_read(&t2->vm, 3, reg, 4),
				 cfg_read(vm, 3, reg, 4));
		assert_int_equal(cfg_read(&t2->vm, 0, reg, 4),
				 cfg_read(vm, 0, reg, 4));
	}

	/* A config the device could not have: another vendor, another BAR
	 * size, a broken capability chain, a bad latch. */
	scratch = d2.pci;
	buf[cfg + 0] ^= 1;
	assert_int_equal(load(&pci_device_state_desc, &scratch, buf, len),
			 -EINVAL);
	buf[cfg + 0] ^= 1;
	buf[cfg + 0x18] = 0x08; /* prefetchable, and below the size */
	assert_int_equal(load(&pci_device_state_desc, &scratch, buf, len),
			 -EINVAL);
	buf[cfg + 0x18] = 0;
	buf[cfg + 0x41] = 0x80;
	assert_int_equal(load(&pci_device_state_desc, &scratch, buf, len),
			 -EINVAL);
	buf[cfg + 0x41] = 0x48;
	assert_int_equal(load(&pci_device_state_desc, &scratch, buf, len), 0);
	hscratch = t2->vm.pci;
	hbuf[enc_offset(&pci_host_state_desc, "addr")] |= 1;
	assert_int_equal(load(&pci_host_state_desc, &hscratch, hbuf, hlen),
			 -EINVAL);
	free(buf);
	free(hbuf);
	test_vm_free(t2);
}

/* --- ACPI PM ------------------------------------------------------------ */

#define SLP_CTL PLATFORM_PORT_ACPI_SLEEP_CTL
#define SLP_STS PLATFORM_PORT_ACPI_SLEEP_STS
#define ACPI_RESET PLATFORM_PORT_ACPI_RESET

static void test_acpi_pm(void **state)
{
	struct vm *vm = vm_of(state);

	/* SLP_TYP alone does nothing; the reset register wants its value. */
	outb(vm, SLP_CTL, PLATFORM_ACPI_S5_SLP_TYP << 2);
	assert_int_equal(inb(vm, SLP_CTL), PLATFORM_ACPI_S5_SLP_TYP << 2);
	outb(vm, ACPI_RESET, PLATFORM_ACPI_RESET_VALUE + 1);
	assert_int_equal(inb(vm, ACPI_RESET), 0);
	assert_int_equal(fake_stop_count, 0);

	/* Another sleep type "wakes" at once instead of sleeping. */
	outb(vm, SLP_STS, 0x80);
	outb(vm, SLP_CTL, 3 << 2 | 0x20);
	assert_int_equal(fake_stop_count, 0);
	assert_int_equal(inb(vm, SLP_CTL), 3 << 2); /* SLP_EN reads 0 */
	assert_int_equal(inb(vm, SLP_STS), 0x80);
	outb(vm, SLP_STS, 0x80);
	assert_int_equal(inb(vm, SLP_STS), 0x00);

	/* S5 (Linux acpi_hw_extended_sleep) powers off. */
	outb(vm, SLP_CTL, PLATFORM_ACPI_S5_SLP_TYP << 2 | 0x20);
	expect_stop(1, VM_STOP_POWEROFF, 0);

	outb(vm, ACPI_RESET, PLATFORM_ACPI_RESET_VALUE);
	expect_stop(2, VM_STOP_RESET, 0);
}

static void test_acpi_pm_snapshot(void **state)
{
	struct vm *vm = vm_of(state);
	struct test_vm *t2 = test_vm_create();
	struct acpi_pm scratch;
	size_t len, sts = enc_offset(&acpi_pm_state_desc, "sleep_sts");
	size_t ctl = enc_offset(&acpi_pm_state_desc, "sleep_ctl");
	uint8_t *buf;

	outb(vm, SLP_CTL, 1 << 2 | 0x20); /* sets WAK_STS */
	buf = save(&acpi_pm_state_desc, &vm->acpi_pm, &len);
	assert_int_equal(load(&acpi_pm_state_desc, &t2->vm.acpi_pm, buf, len),
			 0);
	assert_int_equal(acpi_pm_post_load(&t2->vm.acpi_pm), 0);
	assert_int_equal(inb(&t2->vm, SLP_CTL), 1 << 2);
	assert_int_equal(inb(&t2->vm, SLP_STS), 0x80);
	outb(&t2->vm, SLP_STS, 0x80);
	assert_int_equal(inb(&t2->vm, SLP_STS), 0x00);

	scratch = t2->vm.acpi_pm;
	buf[sts] = 0x81;
	assert_int_equal(load(&acpi_pm_state_desc, &scratch, buf, len),
			 -EINVAL);
	buf[sts] = 0x80;
	buf[ctl] = 0x20; /* SLP_EN is never stored */
	assert_int_equal(load(&acpi_pm_state_desc, &scratch, buf, len),
			 -EINVAL);
	free(buf);
	test_vm_free(t2);
}

/* --- init failures ------------------------------------------------------ */

static void dummy_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
		     bool is_write)
{
	(void)opaque;
	(void)offset;
	(void)data;
	(void)len;
	(void)is_write;
}

/* Every init returns bus_register()'s error when its ports are taken, and
 * leaves nothing registered behind. */
static void test_init_port_conflicts(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct pci_host pci;
	struct i8042 kbd;

	(void)state;
	assert_non_null(vm);
	bus_init(&vm->pio, "pio");
	assert_int_equal(bus_register(&vm->pio, PLATFORM_PORT_COM1 + 7, 1,
				      dummy_io, NULL, "x"),
			 0);
	assert_int_equal(bus_register(&vm->pio, PLATFORM_PORT_RTC + 1, 1,
				      dummy_io, NULL, "x"),
			 0);
	assert_int_equal(bus_register(&vm->pio, PLATFORM_PORT_I8042_CMD, 1,
				      dummy_io, NULL, "x"),
			 0);
	assert_int_equal(bus_register(&vm->pio, PLATFORM_PORT_DEBUG_EXIT, 1,
				      dummy_io, NULL, "x"),
			 0);
	assert_int_equal(bus_register(&vm->pio, PLATFORM_PORT_PCI_DATA, 1,
				      dummy_io, NULL, "x"),
			 0);
	assert_int_equal(bus_register(&vm->pio, PLATFORM_PORT_ACPI_RESET, 1,
				      dummy_io, NULL, "x"),
			 0);
	assert_int_equal(uart_init(&vm->uart, vm, NULL), -EEXIST);
	assert_int_equal(rtc_init(&vm->rtc, vm), -EEXIST);
	assert_int_equal(i8042_init(&vm->i8042, vm), -EEXIST);
	assert_int_equal(debug_exit_init(&vm->debug_exit, vm), -EEXIST);
	assert_int_equal(pci_host_init(&vm->pci, vm), -EEXIST);
	assert_int_equal(acpi_pm_init(&vm->acpi_pm, vm), -EEXIST);
	/* The half-registered ones unwound: their first port is free. */
	assert_int_equal(vm->pio.nranges, 6);
	/* destroy is safe after a failed init and on a zeroed struct. */
	uart_destroy(&vm->uart);
	rtc_destroy(&vm->rtc);
	i8042_destroy(&vm->i8042);
	debug_exit_destroy(&vm->debug_exit);
	pci_host_destroy(&vm->pci);
	acpi_pm_destroy(&vm->acpi_pm);
	memset(&pci, 0, sizeof(pci));
	memset(&kbd, 0, sizeof(kbd));
	pci_host_destroy(&pci);
	i8042_destroy(&kbd);
	bus_destroy(&vm->pio);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_uart_probe, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_uart_divisor_latch, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_uart_fifo_overrun, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_uart_thre_interrupt, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_uart_rx_interrupt, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
		    test_uart_modem_status_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uart_output, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_uart_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
		    test_uart_snapshot_rejects_corruption, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rtc_bcd_and_binary, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rtc_set_time, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rtc_registers_and_ram,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_rtc_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_i8042_commands, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_i8042_reset, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_i8042_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_debug_exit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pci_host_bridge, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pci_read_only_bits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pci_device_bars, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pci_alloc_bar, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pci_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_acpi_pm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acpi_pm_snapshot, setup,
						teardown),
		cmocka_unit_test(test_init_port_conflicts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
