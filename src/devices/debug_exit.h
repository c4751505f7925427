/* isa-debug-exit compatible port: lets test guests end stasis with a chosen
 * exit status, as they do under QEMU with -device isa-debug-exit. */
#ifndef STASIS_DEBUG_EXIT_H
#define STASIS_DEBUG_EXIT_H

#include <stdbool.h>
#include <stdint.h>

#include "snapshot/state.h"

struct vm;

/* The device has no mutable state after init, hence no lock; its state
 * table is empty and exists so that every device has a record. */
struct debug_exit {
	struct vm *vm;
	bool initialized;
};

extern const struct state_desc debug_exit_state_desc;

/* Claims PLATFORM_PORT_DEBUG_EXIT (PLATFORM_PORT_DEBUG_EXIT_LEN ports) on
 * vm->pio. A write of value v (1, 2 or 4 bytes, at any of the ports) asks
 * the VM to stop with VM_STOP_DEBUG_EXIT and status (v << 1) | 1, computed
 * in 32 bits; the host's exit() keeps only its low 8 bits. Reads return 0.
 * Returns 0 or -errno. */
int debug_exit_init(struct debug_exit *d, struct vm *vm);

/* Nothing to rebuild. Returns 0. */
int debug_exit_post_load(struct debug_exit *d);

/* Safe on a zeroed or never-initialised struct. */
void debug_exit_destroy(struct debug_exit *d);

#endif
