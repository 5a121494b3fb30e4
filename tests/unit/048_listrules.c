/* List rules (model/listrules): parsing, each rule, and how they interact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "listrules.h"

/*
 * The world of these tests: 40 items; item i is in category i % 4 (0..3),
 * candidates ranked by score 100 - i for items 0..39, best first.
 */
#define ITEMS      40
#define CATEGORIES 4

static uint32_t item_category[ITEMS];
static struct topk_result candidates[ITEMS];
static uint8_t excluded_by_user[ITEMS]; /* the user's exclusions (bought) */

static bool excludes(uint32_t item, void *opaque)
{
	(void)opaque;
	return item < ITEMS && excluded_by_user[item];
}

static uint8_t no_longer_new[ITEMS]; /* events since the pool was taken */

static bool still_new(uint32_t item, void *opaque)
{
	(void)opaque;
	return item < ITEMS && !no_longer_new[item];
}

static void world(void)
{
	for (uint32_t i = 0; i < ITEMS; i++) {
		item_category[i] = i % CATEGORIES;
		candidates[i] = (struct topk_result){.item = i, .score = 100.0f - (float)i};
	}
	memset(excluded_by_user, 0, sizeof excluded_by_user);
	memset(no_longer_new, 0, sizeof no_longer_new);
}

static struct listrules_view view_of(size_t k)
{
	return (struct listrules_view){.k = k,
				       .item_category = item_category,
				       .item_count = ITEMS,
				       .category_count = CATEGORIES,
				       .user_excludes = excludes};
}

/* Applies and checks that no item appears twice. @returns the length. */
static size_t apply(const struct listrules_view *v, size_t candidate_count, uint64_t seed,
		    struct topk_result *out, uint8_t *rule)
{
	struct listrules_scratch scratch = {0};
	size_t n = listrules_apply(v, candidates, candidate_count, seed, &scratch, out, rule);
	listrules_scratch_free(&scratch);
	assert_true(n <= v->k);
	for (size_t a = 0; a < n; a++)
		for (size_t b = a + 1; b < n; b++)
			assert_int_not_equal(out[a].item, out[b].item);
	return n;
}

static void parses_and_refuses_with_the_entry_named(void **unused)
{
	(void)unused;
	struct listrules r = {0};
	char why[512];
	assert_int_equal(listrules_parse_categories(&r, " shoes , hats ", why, sizeof why), 0);
	assert_int_equal(r.exclude_count, 2);
	assert_string_equal(r.exclude_categories[1], "hats");
	assert_int_equal(listrules_parse_categories(&r, "shoes,,hats", why, sizeof why), -1);
	assert_non_null(strstr(why, "entry 2 is empty"));
	assert_int_equal(r.exclude_count, 0); /* a bad text leaves none */
	assert_int_equal(listrules_parse_categories(&r, "a, a", why, sizeof why), -1);
	assert_non_null(strstr(why, "named twice"));

	assert_int_equal(
	    listrules_parse_boosts(&r, "item:sku=1=2.5, category:new in=-1", why, sizeof why), 0);
	assert_int_equal(r.boost_count, 2);
	assert_string_equal(r.boosts[0].name, "sku=1"); /* the last '=' separates */
	assert_true(r.boosts[0].delta == 2.5f && !r.boosts[0].category);
	assert_true(r.boosts[1].category && r.boosts[1].delta == -1.0f);
	assert_int_equal(listrules_parse_boosts(&r, "sku:1=2", why, sizeof why), -1);
	assert_non_null(strstr(why, "expected item:ID=DELTA or category:NAME=DELTA"));
	assert_int_equal(listrules_parse_boosts(&r, "item:a=1, item:b=x", why, sizeof why), -1);
	assert_non_null(strstr(why, "entry 2 'item:b=x'"));
	assert_int_equal(listrules_parse_boosts(&r, "item:a=5000", why, sizeof why), -1);
	assert_non_null(strstr(why, "from -1000 to 1000"));

	assert_int_equal(listrules_parse_pins(&r, "a@b@3, c@1", why, sizeof why), 0);
	assert_string_equal(r.pins[0].item, "a@b");
	assert_int_equal(r.pins[0].rank, 3);
	assert_int_equal(listrules_parse_pins(&r, "a@0", why, sizeof why), -1);
	assert_non_null(strstr(why, "from 1 to 1000, got '0'"));
	assert_int_equal(listrules_parse_pins(&r, "a@1, b@1", why, sizeof why), -1);
	assert_non_null(strstr(why, "rank 1 is pinned twice"));
	assert_int_equal(listrules_parse_pins(&r, "a@1, a@2", why, sizeof why), -1);
	assert_non_null(strstr(why, "item 'a' is pinned twice"));
	assert_int_equal(listrules_parse_pins(&r, "a@5", why, sizeof why), 0);
	assert_int_equal(listrules_check(&r, 4, why, sizeof why), -1);
	assert_non_null(strstr(why, "rank 5, beyond k = 4"));
	assert_int_equal(listrules_check(&r, 5, why, sizeof why), 0);
	listrules_clear(&r);
	assert_false(listrules_any(&r));
}

static void fetch_and_explore_slots(void **unused)
{
	(void)unused;
	struct listrules r = {0};
	assert_int_equal(listrules_fetch(&r, 20, 1000), 20);
	r.max_per_category = 2;
	assert_int_equal(listrules_fetch(&r, 20, 1000), 20 * LISTRULES_FETCH_FACTOR);
	assert_int_equal(listrules_fetch(&r, 400, 1000), 1000);
	r.explore_share = 0.1;
	assert_int_equal(listrules_explore_slots(&r, 20), 2);
	r.explore_share = 0.01;
	assert_int_equal(listrules_explore_slots(&r, 20), 1); /* at least one */
	r.explore_share = 0;
	assert_int_equal(listrules_explore_slots(&r, 20), 0);
}

static void without_rules_the_ranking_passes(void **unused)
{
	(void)unused;
	struct topk_result out[10];
	uint8_t rule[10];
	world();
	struct listrules_view v = view_of(10);
	assert_int_equal(apply(&v, ITEMS, 1, out, rule), 10);
	for (size_t r = 0; r < 10; r++) {
		assert_int_equal(out[r].item, r);
		assert_int_equal(rule[r], LISTRULES_RANKED);
	}
}

static void excluded_categories_never_appear_and_the_list_still_fills(void **unused)
{
	(void)unused;
	struct topk_result out[10];
	uint8_t rule[10];
	uint8_t excluded[CATEGORIES] = {0, 1, 0, 1};
	world();
	struct listrules_view v = view_of(10);
	v.category_excluded = excluded;
	assert_int_equal(apply(&v, ITEMS, 1, out, rule), 10);
	for (size_t r = 0; r < 10; r++) {
		assert_int_equal(item_category[out[r].item] % 2, 0);
		assert_int_equal(out[r].item, 2 * r); /* in rank order: 0, 2, 4, ... */
	}
	/* too few candidates: a shorter list, never an excluded item */
	assert_int_equal(apply(&v, 8, 1, out, rule), 4);
}

static void the_cap_per_category_holds(void **unused)
{
	(void)unused;
	struct topk_result out[12];
	uint8_t rule[12];
	size_t per[CATEGORIES] = {0};
	world();
	for (uint32_t i = 0; i < ITEMS; i++) /* the top 20 are all category 0 */
		item_category[i] = i < 20 ? 0 : 1 + i % 3;
	struct listrules_view v = view_of(12);
	v.max_per_category = 3;
	size_t n = apply(&v, ITEMS, 1, out, rule);
	assert_int_equal(n, 12);
	for (size_t r = 0; r < n; r++)
		per[item_category[out[r].item]]++;
	for (size_t c = 0; c < CATEGORIES; c++)
		assert_true(per[c] <= 3);
	assert_int_equal(per[0], 3);
	assert_int_equal(out[0].item, 0);
	assert_int_equal(out[3].item, 20); /* the best of the other categories follow */
}

static void a_boost_moves_items_up_and_says_so(void **unused)
{
	(void)unused;
	struct topk_result out[5];
	uint8_t rule[5];
	float category_boost[CATEGORIES] = {0, 0, 0, 0};
	uint32_t boost_items[] = {30};
	float boost_deltas[] = {50};
	world();
	struct listrules_view v = view_of(5);
	v.boost_items = boost_items;
	v.boost_deltas = boost_deltas;
	v.boost_item_count = 1;
	v.category_boost = category_boost;
	assert_int_equal(apply(&v, ITEMS, 1, out, rule), 5);
	assert_int_equal(out[0].item, 30); /* 70 + 50 beats 100 */
	assert_int_equal(rule[0], LISTRULES_BOOSTED);
	assert_true(out[0].score == 120.0f);
	assert_int_equal(out[1].item, 0);
	assert_int_equal(rule[1], LISTRULES_RANKED);
	/* a negative category boost pushes category 0 out of the top */
	category_boost[0] = -1000;
	v.boost_item_count = 0;
	assert_int_equal(apply(&v, ITEMS, 1, out, rule), 5);
	for (size_t r = 0; r < 5; r++)
		assert_int_not_equal(item_category[out[r].item], 0);
	assert_int_equal(out[0].item, 1);
	/* a boost re-ranks only what was fetched: item 30 beyond 10 candidates stays out */
	category_boost[0] = 0;
	v.boost_item_count = 1;
	assert_int_equal(apply(&v, 10, 1, out, rule), 5);
	for (size_t r = 0; r < 5; r++)
		assert_int_not_equal(out[r].item, 30);
}

static void pins_hold_their_rank_unless_the_item_may_not_be_shown(void **unused)
{
	(void)unused;
	struct topk_result out[6];
	uint8_t rule[6];
	uint8_t eligible[ITEMS];
	uint8_t excluded[CATEGORIES] = {0, 0, 1, 0};
	uint32_t pins[] = {35, 36, 37, 38, LISTRULES_NO_ITEM, 5};
	size_t ranks[] = {0, 1, 2, 3, 4, 5};
	world();
	memset(eligible, 1, sizeof eligible);
	eligible[36] = 0;         /* out of stock */
	excluded_by_user[37] = 1; /* bought */
	/* 38 is in category 2, excluded */
	struct listrules_view v = view_of(6);
	v.eligible = eligible;
	v.eligible_count = ITEMS;
	v.category_excluded = excluded;
	v.pin_items = pins;
	v.pin_ranks = ranks;
	v.pin_count = 6;
	assert_int_equal(apply(&v, ITEMS, 1, out, rule), 6);
	assert_int_equal(out[0].item, 35);
	assert_int_equal(rule[0], LISTRULES_PINNED);
	assert_true(out[0].score == 65.0f); /* a candidate: its score */
	/* 36 (out of stock), 37 (bought), 38 (excluded category) and an unknown
	 * item are not shown: the ranking fills their ranks */
	assert_int_equal(out[1].item, 0);
	assert_int_equal(out[2].item, 1);
	assert_int_equal(out[3].item, 3); /* 2 is in category 2, excluded */
	assert_int_equal(out[4].item, 4);
	assert_int_equal(rule[4], LISTRULES_RANKED);
	assert_int_equal(out[5].item, 5);
	assert_int_equal(rule[5], LISTRULES_PINNED);
	/* a pinned item that is no candidate is placed with score 0 */
	pins[0] = 35;
	assert_int_equal(apply(&v, 10, 1, out, rule), 6);
	assert_int_equal(out[0].item, 35);
	assert_true(out[0].score == 0.0f);
}

static void pins_count_towards_the_cap_and_are_never_dropped_by_it(void **unused)
{
	(void)unused;
	struct topk_result out[8];
	uint8_t rule[8];
	uint32_t pins[] = {20, 24, 28};
	size_t ranks[] = {5, 6, 7};
	size_t per0 = 0;
	world();
	struct listrules_view v = view_of(8);
	v.max_per_category = 2;
	v.pin_items = pins; /* three of category 0 */
	v.pin_ranks = ranks;
	v.pin_count = 3;
	assert_int_equal(apply(&v, ITEMS, 1, out, rule), 8);
	for (size_t r = 0; r < 8; r++)
		per0 += item_category[out[r].item] == 0;
	assert_int_equal(per0, 3); /* the pins, over the cap; no ranked item of category 0 */
	assert_int_equal(out[0].item, 1);
	assert_int_equal(out[5].item, 20);
	assert_int_equal(rule[7], LISTRULES_PINNED);
}

static void exploration_takes_its_share_of_new_items_at_spread_ranks(void **unused)
{
	(void)unused;
	struct topk_result out[20], again[20];
	uint8_t rule[20], rule_again[20];
	uint32_t pool[] = {33, 34, 35, 36, 37, 38, 39};
	bool drawn[ITEMS] = {false};
	world();
	struct listrules_view v = view_of(20);
	v.explore_slots = 2;
	v.explore_pool = pool;
	v.explore_pool_count = 7;
	for (uint64_t seed = 1; seed <= 50; seed++) {
		assert_int_equal(apply(&v, 20, seed, out, rule), 20);
		size_t explored = 0;
		for (size_t r = 0; r < 20; r++) {
			if (rule[r] != LISTRULES_EXPLORE)
				continue;
			explored++;
			assert_true(r == 6 || r == 13); /* floor(20/3), floor(40/3) */
			assert_true(out[r].item >= 33);
			drawn[out[r].item] = true;
		}
		assert_int_equal(explored, 2);
		/* the same seed (list id): the same draws */
		assert_int_equal(apply(&v, 20, seed, again, rule_again), 20);
		assert_memory_equal(out, again, sizeof out);
	}
	for (uint32_t i = 33; i < ITEMS; i++) /* uniform draws reach every new item */
		assert_true(drawn[i]);
	/* ranked items keep their order around the slots */
	assert_int_equal(out[0].item, 0);
	assert_int_equal(out[7].item, 6);
}

/* Exploration draws uniformly among the pool's items that pass: an item
 * right after a run of items that do not was drawn as if it were the whole
 * run (a walk from a random start), here 25 times as often as the others. */
static void exploration_draws_uniformly_among_the_items_that_pass(void **unused)
{
	(void)unused;
	struct topk_result out[20];
	uint8_t rule[20];
	uint32_t pool[ITEMS];
	size_t drawn[ITEMS] = {0}, slots = 0;
	world();
	for (uint32_t i = 0; i < ITEMS; i++) {
		pool[i] = i;
		no_longer_new[i] = i < 24; /* 24..39 pass; 24 follows the run */
	}
	struct listrules_view v = view_of(20);
	v.explore_slots = 1;
	v.explore_pool = pool;
	v.explore_pool_count = ITEMS;
	v.still_new = still_new;
	for (uint64_t seed = 1; seed <= 1600; seed++) {
		assert_int_equal(apply(&v, 20, seed, out, rule), 20);
		for (size_t r = 0; r < 20; r++)
			if (rule[r] == LISTRULES_EXPLORE) {
				assert_true(out[r].item >= 24);
				drawn[out[r].item]++;
				slots++;
			}
	}
	assert_int_equal(slots, 1600);
	/* 16 items pass: 100 draws each expected; the walk gave 24 about 1000 */
	for (uint32_t i = 24; i < ITEMS; i++)
		assert_true(drawn[i] > 50 && drawn[i] < 170);
	memset(no_longer_new, 0, sizeof no_longer_new);
}

/* The daemon's pool is a cache (up to a second old): an item in it that
 * collected its events since is not drawn; with none still new the slots
 * fall to the ranking. */
static void exploration_draws_only_items_still_new(void **unused)
{
	(void)unused;
	struct topk_result out[20];
	uint8_t rule[20];
	uint32_t pool[] = {33, 34, 35, 36, 37, 38, 39};
	world();
	for (uint32_t i = 33; i < ITEMS; i++)
		no_longer_new[i] = i != 36 && i != 38;
	struct listrules_view v = view_of(20);
	v.explore_slots = 3;
	v.explore_pool = pool;
	v.explore_pool_count = 7;
	v.still_new = still_new;
	bool drawn[ITEMS] = {false};
	for (uint64_t seed = 1; seed <= 30; seed++) {
		assert_int_equal(apply(&v, 20, seed, out, rule), 20);
		size_t explored = 0;
		for (size_t r = 0; r < 20; r++)
			if (rule[r] == LISTRULES_EXPLORE) {
				explored++;
				assert_true(out[r].item == 36 || out[r].item == 38);
				drawn[out[r].item] = true;
			}
		assert_int_equal(explored, 2); /* the third slot: ranked */
	}
	assert_true(drawn[36] && drawn[38]);
	no_longer_new[36] = no_longer_new[38] = 1;
	assert_int_equal(apply(&v, 20, 1, out, rule), 20);
	for (size_t r = 0; r < 20; r++) {
		assert_int_not_equal(rule[r], LISTRULES_EXPLORE);
		assert_int_equal(out[r].item, r);
	}
}

static void exploration_obeys_exclusions_and_the_cap(void **unused)
{
	(void)unused;
	struct topk_result out[10];
	uint8_t rule[10];
	uint32_t pool[] = {32, 33, 34, 35};
	uint8_t excluded[CATEGORIES] = {0, 1, 0, 0}; /* 33 */
	world();
	excluded_by_user[34] = 1;
	struct listrules_view v = view_of(10);
	v.explore_slots = 3;
	v.explore_pool = pool;
	v.explore_pool_count = 4;
	v.category_excluded = excluded;
	v.max_per_category = 4;
	/* 32 (category 0) and 35 (category 3) may be explored; 33's category is
	 * excluded, 34 bought */
	for (uint64_t seed = 1; seed <= 20; seed++) {
		size_t n = apply(&v, ITEMS, seed, out, rule);
		assert_int_equal(n, 10);
		size_t explored = 0;
		for (size_t r = 0; r < n; r++)
			if (rule[r] == LISTRULES_EXPLORE) {
				explored++;
				assert_true(out[r].item == 32 || out[r].item == 35);
			}
		assert_int_equal(explored, 2); /* a third slot finds no new item: ranked */
	}
	/* an empty pool: no exploration, the ranking fills */
	v.explore_pool_count = 0;
	assert_int_equal(apply(&v, ITEMS, 1, out, rule), 10);
	for (size_t r = 0; r < 10; r++)
		assert_int_not_equal(rule[r], LISTRULES_EXPLORE);
}

/* Finders of the resolve test: items "iN", categories "cN", N below ITEMS and CATEGORIES. */
static uint32_t find_numbered(const char *name, void *opaque)
{
	const char *prefix = opaque;
	char *end;
	if (name[0] != prefix[0])
		return LISTRULES_NO_ITEM;
	unsigned long n = strtoul(name + 1, &end, 10);
	return end != name + 1 && *end == '\0' && n < ITEMS ? (uint32_t)n : LISTRULES_NO_ITEM;
}

static uint32_t find_item_name(const char *name, void *opaque)
{
	(void)opaque;
	return find_numbered(name, "i");
}

static uint32_t find_category_name(const char *name, void *opaque)
{
	(void)opaque;
	return find_numbered(name, "c");
}

static void names_resolve_to_indices_and_unknown_ones_match_nothing(void **unused)
{
	(void)unused;
	struct listrules r = {0};
	struct listrules_resolved resolved = {0};
	struct listrules_unknown unknown;
	struct listrules_view v = {0};
	char why[256];
	assert_int_equal(listrules_parse_categories(&r, "c1, c9", why, sizeof why), 0);
	assert_int_equal(
	    listrules_parse_boosts(&r, "item:i30=1, item:i5=2, category:c2=3", why, sizeof why), 0);
	assert_int_equal(listrules_parse_pins(&r, "i7@3, nope@1", why, sizeof why), 0);
	r.max_per_category = 2;
	r.explore_share = 0.1;
	assert_int_equal(listrules_resolve(&r, 20, CATEGORIES, find_item_name, find_category_name,
					   NULL, &resolved, &v, &unknown),
			 0);
	assert_int_equal(v.k, 20);
	assert_true(v.category_excluded[1] && !v.category_excluded[0] && !v.category_excluded[2]);
	assert_true(v.category_boost[2] == 3.0f && v.category_boost[1] == 0.0f);
	assert_int_equal(v.boost_item_count, 2);
	assert_int_equal(v.boost_items[0], 5); /* sorted for the binary search */
	assert_true(v.boost_deltas[0] == 2.0f);
	assert_int_equal(v.boost_items[1], 30);
	assert_int_equal(v.pin_count, 2);
	assert_int_equal(v.pin_items[0], 7);
	assert_int_equal(v.pin_ranks[0], 2);
	assert_int_equal(v.pin_items[1], LISTRULES_NO_ITEM); /* skipped when applied */
	assert_int_equal(v.max_per_category, 2);
	assert_int_equal(v.explore_slots, 2);
	/* c9 is beyond the categories: the first unknown name */
	assert_string_equal(unknown.key, "exclude_categories");
	assert_string_equal(unknown.kind, "category");
	assert_string_equal(unknown.name, "c9");
	/* no category rules: no flags for listrules_apply to read */
	assert_int_equal(listrules_parse_categories(&r, "", why, sizeof why), 0);
	assert_int_equal(listrules_parse_boosts(&r, "", why, sizeof why), 0);
	assert_int_equal(listrules_resolve(&r, 10, CATEGORIES, find_item_name, find_category_name,
					   NULL, &resolved, &v, &unknown),
			 0);
	assert_null(v.category_excluded);
	assert_null(v.category_boost);
	assert_string_equal(unknown.key, "pin");
	listrules_resolved_free(&resolved);
	listrules_clear(&r);
}

static void rule_names(void **unused)
{
	(void)unused;
	assert_null(listrules_rule_name(LISTRULES_RANKED));
	assert_string_equal(listrules_rule_name(LISTRULES_BOOSTED), "boosted");
	assert_string_equal(listrules_rule_name(LISTRULES_PINNED), "pinned");
	assert_string_equal(listrules_rule_name(LISTRULES_EXPLORE), "explore");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parses_and_refuses_with_the_entry_named),
	    cmocka_unit_test(fetch_and_explore_slots),
	    cmocka_unit_test(without_rules_the_ranking_passes),
	    cmocka_unit_test(excluded_categories_never_appear_and_the_list_still_fills),
	    cmocka_unit_test(the_cap_per_category_holds),
	    cmocka_unit_test(a_boost_moves_items_up_and_says_so),
	    cmocka_unit_test(pins_hold_their_rank_unless_the_item_may_not_be_shown),
	    cmocka_unit_test(pins_count_towards_the_cap_and_are_never_dropped_by_it),
	    cmocka_unit_test(exploration_takes_its_share_of_new_items_at_spread_ranks),
	    cmocka_unit_test(exploration_obeys_exclusions_and_the_cap),
	    cmocka_unit_test(exploration_draws_uniformly_among_the_items_that_pass),
	    cmocka_unit_test(exploration_draws_only_items_still_new),
	    cmocka_unit_test(names_resolve_to_indices_and_unknown_ones_match_nothing),
	    cmocka_unit_test(rule_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
