/*
 * covis: item-to-item co-visitation, learned by counting.
 *
 * covis(j, i) counts how often item i followed item j in users' recent
 * streams, decayed exponentially in the number of events learned since (a
 * half-life in events), and bounded: each item keeps at most `neighbours`
 * successors. When a list is full, a newcomer replaces the weakest entry,
 * so successors that keep recurring stay and one-off pairs churn through
 * the last slot.
 *
 * Decay costs nothing per entry: each increment is scaled up by a global
 * factor that grows with every event, and weights are read divided by it;
 * when the factor grows large all weights are rescaled once.
 */
#ifndef STREAMREC_COVIS_H
#define STREAMREC_COVIS_H

#include <stddef.h>
#include <stdint.h>

struct covis;

/** @returns an empty table, or NULL when out of memory or neighbours is 0. */
struct covis *covis_new(size_t neighbours, double half_life_events);

void covis_free(struct covis *covis);

/**
 * @brief Advance the decay clock by one learned event.
 * @returns 1 when every weight was rescaled (all lists changed), else 0.
 */
int covis_tick(struct covis *covis);

/** @brief Restore the scale of raw weights (persistence). */
void covis_set_scale(struct covis *covis, double scale);

/**
 * @brief Restore item's successor list (persistence).
 * @returns 0, or -1 when out of memory or count exceeds the bound.
 */
int covis_restore(struct covis *covis, uint32_t item, const uint32_t *items,
		  const float *raw_weights, size_t count);

/**
 * @brief Count one occurrence of `to` following `from`.
 * @returns 0, or -1 when out of memory.
 */
int covis_add(struct covis *covis, uint32_t from, uint32_t to);

/**
 * @brief The successors of item: *items and *raw_weights point into the
 * table (valid until the next covis_add or covis_tick). Divide a raw weight
 * by covis_scale() to get the decayed count.
 * @returns the number of successors.
 */
size_t covis_successors(const struct covis *covis, uint32_t item, const uint32_t **items,
			const float **raw_weights);

/** @returns the current scale of raw weights (see covis_successors). */
double covis_scale(const struct covis *covis);

#endif
