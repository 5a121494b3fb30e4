/*
 * content: a linear map from a content space (embeddings of an item's text or
 * image, computed upstream or by a bundled model, dimension C) to the
 * model's item space (dimension d), learned online.
 *
 * Ridge regression kept as sufficient statistics: for every item whose
 * learned vector is trustworthy (the model folds an item in when it reaches
 * model_config.content_min_events positives), with x = [c, 1] (the content
 * vector and an intercept, C + 1 numbers) and q the item's vector then,
 *   A += x x^T   ((C+1) x (C+1), doubles)
 *   B += x q^T   ((C+1) x d, doubles)
 * and W solves (A + lambda I) W = B (LAPACK dposv_, Cholesky, from Debian's
 * OpenBLAS, which ships LAPACK but no LAPACKE header), so q ≈ W^T x.
 *
 * Why sufficient statistics and not SGD on W: an item is folded in once,
 * the solve is exact for everything folded so far whatever the order (a
 * replay gives the same W bit for bit), it needs no learning rate, and a
 * solve is cheap at these sizes: (C+1)^3/3 flops, 19 Mflop at C = 384,
 * a few milliseconds, done after every `refit_every` folds. The cost is
 * memory: (C+1)(C+1+d) doubles, 1.3 MB at C = 384, d = 32, per variant.
 * Why not refit on q as it moves on: folding keeps no per-item copy, so
 * state stays flat; an item's vector at its first M positives is what a
 * new item's start has to predict anyway.
 *
 * Threads: none of its own; its owner (the model) serialises calls.
 * model/ knows nothing of Kafka or RocksDB: export/import give bytes.
 */
#ifndef STREAMREC_CONTENT_H
#define STREAMREC_CONTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Largest content dimension accepted (a 4096-dim embedding is far above common models). */
#define CONTENT_MAX_DIM 4096

struct content_map;

/**
 * @returns an empty map from content_dim (1..CONTENT_MAX_DIM) to item_dim
 * with ridge lambda > 0, or NULL when out of memory or a bound is broken.
 */
struct content_map *content_map_new(size_t content_dim, size_t item_dim, double ridge);

void content_map_free(struct content_map *map);

/** @brief Folds one (content, item vector) pair into the statistics (not yet solved). */
void content_map_add(struct content_map *map, const float *content, const float *item_vector);

/**
 * @brief Solves W from the statistics folded so far.
 * @returns 0, or -1 with errstr filled (out of memory; the factorisation
 * cannot fail with lambda > 0 unless the statistics hold NaN).
 */
int content_map_solve(struct content_map *map, char *errstr, size_t errstr_size);

/** @returns pairs folded in so far. */
uint64_t content_map_pairs(const struct content_map *map);

/** @returns pairs folded in when W was last solved (0: never solved). */
uint64_t content_map_solved_pairs(const struct content_map *map);

/** @brief out (item_dim floats) = W^T [content, 1]; zeros before the first solve. */
void content_map_apply(const struct content_map *map, const float *content, float *out);

/** @returns the bytes content_map_export() writes. */
size_t content_map_bytes(const struct content_map *map);

/** @brief Serialises the statistics and W into buf (content_map_bytes() of room). */
void content_map_export(const struct content_map *map, void *buf);

/** @returns 0, or -1 with errstr filled when len or the dimensions do not match. */
int content_map_import(struct content_map *map, const void *buf, size_t len, char *errstr,
		       size_t errstr_size);

/** @returns a digest of the statistics and W (model_digest() folds it in). */
uint64_t content_map_digest(const struct content_map *map);

#endif
