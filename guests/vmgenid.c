/* vmgenid.c - finds the VM Generation ID device in the SSDT, prints its ID
 * and then, as the counter guest does, its timer tick count; prints the ID
 * again whenever it changes or the device's event line fires (a restore).
 * Arguments: hz=N (default 100), touch=M (MiB of RAM filled with a pattern
 * at boot and checked again whenever the ID changes; default 0). */
#include "guest.h"

#define MIB (1ull << 20)
#define ID_SIZE 16
#define MAX_TOUCH 4096

/* The fixed byte forms stasis's SSDT uses (docs/devices.md): the device's
 * _HID string, then its ADDR method returning Package (2) { DWordConst,
 * DWordConst }; the event device's _HID, then its Extended Interrupt
 * Descriptor (ACPI 6.4, 6.4.3.6) with one interrupt. */
static const uint8_t vgen_hid[] = "\x0dVMGENCTR";
static const uint8_t vgen_addr[] = "ADDR\x00\xa4\x12\x0c\x02\x0c";
static const uint8_t ged_hid[] = "\x0d"
				 "ACPI0013";
static const uint8_t ged_irq[] = "\x89\x06";

/* The offset of @pat (@n bytes) in @p[from, len), or -1. */
static long find(const uint8_t *p, size_t len, size_t from, const uint8_t *pat,
		 size_t n)
{
	for (size_t i = from; i + n <= len; i++)
		if (!memcmp(p + i, pat, n))
			return (long)i;
	return -1;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* The ID's address and the event GSI from the SSDT; false if absent. */
static bool vmgenid_find(uint64_t *addr, unsigned int *gsi)
{
	const uint8_t *t = guest_acpi_table("SSDT");
	long hid, at, ged, irq;
	uint32_t len;

	if (!t)
		return false;
	len = get32(t + 4);
	hid = find(t, len, 36, vgen_hid, sizeof(vgen_hid));
	if (hid < 0)
		return false;
	at = find(t, len, (size_t)hid, vgen_addr, sizeof(vgen_addr) - 1);
	if (at < 0 || (size_t)at + sizeof(vgen_addr) - 1 + 9 > len ||
	    t[at + sizeof(vgen_addr) - 1 + 4] != 0x0c)
		return false;
	at += sizeof(vgen_addr) - 1;
	*addr = get32(t + at) | (uint64_t)get32(t + at + 5) << 32;
	*gsi = ~0u;
	ged = find(t, len, 36, ged_hid, sizeof(ged_hid));
	irq =
	    ged < 0 ? -1 : find(t, len, (size_t)ged, ged_irq, sizeof(ged_irq));
	/* Length 6: flags, one interrupt, its number. */
	if (irq >= 0 && (size_t)irq + 9 <= len && t[irq + 4] == 1)
		*gsi = get32(t + irq + 5);
	return true;
}

/* Reads the ID through a pointer the compiler cannot see the origin of:
 * it changes under the guest while it runs, on a restore. */
static void vmgenid_read(uint64_t addr, uint8_t id[ID_SIZE])
{
	const volatile uint8_t *p;

	__asm__("" : "=r"(p) : "0"(addr));
	for (unsigned int i = 0; i < ID_SIZE; i++)
		id[i] = p[i];
}

static uint64_t pattern(const uint64_t *a)
{
	uint64_t x = (uint64_t)a * 0x9e3779b97f4a7c15ull;

	return x ^ x >> 29;
}

/* Touched memory: 1 MiB pieces, checked word by word. */
static uint64_t *touched[MAX_TOUCH];

static bool touch_check(uint64_t mib, bool fill)
{
	for (uint64_t m = 0; m < mib; m++)
		for (uint64_t w = 0; w < MIB / 8; w++) {
			uint64_t *a = touched[m] + w;

			if (fill)
				*a = pattern(a);
			else if (*a != pattern(a))
				return false;
		}
	return true;
}

static void print_id(const uint8_t id[ID_SIZE], uint64_t notify)
{
	char hex[2 * ID_SIZE + 1];

	for (unsigned int i = 0; i < ID_SIZE; i++) {
		hex[2 * i] = "0123456789abcdef"[id[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[id[i] & 15];
	}
	hex[2 * ID_SIZE] = '\0';
	guest_printf("vmgenid: id=%s notify=%lu\n", hex, notify);
}

void guest_main(void)
{
	uint64_t hz = guest_arg_u64("hz", 100);
	uint64_t mib = guest_arg_u64("touch", 0);
	uint8_t id[ID_SIZE], last_id[ID_SIZE];
	uint64_t addr, last = 0, now, notify = 0, last_notify = 0;
	unsigned int gsi, slot = 0;
	bool routed = false;

	guest_printf("vmgenid: start\n");
	if (!vmgenid_find(&addr, &gsi)) {
		guest_printf("vmgenid: none\n");
		guest_exit(GUEST_EXIT_OK);
	}
	if (!addr || addr % 8) {
		guest_printf("vmgenid: ERROR bad address 0x%lx\n", addr);
		guest_exit(GUEST_EXIT_FAIL);
	}
	if (mib > MAX_TOUCH) {
		guest_printf("vmgenid: ERROR touch=%lu > %u\n", mib, MAX_TOUCH);
		guest_exit(GUEST_EXIT_FAIL);
	}
	for (uint64_t m = 0; m < mib; m++)
		if (!(touched[m] = guest_alloc(MIB, MIB))) {
			guest_printf("vmgenid: ERROR no memory to touch\n");
			guest_exit(GUEST_EXIT_FAIL);
		}
	touch_check(mib, true);
	if (gsi != ~0u)
		routed = !guest_irq_route_line(gsi, &slot);
	guest_printf("vmgenid: addr=0x%lx gsi=%d routed=%d touched=%lu\n", addr,
		     gsi == ~0u ? -1 : (int)gsi, routed, mib);
	if (hz < 1 || hz > 10000 || guest_timer_start(hz)) {
		guest_printf("vmgenid: ERROR bad hz=%lu or no timer\n", hz);
		guest_exit(GUEST_EXIT_FAIL);
	}
	vmgenid_read(addr, last_id);
	print_id(last_id, 0);
	for (;;) {
		now = guest_tick_next("counter", last);
		last = now;
		if (routed)
			notify = guest_irq_counts[slot];
		vmgenid_read(addr, id);
		if (memcmp(id, last_id, ID_SIZE) || notify != last_notify) {
			memcpy(last_id, id, ID_SIZE);
			last_notify = notify;
			print_id(id, notify);
			if (!touch_check(mib, false)) {
				guest_printf("vmgenid: ERROR touched memory "
					     "changed\n");
				guest_exit(GUEST_EXIT_MEMTEST);
			}
			guest_printf("vmgenid: memory ok\n");
		}
		guest_printf("counter: %lu\n", now);
	}
}
