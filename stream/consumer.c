/*
 * consumer: librdkafka's high-level consumer on a libev loop.
 *
 * Loop integration (STYLE rule 3): the main queue is forwarded to the
 * consumer queue (rd_kafka_poll_set_consumer), so one queue carries messages,
 * rebalances, errors, statistics and commit results. stream/wakeup serves
 * that queue on the loop (pipe + idle watcher) with zero-timeout
 * rd_kafka_consumer_poll() calls, at most max_messages_per_wakeup messages
 * or max_wakeup_us per wakeup.
 *
 * Consumer lag comes from a loop timer, not from the statistics: each
 * assigned partition's high watermark (librdkafka's cached one, kept fresh
 * by every fetch response, so no broker round trip) minus the consumer's
 * position (rd_kafka_position(): the next offset handed to the caller), and
 * minus the offset this consumer last committed. The statistics' own
 * consumer_lag is measured from the committed offset, which moves once per
 * commit interval, so it read thousands of messages on a caught-up daemon.
 *
 * Statistics are read for broker state only (brokers → nodeid/state, with
 * jansson), which /readyz reports.
 *
 * A message the caller cannot take yet (a writer schema the registry cannot
 * give right now) is re-read later: consumer_retry_later() pauses its
 * partition, drops what was already fetched of it, and on a timer seeks
 * back to that message and resumes. consumer_hold() is the same without
 * the timer, until the caller's consumer_release() (a text being embedded
 * off the loop), and without pausing at once: the messages that follow are
 * shown to on_skip (the caller looks ahead at them) until it has seen
 * enough, and only then is the partition paused. librdkafka's pause purges
 * what was fetched of the partition, so a paused partition shows nothing
 * more. Either way the partition is sought back to the message and read
 * again from there.
 */
#include "errstr.h"
#include "kafkaconf.h"
#include "consumer.h"
#include "wakeup.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_MESSAGES_PER_WAKEUP 10000
#define DEFAULT_MAX_WAKEUP_US           5000
#define DEFAULT_LAG_INTERVAL_MS         1000
#define CLOSE_POLL_MS                   100
/* on_caught_up: the bound of one high-watermark query at an assignment */
#define CATCH_UP_QUERY_MS 5000

struct consumer {
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue; /* the consumer queue, with the main queue forwarded to it */
	struct ev_loop *loop;
	struct wakeup wakeup;
	struct consumer_callbacks callbacks;
	void *opaque;
	void (*log)(int level, const char *facility, const char *message, void *opaque);
	void *log_opaque;
	size_t max_messages_per_wakeup;
	int64_t max_wakeup_us;
	int64_t backlog_since_us; /* since when every serving left messages queued; 0: emptied */
	size_t assigned_count;
	bool paused;
	bool broker_up;
	ev_timer lag_timer;
	/* per assigned partition: the offset consumption started at (set on
	 * assignment; the position until the first message) and the last offset
	 * this consumer committed; RD_KAFKA_OFFSET_INVALID when unknown */
	rd_kafka_topic_partition_list_t *start_offsets;
	rd_kafka_topic_partition_list_t *committed_offsets;
	/* partitions waiting to re-read a message: the offset to seek back to;
	 * on the timer (waiting) or on consumer_release() (held; its opaque is
	 * non-NULL once the partition is paused) */
	rd_kafka_topic_partition_list_t *waiting, *held;
	ev_timer retry_timer;
	/* on_caught_up: per partition of the first assignments, the high
	 * watermark to reach (offset), -1 once reached; NULL once told */
	rd_kafka_topic_partition_list_t *catch_up;
};

/* ---- small helpers ------------------------------------------------------------ */

static void report(struct consumer *c, bool fatal, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(struct consumer *c, bool fatal, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	if (c->callbacks.on_error == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	c->callbacks.on_error(what, fatal, c->opaque);
}

static int64_t monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- statistics: broker states ------------------------------------------------------ */

/*
 * Counts the brokers in state UP (real brokers: nodeid >= 0) in librdkafka's
 * statistics document, read with jansson. @returns the count, or -1 when the
 * document is not the JSON object librdkafka documents.
 */
static int stats_brokers_up(const char *json, size_t json_len)
{
	json_error_t error;
	json_t *root = json_loadb(json, json_len, 0, &error);
	json_t *brokers = root ? json_object_get(root, "brokers") : NULL;
	const char *name;
	json_t *broker;
	int up = -1;
	if (json_is_object(brokers)) {
		up = 0;
		json_object_foreach(brokers, name, broker)
		{
			const char *state = json_string_value(json_object_get(broker, "state"));
			json_t *nodeid = json_object_get(broker, "nodeid");
			if (state != NULL && strcmp(state, "UP") == 0 && json_is_integer(nodeid) &&
			    json_integer_value(nodeid) >= 0)
				up++;
		}
	}
	json_decref(root);
	return up;
}

/* ---- per-partition offsets, for the lag ------------------------------------------ */

/* Sets a partition's offset in one of the consumer's tables, adding it when absent. */
static void offset_table_set(rd_kafka_topic_partition_list_t *table, const char *topic,
			     int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(table, topic, partition);
	if (tp == NULL)
		tp = rd_kafka_topic_partition_list_add(table, topic, partition);
	tp->offset = offset;
}

/* @returns a partition's offset in one of the consumer's tables, or RD_KAFKA_OFFSET_INVALID. */
static int64_t offset_table_get(rd_kafka_topic_partition_list_t *table, const char *topic,
				int32_t partition)
{
	rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(table, topic, partition);
	return tp != NULL ? tp->offset : RD_KAFKA_OFFSET_INVALID;
}

/* Remembers the offsets of a successful commit (a per-partition error leaves its entry be). */
static void record_committed(struct consumer *c, const rd_kafka_topic_partition_list_t *offsets)
{
	for (int i = 0; offsets != NULL && i < offsets->cnt; i++)
		if (offsets->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
		    offsets->elems[i].offset >= 0)
			offset_table_set(c->committed_offsets, offsets->elems[i].topic,
					 offsets->elems[i].partition, offsets->elems[i].offset);
}

/* ---- catching up (on_caught_up) ------------------------------------------------------ */

/* Tells on_caught_up, once. */
static void tell_caught_up(struct consumer *c)
{
	if (c->catch_up == NULL)
		return;
	rd_kafka_topic_partition_list_destroy(c->catch_up);
	c->catch_up = NULL;
	c->callbacks.on_caught_up(c->opaque);
}

/* Tells on_caught_up when every partition's target is reached. */
static void check_caught_up(struct consumer *c)
{
	for (int i = 0; c->catch_up != NULL && i < c->catch_up->cnt; i++)
		if (c->catch_up->elems[i].offset >= 0)
			return;
	tell_caught_up(c);
}

/* The partition's next offset to read is `next`: its target may be reached. */
static void note_caught_up_to(struct consumer *c, const char *topic, int32_t partition,
			      int64_t next)
{
	rd_kafka_topic_partition_t *t =
	    rd_kafka_topic_partition_list_find(c->catch_up, topic, partition);
	if (t == NULL || t->offset < 0 || next < t->offset)
		return;
	t->offset = -1;
	check_caught_up(c);
}

/*
 * The targets of newly assigned partitions: their high watermarks now, asked
 * of the broker (the cached ones are unknown until a fetch answers, and an
 * empty partition's may never be cached). A partition whose watermark
 * cannot be had keeps the caller waiting (its own bound decides).
 */
static void set_catch_up_targets(struct consumer *c,
				 const rd_kafka_topic_partition_list_t *partitions)
{
	for (int i = 0; c->catch_up != NULL && i < partitions->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &partitions->elems[i];
		if (rd_kafka_topic_partition_list_find(c->catch_up, tp->topic, tp->partition))
			continue;
		int64_t low = -1, high = -1;
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
		    c->rk, tp->topic, tp->partition, &low, &high, CATCH_UP_QUERY_MS);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			report(c, false, "%s [%" PRId32 "]: high watermark: %s", tp->topic,
			       tp->partition, rd_kafka_err2str(err));
			high = INT64_MAX; /* never reached: the caller's bound ends the wait */
		}
		rd_kafka_topic_partition_list_add(c->catch_up, tp->topic, tp->partition)->offset =
		    high > low ? high : -1;
	}
	check_caught_up(c);
}

/* Messages from offset up to the high watermark; -1 when either is unknown. */
static int64_t lag_behind(int64_t high_watermark, int64_t offset)
{
	if (high_watermark < 0 || offset < 0)
		return -1;
	return high_watermark > offset ? high_watermark - offset : 0;
}

/*
 * Reports every assigned partition's lag (on_lag) once per lag interval:
 * behind the position, and behind this consumer's last commit. Until the
 * first message the position is where consumption started (the caller's
 * stored offset + 1); a partition with nothing in it has no lag at all.
 */
static void on_lag_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct consumer *c = w->data;
	rd_kafka_topic_partition_list_t *assignment = NULL;
	(void)revents;
	if (c->callbacks.on_lag == NULL && c->catch_up == NULL) {
		ev_timer_stop(loop, w); /* it ran for the catching up only, now told */
		return;
	}
	if (rd_kafka_assignment(c->rk, &assignment) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (rd_kafka_position(c->rk, assignment) != RD_KAFKA_RESP_ERR_NO_ERROR)
		goto out_destroy_assignment;
	for (int i = 0; i < assignment->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &assignment->elems[i];
		int64_t low = -1, high = -1, position, committed, lag;
		/* the position passes what a fetch skips (transaction markers) */
		if (c->catch_up != NULL && tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0)
			note_caught_up_to(c, tp->topic, tp->partition, tp->offset);
		if (rd_kafka_get_watermark_offsets(c->rk, tp->topic, tp->partition, &low, &high) !=
			RD_KAFKA_RESP_ERR_NO_ERROR ||
		    high < 0)
			continue;
		committed = offset_table_get(c->committed_offsets, tp->topic, tp->partition);
		position = tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0
			       ? tp->offset
			       : offset_table_get(c->start_offsets, tp->topic, tp->partition);
		if (position < 0)
			position = committed;
		/* a watermark cached from an earlier assignment of the partition
		 * can lie below where consumption now starts: a false "no lag"
		 * until the next fetch brings the real one */
		if (position > high)
			continue;
		lag = lag_behind(high, position);
		if (lag < 0 && (high == 0 || high == low))
			lag = 0;
		if (lag >= 0 && c->callbacks.on_lag != NULL)
			c->callbacks.on_lag(tp->topic, tp->partition, lag,
					    lag_behind(high, committed), c->opaque);
	}
out_destroy_assignment:
	rd_kafka_topic_partition_list_destroy(assignment);
}

/* ---- librdkafka callbacks ---------------------------------------------------------- */

static bool is_waiting(const struct consumer *c, const char *topic, int32_t partition);

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
	struct consumer *c = opaque;
	(void)rk;
	int brokers_up = stats_brokers_up(json, json_len);
	if (brokers_up < 0)
		report(c, false, "statistics: malformed JSON document of %zu bytes", json_len);
	else
		c->broker_up = brokers_up > 0;
	return 0; /* librdkafka frees json */
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct consumer *c = opaque;
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		c->broker_up = false;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char fatal[256];
		rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof fatal);
		report(c, true, "kafka consumer fatal error: %s: %s", rd_kafka_err2name(orig),
		       fatal);
		return;
	}
	report(c, false, "kafka consumer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err),
	       reason);
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	struct consumer *c = opaque;
	(void)rk;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		record_committed(c, offsets);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) {
		for (int i = 0; offsets != NULL && i < offsets->cnt; i++)
			if (offsets->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
				report(c, false, "offset commit %s [%" PRId32 "]@%" PRId64 ": %s",
				       offsets->elems[i].topic, offsets->elems[i].partition,
				       offsets->elems[i].offset,
				       rd_kafka_err2str(offsets->elems[i].err));
		return;
	}
	report(c, false, "offset commit: %s", rd_kafka_err2str(err));
}

static void set_start_offsets(struct consumer *c, rd_kafka_topic_partition_list_t *partitions)
{
	for (int i = 0; i < partitions->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &partitions->elems[i];
		int64_t stored = -1;
		int found = 0;
		tp->offset =
		    RD_KAFKA_OFFSET_INVALID; /* the group's commit, else auto.offset.reset */
		if (c->callbacks.offset_for != NULL)
			found =
			    c->callbacks.offset_for(tp->topic, tp->partition, &stored, c->opaque);
		if (found < 0)
			report(c, false,
			       "%s [%" PRId32 "]: stored offset unreadable; using the "
			       "group's committed offset",
			       tp->topic, tp->partition);
		else if (found > 0 && stored >= 0)
			tp->offset = stored + 1;
		else if (found > 0 && stored == CONSUMER_FROM_BEGINNING)
			tp->offset = RD_KAFKA_OFFSET_BEGINNING;
		else if (found > 0 && stored == CONSUMER_FROM_END)
			tp->offset = RD_KAFKA_OFFSET_END;
		offset_table_set(c->start_offsets, tp->topic, tp->partition, tp->offset);
	}
}

static void on_assign(struct consumer *c, rd_kafka_topic_partition_list_t *partitions,
		      bool cooperative)
{
	set_start_offsets(c, partitions);
	if (cooperative) {
		rd_kafka_error_t *error = rd_kafka_incremental_assign(c->rk, partitions);
		if (error != NULL) {
			report(c, true, "incremental assign of %d partitions: %s", partitions->cnt,
			       rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
			return;
		}
		c->assigned_count += (size_t)partitions->cnt;
	} else {
		rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, partitions);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			report(c, true, "assign of %d partitions: %s", partitions->cnt,
			       rd_kafka_err2str(err));
			return;
		}
		c->assigned_count = (size_t)partitions->cnt;
	}
	if (partitions->cnt > 0)
		c->broker_up = true;
	set_catch_up_targets(c, partitions);
	if (c->paused && partitions->cnt > 0) {
		rd_kafka_resp_err_t err = rd_kafka_pause_partitions(c->rk, partitions);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			report(c, false, "pause of newly assigned partitions: %s",
			       rd_kafka_err2str(err));
	}
}

/*
 * A revoked partition that waits (held or retried) was paused by us, and
 * librdkafka keeps an application's pause across assignments: resumed here,
 * while it is still assigned, or it would come back (to us, in the next
 * assignment) paused with no wait left to resume it. A consumer paused as a
 * whole stays so: on_assign() pauses what it is given.
 */
static void resume_waiting(struct consumer *c, const char *topic, int32_t partition)
{
	if (c->paused || !is_waiting(c, topic, partition))
		return;
	rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(one, topic, partition);
	rd_kafka_resp_err_t err = rd_kafka_resume_partitions(c->rk, one);
	rd_kafka_topic_partition_list_destroy(one);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		report(c, false, "%s [%" PRId32 "]: resume on revoke: %s", topic, partition,
		       rd_kafka_err2str(err));
}

static void on_revoke(struct consumer *c, rd_kafka_topic_partition_list_t *partitions,
		      bool cooperative)
{
	for (int i = 0; i < partitions->cnt; i++) {
		const char *topic = partitions->elems[i].topic;
		int32_t partition = partitions->elems[i].partition;
		resume_waiting(c, topic, partition);
		rd_kafka_topic_partition_list_del(c->start_offsets, topic, partition);
		rd_kafka_topic_partition_list_del(c->committed_offsets, topic, partition);
		/* a waiting message is the next owner's (or ours again from the stored offset) */
		if (c->waiting != NULL)
			rd_kafka_topic_partition_list_del(c->waiting, topic, partition);
		if (c->held != NULL)
			rd_kafka_topic_partition_list_del(c->held, topic, partition);
	}
	/* lost partitions are already someone else's, but our own state is still ours to write */
	for (int i = 0; i < partitions->cnt && c->callbacks.on_revoke != NULL; i++)
		if (c->callbacks.on_revoke(partitions->elems[i].topic,
					   partitions->elems[i].partition, c->opaque) != 0)
			report(c, true, "%s [%" PRId32 "]: state not written on revoke%s",
			       partitions->elems[i].topic, partitions->elems[i].partition,
			       rd_kafka_assignment_lost(c->rk) ? " (assignment lost)" : "");
	if (cooperative) {
		rd_kafka_error_t *error = rd_kafka_incremental_unassign(c->rk, partitions);
		if (error != NULL) {
			report(c, false, "incremental unassign: %s", rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
		}
		c->assigned_count = c->assigned_count > (size_t)partitions->cnt
					? c->assigned_count - (size_t)partitions->cnt
					: 0;
	} else {
		rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, NULL);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			report(c, false, "unassign: %s", rd_kafka_err2str(err));
		c->assigned_count = 0;
	}
}

/* Serves a rebalance, whether it came as a callback or (during close) as an event. */
static void handle_rebalance(struct consumer *c, rd_kafka_resp_err_t err,
			     rd_kafka_topic_partition_list_t *partitions)
{
	bool cooperative = strcmp(rd_kafka_rebalance_protocol(c->rk), "COOPERATIVE") == 0;
	switch (err) {
	case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS: on_assign(c, partitions, cooperative); break;
	case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS: on_revoke(c, partitions, cooperative); break;
	default:
		report(c, false, "rebalance: %s", rd_kafka_err2str(err));
		if (cooperative) {
			rd_kafka_error_t *error = rd_kafka_incremental_unassign(c->rk, partitions);
			if (error != NULL)
				rd_kafka_error_destroy(error);
		} else {
			rd_kafka_assign(c->rk, NULL);
		}
		c->assigned_count = 0;
		break;
	}
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
	(void)rk;
	handle_rebalance(opaque, err, partitions);
}

/* ---- the loop ------------------------------------------------------------------------ */

static void on_retry_timer(struct ev_loop *loop, ev_timer *w, int revents);

/* Whether a partition waits to re-read a message (timer or hold). */
static bool is_waiting(const struct consumer *c, const char *topic, int32_t partition)
{
	return (c->waiting != NULL &&
		rd_kafka_topic_partition_list_find(c->waiting, topic, partition) != NULL) ||
	       (c->held != NULL &&
		rd_kafka_topic_partition_list_find(c->held, topic, partition) != NULL);
}

/* Pauses a held partition: the caller has looked ahead far enough. */
static void pause_held(struct consumer *c, rd_kafka_topic_partition_t *held)
{
	rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(one, held->topic, held->partition);
	rd_kafka_resp_err_t err = rd_kafka_pause_partitions(c->rk, one);
	rd_kafka_topic_partition_list_destroy(one);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		report(c, false, "hold %s[%" PRId32 "]: pause: %s", held->topic, held->partition,
		       rd_kafka_err2str(err));
	held->opaque = c; /* paused (or tried: the seek back makes it right anyway) */
}

static void deliver(struct consumer *c, rd_kafka_message_t *m)
{
	struct consumer_message message;
	rd_kafka_timestamp_type_t timestamp_type;
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return;
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		/* a subscribed topic that does not exist: nothing to catch up with */
		if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && c->assigned_count == 0)
			tell_caught_up(c);
		report(c, m->err == RD_KAFKA_RESP_ERR__FATAL, "%s [%" PRId32 "]: %s",
		       m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "(no topic)", m->partition,
		       rd_kafka_message_errstr(m));
		return;
	}
	c->broker_up = true;
	message.topic = rd_kafka_topic_name(m->rkt);
	message.partition = m->partition;
	message.offset = m->offset;
	message.key = m->key;
	message.key_len = m->key_len;
	message.value = m->payload;
	message.value_len = m->payload != NULL ? m->len : 0;
	message.timestamp_ms = rd_kafka_message_timestamp(m, &timestamp_type);
	if (timestamp_type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
		message.timestamp_ms = -1;
	message.internal = m;
	if (is_waiting(c, message.topic, message.partition)) {
		/* read again after the seek; a held partition is looked ahead at
		 * until the caller has seen enough */
		bool more =
		    c->callbacks.on_skip != NULL && c->callbacks.on_skip(&message, c->opaque);
		rd_kafka_topic_partition_t *held =
		    c->held != NULL ? rd_kafka_topic_partition_list_find(c->held, message.topic,
									 message.partition)
				    : NULL;
		if (held != NULL && held->opaque == NULL && !more)
			pause_held(c, held);
		return;
	}
	c->callbacks.on_message(&message, c->opaque);
	if (c->catch_up != NULL) /* after the message: it is part of what was caught up with */
		note_caught_up_to(c, message.topic, message.partition, message.offset + 1);
}

/* Serves the queue up to the wakeup's bounds (struct wakeup calls it). */
static void drain(void *opaque)
{
	struct consumer *c = opaque;
	int64_t start_us = monotonic_us();
	size_t served = 0;
	while (served < c->max_messages_per_wakeup) {
		rd_kafka_message_t *m;
		if ((served & 63) == 63 && monotonic_us() - start_us >= c->max_wakeup_us)
			break;
		m = rd_kafka_consumer_poll(c->rk, 0);
		if (m == NULL)
			break;
		served++;
		deliver(c, m);
		rd_kafka_message_destroy(m);
	}
	if (rd_kafka_queue_length(c->queue) == 0)
		c->backlog_since_us = 0;
	else if (c->backlog_since_us == 0)
		c->backlog_since_us = start_us;
}

/* ---- public API ---------------------------------------------------------------------- */

/* Hands a librdkafka log line to the configured logger (librdkafka's threads). */
static void log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
	const struct consumer *owner = rd_kafka_opaque(rk);
	owner->log(level, facility, message, owner->log_opaque);
}

static rd_kafka_conf_t *build_conf(const struct consumer_config *config, struct consumer *c,
				   char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (kafka_conf_set(conf, "bootstrap.servers", config->brokers, errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "group.id", config->group_id, errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) != 0)
		goto out_destroy_conf;
	for (size_t i = 0; i < config->property_count; i++) {
		const struct consumer_property *p = &config->properties[i];
		if (p->name == NULL || p->value == NULL) {
			set_errstr(errstr, errstr_size,
				   "kafka property #%zu: name or value missing", i);
			goto out_destroy_conf;
		}
		if (kafka_conf_set(conf, p->name, p->value, errstr, errstr_size) != 0)
			goto out_destroy_conf;
	}
	rd_kafka_conf_set_opaque(conf, c);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_stats_cb(conf, stats_cb);
	if (c->log != NULL)
		rd_kafka_conf_set_log_cb(conf, log_cb);
	return conf;

out_destroy_conf:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

static int subscribe(struct consumer *c, const struct consumer_config *config, char *errstr,
		     size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *topics =
	    rd_kafka_topic_partition_list_new((int)config->topic_count);
	rd_kafka_resp_err_t err;
	for (size_t i = 0; i < config->topic_count; i++)
		rd_kafka_topic_partition_list_add(topics, config->topics[i], RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(c->rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_errstr(errstr, errstr_size, "subscribe to %zu topics (first %s): %s",
			   config->topic_count, config->topics[0], rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

struct consumer *consumer_new(const struct consumer_config *config, struct ev_loop *loop,
			      char *errstr, size_t errstr_size)
{
	struct consumer *c;
	rd_kafka_conf_t *conf;
	rd_kafka_resp_err_t err;
	char detail[512];

	if (config->brokers == NULL || config->group_id == NULL || config->topic_count == 0 ||
	    config->topics == NULL || config->callbacks.on_message == NULL) {
		set_errstr(errstr, errstr_size,
			   "consumer: brokers, group id, topics and on_message are required");
		return NULL;
	}
	c = calloc(1, sizeof *c);
	if (c == NULL) {
		set_errstr(errstr, errstr_size, "consumer: out of memory");
		return NULL;
	}
	c->loop = loop;
	c->callbacks = config->callbacks;
	c->opaque = config->opaque;
	c->log = config->log;
	c->log_opaque = config->log_opaque;
	c->broker_up = true;
	c->max_messages_per_wakeup = config->max_messages_per_wakeup
					 ? config->max_messages_per_wakeup
					 : DEFAULT_MAX_MESSAGES_PER_WAKEUP;
	c->max_wakeup_us =
	    config->max_wakeup_us > 0 ? config->max_wakeup_us : DEFAULT_MAX_WAKEUP_US;
	c->start_offsets = rd_kafka_topic_partition_list_new(16);
	c->committed_offsets = rd_kafka_topic_partition_list_new(16);
	if (config->callbacks.on_caught_up != NULL)
		c->catch_up = rd_kafka_topic_partition_list_new(16);
	conf = build_conf(config, c, errstr, errstr_size);
	if (conf == NULL)
		goto out_free;
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, detail, sizeof detail);
	if (c->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		set_errstr(errstr, errstr_size, "consumer: %s", detail);
		goto out_free;
	}
	/* conf now belongs to c->rk */
	err = rd_kafka_poll_set_consumer(c->rk);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_errstr(errstr, errstr_size, "consumer: poll_set_consumer: %s",
			   rd_kafka_err2str(err));
		goto out_destroy_rk;
	}
	c->queue = rd_kafka_queue_get_consumer(c->rk);
	if (wakeup_attach(&c->wakeup, loop, c->queue, drain, c, detail, sizeof detail) != 0) {
		set_errstr(errstr, errstr_size, "consumer: %s", detail);
		goto out_destroy_queue;
	}
	if (subscribe(c, config, errstr, errstr_size) != 0)
		goto out_detach;
	wakeup_start(&c->wakeup);
	ev_timer_init(&c->retry_timer, on_retry_timer, 1., 0.);
	c->retry_timer.data = c;
	if (c->callbacks.on_lag != NULL || c->catch_up != NULL) {
		double lag_s = (double)(config->lag_interval_ms > 0 ? config->lag_interval_ms
								   : DEFAULT_LAG_INTERVAL_MS) /
			       1000.0;
		ev_timer_init(&c->lag_timer, on_lag_timer, lag_s, lag_s);
		c->lag_timer.data = c;
		ev_timer_start(loop, &c->lag_timer);
	}
	return c;

out_detach:
	wakeup_detach(&c->wakeup);
out_destroy_queue:
	rd_kafka_queue_destroy(c->queue);
out_destroy_rk:
	rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
out_free:
	rd_kafka_topic_partition_list_destroy(c->committed_offsets);
	rd_kafka_topic_partition_list_destroy(c->start_offsets);
	if (c->catch_up != NULL)
		rd_kafka_topic_partition_list_destroy(c->catch_up);
	free(c);
	return NULL;
}

int consumer_commit(struct consumer *c, const struct consumer_position *positions,
		    size_t position_count, bool async, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *offsets;
	rd_kafka_resp_err_t err;
	int rc = 0;
	if (position_count == 0)
		return 0;
	offsets = rd_kafka_topic_partition_list_new((int)position_count);
	for (size_t i = 0; i < position_count; i++)
		rd_kafka_topic_partition_list_add(offsets, positions[i].topic,
						  positions[i].partition)
		    ->offset = positions[i].next_offset;
	err = rd_kafka_commit(c->rk, offsets, async ? 1 : 0);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_errstr(errstr, errstr_size,
			   "commit of %zu offsets (first %s [%" PRId32 "]@%" PRId64 "): %s",
			   position_count, positions[0].topic, positions[0].partition,
			   positions[0].next_offset, rd_kafka_err2str(err));
		rc = -1;
	} else {
		if (!async)
			record_committed(c, offsets);
		for (int i = 0; !async && i < offsets->cnt; i++) {
			if (offsets->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
				set_errstr(errstr, errstr_size,
					   "commit %s [%" PRId32 "]@%" PRId64 ": %s",
					   offsets->elems[i].topic, offsets->elems[i].partition,
					   offsets->elems[i].offset,
					   rd_kafka_err2str(offsets->elems[i].err));
				rc = -1;
				break;
			}
		}
	}
	rd_kafka_topic_partition_list_destroy(offsets);
	return rc;
}

static int set_paused(struct consumer *c, bool paused, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *assignment = NULL;
	rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &assignment);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = paused ? rd_kafka_pause_partitions(c->rk, assignment)
			     : rd_kafka_resume_partitions(c->rk, assignment);
	if (assignment != NULL)
		rd_kafka_topic_partition_list_destroy(assignment);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_errstr(errstr, errstr_size, "%s: %s", paused ? "pause" : "resume",
			   rd_kafka_err2str(err));
		return -1;
	}
	c->paused = paused;
	return 0;
}

/* Seeks each partition of waiting back to its message and resumes it; frees waiting. */
static void seek_and_resume(struct consumer *c, rd_kafka_topic_partition_list_t *waiting)
{
	rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, waiting, 5000);
	if (error != NULL) {
		report(c, false, "seek back: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	}
	for (int i = 0; i < waiting->cnt; i++)
		if (waiting->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
			report(c, false, "seek back %s[%" PRId32 "] to %" PRId64 ": %s",
			       waiting->elems[i].topic, waiting->elems[i].partition,
			       waiting->elems[i].offset, rd_kafka_err2str(waiting->elems[i].err));
	if (!c->paused)
		rd_kafka_resume_partitions(c->rk, waiting);
	rd_kafka_topic_partition_list_destroy(waiting);
}

static void on_retry_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct consumer *c = w->data;
	rd_kafka_topic_partition_list_t *waiting = c->waiting;
	(void)loop;
	(void)revents;
	if (waiting == NULL)
		return;
	c->waiting = NULL;
	seek_and_resume(c, waiting);
}

/*
 * Adds topic/partition at offset to *list (created when NULL) and, with
 * pause, pauses it; a partition already waiting in either list stays as it is.
 * @returns 0, or -1 with errstr filled.
 */
static int wait_at(struct consumer *c, rd_kafka_topic_partition_list_t **list, const char *topic,
		   int32_t partition, int64_t offset, bool pause, char *errstr, size_t errstr_size)
{
	if (is_waiting(c, topic, partition))
		return 0; /* already waiting, for an earlier message */
	if (*list == NULL && (*list = rd_kafka_topic_partition_list_new(4)) == NULL) {
		set_errstr(errstr, errstr_size, "pause %s[%" PRId32 "]: out of memory", topic,
			   partition);
		return -1;
	}
	rd_kafka_topic_partition_list_add(*list, topic, partition)->offset = offset;
	if (!pause)
		return 0;
	rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
	if (one == NULL) {
		set_errstr(errstr, errstr_size, "pause %s[%" PRId32 "]: out of memory", topic,
			   partition);
		return -1;
	}
	rd_kafka_topic_partition_list_add(one, topic, partition);
	rd_kafka_resp_err_t err = rd_kafka_pause_partitions(c->rk, one);
	rd_kafka_topic_partition_list_destroy(one);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_errstr(errstr, errstr_size, "pause %s[%" PRId32 "]: %s", topic, partition,
			   rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int consumer_retry_later(struct consumer *c, const char *topic, int32_t partition, int64_t offset,
			 int delay_ms, char *errstr, size_t errstr_size)
{
	if (wait_at(c, &c->waiting, topic, partition, offset, true, errstr, errstr_size) != 0)
		return -1;
	if (!ev_is_active(&c->retry_timer)) {
		ev_timer_set(&c->retry_timer, delay_ms / 1000.0, 0.);
		ev_timer_start(c->loop, &c->retry_timer);
	}
	return 0;
}

bool consumer_retrying(const struct consumer *c)
{
	return c->waiting != NULL && c->waiting->cnt > 0;
}

int consumer_hold(struct consumer *c, const char *topic, int32_t partition, int64_t offset,
		  char *errstr, size_t errstr_size)
{
	return wait_at(c, &c->held, topic, partition, offset, false, errstr, errstr_size);
}

void consumer_release(struct consumer *c, const char *topic, int32_t partition)
{
	rd_kafka_topic_partition_t *tp =
	    c->held != NULL ? rd_kafka_topic_partition_list_find(c->held, topic, partition) : NULL;
	if (tp == NULL)
		return;
	rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
	if (one == NULL) {
		report(c, false, "release %s[%" PRId32 "]: out of memory", topic, partition);
		return;
	}
	rd_kafka_topic_partition_list_add(one, topic, partition)->offset = tp->offset;
	rd_kafka_topic_partition_list_del(c->held, topic, partition);
	seek_and_resume(c, one);
}

int consumer_pause_all(struct consumer *c, char *errstr, size_t errstr_size)
{
	return set_paused(c, true, errstr, errstr_size);
}

int consumer_resume_all(struct consumer *c, char *errstr, size_t errstr_size)
{
	return set_paused(c, false, errstr, errstr_size);
}

bool consumer_assigned(const struct consumer *c)
{
	return c->assigned_count > 0;
}

size_t consumer_assigned_count(const struct consumer *c)
{
	return c->assigned_count;
}

bool consumer_backlog(const struct consumer *c)
{
	return rd_kafka_queue_length(c->queue) > 0;
}

int64_t consumer_backlog_us(const struct consumer *c)
{
	return c->backlog_since_us != 0 ? monotonic_us() - c->backlog_since_us : 0;
}

bool consumer_broker_up(const struct consumer *c)
{
	return c->broker_up;
}

bool consumer_message_header(const struct consumer_message *message, const char *name,
			     const void **value, size_t *value_len)
{
	/* the message is ours (deliver() passes it in); headers are parsed lazily in place */
	rd_kafka_message_t *m = (rd_kafka_message_t *)message->internal;
	rd_kafka_headers_t *headers;
	if (m == NULL || rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	return rd_kafka_header_get_last(headers, name, value, value_len) ==
	       RD_KAFKA_RESP_ERR_NO_ERROR;
}

/*
 * Closes through rd_kafka_consumer_close_queue() so the wait is ours to bound:
 * the final revoke arrives on close_queue as a rebalance event (the rebalance
 * callback is not called for events), and is served by handle_rebalance().
 */
int consumer_close(struct consumer *c, int timeout_ms)
{
	rd_kafka_queue_t *close_queue;
	rd_kafka_error_t *error;
	int64_t deadline_us = monotonic_us() + (int64_t)timeout_ms * 1000;
	int rc = 0;

	if (c == NULL)
		return 0;
	if (c->callbacks.on_lag != NULL)
		ev_timer_stop(c->loop, &c->lag_timer);
	ev_timer_stop(c->loop, &c->retry_timer);
	wakeup_detach(&c->wakeup);
	close_queue = rd_kafka_queue_new(c->rk);
	error = rd_kafka_consumer_close_queue(c->rk, close_queue);
	if (error != NULL) {
		report(c, false, "consumer close: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		rc = -1;
		goto out_destroy_queues;
	}
	while (!rd_kafka_consumer_closed(c->rk)) {
		int64_t left_ms = (deadline_us - monotonic_us()) / 1000;
		rd_kafka_event_t *event;
		if (left_ms <= 0) {
			report(c, false, "consumer close: not done within %d ms", timeout_ms);
			rc = -1;
			break;
		}
		event = rd_kafka_queue_poll(close_queue,
					    left_ms < CLOSE_POLL_MS ? (int)left_ms : CLOSE_POLL_MS);
		if (event == NULL)
			continue;
		if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE)
			handle_rebalance(c, rd_kafka_event_error(event),
					 rd_kafka_event_topic_partition_list(event));
		else if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_ERROR)
			report(c, rd_kafka_event_error_is_fatal(event), "consumer close: %s",
			       rd_kafka_event_error_string(event));
		rd_kafka_event_destroy(event);
	}

out_destroy_queues:
	rd_kafka_queue_destroy(close_queue);
	rd_kafka_queue_destroy(c->queue);
	rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	rd_kafka_topic_partition_list_destroy(c->committed_offsets);
	rd_kafka_topic_partition_list_destroy(c->start_offsets);
	if (c->catch_up != NULL)
		rd_kafka_topic_partition_list_destroy(c->catch_up);
	if (c->waiting != NULL)
		rd_kafka_topic_partition_list_destroy(c->waiting);
	if (c->held != NULL)
		rd_kafka_topic_partition_list_destroy(c->held);
	free(c);
	return rc;
}
