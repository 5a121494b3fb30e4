/*
 * config: streamrecd's configuration file (INI), table-driven.
 *
 * Every option is one row of a table in config.c: section, key, type,
 * default, bounds, whether SIGHUP may change it, and help text. The loader,
 * the reload check, the README's reference table (config_print_reference)
 * and the shipped default file (config_print_default_file) all come from
 * that table, so they cannot drift apart.
 *
 * Layout:
 *   [input] [output] [state] [http] [api] [refresh] [log] [experiment]
 *                         streamrecd's own options (see the reference)
 *   [model]               every variant's model defaults
 *   [variant.NAME]        one A/B arm: share, and any [model] key or k that
 *                         differs from the defaults (none: one arm "control")
 *   [kafka]               librdkafka properties, verbatim, for both clients
 *   [kafka.consumer] [kafka.producer]   role-specific librdkafka overrides
 *
 * Every error names the file, the line, the key and what is wrong:
 *   streamrecd.conf:14: model.dim: must be between 4 and 1024, got 0
 */
#ifndef STREAMREC_CONFIG_H
#define STREAMREC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "listrules.h"
#include "model.h"

#define CONFIG_MAX_VARIANTS      16
#define CONFIG_VARIANT_NAME_SIZE 33 /**< 1..32 of [A-Za-z0-9_-], and the NUL */

enum config_log_level {
	CONFIG_LOG_ERROR = 0,
	CONFIG_LOG_WARNING,
	CONFIG_LOG_INFO,
	CONFIG_LOG_DEBUG
};

/** How the published Recommendations are framed. */
enum config_framing {
	CONFIG_FRAMING_RAW = 0,   /**< plain Avro binary */
	CONFIG_FRAMING_CONFLUENT, /**< magic byte 0, 4-byte schema id, Avro binary */
};

/** Where a partition starts when the state holds no offset for it. */
enum config_on_empty {
	CONFIG_ON_EMPTY_EARLIEST = 0, /**< the topic's first retained event: learn it all */
	CONFIG_ON_EMPTY_COMMITTED,    /**< the group's committed offset, else earliest */
	CONFIG_ON_EMPTY_LATEST,       /**< only events that arrive from now on */
};

/** How a variant serves its users. */
enum config_policy {
	CONFIG_POLICY_MODEL = 0,  /**< the fused model's top-k */
	CONFIG_POLICY_POPULARITY, /**< the popularity control arm (trending list) */
};

/** One A/B arm. */
/** Whose events a variant's model learns from (variant.NAME.learns_from). */
enum config_learns_from {
	CONFIG_LEARNS_FROM_ALL = 0, /**< every user's */
	CONFIG_LEARNS_FROM_OWN,     /**< its own users' only */
};

struct config_variant {
	char name[CONFIG_VARIANT_NAME_SIZE];
	double share; /**< of users, (0, 1]; the shares sum to 1 */
	enum config_policy policy;
	unsigned k; /**< length of the published lists */
	struct model_config model;
	int line; /**< line of the [variant.NAME] header (0: the implicit variant, "model") */
	/** A new variant's starting point: a stored variant's name, or NULL (cold). */
	char *start_from;
	/** Whose events the variant's model learns from. */
	enum config_learns_from learns_from;
	/* List rules (model/listrules.h), reloadable: the keys' text ... */
	char *exclude_categories, *boost, *pin;
	unsigned max_per_category, explore_max_events;
	double explore_share;
	/** ... and the rules parsed from them at load (owned; freed by config_free()). */
	struct listrules rules;
};

/** A librdkafka property, passed verbatim to rd_kafka_conf_set(). */
struct config_property {
	char *name;
	char *value;
	int line;
};

struct config_properties {
	struct config_property *items;
	size_t count;
};

struct config {
	char *path; /**< the file it was loaded from */

	char *input_topic;
	char *items_topic;
	char *changelog_topic;          /**< scaleout.changelog_topic; NULL or "": off */
	uint64_t restore_timeout_ms;
	char *item_updates_topic;       /**< scaleout.item_updates_topic; NULL or "": off */
	uint64_t item_sync_interval_ms;
	char *instance_id;              /**< as configured; config_instance_id() resolves it */
	char *dead_letter_topic;
	char *group_id;
	unsigned input_schema_id; /**< Confluent id of our own UserEvent schema; 0: none */
	char *input_schema_dir;   /**< "": none; else <id>.avsc writer schemas */
	char *output_topic;
	enum config_framing output_framing;
	unsigned output_schema_id;
	unsigned output_schema_version; /* of Recommendation: 1 or 2 (codec_config) */

	char *state_dir;
	char *state_log_dir; /**< "" : $LOGS_DIRECTORY, else inside state_dir */
	uint64_t commit_interval_ms;
	bool sync_commits;
	unsigned state_nice; /**< the state writer's nice increment (0..19); >0 also lowers RocksDB's pools */
	size_t user_cache_users;
	size_t user_cache_bytes;
	size_t state_block_cache_bytes; /**< RocksDB's block cache */
	enum config_on_empty state_on_empty;
	/** Embedding life cycle (state.h): 0 = off. */
	uint64_t lifecycle_user_ttl_ms;
	size_t lifecycle_max_users;
	unsigned lifecycle_admit_after;
	uint64_t lifecycle_item_ttl_ms;
	size_t lifecycle_max_items;
	unsigned lifecycle_item_admit_after;

	char *http_listen;
	uint64_t http_idle_timeout_ms;

	char *api_listen; /**< "": no lookup API */
	size_t api_max_connections;
	uint64_t api_idle_timeout_ms;
	unsigned api_realtime_priority; /* 0: normal scheduling */

	uint64_t refresh_interval_ms;
	unsigned refresh_batch;
	unsigned refresh_batch_behind; /* 0: refresh_batch */
	unsigned refresh_threads;      /**< workers ranking lists; 0: on the loop's thread */
	unsigned refresh_nice;         /**< the workers' nice value (0..19), above the process's */
	double refresh_max_busy_share; /**< (0, 1] of loop time while events wait */
	uint64_t min_interval_ms;
	uint64_t staleness_target_ms; /**< newest first within it; older ones deferred */
	uint64_t backlog_ms; /**< a recent mark older: a round takes batch_behind; 0: never */
	uint64_t catch_up_threshold_ms; /**< older at arrival: catch-up, not freshness; 0: off */
	double refresh_shadow_share;   /**< share of index batches checked against exact */
	double refresh_shadow_budget;  /**< most of the index's ranking time the shadow takes */
	unsigned min_item_events;
	size_t content_dim;       /**< content.dim: 0 off */
	char *content_model_name; /**< content.model_name: "" any */

	enum config_log_level log_level;
	char *experiment_salt;
	char *experiment_control; /**< "": the popularity arm, else the first variant */
	double experiment_alpha, experiment_msprt_tau2;
	char *blas_kernel; /**< "auto" or a kernel family (model/blas.h) */
	char *content_text_model; /**< content.text_model: the text model's file; "": off */
	unsigned content_text_threads; /**< content.text_threads: embedding threads; 0: on the loop */
	/* the schema registry ("" url: none) */
	char *registry_url, *registry_basic_auth, *registry_tls_ca_file, *registry_tls_cert_file,
	    *registry_tls_key_file;
	bool registry_tls_verify;
	uint64_t registry_timeout_ms, registry_retry_ms;

	/** [model] and refresh.k: what every variant starts from (name unused). */
	struct config_variant defaults;
	struct config_variant variants[CONFIG_MAX_VARIANTS];
	size_t variant_count;

	/** [kafka]: both clients; then [kafka.consumer] / [kafka.producer] on top. */
	struct config_properties kafka;
	struct config_properties kafka_consumer;
	struct config_properties kafka_producer;
};

/**
 * @brief Load and check a configuration file. Unknown sections and keys,
 * malformed lines, duplicate keys, bad values, missing required keys and
 * variants that do not add up are all errors; only the first is reported.
 * @param out filled on success (release with config_free()); zeroed on failure
 * @returns 0, or -1 with errstr naming file:line, the key and the problem.
 */
int config_load(const char *path, struct config *out, char *errstr, size_t errstr_size);

/**
 * @brief Load path again for SIGHUP. Refuses when a key that cannot change
 * while running did change.
 * @param next filled on success (the caller then replaces running by it)
 * @param changes filled with one "key: old -> new" line per changed key
 * ("no changes" when none)
 * @returns 0, or -1 with errstr naming every non-reloadable key that changed
 * (or the load error); next is then zeroed.
 */
int config_reload(const struct config *running, const char *path, struct config *next,
		  char *changes, size_t changes_size, char *errstr, size_t errstr_size);

/**
 * How a reloadable key's new value takes effect: each reloadable row of the
 * option table has one (a unit test checks it), so a key cannot be
 * documented as reloadable and then be read by nothing.
 */
enum config_apply {
	CONFIG_APPLY_READ_AT_USE = 0x1, /**< read from the running config at each use */
	CONFIG_APPLY_TIMERS = 0x2,      /**< the commit and refresh timers are re-armed */
	CONFIG_APPLY_LOG_LEVEL = 0x4,   /**< the logger's threshold changes */
	CONFIG_APPLY_LISTABLE = 0x8,    /**< the cached listable-item flags are recomputed */
	CONFIG_APPLY_API_PRIORITY = 0x10, /**< the API thread's scheduling is set again */
};

/** @returns the apply step (enum config_apply) of section.key, 0 when it has none. */
unsigned config_apply_step(const char *section, const char *key);

/**
 * @brief The apply steps the change from running to next needs: the OR of
 * the steps of every global reloadable key whose value differs.
 */
unsigned config_apply_steps(const struct config *running, const struct config *next);

/**
 * @brief For the tests: the first reloadable key with no apply step, as
 * "section.key" in out. @returns true when every reloadable key has one.
 */
bool config_every_reloadable_key_applies(char *out, size_t out_size);

/** @brief Release what config_load() allocated (safe on a zeroed struct). */
void config_free(struct config *config);

/** @brief The markdown reference table (key, type, default, bounds, reloadable, description). */
void config_print_reference(FILE *out);

/** @brief The default configuration file: every key commented out with its default. */
void config_print_default_file(FILE *out);

/** @returns the value of a librdkafka property for a role ("consumer"/"producer"), or NULL. */
const char *config_kafka_property(const struct config *config, const char *role, const char *name);

/**
 * @brief scaleout.instance_id, or when it is empty the host name and a hash
 * of state.dir (stable across restarts of the same instance), into out.
 */
void config_instance_id(const struct config *config, char *out, size_t size);

/** @returns the most users a refresh round takes: refresh.batch_behind, or
 * refresh.batch when batch_behind is 0. */
size_t config_refresh_round_most(const struct config *config);

#endif
