/*
 * kafkaconf: setting one librdkafka property, with an error that names it,
 * and asking a topic's partition count. Every client streamrec makes (the
 * daemon's consumer and producer, the partition reader, the command-line
 * tool, the benchmark's collector) sets its properties through this.
 */
#ifndef STREAMREC_KAFKACONF_H
#define STREAMREC_KAFKACONF_H

#include <signal.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

/**
 * @brief rd_kafka_conf_set(conf, name, value).
 * @returns 0, or -1 with errstr "kafka property NAME=VALUE: librdkafka's reason".
 */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
		   size_t errstr_size);

/**
 * @brief The number of partitions of topic (ids 0 to count - 1), asked of
 * the brokers; a new topic's leaders may be unknown for a moment, so it is
 * asked again for up to about 5 s, or until *stop (NULL: never) is set.
 * @returns the count, or -1 with errstr "partitions of topic NAME: reason".
 */
int kafka_partition_count(rd_kafka_t *rk, const char *topic, const volatile sig_atomic_t *stop,
			  char *errstr, size_t errstr_size);

#endif
