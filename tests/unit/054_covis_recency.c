/*
 * Co-visitation recency (model.covis_recent_decay): at a query the
 * neighbours of the user's most recent item weigh more than those of the
 * items seen before it, the weights averaging 1 so the sums keep their size.
 *
 * Two planted structures: (1) two recent items with equally strong
 * neighbours, where only the order of the user's history can tell them apart;
 * the score and its explanation must follow the formula exactly, and a decay
 * of 1 must keep the old equal sums. (2) A stream whose next item is often a
 * successor of the previous one (stream/synth): weighting the last item more
 * must find more of those successors than summing the window alike.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "eventlog.h"
#include "model.h"
#include "prequential.h"
#include "synth.h"
#include "topk.h"

enum { ITEM_A, ITEM_B, ITEM_X, ITEM_Y };

#define PAIRS 6 /* users who saw A then X, and as many who saw B then Y */

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

/* A model that saw PAIRS users view A then X, PAIRS view B then Y, and user 1
 * view A then B (B is its most recent item). No decay of the counts, so the
 * sums are exact. */
static struct model *planted(float decay)
{
	struct model_config config;
	char errstr[256];
	int64_t ts = 1700000000000LL;
	model_config_default(&config);
	config.covis_half_life_events = 0;
	config.covis_recent_decay = decay;
	struct model *m = model_new(&config, errstr, sizeof errstr);
	assert_non_null(m);
	for (uint32_t k = 0; k < PAIRS; k++) {
		view(m, 10 + k, ITEM_A, ts++);
		view(m, 10 + k, ITEM_X, ts++);
		view(m, 100 + k, ITEM_B, ts++);
		view(m, 100 + k, ITEM_Y, ts++);
	}
	view(m, 1, ITEM_A, ts++);
	view(m, 1, ITEM_B, ts++);
	return m;
}

/* The co-visitation score user 1's query gives item (NAN: not a candidate). */
static float covis_score(struct model *m, uint32_t item)
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
	float score = NAN;
	for (size_t s = 0; s < q.sparse_count; s++)
		if (items[s] == item)
			score = scores[s];
	free(vector);
	free(items);
	free(scores);
	return score;
}

static void the_last_items_neighbours_weigh_more(void **state)
{
	(void)state;
	struct model *m = planted(0.7f);
	float beta = model_config(m)->covis_weight;
	/* weights 1 (B) and 0.7 (A), scaled to a mean of 1 */
	float recent = 2.0f / 1.7f, older = 1.4f / 1.7f;
	float y = covis_score(m, ITEM_Y), x = covis_score(m, ITEM_X);
	assert_float_equal(y, beta * log1pf(PAIRS * recent), 1e-4);
	assert_float_equal(x, beta * log1pf(PAIRS * older), 1e-4);
	assert_true(y > x + 0.5f);

	/* the explanation recomputes the same term, and names the recent item behind it */
	const uint32_t listed[2] = {ITEM_Y, ITEM_X};
	struct model_explanation why[2];
	assert_int_equal(model_explain(m, 1, NULL, listed, 2, why), 0);
	assert_float_equal(why[0].covis, y, 1e-4);
	assert_float_equal(why[1].covis, x, 1e-4);
	assert_int_equal(why[0].reason, MODEL_REASON_COVIS);
	assert_int_equal(why[0].because_item, ITEM_B);
	model_free(m);
}

static void a_decay_of_one_sums_every_recent_item_alike(void **state)
{
	(void)state;
	struct model *m = planted(1.0f);
	float beta = model_config(m)->covis_weight;
	assert_float_equal(covis_score(m, ITEM_Y), beta * log1pf(PAIRS), 1e-4);
	assert_float_equal(covis_score(m, ITEM_X), beta * log1pf(PAIRS), 1e-4);
	model_free(m);
}

static void the_decay_must_be_in_zero_one(void **state)
{
	(void)state;
	struct model_config config;
	char errstr[256];
	model_config_default(&config);
	assert_float_equal(config.covis_recent_decay, 0.7f, 0);
	config.covis_recent_decay = 0.0f;
	assert_int_equal(model_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "covis_recent_decay"));
	config.covis_recent_decay = 1.5f;
	assert_int_equal(model_config_check(&config, errstr, sizeof errstr), -1);
	config.covis_recent_decay = 1.0f;
	assert_int_equal(model_config_check(&config, errstr, sizeof errstr), 0);
}

/* Prequential recall@10 after a 25% warm-up on a stream whose next item is a
 * successor of the previous one half of the time. */
static double successor_recall(float decay)
{
	struct synth_config sc = synth_config_default();
	char errstr[256];
	sc.users = 800;
	sc.items = 600;
	sc.clusters = 6;
	sc.events = 40000;
	sc.successor_prob = 0.5;
	struct synth *synth = synth_new(&sc, errstr, sizeof errstr);
	assert_non_null(synth);
	struct event_log *log = NULL;
	assert_int_equal(synth_generate(synth, &log, errstr, sizeof errstr), 0);
	synth_free(synth);
	uint64_t *user_hash, *item_hash;
	assert_int_equal(eventlog_id_hashes(log, &user_hash, &item_hash), 0);
	struct prequential_stream stream = {.count = log->count,
					    .user = log->user,
					    .item = log->item,
					    .type = log->type,
					    .ts_ms = log->ts_ms,
					    .user_hash = user_hash,
					    .item_hash = item_hash,
					    .item_total = log->item_count};
	struct prequential_config pc = {.k = 10, .test_every = 1, .warmup = log->count / 4};
	struct topk_config tc = {.max_batch = 1, .max_k = 10};
	struct prequential_result result;
	struct model_config config;
	model_config_default(&config);
	config.covis_recent_decay = decay;
	struct model *model = model_new(&config, errstr, sizeof errstr);
	struct topk *topk = topk_new(&tc, errstr, sizeof errstr);
	assert_non_null(model);
	assert_non_null(topk);
	if (prequential_run(model, topk, &stream, &pc, &result, errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	model_free(model);
	topk_free(topk);
	eventlog_free(log);
	free(user_hash);
	free(item_hash);
	return result.model.hit_rate;
}

static void recency_finds_more_successors(void **state)
{
	(void)state;
	double alike = successor_recall(1.0f), recent = successor_recall(0.7f);
	printf("recall@10 on the successor stream: decay 1 %.4f, decay 0.7 %.4f\n", alike, recent);
	if (!(recent > alike + 0.005))
		fail_msg("decay 0.7 recall@10 %.4f is not above decay 1's %.4f by 0.005", recent,
			 alike);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(the_last_items_neighbours_weigh_more),
	    cmocka_unit_test(a_decay_of_one_sums_every_recent_item_alike),
	    cmocka_unit_test(the_decay_must_be_in_zero_one),
	    cmocka_unit_test(recency_finds_more_successors),
	};
	return cmocka_run_group_tests_name("054_covis_recency", tests, NULL, NULL);
}
