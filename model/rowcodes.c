/*
 * rowcodes: 8-bit row codes and their upper bounds (see rowcodes.h).
 *
 * The margin. With s the stored scale (max|x_j|/127 rounded to float) and
 * c_j = lrint(x_j/s) (x_j/s rounded first), |x_j - s c_j| <= s(1/2 + 2^-17).
 * Writing Q = |q|_1 and n = dim, the terms the bound must cover, each
 * against s·Q:
 *   - the code:                        1/2 + 2^-17
 *   - the float sum q·c (|c_j| <= 127):  n·2^-24·127 < n·2^-17
 *   - the caller's float q·x (|x_j| <= 127.5 s): < n·2^-17
 *   - Q itself in float (n·2^-24 of Q/2), and q·c + margin and the product
 *     by s (2^-23 each of at most 128 Q): < n·2^-25 + 2^-15
 * so 1/2 + (n + 2)·2^-16 covers them all; rowcodes_margin() takes
 * (n + 2)·2^-14, four times that, and the bound's cost is only a few more
 * rows read (they are a small share of a cell either way).
 */
#include "rowcodes.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "portable.h"

/* Largest magnitude of a code. */
#define CODE_MAX 127

size_t rowcodes_slots(size_t slots)
{
	return (slots + ROWCODES_BLOCK - 1) / ROWCODES_BLOCK * ROWCODES_BLOCK;
}

size_t rowcodes_bytes(size_t slots, size_t dim)
{
	return rowcodes_slots(slots) * dim;
}

/* Where slot's code of column 0 is, from the buffer's start; column j is
 * ROWCODES_BLOCK·j further. */
static size_t code_offset(size_t slot, size_t dim)
{
	return slot / ROWCODES_BLOCK * dim * ROWCODES_BLOCK + slot % ROWCODES_BLOCK;
}

void rowcodes_store(int8_t *codes, float *scales, size_t slot, const float *row, const float *base,
		    size_t dim)
{
	int8_t *code = codes + code_offset(slot, dim);
	float largest = 0.0f, scale, residual[ROWCODES_MAX_DIM];
	bool finite = dim <= ROWCODES_MAX_DIM;

	for (size_t j = 0; j < dim && finite; j++) {
		residual[j] = base != NULL ? row[j] - base[j] : row[j];
		float a = fabsf(residual[j]);
		finite &= isfinite(residual[j]) != 0;
		largest = a > largest ? a : largest;
	}
	scale = largest / CODE_MAX;
	/* not finite, or so small that x/s is no longer within the codes:
	 * bound +inf (always read); all zero: scale 0, bound 0, exact */
	if (!finite || (largest > 0.0f && !(scale >= FLT_MIN))) {
		for (size_t j = 0; j < dim; j++)
			code[j * ROWCODES_BLOCK] = 0;
		scales[slot] = INFINITY;
		return;
	}
	for (size_t j = 0; j < dim; j++) {
		long c = largest > 0.0f ? lrintf(residual[j] / scale) : 0;
		c = c > CODE_MAX ? CODE_MAX : c < -CODE_MAX ? -CODE_MAX : c;
		code[j * ROWCODES_BLOCK] = (int8_t)c;
	}
	scales[slot] = scale;
}

void rowcodes_prefetch(const int8_t *codes, const float *scales, size_t slot, size_t dim)
{
	const int8_t *code = codes + code_offset(slot, dim);

	/* the slot's columns are ROWCODES_BLOCK bytes apart: every fourth
	 * lies in the next 64-byte line */
	for (size_t j = 0; j < dim; j += 64 / ROWCODES_BLOCK)
		__builtin_prefetch(code + j * ROWCODES_BLOCK, 1);
	__builtin_prefetch(scales + slot, 1);
}

void rowcodes_copy(int8_t *codes, float *scales, size_t to, size_t from, size_t dim)
{
	int8_t *dst = codes + code_offset(to, dim);
	const int8_t *src = codes + code_offset(from, dim);

	for (size_t j = 0; j < dim; j++)
		dst[j * ROWCODES_BLOCK] = src[j * ROWCODES_BLOCK];
	scales[to] = scales[from];
}

float rowcodes_margin(const float *vector, size_t dim)
{
	float sum = 0.0f;

	for (size_t j = 0; j < dim; j++)
		sum += fabsf(vector[j]);
	if (!isfinite(sum))
		return NAN;
	/* FLT_MIN: a zero query's margin stays positive, so a +inf scale
	 * gives +inf, not inf·0 */
	return sum * (0.5f + (float)(dim + 2) * 0x1p-14f) + FLT_MIN;
}

float rowcodes_base_score(const float *vector, const float *base, size_t dim)
{
	float dot = 0.0f, magnitude = 0.0f;

	if (base == NULL)
		return 0.0f;
	for (size_t j = 0; j < dim; j++) {
		dot += vector[j] * base[j];
		magnitude += fabsf(vector[j] * base[j]);
	}
	float score = dot + (float)dim * 0x1p-21f * magnitude;
	return isfinite(score) ? score : NAN;
}

/* What every kernel reads: the codes and the query. */
struct bound_args {
	const int8_t *codes;
	const float *scales;
	size_t dim;
	const float *vector;
	float margin, base_score;
};

/* The bounds of blocks [b, b + count) (count <= BLOCKS_AT_ONCE) into
 * upper; `next`, when not NULL, is the next group's codes to fetch ahead. */
typedef void bound_kernel(const struct bound_args *a, size_t b, size_t count, const int8_t *next,
			  float *upper);

/* Blocks bounded together: independent sums, so that one block's chain of
 * dim multiply-adds does not wait on its own latency. */
#define BLOCKS_AT_ONCE 4

/* The portable code (GCC vectorises the lanes, 4 floats wide). */
static void bound_portable(const struct bound_args *a, size_t b, size_t count, const int8_t *next,
			   float *upper)
{
	(void)next;
	for (size_t k = 0; k < count; k++) {
		const int8_t *restrict block = a->codes + (b + k) * a->dim * ROWCODES_BLOCK;
		const float *restrict scale = a->scales + (b + k) * ROWCODES_BLOCK;
		float sum[ROWCODES_BLOCK] = {0};

		for (size_t j = 0; j < a->dim; j++) {
			float q = a->vector[j];
			for (size_t l = 0; l < ROWCODES_BLOCK; l++)
				sum[l] += q * (float)block[j * ROWCODES_BLOCK + l];
		}
		for (size_t l = 0; l < ROWCODES_BLOCK; l++)
			upper[k * ROWCODES_BLOCK + l] =
			    a->base_score + scale[l] * (sum[l] + a->margin);
	}
}

/*
 * The same with AVX-512: one sign extension, conversion and fused
 * multiply-add per column of 16 rows, the group's sums in registers, and
 * the next group's codes (dim lines of 64 bytes: one per column) fetched
 * ahead, since a cell's codes come from memory. Measured on a 2-core EPYC
 * (bench_ivf, 1M items, nprobe 4, Cooperlake kernel): with the portable
 * loops the index made about 25k lists a CPU-second, with these 31k-35k
 * (perf had put a quarter of a search in the portable loops).
 */
#define AVX512_SUM(k, q, j)                                                                        \
	_mm512_fmadd_ps(                                                                           \
	    q,                                                                                     \
	    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(                               \
		(const __m128i *)(a->codes + ((b + (k)) * a->dim + (j)) * ROWCODES_BLOCK)))),      \
	    sum##k)
#define AVX512_STORE(k)                                                                            \
	_mm512_storeu_ps(upper + (k)*ROWCODES_BLOCK,                                               \
			 _mm512_fmadd_ps(_mm512_loadu_ps(a->scales + (b + (k)) * ROWCODES_BLOCK),  \
					 _mm512_add_ps(sum##k, m), base))
__attribute__((target("avx512f"))) static void
bound_avx512(const struct bound_args *a, size_t b, size_t count, const int8_t *next, float *upper)
{
	__m512 sum0 = _mm512_setzero_ps(), sum1 = sum0, sum2 = sum0, sum3 = sum0;
	__m512 m = _mm512_set1_ps(a->margin), base = _mm512_set1_ps(a->base_score);

	if (count == BLOCKS_AT_ONCE) {
		for (size_t j = 0; j < a->dim; j++) {
			__m512 q = _mm512_set1_ps(a->vector[j]);
			if (next != NULL)
				_mm_prefetch((const char *)next + j * 64, _MM_HINT_T0);
			sum0 = AVX512_SUM(0, q, j);
			sum1 = AVX512_SUM(1, q, j);
			sum2 = AVX512_SUM(2, q, j);
			sum3 = AVX512_SUM(3, q, j);
		}
		AVX512_STORE(0);
		AVX512_STORE(1);
		AVX512_STORE(2);
		AVX512_STORE(3);
		return;
	}
	for (; count > 0; count--, b++, upper += ROWCODES_BLOCK) {
		sum0 = _mm512_setzero_ps();
		for (size_t j = 0; j < a->dim; j++)
			sum0 = AVX512_SUM(0, _mm512_set1_ps(a->vector[j]), j);
		AVX512_STORE(0);
	}
}

/* And with AVX2 and FMA: each block as two halves of 8 rows. */
__attribute__((target("avx2,fma"))) static void
bound_avx2(const struct bound_args *a, size_t b, size_t count, const int8_t *next, float *upper)
{
	__m256 low[BLOCKS_AT_ONCE], high[BLOCKS_AT_ONCE];
	__m256 m = _mm256_set1_ps(a->margin), base = _mm256_set1_ps(a->base_score);

	for (size_t k = 0; k < count; k++)
		low[k] = high[k] = _mm256_setzero_ps();
	for (size_t j = 0; j < a->dim; j++) {
		__m256 q = _mm256_set1_ps(a->vector[j]);
		if (next != NULL)
			_mm_prefetch((const char *)next + j * 64, _MM_HINT_T0);
		for (size_t k = 0; k < count; k++) {
			const int8_t *column = a->codes + ((b + k) * a->dim + j) * ROWCODES_BLOCK;
			__m128i c = _mm_loadu_si128((const __m128i *)column);
			low[k] =
			    _mm256_fmadd_ps(q, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c)), low[k]);
			high[k] = _mm256_fmadd_ps(
			    q, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c, 8))),
			    high[k]);
		}
	}
	for (size_t k = 0; k < count; k++) {
		const float *scale = a->scales + (b + k) * ROWCODES_BLOCK;
		_mm256_storeu_ps(
		    upper + k * ROWCODES_BLOCK,
		    _mm256_fmadd_ps(_mm256_loadu_ps(scale), _mm256_add_ps(low[k], m), base));
		_mm256_storeu_ps(
		    upper + k * ROWCODES_BLOCK + 8,
		    _mm256_fmadd_ps(_mm256_loadu_ps(scale + 8), _mm256_add_ps(high[k], m), base));
	}
}

enum rowcodes_kernel rowcodes_best_kernel(void)
{
	if (__builtin_cpu_supports("avx512f"))
		return ROWCODES_KERNEL_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return ROWCODES_KERNEL_AVX2;
	return ROWCODES_KERNEL_PORTABLE;
}

const char *rowcodes_kernel_name(enum rowcodes_kernel kernel)
{
	switch (kernel) {
	case ROWCODES_KERNEL_AVX512: return "avx512";
	case ROWCODES_KERNEL_AVX2: return "avx2";
	case ROWCODES_KERNEL_PORTABLE: break;
	}
	return "portable";
}

void rowcodes_bound_with(enum rowcodes_kernel kernel, const int8_t *codes, const float *scales,
			 size_t first, size_t n, size_t dim, const float *vector, float margin,
			 float base_score, float *upper)
{
	const struct bound_args args = {codes, scales, dim, vector, margin, base_score};
	size_t blocks = (n + ROWCODES_BLOCK - 1) / ROWCODES_BLOCK, b0 = first / ROWCODES_BLOCK;
	bound_kernel *bound = bound_portable;

	if (kernel == ROWCODES_KERNEL_AVX512)
		bound = bound_avx512;
	else if (kernel == ROWCODES_KERNEL_AVX2)
		bound = bound_avx2;
	for (size_t b = 0; b < blocks; b += BLOCKS_AT_ONCE) {
		size_t count = blocks - b < BLOCKS_AT_ONCE ? blocks - b : BLOCKS_AT_ONCE;
		const int8_t *next =
		    b + count < blocks ? codes + (b0 + b + count) * dim * ROWCODES_BLOCK : NULL;
		bound(&args, b0 + b, count, next, upper + b * ROWCODES_BLOCK);
	}
}

void rowcodes_bound(const int8_t *codes, const float *scales, size_t first, size_t n, size_t dim,
		    const float *vector, float margin, float base_score, float *upper)
{
	rowcodes_bound_with(rowcodes_best_kernel(), codes, scales, first, n, dim, vector, margin,
			    base_score, upper);
}
