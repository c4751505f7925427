/* Sizes, command-line flags, JSON config files and their precedence. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"

static void test_sizes(void **state)
{
	uint64_t v;

	assert_int_equal(config_parse_size("256M", &v), 0);
	assert_true(v == 256ull << 20);
	assert_int_equal(config_parse_size("2G", &v), 0);
	assert_true(v == 2ull << 30);
	assert_int_equal(config_parse_size("512k", &v), 0);
	assert_true(v == 512ull << 10);
	assert_int_equal(config_parse_size("1GiB", &v), 0);
	assert_true(v == 1ull << 30);
	assert_int_equal(config_parse_size("4096", &v), 0);
	assert_true(v == 4096);
	assert_int_equal(config_parse_size("", &v), -EINVAL);
	assert_int_equal(config_parse_size("M", &v), -EINVAL);
	assert_int_equal(config_parse_size("-1G", &v), -EINVAL);
	assert_int_equal(config_parse_size("0", &v), -EINVAL);
	assert_int_equal(config_parse_size("12Q", &v), -EINVAL);
	assert_int_equal(config_parse_size("1G2", &v), -EINVAL);
	assert_int_equal(config_parse_size("99999999999999999999", &v),
			 -ERANGE);
	assert_int_equal(config_parse_size("17179869184G", &v), -ERANGE);
}

static int parse(struct vm_config *c, char *err, size_t n, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	va_start(ap, n);
	argv[argc++] = "run";
	for (char *a = va_arg(ap, char *); a; a = va_arg(ap, char *))
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	config_init(c);
	return config_parse_run_args(c, argc, argv, err, n);
}

static void test_flags(void **state)
{
	struct vm_config c;
	char err[256];

	assert_int_equal(parse(&c, err, sizeof(err), "--kernel", "k.elf",
			       "--mem", "1G", "--cpus", "4", "--serial",
			       "file:/tmp/x", "--debug-exit", "--cpu-template",
			       "baseline", "--cmdline", "a=b", NULL),
			 0);
	assert_string_equal(c.kernel, "k.elf");
	assert_true(c.mem_size == 1ull << 30);
	assert_int_equal(c.ncpus, 4);
	assert_int_equal(c.serial, SERIAL_FILE);
	assert_string_equal(c.serial_path, "/tmp/x");
	assert_true(c.debug_exit);
	assert_int_equal(c.cpu_template, CPU_TEMPLATE_BASELINE);
	assert_string_equal(c.cmdline, "a=b");
	config_free(&c);
}

static void test_bad_flags(void **state)
{
	struct vm_config c;
	char err[256];

	assert_int_equal(parse(&c, err, sizeof(err), "--mem", "1G", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "--kernel is required"));
	config_free(&c);
	assert_int_equal(
	    parse(&c, err, sizeof(err), "--kernel", "k", "--mem", "lots", NULL),
	    -EINVAL);
	assert_non_null(strstr(err, "--mem"));
	config_free(&c);
	assert_int_equal(
	    parse(&c, err, sizeof(err), "--kernel", "k", "--cpus", "0", NULL),
	    -EINVAL);
	config_free(&c);
	assert_int_equal(
	    parse(&c, err, sizeof(err), "--kernel", "k", "--cpus", "65", NULL),
	    -EINVAL);
	config_free(&c);
	assert_int_equal(parse(&c, err, sizeof(err), "--kernel", "k",
			       "--serial", "tcp:1", NULL),
			 -EINVAL);
	config_free(&c);
	assert_int_equal(
	    parse(&c, err, sizeof(err), "--kernel", "k", "--bogus", NULL),
	    -EINVAL);
	assert_non_null(strstr(err, "--bogus"));
	config_free(&c);
	assert_int_equal(
	    parse(&c, err, sizeof(err), "--kernel", "k", "extra", NULL),
	    -EINVAL);
	config_free(&c);
	assert_int_equal(
	    parse(&c, err, sizeof(err), "--kernel", "k", "--mem", "1k", NULL),
	    -EINVAL);
	config_free(&c);
}

static void test_json(void **state)
{
	struct vm_config c;
	char err[256];

	config_init(&c);
	assert_int_equal(config_load_json(&c,
					  "{\"kernel\": \"g.elf\", \"mem\": "
					  "\"512M\", \"cpus\": 2, "
					  "\"debug_exit\": true, "
					  "\"cpu-template\": \"host\"}",
					  err, sizeof(err)),
			 0);
	assert_string_equal(c.kernel, "g.elf");
	assert_true(c.mem_size == 512ull << 20);
	assert_int_equal(c.ncpus, 2);
	assert_true(c.debug_exit);
	config_free(&c);

	config_init(&c);
	assert_int_equal(
	    config_load_json(&c, "{\"kernal\": \"x\"}", err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "kernal"));
	assert_int_equal(config_load_json(&c, "[1,2]", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(config_load_json(&c, "{\"cpus\": ", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(
	    config_load_json(&c, "{\"cpus\": [1]}", err, sizeof(err)), -EINVAL);
	assert_int_equal(
	    config_load_json(&c, "{\"debug_exit\": 1}", err, sizeof(err)),
	    -EINVAL);
	assert_int_equal(
	    config_load_json(&c, "{\"mem\": -5}", err, sizeof(err)), -EINVAL);
	config_free(&c);
}

static void test_flags_override_file(void **state)
{
	char path[] = "/tmp/stasis-config-XXXXXX";
	const char *json = "{\"kernel\": \"file.elf\", \"cpus\": 2}";
	struct vm_config c;
	char err[256];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	/* The flag comes before --config and still wins. */
	assert_int_equal(
	    parse(&c, err, sizeof(err), "--cpus", "3", "--config", path, NULL),
	    0);
	assert_string_equal(c.kernel, "file.elf");
	assert_int_equal(c.ncpus, 3);
	config_free(&c);
	unlink(path);

	assert_int_equal(parse(&c, err, sizeof(err), "--config",
			       "/nonexistent/x.json", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "cannot open"));
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_bad_flags),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_flags_override_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
