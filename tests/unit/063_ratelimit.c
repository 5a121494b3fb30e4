/*
 * Rate limiter of log lines: a burst per key and window, exact counts of the
 * lines held back, each count reported once; time is driven by the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"

static void one_line_per_window_and_the_rest_counted(void **state)
{
	(void)state;
	char errstr[128];
	struct ratelimit *rl = ratelimit_new(3, 10.0, 1, errstr, sizeof errstr);
	assert_non_null(rl);
	uint64_t suppressed;
	assert_true(ratelimit_allow(rl, 1, 100.0, &suppressed));
	assert_int_equal(suppressed, 0);
	for (int i = 0; i < 1999; i++) {
		assert_false(ratelimit_allow(rl, 1, 100.0 + i * 0.001, &suppressed));
		assert_int_equal(suppressed, 0);
	}
	/* another key has its own window */
	assert_true(ratelimit_allow(rl, 2, 101.0, &suppressed));
	assert_int_equal(suppressed, 0);
	/* the window is still open: nothing to report yet */
	assert_int_equal(ratelimit_take_suppressed(rl, 1, 109.9), 0);
	/* ended: the count once, then nothing */
	assert_int_equal(ratelimit_take_suppressed(rl, 1, 110.0), 1999);
	assert_int_equal(ratelimit_take_suppressed(rl, 1, 111.0), 0);
	assert_int_equal(ratelimit_take_suppressed(rl, 2, 111.0), 0);
	/* the next line opens a new window; the count was already taken */
	assert_true(ratelimit_allow(rl, 1, 120.0, &suppressed));
	assert_int_equal(suppressed, 0);
	assert_false(ratelimit_allow(rl, 1, 121.0, &suppressed));
	/* a line after the window reports the count itself when no timer took it */
	assert_true(ratelimit_allow(rl, 1, 130.5, &suppressed));
	assert_int_equal(suppressed, 1);
	assert_int_equal(ratelimit_take_suppressed(rl, 1, 141.0), 0);
	/* keys out of range are never limited */
	assert_true(ratelimit_allow(rl, 3, 130.5, &suppressed));
	assert_true(ratelimit_allow(rl, 3, 130.5, &suppressed));
	ratelimit_free(rl);
}

static void burst_and_bad_arguments(void **state)
{
	(void)state;
	char errstr[128];
	struct ratelimit *rl = ratelimit_new(1, 1.0, 3, errstr, sizeof errstr);
	assert_non_null(rl);
	uint64_t suppressed;
	for (int i = 0; i < 3; i++)
		assert_true(ratelimit_allow(rl, 0, 5.0, &suppressed));
	assert_false(ratelimit_allow(rl, 0, 5.5, &suppressed));
	assert_int_equal(ratelimit_take_suppressed(rl, 0, 6.0), 1);
	ratelimit_free(rl);

	assert_null(ratelimit_new(1, 0.0, 1, errstr, sizeof errstr));
	assert_string_equal(errstr, "ratelimit: window 0 s and burst 1 must both be positive");
	assert_null(ratelimit_new(1, 1.0, 0, errstr, sizeof errstr));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(one_line_per_window_and_the_rest_counted),
	    cmocka_unit_test(burst_and_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
