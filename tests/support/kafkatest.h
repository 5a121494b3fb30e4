/*
 * kafkatest: Kafka plumbing for integration tests against the real broker
 * that the harness starts (tools/kafka-broker) and names in the environment.
 *
 * Every test makes its own topics and group ids with kafkatest_unique_name(),
 * so tests never see each other's data and can run in any order. Handles
 * made here are plain librdkafka handles (or a thin producer wrapper that
 * counts delivery reports); the caller owns them and releases them with the
 * matching free/close function, which waits a bounded time.
 *
 * Nothing here asserts: actions return 0 or -1 with errstr filled, so the
 * caller's test framework decides how to fail.
 */
#ifndef STREAMREC_KAFKATEST_H
#define STREAMREC_KAFKATEST_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/** Environment variable holding the broker's bootstrap address (host:port). */
#define KAFKATEST_BOOTSTRAP_ENV "STREAMREC_TEST_BOOTSTRAP"

/** A bound for one broker round trip (create, flush, commit) on a slow machine. */
#define KAFKATEST_TIMEOUT_MS 30000

/**
 * @brief The bootstrap address from STREAMREC_TEST_BOOTSTRAP.
 *
 * An integration test without a broker must fail, not skip: a suite that
 * silently skips its Kafka tests looks green while testing nothing.
 * @returns the address (owned by the environment), or NULL with errstr filled.
 */
const char *kafkatest_bootstrap(char *errstr, size_t errstr_size);

/** @returns milliseconds on the monotonic clock, for deadlines. */
int64_t kafkatest_clock_ms(void);

/**
 * @brief Make a name unique to this process and call: prefix-PID-MS-COUNTER.
 *
 * Only [A-Za-z0-9._-] are added to prefix, so a valid topic prefix gives a
 * valid topic name (Kafka allows at most 249 characters).
 * @returns 0, or -1 with errstr filled when name_size is too small.
 */
int kafkatest_unique_name(const char *prefix, char *name, size_t name_size, char *errstr,
			  size_t errstr_size);

/** One topic to create. */
struct kafkatest_topic {
	const char *name;
	int partition_count;
};

/**
 * @brief Create topics with the Admin API and wait until they are usable.
 *
 * Waits for the CreateTopics result, then until the broker's metadata shows
 * each topic with partition_count partitions that all have a leader. A topic
 * that already exists is accepted if its metadata matches. Each wait is
 * bounded by timeout_ms.
 * @returns 0, or -1 with errstr naming the topic and the error.
 */
int kafkatest_create_topics(const char *bootstrap, const struct kafkatest_topic *topics,
			    size_t topic_count, int timeout_ms, char *errstr, size_t errstr_size);

/** @brief kafkatest_create_topics() for one topic. */
int kafkatest_create_topic(const char *bootstrap, const char *topic, int partition_count,
			   int timeout_ms, char *errstr, size_t errstr_size);

/**
 * An idempotent producer (enable.idempotence=true, acks=all, linger.ms=5)
 * that counts its delivery reports.
 */
struct kafkatest_producer;

/**
 * @brief Create a producer.
 * @param overrides NULL, or a NULL-terminated list of key, value pairs of
 *        librdkafka properties applied after the defaults.
 * @returns the producer, or NULL with errstr filled.
 */
struct kafkatest_producer *kafkatest_producer_new(const char *bootstrap,
						  const char *const *overrides, char *errstr,
						  size_t errstr_size);

/**
 * @brief Flush for at most KAFKATEST_TIMEOUT_MS, purge what is left, destroy.
 * Accepts NULL.
 */
void kafkatest_producer_free(struct kafkatest_producer *producer);

/** @returns the producer's librdkafka handle, still owned by the producer. */
rd_kafka_t *kafkatest_producer_handle(struct kafkatest_producer *producer);

/**
 * @brief Queue one message (the bytes are copied).
 * @param partition a partition, or RD_KAFKA_PARTITION_UA for the key's partitioner.
 * @param value NULL with value_len 0 produces a null value (a tombstone).
 * A full local queue is waited on for at most KAFKATEST_TIMEOUT_MS.
 * @returns 0, or -1 with errstr filled.
 */
int kafkatest_produce(struct kafkatest_producer *producer, const char *topic, int32_t partition,
		      const void *key, size_t key_len, const void *value, size_t value_len,
		      char *errstr, size_t errstr_size);

/**
 * @brief Wait until every queued message has its delivery report.
 * @returns 0 when all reports arrived within timeout_ms and every one was a
 *          success, or -1 with errstr naming the first failure (or the
 *          number of messages still undelivered).
 */
int kafkatest_producer_flush(struct kafkatest_producer *producer, int timeout_ms, char *errstr,
			     size_t errstr_size);

/** @returns the number of successful delivery reports so far. */
long kafkatest_producer_delivered(const struct kafkatest_producer *producer);

/** @returns the number of failed delivery reports so far. */
long kafkatest_producer_failed(const struct kafkatest_producer *producer);

/**
 * @brief Create a group consumer with manual offsets: enable.auto.commit=false,
 * enable.auto.offset.store=false, auto.offset.reset=earliest; the main queue
 * is redirected to the consumer queue (rd_kafka_poll_set_consumer).
 * @param overrides as for kafkatest_producer_new().
 * @returns the handle (free with kafkatest_consumer_close()), or NULL with errstr filled.
 */
rd_kafka_t *kafkatest_consumer_new(const char *bootstrap, const char *group_id,
				   const char *const *overrides, char *errstr, size_t errstr_size);

/** @brief Subscribe to one topic. @returns 0, or -1 with errstr filled. */
int kafkatest_subscribe(rd_kafka_t *consumer, const char *topic, char *errstr, size_t errstr_size);

/**
 * @brief Store a consumed message's offset + 1 for the next commit
 * (librdkafka 2.0 has no rd_kafka_offset_store_message()).
 * @returns 0, or -1 with errstr filled (e.g. the partition is no longer assigned).
 */
int kafkatest_store_offset(rd_kafka_t *consumer, const rd_kafka_message_t *message, char *errstr,
			   size_t errstr_size);

/** @brief Commit the stored offsets and wait for the broker's answer. */
int kafkatest_commit(rd_kafka_t *consumer, char *errstr, size_t errstr_size);

/**
 * @brief Read the group's committed offsets of partitions 0..partition_count-1
 * of topic into offsets[] (RD_KAFKA_OFFSET_INVALID where nothing is committed).
 */
int kafkatest_committed_offsets(rd_kafka_t *consumer, const char *topic, int partition_count,
				int64_t *offsets, int timeout_ms, char *errstr, size_t errstr_size);

/**
 * @brief Read the high watermarks (next offset to be written) of a topic's partitions.
 *
 * Use a handle that is not fetching, such as kafkatest_producer_handle():
 * on a consuming handle each query waits behind the fetch long poll on the
 * same connection (fetch.wait.max.ms, 500 ms by default).
 */
int kafkatest_high_watermarks(rd_kafka_t *handle, const char *topic, int partition_count,
			      int64_t *offsets, int timeout_ms, char *errstr, size_t errstr_size);

/** @brief Leave the group (rd_kafka_consumer_close) and destroy the handle. Accepts NULL. */
void kafkatest_consumer_close(rd_kafka_t *consumer);

#endif
