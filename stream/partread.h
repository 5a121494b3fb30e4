/*
 * partread: reads one partition of a topic from its start to its end (the
 * high watermark when the read starts), with a consumer of its own that
 * joins no group and commits nothing: how an instance restores state from
 * a changelog topic before it consumes a partition (daemon/changelog).
 *
 * Blocking: the caller waits until the end is reached or timeout_ms passed.
 */
#ifndef STREAMREC_PARTREAD_H
#define STREAMREC_PARTREAD_H

#include <stddef.h>
#include <stdint.h>

struct partread_property {
	const char *name;
	const char *value;
};

/** A record; key and value are valid during the call only. @returns 0, or -1 to stop. */
typedef int (*partread_fn)(const void *key, size_t key_len, const void *value, size_t value_len,
			   int64_t offset, void *opaque);

/**
 * @brief Calls on_record for every record of topic[partition], oldest first.
 * @param properties librdkafka settings applied after the defaults (security etc.)
 * @returns the records read (0: an empty partition), or -1 with errstr filled
 * (broker unreachable, timeout, on_record stopped).
 */
long partread_all(const char *brokers, const struct partread_property *properties,
		  size_t property_count, const char *topic, int32_t partition, int timeout_ms,
		  partread_fn on_record, void *opaque, char *errstr, size_t errstr_size);

#endif
