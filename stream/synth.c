/*
 * synth: the world is a few flat arrays; the stream is a min-heap of users
 * keyed by the time of their next event, so events come out in time order
 * without a sort and memory stays O(users + items) beside the log itself.
 *
 * Randomness is splitmix64: one stream builds the world, another (reset on
 * every synth_generate()) drives the events, so a log depends only on the
 * configuration.
 */
#include "errstr.h"
#include "rng.h"
#include "synth.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Gaps within a session lie in [GAP_MIN, GAP_MAX] x session_gap_ms; pauses are at
 * least PAUSE_MIN x session_gap_ms; SPLIT sits between the two. */
#define GAP_MIN   0.25
#define GAP_MAX   4.0
#define PAUSE_MIN 8.0
#define SPLIT     6.0

/* How many popularity draws may hit the previous item before taking its neighbour. */
#define MAX_REDRAWS 16

/* Items a repeat may re-view: the user's last distinct ones. */
#define REPEAT_HISTORY 4
/* A drift turns each cluster's ranking by this share of its size. */
#define DRIFT_TURN 0.618

struct synth_user {
	int64_t next_ms;       /* time of the next event, from the stream's start */
	double pause_extra_ms; /* mean of a pause's part beyond the minimum */
	uint32_t main_cluster;
	uint32_t second_cluster; /* EVENTLOG_NONE: none */
	uint32_t session_cluster;
	uint32_t left_in_session; /* 0: the next event starts a session */
	uint32_t prev_item;       /* EVENTLOG_NONE at a session's start */
	uint8_t prev_type;
	uint8_t history_count;              /* repeats: the last distinct items, */
	uint32_t history[REPEAT_HISTORY];   /* most recent first */
};

struct heap_entry {
	int64_t next_ms;
	uint32_t user;
};

struct synth {
	struct synth_config config;
	uint32_t *item_cluster;  /* per item */
	uint32_t *cluster_items; /* items grouped by cluster, by popularity rank */
	double *cluster_cdf; /* parallel to cluster_items: cumulative popularity in the cluster */
	uint32_t *cluster_offset; /* clusters + 1 entries */
	uint32_t *successors;     /* items x config.successors */
	uint32_t *predecessor_offset; /* items + 1: predecessors of item i at [offset[i], offset[i+1]) */
	uint32_t *predecessors;       /* items x config.successors in all */
	size_t drift_turns;           /* drift periods passed so far in the stream */
	size_t *launch;               /* per item: the event it may be drawn from (arrivals) */
	size_t event_now;             /* the event being generated */
	struct synth_user *users;
	double *activity;      /* per user, mean 1 */
	double session_gap_ms; /* config.session_gap_ms, or lower when users are too few */
	double type_cdf[EVENT_TYPE_COUNT];
};

/* ---- randomness -------------------------------------------------------------------- */

/* Uniform in [0, 1). */
static double next_unit(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) / 9007199254740992.0;
}

/* Uniform in [0, n), n > 0 (multiply-shift; the bias is below 2^-32). */
static uint32_t next_below(uint64_t *state, uint32_t n)
{
	return (uint32_t)(((rng_next(state) >> 32) * (uint64_t)n) >> 32);
}

static double next_exponential(uint64_t *state, double mean)
{
	return -mean * log(1.0 - next_unit(state));
}

static double next_normal(uint64_t *state)
{
	double u = 1.0 - next_unit(state), v = next_unit(state);
	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* ---- configuration ------------------------------------------------------------------ */

struct synth_config synth_config_default(void)
{
	struct synth_config c = {
	    .seed = 1,
	    .users = 10000,
	    .items = 5000,
	    .clusters = 20,
	    .events = 1000000,
	    .start_ms = 1700000000000LL,
	    .mean_gap_ms = 20.0,
	    .session_gap_ms = 30000.0,
	    .session_min_events = 2,
	    .session_max_events = 15,
	    .intent_session_share = 0.3,
	    .second_cluster_user_share = 0.25,
	    .second_cluster_session_share = 0.3,
	    .successors = 4,
	    .successor_same_cluster = 0.9,
	    .successor_prob = 0.5,
	    .zipf_exponent = 1.0,
	    .activity_sigma = 1.0,
	    .purchase_after_cart = 0.3,
	    .remove_after_cart = 0.1,
	};
	c.type_share[EVENT_IMPRESSION] = 0.40;
	c.type_share[EVENT_VIEW] = 0.35;
	c.type_share[EVENT_CLICK] = 0.14;
	c.type_share[EVENT_ADD_TO_CART] = 0.05;
	c.type_share[EVENT_REMOVE_FROM_CART] = 0.0;
	c.type_share[EVENT_FAVORITE] = 0.05;
	c.type_share[EVENT_PURCHASE] = 0.01;
	return c;
}

static bool is_probability(double p)
{
	return p >= 0.0 && p <= 1.0; /* false for NaN too */
}

int synth_config_check(const struct synth_config *c, char *errstr, size_t errstr_size)
{
	const struct {
		const char *name;
		double value;
	} probabilities[] = {
	    {"intent_session_share", c->intent_session_share},
	    {"second_cluster_user_share", c->second_cluster_user_share},
	    {"second_cluster_session_share", c->second_cluster_session_share},
	    {"successor_same_cluster", c->successor_same_cluster},
	    {"successor_prob", c->successor_prob},
	    {"successor_reverse_share", c->successor_reverse_share},
	    {"repeat_prob", c->repeat_prob},
	    {"arrival_share", c->arrival_share},
	    {"purchase_after_cart", c->purchase_after_cart},
	    {"remove_after_cart", c->remove_after_cart},
	};
	double share_sum = 0;

	if (c->users < 1 || c->users >= EVENTLOG_NONE) {
		set_errstr(errstr, errstr_size, "users: must be from 1 to %u, got %u",
			   EVENTLOG_NONE - 1, c->users);
		return -1;
	}
	if (c->clusters < 1) {
		set_errstr(errstr, errstr_size, "clusters: must be at least 1, got %u",
			   c->clusters);
		return -1;
	}
	if (c->items >= EVENTLOG_NONE || c->items / 2 < c->clusters) {
		set_errstr(
		    errstr, errstr_size,
		    "items: must be at least 2 per cluster (%u clusters) and below %u, got %u",
		    c->clusters, EVENTLOG_NONE, c->items);
		return -1;
	}
	if (c->successors > c->items / c->clusters - 1) {
		set_errstr(
		    errstr, errstr_size,
		    "successors: must be below the smallest cluster's size (%u items), got %u",
		    c->items / c->clusters, c->successors);
		return -1;
	}
	if (c->start_ms < 0) {
		set_errstr(errstr, errstr_size, "start_ms: must not be negative, got %lld",
			   (long long)c->start_ms);
		return -1;
	}
	if (!(c->mean_gap_ms > 0.0 && c->mean_gap_ms <= 1e12)) {
		set_errstr(errstr, errstr_size,
			   "mean_gap_ms: must be above 0 and at most 1e12, got %g", c->mean_gap_ms);
		return -1;
	}
	if (!(c->session_gap_ms >= 1.0 && c->session_gap_ms <= 1e12)) {
		set_errstr(errstr, errstr_size, "session_gap_ms: must be from 1 to 1e12, got %g",
			   c->session_gap_ms);
		return -1;
	}
	if (c->session_min_events < 1 || c->session_max_events < c->session_min_events ||
	    c->session_max_events > 1000000) {
		set_errstr(
		    errstr, errstr_size,
		    "session_min_events, session_max_events: need 1 <= min <= max <= 1000000, "
		    "got %u and %u",
		    c->session_min_events, c->session_max_events);
		return -1;
	}
	for (size_t i = 0; i < sizeof probabilities / sizeof probabilities[0]; i++) {
		if (!is_probability(probabilities[i].value)) {
			set_errstr(errstr, errstr_size, "%s: must be from 0 to 1, got %g",
				   probabilities[i].name, probabilities[i].value);
			return -1;
		}
	}
	if (c->purchase_after_cart + c->remove_after_cart > 1.0) {
		set_errstr(errstr, errstr_size,
			   "purchase_after_cart + remove_after_cart: must be at most 1, got %g",
			   c->purchase_after_cart + c->remove_after_cart);
		return -1;
	}
	if (!(c->zipf_exponent >= 0.0 && c->zipf_exponent <= 10.0)) {
		set_errstr(errstr, errstr_size, "zipf_exponent: must be from 0 to 10, got %g",
			   c->zipf_exponent);
		return -1;
	}
	if (!(c->activity_sigma >= 0.0 && c->activity_sigma <= 5.0)) {
		set_errstr(errstr, errstr_size, "activity_sigma: must be from 0 to 5, got %g",
			   c->activity_sigma);
		return -1;
	}
	for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
		if (!(c->type_share[t] >= 0.0 && c->type_share[t] <= 1e6)) {
			set_errstr(errstr, errstr_size,
				   "type_share[%s]: must be from 0 to 1e6, got %g",
				   event_type_name((enum event_type)t), c->type_share[t]);
			return -1;
		}
		share_sum += c->type_share[t];
	}
	if (share_sum <= 0.0) {
		set_errstr(errstr, errstr_size, "type_share: at least one share must be above 0");
		return -1;
	}
	return 0;
}

/* ---- the world ------------------------------------------------------------------------- */

static bool contains(const uint32_t *list, uint32_t count, uint32_t value)
{
	for (uint32_t i = 0; i < count; i++)
		if (list[i] == value)
			return true;
	return false;
}

/*
 * Deals the items to clusters in a random order; ranks within a cluster by
 * that order. `order` is scratch space for `items` indexes.
 */
static void build_clusters(struct synth *s, uint64_t *rng, uint32_t *order)
{
	const struct synth_config *c = &s->config;

	for (uint32_t i = 0; i < c->items; i++)
		order[i] = i;
	for (uint32_t i = c->items - 1; i > 0; i--) {
		uint32_t j = next_below(rng, i + 1), swap = order[i];
		order[i] = order[j];
		order[j] = swap;
	}
	/* cluster k holds positions k, k + clusters, k + 2*clusters, ... of the order */
	s->cluster_offset[0] = 0;
	for (uint32_t k = 0; k < c->clusters; k++) {
		uint32_t size = c->items / c->clusters + (k < c->items % c->clusters ? 1 : 0);
		s->cluster_offset[k + 1] = s->cluster_offset[k] + size;
	}
	for (uint32_t j = 0; j < c->items; j++) {
		uint32_t k = j % c->clusters, rank = j / c->clusters;
		s->cluster_items[s->cluster_offset[k] + rank] = order[j];
		s->item_cluster[order[j]] = k;
	}

	for (uint32_t k = 0; k < c->clusters; k++) {
		uint32_t from = s->cluster_offset[k], to = s->cluster_offset[k + 1];
		double total = 0;
		for (uint32_t r = from; r < to; r++) {
			total += pow((double)(r - from + 1), -c->zipf_exponent);
			s->cluster_cdf[r] = total;
		}
		for (uint32_t r = from; r < to; r++)
			s->cluster_cdf[r] /= total;
		s->cluster_cdf[to - 1] = 1.0;
	}
}

/* A uniform item of any cluster but `cluster`. */
static uint32_t item_outside(const struct synth *s, uint64_t *rng, uint32_t cluster)
{
	uint32_t from = s->cluster_offset[cluster], to = s->cluster_offset[cluster + 1];
	uint32_t x = next_below(rng, s->config.items - (to - from));
	return s->cluster_items[x < from ? x : x + (to - from)];
}

static void build_successors(struct synth *s, uint64_t *rng)
{
	const struct synth_config *c = &s->config;
	for (uint32_t item = 0; item < c->items; item++) {
		uint32_t *list = s->successors + (size_t)item * c->successors;
		uint32_t k = s->item_cluster[item];
		uint32_t from = s->cluster_offset[k], size = s->cluster_offset[k + 1] - from;
		for (uint32_t n = 0; n < c->successors;) {
			uint32_t pick;
			if (c->clusters == 1 || next_unit(rng) < c->successor_same_cluster)
				pick = s->cluster_items[from + next_below(rng, size)];
			else
				pick = item_outside(s, rng, k);
			if (pick != item && !contains(list, n, pick))
				list[n++] = pick;
		}
	}
}

/* Pairs in both orders: the predecessor lists, inverted from the successors. */
static int build_predecessors(struct synth *s)
{
	const struct synth_config *c = &s->config;
	size_t total = (size_t)c->items * c->successors;
	s->predecessor_offset = calloc((size_t)c->items + 1, sizeof *s->predecessor_offset);
	s->predecessors = malloc((total ? total : 1) * sizeof *s->predecessors);
	if (s->predecessor_offset == NULL || s->predecessors == NULL)
		return -1;
	for (size_t k = 0; k < total; k++)
		s->predecessor_offset[s->successors[k] + 1]++;
	for (uint32_t i = 0; i < c->items; i++)
		s->predecessor_offset[i + 1] += s->predecessor_offset[i];
	for (uint32_t i = 0; i < c->items; i++)
		for (uint32_t n = 0; n < c->successors; n++) {
			uint32_t to = s->successors[(size_t)i * c->successors + n];
			uint32_t at = s->predecessor_offset[to]++;
			s->predecessors[at] = i;
		}
	/* the fill moved each offset to the next list's start: shift back */
	for (uint32_t i = c->items; i > 0; i--)
		s->predecessor_offset[i] = s->predecessor_offset[i - 1];
	s->predecessor_offset[0] = 0;
	return 0;
}

static void build_users(struct synth *s, uint64_t *rng)
{
	const struct synth_config *c = &s->config;
	double activity_sum = 0;
	for (uint32_t u = 0; u < c->users; u++) {
		struct synth_user *user = &s->users[u];
		user->main_cluster = next_below(rng, c->clusters);
		user->second_cluster = EVENTLOG_NONE;
		if (c->clusters > 1 && next_unit(rng) < c->second_cluster_user_share) {
			uint32_t other = next_below(rng, c->clusters - 1);
			user->second_cluster = other < user->main_cluster ? other : other + 1;
		}
		s->activity[u] = exp(c->activity_sigma * next_normal(rng) -
				     c->activity_sigma * c->activity_sigma / 2.0);
		activity_sum += s->activity[u];
	}
	for (uint32_t u = 0; u < c->users; u++)
		s->activity[u] *= (double)c->users / activity_sum;
}

/* Mean gap within a session, in units of session_gap_ms (a shifted exponential, capped). */
static double within_gap_factor(void)
{
	return GAP_MIN + (1.0 - GAP_MIN) * (1.0 - exp(-(GAP_MAX - GAP_MIN) / (1.0 - GAP_MIN)));
}

/*
 * Sets every user's mean pause so that the stream's mean gap comes out at
 * mean_gap_ms. A user of activity a should go through a session and a pause
 * in mean_session * users * mean_gap / a; busy users cannot pause less than
 * the minimum, so everyone's pause beyond the minimum shrinks by one common
 * factor, found by bisection, until the rates add up. When even minimum
 * pauses all round are too slow (few users), sessions get faster first: the
 * session gap is lowered until minimum pauses would give 1.25 times the rate.
 */
static void plan_pauses(struct synth *s)
{
	const struct synth_config *c = &s->config;
	double mean_session = (c->session_min_events + c->session_max_events) / 2.0;
	double target_rate = 1.0 / c->mean_gap_ms, w = c->session_gap_ms, busiest_cycle, lo, hi;

	busiest_cycle = (mean_session - 1.0) * within_gap_factor() * w + ceil(PAUSE_MIN * w);
	if (c->users * mean_session / busiest_cycle < 1.25 * target_rate) {
		w *= c->users * mean_session / busiest_cycle / (1.25 * target_rate);
		if (w < 1.0)
			w = 1.0;
		busiest_cycle =
		    (mean_session - 1.0) * within_gap_factor() * w + ceil(PAUSE_MIN * w);
	}
	s->session_gap_ms = w;
	for (uint32_t u = 0; u < c->users; u++) {
		double cycle = mean_session * c->users * c->mean_gap_ms / s->activity[u];
		s->users[u].pause_extra_ms = cycle > busiest_cycle ? cycle - busiest_cycle : 0.0;
	}
	/* rate(f) = sum of mean_session / (busiest_cycle + f * extra) falls as f grows */
	lo = 0.0;
	hi = 1.0;
	for (int iteration = 0; iteration < 50; iteration++) {
		double f = (lo + hi) / 2.0, rate = 0;
		for (uint32_t u = 0; u < c->users; u++)
			rate += mean_session / (busiest_cycle + f * s->users[u].pause_extra_ms);
		if (rate > target_rate)
			lo = f;
		else
			hi = f;
	}
	for (uint32_t u = 0; u < c->users; u++)
		s->users[u].pause_extra_ms *= (lo + hi) / 2.0;
}

/*
 * Arrivals: arrival_share of each cluster's items below its two most popular
 * ranks, chosen and ordered with a generator of their own (the rest of the
 * world is the same with or without arrivals), launch at evenly spaced
 * events. @returns 0, or -1 when out of memory.
 */
static int plan_arrivals(struct synth *s)
{
	const struct synth_config *c = &s->config;
	uint64_t rng = c->seed ^ 0xA5A5F00DCAFEBABEULL;
	uint32_t *arriving = malloc((size_t)c->items * sizeof *arriving);
	size_t count = 0;
	if (arriving == NULL)
		return -1;
	for (uint32_t cl = 0; cl < c->clusters; cl++)
		for (uint32_t r = s->cluster_offset[cl] + 2; r < s->cluster_offset[cl + 1]; r++)
			if (next_unit(&rng) < c->arrival_share)
				arriving[count++] = s->cluster_items[r];
	for (size_t i = count; i > 1; i--) { /* Fisher-Yates: the launch order */
		size_t j = next_below(&rng, (uint32_t)i);
		uint32_t t = arriving[i - 1];
		arriving[i - 1] = arriving[j];
		arriving[j] = t;
	}
	for (size_t i = 0; i < count; i++)
		s->launch[arriving[i]] =
		    (size_t)((double)(i + 1) * (double)c->events / (double)(count + 1));
	free(arriving);
	return 0;
}

size_t synth_item_launch(const struct synth *s, uint32_t item)
{
	return s->launch[item];
}

static bool launched(const struct synth *s, uint32_t item)
{
	return s->launch[item] <= s->event_now;
}

struct synth *synth_new(const struct synth_config *config, char *errstr, size_t errstr_size)
{
	struct synth *s;
	uint32_t *order;
	uint64_t rng;
	double total = 0;

	if (synth_config_check(config, errstr, errstr_size) != 0)
		return NULL;
	s = calloc(1, sizeof *s);
	if (s == NULL)
		goto out_of_memory;
	s->config = *config;
	s->item_cluster = malloc((size_t)config->items * sizeof *s->item_cluster);
	s->cluster_items = malloc((size_t)config->items * sizeof *s->cluster_items);
	s->cluster_cdf = malloc((size_t)config->items * sizeof *s->cluster_cdf);
	s->cluster_offset = malloc(((size_t)config->clusters + 1) * sizeof *s->cluster_offset);
	s->successors =
	    malloc(((size_t)config->items * config->successors + 1) * sizeof *s->successors);
	s->users = calloc(config->users, sizeof *s->users);
	s->activity = malloc((size_t)config->users * sizeof *s->activity);
	s->launch = calloc(config->items, sizeof *s->launch);
	if (s->launch == NULL || s->item_cluster == NULL || s->cluster_items == NULL ||
	    s->cluster_cdf == NULL || s->cluster_offset == NULL || s->successors == NULL ||
	    s->users == NULL || s->activity == NULL)
		goto out_of_memory;

	rng = config->seed;
	order = malloc((size_t)config->items * sizeof *order);
	if (order == NULL)
		goto out_of_memory;
	build_clusters(s, &rng, order);
	free(order);
	build_successors(s, &rng);
	if (config->successor_reverse_share > 0 && build_predecessors(s) != 0)
		goto out_of_memory;
	build_users(s, &rng);
	plan_pauses(s);
	if (config->arrival_share > 0 && plan_arrivals(s) != 0)
		goto out_of_memory;
	for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
		total += config->type_share[t];
		s->type_cdf[t] = total;
	}
	for (int t = 0; t < EVENT_TYPE_COUNT; t++)
		s->type_cdf[t] /= total;
	return s;

out_of_memory:
	set_errstr(errstr, errstr_size, "out of memory for %u users and %u items", config->users,
		   config->items);
	synth_free(s);
	return NULL;
}

void synth_free(struct synth *s)
{
	if (s == NULL)
		return;
	free(s->item_cluster);
	free(s->launch);
	free(s->cluster_items);
	free(s->cluster_cdf);
	free(s->cluster_offset);
	free(s->successors);
	free(s->predecessor_offset);
	free(s->predecessors);
	free(s->users);
	free(s->activity);
	free(s);
}

const struct synth_config *synth_config(const struct synth *s)
{
	return &s->config;
}

const uint32_t *synth_item_successors(const struct synth *s, uint32_t item)
{
	return s->successors + (size_t)item * s->config.successors;
}

uint32_t synth_user_second_cluster(const struct synth *s, uint32_t user)
{
	return s->users[user].second_cluster;
}

int64_t synth_session_split_ms(const struct synth *s)
{
	return (int64_t)(SPLIT * s->session_gap_ms);
}

/* ---- the stream ------------------------------------------------------------------------ */

/* A popularity-weighted item of the cluster, other than `avoid`. */
static uint32_t popular_item(const struct synth *s, uint64_t *rng, uint32_t cluster, uint32_t avoid)
{
	uint32_t from = s->cluster_offset[cluster], to = s->cluster_offset[cluster + 1];
	uint32_t rank = from;
	for (int attempt = 0; attempt < MAX_REDRAWS; attempt++) {
		double u = next_unit(rng);
		uint32_t lo = from, hi = to - 1;
		while (lo < hi) { /* first rank whose cumulative share exceeds u */
			uint32_t mid = lo + (hi - lo) / 2;
			if (s->cluster_cdf[mid] > u)
				hi = mid;
			else
				lo = mid + 1;
		}
		rank = lo;
		if (s->drift_turns > 0) {
			uint32_t size = to - from;
			uint64_t turn = (uint64_t)((double)size * DRIFT_TURN) * s->drift_turns;
			rank = from + (uint32_t)(((uint64_t)(rank - from) + turn) % size);
		}
		if (s->cluster_items[rank] != avoid && launched(s, s->cluster_items[rank]))
			return s->cluster_items[rank];
	}
	/* a cluster has at least 2 items, launched from the start: the next
	 * launched rank is another one */
	for (uint32_t step = 1; step < to - from; step++) {
		uint32_t next = from + (rank - from + step) % (to - from);
		if (s->cluster_items[next] != avoid && launched(s, s->cluster_items[next]))
			return s->cluster_items[next];
	}
	return s->cluster_items[rank];
}

static enum event_type drawn_type(const struct synth *s, uint64_t *rng)
{
	double u = next_unit(rng);
	for (int t = 0; t < EVENT_TYPE_COUNT - 1; t++)
		if (u < s->type_cdf[t])
			return (enum event_type)t;
	return (enum event_type)(EVENT_TYPE_COUNT - 1);
}

static void start_session(struct synth *s, struct synth_user *user, uint64_t *rng)
{
	const struct synth_config *c = &s->config;
	user->left_in_session = c->session_min_events +
				next_below(rng, c->session_max_events - c->session_min_events + 1);
	if (c->clusters > 1 && next_unit(rng) < c->intent_session_share) {
		uint32_t other = next_below(rng, c->clusters - 1);
		user->session_cluster = other < user->main_cluster ? other : other + 1;
	} else if (user->second_cluster != EVENTLOG_NONE &&
		   next_unit(rng) < c->second_cluster_session_share) {
		user->session_cluster = user->second_cluster;
	} else {
		user->session_cluster = user->main_cluster;
	}
	user->prev_item = EVENTLOG_NONE;
	user->prev_type = EVENT_TYPE_COUNT;
}

/* Picks the user's next event within its session. */
static void next_event(struct synth *s, struct synth_user *user, uint64_t *rng, uint32_t *item,
		       enum event_type *type)
{
	const struct synth_config *c = &s->config;
	if (user->prev_type == EVENT_ADD_TO_CART) {
		double u = next_unit(rng);
		if (u < c->purchase_after_cart + c->remove_after_cart) {
			*item = user->prev_item;
			*type =
			    u < c->purchase_after_cart ? EVENT_PURCHASE : EVENT_REMOVE_FROM_CART;
			return;
		}
	}
	*type = drawn_type(s, rng);
	if (c->repeat_prob > 0 && user->history_count > 1 && next_unit(rng) < c->repeat_prob) {
		uint32_t pick = user->history[next_below(rng, user->history_count)];
		if (pick != user->prev_item) {
			*item = pick;
			return;
		}
	}
	if (user->prev_item == EVENTLOG_NONE)
		*item = popular_item(s, rng, user->session_cluster, EVENTLOG_NONE);
	else if (c->successors > 0 && next_unit(rng) < c->successor_prob) {
		uint32_t from = s->predecessor_offset ? s->predecessor_offset[user->prev_item] : 0;
		uint32_t to = s->predecessor_offset ? s->predecessor_offset[user->prev_item + 1] : 0;
		if (c->successor_reverse_share > 0 && to > from &&
		    next_unit(rng) < c->successor_reverse_share)
			*item = s->predecessors[from + next_below(rng, to - from)];
		else
			*item = synth_item_successors(s, user->prev_item)[next_below(
			    rng, c->successors)];
		if (!launched(s, *item))
			*item = popular_item(s, rng, user->session_cluster, user->prev_item);
	} else
		*item = popular_item(s, rng, user->session_cluster, user->prev_item);
}

/* Repeats: puts item first in the user's recent distinct items. */
static void remember_item(struct synth_user *user, uint32_t item)
{
	uint32_t k = 0;
	while (k < user->history_count && user->history[k] != item)
		k++;
	if (k == user->history_count && user->history_count < REPEAT_HISTORY)
		user->history_count++;
	if (k == REPEAT_HISTORY)
		k = REPEAT_HISTORY - 1;
	memmove(user->history + 1, user->history, k * sizeof *user->history);
	user->history[0] = item;
}


static int64_t within_session_gap(const struct synth *s, uint64_t *rng)
{
	double w = s->session_gap_ms;
	double gap = w * GAP_MIN + next_exponential(rng, w * (1.0 - GAP_MIN));
	if (gap > w * GAP_MAX)
		gap = w * GAP_MAX;
	return gap < 1.0 ? 1 : (int64_t)gap;
}

static int64_t pause_gap(const struct synth *s, const struct synth_user *user, uint64_t *rng)
{
	return (int64_t)ceil(PAUSE_MIN * s->session_gap_ms) +
	       (int64_t)next_exponential(rng, user->pause_extra_ms);
}

static bool earlier(const struct heap_entry *a, const struct heap_entry *b)
{
	return a->next_ms < b->next_ms || (a->next_ms == b->next_ms && a->user < b->user);
}

static void sift_down(struct heap_entry *heap, size_t n, size_t i)
{
	struct heap_entry moving = heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= n)
			break;
		if (child + 1 < n && earlier(&heap[child + 1], &heap[child]))
			child++;
		if (!earlier(&heap[child], &moving))
			break;
		heap[i] = heap[child];
		i = child;
	}
	heap[i] = moving;
}

/* Interns "u<index>" and "i<index>" in index order, and the planted truth. */
static int intern_world(const struct synth *s, struct event_log *log, char *errstr,
			size_t errstr_size)
{
	const struct synth_config *c = &s->config;
	char id[16];
	uint32_t index;
	for (uint32_t u = 0; u < c->users; u++) {
		int len = snprintf(id, sizeof id, "u%u", u);
		if (eventlog_intern_user(log, id, (size_t)len, &index, errstr, errstr_size) != 0 ||
		    eventlog_set_user_cluster(log, index, s->users[u].main_cluster, errstr,
					      errstr_size) != 0)
			return -1;
	}
	for (uint32_t i = 0; i < c->items; i++) {
		int len = snprintf(id, sizeof id, "i%u", i);
		if (eventlog_intern_item(log, id, (size_t)len, &index, errstr, errstr_size) != 0 ||
		    eventlog_set_item_category(log, index, s->item_cluster[i], errstr,
					       errstr_size) != 0)
			return -1;
	}
	return 0;
}

int synth_generate(struct synth *s, struct event_log **out, char *errstr, size_t errstr_size)
{
	const struct synth_config *c = &s->config;
	struct event_log *log = NULL;
	struct heap_entry *heap = NULL;
	uint64_t rng = c->seed ^ 0xD1B54A32D192ED03ULL;
	double mean_session = (c->session_min_events + c->session_max_events) / 2.0;
	double session_span = (mean_session - 1.0) * within_gap_factor() * s->session_gap_ms;
	double pause_min = ceil(PAUSE_MIN * s->session_gap_ms);

	*out = NULL;
	log = eventlog_new();
	heap = malloc((size_t)c->users * sizeof *heap);
	if (log == NULL || heap == NULL) {
		set_errstr(errstr, errstr_size, "out of memory");
		goto out_fail;
	}
	if (intern_world(s, log, errstr, errstr_size) != 0 ||
	    eventlog_reserve(log, c->events, errstr, errstr_size) != 0)
		goto out_fail;

	for (uint32_t u = 0; u < c->users; u++) {
		struct synth_user *user = &s->users[u];
		double cycle = session_span + pause_min + user->pause_extra_ms;
		/* start in the steady state: inside a session as often as users are */
		if (next_unit(&rng) < session_span / cycle) {
			start_session(s, user, &rng);
			user->left_in_session = 1 + next_below(&rng, user->left_in_session);
			user->next_ms = (int64_t)(next_unit(&rng) * s->session_gap_ms);
		} else {
			user->left_in_session = 0;
			user->next_ms =
			    (int64_t)(next_unit(&rng) * (pause_min + user->pause_extra_ms));
		}
		heap[u] = (struct heap_entry){user->next_ms, u};
	}
	for (size_t i = c->users / 2; i-- > 0;)
		sift_down(heap, c->users, i);

	for (size_t e = 0; e < c->events; e++) {
		uint32_t u = heap[0].user, item;
		struct synth_user *user = &s->users[u];
		enum event_type type;

		if (c->drift_period_events > 0)
			s->drift_turns = e / c->drift_period_events;
		s->event_now = e;
		if (user->left_in_session == 0)
			start_session(s, user, &rng);
		next_event(s, user, &rng, &item, &type);
		if (c->repeat_prob > 0)
			remember_item(user, item);
		if (eventlog_append_indexed(log, u, item, type, c->start_ms + user->next_ms, errstr,
					    errstr_size) != 0)
			goto out_fail;
		user->prev_item = item;
		user->prev_type = (uint8_t)type;
		user->left_in_session--;
		user->next_ms += user->left_in_session > 0 ? within_session_gap(s, &rng)
							   : pause_gap(s, user, &rng);
		heap[0].next_ms = user->next_ms;
		sift_down(heap, c->users, 0);
	}
	free(heap);
	*out = log;
	return 0;

out_fail:
	free(heap);
	eventlog_free(log);
	return -1;
}
