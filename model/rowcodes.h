/*
 * rowcodes: 8-bit copies of float rows, read to bound inner products from
 * above without reading the rows (DESIGN.md, Top-k; the index's cell scan).
 *
 * A probe of an index cell streams its rows from memory: at 1M items a
 * 1000-row cell of 33 floats is 132 KB, and on a 2-core EPYC (Cooperlake
 * kernel) half of an index list's time was OpenBLAS's sgemv over such
 * cells, bound by memory, not arithmetic. A row's code is one signed byte
 * a column, c_j = round(x_j / s) with the row's scale s = max_j |x_j| / 127,
 * so each row costs dim + 4 bytes instead of 4·dim, and
 *
 *     q·x  <=  s · (q·c + margin(q)),   margin(q) = |q|_1 · (1/2 + ε(dim))
 *
 * The codes are of the row's difference from a base the caller names (an
 * index cell's mean): then s is the spread within the cell, not the row's
 * size, and the bound adds q·base (rowcodes_base_score()).
 *
 * holds for the float dot product the caller computes from the row (the
 * rounding of the code, of both sums and of this product are all inside
 * ε; rowcodes.c has the sum). A scan reads the codes, and reads a row
 * only when its bound reaches the list's bar: the rows it passes over
 * could not have entered, so the list is what scanning the rows gives.
 *
 * A row with a value that is not finite, or too small to scale, gets the
 * scale +inf: its bound is +inf (never passed over). Queries must be
 * finite (rowcodes_margin() returns NaN otherwise; the caller scans those
 * rows as floats).
 *
 * Layout: slots are grouped in blocks of ROWCODES_BLOCK; a block holds its
 * dim columns one after another, each ROWCODES_BLOCK bytes (slot order),
 * so a bound is ROWCODES_BLOCK lanes of multiply-adds per column: one
 * AVX-512 instruction, two AVX2 ones, or portable C, by the CPU
 * (rowcodes_best_kernel()). Buffers hold whole blocks: codes
 * rowcodes_bytes(), scales rowcodes_slots() floats.
 *
 * Plain arrays, no allocation: the caller owns and grows them. Not
 * thread-safe for writes; bounds only read.
 */
#ifndef STREAMREC_ROWCODES_H
#define STREAMREC_ROWCODES_H

#include <stddef.h>
#include <stdint.h>

/** Slots per block of codes. */
#define ROWCODES_BLOCK 16

/** @returns slots rounded up to whole blocks. */
size_t rowcodes_slots(size_t slots);

/** @returns the bytes of codes for `slots` slots of dim columns (whole blocks). */
size_t rowcodes_bytes(size_t slots, size_t dim);

/** Most columns a row may have to be coded (rowcodes_store() marks wider rows always read). */
#define ROWCODES_MAX_DIM 1024

/**
 * @brief Codes `row` (dim floats) into slot `slot`: the codes and scale of
 * its difference from `base` (dim floats, the same for every row of the
 * buffer until all are coded again; NULL: zeros). A cell's mean as base
 * makes the differences, and so the scales and the bounds' margins, small.
 */
void rowcodes_store(int8_t *codes, float *scales, size_t slot, const float *row, const float *base,
		    size_t dim);

/** @brief Fetches ahead, for writing, the cache lines of slot's codes and scale. */
void rowcodes_prefetch(const int8_t *codes, const float *scales, size_t slot, size_t dim);

/** @brief Copies slot `from`'s codes and scale to slot `to`. */
void rowcodes_copy(int8_t *codes, float *scales, size_t to, size_t from, size_t dim);

/**
 * @returns the margin of query vector (dim floats) that rowcodes_bound()
 * takes: |q|_1 · (1/2 + ε(dim)), positive; NaN if vector is not finite.
 */
float rowcodes_margin(const float *vector, size_t dim);

/**
 * @returns the base's share of every bound for query vector: q·base plus
 * its rounding and that of the caller's products (dim·2^-21 of
 * Σ|q_j base_j|); 0 for a NULL base; NaN if not finite.
 */
float rowcodes_base_score(const float *vector, const float *base, size_t dim);

/**
 * @brief Writes upper[i] >= the float dot product of vector with the row
 * coded in slot first + i, for i < n (first a multiple of ROWCODES_BLOCK);
 * entries up to n rounded up to a block are written too (upper must have
 * room). `margin` is rowcodes_margin(vector, dim) and `base_score`
 * rowcodes_base_score() of the buffer's base, both finite. Never NaN.
 */
void rowcodes_bound(const int8_t *codes, const float *scales, size_t first, size_t n, size_t dim,
		    const float *vector, float margin, float base_score, float *upper);

/** The code that computes bounds; rowcodes_bound() takes the CPU's best. */
enum rowcodes_kernel {
	ROWCODES_KERNEL_PORTABLE = 0, /**< plain C, any CPU */
	ROWCODES_KERNEL_AVX2,         /**< x86-64 with AVX2 and FMA */
	ROWCODES_KERNEL_AVX512,       /**< x86-64 with AVX-512F */
};

/** @returns the widest kernel this CPU runs. */
enum rowcodes_kernel rowcodes_best_kernel(void);

/** @returns the kernel's name: "portable", "avx2" or "avx512". */
const char *rowcodes_kernel_name(enum rowcodes_kernel kernel);

/**
 * @brief rowcodes_bound() with the given kernel, which the CPU must run
 * (at most rowcodes_best_kernel()); every kernel bounds, for tests.
 */
void rowcodes_bound_with(enum rowcodes_kernel kernel, const int8_t *codes, const float *scales,
			 size_t first, size_t n, size_t dim, const float *vector, float margin,
			 float base_score, float *upper);

#endif
