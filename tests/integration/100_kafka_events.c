/*
 * UserEvents through a real broker: a consumer group receives every event
 * we produce exactly once, unchanged and in order per user; committed
 * offsets are honoured by the next consumer of the group; and bad messages
 * on the topic get their named reasons without disturbing the good ones.
 *
 * Needs a broker: STREAMREC_TEST_BOOTSTRAP=host:port (tools/kafka-broker).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "kafkatest.h"
#include "testutil.h"

#define PARTITION_COUNT        3
#define FIRST_BATCH_EVENTS     600
#define SECOND_BATCH_EVENTS    50
#define USER_COUNT             24
#define USER_EVENT_SCHEMA_ID   7
#define UNREGISTERED_SCHEMA_ID 99
/* generous: the group join, 600 messages and ASan on a 2-core machine */
#define CONSUME_DEADLINE_MS 60000
#define POLL_MS             200
#define MESSAGE_MAX_BYTES   1024
#define MIXED_MESSAGES_MAX  32

/* One message of the mixed topic and what decoding it must give. */
struct mixed_message {
	const char *what;
	uint8_t bytes[MESSAGE_MAX_BYTES];
	size_t len;
	enum codec_reason want;
	/* for a good message: the event it carries */
	struct user_event event;
};

struct fixture {
	const char *bootstrap;
	struct codec *codec;
	struct kafkatest_producer *producer;
	rd_kafka_t *consumer;
	struct codec_buf buf;
	/* sent[i] is the event whose event_id is "ev-<i>"; seen[i] that it arrived */
	struct user_event *sent;
	bool *seen;
	struct mixed_message *mixed;
	char topic[128];
	char group[128];
};

/* What one poll brought, copied out so the message can be destroyed before asserting. */
struct received {
	bool is_message;
	bool is_partition_eof;
	int32_t partition;
	int64_t offset;
	size_t key_len;
	char key[CODEC_ID_MAX_BYTES + 1];
	int decode_rc;
	struct user_event event;
	struct codec_error error;
};

/* Fills a zeroed fixture; whatever it made is released by teardown(), even on failure. */
static int fixture_init(struct fixture *f, const char *bootstrap, char *errstr, size_t errstr_size)
{
	struct codec_config config = {.framing = CODEC_FRAMING_AUTO,
				      .user_event_schema_id = USER_EVENT_SCHEMA_ID};
	char detail[256];

	f->bootstrap = bootstrap;
	f->sent = calloc(FIRST_BATCH_EVENTS + SECOND_BATCH_EVENTS, sizeof *f->sent);
	f->seen = calloc(FIRST_BATCH_EVENTS + SECOND_BATCH_EVENTS, sizeof *f->seen);
	f->mixed = calloc(MIXED_MESSAGES_MAX, sizeof *f->mixed);
	if (f->sent == NULL || f->seen == NULL || f->mixed == NULL) {
		snprintf(errstr, errstr_size, "fixture: out of memory");
		return -1;
	}
	f->codec = codec_new(&config, detail, sizeof detail);
	if (f->codec == NULL) {
		snprintf(errstr, errstr_size, "codec_new: %s", detail);
		return -1;
	}
	if (codec_register_schema(f->codec, USER_EVENT_SCHEMA_ID, codec_schema_json("UserEvent"),
				  detail, sizeof detail) != 0) {
		snprintf(errstr, errstr_size, "register schema %d: %s", USER_EVENT_SCHEMA_ID,
			 detail);
		return -1;
	}
	if (kafkatest_unique_name("streamrec-test-events", f->topic, sizeof f->topic, errstr,
				  errstr_size) != 0 ||
	    kafkatest_unique_name("streamrec-test-group", f->group, sizeof f->group, errstr,
				  errstr_size) != 0)
		return -1;
	f->producer = kafkatest_producer_new(bootstrap, NULL, errstr, errstr_size);
	return f->producer != NULL ? 0 : -1;
}

static int teardown(void **state);

/*
 * Each test gets its own fixture, topic and group. cmocka runs no teardown
 * after a failed setup, so setup releases what it made before failing.
 */
static int setup(void **state)
{
	const char *bootstrap;
	char errstr[512];

	bootstrap = kafkatest_bootstrap(errstr, sizeof errstr);
	if (bootstrap == NULL)
		fail_msg("%s", errstr);
	*state = calloc(1, sizeof(struct fixture));
	assert_non_null(*state);
	if (fixture_init(*state, bootstrap, errstr, sizeof errstr) != 0) {
		teardown(state);
		*state = NULL;
		fail_msg("%s", errstr);
	}
	return 0;
}

/* Runs after a failed test too, so that no handle outlives its test. */
static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f == NULL)
		return 0;
	kafkatest_consumer_close(f->consumer);
	kafkatest_producer_free(f->producer);
	codec_buf_free(&f->buf);
	codec_free(f->codec);
	free(f->sent);
	free(f->seen);
	free(f->mixed);
	free(f);
	return 0;
}

static void assert_events_equal(const struct user_event *a, const struct user_event *b)
{
	assert_string_equal(a->event_id, b->event_id);
	assert_string_equal(a->user_id, b->user_id);
	assert_string_equal(a->item_id, b->item_id);
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->ts_ms, b->ts_ms);
	assert_int_equal(a->has_session_id, b->has_session_id);
	if (a->has_session_id)
		assert_string_equal(a->session_id, b->session_id);
	assert_int_equal(a->has_quantity, b->has_quantity);
	if (a->has_quantity)
		assert_int_equal(a->quantity, b->quantity);
	assert_int_equal(a->has_price, b->has_price);
	if (a->has_price)
		assert_memory_equal(&a->price, &b->price, sizeof a->price);
	assert_int_equal(a->has_list_id, b->has_list_id);
	if (a->has_list_id)
		assert_string_equal(a->list_id, b->list_id);
}

/* The user of event i: users interleave, so every partition holds several. */
static unsigned user_of(size_t i)
{
	return (unsigned)((i * 7 + i / 5) % USER_COUNT);
}

/*
 * Event i: every type, both framings (types cycle by 7, framing by 2), some
 * with a session, a quantity, a price or a list id, a few users with
 * non-ASCII ids.
 */
static struct user_event make_event(size_t i, int64_t base_ts_ms)
{
	unsigned user = user_of(i);
	struct user_event e;
	memset(&e, 0, sizeof e);
	snprintf(e.event_id, sizeof e.event_id, "ev-%zu", i);
	snprintf(e.user_id, sizeof e.user_id, user % 5 == 4 ? "us\xc3\xa9r-%02u" : "user-%02u",
		 user);
	snprintf(e.item_id, sizeof e.item_id, "item-%zu", (i * 31) % 97);
	e.type = (enum event_type)(i % EVENT_TYPE_COUNT);
	e.ts_ms = base_ts_ms + (int64_t)i;
	if (i % 3 == 0) {
		e.has_session_id = true;
		snprintf(e.session_id, sizeof e.session_id, "sess-%u-%zu", user, i / 40);
	}
	if (e.type == EVENT_PURCHASE || e.type == EVENT_ADD_TO_CART || i % 11 == 0) {
		e.has_quantity = true;
		e.quantity = (int32_t)(1 + i % 4);
	}
	if (e.type == EVENT_PURCHASE || i % 5 == 0) {
		e.has_price = true;
		e.price = 0.99 + 0.25 * (double)(i % 400);
	}
	if (i % 4 == 1) { /* the list the event came from */
		e.has_list_id = true;
		snprintf(e.list_id, sizeof e.list_id, "%016zx", i * 0x9E3779B9u);
	}
	return e;
}

static enum codec_framing framing_of(size_t i)
{
	return i % 2 == 0 ? CODEC_FRAMING_RAW : CODEC_FRAMING_CONFLUENT;
}

/* Produces events [first, first + count) keyed by user and checks every delivery report. */
static void produce_events(struct fixture *f, size_t first, size_t count)
{
	int64_t base_ts_ms = testutil_now_ms() - 3600 * 1000;
	long delivered_before = kafkatest_producer_delivered(f->producer);
	char errstr[512];

	for (size_t i = first; i < first + count; i++) {
		f->sent[i] = make_event(i, base_ts_ms);
		if (codec_encode_user_event(f->codec, &f->sent[i], framing_of(i), &f->buf, errstr,
					    sizeof errstr) != 0)
			fail_msg("encode ev-%zu: %s", i, errstr);
		if (kafkatest_produce(f->producer, f->topic, RD_KAFKA_PARTITION_UA,
				      f->sent[i].user_id, strlen(f->sent[i].user_id), f->buf.data,
				      f->buf.len, errstr, sizeof errstr) != 0)
			fail_msg("ev-%zu: %s", i, errstr);
	}
	if (kafkatest_producer_flush(f->producer, KAFKATEST_TIMEOUT_MS, errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	assert_int_equal(kafkatest_producer_failed(f->producer), 0);
	assert_int_equal(kafkatest_producer_delivered(f->producer) - delivered_before, count);
}

/*
 * Polls once. A message is decoded, and its offset stored for the next
 * commit, before it is destroyed; any consumer error but a partition's end
 * fails the test. Returns false when the poll brought nothing.
 */
static bool poll_one(struct fixture *f, rd_kafka_t *consumer, struct received *out)
{
	rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer, POLL_MS);
	char errstr[512] = "";
	int store_rc = 0;

	if (message == NULL)
		return false;
	memset(out, 0, sizeof *out);
	out->partition = message->partition;
	out->offset = message->offset;
	if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		out->is_partition_eof = true;
		rd_kafka_message_destroy(message);
		return true;
	}
	if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, sizeof errstr, "consumer error on %s [%" PRId32 "]: %s",
			 message->rkt != NULL ? rd_kafka_topic_name(message->rkt) : "-",
			 message->partition, rd_kafka_message_errstr(message));
		rd_kafka_message_destroy(message);
		fail_msg("%s", errstr);
	}
	out->is_message = true;
	out->key_len = message->key_len;
	if (message->key != NULL && message->key_len < sizeof out->key)
		memcpy(out->key, message->key, message->key_len);
	out->decode_rc = codec_decode_user_event(f->codec, message->payload, message->len,
						 testutil_now_ms(), &out->event, &out->error);
	store_rc = kafkatest_store_offset(consumer, message, errstr, sizeof errstr);
	rd_kafka_message_destroy(message);
	if (store_rc != 0)
		fail_msg("%s", errstr);
	return true;
}

/* The index i of event_id "ev-<i>", or -1. */
static long event_index(const char *event_id)
{
	char *end;
	long i;
	if (strncmp(event_id, "ev-", 3) != 0)
		return -1;
	i = strtol(event_id + 3, &end, 10);
	return *end == '\0' ? i : -1;
}

/*
 * Consumes until events [first, first + count) have all arrived and every
 * partition is at its end, then checks that each event arrived once,
 * unchanged, keyed by its user, from the partition its user always uses,
 * and after the user's earlier events.
 */
static void consume_events(struct fixture *f, rd_kafka_t *consumer, size_t first, size_t count)
{
	int64_t deadline_ms = kafkatest_clock_ms() + CONSUME_DEADLINE_MS;
	bool *seen = f->seen;
	bool at_end[PARTITION_COUNT] = {false};
	long last_index_of_user[USER_COUNT];
	int32_t partition_of_user[USER_COUNT];
	size_t received_count = 0;

	memset(seen, 0, (FIRST_BATCH_EVENTS + SECOND_BATCH_EVENTS) * sizeof *seen);
	for (size_t u = 0; u < USER_COUNT; u++) {
		last_index_of_user[u] = -1;
		partition_of_user[u] = -1;
	}
	for (;;) {
		struct received r;
		bool all_at_end = true;
		long i;
		unsigned user;

		for (size_t p = 0; p < PARTITION_COUNT; p++)
			all_at_end = all_at_end && at_end[p];
		if (received_count >= count && all_at_end)
			break;
		if (kafkatest_clock_ms() > deadline_ms)
			fail_msg("%zu of %zu events after %d ms; partitions at end: %d %d %d",
				 received_count, count, CONSUME_DEADLINE_MS, at_end[0], at_end[1],
				 at_end[2]);
		if (!poll_one(f, consumer, &r))
			continue;
		assert_in_range(r.partition, 0, PARTITION_COUNT - 1);
		if (r.is_partition_eof) {
			at_end[r.partition] = true;
			continue;
		}
		at_end[r.partition] = false;
		if (r.decode_rc != 0)
			fail_msg("[%" PRId32 "]@%" PRId64 ": decode: %s: %s", r.partition, r.offset,
				 codec_reason_name(r.error.reason), r.error.detail);
		i = event_index(r.event.event_id);
		if (i < (long)first || i >= (long)(first + count))
			fail_msg("[%" PRId32 "]@%" PRId64 ": event %s is not one of ev-%zu..ev-%zu",
				 r.partition, r.offset, r.event.event_id, first, first + count - 1);
		if (seen[i])
			fail_msg("[%" PRId32 "]@%" PRId64 ": ev-%ld delivered twice", r.partition,
				 r.offset, i);
		seen[i] = true;
		received_count++;
		assert_events_equal(&r.event, &f->sent[i]);
		assert_int_equal(r.key_len, strlen(f->sent[i].user_id));
		assert_string_equal(r.key, f->sent[i].user_id);

		user = user_of((size_t)i);
		if (partition_of_user[user] == -1)
			partition_of_user[user] = r.partition;
		if (partition_of_user[user] != r.partition)
			fail_msg("%s: events in partitions %" PRId32 " and %" PRId32,
				 f->sent[i].user_id, partition_of_user[user], r.partition);
		if (i < last_index_of_user[user])
			fail_msg("%s: ev-%ld arrived after ev-%ld", f->sent[i].user_id, i,
				 last_index_of_user[user]);
		last_index_of_user[user] = i;
	}
	assert_int_equal(received_count, count);
}

/* Commits the stored offsets and checks they reached each partition's end. */
static void commit_and_check(struct fixture *f, int64_t want_total)
{
	rd_kafka_t *consumer = f->consumer;
	const char *topic = f->topic;
	int64_t committed[PARTITION_COUNT], high[PARTITION_COUNT], total = 0;
	char errstr[512];
	if (kafkatest_commit(consumer, errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	if (kafkatest_committed_offsets(consumer, topic, PARTITION_COUNT, committed,
					KAFKATEST_TIMEOUT_MS, errstr, sizeof errstr) != 0 ||
	    /* the producer's connection is not busy with a fetch long poll */
	    kafkatest_high_watermarks(kafkatest_producer_handle(f->producer), topic,
				      PARTITION_COUNT, high, KAFKATEST_TIMEOUT_MS, errstr,
				      sizeof errstr) != 0)
		fail_msg("%s", errstr);
	for (int p = 0; p < PARTITION_COUNT; p++) {
		if (committed[p] != high[p])
			fail_msg("%s [%d]: committed %" PRId64 ", end of log %" PRId64, topic, p,
				 committed[p], high[p]);
		total += committed[p];
	}
	assert_int_equal(total, want_total);
}

static rd_kafka_t *subscribed_consumer(const struct fixture *f, const char *topic)
{
	/* a partition's end is how a test knows nothing more is coming */
	static const char *const overrides[] = {"enable.partition.eof", "true", NULL};
	char errstr[512];
	rd_kafka_t *consumer =
	    kafkatest_consumer_new(f->bootstrap, f->group, overrides, errstr, sizeof errstr);
	if (consumer == NULL)
		fail_msg("%s", errstr);
	if (kafkatest_subscribe(consumer, topic, errstr, sizeof errstr) != 0) {
		kafkatest_consumer_close(consumer);
		fail_msg("%s", errstr);
	}
	return consumer;
}

static void group_gets_every_event_once_in_order_and_resumes_from_commit(void **state)
{
	struct fixture *f = *state;
	char errstr[512];

	if (kafkatest_create_topic(f->bootstrap, f->topic, PARTITION_COUNT, KAFKATEST_TIMEOUT_MS,
				   errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);

	produce_events(f, 0, FIRST_BATCH_EVENTS);
	f->consumer = subscribed_consumer(f, f->topic);
	consume_events(f, f->consumer, 0, FIRST_BATCH_EVENTS);
	commit_and_check(f, FIRST_BATCH_EVENTS);
	kafkatest_consumer_close(f->consumer);
	f->consumer = NULL;

	/* a restarted member of the group gets the new events and nothing else */
	produce_events(f, FIRST_BATCH_EVENTS, SECOND_BATCH_EVENTS);
	f->consumer = subscribed_consumer(f, f->topic);
	consume_events(f, f->consumer, FIRST_BATCH_EVENTS, SECOND_BATCH_EVENTS);
	commit_and_check(f, FIRST_BATCH_EVENTS + SECOND_BATCH_EVENTS);
}

static void add_good(struct fixture *f, struct mixed_message *m, size_t i,
		     enum codec_framing framing)
{
	char errstr[512];
	m->what = framing == CODEC_FRAMING_RAW ? "good raw" : "good confluent";
	m->want = CODEC_OK;
	m->event = make_event(i, testutil_now_ms() - 60000);
	if (codec_encode_user_event(f->codec, &m->event, framing, &f->buf, errstr, sizeof errstr) !=
	    0)
		fail_msg("encode: %s", errstr);
	assert_true(f->buf.len <= sizeof m->bytes);
	memcpy(m->bytes, f->buf.data, f->buf.len);
	m->len = f->buf.len;
}

static void add_bytes(struct mixed_message *m, const char *what, const void *bytes, size_t len,
		      enum codec_reason want)
{
	assert_true(len <= sizeof m->bytes);
	m->what = what;
	if (len > 0)
		memcpy(m->bytes, bytes, len);
	m->len = len;
	m->want = want;
}

/* A valid event encoded in framing, then cut, patched or extended by the caller. */
static void encode_plain(struct fixture *f, enum codec_framing framing)
{
	struct user_event e = testutil_event("e", "u", "i", EVENT_VIEW);
	char errstr[512];
	if (codec_encode_user_event(f->codec, &e, framing, &f->buf, errstr, sizeof errstr) != 0)
		fail_msg("encode: %s", errstr);
}

/* Builds good and bad messages alternately; returns how many. */
static size_t build_mixed_messages(struct fixture *f, struct mixed_message *m)
{
	static const char text[] = "this is not avro at all";
	static const uint8_t negative_length[] = {0x03, 'g', 'a', 'r', 'b', 'a', 'g', 'e'};
	uint8_t patched[MESSAGE_MAX_BYTES];
	size_t n = 0, good = 0;

	add_good(f, &m[n++], good++, CODEC_FRAMING_RAW);
	/* 't' declares a 58-byte event_id; fewer bytes follow */
	add_bytes(&m[n++], "text garbage", text, sizeof text - 1, CODEC_ERR_TRUNCATED);
	add_good(f, &m[n++], good++, CODEC_FRAMING_CONFLUENT);
	add_bytes(&m[n++], "negative length", negative_length, sizeof negative_length,
		  CODEC_ERR_MALFORMED);
	add_good(f, &m[n++], good++, CODEC_FRAMING_RAW);

	encode_plain(f, CODEC_FRAMING_CONFLUENT);
	memcpy(patched, f->buf.data, f->buf.len);
	patched[4] = UNREGISTERED_SCHEMA_ID;
	add_bytes(&m[n++], "unregistered schema id", patched, f->buf.len, CODEC_ERR_UNKNOWN_SCHEMA);
	add_good(f, &m[n++], good++, CODEC_FRAMING_CONFLUENT);

	encode_plain(f, CODEC_FRAMING_RAW);
	add_bytes(&m[n++], "truncated raw", f->buf.data, f->buf.len / 2, CODEC_ERR_TRUNCATED);
	add_good(f, &m[n++], good++, CODEC_FRAMING_RAW);

	encode_plain(f, CODEC_FRAMING_CONFLUENT);
	add_bytes(&m[n++], "truncated confluent", f->buf.data, f->buf.len - 1, CODEC_ERR_TRUNCATED);
	add_good(f, &m[n++], good++, CODEC_FRAMING_CONFLUENT);

	add_bytes(&m[n++], "null value", NULL, 0, CODEC_ERR_EMPTY);
	add_good(f, &m[n++], good++, CODEC_FRAMING_RAW);

	encode_plain(f, CODEC_FRAMING_RAW);
	memcpy(patched, f->buf.data, f->buf.len);
	patched[f->buf.len] = 0x02;
	add_bytes(&m[n++], "trailing byte", patched, f->buf.len + 1, CODEC_ERR_TRAILING_BYTES);
	add_good(f, &m[n++], good++, CODEC_FRAMING_CONFLUENT);

	/* layout: 02 'e' 02 'u' 02 'i' <enum> ...; index 9 zig-zags to 18 */
	encode_plain(f, CODEC_FRAMING_RAW);
	memcpy(patched, f->buf.data, f->buf.len);
	assert_int_equal(patched[6], 2);
	patched[6] = 18;
	add_bytes(&m[n++], "enum index 9", patched, f->buf.len, CODEC_ERR_INVALID_ENUM);
	add_good(f, &m[n++], good++, CODEC_FRAMING_RAW);
	return n;
}

static void bad_messages_get_their_reason_and_good_ones_still_decode(void **state)
{
	struct fixture *f = *state;
	struct mixed_message *m = f->mixed;
	int64_t deadline_ms;
	size_t n, received_count = 0;
	bool at_end = false;
	char errstr[512];

	n = build_mixed_messages(f, m);
	assert_true(n <= MIXED_MESSAGES_MAX);
	/* one partition: the offset of a message is its place in m[] */
	if (kafkatest_create_topic(f->bootstrap, f->topic, 1, KAFKATEST_TIMEOUT_MS, errstr,
				   sizeof errstr) != 0)
		fail_msg("%s", errstr);
	for (size_t i = 0; i < n; i++) {
		char key[32];
		snprintf(key, sizeof key, "msg-%zu", i);
		if (kafkatest_produce(f->producer, f->topic, 0, key, strlen(key),
				      m[i].len > 0 ? m[i].bytes : NULL, m[i].len, errstr,
				      sizeof errstr) != 0)
			fail_msg("%s: %s", m[i].what, errstr);
	}
	if (kafkatest_producer_flush(f->producer, KAFKATEST_TIMEOUT_MS, errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
	assert_int_equal(kafkatest_producer_delivered(f->producer), n);

	f->consumer = subscribed_consumer(f, f->topic);
	deadline_ms = kafkatest_clock_ms() + CONSUME_DEADLINE_MS;
	while (received_count < n || !at_end) {
		struct received r;
		const struct mixed_message *want;
		if (kafkatest_clock_ms() > deadline_ms)
			fail_msg("%zu of %zu messages after %d ms", received_count, n,
				 CONSUME_DEADLINE_MS);
		if (!poll_one(f, f->consumer, &r))
			continue;
		assert_int_equal(r.partition, 0);
		if (r.is_partition_eof) {
			at_end = true;
			continue;
		}
		at_end = false;
		if (r.offset != (int64_t)received_count)
			fail_msg("offset %" PRId64 " arrived as message %zu", r.offset,
				 received_count);
		assert_true(received_count < n);
		want = &m[received_count++];
		if (want->want == CODEC_OK) {
			if (r.decode_rc != 0)
				fail_msg("@%" PRId64 " %s: %s: %s", r.offset, want->what,
					 codec_reason_name(r.error.reason), r.error.detail);
			assert_events_equal(&r.event, &want->event);
		} else if (r.decode_rc != -1 || r.error.reason != want->want) {
			fail_msg("@%" PRId64 " %s: want %s, got rc=%d %s (%s)", r.offset,
				 want->what, codec_reason_name(want->want), r.decode_rc,
				 codec_reason_name(r.error.reason), r.error.detail);
		}
	}
	assert_int_equal(received_count, n);
	if (kafkatest_commit(f->consumer, errstr, sizeof errstr) != 0)
		fail_msg("%s", errstr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		group_gets_every_event_once_in_order_and_resumes_from_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		bad_messages_get_their_reason_and_good_ones_still_decode, setup, teardown),
	};
	return cmocka_run_group_tests_name("100_kafka_events", tests, NULL, NULL);
}
