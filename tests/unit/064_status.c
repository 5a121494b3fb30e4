/*
 * Status figures: the live window is exactly the last STATUS_WINDOW_S seconds
 * whatever the tick spacing, and a freshness percentile beyond the
 * histogram's last bound is reported as clipped, never as a number.
 * status_tick() is driven with synthetic times.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(window_is_the_last_minute),
	    cmocka_unit_test(percentiles_beyond_the_last_bound_are_clipped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
