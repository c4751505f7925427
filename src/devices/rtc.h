/* MC146818 CMOS real-time clock and its 128 bytes of CMOS RAM: the guest's
 * wall clock, the host clock plus an offset the guest (or a restore) sets. */
#ifndef STASIS_RTC_H
#define STASIS_RTC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapshot/state.h"

struct vm;

#define RTC_CMOS_SIZE 128

/* CMOS byte holding the century (BCD or binary per register B), as the
 * ACPI FADT CENTURY field may name it. */
#define RTC_REG_CENTURY 0x32

struct rtc {
	pthread_mutex_t lock;
	struct vm *vm;
	bool initialized;

	/* Saved state (rtc_state_desc). */
	uint8_t index; /* last value written to the index port, bits 6:0 */
	/* Registers A and B and the RAM live here; bytes 0x00-0x09 hold the
	 * time only while register B's SET bit stops the clock. */
	uint8_t cmos[RTC_CMOS_SIZE];
	int64_t offset; /* guest time minus host CLOCK_REALTIME, seconds */
};

extern const struct state_desc rtc_state_desc;

/* Claims PLATFORM_PORT_RTC (index, data) on vm->pio; the clock starts at
 * host time (offset 0), 24-hour BCD. Returns 0 or -errno. */
int rtc_init(struct rtc *r, struct vm *vm);

/* Seconds the guest clock is ahead of the host's. */
int64_t rtc_get_offset(struct rtc *r);

/* Moves the guest clock by @delta_sec (e.g. back by the time a snapshot
 * spent on disk, for --clock frozen). */
void rtc_adjust_offset(struct rtc *r, int64_t delta_sec);

/* Nothing derived to rebuild (no interrupts are emulated). Returns 0. */
int rtc_post_load(struct rtc *r);

/* Safe on a zeroed or never-initialised struct. */
void rtc_destroy(struct rtc *r);

#endif
