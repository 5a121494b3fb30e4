/*
 * covis: item-to-item co-visitation, learned by counting.
 *
 * covis(j, i) sums the weights of the times item i was seen near item j in
 * users' recent streams (the caller decides what "near" is: which pairs it
 * adds, in which direction and with which amount; model/model.c adds each
 * new item after each of the user's last `covis_window` items, and with
 * `covis_both_directions` the pair back). The sum may be decayed
 * exponentially in the number of events learned since (a half-life in
 * events; 0: no decay), and each item's list may be bounded: an item keeps
 * at most `bound` neighbours, and when its list is full a newcomer replaces
 * the weakest entry, so neighbours that keep recurring stay and one-off
 * pairs churn through the last slot.
 *
 * Memory: lists grow with the pairs actually met (8 bytes a neighbour plus
 * 16 a list, geometric growth), never to items x bound. Adding a pair scans
 * its list: O(list length).
 *
 * Decay costs nothing per entry: each increment is scaled up by a global
 * factor that grows with every event, and weights are read divided by it;
 * when the factor grows large all weights are rescaled once.
 *
 * Threads: none of its own; the owner (one model) serialises every call.
 */
#ifndef STREAMREC_COVIS_H
#define STREAMREC_COVIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The largest bound on a list (covis_new). */
#define COVIS_MAX_BOUND 65535

struct covis;

/**
 * @returns an empty table whose lists hold at most bound neighbours
 * (1..COVIS_MAX_BOUND) and whose counts halve every half_life_events events
 * (0: never), or NULL when out of memory or bound is out of range.
 */
struct covis *covis_new(size_t bound, double half_life_events);

void covis_free(struct covis *covis);

/**
 * @brief Advance the decay clock by one learned event.
 * @returns 1 when every weight was rescaled (all lists changed), else 0.
 */
int covis_tick(struct covis *covis);

/** @brief Restore the scale of raw weights (persistence). */
void covis_set_scale(struct covis *covis, double scale);

/**
 * @brief Restore item's neighbour list (persistence); the arrays are copied.
 * @returns 0, or -1 when out of memory or count exceeds the bound.
 */
int covis_restore(struct covis *covis, uint32_t item, const uint32_t *items,
		  const float *raw_weights, size_t count);

/**
 * @brief Forget items (embedding life cycle): the lists of items flagged in
 * gone (gone_count flags, one per item index) are emptied and their memory
 * freed, and every entry naming a flagged item leaves the other lists, in
 * one pass over the table. changed (when not NULL) is called once for each
 * unflagged item whose list lost an entry.
 */
void covis_forget(struct covis *covis, const uint8_t *gone, size_t gone_count,
		  void (*changed)(uint32_t item, void *ctx), void *ctx);

/**
 * @brief Count one occurrence of `to` near `from`, with weight amount (> 0;
 * 1 counts occurrences), in from's list only.
 * @returns 0, or -1 when out of memory.
 */
int covis_add(struct covis *covis, uint32_t from, uint32_t to, float amount);

/**
 * @brief The neighbours of item: *items and *raw_weights point into the
 * table (valid until the next covis_add, covis_restore or covis_tick).
 * Divide a raw weight by covis_scale() to get the decayed count.
 * @returns the number of neighbours.
 */
size_t covis_successors(const struct covis *covis, uint32_t item, const uint32_t **items,
			const float **raw_weights);

/** @brief Start loading what covis_successors() reads of item: its list's
 * header when `entries` is false, else (the header read by then) its first
 * entries. A caller walking many items asks for the headers further ahead. */
void covis_prefetch(const struct covis *covis, uint32_t item, bool entries);

/** @returns the current scale of raw weights (see covis_successors). */
double covis_scale(const struct covis *covis);

/** @returns the longest list (for tuning the bound). */
size_t covis_longest(const struct covis *covis);

#endif
