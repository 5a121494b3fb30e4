/*
 * cli_state: commands on a state directory.
 *
 *   streamrec replay  (--state DIR | --config FILE) FILE [--commit-every N] [--format F]
 *                     [--digest]
 *   streamrec inspect --state DIR (--user ID | --item ID) [--k N] [--variant NAME] [--explain]
 *   streamrec digest  (--state DIR [--variant NAME] | --config FILE [--state DIR])
 *   streamrec checkpoint --state DIR --to DIR
 *
 * `replay` learns an event file into a state directory with the daemon's
 * write-behind commits (topic "replay", partition 0, offset = the event's
 * position in time order), resuming after the last committed event: run it
 * again after a crash and every event is applied exactly once. `--digest`
 * prints a digest of the whole state (equal digests: bit-identical models).
 * `--config` takes streamrecd's configuration: its state.dir (unless --state
 * names another) and its variants with their model settings, so a state
 * bootstrapped from history is the one the daemon runs on; `digest --config`
 * opens a daemon's state with its settings (a state written with content.dim
 * needs them) and digests every variant.
 * `inspect` and `digest` only read: they open the state read-only and work
 * beside a running daemon.
 */
#include <getopt.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "config.h"
#include "eventlog.h"
#include "model.h"
#include "state.h"
#include "topk.h"

#define REPLAY_TOPIC "replay"

/*
 * Opens one variant of a state: the named one, or (variant NULL) the first
 * stored. read_only: RocksDB's read-only open, which takes no LOCK, so
 * inspect and digest work on the state of a running daemon: they see it as
 * of its last commit (whole commits only).
 */
static struct state *open_variant(const char *command, const char *dir, size_t cache_users,
				  const char *variant, bool read_only, bool must_exist)
{
	struct model_config config;
	const char *names[1] = {variant};
	struct state_config sc = {.dir = dir,
				  .variants = &config,
				  .variant_count = 1,
				  .variant_names = variant ? names : NULL,
				  .user_cache_users = cache_users,
				  .read_only = read_only,
				  .stored_variants_only = variant != NULL,
				  .must_exist = must_exist};
	char errstr[1024];
	model_config_default(&config);
	struct state *state = state_open(&sc, errstr, sizeof errstr);
	if (state == NULL)
		fprintf(stderr, "streamrec %s: %s\n", command, errstr);
	return state;
}

static struct state *open_state_cached(const char *command, const char *dir, size_t cache_users)
{
	return open_variant(command, dir, cache_users, NULL, false, false);
}

/*
 * Opens the state a streamrecd configuration names (or dir, when given),
 * with its variants and their model settings, as the daemon does: a state
 * bootstrapped from history this way is the one the daemon then runs on.
 */
static struct state *open_configured(const char *command, const char *path, const char *dir,
				     size_t cache_users, bool read_only)
{
	struct config config;
	struct model_config models[STATE_MAX_VARIANTS];
	const char *names[STATE_MAX_VARIANTS], *start_from[STATE_MAX_VARIANTS];
	char errstr[1024];
	if (config_load(path, &config, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec %s: %s\n", command, errstr);
		return NULL;
	}
	for (size_t v = 0; v < config.variant_count; v++) {
		models[v] = config.variants[v].model;
		models[v].learn_embeddings = config.variants[v].policy != CONFIG_POLICY_POPULARITY;
		names[v] = config.variants[v].name;
		start_from[v] = config.variants[v].start_from;
	}
	bool implicit = config.variant_count == 1 && config.variants[0].line == 0;
	struct state_config sc = {.dir = dir ? dir : config.state_dir,
				  .variants = models,
				  .variant_count = config.variant_count,
				  .variant_names = implicit ? NULL : names,
				  .start_from = start_from,
				  .user_cache_users = cache_users ? cache_users : config.user_cache_users,
				  .user_cache_bytes = config.user_cache_bytes,
				  .block_cache_bytes = config.state_block_cache_bytes,
				  .admit_after = config.lifecycle_admit_after,
				  .item_admit_after = config.lifecycle_item_admit_after,
				  .read_only = read_only};
	struct state *state = state_open(&sc, errstr, sizeof errstr);
	if (state == NULL)
		fprintf(stderr, "streamrec %s: %s\n", command, errstr);
	config_free(&config);
	return state;
}

int cli_replay(int argc, char **argv)
{
	static const struct option options[] = {
	    {"state", required_argument, NULL, 's'},
	    {"commit-every", required_argument, NULL, 'c'},
	    {"format", required_argument, NULL, 'f'},
	    {"digest", no_argument, NULL, 'd'},
	    {"memory-only", no_argument, NULL, 'm'},
	    {"user-cache", required_argument, NULL, 'u'},
	    {"commit-interval-ms", required_argument, NULL, 'i'},
	    {"config", required_argument, NULL, 'C'},
	    {NULL, 0, NULL, 0}};
	long long cache_users = 0;
	const char *dir = NULL, *config_path = NULL;
	long long commit_every = 10000, commit_interval_ms = 0;
	bool digest = false, memory_only = false;
	struct eventlog_read_options read_options = eventlog_read_options_default();
	char errstr[512];
	int opt, status = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 's': dir = optarg; break;
		case 'C': config_path = optarg; break;
		case 'c':
			rc = cli_parse_count("replay", "commit-every", optarg, 1, 1LL << 40,
					     &commit_every);
			break;
		case 'f':
			if (!eventlog_format_from_name(optarg, &read_options.format)) {
				fprintf(stderr, "streamrec replay: --format: unknown format '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'd': digest = true; break;
		case 'm': memory_only = true; break;
		case 'i':
			rc = cli_parse_count("replay", "commit-interval-ms", optarg, 1, 3600000,
					     &commit_interval_ms);
			break;
		case 'u':
			rc = cli_parse_count("replay", "user-cache", optarg, 1, 1LL << 32,
					     &cache_users);
			break;
		default: return 2;
		}
		if (rc != 0)
			return 2;
	}
	if (optind + 1 != argc || (memory_only && (dir != NULL || config_path != NULL)) ||
	    (!memory_only && dir == NULL && config_path == NULL)) {
		fprintf(stderr, "streamrec replay: expected --state DIR, --config FILE (the "
				"daemon's: its state.dir and variants) or --memory-only, and one "
				"event file\n");
		return 2;
	}
	struct event_log *log = NULL;
	if (eventlog_read(argv[optind], &read_options, &log, errstr, sizeof errstr) != 0 ||
	    eventlog_sort_by_time(log, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec replay: %s\n", errstr);
		eventlog_free(log);
		return 1;
	}
	if (eventlog_has_searches(log)) {
		fprintf(stderr, "streamrec replay: %s: SEARCH events cannot be replayed into a state "
				"(use streamrec eval --content)\n",
			argv[optind]);
		eventlog_free(log);
		return 2;
	}

	/* memory-only: the same learning without a store, for comparison */
	/* room for the "/state" appended below */
	char scratch[sizeof "/tmp/streamrec-replay-XXXXXX" + sizeof "/state"] =
	    "/tmp/streamrec-replay-XXXXXX";
	if (memory_only) {
		if (mkdtemp(scratch) == NULL) {
			perror("streamrec replay: mkdtemp");
			eventlog_free(log);
			return 1;
		}
		strcat(scratch, "/state");
		dir = scratch;
		commit_every = 1LL << 40;
	}
	struct state *state =
	    config_path != NULL ? open_configured("replay", config_path, dir, (size_t)cache_users, false)
				: open_state_cached("replay", dir, (size_t)cache_users);
	if (state == NULL) {
		eventlog_free(log);
		return 1;
	}
	int64_t done = -1;
	if (state_offset(state, REPLAY_TOPIC, 0, &done, errstr, sizeof errstr) < 0) {
		fprintf(stderr, "streamrec replay: %s\n", errstr);
		goto out_close;
	}
	int64_t start = done + 1, since_commit = 0;
	double last_commit = clock_monotonic_s();
	for (int64_t e = start; e < (int64_t)log->count && !cli_stop_requested; e++) {
		if (state_learn(state, log->user_ids[log->user[e]], log->item_ids[log->item[e]],
				(enum event_type)log->type[e], log->ts_ms[e], NULL, errstr,
				sizeof errstr) != 0) {
			fprintf(stderr, "streamrec replay: event %" PRId64 ": %s\n", e, errstr);
			goto out_close;
		}
		state_mark_offset(state, REPLAY_TOPIC, 0, e);
		/* commit every N events or every interval, whichever comes first */
		if (++since_commit >= commit_every ||
		    (commit_interval_ms > 0 && (since_commit & 1023) == 0 &&
		     (clock_monotonic_s() - last_commit) * 1000 >= (double)commit_interval_ms)) {
			/* the write runs on the state's writer thread while learning goes on */
			if (state_commit_async(state, errstr, sizeof errstr) != 0) {
				fprintf(stderr,
					"streamrec replay: commit after event %" PRId64 ": %s\n", e,
					errstr);
				goto out_close;
			}
			since_commit = 0;
			last_commit = clock_monotonic_s();
		}
	}
	if (!memory_only && state_commit(state, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec replay: final commit: %s\n", errstr);
		goto out_close;
	}
	/* as streamrecd's clean stop: the daemon started on this state then
	 * replays no log (a failure loses nothing: the log holds every commit) */
	if (!memory_only && state_flush_memtables(state, NULL, errstr, sizeof errstr) != 0)
		fprintf(stderr, "streamrec replay: %s (the next open replays the log instead)\n",
			errstr);
	if (state_offset(state, REPLAY_TOPIC, 0, &done, errstr, sizeof errstr) < 0)
		goto out_close;
	fprintf(stderr,
		"streamrec replay: events %" PRId64 "..%" PRId64 " applied; state at %" PRId64
		" of %zu\n",
		start, memory_only ? (int64_t)log->count - 1 : done,
		memory_only ? (int64_t)log->count - 1 : done, log->count);
	if (digest) {
		uint64_t value;
		if (state_digest(state, &value, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "streamrec replay: %s\n", errstr);
			goto out_close;
		}
		printf("digest %016" PRIx64 " step %" PRIu64 "\n", value,
		       model_step(state_model(state, 0)));
	}
	status = 0;
out_close:
	state_close(state);
	eventlog_free(log);
	if (memory_only) {
		char command[128];
		snprintf(command, sizeof command, "rm -rf '%.*s'", (int)(strlen(scratch) - 6),
			 scratch);
		if (system(command) != 0)
			fprintf(stderr, "streamrec replay: could not remove %s\n", scratch);
	}
	return status;
}

/* One listed item's explanation, after its line: the reason, the recent
 * item behind it, and (for a warm user) the terms of its score. */
static void print_explanation(const struct state *state, const struct model_explanation *why)
{
	printf("  %-10s because %-16s", model_reason_name(why->reason),
	       why->because_item != UINT32_MAX ? state_item_id(state, why->because_item) : "-");
	if (why->reason != MODEL_REASON_COLD_START)
		printf("  taste %.3f intent %.3f covis %.3f trending %.3f", (double)why->taste,
		       (double)why->intent, (double)why->covis, (double)why->trending);
}

int cli_inspect(int argc, char **argv)
{
	static const struct option options[] = {{"state", required_argument, NULL, 's'},
						{"user", required_argument, NULL, 'u'},
						{"item", required_argument, NULL, 'i'},
						{"k", required_argument, NULL, 'k'},
						{"variant", required_argument, NULL, 'v'},
						{"explain", no_argument, NULL, 'e'},
						{NULL, 0, NULL, 0}};
	const char *dir = NULL, *user = NULL, *item = NULL, *variant = NULL;
	bool explain = false;
	long long k = 10;
	char errstr[512];
	int opt, status = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 's': dir = optarg; break;
		case 'u': user = optarg; break;
		case 'i': item = optarg; break;
		case 'v': variant = optarg; break;
		case 'e': explain = true; break;
		case 'k': rc = cli_parse_count("inspect", "k", optarg, 1, 1000, &k); break;
		default: return 2;
		}
		if (rc != 0)
			return 2;
	}
	if (dir == NULL || (user == NULL) == (item == NULL) || optind != argc) {
		fprintf(
		    stderr,
		    "streamrec inspect: expected --state DIR and one of --user ID, --item ID\n");
		return 2;
	}
	struct state *state = open_variant("inspect", dir, 0, variant, true, true);
	if (state == NULL)
		return 1;
	struct model *model = state_model(state, 0);
	size_t dim = model_config(model)->dim;
	printf("state %s: step %" PRIu64 ", %zu items, state %.1f MB on disk\n", dir,
	       model_step(model), model_item_count(model), (double)state_bytes(state) / 1e6);
	if (item != NULL) {
		uint32_t index = state_find_item(state, item);
		if (index == UINT32_MAX) {
			fprintf(stderr, "streamrec inspect: item %s is not in the state\n", item);
			goto out_close;
		}
		const float *q = model_item_vector(model, index);
		printf("item %s (#%u): count %" PRIu64 ", bias %.4f\n  q =", item, index,
		       model_item_count_of(model, index), (double)model_item_bias(model, index));
		for (size_t d = 0; d < dim; d++)
			printf(" %.3f", (double)q[d]);
		printf("\n");
		status = 0;
		goto out_close;
	}
	uint32_t index;
	uint64_t hash;
	if (state_user(state, user, &index, &hash, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec inspect: %s\n", errstr);
		goto out_close;
	}
	if (!model_user_has_history(model, index)) {
		printf("user %s: no history: served the trending list\n", user);
	} else {
		const float *p = model_user_vector(model, index);
		uint32_t recent[1000];
		size_t n = model_user_recent(model, index, recent);
		printf("user %s\n  p =", user);
		for (size_t d = 0; d < dim; d++)
			printf(" %.3f", (double)p[d]);
		printf("\n  recent items (oldest first):");
		for (size_t r = 0; r < n; r++)
			printf(" %s", state_item_id(state, recent[r]));
		const uint32_t *excluded;
		size_t excluded_count = model_user_exclusions(model, index, &excluded);
		printf("\n  excluded:");
		for (size_t r = 0; r < excluded_count; r++)
			printf(" %s", state_item_id(state, excluded[r]));
		printf("\n  top %lld:\n", k);
	}
	struct topk_config tc = {.max_batch = 1, .max_k = (size_t)k};
	struct topk *topk = topk_new(&tc, errstr, sizeof errstr);
	struct topk_result *results = calloc((size_t)k, sizeof *results);
	struct model_explanation *why = calloc((size_t)k, sizeof *why);
	uint32_t *listed = calloc((size_t)k, sizeof *listed);
	size_t count = 0;
	if (topk == NULL || results == NULL || why == NULL || listed == NULL ||
	    model_recommend(model, topk, &index, 1, (size_t)k, NULL, results, &count, errstr,
			    sizeof errstr) != 0) {
		fprintf(stderr, "streamrec inspect: %s\n", errstr);
	} else {
		for (size_t r = 0; r < count; r++)
			listed[r] = results[r].item;
		if (model_explain(model, index, NULL, listed, count, why) != 0)
			fprintf(stderr, "streamrec inspect: out of memory: explained without "
					"co-visitation\n");
		for (size_t r = 0; r < count; r++) {
			printf("  %2zu. %-24s %.4f", r + 1, state_item_id(state, results[r].item),
			       (double)results[r].score);
			if (explain)
				print_explanation(state, &why[r]);
			printf("\n");
		}
		status = 0;
	}
	free(listed);
	free(why);
	free(results);
	topk_free(topk);
out_close:
	state_close(state);
	return status;
}

/*
 * Parses "--state DIR" and, when other is not NULL, "--OTHER VALUE": both
 * required unless other starts with '?' (then --OTHER is optional), nothing
 * else allowed. @returns 0, or 2 after printing usage.
 */
static int parse_state_and(int argc, char **argv, const char *command, const char *other,
			   const char **state_dir, const char **other_value, const char *usage)
{
	bool optional = other != NULL && other[0] == '?';
	struct option options[] = {{"state", required_argument, NULL, 's'},
				   {optional ? other + 1 : other, required_argument, NULL, 'o'},
				   {NULL, 0, NULL, 0}};
	int opt;
	if (other == NULL)
		options[1] = options[2]; /* --state alone */
	*state_dir = NULL;
	if (other_value != NULL)
		*other_value = NULL;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 's')
			*state_dir = optarg;
		else if (opt == 'o' && other_value != NULL)
			*other_value = optarg;
		else
			return 2;
	}
	if (*state_dir == NULL || (other != NULL && !optional && *other_value == NULL) ||
	    optind != argc) {
		fprintf(stderr, "streamrec %s: expected %s\n", command, usage);
		return 2;
	}
	return 0;
}

int cli_checkpoint(int argc, char **argv)
{
	const char *dir, *to;
	char errstr[512];
	if (parse_state_and(argc, argv, "checkpoint", "to", &dir, &to, "--state DIR --to NEW_DIR"))
		return 2;
	/* an existing state only (a mistyped path must not give an empty copy),
	 * copied as stored, whatever settings it was written with */
	long rc = state_copy_stored(dir, to, NULL, errstr, sizeof errstr);
	if (rc != 0)
		fprintf(stderr, "streamrec checkpoint: %s\n", errstr);
	else
		fprintf(stderr, "streamrec checkpoint: %s copied to %s\n", dir, to);
	return rc == 0 ? 0 : 1;
}

/* streamrec export --state DIR --out FILE / import --in FILE --state NEW_DIR */
int cli_export(int argc, char **argv)
{
	const char *dir, *out;
	char errstr[512];
	if (parse_state_and(argc, argv, "export", "out", &dir, &out, "--state DIR --out FILE"))
		return 2;
	long n = state_copy_stored(dir, NULL, out, errstr, sizeof errstr);
	if (n < 0)
		fprintf(stderr, "streamrec export: %s\n", errstr);
	else
		fprintf(stderr, "streamrec export: %ld entries of %s written to %s\n", n, dir, out);
	return n < 0 ? 1 : 0;
}

int cli_import(int argc, char **argv)
{
	const char *dir, *in;
	char errstr[512];
	if (parse_state_and(argc, argv, "import", "in", &dir, &in, "--in FILE --state NEW_DIR"))
		return 2;
	long n = state_import(dir, in, errstr, sizeof errstr);
	if (n < 0) {
		fprintf(stderr, "streamrec import: %s\n", errstr);
		return 1;
	}
	fprintf(stderr, "streamrec import: %ld entries from %s into %s\n", n, in, dir);
	return 0;
}

/* streamrec digest (--state DIR [--variant NAME] | --config FILE [--state DIR]): the
 * state's digest and step (equal digests: equal models) */
int cli_digest(int argc, char **argv)
{
	static const struct option options[] = {{"state", required_argument, NULL, 's'},
						{"variant", required_argument, NULL, 'v'},
						{"config", required_argument, NULL, 'c'},
						{NULL, 0, NULL, 0}};
	const char *dir = NULL, *variant = NULL, *config_path = NULL;
	char errstr[512];
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 's': dir = optarg; break;
		case 'v': variant = optarg; break;
		case 'c': config_path = optarg; break;
		default: return 2;
		}
	}
	if ((dir == NULL && config_path == NULL) || (variant != NULL && config_path != NULL) ||
	    optind != argc) {
		fprintf(stderr, "streamrec digest: expected --state DIR [--variant NAME] | --config "
				"FILE [--state DIR]\n");
		return 2;
	}
	struct state *state = config_path != NULL
				  ? open_configured("digest", config_path, dir, 0, true)
				  : open_variant("digest", dir, 0, variant, true, true);
	if (state == NULL)
		return 1;
	uint64_t value;
	int rc = state_digest(state, &value, errstr, sizeof errstr);
	if (rc != 0)
		fprintf(stderr, "streamrec digest: %s\n", errstr);
	else
		printf("digest %016" PRIx64 " step %" PRIu64 "\n", value,
		       model_step(state_model(state, 0)));
	state_close(state);
	return rc == 0 ? 0 : 1;
}
