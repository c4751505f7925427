/* stasis: the command-line front door. Each subcommand parses its own
 * arguments and returns an exit status; only this file exits. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "control/api.h"
#include "core/config.h"
#include "core/log.h"
#include "core/vm.h"
#include "snapshot/inspect.h"
#include "snapshot/sign.h"
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
	    "  ctl SOCKET snapshot PATH [--then resume|pause|exit] [--json]\n"
	    "  inspect FILE [--json]          describe a snapshot\n"
	    "  verify FILE [--key FILE]       check every checksum, and the "
	    "signature\n"
	    "                                 with the key (exit 0/1)\n"
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

	struct snap_key *key = NULL;

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
	status = run_vm(&vm, &cfg);
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
	       "  --memory MODE         map (default): guest memory is mapped "
	       "from the file,\n"
	       "                        copy-on-write, and read as the guest "
	       "touches it;\n"
	       "                        copy: read in whole (the file may then "
	       "change)\n"
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
		{ "require-signed", required_argument, NULL, 'r' },
		{ "sign-key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *disks[CONFIG_MAX_DISKS], *nets[CONFIG_MAX_NETS];
	unsigned ndisks = 0, nnets = 0;
	enum clock_policy clock = CLOCK_ADVANCE;
	struct snapshot_image img;
	const char *serial = NULL, *api = NULL, *require = NULL, *sign = NULL;
	struct snap_key *rkey = NULL, *skey = NULL;
	struct stat checked, now;
	bool paused = false, copy_memory = false;
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
			if (!strcmp(optarg, "map") || !strcmp(optarg, "copy")) {
				copy_memory = !strcmp(optarg, "copy");
			} else {
				log_error("--memory: '%s' is not map or copy",
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
		case 'r':
			require = optarg;
			break;
		case 'k':
			sign = optarg;
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

	if (require && !(rkey = snap_key_new(require, err, sizeof(err)))) {
		log_error("--require-signed: %s", err);
		return STASIS_EXIT_USAGE;
	}
	if (sign && !(skey = snap_key_new(sign, err, sizeof(err)))) {
		log_error("--sign-key: %s", err);
		snap_key_free(rkey);
		return STASIS_EXIT_USAGE;
	}
	/* The whole file is checked before anything in it is read for use.
	 * Memory is then copied, not mapped, so that nothing is read from
	 * the file once the restore is done; and the file must stay the one
	 * checked (restore_unchanged) until then. */
	if (rkey) {
		ret = snap_verify_signature(argv[optind], rkey, &checked, err,
					    sizeof(err));
		if (ret) {
			log_error("%s: %s (--require-signed)", argv[optind],
				  err);
			status = STASIS_EXIT_USAGE;
			goto out_keys;
		}
		copy_memory = true;
	}
	ret = snapshot_open(argv[optind], &img, err, sizeof(err));
	if (ret) {
		log_error("%s: %s", argv[optind], err);
		status = STASIS_EXIT_USAGE;
		goto out_keys;
	}
	if (rkey && (fstat(snap_reader_fd(img.r), &now) ||
		     !snap_same_file(&checked, &now))) {
		log_error("%s: changed after its signature was checked",
			  argv[optind]);
		snapshot_close(&img);
		status = STASIS_EXIT_USAGE;
		goto out_keys;
	}
	img.cfg.sign_key = skey ? skey : rkey;
	img.copy_memory = copy_memory;
	/* Host-side options come from this command line, not the file. A
	 * stdio console keeps stdin, so the serial port defaults to none. */
	img.cfg.serial =
	    img.cfg.console == CONSOLE_STDIO ? SERIAL_NONE : SERIAL_STDIO;
	status = STASIS_EXIT_USAGE;
	if (serial && config_parse_serial(&img.cfg, serial)) {
		log_error("--serial: '%s' is not stdio, none or file:PATH",
			  serial);
		goto out_image;
	}
	err[0] = '\0';
	if (restore_replace_devices(&img.cfg, disks, ndisks, nets, nnets) ||
	    config_validate(&img.cfg, err, sizeof(err))) {
		if (*err)
			log_error("%s", err);
		goto out_image;
	}
	if (api && !(img.cfg.api_socket = strdup(api))) {
		status = STASIS_EXIT_HOST;
		goto out_image;
	}

	ret = vm_create(&vm, &img.cfg, img.cpuid);
	if (ret) {
		status = ret == -ENOTSUP ? STASIS_EXIT_USAGE : STASIS_EXIT_HOST;
		goto out_image;
	}
	ret = snapshot_restore(&vm, &img, clock, err, sizeof(err));
	/* Everything was read from the file checked: not a byte changed
	 * meanwhile. */
	if (!ret && rkey &&
	    (fstat(snap_reader_fd(img.r), &now) ||
	     !snap_same_file(&checked, &now))) {
		snprintf(err, sizeof(err),
			 "changed while it was restored, after its signature "
			 "was checked");
		ret = -ESTALE;
	}
	if (ret) {
		log_error("%s: %s", argv[optind], err);
		vm_destroy(&vm);
		status = ret == -ENOMEM ? STASIS_EXIT_HOST : STASIS_EXIT_USAGE;
		goto out_image;
	}
	/* The file is no longer needed once memory has been read. */
	status = vm_run(&vm, paused);
	vm_destroy(&vm);
out_image:
	snapshot_close(&img);
out_keys:
	snap_key_free(rkey);
	snap_key_free(skey);
	return status;
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
