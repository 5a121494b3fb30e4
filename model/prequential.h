/*
 * prequential: test-then-train evaluation of a model over an event stream.
 *
 * Events are replayed in the order given (the caller sorts them by time).
 * Before the model learns a positive event (an event type with weight > 0),
 * the user's list is ranked by the serving policy (model_recommend) and the
 * event's item is looked for in it: hit@k, NDCG@k and reciprocal rank are
 * recorded. The popularity baseline (all-time counts up to that event, with
 * the same exclusions) is scored in the same run. An event whose item the
 * protocol excludes for that user (for example re-buying a bought item
 * under MODEL_EXCLUDE_BOUGHT) cannot be hit by any list and is skipped.
 *
 * Side by side (prequential_config.both_engines): at every test point the
 * same model ranks the user's list with the exact engine and with the index
 * engine (model_recommend_with()); both are scored, and the share of the
 * exact list the index list holds is averaged. Each engine's replay speed
 * counts the shared work (learning, the popularity list) plus its own
 * ranking time, as if it had run alone.
 */
#ifndef STREAMREC_PREQUENTIAL_H
#define STREAMREC_PREQUENTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

struct topk;

/** The stream, as dense indices (see stream/eventlog) and id hashes. */
struct prequential_stream {
	size_t count;
	const uint32_t *user;
	const uint32_t *item;
	const uint8_t *type; /**< enum event_type */
	const int64_t *ts_ms;
	const uint64_t *user_hash; /**< per user index */
	const uint64_t *item_hash; /**< per item index */
	size_t item_total;         /**< catalogue size, for coverage */
};

/** Bits of prequential_config.event_flags: what the protocol did with one event. */
enum prequential_event_flag {
	PREQUENTIAL_TESTED = 1,           /**< a test point: both lists ranked and scored */
	PREQUENTIAL_SKIPPED_EXCLUDED = 2, /**< would be tested, but its item was excluded */
	PREQUENTIAL_EXCLUDES_ITEM = 4, /**< after learning it, the item is excluded for the user */
};

struct prequential_config {
	size_t k;            /**< list length, default 20 */
	uint64_t test_every; /**< test one positive in N (1 = all), for large streams */
	uint64_t warmup;     /**< learn the first N events without testing them */
	/**
	 * Optional (NULL: none): stream->count bytes that the run fills with
	 * prequential_event_flag bits, so that other rankers can be scored on
	 * exactly the same test points with the same exclusions.
	 */
	uint8_t *event_flags;
	/** Rank every test point with both engines (see above); false: the
	 * model's configured engine alone. */
	bool both_engines;
};

/** One ranking's scores. */
struct prequential_scores {
	uint64_t tests;
	double hit_rate; /**< recall@k: share of tests whose item was in the list */
	double ndcg;     /**< mean NDCG@k (one relevant item: 1/log2(rank + 1)) */
	double mrr;      /**< mean reciprocal rank within the list (0 when absent) */
	double coverage; /**< distinct items ever listed / catalogue size */
};

struct prequential_result {
	uint64_t events;
	uint64_t skipped_excluded;
	struct prequential_scores model; /**< the configured engine; with both_engines the exact one */
	struct prequential_scores popularity;
	double seconds;
	double events_per_s; /**< events learned and tested per second, whole replay */
	/* with both_engines only: */
	struct prequential_scores index;  /**< the index engine on the same test points */
	double index_recall;              /**< mean |index list ∩ exact list| / |exact list| over
					   *   test points whose exact list was not empty */
	double exact_rank_seconds;        /**< time in the exact engine's model_recommend_with() */
	double index_rank_seconds;        /**< likewise the index engine's */
	double exact_events_per_s;        /**< events / (seconds - index_rank_seconds) */
	double index_events_per_s;        /**< events / (seconds - exact_rank_seconds) */
};

/**
 * @brief Replay the stream through model (which learns from all of it).
 * @returns 0, or -1 with errstr filled.
 */
int prequential_run(struct model *model, struct topk *topk, const struct prequential_stream *stream,
		    const struct prequential_config *config, struct prequential_result *result,
		    char *errstr, size_t errstr_size);

#endif
