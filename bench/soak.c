/*
 * Soak benchmark of the embedding life cycle (README, "Embedding life
 * cycle"): an endless stream of churning users and items learned through
 * the state (id maps, models, write-behind commits to RocksDB, a life-cycle
 * sweep before every commit, as streamrecd does), printing live users and
 * items, model slots and item rows, the process's RSS and the state's size
 * on disk as it goes, once without a bound and once with
 * lifecycle.max_users, user_ttl, max_items and item_ttl.
 *
 * The stream: a window of `window` active users slides forward by one user
 * every `user_every` events, each event by a random user of the window (so
 * a user stays window × user_every events and acts about user_every times,
 * then never again), on a window of `items` items that slides forward by
 * one item every `item_every` events (0: a fixed catalogue), so items come,
 * are popular a while, then are never named again; event time advances
 * 1 ms per event.
 *
 * Each mode is best run in a process of its own (--mode unbounded, then
 * --mode bounded: what `make bench-soak` does): memory freed by one run
 * stays with the process (malloc, RocksDB) and would inflate the next
 * run's RSS.
 *
 * usage: soak [--mode both|bounded|unbounded] [--events N] [--window N]
 *             [--user-every N] [--items N] [--item-every N] [--max-users N]
 *             [--ttl-ms N] [--max-items N] [--item-ttl-ms N]
 *             [--report-every N] [--commit-every N] [--dir DIR]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "state.h"
#include "bench.h"

struct soak_config {
	size_t events, window, items, max_users, report_every, commit_every, user_every;
	size_t item_every, max_items;
	const char *mode;
	uint64_t ttl_ms, item_ttl_ms;
	const char *dir;
};

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	return kib;
}

static void remove_dir(const char *dir)
{
	char command[512];
	snprintf(command, sizeof command, "rm -rf '%s'", dir);
	if (system(command) != 0)
		fprintf(stderr, "soak: cannot remove %s\n", dir);
}

static uint64_t next_random(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static void fail(const char *what, const char *errstr)
{
	fprintf(stderr, "soak: %s: %s\n", what, errstr);
	exit(1);
}

static void run(const struct soak_config *c, bool bounded)
{
	struct model_config config;
	struct state_config sc = {.dir = c->dir, .variants = &config, .variant_count = 1};
	struct state_lifecycle lifecycle = {.user_ttl_ms = bounded ? c->ttl_ms : 0,
					    .max_users = bounded ? c->max_users : 0,
					    .item_ttl_ms = bounded ? c->item_ttl_ms : 0,
					    .max_items = bounded ? c->max_items : 0};
	char errstr[512], user[32], item[32];
	uint64_t random_state = 2026;
	const int64_t t0 = 1700000000000;
	model_config_default(&config);
	remove_dir(c->dir);
	struct state *state = state_open(&sc, errstr, sizeof errstr);
	if (state == NULL)
		fail("state_open", errstr);
	printf("\n%s: max_users %zu, user_ttl %" PRIu64 " ms, max_items %zu, item_ttl %" PRIu64
	       " ms\n",
	       bounded ? "bounded" : "unbounded", lifecycle.max_users, lifecycle.user_ttl_ms,
	       lifecycle.max_items, lifecycle.item_ttl_ms);
	printf("%9s %9s %7s %7s %8s %8s %9s %7s %7s %8s %8s %9s %8s\n", "events", "users_met",
	       "live", "slots", "expired", "evicted", "items_met", "live_i", "rows_i", "expired_i",
	       "evicted_i", "state_MiB", "RSS_MiB");
	double start = now_s();
	for (size_t e = 1; e <= c->events; e++) {
		size_t base = e / c->user_every; /* a user enters the window every user_every events */
		size_t u = base + next_random(&random_state) % c->window;
		snprintf(user, sizeof user, "soak-user-%zu", u);
		size_t item_base = c->item_every > 0 ? e / c->item_every : 0;
		snprintf(item, sizeof item, "soak-item-%" PRIu64,
			 item_base + next_random(&random_state) % c->items);
		if (state_learn(state, user, item, EVENT_CLICK, t0 + (int64_t)e, NULL, errstr,
				sizeof errstr) != 0)
			fail("state_learn", errstr);
		state_mark_offset(state, "soak", 0, (int64_t)e);
		if (e % c->commit_every == 0) {
			if (bounded && state_lifecycle_sweep(state, &lifecycle, INT64_MAX, NULL,
							     NULL, errstr, sizeof errstr) < 0)
				fail("state_lifecycle_sweep", errstr);
			if (state_commit_async(state, errstr, sizeof errstr) != 0)
				fail("state_commit", errstr);
		}
		if (e % c->report_every == 0) {
			struct state_lifecycle_counts counts;
			state_lifecycle_counts(state, &counts);
			printf("%9zu %9" PRIu64 " %7zu %7zu %8" PRIu64 " %8" PRIu64 " %9" PRIu64
			       " %7zu %7zu %9" PRIu64 " %9" PRIu64 " %9.1f %8.1f\n",
			       e, counts.admitted_users, counts.live_users,
			       model_user_count(state_model(state, 0)), counts.expired_users,
			       counts.evicted_users, counts.admitted_items, counts.live_items,
			       model_item_count(state_model(state, 0)), counts.expired_items,
			       counts.evicted_items, (double)state_bytes(state) / 1048576.0,
			       (double)rss_kib() / 1024.0);
			fflush(stdout);
		}
	}
	if (state_commit(state, errstr, sizeof errstr) != 0)
		fail("state_commit", errstr);
	printf("%zu events in %.1f s (%.0f events/s)\n", c->events, now_s() - start,
	       (double)c->events / (now_s() - start));
	state_close(state);
	remove_dir(c->dir);
}

int main(int argc, char **argv)
{
	struct soak_config c = {.events = 4000000,
				.window = 2000,
				.items = 1000,
				.max_users = 4000,
				.ttl_ms = 60000,
				.item_every = 100,
				.max_items = 2000,
				.item_ttl_ms = 60000,
				.report_every = 250000,
				.commit_every = 20000,
				.user_every = 20,
				.dir = "/tmp/streamrec-soak",
				.mode = "both"};
	if (argc % 2 == 0) {
		fprintf(stderr, "soak: option %s has no value\n", argv[argc - 1]);
		return 2;
	}
	for (int i = 1; i + 1 < argc; i += 2) {
		unsigned long long v = strtoull(argv[i + 1], NULL, 10);
		if (strcmp(argv[i], "--events") == 0)
			c.events = v;
		else if (strcmp(argv[i], "--window") == 0)
			c.window = v;
		else if (strcmp(argv[i], "--items") == 0)
			c.items = v;
		else if (strcmp(argv[i], "--max-users") == 0)
			c.max_users = v;
		else if (strcmp(argv[i], "--ttl-ms") == 0)
			c.ttl_ms = v;
		else if (strcmp(argv[i], "--report-every") == 0)
			c.report_every = v;
		else if (strcmp(argv[i], "--commit-every") == 0)
			c.commit_every = v;
		else if (strcmp(argv[i], "--item-every") == 0)
			c.item_every = v;
		else if (strcmp(argv[i], "--max-items") == 0)
			c.max_items = v;
		else if (strcmp(argv[i], "--item-ttl-ms") == 0)
			c.item_ttl_ms = v;
		else if (strcmp(argv[i], "--user-every") == 0)
			c.user_every = v;
		else if (strcmp(argv[i], "--dir") == 0)
			c.dir = argv[i + 1];
		else if (strcmp(argv[i], "--mode") == 0)
			c.mode = argv[i + 1];
		else {
			fprintf(stderr, "soak: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (c.events == 0 || c.window == 0 || c.items == 0 || c.report_every == 0 ||
	    c.commit_every == 0 || c.user_every == 0) {
		fprintf(stderr, "soak: --events, --window, --items, --report-every, "
				"--commit-every and --user-every must be positive\n");
		return 2;
	}
	printf("soak: %zu events, a window of %zu active users sliding by one every %zu events, "
	       "a window of %zu items sliding by one every %zu events (0: fixed), a commit every "
	       "%zu events\n",
	       c.events, c.window, c.user_every, c.items, c.item_every, c.commit_every);
	bool both = strcmp(c.mode, "both") == 0;
	if (!both && strcmp(c.mode, "bounded") != 0 && strcmp(c.mode, "unbounded") != 0) {
		fprintf(stderr, "soak: --mode: both, bounded or unbounded, got %s\n", c.mode);
		return 2;
	}
	if (both || strcmp(c.mode, "unbounded") == 0)
		run(&c, false);
	if (both || strcmp(c.mode, "bounded") == 0)
		run(&c, true);
	return 0;
}
