/* smp.c - every CPU in the MADT counts in ring 3 with its own timer
 * running; CPU 0 prints the totals and fails if a CPU stops counting or
 * stops taking timer interrupts.
 * Arguments: hz=N (100, every CPU's tick), period_ms=P (500, between
 * prints), rounds=R (0 = forever), stall=S (3 periods without progress). */
#include "guest.h"

struct smp_slot {
	volatile uint64_t count;
} __attribute__((aligned(64)));

struct smp_state {
	struct smp_slot slot[GUEST_MAX_CPUS];
	uint64_t last[GUEST_MAX_CPUS];
	uint64_t last_ticks[GUEST_MAX_CPUS];
	unsigned int idle_periods[GUEST_MAX_CPUS];
	unsigned int hz;
};

static struct smp_state smp;

static void smp_count(unsigned int index)
{
	if (guest_timer_start(smp.hz))
		guest_printf("smp: cpu %u has no timer\n", index);
	for (;;)
		smp.slot[index].count++;
}

/* One line with every total; built in a buffer so CPUs' lines never mix
 * and long CPU lists are not cut short. */
static void smp_report(unsigned int n)
{
	char line[64 + GUEST_MAX_CPUS * 21];
	size_t len;
	unsigned int i;

	len = guest_snprintf(line, sizeof(line), "smp: cpus=%u totals=", n);
	for (i = 0; i < n && len < sizeof(line); i++)
		len += guest_snprintf(line + len, sizeof(line) - len, "%s%lu",
				      i ? "," : "", smp.last[i]);
	if (len < sizeof(line))
		guest_snprintf(line + len, sizeof(line) - len, "\n");
	guest_puts(line);
}

void guest_main(void)
{
	uint64_t period_ms = guest_arg_u64("period_ms", 500);
	uint64_t rounds = guest_arg_u64("rounds", 0);
	uint64_t stall = guest_arg_u64("stall", 3);
	uint64_t hz = guest_arg_u64("hz", 100);
	uint64_t round, period_ticks, next;
	unsigned int n, known, i;

	guest_printf("smp: start\n");
	if (hz < 1 || hz > 10000) {
		guest_printf("smp: ERROR bad hz=%lu\n", hz);
		guest_exit(GUEST_EXIT_FAIL);
	}
	smp.hz = hz;
	n = guest_cpus_start(smp_count);
	known = guest_cpus_known();
	if (n != known) {
		for (i = 1; i < known; i++)
			if (!guest_cpu(i)->online)
				guest_printf(
				    "smp: STALL cpu %u (did not start)\n", i);
		guest_exit(GUEST_EXIT_SMP);
	}
	guest_printf("smp: %u cpus online\n", n);
	if (guest_timer_start(smp.hz))
		guest_exit(GUEST_EXIT_FAIL);

	period_ticks = (period_ms * smp.hz + 999) / 1000;
	next = guest_ticks();
	for (round = 1; !rounds || round <= rounds; round++) {
		/* Ticks that came in a burst (a resume after a pause, a host
		 * that ran something else) can leave the count whole periods
		 * ahead: the round then starts now, so that every CPU has a
		 * full period to count in and time it never had is not taken
		 * for a stall. */
		if (next < guest_ticks())
			next = guest_ticks();
		next += period_ticks ? period_ticks : 1;
		while (guest_ticks() < next)
			smp.slot[0].count++;
		for (i = 0; i < n; i++) {
			uint64_t now = smp.slot[i].count;

			smp.idle_periods[i] =
			    now == smp.last[i] ? smp.idle_periods[i] + 1 : 0;
			smp.last[i] = now;
		}
		smp_report(n);
		for (i = 0; i < n; i++) {
			if (smp.idle_periods[i] >= stall) {
				guest_printf("smp: STALL cpu %u\n", i);
				guest_exit(GUEST_EXIT_SMP);
			}
		}
	}
	guest_exit(GUEST_EXIT_OK);
}
