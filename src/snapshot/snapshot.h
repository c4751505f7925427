/* Saving a paused VM to a snapshot file and building a VM back from one:
 * which records are written, in which order, and how they are checked on
 * the way back in. The container itself is snapfile.h. */
#ifndef STASIS_SNAPSHOT_H
#define STASIS_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "core/config.h"
#include "snapshot/snapfile.h"

struct vm;

/* How the guest's clocks treat the time spent suspended (docs/clock.md). */
enum clock_policy {
	CLOCK_ADVANCE, /* kvmclock and TSC move on by the suspended time */
	CLOCK_FROZEN, /* the guest resumes at the instant it was saved */
};

/* Writes every record for @vm, which must be paused, to @path atomically,
 * its memory compressed with @compress (NULL: SNAP_COMPRESS_DEFAULT_CODEC)
 * on one thread per online CPU. Returns 0 or -errno with a one-line reason
 * in @err. */
int snapshot_save(struct vm *vm, const char *path,
		  const struct snap_compress *compress,
		  struct snap_progress *progress, char *err, size_t errlen);

/* The pieces of snapshot_save, for a writer of the caller's (a
 * migration's sink). The header this VM's snapshots carry: */
void snapshot_header_init(struct vm *vm, struct snap_header *hdr);
/* CONFIG and CPUID, which do not change while the VM runs: */
int snapshot_save_begin(struct vm *vm, struct snap_writer *w, char *err,
			size_t errlen);
/* Everything else, @vm paused, signed when @sign and the VM has a key;
 * then the caller commits or aborts @w. */
int snapshot_save_state(struct vm *vm, struct snap_writer *w,
			struct snap_progress *progress, bool sign, char *err,
			size_t errlen);

/* An opened snapshot whose configuration and CPUID have been read. */
struct snapshot_image {
	struct snap_reader *r;
	struct vm_config cfg;
	struct kvm_cpuid2 *cpuid;
	uint64_t saved_realtime_ns;
	/* Copy guest memory out of the file instead of mapping it
	 * (snap_reader_set_map_memory); `stasis restore --memory copy`. */
	bool copy_memory;
	/* Serve guest memory lazily from the file (snapshot/pager.h):
	 * `--memory ondemand`. Files of format 1 are loaded as without it. */
	bool ondemand;
};

/* Opens @path, checks the header against this host (page size, format
 * version) and reads the CONFIG and CPUID records. */
int snapshot_open(const char *path, struct snapshot_image *img, char *err,
		  size_t errlen);

/* Reads the remaining records into @vm, created from img->cfg and
 * img->cpuid: memory, vCPUs, interrupt controllers, PIT, clock, devices.
 * Every mandatory record must appear exactly as often as the VM needs. */
int snapshot_restore(struct vm *vm, struct snapshot_image *img,
		     enum clock_policy clock, char *err, size_t errlen);

void snapshot_close(struct snapshot_image *img);

/* `stasis run --resume-from PATH` (snapshot/resume.c). Whether anything
 * is at @path: 1 (restore it), 0 (nothing there: boot), or -errno with a
 * one-line reason in @err when that cannot be known. */
int snapshot_find_resume(const char *path, char *err, size_t errlen);

/* Renames a restored @path to "@path.resumed" (replacing an older one)
 * and makes that durable, so that the next --resume-from boots unless a
 * new snapshot was written meanwhile. 0; 1 when renamed but the directory
 * could not be synced (@err says so); -errno with @err filled when not
 * renamed. */
int snapshot_mark_resumed(const char *path, char *err, size_t errlen);

/* Records appear in this order: CONFIG, CPUID, CLOCK, VCPU..., IRQCHIP,
 * PIT, DEVICE..., MEMORY..., END. Returns the position of @type in that
 * order, or -1 for a type outside it (optional records of later
 * versions, which may appear anywhere). */
int snapshot_record_rank(uint32_t type);

/* Record payload codecs shared with `stasis inspect`. */
struct snapshot_clock {
	uint64_t kvmclock_ns; /* KVM_GET_CLOCK */
	uint32_t kvmclock_flags;
	uint64_t host_realtime_ns; /* CLOCK_REALTIME when saved */
};

#endif
