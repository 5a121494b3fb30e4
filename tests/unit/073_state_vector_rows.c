/*
 * An item's vectors on disk (daemon/state.c, model.h "Item rows"): since 5
 * December 2026 two rows in the item family, q at the item's row key and y
 * at that key and 'y', so that a negative's learning step rewrites its q
 * alone. A state written before holds one vector row with both (version
 * 101). The upgrade as a user meets it: a state of the old layout, opened
 * by this build, learns on, commits and is reopened; its model must be the
 * one a state that never changed layout has, bit for bit (state_digest()).
 *
 * The old layout is made from the new one on disk: each item's q row and y
 * row joined into the row of before (header, q with its bias column, y,
 * then bias, correction, q_accum, y_accum, bias_accum), the y row deleted.
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

#include "state.h"
#include "statekeys.h"
#include "statetest.h"
#include "store.h"

#define USERS  60
#define ITEMS  400
#define DIM    8 /* statetest_open()'s */
#define HEADER 8 /* a row's version and dimension */

/* Events `from` .. `to` - 1 of a fixed stream, into the state. */
static void learn(struct state *state, unsigned from, unsigned to)
{
	char user[32], item[32];
	for (unsigned e = from; e < to; e++) {
		uint64_t x = (e + 1) * 0x9E3779B97F4A7C15ull;
		snprintf(user, sizeof user, "user-%u", (unsigned)((x >> 20) % USERS));
		snprintf(item, sizeof item, "item-%u", (unsigned)((x >> 40) % ITEMS));
		statetest_learn_at(state, user, item, 1700000000000LL + (int64_t)e * 1000);
	}
}

static uint64_t digest(struct state *state)
{
	char errstr[512];
	uint64_t d;
	if (state_digest(state, &d, errstr, sizeof errstr) != 0)
		fail_msg("state_digest: %s", errstr);
	return d;
}

struct rewrite {
	struct store *store;
	struct store_batch *batch;
	unsigned joined, y_rows;
};

/* Each q row joined with its y row into the vector row of before. */
static int join_rows(const void *key, size_t key_len, const void *value, size_t value_len,
		     void *ctx)
{
	struct rewrite *r = ctx;
	char errstr[512];
	if (key_len == STATE_Y_ROW_KEY_BYTES) {
		r->y_rows++;
		return 0;
	}
	assert_int_equal(key_len, STATE_ROW_KEY_BYTES);
	unsigned char y_key[STATE_Y_ROW_KEY_BYTES];
	memcpy(y_key, key, STATE_ROW_KEY_BYTES);
	y_key[STATE_ROW_KEY_BYTES] = STATE_Y_ROW_SUFFIX;
	void *y = NULL;
	size_t y_len = 0;
	int found =
	    store_get(r->store, STORE_ITEM, y_key, sizeof y_key, &y, &y_len, errstr, sizeof errstr);
	assert_int_equal(found, 1);
	const unsigned char *q = value;
	const size_t q_bytes = (DIM + 1) * 4, y_bytes = DIM * 4;
	assert_int_equal(value_len, HEADER + q_bytes + 4 * 4); /* bias, correction, 2 accums */
	assert_int_equal(y_len, HEADER + y_bytes + 4);         /* y_accum */
	unsigned char row[512];
	uint32_t version = 101;
	size_t at = HEADER;
	memcpy(row, &version, 4);
	memcpy(row + 4, q + 4, 4); /* the dimension */
	memcpy(row + at, q + HEADER, q_bytes), at += q_bytes;
	memcpy(row + at, (unsigned char *)y + HEADER, y_bytes), at += y_bytes;
	memcpy(row + at, q + HEADER + q_bytes, 3 * 4), at += 3 * 4; /* bias, correction, q_accum */
	memcpy(row + at, (unsigned char *)y + HEADER + y_bytes, 4), at += 4; /* y_accum */
	memcpy(row + at, q + HEADER + q_bytes + 3 * 4, 4), at += 4;          /* bias_accum */
	free(y);
	store_batch_put(r->batch, STORE_ITEM, key, key_len, row, at);
	store_batch_delete(r->batch, STORE_ITEM, y_key, sizeof y_key);
	r->joined++;
	return 0;
}

/* Rewrites the closed state in dir to the vector rows of before the split. */
static void to_old_layout(const char *dir)
{
	char errstr[1024];
	struct store_config config = {.path = dir};
	struct rewrite r = {store_open(&config, errstr, sizeof errstr), store_batch_new(), 0, 0};
	if (r.store == NULL)
		fail_msg("store_open(%s): %s", dir, errstr);
	assert_non_null(r.batch);
	if (store_foreach(r.store, STORE_ITEM, join_rows, &r, errstr, sizeof errstr) != 0)
		fail_msg("store_foreach: %s", errstr);
	if (store_commit(r.store, r.batch, errstr, sizeof errstr) != 0)
		fail_msg("store_commit: %s", errstr);
	store_batch_free(r.batch);
	store_close(r.store);
	assert_true(r.joined >= ITEMS / 2);
	assert_int_equal(r.y_rows, r.joined); /* every q row had its y row */
}

/* The y rows on disk. */
static int count_y_row(const void *key, size_t key_len, const void *value, size_t value_len,
		       void *ctx)
{
	(void)key, (void)value, (void)value_len;
	*(unsigned *)ctx += key_len == STATE_Y_ROW_KEY_BYTES;
	return 0;
}

static unsigned y_rows_of(const char *dir)
{
	char errstr[1024];
	struct store_config config = {.path = dir};
	struct store *store = store_open(&config, errstr, sizeof errstr);
	if (store == NULL)
		fail_msg("store_open(%s): %s", dir, errstr);
	unsigned count = 0;
	if (store_foreach(store, STORE_ITEM, count_y_row, &count, errstr, sizeof errstr) != 0)
		fail_msg("store_foreach: %s", errstr);
	store_close(store);
	return count;
}

/*
 * The upgrade: a state of the old layout reads as it was written, learns
 * on (a commit after every few events, so that most commits move items'
 * q alone: negatives) and, reopened, holds the model of a state that never
 * changed layout.
 */
static void a_state_of_joint_vector_rows_upgrades_bit_for_bit(void **unused)
{
	(void)unused;
	char old_dir[PATH_MAX], new_dir[PATH_MAX];
	statetest_new_dir(old_dir);
	statetest_new_dir(new_dir);
	struct state *upgraded = statetest_open(old_dir, (struct state_config){0});
	struct state *reference = statetest_open(new_dir, (struct state_config){0});
	learn(upgraded, 0, 2000);
	learn(reference, 0, 2000);
	statetest_commit(upgraded);
	statetest_commit(reference);
	uint64_t before = digest(upgraded);
	assert_true(before == digest(reference));
	state_close(upgraded);
	to_old_layout(old_dir);
	assert_int_equal(y_rows_of(old_dir), 0);

	upgraded = statetest_open(old_dir, (struct state_config){0});
	assert_true(digest(upgraded) == before);
	/* one commit of a few events: their negatives' q moves, not their y */
	learn(upgraded, 2000, 2003);
	learn(reference, 2000, 2003);
	statetest_commit(upgraded);
	statetest_commit(reference);
	state_close(upgraded);
	unsigned y_rows = y_rows_of(old_dir);
	upgraded = statetest_open(old_dir, (struct state_config){0});
	print_message("after the first commit: %u y rows; digest %016llx, reference %016llx\n",
		      y_rows, (unsigned long long)digest(upgraded),
		      (unsigned long long)digest(reference));
	assert_true(y_rows > 0 && y_rows < ITEMS / 2);
	assert_true(digest(upgraded) == digest(reference));
	for (unsigned at = 2003; at < 2600; at += 3) {
		learn(upgraded, at, at + 3);
		learn(reference, at, at + 3);
		statetest_commit(upgraded);
		statetest_commit(reference);
	}
	assert_true(digest(upgraded) == digest(reference));
	state_close(upgraded);
	/* the items written since carry their y rows */
	assert_true(y_rows_of(old_dir) >= ITEMS / 2);

	upgraded = statetest_open(old_dir, (struct state_config){0});
	print_message("upgraded state: digest %016llx, reference %016llx\n",
		      (unsigned long long)digest(upgraded), (unsigned long long)digest(reference));
	assert_true(digest(upgraded) == digest(reference));
	learn(upgraded, 2600, 3000);
	learn(reference, 2600, 3000);
	assert_true(digest(upgraded) == digest(reference));
	state_close(upgraded);
	state_close(reference);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_state_of_joint_vector_rows_upgrades_bit_for_bit),
	};
	return cmocka_run_group_tests(tests, statetest_setup, statetest_teardown);
}
