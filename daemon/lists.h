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

#include <stddef.h>
#include <stdint.h>

#include "topk.h"

/** A user's last published list. */
struct lists_entry {
	uint8_t variant;
	uint16_t count, capacity;
	int64_t generated_at_ms, trigger_ts_ms;
	struct topk_result items[]; /**< item indices and scores, best first */
};

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
 * @brief Keep a user's new list (writer's thread; takes the write lock).
 * The user's id and the ids of items not met before are copied, through
 * item_id.
 * @returns 1 when it is the user's first list, 0 when it replaced one, -1
 * when out of memory (the user's previous list is kept).
 */
int lists_put(struct lists *lists, uint32_t stable, const char *user_id, size_t variant,
	      int64_t generated_at_ms, int64_t trigger_ts_ms, const struct topk_result *items,
	      size_t count, lists_item_id_fn item_id, void *opaque);

/** @returns the user's list, or NULL (writer's thread only: no lock). */
const struct lists_entry *lists_get(const struct lists *lists, uint32_t stable);

/** @returns the user id of a stable index with a list, or NULL (writer's thread only). */
const char *lists_user_id(const struct lists *lists, uint32_t stable);

/**
 * @brief The lookup API's answer for a user id, on any thread: 200 with
 * {"user_id","variant","generated_at","trigger_event_ts","items":[{"item_id",
 * "score"}...]}, or 404 with {"error","user"}; 500 when out of memory.
 * @returns the JSON text (malloc'd, the caller frees), or NULL when out of
 * memory; *status set.
 */
char *lists_render_json(struct lists *lists, const char *user_id, int *status);

#endif
