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
 * Baselines and ablations (prequential_config.arms): other rankers scored
 * on exactly the same test points, each learning every event after the
 * test like the model: another model's fused score (an ablation, or
 * co-visitation alone), or a model's all-time popularity or trending list
 * (a trending baseline is a model whose trending_half_life_ms is the
 * baseline's). Every arm uses its own model's exclusions, so arms should
 * share the model's exclusion setting.
 *
 * Every ranking's figures are also split (struct prequential_split): test
 * points whose item is new to the user (discovery: the user never acted on
 * it before in the stream) against repeats, and warm users (the model holds
 * history for them: the fused score ranks) against cold ones (no history:
 * the trending list).
 *
 * List rules (prequential_config.rules): at every test point the model's
 * list is ranked LISTRULES_FETCH_FACTOR times longer when the rules filter,
 * and its first k are scored as the model's list; the rules are applied to
 * it (model/listrules.h, with the user's exclusions and, for exploration,
 * the items with 1 to new_item_events - 1 positive events so far) and the
 * result is scored as a ranking of its own, on the same test points.
 * Exposure of new items (items with fewer than new_item_events positive
 * events when listed) is measured for both: the share of list slots given
 * to them and the number of distinct items shown while new.
 *
 * Blocks (prequential_config.sync_every, below): lists ranked a block of
 * events at a time, on a thread of their own if asked, against the item
 * side as of the block's start.
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

#include "listrules.h"
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
	/**
	 * Optional content vectors (NULL: none): item_total rows of
	 * content_dim floats, row i valid when item_has_content[i]. An item's
	 * vector is handed to every model whose content_dim equals content_dim
	 * (model_item_content()) right before the item's first event, as the
	 * catalogue would announce it before anyone acts on it.
	 */
	const float *item_content;
	const uint8_t *item_has_content;
	size_t content_dim;
	/*
	 * An event of type EVENT_SEARCH (common/event.h) is a search: its item
	 * is the query's id, and its vector (item_content) goes to every model
	 * taking vectors of content_dim (model_search()); it is neither tested
	 * nor learned. A query without a vector is skipped.
	 */
};

/** Bits of prequential_config.event_flags: what the protocol did with one event. */
enum prequential_event_flag {
	PREQUENTIAL_TESTED = 1,           /**< a test point: both lists ranked and scored */
	PREQUENTIAL_SKIPPED_EXCLUDED = 2, /**< would be tested, but its item was excluded */
	PREQUENTIAL_EXCLUDES_ITEM = 4, /**< after learning it, the item is excluded for the user */
};

/** What an arm ranks with. */
enum prequential_ranker {
	PREQUENTIAL_RANK_MODEL = 0, /**< the arm model's serving policy (model_recommend) */
	PREQUENTIAL_RANK_POPULAR,   /**< the arm model's all-time popularity list */
	PREQUENTIAL_RANK_TRENDING,  /**< the arm model's trending list */
};

/** A ranker scored beside the model. The caller owns name and model. */
struct prequential_arm {
	const char *name;
	struct model *model; /**< learns every event (after the test), like the main model */
	enum prequential_ranker ranker;
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
	/** Optional baselines and ablations (see above); their scores go to
	 * prequential_result.arms, which the caller provides (arm_count entries). */
	const struct prequential_arm *arms;
	size_t arm_count;
	/**
	 * Optional (NULL: none): list rules resolved to the stream's indices
	 * (k, categories, boosts, pins, explore_slots; the run fills the pool,
	 * eligibility and the user's exclusions at each test point).
	 */
	const struct listrules_view *rules;
	/** An item with fewer positive events is new (exposure, exploration's pool,
	 * prequential_split.new_item); 0: 10. */
	unsigned new_item_events;
	/** Seed of exploration's draws (mixed with the event's position). */
	uint64_t rules_seed;
	/**
	 * Blocks (0: none, every list ranked at its test point on the model as
	 * it is then). N > 0: the item side lists see is brought up to date
	 * every N events, at the start of each block of N, and a block's test
	 * points are ranked together against the item side as of its start,
	 * each with the user side as of its own test point (its query is taken
	 * before its event is learned), as the daemon ranks a round against the
	 * item side as of its sync. No item row a list sees holds its test
	 * event or a later one. Neither with both_engines nor with rules.
	 */
	size_t sync_every;
	/**
	 * With sync_every: 1 ranks each block on the replay's own thread when
	 * it ends; 2 or more ranks it on a thread of its own while the replay
	 * learns the next block. The figures are the same either way.
	 */
	unsigned threads;
};

/** Exposure of new items in one ranking's lists at the test points. */
struct prequential_exposure {
	uint64_t slots;           /**< list slots shown */
	uint64_t new_slots;       /**< of which held an item new at the time */
	double new_share;         /**< new_slots / slots */
	uint64_t new_items_shown; /**< distinct items listed while new */
};

/** One ranking's scores. */
struct prequential_scores {
	uint64_t tests;
	double hit_rate; /**< recall@k: share of tests whose item was in the list */
	double ndcg;     /**< mean NDCG@k (one relevant item: 1/log2(rank + 1)) */
	double mrr;      /**< mean reciprocal rank within the list (0 when absent) */
	double coverage; /**< distinct items ever listed / catalogue size */
};

/** One ranking's figures, whole and split (coverage only in `all`). */
struct prequential_split {
	struct prequential_scores all;
	struct prequential_scores discovery; /**< the item is new to the user */
	struct prequential_scores repeat;    /**< the user acted on the item before */
	struct prequential_scores warm;      /**< the user has history in the model */
	struct prequential_scores cold;      /**< the user has none: the trending list */
	/** the item had fewer than new_item_events positives (a new item's first events) */
	struct prequential_scores new_item;
	/** the user's first positive event after a search (EVENT_SEARCH) of theirs */
	struct prequential_scores after_search;
};

struct prequential_result {
	uint64_t events;
	uint64_t skipped_excluded;
	uint64_t searches; /**< EVENT_SEARCH events met (with a query vector) */
	struct prequential_scores model; /**< the configured engine; with both_engines the exact one */
	struct prequential_scores popularity;
	struct prequential_split model_split;      /**< model, split */
	struct prequential_split popularity_split; /**< popularity, split */
	/** Caller-provided, prequential_config.arm_count entries (NULL when none). */
	struct prequential_split *arms;
	/* the model's list (exposure), and with prequential_config.rules the ruled one */
	struct prequential_exposure model_exposure;
	struct prequential_split rules_split;
	struct prequential_exposure rules_exposure;
	double seconds;
	double events_per_s; /**< events learned and tested per second, whole replay */
	/* with sync_every: seconds spent ranking blocks (on whichever thread),
	 * and seconds the replay waited for the ranking thread */
	double block_rank_seconds, block_wait_seconds;
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
 * @brief Replay the stream through model (which learns from all of it) and
 * through every arm's model. result->arms must be set by the caller (room
 * for config->arm_count) before the call; the rest of result is written.
 * @returns 0, or -1 with errstr filled.
 */
int prequential_run(struct model *model, struct topk *topk, const struct prequential_stream *stream,
		    const struct prequential_config *config, struct prequential_result *result,
		    char *errstr, size_t errstr_size);

#endif
