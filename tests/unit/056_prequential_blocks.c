/*
 * Offline replay in blocks (prequential_config.sync_every, `streamrec eval
 * --sync-every N --threads 2`): a block's lists are ranked together against
 * the item side as of the block's start, each with its user side as of its
 * own test point, on the replay's thread or on a ranking thread beside
 * learning.
 *
 * What must hold: blocks of one event are the serial replay, figure for
 * figure (both engines); a ranking thread changes no figure; no list ever
 * sees its own test event or a later one (a stream where every test is on
 * an item nobody has touched before, lists long enough to hold every known
 * item: one such look would be a hit); and blocks of 256 events cost little
 * accuracy on a planted stream.
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
#include "model.h"
#include "prequential.h"
#include "synth.h"
#include "topk.h"

struct fixture {
	struct event_log *log;
	uint64_t *user_hash, *item_hash;
};

static int setup(void **state)
{
	static struct fixture f;
	struct synth_config sc = synth_config_default();
	char errstr[256];
	sc.users = 800;
	sc.items = 600;
	sc.clusters = 8;
	sc.events = 30000;
	struct synth *synth = synth_new(&sc, errstr, sizeof errstr);
	assert_non_null(synth);
	assert_int_equal(synth_generate(synth, &f.log, errstr, sizeof errstr), 0);
	synth_free(synth);
	assert_int_equal(eventlog_id_hashes(f.log, &f.user_hash, &f.item_hash), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	eventlog_free(f->log);
	free(f->user_hash);
	free(f->item_hash);
	return 0;
}

static struct prequential_stream fixture_stream(const struct fixture *f)
{
	return (struct prequential_stream){.count = f->log->count,
					   .user = f->log->user,
					   .item = f->log->item,
					   .type = f->log->type,
					   .ts_ms = f->log->ts_ms,
					   .user_hash = f->user_hash,
					   .item_hash = f->item_hash,
					   .item_total = f->log->item_count};
}

/* One replay of a fresh default model with the given engine, k and blocks. */
static struct prequential_result replay(const struct prequential_stream *stream,
					enum model_retrieval retrieval, size_t k,
					size_t sync_every, unsigned threads)
{
	struct model_config config;
	struct topk_config tc = {.max_batch = 1, .max_k = k};
	struct prequential_config pc = {
	    .k = k, .test_every = 1, .sync_every = sync_every, .threads = threads};
	struct prequential_result result;
	char errstr[256];

	model_config_default(&config);
	config.retrieval = retrieval;
	struct model *model = model_new(&config, errstr, sizeof errstr);
	struct topk *topk = topk_new(&tc, errstr, sizeof errstr);
	assert_non_null(model);
	assert_non_null(topk);
	memset(&result, 0, sizeof result);
	if (prequential_run(model, topk, stream, &pc, &result, errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	model_free(model);
	topk_free(topk);
	return result;
}

/* Every figure of the model's lists, bit for bit. */
static void assert_same_figures(const struct prequential_result *a,
				const struct prequential_result *b)
{
	assert_int_equal(a->model.tests, b->model.tests);
	assert_true(a->model.tests > 0);
	assert_memory_equal(&a->model_split, &b->model_split, sizeof a->model_split);
	assert_memory_equal(&a->popularity_split, &b->popularity_split,
			    sizeof a->popularity_split);
	assert_int_equal(a->skipped_excluded, b->skipped_excluded);
}

static void blocks_of_one_event_are_the_serial_replay(void **state)
{
	struct prequential_stream stream = fixture_stream(*state);
	enum model_retrieval engines[] = {MODEL_RETRIEVAL_EXACT, MODEL_RETRIEVAL_INDEX};

	for (size_t e = 0; e < 2; e++) {
		struct prequential_result serial = replay(&stream, engines[e], 20, 0, 1);
		struct prequential_result blocks = replay(&stream, engines[e], 20, 1, 1);
		printf("engine %zu: HR@20 %.4f serial, %.4f in blocks of 1\n", e,
		       serial.model.hit_rate, blocks.model.hit_rate);
		assert_same_figures(&serial, &blocks);
	}
}

static void ranking_threads_change_no_figure(void **state)
{
	struct prequential_stream stream = fixture_stream(*state);
	enum model_retrieval engines[] = {MODEL_RETRIEVAL_EXACT, MODEL_RETRIEVAL_INDEX};

	for (size_t e = 0; e < 2; e++) {
		struct prequential_result one = replay(&stream, engines[e], 20, 100, 1);
		struct prequential_result two = replay(&stream, engines[e], 20, 100, 2);
		struct prequential_result four = replay(&stream, engines[e], 20, 100, 4);
		assert_same_figures(&one, &two);
		assert_same_figures(&one, &four);
	}
}

static void blocks_cost_little_accuracy(void **state)
{
	struct prequential_stream stream = fixture_stream(*state);
	struct prequential_result serial = replay(&stream, MODEL_RETRIEVAL_INDEX, 20, 0, 1);
	struct prequential_result blocks = replay(&stream, MODEL_RETRIEVAL_INDEX, 20, 256, 2);

	printf("HR@20 %.4f serial, %.4f in blocks of 256; popularity %.4f\n",
	       serial.model.hit_rate, blocks.model.hit_rate, serial.popularity.hit_rate);
	assert_int_equal(serial.model.tests, blocks.model.tests);
	assert_true(blocks.model.hit_rate > 2.0 * serial.popularity.hit_rate);
	assert_true(fabs(blocks.model.hit_rate / serial.model.hit_rate - 1.0) < 0.05);
	/* popularity is ranked at the test point in either mode */
	assert_memory_equal(&serial.popularity_split, &blocks.popularity_split,
			    sizeof serial.popularity_split);
}

/*
 * Each event is some user's first touch of a new item; lists of 1000 hold
 * every item known to the lists. A list ranked against an item side that
 * had learned its test event (or any later one) would hold the event's item.
 */
static void no_list_sees_its_test_event_or_a_later_one(void **state)
{
	enum { EVENTS = 600, USERS = 7 };
	uint32_t *user = malloc(EVENTS * sizeof *user), *item = malloc(EVENTS * sizeof *item);
	uint8_t *type = malloc(EVENTS);
	int64_t *ts = malloc(EVENTS * sizeof *ts);
	uint64_t *user_hash = malloc(USERS * sizeof *user_hash);
	uint64_t *item_hash = malloc(EVENTS * sizeof *item_hash);
	(void)state;

	assert_non_null(user);
	assert_non_null(item);
	assert_non_null(type);
	assert_non_null(ts);
	assert_non_null(user_hash);
	assert_non_null(item_hash);
	for (uint32_t e = 0; e < EVENTS; e++) {
		user[e] = e % USERS;
		item[e] = e;
		type[e] = EVENT_CLICK;
		ts[e] = 1000 * (int64_t)e;
		item_hash[e] = 0x9E3779B97F4A7C15ULL * (e + 1);
	}
	for (uint32_t u = 0; u < USERS; u++)
		user_hash[u] = 0xC2B2AE3D27D4EB4FULL * (u + 1);
	struct prequential_stream stream = {.count = EVENTS,
					    .user = user,
					    .item = item,
					    .type = type,
					    .ts_ms = ts,
					    .user_hash = user_hash,
					    .item_hash = item_hash,
					    .item_total = EVENTS};
	struct {
		enum model_retrieval engine;
		size_t sync_every;
		unsigned threads;
	} runs[] = {{MODEL_RETRIEVAL_EXACT, 0, 1},  {MODEL_RETRIEVAL_EXACT, 64, 1},
		    {MODEL_RETRIEVAL_EXACT, 64, 2}, {MODEL_RETRIEVAL_INDEX, 64, 2},
		    {MODEL_RETRIEVAL_INDEX, 1, 1}};
	for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
		struct prequential_result result =
		    replay(&stream, runs[r].engine, 1000, runs[r].sync_every, runs[r].threads);
		printf("engine %d, blocks of %zu, %u thread(s): %llu tests, HR %.4f, coverage "
		       "%.4f\n",
		       (int)runs[r].engine, runs[r].sync_every, runs[r].threads,
		       (unsigned long long)result.model.tests, result.model.hit_rate,
		       result.model.coverage);
		assert_int_equal(result.model.tests, EVENTS);
		assert_true(result.model.hit_rate == 0.0);
		/* the lists did list the items known before: most of the catalogue */
		assert_true(result.model.coverage > 0.5);
	}
	free(user);
	free(item);
	free(type);
	free(ts);
	free(user_hash);
	free(item_hash);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(no_list_sees_its_test_event_or_a_later_one),
	    cmocka_unit_test(blocks_of_one_event_are_the_serial_replay),
	    cmocka_unit_test(ranking_threads_change_no_figure),
	    cmocka_unit_test(blocks_cost_little_accuracy),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
