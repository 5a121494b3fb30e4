#include "popularity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sorted.h"

#define RESCALE_ABOVE 1e200

/*
 * The trending list is kept, not scanned for: the POPULARITY_HOT_ITEMS best
 * items by trend (see popularity.h), best first. A trend value only grows
 * (popularity_add() adds a positive increment; a rescale multiplies every
 * value by one factor and rebuilds the list), so an item can only enter the
 * list when it is counted, and the list stays the exact head of the order
 * the scan would produce.
 */

struct popularity {
	double half_life_ms;
	size_t items, capacity;
	uint64_t *count;  /* per item */
	uint32_t *order;  /* items by count, highest first; only items counted at least once */
	uint32_t *rank;   /* per item: index in order */
	size_t ranked;    /* items in order */
	double *trend;    /* per item: decayed count times 2^((epoch - ts)/half_life) */
	int64_t epoch_ms; /* reference time of the trend values */
	int epoch_set;
	uint32_t last_moved;
	int rescaled;
	uint32_t hot[POPULARITY_HOT_ITEMS]; /* the best items by trend, best first */
	size_t hot_count;
	uint8_t *is_hot; /* per item: in hot[] */
	int hot_valid;   /* 0 after a restore until popularity_set_globals() */
};

struct popularity *popularity_new(double trending_half_life_ms)
{
	struct popularity *p = calloc(1, sizeof *p);
	if (p != NULL) {
		p->half_life_ms = trending_half_life_ms > 0 ? trending_half_life_ms : 3600e3;
		p->hot_valid = 1; /* no item counted: the empty list is complete */
	}
	return p;
}

void popularity_free(struct popularity *popularity)
{
	if (popularity == NULL)
		return;
	free(popularity->count);
	free(popularity->order);
	free(popularity->rank);
	free(popularity->trend);
	free(popularity->is_hot);
	free(popularity);
}

static int grow(struct popularity *p, size_t need)
{
	size_t cap = p->capacity ? p->capacity : 1024;
	while (cap < need)
		cap *= 2;
	uint64_t *c = realloc(p->count, cap * sizeof *c);
	if (c == NULL)
		return -1;
	p->count = c;
	uint32_t *o = realloc(p->order, cap * sizeof *o);
	if (o == NULL)
		return -1;
	p->order = o;
	uint32_t *r = realloc(p->rank, cap * sizeof *r);
	if (r == NULL)
		return -1;
	p->rank = r;
	double *t = realloc(p->trend, cap * sizeof *t);
	if (t == NULL)
		return -1;
	p->trend = t;
	uint8_t *h = realloc(p->is_hot, cap * sizeof *h);
	if (h == NULL)
		return -1;
	p->is_hot = h;
	memset(p->count + p->capacity, 0, (cap - p->capacity) * sizeof *c);
	memset(p->trend + p->capacity, 0, (cap - p->capacity) * sizeof *t);
	memset(p->is_hot + p->capacity, 0, (cap - p->capacity) * sizeof *h);
	p->capacity = cap;
	return 0;
}

/* First rank whose item has exactly `count` (order is non-increasing in count). */
static size_t first_rank_with(const struct popularity *p, size_t upto, uint64_t count)
{
	size_t lo = 0, hi = upto;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->count[p->order[mid]] > count)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int popularity_sorted_contains(const uint32_t *sorted, size_t count, uint32_t item)
{
	return sorted_find(sorted, count, item) != SIZE_MAX;
}

static int skipped(uint32_t item, const uint32_t *exclude, size_t exclude_count,
		   const uint8_t *eligible)
{
	return (eligible != NULL && !eligible[item]) ||
	       popularity_sorted_contains(exclude, exclude_count, item);
}

/* Is (ta, a) better than (tb, b)? Higher trend, then lower index. */
static int better(double ta, uint32_t a, double tb, uint32_t b)
{
	return ta > tb || (ta == tb && a < b);
}

/* The trending list by a scan of every item: a bounded min-heap, then best first. */
static size_t scan_trending(const struct popularity *popularity, size_t k, const uint32_t *exclude,
			    size_t exclude_count, const uint8_t *eligible, uint32_t *out)
{
	const struct popularity *p = popularity;
	size_t n = 0;
	if (k == 0)
		return 0;
	/* out[0..n) kept as a min-heap of the best k seen, worst at the root */
	for (size_t i = 0; i < p->items; i++) {
		uint32_t item = (uint32_t)i;
		if (p->trend[i] <= 0 || skipped(item, exclude, exclude_count, eligible))
			continue;
		if (n == k && !better(p->trend[i], item, p->trend[out[0]], out[0]))
			continue;
		size_t pos;
		if (n < k) {
			pos = n++;
			while (pos > 0) {
				size_t parent = (pos - 1) / 2;
				if (!better(p->trend[out[parent]], out[parent], p->trend[i], item))
					break;
				out[pos] = out[parent];
				pos = parent;
			}
		} else {
			pos = 0;
			for (;;) {
				size_t child = 2 * pos + 1;
				if (child >= n)
					break;
				if (child + 1 < n &&
				    better(p->trend[out[child]], out[child],
					   p->trend[out[child + 1]], out[child + 1]))
					child++;
				if (!better(p->trend[i], item, p->trend[out[child]], out[child]))
					break;
				out[pos] = out[child];
				pos = child;
			}
		}
		out[pos] = item;
	}
	/* heap to best-first order: repeatedly move the worst to the end */
	for (size_t end = n; end > 1; end--) {
		uint32_t worst = out[0], last = out[end - 1];
		size_t pos = 0, size = end - 1;
		for (;;) {
			size_t child = 2 * pos + 1;
			if (child >= size)
				break;
			if (child + 1 < size && better(p->trend[out[child]], out[child],
						       p->trend[out[child + 1]], out[child + 1]))
				child++;
			if (!better(p->trend[last], last, p->trend[out[child]], out[child]))
				break;
			out[pos] = out[child];
			pos = child;
		}
		out[pos] = last;
		out[end - 1] = worst;
	}
	return n;
}

/* Where (trend, item) goes in hot[]: the first entry not better than it. */
static size_t hot_position(const struct popularity *p, double trend, uint32_t item)
{
	size_t lo = 0, hi = p->hot_count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (better(p->trend[p->hot[mid]], p->hot[mid], trend, item))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Builds hot[] again from every item's trend (after a rescale or a restore). */
static void hot_rebuild(struct popularity *p)
{
	for (size_t r = 0; r < p->hot_count; r++)
		p->is_hot[p->hot[r]] = 0;
	p->hot_count = scan_trending(p, POPULARITY_HOT_ITEMS, NULL, 0, NULL, p->hot);
	for (size_t r = 0; r < p->hot_count; r++)
		p->is_hot[p->hot[r]] = 1;
	p->hot_valid = 1;
}

/* Item's trend just grew; it sat at hot[at] before (at = SIZE_MAX: not in
 * hot[]). Moves it forward, or admits it in place of the worst entry. */
static void hot_raise(struct popularity *p, uint32_t item, size_t at)
{
	double trend = p->trend[item];

	if (!(trend > 0))
		return;
	if (at != SIZE_MAX) {
		while (at > 0 && better(trend, item, p->trend[p->hot[at - 1]], p->hot[at - 1])) {
			p->hot[at] = p->hot[at - 1];
			at--;
		}
		p->hot[at] = item;
		return;
	}
	if (p->hot_count == POPULARITY_HOT_ITEMS) {
		uint32_t worst = p->hot[p->hot_count - 1];
		if (!better(trend, item, p->trend[worst], worst))
			return;
		p->is_hot[worst] = 0;
		p->hot_count--;
	}
	at = hot_position(p, trend, item);
	memmove(&p->hot[at + 1], &p->hot[at], (p->hot_count - at) * sizeof p->hot[0]);
	p->hot[at] = item;
	p->hot_count++;
	p->is_hot[item] = 1;
}

int popularity_add(struct popularity *popularity, uint32_t item, int64_t ts_ms)
{
	struct popularity *p = popularity;
	p->last_moved = UINT32_MAX;
	p->rescaled = 0;
	if ((size_t)item >= p->capacity && grow(p, (size_t)item + 1) != 0)
		return -1;
	if ((size_t)item >= p->items)
		p->items = (size_t)item + 1;
	if (p->count[item] == 0) {
		p->order[p->ranked] = item;
		p->rank[item] = (uint32_t)p->ranked++;
	}
	/* Swap to the front of its equal-count block, then count: order stays sorted. */
	size_t r = p->rank[item], front = first_rank_with(p, r, p->count[item]);
	if (front != r) {
		uint32_t other = p->order[front];
		p->order[front] = item;
		p->order[r] = other;
		p->rank[item] = (uint32_t)front;
		p->rank[other] = (uint32_t)r;
		p->last_moved = other;
	}
	p->count[item]++;

	if (!p->epoch_set) {
		p->epoch_ms = ts_ms;
		p->epoch_set = 1;
	}
	double increment = exp2((double)(ts_ms - p->epoch_ms) / p->half_life_ms);
	if (!isfinite(increment) || increment > RESCALE_ABOVE) {
		/* move the epoch to now: every stored value shrinks by the same factor */
		double shrink = exp2((double)(p->epoch_ms - ts_ms) / p->half_life_ms);
		for (size_t i = 0; i < p->items; i++)
			p->trend[i] *= shrink;
		p->epoch_ms = ts_ms;
		increment = 1.0;
		p->rescaled = 1;
	}
	/* find the item in hot[] by its old trend, before it changes */
	size_t hot_at = SIZE_MAX;
	if (!p->rescaled && p->hot_valid && p->is_hot[item]) {
		hot_at = hot_position(p, p->trend[item], item);
	}
	p->trend[item] += increment;
	if (p->rescaled)
		hot_rebuild(p);
	else if (p->hot_valid)
		hot_raise(p, item, hot_at);
	return 0;
}

double popularity_trend(const struct popularity *popularity, uint32_t item)
{
	return (size_t)item < popularity->items ? popularity->trend[item] : 0;
}

uint64_t popularity_count(const struct popularity *popularity, uint32_t item)
{
	return (size_t)item < popularity->items ? popularity->count[item] : 0;
}

size_t popularity_top(const struct popularity *popularity, size_t k, const uint32_t *exclude,
		      size_t exclude_count, const uint8_t *eligible, uint32_t *out)
{
	size_t n = 0;
	for (size_t r = 0; r < popularity->ranked && n < k; r++) {
		uint32_t item = popularity->order[r];
		if (!skipped(item, exclude, exclude_count, eligible))
			out[n++] = item;
	}
	return n;
}

size_t popularity_trending(const struct popularity *popularity, size_t k, const uint32_t *exclude,
			   size_t exclude_count, const uint8_t *eligible, uint32_t *out)
{
	const struct popularity *p = popularity;
	size_t n = 0;

	if (k == 0)
		return 0;
	if (p->hot_valid) {
		for (size_t r = 0; r < p->hot_count && n < k; r++)
			if (!skipped(p->hot[r], exclude, exclude_count, eligible))
				out[n++] = p->hot[r];
		/* complete: k found, or hot[] holds every item with a trend */
		if (n == k || p->hot_count < POPULARITY_HOT_ITEMS)
			return n;
	}
	return scan_trending(p, k, exclude, exclude_count, eligible, out);
}

uint32_t popularity_last_moved(const struct popularity *popularity)
{
	return popularity->last_moved;
}

int popularity_rescaled(const struct popularity *popularity)
{
	return popularity->rescaled;
}

struct popularity_item popularity_item_state(const struct popularity *popularity, uint32_t item)
{
	struct popularity_item state = {0, 0, 0};
	if ((size_t)item < popularity->items) {
		state.count = popularity->count[item];
		state.rank = state.count > 0 ? popularity->rank[item] : 0;
		state.trend = popularity->trend[item];
	}
	return state;
}

void popularity_prefetch(const struct popularity *popularity, uint32_t item)
{
	if ((size_t)item < popularity->items) {
		__builtin_prefetch(&popularity->count[item]);
		__builtin_prefetch(&popularity->rank[item]);
		__builtin_prefetch(&popularity->trend[item]);
	}
}

void popularity_get_globals(const struct popularity *popularity, struct popularity_globals *g)
{
	g->ranked = popularity->ranked;
	g->epoch_ms = popularity->epoch_ms;
	g->epoch_set = popularity->epoch_set;
}

int popularity_restore_item(struct popularity *popularity, uint32_t item,
			    const struct popularity_item *state)
{
	struct popularity *p = popularity;
	size_t need = (size_t)item + 1;
	if (state->count > 0 && (size_t)state->rank + 1 > need)
		need = (size_t)state->rank + 1; /* rows arrive in item order, ranks in any */
	if (need > p->capacity && grow(p, need) != 0)
		return -1;
	if ((size_t)item >= p->items)
		p->items = (size_t)item + 1;
	p->count[item] = state->count;
	p->trend[item] = state->trend;
	p->hot_valid = 0; /* popularity_set_globals() builds hot[] again */
	if (state->count > 0) {
		p->rank[item] = state->rank;
		p->order[state->rank] = item;
	}
	return 0;
}

int popularity_set_globals(struct popularity *popularity, const struct popularity_globals *g)
{
	struct popularity *p = popularity;
	size_t counted = 0;
	for (size_t i = 0; i < p->items; i++)
		counted += p->count[i] > 0;
	if (g->ranked != counted)
		return -1;
	for (size_t r = 0; r < counted; r++)
		if (p->order[r] >= p->items || p->rank[p->order[r]] != r)
			return -1;
	p->ranked = (size_t)g->ranked;
	p->epoch_ms = g->epoch_ms;
	p->epoch_set = g->epoch_set;
	hot_rebuild(p);
	return 0;
}

void popularity_forget(struct popularity *popularity, const uint8_t *gone, size_t gone_count,
		       void (*moved)(uint32_t item, void *ctx), void *ctx)
{
	struct popularity *p = popularity;
	size_t kept = 0;
	for (size_t r = 0; r < p->ranked; r++) {
		uint32_t item = p->order[r];
		if ((size_t)item < gone_count && gone[item])
			continue;
		if (r != kept) {
			p->order[kept] = item;
			p->rank[item] = (uint32_t)kept;
			if (moved != NULL)
				moved(item, ctx);
		}
		kept++;
	}
	p->ranked = kept;
	for (size_t i = 0; i < gone_count && i < p->items; i++)
		if (gone[i]) {
			p->count[i] = 0;
			p->trend[i] = 0;
		}
	p->last_moved = UINT32_MAX;
	if (p->hot_valid)
		hot_rebuild(p);
}
