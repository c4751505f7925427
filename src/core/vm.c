/* Creating, booting, running and tearing down a VM. The main thread serves
 * host input and stop requests; vCPU threads run the guest. */
#include "core/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/kvm.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/seccomp.h"
#include "core/timings.h"
#include "cpu/cpuid.h"
#include "cpu/vcpu_state.h"
#include "migrate/migrate.h"
#include "snapshot/pager.h"
#include "snapshot/snapshot.h"
#include "virtio/devices.h"

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int exit_status)
{
	int expected = VM_RUNNING;
	uint64_t one = 1;

	if (atomic_compare_exchange_strong(&vm->stop_reason, &expected,
					   (int)reason)) {
		vm->exit_status = exit_status;
		/* Parked vCPUs and a waiting vm_pause() must see the stop. */
		pthread_mutex_lock(&vm->pause_lock);
		pthread_cond_broadcast(&vm->pause_cond);
		pthread_mutex_unlock(&vm->pause_lock);
		if (vm->stop_eventfd >= 0 &&
		    write(vm->stop_eventfd, &one, sizeof(one)) < 0)
			log_debug("stop eventfd: %s", strerror(errno));
	}
}

int vm_set_irq(struct vm *vm, uint32_t gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	return kvm_ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
}

static int vm_create_kvm(struct vm *vm)
{
	uint64_t ident = PLATFORM_KVM_IDENTITY_MAP;
	int ret;

	vm->kvm_fd = kvm_open();
	if (vm->kvm_fd < 0)
		return vm->kvm_fd;
	ret = kvm_check_caps(vm->kvm_fd);
	if (ret)
		return ret;
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0) {
		log_error("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -ENOTSUP;
	}
	vm->vm_fd = kvm_ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = vm->vm_fd;
		vm->vm_fd = -1;
		log_error("KVM_CREATE_VM: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident);
	if (ret < 0) {
		log_error("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vm->vm_fd, KVM_SET_TSS_ADDR,
			(void *)(unsigned long)PLATFORM_KVM_TSS);
	if (ret < 0) {
		log_error("KVM_SET_TSS_ADDR: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/* The in-kernel LAPIC, IOAPIC, PIC and PIT. Made after the memory slots:
 * on KVM on PVM a slot registered once an irqchip exists was measured at
 * 5-9 ms, one registered before it at under 1 ms. */
static int vm_create_irqchip(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int ret;

	ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, NULL);
	if (ret < 0) {
		log_error("KVM_CREATE_IRQCHIP: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit);
	if (ret < 0) {
		log_error("KVM_CREATE_PIT2: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

static int vm_create_memory(struct vm *vm, uint64_t size)
{
	uint64_t page = vm->cfg.hugepages ? vm->cfg.hugepages : 4096;
	char err[256];
	int ret;

	if (vm->cfg.hugepages && guest_mem_huge_check(size, err, sizeof(err))) {
		log_error("%s", err);
		return -ENOMEM;
	}
	ret = guest_mem_init_paged(&vm->mem, size, page);
	if (ret && vm->cfg.hugepages) {
		/* Another process took them since the check. */
		guest_mem_huge_check(size, err, sizeof(err));
		log_error("cannot allocate %llu MiB of guest memory in "
			  "hugepages: %s",
			  (unsigned long long)(size >> 20), strerror(-ret));
		return ret;
	}
	if (ret) {
		log_error("cannot allocate %llu MiB of guest memory: %s",
			  (unsigned long long)(size >> 20), strerror(-ret));
		return ret;
	}
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->host,
		};

		ret = kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr);
		if (ret < 0) {
			log_error("KVM_SET_USER_MEMORY_REGION: %s",
				  strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int vm_open_serial(struct vm *vm)
{
	int fd, ret;

	vm->serial_out.fd = -1;
	vm->serial_in_fd = -1;
	switch (vm->cfg.serial) {
	case SERIAL_STDIO:
		ret = host_output_open(&vm->serial_out, STDOUT_FILENO);
		if (ret) {
			log_error("--serial stdio: cannot use stdout: %s",
				  strerror(-ret));
			return ret;
		}
		vm->serial_in_fd = STDIN_FILENO;
		return 0;
	case SERIAL_FILE:
		fd = open(vm->cfg.serial_path,
			  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			ret = -errno;
			log_error("--serial: cannot open %s: %s",
				  vm->cfg.serial_path, strerror(-ret));
			return ret;
		}
		host_output_adopt(&vm->serial_out, fd);
		return 0;
	case SERIAL_NONE:
		return 0;
	}
	return -EINVAL;
}

static int vm_create_devices(struct vm *vm)
{
	int ret;

	ret = vm_open_serial(vm);
	if (ret)
		return ret;
	ret = uart_init(&vm->uart, vm, &vm->serial_out);
	if (!ret)
		ret = rtc_init(&vm->rtc, vm);
	if (!ret)
		ret = i8042_init(&vm->i8042, vm);
	if (!ret)
		ret = pci_host_init(&vm->pci, vm);
	if (!ret)
		ret = acpi_pm_init(&vm->acpi_pm, vm);
	if (!ret && vm->cfg.debug_exit)
		ret = debug_exit_init(&vm->debug_exit, vm);
	vmgenid_init(&vm->vmgenid, vm);
	if (ret)
		log_error("cannot create devices: %s", strerror(-ret));
	return ret;
}

/* The virtio devices, in PCI slots from 1 in a fixed order (disks, nets,
 * console, rng) so that a VM built from the same config, as at restore,
 * gets the same slots, BARs, GSIs and record names. */
static int vm_create_virtio(struct vm *vm)
{
	const struct vm_config *cfg = &vm->cfg;
	uint8_t slot = 1;
	char name[32];
	int ret;

	for (unsigned i = 0; i < cfg->ndisks; i++) {
		snprintf(name, sizeof(name), "blk%u", i);
		ret = virtio_blk_create(&vm->virtio[vm->nvirtio], vm,
					&cfg->disks[i], name, slot++);
		if (ret)
			return ret;
		vm->nvirtio++;
	}
	for (unsigned i = 0; i < cfg->nnets; i++) {
		snprintf(name, sizeof(name), "net%u", i);
		ret = virtio_net_create(&vm->virtio[vm->nvirtio], vm,
					&cfg->nets[i], i, name, slot++);
		if (ret)
			return ret;
		vm->nvirtio++;
	}
	if (cfg->console != CONSOLE_NONE) {
		ret = virtio_console_create(&vm->virtio[vm->nvirtio], vm,
					    cfg->console, cfg->console_path,
					    "console0", slot++);
		if (ret)
			return ret;
		vm->nvirtio++;
	}
	if (cfg->rng) {
		ret = virtio_rng_create(&vm->virtio[vm->nvirtio], vm, "rng0",
					slot++);
		if (ret)
			return ret;
		vm->nvirtio++;
	}
	return 0;
}

int vm_prepare(struct vm *vm, const struct vm_config *cfg, uint64_t mem_size)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = vm->stop_eventfd = -1;
	vm->serial_in_fd = vm->serial_out.fd = -1;
	vm->mem.memfd = -1;
	vm->ncpus = cfg->ncpus;
	atomic_init(&vm->stop_reason, VM_RUNNING);
	atomic_init(&vm->pause_requested, false);
	atomic_init(&vm->paused, false);
	atomic_init(&vm->snapshot_active, false);
	pthread_mutex_init(&vm->pause_op_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	pthread_mutex_init(&vm->snapshot_lock, NULL);
	pthread_mutex_init(&vm->run_state_lock, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");

	vm->stop_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_eventfd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = vm_create_kvm(vm);
	if (ret)
		goto fail;
	timings_mark(cfg->timings, TIMING_KVM);
	ret = vm_create_memory(vm, mem_size);
	if (ret)
		goto fail;
	timings_mark(cfg->timings, TIMING_MEMORY);
	ret = vm_create_irqchip(vm);
	if (ret)
		goto fail;
	/* The host's CPUID and MSR list: asked once, whatever is restored
	 * into a prepared VM later. */
	vm->cpuid = cpuid_get_supported(vm->kvm_fd);
	if (!vm->cpuid) {
		ret = -errno;
		log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
		goto fail;
	}
	ret = vcpu_state_msr_list(vm->kvm_fd, &vm->msr_list, &vm->nmsrs);
	if (ret) {
		log_error("KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
		goto fail;
	}
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		vm->vcpus[i].fd = -1;
	/* Before the vCPUs: KVM enables dirty rings only then. */
	ret = dirty_log_init(&vm->dirty, vm->vm_fd, &vm->mem, cfg->track_dirty);
	if (ret) {
		log_error("dirty page log: %s", strerror(-ret));
		goto fail;
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = vcpu_create(vm, &vm->vcpus[i], i);
		if (ret)
			goto fail;
		ret = dirty_log_attach_vcpu(&vm->dirty, i, vm->ncpus,
					    vm->vcpus[i].fd);
		if (ret) {
			log_error("vCPU %u: dirty ring: %s", i, strerror(-ret));
			goto fail;
		}
	}
	timings_mark(cfg->timings, TIMING_VCPUS);
	return 0;

fail:
	vm_destroy(vm);
	return ret;
}

int vm_complete(struct vm *vm, const struct vm_config *cfg,
		const struct kvm_cpuid2 *cpuid)
{
	char err[512];
	int ret;

	/* vm_prepare() made these for the caller's promise of @cfg. */
	if (cfg->ncpus != vm->ncpus ||
	    guest_mem_limit(&vm->mem, cfg->mem_size)) {
		log_error("internal: the prepared VM does not fit");
		return -EINVAL;
	}
	vm->cfg = *cfg;
	if (cpuid) {
		/* A snapshot's CPUID: the guest already saw it, so it must be
		 * honoured exactly or not at all. */
		ret = cpuid_check_host(cpuid, vm->cpuid, err, sizeof(err));
		if (ret) {
			log_error("%s", err);
			return ret;
		}
		free(vm->cpuid);
		vm->cpuid = cpuid_dup(cpuid);
		if (!vm->cpuid)
			return -ENOMEM;
	} else {
		cpuid_apply_template(vm->cpuid, cfg->cpu_template);
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = vcpu_set_cpuid(&vm->vcpus[i]);
		if (ret)
			return ret;
	}
	ret = vm_create_devices(vm);
	if (ret)
		return ret;
	ret = irq_routing_init(&vm->irq_routing, vm->vm_fd);
	if (ret)
		return ret;
	ret = vm_create_virtio(vm);
	if (ret)
		return ret;
	timings_mark(cfg->timings, TIMING_MACHINE);
	return 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg,
	      const struct kvm_cpuid2 *cpuid)
{
	int ret = vm_prepare(vm, cfg, cfg->mem_size);

	if (ret)
		return ret;
	ret = vm_complete(vm, cfg, cpuid);
	if (ret)
		vm_destroy(vm);
	return ret;
}

/* Maps a whole regular file read-only, refusing anything over @max. */
static int vm_map_file(const char *what, const char *path, uint64_t max,
		       const uint8_t **data, size_t *len)
{
	struct stat st;
	void *p;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error("%s: cannot open %s: %s", what, path, strerror(-err));
		return err;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("%s: %s is not a regular file", what, path);
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > max || st.st_size == 0) {
		log_error("%s: %s is %s (limit %llu MiB)", what, path,
			  st.st_size ? "too large" : "empty",
			  (unsigned long long)(max >> 20));
		close(fd);
		return -EINVAL;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	err = -errno;
	close(fd);
	if (p == MAP_FAILED) {
		log_error("%s: cannot map %s: %s", what, path, strerror(-err));
		return err;
	}
	*data = p;
	*len = (size_t)st.st_size;
	return 0;
}

int vm_images_open(const struct vm_config *cfg, struct vm_images *img)
{
	enum boot_kind kind;
	char err[256];
	int ret;

	memset(img, 0, sizeof(*img));
	ret = vm_map_file("kernel", cfg->kernel, BOOT_KERNEL_MAX, &img->kernel,
			  &img->kernel_len);
	if (ret)
		return ret;
	ret = boot_probe(img->kernel, img->kernel_len, &kind, err, sizeof(err));
	if (ret) {
		log_error("%s: %s", cfg->kernel, err);
		goto fail;
	}
	if (cfg->initrd) {
		ret = vm_map_file("initrd", cfg->initrd, BOOT_INITRD_MAX,
				  &img->initrd, &img->initrd_len);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	vm_images_close(img);
	return ret;
}

void vm_images_close(struct vm_images *img)
{
	if (img->initrd)
		munmap((void *)img->initrd, img->initrd_len);
	if (img->kernel)
		munmap((void *)img->kernel, img->kernel_len);
	memset(img, 0, sizeof(*img));
}

int vm_boot(struct vm *vm, const struct vm_images *img)
{
	struct boot_config bc = {
		.kernel = img->kernel,
		.kernel_len = img->kernel_len,
		.initrd = img->initrd,
		.initrd_len = img->initrd_len,
		.cmdline = vm->cfg.cmdline ? vm->cfg.cmdline : "",
		.ncpus = vm->ncpus,
		.vmgenid = vm->cfg.vmgenid ? PLATFORM_VMGENID_ADDR : 0
	};
	struct boot_cpu cpu;
	char err[256] = "";
	int ret;

	ret = boot_load(&vm->mem, &bc, &cpu, &vm->boot, err, sizeof(err));
	if (ret) {
		log_error("%s: %s", vm->cfg.kernel, err);
		return ret;
	}
	if (vm->cfg.vmgenid) {
		ret = vmgenid_boot(&vm->vmgenid);
		if (ret) {
			log_error("vmgenid: %s", strerror(-ret));
			return ret;
		}
	}
	ret = vcpu_set_boot_state(&vm->vcpus[0], &cpu);
	if (ret)
		log_error("vCPU 0: cannot set boot registers: %s",
			  strerror(-ret));
	return ret;
}

/* A vCPU thread made ahead: waits at the gate, then is a vCPU thread. */
static void *vm_gated_vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	int gate;

	/* The filter now, not on the restore's path: building it takes a
	 * good part of a millisecond. What the thread does until its first
	 * KVM_RUN (futex, sigprocmask) is in the vCPU role's list. */
	vcpu->filtered = !seccomp_install(SECCOMP_ROLE_VCPU, vm->cfg.seccomp);
	if (!vcpu->filtered)
		vm_request_stop(vm, VM_STOP_CRASH, 0);
	pthread_mutex_lock(&vm->pause_lock);
	while (!(gate = vm->vcpu_gate))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
	return gate > 0 ? vcpu_thread(arg) : NULL;
}

/* Opens (1) or closes (-1) the gate of the threads vm_prepare_threads
 * made; closing joins them. */
static void vm_open_gate(struct vm *vm, int gate)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->vcpu_gate = gate;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->vcpu_threads_made; i++) {
		if (gate > 0)
			vm->vcpus[i].thread_started = true;
		else
			pthread_join(vm->vcpus[i].thread, NULL);
	}
	if (gate < 0)
		vm->vcpu_threads_made = 0;
}

int vm_prepare_threads(struct vm *vm)
{
	sigset_t block, saved;
	int ret = 0;

	/* As vm_run's threads: every signal stasis handles is blocked, the
	 * kick unblocked by vcpu_thread itself. */
	sigemptyset(&block);
	sigaddset(&block, VCPU_KICK_SIGNAL);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &saved);
	vm->vcpu_gate = 0;
	for (unsigned i = 0; i < vm->ncpus && !ret; i++) {
		ret = -pthread_create(&vm->vcpus[i].thread, NULL,
				      vm_gated_vcpu_thread, &vm->vcpus[i]);
		if (!ret)
			vm->vcpu_threads_made++;
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (ret) {
		log_error("cannot start the vCPU threads: %s", strerror(-ret));
		vm_open_gate(vm, -1);
	}
	return ret;
}

static void vm_kick_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->thread_started)
			continue;
		/* immediate_exit covers the window where the thread checked
		 * stop_reason but has not yet entered KVM_RUN. */
		v->run->immediate_exit = 1;
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
	}
}

/* Auto-converge's kicker: every period, the vCPUs leave KVM_RUN and
 * sleep their throttled share of it (vcpu_thread). */
static void *vm_throttle_main(void *arg)
{
	struct vm *vm = arg;
	const struct timespec period = { .tv_nsec =
					     VM_THROTTLE_PERIOD_MS * 1000000L };

	while (!atomic_load(&vm->throttle_stop)) {
		nanosleep(&period, NULL);
		if (atomic_load(&vm->throttle_pct) &&
		    !atomic_load(&vm->pause_requested) &&
		    !atomic_load(&vm->stop_reason))
			vm_kick_vcpus(vm);
	}
	return NULL;
}

int vm_set_throttle(struct vm *vm, unsigned pct)
{
	sigset_t set, saved;
	int ret;

	if (pct > 99)
		pct = 99;
	atomic_store(&vm->throttle_pct, pct);
	if (!pct) {
		if (vm->throttle_running) {
			atomic_store(&vm->throttle_stop, true);
			pthread_join(vm->throttle_thread, NULL);
			vm->throttle_running = false;
		}
		return 0;
	}
	if (vm->throttle_running)
		return 0;
	atomic_store(&vm->throttle_stop, false);
	/* The kick signal stays blocked in the kicker. */
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, &saved);
	ret = -pthread_create(&vm->throttle_thread, NULL, vm_throttle_main, vm);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (ret) {
		atomic_store(&vm->throttle_pct, 0);
		return ret;
	}
	vm->throttle_running = true;
	return 0;
}

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

/* Moves pending host input into the UART as its FIFO drains. */
struct vm_input {
	uint8_t buf[256];
	size_t len;
	size_t off;
	bool eof;
};

static void vm_pump_input(struct vm *vm, struct vm_input *in)
{
	size_t n;

	if (in->off < in->len) {
		n = uart_receive(&vm->uart, in->buf + in->off,
				 in->len - in->off);
		in->off += n;
	}
	if (in->off == in->len)
		in->off = in->len = 0;
}

static const char *vm_stop_reason_name(enum vm_stop_reason r)
{
	switch (r) {
	case VM_RUNNING:
		return "running";
	case VM_STOP_DEBUG_EXIT:
		return "guest wrote the debug-exit port";
	case VM_STOP_POWEROFF:
		return "guest powered off";
	case VM_STOP_RESET:
		return "guest requested a reset";
	case VM_STOP_CRASH:
		return "guest crashed";
	case VM_STOP_SIGNAL:
		return "stopped by signal";
	case VM_STOP_REQUEST:
		return "stopped on request";
	case VM_STOP_MEMORY:
		return "guest memory failed its check";
	}
	return "?";
}

int vm_pause(struct vm *vm)
{
	uint64_t t0 = clock_now_ns(CLOCK_MONOTONIC);
	unsigned running = 0;
	int ret = 0;

	pthread_mutex_lock(&vm->pause_op_lock);
	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->stop_reason)) {
		ret = -ESHUTDOWN;
		goto out;
	}
	if (atomic_load(&vm->pause_requested)) {
		ret = -EALREADY;
		goto out;
	}
	atomic_store(&vm->pause_requested, true);
	pthread_mutex_unlock(&vm->pause_lock);

	vm_kick_vcpus(vm);

	pthread_mutex_lock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		running += vm->vcpus[i].thread_started;
	while (vm->parked < running && !atomic_load(&vm->stop_reason))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	if (atomic_load(&vm->stop_reason)) {
		ret = -ESHUTDOWN;
		goto out;
	}
	/* The vCPUs are parked, so no driver kicks a queue any more; park
	 * the device workers between requests, so that nothing touches guest
	 * memory or device state while a snapshot is taken. Not under
	 * pause_lock: a worker finishing its request may need it (a stop).
	 * No vm_resume can run meanwhile (pause_op_lock). */
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_device_park(&vm->virtio[i]);
	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->stop_reason)) {
		/* Stopping meanwhile: the workers run on to their end. */
		for (unsigned i = 0; i < vm->nvirtio; i++)
			virtio_device_unpark(&vm->virtio[i]);
		ret = -ESHUTDOWN;
		goto out;
	}
	vm->last_pause_ns = clock_now_ns(CLOCK_MONOTONIC) - t0;
	atomic_store(&vm->paused, true);
out:
	pthread_mutex_unlock(&vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_op_lock);
	return ret;
}

int vm_resume(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->pause_op_lock);
	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->migrated)) {
		/* Handed over to another host: it may run there. */
		ret = -EPERM;
	} else if (!atomic_load(&vm->pause_requested)) {
		ret = -EALREADY;
	} else {
		/* Devices first: the vCPUs may kick them at once. */
		for (unsigned i = 0; i < vm->nvirtio; i++)
			virtio_device_unpark(&vm->virtio[i]);
		atomic_store(&vm->paused, false);
		atomic_store(&vm->pause_requested, false);
		pthread_cond_broadcast(&vm->pause_cond);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_op_lock);
	return ret;
}

void vm_get_status(struct vm *vm, struct vm_status *st)
{
	memset(st, 0, sizeof(*st));
	st->paused = atomic_load(&vm->paused);
	st->ncpus = vm->ncpus;
	st->mem_size = vm->mem.size;
	st->uptime_ns = clock_now_ns(CLOCK_MONOTONIC) - vm->start_ns;
	pthread_mutex_lock(&vm->pause_lock);
	st->last_pause_ns = vm->last_pause_ns;
	st->have_last_snapshot = vm->have_last_snapshot;
	st->last_snapshot = vm->last_snapshot;
	pthread_mutex_unlock(&vm->pause_lock);
	if (atomic_load(&vm->migrate_phase) != MIGRATE_NONE) {
		const struct migrate_stats *ms = &vm->migrate_stats;

		st->migration_state =
		    migrate_phase_name(atomic_load(&vm->migrate_phase));
		st->migration_rounds = atomic_load(&ms->rounds);
		st->migration_bytes_sent = atomic_load(&ms->bytes_sent);
		st->migration_dirty_rate = atomic_load(&ms->dirty_rate);
		st->migration_link_rate = atomic_load(&ms->link_rate);
		st->migration_expected_downtime_ms =
		    atomic_load(&ms->expected_downtime_ms);
		st->migration_throttle_pct = atomic_load(&vm->throttle_pct);
	}
	migrate_in_postcopy_stats(vm->incoming, &st->postcopy);
	st->timings = vm->cfg.timings;
	st->snapshot_active = atomic_load(&vm->snapshot_active);
	if (st->snapshot_active) {
		st->snapshot_done_bytes = vm->snapshot_progress.done_bytes;
		st->snapshot_total_bytes = vm->snapshot_progress.total_bytes;
	}
}

/* A live save of a running VM (snapshot_save_live), then @then. */
static int vm_snapshot_live(struct vm *vm, const char *path, enum vm_then then,
			    const struct snap_compress *compress,
			    struct snapshot_stats *stats, char *err,
			    size_t errlen)
{
	struct snapshot_live_stats st;
	int ret;

	ret = snapshot_save_live(vm, path, compress, then == VM_THEN_EXIT, &st,
				 &vm->snapshot_progress, err, errlen);
	stats->pause_ns = st.pause_ns;
	stats->extra_bytes = st.extra_bytes;
	if (st.resumed)
		log_debug("live snapshot: paused %" PRIu64 " us, %" PRIu64
			  " write faults, %" PRIu64
			  " pages copied aside, %" PRIu64
			  " waited for room, peak copies %" PRIu64 " bytes",
			  st.pause_ns / 1000, st.faults, st.copied_pages,
			  st.waits, st.copy_peak_bytes);
	if (ret)
		return ret;
	if (then == VM_THEN_PAUSE)
		vm_pause(vm);
	else if (then == VM_THEN_EXIT)
		vm_request_stop(vm, VM_STOP_REQUEST, STASIS_EXIT_OK);
	return 0;
}

/* A snapshot reads all of memory: a working-set recording ends first,
 * so that what it records is the guest's. */
static void vm_wset_end(struct vm *vm)
{
	char err[512];
	int ret;

	if (!vm->wset_path || !vm->pager || !pager_recording(vm->pager))
		return;
	ret = snapshot_wset_finish(vm, err, sizeof(err));
	if (ret && ret != -EALREADY)
		log_warn("--record-working-set: %s", err);
}

/* vm_snapshot's work, with snapshot_lock held; releases it. */
static int vm_snapshot_locked(struct vm *vm, const char *path, const char *base,
			      enum vm_then then,
			      const struct snap_compress *compress, bool live,
			      struct snapshot_stats *stats, char *err,
			      size_t errlen)
{
	uint64_t t0 = clock_now_ns(CLOCK_MONOTONIC);
	struct snapshot_stats local = { 0 };
	bool was_paused;
	int ret;

	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	/* The save waits for every chunk: the filler must be let go. */
	vm_wset_end(vm);
	vm->snapshot_progress.done_bytes = 0;
	vm->snapshot_progress.total_bytes = 0;
	pthread_mutex_lock(&vm->run_state_lock);
	atomic_store(&vm->snapshot_active, true);
	was_paused = atomic_load(&vm->pause_requested);
	/* A paused guest changes nothing: its save is the usual one. A live
	 * save pauses and resumes by itself; snapshot_active keeps the API's
	 * pause and resume out meanwhile. */
	if (live && !was_paused) {
		pthread_mutex_unlock(&vm->run_state_lock);
		stats->live = true;
		ret = vm_snapshot_live(vm, path, then, compress, stats, err,
				       errlen);
		pthread_mutex_lock(&vm->run_state_lock);
		goto out;
	}
	ret = was_paused ? 0 : vm_pause(vm);
	pthread_mutex_unlock(&vm->run_state_lock);
	if (ret) {
		snprintf(err, errlen, "cannot pause the VM: %s",
			 strerror(-ret));
		pthread_mutex_lock(&vm->run_state_lock);
		goto out;
	}
	ret = snapshot_save(vm, path, base, compress, &vm->snapshot_progress,
			    err, errlen);
	if (!was_paused)
		stats->pause_ns = clock_now_ns(CLOCK_MONOTONIC) - t0;
	pthread_mutex_lock(&vm->run_state_lock);
	if (ret) {
		/* The guest carries on: running again, unless it was paused
		 * already or the caller wanted it paused afterwards anyway. */
		if (!was_paused && then != VM_THEN_PAUSE)
			vm_resume(vm);
		goto out;
	}
	switch (then) {
	case VM_THEN_RESUME:
		vm_resume(vm);
		break;
	case VM_THEN_PAUSE:
		break;
	case VM_THEN_EXIT:
		vm_request_stop(vm, VM_STOP_REQUEST, STASIS_EXIT_OK);
		break;
	}
out:
	stats->total_ns = clock_now_ns(CLOCK_MONOTONIC) - t0;
	if (!ret) {
		pthread_mutex_lock(&vm->pause_lock);
		vm->last_snapshot = *stats;
		vm->have_last_snapshot = true;
		pthread_mutex_unlock(&vm->pause_lock);
	}
	atomic_store(&vm->snapshot_active, false);
	pthread_mutex_unlock(&vm->run_state_lock);
	pthread_mutex_unlock(&vm->snapshot_lock);
	return ret;
}

int vm_snapshot(struct vm *vm, const char *path, const char *base,
		enum vm_then then, const struct snap_compress *compress,
		bool live, struct snapshot_stats *stats, char *err,
		size_t errlen)
{
	if (pthread_mutex_trylock(&vm->snapshot_lock)) {
		snprintf(err, errlen, "another snapshot is being written");
		return -EBUSY;
	}
	if (live && base) {
		pthread_mutex_unlock(&vm->snapshot_lock);
		snprintf(err, errlen,
			 "a live snapshot is a full one: it "
			 "cannot have a base");
		return -EINVAL;
	}
	return vm_snapshot_locked(vm, path, base, then, compress, live, stats,
				  err, errlen);
}

/* SIGTERM with --on-term snapshot:PATH, on the main thread: waits for a
 * snapshot the API may be writing, then saves and stops the VM (exit 0).
 * A failed save leaves the VM as it was, running or paused, and stasis
 * serving: the VM is never lost to a save that did not happen. Another
 * SIGTERM tries again; SIGINT or SIGKILL discard the VM. */
static void vm_save_on_term(struct vm *vm)
{
	const char *path = vm->cfg.on_term_snapshot;
	char err[512] = "";
	int ret;

	pthread_mutex_lock(&vm->snapshot_lock);
	if (atomic_load(&vm->stop_reason)) {
		/* Stopping already (snapshot --then exit, shutdown). */
		pthread_mutex_unlock(&vm->snapshot_lock);
		return;
	}
	ret = vm_snapshot_locked(vm, path, NULL, VM_THEN_EXIT, NULL, false,
				 NULL, err, sizeof(err));
	if (!ret) {
		log_info("SIGTERM: VM saved to %s", path);
		return;
	}
	log_error("SIGTERM: cannot save the VM to %s: %s; it stays %s", path,
		  err[0] ? err : strerror(-ret),
		  atomic_load(&vm->paused) ? "paused" : "running");
}

static void vm_handle_signal(struct vm *vm, int signo)
{
	if (signo == SIGTERM && vm->cfg.on_term_snapshot)
		vm_save_on_term(vm);
	else
		vm_request_stop(vm, VM_STOP_SIGNAL, 128 + signo);
}

/* The API's pause and resume: @op (vm_pause or vm_resume) decided under
 * run_state_lock, so that neither can slip between a snapshot's own pause
 * and its end. */
static int vm_api_run_state(struct vm *vm, int (*op)(struct vm *),
			    const char *already, char *err, size_t errlen)
{
	int ret = -EBUSY;

	pthread_mutex_lock(&vm->run_state_lock);
	if (!atomic_load(&vm->snapshot_active))
		ret = op(vm);
	pthread_mutex_unlock(&vm->run_state_lock);
	if (ret == -EPERM) {
		snprintf(err, errlen,
			 "the VM was migrated away and never runs here again");
		ret = -EBUSY;
	} else if (ret == -EBUSY)
		snprintf(err, errlen, "a snapshot is being written");
	else if (ret == -EALREADY)
		snprintf(err, errlen, "the VM is already %s", already);
	else if (ret)
		snprintf(err, errlen, "cannot %s: %s",
			 op == vm_pause ? "pause" : "resume", strerror(-ret));
	return ret;
}

static int vm_api_pause(void *ctx, char *err, size_t errlen)
{
	return vm_api_run_state(ctx, vm_pause, "paused", err, errlen);
}

static int vm_api_resume(void *ctx, char *err, size_t errlen)
{
	return vm_api_run_state(ctx, vm_resume, "running", err, errlen);
}

static int vm_api_migrate(void *ctx, const struct migrate_opts *o,
			  struct migrate_result *res, char *err, size_t errlen)
{
	struct vm *vm = ctx;
	int ret;

	if (pthread_mutex_trylock(&vm->snapshot_lock)) {
		snprintf(err, errlen, "a snapshot or migration is running");
		return -EBUSY;
	}
	if (atomic_load(&vm->migrated) || atomic_load(&vm->stop_reason)) {
		snprintf(err, errlen, "the VM is %s",
			 atomic_load(&vm->migrated) ? "migrated already"
						    : "stopping");
		pthread_mutex_unlock(&vm->snapshot_lock);
		return -EBUSY;
	}
	/* The stream reads all of memory, as a snapshot does. */
	vm_wset_end(vm);
	ret = migrate_send(vm, o, res, err, errlen);
	if (!ret) {
		log_info("migrated to %s: %llu bytes, %llu ms, %llu ms paused",
			 o->dest, (unsigned long long)res->bytes_sent,
			 (unsigned long long)res->total_ms,
			 (unsigned long long)res->downtime_ms);
		vm_request_stop(vm, VM_STOP_REQUEST, STASIS_EXIT_OK);
	} else {
		log_error("migration to %s: %s", o->dest, err);
	}
	pthread_mutex_unlock(&vm->snapshot_lock);
	return ret;
}

static int vm_api_snapshot(void *ctx, const char *path, const char *base,
			   enum vm_then then,
			   const struct snap_compress *compress, bool live,
			   struct snapshot_stats *stats, char *err,
			   size_t errlen)
{
	return vm_snapshot(ctx, path, base, then, compress, live, stats, err,
			   errlen);
}

static int vm_api_shutdown(void *ctx, char *err, size_t errlen)
{
	vm_request_stop(ctx, VM_STOP_REQUEST, STASIS_EXIT_OK);
	return 0;
}

static int vm_api_working_set(void *ctx, char *err, size_t errlen)
{
	return snapshot_wset_finish(ctx, err, errlen);
}

static void vm_api_status(void *ctx, struct vm_status *st)
{
	vm_get_status(ctx, st);
}

/* --user: the sockets stasis bound are handed to the user, who must be
 * able to remove them at exit (in a sticky directory such as /tmp only
 * their owner may), then root is given up. Runs before any thread of the
 * VM exists (privdrop_apply() says why). */
static int vm_drop_user(struct vm *vm, char *err, size_t errlen)
{
	const struct vm_config *c = &vm->cfg;
	const char *paths[2 + CONFIG_MAX_NETS];
	unsigned n = 0;

	if (!c->user.set)
		return 0;
	if (c->api_socket)
		paths[n++] = c->api_socket;
	if (c->console == CONSOLE_SOCKET && c->console_path)
		paths[n++] = c->console_path;
	for (unsigned i = 0; i < c->nnets; i++)
		if (c->nets[i].backend == NET_BACKEND_UNIX && c->nets[i].path)
			paths[n++] = c->nets[i].path;
	for (unsigned i = 0; i < n; i++) {
		if (lchown(paths[i], c->user.uid, c->user.gid)) {
			int ret = -errno;

			snprintf(err, errlen, "--user: cannot hand %s over: %s",
				 paths[i], strerror(-ret));
			return ret;
		}
	}
	return privdrop_apply(&c->user, err, errlen);
}

static int vm_api_listening(void *ctx, char *err, size_t errlen)
{
	return vm_drop_user(ctx, err, errlen);
}

/* The control API's threads, and the snapshots they write. */
static int vm_api_thread_init(void *ctx)
{
	struct vm *vm = ctx;

	return seccomp_install(SECCOMP_ROLE_API, vm->cfg.seccomp);
}

const struct api_ops vm_api_ops = {
	.pause = vm_api_pause,
	.resume = vm_api_resume,
	.snapshot = vm_api_snapshot,
	.shutdown = vm_api_shutdown,
	.migrate = vm_api_migrate,
	.status = vm_api_status,
	.working_set = vm_api_working_set,
	.thread_init = vm_api_thread_init,
	.listening = vm_api_listening,
};

/* The host terminal the guest reads keys from: stdin when the serial port
 * or the virtio console is on stdio (never both: the config refuses it);
 * -1 when neither reads stdin. */
static int vm_tty_input_fd(const struct vm *vm)
{
	if (vm->serial_in_fd >= 0)
		return vm->serial_in_fd;
	return vm->cfg.console == CONSOLE_STDIO ? STDIN_FILENO : -1;
}

/* The pager's report of a chunk that failed its check: one line, and the
 * VM stops with the status of a bad snapshot file. */
static void vm_memory_failed(void *ctx, const char *line)
{
	log_error("%s", line);
	vm_request_stop(ctx, VM_STOP_MEMORY, STASIS_EXIT_USAGE);
}

int vm_run(struct vm *vm, bool start_paused)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	struct vm_input in = { .len = 0 };
	int tty_fd = vm_tty_input_fd(vm);
	struct termios saved_tio;
	bool tio_saved = false, op_locked;
	sigset_t block, term;
	int sfd, ret, status;

	/* --track-dirty: the log runs before the guest's first instruction
	 * (a restore may have started it already). */
	if (vm->cfg.track_dirty) {
		ret = dirty_log_start(&vm->dirty);
		if (ret) {
			log_error("--track-dirty: cannot start the dirty page "
				  "log: %s",
				  strerror(-ret));
			return STASIS_EXIT_HOST;
		}
	}
	/* SIGUSR1 kicks vCPUs; no SA_RESTART so KVM_RUN returns EINTR. */
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, VCPU_KICK_SIGNAL);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	sigemptyset(&term);
	sigaddset(&term, SIGINT);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGHUP);
	sfd = signalfd(-1, &term, SFD_CLOEXEC | SFD_NONBLOCK);

	if (tty_fd >= 0 && isatty(tty_fd) &&
	    tcgetattr(tty_fd, &saved_tio) == 0) {
		struct termios raw = saved_tio;

		/* Keys go to the guest one at a time; Ctrl-C still stops
		 * stasis (ISIG stays on). */
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_iflag &= ~(tcflag_t)(ICRNL);
		tcsetattr(tty_fd, TCSANOW, &raw);
		tio_saved = true;
	}

	vm->start_ns = clock_now_ns(CLOCK_MONOTONIC);
	/* A client may resume a VM started paused as soon as the API
	 * answers, or pause one whose vCPUs are not made yet: pause and
	 * resume wait until they are (a waiting target took the lock as it
	 * answered the restore). */
	op_locked = start_paused || vm->pause_op_held;
	if (op_locked && !vm->pause_op_held)
		pthread_mutex_lock(&vm->pause_op_lock);
	vm->pause_op_held = false;
	if (vm->cfg.seccomp != SECCOMP_OFF)
		seccomp_report_init();
	if (vm->api) {
		/* A waiting restore target's, serving since before the
		 * restore (vm_target_wait). */
	} else if (vm->cfg.api_socket) {
		char err[256];

		ret = api_server_start(&vm->api, vm->cfg.api_socket,
				       &vm_api_ops, vm, err, sizeof(err));
		if (ret) {
			log_error("%s", err);
			status = STASIS_EXIT_HOST;
			goto out_restore;
		}
	} else {
		char err[256];

		/* With an API, its socket is bound first (vm_api_listening). */
		if (vm_drop_user(vm, err, sizeof(err))) {
			log_error("%s", err);
			status = STASIS_EXIT_HOST;
			goto out_restore;
		}
	}
	/* From here on a chunk that fails its check stops the VM; one that
	 * failed already (while devices were restored) stops it now, before
	 * any worker or vCPU runs. */
	if (vm->pager && pager_set_running(vm->pager, vm_memory_failed, vm)) {
		char err[512];

		pager_error(vm->pager, err, sizeof(err));
		vm_memory_failed(vm, err);
		status = STASIS_EXIT_USAGE;
		goto out_restore;
	}
	/* Device workers run before any vCPU can kick them; with the signals
	 * above blocked, as every thread of stasis but the vCPUs. */
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		if (virtio_device_start(&vm->virtio[i])) {
			vm_request_stop(vm, VM_STOP_CRASH, 0);
			break;
		}
	}
	/* Parked from the first instruction: the vCPUs see the request
	 * before they ever enter the guest, the workers park now, and
	 * vm_resume() releases both. */
	if (start_paused) {
		atomic_store(&vm->pause_requested, true);
		for (unsigned i = 0; i < vm->nvirtio; i++)
			virtio_device_park(&vm->virtio[i]);
	}
	/* A waiting target's threads exist already (vm_prepare_threads). */
	if (vm->vcpu_threads_made == vm->ncpus)
		vm_open_gate(vm, 1);
	for (unsigned i = 0; i < vm->ncpus && !vm->vcpu_threads_made; i++) {
		ret = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread,
				     &vm->vcpus[i]);
		if (ret) {
			log_error("cannot start vCPU %u thread: %s", i,
				  strerror(ret));
			vm_request_stop(vm, VM_STOP_CRASH, 0);
			break;
		}
		vm->vcpus[i].thread_started = true;
	}
	if (start_paused) {
		vm_kick_vcpus(vm);
		atomic_store(&vm->paused, true);
	}
	if (op_locked)
		pthread_mutex_unlock(&vm->pause_op_lock);
	op_locked = false;
	/* Every thread is made; each filtered itself as it started. A
	 * failure here leaves the guest unprotected: stop it instead. */
	if (seccomp_install(SECCOMP_ROLE_MAIN, vm->cfg.seccomp))
		vm_request_stop(vm, VM_STOP_CRASH, 0);

	while (!atomic_load(&vm->stop_reason)) {
		struct pollfd pfd[3];
		nfds_t n = 0;
		int timeout = -1;

		pfd[n++] =
		    (struct pollfd){ .fd = vm->stop_eventfd, .events = POLLIN };
		if (sfd >= 0)
			pfd[n++] =
			    (struct pollfd){ .fd = sfd, .events = POLLIN };
		if (vm->serial_in_fd >= 0 && !in.eof &&
		    !atomic_load(&vm->pause_requested)) {
			if (in.len == 0)
				pfd[n++] =
				    (struct pollfd){ .fd = vm->serial_in_fd,
						     .events = POLLIN };
			else
				timeout = 5; /* retry as the FIFO drains */
		}
		/* A working-set recording ends on time. */
		if (vm->wset_path && vm->pager && pager_recording(vm->pager)) {
			uint64_t end = vm->start_ns + vm->wset_ms * 1000000ull;
			uint64_t now = clock_now_ns(CLOCK_MONOTONIC);
			int left = now >= end
				       ? 0
				       : (int)((end - now + 999999) / 1000000);

			if (!left)
				vm_wset_end(vm);
			else if (timeout < 0 || left < timeout)
				timeout = left;
		}
		ret = poll(pfd, n, timeout);
		if (ret < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			vm_request_stop(vm, VM_STOP_CRASH, 0);
			break;
		}
		for (nfds_t i = 0; ret > 0 && i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (pfd[i].fd == sfd) {
				struct signalfd_siginfo si;

				if (read(sfd, &si, sizeof(si)) == sizeof(si))
					vm_handle_signal(vm, (int)si.ssi_signo);
			} else if (pfd[i].fd == vm->serial_in_fd) {
				ssize_t r = read(vm->serial_in_fd, in.buf,
						 sizeof(in.buf));

				if (r > 0)
					in.len = (size_t)r;
				else if (r == 0 ||
					 (errno != EAGAIN && errno != EINTR))
					in.eof = true;
			}
		}
		/* A paused VM's devices must not change under a snapshot. */
		if (!atomic_load(&vm->pause_requested))
			vm_pump_input(vm, &in);
	}

	vm_kick_vcpus(vm);
	/* A guest that stopped early: what it touched so far. */
	if (!(vm->pager && pager_failed(vm->pager)))
		vm_wset_end(vm);
	/* A vCPU or worker may wait forever on a chunk that failed: nothing
	 * unverified is ever installed. They are not joined; the process
	 * ends and takes them along (vm_destroy must not run). */
	if (vm->pager && pager_failed(vm->pager)) {
		status = vm->exit_status;
		goto out_restore;
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].thread_started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
	}
	if (vm->api) {
		api_server_stop(vm->api);
		vm->api = NULL;
	}
	switch ((enum vm_stop_reason)atomic_load(&vm->stop_reason)) {
	case VM_STOP_DEBUG_EXIT:
	case VM_STOP_SIGNAL:
	case VM_STOP_MEMORY:
		status = vm->exit_status;
		break;
	case VM_STOP_CRASH:
		status = STASIS_EXIT_GUEST_CRASH;
		break;
	default:
		status = STASIS_EXIT_OK;
		break;
	}
out_restore:
	if (op_locked)
		pthread_mutex_unlock(&vm->pause_op_lock);
	if (tio_saved)
		tcsetattr(tty_fd, TCSANOW, &saved_tio);
	if (sfd >= 0)
		close(sfd);
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);
	log_debug("%s (exit status %d)",
		  vm_stop_reason_name(atomic_load(&vm->stop_reason)), status);
	if (atomic_load(&vm->stop_reason) == VM_STOP_RESET)
		log_info("%s: stopping (stasis does not reboot guests)",
			 vm_stop_reason_name(VM_STOP_RESET));
	return status;
}

void vm_destroy(struct vm *vm)
{
	vm_set_throttle(vm, 0);
	if (vm->vcpu_threads_made && !vm->vcpu_gate)
		vm_open_gate(vm, -1);
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->ncpus; i++)
			vcpu_destroy(&vm->vcpus[i]);
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	/* Workers stop before the memory and buses they use go away. */
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_device_destroy(&vm->virtio[i]);
	pager_stop(vm->pager);
	vm->pager = NULL;
	free(vm->wset_path);
	vm->wset_path = NULL;
	vm->nvirtio = 0;
	dirty_log_destroy(&vm->dirty);
	irq_routing_destroy(&vm->irq_routing);
	uart_destroy(&vm->uart);
	rtc_destroy(&vm->rtc);
	i8042_destroy(&vm->i8042);
	pci_host_destroy(&vm->pci);
	acpi_pm_destroy(&vm->acpi_pm);
	debug_exit_destroy(&vm->debug_exit);
	host_output_close(&vm->serial_out);
	guest_mem_destroy(&vm->mem);
	free(vm->cpuid);
	vm->cpuid = NULL;
	free(vm->msr_list);
	vm->msr_list = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_eventfd >= 0)
		close(vm->stop_eventfd);
	vm->vm_fd = vm->kvm_fd = vm->stop_eventfd = -1;
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
}
