/*
 * idmap: external string ids <-> dense internal indices, in memory.
 *
 * Indices are handed out 0, 1, 2, ... in first-seen order (or set when ids
 * are restored from the state), so model rows can live in arrays. Strings
 * are copied into the map. Open addressing on XXH3 hashes.
 */
#ifndef STREAMREC_IDMAP_H
#define STREAMREC_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDMAP_NONE UINT32_MAX

struct idmap;

/** @returns an empty map, or NULL when out of memory. */
struct idmap *idmap_new(void);

void idmap_free(struct idmap *map);

/** @returns id's index, or IDMAP_NONE when the map does not hold it. */
uint32_t idmap_find(const struct idmap *map, const char *id, size_t len);

/**
 * @brief Hold id at index (index may be beyond the current count: gaps are
 * allowed while restoring). An id already held keeps its index.
 * @returns 0, or -1 when out of memory.
 */
int idmap_put(struct idmap *map, const char *id, size_t len, uint32_t index);

/**
 * @brief Forget the id at index (its string is freed; index may be handed
 * to another id by a later idmap_put()). Nothing happens when index holds
 * no id. Deletion shifts later entries of the probe chain back, so lookups
 * stay exact and no tombstones accumulate on an endless stream of churning
 * ids.
 */
void idmap_remove(struct idmap *map, uint32_t index);

/** @returns the id at index (NUL-terminated), or NULL. */
const char *idmap_id(const struct idmap *map, uint32_t index);

/** @returns one past the highest index held (the next index to hand out). */
uint32_t idmap_next(const struct idmap *map);

/** @returns how many ids the map holds. */
size_t idmap_count(const struct idmap *map);

#endif
