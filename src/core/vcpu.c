/* One thread per vCPU: KVM_RUN in a loop and a bounded table of exit
 * handlers, readable top to bottom. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/kvm.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/seccomp.h"
#include "core/timings.h"
#include "core/vm.h"
#include "cpu/cpuid.h"

/* What the run loop does after an exit handler. */
enum vcpu_action {
	VCPU_CONTINUE,
	VCPU_STOP,
};

typedef enum vcpu_action (*vcpu_exit_fn)(struct vcpu *vcpu);

int vcpu_create(struct vm *vm, struct vcpu *vcpu, unsigned id)
{
	int ret;

	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = kvm_ioctl(vm->vm_fd, KVM_CREATE_VCPU, (void *)(long)id);
	if (vcpu->fd < 0) {
		ret = vcpu->fd;
		log_error("vCPU %u: KVM_CREATE_VCPU: %s", id, strerror(-ret));
		vcpu->fd = -1;
		return ret;
	}
	vcpu->run = mmap(NULL, (size_t)vm->vcpu_mmap_size,
			 PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		ret = -errno;
		vcpu->run = NULL;
		log_error("vCPU %u: mmap of kvm_run: %s", id, strerror(-ret));
		goto err_close;
	}
	return 0;

err_close:
	close(vcpu->fd);
	vcpu->fd = -1;
	return ret;
}

int vcpu_set_cpuid(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct kvm_cpuid2 *cpuid;
	int ret;

	cpuid = cpuid_for_vcpu(vm->cpuid, vcpu->id, vm->ncpus);
	if (!cpuid)
		return -ENOMEM;
	ret = kvm_ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid);
	free(cpuid);
	if (ret < 0)
		log_error("vCPU %u: KVM_SET_CPUID2: %s", vcpu->id,
			  strerror(-ret));
	return ret < 0 ? ret : 0;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, (size_t)vcpu->vm->vcpu_mmap_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

static void vcpu_set_segment(struct kvm_segment *s, uint16_t sel, bool code,
			     bool l, bool db)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = code ? 0xb : 0x3; /* execute/read accessed, read/write */
	s->present = 1;
	s->dpl = 0;
	s->db = db;
	s->s = 1;
	s->l = l;
	s->g = 1;
}

/* Control register and EFER bits (Intel SDM vol. 3A, 2.5 and 2.2.1). */
#define X86_CR0_PE (1ull << 0)
#define X86_CR0_ET (1ull << 4)
#define X86_CR0_PG (1ull << 31)
#define X86_CR4_PAE (1ull << 5)
#define X86_EFER_LME (1ull << 8)
#define X86_EFER_LMA (1ull << 10)

int vcpu_set_boot_state(struct vcpu *vcpu, const struct boot_cpu *boot)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int ret;

	ret = kvm_ioctl(vcpu->fd, KVM_GET_SREGS, &sregs);
	if (ret < 0)
		return ret;
	if (boot->long_mode) {
		vcpu_set_segment(&sregs.cs, PLATFORM_BOOT_CS64, true, true,
				 false);
		sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
		sregs.cr3 = boot->cr3;
		sregs.cr4 = X86_CR4_PAE;
		sregs.efer = X86_EFER_LME | X86_EFER_LMA;
	} else {
		/* PVH: 32-bit flat protected mode, paging off. */
		vcpu_set_segment(&sregs.cs, PLATFORM_BOOT_CS32, true, false,
				 true);
		sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	vcpu_set_segment(&sregs.ds, PLATFORM_BOOT_DS, false, false, true);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = boot->gdt_base;
	sregs.gdt.limit = boot->gdt_limit;
	ret = kvm_ioctl(vcpu->fd, KVM_SET_SREGS, &sregs);
	if (ret < 0)
		return ret;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2; /* bit 1 is reserved and always set */
	regs.rip = boot->rip;
	regs.rbx = boot->rbx;
	regs.rsi = boot->rsi;
	return kvm_ioctl(vcpu->fd, KVM_SET_REGS, &regs);
}

void vcpu_dump(struct vcpu *vcpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (kvm_ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 ||
	    kvm_ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0) {
		log_error("vCPU %u: cannot read registers", vcpu->id);
		return;
	}
	fprintf(stderr,
		"vCPU %u registers:\n"
		"  rip %016llx rflags %016llx\n"
		"  rax %016llx rbx %016llx rcx %016llx rdx %016llx\n"
		"  rsi %016llx rdi %016llx rbp %016llx rsp %016llx\n"
		"  r8  %016llx r9  %016llx r10 %016llx r11 %016llx\n"
		"  r12 %016llx r13 %016llx r14 %016llx r15 %016llx\n"
		"  cs %04x ss %04x cr0 %llx cr2 %llx cr3 %llx cr4 %llx "
		"efer %llx\n",
		vcpu->id, r.rip, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi,
		r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
		r.r14, r.r15, s.cs.selector, s.ss.selector, s.cr0, s.cr2, s.cr3,
		s.cr4, s.efer);
}

static enum vcpu_action vcpu_exit_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	/* String I/O (rep ins/outs) arrives as count back-to-back items. */
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (bus_dispatch(&vcpu->vm->pio, run->io.port,
				 data + i * run->io.size, run->io.size,
				 is_write) == -ENOENT)
			log_debug("vCPU %u: unclaimed port %s 0x%x size %u",
				  vcpu->id, is_write ? "write" : "read",
				  run->io.port, run->io.size);
	}
	return VCPU_CONTINUE;
}

static enum vcpu_action vcpu_exit_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	if (run->mmio.len > sizeof(run->mmio.data))
		return VCPU_CONTINUE;
	if (!run->mmio.is_write)
		memset(run->mmio.data, 0, sizeof(run->mmio.data));
	if (bus_dispatch(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data,
			 run->mmio.len, run->mmio.is_write) == -ENOENT)
		log_debug("vCPU %u: unclaimed MMIO %s 0x%llx len %u", vcpu->id,
			  run->mmio.is_write ? "write" : "read",
			  run->mmio.phys_addr, run->mmio.len);
	return VCPU_CONTINUE;
}

static enum vcpu_action vcpu_exit_continue(struct vcpu *vcpu)
{
	return VCPU_CONTINUE;
}

/* Whether the vCPU holds its power-on register values (SDM vol. 3A
 * 9.1.4): where KVM hands back a shut-down vCPU so (AMD SVM reinitialises
 * the VMCB on a shutdown intercept), the guest's last state is gone. */
static bool vcpu_in_reset_state(struct vcpu *vcpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	return kvm_ioctl(vcpu->fd, KVM_GET_REGS, &r) >= 0 &&
	       kvm_ioctl(vcpu->fd, KVM_GET_SREGS, &s) >= 0 && r.rip == 0xfff0 &&
	       s.cs.selector == 0xf000 && !(s.cr0 & 1);
}

static enum vcpu_action vcpu_exit_shutdown(struct vcpu *vcpu)
{
	log_error("vCPU %u: triple fault (KVM_EXIT_SHUTDOWN)", vcpu->id);
	vcpu_dump(vcpu);
	if (vcpu_in_reset_state(vcpu))
		log_error("vCPU %u: these are its power-on values: this host's "
			  "KVM resets a vCPU that shut down, so the state "
			  "before the fault is not known",
			  vcpu->id);
	vm_request_stop(vcpu->vm, VM_STOP_CRASH, 0);
	return VCPU_STOP;
}

static enum vcpu_action vcpu_exit_fail_entry(struct vcpu *vcpu)
{
	log_error("vCPU %u: KVM could not enter the guest "
		  "(hardware reason 0x%llx)",
		  vcpu->id,
		  (unsigned long long)
		      vcpu->run->fail_entry.hardware_entry_failure_reason);
	vcpu_dump(vcpu);
	vm_request_stop(vcpu->vm, VM_STOP_CRASH, 0);
	return VCPU_STOP;
}

static const char *const vcpu_internal_errors[] = {
	[KVM_INTERNAL_ERROR_EMULATION] = "instruction emulation failed",
	[KVM_INTERNAL_ERROR_SIMUL_EX] = "exception while delivering one",
	[KVM_INTERNAL_ERROR_DELIVERY_EV] = "event delivery failed",
	[KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON] = "unexpected exit",
};

static enum vcpu_action vcpu_exit_internal_error(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint32_t sub = run->internal.suberror;
	const char *what = "unknown";
	struct kvm_regs r;

	if (sub < sizeof(vcpu_internal_errors) /
		      sizeof(vcpu_internal_errors[0]) &&
	    vcpu_internal_errors[sub])
		what = vcpu_internal_errors[sub];
	log_error("vCPU %u: KVM internal error %u: %s", vcpu->id, sub, what);
	if (sub == KVM_INTERNAL_ERROR_EMULATION &&
	    kvm_ioctl(vcpu->fd, KVM_GET_REGS, &r) == 0) {
		uint8_t insn[16];
		uint64_t rip = r.rip;

		/* Show the instruction bytes when RIP is guest-physical RAM
		 * (true before paging, and for identity-mapped kernels). */
		if (guest_mem_read(&vcpu->vm->mem, rip, insn, sizeof(insn)) ==
		    0)
			fprintf(stderr,
				"  instruction at 0x%" PRIx64
				": %02x %02x %02x %02x %02x %02x %02x %02x\n",
				rip, insn[0], insn[1], insn[2], insn[3],
				insn[4], insn[5], insn[6], insn[7]);
	}
	vcpu_dump(vcpu);
	vm_request_stop(vcpu->vm, VM_STOP_CRASH, 0);
	return VCPU_STOP;
}

static enum vcpu_action vcpu_exit_system_event(struct vcpu *vcpu)
{
	switch (vcpu->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_stop(vcpu->vm, VM_STOP_POWEROFF, 0);
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_stop(vcpu->vm, VM_STOP_RESET, 0);
		break;
	default:
		log_error("vCPU %u: system event %u", vcpu->id,
			  vcpu->run->system_event.type);
		vm_request_stop(vcpu->vm, VM_STOP_CRASH, 0);
		break;
	}
	return VCPU_STOP;
}

/* KVM stops a vCPU whose dirty ring is full (memory/dirty_log.h): the
 * rings are harvested into the log and reset, and the vCPU runs on. */
static enum vcpu_action vcpu_exit_dirty_ring_full(struct vcpu *vcpu)
{
	int ret = dirty_log_ring_full(&vcpu->vm->dirty);

	if (ret == 0)
		return VCPU_CONTINUE;
	log_error("vCPU %u: dirty ring reset: %s", vcpu->id, strerror(-ret));
	vm_request_stop(vcpu->vm, VM_STOP_CRASH, 0);
	return VCPU_STOP;
}

/* Exit reasons stasis handles; anything else stops the VM as a crash. */
static const vcpu_exit_fn vcpu_exit_handlers[] = {
	[KVM_EXIT_IO] = vcpu_exit_io,
	[KVM_EXIT_MMIO] = vcpu_exit_mmio,
	[KVM_EXIT_HLT] = vcpu_exit_continue,
	[KVM_EXIT_INTR] = vcpu_exit_continue,
	[KVM_EXIT_IRQ_WINDOW_OPEN] = vcpu_exit_continue,
	[KVM_EXIT_SHUTDOWN] = vcpu_exit_shutdown,
	[KVM_EXIT_FAIL_ENTRY] = vcpu_exit_fail_entry,
	[KVM_EXIT_INTERNAL_ERROR] = vcpu_exit_internal_error,
	[KVM_EXIT_SYSTEM_EVENT] = vcpu_exit_system_event,
	[KVM_EXIT_DIRTY_RING_FULL] = vcpu_exit_dirty_ring_full,
};

#define VCPU_NR_EXIT_HANDLERS \
	(sizeof(vcpu_exit_handlers) / sizeof(vcpu_exit_handlers[0]))

static enum vcpu_action vcpu_dispatch_exit(struct vcpu *vcpu)
{
	uint32_t reason = vcpu->run->exit_reason;

	vcpu->exits++;
	if (reason < VCPU_NR_EXIT_HANDLERS && vcpu_exit_handlers[reason])
		return vcpu_exit_handlers[reason](vcpu);
	log_error("vCPU %u: unhandled KVM exit reason %u", vcpu->id, reason);
	vcpu_dump(vcpu);
	vm_request_stop(vcpu->vm, VM_STOP_CRASH, 0);
	return VCPU_STOP;
}

/* Waits, parked, while a pause is in force. Called only right after
 * KVM_RUN returned EINTR, when KVM has completed any half-done I/O exit,
 * so the state a snapshot reads is consistent (KVM API, "kvm_run"). */
static void vcpu_park(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_requested) &&
	       !atomic_load(&vm->stop_reason))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

/* Auto-converge (vm_set_throttle): after a kick, sleeps the throttled
 * share of the kicker's period outside KVM_RUN. A pause's kick ends the
 * sleep early (the signal interrupts it), so a throttle never delays a
 * pause. */
static void vcpu_throttle(struct vcpu *vcpu)
{
	unsigned pct = atomic_load(&vcpu->vm->throttle_pct);
	long ns = (long)VM_THROTTLE_PERIOD_MS * 1000000L / 100 * pct;
	struct timespec ts = { .tv_nsec = ns };

	if (pct && !atomic_load(&vcpu->vm->pause_requested))
		nanosleep(&ts, NULL);
}

void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	/* vCPU 0 stamps its first real entry and exit (a kick before the
	 * guest ran, as --paused gives, does not count). */
	struct timings *t = vcpu->id == 0 ? vm->cfg.timings : NULL;
	sigset_t set;

	/* The kick signal is blocked everywhere but here. */
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if (!vcpu->filtered &&
	    seccomp_install(SECCOMP_ROLE_VCPU, vm->cfg.seccomp)) {
		vm_request_stop(vm, VM_STOP_CRASH, 0);
		return NULL;
	}

	/* Started paused (--paused): park before the first entry, or the
	 * guest would run until the kick and change what a snapshot of the
	 * paused VM reads. Nothing is half done before the first KVM_RUN. */
	if (atomic_load(&vm->pause_requested))
		vcpu_park(vcpu);
	while (!atomic_load(&vm->stop_reason)) {
		uint64_t entered = t ? clock_now_ns(CLOCK_MONOTONIC) : 0;
		int ret = ioctl(vcpu->fd, KVM_RUN, 0);

		if (t && ret >= 0) {
			atomic_store(&t->at[TIMING_RUN], entered);
			timings_mark(t, TIMING_EXIT);
			if (t->report)
				timings_print(t);
			t = NULL;
		}
		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu->run->immediate_exit = 0;
				if (atomic_load(&vm->pause_requested))
					vcpu_park(vcpu);
				else
					vcpu_throttle(vcpu);
				continue;
			}
			log_error("vCPU %u: KVM_RUN: %s", vcpu->id,
				  strerror(errno));
			vm_request_stop(vm, VM_STOP_CRASH, 0);
			break;
		}
		if (vcpu_dispatch_exit(vcpu) == VCPU_STOP)
			break;
	}
	return NULL;
}
