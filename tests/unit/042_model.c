/* Model behaviour: determinism, exclusions, immediate intent, cold start, config checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "model.h"
#include "topk.h"

#define USERS 300
#define ITEMS 500

static struct model_event event_at(uint64_t i)
{
	uint64_t x = i * 0x9E3779B97F4A7C15ULL;
	uint32_t user = (uint32_t)((x >> 20) % USERS);
	/* users prefer items of their own tenth of the catalogue */
	uint32_t item = (uint32_t)((user % 10) * (ITEMS / 10) + (x >> 40) % (ITEMS / 10));
	return (struct model_event){.user = user,
				    .item = item,
				    .user_hash = 1000003u * user + 17,
				    .item_hash = 999983u * item + 5,
				    .type = (enum event_type)(1 + (x >> 50) % 6),
				    .ts_ms = 1700000000000LL + (int64_t)i * 10};
}

static struct model *trained(uint64_t seed, uint64_t events)
{
	struct model_config config;
	char errstr[256];
	model_config_default(&config);
	config.seed = seed;
	struct model *m = model_new(&config, errstr, sizeof errstr);
	assert_non_null(m);
	for (uint64_t i = 0; i < events; i++) {
		struct model_event e = event_at(i);
		assert_int_equal(model_learn(m, &e, errstr, sizeof errstr), 0);
	}
	return m;
}

static void replay_is_bit_identical(void **state)
{
	(void)state;
	struct model *a = trained(1, 20000), *b = trained(1, 20000), *c = trained(2, 20000);
	assert_int_equal(model_step(a), model_step(b));
	assert_true(model_digest(a) == model_digest(b));
	assert_memory_equal(model_user_vector(a, 7), model_user_vector(b, 7), 32 * sizeof(float));
	assert_true(model_digest(a) != model_digest(c));
	model_free(a);
	model_free(b);
	model_free(c);
}

static void first_vectors_depend_on_the_id_not_the_index(void **state)
{
	(void)state;
	struct model_config config;
	char errstr[256];
	model_config_default(&config);
	struct model *a = model_new(&config, errstr, sizeof errstr);
	struct model *b = model_new(&config, errstr, sizeof errstr);
	/* the same external user (hash 77) as index 0 in one model, index 5 in the other;
	 * an IMPRESSION has weight 0 and so teaches nothing */
	struct model_event view = {
	    .user = 0, .item = 0, .user_hash = 77, .item_hash = 88, .type = EVENT_VIEW, .ts_ms = 1};
	assert_int_equal(model_learn(a, &view, errstr, sizeof errstr), 0);
	view.user = 5;
	view.item = 3;
	assert_int_equal(model_learn(b, &view, errstr, sizeof errstr), 0);
	assert_memory_equal(model_user_vector(a, 0), model_user_vector(b, 5), 32 * sizeof(float));
	assert_memory_equal(model_item_vector(a, 0), model_item_vector(b, 3), 32 * sizeof(float));
	model_free(a);
	model_free(b);
}

/* A new item of a known category starts at its category's mean (q, y, bias);
 * a learned item is never overwritten; an empty category leaves the item as is. */
static void new_items_start_at_their_category_mean(void **state)
{
	(void)state;
	char errstr[256];
	struct model *m = trained(1, 20000);
	size_t dim = model_config(m)->dim;
	const uint32_t category[] = {50, 51, 52, 53, 999}; /* 999: never learned on */
	uint32_t fresh = ITEMS + 7;
	float mean_q[64] = {0}, mean_y[64] = {0}, mean_b = 0;
	for (size_t j = 0; j < 4; j++) {
		assert_true(model_item_count_of(m, category[j]) > 0);
		for (size_t k = 0; k < dim; k++) {
			mean_q[k] += model_item_vector(m, category[j])[k] / 4;
			mean_y[k] += model_item_intent_vector(m, category[j])[k] / 4;
		}
		mean_b += model_item_bias(m, category[j]) / 4;
	}
	assert_int_equal(model_seed_item(m, fresh, 4242, category, 5, errstr, sizeof errstr), 4);
	for (size_t k = 0; k < dim; k++) {
		assert_float_equal(model_item_vector(m, fresh)[k], mean_q[k], 1e-5);
		assert_float_equal(model_item_intent_vector(m, fresh)[k], mean_y[k], 1e-5);
	}
	assert_float_equal(model_item_bias(m, fresh), mean_b, 1e-5);

	/* a learned item keeps what it learned */
	float before[64];
	memcpy(before, model_item_vector(m, 60), dim * sizeof(float));
	assert_int_equal(
	    model_seed_item(m, 60, 999983u * 60 + 5, category, 4, errstr, sizeof errstr), 0);
	assert_memory_equal(model_item_vector(m, 60), before, dim * sizeof(float));

	/* nothing learned in the category: the item keeps its seeded random start */
	const uint32_t unlearned[] = {fresh + 1};
	assert_int_equal(model_seed_item(m, fresh + 2, 7, unlearned, 1, errstr, sizeof errstr), 0);
	float norm = 0;
	for (size_t k = 0; k < dim; k++)
		norm += model_item_vector(m, fresh + 2)[k] * model_item_vector(m, fresh + 2)[k];
	assert_true(norm > 0);
	model_free(m);
}

/* A counts-only model (the popularity arm) counts and excludes, and learns no vectors. */
static void counts_only_models_learn_no_vectors(void **state)
{
	(void)state;
	struct model_config config;
	char errstr[256];
	model_config_default(&config);
	config.learn_embeddings = false;
	struct model *m = model_new(&config, errstr, sizeof errstr), *full = trained(1, 5000);
	assert_non_null(m);
	for (uint64_t i = 0; i < 5000; i++) {
		struct model_event e = event_at(i);
		assert_int_equal(model_learn(m, &e, errstr, sizeof errstr), 0);
	}
	struct model *fresh = model_new(&config, errstr, sizeof errstr);
	struct model_event first = event_at(0);
	assert_int_equal(model_learn(fresh, &first, errstr, sizeof errstr), 0);
	/* the first user's vector is still its seeded start; counts match the full model */
	assert_memory_equal(model_user_vector(m, first.user), model_user_vector(fresh, first.user),
			    32 * sizeof(float));
	for (uint32_t item = 0; item < ITEMS; item += 7)
		assert_int_equal(model_item_count_of(m, item), model_item_count_of(full, item));
	uint32_t a[20], b[20];
	size_t n = model_popular(m, 3, 20, NULL, a);
	assert_int_equal(n, model_popular(full, 3, 20, NULL, b));
	assert_memory_equal(a, b, n * sizeof a[0]);
	model_free(m);
	model_free(full);
	model_free(fresh);
}

static void bought_items_are_excluded(void **state)
{
	(void)state;
	struct model *m = trained(1, 20000);
	struct topk_config tc = {.max_batch = 4, .max_k = 50};
	char errstr[256];
	struct topk *topk = topk_new(&tc, errstr, sizeof errstr);
	struct topk_result results[50];
	size_t count;
	uint32_t user = 3;
	assert_non_null(topk);
	assert_int_equal(
	    model_recommend(m, topk, &user, 1, 50, NULL, results, &count, errstr, sizeof errstr),
	    0);
	assert_int_equal(count, 50);
	uint32_t top = results[0].item;
	struct model_event buy = {.user = user,
				  .item = top,
				  .user_hash = 1000003u * user + 17,
				  .item_hash = 999983u * top + 5,
				  .type = EVENT_PURCHASE,
				  .ts_ms = 1800000000000LL};
	assert_int_equal(model_learn(m, &buy, errstr, sizeof errstr), 0);
	assert_true(model_user_excludes(m, user, top));
	assert_int_equal(
	    model_recommend(m, topk, &user, 1, 50, NULL, results, &count, errstr, sizeof errstr),
	    0);
	for (size_t r = 0; r < count; r++)
		assert_int_not_equal(results[r].item, top);
	/* ineligible items never appear either */
	uint8_t eligible[ITEMS];
	memset(eligible, 1, sizeof eligible);
	uint32_t banned = results[0].item;
	eligible[banned] = 0;
	assert_int_equal(model_recommend(m, topk, &user, 1, 50, eligible, results, &count, errstr,
					 sizeof errstr),
			 0);
	for (size_t r = 0; r < count; r++)
		assert_int_not_equal(results[r].item, banned);
	topk_free(topk);
	model_free(m);
}

static void last_event_moves_the_query_at_once(void **state)
{
	(void)state;
	struct model *m = trained(1, 5000);
	float before[33], after[33];
	uint32_t items[320], items2[320];
	float scores[320], scores2[320];
	struct model_query q = {.vector = before, .sparse_items = items, .sparse_scores = scores};
	struct model_query q2 = {.vector = after, .sparse_items = items2, .sparse_scores = scores2};
	char errstr[256];
	model_query(m, 11, &q);
	struct model_event e = {.user = 11,
				.item = 499,
				.user_hash = 1000003u * 11 + 17,
				.item_hash = 999983u * 499 + 5,
				.type = EVENT_CLICK,
				.ts_ms = 1800000000000LL};
	assert_int_equal(model_learn(m, &e, errstr, sizeof errstr), 0);
	model_query(m, 11, &q2);
	assert_memory_not_equal(before, after, sizeof before);
	assert_true(after[32] == 1.0f); /* the bias column's multiplier */
	model_free(m);
}

static void cold_users_get_the_trending_list(void **state)
{
	(void)state;
	struct model *m = trained(1, 20000);
	struct topk_config tc = {.max_batch = 4, .max_k = 10};
	char errstr[256];
	struct topk *topk = topk_new(&tc, errstr, sizeof errstr);
	struct topk_result results[10];
	uint32_t trending[10], stranger = USERS + 50;
	size_t count;
	assert_false(model_user_has_history(m, stranger));
	assert_int_equal(model_recommend(m, topk, &stranger, 1, 10, NULL, results, &count, errstr,
					 sizeof errstr),
			 0);
	assert_int_equal(model_trending(m, UINT32_MAX, 10, trending), 10);
	assert_int_equal(count, 10);
	for (int r = 0; r < 10; r++)
		assert_int_equal(results[r].item, trending[r]);
	/* three of the ten most trending sold out: still ten items, the next
	 * trending ones (the list was cut to seven) */
	uint8_t eligible[ITEMS];
	uint32_t longer[13];
	memset(eligible, 1, sizeof eligible);
	eligible[trending[0]] = eligible[trending[4]] = eligible[trending[9]] = 0;
	assert_int_equal(model_trending(m, UINT32_MAX, 13, longer), 13);
	assert_int_equal(model_recommend(m, topk, &stranger, 1, 10, eligible, results, &count,
					 errstr, sizeof errstr),
			 0);
	assert_int_equal(count, 10);
	for (int r = 0, at = 0; r < 13; r++)
		if (eligible[longer[r]])
			assert_int_equal(results[at++].item, longer[r]);
	topk_free(topk);
	model_free(m);
}

static void bad_configs_are_named(void **state)
{
	(void)state;
	struct model_config config;
	char errstr[256];
	model_config_default(&config);
	config.dim = 0;
	assert_null(model_new(&config, errstr, sizeof errstr));
	assert_string_equal(errstr, "dim: must be between 4 and 1024, got 0");
	model_config_default(&config);
	config.event_weight[EVENT_PURCHASE] = 1e9f;
	assert_int_equal(model_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "weight.purchase"));
	model_config_default(&config);
	config.sampler_exponent = 2;
	assert_int_equal(model_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "sampler_exponent"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(replay_is_bit_identical),
	    cmocka_unit_test(first_vectors_depend_on_the_id_not_the_index),
	    cmocka_unit_test(new_items_start_at_their_category_mean),
	    cmocka_unit_test(counts_only_models_learn_no_vectors),
	    cmocka_unit_test(bought_items_are_excluded),
	    cmocka_unit_test(last_event_moves_the_query_at_once),
	    cmocka_unit_test(cold_users_get_the_trending_list),
	    cmocka_unit_test(bad_configs_are_named),
	};
	return cmocka_run_group_tests_name("042_model", tests, NULL, NULL);
}
