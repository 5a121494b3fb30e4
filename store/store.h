/*
 * store: streamrec's durable state, a RocksDB database of opaque byte rows
 * in column families, and the consumed stream offsets those rows contain.
 *
 * Rows and offsets of one commit go to RocksDB in ONE WriteBatch, so after
 * any crash the stored offsets describe exactly the stored rows: a consumer
 * that resumes at offset + 1 applies every event once. The store knows
 * nothing of Kafka or of embeddings: a row is bytes, an offset is a
 * (topic, partition, int64) triple.
 *
 * The state directory is refused, never re-initialised or modified, unless
 * it is missing, empty, or a streamrec state of this format version.
 *
 * Layout of the `meta` family (other families belong to the caller):
 *
 * | key                              | value                                          |
 * | -------------------------------- | ---------------------------------------------- |
 * | `format`                         | `streamrec-state`                              |
 * | `format_version`                 | STORE_FORMAT_VERSION in ASCII decimal (`1`)    |
 * | `fingerprint`                    | the first configuration fingerprint given      |
 * | `offset/<topic>/<partition>`     | int64, 8 bytes big-endian (two's complement);  |
 * |                                  | partition in ASCII decimal, no padding          |
 *
 * These keys (and every key starting with `offset/`) are reserved: a batch
 * that puts or deletes one of them is refused at commit. Any other meta key
 * (step counters, ...) is the caller's.
 *
 * RocksDB's own `default` column family exists and holds nothing.
 *
 * Threads: reads (store_get, store_foreach, store_offset,
 * store_offsets_foreach, store_state_bytes) may run in several threads at
 * once, beside a commit; commits, store_checkpoint and store_is_read_only
 * come from one thread at a time; store_close runs alone. A batch belongs
 * to one thread.
 *
 * A commit runs in the caller's thread and takes time in proportion to the
 * batch (bench_store: ~3 ms for 1k rows of 416 bytes, ~30 ms for 10k,
 * ~0.3-0.5 s for 100k on two cores): large ones belong off the event loop.
 */
#ifndef STREAMREC_STORE_H
#define STREAMREC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The state format this streamrec reads and writes. */
#define STORE_FORMAT_VERSION 1

/** Longest topic name an offset may carry, in bytes (Kafka's own limit is 249). */
#define STORE_TOPIC_MAX_BYTES 255

/** The column families, in this order; names by store_family_name(). */
enum store_family {
	STORE_META = 0, /**< "meta": format, fingerprint, offsets, caller's counters */
	STORE_IDS,      /**< "ids": external <-> internal ids */
	STORE_USER,     /**< "user": a user's row */
	STORE_ITEM,     /**< "item": an item's vector row (or a whole row, before the split) */
	STORE_COVIS,    /**< "covis": an item's counts row (popularity, sampler, co-visitation) */
	STORE_POP,      /**< "pop" */
	STORE_FAMILY_COUNT
};

struct store_config {
	/**
	 * State directory. Created (mode 0750) when missing; its parent must
	 * exist. An existing empty directory (or one holding only
	 * `lost+found`) is initialised in place.
	 */
	const char *path;
	/** Shared LRU block cache for all families; 0 = 1 GiB. */
	size_t block_cache_bytes;
	/** Memtable size of each family; 0 = 64 MiB (see store.c for the bounds on the total). */
	size_t write_buffer_bytes;
	/**
	 * fsync the WAL in every commit. Default false: the WAL is written
	 * (so a crash of the process loses nothing) but left to the OS, so a
	 * crash of the machine can lose the last commits — always whole
	 * commits, rows and offsets together. store_close() syncs the WAL.
	 */
	bool sync_commits;
	/**
	 * Optional configuration fingerprint (NUL-terminated). Stored in meta
	 * by the first open that gives one; a later open with another one is
	 * not refused: compare it with store_fingerprint().
	 */
	const char *fingerprint;
	/**
	 * Directory for RocksDB's info LOG (created when missing; the file is
	 * named after the state path); NULL = the state directory. Debian 12's
	 * RocksDB 7.8.3 is built with assertions, and once a LOG write has
	 * failed (disk full) its next line aborts the process, before
	 * store_commit() can report the failure. So a LOG on the state's own
	 * filesystem (NULL, or a log_dir on the same device) is written only at
	 * open (its header: the options) and a full disk ends in a clean
	 * write error; put log_dir on another filesystem to keep RocksDB's INFO
	 * lines. (The state stays consistent either way; tests/unit/050_store.c
	 * checks both.)
	 */
	const char *log_dir;
	/**
	 * Open an existing state without writing a byte to it (streamrecd
	 * --check): RocksDB's read-only open, which neither takes the LOCK nor
	 * writes an info LOG; a missing or empty directory is an error ("holds
	 * no state yet"), nothing is created, and every commit is refused.
	 */
	bool read_only;
	/** A missing or empty directory is an error ("holds no state"), nothing
	 * created, as with read_only, but the state opens writable (a checkpoint,
	 * an export: a mistyped path must not make an empty state to copy). */
	bool must_exist;
	/**
	 * Run RocksDB's flush and compaction threads at its lowest CPU priority
	 * (nice 19: RocksDB's C API lowers, it does not set a level). They are
	 * the process's (RocksDB's default environment), so the first store
	 * that asks lowers them for every store the process opens.
	 */
	bool low_priority_background;
};

/** The opaque store. */
struct store;
/** A set of row writes and offsets to commit atomically. */
struct store_batch;

/** @returns the family's column family name ("meta", "ids", ...), or NULL when out of range. */
const char *store_family_name(enum store_family family);

/**
 * @brief Open (or create) the state directory config->path.
 *
 * - missing: created and initialised (format keys written, WAL synced);
 * - empty (or holding only lost+found): initialised in place;
 * - a streamrec state of STORE_FORMAT_VERSION: opened;
 * - anything else is refused without creating or changing a file in it: a
 *   non-empty directory without a RocksDB database, a RocksDB database
 *   without streamrec's `meta` family or format key, another format
 *   version, a database RocksDB cannot read (corrupt CURRENT or MANIFEST),
 *   a state another process has open (its pid is named). A database in
 *   another format is only ever opened read-only, to read its format keys.
 *
 * If initialisation fails half-way, what it created is removed again.
 * The config is copied; its strings need not outlive the call.
 * @returns the store, which the caller owns (store_close()), or NULL with
 * errstr naming the path and what was found.
 */
struct store *store_open(const struct store_config *config, char *errstr, size_t errstr_size);

/**
 * @brief Sync the WAL (unless a write failed earlier), close the database
 * and free the store. NULL is allowed.
 */
void store_close(struct store *store);

/**
 * @brief Read one row.
 * @param value on 1, a malloc'd copy of the value that the caller frees
 * with free(); one NUL byte follows the value_len bytes (not counted), so
 * a text value can be used as a string. Untouched otherwise.
 * @returns 1 found, 0 missing, -1 error (errstr filled).
 */
int store_get(struct store *store, enum store_family family, const void *key, size_t key_len,
	      void **value, size_t *value_len, char *errstr, size_t errstr_size);

/**
 * @brief Create an empty batch; it can be committed to any store, and
 * reused after a successful commit (which clears it).
 * @returns the batch, which the caller owns (store_batch_free()), or NULL
 * when out of memory.
 */
struct store_batch *store_batch_new(void);

/** @brief Free a batch and everything it holds; NULL is allowed. */
void store_batch_free(struct store_batch *batch);

/**
 * @brief Add a put of `value` under `key` in `family`. Key and value are
 * copied. Several writes of one key in a batch: the last one wins.
 *
 * The batch functions return nothing: a misuse (family out of range, a
 * reserved meta key, a bad topic) or running out of memory is remembered
 * in the batch, further additions are ignored, and store_commit() refuses
 * the batch with that error.
 */
void store_batch_put(struct store_batch *batch, enum store_family family, const void *key,
		     size_t key_len, const void *value, size_t value_len);

/** @brief Add a delete of `key` in `family` (see store_batch_put() for errors). */
void store_batch_delete(struct store_batch *batch, enum store_family family, const void *key,
			size_t key_len);

/**
 * @brief Record that everything of topic/partition up to and including
 * `offset` is in this batch's state (or in state committed before).
 *
 * A later call for the same topic/partition replaces the earlier one (the
 * last call wins, also when it moves the offset back). The topic is
 * copied; it must be 1 to STORE_TOPIC_MAX_BYTES bytes, partition >= 0.
 */
void store_batch_set_offset(struct store_batch *batch, const char *topic, int32_t partition,
			    int64_t offset);

/** @returns the batch's row operations (puts and deletes), offsets not counted. */
size_t store_batch_count(const struct store_batch *batch);

/** @returns the number of distinct topic/partitions whose offset the batch sets. */
size_t store_batch_offset_count(const struct store_batch *batch);

/** @returns the bytes the batch's row operations take in its buffer (keys, values and
 * a small header each): what a commit of them copies. */
size_t store_batch_bytes(const struct store_batch *batch);

/**
 * @brief Make room in the batch's buffer for `bytes` of row operations,
 * every page of the room written once now, so that filling it later takes
 * no page faults (the buffer grows by doubling otherwise, each new page
 * faulted in by the put that first reaches it). What it holds is kept.
 * @returns 0, or -1 out of memory (the batch as it was, still usable).
 */
int store_batch_reserve(struct store_batch *batch, size_t bytes);

/** @brief Forget everything the batch holds, including a remembered error. */
void store_batch_clear(struct store_batch *batch);

/**
 * @brief Write the whole batch, rows and offsets, in one RocksDB
 * WriteBatch: all or nothing.
 *
 * On success the batch is cleared. On failure nothing of the batch is
 * visible to reads, the batch is left as it was, and errstr names the
 * path and the cause (RocksDB's message, e.g. "IO error: No space left on
 * device"). A write failure makes the store read-only: every later commit
 * is refused with "store is read-only after an earlier write failure: ...",
 * so no offset can move past state that was lost. (After a restart, a
 * failed commit is either wholly absent or, if only its fsync failed,
 * wholly present: never a part of it, never offsets without their rows.)
 * A batch refused for its own error (see store_batch_put()) does not make
 * the store read-only.
 * @returns 0, or -1 with errstr filled.
 */
int store_commit(struct store *store, struct store_batch *batch, char *errstr, size_t errstr_size);

/**
 * @brief The rows put into family by successful commits since the store
 * opened, and their bytes (keys and values, before RocksDB's compression,
 * write-ahead log and compactions multiply them). Any thread may ask.
 */
void store_written(const struct store *store, enum store_family family, uint64_t *rows,
		   uint64_t *bytes);

/**
 * @brief Read the stored consumed offset of topic/partition.
 * @returns 1 with *offset set, 0 when none is stored, -1 on error.
 */
int store_offset(struct store *store, const char *topic, int32_t partition, int64_t *offset,
		 char *errstr, size_t errstr_size);

/**
 * @brief Call fn for every stored offset, in key order (by topic, then by
 * the partition's decimal text). fn returns non-zero to stop early.
 * @returns 0 (also when fn stopped), or -1 on error (a read error, a
 * malformed offset key or value).
 */
int store_offsets_foreach(struct store *store,
			  int (*fn)(const char *topic, int32_t partition, int64_t offset,
				    void *ctx),
			  void *ctx, char *errstr, size_t errstr_size);

/**
 * @brief Call fn for every row of a family in key order (bytewise). The
 * pointers are valid only during the call. Reads a consistent snapshot;
 * does not fill the block cache (a start-up scan would evict the hot set).
 * For STORE_META every key is passed, reserved ones included.
 * fn returns non-zero to stop early.
 * @returns 0 (also when fn stopped), or -1 on error.
 */
int store_foreach(struct store *store, enum store_family family,
		  int (*fn)(const void *key, size_t key_len, const void *value, size_t value_len,
			    void *ctx),
		  void *ctx, char *errstr, size_t errstr_size);

/**
 * @brief store_foreach() over the rows whose key starts with `prefix` only
 * (a seek, then the rows up to the first key without it).
 * @returns 0 (also when fn stopped), or -1 on error.
 */
int store_foreach_prefix(struct store *store, enum store_family family, const void *prefix,
			 size_t prefix_len,
			 int (*fn)(const void *key, size_t key_len, const void *value,
				   size_t value_len, void *ctx),
			 void *ctx, char *errstr, size_t errstr_size);

/**
 * @brief Write a consistent copy of the state to `dir` (RocksDB's
 * Checkpoint: SST files hard-linked when on the same filesystem, copied
 * otherwise). `dir` must not exist; its parent must. The copy opens with
 * store_open() like any state, in this or another process.
 * @returns 0, or -1 with errstr filled.
 */
int store_checkpoint(struct store *store, const char *dir, char *errstr, size_t errstr_size);

/**
 * @brief Write every family's memtable to SST files and wait for it, so that
 * the next open replays (almost) no WAL: a clean stop pays the seconds a
 * start would spend re-inserting up to the WAL's bound of rows. Every commit
 * is already durable in the WAL; this only moves work from the next start.
 * From the thread that commits, with no commit in flight. A store that
 * refuses commits (read-only, or after a failed write) is left as it is.
 * @param flushed_bytes the memtable bytes written (may be NULL).
 * @returns 0, or -1 with errstr filled (nothing is lost: the WAL still
 * holds every commit).
 */
int store_flush_memtables(struct store *store, uint64_t *flushed_bytes, char *errstr,
			  size_t errstr_size);

/**
 * @returns live SST bytes plus memtable bytes over all families (RocksDB's
 * rocksdb.live-sst-files-size and rocksdb.cur-size-all-mem-tables); a
 * property RocksDB cannot give counts 0.
 */
uint64_t store_state_bytes(struct store *store);

/**
 * @brief The block cache's bound and what it holds now (data, index and
 * filter blocks), in bytes.
 */
void store_block_cache(const struct store *store, size_t *capacity, size_t *usage);

/**
 * @returns the fingerprint stored in meta (the first one given to an open),
 * or NULL when none was ever given. Owned by the store.
 */
const char *store_fingerprint(const struct store *store);

/** @returns the state directory's path as given in the config. Owned by the store. */
const char *store_path(const struct store *store);

/** @returns true after a write failure made the store read-only. */
bool store_is_read_only(const struct store *store);

#endif
