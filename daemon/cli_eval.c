/*
 * cli_eval: `streamrec eval`, the prequential (test-then-train) replay of an
 * event file through one model configuration, with the popularity baseline
 * scored in the same run. --export-stream and --json hand the evaluated
 * stream and the figures to other rankers (bench/peers.py) so that they are
 * scored on exactly the same test points. --retrieval both ranks every test
 * point with the exact engine and the index engine on one model and prints
 * each engine's figures and replay speed and the index's recall against
 * exact.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "eventlog.h"
#include "listrules.h"
#include "model.h"
#include "prequential.h"
#include "topk.h"

/* The index's shape and upkeep, the end of an "index:" line. */
static void print_index_upkeep(const struct model_index_stats *is, size_t trending)
{
	printf("nlist %zu, nprobe %zu, trending %zu, %.0f candidates a list, %llu trainings, "
	       "%.0f%% of %llu row updates kept their cell unscored, the largest cell %zu items\n",
	       is->nlist, is->nprobe, trending,
	       is->lists ? (double)is->candidates / (double)is->lists : 0.0,
	       (unsigned long long)is->trainings,
	       is->rows_synced ? 100.0 * (double)is->rows_kept / (double)is->rows_synced : 0.0,
	       (unsigned long long)is->rows_synced, is->largest_cell);
}

static int parse_real(const char *option, const char *text, double min, double max, double *out)
{
	char *end;
	double v = strtod(text, &end);
	if (end == text || *end != '\0' || !isfinite(v) || v < min || v > max) {
		fprintf(stderr, "streamrec eval: --%s: must be a number from %g to %g, got '%s'\n",
			option, min, max, text);
		return -1;
	}
	*out = v;
	return 0;
}

/* The signals --signals and the ablations name, and their switches. */
static const struct {
	const char *name;
	size_t offset;
} signal_table[] = {
    {"taste", offsetof(struct model_config, use_taste)},
    {"intent", offsetof(struct model_config, use_intent)},
    {"covis", offsetof(struct model_config, use_covis)},
    {"bias", offsetof(struct model_config, use_bias)},
    {"correction", offsetof(struct model_config, use_correction)},
    {"trending", offsetof(struct model_config, use_trending)},
    {"content", offsetof(struct model_config, use_content)},
    {"search", offsetof(struct model_config, use_search)},
};
#define SIGNALS (sizeof signal_table / sizeof signal_table[0])

static bool *signal_switch(struct model_config *config, size_t s)
{
	return (bool *)((char *)config + signal_table[s].offset);
}

/* --signals taste,intent,covis,bias,correction,trending (or all, or none):
 * exactly the signals named are on, every other one off. */
static int parse_signals(const char *text, struct model_config *config)
{
	char copy[256], *save = NULL;
	bool all = strcmp(text, "all") == 0;
	for (size_t k = 0; k < SIGNALS; k++)
		*signal_switch(config, k) = all;
	if (all || strcmp(text, "none") == 0)
		return 0;
	snprintf(copy, sizeof copy, "%s", text);
	for (char *s = strtok_r(copy, ",", &save); s != NULL; s = strtok_r(NULL, ",", &save)) {
		size_t k = 0;
		if (strcmp(s, "mf") == 0)
			s = "taste";
		else if (strcmp(s, "seq") == 0)
			s = "intent";
		while (k < SIGNALS && strcmp(s, signal_table[k].name) != 0)
			k++;
		if (k == SIGNALS) {
			fprintf(stderr,
				"streamrec eval: --signals: unknown signal '%s' (taste, intent, "
				"covis, bias, correction, trending, content, search, all, none)\n",
				s);
			return -1;
		}
		*signal_switch(config, k) = true;
	}
	return 0;
}

/* A duration: a number with an optional unit s, m, h or d (default ms). */
static int parse_duration_ms(const char *option, const char *text, double *out)
{
	char *end;
	double v = strtod(text, &end), unit = 1;
	if (strcmp(end, "s") == 0)
		unit = 1e3;
	else if (strcmp(end, "m") == 0)
		unit = 60e3;
	else if (strcmp(end, "h") == 0)
		unit = 3600e3;
	else if (strcmp(end, "d") == 0)
		unit = 86400e3;
	else if (strcmp(end, "ms") != 0 && *end != '\0')
		end = (char *)text;
	if (end == text || !isfinite(v) || !(v > 0)) {
		fprintf(stderr,
			"streamrec eval: --%s: must be a positive duration (ms, or with s, m, h, "
			"d), got '%s'\n",
			option, text);
		return -1;
	}
	*out = v * unit;
	return 0;
}

/* --weight TYPE=W, TYPE a schema symbol or its lower-case key. */
static int parse_weight(const char *text, struct model_config *config)
{
	const char *eq = strchr(text, '=');
	char name[64];
	double w;
	if (eq == NULL || (size_t)(eq - text) >= sizeof name) {
		fprintf(stderr, "streamrec eval: --weight: expected TYPE=WEIGHT, got '%s'\n", text);
		return -1;
	}
	memcpy(name, text, (size_t)(eq - text));
	name[eq - text] = '\0';
	for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
		if (strcasecmp(name, event_type_key((enum event_type)t)) == 0 ||
		    strcmp(name, event_type_name((enum event_type)t)) == 0) {
			if (parse_real("weight", eq + 1, -100, 100, &w) != 0)
				return -1;
			config->event_weight[t] = (float)w;
			return 0;
		}
	}
	fprintf(stderr, "streamrec eval: --weight: unknown event type '%s'\n", name);
	return -1;
}

static const char *exclusion_name(enum model_exclusion exclusion)
{
	return exclusion == MODEL_EXCLUDE_NONE     ? "none"
	       : exclusion == MODEL_EXCLUDE_BOUGHT ? "bought"
						   : "interacted";
}

static const char *retrieval_name(const struct model_config *config,
				  const struct prequential_config *pc)
{
	return pc->both_engines                              ? "both"
	       : config->retrieval == MODEL_RETRIEVAL_INDEX ? "index"
							    : "exact";
}

/* The baselines and ablations scored beside the model (prequential arms). */
#define MAX_TRENDING_BASELINES 8
/*
 * --tune: a coordinate search over the settings a variant takes. Each round
 * replays the stream once with the current configuration and, beside it on
 * the same test points, every one-setting change of it (each axis's other
 * values); the best change is taken and the next round starts from it, until
 * no change helps or --tune-rounds ran. Unlike a one-at-a-time grid it finds
 * combinations (on MovieLens 100K: beta, window, half-life and rate together).
 */
enum tune_key {
	TUNE_TRENDING_WEIGHT,
	TUNE_HALF_LIFE,
	TUNE_BETA,
	TUNE_WINDOW,
	TUNE_RECENT_DECAY,
	TUNE_LR,
	TUNE_NEGATIVES
};
struct tune_axis {
	enum tune_key key;
	const char *name; /* in the arm's name */
	size_t count;
	double values[6];
};
static const struct tune_axis tune_axes[] = {
    {TUNE_TRENDING_WEIGHT, "g", 4, {0, 0.25, 0.5, 1}},
    {TUNE_HALF_LIFE, "half-life", 5, {3600e3, 86400e3, 3 * 86400e3, 7 * 86400e3, 30 * 86400e3}},
    {TUNE_BETA, "beta", 6, {1, 2, 3, 4, 6, 8}},
    {TUNE_WINDOW, "window", 4, {2, 3, 4, 5}},
    {TUNE_RECENT_DECAY, "covis-decay", 4, {0.5, 0.7, 0.85, 1}},
    {TUNE_LR, "lr", 4, {0.05, 0.1, 0.2, 0.3}},
    {TUNE_NEGATIVES, "negatives", 3, {4, 8, 16}},
};
#define COUNT_OF(a) (sizeof(a) / sizeof(a)[0])
#define TUNE_ARMS 30 /* the axes' values (at most; each axis's current one is not an arm) */
#define DEFAULT_TUNE_ROUNDS 8
/* Blocks of events per ranking round when --threads 2 is given alone. */
#define DEFAULT_SYNC_EVERY 256
#define MAX_ARMS (1 + MAX_TRENDING_BASELINES + SIGNALS + TUNE_ARMS)
struct eval_arms {
	size_t count;
	struct prequential_arm arm[MAX_ARMS];
	char name[MAX_ARMS][64];
	struct prequential_split split[MAX_ARMS];
};

static void eval_arms_free(struct eval_arms *arms)
{
	for (size_t a = 0; a < arms->count; a++)
		model_free(arms->arm[a].model);
	arms->count = 0;
}

static int add_arm(struct eval_arms *arms, const char *name, const struct model_config *config,
		   enum prequential_ranker ranker, char *errstr, size_t errstr_size)
{
	size_t a = arms->count;
	struct model *model = model_new(config, errstr, errstr_size);
	if (model == NULL)
		return -1;
	snprintf(arms->name[a], sizeof arms->name[a], "%s", name);
	arms->arm[a] = (struct prequential_arm){.name = arms->name[a], .model = model, .ranker = ranker};
	arms->count++;
	return 0;
}

static void format_duration(double ms, char *out, size_t size)
{
	if (ms >= 86400e3 && fmod(ms, 86400e3) == 0)
		snprintf(out, size, "%gd", ms / 86400e3);
	else if (ms >= 3600e3 && fmod(ms, 3600e3) == 0)
		snprintf(out, size, "%gh", ms / 3600e3);
	else if (ms >= 60e3 && fmod(ms, 60e3) == 0)
		snprintf(out, size, "%gm", ms / 60e3);
	else if (ms >= 1e3 && fmod(ms, 1e3) == 0)
		snprintf(out, size, "%gs", ms / 1e3);
	else
		snprintf(out, size, "%gms", ms);
}

/*
 * The arms: co-visitation alone (its raw sums, nothing else in the score),
 * the trending list at each baseline half-life and, with ablations, the
 * model's configuration with each of its signals switched off in turn.
 */
static int build_arms(const struct model_config *config, bool baselines, const double *half_lives,
		      size_t half_life_count, bool ablations, struct eval_arms *arms,
		      char *errstr, size_t errstr_size)
{
	struct model_config c = *config;
	char name[64], duration[32];
	for (size_t k = 0; k < SIGNALS; k++)
		*signal_switch(&c, k) = false;
	c.use_covis = true;
	c.covis_weight = 1;
	if (baselines &&
	    add_arm(arms, "covis alone", &c, PREQUENTIAL_RANK_MODEL, errstr, errstr_size) != 0)
		return -1;
	for (size_t h = 0; baselines && h < half_life_count; h++) {
		c = *config;
		c.learn_embeddings = false;
		c.trending_half_life_ms = half_lives[h];
		format_duration(half_lives[h], duration, sizeof duration);
		snprintf(name, sizeof name, "trending %s", duration);
		if (add_arm(arms, name, &c, PREQUENTIAL_RANK_TRENDING, errstr, errstr_size) != 0)
			return -1;
	}
	for (size_t k = 0; ablations && k < SIGNALS; k++) {
		c = *config;
		if (!*signal_switch(&c, k))
			continue;
		*signal_switch(&c, k) = false;
		snprintf(name, sizeof name, "without %s", signal_table[k].name);
		if (add_arm(arms, name, &c, PREQUENTIAL_RANK_MODEL, errstr, errstr_size) != 0)
			return -1;
	}
	return 0;
}

static double tune_get(const struct model_config *c, enum tune_key key)
{
	switch (key) {
	case TUNE_TRENDING_WEIGHT: return c->trending_weight;
	case TUNE_HALF_LIFE: return c->trending_half_life_ms;
	case TUNE_BETA: return c->covis_weight;
	case TUNE_WINDOW: return c->covis_window;
	case TUNE_RECENT_DECAY: return c->covis_recent_decay;
	case TUNE_LR: return c->learning_rate;
	case TUNE_NEGATIVES: return c->negatives;
	}
	return 0;
}

static void tune_set(struct model_config *c, enum tune_key key, double value)
{
	switch (key) {
	case TUNE_TRENDING_WEIGHT: c->trending_weight = (float)value; break;
	case TUNE_HALF_LIFE: c->trending_half_life_ms = value; break;
	case TUNE_BETA: c->covis_weight = (float)value; break;
	case TUNE_WINDOW: c->covis_window = (unsigned)value; break;
	case TUNE_RECENT_DECAY: c->covis_recent_decay = (float)value; break;
	case TUNE_LR: c->learning_rate = (float)value; break;
	case TUNE_NEGATIVES: c->negatives = (unsigned)value; break;
	}
}

static void tune_value_text(enum tune_key key, double value, char *out, size_t size)
{
	if (key == TUNE_HALF_LIFE)
		format_duration(value, out, size);
	else
		snprintf(out, size, "%g", value);
}

/* What the search found: the best configuration and the path to it. */
struct tune_result {
	struct model_config best;
	double start_hr, best_hr;
	unsigned rounds;
	size_t scored; /* settings replayed, the starting one included */
	char path[512]; /* the changes taken, in order */
};

/*
 * The coordinate search (see tune_axes). Rounds replay without baselines
 * or list rules; the main replay that follows is the configuration's own.
 */
static int tune_search(const struct model_config *start, struct topk *topk,
		       const struct prequential_stream *stream, const struct prequential_config *base,
		       unsigned max_rounds, struct tune_result *out, char *errstr, size_t errstr_size)
{
	struct model_config current = *start;
	double current_hr = -1;
	*out = (struct tune_result){.best = *start};
	for (unsigned round = 0; round < max_rounds; round++) {
		struct eval_arms arms = {0};
		struct model_config candidate[TUNE_ARMS];
		char name[64], value[32];
		for (size_t x = 0; x < COUNT_OF(tune_axes); x++) {
			const struct tune_axis *axis = &tune_axes[x];
			for (size_t v = 0; v < axis->count; v++) {
				if ((float)axis->values[v] == (float)tune_get(&current, axis->key))
					continue;
				struct model_config c = current;
				tune_set(&c, axis->key, axis->values[v]);
				char invalid[256];
				if (model_config_check(&c, invalid, sizeof invalid) != 0)
					continue; /* e.g. a window above recent_items */
				tune_value_text(axis->key, axis->values[v], value, sizeof value);
				snprintf(name, sizeof name, "%s=%s", axis->name, value);
				candidate[arms.count] = c;
				if (add_arm(&arms, name, &c, PREQUENTIAL_RANK_MODEL, errstr,
					    errstr_size) != 0) {
					eval_arms_free(&arms);
					return -1;
				}
			}
		}
		struct model *model = model_new(&current, errstr, errstr_size);
		struct prequential_config pc = *base;
		pc.arms = arms.arm;
		pc.arm_count = arms.count;
		pc.rules = NULL;
		pc.event_flags = NULL;
		pc.both_engines = false;
		struct prequential_result r = {.arms = arms.split};
		if (model == NULL || prequential_run(model, topk, stream, &pc, &r, errstr,
						     errstr_size) != 0) {
			model_free(model);
			eval_arms_free(&arms);
			return -1;
		}
		model_free(model);
		current_hr = r.model_split.all.hit_rate;
		if (round == 0) {
			out->start_hr = current_hr;
			out->scored = 1;
		}
		out->scored += arms.count;
		size_t best = SIZE_MAX;
		double best_hr = current_hr;
		for (size_t a = 0; a < arms.count; a++)
			if (r.arms[a].all.hit_rate > best_hr) {
				best_hr = r.arms[a].all.hit_rate;
				best = a;
			}
		out->rounds = round + 1;
		printf("tune round %u: %zu changes of the current setting (HR@%zu %.4f); best: %s "
		       "%.4f\n",
		       round + 1, arms.count, pc.k, current_hr,
		       best == SIZE_MAX ? "none better" : arms.name[best], best_hr);
		fflush(stdout);
		if (best != SIZE_MAX) {
			size_t used = strlen(out->path);
			snprintf(out->path + used, sizeof out->path - used, "%s%s",
				 used ? ", " : "", arms.name[best]);
			current = candidate[best];
			current_hr = best_hr;
		}
		eval_arms_free(&arms);
		if (best == SIZE_MAX)
			break;
	}
	out->best = current;
	out->best_hr = current_hr;
	return 0;
}

/* The search's outcome, and the lines that set it for a variant of streamrecd. */
static void print_tuned(const struct tune_result *t)
{
	char duration[32];
	format_duration(t->best.trending_half_life_ms, duration, sizeof duration);
	printf("\ntuned (coordinate search, %u rounds, %zu settings replayed; the figures are "
	       "in-sample: choose on one stretch of history, check on a later one): %s, %.4f "
	       "against the configuration's %.4f\n",
	       t->rounds, t->scored, t->path[0] ? t->path : "the configuration", t->best_hr,
	       t->start_hr);
	printf("for streamrecd, in [model] or [variant.NAME]:\n"
	       "  trending_weight = %g\n  trending_half_life_ms = %s\n  covis_weight = %g\n"
	       "  covis_window = %u\n  covis_recent_decay = %g\n  learning_rate = %g\n"
	       "  negatives = %u\n",
	       (double)t->best.trending_weight, duration, (double)t->best.covis_weight,
	       t->best.covis_window, (double)t->best.covis_recent_decay,
	       (double)t->best.learning_rate, t->best.negatives);
	printf("the same in streamrec eval: --trending-weight %g --trending-half-life %s "
	       "--covis-weight %g --covis-window %u --covis-recent-decay %g --lr %g "
	       "--negatives %u\n",
	       (double)t->best.trending_weight, duration, (double)t->best.covis_weight,
	       t->best.covis_window, (double)t->best.covis_recent_decay,
	       (double)t->best.learning_rate, t->best.negatives);
}

/* --baseline-half-lives 1h,1d,7d */
static int parse_half_lives(const char *text, double *out, size_t *count)
{
	char copy[256], *save = NULL;
	*count = 0;
	snprintf(copy, sizeof copy, "%s", text);
	if (strcmp(text, "none") == 0)
		return 0;
	for (char *s = strtok_r(copy, ",", &save); s != NULL; s = strtok_r(NULL, ",", &save)) {
		if (*count == MAX_TRENDING_BASELINES) {
			fprintf(stderr, "streamrec eval: --baseline-half-lives: at most %d\n",
				MAX_TRENDING_BASELINES);
			return -1;
		}
		if (parse_duration_ms("baseline-half-lives", s, &out[*count]) != 0)
			return -1;
		(*count)++;
	}
	return 0;
}

static void print_split_row(const char *name, const struct prequential_split *s)
{
	printf("| %-18s | %8.4f | %8.4f | %8.4f | %8.4f | %8.4f |\n", name, s->all.hit_rate,
	       s->discovery.hit_rate, s->repeat.hit_rate, s->warm.hit_rate, s->cold.hit_rate);
}

static void print_new_item_row(const char *name, const struct prequential_scores *s)
{
	printf("| %-18s | %8.4f | %8.4f | %8llu |\n", name, s->hit_rate, s->ndcg,
	       (unsigned long long)s->tests);
}

static void json_split(FILE *out, const char *name, const struct prequential_split *s,
		       const char *end)
{
	const struct prequential_scores *part[] = {&s->all,  &s->discovery, &s->repeat,
						   &s->warm, &s->cold,      &s->new_item,
						   &s->after_search};
	const char *part_name[] = {"all",  "discovery", "repeat",      "warm",
				   "cold", "new_item",  "after_search"};
	fprintf(out, "    {\"name\": \"%s\"", name);
	for (size_t p = 0; p < 7; p++)
		fprintf(out,
			", \"%s\": {\"tests\": %llu, \"recall\": %.17g, \"ndcg\": %.17g, "
			"\"mrr\": %.17g}",
			part_name[p], (unsigned long long)part[p]->tests, part[p]->hit_rate,
			part[p]->ndcg, part[p]->mrr);
	fprintf(out, "}%s\n", end);
}

/*
 * --export-stream: the replayed stream in replay order, one event a line:
 * dense user and item indices, type symbol, the weight the model gave it,
 * event time, test (1: a test point, 2: a test point skipped because the
 * item was excluded, 0: not tested) and excludes (1: from this event on the
 * item is excluded from the user's lists).
 */
static int write_stream(const char *path, const struct event_log *log, const uint8_t *flags,
			const struct model_config *config, char *errstr, size_t errstr_size)
{
	FILE *out = fopen(path, "w");
	if (out == NULL) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(out, "user,item,type,weight,ts_ms,test,excludes\n");
	for (size_t e = 0; e < log->count; e++) {
		uint8_t f = flags[e];
		bool search = log->type[e] == EVENT_SEARCH;
		fprintf(out, "%u,%u,%s,%g,%lld,%d,%d\n", log->user[e], log->item[e],
			search ? EVENT_SEARCH_NAME : event_type_name((enum event_type)log->type[e]),
			search ? 0.0 : (double)config->event_weight[log->type[e]],
			(long long)log->ts_ms[e],
			(f & PREQUENTIAL_TESTED)             ? 1
			: (f & PREQUENTIAL_SKIPPED_EXCLUDED) ? 2
							     : 0,
			(f & PREQUENTIAL_EXCLUDES_ITEM) ? 1 : 0);
	}
	int failed = ferror(out);
	if (fclose(out) != 0 || failed) {
		snprintf(errstr, errstr_size, "%s: write failed", path);
		return -1;
	}
	return 0;
}

static void json_scores(FILE *out, const char *name, const struct prequential_scores *s)
{
	fprintf(out,
		"  \"%s\": {\"tests\": %llu, \"recall\": %.17g, \"ndcg\": %.17g, \"mrr\": %.17g, "
		"\"coverage\": %.17g},\n",
		name, (unsigned long long)s->tests, s->hit_rate, s->ndcg, s->mrr, s->coverage);
}

/* --json: the run's configuration and figures, for scripts. */
static int write_json(const char *path, const struct event_log *log,
		      const struct model_config *config, const struct prequential_config *pc,
		      const struct prequential_result *r, const struct eval_arms *arms, bool rules,
		      const struct tune_result *tuned, char *errstr, size_t errstr_size)
{
	FILE *out = fopen(path, "w");
	if (out == NULL) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(out, "{\n  \"events\": %zu, \"users\": %zu, \"items\": %zu,\n", log->count,
		log->user_count, log->item_count);
	fprintf(out, "  \"format\": \"%s\", ", eventlog_format_name(log->format));
	if (isnan(log->min_rating))
		fprintf(out, "\"min_rating\": null,\n");
	else
		fprintf(out, "\"min_rating\": %g,\n", log->min_rating);
	fprintf(out, "  \"k\": %zu, \"test_every\": %llu, \"warmup\": %llu, \"exclude\": \"%s\",\n",
		pc->k, (unsigned long long)pc->test_every, (unsigned long long)pc->warmup,
		exclusion_name(config->exclusion));
	fprintf(out, "  \"weights\": {");
	for (int t = 0; t < EVENT_TYPE_COUNT; t++)
		fprintf(out, "%s\"%s\": %g", t ? ", " : "", event_type_name((enum event_type)t),
			(double)config->event_weight[t]);
	fprintf(out, "},\n  \"dim\": %zu, \"negatives\": %u,\n", config->dim, config->negatives);
	fprintf(out, "  \"retrieval\": \"%s\", \"sync_every\": %zu, \"threads\": %u,\n",
		retrieval_name(config, pc), pc->sync_every, pc->threads);
	json_scores(out, "model", &r->model);
	json_scores(out, "popularity", &r->popularity);
	fprintf(out, "  \"rankings\": [\n");
	json_split(out, "streamrec", &r->model_split, ",");
	json_split(out, "popularity", &r->popularity_split, arms->count ? "," : "");
	for (size_t a = 0; a < arms->count; a++)
		json_split(out, arms->name[a], &r->arms[a], a + 1 < arms->count ? "," : "");
	fprintf(out, "  ],\n");
	fprintf(out,
		"  \"signals\": {\"taste\": %d, \"intent\": %d, \"covis\": %d, \"bias\": %d, "
		"\"correction\": %d, \"trending\": %d, \"content\": %d, \"search\": %d},\n",
		config->use_taste, config->use_intent, config->use_covis, config->use_bias,
		config->use_correction, config->use_trending, config->use_content,
		config->use_search);
	fprintf(out, "  \"searches\": %llu,\n", (unsigned long long)r->searches);
	if (tuned != NULL)
		fprintf(out,
			"  \"tuned\": {\"rounds\": %u, \"settings_replayed\": %zu, \"path\": \"%s\", "
			"\"start_recall\": %.17g, \"recall\": %.17g, \"trending_weight\": %g, "
			"\"trending_half_life_ms\": %.0f, \"covis_weight\": %g, \"covis_window\": %u, "
			"\"covis_recent_decay\": %g, \"learning_rate\": %g, \"negatives\": %u},\n",
			tuned->rounds, tuned->scored, tuned->path, tuned->start_hr, tuned->best_hr,
			(double)tuned->best.trending_weight, tuned->best.trending_half_life_ms,
			(double)tuned->best.covis_weight, tuned->best.covis_window,
			(double)tuned->best.covis_recent_decay,
			(double)tuned->best.learning_rate, tuned->best.negatives);
	fprintf(out, "  \"content_dim\": %zu, \"new_item_events\": %llu,\n", config->content_dim,
		(unsigned long long)pc->new_item_events);
	if (pc->both_engines) {
		json_scores(out, "index", &r->index);
		fprintf(out,
			"  \"index_recall\": %.17g, \"exact_events_per_s\": %.1f, "
			"\"index_events_per_s\": %.1f,\n",
			r->index_recall, r->exact_events_per_s, r->index_events_per_s);
	}
	if (rules) {
		const struct prequential_exposure *x[2] = {&r->model_exposure, &r->rules_exposure};
		const char *name[2] = {"model", "rules"};
		fprintf(out, "  \"rules\": {\"recall\": %.17g, \"ndcg\": %.17g, \"tests\": %llu},\n",
			r->rules_split.all.hit_rate, r->rules_split.all.ndcg,
			(unsigned long long)r->rules_split.all.tests);
		fprintf(out, "  \"exposure\": {");
		for (size_t i = 0; i < 2; i++)
			fprintf(out,
				"%s\"%s\": {\"slots\": %llu, \"new_slots\": %llu, \"new_share\": "
				"%.17g, \"new_items_shown\": %llu}",
				i ? ", " : "", name[i], (unsigned long long)x[i]->slots,
				(unsigned long long)x[i]->new_slots, x[i]->new_share,
				(unsigned long long)x[i]->new_items_shown);
		fprintf(out, "},\n");
	}
	fprintf(out, "  \"skipped_excluded\": %llu, \"seconds\": %.6f, \"events_per_s\": %.1f\n}\n",
		(unsigned long long)r->skipped_excluded, r->seconds, r->events_per_s);
	if (fclose(out) != 0) {
		snprintf(errstr, errstr_size, "%s: write failed", path);
		return -1;
	}
	return 0;
}

/*
 * With the format named, a --min-rating off its scale (or given to a
 * format without ratings) is refused before reading; under AUTO the reader
 * refuses it once the file has told its format.
 */
static int check_min_rating(const struct eventlog_read_options *read_options)
{
	struct eventlog_rating_scale scale;
	double asked = read_options->min_rating;
	if (isnan(asked) || read_options->format == EVENTLOG_AUTO)
		return 0;
	if (!eventlog_rating_scale(read_options->format, &scale)) {
		fprintf(stderr, "streamrec eval: --min-rating %g: the %s format has no ratings\n",
			asked, eventlog_format_name(read_options->format));
		return -1;
	}
	if (asked < scale.min || asked > scale.max) {
		fprintf(stderr,
			"streamrec eval: --min-rating %g is outside the %s rating scale %g to %g "
			"(its default is %g)\n",
			asked, scale.label, scale.min, scale.max, scale.default_min_rating);
		return -1;
	}
	return 0;
}

/* One line: the format read and, for ratings, the scale and what was kept. */
static void print_input_format(const struct event_log *log,
			       const struct eventlog_read_options *read_options)
{
	struct eventlog_rating_scale scale;
	printf("format: %s", eventlog_format_name(log->format));
	if (eventlog_rating_scale(log->format, &scale))
		printf("; ratings %g to %g, kept >= %g as %s (%s)", scale.min, scale.max,
		       log->min_rating, event_type_name(read_options->rating_type),
		       isnan(read_options->min_rating) ? scale.why : "--min-rating");
	printf("\n");
}

/*
 * The list rules of --exclude-categories, --max-per-category, --boost, --pin
 * and --explore-share, resolved to the log's indices: items by id,
 * categories by the log's category numbers (as text).
 */
struct eval_rules {
	struct listrules rules;
	bool any;
	struct listrules_view view;
	struct listrules_resolved resolved;
	const struct event_log *log;
	size_t category_count;
};

static void eval_rules_free(struct eval_rules *er)
{
	listrules_clear(&er->rules);
	listrules_resolved_free(&er->resolved);
}

static uint32_t find_item(const char *id, void *opaque)
{
	const struct eval_rules *er = opaque;
	for (size_t i = 0; i < er->log->item_count; i++)
		if (strcmp(er->log->item_ids[i], id) == 0)
			return (uint32_t)i;
	return LISTRULES_NO_ITEM;
}

/* A category named in a rule: one of the log's category numbers. */
static uint32_t find_category(const char *name, void *opaque)
{
	const struct eval_rules *er = opaque;
	char *end;
	unsigned long c = strtoul(name, &end, 10);
	return end != name && *end == '\0' && c < er->category_count ? (uint32_t)c
								      : LISTRULES_NO_CATEGORY;
}

/* @returns 0, or -1 (reported) when a rule names what the log lacks, or out of memory. */
static int resolve_eval_rules(struct eval_rules *er, const struct event_log *log, size_t k)
{
	struct listrules_unknown unknown;
	char option[32];
	er->log = log;
	er->category_count = 0;
	for (size_t i = 0; log->item_category != NULL && i < log->item_count; i++)
		if (log->item_category[i] != EVENTLOG_NONE &&
		    log->item_category[i] + 1 > er->category_count)
			er->category_count = log->item_category[i] + 1;
	er->view = (struct listrules_view){
	    .item_category = log->item_category,
	    .item_count = log->item_category != NULL ? log->item_count : 0};
	if (listrules_resolve(&er->rules, k, er->category_count, find_item, find_category, er,
			      &er->resolved, &er->view, &unknown) != 0) {
		fprintf(stderr, "streamrec eval: out of memory\n");
		return -1;
	}
	if (unknown.key == NULL)
		return 0;
	snprintf(option, sizeof option, "%s", unknown.key);
	for (char *c = option; *c; c++)
		*c = *c == '_' ? '-' : *c;
	fprintf(stderr, "streamrec eval: --%s: the log has no %s '%s'%s\n", option, unknown.kind,
		unknown.name,
		strcmp(unknown.kind, "category") == 0 ? " (its categories are its numbers)" : "");
	return -1;
}

static void print_row(const char *name, const struct prequential_scores *s)
{
	printf("| %-10s | %8.4f | %8.4f | %8.4f | %8.4f | %8llu |\n", name, s->hit_rate, s->ndcg,
	       s->mrr, s->coverage, (unsigned long long)s->tests);
}

int cli_eval(int argc, char **argv)
{
	static const struct option options[] = {{"format", required_argument, NULL, 'f'},
						{"min-rating", required_argument, NULL, 'R'},
						{"k", required_argument, NULL, 'k'},
						{"signals", required_argument, NULL, 's'},
						{"dim", required_argument, NULL, 'd'},
						{"lr", required_argument, NULL, 'l'},
						{"l2", required_argument, NULL, 'L'},
						{"negatives", required_argument, NULL, 'n'},
						{"optimizer", required_argument, NULL, 'o'},
						{"recent", required_argument, NULL, 'r'},
						{"covis-weight", required_argument, NULL, 'c'},
						{"correction-weight", required_argument, NULL, 'C'},
						{"exclude", required_argument, NULL, 'x'},
						{"weight", required_argument, NULL, 'w'},
						{"test-every", required_argument, NULL, 't'},
						{"warmup", required_argument, NULL, 'W'},
						{"max-events", required_argument, NULL, 'm'},
						{"seed", required_argument, NULL, 'S'},
						{"export-stream", required_argument, NULL, 'E'},
						{"json", required_argument, NULL, 'J'},
						{"retrieval", required_argument, NULL, 'T'},
						{"nprobe", required_argument, NULL, 'P'},
						{"nlist", required_argument, NULL, 'N'},
						{"trending", required_argument, NULL, 'G'},
						{"covis-neighbours", required_argument, NULL, 1000},
						{"covis-window", required_argument, NULL, 1001},
						{"covis-directions", required_argument, NULL, 1002},
						{"covis-count", required_argument, NULL, 1003},
						{"covis-half-life", required_argument, NULL, 1004},
						{"trending-weight", required_argument, NULL, 1005},
						{"trending-half-life", required_argument, NULL, 1006},
						{"baseline-half-lives", required_argument, NULL, 1007},
						{"ablations", no_argument, NULL, 1008},
						{"no-baselines", no_argument, NULL, 1009},
						{"exclude-categories", required_argument, NULL, 1010},
						{"max-per-category", required_argument, NULL, 1011},
						{"boost", required_argument, NULL, 1012},
						{"pin", required_argument, NULL, 1013},
						{"explore-share", required_argument, NULL, 1014},
						{"explore-max-events", required_argument, NULL, 1015},
						{"tune", no_argument, NULL, 1016},
						{"content", required_argument, NULL, 1017},
						{"new-item-events", required_argument, NULL, 1018},
						{"content-min-events", required_argument, NULL, 1019},
						{"content-prior", required_argument, NULL, 1020},
						{"search-weight", required_argument, NULL, 1021},
						{"tune-rounds", required_argument, NULL, 1022},
						{"intent-decay", required_argument, NULL, 1023},
						{"covis-recent-decay", required_argument, NULL, 1024},
						{"replay-steps", required_argument, NULL, 1025},
						{"replay-negatives", required_argument, NULL, 1026},
						{"replay-weight", required_argument, NULL, 1027},
						{"sync-every", required_argument, NULL, 1028},
						{"threads", required_argument, NULL, 1029},
						{"covis-candidates", required_argument, NULL, 1030},
						{NULL, 0, NULL, 0}};
	struct model_config config;
	struct eventlog_read_options read_options = eventlog_read_options_default();
	struct prequential_config pc = {.k = 20, .test_every = 1, .threads = 1};
	const char *export_path = NULL, *json_path = NULL, *content_path = NULL;
	struct eventlog_content content = {0};
	double half_lives[MAX_TRENDING_BASELINES] = {3600e3, 86400e3, 7 * 86400e3};
	size_t half_life_count = 3;
	bool ablations = false, baselines = true, tune = false, sync_given = false;
	unsigned tune_rounds = DEFAULT_TUNE_ROUNDS;
	struct tune_result tuned = {0};
	struct eval_arms arms = {0};
	struct eval_rules er = {0};
	const char *categories_text = "", *boost_text = "", *pin_text = "";
	char errstr[512], why[512];
	long long v;
	double real;
	int opt, status = 1;

	model_config_default(&config);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 'f':
			if (!eventlog_format_from_name(optarg, &read_options.format)) {
				fprintf(stderr, "streamrec eval: --format: must be one of %s, got '%s'\n",
					eventlog_format_names(), optarg);
				return 2;
			}
			break;
		case 'R':
			rc = parse_real("min-rating", optarg, -1e9, 1e9, &read_options.min_rating);
			break;
		case 'k':
			rc = cli_parse_count("eval", "k", optarg, 1, 1000, &v);
			pc.k = (size_t)v;
			break;
		case 's': rc = parse_signals(optarg, &config); break;
		case 'd':
			rc = cli_parse_count("eval", "dim", optarg, 4, 1024, &v);
			config.dim = (size_t)v;
			break;
		case 'l':
			rc = parse_real("lr", optarg, 1e-9, 10, &real);
			config.learning_rate = (float)real;
			break;
		case 'L':
			rc = parse_real("l2", optarg, 0, 0.999, &real);
			config.l2 = (float)real;
			break;
		case 'n':
			rc = cli_parse_count("eval", "negatives", optarg, 0, 64, &v);
			config.negatives = (unsigned)v;
			break;
		case 'o':
			if (strcmp(optarg, "adagrad") == 0)
				config.optimizer = MODEL_ADAGRAD;
			else if (strcmp(optarg, "sgd") == 0)
				config.optimizer = MODEL_SGD;
			else {
				fprintf(stderr,
					"streamrec eval: --optimizer: must be adagrad or sgd, got "
					"'%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'r':
			rc = cli_parse_count("eval", "recent", optarg, 1, 1000, &v);
			config.recent_items = (unsigned)v;
			break;
		case 'c':
			rc = parse_real("covis-weight", optarg, 0, 100, &real);
			config.covis_weight = (float)real;
			break;
		case 'C':
			rc = parse_real("correction-weight", optarg, 0, 10, &real);
			config.correction_weight = (float)real;
			break;
		case 'x':
			if (strcmp(optarg, "none") == 0)
				config.exclusion = MODEL_EXCLUDE_NONE;
			else if (strcmp(optarg, "bought") == 0)
				config.exclusion = MODEL_EXCLUDE_BOUGHT;
			else if (strcmp(optarg, "interacted") == 0)
				config.exclusion = MODEL_EXCLUDE_INTERACTED;
			else {
				fprintf(stderr,
					"streamrec eval: --exclude: must be none, bought or "
					"interacted, "
					"got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'w': rc = parse_weight(optarg, &config); break;
		case 't':
			rc = cli_parse_count("eval", "test-every", optarg, 1, 1000000000, &v);
			pc.test_every = (uint64_t)v;
			break;
		case 'W':
			rc = cli_parse_count("eval", "warmup", optarg, 0, 1LL << 40, &v);
			pc.warmup = (uint64_t)v;
			break;
		case 'm':
			rc = cli_parse_count("eval", "max-events", optarg, 0, 1LL << 40, &v);
			read_options.max_events = (size_t)v;
			break;
		case 'S':
			rc = cli_parse_count("eval", "seed", optarg, 0, 1LL << 62, &v);
			config.seed = (uint64_t)v;
			break;
		case 'E': export_path = optarg; break;
		case 'J': json_path = optarg; break;
		case 'T':
			if (strcmp(optarg, "exact") == 0)
				config.retrieval = MODEL_RETRIEVAL_EXACT;
			else if (strcmp(optarg, "index") == 0)
				config.retrieval = MODEL_RETRIEVAL_INDEX;
			else if (strcmp(optarg, "both") == 0)
				pc.both_engines = true;
			else {
				fprintf(stderr,
					"streamrec eval: --retrieval: must be exact, index or both, "
					"got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'P':
			rc = cli_parse_count("eval", "nprobe", optarg, 0, 1 << 20, &v);
			config.index_nprobe = (size_t)v;
			break;
		case 'N':
			rc = cli_parse_count("eval", "nlist", optarg, 0, 1 << 20, &v);
			config.index_nlist = (size_t)v;
			break;
		case 'G':
			rc = cli_parse_count("eval", "trending", optarg, 0, 10000, &v);
			config.index_trending = (size_t)v;
			break;
		case 1030:
			rc = cli_parse_count("eval", "covis-candidates", optarg, 0, 1 << 22, &v);
			config.covis_candidates = (unsigned)v;
			break;
		case 1000:
			rc = cli_parse_count("eval", "covis-neighbours", optarg, 1, COVIS_MAX_BOUND, &v);
			config.covis_neighbours = (unsigned)v;
			break;
		case 1001:
			rc = cli_parse_count("eval", "covis-window", optarg, 1, 1000, &v);
			config.covis_window = (unsigned)v;
			break;
		case 1002:
			if (strcmp(optarg, "one") == 0 || strcmp(optarg, "both") == 0)
				config.covis_both_directions = strcmp(optarg, "both") == 0;
			else {
				fprintf(stderr,
					"streamrec eval: --covis-directions: must be one or both, got "
					"'%s'\n",
					optarg);
				return 2;
			}
			break;
		case 1003:
			if (strcmp(optarg, "once") == 0 || strcmp(optarg, "weighted") == 0)
				config.covis_weighted = strcmp(optarg, "weighted") == 0;
			else {
				fprintf(stderr,
					"streamrec eval: --covis-count: must be once or weighted, got "
					"'%s'\n",
					optarg);
				return 2;
			}
			break;
		case 1004:
			rc = parse_real("covis-half-life", optarg, 0, 1e15, &real);
			config.covis_half_life_events = real;
			break;
		case 1005:
			rc = parse_real("trending-weight", optarg, 0, 100, &real);
			config.trending_weight = (float)real;
			break;
		case 1023:
			rc = parse_real("intent-decay", optarg, 1e-6, 1, &real);
			config.intent_decay = (float)real;
			break;
		case 1024:
			rc = parse_real("covis-recent-decay", optarg, 1e-6, 1, &real);
			config.covis_recent_decay = (float)real;
			break;
		case 1006:
			rc = parse_duration_ms("trending-half-life", optarg,
					       &config.trending_half_life_ms);
			break;
		case 1007: rc = parse_half_lives(optarg, half_lives, &half_life_count); break;
		case 1008: ablations = true; break;
		case 1009: baselines = false; break;
		/* the rules' texts are parsed after the options (nothing to free before) */
		case 1010: categories_text = optarg; break;
		case 1012: boost_text = optarg; break;
		case 1013: pin_text = optarg; break;
		case 1011:
			rc = cli_parse_count("eval", "max-per-category", optarg, 0, 1000, &v);
			er.rules.max_per_category = (unsigned)v;
			break;
		case 1014:
			rc = parse_real("explore-share", optarg, 0, 1, &er.rules.explore_share);
			break;
		case 1015:
			rc = cli_parse_count("eval", "explore-max-events", optarg, 1, 1000000000, &v);
			er.rules.explore_max_events = (unsigned)v;
			pc.new_item_events = (unsigned)v;
			break;
		case 1016: tune = true; break;
		case 1017: content_path = optarg; break;
		case 1018:
			rc = cli_parse_count("eval", "new-item-events", optarg, 1, 1000000000, &v);
			pc.new_item_events = (unsigned)v;
			break;
		case 1019:
			rc = cli_parse_count("eval", "content-min-events", optarg, 1, 1000000, &v);
			config.content_min_events = (unsigned)v;
			break;
		case 1021: {
			double w;
			rc = parse_real("search-weight", optarg, 0, 100, &w);
			config.search_weight = (float)w;
			break;
		}
		case 1020: {
			double w;
			rc = parse_real("content-prior", optarg, 0, 10, &w);
			config.content_prior_weight = (float)w;
			break;
		}
		case 1025:
			rc = cli_parse_count("eval", "replay-steps", optarg, 0, 16, &v);
			config.replay_steps = (unsigned)v;
			break;
		case 1026:
			rc = cli_parse_count("eval", "replay-negatives", optarg, 0, 64, &v);
			config.replay_negatives = (unsigned)v;
			break;
		case 1027:
			rc = parse_real("replay-weight", optarg, 0, 10, &real);
			if (rc == 0 && !(real > 0)) {
				fprintf(stderr, "streamrec eval: --replay-weight: must be in (0, 10], "
						"got %s\n", optarg);
				rc = -1;
			}
			config.replay_weight = (float)real;
			break;
		case 1028:
			rc = cli_parse_count("eval", "sync-every", optarg, 0, 1 << 24, &v);
			pc.sync_every = (size_t)v;
			sync_given = true;
			break;
		case 1029:
			rc = cli_parse_count("eval", "threads", optarg, 1, 64, &v);
			pc.threads = (unsigned)v;
			break;
		case 1022: {
			double rounds;
			rc = parse_real("tune-rounds", optarg, 1, 20, &rounds);
			if (rc == 0 && rounds != floor(rounds)) {
				fprintf(stderr, "streamrec eval: --tune-rounds: a whole number from 1 "
						"to 20, got %s\n", optarg);
				rc = -1;
			}
			tune = true;
			tune_rounds = (unsigned)rounds;
			break;
		}
		default: return 2;
		}
		if (rc != 0)
			return 2;
	}
	const char *bad = NULL;
	if (listrules_parse_categories(&er.rules, categories_text, why, sizeof why) != 0)
		bad = "--exclude-categories";
	else if (listrules_parse_boosts(&er.rules, boost_text, why, sizeof why) != 0)
		bad = "--boost";
	else if (listrules_parse_pins(&er.rules, pin_text, why, sizeof why) != 0 ||
		 listrules_check(&er.rules, pc.k, why, sizeof why) != 0)
		bad = "--pin";
	if (bad != NULL) {
		fprintf(stderr, "streamrec eval: %s: %s\n", bad, why);
		eval_rules_free(&er);
		return 2;
	}
	er.any = listrules_any(&er.rules);
	if (pc.threads > 1 && !sync_given)
		pc.sync_every = DEFAULT_SYNC_EVERY;
	if (pc.threads > 1 && pc.sync_every == 0) {
		fprintf(stderr, "streamrec eval: --threads %u: ranks blocks of events beside "
				"learning; --sync-every 0 ranks each list at its test point on one "
				"thread\n", pc.threads);
		eval_rules_free(&er);
		return 2;
	}
	/* these rank each list at their test points: beside lists ranked in
	 * blocks, the plain protocol's small edge would pass for a better
	 * engine, setting or signal */
	const char *at_test_points = pc.both_engines ? "--retrieval both"
				     : er.any        ? "list rules"
				     : tune          ? "--tune"
				     : ablations     ? "--ablations"
						     : NULL;
	if (pc.sync_every > 0 && at_test_points != NULL) {
		fprintf(stderr, "streamrec eval: --sync-every/--threads: not with %s: lists ranked at "
				"each test point do not compare with lists ranked in blocks\n",
			at_test_points);
		eval_rules_free(&er);
		return 2;
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "streamrec eval: expected exactly one event file (try --help)\n");
		eval_rules_free(&er);
		return 2;
	}
	if (model_config_check(&config, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec eval: %s\n", errstr);
		eval_rules_free(&er);
		return 2;
	}
	if (check_min_rating(&read_options) != 0) {
		eval_rules_free(&er);
		return 2;
	}

	const char *path = argv[optind];
	struct event_log *log = NULL;
	struct model *model = NULL;
	struct topk *topk = NULL;
	uint64_t *user_hash = NULL, *item_hash = NULL;
	uint8_t *event_flags = NULL;
	double t0 = clock_monotonic_s();
	if (eventlog_read(path, &read_options, &log, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec eval: %s\n", errstr);
		eval_rules_free(&er);
		return 1;
	}
	if (eventlog_sort_by_time(log, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec eval: %s\n", errstr);
		goto out_free;
	}
	double read_s = clock_monotonic_s() - t0;
	if (eventlog_id_hashes(log, &user_hash, &item_hash) != 0) {
		fprintf(stderr, "streamrec eval: out of memory\n");
		goto out_free;
	}

	if (content_path != NULL) {
		if (eventlog_read_content(log, content_path, &content, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "streamrec eval: --content: %s\n", errstr);
			goto out_free;
		}
		config.content_dim = content.dim;
	}
	model = model_new(&config, errstr, sizeof errstr);
	if (er.any && resolve_eval_rules(&er, log, pc.k) != 0)
		goto out_free;
	if (er.any) {
		pc.rules = &er.view;
		pc.rules_seed = config.seed;
	}
	struct topk_config tc = {.max_batch = 1,
				 .max_k = er.any ? listrules_fetch(&er.rules, pc.k, 1000) : pc.k};
	topk = model ? topk_new(&tc, errstr, sizeof errstr) : NULL;
	if (model == NULL || topk == NULL ||
	    build_arms(&config, baselines, half_lives, half_life_count, ablations, &arms,
		       errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec eval: %s\n", errstr);
		goto out_free;
	}
	struct prequential_stream stream = {.count = log->count,
					    .user = log->user,
					    .item = log->item,
					    .type = log->type,
					    .ts_ms = log->ts_ms,
					    .user_hash = user_hash,
					    .item_hash = item_hash,
					    .item_total = log->item_count,
					    .item_content = content.vectors,
					    .item_has_content = content.has,
					    .content_dim = content.dim};
	if (export_path != NULL) {
		event_flags = calloc(log->count + 1, 1);
		if (event_flags == NULL) {
			fprintf(stderr, "streamrec eval: out of memory\n");
			goto out_free;
		}
		pc.event_flags = event_flags;
	}
	pc.arms = arms.arm;
	pc.arm_count = arms.count;
	struct prequential_result r = {.arms = arms.split};
	if (tune && tune_search(&config, topk, &stream, &pc, tune_rounds, &tuned, errstr,
				sizeof errstr) != 0) {
		fprintf(stderr, "streamrec eval: --tune: %s\n", errstr);
		goto out_free;
	}
	if (prequential_run(model, topk, &stream, &pc, &r, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec eval: %s\n", errstr);
		goto out_free;
	}
	printf("%s: %zu events, %zu users, %zu items (read and sorted in %.1f s)\n", path,
	       log->count, log->user_count, log->item_count, read_s);
	print_input_format(log, &read_options);
	printf("signals:");
	for (size_t k = 0; k < SIGNALS; k++)
		if (*signal_switch(&config, k))
			printf(" %s", signal_table[k].name);
	printf("  dim=%zu lr=%g l2=%g negatives=%u recent=%u intent_decay=%g exclude=%s\n", config.dim,
	       (double)config.learning_rate, (double)config.l2, config.negatives,
	       config.recent_items, (double)config.intent_decay, exclusion_name(config.exclusion));
	printf("replay: steps=%u negatives=%u weight=%g\n", config.replay_steps,
	       config.replay_negatives, (double)config.replay_weight);
	char duration[32];
	format_duration(config.trending_half_life_ms, duration, sizeof duration);
	printf("covis: weight=%g window=%u recent_decay=%g directions=%s count=%s neighbours=%u "
	       "half_life=%g events (longest list %zu); trending: weight=%g half_life=%s\n",
	       (double)config.covis_weight, config.covis_window, (double)config.covis_recent_decay,
	       config.covis_both_directions ? "both" : "one",
	       config.covis_weighted ? "weighted" : "once", config.covis_neighbours,
	       config.covis_half_life_events, model_covis_longest(model),
	       (double)config.trending_weight, duration);
	if (pc.test_every > 1 || pc.warmup > 0)
		printf("sampled: one positive event in %llu tested, first %llu events not tested\n",
		       (unsigned long long)pc.test_every, (unsigned long long)pc.warmup);
	printf("\n| ranking    | HR@%-5zu | NDCG@%-3zu | MRR      | coverage | tests    |\n", pc.k,
	       pc.k);
	printf("|------------|----------|----------|----------|----------|----------|\n");
	if (pc.both_engines) {
		print_row("exact", &r.model);
		print_row("index", &r.index);
	} else
		print_row(config.retrieval == MODEL_RETRIEVAL_INDEX ? "index" : "streamrec",
			  &r.model);
	print_row("popularity", &r.popularity);
	printf("\nHR@%zu split: items new to the user / repeats; users with history / without\n",
	       pc.k);
	printf("| %-18s | all      | new      | repeat   | warm     | cold     |\n", "ranking");
	printf("|--------------------|----------|----------|----------|----------|----------|\n");
	print_split_row("streamrec", &r.model_split);
	print_split_row("popularity", &r.popularity_split);
	for (size_t a = 0; a < arms.count; a++)
		print_split_row(arms.name[a], &r.arms[a]);
	printf("| %-18s | %8llu | %8llu | %8llu | %8llu | %8llu |\n", "(tests)",
	       (unsigned long long)r.model_split.all.tests,
	       (unsigned long long)r.model_split.discovery.tests,
	       (unsigned long long)r.model_split.repeat.tests,
	       (unsigned long long)r.model_split.warm.tests,
	       (unsigned long long)r.model_split.cold.tests);
	printf("\nnew items (tests on an item with fewer than %llu positives before)\n",
	       (unsigned long long)(pc.new_item_events ? pc.new_item_events : 10));
	printf("| %-18s | HR@%-5zu | NDCG@%-3zu | tests    |\n", "ranking", pc.k, pc.k);
	printf("|--------------------|----------|----------|----------|\n");
	print_new_item_row("streamrec", &r.model_split.new_item);
	print_new_item_row("popularity", &r.popularity_split.new_item);
	for (size_t a = 0; a < arms.count; a++)
		print_new_item_row(arms.name[a], &r.arms[a].new_item);
	if (r.searches > 0) {
		printf("\nafter a search (a user's first positive event after their search; %llu "
		       "searches)\n",
		       (unsigned long long)r.searches);
		printf("| %-18s | HR@%-5zu | NDCG@%-3zu | tests    |\n", "ranking", pc.k, pc.k);
		printf("|--------------------|----------|----------|----------|\n");
		print_new_item_row("streamrec", &r.model_split.after_search);
		print_new_item_row("popularity", &r.popularity_split.after_search);
		for (size_t a = 0; a < arms.count; a++)
			print_new_item_row(arms.name[a], &r.arms[a].after_search);
	}
	if (content_path != NULL) {
		struct model_content_stats cs;
		model_content_stats(model, &cs);
		printf("content: %zu numbers a vector, %zu of %zu items have one (%zu lines, %zu "
		       "for items not in the stream); map learned from %llu items, %llu placed; "
		       "min_events=%u prior=%g\n",
		       content.dim, content.matched, log->item_count, content.lines, content.unknown,
		       (unsigned long long)cs.pairs, (unsigned long long)cs.placed,
		       config.content_min_events, (double)config.content_prior_weight);
	}
	if (pc.both_engines) {
		struct model_index_stats is;
		model_index_stats(model, &is);
		printf("\nreplay: exact %.0f events/s, index %.0f events/s (%.1fx) (learn + rank "
		       "the engine's list and popularity's, 1 thread; ranking took %.2f s exact, "
		       "%.2f s index)\n",
		       r.exact_events_per_s, r.index_events_per_s,
		       r.exact_events_per_s > 0 ? r.index_events_per_s / r.exact_events_per_s : 0,
		       r.exact_rank_seconds, r.index_rank_seconds);
		printf("index: recall@%zu against exact %.4f on the test points; relative HR@%zu "
		       "%+.2f%%; ",
		       pc.k, r.index_recall, pc.k,
		       r.model.hit_rate > 0 ? 100.0 * (r.index.hit_rate / r.model.hit_rate - 1.0)
					    : 0.0);
		print_index_upkeep(&is, config.index_trending);
		printf("%llu tests skipped (item excluded by the protocol)\n",
		       (unsigned long long)r.skipped_excluded);
	} else {
		char blocks[96] = "";
		if (pc.sync_every > 0)
			snprintf(blocks, sizeof blocks, ", lists ranked in blocks of %zu events",
				 pc.sync_every);
		printf("\nreplay: %.0f events/s (learn + rank both lists, %u thread%s, %s engine%s); "
		       "%llu tests skipped (item excluded by the protocol)\n",
		       r.events_per_s, pc.threads, pc.threads > 1 ? "s" : "",
		       retrieval_name(&config, &pc), blocks,
		       (unsigned long long)r.skipped_excluded);
		if (pc.sync_every > 0)
			printf("blocks: ranking took %.2f s of the replay's %.2f s; the replay waited "
			       "%.2f s for it\n",
			       r.block_rank_seconds, r.seconds, r.block_wait_seconds);
		struct model_index_stats is;
		model_index_stats(model, &is);
		if (is.built) {
			printf("index: ");
			print_index_upkeep(&is, config.index_trending);
		}
	}
	if (er.any) {
		printf("\nlist rules:%s%s max_per_category=%u boosts=%zu pins=%zu "
		       "explore_share=%g (%zu of %zu slots); new items: fewer than %u positive "
		       "events\n",
		       er.rules.exclude_count ? " exclude_categories=" : "",
		       er.rules.exclude_count ? er.rules.exclude_categories[0] : "",
		       er.rules.max_per_category, er.rules.boost_count, er.rules.pin_count,
		       er.rules.explore_share, er.view.explore_slots, pc.k,
		       pc.new_item_events ? pc.new_item_events : 10);
		printf("| %-18s | HR@%-5zu | NDCG@%-3zu | new-item slots | new items shown |\n",
		       "list", pc.k, pc.k);
		printf("|--------------------|----------|----------|----------------|------------"
		       "-----|\n");
		printf("| %-18s | %8.4f | %8.4f | %14.4f | %15llu |\n", "streamrec",
		       r.model.hit_rate, r.model.ndcg, r.model_exposure.new_share,
		       (unsigned long long)r.model_exposure.new_items_shown);
		printf("| %-18s | %8.4f | %8.4f | %14.4f | %15llu |\n", "streamrec + rules",
		       r.rules_split.all.hit_rate, r.rules_split.all.ndcg,
		       r.rules_exposure.new_share,
		       (unsigned long long)r.rules_exposure.new_items_shown);
	}
	if (tune)
		print_tuned(&tuned);
	if ((export_path != NULL &&
	     write_stream(export_path, log, event_flags, &config, errstr, sizeof errstr) != 0) ||
	    (json_path != NULL &&
	     write_json(json_path, log, &config, &pc, &r, &arms, er.any, tune ? &tuned : NULL, errstr,
			sizeof errstr) !=
		 0)) {
		fprintf(stderr, "streamrec eval: %s\n", errstr);
		goto out_free;
	}
	status = 0;
out_free:
	eval_rules_free(&er);
	eval_arms_free(&arms);
	topk_free(topk);
	model_free(model);
	free(user_hash);
	free(item_hash);
	free(event_flags);
	eventlog_content_free(&content);
	eventlog_free(log);
	return status;
}
