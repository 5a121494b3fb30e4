/*
 * The state's commit batches (daemon/state.c, prepare_batches()): a state
 * reopened after commits of some size prepares its batches for that size
 * before it is used, so that the first commits of the new run fault no
 * fresh pages in on the committing thread (the event loop in streamrecd:
 * 170-270 ms stalls at the first commits after each start, 5 December
 * 2026). The size stored follows the recent commits: after a burst of
 * large batches, smaller ones bring it down again, and a one-off tool's
 * commits are weighed as the daemon's would be.
 *
 * Page faults are counted for the calling thread alone (RUSAGE_THREAD), so
 * the state writer's RocksDB work does not count.
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
#include <sys/resource.h>

#include "state.h"
#include "statetest.h"

/* Users a large commit changes: rows of dim 64, about 8 MB of batch */
#define USERS 20000
#define DIM   64

/* The "3 x N MiB prepared" of the last log line that has one (0: none). */
static double prepared_mib;

static void log_line(const char *line, void *opaque)
{
	(void)opaque;
	double mib;
	if (sscanf(line, "commit batches: 3 x %lf MiB prepared", &mib) == 1)
		prepared_mib = mib;
}

static long thread_faults(void)
{
	struct rusage u;
	getrusage(RUSAGE_THREAD, &u);
	return u.ru_minflt;
}

static struct state *open_state_as(const char *dir, bool prepare)
{
	char errstr[512];
	static struct model_config model;
	model_config_default(&model);
	model.dim = DIM;
	struct state_config sc = {.dir = dir,
				  .variants = &model,
				  .variant_count = 1,
				  .log = log_line,
				  .prepare_batches = prepare};
	prepared_mib = 0;
	struct state *state = state_open(&sc, errstr, sizeof errstr);
	if (state == NULL)
		fail_msg("state_open: %s", errstr);
	return state;
}

/* Opens the state as streamrecd does: the batches prepared. */
static struct state *open_state(const char *dir)
{
	return open_state_as(dir, true);
}

/* One event for each of `users` users (from `first` on); each changes the user's row. */
static void learn_users(struct state *state, unsigned first, unsigned users, int64_t ts)
{
	char errstr[512], user[32], item[32];
	for (unsigned u = first; u < first + users; u++) {
		snprintf(user, sizeof user, "user-%u", u);
		snprintf(item, sizeof item, "item-%u", u % 97);
		if (state_learn(state, user, item, EVENT_VIEW, ts + u, NULL, errstr,
				sizeof errstr) != 0)
			fail_msg("state_learn: %s", errstr);
	}
}

/* Faults of the calling thread while the state commits (the batch is built on it). */
static long commit_faults(struct state *state)
{
	char errstr[512];
	long before = thread_faults();
	if (state_commit_async(state, errstr, sizeof errstr) != 0)
		fail_msg("state_commit_async: %s", errstr);
	long faults = thread_faults() - before;
	if (state_flush(state, errstr, sizeof errstr) != 0)
		fail_msg("state_flush: %s", errstr);
	return faults;
}

/*
 * The first large commit of a new state faults its batch in (the control:
 * what the preparation removes); reopened, the same commit faults in
 * almost nothing, and the log says what was prepared.
 */
static void a_reopened_state_commits_into_prepared_batches(void **unused)
{
	(void)unused;
	char dir[PATH_MAX];
	statetest_new_dir(dir);
	struct state *state = open_state(dir);
	assert_true(prepared_mib == 0); /* nothing stored: nothing prepared */
	learn_users(state, 0, USERS, 1700000000000);
	long first = commit_faults(state);
	state_close(state);
	/* the batch held the users' rows: some 8 MB, 2,000 pages */
	assert_true(first > 1000);

	state = open_state(dir);
	assert_true(prepared_mib > 5.0);
	learn_users(state, 0, USERS, 1700000100000);
	long reopened = commit_faults(state);
	state_close(state);
	print_message("first commit: %ld page faults; reopened, %.1f MiB prepared: %ld\n", first,
		      prepared_mib, reopened);
	assert_true(reopened < first / 4);
}

/* A new state in dir that commits one large batch (some 8 MB), closed. */
static void one_large_commit(const char *dir)
{
	struct state *state = open_state(dir);
	learn_users(state, 0, USERS, 1700000000000);
	commit_faults(state);
	state_close(state);
}

/*
 * A burst of large batches, then small ones: the size prepared at the next
 * start follows the small ones within some ten commits.
 */
static void the_prepared_size_follows_recent_commits(void **unused)
{
	(void)unused;
	char dir[PATH_MAX];
	statetest_new_dir(dir);
	one_large_commit(dir);
	struct state *state = open_state(dir);
	double after_burst = prepared_mib;
	assert_true(after_burst > 5.0);
	for (unsigned c = 0; c < 16; c++) {
		learn_users(state, c * 10, 10, 1700000200000 + c * 1000);
		commit_faults(state);
	}
	state_close(state);

	state = open_state(dir);
	print_message("prepared after the burst %.2f MiB, after 16 small commits %.3f MiB\n",
		      after_burst, prepared_mib);
	/* 0.75^16 of the burst: under a hundredth of it, and the small
	 * batches' own size (well under 0.1 MiB) sets the floor */
	assert_true(prepared_mib < after_burst / 50);
	state_close(state);
}

/*
 * A one-off tool (streamrec replay, which does not prepare) committing a
 * little between two runs of the daemon weighs in as one more small
 * commit: the daemon's next start still prepares three quarters of what
 * its own commits needed. It replaced the stored size with its own before.
 */
static void a_small_writer_between_runs_keeps_the_size(void **unused)
{
	(void)unused;
	char dir[PATH_MAX];
	statetest_new_dir(dir);
	one_large_commit(dir);
	struct state *state = open_state(dir);
	double daemon_mib = prepared_mib;
	state_close(state);

	state = open_state_as(dir, false);
	assert_true(prepared_mib == 0); /* the tool prepares nothing */
	learn_users(state, 0, 10, 1700000300000);
	commit_faults(state);
	state_close(state);

	state = open_state(dir);
	print_message("prepared before the tool's commit %.2f MiB, after it %.2f MiB\n", daemon_mib,
		      prepared_mib);
	assert_true(daemon_mib > 5.0);
	assert_true(prepared_mib > daemon_mib * 0.7 && prepared_mib < daemon_mib * 0.8);
	state_close(state);
}

/* One id that touches more distinct items than its row can exclude (a
 * shared "guest" id, a crawler): the exclusions stop at their bound and its
 * row still fits a store value. Unbounded, the row outgrew 1 MiB at some
 * 262k items and every commit failed (the daemon stopped, and again at each
 * restart). */
static void a_user_touching_every_item_still_commits(void **unused)
{
	(void)unused;
	char dir[PATH_MAX], errstr[512], item[32];
	static struct model_config model;
	model_config_default(&model);
	model.dim = 8;
	model.learn_embeddings = false; /* counts, recent items and exclusions only */
	model.exclusion = MODEL_EXCLUDE_INTERACTED;
	statetest_new_dir(dir);
	struct state *state =
	    state_open(&(struct state_config){.dir = dir, .variants = &model, .variant_count = 1},
		       errstr, sizeof errstr);
	if (state == NULL)
		fail_msg("state_open: %s", errstr);
	for (int i = 0; i < 270000; i++) {
		snprintf(item, sizeof item, "i%d", i);
		statetest_learn_at(state, "guest", item, 1700000000000LL + i);
	}
	statetest_commit(state);
	uint32_t user = state_find_user(state, "guest");
	assert_int_not_equal(user, UINT32_MAX);
	assert_true(model_user_excludes(state_model(state, 0), user, state_find_item(state, "i5")));
	state_close(state);
	/* the row read back holds the bound's worth */
	state =
	    state_open(&(struct state_config){.dir = dir, .variants = &model, .variant_count = 1},
		       errstr, sizeof errstr);
	assert_non_null(state);
	assert_int_equal(state_load_all_users(state, errstr, sizeof errstr), 0);
	uint32_t slot;
	uint64_t hash;
	assert_int_equal(state_user(state, "guest", &slot, &hash, errstr, sizeof errstr), 0);
	assert_true(model_user_excludes(state_model(state, 0), slot, state_find_item(state, "i5")));
	assert_false(
	    model_user_excludes(state_model(state, 0), slot, state_find_item(state, "i269999")));
	state_close(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_reopened_state_commits_into_prepared_batches),
	    cmocka_unit_test(the_prepared_size_follows_recent_commits),
	    cmocka_unit_test(a_small_writer_between_runs_keeps_the_size),
	    cmocka_unit_test(a_user_touching_every_item_still_commits),
	};
	return cmocka_run_group_tests(tests, statetest_setup, statetest_teardown);
}
