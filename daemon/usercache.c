#include "usercache.h"

#include "errstr.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

/* One pending row: a variant's row of a user, evicted in eviction `group`
 * (the index of the group's first entry); rows of one eviction are adjacent. */
struct pending_entry {
	uint32_t stable;
	uint32_t variant;
	size_t group;
	size_t offset, len; /* in the arena */
};

struct usercache {
	struct model *models[STATE_MAX_VARIANTS];
	size_t variant_count;
	/* per stable index: its slot (USERCACHE_NONE when not in memory) and
	 * 1 + the group of its newest pending rows (0: none) */
	uint32_t *slot_of;
	size_t *pending_of;
	size_t stable_capacity;
	/* per slot: its user, the CLOCK bit, the pin */
	uint32_t *user_of;
	uint8_t *referenced, *pinned;
	/* slots holding no user, reused first (every such slot is here) */
	uint32_t *free_slots;
	size_t free_count;
	size_t slots, slots_capacity, max_slots, hand, pin_count;
	struct pending_entry *entries;
	size_t entry_count, entry_capacity;
	unsigned char *arena;
	size_t arena_used, arena_capacity;
};

struct usercache *usercache_new(struct model *const *models, size_t variant_count, size_t max_slots)
{
	if (variant_count == 0 || variant_count > STATE_MAX_VARIANTS)
		return NULL;
	struct usercache *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	memcpy(c->models, models, variant_count * sizeof *models);
	c->variant_count = variant_count;
	c->max_slots = max_slots;
	return c;
}

void usercache_free(struct usercache *cache)
{
	if (cache == NULL)
		return;
	free(cache->slot_of);
	free(cache->pending_of);
	free(cache->user_of);
	free(cache->referenced);
	free(cache->pinned);
	free(cache->free_slots);
	free(cache->entries);
	free(cache->arena);
	free(cache);
}

size_t usercache_user_bytes(struct model *const *models, size_t variant_count)
{
	/* the id map entry (64), slot_of, user_of, pending_of, the CLOCK bit, the pin */
	size_t bytes = 64 + 2 * sizeof(uint32_t) + sizeof(size_t) + 2;
	for (size_t v = 0; v < variant_count; v++)
		bytes += model_user_memory_bytes(models[v]);
	return bytes;
}

size_t usercache_slots_for_bytes(struct model *const *models, size_t variant_count, size_t bytes)
{
	size_t slots = bytes / usercache_user_bytes(models, variant_count);
	return slots > 0 ? slots : 1;
}

size_t usercache_max_slots(const struct usercache *cache)
{
	return cache->max_slots;
}

void usercache_set_max_slots(struct usercache *cache, size_t max_slots)
{
	cache->max_slots = max_slots;
}

size_t usercache_slot_count(const struct usercache *cache)
{
	return cache->slots;
}

uint32_t usercache_slot_of(const struct usercache *cache, uint32_t stable)
{
	return (size_t)stable < cache->stable_capacity ? cache->slot_of[stable] : USERCACHE_NONE;
}

uint32_t usercache_user_of(const struct usercache *cache, uint32_t slot)
{
	return (size_t)slot < cache->slots ? cache->user_of[slot] : USERCACHE_NONE;
}

static int ensure_stable(struct usercache *c, uint32_t stable)
{
	if ((size_t)stable < c->stable_capacity)
		return 0;
	size_t cap = c->stable_capacity ? c->stable_capacity : 1024;
	while (cap <= stable)
		cap *= 2;
	uint32_t *slot_of = realloc(c->slot_of, cap * sizeof *slot_of);
	if (slot_of == NULL)
		return -1;
	c->slot_of = slot_of;
	size_t *pending_of = realloc(c->pending_of, cap * sizeof *pending_of);
	if (pending_of == NULL)
		return -1;
	c->pending_of = pending_of;
	for (size_t i = c->stable_capacity; i < cap; i++) {
		c->slot_of[i] = USERCACHE_NONE;
		c->pending_of[i] = 0;
	}
	c->stable_capacity = cap;
	return 0;
}

static int grow_slots(struct usercache *c)
{
	size_t cap = c->slots_capacity ? c->slots_capacity * 2 : 1024;
	uint32_t *user_of = realloc(c->user_of, cap * sizeof *user_of);
	if (user_of == NULL)
		return -1;
	c->user_of = user_of;
	uint8_t *referenced = realloc(c->referenced, cap);
	if (referenced == NULL)
		return -1;
	c->referenced = referenced;
	uint8_t *pinned = realloc(c->pinned, cap);
	if (pinned == NULL)
		return -1;
	c->pinned = pinned;
	uint32_t *free_slots = realloc(c->free_slots, cap * sizeof *free_slots);
	if (free_slots == NULL)
		return -1;
	c->free_slots = free_slots;
	c->slots_capacity = cap;
	return 0;
}

static bool slot_dirty(const struct usercache *c, uint32_t slot)
{
	for (size_t v = 0; v < c->variant_count; v++)
		if (model_user_is_dirty(c->models[v], slot))
			return true;
	return false;
}

/* Appends the rows of the user in slot to the pending buffer, one entry per
 * variant that holds a row; @returns 0, or -1 when out of memory. */
static int set_aside(struct usercache *c, uint32_t slot)
{
	uint32_t stable = c->user_of[slot];
	size_t group = c->entry_count;
	for (size_t v = 0; v < c->variant_count; v++) {
		struct model *m = c->models[v];
		if (!model_user_has_row(m, slot))
			continue;
		size_t len = model_export_user(m, slot, NULL, 0);
		if (c->arena_used + len > c->arena_capacity) {
			size_t cap = c->arena_capacity ? c->arena_capacity : 1 << 16;
			while (cap < c->arena_used + len)
				cap *= 2;
			unsigned char *arena = realloc(c->arena, cap);
			if (arena == NULL)
				goto out_undo;
			c->arena = arena;
			c->arena_capacity = cap;
		}
		if (c->entry_count == c->entry_capacity) {
			size_t cap = c->entry_capacity ? c->entry_capacity * 2 : 256;
			struct pending_entry *entries = realloc(c->entries, cap * sizeof *entries);
			if (entries == NULL)
				goto out_undo;
			c->entries = entries;
			c->entry_capacity = cap;
		}
		model_export_user(m, slot, c->arena + c->arena_used, len);
		c->entries[c->entry_count++] = (struct pending_entry){.stable = stable,
								      .variant = (uint32_t)v,
								      .group = group,
								      .offset = c->arena_used,
								      .len = len};
		c->arena_used += len;
	}
	if (c->entry_count > group)
		c->pending_of[stable] = group + 1;
	return 0;
out_undo:
	while (c->entry_count > group)
		c->arena_used = c->entries[--c->entry_count].offset;
	return -1;
}

/* A free slot: a new one while under the bound, else the CLOCK sweep's
 * victim among the unpinned slots (a dirty one is set aside first). */
static int take_slot(struct usercache *c, uint32_t *slot, char *errstr, size_t errstr_size)
{
	if (c->free_count > 0) {
		*slot = c->free_slots[--c->free_count];
		return 0;
	}
	if (c->max_slots == 0 || c->slots < c->max_slots) {
		if (c->slots == c->slots_capacity && grow_slots(c) != 0)
			goto out_nomem;
		*slot = (uint32_t)c->slots++;
		return 0;
	}
	if (c->pin_count >= c->slots) {
		set_errstr(errstr, errstr_size,
			   "user cache of %zu users: every one is pinned, none can be evicted",
			   c->slots);
		return -1;
	}
	/* two turns at most: the first may only clear reference bits */
	for (size_t step = 0; step <= 2 * c->slots; step++) {
		uint32_t candidate = (uint32_t)(c->hand % c->slots);
		c->hand = (c->hand + 1) % c->slots;
		if (c->pinned[candidate])
			continue;
		if (c->user_of[candidate] == USERCACHE_NONE)
			continue; /* on the free list, which is empty here */
		if (c->referenced[candidate]) {
			c->referenced[candidate] = 0;
			continue;
		}
		if (slot_dirty(c, candidate) && set_aside(c, candidate) != 0)
			goto out_nomem;
		for (size_t v = 0; v < c->variant_count; v++)
			model_forget_user(c->models[v], candidate);
		c->slot_of[c->user_of[candidate]] = USERCACHE_NONE;
		c->user_of[candidate] = USERCACHE_NONE;
		*slot = candidate;
		return 0;
	}
	set_errstr(errstr, errstr_size, "user cache of %zu users: no user can be evicted",
		   c->slots);
	return -1;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory in the user cache");
	return -1;
}

int usercache_place(struct usercache *cache, uint32_t stable, uint32_t *slot, bool *placed,
		    char *errstr, size_t errstr_size)
{
	struct usercache *c = cache;
	if (ensure_stable(c, stable) != 0) {
		set_errstr(errstr, errstr_size, "out of memory growing the user cache");
		return -1;
	}
	*placed = false;
	if (c->slot_of[stable] != USERCACHE_NONE) {
		*slot = c->slot_of[stable];
		c->referenced[*slot] = 1;
		return 0;
	}
	if (take_slot(c, slot, errstr, errstr_size) != 0)
		return -1;
	c->slot_of[stable] = *slot;
	c->user_of[*slot] = stable;
	c->referenced[*slot] = 1;
	c->pinned[*slot] = 0;
	*placed = true;
	return 0;
}

void usercache_drop(struct usercache *cache, uint32_t stable)
{
	uint32_t slot = usercache_slot_of(cache, stable);
	if (slot == USERCACHE_NONE)
		return;
	for (size_t v = 0; v < cache->variant_count; v++)
		model_forget_user(cache->models[v], slot);
	cache->slot_of[stable] = USERCACHE_NONE;
	cache->user_of[slot] = USERCACHE_NONE;
	cache->referenced[slot] = 0;
	if (cache->pinned[slot]) {
		cache->pinned[slot] = 0;
		cache->pin_count--;
	}
	cache->free_slots[cache->free_count++] = slot;
}

void usercache_forget(struct usercache *cache, uint32_t stable)
{
	usercache_drop(cache, stable);
	if ((size_t)stable < cache->stable_capacity)
		cache->pending_of[stable] = 0; /* its set-aside rows are skipped */
}

size_t usercache_pin_capacity(const struct usercache *cache)
{
	if (cache->max_slots == 0)
		return SIZE_MAX;
	return cache->slots > cache->max_slots ? cache->slots : cache->max_slots;
}

void usercache_pin(struct usercache *cache, uint32_t slot)
{
	if ((size_t)slot < cache->slots && !cache->pinned[slot]) {
		cache->pinned[slot] = 1;
		cache->pin_count++;
	}
}

void usercache_unpin_all(struct usercache *cache)
{
	if (cache->pin_count > 0)
		memset(cache->pinned, 0, cache->slots);
	cache->pin_count = 0;
}

bool usercache_pinned(const struct usercache *cache, uint32_t slot)
{
	return (size_t)slot < cache->slots && cache->pinned[slot];
}

bool usercache_has_pending(const struct usercache *cache, uint32_t stable)
{
	return (size_t)stable < cache->stable_capacity && cache->pending_of[stable] != 0;
}

int usercache_pending_row(const struct usercache *cache, uint32_t stable, size_t variant,
			  const void **row, size_t *len)
{
	if (!usercache_has_pending(cache, stable))
		return 0;
	size_t group = cache->pending_of[stable] - 1;
	for (size_t i = group; i < cache->entry_count && cache->entries[i].group == group; i++)
		if (cache->entries[i].variant == variant) {
			*row = cache->arena + cache->entries[i].offset;
			*len = cache->entries[i].len;
			return 1;
		}
	return 0;
}

int usercache_pending_foreach(const struct usercache *cache,
			      int (*fn)(uint32_t stable, size_t variant, const void *row,
					size_t len, void *ctx),
			      void *ctx)
{
	for (size_t i = 0; i < cache->entry_count; i++) {
		const struct pending_entry *e = &cache->entries[i];
		if (cache->pending_of[e->stable] != e->group + 1)
			continue; /* superseded by a later eviction of the same user */
		int rc = fn(e->stable, e->variant, cache->arena + e->offset, e->len, ctx);
		if (rc != 0)
			return rc;
	}
	return 0;
}

void usercache_pending_clear(struct usercache *cache)
{
	for (size_t i = 0; i < cache->entry_count; i++)
		cache->pending_of[cache->entries[i].stable] = 0;
	cache->entry_count = 0;
	cache->arena_used = 0;
}

size_t usercache_pending_bytes(const struct usercache *cache)
{
	return cache->arena_used;
}
