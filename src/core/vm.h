/* struct vm owns everything a running machine has: the KVM handles, guest
 * memory, buses, devices and vCPUs. This header is the core's interface. */
#ifndef STASIS_VM_H
#define STASIS_VM_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "boot/boot.h"
#include "bus/bus.h"
#include "control/api.h"
#include "core/config.h"
#include "core/host_output.h"
#include "core/irq_routing.h"
#include "devices/acpi_pm.h"
#include "devices/vmgenid.h"
#include "devices/debug_exit.h"
#include "devices/i8042.h"
#include "devices/pci.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "memory/dirty_log.h"
#include "memory/guest_mem.h"
#include "snapshot/chain.h"
#include "snapshot/snapfile.h"
#include "virtio/virtio.h"

/* Process exit statuses. They are all even so that they never collide
 * with the odd statuses (v << 1) | 1 of the isa-debug-exit port. */
#define STASIS_EXIT_OK 0
#define STASIS_EXIT_USAGE 2 /* bad option, config, kernel or snapshot */
#define STASIS_EXIT_GUEST_CRASH 4 /* triple fault, emulation failure */
#define STASIS_EXIT_HOST 6 /* KVM missing, out of memory, I/O error */

/* virtio-pci devices: every disk and network, a console, an RNG. */
#define VM_MAX_VIRTIO (CONFIG_MAX_DISKS + CONFIG_MAX_NETS + 2)

/* Why the VM stopped; the order matters only in that VM_RUNNING is 0. */
enum vm_stop_reason {
	VM_RUNNING = 0,
	VM_STOP_DEBUG_EXIT, /* guest wrote the isa-debug-exit port */
	VM_STOP_POWEROFF, /* ACPI S5 */
	VM_STOP_RESET, /* ACPI reset register, i8042 pulse, triple fault */
	VM_STOP_CRASH, /* internal error, failed entry, unhandled exit */
	VM_STOP_SIGNAL, /* SIGINT/SIGTERM to stasis */
	VM_STOP_REQUEST, /* control API shutdown, snapshot --then exit */
	VM_STOP_MEMORY, /* a lazily restored chunk failed its check */
};

struct pager;

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run; /* shared page KVM fills on each exit */
	pthread_t thread;
	bool thread_started;
	bool filtered; /* its seccomp filter is loaded (made ahead) */
	uint64_t exits; /* count, for status and debugging */
};

/* A migration's pre-copy as GET /vm shows it (migrate/): set by the
 * migration's thread after each round, read by the status. */
struct migrate_stats {
	_Atomic uint64_t rounds;
	_Atomic uint64_t bytes_sent;
	_Atomic uint64_t dirty_rate; /* bytes/s the guest dirtied last round */
	_Atomic uint64_t link_rate; /* bytes/s the last round was sent at */
	_Atomic uint64_t expected_downtime_ms; /* the rest at that rate */
};

/* Auto-converge's period: a throttled vCPU is kicked out of KVM_RUN this
 * often and sleeps its share of it. */
#define VM_THROTTLE_PERIOD_MS 10

struct vm {
	struct vm_config cfg;

	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;
	struct kvm_cpuid2 *cpuid; /* after the template, before per-vCPU ids */

	struct guest_mem mem;
	/* Pages written since the last snapshot (memory/dirty_log.h):
	 * started by the first snapshot, a restore or --track-dirty. */
	struct dirty_log dirty;
	/* The VM's id and the snapshot its dirty log counts from: what an
	 * incremental snapshot names as its parent (snapshot/chain.h). */
	struct snap_vm_lineage lineage;
	/* Serves guest memory during a lazy restore (snapshot/pager.h);
	 * NULL otherwise. */
	struct pager *pager;
	/* --record-working-set: the file the recording goes to (NULL when
	 * none), the snapshot identity it names, and its length in ms from
	 * vm_run (snapshot_wset_finish ends it). */
	char *wset_path;
	uint64_t wset_id;
	uint32_t wset_ms;
	struct bus pio;
	struct bus mmio;

	unsigned ncpus;
	struct vcpu *vcpus;
	struct boot_result boot;

	/* Devices: each owns its state and lock. */
	struct uart uart;
	struct rtc rtc;
	struct i8042 i8042;
	struct debug_exit debug_exit;
	struct pci_host pci;
	struct acpi_pm acpi_pm;
	struct vmgenid vmgenid;
	/* GSI routes: the IOAPIC/PIC defaults and the MSI-X vectors. */
	struct irq_routing irq_routing;
	/* In PCI slot order from 1: disks, nets, console, rng. */
	struct virtio_device virtio[VM_MAX_VIRTIO];
	unsigned nvirtio;

	/* Stopping: the first stop request wins; the main loop sees it through
	 * stop_eventfd and kicks the vCPUs out of KVM_RUN. */
	atomic_int stop_reason;
	int exit_status;
	int stop_eventfd;
	int serial_in_fd; /* host input for the UART, -1 when none */
	struct host_output serial_out; /* guest output; fd -1: discarded */
	uint64_t start_ns; /* CLOCK_MONOTONIC at vm_run */

	/* Pause protocol: pause_requested is set before the vCPUs are kicked;
	 * each vCPU parks after KVM_RUN returns EINTR (so a half-done I/O exit
	 * is completed first) and waits on pause_cond. One vm_pause or
	 * vm_resume runs at a time (pause_op_lock, taken before pause_lock),
	 * so the virtio workers, parked outside pause_lock, are parked and
	 * unparked in pairs. */
	pthread_mutex_t pause_op_lock;
	/* Set by whoever took pause_op_lock for vm_run to release once the
	 * vCPUs exist (a waiting target, as it answers its restore). */
	bool pause_op_held;
	/* vm_prepare_threads: this many vCPU threads exist and wait at a
	 * gate (under pause_lock, on pause_cond) that vm_run opens (1) or
	 * vm_destroy closes (-1); 0 while they wait. Until it opens they
	 * are not thread_started: nothing kicks them. */
	unsigned vcpu_threads_made;
	int vcpu_gate;
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	atomic_bool pause_requested;
	atomic_bool paused; /* every vCPU is parked */
	unsigned parked;
	uint64_t last_pause_ns;

	/* One snapshot at a time; progress is read by the status API. */
	pthread_mutex_t snapshot_lock;
	atomic_bool snapshot_active;
	/* Held while the control API's pause or resume decides and acts, and
	 * while a snapshot sets or clears snapshot_active with its own pause
	 * and resume: no API resume lands between a snapshot's pause and the
	 * end of its save (which would write memory the guest is changing).
	 * Taken before pause_op_lock; never held across a save. */
	pthread_mutex_t run_state_lock;
	struct snap_progress snapshot_progress;
	/* A migration (migrate/): its enum migrate_phase, and whether this
	 * copy was handed over, after which it never runs again. */
	atomic_int migrate_phase;
	atomic_bool migrated;
	struct migrate_stats migrate_stats;
	/* Auto-converge: each vCPU spends this percentage of its time
	 * outside KVM_RUN (0: none), kicked out every
	 * VM_THROTTLE_PERIOD_MS by the throttle thread (vm_set_throttle). */
	atomic_uint throttle_pct;
	bool throttle_running;
	atomic_bool throttle_stop;
	pthread_t throttle_thread;
	/* `stasis receive` of a post-copy migration: its report, for
	 * GET /vm (migrate_in_postcopy_stats); NULL otherwise. */
	struct migrate_in *incoming;
	/* The last snapshot written and what it cost (under pause_lock). */
	bool have_last_snapshot;
	struct snapshot_stats last_snapshot;

	uint32_t *msr_list; /* MSRs KVM can save */
	uint32_t nmsrs;
	struct api_server *api;
};

/* Opens /dev/kvm, checks capabilities, creates the VM, its memory, devices
 * and vCPUs from @cfg. @cpuid, when not NULL, is the guest CPUID to use
 * (from a snapshot; it must be a subset of what this host supports),
 * otherwise the config's template is applied to the host's. Returns 0 or
 * -errno after printing a one-line reason. On failure everything created
 * so far is released. */
int vm_create(struct vm *vm, const struct vm_config *cfg,
	      const struct kvm_cpuid2 *cpuid);

/* vm_create() in two halves, for a restore target made ahead of time:
 * vm_prepare() opens KVM, creates the VM, @mem_size bytes of guest memory
 * (registered with KVM before the irqchip, where it is cheap), the
 * irqchip, @cfg->ncpus vCPUs, and asks the host's CPUID and MSR list;
 * only @cfg's host side matters to it. vm_complete() makes it the VM of
 * @cfg (at most @mem_size of RAM, exactly its vCPU count): its CPUID,
 * devices and routes. Both print a one-line reason and return -errno;
 * after a failed vm_complete() the caller must vm_destroy(). */
int vm_prepare(struct vm *vm, const struct vm_config *cfg, uint64_t mem_size);
int vm_complete(struct vm *vm, const struct vm_config *cfg,
		const struct kvm_cpuid2 *cpuid);

/* Starts the vCPU threads of a prepared VM ahead of time, waiting at a
 * gate: vm_run lets them run instead of creating them, vm_destroy ends
 * them if it never did. They load their seccomp filter once let through.
 * Returns 0 or -errno (none is left then). */
int vm_prepare_threads(struct vm *vm);

/* The kernel and initrd files, mapped read-only. */
struct vm_images {
	const uint8_t *kernel;
	size_t kernel_len;
	const uint8_t *initrd;
	size_t initrd_len;
};

/* Maps the config's kernel and initrd and checks the kernel's format, so
 * that a bad file is reported before any KVM work. Returns 0 or -errno
 * after printing a one-line reason. */
int vm_images_open(const struct vm_config *cfg, struct vm_images *img);
void vm_images_close(struct vm_images *img);

/* Loads the images into guest memory and sets the boot vCPU's state. */
int vm_boot(struct vm *vm, const struct vm_images *img);

/* Starts the vCPU threads (parked at once when @start_paused) and serves
 * host input and the control API until the VM stops. Returns the process
 * exit status stasis should end with. */
int vm_run(struct vm *vm, bool start_paused);

/* Parks every vCPU; returns when all are parked (0), or -EALREADY,
 * -ESHUTDOWN when the VM is stopping. Thread-safe. */
int vm_pause(struct vm *vm);

/* Throttles every vCPU to spend @pct percent (0 to 99) of its time outside
 * KVM_RUN; 0 lifts it, and stops the thread that kicks them. 0 or -errno
 * (the thread could not be started). */
int vm_set_throttle(struct vm *vm, unsigned pct);
int vm_resume(struct vm *vm);
void vm_get_status(struct vm *vm, struct vm_status *st);

/* Pauses (if running), writes a snapshot to @path atomically (with
 * @base, an increment over that file: snapshot_save), then does @then;
 * with @live and a running VM, pauses only to take state and arm tracking
 * and writes memory with the guest running (snapshot_save_live). On
 * failure any earlier file at @path is untouched and the VM runs on,
 * unless it was paused before or @then is VM_THEN_PAUSE. Fills @stats
 * (may be NULL). Returns 0 or -errno with a one-line reason in @err;
 * -EBUSY while another snapshot runs. */
int vm_snapshot(struct vm *vm, const char *path, const char *base,
		enum vm_then then, const struct snap_compress *compress,
		bool live, struct snapshot_stats *stats, char *err,
		size_t errlen);

/* The API callbacks for a VM (ctx is the struct vm). */
extern const struct api_ops vm_api_ops;

/* Releases everything; safe after a failed vm_create(). */
void vm_destroy(struct vm *vm);

/* Asks the VM to stop. Callable from any thread, including vCPU threads
 * and device handlers; the first request's reason and status are kept. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason,
		     int exit_status);

/* Drives a GSI of the in-kernel IOAPIC/PIC (KVM_IRQ_LINE). */
int vm_set_irq(struct vm *vm, uint32_t gsi, int level);

/* vCPU side (core/vcpu.c). */
int vcpu_create(struct vm *vm, struct vcpu *vcpu, unsigned id);
/* KVM_SET_CPUID2 of the VM's CPUID for this vCPU (before its first run). */
int vcpu_set_cpuid(struct vcpu *vcpu);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_set_boot_state(struct vcpu *vcpu, const struct boot_cpu *boot);
void *vcpu_thread(void *arg);
/* Prints registers to stderr, for fatal exits. */
void vcpu_dump(struct vcpu *vcpu);

/* The signal used to kick vCPU threads out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1

#endif
