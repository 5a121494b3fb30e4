/*
 * ivf: an inverted-file index over the item rows, the candidate stage of the
 * refresh path at catalogue scale (DESIGN.md, Top-k).
 *
 * The index cuts item space into nlist cells around k-means centroids and
 * keeps, per cell, the ids and a copy of the rows of the items in it. A
 * search takes a batch of users, scores every user against every centroid
 * with one cblas_sgemm, probes each user's nprobe best cells, and ranks the
 * union of those cells' items, the user's sparse-scored items (co-visitation
 * neighbours) and the extra candidates the caller names (trending items) by
 * the exact fused score, as topk_run() would: dot(query, row) plus the sparse
 * scores, exclusions, eligibility, the same order and tie rule (higher score,
 * then lower item index), NaN never returned. Probing every cell gives
 * topk's list over the same rows; probing fewer misses only items of
 * unprobed cells that no list named.
 *
 * Skipping cells: each cell keeps a box, per column the least and greatest
 * value any of its rows held since the last training (rows that move or
 * leave do not shrink it). A cell scored for one user alone (too few users
 * of the batch share it for one product, ivf.c) is skipped when the user's list
 * is full and the box bounds every row's score, plus the product's rounding,
 * below the list's last score: it cannot change the list. The sparse items'
 * scores (co-visitation) raise that bar before any cell is scanned; on the
 * 85k-item stream of `streamrec eval --retrieval both` (one list per test
 * point) a third of the probed cells were skipped so.
 *
 * Rounding: OpenBLAS's sgemm rounds differently by shape (on this machine's
 * Cooperlake kernel 77% of the dot products of a 1x1024 product differ in
 * their last bits from the same ones inside a 256x1024 product), and topk's
 * scores themselves depend on its batch. So "topk's list" is exact when the
 * dot products are exact in float (tests/unit/031_ivf.c uses grid data, as
 * 030_topk does); on continuous data two items whose scores differ only by
 * rounding may swap places.
 *
 * Assignment rule (maximum inner product). Inner-product search has no
 * triangle inequality, so k-means in plain L2 (which ignores norms) or plain
 * argmax of raw inner products (which drains items into the longest
 * centroids) make poor cells. Two rules are implemented:
 *   - IVF_ASSIGN_AUGMENTED_L2: every row x becomes x' = [x, sqrt(M^2 - |x|^2)]
 *     with M the largest row norm at training, queries q' = [q, 0]; then
 *     |q' - x'|^2 = |q|^2 + M^2 - 2 q.x, so nearest in L2 is largest inner
 *     product (Bachrach et al. 2014). k-means runs in L2 on x'; a user probes
 *     the cells of largest q.c - |c'|^2/2 (nearest centroid of q').
 *   - IVF_ASSIGN_NORMALISED_IP: an item joins the cell whose unit-length
 *     centroid has the largest inner product with it (spherical k-means); a
 *     user probes the cells whose mean row scores highest.
 * Measured by bench/bench_ivf.c on clustered data (a mixture of Gaussians
 * with a popularity bias column, the shape of learned embeddings), dim 32+1,
 * recall@20 against exact (candidates per user in brackets):
 *
 *   items nlist nprobe   augmented-L2      normalised-IP
 *   100k   316     16   0.942 (4620)      0.965 (5461)
 *   100k   316     32   0.981 (9592)      0.986 (10629)
 *   1M    1000      4   0.956 (3698)      0.970 (3861)
 *   1M    1000      8   0.983 (7149)      0.980 (7701)
 *
 * The normalised rule puts popular cells a little larger (more candidates
 * per probe) but reaches 0.95 to 0.97, where a refresh wants to work, with
 * fewer candidates; the augmented rule only catches up around 0.98. Hence
 * IVF_ASSIGN_DEFAULT.
 *
 * Keeping current: the index holds its own copy of every row, grouped by
 * cell, so that a probe streams contiguous memory instead of gathering rows
 * from a 128 MB matrix. The caller passes every changed row to
 * ivf_update_item(), which scores it against the centroids (O(nlist·dim))
 * unless it moved too little since its last scoring for its cell to change
 * (its margin over the next cell, against the distance moved: O(dim)),
 * moves it to its new cell if the cell changed (swap-remove with a position
 * array, O(1)) and stores the new row. Centroids stay fixed between
 * trainings; ivf_needs_retrain() says when they no longer fit (criterion
 * there) and ivf_retrain() trains again from the index's own rows.
 *
 * Coded scans: a user whose list is already full (its sparse and extra
 * items come first) scans a cell it probes alone through the cell's 8-bit
 * row codes (model/rowcodes.h: dim + 4 bytes a row against 4·dim, coded
 * about the cell's mean), which bound every row's score from above, and
 * reads and scores exactly only the rows whose bound reaches its bar; the
 * bound covers every rounding, so the list is the one the rows give. At
 * 1M items, 4 cells, about 130 of a user's 4,000 cell rows are read.
 *
 * Speed (bench/bench_ivf.c, 2 shared cores, one thread, batch 256, per
 * CPU-second, medians of three): at 1M items nprobe 4 about 30k lists/s,
 * against the exact engine's 2.0k with the Cooperlake kernel (15×) and 1.3k
 * with Haswell's (21×), at recall@20 0.976; 19k and 21k before the codes.
 * What is left of a list's ~33 us is mostly misses to memory: each user's
 * ~70 sparse and extra rows (anywhere in 132 MB) and the rows its codes
 * cannot pass over, then the codes themselves (a 1000-row cell is 37 KB).
 *
 * Memory: the rows again (item_count × dim floats, cells grow by doubling)
 * and their codes (dim + 4 bytes a row), 12 bytes per item for its cell,
 * slot and slack, nlist × (2·dim + 4) floats
 * of centroids, nlist × 2·dim of cell boxes, nlist² floats of centroid
 * distances for the slack (up to 4096 cells, 64 MiB there; none above), and
 * the search's scratch: max_batch × (nlist + IVF_TILE_ITEMS)
 * floats of scores, IVF_TILE_ITEMS slot numbers (a coded scan's rows to
 * read), max_batch × max_k heaps, the probe lists, and the
 * batch's sparse and extra candidates (grown when a batch needs more, then
 * kept). Training holds a sample of up to nlist·IVF_TRAIN_POINTS_PER_CELL
 * rows and, in ivf_retrain(), a temporary copy of every row.
 *
 * Threads: ivf_update_item(s)(), ivf_build() and ivf_retrain() write the
 * cells, so while one runs nothing else may use the index. Searches only
 * read the index: several threads may search it at once, each with its own
 * scratch (ivf_search_with() and a struct ivf_scratch per thread);
 * ivf_search() uses the index's own scratch and so is one thread's at a
 * time. Each call sets OpenBLAS's process-wide thread count to the
 * config's `threads` before its sgemm calls and leaves it so, as topk
 * does: threads searching at once should all use the same count (1).
 * Different indexes are independent.
 *
 * model/ knows nothing of Kafka, RocksDB or the daemon's loop: rows and
 * queries arrive as plain float arrays.
 */
#ifndef STREAMREC_IVF_H
#define STREAMREC_IVF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topk.h"

/** How items are assigned to cells and cells chosen for a query (see above). */
enum ivf_assign {
	IVF_ASSIGN_AUGMENTED_L2 = 0,
	IVF_ASSIGN_NORMALISED_IP,
};

/**
 * The rule a config should choose unless it measured otherwise: the better
 * recall for the candidates at recall 0.95 to 0.97 (table above).
 */
#define IVF_ASSIGN_DEFAULT IVF_ASSIGN_NORMALISED_IP

/**
 * Cells per square root of the item count when the config leaves nlist to
 * the index: about sqrt(N) items per cell, so the centroid product
 * (nlist·dim) and one cell's scan (N/nlist·dim) cost the same.
 */
#define IVF_NLIST_PER_SQRT 1.0

/** Lloyd iterations per training. */
#define IVF_TRAIN_ITERATIONS 8

/** Training sample: this many rows per cell (fewer if the catalogue is smaller). */
#define IVF_TRAIN_POINTS_PER_CELL 64

/** Cell rows scored per sgemm in a search. */
#define IVF_TILE_ITEMS 1024

/**
 * ivf_needs_retrain() is true when the largest cell holds more than this many
 * times the mean cell size (a probe of it costs that many cells' worth).
 */
#define IVF_RETRAIN_CELL_FACTOR 4.0

/** Most threads an index build splits its assignments over (ivf_config). */
#define IVF_MAX_BUILD_THREADS 64

struct ivf_config {
	size_t dim;       /**< floats per row and per query vector, at least 1 */
	size_t nlist;     /**< cells; 0 = IVF_NLIST_PER_SQRT·sqrt(items) at each training */
	size_t max_batch; /**< most queries per ivf_search(), at least 1 */
	size_t max_k;     /**< largest k per ivf_search(), at least 1 */
	enum ivf_assign assign;
	uint64_t seed; /**< training's sample and initial centroids; same seed, same cells */
	int threads;   /**< OpenBLAS threads for the sgemm calls, 1..TOPK_MAX_THREADS; 0 = 1 */
	/**
	 * Threads ivf_build() splits its assignments (the training sample's, then
	 * every item's) over, each calling sgemm on `threads` OpenBLAS threads,
	 * 1..IVF_MAX_BUILD_THREADS; 0 = 1 (the caller alone). The cells are the
	 * same whatever the count. Retraining (ivf_retrain(), ivf_training_start())
	 * uses one.
	 */
	size_t build_threads;
};

/**
 * One user's query: `base` exactly as topk_run() takes it (the vector, the
 * exclusions, the sparse co-visitation scores, whose items are candidates
 * too), plus extra candidates the model wants ranked whatever cells are
 * probed (trending items). Extra items may repeat and overlap the sparse
 * items or the probed cells; each item is scored once. Items at or past the
 * index's item count are ignored.
 */
struct ivf_query {
	struct topk_query base;
	const uint32_t *extra_items; /**< any order; NULL if none */
	size_t extra_count;
};

struct ivf;

/**
 * @brief Creates an empty index (no items, one empty cell) with its search
 * buffers for config->max_batch queries and k up to config->max_k.
 * @returns the index, or NULL with the reason in errstr.
 */
struct ivf *ivf_new(const struct ivf_config *config, char *errstr, size_t errstr_size);

/** @brief Frees the index; NULL is ignored. */
void ivf_free(struct ivf *ivf);

/**
 * @brief Replaces the index's content with items [0, item_count): copies
 * their rows (`row_stride` floats apart, row_stride >= dim), trains the
 * centroids on a sample and assigns every item. The caller keeps `rows`.
 * @returns 0, or -1 with the reason in errstr (the index is then empty).
 */
int ivf_build(struct ivf *ivf, const float *rows, size_t item_count, size_t row_stride,
	      char *errstr, size_t errstr_size);

/**
 * @brief Stores item's new row (dim floats, copied) and moves the item to
 * the cell it now belongs to. `item` equal to the item count appends a new
 * item. Does not retrain (see ivf_needs_retrain()).
 * @returns 0, or -1 with the reason in errstr (item past the end, no memory;
 * the index is unchanged).
 */
int ivf_update_item(struct ivf *ivf, uint32_t item, const float *vector, char *errstr,
		    size_t errstr_size);

/** Rows ivf_update_items() scores against the centroids in one product. */
#define IVF_UPDATE_CHUNK 1024

/**
 * @brief ivf_update_item() for many rows at once: the rows of `items` (each
 * an existing item or, in order, the next new one) are taken from `matrix`
 * (row i at matrix + i * row_stride, `dim` floats) and scored against the
 * centroids with one sgemm per IVF_UPDATE_CHUNK rows instead of one sgemv
 * each (the difference between keeping up with learning and not: a daemon
 * moves hundreds of thousands of rows a second while draining).
 * @returns 0, or -1 with errstr filled (the rows before the failing one are in place).
 */
int ivf_update_items(struct ivf *ivf, const uint32_t *items, size_t count, const float *matrix,
		     size_t row_stride, char *errstr, size_t errstr_size);

/**
 * @brief Whether the centroids no longer fit the items: the largest cell
 * holds more than IVF_RETRAIN_CELL_FACTOR times the mean, or the catalogue
 * has doubled since the last training (an automatic nlist would be √2
 * larger).
 */
bool ivf_needs_retrain(const struct ivf *ivf);

/**
 * @brief Trains the centroids again from the index's own rows and reassigns
 * every item, as ivf_build() would with the same rows.
 * @returns 0, or -1 with the reason in errstr (no memory: the index is
 * unchanged).
 */
int ivf_retrain(struct ivf *ivf, char *errstr, size_t errstr_size);

/**
 * A training aside: ivf_retrain()'s work on a thread of its own, so that
 * searches go on meanwhile (at 1M items a training takes a core several
 * seconds). ivf_training_start() copies the index's rows (the snapshot) and
 * starts the thread; the index stays the owner's to update and search.
 * ivf_training_done() says when it has finished; ivf_training_finish()
 * installs the new cells (the rows as of the snapshot: the caller then
 * passes every row it changed since to ivf_update_items(), and new items in
 * order) or, when the training failed, leaves the index as it is.
 * ivf_training_cancel() waits for it and drops it. The thread reads only
 * the snapshot and the index's fixed settings.
 */
struct ivf_training;

/** @returns 0, or -1 with errstr filled (no memory, no thread). */
int ivf_training_start(struct ivf *ivf, struct ivf_training **training, char *errstr,
		       size_t errstr_size);
/** @returns whether the training's thread has finished. */
bool ivf_training_done(const struct ivf_training *training);
/** @returns the items in the snapshot (the new cells hold exactly these). */
size_t ivf_training_items(const struct ivf_training *training);
/**
 * @brief Waits for the training, installs its cells and frees it.
 * @returns 0, or -1 with the training's error in errstr (the index unchanged).
 */
int ivf_training_finish(struct ivf *ivf, struct ivf_training *training, char *errstr,
			size_t errstr_size);
/** @brief Waits for the training and frees it, installing nothing (NULL: none). */
void ivf_training_cancel(struct ivf_training *training);

/**
 * @brief Writes each query's best k among its candidates: the items of its
 * nprobe best cells (nprobe >= the cell count probes all), its sparse items
 * and its extra items.
 *
 * `eligible` is NULL or one byte per item of the index, 0 = never return.
 * Results, counts, order, ties and errors are those of topk_run(): at most k
 * results per query at results[q*k ...], best first, higher score then
 * lower item index; excluded, ineligible and NaN-scored items never
 * appear. nprobe = 0 ranks the sparse and extra items alone.
 *
 * @returns 0, or -1 with the reason in errstr (query_count > max_batch,
 * k > max_k, NULL arrays with entries, unsorted exclusions, no memory); on
 * error nothing is written.
 */
int ivf_search(struct ivf *ivf, const uint8_t *eligible, const struct ivf_query *queries,
	       size_t query_count, size_t nprobe, size_t k, struct topk_result *results,
	       size_t *result_counts, char *errstr, size_t errstr_size);

/** One searcher's scratch (see Threads); sized at its first search. */
struct ivf_scratch;

/** @returns an empty scratch, or NULL when out of memory. */
struct ivf_scratch *ivf_scratch_new(void);

void ivf_scratch_free(struct ivf_scratch *scratch);

/**
 * @brief ivf_search() with the caller's scratch: any number of threads may
 * search one index at once, each with its own scratch, while nothing writes
 * the index.
 */
int ivf_search_with(const struct ivf *ivf, struct ivf_scratch *scratch, const uint8_t *eligible,
		    const struct ivf_query *queries, size_t query_count, size_t nprobe, size_t k,
		    struct topk_result *results, size_t *result_counts, char *errstr,
		    size_t errstr_size);

/** @returns the candidates scored by the scratch's last search (see ivf_last_candidates()). */
size_t ivf_scratch_candidates(const struct ivf_scratch *scratch);

/** @returns the number of items in the index. */
size_t ivf_item_count(const struct ivf *ivf);

/** @returns the number of cells of the current training. */
size_t ivf_nlist(const struct ivf *ivf);

/** @returns the cell item lives in (item below the item count). */
size_t ivf_item_cell(const struct ivf *ivf, uint32_t item);

/**
 * @brief For each of `count` items (a query's exact list, say), the fewest
 * cells ivf_search() must probe for the item to be among the query's
 * candidates: 0 for one of its sparse or extra items, otherwise 1 + its
 * cell's place in the order the query probes cells in (its best cell
 * first, ties to the lower cell; cell scores as a search computes them, up
 * to the rounding of near-equal ones); SIZE_MAX for an item the index does
 * not hold. A candidate in a query's exact top k is in the index's list
 * (ranked by the same score), so the share of an exact list with needed[i]
 * <= p is the recall@k the index has at nprobe p, for every p at once.
 */
void ivf_probes_needed(const struct ivf *ivf, const struct ivf_query *query,
		       const uint32_t *items, size_t count, size_t *needed);

/** @returns the number of items in `cell`. */
size_t ivf_cell_size(const struct ivf *ivf, size_t cell);

/**
 * @brief The cell an arbitrary row would be assigned to now (what
 * ivf_update_item() would choose for it).
 */
size_t ivf_assign_cell(const struct ivf *ivf, const float *vector);

/**
 * @brief Candidates scored by the last ivf_search(), summed over its queries
 * (cell items plus distinct sparse and extra items), for benchmarks.
 */
size_t ivf_last_candidates(const struct ivf *ivf);

/**
 * @brief Cell rows the last ivf_search() read as floats, summed over its
 * queries: rows scored by a product, and rows whose 8-bit codes bounded
 * their score at or above the list's bar (the rest of a lone user's cell
 * is read only as codes; see Speed above), for benchmarks and tests.
 */
size_t ivf_last_rows_read(const struct ivf *ivf);

/**
 * @returns how many probed cells searches skipped since the index was made
 * because the cell's bounds showed none of its rows could enter the list
 * (see ivf_search()).
 */
uint64_t ivf_skipped_cells(const struct ivf *ivf);

/** @brief Tiles of IVF_TILE_ITEMS rows of larger cells that ivf_search()'s
 * queries passed over for the same reason (their box below the list's bar). */
uint64_t ivf_skipped_tiles(const struct ivf *ivf);

/**
 * @returns how many item updates since the index was made kept their cell
 * without being scored against the centroids: the row had not moved far
 * enough since its last scoring for any other cell to win (ivf.c,
 * kept_in_cell()). The cell is the one a scoring would choose.
 */
uint64_t ivf_kept_cells(const struct ivf *ivf);

#endif
