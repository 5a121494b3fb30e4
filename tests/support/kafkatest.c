#include "kafkatest.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafkaconf.h"

/* Pause between two metadata requests while a new topic settles. */
#define METADATA_RETRY_MS 100

struct kafkatest_producer {
	rd_kafka_t *rk;
	long delivered;
	long failed;
	/* the first failed delivery report, for the error message */
	char first_failure[512];
};

const char *kafkatest_bootstrap(char *errstr, size_t errstr_size)
{
	const char *bootstrap = getenv(KAFKATEST_BOOTSTRAP_ENV);
	if (bootstrap == NULL || bootstrap[0] == '\0') {
		snprintf(errstr, errstr_size,
			 "%s is not set: integration tests need a running broker "
			 "(BOOT=$(tools/kafka-broker start --dir DIR); %s=$BOOT ...)",
			 KAFKATEST_BOOTSTRAP_ENV, KAFKATEST_BOOTSTRAP_ENV);
		return NULL;
	}
	return bootstrap;
}

int64_t kafkatest_clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kafkatest_unique_name(const char *prefix, char *name, size_t name_size, char *errstr,
			  size_t errstr_size)
{
	static atomic_uint counter;
	struct timespec now;
	int n;
	clock_gettime(CLOCK_REALTIME, &now);
	n = snprintf(name, name_size, "%s-%ld-%" PRId64 "-%u", prefix, (long)getpid(),
		     (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
		     atomic_fetch_add(&counter, 1));
	if (n < 0 || (size_t)n >= name_size) {
		snprintf(errstr, errstr_size,
			 "unique name for prefix \"%s\": %zu bytes are too few", prefix, name_size);
		return -1;
	}
	return 0;
}

/*
 * A configuration with the bootstrap address, then defaults, then the
 * caller's overrides (both NULL-terminated key, value lists, or NULL).
 */
static rd_kafka_conf_t *conf_new(const char *bootstrap, const char *const *defaults,
				 const char *const *overrides, char *errstr, size_t errstr_size)
{
	const char *const *lists[2] = {defaults, overrides};
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "client.id", "streamrec-test", errstr, errstr_size) != 0 ||
	    /* the broker closes idle connections; that is not worth a log line */
	    kafka_conf_set(conf, "log.connection.close", "false", errstr, errstr_size) != 0)
		goto out_destroy_conf;
	for (size_t l = 0; l < 2; l++) {
		for (const char *const *kv = lists[l]; kv != NULL && kv[0] != NULL; kv += 2) {
			if (kv[1] == NULL) {
				snprintf(errstr, errstr_size, "librdkafka property %s: no value",
					 kv[0]);
				goto out_destroy_conf;
			}
			if (kafka_conf_set(conf, kv[0], kv[1], errstr, errstr_size) != 0)
				goto out_destroy_conf;
		}
	}
	return conf;

out_destroy_conf:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* Creates a handle; takes ownership of conf in every case. */
static rd_kafka_t *handle_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
			      size_t errstr_size)
{
	char reason[512];
	rd_kafka_t *rk = rd_kafka_new(type, conf, reason, sizeof reason);
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(errstr, errstr_size, "rd_kafka_new(%s): %s",
			 type == RD_KAFKA_PRODUCER ? "producer" : "consumer", reason);
	}
	return rk;
}

/* Sends CreateTopics and checks each topic's result; "already exists" is fine. */
static int create_topics_request(rd_kafka_t *rk, const struct kafkatest_topic *topics,
				 size_t topic_count, int timeout_ms, char *errstr,
				 size_t errstr_size)
{
	rd_kafka_NewTopic_t **new_topics = calloc(topic_count, sizeof *new_topics);
	rd_kafka_AdminOptions_t *options;
	rd_kafka_queue_t *queue;
	rd_kafka_event_t *event;
	const rd_kafka_CreateTopics_result_t *result;
	const rd_kafka_topic_result_t **results;
	size_t result_count;
	rd_kafka_resp_err_t err;
	char reason[512];
	int rc = -1;

	if (new_topics == NULL) {
		snprintf(errstr, errstr_size, "create topics: out of memory");
		return -1;
	}
	for (size_t i = 0; i < topic_count; i++) {
		new_topics[i] = rd_kafka_NewTopic_new(topics[i].name, topics[i].partition_count, 1,
						      reason, sizeof reason);
		if (new_topics[i] == NULL) {
			snprintf(errstr, errstr_size, "create topic %s: %s", topics[i].name,
				 reason);
			goto out_destroy_new_topics;
		}
	}
	options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	/* the operation timeout makes the broker answer once the topics exist */
	err = rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, reason, sizeof reason);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, reason,
								  sizeof reason);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "create topics: admin options: %s", reason);
		goto out_destroy_options;
	}
	queue = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, new_topics, topic_count, options, queue);
	/* the request and operation timeouts bound the answer; allow a margin */
	event = rd_kafka_queue_poll(queue, timeout_ms + 5000);
	if (event == NULL) {
		snprintf(errstr, errstr_size, "create topic %s: no answer within %d ms",
			 topics[0].name, timeout_ms + 5000);
		goto out_destroy_queue;
	}
	if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "create topic %s: %s", topics[0].name,
			 rd_kafka_event_error_string(event));
		goto out_destroy_event;
	}
	result = rd_kafka_event_CreateTopics_result(event);
	if (result == NULL) {
		snprintf(errstr, errstr_size, "create topic %s: unexpected event %s",
			 topics[0].name, rd_kafka_event_name(event));
		goto out_destroy_event;
	}
	results = rd_kafka_CreateTopics_result_topics(result, &result_count);
	for (size_t i = 0; i < result_count; i++) {
		err = rd_kafka_topic_result_error(results[i]);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR &&
		    err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
			const char *detail = rd_kafka_topic_result_error_string(results[i]);
			snprintf(errstr, errstr_size, "create topic %s: %s",
				 rd_kafka_topic_result_name(results[i]),
				 detail != NULL ? detail : rd_kafka_err2str(err));
			goto out_destroy_event;
		}
	}
	rc = 0;

out_destroy_event:
	rd_kafka_event_destroy(event);
out_destroy_queue:
	rd_kafka_queue_destroy(queue);
out_destroy_options:
	rd_kafka_AdminOptions_destroy(options);
out_destroy_new_topics:
	for (size_t i = 0; i < topic_count && new_topics[i] != NULL; i++)
		rd_kafka_NewTopic_destroy(new_topics[i]);
	free(new_topics);
	return rc;
}

/* Checks one metadata answer: the topic with partition_count partitions, each led. */
static bool topic_ready(const rd_kafka_metadata_t *metadata, const char *topic, int partition_count,
			char *why, size_t why_size)
{
	const rd_kafka_metadata_topic_t *t;
	if (metadata->topic_cnt != 1 || strcmp(metadata->topics[0].topic, topic) != 0) {
		snprintf(why, why_size, "not in the metadata");
		return false;
	}
	t = &metadata->topics[0];
	if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(why, why_size, "%s", rd_kafka_err2str(t->err));
		return false;
	}
	if (t->partition_cnt != partition_count) {
		snprintf(why, why_size, "%d partitions, want %d", t->partition_cnt,
			 partition_count);
		return false;
	}
	for (int p = 0; p < t->partition_cnt; p++) {
		if (t->partitions[p].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
		    t->partitions[p].leader < 0) {
			snprintf(why, why_size, "partition %" PRId32 " has no leader (%s)",
				 t->partitions[p].id, rd_kafka_err2str(t->partitions[p].err));
			return false;
		}
	}
	return true;
}

/* Polls the metadata of one topic until topic_ready() or the deadline. */
static int wait_topic_ready(rd_kafka_t *rk, const char *topic, int partition_count, int timeout_ms,
			    char *errstr, size_t errstr_size)
{
	int64_t deadline_ms = kafkatest_clock_ms() + timeout_ms;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	char why[256] = "no metadata answer";
	int rc = -1;

	if (rkt == NULL) {
		snprintf(errstr, errstr_size, "topic %s: %s", topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	for (;;) {
		const rd_kafka_metadata_t *metadata = NULL;
		int64_t left_ms = deadline_ms - kafkatest_clock_ms();
		rd_kafka_resp_err_t err;
		bool ready;
		if (left_ms <= 0)
			break;
		err = rd_kafka_metadata(rk, 0, rkt, &metadata, (int)left_ms);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			ready = topic_ready(metadata, topic, partition_count, why, sizeof why);
			rd_kafka_metadata_destroy(metadata);
			if (ready) {
				rc = 0;
				break;
			}
		} else {
			snprintf(why, sizeof why, "metadata request: %s", rd_kafka_err2str(err));
		}
		usleep(METADATA_RETRY_MS * 1000);
	}
	if (rc != 0)
		snprintf(errstr, errstr_size, "topic %s not ready within %d ms: %s", topic,
			 timeout_ms, why);
	rd_kafka_topic_destroy(rkt);
	return rc;
}

int kafkatest_create_topics(const char *bootstrap, const struct kafkatest_topic *topics,
			    size_t topic_count, int timeout_ms, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	int rc = -1;

	if (topic_count == 0)
		return 0;
	conf = conf_new(bootstrap, NULL, NULL, errstr, errstr_size);
	if (conf == NULL)
		return -1;
	rk = handle_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (rk == NULL)
		return -1;
	if (create_topics_request(rk, topics, topic_count, timeout_ms, errstr, errstr_size) != 0)
		goto out_destroy_handle;
	for (size_t i = 0; i < topic_count; i++) {
		if (wait_topic_ready(rk, topics[i].name, topics[i].partition_count, timeout_ms,
				     errstr, errstr_size) != 0)
			goto out_destroy_handle;
	}
	rc = 0;

out_destroy_handle:
	rd_kafka_destroy(rk);
	return rc;
}

int kafkatest_create_topic(const char *bootstrap, const char *topic, int partition_count,
			   int timeout_ms, char *errstr, size_t errstr_size)
{
	struct kafkatest_topic one = {topic, partition_count};
	return kafkatest_create_topics(bootstrap, &one, 1, timeout_ms, errstr, errstr_size);
}

/* Delivery report callback: counts, and remembers the first failure. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
	struct kafkatest_producer *producer = opaque;
	(void)rk;
	if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		producer->delivered++;
		return;
	}
	if (producer->failed++ == 0)
		snprintf(producer->first_failure, sizeof producer->first_failure,
			 "%s [%" PRId32 "]: %s", rd_kafka_topic_name(message->rkt),
			 message->partition, rd_kafka_message_errstr(message));
}

struct kafkatest_producer *kafkatest_producer_new(const char *bootstrap,
						  const char *const *overrides, char *errstr,
						  size_t errstr_size)
{
	static const char *const defaults[] = {
	    "enable.idempotence", "true", "acks", "all", "linger.ms", "5", NULL,
	};
	struct kafkatest_producer *producer = calloc(1, sizeof *producer);
	rd_kafka_conf_t *conf;

	if (producer == NULL) {
		snprintf(errstr, errstr_size, "producer: out of memory");
		return NULL;
	}
	conf = conf_new(bootstrap, defaults, overrides, errstr, errstr_size);
	if (conf == NULL)
		goto out_free_producer;
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, producer);
	producer->rk = handle_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (producer->rk == NULL)
		goto out_free_producer;
	return producer;

out_free_producer:
	free(producer);
	return NULL;
}

void kafkatest_producer_free(struct kafkatest_producer *producer)
{
	if (producer == NULL)
		return;
	if (rd_kafka_flush(producer->rk, KAFKATEST_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "kafkatest: producer closing with %d undelivered messages\n",
			rd_kafka_outq_len(producer->rk));
		rd_kafka_purge(producer->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_flush(producer->rk, KAFKATEST_TIMEOUT_MS);
	}
	rd_kafka_destroy(producer->rk);
	free(producer);
}

rd_kafka_t *kafkatest_producer_handle(struct kafkatest_producer *producer)
{
	return producer->rk;
}

int kafkatest_produce(struct kafkatest_producer *producer, const char *topic, int32_t partition,
		      const void *key, size_t key_len, const void *value, size_t value_len,
		      char *errstr, size_t errstr_size)
{
	int64_t deadline_ms = kafkatest_clock_ms() + KAFKATEST_TIMEOUT_MS;
	/*
	 * librdkafka 2.0.2's producev() on a topic the handle has not seen yet
	 * asks for its leaders only at the next 1 s topic scan; topic_new()
	 * asks at once. For a known topic it is a lookup.
	 */
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(producer->rk, topic, NULL);
	if (rkt == NULL) {
		snprintf(errstr, errstr_size, "produce to %s: %s", topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	rd_kafka_topic_destroy(rkt);
	for (;;) {
		rd_kafka_resp_err_t err = rd_kafka_producev(
		    producer->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
		    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			rd_kafka_poll(producer->rk, 0);
			return 0;
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || kafkatest_clock_ms() >= deadline_ms) {
			snprintf(errstr, errstr_size, "produce to %s: %s", topic,
				 rd_kafka_err2str(err));
			return -1;
		}
		/* serve delivery reports, which makes room in the queue */
		rd_kafka_poll(producer->rk, 100);
	}
}

int kafkatest_producer_flush(struct kafkatest_producer *producer, int timeout_ms, char *errstr,
			     size_t errstr_size)
{
	rd_kafka_resp_err_t err = rd_kafka_flush(producer->rk, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "flush: %d messages undelivered after %d ms: %s",
			 rd_kafka_outq_len(producer->rk), timeout_ms, rd_kafka_err2str(err));
		return -1;
	}
	if (producer->failed > 0) {
		snprintf(errstr, errstr_size, "%ld of %ld deliveries failed, first: %s",
			 producer->failed, producer->failed + producer->delivered,
			 producer->first_failure);
		return -1;
	}
	return 0;
}

long kafkatest_producer_delivered(const struct kafkatest_producer *producer)
{
	return producer->delivered;
}

long kafkatest_producer_failed(const struct kafkatest_producer *producer)
{
	return producer->failed;
}

rd_kafka_t *kafkatest_consumer_new(const char *bootstrap, const char *group_id,
				   const char *const *overrides, char *errstr, size_t errstr_size)
{
	const char *const defaults[] = {
	    "group.id",
	    group_id,
	    "enable.auto.commit",
	    "false",
	    "enable.auto.offset.store",
	    "false",
	    "auto.offset.reset",
	    "earliest",
	    NULL,
	};
	rd_kafka_conf_t *conf = conf_new(bootstrap, defaults, overrides, errstr, errstr_size);
	rd_kafka_t *rk;
	rd_kafka_resp_err_t err;

	if (conf == NULL)
		return NULL;
	rk = handle_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (rk == NULL)
		return NULL;
	err = rd_kafka_poll_set_consumer(rk);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "consumer %s: poll_set_consumer: %s", group_id,
			 rd_kafka_err2str(err));
		rd_kafka_destroy(rk);
		return NULL;
	}
	return rk;
}

int kafkatest_subscribe(rd_kafka_t *consumer, const char *topic, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;
	rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "subscribe to %s: %s", topic, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int kafkatest_store_offset(rd_kafka_t *consumer, const rd_kafka_message_t *message, char *errstr,
			   size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_t *tp;
	rd_kafka_resp_err_t err;
	tp = rd_kafka_topic_partition_list_add(offsets, rd_kafka_topic_name(message->rkt),
					       message->partition);
	tp->offset = message->offset + 1;
	err = rd_kafka_offsets_store(consumer, offsets);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = tp->err;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(errstr, errstr_size, "store offset %s [%" PRId32 "]@%" PRId64 ": %s",
			 rd_kafka_topic_name(message->rkt), message->partition, message->offset + 1,
			 rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(offsets);
	return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

int kafkatest_commit(rd_kafka_t *consumer, char *errstr, size_t errstr_size)
{
	rd_kafka_resp_err_t err = rd_kafka_commit(consumer, NULL, 0);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "commit: %s", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int kafkatest_committed_offsets(rd_kafka_t *consumer, const char *topic, int partition_count,
				int64_t *offsets, int timeout_ms, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *partitions =
	    rd_kafka_topic_partition_list_new(partition_count);
	rd_kafka_resp_err_t err;
	int rc = -1;

	for (int p = 0; p < partition_count; p++)
		rd_kafka_topic_partition_list_add(partitions, topic, p);
	err = rd_kafka_committed(consumer, partitions, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, errstr_size, "committed offsets of %s: %s", topic,
			 rd_kafka_err2str(err));
		goto out_destroy_partitions;
	}
	for (int p = 0; p < partition_count; p++) {
		const rd_kafka_topic_partition_t *tp = &partitions->elems[p];
		if (tp->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errstr, errstr_size, "committed offset of %s [%d]: %s", topic, p,
				 rd_kafka_err2str(tp->err));
			goto out_destroy_partitions;
		}
		offsets[p] = tp->offset;
	}
	rc = 0;

out_destroy_partitions:
	rd_kafka_topic_partition_list_destroy(partitions);
	return rc;
}

int kafkatest_high_watermarks(rd_kafka_t *handle, const char *topic, int partition_count,
			      int64_t *offsets, int timeout_ms, char *errstr, size_t errstr_size)
{
	for (int p = 0; p < partition_count; p++) {
		int64_t low, high;
		rd_kafka_resp_err_t err =
		    rd_kafka_query_watermark_offsets(handle, topic, p, &low, &high, timeout_ms);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(errstr, errstr_size, "watermarks of %s [%d]: %s", topic, p,
				 rd_kafka_err2str(err));
			return -1;
		}
		offsets[p] = high;
	}
	return 0;
}

void kafkatest_consumer_close(rd_kafka_t *consumer)
{
	rd_kafka_resp_err_t err;
	if (consumer == NULL)
		return;
	err = rd_kafka_consumer_close(consumer);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		fprintf(stderr, "kafkatest: consumer close: %s\n", rd_kafka_err2str(err));
	rd_kafka_destroy(consumer);
}
