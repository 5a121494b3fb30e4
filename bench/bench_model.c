/*
 * Model benchmark (`bench_model [queries|scale]`: that section alone):
 * online updates per second on one thread for d in {32, 64, 128} and negatives in {1, 4, 8}, next
 * to the floating-point operations one update costs, over a Zipf stream of 100k items and 1M users.
 * Medians of several runs. Goal (issue 3): >= 1,000,000 events/s at d=32, 4 negatives.
 *
 * Then user queries (model_query(): the query vector and the co-visitation
 * sums of the user's recent items' neighbours, what a refresh round
 * prepares on the event loop's thread for each list) at 100k and 1M items,
 * on a stream of sessions: each session browses one of CLUSTERS clusters
 * of CLUSTER items placed at random in the catalogue, so the neighbours a
 * query sums lie anywhere in it, as a real catalogue's do; and at 1M items
 * on a stream whose sessions browse the whole catalogue, Zipf-distributed
 * (exponent 1, the popular items placed at random), so that the popular items' neighbour lists fill
 * up (model.covis_neighbours) and a query sums thousands of neighbours to
 * keep model.covis_candidates of them, as the daemon's do on `streamrec
 * gen`'s stream.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "bench.h"

#define RUNS   3
#define EVENTS 400000
#define ITEMS  100000
#define USERS  1000000
/* the query section: sessions of SESSION events in clusters of CLUSTER items */
#define QUERY_EVENTS 2000000
#define QUERY_USERS  100000
#define QUERIES      50000
#define SESSION      8
#define CLUSTER      2000
#define CLUSTERS     100

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

/* The session stream: user u browses cluster c(u, session) of CLUSTER items. */
static struct model_event session_event(uint64_t i, size_t items)
{
	uint64_t session = i / SESSION, r = mix(i + 101);
	uint32_t user = (uint32_t)(mix(session + 3) % QUERY_USERS);
	/* CLUSTERS clusters at random places of the catalogue */
	uint64_t cluster = mix(mix(session * 31 + 7) % CLUSTERS + 5) % (items / CLUSTER);
	/* within the cluster, a skew towards its first items */
	double u = (double)(r >> 11) / 9007199254740992.0;
	uint32_t item = (uint32_t)(cluster * CLUSTER + (uint64_t)(u * u * CLUSTER));
	return (struct model_event){.user = user,
				    .item = item,
				    .user_hash = mix(user + 7),
				    .item_hash = mix(item + 11),
				    .type = (enum event_type)(1 + r % 3),
				    .ts_ms = 1700000000000LL + (int64_t)i * 10};
}

/* The skewed stream: sessions over the whole catalogue, the item of rank
 * r (r = items^u, about Zipf with exponent 1) placed at random. */
static struct model_event skewed_event(uint64_t i, size_t items)
{
	struct model_event e = session_event(i, items);
	double u = (double)(mix(i + 977) >> 11) / 9007199254740992.0;
	uint64_t rank = (uint64_t)pow((double)items, u) - 1;
	e.item = (uint32_t)((rank * 2654435761u) % items);
	e.item_hash = mix(e.item + 11);
	return e;
}

/* Queries a second at 100k and 1M items, one thread, medians of RUNS. */
static int bench_queries(void)
{
	static const struct {
		size_t items;
		bool skewed;
	} scenarios[] = {{100000, false}, {1000000, false}, {1000000, true}};
	char errstr[256];
	printf("\nuser queries (model_query, 1 thread, %d session events over %d users, "
	       "%d queries, median of %d runs)\n",
	       QUERY_EVENTS, QUERY_USERS, QUERIES, RUNS);
	printf("| items     | stream   | queries/s  | µs a query | co-visitation items a query |\n");
	printf("|-----------|----------|------------|------------|-----------------------------|\n");
	for (size_t ci = 0; ci < sizeof scenarios / sizeof *scenarios; ci++) {
		size_t items = scenarios[ci].items;
		struct model_config config;
		model_config_default(&config);
		struct model *m = model_new(&config, errstr, sizeof errstr);
		if (m == NULL) {
			fprintf(stderr, "bench: %s\n", errstr);
			return -1;
		}
		for (uint64_t i = 0; i < QUERY_EVENTS; i++) {
			struct model_event e = scenarios[ci].skewed ? skewed_event(i, items)
							      : session_event(i, items);
			if (model_learn(m, &e, errstr, sizeof errstr) != 0) {
				fprintf(stderr, "bench: %s\n", errstr);
				model_free(m);
				return -1;
			}
		}
		size_t capacity = model_sparse_capacity(m);
		float *vector = malloc((config.dim + 1) * sizeof *vector);
		uint32_t *sparse = malloc(capacity * sizeof *sparse);
		uint32_t *because = malloc(capacity * sizeof *because);
		float *scores = malloc(capacity * sizeof *scores);
		if (vector == NULL || sparse == NULL || because == NULL || scores == NULL) {
			fprintf(stderr, "bench: out of memory\n");
			free(vector), free(sparse), free(because), free(scores);
			model_free(m);
			return -1;
		}
		double rates[RUNS];
		uint64_t sparse_total = 0;
		for (int run = 0; run < RUNS; run++) {
			sparse_total = 0;
			double t0 = now_s();
			for (uint64_t q = 0; q < QUERIES; q++) {
				struct model_query query = {.vector = vector,
							    .sparse_items = sparse,
							    .sparse_scores = scores,
							    .sparse_because = because};
				model_query(m, (uint32_t)(mix(q + 1000u * (uint64_t)run) % QUERY_USERS),
					    &query);
				sparse_total += query.sparse_count;
			}
			rates[run] = QUERIES / (now_s() - t0);
		}
		qsort(rates, RUNS, sizeof *rates, compare_double);
		printf("| %-9zu | %-8s | %10.0f | %10.1f | %27.0f |\n", items,
		       scenarios[ci].skewed ? "skewed" : "clusters", rates[RUNS / 2],
		       1e6 / rates[RUNS / 2], (double)sparse_total / QUERIES);
		free(vector), free(sparse), free(because), free(scores);
		model_free(m);
	}
	return 0;
}

/*
 * Updates at catalogue scale (`bench_model scale`): d=32, 4 negatives, the
 * default replay, on the skewed session stream over 100k and 1M items and
 * 1M users, as the daemon's loop meets it at 1M items: every row a
 * training step reads is then likely a cache miss, which the 100k-item
 * table above hides.
 */
static int bench_scale(void)
{
	static const size_t catalogues[] = {100000, 1000000};
	char errstr[256];
	printf("\nmodel updates at catalogue scale (1 thread, d=32, 4 negatives, %d skewed "
	       "session events over 1M users after as many to warm, median of %d runs)\n",
	       EVENTS, RUNS);
	printf("| items     | events/s   | µs an event |\n");
	printf("|-----------|------------|-------------|\n");
	for (size_t ci = 0; ci < sizeof catalogues / sizeof *catalogues; ci++) {
		size_t items = catalogues[ci];
		double rates[RUNS];
		struct model_config config;
		model_config_default(&config);
		config.dim = 32; /* as the table's title says, whatever the defaults become */
		config.negatives = 4;
		for (int run = 0; run < RUNS; run++) {
			struct model *m = model_new(&config, errstr, sizeof errstr);
			if (m == NULL) {
				fprintf(stderr, "bench: %s\n", errstr);
				return -1;
			}
			double t0 = 0;
			for (uint64_t i = 0; i < 2 * (uint64_t)EVENTS; i++) {
				if (i == EVENTS)
					t0 = now_s();
				struct model_event e = skewed_event(i, items);
				e.user = (uint32_t)(mix(i / SESSION + 3) % USERS); /* a session's */
				e.user_hash = mix(e.user + 7);
				if (model_learn(m, &e, errstr, sizeof errstr) != 0) {
					fprintf(stderr, "bench: %s\n", errstr);
					model_free(m);
					return -1;
				}
			}
			rates[run] = EVENTS / (now_s() - t0);
			model_free(m);
		}
		qsort(rates, RUNS, sizeof *rates, compare_double);
		printf("| %-9zu | %10.0f | %11.2f |\n", items, rates[RUNS / 2],
		       1e6 / rates[RUNS / 2]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const size_t dims[] = {32, 64, 128};
	static const unsigned negatives[] = {1, 4, 8};
	char errstr[256];
	if (argc == 2 && strcmp(argv[1], "queries") == 0)
		return bench_queries() == 0 ? 0 : 1; /* the query section alone */
	if (argc == 2 && strcmp(argv[1], "scale") == 0)
		return bench_scale() == 0 ? 0 : 1; /* the catalogue-scale section alone */
	if (argc > 1) {
		fprintf(stderr, "usage: %s [queries|scale]\n", argv[0]);
		return 2;
	}
	struct model_event *events = malloc(EVENTS * sizeof *events);
	if (events == NULL) {
		fprintf(stderr, "bench: out of memory\n");
		return 1;
	}

	/* one stream for every configuration: Zipf items, uniform users, views to purchases */
	for (uint64_t i = 0; i < EVENTS; i++) {
		uint64_t r = mix(i + 1);
		double u = (double)(r >> 11) / 9007199254740992.0;
		uint32_t item = (uint32_t)(exp(u * log(ITEMS + 1.0)) - 1.0);
		uint32_t user = (uint32_t)(mix(r) % USERS);
		events[i] = (struct model_event){.user = user,
						 .item = item < ITEMS ? item : ITEMS - 1,
						 .user_hash = mix(user + 7),
						 .item_hash = mix(item + 11),
						 .type = (enum event_type)(1 + r % 6),
						 .ts_ms = 1700000000000LL + (int64_t)i};
	}
	printf("model updates (1 thread, %d events over %d items / %d users, median of %d runs)\n",
	       EVENTS, ITEMS, USERS, RUNS);
	printf("| d   | negatives | events/s   | flops/update | GFLOP/s |\n");
	printf("|-----|-----------|------------|--------------|---------|\n");
	for (size_t di = 0; di < 3; di++) {
		for (size_t ni = 0; ni < 3; ni++) {
			double rates[RUNS];
			struct model_config config;
			model_config_default(&config);
			config.dim = dims[di];
			config.negatives = negatives[ni];
			for (int run = 0; run < RUNS; run++) {
				struct model *m = model_new(&config, errstr, sizeof errstr);
				if (m == NULL) {
					fprintf(stderr, "bench: %s\n", errstr);
					return 1;
				}
				/* warm the rows so growth is not timed */
				for (uint64_t i = 0; i < EVENTS / 4; i++)
					model_learn(m, &events[i], errstr, sizeof errstr);
				double t0 = now_s();
				for (uint64_t i = EVENTS / 4; i < EVENTS; i++) {
					/* prefetch 8 events ahead, as an offline replay could
					 * (the daemon does not: it takes one polled message at a
					 * time, so `scale` below, without it, is its figure) */
					if (i + 8 < EVENTS)
						model_prefetch(m, &events[i + 8]);
					model_learn(m, &events[i], errstr, sizeof errstr);
				}
				rates[run] = (EVENTS - EVENTS / 4) / (now_s() - t0);
				model_free(m);
			}
			qsort(rates, RUNS, sizeof *rates, compare_double);
			double d = (double)dims[di], n = negatives[ni], L = config.recent_items;
			/* scores and grad_h: 4d per target; target rows: 4d; p: 4d; intent: L(d +
			 * 4d) */
			double flops = (1 + n) * 8 * d + 4 * d + L * 5 * d;
			printf("| %-3zu | %-9u | %10.0f | %12.0f | %7.2f |\n", dims[di],
			       negatives[ni], rates[RUNS / 2], flops,
			       rates[RUNS / 2] * flops / 1e9);
		}
	}
	free(events);
	return bench_scale() == 0 && bench_queries() == 0 ? 0 : 1;
}
