/*
 * state: the engine's durable state, wiring the models (model/) to RocksDB
 * (store/).
 *
 * The models learn in memory. state_commit() writes, in ONE atomic batch,
 * every row changed since the last commit (write-behind: a row changed a
 * thousand times is written once), the ids first met since, each model's
 * globals and the offsets of the events those changes came from. After a
 * crash the state and the offsets always match, so resuming from the stored
 * offset + 1 applies every event exactly once.
 *
 * Items are loaded at open (the item matrix is the top-k engine's operand);
 * users are loaded when first met again, into a cache that can be bounded:
 * the user index handed to the models is a cache slot, and a user's rows are
 * saved under its stable index. Keys (all big-endian; statekeys.h encodes them):
 *   ids:   "u" + external id -> u32 index, "U" + u32 -> external id (users);
 *          "i" / "I" likewise for items
 *   user:  u32 index + u8 variant -> model user row
 *   item:  u32 index + u8 variant -> model item row
 *   meta:  "globals/" + u8 variant -> model globals; "variants" -> count;
 *          "list/" + u32 index -> the user's last published list (a record of
 *          the refresher's, opaque here); offsets (store/)
 */
#ifndef STREAMREC_STATE_H
#define STREAMREC_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "store.h"

#define STATE_MAX_VARIANTS 16
/** Bytes of a variant's name with its NUL. */
#define STATE_VARIANT_NAME_BYTES 65
/** The name a new state gives its one variant when the configuration names none. */
#define STATE_DEFAULT_VARIANT "model"

struct state_config {
	const char *dir;
	const struct model_config *variants; /**< one model per variant */
	size_t variant_count;
	/** Each variant's name (NULL: one variant, the first stored one, or
	 * STATE_DEFAULT_VARIANT in a new state; state_variant_name() tells which). The state keeps
	 * variants by name: on open, a stored variant of the same name is
	 * restored (its layout, dim/recent_items/covis_neighbours, must match),
	 * a new name starts cold, or as a copy of the stored variant named in
	 * start_from[v] (NULL or "" : cold), and a stored variant the
	 * configuration no longer names is kept on disk, unused. */
	const char *const *variant_names;
	const char *const *start_from;
	/** Receives one line per variant decision ("variant X: new, cold"); may be NULL. */
	void (*log)(const char *line, void *opaque);
	void *log_opaque;
	bool sync_commits; /**< fsync the WAL on every commit */
	/** How much lower the state writer's CPU priority is than the loop's (a
	 * nice increment, 0..19); above 0, RocksDB's flush and compaction
	 * threads go to its lowest (store_config.low_priority_background). */
	unsigned nice;
	/** Directory of RocksDB's LOG file (NULL or "": inside dir). */
	const char *log_dir;
	/** Users kept in memory at most (0: no bound); the least recently used
	 * unpinned ones are evicted (a changed one's rows set aside for the next
	 * commit, never committed on the spot) and restored when met again. */
	size_t user_cache_users;
	/** Or the same bound in bytes of memory (0: none); the smaller bound wins. */
	size_t user_cache_bytes;
	/** RocksDB's block cache (0: the store's default, 1 GiB). */
	size_t block_cache_bytes;
	/**
	 * Called (on the committing thread, inside state_commit_async()) with
	 * every user row a commit writes, under the user's stable index and its
	 * variant: the changelog of user state for scale-out (daemon/changelog).
	 * The row is valid during the call only. NULL: none.
	 */
	void (*on_user_row)(uint32_t stable, size_t variant, const void *row, size_t len,
			    void *opaque);
	void *on_user_row_opaque;
	/**
	 * Embedding life cycle: a user id is admitted (given a row) at its
	 * admit_after-th sighting, counted approximately (model/sketch.h, kept
	 * in the state with each commit); until then its events count for its
	 * items' popularity and trending (model_count_item()) and train
	 * nothing. 0 or 1: every user is admitted at once.
	 */
	unsigned admit_after;
	/**
	 * Item admission: an item id gets an index and rows at its
	 * item_admit_after-th sighting in an event (counted approximately like
	 * users', in a sketch of its own kept with each commit). Until then an
	 * event naming it trains nothing and is counted
	 * (state_lifecycle_counts.unadmitted_item_events); the item has no row
	 * and is not listable. A catalogue record (state_item()) admits an item
	 * at once. 0 or 1: every item is admitted at once.
	 */
	unsigned item_admit_after;
	/**
	 * Prepare the commit batches when opening: room for the size the last
	 * run's recent commits had, its pages written before the first commit
	 * (daemon/state.c, prepare_batches()), so that the first commits after
	 * a start do not fault their batches in on the committing thread.
	 * streamrecd sets it; a one-off tool that commits little does not.
	 */
	bool prepare_batches;
	/** Open an existing state without writing to it (streamrecd --check):
	 * variants are matched but new ones are not recorded; see store.h. */
	bool read_only;
	/** A configured variant the state does not hold is an error naming the
	 * ones it holds, instead of a new, cold variant (inspect, digest). */
	bool stored_variants_only;
	/** A directory holding no state is an error, not a new state (store.h). */
	bool must_exist;
};

struct state;

/**
 * @brief Open (or create) the state directory and restore every variant's
 * model: items and globals now, users when met.
 * @returns the state, or NULL with errstr naming the directory and the cause
 * (a foreign or corrupt directory, another format version, a model shape that
 * does not match the stored rows).
 */
struct state *state_open(const struct state_config *config, char *errstr, size_t errstr_size);

/** @brief Close without committing (call state_commit first to keep changes). */
void state_close(struct state *state);

/** @returns variant's model (owned by the state). */
struct model *state_model(struct state *state, size_t variant);

size_t state_variant_count(const struct state *state);

/** @returns the name variant is stored under (the configured one, or the adopted one). */
const char *state_variant_name(const struct state *state, size_t variant);

/**
 * @brief The model index (cache slot) of a user id, restoring the user's
 * rows from the store when met again, or handing out a new user (saved with
 * the next commit). The slot is valid until the next state_user() or
 * state_user_by_stable() call, unless pinned (state_user_pin()).
 * @param hash set to the id's hash (seeds a new user's first vectors)
 * @returns 0, or -1 with errstr filled (read error, out of memory).
 */
int state_user(struct state *state, const char *id, uint32_t *index, uint64_t *hash, char *errstr,
	       size_t errstr_size);

/** @brief The index of an item id (items are all in memory). */
int state_item(struct state *state, const char *id, uint32_t *index, uint64_t *hash, char *errstr,
	       size_t errstr_size);

/** @returns the stable index of the user in slot (what survives eviction and restarts). */
uint32_t state_user_stable(const struct state *state, uint32_t slot);

/**
 * @brief The slot of a user known by stable index, restoring its rows when
 * it was evicted. @returns 0, or -1 with errstr filled (unknown index).
 */
int state_user_by_stable(struct state *state, uint32_t stable, uint32_t *slot, char *errstr,
			 size_t errstr_size);

/**
 * @brief state_user_by_stable(), and pin the slot: no later lookup evicts it
 * until state_user_unpin_all(), so a caller may hold several slots at once
 * (a refresh batch). At most state_user_pin_capacity() users are pinned at
 * once; one more is refused (-1, errstr filled) when the cache is full of
 * pinned users.
 */
int state_user_pin(struct state *state, uint32_t stable, uint32_t *slot, char *errstr,
		   size_t errstr_size);

/** @brief Release every pin (the slots stay cached, evictable again). */
void state_user_unpin_all(struct state *state);

/** @returns how many users may be pinned at once (SIZE_MAX: no bound). */
size_t state_user_pin_capacity(const struct state *state);

/** @returns the external id of a user's stable index, or NULL. */
const char *state_user_name(const struct state *state, uint32_t stable);

/** @returns the external id of an index, or NULL. */
const char *state_user_id(const struct state *state, uint32_t index);
const char *state_item_id(const struct state *state, uint32_t index);

/** @returns the stable index of a user id met since the state opened, or UINT32_MAX
 * (never creates or restores a user). */
uint32_t state_find_user(const struct state *state, const char *id);

/** @returns the index of a known item id, or UINT32_MAX. */
uint32_t state_find_item(const struct state *state, const char *id);

/**
 * @brief Learn one event in every variant (ids mapped, rows restored as needed).
 * With state_config.admit_after, an event of a user not admitted yet only
 * counts its item; *user_stable is then set to UINT32_MAX (no user).
 * @param user_stable NULL, or set to the user's stable index
 * @returns 0, or -1 with errstr filled.
 */
int state_learn(struct state *state, const char *user_id, const char *item_id,
		enum event_type type, int64_t ts_ms, uint32_t *user_stable, char *errstr,
		size_t errstr_size);

/**
 * @brief A search by user_id at ts_ms (model_search()) in the variants whose
 * bit is set in `variants`: query is the query's content vector (content.dim
 * floats). *applied gets the variants it moved (bit v: variant v). Like any
 * event it moves the user's last-seen time; with state_config.admit_after a
 * user not admitted yet is sighted, not made (*user_stable UINT32_MAX,
 * nothing applied).
 * @returns 0, or -1 with errstr filled.
 */
int state_search_for(struct state *state, const char *user_id, const float *query, int64_t ts_ms,
		     uint32_t variants, uint32_t *user_stable, uint32_t *applied, char *errstr,
		     size_t errstr_size);

/**
 * @brief state_learn() in the variants whose bit is set in `variants` only
 * (bit v: variant v; a variant that learns only from its own users).
 */
int state_learn_for(struct state *state, const char *user_id, const char *item_id,
		    enum event_type type, int64_t ts_ms, uint32_t variants, uint32_t *user_stable,
		    char *errstr, size_t errstr_size);

/** @brief Record that the events of topic/partition up to offset are learned. */
int state_mark_offset(struct state *state, const char *topic, int32_t partition, int64_t offset);

/**
 * @brief Write everything changed since the last commit, and the marked
 * offsets, atomically. Nothing is acknowledged past what was written: on
 * failure the offsets stay where they were and the state refuses further
 * commits.
 * @returns 0, or -1 with errstr filled.
 */
int state_commit(struct state *state, char *errstr, size_t errstr_size);

/**
 * @brief state_commit() with the RocksDB write on a writer thread: the
 * changed rows are copied into a batch here (they are then no longer
 * pending), the write happens while the caller goes on learning. One write
 * is in flight at a time: this call first waits for the previous one and
 * reports its failure. Offsets are durable only once state_flush() (or the
 * next commit) returned 0.
 *
 * The item vector rows, most of a commit at a large catalogue (a learning
 * step moves the vectors of its item, its negatives and the user's recent
 * items), are not copied here but owed (model.h, model_owe_item_vector()):
 * each event learned after the commit pays a share of them, a row about to
 * change is paid first as it was, and the batch goes to the writer once
 * complete. Learning then never stops for the whole export (it took the
 * loop 50-150 ms a commit at 1M items, 10k events/s).
 * @returns 0, or -1 with errstr filled (the state then refuses to commit).
 */
int state_commit_async(struct state *state, char *errstr, size_t errstr_size);

/** @brief Whether a write is in flight or a commit's rows are still owed
 * (state_flush() would wait for it, or pay them all). */
bool state_writing(struct state *state);

/** @returns how many item vector rows a commit still owes (0: none, its
 * batch is with the writer). */
size_t state_owed(const struct state *state);

/** @brief Pay all the rows a commit still owes (state_commit_async()) and
 * hand its batch to the writer, without waiting for the write: for a caller
 * whose events were too few to pay them by the next commit. */
void state_pay(struct state *state);

/** @brief Pay what a commit still owes, then wait for the write in flight.
 * @returns 0, or -1 with its error. */
int state_flush(struct state *state, char *errstr, size_t errstr_size);

/** @brief After state_flush(), write RocksDB's memtables to SST files
 * (store_flush_memtables()): for a clean stop, so the next start replays
 * no WAL. @param flushed_bytes the memtable bytes written (may be NULL).
 * @returns 0, or -1 with its error (every commit is durable either way). */
int state_flush_memtables(struct state *state, uint64_t *flushed_bytes, char *errstr,
			  size_t errstr_size);

/** @brief The stored offset of topic/partition: 1 found, 0 none, -1 error. */
int state_offset(struct state *state, const char *topic, int32_t partition, int64_t *offset,
		 char *errstr, size_t errstr_size);

/**
 * @brief A digest of every variant's whole state in stable order (users by
 * their stable index, whatever cache slots they occupy): equal digests mean
 * bit-identical models. Restores every stored user first.
 * @returns 0 with *digest set, or -1 with errstr filled.
 */
int state_digest(struct state *state, uint64_t *digest, char *errstr, size_t errstr_size);

/** @brief Restore every stored user (for inspection, export and tests). @returns 0 or -1. */
int state_load_all_users(struct state *state, char *errstr, size_t errstr_size);

/** @brief A consistent copy of the state in dir (RocksDB checkpoint). @returns 0 or -1. */
int state_checkpoint(struct state *state, const char *dir, char *errstr, size_t errstr_size);

/**
 * @brief Write every entry of the state (rows, ids, globals, offsets) to an
 * export file: "streamrec-export 2\n", then per entry a family byte, a
 * 32-bit big-endian key length, the key, a 32-bit value length, the value;
 * then an end record (family 0xff, key length 0, value length 8, the entry
 * count), which an import requires (version 1 files had none); for backup,
 * migration and inspection. Written beside path and renamed over it once
 * synced; a file at path that is no export is not replaced.
 * @returns the number of entries written, or -1 with errstr filled.
 */
long state_export(struct state *state, const char *path, char *errstr, size_t errstr_size);

/**
 * @brief state_checkpoint() (to set, export_to NULL) or state_export()
 * (export_to set) of the state in dir as it is stored, without opening its
 * variants: the tools copy a state whatever model settings it was written
 * with, and change nothing in it (opened as a state, it was reconciled with
 * the default settings: refused, or its stored co-visitation bound grown).
 * dir must hold a state. @returns the entries exported (0 for a checkpoint),
 * or -1 with errstr filled.
 */
long state_copy_stored(const char *dir, const char *to, const char *export_to, char *errstr,
		       size_t errstr_size);

/**
 * @brief Load an export file into a state directory that must not exist
 * yet (a new state is created). All entries land in one atomic batch.
 * @returns the number of entries read, or -1 with errstr filled (the
 * directory is then removed).
 */
long state_import(const char *dir, const char *path, char *errstr, size_t errstr_size);

/** @returns bytes of state on disk (estimate). */
uint64_t state_bytes(struct state *state);

/** The store's block cache: its bound and what it holds now, in bytes. */
void state_block_cache(struct state *state, size_t *capacity, size_t *usage);

/**
 * @brief Users read back from the store when met (evicted from the user
 * cache with no change since, or not met since the state was opened), and
 * of them those whose newest rows were in the commit being written, so the
 * read waited for the writer. A restore waits only then: the others' rows
 * on disk are their newest.
 */
void state_user_restores(const struct state *state, uint64_t *restored, uint64_t *after_writer);

/** @brief Rows and bytes the state's commits put into a store family (store_written()). */
void state_written(const struct state *state, enum store_family family, uint64_t *rows,
		   uint64_t *bytes);

/** Values a caller may keep in the state (state_put_aux). */
#define STATE_MAX_AUX 8

/**
 * @brief Keep a caller's value (the A/B experiment's counters, say) under
 * meta "aux/NAME": copied now, written with the next commit, in the same
 * batch as the rows and offsets it goes with. A later put of the same name
 * before that commit replaces it.
 * @returns 0, or -1 with errstr filled.
 */
int state_put_aux(struct state *state, const char *name, const void *data, size_t len,
		  char *errstr, size_t errstr_size);

/**
 * @brief The stored value of NAME (malloc'd into *data, the caller frees).
 * @returns 1 found, 0 none, -1 with errstr filled.
 */
int state_get_aux(struct state *state, const char *name, void **data, size_t *len, char *errstr,
		  size_t errstr_size);

/**
 * @brief Keep a user's last published list (the caller's record, opaque
 * here) under meta "list/" + u32 stable index: copied now, written with the
 * next commit, in the same batch as the rows and offsets it goes with. A
 * later put for the same user before that commit replaces it. Only lists
 * changed since the last commit need a put: the stored ones stay.
 * @returns 0 (an allocation failure is the commit's error, see store.h).
 */
int state_put_list(struct state *state, uint32_t stable, const void *record, size_t len);

/**
 * @brief Call fn for every stored list record in order of stable index (at
 * start, to restore them). fn returns non-zero to stop.
 * @returns 0, or -1 with errstr filled.
 */
int state_lists_foreach(struct state *state,
			int (*fn)(uint32_t stable, const void *record, size_t len, void *ctx),
			void *ctx, char *errstr, size_t errstr_size);

/** @returns the users the state knows (live: in memory or on disk; expired
 * and evicted users are not counted). */
size_t state_user_count(const struct state *state);

/*
 * Embedding life cycle (README, "Embedding life cycle"). The state keeps, per
 * live user, the event time of its newest event (ids "T" + u32, written with
 * the commit that learned it). A sweep removes users idle longer than a TTL
 * and, above a bound, the least recently active ones: every key of theirs
 * (ids both ways, last-seen, each variant's row, the stored list) is deleted
 * in the pending commit batch, their model rows and cache slot are freed and
 * their stable index is reused by the next new user. Idleness is measured
 * in event time against the newest event time learned (capped by the wall
 * clock the caller passes), so a replay or a catch-up after downtime expires
 * the same users as the live run would, and downtime itself expires no one.
 */

/*
 * Items have the same life cycle, with one more rule: an item is referred
 * to by index from many places (other items' co-visitation lists, users'
 * recent rings and exclusion sets, the count order, the trending list, the
 * sampler, the index's cells, the refresher's listable flags), and a removed
 * item's index is handed to a new item later. So a removal goes in three
 * steps. (1) The sweep deletes the item's keys in the pending batch and
 * numbers the removal ("R" + u32 keeps the number of the removal that last
 * freed each index). (2) In the same sweep, one pass drops every reference
 * held in memory (model_forget_items()): the index's rows go back to a
 * never-seen item's, the co-visitation lists of all items and the rings and
 * exclusions of all users in memory lose it, the count order and trending
 * list are rebuilt without it, its matrix row is marked moved so the index
 * cell follows. Users not in memory (rows on disk or set aside) are checked
 * when they are next restored: a user's row carries the removal number it
 * was last checked against ("P" + u32), and every reference to an index
 * freed after that is dropped before the row is used. (3) The index is
 * reused only after the commit that deleted the item's keys is durable, so
 * no read brings an old row back. An item whose id comes again after its
 * removal is a new item. Live items, their last-seen and the removals are
 * all in the commit's one atomic batch: a crash replays to the same items.
 */

/** Longest user or item id the state takes (its key in the ids family). */
#define STATE_ID_MAX 256

/** Longest user id the life cycle names to on_removed (longer ids: ""). */
#define STATE_USER_ID_MAX 256

/** What a sweep enforces (0: off). */
struct state_lifecycle {
	uint64_t user_ttl_ms; /**< expire users idle longer than this */
	size_t max_users;     /**< evict the least recently active above this many */
	uint64_t item_ttl_ms; /**< expire items idle longer than this */
	size_t max_items;     /**< evict the least recently active items above this many */
	/** called with each removed item's index before it can be reused (NULL: none) */
	void (*on_item_removed)(uint32_t item, void *opaque);
	void *opaque; /**< for on_item_removed */
};

/** The life cycle's counters since the state opened. */
struct state_lifecycle_counts {
	uint64_t admitted_users; /**< new users given a stable index */
	uint64_t expired_users;  /**< removed by the TTL */
	uint64_t evicted_users;  /**< removed by the bound */
	uint64_t unadmitted_events; /**< events of users not admitted yet (state_config.admit_after) */
	size_t live_users;
	uint64_t admitted_items; /**< new items given an index */
	uint64_t expired_items;  /**< removed by the item TTL */
	uint64_t evicted_items;  /**< removed by the item bound */
	uint64_t unadmitted_item_events; /**< events of items not admitted yet (item_admit_after) */
	size_t live_items;
	int64_t now_ms; /**< the event-time clock of the last sweep (INT64_MIN: none yet) */
};

/**
 * @brief Remove expired items, then the least recently active beyond
 * max_items (each handed to lifecycle->on_item_removed; every reference to
 * them in memory goes in the same call, see above), then expired users,
 * then the least recently active beyond max_users. Each removed user's
 * stable index and id ("" if the state had none) are handed to on_removed
 * (NULL: none) before the index can be reused, so the caller drops what it keeps
 * by stable index (lists, refresh marks). The deletions go to the next
 * commit, atomically with the offsets of the events learned before it; a
 * removed user met again before that commit starts fresh. Pinned users are
 * removed too: the caller sweeps between refresh rounds.
 * @param wall_ms the wall clock (the event-time clock never runs ahead of it); INT64_MAX: no cap
 * @returns the users and items removed, or -1 with errstr filled (a read error: the
 * state is unchanged for the user it could not remove).
 */
long state_lifecycle_sweep(struct state *state, const struct state_lifecycle *lifecycle,
			   int64_t wall_ms,
			   void (*on_removed)(uint32_t stable, const char *user_id, void *opaque),
			   void *opaque, char *errstr, size_t errstr_size);

/**
 * @brief Item activity besides events (a catalogue record at ts_ms): the
 * item's last-seen moves to ts_ms when newer.
 * @returns 0, or -1 with errstr filled (out of memory).
 */
int state_item_seen(struct state *state, uint32_t item, int64_t ts_ms, char *errstr,
		    size_t errstr_size);

/** @returns whether activity at ts_ms is older than item_ttl_ms before the
 * newest event time learned (0: no TTL): a catalogue record of an unknown
 * item that old would only be expired by the next sweep. */
bool state_item_too_old(const struct state *state, int64_t ts_ms, uint64_t item_ttl_ms);

/** @returns the live items (with an index). */
size_t state_item_count(const struct state *state);

/** Item indices whose listing facts changed (an event counted for the item,
 * or the index handed to a new item after a removal) that the state
 * remembers, newest last: state_touched_item(). */
#define STATE_TOUCHED_KEPT 4096

/** @returns how many times an item was touched since the state opened. */
uint64_t state_items_touched(const struct state *state);

/** @returns the index of the n-th touch (n < state_items_touched(), and one
 * of the last STATE_TOUCHED_KEPT): a cache of per-item facts (the
 * refresher's listable flags: min_item_events, a reused index) looks at
 * these again; older ones are gone and the whole cache is checked. */
uint32_t state_touched_item(const struct state *state, uint64_t n);

/** @returns whether an item index belongs to a live item (not freed). */
bool state_item_live(const struct state *state, uint32_t item);

/** @brief Fills counts. */
void state_lifecycle_counts(const struct state *state, struct state_lifecycle_counts *counts);

/** @returns the event time of a live user's newest event (INT64_MIN: unknown or not live). */
int64_t state_user_last_seen(const struct state *state, uint32_t stable);

/**
 * @brief Removes a user by id as the life cycle does (every key deleted in
 * the pending batch, its index reused once that is durable), because
 * another instance removed it (a changelog tombstone). The caller drops
 * what it keeps by the returned stable index.
 * @returns 1 removed (*stable: its index), 0 when the state holds no such
 * live user, -1 with errstr filled.
 */
int state_remove_user_id(struct state *state, const char *user_id, uint32_t *stable,
			 char *errstr, size_t errstr_size);

/**
 * @brief Writes a user's row of one variant as another instance learned it:
 * the user is created or placed (its old rows replaced), the row imported
 * and the user counted as changed, so the next commit persists it. Item
 * indices in the row must already be this state's (state_item()).
 * @returns 0, or -1 with errstr filled.
 */
int state_restore_user_row(struct state *state, const char *user_id, size_t variant,
			   const void *row, size_t len, uint32_t *stable, char *errstr,
			   size_t errstr_size);

/**
 * @brief state_item(), and the item made known to every variant's model.
 * @returns 0, or -1 with errstr filled.
 */
int state_item_everywhere(struct state *state, const char *id, uint32_t *index, char *errstr,
			  size_t errstr_size);

#endif
