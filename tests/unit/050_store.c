/*
 * The state store: rows and offsets round-trip, commits are atomic across
 * reopen and crash, checkpoints are consistent copies, foreign or damaged
 * directories are refused untouched, and a write failure stops offsets.
 *
 * Children that must crash or run out of space are this program again
 * (fork + exec of /proc/self/exe with a mode argument), never a bare fork:
 * RocksDB's background thread pool is process-wide and a forked copy of it
 * has no threads behind it.
 *
 * When the program may unshare its mount namespace (root, and a sandbox
 * that allows it), the disk-full case runs on a private tmpfs that vanishes
 * with the process; otherwise that case is skipped and the file-size-limit
 * case (RLIMIT_FSIZE, EFBIG) still covers write failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"

#define ROW_BYTES 416

static char base_dir[PATH_MAX];
static bool private_mounts;

/* ---- helpers ------------------------------------------------------------------------ */

/* out = dir/name; out holds PATH_MAX bytes. */
static void join_path(char *out, const char *dir, const char *name)
{
	int len = snprintf(out, PATH_MAX, "%s/%s", dir, name);
	assert_true(len > 0 && len < PATH_MAX);
}

static void path_in_base(char *out, const char *name)
{
	join_path(out, base_dir, name);
}

static struct store *open_at(const char *path, const char *fingerprint)
{
	char errstr[1024];
	struct store_config config = {.path = path, .fingerprint = fingerprint};
	struct store *store = store_open(&config, errstr, sizeof errstr);
	if (store == NULL)
		fail_msg("store_open(%s): %s", path, errstr);
	return store;
}

static void commit_ok(struct store *store, struct store_batch *batch)
{
	char errstr[1024];
	if (store_commit(store, batch, errstr, sizeof errstr) != 0)
		fail_msg("store_commit: %s", errstr);
}

/* 1 with the value compared, 0 when missing. */
static int get_equals(struct store *store, enum store_family family, const char *key,
		      const void *expected, size_t expected_len)
{
	char errstr[1024];
	void *value = NULL;
	size_t value_len = 0;
	int got =
	    store_get(store, family, key, strlen(key), &value, &value_len, errstr, sizeof errstr);
	if (got < 0)
		fail_msg("store_get(%s): %s", key, errstr);
	if (got == 1) {
		assert_int_equal(value_len, expected_len);
		assert_memory_equal(value, expected, expected_len);
		assert_int_equal(((char *)value)[value_len], '\0');
		free(value);
	}
	return got;
}

static int64_t offset_of(struct store *store, const char *topic, int32_t partition)
{
	char errstr[1024];
	int64_t offset = -12345;
	int got = store_offset(store, topic, partition, &offset, errstr, sizeof errstr);
	if (got < 0)
		fail_msg("store_offset: %s", errstr);
	return got == 1 ? offset : INT64_MIN;
}

static uint64_t fnv(uint64_t hash, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		hash = (hash ^ p[i]) * 0x100000001b3ULL;
	return hash;
}

/* A directory's files: name, size, mtime and a hash of the content, sorted. */
static void listing(const char *dir, char *out, size_t out_size)
{
	struct dirent **entries;
	int n = scandir(dir, &entries, NULL, alphasort);
	size_t used = 0;
	assert_true(n >= 0);
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX], buf[4096];
		struct stat st;
		uint64_t hash = 0xcbf29ce484222325ULL;
		join_path(path, dir, entries[i]->d_name);
		assert_int_equal(lstat(path, &st), 0);
		if (S_ISREG(st.st_mode)) {
			int fd = open(path, O_RDONLY);
			ssize_t got;
			assert_true(fd >= 0);
			while ((got = read(fd, buf, sizeof buf)) > 0)
				hash = fnv(hash, buf, (size_t)got);
			close(fd);
		}
		used += (size_t)snprintf(out + used, out_size - used,
					 "%s %lld %lld.%09ld %016" PRIx64 "\n", entries[i]->d_name,
					 (long long)st.st_size, (long long)st.st_mtim.tv_sec,
					 st.st_mtim.tv_nsec, hash);
		assert_true(used < out_size);
		free(entries[i]);
	}
	free(entries);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void fill_row(unsigned char *row, uint64_t seed)
{
	for (size_t i = 0; i < ROW_BYTES; i++)
		row[i] = (unsigned char)((seed * 2654435761u + i * 40503u) >> 7);
}

/*
 * Runs this program again as `050_store mode dir fd [log_dir]`, under a
 * file size limit when one is given; returns its wait status, and in report
 * what it wrote to fd (a pipe).
 */
static int run_self(const char *mode, const char *dir, const char *log_dir, rlim_t file_size_limit,
		    char *report, size_t report_size)
{
	int fds[2], status;
	size_t used = 0;
	ssize_t got;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char fd_text[16];
		close(fds[0]);
		snprintf(fd_text, sizeof fd_text, "%d", fds[1]);
		if (file_size_limit > 0) {
			struct rlimit limit = {file_size_limit, file_size_limit};
			/* ignored, so that write() past the limit fails with EFBIG */
			signal(SIGXFSZ, SIG_IGN);
			if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
				_exit(126);
		}
		execl("/proc/self/exe", "050_store", mode, dir, fd_text, log_dir, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (used + 1 < report_size &&
	       (got = read(fds[0], report + used, report_size - 1 - used)) > 0)
		used += (size_t)got;
	report[used] = '\0';
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

/* The value of the last "name=" line in a child's report, up to the end of its line. */
static const char *report_field(const char *report, const char *name, char *out, size_t out_size)
{
	char prefix[64];
	const char *at = NULL, *end, *next = report;
	snprintf(prefix, sizeof prefix, "\n%s=", name);
	while ((next = strstr(next, prefix)) != NULL)
		at = next++;
	if (at == NULL)
		return NULL;
	at += strlen(prefix);
	end = strchr(at, '\n');
	if (end == NULL)
		end = at + strlen(at);
	snprintf(out, out_size, "%.*s", (int)(end - at), at);
	return out;
}

/* ---- children ----------------------------------------------------------------------- */

/*
 * Commits batches of 100 rows with offsets 1, 2, ... until a commit fails,
 * then tries one more; reports each step to `report` as it happens (so the
 * parent knows the last commit even if RocksDB aborts the process).
 */
static int fill_child(const char *dir, const char *log_dir, FILE *report)
{
	char errstr[1024];
	struct store_config config = {.path = dir, .log_dir = log_dir};
	struct store *store = store_open(&config, errstr, sizeof errstr);
	struct store_batch *batch = store_batch_new();
	unsigned char row[ROW_BYTES];
	long long last_ok = 0;

	setvbuf(report, NULL, _IOLBF, 0);
	fprintf(report, "\n");
	if (store == NULL) {
		fprintf(report, "open_error=%s\n", errstr);
		store_batch_free(batch);
		return 2;
	}
	for (long long i = 1; i <= 100000; i++) {
		for (int j = 0; j < 100; j++) {
			char key[64];
			int key_len = snprintf(key, sizeof key, "fill-%lld-%d", i, j);
			fill_row(row, (uint64_t)(i * 100 + j));
			store_batch_put(batch, STORE_USER, key, (size_t)key_len, row, sizeof row);
		}
		store_batch_set_offset(batch, "events", 0, i);
		if (store_commit(store, batch, errstr, sizeof errstr) != 0) {
			void *value;
			size_t value_len;
			char key[64];
			int key_len = snprintf(key, sizeof key, "fill-%lld-0", i), visible;
			fprintf(report, "failed_at=%lld\nfirst_error=%s\n", i, errstr);
			visible = store_get(store, STORE_USER, key, (size_t)key_len, &value,
					    &value_len, errstr, sizeof errstr);
			if (visible == 1)
				free(value);
			fprintf(report, "visible_after_failure=%d\n", visible);
			store_batch_clear(batch);
			store_batch_put(batch, STORE_USER, "after", 5, "x", 1);
			store_batch_set_offset(batch, "events", 0, i + 1);
			if (store_commit(store, batch, errstr, sizeof errstr) == 0)
				fprintf(report, "second_error=(none: it was committed)\n");
			else
				fprintf(report, "second_error=%s\n", errstr);
			fprintf(report, "read_only=%d\n", store_is_read_only(store));
			break;
		}
		last_ok = i;
		fprintf(report, "committed=%lld\n", i);
	}
	fprintf(report, "last_ok=%lld\n", last_ok);
	store_batch_free(batch);
	store_close(store);
	return 0;
}

/* Commits one batch, builds another, and dies by SIGKILL without closing anything. */
static int crash_child(const char *dir)
{
	char errstr[1024];
	struct store_config config = {.path = dir};
	struct store *store = store_open(&config, errstr, sizeof errstr);
	struct store_batch *batch = store_batch_new();
	if (store == NULL || batch == NULL)
		return 2;
	store_batch_put(batch, STORE_USER, "crash-a", 7, "committed", 9);
	store_batch_set_offset(batch, "events", 3, 10);
	if (store_commit(store, batch, errstr, sizeof errstr) != 0)
		return 3;
	store_batch_put(batch, STORE_USER, "crash-b", 7, "never committed", 15);
	store_batch_set_offset(batch, "events", 3, 11);
	raise(SIGKILL);
	return 4;
}

/* Opens the store, says "held" on `report`, and waits to be killed. */
static int hold_child(const char *dir, FILE *report)
{
	char errstr[1024];
	struct store_config config = {.path = dir};
	struct store *store = store_open(&config, errstr, sizeof errstr);
	if (store == NULL) {
		fprintf(report, "open_error=%s\n", errstr);
		return 2;
	}
	usleep(300 * 1000); /* let the background work of the open settle */
	fprintf(report, "held\n");
	fflush(report);
	for (;;)
		pause();
}

/* ---- round trips -------------------------------------------------------------------- */

struct collected {
	char keys[16][32];
	size_t key_lens[16];
	size_t count;
	size_t stop_after; /* 0: never stop */
};

static int collect_key(const void *key, size_t key_len, const void *value, size_t value_len,
		       void *ctx)
{
	struct collected *c = ctx;
	(void)value;
	(void)value_len;
	assert_true(c->count < 16 && key_len < 32);
	memcpy(c->keys[c->count], key, key_len);
	c->key_lens[c->count++] = key_len;
	return c->stop_after != 0 && c->count >= c->stop_after;
}

struct offsets_seen {
	char lines[16][300];
	size_t count;
};

static int collect_offset(const char *topic, int32_t partition, int64_t offset, void *ctx)
{
	struct offsets_seen *seen = ctx;
	assert_true(seen->count < 16);
	snprintf(seen->lines[seen->count++], sizeof seen->lines[0], "%s/%" PRId32 "=%" PRId64,
		 topic, partition, offset);
	return 0;
}

static const char BINARY_KEY[2] = {0x00, (char)0xff};

static void fill_round_trip(struct store *store)
{
	struct store_batch *batch = store_batch_new();
	unsigned char row[ROW_BYTES];
	assert_non_null(batch);
	fill_row(row, 7);
	for (int f = STORE_IDS; f < STORE_FAMILY_COUNT; f++) {
		const char *keys[3] = {"k2", "k1", "k3"};
		for (int k = 0; k < 3; k++) {
			char value[64];
			int len =
			    snprintf(value, sizeof value, "%s-%s", store_family_name(f), keys[k]);
			store_batch_put(batch, f, keys[k], 2, value, (size_t)len);
		}
		store_batch_put(batch, f, BINARY_KEY, sizeof BINARY_KEY, row, sizeof row);
		store_batch_put(batch, f, "empty", 5, "", 0);
	}
	store_batch_put(batch, STORE_META, "step/control", 12, "\0\0\0\0\0\0\0\x2a", 8);
	store_batch_set_offset(batch, "events", 0, 50);
	store_batch_set_offset(batch, "events", 1, 200);
	store_batch_set_offset(batch, "events", 10, 5);
	store_batch_set_offset(batch, "items", 0, 7);
	store_batch_set_offset(batch, "a.b-c_d", 2, INT64_MAX);
	store_batch_set_offset(batch, "neg", 0, -1);
	store_batch_set_offset(batch, "events", 0, 100); /* replaces 50 */
	assert_int_equal(store_batch_count(batch), 5 * 5 + 1);
	assert_int_equal(store_batch_offset_count(batch), 6);
	commit_ok(store, batch);
	assert_int_equal(store_batch_count(batch), 0);
	assert_int_equal(store_batch_offset_count(batch), 0);

	/* second commit: delete k2, overwrite k3 */
	for (int f = STORE_IDS; f < STORE_FAMILY_COUNT; f++) {
		store_batch_delete(batch, f, "k2", 2);
		store_batch_put(batch, f, "k3", 2, "new", 3);
	}
	commit_ok(store, batch);
	store_batch_free(batch);
}

static void check_round_trip(struct store *store)
{
	unsigned char row[ROW_BYTES];
	char errstr[1024];
	fill_row(row, 7);
	for (int f = STORE_IDS; f < STORE_FAMILY_COUNT; f++) {
		char value[64];
		int len = snprintf(value, sizeof value, "%s-k1", store_family_name(f));
		struct collected c = {.count = 0};
		void *binary;
		size_t binary_len;
		assert_int_equal(get_equals(store, f, "k1", value, (size_t)len), 1);
		assert_int_equal(get_equals(store, f, "k2", "", 0), 0);
		assert_int_equal(get_equals(store, f, "k3", "new", 3), 1);
		assert_int_equal(get_equals(store, f, "empty", "", 0), 1);
		assert_int_equal(get_equals(store, f, "missing", "", 0), 0);
		assert_int_equal(store_get(store, f, BINARY_KEY, sizeof BINARY_KEY, &binary,
					   &binary_len, errstr, sizeof errstr),
				 1);
		assert_int_equal(binary_len, ROW_BYTES);
		assert_memory_equal(binary, row, ROW_BYTES);
		free(binary);

		/* bytewise key order */
		assert_int_equal(store_foreach(store, f, collect_key, &c, errstr, sizeof errstr),
				 0);
		assert_int_equal(c.count, 4);
		assert_int_equal(c.key_lens[0], 2);
		assert_memory_equal(c.keys[0], BINARY_KEY, 2);
		assert_memory_equal(c.keys[1], "empty", 5);
		assert_memory_equal(c.keys[2], "k1", 2);
		assert_memory_equal(c.keys[3], "k3", 2);
	}
	/* a family's rows stay in that family */
	assert_int_equal(get_equals(store, STORE_META, "k1", "", 0), 0);
	assert_int_equal(get_equals(store, STORE_META, "step/control", "\0\0\0\0\0\0\0\x2a", 8), 1);

	assert_int_equal(offset_of(store, "events", 0), 100);
	assert_int_equal(offset_of(store, "events", 1), 200);
	assert_int_equal(offset_of(store, "events", 10), 5);
	assert_int_equal(offset_of(store, "items", 0), 7);
	assert_true(offset_of(store, "a.b-c_d", 2) == INT64_MAX);
	assert_int_equal(offset_of(store, "neg", 0), -1);
	assert_true(offset_of(store, "events", 2) == INT64_MIN);
	assert_true(offset_of(store, "other", 0) == INT64_MIN);

	struct offsets_seen seen = {.count = 0};
	assert_int_equal(store_offsets_foreach(store, collect_offset, &seen, errstr, sizeof errstr),
			 0);
	assert_int_equal(seen.count, 6);
	assert_string_equal(seen.lines[0], "a.b-c_d/2=9223372036854775807");
	assert_string_equal(seen.lines[1], "events/0=100");
	assert_string_equal(seen.lines[2], "events/1=200");
	assert_string_equal(seen.lines[3], "events/10=5");
	assert_string_equal(seen.lines[4], "items/0=7");
	assert_string_equal(seen.lines[5], "neg/0=-1");
}

static void round_trip_every_family_and_reopen(void **state)
{
	(void)state;
	char path[PATH_MAX], errstr[1024];
	struct collected first = {.stop_after = 1};
	struct store *store;
	void *raw;
	size_t raw_len;

	path_in_base(path, "round-trip");
	store = open_at(path, NULL);
	fill_round_trip(store);
	check_round_trip(store);

	/* fn stops the scan */
	assert_int_equal(
	    store_foreach(store, STORE_USER, collect_key, &first, errstr, sizeof errstr), 0);
	assert_int_equal(first.count, 1);
	/* offsets are 8 bytes big-endian under offset/<topic>/<partition> */
	assert_int_equal(store_get(store, STORE_META, "offset/events/1", 15, &raw, &raw_len, errstr,
				   sizeof errstr),
			 1);
	assert_int_equal(raw_len, 8);
	assert_memory_equal(raw, "\0\0\0\0\0\0\0\xc8", 8);
	free(raw);
	assert_int_equal(get_equals(store, STORE_META, "format", "streamrec-state", 15), 1);
	assert_int_equal(get_equals(store, STORE_META, "format_version", "1", 1), 1);
	assert_true(store_state_bytes(store) > 0);
	store_close(store);

	store = open_at(path, NULL);
	check_round_trip(store);
	store_close(store);
}

/* Bytes of the WAL files (NNNNNN.log) in a state directory. */
static long long wal_bytes(const char *dir)
{
	char path[PATH_MAX];
	long long total = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len < 5 || strcmp(e->d_name + len - 4, ".log") != 0)
			continue;
		join_path(path, dir, e->d_name);
		assert_int_equal(stat(path, &st), 0);
		total += (long long)st.st_size;
	}
	closedir(d);
	return total;
}

/* A store closed as it is leaves its commits in the WAL, which the next open
 * replays; one whose memtables were written first leaves none, and reopens
 * with every row. */
static void flushed_memtables_leave_no_log_to_replay(void **state)
{
	(void)state;
	char path[PATH_MAX], errstr[1024];
	uint64_t flushed = 0;
	struct store *store;

	path_in_base(path, "unflushed");
	store = open_at(path, NULL);
	fill_round_trip(store);
	store_close(store);
	assert_true(wal_bytes(path) > 0);

	path_in_base(path, "flushed");
	store = open_at(path, NULL);
	fill_round_trip(store);
	if (store_flush_memtables(store, &flushed, errstr, sizeof errstr) != 0)
		fail_msg("store_flush_memtables: %s", errstr);
	assert_true(flushed > 0);
	check_round_trip(store);
	store_close(store);
	assert_int_equal(wal_bytes(path), 0);
	store = open_at(path, NULL);
	check_round_trip(store);
	/* nothing left to write: a second flush writes nothing */
	if (store_flush_memtables(store, &flushed, errstr, sizeof errstr) != 0)
		fail_msg("store_flush_memtables: %s", errstr);
	assert_int_equal(flushed, 0);
	store_close(store);
}

/* ---- atomicity ------------------------------------------------------------------------ */

static void commit_survives_reopen_uncommitted_batch_leaves_nothing(void **state)
{
	(void)state;
	char path[PATH_MAX];
	struct store *store;
	struct store_batch *batch;

	path_in_base(path, "atomic");
	store = open_at(path, NULL);
	batch = store_batch_new();
	store_batch_put(batch, STORE_USER, "u1", 2, "vector-1", 8);
	store_batch_put(batch, STORE_ITEM, "i1", 2, "item-1", 6);
	store_batch_set_offset(batch, "events", 0, 41);
	commit_ok(store, batch);
	store_close(store);

	store = open_at(path, NULL);
	assert_int_equal(get_equals(store, STORE_USER, "u1", "vector-1", 8), 1);
	assert_int_equal(get_equals(store, STORE_ITEM, "i1", "item-1", 6), 1);
	assert_int_equal(offset_of(store, "events", 0), 41);

	/* built, never committed */
	store_batch_put(batch, STORE_USER, "u2", 2, "vector-2", 8);
	store_batch_delete(batch, STORE_USER, "u1", 2);
	store_batch_set_offset(batch, "events", 0, 42);
	assert_int_equal(get_equals(store, STORE_USER, "u2", "", 0), 0);
	store_batch_free(batch);
	store_close(store);

	store = open_at(path, NULL);
	assert_int_equal(get_equals(store, STORE_USER, "u1", "vector-1", 8), 1);
	assert_int_equal(get_equals(store, STORE_USER, "u2", "", 0), 0);
	assert_int_equal(offset_of(store, "events", 0), 41);
	store_close(store);
}

static void commit_survives_a_crash(void **state)
{
	(void)state;
	char path[PATH_MAX], report[256];
	struct store *store;
	int status;

	path_in_base(path, "crash");
	store = open_at(path, NULL);
	store_close(store);
	status = run_self("--commit-and-crash", path, NULL, 0, report, sizeof report);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);

	store = open_at(path, NULL);
	assert_int_equal(get_equals(store, STORE_USER, "crash-a", "committed", 9), 1);
	assert_int_equal(get_equals(store, STORE_USER, "crash-b", "", 0), 0);
	assert_int_equal(offset_of(store, "events", 3), 10);
	store_close(store);
}

/* ---- checkpoints -------------------------------------------------------------------- */

struct digest {
	uint64_t hash[STORE_FAMILY_COUNT];
	size_t rows[STORE_FAMILY_COUNT];
	int family;
};

static int digest_row(const void *key, size_t key_len, const void *value, size_t value_len,
		      void *ctx)
{
	struct digest *d = ctx;
	d->hash[d->family] = fnv(d->hash[d->family], &key_len, sizeof key_len);
	d->hash[d->family] = fnv(d->hash[d->family], key, key_len);
	d->hash[d->family] = fnv(d->hash[d->family], &value_len, sizeof value_len);
	d->hash[d->family] = fnv(d->hash[d->family], value, value_len);
	d->rows[d->family]++;
	return 0;
}

static struct digest digest_of(struct store *store)
{
	struct digest d;
	char errstr[1024];
	memset(&d, 0, sizeof d);
	for (d.family = 0; d.family < STORE_FAMILY_COUNT; d.family++) {
		d.hash[d.family] = 0xcbf29ce484222325ULL;
		assert_int_equal(
		    store_foreach(store, d.family, digest_row, &d, errstr, sizeof errstr), 0);
	}
	return d;
}

static void checkpoint_is_a_consistent_copy(void **state)
{
	(void)state;
	char path[PATH_MAX], copy_path[PATH_MAX], errstr[1024];
	unsigned char row[ROW_BYTES];
	struct store *store, *copy;
	struct store_batch *batch = store_batch_new();
	struct digest before, after, of_copy;

	path_in_base(path, "checkpointed");
	path_in_base(copy_path, "checkpoint-copy");
	store = open_at(path, "fp-1");
	for (int i = 0; i < 2000; i++) {
		char key[32];
		int len = snprintf(key, sizeof key, "user-%05d", i);
		fill_row(row, (uint64_t)i);
		store_batch_put(batch, STORE_USER, key, (size_t)len, row, sizeof row);
		store_batch_put(batch, STORE_POP, key, (size_t)len, "1", 1);
	}
	store_batch_set_offset(batch, "events", 0, 2000);
	commit_ok(store, batch);
	before = digest_of(store);

	assert_int_equal(store_checkpoint(store, copy_path, errstr, sizeof errstr), 0);
	/* the original moves on */
	store_batch_delete(batch, STORE_USER, "user-00000", 10);
	store_batch_put(batch, STORE_ITEM, "new", 3, "row", 3);
	store_batch_set_offset(batch, "events", 0, 2001);
	commit_ok(store, batch);
	after = digest_of(store);
	assert_memory_not_equal(before.hash, after.hash, sizeof before.hash);

	/* a second store on the copy, beside the first */
	copy = open_at(copy_path, NULL);
	of_copy = digest_of(copy);
	assert_memory_equal(before.hash, of_copy.hash, sizeof before.hash);
	assert_memory_equal(before.rows, of_copy.rows, sizeof before.rows);
	assert_int_equal(of_copy.rows[STORE_USER], 2000);
	assert_int_equal(offset_of(copy, "events", 0), 2000);
	assert_string_equal(store_fingerprint(copy), "fp-1");
	store_close(copy);

	/* the directory must not exist */
	assert_int_equal(store_checkpoint(store, copy_path, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "already exists"));
	store_batch_free(batch);
	store_close(store);
}

/* The nice values of this process's threads named name (at most max), or -1 on error. */
static int thread_nices(const char *name, int *nices, int max)
{
	DIR *tasks = opendir("/proc/self/task");
	struct dirent *entry;
	int found = 0;
	if (tasks == NULL)
		return -1;
	while ((entry = readdir(tasks)) != NULL && found < max) {
		char path[PATH_MAX], comm[64] = "", stat[1024] = "";
		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", entry->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue; /* the thread ended meanwhile */
		if (fgets(comm, sizeof comm, f) == NULL)
			comm[0] = '\0';
		fclose(f);
		comm[strcspn(comm, "\n")] = '\0';
		if (strcmp(comm, name) != 0)
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/stat", entry->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		size_t got = fread(stat, 1, sizeof stat - 1, f);
		fclose(f);
		stat[got] = '\0';
		/* after the ")" closing comm: state is field 3, nice field 19 */
		char *field = strrchr(stat, ')');
		for (int k = 0; field != NULL && k < 17; k++)
			field = strchr(field + 1, ' ');
		if (field != NULL)
			nices[found++] = atoi(field + 1);
	}
	closedir(tasks);
	return found;
}

/* A child (--lowered: the lowering is the process's, for good): a store
 * opened with low_priority_background flushes on a pool thread at nice 19. */
static int lowered_flush_child(const char *path)
{
	char errstr[1024];
	unsigned char row[ROW_BYTES];
	char copy_path[PATH_MAX];
	int nices[8], before[8];
	struct store_config config = {.path = path, .low_priority_background = true};
	struct store *store = store_open(&config, errstr, sizeof errstr);
	if (store == NULL)
		return 10;
	/* the flush pool's threads are the process's; none is lowered before it works */
	int had = thread_nices("rocksdb:high", before, 8);
	struct store_batch *batch = store_batch_new();
	for (int i = 0; i < 500; i++) {
		char key[32];
		int len = snprintf(key, sizeof key, "user-%05d", i);
		fill_row(row, (uint64_t)i);
		store_batch_put(batch, STORE_USER, key, (size_t)len, row, sizeof row);
	}
	if (store_commit(store, batch, errstr, sizeof errstr) != 0)
		return 11;
	/* a checkpoint flushes the memtables: a job for the flush pool */
	snprintf(copy_path, sizeof copy_path, "%s-copy", path);
	if (store_checkpoint(store, copy_path, errstr, sizeof errstr) != 0)
		return 12;
	int n = thread_nices("rocksdb:high", nices, 8);
	int lowered = 0;
	for (int k = 0; k < n; k++)
		lowered += nices[k] == 19;
	store_batch_free(batch);
	store_close(store);
	/* the pool ran at the process's priority before: 0, or what the test
	 * runner was started with (`nice make test` failed when it was 0) */
	errno = 0;
	int own = getpriority(PRIO_PROCESS, 0);
	if (had < 1 || errno != 0 || before[0] != own)
		return 13;
	return n >= 1 && lowered >= 1 ? 0 : 14;
}

static void low_priority_background_lowers_the_flush_pool(void **state)
{
	(void)state;
	char path[PATH_MAX], report[256];
	path_in_base(path, "lowered");
	int status = run_self("--lowered", path, NULL, 0, report, sizeof report);
	assert_true(WIFEXITED(status));
	/* 13: the pool was not at the process's nice before; 14: no flush thread at 19 after */
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- refusals ------------------------------------------------------------------------- */

static void assert_refused_untouched(const char *path, const char *expected)
{
	static char before[65536], after[65536];
	char errstr[1024];
	struct store_config config = {.path = path};
	listing(path, before, sizeof before);
	assert_null(store_open(&config, errstr, sizeof errstr));
	print_message("refused: %s\n", errstr);
	assert_non_null(strstr(errstr, path));
	if (strstr(errstr, expected) == NULL)
		fail_msg("expected '%s' in: %s", expected, errstr);
	listing(path, after, sizeof after);
	assert_string_equal(before, after);
}

static void refuses_a_non_empty_foreign_directory(void **state)
{
	(void)state;
	char path[PATH_MAX], file[PATH_MAX];
	path_in_base(path, "foreign");
	assert_int_equal(mkdir(path, 0755), 0);
	join_path(file, path, "notes.txt");
	write_file(file, "do not delete\n", 14);
	assert_refused_untouched(path, "no RocksDB database");
}

static void refuses_a_rocksdb_database_without_the_format(void **state)
{
	(void)state;
	char path[PATH_MAX], *err = NULL;
	rocksdb_options_t *options = rocksdb_options_create();
	rocksdb_writeoptions_t *write_options = rocksdb_writeoptions_create();
	rocksdb_t *db;

	path_in_base(path, "plain-rocksdb");
	rocksdb_options_set_create_if_missing(options, 1);
	db = rocksdb_open(options, path, &err);
	assert_null(err);
	rocksdb_put(db, write_options, "format", 6, "something-else", 14, &err);
	assert_null(err);
	rocksdb_close(db);
	rocksdb_writeoptions_destroy(write_options);
	rocksdb_options_destroy(options);

	assert_refused_untouched(path, "not a streamrec state");
}

/* Opens a streamrec state with the bare RocksDB API and puts one meta key. */
static void put_meta_directly(const char *path, const char *key, const char *value)
{
	const char *names[] = {"default", "meta", "ids", "user", "item", "covis", "pop"};
	const rocksdb_options_t *family_options[7];
	rocksdb_column_family_handle_t *handles[7];
	rocksdb_options_t *options = rocksdb_options_create();
	rocksdb_writeoptions_t *write_options = rocksdb_writeoptions_create();
	char *err = NULL;
	rocksdb_t *db;
	for (int i = 0; i < 7; i++)
		family_options[i] = options;
	db = rocksdb_open_column_families(options, path, 7, names, family_options, handles, &err);
	if (err != NULL)
		fail_msg("rocksdb_open_column_families(%s): %s", path, err);
	rocksdb_put_cf(db, write_options, handles[1], key, strlen(key), value, strlen(value), &err);
	assert_null(err);
	for (int i = 0; i < 7; i++)
		rocksdb_column_family_handle_destroy(handles[i]);
	rocksdb_close(db);
	rocksdb_writeoptions_destroy(write_options);
	rocksdb_options_destroy(options);
}

static void refuses_another_format_version(void **state)
{
	(void)state;
	char path[PATH_MAX], expected[PATH_MAX + 100], errstr[1024];
	struct store_config config;
	struct store *store;

	path_in_base(path, "version-2");
	store = open_at(path, NULL);
	store_close(store);
	put_meta_directly(path, "format_version", "2");
	snprintf(expected, sizeof expected,
		 "%s: state format version 2, this streamrec reads version 1", path);
	assert_refused_untouched(path, expected);

	config = (struct store_config){.path = path};
	put_meta_directly(path, "format_version", "one");
	assert_null(store_open(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "not a version number"));
	put_meta_directly(path, "format_version", "1");
	put_meta_directly(path, "format", "kafka-streams-state");
	assert_refused_untouched(path, "not 'streamrec-state'");
}

static void refuses_a_corrupt_current_file(void **state)
{
	(void)state;
	char path[PATH_MAX], current[PATH_MAX];
	struct store *store;

	path_in_base(path, "corrupt-current");
	store = open_at(path, NULL);
	store_close(store);
	join_path(current, path, "CURRENT");
	write_file(current, "\x13garbage\x7f", 9);
	assert_refused_untouched(path, "cannot read the RocksDB database");
}

static void refuses_a_corrupt_manifest(void **state)
{
	(void)state;
	char path[PATH_MAX], manifest[PATH_MAX] = "";
	struct store *store;
	struct dirent *entry;
	struct stat st;
	DIR *dir;
	char *garbage;

	path_in_base(path, "corrupt-manifest");
	store = open_at(path, NULL);
	store_close(store);
	dir = opendir(path);
	assert_non_null(dir);
	while ((entry = readdir(dir)) != NULL)
		if (strncmp(entry->d_name, "MANIFEST-", 9) == 0)
			join_path(manifest, path, entry->d_name);
	closedir(dir);
	assert_true(manifest[0] != '\0');
	assert_int_equal(stat(manifest, &st), 0);
	garbage = malloc((size_t)st.st_size);
	memset(garbage, 0xA5, (size_t)st.st_size);
	write_file(manifest, garbage, (size_t)st.st_size);
	free(garbage);
	assert_refused_untouched(path, "Corruption");
}

static void refuses_a_file_and_a_missing_parent(void **state)
{
	(void)state;
	char path[PATH_MAX], errstr[1024];
	struct store_config config = {.path = path};

	path_in_base(path, "a-file");
	write_file(path, "x", 1);
	assert_null(store_open(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, path));
	assert_non_null(strstr(errstr, "is not a directory"));

	path_in_base(path, "no-such-parent/state");
	assert_null(store_open(&config, errstr, sizeof errstr));
	print_message("refused: %s\n", errstr);
	assert_non_null(strstr(errstr, path));
	assert_non_null(strstr(errstr, "parent directory must exist"));
}

static void refuses_a_state_another_process_has_open(void **state)
{
	(void)state;
	char path[PATH_MAX], fd_text[16], line[256] = "";
	struct store *store;
	int fds[2], status;
	ssize_t got;
	pid_t pid;

	path_in_base(path, "in-use");
	store = open_at(path, NULL);
	store_close(store);
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		snprintf(fd_text, sizeof fd_text, "%d", fds[1]);
		execl("/proc/self/exe", "050_store", "--hold", path, fd_text, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	got = read(fds[0], line, sizeof line - 1);
	assert_true(got > 0);
	line[got] = '\0';
	assert_string_equal(line, "held\n");

	/* refused before RocksDB rotates the holder's info LOG */
	assert_refused_untouched(path, "in use by process");

	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(fds[0]);
	store = open_at(path, NULL);
	store_close(store);
}

static void an_empty_directory_is_initialised(void **state)
{
	(void)state;
	char path[PATH_MAX];
	struct store *store;
	path_in_base(path, "empty");
	assert_int_equal(mkdir(path, 0755), 0);
	store = open_at(path, NULL);
	assert_int_equal(get_equals(store, STORE_META, "format", "streamrec-state", 15), 1);
	store_close(store);
	store = open_at(path, NULL);
	store_close(store);
}

/* ---- fingerprint, batch misuse -------------------------------------------------------- */

static void fingerprint_of_the_first_open_is_kept(void **state)
{
	(void)state;
	char path[PATH_MAX];
	struct store *store;

	path_in_base(path, "fingerprint");
	store = open_at(path, NULL);
	assert_null(store_fingerprint(store));
	store_close(store);
	store = open_at(path, "dim=32;lr=0.1");
	assert_string_equal(store_fingerprint(store), "dim=32;lr=0.1");
	store_close(store);
	store = open_at(path, "dim=64;lr=0.1"); /* reported, not refused */
	assert_string_equal(store_fingerprint(store), "dim=32;lr=0.1");
	store_close(store);
	store = open_at(path, NULL);
	assert_string_equal(store_fingerprint(store), "dim=32;lr=0.1");
	store_close(store);
}

static void a_misused_batch_is_refused_and_the_store_stays_writable(void **state)
{
	(void)state;
	char path[PATH_MAX], errstr[1024], long_topic[STORE_TOPIC_MAX_BYTES + 2];
	struct store *store;
	struct store_batch *batch = store_batch_new();

	path_in_base(path, "misuse");
	store = open_at(path, NULL);

	store_batch_put(batch, STORE_META, "format_version", 14, "9", 1);
	store_batch_put(batch, STORE_USER, "u", 1, "v", 1); /* ignored after the error */
	assert_int_equal(store_commit(store, batch, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "format_version"));
	assert_false(store_is_read_only(store));
	assert_int_equal(get_equals(store, STORE_USER, "u", "", 0), 0);

	store_batch_clear(batch);
	store_batch_delete(batch, STORE_META, "offset/events/0", 15);
	assert_int_equal(store_commit(store, batch, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "only the store writes"));

	store_batch_clear(batch);
	store_batch_put(batch, STORE_FAMILY_COUNT, "k", 1, "v", 1);
	assert_int_equal(store_commit(store, batch, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "out of range"));

	store_batch_clear(batch);
	memset(long_topic, 't', sizeof long_topic - 1);
	long_topic[sizeof long_topic - 1] = '\0';
	store_batch_set_offset(batch, long_topic, 0, 1);
	assert_int_equal(store_commit(store, batch, errstr, sizeof errstr), -1);
	store_batch_clear(batch);
	store_batch_set_offset(batch, "events", -1, 1);
	assert_int_equal(store_commit(store, batch, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "partition >= 0"));

	store_batch_clear(batch);
	store_batch_put(batch, STORE_META, "step/control", 12, "7", 1);
	store_batch_set_offset(batch, "events", 0, 1);
	commit_ok(store, batch);
	assert_int_equal(offset_of(store, "events", 0), 1);
	/* an empty batch is a no-op */
	commit_ok(store, batch);
	store_batch_free(batch);
	store_close(store);
}

/* ---- write failures ------------------------------------------------------------------- */

/*
 * Runs the fill child on an initialised state at `path` and checks that
 * the commit that failed named `cause`, that the store refused the next
 * one, and that after a reopen in this process (normal limits, `before_reopen`
 * having run) the offset is the last successful commit's, with its rows,
 * and nothing of the failed commit. With `may_abort`, the child may instead
 * die of SIGABRT (RocksDB 7.8.3's assertion, see store.h): then only the
 * state's consistency is checked.
 */
static void check_write_failure(const char *path, const char *log_dir, rlim_t file_size_limit,
				const char *cause, bool may_abort, void (*before_reopen)(void))
{
	char report[16384], field[2048], key[64];
	long long last_ok;
	unsigned char row[ROW_BYTES];
	struct store *store;
	int status;

	status = run_self("--fill", path, log_dir, file_size_limit, report, sizeof report);
	print_message(
	    "fill child (exit %d, signal %d): %s\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	    WIFSIGNALED(status) ? WTERMSIG(status) : 0,
	    report_field(report, "first_error", field, sizeof field) ? field : "no error reported");
	assert_non_null(report_field(report, "committed", field, sizeof field));
	last_ok = atoll(field);
	assert_true(last_ok >= 1);

	if (may_abort && WIFSIGNALED(status)) {
		assert_int_equal(WTERMSIG(status), SIGABRT);
	} else {
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_non_null(report_field(report, "failed_at", field, sizeof field));
		assert_int_equal(atoll(field), last_ok + 1);
		assert_non_null(report_field(report, "last_ok", field, sizeof field));
		assert_int_equal(atoll(field), last_ok);
		assert_non_null(report_field(report, "first_error", field, sizeof field));
		assert_non_null(strstr(field, path));
		if (strstr(field, cause) == NULL)
			fail_msg("expected '%s' in: %s", cause, field);
		assert_non_null(report_field(report, "second_error", field, sizeof field));
		assert_non_null(strstr(field, "store is read-only after an earlier write failure"));
		assert_non_null(strstr(field, cause));
		assert_non_null(report_field(report, "read_only", field, sizeof field));
		assert_string_equal(field, "1");
		/* nothing of the failed commit is visible in that process either */
		assert_non_null(report_field(report, "visible_after_failure", field, sizeof field));
		assert_string_equal(field, "0");
	}

	if (before_reopen != NULL)
		before_reopen();
	store = open_at(path, NULL);
	assert_int_equal(offset_of(store, "events", 0), last_ok);
	for (int j = 0; j < 100; j++) {
		snprintf(key, sizeof key, "fill-%lld-%d", last_ok, j);
		fill_row(row, (uint64_t)(last_ok * 100 + j));
		assert_int_equal(get_equals(store, STORE_USER, key, row, sizeof row), 1);
	}
	snprintf(key, sizeof key, "fill-%lld-0", last_ok + 1);
	assert_int_equal(get_equals(store, STORE_USER, key, "", 0), 0);
	assert_int_equal(get_equals(store, STORE_USER, "after", "", 0), 0);
	store_close(store);
}

static void init_state(const char *path)
{
	struct store *store = open_at(path, NULL);
	struct store_batch *batch = store_batch_new();
	store_batch_put(batch, STORE_USER, "seed", 4, "row", 3);
	store_batch_set_offset(batch, "events", 0, 0);
	commit_ok(store, batch);
	store_batch_free(batch);
	store_close(store);
}

static void write_failure_file_size_limit(void **state)
{
	(void)state;
	char path[PATH_MAX];
	path_in_base(path, "fsize-limit");
	init_state(path);
	/* room for the files RocksDB writes on open (OPTIONS, MANIFEST, LOG), then
	 * the WAL hits the limit after a few dozen commits of ~45 KB */
	check_write_failure(path, NULL, 1 << 20, strerror(EFBIG), false, NULL);
}

static char ballast_path[PATH_MAX];

static void remove_ballast(void)
{
	assert_int_equal(unlink(ballast_path), 0);
}

/* Mounts an 8 MiB tmpfs at base/<name>, initialises a state in it and fills it
 * up to about 1.5 MiB free; false when mounts are not allowed here. */
static bool full_tmpfs_state(const char *name, char *mount_point, char *path)
{
	struct statvfs vfs;
	unsigned long long free_bytes, ballast_bytes;
	char *zeros;

	if (!private_mounts) {
		print_message("no private mount namespace here (not root, or not allowed): "
			      "disk-full case skipped, the file-size limit case covers write "
			      "failures\n");
		return false;
	}
	path_in_base(mount_point, name);
	assert_int_equal(mkdir(mount_point, 0755), 0);
	if (mount("tmpfs", mount_point, "tmpfs", 0, "size=8m") != 0) {
		print_message("mount tmpfs: %s: disk-full case skipped\n", strerror(errno));
		return false;
	}
	join_path(path, mount_point, "state");
	init_state(path);

	join_path(ballast_path, mount_point, "ballast");
	assert_int_equal(statvfs(mount_point, &vfs), 0);
	free_bytes = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
	assert_true(free_bytes > (3u << 20) / 2);
	ballast_bytes = free_bytes - (3u << 20) / 2;
	zeros = calloc(1, ballast_bytes);
	write_file(ballast_path, zeros, ballast_bytes);
	free(zeros);
	return true;
}

static void write_failure_disk_full(void **state)
{
	(void)state;
	char mount_point[PATH_MAX], path[PATH_MAX], log_dir[PATH_MAX];
	if (!full_tmpfs_state("tmpfs-full", mount_point, path))
		skip();
	/* the info LOG elsewhere: the commit fails cleanly */
	path_in_base(log_dir, "rocksdb-logs");
	check_write_failure(path, log_dir, 0, strerror(ENOSPC), false, remove_ballast);
	umount2(mount_point, MNT_DETACH);
}

static void disk_full_with_the_log_on_it_fails_cleanly(void **state)
{
	(void)state;
	char mount_point[PATH_MAX], path[PATH_MAX];
	if (!full_tmpfs_state("tmpfs-full-log", mount_point, path))
		skip();
	/* the info LOG in the state directory holds only its header (see
	 * store.h): no abort, the commit fails and close returns */
	check_write_failure(path, NULL, 0, strerror(ENOSPC), false, remove_ballast);
	umount2(mount_point, MNT_DETACH);
}

static void a_failed_initialisation_leaves_nothing_behind(void **state)
{
	(void)state;
	char mount_point[PATH_MAX], path[PATH_MAX], empty[PATH_MAX], log_dir[PATH_MAX],
	    errstr[1024];
	struct dirent **entries;
	int entry_count;
	struct store_config config = {.path = path, .log_dir = log_dir};
	struct statvfs vfs;
	unsigned long long free_bytes;
	char *zeros;

	if (!private_mounts) {
		print_message("no private mount namespace here: case skipped\n");
		skip();
	}
	path_in_base(mount_point, "tmpfs-init");
	assert_int_equal(mkdir(mount_point, 0755), 0);
	if (mount("tmpfs", mount_point, "tmpfs", 0, "size=1m") != 0) {
		print_message("mount tmpfs: %s: case skipped\n", strerror(errno));
		skip();
	}
	join_path(empty, mount_point, "empty");
	assert_int_equal(mkdir(empty, 0755), 0);
	/* leave 16 KiB: less than RocksDB's OPTIONS file for seven families */
	join_path(ballast_path, mount_point, "ballast");
	assert_int_equal(statvfs(mount_point, &vfs), 0);
	free_bytes = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
	zeros = calloc(1, free_bytes);
	write_file(ballast_path, zeros, free_bytes - 16384);
	free(zeros);
	path_in_base(log_dir, "rocksdb-logs-init"); /* the LOG elsewhere: see store.h */

	/* a directory the store creates is removed again */
	join_path(path, mount_point, "state");
	assert_null(store_open(&config, errstr, sizeof errstr));
	print_message("refused: %s\n", errstr);
	assert_non_null(strstr(errstr, path));
	assert_non_null(strstr(errstr, strerror(ENOSPC)));
	assert_int_equal(access(path, F_OK), -1);

	/* an empty directory is left empty */
	join_path(path, mount_point, "empty");
	assert_null(store_open(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, strerror(ENOSPC)));
	entry_count = scandir(path, &entries, NULL, alphasort);
	assert_int_equal(entry_count, 2); /* . and .. */
	while (entry_count > 0)
		free(entries[--entry_count]);
	free(entries);
	umount2(mount_point, MNT_DETACH);
}

/* ---- main ------------------------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	snprintf(base_dir, sizeof base_dir, "/tmp/streamrec-050-XXXXXX");
	return mkdtemp(base_dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char mount_point[PATH_MAX];
	(void)state;
	/* left mounted only when a test failed half-way */
	path_in_base(mount_point, "tmpfs-full");
	umount2(mount_point, MNT_DETACH);
	path_in_base(mount_point, "tmpfs-full-log");
	umount2(mount_point, MNT_DETACH);
	path_in_base(mount_point, "tmpfs-init");
	umount2(mount_point, MNT_DETACH);
	remove_tree(base_dir);
	return 0;
}

/*
 * A private mount namespace, so the disk-full test can mount a tmpfs that
 * nobody else sees and that disappears with the process. Done first thing,
 * before RocksDB starts threads: a namespace is per thread.
 */
static void try_private_mount_namespace(void)
{
	if (unshare(CLONE_NEWNS) != 0)
		return;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return;
	private_mounts = true;
}

int main(int argc, char **argv)
{
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "--fill") == 0) {
		FILE *report = fdopen(atoi(argv[3]), "w");
		int ret = report ? fill_child(argv[2], argc == 5 ? argv[4] : NULL, report) : 2;
		if (report)
			fclose(report);
		return ret;
	}
	if (argc == 4 && strcmp(argv[1], "--commit-and-crash") == 0)
		return crash_child(argv[2]);
	if (argc == 4 && strcmp(argv[1], "--lowered") == 0)
		return lowered_flush_child(argv[2]);
	if (argc == 4 && strcmp(argv[1], "--hold") == 0) {
		FILE *report = fdopen(atoi(argv[3]), "w");
		return report ? hold_child(argv[2], report) : 2;
	}

	try_private_mount_namespace();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(round_trip_every_family_and_reopen),
	    cmocka_unit_test(flushed_memtables_leave_no_log_to_replay),
	    cmocka_unit_test(commit_survives_reopen_uncommitted_batch_leaves_nothing),
	    cmocka_unit_test(commit_survives_a_crash),
	    cmocka_unit_test(checkpoint_is_a_consistent_copy),
	    cmocka_unit_test(low_priority_background_lowers_the_flush_pool),
	    cmocka_unit_test(refuses_a_non_empty_foreign_directory),
	    cmocka_unit_test(refuses_a_rocksdb_database_without_the_format),
	    cmocka_unit_test(refuses_another_format_version),
	    cmocka_unit_test(refuses_a_corrupt_current_file),
	    cmocka_unit_test(refuses_a_corrupt_manifest),
	    cmocka_unit_test(refuses_a_file_and_a_missing_parent),
	    cmocka_unit_test(refuses_a_state_another_process_has_open),
	    cmocka_unit_test(an_empty_directory_is_initialised),
	    cmocka_unit_test(a_failed_initialisation_leaves_nothing_behind),
	    cmocka_unit_test(fingerprint_of_the_first_open_is_kept),
	    cmocka_unit_test(a_misused_batch_is_refused_and_the_store_stays_writable),
	    cmocka_unit_test(write_failure_file_size_limit),
	    cmocka_unit_test(write_failure_disk_full),
	    cmocka_unit_test(disk_full_with_the_log_on_it_fails_cleanly),
	};
	return cmocka_run_group_tests_name("050_store", tests, setup, teardown);
}
