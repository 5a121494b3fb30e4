/*
 * popularity: how often each item was acted on, as an all-time count kept
 * in ranked order (the popularity baseline, and the sampler's counts) and
 * as a time-decayed count (the trending list that users without history
 * are served).
 */
#ifndef STREAMREC_POPULARITY_H
#define STREAMREC_POPULARITY_H

#include <stddef.h>
#include <stdint.h>

struct popularity;

/**
 * Items of the trending list the table keeps up to date as it counts (one
 * binary search and a short move per popularity_add(), 1 byte per item), so
 * that popularity_trending() reads its head instead of scanning every item:
 * at 85k items the scan cost 40 us, and `streamrec eval` ran it for every
 * cold user's list (16% of an index-engine replay). Enough for a cold
 * user's list and the index engine's 50 trending candidates with room for
 * exclusions; a longer request, or one whose exclusions leave fewer than k
 * of these, falls back to the scan.
 */
#define POPULARITY_HOT_ITEMS 256

/** @returns an empty table whose trending counts halve every half_life_ms, or NULL. */
struct popularity *popularity_new(double trending_half_life_ms);

void popularity_free(struct popularity *popularity);

/**
 * @brief Count one action on item at event time ts_ms. O(log items).
 * @returns 0, or -1 when out of memory.
 */
int popularity_add(struct popularity *popularity, uint32_t item, int64_t ts_ms);

/** @returns the item whose rank the last popularity_add() swapped with its
 * own, or UINT32_MAX; persistence must save it too. */
uint32_t popularity_last_moved(const struct popularity *popularity);

/** @returns true when the last popularity_add() rescaled every trending
 * count (rare: every item's saved state changed). */
int popularity_rescaled(const struct popularity *popularity);

/** An item's persistent state. */
struct popularity_item {
	uint64_t count;
	uint32_t rank; /**< place in the ranked order (meaningful when count > 0) */
	double trend;
};

struct popularity_item popularity_item_state(const struct popularity *popularity, uint32_t item);

/** @brief Start loading what popularity_item_state() reads of item. */
void popularity_prefetch(const struct popularity *popularity, uint32_t item);

/** The table's global state. */
struct popularity_globals {
	uint64_t ranked;
	int64_t epoch_ms;
	int32_t epoch_set;
};

void popularity_get_globals(const struct popularity *popularity, struct popularity_globals *g);

/** @returns 0, or -1 when out of memory. Restore every item, then the globals. */
int popularity_restore_item(struct popularity *popularity, uint32_t item,
			    const struct popularity_item *state);

/**
 * @brief Forget items (embedding life cycle): each item flagged in gone
 * (gone_count flags, one per item index) goes back to never counted, leaves
 * the count order (the items after it move up one rank: moved, when not
 * NULL, is called for each, as their saved rank changed) and the trending
 * list, which is built again (O(items)).
 */
void popularity_forget(struct popularity *popularity, const uint8_t *gone, size_t gone_count,
		       void (*moved)(uint32_t item, void *ctx), void *ctx);

/** @returns 0, or -1 when the ranks restored do not form the saved order. */
int popularity_set_globals(struct popularity *popularity, const struct popularity_globals *g);

/**
 * @returns item's time-decayed count relative to the table's epoch (0 for
 * an item never counted): ratios between items are their trending ratios,
 * and every value changes by one common factor only when
 * popularity_rescaled() says so.
 */
double popularity_trend(const struct popularity *popularity, uint32_t item);

/** @returns item's all-time count (0 for an item never counted). */
uint64_t popularity_count(const struct popularity *popularity, uint32_t item);

/**
 * @brief The k most counted items, best first, skipping the sorted
 * exclusion list and items whose eligible byte is 0 (eligible may be NULL).
 * Equal counts keep a fixed, deterministic order.
 * @returns how many were written to out (at most k).
 */
size_t popularity_top(const struct popularity *popularity, size_t k, const uint32_t *exclude,
		      size_t exclude_count, const uint8_t *eligible, uint32_t *out);

/**
 * @brief The k items with the highest time-decayed counts, best first,
 * with the same skipping rules; ties go to the lower item index. O(k) plus
 * the skipped items from the kept list (POPULARITY_HOT_ITEMS); O(items)
 * when that list cannot answer, and between popularity_restore_item() and
 * popularity_set_globals().
 * @returns how many were written.
 */
size_t popularity_trending(const struct popularity *popularity, size_t k, const uint32_t *exclude,
			   size_t exclude_count, const uint8_t *eligible, uint32_t *out);

/** @returns true when item is in the sorted list. */
int popularity_sorted_contains(const uint32_t *sorted, size_t count, uint32_t item);

#endif
