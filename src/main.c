/* stasis: the command-line front door. Each subcommand parses its own
 * arguments and returns an exit status; only this file exits. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "control/api.h"
#include "core/config.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/target.h"
#include "core/timings.h"
#include "core/vm.h"
#include "migrate/migrate.h"
#include "snapshot/chain.h"
#include "snapshot/inspect.h"
#include "snapshot/pager.h"
#include "snapshot/sign.h"
#include "snapshot/snapshot.h"
#include "snapshot/wset.h"
#include "virtio/devices.h"

static void usage(void)
{
	printf(
	    "usage: stasis COMMAND [options]\n"
	    "\n"
	    "commands:\n"
	    "  run --kernel FILE [options]    boot a VM (stasis run --help)\n"
	    "  restore FILE [options]         bring a snapshot back to life\n"
	    "  restore --wait --api-socket S --mem-max SIZE [options]\n"
	    "                                 a VM made ahead, waiting for a "
	    "snapshot\n"
	    "  receive --listen ADDR [restore options]\n"
	    "                                 wait for one VM migrated here\n"
	    "  ctl SOCKET status|pause|resume|shutdown|working-set [--json]\n"
	    "  ctl SOCKET snapshot PATH [--then resume|pause|exit]\n"
	    "      [--compress none|lz4|zstd[:LEVEL]] [--live] [--base PARENT] "
	    "[--json]\n"
	    "  ctl SOCKET restore PATH [--memory ondemand|map|copy] "
	    "[--paused]\n"
	    "      [--clock advance|frozen] [--json]\n"
	    "  ctl SOCKET migrate unix:PATH|tcp:HOST:PORT "
	    "[--tls-dir DIR|--insecure]\n"
	    "      [--connections N] [--timeout-s N [--on-timeout "
	    "abort|postcopy]]\n"
	    "      [--postcopy] [--downtime-ms N] [--no-auto-converge]\n"
	    "      [--compress ...] [--json]\n"
	    "  inspect FILE [--json]          describe a snapshot\n"
	    "  verify FILE                    check every checksum (exit 0/1)\n"
	    "  merge CHILD -o OUT             flatten a chain of incremental "
	    "snapshots\n"
	    "  --version                      print the version\n"
	    "  --help                         this text\n");
}

/* Creates, starts and tears down a VM; returns the exit status. */
static int run_vm(struct vm *vm, const struct vm_config *cfg)
{
	struct vm_images img;
	int ret, status;

	/* A missing or malformed kernel is the user's input: exit 2. */
	if (vm_images_open(cfg, &img))
		return STASIS_EXIT_USAGE;
	ret = vm_create(vm, cfg, NULL);
	if (ret) {
		vm_images_close(&img);
		return STASIS_EXIT_HOST;
	}
	ret = vm_boot(vm, &img);
	vm_images_close(&img);
	if (ret) {
		vm_destroy(vm);
		return ret == -E2BIG || ret == -EINVAL ? STASIS_EXIT_USAGE
						       : STASIS_EXIT_HOST;
	}
	status = vm_run(vm, false);
	vm_destroy(vm);
	return status;
}

static int cmd_run_or_resume(struct vm *vm, const struct vm_config *cfg);

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	struct snap_key *key = NULL;
	struct vm vm;
	char err[512] = "";
	int ret, status;

	config_init(&cfg);
	ret = config_parse_run_args(&cfg, argc, argv, err, sizeof(err));
	if (ret) {
		config_free(&cfg);
		if (ret == 1)
			return STASIS_EXIT_OK;
		log_error("%s", err);
		return STASIS_EXIT_USAGE;
	}
	/* Read now, so a bad key stops the VM before it starts. */
	if (cfg.sign_key_path &&
	    !(key = snap_key_new(cfg.sign_key_path, err, sizeof(err)))) {
		log_error("--sign-key: %s", err);
		config_free(&cfg);
		return STASIS_EXIT_USAGE;
	}
	cfg.sign_key = key;
	status = cmd_run_or_resume(&vm, &cfg);
	config_free(&cfg);
	snap_key_free(key);
	return status;
}

static void restore_usage(void)
{
	printf("usage: stasis restore FILE [options]\n"
	       "  --api-socket PATH     serve the control API\n"
	       "  --serial MODE         stdio | file:PATH | none (default "
	       "stdio)\n"
	       "  --paused              stay paused until a resume request\n"
	       "  --clock POLICY        advance (default): the guest's "
	       "clocks move on\n"
	       "                        by the time spent suspended; frozen: "
	       "they don't\n"
	       "  --memory MODE         ondemand (default): the guest runs at "
	       "once; each chunk\n"
	       "                        of its memory is read and verified "
	       "when first touched,\n"
	       "                        the rest in the background (needs "
	       "userfaultfd;\n"
	       "                        without it the default is copy);\n"
	       "                        map: mapped from the file, "
	       "copy-on-write, verified\n"
	       "                        before the guest runs (the page "
	       "cache is shared);\n"
	       "                        copy: read in whole and verified (the "
	       "file may then\n"
	       "                        change)\n"
	       "  --disk PATH[,ro][,id=NAME][,verify=hash]\n"
	       "                        replaces the snapshot's disk with that "
	       "id (blkN\n"
	       "                        when it had none), else the Nth --disk "
	       "the Nth disk;\n"
	       "                        it is then not checked for changes, "
	       "or with\n"
	       "                        verify=hash against the snapshot's "
	       "hash of it\n"
	       "                        (docs/virtio.md)\n"
	       "  --require-signed KEYFILE\n"
	       "                        refuse a snapshot without a valid "
	       "signature by\n"
	       "                        that key, before any of it is used "
	       "(implies\n"
	       "                        --memory copy and signs its own "
	       "snapshots)\n"
	       "  --sign-key KEYFILE    sign the restored VM's snapshots with "
	       "this key\n"
	       "  --net tap=NAME | unix=PATH[,peer=PATH]\n"
	       "                        the Nth --net replaces the Nth network "
	       "backend;\n"
	       "                        the guest keeps its MAC address "
	       "(mac= is refused)\n"
	       "  --on-term snapshot:PATH\n"
	       "                        SIGTERM saves the VM to PATH, then "
	       "exits 0;\n"
	       "                        a failed save leaves it running\n"
	       "  --track-dirty         log dirty pages with KVM's dirty ring "
	       "where the\n"
	       "                        host has one (a restored VM always "
	       "logs them,\n"
	       "                        so that its next snapshot can be an "
	       "increment)\n"
	       "  --seccomp on|log|off  system-call filters per thread "
	       "(default on)\n"
	       "  --user UID[:GID]      run as this user once the host "
	       "resources are open\n"
	       "                        (needs root; docs/security.md)\n"
	       "  --timings             print the time of each restore phase "
	       "since exec on\n"
	       "                        stderr at the guest's first exit\n"
	       "  --record-working-set[=MS]\n"
	       "                        record the chunks the guest touches "
	       "in its first\n"
	       "                        MS ms (default 1000), or until "
	       "`ctl S working-set`,\n"
	       "                        into FILE.wset (ondemand only)\n"
	       "  --prefetch on|off     bring FILE.wset's chunks in first "
	       "when it matches\n"
	       "                        (default on)\n"
	       "  --hugepages 2M|off    guest RAM from 2 MiB hugepages, or "
	       "not (default:\n"
	       "                        as the snapshot was saved)\n"
	       "usage: stasis restore --wait --api-socket PATH --mem-max SIZE "
	       "[--cpus N] [options]\n"
	       "  --wait                make the VM now (memory, irqchip, "
	       "vCPUs), then restore\n"
	       "                        what PUT /vm/restore names into it "
	       "(stasis ctl\n"
	       "                        PATH restore FILE); the options above "
	       "apply to it\n"
	       "  --mem-max SIZE        the largest guest memory the target "
	       "takes (required)\n"
	       "  --cpus N              the vCPU count it takes (default "
	       "1)\n");
}

static void receive_usage(void)
{
	printf("usage: stasis receive --listen unix:PATH|tcp:ADDR:PORT "
	       "[options]\n"
	       "  --listen ADDR         wait there for one VM that `stasis "
	       "ctl S migrate`\n"
	       "                        sends; it runs here once the source "
	       "has stopped\n"
	       "  --tls-dir DIR         tcp through TLS: DIR holds ca.pem, "
	       "cert.pem, key.pem;\n"
	       "                        the source must show a certificate "
	       "of that CA\n"
	       "  --insecure            allow plain tcp (no TLS: guest memory "
	       "in the clear)\n"
	       "and the options of stasis restore but --require-signed (see "
	       "stasis restore\n"
	       "--help); --memory defaults to copy. docs/migration.md\n");
}

/* The snapshot's disk that restore's @i-th --disk @d replaces: the one
 * whose id (given, or "blkN" by default) is d's id, else the i-th. */
static unsigned restore_disk_target(const struct vm_config *cfg,
				    const struct disk_config *d, unsigned i)
{
	char name[16];

	for (unsigned k = 0; d->id && k < cfg->ndisks; k++) {
		snprintf(name, sizeof(name), "blk%u", k);
		if (!strcmp(d->id, cfg->disks[k].id ? cfg->disks[k].id : name))
			return k;
	}
	return i;
}

/* Applies restore's --disk and --net: a --disk replaces the snapshot's disk
 * of its id= (so one disk can be vouched for alone), or else the disk at
 * its own position; the Nth --net replaces the Nth network backend. */
static int restore_replace_devices(struct vm_config *cfg, char **disks,
				   unsigned ndisks, char **nets, unsigned nnets)
{
	bool done[CONFIG_MAX_DISKS] = { false };
	char err[256];

	if (ndisks > cfg->ndisks || nnets > cfg->nnets) {
		log_error(
		    "%s: the snapshot has %u disks and %u network devices",
		    ndisks > cfg->ndisks ? "--disk" : "--net", cfg->ndisks,
		    cfg->nnets);
		return -EINVAL;
	}
	for (unsigned i = 0; i < ndisks; i++) {
		struct disk_config d;
		unsigned k;

		if (config_parse_disk(&d, disks[i], err, sizeof(err))) {
			log_error("%s", err);
			return -EINVAL;
		}
		k = restore_disk_target(cfg, &d, i);
		if (done[k]) {
			log_error(
			    "--disk %s: disk %u (blk%u) is replaced twice",
			    disks[i], k, k);
			config_free_disk(&d);
			return -EINVAL;
		}
		done[k] = true;
		d.replaced = true;
		config_free_disk(&cfg->disks[k]);
		cfg->disks[k] = d;
	}
	for (unsigned i = 0; i < nnets; i++) {
		struct net_config n;

		if (config_parse_net(&n, nets[i], err, sizeof(err))) {
			log_error("%s", err);
			return -EINVAL;
		}
		/* The MAC is guest-visible device state the running driver
		 * has already read; a new one would not reach it. */
		if (n.mac_set) {
			log_error("--net %s: a restored guest keeps the MAC it "
				  "was saved with (docs/clones.md)",
				  nets[i]);
			config_free_net(&n);
			return -EINVAL;
		}
		config_free_net(&cfg->nets[i]);
		cfg->nets[i] = n;
	}
	return 0;
}

/* How a snapshot is brought back: `stasis restore`'s options, or the run
 * options of `stasis run --resume-from`. Host-side settings come from
 * here, never from the file. */
struct restore_opts {
	const struct vm_config *run; /* run --resume-from: its host side */
	const char *serial; /* restore --serial; NULL: the default */
	const char *api_socket;
	const char *on_term; /* --on-term snapshot:PATH's PATH, or NULL */
	bool paused;
	enum clock_policy clock;
	bool copy_memory;
	bool ondemand; /* lazy restore (the default) */
	bool memory_given; /* --memory named a mode: no fallback */
	const char
	    *require_signed; /* key file the snapshot must be signed by */
	const char *sign_key; /* key file for the restored VM's snapshots */
	char **disks;
	unsigned ndisks;
	char **nets;
	unsigned nnets;
	bool mark_resumed; /* rename the file PATH.resumed once restored */
	bool track_dirty; /* --track-dirty: dirty rings where there are */
	enum seccomp_mode seccomp;
	struct run_user user; /* --user */
	struct timings *timings; /* the phases, kept by main */
	/* --wait: a target of at most mem_max bytes and ncpus vCPUs. */
	bool wait;
	uint64_t mem_max;
	unsigned ncpus;
	uint32_t record_ms; /* --record-working-set; 0: no recording */
	bool no_prefetch; /* --prefetch off */
	const char *hugepages; /* --hugepages, or NULL: the snapshot's */
	/* `stasis receive`: the VM comes from this migration, whose spool
	 * is the file restored; the rest of it arrives once the VM is
	 * created, and it runs after the source's go. */
	struct migrate_in *incoming;
};

/* Replaces @dst with a copy of @s (NULL for none); -ENOMEM. */
static int replace_string(char **dst, const char *s)
{
	char *copy = NULL;

	if (s && !(copy = strdup(s)))
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

/* The host side of a restored VM's config, from @o. */
static int restore_host_config(struct vm_config *cfg,
			       const struct restore_opts *o)
{
	/* A stdio console keeps stdin, so the serial port defaults to
	 * none. */
	cfg->serial =
	    cfg->console == CONSOLE_STDIO ? SERIAL_NONE : SERIAL_STDIO;
	if (o->run) {
		cfg->serial = o->run->serial;
		if (replace_string(&cfg->serial_path, o->run->serial_path))
			return -ENOMEM;
	} else if (o->serial && config_parse_serial(cfg, o->serial)) {
		log_error("--serial: '%s' is not stdio, none or file:PATH",
			  o->serial);
		return -EINVAL;
	}
	/* Host policy: from this command line only, whatever the file says. */
	cfg->seccomp = o->run ? o->run->seccomp : o->seccomp;
	if (o->run)
		cfg->hugepages = o->run->hugepages;
	else if (o->hugepages &&
		 config_parse_hugepages(o->hugepages, &cfg->hugepages)) {
		log_error("--hugepages: '%s' is not 2M or off", o->hugepages);
		return -EINVAL;
	}
	cfg->user = o->run ? o->run->user : o->user;
	cfg->track_dirty = o->run ? o->run->track_dirty : o->track_dirty;
	if (replace_string(&cfg->api_socket, o->api_socket) ||
	    replace_string(&cfg->on_term_snapshot, o->on_term) ||
	    replace_string(&cfg->resume_from, NULL))
		return -ENOMEM;
	return 0;
}

/* What restore_load() holds until the restored VM is done with. */
struct restore_state {
	struct snap_key *rkey, *skey;
	struct snapshot_image img;
};

static void restore_state_free(struct restore_state *rs)
{
	snapshot_close(&rs->img);
	snap_key_free(rs->rkey);
	snap_key_free(rs->skey);
	rs->rkey = rs->skey = NULL;
}

/* Opens, checks and loads the snapshot @path into @vm: created here, or
 * made ahead by vm_prepare() when @prepared (a waiting target), which the
 * snapshot must fit. Returns 0 with @rs to be freed after the VM, or the
 * exit status after printing the reason; on failure nothing is left in
 * @rs, and @vm is destroyed unless it was @prepared and never touched
 * (*@touched false). */
static int restore_load(const char *path, const struct restore_opts *o,
			struct vm *vm, bool prepared, bool *touched,
			struct restore_state *rs)
{
	struct snapshot_image *img = &rs->img;
	bool copy_memory = o->copy_memory, ondemand = o->ondemand;
	struct stat checked, now;
	char err[512];
	int ret, status;

	memset(rs, 0, sizeof(*rs));
	*touched = false;
	if (o->require_signed &&
	    !(rs->rkey = snap_key_new(o->require_signed, err, sizeof(err)))) {
		log_error("--require-signed: %s", err);
		return STASIS_EXIT_USAGE;
	}
	if (o->sign_key &&
	    !(rs->skey = snap_key_new(o->sign_key, err, sizeof(err)))) {
		log_error("--sign-key: %s", err);
		status = STASIS_EXIT_USAGE;
		goto out_keys;
	}
	/* The whole file is checked before anything in it is read for use.
	 * Memory is then copied, not mapped or fetched later, so that nothing
	 * is read from the file once the restore is done; and the file must
	 * stay the one checked until then. */
	if (rs->rkey) {
		ret = snap_verify_signature(path, rs->rkey, &checked, err,
					    sizeof(err));
		if (ret) {
			log_error("%s: %s (--require-signed)", path, err);
			status = STASIS_EXIT_USAGE;
			goto out_keys;
		}
		copy_memory = true;
		ondemand = false;
	}
	ret = snapshot_open(path, img, err, sizeof(err));
	if (ret) {
		log_error("%s: %s", path, err);
		status = STASIS_EXIT_USAGE;
		goto out_keys;
	}
	timings_mark(o->timings, TIMING_FILE);
	status = STASIS_EXIT_USAGE;
	if (rs->rkey && (fstat(snap_reader_fd(img->r), &now) ||
			 !snap_same_file(&checked, &now))) {
		log_error("%s: changed after its signature was checked", path);
		goto out_image;
	}
	if (prepared &&
	    (img->cfg.mem_size > vm->mem.size || img->cfg.ncpus != vm->ncpus)) {
		log_error("%s: %s %llu MiB and %u vCPUs; this target was "
			  "prepared for at most %llu MiB (--mem-max) and %u "
			  "(--cpus)",
			  path, "the snapshot's VM has",
			  (unsigned long long)(img->cfg.mem_size >> 20),
			  img->cfg.ncpus,
			  (unsigned long long)(vm->mem.size >> 20), vm->ncpus);
		goto out_image;
	}
	/* --user drops privileges once every thread can still follow, and
	 * the pager's threads run from the restore on: the two do not mix
	 * yet, so a restore with --user copies memory. */
	if (ondemand && (o->run ? o->run->user.set : o->user.set)) {
		if (o->memory_given) {
			log_error(
			    "--memory ondemand cannot be used with --user "
			    "(use copy or map)");
			goto out_image;
		}
		log_info("--user: restoring with --memory copy");
		ondemand = false;
		copy_memory = true;
	}
	/* Lazy restores need userfaultfd: the default falls back to copy
	 * with a notice, an explicit request fails. */
	if (ondemand && pager_probe(err, sizeof(err))) {
		if (o->memory_given) {
			log_error("--memory ondemand: %s", err);
			status = STASIS_EXIT_HOST;
			goto out_image;
		}
		log_info("%s; restoring with --memory copy", err);
		ondemand = false;
		copy_memory = true;
	}
	if (o->record_ms && !ondemand) {
		log_error("--record-working-set needs --memory ondemand (the "
			  "faults are what it records)");
		status = STASIS_EXIT_USAGE;
		goto out_image;
	}
	img->copy_memory = copy_memory;
	img->ondemand = ondemand;
	img->record_ms = o->record_ms;
	img->prefetch = !o->no_prefetch;
	ret = restore_host_config(&img->cfg, o);
	if (ret) {
		status = ret == -ENOMEM ? STASIS_EXIT_HOST : STASIS_EXIT_USAGE;
		goto out_image;
	}
	img->cfg.sign_key = rs->skey   ? rs->skey
			    : rs->rkey ? rs->rkey
			    : o->run   ? o->run->sign_key
				       : NULL;
	img->cfg.timings = o->timings;
	err[0] = '\0';
	if (restore_replace_devices(&img->cfg, o->disks, o->ndisks, o->nets,
				    o->nnets) ||
	    config_validate(&img->cfg, err, sizeof(err))) {
		if (*err)
			log_error("%s", err);
		goto out_image;
	}

	*touched = true;
	ret = prepared ? vm_complete(vm, &img->cfg, img->cpuid)
		       : vm_create(vm, &img->cfg, img->cpuid);
	if (ret) {
		status = ret == -ENOTSUP ? STASIS_EXIT_USAGE : STASIS_EXIT_HOST;
		if (prepared)
			vm_destroy(vm);
		goto out_image;
	}
	/* The config and CPUID fit this host: now the rest may come. */
	if (o->incoming &&
	    migrate_in_receive(o->incoming, img, &vm->mem, err, sizeof(err))) {
		log_error("%s", err);
		status = STASIS_EXIT_USAGE;
		vm_destroy(vm);
		goto out_image;
	}
	/* Post-copy: memory comes from the source as the guest touches it
	 * (and in the background), through the lazy restore's pager. */
	if (o->incoming && migrate_in_postcopy(o->incoming)) {
		if (o->run ? o->run->user.set : o->user.set) {
			status = STASIS_EXIT_USAGE;
			log_error("post-copy cannot be received with --user "
				  "(the pager's threads run before it)");
			vm_destroy(vm);
			goto out_image;
		}
		img->ondemand = true;
		img->copy_memory = false;
		img->prefetch = false;
		img->record_ms = 0;
		img->page_source = migrate_in_page_source;
		img->page_source_ctx = o->incoming;
		migrate_in_set_seccomp(o->incoming, (int)img->cfg.seccomp);
		vm->incoming = o->incoming;
	}
	ret = snapshot_restore(vm, img, o->clock, err, sizeof(err));
	/* Everything was read from the file checked: not a byte changed
	 * meanwhile. */
	if (!ret && rs->rkey &&
	    (fstat(snap_reader_fd(img->r), &now) ||
	     !snap_same_file(&checked, &now))) {
		snprintf(err, sizeof(err),
			 "changed while it was restored, after its signature "
			 "was checked");
		ret = -ESTALE;
	}
	if (ret) {
		log_error("%s: %s", path, err);
		status = ret == -ENOMEM ? STASIS_EXIT_HOST : STASIS_EXIT_USAGE;
		vm_destroy(vm);
		goto out_image;
	}
	return 0;
out_image:
	snapshot_close(img);
out_keys:
	restore_state_free(rs);
	return status;
}

/* Runs a VM restore_load() loaded; returns the exit status. */
static int restore_run(const char *path, const struct restore_opts *o,
		       struct vm *vm, struct restore_state *rs)
{
	char err[512];
	int ret, status;

	/* Before the guest runs: a VM that moved on must not come back
	 * from this file by accident. */
	ret =
	    o->mark_resumed ? snapshot_mark_resumed(path, err, sizeof(err)) : 0;
	if (ret < 0) {
		log_error("--resume-from: %s", err);
		status = STASIS_EXIT_HOST;
		goto out;
	}
	if (ret > 0)
		log_warn("--resume-from: %s", err);
	if (o->incoming &&
	    migrate_in_switch(o->incoming,
			      rs->img.copy_memory && !rs->img.ondemand, err,
			      sizeof(err))) {
		log_error("%s", err);
		status = STASIS_EXIT_USAGE;
		goto out;
	}
	/* Moved: the guest tells its network where it is now, on the
	 * config interrupt it takes once it runs (docs/migration.md). */
	if (o->incoming)
		log_debug("%u network devices announce",
			  virtio_net_announce_all(vm));
	status = vm_run(vm, o->paused);
	/* After a chunk failed its check, threads may wait on memory that
	 * will never come: the process ends without tearing down. */
	if (vm->pager && pager_failed(vm->pager))
		return status;
out:
	vm_destroy(vm);
	restore_state_free(rs);
	return status;
}

/* Restores the snapshot @path and runs it; returns the exit status. */
static int restore_vm(const char *path, const struct restore_opts *o)
{
	struct restore_state rs;
	struct vm vm;
	bool touched;
	int status;

	status = restore_load(path, o, &vm, false, &touched, &rs);
	if (status)
		return status;
	return restore_run(path, o, &vm, &rs);
}

/* `stasis restore --wait`: prepares a VM of --mem-max and --cpus, then
 * restores each PUT /vm/restore into it until one succeeds, and runs
 * that. A refused request is answered with its reason, and the target
 * waits on: prepared afresh if the refused snapshot got as far as the
 * VM. */
static int restore_wait(const struct restore_opts *base)
{
	struct vm_config host;
	struct vm_target t = { .wake_fd = -1 };
	struct restore_state rs;
	struct api_restore *req;
	struct vm vm;
	char err[512];
	int ret, status;

	config_init(&host);
	host.ncpus = base->ncpus;
	host.seccomp = base->seccomp;
	host.timings = base->timings;
	if (vm_prepare(&vm, &host, base->mem_max))
		return STASIS_EXIT_HOST;
	if (vm_prepare_threads(&vm)) {
		vm_destroy(&vm);
		return STASIS_EXIT_HOST;
	}
	t.vm = &vm;
	t.ncpus = base->ncpus;
	t.mem_max = base->mem_max;
	t.seccomp = base->seccomp;
	t.timings = base->timings;
	if (vm_target_start(&t, base->api_socket, err, sizeof(err))) {
		log_error("%s", err);
		vm_destroy(&vm);
		return STASIS_EXIT_HOST;
	}
	log_info("waiting for PUT /vm/restore on %s (%llu MiB, %u vCPUs)",
		 base->api_socket, (unsigned long long)(base->mem_max >> 20),
		 base->ncpus);
	while ((ret = vm_target_next(&t, &req)) == 1) {
		struct restore_opts o = *base;
		bool touched;

		timings_reset_from(o.timings, TIMING_REQUEST);
		timings_mark(o.timings, TIMING_REQUEST);
		if (req->memory != API_MEMORY_DEFAULT) {
			o.ondemand = req->memory == API_MEMORY_ONDEMAND;
			o.copy_memory = req->memory == API_MEMORY_COPY;
			o.memory_given = true;
		}
		if (req->clock != API_CLOCK_DEFAULT)
			o.clock = req->clock == API_CLOCK_FROZEN
				      ? CLOCK_FROZEN
				      : CLOCK_ADVANCE;
		o.paused = o.paused || req->paused;
		/* The served VM's API is the target's (vm_run keeps it). */
		o.api_socket = base->api_socket;
		log_capture_errors(err, sizeof(err));
		status = restore_load(req->path, &o, &vm, true, &touched, &rs);
		log_capture_errors(NULL, 0);
		if (!status) {
			req->memory = rs.img.ondemand	   ? API_MEMORY_ONDEMAND
				      : rs.img.copy_memory ? API_MEMORY_COPY
							   : API_MEMORY_MAP;
			req->paused = o.paused;
			/* Pause and resume requests after the reply wait for
			 * vm_run to have made the vCPUs. */
			pthread_mutex_lock(&vm.pause_op_lock);
			vm.pause_op_held = true;
			vm_target_answer(&t, 0, NULL);
			return restore_run(req->path, &o, &vm, &rs);
		}
		/* A VM that took some of the file is made again, from
		 * scratch, for the next request. */
		if (touched && (vm_prepare(&vm, &host, base->mem_max) ||
				vm_prepare_threads(&vm))) {
			vm_target_answer(&t, -EIO, err);
			log_error("cannot prepare the next VM; exiting");
			vm_target_stop(&t);
			return STASIS_EXIT_HOST;
		}
		vm_target_answer(&t,
				 status == STASIS_EXIT_USAGE ? -EINVAL : -EIO,
				 err[0] ? err : "the restore failed");
	}
	vm_target_stop(&t);
	vm_destroy(&vm);
	return ret ? ret : STASIS_EXIT_OK;
}

/* A duration in ms, 1..WSET_RECORD_MS_MAX. */
static int restore_parse_ms(const char *s, uint32_t *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || !v || v > WSET_RECORD_MS_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* `stasis restore FILE`, or with @receive `stasis receive --listen ADDR`:
 * the same options and the same restore, from a file or from a
 * migration's stream. */
static int cmd_restore(int argc, char **argv, bool receive,
		       struct timings *timings)
{
	static const struct option opts[] = {
		{ "api-socket", required_argument, NULL, 'a' },
		{ "serial", required_argument, NULL, 's' },
		{ "paused", no_argument, NULL, 'p' },
		{ "clock", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'n' },
		{ "on-term", required_argument, NULL, 't' },
		{ "seccomp", required_argument, NULL, 'S' },
		{ "require-signed", required_argument, NULL, 'r' },
		{ "sign-key", required_argument, NULL, 'k' },
		{ "user", required_argument, NULL, 'u' },
		{ "timings", no_argument, NULL, 'T' },
		{ "wait", no_argument, NULL, 'W' },
		{ "mem-max", required_argument, NULL, 'M' },
		{ "cpus", required_argument, NULL, 'C' },
		{ "record-working-set", optional_argument, NULL, 'w' },
		{ "prefetch", required_argument, NULL, 'P' },
		{ "hugepages", required_argument, NULL, 'H' },
		{ "track-dirty", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ "listen", required_argument, NULL, 'L' },
		{ "insecure", no_argument, NULL, 'I' },
		{ "tls-dir", required_argument, NULL, 'X' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen = NULL, *tls_dir = NULL;
	bool insecure = false;
	int status;
	char *disks[CONFIG_MAX_DISKS], *nets[CONFIG_MAX_NETS];
	struct restore_opts o = { .disks = disks,
				  .nets = nets,
				  .ondemand = true,
				  .seccomp = SECCOMP_ON,
				  .timings = timings,
				  .ncpus = 1 };
	char err[256];
	char *end;
	int opt;

	opterr = 0;
	optind = 1;
	/* Options may come before or after FILE. */
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'a':
			o.api_socket = optarg;
			break;
		case 's':
			o.serial = optarg;
			break;
		case 'D':
			o.track_dirty = true;
			break;
		case 'p':
			o.paused = true;
			break;
		case 'c':
			if (!strcmp(optarg, "advance")) {
				o.clock = CLOCK_ADVANCE;
			} else if (!strcmp(optarg, "frozen")) {
				o.clock = CLOCK_FROZEN;
			} else {
				log_error("--clock: '%s' is not advance or "
					  "frozen",
					  optarg);
				return STASIS_EXIT_USAGE;
			}
			break;
		case 'm':
			if (!strcmp(optarg, "map") || !strcmp(optarg, "copy") ||
			    !strcmp(optarg, "ondemand")) {
				o.copy_memory = !strcmp(optarg, "copy");
				o.ondemand = !strcmp(optarg, "ondemand");
				o.memory_given = true;
			} else {
				log_error("--memory: '%s' is not ondemand, map "
					  "or copy",
					  optarg);
				return STASIS_EXIT_USAGE;
			}
			break;
		case 'd':
			if (o.ndisks == CONFIG_MAX_DISKS) {
				log_error("--disk: more than %d disks",
					  CONFIG_MAX_DISKS);
				return STASIS_EXIT_USAGE;
			}
			disks[o.ndisks++] = optarg;
			break;
		case 'n':
			if (o.nnets == CONFIG_MAX_NETS) {
				log_error("--net: more than %d network devices",
					  CONFIG_MAX_NETS);
				return STASIS_EXIT_USAGE;
			}
			nets[o.nnets++] = optarg;
			break;
		case 't': {
			struct vm_config tmp;

			/* Checked here, applied to the snapshot's config. */
			config_init(&tmp);
			if (config_parse_on_term(&tmp, optarg, err,
						 sizeof(err))) {
				log_error("%s", err);
				return STASIS_EXIT_USAGE;
			}
			o.on_term = tmp.on_term_snapshot
					? optarg + strlen("snapshot:")
					: NULL;
			config_free(&tmp);
			break;
		}
		case 'S':
			if (seccomp_mode_parse(optarg, &o.seccomp)) {
				log_error(
				    "--seccomp: '%s' is not on, log or off",
				    optarg);
				return STASIS_EXIT_USAGE;
			}
			break;
		case 'r':
			o.require_signed = optarg;
			break;
		case 'k':
			o.sign_key = optarg;
			break;
		case 'u':
			if (privdrop_parse(optarg, &o.user, err, sizeof(err))) {
				log_error("%s", err);
				return STASIS_EXIT_USAGE;
			}
			break;
		case 'T':
			timings->report = true;
			break;
		case 'W':
			o.wait = true;
			break;
		case 'M':
			if (config_parse_size(optarg, &o.mem_max) ||
			    o.mem_max < GUEST_MEM_MIN ||
			    o.mem_max > GUEST_MEM_MAX || (o.mem_max & 0xfff)) {
				log_error("--mem-max: '%s' is not a size from "
					  "2M to 1T in whole pages",
					  optarg);
				return STASIS_EXIT_USAGE;
			}
			break;
		case 'C':
			errno = 0;
			o.ncpus = (unsigned)strtoul(optarg, &end, 10);
			if (errno || *end || !o.ncpus ||
			    o.ncpus > PLATFORM_MAX_CPUS) {
				log_error("--cpus: '%s' is not a vCPU count "
					  "from 1 to %d",
					  optarg, PLATFORM_MAX_CPUS);
				return STASIS_EXIT_USAGE;
			}
			break;
		case 'w':
			o.record_ms = WSET_RECORD_MS_DEFAULT;
			if (optarg && restore_parse_ms(optarg, &o.record_ms)) {
				log_error("--record-working-set: '%s' is not a "
					  "number of ms from 1 to %u",
					  optarg, WSET_RECORD_MS_MAX);
				return STASIS_EXIT_USAGE;
			}
			break;
		case 'P':
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				log_error("--prefetch: '%s' is not on or off",
					  optarg);
				return STASIS_EXIT_USAGE;
			}
			o.no_prefetch = !strcmp(optarg, "off");
			break;
		case 'H':
			o.hugepages = optarg;
			break;
		case 'h':
			if (receive)
				receive_usage();
			else
				restore_usage();
			return STASIS_EXIT_OK;
		case 'L':
		case 'I':
		case 'X':
			if (receive) {
				listen = opt == 'L' ? optarg : listen;
				tls_dir = opt == 'X' ? optarg : tls_dir;
				insecure = insecure || opt == 'I';
				break;
			}
			/* fall through */
		default:
			/* receive's own options are restore's unknown ones
			 * (argv[optind - 1] may be their argument). */
			log_error("%s: unknown or incomplete option '%s'",
				  argv[0],
				  opt == 'L'   ? "--listen"
				  : opt == 'I' ? "--insecure"
				  : opt == 'X' ? "--tls-dir"
					       : argv[optind - 1]);
			return STASIS_EXIT_USAGE;
		}
	}
	if (o.wait && receive) {
		log_error("--wait is for stasis restore (a migrated VM brings "
			  "its own machine)");
		return STASIS_EXIT_USAGE;
	}
	if (o.wait) {
		if (optind != argc || !o.api_socket || !o.mem_max) {
			log_error("usage: stasis restore --wait --api-socket "
				  "PATH --mem-max SIZE [options], no FILE "
				  "(it comes with PUT /vm/restore)");
			return STASIS_EXIT_USAGE;
		}
		/* The socket is bound and served before any restore, and
		 * --user would have to come after. */
		if (o.user.set) {
			log_error("--user cannot be used with --wait");
			return STASIS_EXIT_USAGE;
		}
		timings->target = true;
		return restore_wait(&o);
	}
	if (o.mem_max || o.ncpus != 1) {
		log_error("--mem-max and --cpus are for --wait (a snapshot "
			  "brings its own)");
		return STASIS_EXIT_USAGE;
	}
	if (!receive) {
		if (optind != argc - 1) {
			log_error("usage: stasis restore FILE [options] (see "
				  "stasis restore --help)");
			return STASIS_EXIT_USAGE;
		}
		return restore_vm(argv[optind], &o);
	}
	if (optind != argc || !listen) {
		log_error("usage: stasis receive --listen unix:PATH|"
			  "tcp:ADDR:PORT [options] (see stasis receive "
			  "--help)");
		return STASIS_EXIT_USAGE;
	}
	if (o.require_signed) {
		log_error("--require-signed: a migration stream is not signed "
			  "(docs/migration.md)");
		return STASIS_EXIT_USAGE;
	}
	/* Memory is copied out of the spool, whose memory then goes back:
	 * a lazy or mapped restore would keep both. */
	if (!o.memory_given) {
		o.ondemand = false;
		o.copy_memory = true;
	}
	if (migrate_in_start(listen, insecure, tls_dir, &o.incoming, err,
			     sizeof(err))) {
		log_error("receive: %s", err);
		return STASIS_EXIT_USAGE;
	}
	status = restore_vm(migrate_in_path(o.incoming), &o);
	migrate_in_end(o.incoming);
	return status;
}

/* `stasis run --resume-from PATH`: a snapshot at PATH is restored with
 * the run options' host side (serial, API socket, --on-term), its
 * machine coming from the file; nothing there, the VM boots from the run
 * options. A file that cannot be restored is refused, never replaced by a
 * fresh boot (docs/install.md says why). */
static int cmd_run_or_resume(struct vm *vm, const struct vm_config *cfg)
{
	struct restore_opts o = { .run = cfg,
				  .mark_resumed = true,
				  .ondemand = true };
	char err[512];
	int ret;

	if (!cfg->resume_from)
		return run_vm(vm, cfg);
	ret = snapshot_find_resume(cfg->resume_from, err, sizeof(err));
	if (ret < 0) {
		log_error("--resume-from: %s", err);
		return STASIS_EXIT_USAGE;
	}
	if (!ret) {
		log_info("%s does not exist: booting %s", cfg->resume_from,
			 cfg->kernel);
		return run_vm(vm, cfg);
	}
	log_info("resuming from %s", cfg->resume_from);
	o.api_socket = cfg->api_socket;
	o.on_term = cfg->on_term_snapshot;
	return restore_vm(cfg->resume_from, &o);
}

static int cmd_inspect(int argc, char **argv, bool verify_only)
{
	bool as_json = false;
	const char *path = NULL, *key_path = NULL;
	struct snap_key *key = NULL;
	char err[256];
	int status;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && !verify_only) {
			as_json = true;
		} else if (!strcmp(argv[i], "--key") && i + 1 < argc &&
			   !key_path) {
			key_path = argv[++i];
		} else if (argv[i][0] == '-' || path) {
			path = NULL;
			break;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		log_error("usage: stasis %s FILE%s [--key FILE]", argv[0],
			  verify_only ? "" : " [--json]");
		return STASIS_EXIT_USAGE;
	}
	if (key_path && !(key = snap_key_new(key_path, err, sizeof(err)))) {
		log_error("--key: %s", err);
		return STASIS_EXIT_USAGE;
	}
	status = snapshot_inspect(path, as_json, verify_only, key);
	snap_key_free(key);
	return status;
}

/* `stasis merge CHILD -o OUT [--compress C]`: a chain in one full file. */
static int cmd_merge(int argc, char **argv)
{
	const char *child = NULL, *out = NULL;
	struct snap_compress c = { .codec = SNAP_CODEC_RAW }, *cp = NULL;
	char err[512];
	int ret;

	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) &&
		    i + 1 < argc && !out) {
			out = argv[++i];
		} else if (!strcmp(argv[i], "--compress") && i + 1 < argc &&
			   !cp) {
			if (snap_compress_parse(argv[++i], &c, err,
						sizeof(err))) {
				log_error("--compress: %s", err);
				return STASIS_EXIT_USAGE;
			}
			cp = &c;
		} else if (argv[i][0] == '-' || child) {
			child = NULL;
			break;
		} else {
			child = argv[i];
		}
	}
	if (!child || !out || !*out) {
		log_error("usage: stasis merge CHILD -o OUT "
			  "[--compress none|lz4|zstd[:LEVEL]]");
		return STASIS_EXIT_USAGE;
	}
	ret = snapshot_merge(child, out, cp, err, sizeof(err));
	if (ret) {
		log_error("%s: %s", child, err);
		return ret == -ENOMEM ? STASIS_EXIT_HOST : STASIS_EXIT_USAGE;
	}
	printf("merged %s into %s\n", child, out);
	return STASIS_EXIT_OK;
}

int main(int argc, char **argv)
{
	struct timings timings;

	/* First, so that exec-to-main is all it measures. */
	timings_init(&timings, false);
	/* A closed serial or API peer must surface as EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	log_set_level(false, false);
	if (argc < 2) {
		log_error("no command given (usage: stasis COMMAND ..., "
			  "see stasis --help)");
		return STASIS_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("stasis %s\n", STASIS_VERSION);
		return STASIS_EXIT_OK;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage();
		return STASIS_EXIT_OK;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "restore"))
		return cmd_restore(argc - 1, argv + 1, false, &timings);
	if (!strcmp(argv[1], "receive"))
		return cmd_restore(argc - 1, argv + 1, true, &timings);
	if (!strcmp(argv[1], "ctl"))
		return ctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "inspect"))
		return cmd_inspect(argc - 1, argv + 1, false);
	if (!strcmp(argv[1], "verify"))
		return cmd_inspect(argc - 1, argv + 1, true);
	if (!strcmp(argv[1], "merge"))
		return cmd_merge(argc - 1, argv + 1);
	log_error("unknown command '%s' (try stasis --help)", argv[1]);
	return STASIS_EXIT_USAGE;
}
