/*
 * producer: librdkafka producer with delivery reports served by a libev loop.
 *
 * The main queue is served on the loop by stream/wakeup (pipe + idle
 * watcher), with rd_kafka_poll(rk, 0) a bounded number of times per wakeup.
 */
#include "errstr.h"
#include "kafkaconf.h"
#include "producer.h"
#include "wakeup.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_POLLS_PER_WAKEUP 64
#define QUEUE_FULL_RETRIES   3
/*
 * Room kept below message.max.bytes for what a dead letter adds to its key,
 * value and headers on the wire: the record batch header (61 bytes) and the
 * record's own varints and attributes, with a wide margin.
 */
#define DEAD_LETTER_OVERHEAD_BYTES 1024
/* The msg_opaque of a dead letter, so its delivery report is recognised. */
static char dead_letter_tag;

struct producer {
	rd_kafka_t *rk;
	rd_kafka_queue_t *main_queue;
	struct ev_loop *loop;
	struct wakeup wakeup;
	void (*on_error)(const char *what, bool fatal, void *opaque);
	void *opaque;
	void (*log)(int level, const char *facility, const char *message, void *opaque);
	void *log_opaque;
	struct producer_counts counts;
	size_t max_message_bytes;     /* the producer's message.max.bytes */
	uint64_t dead_letters_pending; /* queued, without their final delivery report */
};

static void report(struct producer *p, bool fatal, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(struct producer *p, bool fatal, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	if (p->on_error == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	p->on_error(what, fatal, p->opaque);
}

/* A header's value as text ("?" when missing), for messages. */
static const char *header_text(rd_kafka_headers_t *headers, const char *name, char *out,
			       size_t out_size)
{
	const void *value;
	size_t size;
	if (headers == NULL ||
	    rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    value == NULL)
		snprintf(out, out_size, "?");
	else
		snprintf(out, out_size, "%.*s", (int)size, (const char *)value);
	return out;
}

/*
 * Sends a dead letter's bytes (the value cut to value_len) with headers: a
 * copy of `headers` when given, else the provenance ones, plus, when cut,
 * the truncated flag and the original size.
 */
static rd_kafka_resp_err_t produce_dead_letter(struct producer *p, const char *topic,
					       rd_kafka_headers_t *headers, const void *key,
					       size_t key_len, const void *value, size_t value_len,
					       size_t original_len)
{
	rd_kafka_resp_err_t err;
	if (value_len < original_len) {
		char size[24];
		snprintf(size, sizeof size, "%zu", original_len);
		rd_kafka_header_remove(headers, PRODUCER_HEADER_TRUNCATED);
		rd_kafka_header_remove(headers, PRODUCER_HEADER_ORIGINAL_SIZE);
		rd_kafka_header_add(headers, PRODUCER_HEADER_TRUNCATED, -1, "true", 4);
		rd_kafka_header_add(headers, PRODUCER_HEADER_ORIGINAL_SIZE, -1, size, -1);
	}
	err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
				RD_KAFKA_V_VALUE((void *)value, value_len),
				RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(&dead_letter_tag),
				RD_KAFKA_V_END);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_headers_destroy(headers); /* else they belong to the message */
	return err;
}

/*
 * A dead letter's delivery report. One the broker refuses as too large (the
 * topic's max.message.bytes is below the producer's limit) is sent again
 * with half its value, down to none; one that fails for good is reported as
 * fatal, naming its source, so the caller stops before committing its offset.
 */
static void dead_letter_delivered(struct producer *p, const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *headers = NULL;
	char topic[256], partition[16], offset[24], original[24];
	rd_kafka_resp_err_t err = m->err;

	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		p->dead_letters_pending--;
		return;
	}
	if (rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
		headers = NULL;
	if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && m->len > 0 && headers != NULL) {
		size_t original_len = strtoull(
		    header_text(headers, PRODUCER_HEADER_ORIGINAL_SIZE, original, sizeof original),
		    NULL, 10);
		if (original_len < m->len)
			original_len = m->len;
		err = produce_dead_letter(p, rd_kafka_topic_name(m->rkt),
					  rd_kafka_headers_copy(headers), m->key, m->key_len,
					  m->payload, m->len / 2, original_len);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return; /* still pending, smaller */
	}
	p->dead_letters_pending--;
	p->counts.failed++;
	report(p, true,
	       "%s[%s]@%s: dead letter not delivered to %s (%zu bytes): %s; its offset is not "
	       "committed",
	       header_text(headers, PRODUCER_HEADER_SOURCE_TOPIC, topic, sizeof topic),
	       header_text(headers, PRODUCER_HEADER_SOURCE_PARTITION, partition, sizeof partition),
	       header_text(headers, PRODUCER_HEADER_SOURCE_OFFSET, offset, sizeof offset),
	       rd_kafka_topic_name(m->rkt), m->len, rd_kafka_err2str(err));
}

static void delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct producer *p = opaque;
	(void)rk;
	if (m->_private == &dead_letter_tag) {
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			p->counts.delivered++;
		dead_letter_delivered(p, m);
		return;
	}
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		p->counts.delivered++;
		return;
	}
	p->counts.failed++;
	report(p, false, "%s [%" PRId32 "]: delivery failed: %s", rd_kafka_topic_name(m->rkt),
	       m->partition, rd_kafka_err2str(m->err));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct producer *p = opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char fatal[256];
		rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof fatal);
		report(p, true, "kafka producer fatal error: %s: %s", rd_kafka_err2name(orig),
		       fatal);
		return;
	}
	report(p, false, "kafka producer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err),
	       reason);
}

/* Serves delivery reports and errors, a bounded number per wakeup (struct wakeup calls it). */
/* Hands a librdkafka log line to the configured logger (librdkafka's threads). */
static void log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
	const struct producer *owner = rd_kafka_opaque(rk);
	owner->log(level, facility, message, owner->log_opaque);
}

static void drain(void *opaque)
{
	struct producer *p = opaque;
	for (int i = 0; i < MAX_POLLS_PER_WAKEUP; i++)
		if (rd_kafka_poll(p->rk, 0) == 0)
			break;
}

struct producer *producer_new(const struct producer_config *config, struct ev_loop *loop,
			      char *errstr, size_t errstr_size)
{
	struct producer *p;
	rd_kafka_conf_t *conf;
	char detail[512];

	if (config->brokers == NULL) {
		set_errstr(errstr, errstr_size, "producer: brokers are required");
		return NULL;
	}
	p = calloc(1, sizeof *p);
	if (p == NULL) {
		set_errstr(errstr, errstr_size, "producer: out of memory");
		return NULL;
	}
	p->loop = loop;
	p->on_error = config->on_error;
	p->opaque = config->opaque;
	p->log = config->log;
	p->log_opaque = config->log_opaque;
	conf = rd_kafka_conf_new();
	if (kafka_conf_set(conf, "bootstrap.servers", config->brokers, errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "compression.type", "lz4", errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "linger.ms", "5", errstr, errstr_size) != 0)
		goto out_destroy_conf;
	for (size_t i = 0; i < config->property_count; i++) {
		const struct producer_property *prop = &config->properties[i];
		if (prop->name == NULL || prop->value == NULL) {
			set_errstr(errstr, errstr_size,
				   "kafka property #%zu: name or value missing", i);
			goto out_destroy_conf;
		}
		if (kafka_conf_set(conf, prop->name, prop->value, errstr, errstr_size) != 0)
			goto out_destroy_conf;
	}
	rd_kafka_conf_set_opaque(conf, p);
	rd_kafka_conf_set_dr_msg_cb(conf, delivery_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	if (p->log != NULL)
		rd_kafka_conf_set_log_cb(conf, log_cb);
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, detail, sizeof detail);
	if (p->rk == NULL) {
		set_errstr(errstr, errstr_size, "producer: %s", detail);
		goto out_destroy_conf;
	}
	/* conf now belongs to p->rk */
	char max_bytes[32];
	size_t max_bytes_size = sizeof max_bytes;
	if (rd_kafka_conf_get(rd_kafka_conf(p->rk), "message.max.bytes", max_bytes,
			      &max_bytes_size) == RD_KAFKA_CONF_OK)
		p->max_message_bytes = strtoull(max_bytes, NULL, 10);
	if (p->max_message_bytes == 0)
		p->max_message_bytes = 1000000; /* librdkafka's default */
	p->main_queue = rd_kafka_queue_get_main(p->rk);
	if (wakeup_attach(&p->wakeup, loop, p->main_queue, drain, p, detail, sizeof detail) != 0) {
		set_errstr(errstr, errstr_size, "producer: %s", detail);
		rd_kafka_queue_destroy(p->main_queue);
		rd_kafka_destroy(p->rk);
		goto out_free;
	}
	wakeup_start(&p->wakeup);
	return p;

out_destroy_conf:
	rd_kafka_conf_destroy(conf);
out_free:
	free(p);
	return NULL;
}

int producer_send(struct producer *p, const char *topic, const void *key, size_t key_len,
		  const void *value, size_t value_len, const struct producer_header *headers,
		  size_t header_count, char *errstr, size_t errstr_size)
{
	return producer_send_to(p, topic, PRODUCER_ANY_PARTITION, key, key_len, value, value_len,
				headers, header_count, errstr, errstr_size);
}

int producer_send_to(struct producer *p, const char *topic, int32_t partition, const void *key,
		     size_t key_len, const void *value, size_t value_len,
		     const struct producer_header *headers, size_t header_count, char *errstr,
		     size_t errstr_size)
{
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	for (int attempt = 0; attempt <= QUEUE_FULL_RETRIES; attempt++) {
		rd_kafka_headers_t *hdrs = NULL;
		if (header_count > 0) {
			hdrs = rd_kafka_headers_new(header_count);
			for (size_t i = 0; i < header_count; i++)
				rd_kafka_header_add(
				    hdrs, headers[i].name, -1, headers[i].value,
				    headers[i].value != NULL ? (ssize_t)headers[i].value_len : 0);
		}
		err = rd_kafka_producev(
		    p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_PARTITION(partition == PRODUCER_ANY_PARTITION ? RD_KAFKA_PARTITION_UA
									  : partition),
		    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
		    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return 0; /* the headers now belong to the message */
		if (hdrs != NULL)
			rd_kafka_headers_destroy(hdrs);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		rd_kafka_poll(p->rk, 0);
	}
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
		set_errstr(errstr, errstr_size, "%s: queue full (%d messages waiting)", topic,
			   rd_kafka_outq_len(p->rk));
		return PRODUCER_QUEUE_FULL;
	}
	set_errstr(errstr, errstr_size, "%s: produce: %s", topic, rd_kafka_err2str(err));
	return -1;
}

int producer_send_dead_letter(struct producer *p, const char *dead_letter_topic, const char *reason,
			      const char *source_topic, int32_t source_partition,
			      int64_t source_offset, const void *key, size_t key_len,
			      const void *value, size_t value_len, char *errstr, size_t errstr_size)
{
	char partition[16], offset[24];
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	size_t headers_bytes, room, kept = value_len;
	snprintf(partition, sizeof partition, "%" PRId32, source_partition);
	snprintf(offset, sizeof offset, "%" PRId64, source_offset);
	/* the provenance headers, and the two a cut adds, with their values' longest */
	headers_bytes = strlen(PRODUCER_HEADER_REASON) + strlen(reason) +
			strlen(PRODUCER_HEADER_SOURCE_TOPIC) + strlen(source_topic) +
			strlen(PRODUCER_HEADER_SOURCE_PARTITION) + strlen(partition) +
			strlen(PRODUCER_HEADER_SOURCE_OFFSET) + strlen(offset) +
			strlen(PRODUCER_HEADER_TRUNCATED) + 4 +
			strlen(PRODUCER_HEADER_ORIGINAL_SIZE) + 20;
	room = key_len + headers_bytes + DEAD_LETTER_OVERHEAD_BYTES < p->max_message_bytes
		   ? p->max_message_bytes - key_len - headers_bytes - DEAD_LETTER_OVERHEAD_BYTES
		   : 0;
	if (kept > room)
		kept = room;
	for (int attempt = 0; attempt <= QUEUE_FULL_RETRIES; attempt++) {
		rd_kafka_headers_t *headers = rd_kafka_headers_new(6);
		rd_kafka_header_add(headers, PRODUCER_HEADER_REASON, -1, reason, -1);
		rd_kafka_header_add(headers, PRODUCER_HEADER_SOURCE_TOPIC, -1, source_topic, -1);
		rd_kafka_header_add(headers, PRODUCER_HEADER_SOURCE_PARTITION, -1, partition, -1);
		rd_kafka_header_add(headers, PRODUCER_HEADER_SOURCE_OFFSET, -1, offset, -1);
		err = produce_dead_letter(p, dead_letter_topic, headers, key, key_len, value, kept,
					  value_len);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			p->dead_letters_pending++;
			return 0;
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		rd_kafka_poll(p->rk, 0);
	}
	set_errstr(errstr, errstr_size, "%s: produce (%zu of %zu bytes): %s", dead_letter_topic,
		   kept, value_len, rd_kafka_err2str(err));
	return err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? PRODUCER_QUEUE_FULL : -1;
}

uint64_t producer_dead_letters_pending(const struct producer *p)
{
	return p->dead_letters_pending;
}

int producer_wait_dead_letters(struct producer *p, int timeout_ms, char *errstr,
			       size_t errstr_size)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (p->dead_letters_pending > 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long waited_ms = (now.tv_sec - start.tv_sec) * 1000 +
				 (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited_ms >= timeout_ms) {
			set_errstr(errstr, errstr_size,
				   "%" PRIu64 " dead letters still without a delivery report "
				   "after %d ms",
				   p->dead_letters_pending, timeout_ms);
			return -1;
		}
		rd_kafka_poll(p->rk, (int)(timeout_ms - waited_ms < 100 ? timeout_ms - waited_ms
									 : 100));
	}
	return 0;
}

int producer_flush(struct producer *p, int timeout_ms, char *errstr, size_t errstr_size)
{
	rd_kafka_resp_err_t err = rd_kafka_flush(p->rk, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_errstr(errstr, errstr_size, "flush: %d messages still queued after %d ms: %s",
			   rd_kafka_outq_len(p->rk), timeout_ms, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int producer_outq_len(const struct producer *p)
{
	return rd_kafka_outq_len(p->rk);
}

struct producer_counts producer_counts(const struct producer *p)
{
	return p->counts;
}

void producer_free(struct producer *p)
{
	if (p == NULL)
		return;
	wakeup_detach(&p->wakeup);
	rd_kafka_queue_destroy(p->main_queue);
	/* nothing more is served: drop what is left rather than wait for it */
	rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_destroy(p->rk);
	free(p);
}
