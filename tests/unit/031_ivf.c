/*
 * IVF candidate index: probing every cell gives topk_run()'s list exactly
 * (with ties, exclusions, eligibility, sparse and extra candidates); probing
 * a few cells still honours every filter and always ranks the sparse and
 * extra candidates; items that move are found in their new cell (brute force
 * as the oracle) and retraining restores balance; recall@20 against exact
 * is at least 0.95 on clustered data; errors are reported.
 *
 * Exactness tests use grid data (multiples of 1/4 in rows and queries, of
 * 1/16 in sparse scores, as 030_topk does): every dot product is then exact
 * in float whatever shape OpenBLAS multiplies in, so both engines must agree
 * to the bit, and ties are plentiful.
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
#include <unistd.h>

#include "ivf.h"
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

/* A multiple of 1/4 in [-1, 1]. */
static float rng_grid(uint64_t *state)
{
	return (float)((int)rng_below(state, 9) - 4) * 0.25f;
}

static double rng_uniform(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) / 9007199254740992.0;
}

static double rng_gauss(uint64_t *state)
{
	double u = rng_uniform(state) + 1e-12, v = rng_uniform(state);
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static bool contains(const uint32_t *sorted, size_t count, uint32_t item)
{
	return count > 0 && bsearch(&item, sorted, count, sizeof item, compare_u32) != NULL;
}

/* ---- a batch of queries with filters ------------------------------------------- */

#define MAX_EXCLUDE 20
#define MAX_SPARSE  30
#define MAX_EXTRA   10

struct batch {
	size_t item_count, dim, query_count;
	float *rows;
	uint8_t *eligible;
	float *vectors;
	uint32_t *exclude, *sparse_items, *extra_items;
	float *sparse_scores;
	struct ivf_query *queries;
	struct topk_query *topk_queries;
};

/*
 * Grid rows with many exact duplicates (ties), 85% eligible, and per query
 * up to MAX_EXCLUDE sorted exclusions with repeats, MAX_SPARSE sparse scores
 * with repeats (some past the end) and MAX_EXTRA extra candidates.
 */
static void batch_build(struct batch *b, size_t item_count, size_t dim, size_t query_count,
			uint64_t seed)
{
	uint64_t rng = seed;

	memset(b, 0, sizeof *b);
	b->item_count = item_count;
	b->dim = dim;
	b->query_count = query_count;
	b->rows = malloc(item_count * dim * sizeof(float));
	b->eligible = malloc(item_count);
	b->vectors = malloc(query_count * dim * sizeof(float));
	b->exclude = malloc(query_count * MAX_EXCLUDE * sizeof(uint32_t));
	b->sparse_items = malloc(query_count * MAX_SPARSE * sizeof(uint32_t));
	b->sparse_scores = malloc(query_count * MAX_SPARSE * sizeof(float));
	b->extra_items = malloc(query_count * MAX_EXTRA * sizeof(uint32_t));
	b->queries = calloc(query_count, sizeof *b->queries);
	b->topk_queries = calloc(query_count, sizeof *b->topk_queries);
	assert_true(b->rows && b->eligible && b->vectors && b->exclude && b->sparse_items &&
		    b->sparse_scores && b->extra_items && b->queries && b->topk_queries);
	for (size_t i = 0; i < item_count; i++) {
		if (i > 0 && rng_below(&rng, 5) == 0) /* a duplicate: exact ties */
			memcpy(b->rows + i * dim, b->rows + rng_below(&rng, (uint32_t)i) * dim,
			       dim * sizeof(float));
		else
			for (size_t d = 0; d < dim; d++)
				b->rows[i * dim + d] = rng_grid(&rng);
		b->eligible[i] = rng_below(&rng, 100) < 85;
	}
	for (size_t q = 0; q < query_count; q++) {
		uint32_t *exclude = b->exclude + q * MAX_EXCLUDE;
		uint32_t *sparse_items = b->sparse_items + q * MAX_SPARSE;
		float *sparse_scores = b->sparse_scores + q * MAX_SPARSE;
		uint32_t *extra = b->extra_items + q * MAX_EXTRA;
		size_t exclude_count = rng_below(&rng, MAX_EXCLUDE + 1);
		size_t sparse_count = rng_below(&rng, MAX_SPARSE + 1);
		size_t extra_count = rng_below(&rng, MAX_EXTRA + 1);

		for (size_t d = 0; d < dim; d++)
			b->vectors[q * dim + d] = rng_grid(&rng);
		for (size_t e = 0; e < exclude_count; e++)
			exclude[e] = rng_below(&rng, (uint32_t)item_count);
		if (exclude_count > 1)
			exclude[1] = exclude[0]; /* a repeat */
		qsort(exclude, exclude_count, sizeof *exclude, compare_u32);
		/* odd queries: sorted and distinct, as model_query() hands them */
		uint32_t ascending = rng_below(&rng, 4);
		for (size_t s = 0; s < sparse_count; s++) {
			if (q % 2 == 1) {
				sparse_items[s] = ascending;
				ascending += 1 + rng_below(&rng, (uint32_t)item_count / 8 + 1);
			} else {
				sparse_items[s] = rng_below(&rng, (uint32_t)item_count + 5);
			}
			sparse_scores[s] = (float)rng_below(&rng, 33) / 16.0f;
		}
		if (sparse_count > 2 && q % 2 == 0)
			sparse_items[2] = sparse_items[0]; /* repeats add up */
		for (size_t e = 0; e < extra_count; e++)
			extra[e] = rng_below(&rng, (uint32_t)item_count + 3);
		if (extra_count > 0 && sparse_count > 0)
			extra[0] = sparse_items[0]; /* an extra item that is sparse too */
		b->topk_queries[q] = (struct topk_query){
		    b->vectors + q * dim, exclude_count ? exclude : NULL, exclude_count,
		    sparse_count ? sparse_items : NULL, sparse_count ? sparse_scores : NULL,
		    sparse_count};
		b->queries[q] = (struct ivf_query){b->topk_queries[q], extra_count ? extra : NULL,
						   extra_count};
	}
}

static void batch_free(struct batch *b)
{
	free(b->rows);
	free(b->eligible);
	free(b->vectors);
	free(b->exclude);
	free(b->sparse_items);
	free(b->sparse_scores);
	free(b->extra_items);
	free(b->queries);
	free(b->topk_queries);
}

/* The exact engine's lists for the batch over `rows`. */
static void exact_lists(const struct batch *b, const float *rows, size_t k,
			struct topk_result *results, size_t *counts)
{
	char errstr[256];
	struct topk_config config = {b->query_count, k, 0, 1};
	struct topk *topk = topk_new(&config, errstr, sizeof errstr);

	assert_non_null(topk);
	assert_int_equal(topk_run(topk, rows, b->item_count, b->dim, b->dim, b->eligible,
				  b->topk_queries, b->query_count, k, results, counts, errstr,
				  sizeof errstr),
			 0);
	topk_free(topk);
}

static struct ivf *index_new(size_t dim, size_t nlist, size_t max_batch, size_t max_k,
			     enum ivf_assign assign)
{
	char errstr[256];
	struct ivf_config config = {dim, nlist, max_batch, max_k, assign, 7, 1, 0};
	struct ivf *ivf = ivf_new(&config, errstr, sizeof errstr);

	if (ivf == NULL)
		fail_msg("%s", errstr);
	return ivf;
}

static void assert_same_lists(const struct topk_result *expected, const size_t *expected_counts,
			      const struct topk_result *got, const size_t *got_counts,
			      size_t query_count, size_t k)
{
	for (size_t q = 0; q < query_count; q++) {
		assert_int_equal(got_counts[q], expected_counts[q]);
		for (size_t r = 0; r < got_counts[q]; r++) {
			if (got[q * k + r].item != expected[q * k + r].item ||
			    got[q * k + r].score != expected[q * k + r].score)
				fail_msg("query %zu rank %zu: got item %u score %g, exact has %u %g",
					 q, r, got[q * k + r].item, (double)got[q * k + r].score,
					 expected[q * k + r].item, (double)expected[q * k + r].score);
		}
	}
}

/* ---- tests ---------------------------------------------------------------------- */

static void full_probe_equals_exact_engine(void **state)
{
	static const enum ivf_assign rules[] = {IVF_ASSIGN_AUGMENTED_L2,
						IVF_ASSIGN_NORMALISED_IP};
	static const size_t item_counts[] = {1, 50, 3000};
	enum { DIM = 8, QUERIES = 37, K = 25 };
	(void)state;

	for (size_t r = 0; r < 2; r++) {
		for (size_t n = 0; n < sizeof item_counts / sizeof *item_counts; n++) {
			struct topk_result expected[QUERIES * K], got[QUERIES * K];
			size_t expected_counts[QUERIES], got_counts[QUERIES];
			char errstr[256];
			struct batch b;
			struct ivf *ivf = index_new(DIM, 0, QUERIES, K, rules[r]);

			batch_build(&b, item_counts[n], DIM, QUERIES, 100 + n);
			assert_int_equal(
			    ivf_build(ivf, b.rows, b.item_count, DIM, errstr, sizeof errstr), 0);
			exact_lists(&b, b.rows, K, expected, expected_counts);
			/* nprobe = nlist, and far past it */
			assert_int_equal(ivf_search(ivf, b.eligible, b.queries, QUERIES,
						    ivf_nlist(ivf), K, got, got_counts, errstr,
						    sizeof errstr),
					 0);
			assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
			assert_int_equal(ivf_search(ivf, b.eligible, b.queries, QUERIES,
						    SIZE_MAX, K, got, got_counts, errstr,
						    sizeof errstr),
					 0);
			assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
			/* without filters: eligible NULL */
			exact_lists(&(struct batch){.item_count = b.item_count,
						    .dim = DIM,
						    .query_count = QUERIES,
						    .topk_queries = b.topk_queries},
				    b.rows, K, expected, expected_counts);
			assert_int_equal(ivf_search(ivf, NULL, b.queries, QUERIES, SIZE_MAX, K,
						    got, got_counts, errstr, sizeof errstr),
					 0);
			assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
			batch_free(&b);
			ivf_free(ivf);
		}
	}
}

/*
 * With a few cells probed every result is eligible, not excluded, carries
 * its exact fused score, comes in order without repeats, and every sparse or
 * extra candidate that beats the last result is in the list.
 */
static void partial_probe_honours_filters(void **state)
{
	enum { DIM = 8, QUERIES = 64, K = 20, ITEMS = 4000 };
	struct topk_result got[QUERIES * K];
	size_t got_counts[QUERIES];
	char errstr[256];
	struct batch b;
	struct ivf *ivf = index_new(DIM, 40, QUERIES, K, IVF_ASSIGN_DEFAULT);
	(void)state;

	batch_build(&b, ITEMS, DIM, QUERIES, 5);
	assert_int_equal(ivf_build(ivf, b.rows, ITEMS, DIM, errstr, sizeof errstr), 0);
	for (size_t nprobe = 0; nprobe <= 3; nprobe++) {
		assert_int_equal(ivf_search(ivf, b.eligible, b.queries, QUERIES, nprobe, K, got,
					    got_counts, errstr, sizeof errstr),
				 0);
		for (size_t q = 0; q < QUERIES; q++) {
			const struct ivf_query *query = &b.queries[q];
			double *fused = calloc(ITEMS, sizeof *fused);
			bool *listed = calloc(ITEMS, sizeof *listed);

			assert_true(fused && listed);
			for (size_t i = 0; i < ITEMS; i++)
				for (size_t d = 0; d < DIM; d++)
					fused[i] += (double)b.vectors[q * DIM + d] *
						    b.rows[i * DIM + d];
			for (size_t s = 0; s < query->base.sparse_count; s++)
				if (query->base.sparse_items[s] < ITEMS)
					fused[query->base.sparse_items[s]] +=
					    query->base.sparse_scores[s];
			assert_true(got_counts[q] <= K);
			for (size_t r = 0; r < got_counts[q]; r++) {
				const struct topk_result *result = &got[q * K + r];
				assert_true(result->item < ITEMS);
				assert_true(b.eligible[result->item]);
				assert_false(contains(query->base.exclude,
						      query->base.exclude_count, result->item));
				assert_false(listed[result->item]);
				listed[result->item] = true;
				assert_true((double)result->score == fused[result->item]);
				if (r > 0) {
					const struct topk_result *before = result - 1;
					assert_true(before->score > result->score ||
						    (before->score == result->score &&
						     before->item < result->item));
				}
			}
			/* Sparse and extra candidates are ranked whatever is probed. */
			for (size_t e = 0; e < query->base.sparse_count + query->extra_count; e++) {
				uint32_t item = e < query->base.sparse_count
						    ? query->base.sparse_items[e]
						    : query->extra_items[e - query->base.sparse_count];
				bool excluded = contains(query->base.exclude,
							 query->base.exclude_count, item);
				if (item >= ITEMS || !b.eligible[item] || excluded || listed[item])
					continue;
				assert_true(got_counts[q] == K);
				assert_true(fused[item] <= got[q * K + K - 1].score);
			}
			free(fused);
			free(listed);
		}
	}
	batch_free(&b);
	ivf_free(ivf);
}

/* Every item is in exactly one cell, at the slot its cell says. */
static void assert_cells_consistent(const struct ivf *ivf)
{
	size_t total = 0;

	for (size_t c = 0; c < ivf_nlist(ivf); c++)
		total += ivf_cell_size(ivf, c);
	assert_int_equal(total, ivf_item_count(ivf));
}

/*
 * Items moved to another cluster's region live in the cell the centroids
 * give their new row; a query along a moved row finds it first with a few
 * cells probed (the oracle: brute force over the updated rows ranks it
 * first); full probing still equals the exact engine; appends work; piling
 * items into one cell asks for a retrain, which restores balance.
 */
static void moved_items_are_found_in_their_new_cell(void **state)
{
	enum { DIM = 8, QUERIES = 16, K = 10, ITEMS = 3000, MOVES = 300 };
	struct topk_result expected[QUERIES * K], got[QUERIES * K];
	size_t expected_counts[QUERIES], got_counts[QUERIES];
	char errstr[256];
	uint64_t rng = 11;
	struct batch b;
	/* The augmented rule: for a row at least as long as any in the training
	 * (extra coordinate 0) the cell it is assigned to is the cell a query
	 * along it probes first, which the search below relies on. The
	 * normalised rule assigns by cosine and probes by mean score, so there
	 * the moved item's cell may rank lower. */
	struct ivf *ivf = index_new(DIM, 30, QUERIES, K, IVF_ASSIGN_AUGMENTED_L2);
	size_t moved_cells = 0;
	(void)state;

	batch_build(&b, ITEMS, DIM, QUERIES, 9);
	/* Clustered grid rows: 30 centres, each row a centre plus grid noise. */
	for (size_t i = 0; i < ITEMS; i++)
		for (size_t d = 0; d < DIM; d++)
			b.rows[i * DIM + d] = b.rows[(i % 30) * DIM + d] * 4.0f + rng_grid(&rng);
	assert_int_equal(ivf_build(ivf, b.rows, ITEMS, DIM, errstr, sizeof errstr), 0);
	assert_cells_consistent(ivf);
	assert_false(ivf_needs_retrain(ivf));

	for (size_t m = 0; m < MOVES; m++) {
		uint32_t item = rng_below(&rng, ITEMS);
		uint32_t target = rng_below(&rng, ITEMS);
		size_t before = ivf_item_cell(ivf, item);
		float *row = b.rows + (size_t)item * DIM;

		for (size_t d = 0; d < DIM; d++)
			row[d] = b.rows[(size_t)target * DIM + d] + rng_grid(&rng);
		assert_int_equal(ivf_update_item(ivf, item, row, errstr, sizeof errstr), 0);
		assert_int_equal(ivf_item_cell(ivf, item), ivf_assign_cell(ivf, row));
		moved_cells += ivf_item_cell(ivf, item) != before;
	}
	assert_true(moved_cells > MOVES / 2);
	assert_cells_consistent(ivf);

	/* A long row (twice another's) along a moved item: brute force ranks it
	 * first, and so must a search of the 3 best cells. */
	for (size_t m = 0; m < 20; m++) {
		uint32_t item = rng_below(&rng, ITEMS);
		float *row = b.rows + (size_t)item * DIM;
		struct ivf_query query = {{row, NULL, 0, NULL, NULL, 0}, NULL, 0};
		uint32_t best = 0;
		double best_score = -INFINITY;

		for (size_t d = 0; d < DIM; d++)
			row[d] = b.rows[(size_t)rng_below(&rng, ITEMS) * DIM + d] * 2.0f;
		assert_int_equal(ivf_update_item(ivf, item, row, errstr, sizeof errstr), 0);
		for (uint32_t i = 0; i < ITEMS; i++) {
			double score = 0.0;
			for (size_t d = 0; d < DIM; d++)
				score += (double)row[d] * b.rows[(size_t)i * DIM + d];
			if (score > best_score) {
				best_score = score;
				best = i;
			}
		}
		assert_int_equal(ivf_search(ivf, NULL, &query, 1, 3, K, got, got_counts, errstr,
					    sizeof errstr),
				 0);
		assert_true(got_counts[0] > 0);
		assert_int_equal(got[0].item, best);
		assert_true((double)got[0].score == best_score);
	}

	exact_lists(&b, b.rows, K, expected, expected_counts);
	assert_int_equal(ivf_search(ivf, b.eligible, b.queries, QUERIES, SIZE_MAX, K, got,
				    got_counts, errstr, sizeof errstr),
			 0);
	assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);

	/* Appending: item == item count. Past the end: an error. */
	assert_int_equal(ivf_update_item(ivf, ITEMS, b.rows, errstr, sizeof errstr), 0);
	assert_int_equal(ivf_item_count(ivf), ITEMS + 1);
	assert_int_equal(ivf_update_item(ivf, ITEMS + 5, b.rows, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "past the end"));
	assert_cells_consistent(ivf);

	/* Pile a third of the items onto one row: one cell swells. */
	for (uint32_t i = 0; i < ITEMS / 3; i++) {
		memcpy(b.rows + (size_t)i * DIM, b.rows + (size_t)(ITEMS - 1) * DIM,
		       DIM * sizeof(float));
		assert_int_equal(
		    ivf_update_item(ivf, i, b.rows + (size_t)i * DIM, errstr, sizeof errstr), 0);
	}
	assert_true(ivf_needs_retrain(ivf));
	assert_int_equal(ivf_retrain(ivf, errstr, sizeof errstr), 0);
	assert_cells_consistent(ivf);
	assert_int_equal(ivf_item_count(ivf), ITEMS + 1);
	/* The exact engine sees the first ITEMS rows; the appended item is made
	 * ineligible (eligible has one byte per item of the index). */
	b.eligible = realloc(b.eligible, ITEMS + 1);
	assert_non_null(b.eligible);
	b.eligible[ITEMS] = 0;
	exact_lists(&b, b.rows, K, expected, expected_counts);
	assert_int_equal(ivf_search(ivf, b.eligible, b.queries, QUERIES, SIZE_MAX, K, got,
				    got_counts, errstr, sizeof errstr),
			 0);
	assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
	batch_free(&b);
	ivf_free(ivf);
}

/*
 * Clustered continuous data (a mixture of Gaussians with a popularity bias
 * column, queries near the centres): recall@20 of a search of a tenth of the
 * cells against the exact engine is at least 0.95, for both rules.
 */
/*
 * The batched update puts every row in the cell the one-at-a-time update
 * chooses (one sgemm instead of one sgemv a row), for moved rows and for
 * new items appended in order, across chunk boundaries, under both rules.
 */
static void batched_updates_place_rows_as_single_ones(void **state)
{
	enum { DIM = 8, ITEMS = 3000, MOVES = 2500, NEW = 1100 };
	char errstr[256];
	uint64_t rng = 5;
	struct batch b;
	(void)state;

	batch_build(&b, ITEMS + NEW, DIM, 1, 3);
	for (int rule = 0; rule < 2; rule++) {
		enum ivf_assign assign = rule ? IVF_ASSIGN_NORMALISED_IP : IVF_ASSIGN_AUGMENTED_L2;
		struct ivf *one = index_new(DIM, 40, 1, 10, assign);
		struct ivf *many = index_new(DIM, 40, 1, 10, assign);
		assert_int_equal(ivf_build(one, b.rows, ITEMS, DIM, errstr, sizeof errstr), 0);
		assert_int_equal(ivf_build(many, b.rows, ITEMS, DIM, errstr, sizeof errstr), 0);
		uint32_t *moved = malloc((MOVES + NEW) * sizeof *moved);
		assert_non_null(moved);
		for (size_t m = 0; m < MOVES; m++) {
			moved[m] = rng_below(&rng, ITEMS);
			for (size_t d = 0; d < DIM; d++)
				b.rows[(size_t)moved[m] * DIM + d] = rng_grid(&rng) * 3.0f;
		}
		for (size_t n = 0; n < NEW; n++)
			moved[MOVES + n] = (uint32_t)(ITEMS + n);
		for (size_t m = 0; m < MOVES + NEW; m++)
			assert_int_equal(ivf_update_item(one, moved[m], b.rows + (size_t)moved[m] * DIM,
							 errstr, sizeof errstr),
					 0);
		assert_int_equal(ivf_update_items(many, moved, MOVES + NEW, b.rows, DIM, errstr,
						  sizeof errstr),
				 0);
		assert_int_equal(ivf_item_count(many), ITEMS + NEW);
		for (uint32_t i = 0; i < ITEMS + NEW; i++)
			assert_int_equal(ivf_item_cell(many, i), ivf_item_cell(one, i));
		assert_cells_consistent(many);
		/* an item past the end is refused */
		uint32_t past = ITEMS + NEW + 5;
		assert_int_equal(ivf_update_items(many, &past, 1, b.rows, DIM, errstr, sizeof errstr),
				 -1);
		free(moved);
		ivf_free(one);
		ivf_free(many);
	}
	batch_free(&b);
}

/* Every item sits in the cell a scoring of its row against every centroid
 * gives (ivf_assign_cell(), the oracle). */
static void assert_cells_as_scored(const struct ivf *ivf, const float *rows, size_t items,
				   size_t dim)
{
	for (uint32_t i = 0; i < items; i++)
		assert_int_equal(ivf_item_cell(ivf, i), ivf_assign_cell(ivf, rows + (size_t)i * dim));
}

/*
 * Learning moves rows a little at a time. Small random steps (and now and
 * then a jump) through both update calls: after every round each item sits
 * in the cell that scoring its row against every centroid gives
 * (ivf_assign_cell(), the oracle), many updates kept their cell without
 * that scoring, and the steps did carry items across cells.
 */
static void small_moves_keep_cells_unscored_where_scoring_would(void **state)
{
	enum { DIM = 8, ITEMS = 2000, ROUNDS = 30, MOVES = 400 };
	char errstr[256];
	uint64_t rng = 11;
	struct batch b;
	(void)state;

	batch_build(&b, ITEMS, DIM, 1, 3);
	for (int rule = 0; rule < 2; rule++) {
		enum ivf_assign assign = rule ? IVF_ASSIGN_NORMALISED_IP : IVF_ASSIGN_AUGMENTED_L2;
		struct ivf *ivf = index_new(DIM, 30, 1, 10, assign);
		uint32_t *start = malloc(ITEMS * sizeof *start), moved[MOVES];
		size_t crossed = 0, updates = 0;
		assert_non_null(start);
		assert_int_equal(ivf_build(ivf, b.rows, ITEMS, DIM, errstr, sizeof errstr), 0);
		for (uint32_t i = 0; i < ITEMS; i++)
			start[i] = (uint32_t)ivf_item_cell(ivf, i);
		for (size_t round = 0; round < ROUNDS; round++) {
			for (size_t m = 0; m < MOVES; m++) {
				/* distinct items in a round, as the model passes them */
				moved[m] = (uint32_t)((round * 7919 + m * 13) % ITEMS);
				float step = rng_below(&rng, 50) == 0 ? 1.0f : 0.02f;
				for (size_t d = 0; d < DIM; d++)
					b.rows[(size_t)moved[m] * DIM + d] +=
					    step * (float)rng_gauss(&rng);
			}
			if (round % 2 == 0) {
				assert_int_equal(ivf_update_items(ivf, moved, MOVES, b.rows, DIM,
								  errstr, sizeof errstr),
						 0);
			} else {
				for (size_t m = 0; m < MOVES; m++)
					assert_int_equal(
					    ivf_update_item(ivf, moved[m],
							    b.rows + (size_t)moved[m] * DIM,
							    errstr, sizeof errstr),
					    0);
			}
			updates += MOVES;
			assert_cells_as_scored(ivf, b.rows, ITEMS, DIM);
		}
		for (uint32_t i = 0; i < ITEMS; i++)
			crossed += ivf_item_cell(ivf, i) != start[i];
		assert_cells_consistent(ivf);
		assert_true(ivf_kept_cells(ivf) > updates / 4);
		assert_true(ivf_kept_cells(ivf) < updates);
		assert_true(crossed > ITEMS / 20);
		free(start);
		ivf_free(ivf);
	}
	batch_free(&b);
}

/*
 * Past 4096 cells the index keeps no table of centroid distances (it would
 * hold nlist² floats): every update is scored, and items still land where
 * a scoring puts them.
 */
static void beyond_the_slack_table_every_update_is_scored(void **state)
{
	enum { DIM = 4, ITEMS = 4200, NLIST = 4100, MOVES = 300 };
	char errstr[256];
	uint64_t rng = 3;
	struct batch b;
	uint32_t moved[MOVES];
	(void)state;

	batch_build(&b, ITEMS, DIM, 1, 3);
	struct ivf *ivf = index_new(DIM, NLIST, 1, 10, IVF_ASSIGN_AUGMENTED_L2);
	assert_int_equal(ivf_build(ivf, b.rows, ITEMS, DIM, errstr, sizeof errstr), 0);
	assert_int_equal(ivf_nlist(ivf), NLIST);
	for (size_t m = 0; m < MOVES; m++) {
		moved[m] = (uint32_t)(m * 13);
		for (size_t d = 0; d < DIM; d++)
			b.rows[(size_t)moved[m] * DIM + d] += 0.001f * (float)rng_gauss(&rng);
	}
	assert_int_equal(ivf_update_items(ivf, moved, MOVES, b.rows, DIM, errstr, sizeof errstr), 0);
	assert_int_equal(ivf_update_item(ivf, moved[0], b.rows, errstr, sizeof errstr), 0);
	assert_int_equal(ivf_kept_cells(ivf), 0);
	assert_cells_as_scored(ivf, b.rows, ITEMS, DIM);
	ivf_free(ivf);
	batch_free(&b);
}

/*
 * A training aside (ivf_training_*): searches go on against the old cells
 * while it runs; once installed, with the rows moved since and the items
 * added since placed again, every item sits where a training in line on
 * the same snapshot followed by the same updates puts it, and full probing
 * equals the exact engine over the rows as they are now.
 */
static void a_training_aside_ends_where_one_in_line_does(void **state)
{
	enum { DIM = 8, ITEMS = 3000, MOVES = 700, NEW = 400, QUERIES = 16, K = 20 };
	char errstr[256];
	uint64_t rng = 11;
	struct batch b;
	(void)state;

	batch_build(&b, ITEMS + NEW, DIM, QUERIES, 21);
	for (int rule = 0; rule < 2; rule++) {
		enum ivf_assign assign = rule ? IVF_ASSIGN_NORMALISED_IP : IVF_ASSIGN_AUGMENTED_L2;
		struct ivf *aside = index_new(DIM, 0, QUERIES, K, assign);
		struct ivf *in_line = index_new(DIM, 0, QUERIES, K, assign);
		struct ivf_training *training = NULL;
		struct topk_result expected[QUERIES * K], got[QUERIES * K];
		size_t expected_counts[QUERIES], got_counts[QUERIES];
		float *rows = malloc((size_t)(ITEMS + NEW) * DIM * sizeof *rows);
		uint32_t *moved = malloc((MOVES + NEW) * sizeof *moved);
		assert_true(rows != NULL && moved != NULL);
		memcpy(rows, b.rows, (size_t)(ITEMS + NEW) * DIM * sizeof *rows);

		assert_int_equal(ivf_build(aside, rows, ITEMS, DIM, errstr, sizeof errstr), 0);
		assert_int_equal(ivf_build(in_line, rows, ITEMS, DIM, errstr, sizeof errstr), 0);
		assert_int_equal(ivf_training_start(aside, &training, errstr, sizeof errstr), 0);
		assert_int_equal(ivf_training_items(training), ITEMS);
		assert_int_equal(ivf_retrain(in_line, errstr, sizeof errstr), 0);
		/* while it trains: rows move and items arrive, in the old cells */
		for (size_t m = 0; m < MOVES; m++) {
			moved[m] = rng_below(&rng, ITEMS);
			for (size_t d = 0; d < DIM; d++)
				rows[(size_t)moved[m] * DIM + d] = rng_grid(&rng) * 3.0f;
		}
		for (size_t n = 0; n < NEW; n++)
			moved[MOVES + n] = (uint32_t)(ITEMS + n);
		assert_int_equal(
		    ivf_update_items(aside, moved, MOVES + NEW, rows, DIM, errstr, sizeof errstr), 0);
		exact_lists(&b, rows, K, expected, expected_counts);
		assert_int_equal(ivf_search(aside, b.eligible, b.queries, QUERIES, SIZE_MAX, K, got,
					    got_counts, errstr, sizeof errstr),
				 0);
		assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);

		while (!ivf_training_done(training))
			usleep(1000);
		assert_int_equal(ivf_training_finish(aside, training, errstr, sizeof errstr), 0);
		/* the new cells hold the snapshot: moved rows and new items again */
		assert_int_equal(ivf_item_count(aside), ITEMS);
		assert_int_equal(
		    ivf_update_items(aside, moved, MOVES + NEW, rows, DIM, errstr, sizeof errstr), 0);
		assert_int_equal(
		    ivf_update_items(in_line, moved, MOVES + NEW, rows, DIM, errstr, sizeof errstr),
		    0);
		assert_int_equal(ivf_item_count(aside), ITEMS + NEW);
		assert_int_equal(ivf_nlist(aside), ivf_nlist(in_line));
		for (uint32_t i = 0; i < ITEMS + NEW; i++)
			assert_int_equal(ivf_item_cell(aside, i), ivf_item_cell(in_line, i));
		assert_cells_consistent(aside);
		assert_int_equal(ivf_search(aside, b.eligible, b.queries, QUERIES, SIZE_MAX, K, got,
					    got_counts, errstr, sizeof errstr),
				 0);
		assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);

		/* one dropped unfinished installs nothing */
		assert_int_equal(ivf_training_start(aside, &training, errstr, sizeof errstr), 0);
		ivf_training_cancel(training);
		for (uint32_t i = 0; i < ITEMS + NEW; i++)
			assert_int_equal(ivf_item_cell(aside, i), ivf_item_cell(in_line, i));
		free(rows);
		free(moved);
		ivf_free(aside);
		ivf_free(in_line);
	}
	batch_free(&b);
}

/* A build split over threads (the training sample's assignments, then every
 * item's, in shares) gives the very cells and lists of a build on one. */
static void a_build_over_threads_gives_the_same_cells(void **state)
{
	enum { DIM = 8, ITEMS = 30000, QUERIES = 16, K = 20 };
	static const size_t counts[] = {2, 3, 7};
	char errstr[256];
	struct batch b;
	(void)state;

	batch_build(&b, ITEMS, DIM, QUERIES, 5);
	struct ivf *one = index_new(DIM, 0, QUERIES, K, IVF_ASSIGN_DEFAULT);
	struct topk_result expected[QUERIES * K], got[QUERIES * K];
	size_t expected_counts[QUERIES], got_counts[QUERIES];
	assert_int_equal(ivf_build(one, b.rows, ITEMS, DIM, errstr, sizeof errstr), 0);
	assert_int_equal(ivf_search(one, b.eligible, b.queries, QUERIES, 4, K, expected,
				    expected_counts, errstr, sizeof errstr),
			 0);
	for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
		struct ivf_config config = {DIM, 0, QUERIES, K, IVF_ASSIGN_DEFAULT, 7, 1, 0};
		config.build_threads = counts[c];
		struct ivf *split = ivf_new(&config, errstr, sizeof errstr);
		assert_non_null(split);
		assert_int_equal(ivf_build(split, b.rows, ITEMS, DIM, errstr, sizeof errstr), 0);
		assert_int_equal(ivf_nlist(split), ivf_nlist(one));
		for (uint32_t i = 0; i < ITEMS; i++)
			assert_int_equal(ivf_item_cell(split, i), ivf_item_cell(one, i));
		for (size_t cell = 0; cell < ivf_nlist(one); cell++)
			assert_int_equal(ivf_cell_size(split, cell), ivf_cell_size(one, cell));
		assert_cells_consistent(split);
		assert_int_equal(ivf_search(split, b.eligible, b.queries, QUERIES, 4, K, got,
					    got_counts, errstr, sizeof errstr),
				 0);
		assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
		ivf_free(split);
	}
	ivf_free(one);
	batch_free(&b);
}

static void recall_on_clustered_data(void **state)
{
	enum { DIM = 16, CLUSTERS = 50, ITEMS = 20000, QUERIES = 200, K = 20 };
	static const enum ivf_assign rules[] = {IVF_ASSIGN_AUGMENTED_L2,
						IVF_ASSIGN_NORMALISED_IP};
	size_t row_dim = DIM + 1;
	float *centres = malloc(CLUSTERS * DIM * sizeof(float));
	float *rows = malloc((size_t)ITEMS * row_dim * sizeof(float));
	float *vectors = malloc(QUERIES * row_dim * sizeof(float));
	struct topk_query topk_queries[QUERIES];
	struct ivf_query queries[QUERIES];
	struct topk_result *expected = malloc(QUERIES * K * sizeof *expected);
	struct topk_result *got = malloc(QUERIES * K * sizeof *got);
	size_t expected_counts[QUERIES], got_counts[QUERIES];
	char errstr[256];
	uint64_t rng = 3;
	(void)state;

	assert_true(centres && rows && vectors && expected && got);
	for (size_t i = 0; i < CLUSTERS * DIM; i++)
		centres[i] = (float)(rng_gauss(&rng) / sqrt(DIM));
	for (size_t i = 0; i < ITEMS; i++) {
		const float *centre = centres + rng_below(&rng, CLUSTERS) * DIM;
		for (size_t d = 0; d < DIM; d++)
			rows[i * row_dim + d] =
			    centre[d] + (float)(0.3 * rng_gauss(&rng) / sqrt(DIM));
		rows[i * row_dim + DIM] = (float)(0.2 * log(1.0 + rng_uniform(&rng) * 100.0));
	}
	for (size_t q = 0; q < QUERIES; q++) {
		const float *centre = centres + rng_below(&rng, CLUSTERS) * DIM;
		for (size_t d = 0; d < DIM; d++)
			vectors[q * row_dim + d] =
			    2.0f * centre[d] + (float)(0.5 * rng_gauss(&rng) / sqrt(DIM));
		vectors[q * row_dim + DIM] = 1.0f;
		topk_queries[q] = (struct topk_query){vectors + q * row_dim, NULL, 0, NULL, NULL, 0};
		queries[q] = (struct ivf_query){topk_queries[q], NULL, 0};
	}
	{
		struct topk_config config = {QUERIES, K, 0, 1};
		struct topk *topk = topk_new(&config, errstr, sizeof errstr);
		assert_non_null(topk);
		assert_int_equal(topk_run(topk, rows, ITEMS, row_dim, row_dim, NULL, topk_queries,
					  QUERIES, K, expected, expected_counts, errstr,
					  sizeof errstr),
				 0);
		topk_free(topk);
	}
	for (size_t r = 0; r < 2; r++) {
		struct ivf *ivf = index_new(row_dim, 0, QUERIES, K, rules[r]);
		size_t hits = 0, total = 0, nprobe;

		assert_int_equal(ivf_build(ivf, rows, ITEMS, row_dim, errstr, sizeof errstr), 0);
		nprobe = (ivf_nlist(ivf) + 9) / 10;
		assert_int_equal(ivf_search(ivf, NULL, queries, QUERIES, nprobe, K, got,
					    got_counts, errstr, sizeof errstr),
				 0);
		for (size_t q = 0; q < QUERIES; q++) {
			for (size_t e = 0; e < expected_counts[q]; e++) {
				total++;
				for (size_t g = 0; g < got_counts[q]; g++)
					if (got[q * K + g].item == expected[q * K + e].item) {
						hits++;
						break;
					}
			}
		}
		print_message("rule %zu: nlist %zu nprobe %zu recall@20 %.4f, %.0f candidates "
			      "per query\n",
			      r, ivf_nlist(ivf), nprobe, (double)hits / (double)total,
			      (double)ivf_last_candidates(ivf) / QUERIES);
		assert_true((double)hits >= 0.95 * (double)total);
		ivf_free(ivf);
	}
	free(centres);
	free(rows);
	free(vectors);
	free(expected);
	free(got);
}

/*
 * A query skips the probed cells whose bounds put every row below its
 * list's last score, alone or in a batch sharing cells; on clustered grid
 * data (exact float products) with every cell probed, the lists must still
 * be the exact engine's, after
 * rows moved too (a cell's bounds only widen), and some cells must have
 * been skipped.
 */
static void skipped_cells_change_no_list(void **state)
{
	enum { DIM = 8, CLUSTERS = 40, ITEMS = 4000, QUERIES = 60, K = 10 };
	float *centres = malloc(CLUSTERS * DIM * sizeof(float));
	float *rows = malloc((size_t)ITEMS * DIM * sizeof(float));
	float vectors[QUERIES * DIM];
	uint32_t sparse_items[QUERIES][3];
	float sparse_scores[QUERIES][3];
	struct topk_query topk_queries[QUERIES];
	struct ivf_query queries[QUERIES];
	struct topk_result expected[QUERIES * K], got[QUERIES * K];
	size_t expected_counts[QUERIES], got_counts[QUERIES];
	char errstr[256];
	uint64_t rng = 17;
	(void)state;

	assert_true(centres && rows);
	for (size_t i = 0; i < CLUSTERS * DIM; i++)
		centres[i] = (float)((int)rng_below(&rng, 9) - 4) * 0.5f;
	for (size_t i = 0; i < ITEMS; i++) {
		const float *centre = centres + rng_below(&rng, CLUSTERS) * DIM;
		for (size_t d = 0; d < DIM; d++)
			rows[i * DIM + d] = centre[d] + (float)((int)rng_below(&rng, 3) - 1) * 0.125f;
	}
	for (size_t q = 0; q < QUERIES; q++) {
		const float *centre = centres + rng_below(&rng, CLUSTERS) * DIM;
		for (size_t d = 0; d < DIM; d++)
			vectors[q * DIM + d] = centre[d] + (float)((int)rng_below(&rng, 3) - 1) * 0.25f;
		for (size_t s = 0; s < 3; s++) { /* sorted and distinct, as the model's */
			sparse_items[q][s] = (uint32_t)(s * (ITEMS / 3) + rng_below(&rng, ITEMS / 3));
			sparse_scores[q][s] = (float)rng_below(&rng, 9) * 0.5f;
		}
		topk_queries[q] = (struct topk_query){vectors + q * DIM, NULL, 0, sparse_items[q],
						      sparse_scores[q], 3};
		queries[q] = (struct ivf_query){topk_queries[q], NULL, 0};
	}
	struct ivf *ivf = index_new(DIM, 0, QUERIES, K, IVF_ASSIGN_NORMALISED_IP);
	assert_int_equal(ivf_build(ivf, rows, ITEMS, DIM, errstr, sizeof errstr), 0);
	for (int round = 0; round < 2; round++) {
		struct batch exact = {.item_count = ITEMS,
				      .dim = DIM,
				      .query_count = QUERIES,
				      .topk_queries = topk_queries};
		exact_lists(&exact, rows, K, expected, expected_counts);
		for (size_t q = 0; q < QUERIES; q++)
			assert_int_equal(ivf_search(ivf, NULL, &queries[q], 1, SIZE_MAX, K,
						    got + q * K, &got_counts[q], errstr,
						    sizeof errstr),
					 0);
		assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
		/* the whole batch at once: every cell is shared by all the queries
		 * (one product for them), and the bound still drops the queries a
		 * cell cannot serve (a daemon's round scanned them all before) */
		uint64_t skipped_alone = ivf_skipped_cells(ivf);
		assert_int_equal(ivf_search(ivf, NULL, queries, QUERIES, SIZE_MAX, K, got,
					    got_counts, errstr, sizeof errstr),
				 0);
		assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
		assert_true(ivf_skipped_cells(ivf) > skipped_alone);
		/* rows move within and across clusters; the index keeps its cells */
		for (size_t i = 0; i < ITEMS; i += 7) {
			const float *centre = centres + rng_below(&rng, CLUSTERS) * DIM;
			for (size_t d = 0; d < DIM; d++)
				rows[i * DIM + d] = round == 0 && i % 2 ? centre[d]
									: rows[i * DIM + d] + 0.125f;
			assert_int_equal(
			    ivf_update_item(ivf, (uint32_t)i, rows + i * DIM, errstr, sizeof errstr), 0);
		}
	}
	print_message("skipped %llu of %zu probed cells\n",
		      (unsigned long long)ivf_skipped_cells(ivf), 4 * QUERIES * ivf_nlist(ivf));
	assert_true(ivf_skipped_cells(ivf) > 0);
	ivf_free(ivf);
	free(centres);
	free(rows);
}

/*
 * A cell larger than a tile is scored tile by tile, each tile only for the
 * queries whose list it may enter: learned rows are skewed (at 1M items one
 * cell held a quarter of the items), and a training lays a cell's rows out
 * in decreasing inner product with its mean, so most of a large cell's
 * tiles lie below a list's bar. Two cells over 6,000 grid rows (exact float
 * products) whose last column spreads like a popularity bias: the lists,
 * alone and in one batch, are the exact engine's with every cell probed,
 * after rows moved too, and tiles were passed over. Rows that rise to the
 * top of the column from anywhere widen every tile's box; once a cell's
 * changes reach a quarter of its rows it is laid out again with exact
 * boxes, so tiles are passed over again after such moves.
 */
static void large_cells_are_scanned_by_tile(void **state)
{
	enum { DIM = 8, ITEMS = 6000, QUERIES = 40, K = 10 };
	float *rows = malloc((size_t)ITEMS * DIM * sizeof(float));
	float vectors[QUERIES * DIM];
	uint32_t sparse_items[QUERIES][2];
	float sparse_scores[QUERIES][2];
	struct topk_query topk_queries[QUERIES];
	struct ivf_query queries[QUERIES];
	struct topk_result expected[QUERIES * K], got[QUERIES * K];
	size_t expected_counts[QUERIES], got_counts[QUERIES];
	char errstr[256];
	uint64_t rng = 29;
	(void)state;

	assert_non_null(rows);
	for (size_t i = 0; i < ITEMS; i++) {
		for (size_t d = 0; d + 1 < DIM; d++)
			rows[i * DIM + d] = (float)((int)rng_below(&rng, 5) - 2) * 0.125f;
		rows[i * DIM + DIM - 1] = (float)rng_below(&rng, 64) * 0.25f; /* 0 to 15.75 */
	}
	for (size_t q = 0; q < QUERIES; q++) {
		for (size_t d = 0; d + 1 < DIM; d++)
			vectors[q * DIM + d] = (float)((int)rng_below(&rng, 9) - 4) * 0.25f;
		vectors[q * DIM + DIM - 1] = 1.0f; /* the bias column, as the model's queries */
		for (size_t s = 0; s < 2; s++) {
			sparse_items[q][s] = (uint32_t)(s * (ITEMS / 2) + rng_below(&rng, ITEMS / 2));
			sparse_scores[q][s] = (float)rng_below(&rng, 5) * 0.5f;
		}
		topk_queries[q] = (struct topk_query){vectors + q * DIM, NULL, 0, sparse_items[q],
						      sparse_scores[q], 2};
		queries[q] = (struct ivf_query){topk_queries[q], NULL, 0};
	}
	struct ivf *ivf = index_new(DIM, 2, QUERIES, K, IVF_ASSIGN_NORMALISED_IP);
	assert_int_equal(ivf_build(ivf, rows, ITEMS, DIM, errstr, sizeof errstr), 0);
	assert_true(ivf_cell_size(ivf, 0) > IVF_TILE_ITEMS || ivf_cell_size(ivf, 1) > IVF_TILE_ITEMS);
	for (int round = 0; round < 3; round++) {
		struct batch exact = {.item_count = ITEMS,
				      .dim = DIM,
				      .query_count = QUERIES,
				      .topk_queries = topk_queries};
		uint64_t skipped_before = ivf_skipped_tiles(ivf);
		exact_lists(&exact, rows, K, expected, expected_counts);
		for (size_t q = 0; q < QUERIES; q++)
			assert_int_equal(ivf_search(ivf, NULL, &queries[q], 1, SIZE_MAX, K,
						    got + q * K, &got_counts[q], errstr,
						    sizeof errstr),
					 0);
		assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
		assert_int_equal(ivf_search(ivf, NULL, queries, QUERIES, SIZE_MAX, K, got,
					    got_counts, errstr, sizeof errstr),
				 0);
		assert_same_lists(expected, expected_counts, got, got_counts, QUERIES, K);
		print_message("round %d: passed over %llu tiles\n", round,
			      (unsigned long long)(ivf_skipped_tiles(ivf) - skipped_before));
		assert_true(ivf_skipped_tiles(ivf) > skipped_before);
		/* rows move: some from anywhere to the top of the bias column,
		 * others a step, in every tile; then every row is stored again
		 * as it is (learning's steps are often that small) */
		for (size_t i = (size_t)round; i < ITEMS; i += 2) {
			rows[i * DIM + DIM - 1] = i % 7 == 0 ? 15.75f : rows[i * DIM + DIM - 1] + 0.25f;
			assert_int_equal(
			    ivf_update_item(ivf, (uint32_t)i, rows + i * DIM, errstr, sizeof errstr), 0);
		}
		for (size_t i = 0; i < ITEMS; i++)
			assert_int_equal(
			    ivf_update_item(ivf, (uint32_t)i, rows + i * DIM, errstr, sizeof errstr), 0);
	}
	ivf_free(ivf);
	free(rows);
}

/* Each query alone over every cell, against the exact engine; adds the
 * rows the index read and the candidates it scored to *read, *scored. */
static void assert_lone_queries_exact(struct ivf *ivf, const float *rows, size_t items,
				      size_t dim, struct topk_query *topk_queries,
				      struct ivf_query *queries, size_t query_count, size_t k,
				      size_t *read, size_t *scored)
{
	struct batch exact = {
	    .item_count = items, .dim = dim, .query_count = query_count, .topk_queries = topk_queries};
	struct topk_result *expected = malloc(query_count * k * sizeof *expected);
	struct topk_result *got = malloc(query_count * k * sizeof *got);
	size_t *expected_counts = malloc(query_count * sizeof *expected_counts);
	size_t *got_counts = malloc(query_count * sizeof *got_counts);
	char errstr[256];

	assert_true(expected && got && expected_counts && got_counts);
	exact_lists(&exact, rows, k, expected, expected_counts);
	for (size_t q = 0; q < query_count; q++) {
		assert_int_equal(ivf_search(ivf, NULL, &queries[q], 1, SIZE_MAX, k, got + q * k,
					    &got_counts[q], errstr, sizeof errstr),
				 0);
		*read += ivf_last_rows_read(ivf);
		*scored += ivf_last_candidates(ivf);
	}
	assert_same_lists(expected, expected_counts, got, got_counts, query_count, k);
	free(expected);
	free(got);
	free(expected_counts);
	free(got_counts);
}

/*
 * A lone query whose list is full reads a cell through its rows' 8-bit
 * codes (model/rowcodes.h), coded about the cell's mean, and reads a row
 * only when its bound reaches the list's bar. Clustered grid rows (exact
 * float products) far from the origin, as learned rows share a mean (codes
 * of the rows themselves would be coarse there), and queries whose sparse
 * items fill their lists before any cell is scanned: with every cell probed,
 * each query alone gets the exact engine's list while reading under a
 * fifth of the rows it scans; and still after rows moved within and across
 * cells (a swap-remove moves a code), and after a retraining (new means,
 * every row coded again).
 */
static void coded_scans_change_no_list(void **state)
{
	enum { DIM = 8, CLUSTERS = 30, ITEMS = 6000, QUERIES = 40, K = 10, SPARSE = 12 };
	float *centres = malloc(CLUSTERS * DIM * sizeof(float));
	float *rows = malloc((size_t)ITEMS * DIM * sizeof(float));
	float vectors[QUERIES * DIM];
	uint32_t sparse_items[QUERIES][SPARSE];
	float sparse_scores[QUERIES][SPARSE];
	struct topk_query topk_queries[QUERIES];
	struct ivf_query queries[QUERIES];
	char errstr[256];
	uint64_t rng = 41;
	(void)state;

	assert_true(centres && rows);
	for (size_t i = 0; i < CLUSTERS * DIM; i++)
		centres[i] = 16.0f + (float)((int)rng_below(&rng, 9) - 4) * 0.5f;
	for (size_t i = 0; i < ITEMS; i++) {
		const float *centre = centres + rng_below(&rng, CLUSTERS) * DIM;
		for (size_t d = 0; d < DIM; d++)
			rows[i * DIM + d] =
			    centre[d] + (float)((int)rng_below(&rng, 33) - 16) * 0x1p-6f;
	}
	for (size_t q = 0; q < QUERIES; q++) {
		for (size_t d = 0; d < DIM; d++)
			vectors[q * DIM + d] = (float)((int)rng_below(&rng, 13) - 6) * 0.25f;
		for (size_t s = 0; s < SPARSE; s++) {
			sparse_items[q][s] =
			    (uint32_t)(s * (ITEMS / SPARSE) + rng_below(&rng, ITEMS / SPARSE));
			sparse_scores[q][s] = (float)rng_below(&rng, 9) * 0.5f;
		}
		topk_queries[q] = (struct topk_query){vectors + q * DIM, NULL, 0, sparse_items[q],
						      sparse_scores[q], SPARSE};
		queries[q] = (struct ivf_query){topk_queries[q], NULL, 0};
	}
	struct ivf *ivf = index_new(DIM, 0, QUERIES, K, IVF_ASSIGN_NORMALISED_IP);
	assert_int_equal(ivf_build(ivf, rows, ITEMS, DIM, errstr, sizeof errstr), 0);
	for (int round = 0; round < 3; round++) {
		size_t read = 0, scored = 0;
		assert_lone_queries_exact(ivf, rows, ITEMS, DIM, topk_queries, queries, QUERIES, K,
					  &read, &scored);
		print_message("round %d: read %zu of %zu candidates\n", round, read, scored);
		assert_true(read * 5 < scored);
		if (round == 1) {
			assert_int_equal(ivf_retrain(ivf, errstr, sizeof errstr), 0);
			continue;
		}
		/* a third of the rows jump to another cluster, the rest step */
		for (size_t i = 0; i < ITEMS; i += 2) {
			const float *centre = centres + rng_below(&rng, CLUSTERS) * DIM;
			for (size_t d = 0; d < DIM; d++)
				rows[i * DIM + d] = i % 3 == 0 ? centre[d]
							       : rows[i * DIM + d] + 0.125f;
			assert_int_equal(
			    ivf_update_item(ivf, (uint32_t)i, rows + i * DIM, errstr, sizeof errstr), 0);
		}
	}
	ivf_free(ivf);
	free(centres);
	free(rows);
}

static void empty_and_errors(void **state)
{
	enum { DIM = 4, K = 5 };
	float row[DIM] = {1, 0, 0, 0};
	struct ivf_query query = {{row, NULL, 0, NULL, NULL, 0}, NULL, 0};
	uint32_t unsorted[2] = {3, 1};
	struct topk_result got[2 * K];
	size_t counts[2] = {9, 9};
	char errstr[256];
	struct ivf *ivf = index_new(DIM, 0, 1, K, IVF_ASSIGN_DEFAULT);
	struct ivf_config bad = {0, 0, 1, 1, IVF_ASSIGN_DEFAULT, 0, 0, 0};
	(void)state;

	assert_null(ivf_new(&bad, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "dim"));
	bad = (struct ivf_config){4, 0, 1, 0, IVF_ASSIGN_DEFAULT, 0, 0, 0};
	assert_null(ivf_new(&bad, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "max_k"));
	bad = (struct ivf_config){4, 0, 1, 1, IVF_ASSIGN_DEFAULT, 0, 0, 0};
	bad.build_threads = IVF_MAX_BUILD_THREADS + 1;
	assert_null(ivf_new(&bad, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "build_threads"));

	/* An empty index gives empty lists; appends fill it. */
	assert_int_equal(ivf_search(ivf, NULL, &query, 1, 1, K, got, counts, errstr,
				    sizeof errstr),
			 0);
	assert_int_equal(counts[0], 0);
	assert_int_equal(ivf_build(ivf, NULL, 0, DIM, errstr, sizeof errstr), 0);
	for (uint32_t i = 0; i < 3; i++) {
		row[0] = (float)i;
		assert_int_equal(ivf_update_item(ivf, i, row, errstr, sizeof errstr), 0);
	}
	assert_true(ivf_needs_retrain(ivf));
	assert_int_equal(ivf_retrain(ivf, errstr, sizeof errstr), 0);
	row[0] = 1.0f;
	assert_int_equal(ivf_search(ivf, NULL, &query, 1, SIZE_MAX, K, got, counts, errstr,
				    sizeof errstr),
			 0);
	assert_int_equal(counts[0], 3);
	assert_int_equal(got[0].item, 2);

	assert_int_equal(ivf_search(ivf, NULL, &query, 2, 1, K, got, counts, errstr,
				    sizeof errstr),
			 -1);
	assert_non_null(strstr(errstr, "max_batch"));
	assert_int_equal(ivf_search(ivf, NULL, &query, 1, 1, K + 1, got, counts, errstr,
				    sizeof errstr),
			 -1);
	assert_non_null(strstr(errstr, "max_k"));
	query.base.exclude = unsorted;
	query.base.exclude_count = 2;
	assert_int_equal(ivf_search(ivf, NULL, &query, 1, 1, K, got, counts, errstr,
				    sizeof errstr),
			 -1);
	assert_non_null(strstr(errstr, "not sorted"));
	query.base.exclude = NULL;
	query.base.exclude_count = 0;
	query.extra_count = 1;
	assert_int_equal(ivf_search(ivf, NULL, &query, 1, 1, K, got, counts, errstr,
				    sizeof errstr),
			 -1);
	assert_non_null(strstr(errstr, "extra_items"));
	assert_int_equal(ivf_update_item(ivf, 0, NULL, errstr, sizeof errstr), -1);
	ivf_free(ivf);
	ivf_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(full_probe_equals_exact_engine),
	    cmocka_unit_test(partial_probe_honours_filters),
	    cmocka_unit_test(moved_items_are_found_in_their_new_cell),
	    cmocka_unit_test(batched_updates_place_rows_as_single_ones),
	    cmocka_unit_test(small_moves_keep_cells_unscored_where_scoring_would),
	    cmocka_unit_test(beyond_the_slack_table_every_update_is_scored),
	    cmocka_unit_test(a_training_aside_ends_where_one_in_line_does),
	    cmocka_unit_test(a_build_over_threads_gives_the_same_cells),
	    cmocka_unit_test(recall_on_clustered_data),
	    cmocka_unit_test(skipped_cells_change_no_list),
	    cmocka_unit_test(large_cells_are_scanned_by_tile),
	    cmocka_unit_test(coded_scans_change_no_list),
	    cmocka_unit_test(empty_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
