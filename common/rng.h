/*
 * rng: the seeded generator of the tree, splitmix64 (Steele, Lea and Flood,
 * "Fast splittable pseudorandom number generators", OOPSLA 2014): one
 * 64-bit word of state, good enough for initial vectors, negative sampling
 * and synthetic streams, and identical on every platform, so a replay of
 * the same stream with the same seed gives the same model.
 */
#ifndef STREAMREC_RNG_H
#define STREAMREC_RNG_H

#include <stdint.h>

/** @returns the next 64 random bits, advancing *state. */
static inline uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/** @returns a uniform double in [0, 1). */
static inline double rng_uniform(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
