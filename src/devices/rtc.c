/* MC146818 RTC: time registers computed from the host clock plus a saved
 * offset, registers A-D and CMOS RAM (Motorola MC146818A datasheet). */
#include "devices/rtc.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "bus/bus.h"
#include "core/platform.h"
#include "core/vm.h"

/* Register indices (MC146818A Table 2, "Address Map"). */
#define RTC_SECONDS 0x00
#define RTC_SECONDS_ALARM 0x01
#define RTC_MINUTES 0x02
#define RTC_MINUTES_ALARM 0x03
#define RTC_HOURS 0x04
#define RTC_HOURS_ALARM 0x05
#define RTC_DAY_OF_WEEK 0x06
#define RTC_DAY_OF_MONTH 0x07
#define RTC_MONTH 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d

#define RTC_INDEX_MASK 0x7f /* bit 7 of the index port gates NMI; ignored */

#define RTC_A_UIP 0x80 /* update in progress, read-only */
#define RTC_A_DEFAULT 0x26 /* 32.768 kHz time base, 1.024 kHz rate */
#define RTC_B_SET 0x80 /* stops updates so software can set the time */
#define RTC_B_UIE 0x10
#define RTC_B_DM_BINARY 0x04 /* 1: binary, 0: BCD */
#define RTC_B_24H 0x02
#define RTC_HOUR_PM 0x80 /* 12-hour mode */
#define RTC_D_VRT 0x80 /* valid RAM and time: the battery is fine */

/* UIP rises 244 us before each update (MC146818A, "Update Cycle"); the
 * update itself is instantaneous here. */
#define RTC_UIP_NS 244000

/* Largest offset kept: about 31,700 years, far beyond any date the
 * registers can express, and small enough that now + offset cannot
 * overflow. */
#define RTC_OFFSET_MAX 1000000000000ll

static int64_t rtc_clamp_offset(int64_t off)
{
	if (off > RTC_OFFSET_MAX)
		return RTC_OFFSET_MAX;
	if (off < -RTC_OFFSET_MAX)
		return -RTC_OFFSET_MAX;
	return off;
}

static struct timespec rtc_host_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

static bool rtc_is_binary(const struct rtc *r)
{
	return r->cmos[RTC_REG_B] & RTC_B_DM_BINARY;
}

/* Register B's DM bit picks BCD or binary for every time register. */
static uint8_t rtc_to_reg(const struct rtc *r, unsigned v)
{
	v %= 100;
	return rtc_is_binary(r) ? (uint8_t)v
				: (uint8_t)((v / 10) << 4 | v % 10);
}

static unsigned rtc_from_reg(const struct rtc *r, uint8_t v)
{
	return rtc_is_binary(r) ? v : (v >> 4) * 10u + (v & 0x0f);
}

static uint8_t rtc_to_hour_reg(const struct rtc *r, unsigned h)
{
	unsigned h12 = h % 12 ? h % 12 : 12;

	if (r->cmos[RTC_REG_B] & RTC_B_24H)
		return rtc_to_reg(r, h);
	/* 12-hour mode: 1-12 with bit 7 set for PM. */
	return rtc_to_reg(r, h12) | (h >= 12 ? RTC_HOUR_PM : 0);
}

static unsigned rtc_from_hour_reg(const struct rtc *r, uint8_t v)
{
	if (r->cmos[RTC_REG_B] & RTC_B_24H)
		return rtc_from_reg(r, v);
	return rtc_from_reg(r, v & ~RTC_HOUR_PM) % 12 +
	       (v & RTC_HOUR_PM ? 12 : 0);
}

static bool rtc_is_time_reg(unsigned idx)
{
	switch (idx) {
	case RTC_SECONDS:
	case RTC_MINUTES:
	case RTC_HOURS:
	case RTC_DAY_OF_WEEK:
	case RTC_DAY_OF_MONTH:
	case RTC_MONTH:
	case RTC_YEAR:
	case RTC_REG_CENTURY:
		return true;
	}
	return false;
}

/* Writes the guest's current time into the time registers. */
static void rtc_latch_time(struct rtc *r)
{
	time_t t = rtc_host_now().tv_sec + r->offset;
	struct tm tm;

	if (!gmtime_r(&t, &tm))
		return;
	r->cmos[RTC_SECONDS] = rtc_to_reg(r, tm.tm_sec);
	r->cmos[RTC_MINUTES] = rtc_to_reg(r, tm.tm_min);
	r->cmos[RTC_HOURS] = rtc_to_hour_reg(r, tm.tm_hour);
	r->cmos[RTC_DAY_OF_WEEK] = rtc_to_reg(r, tm.tm_wday + 1); /* Sun=1 */
	r->cmos[RTC_DAY_OF_MONTH] = rtc_to_reg(r, tm.tm_mday);
	r->cmos[RTC_MONTH] = rtc_to_reg(r, tm.tm_mon + 1);
	r->cmos[RTC_YEAR] = rtc_to_reg(r, (tm.tm_year + 1900) % 100);
	r->cmos[RTC_REG_CENTURY] = rtc_to_reg(r, (tm.tm_year + 1900) / 100);
}

/* Takes the time registers as the guest's new time: the clock runs on
 * from there, as the offset to the host clock. Nonsense values (month 0,
 * bad BCD) are normalised by timegm(), never trusted as indices. The day
 * of week is derived, as most software expects. */
static void rtc_unlatch_time(struct rtc *r)
{
	struct tm tm = { .tm_isdst = 0 };
	unsigned year = rtc_from_reg(r, r->cmos[RTC_REG_CENTURY]) * 100 +
			rtc_from_reg(r, r->cmos[RTC_YEAR]);
	time_t t;

	tm.tm_sec = rtc_from_reg(r, r->cmos[RTC_SECONDS]);
	tm.tm_min = rtc_from_reg(r, r->cmos[RTC_MINUTES]);
	tm.tm_hour = rtc_from_hour_reg(r, r->cmos[RTC_HOURS]);
	tm.tm_mday = rtc_from_reg(r, r->cmos[RTC_DAY_OF_MONTH]);
	tm.tm_mon = (int)rtc_from_reg(r, r->cmos[RTC_MONTH]) - 1;
	tm.tm_year = (int)year - 1900;
	t = timegm(&tm);
	r->offset = rtc_clamp_offset((int64_t)t - rtc_host_now().tv_sec);
}

static uint8_t rtc_read_reg_a(const struct rtc *r)
{
	uint8_t a = r->cmos[RTC_REG_A] & ~RTC_A_UIP;

	if (!(r->cmos[RTC_REG_B] & RTC_B_SET) &&
	    rtc_host_now().tv_nsec >= 1000000000 - RTC_UIP_NS)
		a |= RTC_A_UIP;
	return a;
}

static uint8_t rtc_read(struct rtc *r, unsigned idx)
{
	bool running = !(r->cmos[RTC_REG_B] & RTC_B_SET);

	if (rtc_is_time_reg(idx)) {
		if (running)
			rtc_latch_time(r);
		return r->cmos[idx];
	}
	switch (idx) {
	case RTC_REG_A:
		return rtc_read_reg_a(r);
	case RTC_REG_C:
		/* Interrupt flags: no periodic, alarm or update interrupt is
		 * emulated, so none is ever pending. */
		return 0;
	case RTC_REG_D:
		return RTC_D_VRT;
	}
	return r->cmos[idx];
}

static void rtc_write_reg_b(struct rtc *r, uint8_t val)
{
	bool was_set = r->cmos[RTC_REG_B] & RTC_B_SET;

	/* Freeze the registers as they read now, before the format may
	 * change under them. */
	if ((val & RTC_B_SET) && !was_set)
		rtc_latch_time(r);
	/* SET clears UIE (DS12887 register B; the MC146818A says updates
	 * stop). */
	if (val & RTC_B_SET)
		val &= ~RTC_B_UIE;
	r->cmos[RTC_REG_B] = val;
	/* Leaving SET starts the clock from the registers, read in the new
	 * format, as the chip would count on from them. */
	if (!(val & RTC_B_SET) && was_set)
		rtc_unlatch_time(r);
}

static void rtc_write(struct rtc *r, unsigned idx, uint8_t val)
{
	if (rtc_is_time_reg(idx)) {
		bool running = !(r->cmos[RTC_REG_B] & RTC_B_SET);

		/* With the clock running a write changes one field of the
		 * current time. */
		if (running)
			rtc_latch_time(r);
		r->cmos[idx] = val;
		if (running)
			rtc_unlatch_time(r);
		return;
	}
	switch (idx) {
	case RTC_REG_A:
		r->cmos[RTC_REG_A] = val & ~RTC_A_UIP;
		break;
	case RTC_REG_B:
		rtc_write_reg_b(r, val);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	default:
		r->cmos[idx] = val;
		break;
	}
}

static void rtc_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
		   bool is_write)
{
	struct rtc *r = opaque;

	pthread_mutex_lock(&r->lock);
	for (uint32_t i = 0; i < len; i++) {
		bool is_index = (offset + i) % PLATFORM_PORT_RTC_LEN == 0;

		if (is_index && is_write)
			r->index = data[i] & RTC_INDEX_MASK;
		else if (is_index)
			data[i] = r->index;
		else if (is_write)
			rtc_write(r, r->index, data[i]);
		else
			data[i] = rtc_read(r, r->index);
	}
	pthread_mutex_unlock(&r->lock);
}

int rtc_init(struct rtc *r, struct vm *vm)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->vm = vm;
	r->cmos[RTC_REG_A] = RTC_A_DEFAULT;
	r->cmos[RTC_REG_B] = RTC_B_24H;
	r->cmos[RTC_REG_D] = RTC_D_VRT;
	ret = pthread_mutex_init(&r->lock, NULL);
	if (ret)
		return -ret;
	ret = bus_register(&vm->pio, PLATFORM_PORT_RTC, PLATFORM_PORT_RTC_LEN,
			   rtc_io, r, "rtc");
	if (ret) {
		pthread_mutex_destroy(&r->lock);
		return ret;
	}
	r->initialized = true;
	return 0;
}

int64_t rtc_get_offset(struct rtc *r)
{
	int64_t off;

	pthread_mutex_lock(&r->lock);
	off = r->offset;
	pthread_mutex_unlock(&r->lock);
	return off;
}

void rtc_adjust_offset(struct rtc *r, int64_t delta_sec)
{
	pthread_mutex_lock(&r->lock);
	/* Both are within the clamp, so the sum cannot overflow. */
	r->offset = rtc_clamp_offset(r->offset + rtc_clamp_offset(delta_sec));
	pthread_mutex_unlock(&r->lock);
}

int rtc_post_load(struct rtc *r)
{
	(void)r;
	return 0;
}

void rtc_destroy(struct rtc *r)
{
	if (!r->initialized)
		return;
	pthread_mutex_destroy(&r->lock);
	r->initialized = false;
}

static int rtc_validate(const void *obj)
{
	const struct rtc *r = obj;

	/* index selects a cmos[] byte; the offset must keep time arithmetic
	 * from overflowing. */
	if (r->index > RTC_INDEX_MASK)
		return -EINVAL;
	if (r->offset > RTC_OFFSET_MAX || r->offset < -RTC_OFFSET_MAX)
		return -EINVAL;
	return 0;
}

static const struct state_field rtc_state_fields[] = {
	STATE_U8(struct rtc, index, 1), /* index port latch */
	STATE_U8_ARRAY(struct rtc, cmos, 1),
	STATE_U64(struct rtc, offset, 1), /* two's complement */
};

const struct state_desc rtc_state_desc = {
	.name = "rtc",
	.version = 1,
	.min_version = 1,
	.fields = rtc_state_fields,
	.nfields = STATE_NFIELDS(rtc_state_fields),
	.validate = rtc_validate,
};
