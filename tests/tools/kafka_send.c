/*
 * kafka_send BOOTSTRAP TOPIC: produces one message per stdin line, the
 * line's hex bytes ("-" for an empty message), for tests that need exact
 * bytes on a topic (bad input for the dead-letter path).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

int main(int argc, char **argv)
{
	char errstr[512], line[65536];
	unsigned char bytes[32768];
	int status = 0;
	if (argc != 3) {
		fprintf(stderr, "usage: kafka_send BOOTSTRAP TOPIC < hexlines\n");
		return 2;
	}
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) != 0) {
		fprintf(stderr, "kafka_send: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 2;
	}
	rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (producer == NULL) {
		fprintf(stderr, "kafka_send: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	while (fgets(line, sizeof line, stdin) != NULL) {
		size_t n = 0, len = strcspn(line, "\n");
		line[len] = '\0';
		if (strcmp(line, "-") != 0)
			for (; 2 * n + 1 < len && n < sizeof bytes; n++) {
				unsigned v;
				sscanf(line + 2 * n, "%2x", &v);
				bytes[n] = (unsigned char)v;
			}
		rd_kafka_resp_err_t err =
		    rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_KEY("bad", 3),
				      RD_KAFKA_V_VALUE(n ? bytes : NULL, n),
				      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		if (err) {
			fprintf(stderr, "kafka_send: %s\n", rd_kafka_err2str(err));
			status = 1;
		}
	}
	if (rd_kafka_flush(producer, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		status = 1;
	rd_kafka_destroy(producer);
	return status;
}
