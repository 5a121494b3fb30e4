#include "covis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RESCALE_ABOVE 1e20

struct covis {
	size_t neighbours;
	double growth; /* per event: 2^(1/half_life) */
	double scale;  /* raw weight of one fresh count */
	size_t items, capacity;
	uint32_t *successor; /* items x neighbours */
	float *weight;       /* items x neighbours, raw */
	uint16_t *count;     /* per item: used slots */
};

struct covis *covis_new(size_t neighbours, double half_life_events)
{
	struct covis *c;
	if (neighbours == 0 || neighbours > UINT16_MAX)
		return NULL;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->neighbours = neighbours;
	c->growth = half_life_events > 0 ? pow(2.0, 1.0 / half_life_events) : 1.0;
	c->scale = 1.0;
	return c;
}

void covis_free(struct covis *covis)
{
	if (covis == NULL)
		return;
	free(covis->successor);
	free(covis->weight);
	free(covis->count);
	free(covis);
}

static void rescale(struct covis *c)
{
	float inverse = (float)(1.0 / c->scale);
	for (size_t i = 0; i < c->items; i++)
		for (size_t k = 0; k < c->count[i]; k++)
			c->weight[i * c->neighbours + k] *= inverse;
	c->scale = 1.0;
}

int covis_tick(struct covis *covis)
{
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

static int grow(struct covis *c, size_t need)
{
	size_t cap = c->capacity ? c->capacity : 1024;
	while (cap < need)
		cap *= 2;
	uint32_t *s = realloc(c->successor, cap * c->neighbours * sizeof *s);
	if (s == NULL)
		return -1;
	c->successor = s;
	float *w = realloc(c->weight, cap * c->neighbours * sizeof *w);
	if (w == NULL)
		return -1;
	c->weight = w;
	uint16_t *n = realloc(c->count, cap * sizeof *n);
	if (n == NULL)
		return -1;
	c->count = n;
	memset(c->count + c->capacity, 0, (cap - c->capacity) * sizeof *n);
	c->capacity = cap;
	return 0;
}

int covis_add(struct covis *covis, uint32_t from, uint32_t to)
{
	struct covis *c = covis;
	size_t weakest = 0;
	if ((size_t)from >= c->capacity && grow(c, (size_t)from + 1) != 0)
		return -1;
	if ((size_t)from >= c->items)
		c->items = (size_t)from + 1;
	uint32_t *succ = c->successor + (size_t)from * c->neighbours;
	float *w = c->weight + (size_t)from * c->neighbours;
	size_t n = c->count[from];
	for (size_t k = 0; k < n; k++) {
		if (succ[k] == to) {
			w[k] += (float)c->scale;
			return 0;
		}
		if (w[k] < w[weakest])
			weakest = k;
	}
	if (n < c->neighbours) {
		succ[n] = to;
		w[n] = (float)c->scale;
		c->count[from] = (uint16_t)(n + 1);
		return 0;
	}
	succ[weakest] = to;
	w[weakest] = (float)c->scale;
	return 0;
}

size_t covis_successors(const struct covis *covis, uint32_t item, const uint32_t **items,
			const float **raw_weights)
{
	if ((size_t)item >= covis->items) {
		*items = NULL;
		*raw_weights = NULL;
		return 0;
	}
	*items = covis->successor + (size_t)item * covis->neighbours;
	*raw_weights = covis->weight + (size_t)item * covis->neighbours;
	return covis->count[item];
}

double covis_scale(const struct covis *covis)
{
	return covis->scale;
}

int covis_restore(struct covis *covis, uint32_t item, const uint32_t *items,
		  const float *raw_weights, size_t count)
{
	struct covis *c = covis;
	if (count > c->neighbours)
		return -1;
	if ((size_t)item >= c->capacity && grow(c, (size_t)item + 1) != 0)
		return -1;
	if ((size_t)item >= c->items)
		c->items = (size_t)item + 1;
	memcpy(c->successor + (size_t)item * c->neighbours, items, count * sizeof *items);
	memcpy(c->weight + (size_t)item * c->neighbours, raw_weights, count * sizeof *raw_weights);
	c->count[item] = (uint16_t)count;
	return 0;
}
