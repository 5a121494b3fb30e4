#include "idmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

/*
 * A slot: the index + 1 of its id in the low 32 bits (0: empty), and the
 * high 32 bits of the id's hash in the high ones, so that a probe passes
 * over other ids' slots without reading their strings (each a miss to
 * memory at a million ids: strlen() of ids met on the way was 2% of the
 * daemon's event loop at 1M users and 10k events/s).
 */
#define SLOT_INDEX(slot) ((uint32_t)(slot))
#define SLOT_TAG(slot)   ((uint32_t)((slot) >> 32))
#define HASH_TAG(hash)   ((uint32_t)((hash) >> 32))

struct idmap {
	uint64_t *slots; /* see SLOT_INDEX, SLOT_TAG */
	size_t mask;     /* slots - 1 */
	size_t count;
	char **ids; /* by index */
	size_t ids_capacity;
	uint32_t next;
};

struct idmap *idmap_new(void)
{
	struct idmap *map = calloc(1, sizeof *map);
	if (map == NULL)
		return NULL;
	map->mask = 1023;
	map->slots = calloc(map->mask + 1, sizeof *map->slots);
	if (map->slots == NULL) {
		free(map);
		return NULL;
	}
	return map;
}

void idmap_free(struct idmap *map)
{
	if (map == NULL)
		return;
	for (size_t i = 0; i < map->ids_capacity; i++)
		free(map->ids[i]);
	free(map->ids);
	free(map->slots);
	free(map);
}

/* The slot holding id (hash: its XXH3_64bits()), or the empty one where it goes. */
static size_t slot_of(const struct idmap *map, const char *id, size_t len, uint64_t hash)
{
	size_t slot = (size_t)hash & map->mask;
	for (;;) {
		uint64_t held = map->slots[slot];
		if (SLOT_INDEX(held) == 0)
			return slot;
		if (SLOT_TAG(held) == HASH_TAG(hash)) {
			const char *s = map->ids[SLOT_INDEX(held) - 1];
			if (strlen(s) == len && memcmp(s, id, len) == 0)
				return slot;
		}
		slot = (slot + 1) & map->mask;
	}
}

uint32_t idmap_find(const struct idmap *map, const char *id, size_t len)
{
	uint32_t held = SLOT_INDEX(map->slots[slot_of(map, id, len, XXH3_64bits(id, len))]);
	return held == 0 ? IDMAP_NONE : held - 1;
}

static int rehash(struct idmap *map)
{
	size_t mask = map->mask * 2 + 1;
	uint64_t *slots = calloc(mask + 1, sizeof *slots);
	if (slots == NULL)
		return -1;
	for (size_t s = 0; s <= map->mask; s++) {
		uint64_t held = map->slots[s];
		if (SLOT_INDEX(held) == 0)
			continue;
		const char *id = map->ids[SLOT_INDEX(held) - 1];
		size_t slot = (size_t)XXH3_64bits(id, strlen(id)) & mask;
		while (slots[slot] != 0)
			slot = (slot + 1) & mask;
		slots[slot] = held;
	}
	free(map->slots);
	map->slots = slots;
	map->mask = mask;
	return 0;
}

int idmap_put(struct idmap *map, const char *id, size_t len, uint32_t index)
{
	size_t slot;
	if (index == IDMAP_NONE)
		return -1;
	if ((map->count + 1) * 2 > map->mask + 1 && rehash(map) != 0)
		return -1;
	uint64_t hash = XXH3_64bits(id, len);
	slot = slot_of(map, id, len, hash);
	if (SLOT_INDEX(map->slots[slot]) != 0)
		return 0;
	if ((size_t)index >= map->ids_capacity) {
		size_t cap = map->ids_capacity ? map->ids_capacity : 1024;
		while (cap <= index)
			cap *= 2;
		char **ids = realloc(map->ids, cap * sizeof *ids);
		if (ids == NULL)
			return -1;
		memset(ids + map->ids_capacity, 0, (cap - map->ids_capacity) * sizeof *ids);
		map->ids = ids;
		map->ids_capacity = cap;
	}
	if (map->ids[index] != NULL)
		return -1; /* index already taken by another id */
	char *copy = malloc(len + 1);
	if (copy == NULL)
		return -1;
	memcpy(copy, id, len);
	copy[len] = '\0';
	map->ids[index] = copy;
	map->slots[slot] = (uint64_t)HASH_TAG(hash) << 32 | (index + 1);
	map->count++;
	if (index >= map->next)
		map->next = index + 1;
	return 0;
}

void idmap_remove(struct idmap *map, uint32_t index)
{
	if ((size_t)index >= map->ids_capacity || map->ids[index] == NULL)
		return;
	char *id = map->ids[index];
	size_t len = strlen(id);
	size_t hole = slot_of(map, id, len, XXH3_64bits(id, len));
	map->ids[index] = NULL;
	free(id);
	map->slots[hole] = 0;
	map->count--;
	/* backward-shift deletion (linear probing): move up every later entry
	 * of the chain whose home slot is not cyclically in (hole, slot] */
	for (size_t slot = (hole + 1) & map->mask; SLOT_INDEX(map->slots[slot]) != 0;
	     slot = (slot + 1) & map->mask) {
		const char *held = map->ids[SLOT_INDEX(map->slots[slot]) - 1];
		size_t home = (size_t)XXH3_64bits(held, strlen(held)) & map->mask;
		bool stays =
		    hole <= slot ? (hole < home && home <= slot) : (hole < home || home <= slot);
		if (stays)
			continue;
		map->slots[hole] = map->slots[slot];
		map->slots[slot] = 0;
		hole = slot;
	}
}

const char *idmap_id(const struct idmap *map, uint32_t index)
{
	return (size_t)index < map->ids_capacity ? map->ids[index] : NULL;
}

uint32_t idmap_next(const struct idmap *map)
{
	return map->next;
}

size_t idmap_count(const struct idmap *map)
{
	return map->count;
}
