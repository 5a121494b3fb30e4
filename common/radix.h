/*
 * radix: sorting arrays of 32-bit keys (item indices) without a comparison
 * callback. qsort() calls its comparator through a pointer for every
 * comparison: sorting a list's 1-2k co-visitation candidates that way took
 * 18% of an index-engine `streamrec eval` replay at 85k items.
 */
#ifndef STREAMREC_RADIX_H
#define STREAMREC_RADIX_H

#include <stddef.h>
#include <stdint.h>

/** Below this many keys radix_sort_u32() uses an insertion sort. */
#define RADIX_SMALL 48

/**
 * @brief Sorts keys[0..count) in ascending order: least-significant-digit
 * radix sort, 8 or (from 4096 keys) 11 bits a pass, only as many passes as
 * the largest key needs. Stable, so equal keys keep their order (which for plain
 * keys cannot be seen: the result is the same as any correct sort's).
 * scratch must have room for count keys (unused below RADIX_SMALL); the
 * caller owns both arrays.
 */
void radix_sort_u32(uint32_t *keys, size_t count, uint32_t *scratch);

#endif
