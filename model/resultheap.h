/*
 * resultheap: the kept results of a top-k selection, shared by the exact
 * engine (topk.c) and the index (ivf.c) so both order and tie-break alike.
 *
 * A kept result is one integer: the score's bits mapped so that unsigned
 * order is float order, above the complement of the item index, so that a
 * greater key is a better result (higher score, then lower index) and the
 * heap compares one integer instead of two fields. -0 becomes +0 first: they
 * are equal scores and must tie by index. The heap is a min-heap of keys:
 * its root is the worst kept result, the one a newcomer must beat.
 */
#ifndef STREAMREC_RESULTHEAP_H
#define STREAMREC_RESULTHEAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "topk.h"

static inline uint64_t result_key(float score, uint32_t item)
{
	uint32_t bits;

	score += 0.0f;
	memcpy(&bits, &score, sizeof bits);
	bits = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
	return (uint64_t)bits << 32 | (uint32_t)~item;
}

static inline struct topk_result key_result(uint64_t key)
{
	uint32_t bits = (uint32_t)(key >> 32);
	struct topk_result result;

	bits = bits & 0x80000000u ? bits & 0x7fffffffu : ~bits;
	memcpy(&result.score, &bits, sizeof bits);
	result.item = ~(uint32_t)key;
	return result;
}

static inline void heap_sift_down(uint64_t *heap, size_t count, size_t at)
{
	uint64_t moving = heap[at];

	for (;;) {
		size_t child = 2 * at + 1;
		if (child >= count)
			break;
		if (child + 1 < count)
			child += heap[child + 1] < heap[child];
		if (heap[child] >= moving)
			break;
		heap[at] = heap[child];
		at = child;
	}
	heap[at] = moving;
}

static inline void heap_push(uint64_t *heap, size_t *count, uint64_t key)
{
	size_t at = (*count)++;

	while (at > 0) {
		size_t parent = (at - 1) / 2;
		if (heap[parent] <= key)
			break;
		heap[at] = heap[parent];
		at = parent;
	}
	heap[at] = key;
}

/* Sorts a heap of count keys in place and writes its results best first
 * (heap sort: each pass moves the worst left to the end). */
static inline void heap_drain_best_first(uint64_t *heap, size_t count, struct topk_result *out)
{
	for (size_t left = count; left > 1; left--) {
		uint64_t worst = heap[0];
		heap[0] = heap[left - 1];
		heap[left - 1] = worst;
		heap_sift_down(heap, left - 1, 0);
	}
	for (size_t r = 0; r < count; r++)
		out[r] = key_result(heap[r]);
}

#endif
