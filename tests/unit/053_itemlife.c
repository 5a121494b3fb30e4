/*
 * The embedding life cycle of items (README, "Embedding life cycle"): a
 * sweep expires items idle longer than lifecycle.item_ttl in event time and
 * evicts the least recently active above lifecycle.max_items; a removed
 * item is gone everywhere (its rows and ids on disk, other items'
 * co-visitation lists, users' recent rings and exclusions, popularity and
 * trending, the listable test), and when its index is handed to a new item
 * nothing of the old one comes with it, neither from users in memory nor
 * from users whose rows were on disk at the sweep (checked when restored,
 * also after a restart); indices are reused, so on an endless stream of
 * churning items memory and keys stay flat; a removal not committed is
 * not durable (a crash keeps the items); an item is admitted at its
 * item_admit_after-th sighting.
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

#include "model.h"
#include "state.h"
#include "statetest.h"

#define ROW_BYTES (1 << 16)
#define T0        1700000000000
#define MINUTE    60000

static struct state *open_with(const char *dir, size_t cache_users, unsigned item_admit_after)
{
	return statetest_open(dir, (struct state_config){.user_cache_users = cache_users,
							 .item_admit_after = item_admit_after});
}

static struct state *open_state(const char *dir)
{
	return open_with(dir, 0, 0);
}

struct removed_log {
	uint32_t items[4096];
	size_t count;
};

static void note_item_removed(uint32_t item, void *opaque)
{
	struct removed_log *log = opaque;
	assert_true(log->count < 4096);
	log->items[log->count++] = item;
}

static long sweep_items(struct state *state, uint64_t ttl_ms, size_t max_items,
			struct removed_log *log)
{
	char errstr[512];
	struct state_lifecycle lifecycle = {.item_ttl_ms = ttl_ms,
					    .max_items = max_items,
					    .on_item_removed = note_item_removed,
					    .opaque = log};
	long removed =
	    state_lifecycle_sweep(state, &lifecycle, INT64_MAX, NULL, NULL, errstr, sizeof errstr);
	if (removed < 0)
		fail_msg("state_lifecycle_sweep: %s", errstr);
	return removed;
}

static bool contains(const uint32_t *items, size_t count, uint32_t item)
{
	for (size_t k = 0; k < count; k++)
		if (items[k] == item)
			return true;
	return false;
}

static uint32_t slot_of(struct state *state, const char *user)
{
	char errstr[512];
	uint32_t slot;
	uint64_t hash;
	if (state_user(state, user, &slot, &hash, errstr, sizeof errstr) != 0)
		fail_msg("state_user(%s): %s", user, errstr);
	return slot;
}

/* Whether a user's recent ring or exclusion set names item. */
static bool user_refers_to(struct state *state, const char *user, uint32_t item)
{
	struct model *m = state_model(state, 0);
	uint32_t slot = slot_of(state, user), recent[64];
	const uint32_t *excluded;
	size_t n = model_user_recent(m, slot, recent);
	size_t e = model_user_exclusions(m, slot, &excluded);
	return contains(recent, n, item) || contains(excluded, e, item);
}

static bool neighbour_of(struct state *state, uint32_t of, uint32_t item)
{
	const uint32_t *items;
	size_t n = model_item_neighbours(state_model(state, 0), of, &items);
	return contains(items, n, item);
}

static bool trending(struct state *state, uint32_t item)
{
	uint32_t out[64];
	size_t n = model_trending(state_model(state, 0), UINT32_MAX, 64, out);
	return contains(out, n, item);
}

/* ---- TTL and bound ------------------------------------------------------------------ */

static void test_ttl_expires_idle_items_everywhere(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], name[32], errstr[512];
	unsigned char keep_row[ROW_BYTES], row[ROW_BYTES];
	struct removed_log log = {.count = 0};
	statetest_new_dir(dir);
	struct state *state = open_state(dir);
	struct model *m = state_model(state, 0);
	/* five users buy "old" at T0 and "keep" ten minutes later */
	for (int u = 0; u < 5; u++) {
		snprintf(name, sizeof name, "user-%d", u);
		statetest_learn_at(state, name, "old", T0);
		statetest_learn_at(state, name, "keep", T0 + 10 * MINUTE);
	}
	statetest_learn_at(state, "late", "other", T0 + 10 * MINUTE);
	statetest_commit(state);
	uint32_t old = state_find_item(state, "old"), keep = state_find_item(state, "keep");
	assert_int_not_equal(old, UINT32_MAX);
	assert_true(neighbour_of(state, keep, old));
	assert_true(user_refers_to(state, "user-2", old));
	assert_true(trending(state, old));
	assert_int_equal(state_item_count(state), 3);

	/* a TTL of five minutes: "old" (idle ten) goes, everywhere */
	assert_int_equal(sweep_items(state, 5 * MINUTE, 0, &log), 1);
	assert_int_equal(log.count, 1);
	assert_int_equal(log.items[0], old);
	assert_int_equal(state_find_item(state, "old"), UINT32_MAX);
	assert_false(state_item_live(state, old));
	assert_true(state_item_live(state, keep));
	assert_int_equal(state_item_count(state), 2);
	assert_false(neighbour_of(state, keep, old));
	assert_int_equal(model_item_neighbours(m, old, &(const uint32_t *){NULL}), 0);
	for (int u = 0; u < 5; u++) {
		snprintf(name, sizeof name, "user-%d", u);
		assert_false(user_refers_to(state, name, old));
		assert_true(user_refers_to(state, name, keep));
	}
	assert_int_equal(model_item_count_of(m, old), 0);
	assert_false(trending(state, old));
	assert_true(trending(state, keep));
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.expired_items, 1);
	assert_int_equal(counts.evicted_items, 0);
	assert_int_equal(counts.admitted_items, 3);
	assert_int_equal(counts.live_items, 2);
	/* a second sweep at the same clock finds nothing more */
	assert_int_equal(sweep_items(state, 5 * MINUTE, 0, &log), 0);
	statetest_commit(state);
	size_t keep_len = model_export_item(m, keep, keep_row, ROW_BYTES);
	state_close(state);

	/* reopened: "old" is gone for good (ids and rows deleted), the live item is as it was */
	state = open_state(dir);
	m = state_model(state, 0);
	assert_int_equal(state_item_count(state), 2);
	assert_int_equal(state_find_item(state, "old"), UINT32_MAX);
	assert_false(state_item_live(state, old));
	assert_int_equal(state_find_item(state, "keep"), keep);
	assert_int_equal(model_export_item(m, keep, row, ROW_BYTES), keep_len);
	assert_memory_equal(row, keep_row, keep_len);
	assert_false(neighbour_of(state, keep, old));
	assert_false(user_refers_to(state, "user-0", old));
	(void)errstr;
	state_close(state);
}

static void test_bound_evicts_the_least_recently_active_items(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], name[32];
	struct removed_log log = {.count = 0};
	statetest_new_dir(dir);
	struct state *state = open_state(dir);
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof name, "item-%d", i);
		statetest_learn_at(state, "buyer", name, T0 + i * 1000);
	}
	/* a catalogue record is activity too: item-0 becomes the newest */
	char errstr[512];
	assert_int_equal(state_item_seen(state, state_find_item(state, "item-0"), T0 + 20000,
					 errstr, sizeof errstr),
			 0);
	statetest_commit(state);
	assert_int_equal(sweep_items(state, 0, 6, &log), 4);
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.evicted_items, 4);
	assert_int_equal(counts.expired_items, 0);
	assert_int_equal(state_item_count(state), 6);
	assert_int_not_equal(state_find_item(state, "item-0"), UINT32_MAX);
	for (int i = 1; i <= 4; i++) {
		snprintf(name, sizeof name, "item-%d", i);
		assert_int_equal(state_find_item(state, name), UINT32_MAX);
	}
	for (int i = 5; i < 10; i++) {
		snprintf(name, sizeof name, "item-%d", i);
		assert_int_not_equal(state_find_item(state, name), UINT32_MAX);
	}
	statetest_commit(state);
	state_close(state);
	state = open_state(dir);
	assert_int_equal(state_item_count(state), 6);
	/* the last-seen times survived: the same bound removes no more */
	assert_int_equal(sweep_items(state, 0, 6, &log), 0);
	state_close(state);
}

/* ---- reuse --------------------------------------------------------------------------- */

static void test_reused_index_carries_nothing_of_the_removed_item(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], name[32];
	struct removed_log log = {.count = 0};
	statetest_new_dir(dir);
	/* a cache of two users: most rows are on disk at the sweep */
	struct state *state = open_with(dir, 2, 0);
	struct model *m = state_model(state, 0);
	for (int u = 0; u < 4; u++) {
		snprintf(name, sizeof name, "user-%d", u);
		statetest_learn_at(state, name, "gone", T0 + u);
		statetest_learn_at(state, name, "x", T0 + 10 + u);
	}
	statetest_learn_at(state, "user-4", "x", T0 + 10 * MINUTE);
	statetest_learn_at(state, "user-5", "y", T0 + 10 * MINUTE);
	statetest_commit(state);
	uint32_t gone = state_find_item(state, "gone"), x = state_find_item(state, "x");
	assert_true(neighbour_of(state, x, gone));
	assert_int_equal(model_item_count_of(m, gone), 4);

	assert_int_equal(sweep_items(state, 5 * MINUTE, 0, &log), 1);
	assert_int_equal(log.items[0], gone);
	/* the deletion is written, then the index is free */
	statetest_commit(state);
	statetest_commit(state);
	statetest_learn_at(state, "newcomer-user", "newcomer", T0 + 10 * MINUTE + 1);
	assert_int_equal(state_find_item(state, "newcomer"), gone);
	assert_int_equal(model_item_count_of(m, gone), 1);
	assert_false(neighbour_of(state, x, gone));
	assert_int_equal(model_item_neighbours(m, gone, &(const uint32_t *){NULL}), 0);
	/* a user restored from disk in this run: its reference went before use */
	assert_false(user_refers_to(state, "user-0", gone));
	assert_true(user_refers_to(state, "user-0", x));
	statetest_commit(state);
	state_close(state);

	/* after a restart too, for users never restored since the sweep */
	state = open_with(dir, 2, 0);
	m = state_model(state, 0);
	assert_int_equal(state_find_item(state, "newcomer"), gone);
	assert_int_equal(model_item_count_of(m, gone), 1);
	for (int u = 1; u < 4; u++) {
		snprintf(name, sizeof name, "user-%d", u);
		assert_false(user_refers_to(state, name, gone));
		assert_true(user_refers_to(state, name, x));
	}
	/* and a real reference to the new item is kept across a restart */
	statetest_learn_at(state, "user-1", "newcomer", T0 + 10 * MINUTE + 2);
	assert_true(user_refers_to(state, "user-1", gone));
	statetest_commit(state);
	state_close(state);
	state = open_with(dir, 2, 0);
	assert_true(user_refers_to(state, "user-1", gone));
	state_close(state);
}

static void test_item_churn_stays_flat(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], name[32], user[32];
	struct removed_log log;
	statetest_new_dir(dir);
	struct state *state = open_state(dir);
	long keys_at_round_10 = 0;
	uint32_t highest = 0;
	for (int round = 0; round < 60; round++) {
		for (int i = 0; i < 20; i++) {
			snprintf(name, sizeof name, "churn-%d-%d", round, i);
			snprintf(user, sizeof user, "user-%d", i % 5);
			statetest_learn_at(state, user, name, T0 + round * 1000 + i);
			uint32_t index = state_find_item(state, name);
			if (index > highest)
				highest = index;
		}
		log.count = 0;
		sweep_items(state, 10000, 50, &log);
		assert_true(state_item_count(state) <= 50);
		statetest_commit(state);
		if (round == 10)
			keys_at_round_10 = statetest_stored_keys(state);
	}
	/* 1200 items met; 50 live plus 20 a round in flight through two commits */
	assert_true(highest < 120);
	assert_true(model_item_count(state_model(state, 0)) < 120);
	assert_int_equal(statetest_stored_keys(state), keys_at_round_10);
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.admitted_items, 1200);
	assert_int_equal(counts.expired_items + counts.evicted_items, 1150);
	state_close(state);
	state = open_state(dir);
	assert_int_equal(state_item_count(state), 50);
	state_close(state);
}

/* ---- crash safety -------------------------------------------------------------------- */

static void test_uncommitted_removal_is_not_durable(void **unused)
{
	(void)unused;
	char dir[PATH_MAX];
	struct removed_log log = {.count = 0};
	statetest_new_dir(dir);
	struct state *state = open_state(dir);
	statetest_learn_at(state, "u", "a", T0);
	statetest_learn_at(state, "u", "b", T0 + 10 * MINUTE);
	statetest_commit(state);
	assert_int_equal(sweep_items(state, 5 * MINUTE, 0, &log), 1);
	state_close(state); /* a crash: the sweep's batch was never written */
	state = open_state(dir);
	assert_int_equal(state_item_count(state), 2);
	assert_int_not_equal(state_find_item(state, "a"), UINT32_MAX);
	/* the run after the restart removes the same item */
	log.count = 0;
	assert_int_equal(sweep_items(state, 5 * MINUTE, 0, &log), 1);
	statetest_commit(state);
	state_close(state);
	state = open_state(dir);
	assert_int_equal(state_item_count(state), 1);
	assert_int_equal(state_find_item(state, "a"), UINT32_MAX);
	state_close(state);
}

/* ---- admission ----------------------------------------------------------------------- */

static void test_item_admission_after_n_sightings(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512];
	uint32_t stable;
	statetest_new_dir(dir);
	struct state *state = open_with(dir, 0, 3);
	statetest_learn_at(state, "u", "known", T0); /* not admitted either */
	for (int n = 0; n < 2; n++) {
		assert_int_equal(state_learn(state, "u", "rare", EVENT_VIEW, T0 + n, &stable,
					     errstr, sizeof errstr),
				 0);
		assert_int_equal(stable, UINT32_MAX);
	}
	assert_int_equal(state_find_item(state, "rare"), UINT32_MAX);
	assert_int_equal(state_item_count(state), 0);
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.unadmitted_item_events, 3);
	assert_int_equal(counts.admitted_items, 0);
	/* the third sighting admits it, and that event learns */
	assert_int_equal(
	    state_learn(state, "u", "rare", EVENT_VIEW, T0 + 2, &stable, errstr, sizeof errstr), 0);
	assert_int_not_equal(stable, UINT32_MAX);
	uint32_t rare = state_find_item(state, "rare");
	assert_int_not_equal(rare, UINT32_MAX);
	assert_int_equal(model_item_count_of(state_model(state, 0), rare), 1);
	/* the sightings persist with the commit: two before a restart, one after */
	statetest_learn_at(state, "u", "known", T0 + 3);
	statetest_commit(state);
	state_close(state);
	state = open_with(dir, 0, 3);
	assert_int_equal(state_find_item(state, "known"), UINT32_MAX);
	statetest_learn_at(state, "u", "known", T0 + 4);
	assert_int_not_equal(state_find_item(state, "known"), UINT32_MAX);
	assert_int_not_equal(state_find_item(state, "rare"), UINT32_MAX);
	assert_int_equal(state_item_count(state), 2);
	state_close(state);
}

/* An event of a user not admitted yet (lifecycle.admit_after) is the
 * item's activity too: its last-seen time moves, and the TTL does not
 * expire an item whose events come from new visitors. Before, only
 * admitted users' events moved it. */
static void test_unadmitted_users_events_keep_their_items_alive(void **unused)
{
	(void)unused;
	char dir[PATH_MAX];
	struct removed_log log = {.count = 0};
	statetest_new_dir(dir);
	struct state *state = statetest_open(dir, (struct state_config){.admit_after = 2});
	statetest_learn_at(state, "u", "a", T0 - 1); /* u's first: not admitted */
	statetest_learn_at(state, "u", "a", T0);     /* admitted: a seen at T0 */
	statetest_learn_at(state, "u", "b", T0 + 20 * MINUTE);
	statetest_learn_at(state, "visitor", "a", T0 + 20 * MINUTE); /* not admitted */
	struct state_lifecycle_counts counts;
	state_lifecycle_counts(state, &counts);
	assert_int_equal(counts.unadmitted_events, 2);
	assert_int_equal(sweep_items(state, 10 * MINUTE, 0, &log), 0);
	assert_int_not_equal(state_find_item(state, "a"), UINT32_MAX);
	state_close(state);
}

/* ---- ids ------------------------------------------------------------------------------ */

/* An item id longer than the ids family's keys take is refused when it is
 * met, naming its length, and the commit holds every other id: before, it
 * was taken, and the commit copied it into a 257-byte key on the stack
 * (an item-updates record from another instance reached it so). */
static void test_an_item_id_too_long_is_refused(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512], id[STATE_ID_MAX + 2];
	uint32_t index;
	uint64_t hash;
	statetest_new_dir(dir);
	struct state *state = open_state(dir);
	memset(id, 'x', sizeof id - 1);
	id[sizeof id - 1] = '\0';
	assert_int_equal(state_item(state, id, &index, &hash, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "item id of 257 bytes"));
	assert_int_equal(state_item_everywhere(state, id, &index, errstr, sizeof errstr), -1);
	id[STATE_ID_MAX] = '\0'; /* 256 bytes: taken */
	assert_int_equal(state_item(state, id, &index, &hash, errstr, sizeof errstr), 0);
	statetest_learn_at(state, "u", "a", T0);
	statetest_commit(state);
	state_close(state);
	state = open_state(dir);
	assert_int_equal(state_find_item(state, id), index);
	assert_int_not_equal(state_find_item(state, "a"), UINT32_MAX);
	state_close(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ttl_expires_idle_items_everywhere),
	    cmocka_unit_test(test_bound_evicts_the_least_recently_active_items),
	    cmocka_unit_test(test_reused_index_carries_nothing_of_the_removed_item),
	    cmocka_unit_test(test_item_churn_stays_flat),
	    cmocka_unit_test(test_uncommitted_removal_is_not_durable),
	    cmocka_unit_test(test_item_admission_after_n_sightings),
	    cmocka_unit_test(test_an_item_id_too_long_is_refused),
	    cmocka_unit_test(test_unadmitted_users_events_keep_their_items_alive),
	};
	return cmocka_run_group_tests(tests, statetest_setup, statetest_teardown);
}
