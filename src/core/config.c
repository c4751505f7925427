/* Command-line and JSON configuration for `stasis run`, validated here so
 * the rest of stasis can trust struct vm_config. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <net/if.h>
#include <sys/un.h>

#include <json-c/json.h>

#include "core/platform.h"
#include "core/text.h"
#include "memory/guest_mem.h"

/* Config files are small; anything larger is not one of ours. */
#define CONFIG_FILE_MAX (1 << 20)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void config_init(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->mem_size = CONFIG_DEFAULT_MEM;
	c->ncpus = 1;
	c->serial = SERIAL_STDIO;
	c->cpu_template = CPU_TEMPLATE_HOST;
	c->seccomp = SECCOMP_ON;
	c->vmgenid = true;
}

void config_free_disk(struct disk_config *d)
{
	free(d->path);
	free(d->id);
	memset(d, 0, sizeof(*d));
}

void config_free_net(struct net_config *n)
{
	free(n->tap);
	free(n->path);
	free(n->peer);
	memset(n, 0, sizeof(*n));
}

static void config_clear_disks(struct vm_config *c)
{
	for (unsigned i = 0; i < c->ndisks; i++)
		config_free_disk(&c->disks[i]);
	c->ndisks = 0;
}

static void config_clear_nets(struct vm_config *c)
{
	for (unsigned i = 0; i < c->nnets; i++)
		config_free_net(&c->nets[i]);
	c->nnets = 0;
}

void config_free(struct vm_config *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->serial_path);
	free(c->api_socket);
	free(c->sign_key_path);
	config_clear_disks(c);
	config_clear_nets(c);
	free(c->console_path);
	free(c->on_term_snapshot);
	free(c->resume_from);
	config_init(c);
}

static int set_string(char **dst, const char *s)
{
	char *copy = strdup(s);

	if (!copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		/* Accept "256MiB" and "256MB" as well as "256M". */
		if (*end == 'i')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
	}
	if (*end || v == 0)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int config_parse_serial(struct vm_config *c, const char *s)
{
	if (!strcmp(s, "stdio")) {
		c->serial = SERIAL_STDIO;
		return 0;
	}
	if (!strcmp(s, "none")) {
		c->serial = SERIAL_NONE;
		return 0;
	}
	if (!strncmp(s, "file:", 5) && s[5]) {
		c->serial = SERIAL_FILE;
		return set_string(&c->serial_path, s + 5);
	}
	return -EINVAL;
}

int config_parse_cpu_template(const char *s, enum cpu_template *out)
{
	if (!strcmp(s, "host"))
		*out = CPU_TEMPLATE_HOST;
	else if (!strcmp(s, "baseline"))
		*out = CPU_TEMPLATE_BASELINE;
	else
		return -EINVAL;
	return 0;
}

const char *config_cpu_template_name(enum cpu_template t)
{
	return t == CPU_TEMPLATE_BASELINE ? "baseline" : "host";
}

/* "52:54:00:12:34:56": six hex pairs. A multicast or all-zero address
 * cannot be a NIC's own (IEEE 802 bit 0 of the first octet). */
static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	int used = -1;

	if (strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &used) != 6 ||
	    used != 17)
		return -EINVAL;
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1)
		return -EINVAL;
	if (!(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return -EINVAL;
	return 0;
}

/* Splits "a,b=c,..." in place: returns the next item and advances @p. */
static char *next_item(char **p)
{
	char *item = *p, *comma;

	if (!item)
		return NULL;
	comma = strchr(item, ',');
	if (comma) {
		*comma = '\0';
		*p = comma + 1;
	} else {
		*p = NULL;
	}
	return item;
}

/* Printable ASCII: what a virtio-blk serial or a file name in a config can
 * hold without surprises in logs and JSON. */
static bool is_printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

int config_parse_disk(struct disk_config *d, const char *spec, char *err,
		      size_t errlen)
{
	char *copy = strdup(spec), *p = copy, *item;
	int ret = -EINVAL;

	memset(d, 0, sizeof(*d));
	if (!copy) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	item = next_item(&p);
	if (!*item) {
		set_err(err, errlen, "--disk: '%s' has no image path", spec);
		goto fail;
	}
	d->path = strdup(item);
	if (!d->path)
		goto nomem;
	while ((item = next_item(&p))) {
		if (!strcmp(item, "ro")) {
			d->readonly = true;
		} else if (!strcmp(item, "verify=hash")) {
			d->verify_hash = true;
		} else if (!strncmp(item, "id=", 3)) {
			size_t n = strlen(item + 3);

			if (d->id) {
				set_err(err, errlen, "--disk: id given twice");
				goto fail;
			}
			if (n == 0 || n > CONFIG_DISK_ID_MAX ||
			    !is_printable(item + 3)) {
				set_err(err, errlen,
					"--disk: id '%s' must be 1 to %d "
					"printable characters",
					item + 3, CONFIG_DISK_ID_MAX);
				goto fail;
			}
			d->id = strdup(item + 3);
			if (!d->id)
				goto nomem;
		} else {
			set_err(err, errlen,
				"--disk: unknown option '%s' (PATH[,ro][,id="
				"NAME][,verify=hash])",
				item);
			goto fail;
		}
	}
	free(copy);
	return 0;
nomem:
	set_err(err, errlen, "out of memory");
	ret = -ENOMEM;
fail:
	config_free_disk(d);
	free(copy);
	return ret;
}

int config_parse_net(struct net_config *n, const char *spec, char *err,
		     size_t errlen)
{
	char *copy = strdup(spec), *p = copy, *item;
	int ret = -EINVAL;

	memset(n, 0, sizeof(*n));
	if (!copy) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	item = next_item(&p);
	if (!strncmp(item, "tap=", 4)) {
		n->backend = NET_BACKEND_TAP;
		/* The kernel's interface names hold IFNAMSIZ - 1 bytes. */
		if (!item[4] || strlen(item + 4) >= IFNAMSIZ ||
		    strchr(item + 4, '/') || !is_printable(item + 4)) {
			set_err(err, errlen,
				"--net: tap name '%s' must be 1 to %d "
				"characters",
				item + 4, IFNAMSIZ - 1);
			goto fail;
		}
		n->tap = strdup(item + 4);
		if (!n->tap)
			goto nomem;
	} else if (!strncmp(item, "unix=", 5)) {
		n->backend = NET_BACKEND_UNIX;
		if (!item[5] ||
		    strlen(item + 5) >=
			sizeof(((struct sockaddr_un *)0)->sun_path)) {
			set_err(err, errlen,
				"--net: socket path '%s' is empty or too long",
				item + 5);
			goto fail;
		}
		n->path = strdup(item + 5);
		if (!n->path)
			goto nomem;
	} else {
		set_err(err, errlen,
			"--net: '%s' is not tap=NAME or unix=PATH[,peer=PATH]",
			spec);
		goto fail;
	}
	while ((item = next_item(&p))) {
		if (!strncmp(item, "mac=", 4)) {
			if (n->mac_set) {
				set_err(err, errlen, "--net: mac given twice");
				goto fail;
			}
			if (parse_mac(item + 4, n->mac)) {
				set_err(err, errlen,
					"--net: '%s' is not a unicast MAC "
					"address like 52:54:00:12:34:56",
					item + 4);
				goto fail;
			}
			n->mac_set = true;
		} else if (!strncmp(item, "peer=", 5) &&
			   n->backend == NET_BACKEND_UNIX) {
			if (n->peer || !item[5] ||
			    strlen(item + 5) >=
				sizeof(((struct sockaddr_un *)0)->sun_path)) {
				set_err(
				    err, errlen,
				    "--net: peer '%s' is repeated, empty or "
				    "too long",
				    item + 5);
				goto fail;
			}
			n->peer = strdup(item + 5);
			if (!n->peer)
				goto nomem;
		} else {
			set_err(err, errlen, "--net: unknown option '%s'",
				item);
			goto fail;
		}
	}
	free(copy);
	return 0;
nomem:
	set_err(err, errlen, "out of memory");
	ret = -ENOMEM;
fail:
	config_free_net(n);
	free(copy);
	return ret;
}

int config_parse_console(struct vm_config *c, const char *spec, char *err,
			 size_t errlen)
{
	enum console_mode mode;
	const char *path = NULL;

	if (!strcmp(spec, "none")) {
		mode = CONSOLE_NONE;
	} else if (!strcmp(spec, "stdio")) {
		mode = CONSOLE_STDIO;
	} else if (!strncmp(spec, "file:", 5) && spec[5]) {
		mode = CONSOLE_FILE;
		path = spec + 5;
	} else if (!strncmp(spec, "socket:", 7) && spec[7]) {
		mode = CONSOLE_SOCKET;
		path = spec + 7;
		if (strlen(path) >=
		    sizeof(((struct sockaddr_un *)0)->sun_path)) {
			set_err(err, errlen, "--console: socket path too long");
			return -EINVAL;
		}
	} else {
		set_err(err, errlen,
			"--console: '%s' is not stdio, file:PATH, socket:PATH "
			"or none",
			spec);
		return -EINVAL;
	}
	free(c->console_path);
	c->console_path = NULL;
	if (path && !(c->console_path = strdup(path))) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->console = mode;
	return 0;
}

int config_parse_hugepages(const char *s, uint64_t *out)
{
	if (!strcmp(s, "2M") || !strcmp(s, "2m"))
		*out = 2ull << 20;
	else if (!strcmp(s, "off"))
		*out = 0;
	else
		return -EINVAL;
	return 0;
}

int config_parse_on_term(struct vm_config *c, const char *spec, char *err,
			 size_t errlen)
{
	const char *path = NULL;

	if (!strncmp(spec, "snapshot:", 9) && spec[9]) {
		path = spec + 9;
		if (strlen(path) >= PATH_MAX) {
			set_err(err, errlen, "--on-term: path too long");
			return -EINVAL;
		}
	} else if (strcmp(spec, "stop")) {
		set_err(err, errlen,
			"--on-term: '%s' is not snapshot:PATH or stop", spec);
		return -EINVAL;
	}
	free(c->on_term_snapshot);
	c->on_term_snapshot = NULL;
	if (path && !(c->on_term_snapshot = strdup(path))) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int parse_cpus(const char *s, unsigned *out)
{
	unsigned long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < 1 || v > PLATFORM_MAX_CPUS)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* Options shared by the command line and the JSON file: one table, so the
 * two can never drift apart. */
enum config_opt {
	OPT_KERNEL = 'k',
	OPT_INITRD = 'i',
	OPT_CMDLINE = 'c',
	OPT_MEM = 'm',
	OPT_CPUS = 'n',
	OPT_SERIAL = 's',
	OPT_HELP = 'h',
	OPT_DEBUG_EXIT = 256,
	OPT_CPU_TEMPLATE,
	OPT_CONFIG,
	OPT_API_SOCKET,
	OPT_DISK,
	OPT_NET,
	OPT_CONSOLE,
	OPT_RNG,
	OPT_SECCOMP,
	OPT_USER,
	OPT_ON_TERM,
	OPT_RESUME_FROM,
	OPT_VMGENID,
	OPT_HUGEPAGES,
	OPT_SIGN_KEY,
	OPT_TRACK_DIRTY,
};

static const struct option config_long_opts[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "mem", required_argument, NULL, OPT_MEM },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "debug-exit", no_argument, NULL, OPT_DEBUG_EXIT },
	{ "cpu-template", required_argument, NULL, OPT_CPU_TEMPLATE },
	{ "api-socket", required_argument, NULL, OPT_API_SOCKET },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "net", required_argument, NULL, OPT_NET },
	{ "on-term", required_argument, NULL, OPT_ON_TERM },
	{ "resume-from", required_argument, NULL, OPT_RESUME_FROM },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "rng", no_argument, NULL, OPT_RNG },
	{ "seccomp", required_argument, NULL, OPT_SECCOMP },
	{ "vmgenid", required_argument, NULL, OPT_VMGENID },
	{ "hugepages", required_argument, NULL, OPT_HUGEPAGES },
	{ "sign-key", required_argument, NULL, OPT_SIGN_KEY },
	{ "track-dirty", no_argument, NULL, OPT_TRACK_DIRTY },
	{ "user", required_argument, NULL, OPT_USER },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

/* Applies one option's value; @value is NULL for flags. */
static int config_apply(struct vm_config *c, int opt, const char *name,
			const char *value, char *err, size_t errlen)
{
	int ret = 0;

	switch (opt) {
	case OPT_KERNEL:
		ret = set_string(&c->kernel, value);
		break;
	case OPT_INITRD:
		ret = set_string(&c->initrd, value);
		break;
	case OPT_CMDLINE:
		if (strlen(value) >= CONFIG_MAX_CMDLINE) {
			set_err(err, errlen, "--cmdline: longer than %d bytes",
				CONFIG_MAX_CMDLINE - 1);
			return -EINVAL;
		}
		ret = set_string(&c->cmdline, value);
		break;
	case OPT_MEM:
		ret = config_parse_size(value, &c->mem_size);
		if (ret) {
			set_err(err, errlen,
				"--mem: '%s' is not a size (e.g. 256M, 2G)",
				value);
			return -EINVAL;
		}
		break;
	case OPT_CPUS:
		if (parse_cpus(value, &c->ncpus)) {
			set_err(err, errlen,
				"--cpus: '%s' is not a number from 1 to %d",
				value, PLATFORM_MAX_CPUS);
			return -EINVAL;
		}
		break;
	case OPT_SERIAL:
		if (config_parse_serial(c, value)) {
			set_err(
			    err, errlen,
			    "--serial: '%s' is not stdio, none or file:PATH",
			    value);
			return -EINVAL;
		}
		break;
	case OPT_DEBUG_EXIT:
		c->debug_exit = true;
		break;
	case OPT_CPU_TEMPLATE:
		if (config_parse_cpu_template(value, &c->cpu_template)) {
			set_err(err, errlen,
				"--cpu-template: '%s' is not host or baseline",
				value);
			return -EINVAL;
		}
		break;
	case OPT_API_SOCKET:
		ret = set_string(&c->api_socket, value);
		break;
	case OPT_SIGN_KEY:
		ret = set_string(&c->sign_key_path, value);
		break;
	case OPT_DISK:
		if (c->ndisks >= CONFIG_MAX_DISKS) {
			set_err(err, errlen, "--disk: more than %d disks",
				CONFIG_MAX_DISKS);
			return -EINVAL;
		}
		ret =
		    config_parse_disk(&c->disks[c->ndisks], value, err, errlen);
		if (ret)
			return ret;
		c->ndisks++;
		break;
	case OPT_NET:
		if (c->nnets >= CONFIG_MAX_NETS) {
			set_err(err, errlen,
				"--net: more than %d network devices",
				CONFIG_MAX_NETS);
			return -EINVAL;
		}
		ret = config_parse_net(&c->nets[c->nnets], value, err, errlen);
		if (ret)
			return ret;
		c->nnets++;
		break;
	case OPT_CONSOLE:
		return config_parse_console(c, value, err, errlen);
	case OPT_RNG:
		c->rng = true;
		break;
	case OPT_TRACK_DIRTY:
		c->track_dirty = true;
		break;
	case OPT_SECCOMP:
		if (seccomp_mode_parse(value, &c->seccomp)) {
			set_err(err, errlen,
				"--seccomp: '%s' is not on, log or off", value);
			return -EINVAL;
		}
		break;
	case OPT_VMGENID:
		if (strcmp(value, "on") && strcmp(value, "off")) {
			set_err(err, errlen, "--vmgenid: '%s' is not on or off",
				value);
			return -EINVAL;
		}
		c->vmgenid = !strcmp(value, "on");
		break;
	case OPT_HUGEPAGES:
		if (config_parse_hugepages(value, &c->hugepages)) {
			set_err(err, errlen,
				"--hugepages: '%s' is not 2M or off", value);
			return -EINVAL;
		}
		break;
	case OPT_USER:
		return privdrop_parse(value, &c->user, err, errlen);
	case OPT_ON_TERM:
		return config_parse_on_term(c, value, err, errlen);
	case OPT_RESUME_FROM:
		if (!*value || strlen(value) >= PATH_MAX) {
			set_err(err, errlen,
				"--resume-from: path empty or too long");
			return -EINVAL;
		}
		ret = set_string(&c->resume_from, value);
		break;
	default:
		set_err(err, errlen, "option '%s' is not allowed here", name);
		return -EINVAL;
	}
	if (ret == -ENOMEM)
		set_err(err, errlen, "out of memory");
	return ret;
}

static const struct option *config_find_opt(const char *key)
{
	char name[64];
	size_t n = strlen(key);

	if (n >= sizeof(name))
		return NULL;
	/* JSON keys may spell "debug_exit" or "debug-exit". */
	for (size_t i = 0; i <= n; i++)
		name[i] = key[i] == '_' ? '-' : key[i];
	for (const struct option *o = config_long_opts; o->name; o++)
		if (!strcmp(o->name, name))
			return o;
	return NULL;
}

/* "disk" and "net" take an array of strings in the command-line syntax
 * (a single string is one element); the array replaces the list. */
static int config_load_json_list(struct vm_config *c, int opt, const char *key,
				 struct json_object *val, char *err,
				 size_t errlen)
{
	size_t n = 1;
	int ret;

	if (json_object_is_type(val, json_type_array))
		n = json_object_array_length(val);
	else if (!json_object_is_type(val, json_type_string))
		goto bad_type;
	if (opt == OPT_DISK)
		config_clear_disks(c);
	else
		config_clear_nets(c);
	for (size_t i = 0; i < n; i++) {
		struct json_object *e =
		    json_object_is_type(val, json_type_array)
			? json_object_array_get_idx(val, i)
			: val;

		if (!json_object_is_type(e, json_type_string))
			goto bad_type;
		ret = config_apply(c, opt, key, json_object_get_string(e), err,
				   errlen);
		if (ret)
			return ret;
	}
	return 0;
bad_type:
	set_err(err, errlen, "\"%s\" must be an array of strings", key);
	return -EINVAL;
}

int config_load_json(struct vm_config *c, const char *text, char *err,
		     size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *root;
	enum json_tokener_error jerr;
	int ret = 0;

	size_t len = strlen(text), bad;

	/* RFC 8259 section 8.1: JSON text is UTF-8. json-c would take any
	 * byte inside a string; the control API does not, nor does this. */
	if (!text_is_utf8(text, len, &bad)) {
		set_err(err, errlen, "not valid UTF-8 at byte %zu", bad);
		return -EINVAL;
	}
	tok = json_tokener_new_ex(32);
	if (!tok) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	root = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	if (!root || jerr != json_tokener_success) {
		set_err(
		    err, errlen, "not valid JSON: %s",
		    json_tokener_error_desc(jerr == json_tokener_continue
						? json_tokener_error_parse_eof
						: jerr));
		ret = -EINVAL;
		goto out;
	}
	if (!json_object_is_type(root, json_type_object)) {
		set_err(err, errlen, "the top level must be a JSON object");
		ret = -EINVAL;
		goto out;
	}
	json_object_object_foreach(root, key, val)
	{
		const struct option *o = config_find_opt(key);
		char num[32];
		const char *sval;

		if (!o || o->val == OPT_CONFIG || o->val == OPT_HELP) {
			char q[80];

			set_err(err, errlen, "unknown key \"%s\"",
				text_escape(q, sizeof(q), key, strlen(key)));
			ret = -EINVAL;
			goto out;
		}
		if (o->val == OPT_DISK || o->val == OPT_NET) {
			ret = config_load_json_list(c, o->val, key, val, err,
						    errlen);
		} else if (o->has_arg == no_argument) {
			if (!json_object_is_type(val, json_type_boolean)) {
				set_err(err, errlen,
					"\"%s\" must be true or false", key);
				ret = -EINVAL;
				goto out;
			}
			if (json_object_get_boolean(val))
				ret = config_apply(c, o->val, key, NULL, err,
						   errlen);
			else if (o->val == OPT_DEBUG_EXIT)
				c->debug_exit = false;
			else if (o->val == OPT_RNG)
				c->rng = false;
		} else {
			if (json_object_is_type(val, json_type_int) &&
			    json_object_get_int64(val) >= 0) {
				snprintf(num, sizeof(num), "%lld",
					 (long long)json_object_get_int64(val));
				sval = num;
			} else if (json_object_is_type(val, json_type_string)) {
				sval = json_object_get_string(val);
			} else {
				set_err(err, errlen,
					"\"%s\" must be a string or number",
					key);
				ret = -EINVAL;
				goto out;
			}
			ret = config_apply(c, o->val, key, sval, err, errlen);
		}
		if (ret)
			goto out;
	}
out:
	if (root)
		json_object_put(root);
	json_tokener_free(tok);
	return ret;
}

int config_load_json_file(struct vm_config *c, const char *path, char *err,
			  size_t errlen)
{
	char msg[256];
	FILE *f;
	char *text;
	size_t n;
	int ret;

	f = fopen(path, "re");
	if (!f) {
		set_err(err, errlen, "--config: cannot open %s: %s", path,
			strerror(errno));
		return -EINVAL;
	}
	text = malloc(CONFIG_FILE_MAX + 1);
	if (!text) {
		fclose(f);
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	n = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	if (ferror(f) || n > CONFIG_FILE_MAX) {
		set_err(err, errlen, "--config: %s: %s", path,
			ferror(f) ? "read error" : "larger than 1 MiB");
		ret = -EINVAL;
		goto out;
	}
	text[n] = '\0';
	if (memchr(text, '\0', n)) {
		set_err(err, errlen, "--config: %s: contains a NUL byte", path);
		ret = -EINVAL;
		goto out;
	}
	ret = config_load_json(c, text, msg, sizeof(msg));
	if (ret)
		set_err(err, errlen, "--config: %s: %s", path, msg);
out:
	free(text);
	fclose(f);
	return ret;
}

int config_parse_run_args(struct vm_config *c, int argc, char **argv, char *err,
			  size_t errlen)
{
	bool cli_disks = false, cli_nets = false;
	int opt, ret;

	/* First pass: only --config and --help, so flags override the file
	 * whatever their order. */
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", config_long_opts, NULL)) !=
	       -1) {
		if (opt == OPT_HELP) {
			config_print_run_usage();
			return 1;
		}
		if (opt == OPT_CONFIG) {
			ret = config_load_json_file(c, optarg, err, errlen);
			if (ret)
				return ret;
		}
	}

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", config_long_opts, NULL)) !=
	       -1) {
		if (opt == '?') {
			set_err(err, errlen,
				"unknown or incomplete option '%s'",
				argv[optind - 1]);
			return -EINVAL;
		}
		if (opt == OPT_CONFIG)
			continue;
		/* Like every flag, --disk and --net override the file: the
		 * first one replaces its list. */
		if (opt == OPT_DISK && !cli_disks) {
			config_clear_disks(c);
			cli_disks = true;
		}
		if (opt == OPT_NET && !cli_nets) {
			config_clear_nets(c);
			cli_nets = true;
		}
		ret =
		    config_apply(c, opt, argv[optind - 1], optarg, err, errlen);
		if (ret)
			return ret;
	}
	if (optind < argc) {
		set_err(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return config_validate(c, err, errlen);
}

/* The virtio options; the parsers already checked each value's syntax,
 * this checks what a JSON file or a hand-built config could still get
 * wrong, and combinations. */
static int config_validate_virtio(const struct vm_config *c, char *err,
				  size_t errlen)
{
	if (c->ndisks > CONFIG_MAX_DISKS || c->nnets > CONFIG_MAX_NETS) {
		set_err(err, errlen, "more than %d disks or %d network devices",
			CONFIG_MAX_DISKS, CONFIG_MAX_NETS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < c->ndisks; i++) {
		const struct disk_config *d = &c->disks[i];

		if (!d->path || !*d->path) {
			set_err(err, errlen, "--disk: disk %u has no path", i);
			return -EINVAL;
		}
		if (d->id && strlen(d->id) > CONFIG_DISK_ID_MAX) {
			set_err(err, errlen,
				"--disk: id '%s' is longer than %d bytes",
				d->id, CONFIG_DISK_ID_MAX);
			return -EINVAL;
		}
		/* Two devices writing one image corrupt it. */
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(d->path, c->disks[j].path)) {
				set_err(err, errlen,
					"--disk: %s is given twice", d->path);
				return -EINVAL;
			}
	}
	for (unsigned i = 0; i < c->nnets; i++) {
		const struct net_config *n = &c->nets[i];

		if (n->backend == NET_BACKEND_TAP ? !n->tap : !n->path) {
			set_err(err, errlen, "--net: device %u has no backend",
				i);
			return -EINVAL;
		}
		for (unsigned j = 0; j < i; j++)
			if (n->backend == NET_BACKEND_UNIX &&
			    c->nets[j].backend == NET_BACKEND_UNIX &&
			    !strcmp(n->path, c->nets[j].path)) {
				set_err(err, errlen,
					"--net: socket %s is given twice",
					n->path);
				return -EINVAL;
			}
	}
	if ((c->console == CONSOLE_FILE || c->console == CONSOLE_SOCKET) &&
	    (!c->console_path || !*c->console_path)) {
		set_err(err, errlen, "--console: no path given");
		return -EINVAL;
	}
	/* Only one device can read the terminal. */
	if (c->console == CONSOLE_STDIO && c->serial == SERIAL_STDIO) {
		set_err(err, errlen,
			"--console stdio needs --serial file:PATH or none: "
			"both would read stdin");
		return -EINVAL;
	}
	return 0;
}

int config_validate(const struct vm_config *c, char *err, size_t errlen)
{
	if (!c->kernel) {
		set_err(err, errlen, "--kernel is required");
		return -EINVAL;
	}
	if (privdrop_check(&c->user, err, errlen))
		return -EPERM;
	if (c->mem_size < GUEST_MEM_MIN || c->mem_size > GUEST_MEM_MAX) {
		set_err(err, errlen,
			"--mem: %llu bytes is outside 2 MiB to 1 TiB",
			(unsigned long long)c->mem_size);
		return -EINVAL;
	}
	if (c->hugepages && c->mem_size % c->hugepages) {
		set_err(err, errlen,
			"--hugepages 2M: --mem must be a multiple of 2 MiB");
		return -EINVAL;
	}
	if (c->mem_size & 0xfff) {
		set_err(err, errlen, "--mem: must be a multiple of 4 KiB");
		return -EINVAL;
	}
	if (c->ncpus < 1 || c->ncpus > PLATFORM_MAX_CPUS) {
		set_err(err, errlen, "--cpus: must be from 1 to %d",
			PLATFORM_MAX_CPUS);
		return -EINVAL;
	}
	return config_validate_virtio(c, err, errlen);
}

void config_print_run_usage(void)
{
	printf(
	    "usage: stasis run --kernel FILE [options]\n"
	    "  --kernel FILE         PVH ELF, Linux bzImage or vmlinux\n"
	    "  --initrd FILE         initial ramdisk\n"
	    "  --cmdline STR         kernel command line\n"
	    "  --mem SIZE            guest RAM, e.g. 256M, 2G (default 256M)\n"
	    "  --cpus N              vCPUs, 1 to %d (default 1)\n"
	    "  --serial MODE         stdio | file:PATH | none (default stdio)\n"
	    "  --debug-exit          isa-debug-exit at port 0xf4: a guest\n"
	    "                        write of v exits with status (v<<1)|1\n"
	    "  --cpu-template T      host | baseline (default host)\n"
	    "  --api-socket PATH     serve the control API on this socket\n"
	    "  --sign-key FILE       sign every snapshot with this key (an "
	    "HMAC;\n"
	    "                        docs/snapshot-format.md)\n"
	    "  --disk PATH[,ro][,id=NAME][,verify=hash]\n"
	    "                        virtio-blk on a raw image; repeatable "
	    "(at\n"
	    "                        most %d); id: up to 20 characters;\n"
	    "                        verify=hash: snapshots hash the whole "
	    "image\n"
	    "  --net tap=NAME[,mac=MAC]\n"
	    "  --net unix=PATH[,peer=PATH][,mac=MAC]\n"
	    "                        virtio-net on a tap device or a datagram\n"
	    "                        socket bound at PATH sending to peer\n"
	    "                        (no root needed); repeatable (at most "
	    "%d)\n"
	    "  --console MODE        virtio-console: stdio | file:PATH |\n"
	    "                        socket:PATH (UNIX, one client) | none\n"
	    "  --rng                 virtio-rng fed by the host's getrandom()\n"
	    "  --vmgenid on|off      VM Generation ID device, renewed on "
	    "every\n"
	    "                        restore (default on; docs/devices.md)\n"
	    "  --hugepages 2M|off    guest RAM from 2 MiB hugetlbfs pages "
	    "(reserved\n"
	    "                        in /proc/sys/vm/nr_hugepages; default "
	    "off)\n"
	    "  --track-dirty         log dirty pages from the start (KVM's "
	    "dirty\n"
	    "                        ring where the host has one), so that "
	    "every\n"
	    "                        snapshot can be an increment\n"
	    "  --seccomp on|log|off  system-call filters per thread (default\n"
	    "                        on; log: the kernel logs what would be\n"
	    "                        refused; docs/security.md)\n"
	    "  --user UID[:GID]      once /dev/kvm, disks, taps and sockets\n"
	    "                        are open, run as this user (a name\n"
	    "                        keeps its groups); needs root\n"
	    "  --on-term snapshot:PATH\n"
	    "                        SIGTERM saves the VM to PATH, then exits\n"
	    "                        0; a failed save leaves it running\n"
	    "  --resume-from PATH    restore PATH if it exists (then renamed\n"
	    "                        PATH.resumed), else boot from the "
	    "options\n"
	    "  --config FILE.json    the same options as a JSON object;\n"
	    "                        flags given too override it\n"
	    "  --help\n",
	    PLATFORM_MAX_CPUS, CONFIG_MAX_DISKS, CONFIG_MAX_NETS);
}

static char *config_disk_string(const struct disk_config *d)
{
	char *s = NULL;

	if (asprintf(&s, "%s%s%s%s%s", d->path, d->readonly ? ",ro" : "",
		     d->id ? ",id=" : "", d->id ? d->id : "",
		     d->verify_hash ? ",verify=hash" : "") < 0)
		return NULL;
	return s;
}

static char *config_net_string(const struct net_config *n)
{
	char mac[32] = "";
	char *s = NULL;
	int r;

	if (n->mac_set)
		snprintf(mac, sizeof(mac), ",mac=%02x:%02x:%02x:%02x:%02x:%02x",
			 n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4],
			 n->mac[5]);
	if (n->backend == NET_BACKEND_TAP)
		r = asprintf(&s, "tap=%s%s", n->tap, mac);
	else
		r = asprintf(&s, "unix=%s%s%s%s", n->path,
			     n->peer ? ",peer=" : "", n->peer ? n->peer : "",
			     mac);
	return r < 0 ? NULL : s;
}

/* Adds @s (heap, freed here) to @arr; -ENOMEM when it cannot. */
static int json_array_add_owned(struct json_object *arr, char *s)
{
	struct json_object *js;

	if (!s)
		return -ENOMEM;
	js = json_object_new_string(s);
	free(s);
	if (!js)
		return -ENOMEM;
	json_object_array_add(arr, js);
	return 0;
}

/* The virtio devices, in the syntax config_load_json() reads. */
static int config_virtio_to_json(const struct vm_config *c,
				 struct json_object *o)
{
	struct json_object *disks = json_object_new_array();
	struct json_object *nets = json_object_new_array();
	char *console = NULL;

	if (!disks || !nets)
		goto fail;
	for (unsigned i = 0; i < c->ndisks; i++)
		if (json_array_add_owned(disks,
					 config_disk_string(&c->disks[i])))
			goto fail;
	for (unsigned i = 0; i < c->nnets; i++)
		if (json_array_add_owned(nets, config_net_string(&c->nets[i])))
			goto fail;
	json_object_object_add(o, "disk", disks);
	json_object_object_add(o, "net", nets);
	switch (c->console) {
	case CONSOLE_NONE:
		console = strdup("none");
		break;
	case CONSOLE_STDIO:
		console = strdup("stdio");
		/* The restored config must pass the stdin check before
		 * restore's own --serial sets the host side. */
		json_object_object_add(o, "serial",
				       json_object_new_string("none"));
		break;
	case CONSOLE_FILE:
	case CONSOLE_SOCKET:
		if (asprintf(&console, "%s:%s",
			     c->console == CONSOLE_FILE ? "file" : "socket",
			     c->console_path) < 0)
			console = NULL;
		break;
	}
	if (!console)
		return -ENOMEM;
	json_object_object_add(o, "console", json_object_new_string(console));
	free(console);
	json_object_object_add(o, "rng", json_object_new_boolean(c->rng));
	return 0;
fail:
	json_object_put(disks);
	json_object_put(nets);
	return -ENOMEM;
}

char *config_to_json(const struct vm_config *c)
{
	struct json_object *o = json_object_new_object();
	char mem[32];
	char *out = NULL;

	if (!o)
		return NULL;
	snprintf(mem, sizeof(mem), "%llu", (unsigned long long)c->mem_size);
	if (c->kernel)
		json_object_object_add(o, "kernel",
				       json_object_new_string(c->kernel));
	if (c->initrd)
		json_object_object_add(o, "initrd",
				       json_object_new_string(c->initrd));
	if (c->cmdline)
		json_object_object_add(o, "cmdline",
				       json_object_new_string(c->cmdline));
	json_object_object_add(o, "mem", json_object_new_string(mem));
	json_object_object_add(o, "cpus", json_object_new_int((int)c->ncpus));
	json_object_object_add(o, "debug-exit",
			       json_object_new_boolean(c->debug_exit));
	json_object_object_add(
	    o, "cpu-template",
	    json_object_new_string(config_cpu_template_name(c->cpu_template)));
	json_object_object_add(
	    o, "vmgenid", json_object_new_string(c->vmgenid ? "on" : "off"));
	/* Host policy a restore can override (--hugepages there). */
	if (c->hugepages)
		json_object_object_add(o, "hugepages",
				       json_object_new_string("2M"));
	if (config_virtio_to_json(c, o)) {
		json_object_put(o);
		return NULL;
	}
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return out;
}
