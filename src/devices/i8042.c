/* i8042 controller: status/command port 0x64 and data port 0x60 with the
 * controller commands of the IBM PC AT Technical Reference (keyboard
 * controller section); no keyboard or mouse is attached. */
#include "devices/i8042.h"

#include <errno.h>
#include <string.h>

#include "bus/bus.h"
#include "core/platform.h"
#include "core/vm.h"

/* Status register bits. */
#define I8042_STR_OBF 0x01 /* output buffer full */
#define I8042_STR_SYS 0x04 /* system flag, from CTR bit 2 */
#define I8042_STR_CMD 0x08 /* A2: last write was a command */
#define I8042_STR_NOINH 0x10 /* keyboard not inhibited by the key lock */
#define I8042_STR_AUXOBF 0x20 /* output buffer holds aux data */

/* Controller command byte bits. */
#define I8042_CTR_SYS 0x04
#define I8042_CTR_KBDDIS 0x10
#define I8042_CTR_AUXDIS 0x20
#define I8042_CTR_DEFAULT 0x45 /* as a BIOS leaves it: IRQ1, SYS, XLATE */

/* Controller commands. */
#define I8042_CMD_READ_CTR 0x20
#define I8042_CMD_WRITE_CTR 0x60
#define I8042_CMD_AUX_DISABLE 0xa7
#define I8042_CMD_AUX_ENABLE 0xa8
#define I8042_CMD_AUX_TEST 0xa9
#define I8042_CMD_SELF_TEST 0xaa
#define I8042_CMD_KBD_TEST 0xab
#define I8042_CMD_KBD_DISABLE 0xad
#define I8042_CMD_KBD_ENABLE 0xae
#define I8042_CMD_READ_INPORT 0xc0
#define I8042_CMD_READ_OUTPORT 0xd0
#define I8042_CMD_WRITE_OUTPORT 0xd1
#define I8042_CMD_WRITE_KBD_OUT 0xd2 /* next data byte appears as kbd input */
#define I8042_CMD_WRITE_AUX_OUT 0xd3 /* ... as aux input (loopback) */
#define I8042_CMD_WRITE_AUX 0xd4 /* next data byte goes to the mouse */
#define I8042_CMD_PULSE 0xf0 /* 0xf0-0xff: pulse output port bits 3:0 low */

#define I8042_SELF_TEST_OK 0x55
#define I8042_PORT_TEST_OK 0x00
#define I8042_OUTPORT_RESET 0x01 /* low = CPU held in reset */
#define I8042_OUTPORT_DEFAULT 0x03 /* reset inactive, A20 on */

static void i8042_queue(struct i8042 *k, uint8_t val, bool aux)
{
	/* One output buffer: a new byte replaces an unread one, as when the
	 * guest issues a command without draining. */
	k->out_data = val;
	k->out_full = true;
	k->out_aux = aux;
}

/* Handles a write to the command port; returns true when it pulses the
 * reset line. */
static bool i8042_write_cmd(struct i8042 *k, uint8_t cmd)
{
	k->last_cmd = true;
	k->pending_cmd = 0;
	if (cmd >= I8042_CMD_PULSE)
		return !(cmd & I8042_OUTPORT_RESET);
	switch (cmd) {
	case I8042_CMD_READ_CTR:
		i8042_queue(k, k->ctr, false);
		break;
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUTPORT:
	case I8042_CMD_WRITE_KBD_OUT:
	case I8042_CMD_WRITE_AUX_OUT:
	case I8042_CMD_WRITE_AUX:
		k->pending_cmd = cmd;
		break;
	case I8042_CMD_AUX_DISABLE:
		k->ctr |= I8042_CTR_AUXDIS;
		break;
	case I8042_CMD_AUX_ENABLE:
		k->ctr &= ~I8042_CTR_AUXDIS;
		break;
	case I8042_CMD_KBD_DISABLE:
		k->ctr |= I8042_CTR_KBDDIS;
		break;
	case I8042_CMD_KBD_ENABLE:
		k->ctr &= ~I8042_CTR_KBDDIS;
		break;
	case I8042_CMD_SELF_TEST:
		/* A passed self-test sets the system flag. */
		k->ctr |= I8042_CTR_SYS;
		i8042_queue(k, I8042_SELF_TEST_OK, false);
		break;
	case I8042_CMD_AUX_TEST:
	case I8042_CMD_KBD_TEST:
		/* The interface lines test fine even with nothing plugged. */
		i8042_queue(k, I8042_PORT_TEST_OK, false);
		break;
	case I8042_CMD_READ_INPORT:
		i8042_queue(k, 0, false);
		break;
	case I8042_CMD_READ_OUTPORT:
		i8042_queue(k, k->outport, false);
		break;
	default:
		break; /* unknown commands are ignored */
	}
	return false;
}

/* Handles a write to the data port; returns true when it drops the reset
 * line. */
static bool i8042_write_data(struct i8042 *k, uint8_t val)
{
	uint8_t cmd = k->pending_cmd;

	k->last_cmd = false;
	k->pending_cmd = 0;
	switch (cmd) {
	case I8042_CMD_WRITE_CTR:
		k->ctr = val;
		break;
	case I8042_CMD_WRITE_OUTPORT:
		k->outport = val;
		return !(val & I8042_OUTPORT_RESET);
	case I8042_CMD_WRITE_KBD_OUT:
		i8042_queue(k, val, false);
		break;
	case I8042_CMD_WRITE_AUX_OUT:
		i8042_queue(k, val, true);
		break;
	default:
		/* To the keyboard or the mouse: none is attached, the byte
		 * is lost and no reply comes. */
		break;
	}
	return false;
}

static uint8_t i8042_read_status(const struct i8042 *k)
{
	uint8_t st = I8042_STR_NOINH;

	if (k->out_full)
		st |= I8042_STR_OBF;
	if (k->out_full && k->out_aux)
		st |= I8042_STR_AUXOBF;
	if (k->ctr & I8042_CTR_SYS)
		st |= I8042_STR_SYS;
	if (k->last_cmd)
		st |= I8042_STR_CMD;
	/* IBF is never set: every write is handled before the guest can
	 * look again. */
	return st;
}

static void i8042_io(struct i8042 *k, bool is_cmd_port, uint8_t *data,
		     bool is_write)
{
	bool reset = false;

	pthread_mutex_lock(&k->lock);
	if (is_write && is_cmd_port) {
		reset = i8042_write_cmd(k, data[0]);
	} else if (is_write) {
		reset = i8042_write_data(k, data[0]);
	} else if (is_cmd_port) {
		data[0] = i8042_read_status(k);
	} else {
		/* An empty buffer reads as its stale byte, as on hardware. */
		data[0] = k->out_data;
		k->out_full = false;
		k->out_aux = false;
	}
	pthread_mutex_unlock(&k->lock);
	/* Outside the lock: the core may stop vCPUs in response. */
	if (reset)
		vm_request_stop(k->vm, VM_STOP_RESET, 0);
}

static void i8042_data_io(void *opaque, uint64_t offset, uint8_t *data,
			  uint32_t len, bool is_write)
{
	(void)offset;
	(void)len; /* the one-port range only admits 1-byte accesses */
	i8042_io(opaque, false, data, is_write);
}

static void i8042_cmd_io(void *opaque, uint64_t offset, uint8_t *data,
			 uint32_t len, bool is_write)
{
	(void)offset;
	(void)len;
	i8042_io(opaque, true, data, is_write);
}

int i8042_init(struct i8042 *k, struct vm *vm)
{
	int ret;

	memset(k, 0, sizeof(*k));
	k->vm = vm;
	k->ctr = I8042_CTR_DEFAULT;
	k->outport = I8042_OUTPORT_DEFAULT;
	ret = pthread_mutex_init(&k->lock, NULL);
	if (ret)
		return -ret;
	ret = bus_register(&vm->pio, PLATFORM_PORT_I8042_DATA, 1, i8042_data_io,
			   k, "i8042-data");
	if (ret)
		goto err_lock;
	ret = bus_register(&vm->pio, PLATFORM_PORT_I8042_CMD, 1, i8042_cmd_io,
			   k, "i8042-cmd");
	if (ret)
		goto err_data;
	k->initialized = true;
	return 0;

err_data:
	bus_unregister(&vm->pio, PLATFORM_PORT_I8042_DATA);
err_lock:
	pthread_mutex_destroy(&k->lock);
	return ret;
}

int i8042_post_load(struct i8042 *k)
{
	(void)k;
	return 0;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k->initialized)
		return;
	pthread_mutex_destroy(&k->lock);
	k->initialized = false;
}

static int i8042_validate(const void *obj)
{
	const struct i8042 *k = obj;

	switch (k->pending_cmd) {
	case 0:
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUTPORT:
	case I8042_CMD_WRITE_KBD_OUT:
	case I8042_CMD_WRITE_AUX_OUT:
	case I8042_CMD_WRITE_AUX:
		break;
	default:
		return -EINVAL;
	}
	if (k->out_aux && !k->out_full)
		return -EINVAL;
	return 0;
}

static const struct state_field i8042_state_fields[] = {
	STATE_U8(struct i8042, ctr, 1),
	STATE_U8(struct i8042, outport, 1),
	STATE_U8(struct i8042, out_data, 1),
	STATE_BOOL(struct i8042, out_full, 1),
	STATE_BOOL(struct i8042, out_aux, 1),
	STATE_BOOL(struct i8042, last_cmd, 1),
	STATE_U8(struct i8042, pending_cmd, 1),
};

const struct state_desc i8042_state_desc = {
	.name = "i8042",
	.version = 1,
	.min_version = 1,
	.fields = i8042_state_fields,
	.nfields = STATE_NFIELDS(i8042_state_fields),
	.validate = i8042_validate,
};
