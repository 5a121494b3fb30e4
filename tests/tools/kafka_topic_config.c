/*
 * kafka_topic_config BOOTSTRAP TOPIC NAME=VALUE...: sets a topic's
 * configuration (AlterConfigs: the given entries replace the topic's
 * overrides), for tests that need a topic to take or refuse large messages
 * (max.message.bytes). Exits 0 once the broker has applied it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

int main(int argc, char **argv)
{
	char errstr[512];
	int status = 1;
	if (argc < 4) {
		fprintf(stderr, "usage: kafka_topic_config BOOTSTRAP TOPIC NAME=VALUE...\n");
		return 2;
	}
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) != 0) {
		fprintf(stderr, "kafka_topic_config: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 2;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (rk == NULL) {
		fprintf(stderr, "kafka_topic_config: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rd_kafka_ConfigResource_t *resource =
	    rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, argv[2]);
	for (int i = 3; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (eq == NULL) {
			fprintf(stderr, "kafka_topic_config: %s: expected NAME=VALUE\n", argv[i]);
			status = 2;
			goto out_destroy_resource;
		}
		*eq = '\0';
		if (rd_kafka_ConfigResource_set_config(resource, argv[i], eq + 1) !=
		    RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "kafka_topic_config: %s: cannot set\n", argv[i]);
			status = 2;
			goto out_destroy_resource;
		}
	}
	rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
	rd_kafka_AlterConfigs(rk, &resource, 1, NULL, queue);
	rd_kafka_event_t *event = rd_kafka_queue_poll(queue, 30000);
	if (event == NULL) {
		fprintf(stderr, "kafka_topic_config: %s: no answer within 30 s\n", argv[2]);
	} else if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "kafka_topic_config: %s: %s\n", argv[2],
			rd_kafka_event_error_string(event));
	} else {
		size_t count;
		const rd_kafka_ConfigResource_t **results = rd_kafka_AlterConfigs_result_resources(
		    rd_kafka_event_AlterConfigs_result(event), &count);
		status = 0;
		for (size_t i = 0; i < count; i++)
			if (rd_kafka_ConfigResource_error(results[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
				fprintf(stderr, "kafka_topic_config: %s: %s\n", argv[2],
					rd_kafka_ConfigResource_error_string(results[i]));
				status = 1;
			}
	}
	if (event != NULL)
		rd_kafka_event_destroy(event);
	rd_kafka_queue_destroy(queue);
out_destroy_resource:
	rd_kafka_ConfigResource_destroy(resource);
	rd_kafka_destroy(rk);
	return status;
}
