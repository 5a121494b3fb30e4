/*
 * sampler: draws negative items with probability proportional to
 * count^alpha, kept current as counts change, in O(1) expected time for
 * both an update and a draw.
 *
 * Items are grouped in buckets by the power of two of their weight
 * ([2^b, 2^(b+1))). A draw picks a bucket by its total weight (a scan of a
 * few dozen buckets), then an item of that bucket uniformly, and keeps it
 * with probability weight / 2^(b+1) >= 1/2 (so at most two tries are
 * expected). An update recomputes one weight and, when its power of two
 * changes, moves the item between buckets by swap-remove. An alias table
 * would draw in O(1) too but needs an O(n) rebuild after every change.
 */
#ifndef STREAMREC_SAMPLER_H
#define STREAMREC_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

struct sampler;

/** @returns an empty sampler for weights count^alpha, or NULL when out of memory. */
struct sampler *sampler_new(double alpha);

void sampler_free(struct sampler *sampler);

/**
 * @brief Set item's count (items not set yet have count 0 and are never drawn).
 * @returns 0, or -1 when out of memory.
 */
int sampler_set_count(struct sampler *sampler, uint32_t item, uint64_t count);

/** @returns the item whose place the last sampler_set_count() changed besides its own
 * (moved by swap-remove), or UINT32_MAX; persistence must save it too. */
uint32_t sampler_last_moved(const struct sampler *sampler);

/** An item's place, which with its count decides future draws exactly. */
struct sampler_place {
	int32_t bucket; /**< -1: not drawable */
	uint32_t position;
};

/** @returns item's place (bucket -1 for an item never set). */
struct sampler_place sampler_item_place(const struct sampler *sampler, uint32_t item);

/** @brief Start loading what sampler_item_place() reads of item. */
void sampler_prefetch(const struct sampler *sampler, uint32_t item);

/** The sampler's global state (bucket sizes and sums), for persistence. */
struct sampler_globals {
	double total;
	double bucket_total[64];
	uint32_t bucket_count[64];
	uint32_t updates_since_resum;
	int32_t top_bucket;
};

void sampler_get_globals(const struct sampler *sampler, struct sampler_globals *globals);

/**
 * @brief Restore one item at its saved place (call for every item, then
 * sampler_set_globals()); the result draws exactly as the saved sampler did.
 * @returns 0, or -1 when out of memory or the place is impossible.
 */
int sampler_restore_item(struct sampler *sampler, uint32_t item, uint64_t count,
			 struct sampler_place place);

/** @returns 0, or -1 when the globals do not match the restored items. */
int sampler_set_globals(struct sampler *sampler, const struct sampler_globals *globals);

/** @returns the sum of all weights (0 when nothing can be drawn). */
double sampler_total(const struct sampler *sampler);

/**
 * @brief Draw one item.
 * @param random_state a splitmix64 state the caller owns (so replays are exact)
 * @returns the item, or UINT32_MAX when every count is 0.
 */
uint32_t sampler_draw(struct sampler *sampler, uint64_t *random_state);

/** @returns a uniform 64-bit value from a splitmix64 state (shared by the model's parts). */
uint64_t sampler_random(uint64_t *state);

/** @returns a uniform double in [0, 1). */
double sampler_unit(uint64_t *state);

#endif
