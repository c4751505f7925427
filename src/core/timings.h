/* Where a restore's time goes: monotonic time stamps of its phases, from
 * the exec of stasis, for `stasis restore --timings` and GET /vm. */
#ifndef STASIS_TIMINGS_H
#define STASIS_TIMINGS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The marks. Each is the end of the phase of its name (TIMING_FILE: the
 * file is open and its header, CONFIG and CPUID records checked). A
 * plain restore passes TIMING_FILE right after TIMING_MAIN; a waiting
 * target passes KVM, MEMORY and VCPUS before its TIMING_REQUEST (PUT
 * /vm/restore arrived). */
enum timing_mark {
	TIMING_MAIN, /* main() entered */
	TIMING_KVM, /* /dev/kvm open, capabilities checked, KVM_CREATE_VM */
	TIMING_MEMORY, /* guest memory made and its slots registered */
	TIMING_VCPUS, /* irqchip, host CPUID and MSR list, vCPUs made */
	TIMING_REQUEST, /* waiting target only: the restore request */
	TIMING_FILE, /* snapshot opened, header/CONFIG/CPUID checked */
	TIMING_MACHINE, /* the snapshot's CPUID set, devices made */
	TIMING_STATE, /* every record read: vCPU, irqchip, devices, memory */
	TIMING_DEVICES, /* post-load: device state rebuilt, clocks set */
	TIMING_RUN, /* the first KVM_RUN that ran the guest was entered */
	TIMING_EXIT, /* ... and returned: its first exit */
	TIMING_COUNT,
};

struct timings {
	uint64_t exec_ns; /* CLOCK_MONOTONIC at exec */
	const char *exec_source; /* where exec_ns came from */
	bool report; /* print the block on stderr at the first exit */
	bool target; /* a waiting target: TIMING_REQUEST applies */
	_Atomic uint64_t at[TIMING_COUNT]; /* CLOCK_MONOTONIC; 0: not yet */
};

/* The environment variable a launcher sets to the CLOCK_MONOTONIC time
 * (ns) at which it called exec, for exact exec-to-main figures. */
#define TIMINGS_EXEC_ENV "STASIS_EXEC_NS"

/* Finds the exec time: $STASIS_EXEC_NS when it holds a plausible time,
 * else /proc/self/stat's starttime (clock ticks since boot, so only to
 * 1/CLK_TCK s), else main() itself. Marks TIMING_MAIN. */
void timings_init(struct timings *t, bool report);

/* Forgets the marks from @m on: a waiting target's next request. */
void timings_reset_from(struct timings *t, enum timing_mark m);

/* Records @m now (only the first time); @t may be NULL. */
void timings_mark(struct timings *t, enum timing_mark m);

/* Microseconds from exec to @m, or -1 when @m was not reached. */
int64_t timings_us(const struct timings *t, enum timing_mark m);

/* The mark's name as the API and the block show it ("file"). */
const char *timings_name(enum timing_mark m);

/* The block: one header line and one line per mark reached, each
 * "stasis: timings: NAME  AT ms  (+PHASE ms)", written at once. */
void timings_print(const struct timings *t);

#endif
