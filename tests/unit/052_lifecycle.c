/*
 * The embedding life cycle (README, "Embedding life cycle"), users:
 * removing ids from the id map keeps every other lookup exact; a forgotten
 * cache slot is reused and its pending rows are dropped; a sweep expires
 * users idle longer than the TTL in event time and evicts the least
 * recently active above the bound, deleting every key of theirs in the
 * next commit (a reopened state knows nothing of them, their lists are
 * gone), while every live user comes back bit for bit; a removed user met
 * again starts fresh; stable indices and model slots are reused, so on an
 * endless stream of churning ids the rows in memory and the keys on disk
 * stay bounded.
 *
 * No broker: the state over RocksDB in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idmap.h"
#include "model.h"
#include "sketch.h"
#include "state.h"
#include "statetest.h"
#include "usercache.h"

#define ROW_BYTES (1 << 16)
#define T0        1700000000000

static struct state *open_state_admitting(const char *dir, size_t cache_users, unsigned admit_after)
{
	return statetest_open(dir, (struct state_config){.user_cache_users = cache_users,
							 .admit_after = admit_after});
}

static struct state *open_state(const char *dir, size_t cache_users)
{
	return open_state_admitting(dir, cache_users, 0);
}

/* The removed users a sweep reported, in order. */
struct removed_log {
	uint32_t stables[4096];
	size_t count;
};

static void note_removed(uint32_t stable, const char *user_id, void *opaque)
{
	(void)user_id;
	struct removed_log *log = opaque;
	assert_true(log->count < 4096);
	log->stables[log->count++] = stable;
}

static long sweep(struct state *state, uint64_t ttl_ms, size_t max_users, struct removed_log *log)
{
	char errstr[512];
	struct state_lifecycle lifecycle = {.user_ttl_ms = ttl_ms, .max_users = max_users};
	long removed = state_lifecycle_sweep(state, &lifecycle, INT64_MAX, note_removed, log,
					     errstr, sizeof errstr);
	if (removed < 0)
		fail_msg("state_lifecycle_sweep: %s", errstr);
	return removed;
}

static bool user_has_history(struct state *state, const char *user)
{
	char errstr[512];
	uint32_t slot;
	uint64_t hash;
	if (state_user(state, user, &slot, &hash, errstr, sizeof errstr) != 0)
		fail_msg("state_user(%s): %s", user, errstr);
	return model_user_has_history(state_model(state, 0), slot);
}

static int count_list(uint32_t stable, const void *record, size_t len, void *ctx)
{
	(void)stable;
	(void)record;
	(void)len;
	(*(size_t *)ctx)++;
	return 0;
}

static size_t stored_lists(struct state *state)
{
	char errstr[512];
	size_t count = 0;
	if (state_lists_foreach(state, count_list, &count, errstr, sizeof errstr) != 0)
		fail_msg("state_lists_foreach: %s", errstr);
	return count;
}

/* ---- the id map and the cache ------------------------------------------------------- */

static void test_idmap_remove_keeps_lookups_exact(void **unused)
{
	(void)unused;
	struct idmap *map = idmap_new();
	char name[32];
	enum { N = 5000 };
	assert_non_null(map);
	for (uint32_t i = 0; i < N; i++) {
		snprintf(name, sizeof name, "id-%u", i);
		assert_int_equal(idmap_put(map, name, strlen(name), i), 0);
	}
	/* remove every third id, in a scattered order */
	size_t removed = 0;
	for (uint32_t k = 0; k < N; k++) {
		uint32_t i = (k * 7919u) % N;
		if (i % 3 == 0) {
			idmap_remove(map, i);
			removed++;
		}
	}
	idmap_remove(map, 0);      /* already gone: nothing happens */
	idmap_remove(map, N + 10); /* never held */
	assert_int_equal(idmap_count(map), N - removed);
	for (uint32_t i = 0; i < N; i++) {
		snprintf(name, sizeof name, "id-%u", i);
		uint32_t found = idmap_find(map, name, strlen(name));
		if (i % 3 == 0) {
			assert_int_equal(found, IDMAP_NONE);
			assert_null(idmap_id(map, i));
		} else {
			assert_int_equal(found, i);
			assert_string_equal(idmap_id(map, i), name);
		}
	}
	/* a freed index takes another id */
	assert_int_equal(idmap_put(map, "newcomer", 8, 3), 0);
	assert_int_equal(idmap_find(map, "newcomer", 8), 3);
	assert_string_equal(idmap_id(map, 3), "newcomer");
	idmap_free(map);
}

static void test_forgotten_slot_is_reused_and_pending_rows_dropped(void **unused)
{
	(void)unused;
	char errstr[512];
	struct model_config config;
	model_config_default(&config);
	config.dim = 8;
	struct model *m = model_new(&config, errstr, sizeof errstr);
	assert_non_null(m);
	/* unbounded: a forgotten slot is handed out before a new one is made */
	struct usercache *cache = usercache_new(&m, 1, 0);
	uint32_t slot, again;
	bool placed;
	for (uint32_t u = 0; u < 10; u++)
		assert_int_equal(usercache_place(cache, u, &slot, &placed, errstr, sizeof errstr),
				 0);
	uint32_t freed = usercache_slot_of(cache, 4);
	usercache_forget(cache, 4);
	assert_int_equal(usercache_slot_of(cache, 4), USERCACHE_NONE);
	assert_int_equal(usercache_place(cache, 100, &again, &placed, errstr, sizeof errstr), 0);
	assert_true(placed);
	assert_int_equal(again, freed);
	assert_int_equal(usercache_slot_count(cache), 10);
	usercache_free(cache);

	/* bounded at 1: evicting a changed user sets its row aside; forgetting drops it */
	cache = usercache_new(&m, 1, 1);
	assert_int_equal(usercache_place(cache, 0, &slot, &placed, errstr, sizeof errstr), 0);
	struct model_event event = {.user = slot,
				    .item = 0,
				    .user_hash = 1,
				    .item_hash = 2,
				    .type = EVENT_PURCHASE,
				    .ts_ms = T0};
	assert_int_equal(model_learn(m, &event, errstr, sizeof errstr), 0);
	assert_int_equal(usercache_place(cache, 1, &slot, &placed, errstr, sizeof errstr), 0);
	assert_true(usercache_has_pending(cache, 0));
	usercache_forget(cache, 0);
	assert_false(usercache_has_pending(cache, 0));
	const void *row;
	size_t len;
	assert_int_equal(usercache_pending_row(cache, 0, 0, &row, &len), 0);
	usercache_free(cache);
	model_free(m);
}

/* ---- the state ---------------------------------------------------------------------- */

static void test_ttl_expires_idle_users_everywhere(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], name[32];
	unsigned char row[ROW_BYTES], before[4][ROW_BYTES];
	size_t before_len[4];
	struct removed_log log = {.count = 0};
	statetest_new_dir(dir);
	struct state *state = open_state(dir, 0);
	/* user-i last acts at T0 + i minutes; the newest event is T0 + 10 min */
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof name, "user-%d", i);
		statetest_learn_at(state, name, "item-a", T0);
		statetest_learn_at(state, name, "item-b", T0 + i * 60000);
		assert_int_equal(state_put_list(state, state_find_user(state, name), "list", 4), 0);
	}
	statetest_learn_at(state, "user-9", "item-c", T0 + 10 * 60000);
	statetest_commit(state);
	assert_int_equal(state_user_count(state), 10);
	assert_int_equal(stored_lists(state), 10);
	long keys_before = statetest_stored_keys(state);
	assert_int_equal(state_user_last_seen(state, state_find_user(state, "user-3")),
			 T0 + 3 * 60000);

	/* a TTL of 6.5 minutes: users 0..3 (idle 7..10 min) expire */
	assert_int_equal(sweep(state, 390000, 0, &log), 4);
	assert_int_equal(log.count, 4);
	assert_int_equal(state_user_count(state), 6);
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof name, "user-%d", i);
		assert_int_equal(state_find_user(state, name), UINT32_MAX);
	}
	for (int i = 6; i < 10; i++) {
		snprintf(name, sizeof name, "user-%d", i);
		before_len[i - 6] = statetest_user_row(state, name, before[i - 6], ROW_BYTES);
	}
	/* a second sweep at the same clock finds nothing more */
	assert_int_equal(sweep(state, 390000, 0, &log), 0);
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.expired_users, 4);
	assert_int_equal(counts.evicted_users, 0);
	assert_int_equal(counts.admitted_users, 10);
	assert_int_equal(counts.live_users, 6);
	assert_int_equal(counts.now_ms, T0 + 10 * 60000);
	statetest_commit(state);
	/* four users' u, U, T, row and list keys: 5 each */
	assert_int_equal(statetest_stored_keys(state), keys_before - 4 * 5);
	state_close(state);

	/* reopened: the expired are gone for good, the live come back bit for bit */
	state = open_state(dir, 0);
	assert_int_equal(state_user_count(state), 6);
	assert_int_equal(stored_lists(state), 6);
	for (int i = 6; i < 10; i++) {
		snprintf(name, sizeof name, "user-%d", i);
		size_t len = statetest_user_row(state, name, row, ROW_BYTES);
		assert_int_equal(len, before_len[i - 6]);
		assert_memory_equal(row, before[i - 6], len);
	}
	/* the last-seen times survived: the same sweep removes the same users */
	assert_int_equal(state_user_last_seen(state, state_find_user(state, "user-6")),
			 T0 + 6 * 60000);
	/* an expired user met again starts fresh: no history, a new row */
	assert_false(user_has_history(state, "user-1"));
	assert_int_equal(state_user_count(state), 7);
	state_close(state);
}

static void test_bound_evicts_the_least_recently_active(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], name[32];
	struct removed_log log = {.count = 0};
	statetest_new_dir(dir);
	struct state *state = open_state(dir, 0);
	/* activity order is not id order: user-i is last seen at T0 + (i*7 % 20) s */
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof name, "user-%d", i);
		statetest_learn_at(state, name, "item-a", T0 + (i * 7 % 20) * 1000);
	}
	assert_int_equal(sweep(state, 0, 5, &log), 15);
	assert_int_equal(state_user_count(state), 5);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof name, "user-%d", i);
		bool kept = (i * 7 % 20) >= 15;
		assert_int_equal(state_find_user(state, name) != UINT32_MAX, kept);
	}
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.evicted_users, 15);
	assert_int_equal(counts.expired_users, 0);
	statetest_commit(state);
	state_close(state);
	state = open_state(dir, 0);
	assert_int_equal(state_user_count(state), 5);
	assert_int_equal(sweep(state, 0, 5, &log), 0);
	state_close(state);
}

/* A removed user met again before the commit that deletes it: the new
 * user's keys come after the deletion, so the new one is what is stored. */
static void test_removed_user_back_before_the_commit_is_stored_fresh(void **unused)
{
	(void)unused;
	char dir[PATH_MAX];
	unsigned char row[ROW_BYTES], fresh[ROW_BYTES];
	struct removed_log log = {.count = 0};
	statetest_new_dir(dir);
	struct state *state = open_state(dir, 0);
	statetest_learn_at(state, "old", "item-a", T0);
	statetest_learn_at(state, "old", "item-b", T0 + 1);
	statetest_learn_at(state, "other", "item-a", T0 + 3600000);
	statetest_commit(state);
	assert_int_equal(sweep(state, 60000, 0, &log), 1);
	assert_int_equal(state_find_user(state, "old"), UINT32_MAX);
	/* back at once: fresh (its stored row is stale, not restored) */
	assert_false(user_has_history(state, "old"));
	statetest_learn_at(state, "old", "item-c", T0 + 3600001);
	size_t len = statetest_user_row(state, "old", fresh, ROW_BYTES);
	uint32_t recent[16];
	uint32_t slot;
	uint64_t hash;
	char errstr[256];
	assert_int_equal(state_user(state, "old", &slot, &hash, errstr, sizeof errstr), 0);
	assert_int_equal(model_user_recent(state_model(state, 0), slot, recent), 1);
	statetest_commit(state);
	state_close(state);
	state = open_state(dir, 0);
	assert_int_equal(state_user_count(state), 2);
	assert_int_equal(statetest_user_row(state, "old", row, ROW_BYTES), len);
	assert_memory_equal(row, fresh, len);
	state_close(state);
}

/* Churn: every round brings 50 new users; a bound of 100 and a TTL keep
 * the live users, the model's slots, the stable indices and the keys on
 * disk flat, whatever the number of ids ever seen. */
static void test_churn_stays_flat(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], name[32];
	struct removed_log log;
	statetest_new_dir(dir);
	struct state *state = open_state(dir, 0);
	long keys_at_round_10 = 0;
	uint32_t highest_stable = 0;
	for (int round = 0; round < 60; round++) {
		for (int u = 0; u < 50; u++) {
			snprintf(name, sizeof name, "churn-%d-%d", round, u);
			int64_t ts = T0 + round * 1000 + u;
			statetest_learn_at(state, name, "item-a", ts);
			char item[32];
			snprintf(item, sizeof item, "item-%d", u % 7);
			statetest_learn_at(state, name, item, ts);
			uint32_t stable = state_find_user(state, name);
			if (stable > highest_stable)
				highest_stable = stable;
		}
		log.count = 0;
		sweep(state, 10000, 100, &log);
		assert_true(state_user_count(state) <= 100);
		statetest_commit(state);
		if (round == 10)
			keys_at_round_10 = statetest_stored_keys(state);
	}
	/* 3000 users met; 100 live plus 50 a round in flight through two commits */
	assert_true(highest_stable < 300);
	assert_true(model_user_count(state_model(state, 0)) < 300);
	assert_int_equal(statetest_stored_keys(state), keys_at_round_10);
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.admitted_users, 3000);
	assert_int_equal(counts.expired_users + counts.evicted_users, 2900);
	state_close(state);
	/* the bounded state reopens with exactly the live users */
	state = open_state(dir, 0);
	assert_int_equal(state_user_count(state), 100);
	state_close(state);
}

/* ---- admission ---------------------------------------------------------------------- */

static void test_sketch_never_undercounts_and_fades(void **unused)
{
	(void)unused;
	struct sketch *sketch = sketch_new();
	assert_non_null(sketch);
	/* 5,000 ids, id k seen k % 7 times: every estimate at least the truth,
	 * and at this load (well under the width) nearly always exact */
	size_t exact = 0;
	for (uint64_t k = 0; k < 5000; k++)
		for (uint64_t n = 0; n < k % 7; n++)
			sketch_add(sketch, k * 0x9e3779b97f4a7c15u + 1);
	for (uint64_t k = 0; k < 5000; k++) {
		unsigned estimate = sketch_estimate(sketch, k * 0x9e3779b97f4a7c15u + 1);
		assert_true(estimate >= k % 7);
		exact += estimate == k % 7;
	}
	assert_true(exact >= 4990);
	/* saturates at 255 */
	for (int n = 0; n < 300; n++)
		sketch_add(sketch, 42);
	assert_int_equal(sketch_estimate(sketch, 42), 255);
	/* a round trip through its serialisation is bit-exact */
	size_t bytes = sketch_export_bytes();
	unsigned char *buf = malloc(bytes), *again = malloc(bytes);
	assert_non_null(buf);
	assert_non_null(again);
	sketch_export(sketch, buf);
	struct sketch *copy = sketch_new();
	assert_non_null(copy);
	assert_int_equal(sketch_import(copy, buf, bytes - 1), -1);
	assert_int_equal(sketch_import(copy, buf, bytes), 0);
	sketch_export(copy, again);
	assert_memory_equal(buf, again, bytes);
	/* after SKETCH_AGING_ADDS more additions every count has halved at least once */
	for (uint64_t n = 0; n < SKETCH_AGING_ADDS; n++)
		sketch_add(copy, 1000000 + n);
	assert_true(sketch_estimate(copy, 42) <= 128);
	free(buf);
	free(again);
	sketch_free(copy);
	sketch_free(sketch);
}

/* A search is one of the user's events: with admit_after it is a sighting
 * and makes no user (before, a single search from an unknown id made one,
 * whatever admit_after said). */
static void test_a_search_does_not_skip_admission(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512];
	float query[8] = {1.0f};
	uint32_t stable = 0, applied = 1;
	statetest_new_dir(dir);
	struct state *state = open_state_admitting(dir, 0, 3);
	assert_int_equal(state_search_for(state, "searcher", query, T0, 1, &stable, &applied,
					  errstr, sizeof errstr),
			 0);
	assert_int_equal(stable, UINT32_MAX);
	assert_int_equal(applied, 0);
	assert_int_equal(state_find_user(state, "searcher"), UINT32_MAX);
	assert_int_equal(state_user_count(state), 0);
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.unadmitted_events, 1);
	assert_int_equal(counts.admitted_users, 0);
	/* it counts towards admission: two events more and the user is made */
	statetest_learn_at(state, "searcher", "item-x", T0 + 1);
	assert_int_equal(state_find_user(state, "searcher"), UINT32_MAX);
	statetest_learn_at(state, "searcher", "item-x", T0 + 2);
	assert_int_not_equal(state_find_user(state, "searcher"), UINT32_MAX);
	state_close(state);
}

/* A search is one of the user's events: it moves the user's last-seen time,
 * so the TTL does not expire a user who only searches. No item has a content
 * vector yet: the search changes no ranking (applied stays 0), and still
 * counts as the user's activity. */
static void test_a_search_moves_the_users_last_seen_time(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512];
	float query[8] = {1.0f};
	uint32_t stable = UINT32_MAX, applied = 1;
	struct removed_log log = {0};
	struct model_config config;
	model_config_default(&config);
	config.dim = 8;
	config.content_dim = 8;
	statetest_new_dir(dir);
	struct state *state =
	    state_open(&(struct state_config){.dir = dir, .variants = &config, .variant_count = 1},
		       errstr, sizeof errstr);
	if (state == NULL)
		fail_msg("state_open: %s", errstr);
	statetest_learn_at(state, "searcher", "item-a", T0);
	statetest_learn_at(state, "browser", "item-a", T0);
	assert_int_equal(state_search_for(state, "searcher", query, T0 + 10 * 60000, 1, &stable,
					  &applied, errstr, sizeof errstr),
			 0);
	assert_int_equal(stable, state_user_stable(state, state_find_user(state, "searcher")));
	assert_int_equal(applied, 0);
	assert_int_equal(state_user_last_seen(state, state_find_user(state, "searcher")),
			 T0 + 10 * 60000);
	/* a TTL of 5 minutes at T0 + 10 min: the browser expires, the searcher stays */
	assert_int_equal(sweep(state, 300000, 0, &log), 1);
	assert_int_not_equal(state_find_user(state, "searcher"), UINT32_MAX);
	assert_int_equal(state_find_user(state, "browser"), UINT32_MAX);
	state_close(state);
}

static void test_admission_after_n_sightings(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512];
	statetest_new_dir(dir);
	struct state *state = open_state_admitting(dir, 0, 3);
	struct model *m = state_model(state, 0);
	uint32_t stable = 0;
	/* two sightings: counted for the item, no user, no row */
	for (int n = 0; n < 2; n++) {
		assert_int_equal(state_learn(state, "newcomer", "item-x", EVENT_PURCHASE, T0 + n,
					     &stable, errstr, sizeof errstr),
				 0);
		assert_int_equal(stable, UINT32_MAX);
	}
	assert_int_equal(state_find_user(state, "newcomer"), UINT32_MAX);
	assert_int_equal(state_user_count(state), 0);
	assert_int_equal(model_item_count_of(m, state_find_item(state, "item-x")), 2);
	assert_int_equal(model_user_count(m), 0);
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.unadmitted_events, 2);
	assert_int_equal(counts.admitted_users, 0);
	/* the third: admitted, and it learns from this event on */
	assert_int_equal(state_learn(state, "newcomer", "item-y", EVENT_PURCHASE, T0 + 2, &stable,
				     errstr, sizeof errstr),
			 0);
	assert_int_not_equal(stable, UINT32_MAX);
	assert_int_equal(state_user_count(state), 1);
	uint32_t slot, recent[16];
	uint64_t hash;
	assert_int_equal(state_user(state, "newcomer", &slot, &hash, errstr, sizeof errstr), 0);
	assert_int_equal(model_user_recent(m, slot, recent), 1);
	/* once admitted, every event learns */
	assert_int_equal(state_learn(state, "newcomer", "item-z", EVENT_PURCHASE, T0 + 3, &stable,
				     errstr, sizeof errstr),
			 0);
	assert_int_not_equal(stable, UINT32_MAX);
	/* the counts persist with the commit: two sightings before a restart, one after */
	statetest_learn_at(state, "returning", "item-x", T0 + 4);
	statetest_learn_at(state, "returning", "item-x", T0 + 5);
	statetest_commit(state);
	state_close(state);
	state = open_state_admitting(dir, 0, 3);
	assert_int_equal(state_find_user(state, "returning"), UINT32_MAX);
	assert_int_equal(state_learn(state, "returning", "item-x", EVENT_PURCHASE, T0 + 6, &stable,
				     errstr, sizeof errstr),
			 0);
	assert_int_not_equal(stable, UINT32_MAX);
	/* an admitted user stays admitted across the restart */
	assert_int_equal(state_learn(state, "newcomer", "item-x", EVENT_PURCHASE, T0 + 7, &stable,
				     errstr, sizeof errstr),
			 0);
	assert_int_not_equal(stable, UINT32_MAX);
	assert_int_equal(state_user_count(state), 2);
	state_close(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idmap_remove_keeps_lookups_exact),
	    cmocka_unit_test(test_forgotten_slot_is_reused_and_pending_rows_dropped),
	    cmocka_unit_test(test_ttl_expires_idle_users_everywhere),
	    cmocka_unit_test(test_bound_evicts_the_least_recently_active),
	    cmocka_unit_test(test_removed_user_back_before_the_commit_is_stored_fresh),
	    cmocka_unit_test(test_churn_stays_flat),
	    cmocka_unit_test(test_sketch_never_undercounts_and_fades),
	    cmocka_unit_test(test_admission_after_n_sightings),
	    cmocka_unit_test(test_a_search_does_not_skip_admission),
	    cmocka_unit_test(test_a_search_moves_the_users_last_seen_time),
	};
	return cmocka_run_group_tests(tests, statetest_setup, statetest_teardown);
}
