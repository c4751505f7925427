/* seccomp.c - the system calls and ioctl numbers each thread role needs,
 * as libseccomp filters; and the SIGSYS report that names the role. */
#include <errno.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/log.h"
#include "core/seccomp.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A list of system calls, or of ioctl request numbers. */
struct call_list {
	const int *nr;
	size_t n;
};
#define LIST(a)                   \
	{                         \
		(a), ARRAY_LEN(a) \
	}

/* Every thread: memory, locks, time, signals, its own exit, and the
 * stdio and log writes. Nothing here opens anything new. */
static const int calls_base[] = {
	SCMP_SYS(read),
	SCMP_SYS(write),
	SCMP_SYS(readv),
	SCMP_SYS(writev),
	SCMP_SYS(close),
	SCMP_SYS(futex),
	SCMP_SYS(mmap),
	SCMP_SYS(munmap),
	SCMP_SYS(mprotect),
	SCMP_SYS(madvise),
	SCMP_SYS(mremap),
	SCMP_SYS(brk),
	SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigaction),
	SCMP_SYS(sigaltstack),
	SCMP_SYS(exit),
	SCMP_SYS(exit_group),
	SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep),
	SCMP_SYS(gettimeofday),
	SCMP_SYS(getpid),
	SCMP_SYS(gettid),
	SCMP_SYS(tgkill),
	SCMP_SYS(sched_yield),
	SCMP_SYS(restart_syscall),
	SCMP_SYS(getrandom),
	SCMP_SYS(poll),
	SCMP_SYS(ppoll),
	SCMP_SYS(fstat),
	SCMP_SYS(newfstatat),
	SCMP_SYS(lseek),
	SCMP_SYS(fcntl),
	SCMP_SYS(rseq),
	SCMP_SYS(set_robust_list),
	SCMP_SYS(sched_getaffinity),
};

/* Sanitizer builds (the test suite's): what the ASan/UBSan runtime needs
 * to print a report with symbols (it reads /proc/self/maps and the
 * binary). Nothing else: the suite checks the filters users get. */
static const int calls_sanitizer[] = {
	SCMP_SYS(openat),
	SCMP_SYS(readlink),
	SCMP_SYS(readlinkat),
	SCMP_SYS(getdents64),
};

/* Writing a snapshot: a temporary file in the target's directory, data,
 * fsync, rename; reading the memfd's allocated ranges and the disks'
 * identity. The thread that asked for the snapshot does this. */
static const int calls_snapshot[] = {
	SCMP_SYS(openat),
	SCMP_SYS(pread64),
	SCMP_SYS(pwrite64),
	SCMP_SYS(preadv),
	SCMP_SYS(pwritev),
	SCMP_SYS(fsync),
	SCMP_SYS(fdatasync),
	SCMP_SYS(fallocate),
	SCMP_SYS(ftruncate),
	SCMP_SYS(renameat),
	SCMP_SYS(renameat2),
	SCMP_SYS(unlinkat),
	SCMP_SYS(unlink),
	SCMP_SYS(rename),
	SCMP_SYS(statx),
	SCMP_SYS(fstatfs),
	SCMP_SYS(sync_file_range),
	SCMP_SYS(fchmod),
	/* realpath(): an incremental snapshot names its parent by its
	 * absolute path (snapshot/mem_dirty.c). */
	SCMP_SYS(readlink),
	SCMP_SYS(readlinkat),
	SCMP_SYS(newfstatat),
};

/* The control API: libmicrohttpd's listener and its thread per
 * connection. Threads are made with clone and CLONE_THREAD only (clone3
 * gets ENOSYS, on which glibc falls back to clone, whose flags a filter
 * can see); the snapshot writer, in api or main, starts threads too, to
 * compress and hash chunks. */
static const int calls_api[] = {
	SCMP_SYS(accept4),     SCMP_SYS(accept),      SCMP_SYS(recvfrom),
	SCMP_SYS(recvmsg),     SCMP_SYS(sendto),      SCMP_SYS(sendmsg),
	SCMP_SYS(shutdown),    SCMP_SYS(setsockopt),  SCMP_SYS(getsockopt),
	SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(eventfd2),
	SCMP_SYS(pipe2),
};

/* Migrating the VM (migrate/): the API thread that was asked connects to
 * the destination, UNIX or TCP (a host name is resolved from /etc/hosts
 * or DNS, through openat and a socket too). */
static const int calls_migrate[] = {
	SCMP_SYS(socket),
	SCMP_SYS(connect),
};

/* Device backends: disk images, tap and UNIX sockets (a datagram link
 * connects to its peer whenever the peer's socket appears), the console's
 * socket client, entropy. */
static const int calls_worker[] = {
	SCMP_SYS(pread64),   SCMP_SYS(pwrite64),  SCMP_SYS(preadv),
	SCMP_SYS(pwritev),   SCMP_SYS(fdatasync), SCMP_SYS(fsync),
	SCMP_SYS(fallocate), SCMP_SYS(sendto),	  SCMP_SYS(sendmsg),
	SCMP_SYS(recvfrom),  SCMP_SYS(recvmsg),	  SCMP_SYS(accept4),
	SCMP_SYS(shutdown),  SCMP_SYS(connect),
};

/* vCPUs: serial output to a file, a pipe or a socket (never blocking). */
static const int calls_vcpu[] = {
	SCMP_SYS(sendto),
	SCMP_SYS(sendmsg),
};

/* Main: the API socket's removal at exit. */
static const int calls_main[] = {
	SCMP_SYS(unlink),
	SCMP_SYS(unlinkat),
	SCMP_SYS(shutdown),
};

/* Serving memory faults: the snapshot file and the userfaultfd. */
static const int calls_uffd[] = {
	SCMP_SYS(pread64),
	SCMP_SYS(preadv),
	SCMP_SYS(eventfd2),
};

/* A post-copy destination's pager threads and its push thread: a
 * faulted chunk asked for on the priority connection, and the chunks
 * that come written into the stream's spool, released once installed. */
static const int calls_postcopy[] = {
	SCMP_SYS(sendto),    SCMP_SYS(sendmsg),	  SCMP_SYS(recvfrom),
	SCMP_SYS(recvmsg),   SCMP_SYS(pwrite64),  SCMP_SYS(pwritev),
	SCMP_SYS(fallocate), SCMP_SYS(ftruncate), SCMP_SYS(shutdown),
};

/* A live snapshot's fault thread: reads faults, copies pages out of the
 * memfd with pread, removes write protection. */
static const int calls_live[] = {
	SCMP_SYS(pread64),
};

/* A live snapshot, set up by the thread that writes it (api): a
 * userfaultfd (the syscall, or /dev/userfaultfd through openat, in the
 * snapshot list) and its eventfd; the fault thread it starts stacks the
 * live role's filter on the inherited one with seccomp (a stacked filter
 * can only refuse more; see stacks_filter for the prctl it needs). */
static const int calls_live_setup[] = {
	SCMP_SYS(userfaultfd),
	SCMP_SYS(seccomp),
};

/* ioctl numbers. Interrupt lines and MSIs come from vCPUs (emulated
 * devices), workers (INTx, MSI without irqfd) and main (serial input). */
static const int ioctls_irq[] = {
	(int)KVM_IRQ_LINE,
	(int)KVM_SIGNAL_MSI,
};

/* What a guest's writes to PCI and virtio registers set up. */
static const int ioctls_vcpu[] = {
	(int)KVM_RUN,
	(int)KVM_GET_REGS,
	(int)KVM_SET_REGS,
	(int)KVM_GET_SREGS,
	(int)KVM_SET_SREGS,
	(int)KVM_SET_GSI_ROUTING,
	(int)KVM_IRQFD,
	(int)KVM_IOEVENTFD,
	(int)KVM_GET_MP_STATE,
	(int)KVM_GET_VCPU_EVENTS,
	(int)KVM_GET_LAPIC,
	/* A full dirty ring is emptied by the vCPU that hit it. */
	(int)KVM_RESET_DIRTY_RINGS,
};

/* Taking a snapshot, and resuming afterwards; a disk that is a block
 * device gives its size to the identity check. */
static const int ioctls_snapshot[] = {
	(int)BLKGETSIZE64,
	(int)KVM_GET_REGS,
	(int)KVM_GET_SREGS,
	(int)KVM_GET_MSRS,
	(int)KVM_GET_FPU,
	(int)KVM_GET_XSAVE,
	(int)KVM_GET_XSAVE2,
	(int)KVM_GET_XCRS,
	(int)KVM_GET_LAPIC,
	(int)KVM_GET_VCPU_EVENTS,
	(int)KVM_GET_MP_STATE,
	(int)KVM_GET_DEBUGREGS,
	(int)KVM_GET_IRQCHIP,
	(int)KVM_GET_PIT2,
	(int)KVM_GET_CLOCK,
	(int)KVM_SET_CLOCK,
	(int)KVM_GET_TSC_KHZ,
	(int)KVM_CHECK_EXTENSION,
	(int)KVM_KVMCLOCK_CTRL,
	(int)KVM_GET_DIRTY_LOG,
	(int)KVM_CLEAR_DIRTY_LOG,
	/* The dirty log's start at a first snapshot (memory/dirty_log.h). */
	(int)KVM_SET_USER_MEMORY_REGION,
	(int)KVM_ENABLE_CAP,
	(int)KVM_RESET_DIRTY_RINGS,
};

/* Teardown: virtio devices take back their ioeventfds and irqfds. */
static const int ioctls_teardown[] = {
	(int)KVM_IOEVENTFD,
	(int)KVM_IRQFD,
	(int)KVM_SET_GSI_ROUTING,
};

/* The terminal's mode, put back at exit. */
static const int ioctls_tty[] = {
	(int)TCGETS,
	(int)TCSETS,
	(int)TCSETSW,
	(int)TCSETSF,
};

static const int ioctls_uffd[] = {
	(int)UFFDIO_COPY,     (int)UFFDIO_ZEROPAGE,   (int)UFFDIO_WAKE,
	(int)UFFDIO_CONTINUE, (int)UFFDIO_UNREGISTER,
};

static const int ioctls_live[] = {
	(int)UFFDIO_WRITEPROTECT,
	(int)UFFDIO_WAKE,
};

/* The writer's side of a live snapshot: opening, registering, arming
 * and, at the end, releasing the tracking. */
static const int ioctls_live_setup[] = {
	(int)USERFAULTFD_IOC_NEW, (int)UFFDIO_API,
	(int)UFFDIO_REGISTER,	  (int)UFFDIO_UNREGISTER,
	(int)UFFDIO_WRITEPROTECT,
};

/* A role's filter: up to five call lists and four ioctl lists;
 * stacks_filter lets its threads load another filter on top. */
struct role_filter {
	const char *name;
	struct call_list calls[5];
	struct call_list ioctls[4];
	bool clone_threads;
	bool stacks_filter;
};

static const struct role_filter role_filters[SECCOMP_ROLE_COUNT] = {
	[SECCOMP_ROLE_MAIN] = {
		.name = "main",
		.calls = { LIST(calls_base), LIST(calls_main),
			   LIST(calls_snapshot) },
		.ioctls = { LIST(ioctls_irq), LIST(ioctls_tty),
			    LIST(ioctls_snapshot), LIST(ioctls_teardown) },
		.clone_threads = true, /* the snapshot writer's helpers */
	},
	[SECCOMP_ROLE_VCPU] = {
		.name = "vcpu",
		.calls = { LIST(calls_base), LIST(calls_vcpu) },
		.ioctls = { LIST(ioctls_irq), LIST(ioctls_vcpu) },
	},
	[SECCOMP_ROLE_WORKER] = {
		.name = "worker",
		.calls = { LIST(calls_base), LIST(calls_worker) },
		.ioctls = { LIST(ioctls_irq) },
	},
	[SECCOMP_ROLE_API] = {
		.name = "api",
		.calls = { LIST(calls_base), LIST(calls_api),
			   LIST(calls_snapshot), LIST(calls_migrate),
			   LIST(calls_live_setup) },
		.ioctls = { LIST(ioctls_snapshot), LIST(ioctls_live_setup) },
		.clone_threads = true,
		.stacks_filter = true, /* a live snapshot's fault thread */
	},
	[SECCOMP_ROLE_UFFD] = {
		.name = "uffd",
		.calls = { LIST(calls_base), LIST(calls_uffd),
			   LIST(calls_postcopy) },
		.ioctls = { LIST(ioctls_uffd) },
	},
	[SECCOMP_ROLE_LIVE] = {
		.name = "live",
		.calls = { LIST(calls_base), LIST(calls_live) },
		.ioctls = { LIST(ioctls_live) },
	},
};

/* The calling thread's role, for the SIGSYS report: a signal handler has
 * no context but the thread it runs on. */
static _Thread_local int thread_role = -1;

const char *seccomp_role_name(enum seccomp_role role)
{
	return role < SECCOMP_ROLE_COUNT ? role_filters[role].name : "?";
}

int seccomp_mode_parse(const char *s, enum seccomp_mode *out)
{
	if (!strcmp(s, "on"))
		*out = SECCOMP_ON;
	else if (!strcmp(s, "log"))
		*out = SECCOMP_LOG;
	else if (!strcmp(s, "off"))
		*out = SECCOMP_OFF;
	else
		return -EINVAL;
	return 0;
}

const char *seccomp_mode_name(enum seccomp_mode mode)
{
	return mode == SECCOMP_ON ? "on" : mode == SECCOMP_LOG ? "log" : "off";
}

/* Formats @v in decimal at @p; returns the end. Async-signal-safe. */
static char *put_uint(char *p, unsigned long v)
{
	char tmp[24];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < (int)sizeof(tmp));
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *put_hex(char *p, unsigned long v)
{
	static const char digits[] = "0123456789abcdef";
	int shift = 60;

	p = put_str(p, "0x");
	while (shift > 0 && !(v >> shift))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		*p++ = digits[(v >> shift) & 0xf];
	return p;
}

/* Says which role made which call (for ioctl, which request: its second
 * argument is in %rsi), then dies of SIGSYS as if unhandled: only
 * async-signal-safe calls, all in every role's list. */
static void seccomp_sigsys(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	const ucontext_t *ctx = uc;
	char line[200], *p = line;
	ssize_t unused;

	p = put_str(p, "stasis: error: seccomp: the ");
	/* A thread that never loaded a filter but has one inherited it: only
	 * the api and main roles start threads (connections, the snapshot
	 * writer's helpers). */
	p = put_str(p, thread_role >= 0
			   ? seccomp_role_name((enum seccomp_role)thread_role)
			   : "helper (started by an api or main thread)");
	p = put_str(p, " thread made system call ");
	p = put_uint(p, (unsigned long)si->si_syscall);
	if (si->si_syscall == __NR_ioctl) {
		p = put_str(p, " (ioctl ");
		p = put_hex(p, (unsigned long)ctx->uc_mcontext.gregs[REG_RSI] &
				   0xffffffffu);
		p = put_str(p, ")");
	}
	p = put_str(p, ", which its filter refuses; stopping "
		       "(--seccomp log reports without stopping)\n");
	unused = write(STDERR_FILENO, line, (size_t)(p - line));
	(void)unused;
	sigaction(sig, &dfl, NULL);
	raise(sig);
}

void seccomp_report_init(void)
{
	struct sigaction sa = { .sa_sigaction = seccomp_sigsys,
				.sa_flags = SA_SIGINFO };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
}

static int rules_add(scmp_filter_ctx ctx, const struct role_filter *f,
		     bool sanitized)
{
	int ret = 0;

	for (size_t l = 0; !ret && l < ARRAY_LEN(f->calls); l++)
		for (size_t i = 0; !ret && i < f->calls[l].n; i++)
			ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW,
					       f->calls[l].nr[i], 0);
	for (size_t l = 0; !ret && l < ARRAY_LEN(f->ioctls); l++)
		for (size_t i = 0; !ret && i < f->ioctls[l].n; i++)
			/* The request is an int in the ABI: the upper half
			 * of the register is not part of it. */
			ret = seccomp_rule_add(
			    ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
			    SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
				    (uint32_t)f->ioctls[l].nr[i]));
	/* Naming itself (pthread_setname_np: libmicrohttpd names its
	 * threads) and nothing else prctl can do. */
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				       SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
	/* seccomp_load() sets no_new_privs (already set: it only confirms)
	 * before the seccomp call; the prctl(PR_SET_SECCOMP) it falls back
	 * to is for kernels older than stasis needs. */
	if (!ret && f->stacks_filter)
		ret =
		    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 2,
				     SCMP_A0(SCMP_CMP_EQ, PR_SET_NO_NEW_PRIVS),
				     SCMP_A1(SCMP_CMP_EQ, 1));
	if (!ret && f->clone_threads)
		ret = seccomp_rule_add(
		    ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
		    SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (!ret && f->clone_threads)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS),
				       SCMP_SYS(clone3), 0);
	for (size_t i = 0; !ret && sanitized && i < ARRAY_LEN(calls_sanitizer);
	     i++)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls_sanitizer[i],
				       0);
	return ret;
}

int seccomp_install(enum seccomp_role role, enum seccomp_mode mode)
{
#if defined(__SANITIZE_ADDRESS__)
	const bool sanitized = true;
#else
	const bool sanitized = false;
#endif
	scmp_filter_ctx ctx;
	int ret;

	if (mode == SECCOMP_OFF)
		return 0;
	if (role >= SECCOMP_ROLE_COUNT)
		return -EINVAL;
	ctx = seccomp_init(mode == SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	if (!ctx) {
		log_error("seccomp: cannot make the %s thread's filter",
			  seccomp_role_name(role));
		return -ENOMEM;
	}
	/* Rules a list repeats (an ioctl in two lists) are merged. */
	ret = rules_add(ctx, &role_filters[role], sanitized);
	if (!ret)
		ret = seccomp_load(ctx);
	seccomp_release(ctx);
	if (ret) {
		log_error("seccomp: cannot load the %s thread's filter: %s",
			  seccomp_role_name(role), strerror(-ret));
		return ret;
	}
	thread_role = (int)role;
	return 0;
}
