/* /dev/kvm access and the capability table stasis needs. */
#include "core/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "core/log.h"

struct kvm_required_cap {
	long cap;
	const char *name;
	const char *why;
};

static const struct kvm_required_cap kvm_required_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM" },
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "in-kernel PIC/IOAPIC/LAPIC" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2", "in-kernel PIT" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "VMX TSS placement" },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR",
	  "VMX identity map placement" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "CPUID templates" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT",
	  "kicking vCPUs out of KVM_RUN" },
	{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", "saving vCPU run state" },
	{ KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS", "saving pending events" },
	{ KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS", "saving debug registers" },
	{ KVM_CAP_XSAVE, "KVM_CAP_XSAVE", "saving extended FPU state" },
	{ KVM_CAP_XCRS, "KVM_CAP_XCRS", "saving XCR0" },
	{ KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK", "saving kvmclock" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING", "interrupt routing" },
};

int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, req, arg);
	} while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : ret;
}

int kvm_cap(int fd, long cap)
{
	int ret = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return ret < 0 ? 0 : ret;
}

int kvm_open(void)
{
	int fd, ver, err;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		if (err == -ENOENT)
			log_error("/dev/kvm does not exist: this host has no "
				  "KVM (load kvm_intel or kvm_amd, or enable "
				  "nested virtualisation)");
		else if (err == -EACCES)
			log_error("/dev/kvm: permission denied (add the user "
				  "to the kvm group)");
		else
			log_error("/dev/kvm: %s", strerror(-err));
		return err;
	}
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		log_error("/dev/kvm: API version %d, stasis needs %d", ver,
			  KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

int kvm_check_caps(int kvm_fd)
{
	for (size_t i = 0;
	     i < sizeof(kvm_required_caps) / sizeof(kvm_required_caps[0]);
	     i++) {
		const struct kvm_required_cap *c = &kvm_required_caps[i];

		if (!kvm_cap(kvm_fd, c->cap)) {
			log_error("KVM lacks %s (needed for %s)", c->name,
				  c->why);
			return -ENOTSUP;
		}
	}
	return 0;
}
