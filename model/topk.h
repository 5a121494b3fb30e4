/*
 * topk: the batched top-k engine of the refresh path.
 *
 * A refresh scores a batch of users against the whole item matrix and keeps
 * each user's best k items. The batch's query vectors are packed into one
 * B×dim matrix; the item matrix streams past in tiles of tile_items rows, and
 * each tile's B×tile scores come from one cblas_sgemm. Sparse (co-visitation)
 * scores are added into the tile before selection; excluded, ineligible and
 * NaN-scored items are skipped; each user's best k live in a bounded min-heap
 * whose minimum is the bar a score must clear, so most scores cost one
 * comparison.
 *
 * Memory: the score tile (max_batch × tile floats, tile being the config's
 * tile_items or the larger of the two defaults below) and the heaps
 * (max_batch × max_k) are allocated once, in topk_new(). Three scratch
 * buffers depend on the input and are grown by topk_run() only when a batch
 * needs more than any batch before it, then kept: the packed queries
 * (max_batch × dim floats), the batch's sparse scores bucketed by tile (one
 * entry per sparse score) and the tile offsets (one per tile of the
 * catalogue).
 *
 * Threads: a run uses the config's thread count, or one chosen by the
 * batch's size (topk_threads_for_batch()). It sets OpenBLAS's thread count,
 * which is process-wide, with openblas_set_num_threads() before its sgemm
 * calls and leaves it so. With more than one thread the selection after each
 * sgemm is shared too: the calling thread takes the first slice of the
 * queries and helper threads of the engine, started on first need and joined
 * by topk_free(), take the others; between tiles they wait on a lock. A topk
 * is used by one thread at a time; different topks are independent.
 */
#ifndef STREAMREC_TOPK_H
#define STREAMREC_TOPK_H

#include <stddef.h>
#include <stdint.h>

/**
 * Rows per item tile when the config leaves the choice to the engine, by the
 * run's thread count. On one thread: the score tile of a batch of 256 (1 MiB)
 * stays in L2 between the sgemm that writes it and the selection that reads
 * it, and a batch of 1 stays on OpenBLAS's small-matrix path, which is 3x
 * faster and which tiles of 1536 rows or more leave. On two threads each
 * sgemm needs more rows to pay for waking the second one: at 100k items, dim
 * 64, batch 256, 8192 rows ran at 188 GFLOP/s where 1024 ran at 150.
 * bench/bench_topk.c prints the sweep.
 */
#define TOPK_TILE_ITEMS_SINGLE   1024
#define TOPK_TILE_ITEMS_THREADED 8192

/**
 * Smallest batch that gets more than one thread when the config leaves the
 * choice to the engine. A batch of 1 loses on two threads at every catalogue
 * size (10 against 14 GFLOP/s at 100k items: it leaves OpenBLAS's fast path,
 * and the design notes saw 0.5 GFLOP/s); from 8 queries two threads win by
 * 1.3x to 1.7x. Between, the gain is a few GFLOP/s, not worth taking the
 * second core from ingestion (OpenBLAS's idle thread spins for a while after
 * each call).
 */
#define TOPK_THREADED_MIN_BATCH 8

/** Most threads a run uses (OpenBLAS's for the sgemm, the engine's for selection). */
#define TOPK_MAX_THREADS 64

/**
 * One user's query. `vector` is the user's dense query already augmented so
 * that a plain dot product with an item row gives the score (the item rows
 * fold in bias and correction).
 */
struct topk_query {
	const float *vector;     /**< dim floats */
	const uint32_t *exclude; /**< items never to return, sorted ascending, may repeat;
				  *   NULL if none */
	size_t exclude_count;
	const uint32_t *sparse_items; /**< items with an additive score (co-visitation), any
				       *   order, may repeat (repeats add up); items at or past
				       *   item_count are ignored, they have no row */
	const float *sparse_scores;
	size_t sparse_count;
};

/** One recommended item and its score. */
struct topk_result {
	uint32_t item;
	float score;
};

struct topk_config {
	size_t max_batch;  /**< most queries per topk_run(), at least 1 */
	size_t max_k;      /**< largest k per topk_run(), at least 1 */
	size_t tile_items; /**< item rows per sgemm; 0 = by the run's threads
			    *   (topk_tile_items_for_threads()) */
	int threads;       /**< threads per run, 1..TOPK_MAX_THREADS; 0 = by the batch's
			    *   size (topk_threads_for_batch()) */
};

struct topk;

/**
 * @brief Creates an engine for batches of up to config->max_batch queries
 * and k up to config->max_k, allocating its score tile and heaps.
 * @returns the engine, or NULL with the reason in errstr (a zero bound, a
 * negative thread count, a tile too large for sgemm, or no memory).
 */
struct topk *topk_new(const struct topk_config *config, char *errstr, size_t errstr_size);

/** @brief Frees the engine and its buffers; NULL is ignored. */
void topk_free(struct topk *topk);

/**
 * @brief Scores every query against items [0, item_count) and writes each
 * query's best k.
 *
 * `rows` holds item_count rows of `dim` floats, `row_stride` floats apart
 * (row_stride >= dim), contiguous float32. `eligible` is NULL (every item may
 * be returned) or one byte per item, 0 = never return. An item's score is the
 * dot product of the query vector and its row, plus its sparse scores.
 *
 * For query q, writes at most k results into results[q*k ...], best first,
 * and their number into result_counts[q]: fewer than k when fewer items are
 * eligible. Order: higher score first, equal scores by lower item index
 * first, so the output is deterministic. Items that are excluded, ineligible
 * or score NaN are never returned, also when they have sparse scores.
 *
 * k = 0, query_count = 0 and item_count = 0 are valid and give no results.
 *
 * @returns 0, or -1 with the reason in errstr: query_count > max_batch,
 * k > max_k, dim = 0, row_stride < dim, a NULL array that has entries, an
 * exclusion list out of order, a size beyond sgemm's int or the uint32_t item
 * index, or no memory for a scratch buffer. On error nothing is written.
 */
/**
 * @brief Check one query the way topk_run() does (vector set, exclusion and
 * sparse arrays present, exclusions sorted ascending); name prefixes the
 * message ("topk: queries[3]"). The index (model/ivf) checks its queries
 * with it too. @returns 0, or -1 with errstr filled.
 */
int topk_query_check(const struct topk_query *query, const char *name, char *errstr,
		     size_t errstr_size);

int topk_run(struct topk *topk, const float *rows, size_t item_count, size_t dim, size_t row_stride,
	     const uint8_t *eligible, const struct topk_query *queries, size_t query_count,
	     size_t k, struct topk_result *results, size_t *result_counts, char *errstr,
	     size_t errstr_size);

/**
 * @brief Item rows per tile of the last topk_run() (0 before the first run,
 * or when the last run had nothing to multiply).
 */
size_t topk_last_tile_items(const struct topk *topk);

/**
 * @brief Threads the last topk_run() used (0 before the first run, or when
 * the last run had nothing to multiply).
 */
int topk_last_threads(const struct topk *topk);

/**
 * @brief The thread count topk_run() picks for a batch of `batch` queries
 * when the config leaves the choice to it: 1 below TOPK_THREADED_MIN_BATCH,
 * otherwise one per online CPU (at most TOPK_MAX_THREADS).
 */
int topk_threads_for_batch(size_t batch);

/**
 * @brief The tile topk_run() streams on `threads` threads when the config
 * leaves the choice to it: TOPK_TILE_ITEMS_SINGLE or TOPK_TILE_ITEMS_THREADED.
 */
size_t topk_tile_items_for_threads(int threads);

#endif
