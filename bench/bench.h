/*
 * bench: the timing helpers every benchmark shares (monotonic clock, median
 * of repeated runs). Header-only: each bench is one program.
 */
#ifndef STREAMREC_BENCH_H
#define STREAMREC_BENCH_H

#include <stdlib.h>
#include <time.h>

/** @returns seconds on the monotonic clock. */
static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/** @returns the median of v[0..n) (sorts v). */
static inline double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, compare_double);
	return v[n / 2];
}

#endif
