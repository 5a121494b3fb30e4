#include "radix.h"

#include <string.h>

/* Digits of 11 bits (two passes up to 4M) for many keys; of 8 bits for
 * fewer than RADIX_WIDE_DIGITS, where clearing and summing 2048 counters
 * per pass would cost more than the keys. */
#define WIDE_BITS         11
#define NARROW_BITS       8
#define RADIX_WIDE_DIGITS 4096

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
	unsigned bits = count < RADIX_WIDE_DIGITS ? NARROW_BITS : WIDE_BITS;
	uint32_t mask = (1u << bits) - 1;
	size_t counts[1u << WIDE_BITS];

	if (count < RADIX_SMALL) {
		insertion_sort(keys, count);
		return;
	}
	for (size_t i = 0; i < count; i++)
		largest |= keys[i];
	for (unsigned shift = 0; shift < 32 && (largest >> shift) != 0; shift += bits) {
		size_t sum = 0;
		memset(counts, 0, ((size_t)mask + 1) * sizeof counts[0]);
		for (size_t i = 0; i < count; i++)
			counts[(from[i] >> shift) & mask]++;
		for (size_t d = 0; d <= mask; d++) {
			size_t here = counts[d];
			counts[d] = sum;
			sum += here;
		}
		for (size_t i = 0; i < count; i++)
			to[counts[(from[i] >> shift) & mask]++] = from[i];
		uint32_t *swap = from;
		from = to;
		to = swap;
	}
	if (from != keys)
		memcpy(keys, from, count * sizeof *keys);
}
