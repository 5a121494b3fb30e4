#include "radix.h"

#include <string.h>

#define DIGIT_BITS 11
#define DIGITS     (1u << DIGIT_BITS)

static void insertion_sort(uint32_t *keys, size_t count)
{
	for (size_t i = 1; i < count; i++) {
		uint32_t key = keys[i];
		size_t j = i;
		for (; j > 0 && keys[j - 1] > key; j--)
			keys[j] = keys[j - 1];
		keys[j] = key;
	}
}

void radix_sort_u32(uint32_t *keys, size_t count, uint32_t *scratch)
{
	uint32_t largest = 0, *from = keys, *to = scratch;
	size_t counts[DIGITS];

	if (count < RADIX_SMALL) {
		insertion_sort(keys, count);
		return;
	}
	for (size_t i = 0; i < count; i++)
		largest |= keys[i];
	for (unsigned shift = 0; shift < 32 && (largest >> shift) != 0; shift += DIGIT_BITS) {
		size_t sum = 0;
		memset(counts, 0, sizeof counts);
		for (size_t i = 0; i < count; i++)
			counts[(from[i] >> shift) & (DIGITS - 1)]++;
		for (size_t d = 0; d < DIGITS; d++) {
			size_t here = counts[d];
			counts[d] = sum;
			sum += here;
		}
		for (size_t i = 0; i < count; i++)
			to[counts[(from[i] >> shift) & (DIGITS - 1)]++] = from[i];
		uint32_t *swap = from;
		from = to;
		to = swap;
	}
	if (from != keys)
		memcpy(keys, from, count * sizeof *keys);
}
