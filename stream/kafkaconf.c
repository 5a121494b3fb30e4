/* See kafkaconf.h. */
#include "kafkaconf.h"

#include <unistd.h>

#include "errstr.h"

int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
		   size_t errstr_size)
{
	char why[256];
	if (rd_kafka_conf_set(conf, name, value, why, sizeof why) != RD_KAFKA_CONF_OK) {
		set_errstr(errstr, errstr_size, "kafka property %s=%s: %s", name, value, why);
		return -1;
	}
	return 0;
}

int kafka_partition_count(rd_kafka_t *rk, const char *topic, const volatile sig_atomic_t *stop,
			  char *errstr, size_t errstr_size)
{
	rd_kafka_topic_t *handle = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
	int count = -1;
	for (int attempt = 0; handle != NULL && attempt < 50 && count < 0 &&
			      (stop == NULL || !*stop);
	     attempt++) {
		const struct rd_kafka_metadata *metadata = NULL;
		err = rd_kafka_metadata(rk, 0, handle, &metadata, 5000);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			err = metadata->topic_cnt == 1 ? metadata->topics[0].err
						       : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
			if (err == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topics[0].partition_cnt > 0)
				count = metadata->topics[0].partition_cnt;
			rd_kafka_metadata_destroy(metadata);
		}
		if (count < 0)
			usleep(100000);
	}
	if (handle != NULL)
		rd_kafka_topic_destroy(handle);
	if (count < 0)
		set_errstr(errstr, errstr_size, "partitions of topic %s: %s", topic,
			   rd_kafka_err2str(err));
	return count;
}
