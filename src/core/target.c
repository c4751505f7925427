/* The waiting restore target: its API callbacks while it waits (status,
 * restore; the rest refused), then the restored VM's own; and the
 * hand-over of each restore request to the main thread, which alone
 * creates and runs VMs. */
#include "core/target.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/timings.h"
#include "core/vm.h"

/* The restored VM, or NULL (with a reason in @err) while there is none. */
static struct vm *vm_target_vm(struct vm_target *t, char *err, size_t errlen)
{
	enum vm_target_state st;

	pthread_mutex_lock(&t->lock);
	st = t->state;
	pthread_mutex_unlock(&t->lock);
	if (st == VM_TARGET_RESTORED)
		return t->vm;
	snprintf(err, errlen, "%s",
		 st == VM_TARGET_BUSY
		     ? "a snapshot is being restored into this target"
		     : "no VM yet: this target waits for PUT /vm/restore");
	return NULL;
}

static int vm_target_pause(void *ctx, char *err, size_t errlen)
{
	struct vm *vm = vm_target_vm(ctx, err, errlen);

	return vm ? vm_api_ops.pause(vm, err, errlen) : -EBUSY;
}

static int vm_target_resume(void *ctx, char *err, size_t errlen)
{
	struct vm *vm = vm_target_vm(ctx, err, errlen);

	return vm ? vm_api_ops.resume(vm, err, errlen) : -EBUSY;
}

static int vm_target_snapshot(void *ctx, const char *path, const char *base,
			      enum vm_then then,
			      const struct snap_compress *compress, bool live,
			      struct snapshot_stats *stats, char *err,
			      size_t errlen)
{
	struct vm *vm = vm_target_vm(ctx, err, errlen);

	return vm ? vm_api_ops.snapshot(vm, path, base, then, compress, live,
					stats, err, errlen)
		  : -EBUSY;
}

static int vm_target_migrate(void *ctx, const struct migrate_opts *o,
			     struct migrate_result *res, char *err,
			     size_t errlen)
{
	struct vm *vm = vm_target_vm(ctx, err, errlen);

	return vm ? vm_api_ops.migrate(vm, o, res, err, errlen) : -EBUSY;
}

static int vm_target_working_set(void *ctx, char *err, size_t errlen)
{
	struct vm *vm = vm_target_vm(ctx, err, errlen);

	return vm ? vm_api_ops.working_set(vm, err, errlen) : -EBUSY;
}

static void vm_target_wake(struct vm_target *t)
{
	uint64_t one = 1;

	if (write(t->wake_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow at one write per request. */
	}
}

static int vm_target_shutdown(void *ctx, char *err, size_t errlen)
{
	struct vm_target *t = ctx;
	struct vm *vm;

	pthread_mutex_lock(&t->lock);
	if (t->state == VM_TARGET_WAITING) {
		t->state = VM_TARGET_STOPPING;
		pthread_mutex_unlock(&t->lock);
		vm_target_wake(t);
		return 0;
	}
	pthread_mutex_unlock(&t->lock);
	vm = vm_target_vm(t, err, errlen);
	return vm ? vm_api_ops.shutdown(vm, err, errlen) : -EBUSY;
}

static void vm_target_status(void *ctx, struct vm_status *st)
{
	struct vm_target *t = ctx;
	char err[128];
	struct vm *vm = vm_target_vm(t, err, sizeof(err));

	if (vm) {
		vm_api_ops.status(vm, st);
		return;
	}
	memset(st, 0, sizeof(*st));
	st->waiting = true;
	st->ncpus = t->ncpus;
	st->mem_size = t->mem_max;
	st->timings = t->timings;
}

/* One request at a time, served on the main thread; this API thread
 * waits for its answer. */
static int vm_target_restore(void *ctx, struct api_restore *req, char *err,
			     size_t errlen)
{
	struct vm_target *t = ctx;
	int ret;

	pthread_mutex_lock(&t->lock);
	if (t->state != VM_TARGET_WAITING) {
		snprintf(err, errlen, "%s",
			 t->state == VM_TARGET_BUSY
			     ? "another snapshot is being restored"
			     : "this target has restored a snapshot already");
		pthread_mutex_unlock(&t->lock);
		return -EBUSY;
	}
	t->state = VM_TARGET_BUSY;
	t->req = req;
	t->answered = false;
	t->err[0] = '\0';
	pthread_mutex_unlock(&t->lock);
	vm_target_wake(t);

	pthread_mutex_lock(&t->lock);
	while (!t->answered)
		pthread_cond_wait(&t->done, &t->lock);
	ret = t->ret;
	snprintf(err, errlen, "%s", t->err);
	t->req = NULL;
	pthread_mutex_unlock(&t->lock);
	return ret;
}

static int vm_target_thread_init(void *ctx)
{
	struct vm_target *t = ctx;

	return seccomp_install(SECCOMP_ROLE_API, t->seccomp);
}

static const struct api_ops vm_target_ops = {
	.pause = vm_target_pause,
	.resume = vm_target_resume,
	.snapshot = vm_target_snapshot,
	.shutdown = vm_target_shutdown,
	.migrate = vm_target_migrate,
	.status = vm_target_status,
	.working_set = vm_target_working_set,
	.restore = vm_target_restore,
	.thread_init = vm_target_thread_init,
};

int vm_target_start(struct vm_target *t, const char *socket_path, char *err,
		    size_t errlen)
{
	int ret;

	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->done, NULL);
	t->state = VM_TARGET_WAITING;
	t->api = NULL;
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->wake_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(-ret));
		return ret;
	}
	ret = api_server_start(&t->api, socket_path, &vm_target_ops, t, err,
			       errlen);
	if (ret) {
		close(t->wake_fd);
		t->wake_fd = -1;
	}
	return ret;
}

int vm_target_next(struct vm_target *t, struct api_restore **req)
{
	sigset_t term;
	int sfd, ret = -1;

	sigemptyset(&term);
	sigaddset(&term, SIGINT);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	sfd = signalfd(-1, &term, SFD_CLOEXEC | SFD_NONBLOCK);
	while (ret < 0) {
		struct pollfd pfd[2] = {
			{ .fd = t->wake_fd, .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
		};
		struct signalfd_siginfo si;
		uint64_t n;

		if (poll(pfd, sfd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		if (sfd >= 0 && (pfd[1].revents & POLLIN) &&
		    read(sfd, &si, sizeof(si)) == sizeof(si)) {
			ret = 128 + (int)si.ssi_signo;
			break;
		}
		if (read(t->wake_fd, &n, sizeof(n)) != sizeof(n))
			continue;
		pthread_mutex_lock(&t->lock);
		if (t->state == VM_TARGET_STOPPING) {
			ret = 0;
		} else if (t->state == VM_TARGET_BUSY && t->req) {
			*req = t->req;
			ret = 1;
		}
		pthread_mutex_unlock(&t->lock);
	}
	if (sfd >= 0)
		close(sfd);
	/* vm_run blocks and handles these itself from here on. */
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);
	return ret < 0 ? 128 + SIGTERM : ret;
}

void vm_target_answer(struct vm_target *t, int ret, const char *why)
{
	pthread_mutex_lock(&t->lock);
	t->ret = ret;
	snprintf(t->err, sizeof(t->err), "%s", ret && why ? why : "");
	t->answered = true;
	t->state = ret ? VM_TARGET_WAITING : VM_TARGET_RESTORED;
	if (!ret)
		t->vm->api = t->api;
	pthread_cond_broadcast(&t->done);
	pthread_mutex_unlock(&t->lock);
}

void vm_target_stop(struct vm_target *t)
{
	bool own;

	pthread_mutex_lock(&t->lock);
	own = t->state != VM_TARGET_RESTORED;
	pthread_mutex_unlock(&t->lock);
	if (own && t->api)
		api_server_stop(t->api);
	t->api = NULL;
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	t->wake_fd = -1;
}
