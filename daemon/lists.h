/*
 * lists: every user's last published list, written on the event loop's
 * thread and read on the lookup API's thread (daemon/api.h).
 *
 * The loop's thread is the only writer: lists_put() (a list just published,
 * or restored from the state at start) takes the write lock; its own reads
 * (lists_get(), for A/B hits and the state's copy) need no lock, since
 * nothing else writes. Any other thread reads through lists_render_json()
 * under the read lock, so the API never waits for learning and learning
 * waits for the API only while one list is copied in.
 *
 * Memory: per user with a list, one entry of 24 + 8·k bytes (item index and
 * score per rank) and a copy of the user id in a map; per item ever listed,
 * a copy of its id (the API renders ids without the state, which is the
 * loop's alone).
 */
#ifndef STREAMREC_LISTS_H
#define STREAMREC_LISTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topk.h"

/** Why an item is listed (model_explain(), and the list rule that placed it). */
struct lists_why {
	uint32_t because_item; /**< the recent item behind it; UINT32_MAX: none */
	uint8_t reason;        /**< enum model_reason; MODEL_REASON_COUNT: unexplained */
	/** enum listrules_rule: a rule other than LISTRULES_RANKED names the reason shown */
	uint8_t rule;
};

/** A user's last published list. */
struct lists_entry {
	uint8_t variant;
	uint16_t count, capacity;
	uint64_t list_id; /**< as published (16 hex digits); 0: none */
	int64_t generated_at_ms, trigger_ts_ms;
	/** item indices and scores, best first; then capacity struct lists_why */
	struct topk_result items[];
};

/** @returns the entry's explanations, why[n] for items[n]. */
static inline const struct lists_why *lists_entry_why(const struct lists_entry *entry)
{
	return (const struct lists_why *)(const void *)(entry->items + entry->capacity);
}

struct lists;

/**
 * @brief Empty lists for variant_count variants, whose names (copied) the
 * JSON names. @returns the lists, or NULL when out of memory.
 */
struct lists *lists_new(const char *const *variant_names, size_t variant_count);

void lists_free(struct lists *lists);

/** Gives an item's id (the state's), on the writer's thread. */
typedef const char *(*lists_item_id_fn)(uint32_t item, void *opaque);

/**
 * @brief Keep a user's new list (writer's thread; takes the write lock),
 * with its id and each item's explanation (why NULL: unexplained, as a list
 * restored from the state). The user's id and the ids of items not met
 * before (listed or behind an explanation) are copied, through item_id.
 * @returns 1 when it is the user's first list, 0 when it replaced one, -1
 * when out of memory (the user's previous list is kept).
 */
int lists_put(struct lists *lists, uint32_t stable, const char *user_id, size_t variant,
	      uint64_t list_id, int64_t generated_at_ms, int64_t trigger_ts_ms,
	      const struct topk_result *items, const struct lists_why *why, size_t count,
	      lists_item_id_fn item_id, void *opaque);

/**
 * @brief Forget a user's list (writer's thread; takes the write lock): the
 * user expired or was evicted (embedding life cycle), and its stable index
 * may be handed to another user. Nothing happens when it has none.
 */
void lists_remove(struct lists *lists, uint32_t stable);

/**
 * @brief Drop removed items from every list kept (writer's thread; takes
 * the write lock): items for which gone(item) holds leave the lists (the
 * others close up, in order), an explanation naming one loses its
 * because_item, and the ids copied for indices below item_count that are
 * gone are forgotten, so that an item taking a freed index later is shown
 * by its own id. changed(stable) is called for each list that lost
 * anything (under the lock: it must not call back into lists).
 * @returns how many lists changed.
 */
size_t lists_forget_items(struct lists *lists, size_t item_count,
			  bool (*gone)(uint32_t item, void *opaque),
			  void (*changed)(uint32_t stable, void *opaque), void *opaque);

/** @returns the user's list, or NULL (writer's thread only: no lock). */
const struct lists_entry *lists_get(const struct lists *lists, uint32_t stable);

/** @returns the user id of a stable index with a list, or NULL (writer's thread only). */
const char *lists_user_id(const struct lists *lists, uint32_t stable);

/**
 * @brief The lookup API's answer for a user id, on any thread: 200 with
 * {"user_id","variant","list_id","generated_at","trigger_event_ts",
 * "items":[{"item_id","score","reason","because_item"}...]} (list_id, reason
 * and because_item when known; the reason is the list rule's name,
 * listrules_rule_name(), when a rule placed the item), or 404 with {"error","user"}; 500 when out
 * of memory.
 * @returns the JSON text (malloc'd, the caller frees), or NULL when out of
 * memory; *status set.
 */
char *lists_render_json(struct lists *lists, const char *user_id, int *status);

#endif
