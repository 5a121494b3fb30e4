/* Metrics: Prometheus text rendering, label escaping, histograms and their quantiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* Asserts that `line` appears in `text` as a whole line. */
static void assert_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	}
	fail_msg("line not found: %s\n--- in ---\n%s", line, text);
}

static int count_lines_starting(const char *text, const char *prefix)
{
	int count = 0;
	size_t n = strlen(prefix);
	for (const char *p = text; *p;) {
		if (strncmp(p, prefix, n) == 0)
			count++;
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		p = nl + 1;
	}
	return count;
}

static struct metrics *populated(void)
{
	char errstr[256];
	const char *variants[] = {"als", "we\"ird\\na\nme"};
	struct metrics *m = metrics_new(variants, 2, errstr, sizeof errstr);
	assert_non_null(m);
	m->events_total[EVENT_CLICK] = 5;
	m->events_total[EVENT_PURCHASE] = 2;
	m->invalid_events_total[CODEC_ERR_TRUNCATED] = 3;
	m->variants[0].updates_total = 7;
	m->variants[1].recommendations_total = 4;
	m->variants[0].users_served_total = 11;
	m->variants[0].hits_by_rank_total[metrics_rank_bucket(7)] = 2;
	m->variants[0].hits_total[EVENT_VIEW] = 9; /* not a hit type: not rendered */
	m->variants[1].hits_total[EVENT_ADD_TO_CART] = 6;
	m->variants[0].hits_attributed_total[METRICS_ATTRIBUTION_EXPOSED] = 4;
	m->hits_unknown_list_total = 5;
	m->users = 100;
	m->items = 50;
	m->state_bytes = 123456789012LL;
	m->commits_total = 9;
	m->commit_failures_total = 1;
	m->commits_postponed_total = 4;
	m->dlq_messages_total = 3;
	m->users_admitted_total = 130;
	m->users_expired_total = 20;
	m->users_evicted_total = 10;
	m->ready = true;
	m->refresh_round_limit = 1024;
	metrics_histogram_observe(&m->variants[0].freshness_seconds, 0.0005);
	metrics_histogram_observe(&m->variants[0].freshness_seconds, 0.003);
	metrics_histogram_observe(&m->variants[0].freshness_seconds, 0.003);
	metrics_histogram_observe(&m->variants[0].freshness_seconds, 0.25); /* on a bound: le */
	metrics_histogram_observe(&m->variants[0].freshness_seconds, 100);  /* +Inf only */
	metrics_histogram_observe(&m->variants[0].freshness_deferred_seconds, 100);
	metrics_histogram_observe(&m->refresh_batch_seconds, 0.5);
	assert_int_equal(metrics_set_consumer_lag(m, "events", 0, 42, -1, errstr, sizeof errstr),
			 0);
	assert_int_equal(metrics_set_consumer_lag(m, "events", 1, 5, -1, errstr, sizeof errstr), 0);
	assert_int_equal(metrics_set_consumer_lag(m, "events", 0, 40, 900, errstr, sizeof errstr),
			 0);
	return m;
}

static void ranks_fall_in_their_buckets(void **state)
{
	(void)state;
	const size_t want[][2] = {{1, 0},  {2, 1},  {3, 2},  {4, 3},  {5, 3},   {6, 4},
				  {10, 4}, {11, 5}, {20, 5}, {21, 6}, {1000, 6}};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		assert_int_equal(metrics_rank_bucket(want[i][0]), want[i][1]);
}

static void renders_exact_lines(void **state)
{
	(void)state;
	struct metrics *m = populated();
	char errstr[256], *text = NULL;
	size_t len = 0;
	assert_int_equal(metrics_render(m, &text, &len, errstr, sizeof errstr), 0);
	assert_int_equal(strlen(text), len);
	assert_true(len > 0 && text[len - 1] == '\n');

	assert_line(text, "# HELP streamrec_events_total Decoded user events, by type.");
	assert_line(text, "# TYPE streamrec_events_total counter");
	assert_line(text, "streamrec_events_total{type=\"impression\"} 0");
	assert_line(text, "streamrec_events_total{type=\"click\"} 5");
	assert_line(text, "streamrec_events_total{type=\"remove_from_cart\"} 0");
	assert_line(text, "streamrec_events_total{type=\"purchase\"} 2");
	assert_int_equal(count_lines_starting(text, "streamrec_events_total{"), 7);

	/* every reason exists from the start */
	assert_line(text, "streamrec_invalid_events_total{reason=\"truncated\"} 3");
	assert_line(text, "streamrec_invalid_events_total{reason=\"empty\"} 0");
	assert_line(text, "streamrec_invalid_events_total{reason=\"invalid_field\"} 0");
	assert_int_equal(count_lines_starting(text, "streamrec_invalid_events_total{"),
			 CODEC_REASON_COUNT - 1);

	/* label values escape backslash, double quote and newline */
	assert_line(text, "streamrec_updates_total{variant=\"als\"} 7");
	assert_line(text, "streamrec_updates_total{variant=\"we\\\"ird\\\\na\\nme\"} 0");
	assert_line(text, "streamrec_recommendations_total{variant=\"we\\\"ird\\\\na\\nme\"} 4");
	assert_line(text, "streamrec_users_served_total{variant=\"als\"} 11");
	assert_line(text, "streamrec_hits_total{variant=\"we\\\"ird\\\\na\\nme\",type="
			  "\"add_to_cart\"} 6");
	assert_line(text, "streamrec_hits_total{variant=\"als\",type=\"click\"} 0");
	assert_int_equal(count_lines_starting(text, "streamrec_hits_total{"), 6);
	assert_line(text, "streamrec_hits_by_rank_total{variant=\"als\",rank=\"6-10\"} 2");
	assert_line(text, "streamrec_hits_by_rank_total{variant=\"als\",rank=\"21+\"} 0");
	assert_int_equal(count_lines_starting(text, "streamrec_hits_by_rank_total{"), 14);
	assert_line(text,
		    "streamrec_hits_attributed_total{variant=\"als\",attribution=\"exposed\"} 4");
	assert_line(text,
		    "streamrec_hits_attributed_total{variant=\"als\",attribution=\"last_list\"} 0");
	assert_int_equal(count_lines_starting(text, "streamrec_hits_attributed_total{"), 4);
	assert_line(text, "streamrec_hits_unknown_list_total 5");

	/* cumulative buckets, a bound counts as le, +Inf equals _count */
	assert_line(text, "# TYPE streamrec_freshness_seconds histogram");
	assert_line(text, "streamrec_freshness_seconds_bucket{variant=\"als\",le=\"0.001\"} 1");
	assert_line(text, "streamrec_freshness_seconds_bucket{variant=\"als\",le=\"0.0025\"} 1");
	assert_line(text, "streamrec_freshness_seconds_bucket{variant=\"als\",le=\"0.005\"} 3");
	assert_line(text, "streamrec_freshness_seconds_bucket{variant=\"als\",le=\"0.1\"} 3");
	assert_line(text, "streamrec_freshness_seconds_bucket{variant=\"als\",le=\"0.25\"} 4");
	assert_line(text, "streamrec_freshness_seconds_bucket{variant=\"als\",le=\"60\"} 4");
	assert_line(text, "streamrec_freshness_seconds_bucket{variant=\"als\",le=\"+Inf\"} 5");
	assert_line(text, "streamrec_freshness_seconds_sum{variant=\"als\"} 100.2565");
	assert_line(text, "streamrec_freshness_seconds_count{variant=\"als\"} 5");
	assert_line(text, "streamrec_freshness_seconds_bucket{variant=\"we\\\"ird\\\\na\\nme\","
			  "le=\"+Inf\"} 0");
	assert_line(text, "streamrec_freshness_seconds_count{variant=\"we\\\"ird\\\\na\\nme\"} 0");
	assert_int_equal(count_lines_starting(text, "streamrec_freshness_seconds_bucket{"),
			 2 * (int)(metrics_latency_bucket_count + 1));
	assert_int_equal(count_lines_starting(text, "# TYPE streamrec_freshness_seconds "), 1);
	assert_line(text, "# TYPE streamrec_freshness_deferred_seconds histogram");
	assert_line(text,
		    "streamrec_freshness_deferred_seconds_bucket{variant=\"als\",le=\"60\"} 0");
	assert_line(text,
		    "streamrec_freshness_deferred_seconds_bucket{variant=\"als\",le=\"+Inf\"} 1");
	assert_line(text, "streamrec_freshness_deferred_seconds_count{variant=\"als\"} 1");
	assert_int_equal(count_lines_starting(text, "streamrec_freshness_deferred_seconds_bucket{"),
			 2 * (int)(metrics_latency_bucket_count + 1));

	assert_line(text, "streamrec_refresh_batch_seconds_bucket{le=\"0.25\"} 0");
	assert_line(text, "streamrec_refresh_batch_seconds_bucket{le=\"0.5\"} 1");
	assert_line(text, "streamrec_refresh_batch_seconds_bucket{le=\"+Inf\"} 1");
	assert_line(text, "streamrec_refresh_batch_seconds_sum 0.5");
	assert_line(text, "streamrec_refresh_batch_seconds_count 1");

	assert_line(text, "# TYPE streamrec_consumer_lag gauge");
	assert_line(text, "streamrec_consumer_lag{topic=\"events\",partition=\"0\"} 40");
	assert_line(text, "streamrec_consumer_lag{topic=\"events\",partition=\"1\"} 5");
	assert_int_equal(count_lines_starting(text, "streamrec_consumer_lag{"), 2);
	/* the committed lag only where a commit is known */
	assert_line(text, "# TYPE streamrec_consumer_committed_lag gauge");
	assert_line(text, "streamrec_consumer_committed_lag{topic=\"events\",partition=\"0\"} 900");
	assert_int_equal(count_lines_starting(text, "streamrec_consumer_committed_lag{"), 1);

	assert_line(text, "streamrec_users 100");
	assert_line(text, "streamrec_items 50");
	assert_line(text, "streamrec_state_bytes 123456789012");
	assert_line(text, "streamrec_commits_total 9");
	assert_line(text, "streamrec_commit_failures_total 1");
	assert_line(text, "streamrec_commits_postponed_total 4");
	assert_line(text, "streamrec_dlq_messages_total 3");
	assert_line(text, "# TYPE streamrec_ready gauge");
	assert_line(text, "streamrec_ready 1");
	/* the embedding life cycle, by kind */
	assert_line(text, "# TYPE streamrec_embeddings_admitted_total counter");
	assert_line(text, "streamrec_embeddings_admitted_total{kind=\"user\"} 130");
	assert_line(text, "streamrec_embeddings_expired_total{kind=\"user\"} 20");
	assert_line(text, "streamrec_embeddings_evicted_total{kind=\"user\"} 10");
	assert_line(text, "# TYPE streamrec_embeddings_live gauge");
	assert_line(text, "streamrec_embeddings_live{kind=\"user\"} 100");

	/* every family has exactly one HELP and one TYPE, HELP first */
	assert_int_equal(count_lines_starting(text, "# HELP "),
			 count_lines_starting(text, "# TYPE "));
	/* the refresh lanes and the index's shadow: a recall only once measured */
	assert_line(text, "streamrec_refresh_waiting 0");
	assert_line(text, "streamrec_refresh_deferred_total 0");
	assert_line(text, "# TYPE streamrec_refresh_round_limit gauge");
	assert_line(text, "streamrec_refresh_round_limit 1024");
	assert_line(text, "# TYPE streamrec_refresh_phase_seconds_total counter");
	assert_line(text, "streamrec_refresh_phase_seconds_total{phase=\"wait\"} 0.000000");
	assert_line(text, "# TYPE streamrec_refresh_upkeep_seconds_total counter");
	assert_line(text, "streamrec_refresh_upkeep_awaited_seconds_total 0.000000");
	assert_int_equal(count_lines_starting(text, "streamrec_index_recall{"), 0);
	assert_int_equal(count_lines_starting(text, "streamrec_index_nprobe{"), 0);
	/* what a list costs, and how lopsided the cells are (no sample before an index) */
	assert_line(text, "# TYPE streamrec_index_candidates_total counter");
	assert_line(text, "# TYPE streamrec_index_lists_total counter");
	/* the worker time of the index's searches and of its shadow (refresh.shadow_budget) */
	assert_line(text, "# TYPE streamrec_index_search_seconds_total counter");
	assert_line(text, "# TYPE streamrec_index_shadow_seconds_total counter");
	assert_line(text, "# TYPE streamrec_index_largest_cell_items gauge");
	assert_int_equal(count_lines_starting(text, "streamrec_index_largest_cell_items{"), 0);
	assert_int_equal(count_lines_starting(text, "streamrec_index_items{"), 0);
	assert_line(text, "# TYPE streamrec_index_rows_pending gauge");
	assert_int_equal(count_lines_starting(text, "streamrec_index_rows_pending{"), 0);
	/* scale-out: the changelog, restores and item sharing, zero on one instance */
	assert_line(text, "streamrec_changelog_records_total 0");
	assert_line(text, "streamrec_restores_total 0");
	assert_line(text, "streamrec_assigned_partitions 0");
	assert_line(text, "streamrec_item_sync_folded_total 0");
	assert_line(text, "# TYPE streamrec_item_sync_staleness_seconds gauge");
	assert_line(text, "streamrec_content_vectors_total{outcome=\"placed\"} 0");
	assert_line(text, "streamrec_content_texts_unembedded_total 0");
	assert_line(text, "streamrec_content_texts_embedded_total 0");
	assert_line(text, "# TYPE streamrec_text_embed_queue gauge");
	assert_line(text, "streamrec_text_embed_queue 0");
	assert_line(text, "streamrec_text_embed_seconds_total 0.000000");
	assert_line(text, "streamrec_text_embed_holds_total 0");
	assert_line(text, "streamrec_search_events_total{outcome=\"applied\"} 0");
	assert_line(text, "# TYPE streamrec_commit_loop_seconds histogram");
	assert_line(text, "streamrec_commit_loop_seconds_count 0");
	assert_line(text, "# TYPE streamrec_state_block_cache_bytes gauge");
	assert_line(text, "streamrec_state_block_cache_bytes{kind=\"capacity\"} 0");
	assert_line(text, "streamrec_state_block_cache_bytes{kind=\"usage\"} 0");
	assert_int_equal(count_lines_starting(text, "# TYPE "), 78);
	/* the text model's family is there, without a sample while no model is loaded */
	assert_line(text, "# TYPE streamrec_text_model_info gauge");
	assert_int_equal(count_lines_starting(text, "streamrec_text_model_info{"), 0);
	/* backlog lists have their own histogram, out of the freshness SLO */
	assert_line(text, "# TYPE streamrec_catch_up_seconds histogram");
	free(text);

	metrics_remove_consumer_lag(m, "events", 0);
	metrics_remove_consumer_lag(m, "other", 0);
	metrics_set_text_model(m, "multilingual-e5-small-q4", 384, "avx2");
	assert_int_equal(metrics_render(m, &text, &len, errstr, sizeof errstr), 0);
	assert_line(text, "streamrec_text_model_info{name=\"multilingual-e5-small-q4\",dim=\"384\","
			  "kernel=\"avx2\"} 1");
	assert_line(text, "# TYPE streamrec_commit_loop_seconds histogram");
	assert_line(text, "streamrec_commit_loop_seconds_count 0");
	assert_int_equal(count_lines_starting(text, "# TYPE "), 78);
	assert_int_equal(count_lines_starting(text, "streamrec_consumer_lag{"), 1);
	assert_line(text, "streamrec_consumer_lag{topic=\"events\",partition=\"1\"} 5");
	free(text);
	metrics_free(m);
}

static void quantiles_from_buckets(void **state)
{
	(void)state;
	char errstr[256];
	struct metrics_histogram h;
	const double bounds[] = {1, 2, 4, 8};
	assert_int_equal(metrics_histogram_init(&h, bounds, 4, errstr, sizeof errstr), 0);
	assert_true(isnan(metrics_histogram_quantile(&h, 0.5)));

	/* 100 observations: 10 in (0,1], 40 in (1,2], 40 in (2,4], 10 in (4,8] */
	for (int i = 0; i < 10; i++)
		metrics_histogram_observe(&h, 0.5);
	for (int i = 0; i < 40; i++)
		metrics_histogram_observe(&h, 1.5);
	for (int i = 0; i < 40; i++)
		metrics_histogram_observe(&h, 3);
	for (int i = 0; i < 10; i++)
		metrics_histogram_observe(&h, 5);
	metrics_histogram_observe(&h, NAN);
	assert_int_equal(h.count, 100);
	assert_true(fabs(h.sum - (5 + 60 + 120 + 50)) < 1e-9);

	/* rank 50 is the top of (1,2]; rank 95 is half way through (4,8]; rank 99 9/10 of it */
	assert_true(fabs(metrics_histogram_quantile(&h, 0.5) - 2.0) < 1e-9);
	assert_true(fabs(metrics_histogram_quantile(&h, 0.95) - 6.0) < 1e-9);
	assert_true(fabs(metrics_histogram_quantile(&h, 0.99) - 7.6) < 1e-9);
	/* rank 5 is half way through (0,1] */
	assert_true(fabs(metrics_histogram_quantile(&h, 0.05) - 0.5) < 1e-9);
	assert_true(isnan(metrics_histogram_quantile(&h, 1.5)));
	assert_true(isnan(metrics_histogram_quantile(&h, -0.1)));

	/* ranks in the +Inf bucket report the last finite bound */
	for (int i = 0; i < 100; i++)
		metrics_histogram_observe(&h, 1000);
	assert_true(fabs(metrics_histogram_quantile(&h, 0.99) - 8.0) < 1e-9);
}

static void bad_configuration_is_refused(void **state)
{
	(void)state;
	char errstr[256];
	const double descending[] = {1, 0.5};
	struct metrics_histogram h;
	assert_int_equal(metrics_histogram_init(&h, descending, 2, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "bound[1] = 0.5"));

	assert_null(metrics_new(NULL, 0, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "0 variants"));
	const char *twice[] = {"a", "b", "a"};
	assert_null(metrics_new(twice, 3, errstr, sizeof errstr));
	assert_string_equal(errstr, "metrics: variant[2]: name \"a\" already used by variant[0]");
	const char *empty[] = {""};
	assert_null(metrics_new(empty, 1, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "variant[0]"));

	const char *ok[] = {"a", "b"};
	struct metrics *m = metrics_new(ok, 2, errstr, sizeof errstr);
	assert_non_null(m);
	assert_int_equal(metrics_variant_index(m, "b"), 1);
	assert_int_equal(metrics_variant_index(m, "c"), -1);
	metrics_free(m);
}

static void many_lag_series_grow_the_table(void **state)
{
	(void)state;
	char errstr[256], *text;
	size_t len;
	const char *names[] = {"v"};
	struct metrics *m = metrics_new(names, 1, errstr, sizeof errstr);
	assert_non_null(m);
	for (int32_t p = 0; p < 100; p++)
		assert_int_equal(metrics_set_consumer_lag(m, "t", p, p, -1, errstr, sizeof errstr),
				 0);
	assert_int_equal(m->lag_count, 100);
	assert_int_equal(metrics_render(m, &text, &len, errstr, sizeof errstr), 0);
	assert_line(text, "streamrec_consumer_lag{topic=\"t\",partition=\"99\"} 99");
	assert_line(text, "streamrec_ready 0");
	free(text);
	metrics_free(m);
}

/* The experiment's figures: only with an experiment, undefined ones (the
 * control's uplift) left out rather than rendered as NaN. */
static void experiment_gauges(void **state)
{
	(void)state;
	char errstr[128], *text;
	size_t len;
	const char *names[] = {"model", "control"};
	struct metrics *m = metrics_new(names, 2, errstr, sizeof errstr);
	assert_non_null(m);
	assert_int_equal(metrics_render(m, &text, &len, errstr, sizeof errstr), 0);
	assert_null(strstr(text, "streamrec_experiment_"));
	free(text);
	m->experiment_srm_p = 0.5;
	m->experiment_alpha = 0.05;
	m->variants[1].experiment_control = true;
	m->variants[0].experiment_rate = 0.25;
	m->variants[0].experiment_rate_lower = 0.2;
	m->variants[0].experiment_rate_upper = 0.3;
	m->variants[1].experiment_rate = 0.2;
	m->variants[0].experiment_uplift = 0.25;
	m->variants[0].experiment_uplift_lower = -0.05;
	m->variants[0].experiment_uplift_upper = 0.55;
	assert_int_equal(metrics_render(m, &text, &len, errstr, sizeof errstr), 0);
	assert_line(text, "streamrec_experiment_alpha 0.05");
	assert_line(text, "streamrec_experiment_control{variant=\"model\"} 0");
	assert_line(text, "streamrec_experiment_control{variant=\"control\"} 1");
	assert_line(text, "streamrec_experiment_conversion_rate{variant=\"model\"} 0.25");
	assert_line(text, "streamrec_experiment_conversion_rate{variant=\"control\"} 0.2");
	assert_line(text, "streamrec_experiment_conversion_rate_lower{variant=\"model\"} 0.2");
	assert_line(text, "streamrec_experiment_conversion_rate_upper{variant=\"model\"} 0.3");
	assert_line(text, "streamrec_experiment_uplift{variant=\"model\"} 0.25");
	assert_line(text, "streamrec_experiment_uplift_lower{variant=\"model\"} -0.05");
	assert_line(text, "streamrec_experiment_uplift_upper{variant=\"model\"} 0.55");
	assert_line(text, "# TYPE streamrec_experiment_uplift gauge");
	assert_null(strstr(text, "streamrec_experiment_uplift{variant=\"control\"}"));
	assert_null(
	    strstr(text, "streamrec_experiment_conversion_rate_lower{variant=\"control\"}"));
	assert_null(strstr(text, "NaN"));
	free(text);
	metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ranks_fall_in_their_buckets),
	    cmocka_unit_test(renders_exact_lines),
	    cmocka_unit_test(quantiles_from_buckets),
	    cmocka_unit_test(bad_configuration_is_refused),
	    cmocka_unit_test(many_lag_series_grow_the_table),
	    cmocka_unit_test(experiment_gauges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
