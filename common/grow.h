/*
 * grow: amortised growth of a heap array, the one copy of the
 * "double the capacity, realloc, keep the old block on failure" step.
 */
#ifndef STREAMREC_GROW_H
#define STREAMREC_GROW_H

#include <stddef.h>

/**
 * @brief Make room for at least `needed` elements of `size` bytes in
 * *array (capacity in *capacity, doubled from `initial`; new elements are
 * zeroed). On failure *array and *capacity are unchanged.
 * @returns 0, or -1 when out of memory (or the size overflows).
 */
int grow_array(void *array, size_t *capacity, size_t needed, size_t size, size_t initial);

/**
 * @brief Make room for at least `needed` elements of `size` bytes in the
 * scratch buffer *array (capacity in *capacity), freeing and allocating
 * exactly `needed` when it holds fewer: the content is NOT kept (a buffer a
 * computation overwrites). On failure *array and *capacity are unchanged.
 * @returns 0, or -1 when out of memory (or the size overflows).
 */
int grow_scratch(void *array, size_t *capacity, size_t needed, size_t size);

#endif
