#include "covis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RESCALE_ABOVE 1e20

/* One item's neighbours, unsorted. */
struct covis_list {
	uint32_t *item;
	float *weight; /* raw: divide by the table's scale */
	uint32_t count, capacity;
};

struct covis {
	size_t bound;
	double growth; /* per event: 2^(1/half_life), 1 without decay */
	double scale;  /* raw weight of one fresh count */
	size_t items, capacity;
	struct covis_list *list; /* per item */
	size_t longest;
};

struct covis *covis_new(size_t bound, double half_life_events)
{
	struct covis *c;
	if (bound == 0 || bound > COVIS_MAX_BOUND)
		return NULL;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->bound = bound;
	c->growth = half_life_events > 0 ? pow(2.0, 1.0 / half_life_events) : 1.0;
	c->scale = 1.0;
	return c;
}

void covis_free(struct covis *covis)
{
	if (covis == NULL)
		return;
	for (size_t i = 0; i < covis->items; i++) {
		free(covis->list[i].item);
		free(covis->list[i].weight);
	}
	free(covis->list);
	free(covis);
}

static void rescale(struct covis *c)
{
	float inverse = (float)(1.0 / c->scale);
	for (size_t i = 0; i < c->items; i++)
		for (size_t k = 0; k < c->list[i].count; k++)
			c->list[i].weight[k] *= inverse;
	c->scale = 1.0;
}

int covis_tick(struct covis *covis)
{
	if (covis->growth == 1.0)
		return 0;
	covis->scale *= covis->growth;
	if (covis->scale > RESCALE_ABOVE) {
		rescale(covis);
		return 1;
	}
	return 0;
}

void covis_set_scale(struct covis *covis, double scale)
{
	covis->scale = scale;
}

/* Makes room for item's list (items below it get empty lists). */
static int ensure_item(struct covis *c, uint32_t item)
{
	size_t need = (size_t)item + 1;
	if (need > c->capacity) {
		size_t cap = c->capacity ? c->capacity : 1024;
		while (cap < need)
			cap *= 2;
		struct covis_list *grown = realloc(c->list, cap * sizeof *grown);
		if (grown == NULL)
			return -1;
		memset(grown + c->capacity, 0, (cap - c->capacity) * sizeof *grown);
		c->list = grown;
		c->capacity = cap;
	}
	if (need > c->items)
		c->items = need;
	return 0;
}

/* Grows a list to hold at least need entries (at most the bound). */
static int ensure_room(struct covis *c, struct covis_list *l, size_t need)
{
	if (need <= l->capacity)
		return 0;
	size_t cap = l->capacity ? (size_t)l->capacity * 2 : 4;
	while (cap < need)
		cap *= 2;
	if (cap > c->bound)
		cap = c->bound;
	uint32_t *item = realloc(l->item, cap * sizeof *item);
	if (item == NULL)
		return -1;
	l->item = item;
	float *weight = realloc(l->weight, cap * sizeof *weight);
	if (weight == NULL)
		return -1;
	l->weight = weight;
	l->capacity = (uint32_t)cap;
	return 0;
}

/*
 * Where item sits in a list of n, or n. Blocks of 16 compared without a
 * branch (the compiler vectorises them), then the hit located in its block:
 * lists run to covis_neighbours (1024 by default) and every event searches
 * 2 x window of them, so a compare-and-branch scan was a tenth of learning.
 */
static size_t find_item(const uint32_t *items, size_t n, uint32_t item)
{
	size_t k = 0;
	for (; k + 16 <= n; k += 16) {
		unsigned hit = 0;
		for (size_t b = 0; b < 16; b++)
			hit |= items[k + b] == item;
		if (hit)
			break;
	}
	for (; k < n; k++)
		if (items[k] == item)
			return k;
	return n;
}

/* The first place of the smallest weight in a full list (the one replaced). */
static size_t weakest_of(const float *weight, size_t n)
{
	/* 16 running minima side by side (so it vectorises), then the least of them */
	float lane[16], least = weight[0];
	size_t k = 0;
	for (size_t b = 0; b < 16; b++)
		lane[b] = least;
	for (; k + 16 <= n; k += 16)
		for (size_t b = 0; b < 16; b++)
			lane[b] = weight[k + b] < lane[b] ? weight[k + b] : lane[b];
	for (; k < n; k++)
		least = weight[k] < least ? weight[k] : least;
	for (size_t b = 0; b < 16; b++)
		least = lane[b] < least ? lane[b] : least;
	for (k = 0; k + 16 <= n; k += 16) {
		unsigned hit = 0;
		for (size_t b = 0; b < 16; b++)
			hit |= weight[k + b] == least;
		if (hit)
			break;
	}
	for (; k < n; k++)
		if (weight[k] == least)
			return k;
	return 0; /* NaNs only: the first, as a plain scan would */
}

int covis_add(struct covis *covis, uint32_t from, uint32_t to, float amount)
{
	struct covis *c = covis;
	float raw = (float)(c->scale * amount);
	if (ensure_item(c, from) != 0)
		return -1;
	struct covis_list *l = &c->list[from];
	size_t at = find_item(l->item, l->count, to);
	if (at < l->count) {
		l->weight[at] += raw;
		return 0;
	}
	if (l->count < c->bound) {
		if (ensure_room(c, l, (size_t)l->count + 1) != 0)
			return -1;
		l->item[l->count] = to;
		l->weight[l->count] = raw;
		l->count++;
		if (l->count > c->longest)
			c->longest = l->count;
		return 0;
	}
	size_t weakest = weakest_of(l->weight, l->count);
	l->item[weakest] = to;
	l->weight[weakest] = raw;
	return 0;
}

void covis_prefetch(const struct covis *covis, uint32_t item, bool entries)
{
	if ((size_t)item >= covis->items)
		return;
	const struct covis_list *l = &covis->list[item];
	if (!entries) {
		__builtin_prefetch(l);
		return;
	}
	if (l->count > 0) {
		__builtin_prefetch(l->item);
		__builtin_prefetch(l->weight);
		__builtin_prefetch(l->item + l->count - 1);
		__builtin_prefetch(l->weight + l->count - 1);
	}
}

size_t covis_successors(const struct covis *covis, uint32_t item, const uint32_t **items,
			const float **raw_weights)
{
	if ((size_t)item >= covis->items) {
		*items = NULL;
		*raw_weights = NULL;
		return 0;
	}
	*items = covis->list[item].item;
	*raw_weights = covis->list[item].weight;
	return covis->list[item].count;
}

double covis_scale(const struct covis *covis)
{
	return covis->scale;
}

size_t covis_longest(const struct covis *covis)
{
	return covis->longest;
}

int covis_restore(struct covis *covis, uint32_t item, const uint32_t *items,
		  const float *raw_weights, size_t count)
{
	struct covis *c = covis;
	if (count > c->bound)
		return -1;
	if (ensure_item(c, item) != 0)
		return -1;
	struct covis_list *l = &c->list[item];
	if (ensure_room(c, l, count) != 0)
		return -1;
	if (count > 0) {
		memcpy(l->item, items, count * sizeof *items);
		memcpy(l->weight, raw_weights, count * sizeof *raw_weights);
	}
	l->count = (uint32_t)count;
	if (l->count > c->longest)
		c->longest = l->count;
	return 0;
}

void covis_forget(struct covis *covis, const uint8_t *gone, size_t gone_count,
		  void (*changed)(uint32_t item, void *ctx), void *ctx)
{
	for (size_t i = 0; i < covis->items; i++) {
		struct covis_list *l = &covis->list[i];
		if (i < gone_count && gone[i]) {
			free(l->item);
			free(l->weight);
			*l = (struct covis_list){0};
			continue;
		}
		uint32_t kept = 0;
		for (uint32_t k = 0; k < l->count; k++) {
			uint32_t to = l->item[k];
			if ((size_t)to < gone_count && gone[to])
				continue;
			l->item[kept] = to;
			l->weight[kept] = l->weight[k];
			kept++;
		}
		if (kept != l->count) {
			l->count = kept;
			if (changed != NULL)
				changed((uint32_t)i, ctx);
		}
	}
}
