/*
 * topk: the batched top-k engine (see topk.h for the contract).
 *
 * One run: validate everything first (so an error writes nothing), pack the
 * query vectors into a B×dim matrix, bucket the batch's sparse scores by item
 * tile, then for each tile: one sgemm for its B×tile scores, add the tile's
 * sparse scores, and let each query's heap take what clears its bar.
 *
 * With more than one thread, OpenBLAS spreads each sgemm over them, and the
 * selection that follows it is shared too: the calling thread takes the first
 * slice of the queries and helper threads (started on first need, kept until
 * topk_free) take the others. Ownership: between two tiles the helpers wait on
 * the engine's lock; during a tile each thread writes only the heaps and
 * cursors of its own slice and reads the shared score tile, which no one
 * writes until every slice is done.
 */
#include "topk.h"
#include "resultheap.h"

#include "grow.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Scores are tested against a query's bar SKIP_BLOCK at a time, then a block
 * with a hit SCAN_BLOCK at a time, and only a SCAN_BLOCK with a hit is looked
 * at score by score. */
#define SKIP_BLOCK 64
#define SCAN_BLOCK 16

/* Fewest queries worth handing to a selection thread of their own. */
#define SLICE_MIN_QUERIES 16

/* One sparse score of the batch, bucketed by the tile its item falls in. */
struct sparse_entry {
	uint32_t query;
	uint32_t item;
	float score;
};

/* One tile's selection, shared by the threads slice by slice. */
struct selection_job {
	const struct topk_query *queries;
	const uint8_t *eligible;
	const float *scores; /* query_count × n */
	size_t query_count;
	size_t n;
	size_t k;
	uint32_t first_item;
	size_t slices;
};

struct helper {
	struct topk *topk;
	size_t slice;        /* 1.., the calling thread has 0 */
	uint64_t generation; /* the last job seen; set before the thread starts */
	pthread_t thread;
};

struct topk {
	size_t max_batch;
	size_t max_k;
	size_t tile_items; /* the config's; 0 = by shape */
	size_t tile_capacity;
	int threads; /* the config's; 0 = by shape */
	int last_threads;
	size_t last_tile_items;

	float *scores;             /* max_batch × tile_capacity, one tile's scores */
	uint64_t *heaps;           /* max_batch × max_k keys, query q's heap at q*max_k */
	size_t *heap_counts;       /* max_batch */
	size_t *exclude_positions; /* max_batch, each query's cursor in its exclude list */

	float *packed; /* max_batch × packed_dim, the batch's query vectors */
	size_t packed_dim;
	struct sparse_entry *sparse; /* the batch's sparse scores, grouped by tile */
	size_t sparse_capacity;
	size_t *tile_offsets; /* tile t's sparse entries: [tile_offsets[t], [t+1]) */
	size_t tile_offsets_capacity;

	/* Selection helpers; everything below `lock` is guarded by it. */
	pthread_mutex_t lock;
	pthread_cond_t job_ready;
	pthread_cond_t job_done;
	struct helper helpers[TOPK_MAX_THREADS - 1];
	size_t helper_count;
	uint64_t job_generation;
	size_t jobs_pending;
	bool stopping;
	struct selection_job job;
};

static void *helper_main(void *arg);

struct topk *topk_new(const struct topk_config *config, char *errstr, size_t errstr_size)
{
	struct topk *topk;
	size_t tile_capacity;

	if (config == NULL) {
		snprintf(errstr, errstr_size, "topk: config is NULL");
		return NULL;
	}
	tile_capacity = config->tile_items ? config->tile_items
			: TOPK_TILE_ITEMS_THREADED > TOPK_TILE_ITEMS_SINGLE
			    ? TOPK_TILE_ITEMS_THREADED
			    : TOPK_TILE_ITEMS_SINGLE;
	if (config->max_batch == 0 || config->max_batch > INT_MAX) {
		snprintf(errstr, errstr_size, "topk: max_batch must be between 1 and %d, got %zu",
			 INT_MAX, config->max_batch);
		return NULL;
	}
	if (config->max_k == 0 || config->max_k > UINT32_MAX) {
		snprintf(errstr, errstr_size, "topk: max_k must be between 1 and %u, got %zu",
			 (unsigned)UINT32_MAX, config->max_k);
		return NULL;
	}
	if (tile_capacity > INT_MAX) {
		snprintf(errstr, errstr_size, "topk: tile_items must be at most %d, got %zu",
			 INT_MAX, tile_capacity);
		return NULL;
	}
	if (config->threads < 0 || config->threads > TOPK_MAX_THREADS) {
		snprintf(errstr, errstr_size,
			 "topk: threads must be between 0 (by shape) and %d, got %d",
			 TOPK_MAX_THREADS, config->threads);
		return NULL;
	}
	if (config->max_batch > SIZE_MAX / sizeof(float) / tile_capacity ||
	    config->max_batch > SIZE_MAX / sizeof(uint64_t) / config->max_k) {
		snprintf(errstr, errstr_size,
			 "topk: max_batch %zu with tile_items %zu and max_k %zu overflows memory",
			 config->max_batch, tile_capacity, config->max_k);
		return NULL;
	}

	topk = calloc(1, sizeof *topk);
	if (topk == NULL)
		goto out_nomem;
	topk->max_batch = config->max_batch;
	topk->max_k = config->max_k;
	topk->tile_items = config->tile_items;
	topk->tile_capacity = tile_capacity;
	topk->threads = config->threads;
	topk->scores = malloc(config->max_batch * tile_capacity * sizeof(float));
	topk->heaps = malloc(config->max_batch * config->max_k * sizeof(uint64_t));
	topk->heap_counts = calloc(config->max_batch, sizeof(size_t));
	topk->exclude_positions = calloc(config->max_batch, sizeof(size_t));
	if (topk->scores == NULL || topk->heaps == NULL || topk->heap_counts == NULL ||
	    topk->exclude_positions == NULL)
		goto out_free_buffers;
	if (pthread_mutex_init(&topk->lock, NULL))
		goto out_free_buffers;
	if (pthread_cond_init(&topk->job_ready, NULL))
		goto out_destroy_lock;
	if (pthread_cond_init(&topk->job_done, NULL))
		goto out_destroy_ready;
	return topk;

out_destroy_ready:
	pthread_cond_destroy(&topk->job_ready);
out_destroy_lock:
	pthread_mutex_destroy(&topk->lock);
out_free_buffers:
	free(topk->scores);
	free(topk->heaps);
	free(topk->heap_counts);
	free(topk->exclude_positions);
	free(topk);
out_nomem:
	snprintf(errstr, errstr_size, "topk: out of memory for max_batch %zu, tile_items %zu",
		 config->max_batch, tile_capacity);
	return NULL;
}

void topk_free(struct topk *topk)
{
	if (topk == NULL)
		return;
	pthread_mutex_lock(&topk->lock);
	topk->stopping = true;
	pthread_cond_broadcast(&topk->job_ready);
	pthread_mutex_unlock(&topk->lock);
	for (size_t h = 0; h < topk->helper_count; h++)
		pthread_join(topk->helpers[h].thread, NULL);
	pthread_cond_destroy(&topk->job_done);
	pthread_cond_destroy(&topk->job_ready);
	pthread_mutex_destroy(&topk->lock);
	free(topk->scores);
	free(topk->heaps);
	free(topk->heap_counts);
	free(topk->exclude_positions);
	free(topk->packed);
	free(topk->sparse);
	free(topk->tile_offsets);
	free(topk);
}

size_t topk_last_tile_items(const struct topk *topk)
{
	return topk->last_tile_items;
}

int topk_last_threads(const struct topk *topk)
{
	return topk->last_threads;
}

int topk_threads_for_batch(size_t batch)
{
	long cpus;

	if (batch < TOPK_THREADED_MIN_BATCH)
		return 1;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus < 1 ? 1 : cpus > TOPK_MAX_THREADS ? TOPK_MAX_THREADS : (int)cpus;
}

size_t topk_tile_items_for_threads(int threads)
{
	return threads > 1 ? TOPK_TILE_ITEMS_THREADED : TOPK_TILE_ITEMS_SINGLE;
}

/* Whether `item` is in the query's exclusion list. Items are asked about in
 * increasing order over a run, so the cursor only moves forward. */
static bool excluded(const struct topk_query *query, size_t *cursor, uint32_t item)
{
	size_t at = *cursor;

	while (at < query->exclude_count && query->exclude[at] < item)
		at++;
	*cursor = at;
	return at < query->exclude_count && query->exclude[at] == item;
}

/*
 * Where the next score above `bar` may be: the start of the first block of
 * SCAN_BLOCK scores that holds one, or of the tail shorter than a block, or
 * n. Nearly every score of a refresh falls below its query's bar, so this
 * loop is most of the selection's cost. Its test is branch-free so that it
 * vectorises, and it runs over SKIP_BLOCK scores at a time to pay the
 * vector's horizontal OR once per several vectors before narrowing down.
 * (Clones for AVX2 and AVX-512 measured no faster: the loop waits on memory.)
 */
static size_t skip_below(const float *scores, size_t n, float bar)
{
	size_t j = 0;

	for (; j + SKIP_BLOCK <= n; j += SKIP_BLOCK) {
		int hit = 0;
		for (size_t m = 0; m < SKIP_BLOCK; m++)
			hit |= scores[j + m] > bar;
		if (hit)
			break;
	}
	for (; j + SCAN_BLOCK <= n; j += SCAN_BLOCK) {
		int hit = 0;
		for (size_t m = 0; m < SCAN_BLOCK; m++)
			hit |= scores[j + m] > bar;
		if (hit)
			break;
	}
	return j;
}

/*
 * Offers one tile's scores of one query to its heap. Items arrive in
 * increasing index order over the run, so once the heap is full a newcomer
 * needs a strictly higher score than the root: on an equal score its index is
 * higher and it loses the tie. NaN fails every comparison and never enters.
 */
static void select_tile(struct topk *topk, size_t q, const struct selection_job *job)
{
	const struct topk_query *query = &job->queries[q];
	const float *scores = job->scores + q * job->n;
	const uint8_t *eligible = job->eligible;
	uint64_t *heap = topk->heaps + q * topk->max_k;
	size_t *count = &topk->heap_counts[q];
	size_t *cursor = &topk->exclude_positions[q];
	size_t n = job->n, k = job->k, j = 0;
	uint32_t first_item = job->first_item;
	float bar;

	for (; j < n && *count < k; j++) {
		uint32_t item = first_item + (uint32_t)j;
		if (isnan(scores[j]) || (eligible && !eligible[item]) ||
		    excluded(query, cursor, item))
			continue;
		heap_push(heap, count, result_key(scores[j], item));
	}
	if (*count < k)
		return;
	bar = key_result(heap[0]).score;
	while (j < n) {
		size_t block_end;

		j += skip_below(scores + j, n - j, bar);
		block_end = n - j < SCAN_BLOCK ? n : j + SCAN_BLOCK;
		for (; j < block_end; j++) {
			uint32_t item = first_item + (uint32_t)j;
			if (!(scores[j] > bar) || (eligible && !eligible[item]) ||
			    excluded(query, cursor, item))
				continue;
			heap[0] = result_key(scores[j], item);
			heap_sift_down(heap, k, 0);
			bar = key_result(heap[0]).score;
		}
	}
}

/* Selects the tile for slice `slice` of the job's queries. */
static void select_slice(struct topk *topk, const struct selection_job *job, size_t slice)
{
	size_t begin = job->query_count * slice / job->slices;
	size_t end = job->query_count * (slice + 1) / job->slices;

	for (size_t q = begin; q < end; q++)
		select_tile(topk, q, job);
}

/* A selection helper: waits for a tile, selects its slice, reports done. */
static void *helper_main(void *arg)
{
	struct helper *helper = arg;
	struct topk *topk = helper->topk;

	for (;;) {
		struct selection_job job;

		pthread_mutex_lock(&topk->lock);
		while (!topk->stopping && topk->job_generation == helper->generation)
			pthread_cond_wait(&topk->job_ready, &topk->lock);
		if (topk->stopping) {
			pthread_mutex_unlock(&topk->lock);
			return NULL;
		}
		helper->generation = topk->job_generation;
		job = topk->job;
		pthread_mutex_unlock(&topk->lock);
		if (helper->slice >= job.slices)
			continue;

		select_slice(topk, &job, helper->slice);

		pthread_mutex_lock(&topk->lock);
		if (--topk->jobs_pending == 0)
			pthread_cond_signal(&topk->job_done);
		pthread_mutex_unlock(&topk->lock);
	}
}

/*
 * How many threads share this run's selection: up to `threads`, as long as
 * each gets SLICE_MIN_QUERIES queries, and as many helpers as could be
 * started (a helper that cannot start leaves its share to the others).
 */
static size_t selection_slices(struct topk *topk, int threads, size_t query_count)
{
	size_t wanted = (size_t)threads;

	if (wanted > query_count / SLICE_MIN_QUERIES)
		wanted = query_count / SLICE_MIN_QUERIES;
	while (topk->helper_count + 1 < wanted) {
		struct helper *helper = &topk->helpers[topk->helper_count];
		helper->topk = topk;
		helper->slice = topk->helper_count + 1;
		/* Read here, not in the thread: a thread that starts late must
		 * still see the run's first tile as new. */
		helper->generation = topk->job_generation;
		if (pthread_create(&helper->thread, NULL, helper_main, helper))
			break;
		topk->helper_count++;
	}
	if (wanted > topk->helper_count + 1)
		wanted = topk->helper_count + 1;
	return wanted ? wanted : 1;
}

/* Runs one tile's selection over all slices, the caller taking slice 0. */
static void select_all(struct topk *topk, const struct selection_job *job)
{
	if (job->slices > 1) {
		pthread_mutex_lock(&topk->lock);
		topk->job = *job;
		topk->jobs_pending = job->slices - 1;
		topk->job_generation++;
		pthread_cond_broadcast(&topk->job_ready);
		pthread_mutex_unlock(&topk->lock);
	}
	select_slice(topk, job, 0);
	if (job->slices > 1) {
		pthread_mutex_lock(&topk->lock);
		while (topk->jobs_pending > 0)
			pthread_cond_wait(&topk->job_done, &topk->lock);
		pthread_mutex_unlock(&topk->lock);
	}
}

/* Checks every argument of topk_run() before anything is written. */
static int check_run(const struct topk *topk, const float *rows, size_t item_count, size_t dim,
		     size_t row_stride, const struct topk_query *queries, size_t query_count,
		     size_t k, const struct topk_result *results, const size_t *result_counts,
		     char *errstr, size_t errstr_size)
{
	if (query_count > topk->max_batch) {
		snprintf(errstr, errstr_size, "topk: query_count %zu exceeds max_batch %zu",
			 query_count, topk->max_batch);
		return -1;
	}
	if (k > topk->max_k) {
		snprintf(errstr, errstr_size, "topk: k %zu exceeds max_k %zu", k, topk->max_k);
		return -1;
	}
	if (dim == 0 || dim > INT_MAX) {
		snprintf(errstr, errstr_size, "topk: dim must be between 1 and %d, got %zu",
			 INT_MAX, dim);
		return -1;
	}
	if (row_stride < dim || row_stride > INT_MAX) {
		snprintf(errstr, errstr_size,
			 "topk: row_stride must be between dim (%zu) and %d, got %zu", dim, INT_MAX,
			 row_stride);
		return -1;
	}
	if (item_count > (size_t)UINT32_MAX + 1) {
		snprintf(errstr, errstr_size,
			 "topk: item_count %zu exceeds the uint32_t item index", item_count);
		return -1;
	}
	if (query_count == 0)
		return 0;
	if (queries == NULL || result_counts == NULL || (k > 0 && results == NULL) ||
	    (item_count > 0 && rows == NULL)) {
		snprintf(errstr, errstr_size, "topk: %s is NULL",
			 queries == NULL         ? "queries"
			 : result_counts == NULL ? "result_counts"
			 : rows == NULL          ? "rows"
						 : "results");
		return -1;
	}
	for (size_t q = 0; q < query_count; q++) {
		char name[64];
		snprintf(name, sizeof name, "topk: queries[%zu]", q);
		if (topk_query_check(&queries[q], name, errstr, errstr_size) != 0)
			return -1;
	}
	return 0;
}

int topk_query_check(const struct topk_query *query, const char *name, char *errstr,
		     size_t errstr_size)
{
	if (query->vector == NULL) {
		snprintf(errstr, errstr_size, "%s.vector is NULL", name);
		return -1;
	}
	if (query->exclude_count > 0 && query->exclude == NULL) {
		snprintf(errstr, errstr_size, "%s.exclude is NULL with exclude_count %zu", name,
			 query->exclude_count);
		return -1;
	}
	if (query->sparse_count > 0 && (query->sparse_items == NULL || query->sparse_scores == NULL)) {
		snprintf(errstr, errstr_size, "%s.sparse_%s is NULL with sparse_count %zu", name,
			 query->sparse_items == NULL ? "items" : "scores", query->sparse_count);
		return -1;
	}
	for (size_t e = 1; e < query->exclude_count; e++) {
		if (query->exclude[e] < query->exclude[e - 1]) {
			snprintf(errstr, errstr_size,
				 "%s.exclude is not sorted ascending: exclude[%zu] = %u after %u", name, e,
				 (unsigned)query->exclude[e], (unsigned)query->exclude[e - 1]);
			return -1;
		}
	}
	return 0;
}

/* Grows the scratch buffers for this run's dim, catalogue and sparse
 * entries. */
static int reserve_scratch(struct topk *topk, size_t dim, size_t tile_count, size_t sparse_total,
			   char *errstr, size_t errstr_size)
{
	size_t packed_floats = topk->packed_dim * topk->max_batch;

	if (dim > topk->packed_dim) {
		if (dim > SIZE_MAX / topk->max_batch ||
		    grow_scratch((void **)&topk->packed, &packed_floats, topk->max_batch * dim,
			    sizeof(float))) {
			snprintf(errstr, errstr_size,
				 "topk: out of memory for %zu packed queries of dim %zu",
				 topk->max_batch, dim);
			return -1;
		}
		topk->packed_dim = dim;
	}
	if (grow_scratch((void **)&topk->tile_offsets, &topk->tile_offsets_capacity, tile_count + 1,
		    sizeof(size_t))) {
		snprintf(errstr, errstr_size, "topk: out of memory for %zu tile offsets",
			 tile_count + 1);
		return -1;
	}
	if (grow_scratch((void **)&topk->sparse, &topk->sparse_capacity, sparse_total,
		    sizeof(struct sparse_entry))) {
		snprintf(errstr, errstr_size, "topk: out of memory for %zu sparse scores",
			 sparse_total);
		return -1;
	}
	return 0;
}

/*
 * Groups the batch's sparse scores by tile (a counting sort, stable, so
 * repeats of an item add up in the caller's order). Items at or past
 * item_count have no row and are dropped.
 */
static void bucket_sparse(struct topk *topk, const struct topk_query *queries, size_t query_count,
			  size_t item_count, size_t tile_items, size_t tile_count)
{
	size_t *offsets = topk->tile_offsets;
	size_t total = 0;

	memset(offsets, 0, (tile_count + 1) * sizeof *offsets);
	for (size_t q = 0; q < query_count; q++)
		for (size_t s = 0; s < queries[q].sparse_count; s++)
			if (queries[q].sparse_items[s] < item_count)
				offsets[queries[q].sparse_items[s] / tile_items + 1]++;
	for (size_t t = 0; t < tile_count; t++) {
		size_t in_tile = offsets[t + 1];
		offsets[t + 1] = total;
		total += in_tile;
	}
	/* offsets[t + 1] is now where tile t's next entry goes; after the fill
	 * it is where tile t ends, and offsets[0] = 0 is where tile 0 starts. */
	for (size_t q = 0; q < query_count; q++) {
		for (size_t s = 0; s < queries[q].sparse_count; s++) {
			uint32_t item = queries[q].sparse_items[s];
			if (item >= item_count)
				continue;
			topk->sparse[offsets[item / tile_items + 1]++] =
			    (struct sparse_entry){(uint32_t)q, item, queries[q].sparse_scores[s]};
		}
	}
}

int topk_run(struct topk *topk, const float *rows, size_t item_count, size_t dim, size_t row_stride,
	     const uint8_t *eligible, const struct topk_query *queries, size_t query_count,
	     size_t k, struct topk_result *results, size_t *result_counts, char *errstr,
	     size_t errstr_size)
{
	struct selection_job job = {queries, eligible, topk->scores, query_count, 0, k, 0, 1};
	size_t tile_items, tile_count, sparse_total = 0;
	int threads;

	if (check_run(topk, rows, item_count, dim, row_stride, queries, query_count, k, results,
		      result_counts, errstr, errstr_size))
		return -1;
	if (query_count == 0)
		return 0;
	if (k == 0 || item_count == 0) {
		memset(result_counts, 0, query_count * sizeof *result_counts);
		topk->last_threads = 0;
		topk->last_tile_items = 0;
		return 0;
	}
	threads = topk->threads ? topk->threads : topk_threads_for_batch(query_count);
	tile_items = topk->tile_items ? topk->tile_items : topk_tile_items_for_threads(threads);
	tile_count = (item_count + tile_items - 1) / tile_items;
	for (size_t q = 0; q < query_count; q++)
		sparse_total += queries[q].sparse_count;
	if (reserve_scratch(topk, dim, tile_count, sparse_total, errstr, errstr_size))
		return -1;

	for (size_t q = 0; q < query_count; q++) {
		memcpy(topk->packed + q * dim, queries[q].vector, dim * sizeof(float));
		topk->heap_counts[q] = 0;
		topk->exclude_positions[q] = 0;
	}
	bucket_sparse(topk, queries, query_count, item_count, tile_items, tile_count);

	if (openblas_get_num_threads() != threads)
		openblas_set_num_threads(threads);
	topk->last_threads = threads;
	topk->last_tile_items = tile_items;
	job.slices = selection_slices(topk, threads, query_count);

	for (size_t t = 0; t < tile_count; t++) {
		size_t first = t * tile_items;
		size_t n = item_count - first < tile_items ? item_count - first : tile_items;

		/* scores (B×n) = queries (B×dim) · tile rowsᵀ (dim×n) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)query_count, (int)n,
			    (int)dim, 1.0f, topk->packed, (int)dim, rows + first * row_stride,
			    (int)row_stride, 0.0f, topk->scores, (int)n);
		for (size_t e = topk->tile_offsets[t]; e < topk->tile_offsets[t + 1]; e++) {
			const struct sparse_entry *entry = &topk->sparse[e];
			topk->scores[entry->query * n + (entry->item - first)] += entry->score;
		}
		job.n = n;
		job.first_item = (uint32_t)first;
		select_all(topk, &job);
	}

	for (size_t q = 0; q < query_count; q++) {
		uint64_t *heap = topk->heaps + q * topk->max_k;
		size_t count = topk->heap_counts[q];

		heap_drain_best_first(heap, count, results + q * k);
		result_counts[q] = count;
	}
	return 0;
}
