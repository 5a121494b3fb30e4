/*
 * State benchmark: the cost of persistence. Events/s learned through the
 * state (id maps, model, write-behind commits of changed rows and offsets to
 * RocksDB) beside the same learning without commits, at several commit
 * intervals; bytes per user and per item row; restart time of a state with
 * 1M users and 100k items. Medians of several runs where it matters.
 * Goal (issue 4): persistence costs under 20% of model-only throughput at
 * the default commit interval.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventlog.h"
#include "model.h"
#include "state.h"
#include "synth.h"
#include "bench.h"

static struct event_log *generate(uint32_t users, uint32_t items, size_t events)
{
	struct synth_config sc = synth_config_default();
	struct event_log *log = NULL;
	char errstr[256];
	sc.users = users;
	sc.items = items;
	sc.clusters = 50;
	sc.events = events;
	struct synth *synth = synth_new(&sc, errstr, sizeof errstr);
	if (synth == NULL || synth_generate(synth, &log, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "bench: %s\n", errstr);
		exit(1);
	}
	synth_free(synth);
	return log;
}

static void remove_dir(const char *dir)
{
	char command[512];
	snprintf(command, sizeof command, "rm -rf '%s'", dir);
	if (system(command) != 0)
		fprintf(stderr, "bench: cannot remove %s\n", dir);
}

/* Opens the state in dir with the default model (ids, every item row,
 * globals), timed in *seconds (may be NULL); fresh: the directory removed
 * first. Exits on failure. */
static struct state *open_state(const char *dir, bool fresh, double *seconds)
{
	struct model_config config;
	struct state_config sc = {.dir = dir, .variants = &config, .variant_count = 1};
	char errstr[512];
	model_config_default(&config);
	if (fresh)
		remove_dir(dir);
	double t0 = now_s();
	struct state *state = state_open(&sc, errstr, sizeof errstr);
	if (seconds != NULL)
		*seconds = now_s() - t0;
	if (state == NULL) {
		fprintf(stderr, "bench: %s\n", errstr);
		exit(1);
	}
	return state;
}

/* events/s learning log through a fresh state, committing every `every` events (0: never) */
static double run(const struct event_log *log, size_t every, const char *dir, double *commit_s)
{
	char errstr[512];
	struct state *state = open_state(dir, true, NULL);
	*commit_s = 0;
	double t0 = now_s();
	for (size_t e = 0; e < log->count; e++) {
		if (state_learn(state, log->user_ids[log->user[e]], log->item_ids[log->item[e]],
				(enum event_type)log->type[e], log->ts_ms[e], NULL, errstr,
				sizeof errstr) != 0) {
			fprintf(stderr, "bench: %s\n", errstr);
			exit(1);
		}
		if (every > 0) {
			state_mark_offset(state, "events", 0, (int64_t)e);
			if ((e + 1) % every == 0 || e + 1 == log->count) {
				double c0 = now_s();
				if (state_commit_async(state, errstr, sizeof errstr) != 0) {
					fprintf(stderr, "bench: %s\n", errstr);
					exit(1);
				}
				*commit_s += now_s() - c0;
			}
		}
	}
	if (state_flush(state, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "bench: %s\n", errstr);
		exit(1);
	}
	double rate = (double)log->count / (now_s() - t0);
	state_close(state);
	return rate;
}

/*
 * A state of 1M users and 100k items, every user with two events, committed
 * every 250k events, closed; with flush, its memtables written to SST files
 * first (what streamrecd's clean stop does), timed.
 */
static void build_restart_state(const char *dir, bool flush, double *flush_s, uint64_t *bytes)
{
	char errstr[512], user[32], item[32];
	struct state *state = open_state(dir, true, NULL);
	for (uint64_t e = 0; e < 2000000; e++) {
		snprintf(user, sizeof user, "u%llu", (unsigned long long)(e / 2));
		snprintf(item, sizeof item, "i%llu",
			 (unsigned long long)((e * 2654435761u) % 100000));
		if (state_learn(state, user, item, EVENT_VIEW, 1700000000000LL + (int64_t)e, NULL,
				errstr, sizeof errstr) != 0 ||
		    state_mark_offset(state, "events", 0, (int64_t)e) != 0 ||
		    ((e + 1) % 250000 == 0 &&
		     state_commit_async(state, errstr, sizeof errstr) != 0)) {
			fprintf(stderr, "bench: %s\n", errstr);
			exit(1);
		}
	}
	if (state_commit(state, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "bench: %s\n", errstr);
		exit(1);
	}
	if (flush) {
		double t0 = now_s();
		if (state_flush_memtables(state, bytes, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "bench: %s\n", errstr);
			exit(1);
		}
		*flush_s = now_s() - t0;
	}
	state_close(state);
}

/* Seconds to open the state in dir. */
static double time_open(const char *dir)
{
	double seconds;
	state_close(open_state(dir, false, &seconds));
	return seconds;
}

int main(void)
{
	const char *dir = "/tmp/streamrec-bench-state";
	static const size_t intervals[] = {0, 200000, 50000, 10000};
	enum { RUNS = 3 };
	struct event_log *log = generate(100000, 20000, 1000000);

	printf("state: 1M events, 100k users, 20k items, d=32, 1 thread, WAL on, median of %d\n",
	       RUNS);
	printf(
	    "(commits build their batch here, RocksDB writes it on the state's writer thread)\n");
	printf("| commit every | events/s   | vs no commits | time in commits |\n");
	printf("|--------------|------------|---------------|-----------------|\n");
	double baseline = 0;
	for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
		double rates[RUNS], commit_share[RUNS];
		for (int r = 0; r < RUNS; r++) {
			double commit_s;
			rates[r] = run(log, intervals[i], dir, &commit_s);
			commit_share[r] = commit_s * rates[r] / (double)log->count;
		}
		qsort(rates, RUNS, sizeof *rates, compare_double);
		qsort(commit_share, RUNS, sizeof *commit_share, compare_double);
		if (intervals[i] == 0)
			baseline = rates[RUNS / 2];
		if (intervals[i] == 0)
			printf("| never        | %10.0f | 1.00          | -               |\n",
			       baseline);
		else
			printf("| %6zu events | %10.0f | %.2f          | %5.1f%%          |\n",
			       intervals[i], rates[RUNS / 2], rates[RUNS / 2] / baseline,
			       100 * commit_share[RUNS / 2]);
	}
	eventlog_free(log);

	/* restart after a stop that leaves the memtables in the WAL (as a crash
	 * does) against one that writes them first (streamrecd's clean stop),
	 * alternated, medians */
	double replay_open[RUNS], flushed_open[RUNS], flush_s[RUNS], flushed_mib[RUNS];
	for (int r = 0; r < RUNS; r++) {
		uint64_t bytes;
		build_restart_state(dir, false, NULL, NULL);
		replay_open[r] = time_open(dir);
		build_restart_state(dir, true, &flush_s[r], &bytes);
		flushed_open[r] = time_open(dir);
		flushed_mib[r] = (double)bytes / (1 << 20);
	}
	qsort(replay_open, RUNS, sizeof *replay_open, compare_double);
	qsort(flushed_open, RUNS, sizeof *flushed_open, compare_double);
	qsort(flush_s, RUNS, sizeof *flush_s, compare_double);
	qsort(flushed_mib, RUNS, sizeof *flushed_mib, compare_double);
	printf("\nrestart (open: ids, every item row, globals), 1M users and 100k items, median of "
	       "%d alternated:\n",
	       RUNS);
	printf("  after a stop leaving the memtables in the WAL (a crash): %.2f s\n",
	       replay_open[RUNS / 2]);
	printf("  after a clean stop that wrote them (%.0f MiB in %.2f s): %.2f s (%.2fx faster)\n",
	       flushed_mib[RUNS / 2], flush_s[RUNS / 2], flushed_open[RUNS / 2],
	       replay_open[RUNS / 2] / flushed_open[RUNS / 2]);

	/* the sizes and a whole load, on the last (flushed) state */
	char errstr[512];
	double open_s;
	struct state *state = open_state(dir, false, &open_s);
	struct model *model = state_model(state, 0);
	unsigned char row[1 << 16];
	size_t item_bytes = model_export_item(model, 0, row, sizeof row);
	double t0 = now_s();
	if (state_load_all_users(state, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "bench: %s\n", errstr);
		return 1;
	}
	double users_s = now_s() - t0;
	size_t user_bytes = model_export_user(model, 0, row, sizeof row);
	uint64_t disk = state_bytes(state);
	printf("\nrestart of a state with %zu users and %zu items:\n", model_user_count(model),
	       model_item_count(model));
	printf(
	    "  open (ids, every item row, globals): %.2f s; every user row as well: %.2f s more\n",
	    open_s, users_s);
	printf("  row sizes: user %zu bytes (+ exclusions), item %zu bytes (+ co-visitation); "
	       "state on disk %.0f MB = %.0f bytes per user+item\n",
	       user_bytes, item_bytes, (double)disk / 1e6,
	       (double)disk / (double)(model_user_count(model) + model_item_count(model)));
	state_close(state);
	remove_dir(dir);
	return 0;
}
