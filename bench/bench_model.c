/*
 * Model benchmark: online updates per second on one thread for
 * d in {32, 64, 128} and negatives in {1, 4, 8}, next to the floating-point
 * operations one update costs, over a Zipf stream of 100k items and 1M users.
 * Medians of several runs. Goal (issue 3): >= 1,000,000 events/s at d=32, 4 negatives.
 */
#include <math.h>
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

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

int main(void)
{
	static const size_t dims[] = {32, 64, 128};
	static const unsigned negatives[] = {1, 4, 8};
	struct model_event *events = malloc(EVENTS * sizeof *events);
	char errstr[256];

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
					/* as the daemon does with a polled batch: prefetch ahead */
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
	return 0;
}
