/*
 * metrics: the daemon's one counters struct, rendered as Prometheus text.
 *
 * The daemon updates the fields directly from its single loop thread and
 * renders from the same thread, so nothing here locks. Plain counters are
 * public fields (an increment is `m->commits_total++`); histograms, variant
 * lookups and the consumer-lag table go through the functions below.
 *
 * Rendering follows the Prometheus text exposition format 0.0.4: one
 * `# HELP` and `# TYPE` per family, label values escaped (\\, \", \n),
 * histograms as cumulative `_bucket{le=...}` series plus `_sum` and `_count`.
 * Every labelled series that can be known in advance (event types, invalid
 * reasons, variants) is rendered from the start, at 0.
 */
#ifndef STREAMREC_METRICS_H
#define STREAMREC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/** Most model variants the daemon runs side by side. */
#define METRICS_MAX_VARIANTS 16

/** Store families the state write metrics can name (store.h has fewer). */
#define METRICS_STATE_FAMILIES 8
/** Longest variant name, in bytes. */
#define METRICS_VARIANT_NAME_MAX 64
/** Most finite bucket bounds of a histogram (+Inf is implicit). */
#define METRICS_HISTOGRAM_MAX_BUCKETS 32

/**
 * A histogram with fixed, ascending upper bounds. counts[i] holds the
 * observations in (upper_bounds[i-1], upper_bounds[i]]; counts[bucket_count]
 * those above the last bound. Rendering makes them cumulative.
 */
struct metrics_histogram {
	size_t bucket_count;
	double upper_bounds[METRICS_HISTOGRAM_MAX_BUCKETS];
	uint64_t counts[METRICS_HISTOGRAM_MAX_BUCKETS + 1];
	double sum;
	uint64_t count;
};

/** Bounds for latencies from 1 ms to 60 s, in seconds (freshness, batch time). */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_bucket_count;
/** Bounds for the age of backlog from 1 minute to 30 days, in seconds (catch-up). */
extern const double metrics_backlog_buckets[];
extern const size_t metrics_backlog_bucket_count;

/** Event types that count as a hit on a published list (A/B measurement). */
#define METRICS_HIT_TYPE_COUNT 3
extern const enum event_type metrics_hit_types[METRICS_HIT_TYPE_COUNT];

/** Rank buckets of hits: 1, 2, 3, 4-5, 6-10, 11-20, 21+. */
#define METRICS_RANK_BUCKETS 7
extern const char *const metrics_rank_labels[METRICS_RANK_BUCKETS];

/** @returns the bucket of a 1-based rank. */
size_t metrics_rank_bucket(size_t rank);

/**
 * How a hit found its list (README, "Hit attribution"): the event named the
 * list it came from (its list_id), or it did not and the user's last
 * published list is assumed.
 */
enum metrics_attribution { METRICS_ATTRIBUTION_EXPOSED = 0, METRICS_ATTRIBUTION_LAST_LIST };
#define METRICS_ATTRIBUTION_COUNT 2
extern const char *const metrics_attribution_labels[METRICS_ATTRIBUTION_COUNT];

/** What became of a content vector (metrics.content_vectors_total). */
enum metrics_content_outcome {
	METRICS_CONTENT_PLACED = 0,
	METRICS_CONTENT_STORED,
	METRICS_CONTENT_IGNORED
};
#define METRICS_CONTENT_OUTCOMES 3
extern const char *const metrics_content_outcome_labels[METRICS_CONTENT_OUTCOMES];

/** What became of a search event (metrics.search_events_total). */
enum metrics_search_outcome {
	METRICS_SEARCH_APPLIED = 0,
	METRICS_SEARCH_NOT_APPLIED,
	METRICS_SEARCH_UNEMBEDDED,
	METRICS_SEARCH_IGNORED
};
#define METRICS_SEARCH_OUTCOMES 4
extern const char *const metrics_search_outcome_labels[METRICS_SEARCH_OUTCOMES];

/** Counters kept per model variant. */
struct metrics_variant {
	char name[METRICS_VARIANT_NAME_MAX + 1];
	/** Events applied to this variant's model. */
	uint64_t updates_total;
	/** Recommendation records published for this variant. */
	uint64_t recommendations_total;
	/** Distinct users served a list since the start (A/B exposure). */
	uint64_t users_served_total;
	/** Events on an item of the list they came from (the one their list_id
	 * names, else the user's last published list), by event type (only
	 * metrics_hit_types are rendered) and by rank bucket. */
	uint64_t hits_total[EVENT_TYPE_COUNT];
	uint64_t hits_by_rank_total[METRICS_RANK_BUCKETS];
	/** The same hits by how they were attributed (enum metrics_attribution). */
	uint64_t hits_attributed_total[METRICS_ATTRIBUTION_COUNT];
	/** Publish time − trigger event time, seconds, of lists whose trigger
	 * arrived fresh: the freshness SLO. */
	struct metrics_histogram freshness_seconds;
	/** The part of it served from the deferred lane (waited past
	 * refresh.staleness_target_ms): how late overload made lists. */
	struct metrics_histogram freshness_deferred_seconds;
	/** The same of lists whose trigger arrived as backlog, older than
	 * refresh.catch_up_threshold_ms (a backfill, a restart after downtime). */
	struct metrics_histogram catch_up_seconds;
	/** Index engine only: lists also computed by the exact engine (the
	 * shadow), and the index's mean recall@k against them over the last
	 * shadow (negative: none yet, not rendered). */
	uint64_t index_shadow_lists_total;
	double index_recall;
	/** Worker seconds of the index engine's searches and of its shadow
	 * (refresh.shadow_budget bounds the shadow's share of their sum). */
	double index_search_seconds_total, index_shadow_seconds_total;
	/* cells the index engine probes per list, as of the last shadow (0: none yet) */
	size_t index_nprobe;
	/** Index builds and retrainings so far and their wall time (a build
	 * at start; retrainings aside, no round waits), as of the last round. */
	uint64_t index_trainings_total;
	double index_training_seconds_total;
	/** Item rows learning moved that the index placed again so far, and of
	 * them those that kept their cell without being scored against the
	 * centroids (model_index_stats: rows_synced, rows_kept). */
	uint64_t index_row_updates_total, index_rows_kept_total;
	/** Items the index engine scored for its lists so far (probed cells'
	 * rows, co-visitation and trending candidates) and those lists: their
	 * ratio is what a list costs (model_index_stats: candidates, lists). */
	uint64_t index_candidates_total, index_lists_total;
	/** Items in the index's largest cell, and in all its cells (their
	 * ratio to 1/cells is how lopsided the cells are), as of the last round. */
	size_t index_largest_cell, index_items;
	/* moved rows the index has not placed again yet (upkeep bounded under overload) */
	size_t index_rows_pending;
	/** The A/B experiment (when there is one): exposed and converted users
	 * this period, the always-valid p-value against control (negative: none). */
	uint64_t experiment_exposed, experiment_converted;
	double experiment_msprt_p;
	/** Whether the variant is the experiment's control arm; its conversion
	 * rate with the Wilson interval; its relative uplift against control with
	 * the delta-method interval (NAN: undefined, not rendered). */
	bool experiment_control;
	double experiment_rate, experiment_rate_lower, experiment_rate_upper;
	double experiment_uplift, experiment_uplift_lower, experiment_uplift_upper;
};

/** Consumer lag of one assigned partition, in messages up to its high watermark. */
struct metrics_lag {
	char *topic;
	int32_t partition;
	int64_t lag;           /**< from the consumer's position */
	int64_t committed_lag; /**< from the last Kafka commit; negative: unknown, not rendered */
};

/** The phases of a refresh round (streamrec_refresh_phase_seconds_total). */
enum metrics_refresh_phase {
	METRICS_REFRESH_PREPARE, /**< the loop takes due users, syncs the item view, copies queries */
	METRICS_REFRESH_RANK,    /**< the workers rank (and keep the index current) */
	METRICS_REFRESH_WAIT,    /**< ranked, until the loop turns to publish them */
	METRICS_REFRESH_PUBLISH, /**< the loop explains, applies list rules, encodes and sends */
	METRICS_REFRESH_PHASES
};
extern const char *const metrics_refresh_phase_labels[METRICS_REFRESH_PHASES];

struct metrics {
	/** Decoded events, by enum event_type. */
	uint64_t events_total[EVENT_TYPE_COUNT];
	/** Refused messages, by enum codec_reason (index CODEC_OK stays 0 and is not rendered). */
	uint64_t invalid_events_total[CODEC_REASON_COUNT];

	size_t variant_count;
	struct metrics_variant variants[METRICS_MAX_VARIANTS];

	/** Wall time of one refresh batch, seconds. */
	struct metrics_histogram refresh_batch_seconds;
	/** Wall time the event loop spent on one commit (collecting the changed
	 * rows into the batch the state writer writes), seconds. */
	struct metrics_histogram commit_loop_seconds;
	/** Where refresh rounds spend their wall time, seconds by enum
	 * metrics_refresh_phase: what bounds lists/s under load. */
	double refresh_phase_seconds_total[METRICS_REFRESH_PHASES];
	/** Worker time spent keeping the index current (placing the item rows
	 * learning moved), and the part of rank phases in which the searches
	 * waited for it, seconds. */
	double refresh_upkeep_seconds_total, refresh_upkeep_awaited_seconds_total;
	/** Users waiting for a refresh: marked within the staleness target, and
	 * deferred beyond it; users ever deferred. */
	int64_t refresh_waiting, refresh_deferred_waiting;
	/** The most users the next round takes: refresh.batch, or
	 * refresh.batch_behind while learning is behind its input. */
	int64_t refresh_round_limit;
	uint64_t refresh_deferred_total;
	/** Hit-type events naming a list (list_id) that is neither of the user's
	 * two last published lists (older, before a restart, another instance's):
	 * counted here and nowhere else. */
	uint64_t hits_unknown_list_total;

	/** Known users, known items, bytes of state on disk. */
	int64_t users;
	int64_t items;
	int64_t state_bytes;
	/** The state's block cache: its bound and what it holds (bytes). */
	int64_t block_cache_capacity, block_cache_usage;
	/** Rows and bytes (keys and values) committed to the state per store
	 * family, named in state_family_names (NULL: no such family). */
	uint64_t state_written_rows[METRICS_STATE_FAMILIES];
	uint64_t state_written_bytes[METRICS_STATE_FAMILIES];
	const char *state_family_names[METRICS_STATE_FAMILIES];
	/** Embedding life cycle (README, "Embedding life cycle"), users: new
	 * users given a row, users removed by lifecycle.user_ttl, users
	 * removed by lifecycle.max_users. */
	uint64_t users_admitted_total, users_expired_total, users_evicted_total;
	/** Events of users not admitted yet (lifecycle.admit_after). */
	uint64_t unadmitted_events_total;
	/** The same for items (lifecycle.item_ttl, max_items, item_admit_after). */
	uint64_t items_admitted_total, items_expired_total, items_evicted_total,
	    unadmitted_item_events_total;

	/** State writes with their offset commits; failed ones; messages sent to the DLQ. */
	uint64_t commits_total;
	uint64_t commit_failures_total;
	/** Timer commits put off because the previous write was still going
	 * (ingest_commit(): the loop goes on learning and asks again shortly). */
	uint64_t commits_postponed_total;
	uint64_t dlq_messages_total;
	uint64_t catalogue_records_total; /* items-topic records read since the start */
	int64_t catalogue_loading;        /* 1 while lists wait for the catalogue's re-read */
	/** Messages that waited for a writer schema the registry could not give yet. */
	uint64_t schema_waits_total;
	uint64_t dead_letter_waits_total; /* dead letters re-read: the producer's queue was full */
	uint64_t publish_retries_total;   /* lists not taken by the producer, made again later */

	/** Scale-out (daemon/changelog): user rows written to the changelog, rows
	 * of users whose partition was unknown (not written), partitions
	 * restored from it, users restored, seconds spent restoring; partitions
	 * the consumer holds. */
	uint64_t changelog_records_total, changelog_unplaced_total, changelog_left_out_total;
	uint64_t restores_total, restored_users_total;
	/** Users read back from the state when met, and of them those that
	 * waited for the commit being written (state_user_restores()). */
	uint64_t user_restores_total, user_restores_waited_total;
	double restore_seconds_total;
	int64_t assigned_partitions;
	/** Scale-out (daemon/itemsync): item changes published and folded in,
	 * updates ignored (malformed or another configuration's), and the age
	 * of the last change folded when it was folded. */
	uint64_t item_sync_published_total, item_sync_folded_total, item_sync_ignored_total;
	double item_sync_staleness_seconds;
	/** Content vectors (ItemEvent.content) by what became of them:
	 * METRICS_CONTENT_PLACED (a new item started from it), _STORED (kept:
	 * the map is not solved yet, or the item was learned on already),
	 * _IGNORED (content.dim is 0). */
	uint64_t content_vectors_total[METRICS_CONTENT_OUTCOMES];
	/** Items whose title or description arrived without a content vector
	 * and with no text model configured to embed it. */
	uint64_t content_texts_unembedded_total;
	/** Item texts and search queries embedded by content.text_model. */
	uint64_t content_texts_embedded_total;
	/** The text threads (content.text_threads): texts queued or being
	 * embedded, the seconds the threads spent embedding, and the messages
	 * held (their partition paused) until their text was embedded. */
	int64_t text_embed_queue;
	double text_embed_seconds_total;
	uint64_t text_embed_holds_total;
	/** Search events (UserEvent.search) by outcome: METRICS_SEARCH_APPLIED
	 * (some variant's intent moved), _NOT_APPLIED (the content map is not
	 * solved yet, or the signal is off), _UNEMBEDDED (text only, no text
	 * model), _IGNORED (content.dim is 0). */
	uint64_t search_events_total[METRICS_SEARCH_OUTCOMES];

	/** The experiment's sample-ratio-mismatch p-value (negative: no experiment),
	 * and the level of its intervals and sequential test. */
	double experiment_srm_p;
	double experiment_alpha;

	/** What /readyz reports. */
	bool ready;

	/** The BLAS kernel in use (streamrec_blas_info); use metrics_set_blas(). */
	char blas_kernel[32], blas_cpu_best[32], blas_chosen_by[16];
	/** The text model (streamrec_text_model_info); use metrics_set_text_model(). */
	char text_model_name[64], text_model_kernel[16];
	unsigned text_model_dim;

	/** Consumer lag table; use metrics_set_consumer_lag(). */
	size_t lag_count;
	size_t lag_capacity;
	struct metrics_lag *lags;
};

/**
 * @brief Create zeroed metrics for the named variants (1 to METRICS_MAX_VARIANTS
 * distinct, non-empty names of at most METRICS_VARIANT_NAME_MAX bytes; copied).
 * Freshness and batch histograms use metrics_latency_buckets.
 * @returns the metrics, or NULL with errstr filled.
 */
struct metrics *metrics_new(const char *const *variant_names, size_t variant_count, char *errstr,
			    size_t errstr_size);

void metrics_free(struct metrics *m);

/** @returns the variant's index, or -1 when no variant has that name. */
int metrics_variant_index(const struct metrics *m, const char *name);

/**
 * @brief Set or replace the lags of one topic partition: behind the
 * consumer's position (stored and rendered as is) and behind the last Kafka
 * commit (negative: none yet, not rendered).
 * @returns 0, or -1 with errstr filled (out of memory).
 */
/** @brief Record the OpenBLAS kernel in use, the CPU's best, and how it was chosen. */
void metrics_set_blas(struct metrics *m, const char *kernel, const char *cpu_best,
		      const char *chosen_by);

/** @brief Record the text model in use (content.text_model): its name, dimension and kernel. */
void metrics_set_text_model(struct metrics *m, const char *name, unsigned dim,
			    const char *kernel);

int metrics_set_consumer_lag(struct metrics *m, const char *topic, int32_t partition, int64_t lag,
			     int64_t committed_lag, char *errstr, size_t errstr_size);

/** @brief Drop a partition's lag series (after it was revoked). No-op when absent. */
void metrics_remove_consumer_lag(struct metrics *m, const char *topic, int32_t partition);

/**
 * @brief Reset a histogram to the given strictly ascending, finite bounds.
 * @returns 0, or -1 with errstr filled.
 */
int metrics_histogram_init(struct metrics_histogram *h, const double *upper_bounds,
			   size_t bucket_count, char *errstr, size_t errstr_size);

/** @brief Count one observation, O(buckets). NaN is ignored. */
void metrics_histogram_observe(struct metrics_histogram *h, double value);

/**
 * @brief Approximate the q-quantile (0 <= q <= 1) the way Prometheus's
 * histogram_quantile() does: linear interpolation inside the bucket that
 * holds the rank, 0 as the lower edge of the first bucket, and the last
 * finite bound when the rank falls in the +Inf bucket.
 * @returns the estimate, or NaN when the histogram is empty or q is out of range.
 */
double metrics_histogram_quantile(const struct metrics_histogram *h, double q);

/**
 * @brief Whether metrics_histogram_quantile(h, q) lands in the +Inf bucket,
 * where its estimate is only the last finite bound (a floor, not a figure).
 * @returns false when the histogram is empty or q is out of range.
 */
bool metrics_histogram_quantile_clipped(const struct metrics_histogram *h, double q);

/**
 * @brief Render every metric in the text exposition format 0.0.4.
 * @param out receives a malloc'd, NUL-terminated text the caller frees.
 * @param len receives its length without the NUL.
 * @returns 0, or -1 with errstr filled (out of memory).
 */
int metrics_render(const struct metrics *m, char **out, size_t *len, char *errstr,
		   size_t errstr_size);

/** The Content-Type of metrics_render()'s output. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
