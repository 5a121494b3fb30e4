/*
 * changelog: user state follows its partition (scale-out, DESIGN.md).
 *
 * Several streamrecd share one consumer group; users shard by the events
 * topic's partitions. Every state commit also writes the user rows it
 * commits, keyed by user id, to a compacted changelog topic partitioned like
 * the events topic (a user's record goes to the partition its events come
 * from), followed by one offset marker per events partition the commit
 * covers: "the rows before me hold every event of this partition up to
 * this offset". An instance assigned a partition whose changelog marker is
 * ahead of its own stored offset (a partition another instance owned, or a
 * wiped state) restores that partition's users from the changelog, up to
 * the last marker, and resumes at the marker's offset: a rebalance loses
 * and doubles nothing (the offsets-in-state rule holds per partition).
 *
 * Rows are portable: a user row names items by this instance's indices, so
 * the record carries the ids of the items its row names and the restoring
 * instance maps them to its own (state_item_everywhere()).
 *
 * Record formats (key -> value), all integers big-endian:
 *   user id -> "SRU1" | u8 variant name length | name | u32 row length | row
 *              | u32 item count | (u16 length | item id) * count
 *   user id -> null (a tombstone: the embedding life cycle removed the user,
 *              written in the commit that deletes it; compaction then drops
 *              the user's rows, and a restore deletes a stale row it holds)
 *   "\0streamrec.offset" -> "SRO1" | i64 next offset of the events partition
 * A marker's key is the same in every partition; compaction keeps the
 * newest per partition.
 *
 * Threads: the loop's (the state calls changelog_on_user_row() from
 * state_commit_async() on the loop's thread).
 */
#ifndef STREAMREC_CHANGELOG_H
#define STREAMREC_CHANGELOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct daemon;
struct daemon_position;

struct changelog;

/** @returns the changelog of scaleout.changelog_topic, or NULL with errstr filled. */
struct changelog *changelog_new(struct daemon *d, char *errstr, size_t errstr_size);

void changelog_free(struct changelog *changelog);

/** @brief A user's event came from this events partition (its record goes there). */
int changelog_saw(struct changelog *changelog, uint32_t stable, int32_t partition);

/**
 * @brief The life cycle removed a user in the commit being built: its
 * tombstone goes to the partition its events came from when that partition
 * is assigned here (changelog_mark() then writes that partition's marker
 * even without events in the commit), and its index is unplaced. A user not
 * met since the start (its partition unknown: counted in
 * changelog_unplaced_total) or of a partition assigned elsewhere now gets
 * none.
 * @returns 0, or -1 with errstr filled.
 */
int changelog_forget(struct changelog *changelog, uint32_t stable, const char *user_id,
		     char *errstr, size_t errstr_size);

/** @brief Events partition `partition` was revoked: another instance owns its users now. */
void changelog_revoked(struct changelog *changelog, int32_t partition);

/** @brief The user of this stable index left the state: its partition is unknown again. */
void changelog_unplace(struct changelog *changelog, uint32_t stable);

/** @brief state_config.on_user_row (opaque: the daemon): one user row committed. */
void changelog_on_user_row(uint32_t stable, size_t variant, const void *row, size_t len,
			   void *opaque);

/**
 * @brief After a commit's rows: the offset markers of the events partitions
 * among positions (the commit's). @returns 0, or -1 with errstr filled.
 */
int changelog_mark(struct changelog *changelog, const struct daemon_position *positions,
		   size_t count, char *errstr, size_t errstr_size);

/**
 * @brief At assignment of events partition `partition` (which counts as
 * assigned here until changelog_revoked()): restores its users
 * from the changelog when the changelog is ahead of the local state.
 * @param local true with *last_offset the state's last consumed offset when
 * the state holds one
 * @returns 1 when restored (*last_offset: the marker's last consumed
 * offset), 0 when the local state is current or the changelog holds nothing
 * for the partition, -1 with errstr filled.
 */
int changelog_restore(struct changelog *changelog, int32_t partition, bool local,
		      int64_t *last_offset, char *errstr, size_t errstr_size);

#endif
