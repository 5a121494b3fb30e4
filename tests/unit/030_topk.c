/*
 * Top-k engine: topk_run() returns what a brute-force scorer returns (double
 * dot products, a full sort with the same tie rule), over many shapes, with
 * exclusions, eligibility, sparse scores, ties, NaN, and its error cases.
 *
 * Most data is drawn on a grid (multiples of 1/4 in rows and queries, of 1/16
 * in sparse scores): every product and sum is then exact in float, whatever
 * order OpenBLAS's kernel adds in, so the expected output is exact too and
 * ties are plentiful. One test uses continuous data and allows only swaps of
 * near-equal scores.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"

/* ---- deterministic random data ------------------------------------------------ */

static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t rng_below(uint64_t *state, uint32_t bound)
{
	return (uint32_t)(rng_next(state) % bound);
}

/* A multiple of 1/4 in [-1, 1], or a uniform value in [-1, 1). */
static float rng_value(uint64_t *state, bool grid)
{
	if (grid)
		return (float)((int)rng_below(state, 9) - 4) * 0.25f;
	return (float)((double)(rng_next(state) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* ---- the brute-force reference ------------------------------------------------- */

struct scored {
	uint32_t item;
	double score;
};

static int compare_scored(const void *a, const void *b)
{
	const struct scored *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return (x->item > y->item) - (x->item < y->item);
}

/*
 * Scores every item of one query in double precision, drops excluded,
 * ineligible and NaN-scored ones, sorts all the rest (higher score, then
 * lower index) and keeps the first k. Also returns every item's score
 * (NaN where dropped) in all_scores. Shares no code with topk.c.
 */
static size_t brute_force(const float *rows, size_t item_count, size_t dim, size_t row_stride,
			  const uint8_t *eligible, const struct topk_query *query, size_t k,
			  struct scored *out, double *all_scores)
{
	struct scored *candidates = calloc(item_count + 1, sizeof *candidates);
	bool *is_excluded = calloc(item_count + 1, sizeof *is_excluded);
	size_t count = 0;

	assert_non_null(candidates);
	assert_non_null(is_excluded);
	for (size_t e = 0; e < query->exclude_count; e++)
		if (query->exclude[e] < item_count)
			is_excluded[query->exclude[e]] = true;
	for (size_t i = 0; i < item_count; i++) {
		double score = 0;
		for (size_t d = 0; d < dim; d++)
			score += (double)query->vector[d] * (double)rows[i * row_stride + d];
		all_scores[i] = score;
	}
	for (size_t s = 0; s < query->sparse_count; s++)
		if (query->sparse_items[s] < item_count)
			all_scores[query->sparse_items[s]] += (double)query->sparse_scores[s];
	for (size_t i = 0; i < item_count; i++) {
		if (is_excluded[i] || (eligible && !eligible[i]) || isnan(all_scores[i])) {
			all_scores[i] = NAN;
			continue;
		}
		candidates[count++] = (struct scored){(uint32_t)i, all_scores[i]};
	}
	qsort(candidates, count, sizeof *candidates, compare_scored);
	if (count > k)
		count = k;
	memcpy(out, candidates, count * sizeof *out);
	free(candidates);
	free(is_excluded);
	return count;
}

/* ---- building a batch ----------------------------------------------------------------- */

struct batch {
	size_t item_count, dim, row_stride, query_count;
	float *rows;
	uint8_t *eligible;
	struct topk_query *queries;
	float *vectors;
	uint32_t *exclude;      /* query_count × MAX_EXCLUDE */
	uint32_t *sparse_items; /* query_count × MAX_SPARSE */
	float *sparse_scores;
};

#define MAX_EXCLUDE 24
#define MAX_SPARSE  40

struct shape {
	size_t item_count, dim, row_stride, tile_items, max_batch, query_count, k;
	unsigned eligible_percent; /* 100 = eligible is NULL */
	bool filters;              /* exclusions and sparse scores */
	bool grid;
	uint64_t seed;
};

static void batch_build(struct batch *b, const struct shape *shape)
{
	uint64_t rng = shape->seed;

	memset(b, 0, sizeof *b);
	b->item_count = shape->item_count;
	b->dim = shape->dim;
	b->row_stride = shape->row_stride;
	b->query_count = shape->query_count;
	b->rows = malloc((shape->item_count * shape->row_stride + 1) * sizeof(float));
	b->queries = calloc(shape->query_count, sizeof *b->queries);
	b->vectors = malloc(shape->query_count * shape->dim * sizeof(float));
	b->exclude = malloc(shape->query_count * MAX_EXCLUDE * sizeof(uint32_t));
	b->sparse_items = malloc(shape->query_count * MAX_SPARSE * sizeof(uint32_t));
	b->sparse_scores = malloc(shape->query_count * MAX_SPARSE * sizeof(float));
	assert_true(b->rows && b->queries && b->vectors && b->exclude && b->sparse_items &&
		    b->sparse_scores);

	/* Padding between rows holds NaN: reading it would poison a score. */
	for (size_t i = 0; i < shape->item_count; i++)
		for (size_t d = 0; d < shape->row_stride; d++)
			b->rows[i * shape->row_stride + d] =
			    d < shape->dim ? rng_value(&rng, shape->grid) : NAN;
	if (shape->eligible_percent < 100) {
		b->eligible = malloc(shape->item_count + 1);
		assert_non_null(b->eligible);
		for (size_t i = 0; i < shape->item_count; i++)
			b->eligible[i] = rng_below(&rng, 100) < shape->eligible_percent;
	}
	for (size_t q = 0; q < shape->query_count; q++) {
		struct topk_query *query = &b->queries[q];
		uint32_t *exclude = b->exclude + q * MAX_EXCLUDE;
		uint32_t *sparse_items = b->sparse_items + q * MAX_SPARSE;
		float *sparse_scores = b->sparse_scores + q * MAX_SPARSE;
		uint32_t reach = (uint32_t)shape->item_count + 3; /* a few past the end */

		query->vector = b->vectors + q * shape->dim;
		for (size_t d = 0; d < shape->dim; d++)
			b->vectors[q * shape->dim + d] = rng_value(&rng, shape->grid);
		if (!shape->filters)
			continue;

		query->exclude_count = rng_below(&rng, MAX_EXCLUDE + 1);
		for (size_t e = 0; e < query->exclude_count; e++)
			exclude[e] = e > 0 && rng_below(&rng, 5) == 0
					 ? exclude[e - 1] /* a repeat */
					 : rng_below(&rng, reach);
		qsort(exclude, query->exclude_count, sizeof *exclude, compare_u32);
		query->exclude = query->exclude_count ? exclude : NULL;

		query->sparse_count = rng_below(&rng, MAX_SPARSE + 1);
		for (size_t s = 0; s < query->sparse_count; s++) {
			uint32_t pick = rng_below(&rng, 6);
			if (pick == 0 && s > 0) /* a repeat, which adds up */
				sparse_items[s] = sparse_items[rng_below(&rng, (uint32_t)s)];
			else if (pick == 1 && query->exclude_count > 0) /* excluded, yet scored */
				sparse_items[s] =
				    exclude[rng_below(&rng, (uint32_t)query->exclude_count)];
			else
				sparse_items[s] = rng_below(&rng, reach);
			/* Large enough to lift a low item into the top-k now and then. */
			sparse_scores[s] = shape->grid
					       ? (float)((int)rng_below(&rng, 129) - 32) / 16.0f
					       : rng_value(&rng, false) * 4.0f;
		}
		query->sparse_items = query->sparse_count ? sparse_items : NULL;
		query->sparse_scores = query->sparse_count ? sparse_scores : NULL;
	}
}

static void batch_free(struct batch *b)
{
	free(b->rows);
	free(b->eligible);
	free(b->queries);
	free(b->vectors);
	free(b->exclude);
	free(b->sparse_items);
	free(b->sparse_scores);
}

static struct topk *engine(size_t max_batch, size_t max_k, size_t tile_items, int threads)
{
	char errstr[256] = "";
	struct topk_config config = {max_batch, max_k, tile_items, threads};
	struct topk *topk = topk_new(&config, errstr, sizeof errstr);
	if (topk == NULL)
		fail_msg("topk_new: %s", errstr);
	return topk;
}

static bool near(double a, double b)
{
	return fabs(a - b) <= 1e-4 * (1.0 + fabs(b));
}

/*
 * Runs the batch through topk_run() and checks every query against the
 * brute force. exact_order: the data is on the grid, so items must match
 * position by position; otherwise a swap is allowed between items whose
 * reference scores are near-equal, and every returned item must be
 * admissible with the reference's score.
 */
static void check_batch(struct topk *topk, const struct batch *b, size_t k, bool exact_order)
{
	char errstr[256] = "";
	struct topk_result *results = malloc((b->query_count * k + 1) * sizeof *results);
	size_t *counts = malloc((b->query_count + 1) * sizeof *counts);
	struct scored *expected = malloc((k + 1) * sizeof *expected);
	double *all_scores = malloc((b->item_count + 1) * sizeof *all_scores);

	assert_true(results && counts && expected && all_scores);
	if (topk_run(topk, b->rows, b->item_count, b->dim, b->row_stride, b->eligible, b->queries,
		     b->query_count, k, results, counts, errstr, sizeof errstr))
		fail_msg("topk_run: %s", errstr);
	for (size_t q = 0; q < b->query_count; q++) {
		const struct topk_result *got = results + q * k;
		size_t want = brute_force(b->rows, b->item_count, b->dim, b->row_stride,
					  b->eligible, &b->queries[q], k, expected, all_scores);
		assert_int_equal(counts[q], want);
		for (size_t i = 0; i < want; i++) {
			bool tied_with_neighbour =
			    (i > 0 && near(expected[i - 1].score, expected[i].score)) ||
			    (i + 1 < want && near(expected[i + 1].score, expected[i].score));
			if (!near(got[i].score, expected[i].score))
				fail_msg("query %zu rank %zu: score %.9g, expected %.9g (item %u)",
					 q, i, (double)got[i].score, expected[i].score,
					 (unsigned)expected[i].item);
			if (got[i].item == expected[i].item)
				continue;
			if (exact_order || !tied_with_neighbour)
				fail_msg(
				    "query %zu rank %zu: item %u, expected %u (scores %.9g, %.9g)",
				    q, i, (unsigned)got[i].item, (unsigned)expected[i].item,
				    (double)got[i].score, expected[i].score);
			/* A near-tie swapped by float rounding: the item must still be
			 * admissible, carry its own score, and not repeat. */
			assert_true(got[i].item < b->item_count);
			assert_false(isnan(all_scores[got[i].item]));
			assert_true(near(got[i].score, all_scores[got[i].item]));
			for (size_t j = 0; j < i; j++)
				assert_int_not_equal(got[j].item, got[i].item);
		}
	}
	free(results);
	free(counts);
	free(expected);
	free(all_scores);
}

static void check_shape(const struct shape *shape)
{
	struct batch b;
	struct topk *topk = engine(shape->max_batch, shape->k, shape->tile_items, 0);

	batch_build(&b, shape);
	check_batch(topk, &b, shape->k, shape->grid);
	batch_free(&b);
	topk_free(topk);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void matches_brute_force_over_shapes(void **state)
{
	/* item_count, dim, row_stride, tile_items, max_batch, query_count, k,
	 * eligible %, filters, grid, seed */
	static const struct shape shapes[] = {
	    {1000, 1, 1, 64, 4, 1, 10, 100, false, true, 1}, /* dim 1: ties everywhere */
	    {1000, 1, 3, 64, 4, 4, 10, 80, true, true, 2},
	    {1237, 17, 20, 100, 8, 8, 25, 90, true, true, 3}, /* 1237 = 12 tiles + 37 */
	    {1237, 17, 17, 100, 8, 1, 25, 90, true, true, 4},
	    {333, 65, 67, 128, 5, 5, 50, 100, true, true, 5},     /* dim 65, stride > dim */
	    {512, 64, 64, 128, 16, 16, 20, 75, true, true, 6},    /* exact multiple of tile */
	    {40, 8, 9, 16, 3, 3, 20, 15, true, true, 7},          /* k > eligible items */
	    {10, 4, 4, 1024, 2, 2, 32, 100, true, true, 8},       /* fewer items than k and tile */
	    {4099, 32, 33, 0, 32, 32, 100, 95, true, true, 9},    /* default tile */
	    {2000, 2, 2, 1, 2, 2, 7, 100, true, true, 10},        /* one item per tile */
	    {777, 33, 40, 200, 256, 256, 16, 85, true, true, 11}, /* batch of 256 */
	};
	(void)state;
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		check_shape(&shapes[s]);
}

static void matches_brute_force_on_continuous_data(void **state)
{
	static const struct shape shapes[] = {
	    {5000, 64, 64, 0, 16, 16, 100, 90, true, false, 21},
	    {3001, 31, 36, 333, 7, 7, 50, 100, true, false, 22},
	};
	(void)state;
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		check_shape(&shapes[s]);
}

static void one_engine_serves_changing_shapes(void **state)
{
	/* The scratch buffers grow with dim, catalogue and sparse entries;
	 * shrinking back must still work. */
	static const struct shape shapes[] = {
	    {300, 4, 4, 64, 8, 8, 10, 90, true, true, 31},
	    {5000, 48, 50, 64, 8, 8, 30, 90, true, true, 32},
	    {100, 2, 2, 64, 8, 3, 30, 90, true, true, 33},
	    {1500, 65, 65, 64, 8, 8, 5, 100, true, true, 34},
	};
	struct topk *topk = engine(8, 30, 64, 0);
	(void)state;
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		struct batch b;
		batch_build(&b, &shapes[s]);
		check_batch(topk, &b, shapes[s].k, true);
		batch_free(&b);
	}
	topk_free(topk);
}

static void thread_counts_give_the_same_results(void **state)
{
	/* Several threads share the selection by slices of queries; a smaller
	 * batch on the same engine leaves some helpers idle, a larger one
	 * wakes them again. */
	static const size_t batches[] = {128, 20, 33, 128};
	struct shape shape = {3000, 64, 64, 256, 128, 128, 20, 90, true, true, 41};
	(void)state;
	for (int threads = 1; threads <= 3; threads++) {
		struct topk *topk = engine(shape.max_batch, shape.k, shape.tile_items, threads);
		for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
			struct batch batch;
			shape.query_count = batches[b];
			shape.seed = 41 + b;
			batch_build(&batch, &shape);
			check_batch(topk, &batch, shape.k, true);
			assert_int_equal(topk_last_threads(topk), threads);
			assert_int_equal(topk_last_tile_items(topk), 256);
			batch_free(&batch);
		}
		topk_free(topk);
	}
}

/* Runs one query against `rows` (dim 1: each row is its item's score). */
static size_t run_one(const float *rows, size_t item_count, const uint8_t *eligible,
		      const struct topk_query *query, size_t k, size_t tile_items,
		      struct topk_result *results)
{
	char errstr[256] = "";
	size_t count = 99;
	struct topk *topk = engine(1, k ? k : 1, tile_items, 0);
	if (topk_run(topk, rows, item_count, 1, 1, eligible, query, 1, k, results, &count, errstr,
		     sizeof errstr))
		fail_msg("topk_run: %s", errstr);
	topk_free(topk);
	return count;
}

static void ties_go_to_the_lower_index(void **state)
{
	/* Scores 2, 1, 0, 2, 1, 0, ...: the 2s first in index order, then the
	 * 1s, across tile boundaries (tile 4). */
	float rows[30];
	float one = 1.0f;
	struct topk_query query = {.vector = &one};
	struct topk_result results[15];
	(void)state;
	for (size_t i = 0; i < 30; i++)
		rows[i] = (float)(2 - (int)(i % 3));
	assert_int_equal(run_one(rows, 30, NULL, &query, 15, 4, results), 15);
	for (size_t r = 0; r < 10; r++) {
		assert_int_equal(results[r].item, 3 * r);
		assert_true(results[r].score == 2.0f);
	}
	for (size_t r = 10; r < 15; r++) {
		assert_int_equal(results[r].item, 3 * (r - 10) + 1);
		assert_true(results[r].score == 1.0f);
	}

	/* All equal: items 0..k-1, whatever the tile. */
	for (size_t i = 0; i < 30; i++)
		rows[i] = 0.5f;
	for (size_t tile = 1; tile <= 32; tile *= 2) {
		assert_int_equal(run_one(rows, 30, NULL, &query, 7, tile, results), 7);
		for (size_t r = 0; r < 7; r++)
			assert_int_equal(results[r].item, r);
	}
}

static void sparse_scores_lift_and_add_up(void **state)
{
	/* Dense scores fall with the index: item i scores -i/8. */
	float rows[64];
	float one = 1.0f;
	/* Item 60 is lifted to the top; item 50's two halves add up to +7
	 * (score 0.75), past item 1 (-0.125) but not past item 0 (0); 40 gets
	 * +6.5 = 1.5 in three parts, one of them negative. */
	const uint32_t items[] = {50, 60, 40, 50, 40, 40};
	const float scores[] = {3.5f, 100.0f, 4.0f, 3.5f, 3.0f, -0.5f};
	struct topk_query query = {
	    .vector = &one, .sparse_items = items, .sparse_scores = scores, .sparse_count = 6};
	struct topk_result results[5];
	static const uint32_t want_items[] = {60, 40, 50, 0, 1};
	static const float want_scores[] = {92.5f, 1.5f, 0.75f, 0.0f, -0.125f};
	(void)state;
	for (size_t i = 0; i < 64; i++)
		rows[i] = -(float)i / 8.0f;
	assert_int_equal(run_one(rows, 64, NULL, &query, 5, 16, results), 5);
	for (size_t r = 0; r < 5; r++) {
		assert_int_equal(results[r].item, want_items[r]);
		assert_true(results[r].score == want_scores[r]);
	}
}

static void excluded_and_ineligible_never_appear(void **state)
{
	/* Item i scores i: the best are the last. Exclude 63 (with a sparse
	 * boost too) and 61, twice; make 62 ineligible and boost it; boost
	 * 5 past everything and exclude it; 10 is boosted and allowed. */
	float rows[64];
	uint8_t eligible[64];
	float one = 1.0f;
	const uint32_t exclude[] = {5, 61, 61, 63, 200};
	const uint32_t items[] = {63, 62, 5, 10, 5};
	const float scores[] = {1000.0f, 1000.0f, 1000.0f, 100.0f, 1.0f};
	struct topk_query query = {.vector = &one,
				   .exclude = exclude,
				   .exclude_count = 5,
				   .sparse_items = items,
				   .sparse_scores = scores,
				   .sparse_count = 5};
	struct topk_result results[64];
	static const uint32_t want_items[] = {10, 60, 59, 58};
	size_t count;
	(void)state;
	for (size_t i = 0; i < 64; i++) {
		rows[i] = (float)i;
		eligible[i] = i != 62 && i != 3;
	}
	assert_int_equal(run_one(rows, 64, eligible, &query, 4, 8, results), 4);
	for (size_t r = 0; r < 4; r++)
		assert_int_equal(results[r].item, want_items[r]);
	assert_true(results[0].score == 110.0f);

	/* Ask for everything: 64 items less 5, 61, 63 (excluded), 3, 62
	 * (ineligible). */
	count = run_one(rows, 64, eligible, &query, 64, 8, results);
	assert_int_equal(count, 59);
	for (size_t r = 0; r < count; r++)
		assert_true(results[r].item != 3 && results[r].item != 5 && results[r].item != 61 &&
			    results[r].item != 62 && results[r].item != 63);
}

static void nan_scores_are_never_returned(void **state)
{
	float rows[20];
	float one = 1.0f, nan_query = NAN;
	const uint32_t items[] = {7};
	const float scores[] = {NAN};
	struct topk_query query = {
	    .vector = &one, .sparse_items = items, .sparse_scores = scores, .sparse_count = 1};
	struct topk_query poisoned = {.vector = &nan_query};
	struct topk_result results[20];
	size_t count;
	(void)state;
	for (size_t i = 0; i < 20; i++)
		rows[i] = (float)i;
	rows[12] = NAN;
	count = run_one(rows, 20, NULL, &query, 20, 8, results);
	assert_int_equal(count, 18);
	for (size_t r = 0; r < count; r++) {
		assert_false(isnan(results[r].score));
		assert_true(results[r].item != 7 && results[r].item != 12);
	}
	assert_int_equal(results[0].item, 19);
	assert_int_equal(run_one(rows, 20, NULL, &poisoned, 5, 8, results), 0);
}

static void infinite_scores_rank_last(void **state)
{
	/* -inf is a score like any other: kept when k leaves room, after
	 * every finite score, in index order. */
	float rows[10];
	float one = 1.0f;
	const uint32_t items[] = {2, 8};
	const float scores[] = {-INFINITY, -INFINITY};
	struct topk_query query = {
	    .vector = &one, .sparse_items = items, .sparse_scores = scores, .sparse_count = 2};
	struct topk_result results[10];
	(void)state;
	for (size_t i = 0; i < 10; i++)
		rows[i] = -(float)i;
	assert_int_equal(run_one(rows, 10, NULL, &query, 10, 3, results), 10);
	assert_int_equal(results[7].item, 9);
	assert_int_equal(results[8].item, 2);
	assert_int_equal(results[9].item, 8);
	assert_true(isinf(results[9].score));
}

static void empty_runs_give_no_results(void **state)
{
	char errstr[256] = "";
	float rows[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	float vector[2] = {1, 1};
	struct topk_query queries[2] = {{.vector = vector}, {.vector = vector}};
	struct topk_result results[4];
	size_t counts[2] = {99, 99};
	struct topk *topk = engine(2, 2, 16, 0);
	(void)state;

	assert_int_equal(
	    topk_run(topk, rows, 4, 2, 2, NULL, queries, 2, 0, NULL, counts, errstr, sizeof errstr),
	    0);
	assert_int_equal(counts[0], 0);
	assert_int_equal(counts[1], 0);
	counts[0] = counts[1] = 99;
	assert_int_equal(topk_run(topk, NULL, 0, 2, 2, NULL, queries, 2, 2, results, counts, errstr,
				  sizeof errstr),
			 0);
	assert_int_equal(counts[0], 0);
	assert_int_equal(counts[1], 0);
	counts[0] = 99;
	assert_int_equal(
	    topk_run(topk, rows, 4, 2, 2, NULL, NULL, 0, 2, results, counts, errstr, sizeof errstr),
	    0);
	assert_int_equal(counts[0], 99); /* nothing written for no queries */
	topk_free(topk);
}

/* Expects topk_run to fail with `needle` in errstr and to write nothing. */
static void expect_run_error(struct topk *topk, const float *rows, size_t item_count, size_t dim,
			     size_t row_stride, const struct topk_query *queries,
			     size_t query_count, size_t k, const char *needle)
{
	char errstr[256] = "";
	struct topk_result results[8];
	size_t counts[8] = {99, 99, 99, 99, 99, 99, 99, 99};
	assert_int_equal(topk_run(topk, rows, item_count, dim, row_stride, NULL, queries,
				  query_count, k, results, counts, errstr, sizeof errstr),
			 -1);
	if (strstr(errstr, needle) == NULL)
		fail_msg("errstr \"%s\" lacks \"%s\"", errstr, needle);
	assert_int_equal(counts[0], 99);
}

static void errors_are_reported(void **state)
{
	char errstr[256];
	float rows[16] = {0};
	float vector[4] = {1, 1, 1, 1};
	const uint32_t unsorted[] = {1, 3, 2};
	const uint32_t items[] = {1};
	struct topk_query queries[4] = {
	    {.vector = vector}, {.vector = vector}, {.vector = vector}, {.vector = vector}};
	struct topk_config config = {0, 4, 16, 0};
	struct topk *topk;
	(void)state;

	assert_null(topk_new(NULL, errstr, sizeof errstr));
	assert_null(topk_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "max_batch"));
	config = (struct topk_config){2, 0, 16, 0};
	assert_null(topk_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "max_k"));
	config = (struct topk_config){2, 4, 16, -1};
	assert_null(topk_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "threads"));
	config = (struct topk_config){2, 4, 16, TOPK_MAX_THREADS + 1};
	assert_null(topk_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "threads"));
	config = (struct topk_config){SIZE_MAX / 2, 4, 16, 0};
	assert_null(topk_new(&config, errstr, sizeof errstr));

	topk = engine(3, 4, 16, 0);
	expect_run_error(topk, rows, 4, 4, 4, queries, 4, 2, "query_count 4 exceeds max_batch 3");
	expect_run_error(topk, rows, 4, 4, 4, queries, 1, 5, "k 5 exceeds max_k 4");
	expect_run_error(topk, rows, 4, 4, 3, queries, 1, 2, "row_stride");
	expect_run_error(topk, rows, 4, 0, 0, queries, 1, 2, "dim");
	expect_run_error(topk, NULL, 4, 4, 4, queries, 1, 2, "rows is NULL");
	queries[1].vector = NULL;
	expect_run_error(topk, rows, 4, 4, 4, queries, 2, 2, "queries[1].vector is NULL");
	queries[1].vector = vector;
	queries[2].exclude = unsorted;
	queries[2].exclude_count = 3;
	expect_run_error(topk, rows, 4, 4, 4, queries, 3, 2,
			 "queries[2].exclude is not sorted ascending");
	queries[2].exclude = NULL;
	expect_run_error(topk, rows, 4, 4, 4, queries, 3, 2, "queries[2].exclude is NULL");
	queries[2].exclude_count = 0;
	queries[0].sparse_items = items;
	queries[0].sparse_count = 1;
	expect_run_error(topk, rows, 4, 4, 4, queries, 1, 2, "queries[0].sparse_scores is NULL");
	topk_free(topk);
	topk_free(NULL);
}

static void defaults_follow_the_shape(void **state)
{
	struct shape shape = {5000, 8, 8, 0, TOPK_THREADED_MIN_BATCH, 1, 5, 100, false, true, 51};
	struct topk *topk = engine(shape.max_batch, shape.k, 0, 0);
	struct batch b;
	(void)state;
	assert_int_equal(topk_last_threads(topk), 0);
	assert_int_equal(topk_last_tile_items(topk), 0);

	batch_build(&b, &shape);
	check_batch(topk, &b, shape.k, true);
	assert_int_equal(topk_last_threads(topk), 1);
	assert_int_equal(topk_last_tile_items(topk), TOPK_TILE_ITEMS_SINGLE);
	batch_free(&b);

	shape.query_count = TOPK_THREADED_MIN_BATCH;
	batch_build(&b, &shape);
	check_batch(topk, &b, shape.k, true);
	assert_int_equal(topk_last_threads(topk), topk_threads_for_batch(shape.query_count));
	assert_int_equal(topk_last_tile_items(topk),
			 topk_tile_items_for_threads(topk_last_threads(topk)));
	batch_free(&b);
	topk_free(topk);

	assert_int_equal(topk_threads_for_batch(1), 1);
	assert_int_equal(topk_threads_for_batch(TOPK_THREADED_MIN_BATCH - 1), 1);
	assert_true(topk_threads_for_batch(TOPK_THREADED_MIN_BATCH) >= 1);
	assert_int_equal(topk_tile_items_for_threads(1), TOPK_TILE_ITEMS_SINGLE);
	assert_int_equal(topk_tile_items_for_threads(2), TOPK_TILE_ITEMS_THREADED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(matches_brute_force_over_shapes),
	    cmocka_unit_test(matches_brute_force_on_continuous_data),
	    cmocka_unit_test(one_engine_serves_changing_shapes),
	    cmocka_unit_test(thread_counts_give_the_same_results),
	    cmocka_unit_test(ties_go_to_the_lower_index),
	    cmocka_unit_test(sparse_scores_lift_and_add_up),
	    cmocka_unit_test(excluded_and_ineligible_never_appear),
	    cmocka_unit_test(nan_scores_are_never_returned),
	    cmocka_unit_test(infinite_scores_rank_last),
	    cmocka_unit_test(empty_runs_give_no_results),
	    cmocka_unit_test(errors_are_reported),
	    cmocka_unit_test(defaults_follow_the_shape),
	};
	return cmocka_run_group_tests_name("030_topk", tests, NULL, NULL);
}
