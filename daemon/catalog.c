/*
 * catalog: listing flags in a byte array indexed by item, categories in an
 * open-addressing table keyed by the name's xxhash (names are kept to settle
 * collisions), each with a growable member array.
 */
#include "catalog.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#define NO_CATEGORY UINT32_MAX

struct category {
	char *name;
	uint64_t hash;
	uint32_t *members;
	size_t count, capacity;
};

struct catalog {
	uint8_t *listed;       /* 1 = may be listed; items past the end were never named */
	uint32_t *category_of; /* per item: index into categories, or NO_CATEGORY */
	size_t item_capacity;

	struct category *categories;
	size_t category_count, category_capacity;
	uint32_t *slots; /* open addressing: index + 1 into categories, 0 = empty */
	size_t slot_count;
};

struct catalog *catalog_new(void)
{
	return calloc(1, sizeof(struct catalog));
}

void catalog_free(struct catalog *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->category_count; i++) {
		free(c->categories[i].name);
		free(c->categories[i].members);
	}
	free(c->categories);
	free(c->slots);
	free(c->listed);
	free(c->category_of);
	free(c);
}

static int ensure_item(struct catalog *c, uint32_t item)
{
	if ((size_t)item < c->item_capacity)
		return 0;
	size_t cap = c->item_capacity ? c->item_capacity : 4096;
	while (cap <= item)
		cap *= 2;
	uint8_t *listed = realloc(c->listed, cap);
	if (listed == NULL)
		return -1;
	c->listed = listed;
	uint32_t *category_of = realloc(c->category_of, cap * sizeof *category_of);
	if (category_of == NULL)
		return -1;
	c->category_of = category_of;
	memset(c->listed + c->item_capacity, 1, cap - c->item_capacity);
	for (size_t i = c->item_capacity; i < cap; i++)
		c->category_of[i] = NO_CATEGORY;
	c->item_capacity = cap;
	return 0;
}

int catalog_set_listed(struct catalog *c, uint32_t item, bool listed)
{
	if (ensure_item(c, item) != 0)
		return -1;
	c->listed[item] = listed;
	return 0;
}

bool catalog_listed(const struct catalog *c, uint32_t item)
{
	return (size_t)item >= c->item_capacity || c->listed[item];
}

size_t catalog_category_count(const struct catalog *c)
{
	return c->category_count;
}

const uint32_t *catalog_item_categories(const struct catalog *c, size_t *count)
{
	*count = c->item_capacity;
	return c->category_of;
}

long catalog_category_find(const struct catalog *c, const char *name)
{
	if (c->slot_count == 0)
		return -1;
	uint64_t hash = XXH3_64bits(name, strlen(name));
	for (size_t s = hash & (c->slot_count - 1); c->slots[s] != 0;
	     s = (s + 1) & (c->slot_count - 1)) {
		const struct category *cat = &c->categories[c->slots[s] - 1];
		if (cat->hash == hash && strcmp(cat->name, name) == 0)
			return (long)(c->slots[s] - 1);
	}
	return -1;
}

/* Rebuild the slot table at twice the size (kept at most half full). */
static int grow_slots(struct catalog *c)
{
	size_t n = c->slot_count ? c->slot_count * 2 : 64;
	uint32_t *slots = calloc(n, sizeof *slots);
	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < c->category_count; i++) {
		size_t s = c->categories[i].hash & (n - 1);
		while (slots[s] != 0)
			s = (s + 1) & (n - 1);
		slots[s] = (uint32_t)i + 1;
	}
	free(c->slots);
	c->slots = slots;
	c->slot_count = n;
	return 0;
}

/* The category's index, interned on first sight; -1 when out of memory. */
static long intern(struct catalog *c, const char *name)
{
	size_t len = strlen(name);
	uint64_t hash = XXH3_64bits(name, len);
	if (c->slot_count > 0) {
		for (size_t s = hash & (c->slot_count - 1); c->slots[s] != 0;
		     s = (s + 1) & (c->slot_count - 1)) {
			struct category *cat = &c->categories[c->slots[s] - 1];
			if (cat->hash == hash && strcmp(cat->name, name) == 0)
				return (long)(c->slots[s] - 1);
		}
	}
	if (2 * (c->category_count + 1) > c->slot_count && grow_slots(c) != 0)
		return -1;
	if (c->category_count == c->category_capacity) {
		size_t cap = c->category_capacity ? 2 * c->category_capacity : 16;
		struct category *grown = realloc(c->categories, cap * sizeof *grown);
		if (grown == NULL)
			return -1;
		c->categories = grown;
		c->category_capacity = cap;
	}
	char *copy = strdup(name);
	if (copy == NULL)
		return -1;
	size_t index = c->category_count++;
	c->categories[index] = (struct category){.name = copy, .hash = hash};
	size_t s = hash & (c->slot_count - 1);
	while (c->slots[s] != 0)
		s = (s + 1) & (c->slot_count - 1);
	c->slots[s] = (uint32_t)index + 1;
	return (long)index;
}

static void remove_member(struct category *cat, uint32_t item)
{
	for (size_t j = 0; j < cat->count; j++)
		if (cat->members[j] == item) {
			cat->members[j] = cat->members[--cat->count];
			return;
		}
}

void catalog_forget_item(struct catalog *c, uint32_t item)
{
	if ((size_t)item >= c->item_capacity)
		return;
	c->listed[item] = 1;
	if (c->category_of[item] != NO_CATEGORY)
		remove_member(&c->categories[c->category_of[item]], item);
	c->category_of[item] = NO_CATEGORY;
}

int catalog_set_category(struct catalog *c, uint32_t item, const char *category,
			 const uint32_t **members, size_t *count)
{
	if (ensure_item(c, item) != 0)
		return -1;
	long index = intern(c, category);
	if (index < 0)
		return -1;
	struct category *cat = &c->categories[index];
	if (c->category_of[item] != (uint32_t)index) {
		if (c->category_of[item] != NO_CATEGORY)
			remove_member(&c->categories[c->category_of[item]], item);
		if (cat->count == cat->capacity) {
			size_t cap = cat->capacity ? 2 * cat->capacity : 8;
			uint32_t *grown = realloc(cat->members, cap * sizeof *grown);
			if (grown == NULL)
				return -1;
			cat->members = grown;
			cat->capacity = cap;
		}
		cat->members[cat->count++] = item;
		c->category_of[item] = (uint32_t)index;
	}
	*members = cat->members;
	*count = cat->count;
	return 0;
}
