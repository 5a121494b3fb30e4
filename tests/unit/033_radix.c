/* radix_sort_u32 sorts like qsort: every size around its thresholds, every key width. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "radix.h"
#include "rng.h"

static uint32_t below(uint64_t *state, uint32_t bound)
{
	return (uint32_t)(rng_next(state) % bound);
}

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static void sorts_like_qsort(void **state)
{
	static const size_t counts[] = {
	    0, 1, 2, RADIX_SMALL - 1, RADIX_SMALL, RADIX_SMALL + 1, 1000, 4095, 4096, 5120, 70000};
	static const uint32_t ranges[] = {1, 7, 2048, 2049, 85000, 1u << 22, 1u << 31, UINT32_MAX};
	enum { MOST = 70000 };
	uint32_t *keys = malloc(MOST * sizeof *keys), *want = malloc(MOST * sizeof *want),
		 *scratch = malloc(MOST * sizeof *scratch);
	uint64_t rng = 3;
	(void)state;

	assert_true(keys && want && scratch);
	for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
		for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++) {
			size_t count = counts[c];
			for (size_t i = 0; i < count; i++)
				keys[i] = ranges[r] == UINT32_MAX ? (uint32_t)rng_next(&rng)
								  : below(&rng, ranges[r]);
			if (count > 3)
				keys[count - 1] = keys[0]; /* a repeat */
			memcpy(want, keys, count * sizeof *keys);
			qsort(want, count, sizeof *want, compare_u32);
			radix_sort_u32(keys, count, scratch);
			assert_memory_equal(keys, want, count * sizeof *keys);
		}
	}
	free(keys);
	free(want);
	free(scratch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sorts_like_qsort),
	};
	return cmocka_run_group_tests_name("033_radix", tests, NULL, NULL);
}
