#include "refresh.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "clock.h"
#include "errstr.h"
#include "grow.h"
#include "log.h"
#include "lists.h"
#include "listrules.h"
#include "model.h"
#include "nice.h"
#include "rng.h"

#define MAX_K 1000
/* A stored list (state_put_list), all integers big-endian:
 *   u8 LIST_RECORD_VERSION, u8 n, n bytes of the variant's name,
 *   u16 m, m bytes of the user's id,
 *   i64 generated_at_ms, i64 trigger_ts_ms, u64 list id, u16 count,
 *   count × (u32 item index, u32 bits of the float32 score, u8 reason,
 *   u32 because_item), best first. The reason byte holds enum model_reason
 *   in its low 4 bits and the list rule that placed the item (enum
 *   listrules_rule, 0: none) in its high 4: records written before list
 *   rules read as ranked items.
 * The variant goes by name: variants come and go across restarts. The
 * user's id is there for the lookup API, which knows users by id, and the
 * state restores users' ids only when they are met again. */
#define LIST_RECORD_VERSION 2
#define LIST_USER_MAX 1024
#define LIST_RECORD_HEAD (1 + 1 + 255 + 2 + LIST_USER_MAX + 8 + 8 + 8 + 2)
#define LIST_ITEM_BYTES 13
#define LIST_RECORD_BYTES (LIST_RECORD_HEAD + MAX_K * LIST_ITEM_BYTES)
/* Fewest warm queries a worker's task ranks (a range shares the tiles). */
#define REFRESH_MIN_RANGE 16
/*
 * Most users one shadow computes with the exact engine. The round waits
 * for its shadow: at 1M items a whole batch of 256 cost a worker about
 * 0.4 s, which every such round's lists waited for (the tail of the
 * freshness); 16 cost a few tens of ms. The share of users compared stays
 * refresh.shadow_share: the shadows come more often instead.
 */
#define REFRESH_SHADOW_USERS 16
/*
 * Least time a round's index upkeep may take while the refresh is
 * overloaded (upkeep_limit()): a few chunks of moved rows, so that the
 * index keeps moving however short the searches are.
 */
#define REFRESH_UPKEEP_MIN_S 0.01

/* A mark waiting in the recent lane: the user and when it was marked
 * (an entry whose time is not the user's newest mark is a stale duplicate). */
struct mark {
	uint32_t stable;
	int64_t marked_ms;
};

/* The events a user's next list answers: a list made only for backlog
 * (a backfill, the catch-up after downtime) is catch-up, not freshness. */
enum arrival { ARRIVAL_NONE = 0, ARRIVAL_BACKLOG, ARRIVAL_FRESH };

/* Where a user waits: nowhere, in the recent lane, or in the deferred lane. */
enum lane { LANE_NONE = 0, LANE_RECENT, LANE_DEFERRED };

/*
 * One variant's sub-batch of a round (at most as many users as the user
 * cache can pin): its queries, prepared on the loop's thread, and its lists.
 * Written by workers only in their own task's range of warm_results,
 * warm_counts and shadow_*; the rest under the pool's mutex or when no
 * round is out.
 */
struct group {
	size_t v, first, count, k; /* members: by_variant[v * batch + first ...] */
	enum model_retrieval retrieval;
	bool popularity;
	size_t shadow; /* warm queries [0, shadow) also ranked by the exact engine */
	struct model_view *view;
	const uint8_t *listable;
	uint32_t *slots; /* the members' model slots, pinned while prepared */
	struct model_batch batch;
	struct topk_result *results; /* count × k: the lists, members' order */
	size_t *lengths;
	struct topk_result *warm_results, *shadow_results; /* warm × k */
	size_t *warm_counts, *shadow_counts;
	size_t slots_capacity, results_capacity, lengths_capacity, warm_results_capacity,
	    shadow_results_capacity, warm_counts_capacity, shadow_counts_capacity;
	double recall_sum; /* under the mutex */
	size_t recall_compared;
	struct model_recall_curve curve; /* the shadow's recall at each nprobe (mutex) */
	uint64_t candidates, searched; /* the index's items scored and lists (under the mutex) */
	double search_seconds, shadow_seconds; /* worker time: the searches, the shadow (mutex) */
	bool failed;
	char error[512];
};

/*
 * One round: its users (at most batch entries) by variant, and its groups;
 * per entry, as of its take (its query is made then), the user's newest
 * trigger, what the events its list answers were (enum arrival) and the
 * lane it was taken from (enum lane). Two
 * are kept: while the workers rank one, the loop's thread publishes the
 * one ranked before it (refresher_run()).
 */
struct round {
	uint32_t *stables;
	int64_t *taken_trigger_ts;
	uint8_t *taken_arrival;
	uint8_t *taken_lane;
	size_t *by_variant; /* STATE_MAX_VARIANTS × batch */
	struct group *groups;
	size_t group_count, group_capacity;
	double started;
};

/* A worker's task: a view's index upkeep, or a range of a group's warm queries. */
struct task {
	struct model_view *prepare; /* non-NULL: this view's model_view_prepare() */
	size_t group, first, count;
};

/*
 * The workers. Ownership rule (model.h, Lists on other threads): while a
 * round is out (posted and not yet harvested) its groups' views and batches
 * are the workers'; the loop's thread touches only the fields under the
 * mutex. Everything else of the refresher is the loop thread's alone.
 */
struct worker {
	struct refresher *r;
	size_t index;
};

struct pool {
	size_t threads; /* 0: no workers */
	unsigned nice;  /* refresh.nice */
	pthread_t *thread;
	struct worker *worker; /* each worker's argument */
	size_t started;
	struct round *round;              /* the round planned (plan_tasks()) */
	struct model_searcher **searcher; /* one per worker (or one for the caller) */
	struct topk **topk;
	pthread_mutex_t mutex;
	pthread_cond_t work, prepared, finished;
	bool stop, out;
	/* a round's task list: begun (its first task added: a view's upkeep
	 * may be handed out while the loop still prepares the queries), and
	 * planned (all of its tasks added: the last one done ends the round) */
	bool begun, planned;
	/* an upkeep that failed before its round was planned: the loop's thread
	 * may be adding groups then, so plan_tasks() notes it in them */
	struct model_view *early_failed;
	char early_why[256];
	struct task *tasks;
	size_t task_count, task_capacity, next_task, done_tasks, prepare_count, prepared_count;
	double out_at, ranked_at; /* monotonic: the round handed out, its last task done */
	/* the round's upkeep: worker seconds, and when the last one was done
	 * (monotonic; 0: none yet) */
	double upkeep_seconds, upkeep_done_at;
};

/* The list before a user's last one: what attributing a hit to it needs. */
struct previous_list {
	uint8_t variant;
	uint16_t count, capacity;
	uint64_t list_id;
	uint32_t items[]; /* best first */
};

struct refresher {
	struct refresh_config c;
	size_t batch;       /* the most a round takes: the size of the scratch below */
	size_t round_limit; /* what the next round takes: refresh.batch, or batch */

	/* Two lanes (see refresher_run): the recent lane, a stack of marks
	 * taken newest first, and the deferred lane, a stack of the marks that
	 * waited beyond the staleness target, also taken newest first. A mark
	 * is current while its user is in that lane with that mark's time;
	 * the others are skipped when reached (deferred_users counts the
	 * current deferred ones). Per stable user: its lane, the
	 * time of its newest mark, its newest trigger, when it was last taken
	 * into a round (min_interval counts from it) and its
	 * last published list. */
	struct mark *recent; /* [recent_bottom, recent_count): oldest at the bottom */
	size_t recent_bottom, recent_count, recent_capacity, recent_users;
	struct mark *deferred; /* [0, deferred_count): the newest on top */
	size_t deferred_count, deferred_capacity, deferred_users;
	uint8_t *lane;
	int64_t *marked_ms, *trigger_ts, *last_refresh_ms;
	struct lists *lists; /* each user's last published list (shared with the lookup API) */
	/* per stable user: what the events since its last list were (enum
	 * arrival: none yet, only backlog older than refresh.catch_up_threshold_ms
	 * at arrival, or some fresh), and whether its published list changed
	 * since the last refresher_save_lists(), and whether a list was
	 * published to it since the start (users_served_total: a list restored
	 * from the state was served by an earlier run) */
	uint8_t *catch_up, *list_changed, *served;
	size_t user_capacity, lane_capacity, marked_capacity, trigger_capacity, last_capacity,
	    catch_up_capacity, list_changed_capacity, served_capacity;
	uint32_t *changed_lists; /* the users whose list_changed is set */
	size_t changed_count, changed_capacity;
	unsigned char *record; /* LIST_RECORD_BYTES: one list as stored */
	struct topk_result *items_scratch; /* MAX_K: one list being restored */
	struct mark *held; /* marks not yet due (min_interval), put back after a run */
	size_t held_capacity;
	double shadow_credit; /* grows by shadow_share per warm user ranked by the index */
	/* the shadow's time (refresh.shadow_budget): seconds it may still take,
	 * grown by the budget's share of each round's index ranking time and
	 * spent by its shadows; a shadow waits while it is negative, and it is
	 * kept at most one shadow's cost (the last one's) */
	double shadow_time_credit, last_shadow_seconds;
	/* overloaded: learning behind its input (refresher_set_behind()) or a
	 * round taking a backlog (take_due()); the time the next round's index
	 * upkeep may take then (upkeep_limit()) */
	bool behind, overloaded;
	double upkeep_budget_s;
	/* lists the publish callback did not take (publish_list()): warned of
	 * once per 10 s */
	double unsent_warned_s;
	uint64_t unsent_since_warned;

	/* per variant: which items may be listed, recomputed when the listing
	 * changes, items appear, or it is a refresh interval old */
	uint8_t *listable[STATE_MAX_VARIANTS];
	size_t listable_items[STATE_MAX_VARIANTS];
	int64_t listable_at_ms[STATE_MAX_VARIANTS];
	uint64_t listable_generation[STATE_MAX_VARIANTS];
	uint64_t listing_generation;
	/* per variant: state_items_touched() when the flags were last brought up
	 * to date (an unlisted item touched since is checked again) */
	uint64_t listable_touched[STATE_MAX_VARIANTS];
	/* per variant, with the listable flags: the listable new items (fewer
	 * positive events than explore_max_events) that exploration draws from;
	 * explore_events is the bound they were taken with (0: none taken) */
	uint32_t *explore_pool[STATE_MAX_VARIANTS];
	size_t explore_pool_count[STATE_MAX_VARIANTS], explore_pool_capacity[STATE_MAX_VARIANTS];
	unsigned explore_events[STATE_MAX_VARIANTS];

	/* the list rules of the group being published, resolved to indices
	 * (resolve_rules), and one list's result */
	struct listrules_view rules_view;
	bool rules_on;
	struct listrules_resolved rules_resolved;
	struct listrules_scratch rules_scratch;
	struct topk_result *ruled;    /* MAX_K: a list after its rules */
	uint8_t *rule_of;             /* MAX_K: the rule that placed each */
	struct model *excludes_model; /* whose user excludes_slot is (user_excludes) */
	uint32_t excludes_slot;
	unsigned excludes_explore_events; /* its variant's explore bound (still_new) */

	/* the two rounds, and the one prepared or out with the workers */
	struct round rounds[2];
	struct round *round;
	struct scored_item *items; /* one list's, while it is published */
	struct lists_why *whys;    /* its items' explanations */
	struct model_explanation *explanations;
	uint32_t *list_items;   /* its item indices */
	uint64_t list_id_state; /* list ids: rng_next() of it */
	/* per stable user, the list before its last one (an event may name a
	 * list the user saw before the newest was published) */
	struct previous_list **previous;
	size_t previous_capacity;

	/* the workers (refresh.threads; none: rounds run on the caller's thread) */
	struct pool pool;
};

static void *worker_main(void *arg);

/* Makes room for `needed` elements (zeroed). @returns 0 or -1. */
static int reserve(void *array, size_t *capacity, size_t needed, size_t size)
{
	return grow_array(array, capacity, needed, size, 64);
}

static int pool_start(struct refresher *r, char *errstr, size_t errstr_size)
{
	struct pool *p = &r->pool;
	size_t searchers = p->threads ? p->threads : 1;
	p->searcher = calloc(searchers, sizeof *p->searcher);
	p->topk = calloc(searchers, sizeof *p->topk);
	p->thread = calloc(searchers, sizeof *p->thread);
	p->worker = calloc(searchers, sizeof *p->worker);
	if (p->searcher == NULL || p->topk == NULL || p->thread == NULL || p->worker == NULL)
		goto out_nomem;
	for (size_t w = 0; w < searchers; w++) {
		struct topk *topk = r->c.topk;
		if (p->threads > 0) {
			/* one BLAS thread each: the workers are the parallelism */
			struct topk_config tc = {.max_batch = r->batch, .max_k = MAX_K, .threads = 1};
			topk = p->topk[w] = topk_new(&tc, errstr, errstr_size);
			if (topk == NULL)
				return -1;
		}
		p->searcher[w] = model_searcher_new(topk, errstr, errstr_size);
		if (p->searcher[w] == NULL)
			return -1;
	}
	if (pthread_mutex_init(&p->mutex, NULL) != 0 || pthread_cond_init(&p->work, NULL) != 0 ||
	    pthread_cond_init(&p->prepared, NULL) != 0 ||
	    pthread_cond_init(&p->finished, NULL) != 0) {
		set_errstr(errstr, errstr_size, "refresh: cannot make the workers' lock");
		return -1;
	}
	for (; p->started < p->threads; p->started++) {
		p->worker[p->started] = (struct worker){.r = r, .index = p->started};
		int rc = pthread_create(&p->thread[p->started], NULL, worker_main,
					&p->worker[p->started]);
		if (rc != 0) {
			set_errstr(errstr, errstr_size, "refresh: starting worker %zu of %zu: %s",
				   p->started + 1, p->threads, strerror(rc));
			return -1;
		}
	}
	return 0;
out_nomem:
	set_errstr(errstr, errstr_size, "refresh: out of memory for %zu workers", searchers);
	return -1;
}

static void pool_stop(struct refresher *r)
{
	struct pool *p = &r->pool;
	size_t searchers = p->threads ? p->threads : 1;
	if (p->searcher == NULL)
		return;
	if (p->started > 0) {
		pthread_mutex_lock(&p->mutex);
		p->stop = true;
		pthread_cond_broadcast(&p->work);
		pthread_cond_broadcast(&p->prepared);
		pthread_mutex_unlock(&p->mutex);
		for (size_t w = 0; w < p->started; w++)
			pthread_join(p->thread[w], NULL);
	}
	for (size_t w = 0; w < searchers; w++) {
		model_searcher_free(p->searcher[w]);
		if (p->topk != NULL)
			topk_free(p->topk[w]);
	}
	pthread_mutex_destroy(&p->mutex);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->prepared);
	pthread_cond_destroy(&p->finished);
	free(p->searcher);
	free(p->topk);
	free(p->thread);
	free(p->worker);
	free(p->tasks);
}

/* A round's room for up to batch users. @returns false when out of memory
 * (what was allocated is freed by round_free()). */
static bool round_init(struct round *rd, size_t batch)
{
	rd->stables = calloc(batch, sizeof *rd->stables);
	rd->taken_trigger_ts = calloc(batch, sizeof *rd->taken_trigger_ts);
	rd->taken_arrival = calloc(batch, sizeof *rd->taken_arrival);
	rd->taken_lane = calloc(batch, sizeof *rd->taken_lane);
	rd->by_variant = calloc(STATE_MAX_VARIANTS * batch, sizeof *rd->by_variant);
	return rd->stables != NULL && rd->taken_trigger_ts != NULL && rd->taken_arrival != NULL &&
	       rd->taken_lane != NULL && rd->by_variant != NULL;
}

static void round_free(struct round *rd)
{
	for (size_t g = 0; g < rd->group_capacity; g++) {
		struct group *gr = &rd->groups[g];
		model_batch_free(&gr->batch);
		free(gr->slots);
		free(gr->results);
		free(gr->lengths);
		free(gr->warm_results);
		free(gr->shadow_results);
		free(gr->warm_counts);
		free(gr->shadow_counts);
	}
	free(rd->groups);
	free(rd->stables);
	free(rd->taken_trigger_ts);
	free(rd->taken_arrival);
	free(rd->taken_lane);
	free(rd->by_variant);
}

struct refresher *refresher_new(const struct refresh_config *config, char *errstr,
				size_t errstr_size)
{
	struct refresher *r = calloc(1, sizeof *r);
	if (r == NULL)
		goto out_nomem;
	r->c = *config;
	r->round_limit = config->config->refresh_batch;
	r->batch = config_refresh_round_most(config->config);
	r->c.metrics->refresh_round_limit = (int64_t)r->round_limit;
	r->pool.threads = config->threads;
	r->pool.nice = config->nice;
	bool rounds_made = round_init(&r->rounds[0], r->batch) && round_init(&r->rounds[1], r->batch);
	r->round = &r->rounds[0];
	r->items = calloc(MAX_K, sizeof *r->items);
	r->record = malloc(LIST_RECORD_BYTES);
	r->items_scratch = calloc(MAX_K, sizeof *r->items_scratch);
	r->whys = calloc(MAX_K, sizeof *r->whys);
	r->explanations = calloc(MAX_K, sizeof *r->explanations);
	r->list_items = calloc(MAX_K, sizeof *r->list_items);
	r->ruled = calloc(MAX_K, sizeof *r->ruled);
	r->rule_of = calloc(MAX_K, sizeof *r->rule_of);
	const char *names[STATE_MAX_VARIANTS];
	for (size_t v = 0; v < config->variant_count && v < STATE_MAX_VARIANTS; v++)
		names[v] = config->variants[v].name;
	r->lists = lists_new(names, config->variant_count);
	if (!rounds_made || r->items == NULL || r->record == NULL ||
	    r->items_scratch == NULL || r->lists == NULL || r->whys == NULL ||
	    r->explanations == NULL || r->list_items == NULL || r->ruled == NULL ||
	    r->rule_of == NULL)
		goto out_free;
	/* List ids: splitmix64 outputs of consecutive states are distinct, so
	 * ids never repeat within an instance; the seed (wall clock in ns, the
	 * refresher's address) makes two instances' ids collide only by chance. */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	r->list_id_state = ((uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec) ^
			   ((uint64_t)(uintptr_t)r << 16);
	if (pool_start(r, errstr, errstr_size) != 0) {
		refresher_free(r);
		return NULL;
	}
	return r;
out_free:
	refresher_free(r);
out_nomem:
	set_errstr(errstr, errstr_size, "refresh: out of memory");
	return NULL;
}

void refresher_free(struct refresher *r)
{
	if (r == NULL)
		return;
	pool_stop(r); /* first: a worker may still read a round's groups */
	lists_free(r->lists);
	for (size_t u = 0; u < r->previous_capacity; u++)
		free(r->previous[u]);
	free(r->previous);
	free(r->whys);
	free(r->explanations);
	free(r->list_items);
	free(r->ruled);
	free(r->rule_of);
	listrules_resolved_free(&r->rules_resolved);
	listrules_scratch_free(&r->rules_scratch);
	for (size_t v = 0; v < STATE_MAX_VARIANTS; v++)
		free(r->explore_pool[v]);
	free(r->recent);
	free(r->deferred);
	free(r->held);
	free(r->lane);
	free(r->marked_ms);
	free(r->trigger_ts);
	free(r->last_refresh_ms);
	free(r->catch_up);
	free(r->list_changed);
	free(r->served);
	free(r->changed_lists);
	free(r->record);
	free(r->items_scratch);
	for (size_t v = 0; v < STATE_MAX_VARIANTS; v++)
		free(r->listable[v]);
	round_free(&r->rounds[0]);
	round_free(&r->rounds[1]);
	free(r->items);
	free(r);
}

/* Room for per-user entries up to stable (zeroed when new). */
static int ensure_users(struct refresher *r, uint32_t stable)
{
	size_t needed = (size_t)stable + 1;
	if (needed <= r->user_capacity)
		return 0;
	if (grow_array(&r->lane, &r->lane_capacity, needed, sizeof *r->lane, 4096) != 0 ||
	    grow_array(&r->marked_ms, &r->marked_capacity, needed, sizeof *r->marked_ms, 4096) !=
		0 ||
	    grow_array(&r->trigger_ts, &r->trigger_capacity, needed, sizeof *r->trigger_ts, 4096) !=
		0 ||
	    grow_array(&r->last_refresh_ms, &r->last_capacity, needed, sizeof *r->last_refresh_ms,
		       4096) != 0 ||
	    grow_array(&r->catch_up, &r->catch_up_capacity, needed, sizeof *r->catch_up, 4096) !=
		0 ||
	    grow_array(&r->list_changed, &r->list_changed_capacity, needed, sizeof *r->list_changed,
		       4096) != 0 ||
	    grow_array(&r->served, &r->served_capacity, needed, sizeof *r->served, 4096) != 0 ||
	    grow_array(&r->previous, &r->previous_capacity, needed, sizeof *r->previous, 4096) != 0)
		return -1;
	r->user_capacity = needed;
	return 0;
}

/* Pushes a mark on the recent lane's stack. @returns 0, or -1 when out of memory. */
static int push_recent(struct refresher *r, uint32_t stable, int64_t marked_ms)
{
	if (grow_array(&r->recent, &r->recent_capacity, r->recent_count + 1, sizeof *r->recent,
		       4096) != 0)
		return -1;
	r->recent[r->recent_count++] = (struct mark){stable, marked_ms};
	return 0;
}

/* Whether a deferred mark is still its user's. */
static bool deferred_current(const struct refresher *r, struct mark m)
{
	return r->lane[m.stable] == LANE_DEFERRED && r->marked_ms[m.stable] == m.marked_ms;
}

/*
 * Pushes a mark on the deferred lane. Marks left there by users marked again
 * (or forgotten) are dropped when they outnumber the current ones, so a long
 * overload, in which the oldest are not reached, does not grow the lane
 * beyond its users. @returns 0, or -1 when out of memory.
 */
static int push_deferred(struct refresher *r, struct mark m)
{
	if (r->deferred_count == r->deferred_capacity &&
	    r->deferred_count > 2 * r->deferred_users + 4096) {
		size_t kept = 0;
		for (size_t k = 0; k < r->deferred_count; k++)
			if (deferred_current(r, r->deferred[k]))
				r->deferred[kept++] = r->deferred[k];
		r->deferred_count = kept;
	}
	if (grow_array(&r->deferred, &r->deferred_capacity, r->deferred_count + 1,
		       sizeof *r->deferred, 4096) != 0)
		return -1;
	r->deferred[r->deferred_count++] = m;
	return 0;
}

int refresher_mark(struct refresher *r, uint32_t stable, int64_t trigger_ts_ms, int64_t now_ms)
{
	if (ensure_users(r, stable) != 0)
		return -1;
	if (trigger_ts_ms > r->trigger_ts[stable])
		r->trigger_ts[stable] = trigger_ts_ms;
	/* one fresh event makes the next list a matter of freshness; only
	 * backlog (older than the threshold when it arrived) makes it catch-up */
	uint64_t threshold = r->c.config->catch_up_threshold_ms;
	if (threshold == 0 || now_ms - trigger_ts_ms <= (int64_t)threshold)
		r->catch_up[stable] = ARRIVAL_FRESH;
	else if (r->catch_up[stable] == ARRIVAL_NONE)
		r->catch_up[stable] = ARRIVAL_BACKLOG;
	/* a newer mark replaces the older: the old stack entry or deferred
	 * slot becomes stale and is skipped when reached */
	if (r->lane[stable] == LANE_DEFERRED)
		r->deferred_users--;
	if (r->lane[stable] != LANE_RECENT)
		r->recent_users++;
	r->lane[stable] = LANE_RECENT;
	r->marked_ms[stable] = now_ms;
	return push_recent(r, stable, now_ms);
}

void refresher_forget(struct refresher *r, uint32_t stable)
{
	lists_remove(r->lists, stable);
	if ((size_t)stable >= r->user_capacity)
		return;
	if (r->lane[stable] == LANE_RECENT)
		r->recent_users--;
	else if (r->lane[stable] == LANE_DEFERRED)
		r->deferred_users--;
	/* its entries left in the lanes are stale now, and skipped when reached */
	r->lane[stable] = LANE_NONE;
	r->marked_ms[stable] = 0;
	r->trigger_ts[stable] = 0;
	r->last_refresh_ms[stable] = 0;
	r->catch_up[stable] = ARRIVAL_NONE;
	r->list_changed[stable] = 0; /* refresher_save_lists() finds no list for it */
	r->served[stable] = 0;
	free(r->previous[stable]);
	r->previous[stable] = NULL;
}

size_t refresher_pending(const struct refresher *r)
{
	return r->recent_users + r->deferred_users;
}

void refresher_listing_changed(struct refresher *r)
{
	r->listing_generation++;
}

/* Parses a list id as published (16 hex digits). @returns false when it is not one. */
static bool parse_list_id(const char *text, uint64_t *id)
{
	uint64_t value = 0;
	size_t n = 0;
	for (; text[n] != '\0'; n++) {
		char c = text[n];
		int digit = c >= '0' && c <= '9'   ? c - '0'
			    : c >= 'a' && c <= 'f' ? c - 'a' + 10
						   : -1;
		if (digit < 0 || n >= 16)
			return false;
		value = value << 4 | (uint64_t)digit;
	}
	*id = value;
	return n == 16;
}

void refresher_count_hit(struct refresher *r, uint32_t stable, const char *item_id,
			 enum event_type type, const char *list_id)
{
	bool hit_type = false;
	for (size_t h = 0; h < METRICS_HIT_TYPE_COUNT; h++)
		hit_type |= metrics_hit_types[h] == type;
	if (!hit_type)
		return;
	bool known_user = (size_t)stable < r->user_capacity;
	const struct lists_entry *last = lists_get(r->lists, stable);
	const struct previous_list *previous = known_user ? r->previous[stable] : NULL;
	enum metrics_attribution attribution = METRICS_ATTRIBUTION_LAST_LIST;
	uint64_t id;
	if (list_id != NULL) {
		/* the event names its list: that one or none, never a guess */
		attribution = METRICS_ATTRIBUTION_EXPOSED;
		bool is_last = false, is_previous = false;
		if (parse_list_id(list_id, &id)) {
			is_last = last != NULL && last->list_id == id;
			is_previous = previous != NULL && previous->list_id == id;
		}
		if (!is_last && !is_previous) {
			r->c.metrics->hits_unknown_list_total++;
			return;
		}
		if (!is_last)
			last = NULL;
		else
			previous = NULL;
	} else {
		previous = NULL;
	}
	if (last == NULL && previous == NULL)
		return;
	uint32_t item = state_find_item(r->c.state, item_id);
	size_t variant = last != NULL ? last->variant : previous->variant;
	size_t count = last != NULL ? last->count : previous->count;
	for (size_t rank = 0; rank < count; rank++)
		if ((last != NULL ? last->items[rank].item : previous->items[rank]) == item) {
			struct metrics_variant *mv = &r->c.metrics->variants[variant];
			mv->hits_total[type]++;
			mv->hits_by_rank_total[metrics_rank_bucket(rank + 1)]++;
			mv->hits_attributed_total[attribution]++;
			if (r->c.experiment != NULL)
				(void)experiment_hit(r->c.experiment, stable, variant, NULL, 0);
			return;
		}
}

static const char *item_id_of(uint32_t item, void *opaque)
{
	return state_item_id(opaque, item);
}

/* Keeps the user's last list as their previous one (ids only). @returns 0 or -1. */
static int keep_previous(struct refresher *r, uint32_t stable)
{
	const struct lists_entry *last = lists_get(r->lists, stable);
	struct previous_list *p = r->previous[stable];
	if (last == NULL)
		return 0;
	if (p == NULL || p->capacity < last->count) {
		size_t capacity = last->count > 20 ? last->count : 20;
		p = realloc(p, sizeof *p + capacity * sizeof p->items[0]);
		if (p == NULL)
			return -1;
		p->capacity = (uint16_t)capacity;
		r->previous[stable] = p;
	}
	p->variant = last->variant;
	p->count = last->count;
	p->list_id = last->list_id;
	for (size_t n = 0; n < last->count; n++)
		p->items[n] = last->items[n].item;
	return 0;
}

/* Marks a user's kept list to be saved with the next commit. @returns 0 or -1. */
static int mark_list_changed(struct refresher *r, uint32_t stable)
{
	if (ensure_users(r, stable) != 0)
		return -1;
	if (r->list_changed[stable])
		return 0;
	if (grow_array(&r->changed_lists, &r->changed_capacity, r->changed_count + 1,
		       sizeof *r->changed_lists, 4096) != 0)
		return -1;
	r->changed_lists[r->changed_count++] = stable;
	r->list_changed[stable] = 1;
	return 0;
}

/*
 * Remembers the list just published for a user (its id, items and their
 * explanations, why[n] for list[n]) in the lists the lookup API reads; the
 * list before it stays as the user's previous one (its id, variant and
 * items: what a hit needs). @returns 0, or -1 when out of memory.
 */
static int remember_list(struct refresher *r, uint32_t stable, size_t variant, uint64_t list_id,
			 const struct topk_result *list, const struct lists_why *why, size_t count,
			 int64_t generated_at_ms, int64_t trigger_ts_ms)
{
	if (keep_previous(r, stable) != 0 || ensure_users(r, stable) != 0)
		return -1;
	if (lists_put(r->lists, stable, state_user_name(r->c.state, stable), variant, list_id,
		      generated_at_ms, trigger_ts_ms, list, why, count, item_id_of, r->c.state) < 0)
		return -1;
	/* counted at its first list since the start: a list restored from the
	 * state at the start is the user's entry already */
	if (!r->served[stable]) {
		r->served[stable] = 1;
		r->c.metrics->variants[variant].users_served_total++;
	}
	return mark_list_changed(r, stable);
}

/* Context of refresher_forget_removed_items()'s callbacks. */
struct forgetting {
	struct refresher *r;
	bool out_of_memory;
};

static bool item_gone(uint32_t item, void *opaque)
{
	const struct forgetting *f = opaque;
	return !state_item_live(f->r->c.state, item);
}

static void list_lost_items(uint32_t stable, void *opaque)
{
	struct forgetting *f = opaque;
	if (mark_list_changed(f->r, stable) != 0)
		f->out_of_memory = true;
}

int refresher_forget_removed_items(struct refresher *r)
{
	struct forgetting f = {r, false};
	size_t items = 0;
	for (size_t v = 0; v < r->c.variant_count; v++) {
		size_t n = model_item_count(state_model(r->c.state, v));
		items = n > items ? n : items;
	}
	lists_forget_items(r->lists, items, item_gone, list_lost_items, &f);
	return f.out_of_memory ? -1 : 0;
}

/*
 * Every item is checked again at most this often (besides a listing change):
 * an item that leaves the exploration pool is seen within it. An unlisted
 * item an event touched (it may have reached min_item_events) is checked at
 * the next round. Checking every item each refresh round (50 ms) cost 7% of
 * the daemon's CPU at 1M items (perf, 1k events/s).
 */
#define LISTABLE_FULL_MS 1000

/* Item i's listable flag for variant v, and whether it joins the explore pool. */
static void list_item(struct refresher *r, size_t v, struct model *model, uint32_t i,
		      unsigned explore_events)
{
	uint64_t count = model_item_count_of(model, i);
	uint8_t *flags = r->listable[v];
	/* a freed index (lifecycle) is listed by no one until a new item takes it */
	flags[i] = state_item_live(r->c.state, i) && catalog_listed(r->c.catalog, i) &&
		   (count >= r->c.config->min_item_events || model_item_content_placed(model, i));
	if (flags[i] && count < explore_events)
		r->explore_pool[v][r->explore_pool_count[v]++] = i;
}

/*
 * The items variant v may list: in the catalogue (or never named by it) and
 * learned on at least min_item_events times, or placed from their content
 * vector (the content is their evidence until events come). Cached: every
 * item is checked again when the listing changed (catalogue,
 * min_item_events, the explore rule) or LISTABLE_FULL_MS passed; items that
 * appeared meanwhile, and unlisted items touched since (state_touched_item),
 * are checked at the next round.
 * @returns the flags (one per item), or NULL when out of memory.
 */
static const uint8_t *listable_items(struct refresher *r, size_t v, int64_t now_ms)
{
	const struct config *config = r->c.config;
	const struct listrules *rules = &config->variants[v].rules;
	struct model *model = state_model(r->c.state, v);
	size_t items = model_item_count(model);
	unsigned explore_events = rules->explore_share > 0 ? rules->explore_max_events : 0;
	int64_t full_ms = config->refresh_interval_ms > LISTABLE_FULL_MS
			      ? (int64_t)config->refresh_interval_ms
			      : LISTABLE_FULL_MS;
	uint64_t touched = state_items_touched(r->c.state);
	bool current = r->listable[v] != NULL &&
		       r->listable_generation[v] == r->listing_generation &&
		       r->explore_events[v] == explore_events &&
		       now_ms - r->listable_at_ms[v] < full_ms &&
		       touched - r->listable_touched[v] <= STATE_TOUCHED_KEPT;
	if (current) {
		/* unlisted items counted since (min_item_events reached) and freed
		 * indices (flag 0) handed to new items */
		for (uint64_t n = r->listable_touched[v]; n < touched; n++) {
			uint32_t i = state_touched_item(r->c.state, n);
			if ((size_t)i < r->listable_items[v] && !r->listable[v][i])
				list_item(r, v, model, i, explore_events);
		}
	}
	r->listable_touched[v] = touched;
	if (current && r->listable_items[v] == items)
		return r->listable[v];
	size_t from = current ? r->listable_items[v] : 0;
	if (!current)
		r->explore_pool_count[v] = 0;
	/* kept: between full checks the pool goes on from what it holds */
	if (explore_events > 0 &&
	    grow_array(&r->explore_pool[v], &r->explore_pool_capacity[v], items ? items : 1,
		       sizeof *r->explore_pool[v], 1024) != 0)
		return NULL;
	uint8_t *flags = realloc(r->listable[v], items ? items : 1);
	if (flags == NULL)
		return NULL;
	r->listable[v] = flags;
	for (size_t i = from; i < items; i++)
		list_item(r, v, model, (uint32_t)i, explore_events);
	r->listable_items[v] = items;
	if (!current) {
		r->explore_events[v] = explore_events;
		r->listable_at_ms[v] = now_ms;
		r->listable_generation[v] = r->listing_generation;
	}
	return flags;
}

/* Whether a user may be refreshed now (min_interval since its last list). */
static bool due(const struct refresher *r, uint32_t stable, int64_t now_ms)
{
	return now_ms - r->last_refresh_ms[stable] >= (int64_t)r->c.config->min_interval_ms;
}

/*
 * Takes a user into entry n of round rd from `lane` at now_ms: its list
 * answers the events marked so far, and min_interval counts from now (the
 * round before may still be publishing its last list: it does not take it
 * again).
 */
static void take_user(struct refresher *r, struct round *rd, size_t n, uint32_t stable,
		      enum lane lane, int64_t now_ms)
{
	rd->stables[n] = stable;
	rd->taken_lane[n] = (uint8_t)lane;
	rd->taken_trigger_ts[n] = r->trigger_ts[stable];
	rd->taken_arrival[n] = r->catch_up[stable];
	r->catch_up[stable] = ARRIVAL_NONE; /* a mark from now on is the next list's */
	r->last_refresh_ms[stable] = now_ms;
}

/*
 * Takes due users from the top of a lane's stack, marks[bottom, *count),
 * into the round from its n-th place, up to limit users; marks no longer
 * their user's are dropped, and users not due yet (min_interval) keep their
 * place. @returns the round's users now.
 */
static size_t take_from_lane(struct refresher *r, struct round *rd, enum lane lane,
			     struct mark *marks, size_t bottom, size_t *count, size_t *users, size_t n,
			     size_t limit, int64_t now_ms)
{
	size_t held = 0;
	while (n < limit && *count > bottom) {
		struct mark m = marks[--*count];
		if (r->lane[m.stable] != lane || r->marked_ms[m.stable] != m.marked_ms)
			continue; /* marked again since (or forgotten) */
		if (!due(r, m.stable, now_ms)) {
			if (grow_array(&r->held, &r->held_capacity, held + 1, sizeof *r->held, 256) !=
			    0) {
				++*count;
				break;
			}
			r->held[held++] = m;
			continue;
		}
		r->lane[m.stable] = LANE_NONE;
		--*users;
		take_user(r, rd, n++, m.stable, lane, now_ms);
	}
	while (held > 0) /* back in their order, the newest on top */
		marks[(*count)++] = r->held[--held];
	return n;
}

/*
 * Takes up to one batch: first the recent lane, newest mark first, so under
 * overload the newest activity is served first; a mark older than the
 * staleness target moves to the deferred lane (counted) instead; then, only
 * when no recent mark is due, the deferred lane, newest first too: the
 * least stale of the deferred lists are worth the most (their users are the
 * likeliest to be still browsing), and a mark deferred long ago waits until
 * the overload passes instead of being published ever later. Users not due
 * yet (min_interval) keep their place. @returns how many were taken.
 */
static size_t take_due(struct refresher *r, struct round *rd, int64_t now_ms)
{
	int64_t target = (int64_t)r->c.config->staleness_target_ms;
	size_t n = 0;
	/* marks are pushed in time order, so the stale ones lie at the bottom:
	 * they move to the deferred lane there, oldest first */
	while (r->recent_bottom < r->recent_count) {
		struct mark m = r->recent[r->recent_bottom];
		bool current = r->lane[m.stable] == LANE_RECENT && r->marked_ms[m.stable] == m.marked_ms;
		if (current && now_ms - m.marked_ms <= target)
			break;
		if (current) {
			if (push_deferred(r, m) != 0)
				break; /* out of memory: it stays, and is served from the top */
			r->lane[m.stable] = LANE_DEFERRED;
			r->recent_users--;
			r->deferred_users++;
			r->c.metrics->refresh_deferred_total++;
		}
		r->recent_bottom++;
	}
	if (r->recent_bottom == r->recent_count)
		r->recent_bottom = r->recent_count = 0;
	else if (r->recent_bottom > r->recent_count / 2) {
		memmove(r->recent, r->recent + r->recent_bottom,
			(r->recent_count - r->recent_bottom) * sizeof *r->recent);
		r->recent_count -= r->recent_bottom;
		r->recent_bottom = 0;
	}
	/* the oldest recent mark left is current: one older than refresh.backlog_ms
	 * means the rounds fell behind (a stall, a burst); a round of batch_behind
	 * then takes the backlog at once, sharing the cells' rows among more
	 * lists, instead of leaving it behind round after round of new marks */
	uint64_t backlog_ms = r->c.config->backlog_ms;
	size_t limit = r->round_limit;
	if (backlog_ms > 0 && r->recent_bottom < r->recent_count) {
		struct mark oldest = r->recent[r->recent_bottom];
		/* a user held back by min_interval is not a backlog */
		if (now_ms - oldest.marked_ms > (int64_t)backlog_ms && due(r, oldest.stable, now_ms))
			limit = r->batch;
	}
	r->overloaded = r->behind || limit > r->c.config->refresh_batch;
	r->c.metrics->refresh_round_limit = (int64_t)limit;
	n = take_from_lane(r, rd, LANE_RECENT, r->recent, r->recent_bottom, &r->recent_count,
			   &r->recent_users, n, limit, now_ms);
	n = take_from_lane(r, rd, LANE_DEFERRED, r->deferred, 0, &r->deferred_count,
			   &r->deferred_users, n, limit, now_ms);
	r->c.metrics->refresh_waiting = (int64_t)r->recent_users;
	r->c.metrics->refresh_deferred_waiting = (int64_t)r->deferred_users;
	return n;
}

/* ---- a round's tasks: on the workers, or on the caller's thread ---------------- */

/* Runs one task with searcher s. @returns 0, or -1 with errstr filled. */
static int run_task(struct refresher *r, struct round *rd, const struct task *t,
		    struct model_searcher *s, char *errstr, size_t errstr_size)
{
	if (t->prepare != NULL)
		return model_view_prepare(t->prepare, errstr, errstr_size);
	struct group *g = &rd->groups[t->group];
	size_t k = g->k;
	double began = clock_monotonic_s();
	if (model_view_search(g->view, s, g->retrieval, &g->batch, t->first, t->count, g->listable,
			      g->warm_results + t->first * k, g->warm_counts + t->first, errstr,
			      errstr_size) != 0)
		return -1;
	double searched_at = clock_monotonic_s();
	uint64_t candidates, searched;
	model_searcher_take(s, &candidates, &searched);
	pthread_mutex_lock(&r->pool.mutex);
	g->candidates += candidates;
	g->searched += searched;
	g->search_seconds += searched_at - began;
	pthread_mutex_unlock(&r->pool.mutex);
	if (t->first >= g->shadow)
		return 0;
	/* the shadow: the same queries through the exact engine (this task's share of them) */
	size_t n = g->shadow - t->first < t->count ? g->shadow - t->first : t->count;
	if (model_view_search(g->view, s, MODEL_RETRIEVAL_EXACT, &g->batch, t->first, n,
			      g->listable, g->shadow_results + t->first * k,
			      g->shadow_counts + t->first, errstr, errstr_size) != 0)
		return -1;
	size_t compared = 0;
	double sum = model_lists_recall(g->shadow_results + t->first * k, g->shadow_counts + t->first,
					g->warm_results + t->first * k, g->warm_counts + t->first, n,
					k, &compared);
	struct model_recall_curve curve = {0};
	model_view_recall_curve(g->view, &g->batch, t->first, n, g->shadow_results + t->first * k,
				g->shadow_counts + t->first, &curve);
	double shadowed_at = clock_monotonic_s();
	pthread_mutex_lock(&r->pool.mutex);
	g->recall_sum += sum;
	g->recall_compared += compared;
	model_recall_curve_add(&g->curve, &curve);
	g->shadow_seconds += shadowed_at - searched_at;
	pthread_mutex_unlock(&r->pool.mutex);
	return 0;
}

/* Notes a task's failure in round rd's groups it concerns (with workers,
 * the caller holds the mutex). */
static void task_failed(struct round *rd, const struct task *t, const char *why)
{
	for (size_t g = 0; g < rd->group_count; g++) {
		struct group *gr = &rd->groups[g];
		bool concerned = t->prepare != NULL ? gr->view == t->prepare : g == t->group;
		if (concerned && !gr->failed) {
			gr->failed = true;
			snprintf(gr->error, sizeof gr->error, "%s", why);
		}
	}
}

/* Ends the round: its last task is done (caller holds the mutex). */
static void end_round(struct refresher *r)
{
	struct pool *p = &r->pool;
	p->ranked_at = clock_monotonic_s();
	pthread_cond_broadcast(&p->finished);
	if (r->c.notify != NULL)
		r->c.notify(r->c.notify_opaque); /* thread-safe by contract */
}

/* Counts an upkeep task run from began to ended (monotonic; with workers,
 * the caller holds the mutex). */
static void count_upkeep(struct pool *p, double began, double ended)
{
	p->upkeep_seconds += ended - began;
	p->upkeep_done_at = ended;
}

static void *worker_main(void *arg)
{
	const struct worker *self = arg;
	struct refresher *r = self->r;
	struct pool *p = &r->pool;
	char why[256];
	char name[16];
	snprintf(name, sizeof name, "refresh-%zu", self->index);
	pthread_setname_np(pthread_self(), name);
	if (nice_thread(p->nice, why, sizeof why) != 0) /* only the workers step back */
		log_line(LOG_PRIORITY_WARNING,
			 "refresh worker %zu: cannot lower its priority (refresh.nice %u): %s",
			 self->index, p->nice, why);

	pthread_mutex_lock(&p->mutex);
	for (;;) {
		while (!p->stop && p->next_task >= p->task_count)
			pthread_cond_wait(&p->work, &p->mutex);
		if (p->stop)
			break;
		struct task t = p->tasks[p->next_task++];
		struct round *rd = p->round; /* a search's round: planned before it was listed */
		/* searches wait for every view's upkeep of the round */
		while (!p->stop && t.prepare == NULL && p->prepared_count < p->prepare_count)
			pthread_cond_wait(&p->prepared, &p->mutex);
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mutex);
		double began = clock_monotonic_s();
		int rc = run_task(r, rd, &t, p->searcher[self->index], why, sizeof why);
		double ended = clock_monotonic_s();
		pthread_mutex_lock(&p->mutex);
		if (t.prepare != NULL)
			count_upkeep(p, began, ended);
		if (rc != 0 && !p->planned) {
			if (p->early_failed == NULL) { /* only upkeeps run before the plan */
				p->early_failed = t.prepare;
				snprintf(p->early_why, sizeof p->early_why, "%s", why);
			}
		} else if (rc != 0) {
			task_failed(p->round, &t, why);
		}
		if (t.prepare != NULL && ++p->prepared_count == p->prepare_count)
			pthread_cond_broadcast(&p->prepared);
		if (++p->done_tasks == p->task_count && p->planned)
			end_round(r);
	}
	pthread_mutex_unlock(&p->mutex);
	return NULL;
}

static int add_task(struct pool *p, struct task t)
{
	if (reserve(&p->tasks, &p->task_capacity, p->task_count + 1, sizeof *p->tasks) != 0)
		return -1;
	p->tasks[p->task_count++] = t;
	return 0;
}

/* Whether the round's task list has view's upkeep (caller holds the mutex). */
static bool upkeep_listed(const struct pool *p, const struct model_view *view)
{
	for (size_t t = 0; t < p->task_count; t++)
		if (p->tasks[t].prepare == view)
			return true;
	return false;
}

/* Starts a round's task list (caller holds the mutex). */
static void begin_tasks(struct pool *p)
{
	p->task_count = p->next_task = p->done_tasks = 0;
	p->prepare_count = p->prepared_count = 0;
	p->upkeep_seconds = p->upkeep_done_at = 0.0;
	p->planned = false;
	p->begun = true;
}

/*
 * Hands view's index upkeep to the workers as soon as it is synced, so
 * that it runs while the loop's thread prepares the round's queries
 * (model.h: the upkeep reads only the view, the queries only the model).
 * Searches still wait for it. Without workers, plan_tasks() lists it.
 * @returns 0, or -1 when out of memory (plan_tasks() lists it then).
 */
static int post_upkeep(struct refresher *r, struct model_view *view)
{
	struct pool *p = &r->pool;
	int rc = 0;
	if (p->threads == 0)
		return 0;
	pthread_mutex_lock(&p->mutex);
	if (!p->begun)
		begin_tasks(p);
	if (!upkeep_listed(p, view) && (rc = add_task(p, (struct task){.prepare = view})) == 0) {
		p->prepare_count = p->task_count;
		pthread_cond_broadcast(&p->work);
	}
	pthread_mutex_unlock(&p->mutex);
	return rc;
}

/*
 * The round's tasks: each distinct view that the index engine (or a
 * shadow) uses gets its upkeep first (unless post_upkeep() handed it out
 * already); then every group's warm queries in
 * ranges, about one per worker (a range shares the item matrix's tiles
 * across its queries, so ranges are not cut finer than that).
 */
static int plan_tasks(struct refresher *r, struct round *rd)
{
	struct pool *p = &r->pool;
	size_t workers = p->threads ? p->threads : 1;
	int rc = -1;
	/* under the lock: an idle worker may look at the task list meanwhile */
	pthread_mutex_lock(&p->mutex);
	if (!p->begun)
		begin_tasks(p);
	p->round = rd;
	for (size_t g = 0; g < rd->group_count; g++) {
		struct group *gr = &rd->groups[g];
		if (gr->popularity || gr->batch.warm == 0 ||
		    (gr->retrieval != MODEL_RETRIEVAL_INDEX && gr->shadow == 0))
			continue;
		if (!upkeep_listed(p, gr->view) && add_task(p, (struct task){.prepare = gr->view}) != 0)
			goto out;
	}
	p->prepare_count = p->task_count;
	for (size_t g = 0; g < rd->group_count; g++) {
		struct group *gr = &rd->groups[g];
		size_t warm = gr->popularity ? 0 : gr->batch.warm;
		size_t range = (warm + workers - 1) / workers;
		if (range < REFRESH_MIN_RANGE)
			range = REFRESH_MIN_RANGE;
		for (size_t first = 0; first < warm; first += range)
			if (add_task(p, (struct task){.group = g,
						      .first = first,
						      .count = warm - first < range ? warm - first
										    : range}) != 0)
				goto out;
	}
	rc = 0;
out:
	/* the round's list is whole: its last task done ends it (an upkeep
	 * handed out early may be done already: refresher_run() sees to that) */
	p->planned = true;
	p->begun = false;
	if (p->early_failed != NULL) {
		task_failed(rd, &(struct task){.prepare = p->early_failed}, p->early_why);
		p->early_failed = NULL;
	}
	pthread_mutex_unlock(&p->mutex);
	return rc;
}

/* ---- a round: prepared and harvested on the loop's thread ------------------------ */

/* Member j of g's warm query, or SIZE_MAX when it had no history when
 * the queries were prepared (warm_index is ascending). */
static size_t warm_query_of(const struct group *g, size_t j)
{
	size_t low = 0, high = g->batch.warm;
	while (low < high) {
		size_t mid = low + (high - low) / 2;
		if (g->batch.warm_index[mid] < j)
			low = mid + 1;
		else
			high = mid;
	}
	return low < g->batch.warm && g->batch.warm_index[low] == j ? low : SIZE_MAX;
}

/*
 * The explanations of a list about to be published, into r->explanations:
 * the control arm's are "popular", a user's who was cold when the round was
 * prepared (a trending list) "cold_start"; the rest come from model_explain() on
 * this (the loop's) thread. The list itself was ranked on a worker against
 * the round's snapshot; its co-visitation terms are the ones it was ranked
 * with (prepared with the round's queries), its taste and intent terms a
 * recomputation of its k items' as of publishing (a few events later at
 * most), not a second ranking. When the user's rows cannot be read
 * (logged) the list goes out unexplained (reason MODEL_REASON_COUNT).
 */
static void explain_list(struct refresher *r, const struct group *g, size_t j, uint32_t stable,
			 const struct topk_result *list, size_t length)
{
	char why[256];
	uint32_t slot;
	bool popular = g->popularity;
	size_t w = popular ? SIZE_MAX : warm_query_of(g, j);
	if (!popular && w == SIZE_MAX) {
		/* its list is the trending list, whatever the user did since */
		for (size_t n = 0; n < length; n++)
			r->explanations[n] = (struct model_explanation){
			    .reason = MODEL_REASON_COLD_START, .because_item = UINT32_MAX};
		return;
	}
	if (!popular && state_user_by_stable(r->c.state, stable, &slot, why, sizeof why) != 0) {
		log_line(LOG_PRIORITY_WARNING, "refresh: explaining a list: %s", why);
		popular = true;
	}
	if (popular) {
		enum model_reason reason =
		    g->popularity ? MODEL_REASON_POPULAR : MODEL_REASON_COUNT;
		for (size_t n = 0; n < length; n++)
			r->explanations[n] = (struct model_explanation){.reason = reason,
									.because_item = UINT32_MAX};
		return;
	}
	for (size_t n = 0; n < length; n++)
		r->list_items[n] = list[n].item;
	struct model_covis_terms covis;
	model_batch_covis_terms(&g->batch, w, &covis);
	model_explain(state_model(r->c.state, g->v), slot, &covis, r->list_items, length,
		      r->explanations);
}

static bool user_excludes(uint32_t item, void *opaque)
{
	const struct refresher *r = opaque;
	return model_user_excludes(r->excludes_model, r->excludes_slot, item);
}

/* The explore pool is cached for up to LISTABLE_FULL_MS; at 20k events/s an
 * item may collect its events meanwhile and be new no longer. Read from the
 * live model on the loop thread, as user_excludes. */
static bool still_new(uint32_t item, void *opaque)
{
	const struct refresher *r = opaque;
	return model_item_count_of(r->excludes_model, item) < r->excludes_explore_events;
}

static uint32_t find_item(const char *name, void *opaque)
{
	const struct refresher *r = opaque;
	return state_find_item(r->c.state, name);
}

static uint32_t find_category(const char *name, void *opaque)
{
	const struct refresher *r = opaque;
	long index = r->c.catalog != NULL ? catalog_category_find(r->c.catalog, name) : -1;
	return index >= 0 ? (uint32_t)index : LISTRULES_NO_CATEGORY;
}

/*
 * The list rules of group g's variant as they are now (a reload takes
 * effect at the next list published), resolved to the state's item and the
 * catalogue's category indices into r->rules_view: names the state or the
 * catalogue does not know yet match nothing. @returns 0, or -1 when out
 * of memory.
 */
static int resolve_rules(struct refresher *r, const struct group *g)
{
	const struct config_variant *cv = &r->c.config->variants[g->v];
	struct listrules_view *view = &r->rules_view;
	size_t categories = r->c.catalog != NULL ? catalog_category_count(r->c.catalog) : 0;
	r->rules_on = listrules_any(&cv->rules);
	if (!r->rules_on)
		return 0;
	/* the flags as they are now (the next round's prepare may have
	 * renewed them since this group's): the flags' own count goes with them */
	*view = (struct listrules_view){.explore_pool = r->explore_pool[g->v],
					.explore_pool_count = r->explore_pool_count[g->v],
					.eligible = r->listable[g->v],
					.eligible_count = r->listable_items[g->v],
					.user_excludes = user_excludes,
					.still_new = still_new,
					.opaque = r};
	if (r->c.catalog != NULL)
		view->item_category = catalog_item_categories(r->c.catalog, &view->item_count);
	return listrules_resolve(&cv->rules, cv->k < g->k ? cv->k : g->k, categories, find_item,
				 find_category, r, &r->rules_resolved, view, NULL);
}

/*
 * Member j's list after its variant's rules, into r->ruled and r->rule_of
 * (without rules: the first k of the ranked list). Items placed by a pin
 * or exploration (not ranked) must also pass the user's exclusions, read
 * from the live model on this thread; when the user's row cannot be read
 * (logged) the list gets no such items. @returns its length, or (size_t)-1
 * when out of memory.
 */
static size_t apply_rules(struct refresher *r, const struct group *g, uint32_t stable,
			  const struct topk_result *list, size_t length, uint64_t list_id)
{
	const struct config_variant *cv = &r->c.config->variants[g->v];
	char why[256];
	if (!r->rules_on) {
		size_t k = cv->k < length ? cv->k : length;
		memcpy(r->ruled, list, k * sizeof *list);
		memset(r->rule_of, LISTRULES_RANKED, k);
		return k;
	}
	struct listrules_view view = r->rules_view;
	r->excludes_model = state_model(r->c.state, g->v);
	r->excludes_explore_events = r->explore_events[g->v];
	if (state_user_by_stable(r->c.state, stable, &r->excludes_slot, why, sizeof why) != 0) {
		log_line(LOG_PRIORITY_WARNING, "refresh: list rules: %s", why);
		view.pin_count = 0;
		view.explore_slots = 0;
		view.user_excludes = NULL;
	}
	/* exploration's draws: seeded by the list's id, so a list's picks can be replayed */
	uint64_t seed = list_id ^ cv->model.seed;
	return listrules_apply(&view, list, length, seed, &r->rules_scratch, r->ruled, r->rule_of);
}

/* Publishes member j's list of round rd's group g. @returns 0 or -1 (fatal). */
static int publish_list(struct refresher *r, const struct round *rd, const struct group *g,
			size_t j, char *errstr, size_t errstr_size)
{
	size_t v = g->v;
	size_t entry = rd->by_variant[v * r->batch + g->first + j];
	uint32_t stable = rd->stables[entry];
	int64_t trigger_ts = rd->taken_trigger_ts[entry];
	char why[512], list_id[17];
	uint64_t id = rng_next(&r->list_id_state);
	size_t length = apply_rules(r, g, stable, &g->results[j * g->k], g->lengths[j], id);
	const struct topk_result *list = r->ruled;
	if (length == (size_t)-1) {
		set_errstr(errstr, errstr_size, "out of memory applying list rules");
		return -1;
	}
	explain_list(r, g, j, stable, list, length);
	for (size_t rank = 0; rank < length; rank++) {
		struct model_explanation *e = &r->explanations[rank];
		const char *rule = listrules_rule_name((enum listrules_rule)r->rule_of[rank]);
		/* a pinned or explored item is there for its rule, not for a recent item */
		if (r->rule_of[rank] == LISTRULES_PINNED || r->rule_of[rank] == LISTRULES_EXPLORE)
			e->because_item = UINT32_MAX;
		r->items[rank].item_id = state_item_id(r->c.state, list[rank].item);
		r->items[rank].score = list[rank].score;
		r->items[rank].reason = rule != NULL ? rule
					: e->reason < MODEL_REASON_COUNT
					    ? model_reason_name(e->reason)
					    : NULL;
		r->items[rank].because_item = e->because_item != UINT32_MAX
						  ? state_item_id(r->c.state, e->because_item)
						  : NULL;
	}
	snprintf(list_id, sizeof list_id, "%016" PRIx64, id);
	const char *user = state_user_name(r->c.state, stable);
	struct recommendation rec = {.user_id = user,
				     .variant = r->c.variants[v].name,
				     .model_step = (int64_t)model_step(state_model(r->c.state, v)),
				     .generated_at_ms = clock_wall_ms(),
				     .trigger_event_ts_ms = trigger_ts,
				     .item_count = length,
				     .items = r->items,
				     .list_id = list_id};
	int sent = r->c.publish(&rec, r->c.opaque, why, sizeof why);
	if (sent < 0) {
		log_line(LOG_PRIORITY_WARNING, "publish for %s: %s", user, why);
		return 0;
	}
	if (sent == REFRESH_PUBLISH_LATER) {
		/* not taken now (the producer's queue full: a slow broker): the user
		 * is due again, as if an event had come, so a later round sends it */
		double now_s = clock_monotonic_s();
		r->unsent_since_warned++;
		if (now_s - r->unsent_warned_s >= 10) { /* one line per 10 s, with the count */
			log_line(LOG_PRIORITY_WARNING,
				 "publish for %s: %s; due again (%" PRIu64
				 " lists not sent since the "
				 "last such line)",
				 user, why, r->unsent_since_warned);
			r->unsent_warned_s = now_s;
			r->unsent_since_warned = 0;
		}
		r->c.metrics->publish_retries_total++;
		if (refresher_mark(r, stable, trigger_ts, clock_wall_ms()) != 0) {
			set_errstr(errstr, errstr_size, "out of memory marking a refresh");
			return -1;
		}
		return 0;
	}
	r->c.metrics->variants[v].recommendations_total++;
	if (r->c.experiment != NULL &&
	    experiment_expose(r->c.experiment, stable, v, errstr, errstr_size) != 0)
		return -1;
	for (size_t n = 0; n < length; n++)
		r->whys[n] = (struct lists_why){.because_item = r->explanations[n].because_item,
						.reason = (uint8_t)r->explanations[n].reason,
						.rule = r->rule_of[n]};
	if (remember_list(r, stable, v, id, list, r->whys, length, rec.generated_at_ms,
			  trigger_ts) != 0) {
		set_errstr(errstr, errstr_size, "out of memory remembering a published list");
		return -1;
	}
	/* a list made for backlog only (a backfill) is catch-up, kept out of the
	 * freshness SLO; of the rest, those the deferred lane served are also
	 * counted apart: how late overload made them */
	struct metrics_variant *mv = &r->c.metrics->variants[v];
	double seconds = (double)(clock_wall_ms() - trigger_ts) / 1000.0;
	if (rd->taken_arrival[entry] == ARRIVAL_BACKLOG) {
		metrics_histogram_observe(&mv->catch_up_seconds, seconds);
		return 0;
	}
	metrics_histogram_observe(&mv->freshness_seconds, seconds);
	if (rd->taken_lane[entry] == LANE_DEFERRED)
		metrics_histogram_observe(&mv->freshness_deferred_seconds, seconds);
	return 0;
}

/* A new group for `count` members of variant v from `first`. @returns it, or NULL. */
static struct group *add_group(struct round *rd, size_t v, size_t first, size_t count, size_t k)
{
	if (rd->group_count == rd->group_capacity &&
	    grow_array(&rd->groups, &rd->group_capacity, rd->group_count + 1, sizeof *rd->groups,
		       4) != 0)
		return NULL;
	struct group *g = &rd->groups[rd->group_count];
	if (reserve(&g->slots, &g->slots_capacity, count, sizeof *g->slots) != 0 ||
	    reserve(&g->results, &g->results_capacity, count * k, sizeof *g->results) != 0 ||
	    reserve(&g->lengths, &g->lengths_capacity, count, sizeof *g->lengths) != 0 ||
	    reserve(&g->warm_results, &g->warm_results_capacity, count * k,
		    sizeof *g->warm_results) != 0 ||
	    reserve(&g->warm_counts, &g->warm_counts_capacity, count, sizeof *g->warm_counts) !=
		0 ||
	    reserve(&g->shadow_results, &g->shadow_results_capacity, count * k,
		    sizeof *g->shadow_results) != 0 ||
	    reserve(&g->shadow_counts, &g->shadow_counts_capacity, count,
		    sizeof *g->shadow_counts) != 0)
		return NULL;
	rd->group_count++;
	g->v = v;
	g->first = first;
	g->count = count;
	g->k = k;
	g->popularity = g->failed = false;
	g->shadow = 0;
	g->recall_sum = 0;
	g->recall_compared = 0;
	memset(&g->curve, 0, sizeof g->curve);
	g->candidates = g->searched = 0;
	g->search_seconds = g->shadow_seconds = 0;
	g->error[0] = '\0';
	return g;
}

/* The control arm's lists (all-time popularity, same exclusions and filters). */
static void popularity_lists(struct group *g, struct model *model)
{
	uint32_t top[MAX_K];
	for (size_t j = 0; j < g->count; j++) {
		g->lengths[j] = model_popular(model, g->slots[j], g->k, g->listable, top);
		for (size_t rank = 0; rank < g->lengths[j]; rank++)
			g->results[j * g->k + rank] = (struct topk_result){
			    .item = top[rank], .score = (float)model_item_count_of(model, top[rank])};
	}
}

/*
 * Prepares variant v's `count` users from `first` as one group, their
 * slots pinned meanwhile. @returns 0; 1 when a pin failed (logged, the
 * round stops there); -1 with errstr filled when out of memory.
 */
static int prepare_group(struct refresher *r, struct round *rd, size_t v, size_t first,
			 size_t count, const uint8_t *listable, struct model_view *view,
			 char *errstr, size_t errstr_size)
{
	const struct config_variant *cv = &r->c.config->variants[v];
	struct state *state = r->c.state;
	struct model *model = state_model(state, v);
	char why[512];
	/* over-fetched, so that the list rules still fill k (model/listrules.h) */
	size_t fetch = listrules_fetch(&cv->rules, cv->k, MAX_K);
	struct group *g = add_group(rd, v, first, count, fetch);
	if (g == NULL) {
		set_errstr(errstr, errstr_size, "refresh: out of memory for a batch of %zu", count);
		return -1;
	}
	g->listable = listable;
	g->view = view;
	g->retrieval = cv->model.retrieval;
	g->popularity = cv->policy == CONFIG_POLICY_POPULARITY;
	state_user_unpin_all(state);
	for (size_t j = 0; j < count; j++)
		if (state_user_pin(state, rd->stables[rd->by_variant[v * r->batch + first + j]],
				   &g->slots[j], why, sizeof why) != 0) {
			log_line(LOG_PRIORITY_WARNING, "refresh: %s", why);
			rd->group_count--;
			return 1;
		}
	if (g->popularity) {
		popularity_lists(g, model);
		g->batch.warm = 0;
		return 0;
	}
	if (model_batch_prepare(&g->batch, model, g->slots, count, fetch, listable, g->results,
				g->lengths, why, sizeof why) != 0) {
		g->failed = true;
		snprintf(g->error, sizeof g->error, "%s", why);
		return 0;
	}
	if (g->retrieval == MODEL_RETRIEVAL_INDEX && g->batch.warm > 0) {
		/* the shadow: a share of the index engine's users, a few at a
		 * time, while its time stays within its budget */
		double share = r->c.config->refresh_shadow_share;
		r->shadow_credit += share * (double)g->batch.warm;
		size_t want = share >= 1 ? g->batch.warm : REFRESH_SHADOW_USERS;
		if (want > g->batch.warm)
			want = g->batch.warm;
		bool in_budget =
		    r->c.config->refresh_shadow_budget > 0 && r->shadow_time_credit >= 0;
		if (share > 0 && r->shadow_credit >= (double)want && in_budget) {
			r->shadow_credit -= (double)want;
			g->shadow = want;
		} else if (r->shadow_credit > (double)want) {
			/* held back by the budget: no backlog of shadows to come
			 * (a budget raised later, by a reload, would run one in
			 * every round until the credit was spent) */
			r->shadow_credit = (double)want;
		}
	}
	return 0;
}

/*
 * The moved rows a round's index upkeep places again (model_view_limit_upkeep()).
 * Every one, unless the refresh is overloaded: then as many as the view
 * places (at its measured cost a row) in the time the last round spent not
 * waiting for its upkeep, searching and then waiting for the loop's thread
 * to publish it (at least REFRESH_UPKEEP_MIN_S), the others waiting, the
 * longest-waiting first, for later rounds. So the upkeep takes at most
 * about what the searches take, or what the workers would idle anyway. The
 * searches wait for the upkeep, which one worker does: at 1M items and 35k
 * events/s learned (Zen, 2 cores) it re-placed 110k rows a second, a whole
 * worker, and rounds of 1,000 lists took 2.3 s, 98% of it waiting for it
 * (bench/HISTORY.md, 5 December, night). streamrec_index_rows_pending
 * shows the rows left waiting, the shadow recall what they cost.
 */
static size_t upkeep_limit(const struct refresher *r, const struct model_view *view)
{
	struct model_index_stats stats;
	if (!r->overloaded)
		return SIZE_MAX;
	model_view_stats(view, &stats);
	if (!(stats.row_seconds > 0))
		return SIZE_MAX; /* no cost measured yet */
	double budget =
	    r->upkeep_budget_s > REFRESH_UPKEEP_MIN_S ? r->upkeep_budget_s : REFRESH_UPKEEP_MIN_S;
	double rows = budget / stats.row_seconds;
	return rows < 1 ? 1 : rows >= (double)SIZE_MAX ? SIZE_MAX : (size_t)rows;
}

/*
 * Variant v's view of the item side, synced for its lists (the index, when
 * it has one, retrains aside: no round waits for it). @returns the view, or
 * NULL with errstr filled.
 */
static struct model_view *synced_view(struct refresher *r, size_t v, char *errstr,
				      size_t errstr_size)
{
	const struct config_variant *cv = &r->c.config->variants[v];
	struct model *model = state_model(r->c.state, v);
	struct model_view *view = model_view(model, r->pool.threads > 0, errstr, errstr_size);
	if (view == NULL)
		return NULL;
	model_view_train_aside(view, true);
	if (model_view_sync(view, model, listrules_fetch(&cv->rules, cv->k, MAX_K), errstr,
			    errstr_size) != 0)
		return NULL;
	model_view_limit_upkeep(view, upkeep_limit(r, view));
	return view;
}

/* Variant v's index trainings and row upkeep into the metrics (between rounds). */
static void note_index_stats(struct refresher *r, size_t v, const struct model_view *view)
{
	struct metrics_variant *mv = &r->c.metrics->variants[v];
	struct model_index_stats stats;
	model_view_stats(view, &stats);
	mv->index_trainings_total = stats.trainings;
	mv->index_training_seconds_total = stats.training_seconds;
	mv->index_row_updates_total = stats.rows_synced;
	mv->index_rows_kept_total = stats.rows_kept;
	mv->index_rows_pending = stats.rows_pending;
	mv->index_largest_cell = stats.largest_cell;
	mv->index_items = stats.items;
}

/* Takes due users into round rd and prepares it. @returns the users taken, or -1. */
static long prepare_round(struct refresher *r, struct round *rd, int64_t now_ms, char *errstr,
			  size_t errstr_size)
{
	struct state *state = r->c.state;
	size_t counts[STATE_MAX_VARIANTS] = {0};
	size_t n = take_due(r, rd, now_ms);

	rd->group_count = 0;
	if (n == 0)
		return 0;
	rd->started = clock_monotonic_s();
	for (size_t u = 0; u < n; u++) {
		const char *name = state_user_name(state, rd->stables[u]);
		size_t v = assign_variant(r->c.config->experiment_salt, name, r->c.variants,
					  r->c.variant_count);
		rd->by_variant[v * r->batch + counts[v]++] = u;
	}
	/* A lookup may evict: each group pins its users, as many as the cache
	 * can hold, so no slot changes hands while its queries are made. */
	size_t pinnable = state_user_pin_capacity(state);
	long rc = (long)n;
	for (size_t v = 0; v < r->c.variant_count && rc > 0; v++) {
		if (counts[v] == 0)
			continue;
		const uint8_t *listable = listable_items(r, v, now_ms);
		struct model_view *view = NULL;
		if (listable == NULL) {
			set_errstr(errstr, errstr_size, "refresh: out of memory for listable items");
			rc = -1;
			break;
		}
		if (r->c.config->variants[v].policy != CONFIG_POLICY_POPULARITY) {
			view = synced_view(r, v, errstr, errstr_size);
			if (view == NULL) {
				rc = -1;
				break;
			}
			/* an index not built yet is built by a round with warm
			 * queries (plan_tasks()), over the rows they made: built
			 * at a round of cold users only, it could hold a handful */
			if (r->c.config->variants[v].model.retrieval == MODEL_RETRIEVAL_INDEX &&
			    model_view_indexed(view))
				post_upkeep(r, view); /* out of memory: plan_tasks() lists it */
		}
		for (size_t first = 0; first < counts[v]; first += pinnable) {
			size_t members = counts[v] - first < pinnable ? counts[v] - first : pinnable;
			int got = prepare_group(r, rd, v, first, members, listable, view, errstr,
						errstr_size);
			if (got != 0) {
				rc = got < 0 ? -1 : rc;
				break;
			}
		}
	}
	state_user_unpin_all(state); /* the batches hold copies of what lists read */
	if (rc >= 0 && plan_tasks(r, rd) != 0) {
		set_errstr(errstr, errstr_size, "refresh: out of memory for a round's tasks");
		rc = -1;
	}
	return rc;
}

/*
 * Counts an index group's ranking time into the metrics and the shadow's
 * time budget (refresh.shadow_budget): the shadow may take that share of
 * the searches' and its own time, so the credit grows by the share of
 * both and the shadow's own seconds are spent from it.
 */
static void spend_shadow_time(struct refresher *r, const struct group *gr)
{
	struct metrics_variant *mv = &r->c.metrics->variants[gr->v];
	double budget = r->c.config->refresh_shadow_budget;
	mv->index_search_seconds_total += gr->search_seconds;
	mv->index_shadow_seconds_total += gr->shadow_seconds;
	r->shadow_time_credit += budget * (gr->search_seconds + gr->shadow_seconds) -
				 gr->shadow_seconds;
	if (gr->shadow > 0)
		r->last_shadow_seconds = gr->shadow_seconds;
	if (r->shadow_time_credit > r->last_shadow_seconds)
		r->shadow_time_credit = r->last_shadow_seconds;
}

/*
 * Takes in round rd, ranked from out_at to ranked_at (monotonic): its rank
 * and wait time and its upkeep into the metrics
 * (streamrec_refresh_phase_seconds_total), each warm list into its
 * member's place, and what the round learned of its views (index
 * statistics, the recall measured, the cells probed next). It reads the
 * views: before the next round syncs them.
 */
static void take_in_round(struct refresher *r, struct round *rd, double out_at, double ranked_at)
{
	double *phase = r->c.metrics->refresh_phase_seconds_total;
	phase[METRICS_REFRESH_RANK] += ranked_at - out_at;
	phase[METRICS_REFRESH_WAIT] += clock_monotonic_s() - ranked_at;
	struct pool *p = &r->pool;
	pthread_mutex_lock(&p->mutex); /* the next round's begin_tasks() resets them */
	double upkeep = p->upkeep_seconds, upkeep_done = p->upkeep_done_at;
	pthread_mutex_unlock(&p->mutex);
	r->c.metrics->refresh_upkeep_seconds_total += upkeep;
	/* the searches waited for the upkeep from the hand-out */
	double awaited =
	    upkeep_done > out_at ? (upkeep_done < ranked_at ? upkeep_done : ranked_at) - out_at : 0;
	r->c.metrics->refresh_upkeep_awaited_seconds_total += awaited;
	/* the rest of the round's time: its searches, then its wait for the
	 * loop's thread to take it in (upkeep_limit()) */
	r->upkeep_budget_s = (ranked_at - out_at - awaited) + (clock_monotonic_s() - ranked_at);
	for (size_t g = 0; g < rd->group_count; g++) {
		struct group *gr = &rd->groups[g];
		if (gr->failed)
			continue;
		for (size_t w = 0; w < gr->batch.warm && !gr->popularity; w++) {
			size_t j = gr->batch.warm_index[w];
			memcpy(gr->results + j * gr->k, gr->warm_results + w * gr->k,
			       gr->warm_counts[w] * sizeof *gr->results);
			gr->lengths[j] = gr->warm_counts[w];
		}
		if (gr->view != NULL && gr->retrieval == MODEL_RETRIEVAL_INDEX) {
			note_index_stats(r, gr->v, gr->view);
			r->c.metrics->variants[gr->v].index_candidates_total += gr->candidates;
			r->c.metrics->variants[gr->v].index_lists_total += gr->searched;
			spend_shadow_time(r, gr);
		}
		if (gr->shadow) {
			struct metrics_variant *mv = &r->c.metrics->variants[gr->v];
			mv->index_recall = gr->recall_compared > 0
					       ? gr->recall_sum / (double)gr->recall_compared
					       : 1.0;
			mv->index_shadow_lists_total += gr->shadow;
			/* the cells probed follow the recall measured (model.index_recall_target) */
			mv->index_nprobe = model_view_adapt_nprobe(gr->view, &gr->curve);
		}
		gr->view = NULL; /* the next round's now */
	}
}

/*
 * Publishes round rd's lists (taken in) and hands them to the state's next
 * batch, counting the time (the publish phase).
 * @returns the users published, or -1 with errstr filled (fatal).
 */
static long publish_round(struct refresher *r, struct round *rd, char *errstr,
			  size_t errstr_size)
{
	double start = clock_monotonic_s();
	long published = 0;
	for (size_t g = 0; g < rd->group_count; g++) {
		struct group *gr = &rd->groups[g];
		published += (long)gr->count;
		if (gr->failed) {
			log_line(LOG_PRIORITY_WARNING, "refresh: %s", gr->error);
			continue;
		}
		if (resolve_rules(r, gr) != 0) {
			set_errstr(errstr, errstr_size,
				   "refresh: out of memory resolving list rules");
			return -1;
		}
		for (size_t j = 0; j < gr->count; j++)
			if (publish_list(r, rd, gr, j, errstr, errstr_size) != 0)
				return -1;
	}
	rd->group_count = 0;
	metrics_histogram_observe(&r->c.metrics->refresh_batch_seconds,
				  clock_monotonic_s() - rd->started);
	/* the round's lists go into the state's next batch now rather than all
	 * at the commit, which then held the loop 6-19 ms for them (20k lists
	 * at 1M items and 10k events/s) */
	refresher_save_lists(r);
	r->c.metrics->refresh_phase_seconds_total[METRICS_REFRESH_PUBLISH] +=
	    clock_monotonic_s() - start;
	return published;
}

void refresher_set_behind(struct refresher *r, bool behind)
{
	r->behind = behind;
	r->round_limit = behind ? r->batch : r->c.config->refresh_batch;
	r->c.metrics->refresh_round_limit = (int64_t)r->round_limit;
}

bool refresher_busy(struct refresher *r)
{
	return r->pool.out;
}

void refresher_wait(struct refresher *r)
{
	struct pool *p = &r->pool;
	if (!p->out || p->threads == 0)
		return;
	pthread_mutex_lock(&p->mutex);
	while (p->done_tasks < p->task_count)
		pthread_cond_wait(&p->finished, &p->mutex);
	pthread_mutex_unlock(&p->mutex);
}

/* The round out with the workers, taken in if they finished it (no longer
 * out then). @returns it, or NULL (none out, or not finished). */
static struct round *ranked_round(struct refresher *r)
{
	struct pool *p = &r->pool;
	if (!p->out)
		return NULL;
	pthread_mutex_lock(&p->mutex);
	bool done = p->done_tasks == p->task_count;
	pthread_mutex_unlock(&p->mutex);
	if (!done)
		return NULL; /* the workers' notify brings the loop back */
	p->out = false;
	take_in_round(r, r->round, p->out_at, p->ranked_at);
	return r->round;
}

long refresher_harvest(struct refresher *r, char *errstr, size_t errstr_size)
{
	struct round *ranked = ranked_round(r);
	return ranked != NULL ? publish_round(r, ranked, errstr, errstr_size) : 0;
}

/*
 * Two rounds overlap: when the workers have ranked one, the next is
 * prepared and handed out first, and the ranked one's lists are published
 * (rules, explanations, encoding, sending: the loop's share of a list)
 * while the workers rank the next. Publishing a round before preparing the
 * next left the workers idle meanwhile: at 1M items and 10k events/s the
 * loop's thread published 0.11-0.17 s of each second.
 */
long refresher_run(struct refresher *r, int64_t now_ms, char *errstr, size_t errstr_size)
{
	struct pool *p = &r->pool;
	char why[256];
	struct round *ranked = NULL;

	if (p->out) {
		ranked = ranked_round(r);
		if (ranked == NULL)
			return 0;
		r->round = ranked == &r->rounds[0] ? &r->rounds[1] : &r->rounds[0];
	}
	double start = clock_monotonic_s();
	long taken = prepare_round(r, r->round, now_ms, errstr, errstr_size);
	if (taken < 0)
		return -1;
	if (taken > 0) {
		double prepared = clock_monotonic_s();
		r->c.metrics->refresh_phase_seconds_total[METRICS_REFRESH_PREPARE] +=
		    prepared - start;
		if (p->threads == 0) {
			/* no workers: the round's tasks here and now */
			for (size_t t = 0; t < p->task_count; t++) {
				double began = clock_monotonic_s();
				if (run_task(r, r->round, &p->tasks[t], p->searcher[0], why,
					     sizeof why) != 0)
					task_failed(r->round, &p->tasks[t], why);
				if (p->tasks[t].prepare != NULL)
					count_upkeep(p, began, clock_monotonic_s());
			}
			p->task_count = 0;
			take_in_round(r, r->round, prepared, clock_monotonic_s());
			return publish_round(r, r->round, errstr, errstr_size) < 0 ? -1 : taken;
		}
		pthread_mutex_lock(&p->mutex);
		p->out_at = prepared;
		p->out = true;
		pthread_cond_broadcast(&p->work);
		if (p->done_tasks == p->task_count)
			end_round(r); /* only an upkeep handed out early, done already: no worker ends it */
		pthread_mutex_unlock(&p->mutex);
	}
	if (ranked != NULL)
		return publish_round(r, ranked, errstr, errstr_size);
	return taken;
}

bool refresher_last_list(const struct refresher *r, uint32_t stable, struct refresh_list *out)
{
	const struct lists_entry *p = lists_get(r->lists, stable);
	if (p == NULL)
		return false;
	out->variant = p->variant;
	out->count = p->count;
	out->generated_at_ms = p->generated_at_ms;
	out->trigger_ts_ms = p->trigger_ts_ms;
	out->items = p->items;
	snprintf(out->list_id, sizeof out->list_id, "%016" PRIx64, p->list_id);
	return true;
}

bool refresher_last_explanation(const struct refresher *r, uint32_t stable, size_t rank,
				enum model_reason *reason, uint32_t *because_item)
{
	const struct lists_entry *p = lists_get(r->lists, stable);
	if (p == NULL || rank >= p->count)
		return false;
	const struct lists_why *w = &lists_entry_why(p)[rank];
	*reason = (enum model_reason)w->reason;
	*because_item = w->because_item;
	return true;
}





/* One list as stored (see LIST_RECORD_VERSION). @returns its length. */
static size_t encode_list(const struct refresher *r, const char *user,
			  const struct lists_entry *p, unsigned char *out)
{
	const char *name = r->c.variants[p->variant].name;
	size_t n = strlen(name) < 255 ? strlen(name) : 255, at = 0;
	size_t m = strlen(user) < LIST_USER_MAX ? strlen(user) : LIST_USER_MAX;
	out[at++] = LIST_RECORD_VERSION;
	out[at++] = (unsigned char)n;
	memcpy(out + at, name, n);
	at += n;
	out[at++] = (unsigned char)(m >> 8);
	out[at++] = (unsigned char)m;
	memcpy(out + at, user, m);
	at += m;
	bytes_put_be64(out + at, (uint64_t)p->generated_at_ms);
	bytes_put_be64(out + at + 8, (uint64_t)p->trigger_ts_ms);
	bytes_put_be64(out + at + 16, p->list_id);
	out[at + 24] = (unsigned char)(p->count >> 8);
	out[at + 25] = (unsigned char)p->count;
	at += 26;
	const struct lists_why *why = lists_entry_why(p);
	for (size_t k = 0; k < p->count; k++, at += LIST_ITEM_BYTES) {
		uint32_t bits;
		memcpy(&bits, &p->items[k].score, sizeof bits);
		bytes_put_be32(out + at, p->items[k].item);
		bytes_put_be32(out + at + 4, bits);
		out[at + 8] = (unsigned char)((why[k].reason & 0x0f) | (why[k].rule & 0x0f) << 4);
		bytes_put_be32(out + at + 9, why[k].because_item);
	}
	return at;
}

int refresher_save_lists(struct refresher *r)
{
	for (size_t c = 0; c < r->changed_count; c++) {
		uint32_t stable = r->changed_lists[c];
		r->list_changed[stable] = 0;
		const struct lists_entry *p = lists_get(r->lists, stable);
		if (p == NULL)
			continue;
		size_t len = encode_list(r, lists_user_id(r->lists, stable), p, r->record);
		state_put_list(r->c.state, stable, r->record, len);
	}
	size_t saved = r->changed_count;
	r->changed_count = 0;
	return (int)(saved > INT32_MAX ? INT32_MAX : saved);
}

struct restore {
	struct refresher *r;
	size_t restored, skipped;
	bool out_of_memory;
};

/* Decodes one stored list into the user's published list; a record that
 * does not fit (another version, a variant gone, an unknown item) is skipped. */
static int restore_list(uint32_t stable, const void *record, size_t len, void *ctx)
{
	struct restore *rs = ctx;
	struct refresher *r = rs->r;
	const unsigned char *b = record;
	char user[LIST_USER_MAX + 1];
	size_t name_len = len >= 2 ? b[1] : 0, at = 2 + name_len, variant = r->c.variant_count;
	if (len < at + 2 || b[0] != LIST_RECORD_VERSION) {
		rs->skipped++;
		return 0;
	}
	size_t user_len = (size_t)b[at] << 8 | b[at + 1];
	at += 2;
	if (user_len == 0 || user_len > LIST_USER_MAX || len < at + user_len + 26) {
		rs->skipped++;
		return 0;
	}
	memcpy(user, b + at, user_len);
	user[user_len] = '\0';
	at += user_len;
	for (size_t v = 0; v < r->c.variant_count; v++)
		if (strlen(r->c.variants[v].name) == name_len &&
		    memcmp(r->c.variants[v].name, b + 2, name_len) == 0)
			variant = v;
	size_t count = (size_t)b[at + 24] << 8 | b[at + 25];
	if (variant == r->c.variant_count || count > MAX_K ||
	    len != at + 26 + count * LIST_ITEM_BYTES) {
		rs->skipped++;
		return 0;
	}
	size_t items = model_item_count(state_model(r->c.state, variant));
	for (size_t k = 0; k < count; k++) {
		const unsigned char *e = b + at + 26 + k * LIST_ITEM_BYTES;
		uint32_t bits = bytes_get_be32(e + 4);
		r->items_scratch[k].item = bytes_get_be32(e);
		memcpy(&r->items_scratch[k].score, &bits, sizeof bits);
		r->whys[k] = (struct lists_why){
		    .reason = e[8] & 0x0f, .rule = e[8] >> 4, .because_item = bytes_get_be32(e + 9)};
		if (r->whys[k].reason > MODEL_REASON_COUNT)
			r->whys[k].reason = MODEL_REASON_COUNT;
		if (r->whys[k].rule >= LISTRULES_RULE_COUNT)
			r->whys[k].rule = LISTRULES_RANKED;
		if (r->whys[k].because_item != UINT32_MAX &&
		    (r->whys[k].because_item >= items ||
		     !state_item_live(r->c.state, r->whys[k].because_item)))
			r->whys[k].because_item = UINT32_MAX;
		if (r->items_scratch[k].item >= items) {
			rs->skipped++;
			return 0;
		}
	}
	/* items removed since it was saved (a variant's lists kept while it was
	 * not configured, a state of an earlier build) leave it */
	size_t kept = 0;
	for (size_t k = 0; k < count; k++)
		if (state_item_live(r->c.state, r->items_scratch[k].item)) {
			r->items_scratch[kept] = r->items_scratch[k];
			r->whys[kept++] = r->whys[k];
		}
	count = kept;
	int64_t trigger_ts_ms = (int64_t)bytes_get_be64(b + at + 8);
	if (ensure_users(r, stable) != 0 ||
	    lists_put(r->lists, stable, user, variant, bytes_get_be64(b + at + 16), (int64_t)bytes_get_be64(b + at),
		      trigger_ts_ms, r->items_scratch, r->whys, count, item_id_of, r->c.state) < 0) {
		rs->out_of_memory = true;
		return 1;
	}
	if (trigger_ts_ms > r->trigger_ts[stable])
		r->trigger_ts[stable] = trigger_ts_ms;
	rs->restored++;
	return 0;
}

long refresher_build_indexes(struct refresher *r, char *errstr, size_t errstr_size)
{
	long built = 0;
	for (size_t v = 0; v < r->c.variant_count; v++) {
		const struct config_variant *cv = &r->c.config->variants[v];
		struct model *model = state_model(r->c.state, v);
		if (cv->policy == CONFIG_POLICY_POPULARITY ||
		    cv->model.retrieval != MODEL_RETRIEVAL_INDEX || model_item_count(model) == 0)
			continue;
		double started = clock_monotonic_s();
		struct model_view *view = synced_view(r, v, errstr, errstr_size);
		if (view == NULL)
			return -1;
		/* nothing else runs yet: the build takes every refresh thread's core
		 * (at 1M items 1.3-1.5x as fast on two), later builds one */
		model_view_build_threads(view, r->c.threads > 1 ? r->c.threads : 1);
		int rc = model_view_prepare(view, errstr, errstr_size);
		model_view_build_threads(view, 1);
		if (rc != 0)
			return -1;
		note_index_stats(r, v, view);
		struct model_index_stats stats;
		model_view_stats(view, &stats);
		log_line(LOG_PRIORITY_INFO,
			 "variant %s: item index over %zu items built in %.1f s: %zu cells, the "
			 "largest of %zu items",
			 cv->name, model_item_count(model), clock_monotonic_s() - started, stats.nlist,
			 stats.largest_cell);
		built++;
	}
	return built;
}

long refresher_restore_lists(struct refresher *r, size_t *skipped, char *errstr,
			     size_t errstr_size)
{
	struct restore rs = {.r = r};
	if (state_lists_foreach(r->c.state, restore_list, &rs, errstr, errstr_size) != 0)
		return -1;
	if (rs.out_of_memory) {
		set_errstr(errstr, errstr_size, "refresh: out of memory restoring %zu lists",
			   rs.restored + 1);
		return -1;
	}
	if (skipped != NULL)
		*skipped = rs.skipped;
	return (long)rs.restored;
}

struct lists *refresher_lists(struct refresher *r)
{
	return r->lists;
}
