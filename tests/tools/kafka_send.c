/*
 * kafka_send BOOTSTRAP TOPIC: produces one message per stdin line, the
 * line's hex bytes ("-" for an empty message), for tests that need exact
 * bytes on a topic (bad input for the dead-letter path). A line
 * "key=HEX VALUE" sets the key; a VALUE of "-" then sends a tombstone.
 * Lines and messages may be large (up to 16 MB, for the size-limit tests).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

/* Decodes hex text into out; @returns the number of bytes. */
static size_t hex_to_bytes(const char *hex, unsigned char *out, size_t capacity)
{
	size_t n = 0, len = strlen(hex);
	for (; 2 * n + 1 < len && n < capacity; n++) {
		unsigned v;
		if (sscanf(hex + 2 * n, "%2x", &v) != 1)
			break;
		out[n] = (unsigned char)v;
	}
	return n;
}

int main(int argc, char **argv)
{
	char errstr[512], *line = NULL;
	size_t line_capacity = 0;
	int status = 0;
	if (argc != 3) {
		fprintf(stderr, "usage: kafka_send BOOTSTRAP TOPIC < hexlines\n");
		return 2;
	}
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) != 0 ||
	    rd_kafka_conf_set(conf, "message.max.bytes", "16777216", errstr, sizeof errstr) != 0) {
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
	while (getline(&line, &line_capacity, stdin) != -1) {
		unsigned char key[512], *bytes = NULL;
		size_t n = 0, key_len = 3;
		char *value = line;
		bool tombstone = false;
		line[strcspn(line, "\n")] = '\0';
		memcpy(key, "bad", 3);
		if (strncmp(line, "key=", 4) == 0) {
			char *space = strchr(line, ' ');
			if (space == NULL)
				continue;
			*space = '\0';
			key_len = hex_to_bytes(line + 4, key, sizeof key);
			value = space + 1;
			tombstone = strcmp(value, "-") == 0;
		}
		if (strcmp(value, "-") != 0) {
			size_t capacity = strlen(value) / 2 + 1;
			bytes = malloc(capacity);
			if (bytes == NULL) {
				fprintf(stderr, "kafka_send: out of memory\n");
				status = 1;
				break;
			}
			n = hex_to_bytes(value, bytes, capacity);
		}
		rd_kafka_resp_err_t err = rd_kafka_producev(
		    producer, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_KEY(key, key_len),
		    RD_KAFKA_V_VALUE(tombstone || n == 0 ? NULL : bytes, n),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		free(bytes);
		if (err) {
			fprintf(stderr, "kafka_send: %s\n", rd_kafka_err2str(err));
			status = 1;
		}
	}
	if (rd_kafka_flush(producer, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		status = 1;
	rd_kafka_destroy(producer);
	free(line);
	return status;
}
