/*
 * argmax: the first index of the largest of scores[c] + bias[c], the cell a
 * row is assigned to by its scores against the index's centroids (ivf.c).
 * NaN never wins unless all are NaN: then 0; ties go to the lower index;
 * the sums are left in scores (item_slack() reads them).
 *
 * One pass over ARGMAX_LANES running maxima and the first index of each,
 * written with GCC's vector extensions (any target; SSE2 on x86-64) because
 * GCC at -O2 left the plain loop scalar: with the sgemm this is most of an
 * index build's time, and the second pass that looked for the first index
 * of the maximum took a quarter of it.
 */
#ifndef STREAMREC_ARGMAX_H
#define STREAMREC_ARGMAX_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef float argmax_v4sf __attribute__((vector_size(16)));
typedef int32_t argmax_v4si __attribute__((vector_size(16)));
#define ARGMAX_LANES 16

static inline size_t argmax_biased(float *restrict scores, const float *restrict bias, size_t n)
{
	argmax_v4sf lane_max[ARGMAX_LANES / 4];
	argmax_v4si lane_at[ARGMAX_LANES / 4], index[ARGMAX_LANES / 4];
	float best = -INFINITY;
	size_t c = 0, at = 0;

	for (int v = 0; v < ARGMAX_LANES / 4; v++) {
		lane_max[v] = (argmax_v4sf){-INFINITY, -INFINITY, -INFINITY, -INFINITY};
		lane_at[v] = (argmax_v4si){0, 0, 0, 0};
		index[v] = (argmax_v4si){4 * v, 4 * v + 1, 4 * v + 2, 4 * v + 3};
	}
	for (; c + ARGMAX_LANES <= n && n <= INT32_MAX; c += ARGMAX_LANES) {
		for (int v = 0; v < ARGMAX_LANES / 4; v++) {
			argmax_v4sf score, add;
			memcpy(&score, scores + c + 4 * v, sizeof score);
			memcpy(&add, bias + c + 4 * v, sizeof add);
			score += add;
			memcpy(scores + c + 4 * v, &score, sizeof score);
			argmax_v4si higher = score > lane_max[v]; /* -1 or 0; NaN never higher */
			lane_max[v] = (argmax_v4sf)(((argmax_v4si)score & higher) |
						    ((argmax_v4si)lane_max[v] & ~higher));
			lane_at[v] = (index[v] & higher) | (lane_at[v] & ~higher);
			index[v] += ARGMAX_LANES;
		}
	}
	for (int v = 0; v < ARGMAX_LANES / 4; v++) {
		for (int l = 0; l < 4; l++) {
			float value = lane_max[v][l];
			size_t value_at = (size_t)lane_at[v][l];
			if (value > best || (value == best && value_at < at)) {
				best = value;
				at = value_at;
			}
		}
	}
	for (; c < n; c++) {
		scores[c] += bias[c];
		if (scores[c] > best) {
			best = scores[c];
			at = c;
		}
	}
	if (best > -INFINITY)
		return at;
	/* every sum -inf or NaN: the first -inf, else 0 */
	for (c = 0; c < n; c++)
		if (scores[c] == best)
			return c;
	return 0;
}

#endif
