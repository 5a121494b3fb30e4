/* The negative sampler draws in proportion to count^alpha and follows count changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "sampler.h"

#define ITEMS 200
#define DRAWS 400000

/* Chi-square statistic of observed draws against count^alpha. */
static double chi_square(struct sampler *s, const uint64_t *counts, double alpha, uint64_t *rng)
{
	static uint64_t seen[ITEMS];
	double total = 0, chi = 0;
	for (int i = 0; i < ITEMS; i++) {
		seen[i] = 0;
		total += counts[i] ? pow((double)counts[i], alpha) : 0;
	}
	for (int d = 0; d < DRAWS; d++) {
		uint32_t item = sampler_draw(s, rng);
		assert_true(item < ITEMS);
		assert_true(counts[item] > 0);
		seen[item]++;
	}
	for (int i = 0; i < ITEMS; i++) {
		if (counts[i] == 0)
			continue;
		double expected = DRAWS * pow((double)counts[i], alpha) / total;
		chi += (seen[i] - expected) * (seen[i] - expected) / expected;
	}
	return chi;
}

static void draws_follow_count_to_the_alpha(void **state)
{
	(void)state;
	struct sampler *s = sampler_new(0.75);
	uint64_t counts[ITEMS], rng = 7;
	assert_int_equal(sampler_draw(s, &rng), UINT32_MAX); /* nothing to draw yet */
	for (int i = 0; i < ITEMS; i++) {
		counts[i] =
		    i % 10 == 3 ? 0 : (uint64_t)(1 + (i * 7919) % 5000); /* spread over buckets */
		assert_int_equal(sampler_set_count(s, (uint32_t)i, counts[i]), 0);
	}
	/* 199 degrees of freedom at most: the 99.9th percentile is about 270 */
	assert_true(chi_square(s, counts, 0.75, &rng) < 300);
	/* counts move (up and down, across buckets): draws follow */
	for (int i = 0; i < ITEMS; i += 3) {
		counts[i] = counts[i] * 13 + 1;
		assert_int_equal(sampler_set_count(s, (uint32_t)i, counts[i]), 0);
	}
	counts[5] = 0;
	assert_int_equal(sampler_set_count(s, 5, 0), 0);
	assert_true(chi_square(s, counts, 0.75, &rng) < 300);
	sampler_free(s);
}

static void wrong_distribution_would_be_caught(void **state)
{
	(void)state;
	/* the statistic must reject a sampler judged against the wrong exponent */
	struct sampler *s = sampler_new(0.75);
	uint64_t counts[ITEMS], rng = 9;
	for (int i = 0; i < ITEMS; i++) {
		counts[i] = (uint64_t)(1 + i * 50);
		sampler_set_count(s, (uint32_t)i, counts[i]);
	}
	assert_true(chi_square(s, counts, 1.0, &rng) > 1000);
	sampler_free(s);
}

static void same_state_same_draws(void **state)
{
	(void)state;
	struct sampler *a = sampler_new(0.75), *b = sampler_new(0.75);
	uint64_t ra = 3, rb = 3;
	for (uint32_t i = 0; i < 1000; i++) {
		sampler_set_count(a, i, i % 17 + 1);
		sampler_set_count(b, i, i % 17 + 1);
	}
	for (int d = 0; d < 10000; d++)
		assert_int_equal(sampler_draw(a, &ra), sampler_draw(b, &rb));
	sampler_free(a);
	sampler_free(b);
}

/* A count that moves within its bucket (alpha 1: counts 1024..2047 weigh
 * 2^10..2^11, one bucket) changes its item's weight in place: draws follow
 * the new counts, not the ones the items entered their bucket with. */
static void draws_follow_counts_that_stay_in_their_bucket(void **state)
{
	(void)state;
	struct sampler *s = sampler_new(1.0);
	uint64_t counts[ITEMS], rng = 11;
	for (int i = 0; i < ITEMS; i++) {
		counts[i] = 1024 + (uint64_t)i * 5;
		assert_int_equal(sampler_set_count(s, (uint32_t)i, counts[i]), 0);
	}
	assert_true(chi_square(s, counts, 1.0, &rng) < 300);
	for (int i = 0; i < ITEMS; i++) {
		counts[i] = 2047 - (uint64_t)i * 5;
		assert_int_equal(sampler_set_count(s, (uint32_t)i, counts[i]), 0);
		assert_int_equal(sampler_item_place(s, (uint32_t)i).bucket, 10);
	}
	assert_true(chi_square(s, counts, 1.0, &rng) < 300);
	sampler_free(s);
}

/* A sampler restored from its items' places and its globals draws exactly as
 * the saved one. */
static void restored_sampler_draws_as_the_saved_one(void **state)
{
	(void)state;
	struct sampler *a = sampler_new(0.75), *b = sampler_new(0.75);
	struct sampler_globals globals;
	uint64_t counts[1000], ra = 5, rb = 5;
	for (uint32_t i = 0; i < 1000; i++) {
		counts[i] = i % 7 == 0 ? 0 : (uint64_t)(1 + (i * 7919) % 3000);
		assert_int_equal(sampler_set_count(a, i, counts[i]), 0);
	}
	for (uint32_t i = 0; i < 1000; i += 2) { /* moves: some across buckets, some within */
		counts[i] = counts[i] / 2 + 1;
		assert_int_equal(sampler_set_count(a, i, counts[i]), 0);
	}
	for (uint32_t i = 1000; i-- > 0;) /* any order */
		assert_int_equal(sampler_restore_item(b, i, counts[i], sampler_item_place(a, i)),
				 0);
	sampler_get_globals(a, &globals);
	assert_int_equal(sampler_set_globals(b, &globals), 0);
	for (int d = 0; d < 10000; d++)
		assert_int_equal(sampler_draw(a, &ra), sampler_draw(b, &rb));
	sampler_free(a);
	sampler_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(draws_follow_count_to_the_alpha),
	    cmocka_unit_test(wrong_distribution_would_be_caught),
	    cmocka_unit_test(same_state_same_draws),
	    cmocka_unit_test(draws_follow_counts_that_stay_in_their_bucket),
	    cmocka_unit_test(restored_sampler_draws_as_the_saved_one),
	};
	return cmocka_run_group_tests_name("041_sampler", tests, NULL, NULL);
}
