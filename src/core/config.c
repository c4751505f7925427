/* Command-line and JSON configuration for `stasis run`, validated here so
 * the rest of stasis can trust struct vm_config. */
#include "core/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/platform.h"
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
}

void config_free(struct vm_config *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->serial_path);
	free(c->api_socket);
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

int config_load_json(struct vm_config *c, const char *text, char *err,
		     size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *root;
	enum json_tokener_error jerr;
	int ret = 0;

	tok = json_tokener_new_ex(32);
	if (!tok) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	root = json_tokener_parse_ex(tok, text, (int)strlen(text));
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
			set_err(err, errlen, "unknown key \"%s\"", key);
			ret = -EINVAL;
			goto out;
		}
		if (o->has_arg == no_argument) {
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

int config_validate(const struct vm_config *c, char *err, size_t errlen)
{
	if (!c->kernel) {
		set_err(err, errlen, "--kernel is required");
		return -EINVAL;
	}
	if (c->mem_size < GUEST_MEM_MIN || c->mem_size > GUEST_MEM_MAX) {
		set_err(err, errlen,
			"--mem: %llu bytes is outside 2 MiB to 1 TiB",
			(unsigned long long)c->mem_size);
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
	return 0;
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
	    "  --config FILE.json    the same options as a JSON object;\n"
	    "                        flags given too override it\n"
	    "  --help\n",
	    PLATFORM_MAX_CPUS);
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
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return out;
}
