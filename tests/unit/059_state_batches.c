/*
 * The state's commit batches: their memory is first touched by the writer
 * thread, not by the thread that commits (the event loop). After a batch
 * larger than any before, the next batches are filled without faulting
 * their pages in on the committing thread; the stored values are what was
 * put either way.
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
#include <sys/resource.h>

#include "state.h"
#include "statetest.h"

#define AUX_BYTES ((size_t)24 << 20)

/* Minor page faults this thread has taken so far. */
static long thread_faults(void)
{
	struct rusage usage;
	assert_int_equal(getrusage(RUSAGE_THREAD, &usage), 0);
	return usage.ru_minflt;
}

/* Puts AUX_BYTES of `fill` as an aux value and commits it (the batch
 * handed to the writer): @returns the faults the commit took here. */
static long commit_value(struct state *state, unsigned char *value, unsigned char fill)
{
	char errstr[512];
	memset(value, fill, AUX_BYTES);
	if (state_put_aux(state, "big", value, AUX_BYTES, errstr, sizeof errstr) != 0)
		fail_msg("state_put_aux: %s", errstr);
	long before = thread_faults();
	if (state_commit_async(state, errstr, sizeof errstr) != 0)
		fail_msg("state_commit_async: %s", errstr);
	long faults = thread_faults() - before;
	state_wait_writer(state);
	return faults;
}

static void check_stored(struct state *state, unsigned char fill)
{
	char errstr[512];
	void *data = NULL;
	size_t len = 0;
	assert_int_equal(state_get_aux(state, "big", &data, &len, errstr, sizeof errstr), 1);
	assert_int_equal(len, AUX_BYTES);
	const unsigned char *bytes = data;
	for (size_t i = 0; i < len; i += 4093)
		assert_int_equal(bytes[i], fill);
	free(data);
}

/* The first large batch faults its pages in on the committing thread; the
 * three that follow (every batch of the rotation) were prefaulted by the
 * writer and take a small part of that. */
static void later_batches_do_not_fault_on_the_committing_thread(void **unused)
{
	(void)unused;
	char dir[PATH_MAX];
	statetest_new_dir(dir);
	struct state *state = statetest_open(dir, (struct state_config){0});
	unsigned char *value = malloc(AUX_BYTES);
	assert_non_null(value);
	long first = commit_value(state, value, 1);
	check_stored(state, 1);
	print_message("first batch: %ld faults on the committing thread\n", first);
	/* 24 MiB is 6144 pages of 4 KiB: most of them fault in the first time */
	assert_true(first > 2000);
	for (unsigned char fill = 2; fill <= 4; fill++) {
		long later = commit_value(state, value, fill);
		check_stored(state, fill);
		print_message("batch %d: %ld faults\n", fill, later);
		assert_true(later < first / 4);
	}
	free(value);
	state_close(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(later_batches_do_not_fault_on_the_committing_thread),
	};
	return cmocka_run_group_tests(tests, statetest_setup, statetest_teardown);
}
