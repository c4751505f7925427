/* The shared UTF-8 check and message escape (src/core/text.c), and the log
 * lines that use it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "core/text.h"

static void test_utf8(void **state)
{
	static const struct {
		const char *s;
		long bad; /* -1: valid */
	} cases[] = {
		{ "", -1 },
		{ "plain ascii", -1 },
		{ "caf\xc3\xa9", -1 },
		{ "\xe2\x82\xac euro", -1 },
		{ "\xf0\x9f\x98\x80", -1 },
		{ "\xf4\x8f\xbf\xbf", -1 }, /* U+10FFFF */
		{ "debug-ex\xfft", 8 },
		{ "a\x80", 1 }, /* lone continuation */
		{ "\xc0\xaf", 0 }, /* overlong '/' */
		{ "\xe0\x80\xaf", 0 }, /* overlong, 3 bytes */
		{ "\xed\xa0\x80", 0 }, /* surrogate U+D800 */
		{ "\xf4\x90\x80\x80", 0 }, /* above U+10FFFF */
		{ "ok\xc3", 2 }, /* cut short */
		{ "\xe2\x82", 0 },
		{ "x\xc3(", 1 }, /* bad continuation */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t bad = 12345;
		bool ok = text_is_utf8(cases[i].s, strlen(cases[i].s), &bad);

		if (ok != (cases[i].bad < 0) ||
		    (!ok && bad != (size_t)cases[i].bad))
			fail_msg("case %zu: ok %d at %zu", i, ok, bad);
	}
	/* A NUL is a valid code point: the length decides. */
	assert_true(text_is_utf8("a\0b", 3, NULL));
}

static void test_escape(void **state)
{
	char out[64];

	assert_string_equal(text_escape(out, sizeof(out), "abc", 3), "abc");
	assert_string_equal(text_escape(out, sizeof(out), "debug-ex\xfft", 10),
			    "debug-ex\\xfft");
	assert_string_equal(text_escape(out, sizeof(out), "a\nb\x1b[2J", 7),
			    "a\\x0ab\\x1b[2J");
	assert_string_equal(text_escape(out, sizeof(out), "a\0b", 3),
			    "a\\x00b");
	assert_string_equal(text_escape(out, sizeof(out), "\x7f", 1), "\\x7f");
	/* Escaping twice changes nothing. */
	text_escape(out, sizeof(out), "x\xff", 2);
	{
		char again[64];

		assert_string_equal(
		    text_escape(again, sizeof(again), out, strlen(out)), out);
	}
	/* Too long: cut, ending in "...", never past the buffer. */
	{
		char small[10];
		char big[100];

		memset(big, 'z', sizeof(big));
		text_escape(small, sizeof(small), big, sizeof(big));
		assert_string_equal(small, "zzzzzz...");
		memset(big, 0xff, sizeof(big));
		text_escape(small, sizeof(small), big, sizeof(big));
		assert_string_equal(small, "\\xff...");
		text_escape(small, 1, big, sizeof(big));
		assert_string_equal(small, "");
		/* Exactly fits: no ellipsis. */
		text_escape(small, sizeof(small), "123456789", 9);
		assert_string_equal(small, "123456789");
	}
	{
		char s[16] = "k\x01y\xfe";

		text_escape_inplace(s, sizeof(s));
		assert_string_equal(s, "k\\x01y\\xfe");
	}
}

/* log_error writes the escaped line: one line, plain text. */
static void test_log_escapes(void **state)
{
	char path[] = "/tmp/stasis-log-XXXXXX";
	char buf[256] = "";
	int fd = mkstemp(path), saved = dup(2);
	FILE *f;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	assert_int_equal(dup2(fd, 2), 2);
	log_error("unknown key \"%s\"", "debug-ex\xfft\nsecond line");
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	f = fdopen(fd, "r");
	assert_non_null(f);
	rewind(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	assert_string_equal(
	    buf,
	    "stasis: error: unknown key \"debug-ex\\xfft\\x0asecond line\"\n");
	assert_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_log_escapes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
