#include "partread.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "errstr.h"
#include "kafkaconf.h"

long partread_all(const char *brokers, const struct partread_property *properties,
		  size_t property_count, const char *topic, int32_t partition, int timeout_ms,
		  partread_fn on_record, void *opaque, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk = NULL;
	rd_kafka_topic_partition_list_t *list = NULL;
	char why[512];
	int64_t low, high, deadline = clock_wall_ms() + timeout_ms;
	long read = -1;

	if (conf == NULL) {
		set_errstr(errstr, errstr_size, "out of memory for a Kafka configuration");
		return -1;
	}
	if (kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "enable.partition.eof", "true", errstr, errstr_size) != 0 ||
	    kafka_conf_set(conf, "isolation.level", "read_committed", errstr, errstr_size) != 0)
		goto out_conf;
	/* librdkafka's consumer needs a group id even for assign(), which joins
	 * no group: one of its own, never committed to */
	char group[64];
	snprintf(group, sizeof group, "streamrec-partread-%ld", (long)getpid());
	if (kafka_conf_set(conf, "group.id", group, errstr, errstr_size) != 0)
		goto out_conf;
	for (size_t i = 0; i < property_count; i++) {
		/* the group's settings are the group consumer's, not this reader's */
		if (strcmp(properties[i].name, "group.id") == 0 ||
		    strcmp(properties[i].name, "group.instance.id") == 0)
			continue;
		if (kafka_conf_set(conf, properties[i].name, properties[i].value, errstr, errstr_size) !=
		    0)
			goto out_conf;
	}
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
	if (rk == NULL) {
		set_errstr(errstr, errstr_size, "reading %s[%" PRId32 "]: %s", topic, partition,
			   why);
		goto out_conf;
	}
	conf = NULL; /* rk owns it */
	/* a partition just created or moving leader answers with a retriable
	 * error for a moment: ask again until the deadline (an unknown topic
	 * for 10 s at most: more likely a topic nobody created) */
	rd_kafka_resp_err_t err;
	int64_t unknown_until = clock_wall_ms() + 10000;
	for (;;) {
		int64_t left = deadline - clock_wall_ms();
		err = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high,
						       left > 0 ? (int)left : 1);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR || clock_wall_ms() >= deadline ||
		    (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
		     clock_wall_ms() >= unknown_until))
			break;
		usleep(200000);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_errstr(errstr, errstr_size, "reading %s[%" PRId32 "]: watermarks: %s%s", topic,
			   partition, rd_kafka_err2str(err),
			   err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
			       ? " (create it, compacted, with as many partitions as the events topic)"
			       : "");
		goto out;
	}
	read = 0;
	if (high <= low)
		goto out; /* empty (or compacted away) */
	list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, topic, partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
	err = rd_kafka_assign(rk, list);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_errstr(errstr, errstr_size, "reading %s[%" PRId32 "]: assign: %s", topic,
			   partition, rd_kafka_err2str(err));
		read = -1;
		goto out;
	}
	for (;;) {
		int64_t left = deadline - clock_wall_ms();
		if (left <= 0) {
			set_errstr(errstr, errstr_size,
				   "reading %s[%" PRId32 "]: not at its end (%" PRId64
				   ") within %d ms, %ld records read",
				   topic, partition, high, timeout_ms, read);
			read = -1;
			break;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, left < 100 ? (int)left : 100);
		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			bool end = m->offset >= high;
			rd_kafka_message_destroy(m);
			if (end)
				break;
			continue;
		}
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			set_errstr(errstr, errstr_size, "reading %s[%" PRId32 "]: %s", topic,
				   partition, rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			read = -1;
			break;
		}
		int64_t offset = m->offset;
		int rc = on_record(m->key, m->key_len, m->payload, m->len, offset, opaque);
		rd_kafka_message_destroy(m);
		if (rc != 0) {
			set_errstr(errstr, errstr_size, "reading %s[%" PRId32 "]: stopped at offset %" PRId64,
				   topic, partition, offset);
			read = -1;
			break;
		}
		read++;
		if (offset + 1 >= high)
			break;
	}
out:
	if (list != NULL)
		rd_kafka_topic_partition_list_destroy(list);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return read;
out_conf:
	if (conf != NULL)
		rd_kafka_conf_destroy(conf);
	return -1;
}
