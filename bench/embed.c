/*
 * Text model benchmark (make bench-embed): texts/s of the bundled e5-small
 * for passages of product-title length (8 to 16 words, 15 to 30 tokens),
 * per kernel (scalar and, when the CPU runs it, avx2), one text a call and
 * batches of 16, on one thread and on every core (one shared instance, one
 * caller thread per core: model/textembed.h says calls are reentrant), plus
 * the latency of one search query. Medians of 3 runs; nothing is asserted.
 *
 *   build/bench/embed MODEL_FILE
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "rng.h"
#include "textembed.h"

#define TITLES 192
#define RUNS   3

static const char *const words[] = {
    "wireless", "headphones", "Kopfhörer", "running", "shoes", "Laufschuhe", "tênis",
    "corrida", "stainless", "steel", "knife", "Kochmesser", "organic", "green", "tea",
    "chá", "verde", "camping", "tent", "waterproof", "4 person", "yoga", "mat", "non-slip",
    "Bürostuhl", "ergonomic", "office", "chair", "black", "white", "blue", "pack of 2",
    "500 ml", "XL", "men", "women", "kids", "2024", "Norda", "Vexel", "无线耳机", "跑步鞋",
};

static char titles[TITLES][160];

struct job {
	struct textembed *te;
	size_t from, to, batch;
	float *out;
};

static void *run_job(void *opaque)
{
	struct job *j = opaque;
	unsigned dim = textembed_dim(j->te);
	const char *ptrs[TITLES];
	for (size_t i = j->from; i < j->to; i += j->batch) {
		size_t n = j->to - i < j->batch ? j->to - i : j->batch;
		if (j->batch == 1) {
			textembed_passage(j->te, titles[i], j->out + i * dim);
			continue;
		}
		for (size_t k = 0; k < n; k++)
			ptrs[k] = titles[i + k];
		textembed_passage_batch(j->te, ptrs, n, j->out + i * dim);
	}
	return NULL;
}

/* texts/s embedding every title once on `threads` threads, batches of `batch`. */
static double texts_per_s(struct textembed *te, unsigned threads, size_t batch, float *out)
{
	double runs[RUNS];
	for (int r = 0; r < RUNS; r++) {
		struct job jobs[64];
		pthread_t tids[64];
		double started = now_s();
		for (unsigned t = 0; t < threads; t++) {
			jobs[t] = (struct job){te, TITLES * t / threads, TITLES * (t + 1) / threads,
					       batch, out};
			pthread_create(&tids[t], NULL, run_job, &jobs[t]);
		}
		for (unsigned t = 0; t < threads; t++)
			pthread_join(tids[t], NULL);
		runs[r] = TITLES / (now_s() - started);
	}
	return median(runs, RUNS);
}

int main(int argc, char **argv)
{
	uint64_t rng = 42;
	size_t total_words = 0;
	unsigned cores = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (argc != 2) {
		fprintf(stderr, "usage: %s MODEL_FILE\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* each figure as it comes, also into a pipe */
	if (cores < 1)
		cores = 1;
	if (cores > 64)
		cores = 64;
	for (int i = 0; i < TITLES; i++) {
		size_t n = 8 + rng_next(&rng) % 9, len = 0;
		for (size_t w = 0; w < n; w++)
			len += (size_t)snprintf(titles[i] + len, sizeof titles[i] - len, "%s%s",
						w ? " " : "",
						words[rng_next(&rng) % (sizeof words / sizeof *words)]);
		total_words += n;
	}
	printf("text model: %d passages of %.1f words on average, %u cores\n", TITLES,
	       (double)total_words / TITLES, cores);
	const char *kernels[] = {"scalar", "avx2"};
	for (int k = 0; k < 2; k++) {
		struct textembed *te;
		char err[1024];
		double started = now_s();
		if (textembed_open_kernel(argv[1], kernels[k], &te, err, sizeof err) != 0) {
			printf("  kernel %s: %s\n", kernels[k], err);
			continue;
		}
		double load_s = now_s() - started;
		unsigned dim = textembed_dim(te);
		float *out = malloc((size_t)TITLES * dim * sizeof *out), q[1024];
		double lat[9];
		for (int r = 0; r < 9; r++) {
			double t0 = now_s();
			textembed_query(te, "wireless noise cancelling headphones", q);
			lat[r] = now_s() - t0;
		}
		printf("  %s (%s kernel), loaded in %.0f ms; one query: %.1f ms\n",
		       textembed_name(te), textembed_kernel(te), load_s * 1000,
		       median(lat, 9) * 1000);
		size_t batches[] = {1, 16};
		for (int b = 0; b < 2; b++) {
			double one = texts_per_s(te, 1, batches[b], out);
			double all = texts_per_s(te, cores, batches[b], out);
			printf("    batch %2zu: 1 thread %7.1f texts/s, %u threads %7.1f texts/s "
			       "(x%.2f)\n",
			       batches[b], one, cores, all, all / one);
		}
		free(out);
		textembed_close(te);
	}
	return 0;
}
