/* stasis: the command-line front door. Each subcommand parses its own
 * arguments and returns an exit status; only this file exits. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/api.h"
#include "core/config.h"
#include "core/log.h"
#include "core/vm.h"
#include "snapshot/inspect.h"
#include "snapshot/pager.h"
#include "snapshot/snapshot.h"

static void usage(void)
{
	printf(
	    "usage: stasis COMMAND [options]\n"
	    "\n"
	    "commands:\n"
	    "  run --kernel FILE [options]    boot a VM (stasis run --help)\n"
	    "  restore FILE [options]         bring a snapshot back to life\n"
	    "  ctl SOCKET status|pause|resume|shutdown [--json]\n"
	    "  ctl SOCKET snapshot PATH [--then resume|pause|exit]\n"
	    "      [--compress none|lz4|zstd[:LEVEL]] [--json]\n"
	    "  inspect FILE [--json]          describe a snapshot\n"
	    "  verify FILE                    check every checksum (exit 0/1)\n"
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

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
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
	status = run_vm(&vm, &cfg);
	config_free(&cfg);
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
	       "  --disk PATH[,ro][,id=NAME]\n"
	       "                        replaces the snapshot's disk with that "
	       "id (blkN\n"
	       "                        when it had none), else the Nth --disk "
	       "the Nth disk;\n"
	       "                        it is then not checked for changes "
	       "(docs/virtio.md)\n"
	       "  --net tap=NAME | unix=PATH[,peer=PATH]\n"
	       "                        the Nth --net replaces the Nth network "
	       "backend;\n"
	       "                        the guest keeps its MAC address\n");
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
		config_free_net(&cfg->nets[i]);
		cfg->nets[i] = n;
	}
	return 0;
}

static int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api-socket", required_argument, NULL, 'a' },
		{ "serial", required_argument, NULL, 's' },
		{ "paused", no_argument, NULL, 'p' },
		{ "clock", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *disks[CONFIG_MAX_DISKS], *nets[CONFIG_MAX_NETS];
	unsigned ndisks = 0, nnets = 0;
	enum clock_policy clock = CLOCK_ADVANCE;
	struct snapshot_image img;
	const char *serial = NULL, *api = NULL;
	bool paused = false, copy_memory = false, ondemand = true;
	bool memory_given = false;
	struct vm vm;
	char err[512];
	int opt, ret, status;

	opterr = 0;
	optind = 1;
	/* Options may come before or after FILE. */
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'a':
			api = optarg;
			break;
		case 's':
			serial = optarg;
			break;
		case 'p':
			paused = true;
			break;
		case 'c':
			if (!strcmp(optarg, "advance")) {
				clock = CLOCK_ADVANCE;
			} else if (!strcmp(optarg, "frozen")) {
				clock = CLOCK_FROZEN;
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
				copy_memory = !strcmp(optarg, "copy");
				ondemand = !strcmp(optarg, "ondemand");
				memory_given = true;
			} else {
				log_error("--memory: '%s' is not ondemand, map "
					  "or copy",
					  optarg);
				return STASIS_EXIT_USAGE;
			}
			break;
		case 'd':
			if (ndisks == CONFIG_MAX_DISKS) {
				log_error("--disk: more than %d disks",
					  CONFIG_MAX_DISKS);
				return STASIS_EXIT_USAGE;
			}
			disks[ndisks++] = optarg;
			break;
		case 'n':
			if (nnets == CONFIG_MAX_NETS) {
				log_error("--net: more than %d network devices",
					  CONFIG_MAX_NETS);
				return STASIS_EXIT_USAGE;
			}
			nets[nnets++] = optarg;
			break;
		case 'h':
			restore_usage();
			return STASIS_EXIT_OK;
		default:
			log_error("restore: unknown or incomplete option '%s'",
				  argv[optind - 1]);
			return STASIS_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		log_error("usage: stasis restore FILE [options] (see stasis "
			  "restore --help)");
		return STASIS_EXIT_USAGE;
	}

	ret = snapshot_open(argv[optind], &img, err, sizeof(err));
	if (ret) {
		log_error("%s: %s", argv[optind], err);
		return STASIS_EXIT_USAGE;
	}
	/* Lazy restores need userfaultfd: the default falls back to copy
	 * with a notice, an explicit request fails. */
	if (ondemand && pager_probe(err, sizeof(err))) {
		if (memory_given) {
			log_error("--memory ondemand: %s", err);
			snapshot_close(&img);
			return STASIS_EXIT_HOST;
		}
		log_info("%s; restoring with --memory copy", err);
		ondemand = false;
		copy_memory = true;
	}
	img.copy_memory = copy_memory;
	img.ondemand = ondemand;
	/* Host-side options come from this command line, not the file. A
	 * stdio console keeps stdin, so the serial port defaults to none. */
	img.cfg.serial =
	    img.cfg.console == CONSOLE_STDIO ? SERIAL_NONE : SERIAL_STDIO;
	if (serial && config_parse_serial(&img.cfg, serial)) {
		log_error("--serial: '%s' is not stdio, none or file:PATH",
			  serial);
		snapshot_close(&img);
		return STASIS_EXIT_USAGE;
	}
	err[0] = '\0';
	if (restore_replace_devices(&img.cfg, disks, ndisks, nets, nnets) ||
	    config_validate(&img.cfg, err, sizeof(err))) {
		if (*err)
			log_error("%s", err);
		snapshot_close(&img);
		return STASIS_EXIT_USAGE;
	}
	if (api && !(img.cfg.api_socket = strdup(api))) {
		snapshot_close(&img);
		return STASIS_EXIT_HOST;
	}

	ret = vm_create(&vm, &img.cfg, img.cpuid);
	if (ret) {
		snapshot_close(&img);
		return ret == -ENOTSUP ? STASIS_EXIT_USAGE : STASIS_EXIT_HOST;
	}
	ret = snapshot_restore(&vm, &img, clock, err, sizeof(err));
	if (ret) {
		log_error("%s: %s", argv[optind], err);
		vm_destroy(&vm);
		snapshot_close(&img);
		return ret == -ENOMEM ? STASIS_EXIT_HOST : STASIS_EXIT_USAGE;
	}
	status = vm_run(&vm, paused);
	/* After a chunk failed its check, threads may wait on memory that
	 * will never come: the process ends without tearing down. */
	if (vm.pager && pager_failed(vm.pager))
		return status;
	vm_destroy(&vm);
	snapshot_close(&img);
	return status;
}

static int cmd_inspect(int argc, char **argv, bool verify_only)
{
	bool as_json = false;
	const char *path = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && !verify_only) {
			as_json = true;
		} else if (argv[i][0] == '-' || path) {
			log_error("usage: stasis %s FILE%s", argv[0],
				  verify_only ? "" : " [--json]");
			return STASIS_EXIT_USAGE;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		log_error("usage: stasis %s FILE%s", argv[0],
			  verify_only ? "" : " [--json]");
		return STASIS_EXIT_USAGE;
	}
	return snapshot_inspect(path, as_json, verify_only);
}

int main(int argc, char **argv)
{
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
		return cmd_restore(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return ctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "inspect"))
		return cmd_inspect(argc - 1, argv + 1, false);
	if (!strcmp(argv[1], "verify"))
		return cmd_inspect(argc - 1, argv + 1, true);
	log_error("unknown command '%s' (try stasis --help)", argv[1]);
	return STASIS_EXIT_USAGE;
}
