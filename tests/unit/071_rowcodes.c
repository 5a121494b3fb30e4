/*
 * 8-bit row codes (model/rowcodes.h): with every kernel this CPU runs, the
 * bound is never below the float dot product of the query with the row,
 * whatever order the caller sums it in (the index scores rows with its own
 * dot(), OpenBLAS in others), for rows of any size, with and without a
 * base; in the worst case of rounding (every column half a step off, the
 * query's signs against the code) too; and it is tight: at most a step
 * (the code's half step, and the margin's) per unit of |q|_1 above the
 * product, so that a scan reads few rows. Rows that cannot be coded are never passed over.
 * Copies move a slot's code. The kernels agree with each other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rowcodes.h"

static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) * 0x1p-53;
}

/* Uniform in (-1, 1) times 10^e with e uniform in [low, high]. */
static float rng_scaled(uint64_t *state, double low, double high)
{
	double e = low + (high - low) * rng_uniform(state);
	return (float)((2.0 * rng_uniform(state) - 1.0) * pow(10.0, e));
}

/* The float dot products a caller may compute: in order, backwards, and in
 * 8 lanes (as the index's dot()); the largest of them. */
static float largest_float_dot(const float *q, const float *x, size_t dim)
{
	float forward = 0.0f, backward = 0.0f, lanes[8] = {0}, laned = 0.0f;

	for (size_t j = 0; j < dim; j++) {
		forward += q[j] * x[j];
		backward += q[dim - 1 - j] * x[dim - 1 - j];
		lanes[j % 8] += q[j] * x[j];
	}
	for (size_t l = 0; l < 8; l++)
		laned += lanes[l];
	float most = forward > backward ? forward : backward;
	return laned > most ? laned : most;
}

struct coded {
	size_t slots, dim;
	int8_t *codes;
	float *scales, *rows, *upper;
};

static void coded_new(struct coded *c, size_t slots, size_t dim)
{
	c->slots = slots;
	c->dim = dim;
	c->codes = calloc(rowcodes_bytes(slots, dim), 1);
	c->scales = calloc(rowcodes_slots(slots), sizeof(float));
	c->rows = calloc(slots * dim, sizeof(float));
	c->upper = calloc(rowcodes_slots(slots), sizeof(float));
	assert_true(c->codes && c->scales && c->rows && c->upper);
}

static void coded_free(struct coded *c)
{
	free(c->codes);
	free(c->scales);
	free(c->rows);
	free(c->upper);
}

static void coded_store_all(struct coded *c, const float *base)
{
	for (size_t s = 0; s < c->slots; s++)
		rowcodes_store(c->codes, c->scales, s, c->rows + s * c->dim, base, c->dim);
}

/* Bounds with `kernel` for query q and checks each slot's against its row:
 * never below the product; at most `slack` of the code's own half step
 * above it when the row was coded (finite scale). */
static void assert_bounds(struct coded *c, enum rowcodes_kernel kernel, const float *q,
			  const float *base, double slack)
{
	float margin = rowcodes_margin(q, c->dim);
	float base_score = rowcodes_base_score(q, base, c->dim);
	double q_abs = 0.0;

	for (size_t j = 0; j < c->dim; j++)
		q_abs += fabs(q[j]);
	assert_true(isfinite(margin) && margin > 0.0f);
	assert_true(isfinite(base_score));
	rowcodes_bound_with(kernel, c->codes, c->scales, 0, c->slots, c->dim, q, margin, base_score,
			    c->upper);
	for (size_t s = 0; s < c->slots; s++) {
		const float *x = c->rows + s * c->dim;
		float product = largest_float_dot(q, x, c->dim);
		if (!(c->upper[s] >= product))
			fail_msg("kernel %s, dim %zu, slot %zu: bound %.9g below the product %.9g",
				 rowcodes_kernel_name(kernel), c->dim, s, (double)c->upper[s],
				 (double)product);
		if (!isfinite(c->scales[s]))
			continue;
		double step = c->scales[s], above = (double)c->upper[s] - (double)product;
		double base_size = 0.0;
		for (size_t j = 0; base != NULL && j < c->dim; j++)
			base_size += fabs((double)q[j] * base[j]) + fabs((double)q[j] * x[j]);
		/* the base's share: its rounding, counted for dim·2^-21 of it */
		if (!(above <= slack * step * q_abs + (double)c->dim * 0x1p-20 * base_size + 1e-30))
			fail_msg("kernel %s, dim %zu, slot %zu: bound %.9g is %.3g above %.9g, "
				 "more than %.2f steps of %.3g per |q|_1 %.3g",
				 rowcodes_kernel_name(kernel), c->dim, s, (double)c->upper[s],
				 above, (double)product, slack, step, q_abs);
	}
}

static void bounds_hold_and_are_tight_for_every_kernel(void **state)
{
	static const size_t dims[] = {1, 3, 8, 16, 33, 64, 129};
	uint64_t rng = 7;
	(void)state;

	for (int kernel = 0; kernel <= (int)rowcodes_best_kernel(); kernel++) {
		for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) {
			size_t dim = dims[d], slots = 1 + rng_next(&rng) % 150;
			struct coded c;
			float *base = malloc(dim * sizeof *base), *q = malloc(dim * sizeof *q);
			assert_true(base && q);
			coded_new(&c, slots, dim);
			for (int with_base = 0; with_base < 2; with_base++) {
				for (size_t j = 0; j < dim; j++)
					base[j] = rng_scaled(&rng, -1, 1);
				/* each row its own size, 1e-6 to 1e6; with a base,
				 * rows near it, as a cell's rows near its mean */
				for (size_t s = 0; s < slots; s++) {
					double low = -6 + 12 * rng_uniform(&rng);
					for (size_t j = 0; j < dim; j++)
						c.rows[s * dim + j] =
						    (with_base ? base[j] : 0.0f) +
						    rng_scaled(&rng, low, low + 1);
				}
				coded_store_all(&c, with_base ? base : NULL);
				for (int t = 0; t < 20; t++) {
					for (size_t j = 0; j < dim; j++)
						q[j] = rng_scaled(&rng, -2, 2);
					assert_bounds(&c, (enum rowcodes_kernel)kernel, q,
						      with_base ? base : NULL, 1.01);
				}
			}
			coded_free(&c);
			free(base);
			free(q);
		}
	}
}

/*
 * The worst case of rounding: every column of a row 0.4999 of a step
 * above its code, a query positive everywhere, so the code's error adds
 * up to nearly half a step per unit of |q|_1, all of it counted by the
 * margin. A margin a tenth short (0.45) fails here.
 */
static void the_worst_rounding_is_bounded(void **state)
{
	enum { DIM = 33, SLOTS = 40 };
	struct coded c;
	float q[DIM];
	uint64_t rng = 3;
	(void)state;

	coded_new(&c, SLOTS, DIM);
	for (size_t s = 0; s < SLOTS; s++) {
		/* the largest column 127 steps: the step is 1 (then scaled) */
		float unit = (float)pow(2.0, (double)(s % 9) - 4.0);
		c.rows[s * DIM] = 127.0f * unit;
		for (size_t j = 1; j < DIM; j++) {
			int code = (int)(rng_next(&rng) % 200) - 100;
			c.rows[s * DIM + j] = ((float)code + 0.4999f) * unit;
		}
	}
	coded_store_all(&c, NULL);
	for (size_t j = 0; j < DIM; j++)
		q[j] = j == 0 ? 0.0f : 1.0f + (float)j / DIM;
	for (int kernel = 0; kernel <= (int)rowcodes_best_kernel(); kernel++)
		assert_bounds(&c, (enum rowcodes_kernel)kernel, q, NULL, 1.01);
	coded_free(&c);
}

/* Rows that cannot be coded (a NaN or an infinity, or values too small to
 * scale) get an infinite bound; a zero row is bounded by 0 exactly; a query
 * that is not finite has no margin; a base too large for floats has no
 * score. */
static void rows_that_cannot_be_coded_are_never_passed_over(void **state)
{
	enum { DIM = 5, SLOTS = 5 };
	struct coded c;
	float q[DIM] = {1.0f, -2.0f, 0.5f, 0.0f, 3.0f};
	float huge[DIM] = {3e38f, 3e38f, 3e38f, 3e38f, 3e38f};
	(void)state;

	coded_new(&c, SLOTS, DIM);
	for (size_t j = 0; j < DIM; j++) {
		c.rows[0 * DIM + j] = j == 2 ? NAN : 1.0f;
		c.rows[1 * DIM + j] = j == 4 ? -INFINITY : 1.0f;
		c.rows[2 * DIM + j] = 1e-43f; /* subnormal: its step would be 0 */
		c.rows[3 * DIM + j] = 0.0f;
		c.rows[4 * DIM + j] = (float)j;
	}
	coded_store_all(&c, NULL);
	for (int kernel = 0; kernel <= (int)rowcodes_best_kernel(); kernel++) {
		rowcodes_bound_with((enum rowcodes_kernel)kernel, c.codes, c.scales, 0, SLOTS, DIM,
				    q, rowcodes_margin(q, DIM), 0.0f, c.upper);
		assert_true(isinf(c.upper[0]) && c.upper[0] > 0);
		assert_true(isinf(c.upper[1]) && c.upper[1] > 0);
		assert_true(isinf(c.upper[2]) && c.upper[2] > 0);
		assert_true(c.upper[3] == 0.0f);
		assert_true(c.upper[4] >= largest_float_dot(q, c.rows + 4 * DIM, DIM));
	}
	float zero[DIM] = {0};
	assert_true(rowcodes_margin(zero, DIM) > 0.0f);
	q[1] = NAN;
	assert_true(isnan(rowcodes_margin(q, DIM)));
	q[1] = INFINITY;
	assert_true(isnan(rowcodes_margin(q, DIM)));
	q[1] = -2.0f;
	assert_true(isnan(rowcodes_base_score(q, huge, DIM)));
	assert_true(rowcodes_base_score(q, NULL, DIM) == 0.0f);
	coded_free(&c);
}

/* A copy gives the target slot the source's code: its bound is the one the
 * source row has when coded in place. */
static void a_copy_moves_a_slots_code(void **state)
{
	enum { DIM = 33, SLOTS = 50 };
	struct coded c, alone;
	float q[DIM];
	uint64_t rng = 5;
	(void)state;

	coded_new(&c, SLOTS, DIM);
	coded_new(&alone, SLOTS, DIM);
	for (size_t i = 0; i < (size_t)SLOTS * DIM; i++)
		c.rows[i] = rng_scaled(&rng, -1, 1);
	for (size_t j = 0; j < DIM; j++)
		q[j] = rng_scaled(&rng, -1, 0);
	coded_store_all(&c, NULL);
	rowcodes_copy(c.codes, c.scales, 3, 47, DIM); /* across blocks, as a swap-remove */
	memcpy(alone.rows, c.rows, sizeof(float) * SLOTS * DIM);
	memcpy(alone.rows + 3 * DIM, c.rows + 47 * DIM, sizeof(float) * DIM);
	coded_store_all(&alone, NULL);
	float margin = rowcodes_margin(q, DIM);
	rowcodes_bound(c.codes, c.scales, 0, SLOTS, DIM, q, margin, 0.0f, c.upper);
	rowcodes_bound(alone.codes, alone.scales, 0, SLOTS, DIM, q, margin, 0.0f, alone.upper);
	for (size_t s = 0; s < SLOTS; s++)
		assert_true(c.upper[s] == alone.upper[s]);
	coded_free(&c);
	coded_free(&alone);
}

/* The kernels compute the same sums (the wider ones fuse multiply and add,
 * so they may differ in the last bits), from any first block. */
static void the_kernels_agree(void **state)
{
	enum { DIM = 33, SLOTS = 200, FIRST = 48 };
	struct coded c;
	float q[DIM], portable[SLOTS], base[DIM];
	uint64_t rng = 9;
	(void)state;

	print_message("this CPU's best kernel: %s\n", rowcodes_kernel_name(rowcodes_best_kernel()));
	coded_new(&c, SLOTS, DIM);
	for (size_t i = 0; i < (size_t)SLOTS * DIM; i++)
		c.rows[i] = rng_scaled(&rng, -1, 1);
	for (size_t j = 0; j < DIM; j++) {
		q[j] = rng_scaled(&rng, -1, 1);
		base[j] = rng_scaled(&rng, -2, -1);
	}
	coded_store_all(&c, base);
	float margin = rowcodes_margin(q, DIM), base_score = rowcodes_base_score(q, base, DIM);
	rowcodes_bound_with(ROWCODES_KERNEL_PORTABLE, c.codes, c.scales, FIRST, SLOTS - FIRST, DIM,
			    q, margin, base_score, portable);
	for (int kernel = 1; kernel <= (int)rowcodes_best_kernel(); kernel++) {
		rowcodes_bound_with((enum rowcodes_kernel)kernel, c.codes, c.scales, FIRST,
				    SLOTS - FIRST, DIM, q, margin, base_score, c.upper);
		for (size_t s = 0; s < SLOTS - FIRST; s++)
			assert_float_equal(c.upper[s], portable[s],
					   1e-5 * (fabs(portable[s]) + 1.0));
	}
	coded_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(bounds_hold_and_are_tight_for_every_kernel),
	    cmocka_unit_test(the_worst_rounding_is_bounded),
	    cmocka_unit_test(rows_that_cannot_be_coded_are_never_passed_over),
	    cmocka_unit_test(a_copy_moves_a_slots_code),
	    cmocka_unit_test(the_kernels_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
