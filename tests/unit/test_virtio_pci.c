/* The virtio-pci transport without KVM: config space and capabilities
 * (virtio 1.2, 4.1.4), the common configuration layout, feature
 * negotiation, reset, queue setup rules, MSI-X and INTx, the worker's
 * kicks and park, NEEDS_RESET, and a state save -> load round trip. A test
 * device model stands in for blk/net/console/rng. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "core/irq_routing.h"
#include "core/platform.h"
#include "core/vm.h"
#include "snapshot/state.h"
#include "virtio/virtio.h"

#include "fake_vm.h"

#define SLOT 1
#define NQ 2
#define NVEC (NQ + 1)
#define CFG_LEN 8
#define DEV_FEATURE_A 5 /* device feature bits the model offers */
#define DEV_FEATURE_B 33
#define LOW_SIZE (1u << 20)
#define INTX_GSI 16

/* ------------------------------------------------- a test device model -- */

struct test_model {
	uint8_t config[CFG_LEN];
	uint32_t saved; /* its saved state */
	int notify_ret; /* what queue_notify returns */
	unsigned notifies[NQ];
	unsigned resets;
	unsigned post_loads;
	/* Set: the next queue 0 notify has output @wait_fd cannot take and
	 * asks the worker to wait (wait_ms: its limit). */
	bool wait_armed;
	int wait_fd;
	unsigned wait_ms;
};

static uint64_t model_features(struct virtio_device *vdev)
{
	return 1ull << DEV_FEATURE_A | 1ull << DEV_FEATURE_B;
}

static void model_config_read(struct virtio_device *vdev, uint32_t off,
			      uint8_t *data, uint32_t len)
{
	struct test_model *m = vdev->priv;

	memcpy(data, m->config + off, len);
}

static void model_config_write(struct virtio_device *vdev, uint32_t off,
			       const uint8_t *data, uint32_t len)
{
	struct test_model *m = vdev->priv;

	memcpy(m->config + off, data, len);
}

static int model_queue_notify(struct virtio_device *vdev, unsigned q)
{
	struct test_model *m = vdev->priv;

	if (q == 0 && m->wait_armed) {
		m->wait_armed = false;
		virtio_device_wait_writable(vdev, m->wait_fd, 0, m->wait_ms);
	}
	__atomic_add_fetch(&m->notifies[q], 1, __ATOMIC_SEQ_CST);
	return m->notify_ret;
}

static void model_reset(struct virtio_device *vdev)
{
	struct test_model *m = vdev->priv;

	m->resets++;
}

static int model_post_load(struct virtio_device *vdev, char *err, size_t errlen)
{
	struct test_model *m = vdev->priv;

	m->post_loads++;
	return 0;
}

static const struct state_field model_fields[] = {
	STATE_U32(struct test_model, saved, 1),
};

static const struct state_desc model_desc = {
	.name = "test-model",
	.version = 1,
	.min_version = 1,
	.fields = model_fields,
	.nfields = STATE_NFIELDS(model_fields),
};

static const struct virtio_device_ops model_ops = {
	.kind = "test",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = NQ,
	.config_len = CFG_LEN,
	.features = model_features,
	.config_read = model_config_read,
	.config_write = model_config_write,
	.queue_notify = model_queue_notify,
	.reset = model_reset,
	.state_desc = &model_desc,
	.post_load = model_post_load,
};

/* ------------------------------------------------------------ fixture -- */

struct tv {
	struct vm vm;
	uint8_t *ram;
	struct test_model model;
	struct virtio_device *vdev;
	uint32_t bar;
};

static struct tv *tv_create(void)
{
	struct tv *t = calloc(1, sizeof(*t));
	struct vm *vm;

	assert_non_null(t);
	vm = &t->vm;
	vm->vm_fd = vm->kvm_fd = -1;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	t->ram = aligned_alloc(4096, LOW_SIZE);
	assert_non_null(t->ram);
	memset(t->ram, 0, LOW_SIZE);
	guest_mem_wrap(&vm->mem, t->ram, LOW_SIZE, 0);
	assert_int_equal(pci_host_init(&vm->pci, vm), 0);
	assert_int_equal(irq_routing_init(&vm->irq_routing, vm->vm_fd), 0);
	t->vdev = &vm->virtio[0];
	assert_int_equal(virtio_device_create(t->vdev, vm, &model_ops,
					      &t->model, "blk0", SLOT),
			 0);
	vm->nvirtio = 1;
	return t;
}

static void tv_free(struct tv *t)
{
	virtio_device_destroy(t->vdev);
	irq_routing_destroy(&t->vm.irq_routing);
	pci_host_destroy(&t->vm.pci);
	bus_destroy(&t->vm.pio);
	bus_destroy(&t->vm.mmio);
	free(t->ram);
	free(t);
}

static int setup(void **state)
{
	fake_vm_reset();
	*state = tv_create();
	return 0;
}

static int teardown(void **state)
{
	tv_free(*state);
	return 0;
}

/* Config space through ports 0xcf8/0xcfc, as a guest reaches it. */
static uint32_t cfg_read(struct tv *t, unsigned off, unsigned len)
{
	uint32_t addr = 0x80000000u | SLOT << 11 | (off & 0xfc);
	uint8_t d[4] = { 0 };

	bus_dispatch(&t->vm.pio, PLATFORM_PORT_PCI_ADDR, (uint8_t *)&addr, 4,
		     true);
	bus_dispatch(&t->vm.pio, PLATFORM_PORT_PCI_DATA + (off & 3), d, len,
		     false);
	return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
	       (uint32_t)d[3] << 24;
}

static void cfg_write(struct tv *t, unsigned off, unsigned len, uint32_t v)
{
	uint32_t addr = 0x80000000u | SLOT << 11 | (off & 0xfc);

	bus_dispatch(&t->vm.pio, PLATFORM_PORT_PCI_ADDR, (uint8_t *)&addr, 4,
		     true);
	bus_dispatch(&t->vm.pio, PLATFORM_PORT_PCI_DATA + (off & 3),
		     (uint8_t *)&v, len, true);
}

/* Enables memory decode, so BAR 0 is mapped where creation put it. */
static void enable_bar(struct tv *t)
{
	t->bar = cfg_read(t, PCI_CFG_BAR0, 4) & ~0xfu;
	assert_int_not_equal(t->bar, 0);
	cfg_write(t, PCI_CFG_COMMAND, 2,
		  PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static uint64_t bar_read(struct tv *t, uint64_t off, unsigned len)
{
	uint64_t v = 0;

	assert_int_equal(
	    bus_dispatch(&t->vm.mmio, t->bar + off, (uint8_t *)&v, len, false),
	    0);
	return v;
}

static void bar_write(struct tv *t, uint64_t off, unsigned len, uint64_t v)
{
	assert_int_equal(
	    bus_dispatch(&t->vm.mmio, t->bar + off, (uint8_t *)&v, len, true),
	    0);
}

static uint8_t status(struct tv *t)
{
	return (uint8_t)bar_read(t, VIRTIO_PCI_COMMON_STATUS, 1);
}

static void set_status(struct tv *t, uint8_t s)
{
	bar_write(t, VIRTIO_PCI_COMMON_STATUS, 1, s);
}

static void write_features(struct tv *t, uint64_t f)
{
	bar_write(t, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	bar_write(t, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)f);
	bar_write(t, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	bar_write(t, VIRTIO_PCI_COMMON_GF, 4, f >> 32);
}

static uint64_t offered(void)
{
	return 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_RING_EVENT_IDX |
	       1ull << VIRTIO_F_RING_INDIRECT_DESC | 1ull << DEV_FEATURE_A |
	       1ull << DEV_FEATURE_B;
}

/* Queue @q at rings inside low RAM. */
static void setup_queue(struct tv *t, uint16_t q, uint16_t size, gpa_t base)
{
	bar_write(t, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	bar_write(t, VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
	bar_write(t, VIRTIO_PCI_COMMON_Q_DESCLO, 4, base);
	bar_write(t, VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0);
	bar_write(t, VIRTIO_PCI_COMMON_Q_AVAILLO, 8, base + 0x4000);
	bar_write(t, VIRTIO_PCI_COMMON_Q_USEDLO, 4, base + 0x5000);
	bar_write(t, VIRTIO_PCI_COMMON_Q_USEDHI, 4, 0);
}

/* The driver's init sequence (3.1.1) up to DRIVER_OK. */
static void driver_init(struct tv *t)
{
	enable_bar(t);
	set_status(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	write_features(t, 1ull << VIRTIO_F_VERSION_1 |
			      1ull << VIRTIO_F_RING_EVENT_IDX);
	set_status(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			  VIRTIO_STATUS_FEATURES_OK);
	assert_true(status(t) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(t, 0, 256, 0x10000);
	bar_write(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	set_status(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			  VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static uint64_t eventfd_count(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* Waits up to two seconds for *@p to reach @want. */
/* Waits (up to 2 s) for the count at @p to reach @want, then a little
 * longer: true when it is exactly @want, so a notification delivered twice
 * fails as surely as one never delivered. */
static bool wait_for(unsigned *p, unsigned want)
{
	for (int i = 0; i < 2000; i++) {
		if (__atomic_load_n(p, __ATOMIC_SEQ_CST) >= want) {
			usleep(20000);
			return __atomic_load_n(p, __ATOMIC_SEQ_CST) == want;
		}
		usleep(1000);
	}
	return false;
}

/* ------------------------------------------------ config space, caps -- */

static void test_pci_identity(void **state)
{
	struct tv *t = *state;

	assert_int_equal(cfg_read(t, PCI_CFG_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(cfg_read(t, PCI_CFG_DEVICE_ID, 2),
			 0x1040 + VIRTIO_ID_BLOCK);
	assert_int_equal(cfg_read(t, PCI_CFG_REVISION, 1), 1);
	assert_int_equal(cfg_read(t, PCI_CFG_SUBSYS_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(cfg_read(t, PCI_CFG_SUBSYS_ID, 2), VIRTIO_ID_BLOCK);
	assert_int_equal(cfg_read(t, PCI_CFG_CLASS_PROG + 2, 1), 0x01);
	assert_int_equal(cfg_read(t, PCI_CFG_INT_PIN, 1), 1);
	assert_int_equal(cfg_read(t, PCI_CFG_INT_LINE, 1), INTX_GSI);
	assert_true(cfg_read(t, PCI_CFG_STATUS, 2) & PCI_STATUS_CAP_LIST);
	/* One MSI GSI per vector, from 24 in creation order. */
	for (unsigned v = 0; v < NVEC; v++)
		assert_int_equal(t->vdev->gsi[v], IRQ_ROUTING_FIRST_MSI + v);
	assert_int_equal(t->vm.irq_routing.nmsi, NVEC);
	assert_int_equal(irq_routing_set_msi(&t->vm.irq_routing, 23, 0, 0),
			 -EINVAL);
	assert_int_equal(irq_routing_set_msi(&t->vm.irq_routing,
					     IRQ_ROUTING_FIRST_MSI + NVEC, 0,
					     0),
			 -EINVAL);
	/* BAR 0 sizes as VIRTIO_PCI_BAR_SIZE of 32-bit memory. */
	cfg_write(t, PCI_CFG_BAR0, 4, 0xffffffffu);
	assert_int_equal(cfg_read(t, PCI_CFG_BAR0, 4),
			 (uint32_t) ~(VIRTIO_PCI_BAR_SIZE - 1));
}

static void test_capabilities(void **state)
{
	struct tv *t = *state;
	unsigned seen = 0, ptr = cfg_read(t, PCI_CFG_CAP_PTR, 1), n = 0;
	bool msix = false;

	while (ptr && n++ < 16) {
		unsigned id = cfg_read(t, ptr, 1);

		assert_int_equal(ptr % 4, 0);
		if (id == PCI_CAP_ID_VNDR) {
			/* struct virtio_pci_cap (4.1.4) */
			unsigned len = cfg_read(t, ptr + 2, 1);
			unsigned type = cfg_read(t, ptr + 3, 1);
			uint32_t off = cfg_read(t, ptr + 8, 4);
			uint32_t length = cfg_read(t, ptr + 12, 4);

			assert_int_equal(cfg_read(t, ptr + 4, 1), 0); /* bar */
			assert_true(off + length <= VIRTIO_PCI_BAR_SIZE);
			switch (type) {
			case VIRTIO_PCI_CAP_COMMON_CFG:
				assert_int_equal(len, 16);
				assert_int_equal(off, VIRTIO_PCI_COMMON_OFF);
				assert_true(length >= 0x38);
				break;
			case VIRTIO_PCI_CAP_ISR_CFG:
				assert_int_equal(off, VIRTIO_PCI_ISR_OFF);
				assert_true(length >= 1);
				break;
			case VIRTIO_PCI_CAP_DEVICE_CFG:
				assert_int_equal(off, VIRTIO_PCI_DEVICE_OFF);
				assert_int_equal(length, CFG_LEN);
				break;
			case VIRTIO_PCI_CAP_NOTIFY_CFG:
				/* 4.1.4.4: + notify_off_multiplier */
				assert_int_equal(len, 20);
				assert_int_equal(cfg_read(t, ptr + 16, 4), 4);
				assert_int_equal(off, VIRTIO_PCI_NOTIFY_OFF);
				assert_true(length >= 4 * (NQ - 1) + 2);
				break;
			case VIRTIO_PCI_CAP_PCI_CFG:
				/* 4.1.4.9: + pci_cfg_data */
				assert_int_equal(len, 20);
				break;
			default:
				fail_msg("unexpected cfg_type %u", type);
			}
			assert_false(seen & (1u << type));
			seen |= 1u << type;
		} else if (id == PCI_CAP_ID_MSIX) {
			/* PCI 3.0, 6.8.2: table size - 1, table and PBA in
			 * BAR 0. */
			assert_int_equal(cfg_read(t, ptr + 2, 2), NVEC - 1);
			assert_int_equal(cfg_read(t, ptr + 4, 4),
					 VIRTIO_PCI_MSIX_TABLE_OFF);
			assert_int_equal(cfg_read(t, ptr + 8, 4),
					 VIRTIO_PCI_MSIX_PBA_OFF);
			msix = true;
		} else {
			fail_msg("unexpected capability %#x", id);
		}
		ptr = cfg_read(t, ptr + 1, 1);
	}
	assert_int_equal(seen, 1u << 1 | 1u << 2 | 1u << 3 | 1u << 4 | 1u << 5);
	assert_true(msix);
}

/* Config space offset of the PCI configuration access capability. */
static unsigned find_pcicfg_cap(struct tv *t)
{
	unsigned ptr = cfg_read(t, PCI_CFG_CAP_PTR, 1), n = 0;

	while (ptr && n++ < 16) {
		if (cfg_read(t, ptr, 1) == PCI_CAP_ID_VNDR &&
		    cfg_read(t, ptr + 3, 1) == VIRTIO_PCI_CAP_PCI_CFG)
			return ptr;
		ptr = cfg_read(t, ptr + 1, 1);
	}
	fail_msg("no VIRTIO_PCI_CAP_PCI_CFG capability");
	return 0;
}

/* 4.1.4.9: the window reaches BAR 0 without the BAR being mapped. */
static void test_pci_cfg_window(void **state)
{
	struct tv *t = *state;
	unsigned cap = find_pcicfg_cap(t);

	/* Write device_status (common cfg 0x14) through the window. */
	cfg_write(t, cap + 4, 1, 0);
	cfg_write(t, cap + 8, 4, VIRTIO_PCI_COMMON_OFF + 0x14);
	cfg_write(t, cap + 12, 4, 1);
	cfg_write(t, cap + 16, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	enable_bar(t);
	assert_int_equal(status(t), VIRTIO_STATUS_ACKNOWLEDGE);
	assert_int_equal(cfg_read(t, cap + 16, 1), VIRTIO_STATUS_ACKNOWLEDGE);

	/* A dword: device_feature_select = 1, then device_feature. */
	cfg_write(t, cap + 8, 4, VIRTIO_PCI_COMMON_OFF + 0x00);
	cfg_write(t, cap + 12, 4, 4);
	cfg_write(t, cap + 16, 4, 1);
	cfg_write(t, cap + 8, 4, VIRTIO_PCI_COMMON_OFF + 0x04);
	assert_int_equal(cfg_read(t, cap + 16, 4), (uint32_t)(offered() >> 32));

	/* A length the window cannot do, or a misaligned offset, is not
	 * passed on: the status stays. */
	cfg_write(t, cap + 8, 4, VIRTIO_PCI_COMMON_OFF + 0x14);
	cfg_write(t, cap + 12, 4, 3);
	cfg_write(t, cap + 16, 1, 0);
	assert_int_equal(status(t), VIRTIO_STATUS_ACKNOWLEDGE);
	cfg_write(t, cap + 8, 4, VIRTIO_PCI_COMMON_OFF + 0x15);
	cfg_write(t, cap + 12, 4, 2);
	cfg_write(t, cap + 16, 2, 0);
	assert_int_equal(status(t), VIRTIO_STATUS_ACKNOWLEDGE);
}

/* ---------------------------------------------------- common config -- */

static void test_common_layout(void **state)
{
	struct tv *t = *state;

	enable_bar(t);
	/* 4.1.4.3: device_feature_select 0x00, device_feature 0x04. */
	bar_write(t, 0x00, 4, 0);
	assert_int_equal(bar_read(t, 0x04, 4),
			 (uint32_t)offered() & 0xffffffffu);
	bar_write(t, 0x00, 4, 1);
	assert_int_equal(bar_read(t, 0x00, 4), 1);
	assert_int_equal(bar_read(t, 0x04, 4), offered() >> 32);
	bar_write(t, 0x00, 4, 2);
	assert_int_equal(bar_read(t, 0x04, 4), 0);
	/* driver_feature_select 0x08, driver_feature 0x0c. */
	bar_write(t, 0x08, 4, 0);
	bar_write(t, 0x0c, 4, 1u << DEV_FEATURE_A);
	assert_int_equal(bar_read(t, 0x0c, 4), 1u << DEV_FEATURE_A);
	/* config_msix_vector 0x10, num_queues 0x12. */
	assert_int_equal(bar_read(t, 0x10, 2), VIRTIO_MSI_NO_VECTOR);
	bar_write(t, 0x10, 2, 0);
	assert_int_equal(bar_read(t, 0x10, 2), 0);
	bar_write(t, 0x10, 2, NVEC); /* no such vector */
	assert_int_equal(bar_read(t, 0x10, 2), VIRTIO_MSI_NO_VECTOR);
	assert_int_equal(bar_read(t, 0x12, 2), NQ);
	/* device_status 0x14, config_generation 0x15. */
	assert_int_equal(bar_read(t, 0x14, 1), 0);
	assert_int_equal(bar_read(t, 0x15, 1), 0);
	virtio_device_config_changed(t->vdev);
	assert_int_equal(bar_read(t, 0x15, 1), 1);
	/* queue_select 0x16, queue_size 0x18, queue_msix_vector 0x1a,
	 * queue_enable 0x1c, queue_notify_off 0x1e. */
	bar_write(t, 0x16, 2, 1);
	assert_int_equal(bar_read(t, 0x16, 2), 1);
	assert_int_equal(bar_read(t, 0x18, 2), VIRTQ_MAX_SIZE);
	assert_int_equal(bar_read(t, 0x1a, 2), VIRTIO_MSI_NO_VECTOR);
	bar_write(t, 0x1a, 2, 2);
	assert_int_equal(bar_read(t, 0x1a, 2), 2);
	assert_int_equal(bar_read(t, 0x1c, 2), 0);
	assert_int_equal(bar_read(t, 0x1e, 2), 1);
	/* queue_desc 0x20, queue_driver 0x28, queue_device 0x30: 64 bits,
	 * written as two halves or at once. */
	bar_write(t, 0x20, 4, 0x12345000);
	bar_write(t, 0x24, 4, 0x1);
	assert_int_equal(bar_read(t, 0x20, 8), 0x112345000ull);
	assert_int_equal(bar_read(t, 0x24, 4), 1);
	bar_write(t, 0x28, 8, 0x2000);
	assert_int_equal(bar_read(t, 0x28, 4), 0x2000);
	bar_write(t, 0x30, 4, 0x3000);
	assert_int_equal(bar_read(t, 0x30, 8), 0x3000);
	assert_int_equal(t->vdev->vq[1].desc_gpa, 0x112345000ull);
	assert_int_equal(t->vdev->vq[1].used_gpa, 0x3000);
	/* A queue that does not exist reads size 0. */
	bar_write(t, 0x16, 2, NQ);
	assert_int_equal(bar_read(t, 0x18, 2), 0);
	/* Device config at its offset goes to the model. */
	memcpy(t->model.config, "ABCDEFGH", CFG_LEN);
	assert_int_equal(bar_read(t, VIRTIO_PCI_DEVICE_OFF + 4, 2),
			 'E' | 'F' << 8);
	bar_write(t, VIRTIO_PCI_DEVICE_OFF, 1, 'z');
	assert_int_equal(t->model.config[0], 'z');
}

static void test_features_ok(void **state)
{
	struct tv *t = *state;
	uint8_t base = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	enable_bar(t);
	set_status(t, base);
	/* Without VERSION_1: refused (FEATURES_OK reads back clear). */
	write_features(t, 1ull << DEV_FEATURE_A);
	set_status(t, base | VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(status(t), base);
	/* DRIVER_OK without FEATURES_OK is ignored too. */
	set_status(t, base | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(status(t), base);
	/* A bit we did not offer: refused. */
	write_features(t, 1ull << VIRTIO_F_VERSION_1 | 1ull << 7);
	set_status(t, base | VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(status(t), base);
	/* A subset of the offer with VERSION_1: accepted. */
	write_features(t, 1ull << VIRTIO_F_VERSION_1 | 1ull << DEV_FEATURE_B |
			      1ull << VIRTIO_F_RING_INDIRECT_DESC);
	set_status(t, base | VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(status(t), base | VIRTIO_STATUS_FEATURES_OK);
	assert_true(t->vdev->vq[0].indirect);
	assert_false(t->vdev->vq[0].event_idx);
	/* Features are frozen from now on (3.1.1). */
	write_features(t, offered());
	assert_int_equal(t->vdev->driver_features,
			 1ull << VIRTIO_F_VERSION_1 | 1ull << DEV_FEATURE_B |
			     1ull << VIRTIO_F_RING_INDIRECT_DESC);
	/* The driver cannot clear bits except by reset. */
	set_status(t, VIRTIO_STATUS_ACKNOWLEDGE);
	assert_int_equal(status(t), base | VIRTIO_STATUS_FEATURES_OK);
}

static void test_reset(void **state)
{
	struct tv *t = *state;

	driver_init(t);
	assert_int_equal(status(t) & VIRTIO_STATUS_DRIVER_OK,
			 VIRTIO_STATUS_DRIVER_OK);
	t->vdev->vq[0].last_avail = 7;
	t->vdev->vq[0].used_idx = 7;
	set_status(t, 0);
	assert_int_equal(status(t), 0);
	assert_int_equal(t->model.resets, 1);
	assert_int_equal(t->vdev->driver_features, 0);
	bar_write(t, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_SIZE, 2),
			 VIRTQ_MAX_SIZE);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
	assert_int_equal(t->vdev->vq[0].last_avail, 0);
	assert_int_equal(t->vdev->vq[0].used_idx, 0);
	assert_false(t->vdev->vq[0].event_idx);
	/* And the device can be brought up again. */
	driver_init(t);
	assert_true(t->vdev->vq[0].enabled);
}

static void test_queue_size_rules(void **state)
{
	struct tv *t = *state;
	static const uint16_t bad[] = { 0, 3, 100, 2048, 0xffff };

	enable_bar(t);
	bar_write(t, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bar_write(t, VIRTIO_PCI_COMMON_Q_SIZE, 2, bad[i]);
		assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_SIZE, 2),
				 VIRTQ_MAX_SIZE);
	}
	bar_write(t, VIRTIO_PCI_COMMON_Q_SIZE, 2, 64);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
	bar_write(t, VIRTIO_PCI_COMMON_Q_SIZE, 2, 1);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), 1);
	/* A 32-bit write to the 16-bit field is ignored (4.1.3.1). */
	bar_write(t, VIRTIO_PCI_COMMON_Q_SIZE, 4, 16);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), 1);

	/* Once enabled, size and addresses are frozen. */
	setup_queue(t, 0, 128, 0x20000);
	bar_write(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	bar_write(t, VIRTIO_PCI_COMMON_Q_SIZE, 2, 64);
	bar_write(t, VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x40000);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_SIZE, 2), 128);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0x20000);
	assert_false(status(t) & VIRTIO_STATUS_NEEDS_RESET);

	/* Rings outside RAM (the hole): not enabled, NEEDS_RESET. */
	setup_queue(t, 1, 128, 0xc0000000u);
	bar_write(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	assert_int_equal(bar_read(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	assert_true(status(t) & VIRTIO_STATUS_NEEDS_RESET);
}

/* ------------------------------------------------ interrupts, MSI-X -- */

static void test_msix_table(void **state)
{
	struct tv *t = *state;
	uint64_t e = VIRTIO_PCI_MSIX_TABLE_OFF + 16;

	enable_bar(t);
	/* Vectors start masked (PCI 3.0, 6.8.2.9). */
	for (unsigned v = 0; v < NVEC; v++)
		assert_int_equal(
		    bar_read(t, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * v + 12, 4), 1);
	bar_write(t, e, 4, 0xfee01000u);
	bar_write(t, e + 4, 4, 0);
	bar_write(t, e + 8, 4, 0x4041);
	bar_write(t, e + 12, 4, 0xfffffffeu); /* only bit 0 is writable */
	assert_int_equal(bar_read(t, e, 4), 0xfee01000u);
	assert_int_equal(bar_read(t, e + 8, 4), 0x4041);
	assert_int_equal(bar_read(t, e + 12, 4), 0);
	assert_int_equal(bar_read(t, e, 8), 0xfee01000u);
	/* Past the table's vectors: nothing. */
	bar_write(t, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * NVEC, 4, 0x1234);
	assert_int_equal(bar_read(t, VIRTIO_PCI_MSIX_TABLE_OFF + 16 * NVEC, 4),
			 0);
	/* Byte accesses are not table accesses. */
	bar_write(t, e + 8, 1, 0xff);
	assert_int_equal(bar_read(t, e + 8, 4), 0x4041);

	/* MSI-X on, config vector 1 (unmasked): a config change fires its
	 * eventfd and leaves INTx alone. */
	cfg_write(t, t->vdev->msix_cap + 2, 2, PCI_MSIX_CTRL_ENABLE);
	assert_true(t->vdev->msix_enabled);
	bar_write(t, VIRTIO_PCI_COMMON_MSIX, 2, 1);
	virtio_device_config_changed(t->vdev);
	assert_int_equal(eventfd_count(t->vdev->irq_fd[1]), 1);
	assert_int_equal(fake_irq_raises[INTX_GSI], 0);

	/* Masked vector 0: pending bit, delivered on unmask. */
	bar_write(t, VIRTIO_PCI_COMMON_MSIX, 2, 0);
	virtio_device_config_changed(t->vdev);
	assert_int_equal(eventfd_count(t->vdev->irq_fd[0]), 0);
	assert_int_equal(bar_read(t, VIRTIO_PCI_MSIX_PBA_OFF, 8), 1);
	bar_write(t, VIRTIO_PCI_MSIX_TABLE_OFF + 12, 4, 0);
	assert_int_equal(bar_read(t, VIRTIO_PCI_MSIX_PBA_OFF, 8), 0);
	assert_int_equal(eventfd_count(t->vdev->irq_fd[0]), 1);

	/* The function mask holds everything back the same way. */
	cfg_write(t, t->vdev->msix_cap + 2, 2,
		  PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_MASKALL);
	virtio_device_config_changed(t->vdev);
	assert_int_equal(eventfd_count(t->vdev->irq_fd[0]), 0);
	assert_int_equal(bar_read(t, VIRTIO_PCI_MSIX_PBA_OFF, 4), 1);
	cfg_write(t, t->vdev->msix_cap + 2, 2, PCI_MSIX_CTRL_ENABLE);
	assert_int_equal(eventfd_count(t->vdev->irq_fd[0]), 1);
	/* The PBA is read-only. */
	bar_write(t, VIRTIO_PCI_MSIX_PBA_OFF, 8, 0xff);
	assert_int_equal(bar_read(t, VIRTIO_PCI_MSIX_PBA_OFF, 8), 0);
}

static void test_intx(void **state)
{
	struct tv *t = *state;

	enable_bar(t);
	virtio_device_config_changed(t->vdev);
	assert_int_equal(fake_irq_level[INTX_GSI], 1);
	/* 4.1.4.5: reading the ISR returns and clears it, lowering INTx. */
	assert_int_equal(bar_read(t, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_ISR_CONFIG);
	assert_int_equal(fake_irq_level[INTX_GSI], 0);
	assert_int_equal(bar_read(t, VIRTIO_PCI_ISR_OFF, 1), 0);
	/* INTx disable in the command register keeps the line low. */
	cfg_write(t, PCI_CFG_COMMAND, 2,
		  PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE);
	virtio_device_config_changed(t->vdev);
	assert_int_equal(fake_irq_level[INTX_GSI], 0);
	cfg_write(t, PCI_CFG_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(fake_irq_level[INTX_GSI], 1);
	assert_int_equal(fake_irq_raises[INTX_GSI], 2);
}

/* ---------------------------------------------------- worker, park -- */

static void test_kick_worker_park(void **state)
{
	struct tv *t = *state;

	driver_init(t);
	assert_int_equal(virtio_device_start(t->vdev), 0);
	/* DRIVER_OK looks at every enabled queue once. */
	assert_true(wait_for(&t->model.notifies[0], 1));
	/* A kick at queue 0's notify address (no ioeventfd without KVM, so
	 * through the MMIO handler). */
	bar_write(t, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	assert_true(wait_for(&t->model.notifies[0], 2));
	/* Parked: kicks wait. */
	virtio_device_park(t->vdev);
	virtio_device_park(t->vdev); /* nested, as reset within a pause */
	bar_write(t, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	usleep(50000);
	assert_int_equal(t->model.notifies[0], 2);
	virtio_device_unpark(t->vdev);
	usleep(50000);
	assert_int_equal(t->model.notifies[0], 2);
	virtio_device_unpark(t->vdev);
	assert_true(wait_for(&t->model.notifies[0], 3));
	/* A disabled queue's kicks are dropped. */
	bar_write(t, VIRTIO_PCI_NOTIFY_OFF + 4, 2, 1);
	usleep(50000);
	assert_int_equal(t->model.notifies[1], 0);
}

/* Output a reader cannot take: the worker waits for room without
 * blocking (it still parks), tries again when there is room, and again
 * when a time limit is up even without room. */
static void test_wait_writable(void **state)
{
	struct tv *t = *state;
	static char junk[4096];
	int p[2];

	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	while (write(p[1], junk, sizeof(junk)) > 0)
		;
	driver_init(t);
	t->model.wait_fd = p[1];
	t->model.wait_ms = 0;
	t->model.wait_armed = true;
	assert_int_equal(virtio_device_start(t->vdev), 0);
	/* DRIVER_OK's look at queue 0 finds output that must wait. */
	assert_true(wait_for(&t->model.notifies[0], 1));
	usleep(100000);
	assert_int_equal(t->model.notifies[0], 1);
	/* Waiting, it parks at once. */
	virtio_device_park(t->vdev);
	virtio_device_unpark(t->vdev);
	/* Room: the model is called again. */
	assert_true(read(p[0], junk, sizeof(junk)) > 0);
	assert_true(wait_for(&t->model.notifies[0], 2));
	usleep(50000);
	assert_int_equal(t->model.notifies[0], 2);

	/* With a limit and no room: called again when the limit is up. */
	while (write(p[1], junk, sizeof(junk)) > 0)
		;
	t->model.wait_ms = 100;
	t->model.wait_armed = true;
	bar_write(t, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	assert_true(wait_for(&t->model.notifies[0], 3));
	assert_true(wait_for(&t->model.notifies[0], 4));
	close(p[0]);
	close(p[1]);
}

static void test_needs_reset(void **state)
{
	struct tv *t = *state;

	driver_init(t);
	t->model.notify_ret = -EIO;
	assert_int_equal(virtio_device_start(t->vdev), 0);
	assert_true(wait_for(&t->model.notifies[0], 1));
	for (int i = 0; i < 2000 && !(status(t) & VIRTIO_STATUS_NEEDS_RESET);
	     i++)
		usleep(1000);
	assert_true(status(t) & VIRTIO_STATUS_NEEDS_RESET);
	/* The config interrupt told the driver (INTx here). */
	assert_int_equal(fake_irq_level[INTX_GSI], 1);
	assert_int_equal(bar_read(t, VIRTIO_PCI_ISR_OFF, 1) & VIRTIO_ISR_CONFIG,
			 VIRTIO_ISR_CONFIG);
	/* No more processing until reset. */
	bar_write(t, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	usleep(50000);
	assert_int_equal(t->model.notifies[0], 1);
	/* Reset clears it; the device works again. */
	t->model.notify_ret = 0;
	set_status(t, 0);
	assert_int_equal(status(t), 0);
	driver_init(t);
	assert_true(wait_for(&t->model.notifies[0], 2));
}

/* -------------------------------------------------------- snapshot -- */

static void test_state_roundtrip(void **state)
{
	struct tv *t = *state, *t2;
	struct virtio_device *a = t->vdev, *b;
	size_t tl = state_encoded_size(&virtio_pci_state_desc);
	size_t pl = state_encoded_size(&pci_device_state_desc);
	uint8_t *tr = malloc(tl), *pci = malloc(pl);
	uint64_t e = VIRTIO_PCI_MSIX_TABLE_OFF + 16;
	char err[256];

	assert_non_null(tr);
	assert_non_null(pci);
	driver_init(t);
	setup_queue(t, 1, 64, 0x30000);
	bar_write(t, VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	bar_write(t, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	bar_write(t, e, 4, 0xfee00000u);
	bar_write(t, e + 8, 4, 0x31);
	bar_write(t, e + 12, 4, 0);
	cfg_write(t, a->msix_cap + 2, 2, PCI_MSIX_CTRL_ENABLE);
	a->vq[0].last_avail = 0xfffe;
	a->vq[0].used_idx = 0xfffd;
	a->vq[0].signalled_used = 0xfff0;
	a->vq[0].signalled_used_valid = true;
	a->vq[1].last_avail = 5;
	a->msix_pba = 1; /* vector 0 pending, masked */
	a->isr = VIRTIO_ISR_CONFIG;
	t->model.saved = 0xabcd;
	assert_int_equal(state_encode(&virtio_pci_state_desc, a, tr, tl), 0);
	assert_int_equal(state_encode(&pci_device_state_desc, &a->pci, pci, pl),
			 0);

	/* A fresh VM built the same way, as restore does. */
	t2 = tv_create();
	b = t2->vdev;
	assert_int_equal(state_decode(&virtio_pci_state_desc, 1, b, tr, tl), 0);
	assert_int_equal(
	    state_decode(&pci_device_state_desc, 1, &b->pci, pci, pl), 0);
	t2->model.saved = 0xabcd;
	assert_int_equal(virtio_device_post_load(b, err, sizeof(err)), 0);
	assert_int_equal(t2->model.post_loads, 1);

	assert_int_equal(b->status, a->status);
	assert_int_equal(b->driver_features, a->driver_features);
	assert_true(b->vq[0].event_idx);
	assert_true(b->msix_enabled);
	assert_int_equal(b->msix_pba, 1);
	for (unsigned q = 0; q < NQ; q++) {
		assert_int_equal(b->vq[q].size, a->vq[q].size);
		assert_int_equal(b->vq[q].enabled, a->vq[q].enabled);
		assert_int_equal(b->vq[q].msix_vector, a->vq[q].msix_vector);
		assert_int_equal(b->vq[q].desc_gpa, a->vq[q].desc_gpa);
		assert_int_equal(b->vq[q].avail_gpa, a->vq[q].avail_gpa);
		assert_int_equal(b->vq[q].used_gpa, a->vq[q].used_gpa);
		assert_int_equal(b->vq[q].last_avail, a->vq[q].last_avail);
		assert_int_equal(b->vq[q].used_idx, a->vq[q].used_idx);
		assert_int_equal(b->vq[q].signalled_used,
				 a->vq[q].signalled_used);
		assert_ptr_equal(b->vq[q].mem, &t2->vm.mem);
	}
	assert_memory_equal(b->msix_table, a->msix_table,
			    sizeof(a->msix_table));
	/* BAR 0 decodes again where the guest had it: registers answer. */
	t2->bar = t->bar;
	assert_int_equal(b->bar_addr, t->bar);
	assert_int_equal(status(t2), a->status);
	assert_int_equal(bar_read(t2, VIRTIO_PCI_COMMON_Q_SELECT, 2),
			 a->queue_select);
	/* INTx is not driven with MSI-X on; the ISR came back. */
	assert_int_equal(bar_read(t2, VIRTIO_PCI_ISR_OFF, 1),
			 VIRTIO_ISR_CONFIG);
	/* The live device's enabled queues get looked at once. */
	assert_int_equal(eventfd_count(b->kick_fd[0]), 1);
	assert_int_equal(eventfd_count(b->kick_fd[1]), 1);

	/* Validation: what the guest could not have written is refused. */
	b->vq[1].size = 3;
	assert_int_not_equal(virtio_pci_state_desc.validate(b), 0);
	b->vq[1].size = 64;
	b->vq[1].used_gpa = 0x30002; /* misaligned, enabled */
	assert_int_not_equal(virtio_pci_state_desc.validate(b), 0);
	b->vq[1].used_gpa = 0x35000;
	assert_int_equal(virtio_pci_state_desc.validate(b), 0);
	b->driver_features |= 1ull << 7; /* never offered */
	assert_int_not_equal(virtio_pci_state_desc.validate(b), 0);
	b->driver_features &= ~(1ull << 7);
	b->status |= 0x20;
	assert_int_not_equal(virtio_pci_state_desc.validate(b), 0);
	b->status &= (uint8_t)~0x20;
	b->msix_table[4 * NVEC] = 1; /* a vector the device lacks */
	assert_int_not_equal(virtio_pci_state_desc.validate(b), 0);
	b->msix_table[4 * NVEC] = 0;
	b->vq[NQ].size = 16; /* a queue the device lacks */
	assert_int_not_equal(virtio_pci_state_desc.validate(b), 0);
	b->vq[NQ].size = 0;
	assert_int_equal(virtio_pci_state_desc.validate(b), 0);
	/* A truncated stream fails. */
	assert_int_not_equal(
	    state_decode(&virtio_pci_state_desc, 1, b, tr, tl - 1), 0);

	tv_free(t2);
	free(tr);
	free(pci);
}

/* A device of an older shape (virtio-net before its control queue):
 * fewer queues, the MSI-X table and notification area that go with them
 * in config space, whose restored copy is checked against it, and a
 * state with a queue beyond them refused. */
static void test_set_queues(void **state)
{
	struct tv *t = *state;
	struct virtio_device *v = t->vdev;
	uint8_t *cfg = v->pci.config;

	assert_int_equal(virtio_device_set_queues(v, 0), -EINVAL);
	assert_int_equal(virtio_device_set_queues(v, NQ + 1), -EINVAL);
	assert_int_equal(cfg_read(t, v->msix_cap + 2, 2) & 0x7ff, NQ);
	assert_int_equal(virtio_device_set_queues(v, 1), 0);
	assert_int_equal(v->num_queues, 1);
	assert_int_equal(v->nvectors, 2);
	/* PCI 3.0 6.8.2.3: table size - 1; 4.1.4.4: notify length. */
	assert_int_equal(cfg_read(t, v->msix_cap + 2, 2) & 0x7ff, 1);
	assert_int_equal(cfg[v->notify_cap + 12], VIRTIO_PCI_NOTIFY_MULT);
	assert_int_equal(pci_device_state_desc.validate(&v->pci), 0);
	assert_int_equal(virtio_pci_state_desc.validate(v), 0);
	assert_int_equal(v->vq[1].size, 0);
	v->vq[1].size = 16;
	assert_int_equal(virtio_pci_state_desc.validate(v), -EINVAL);
	v->vq[1].size = 0;
	/* Back to the full shape. */
	assert_int_equal(virtio_device_set_queues(v, NQ), 0);
	assert_int_equal(cfg_read(t, v->msix_cap + 2, 2) & 0x7ff, NQ);
	assert_int_equal(cfg[v->notify_cap + 12], NQ * VIRTIO_PCI_NOTIFY_MULT);
	assert_int_equal(virtio_pci_state_desc.validate(v), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_pci_identity),
		T(test_capabilities),
		T(test_pci_cfg_window),
		T(test_common_layout),
		T(test_features_ok),
		T(test_reset),
		T(test_queue_size_rules),
		T(test_msix_table),
		T(test_intx),
		T(test_kick_worker_park),
		T(test_wait_writable),
		T(test_needs_reset),
		T(test_state_roundtrip),
		T(test_set_queues),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
