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
#include "snapshot/chain.h"
#include "snapshot/snapfile.h"

struct vm;
struct page_source;

/* How the guest's clocks treat the time spent suspended (docs/clock.md). */
enum clock_policy {
	CLOCK_ADVANCE, /* kvmclock and TSC move on by the suspended time */
	CLOCK_FROZEN, /* the guest resumes at the instant it was saved */
};

/* Writes every record for @vm, which must be paused, to @path atomically.
 * With @base (the VM's latest snapshot, or the file it was restored
 * from), the file is a layer over it holding only the memory written
 * since (snapshot/mem_dirty.h); NULL writes all of memory. Memory is
 * compressed with @compress (NULL: SNAP_COMPRESS_DEFAULT_CODEC)
 * on one thread per online CPU. Returns 0 or -errno with a one-line reason
 * in @err. */
int snapshot_save(struct vm *vm, const char *path, const char *base,
		  const struct snap_compress *compress,
		  struct snap_progress *progress, char *err, size_t errlen);

/* The pieces every save is made of (snapshot_save, snapshot_save_live,
 * and a migration, whose writer sends to its connection). */

/* Where a save's bytes go: the file @path, or with @sink a writer's sink
 * (snap_writer_open_sink), @path then only naming it in messages. */
struct snapshot_dest {
	const char *path;
	const struct snap_sink *sink;
	void *sink_ctx;
};

/* The header this VM's snapshots carry. */
void snapshot_header_init(struct vm *vm, struct snap_header *hdr);

/* Opens the writer and writes the header, CONFIG, LINEAGE (@lin) and
 * CPUID: nothing that changes while the guest runs. *@created_ns is the
 * header's creation time, part of the file's identity. NULL with *@retp
 * -errno and @err filled on failure. */
struct snap_writer *snapshot_begin(struct vm *vm,
				   const struct snapshot_dest *dest,
				   const struct snap_compress *compress,
				   const struct snap_lineage *lin,
				   uint64_t *created_ns, int *retp, char *err,
				   size_t errlen);

/* The records taken with the VM paused: clock, vCPUs, interrupt
 * controllers, PIT, devices. Memory is the caller's to write next. */
int snapshot_write_state(struct vm *vm, struct snap_writer *w, char *err,
			 size_t errlen);

/* Signs when @sign and the VM has a key (last before END: the tag covers
 * every byte before it), reads back the identity a child of this file
 * will name it by into *@identity (NULL for a sink, which has no file),
 * and commits; or after an earlier failure @ret aborts. Either way @w is
 * gone. */
int snapshot_finish(struct vm *vm, struct snap_writer *w, const char *path,
		    int ret, bool sign, uint64_t *identity, char *err,
		    size_t errlen);

/* What a live save (snapshot_save_live) cost. */
struct snapshot_live_stats {
	bool resumed; /* the guest ran again (the save got that far) */
	uint64_t pause_ns; /* from the pause request to running again */
	uint64_t faults; /* guest writes that stopped in a fault */
	uint64_t copied_pages; /* pages copied aside before such a write */
	uint64_t waits; /* writes that waited for room in the copy buffer */
	uint64_t copy_peak_bytes; /* most of the copy buffer in use */
	uint64_t extra_bytes; /* peak memory beyond the guest's */
};

/* `snapshot --live`: as snapshot_save, but called with @vm running, and
 * the guest runs on while its memory is written (snapshot/mem_live.h):
 * the VM is paused only to take vCPU and device state and to
 * write-protect guest RAM, then resumed; the file holds memory exactly as
 * it was at that instant. Disk workers stay parked until the file is
 * complete (so the disks stay as at the instant), and with @hold_disks
 * after success too (the VM is about to stop). On failure the VM runs on
 * (st->resumed) or was never paused, and any earlier file at @path is
 * untouched. */
int snapshot_save_live(struct vm *vm, const char *path,
		       const struct snap_compress *compress, bool hold_disks,
		       struct snapshot_live_stats *st,
		       struct snap_progress *progress, char *err,
		       size_t errlen);

/* Lets the disk workers a successful snapshot_save_live(@hold_disks)
 * kept parked run again. */
void snapshot_release_disks(struct vm *vm);
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
	/* Lazy restores bring in PATH.wset's chunks first when it is there
	 * and belongs to this snapshot (snapshot_open sets it; `--prefetch
	 * off` clears it). */
	bool prefetch;
	/* `--record-working-set=MS`: record the chunks the guest faults in
	 * during its first MS ms (0: no recording) into PATH.wset. */
	uint32_t record_ms;
	/* The file's LINEAGE (zero for a file without) and identity, and its
	 * ancestors when it is an incremental layer (NULL otherwise). */
	struct snap_lineage lineage;
	uint64_t identity;
	char *path; /* absolute; its working set is PATH.wset beside it */
	/* @path names no file (a migration's spool, /proc/self/fd/N of a
	 * memfd): restored, never the parent of a later layer. */
	bool unnamed;
	struct snap_chain *chain;
	/* A migration's destination after pre-copy: guest memory holds
	 * the chunks pre-copy delivered, held[i] says of each chunk of
	 * region i what (SNAP_HELD_*), and the MEMORY records leave the
	 * chunks that did not change since to that copy
	 * (snap_load_chunks_held). */
	bool held_memory;
	const uint8_t *held[GUEST_MEM_MAX_REGIONS];
	/* With @ondemand: the page source the pager asks, made from the
	 * MEMORY records' chunk tables (taken over), instead of the file's
	 * (page_source_file_init): a post-copy migration's. NULL: the
	 * file's. */
	int (*page_source)(void *ctx, struct page_source *src,
			   struct snap_chunk_table *tables, unsigned n);
	void *page_source_ctx;
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

/* Ends a working-set recording (--record-working-set) now: the chunks
 * faulted in so far go to the snapshot's PATH.wset, atomically. Called
 * when the recording's time is up, by PUT /vm/working-set, before a
 * snapshot and when the VM stops. 0, -EALREADY when no recording runs,
 * or -errno with one line in @err. */
int snapshot_wset_finish(struct vm *vm, char *err, size_t errlen);

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
