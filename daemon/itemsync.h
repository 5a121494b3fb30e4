/*
 * itemsync: item vectors shared between the instances of a group
 * (scale-out, DESIGN.md).
 *
 * Users shard by partition, so each instance learns item vectors from its
 * own users only. Every scaleout.item_sync_interval_ms each instance
 * publishes to scaleout.item_updates_topic the change of every item row it
 * moved since its last publication (model_share_take(): q, y and the bias),
 * keyed by item id and signed with its instance id; and every instance
 * consumes that topic whole (a group of its own, "GROUP.items.INSTANCE")
 * and folds the other instances' changes into its rows
 * (model_share_fold()): asynchronous mixing, as parameter servers do. The
 * topic's offsets live in the state with the rows they moved, so a crash
 * folds each change exactly once; a new instance folds the topic from its
 * start (keep its retention long, or seed the instance from another's
 * checkpoint). Co-visitation, popularity and trending counts are not
 * shared: each instance derives them from its own users' events (they are
 * per-user aggregates; see README, Scale-out).
 *
 * Record (key: the instance id, so one instance's changes stay in order),
 * at most 256 KiB, many items each: "SRI2" | u8 variant name length | name
 * | u8 instance id length | instance id | u32le n | u32le count | count *
 * (u16be item id length | item id | n little-endian floats).
 *
 * Threads: the loop's.
 */
#ifndef STREAMREC_ITEMSYNC_H
#define STREAMREC_ITEMSYNC_H

#include <stddef.h>

struct daemon;
struct itemsync;

/** @returns the item sharing of scaleout.item_updates_topic, started, or NULL with errstr. */
struct itemsync *itemsync_new(struct daemon *d, char *errstr, size_t errstr_size);

/** @brief Stops the timer and the consumer (publishing what is pending first). */
void itemsync_stop(struct itemsync *sync);

void itemsync_free(struct itemsync *sync);

/** @brief Publishes the item changes learned since the last publication. @returns 0 or -1. */
int itemsync_publish(struct itemsync *sync, char *errstr, size_t errstr_size);

#endif
