/* The BLAS kernel choice: the decision rule, the self-check, and that the
 * kernel in use computes the engine's products within float tolerance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "blas.h"

static void test_auto_raises_a_weaker_library_pick(void **unused)
{
	(void)unused;
	enum blas_choice choice;
	assert_string_equal(blas_target("Prescott", "SkylakeX", NULL, false, &choice), "SkylakeX");
	assert_int_equal(choice, BLAS_CHOSEN_AUTO);
	assert_string_equal(blas_target("Haswell", "Cooperlake", "auto", false, &choice),
			    "Cooperlake");
	/* never lowered, and an equal family (Zen runs Haswell's sgemm) is kept */
	assert_null(blas_target("Cooperlake", "SkylakeX", NULL, false, &choice));
	assert_int_equal(choice, BLAS_CHOSEN_LIBRARY);
	assert_null(blas_target("Zen", "Haswell", "", false, &choice));
	assert_int_equal(choice, BLAS_CHOSEN_LIBRARY);
}

static void test_a_request_is_honoured_even_when_weaker(void **unused)
{
	(void)unused;
	enum blas_choice choice;
	assert_string_equal(blas_target("SkylakeX", "SkylakeX", "haswell", false, &choice),
			    "Haswell");
	assert_int_equal(choice, BLAS_CHOSEN_REQUEST);
	assert_null(blas_target("Haswell", "SkylakeX", "Haswell", false, &choice));
	assert_int_equal(choice, BLAS_CHOSEN_REQUEST);
}

static void test_the_operators_environment_is_kept(void **unused)
{
	(void)unused;
	enum blas_choice choice;
	assert_null(blas_target("Prescott", "SkylakeX", "Haswell", true, &choice));
	assert_int_equal(choice, BLAS_CHOSEN_ENVIRONMENT);
}

static void test_kernel_names(void **unused)
{
	(void)unused;
	assert_true(blas_kernel_known("SkylakeX"));
	assert_true(blas_kernel_known("haswell"));
	assert_false(blas_kernel_known("Bogus"));
	assert_false(blas_kernel_known(NULL));
	assert_true(blas_kernel_known(blas_cpu_best()));
}

/* A kernel below the CPU's best is named as such, with the reason; the
 * best itself, or a kernel above it, is not. */
static void test_a_kernel_below_the_cpus_best_is_described_so(void **unused)
{
	(void)unused;
	struct blas_report report = {.kernel = "Haswell", .cpu_best = "Cooperlake",
				     .choice = BLAS_CHOSEN_ENVIRONMENT, .self_check_ok = true};
	char line[384];

	assert_true(blas_below_cpu_best(&report));
	blas_describe(&report, line, sizeof line);
	assert_non_null(strstr(line, "below this CPU's best, Cooperlake, because "
				     "OPENBLAS_CORETYPE in the environment names it"));
	report.choice = BLAS_CHOSEN_REQUEST;
	blas_describe(&report, line, sizeof line);
	assert_non_null(strstr(line, "because blas.kernel"));
	report.choice = BLAS_CHOSEN_FALLBACK;
	snprintf(report.refused, sizeof report.refused, "Cooperlake");
	blas_describe(&report, line, sizeof line);
	assert_non_null(strstr(line, "Cooperlake refused by the self-check"));
	assert_non_null(strstr(line, "because the better kernel failed the self-check"));

	struct blas_report best = {.kernel = "Cooperlake", .cpu_best = "Cooperlake",
				   .choice = BLAS_CHOSEN_LIBRARY, .self_check_ok = true};
	assert_false(blas_below_cpu_best(&best));
	blas_describe(&best, line, sizeof line);
	assert_null(strstr(line, "below"));
	/* Zen ranks with Haswell: not below a Haswell-class CPU */
	struct blas_report zen = {.kernel = "Zen", .cpu_best = "Haswell"};
	assert_false(blas_below_cpu_best(&zen));
	struct blas_report above = {.kernel = "SkylakeX", .cpu_best = "Haswell"};
	assert_false(blas_below_cpu_best(&above));
}

static void test_the_kernel_in_use_passes_the_self_check(void **unused)
{
	(void)unused;
	double error = -1;
	assert_true(blas_self_check(&error));
	assert_true(error >= 0 && error < 1e-4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auto_raises_a_weaker_library_pick),
	    cmocka_unit_test(test_a_request_is_honoured_even_when_weaker),
	    cmocka_unit_test(test_the_operators_environment_is_kept),
	    cmocka_unit_test(test_kernel_names),
	    cmocka_unit_test(test_a_kernel_below_the_cpus_best_is_described_so),
	    cmocka_unit_test(test_the_kernel_in_use_passes_the_self_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
