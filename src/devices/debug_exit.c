/* isa-debug-exit: a guest write ends the VM with status (value << 1) | 1,
 * so that a status of 0 can never be confused with a clean exit. */
#include "devices/debug_exit.h"

#include "bus/bus.h"
#include "core/platform.h"
#include "core/vm.h"

static void debug_exit_io(void *opaque, uint64_t offset, uint8_t *data,
			  uint32_t len, bool is_write)
{
	struct debug_exit *d = opaque;
	uint32_t v = 0;

	(void)offset; /* every port of the range behaves the same */
	if (!is_write)
		return; /* reads see the zeroed buffer */
	/* Little-endian value of the access; the range bounds len to 4. */
	for (uint32_t i = 0; i < len && i < sizeof(v); i++)
		v |= (uint32_t)data[i] << (8 * i);
	vm_request_stop(d->vm, VM_STOP_DEBUG_EXIT, (int)((v << 1) | 1));
}

int debug_exit_init(struct debug_exit *d, struct vm *vm)
{
	int ret;

	d->vm = vm;
	ret = bus_register(&vm->pio, PLATFORM_PORT_DEBUG_EXIT,
			   PLATFORM_PORT_DEBUG_EXIT_LEN, debug_exit_io, d,
			   "debug-exit");
	if (ret)
		return ret;
	d->initialized = true;
	return 0;
}

int debug_exit_post_load(struct debug_exit *d)
{
	(void)d;
	return 0;
}

void debug_exit_destroy(struct debug_exit *d)
{
	d->initialized = false;
}

const struct state_desc debug_exit_state_desc = {
	.name = "debug-exit",
	.version = 1,
	.min_version = 1,
	.fields = NULL,
	.nfields = 0,
	.validate = NULL,
};
