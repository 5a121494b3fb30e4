/*
 * consumer: a librdkafka high-level group consumer driven by one libev loop.
 *
 * Offsets belong to the caller. Automatic commit and automatic offset store
 * are off. On assignment each partition starts at the caller's stored offset
 * + 1 (offset_for), or, when the caller has none, at the group's committed
 * offset, or else where auto.offset.reset says (earliest by default). On
 * revocation the caller writes its state (on_revoke) before the partitions go.
 * The caller commits Kafka offsets with consumer_commit() once its state is
 * durable, so lag tools see the truth and nothing moves past unwritten state.
 *
 * Everything runs in the loop's thread: callbacks are called from the loop's
 * ev_io/ev_idle watchers (and from consumer_close()). Nothing here blocks the
 * loop except consumer_commit(async=false) and consumer_close(), both bounded.
 *
 * The data crosses as plain structs; no librdkafka handle leaves this module.
 */
#ifndef STREAMREC_CONSUMER_H
#define STREAMREC_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;

#define CONSUMER_FROM_BEGINNING (-2) /**< offset_for: start at the first retained offset */
#define CONSUMER_FROM_END       (-3) /**< offset_for: start after the last offset */

/** One librdkafka property, applied verbatim with rd_kafka_conf_set(). */
struct consumer_property {
	const char *name;
	const char *value;
};

/** A consumed message. Every pointer is valid only during on_message. */
struct consumer_message {
	const char *topic;
	int32_t partition;
	int64_t offset;
	const void *key; /* NULL when the message has no key */
	size_t key_len;
	const void *value; /* NULL for a tombstone */
	size_t value_len;
	int64_t timestamp_ms; /* -1 when the message carries none */
	const void *internal; /* for consumer_message_header(); not for the caller */
};

/** Where a partition's consumption should resume: the next offset to read. */
struct consumer_position {
	const char *topic;
	int32_t partition;
	int64_t next_offset;
};

/** What the consumer calls back, in the loop's thread. Only on_message is required. */
struct consumer_callbacks {
	/** One message, in offset order per partition. */
	void (*on_message)(const struct consumer_message *message, void *opaque);
	/**
	 * The caller's stored offset of a newly assigned partition: the last
	 * offset whose effect is durable. Consumption resumes at *stored + 1;
	 * or, with 1 returned and *stored set to CONSUMER_FROM_BEGINNING or
	 * CONSUMER_FROM_END, at the partition's first retained or next offset.
	 * @returns 1 found, 0 none (use the group's commit or
	 *          auto.offset.reset), -1 error (reported, treated as none).
	 */
	int (*offset_for)(const char *topic, int32_t partition, int64_t *stored_offset,
			  void *opaque);
	/**
	 * A partition is about to be revoked (rebalance, lost, or close):
	 * write its state now. @returns 0, or -1 (reported as a fatal error).
	 */
	int (*on_revoke)(const char *topic, int32_t partition, void *opaque);
	/** A librdkafka error; fatal means the consumer cannot go on. */
	void (*on_error)(const char *what, bool fatal, void *opaque);
	/**
	 * Consumer lag of an assigned partition, every lag_interval_ms: lag is
	 * the messages between the consumer's position (the next offset
	 * on_message will see) and the high watermark; committed_lag those
	 * between the offset this consumer last committed and the high
	 * watermark, or -1 until it has committed one.
	 */
	void (*on_lag)(const char *topic, int32_t partition, int64_t lag, int64_t committed_lag,
		       void *opaque);
	/**
	 * A message of a partition that waits (consumer_hold() or
	 * consumer_retry_later()): it is not delivered now but read again, in
	 * order, once the partition resumes. The caller may look ahead at it
	 * (prepare work it will need) but must not apply it. @returns true to
	 * go on looking ahead at a held partition, false when that is enough
	 * (the partition is paused). Optional (without it, a held partition is
	 * paused at its next message).
	 */
	bool (*on_skip)(const struct consumer_message *message, void *opaque);
	/**
	 * Called once, when the consumer has read what its partitions held when
	 * they were first assigned: each partition's high watermark then (asked
	 * of the broker at the assignment, a blocking round trip) reached by its
	 * position; an empty partition at once; a subscribed topic the broker
	 * does not know, with nothing assigned, at once too. Optional.
	 */
	void (*on_caught_up)(void *opaque);
};

/** Consumer settings. Strings are copied by consumer_new(); nothing is owned. */
struct consumer_config {
	const char *brokers;  /* bootstrap.servers */
	const char *group_id; /* group.id */
	const char *const *topics;
	size_t topic_count;
	/* applied after the defaults, so they can override them */
	const struct consumer_property *properties;
	size_t property_count;
	/* bound of one wakeup: messages (0: 10000) and time (0: 5 ms) */
	size_t max_messages_per_wakeup;
	int max_wakeup_us;
	/* how often on_lag is called (0: 1000 ms) */
	int lag_interval_ms;
	struct consumer_callbacks callbacks;
	void *opaque;
	/**
	 * librdkafka's own log lines (level: syslog severity 0-7, facility such as
	 * "FAIL"), instead of librdkafka's default print to stderr; NULL keeps the
	 * default. Called from librdkafka's internal threads, any time from
	 * consumer_new() to its close: the function must be thread-safe (one write
	 * of one line is).
	 */
	void (*log)(int level, const char *facility, const char *message, void *opaque);
	void *log_opaque;
};

struct consumer;

/**
 * @brief Create the consumer, subscribe, and attach it to loop.
 *
 * Defaults (overridable by properties): enable.auto.commit=false,
 * enable.auto.offset.store=false, auto.offset.reset=earliest. A bad property
 * is reported with its name: "kafka property foo.bar: No such configuration
 * property".
 * @returns the consumer (release with consumer_close()), or NULL with errstr filled.
 */
struct consumer *consumer_new(const struct consumer_config *config, struct ev_loop *loop,
			      char *errstr, size_t errstr_size);

/**
 * @brief Commit positions (next offsets to read) for the group.
 *
 * Call it after the state these positions describe is durable. async=true
 * returns at once (a failure arrives later through on_error); async=false
 * waits for the broker and blocks the loop meanwhile (use it at shutdown).
 * @returns 0, or -1 with errstr filled.
 */
int consumer_commit(struct consumer *consumer, const struct consumer_position *positions,
		    size_t position_count, bool async, char *errstr, size_t errstr_size);

/**
 * @brief Take the message at topic/partition/offset again later: the
 * partition is paused, messages of it already fetched are not delivered,
 * and after delay_ms it is sought back to offset and resumed. For input the
 * caller cannot take yet through no fault of the input (a writer schema
 * the registry cannot give right now): nothing is lost or skipped.
 * @returns 0, or -1 with errstr filled.
 */
int consumer_retry_later(struct consumer *consumer, const char *topic, int32_t partition,
			 int64_t offset, int delay_ms, char *errstr, size_t errstr_size);

/** @returns true while a partition waits to re-read a message. */
bool consumer_retrying(const struct consumer *consumer);

/**
 * @brief Hold the message at topic/partition/offset until consumer_release():
 * as consumer_retry_later() without a timer. For a message that waits for
 * work done elsewhere (its text embedded): its offset is not the caller's
 * to mark, nothing of the partition is delivered meanwhile, other
 * partitions flow. The partition goes on being read for on_skip (look-ahead)
 * until on_skip returns false, and is paused then. A partition already held
 * or waiting stays so (for its earlier message).
 * @returns 0, or -1 with errstr filled.
 */
int consumer_hold(struct consumer *consumer, const char *topic, int32_t partition, int64_t offset,
		  char *errstr, size_t errstr_size);

/**
 * @brief Undo consumer_hold() now: the partition is sought back to the held
 * message and resumed (unless consumer_pause_all() paused everything), so
 * the held message is the next one delivered. Not held: nothing happens.
 * The seek waits for librdkafka's own thread to take it (bounded at 5 s; well
 * under a millisecond on a running consumer), as consumer_retry_later()'s does.
 */
void consumer_release(struct consumer *consumer, const char *topic, int32_t partition);

/**
 * @brief Stop fetching every assigned partition (and those assigned later)
 * until consumer_resume_all(); messages already fetched are still delivered.
 * @returns 0, or -1 with errstr filled.
 */
int consumer_pause_all(struct consumer *consumer, char *errstr, size_t errstr_size);

/** @brief Undo consumer_pause_all(). @returns 0, or -1 with errstr filled. */
int consumer_resume_all(struct consumer *consumer, char *errstr, size_t errstr_size);

/** @returns whether the consumer holds at least one partition (for /readyz). */
bool consumer_assigned(const struct consumer *consumer);

/** @returns how many partitions the consumer holds. */
size_t consumer_assigned_count(const struct consumer *consumer);

/** @returns whether messages fetched from Kafka wait in the consumer's queue. */
bool consumer_backlog(const struct consumer *consumer);

/**
 * @returns for how long (µs, monotonic) the consumer's queue has held messages
 * after every serving of it: 0 when the last one emptied it. Learning is
 * behind the input while this grows.
 */
int64_t consumer_backlog_us(const struct consumer *consumer);

/**
 * @returns whether a broker seems reachable: false after "all brokers down"
 * or a statistics report with no broker up; true again after a message, an
 * assignment or a statistics report with a broker up. True at start.
 */
bool consumer_broker_up(const struct consumer *consumer);

/**
 * @brief Look a header of a message up by name (the last one wins).
 * @returns true with *value (NULL for a null header) and *value_len set, or false.
 */
bool consumer_message_header(const struct consumer_message *message, const char *name,
			     const void **value, size_t *value_len);

/**
 * @brief Leave the group (on_revoke is called for what is still assigned),
 * waiting at most timeout_ms, then destroy everything. Detaches from the loop.
 * Accepts NULL.
 * @returns 0, or -1 when the close failed or timed out (the consumer is freed anyway).
 */
int consumer_close(struct consumer *consumer, int timeout_ms);

#endif
