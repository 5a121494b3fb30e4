/*
 * stream/consumer and stream/producer on one libev loop against a real broker:
 * produced messages (with headers and a tombstone) come back in order; a new
 * group resumes exactly after the offset the caller says it stored; a commit
 * is honoured by the next member of the group; on_revoke runs before
 * partitions leave, under the eager and the cooperative protocol; bad
 * properties are named; the lag timer reports consumer lag; a held message
 * (consumer_hold) lets on_skip look ahead, and after consumer_release comes
 * again, followed by the rest in order, each once; no fd outlives a test.
 *
 * Needs a broker: STREAMREC_TEST_BOOTSTRAP=host:port (tools/kafka-broker).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ev.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "kafkatest.h"
#include "producer.h"

#define MESSAGE_COUNT   200 /* then one tombstone */
#define RESUME_STORED   119
#define COMMIT_MESSAGES 30
#define COMMIT_AT       20
#define MAX_RECEIVED    512
#define MAX_PARTITIONS  4
/* generous: group joins and rebalances with ASan on a 2-core machine */
#define DEADLINE_MS 60000
#define CLOSE_MS    10000
#define QUIET_MS    1000

struct member;

struct fixture {
	const char *bootstrap;
	struct member *members[2]; /* closed by teardown if a test fails */
	struct ev_loop *loop;
	struct producer *producer;
	char topic[128];
	char other_topic[128]; /* member_start subscribes to it when set */
	bool want_caught_up;   /* member_start asks for on_caught_up */
	char group[128];
	char producer_error[512];
	int fds_at_start;
};

/* One consumer and what it saw. */
struct member {
	struct fixture *f;
	struct consumer *consumer;
	int64_t stored_offset; /* what offset_for answers; -1: "none" */
	size_t received;
	int32_t partitions[MAX_RECEIVED];
	int64_t offsets[MAX_RECEIVED];
	char values[MAX_RECEIVED][16]; /* "" for a tombstone */
	bool tombstone[MAX_RECEIVED];
	bool header_matches[MAX_RECEIVED];
	char dead_letter_headers[4][64];
	int revoked[MAX_PARTITIONS];
	int revoked_total;
	int lag_reports;
	int64_t last_lag;
	int fatal_errors;
	char last_error[512];
	/* consumer_hold(): the offsets to hold once each, which is held now, and
	 * what on_skip saw of it */
	int64_t hold_at[2];
	bool hold_done[2], holding;
	int64_t holding_offset;
	int skipped, skip_limit;
	int64_t skipped_first, skipped_last;
	bool skipped_in_order;
	/* on_caught_up: told, and how many were received then */
	int caught_up;
	size_t received_at_caught_up;
};

static int count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;
	int n = 0;
	assert_non_null(dir);
	while ((entry = readdir(dir)) != NULL)
		if (entry->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - 1; /* the directory's own fd */
}

static void copy_header(const struct consumer_message *m, const char *name, char *out,
			size_t out_size)
{
	const void *value;
	size_t len;
	out[0] = '\0';
	if (consumer_message_header(m, name, &value, &len) && value != NULL && len < out_size) {
		memcpy(out, value, len);
		out[len] = '\0';
	}
}

static void on_message(const struct consumer_message *m, void *opaque)
{
	struct member *mb = opaque;
	size_t i = mb->received;
	char seq[16], errstr[256];
	if (i >= MAX_RECEIVED)
		return;
	for (int k = 0; k < 2; k++) {
		if (m->offset != mb->hold_at[k] || mb->hold_done[k])
			continue;
		/* not taken: held, and delivered again after consumer_release() */
		if (consumer_hold(mb->consumer, m->topic, m->partition, m->offset, errstr,
				  sizeof errstr) != 0)
			fail_msg("%s", errstr);
		mb->hold_done[k] = mb->holding = true;
		mb->holding_offset = m->offset;
		mb->skipped = 0;
		mb->skipped_first = mb->skipped_last = -1;
		return;
	}
	mb->partitions[i] = m->partition;
	mb->offsets[i] = m->offset;
	mb->tombstone[i] = m->value == NULL;
	mb->values[i][0] = '\0';
	if (m->value != NULL && m->value_len < sizeof mb->values[i]) {
		memcpy(mb->values[i], m->value, m->value_len);
		mb->values[i][m->value_len] = '\0';
	}
	copy_header(m, "seq", seq, sizeof seq);
	mb->header_matches[i] = strcmp(seq, mb->values[i] + 1) == 0; /* "v<n>" carries seq n */
	copy_header(m, PRODUCER_HEADER_REASON, mb->dead_letter_headers[0], 64);
	copy_header(m, PRODUCER_HEADER_SOURCE_TOPIC, mb->dead_letter_headers[1], 64);
	copy_header(m, PRODUCER_HEADER_SOURCE_PARTITION, mb->dead_letter_headers[2], 64);
	copy_header(m, PRODUCER_HEADER_SOURCE_OFFSET, mb->dead_letter_headers[3], 64);
	mb->received++;
}

/* Look-ahead at a held partition: the messages after the held one, in order, until skip_limit. */
static bool on_skip(const struct consumer_message *m, void *opaque)
{
	struct member *mb = opaque;
	if (!mb->holding)
		return false;
	if (mb->skipped_first < 0)
		mb->skipped_first = m->offset;
	else if (m->offset != mb->skipped_last + 1)
		mb->skipped_in_order = false;
	mb->skipped_last = m->offset;
	return ++mb->skipped < mb->skip_limit;
}

static void on_caught_up(void *opaque)
{
	struct member *mb = opaque;
	mb->caught_up++;
	mb->received_at_caught_up = mb->received;
}

static int offset_for(const char *topic, int32_t partition, int64_t *stored, void *opaque)
{
	struct member *mb = opaque;
	(void)topic;
	(void)partition;
	if (mb->stored_offset < 0)
		return 0;
	*stored = mb->stored_offset;
	return 1;
}

static int on_revoke(const char *topic, int32_t partition, void *opaque)
{
	struct member *mb = opaque;
	(void)topic;
	if (partition >= 0 && partition < MAX_PARTITIONS)
		mb->revoked[partition]++;
	mb->revoked_total++;
	return 0;
}

static void on_error(const char *what, bool fatal, void *opaque)
{
	struct member *mb = opaque;
	snprintf(mb->last_error, sizeof mb->last_error, "%s", what);
	if (fatal)
		mb->fatal_errors++;
}

static void on_lag(const char *topic, int32_t partition, int64_t lag, int64_t committed_lag,
		   void *opaque)
{
	struct member *mb = opaque;
	(void)topic;
	(void)partition;
	(void)committed_lag;
	mb->lag_reports++;
	mb->last_lag = lag;
}

static void on_producer_error(const char *what, bool fatal, void *opaque)
{
	struct fixture *f = opaque;
	(void)fatal;
	snprintf(f->producer_error, sizeof f->producer_error, "%s", what);
}

/* Starts a member of group; extra properties as name, value pairs. */
static void member_start(struct member *mb, struct fixture *f, const char *group,
			 int64_t stored_offset, const struct consumer_property *properties,
			 size_t property_count, size_t max_messages_per_wakeup)
{
	const char *topics[] = {f->other_topic[0] != '\0' ? f->other_topic : f->topic};
	struct consumer_config config = {
	    .brokers = f->bootstrap,
	    .group_id = group,
	    .topics = topics,
	    .topic_count = 1,
	    .properties = properties,
	    .property_count = property_count,
	    .max_messages_per_wakeup = max_messages_per_wakeup,
	    .lag_interval_ms = 200,
	    .callbacks = {.on_message = on_message,
			  .offset_for = offset_for,
			  .on_revoke = on_revoke,
			  .on_error = on_error,
			  .on_lag = on_lag,
			  .on_skip = on_skip},
	    .opaque = mb,
	};
	char errstr[512];
	if (f->want_caught_up)
		config.callbacks.on_caught_up = on_caught_up;
	memset(mb, 0, sizeof *mb);
	mb->f = f;
	mb->stored_offset = stored_offset;
	mb->last_lag = -1;
	mb->hold_at[0] = mb->hold_at[1] = -1;
	mb->skipped_in_order = true;
	mb->consumer = consumer_new(&config, f->loop, errstr, sizeof errstr);
	if (mb->consumer == NULL)
		fail_msg("%s", errstr);
}

static void member_close(struct member *mb)
{
	if (mb->consumer == NULL)
		return;
	int rc = consumer_close(mb->consumer, CLOSE_MS);
	mb->consumer = NULL;
	if (rc != 0)
		fail_msg("consumer close: %s", mb->last_error);
	assert_int_equal(mb->fatal_errors, 0);
}

/* ---- running the loop until a condition holds ------------------------------------ */

typedef bool done_fn(void *arg);

struct run {
	ev_timer check;
	done_fn *done;
	void *arg;
	int64_t deadline_ms;
	bool met;
};

static void run_check(struct ev_loop *loop, ev_timer *timer, int revents)
{
	struct run *run = timer->data;
	(void)revents;
	if (run->done != NULL && run->done(run->arg)) {
		run->met = true;
		ev_break(loop, EVBREAK_ONE);
	} else if (kafkatest_clock_ms() >= run->deadline_ms) {
		ev_break(loop, EVBREAK_ONE);
	}
}

/* Runs the loop until done(arg) or timeout_ms; done NULL just runs for timeout_ms. */
static bool run_until(struct ev_loop *loop, done_fn *done, void *arg, int timeout_ms)
{
	struct run run = {
	    .done = done, .arg = arg, .deadline_ms = kafkatest_clock_ms() + timeout_ms};
	ev_timer_init(&run.check, run_check, 0.01, 0.01);
	run.check.data = &run;
	ev_timer_start(loop, &run.check);
	ev_run(loop, 0);
	ev_timer_stop(loop, &run.check);
	return run.met;
}

/* ---- fixture ---------------------------------------------------------------------- */

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f == NULL)
		return 0;
	for (int i = 0; i < 2; i++) {
		if (f->members[i] != NULL)
			consumer_close(f->members[i]->consumer, CLOSE_MS);
		free(f->members[i]);
	}
	producer_free(f->producer);
	if (f->loop != NULL)
		ev_loop_destroy(f->loop);
	free(f);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f;
	char errstr[512];
	f = calloc(1, sizeof *f);
	assert_non_null(f);
	*state = f;
	f->bootstrap = kafkatest_bootstrap(errstr, sizeof errstr);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	f->members[0] = calloc(1, sizeof(struct member));
	f->members[1] = calloc(1, sizeof(struct member));
	assert_non_null(f->members[0]);
	assert_non_null(f->members[1]);
	f->fds_at_start = count_fds(); /* with the loop's own */
	if (f->bootstrap == NULL || f->loop == NULL ||
	    kafkatest_unique_name("streamrec-test-cp", f->topic, sizeof f->topic, errstr,
				  sizeof errstr) != 0 ||
	    kafkatest_unique_name("streamrec-test-cp-group", f->group, sizeof f->group, errstr,
				  sizeof errstr) != 0) {
		teardown(state);
		*state = NULL;
		fail_msg("%s", f->loop == NULL ? "ev_loop_new failed" : errstr);
	}
	return 0;
}

static void start_producer(struct fixture *f)
{
	struct producer_config config = {
	    .brokers = f->bootstrap, .on_error = on_producer_error, .opaque = f};
	char errstr[512];
	f->producer = producer_new(&config, f->loop, errstr, sizeof errstr);
	if (f->producer == NULL)
		fail_msg("%s", errstr);
}

struct delivered_wait {
	struct fixture *f;
	uint64_t want;
};

static bool all_delivered(void *arg)
{
	struct delivered_wait *w = arg;
	struct producer_counts counts = producer_counts(w->f->producer);
	return counts.delivered + counts.failed >= w->want;
}

/* Sends "k<i>"/"v<i>" with header seq=<i> for i in [first, first+n), waits for the reports in the
 * loop. */
static void produce_numbered(struct fixture *f, int first, int n, bool tombstone_after)
{
	char errstr[512], key[16], value[16], seq[16];
	struct delivered_wait w = {f, producer_counts(f->producer).delivered + (uint64_t)n +
					  (tombstone_after ? 1 : 0)};
	for (int i = first; i < first + n; i++) {
		struct producer_header header = {"seq", seq, 0};
		snprintf(key, sizeof key, "k%d", i);
		snprintf(value, sizeof value, "v%d", i);
		header.value_len = (size_t)snprintf(seq, sizeof seq, "%d", i);
		if (producer_send(f->producer, f->topic, key, strlen(key), value, strlen(value),
				  &header, 1, errstr, sizeof errstr) != 0)
			fail_msg("%s", errstr);
	}
	if (tombstone_after && producer_send(f->producer, f->topic, "gone", 4, NULL, 0, NULL, 0,
					     errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	/* delivery reports must come through the loop, not through a flush */
	if (!run_until(f->loop, all_delivered, &w, DEADLINE_MS))
		fail_msg("delivery reports missing: %" PRIu64 " of %" PRIu64 " (%s)",
			 producer_counts(f->producer).delivered, w.want, f->producer_error);
	assert_int_equal(producer_counts(f->producer).failed, 0);
	assert_int_equal(producer_outq_len(f->producer), 0);
}

static void assert_no_fd_leak(struct fixture *f)
{
	producer_free(f->producer);
	f->producer = NULL;
	assert_int_equal(count_fds(), f->fds_at_start);
}

/* ---- conditions --------------------------------------------------------------------- */

struct received_wait {
	struct member *member;
	size_t want;
	bool want_zero_lag;
};

static bool received_enough(void *arg)
{
	struct received_wait *w = arg;
	if (w->member->received < w->want)
		return false;
	return !w->want_zero_lag || (w->member->lag_reports > 0 && w->member->last_lag == 0);
}

/* ---- tests -------------------------------------------------------------------------- */

/* (a) order, keys, values, tombstone, headers, lag; a new group resumes after its stored offset. */
static void messages_arrive_in_order_and_resume_after_stored_offset(void **state)
{
	struct fixture *f = *state;
	const struct consumer_property stats[] = {{"statistics.interval.ms", "200"}};
	struct member *first = f->members[0], *second = f->members[1];
	struct received_wait w = {first, MESSAGE_COUNT + 1, true};
	char errstr[512], group2[160];
	int64_t t0 = kafkatest_clock_ms();

	assert_non_null(first);
	assert_non_null(second);
	if (kafkatest_create_topic(f->bootstrap, f->topic, 1, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0)
		fail_msg("%s", errstr);
	start_producer(f);
	produce_numbered(f, 0, MESSAGE_COUNT, true);
	print_message("produced %d messages + tombstone in %" PRId64 " ms\n", MESSAGE_COUNT,
		      kafkatest_clock_ms() - t0);

	t0 = kafkatest_clock_ms();
	member_start(first, f, f->group, -1, stats, 1, 0);
	if (!run_until(f->loop, received_enough, &w, DEADLINE_MS))
		fail_msg("first member: %zu of %d messages, %d lag reports (last %" PRId64
			 "), last error: %s",
			 first->received, MESSAGE_COUNT + 1, first->lag_reports, first->last_lag,
			 first->last_error);
	print_message("consumed %zu messages (and lag 0 reported) in %" PRId64 " ms\n",
		      first->received, kafkatest_clock_ms() - t0);
	assert_int_equal(first->received, MESSAGE_COUNT + 1);
	for (size_t i = 0; i < MESSAGE_COUNT; i++) {
		char want[16];
		snprintf(want, sizeof want, "v%zu", i);
		assert_int_equal(first->partitions[i], 0);
		assert_int_equal(first->offsets[i], (int64_t)i);
		assert_string_equal(first->values[i], want);
		assert_false(first->tombstone[i]);
		assert_true(first->header_matches[i]);
	}
	assert_true(first->tombstone[MESSAGE_COUNT]);
	assert_int_equal(first->offsets[MESSAGE_COUNT], MESSAGE_COUNT);
	assert_true(consumer_assigned(first->consumer));
	assert_int_equal(consumer_assigned_count(first->consumer), 1);
	assert_true(consumer_broker_up(first->consumer));
	member_close(first);
	assert_int_equal(first->revoked[0], 1); /* the close revokes, state written first */

	/* a new group, no commits: starts exactly after the stored offset */
	snprintf(group2, sizeof group2, "%s-resume", f->group);
	/* 7 per wakeup: the rest must be served by the backlog watcher, none stranded */
	member_start(second, f, group2, RESUME_STORED, NULL, 0, 7);
	w = (struct received_wait){second, MESSAGE_COUNT + 1 - (RESUME_STORED + 1), false};
	if (!run_until(f->loop, received_enough, &w, DEADLINE_MS))
		fail_msg("resumed member: %zu messages, last error: %s", second->received,
			 second->last_error);
	run_until(f->loop, NULL, NULL, QUIET_MS); /* nothing more may come */
	assert_int_equal(second->received, MESSAGE_COUNT + 1 - (RESUME_STORED + 1));
	assert_int_equal(second->offsets[0], RESUME_STORED + 1);
	assert_string_equal(second->values[0], "v120");
	member_close(second);
	assert_no_fd_leak(f);
}

/* Holding: looked ahead at far enough (the partition paused), then released. */
static bool looked_ahead(void *arg)
{
	struct member *mb = arg;
	if (!mb->holding || mb->skipped < mb->skip_limit)
		return false;
	mb->holding = false;
	consumer_release(mb->consumer, mb->f->topic, 0);
	return true;
}

/* (a') a held message: the messages after it are looked at, not delivered;
 * released, it comes again and every message after it once, in order. */
static void held_message_comes_again_after_release(void **state)
{
	struct fixture *f = *state;
	struct member *mb = f->members[0];
	char errstr[512];
	if (kafkatest_create_topic(f->bootstrap, f->topic, 1, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0)
		fail_msg("%s", errstr);
	start_producer(f);
	produce_numbered(f, 0, MESSAGE_COUNT, true);
	member_start(mb, f, f->group, -1, NULL, 0, 0);
	mb->hold_at[0] = 50;
	mb->hold_at[1] = 120;
	mb->skip_limit = 20;
	for (int k = 0; k < 2; k++) {
		if (!run_until(f->loop, looked_ahead, mb, DEADLINE_MS))
			fail_msg("hold %d: %zu received, %d looked ahead at, last error: %s", k,
				 mb->received, mb->skipped, mb->last_error);
		assert_int_equal(mb->received, (size_t)mb->hold_at[k]);
		assert_int_equal(mb->skipped_first, mb->hold_at[k] + 1);
		assert_true(mb->skipped_last >= mb->hold_at[k] + 19);
		assert_true(mb->skipped_in_order);
	}
	struct received_wait w = {mb, MESSAGE_COUNT + 1, false};
	if (!run_until(f->loop, received_enough, &w, DEADLINE_MS))
		fail_msg("%zu of %d messages after the holds, last error: %s", mb->received,
			 MESSAGE_COUNT + 1, mb->last_error);
	run_until(f->loop, NULL, NULL, QUIET_MS); /* nothing more may come */
	assert_int_equal(mb->received, MESSAGE_COUNT + 1);
	for (size_t i = 0; i <= MESSAGE_COUNT; i++)
		assert_int_equal(mb->offsets[i], (int64_t)i);
	member_close(mb);
	assert_no_fd_leak(f);
}

/* Paused while held, until the partition was revoked. */
static bool paused_at_hold(void *arg)
{
	struct member *mb = arg;
	return mb->holding && mb->skipped >= mb->skip_limit;
}

static bool revoked_and_reassigned(void *arg)
{
	struct member *mb = arg;
	return mb->revoked_total > 0 && consumer_assigned_count(mb->consumer) == 1;
}

/* (a'') a partition paused for a held message and then revoked (a member
 * joined: eager, so everything is revoked) comes back unpaused: the hold
 * went with the revocation, and librdkafka keeps a partition's pause across
 * assignments, so it stayed paused for good with nothing left to resume it. */
static void a_held_partition_revoked_comes_back_unpaused(void **state)
{
	struct fixture *f = *state;
	struct member *a = f->members[0], *b = f->members[1];
	char errstr[512];
	if (kafkatest_create_topic(f->bootstrap, f->topic, 1, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0)
		fail_msg("%s", errstr);
	start_producer(f);
	produce_numbered(f, 0, MESSAGE_COUNT, true);
	member_start(a, f, f->group, -1, NULL, 0, 0);
	a->hold_at[0] = 50;
	a->skip_limit = 5;
	if (!run_until(f->loop, paused_at_hold, a, DEADLINE_MS))
		fail_msg("never held: %zu received, last error: %s", a->received, a->last_error);
	assert_int_equal(a->received, 50);
	/* b joins the group for another topic: a's partition is revoked and
	 * comes back to a (no one else reads its topic) */
	if (kafkatest_unique_name("streamrec-test-cp-other", f->other_topic, sizeof f->other_topic,
				  errstr, sizeof errstr) != 0 ||
	    kafkatest_create_topic(f->bootstrap, f->other_topic, 1, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0)
		fail_msg("%s", errstr);
	member_start(b, f, f->group, -1, NULL, 0, 0);
	f->other_topic[0] = '\0';
	if (!run_until(f->loop, revoked_and_reassigned, a, DEADLINE_MS))
		fail_msg("no rebalance: %d revoked, %zu assigned", a->revoked_total,
			 consumer_assigned_count(a->consumer));
	/* nothing stored, no commit: read again from the start, every message */
	struct received_wait w = {a, 50 + MESSAGE_COUNT + 1, false};
	if (!run_until(f->loop, received_enough, &w, DEADLINE_MS))
		fail_msg("%zu messages after the rebalance: the partition stayed paused",
			 a->received - 50);
	assert_int_equal(a->offsets[50], 0);
	assert_int_equal(a->offsets[50 + MESSAGE_COUNT], MESSAGE_COUNT);
	member_close(b);
	member_close(a);
	assert_no_fd_leak(f);
}

static bool caught_up(void *arg)
{
	struct member *mb = arg;
	return mb->caught_up > 0;
}

/* on_caught_up: told once what the partitions held at their assignment was
 * read (every message of them), and at once for an empty partition or a
 * topic that does not exist. */
static void catching_up_is_told_once(void **state)
{
	struct fixture *f = *state;
	struct member *mb = f->members[0];
	char errstr[512];
	if (kafkatest_create_topic(f->bootstrap, f->topic, 2, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0)
		fail_msg("%s", errstr);
	start_producer(f);
	produce_numbered(f, 0, MESSAGE_COUNT, true);
	f->want_caught_up = true;
	member_start(mb, f, f->group, -1, NULL, 0, 0);
	if (!run_until(f->loop, caught_up, mb, DEADLINE_MS))
		fail_msg("never caught up: %zu received, %s", mb->received, mb->last_error);
	assert_int_equal(mb->received_at_caught_up, MESSAGE_COUNT + 1);
	produce_numbered(f, MESSAGE_COUNT, 10, false); /* more: told once only */
	struct received_wait w = {mb, MESSAGE_COUNT + 11, false};
	if (!run_until(f->loop, received_enough, &w, DEADLINE_MS))
		fail_msg("%zu received after catching up", mb->received);
	assert_int_equal(mb->caught_up, 1);
	member_close(mb);

	/* an empty topic, and one that does not exist: at once */
	char empty[128], absent[128];
	if (kafkatest_unique_name("streamrec-test-cp-empty", empty, sizeof empty, errstr,
				  sizeof errstr) != 0 ||
	    kafkatest_create_topic(f->bootstrap, empty, 1, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0 ||
	    kafkatest_unique_name("streamrec-test-cp-absent", absent, sizeof absent, errstr,
				  sizeof errstr) != 0)
		fail_msg("%s", errstr);
	const char *topics[] = {empty, absent};
	for (int t = 0; t < 2; t++) {
		snprintf(f->other_topic, sizeof f->other_topic, "%s", topics[t]);
		member_start(mb, f, f->group, -1, NULL, 0, 0);
		if (!run_until(f->loop, caught_up, mb, DEADLINE_MS))
			fail_msg("%s: never caught up: %s", topics[t], mb->last_error);
		assert_int_equal(mb->received, 0);
		member_close(mb);
	}
	f->other_topic[0] = '\0';
	assert_no_fd_leak(f);
}

/* (b) a dead letter's provenance headers arrive as decimal strings. */
static void dead_letter_headers_arrive(void **state)
{
	struct fixture *f = *state;
	struct member *mb = f->members[0];
	struct received_wait w = {mb, 1, false};
	struct delivered_wait d = {f, 1};
	char errstr[512];

	assert_non_null(mb);
	if (kafkatest_create_topic(f->bootstrap, f->topic, 1, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0)
		fail_msg("%s", errstr);
	start_producer(f);
	if (producer_send_dead_letter(f->producer, f->topic, "invalid enum symbol \"BUYY\"",
				      "events", 2, 1234567890123LL, "u1", 2, "\x00\x01garbage", 9,
				      errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	if (!run_until(f->loop, all_delivered, &d, DEADLINE_MS))
		fail_msg("no delivery report: %s", f->producer_error);
	member_start(mb, f, f->group, -1, NULL, 0, 0);
	if (!run_until(f->loop, received_enough, &w, DEADLINE_MS))
		fail_msg("dead letter not consumed: %s", mb->last_error);
	assert_string_equal(mb->dead_letter_headers[0], "invalid enum symbol \"BUYY\"");
	assert_string_equal(mb->dead_letter_headers[1], "events");
	assert_string_equal(mb->dead_letter_headers[2], "2");
	assert_string_equal(mb->dead_letter_headers[3], "1234567890123");
	member_close(mb);
	assert_no_fd_leak(f);
}

struct assignment_wait {
	struct member *a;
	struct member *b;
	size_t total;
};

static bool assignment_settled(void *arg)
{
	struct assignment_wait *w = arg;
	size_t a = consumer_assigned_count(w->a->consumer);
	size_t b = w->b != NULL ? consumer_assigned_count(w->b->consumer) : 0;
	return a + b == w->total && a > 0 && (w->b == NULL || b > 0);
}

/* (c) a second member joins: the first revokes (all, or only what moves), then both close. */
static void revoke_on_rebalance_and_close(struct fixture *f, const char *strategy)
{
	struct consumer_property properties[] = {{"session.timeout.ms", "6000"},
						 {"partition.assignment.strategy", strategy}};
	size_t property_count = strategy != NULL ? 2 : 1;
	struct member *a = f->members[0], *b = f->members[1];
	struct assignment_wait w = {a, NULL, MAX_PARTITIONS};
	char errstr[512];
	size_t a_held, b_held;
	int a_revoked_before_close;
	int64_t t0;

	assert_non_null(a);
	assert_non_null(b);
	if (kafkatest_create_topic(f->bootstrap, f->topic, MAX_PARTITIONS, KAFKATEST_TIMEOUT_MS,
				   errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	t0 = kafkatest_clock_ms();
	member_start(a, f, f->group, -1, properties, property_count, 0);
	if (!run_until(f->loop, assignment_settled, &w, DEADLINE_MS))
		fail_msg("first member never got %d partitions: %s", MAX_PARTITIONS, a->last_error);
	print_message("%s: first member assigned in %" PRId64 " ms\n",
		      strategy ? strategy : "eager default", kafkatest_clock_ms() - t0);
	assert_int_equal(a->revoked_total, 0);

	t0 = kafkatest_clock_ms();
	member_start(b, f, f->group, -1, properties, property_count, 0);
	w.b = b;
	if (!run_until(f->loop, assignment_settled, &w, DEADLINE_MS))
		fail_msg("rebalance did not settle: %zu + %zu partitions; %s / %s",
			 consumer_assigned_count(a->consumer), consumer_assigned_count(b->consumer),
			 a->last_error, b->last_error);
	print_message("%s: rebalance settled in %" PRId64 " ms\n",
		      strategy ? strategy : "eager default", kafkatest_clock_ms() - t0);
	a_held = consumer_assigned_count(a->consumer);
	b_held = consumer_assigned_count(b->consumer);
	assert_int_equal(a_held + b_held, MAX_PARTITIONS);
	if (strategy == NULL)
		assert_int_equal(a->revoked_total, MAX_PARTITIONS); /* eager: everything goes */
	else
		assert_int_equal(a->revoked_total, (int)b_held); /* incremental: only what moved */
	assert_int_equal(b->revoked_total, 0);

	a_revoked_before_close = a->revoked_total;
	member_close(b);
	assert_int_equal(b->revoked_total, (int)b_held);
	member_close(a);
	assert_int_equal(a->revoked_total - a_revoked_before_close, (int)a_held);
	assert_no_fd_leak(f);
}

static void revoke_eager(void **state)
{
	revoke_on_rebalance_and_close(*state, NULL);
}

static void revoke_cooperative(void **state)
{
	revoke_on_rebalance_and_close(*state, "cooperative-sticky");
}

/* (d) a commit is where the next member of the group starts when the caller has no offset. */
static void next_member_starts_at_commit(void **state)
{
	struct fixture *f = *state;
	struct member *a = f->members[0], *b = f->members[1];
	struct received_wait w = {a, COMMIT_MESSAGES, false};
	struct consumer_position position;
	int64_t committed = -1;
	rd_kafka_t *raw;
	char errstr[512];

	assert_non_null(a);
	assert_non_null(b);
	if (kafkatest_create_topic(f->bootstrap, f->topic, 1, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0)
		fail_msg("%s", errstr);
	start_producer(f);
	produce_numbered(f, 0, COMMIT_MESSAGES, false);

	member_start(a, f, f->group, -1, NULL, 0, 0);
	if (!run_until(f->loop, received_enough, &w, DEADLINE_MS))
		fail_msg("%zu of %d messages: %s", a->received, COMMIT_MESSAGES, a->last_error);
	position = (struct consumer_position){f->topic, 0, COMMIT_AT};
	if (consumer_commit(a->consumer, &position, 1, false, errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	member_close(a);

	member_start(b, f, f->group, -1, NULL, 0, 0);
	w = (struct received_wait){b, COMMIT_MESSAGES - COMMIT_AT, false};
	if (!run_until(f->loop, received_enough, &w, DEADLINE_MS))
		fail_msg("%zu messages after the commit: %s", b->received, b->last_error);
	assert_int_equal(b->offsets[0], COMMIT_AT);
	assert_int_equal(b->received, COMMIT_MESSAGES - COMMIT_AT);

	/* an asynchronous commit lands too; its result is served by the loop */
	position.next_offset = COMMIT_MESSAGES;
	if (consumer_commit(b->consumer, &position, 1, true, errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	run_until(f->loop, NULL, NULL, QUIET_MS);
	member_close(b);
	raw = kafkatest_consumer_new(f->bootstrap, f->group, NULL, errstr, sizeof errstr);
	if (raw == NULL)
		fail_msg("%s", errstr);
	if (kafkatest_committed_offsets(raw, f->topic, 1, &committed, KAFKATEST_TIMEOUT_MS, errstr,
					sizeof errstr) != 0) {
		kafkatest_consumer_close(raw);
		fail_msg("%s", errstr);
	}
	kafkatest_consumer_close(raw);
	assert_int_equal(committed, COMMIT_MESSAGES);
	assert_no_fd_leak(f);
}

/* (e) a bad property name or value is reported with the property named. */
static void bad_properties_are_named(void **state)
{
	struct fixture *f = *state;
	const char *topics[] = {"unused"};
	struct consumer_property unknown[] = {{"no.such.property", "1"}};
	struct consumer_property bad_value[] = {{"session.timeout.ms", "soon"}};
	struct producer_property bad_codec[] = {{"compression.type", "zip"}};
	struct consumer_config config = {.brokers = f->bootstrap,
					 .group_id = f->group,
					 .topics = topics,
					 .topic_count = 1,
					 .properties = unknown,
					 .property_count = 1,
					 .callbacks = {.on_message = on_message}};
	struct producer_config pconfig = {
	    .brokers = f->bootstrap, .properties = bad_codec, .property_count = 1};
	char errstr[512] = "";

	assert_null(consumer_new(&config, f->loop, errstr, sizeof errstr));
	print_message("%s\n", errstr);
	assert_non_null(strstr(errstr, "no.such.property"));
	config.properties = bad_value;
	assert_null(consumer_new(&config, f->loop, errstr, sizeof errstr));
	print_message("%s\n", errstr);
	assert_non_null(strstr(errstr, "session.timeout.ms"));
	assert_null(producer_new(&pconfig, f->loop, errstr, sizeof errstr));
	print_message("%s\n", errstr);
	assert_non_null(strstr(errstr, "compression.type"));
	assert_no_fd_leak(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(bad_properties_are_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(messages_arrive_in_order_and_resume_after_stored_offset,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(held_message_comes_again_after_release, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(a_held_partition_revoked_comes_back_unpaused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(catching_up_is_told_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(dead_letter_headers_arrive, setup, teardown),
	    cmocka_unit_test_setup_teardown(next_member_starts_at_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(revoke_eager, setup, teardown),
	    cmocka_unit_test_setup_teardown(revoke_cooperative, setup, teardown),
	};
	return cmocka_run_group_tests_name("110_consumer_producer", tests, NULL, NULL);
}
