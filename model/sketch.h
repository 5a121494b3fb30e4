/*
 * sketch: an approximate counter of how often each id was seen, in bounded
 * memory (the embedding life cycle's admission filter, README "Embedding
 * life cycle"): a count-min sketch of SKETCH_DEPTH rows of SKETCH_WIDTH
 * saturating 8-bit counters, with conservative update (only the smallest
 * counters of an id grow), so an estimate is never below the true count
 * and exceeds it only through collisions. Every SKETCH_AGING_ADDS additions
 * every counter is halved, so ids seen long ago fade and the error stays
 * bounded on an endless stream.
 *
 * Memory: SKETCH_DEPTH * SKETCH_WIDTH bytes (256 KiB), whatever the ids.
 * Error: with n distinct ids counted since the last halving, a never-seen
 * id's estimate is above 0 with probability about (1 - e^(-n/SKETCH_WIDTH))^4:
 * 0.24% at n = 16k, 2.4% at n = 32k; an estimate of 2 or more needs its four
 * cells shared with ids seen as often, far rarer. So an id may be admitted
 * early, rarely; it is never admitted late.
 *
 * Deterministic: the same additions give the same counters bit for bit
 * (the state persists the sketch with its commits, so a replay after a
 * crash admits the same ids as the run it repeats). Not thread-safe.
 */
#ifndef STREAMREC_SKETCH_H
#define STREAMREC_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#define SKETCH_DEPTH      4
#define SKETCH_WIDTH      65536
#define SKETCH_AGING_ADDS (8 * SKETCH_WIDTH)

struct sketch;

/** @returns an empty sketch, or NULL when out of memory. */
struct sketch *sketch_new(void);

void sketch_free(struct sketch *sketch);

/**
 * @brief Count one sighting of the id whose 64-bit hash is given.
 * @returns its estimated count, this sighting included (at most 255).
 */
unsigned sketch_add(struct sketch *sketch, uint64_t hash);

/** @returns the estimated count of hash (0: surely never seen since it faded). */
unsigned sketch_estimate(const struct sketch *sketch, uint64_t hash);

/** @returns the bytes sketch_export() writes. */
size_t sketch_export_bytes(void);

/** @brief Serialise the sketch into buf (sketch_export_bytes() of room). */
void sketch_export(const struct sketch *sketch, void *buf);

/**
 * @brief Restore what sketch_export() wrote.
 * @returns 0, or -1 when len is not sketch_export_bytes().
 */
int sketch_import(struct sketch *sketch, const void *buf, size_t len);

#endif
