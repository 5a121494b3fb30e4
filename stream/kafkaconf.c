/* See kafkaconf.h. */
#include "kafkaconf.h"

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
