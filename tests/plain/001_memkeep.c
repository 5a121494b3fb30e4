/*
 * memkeep_process() (common/memkeep.h): a large block freed and allocated
 * again is not faulted in again. Built without a sanitizer: its allocator
 * takes no mallopt() and would hide glibc's behaviour.
 *
 * The first test shows what the second one guards against: in a child that
 * did not call memkeep_process(), glibc gives a freed 16 MiB block back to
 * the kernel and the next one faults every page in again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memkeep.h"

#define BLOCK (16u << 20)
#define PAGES (BLOCK / 4096u)

static long minor_faults(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_minflt;
}

/* Writes every page of block (through a volatile pointer: a store to memory
 * freed afterwards is otherwise dropped by the compiler). */
static void touch(char *block, size_t bytes, char value)
{
	volatile char *page = block;
	for (size_t at = 0; at < bytes; at += 4096)
		page[at] = value;
}

/* Minor faults while a second block of BLOCK bytes is written, after a
 * first one was written and freed. */
static long faults_of_second_block(void)
{
	char *first = malloc(BLOCK);
	assert_non_null(first);
	touch(first, BLOCK, 1);
	free(first);
	long before = minor_faults();
	char *second = malloc(BLOCK);
	assert_non_null(second);
	touch(second, BLOCK, 2);
	long faults = minor_faults() - before;
	assert_int_equal(second[BLOCK - 4096], 2);
	free(second);
	return faults;
}

static void test_without_it_a_freed_block_is_faulted_in_again(void **state)
{
	(void)state;
	int pipe_fd[2];
	assert_int_equal(pipe(pipe_fd), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		long faults = faults_of_second_block();
		_exit(write(pipe_fd[1], &faults, sizeof faults) == sizeof faults ? 0 : 1);
	}
	long faults = 0;
	assert_int_equal(read(pipe_fd[0], &faults, sizeof faults), (ssize_t)sizeof faults);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(pipe_fd[0]);
	close(pipe_fd[1]);
	/* every page again (a transparent huge page counts as one fault) */
	assert_true(faults >= (long)PAGES / 512);
	print_message("without memkeep: %ld faults for %u pages\n", faults, PAGES);
}

static void test_a_freed_block_is_reused_without_faults(void **state)
{
	(void)state;
	assert_true(memkeep_process());
	/* the first block's memory is the process's from here on */
	long faults = faults_of_second_block();
	print_message("with memkeep: %ld faults for %u pages\n", faults, PAGES);
	assert_true(faults < 16);
}

static void test_a_block_beyond_the_largest_threshold_still_works(void **state)
{
	(void)state;
	assert_true(memkeep_process()); /* twice: same settings */
	size_t big = 64u << 20;         /* mapped whatever the setting */
	char *block = malloc(big);
	assert_non_null(block);
	touch(block, big, 3);
	assert_int_equal(block[big - 4096], 3);
	free(block);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_without_it_a_freed_block_is_faulted_in_again),
	    cmocka_unit_test(test_a_freed_block_is_reused_without_faults),
	    cmocka_unit_test(test_a_block_beyond_the_largest_threshold_still_works),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
