/*
 * ivf: the inverted-file candidate index (see ivf.h for the contract).
 *
 * Training: pick a random sample, run Lloyd's iterations on it with every
 * assignment from one sgemm per block of rows (argmax of x'.c + bias_c, which
 * is nearest-centroid for the augmented rule and largest cosine for the
 * normalised one), then assign every item the same way and lay the cells
 * out. A training builds a whole new layout and swaps it in only when it
 * succeeded, so a failure leaves the index as it was.
 *
 * Search: one sgemm scores the batch against the centroids; each query keeps
 * its nprobe best non-empty cells; the probes are inverted into one user list
 * per cell, and each probed cell is scored against the queries of its users
 * with one sgemm per IVF_TILE_ITEMS rows, so a popular cell is read once per
 * batch, not once per user; a cell few users probe is scanned per user
 * through its rows' 8-bit codes once the user's list is full (scan_coded(),
 * model/rowcodes.h), else with one sgemv. A query's sparse and extra items
 * (its "special" items) are scored apart, once each, with their sparse scores added in the
 * caller's order as topk does; the cell scan skips them. Each query's best k
 * live in a bounded min-heap of keys that order results the way topk does.
 */
#include "ivf.h"
#include "argmax.h"
#include "blas.h"
#include "resultheap.h"
#include "rowcodes.h"

#include "grow.h"
#include "rng.h"
#include "sorted.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Cell scores are tested against a query's bar SKIP_BLOCK at a time, then
 * SCAN_BLOCK at a time (as in topk.c: branch-free, so it vectorises). */
#define SKIP_BLOCK 64
#define SCAN_BLOCK 16

/*
 * Fewest users of a cell scored by one sgemm; fewer go one sgemv each (a
 * cell of 1000 rows of 33 floats, not in cache). With OpenBLAS's
 * small-matrix path (blas_small_gemm_path(), Cooperlake measured): one user
 * 9.6 us, the next users of the same cell 3.5 us each (the rows are in
 * cache then), while one sgemm for 2 users took 27 us (it leaves that path),
 * for 8 users 32 us. Without it (Zen measured) sgemm packs the cell first:
 * one user 21 us against 12 us with sgemv, 4 users 24 us against 30 us,
 * 8 users 26 us against 51 us. One user was an sgemm of one row before;
 * on Zen that packing took 30% of an offline replay (replay 1.42x faster
 * with sgemv).
 */
#define CELL_SHARED_MIN_USERS_SMALL_PATH 8
#define CELL_SHARED_MIN_USERS_PACKED     4

/*
 * Most cells for which an update may keep its cell unscored (item_slack()):
 * its table of centroid distances has nlist² floats, 64 MiB at 4096 cells
 * (an automatic nlist reaches that at 16M items). Above it every update is
 * scored, as without the table.
 */
#define SLACK_MAX_NLIST 4096

/* Rows per sgemm when assigning items to cells in training. */
#define ASSIGN_BLOCK 256

/* One cell: its items and a copy of their rows, slot s holding items[s].
 * Each tile of IVF_TILE_ITEMS slots has a box of its own (tile_low/high,
 * tiles × dim), as the cell has: a training lays a cell's rows out in
 * decreasing inner product with its mean, so a large cell's tiles hold
 * rows alike and a list's bar can pass over most of them (scan_cell()). */
struct ivf_cell {
	uint32_t *items;
	float *rows; /* capacity × dim */
	/* the rows' 8-bit codes (rowcodes.h) and their scales, whole blocks;
	 * a lone user's scan reads these, and a row only when its bound
	 * reaches the list's bar (scan_coded()) */
	int8_t *codes;
	float *scales;
	float *tile_low, *tile_high;
	/* and a ball: its centre (tiles × dim) and a radius no row is farther
	 * than (tiles; negative while the tile is empty) */
	float *tile_centre, *tile_radius;
	size_t count;
	size_t capacity;
	size_t changes; /* rows stored, added or moved since its boxes were made exact */
};

/* Tiles of a cell of `slots` slots. */
static size_t tiles_of(size_t slots)
{
	return (slots + IVF_TILE_ITEMS - 1) / IVF_TILE_ITEMS;
}

/* Everything a training produces, swapped into the index as one. */
struct layout {
	size_t nlist;
	float *assign_centroids; /* nlist × aug_dim: what items are assigned by */
	float *assign_bias;      /* nlist */
	float *probe_centroids;  /* nlist × dim: what queries probe by */
	float *probe_bias;       /* nlist */
	float max_norm_sq;       /* M^2 of the augmented rule */
	struct ivf_cell *cells;  /* nlist */
	float *box_low;          /* nlist × dim: per cell, a lower bound of each column */
	float *box_high;         /* nlist × dim: and an upper bound (see cell_bound()) */
	uint32_t *cell_of;       /* item_capacity: item's cell */
	uint32_t *slot_of;       /* item_capacity: item's slot in its cell */
	float *slack;            /* item_capacity: how far item may move and keep its cell */
	float *inverse_gap;      /* nlist × nlist: 1 / |assign centroid b - c| (0 when equal);
				  * NULL above SLACK_MAX_NLIST cells */
	float *assign_scores;    /* nlist, ivf_assign_cell()'s scratch */
	size_t item_count;
	size_t item_capacity;
};

/* A query's sparse or extra candidate; `order` is its place in the caller's
 * lists (sparse first), so sorting by (item, order) keeps repeats in the
 * caller's order. */
struct special {
	uint32_t item;
	uint32_t order;
};

struct ivf {
	size_t dim;
	size_t aug_dim; /* dim + 1 */
	size_t config_nlist;
	size_t max_batch;
	size_t max_k;
	enum ivf_assign assign;
	uint64_t seed;
	int threads;
	size_t build_threads;    /* ivf_config's, at least 1 */
	size_t shared_min_users; /* CELL_SHARED_MIN_USERS_*, by the kernel in use */

	struct layout layout;
	size_t trained_items;
	uint64_t kept_cells; /* updates that kept their cell unscored (kept_in_cell()) */

	float *aug_vector;       /* aug_dim, ivf_assign_cell()'s scratch */
	struct ivf_scratch *own; /* ivf_search()'s */
	/* ivf_update_items()'s scratch, kept: a round's upkeep allocating
	 * megabytes afresh had the kernel clear their pages every round */
	float *update_rows, *update_scores; /* IVF_UPDATE_CHUNK x aug_dim, x nlist */
	uint32_t *update_scored;            /* IVF_UPDATE_CHUNK */
	size_t update_scores_capacity;      /* floats */
};

/* One searcher's scratch (see ivf.h, Memory and Threads), sized for an
 * index's dim, max_batch and max_k at its first search. */
struct ivf_scratch {
	size_t dim, max_batch, max_k;
	float *packed;      /* max_batch × dim, the batch's query vectors */
	float *margins;     /* max_batch: rowcodes_margin() of each (NaN: scan floats) */
	float *gathered;    /* max_batch × dim, the queries of one cell's users */
	float *tile;        /* max_batch × IVF_TILE_ITEMS */
	uint32_t *passing;  /* IVF_TILE_ITEMS: scan_coded()'s slots whose bound reaches the bar */
	float *cell_scores; /* max_batch × nlist */
	size_t cell_scores_capacity;
	uint64_t *heaps;     /* max_batch × max_k */
	size_t *heap_counts; /* max_batch */
	uint32_t *probes;    /* max_batch × probes per query */
	size_t probes_capacity;
	size_t *cell_offsets; /* nlist + 1: each cell's users in cell_users */
	size_t cell_offsets_capacity;
	uint32_t *cell_users;
	size_t cell_users_capacity;
	struct special *specials; /* the batch's, query q's at special_offsets[q] */
	size_t specials_capacity;
	struct special *merged_specials; /* collect_specials()'s merge scratch */
	size_t merged_specials_capacity;
	const float **special_rows; /* score_specials()'s: one query's special rows */
	size_t special_rows_capacity;
	uint32_t *special_items; /* distinct, sorted, same offsets */
	size_t special_items_capacity;
	size_t *special_offsets; /* max_batch + 1 */
	size_t *special_counts;  /* max_batch: distinct items of query q */
	uint64_t *probe_heap;    /* one query's best cells while they are chosen */
	size_t probe_heap_capacity;
	uint32_t *tile_users; /* max_batch: scan_cell()'s users of one tile */
	size_t last_candidates, last_rows_read;
	uint64_t skipped_cells, skipped_tiles;
};

/* ---- small helpers --------------------------------------------------------------- */

/* Keeps key if the heap has room or it beats the root. Candidates arrive in
 * no particular order, so the whole key decides, not the score alone. */
static void heap_offer(uint64_t *heap, size_t *count, size_t k, uint64_t key)
{
	if (*count < k) {
		heap_push(heap, count, key);
	} else if (key > heap[0]) {
		heap[0] = key;
		heap_sift_down(heap, k, 0);
	}
}

/* a . b over n floats, in DOT_LANES independent sums so that it vectorises
 * (cblas_sdot's call costs more than the 33 products of a model row). */
#define DOT_LANES 8
static float dot(const float *a, const float *b, size_t n)
{
	float lanes[DOT_LANES] = {0};
	float sum = 0.0f;
	size_t j = 0;

	for (; j + DOT_LANES <= n; j += DOT_LANES)
		for (size_t l = 0; l < DOT_LANES; l++)
			lanes[l] += a[j + l] * b[j + l];
	for (; j < n; j++)
		sum += a[j] * b[j];
	for (size_t l = 0; l < DOT_LANES; l++)
		sum += lanes[l];
	return sum;
}

static bool sorted_contains(const uint32_t *sorted, size_t count, uint32_t item)
{
	return sorted_find(sorted, count, item) != SIZE_MAX;
}

/* ---- layouts: cells and centroids ------------------------------------------------ */

static void layout_free(struct layout *layout)
{
	if (layout->cells != NULL) {
		for (size_t c = 0; c < layout->nlist; c++) {
			free(layout->cells[c].items);
			free(layout->cells[c].rows);
			free(layout->cells[c].codes);
			free(layout->cells[c].scales);
			free(layout->cells[c].tile_low);
			free(layout->cells[c].tile_high);
			free(layout->cells[c].tile_centre);
			free(layout->cells[c].tile_radius);
		}
	}
	free(layout->cells);
	free(layout->assign_centroids);
	free(layout->assign_bias);
	free(layout->probe_centroids);
	free(layout->probe_bias);
	free(layout->box_low);
	free(layout->box_high);
	free(layout->cell_of);
	free(layout->slot_of);
	free(layout->slack);
	free(layout->inverse_gap);
	free(layout->assign_scores);
	memset(layout, 0, sizeof *layout);
}

/* Allocates a layout of nlist zeroed centroids and empty cells, with room
 * for item_capacity items. */
static int layout_alloc(struct layout *layout, size_t nlist, size_t dim, size_t item_capacity)
{
	size_t aug_dim = dim + 1;

	memset(layout, 0, sizeof *layout);
	layout->nlist = nlist;
	if (item_capacity == 0)
		item_capacity = 1;
	layout->item_capacity = item_capacity;
	layout->cells = calloc(nlist, sizeof *layout->cells);
	layout->assign_centroids = calloc(nlist * aug_dim, sizeof(float));
	layout->assign_bias = calloc(nlist, sizeof(float));
	layout->probe_centroids = calloc(nlist * dim, sizeof(float));
	layout->probe_bias = calloc(nlist, sizeof(float));
	layout->box_low = malloc(nlist * dim * sizeof(float));
	layout->box_high = malloc(nlist * dim * sizeof(float));
	layout->cell_of = malloc(item_capacity * sizeof(uint32_t));
	layout->slot_of = malloc(item_capacity * sizeof(uint32_t));
	layout->slack = calloc(item_capacity, sizeof(float));
	if (nlist <= SLACK_MAX_NLIST)
		layout->inverse_gap = calloc(nlist * nlist, sizeof(float));
	layout->assign_scores = malloc(nlist * sizeof(float));
	if (layout->assign_scores == NULL || layout->cells == NULL || layout->slack == NULL ||
	    (nlist <= SLACK_MAX_NLIST && layout->inverse_gap == NULL) ||
	    layout->assign_centroids == NULL || layout->assign_bias == NULL ||
	    layout->probe_centroids == NULL || layout->probe_bias == NULL ||
	    layout->cell_of == NULL || layout->slot_of == NULL || layout->box_low == NULL ||
	    layout->box_high == NULL) {
		layout_free(layout);
		return -1;
	}
	for (size_t j = 0; j < nlist * dim; j++) {
		layout->box_low[j] = INFINITY;
		layout->box_high[j] = -INFINITY;
	}
	return 0;
}

static int cell_reserve(struct ivf_cell *cell, size_t needed, size_t dim)
{
	size_t capacity, tiles;
	uint32_t *items;
	float *rows, *low, *high, *centre, *radius;

	if (needed <= cell->capacity)
		return 0;
	capacity = cell->capacity ? cell->capacity * 2 : 8;
	if (capacity < needed)
		capacity = needed;
	items = realloc(cell->items, capacity * sizeof *items);
	if (items == NULL)
		return -1;
	cell->items = items;
	rows = realloc(cell->rows, capacity * dim * sizeof *rows);
	if (rows == NULL)
		return -1;
	cell->rows = rows;
	if (rowcodes_slots(capacity) > rowcodes_slots(cell->capacity)) {
		size_t had = rowcodes_slots(cell->capacity), slots = rowcodes_slots(capacity);
		int8_t *codes = realloc(cell->codes, rowcodes_bytes(capacity, dim));
		if (codes == NULL)
			return -1;
		cell->codes = codes;
		float *scales = realloc(cell->scales, slots * sizeof *scales);
		if (scales == NULL)
			return -1;
		cell->scales = scales;
		/* the last block's unused lanes are read (never used): zeroed */
		memset(codes + had * dim, 0, (slots - had) * dim);
		memset(scales + had, 0, (slots - had) * sizeof *scales);
	}
	tiles = tiles_of(capacity);
	if (tiles > tiles_of(cell->capacity)) {
		low = realloc(cell->tile_low, tiles * dim * sizeof *low);
		if (low == NULL)
			return -1;
		cell->tile_low = low;
		high = realloc(cell->tile_high, tiles * dim * sizeof *high);
		if (high == NULL)
			return -1;
		cell->tile_high = high;
		centre = realloc(cell->tile_centre, tiles * dim * sizeof *centre);
		if (centre == NULL)
			return -1;
		cell->tile_centre = centre;
		radius = realloc(cell->tile_radius, tiles * sizeof *radius);
		if (radius == NULL)
			return -1;
		cell->tile_radius = radius;
		for (size_t j = tiles_of(cell->capacity) * dim; j < tiles * dim; j++) {
			low[j] = INFINITY;
			high[j] = -INFINITY;
		}
		for (size_t t = tiles_of(cell->capacity); t < tiles; t++)
			radius[t] = -1.0f;
	}
	cell->capacity = capacity;
	return 0;
}

/* Widens the box low/high (dim columns) to hold row (a NaN column leaves
 * it as it was: a NaN score is never a candidate). In WIDEN_LANES lanes
 * with no aliasing, so that it vectorises (minps/maxps keep the NaN rule):
 * every row learning moves passes here twice (its cell's box and its
 * tile's), and each relayout once per row; as a scalar loop it was a tenth
 * of the refresh workers' CPU at 1M items, 10k events/s (perf). */
#define WIDEN_LANES 8
static void widen(float *restrict low, float *restrict high, const float *restrict row,
		  size_t dim)
{
	size_t j = 0;

	for (; j + WIDEN_LANES <= dim; j += WIDEN_LANES)
		for (size_t l = 0; l < WIDEN_LANES; l++) {
			float r = row[j + l];
			low[j + l] = r < low[j + l] ? r : low[j + l];
			high[j + l] = r > high[j + l] ? r : high[j + l];
		}
	for (; j < dim; j++) {
		low[j] = row[j] < low[j] ? row[j] : low[j];
		high[j] = row[j] > high[j] ? row[j] : high[j];
	}
}

/* The squared distance from centre to row, in float over BALL_LANES lanes
 * (it vectorises: every row learning moves passes here), raised by 2^-16,
 * far more than its rounding (dim·2^-23 relative). */
#define BALL_LANES 8
static float distance_sq_above(const float *centre, const float *row, size_t dim)
{
	float lanes[BALL_LANES] = {0}, sum = 0.0f;
	size_t j = 0;

	for (; j + BALL_LANES <= dim; j += BALL_LANES)
		for (size_t l = 0; l < BALL_LANES; l++) {
			float d = row[j + l] - centre[j + l];
			lanes[l] += d * d;
		}
	for (; j < dim; j++) {
		float d = row[j] - centre[j];
		sum += d * d;
	}
	for (size_t l = 0; l < BALL_LANES; l++)
		sum += lanes[l];
	return sum * (1.0f + 0x1p-16f);
}

/* The least radius a ball keeps: squares below 2^-126 vanish in float. */
#define BALL_MIN_RADIUS 0x1p-60f

/* A radius past a squared distance from distance_sq_above(), whatever the
 * rounding of the square root (the bound reads it with a margin too). */
static float radius_past(float distance_sq)
{
	return sqrtf(distance_sq) * (1.0f + 0x1p-20f) + BALL_MIN_RADIUS;
}

/* Widens the ball centre/radius to hold row: an empty ball is centred on
 * it (a row with a NaN column is left out: a NaN score is never a
 * candidate, and a NaN centre makes the ball pass nothing over). Rows
 * mostly move within the ball: a square root only when it grows. */
static void ball_widen(float *centre, float *radius, const float *row, size_t dim)
{
	if (*radius < 0.0f) {
		memcpy(centre, row, dim * sizeof(float));
		*radius = BALL_MIN_RADIUS;
		return;
	}
	float distance_sq = distance_sq_above(centre, row, dim);
	if (distance_sq > *radius * *radius)
		*radius = radius_past(distance_sq);
}

/* Widens cell c's box, and the box and ball of the tile of its slot `slot`, to hold row. */
static void box_widen(struct layout *layout, size_t c, size_t slot, const float *row, size_t dim)
{
	struct ivf_cell *cell = &layout->cells[c];
	size_t tile = slot / IVF_TILE_ITEMS;

	widen(layout->box_low + c * dim, layout->box_high + c * dim, row, dim);
	widen(cell->tile_low + tile * dim, cell->tile_high + tile * dim, row, dim);
	ball_widen(cell->tile_centre + tile * dim, &cell->tile_radius[tile], row, dim);
	cell->changes++;
}

/* Appends item with its row to cell c (room must be reserved). */
static void cell_append(struct layout *layout, size_t c, uint32_t item, const float *row,
			size_t dim)
{
	struct ivf_cell *cell = &layout->cells[c];
	size_t slot = cell->count++;

	cell->items[slot] = item;
	memcpy(cell->rows + slot * dim, row, dim * sizeof(float));
	rowcodes_store(cell->codes, cell->scales, slot, row, layout->probe_centroids + c * dim, dim);
	box_widen(layout, c, slot, row, dim);
	layout->cell_of[item] = (uint32_t)c;
	layout->slot_of[item] = (uint32_t)slot;
}

/* Removes item from its cell in O(1): the cell's last item takes its slot. */
static void cell_remove(struct layout *layout, uint32_t item, size_t dim)
{
	struct ivf_cell *cell = &layout->cells[layout->cell_of[item]];
	size_t slot = layout->slot_of[item], last = cell->count - 1;

	if (slot != last) {
		uint32_t moved = cell->items[last];
		cell->items[slot] = moved;
		memcpy(cell->rows + slot * dim, cell->rows + last * dim, dim * sizeof(float));
		rowcodes_copy(cell->codes, cell->scales, slot, last, dim);
		layout->slot_of[moved] = (uint32_t)slot;
		box_widen(layout, layout->cell_of[item], slot, cell->rows + slot * dim, dim);
	}
	cell->count--;
}

/* Overwrites the row of an item that stays in its cell. */
static void store_row(struct layout *layout, uint32_t item, const float *vector, size_t dim)
{
	size_t c = layout->cell_of[item], slot = layout->slot_of[item];

	memcpy(layout->cells[c].rows + slot * dim, vector, dim * sizeof(float));
	rowcodes_store(layout->cells[c].codes, layout->cells[c].scales, slot, vector,
		       layout->probe_centroids + c * dim, dim);
	box_widen(layout, c, slot, vector, dim);
}

/* The augmented extra column of a row of squared norm norm_sq. */
static double augmented_extra(const struct ivf *ivf, float max_norm_sq, double norm_sq)
{
	return ivf->assign == IVF_ASSIGN_AUGMENTED_L2 && max_norm_sq > norm_sq
		   ? sqrt(max_norm_sq - norm_sq)
		   : 0.0;
}

/* x' = [x, extra]: extra = sqrt(M^2 - |x|^2) for the augmented rule (0 for a
 * row longer than every row of the training), 0 for the normalised one. */
static void augment(const struct ivf *ivf, float max_norm_sq, const float *row, float *out)
{
	double norm_sq = 0.0;

	memcpy(out, row, ivf->dim * sizeof(float));
	for (size_t j = 0; j < ivf->dim; j++)
		norm_sq += (double)row[j] * row[j];
	out[ivf->dim] = (float)augmented_extra(ivf, max_norm_sq, norm_sq);
}

/*
 * Derives what items are assigned by and what queries probe by from the
 * cells' means (nlist × aug_dim, means of augmented rows).
 */
static void derive_centroids(const struct ivf *ivf, struct layout *layout, const float *means)
{
	size_t dim = ivf->dim, aug_dim = ivf->aug_dim, nlist = layout->nlist;

	for (size_t c = 0; c < nlist; c++) {
		const float *mean = means + c * aug_dim;
		float *assign = layout->assign_centroids + c * aug_dim;
		double norm_sq = 0.0;

		for (size_t j = 0; j < aug_dim; j++)
			norm_sq += (double)mean[j] * mean[j];
		memcpy(layout->probe_centroids + c * dim, mean, dim * sizeof(float));
		if (ivf->assign == IVF_ASSIGN_AUGMENTED_L2) {
			/* nearest centroid: argmax x'.c' - |c'|^2/2 */
			memcpy(assign, mean, aug_dim * sizeof(float));
			layout->assign_bias[c] = (float)(-norm_sq / 2.0);
			layout->probe_bias[c] = (float)(-norm_sq / 2.0);
		} else {
			/* largest cosine with the mean: argmax x.c/|c| */
			double scale = norm_sq > 0.0 ? 1.0 / sqrt(norm_sq) : 0.0;
			for (size_t j = 0; j < aug_dim; j++)
				assign[j] = (float)(mean[j] * scale);
			layout->assign_bias[c] = 0.0f;
			layout->probe_bias[c] = 0.0f;
		}
	}
	/* item_slack()'s gaps, rounded down so that slack never overstates */
	for (size_t b = 0; layout->inverse_gap != NULL && b < nlist; b++)
		for (size_t c = b; c < nlist; c++) {
			const float *x = layout->assign_centroids + b * aug_dim;
			const float *y = layout->assign_centroids + c * aug_dim;
			double gap_sq = 0.0;
			float inverse;
			for (size_t j = 0; j < aug_dim; j++)
				gap_sq += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
			inverse = gap_sq > 0.0 ? nextafterf((float)(1.0 / sqrt(gap_sq)), 0.0f) : 0.0f;
			layout->inverse_gap[b * nlist + c] = inverse;
			layout->inverse_gap[c * nlist + b] = inverse;
		}
}

/* Running minima of least_distance(). */
#define LANES 16

/* The least over cells [from, to) of (top - scores[c] - allowance) ·
 * inverse_gap[c], NaN ignored: over LANES running minima so that it
 * vectorises (one loop with c == best skipped did not, and cost as much as
 * argmax_biased(): 15% of a 544k-item index build). */
static float least_distance(const float *scores, const float *inverse_gap, float top,
			    float allowance, size_t from, size_t to)
{
	float lane_min[LANES], least = INFINITY;
	size_t c = from;

	for (size_t l = 0; l < LANES; l++)
		lane_min[l] = INFINITY;
	for (; c + LANES <= to; c += LANES) {
		for (size_t l = 0; l < LANES; l++) {
			float distance = (top - scores[c + l] - allowance) * inverse_gap[c + l];
			lane_min[l] = distance < lane_min[l] ? distance : lane_min[l];
		}
	}
	for (; c < to; c++) {
		float distance = (top - scores[c] - allowance) * inverse_gap[c];
		least = distance < least ? distance : least;
	}
	for (size_t l = 0; l < LANES; l++)
		least = lane_min[l] < least ? lane_min[l] : least;
	return least;
}

/*
 * Keeping a cell without scoring it again. An item's score against a
 * centroid is linear in its augmented row, so the lead of its cell b over a
 * cell c changes by at most d · |b - c| when the row moves by distance d:
 * the row is (lead over c) / |b - c| from the boundary between the two. slack
 * is the least of those distances, less a rounding allowance, and each move
 * spends its distance; while slack is left no other cell can have won.
 * Learning moves a row a little at a time, so many updates keep their cell
 * for a few dozen flops instead of a product with every centroid.
 */
static float item_slack(const struct layout *layout, const float *scores, size_t n, size_t best)
{
	const float *inverse_gap;
	float allowance = 1e-5f * fabsf(scores[best]) + 1e-6f, slack, after;

	if (layout->inverse_gap == NULL)
		return 0.0f; /* too many cells for the table: always scored */
	inverse_gap = layout->inverse_gap + best * n;
	slack = least_distance(scores, inverse_gap, scores[best], allowance, 0, best);
	after = least_distance(scores, inverse_gap, scores[best], allowance, best + 1, n);
	slack = after < slack ? after : slack;
	/* NaN, a tie or equal centroids: scored again next time */
	return slack > 0.0f && slack < INFINITY ? slack : 0.0f;
}

/* A row's place in cell_relayout(): its inner product with the cell's
 * mean (decreasing), then the item. */
struct slot_key {
	float key;
	uint32_t item;
	uint32_t slot;
};

static int compare_slot_key(const void *a, const void *b)
{
	const struct slot_key *x = a, *y = b;
	if (x->key != y->key)
		return x->key > y->key ? -1 : 1;
	return (x->item > y->item) - (x->item < y->item);
}

/*
 * Lays cell c's rows out again as a training does (decreasing inner product
 * with the cell's mean, when it has more than one tile) and makes its boxes
 * exact. Boxes only widen as rows
 * move (box_widen()), and learning keeps moving the rows of a large cell's
 * popular items: at 1M items, 10k events/s, the items a list scored grew
 * from 1.3k to 66k within 30 s as every tile's box came to hold some item
 * that had become popular. Done once a cell's changes reach a quarter of its
 * rows (plus CELL_RELAYOUT_MIN_CHANGES), it costs O(dim + log rows) a
 * change amortised (25 ms for a cell of 136k rows). Without the memory for
 * it the cell stays as it is: its boxes and balls are bounds either way.
 */
#define CELL_RELAYOUT_MIN_CHANGES 64
static void cell_relayout(const struct ivf *ivf, struct layout *layout, size_t c)
{
	struct ivf_cell *cell = &layout->cells[c];
	size_t n = cell->count, dim = ivf->dim;
	const float *mean = layout->probe_centroids + c * dim;
	/* the order only matters between tiles: a cell of one tile (most
	 * cells) keeps its order, and only its bounds are made again */
	bool order = n > IVF_TILE_ITEMS;
	struct slot_key *keys = order ? malloc(n * sizeof *keys) : NULL;
	float *rows = order ? malloc(n * dim * sizeof *rows) : NULL;
	double *sum = malloc(dim * sizeof *sum);

	cell->changes = 0;
	if ((order && (keys == NULL || rows == NULL)) || sum == NULL)
		goto out_free;
	for (size_t s = 0; order && s < n; s++) {
		double key = 0.0;
		for (size_t j = 0; j < dim; j++)
			key += (double)cell->rows[s * dim + j] * mean[j];
		keys[s] = (struct slot_key){isnan(key) ? -INFINITY : (float)key, cell->items[s],
					    (uint32_t)s};
	}
	if (order) {
		qsort(keys, n, sizeof *keys, compare_slot_key);
		memcpy(rows, cell->rows, n * dim * sizeof *rows);
	}
	for (size_t j = 0; j < dim; j++) {
		layout->box_low[c * dim + j] = INFINITY;
		layout->box_high[c * dim + j] = -INFINITY;
	}
	for (size_t j = 0; j < tiles_of(cell->capacity) * dim; j++) {
		cell->tile_low[j] = INFINITY;
		cell->tile_high[j] = -INFINITY;
	}
	for (size_t t = 0; t < tiles_of(cell->capacity); t++)
		cell->tile_radius[t] = -1.0f; /* empty until made below */
	for (size_t s = 0; s < n; s++) {
		const float *row = cell->rows + s * dim;
		size_t tile = s / IVF_TILE_ITEMS;
		if (order) {
			cell->items[s] = keys[s].item;
			memcpy(cell->rows + s * dim, rows + (size_t)keys[s].slot * dim,
			       dim * sizeof(float));
			rowcodes_store(cell->codes, cell->scales, s, cell->rows + s * dim, mean, dim);
			layout->slot_of[keys[s].item] = (uint32_t)s;
		}
		/* the tiles' boxes here, the cell's from them; the balls below,
		 * about each tile's mean */
		widen(cell->tile_low + tile * dim, cell->tile_high + tile * dim, row, dim);
	}
	/* the cell's box holds its tiles' (a column no row of a tile held, NaN
	 * in all of them, is empty there: low above high) */
	for (size_t t = 0; t < tiles_of(n); t++)
		for (size_t j = 0; j < dim; j++) {
			float low = cell->tile_low[t * dim + j], high = cell->tile_high[t * dim + j];
			if (!(low <= high))
				continue;
			float *box_low = &layout->box_low[c * dim + j];
			float *box_high = &layout->box_high[c * dim + j];
			*box_low = low < *box_low ? low : *box_low;
			*box_high = high > *box_high ? high : *box_high;
		}
	/* each tile's ball about the mean of its rows (NaN rows left out) */
	for (size_t first = 0; first < n; first += IVF_TILE_ITEMS) {
		size_t end = n - first < IVF_TILE_ITEMS ? n : first + IVF_TILE_ITEMS, counted = 0;
		float *centre = cell->tile_centre + first / IVF_TILE_ITEMS * dim;
		float *radius = &cell->tile_radius[first / IVF_TILE_ITEMS];
		memset(sum, 0, dim * sizeof *sum);
		for (size_t s = first; s < end; s++) {
			bool nan = false;
			for (size_t j = 0; j < dim; j++)
				nan |= isnan(cell->rows[s * dim + j]);
			if (nan)
				continue;
			for (size_t j = 0; j < dim; j++)
				sum[j] += cell->rows[s * dim + j];
			counted++;
		}
		if (counted == 0)
			continue;
		for (size_t j = 0; j < dim; j++)
			centre[j] = (float)(sum[j] / (double)counted);
		*radius = BALL_MIN_RADIUS;
		for (size_t s = first; s < end; s++) {
			float distance_sq = distance_sq_above(centre, cell->rows + s * dim, dim);
			if (distance_sq > *radius * *radius)
				*radius = radius_past(distance_sq);
		}
	}
	cell->changes = 0;
out_free:
	free(keys);
	free(rows);
	free(sum);
}

static void maybe_relayout(struct ivf *ivf, size_t c)
{
	const struct ivf_cell *cell = &ivf->layout.cells[c];
	if (cell->changes >= cell->count / 4 + CELL_RELAYOUT_MIN_CHANGES)
		cell_relayout(ivf, &ivf->layout, c);
}

/* When an item of the index keeps its cell as its row becomes vector, spends
 * the distance from its stored row out of its slack and stores vector there.
 * @returns whether it did (if not, the item is to be scored). */
static bool kept_in_cell(struct ivf *ivf, uint32_t item, const float *vector)
{
	struct layout *layout = &ivf->layout;
	const float *old;
	double moved_sq = 0.0, old_sq = 0.0, new_sq = 0.0, extra, distance;

	if (item >= layout->item_count || !(layout->slack[item] > 0.0f))
		return false;
	old = layout->cells[layout->cell_of[item]].rows + (size_t)layout->slot_of[item] * ivf->dim;
	for (size_t j = 0; j < ivf->dim; j++) {
		double step = (double)vector[j] - old[j];
		moved_sq += step * step;
		old_sq += (double)old[j] * old[j];
		new_sq += (double)vector[j] * vector[j];
	}
	extra = augmented_extra(ivf, layout->max_norm_sq, new_sq) -
		augmented_extra(ivf, layout->max_norm_sq, old_sq);
	distance = sqrt(moved_sq + extra * extra);
	if (!(distance < layout->slack[item]))
		return false;
	layout->slack[item] -= (float)distance;
	store_row(layout, item, vector, ivf->dim);
	maybe_relayout(ivf, layout->cell_of[item]);
	ivf->kept_cells++;
	return true;
}

/* Cell of each of n augmented rows (n <= ASSIGN_BLOCK), using scores
 * (ASSIGN_BLOCK × nlist floats) as scratch; ties go to the lower cell. */
static void assign_block(const struct ivf *ivf, const struct layout *layout, const float *points,
			 size_t n, float *scores, uint32_t *cells, float *slack)
{
	size_t nlist = layout->nlist;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nlist, (int)ivf->aug_dim,
		    1.0f, points, (int)ivf->aug_dim, layout->assign_centroids, (int)ivf->aug_dim,
		    0.0f, scores, (int)nlist);
	for (size_t i = 0; i < n; i++) {
		cells[i] = (uint32_t)argmax_biased(scores + i * nlist, layout->assign_bias, nlist);
		if (slack != NULL)
			slack[i] = item_slack(layout, scores + i * nlist, nlist, cells[i]);
	}
}

static size_t auto_nlist(const struct ivf *ivf, size_t item_count)
{
	size_t nlist = ivf->config_nlist;

	if (nlist == 0)
		nlist = (size_t)llround(IVF_NLIST_PER_SQRT * sqrt((double)item_count));
	if (nlist > item_count)
		nlist = item_count;
	return nlist ? nlist : 1;
}

/*
 * One share of assign_rows(): rows [first, first + count) to their cells,
 * with its own scratch (scores: ASSIGN_BLOCK × nlist floats; block:
 * ASSIGN_BLOCK × aug_dim, used when the rows are not augmented yet).
 */
struct assign_share {
	const struct ivf *ivf;
	const struct layout *layout;
	const float *rows;
	size_t row_stride; /* 0: rows are augmented, aug_dim apart */
	float max_norm_sq;
	size_t first, count;
	uint32_t *cells;
	float *slack, *scores, *block;
	pthread_t thread;
};

static void assign_share_run(struct assign_share *a)
{
	const struct ivf *ivf = a->ivf;
	size_t aug_dim = ivf->aug_dim;
	for (size_t i = a->first; i < a->first + a->count; i += ASSIGN_BLOCK) {
		size_t n =
		    a->first + a->count - i < ASSIGN_BLOCK ? a->first + a->count - i : ASSIGN_BLOCK;
		const float *points = a->rows + i * aug_dim;
		if (a->row_stride != 0) {
			for (size_t b = 0; b < n; b++)
				augment(ivf, a->max_norm_sq, a->rows + (i + b) * a->row_stride,
					a->block + b * aug_dim);
			points = a->block;
		}
		assign_block(ivf, a->layout, points, n, a->scores, a->cells + i,
			     a->slack != NULL ? a->slack + i : NULL);
	}
}

static void *assign_share_main(void *arg)
{
	assign_share_run(arg);
	return NULL;
}

/*
 * Every one of `count` rows to its cell (cells[], and slack[] unless NULL),
 * split over up to `threads` threads in contiguous shares of whole blocks,
 * the caller's the first: each row's cell depends on that row alone, so the
 * cells are the same whatever the split. scores and block are the caller's
 * scratch (as assign_share); the other shares allocate their own, and a
 * share without memory or a thread is run by the caller.
 */
static void assign_rows(const struct ivf *ivf, const struct layout *layout, const float *rows,
			size_t row_stride, float max_norm_sq, size_t count, uint32_t *cells,
			float *slack, float *scores, float *block, size_t threads)
{
	struct assign_share shares[IVF_MAX_BUILD_THREADS];
	bool started[IVF_MAX_BUILD_THREADS] = {false};
	size_t blocks = (count + ASSIGN_BLOCK - 1) / ASSIGN_BLOCK;
	if (threads > IVF_MAX_BUILD_THREADS)
		threads = IVF_MAX_BUILD_THREADS;
	if (threads > blocks / 4) /* a share of a few blocks is not worth a thread */
		threads = blocks / 4 > 1 ? blocks / 4 : 1;
	size_t per = (blocks + threads - 1) / threads * ASSIGN_BLOCK;
	for (size_t t = 0; t < threads; t++) {
		size_t first = t * per < count ? t * per : count;
		shares[t] =
		    (struct assign_share){.ivf = ivf,
					  .layout = layout,
					  .rows = rows,
					  .row_stride = row_stride,
					  .max_norm_sq = max_norm_sq,
					  .first = first,
					  .count = count - first < per ? count - first : per,
					  .cells = cells,
					  .slack = slack,
					  .scores = scores,
					  .block = block};
	}
	for (size_t t = 1; t < threads; t++) {
		struct assign_share *a = &shares[t];
		a->scores = malloc((size_t)ASSIGN_BLOCK * layout->nlist * sizeof(float));
		a->block = malloc((size_t)ASSIGN_BLOCK * ivf->aug_dim * sizeof(float));
		started[t] = a->scores != NULL && a->block != NULL &&
			     pthread_create(&a->thread, NULL, assign_share_main, a) == 0;
	}
	assign_share_run(&shares[0]);
	for (size_t t = 1; t < threads; t++) {
		struct assign_share *a = &shares[t];
		if (started[t]) {
			pthread_join(a->thread, NULL);
		} else { /* no memory or no thread: the caller runs it, with its scratch */
			struct assign_share inline_share = *a;
			inline_share.scores = scores;
			inline_share.block = block;
			assign_share_run(&inline_share);
		}
		free(a->scores);
		free(a->block);
	}
}

/*
 * Trains a layout for items [0, item_count) whose rows are `rows`,
 * `row_stride` floats apart: Lloyd's iterations on a sample, then every item
 * assigned and copied into its cell; the assignments split over `threads`
 * threads (assign_rows()).
 */
static int train_layout(const struct ivf *ivf, const float *rows, size_t item_count,
			size_t row_stride, size_t threads, struct layout *out, char *errstr,
			size_t errstr_size)
{
	size_t dim = ivf->dim, aug_dim = ivf->aug_dim;
	size_t nlist = auto_nlist(ivf, item_count);
	size_t sample_count = nlist * IVF_TRAIN_POINTS_PER_CELL;
	uint64_t rng = ivf->seed;
	uint32_t *order = NULL, *sample_cells = NULL;
	float *sample = NULL, *means = NULL, *scores = NULL, *block = NULL;
	double *sums = NULL;
	size_t *counts = NULL;
	float max_norm_sq = 0.0f;
	int rc = -1;

	if (sample_count > item_count)
		sample_count = item_count;
	if (layout_alloc(out, nlist, dim, item_count))
		goto out_nomem;
	out->item_count = item_count;
	means = calloc(nlist * aug_dim, sizeof *means);
	sums = calloc(nlist * aug_dim, sizeof *sums);
	counts = calloc(nlist, sizeof *counts);
	scores = malloc((size_t)ASSIGN_BLOCK * nlist * sizeof *scores);
	block = malloc((size_t)ASSIGN_BLOCK * aug_dim * sizeof *block);
	sample = malloc((sample_count ? sample_count : 1) * aug_dim * sizeof *sample);
	sample_cells = malloc((sample_count ? sample_count : 1) * sizeof *sample_cells);
	order = malloc((item_count ? item_count : 1) * sizeof *order);
	if (means == NULL || sums == NULL || counts == NULL || scores == NULL || block == NULL ||
	    sample == NULL || sample_cells == NULL || order == NULL)
		goto out_nomem;

	for (size_t i = 0; i < item_count; i++) {
		double norm_sq = 0.0;
		for (size_t j = 0; j < dim; j++)
			norm_sq += (double)rows[i * row_stride + j] * rows[i * row_stride + j];
		if (norm_sq > max_norm_sq)
			max_norm_sq = (float)norm_sq;
	}
	out->max_norm_sq = max_norm_sq;

	/* A uniform sample without repeats: the first sample_count of a
	 * partial Fisher-Yates shuffle. */
	for (size_t i = 0; i < item_count; i++)
		order[i] = (uint32_t)i;
	for (size_t s = 0; s < sample_count; s++) {
		size_t pick = s + rng_next(&rng) % (item_count - s);
		uint32_t held = order[s];
		order[s] = order[pick];
		order[pick] = held;
		augment(ivf, max_norm_sq, rows + order[s] * row_stride, sample + s * aug_dim);
	}

	/* The first nlist sample points (a random draw) start the centroids. */
	for (size_t c = 0; c < nlist && c < sample_count; c++)
		memcpy(means + c * aug_dim, sample + c * aug_dim, aug_dim * sizeof(float));
	for (unsigned iteration = 0; iteration < IVF_TRAIN_ITERATIONS && sample_count > 0;
	     iteration++) {
		derive_centroids(ivf, out, means);
		assign_rows(ivf, out, sample, 0, max_norm_sq, sample_count, sample_cells, NULL,
			    scores, block, threads);
		memset(sums, 0, nlist * aug_dim * sizeof *sums);
		memset(counts, 0, nlist * sizeof *counts);
		for (size_t s = 0; s < sample_count; s++) {
			double *sum = sums + (size_t)sample_cells[s] * aug_dim;
			counts[sample_cells[s]]++;
			for (size_t j = 0; j < aug_dim; j++)
				sum[j] += sample[s * aug_dim + j];
		}
		for (size_t c = 0; c < nlist; c++) {
			float *mean = means + c * aug_dim;
			if (counts[c] == 0) {
				/* An empty cell restarts at a random sample point. */
				size_t s = rng_next(&rng) % sample_count;
				memcpy(mean, sample + s * aug_dim, aug_dim * sizeof(float));
				continue;
			}
			for (size_t j = 0; j < aug_dim; j++)
				mean[j] = (float)(sums[c * aug_dim + j] / (double)counts[c]);
		}
	}
	derive_centroids(ivf, out, means);

	/* Every item to its cell: cell_of first, then sizes, then the copy. */
	assign_rows(ivf, out, rows, row_stride, max_norm_sq, item_count, out->cell_of, out->slack,
		    scores, block, threads);
	memset(counts, 0, nlist * sizeof *counts);
	for (size_t i = 0; i < item_count; i++)
		counts[out->cell_of[i]]++;
	for (size_t c = 0; c < nlist; c++)
		if (cell_reserve(&out->cells[c], counts[c] + counts[c] / 4 + 1, dim))
			goto out_nomem;
	for (size_t i = 0; i < item_count; i++)
		cell_append(out, out->cell_of[i], (uint32_t)i, rows + i * row_stride, dim);
	/* each cell of several tiles in decreasing inner product with its mean,
	 * so that its tiles hold rows alike, and every cell with exact boxes
	 * and balls (struct ivf_cell) */
	for (size_t c = 0; c < nlist; c++)
		cell_relayout(ivf, out, c);
	rc = 0;
	goto out_free;

out_nomem:
	snprintf(errstr, errstr_size, "ivf: out of memory training %zu cells over %zu items", nlist,
		 item_count);
	layout_free(out);
out_free:
	free(order);
	free(sample_cells);
	free(sample);
	free(block);
	free(scores);
	free(counts);
	free(sums);
	free(means);
	return rc;
}

/* Makes `layout` the index's, freeing the old one. */
static void install_layout(struct ivf *ivf, struct layout *layout)
{
	layout_free(&ivf->layout);
	ivf->layout = *layout;
	memset(layout, 0, sizeof *layout);
	ivf->trained_items = ivf->layout.item_count;
}

static void set_threads(const struct ivf *ivf)
{
	if (openblas_get_num_threads() != ivf->threads)
		openblas_set_num_threads(ivf->threads);
}

/* ---- public: life cycle and updates ---------------------------------------------- */

struct ivf_scratch *ivf_scratch_new(void)
{
	return calloc(1, sizeof(struct ivf_scratch));
}

void ivf_scratch_free(struct ivf_scratch *s)
{
	if (s == NULL)
		return;
	free(s->packed);
	free(s->margins);
	free(s->gathered);
	free(s->tile_users);
	free(s->tile);
	free(s->passing);
	free(s->cell_scores);
	free(s->heaps);
	free(s->heap_counts);
	free(s->probes);
	free(s->cell_offsets);
	free(s->cell_users);
	free(s->specials);
	free(s->merged_specials);
	free(s->special_rows);
	free(s->special_items);
	free(s->special_offsets);
	free(s->special_counts);
	free(s->probe_heap);
	free(s);
}

/* Sizes a scratch's fixed buffers for an index's dim, max_batch and max_k
 * (once; again when it meets an index of another shape). @returns 0 or -1. */
static int scratch_fit(const struct ivf *ivf, struct ivf_scratch *s)
{
	if (s->packed != NULL && s->dim == ivf->dim && s->max_batch == ivf->max_batch &&
	    s->max_k == ivf->max_k)
		return 0;
	free(s->packed);
	free(s->margins);
	free(s->gathered);
	free(s->tile_users);
	free(s->tile);
	free(s->passing);
	free(s->heaps);
	free(s->heap_counts);
	free(s->special_offsets);
	free(s->special_counts);
	s->dim = ivf->dim;
	s->max_batch = ivf->max_batch;
	s->max_k = ivf->max_k;
	s->packed = malloc(s->max_batch * s->dim * sizeof(float));
	s->margins = malloc(s->max_batch * sizeof(float));
	s->gathered = malloc(s->max_batch * s->dim * sizeof(float));
	s->tile_users = malloc(s->max_batch * sizeof(uint32_t));
	s->tile = malloc(s->max_batch * IVF_TILE_ITEMS * sizeof(float));
	s->passing = malloc(IVF_TILE_ITEMS * sizeof(uint32_t));
	s->heaps = malloc(s->max_batch * s->max_k * sizeof(uint64_t));
	s->heap_counts = calloc(s->max_batch, sizeof(size_t));
	s->special_offsets = calloc(s->max_batch + 1, sizeof(size_t));
	s->special_counts = calloc(s->max_batch, sizeof(size_t));
	if (s->packed == NULL || s->margins == NULL || s->gathered == NULL ||
	    s->tile_users == NULL || s->tile == NULL || s->passing == NULL || s->heaps == NULL ||
	    s->heap_counts == NULL || s->special_offsets == NULL || s->special_counts == NULL) {
		free(s->packed);
		s->packed = NULL; /* fitted again at the next search */
		return -1;
	}
	return 0;
}

struct ivf *ivf_new(const struct ivf_config *config, char *errstr, size_t errstr_size)
{
	struct ivf *ivf;

	if (config == NULL) {
		snprintf(errstr, errstr_size, "ivf: config is NULL");
		return NULL;
	}
	if (config->dim == 0 || config->dim >= INT_MAX) {
		snprintf(errstr, errstr_size, "ivf: dim must be between 1 and %d, got %zu",
			 INT_MAX - 1, config->dim);
		return NULL;
	}
	if (config->max_batch == 0 || config->max_batch > INT_MAX) {
		snprintf(errstr, errstr_size, "ivf: max_batch must be between 1 and %d, got %zu",
			 INT_MAX, config->max_batch);
		return NULL;
	}
	if (config->max_k == 0 || config->max_k > UINT32_MAX) {
		snprintf(errstr, errstr_size, "ivf: max_k must be between 1 and %u, got %zu",
			 (unsigned)UINT32_MAX, config->max_k);
		return NULL;
	}
	if (config->nlist > INT_MAX) {
		snprintf(errstr, errstr_size, "ivf: nlist must be at most %d, got %zu", INT_MAX,
			 config->nlist);
		return NULL;
	}
	if (config->assign != IVF_ASSIGN_AUGMENTED_L2 &&
	    config->assign != IVF_ASSIGN_NORMALISED_IP) {
		snprintf(errstr, errstr_size, "ivf: unknown assignment rule %d",
			 (int)config->assign);
		return NULL;
	}
	if (config->threads < 0 || config->threads > TOPK_MAX_THREADS) {
		snprintf(errstr, errstr_size, "ivf: threads must be between 0 (one) and %d, got %d",
			 TOPK_MAX_THREADS, config->threads);
		return NULL;
	}
	if (config->build_threads > IVF_MAX_BUILD_THREADS) {
		snprintf(errstr, errstr_size,
			 "ivf: build_threads must be between 0 (one) and %d, got %zu",
			 IVF_MAX_BUILD_THREADS, config->build_threads);
		return NULL;
	}
	if (config->max_batch > SIZE_MAX / sizeof(float) / IVF_TILE_ITEMS ||
	    config->max_batch > SIZE_MAX / sizeof(float) / config->dim ||
	    config->max_batch > SIZE_MAX / sizeof(uint64_t) / config->max_k) {
		snprintf(errstr, errstr_size, "ivf: max_batch %zu overflows memory",
			 config->max_batch);
		return NULL;
	}

	ivf = calloc(1, sizeof *ivf);
	if (ivf == NULL)
		goto out_nomem;
	ivf->dim = config->dim;
	ivf->aug_dim = config->dim + 1;
	ivf->config_nlist = config->nlist;
	ivf->max_batch = config->max_batch;
	ivf->max_k = config->max_k;
	ivf->assign = config->assign;
	ivf->seed = config->seed;
	ivf->threads = config->threads ? config->threads : 1;
	ivf->build_threads = config->build_threads ? config->build_threads : 1;
	ivf->shared_min_users = blas_small_gemm_path() ? CELL_SHARED_MIN_USERS_SMALL_PATH
						       : CELL_SHARED_MIN_USERS_PACKED;
	ivf->aug_vector = malloc(ivf->aug_dim * sizeof(float));
	ivf->own = ivf_scratch_new();
	if (ivf->aug_vector == NULL || ivf->own == NULL || scratch_fit(ivf, ivf->own) != 0)
		goto out_free;
	if (layout_alloc(&ivf->layout, 1, ivf->dim, 1))
		goto out_free;
	return ivf;

out_free:
	ivf_free(ivf);
out_nomem:
	snprintf(errstr, errstr_size, "ivf: out of memory for max_batch %zu, max_k %zu, dim %zu",
		 config->max_batch, config->max_k, config->dim);
	return NULL;
}

void ivf_free(struct ivf *ivf)
{
	if (ivf == NULL)
		return;
	layout_free(&ivf->layout);
	free(ivf->aug_vector);
	ivf_scratch_free(ivf->own);
	free(ivf->update_rows);
	free(ivf->update_scores);
	free(ivf->update_scored);
	free(ivf);
}

int ivf_build(struct ivf *ivf, const float *rows, size_t item_count, size_t row_stride,
	      char *errstr, size_t errstr_size)
{
	struct layout layout;

	if (item_count > (size_t)UINT32_MAX) {
		snprintf(errstr, errstr_size, "ivf: item_count %zu exceeds the uint32_t item index",
			 item_count);
		return -1;
	}
	if (item_count > 0 && rows == NULL) {
		snprintf(errstr, errstr_size, "ivf: rows is NULL with item_count %zu", item_count);
		return -1;
	}
	if (row_stride < ivf->dim && item_count > 0) {
		snprintf(errstr, errstr_size, "ivf: row_stride %zu is below dim %zu", row_stride,
			 ivf->dim);
		return -1;
	}
	set_threads(ivf);
	if (train_layout(ivf, rows, item_count, row_stride, ivf->build_threads, &layout, errstr,
			 errstr_size)) {
		layout_free(&ivf->layout);
		if (layout_alloc(&ivf->layout, 1, ivf->dim, 1) == 0)
			ivf->trained_items = 0;
		return -1;
	}
	install_layout(ivf, &layout);
	return 0;
}

/* Training reads rows by item; the cells hold them by cell: a copy by item,
 * or NULL with errstr filled. */
static float *gather_rows(const struct ivf *ivf, char *errstr, size_t errstr_size)
{
	const struct layout *old = &ivf->layout;
	size_t dim = ivf->dim, item_count = old->item_count;
	float *rows = malloc((item_count ? item_count : 1) * dim * sizeof *rows);

	if (rows == NULL) {
		snprintf(errstr, errstr_size, "ivf: out of memory copying %zu rows to retrain",
			 item_count);
		return NULL;
	}
	for (size_t i = 0; i < item_count; i++)
		memcpy(rows + i * dim,
		       old->cells[old->cell_of[i]].rows + (size_t)old->slot_of[i] * dim,
		       dim * sizeof *rows);
	return rows;
}

int ivf_retrain(struct ivf *ivf, char *errstr, size_t errstr_size)
{
	size_t item_count = ivf->layout.item_count;
	struct layout layout;
	float *rows = gather_rows(ivf, errstr, errstr_size);
	int rc;

	if (rows == NULL)
		return -1;
	set_threads(ivf);
	rc = train_layout(ivf, rows, item_count, ivf->dim, 1, &layout, errstr, errstr_size);
	if (rc == 0)
		install_layout(ivf, &layout);
	free(rows);
	return rc;
}

struct ivf_training {
	const struct ivf *ivf; /* its fixed settings only */
	float *rows;	       /* the snapshot, item by item */
	size_t item_count;
	struct layout layout;
	pthread_t thread;
	int rc;
	char errstr[256];
	atomic_bool done;
};

static void *training_main(void *arg)
{
	struct ivf_training *t = arg;
	pthread_setname_np(pthread_self(), "ivf-train");
	set_threads(t->ivf);
	t->rc = train_layout(t->ivf, t->rows, t->item_count, t->ivf->dim, 1, &t->layout, t->errstr,
			     sizeof t->errstr);
	atomic_store(&t->done, true);
	return NULL;
}

int ivf_training_start(struct ivf *ivf, struct ivf_training **training, char *errstr,
		       size_t errstr_size)
{
	struct ivf_training *t = calloc(1, sizeof *t);

	*training = NULL;
	if (t == NULL) {
		snprintf(errstr, errstr_size, "ivf: out of memory for a training");
		return -1;
	}
	t->rows = gather_rows(ivf, errstr, errstr_size);
	if (t->rows == NULL) {
		free(t);
		return -1;
	}
	t->ivf = ivf;
	t->item_count = ivf->layout.item_count;
	atomic_init(&t->done, false);
	int rc = pthread_create(&t->thread, NULL, training_main, t);
	if (rc != 0) {
		free(t->rows);
		free(t);
		snprintf(errstr, errstr_size, "ivf: cannot start a training thread: %s",
			 strerror(rc));
		return -1;
	}
	*training = t;
	return 0;
}

bool ivf_training_done(const struct ivf_training *training)
{
	return atomic_load(&training->done);
}

size_t ivf_training_items(const struct ivf_training *training)
{
	return training->item_count;
}

/* Frees a training whose thread was joined (its layout, when not installed). */
static void training_free(struct ivf_training *t)
{
	layout_free(&t->layout);
	free(t->rows);
	free(t);
}

int ivf_training_finish(struct ivf *ivf, struct ivf_training *training, char *errstr,
			size_t errstr_size)
{
	int rc;

	pthread_join(training->thread, NULL);
	rc = training->rc;
	if (rc == 0)
		install_layout(ivf, &training->layout);
	else
		snprintf(errstr, errstr_size, "%s", training->errstr);
	training_free(training);
	return rc;
}

void ivf_training_cancel(struct ivf_training *training)
{
	if (training == NULL)
		return;
	pthread_join(training->thread, NULL);
	training_free(training);
}

size_t ivf_assign_cell(const struct ivf *ivf, const float *vector)
{
	const struct layout *layout = &ivf->layout;

	/* Writes the index's scratch (aug_vector, assign_scores) although the
	 * index is const: ivf.h's one-thread rule covers it. */
	augment(ivf, layout->max_norm_sq, vector, ivf->aug_vector);
	cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)layout->nlist, (int)ivf->aug_dim, 1.0f,
		    layout->assign_centroids, (int)ivf->aug_dim, ivf->aug_vector, 1, 0.0f,
		    layout->assign_scores, 1);
	return argmax_biased(layout->assign_scores, layout->assign_bias, layout->nlist);
}

/* Checks an update's item (an existing one, or the next new one) and makes room for it. */
static int admit_item(struct ivf *ivf, uint32_t item, const float *vector, char *errstr,
		      size_t errstr_size)
{
	struct layout *layout = &ivf->layout;

	if (vector == NULL) {
		snprintf(errstr, errstr_size, "ivf: item %u: vector is NULL", (unsigned)item);
		return -1;
	}
	if (item > layout->item_count || item == UINT32_MAX) {
		snprintf(errstr, errstr_size,
			 "ivf: item %u is past the end (the index holds %zu items)", (unsigned)item,
			 layout->item_count);
		return -1;
	}
	if (item == layout->item_count && layout->item_count == layout->item_capacity) {
		size_t capacity = layout->item_capacity * 2;
		uint32_t *cell_of = realloc(layout->cell_of, capacity * sizeof *cell_of);
		if (cell_of == NULL)
			goto out_nomem;
		layout->cell_of = cell_of;
		uint32_t *slot_of = realloc(layout->slot_of, capacity * sizeof *slot_of);
		if (slot_of == NULL)
			goto out_nomem;
		layout->slot_of = slot_of;
		float *slack = realloc(layout->slack, capacity * sizeof *slack);
		if (slack == NULL)
			goto out_nomem;
		layout->slack = slack;
		layout->item_capacity = capacity;
	}
	return 0;

out_nomem:
	snprintf(errstr, errstr_size, "ivf: item %u: out of memory", (unsigned)item);
	return -1;
}

/* Puts an admitted item's row in cell (moving it there when it was
 * elsewhere), with slack for its next moves (item_slack()). */
static int place_item(struct ivf *ivf, uint32_t item, const float *vector, size_t cell,
		      float slack, char *errstr, size_t errstr_size)
{
	struct layout *layout = &ivf->layout;
	size_t dim = ivf->dim;

	layout->slack[item] = slack;
	if (item < layout->item_count && layout->cell_of[item] == cell) {
		store_row(layout, item, vector, dim);
		maybe_relayout(ivf, cell);
		return 0;
	}
	if (cell_reserve(&layout->cells[cell], layout->cells[cell].count + 1, dim)) {
		snprintf(errstr, errstr_size, "ivf: item %u: out of memory", (unsigned)item);
		return -1;
	}
	if (item < layout->item_count) {
		size_t left = layout->cell_of[item];
		cell_remove(layout, item, dim);
		maybe_relayout(ivf, left);
	} else {
		layout->item_count++;
	}
	cell_append(layout, cell, item, vector, dim);
	maybe_relayout(ivf, cell);
	return 0;
}

int ivf_update_item(struct ivf *ivf, uint32_t item, const float *vector, char *errstr,
		    size_t errstr_size)
{
	const struct layout *layout = &ivf->layout;
	size_t cell;

	if (admit_item(ivf, item, vector, errstr, errstr_size) != 0)
		return -1;
	if (kept_in_cell(ivf, item, vector))
		return 0;
	set_threads(ivf);
	cell = ivf_assign_cell(ivf, vector);
	return place_item(ivf, item, vector, cell,
			  item_slack(layout, layout->assign_scores, layout->nlist, cell), errstr,
			  errstr_size);
}

/*
 * How far ahead ivf_update_items() fetches what an update reads: an item's
 * slack, cell and slot and its new row UPDATE_AHEAD items ahead, then,
 * half as far ahead (its cell and slot are in cache by then), its stored
 * row and the cache lines of its codes. Every one of these is a miss to
 * memory at 1M items (the items a round moved are anywhere), and
 * kept_in_cell() and the coding wait on them one after another.
 */
#define UPDATE_AHEAD 16
static void prefetch_update(const struct ivf *ivf, const uint32_t *items, size_t r, size_t n,
			    const float *matrix, size_t row_stride)
{
	const struct layout *layout = &ivf->layout;

	if (r + UPDATE_AHEAD < n) {
		uint32_t item = items[r + UPDATE_AHEAD];
		__builtin_prefetch(matrix + (size_t)item * row_stride);
		if (item < layout->item_count) {
			__builtin_prefetch(&layout->slack[item]);
			__builtin_prefetch(&layout->cell_of[item]);
			__builtin_prefetch(&layout->slot_of[item]);
		}
	}
	if (r + UPDATE_AHEAD / 2 < n) {
		uint32_t item = items[r + UPDATE_AHEAD / 2];
		if (item < layout->item_count) {
			const struct ivf_cell *cell = &layout->cells[layout->cell_of[item]];
			size_t slot = layout->slot_of[item], dim = ivf->dim;
			const float *row = cell->rows + slot * dim;
			__builtin_prefetch(row);
			__builtin_prefetch(row + dim - 1);
			rowcodes_prefetch(cell->codes, cell->scales, slot, dim);
		}
	}
}

int ivf_update_items(struct ivf *ivf, const uint32_t *items, size_t count, const float *matrix,
		     size_t row_stride, char *errstr, size_t errstr_size)
{
	const struct layout *layout = &ivf->layout;
	size_t aug_dim = ivf->aug_dim, nlist = layout->nlist;
	size_t chunk = IVF_UPDATE_CHUNK < count ? IVF_UPDATE_CHUNK : count;
	if (ivf->update_rows == NULL)
		ivf->update_rows = malloc(IVF_UPDATE_CHUNK * aug_dim * sizeof *ivf->update_rows);
	if (ivf->update_scored == NULL)
		ivf->update_scored = malloc(IVF_UPDATE_CHUNK * sizeof *ivf->update_scored);
	if (ivf->update_scores_capacity < IVF_UPDATE_CHUNK * nlist) {
		free(ivf->update_scores);
		ivf->update_scores = malloc(IVF_UPDATE_CHUNK * nlist * sizeof *ivf->update_scores);
		ivf->update_scores_capacity = ivf->update_scores ? IVF_UPDATE_CHUNK * nlist : 0;
	}
	float *rows = ivf->update_rows, *scores = ivf->update_scores;
	uint32_t *scored = ivf->update_scored;

	if (rows == NULL || scores == NULL || scored == NULL) {
		snprintf(errstr, errstr_size, "ivf: out of memory updating %zu items", count);
		return -1;
	}
	set_threads(ivf);
	for (size_t first = 0; first < count; first += chunk) {
		size_t n = count - first < chunk ? count - first : chunk, m = 0;
		/* items that keep their cell go in place; the others are scored
		 * against every centroid in one product: scores = rows · centroids^T */
		for (size_t r = 0; r < n; r++) {
			uint32_t item = items[first + r];
			const float *vector = matrix + (size_t)item * row_stride;
			prefetch_update(ivf, items + first, r, n, matrix, row_stride);
			/* never read a row past what the update can hold: an item is an
			 * existing one or one of the next new ones */
			if (item > layout->item_count + m) {
				snprintf(errstr, errstr_size,
					 "ivf: item %u is past the end (the index holds %zu items)",
					 (unsigned)item, layout->item_count);
				return -1;
			}
			if (kept_in_cell(ivf, item, vector))
				continue;
			augment(ivf, layout->max_norm_sq, vector, rows + m * aug_dim);
			scored[m++] = item;
		}
		if (m == 0)
			continue;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nlist,
			    (int)aug_dim, 1.0f, rows, (int)aug_dim, layout->assign_centroids,
			    (int)aug_dim, 0.0f, scores, (int)nlist);
		for (size_t r = 0; r < m; r++) {
			uint32_t item = scored[r];
			const float *vector = matrix + (size_t)item * row_stride;
			float *item_scores = scores + r * nlist;
			size_t cell = argmax_biased(item_scores, layout->assign_bias, nlist);
			if (admit_item(ivf, item, vector, errstr, errstr_size) != 0 ||
			    place_item(ivf, item, vector, cell,
				       item_slack(layout, item_scores, nlist, cell), errstr,
				       errstr_size) != 0)
				return -1;
		}
	}
	return 0;
}

uint64_t ivf_kept_cells(const struct ivf *ivf)
{
	return ivf->kept_cells;
}

bool ivf_needs_retrain(const struct ivf *ivf)
{
	const struct layout *layout = &ivf->layout;
	size_t largest = 0, trained = ivf->trained_items ? ivf->trained_items : 1;

	if (layout->item_count >= 2 * trained)
		return true;
	for (size_t c = 0; c < layout->nlist; c++)
		if (layout->cells[c].count > largest)
			largest = layout->cells[c].count;
	return (double)largest >
	       IVF_RETRAIN_CELL_FACTOR * (double)layout->item_count / (double)layout->nlist;
}

size_t ivf_item_count(const struct ivf *ivf)
{
	return ivf->layout.item_count;
}

size_t ivf_nlist(const struct ivf *ivf)
{
	return ivf->layout.nlist;
}

/* Cell c's probe score for vector, as choose_probes() ranks cells (NaN: -inf). */
static float cell_probe_score(const struct ivf *ivf, const float *vector, size_t c)
{
	float score = dot(vector, ivf->layout.probe_centroids + c * ivf->dim, ivf->dim) +
		      ivf->layout.probe_bias[c];
	return isnan(score) ? -INFINITY : score;
}

size_t ivf_item_cell(const struct ivf *ivf, uint32_t item)
{
	return ivf->layout.cell_of[item];
}

/* Whether item is among list[0, count) (unsorted). */
static bool listed(const uint32_t *list, size_t count, uint32_t item)
{
	for (size_t i = 0; i < count; i++)
		if (list[i] == item)
			return true;
	return false;
}

void ivf_probes_needed(const struct ivf *ivf, const struct ivf_query *query,
		       const uint32_t *items, size_t count, size_t *needed)
{
	const struct layout *layout = &ivf->layout;
	const float *vector = query->base.vector;
	/* every cell's score once (20 items of a list would score them 20
	 * times); without the memory, each item scores them itself */
	float *scores = malloc(layout->nlist * sizeof *scores);
	for (size_t c = 0; scores != NULL && c < layout->nlist; c++)
		scores[c] = cell_probe_score(ivf, vector, c);
	for (size_t i = 0; i < count; i++) {
		uint32_t item = items[i];
		if (listed(query->base.sparse_items, query->base.sparse_count, item) ||
		    listed(query->extra_items, query->extra_count, item)) {
			needed[i] = 0;
			continue;
		}
		if (item >= layout->item_count) {
			needed[i] = SIZE_MAX;
			continue;
		}
		/* its cell's place among the non-empty cells, as choose_probes() orders them */
		size_t cell = layout->cell_of[item], place = 1;
		float score = scores ? scores[cell] : cell_probe_score(ivf, vector, cell);
		for (size_t c = 0; c < layout->nlist; c++) {
			if (c == cell || layout->cells[c].count == 0)
				continue;
			float other = scores ? scores[c] : cell_probe_score(ivf, vector, c);
			place += other > score || (other == score && c < cell);
		}
		needed[i] = place;
	}
	free(scores);
}

size_t ivf_cell_size(const struct ivf *ivf, size_t cell)
{
	return ivf->layout.cells[cell].count;
}

size_t ivf_last_candidates(const struct ivf *ivf)
{
	return ivf->own->last_candidates;
}

uint64_t ivf_skipped_cells(const struct ivf *ivf)
{
	return ivf->own->skipped_cells;
}

uint64_t ivf_skipped_tiles(const struct ivf *ivf)
{
	return ivf->own->skipped_tiles;
}

size_t ivf_scratch_candidates(const struct ivf_scratch *scratch)
{
	return scratch->last_candidates;
}

size_t ivf_last_rows_read(const struct ivf *ivf)
{
	return ivf->own->last_rows_read;
}

/* ---- public: search -------------------------------------------------------------- */

/* Checks every argument of ivf_search() before anything is written. */
static int check_search(const struct ivf *ivf, const struct ivf_query *queries, size_t query_count,
			size_t k, const struct topk_result *results, const size_t *result_counts,
			char *errstr, size_t errstr_size)
{
	if (query_count > ivf->max_batch) {
		snprintf(errstr, errstr_size, "ivf: query_count %zu exceeds max_batch %zu",
			 query_count, ivf->max_batch);
		return -1;
	}
	if (k > ivf->max_k) {
		snprintf(errstr, errstr_size, "ivf: k %zu exceeds max_k %zu", k, ivf->max_k);
		return -1;
	}
	if (query_count == 0)
		return 0;
	if (queries == NULL || result_counts == NULL || (k > 0 && results == NULL)) {
		snprintf(errstr, errstr_size, "ivf: %s is NULL",
			 queries == NULL         ? "queries"
			 : result_counts == NULL ? "result_counts"
						 : "results");
		return -1;
	}
	for (size_t q = 0; q < query_count; q++) {
		const struct topk_query *query = &queries[q].base;
		char name[64];
		snprintf(name, sizeof name, "ivf: queries[%zu].base", q);
		if (topk_query_check(query, name, errstr, errstr_size) != 0)
			return -1;
		if (queries[q].extra_count > 0 && queries[q].extra_items == NULL) {
			snprintf(errstr, errstr_size,
				 "ivf: queries[%zu].extra_items is NULL with extra_count %zu", q,
				 queries[q].extra_count);
			return -1;
		}
		if (query->sparse_count + queries[q].extra_count > UINT32_MAX) {
			snprintf(errstr, errstr_size,
				 "ivf: queries[%zu] has more than %u sparse and extra items", q,
				 (unsigned)UINT32_MAX);
			return -1;
		}
	}
	return 0;
}

static int compare_special(const void *a, const void *b)
{
	const struct special *x = a, *y = b;

	if (x->item != y->item)
		return x->item < y->item ? -1 : 1;
	return (x->order > y->order) - (x->order < y->order);
}

/* Grows the scratch this batch needs beyond what earlier batches needed. */
static int reserve_search(const struct ivf *ivf, struct ivf_scratch *sc, size_t query_count,
			  size_t probes_per_query, size_t special_total, char *errstr,
			  size_t errstr_size)
{
	size_t nlist = ivf->layout.nlist;

	if (grow_scratch((void **)&sc->cell_scores, &sc->cell_scores_capacity,
			 ivf->max_batch * nlist, sizeof(float)) ||
	    grow_scratch((void **)&sc->probes, &sc->probes_capacity, query_count * probes_per_query,
			 sizeof(uint32_t)) ||
	    grow_scratch((void **)&sc->cell_users, &sc->cell_users_capacity,
			 query_count * probes_per_query, sizeof(uint32_t)) ||
	    grow_scratch((void **)&sc->cell_offsets, &sc->cell_offsets_capacity, nlist + 1,
			 sizeof(size_t)) ||
	    grow_scratch((void **)&sc->probe_heap, &sc->probe_heap_capacity, probes_per_query,
			 sizeof(uint64_t)) ||
	    grow_scratch((void **)&sc->specials, &sc->specials_capacity, special_total,
			 sizeof(struct special)) ||
	    grow_scratch((void **)&sc->merged_specials, &sc->merged_specials_capacity,
			 special_total, sizeof(struct special)) ||
	    grow_scratch((void **)&sc->special_rows, &sc->special_rows_capacity, special_total,
			 sizeof(const float *)) ||
	    grow_scratch((void **)&sc->special_items, &sc->special_items_capacity, special_total,
			 sizeof(uint32_t))) {
		snprintf(errstr, errstr_size,
			 "ivf: out of memory for a batch of %zu queries, %zu probes each, %zu "
			 "sparse and extra items",
			 query_count, probes_per_query, special_total);
		return -1;
	}
	return 0;
}

/*
 * Each query's `probes` best non-empty cells by q.c + bias (ties to the lower
 * cell), into sc->probes[q * probes ...], and the cells' user lists.
 */
static void choose_probes(const struct ivf *ivf, struct ivf_scratch *sc, size_t query_count,
			  size_t probes)
{
	const struct layout *layout = &ivf->layout;
	size_t nlist = layout->nlist;
	size_t *offsets = sc->cell_offsets;
	uint64_t *keys = sc->probe_heap;

	if (query_count < ivf->shared_min_users) /* as scan_cell: sgemm would pack the centroids */
		for (size_t q = 0; q < query_count; q++)
			cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nlist, (int)ivf->dim, 1.0f,
				    layout->probe_centroids, (int)ivf->dim,
				    sc->packed + q * ivf->dim, 1, 0.0f, sc->cell_scores + q * nlist,
				    1);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)query_count,
			    (int)nlist, (int)ivf->dim, 1.0f, sc->packed, (int)ivf->dim,
			    layout->probe_centroids, (int)ivf->dim, 0.0f, sc->cell_scores,
			    (int)nlist);
	memset(offsets, 0, (nlist + 1) * sizeof *offsets);
	for (size_t q = 0; q < query_count; q++) {
		const float *scores = sc->cell_scores + q * nlist;
		uint32_t *chosen = sc->probes + q * probes;
		size_t count = 0;

		float bar = -INFINITY;

		for (size_t c = 0; c < nlist; c++) {
			float score = scores[c] + layout->probe_bias[c];
			if (count == probes && !(score >= bar))
				continue;
			if (layout->cells[c].count == 0)
				continue;
			if (isnan(score))
				score = -INFINITY;
			heap_offer(keys, &count, probes, result_key(score, (uint32_t)c));
			if (count == probes)
				bar = key_result(keys[0]).score;
		}
		/* Best cell first (a heap sort, as for results), so that the scan
		 * can visit each user's best cells before its others. */
		for (size_t left = count; left > 1; left--) {
			uint64_t worst = keys[0];
			keys[0] = keys[left - 1];
			keys[left - 1] = worst;
			heap_sift_down(keys, left - 1, 0);
		}
		for (size_t p = 0; p < probes; p++) {
			chosen[p] = p < count ? key_result(keys[p]).item : UINT32_MAX;
			if (p < count)
				offsets[chosen[p] + 1]++;
		}
	}
	for (size_t c = 0; c < nlist; c++)
		offsets[c + 1] += offsets[c];
	/* Fill, moving offsets[c] to the end of cell c; then shift back. */
	for (size_t q = 0; q < query_count; q++)
		for (size_t p = 0; p < probes; p++)
			if (sc->probes[q * probes + p] != UINT32_MAX)
				sc->cell_users[offsets[sc->probes[q * probes + p]]++] = (uint32_t)q;
	for (size_t c = nlist; c > 0; c--)
		offsets[c] = offsets[c - 1];
	offsets[0] = 0;
}

/*
 * Specials lie anywhere in memory, and each needs three dependent loads
 * (its cell and slot, then its row) and its eligibility: waited on one by
 * one they cost half of a search at 1M items. So their positions are
 * fetched ahead while they are collected, and a query's rows while the
 * query before it is scored.
 */
static void prefetch_position(const struct ivf *ivf, uint32_t item)
{
	__builtin_prefetch(&ivf->layout.cell_of[item]);
	__builtin_prefetch(&ivf->layout.slot_of[item]);
}

/* Below this many extra items a query's extras are sorted by insertion. */
#define EXTRA_INSERTION_SORT 64

/* Sorts specials[0..count), listed in increasing `order`, by item; a stable
 * sort, so equal items keep their order. */
static void sort_extras(struct special *specials, size_t count)
{
	if (count > EXTRA_INSERTION_SORT) {
		qsort(specials, count, sizeof *specials, compare_special);
		return;
	}
	for (size_t i = 1; i < count; i++) {
		struct special moving = specials[i];
		size_t j = i;
		for (; j > 0 && specials[j - 1].item > moving.item; j--)
			specials[j] = specials[j - 1];
		specials[j] = moving;
	}
}

/* Merges the sorted runs [0, left) and [left, count) of specials through
 * `merged` (room for count): on equal items the left (sparse) one first,
 * which is (item, order) order since sparse orders precede extra ones. */
static void merge_specials(struct special *specials, size_t left, size_t count,
			   struct special *merged)
{
	size_t a = 0, b = left, out = 0;

	while (a < left && b < count)
		merged[out++] = specials[b].item < specials[a].item ? specials[b++] : specials[a++];
	while (a < left)
		merged[out++] = specials[a++];
	while (b < count)
		merged[out++] = specials[b++];
	memcpy(specials, merged, count * sizeof *specials);
}

/*
 * Sorts each query's sparse and extra items by (item, caller's order) and
 * lists the distinct ones; items past the index are dropped. The model
 * hands its sparse items sorted and distinct (model_query()): then only the
 * few extra items are sorted and merged in, instead of sorting all of them.
 */
static void collect_specials(const struct ivf *ivf, struct ivf_scratch *sc,
			     const struct ivf_query *queries, size_t query_count)
{
	size_t item_count = ivf->layout.item_count, at = 0;

	for (size_t q = 0; q < query_count; q++) {
		const struct ivf_query *query = &queries[q];
		size_t begin = at, distinct = 0, sparse_end;
		bool sparse_sorted = true;

		sc->special_offsets[q] = begin;
		for (size_t s = 0; s < query->base.sparse_count; s++)
			if (query->base.sparse_items[s] < item_count) {
				prefetch_position(ivf, query->base.sparse_items[s]);
				if (at > begin &&
				    sc->specials[at - 1].item >= query->base.sparse_items[s])
					sparse_sorted = false;
				sc->specials[at++] =
				    (struct special){query->base.sparse_items[s], (uint32_t)s};
			}
		sparse_end = at;
		for (size_t e = 0; e < query->extra_count; e++)
			if (query->extra_items[e] < item_count) {
				prefetch_position(ivf, query->extra_items[e]);
				sc->specials[at++] =
				    (struct special){query->extra_items[e],
						     (uint32_t)(query->base.sparse_count + e)};
			}
		if (!sparse_sorted) {
			qsort(sc->specials + begin, at - begin, sizeof *sc->specials,
			      compare_special);
		} else if (at > sparse_end) {
			sort_extras(sc->specials + sparse_end, at - sparse_end);
			if (sparse_end > begin)
				merge_specials(sc->specials + begin, sparse_end - begin, at - begin,
					       sc->merged_specials);
		}
		for (size_t s = begin; s < at; s++)
			if (s == begin || sc->specials[s].item != sc->specials[s - 1].item)
				sc->special_items[begin + distinct++] = sc->specials[s].item;
		sc->special_counts[q] = distinct;
	}
	sc->special_offsets[query_count] = at;
}

/* Where the next score at or above `bar` may be (see topk.c's skip_below;
 * here an equal score may still win on a lower index). */
static size_t skip_below(const float *scores, size_t n, float bar)
{
	size_t j = 0;

	for (; j + SKIP_BLOCK <= n; j += SKIP_BLOCK) {
		int hit = 0;
		for (size_t m = 0; m < SKIP_BLOCK; m++)
			hit |= scores[j + m] >= bar;
		if (hit)
			break;
	}
	for (; j + SCAN_BLOCK <= n; j += SCAN_BLOCK) {
		int hit = 0;
		for (size_t m = 0; m < SCAN_BLOCK; m++)
			hit |= scores[j + m] >= bar;
		if (hit)
			break;
	}
	return j;
}

/* Whether query q may be offered cell item `item` scored `score`: not NaN,
 * eligible, not excluded, and not one of its special items (scored apart). */
static bool cell_candidate(struct ivf_scratch *sc, size_t q, const struct topk_query *query,
			   const uint8_t *eligible, float score, uint32_t item)
{
	return !isnan(score) && (eligible == NULL || eligible[item]) &&
	       !sorted_contains(query->exclude, query->exclude_count, item) &&
	       !sorted_contains(sc->special_items + sc->special_offsets[q], sc->special_counts[q],
				item);
}

/*
 * Offers query q the n scored items of one cell tile (k >= 1). Until the
 * heap is full every candidate enters; then only scores at or above the
 * root's (an equal score wins on a lower index) are looked at.
 */
static void offer_tile(struct ivf_scratch *sc, size_t q, const struct topk_query *query,
		       const uint8_t *eligible, const float *scores, const uint32_t *items,
		       size_t n, size_t k)
{
	uint64_t *heap = sc->heaps + q * sc->max_k;
	size_t *count = &sc->heap_counts[q];
	size_t j = 0;
	float bar;

	for (; j < n && *count < k; j++)
		if (cell_candidate(sc, q, query, eligible, scores[j], items[j]))
			heap_push(heap, count, result_key(scores[j], items[j]));
	if (*count < k)
		return;
	bar = key_result(heap[0]).score;
	while (j < n) {
		size_t block_end;

		j += skip_below(scores + j, n - j, bar);
		block_end = n - j < SCAN_BLOCK ? n : j + SCAN_BLOCK;
		for (; j < block_end; j++) {
			if (!(scores[j] >= bar) ||
			    !cell_candidate(sc, q, query, eligible, scores[j], items[j]))
				continue;
			heap_offer(heap, count, k, result_key(scores[j], items[j]));
			bar = key_result(heap[0]).score;
		}
	}
}

/*
 * Whether no row of the box low/high, and of the ball centre/radius when
 * radius >= 0, can reach `bar` for the query vector: the box bounds q.x by
 * the sum over columns of max(q_j low_j, q_j high_j), the ball by
 * q.centre + |q| radius (Cauchy-Schwarz; in 32 dimensions about a third of
 * the box's bound over a tile of rows alike), and the lesser holds. The
 * sgemm's rounding (at most dim·2^-24 of sum |q_j x_j| per score, which
 * the box bounds, doubled for the bound's own) is added either way, so a
 * row passed over never held a score the scan would have kept: the lists
 * stay what scanning gives. Bounds only widen between layouts (rows that
 * move or leave keep them), so they stay bounds as rows drift. A box that
 * is not finite (no rows, infinite columns) passes nothing over.
 */
static bool ball_box_below(const float *low, const float *high, const float *centre,
			   float radius, size_t dim, const float *vector, float bar)
{
	double bound = 0.0, magnitude = 0.0, ball = 0.0, norm_sq = 0.0;

	for (size_t j = 0; j < dim; j++) {
		double a = (double)vector[j] * low[j], b = (double)vector[j] * high[j];
		bound += a > b ? a : b;
		magnitude += fabs(a) > fabs(b) ? fabs(a) : fabs(b);
	}
	if (radius >= 0.0f) {
		for (size_t j = 0; j < dim; j++) {
			ball += (double)vector[j] * centre[j];
			norm_sq += (double)vector[j] * vector[j];
		}
		ball += sqrt(norm_sq) * (1.0 + 0x1p-20) * radius;
		if (ball < bound) /* false for NaN: the box decides */
			bound = ball;
	}
	return bound + 2.0 * (double)dim * 0x1p-24 * magnitude < (double)bar;
}

/* Whether query q's full list cannot take any row of the box low/high
 * and ball centre/radius (radius < 0: the box alone). */
static bool list_above(const struct ivf *ivf, const struct ivf_scratch *sc, size_t q, size_t k,
		       const float *low, const float *high, const float *centre, float radius)
{
	return sc->heap_counts[q] == k &&
	       ball_box_below(low, high, centre, radius, ivf->dim, sc->packed + q * ivf->dim,
			      key_result(sc->heaps[q * sc->max_k]).score);
}

/* Whether a cell is scanned tile by tile, each tile against its bounds. */
static bool cell_tiled(const struct ivf_cell *cell)
{
	return cell->count > IVF_TILE_ITEMS;
}

/* How many rows ahead scan_coded() fetches the rows its codes could not
 * pass over (as SPECIAL_PREFETCH_AHEAD, below, for the specials). */
#define ROW_PREFETCH_AHEAD 8

/* Fetches ahead a row (its three cache lines) and its item's eligibility. */
static void prefetch_row(const float *row, size_t dim, const uint8_t *eligible, uint32_t item)
{
	__builtin_prefetch(row);
	__builtin_prefetch(row + 16);
	__builtin_prefetch(row + dim - 1);
	if (eligible != NULL)
		__builtin_prefetch(&eligible[item]);
}

/* Fetches ahead slot `slot` of a cell: its row and its item's eligibility. */
static void prefetch_slot(const struct ivf_cell *cell, size_t slot, size_t dim,
			  const uint8_t *eligible)
{
	prefetch_row(cell->rows + slot * dim, dim, eligible, cell->items[slot]);
}

/*
 * Offers query q (its list full) the rows [first, first + n) of a cell
 * whose codes bound their scores at or above its bar: each such row is
 * read and scored exactly (dot()), as the cell's sgemv would have; the
 * others could not have entered (rowcodes.h), so the list is the same.
 */
static void scan_coded(struct ivf_scratch *sc, size_t q, const struct topk_query *query,
		       const uint8_t *eligible, size_t k, const struct ivf_cell *cell,
		       float base_score, size_t first, size_t n, size_t dim)
{
	const float *vector = sc->packed + q * dim;
	float *upper = sc->tile;
	uint64_t *heap = sc->heaps + q * sc->max_k;
	size_t *count = &sc->heap_counts[q];
	uint32_t *passing = sc->passing;
	float bar = key_result(heap[0]).score;
	size_t passing_count = 0;

	rowcodes_bound(cell->codes, cell->scales, first, n, dim, vector, sc->margins[q], base_score,
		       upper);
	/* The slots whose bound reaches the bar as it stands (the bar only
	 * rises, so every row read is among them): listed first, so that each
	 * row, likely not in any cache, is fetched while the ones before it
	 * are scored. */
	for (size_t j = 0; j < n;) {
		size_t block_end;

		j += skip_below(upper + j, n - j, bar);
		block_end = n - j < SCAN_BLOCK ? n : j + SCAN_BLOCK;
		for (; j < block_end; j++) {
			passing[passing_count] = (uint32_t)j;
			passing_count += upper[j] >= bar;
		}
	}
	for (size_t i = 0; i < passing_count && i < ROW_PREFETCH_AHEAD; i++)
		prefetch_slot(cell, first + passing[i], dim, eligible);
	for (size_t i = 0; i < passing_count; i++) {
		size_t j = passing[i];

		if (i + ROW_PREFETCH_AHEAD < passing_count)
			prefetch_slot(cell, first + passing[i + ROW_PREFETCH_AHEAD], dim, eligible);
		if (!(upper[j] >= bar))
			continue;
		uint32_t item = cell->items[first + j];
		float score = dot(vector, cell->rows + (first + j) * dim, dim);
		sc->last_rows_read++;
		if (!(score >= bar) || !cell_candidate(sc, q, query, eligible, score, item))
			continue;
		heap_offer(heap, count, k, result_key(score, item));
		bar = key_result(heap[0]).score;
	}
}

/* Offers query q alone the rows [first, first + n) of cell c: from their
 * codes (coded about the cell's mean) when its list is full (its bar
 * passes over most rows unread), else from one sgemv over the rows. */
static void scan_lone(const struct ivf *ivf, struct ivf_scratch *sc,
		      const struct topk_query *query, const uint8_t *eligible, size_t k, size_t c,
		      size_t first, size_t n, size_t q)
{
	const struct ivf_cell *cell = &ivf->layout.cells[c];
	size_t dim = ivf->dim;

	if (sc->heap_counts[q] == k && !isnan(sc->margins[q])) {
		float base_score = rowcodes_base_score(
		    sc->packed + q * dim, ivf->layout.probe_centroids + c * dim, dim);
		if (!isnan(base_score)) {
			scan_coded(sc, q, query, eligible, k, cell, base_score, first, n, dim);
			return;
		}
	}
	cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)dim, 1.0f, cell->rows + first * dim,
		    (int)dim, sc->packed + q * dim, 1, 0.0f, sc->tile, 1);
	sc->last_rows_read += n;
	offer_tile(sc, q, query, eligible, sc->tile, cell->items + first, n, k);
}

/* Scores one cell against the queries of `users` (one sgemm per tile if
 * they are many, else one per user) and offers each its scores. In a cell
 * of several tiles a tile is scored only for the users whose lists it may
 * enter (its box against their bars). */
static void scan_cell(const struct ivf *ivf, struct ivf_scratch *sc,
		      const struct ivf_query *queries, const uint8_t *eligible, size_t k, size_t c,
		      const uint32_t *users, size_t user_count)
{
	const struct ivf_cell *cell = &ivf->layout.cells[c];
	size_t dim = ivf->dim, gathered = 0;
	bool tiled = cell_tiled(cell);

	for (size_t first = 0; first < cell->count; first += IVF_TILE_ITEMS) {
		size_t n =
		    cell->count - first < IVF_TILE_ITEMS ? cell->count - first : IVF_TILE_ITEMS;
		const uint32_t *scanned = users;
		size_t count = user_count;
		if (tiled) {
			size_t t = first / IVF_TILE_ITEMS;
			count = 0;
			for (size_t u = 0; u < user_count; u++) {
				if (list_above(ivf, sc, users[u], k, cell->tile_low + t * dim,
					       cell->tile_high + t * dim, cell->tile_centre + t * dim,
					       cell->tile_radius[t]))
					sc->skipped_tiles++;
				else
					sc->tile_users[count++] = users[u];
			}
			scanned = sc->tile_users;
			gathered = 0; /* another set of users */
		}
		if (count == 0)
			continue;
		bool shared = count >= ivf->shared_min_users;
		if (shared && gathered != count) {
			for (size_t u = 0; u < count; u++)
				memcpy(sc->gathered + u * dim, sc->packed + (size_t)scanned[u] * dim,
				       dim * sizeof(float));
			gathered = count;
		}
		sc->last_candidates += n * count;
		if (!shared) {
			for (size_t u = 0; u < count; u++)
				scan_lone(ivf, sc, &queries[scanned[u]].base, eligible, k, c, first,
					  n, scanned[u]);
			continue;
		}
		/* tile (users × n) = their queries (users × dim) · rowsᵀ */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)count, (int)n, (int)dim,
			    1.0f, sc->gathered, (int)dim, cell->rows + first * dim, (int)dim, 0.0f,
			    sc->tile, (int)n);
		sc->last_rows_read += n;
		for (size_t u = 0; u < count; u++)
			offer_tile(sc, scanned[u], &queries[scanned[u]].base, eligible,
				   sc->tile + u * n, cell->items + first, n, k);
	}
}

/* Whether query q's full list cannot take any row of cell c. */
static bool cell_below(const struct ivf *ivf, const struct ivf_scratch *sc, size_t q, size_t k,
		       size_t c)
{
	return list_above(ivf, sc, q, k, ivf->layout.box_low + c * ivf->dim,
			  ivf->layout.box_high + c * ivf->dim, NULL, -1.0f);
}

/* Scores cell c for the users of the batch that probe it and whose lists
 * it may enter (its box against their bars); one sgemm for them when
 * they are many. */
static void scan_shared_cell(const struct ivf *ivf, struct ivf_scratch *sc,
			     const struct ivf_query *queries, const uint8_t *eligible, size_t k,
			     size_t c)
{
	size_t user_count = sc->cell_offsets[c + 1] - sc->cell_offsets[c], kept = 0;
	uint32_t *users = sc->cell_users + sc->cell_offsets[c];

	for (size_t u = 0; u < user_count; u++) {
		uint32_t q = users[u];
		if (cell_below(ivf, sc, q, k, c))
			sc->skipped_cells++;
		else
			users[kept++] = q; /* the scratch's own list: compacted */
	}
	if (kept > 0)
		scan_cell(ivf, sc, queries, eligible, k, c, users, kept);
}

/*
 * Scores the probed cells: first the cells many users share, one sgemm for
 * all of them; then the others user by user, each user's cells best first,
 * all users' best cells before anyone's second, so that a heap's bar is
 * high early and few scores need the filters (each a likely cache miss in
 * `eligible`). Cells larger than a tile come last, when the bars are at
 * their highest: learned rows are skewed (at 1M items one cell held a
 * quarter of the items), most users of a batch probe such a cell, and
 * its tiles are scored only for the lists they may enter (scan_cell()).
 * The order changes no list: a heap keeps the same best k in any order.
 */
static void scan_cells(const struct ivf *ivf, struct ivf_scratch *sc,
		       const struct ivf_query *queries, size_t query_count, size_t probes,
		       const uint8_t *eligible, size_t k)
{
	const struct layout *layout = &ivf->layout;

	for (int large = 0; large < 2; large++) {
		for (size_t c = 0; c < layout->nlist; c++)
			if (sc->cell_offsets[c + 1] - sc->cell_offsets[c] >= ivf->shared_min_users &&
			    cell_tiled(&layout->cells[c]) == large)
				scan_shared_cell(ivf, sc, queries, eligible, k, c);
		for (size_t p = 0; p < probes; p++) {
			for (size_t q = 0; q < query_count; q++) {
				uint32_t c = sc->probes[q * probes + p];
				uint32_t user = (uint32_t)q;
				if (c == UINT32_MAX ||
				    sc->cell_offsets[c + 1] - sc->cell_offsets[c] >=
					ivf->shared_min_users ||
				    cell_tiled(&layout->cells[c]) != large)
					continue;
				/* a full heap's bar is often past every row of a cell */
				if (cell_below(ivf, sc, q, k, c)) {
					sc->skipped_cells++;
					continue;
				}
				scan_cell(ivf, sc, queries, eligible, k, c, &user, 1);
			}
		}
	}
}

/* Where item's row is in the cells. */
static const float *item_row(const struct ivf *ivf, uint32_t item)
{
	const struct layout *layout = &ivf->layout;

	return layout->cells[layout->cell_of[item]].rows + (size_t)layout->slot_of[item] * ivf->dim;
}

/*
 * How many distinct specials ahead score_specials() fetches rows: enough to
 * cover a miss to memory, few enough for the core's fill buffers (fetching
 * a whole query's ~400 rows at once, as before, left the first of them
 * still waiting when scored: a lone query has no other query to overlap).
 */
#define SPECIAL_PREFETCH_AHEAD 12

/*
 * Scores each query's special items once: dot product, then its sparse
 * scores in the caller's order (as topk adds them). Two passes per query,
 * so that no load waits on another: first every distinct special's row
 * address (cell and slot, in item order), then the rows, fetched ahead.
 */
static void score_specials(const struct ivf *ivf, struct ivf_scratch *sc,
			   const struct ivf_query *queries, size_t query_count,
			   const uint8_t *eligible, size_t k)
{
	size_t dim = ivf->dim;
	const float **rows = sc->special_rows;

	for (size_t q = 0; q < query_count; q++) {
		const struct topk_query *query = &queries[q].base;
		const uint32_t *distinct = sc->special_items + sc->special_offsets[q];
		size_t distinct_count = sc->special_counts[q], d = 0;
		size_t end = sc->special_offsets[q + 1];
		uint64_t *heap = sc->heaps + q * sc->max_k;

		for (size_t j = 0; j < distinct_count; j++)
			rows[j] = item_row(ivf, distinct[j]);
		for (size_t j = 0; j < distinct_count && j < SPECIAL_PREFETCH_AHEAD; j++)
			prefetch_row(rows[j], dim, eligible, distinct[j]);
		for (size_t s = sc->special_offsets[q]; s < end; d++) {
			uint32_t item = sc->specials[s].item;
			float score = dot(sc->packed + q * dim, rows[d], dim);

			if (d + SPECIAL_PREFETCH_AHEAD < distinct_count)
				prefetch_row(rows[d + SPECIAL_PREFETCH_AHEAD], dim, eligible,
					     distinct[d + SPECIAL_PREFETCH_AHEAD]);
			for (; s < end && sc->specials[s].item == item; s++) {
				if (sc->specials[s].order < query->sparse_count)
					score += query->sparse_scores[sc->specials[s].order];
			}
			sc->last_candidates++;
			if (isnan(score))
				continue;
			uint64_t key = result_key(score, item);
			/* past a full list's bar its filters need not be asked */
			if (sc->heap_counts[q] == k && key <= heap[0])
				continue;
			if ((eligible && !eligible[item]) ||
			    sorted_contains(query->exclude, query->exclude_count, item))
				continue;
			heap_offer(heap, &sc->heap_counts[q], k, key);
		}
	}
}

int ivf_search(struct ivf *ivf, const uint8_t *eligible, const struct ivf_query *queries,
	       size_t query_count, size_t nprobe, size_t k, struct topk_result *results,
	       size_t *result_counts, char *errstr, size_t errstr_size)
{
	return ivf_search_with(ivf, ivf->own, eligible, queries, query_count, nprobe, k, results,
			       result_counts, errstr, errstr_size);
}

int ivf_search_with(const struct ivf *ivf, struct ivf_scratch *sc, const uint8_t *eligible,
		    const struct ivf_query *queries, size_t query_count, size_t nprobe, size_t k,
		    struct topk_result *results, size_t *result_counts, char *errstr,
		    size_t errstr_size)
{
	size_t nlist = ivf->layout.nlist, probes, special_total = 0;

	if (check_search(ivf, queries, query_count, k, results, result_counts, errstr, errstr_size))
		return -1;
	if (scratch_fit(ivf, sc) != 0) {
		snprintf(errstr, errstr_size, "ivf: out of memory for a searcher's scratch");
		return -1;
	}
	sc->last_candidates = 0;
	sc->last_rows_read = 0;
	if (query_count == 0)
		return 0;
	if (k == 0 || ivf->layout.item_count == 0) {
		memset(result_counts, 0, query_count * sizeof *result_counts);
		return 0;
	}
	probes = nprobe < nlist ? nprobe : nlist;
	for (size_t q = 0; q < query_count; q++)
		special_total += queries[q].base.sparse_count + queries[q].extra_count;
	if (reserve_search(ivf, sc, query_count, probes, special_total, errstr, errstr_size))
		return -1;

	set_threads(ivf);
	for (size_t q = 0; q < query_count; q++) {
		memcpy(sc->packed + q * ivf->dim, queries[q].base.vector, ivf->dim * sizeof(float));
		sc->margins[q] = rowcodes_margin(queries[q].base.vector, ivf->dim);
		sc->heap_counts[q] = 0;
	}
	/* Specials first: with their sparse scores they are often good, and a
	 * heap filled early makes most cell scores fall below its bar. */
	collect_specials(ivf, sc, queries, query_count);
	score_specials(ivf, sc, queries, query_count, eligible, k);
	if (probes > 0) {
		choose_probes(ivf, sc, query_count, probes);
		scan_cells(ivf, sc, queries, query_count, probes, eligible, k);
	}

	for (size_t q = 0; q < query_count; q++) {
		uint64_t *heap = sc->heaps + q * sc->max_k;
		size_t count = sc->heap_counts[q];

		heap_drain_best_first(heap, count, results + q * k);
		result_counts[q] = count;
	}
	return 0;
}
