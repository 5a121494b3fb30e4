#include "sampler.h"

#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS     64
#define RESUM_EVERY (1u << 20) /* updates between exact recomputations of totals */

/* An item in its bucket with its weight beside it: a draw's rejection test
 * reads both at one place (a second random read, of the item's weight
 * elsewhere, was 4% of the event loop at 1M items). */
struct entry {
	double weight;
	uint32_t item;
};

struct bucket {
	struct entry *entries;
	size_t count, capacity;
	double total;
};

#define POW_TABLE 4096 /* counts below this take their weight from a table */

struct sampler {
	double alpha;
	double pow_table[POW_TABLE];
	int top_bucket;     /* highest bucket ever used */
	int8_t *bucket_of;  /* per item, -1: not in any bucket */
	uint32_t *position; /* per item: index in its bucket */
	size_t items, capacity;
	struct bucket buckets[BUCKETS];
	double total;
	uint32_t updates_since_resum;
	uint32_t last_moved;
};

uint64_t sampler_random(uint64_t *state)
{
	return rng_next(state);
}

double sampler_unit(uint64_t *state)
{
	return (double)(sampler_random(state) >> 11) * (1.0 / 9007199254740992.0);
}

struct sampler *sampler_new(double alpha)
{
	struct sampler *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->alpha = alpha;
	for (int c = 1; c < POW_TABLE; c++)
		s->pow_table[c] = pow((double)c, alpha);
	return s;
}

void sampler_free(struct sampler *sampler)
{
	if (sampler == NULL)
		return;
	for (int b = 0; b < BUCKETS; b++)
		free(sampler->buckets[b].entries);
	free(sampler->bucket_of);
	free(sampler->position);
	free(sampler);
}

static int grow_items(struct sampler *s, size_t need)
{
	size_t cap = s->capacity ? s->capacity : 1024;
	while (cap < need)
		cap *= 2;
	int8_t *b = realloc(s->bucket_of, cap * sizeof *b);
	if (b == NULL)
		return -1;
	s->bucket_of = b;
	uint32_t *p = realloc(s->position, cap * sizeof *p);
	if (p == NULL)
		return -1;
	s->position = p;
	for (size_t i = s->capacity; i < cap; i++)
		s->bucket_of[i] = -1;
	s->capacity = cap;
	return 0;
}

static void bucket_remove(struct sampler *s, uint32_t item)
{
	struct bucket *bk = &s->buckets[s->bucket_of[item]];
	uint32_t pos = s->position[item];
	struct entry last_entry = bk->entries[--bk->count];
	uint32_t last = last_entry.item;
	bk->entries[pos] = last_entry;
	s->position[last] = pos;
	s->bucket_of[item] = -1;
	if (last != item)
		s->last_moved = last;
}

static int grow_bucket(struct bucket *bk, size_t need)
{
	size_t cap = bk->capacity ? bk->capacity : 64;
	while (cap < need)
		cap *= 2;
	if (cap == bk->capacity)
		return 0;
	struct entry *entries = realloc(bk->entries, cap * sizeof *entries);
	if (entries == NULL)
		return -1;
	bk->entries = entries;
	bk->capacity = cap;
	return 0;
}

/* Adds item, of weight w, to bucket b. */
static int bucket_add(struct sampler *s, uint32_t item, int b, double w)
{
	struct bucket *bk = &s->buckets[b];
	if (grow_bucket(bk, bk->count + 1) != 0)
		return -1;
	s->position[item] = (uint32_t)bk->count;
	bk->entries[bk->count++] = (struct entry){.weight = w, .item = item};
	s->bucket_of[item] = (int8_t)b;
	return 0;
}

static void resum(struct sampler *s)
{
	s->total = 0;
	for (int b = 0; b < BUCKETS; b++) {
		double t = 0;
		for (size_t k = 0; k < s->buckets[b].count; k++)
			t += s->buckets[b].entries[k].weight;
		s->buckets[b].total = t;
		s->total += t;
	}
	s->updates_since_resum = 0;
}

static double weight_of(const struct sampler *s, uint64_t count)
{
	return count < POW_TABLE ? s->pow_table[count] : pow((double)count, s->alpha);
}

int sampler_set_count(struct sampler *sampler, uint32_t item, uint64_t count)
{
	struct sampler *s = sampler;
	double w = weight_of(s, count);
	int b;
	s->last_moved = UINT32_MAX;
	if ((size_t)item >= s->capacity && grow_items(s, (size_t)item + 1) != 0)
		return -1;
	if ((size_t)item >= s->items)
		s->items = (size_t)item + 1;
	b = w > 0 ? ilogb(w) : -1;
	if (b >= BUCKETS)
		b = BUCKETS - 1;
	if (s->bucket_of[item] >= 0) {
		/* an item's weight is kept only in its bucket's entry */
		struct bucket *old = &s->buckets[s->bucket_of[item]];
		double was = old->entries[s->position[item]].weight;
		old->total -= was;
		s->total -= was;
		if (s->bucket_of[item] != b)
			bucket_remove(s, item);
	}
	if (b >= 0 && s->bucket_of[item] == b)
		s->buckets[b].entries[s->position[item]].weight = w;
	else if (b >= 0 && bucket_add(s, item, b, w) != 0)
		return -1;
	if (b > s->top_bucket)
		s->top_bucket = b;
	if (b >= 0) {
		s->buckets[b].total += w;
		s->total += w;
	}
	if (++s->updates_since_resum >= RESUM_EVERY)
		resum(s);
	return 0;
}

double sampler_total(const struct sampler *sampler)
{
	return sampler->total > 0 ? sampler->total : 0;
}

uint32_t sampler_draw(struct sampler *sampler, uint64_t *random_state)
{
	struct sampler *s = sampler;
	double u;
	int b, last = -1;
	if (s->total <= 0)
		return UINT32_MAX;
	/* A bucket in proportion to its total weight ... */
	u = sampler_unit(random_state) * s->total;
	for (b = 0; b <= s->top_bucket; b++) {
		if (s->buckets[b].count == 0)
			continue;
		last = b;
		if (u < s->buckets[b].total)
			break;
		u -= s->buckets[b].total;
	}
	if (b > s->top_bucket)
		b = last; /* rounding left u past the end */
	if (b < 0)
		return UINT32_MAX;
	/* ... then an item of it in proportion to its weight, by rejection
	 * within the bucket (retrying the bucket choice would bias it). */
	struct bucket *bk = &s->buckets[b];
	double ceiling = ldexp(1.0, b + 1);
	for (;;) {
		/* multiply-shift maps 32 random bits onto [0, count) without a division */
		uint64_t r = sampler_random(random_state);
		const struct entry *e = &bk->entries[((r >> 32) * (uint64_t)bk->count) >> 32];
		if (sampler_unit(random_state) * ceiling < e->weight)
			return e->item;
	}
}

uint32_t sampler_last_moved(const struct sampler *sampler)
{
	return sampler->last_moved;
}

struct sampler_place sampler_item_place(const struct sampler *sampler, uint32_t item)
{
	struct sampler_place place = {-1, 0};
	if ((size_t)item < sampler->items && sampler->bucket_of[item] >= 0) {
		place.bucket = sampler->bucket_of[item];
		place.position = sampler->position[item];
	}
	return place;
}

void sampler_prefetch(const struct sampler *sampler, uint32_t item)
{
	if ((size_t)item < sampler->items) {
		__builtin_prefetch(&sampler->bucket_of[item]);
		__builtin_prefetch(&sampler->position[item]);
	}
}

void sampler_get_globals(const struct sampler *sampler, struct sampler_globals *globals)
{
	memset(globals, 0, sizeof *globals);
	globals->total = sampler->total;
	for (int b = 0; b < BUCKETS; b++) {
		globals->bucket_total[b] = sampler->buckets[b].total;
		globals->bucket_count[b] = (uint32_t)sampler->buckets[b].count;
	}
	globals->updates_since_resum = sampler->updates_since_resum;
	globals->top_bucket = sampler->top_bucket;
}

int sampler_restore_item(struct sampler *sampler, uint32_t item, uint64_t count,
			 struct sampler_place place)
{
	struct sampler *s = sampler;
	if ((size_t)item >= s->capacity && grow_items(s, (size_t)item + 1) != 0)
		return -1;
	if ((size_t)item >= s->items)
		s->items = (size_t)item + 1;
	s->bucket_of[item] = -1;
	if (place.bucket < 0)
		return 0;
	if (place.bucket >= BUCKETS || place.position > (1u << 31))
		return -1;
	struct bucket *bk = &s->buckets[place.bucket];
	if (grow_bucket(bk, (size_t)place.position + 1) != 0)
		return -1;
	bk->entries[place.position] = (struct entry){.weight = weight_of(s, count), .item = item};
	s->bucket_of[item] = (int8_t)place.bucket;
	s->position[item] = place.position;
	return 0;
}

int sampler_set_globals(struct sampler *sampler, const struct sampler_globals *globals)
{
	for (int b = 0; b < BUCKETS; b++) {
		if (globals->bucket_count[b] > sampler->buckets[b].capacity)
			return -1;
		sampler->buckets[b].count = globals->bucket_count[b];
		sampler->buckets[b].total = globals->bucket_total[b];
	}
	sampler->total = globals->total;
	sampler->updates_since_resum = globals->updates_since_resum;
	sampler->top_bucket = globals->top_bucket;
	return 0;
}
