/*
 * statekeys: the byte layouts of the state's keys and records, in one place
 * (all integers big-endian, so RocksDB's byte order is numeric order):
 *   ids:   "u" + external id -> u32 index, "U" + u32 -> external id (users);
 *          "i" / "I" likewise for items;
 *          "T" + u32 -> i64 event time (ms) of the user's newest event
 *          (embedding life cycle: its idleness); "J" + u32 likewise for an
 *          item (its newest event or catalogue record); "R" + u32 -> u64
 *          number of the item removal that last freed an item index (kept
 *          for good); "P" + u32 -> u64 the item removal a user's stored row
 *          was checked against (daemon/state.c, purge_user_items())
 *   user:  u32 stable index + u8 variant id -> model user row
 *   item:  u32 index + u8 variant id -> model item row
 *   meta:  "globals/" + u8 variant id -> model globals;
 *          "content/" + u8 variant id -> the content map (model_export_content());
 *          "variant/" + name -> u8 id, u32 dim, u32 recent_items,
 *          u32 covis_neighbours; "list/" + u32 stable index -> the user's
 *          last published list (refresh.c's record); "batch/recent" ->
 *          u64 bytes of the recent commit batches; offsets (store/)
 */
#ifndef STREAMREC_STATEKEYS_H
#define STREAMREC_STATEKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "bytes.h"

#define STATE_ROW_KEY_BYTES 5
/** Meta key of the admission filter's sketch (model/sketch.h, sketch_export()). */
#define STATE_SKETCH_KEY "sketch/users"
/** Meta key of the item admission filter's sketch. */
#define STATE_ITEM_SKETCH_KEY "sketch/items"
/** Meta key of the recent commit batches' size: u64 bytes (daemon/state.c,
 * note_batch_size()). */
#define STATE_BATCH_RECENT_KEY "batch/recent"
/** Meta key prefix of a variant's content map; the key is it + u8 variant id. */
#define STATE_CONTENT_PREFIX "content/"
#define STATE_CONTENT_KEY_BYTES (sizeof STATE_CONTENT_PREFIX - 1 + 1)
/** Meta key prefix of a user's last published list; the key is it + u32 stable index. */
#define STATE_LIST_PREFIX "list/"
#define STATE_LIST_KEY_BYTES (sizeof STATE_LIST_PREFIX - 1 + 4)

/** @brief A user or item row's key: index, then the variant's id byte. */
static inline void state_key_row(unsigned char key[STATE_ROW_KEY_BYTES], uint32_t index,
				 unsigned char variant_id)
{
	bytes_put_be32(key, index);
	key[4] = variant_id;
}

/** An item's y row (model_export_item_y()) is in the item family under its
 * row key and this byte (after the q row, in key order). */
#define STATE_Y_ROW_SUFFIX    'y'
#define STATE_Y_ROW_KEY_BYTES (STATE_ROW_KEY_BYTES + 1)

/** @brief An item's y row key: its row key, then STATE_Y_ROW_SUFFIX. */
static inline void state_key_y_row(unsigned char key[STATE_Y_ROW_KEY_BYTES], uint32_t index,
				   unsigned char variant_id)
{
	state_key_row(key, index, variant_id);
	key[STATE_ROW_KEY_BYTES] = STATE_Y_ROW_SUFFIX;
}

/** @brief A variant's content map key. */
static inline void state_key_content(unsigned char key[STATE_CONTENT_KEY_BYTES],
				     unsigned char variant_id)
{
	for (size_t i = 0; i < STATE_CONTENT_KEY_BYTES - 1; i++)
		key[i] = (unsigned char)STATE_CONTENT_PREFIX[i];
	key[STATE_CONTENT_KEY_BYTES - 1] = variant_id;
}

#endif
