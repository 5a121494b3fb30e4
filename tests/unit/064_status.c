/*
 * Status figures: the live window is exactly the last STATUS_WINDOW_S seconds
 * whatever the tick spacing, and a freshness percentile beyond the
 * histogram's last bound is reported as clipped, never as a number. The
 * history holds one point per STATUS_HISTORY_STEP_S over the last hour, each
 * with its own step's percentiles and hit rate, the step under way as a last
 * partial point; a stalled loop gives one longer point, never invented ones.
 * status_tick() is driven with synthetic times.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "status.h"

static struct metrics *new_metrics(void)
{
	char errstr[128];
	const char *variants[] = {"control"};
	struct metrics *m = metrics_new(variants, 1, errstr, sizeof errstr);
	assert_non_null(m);
	return m;
}

static char *render(const struct status *s, double now_s)
{
	char *json;
	size_t len;
	assert_int_equal(status_render_json(s, now_s, &json, &len), 0);
	assert_int_equal(strlen(json), len);
	return json;
}

/* Ticks every 2 s (a loop that skips every other 1 s tick): 100 events/s
 * for the first 200 s, then 1 event/s. The last minute saw 1 event/s. */
static void window_is_the_last_minute(void **state)
{
	(void)state;
	struct metrics *m = new_metrics();
	struct status *s = status_new(m);
	assert_non_null(s);
	uint64_t events = 0;
	for (int t = 0; t <= 400; t += 2) {
		m->events_total[EVENT_VIEW] = events;
		status_tick(s, 1000.0 + t);
		events += t < 200 ? 200 : 2;
	}
	m->events_total[EVENT_VIEW] = events - 2; /* as at the last tick */
	char *json = render(s, 1400.0);
	assert_non_null(strstr(json, "\"window_s\":60,"));
	assert_non_null(strstr(json, "\"events_per_s\":1,"));
	free(json);
	/* half a minute later without a tick: from the snapshot a minute back */
	json = render(s, 1430.0);
	assert_non_null(strstr(json, "\"window_s\":60,"));
	free(json);
	/* no snapshot within the last minute: no live figures rather than older ones */
	json = render(s, 1500.0);
	assert_non_null(strstr(json, "\"window_s\":0,\"events_per_s\":null,"));
	free(json);
	status_free(s);
	metrics_free(m);
}

static void percentiles_beyond_the_last_bound_are_clipped(void **state)
{
	(void)state;
	struct metrics *m = new_metrics();
	struct status *s = status_new(m);
	assert_non_null(s);
	status_tick(s, 10.0);
	struct metrics_histogram *h = &m->variants[0].freshness_seconds;
	for (int i = 0; i < 90; i++)
		metrics_histogram_observe(h, 0.05);
	for (int i = 0; i < 10; i++)
		metrics_histogram_observe(h, 120.0); /* past the 60 s bound */
	status_tick(s, 11.0);
	char *json = render(s, 11.5);
	assert_null(strstr(json, "\"p99_ms\":60000"));
	assert_non_null(strstr(json, "\"freshness_clip_ms\":60000,"));
	assert_non_null(strstr(json, "\"p99_ms\":null,\"p99_clipped\":true"));
	assert_non_null(strstr(json, "\"p95_ms\":null,\"p95_clipped\":true"));
	assert_non_null(strstr(json, "\"p50_clipped\":false"));
	assert_null(strstr(json, "\"p50_ms\":null"));
	free(json);
	/* the page shows a clipped figure as "> 60 s" */
	assert_non_null(strstr(status_page_html, "'> '+"));
	status_free(s);
	metrics_free(m);
}

/* Of the window's lists, the share the deferred lane served (late under
 * overload); none in the window: null, not 0. */
static void the_share_served_late_is_the_windows(void **state)
{
	(void)state;
	struct metrics *m = new_metrics();
	struct status *s = status_new(m);
	assert_non_null(s);
	struct metrics_variant *mv = &m->variants[0];
	for (int i = 0; i < 50; i++) { /* before the window: not counted */
		metrics_histogram_observe(&mv->freshness_seconds, 2.0);
		metrics_histogram_observe(&mv->freshness_deferred_seconds, 2.0);
	}
	status_tick(s, 10.0);
	char *json = render(s, 10.5);
	assert_non_null(strstr(json, "\"deferred_share\":null,"));
	free(json);
	for (int i = 0; i < 200; i++)
		metrics_histogram_observe(&mv->freshness_seconds, 0.05);
	for (int i = 0; i < 6; i++) {
		metrics_histogram_observe(&mv->freshness_seconds, 2.5);
		metrics_histogram_observe(&mv->freshness_deferred_seconds, 2.5);
	}
	status_tick(s, 11.0);
	json = render(s, 11.5);
	char *at = strstr(json, "\"deferred_share\":");
	assert_non_null(at);
	assert_true(fabs(strtod(at + strlen("\"deferred_share\":"), NULL) - 6.0 / 206.0) < 1e-9);
	free(json);
	/* the page shows it in its own column */
	assert_non_null(strstr(status_page_html, "percent(v.deferred_share)"));
	status_free(s);
	metrics_free(m);
}

static json_t *history_points(const struct status *s, double now_s)
{
	char *text = render(s, now_s);
	json_error_t error;
	json_t *root = json_loads(text, 0, &error);
	free(text);
	assert_non_null(root);
	json_t *history = json_object_get(root, "history");
	assert_int_equal(json_integer_value(json_object_get(history, "step_s")),
			 STATUS_HISTORY_STEP_S);
	json_t *points = json_incref(json_object_get(history, "points"));
	json_decref(root);
	assert_true(json_is_array(points));
	return points;
}

static double number_at(json_t *point, const char *key)
{
	json_t *value = json_object_get(json_array_get(json_object_get(point, "variants"), 0), key);
	return json_is_number(value) ? json_number_value(value) : NAN;
}

static bool flag_at(json_t *point, const char *key)
{
	return json_is_true(
	    json_object_get(json_array_get(json_object_get(point, "variants"), 0), key));
}

/*
 * Two hours of ticks each second, 10 lists and 2 hits a second; freshness
 * 0.4 s in the first hour, 0.04 s in the second but for one step of 120 s
 * (past the 60 s bound). The history is the second hour only, one point per
 * step, each with its own figures; the clipped step has no number.
 */
static void history_is_the_last_hour_per_step(void **state)
{
	(void)state;
	const double t0 = 1796120000.0; /* now-like epoch seconds: %.6g lost them */
	struct metrics *m = new_metrics();
	struct status *s = status_new(m);
	assert_non_null(s);
	struct metrics_variant *mv = &m->variants[0];
	status_tick(s, t0);
	for (int t = 1; t <= 7200; t++) {
		double freshness = t <= 3600 ? 0.4 : t > 6000 && t <= 6030 ? 120.0 : 0.04;
		for (int i = 0; i < 10; i++)
			metrics_histogram_observe(&mv->freshness_seconds, freshness);
		mv->recommendations_total += 10;
		mv->hits_total[metrics_hit_types[0]] += 2;
		status_tick(s, t0 + t);
	}
	json_t *points = history_points(s, t0 + 7200);
	assert_int_equal(json_array_size(points), STATUS_HISTORY_POINTS);
	size_t clipped = 0;
	for (size_t i = 0; i < json_array_size(points); i++) {
		json_t *p = json_array_get(points, i);
		double start = json_number_value(json_object_get(p, "start_s"));
		double end = json_number_value(json_object_get(p, "end_s"));
		assert_true(start == t0 + 3600 + 30.0 * (double)i);
		assert_true(end == start + STATUS_HISTORY_STEP_S);
		assert_false(json_is_true(json_object_get(p, "partial")));
		assert_true(number_at(p, "lists") == 300);
		assert_true(number_at(p, "hit_rate") == 0.2);
		if (flag_at(p, "p99_clipped")) {
			clipped++;
			assert_true(end == t0 + 6030);
			assert_true(flag_at(p, "p50_clipped"));
			assert_true(isnan(number_at(p, "p50_ms")) && isnan(number_at(p, "p99_ms")));
			continue;
		}
		/* the step's own: 25-50 ms, not the first hour's 0.4 s nor the clipped step's */
		assert_true(fabs(number_at(p, "p50_ms") - 37.5) < 1e-6);
		assert_true(fabs(number_at(p, "p99_ms") - 49.75) < 1e-6);
	}
	assert_int_equal(clipped, 1);
	json_decref(points);

	/* 15 s into the next step: the step under way is a last, partial point */
	mv->recommendations_total += 5;
	metrics_histogram_observe(&mv->freshness_seconds, 0.004);
	points = history_points(s, t0 + 7215);
	assert_int_equal(json_array_size(points), STATUS_HISTORY_POINTS + 1);
	json_t *last = json_array_get(points, STATUS_HISTORY_POINTS);
	assert_true(json_is_true(json_object_get(last, "partial")));
	assert_true(json_number_value(json_object_get(last, "start_s")) == t0 + 7200);
	assert_true(json_number_value(json_object_get(last, "end_s")) == t0 + 7215);
	assert_true(number_at(last, "lists") == 5 && number_at(last, "hit_rate") == 0);
	assert_true(number_at(last, "p99_ms") < 5);
	assert_true(json_number_value(json_object_get(json_array_get(points, 0), "end_s")) ==
		    t0 + 3630);
	json_decref(points);
	/* 45 s in, without a tick: the oldest point ended more than an hour ago */
	points = history_points(s, t0 + 7245);
	assert_int_equal(json_array_size(points), STATUS_HISTORY_POINTS);
	assert_true(json_number_value(json_object_get(json_array_get(points, 0), "end_s")) ==
		    t0 + 3660);
	json_decref(points);
	status_free(s);
	metrics_free(m);
}

/* A loop that stalls for 200 s closes one 200 s point, with nothing published
 * in it: no hit rate and no percentiles rather than zeros. */
static void a_stalled_loop_gives_one_longer_point(void **state)
{
	(void)state;
	struct metrics *m = new_metrics();
	struct status *s = status_new(m);
	assert_non_null(s);
	json_t *points = history_points(s, 100.0);
	assert_int_equal(json_array_size(points), 0); /* nothing before the first tick */
	json_decref(points);
	for (int t = 0; t <= 30; t++)
		status_tick(s, 100.0 + t);
	status_tick(s, 330.0);
	points = history_points(s, 330.0);
	assert_int_equal(json_array_size(points), 2);
	json_t *p = json_array_get(points, 1);
	assert_true(json_number_value(json_object_get(p, "start_s")) == 130.0);
	assert_true(json_number_value(json_object_get(p, "end_s")) == 330.0);
	assert_true(number_at(p, "lists") == 0);
	assert_true(json_is_null(
	    json_object_get(json_array_get(json_object_get(p, "variants"), 0), "hit_rate")));
	assert_true(isnan(number_at(p, "p50_ms")) && !flag_at(p, "p50_clipped"));
	json_decref(points);
	status_free(s);
	metrics_free(m);
}

/* The page draws the history and the experiment, and prints no clipped figure. */
static void page_draws_history_and_experiment(void **state)
{
	(void)state;
	assert_non_null(strstr(status_page_html, "experiment.json"));
	assert_non_null(strstr(status_page_html, "id=\"chart-p99\""));
	assert_non_null(strstr(status_page_html, "<polyline"));
	assert_non_null(strstr(status_page_html, "clipText(s)"));
	assert_null(strstr(status_page_html, "http://"));
	assert_null(strstr(status_page_html, "https://"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(window_is_the_last_minute),
	    cmocka_unit_test(percentiles_beyond_the_last_bound_are_clipped),
	    cmocka_unit_test(the_share_served_late_is_the_windows),
	    cmocka_unit_test(history_is_the_last_hour_per_step),
	    cmocka_unit_test(a_stalled_loop_gives_one_longer_point),
	    cmocka_unit_test(page_draws_history_and_experiment),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
