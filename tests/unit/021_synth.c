/*
 * The synthetic stream: deterministic, of the configured size and mix, and
 * carrying the planted structure (sessions, intent, successors, taste) that
 * a model's three signals are meant to find.
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
#include "synth.h"

static struct synth_config test_config(void)
{
	struct synth_config config = synth_config_default();
	config.users = 2000;
	config.items = 2000;
	config.clusters = 10;
	config.events = 400000;
	return config;
}

static struct event_log *generate(const struct synth_config *config, struct synth **synth_out)
{
	char errstr[256];
	struct event_log *log = NULL;
	struct synth *synth = synth_new(config, errstr, sizeof errstr);
	if (synth == NULL)
		fail_msg("synth_new: %s", errstr);
	if (synth_generate(synth, &log, errstr, sizeof errstr) != 0)
		fail_msg("synth_generate: %s", errstr);
	if (synth_out != NULL)
		*synth_out = synth;
	else
		synth_free(synth);
	return log;
}

static bool logs_equal(const struct event_log *a, const struct event_log *b)
{
	if (a->count != b->count || a->user_count != b->user_count ||
	    a->item_count != b->item_count)
		return false;
	return memcmp(a->user, b->user, a->count * sizeof *a->user) == 0 &&
	       memcmp(a->item, b->item, a->count * sizeof *a->item) == 0 &&
	       memcmp(a->type, b->type, a->count * sizeof *a->type) == 0 &&
	       memcmp(a->ts_ms, b->ts_ms, a->count * sizeof *a->ts_ms) == 0 &&
	       memcmp(a->item_category, b->item_category, a->item_count * sizeof(uint32_t)) == 0 &&
	       memcmp(a->user_cluster, b->user_cluster, a->user_count * sizeof(uint32_t)) == 0;
}

static void same_seed_same_log_other_seed_other_log(void **state)
{
	struct synth_config config = test_config();
	struct synth *synth;
	struct event_log *a, *b, *c;
	char errstr[256];
	(void)state;

	config.events = 50000;
	a = generate(&config, &synth);
	b = generate(&config, NULL);
	assert_true(logs_equal(a, b));
	for (size_t u = 0; u < a->user_count; u++)
		assert_string_equal(a->user_ids[u], b->user_ids[u]);
	eventlog_free(b);
	/* a second run of the same generator, too */
	assert_int_equal(synth_generate(synth, &b, errstr, sizeof errstr), 0);
	assert_true(logs_equal(a, b));
	eventlog_free(b);
	synth_free(synth);

	config.seed = 2;
	c = generate(&config, NULL);
	assert_false(logs_equal(a, c));
	assert_int_not_equal(memcmp(a->item, c->item, a->count * sizeof *a->item), 0);
	eventlog_free(a);
	eventlog_free(c);
}

static void sizes_ids_and_time_order(void **state)
{
	struct synth_config config = test_config();
	struct event_log *log = generate(&config, NULL);
	(void)state;

	assert_int_equal(log->count, config.events);
	assert_int_equal(log->user_count, config.users);
	assert_int_equal(log->item_count, config.items);
	assert_string_equal(log->user_ids[17], "u17");
	assert_string_equal(log->item_ids[1999], "i1999");
	assert_non_null(log->item_category);
	assert_non_null(log->user_cluster);
	for (size_t i = 0; i < log->item_count; i++)
		assert_true(log->item_category[i] < config.clusters);
	for (size_t u = 0; u < log->user_count; u++)
		assert_true(log->user_cluster[u] < config.clusters);
	/* clusters are dealt evenly */
	size_t per_cluster[64] = {0};
	for (size_t i = 0; i < log->item_count; i++)
		per_cluster[log->item_category[i]]++;
	for (uint32_t k = 0; k < config.clusters; k++)
		assert_int_equal(per_cluster[k], config.items / config.clusters);

	assert_true(eventlog_is_sorted(log));
	assert_true(log->ts_ms[0] >= config.start_ms);
	double mean_gap =
	    (double)(log->ts_ms[log->count - 1] - log->ts_ms[0]) / (double)(log->count - 1);
	printf("mean gap %.2f ms (configured %.2f)\n", mean_gap, config.mean_gap_ms);
	assert_true(mean_gap > 0.8 * config.mean_gap_ms && mean_gap < 1.25 * config.mean_gap_ms);
	eventlog_free(log);

	config.events = 0;
	log = generate(&config, NULL);
	assert_int_equal(log->count, 0);
	assert_int_equal(log->user_count, config.users);
	eventlog_free(log);
}

static void type_mix_as_configured(void **state)
{
	struct synth_config config = test_config();
	struct event_log *log = generate(&config, NULL);
	size_t counts[EVENT_TYPE_COUNT] = {0};
	double share[EVENT_TYPE_COUNT];
	(void)state;

	for (size_t i = 0; i < log->count; i++)
		counts[log->type[i]]++;
	for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
		share[t] = (double)counts[t] / (double)log->count;
		printf("%-16s %.4f (drawn share %.4f)\n", event_type_name((enum event_type)t),
		       share[t], config.type_share[t]);
	}
	/* drawn types: as configured, give or take the few events forced after a cart */
	static const enum event_type drawn[] = {EVENT_IMPRESSION, EVENT_VIEW, EVENT_CLICK,
						EVENT_ADD_TO_CART, EVENT_FAVORITE};
	for (size_t k = 0; k < sizeof drawn / sizeof drawn[0]; k++) {
		double want = config.type_share[drawn[k]];
		assert_true(share[drawn[k]] > 0.9 * want && share[drawn[k]] < 1.05 * want);
	}
	/* purchases: the drawn ones plus those right after a cart */
	double cart = config.type_share[EVENT_ADD_TO_CART];
	assert_true(share[EVENT_PURCHASE] >
		    config.type_share[EVENT_PURCHASE] + 0.6 * cart * config.purchase_after_cart);
	assert_true(share[EVENT_PURCHASE] <
		    config.type_share[EVENT_PURCHASE] + 1.05 * cart * config.purchase_after_cart);
	assert_true(share[EVENT_REMOVE_FROM_CART] > 0.6 * cart * config.remove_after_cart);
	assert_true(share[EVENT_REMOVE_FROM_CART] < 1.05 * cart * config.remove_after_cart);
	/* impressions and views dominate; purchases and removals are rare */
	assert_true(share[EVENT_IMPRESSION] + share[EVENT_VIEW] > 0.6);
	assert_true(share[EVENT_PURCHASE] < 0.05 &&
		    share[EVENT_REMOVE_FROM_CART] < share[EVENT_PURCHASE]);
	eventlog_free(log);
}

/* ---- structure, measured per session -------------------------------------------------- */

struct structure {
	size_t sessions, inner_sessions, short_or_long, too_long;
	double mean_majority_share;   /* sessions of >= 3 events: share of the top cluster */
	double foreign_session_share; /* sessions of >= 4: top cluster neither main nor second */
	size_t pairs, successor_pairs, same_item_pairs, same_item_forced;
	size_t carts_followed, cart_then_purchase;
	double main_cluster_event_share; /* over all events */
	double main_is_top_share; /* users with >= 50 events whose top cluster is the main one */
};

/* Walks every user's events in order, splitting sessions at the generator's gap. */
static struct structure measure(const struct event_log *log, const struct synth *synth)
{
	const struct synth_config *config = synth_config(synth);
	int64_t split_ms = synth_session_split_ms(synth);
	size_t *offset = calloc(log->user_count + 1, sizeof *offset);
	size_t *fill = calloc(log->user_count, sizeof *fill);
	size_t *events = malloc(log->count * sizeof *events);
	size_t cluster_count[64], user_cluster_count[64];
	struct structure s = {0};
	size_t majority_sessions = 0, foreign_candidates = 0, foreign = 0, main_events = 0;
	size_t heavy_users = 0, main_top = 0;

	assert_true(config->clusters <= 64);
	for (size_t i = 0; i < log->count; i++)
		offset[log->user[i] + 1]++;
	for (size_t u = 0; u < log->user_count; u++)
		offset[u + 1] += offset[u];
	for (size_t i = 0; i < log->count; i++)
		events[offset[log->user[i]] + fill[log->user[i]]++] = i;

	for (size_t u = 0; u < log->user_count; u++) {
		size_t from = offset[u], to = offset[u + 1];
		uint32_t main = log->user_cluster[u],
			 second = synth_user_second_cluster(synth, (uint32_t)u);
		memset(user_cluster_count, 0, sizeof user_cluster_count);
		for (size_t start = from; start < to;) {
			size_t end = start + 1;
			while (end < to &&
			       log->ts_ms[events[end]] - log->ts_ms[events[end - 1]] <= split_ms)
				end++;
			size_t length = end - start, top = 0;
			uint32_t top_cluster = 0;
			s.sessions++;
			if (length > config->session_max_events)
				s.too_long++;
			/* the first session may start mid-way, the last may be cut by the end */
			if (start != from && end != to) {
				s.inner_sessions++;
				if (length < config->session_min_events)
					s.short_or_long++;
			}
			memset(cluster_count, 0, sizeof cluster_count);
			for (size_t k = start; k < end; k++) {
				size_t e = events[k];
				uint32_t cluster = log->item_category[log->item[e]];
				cluster_count[cluster]++;
				user_cluster_count[cluster]++;
				main_events += cluster == main;
				if (k > start) {
					size_t p = events[k - 1];
					uint32_t a = log->item[p], b = log->item[e];
					if (a == b) {
						s.same_item_pairs++;
						s.same_item_forced +=
						    log->type[p] == EVENT_ADD_TO_CART &&
						    (log->type[e] == EVENT_PURCHASE ||
						     log->type[e] == EVENT_REMOVE_FROM_CART);
					} else {
						const uint32_t *succ =
						    synth_item_successors(synth, a);
						s.pairs++;
						for (uint32_t j = 0; j < config->successors; j++)
							s.successor_pairs += succ[j] == b;
					}
					if (log->type[p] == EVENT_ADD_TO_CART) {
						s.carts_followed++;
						s.cart_then_purchase +=
						    a == b && log->type[e] == EVENT_PURCHASE;
					}
				}
			}
			for (uint32_t c = 0; c < config->clusters; c++) {
				if (cluster_count[c] > top) {
					top = cluster_count[c];
					top_cluster = c;
				}
			}
			if (length >= 3) {
				s.mean_majority_share += (double)top / (double)length;
				majority_sessions++;
			}
			if (length >= 4) {
				foreign_candidates++;
				foreign += top_cluster != main && top_cluster != second;
			}
			start = end;
		}
		if (to - from >= 50) {
			uint32_t top_cluster = 0;
			for (uint32_t c = 1; c < config->clusters; c++)
				if (user_cluster_count[c] > user_cluster_count[top_cluster])
					top_cluster = c;
			heavy_users++;
			main_top += top_cluster == main;
		}
	}
	s.mean_majority_share /= (double)majority_sessions;
	s.foreign_session_share = (double)foreign / (double)foreign_candidates;
	s.main_cluster_event_share = (double)main_events / (double)log->count;
	s.main_is_top_share = (double)main_top / (double)heavy_users;
	printf("sessions %zu (%zu inner), majority share %.3f, foreign sessions %.3f, "
	       "successor pairs %.3f of %zu, cart->purchase %.3f, main-cluster events %.3f, "
	       "main cluster on top for %.3f of %zu users\n",
	       s.sessions, s.inner_sessions, s.mean_majority_share, s.foreign_session_share,
	       (double)s.successor_pairs / (double)s.pairs, s.pairs,
	       (double)s.cart_then_purchase / (double)s.carts_followed, s.main_cluster_event_share,
	       s.main_is_top_share, heavy_users);
	free(offset);
	free(fill);
	free(events);
	return s;
}

static void sessions_intent_successors_and_taste(void **state)
{
	struct synth_config config = test_config();
	struct synth *synth;
	struct event_log *log = generate(&config, &synth);
	struct structure s = measure(log, synth);
	double successor_rate = (double)s.successor_pairs / (double)s.pairs;
	(void)state;

	/* the split gap separates sessions exactly: every length is within bounds */
	assert_true(s.inner_sessions > 10000);
	assert_int_equal(s.too_long, 0);
	assert_int_equal(s.short_or_long, 0);
	/* sessions stay in one cluster, but for successor hops out of it */
	assert_true(s.mean_majority_share > 0.85);
	/* short-term intent: about intent_session_share of sessions are elsewhere */
	assert_true(fabs(s.foreign_session_share - config.intent_session_share) < 0.06);
	/* item-to-item transitions at the configured rate (a popularity draw may hit one too) */
	assert_true(successor_rate > config.successor_prob - 0.02);
	assert_true(successor_rate < config.successor_prob + 0.06);
	/* the same item twice in a row: only a purchase or removal right after a cart */
	assert_int_equal(s.same_item_pairs, s.same_item_forced);
	assert_true(fabs((double)s.cart_then_purchase / (double)s.carts_followed -
			 config.purchase_after_cart) < 0.03);
	/* long-term taste: the main cluster dominates each user's events */
	assert_true(s.main_cluster_event_share > 0.5);
	assert_true(s.main_is_top_share > 0.95);
	eventlog_free(log);
	synth_free(synth);

	/* each knob moves its own signal */
	config.intent_session_share = 0;
	config.successor_prob = 0;
	log = generate(&config, &synth);
	s = measure(log, synth);
	assert_true(s.foreign_session_share < 0.02);
	assert_true((double)s.successor_pairs / (double)s.pairs < 0.05);
	assert_true(s.main_cluster_event_share > 0.8);
	eventlog_free(log);
	synth_free(synth);
}

/* Ratio of the busiest item's events to the median item's, within each cluster, averaged. */
static double popularity_skew(const struct event_log *log, uint32_t clusters)
{
	size_t *counts = calloc(log->item_count, sizeof *counts);
	double ratio_sum = 0;
	for (size_t i = 0; i < log->count; i++)
		counts[log->item[i]]++;
	for (uint32_t k = 0; k < clusters; k++) {
		size_t n = 0, *in_cluster = malloc(log->item_count * sizeof *in_cluster);
		for (size_t i = 0; i < log->item_count; i++)
			if (log->item_category[i] == k)
				in_cluster[n++] = counts[i];
		/* insertion sort: clusters are small here */
		for (size_t a = 1; a < n; a++)
			for (size_t b = a; b > 0 && in_cluster[b - 1] < in_cluster[b]; b--) {
				size_t t = in_cluster[b];
				in_cluster[b] = in_cluster[b - 1];
				in_cluster[b - 1] = t;
			}
		ratio_sum += (double)in_cluster[0] / (double)(in_cluster[n / 2] + 1);
		free(in_cluster);
	}
	free(counts);
	return ratio_sum / clusters;
}

static void zipf_popularity_within_clusters(void **state)
{
	struct synth_config config = test_config();
	struct event_log *log = generate(&config, NULL);
	double skewed = popularity_skew(log, config.clusters), flat;
	(void)state;
	eventlog_free(log);
	config.zipf_exponent = 0;
	log = generate(&config, NULL);
	flat = popularity_skew(log, config.clusters);
	eventlog_free(log);
	printf("top/median item events: %.1f with exponent 1, %.1f with exponent 0\n", skewed,
	       flat);
	assert_true(skewed > 10.0);
	assert_true(flat < 2.0);
}

static void bad_configurations_are_named(void **state)
{
	struct synth_config config;
	char errstr[256];
	(void)state;

	config = test_config();
	config.items = 15;
	assert_null(synth_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "items"));
	assert_non_null(strstr(errstr, "15"));

	config = test_config();
	config.successors = 200;
	assert_int_equal(synth_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "successors"));

	config = test_config();
	config.successor_prob = 1.5;
	assert_int_equal(synth_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "successor_prob: must be from 0 to 1, got 1.5"));

	config = test_config();
	config.session_min_events = 9;
	config.session_max_events = 3;
	assert_int_equal(synth_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "session_min_events"));

	config = test_config();
	config.mean_gap_ms = NAN;
	assert_int_equal(synth_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "mean_gap_ms"));

	config = test_config();
	memset(config.type_share, 0, sizeof config.type_share);
	assert_int_equal(synth_config_check(&config, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "type_share"));

	config = synth_config_default();
	assert_int_equal(synth_config_check(&config, errstr, sizeof errstr), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(same_seed_same_log_other_seed_other_log),
	    cmocka_unit_test(sizes_ids_and_time_order),
	    cmocka_unit_test(type_mix_as_configured),
	    cmocka_unit_test(sessions_intent_successors_and_taste),
	    cmocka_unit_test(zipf_popularity_within_clusters),
	    cmocka_unit_test(bad_configurations_are_named),
	};
	return cmocka_run_group_tests_name("021_synth", tests, NULL, NULL);
}
