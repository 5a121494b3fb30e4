#include "listrules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "sorted.h"
#include "rng.h"

const char *listrules_rule_name(enum listrules_rule rule)
{
	switch (rule) {
	case LISTRULES_BOOSTED: return "boosted";
	case LISTRULES_PINNED: return "pinned";
	case LISTRULES_EXPLORE: return "explore";
	default: return NULL;
	}
}

/* ---- parsing ------------------------------------------------------------------------------ */

/*
 * Calls entry() for each comma-separated entry of text, blanks around it
 * dropped (an empty text has none; an empty entry is an error).
 * @returns 0, or -1 with why filled.
 */
static int each_entry(const char *text, int (*entry)(const char *e, size_t index, void *ctx),
		      void *ctx, char *why, size_t why_size)
{
	size_t index = 0;
	const char *s = text;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return 0;
	for (;;) {
		const char *end = strchr(s, ',');
		size_t n = end ? (size_t)(end - s) : strlen(s);
		char buf[512];
		while (n > 0 && (s[0] == ' ' || s[0] == '\t')) {
			s++;
			n--;
		}
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (n == 0) {
			snprintf(why, why_size, "entry %zu is empty", index + 1);
			return -1;
		}
		if (n >= sizeof buf) {
			snprintf(why, why_size, "entry %zu is longer than %zu characters",
				 index + 1, sizeof buf - 1);
			return -1;
		}
		if (index == LISTRULES_MAX_ENTRIES) {
			snprintf(why, why_size, "more than %d entries", LISTRULES_MAX_ENTRIES);
			return -1;
		}
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (entry(buf, index, ctx) != 0)
			return -1;
		index++;
		if (end == NULL)
			return 0;
		s = end + 1;
	}
}

struct parse_ctx {
	struct listrules *rules;
	char *why;
	size_t why_size;
	bool out_of_memory;
};

static int category_entry(const char *e, size_t index, void *ctx)
{
	struct parse_ctx *p = ctx;
	struct listrules *r = p->rules;
	for (size_t i = 0; i < r->exclude_count; i++)
		if (strcmp(r->exclude_categories[i], e) == 0) {
			snprintf(p->why, p->why_size, "entry %zu: category '%s' is named twice",
				 index + 1, e);
			return -1;
		}
	char **grown =
	    realloc(r->exclude_categories, (r->exclude_count + 1) * sizeof *r->exclude_categories);
	if (grown == NULL)
		goto out_nomem;
	r->exclude_categories = grown;
	if ((grown[r->exclude_count] = strdup(e)) == NULL)
		goto out_nomem;
	r->exclude_count++;
	return 0;
out_nomem:
	snprintf(p->why, p->why_size, "out of memory");
	return -1;
}

static void free_categories(struct listrules *r)
{
	for (size_t i = 0; i < r->exclude_count; i++)
		free(r->exclude_categories[i]);
	free(r->exclude_categories);
	r->exclude_categories = NULL;
	r->exclude_count = 0;
}

static void free_boosts(struct listrules *r)
{
	for (size_t i = 0; i < r->boost_count; i++)
		free(r->boosts[i].name);
	free(r->boosts);
	r->boosts = NULL;
	r->boost_count = 0;
}

static void free_pins(struct listrules *r)
{
	for (size_t i = 0; i < r->pin_count; i++)
		free(r->pins[i].item);
	free(r->pins);
	r->pins = NULL;
	r->pin_count = 0;
}

int listrules_parse_categories(struct listrules *rules, const char *text, char *why,
			       size_t why_size)
{
	struct parse_ctx p = {rules, why, why_size, false};
	free_categories(rules);
	if (each_entry(text, category_entry, &p, why, why_size) != 0) {
		free_categories(rules);
		return -1;
	}
	return 0;
}

static int boost_entry(const char *e, size_t index, void *ctx)
{
	struct parse_ctx *p = ctx;
	struct listrules *r = p->rules;
	const char *colon = strchr(e, ':'), *eq = strrchr(e, '=');
	bool category;
	if (colon != NULL && (size_t)(colon - e) == 4 && strncmp(e, "item", 4) == 0)
		category = false;
	else if (colon != NULL && (size_t)(colon - e) == 8 && strncmp(e, "category", 8) == 0)
		category = true;
	else {
		snprintf(p->why, p->why_size,
			 "entry %zu '%s': expected item:ID=DELTA or category:NAME=DELTA", index + 1,
			 e);
		return -1;
	}
	if (eq == NULL || eq < colon || eq == colon + 1) {
		snprintf(p->why, p->why_size, "entry %zu '%s': expected %s:NAME=DELTA", index + 1,
			 e, category ? "category" : "item");
		return -1;
	}
	char *end;
	double delta = strtod(eq + 1, &end);
	if (end == eq + 1 || *end != '\0' || !isfinite(delta) || delta < -1000 || delta > 1000) {
		snprintf(p->why, p->why_size,
			 "entry %zu '%s': the delta must be a number from -1000 to 1000, got '%s'",
			 index + 1, e, eq + 1);
		return -1;
	}
	size_t name_len = (size_t)(eq - colon - 1);
	for (size_t i = 0; i < r->boost_count; i++)
		if (r->boosts[i].category == category && strlen(r->boosts[i].name) == name_len &&
		    memcmp(r->boosts[i].name, colon + 1, name_len) == 0) {
			snprintf(p->why, p->why_size, "entry %zu: %s '%.*s' is boosted twice",
				 index + 1, category ? "category" : "item", (int)name_len,
				 colon + 1);
			return -1;
		}
	struct listrules_boost *grown = realloc(r->boosts, (r->boost_count + 1) * sizeof *grown);
	if (grown == NULL)
		goto out_nomem;
	r->boosts = grown;
	grown[r->boost_count] = (struct listrules_boost){
	    .category = category, .name = strndup(colon + 1, name_len), .delta = (float)delta};
	if (grown[r->boost_count].name == NULL)
		goto out_nomem;
	r->boost_count++;
	return 0;
out_nomem:
	snprintf(p->why, p->why_size, "out of memory");
	return -1;
}

int listrules_parse_boosts(struct listrules *rules, const char *text, char *why, size_t why_size)
{
	struct parse_ctx p = {rules, why, why_size, false};
	free_boosts(rules);
	if (each_entry(text, boost_entry, &p, why, why_size) != 0) {
		free_boosts(rules);
		return -1;
	}
	return 0;
}

static int pin_entry(const char *e, size_t index, void *ctx)
{
	struct parse_ctx *p = ctx;
	struct listrules *r = p->rules;
	const char *at = strrchr(e, '@');
	if (at == NULL || at == e) {
		snprintf(p->why, p->why_size, "entry %zu '%s': expected ITEM@RANK", index + 1, e);
		return -1;
	}
	char *end;
	unsigned long rank = strtoul(at + 1, &end, 10);
	if (end == at + 1 || *end != '\0' || at[1] == '-' || at[1] == '+' || rank < 1 ||
	    rank > 1000) {
		snprintf(p->why, p->why_size,
			 "entry %zu '%s': the rank must be a whole number from 1 to 1000, got '%s'",
			 index + 1, e, at + 1);
		return -1;
	}
	size_t name_len = (size_t)(at - e);
	for (size_t i = 0; i < r->pin_count; i++) {
		if (r->pins[i].rank == rank) {
			snprintf(p->why, p->why_size, "entry %zu: rank %lu is pinned twice",
				 index + 1, rank);
			return -1;
		}
		if (strlen(r->pins[i].item) == name_len &&
		    memcmp(r->pins[i].item, e, name_len) == 0) {
			snprintf(p->why, p->why_size, "entry %zu: item '%.*s' is pinned twice",
				 index + 1, (int)name_len, e);
			return -1;
		}
	}
	struct listrules_pin *grown = realloc(r->pins, (r->pin_count + 1) * sizeof *grown);
	if (grown == NULL)
		goto out_nomem;
	r->pins = grown;
	grown[r->pin_count] =
	    (struct listrules_pin){.item = strndup(e, name_len), .rank = (unsigned)rank};
	if (grown[r->pin_count].item == NULL)
		goto out_nomem;
	r->pin_count++;
	return 0;
out_nomem:
	snprintf(p->why, p->why_size, "out of memory");
	return -1;
}

int listrules_parse_pins(struct listrules *rules, const char *text, char *why, size_t why_size)
{
	struct parse_ctx p = {rules, why, why_size, false};
	free_pins(rules);
	if (each_entry(text, pin_entry, &p, why, why_size) != 0) {
		free_pins(rules);
		return -1;
	}
	return 0;
}

int listrules_check(const struct listrules *rules, size_t k, char *why, size_t why_size)
{
	for (size_t i = 0; i < rules->pin_count; i++)
		if (rules->pins[i].rank > k) {
			snprintf(why, why_size, "item '%s' is pinned at rank %u, beyond k = %zu",
				 rules->pins[i].item, rules->pins[i].rank, k);
			return -1;
		}
	return 0;
}

void listrules_clear(struct listrules *rules)
{
	free_categories(rules);
	free_boosts(rules);
	free_pins(rules);
	memset(rules, 0, sizeof *rules);
}

bool listrules_any(const struct listrules *rules)
{
	return rules != NULL &&
	       (rules->exclude_count > 0 || rules->max_per_category > 0 || rules->boost_count > 0 ||
		rules->pin_count > 0 || rules->explore_share > 0);
}

size_t listrules_fetch(const struct listrules *rules, size_t k, size_t max)
{
	size_t fetch = k;
	if (rules != NULL &&
	    (rules->exclude_count > 0 || rules->max_per_category > 0 || rules->boost_count > 0))
		fetch = k * LISTRULES_FETCH_FACTOR;
	return fetch < max ? fetch : (max > k ? max : k);
}

size_t listrules_explore_slots(const struct listrules *rules, size_t k)
{
	if (rules == NULL || !(rules->explore_share > 0))
		return 0;
	size_t slots = (size_t)floor(rules->explore_share * (double)k + 0.5);
	if (slots < 1)
		slots = 1;
	return slots < k ? slots : k;
}

/* ---- resolving ---------------------------------------------------------------------------- */

void listrules_resolved_free(struct listrules_resolved *r)
{
	free(r->category_excluded);
	free(r->category_boost);
	free(r->boost_items);
	free(r->pin_items);
	free(r->boost_deltas);
	free(r->pin_ranks);
	memset(r, 0, sizeof *r);
}

static void note_unknown(struct listrules_unknown *unknown, const char *key, const char *kind,
			 const char *name)
{
	if (unknown != NULL && unknown->key == NULL)
		*unknown = (struct listrules_unknown){.key = key, .kind = kind, .name = name};
}

int listrules_resolve(const struct listrules *rules, size_t k, size_t category_count,
		      listrules_find_fn find_item, listrules_find_fn find_category, void *opaque,
		      struct listrules_resolved *r, struct listrules_view *view,
		      struct listrules_unknown *unknown)
{
	size_t entries = rules->boost_count + rules->pin_count + 1;
	if (unknown != NULL)
		*unknown = (struct listrules_unknown){0};
	if (grow_scratch(&r->category_excluded, &r->excluded_capacity, category_count + 1,
			 sizeof *r->category_excluded) != 0 ||
	    grow_scratch(&r->category_boost, &r->boost_capacity, category_count + 1,
			 sizeof *r->category_boost) != 0 ||
	    grow_scratch(&r->boost_items, &r->boost_items_capacity, entries,
			 sizeof *r->boost_items) != 0 ||
	    grow_scratch(&r->boost_deltas, &r->boost_deltas_capacity, entries,
			 sizeof *r->boost_deltas) != 0 ||
	    grow_scratch(&r->pin_items, &r->pin_items_capacity, entries, sizeof *r->pin_items) !=
		0 ||
	    grow_scratch(&r->pin_ranks, &r->pin_ranks_capacity, entries, sizeof *r->pin_ranks) != 0)
		return -1;
	memset(r->category_excluded, 0, category_count * sizeof *r->category_excluded);
	memset(r->category_boost, 0, category_count * sizeof *r->category_boost);
	bool any_excluded = false, any_category_boost = false;
	for (size_t c = 0; c < rules->exclude_count; c++) {
		uint32_t index = find_category(rules->exclude_categories[c], opaque);
		if (index == LISTRULES_NO_CATEGORY || index >= category_count) {
			note_unknown(unknown, "exclude_categories", "category",
				     rules->exclude_categories[c]);
			continue;
		}
		r->category_excluded[index] = 1;
		any_excluded = true;
	}
	size_t boosted = 0;
	for (size_t b = 0; b < rules->boost_count; b++) {
		const struct listrules_boost *boost = &rules->boosts[b];
		uint32_t index = (boost->category ? find_category : find_item)(boost->name, opaque);
		if (index == LISTRULES_NO_ITEM || (boost->category && index >= category_count)) {
			note_unknown(unknown, "boost", boost->category ? "category" : "item",
				     boost->name);
			continue;
		}
		if (boost->category) {
			r->category_boost[index] = boost->delta;
			any_category_boost = true;
			continue;
		}
		size_t at = boosted++; /* kept sorted by item: the list is short */
		while (at > 0 && r->boost_items[at - 1] > index) {
			r->boost_items[at] = r->boost_items[at - 1];
			r->boost_deltas[at] = r->boost_deltas[at - 1];
			at--;
		}
		r->boost_items[at] = index;
		r->boost_deltas[at] = boost->delta;
	}
	for (size_t p = 0; p < rules->pin_count; p++) {
		r->pin_items[p] = find_item(rules->pins[p].item, opaque);
		r->pin_ranks[p] = rules->pins[p].rank - 1;
		if (r->pin_items[p] == LISTRULES_NO_ITEM)
			note_unknown(unknown, "pin", "item", rules->pins[p].item);
	}
	view->k = k;
	view->category_excluded = any_excluded ? r->category_excluded : NULL;
	view->category_boost = any_category_boost ? r->category_boost : NULL;
	view->category_count = category_count;
	view->boost_items = r->boost_items;
	view->boost_deltas = r->boost_deltas;
	view->boost_item_count = boosted;
	view->pin_items = r->pin_items;
	view->pin_ranks = r->pin_ranks;
	view->pin_count = rules->pin_count;
	view->max_per_category = rules->max_per_category;
	view->explore_slots = listrules_explore_slots(rules, k);
	return 0;
}

/* ---- applying ----------------------------------------------------------------------------- */

void listrules_scratch_free(struct listrules_scratch *s)
{
	free(s->ranked);
	free(s->boosted);
	free(s->order);
	free(s->categories);
	free(s->category_counts);
	memset(s, 0, sizeof *s);
}

static uint32_t category_of(const struct listrules_view *v, uint32_t item)
{
	return v->item_category != NULL && item < v->item_count ? v->item_category[item]
								: LISTRULES_NO_CATEGORY;
}

static bool category_excluded(const struct listrules_view *v, uint32_t category)
{
	return category != LISTRULES_NO_CATEGORY && v->category_excluded != NULL &&
	       category < v->category_count && v->category_excluded[category];
}

static float boost_of(const struct listrules_view *v, uint32_t item)
{
	float delta = 0;
	uint32_t category = category_of(v, item);
	if (category != LISTRULES_NO_CATEGORY && v->category_boost != NULL &&
	    category < v->category_count)
		delta += v->category_boost[category];
	size_t at = sorted_find(v->boost_items, v->boost_item_count, item);
	if (at != SIZE_MAX)
		delta += v->boost_deltas[at];
	return delta;
}

/* May item be shown at all: listable, not the user's exclusion, not an excluded category. */
static bool showable(const struct listrules_view *v, uint32_t item)
{
	if (item == LISTRULES_NO_ITEM)
		return false;
	if (v->eligible != NULL && (item >= v->eligible_count || !v->eligible[item]))
		return false;
	if (category_excluded(v, category_of(v, item)))
		return false;
	return v->user_excludes == NULL || !v->user_excludes(item, v->opaque);
}

/* The list being built: its slots, and how many of each category it holds. */
struct building {
	const struct listrules_view *v;
	struct listrules_scratch *s;
	struct topk_result *out;
	uint8_t *rule;
	size_t category_used;
};

static bool placed(const struct building *b, uint32_t item)
{
	for (size_t r = 0; r < b->v->k; r++)
		if (b->out[r].item == item)
			return true;
	return false;
}

static uint32_t *category_count(struct building *b, uint32_t category)
{
	for (size_t c = 0; c < b->category_used; c++)
		if (b->s->categories[c] == category)
			return &b->s->category_counts[c];
	return NULL;
}

static bool under_cap(struct building *b, uint32_t category)
{
	if (b->v->max_per_category == 0 || category == LISTRULES_NO_CATEGORY)
		return true;
	uint32_t *count = category_count(b, category);
	return count == NULL || *count < b->v->max_per_category;
}

/* Whether exploration may place item: showable, not placed, its category
 * under its cap, and still new. */
static bool explorable(const struct listrules_view *v, struct building *b, uint32_t item)
{
	return showable(v, item) && !placed(b, item) && under_cap(b, category_of(v, item)) &&
	       (v->still_new == NULL || v->still_new(item, v->opaque));
}

/* Exploration's independent draws for a slot before it walks the pool. */
#define EXPLORE_DRAWS 16

static void place(struct building *b, size_t rank, uint32_t item, float score, uint8_t rule)
{
	b->out[rank] = (struct topk_result){.item = item, .score = score};
	b->rule[rank] = rule;
	uint32_t category = category_of(b->v, item);
	if (category == LISTRULES_NO_CATEGORY)
		return;
	uint32_t *count = category_count(b, category);
	if (count != NULL) {
		++*count;
		return;
	}
	b->s->categories[b->category_used] = category; /* room for k: one per slot at most */
	b->s->category_counts[b->category_used++] = 1;
}

static float candidate_score(const struct topk_result *candidates, size_t count, uint32_t item)
{
	for (size_t c = 0; c < count; c++)
		if (candidates[c].item == item)
			return candidates[c].score;
	return 0;
}

/* The free rank nearest at or after `from`, else before it; k when the list is full. */
static size_t free_rank(const struct building *b, size_t from)
{
	size_t k = b->v->k;
	for (size_t r = from; r < k; r++)
		if (b->out[r].item == LISTRULES_NO_ITEM)
			return r;
	for (size_t r = from; r-- > 0;)
		if (b->out[r].item == LISTRULES_NO_ITEM)
			return r;
	return k;
}

/* Sorts order[] by boosted score, best first; equal scores keep their rank (stable). */
static void insertion_sort(uint32_t *order, size_t n, const struct topk_result *ranked)
{
	for (size_t i = 1; i < n; i++) {
		uint32_t key = order[i];
		size_t j = i;
		while (j > 0 && ranked[order[j - 1]].score < ranked[key].score) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = key;
	}
}

size_t listrules_apply(const struct listrules_view *v, const struct topk_result *candidates,
		       size_t candidate_count, uint64_t seed, struct listrules_scratch *s,
		       struct topk_result *out, uint8_t *rule)
{
	size_t k = v->k;
	if (grow_scratch(&s->ranked, &s->ranked_capacity, candidate_count + 1, sizeof *s->ranked) !=
		0 ||
	    grow_scratch(&s->boosted, &s->boosted_capacity, candidate_count + 1,
			 sizeof *s->boosted) != 0 ||
	    grow_scratch(&s->order, &s->order_capacity, candidate_count + 1, sizeof *s->order) !=
		0 ||
	    grow_scratch(&s->categories, &s->categories_capacity, k + 1, sizeof *s->categories) !=
		0 ||
	    grow_scratch(&s->category_counts, &s->counts_capacity, k + 1,
			 sizeof *s->category_counts) != 0)
		return (size_t)-1;
	struct building b = {.v = v, .s = s, .out = out, .rule = rule};
	for (size_t r = 0; r < k; r++) {
		out[r] = (struct topk_result){.item = LISTRULES_NO_ITEM, .score = 0};
		rule[r] = LISTRULES_RANKED;
	}

	/* 1. pins, at their ranks */
	for (size_t p = 0; p < v->pin_count; p++) {
		uint32_t item = v->pin_items[p];
		size_t rank = v->pin_ranks[p];
		if (rank >= k || out[rank].item != LISTRULES_NO_ITEM || !showable(v, item) ||
		    placed(&b, item))
			continue;
		place(&b, rank, item, candidate_score(candidates, candidate_count, item),
		      LISTRULES_PINNED);
	}

	/* 2. the candidates, boosted and ranked again */
	bool any_boost = false;
	for (size_t c = 0; c < candidate_count; c++) {
		float delta = boost_of(v, candidates[c].item);
		s->ranked[c] = candidates[c];
		s->ranked[c].score += delta;
		s->boosted[c] = delta != 0;
		s->order[c] = (uint32_t)c;
		any_boost |= delta != 0;
	}
	if (any_boost)
		insertion_sort(s->order, candidate_count, s->ranked);

	/* 3. exploration: uniform draws from the pool, at spread ranks */
	uint64_t rng = seed;
	size_t slots = v->explore_slots < k ? v->explore_slots : k;
	for (size_t j = 0; j < slots && v->explore_pool_count > 0; j++) {
		size_t rank = free_rank(&b, (j + 1) * k / (slots + 1));
		if (rank == k)
			break;
		/* uniform among the items that pass: independent draws until one
		 * passes, each passing item as likely; when all of a bounded number
		 * miss (few pass), the first passing item after a random start, so
		 * one is found if any passes (a walk from a random start alone
		 * favoured the item after a run of failing ones: a category
		 * excluded, a batch of new items that are not showable) */
		size_t pool = v->explore_pool_count;
		uint32_t chosen = LISTRULES_NO_ITEM;
		for (size_t t = 0; t < EXPLORE_DRAWS && chosen == LISTRULES_NO_ITEM; t++) {
			uint32_t item = v->explore_pool[rng_next(&rng) % pool];
			if (explorable(v, &b, item))
				chosen = item;
		}
		size_t start = (size_t)(rng_next(&rng) % pool);
		for (size_t t = 0; t < pool && chosen == LISTRULES_NO_ITEM; t++) {
			uint32_t item = v->explore_pool[(start + t) % pool];
			if (explorable(v, &b, item))
				chosen = item;
		}
		if (chosen != LISTRULES_NO_ITEM)
			place(&b, rank, chosen,
			      candidate_score(candidates, candidate_count, chosen),
			      LISTRULES_EXPLORE);
	}

	/* 4. the ranking fills the rest */
	size_t next = 0;
	for (size_t r = 0; r < k; r++) {
		if (out[r].item != LISTRULES_NO_ITEM)
			continue;
		while (next < candidate_count) {
			size_t c = s->order[next++];
			uint32_t item = s->ranked[c].item;
			if (placed(&b, item) || category_excluded(v, category_of(v, item)) ||
			    !under_cap(&b, category_of(v, item)) ||
			    (v->user_excludes != NULL && v->user_excludes(item, v->opaque)))
				continue;
			place(&b, r, item, s->ranked[c].score,
			      s->boosted[c] ? LISTRULES_BOOSTED : LISTRULES_RANKED);
			break;
		}
	}

	/* 5. empty ranks close up */
	size_t length = 0;
	for (size_t r = 0; r < k; r++)
		if (out[r].item != LISTRULES_NO_ITEM) {
			out[length] = out[r];
			rule[length++] = rule[r];
		}
	return length;
}
