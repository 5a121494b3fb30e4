/*
 * registry: a client of the Confluent Schema Registry REST API.
 *
 * Two calls of that API are used:
 *   GET  {url}/schemas/ids/{id}             the writer schema of a Confluent-framed
 *                                           message ({"schema": "<Avro JSON>"})
 *   POST {url}/subjects/{subject}/versions  register a schema under a subject
 *                                           ({"schema": "..."} -> {"id": N})
 * {url} is the API's base: "http://host:8081" for Confluent's registry,
 * "http://host:8080/apis/ccompat/v7" for Apicurio's compatible API. Subjects
 * follow TopicNameStrategy: the value schema of topic T is "T-value"
 * (registry_topic_subject()).
 *
 * Caching: a schema fetched by id is kept for the registry object's life
 * (ids are immutable in the registry), and so is the id a (subject, schema)
 * was registered under; either is then served without HTTP. An id the
 * registry answered 404 for is remembered for REGISTRY_NOT_FOUND_TTL_MS so
 * that a stream of bad ids costs one request per id and period.
 *
 * Blocking, bounded: calls that miss the cache make one blocking HTTP
 * request, bounded by connect_timeout_ms and timeout_ms (defaults 2 s and
 * 5 s). This is a deliberate choice over a libev-driven curl multi handle:
 * the daemon misses the cache once per schema id per process life (at start
 * for its output schema, then when a producer starts writing with a new
 * schema), and a record whose writer schema is unknown cannot be decoded
 * anyway. So that an unreachable registry cannot stall the caller on every
 * message, a failed request starts a back-off (500 ms doubling to 30 s,
 * reset by any answer): within it, calls that would need HTTP fail at once
 * with REGISTRY_UNAVAILABLE and the last error, without a request. The
 * worst stall is therefore one timeout per back-off period.
 *
 * Statuses and what the caller does with them:
 *   REGISTRY_OK           done;
 *   REGISTRY_NOT_FOUND    the registry answered that the id does not exist:
 *                         the message naming it is invalid input;
 *   REGISTRY_REJECTED     the registry answered, and refused for good: the
 *                         schema is invalid or incompatible with the
 *                         subject's (HTTP 409/422), or the id is not Avro;
 *   REGISTRY_UNAVAILABLE  no usable answer: unreachable, timed out, TLS
 *                         failure, HTTP 5xx, authentication refused (401/403,
 *                         with a message saying so), garbled reply. Retry
 *                         later; a message waiting on it is never dead-lettered.
 *
 * Threads: one registry object is used by one thread at a time (it owns a
 * curl easy handle and its caches). Different objects are independent.
 *
 * Memory: the schema text returned by registry_schema_by_id() belongs to the
 * registry and stays valid until registry_free(). The configuration's
 * strings are copied by registry_new().
 */
#ifndef STREAMREC_REGISTRY_H
#define STREAMREC_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/** Default bound on establishing a connection (TCP and TLS), in ms. */
#define REGISTRY_DEFAULT_CONNECT_TIMEOUT_MS 2000
/** Default bound on a whole request, in ms. */
#define REGISTRY_DEFAULT_TIMEOUT_MS 5000
/** First back-off after a failed request, doubled per failure up to the max. */
#define REGISTRY_BACKOFF_MIN_MS 500
#define REGISTRY_BACKOFF_MAX_MS 30000
/** How long a 404 for an id is believed without asking again. */
#define REGISTRY_NOT_FOUND_TTL_MS 60000
/** Largest reply body accepted, in bytes (a schema is a few KiB). */
#define REGISTRY_MAX_REPLY_BYTES (4u << 20)

struct registry_config {
	/** Base URL of the API, without trailing slash (one is tolerated). Required. */
	const char *url;
	/** HTTP basic authentication as "user:password", or NULL/"" for none. */
	const char *basic_auth;
	/** PEM file of the CAs to trust for https, or NULL for the system's. */
	const char *tls_ca_file;
	/** PEM client certificate and key for mutual TLS, or NULL. */
	const char *tls_cert_file;
	const char *tls_key_file;
	/** true skips verifying the server's certificate and host name (tests only). */
	bool tls_insecure;
	/** Bounds on one request in ms; 0 means the defaults above. */
	int connect_timeout_ms;
	int timeout_ms;
};

enum registry_status {
	REGISTRY_OK = 0,
	REGISTRY_NOT_FOUND,
	REGISTRY_REJECTED,
	REGISTRY_UNAVAILABLE,
};

/** Counters, for tests and /metrics. */
struct registry_stats {
	uint64_t http_requests; /**< requests sent (answered or not) */
	uint64_t cache_hits;    /**< calls served without HTTP */
	uint64_t failures;      /**< calls that returned REGISTRY_UNAVAILABLE */
};

struct registry;

/**
 * @brief Create a client; no request is made here.
 * @returns the client, or NULL with errstr filled (no URL, bad URL scheme,
 * basic_auth without a colon, out of memory).
 */
struct registry *registry_new(const struct registry_config *config, char *errstr,
			      size_t errstr_size);

void registry_free(struct registry *registry);

/**
 * @brief The writer schema registered under id (GET /schemas/ids/{id}).
 * @param schema_json set to the schema text, owned by the registry (valid
 * until registry_free), on REGISTRY_OK.
 * @returns REGISTRY_OK, or another status with errstr filled (see above).
 */
enum registry_status registry_schema_by_id(struct registry *registry, int32_t id,
					   const char **schema_json, char *errstr,
					   size_t errstr_size);

/**
 * @brief Register schema_json under subject (POST /subjects/{subject}/versions)
 * and return its id. Registering a schema the subject already has returns
 * the existing id; the (subject, schema) pair is cached.
 * @returns REGISTRY_OK with *id set, or another status with errstr filled.
 */
enum registry_status registry_register(struct registry *registry, const char *subject,
				       const char *schema_json, int32_t *id, char *errstr,
				       size_t errstr_size);

/**
 * @brief The TopicNameStrategy subject of a topic's values: "<topic>-value".
 * @returns 0, or -1 when it does not fit in buf (buf is then empty).
 */
int registry_topic_subject(const char *topic, char *buf, size_t buf_size);

/** @returns the counters so far. */
void registry_get_stats(const struct registry *registry, struct registry_stats *stats);

/** @returns "ok", "not_found", "rejected" or "unavailable". */
const char *registry_status_name(enum registry_status status);

/**
 * @brief The codec's schema source backed by a registry (codec_schema_source_fn):
 * pass it to codec_set_schema_source() with the registry as opaque.
 * REGISTRY_OK -> CODEC_SCHEMA_FOUND, NOT_FOUND -> CODEC_SCHEMA_UNKNOWN,
 * REJECTED (registered, but not Avro) -> CODEC_SCHEMA_REFUSED, UNAVAILABLE
 * -> CODEC_SCHEMA_UNAVAILABLE.
 */
enum codec_schema_lookup registry_codec_source(void *registry, int32_t schema_id,
					       const char **schema_json, char *detail,
					       size_t detail_size);

#endif
