/*
 * sketch: count-min with conservative update and periodic halving.
 */
#include "sketch.h"

#include <stdlib.h>
#include <string.h>

struct sketch {
	uint8_t counters[SKETCH_DEPTH][SKETCH_WIDTH];
	uint64_t adds; /* since the last halving */
};

struct sketch *sketch_new(void)
{
	return calloc(1, sizeof(struct sketch));
}

void sketch_free(struct sketch *sketch)
{
	free(sketch);
}

/* Row r's column of hash: 16 bits of the hash, remixed per row. */
static size_t column(uint64_t hash, size_t row)
{
	uint64_t h = hash ^ (0x9e3779b97f4a7c15u * (row + 1));
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	return (size_t)(h & (SKETCH_WIDTH - 1));
}

unsigned sketch_estimate(const struct sketch *sketch, uint64_t hash)
{
	unsigned least = 255;
	for (size_t r = 0; r < SKETCH_DEPTH; r++) {
		unsigned c = sketch->counters[r][column(hash, r)];
		if (c < least)
			least = c;
	}
	return least;
}

unsigned sketch_add(struct sketch *sketch, uint64_t hash)
{
	unsigned estimate = sketch_estimate(sketch, hash);
	if (estimate < 255) {
		estimate++;
		/* conservative update: raise only the counters below the new estimate */
		for (size_t r = 0; r < SKETCH_DEPTH; r++) {
			uint8_t *c = &sketch->counters[r][column(hash, r)];
			if (*c < estimate)
				*c = (uint8_t)estimate;
		}
	}
	if (++sketch->adds >= SKETCH_AGING_ADDS) {
		for (size_t r = 0; r < SKETCH_DEPTH; r++)
			for (size_t w = 0; w < SKETCH_WIDTH; w++)
				sketch->counters[r][w] >>= 1;
		sketch->adds = 0;
	}
	return estimate;
}

size_t sketch_export_bytes(void)
{
	return 8 + SKETCH_DEPTH * SKETCH_WIDTH;
}

void sketch_export(const struct sketch *sketch, void *buf)
{
	unsigned char *b = buf;
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(sketch->adds >> (56 - 8 * i));
	memcpy(b + 8, sketch->counters, SKETCH_DEPTH * SKETCH_WIDTH);
}

int sketch_import(struct sketch *sketch, const void *buf, size_t len)
{
	const unsigned char *b = buf;
	if (len != sketch_export_bytes())
		return -1;
	sketch->adds = 0;
	for (int i = 0; i < 8; i++)
		sketch->adds = sketch->adds << 8 | b[i];
	memcpy(sketch->counters, b + 8, SKETCH_DEPTH * SKETCH_WIDTH);
	return 0;
}
