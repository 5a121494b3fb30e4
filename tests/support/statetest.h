/*
 * Helpers shared by the C tests of the state (tests/unit/05x): a scratch
 * directory per test group, states of one small variant opened in it, and
 * the steps every such test takes (learn, commit, count what is on disk).
 * Each fails the running cmocka test with the state's own message.
 */
#ifndef STREAMREC_STATETEST_H
#define STREAMREC_STATETEST_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

/** cmocka group fixtures: make and remove the scratch directory. */
int statetest_setup(void **unused);
int statetest_teardown(void **unused);

/** A path under the scratch directory no state has used yet (PATH_MAX bytes). */
void statetest_new_dir(char *out);

/**
 * Opens a state in dir of one variant of model_config_default() with dim 8;
 * the other fields of `extra` (cache bounds, admission) are taken as given.
 */
struct state *statetest_open(const char *dir, struct state_config extra);

/** state_learn() of a purchase at ts_ms. */
void statetest_learn_at(struct state *state, const char *user, const char *item, int64_t ts_ms);

/** state_commit(). */
void statetest_commit(struct state *state);

/** The user's row as variant 0's model serialises it, into row; @returns its length. */
size_t statetest_user_row(struct state *state, const char *user, unsigned char *row,
			  size_t capacity);

/** Every key the state holds on disk (rows, ids, last-seen, lists, offsets). */
long statetest_stored_keys(struct state *state);

#endif
