/*
 * Store benchmark: commit throughput of 416-byte rows (DESIGN's figure for
 * a user row) in batches of 1k, 10k and 100k rows, each commit carrying
 * offsets for 8 partitions, WAL on and OS-buffered as the daemon runs, and
 * one line with an fsync per commit (10k rows, on the state the 10k line
 * grew). Keys are 8-byte big-endian ids drawn
 * over 1M users, so later runs overwrite earlier rows and compaction runs
 * in the background as it would in production. A row is 104 random float32
 * values, each row its own, so compression gains what it would on real
 * embeddings (next to nothing) rather than on repeated bytes. Timed: building the batch
 * and store_commit(), what the daemon pays. Prints medians of several runs,
 * then point reads after a reopen (start-up) and the state's size.
 *
 * The state goes to $STREAMREC_BENCH_DIR, else build/bench (make bench runs
 * from the repository root), else /var/tmp; the filesystem is printed,
 * since a tmpfs would flatter every figure.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "store.h"
#include "bench.h"

#define ROW_BYTES    416
#define KEY_BYTES    8
#define USERS        1000000
#define PARTITIONS   8
#define RUNS         5
#define ROWS_PER_RUN 400000
#define SYNC_RUNS    3
#define SYNC_ROWS    100000
#define READS        200000

static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

static void user_key(unsigned char key[KEY_BYTES], uint64_t user)
{
	for (int i = 0; i < KEY_BYTES; i++)
		key[i] = (unsigned char)(user >> (56 - 8 * i));
}

/* 104 float32 in [-0.5, 0.5): an embedding-like row. */
static void fill_row(unsigned char row[ROW_BYTES], uint64_t *rng)
{
	for (size_t i = 0; i < ROW_BYTES / sizeof(float); i += 2) {
		uint64_t x = next_random(rng);
		float pair[2] = {(float)(x >> 40) / (float)(1 << 24) - 0.5f,
				 (float)(x & 0xFFFFFF) / (float)(1 << 24) - 0.5f};
		memcpy(row + i * sizeof(float), pair, sizeof pair);
	}
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

static const char *filesystem_name(const char *path)
{
	struct statfs fs;
	if (statfs(path, &fs) != 0)
		return "unknown filesystem";
	switch ((unsigned long)fs.f_type) {
	case 0xEF53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x01021994: return "tmpfs (in memory: figures flattered)";
	case 0x794C7630: return "overlayfs";
	default: return "other filesystem";
	}
}

struct run_figures {
	double rows_per_s;
	double commit_ms; /* median store_commit() time of one batch */
};

/* Commits `total_rows` rows in batches of `batch_rows`; exits on error. */
static struct run_figures run_commits(struct store *store, struct store_batch *batch,
				      size_t batch_rows, size_t total_rows, uint64_t *rng,
				      int64_t *offset)
{
	size_t batches = (total_rows + batch_rows - 1) / batch_rows;
	double *commit_s = malloc(batches * sizeof *commit_s), start = now_s();
	char errstr[512];
	struct run_figures figures;

	for (size_t b = 0; b < batches; b++) {
		double before;
		for (size_t r = 0; r < batch_rows; r++) {
			unsigned char key[KEY_BYTES], row[ROW_BYTES];
			user_key(key, next_random(rng) % USERS);
			fill_row(row, rng);
			store_batch_put(batch, STORE_USER, key, sizeof key, row, sizeof row);
		}
		for (int p = 0; p < PARTITIONS; p++)
			store_batch_set_offset(batch, "events", p, *offset + p);
		*offset += PARTITIONS;
		before = now_s();
		if (store_commit(store, batch, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "bench_store: %s\n", errstr);
			exit(1);
		}
		commit_s[b] = now_s() - before;
	}
	figures.rows_per_s = (double)(batches * batch_rows) / (now_s() - start);
	figures.commit_ms = median(commit_s, (int)batches) * 1e3;
	free(commit_s);
	return figures;
}

static void bench_batches(const char *path, size_t batch_rows, bool sync, int runs,
			  size_t rows_per_run)
{
	char errstr[512];
	struct store_config config = {.path = path, .sync_commits = sync};
	struct store *store = store_open(&config, errstr, sizeof errstr);
	struct store_batch *batch = store_batch_new();
	double rates[RUNS], commit_ms[RUNS], rate;
	uint64_t rng = batch_rows;
	int64_t offset = 0;

	if (store == NULL || batch == NULL) {
		fprintf(stderr, "bench_store: %s\n", store ? "out of memory" : errstr);
		exit(1);
	}
	for (int run = 0; run < runs; run++) {
		struct run_figures f =
		    run_commits(store, batch, batch_rows, rows_per_run, &rng, &offset);
		rates[run] = f.rows_per_s;
		commit_ms[run] = f.commit_ms;
	}
	rate = median(rates, runs);
	printf("store: batch %6zu rows%s: %8.0f rows/s, %6.1f MB/s, one commit %7.1f ms "
	       "(median of %d runs of %zu rows)\n",
	       batch_rows, sync ? ", fsync per commit" : "", rate,
	       rate * (ROW_BYTES + KEY_BYTES) / 1e6, median(commit_ms, runs), runs, rows_per_run);
	fflush(stdout);
	store_batch_free(batch);
	store_close(store);
}

/* Reopens the state and reads random users' rows, as a start-up would. */
static void bench_reads(const char *path)
{
	char errstr[512];
	struct store_config config = {.path = path};
	double start, elapsed;
	size_t found = 0;
	uint64_t rng = 12345;
	struct store *store = store_open(&config, errstr, sizeof errstr);
	if (store == NULL) {
		fprintf(stderr, "bench_store: %s\n", errstr);
		exit(1);
	}
	start = now_s();
	for (int i = 0; i < READS; i++) {
		unsigned char key[KEY_BYTES];
		void *value;
		size_t value_len;
		int got;
		user_key(key, next_random(&rng) % USERS);
		got = store_get(store, STORE_USER, key, sizeof key, &value, &value_len, errstr,
				sizeof errstr);
		if (got < 0) {
			fprintf(stderr, "bench_store: %s\n", errstr);
			exit(1);
		}
		if (got == 1) {
			found++;
			free(value);
		}
	}
	elapsed = now_s() - start;
	printf("store: point reads after reopen: %8.0f reads/s (%d random users, %.0f%% found)\n",
	       READS / elapsed, READS, 100.0 * (double)found / READS);
	printf("store: state %.0f MB (live SST + memtables)\n",
	       (double)store_state_bytes(store) / 1e6);
	store_close(store);
}

int main(void)
{
	static const size_t batch_sizes[] = {1000, 10000, 100000};
	char base[PATH_MAX], path[PATH_MAX];
	const char *dir = getenv("STREAMREC_BENCH_DIR");
	struct stat st;

	if (dir == NULL)
		dir = stat("build/bench", &st) == 0 && S_ISDIR(st.st_mode) ? "build/bench"
									   : "/var/tmp";
	if (snprintf(base, sizeof base, "%s/bench_store-XXXXXX", dir) >= (int)sizeof base ||
	    mkdtemp(base) == NULL) {
		fprintf(stderr, "bench_store: cannot create a directory in %s: %s\n", dir,
			strerror(errno));
		return 1;
	}
	printf("store: state in %s (%s); %d-byte rows, %d-byte keys over %d users, offsets of "
	       "%d partitions per commit, WAL on\n",
	       base, filesystem_name(base), ROW_BYTES, KEY_BYTES, USERS, PARTITIONS);
	fflush(stdout);

	for (size_t i = 0; i < sizeof batch_sizes / sizeof batch_sizes[0]; i++) {
		if (snprintf(path, sizeof path, "%s/batch-%zu", base, batch_sizes[i]) >=
		    (int)sizeof path)
			return 1;
		bench_batches(path, batch_sizes[i], false, RUNS, ROWS_PER_RUN);
		if (batch_sizes[i] == 10000) /* on the same, grown state */
			bench_batches(path, batch_sizes[i], true, SYNC_RUNS, SYNC_ROWS);
		if (batch_sizes[i] == 100000)
			bench_reads(path);
	}

	nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
