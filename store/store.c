/*
 * store: RocksDB column families, a format check before anything is
 * written, and commits of rows plus offsets in one WriteBatch.
 *
 * A batch is built without a store, so it cannot hold RocksDB column
 * family handles: it records its operations in one flat buffer (header,
 * key, value, one after the other) and store_commit() translates them into
 * the store's WriteBatch, with the offsets last. That extra copy of each
 * row costs far less than RocksDB's own write of it.
 *
 * Opening an existing directory never lets RocksDB create or change a file
 * before the format is known to be ours: the column family list is read
 * (it only reads CURRENT and the MANIFEST), then the database is opened
 * read-only (which writes nothing, not even an info LOG) to read the format
 * keys, and only a streamrec state of this version is opened read-write.
 */
#include "errstr.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <libgen.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_BLOCK_CACHE_BYTES  ((size_t)1 << 30)
#define DEFAULT_WRITE_BUFFER_BYTES ((size_t)64 << 20)

#define FORMAT_KEY         "format"
#define FORMAT_VALUE       "streamrec-state"
#define FORMAT_VERSION_KEY "format_version"
#define FINGERPRINT_KEY    "fingerprint"
#define OFFSET_PREFIX      "offset/"
/* "offset/" + topic + "/" + INT32_MAX + NUL */
#define OFFSET_KEY_MAX (sizeof OFFSET_PREFIX + STORE_TOPIC_MAX_BYTES + 1 + 10 + 1)

#define STORE_FAILURE_MAX 512
#define BATCH_ERROR_MAX   256

/* RocksDB's own column family: it must exist, streamrec stores nothing in it. */
static const char DEFAULT_FAMILY_NAME[] = "default";

static const char *const family_names[STORE_FAMILY_COUNT] = {
    [STORE_META] = "meta", [STORE_IDS] = "ids",     [STORE_USER] = "user",
    [STORE_ITEM] = "item", [STORE_COVIS] = "covis", [STORE_POP] = "pop",
};

struct store {
	char *path;
	char *fingerprint; /* stored in meta; NULL when none */
	rocksdb_t *db;
	rocksdb_column_family_handle_t *default_family;
	rocksdb_column_family_handle_t *families[STORE_FAMILY_COUNT];
	rocksdb_options_t *options;      /* the database's and every family's but: */
	rocksdb_options_t *row_options;  /* the user and item families' (float rows) */
	rocksdb_env_t *env;              /* the default environment, when its pools were lowered */
	/* rows and bytes (key + value) put by commits, per family; written by the
	 * committing thread, read by any (store_written()) */
	uint64_t written_rows[STORE_FAMILY_COUNT], written_bytes[STORE_FAMILY_COUNT];
	rocksdb_cache_t *block_cache;
	rocksdb_writeoptions_t *write_options;
	rocksdb_readoptions_t *read_options; /* point reads: fill the block cache */
	rocksdb_readoptions_t *scan_options; /* full scans: leave the block cache alone */
	rocksdb_writebatch_t *write_batch;   /* reused by every commit */
	bool read_only;                      /* a write failed: no more commits */
	char failure[STORE_FAILURE_MAX];     /* what that failure was */
};

enum batch_op_kind { BATCH_PUT = 1, BATCH_DELETE = 2 };

/* One operation in a batch's buffer; key then value bytes follow it. */
struct batch_op {
	uint32_t kind;
	uint32_t family;
	size_t key_len;
	size_t value_len;
};

struct batch_offset {
	char *topic;
	int32_t partition;
	int64_t offset;
};

struct store_batch {
	unsigned char *ops; /* struct batch_op, key, value; repeated */
	size_t ops_len, ops_cap;
	size_t count; /* puts and deletes */
	struct batch_offset *offsets;
	size_t offset_count, offset_cap;
	size_t last_offset; /* index of the last offset set, checked first */
	bool failed;
	char error[BATCH_ERROR_MAX];
};

/* ---- small helpers ------------------------------------------------------------ */

const char *store_family_name(enum store_family family)
{
	if ((unsigned)family >= STORE_FAMILY_COUNT)
		return NULL;
	return family_names[family];
}

static void put_be64(unsigned char out[8], int64_t value)
{
	uint64_t u = (uint64_t)value;
	for (int i = 0; i < 8; i++)
		out[i] = (unsigned char)(u >> (56 - 8 * i));
}

static int64_t get_be64(const unsigned char in[8])
{
	uint64_t u = 0;
	for (int i = 0; i < 8; i++)
		u = u << 8 | in[i];
	return (int64_t)u;
}

/* Writes "offset/<topic>/<partition>" into key (OFFSET_KEY_MAX bytes); returns its length. */
static size_t offset_key(char *key, const char *topic, int32_t partition)
{
	return (size_t)snprintf(key, OFFSET_KEY_MAX, OFFSET_PREFIX "%s/%" PRId32, topic, partition);
}

static bool key_equals(const void *key, size_t key_len, const char *text)
{
	return key_len == strlen(text) && memcmp(key, text, key_len) == 0;
}

/* Meta keys only the store writes: a batch may not touch them. */
static bool is_reserved_meta_key(const void *key, size_t key_len)
{
	return key_equals(key, key_len, FORMAT_KEY) ||
	       key_equals(key, key_len, FORMAT_VERSION_KEY) ||
	       key_equals(key, key_len, FINGERPRINT_KEY) ||
	       (key_len >= strlen(OFFSET_PREFIX) &&
		memcmp(key, OFFSET_PREFIX, strlen(OFFSET_PREFIX)) == 0);
}

/* ---- tuning ------------------------------------------------------------------------ */

/*
 * RocksDB options for streamrec's pattern: every few seconds one batch of
 * many small rows (hundreds of bytes, float vectors that barely compress),
 * point reads of rows at start-up and on cache misses, a full scan of some
 * families at start-up. Every family gets the same options.
 *
 * - One shared LRU block cache (block_cache_bytes, 1 GiB; the daemon's
 *   state.block_cache_bytes): one figure bounds read memory, and the busiest
 *   family takes the space. Index and filter blocks are charged to it too
 *   (high priority, L0's pinned), so the bound holds as the state grows
 *   instead of index memory growing beside it. It was 256 MiB: at 1M users
 *   and 1M items, after a restart (users are restored from the store when
 *   met) the loop spent about 40% of its time reading and checksumming
 *   blocks the cache had just dropped, and learned 10.8k events/s of 50k
 *   offered; 31.5k with 1 GiB, 36.9k with 2 GiB (bench/e2e.py, one run
 *   each, 4 December).
 * - Full bloom filters, 10 bits per key (~1% false positives), whole keys:
 *   reads are point reads, and a read of a key that does not exist (a new
 *   user) then costs no data block read.
 * - Memtables of write_buffer_bytes (64 MiB) per family, up to 3 per family
 *   so that writes go on while one flushes; all families together are held to
 *   4 x write_buffer_bytes (db_write_buffer_size), since only user and item
 *   rows are busy and six idle memtables should not each grow to the limit.
 * - max_total_wal_size 4 x write_buffer_bytes: with six families the WAL
 *   can only be dropped once every family has flushed past it, and by
 *   default RocksDB lets it reach 4 x the sum of all memtables (GBs) before
 *   forcing the quiet families (meta) to flush; the WAL size is what a
 *   restart replays, so keep it small.
 * - Compression LZ4 on the upper levels (cheap; a block that does not
 *   shrink by 1/8 is stored raw) and ZSTD on the bottommost level, where most
 *   data settles and is rewritten least, for ids, covis, pop and meta (ids
 *   and counts), which compress well. The user and item families hold float
 *   rows, which barely do, and are stored uncompressed (row_options()).
 *   Debian's librocksdb links lz4, zstd, snappy, zlib and bz2.
 * - Level compaction with dynamic level bytes: level targets follow the
 *   actual data size, so space amplification stays low and most data sits
 *   in the bottommost level.
 * - Compaction from L0 starts at 8 files, not 4: every commit rewrites rows
 *   spread over the whole key space, so each L0 -> L1 compaction rewrites
 *   most of L1 whatever it brings, and bringing twice as much at a time
 *   halves that work. With the uncompressed rows, the RocksDB background
 *   threads' CPU in a 2M-event replay at 1M items (`streamrec replay
 *   --commit-every 50000`, 2 cores, AMD EPYC) fell from 19.9-20.3 s to
 *   8.2-10.2 s; the state was 610 MB at its end instead of 476 MB. Up to 8
 *   L0 files are read by a point read that misses the block cache, each
 *   behind its bloom filter, pinned in the cache.
 * - WAL on (it is what makes a commit durable without flushing memtables),
 *   recovery mode point-in-time: a torn tail after a crash ends the replay,
 *   so the state is always a prefix of whole commits, never one with a gap.
 * - 2 background jobs (flush + compaction) for a two-core machine where the
 *   daemon's loop needs the rest; bytes_per_sync 1 MiB so SST and WAL
 *   writeback is spread out instead of one large stall at fsync.
 * - The info LOG rolls at 16 MiB, 5 kept: RocksDB's default keeps 1000;
 *   it goes to log_dir when one is given (see store.h for why). When it
 *   shares the state's filesystem, it holds only its header (the options):
 *   RocksDB 7.8.3 asserts on a LOG write after a failed one, so on a full
 *   disk any later line (a background error, "Shutdown: ...") would abort
 *   the process; the C API has no logger of our own to put in its place.
 */
static rocksdb_options_t *tuned_options(size_t block_cache_bytes, size_t write_buffer_bytes,
					const char *log_dir, bool log_header_only,
					rocksdb_cache_t **block_cache)
{
	rocksdb_options_t *options = rocksdb_options_create();
	rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create();
	rocksdb_cache_t *cache = rocksdb_cache_create_lru(block_cache_bytes);

	rocksdb_block_based_options_set_block_cache(table, cache);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(table, 1);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(table, 1);
	rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(table, 1);
	/* the table options take ownership of the policy */
	rocksdb_block_based_options_set_filter_policy(table,
						      rocksdb_filterpolicy_create_bloom_full(10));
	rocksdb_block_based_options_set_whole_key_filtering(table, 1);
	rocksdb_options_set_block_based_table_factory(options, table);
	rocksdb_block_based_options_destroy(table); /* the factory keeps its own copy */

	rocksdb_options_set_write_buffer_size(options, write_buffer_bytes);
	rocksdb_options_set_max_write_buffer_number(options, 3);
	rocksdb_options_set_db_write_buffer_size(options, 4 * write_buffer_bytes);
	rocksdb_options_set_max_total_wal_size(options, 4 * (uint64_t)write_buffer_bytes);

	rocksdb_options_set_compression(options, rocksdb_lz4_compression);
	rocksdb_options_set_bottommost_compression(options, rocksdb_zstd_compression);
	rocksdb_options_set_compaction_style(options, rocksdb_level_compaction);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(options, 1);
	rocksdb_options_set_level0_file_num_compaction_trigger(options, 8);

	rocksdb_options_set_wal_recovery_mode(options, rocksdb_point_in_time_recovery);
	rocksdb_options_set_max_background_jobs(options, 2);
	rocksdb_options_set_bytes_per_sync(options, 1 << 20);
	rocksdb_options_set_wal_bytes_per_sync(options, 1 << 20);
	rocksdb_options_set_max_log_file_size(options, 16 << 20);
	rocksdb_options_set_keep_log_file_num(options, 5);
	if (log_dir != NULL)
		rocksdb_options_set_db_log_dir(options, log_dir);
	if (log_header_only)
		rocksdb_options_set_info_log_level(options, 5 /* HEADER_LEVEL */);

	*block_cache = cache;
	return options;
}

/* ---- the state directory ---------------------------------------------------------- */

/* The device of path, or of its nearest existing parent (a directory not made yet). */
static bool device_of(const char *path, dev_t *device)
{
	char copy[PATH_MAX];
	struct stat st;
	snprintf(copy, sizeof copy, "%s", path);
	while (stat(copy, &st) != 0) {
		char *slash = strrchr(copy, '/');
		if (errno != ENOENT || slash == NULL)
			return false;
		if (slash == copy)
			slash[1] = '\0'; /* "/" */
		else
			*slash = '\0';
	}
	*device = st.st_dev;
	return true;
}

/* Whether RocksDB's info LOG would be written on the filesystem of the state (see tuned_options). */
static bool log_on_state_filesystem(const char *path, const char *log_dir)
{
	dev_t state_device, log_device;
	if (log_dir == NULL)
		return true;
	if (!device_of(path, &state_device) || !device_of(log_dir, &log_device))
		return true; /* unknown: the safe side */
	return state_device == log_device;
}

/* Entries that do not make a directory "not empty" (a filesystem's own). */
static bool is_ignored_entry(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, "lost+found") == 0;
}

struct dir_survey {
	size_t entries;   /* not counting ignored ones */
	bool has_current; /* RocksDB's CURRENT file */
	char first[256];  /* one entry's name, for the message */
};

static int survey_directory(const char *path, struct dir_survey *survey, char *errstr,
			    size_t errstr_size)
{
	DIR *dir = opendir(path);
	struct dirent *entry;
	memset(survey, 0, sizeof *survey);
	if (dir == NULL) {
		set_errstr(errstr, errstr_size, "%s: cannot read the directory: %s", path,
			   strerror(errno));
		return -1;
	}
	while ((entry = readdir(dir)) != NULL) {
		if (is_ignored_entry(entry->d_name))
			continue;
		if (survey->entries++ == 0)
			snprintf(survey->first, sizeof survey->first, "%s", entry->d_name);
		if (strcmp(entry->d_name, "CURRENT") == 0)
			survey->has_current = true;
	}
	closedir(dir);
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

/*
 * Undoes a failed initialisation: removes what was created in a directory
 * that was missing or empty before (its lost+found stays), and the
 * directory itself when the store created it.
 */
static void remove_initialised(const char *path, bool remove_directory)
{
	DIR *dir = opendir(path);
	struct dirent *entry;
	if (dir != NULL) {
		while ((entry = readdir(dir)) != NULL) {
			char child[PATH_MAX];
			if (is_ignored_entry(entry->d_name))
				continue;
			if (snprintf(child, sizeof child, "%s/%s", path, entry->d_name) >=
			    (int)sizeof child)
				continue;
			nftw(child, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
		}
		closedir(dir);
	}
	if (remove_directory)
		rmdir(path);
}

/*
 * Refuses a state another process has open. RocksDB would refuse it too,
 * but only after rotating that process's info LOG (it creates its logger
 * before taking the LOCK). RocksDB locks with fcntl(F_SETLK), which
 * F_GETLK sees (except from the holding process itself).
 */
static int check_not_locked(const char *path, char *errstr, size_t errstr_size)
{
	char lock_path[PATH_MAX];
	struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int fd, ret = 0;

	if (snprintf(lock_path, sizeof lock_path, "%s/LOCK", path) >= (int)sizeof lock_path) {
		set_errstr(errstr, errstr_size, "%s: path too long", path);
		return -1;
	}
	fd = open(lock_path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0; /* no LOCK file: nobody holds it */
	if (fcntl(fd, F_GETLK, &lock) == 0 && lock.l_type != F_UNLCK) {
		set_errstr(errstr, errstr_size,
			   "%s: in use by process %ld, which holds its RocksDB LOCK; refusing to "
			   "open it",
			   path, (long)lock.l_pid);
		ret = -1;
	}
	close(fd);
	return ret;
}

/*
 * The user and item families' options: the others' (which they share the
 * block cache and write buffer budget with), without compression. Their
 * values are float rows: LZ4 and ZSTD found little to take out of them
 * (on 2.4M commits of random 416-byte rows, 4% of the state) and cost
 * half of the background threads' CPU, compressing each row again at
 * every compaction. Blocks written compressed before stay readable.
 */
static rocksdb_options_t *row_options(const rocksdb_options_t *options)
{
	rocksdb_options_t *rows = rocksdb_options_create_copy((rocksdb_options_t *)options);
	rocksdb_options_set_compression(rows, rocksdb_no_compression);
	rocksdb_options_set_bottommost_compression(rows, rocksdb_no_compression);
	return rows;
}

/* ---- opening ------------------------------------------------------------------------ */

static int open_database(struct store *store, bool create, bool read_only, char *errstr,
			 size_t errstr_size)
{
	const char *names[STORE_FAMILY_COUNT + 1];
	const rocksdb_options_t *family_options[STORE_FAMILY_COUNT + 1];
	rocksdb_column_family_handle_t *handles[STORE_FAMILY_COUNT + 1];
	char *err = NULL;

	names[0] = DEFAULT_FAMILY_NAME;
	for (int f = 0; f < STORE_FAMILY_COUNT; f++)
		names[f + 1] = family_names[f];
	for (int f = 0; f <= STORE_FAMILY_COUNT; f++)
		family_options[f] = store->options;
	family_options[STORE_USER + 1] = family_options[STORE_ITEM + 1] = store->row_options;

	rocksdb_options_set_create_if_missing(store->options, create);
	rocksdb_options_set_create_missing_column_families(store->options, create);
	rocksdb_options_set_error_if_exists(store->options, create);
	if (read_only)
		store->db = rocksdb_open_for_read_only_column_families(
		    store->options, store->path, STORE_FAMILY_COUNT + 1, names, family_options,
		    handles, 0, &err);
	else
		store->db = rocksdb_open_column_families(store->options, store->path,
							 STORE_FAMILY_COUNT + 1, names,
							 family_options, handles, &err);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: cannot %s the RocksDB database: %s",
			   store->path, create ? "create" : "open", err);
		rocksdb_free(err);
		store->db = NULL;
		return -1;
	}
	store->default_family = handles[0];
	for (int f = 0; f < STORE_FAMILY_COUNT; f++)
		store->families[f] = handles[f + 1];
	return 0;
}

static void close_database(struct store *store)
{
	if (store->db == NULL)
		return;
	for (int f = 0; f < STORE_FAMILY_COUNT; f++) {
		rocksdb_column_family_handle_destroy(store->families[f]);
		store->families[f] = NULL;
	}
	rocksdb_column_family_handle_destroy(store->default_family);
	store->default_family = NULL;
	rocksdb_close(store->db);
	store->db = NULL;
}

/* Reads a meta key of a read-only database as a NUL-terminated copy; 1, 0 or -1. */
static int read_meta_text(rocksdb_t *db, rocksdb_column_family_handle_t *meta,
			  const rocksdb_readoptions_t *read_options, const char *path,
			  const char *key, char **text, char *errstr, size_t errstr_size)
{
	char *err = NULL;
	rocksdb_pinnableslice_t *slice =
	    rocksdb_get_pinned_cf(db, read_options, meta, key, strlen(key), &err);
	const char *value;
	size_t value_len;
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: reading meta key '%s': %s", path, key, err);
		rocksdb_free(err);
		return -1;
	}
	if (slice == NULL)
		return 0;
	value = rocksdb_pinnableslice_value(slice, &value_len);
	*text = malloc(value_len + 1);
	if (*text == NULL) {
		rocksdb_pinnableslice_destroy(slice);
		set_errstr(errstr, errstr_size, "%s: out of memory reading meta key '%s'", path,
			   key);
		return -1;
	}
	memcpy(*text, value, value_len);
	(*text)[value_len] = '\0';
	rocksdb_pinnableslice_destroy(slice);
	return 1;
}

/* The message for a RocksDB database that is not a streamrec state. */
static void refuse_foreign(const char *path, char **names, size_t name_count, char *errstr,
			   size_t errstr_size)
{
	char list[256] = "";
	size_t used = 0;
	for (size_t i = 0; i < name_count && used < sizeof list; i++)
		used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
					 names[i]);
	set_errstr(errstr, errstr_size,
		   "%s: holds a RocksDB database that is not a streamrec state (column families: "
		   "%s; no 'meta' family with the '" FORMAT_KEY "' key); refusing to open it",
		   path, list);
}

/*
 * Decides whether an existing RocksDB database is a streamrec state of
 * this version, without writing a byte to it.
 */
static int check_existing_format(struct store *store, char *errstr, size_t errstr_size)
{
	const char *path = store->path;
	const char *names[2] = {DEFAULT_FAMILY_NAME, family_names[STORE_META]};
	const rocksdb_options_t *family_options[2] = {store->options, store->options};
	rocksdb_column_family_handle_t *handles[2] = {NULL, NULL};
	rocksdb_readoptions_t *read_options = NULL;
	rocksdb_t *db = NULL;
	char **families, *err = NULL, *format = NULL, *version = NULL, *end;
	size_t family_count = 0;
	bool found[STORE_FAMILY_COUNT] = {false};
	long version_number;
	int ret = -1, got;

	rocksdb_options_set_create_if_missing(store->options, 0);
	rocksdb_options_set_create_missing_column_families(store->options, 0);
	rocksdb_options_set_error_if_exists(store->options, 0);
	/* the C API returns an (empty) malloc'd list even on error: always destroy it */
	families = rocksdb_list_column_families(store->options, path, &family_count, &err);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: cannot read the RocksDB database: %s", path,
			   err);
		rocksdb_free(err);
		goto out_free_families;
	}
	for (size_t i = 0; i < family_count; i++)
		for (int f = 0; f < STORE_FAMILY_COUNT; f++)
			if (strcmp(families[i], family_names[f]) == 0)
				found[f] = true;

	/* without 'meta' only the default family is opened: listing the families
	 * skips a garbage MANIFEST's records silently, opening it does not */
	db = rocksdb_open_for_read_only_column_families(store->options, path,
							found[STORE_META] ? 2 : 1, names,
							family_options, handles, 0, &err);
	if (err != NULL) {
		set_errstr(errstr, errstr_size,
			   "%s: cannot open the RocksDB database read-only: %s", path, err);
		rocksdb_free(err);
		goto out_free_families;
	}
	read_options = rocksdb_readoptions_create();
	if (!found[STORE_META]) {
		refuse_foreign(path, families, family_count, errstr, errstr_size);
		goto out_close_db;
	}

	got = read_meta_text(db, handles[1], read_options, path, FORMAT_KEY, &format, errstr,
			     errstr_size);
	if (got < 0)
		goto out_close_db;
	if (got == 0) {
		set_errstr(errstr, errstr_size,
			   "%s: holds a RocksDB database with a 'meta' family but no '" FORMAT_KEY
			   "' key: not a streamrec state, or one whose initialisation was "
			   "interrupted; refusing to open it",
			   path);
		goto out_close_db;
	}
	if (strcmp(format, FORMAT_VALUE) != 0) {
		set_errstr(errstr, errstr_size,
			   "%s: meta key '" FORMAT_KEY "' is '%.64s', not '" FORMAT_VALUE
			   "'; refusing to open it",
			   path, format);
		goto out_close_db;
	}
	got = read_meta_text(db, handles[1], read_options, path, FORMAT_VERSION_KEY, &version,
			     errstr, errstr_size);
	if (got < 0)
		goto out_close_db;
	if (got == 0) {
		set_errstr(errstr, errstr_size,
			   "%s: streamrec state without a '" FORMAT_VERSION_KEY
			   "' key; refusing to open it",
			   path);
		goto out_close_db;
	}
	errno = 0;
	version_number = strtol(version, &end, 10);
	if (errno != 0 || end == version || *end != '\0' || version_number < 0) {
		set_errstr(errstr, errstr_size,
			   "%s: meta key '" FORMAT_VERSION_KEY "' is '%.64s', not a version number",
			   path, version);
		goto out_close_db;
	}
	if (version_number != STORE_FORMAT_VERSION) {
		set_errstr(errstr, errstr_size,
			   "%s: state format version %ld, this streamrec reads version %d", path,
			   version_number, STORE_FORMAT_VERSION);
		goto out_close_db;
	}
	for (int f = 0; f < STORE_FAMILY_COUNT; f++) {
		if (!found[f]) {
			set_errstr(errstr, errstr_size,
				   "%s: streamrec state without its '%s' column family; refusing "
				   "to open it",
				   path, family_names[f]);
			goto out_close_db;
		}
	}
	for (size_t i = 0; i < family_count; i++) {
		bool known = strcmp(families[i], DEFAULT_FAMILY_NAME) == 0;
		for (int f = 0; f < STORE_FAMILY_COUNT; f++)
			known = known || strcmp(families[i], family_names[f]) == 0;
		if (!known) {
			set_errstr(errstr, errstr_size,
				   "%s: streamrec state with an unknown column family '%s'; "
				   "refusing to open it",
				   path, families[i]);
			goto out_close_db;
		}
	}
	ret = 0;

out_close_db:
	free(version);
	free(format);
	rocksdb_readoptions_destroy(read_options);
	rocksdb_column_family_handle_destroy(handles[0]);
	if (handles[1] != NULL)
		rocksdb_column_family_handle_destroy(handles[1]);
	rocksdb_close(db);
out_free_families:
	rocksdb_list_column_families_destroy(families, family_count);
	return ret;
}

/* Writes the format keys (and the fingerprint) of a new state, WAL synced. */
static int write_format(struct store *store, const char *fingerprint, char *errstr,
			size_t errstr_size)
{
	rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
	rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create();
	rocksdb_column_family_handle_t *meta = store->families[STORE_META];
	char version[16], *err = NULL;
	int version_len = snprintf(version, sizeof version, "%d", STORE_FORMAT_VERSION);

	rocksdb_writebatch_put_cf(batch, meta, FORMAT_KEY, strlen(FORMAT_KEY), FORMAT_VALUE,
				  strlen(FORMAT_VALUE));
	rocksdb_writebatch_put_cf(batch, meta, FORMAT_VERSION_KEY, strlen(FORMAT_VERSION_KEY),
				  version, (size_t)version_len);
	if (fingerprint != NULL)
		rocksdb_writebatch_put_cf(batch, meta, FINGERPRINT_KEY, strlen(FINGERPRINT_KEY),
					  fingerprint, strlen(fingerprint));
	rocksdb_writeoptions_set_sync(sync, 1);
	rocksdb_write(store->db, sync, batch, &err);
	rocksdb_writeoptions_destroy(sync);
	rocksdb_writebatch_destroy(batch);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: writing the format keys: %s", store->path,
			   err);
		rocksdb_free(err);
		return -1;
	}
	return 0;
}

/* Loads the stored fingerprint; stores config's when none is stored yet. */
static int load_fingerprint(struct store *store, const char *fingerprint, char *errstr,
			    size_t errstr_size)
{
	char *stored = NULL, *err = NULL;
	int got = read_meta_text(store->db, store->families[STORE_META], store->read_options,
				 store->path, FINGERPRINT_KEY, &stored, errstr, errstr_size);
	if (got < 0)
		return -1;
	if (got == 1) {
		store->fingerprint = stored;
		return 0;
	}
	if (fingerprint == NULL || store->read_only)
		return 0;
	rocksdb_put_cf(store->db, store->write_options, store->families[STORE_META],
		       FINGERPRINT_KEY, strlen(FINGERPRINT_KEY), fingerprint, strlen(fingerprint),
		       &err);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: writing the fingerprint: %s", store->path,
			   err);
		rocksdb_free(err);
		return -1;
	}
	store->fingerprint = strdup(fingerprint);
	if (store->fingerprint == NULL) {
		set_errstr(errstr, errstr_size, "%s: out of memory", store->path);
		return -1;
	}
	return 0;
}

/* Removes "<path>.init-<pid>" directories of initialisations whose process is gone. */
static void remove_stale_staging(const char *path)
{
	char *parent_copy = strdup(path), *base_copy = strdup(path);
	if (parent_copy == NULL || base_copy == NULL)
		goto out_free;
	const char *parent = dirname(parent_copy), *base = basename(base_copy);
	size_t base_len = strlen(base);
	DIR *dir = opendir(parent);
	if (dir == NULL)
		goto out_free;
	struct dirent *entry;
	while ((entry = readdir(dir)) != NULL) {
		const char *name = entry->d_name;
		if (strncmp(name, base, base_len) != 0 ||
		    strncmp(name + base_len, ".init-", 6) != 0)
			continue;
		long pid = strtol(name + base_len + 6, NULL, 10);
		if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
			char *stale;
			if (asprintf(&stale, "%s/%s", parent, name) >= 0) {
				remove_initialised(stale, true);
				free(stale);
			}
		}
	}
	closedir(dir);
out_free:
	free(parent_copy);
	free(base_copy);
}

struct store *store_open(const struct store_config *config, char *errstr, size_t errstr_size)
{
	struct store *store;
	struct dir_survey survey;
	struct stat st;
	bool initialise = false;

	if (config == NULL || config->path == NULL || config->path[0] == '\0') {
		set_errstr(errstr, errstr_size, "store: no state directory given");
		return NULL;
	}
	store = calloc(1, sizeof *store);
	if (store == NULL)
		goto out_of_memory;
	store->path = strdup(config->path);
	if (store->path == NULL)
		goto out_free_store;

	if (stat(store->path, &st) != 0) {
		if (errno != ENOENT) {
			set_errstr(errstr, errstr_size, "%s: %s", store->path, strerror(errno));
			goto out_free_store;
		}
		initialise = true;
	} else if (!S_ISDIR(st.st_mode)) {
		set_errstr(errstr, errstr_size, "%s: exists and is not a directory", store->path);
		goto out_free_store;
	} else {
		if (survey_directory(store->path, &survey, errstr, errstr_size) != 0)
			goto out_free_store;
		if (survey.entries == 0) {
			initialise = true;
		} else if (!survey.has_current) {
			set_errstr(errstr, errstr_size,
				   "%s: not a streamrec state: the directory holds %zu %s ('%s'%s) "
				   "and no RocksDB database (no CURRENT file); refusing to "
				   "initialise state in it",
				   store->path, survey.entries,
				   survey.entries == 1 ? "entry" : "entries", survey.first,
				   survey.entries == 1 ? "" : ", ...");
			goto out_free_store;
		}
	}

	store->options = tuned_options(
	    config->block_cache_bytes ? config->block_cache_bytes : DEFAULT_BLOCK_CACHE_BYTES,
	    config->write_buffer_bytes ? config->write_buffer_bytes : DEFAULT_WRITE_BUFFER_BYTES,
	    config->log_dir, log_on_state_filesystem(config->path, config->log_dir),
	    &store->block_cache);
	if (config->low_priority_background) {
		/* applied by each pool thread before its next job */
		store->env = rocksdb_create_default_env();
		rocksdb_env_lower_thread_pool_cpu_priority(store->env);
		rocksdb_env_lower_high_priority_thread_pool_cpu_priority(store->env);
		rocksdb_options_set_env(store->options, store->env);
	}
	store->row_options = row_options(store->options);
	store->write_options = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(store->write_options, config->sync_commits);
	store->read_options = rocksdb_readoptions_create();
	store->scan_options = rocksdb_readoptions_create();
	rocksdb_readoptions_set_fill_cache(store->scan_options, 0);
	store->write_batch = rocksdb_writebatch_create();

	if (initialise && (config->read_only || config->must_exist)) {
		set_errstr(errstr, errstr_size,
			   "%s: holds no state yet (it is created on the first start)", store->path);
		goto out_free_rocksdb;
	}
	/* a read-only open takes no LOCK: it may look at a running daemon's state */
	if (!initialise && (check_existing_format(store, errstr, errstr_size) != 0 ||
			    (!config->read_only &&
			     check_not_locked(store->path, errstr, errstr_size) != 0)))
		goto out_free_rocksdb;
	if (initialise) {
		/*
		 * Initialise beside the final place, then rename into it: a crash
		 * at any moment leaves either no state (initialised again on the
		 * next start) or a complete one, never a database without its
		 * format keys. The leftover of an interrupted try is removed.
		 */
		char *final_path = store->path, *staging;
		remove_stale_staging(final_path);
		if (asprintf(&staging, "%s.init-%ld", final_path, (long)getpid()) < 0)
			goto out_free_rocksdb;
		store->path = staging;
		if (mkdir(staging, 0750) != 0) {
			set_errstr(errstr, errstr_size,
				   "%s: cannot create the state directory: %s%s", final_path,
				   strerror(errno),
				   errno == ENOENT ? " (its parent directory must exist)" : "");
			store->path = final_path;
			free(staging);
			goto out_free_rocksdb;
		}
		int rc = open_database(store, true, false, errstr, errstr_size);
		if (rc == 0) {
			rc = write_format(store, config->fingerprint, errstr, errstr_size);
			close_database(store);
		}
		if (rc == 0 && rename(staging, final_path) != 0) {
			set_errstr(errstr, errstr_size,
				   "%s: cannot move the new state into place: %s", final_path,
				   strerror(errno));
			rc = -1;
		}
		if (rc != 0)
			remove_initialised(staging, true);
		store->path = final_path;
		free(staging);
		if (rc != 0)
			goto out_free_rocksdb;
	}
	if (open_database(store, false, config->read_only, errstr, errstr_size) != 0)
		goto out_free_rocksdb;
	store->read_only = config->read_only;
	if (load_fingerprint(store, config->fingerprint, errstr, errstr_size) != 0)
		goto out_close_db;
	return store;

out_of_memory:
	set_errstr(errstr, errstr_size, "%s: out of memory", config->path);
	return NULL;
out_close_db:
	close_database(store);
out_free_rocksdb:
	store->read_only = true; /* nothing to sync in store_close() */
	store_close(store);
	return NULL;
out_free_store:
	if (store->path == NULL)
		set_errstr(errstr, errstr_size, "%s: out of memory", config->path);
	free(store->path);
	free(store);
	return NULL;
}

void store_close(struct store *store)
{
	char *err = NULL;
	if (store == NULL)
		return;
	if (store->db != NULL && !store->read_only) {
		/* make OS-buffered commits durable; a failure here has no one left to tell,
		 * and the WAL on disk is still a prefix of whole commits */
		rocksdb_flush_wal(store->db, 1, &err);
		rocksdb_free(err);
	}
	close_database(store);
	if (store->write_batch != NULL)
		rocksdb_writebatch_destroy(store->write_batch);
	if (store->scan_options != NULL)
		rocksdb_readoptions_destroy(store->scan_options);
	if (store->read_options != NULL)
		rocksdb_readoptions_destroy(store->read_options);
	if (store->write_options != NULL)
		rocksdb_writeoptions_destroy(store->write_options);
	if (store->row_options != NULL)
		rocksdb_options_destroy(store->row_options);
	if (store->options != NULL)
		rocksdb_options_destroy(store->options);
	if (store->block_cache != NULL)
		rocksdb_cache_destroy(store->block_cache);
	if (store->env != NULL)
		rocksdb_env_destroy(store->env); /* the wrapper; the default environment stays */
	free(store->fingerprint);
	free(store->path);
	free(store);
}

/* ---- reads -------------------------------------------------------------------------- */

int store_get(struct store *store, enum store_family family, const void *key, size_t key_len,
	      void **value, size_t *value_len, char *errstr, size_t errstr_size)
{
	rocksdb_pinnableslice_t *slice;
	const char *data;
	char *err = NULL, *copy;
	size_t len;

	if ((unsigned)family >= STORE_FAMILY_COUNT) {
		set_errstr(errstr, errstr_size, "%s: get: family %d out of range", store->path,
			   (int)family);
		return -1;
	}
	slice = rocksdb_get_pinned_cf(store->db, store->read_options, store->families[family], key,
				      key_len, &err);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: reading family '%s': %s", store->path,
			   family_names[family], err);
		rocksdb_free(err);
		return -1;
	}
	if (slice == NULL)
		return 0;
	data = rocksdb_pinnableslice_value(slice, &len);
	copy = malloc(len + 1);
	if (copy == NULL) {
		rocksdb_pinnableslice_destroy(slice);
		set_errstr(errstr, errstr_size,
			   "%s: reading family '%s': out of memory for %zu bytes", store->path,
			   family_names[family], len);
		return -1;
	}
	memcpy(copy, data, len);
	copy[len] = '\0';
	rocksdb_pinnableslice_destroy(slice);
	*value = copy;
	*value_len = len;
	return 1;
}

int store_offset(struct store *store, const char *topic, int32_t partition, int64_t *offset,
		 char *errstr, size_t errstr_size)
{
	char key[OFFSET_KEY_MAX];
	void *value;
	size_t value_len;
	int got;

	if (topic == NULL || topic[0] == '\0' || strlen(topic) > STORE_TOPIC_MAX_BYTES ||
	    partition < 0) {
		set_errstr(errstr, errstr_size,
			   "%s: offset of '%.64s'[%" PRId32 "]: bad topic or partition",
			   store->path, topic ? topic : "(null)", partition);
		return -1;
	}
	got = store_get(store, STORE_META, key, offset_key(key, topic, partition), &value,
			&value_len, errstr, errstr_size);
	if (got != 1)
		return got;
	if (value_len != 8) {
		set_errstr(errstr, errstr_size, "%s: meta key '%s' holds %zu bytes, an offset is 8",
			   store->path, key, value_len);
		free(value);
		return -1;
	}
	*offset = get_be64(value);
	free(value);
	return 1;
}

int store_foreach(struct store *store, enum store_family family,
		  int (*fn)(const void *key, size_t key_len, const void *value, size_t value_len,
			    void *ctx),
		  void *ctx, char *errstr, size_t errstr_size)
{
	return store_foreach_prefix(store, family, "", 0, fn, ctx, errstr, errstr_size);
}

int store_foreach_prefix(struct store *store, enum store_family family, const void *prefix,
			 size_t prefix_len,
			 int (*fn)(const void *key, size_t key_len, const void *value,
				   size_t value_len, void *ctx),
			 void *ctx, char *errstr, size_t errstr_size)
{
	rocksdb_iterator_t *it;
	char *err = NULL;

	if ((unsigned)family >= STORE_FAMILY_COUNT) {
		set_errstr(errstr, errstr_size, "%s: foreach: family %d out of range", store->path,
			   (int)family);
		return -1;
	}
	it = rocksdb_create_iterator_cf(store->db, store->scan_options, store->families[family]);
	if (prefix_len > 0)
		rocksdb_iter_seek(it, prefix, prefix_len);
	else
		rocksdb_iter_seek_to_first(it);
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t key_len, value_len;
		const char *key = rocksdb_iter_key(it, &key_len);
		const char *value = rocksdb_iter_value(it, &value_len);
		if (key_len < prefix_len || memcmp(key, prefix, prefix_len) != 0)
			break; /* keys are in bytewise order: the prefix's keys are behind */
		if (fn(key, key_len, value, value_len, ctx) != 0)
			break;
	}
	rocksdb_iter_get_error(it, &err);
	rocksdb_iter_destroy(it);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: scanning family '%s': %s", store->path,
			   family_names[family], err);
		rocksdb_free(err);
		return -1;
	}
	return 0;
}

/* Splits "offset/<topic>/<partition>" (not NUL-terminated); 0 or -1. */
static int parse_offset_key(const char *key, size_t key_len, char *topic, int32_t *partition)
{
	size_t prefix_len = strlen(OFFSET_PREFIX), slash = key_len, topic_len;
	int64_t number = 0;
	while (slash > prefix_len && key[slash - 1] != '/')
		slash--;
	if (slash <= prefix_len + 1 || slash == key_len || key_len - slash > 10)
		return -1;
	slash--; /* at the '/' */
	topic_len = slash - prefix_len;
	if (topic_len > STORE_TOPIC_MAX_BYTES || memchr(key + prefix_len, '\0', topic_len))
		return -1;
	for (size_t i = slash + 1; i < key_len; i++) {
		if (key[i] < '0' || key[i] > '9')
			return -1;
		number = number * 10 + (key[i] - '0');
	}
	if (number > INT32_MAX)
		return -1;
	memcpy(topic, key + prefix_len, topic_len);
	topic[topic_len] = '\0';
	*partition = (int32_t)number;
	return 0;
}

int store_offsets_foreach(struct store *store,
			  int (*fn)(const char *topic, int32_t partition, int64_t offset,
				    void *ctx),
			  void *ctx, char *errstr, size_t errstr_size)
{
	rocksdb_iterator_t *it =
	    rocksdb_create_iterator_cf(store->db, store->read_options, store->families[STORE_META]);
	size_t prefix_len = strlen(OFFSET_PREFIX);
	char *err = NULL;
	int ret = 0;

	for (rocksdb_iter_seek(it, OFFSET_PREFIX, prefix_len); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		char topic[STORE_TOPIC_MAX_BYTES + 1];
		int32_t partition;
		size_t key_len, value_len;
		const char *key = rocksdb_iter_key(it, &key_len);
		const char *value = rocksdb_iter_value(it, &value_len);
		if (key_len < prefix_len || memcmp(key, OFFSET_PREFIX, prefix_len) != 0)
			break;
		if (parse_offset_key(key, key_len, topic, &partition) != 0 || value_len != 8) {
			set_errstr(errstr, errstr_size,
				   "%s: malformed offset in meta: key '%.*s', %zu value bytes",
				   store->path, (int)(key_len > 300 ? 300 : key_len), key,
				   value_len);
			ret = -1;
			break;
		}
		if (fn(topic, partition, get_be64((const unsigned char *)value), ctx) != 0)
			break;
	}
	rocksdb_iter_get_error(it, &err);
	rocksdb_iter_destroy(it);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: scanning offsets: %s", store->path, err);
		rocksdb_free(err);
		return -1;
	}
	return ret;
}

/* ---- batches ------------------------------------------------------------------------ */

static void batch_fail(struct store_batch *batch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void batch_fail(struct store_batch *batch, const char *fmt, ...)
{
	va_list ap;
	if (batch->failed)
		return; /* the first error is the one to report */
	batch->failed = true;
	va_start(ap, fmt);
	vsnprintf(batch->error, sizeof batch->error, fmt, ap);
	va_end(ap);
}

struct store_batch *store_batch_new(void)
{
	return calloc(1, sizeof(struct store_batch));
}

size_t store_batch_bytes(const struct store_batch *batch)
{
	return batch->ops_len;
}

int store_batch_reserve(struct store_batch *batch, size_t bytes)
{
	if (bytes <= batch->ops_cap)
		return 0;
	unsigned char *grown = realloc(batch->ops, bytes);
	if (grown == NULL)
		return -1;
	/* written, not just allocated: the kernel gives a page on its first write */
	memset(grown + batch->ops_len, 0, bytes - batch->ops_len);
	batch->ops = grown;
	batch->ops_cap = bytes;
	return 0;
}

void store_batch_clear(struct store_batch *batch)
{
	for (size_t i = 0; i < batch->offset_count; i++)
		free(batch->offsets[i].topic);
	batch->offset_count = 0;
	batch->last_offset = 0;
	batch->ops_len = 0; /* the buffers keep their capacity for the next commit */
	batch->count = 0;
	batch->failed = false;
	batch->error[0] = '\0';
}

void store_batch_free(struct store_batch *batch)
{
	if (batch == NULL)
		return;
	store_batch_clear(batch);
	free(batch->offsets);
	free(batch->ops);
	free(batch);
}

static void batch_add(struct store_batch *batch, enum batch_op_kind kind, enum store_family family,
		      const void *key, size_t key_len, const void *value, size_t value_len)
{
	struct batch_op op = {kind, (uint32_t)family, key_len, value_len};
	const char *verb = kind == BATCH_PUT ? "put" : "delete";
	size_t need;

	if (batch->failed)
		return;
	if ((unsigned)family >= STORE_FAMILY_COUNT) {
		batch_fail(batch, "batch: %s into family %d, out of range", verb, (int)family);
		return;
	}
	if (family == STORE_META && is_reserved_meta_key(key, key_len)) {
		batch_fail(batch, "batch: %s of meta key '%.*s', which only the store writes", verb,
			   (int)(key_len > 64 ? 64 : key_len), (const char *)key);
		return;
	}
	if (key_len > SIZE_MAX / 4 || value_len > SIZE_MAX / 4 ||
	    sizeof op + key_len + value_len > SIZE_MAX / 2 - batch->ops_len) {
		batch_fail(batch, "batch: %s of %zu + %zu bytes is too large", verb, key_len,
			   value_len);
		return;
	}
	need = batch->ops_len + sizeof op + key_len + value_len;
	if (need > batch->ops_cap) {
		size_t cap = batch->ops_cap ? batch->ops_cap : 64 * 1024;
		unsigned char *grown;
		while (cap < need)
			cap *= 2;
		grown = realloc(batch->ops, cap);
		if (grown == NULL) {
			batch_fail(batch, "batch: out of memory growing to %zu bytes", cap);
			return;
		}
		batch->ops = grown;
		batch->ops_cap = cap;
	}
	memcpy(batch->ops + batch->ops_len, &op, sizeof op);
	batch->ops_len += sizeof op;
	if (key_len > 0)
		memcpy(batch->ops + batch->ops_len, key, key_len);
	batch->ops_len += key_len;
	if (value_len > 0)
		memcpy(batch->ops + batch->ops_len, value, value_len);
	batch->ops_len += value_len;
	batch->count++;
}

void store_batch_put(struct store_batch *batch, enum store_family family, const void *key,
		     size_t key_len, const void *value, size_t value_len)
{
	batch_add(batch, BATCH_PUT, family, key, key_len, value, value_len);
}

void store_batch_delete(struct store_batch *batch, enum store_family family, const void *key,
			size_t key_len)
{
	batch_add(batch, BATCH_DELETE, family, key, key_len, NULL, 0);
}

void store_batch_set_offset(struct store_batch *batch, const char *topic, int32_t partition,
			    int64_t offset)
{
	struct batch_offset *entry;
	size_t topic_len;

	if (batch->failed)
		return;
	topic_len = topic ? strlen(topic) : 0;
	if (topic_len == 0 || topic_len > STORE_TOPIC_MAX_BYTES || partition < 0) {
		batch_fail(batch,
			   "batch: offset of '%.64s'[%" PRId32 "]: the topic must be 1 to %d bytes "
			   "and the partition >= 0",
			   topic ? topic : "(null)", partition, STORE_TOPIC_MAX_BYTES);
		return;
	}
	if (batch->last_offset < batch->offset_count) {
		entry = &batch->offsets[batch->last_offset];
		if (entry->partition == partition && strcmp(entry->topic, topic) == 0) {
			entry->offset = offset;
			return;
		}
	}
	for (size_t i = 0; i < batch->offset_count; i++) {
		entry = &batch->offsets[i];
		if (entry->partition == partition && strcmp(entry->topic, topic) == 0) {
			entry->offset = offset;
			batch->last_offset = i;
			return;
		}
	}
	if (batch->offset_count == batch->offset_cap) {
		size_t cap = batch->offset_cap ? batch->offset_cap * 2 : 16;
		struct batch_offset *grown = realloc(batch->offsets, cap * sizeof *grown);
		if (grown == NULL) {
			batch_fail(batch, "batch: out of memory for %zu offsets", cap);
			return;
		}
		batch->offsets = grown;
		batch->offset_cap = cap;
	}
	entry = &batch->offsets[batch->offset_count];
	entry->topic = strdup(topic);
	if (entry->topic == NULL) {
		batch_fail(batch, "batch: out of memory for a topic name");
		return;
	}
	entry->partition = partition;
	entry->offset = offset;
	batch->last_offset = batch->offset_count++;
}

size_t store_batch_count(const struct store_batch *batch)
{
	return batch->count;
}

size_t store_batch_offset_count(const struct store_batch *batch)
{
	return batch->offset_count;
}

/* ---- commits ------------------------------------------------------------------------ */

int store_commit(struct store *store, struct store_batch *batch, char *errstr, size_t errstr_size)
{
	rocksdb_writebatch_t *wb = store->write_batch;
	rocksdb_column_family_handle_t *meta = store->families[STORE_META];
	char *err = NULL;
	size_t pos = 0;

	if (store->read_only) {
		set_errstr(errstr, errstr_size,
			   "%s: store is read-only after an earlier write failure: %s", store->path,
			   store->failure);
		return -1;
	}
	if (batch->failed) {
		set_errstr(errstr, errstr_size, "%s: commit refused: %s", store->path,
			   batch->error);
		return -1;
	}
	if (batch->count == 0 && batch->offset_count == 0)
		return 0;

	uint64_t rows[STORE_FAMILY_COUNT] = {0}, bytes[STORE_FAMILY_COUNT] = {0};
	rocksdb_writebatch_clear(wb);
	while (pos < batch->ops_len) {
		struct batch_op op;
		const char *key, *value;
		memcpy(&op, batch->ops + pos, sizeof op);
		key = (const char *)batch->ops + pos + sizeof op;
		value = key + op.key_len;
		if (op.kind == BATCH_PUT) {
			rocksdb_writebatch_put_cf(wb, store->families[op.family], key, op.key_len,
						  value, op.value_len);
			rows[op.family]++;
			bytes[op.family] += op.key_len + op.value_len;
		} else
			rocksdb_writebatch_delete_cf(wb, store->families[op.family], key,
						     op.key_len);
		pos += sizeof op + op.key_len + op.value_len;
	}
	for (size_t i = 0; i < batch->offset_count; i++) {
		char key[OFFSET_KEY_MAX];
		unsigned char value[8];
		size_t key_len =
		    offset_key(key, batch->offsets[i].topic, batch->offsets[i].partition);
		put_be64(value, batch->offsets[i].offset);
		rocksdb_writebatch_put_cf(wb, meta, key, key_len, (const char *)value,
					  sizeof value);
		rows[STORE_META]++;
		bytes[STORE_META] += key_len + sizeof value;
	}

	rocksdb_write(store->db, store->write_options, wb, &err);
	rocksdb_writebatch_clear(wb);
	if (err != NULL) {
		/* From here on RocksDB may or may not have the batch in its WAL; refuse
		 * every later commit so that no offset moves past state we lost. */
		snprintf(store->failure, sizeof store->failure,
			 "commit of %zu rows and %zu offsets: %s", batch->count,
			 batch->offset_count, err);
		store->read_only = true;
		set_errstr(errstr, errstr_size, "%s: %s", store->path, store->failure);
		rocksdb_free(err);
		return -1;
	}
	for (int f = 0; f < STORE_FAMILY_COUNT; f++) {
		__atomic_fetch_add(&store->written_rows[f], rows[f], __ATOMIC_RELAXED);
		__atomic_fetch_add(&store->written_bytes[f], bytes[f], __ATOMIC_RELAXED);
	}
	store_batch_clear(batch);
	return 0;
}

void store_written(const struct store *store, enum store_family family, uint64_t *rows,
		   uint64_t *bytes)
{
	*rows = __atomic_load_n(&store->written_rows[family], __ATOMIC_RELAXED);
	*bytes = __atomic_load_n(&store->written_bytes[family], __ATOMIC_RELAXED);
}

/* ---- checkpoints, figures ---------------------------------------------------------- */

int store_checkpoint(struct store *store, const char *dir, char *errstr, size_t errstr_size)
{
	rocksdb_checkpoint_t *checkpoint;
	char absolute[PATH_MAX], *err = NULL;
	struct stat st;

	if (dir == NULL || dir[0] == '\0') {
		set_errstr(errstr, errstr_size, "%s: checkpoint: no directory given", store->path);
		return -1;
	}
	if (lstat(dir, &st) == 0) {
		set_errstr(errstr, errstr_size, "%s: checkpoint: %s already exists", store->path,
			   dir);
		return -1;
	}
	/* RocksDB wants an absolute path */
	if (dir[0] == '/') {
		snprintf(absolute, sizeof absolute, "%s", dir);
	} else {
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof cwd) == NULL || snprintf(absolute, sizeof absolute, "%s/%s",
								cwd, dir) >= (int)sizeof absolute) {
			set_errstr(errstr, errstr_size, "%s: checkpoint: cannot make %s absolute",
				   store->path, dir);
			return -1;
		}
	}
	checkpoint = rocksdb_checkpoint_object_create(store->db, &err);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: checkpoint to %s: %s", store->path, dir, err);
		rocksdb_free(err);
		return -1;
	}
	/* log_size_for_flush 0: flush the memtables first, so the copy needs no WAL replay */
	rocksdb_checkpoint_create(checkpoint, absolute, 0, &err);
	rocksdb_checkpoint_object_destroy(checkpoint);
	if (err != NULL) {
		set_errstr(errstr, errstr_size, "%s: checkpoint to %s: %s", store->path, dir, err);
		rocksdb_free(err);
		return -1;
	}
	return 0;
}

int store_flush_memtables(struct store *store, uint64_t *flushed_bytes, char *errstr,
			  size_t errstr_size)
{
	uint64_t bytes = 0;
	if (flushed_bytes != NULL)
		*flushed_bytes = 0;
	if (store->read_only)
		return 0;
	rocksdb_flushoptions_t *options = rocksdb_flushoptions_create();
	if (options == NULL) {
		set_errstr(errstr, errstr_size, "%s: flushing memtables: out of memory",
			   store->path);
		return -1;
	}
	rocksdb_flushoptions_set_wait(options, 1);
	for (int f = 0; f < STORE_FAMILY_COUNT; f++) {
		char *err = NULL;
		uint64_t entries = 1, immutable = 0, size;
		/* an empty memtable still reports its arena: a family with no
		 * entries has nothing to write */
		rocksdb_property_int_cf(store->db, store->families[f],
					"rocksdb.num-entries-active-mem-table", &entries);
		rocksdb_property_int_cf(store->db, store->families[f],
					"rocksdb.num-immutable-mem-table", &immutable);
		if (entries == 0 && immutable == 0)
			continue;
		if (rocksdb_property_int_cf(store->db, store->families[f],
					    "rocksdb.cur-size-all-mem-tables", &size) == 0)
			bytes += size;
		rocksdb_flush_cf(store->db, options, store->families[f], &err);
		if (err != NULL) {
			set_errstr(errstr, errstr_size, "%s: flushing the memtable of %s: %s",
				   store->path, store_family_name((enum store_family)f), err);
			rocksdb_free(err);
			rocksdb_flushoptions_destroy(options);
			return -1;
		}
	}
	rocksdb_flushoptions_destroy(options);
	if (flushed_bytes != NULL)
		*flushed_bytes = bytes;
	return 0;
}

void store_block_cache(const struct store *store, size_t *capacity, size_t *usage)
{
	*capacity = store->block_cache ? rocksdb_cache_get_capacity(store->block_cache) : 0;
	*usage = store->block_cache ? rocksdb_cache_get_usage(store->block_cache) : 0;
}

uint64_t store_state_bytes(struct store *store)
{
	static const char *const properties[] = {"rocksdb.live-sst-files-size",
						 "rocksdb.cur-size-all-mem-tables"};
	uint64_t total = 0;
	for (int f = -1; f < STORE_FAMILY_COUNT; f++) {
		rocksdb_column_family_handle_t *family =
		    f < 0 ? store->default_family : store->families[f];
		for (size_t p = 0; p < sizeof properties / sizeof properties[0]; p++) {
			uint64_t value;
			if (rocksdb_property_int_cf(store->db, family, properties[p], &value) == 0)
				total += value;
		}
	}
	return total;
}

const char *store_fingerprint(const struct store *store)
{
	return store->fingerprint;
}

const char *store_path(const struct store *store)
{
	return store->path;
}

bool store_is_read_only(const struct store *store)
{
	return store->read_only;
}
