/* counter.c - prints the boot CPU's timer tick count once per tick, so a
 * restored snapshot can be seen to carry on where it left off.
 * Arguments: hz=N (default 100), max=M (default 0 = forever). */
#include "guest.h"

void guest_main(void)
{
	uint64_t hz = guest_arg_u64("hz", 100);
	uint64_t max = guest_arg_u64("max", 0);
	uint64_t last = 0, now;

	guest_printf("counter: start\n");
	if (hz < 1 || hz > 10000 || guest_timer_start(hz)) {
		guest_printf("counter: ERROR bad hz=%lu or no timer\n", hz);
		guest_exit(GUEST_EXIT_FAIL);
	}
	for (;;) {
		now = guest_tick_next("counter", last);
		last = now;
		guest_printf("counter: %lu\n", now);
		if (max && now >= max)
			guest_exit(GUEST_EXIT_OK);
	}
}
