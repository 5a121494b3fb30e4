/*
 * clock: the two clocks of the tree. Wall time (CLOCK_REALTIME) for what
 * is compared with event timestamps (freshness, generated_at); monotonic
 * time for intervals and rates, which must not jump with the wall clock.
 */
#ifndef STREAMREC_CLOCK_H
#define STREAMREC_CLOCK_H

#include <stdint.h>
#include <time.h>

/** @returns milliseconds since the Unix epoch. */
static inline int64_t clock_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** @returns microseconds of the monotonic clock. */
static inline int64_t clock_monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/** @returns seconds of the monotonic clock. */
static inline double clock_monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
