/*
 * catalog: what the daemon knows of the catalogue (the compacted items
 * topic): whether each item may be listed, and which items share a category.
 *
 * The items topic is re-read from its start on every start, so this lives
 * in memory only. An item the catalogue never named is listed; one marked
 * out of stock or retired (a tombstone) is not. Categories are interned by
 * name; an item that moves to another category is counted in its new one
 * from then on.
 */
#ifndef STREAMREC_CATALOG_H
#define STREAMREC_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct catalog;

/** @returns an empty catalogue, or NULL when out of memory. */
struct catalog *catalog_new(void);
void catalog_free(struct catalog *catalog);

/**
 * @brief Record that item (a dense item index) may or may not be listed.
 * @returns 0, or -1 when out of memory.
 */
int catalog_set_listed(struct catalog *catalog, uint32_t item, bool listed);

/** @brief Forget what the catalogue says of an item index (the item left the
 * state: lifecycle): as if never named, so its next owner starts clean. */
void catalog_forget_item(struct catalog *catalog, uint32_t item);

/** @returns whether item may be listed (true for items never named). */
bool catalog_listed(const struct catalog *catalog, uint32_t item);

/**
 * @brief Put item in the named category (moving it out of its previous one).
 * @param members receives the category's items, item included, valid until
 *        the next call that changes the catalogue.
 * @param count receives their number.
 * @returns 0, or -1 when out of memory.
 */
int catalog_set_category(struct catalog *catalog, uint32_t item, const char *category,
			 const uint32_t **members, size_t *count);

/** @returns the number of distinct categories seen. */
size_t catalog_category_count(const struct catalog *catalog);

/**
 * @brief Each item's category index (0 .. catalog_category_count() - 1), or
 * UINT32_MAX (LISTRULES_NO_CATEGORY) for an item in none; *count items, past
 * which no item has a category. Valid until the catalogue next changes.
 */
const uint32_t *catalog_item_categories(const struct catalog *catalog, size_t *count);

/** @returns the index of the named category, or -1 when the catalogue never named it. */
long catalog_category_find(const struct catalog *catalog, const char *category);

#endif
