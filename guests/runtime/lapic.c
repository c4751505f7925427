/* lapic.c - the xAPIC local APIC from ring 3 (its page is user-mapped):
 * set-up, timer calibration against the PIT, the periodic tick and IPIs.
 * Register offsets: SDM vol. 3A table 11-1. */
#include "runtime.h"

#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0

#define SVR_ENABLE 0x100
#define LVT_MASKED 0x10000
#define LVT_PERIODIC 0x20000
#define TIMER_DIV_16 0x3
#define ICR_PENDING 0x1000

/* i8254 PIT: 1.193182 MHz input clock, channel 0 polled via the latch
 * command (Intel 8254 data sheet; port 0x61's channel-2 gate is not
 * present on every machine, e.g. QEMU microvm). */
#define PIT_HZ 1193182
#define PIT_CH0 0x40
#define PIT_CMD 0x43
#define PIT_CH0_LOHI_MODE0 0x30
#define PIT_LATCH_CH0 0x00
#define CALIBRATE_PIT_TICKS (PIT_HZ / 100) /* 10 ms */
#define PIT_STUCK_POLLS 1000000

static volatile uint32_t *lapic_reg(unsigned int off)
{
	return (volatile uint32_t *)(uintptr_t)(GUEST_LAPIC_BASE + off);
}

static uint32_t lapic_read(unsigned int off)
{
	return *lapic_reg(off);
}

static void lapic_write(unsigned int off, uint32_t v)
{
	*lapic_reg(off) = v;
}

uint32_t guest_lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

/* Software-enable the LAPIC with our spurious vector, and mask LINT0/1:
 * firmware may have left LINT0 in ExtINT mode, which would let the
 * legacy PIC (and the PIT we program) inject unknown vectors. */
void guest_lapic_init_local(void)
{
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_write(LAPIC_LVT_LINT1, LVT_MASKED);
	lapic_write(LAPIC_LVT_ERROR, LVT_MASKED);
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_SVR, SVR_ENABLE | GUEST_VEC_SPURIOUS);
}

void guest_lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
	lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
	lapic_write(LAPIC_ICR_LOW, icr_low);
	while (lapic_read(LAPIC_ICR_LOW) & ICR_PENDING)
		guest_pause();
}

static uint16_t pit_read(void)
{
	uint8_t lo, hi;

	guest_outb(PIT_CMD, PIT_LATCH_CH0);
	lo = guest_inb(PIT_CH0);
	hi = guest_inb(PIT_CH0);
	return lo | hi << 8;
}

/*
 * Count TSC cycles and LAPIC timer ticks over 10 ms of PIT time. The PIT
 * counts down from 0xffff in mode 0; we start on a count change so the
 * window begins on a PIT clock edge. Done once, by whoever needs it first.
 */
int guest_calibrate(void)
{
	uint64_t t0, t1, polls = 0;
	uint32_t l0, l1;
	uint16_t p0, p;
	int ret = 0;

	guest_spin_lock(&guest_kit.calibrate_lock);
	if (guest_kit.tsc_hz)
		goto out;
	guest_lapic_init_local();
	lapic_write(LAPIC_TIMER_DIV, TIMER_DIV_16);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
	lapic_write(LAPIC_TIMER_INIT, 0xffffffff);

	guest_outb(PIT_CMD, PIT_CH0_LOHI_MODE0);
	guest_outb(PIT_CH0, 0xff);
	guest_outb(PIT_CH0, 0xff);
	p0 = pit_read();
	while ((p = pit_read()) == p0) {
		if (++polls > PIT_STUCK_POLLS) {
			guest_printf(
			    "guest: PIT not counting, cannot calibrate\n");
			ret = -1;
			goto out;
		}
	}
	t0 = guest_rdtsc();
	l0 = lapic_read(LAPIC_TIMER_CUR);
	p0 = p;
	while ((uint16_t)(p0 - (p = pit_read())) < CALIBRATE_PIT_TICKS)
		;
	t1 = guest_rdtsc();
	l1 = lapic_read(LAPIC_TIMER_CUR);
	lapic_write(LAPIC_TIMER_INIT, 0);

	guest_kit.lapic_hz = (uint64_t)(l0 - l1) * PIT_HZ / (uint16_t)(p0 - p);
	guest_kit.tsc_hz = (t1 - t0) * PIT_HZ / (uint16_t)(p0 - p);
	if (!guest_kit.lapic_hz || !guest_kit.tsc_hz) {
		guest_printf("guest: calibration failed\n");
		guest_kit.tsc_hz = 0;
		ret = -1;
	}
out:
	guest_spin_unlock(&guest_kit.calibrate_lock);
	return ret;
}

uint64_t guest_tsc_hz(void)
{
	if (!guest_kit.tsc_hz && guest_calibrate())
		guest_exit(GUEST_EXIT_FAIL);
	return guest_kit.tsc_hz;
}

void guest_delay_us(uint64_t us)
{
	uint64_t end = guest_rdtsc() + guest_tsc_hz() / 1000000 * us;

	while (guest_rdtsc() < end)
		guest_pause();
}

int guest_timer_start(unsigned int hz)
{
	uint64_t count;

	if (!hz || (!guest_kit.tsc_hz && guest_calibrate()))
		return -1;
	count = guest_kit.lapic_hz / hz;
	if (count > UINT32_MAX)
		count = UINT32_MAX;
	guest_lapic_init_local();
	lapic_write(LAPIC_TIMER_DIV, TIMER_DIV_16);
	lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | GUEST_VEC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, count ? (uint32_t)count : 1);
	__asm__ volatile("sti" ::: "memory");
	return 0;
}

uint64_t guest_ticks(void)
{
	return guest_cpu_self()->ticks;
}

uint64_t guest_tick_next(const char *name, uint64_t last)
{
	uint64_t now;

	while ((now = guest_ticks()) == last)
		guest_wait_interrupt();
	if (now < last) {
		guest_printf("%s: ERROR went from %lu to %lu\n", name, last,
			     now);
		guest_exit(GUEST_EXIT_COUNTER);
	}
	return now;
}
