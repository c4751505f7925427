/* What a snapshot holds and in which order: CONFIG, CPUID, CLOCK, one VCPU
 * per vCPU, IRQCHIP, PIT, one DEVICE per device, MEMORY per region, END.
 * Restore checks that each appears as often as the VM needs. */
#include "snapshot/snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "core/kvm.h"
#include "core/le.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/text.h"
#include "core/timings.h"
#include "core/vm.h"
#include "cpu/cpuid.h"
#include "cpu/vcpu_state.h"
#include "core/clock.h"
#include "snapshot/mem_dirty.h"
#include "snapshot/mem_live.h"
#include "snapshot/pager.h"
#include "snapshot/sign.h"
#include "snapshot/state.h"
#include "snapshot/wset.h"

/* Largest payloads stasis accepts for the small records; memory records
 * are streamed and not bound by these. */
#define SNAPSHOT_CONFIG_MAX (64u << 10)
#define SNAPSHOT_RECORD_MAX (4u << 20)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* In-kernel interrupt controllers (struct kvm_pic_state and
 * struct kvm_ioapic_state; 8259A and 82093AA registers). */
#define PIC_FIELD(f) STATE_U8(struct kvm_pic_state, f, 1)
static const struct state_field snapshot_pic_fields[] = {
	PIC_FIELD(last_irr),
	PIC_FIELD(irr),
	PIC_FIELD(imr),
	PIC_FIELD(isr),
	PIC_FIELD(priority_add),
	PIC_FIELD(irq_base),
	PIC_FIELD(read_reg_select),
	PIC_FIELD(poll),
	PIC_FIELD(special_mask),
	PIC_FIELD(init_state),
	PIC_FIELD(auto_eoi),
	PIC_FIELD(rotate_on_auto_eoi),
	PIC_FIELD(special_fully_nested_mode),
	PIC_FIELD(init4),
	PIC_FIELD(elcr),
	PIC_FIELD(elcr_mask),
};

static const struct state_desc snapshot_pic_desc = {
	.name = "pic",
	.version = 1,
	.min_version = 1,
	.fields = snapshot_pic_fields,
	.nfields = STATE_NFIELDS(snapshot_pic_fields),
};

static int snapshot_ioapic_validate(const void *obj)
{
	const struct kvm_ioapic_state *s = obj;

	/* IOREGSEL selects a register; the window is 8 bits wide. */
	return s->ioregsel > 0xff ? -EINVAL : 0;
}

static const struct state_field snapshot_ioapic_fields[] = {
	STATE_U64(struct kvm_ioapic_state, base_address, 1),
	STATE_U32(struct kvm_ioapic_state, ioregsel, 1),
	STATE_U32(struct kvm_ioapic_state, id, 1),
	STATE_U32(struct kvm_ioapic_state, irr, 1),
	STATE_ARRAY_(struct kvm_ioapic_state, redirtbl, STATE_KIND_U64, 8, 1),
};

static const struct state_desc snapshot_ioapic_desc = {
	.name = "ioapic",
	.version = 1,
	.min_version = 1,
	.fields = snapshot_ioapic_fields,
	.nfields = STATE_NFIELDS(snapshot_ioapic_fields),
	.validate = snapshot_ioapic_validate,
};

/* struct kvm_pit_state2: three 8254 channels. */
#define PIT_CHANNEL_FIELDS(n)                                               \
	STATE_U32(struct kvm_pit_state2, channels[n].count, 1),             \
	    STATE_U16(struct kvm_pit_state2, channels[n].latched_count, 1), \
	    STATE_U8(struct kvm_pit_state2, channels[n].count_latched, 1),  \
	    STATE_U8(struct kvm_pit_state2, channels[n].status_latched, 1), \
	    STATE_U8(struct kvm_pit_state2, channels[n].status, 1),         \
	    STATE_U8(struct kvm_pit_state2, channels[n].read_state, 1),     \
	    STATE_U8(struct kvm_pit_state2, channels[n].write_state, 1),    \
	    STATE_U8(struct kvm_pit_state2, channels[n].write_latch, 1),    \
	    STATE_U8(struct kvm_pit_state2, channels[n].rw_mode, 1),        \
	    STATE_U8(struct kvm_pit_state2, channels[n].mode, 1),           \
	    STATE_U8(struct kvm_pit_state2, channels[n].bcd, 1),            \
	    STATE_U8(struct kvm_pit_state2, channels[n].gate, 1)

static int snapshot_pit_validate(const void *obj)
{
	const struct kvm_pit_state2 *p = obj;

	/* 8254 modes 0-5, or 0xff for a channel never programmed; KVM's
	 * access states (LSB, MSB, word 0, word 1) are 1-4. */
	for (int i = 0; i < 3; i++)
		if ((p->channels[i].mode > 5 && p->channels[i].mode != 0xff) ||
		    p->channels[i].rw_mode > 4 ||
		    p->channels[i].read_state > 4 ||
		    p->channels[i].write_state > 4)
			return -EINVAL;
	return 0;
}

static const struct state_field snapshot_pit_fields[] = {
	PIT_CHANNEL_FIELDS(0),
	PIT_CHANNEL_FIELDS(1),
	PIT_CHANNEL_FIELDS(2),
	STATE_U32(struct kvm_pit_state2, flags, 1),
};

static const struct state_desc snapshot_pit_desc = {
	.name = "pit",
	.version = 1,
	.min_version = 1,
	.fields = snapshot_pit_fields,
	.nfields = STATE_NFIELDS(snapshot_pit_fields),
	.validate = snapshot_pit_validate,
};

static const struct state_field snapshot_clock_fields[] = {
	STATE_U64(struct snapshot_clock, kvmclock_ns, 1),
	STATE_U32(struct snapshot_clock, kvmclock_flags, 1),
	STATE_U64(struct snapshot_clock, host_realtime_ns, 1),
};

static const struct state_desc snapshot_clock_desc = {
	.name = "clock",
	.version = 1,
	.min_version = 1,
	.fields = snapshot_clock_fields,
	.nfields = STATE_NFIELDS(snapshot_clock_fields),
};

/* The emulated devices, in the order their records are written. */
struct snapshot_device {
	const char *name;
	const struct state_desc *desc;
	size_t offset; /* of the device struct in struct vm */
	int (*post_load)(struct vm *vm);
	bool only_with_debug_exit;
	/* When set, the record is written only if this says so, and a file
	 * without it restores with the device as created (files from before
	 * the device existed, or a VM without it). */
	bool (*saved)(const struct vm *vm);
};

static int snapshot_uart_post_load(struct vm *vm)
{
	return uart_post_load(&vm->uart);
}

static int snapshot_rtc_post_load(struct vm *vm)
{
	return rtc_post_load(&vm->rtc);
}

static int snapshot_i8042_post_load(struct vm *vm)
{
	return i8042_post_load(&vm->i8042);
}

static int snapshot_pci_post_load(struct vm *vm)
{
	return pci_host_post_load(&vm->pci);
}

static int snapshot_acpi_pm_post_load(struct vm *vm)
{
	return acpi_pm_post_load(&vm->acpi_pm);
}

static int snapshot_debug_exit_post_load(struct vm *vm)
{
	return debug_exit_post_load(&vm->debug_exit);
}

static int snapshot_vmgenid_post_load(struct vm *vm)
{
	return vmgenid_post_load(&vm->vmgenid);
}

static bool snapshot_vmgenid_saved(const struct vm *vm)
{
	return vm->vmgenid.addr != 0;
}

static const struct snapshot_device snapshot_devices[] = {
	{ "uart", &uart_state_desc, offsetof(struct vm, uart),
	  snapshot_uart_post_load, false, NULL },
	{ "rtc", &rtc_state_desc, offsetof(struct vm, rtc),
	  snapshot_rtc_post_load, false, NULL },
	{ "i8042", &i8042_state_desc, offsetof(struct vm, i8042),
	  snapshot_i8042_post_load, false, NULL },
	{ "pci", &pci_host_state_desc, offsetof(struct vm, pci),
	  snapshot_pci_post_load, false, NULL },
	{ "acpi_pm", &acpi_pm_state_desc, offsetof(struct vm, acpi_pm),
	  snapshot_acpi_pm_post_load, false, NULL },
	{ "debug_exit", &debug_exit_state_desc, offsetof(struct vm, debug_exit),
	  snapshot_debug_exit_post_load, true, NULL },
	{ "vmgenid", &vmgenid_state_desc, offsetof(struct vm, vmgenid),
	  snapshot_vmgenid_post_load, false, snapshot_vmgenid_saved },
};

#define SNAPSHOT_NDEVICES \
	(sizeof(snapshot_devices) / sizeof(snapshot_devices[0]))

/* Sections of a DEVICE record. A virtio device's record holds its
 * transport in STATE, then its PCI config space and, when the device model
 * saves any, the model's state. */
enum {
	SNAPSHOT_DEV_NAME = 1,
	SNAPSHOT_DEV_STATE = 2,
	SNAPSHOT_DEV_PCI = 3,
	SNAPSHOT_DEV_MODEL = 4,
};
/* Sections of an IRQCHIP record. */
enum {
	SNAPSHOT_IRQ_PIC_MASTER = 1,
	SNAPSHOT_IRQ_PIC_SLAVE = 2,
	SNAPSHOT_IRQ_IOAPIC = 3
};

static bool snapshot_device_present(const struct vm *vm,
				    const struct snapshot_device *d)
{
	return !d->only_with_debug_exit || vm->cfg.debug_exit;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Writes a record built from sections in @b and frees @b. */
static int snapshot_put(struct snap_writer *w, uint32_t type,
			struct state_buf *b, int ret, char *err, size_t errlen)
{
	if (ret) {
		set_err(err, errlen, "cannot encode %s state: %s",
			snap_record_type_name(type), strerror(-ret));
	} else {
		ret = snap_write_record(w, type, 1, 0, b->data, b->len, err,
					errlen);
	}
	state_buf_free(b);
	return ret;
}

static int snapshot_save_vcpus(struct vm *vm, struct snap_writer *w, char *err,
			       size_t errlen)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu_state *st = calloc(1, sizeof(*st));
		struct state_buf b = { 0 };
		int ret;

		if (!st)
			return -ENOMEM;
		ret = vcpu_state_save(vm->vcpus[i].fd, vm->vm_fd, vm->msr_list,
				      vm->nmsrs, st);
		if (ret) {
			set_err(err, errlen, "vCPU %u: cannot read state: %s",
				i, strerror(-ret));
			free(st);
			return ret;
		}
		ret = vcpu_state_encode(st, &b);
		vcpu_state_free(st);
		free(st);
		ret = snapshot_put(w, SNAP_REC_VCPU, &b, ret, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

static int snapshot_save_platform(struct vm *vm, struct snap_writer *w,
				  char *err, size_t errlen)
{
	struct kvm_irqchip chip[3] = { { .chip_id = KVM_IRQCHIP_PIC_MASTER },
				       { .chip_id = KVM_IRQCHIP_PIC_SLAVE },
				       { .chip_id = KVM_IRQCHIP_IOAPIC } };
	struct kvm_pit_state2 pit;
	struct state_buf b = { 0 };
	int ret;

	for (int i = 0; i < 3; i++) {
		ret = kvm_ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip[i]);
		if (ret < 0) {
			set_err(err, errlen, "KVM_GET_IRQCHIP: %s",
				strerror(-ret));
			return ret;
		}
	}
	ret = state_buf_put_table(&b, SNAPSHOT_IRQ_PIC_MASTER,
				  &snapshot_pic_desc, &chip[0].chip.pic);
	if (!ret)
		ret =
		    state_buf_put_table(&b, SNAPSHOT_IRQ_PIC_SLAVE,
					&snapshot_pic_desc, &chip[1].chip.pic);
	if (!ret)
		ret = state_buf_put_table(&b, SNAPSHOT_IRQ_IOAPIC,
					  &snapshot_ioapic_desc,
					  &chip[2].chip.ioapic);
	ret = snapshot_put(w, SNAP_REC_IRQCHIP, &b, ret, err, errlen);
	if (ret)
		return ret;

	ret = kvm_ioctl(vm->vm_fd, KVM_GET_PIT2, &pit);
	if (ret < 0) {
		set_err(err, errlen, "KVM_GET_PIT2: %s", strerror(-ret));
		return ret;
	}
	ret = state_buf_put_table(&b, 1, &snapshot_pit_desc, &pit);
	ret = snapshot_put(w, SNAP_REC_PIT, &b, ret, err, errlen);
	if (ret)
		return ret;
	return 0;
}

/* kvmclock and the host's wall clock, read together so that restore can
 * tell how long the VM spent suspended. */
static int snapshot_save_clock(struct vm *vm, struct snap_writer *w, char *err,
			       size_t errlen)
{
	struct kvm_clock_data kclock = { 0 };
	struct snapshot_clock clock;
	struct state_buf b = { 0 };
	int ret;

	ret = kvm_ioctl(vm->vm_fd, KVM_GET_CLOCK, &kclock);
	if (ret < 0) {
		set_err(err, errlen, "KVM_GET_CLOCK: %s", strerror(-ret));
		return ret;
	}
	clock = (struct snapshot_clock){ .kvmclock_ns = kclock.clock,
					 .kvmclock_flags = kclock.flags,
					 .host_realtime_ns = realtime_ns() };
	ret = state_buf_put_table(&b, 1, &snapshot_clock_desc, &clock);
	return snapshot_put(w, SNAP_REC_CLOCK, &b, ret, err, errlen);
}

static int snapshot_save_devices(struct vm *vm, struct snap_writer *w,
				 char *err, size_t errlen)
{
	for (size_t i = 0; i < SNAPSHOT_NDEVICES; i++) {
		const struct snapshot_device *d = &snapshot_devices[i];
		struct state_buf b = { 0 };
		int ret;

		if (!snapshot_device_present(vm, d) ||
		    (d->saved && !d->saved(vm)))
			continue;
		ret = state_buf_put(&b, SNAPSHOT_DEV_NAME, 1, d->name,
				    strlen(d->name));
		if (!ret)
			ret =
			    state_buf_put_table(&b, SNAPSHOT_DEV_STATE, d->desc,
						(uint8_t *)vm + d->offset);
		ret = snapshot_put(w, SNAP_REC_DEVICE, &b, ret, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

/* Runs each virtio model's pre_save (the VM is paused, so every worker is
 * parked between requests). Before the vCPUs and interrupt controllers
 * are saved: a pre_save may complete requests (net delivers frames that
 * wait in its socket), and the interrupts that raises must be in the
 * saved LAPIC and IOAPIC state, not lost after it. */
static int snapshot_prepare_virtio(struct vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct virtio_device *vdev = &vm->virtio[i];
		int ret;

		if (!vdev->ops->pre_save)
			continue;
		ret = vdev->ops->pre_save(vdev);
		if (ret) {
			set_err(err, errlen,
				"device %s: cannot prepare its state: %s",
				vdev->name, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* One DEVICE record per virtio device, named as the device (blk0, net1). */
static int snapshot_save_virtio(struct vm *vm, struct snap_writer *w, char *err,
				size_t errlen)
{
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct virtio_device *vdev = &vm->virtio[i];
		const struct virtio_device_ops *ops = vdev->ops;
		struct state_buf b = { 0 };
		int ret = 0;

		ret = state_buf_put(&b, SNAPSHOT_DEV_NAME, 1, vdev->name,
				    strlen(vdev->name));
		if (!ret)
			ret = state_buf_put_table(&b, SNAPSHOT_DEV_STATE,
						  &virtio_pci_state_desc, vdev);
		if (!ret)
			ret = state_buf_put_table(&b, SNAPSHOT_DEV_PCI,
						  &pci_device_state_desc,
						  &vdev->pci);
		if (!ret && ops->state_desc)
			ret = state_buf_put_table(&b, SNAPSHOT_DEV_MODEL,
						  ops->state_desc, vdev->priv);
		ret = snapshot_put(w, SNAP_REC_DEVICE, &b, ret, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

void snapshot_header_init(struct vm *vm, struct snap_header *hdr)
{
	struct kvm_cpuid_entry2 *leaf0 = cpuid_find(vm->cpuid, 0, 0);

	memset(hdr, 0, sizeof(*hdr));
	hdr->format_version = SNAP_FORMAT_VERSION;
	hdr->page_size = (uint32_t)sysconf(_SC_PAGESIZE);
	snprintf(hdr->stasis_version, sizeof(hdr->stasis_version), "%s",
		 STASIS_VERSION);
	if (leaf0) {
		memcpy(hdr->cpu_vendor, &leaf0->ebx, 4);
		memcpy(hdr->cpu_vendor + 4, &leaf0->edx, 4);
		memcpy(hdr->cpu_vendor + 8, &leaf0->ecx, 4);
	}
	hdr->created_unix_ns = realtime_ns();
}

struct snap_writer *snapshot_begin(struct vm *vm,
				   const struct snapshot_dest *dest,
				   const struct snap_compress *compress,
				   const struct snap_lineage *lin,
				   uint64_t *created_ns, int *retp, char *err,
				   size_t errlen)
{
	struct snap_header hdr;
	struct snap_writer *w = NULL;
	uint8_t *cpuid = NULL, *lineage = NULL;
	size_t cpuid_len, lineage_len = 0;
	char *json;
	int ret;

	snapshot_header_init(vm, &hdr);
	*created_ns = hdr.created_unix_ns;

	json = config_to_json(&vm->cfg);
	ret = json ? cpuid_encode(vm->cpuid, &cpuid, &cpuid_len) : -ENOMEM;
	if (!ret)
		ret = snap_lineage_encode(lin, &lineage, &lineage_len);
	if (ret) {
		set_err(err, errlen, "snapshot: %s", strerror(-ret));
		goto out;
	}
	if (dest->sink)
		w = snap_writer_open_sink(dest->sink, dest->sink_ctx,
					  dest->path, &hdr, err, errlen);
	else
		w = snap_writer_open(dest->path, &hdr, err, errlen);
	if (!w) {
		ret = errno ? -errno : -EIO;
		goto out;
	}
	if (compress && snap_writer_set_compress(w, compress, 0)) {
		set_err(err, errlen, "snapshot: unknown compression");
		ret = -EINVAL;
		goto abort;
	}
	ret = snap_write_record(w, SNAP_REC_CONFIG, 1, 0, json, strlen(json),
				err, errlen);
	/* Optional: an older stasis restores a full file without it, and
	 * refuses a layer at its first chunk held by the parent. */
	if (!ret)
		ret = snap_write_record(w, SNAP_REC_LINEAGE,
					SNAP_LINEAGE_VERSION, SNAP_REC_OPTIONAL,
					lineage, lineage_len, err, errlen);
	if (!ret)
		ret = snap_write_record(w, SNAP_REC_CPUID, 1, 0, cpuid,
					cpuid_len, err, errlen);
abort:
	if (ret) {
		snap_writer_abort(w);
		w = NULL;
	}
out:
	free(json);
	free(cpuid);
	free(lineage);
	*retp = ret;
	return w;
}

int snapshot_write_state(struct vm *vm, struct snap_writer *w, char *err,
			 size_t errlen)
{
	int ret = snapshot_prepare_virtio(vm, err, errlen);

	if (!ret)
		ret = snapshot_save_clock(vm, w, err, errlen);
	if (!ret)
		ret = snapshot_save_vcpus(vm, w, err, errlen);
	if (!ret)
		ret = snapshot_save_platform(vm, w, err, errlen);
	if (!ret)
		ret = snapshot_save_devices(vm, w, err, errlen);
	if (!ret)
		ret = snapshot_save_virtio(vm, w, err, errlen);
	return ret;
}

int snapshot_finish(struct vm *vm, struct snap_writer *w, const char *path,
		    int ret, bool sign, uint64_t *identity, char *err,
		    size_t errlen)
{
	if (!ret && sign && vm->cfg.sign_key)
		ret = snap_sign(w, vm->cfg.sign_key, err, errlen);
	/* A stream to a sink has no file to read back. */
	if (!ret && identity &&
	    (ret = snap_file_identity(snap_writer_fd(w), snap_writer_offset(w),
				      identity)))
		set_err(err, errlen, "snapshot: cannot read back %s: %s", path,
			strerror(-ret));
	if (ret) {
		snap_writer_abort(w);
		return ret;
	}
	return snap_writer_commit(w, err, errlen);
}

int snapshot_save(struct vm *vm, const char *path, const char *base,
		  const struct snap_compress *compress,
		  struct snap_progress *progress, char *err, size_t errlen)
{
	const struct snapshot_dest dest = { .path = path };
	struct mem_dirty_save dirty;
	uint64_t identity = 0, created_ns = 0;
	struct snap_writer *w;
	int ret;

	/* A lazily restored VM's memory is written whole: first every chunk
	 * still in the old file is brought in. */
	if (vm->pager) {
		ret = pager_wait(vm->pager, err, errlen);
		if (ret)
			return ret;
	}
	/* Which memory goes in (all, or what was written since @base); the
	 * dirty log is collected once the device state is written, for this
	 * layer and as the next one's start. */
	ret = mem_dirty_prepare(vm, path, base, &dirty, err, errlen);
	if (ret)
		return ret;
	w = snapshot_begin(vm, &dest, compress, &dirty.lin, &created_ns, &ret,
			   err, errlen);
	if (w) {
		ret = snapshot_write_state(vm, w, err, errlen);
		if (!ret)
			ret = mem_dirty_collect(vm, &dirty, err, errlen);
		if (!ret)
			ret = mem_dirty_write(vm, w, &dirty, progress, err,
					      errlen);
		ret = snapshot_finish(vm, w, path, ret, true, &identity, err,
				      errlen);
	}
	mem_dirty_finish(vm, &dirty, ret == 0, path, identity, created_ns);
	return ret;
}

/* Disks stay as they were at the instant while a live save runs: the
 * snapshot does not hold them, so a write the guest makes meanwhile would
 * leave the file's memory and the disk out of step. Their workers stay
 * parked (a nested park) through the resume; the guest's requests wait
 * in its queues. */
static void snapshot_park_disks(struct vm *vm, bool park)
{
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		if (vm->virtio[i].ops->device_id != VIRTIO_ID_BLOCK)
			continue;
		if (park)
			virtio_device_park(&vm->virtio[i]);
		else
			virtio_device_unpark(&vm->virtio[i]);
	}
}

void snapshot_release_disks(struct vm *vm)
{
	snapshot_park_disks(vm, false);
}

int snapshot_save_live(struct vm *vm, const char *path,
		       const struct snap_compress *compress, bool hold_disks,
		       struct snapshot_live_stats *st,
		       struct snap_progress *progress, char *err, size_t errlen)
{
	const struct snapshot_dest dest = { .path = path };
	struct mem_live_stats lst = { 0 };
	uint64_t identity = 0, created_ns = 0;
	struct mem_dirty_save dirty;
	struct snap_mem_source src;
	struct mem_live *l = NULL;
	struct snap_writer *w;
	bool disks = false;
	uint64_t tp, t0, t1, t2, t3, tm, rearmed = 0;
	int ret;

	memset(st, 0, sizeof(*st));
	/* A lazily restored VM first finishes its fill, the guest running:
	 * its memory must be the memfd's alone before it can be tracked. */
	if (vm->pager) {
		ret = pager_wait(vm->pager, err, errlen);
		if (ret)
			return ret;
	}
	/* A live file is a full one, and the next increment may build on
	 * it. The log is collected now, before the instant: pages written
	 * from here to the pause are then both in this file and in the next
	 * increment, which is more than needed and never less. */
	ret = mem_dirty_prepare(vm, path, NULL, &dirty, err, errlen);
	if (!ret)
		ret = mem_dirty_collect(vm, &dirty, err, errlen);
	if (ret)
		return ret;
	ret = mem_live_start(&l, &vm->mem, 0, vm->cfg.seccomp, err, errlen);
	if (ret) {
		mem_dirty_finish(vm, &dirty, false, path, 0, 0);
		return ret;
	}
	w = snapshot_begin(vm, &dest, compress, &dirty.lin, &created_ns, &ret,
			   err, errlen);
	if (!w)
		goto stop;
	/* Most of the protection while the guest runs: the pause then
	 * protects only what was written since. */
	tp = clock_now_ns(CLOCK_MONOTONIC);
	ret = mem_live_prearm(l, err, errlen);
	tp = clock_now_ns(CLOCK_MONOTONIC) - tp;
	if (ret) {
		snap_writer_abort(w);
		goto stop;
	}

	/* The pause: state and the last of the protection, nothing more. */
	t0 = clock_now_ns(CLOCK_MONOTONIC);
	ret = vm_pause(vm);
	if (ret) {
		set_err(err, errlen, "cannot pause the VM: %s", strerror(-ret));
		snap_writer_abort(w);
		goto stop;
	}
	t1 = clock_now_ns(CLOCK_MONOTONIC);
	ret = snapshot_write_state(vm, w, err, errlen);
	t2 = clock_now_ns(CLOCK_MONOTONIC);
	if (!ret)
		ret = mem_live_arm(l, &rearmed, err, errlen);
	t3 = clock_now_ns(CLOCK_MONOTONIC);
	if (!ret) {
		snapshot_park_disks(vm, true);
		disks = true;
	}
	/* Up to the resume call: once it wakes the vCPUs the guest runs,
	 * whenever this thread gets the CPU back. */
	st->pause_ns = clock_now_ns(CLOCK_MONOTONIC) - t0;
	vm_resume(vm);
	log_debug("live snapshot: pause %" PRIu64 " us: vCPUs and workers "
		  "parked %" PRIu64 ", state %" PRIu64
		  ", write-protect %" PRIu64 " (%" PRIu64 " pages)",
		  st->pause_ns / 1000, (t1 - t0) / 1000, (t2 - t1) / 1000,
		  (t3 - t2) / 1000, rearmed);
	st->resumed = true;

	tm = clock_now_ns(CLOCK_MONOTONIC);
	if (!ret) {
		mem_live_source(l, &src);
		ret = snap_write_memory_from(w, &vm->mem, &src, progress, err,
					     errlen);
		if (ret && mem_live_error(l))
			set_err(err, errlen, "%s", mem_live_error(l));
	}
	log_debug("live snapshot: protected ahead in %" PRIu64
		  " ms, memory written in %" PRIu64 " ms",
		  tp / 1000000, (clock_now_ns(CLOCK_MONOTONIC) - tm) / 1000000);
	mem_live_stop(l, &lst);
	l = NULL;
	ret = snapshot_finish(vm, w, path, ret, true, &identity, err, errlen);
	if (disks && (ret || !hold_disks))
		snapshot_park_disks(vm, false);
stop:
	mem_live_stop(l, l ? &lst : NULL);
	st->faults = lst.faults;
	st->copied_pages = lst.copied_pages;
	st->waits = lst.waits;
	st->copy_peak_bytes = lst.copy_peak_bytes;
	st->extra_bytes = lst.extra_bytes;
	mem_dirty_finish(vm, &dirty, ret == 0, path, identity, created_ns);
	return ret;
}

int snapshot_record_rank(uint32_t type)
{
	static const uint32_t order[] = {
		SNAP_REC_CONFIG,    SNAP_REC_LINEAGE, SNAP_REC_CPUID,
		SNAP_REC_CLOCK,	    SNAP_REC_VCPU,    SNAP_REC_IRQCHIP,
		SNAP_REC_PIT,	    SNAP_REC_DEVICE,  SNAP_REC_MEMORY,
		SNAP_REC_SIGNATURE, SNAP_REC_END,
	};

	for (int i = 0; i < (int)(sizeof(order) / sizeof(order[0])); i++)
		if (order[i] == type)
			return i;
	return -1;
}

/* Reads the next record, which must be of @type. */
static int snapshot_expect(struct snap_reader *r, uint32_t type,
			   struct snap_record *rec, char *err, size_t errlen)
{
	int ret = snap_reader_next(r, rec, err, errlen);

	if (ret < 0)
		return ret;
	if (ret == 0 || rec->type != type) {
		set_err(err, errlen, "snapshot: expected a %s record, found %s",
			snap_record_type_name(type),
			ret == 0 ? "the end"
				 : snap_record_type_name(rec->type));
		return -EINVAL;
	}
	return 0;
}

/* The file's own identity and absolute path (what the restored VM's next
 * increment names as its parent) and, for a layer, every ancestor opened
 * and checked: all before any VM exists. */
static int snapshot_open_chain(const char *path, struct snapshot_image *img,
			       char *err, size_t errlen)
{
	int ret;

	/* Absolute from here on: a layer names its parent by this path. */
	free(img->path);
	img->path = realpath(path, NULL);
	if (!img->path && errno == ENOENT && snap_reader_fd(img->r) >= 0) {
		/* Open, yet without a name to resolve: a memfd's
		 * /proc/self/fd/N, which only a full file can be. */
		img->path = strdup(path);
		img->unnamed = true;
	}
	if (!img->path) {
		set_err(err, errlen, "snapshot: %s", strerror(errno));
		return -errno;
	}
	ret = snap_file_identity(snap_reader_fd(img->r), 0, &img->identity);
	if (ret == -ENODATA) {
		set_err(err, errlen,
			"snapshot: truncated: a record runs past the end of "
			"the file");
		return -EINVAL;
	}
	if (ret) {
		set_err(err, errlen, "snapshot: cannot read: %s",
			strerror(-ret));
		return ret;
	}
	if (!img->lineage.depth)
		return 0;
	if (img->unnamed) {
		set_err(err, errlen,
			"snapshot: a layer must be a named file (its parent is "
			"found by path)");
		return -EINVAL;
	}
	img->chain = calloc(1, sizeof(*img->chain));
	if (!img->chain)
		return -ENOMEM;
	ret = snap_chain_open(img->chain, img->path, snap_reader_fd(img->r),
			      &img->lineage, img->cfg.mem_size, err, errlen);
	if (ret) {
		free(img->chain);
		img->chain = NULL;
		return ret;
	}
	snap_reader_set_layer(img->r, true);
	return 0;
}

int snapshot_open(const char *path, struct snapshot_image *img, char *err,
		  size_t errlen)
{
	const struct snap_header *hdr;
	struct snap_record rec;
	char msg[256];
	void *data = NULL;
	long page = sysconf(_SC_PAGESIZE);
	int ret;

	memset(img, 0, sizeof(*img));
	config_init(&img->cfg);
	img->prefetch = true;
	img->path = strdup(path);
	if (!img->path) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	img->r = snap_reader_open(path, err, errlen);
	if (!img->r) {
		ret = -EINVAL;
		goto fail;
	}
	hdr = snap_reader_header(img->r);
	if (hdr->page_size != (uint32_t)page) {
		set_err(err, errlen,
			"snapshot: page size %u differs from this host's %ld",
			hdr->page_size, page);
		ret = -ENOTSUP;
		goto fail;
	}

	ret = snapshot_expect(img->r, SNAP_REC_CONFIG, &rec, err, errlen);
	if (ret)
		goto fail;
	if (rec.version != 1) {
		set_err(err, errlen, "snapshot: CONFIG version %u unknown",
			rec.version);
		ret = -EINVAL;
		goto fail;
	}
	ret = snap_read_payload(img->r, &rec, SNAPSHOT_CONFIG_MAX, &data, err,
				errlen);
	if (ret)
		goto fail;
	/* JSON text: NUL-terminate a copy before parsing it. */
	{
		char *text = malloc(rec.length + 1);

		if (!text) {
			ret = -ENOMEM;
			goto fail;
		}
		memcpy(text, data, rec.length);
		text[rec.length] = '\0';
		ret = strlen(text) == rec.length
			  ? config_load_json(&img->cfg, text, msg, sizeof(msg))
			  : -EINVAL;
		free(text);
	}
	free(data);
	data = NULL;
	/* Host-side options are the restoring command line's: a snapshot
	 * never names a key file (or makes restore read one). */
	free(img->cfg.sign_key_path);
	img->cfg.sign_key_path = NULL;
	if (!ret)
		ret = config_validate(&img->cfg, msg, sizeof(msg));
	if (ret) {
		set_err(err, errlen, "snapshot: bad configuration: %s", msg);
		goto fail;
	}

	/* Host policy, like the key: never taken from a file. */
	img->cfg.track_dirty = false;

	ret = snap_reader_next(img->r, &rec, err, errlen);
	if (ret == 1 && rec.type == SNAP_REC_LINEAGE) {
		ret = snap_read_payload(img->r, &rec, SNAP_LINEAGE_PAYLOAD_MAX,
					&data, err, errlen);
		if (ret)
			goto fail;
		ret = rec.version == SNAP_LINEAGE_VERSION
			  ? snap_lineage_decode(data, rec.length, &img->lineage)
			  : -EINVAL;
		free(data);
		data = NULL;
		if (ret) {
			set_err(err, errlen,
				"snapshot: malformed LINEAGE record");
			goto fail;
		}
		ret = snap_reader_next(img->r, &rec, err, errlen);
	}
	if (ret < 0)
		goto fail;
	if (ret == 0 || rec.type != SNAP_REC_CPUID) {
		set_err(err, errlen,
			"snapshot: expected a CPUID record, found %s",
			ret == 0 ? "the end" : snap_record_type_name(rec.type));
		ret = -EINVAL;
		goto fail;
	}
	ret = snap_read_payload(img->r, &rec, SNAPSHOT_RECORD_MAX, &data, err,
				errlen);
	if (ret)
		goto fail;
	ret = rec.version == 1 ? cpuid_decode(data, rec.length, &img->cpuid)
			       : -EINVAL;
	free(data);
	if (ret) {
		set_err(err, errlen, "snapshot: malformed CPUID record");
		goto fail;
	}
	ret = snapshot_open_chain(path, img, err, errlen);
	if (ret)
		goto fail;
	return 0;
fail:
	snapshot_close(img);
	return ret;
}

void snapshot_close(struct snapshot_image *img)
{
	if (img->chain) {
		snap_chain_close(img->chain);
		free(img->chain);
	}
	free(img->path);
	if (img->r)
		snap_reader_close(img->r);
	free(img->cpuid);
	config_free(&img->cfg);
	memset(img, 0, sizeof(*img));
}

static int snapshot_load_irqchip(struct vm *vm, const uint8_t *data, size_t len)
{
	struct state_cursor c = { .data = data, .len = len };
	struct kvm_irqchip chip;
	struct state_section s;
	unsigned seen = 0;
	int ret;

	while ((ret = state_cursor_next(&c, &s)) == 1) {
		memset(&chip, 0, sizeof(chip));
		switch (s.tag) {
		case SNAPSHOT_IRQ_PIC_MASTER:
		case SNAPSHOT_IRQ_PIC_SLAVE:
			chip.chip_id = s.tag == SNAPSHOT_IRQ_PIC_MASTER
					   ? KVM_IRQCHIP_PIC_MASTER
					   : KVM_IRQCHIP_PIC_SLAVE;
			ret = state_section_decode(&snapshot_pic_desc, &s,
						   &chip.chip.pic);
			break;
		case SNAPSHOT_IRQ_IOAPIC:
			chip.chip_id = KVM_IRQCHIP_IOAPIC;
			ret = state_section_decode(&snapshot_ioapic_desc, &s,
						   &chip.chip.ioapic);
			break;
		default:
			return -EINVAL;
		}
		if (ret || (seen & (1u << s.tag)))
			return -EINVAL;
		seen |= 1u << s.tag;
		ret = kvm_ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip);
		if (ret < 0)
			return ret;
	}
	return ret < 0 ? ret : (seen == 0xe ? 0 : -EINVAL);
}

/* Decodes a record made of exactly one section of @d into @obj. */
static int snapshot_load_single(const struct state_desc *d, const void *data,
				size_t len, void *obj)
{
	struct state_cursor c = { .data = data, .len = len };
	struct state_section s;
	int ret = state_cursor_next(&c, &s);

	if (ret != 1 || s.tag != 1)
		return -EINVAL;
	ret = state_section_decode(d, &s, obj);
	if (ret)
		return ret;
	return state_cursor_next(&c, &s) == 0 ? 0 : -EINVAL;
}

static void snapshot_decode_error(const char *dev, const struct state_desc *d,
				  const struct state_section *s, int ret,
				  char *err, size_t errlen)
{
	if (ret == -EPROTO)
		set_err(err, errlen,
			"snapshot: device %s %s state version %u not readable "
			"(this stasis reads %u..%u)",
			dev, d->name, s->version, d->min_version, d->version);
	else
		set_err(err, errlen, "snapshot: device %s: invalid %s state",
			dev, d->name);
}

/* A virtio device's record (after its NAME section): transport, PCI
 * config, and the model's state exactly when the model saves one. The
 * device is freshly created and its worker not started, so decoding in
 * place is safe: a failure abandons the restore. */
static int snapshot_load_virtio(struct virtio_device *vdev,
				struct state_cursor *c, char *err,
				size_t errlen)
{
	const struct state_desc *model = vdev->ops->state_desc;
	struct state_section tr, pci, st, extra;
	int ret;

	if (state_cursor_next(c, &tr) != 1 || tr.tag != SNAPSHOT_DEV_STATE ||
	    state_cursor_next(c, &pci) != 1 || pci.tag != SNAPSHOT_DEV_PCI) {
		set_err(err, errlen, "snapshot: malformed DEVICE record %s",
			vdev->name);
		return -EINVAL;
	}
	/* The model's section when the model saves state, then the end. No
	 * section reads as version 0 of the model's table, the one before it
	 * had any fields: accepted when the table still reads version 0 (a
	 * model that gained state later; its state stays as created). */
	ret = state_cursor_next(c, &st);
	if (model && ret == 1 && st.tag == SNAPSHOT_DEV_MODEL)
		ret = state_cursor_next(c, &extra) == 0 ? 0 : -EINVAL;
	else if (ret == 0 && (!model || model->min_version == 0))
		model = NULL;
	else
		ret = -EINVAL;
	if (ret) {
		set_err(err, errlen,
			"snapshot: device %s: sections do not match its model",
			vdev->name);
		return -EINVAL;
	}
	/* The model first: its state may decide the device's shape (how
	 * many queues), which the transport's table is checked against. */
	if (model) {
		ret = state_section_decode(model, &st, vdev->priv);
		if (ret) {
			snapshot_decode_error(vdev->name, model, &st, ret, err,
					      errlen);
			return ret;
		}
	}
	if (vdev->ops->load_layout) {
		ret = vdev->ops->load_layout(vdev, model ? st.version : 0);
		if (ret) {
			set_err(err, errlen,
				"snapshot: device %s: its saved shape does not "
				"fit this %s device",
				vdev->name, vdev->ops->kind);
			return ret;
		}
	}
	ret = state_section_decode(&virtio_pci_state_desc, &tr, vdev);
	if (ret) {
		snapshot_decode_error(vdev->name, &virtio_pci_state_desc, &tr,
				      ret, err, errlen);
		return ret;
	}
	ret = state_section_decode(&pci_device_state_desc, &pci, &vdev->pci);
	if (ret) {
		snapshot_decode_error(vdev->name, &pci_device_state_desc, &pci,
				      ret, err, errlen);
		return ret;
	}
	return 0;
}

static int snapshot_load_device(struct vm *vm, const uint8_t *data, size_t len,
				bool *done, bool *virtio_done, char *err,
				size_t errlen)
{
	struct state_cursor c = { .data = data, .len = len };
	const struct snapshot_device *d = NULL;
	struct state_section name, st;
	int ret;

	if (state_cursor_next(&c, &name) == 1 &&
	    name.tag == SNAPSHOT_DEV_NAME) {
		for (unsigned i = 0; i < vm->nvirtio; i++) {
			const char *n = vm->virtio[i].name;

			if (strlen(n) != name.len ||
			    memcmp(n, name.payload, name.len))
				continue;
			if (virtio_done[i]) {
				set_err(err, errlen,
					"snapshot: device %s twice", n);
				return -EINVAL;
			}
			virtio_done[i] = true;
			return snapshot_load_virtio(&vm->virtio[i], &c, err,
						    errlen);
		}
	}
	c.pos = 0;
	if (state_cursor_next(&c, &name) != 1 ||
	    name.tag != SNAPSHOT_DEV_NAME || state_cursor_next(&c, &st) != 1 ||
	    st.tag != SNAPSHOT_DEV_STATE || state_cursor_next(&c, &st) != 0) {
		set_err(err, errlen, "snapshot: malformed DEVICE record");
		return -EINVAL;
	}
	c.pos = 0;
	state_cursor_next(&c, &name);
	state_cursor_next(&c, &st);
	for (size_t i = 0; i < SNAPSHOT_NDEVICES; i++) {
		const char *n = snapshot_devices[i].name;

		if (strlen(n) == name.len &&
		    !memcmp(n, name.payload, name.len)) {
			d = &snapshot_devices[i];
			if (done[i] || !snapshot_device_present(vm, d)) {
				set_err(err, errlen,
					"snapshot: unexpected device %s", n);
				return -EINVAL;
			}
			done[i] = true;
			break;
		}
	}
	if (!d) {
		char q[48];

		set_err(err, errlen, "snapshot: unknown device '%s'",
			text_escape(q, sizeof(q), (const char *)name.payload,
				    name.len > 32 ? 32 : name.len));
		return -EINVAL;
	}
	/* The device is freshly created and not running yet: a failure here
	 * abandons the whole restore, so decoding in place is safe. */
	ret = state_section_decode(d->desc, &st, (uint8_t *)vm + d->offset);
	if (ret == -EPROTO)
		set_err(err, errlen,
			"snapshot: device %s state version %u not readable "
			"(this stasis reads %u..%u)",
			d->name, st.version, d->desc->min_version,
			d->desc->version);
	else if (ret)
		set_err(err, errlen, "snapshot: device %s: invalid state",
			d->name);
	return ret;
}

/* Applies the clock policy to the vCPU's TSC, before it is written. */
static void snapshot_advance_tsc(struct vcpu_state *st, uint64_t elapsed_ns)
{
	struct kvm_msr_entry *tsc = vcpu_state_msr(st, MSR_IA32_TSC);

	if (tsc && st->tsc_khz)
		tsc->data += elapsed_ns / 1000 * st->tsc_khz / 1000;
}

static int snapshot_load_vcpu(struct vm *vm, unsigned id, const uint8_t *data,
			      size_t len, uint64_t elapsed_ns, char *err,
			      size_t errlen)
{
	struct vcpu_state *st = calloc(1, sizeof(*st));
	char msg[200];
	int ret;

	if (!st)
		return -ENOMEM;
	ret = vcpu_state_decode(data, len, st, msg, sizeof(msg));
	if (ret) {
		set_err(err, errlen, "snapshot: vCPU %u: %s", id, msg);
		free(st);
		return ret;
	}
	if (st->tsc_khz) {
		int khz = ioctl(vm->vcpus[id].fd, KVM_GET_TSC_KHZ, 0);

		/* A different TSC rate needs TSC scaling in the host. */
		if (khz > 0 && (uint32_t)khz != st->tsc_khz &&
		    kvm_ioctl(vm->vcpus[id].fd, KVM_SET_TSC_KHZ,
			      (void *)(unsigned long)st->tsc_khz) < 0) {
			set_err(err, errlen,
				"snapshot: guest TSC runs at %u kHz, this host "
				"at %d kHz and cannot scale it",
				st->tsc_khz, khz);
			vcpu_state_free(st);
			free(st);
			return -ENOTSUP;
		}
	}
	snapshot_advance_tsc(st, elapsed_ns);
	ret = vcpu_state_restore(vm->vcpus[id].fd, st, msg, sizeof(msg));
	if (ret)
		set_err(err, errlen, "snapshot: vCPU %u: %s", id, msg);
	vcpu_state_free(st);
	free(st);
	return ret;
}

/* kvmclock resumes where it was, plus the suspended time under
 * CLOCK_ADVANCE; under CLOCK_FROZEN the RTC is moved back by that time too,
 * so every clock the guest has reads as if no time had passed. */
static int snapshot_apply_clock(struct vm *vm, const struct snapshot_clock *c,
				enum clock_policy policy, uint64_t elapsed_ns,
				char *err, size_t errlen)
{
	struct kvm_clock_data kc = { .clock = c->kvmclock_ns };
	int ret;

	if (policy == CLOCK_ADVANCE)
		kc.clock += elapsed_ns;
	else
		rtc_adjust_offset(&vm->rtc,
				  -(int64_t)(elapsed_ns / 1000000000ull));
	ret = kvm_ioctl(vm->vm_fd, KVM_SET_CLOCK, &kc);
	if (ret < 0)
		set_err(err, errlen, "KVM_SET_CLOCK: %s", strerror(-ret));
	return ret < 0 ? ret : 0;
}

/* The working set's name beside the snapshot @path, or NULL. */
static char *snapshot_wset_path(const char *path)
{
	size_t n = strlen(path);
	char *w = malloc(n + sizeof(".wset"));

	if (w) {
		memcpy(w, path, n);
		memcpy(w + n, ".wset", sizeof(".wset"));
	}
	return w;
}

/* Before a lazy restore's pager starts: either sets up a recording
 * (--record-working-set) or loads PATH.wset into @prefetch for the
 * pager when it is there and this snapshot's (a damaged or stale one is
 * ignored with one line). 0 or -ENOMEM. */
static int snapshot_wset_setup(struct vm *vm, struct snapshot_image *img,
			       const struct page_source *src, uint64_t id,
			       struct wset *prefetch, struct pager_opts *po)
{
	struct wset_region geo[GUEST_MEM_MAX_REGIONS];
	char *path, why[256];
	int ret;

	memset(prefetch, 0, sizeof(*prefetch));
	if (!img->record_ms && !img->prefetch)
		return 0;
	path = snapshot_wset_path(img->path);
	if (!path)
		return -ENOMEM;
	if (img->record_ms) {
		/* A recording starts afresh: an older set is not used. */
		free(vm->wset_path);
		vm->wset_path = path;
		vm->wset_id = id;
		vm->wset_ms = img->record_ms;
		po->record = true;
		return 0;
	}
	for (unsigned i = 0; i < src->nregions; i++)
		geo[i] = (struct wset_region){
			.gpa = src->regions[i].gpa,
			.size = src->regions[i].size,
			.chunk_size = src->regions[i].chunk_size,
			.nchunks = src->regions[i].nchunks,
		};
	ret =
	    wset_load(path, geo, src->nregions, id, prefetch, why, sizeof(why));
	if (!ret) {
		log_info("%s: prefetching %llu chunks first", path,
			 (unsigned long long)wset_count(prefetch));
		po->prefetch = prefetch;
	} else if (ret == -ENOMEM) {
		free(path);
		return ret;
	} else if (ret != -ENOENT) {
		log_warn("%s: %s; not used", path, why);
	}
	free(path);
	return 0;
}

int snapshot_wset_finish(struct vm *vm, char *err, size_t errlen)
{
	uint64_t ms = (clock_now_ns(CLOCK_MONOTONIC) - vm->start_ns) / 1000000;
	struct wset w;
	int ret;

	if (!vm->pager || !vm->wset_path) {
		set_err(err, errlen, "no working set is being recorded");
		return -EALREADY;
	}
	ret = pager_record_stop(vm->pager, &w);
	if (ret == -EALREADY) {
		set_err(err, errlen, "no working set is being recorded");
		return ret;
	}
	if (ret) {
		set_err(err, errlen, "working set: out of memory");
		return ret;
	}
	w.snapshot_id = vm->wset_id;
	w.record_ms = ms < vm->wset_ms ? (uint32_t)ms : vm->wset_ms;
	ret = wset_save(vm->wset_path, &w, err, errlen);
	if (!ret)
		log_info("working set: %llu chunks in %u ms, written to %s",
			 (unsigned long long)wset_count(&w), w.record_ms,
			 vm->wset_path);
	wset_free(&w);
	return ret;
}

/* A MEMORY record of a layer: its table, resolved against the chain, then
 * loaded by copy or map, or kept in @t for the lazy restore's page source
 * (*@ntables counts those). */
static int snapshot_load_layer(struct vm *vm, struct snapshot_image *img,
			       const struct snap_record *rec,
			       struct snap_chunk_table *t, unsigned *ntables,
			       char *err, size_t errlen)
{
	struct snap_chunk_table top;
	unsigned region;
	int ret;

	if (rec->version != SNAP_MEMORY_VERSION) {
		set_err(err, errlen, "snapshot: a layer needs chunked memory");
		return -EINVAL;
	}
	ret = snap_read_memory_table(img->r, rec, &vm->mem, &top, &region, err,
				     errlen);
	if (ret)
		return ret;
	ret = snap_chain_merge(img->chain, region, &top, t, err, errlen);
	if (!ret && img->ondemand && region != *ntables) {
		set_err(err, errlen, "snapshot: memory records out of order");
		ret = -EINVAL;
	}
	if (ret) {
		snap_chunk_table_free(t);
		return ret;
	}
	if (img->ondemand) {
		(*ntables)++;
		return 0;
	}
	ret = snap_load_chunks(t, &vm->mem, region, !img->copy_memory, NULL,
			       err, errlen);
	snap_chunk_table_free(t);
	return ret;
}

/* A MEMORY record of a migration after pre-copy: only the chunks that
 * changed since are in the stream; the rest is in guest memory already,
 * checked as it arrived (img->held). */
static int snapshot_load_held(struct vm *vm, struct snapshot_image *img,
			      const struct snap_record *rec, char *err,
			      size_t errlen)
{
	struct snap_chunk_table t;
	uint8_t desc[16];
	unsigned i;
	int ret;

	if (rec->version != SNAP_MEMORY_VERSION) {
		set_err(err, errlen,
			"snapshot: pre-copied memory needs chunked records");
		return -EINVAL;
	}
	/* The chunks left to the parent are left to this VM's memory. */
	snap_reader_set_layer(img->r, true);
	/* The descriptor's region, only to pick the table's: the table is
	 * read and checked against exactly that region below. */
	if (rec->length < 16 ||
	    pread(snap_reader_fd(img->r), desc, sizeof(desc),
		  (off_t)rec->offset) != (ssize_t)sizeof(desc)) {
		set_err(err, errlen, "snapshot: memory record %u is cut short",
			rec->index);
		return -EINVAL;
	}
	for (i = 0; i < vm->mem.nregions; i++)
		if (vm->mem.regions[i].gpa == get_le64(desc) &&
		    vm->mem.regions[i].size == get_le64(desc + 8))
			break;
	if (i == vm->mem.nregions || !img->held[i]) {
		set_err(err, errlen,
			"snapshot: memory record for guest 0x%" PRIx64
			"+0x%" PRIx64 " matches no RAM region",
			get_le64(desc), get_le64(desc + 8));
		return -EINVAL;
	}
	ret = snap_read_chunk_table(img->r, rec, vm->mem.regions[i].gpa,
				    vm->mem.regions[i].size, &t, err, errlen);
	if (ret)
		return ret;
	ret = snap_load_chunks_held(&t, &vm->mem, i, img->held[i], err, errlen);
	snap_chunk_table_free(&t);
	return ret;
}

/* The restored VM's lineage is the file's, and its dirty log starts. */
static int snapshot_track_from(struct vm *vm, const struct snapshot_image *img,
			       char *err, size_t errlen)
{
	struct snap_vm_lineage *vl = &vm->lineage;
	int ret;

	vl->vm_id[0] = img->lineage.vm_id[0];
	vl->vm_id[1] = img->lineage.vm_id[1];
	vl->have_last =
	    !img->unnamed && strlen(img->path) <= SNAP_LINEAGE_PATH_MAX;
	snprintf(vl->last_path, sizeof(vl->last_path), "%s", img->path);
	vl->last_identity = img->identity;
	vl->last_created_ns = snap_reader_header(img->r)->created_unix_ns;
	vl->last_depth = img->lineage.depth;
	/* A file without a VM id (older stasis) gets one at the next save;
	 * it cannot be a parent, having no id to match a child's. */
	if (!vl->vm_id[0] && !vl->vm_id[1])
		vl->have_last = false;
	/* No later layer can name a migration's spool as its parent: the
	 * log waits for the VM's first snapshot (mem_dirty_prepare) or its
	 * next migration, instead of lengthening the migration's pause by
	 * the write protection of all of memory. */
	if (img->unnamed)
		return 0;
	ret = dirty_log_start(&vm->dirty);
	if (ret == -ENOTSUP) {
		vl->have_last = false;
		return 0;
	}
	if (ret)
		set_err(err, errlen, "snapshot: cannot start the dirty log: %s",
			strerror(-ret));
	return ret;
}

int snapshot_restore(struct vm *vm, struct snapshot_image *img,
		     enum clock_policy clock, char *err, size_t errlen)
{
	bool dev_done[SNAPSHOT_NDEVICES] = { false };
	bool virtio_done[VM_MAX_VIRTIO] = { false };
	unsigned nvcpu = 0, nmem = 0, nirq = 0, npit = 0, nclock = 0;
	struct snap_chunk_table tables[GUEST_MEM_MAX_REGIONS];
	unsigned ntables = 0;
	struct snapshot_clock saved_clock = { 0 };
	struct kvm_pit_state2 pit;
	const struct snap_header *hdr = snap_reader_header(img->r);
	struct wset_identity ident;
	struct snap_record rec;
	uint64_t elapsed_ns = 0;
	uint64_t now = realtime_ns();
	int ret;

	int last_rank = snapshot_record_rank(SNAP_REC_CPUID);

	wset_identity_init(&ident, hdr->format_version, hdr->created_unix_ns);
	/* hugetlbfs pages cannot be replaced by file pages. */
	if (vm->mem.page_size > 4096 && !img->copy_memory && !img->ondemand) {
		set_err(err, errlen,
			"--memory map cannot back hugepages (--hugepages 2M) "
			"with file pages: use ondemand or copy");
		return -EINVAL;
	}

	snap_reader_set_map_memory(img->r, !img->copy_memory);

	while ((ret = snap_reader_next(img->r, &rec, err, errlen)) == 1) {
		int rank = snapshot_record_rank(rec.type);
		void *data = NULL;

		if (rank >= 0 && rank < last_rank) {
			set_err(err, errlen, "snapshot: %s record out of order",
				snap_record_type_name(rec.type));
			ret = -EINVAL;
			goto free_tables;
		}
		if (rank >= 0)
			last_rank = rank;
		if (rec.type == SNAP_REC_MEMORY) {
			wset_identity_add(&ident, rec.checksum, rec.length);
			if (nmem == vm->mem.nregions) {
				set_err(err, errlen,
					"snapshot: more memory records than "
					"regions");
				ret = -EINVAL;
				goto free_tables;
			}
			if (img->held_memory) {
				ret = snapshot_load_held(vm, img, &rec, err,
							 errlen);
			} else if (img->chain) {
				ret = snapshot_load_layer(
				    vm, img, &rec, &tables[ntables], &ntables,
				    err, errlen);
			} else if (img->ondemand &&
				   rec.version == SNAP_MEMORY_VERSION) {
				unsigned region;

				/* Only the table now; the chunks as the guest
				 * touches them. */
				ret = snap_read_memory_table(
				    img->r, &rec, &vm->mem, &tables[ntables],
				    &region, err, errlen);
				if (!ret && region != ntables) {
					snap_chunk_table_free(&tables[ntables]);
					set_err(err, errlen,
						"snapshot: memory records out "
						"of order");
					ret = -EINVAL;
				}
				if (!ret)
					ntables++;
			} else {
				ret = snap_read_memory(img->r, &rec, &vm->mem,
						       NULL, err, errlen);
			}
			if (ret)
				goto free_tables;
			nmem++;
			continue;
		}
		if (rec.version != 1) {
			set_err(err, errlen,
				"snapshot: %s record version %u unknown",
				snap_record_type_name(rec.type), rec.version);
			ret = -EINVAL;
			goto free_tables;
		}
		ret = snap_read_payload(img->r, &rec, SNAPSHOT_RECORD_MAX,
					&data, err, errlen);
		if (ret)
			goto free_tables;
		switch (rec.type) {
		case SNAP_REC_VCPU:
			if (nvcpu == vm->ncpus) {
				set_err(err, errlen,
					"snapshot: more vCPU records than "
					"vCPUs");
				ret = -EINVAL;
				break;
			}
			if (nclock != 1) {
				set_err(err, errlen,
					"snapshot: VCPU record before CLOCK");
				ret = -EINVAL;
				break;
			}
			ret = snapshot_load_vcpu(
			    vm, nvcpu, data, rec.length,
			    clock == CLOCK_ADVANCE ? elapsed_ns : 0, err,
			    errlen);
			nvcpu++;
			break;
		case SNAP_REC_IRQCHIP:
			ret = nirq++
				  ? -EINVAL
				  : snapshot_load_irqchip(vm, data, rec.length);
			if (ret)
				set_err(err, errlen,
					"snapshot: IRQCHIP record: %s",
					strerror(-ret));
			break;
		case SNAP_REC_PIT:
			memset(&pit, 0, sizeof(pit));
			ret = npit++ ? -EINVAL
				     : snapshot_load_single(&snapshot_pit_desc,
							    data, rec.length,
							    &pit);
			if (ret) {
				set_err(err, errlen,
					"snapshot: bad PIT record");
				break;
			}
			ret = kvm_ioctl(vm->vm_fd, KVM_SET_PIT2, &pit);
			if (ret < 0)
				set_err(err, errlen, "KVM_SET_PIT2: %s",
					strerror(-ret));
			break;
		case SNAP_REC_CLOCK:
			ret = nclock++
				  ? -EINVAL
				  : snapshot_load_single(&snapshot_clock_desc,
							 data, rec.length,
							 &saved_clock);
			if (ret) {
				set_err(err, errlen,
					"snapshot: bad CLOCK record");
				break;
			}
			if (now > saved_clock.host_realtime_ns)
				elapsed_ns = now - saved_clock.host_realtime_ns;
			break;
		case SNAP_REC_DEVICE:
			ret =
			    snapshot_load_device(vm, data, rec.length, dev_done,
						 virtio_done, err, errlen);
			break;
		default:
			/* Optional records of a later stasis. */
			ret = 0;
			break;
		}
		free(data);
		if (ret) {
			ret = ret < 0 ? ret : -EINVAL;
			goto free_tables;
		}
	}
	if (ret < 0)
		goto free_tables;
	if (nvcpu != vm->ncpus || nmem != vm->mem.nregions || nirq != 1 ||
	    npit != 1 || nclock != 1) {
		set_err(err, errlen,
			"snapshot: incomplete (vCPUs %u/%u, memory %u/%u, "
			"irqchip %u, pit %u, clock %u)",
			nvcpu, vm->ncpus, nmem, vm->mem.nregions, nirq, npit,
			nclock);
		ret = -EINVAL;
		goto free_tables;
	}
	for (size_t i = 0; i < SNAPSHOT_NDEVICES; i++) {
		if (snapshot_device_present(vm, &snapshot_devices[i]) &&
		    !snapshot_devices[i].saved && !dev_done[i]) {
			set_err(err, errlen, "snapshot: device %s missing",
				snapshot_devices[i].name);
			ret = -EINVAL;
			goto free_tables;
		}
	}
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		if (!virtio_done[i]) {
			set_err(err, errlen,
				"snapshot: virtio device %s missing (the "
				"snapshot has other devices than this VM)",
				vm->virtio[i].name);
			ret = -EINVAL;
			goto free_tables;
		}
	}
	timings_mark(vm->cfg.timings, TIMING_STATE);
	/* Memory is the file's from here on: the dirty log counts what
	 * changes from now (device post-load included), so that the next
	 * snapshot can be a layer over this file. */
	ret = snapshot_track_from(vm, img, err, errlen);
	if (ret)
		goto free_tables;
	/* A lazy restore starts serving memory now: the devices' post-load
	 * below reads guest memory already. */
	if (ntables) {
		struct pager_opts po = { .seccomp = vm->cfg.seccomp,
					 .page_size = vm->mem.page_size };
		struct page_source src;
		struct wset prefetch;
		char why[256];

		ret = img->page_source
			  ? img->page_source(img->page_source_ctx, &src, tables,
					     ntables)
			  : page_source_file_init(&src, tables, ntables);
		if (ret) {
			set_err(err, errlen, "snapshot: %s", strerror(-ret));
			goto free_tables;
		}
		ntables = 0; /* the source has them */
		ret = snapshot_wset_setup(
		    vm, img, &src, wset_identity_final(&ident), &prefetch, &po);
		if (!ret)
			ret = pager_start(&vm->pager, &vm->mem, &src, &po, why,
					  sizeof(why));
		else
			snprintf(why, sizeof(why), "out of memory");
		wset_free(&prefetch);
		if (ret) {
			set_err(err, errlen, "snapshot: lazy restore: %s", why);
			return ret;
		}
	}
	/* Derived state, now that memory is back: IRQ lines, BAR mappings,
	 * virtio ioeventfds, MSI routes and queue checks. */
	for (size_t i = 0; i < SNAPSHOT_NDEVICES; i++) {
		const struct snapshot_device *d = &snapshot_devices[i];

		if (!snapshot_device_present(vm, d) || !d->post_load)
			continue;
		ret = d->post_load(vm);
		if (ret) {
			set_err(err, errlen, "snapshot: device %s: %s", d->name,
				strerror(-ret));
			goto free_tables;
		}
	}
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		char why[512];

		ret = virtio_device_post_load(&vm->virtio[i], why, sizeof(why));
		if (ret) {
			/* One line: the device's own reason (a changed disk
			 * says which and how). */
			set_err(err, errlen, "snapshot: device %s: %s",
				vm->virtio[i].name, why);
			goto free_tables;
		}
	}
	/* A chunk the post-load read that failed its check is the reason,
	 * whatever a device made of the zeros it then saw. */
	if (vm->pager && (ret = pager_error(vm->pager, err, errlen)))
		return ret;

	img->saved_realtime_ns = saved_clock.host_realtime_ns;
	ret = snapshot_apply_clock(vm, &saved_clock, clock, elapsed_ns, err,
				   errlen);
	timings_mark(vm->cfg.timings, TIMING_DEVICES);
	return ret;

free_tables:
	if (vm->pager && pager_error(vm->pager, err, errlen))
		ret = -EBADMSG;
	for (unsigned i = 0; i < ntables; i++)
		snap_chunk_table_free(&tables[i]);
	return ret;
}
