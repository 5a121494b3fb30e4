/*
 * The user cache (issue 11): a pinned slot keeps its user through any
 * number of lookups at every cache size, a changed user evicted between
 * commits comes back bit-exact from the pending buffer and, after a commit,
 * from the store (with no commit as a side effect of the eviction), a
 * bounded run learns exactly what an unbounded one does, and a byte bound
 * becomes a slot bound that holds.
 *
 * No broker: the cache alone over models, and the state over RocksDB in a
 * temporary directory.
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
#include "usercache.h"

#define MAX_CACHE 8
#define ROW_BYTES (1 << 16)

/* ---- helpers ------------------------------------------------------------------------ */

static struct model *new_model(void)
{
	struct model_config config;
	char errstr[512];
	model_config_default(&config);
	config.dim = 8;
	struct model *m = model_new(&config, errstr, sizeof errstr);
	if (m == NULL)
		fail_msg("model_new: %s", errstr);
	return m;
}

/* Learns a purchase of item by whoever holds slot in m. */
static void learn_in_slot(struct model *m, uint32_t slot, uint32_t stable, uint32_t item)
{
	char errstr[512];
	struct model_event event = {.user = slot,
				    .item = item,
				    .user_hash = 1000003u * stable + 1,
				    .item_hash = 7919u * item + 3,
				    .type = EVENT_PURCHASE,
				    .ts_ms = 1700000000000 + item};
	if (model_learn(m, &event, errstr, sizeof errstr) != 0)
		fail_msg("model_learn: %s", errstr);
}

static struct state *open_state(const char *dir, size_t users, size_t bytes)
{
	return statetest_open(dir, (struct state_config){.user_cache_users = users,
							 .user_cache_bytes = bytes});
}

static void learn(struct state *state, const char *user, const char *item)
{
	statetest_learn_at(state, user, item, 1700000000000);
}

static int stored_offset(struct state *state, int64_t *offset)
{
	char errstr[512];
	int rc = state_offset(state, "events", 0, offset, errstr, sizeof errstr);
	if (rc < 0)
		fail_msg("state_offset: %s", errstr);
	return rc;
}

/* ---- tests -------------------------------------------------------------------------- */

/* At every size 1..MAX_CACHE, pinned users (all the cache can hold, or all
 * but one) keep their slots and rows through hundreds of other lookups;
 * with every slot pinned, one more user is refused, not placed over a pin. */
static void test_pins_survive_any_number_of_lookups(void **unused)
{
	(void)unused;
	char errstr[512];
	for (size_t size = 1; size <= MAX_CACHE; size++) {
		for (size_t pins = size > 1 ? size - 1 : 1; pins <= size; pins++) {
			struct model *m = new_model();
			struct usercache *cache = usercache_new(&m, 1, size);
			assert_non_null(cache);
			assert_int_equal(usercache_pin_capacity(cache), size);
			uint32_t slots[MAX_CACHE];
			float vectors[MAX_CACHE][8];
			for (uint32_t u = 0; u < pins; u++) {
				bool placed;
				assert_int_equal(usercache_place(cache, u, &slots[u], &placed,
								 errstr, sizeof errstr),
						 0);
				assert_true(placed);
				usercache_pin(cache, slots[u]);
				learn_in_slot(m, slots[u], u, u);
				memcpy(vectors[u], model_user_vector(m, slots[u]),
				       sizeof vectors[u]);
			}
			for (uint32_t other = 100; other < 400; other++) {
				uint32_t slot;
				bool placed;
				int rc = usercache_place(cache, other, &slot, &placed, errstr,
							 sizeof errstr);
				if (pins == size) {
					assert_int_equal(rc, -1);
					assert_non_null(strstr(errstr, "pinned"));
					continue;
				}
				assert_int_equal(rc, 0);
				for (uint32_t u = 0; u < pins; u++)
					assert_int_not_equal(slot, slots[u]);
				learn_in_slot(m, slot, other, other % 50);
			}
			for (uint32_t u = 0; u < pins; u++) {
				assert_int_equal(usercache_slot_of(cache, u), slots[u]);
				assert_int_equal(usercache_user_of(cache, slots[u]), u);
				assert_true(usercache_pinned(cache, slots[u]));
				assert_memory_equal(model_user_vector(m, slots[u]), vectors[u],
						    sizeof vectors[u]);
			}
			/* unpinned, they are evictable again */
			usercache_unpin_all(cache);
			for (uint32_t other = 1000; other < 1000 + 3 * size; other++) {
				uint32_t slot;
				bool placed;
				assert_int_equal(usercache_place(cache, other, &slot, &placed,
								 errstr, sizeof errstr),
						 0);
			}
			for (uint32_t u = 0; u < pins; u++)
				assert_int_equal(usercache_slot_of(cache, u), USERCACHE_NONE);
			usercache_free(cache);
			model_free(m);
		}
	}
}

/* A user whose restore failed is dropped: its slot is free for the next
 * user, at every cache size. */
static void test_dropped_slot_is_reused(void **unused)
{
	(void)unused;
	char errstr[512];
	for (size_t size = 1; size <= 3; size++) {
		struct model *m = new_model();
		struct usercache *cache = usercache_new(&m, 1, size);
		uint32_t slot, other;
		bool placed;
		for (uint32_t u = 0; u < size; u++)
			assert_int_equal(
			    usercache_place(cache, u, &slot, &placed, errstr, sizeof errstr), 0);
		usercache_drop(cache, 0);
		assert_int_equal(usercache_slot_of(cache, 0), USERCACHE_NONE);
		assert_int_equal(usercache_place(cache, 77, &other, &placed, errstr, sizeof errstr),
				 0);
		assert_true(placed);
		assert_int_equal(usercache_user_of(cache, other), 77);
		for (uint32_t u = 1; u < size; u++)
			assert_int_not_equal(usercache_slot_of(cache, u), USERCACHE_NONE);
		usercache_free(cache);
		model_free(m);
	}
}

/* The same through the state's API, as refresh() uses it: a cache of 2,
 * a batch of 2 pinned users, and lookups of 50 others in between. */
static void test_state_pins_hold_across_lookups(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512], name[32];
	statetest_new_dir(dir);
	struct state *state = open_state(dir, 2, 0);
	assert_int_equal(state_user_pin_capacity(state), 2);
	uint32_t stable[2], slot[2];
	unsigned char before[2][ROW_BYTES], after[ROW_BYTES];
	size_t len[2];
	for (int u = 0; u < 2; u++) {
		snprintf(name, sizeof name, "pinned-%d", u);
		learn(state, name, u ? "item-1" : "item-0");
		len[u] = statetest_user_row(state, name, before[u], ROW_BYTES);
		uint64_t hash;
		assert_int_equal(state_user(state, name, &slot[u], &hash, errstr, sizeof errstr),
				 0);
		stable[u] = state_user_stable(state, slot[u]);
	}
	for (int u = 0; u < 2; u++)
		assert_int_equal(state_user_pin(state, stable[u], &slot[u], errstr, sizeof errstr),
				 0);
	for (int other = 0; other < 50; other++) {
		uint32_t s;
		uint64_t hash;
		snprintf(name, sizeof name, "other-%d", other);
		/* the cache is full of pins: a third user is refused, never placed over one */
		assert_int_equal(state_user(state, name, &s, &hash, errstr, sizeof errstr), -1);
	}
	for (int u = 0; u < 2; u++) {
		assert_int_equal(state_user_stable(state, slot[u]), stable[u]);
		assert_int_equal(
		    model_export_user(state_model(state, 0), slot[u], after, ROW_BYTES), len[u]);
		assert_memory_equal(after, before[u], len[u]);
	}
	state_user_unpin_all(state);
	learn(state, "other-0", "item-2");
	state_close(state);
}

/* A changed user evicted before any commit comes back bit-exact from the
 * pending buffer, the eviction commits nothing (the marked offset is not
 * stored), and after a commit and another eviction it comes back
 * bit-exact from the store, and after a reopen too. */
static void test_dirty_eviction_round_trips_bit_exact(void **unused)
{
	(void)unused;
	char dir[PATH_MAX];
	static unsigned char row[ROW_BYTES], again[ROW_BYTES];
	int64_t offset;
	statetest_new_dir(dir);
	struct state *state = open_state(dir, 1, 0);
	statetest_commit(state);
	learn(state, "alice", "item-0");
	learn(state, "alice", "item-1");
	state_mark_offset(state, "events", 0, 41);
	size_t len = statetest_user_row(state, "alice", row, ROW_BYTES);

	learn(state, "bob", "item-2"); /* the only slot: alice is evicted, dirty */
	assert_int_equal(stored_offset(state, &offset), 0);
	assert_int_equal(statetest_user_row(state, "alice", again, ROW_BYTES), len); /* from the pending buffer */
	assert_memory_equal(again, row, len);
	assert_int_equal(stored_offset(state, &offset), 0); /* bob's eviction committed nothing */

	learn(state, "bob", "item-3"); /* alice (clean, pending) evicted again */
	statetest_commit(state);
	assert_int_equal(stored_offset(state, &offset), 1);
	assert_int_equal(offset, 41);
	learn(state, "carol", "item-4");
	assert_int_equal(statetest_user_row(state, "alice", again, ROW_BYTES), len); /* from the store */
	assert_memory_equal(again, row, len);
	statetest_commit(state);
	state_close(state);

	state = open_state(dir, 1, 0);
	assert_int_equal(statetest_user_row(state, "alice", again, ROW_BYTES), len);
	assert_memory_equal(again, row, len);
	state_close(state);
}

/* The same events learned with caches of 1..MAX_CACHE users, committing
 * now and then, give the digest of an unbounded cache: bit-identical. */
static void test_bounded_cache_learns_the_same(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512], user[32], item[32];
	uint64_t expected = 0;
	for (size_t size = 0; size <= MAX_CACHE; size++) {
		statetest_new_dir(dir);
		struct state *state = open_state(dir, size, 0);
		for (int e = 0; e < 600; e++) {
			snprintf(user, sizeof user, "user-%d", (e * 7) % 23);
			snprintf(item, sizeof item, "item-%d", (e * 13) % 31);
			learn(state, user, item);
			if (e % 97 == 96)
				statetest_commit(state);
		}
		statetest_commit(state);
		uint64_t digest;
		if (state_digest(state, &digest, errstr, sizeof errstr) != 0)
			fail_msg("state_digest: %s", errstr);
		if (size == 0)
			expected = digest;
		else if (digest != expected)
			fail_msg("cache of %zu users: digest %016llx, unbounded %016llx", size,
				 (unsigned long long)digest, (unsigned long long)expected);
		state_close(state);
	}
}

/*
 * Commits handed to the writer without waiting (the daemon's way), every
 * few events, while users are evicted and met again: a user is read back
 * after the writer only when its newest rows are in the commit being
 * written, and the bounded cache still learns bit-identically. Before, every
 * read-back waited for the whole commit (0.2-0.4 s of the event loop after
 * each commit at 100k items); now most do not (counted).
 */
static void test_restores_wait_only_for_their_own_rows(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512], user[32], item[32];
	uint64_t expected = 0;
	for (size_t size = 0; size <= 4; size += 2) {
		statetest_new_dir(dir);
		struct state *state = open_state(dir, size, 0);
		uint64_t rng = 7;
		for (int e = 0; e < 2000; e++) {
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			/* users met again soon and late, so some come back while their
			 * rows are being written and most after */
			snprintf(user, sizeof user, "user-%d", (int)((rng >> 33) % 11));
			snprintf(item, sizeof item, "item-%d", (e * 13) % 31);
			learn(state, user, item);
			if (e % 5 == 4 && state_commit_async(state, errstr, sizeof errstr) != 0)
				fail_msg("state_commit_async: %s", errstr);
		}
		statetest_commit(state);
		uint64_t digest, restored, after_writer;
		if (state_digest(state, &digest, errstr, sizeof errstr) != 0)
			fail_msg("state_digest: %s", errstr);
		state_user_restores(state, &restored, &after_writer);
		if (size == 0) {
			expected = digest;
			assert_int_equal(restored, 0);
		} else {
			if (digest != expected)
				fail_msg("cache of %zu users: digest %016llx, unbounded %016llx", size,
					 (unsigned long long)digest, (unsigned long long)expected);
			print_message("cache of %zu: %llu restores, %llu after the writer\n", size,
				      (unsigned long long)restored, (unsigned long long)after_writer);
			assert_true(after_writer > 0);
			assert_true(after_writer < restored / 2);
		}
		state_close(state);
	}
	/* reopened, every user is on disk and none in a commit being written */
	struct state *state = open_state(dir, 4, 0);
	for (int u = 0; u < 11; u++) {
		snprintf(user, sizeof user, "user-%d", u);
		learn(state, user, "item-0");
	}
	uint64_t restored, after_writer;
	state_user_restores(state, &restored, &after_writer);
	assert_int_equal(restored, 11);
	assert_int_equal(after_writer, 0);
	state_close(state);
}

/* A byte bound becomes the slots it pays for, and no more users are resident. */
static void test_byte_bound_is_honoured(void **unused)
{
	(void)unused;
	char errstr[512], dir[PATH_MAX], name[32];
	struct model *m = new_model();
	size_t per_user = usercache_user_bytes(&m, 1);
	assert_true(per_user > model_user_memory_bytes(m));
	for (size_t users = 1; users <= 5; users++) {
		size_t bytes = users * per_user + per_user / 2;
		size_t slots = usercache_slots_for_bytes(&m, 1, bytes);
		assert_int_equal(slots, users);
		struct usercache *cache = usercache_new(&m, 1, slots);
		for (uint32_t u = 0; u < 40; u++) {
			uint32_t slot;
			bool placed;
			assert_int_equal(
			    usercache_place(cache, u, &slot, &placed, errstr, sizeof errstr), 0);
			learn_in_slot(m, slot, u, u % 9);
			assert_true(usercache_slot_count(cache) * per_user <= bytes);
		}
		usercache_free(cache);
	}
	/* through the state: user_cache_bytes of 3 users' worth */
	statetest_new_dir(dir);
	struct state *state = open_state(dir, 0, 3 * per_user);
	for (int u = 0; u < 40; u++) {
		snprintf(name, sizeof name, "user-%d", u);
		learn(state, name, "item-0");
	}
	assert_int_equal(state_user_pin_capacity(state), 3);
	size_t resident = 0;
	for (uint32_t slot = 0; slot < 40; slot++)
		resident += state_user_stable(state, slot) != UINT32_MAX;
	assert_true(resident <= 3);
	state_close(state);
	model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pins_survive_any_number_of_lookups),
	    cmocka_unit_test(test_dropped_slot_is_reused),
	    cmocka_unit_test(test_state_pins_hold_across_lookups),
	    cmocka_unit_test(test_dirty_eviction_round_trips_bit_exact),
	    cmocka_unit_test(test_bounded_cache_learns_the_same),
	    cmocka_unit_test(test_byte_bound_is_honoured),
	    cmocka_unit_test(test_restores_wait_only_for_their_own_rows),
	};
	return cmocka_run_group_tests(tests, statetest_setup, statetest_teardown);
}
