/* A restore target made ahead of time (`stasis restore --wait`): a
 * prepared VM (core/vm.h, vm_prepare) waiting on its control socket for
 * PUT /vm/restore, whose requests the main thread serves one at a time. */
#ifndef STASIS_TARGET_H
#define STASIS_TARGET_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "control/api.h"
#include "core/seccomp.h"

struct vm;
struct timings;

enum vm_target_state {
	VM_TARGET_WAITING, /* no request, or one refused */
	VM_TARGET_BUSY, /* the main thread is restoring a request */
	VM_TARGET_RESTORED, /* the API is the restored VM's from now on */
	VM_TARGET_STOPPING, /* shutdown while waiting */
};

struct vm_target {
	struct vm *vm; /* prepared; the restored VM after a success */
	struct api_server *api;
	unsigned ncpus; /* what was prepared, for the waiting status */
	uint64_t mem_max;
	enum seccomp_mode seccomp;
	struct timings *timings;

	pthread_mutex_t lock;
	pthread_cond_t done;
	int wake_fd; /* eventfd: a request (or shutdown) for the main thread */
	enum vm_target_state state;
	struct api_restore *req; /* the request being served */
	int ret; /* its result, valid once answered */
	bool answered;
	char err[512];
};

/* Serves the control API on @socket_path for @t (its vm, ncpus, mem_max,
 * seccomp and timings set by the caller). 0 or -errno with a line in
 * @err. */
int vm_target_start(struct vm_target *t, const char *socket_path, char *err,
		    size_t errlen);

/* On the main thread: waits for the next PUT /vm/restore. Returns 1 with
 * the request in *@req, 0 when asked to shut down, or 128+N after signal
 * N (SIGINT, SIGTERM, SIGHUP). */
int vm_target_next(struct vm_target *t, struct api_restore **req);

/* Answers the request vm_target_next() gave: 0 (the VM is restored; the
 * API serves it from now on, as vm_run expects of vm->api) or -errno with
 * the one-line reason @why; the target then waits again. */
void vm_target_answer(struct vm_target *t, int ret, const char *why);

/* Stops the server if the VM never took it over. */
void vm_target_stop(struct vm_target *t);

#endif
