/*
 * Top-k benchmark: refresh throughput (users/s) and GFLOP/s of topk_run()
 * (2·B·N·dim flops per run) for N in {10k, 100k, 1M} items, dim 64, batches
 * B in {1, 32, 256}, next to a bare cblas_sgemm of the same shape (B×dim times
 * dim×N, N output floats per user) measured in the same run on the same
 * threads. Also the same sgemm cut into topk's tiles without the selection,
 * which separates what tiling costs from what selection costs; B = 256 on 1
 * and on 2 threads; and the sweeps behind the default tile size and the
 * thread rule. Medians of several runs; nothing is asserted.
 */
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "topk.h"
#include "bench.h"

#define RUNS             5
#define DIM              64
#define K                50
#define MAX_BATCH        256
#define MAX_ITEMS        1000000
#define EXCLUDES         20  /* per user: items already bought */
#define SPARSES          200 /* per user: co-visitation scores */
#define ELIGIBLE_PERCENT 98

struct workload {
	float *rows;            /* MAX_ITEMS × DIM */
	uint8_t *eligible;      /* MAX_ITEMS */
	float *vectors;         /* MAX_BATCH × DIM */
	uint32_t *exclude;      /* MAX_BATCH × EXCLUDES, sorted per user */
	uint32_t *sparse_items; /* MAX_BATCH × SPARSES */
	float *sparse_scores;
	struct topk_query queries[MAX_BATCH];
	struct topk_result *results; /* MAX_BATCH × K */
	size_t result_counts[MAX_BATCH];
	float *bare_out; /* MAX_BATCH × MAX_ITEMS, the bare sgemm's output */
	float *tile_out; /* MAX_BATCH × largest tile */
};

static uint64_t rng_state = 0x5eed;

static uint32_t rng_u32(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(rng_state >> 32);
}

static float rng_float(void)
{
	return (float)rng_u32() / 4294967296.0f * 2.0f - 1.0f;
}

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static int workload_init(struct workload *w)
{
	memset(w, 0, sizeof *w);
	w->rows = malloc((size_t)MAX_ITEMS * DIM * sizeof(float));
	w->eligible = malloc(MAX_ITEMS);
	w->vectors = malloc((size_t)MAX_BATCH * DIM * sizeof(float));
	w->exclude = malloc((size_t)MAX_BATCH * EXCLUDES * sizeof(uint32_t));
	w->sparse_items = malloc((size_t)MAX_BATCH * SPARSES * sizeof(uint32_t));
	w->sparse_scores = malloc((size_t)MAX_BATCH * SPARSES * sizeof(float));
	w->results = malloc((size_t)MAX_BATCH * K * sizeof(struct topk_result));
	w->bare_out = malloc((size_t)MAX_BATCH * MAX_ITEMS * sizeof(float));
	w->tile_out = malloc((size_t)MAX_BATCH * 65536 * sizeof(float));
	if (!w->rows || !w->eligible || !w->vectors || !w->exclude || !w->sparse_items ||
	    !w->sparse_scores || !w->results || !w->bare_out || !w->tile_out)
		return -1;
	for (size_t i = 0; i < (size_t)MAX_ITEMS * DIM; i++)
		w->rows[i] = rng_float();
	for (size_t i = 0; i < MAX_ITEMS; i++)
		w->eligible[i] = rng_u32() % 100 < ELIGIBLE_PERCENT;
	for (size_t i = 0; i < (size_t)MAX_BATCH * DIM; i++)
		w->vectors[i] = rng_float();
	memset(w->bare_out, 0, (size_t)MAX_BATCH * MAX_ITEMS * sizeof(float));
	memset(w->tile_out, 0, (size_t)MAX_BATCH * 65536 * sizeof(float));
	return 0;
}

/* Points the queries at items below item_count, as a catalogue of that
 * size would. */
static void workload_queries(struct workload *w, size_t item_count)
{
	for (size_t q = 0; q < MAX_BATCH; q++) {
		uint32_t *exclude = w->exclude + q * EXCLUDES;
		uint32_t *sparse_items = w->sparse_items + q * SPARSES;
		float *sparse_scores = w->sparse_scores + q * SPARSES;
		for (size_t e = 0; e < EXCLUDES; e++)
			exclude[e] = rng_u32() % (uint32_t)item_count;
		qsort(exclude, EXCLUDES, sizeof *exclude, compare_u32);
		for (size_t s = 0; s < SPARSES; s++) {
			sparse_items[s] = rng_u32() % (uint32_t)item_count;
			sparse_scores[s] = rng_float() + 1.0f;
		}
		w->queries[q] = (struct topk_query){w->vectors + q * DIM, exclude,       EXCLUDES,
						    sparse_items,         sparse_scores, SPARSES};
	}
}

static void workload_free(struct workload *w)
{
	free(w->rows);
	free(w->eligible);
	free(w->vectors);
	free(w->exclude);
	free(w->sparse_items);
	free(w->sparse_scores);
	free(w->results);
	free(w->bare_out);
	free(w->tile_out);
}

struct measure {
	double topk_s, tiled_s, bare_s; /* medians */
	int threads;
	size_t tile_items;
};

static struct topk *engine(size_t tile_items, int threads)
{
	char errstr[256];
	struct topk_config config = {MAX_BATCH, K, tile_items, threads};
	struct topk *topk = topk_new(&config, errstr, sizeof errstr);
	if (topk == NULL) {
		fprintf(stderr, "bench_topk: %s\n", errstr);
		exit(1);
	}
	return topk;
}

static void run_topk(struct topk *topk, struct workload *w, size_t items, size_t batch)
{
	char errstr[256];
	if (topk_run(topk, w->rows, items, DIM, DIM, w->eligible, w->queries, batch, K, w->results,
		     w->result_counts, errstr, sizeof errstr)) {
		fprintf(stderr, "bench_topk: %s\n", errstr);
		exit(1);
	}
}

/* The whole B×N score matrix in one call: the ceiling topk is held to. */
static void run_bare(struct workload *w, size_t items, size_t batch)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)batch, (int)items, DIM, 1.0f,
		    w->vectors, DIM, w->rows, DIM, 0.0f, w->bare_out, (int)items);
}

/* topk's sgemm calls alone: the same tiles, no sparse scores, no selection. */
static void run_tiled(struct workload *w, size_t items, size_t batch, size_t tile)
{
	for (size_t first = 0; first < items; first += tile) {
		size_t n = items - first < tile ? items - first : tile;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)batch, (int)n, DIM, 1.0f,
			    w->vectors, DIM, w->rows + first * DIM, DIM, 0.0f, w->tile_out, (int)n);
	}
}

/* What measure() times besides topk itself. */
enum baselines { TOPK_ONLY = 0, WITH_TILED = 1, WITH_BARE = 2 };

/* Seconds per call of `run`, over enough calls to last SAMPLE_S. */
#define SAMPLE_S 0.03

/*
 * Times topk and the baselines asked for, interleaved sample by sample so
 * that drift hits all alike. A sample repeats a call until it has lasted
 * SAMPLE_S (short runs are otherwise all noise); the median sample counts.
 */
static struct measure measure(struct topk *topk, struct workload *w, size_t items, size_t batch,
			      int baselines)
{
	double topk_s[RUNS], tiled_s[RUNS], bare_s[RUNS];
	double t0 = now_s();
	struct measure m = {0};
	int reps;

	run_topk(topk, w, items, batch); /* warm up, and let topk pick its threads */
	reps = (int)(SAMPLE_S / (now_s() - t0)) + 1;
	m.threads = topk_last_threads(topk);
	m.tile_items = topk_last_tile_items(topk);
	openblas_set_num_threads(m.threads);
	if (baselines & WITH_TILED)
		run_tiled(w, items, batch, m.tile_items);
	if (baselines & WITH_BARE)
		run_bare(w, items, batch);
	for (int r = 0; r < RUNS; r++) {
		double t1, t2, t3;

		t0 = now_s();
		for (int i = 0; i < reps; i++)
			run_topk(topk, w, items, batch);
		t1 = now_s();
		for (int i = 0; i < reps && (baselines & WITH_TILED); i++)
			run_tiled(w, items, batch, m.tile_items);
		t2 = now_s();
		for (int i = 0; i < reps && (baselines & WITH_BARE); i++)
			run_bare(w, items, batch);
		t3 = now_s();
		topk_s[r] = (t1 - t0) / reps;
		tiled_s[r] = (t2 - t1) / reps;
		bare_s[r] = (t3 - t2) / reps;
	}
	m.topk_s = median(topk_s, RUNS);
	m.tiled_s = median(tiled_s, RUNS);
	m.bare_s = median(bare_s, RUNS);
	return m;
}

static double gflops(size_t items, size_t batch, double seconds)
{
	return 2.0 * (double)batch * (double)items * DIM / seconds / 1e9;
}

static void print_row(size_t items, size_t batch, const struct measure *m)
{
	printf("  %8zu %5zu %3d %5zu %11.0f %9.1f %9.1f %9.1f %9.2f %10.2f\n", items, batch,
	       m->threads, m->tile_items, (double)batch / m->topk_s,
	       gflops(items, batch, m->topk_s), gflops(items, batch, m->tiled_s),
	       gflops(items, batch, m->bare_s), m->bare_s / m->topk_s, m->tiled_s / m->topk_s);
}

int main(int argc, char **argv)
{
	static const size_t item_counts[] = {10000, 100000, 1000000};
	static const size_t batches[] = {1, 32, 256};
	static const size_t sweep_batches[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
	static const size_t sweep_tiles[] = {512, 1024, 2048, 4096, 8192, 16384};
	struct workload w;
	struct topk *by_shape, *pinned[3];

	struct blas_report blas;
	char errstr[512], kernel[384];
	(void)argc;
	if (blas_choose(getenv("STREAMREC_BLAS_KERNEL"), argv, &blas, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "bench_topk: %s\n", errstr);
		return 1;
	}
	blas_describe(&blas, kernel, sizeof kernel);
	if (workload_init(&w)) {
		fprintf(stderr, "bench_topk: out of memory\n");
		return 1;
	}
	by_shape = engine(0, 0);
	pinned[1] = engine(0, 1);
	pinned[2] = engine(0, 2);

	printf(
	    "topk refresh (dim %d, k %d; per user %d exclusions, %d sparse scores; %d%% of items "
	    "eligible;\n  %s, %d threads at start; median of %d runs)\n",
	    DIM, K, EXCLUDES, SPARSES, ELIGIBLE_PERCENT, kernel,
	    openblas_get_num_threads(), RUNS);
	printf(
	    "  thr, tile: the row's threads (topk's choice, then pinned to 1 and 2 at B=256) and "
	    "item tile;\n  bare and tiled run on the same OpenBLAS threads\n");
	printf("  GF/s: 2*B*N*dim / time. tiled = topk's sgemm calls alone; bare = one sgemm, "
	       "B x N output\n");
	printf("  %8s %5s %3s %5s %11s %9s %9s %9s %9s %10s\n", "items", "batch", "thr", "tile",
	       "users/s", "topk", "tiled", "bare", "topk/bare", "topk/tiled");
	for (size_t n = 0; n < sizeof item_counts / sizeof *item_counts; n++) {
		workload_queries(&w, item_counts[n]);
		for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
			struct measure m = measure(by_shape, &w, item_counts[n], batches[b],
						   WITH_TILED | WITH_BARE);
			print_row(item_counts[n], batches[b], &m);
		}
		for (int threads = 1; threads <= 2; threads++) {
			struct measure m = measure(pinned[threads], &w, item_counts[n], 256,
						   WITH_TILED | WITH_BARE);
			print_row(item_counts[n], 256, &m);
		}
	}

	printf("\nthread rule: topk GF/s by items and batch, pinned to 1 and 2 threads\n");
	printf("  %5s", "batch");
	for (size_t n = 0; n < sizeof item_counts / sizeof *item_counts; n++)
		printf("  %7zu:1thr %7zu:2thr", item_counts[n], item_counts[n]);
	printf("\n");
	for (size_t b = 0; b < sizeof sweep_batches / sizeof *sweep_batches; b++) {
		printf("  %5zu", sweep_batches[b]);
		for (size_t n = 0; n < sizeof item_counts / sizeof *item_counts; n++) {
			workload_queries(&w, item_counts[n]);
			for (int threads = 1; threads <= 2; threads++) {
				struct measure m = measure(pinned[threads], &w, item_counts[n],
							   sweep_batches[b], TOPK_ONLY);
				printf(" %12.1f",
				       gflops(item_counts[n], sweep_batches[b], m.topk_s));
			}
		}
		printf("\n");
	}

	workload_queries(&w, 100000);
	printf("\ntile size: topk GF/s at 100000 items by tile, batch and threads\n");
	printf("  %6s %9s %9s %9s %9s %9s\n", "tile", "B=1 1thr", "B=32 1thr", "B=32 2thr",
	       "B=256 1thr", "B=256 2thr");
	for (size_t t = 0; t < sizeof sweep_tiles / sizeof *sweep_tiles; t++) {
		static const struct {
			size_t batch;
			int threads;
		} columns[] = {{1, 1}, {32, 1}, {32, 2}, {256, 1}, {256, 2}};
		printf("  %6zu", sweep_tiles[t]);
		for (size_t c = 0; c < sizeof columns / sizeof *columns; c++) {
			struct topk *tiled = engine(sweep_tiles[t], columns[c].threads);
			struct measure m = measure(tiled, &w, 100000, columns[c].batch, TOPK_ONLY);
			printf(" %9.1f", gflops(100000, columns[c].batch, m.topk_s));
			topk_free(tiled);
		}
		printf("\n");
	}

	topk_free(by_shape);
	topk_free(pinned[1]);
	topk_free(pinned[2]);
	workload_free(&w);
	return 0;
}
