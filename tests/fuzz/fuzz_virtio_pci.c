/* libFuzzer target for the virtio-pci transport: a guest driver doing any
 * sequence of config-space and BAR 0 accesses, with the device processing
 * its queues and raising interrupts in between, and snapshot round trips
 * of the transport state. Nothing may crash, leak or touch memory outside
 * guest RAM. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/irq_routing.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/vm.h"
#include "snapshot/state.h"
#include "virtio/virtio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE 0x20000u
#define SLOT 3
#define NQ 2
#define OP_SIZE 12
#define MAX_OPS 256

/* The core calls the transport makes, without KVM. */
int vm_set_irq(struct vm *vm, uint32_t gsi, int level)
{
	if (gsi >= PLATFORM_IOAPIC_PINS || (level != 0 && level != 1))
		abort();
	return 0;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int status)
{
}

/* A device model that drains its queues as blk or net would. */
static struct virtq_chain chain;

static int model_queue_notify(struct virtio_device *vdev, unsigned q)
{
	uint8_t buf[32] = { 0 };

	for (int i = 0; i < 8; i++) {
		int ret = virtq_pop(&vdev->vq[q], &chain);

		if (ret < 0)
			return ret;
		if (ret == 0)
			break;
		virtq_chain_read(&chain, 0, buf, sizeof(buf));
		virtq_chain_write(&chain, 1, buf, sizeof(buf));
		virtq_push(&vdev->vq[q], chain.head, (uint32_t)chain.in_len);
		virtio_device_notify(vdev, q);
	}
	return 0;
}

static uint8_t model_config[16];

static void model_config_read(struct virtio_device *vdev, uint32_t off,
			      uint8_t *data, uint32_t len)
{
	if (off + len > sizeof(model_config))
		abort(); /* the transport bounds it by config_len */
	memcpy(data, model_config + off, len);
}

static const struct virtio_device_ops model_ops = {
	.kind = "fuzz",
	.device_id = VIRTIO_ID_NET,
	.num_queues = NQ,
	.config_len = sizeof(model_config),
	.config_read = model_config_read,
	.queue_notify = model_queue_notify,
};

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static void config_access(struct vm *vm, unsigned off, uint8_t *d, unsigned len,
			  bool is_write)
{
	uint32_t addr = 0x80000000u | SLOT << 11 | (off & 0xfc);

	bus_dispatch(&vm->pio, PLATFORM_PORT_PCI_ADDR, (uint8_t *)&addr, 4,
		     true);
	bus_dispatch(&vm->pio, PLATFORM_PORT_PCI_DATA + (off & 3), d, len,
		     is_write);
}

/* Each op: [0] kind, [1] width, [2..3] offset, [4..11] value. */
static void run_op(struct vm *vm, struct virtio_device *vdev, const uint8_t *op,
		   uint8_t *scratch, size_t scratch_len)
{
	static const unsigned widths[] = { 1, 2, 4, 8 };
	unsigned len = widths[op[1] & 3];
	uint64_t off = le(op + 2, 2);
	uint8_t d[8];
	char err[256];

	memcpy(d, op + 4, 8);
	switch (op[0] % 8) {
	case 0:
	case 1:
		bus_dispatch(&vm->mmio, vdev->pci.bar_mapped[0] + off, d, len,
			     op[0] % 8 == 1);
		break;
	case 2:
	case 3:
		if (len > 4)
			len = 4;
		config_access(vm, (unsigned)(off & 0xff) & ~(len - 1), d, len,
			      op[0] % 8 == 3);
		break;
	case 4:
		if (vdev->vq[op[1] % NQ].enabled &&
		    (vdev->status & VIRTIO_STATUS_DRIVER_OK) &&
		    model_queue_notify(vdev, op[1] % NQ) == -EIO)
			virtio_device_fail(vdev, "fuzz");
		break;
	case 5:
		virtio_device_config_changed(vdev);
		break;
	case 6:
		virtio_device_notify(vdev, op[1] % NQ);
		break;
	case 7:
		/* Save, then load back as restore would: a failed decode
		 * must leave a device that still behaves. */
		if (state_encode(&virtio_pci_state_desc, vdev, scratch,
				 scratch_len) == 0 &&
		    state_decode(&virtio_pci_state_desc, 1, vdev, scratch,
				 scratch_len) == 0)
			virtio_device_post_load(vdev, err, sizeof(err));
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	size_t scratch_len = state_encoded_size(&virtio_pci_state_desc);
	uint8_t *scratch = malloc(scratch_len);
	struct virtio_device *vdev;
	size_t nops, img;
	uint8_t *ram;

	log_set_level(true, false);
	if (!vm || !scratch)
		goto out;
	vm->vm_fd = vm->kvm_fd = -1;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	ram = aligned_alloc(4096, RAM_SIZE);
	if (!ram)
		goto out_bus;
	guest_mem_wrap(&vm->mem, ram, RAM_SIZE, 0);
	/* Ops first, the rest of the input is guest RAM. */
	nops = size / OP_SIZE < MAX_OPS ? size / OP_SIZE : MAX_OPS;
	memset(vm->mem.host, 0, RAM_SIZE);
	img = size - nops * OP_SIZE;
	memcpy(vm->mem.host, data + nops * OP_SIZE,
	       img < RAM_SIZE ? img : RAM_SIZE);
	if (pci_host_init(&vm->pci, vm) ||
	    irq_routing_init(&vm->irq_routing, -1))
		goto out_mem;
	vdev = &vm->virtio[0];
	if (virtio_device_create(vdev, vm, &model_ops, NULL, "net0", SLOT))
		goto out_pci;
	/* Decode on, so the BAR is mapped unless the input moves it. */
	config_access(vm, PCI_CFG_COMMAND, (uint8_t[2]){ PCI_COMMAND_MEMORY },
		      2, true);
	for (size_t i = 0; i < nops; i++)
		run_op(vm, vdev, data + i * OP_SIZE, scratch, scratch_len);
	virtio_device_destroy(vdev);
out_pci:
	irq_routing_destroy(&vm->irq_routing);
	pci_host_destroy(&vm->pci);
out_mem:
	free(vm->mem.host);
out_bus:
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
out:
	free(scratch);
	free(vm);
	return 0;
}
