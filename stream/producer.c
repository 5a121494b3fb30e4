/*
 * producer: librdkafka producer with delivery reports served by a libev loop.
 *
 * The main queue is served on the loop by stream/wakeup (pipe + idle
 * watcher), with rd_kafka_poll(rk, 0) a bounded number of times per wakeup.
 */
#include "errstr.h"
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
#include <unistd.h>

#define MAX_POLLS_PER_WAKEUP 64
#define QUEUE_FULL_RETRIES   3

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

static void delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct producer *p = opaque;
	(void)rk;
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

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
		    size_t errstr_size)
{
	char detail[256];
	if (rd_kafka_conf_set(conf, name, value, detail, sizeof detail) != RD_KAFKA_CONF_OK) {
		set_errstr(errstr, errstr_size, "kafka property %s: %s", name, detail);
		return -1;
	}
	return 0;
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
	if (conf_set(conf, "bootstrap.servers", config->brokers, errstr, errstr_size) != 0 ||
	    conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) != 0 ||
	    conf_set(conf, "compression.type", "lz4", errstr, errstr_size) != 0 ||
	    conf_set(conf, "linger.ms", "5", errstr, errstr_size) != 0)
		goto out_destroy_conf;
	for (size_t i = 0; i < config->property_count; i++) {
		const struct producer_property *prop = &config->properties[i];
		if (prop->name == NULL || prop->value == NULL) {
			set_errstr(errstr, errstr_size,
				   "kafka property #%zu: name or value missing", i);
			goto out_destroy_conf;
		}
		if (conf_set(conf, prop->name, prop->value, errstr, errstr_size) != 0)
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
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		set_errstr(errstr, errstr_size, "%s: queue full (%d messages waiting)", topic,
			   rd_kafka_outq_len(p->rk));
	else
		set_errstr(errstr, errstr_size, "%s: produce: %s", topic, rd_kafka_err2str(err));
	return -1;
}

int producer_send_dead_letter(struct producer *p, const char *dead_letter_topic, const char *reason,
			      const char *source_topic, int32_t source_partition,
			      int64_t source_offset, const void *key, size_t key_len,
			      const void *value, size_t value_len, char *errstr, size_t errstr_size)
{
	char partition[16], offset[24];
	struct producer_header headers[4];
	snprintf(partition, sizeof partition, "%" PRId32, source_partition);
	snprintf(offset, sizeof offset, "%" PRId64, source_offset);
	headers[0] = (struct producer_header){PRODUCER_HEADER_REASON, reason, strlen(reason)};
	headers[1] = (struct producer_header){PRODUCER_HEADER_SOURCE_TOPIC, source_topic,
					      strlen(source_topic)};
	headers[2] = (struct producer_header){PRODUCER_HEADER_SOURCE_PARTITION, partition,
					      strlen(partition)};
	headers[3] =
	    (struct producer_header){PRODUCER_HEADER_SOURCE_OFFSET, offset, strlen(offset)};
	return producer_send(p, dead_letter_topic, key, key_len, value, value_len, headers, 4,
			     errstr, errstr_size);
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
