/* Explanations: each listed item's dominant signal and the recent item behind it (model_explain).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "model.h"
#include "topk.h"

enum { ITEM_X = 1, ITEM_Y = 2, ITEM_Z = 3, USER_U = 50 };

static void learn(struct model *m, uint32_t user, uint32_t item, int64_t ts_ms)
{
	char errstr[256];
	struct model_event e = {.user = user,
				.item = item,
				.user_hash = 1000003u * user + 17,
				.item_hash = 999983u * item + 5,
				.type = EVENT_VIEW,
				.ts_ms = ts_ms};
	assert_int_equal(model_learn(m, &e, errstr, sizeof errstr), 0);
}

static struct model *model_with(bool only_covis)
{
	struct model_config config;
	char errstr[256];
	model_config_default(&config);
	if (only_covis) {
		config.use_taste = config.use_bias = config.use_intent = false;
		config.use_correction = config.use_trending = false;
	}
	struct model *m = model_new(&config, errstr, sizeof errstr);
	assert_non_null(m);
	/* twenty users view X then Y: Y follows X; Z is viewed alone */
	int64_t ts = 1700000000000LL;
	for (uint32_t u = 0; u < 20; u++) {
		learn(m, u, ITEM_X, ts++);
		learn(m, u, ITEM_Y, ts++);
		learn(m, 100 + u, ITEM_Z, ts++);
	}
	learn(m, USER_U, ITEM_X, ts++);
	return m;
}

static void covisitation_only_user_is_told_because_x(void **state)
{
	(void)state;
	struct model *m = model_with(true);
	uint32_t items[1] = {ITEM_Y};
	struct model_explanation why[1];
	assert_int_equal(model_explain(m, USER_U, NULL, items, 1, why), 0);
	assert_int_equal(why[0].reason, MODEL_REASON_COVIS);
	assert_int_equal(why[0].because_item, ITEM_X);
	assert_true(why[0].covis > 0);
	assert_true(why[0].taste == 0 && why[0].intent == 0 && why[0].trending == 0);
	assert_string_equal(model_reason_name(why[0].reason), "covis");
	model_free(m);
}

static void cold_user_is_cold_start(void **state)
{
	(void)state;
	struct model *m = model_with(false);
	uint32_t items[2] = {ITEM_Y, ITEM_Z};
	struct model_explanation why[2];
	assert_int_equal(model_explain(m, 999, NULL, items, 2, why), 0); /* never seen */
	for (size_t n = 0; n < 2; n++) {
		assert_int_equal(why[n].reason, MODEL_REASON_COLD_START);
		assert_int_equal(why[n].because_item, UINT32_MAX);
	}
	assert_string_equal(model_reason_name(MODEL_REASON_COLD_START), "cold_start");
	model_free(m);
}

/* The terms are the fused score's: they add up to the exact engine's score. */
static void terms_add_up_to_the_score(void **state)
{
	(void)state;
	struct model *m = model_with(false);
	char errstr[256];
	struct topk_config tc = {.max_batch = 1, .max_k = 3};
	struct topk *topk = topk_new(&tc, errstr, sizeof errstr);
	assert_non_null(topk);
	struct topk_result results[3];
	size_t count = 0;
	uint32_t user = USER_U;
	assert_int_equal(
	    model_recommend(m, topk, &user, 1, 3, NULL, results, &count, errstr, sizeof errstr), 0);
	assert_true(count > 0);
	uint32_t items[3];
	struct model_explanation why[3];
	for (size_t n = 0; n < count; n++)
		items[n] = results[n].item;
	assert_int_equal(model_explain(m, USER_U, NULL, items, count, why), 0);
	for (size_t n = 0; n < count; n++) {
		float sum = why[n].taste + why[n].intent + why[n].covis + why[n].trending;
		assert_true(fabsf(sum - results[n].score) <= 1e-3f * (1 + fabsf(results[n].score)));
		assert_true(why[n].reason < MODEL_REASON_COLD_START);
		if (why[n].reason == MODEL_REASON_INTENT || why[n].reason == MODEL_REASON_COVIS)
			assert_int_equal(why[n].because_item, ITEM_X); /* U's only recent item */
		else
			assert_int_equal(why[n].because_item, UINT32_MAX);
	}
	topk_free(topk);
	model_free(m);
}

/*
 * The daemon explains a list with the co-visitation terms its round was
 * prepared with (model_batch_covis_terms()); they name the same recent item
 * and score as computing them at the explanation. U saw X, then Z: Y follows
 * X only, and W follows Z more strongly than X.
 */
static void a_rounds_terms_explain_as_the_model_does(void **state)
{
	(void)state;
	struct model *m = model_with(true);
	enum { ITEM_W = 4 };
	int64_t ts = 1800000000000LL;
	for (uint32_t u = 200; u < 205; u++) {
		learn(m, u, ITEM_X, ts++);
		learn(m, u, ITEM_W, ts++);
	}
	for (uint32_t u = 300; u < 330; u++) {
		learn(m, u, ITEM_Z, ts++);
		learn(m, u, ITEM_W, ts++);
	}
	learn(m, USER_U, ITEM_Z, ts++);
	char errstr[256];
	struct model_batch batch = {0};
	uint32_t user = USER_U;
	struct topk_result results[3];
	size_t counts[1];
	assert_int_equal(model_batch_prepare(&batch, m, &user, 1, 3, NULL, results, counts, errstr,
					     sizeof errstr),
			 0);
	assert_int_equal(batch.warm, 1);
	struct model_covis_terms terms;
	model_batch_covis_terms(&batch, 0, &terms);
	assert_true(terms.count >= 2);
	uint32_t items[2] = {ITEM_Y, ITEM_W};
	struct model_explanation alone[2], with_round[2];
	assert_int_equal(model_explain(m, USER_U, NULL, items, 2, alone), 0);
	assert_int_equal(model_explain(m, USER_U, &terms, items, 2, with_round), 0);
	assert_int_equal(alone[0].because_item, ITEM_X);
	assert_int_equal(alone[1].because_item, ITEM_Z);
	for (size_t n = 0; n < 2; n++) {
		assert_int_equal(with_round[n].reason, MODEL_REASON_COVIS);
		assert_int_equal(with_round[n].reason, alone[n].reason);
		assert_int_equal(with_round[n].because_item, alone[n].because_item);
		assert_true(with_round[n].covis == alone[n].covis && alone[n].covis > 0);
	}
	model_batch_free(&batch);
	model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(covisitation_only_user_is_told_because_x),
	    cmocka_unit_test(cold_user_is_cold_start),
	    cmocka_unit_test(terms_add_up_to_the_score),
	    cmocka_unit_test(a_rounds_terms_explain_as_the_model_does),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
