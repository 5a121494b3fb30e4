/*
 * kafka_read BOOTSTRAP TOPIC COUNT [TIMEOUT_MS]: reads a topic from its start
 * (a fresh consumer group) and prints one line per message, up to COUNT
 * messages or until TIMEOUT_MS (default 30000) passes without reaching it:
 *   partition=P offset=O key=HEX value=HEX header.NAME=VALUE ...
 * For tests that check what the daemon wrote, headers included (dead letters).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static void print_hex(const char *name, const void *data, size_t len)
{
	const unsigned char *b = data;
	printf(" %s=", name);
	if (data == NULL)
		printf("-");
	for (size_t i = 0; i < len; i++)
		printf("%02x", b[i]);
}

int main(int argc, char **argv)
{
	char errstr[512], group[64];
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: kafka_read BOOTSTRAP TOPIC COUNT [TIMEOUT_MS]\n");
		return 2;
	}
	long want = strtol(argv[3], NULL, 10),
	     timeout_ms = argc == 5 ? strtol(argv[4], NULL, 10) : 30000;
	snprintf(group, sizeof group, "kafka_read-%ld-%ld", (long)time(NULL), (long)clock());
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *props[][2] = {{"bootstrap.servers", argv[1]},
				  {"group.id", group},
				  {"auto.offset.reset", "earliest"},
				  {"enable.auto.commit", "false"}};
	for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
		if (rd_kafka_conf_set(conf, props[i][0], props[i][1], errstr, sizeof errstr) != 0) {
			fprintf(stderr, "kafka_read: %s\n", errstr);
			rd_kafka_conf_destroy(conf);
			return 2;
		}
	rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
	if (consumer == NULL) {
		fprintf(stderr, "kafka_read: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rd_kafka_poll_set_consumer(consumer);
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, argv[2], RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	long seen = 0, waited = 0;
	while (err == RD_KAFKA_RESP_ERR_NO_ERROR && seen < want && waited < timeout_ms) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
		if (m == NULL) {
			waited += 100;
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			printf("partition=%" PRId32 " offset=%" PRId64, m->partition, m->offset);
			print_hex("key", m->key, m->key_len);
			print_hex("value", m->payload, m->len);
			rd_kafka_headers_t *headers = NULL;
			if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
				const char *name;
				const void *value;
				size_t size;
				for (size_t i = 0;
				     rd_kafka_header_get_all(headers, i, &name, &value, &size) ==
				     RD_KAFKA_RESP_ERR_NO_ERROR;
				     i++)
					printf(" header.%s=%.*s", name, (int)size,
					       value ? (const char *)value : "");
			}
			printf("\n");
			seen++;
		}
		rd_kafka_message_destroy(m);
	}
	fflush(stdout);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "kafka_read: %s\n", rd_kafka_err2str(err));
		return 1;
	}
	return seen == want ? 0 : 3;
}
