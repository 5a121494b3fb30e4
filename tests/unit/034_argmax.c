/*
 * argmax_biased() (model/argmax.h, the vectorised cell choice of the index)
 * against a plain scalar oracle: every length around its lane width, ties,
 * NaN, infinities and signed zeros, and the sums it leaves behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "argmax.h"
#include "rng.h"

/* The first index of the largest sum, NaN never winning unless all are NaN
 * (then 0): the rule the index has always assigned cells by. */
static size_t oracle(const float *sums, size_t n)
{
	float best = -INFINITY;
	for (size_t c = 0; c < n; c++)
		if (sums[c] > best)
			best = sums[c];
	for (size_t c = 0; c < n; c++)
		if (sums[c] == best)
			return c;
	return 0;
}

/* A value from a small set, so that ties are common, and now and then NaN,
 * an infinity or a signed zero (kind 0: plain values only). */
static float value(uint64_t *rng, int kind)
{
	static const float special[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f};
	uint64_t r = rng_next(rng);
	if (kind > 0 && r % 11 == 0)
		return special[(r >> 8) % (sizeof special / sizeof *special)];
	return (float)((r >> 16) % 7) * 0.5f - 1.0f;
}

static void picks_the_first_largest_sum_as_a_scalar_loop_does(void **state)
{
	static const size_t lengths[] = {0,  1,  2,  3,  4,  15, 16, 17,  31,
					 32, 33, 47, 48, 63, 64, 65, 225, 1000};
	enum { MOST = 1000, ROUNDS = 300 };
	float *scores = malloc(MOST * sizeof *scores), *bias = malloc(MOST * sizeof *bias),
	      *sums = malloc(MOST * sizeof *sums);
	uint64_t rng = 9;
	(void)state;

	assert_true(scores && bias && sums);
	for (size_t l = 0; l < sizeof lengths / sizeof *lengths; l++) {
		size_t n = lengths[l];
		for (int round = 0; round < ROUNDS; round++) {
			int kind = round % 3; /* 0 plain, 1 and 2 with special values */
			for (size_t c = 0; c < n; c++) {
				scores[c] = value(&rng, kind);
				bias[c] = kind == 2 ? value(&rng, kind) : value(&rng, 0);
				sums[c] = scores[c] + bias[c];
			}
			size_t want = oracle(sums, n), got = argmax_biased(scores, bias, n);
			if (got != want)
				fail_msg("n %zu round %d: index %zu, the scalar loop %zu", n, round,
					 got, want);
			for (size_t c = 0; c < n; c++)
				assert_memory_equal(&scores[c], &sums[c], sizeof(float));
		}
	}
	free(scores);
	free(bias);
	free(sums);
}

/* The maximum in every lane position and past the last full block, with
 * the same value earlier in a later lane: the lower index wins. */
static void ties_across_lanes_go_to_the_lower_index(void **state)
{
	enum { N = 70 };
	float scores[N], bias[N];
	(void)state;

	for (size_t first = 0; first < N; first++) {
		for (size_t second = first; second < N; second++) {
			for (size_t c = 0; c < N; c++) {
				scores[c] = -1.0f;
				bias[c] = 0.0f;
			}
			scores[first] = 2.0f;
			bias[second] = 1.0f;
			scores[second] = second == first ? 2.0f : 1.0f; /* 2 + 0, or 1 + 1 */
			if (second == first)
				bias[second] = 0.0f;
			assert_int_equal(argmax_biased(scores, bias, N), first);
		}
	}
	/* all NaN: 0; NaN and -inf: the first -inf */
	for (size_t c = 0; c < N; c++) {
		scores[c] = NAN;
		bias[c] = 0.0f;
	}
	assert_int_equal(argmax_biased(scores, bias, N), 0);
	for (size_t c = 0; c < N; c++)
		scores[c] = NAN;
	scores[40] = -INFINITY;
	scores[50] = -INFINITY;
	assert_int_equal(argmax_biased(scores, bias, N), 40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(picks_the_first_largest_sum_as_a_scalar_loop_does),
	    cmocka_unit_test(ties_across_lanes_go_to_the_lower_index),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
