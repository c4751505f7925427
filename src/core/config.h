/* The VM's configuration: parsed from the command line and a JSON file,
 * validated in one place, and recorded in snapshots. */
#ifndef STASIS_CONFIG_H
#define STASIS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/privdrop.h"
#include "core/seccomp.h"

enum serial_mode {
	SERIAL_STDIO, /* output to stdout, input from stdin */
	SERIAL_FILE, /* output to a file, no input */
	SERIAL_NONE,
};

enum cpu_template {
	CPU_TEMPLATE_HOST, /* everything KVM supports on this host */
	CPU_TEMPLATE_BASELINE, /* a fixed, documented set (docs/cpu.md) */
};

/* virtio devices (docs/virtio.md). */
#define CONFIG_MAX_DISKS 4
#define CONFIG_MAX_NETS 2

struct disk_config {
	char *path;
	bool readonly;
	char *id; /* virtio-blk GET_ID string (<= 20 bytes); NULL: "blkN" */
	/* verify=hash: every snapshot records an xxh3 of the whole image,
	 * and a restore checks it (docs/virtio.md). Recorded. */
	bool verify_hash;
	/* Given again to `stasis restore --disk`: the user vouches for the
	 * image, so its identity is not checked against the snapshot (with
	 * verify_hash: only its content hash is). Never recorded. */
	bool replaced;
};

enum net_backend {
	NET_BACKEND_TAP, /* --net tap=NAME: a host tap device */
	NET_BACKEND_UNIX, /* --net unix=PATH[,peer=PATH]: datagram socket */
};

struct net_config {
	enum net_backend backend;
	char *tap; /* tap interface name */
	char *path; /* our datagram socket (bound) */
	char *peer; /* the other end's socket; NULL: reply to last sender */
	uint8_t mac[6];
	bool mac_set; /* else derived from the VM's index: 52:54:00:... */
};

enum console_mode {
	CONSOLE_NONE,
	CONSOLE_STDIO,
	CONSOLE_FILE, /* output to a file, no input */
	CONSOLE_SOCKET, /* a listening UNIX stream socket, one client */
};

#define CONFIG_DEFAULT_MEM (256ull << 20)
#define CONFIG_MAX_CMDLINE 4096

struct snap_key;
struct timings;

/* Every string is owned (heap) and freed by config_free(). */
struct vm_config {
	char *kernel;
	char *initrd;
	char *cmdline;
	uint64_t mem_size;
	unsigned ncpus;
	enum serial_mode serial;
	char *serial_path;
	bool debug_exit;
	enum cpu_template cpu_template;
	char *api_socket;
	/* --sign-key FILE: snapshots carry an HMAC with that key
	 * (docs/snapshot-format.md#signature). Host-side, never recorded:
	 * a snapshot's CONFIG cannot name one. sign_key is the key, loaded
	 * by the caller (main) and owned by it. */
	char *sign_key_path;
	const struct snap_key *sign_key;

	struct disk_config disks[CONFIG_MAX_DISKS];
	unsigned ndisks;
	struct net_config nets[CONFIG_MAX_NETS];
	unsigned nnets;
	enum console_mode console;
	char *console_path;
	bool rng;
	/* The VM Generation ID device (ACPI tables and ID); a restore takes
	 * its presence from the snapshot's own device record. */
	bool vmgenid;
	/* Host policy, never taken from a snapshot's CONFIG record. */
	enum seccomp_mode seccomp;
	/* --hugepages 2M: guest RAM from hugetlbfs (bytes per page; 0 for
	 * ordinary pages). Recorded in snapshots; a restore may override
	 * it, being host policy. */
	uint64_t hugepages;
	struct run_user user; /* --user: who stasis becomes before the guest */

	/* Host integration (docs/install.md), never recorded in snapshots:
	 * where SIGTERM saves the VM (NULL: SIGTERM stops it), and the
	 * snapshot `stasis run` resumes instead of booting when it exists. */
	char *on_term_snapshot;
	char *resume_from;
	/* A restore's phase time stamps (core/timings.h), owned by main;
	 * NULL when nobody keeps them. */
	struct timings *timings;
	/* --track-dirty: log dirty pages from the start, with KVM's dirty
	 * ring where the host has one (memory/dirty_log.h); host policy,
	 * never recorded. */
	bool track_dirty;
};

/* Defaults: 256 MiB, 1 vCPU, serial on stdio, host CPU template. */
void config_init(struct vm_config *c);
void config_free(struct vm_config *c);

/* "256M", "2G", "512k", "1T" or plain bytes; binary units. Returns 0 or
 * -EINVAL (bad syntax, zero) / -ERANGE (overflow). */
int config_parse_size(const char *s, uint64_t *out);

/* Parsers for single option values; 0 or -EINVAL. */
int config_parse_serial(struct vm_config *c, const char *s);
int config_parse_cpu_template(const char *s, enum cpu_template *out);
const char *config_cpu_template_name(enum cpu_template t);

/* Applies a JSON object's keys (the long option names, with '-' or '_')
 * to @c. Unknown keys and wrong types are errors. Returns 0 or -EINVAL with
 * a one-line reason in @err. */
int config_load_json(struct vm_config *c, const char *text, char *err,
		     size_t errlen);
int config_load_json_file(struct vm_config *c, const char *path, char *err,
			  size_t errlen);

/* Parses `stasis run` arguments (argv[0] is "run"). --config is applied
 * first, then the other flags over it. Returns 0, 1 when --help was shown,
 * or -EINVAL with a reason in @err. */
int config_parse_run_args(struct vm_config *c, int argc, char **argv, char *err,
			  size_t errlen);

/* Parsers for one --disk / --net / --console value (docs/virtio.md):
 * "PATH[,ro][,id=NAME]", "tap=NAME[,mac=MAC]" or
 * "unix=PATH[,peer=PATH][,mac=MAC]", "none|stdio|file:PATH|socket:PATH".
 * @d / @n are overwritten (free them first with config_free_disk /
 * config_free_net). Return 0, or -EINVAL / -ENOMEM with a one-line reason
 * in @err. `stasis restore --disk/--net` uses them to replace a recorded
 * disk or network backend. */
int config_parse_disk(struct disk_config *d, const char *spec, char *err,
		      size_t errlen);
int config_parse_net(struct net_config *n, const char *spec, char *err,
		     size_t errlen);
int config_parse_console(struct vm_config *c, const char *spec, char *err,
			 size_t errlen);
/* "--on-term snapshot:PATH" (SIGTERM saves to PATH, then stasis exits)
 * or "stop" (the default: SIGTERM stops the VM). 0 or -EINVAL / -ENOMEM
 * with a one-line reason in @err. */
/* "2M" (2 MiB hugepages) or "off" (0) into *@out; 0 or -EINVAL. */
int config_parse_hugepages(const char *s, uint64_t *out);

int config_parse_on_term(struct vm_config *c, const char *spec, char *err,
			 size_t errlen);
void config_free_disk(struct disk_config *d);
void config_free_net(struct net_config *n);

/* Longest virtio-blk id (5.2.6: GET_ID returns 20 bytes, no NUL needed). */
#define CONFIG_DISK_ID_MAX 20

/* Checks the whole configuration (kernel given, memory and CPU bounds). */
int config_validate(const struct vm_config *c, char *err, size_t errlen);

void config_print_run_usage(void);

/* The machine-shape part of @c (kernel, initrd, cmdline, mem, cpus,
 * debug-exit, cpu-template, and the virtio devices: disk, net, console,
 * rng) as a JSON object that config_load_json() reads back; host-side
 * options (serial, api-socket, on-term, resume-from) are left out. Returns a
 * heap string or NULL. */
char *config_to_json(const struct vm_config *c);

#endif
