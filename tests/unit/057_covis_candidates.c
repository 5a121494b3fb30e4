/*
 * A query's co-visitation candidates bounded (model.covis_candidates): the
 * query keeps its strongest co-visitation items, each with the score it has
 * unbounded, ties going to the lower index, and a bound at or above the
 * count keeps every one. Brute force as the oracle: the same model
 * unbounded, its items ranked by score.
 *
 * The planted model: user 1's recent items are A and B; NEIGHBOURS other
 * users each viewed A or B and then one neighbour item, neighbour j by
 * count_of(j) users, so many neighbours share a count (ties) and the two
 * recent items' sums mix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define ITEM_A     0
#define ITEM_B     1
#define FIRST      2  /* the first neighbour item */
/* neighbour items FIRST .. FIRST + NEIGHBOURS - 1: enough that a query
 * selects from a sample's pivot (at least 4 x the bound and 1024) */
#define NEIGHBOURS 1500

static unsigned count_of(uint32_t j)
{
	return 1 + (j * 7) % 5;
}

static void view(struct model *m, uint32_t user, uint32_t item, int64_t ts_ms)
{
	char errstr[256];
	struct model_event e = {.user = user,
				.item = item,
				.user_hash = 7919u * user + 1,
				.item_hash = 104729u * item + 3,
				.type = EVENT_VIEW,
				.ts_ms = ts_ms};
	assert_int_equal(model_learn(m, &e, errstr, sizeof errstr), 0);
}

static struct model *planted(unsigned candidates)
{
	struct model_config config;
	char errstr[256];
	int64_t ts = 1700000000000LL;
	uint32_t user = 10;

	model_config_default(&config);
	config.covis_half_life_events = 0;
	config.covis_candidates = candidates;
	struct model *m = model_new(&config, errstr, sizeof errstr);
	if (m == NULL)
		fail_msg("%s", errstr);
	for (uint32_t j = 0; j < NEIGHBOURS; j++)
		for (unsigned c = 0; c < count_of(j); c++, user++) {
			view(m, user, j % 3 == 0 ? ITEM_B : ITEM_A, ts++);
			view(m, user, FIRST + j, ts++);
		}
	view(m, 1, ITEM_A, ts++);
	view(m, 1, ITEM_B, ts++);
	return m;
}

struct candidates {
	size_t count;
	uint32_t items[4 * NEIGHBOURS];
	float scores[4 * NEIGHBOURS];
};

static void query_user_1(struct model *m, struct candidates *out)
{
	size_t capacity = model_sparse_capacity(m), dim = model_config(m)->dim;
	float *vector = malloc((dim + 1) * sizeof *vector);
	uint32_t *items = malloc(capacity * sizeof *items);
	float *scores = malloc(capacity * sizeof *scores);
	assert_non_null(vector);
	assert_non_null(items);
	assert_non_null(scores);
	struct model_query q = {.vector = vector, .sparse_items = items, .sparse_scores = scores};
	model_query(m, 1, &q);
	assert_true(q.sparse_count <= sizeof out->items / sizeof *out->items);
	out->count = q.sparse_count;
	memcpy(out->items, items, q.sparse_count * sizeof *items);
	memcpy(out->scores, scores, q.sparse_count * sizeof *scores);
	free(vector);
	free(items);
	free(scores);
}

/* Is (score a, item a) ranked before (score b, item b)? */
static bool stronger(float score_a, uint32_t a, float score_b, uint32_t b)
{
	return score_a > score_b || (score_a == score_b && a < b);
}

static void a_bound_keeps_the_strongest_items(void **state)
{
	(void)state;
	struct model *whole = planted(0);
	struct candidates all, kept;
	query_user_1(whole, &all);
	assert_true(all.count >= NEIGHBOURS);

	const unsigned bounds[] = {1, 7, 20, 33, 150, 299, 375, 1200};
	for (size_t b = 0; b < sizeof bounds / sizeof *bounds; b++) {
		unsigned bound = bounds[b];
		struct model *m = planted(bound);
		query_user_1(m, &kept);
		assert_int_equal(kept.count, bound);
		/* each kept item: in increasing order, with its unbounded score,
		 * and beaten by fewer than `bound` of all the items */
		for (size_t s = 0; s < kept.count; s++) {
			if (s > 0)
				assert_true(kept.items[s - 1] < kept.items[s]);
			size_t at = SIZE_MAX, better = 0;
			for (size_t t = 0; t < all.count; t++) {
				if (all.items[t] == kept.items[s])
					at = t;
			}
			assert_true(at != SIZE_MAX);
			assert_memory_equal(&kept.scores[s], &all.scores[at], sizeof(float));
			for (size_t t = 0; t < all.count; t++)
				better += stronger(all.scores[t], all.items[t], all.scores[at],
						   all.items[at]);
			if (better >= bound)
				fail_msg("bound %u kept item %u, beaten by %zu items", bound,
					 kept.items[s], better);
		}
		model_free(m);
	}
	model_free(whole);
}

static void the_planted_scores_tie(void **state)
{
	(void)state;
	/* the test above means something only if ties cross its bounds */
	struct model *whole = planted(0);
	struct candidates all;
	size_t ties = 0;
	query_user_1(whole, &all);
	for (size_t s = 0; s < all.count; s++)
		for (size_t t = s + 1; t < all.count; t++)
			ties += all.scores[s] == all.scores[t];
	assert_true(ties > NEIGHBOURS);
	model_free(whole);
}

static void a_bound_at_or_above_the_count_keeps_every_item(void **state)
{
	(void)state;
	struct model *whole = planted(0);
	struct candidates all, kept;
	query_user_1(whole, &all);
	const unsigned bounds[] = {(unsigned)all.count, (unsigned)all.count + 1, 5000};
	for (size_t b = 0; b < sizeof bounds / sizeof *bounds; b++) {
		struct model *m = planted(bounds[b]);
		query_user_1(m, &kept);
		assert_int_equal(kept.count, all.count);
		assert_memory_equal(kept.items, all.items, all.count * sizeof *all.items);
		assert_memory_equal(kept.scores, all.scores, all.count * sizeof *all.scores);
		model_free(m);
	}
	model_free(whole);
}

static void the_bound_is_checked(void **state)
{
	(void)state;
	struct model_config config;
	char errstr[256];
	model_config_default(&config);
	assert_int_equal(config.covis_candidates, 256);
	config.covis_candidates = (1u << 22) + 1;
	assert_int_equal(model_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "covis_candidates"));
	config.covis_candidates = 0;
	assert_int_equal(model_config_check(&config, errstr, sizeof errstr), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_bound_keeps_the_strongest_items),
	    cmocka_unit_test(the_planted_scores_tie),
	    cmocka_unit_test(a_bound_at_or_above_the_count_keeps_every_item),
	    cmocka_unit_test(the_bound_is_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
