/* i8042 keyboard controller without a keyboard: the controller commands
 * guests use to probe it and the reset line Linux pulses for reboot=k. */
#ifndef STASIS_I8042_H
#define STASIS_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapshot/state.h"

struct vm;

struct i8042 {
	pthread_mutex_t lock;
	struct vm *vm;
	bool initialized;

	/* Saved state (i8042_state_desc). */
	uint8_t ctr; /* controller command byte ("CTR" in Linux) */
	uint8_t outport; /* output port: bit 0 reset line, bit 1 A20 */
	uint8_t out_data; /* the one-byte output buffer */
	bool out_full; /* status OBF */
	bool out_aux; /* the byte came from the aux port (status bit 5) */
	bool last_cmd; /* status A2: last write went to the command port */
	uint8_t pending_cmd; /* command awaiting its data byte, or 0 */
};

extern const struct state_desc i8042_state_desc;

/* Claims PLATFORM_PORT_I8042_DATA and _CMD on vm->pio. Returns 0 or
 * -errno. */
int i8042_init(struct i8042 *k, struct vm *vm);

/* Nothing derived to rebuild (no IRQ is driven). Returns 0. */
int i8042_post_load(struct i8042 *k);

/* Safe on a zeroed or never-initialised struct. */
void i8042_destroy(struct i8042 *k);

#endif
