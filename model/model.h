/*
 * model: one variant's online recommender, learning from one event at a time.
 *
 * The score of item i for user u fuses three signals (each switchable):
 *   1. long-term taste      p_u . q_i + b_i
 *   2. short-term intent    ybar_u . q_i, ybar_u the mean of y_j over the
 *                           user's last L items (reacts to the last event at once)
 *   3. co-visitation        beta * log(1 + sum_{j in last L} covis(j, i))
 * plus the sampler's log-odds correction alpha * log(count_i): a model
 * trained against negatives drawn from count^alpha learns odds relative to
 * that distribution, and ranking adds it back.
 *
 * Items live in a contiguous float32 matrix whose rows are
 * [q_i (dim floats), b_i + alpha*log(count_i)], so a user's query row
 * [p_u + ybar_u, 1] scores every item with one matrix product (model/topk).
 *
 * Users and items are dense indices chosen by the caller (an id map);
 * their first vectors come from a generator seeded by the external id's hash
 * (and the variant's seed), so a replay of the same stream gives the same
 * parameters bit for bit, whatever order ids are first met in.
 *
 * model/ knows nothing of Kafka or RocksDB: events arrive as plain structs.
 */
#ifndef STREAMREC_MODEL_H
#define STREAMREC_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covis.h"
#include "event.h"


enum model_optimizer { MODEL_ADAGRAD = 0, MODEL_SGD };

/**
 * Where a warm user's list comes from (DESIGN.md, Top-k). Both rank by the
 * same fused score with the same filters; they differ in which items are
 * scored.
 */
enum model_retrieval {
	/** Every item (model/topk): the yardstick, linear in the catalogue. */
	MODEL_RETRIEVAL_EXACT = 0,
	/**
	 * Two stages: candidates from an inverted file over the item rows
	 * (model/ivf, its `index_nprobe` best cells), the co-visitation
	 * neighbours of the user's recent items and the `index_trending` top
	 * trending items; then the exact fused score ranks the candidates.
	 */
	MODEL_RETRIEVAL_INDEX,
};

/**
 * Cells probed per list when model_config.index_nprobe is 0: this share of
 * the index's cells, at least MODEL_INDEX_MIN_NPROBE. Measured with
 * `streamrec eval --retrieval both` (2 shared cores, AMD EPYC, OpenBLAS
 * 0.3.21 Cooperlake kernel, one thread, lists of one user): on the
 * synthetic stream `streamrec gen --events 300000 --items 85000 --users
 * 20000` (64,865 items reached; `make bench-eval`), nlist 225 and nprobe 12
 * (this default) plus 50 trending items gave recall@20 against exact 1.0000
 * and prequential HR@20 0.1644 for both engines, with about 4,000
 * candidates a list (a third of the probed cells skipped by their bounds,
 * model/ivf.h); ranking took a third of the exact engine's time a list,
 * which is what the whole replay gains (2.8x): learning and the popularity
 * list, shared by both engines, are about 5% of the exact replay.
 */
#define MODEL_INDEX_PROBE_SHARE 0.05
#define MODEL_INDEX_MIN_NPROBE  4

/**
 * The automatic nprobe stops growing here. A share of the cells alone would
 * make a list's cost linear in the catalogue again (cells grow as the
 * square root of the items, and so does each cell): capped, a list scores
 * about MODEL_INDEX_MAX_AUTO_NPROBE·sqrt(items) rows, 16,000 at 1M items
 * instead of the 50,000 the 5% share gave. Measured with bench_ivf (1M
 * clustered items, nlist 1000): nprobe 16 gave recall@20 0.993 against
 * exact at twice the lists/s of nprobe 64 (0.999). The daemon's shadow
 * recall (streamrec_index_recall) shows what a real catalogue gets; set
 * index_nprobe to trade the other way.
 */
#define MODEL_INDEX_MAX_AUTO_NPROBE 16

/**
 * The automatic nprobe with a recall target (model_config.index_recall_target)
 * starts where the cell count puts it and then follows the recall the
 * daemon's shadow lists measure, once per MODEL_INDEX_ADAPT_LISTS compared
 * lists. Each compared list tells the recall at every nprobe at once (an
 * exact top-k item the index finds among its candidates is in its list:
 * model_recall_curve), so the cells probed go straight to the fewest
 * whose recall over those lists reaches the target, at least
 * MODEL_INDEX_MIN_ADAPTIVE_NPROBE and at most MODEL_INDEX_MAX_ADAPTIVE_NPROBE
 * (or every cell). The automatic start's floor (MODEL_INDEX_MIN_NPROBE)
 * guards a guess; here the recall is measured, so one cell is allowed where
 * it reaches the target (at 1M items a bench_ivf list costs about three
 * quarters at 2 cells of what it costs at 4: 21.5 against 28.8 µs). (It used
 * to step, half as many cells more below the target and a quarter fewer
 * well above it: with refresh.shadow_budget's fewer
 * compared lists at 1M items it was still at 6 cells where the curve
 * reached the target at 4.) Where co-visitation carries the lists (the
 * daemon's shadow recall read 1.0 at 100k and 1M items with 16 cells) it
 * falls to the minimum, which on that stream saved little CPU (README, "The
 * model", the index engine): the cells' bounds already skipped most probed
 * cells.
 */
#define MODEL_INDEX_ADAPT_LISTS          200
#define MODEL_INDEX_MIN_ADAPTIVE_NPROBE  1
#define MODEL_INDEX_MAX_ADAPTIVE_NPROBE  64

/**
 * Compared lists' recall@k at each nprobe: found[p] sums, over `compared`
 * lists, the share of each exact list among the index's candidates when it
 * probes p cells (p = 0: its co-visitation and trending candidates alone).
 */
struct model_recall_curve {
	double found[MODEL_INDEX_MAX_ADAPTIVE_NPROBE + 1];
	size_t compared;
};

/**
 * The index engine's trending candidates are taken again once this many
 * events were learned, not per list: a list of the hour's trending items
 * barely changes in a thousand events. (Taking it costs little since
 * model/popularity keeps the list's head as items are counted; it was an
 * O(items) scan, as costly as the index search itself at 85k items.)
 */
#define MODEL_INDEX_TRENDING_EVENTS 1000

/**
 * The most items one user's exclusions hold (400 KB of its row). A user's
 * row is written whole in one store value of at most 1 MiB; one id that
 * buys or touches more distinct items than this (a shared "guest" id, a
 * crawler) keeps the ones it excluded first, and further ones are not left
 * out of its lists. Unbounded, such a row failed every commit.
 */
#define MODEL_MAX_EXCLUSIONS 100000

/** Which items a user's list leaves out. */
enum model_exclusion {
	MODEL_EXCLUDE_NONE = 0,
	MODEL_EXCLUDE_BOUGHT,     /**< items the user purchased (the default) */
	MODEL_EXCLUDE_INTERACTED, /**< every item the user acted on positively */
};

/** One variant's hyper-parameters. model_config_default() fills the defaults. */
struct model_config {
	size_t dim; /**< embedding dimension d (4..1024), default 32 */
	enum model_optimizer optimizer;
	float learning_rate; /**< default 0.14 (README "Accuracy") */
	float l2;            /**< L2 on p, y, q; default 1e-5 */
	unsigned negatives;  /**< negatives per positive, default 4 */
	/**
	 * Experience replay: after each positive, replay_steps more SGD steps
	 * on the user's own recent items (before this event), each time one of
	 * them drawn at random as the positive and the others as its query,
	 * against replay_negatives fresh negatives, at replay_weight times the
	 * event's weight. A stream is seen once; this lets taste learn more
	 * from it at (1 + steps) times the SGD work. Defaults 3, 2 and 0.7
	 * (README "Accuracy"); 0 steps: off.
	 */
	unsigned replay_steps;
	unsigned replay_negatives;
	float replay_weight;
	/**
	 * Weight of each event type: > 0 trains a positive with that weight;
	 * < 0 trains a negative (label 0) of weight |w| for that item only (no
	 * sampling, no history); 0 ignores the event. Defaults: IMPRESSION 0
	 * (exposure is not interest), VIEW 1, CLICK 1.5, ADD_TO_CART 3,
	 * REMOVE_FROM_CART -0.5, FAVORITE 2.5, PURCHASE 5.
	 */
	float event_weight[EVENT_TYPE_COUNT];
	unsigned recent_items;         /**< L, the short-term window; default 5 */
	/**
	 * Recency weighting of the intent signal: the j-th most recent of the
	 * last L items weighs intent_decay^j in ybar (weights normalised to sum
	 * 1); 1 is the plain mean. Default 0.9: with learning_rate 0.14,
	 * covis_window 4 and trending_weight 0.35 it gains on MovieLens and the
	 * synthetic streams, and each signal still earns its place in
	 * tests/unit/045_learning; lower decays gain more on the streams but
	 * make taste or co-visitation redundant on the planted stream (README
	 * "Accuracy").
	 */
	float intent_decay;
	float covis_weight;            /**< beta; default 4 */
	/**
	 * Neighbours kept per item, 1..COVIS_MAX_BOUND (and recent_items times
	 * this at most 1<<22: a query gathers that many); when a list is full
	 * a newcomer replaces its weakest entry. Default 1024.
	 */
	unsigned covis_neighbours;
	/**
	 * A query's strongest co-visitation items that carry their score, the
	 * rest dropped (ties to the lower index), 0..1<<22; 0: every one. A
	 * query gathers up to recent_items x covis_neighbours of them, and each
	 * is a random row an index list scores apart (model.h, model_query()).
	 */
	unsigned covis_candidates;
	unsigned covis_window;         /**< a new item pairs with each of the last W items; default 4 */
	/**
	 * Recency weighting of the co-visitation signal: at a query the
	 * neighbour list of the j-th most recent of the user's distinct recent
	 * items weighs covis_recent_decay^j, the weights scaled to a mean of 1
	 * (so the sums keep their size and beta its meaning); 1 sums every
	 * recent item alike. Default 0.7: the item just seen says more about
	 * the next one than the item seen four events ago. Measured (README
	 * "Accuracy"): MovieLens 100K 0.2911 -> 0.2927, and 0.011 to 0.015 on
	 * the synthetic base, pairs and drift streams; 0.6 gains more on those
	 * but makes the correction redundant in tests/unit/045_learning.
	 */
	float covis_recent_decay;
	/** Also count each pair back (j near i as well as i after j); default true. */
	bool covis_both_directions;
	/** Count a pair with the event's weight instead of 1; default true. */
	bool covis_weighted;
	/** Co-visitation decay, in learned events; 0: none. Default 1e6 events. */
	double covis_half_life_events;
	float sampler_exponent;        /**< alpha of count^alpha; default 0.75 */
	float correction_weight;       /**< multiplies alpha*log(count) at ranking; default 1 */
	/**
	 * Trending decay in event time, for the cold-start list and the trending
	 * signal; default 1 day. Measured (README, Accuracy): on MovieLens 100K
	 * 1 h made the trending signal spotlight one user's rating session
	 * (HR@20 0.233, below co-visitation alone; 1 d: 0.285), on the
	 * synthetic drift stream 1 d was the best tried, and on the others the
	 * two tie.
	 */
	double trending_half_life_ms;
	/**
	 * gamma of the trending signal gamma*log(trend_i) (trend_i: item i's
	 * count decayed with trending_half_life_ms, in event time), 0..100;
	 * default 0.35. Kept in the bias column with the correction: it moves
	 * only when i is counted (and all items at a trending rescale).
	 */
	float trending_weight;
	float init_std;                /**< initial vector spread; default 0.1 */
	bool use_taste;                /**< signal 1 (p_u) */
	bool use_bias;                 /**< the learned item bias b_i (trained and ranked) */
	bool use_intent;               /**< signal 2 (ybar_u) */
	bool use_covis;                /**< signal 3 */
	bool use_correction;           /**< the log-odds correction */
	bool use_trending;             /**< the trending signal (trending_weight) */
	/** false: keep only counts, exclusions and recent items (a popularity
	 * control arm needs nothing else): no gradient steps, no co-visitation. */
	bool learn_embeddings;
	enum model_exclusion exclusion;
	uint64_t seed; /**< mixed into every id's generator and the sampler */
	/** Which engine model_recommend() uses; default MODEL_RETRIEVAL_EXACT. */
	enum model_retrieval retrieval;
	/**
	 * Index engine: cells probed per list, 0..1<<20; 0 (the default) =
	 * model_index_nprobe() of the current cell count. A value above the
	 * cell count probes every cell (lists equal the exact engine's, up to
	 * rounding).
	 */
	size_t index_nprobe;
	/**
	 * Index engine with the automatic nprobe (index_nprobe 0): the recall@k
	 * against the exact engine that probing aims at, 0..1; default 0.97.
	 * The cells probed follow the measured recall (model_view_adapt_nprobe());
	 * 0: they stay where the cell count puts them (model_index_nprobe()).
	 */
	double index_recall_target;
	/** Index engine: cells, 0..1<<20; 0 (the default) = sqrt(items) at each training. */
	size_t index_nlist;
	/**
	 * Index engine: how many of the top trending items join every warm
	 * user's candidates, 0..10000; default 50.
	 */
	size_t index_trending;
	/**
	 * Content vectors (model/content.h): the dimension C of the content
	 * embeddings items may carry, 0..CONTENT_MAX_DIM; 0 (the default):
	 * off, no map, no memory.
	 */
	size_t content_dim;
	/**
	 * An item is folded into the content map once it has this many
	 * positives (its learned vector is trusted then), 1..1000000; default 10.
	 * The prior of a content-placed item fades on the same scale.
	 */
	unsigned content_min_events;
	/** Ridge lambda of the map, > 0 and <= 1e6; default 1. */
	double content_ridge;
	/** The map is solved again after this many new items, 1..1000000 (first
	 * use after this many too); default 32. */
	unsigned content_refit_items;
	/**
	 * Strength of the content prior, 0..10; default 0.05. While an item
	 * placed from its content has n < 10·content_min_events positives, each
	 * step on q_i adds lambda_n·(q_i − W^T c_i) to the gradient (on top of
	 * l2·q_i), lambda_n = content_prior_weight · M / (M + n): a rare item's
	 * vector is pulled back towards where its content says it belongs,
	 * less and less as its own evidence grows.
	 */
	float content_prior_weight;
	/** The content signal: new items start at W^T c and keep the prior; default true. */
	bool use_content;
	/**
	 * Weight w of a search (model_search()) in the user's query, 0..100;
	 * default 10. A search adds w·(left/L)·W^T e to the dense query, e the
	 * query's content vector, left the user's positive events still to come
	 * before it has faded (L = recent_items at the search, one less at each).
	 */
	float search_weight;
	/** The search signal; default true (needs content_dim > 0). */
	bool use_search;
};

/** One event, with the caller's dense indices and the external ids' hashes. */
struct model_event {
	uint32_t user;
	uint32_t item;
	uint64_t user_hash; /**< hash of the external user id (seeds its first vector) */
	uint64_t item_hash;
	enum event_type type;
	int64_t ts_ms;
};

/** A user's query for the top-k engine. */
struct model_query {
	float *vector;          /**< dim + 1 floats, written by model_query() */
	uint32_t *sparse_items; /**< co-visitation candidates (capacity: model_sparse_capacity()) */
	float *sparse_scores;
	/** Optional (NULL: not kept): per sparse item, the recent item whose
	 * weighted count towards it is largest (the first of equals), for
	 * model_explain(). Same capacity as sparse_items. */
	uint32_t *sparse_because;
	size_t sparse_count;
	const uint32_t *exclude; /**< sorted; points into the model, valid until the next learn */
	size_t exclude_count;
};

struct model;

/** @brief Fill config with the documented defaults. */
void model_config_default(struct model_config *config);

/**
 * @brief Check a configuration.
 * @returns 0, or -1 with errstr naming the first bad field and its bounds.
 */
int model_config_check(const struct model_config *config, char *errstr, size_t errstr_size);

/** @returns a new empty model, or NULL with errstr filled (bad config or no memory). */
struct model *model_new(const struct model_config *config, char *errstr, size_t errstr_size);

void model_free(struct model *model);

/** @returns the configuration the model was made with. */
const struct model_config *model_config(const struct model *model);

/**
 * @brief Learn from one event (test-then-train callers query first).
 * @returns 0, or -1 with errstr filled when memory runs out.
 */
int model_learn(struct model *model, const struct model_event *event, char *errstr,
		size_t errstr_size);

/**
 * @brief Count an event on item without learning from it (the embedding
 * life cycle's admission filter: a user not admitted yet trains no
 * embedding): the item's popularity, trending count and sampler weight
 * move as model_learn() would move them; no vector, no co-visitation, no
 * user. Events of weight <= 0 count nothing. The step counts it.
 * @returns 0, or -1 with errstr filled when memory runs out.
 */
int model_count_item(struct model *model, uint32_t item, uint64_t item_hash,
		     enum event_type type, int64_t ts_ms, char *errstr, size_t errstr_size);

/**
 * @brief Hint that event will be learned soon: starts loading its user's and
 * item's rows into cache. Callers holding a batch prefetch a few events ahead.
 */
void model_prefetch(const struct model *model, const struct model_event *event);

/** @returns the co-visitation weight beta in force. */
float model_covis_weight(const struct model *model);

/** @returns the longest co-visitation list (for tuning covis_neighbours). */
size_t model_covis_longest(const struct model *model);

/** @returns the number of events learned so far (the model step). */
uint64_t model_step(const struct model *model);

/** @returns users and items the model has rows for. */
size_t model_user_count(const struct model *model);
size_t model_item_count(const struct model *model);

/**
 * @brief The item matrix for scoring: *item_count rows of dim+1 floats,
 * *row_stride floats apart. Valid until the next model_learn().
 */
const float *model_item_matrix(const struct model *model, size_t *item_count, size_t *row_stride);

/** @returns true when the user has recent items (else serve the trending list). */
bool model_user_has_history(const struct model *model, uint32_t user);

/** @returns true when the user's list leaves item out (see enum model_exclusion). */
bool model_user_excludes(const struct model *model, uint32_t user, uint32_t item);

/** @returns how many co-visitation candidates a query can carry at most:
 * config.covis_candidates, or recent_items x covis_neighbours when that is
 * fewer or covis_candidates is 0. */
size_t model_sparse_capacity(const struct model *model);

/**
 * @brief Build user's query: dense vector [p_u + ybar_u, 1] (signals as
 * configured), the co-visitation scores of the successors of their recent
 * items, and their exclusion list. The caller provides vector (dim+1) and
 * sparse arrays (model_sparse_capacity()).
 */
void model_query(struct model *model, uint32_t user, struct model_query *query);

/** @returns item's all-time positive count. */
uint64_t model_item_count_of(const struct model *model, uint32_t item);

/**
 * @brief The trending list (time-decayed counts), best first, without the
 * user's exclusions (user may be UINT32_MAX for none).
 * @returns how many items were written to out (at most k).
 */
size_t model_trending(const struct model *model, uint32_t user, size_t k, uint32_t *out);

/**
 * @brief All-time popularity list, best first, without the user's exclusions
 * and, when eligible is not NULL, without items whose eligible[i] is 0.
 * @returns how many items were written to out (at most k).
 */
size_t model_popular(const struct model *model, uint32_t user, size_t k, const uint8_t *eligible,
		     uint32_t *out);

struct topk;
struct topk_result;

/**
 * @brief The serving policy: each user's best k items, best first. A user
 * with history gets the fused score (dense query against the item matrix
 * through topk, plus co-visitation, minus exclusions); a user without
 * history gets the trending list. eligible (NULL = all) marks items that
 * may be shown at all. topk must take batches of user_count and lists of k.
 * results has room for user_count * k; counts gets each user's list length.
 * @returns 0, or -1 with errstr filled.
 */
int model_recommend(struct model *model, struct topk *topk, const uint32_t *users,
		    size_t user_count, size_t k, const uint8_t *eligible,
		    struct topk_result *results, size_t *counts, char *errstr, size_t errstr_size);

/**
 * @brief model_recommend() with the engine named by `retrieval` instead of
 * the config's (an offline comparison runs both on one model).
 *
 * MODEL_RETRIEVAL_EXACT ranks every item through topk, exactly as
 * model_recommend() with the default config. MODEL_RETRIEVAL_INDEX does not
 * use topk (it may be NULL) but the model's own index: built from the item
 * matrix on the first call (and again when k exceeds the largest k it was
 * built for), brought up to date before every search with the rows that
 * moved since the last call (learning, new items, seeding, import), and
 * retrained when ivf_needs_retrain() says its cells no longer fit and at
 * least a quarter of the rows changed since the last training (so that
 * rows that cannot be split well, such as many never-counted items, do not
 * trigger a training per call). Candidates: the probed cells, the user's
 * co-visitation items, and the top config.index_trending trending items
 * (without exclusions, refreshed every MODEL_INDEX_TRENDING_EVENTS events,
 * so an exclusion can take a trending candidate's place); then the fused
 * score, exclusions and `eligible` exactly as the exact engine. Cold users
 * get the trending list with either engine.
 *
 * Threads: like model_learn(), this writes the model (its view, scratch):
 * one thread at a time, the one that learns or under the same lock (see
 * Lists on other threads for ranking beside learning).
 * Memory: the index holds a second copy of the item rows, about 8 bytes
 * per item more, and nlist·(2·dim + 4) floats (model/ivf.h); the model
 * keeps 5 bytes per item of moved-row tracking whichever engine runs.
 * @returns 0, or -1 with errstr filled (a failed index update drops the
 * index; the next call builds it again).
 */
int model_recommend_with(struct model *model, struct topk *topk, enum model_retrieval retrieval,
			 const uint32_t *users, size_t user_count, size_t k,
			 const uint8_t *eligible, struct topk_result *results, size_t *counts,
			 char *errstr, size_t errstr_size);

/**
 * @brief The index engine's quality: for the given users, computes both
 * the index's lists and the exact lists (topk must take batches of
 * user_count and lists of k), and writes to *recall the mean over warm
 * users (users with history; cold users get the trending list from either
 * engine and are skipped) of |index list ∩ exact list| / |exact list|,
 * users with an empty exact list skipped; 1.0 when no user was compared.
 * The index is used with the config's nprobe, whatever config.retrieval is.
 * The daemon's shadow does as much on a share of its rounds. With a
 * curve (NULL: none), also adds the recall at each nprobe
 * (model_view_recall_curve()) to it.
 * Threads and memory as model_recommend_with().
 * @returns 0, or -1 with errstr filled.
 */
int model_recommend_recall(struct model *model, struct topk *topk, const uint32_t *users,
			   size_t user_count, size_t k, const uint8_t *eligible, double *recall,
			   struct model_recall_curve *curve, char *errstr, size_t errstr_size);

/*
 * Lists on other threads. model_recommend_with() is the two steps below on
 * one thread. To rank on other threads while the owner (the thread that
 * learns) goes on learning:
 *   1. the owner brings the model's view of the item side up to date,
 *      model_view_sync(): a view that owns its rows (own_rows) copies the
 *      rows changed since the last sync (a memcpy each) and the new items;
 *   2. the owner prepares each batch, model_batch_prepare(): every warm
 *      user's query is a copy of what it reads of the user side (the query
 *      vector, co-visitation scores, exclusions), and cold users' lists
 *      (trending) are made at once;
 *   3. one thread calls model_view_prepare() (the index's upkeep: moved
 *      rows re-assigned, a retraining, in line or started aside, where a
 *      thread of the index's own reads only its snapshot of the rows), then
 *      any number of threads rank parts of the batches with
 *      model_view_search(), each with its own struct model_searcher (and
 *      topk for the exact engine).
 * Step 3's upkeep reads and writes the view only, so it may start as soon
 * as the view is synced, while the owner still prepares the batches (step
 * 2 reads the model only); the searches wait for both.
 * Ownership rule: from a sync until the last search returns, the view
 * belongs to the ranking threads, and each batch from its hand-over: the
 * owner neither syncs nor prepares into them (it learns on the model's own
 * rows meanwhile); between a round's last search and the next sync they
 * are the owner's again.
 * Lists therefore rank against the item side as of the sync, with the
 * user side as of the batch's preparation.
 */

/** The item side as lists see it: rows (the model's or a copy) and the index. */
struct model_view;

/** A batch of users' queries, prepared on the owner's thread. */
struct model_batch {
	size_t k;                   /**< list length */
	size_t warm;                /**< queries: the users with history */
	struct topk_query *queries; /**< warm queries, in the users' order */
	size_t *warm_index;         /**< queries[w] is users[warm_index[w]] */
	/* storage behind the queries */
	float *vectors;
	uint32_t *sparse_items;
	float *sparse_scores;
	uint32_t *sparse_because; /**< per sparse item, its recent item (model_query) */
	size_t sparse_stride;     /**< sparse entries kept per query */
	size_t excluded;          /**< exclusions stored (model_batch_add()) */
	uint32_t *exclude;
	size_t queries_capacity, warm_index_capacity, vectors_capacity, sparse_items_capacity,
	    sparse_scores_capacity, sparse_because_capacity, exclude_capacity;
};

/** One ranking thread's scratch and counters. */
struct model_searcher;

/**
 * @brief The model's view (made on first use; asking for the other kind
 * makes a new one, which sees every item as new). own_rows: a copy of the
 * rows that other threads may read while the model learns (item_count ×
 * (dim + 1) floats more); otherwise the model's own rows, for one thread.
 * @returns the view (the model's: freed with it), or NULL when out of memory.
 */
struct model_view *model_view(struct model *model, bool own_rows, char *errstr,
			      size_t errstr_size);

/** @brief Step 1 (owner): the rows changed since the last sync, for lists up to k. */
int model_view_sync(struct model_view *view, struct model *model, size_t k, char *errstr,
		    size_t errstr_size);

/**
 * @brief Step 2 (owner): the queries of `users`; cold users' lists into
 * results[u * k ...] and counts[u] at once. The batch is reused (its storage
 * grows); model_batch_free() frees it. @returns 0, or -1 with errstr filled.
 */
int model_batch_prepare(struct model_batch *batch, struct model *model, const uint32_t *users,
			size_t user_count, size_t k, const uint8_t *eligible,
			struct topk_result *results, size_t *counts, char *errstr,
			size_t errstr_size);

void model_batch_free(struct model_batch *batch);

/**
 * @brief Step 2 one user at a time (owner), so that each query is the user
 * side as of its own moment (an offline replay adds a test point's user
 * before learning its event): model_batch_begin() empties the batch for
 * lists of k, then each model_batch_add() appends a warm user's query
 * (batch->queries[batch->warm - 1], with warm_index = position) or writes a
 * cold user's trending list to cold_list (room for k) and *cold_count.
 * @returns 1 (warm), 0 (cold), or -1 with errstr filled.
 */
void model_batch_begin(struct model_batch *batch, struct model *model, size_t k);
int model_batch_add(struct model_batch *batch, struct model *model, uint32_t user,
		    size_t position, const uint8_t *eligible, struct topk_result *cold_list,
		    size_t *cold_count, char *errstr, size_t errstr_size);

/*
 * Step 1 in two halves, for a ranking thread that holds the view across
 * more than one of the owner's syncs (an offline replay ranks one block of
 * test points while the owner learns the next): the owner captures the item
 * side's changes since its last capture into a delta, as of that moment;
 * the thread holding the view applies the deltas later, in the order they
 * were captured, each bringing the view to its capture's moment. A view
 * that deltas feed has its own rows and is never passed to model_view_sync().
 */
struct model_view_delta;

struct model_view_delta *model_view_delta_new(void);
void model_view_delta_free(struct model_view_delta *delta);

/** @brief Owner: the changes since the last capture, for lists up to k. */
int model_view_capture(struct model *model, struct model_view_delta *delta, size_t k,
		       char *errstr, size_t errstr_size);

/** @brief The view's holder: applies a delta (view made with own_rows). */
int model_view_apply(struct model_view *view, const struct model_view_delta *delta, char *errstr,
		     size_t errstr_size);

/**
 * @brief Step 3, once per sync, on one thread, before any search that uses
 * the index engine: builds the index or brings it up to date with the rows
 * synced (see model_recommend_with()). @returns 0, or -1 with errstr filled
 * (the index is dropped and built again at the next preparation).
 */
int model_view_prepare(struct model_view *view, char *errstr, size_t errstr_size);

/** @returns whether the view's index is built for its lists' k, so that
 * model_view_prepare() keeps it current rather than building it (owner,
 * between a round's last search and the next sync, or after a sync). */
bool model_view_indexed(const struct model_view *view);

/**
 * @brief Step 3: ranks the batch's warm queries [first, first + count) with
 * the given engine into results[(w - first) * k ...] and counts[w - first].
 * Reads the view and the batch only: threads may search at once, each with
 * its own searcher. @returns 0, or -1 with errstr filled.
 */
int model_view_search(const struct model_view *view, struct model_searcher *searcher,
		      enum model_retrieval retrieval, const struct model_batch *batch,
		      size_t first, size_t count, const uint8_t *eligible,
		      struct topk_result *results, size_t *counts, char *errstr,
		      size_t errstr_size);

/** @returns a searcher using topk (borrowed; NULL: the index engine only), or NULL. */
struct model_searcher *model_searcher_new(struct topk *topk, char *errstr, size_t errstr_size);
void model_searcher_free(struct model_searcher *searcher);
void model_searcher_set_topk(struct model_searcher *searcher, struct topk *topk);
/** @brief The index engine's items scored and lists since the last take (or
 * the searcher's start), and zeroes them (the searcher's user). */
void model_searcher_take(struct model_searcher *searcher, uint64_t *candidates, uint64_t *lists);

/**
 * @brief The owner, between rounds: `compared` lists ranked by the index
 * were also ranked exactly, with recall_sum the sum of their recall@k
 * (model_lists_recall()). With the automatic nprobe and a recall target,
 * the cells probed from the next round follow (MODEL_INDEX_ADAPT_LISTS).
 * @returns the cells probed per list from now on (0: no index yet).
 */
size_t model_view_adapt_nprobe(struct model_view *view, const struct model_recall_curve *curve);

/** @brief Adds curve's compared lists and their recall at each nprobe to sum. */
void model_recall_curve_add(struct model_recall_curve *sum, const struct model_recall_curve *curve);

/**
 * @brief Adds to curve what the exact lists of the batch's warm queries
 * [first, first + count) (exact[q * k ...], exact_counts[q] long, q from 0;
 * empty lists are not compared) show of the index: for each nprobe p up to
 * MODEL_INDEX_MAX_ADAPTIVE_NPROBE, the share of each list among the
 * candidates the index has probing p cells (ivf_probes_needed()), which is
 * the recall@k its list has at that nprobe. Reads the view and the batch
 * only (any thread, like model_view_search()); nothing without an index.
 */
void model_view_recall_curve(const struct model_view *view, const struct model_batch *batch,
			     size_t first, size_t count, const struct topk_result *exact,
			     const size_t *exact_counts, struct model_recall_curve *curve);

/**
 * @brief Whether model_view_prepare() retrains the index aside (owner,
 * between rounds; default false): on a thread of its own from a snapshot of
 * its rows, the index serving as it is meanwhile, the new cells installed at
 * the first preparation after it finished, with the rows moved since placed
 * again. For a daemon, whose lists would otherwise wait for every training
 * (seconds at 1M items); a replay keeps training in line, so that its lists
 * do not depend on the timing.
 */
void model_view_train_aside(struct model_view *view, bool aside);

/**
 * @brief Bounds the moved rows the next model_view_prepare() places again
 * in the index (owner, between rounds; SIZE_MAX, the default: all of them).
 * The others stay pending, the longest-waiting placed first next time;
 * items new to the index are always placed. Searches meanwhile find such an
 * item in its old cell with its old row: the shadow recall shows what that
 * costs. The daemon bounds the upkeep under overload, so that its rounds
 * are not held back by it (refresh.c, upkeep_limit()).
 */
void model_view_limit_upkeep(struct model_view *view, size_t rows);

/**
 * @brief Threads the next build of the index (its first, or after a change
 * of k) splits its assignments over (owner, between rounds; 1, the
 * default: the preparing thread alone). The cells are the same whatever
 * the count. The daemon builds its indexes at start with every refresh
 * thread's core, before anything else runs (refresher_build_indexes()).
 */
void model_view_build_threads(struct model_view *view, size_t threads);

/** @brief Adds a searcher's counters to the view's index statistics (owner, between rounds). */
void model_view_collect(struct model_view *view, struct model_searcher *searcher);

/**
 * @returns the sum over users with a non-empty exact list of |other ∩ exact|
 * / |exact| (lists k apart in the arrays), counting them in *compared.
 */
double model_lists_recall(const struct topk_result *exact, const size_t *exact_counts,
			  const struct topk_result *other, const size_t *other_counts,
			  size_t user_count, size_t k, size_t *compared);

/**
 * @returns the cells the index engine probes for a catalogue split into
 * `nlist` cells: config.index_nprobe, or when it is 0,
 * ceil(MODEL_INDEX_PROBE_SHARE·nlist) but at least MODEL_INDEX_MIN_NPROBE.
 */
size_t model_index_nprobe(const struct model *model, size_t nlist);

/** Index engine counters, for benchmarks and metrics. */
struct model_index_stats {
	bool built;               /**< the index exists */
	size_t nlist;             /**< its cells */
	size_t nprobe;            /**< cells probed per list */
	uint64_t trainings;       /**< builds and retrainings so far */
	double training_seconds;  /**< their wall time (in line, or aside until installed) */
	uint64_t rows_synced;     /**< rows passed to ivf_update_item() so far */
	uint64_t rows_kept;       /**< of which kept their cell unscored (ivf_kept_cells()) */
	size_t rows_pending;      /**< moved rows the index has not placed again yet
				       (model_view_limit_upkeep()) */
	double row_seconds;       /**< an upkeep's seconds per row placed, recent mean
				       (0: none measured yet) */
	uint64_t candidates;      /**< items scored by index searches so far */
	uint64_t lists;           /**< warm lists the index produced so far */
	size_t items;             /**< items it holds */
	size_t largest_cell;      /**< items in its largest cell (the mean is items / nlist) */
};

/** @brief Fills stats with the index engine's counters. */
void model_index_stats(const struct model *model, struct model_index_stats *stats);

/** @brief The view's index statistics (owner, between rounds; zeros before an index). */
void model_view_stats(const struct model_view *view, struct model_index_stats *stats);

/*
 * Explanations (DESIGN.md, Serving and explanations). A warm user's fused
 * score of item i is a sum of terms, and each term is one signal:
 *   taste     p_u . q_i + b_i
 *   intent    ybar_u . q_i
 *   covis     beta * log(1 + sum_{j in last L} covis(j, i))
 *   trending  the item's popularity terms: the sampler's log-odds correction
 *             alpha * log(count_i) and the trending signal gamma * log(trend_i)
 * (signals switched off contribute 0 and are never the reason). The
 * dominant signal is the largest term; the recent item behind it is, for
 * covis, the recent item with the largest co-visitation count towards i,
 * for intent, the recent item whose y_j . q_i is largest. A cold user's list
 * is the trending list: cold_start. The popularity control arm's lists are
 * all-time popularity: popular (the daemon labels those; nothing here
 * ranks them).
 */
enum model_reason {
	MODEL_REASON_TASTE = 0,
	MODEL_REASON_INTENT,
	MODEL_REASON_COVIS,
	MODEL_REASON_TRENDING,
	MODEL_REASON_COLD_START,
	MODEL_REASON_POPULAR,
	MODEL_REASON_COUNT
};

/** Why one listed item is there, and the terms of its score. */
struct model_explanation {
	enum model_reason reason;
	uint32_t because_item; /**< the recent item behind it; UINT32_MAX: none */
	/** The terms (0 for a cold user): their sum is the item's fused score. */
	float taste, intent, covis, trending;
};

/** @returns the schema's name of a reason ("taste", "cold_start", ...). */
const char *model_reason_name(enum model_reason reason);

/**
 * A user's co-visitation terms as a query had them (model_query() with
 * sparse_because): its sparse items sorted ascending, their scores, and the
 * recent item behind each.
 */
struct model_covis_terms {
	const uint32_t *items;
	const float *scores;
	const uint32_t *because;
	size_t count;
};

/** @brief The covis terms of a prepared batch's warm query w (valid while the batch is). */
void model_batch_covis_terms(const struct model_batch *batch, size_t w,
			     struct model_covis_terms *terms);

/**
 * @brief Explain a user's listed items: out[n] for items[n]. The
 * co-visitation terms are covis's when given (the ones the list was ranked
 * with: the daemon passes its round's, prepared on the loop), else computed
 * here by model_query(). The taste and intent terms are recomputed from the
 * model, O(count · dim · L). Reads the model: call it on the thread that
 * learns (the daemon does so when it publishes a list ranked on another
 * thread against a snapshot, so taste and intent are the model's as of
 * publishing, a few events at most after the list was ranked).
 * @returns 0, or -1 when out of memory computing the covis terms (out then
 * explains without co-visitation).
 */
int model_explain(struct model *model, uint32_t user, const struct model_covis_terms *covis,
		  const uint32_t *items, size_t count, struct model_explanation *out);

/** @returns a pointer to user's p vector (dim floats), for tests and inspection. */
const float *model_user_vector(const struct model *model, uint32_t user);

/** @returns pointers to item's q (dim floats, a row of the matrix) and y vectors, and its bias. */
const float *model_item_vector(const struct model *model, uint32_t item);
const float *model_item_intent_vector(const struct model *model, uint32_t item);
float model_item_bias(const struct model *model, uint32_t item);

/**
 * @brief Cold start of a new item: give item (index, id hash) the mean q, y
 * and bias of the items in from[] that have been learned on (count > 0),
 * typically the other items of its catalogue category. Only an item nothing
 * was learned on yet is seeded; a learned item keeps its parameters.
 * @returns the number of items averaged (0: item left as it was), or -1
 * with errstr filled (out of memory).
 */
long model_seed_item(struct model *model, uint32_t item, uint64_t hash, const uint32_t *from,
		     size_t from_count, char *errstr, size_t errstr_size);

/*
 * Content vectors (model/content.h). Items may carry a content vector
 * (config.content_dim floats, from an upstream text or image model). The
 * model learns a linear map W from content space to item space on items it
 * trusts (content_min_events positives: the item's c and its q then are
 * folded into the map's statistics, and c is dropped), and uses it for:
 *   - placement: an item nothing was learned on yet starts at q_i = W^T c_i
 *     (its y and bias are left as they were: the category mean when the
 *     caller seeded it with model_seed_item() first, else its hash's);
 *   - the prior: see model_config.content_prior_weight;
 *   - ranking before its first positive: an item placed from content ranks
 *     by its vectors with the log-odds correction of an item of
 *     content_min_events positives (the items the map learned from) and no
 *     trending term, instead of the penalty of never-counted items.
 */

/**
 * @brief Item's content vector arrives (an item event): stored until the
 * item is folded into the map (at once when it already has
 * content_min_events positives); the item is placed at W^T c when nothing
 * was learned on it yet, it was not placed before, the signal is on and
 * the map was solved. content must be finite (the caller validates).
 * @returns 1 placed, 0 stored only, -1 with errstr filled (content off,
 * out of memory, a failed solve).
 */
long model_item_content(struct model *model, uint32_t item, uint64_t hash, const float *content,
			char *errstr, size_t errstr_size);

/** @returns true when item was placed from its content vector. */
bool model_item_content_placed(const struct model *model, uint32_t item);

/** @returns the content prior of item (dim floats), or NULL when it has none. */
const float *model_item_content_prior(const struct model *model, uint32_t item);

/**
 * @brief A search by user: query (content_dim floats, the query's embedding
 * in the content space: the same model as the items' content vectors)
 * moves the user's short-term intent towards the items the content map
 * places near it: W^T query joins the user's dense query (see
 * model_config.search_weight) and fades over the user's next recent_items
 * positive events, like a recent item leaving the window. A later search
 * replaces it. The user then counts as having history (a warm list).
 * @returns 1 applied, 0 not (search signal off, or the map not solved yet),
 * -1 with errstr filled (content off, out of memory).
 */
long model_search(struct model *model, uint32_t user, uint64_t user_hash, const float *query,
		  char *errstr, size_t errstr_size);

/** @returns the weight the user's search has in its query now (0: none). */
float model_user_search_weight(const struct model *model, uint32_t user);

/** The content map's counters. */
struct model_content_stats {
	bool enabled;         /**< config.content_dim > 0 */
	uint64_t pairs;       /**< items folded into the map */
	uint64_t solved_pairs; /**< pairs when last solved (0: the map is not in use yet) */
	uint64_t placed;      /**< items placed from content (this process) */
	size_t waiting;       /**< items holding a content vector, not folded yet */
};

void model_content_stats(const struct model *model, struct model_content_stats *stats);

/** @brief q = W^T content (zeros before the first solve); q has dim floats. */
void model_content_map_apply(const struct model *model, const float *content, float *q);

/**
 * @brief The map's state for the store: written separately from the
 * globals (about 8·(C+1)·(C+1+d) bytes: 1.3 MB at C = 384), only when it
 * changed since the last model_clear_dirty().
 * @returns its size (0: content off); buf is written when capacity allows.
 */
size_t model_export_content(const struct model *model, void *buf, size_t capacity);
bool model_content_dirty(const struct model *model);
/** @returns a digest of the content map, 0 when content is off. */
uint64_t model_content_digest(const struct model *model);
/** @returns 0, or -1 with errstr filled (another content or item dimension). */
int model_import_content(struct model *model, const void *buf, size_t len, char *errstr,
			 size_t errstr_size);

/**
 * @brief A 64-bit digest of every parameter and counter (for determinism
 * checks: equal digests mean bit-identical state, in practice).
 */
uint64_t model_digest(const struct model *model);

/*
 * Persistence. The model works in memory; a store saves, per commit, the
 * rows that changed since the last one (write-behind: a row changed a
 * thousand times is saved once) and the globals. Rows hold internal indices
 * (of the caller's id map), native-endian floats and integers: the state's
 * format version covers the layout. Restoring every saved row and then the
 * globals gives a model that continues bit for bit as the saved one would.
 */

/** @brief The users (and items) whose rows changed since model_clear_dirty().
 * The user list may also name users forgotten since (model_forget_user()):
 * write only those model_user_is_dirty() still reports. */
size_t model_dirty_users(struct model *model, const uint32_t **users);
size_t model_dirty_items(struct model *model, const uint32_t **items);

/** @returns the bytes of memory one user takes in the model (without exclusions). */
size_t model_user_memory_bytes(const struct model *model);

/** @returns true when the model holds a row for user (learned or restored). */
bool model_user_has_row(const struct model *model, uint32_t user);

/** @returns user's recent items, oldest first, copied into out (room for recent_items). */
size_t model_user_recent(const struct model *model, uint32_t user, uint32_t *out);

/** @returns true when user's row changed since the last model_clear_dirty(). */
bool model_user_is_dirty(const struct model *model, uint32_t user);

/**
 * @brief Drop a user's row from memory (a bounded user cache evicts it after
 * it was saved or set aside), with its dirty mark; the slot can then take
 * another user's row or first vectors.
 */
void model_forget_user(struct model *model, uint32_t user);

/**
 * @brief Forget items (embedding life cycle, count of them in items): each
 * one's rows (q, y, bias, optimiser state), counts, trend, sampler weight,
 * co-visitation list and content go back to those of an item never seen,
 * and every reference to it held in memory goes too, in one pass: the
 * co-visitation lists of other items, the recent rings and exclusion sets of
 * the users in memory, the count order and the trending list. Items and
 * users whose rows changed by it are marked dirty; the forgotten items' own
 * rows are the caller's to delete. Their matrix rows are marked moved, so
 * the view's next sync takes them out of their index cells. Afterwards the
 * index can be given to a new item (its first vectors come from its hash)
 * with nothing of the one before.
 * @returns 0, or -1 when out of memory (errstr filled; nothing changed).
 */
int model_forget_items(struct model *model, const uint32_t *items, size_t count, char *errstr,
		       size_t errstr_size);

/**
 * @brief Drop from user's recent ring and exclusion set every item stale()
 * names (items forgotten since the user's row was saved: the caller knows
 * which). The user is marked dirty when anything was dropped.
 * @returns true when anything was dropped.
 */
bool model_purge_user_items(struct model *model, uint32_t user,
			    bool (*stale)(uint32_t item, void *ctx), void *ctx);

/** @brief Forget the changed sets (after their rows were written). */
void model_clear_dirty(struct model *model);

/**
 * @brief Serialise a user's row (vectors, optimiser state, recent items,
 * exclusions) into buf when capacity allows.
 * @returns the row's size in bytes (write nothing when it exceeds capacity).
 */
size_t model_export_user(const struct model *model, uint32_t user, void *buf, size_t capacity);

/** @brief Likewise an item's whole row (both embeddings, bias, optimiser
 * state, counts, sampler place, co-visitation successors, content): the
 * layout states wrote before items were split into two rows, and what
 * digests hash. model_import_item() reads it. */
size_t model_export_item(const struct model *model, uint32_t item, void *buf, size_t capacity);

/*
 * Item rows. A commit saves an item as three rows, so that a learning step
 * rewrites only what it changed: each event moves q of its item and its
 * negatives (1 + negatives rows, and as many for each replay step) and y of
 * the user's recent items (up to recent_items rows), while the counts
 * (popularity, sampler place, co-visitation successors, which grow to
 * covis_neighbours entries, and the content section) change for the
 * counted item and its co-visitation neighbours only. Measured at 1M items,
 * 10k events/s: bench/HISTORY.md, "1M items, 1 December 2026"; the q and y
 * rows split on 5 December 2026 (the negatives' rows had been 71% of a
 * commit). The q row (model_export_item_vector()) also holds the bias and
 * the correction, which move with the counts.
 */
/** What of an item changed since model_clear_dirty() (model_item_dirty_parts):
 * its q row, its counts row, its y row. */
enum { MODEL_ITEM_VECTOR = 1, MODEL_ITEM_COUNTS = 2, MODEL_ITEM_Y = 8 };

/** @returns the MODEL_ITEM_* parts of a listed dirty item to write: all
 * for an item restored from a whole row, whose counts live in that row, and
 * the y row with the q row for an item restored from a vector row that
 * still holds y (the layout before 5 December 2026). */
unsigned model_item_dirty_parts(const struct model *model, uint32_t item);

/** @brief An item's q row (q with its bias column, the bias, the
 * correction, their optimiser state); model_import_item() reads it. */
size_t model_export_item_vector(const struct model *model, uint32_t item, void *buf,
				size_t capacity);

/** @brief An item's y row (y and its optimiser state); model_import_item()
 * reads it, after the item's q row. */
size_t model_export_item_y(const struct model *model, uint32_t item, void *buf, size_t capacity);

/**
 * @brief Copy-on-write export of item vector rows (the state's commit).
 *
 * A commit owes the vector rows of the items it lists (model_owe_item_vector())
 * as they are at that moment, but pays them later, a few at a time between
 * events (model_pay_owed()), so that learning never stops for the whole
 * export. Every write to an item's vector row first pays that row if it is
 * still owed, through the hook set here: the hook is called with the row
 * exactly as it was when owed. Only one commit owes rows at a time: pay
 * them all before the next model_owe_item_vector().
 */
typedef void (*model_pay_fn)(void *ctx, const struct model *model, uint32_t item, unsigned parts);
void model_set_payer(struct model *model, model_pay_fn pay, void *ctx);

/** @brief Owe item's dirty vector rows (MODEL_ITEM_VECTOR, MODEL_ITEM_Y:
 * model_item_dirty_parts()) as they are now; the hook is called with those
 * parts (an item already owed is not listed again). @returns false when
 * they cannot be owed (no payer set, an item the model does not hold, no
 * vector row dirty): the caller copies what it writes itself. */
bool model_owe_item_vector(struct model *model, uint32_t item);

/** @brief Pay up to budget owed rows through the hook, in the order owed.
 * @returns how many rows are still owed. */
size_t model_pay_owed(struct model *model, size_t budget);

/** @returns how many rows are still owed. */
size_t model_owed_count(const struct model *model);

/** @brief Start loading what model_export_item_counts() reads of item: the
 * popularity, sampler and co-visitation list header when `near` is false,
 * the co-visitation entries when true (a commit asks 16 items ahead, then 8). */
void model_prefetch_item_counts(const struct model *model, uint32_t item, bool near);

/** @brief An item's counts row (popularity, sampler place, co-visitation,
 * content); model_import_item_counts() reads it. */
size_t model_export_item_counts(const struct model *model, uint32_t item, void *buf,
				size_t capacity);

/** @brief Likewise the globals (step, generators, scales, sampler sums). */
size_t model_export_globals(const struct model *model, void *buf, size_t capacity);

/**
 * @brief Restore a row saved by model_export_user/item.
 * @returns 0, or -1 with errstr naming what does not fit (another dimension,
 * a truncated row).
 */
int model_import_user(struct model *model, uint32_t user, const void *row, size_t len, char *errstr,
		      size_t errstr_size);
int model_import_item(struct model *model, uint32_t item, const void *row, size_t len, char *errstr,
		      size_t errstr_size);
/** @brief Restore an item's counts row, after its vector row. @returns 0 or -1. */
int model_import_item_counts(struct model *model, uint32_t item, const void *row, size_t len,
			     char *errstr, size_t errstr_size);

/** @brief Restore the globals, after every item row. @returns 0 or -1. */
int model_import_globals(struct model *model, const void *buf, size_t len, char *errstr,
			 size_t errstr_size);


/**
 * @brief Walks the item indices a user row (model_export_user()) holds, its
 * recent items and its exclusions, letting visit rewrite each in place
 * (another numbering of the items: the state hands rows between instances
 * whose item indices differ); the exclusions are sorted again afterwards.
 * @returns 0, or -1 when the row is not this model's layout or visit fails.
 */
int model_user_row_items(const struct model *model, void *row, size_t len,
			 int (*visit)(uint32_t *item, void *ctx), void *ctx);

/** @brief Counts a user as changed (its row is written at the next commit). */
void model_touch_user(struct model *model, uint32_t user);

/** @brief Makes sure item exists (initialised from its hash if new). @returns 0 or -1. */
int model_add_item(struct model *model, uint32_t item, uint64_t hash);

/** @returns item's co-visitation neighbours (*items borrowed until the next learn). */
size_t model_item_neighbours(const struct model *model, uint32_t item, const uint32_t **items);

/** @returns a user's exclusions (sorted item indices; borrowed until the next learn). */
size_t model_user_exclusions(const struct model *model, uint32_t user, const uint32_t **items);

/*
 * Sharing item parameters between instances (scale-out): each instance
 * learns from its own users and publishes, at an interval, the change of
 * every item it moved since its last publication (a delta of q, y and the
 * bias: model_share_param_count() floats); each folds the others' deltas
 * into its own rows (asynchronous mixing, as parameter servers do). An item
 * starts alike everywhere (from its id's hash), so the sum of the deltas is
 * the item's learned change wherever it is folded. The Adagrad accumulators
 * stay each instance's own.
 */

/** @returns floats per item delta: q, y and the bias (2 dim + 1). */
size_t model_share_param_count(const struct model *model);

/** @brief Starts tracking item changes for sharing (the current rows are the base). @returns 0 or -1. */
int model_share_enable(struct model *model);

/**
 * @brief Takes up to capacity items changed since their last take, with
 * their change (deltas[k * param_count ...]); the base moves on. Items that
 * only folds moved are skipped. @returns the items taken.
 */
size_t model_share_take(struct model *model, uint32_t *items, float *deltas, size_t capacity);

/** @brief Folds another instance's change of an existing item into its row. */
void model_share_fold(struct model *model, uint32_t item, const float *delta);

#endif
