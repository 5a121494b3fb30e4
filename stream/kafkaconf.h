/*
 * kafkaconf: setting one librdkafka property, with an error that names it.
 * Every client streamrec makes (the daemon's consumer and producer, the
 * partition reader, the command-line tool, the benchmark's collector) sets
 * its properties through this.
 */
#ifndef STREAMREC_KAFKACONF_H
#define STREAMREC_KAFKACONF_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/**
 * @brief rd_kafka_conf_set(conf, name, value).
 * @returns 0, or -1 with errstr "kafka property NAME=VALUE: librdkafka's reason".
 */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
		   size_t errstr_size);

#endif
