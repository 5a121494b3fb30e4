/*
 * sorted: lookups in ascending arrays of 32-bit ids (item sets, exclusions,
 * a query's sparse items, boosted items), one binary search for all.
 */
#ifndef STREAMREC_SORTED_H
#define STREAMREC_SORTED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** @returns the first place in sorted[0..count) whose id is not below id (count: none). */
static inline size_t sorted_lower_bound(const uint32_t *sorted, size_t count, uint32_t id)
{
	size_t low = 0, high = count;
	while (low < high) {
		size_t mid = low + (high - low) / 2;
		if (sorted[mid] < id)
			low = mid + 1;
		else
			high = mid;
	}
	return low;
}

/** @returns id's place in sorted[0..count), or SIZE_MAX when it is not there. */
static inline size_t sorted_find(const uint32_t *sorted, size_t count, uint32_t id)
{
	size_t at = sorted_lower_bound(sorted, count, id);
	return at < count && sorted[at] == id ? at : SIZE_MAX;
}

#endif
