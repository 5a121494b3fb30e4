/*
 * producer: an idempotent, lz4-compressed librdkafka producer on a libev loop.
 *
 * Delivery reports are served in the loop's thread: librdkafka writes to a
 * pipe when its main queue becomes non-empty, an ev_io watcher drains the
 * pipe and polls with a zero timeout (bounded per wakeup, an ev_idle watcher
 * finishing what a bounded wakeup left). Sending never blocks the loop.
 *
 * Dead letters carry their provenance in headers (PRODUCER_HEADER_*), the
 * numbers as decimal strings, so any Kafka tool can read them.
 */
#ifndef STREAMREC_PRODUCER_H
#define STREAMREC_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;

/** Header names of a dead letter. */
#define PRODUCER_HEADER_REASON           "streamrec.reason"
#define PRODUCER_HEADER_SOURCE_TOPIC     "streamrec.source.topic"
#define PRODUCER_HEADER_SOURCE_PARTITION "streamrec.source.partition"
#define PRODUCER_HEADER_SOURCE_OFFSET    "streamrec.source.offset"
/** Set to "true" when the value was cut to fit the size limits; then */
#define PRODUCER_HEADER_TRUNCATED        "streamrec.truncated"
/** ... the value's size in bytes before the cut. */
#define PRODUCER_HEADER_ORIGINAL_SIZE    "streamrec.original.size"

/** One librdkafka property, applied verbatim with rd_kafka_conf_set(). */
struct producer_property {
	const char *name;
	const char *value;
};

/** One message header; value NULL makes a null header. */
struct producer_header {
	const char *name;
	const void *value;
	size_t value_len;
};

/** Producer settings. Strings are copied by producer_new(); nothing is owned. */
struct producer_config {
	const char *brokers; /* bootstrap.servers */
	/* applied after the defaults (enable.idempotence=true, compression.type=lz4, linger.ms=5)
	 */
	const struct producer_property *properties;
	size_t property_count;
	/**
	 * A delivery failure ("recs [2]: Local: Message timed out") or a
	 * librdkafka error; fatal means the producer cannot go on (e.g. an
	 * idempotence guarantee was broken), or that a dead letter was not
	 * delivered ("events[0]@300: dead letter not delivered to ..."): its
	 * source offset must not be committed. Called in the loop's thread.
	 */
	void (*on_error)(const char *what, bool fatal, void *opaque);
	void *opaque;
	/**
	 * librdkafka's own log lines (level: syslog severity 0-7, facility such as
	 * "FAIL"), instead of librdkafka's default print to stderr; NULL keeps the
	 * default. Called from librdkafka's internal threads, any time from
	 * producer_new() to its close: the function must be thread-safe (one write
	 * of one line is).
	 */
	void (*log)(int level, const char *facility, const char *message, void *opaque);
	void *log_opaque;
};

/** Delivery report counts since producer_new(). */
struct producer_counts {
	uint64_t delivered;
	uint64_t failed;
};

struct producer;

/**
 * @brief Create the producer and attach its delivery reports to loop.
 * A bad property is reported with its name ("kafka property foo: ...").
 * @returns the producer, or NULL with errstr filled.
 */
struct producer *producer_new(const struct producer_config *config, struct ev_loop *loop,
			      char *errstr, size_t errstr_size);

/** Returned when the producer's queue stayed full: nothing is wrong with the message. */
#define PRODUCER_QUEUE_FULL (-2)

/**
 * @brief Queue one message; key, value and headers are copied.
 *
 * The partition comes from the key (librdkafka's default partitioner). A
 * full local queue is served (zero-timeout poll) and retried a few times,
 * never waited on.
 * @param value NULL with value_len 0 sends a tombstone.
 * @returns 0, PRODUCER_QUEUE_FULL with errstr filled ("recs: queue full": not
 * queued, try again later), or -1 with errstr filled.
 */
int producer_send(struct producer *producer, const char *topic, const void *key, size_t key_len,
		  const void *value, size_t value_len, const struct producer_header *headers,
		  size_t header_count, char *errstr, size_t errstr_size);

/** producer_send_to(): the partitioner chooses (by key). */
#define PRODUCER_ANY_PARTITION (-1)

/**
 * @brief producer_send() to a chosen partition (PRODUCER_ANY_PARTITION: by
 * key), as a changelog partitioned like its source topic needs.
 */
int producer_send_to(struct producer *producer, const char *topic, int32_t partition,
		     const void *key, size_t key_len, const void *value, size_t value_len,
		     const struct producer_header *headers, size_t header_count, char *errstr,
		     size_t errstr_size);

/**
 * @brief Send a dead letter: the original key and value, with headers naming
 * the reason and the source topic, partition and offset.
 *
 * Nothing accepted is dropped for its size: a value that would not fit in
 * the producer's message.max.bytes (with key, headers and overhead) is cut
 * to fit, and one the broker still refuses as too large (the topic's
 * max.message.bytes) is sent again with half its value, down to none; a cut
 * copy carries PRODUCER_HEADER_TRUNCATED and PRODUCER_HEADER_ORIGINAL_SIZE.
 * A dead letter that fails for good is reported to on_error as fatal.
 * Until its delivery report it counts in producer_dead_letters_pending().
 * @returns 0, PRODUCER_QUEUE_FULL when the producer's queue stayed full (not
 * queued: try again later, nothing is wrong with the letter), or -1 with
 * errstr filled (not queued).
 */
int producer_send_dead_letter(struct producer *producer, const char *dead_letter_topic,
			      const char *reason, const char *source_topic,
			      int32_t source_partition, int64_t source_offset, const void *key,
			      size_t key_len, const void *value, size_t value_len, char *errstr,
			      size_t errstr_size);

/** @returns dead letters queued without their final delivery report yet. */
uint64_t producer_dead_letters_pending(const struct producer *producer);

/**
 * @brief Wait at most timeout_ms until every dead letter has its final
 * delivery report (served here, so the callbacks run, on_error included).
 * Blocks the loop: for the moment before offsets are committed.
 * @returns 0, or -1 with errstr naming how many are still pending.
 */
int producer_wait_dead_letters(struct producer *producer, int timeout_ms, char *errstr,
			       size_t errstr_size);

/**
 * @brief Wait at most timeout_ms until every queued message has its delivery
 * report (served here, so the callbacks run). Blocks the loop: for shutdown.
 * @returns 0, or -1 with errstr naming how many messages are still queued.
 */
int producer_flush(struct producer *producer, int timeout_ms, char *errstr, size_t errstr_size);

/** @returns messages queued or in flight, without their delivery report yet. */
int producer_outq_len(const struct producer *producer);

/** @returns the delivery report counts so far. */
struct producer_counts producer_counts(const struct producer *producer);

/**
 * @brief Detach from the loop, drop what is still queued (call
 * producer_flush() first to keep it) and destroy. Accepts NULL.
 */
void producer_free(struct producer *producer);

#endif
