/*
 * content: the ridge-regression map from content space to item space
 * (see content.h for the method and why).
 */
#include "content.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "errstr.h"

/* LAPACK from Debian's OpenBLAS (column-major; the trailing length is
 * gfortran's hidden length of the character argument, ignored by OpenBLAS's
 * C implementations of these two). */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
		    size_t uplo_len);
extern void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a,
		    const int *lda, double *b, const int *ldb, int *info, size_t uplo_len);

struct content_map {
	size_t content_dim, item_dim, n; /* n = content_dim + 1 (the intercept) */
	double ridge;
	uint64_t pairs, solved_pairs;
	double *a;  /* n x n, full symmetric */
	double *b;  /* column-major n x item_dim: b[j * n + i] */
	float *w;   /* same layout as b: out[j] = sum_i w[j * n + i] x_i */
	double *x;  /* scratch: one [c, 1] */
};

struct content_map *content_map_new(size_t content_dim, size_t item_dim, double ridge)
{
	struct content_map *map;
	if (content_dim < 1 || content_dim > CONTENT_MAX_DIM || item_dim < 1 || !(ridge > 0))
		return NULL;
	map = calloc(1, sizeof *map);
	if (map == NULL)
		return NULL;
	map->content_dim = content_dim;
	map->item_dim = item_dim;
	map->n = content_dim + 1;
	map->ridge = ridge;
	map->a = calloc(map->n * map->n, sizeof *map->a);
	map->b = calloc(map->n * item_dim, sizeof *map->b);
	map->w = calloc(map->n * item_dim, sizeof *map->w);
	map->x = calloc(map->n, sizeof *map->x);
	if (map->a == NULL || map->b == NULL || map->w == NULL || map->x == NULL) {
		content_map_free(map);
		return NULL;
	}
	return map;
}

void content_map_free(struct content_map *map)
{
	if (map == NULL)
		return;
	free(map->a);
	free(map->b);
	free(map->w);
	free(map->x);
	free(map);
}

void content_map_add(struct content_map *map, const float *content, const float *item_vector)
{
	size_t n = map->n;
	for (size_t i = 0; i < map->content_dim; i++)
		map->x[i] = content[i];
	map->x[n - 1] = 1.0;
	for (size_t i = 0; i < n; i++) {
		double xi = map->x[i];
		double *row = map->a + i * n;
		for (size_t k = 0; k < n; k++)
			row[k] += xi * map->x[k];
	}
	for (size_t j = 0; j < map->item_dim; j++) {
		double qj = item_vector[j];
		double *col = map->b + j * n;
		for (size_t i = 0; i < n; i++)
			col[i] += map->x[i] * qj;
	}
	map->pairs++;
}

int content_map_solve(struct content_map *map, char *errstr, size_t errstr_size)
{
	size_t n = map->n, d = map->item_dim;
	int ni = (int)n, di = (int)d, info = 0;
	double *a = malloc(n * n * sizeof *a), *b = malloc(n * d * sizeof *b);
	if (a == NULL || b == NULL) {
		free(a);
		free(b);
		set_errstr(errstr, errstr_size, "out of memory solving the content map");
		return -1;
	}
	memcpy(a, map->a, n * n * sizeof *a);
	memcpy(b, map->b, n * d * sizeof *b);
	/* the intercept (last) is not shrunk: sentence embeddings share a large
	 * common part (cosines of 0.7 to 0.9 between unrelated texts), and
	 * shrinking the intercept with the rest pulled every prediction towards
	 * zero, far from the items (a bundled-model title landed nowhere near
	 * its kind); with at least one pair folded A's last diagonal is > 0 and
	 * A + lambda I' stays positive definite */
	for (size_t i = 0; i < n; i++)
		if (i + 1 < n || map->pairs == 0)
			a[i * n + i] += map->ridge;
	dpotrf_("L", &ni, a, &ni, &info, 1);
	if (info == 0)
		dpotrs_("L", &ni, &di, a, &ni, b, &ni, &info, 1);
	if (info != 0) {
		set_errstr(errstr, errstr_size,
			   "content map: Cholesky factorisation failed (LAPACK info %d): the "
			   "statistics hold a non-finite value",
			   info);
		free(a);
		free(b);
		return -1;
	}
	for (size_t k = 0; k < n * d; k++)
		map->w[k] = (float)b[k];
	map->solved_pairs = map->pairs;
	free(a);
	free(b);
	return 0;
}

uint64_t content_map_pairs(const struct content_map *map)
{
	return map->pairs;
}

uint64_t content_map_solved_pairs(const struct content_map *map)
{
	return map->solved_pairs;
}

void content_map_apply(const struct content_map *map, const float *content, float *out)
{
	size_t n = map->n;
	for (size_t j = 0; j < map->item_dim; j++) {
		const float *col = map->w + j * n;
		double sum = col[n - 1];
		for (size_t i = 0; i < map->content_dim; i++)
			sum += (double)col[i] * content[i];
		out[j] = (float)sum;
	}
}

struct map_header {
	uint32_t content_dim, item_dim;
	uint64_t pairs, solved_pairs;
	double ridge;
};

size_t content_map_bytes(const struct content_map *map)
{
	size_t n = map->n, d = map->item_dim;
	return sizeof(struct map_header) + n * n * sizeof(double) + n * d * sizeof(double) +
	       n * d * sizeof(float);
}

void content_map_export(const struct content_map *map, void *buf)
{
	unsigned char *out = buf;
	size_t n = map->n, d = map->item_dim;
	struct map_header h;
	memset(&h, 0, sizeof h);
	h.content_dim = (uint32_t)map->content_dim;
	h.item_dim = (uint32_t)d;
	h.pairs = map->pairs;
	h.solved_pairs = map->solved_pairs;
	h.ridge = map->ridge;
	memcpy(out, &h, sizeof h);
	out += sizeof h;
	memcpy(out, map->a, n * n * sizeof(double));
	out += n * n * sizeof(double);
	memcpy(out, map->b, n * d * sizeof(double));
	out += n * d * sizeof(double);
	memcpy(out, map->w, n * d * sizeof(float));
}

int content_map_import(struct content_map *map, const void *buf, size_t len, char *errstr,
		       size_t errstr_size)
{
	const unsigned char *in = buf;
	size_t n = map->n, d = map->item_dim;
	struct map_header h;
	if (len != content_map_bytes(map)) {
		set_errstr(errstr, errstr_size,
			   "content map: %zu bytes saved, %zu expected (content.dim or model.dim "
			   "changed since the state was written?)",
			   len, content_map_bytes(map));
		return -1;
	}
	memcpy(&h, in, sizeof h);
	if (h.content_dim != map->content_dim || h.item_dim != d) {
		set_errstr(errstr, errstr_size,
			   "content map: saved for content dimension %u and item dimension %u, "
			   "configured %zu and %zu",
			   h.content_dim, h.item_dim, map->content_dim, d);
		return -1;
	}
	in += sizeof h;
	map->pairs = h.pairs;
	map->solved_pairs = h.solved_pairs;
	map->ridge = h.ridge;
	memcpy(map->a, in, n * n * sizeof(double));
	in += n * n * sizeof(double);
	memcpy(map->b, in, n * d * sizeof(double));
	in += n * d * sizeof(double);
	memcpy(map->w, in, n * d * sizeof(float));
	return 0;
}

static uint64_t mix(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001B3ULL;
	return h;
}

uint64_t content_map_digest(const struct content_map *map)
{
	size_t n = map->n, d = map->item_dim;
	uint64_t h = 0xCBF29CE484222325ULL;
	h = mix(h, &map->pairs, sizeof map->pairs);
	h = mix(h, &map->solved_pairs, sizeof map->solved_pairs);
	h = mix(h, map->a, n * n * sizeof(double));
	h = mix(h, map->b, n * d * sizeof(double));
	return mix(h, map->w, n * d * sizeof(float));
}
