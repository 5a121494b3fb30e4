#include "refresh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "errstr.h"
#include "grow.h"
#include "log.h"
#include "model.h"

#define MAX_K 1000

/* A mark waiting in the recent lane: the user and when it was marked
 * (an entry whose time is not the user's newest mark is a stale duplicate). */
struct mark {
	uint32_t stable;
	int64_t marked_ms;
};

/* Where a user waits: nowhere, in the recent lane, or in the deferred lane. */
enum lane { LANE_NONE = 0, LANE_RECENT, LANE_DEFERRED };

/* A user's last published list: items (indices) and scores, best first. */
struct published {
	uint8_t variant;
	uint16_t count, capacity;
	int64_t generated_at_ms, trigger_ts_ms;
	struct topk_result items[];
};

struct refresher {
	struct refresh_config c;
	size_t batch; /* refresh.batch at creation: the size of the scratch below */

	/* Two lanes (see refresher_run): the recent lane, a stack of marks
	 * taken newest first, and the deferred lane, a FIFO ring of users who
	 * waited beyond the staleness target. Per stable user: its lane, the
	 * time of its newest mark, its newest trigger, its last refresh and its
	 * last published list. */
	struct mark *recent; /* [recent_bottom, recent_count): oldest at the bottom */
	size_t recent_bottom, recent_count, recent_capacity, recent_users;
	uint32_t *deferred;
	size_t deferred_head, deferred_count, deferred_capacity;
	uint8_t *lane;
	int64_t *marked_ms, *trigger_ts, *last_refresh_ms;
	struct published **published;
	size_t user_capacity, lane_capacity, marked_capacity, trigger_capacity, last_capacity,
	    published_capacity;
	struct mark *held; /* marks not yet due (min_interval), put back after a run */
	size_t held_capacity;
	double shadow_credit; /* grows by shadow_share per index batch; a shadow at 1 */

	/* per variant: which items may be listed, recomputed when the listing
	 * changes, items appear, or it is a refresh interval old */
	uint8_t *listable[STATE_MAX_VARIANTS];
	size_t listable_items[STATE_MAX_VARIANTS];
	int64_t listable_at_ms[STATE_MAX_VARIANTS];
	uint64_t listable_generation[STATE_MAX_VARIANTS];
	uint64_t listing_generation;

	/* one run's scratch, batch entries each */
	uint32_t *stables, *slots;
	size_t *by_variant; /* STATE_MAX_VARIANTS × batch */
	struct topk_result *results;
	size_t *lengths;
	struct scored_item *items;
};

struct refresher *refresher_new(const struct refresh_config *config, char *errstr,
				size_t errstr_size)
{
	struct refresher *r = calloc(1, sizeof *r);
	if (r == NULL)
		goto out_nomem;
	r->c = *config;
	r->batch = config->config->refresh_batch;
	r->stables = calloc(r->batch, sizeof *r->stables);
	r->slots = calloc(r->batch, sizeof *r->slots);
	r->by_variant = calloc(STATE_MAX_VARIANTS * r->batch, sizeof *r->by_variant);
	r->results = calloc(r->batch * MAX_K, sizeof *r->results);
	r->lengths = calloc(r->batch, sizeof *r->lengths);
	r->items = calloc(MAX_K, sizeof *r->items);
	if (r->stables == NULL || r->slots == NULL || r->by_variant == NULL ||
	    r->results == NULL || r->lengths == NULL || r->items == NULL)
		goto out_free;
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
	for (size_t u = 0; u < r->published_capacity; u++)
		free(r->published[u]);
	free(r->published);
	free(r->recent);
	free(r->deferred);
	free(r->held);
	free(r->lane);
	free(r->marked_ms);
	free(r->trigger_ts);
	free(r->last_refresh_ms);
	for (size_t v = 0; v < STATE_MAX_VARIANTS; v++)
		free(r->listable[v]);
	free(r->stables);
	free(r->slots);
	free(r->by_variant);
	free(r->results);
	free(r->lengths);
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
	    grow_array(&r->trigger_ts, &r->trigger_capacity, needed, sizeof *r->trigger_ts,
		       4096) != 0 ||
	    grow_array(&r->last_refresh_ms, &r->last_capacity, needed, sizeof *r->last_refresh_ms,
		       4096) != 0 ||
	    grow_array(&r->published, &r->published_capacity, needed, sizeof *r->published,
		       4096) != 0)
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

/* Appends a user to the deferred lane's ring. @returns 0, or -1 when out of memory. */
static int push_deferred(struct refresher *r, uint32_t stable)
{
	if (r->deferred_count == r->deferred_capacity) {
		size_t cap = r->deferred_capacity ? r->deferred_capacity * 2 : 4096;
		uint32_t *grown = malloc(cap * sizeof *grown);
		if (grown == NULL)
			return -1;
		for (size_t k = 0; k < r->deferred_count; k++)
			grown[k] = r->deferred[(r->deferred_head + k) % r->deferred_capacity];
		free(r->deferred);
		r->deferred = grown;
		r->deferred_head = 0;
		r->deferred_capacity = cap;
	}
	r->deferred[(r->deferred_head + r->deferred_count++) % r->deferred_capacity] = stable;
	return 0;
}

int refresher_mark(struct refresher *r, uint32_t stable, int64_t trigger_ts_ms, int64_t now_ms)
{
	if (ensure_users(r, stable) != 0)
		return -1;
	if (trigger_ts_ms > r->trigger_ts[stable])
		r->trigger_ts[stable] = trigger_ts_ms;
	/* a newer mark replaces the older: the old stack entry or deferred
	 * slot becomes stale and is skipped when reached */
	if (r->lane[stable] != LANE_RECENT)
		r->recent_users++;
	r->lane[stable] = LANE_RECENT;
	r->marked_ms[stable] = now_ms;
	return push_recent(r, stable, now_ms);
}

size_t refresher_pending(const struct refresher *r)
{
	return r->recent_users + r->deferred_count;
}

void refresher_listing_changed(struct refresher *r)
{
	r->listing_generation++;
}

void refresher_count_hit(struct refresher *r, uint32_t stable, const char *item_id,
			 enum event_type type)
{
	bool hit_type = false;
	for (size_t h = 0; h < METRICS_HIT_TYPE_COUNT; h++)
		hit_type |= metrics_hit_types[h] == type;
	if (!hit_type || (size_t)stable >= r->user_capacity || r->published[stable] == NULL)
		return;
	const struct published *p = r->published[stable];
	uint32_t item = state_find_item(r->c.state, item_id);
	for (size_t rank = 0; rank < p->count; rank++)
		if (p->items[rank].item == item) {
			struct metrics_variant *mv = &r->c.metrics->variants[p->variant];
			mv->hits_total[type]++;
			mv->hits_by_rank_total[metrics_rank_bucket(rank + 1)]++;
			if (r->c.experiment != NULL)
				(void)experiment_hit(r->c.experiment, stable, p->variant, NULL, 0);
			return;
		}
}

/* Remembers the list just published for a user; @returns 0, or -1 when out of memory. */
static int remember_list(struct refresher *r, uint32_t stable, size_t variant,
			 const struct topk_result *list, size_t count, int64_t generated_at_ms)
{
	struct published *p = r->published[stable];
	if (p == NULL || p->capacity < count) {
		size_t capacity = count > 20 ? count : 20;
		struct published *grown = realloc(p, sizeof *p + capacity * sizeof p->items[0]);
		if (grown == NULL)
			return -1;
		if (p == NULL)
			r->c.metrics->variants[variant].users_served_total++;
		p = r->published[stable] = grown;
		p->capacity = (uint16_t)capacity;
	}
	p->variant = (uint8_t)variant;
	p->count = (uint16_t)count;
	p->generated_at_ms = generated_at_ms;
	p->trigger_ts_ms = r->trigger_ts[stable];
	memcpy(p->items, list, count * sizeof *list);
	return 0;
}

/*
 * The items variant v may list: in the catalogue (or never named by it) and
 * learned on at least min_item_events times. Cached; recomputed when the
 * listing changed, items appeared, or it is a refresh interval old.
 * @returns the flags (one per item), or NULL when out of memory.
 */
static const uint8_t *listable_items(struct refresher *r, size_t v, int64_t now_ms)
{
	const struct config *config = r->c.config;
	struct model *model = state_model(r->c.state, v);
	size_t items = model_item_count(model);
	if (r->listable[v] != NULL && r->listable_items[v] == items &&
	    r->listable_generation[v] == r->listing_generation &&
	    now_ms - r->listable_at_ms[v] < (int64_t)config->refresh_interval_ms)
		return r->listable[v];
	uint8_t *flags = realloc(r->listable[v], items ? items : 1);
	if (flags == NULL)
		return NULL;
	for (size_t i = 0; i < items; i++)
		flags[i] = catalog_listed(r->c.catalog, (uint32_t)i) &&
			   model_item_count_of(model, (uint32_t)i) >= config->min_item_events;
	r->listable[v] = flags;
	r->listable_items[v] = items;
	r->listable_at_ms[v] = now_ms;
	r->listable_generation[v] = r->listing_generation;
	return flags;
}

/* Whether a user may be refreshed now (min_interval since its last list). */
static bool due(const struct refresher *r, uint32_t stable, int64_t now_ms)
{
	return now_ms - r->last_refresh_ms[stable] >= (int64_t)r->c.config->min_interval_ms;
}

/*
 * Takes up to one batch: first the recent lane, newest mark first, so under
 * overload the newest activity is served first; a mark older than the
 * staleness target moves to the deferred lane (counted) instead; then, only
 * when no recent mark is due, the deferred lane, oldest first. Users not due
 * yet (min_interval) keep their place. @returns how many were taken.
 */
static size_t take_due(struct refresher *r, int64_t now_ms)
{
	int64_t target = (int64_t)r->c.config->staleness_target_ms;
	size_t n = 0, held = 0;
	/* marks are pushed in time order, so the stale ones lie at the bottom:
	 * they move to the deferred lane there, oldest first */
	while (r->recent_bottom < r->recent_count) {
		struct mark m = r->recent[r->recent_bottom];
		bool current = r->lane[m.stable] == LANE_RECENT && r->marked_ms[m.stable] == m.marked_ms;
		if (current && now_ms - m.marked_ms <= target)
			break;
		if (current) {
			if (push_deferred(r, m.stable) != 0)
				break; /* out of memory: it stays, and is served from the top */
			r->lane[m.stable] = LANE_DEFERRED;
			r->recent_users--;
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
	while (n < r->batch && r->recent_count > r->recent_bottom) {
		struct mark m = r->recent[--r->recent_count];
		if (r->lane[m.stable] != LANE_RECENT || r->marked_ms[m.stable] != m.marked_ms)
			continue; /* a duplicate of a newer mark */
		if (!due(r, m.stable, now_ms)) {
			if (grow_array(&r->held, &r->held_capacity, held + 1, sizeof *r->held, 256) !=
			    0) {
				r->recent_count++;
				break;
			}
			r->held[held++] = m;
			continue;
		}
		r->lane[m.stable] = LANE_NONE;
		r->recent_users--;
		r->stables[n++] = m.stable;
	}
	while (held > 0) /* back in their order, the newest on top */
		r->recent[r->recent_count++] = r->held[--held];
	for (size_t scanned = 0, waiting = r->deferred_count; n < r->batch && scanned < waiting;
	     scanned++) {
		uint32_t stable = r->deferred[r->deferred_head];
		r->deferred_head = (r->deferred_head + 1) % r->deferred_capacity;
		r->deferred_count--;
		if (r->lane[stable] != LANE_DEFERRED)
			continue; /* marked again since: it waits in the recent lane */
		if (!due(r, stable, now_ms)) {
			push_deferred(r, stable); /* the slot just freed: cannot fail */
			continue;
		}
		r->lane[stable] = LANE_NONE;
		r->stables[n++] = stable;
	}
	r->c.metrics->refresh_waiting = (int64_t)r->recent_users;
	r->c.metrics->refresh_deferred_waiting = (int64_t)r->deferred_count;
	return n;
}

/* The lists of `members` users of variant v (their slots pinned) into results/lengths. */
static int compute_lists(struct refresher *r, size_t v, size_t members, const uint8_t *listable,
			 char *errstr, size_t errstr_size)
{
	const struct config_variant *cv = &r->c.config->variants[v];
	struct model *model = state_model(r->c.state, v);
	if (cv->policy != CONFIG_POLICY_POPULARITY) {
		if (model_recommend(model, r->c.topk, r->slots, members, cv->k, listable, r->results,
				    r->lengths, errstr, errstr_size) != 0)
			return -1;
		if (cv->model.retrieval != MODEL_RETRIEVAL_INDEX)
			return 0;
		/* the shadow: the same users through the exact engine, on a share of batches */
		r->shadow_credit += r->c.config->refresh_shadow_share;
		if (r->shadow_credit < 1)
			return 0;
		r->shadow_credit -= 1;
		double recall;
		if (model_recommend_recall(model, r->c.topk, r->slots, members, cv->k, listable,
					   &recall, errstr, errstr_size) != 0)
			return -1;
		r->c.metrics->variants[v].index_recall = recall;
		r->c.metrics->variants[v].index_shadow_lists_total += members;
		return 0;
	}
	/* the control arm: all-time popularity, same exclusions and filters */
	uint32_t top[MAX_K];
	for (size_t j = 0; j < members; j++) {
		r->lengths[j] = model_popular(model, r->slots[j], cv->k, listable, top);
		for (size_t rank = 0; rank < r->lengths[j]; rank++)
			r->results[j * cv->k + rank] = (struct topk_result){
			    .item = top[rank], .score = (float)model_item_count_of(model, top[rank])};
	}
	return 0;
}

/* Publishes the computed list of user j (stable index) of variant v. @returns 0 or -1 (fatal). */
static int publish_list(struct refresher *r, size_t v, size_t j, uint32_t stable, int64_t now_ms,
			char *errstr, size_t errstr_size)
{
	const struct config_variant *cv = &r->c.config->variants[v];
	const struct topk_result *list = &r->results[j * cv->k];
	char why[512];
	for (size_t rank = 0; rank < r->lengths[j]; rank++) {
		r->items[rank].item_id = state_item_id(r->c.state, list[rank].item);
		r->items[rank].score = list[rank].score;
	}
	const char *user = state_user_name(r->c.state, stable);
	struct recommendation rec = {.user_id = user,
				     .variant = r->c.variants[v].name,
				     .model_step = (int64_t)model_step(state_model(r->c.state, v)),
				     .generated_at_ms = clock_wall_ms(),
				     .trigger_event_ts_ms = r->trigger_ts[stable],
				     .item_count = r->lengths[j],
				     .items = r->items};
	if (r->c.publish(&rec, r->c.opaque, why, sizeof why) != 0) {
		log_line(LOG_PRIORITY_WARNING, "publish for %s: %s", user, why);
		return 0;
	}
	r->last_refresh_ms[stable] = now_ms;
	r->c.metrics->variants[v].recommendations_total++;
	if (r->c.experiment != NULL &&
	    experiment_expose(r->c.experiment, stable, v, errstr, errstr_size) != 0)
		return -1;
	if (remember_list(r, stable, v, list, r->lengths[j], rec.generated_at_ms) != 0) {
		set_errstr(errstr, errstr_size, "out of memory remembering a published list");
		return -1;
	}
	metrics_histogram_observe(&r->c.metrics->variants[v].freshness_seconds,
				  (double)(clock_wall_ms() - r->trigger_ts[stable]) / 1000.0);
	return 0;
}

long refresher_run(struct refresher *r, int64_t now_ms, char *errstr, size_t errstr_size)
{
	struct state *state = r->c.state;
	size_t counts[STATE_MAX_VARIANTS] = {0};
	double start = clock_monotonic_s();
	char why[512];
	long rc = 0;

	size_t n = take_due(r, now_ms);
	if (n == 0)
		return 0;
	for (size_t u = 0; u < n; u++) {
		const char *name = state_user_name(state, r->stables[u]);
		size_t v = assign_variant(r->c.config->experiment_salt, name, r->c.variants,
					  r->c.variant_count);
		r->by_variant[v * r->batch + counts[v]++] = u;
	}
	/* A lookup may evict: each sub-batch pins its users, as many as the
	 * cache can hold, so no slot changes hands while its list is made. */
	size_t pinnable = state_user_pin_capacity(state);
	for (size_t v = 0; v < r->c.variant_count; v++) {
		const uint8_t *listable = counts[v] ? listable_items(r, v, now_ms) : NULL;
		if (counts[v] && listable == NULL) {
			set_errstr(errstr, errstr_size, "refresh: out of memory for listable items");
			rc = -1;
			goto out;
		}
		for (size_t first = 0; first < counts[v]; first += pinnable) {
			size_t members = counts[v] - first < pinnable ? counts[v] - first : pinnable;
			const size_t *member = &r->by_variant[v * r->batch + first];
			state_user_unpin_all(state);
			for (size_t j = 0; j < members; j++)
				if (state_user_pin(state, r->stables[member[j]], &r->slots[j], why,
						   sizeof why) != 0) {
					log_line(LOG_PRIORITY_WARNING, "refresh: %s", why);
					goto out;
				}
			if (compute_lists(r, v, members, listable, why, sizeof why) != 0) {
				log_line(LOG_PRIORITY_WARNING, "refresh: %s", why);
				goto out;
			}
			for (size_t j = 0; j < members; j++)
				if (publish_list(r, v, j, r->stables[member[j]], now_ms, errstr,
						 errstr_size) != 0) {
					rc = -1;
					goto out;
				}
		}
	}
	metrics_histogram_observe(&r->c.metrics->refresh_batch_seconds,
				  clock_monotonic_s() - start);
out:
	state_user_unpin_all(state);
	return rc < 0 ? rc : (long)n;
}

bool refresher_last_list(const struct refresher *r, uint32_t stable, struct refresh_list *out)
{
	if ((size_t)stable >= r->user_capacity || r->published[stable] == NULL)
		return false;
	const struct published *p = r->published[stable];
	out->variant = p->variant;
	out->count = p->count;
	out->generated_at_ms = p->generated_at_ms;
	out->trigger_ts_ms = p->trigger_ts_ms;
	out->items = p->items;
	return true;
}
