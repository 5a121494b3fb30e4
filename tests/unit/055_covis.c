/*
 * The co-visitation table's bounded lists (model/covis.h): a count for a
 * neighbour already listed adds to its weight; a new neighbour is appended
 * while the list is below the bound, and otherwise replaces the first of the
 * weakest. Checked against a plain reference of that rule on random streams
 * over bounds that are and are not multiples of the 16-wide search block,
 * with neighbours found at every place of a list (first, inside a block, the
 * last of a partial block).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "covis.h"
#include "rng.h"

#define ITEMS      6
#define NEIGHBOURS 300 /* distinct neighbours drawn: more than every bound */
#define MAX_BOUND  64

/* The rule as one compare-and-branch scan (what covis_add() did before its search got blocks). */
struct reference {
	uint32_t item[ITEMS][MAX_BOUND];
	float weight[ITEMS][MAX_BOUND];
	size_t count[ITEMS];
};

static void reference_add(struct reference *r, size_t bound, uint32_t from, uint32_t to,
			  float raw)
{
	size_t weakest = 0;
	for (size_t k = 0; k < r->count[from]; k++) {
		if (r->item[from][k] == to) {
			r->weight[from][k] += raw;
			return;
		}
		if (r->weight[from][k] < r->weight[from][weakest])
			weakest = k;
	}
	if (r->count[from] < bound) {
		r->item[from][r->count[from]] = to;
		r->weight[from][r->count[from]++] = raw;
		return;
	}
	r->item[from][weakest] = to;
	r->weight[from][weakest] = raw;
}

static void check_same(const struct covis *c, const struct reference *r)
{
	for (uint32_t from = 0; from < ITEMS; from++) {
		const uint32_t *items;
		const float *weights;
		size_t n = covis_successors(c, from, &items, &weights);
		assert_int_equal(n, r->count[from]);
		for (size_t k = 0; k < n; k++) {
			assert_int_equal(items[k], r->item[from][k]);
			assert_memory_equal(&weights[k], &r->weight[from][k], sizeof(float));
		}
	}
}

static void bounded_lists_follow_the_rule(void **state)
{
	(void)state;
	static const size_t bounds[] = {1, 7, 16, 17, 31, 32, 33, MAX_BOUND};
	for (size_t b = 0; b < sizeof bounds / sizeof *bounds; b++) {
		struct covis *c = covis_new(bounds[b], 0);
		assert_non_null(c);
		struct reference *r = calloc(1, sizeof *r);
		assert_non_null(r);
		uint64_t rng = 42 + b;
		for (int e = 0; e < 20000; e++) {
			uint32_t from = (uint32_t)(rng_next(&rng) % ITEMS);
			/* a skewed draw: some neighbours come back often, most rarely */
			uint64_t x = rng_next(&rng);
			uint32_t to = (uint32_t)(x % 4 == 0 ? (x >> 8) % 4 : (x >> 8) % NEIGHBOURS);
			float amount = 0.25f * (float)(1 + rng_next(&rng) % 8);
			assert_int_equal(covis_add(c, from, to, amount), 0);
			reference_add(r, bounds[b], from, to, amount);
		}
		check_same(c, r);
		free(r);
		covis_free(c);
	}
}

static void a_listed_neighbour_is_found_at_every_place(void **state)
{
	(void)state;
	for (size_t bound = 1; bound <= 40; bound++) {
		struct covis *c = covis_new(bound, 0);
		assert_non_null(c);
		for (uint32_t to = 0; to < bound; to++)
			assert_int_equal(covis_add(c, 0, 100 + to, 1.0f), 0);
		for (uint32_t to = 0; to < bound; to++)
			assert_int_equal(covis_add(c, 0, 100 + to, (float)(to + 1)), 0);
		const uint32_t *items;
		const float *weights;
		assert_int_equal(covis_successors(c, 0, &items, &weights), bound);
		for (uint32_t to = 0; to < bound; to++) {
			assert_int_equal(items[to], 100 + to);
			assert_true(weights[to] == (float)(to + 2));
		}
		/* a new neighbour replaces the weakest: the first, weight 2 */
		assert_int_equal(covis_add(c, 0, 7, 1.0f), 0);
		assert_int_equal(items[0], 7);
		covis_free(c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(bounded_lists_follow_the_rule),
	    cmocka_unit_test(a_listed_neighbour_is_found_at_every_place),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
