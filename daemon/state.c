/*
 * state: open and close, learning, the write-behind commit and its writer
 * thread. The user cache is usercache.c, the variants on disk variants.c,
 * the export file statefile.c, the key layouts statekeys.h.
 */
#include "state.h"

#include "clock.h"
#include "errstr.h"
#include "grow.h"
#include "nice.h"
#include "radix.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "idmap.h"
#include "sketch.h"
#include "statefile.h"
#include "statekeys.h"
#include "store.h"
#include "usercache.h"
#include "variants.h"

#define ROW_BUFFER (1u << 20)

struct state {
	struct store *store;
	struct model *models[STATE_MAX_VARIANTS];
	size_t variant_count;
	/* the byte that keys each variant's rows on disk (ids are kept by name
	 * in meta "variant/NAME" records, so variants can come and go) */
	unsigned char store_id[STATE_MAX_VARIANTS];
	int variant_of_id[256]; /* the reverse, -1: not loaded */
	char variant_names[STATE_MAX_VARIANTS][STATE_VARIANT_NAME_BYTES]; /* as stored */
	/* values for meta "aux/NAME" keys, written with the next commit */
	struct aux_value {
		char key[64];
		uint8_t *data;
		size_t len;
	} aux[STATE_MAX_AUX];
	size_t aux_count;
	struct idmap *users, *items;
	/* users live in model slots: see usercache.h */
	struct usercache *cache;
	uint32_t next_user; /* indices handed out so far */
	/* ids met since the last commit, to be saved with it */
	uint32_t *new_users, *new_items;
	size_t new_user_count, new_user_capacity, new_item_count, new_item_capacity;
	struct store_batch *batch;
	unsigned char *row; /* ROW_BUFFER bytes of scratch */
	/* build_batch()'s: row keys put in key order (in_key_order()) */
	uint32_t *order, *order_scratch;
	size_t order_capacity, order_scratch_capacity;

	/* Embedding life cycle (state.h), per stable user index: the event
	 * time of its newest event (INT64_MIN: unknown), whether it is live,
	 * whether its last-seen changed since the last commit. */
	int64_t *last_seen;
	uint8_t *live, *seen_changed;
	size_t life_capacity, live_users;
	uint32_t *seen_users; /* seen_changed ones, written with the next commit */
	size_t seen_user_count, seen_user_capacity;
	/* Removed users' stable indices: reusable (their keys are deleted on
	 * disk), deleted by the commit in flight, deleted by the next commit.
	 * An index is handed out again only when no key of its last owner is
	 * left on disk, so no read can bring an old row back into a new user. */
	uint32_t *free_users, *freed_inflight, *freed_pending;
	size_t free_user_count, free_user_capacity, freed_inflight_count,
	    freed_inflight_capacity, freed_pending_count, freed_pending_capacity;
	/* ids of users removed whose "u" key may still be on disk (pending
	 * batch, batch in flight): met again, they start fresh */
	struct idmap *removed, *removed_inflight;
	uint32_t removed_next;
	int64_t newest_event_ms, sweep_now_ms;
	uint64_t admitted_users, expired_users, evicted_users;
	struct sweep_entry {
		int64_t last_seen;
		uint32_t stable;
	} *sweep;
	size_t sweep_capacity;
	/* the admission filter (state_config.admit_after); NULL: off */
	struct sketch *sketch;
	unsigned admit_after;
	bool sketch_changed;
	uint64_t unadmitted_events;
	/* Per user, with last_seen: the item removal (removal_seq) its row's
	 * item references were last checked against (ids "P" + u32). */
	uint64_t *user_purged;
	/* Per user: the number of the last batch that wrote its rows, so that
	 * restoring a user waits for the writer only when its newest rows are
	 * in the batch being written (load_user). batch_number: the batch that
	 * build_batch() fills next; the one in flight is batch_number - 1. */
	uint32_t *user_written_in;
	size_t user_written_capacity;
	uint32_t batch_number;
	/* users read back from the store, and those of them read after the
	 * batch being written (state_user_restores()) */
	uint64_t restores, restores_after_writer;

	/* Embedding life cycle of items (state.h), per item index: the event
	 * time of its newest activity (INT64_MIN: unknown), whether it is live,
	 * whether its last-seen changed since the last commit, and the removal
	 * that last freed the index (0: never; ids "R" + u32, kept for good).
	 * Removals are numbered by removal_seq. Freed indices go through the
	 * same pending / in-flight / free stages as users'. */
	int64_t *item_last_seen;
	uint8_t *item_live, *item_seen_changed;
	uint64_t *item_removed_seq;
	size_t item_life_capacity, live_items;
	uint32_t next_item;
	uint64_t removal_seq;
	uint32_t *seen_items;
	size_t seen_item_count, seen_item_capacity;
	uint32_t *free_items, *freed_items_inflight, *freed_items_pending;
	size_t free_item_count, free_item_capacity, freed_items_inflight_count,
	    freed_items_inflight_capacity, freed_items_pending_count,
	    freed_items_pending_capacity;
	uint32_t *removed_items; /* a sweep's, for model_forget_items() */
	size_t removed_item_count, removed_item_capacity;
	uint64_t admitted_items, expired_items, evicted_items, unadmitted_item_events;
	uint32_t touched_ring[STATE_TOUCHED_KEPT]; /* state_touched_item() */
	uint64_t touched_items;
	struct sketch *item_sketch; /* state_config.item_admit_after; NULL: off */
	unsigned item_admit_after;
	bool item_sketch_changed;
	/* state_config.on_user_row */
	void (*on_user_row)(uint32_t stable, size_t variant, const void *row, size_t len,
			    void *opaque);
	void *on_user_row_opaque;

	/* The writer thread: it owns `inflight` while busy; everything else in
	 * the state belongs to the caller's thread. Guarded by lock. */
	pthread_t writer;
	bool writer_started;
	unsigned nice; /* the writer's nice increment (state_config.nice) */
	void (*log)(const char *line, void *opaque); /* state_config.log */
	void *log_opaque;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct store_batch *inflight;
	bool busy, stopping;
	int failed; /* a write failed: no commit is accepted any more */
	char failure[512];

	/* A commit whose item vector rows are still owed (model.h,
	 * model_owe_item_vector()): `sealed` is its batch, paid into a quota at
	 * a time after each event learned (pay_quota rows a variant) and handed
	 * to the writer once complete; meanwhile `batch` collects what comes
	 * after the commit. Three batches rotate: batch, sealed (or spare),
	 * inflight. The writer is idle while a batch is sealed: the commit that
	 * sealed it waited for the one before. */
	struct store_batch *sealed, *spare;
	struct payer {
		struct state *state;
		size_t variant;
	} payers[STATE_MAX_VARIANTS];
	unsigned char *pay_row; /* ROW_BUFFER bytes: the payer's own scratch */
	size_t pay_quota;
	uint64_t events_since_commit;
	/* the recent commits' batch size, as stored (note_batch_size()) */
	size_t recent_batch;
};

/* ---- commit batches ---------------------------------------------------------------- */

/* The most a batch is prepared with at a start (prepare_batches()) */
#define BATCH_PREPARE_MAX ((size_t)256 << 20)

/*
 * Reads the recent commits' batch size that the last run stored
 * (STATE_BATCH_RECENT_KEY, note_batch_size()) into s->recent_batch, so that
 * every writer carries it on: a one-off tool that commits little (streamrec
 * replay) lowers it by a quarter a commit, as the daemon would, instead of
 * replacing it with its own size. @returns 0, or -1 when it cannot be read
 * (errstr filled).
 */
static int load_batch_size(struct state *s, char *errstr, size_t errstr_size)
{
	void *value = NULL;
	size_t value_len = 0;
	int found =
	    store_get(s->store, STORE_META, STATE_BATCH_RECENT_KEY,
		      sizeof STATE_BATCH_RECENT_KEY - 1, &value, &value_len, errstr, errstr_size);
	if (found < 0)
		return -1;
	if (found == 0)
		return 0;
	/* of another length: written by no version of ours, ignored */
	uint64_t recent = value_len == 8 ? bytes_get_be64(value) : 0;
	free(value);
	s->recent_batch = recent > BATCH_PREPARE_MAX ? BATCH_PREPARE_MAX : (size_t)recent;
	return 0;
}

/*
 * Prepares the three batches with room for the recent commits' batch size
 * (load_batch_size()) and an eighth more, at most BATCH_PREPARE_MAX each,
 * their pages written now. A batch grows by doubling as it fills, and a
 * fresh page costs the loop a fault (dearer on VMs whose freed memory goes
 * back to the host): the first commits after a start, each filling a batch
 * for the first time, held the event loop for 170-270 ms where later ones
 * took 15-20 ms (bench/HISTORY.md, 5 December 2026). The start pays it
 * instead, before the daemon is ready; the batches would reach that size
 * anyway. Out of memory: they grow as they fill, as without a stored size.
 */
static void prepare_batches(struct state *s)
{
	char line[160];
	if (s->recent_batch == 0)
		return;
	size_t room = s->recent_batch + s->recent_batch / 8;
	double started = clock_monotonic_s();
	bool prepared = store_batch_reserve(s->batch, room) == 0 &&
			store_batch_reserve(s->inflight, room) == 0 &&
			store_batch_reserve(s->spare, room) == 0;
	if (s->log != NULL) {
		if (prepared)
			snprintf(line, sizeof line,
				 "commit batches: 3 x %.1f MiB prepared in %.0f ms (the last run's "
				 "recent batches: %.1f MiB)",
				 (double)room / 1048576.0, (clock_monotonic_s() - started) * 1000.0,
				 (double)s->recent_batch / 1048576.0);
		else
			snprintf(line, sizeof line,
				 "commit batches: no memory to prepare 3 x %.1f MiB; they grow as "
				 "they fill",
				 (double)room / 1048576.0);
		s->log(line, s->log_opaque);
	}
}

/*
 * Records in a complete batch the size the recent batches had, for the
 * next start (prepare_batches()): the largest of them, each commit's
 * weighing a quarter less than the one after it, so that a burst (a
 * catch-up after downtime, a drain) stops counting some ten commits after
 * it ended.
 */
static void note_batch_size(struct state *s, struct store_batch *batch)
{
	/* the record's own bytes, a header, key and value, are counted in */
	size_t bytes = store_batch_bytes(batch) + 64;
	size_t decayed = s->recent_batch - s->recent_batch / 4;
	s->recent_batch = bytes > decayed ? bytes : decayed;
	unsigned char value[8];
	bytes_put_be64(value, s->recent_batch);
	store_batch_put(batch, STORE_META, STATE_BATCH_RECENT_KEY,
			sizeof STATE_BATCH_RECENT_KEY - 1, value, sizeof value);
}

/* ---- loading ---------------------------------------------------------------------- */

struct load_context {
	struct state *state;
	char *errstr;
	size_t errstr_size;
	int failed;
};

/*
 * Grows one kind's life-cycle arrays (users' or items', indexed alike) to
 * hold index: last seen (INT64_MIN: never), live, seen-changed and the
 * kind's removal sequence, new entries zeroed. @returns 0 or -1.
 */
static int grow_life(int64_t **last_seen, uint8_t **live, uint8_t **seen_changed,
		     uint64_t **seq, size_t *capacity, uint32_t index)
{
	if ((size_t)index < *capacity)
		return 0;
	size_t cap = *capacity ? *capacity : 1024;
	while (cap <= index)
		cap *= 2;
	int64_t *grown_seen = realloc(*last_seen, cap * sizeof *grown_seen);
	if (grown_seen == NULL)
		return -1;
	*last_seen = grown_seen;
	uint8_t *grown_live = realloc(*live, cap);
	if (grown_live == NULL)
		return -1;
	*live = grown_live;
	uint8_t *grown_changed = realloc(*seen_changed, cap);
	if (grown_changed == NULL)
		return -1;
	*seen_changed = grown_changed;
	uint64_t *grown_seq = realloc(*seq, cap * sizeof *grown_seq);
	if (grown_seq == NULL)
		return -1;
	*seq = grown_seq;
	for (size_t i = *capacity; i < cap; i++) {
		grown_seen[i] = INT64_MIN;
		grown_live[i] = 0;
		grown_changed[i] = 0;
		grown_seq[i] = 0;
	}
	*capacity = cap;
	return 0;
}

/* Grows the per-user life-cycle arrays to hold stable. @returns 0 or -1. */
static int ensure_life(struct state *s, uint32_t stable)
{
	return grow_life(&s->last_seen, &s->live, &s->seen_changed, &s->user_purged,
			 &s->life_capacity, stable);
}

/* Grows the per-item life-cycle arrays to hold item. @returns 0 or -1. */
static int ensure_item_life(struct state *s, uint32_t item)
{
	return grow_life(&s->item_last_seen, &s->item_live, &s->item_seen_changed,
			 &s->item_removed_seq, &s->item_life_capacity, item);
}

/* ids: "I" + u32 -> item id (items: live, and the counter); "J" + u32 ->
 * an item's last-seen event time; "R" + u32 -> the removal that last freed
 * an item index; "U" + u32 -> user id (users: live, and the counter);
 * "T" + u32 -> a user's last-seen event time; "P" + u32 -> the removal a
 * user's stored row was checked against */
static int load_id(const void *key, size_t key_len, const void *value, size_t value_len, void *ctx)
{
	struct load_context *c = ctx;
	struct state *s = c->state;
	const unsigned char *k = key;
	if (key_len != 5 || strchr("IJRUTP", k[0]) == NULL || k[0] == '\0')
		return 0;
	uint32_t index = bytes_get_be32(k + 1);
	bool of_item = k[0] == 'I' || k[0] == 'J' || k[0] == 'R';
	if (of_item ? ensure_item_life(s, index) != 0 : ensure_life(s, index) != 0) {
		set_errstr(c->errstr, c->errstr_size, "out of memory loading %s %u",
			   of_item ? "item" : "user", index);
		c->failed = 1;
		return 1;
	}
	if (k[0] == 'J' || k[0] == 'R' || k[0] == 'P') {
		if (value_len != 8) {
			set_errstr(c->errstr, c->errstr_size,
				   "%s %u: life-cycle record '%c' of %zu bytes, expected 8",
				   of_item ? "item" : "user", index, k[0], value_len);
			c->failed = 1;
			return 1;
		}
		uint64_t v = bytes_get_be64(value);
		if (k[0] == 'J') {
			s->item_last_seen[index] = (int64_t)v;
		} else if (k[0] == 'P') {
			s->user_purged[index] = v;
		} else {
			s->item_removed_seq[index] = v;
			if (v > s->removal_seq)
				s->removal_seq = v;
			if (index + 1 > s->next_item)
				s->next_item = index + 1;
		}
		return 0;
	}
	if (k[0] == 'T') {
		if (value_len != 8) {
			set_errstr(c->errstr, c->errstr_size,
				   "user %u: last-seen record of %zu bytes, expected 8", index,
				   value_len);
			c->failed = 1;
			return 1;
		}
		s->last_seen[index] = (int64_t)bytes_get_be64(value);
		return 0;
	}
	if (k[0] == 'U') {
		if (index + 1 > s->next_user)
			s->next_user = index + 1;
		if (!s->live[index]) {
			s->live[index] = 1;
			s->live_users++;
		}
		return 0;
	}
	if (idmap_put(c->state->items, value, value_len, index) != 0) {
		set_errstr(c->errstr, c->errstr_size, "item id %u: cannot restore", index);
		c->failed = 1;
		return 1;
	}
	if (index + 1 > s->next_item)
		s->next_item = index + 1;
	if (!s->item_live[index]) {
		s->item_live[index] = 1;
		s->live_items++;
	}
	return 0;
}

/* An item's row of either family (model.h, "Item rows"): its vectors, then
 * (the family read after) its counts. */
static int load_item_part(const void *key, size_t key_len, const void *value, size_t value_len,
			  struct load_context *c, bool counts)
{
	const unsigned char *k = key;
	bool y_row = !counts && key_len == STATE_Y_ROW_KEY_BYTES &&
		     k[STATE_ROW_KEY_BYTES] == STATE_Y_ROW_SUFFIX;
	if (key_len != STATE_ROW_KEY_BYTES && !y_row) {
		set_errstr(c->errstr, c->errstr_size, "item %s row with a key of %zu bytes",
			   counts ? "counts" : "vector", key_len);
		c->failed = 1;
		return 1;
	}
	int v = c->state->variant_of_id[k[4]];
	if (v < 0)
		return 0; /* a variant kept on disk that the configuration does not run */
	uint32_t item = bytes_get_be32(k);
	if ((size_t)item >= c->state->item_life_capacity || !c->state->item_live[item])
		return 0; /* not live: its id went with its removal (never written so) */
	struct model *m = c->state->models[v];
	if ((counts ? model_import_item_counts(m, item, value, value_len, c->errstr,
					       c->errstr_size)
		    : model_import_item(m, item, value, value_len, c->errstr, c->errstr_size)) !=
	    0) {
		c->failed = 1;
		return 1;
	}
	return 0;
}

static int load_item_row(const void *key, size_t key_len, const void *value, size_t value_len,
			 void *ctx)
{
	return load_item_part(key, key_len, value, value_len, ctx, false);
}

static int load_item_counts_row(const void *key, size_t key_len, const void *value,
				size_t value_len, void *ctx)
{
	return load_item_part(key, key_len, value, value_len, ctx, true);
}

static void *writer_main(void *arg)
{
	struct state *s = arg;
	pthread_setname_np(pthread_self(), "state-writer");
	char why[512];
	if (nice_thread(s->nice, why, sizeof why) != 0 && s->log != NULL) {
		char line[640];
		snprintf(line, sizeof line, "state writer: cannot lower its priority (state.nice %u): %s",
			 s->nice, why);
		s->log(line, s->log_opaque);
	}
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->busy && !s->stopping)
			pthread_cond_wait(&s->wake, &s->lock);
		if (!s->busy)
			break;
		pthread_mutex_unlock(&s->lock);
		int rc = store_commit(s->store, s->inflight, why, sizeof why);
		pthread_mutex_lock(&s->lock);
		if (rc != 0) {
			s->failed = 1;
			snprintf(s->failure, sizeof s->failure, "%s", why);
		}
		s->busy = false;
		pthread_cond_broadcast(&s->wake);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

bool state_writing(struct state *state)
{
	if (!state->writer_started)
		return false;
	if (state->sealed != NULL)
		return true; /* still paid between events (state_pay()) */
	pthread_mutex_lock(&state->lock);
	bool busy = state->busy;
	pthread_mutex_unlock(&state->lock);
	return busy;
}

/*
 * Puts an item's vector rows of `parts` (MODEL_ITEM_VECTOR: its q row;
 * MODEL_ITEM_Y: its y row) into batch, `row` their scratch (ROW_BUFFER
 * bytes). Fixed sizes, well within ROW_BUFFER; a batch out of memory
 * fails, and so does its write and every commit after it.
 */
static void put_item_vector_rows(struct store_batch *batch, const struct model *model,
				 uint32_t item, unsigned char variant_id, unsigned parts,
				 unsigned char *row)
{
	unsigned char key[STATE_Y_ROW_KEY_BYTES];
	if (parts & MODEL_ITEM_VECTOR) {
		state_key_row(key, item, variant_id);
		size_t len = model_export_item_vector(model, item, row, ROW_BUFFER);
		store_batch_put(batch, STORE_ITEM, key, STATE_ROW_KEY_BYTES, row, len);
	}
	if (parts & MODEL_ITEM_Y) {
		state_key_y_row(key, item, variant_id);
		size_t len = model_export_item_y(model, item, row, ROW_BUFFER);
		store_batch_put(batch, STORE_ITEM, key, STATE_Y_ROW_KEY_BYTES, row, len);
	}
}

/* The payer (model_set_payer()): one owed item's vector rows into the sealed batch. */
static void pay_item_vector(void *ctx, const struct model *model, uint32_t item, unsigned parts)
{
	struct payer *p = ctx;
	struct state *s = p->state;
	if (s->sealed == NULL)
		return; /* owed by a commit that failed collecting its rows (state_commit_async()) */
	put_item_vector_rows(s->sealed, model, item, s->store_id[p->variant], parts, s->pay_row);
}

/* Hands the batch in `sealed`, complete, to the writer (idle: the commit
 * that sealed it waited for the write before). */
static void hand_over_sealed(struct state *s)
{
	note_batch_size(s, s->sealed);
	pthread_mutex_lock(&s->lock);
	while (s->busy)
		pthread_cond_wait(&s->wake, &s->lock);
	struct store_batch *written = s->inflight;
	s->inflight = s->sealed;
	s->sealed = NULL;
	s->spare = written;
	store_batch_clear(s->spare);
	s->busy = true;
	pthread_cond_broadcast(&s->wake);
	pthread_mutex_unlock(&s->lock);
}

/* Pays up to `quota` owed rows of each variant; the sealed batch goes to
 * the writer once nothing is owed. */
static void pay_sealed(struct state *s, size_t quota)
{
	size_t left = 0;
	for (size_t v = 0; v < s->variant_count; v++)
		left += model_pay_owed(s->models[v], quota);
	if (left == 0)
		hand_over_sealed(s);
}

/* The item vector rows the variants owe, sealed batch or not. */
static size_t owed_rows(const struct state *s)
{
	size_t owed = 0;
	for (size_t v = 0; v < s->variant_count; v++)
		owed += model_owed_count(s->models[v]);
	return owed;
}

size_t state_owed(const struct state *state)
{
	return state->sealed != NULL ? owed_rows(state) : 0;
}

void state_pay(struct state *state)
{
	if (state->sealed != NULL)
		pay_sealed(state, SIZE_MAX);
}

int state_flush(struct state *state, char *errstr, size_t errstr_size)
{
	int failed;
	if (!state->writer_started)
		return 0;
	if (state->sealed != NULL)
		pay_sealed(state, SIZE_MAX);
	pthread_mutex_lock(&state->lock);
	while (state->busy)
		pthread_cond_wait(&state->wake, &state->lock);
	failed = state->failed;
	if (failed)
		set_errstr(errstr, errstr_size, "%s", state->failure);
	pthread_mutex_unlock(&state->lock);
	return failed ? -1 : 0;
}

struct state *state_open(const struct state_config *config, char *errstr, size_t errstr_size)
{
	struct state *s;
	struct store_config sc = {.path = config->dir,
				  .block_cache_bytes = config->block_cache_bytes,
				  .sync_commits = config->sync_commits,
				  .low_priority_background = config->nice > 0,
				  .read_only = config->read_only,
				  .must_exist = config->must_exist,
				  .log_dir = config->log_dir && config->log_dir[0] ? config->log_dir
										   : NULL};
	char why[512];
	void *value = NULL;
	size_t value_len;

	if (config->variant_count == 0 || config->variant_count > STATE_MAX_VARIANTS) {
		set_errstr(errstr, errstr_size, "variants: between 1 and %d, got %zu",
			   STATE_MAX_VARIANTS, config->variant_count);
		return NULL;
	}
	s = calloc(1, sizeof *s);
	if (s == NULL)
		goto out_nomem;
	s->batch_number = 1; /* the one in flight, 0 at first, is none */
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	s->variant_count = config->variant_count;
	s->nice = config->nice;
	s->log = config->log;
	s->log_opaque = config->log_opaque;
	s->on_user_row = config->on_user_row;
	s->on_user_row_opaque = config->on_user_row_opaque;
	s->users = idmap_new();
	s->items = idmap_new();
	s->batch = store_batch_new();
	s->inflight = store_batch_new();
	s->spare = store_batch_new();
	s->row = malloc(ROW_BUFFER);
	s->pay_row = malloc(ROW_BUFFER);
	s->removed = idmap_new();
	s->removed_inflight = idmap_new();
	s->newest_event_ms = INT64_MIN;
	s->sweep_now_ms = INT64_MIN;
	if (s->users == NULL || s->items == NULL || s->batch == NULL || s->inflight == NULL ||
	    s->spare == NULL || s->row == NULL || s->pay_row == NULL || s->removed == NULL ||
	    s->removed_inflight == NULL)
		goto out_nomem_free;

	for (size_t v = 0; v < s->variant_count; v++) {
		s->models[v] = model_new(&config->variants[v], why, sizeof why);
		if (s->models[v] == NULL) {
			set_errstr(errstr, errstr_size, "variant %zu: %s", v, why);
			goto out_free;
		}
		s->payers[v] = (struct payer){s, v};
		model_set_payer(s->models[v], pay_item_vector, &s->payers[v]);
	}
	s->store = store_open(&sc, errstr, errstr_size);
	if (s->store == NULL)
		goto out_free;

	if (variants_reconcile(s->store, s->batch, config, s->store_id, s->variant_of_id,
			       s->variant_names, errstr, errstr_size) != 0)
		goto out_free;

	struct load_context lc = {s, errstr, errstr_size, 0};
	if (store_foreach(s->store, STORE_IDS, load_id, &lc, why, sizeof why) != 0 ||
	    store_foreach(s->store, STORE_ITEM, load_item_row, &lc, why, sizeof why) != 0 ||
	    store_foreach(s->store, STORE_COVIS, load_item_counts_row, &lc, why, sizeof why) !=
		0) {
		if (!lc.failed)
			set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
		goto out_free;
	}
	if (lc.failed)
		goto out_free;
	/* the gaps below next_user are free indices (lowest handed out first) */
	for (uint32_t u = s->next_user; u-- > 0;) {
		if ((size_t)u < s->life_capacity && s->live[u]) {
			if (s->last_seen[u] > s->newest_event_ms)
				s->newest_event_ms = s->last_seen[u];
			continue;
		}
		if (grow_array(&s->free_users, &s->free_user_capacity, s->free_user_count + 1,
			       sizeof *s->free_users, 256) != 0)
			goto out_nomem_free;
		s->free_users[s->free_user_count++] = u;
	}
	/* likewise the free item indices */
	for (uint32_t i = s->next_item; i-- > 0;) {
		if ((size_t)i < s->item_life_capacity && s->item_live[i]) {
			if (s->item_last_seen[i] > s->newest_event_ms)
				s->newest_event_ms = s->item_last_seen[i];
			continue;
		}
		if (grow_array(&s->free_items, &s->free_item_capacity, s->free_item_count + 1,
			       sizeof *s->free_items, 256) != 0)
			goto out_nomem_free;
		s->free_items[s->free_item_count++] = i;
	}
	for (size_t v = 0; v < s->variant_count; v++) {
		unsigned char key[9] = {'g', 'l', 'o', 'b', 'a', 'l', 's', '/', s->store_id[v]};
		int found = store_get(s->store, STORE_META, key, sizeof key, &value, &value_len,
				      why, sizeof why);
		if (found < 0) {
			set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
			goto out_free;
		}
		if (found == 1) {
			int rc =
			    model_import_globals(s->models[v], value, value_len, why, sizeof why);
			free(value);
			if (rc != 0) {
				set_errstr(errstr, errstr_size, "%s: variant %zu: %s", config->dir,
					   v, why);
				goto out_free;
			}
		}
		unsigned char content_key[STATE_CONTENT_KEY_BYTES];
		state_key_content(content_key, s->store_id[v]);
		found = store_get(s->store, STORE_META, content_key, sizeof content_key, &value,
				  &value_len, why, sizeof why);
		if (found < 0) {
			set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
			goto out_free;
		}
		if (found == 1) {
			int rc =
			    model_import_content(s->models[v], value, value_len, why, sizeof why);
			free(value);
			if (rc != 0) {
				set_errstr(errstr, errstr_size, "%s: variant %zu: %s", config->dir,
					   v, why);
				goto out_free;
			}
		}
		model_clear_dirty(s->models[v]);
	}
	if (config->admit_after > 1) {
		s->admit_after = config->admit_after;
		s->sketch = sketch_new();
		if (s->sketch == NULL)
			goto out_nomem_free;
		int found = store_get(s->store, STORE_META, STATE_SKETCH_KEY,
				      sizeof STATE_SKETCH_KEY - 1, &value, &value_len, why, sizeof why);
		if (found < 0) {
			set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
			goto out_free;
		}
		if (found == 1) {
			int rc = sketch_import(s->sketch, value, value_len);
			free(value);
			if (rc != 0) {
				set_errstr(errstr, errstr_size,
					   "%s: the admission sketch has %zu bytes, expected %zu",
					   config->dir, value_len, sketch_export_bytes());
				goto out_free;
			}
		}
	}
	if (config->item_admit_after > 1) {
		s->item_admit_after = config->item_admit_after;
		s->item_sketch = sketch_new();
		if (s->item_sketch == NULL)
			goto out_nomem_free;
		int found = store_get(s->store, STORE_META, STATE_ITEM_SKETCH_KEY,
				      sizeof STATE_ITEM_SKETCH_KEY - 1, &value, &value_len, why,
				      sizeof why);
		if (found < 0) {
			set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
			goto out_free;
		}
		if (found == 1) {
			int rc = sketch_import(s->item_sketch, value, value_len);
			free(value);
			if (rc != 0) {
				set_errstr(errstr, errstr_size,
					   "%s: the item admission sketch has %zu bytes, expected %zu",
					   config->dir, value_len, sketch_export_bytes());
				goto out_free;
			}
		}
	}
	if (!config->read_only) {
		if (load_batch_size(s, why, sizeof why) != 0) {
			set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
			goto out_free;
		}
		if (config->prepare_batches)
			prepare_batches(s);
	}
	size_t max_slots = config->user_cache_users;
	if (config->user_cache_bytes > 0) {
		size_t by_bytes = usercache_slots_for_bytes(s->models, s->variant_count,
							    config->user_cache_bytes);
		if (max_slots == 0 || by_bytes < max_slots)
			max_slots = by_bytes;
	}
	s->cache = usercache_new(s->models, s->variant_count, max_slots);
	if (s->cache == NULL)
		goto out_nomem_free;
	if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
		set_errstr(errstr, errstr_size, "cannot start the state writer thread");
		goto out_free;
	}
	s->writer_started = true;
	return s;

out_nomem_free:
	state_close(s);
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory opening the state");
	return NULL;
out_free:
	state_close(s);
	return NULL;
}

void state_close(struct state *state)
{
	if (state == NULL)
		return;
	if (state->writer_started) {
		pthread_mutex_lock(&state->lock);
		state->stopping = true;
		pthread_cond_broadcast(&state->wake);
		pthread_mutex_unlock(&state->lock);
		pthread_join(state->writer, NULL); /* finishes a write in flight first */
	}
	pthread_mutex_destroy(&state->lock);
	pthread_cond_destroy(&state->wake);
	for (size_t a = 0; a < state->aux_count; a++)
		free(state->aux[a].data);
	store_batch_free(state->inflight);
	store_batch_free(state->sealed); /* a commit never finished: as after a crash */
	store_batch_free(state->spare);
	free(state->pay_row);
	store_close(state->store);
	for (size_t v = 0; v < state->variant_count; v++)
		model_free(state->models[v]);
	idmap_free(state->users);
	idmap_free(state->items);
	store_batch_free(state->batch);
	usercache_free(state->cache);
	free(state->new_users);
	free(state->new_items);
	free(state->row);
	free(state->last_seen);
	free(state->live);
	free(state->seen_changed);
	free(state->seen_users);
	free(state->order);
	free(state->order_scratch);
	free(state->free_users);
	free(state->freed_inflight);
	free(state->freed_pending);
	free(state->sweep);
	idmap_free(state->removed);
	idmap_free(state->removed_inflight);
	sketch_free(state->sketch);
	free(state->user_purged);
	free(state->user_written_in);
	free(state->item_last_seen);
	free(state->item_live);
	free(state->item_seen_changed);
	free(state->item_removed_seq);
	free(state->seen_items);
	free(state->free_items);
	free(state->freed_items_inflight);
	free(state->freed_items_pending);
	free(state->removed_items);
	sketch_free(state->item_sketch);
	free(state);
}

struct model *state_model(struct state *state, size_t variant)
{
	return variant < state->variant_count ? state->models[variant] : NULL;
}

size_t state_variant_count(const struct state *state)
{
	return state->variant_count;
}

static int remember(uint32_t **list, size_t *count, size_t *capacity, uint32_t index)
{
	if (*count == *capacity) {
		size_t cap = *capacity ? *capacity * 2 : 256;
		uint32_t *grown = realloc(*list, cap * sizeof *grown);
		if (grown == NULL)
			return -1;
		*list = grown;
		*capacity = cap;
	}
	(*list)[(*count)++] = index;
	return 0;
}

struct purge_context {
	const struct state *state;
	uint64_t checked; /* the removal the row was checked against */
};

/* Whether an item index was freed after the user's row was checked: then
 * the row's reference is to the item that held it before (or to a later
 * one the row cannot have met while it was not in memory). */
static bool item_freed_since(uint32_t item, void *ctx)
{
	const struct purge_context *c = ctx;
	return (size_t)item < c->state->item_life_capacity &&
	       c->state->item_removed_seq[item] > c->checked;
}

/*
 * Item life cycle, the lazy half of the purge (the other is the sweep's
 * model_forget_items(), over the users in memory): a row restored from disk
 * or from the rows set aside may name items removed since it was last in
 * memory; those references go before the user is used.
 */
static void purge_user_items(struct state *s, uint32_t stable, uint32_t slot)
{
	if (s->removal_seq == 0 || (size_t)stable >= s->life_capacity ||
	    s->user_purged[stable] >= s->removal_seq)
		return;
	struct purge_context c = {s, s->user_purged[stable]};
	for (size_t v = 0; v < s->variant_count; v++)
		model_purge_user_items(s->models[v], slot, item_freed_since, &c);
	s->user_purged[stable] = s->removal_seq;
}

/* Restores a known user's rows, saved under index, into slot in every
 * variant: rows set aside by an eviction since the last commit first, else
 * the stored ones. */
static int load_user(struct state *s, uint32_t index, uint32_t slot, char *errstr,
		     size_t errstr_size)
{
	bool pending = usercache_has_pending(s->cache, index);
	/* the user's newest row may be in the batch being written: read after
	 * it. Only then: a restore waiting for a whole commit's write stalled
	 * the loop for 0.2-0.4 s after each commit (users met again after a
	 * restart are restored one by one). batch_number 0: not tracked. */
	bool in_flight = s->batch_number == 0 ||
			 ((size_t)index < s->user_written_capacity &&
			  s->user_written_in[index] == s->batch_number - 1);
	if (!pending) {
		s->restores++;
		s->restores_after_writer += in_flight;
	}
	if (!pending && in_flight && state_flush(s, errstr, errstr_size) != 0)
		return -1;
	for (size_t v = 0; v < s->variant_count; v++) {
		unsigned char key[5];
		const void *row;
		void *value = NULL;
		size_t len;
		char why[256] = "";
		int found;
		if (pending) {
			found = usercache_pending_row(s->cache, index, v, &row, &len);
		} else {
			state_key_row(key, index, s->store_id[v]);
			found = store_get(s->store, STORE_USER, key, sizeof key, &value, &len, why,
					  sizeof why);
			row = value;
		}
		if (found < 0) {
			set_errstr(errstr, errstr_size, "user %u: %s", index, why);
			return -1;
		}
		if (found == 0)
			continue; /* known id, never learned in this variant */
		int rc = model_import_user(s->models[v], slot, row, len, errstr, errstr_size);
		free(value);
		if (rc != 0)
			return -1;
	}
	purge_user_items(s, index, slot);
	return 0;
}

/* Gives stable user index a slot, restoring its rows when `saved`. */
static int place_user(struct state *s, uint32_t index, bool saved, uint32_t *slot, char *errstr,
		      size_t errstr_size)
{
	bool placed;
	if (usercache_place(s->cache, index, slot, &placed, errstr, errstr_size) != 0)
		return -1;
	if (placed && saved && load_user(s, index, *slot, errstr, errstr_size) != 0) {
		usercache_drop(s->cache, index);
		return -1;
	}
	return 0;
}

int state_user(struct state *state, const char *id, uint32_t *index, uint64_t *hash, char *errstr,
	       size_t errstr_size)
{
	struct state *s = state;
	size_t len = strlen(id);
	uint32_t found = idmap_find(s->users, id, len);
	*hash = XXH3_64bits(id, len);
	if (found != IDMAP_NONE) {
		/* in memory, or saved or set aside when evicted */
		bool in_memory = usercache_slot_of(s->cache, found) != USERCACHE_NONE;
		return place_user(s, found, !in_memory, index, errstr, errstr_size);
	}
	/* met again after a restart? */
	unsigned char key[1 + STATE_ID_MAX];
	void *value;
	size_t value_len;
	char why[256];
	if (len > STATE_ID_MAX) {
		set_errstr(errstr, errstr_size, "user id of %zu bytes", len);
		return -1;
	}
	/* removed since the last durable commit: its stored entry is stale */
	if (idmap_find(s->removed, id, len) != IDMAP_NONE ||
	    idmap_find(s->removed_inflight, id, len) != IDMAP_NONE)
		goto out_new;
	key[0] = 'u';
	memcpy(key + 1, id, len);
	int rc = store_get(s->store, STORE_IDS, key, len + 1, &value, &value_len, why, sizeof why);
	if (rc < 0) {
		set_errstr(errstr, errstr_size, "user %s: %s", id, why);
		return -1;
	}
	if (rc == 1) {
		found = value_len == 4 ? bytes_get_be32(value) : IDMAP_NONE;
		free(value);
		if (found == IDMAP_NONE) {
			set_errstr(errstr, errstr_size, "user %s: corrupt id entry", id);
			return -1;
		}
		if (idmap_put(s->users, id, len, found) != 0)
			goto out_nomem;
		return place_user(s, found, true, index, errstr, errstr_size);
	}
out_new:
	found = s->free_user_count > 0 ? s->free_users[s->free_user_count - 1] : s->next_user;
	if (ensure_life(s, found) != 0 || idmap_put(s->users, id, len, found) != 0)
		goto out_nomem;
	if (remember(&s->new_users, &s->new_user_count, &s->new_user_capacity, found) != 0) {
		idmap_remove(s->users, found);
		goto out_nomem;
	}
	if (s->free_user_count > 0)
		s->free_user_count--;
	else
		s->next_user++;
	s->live[found] = 1;
	s->last_seen[found] = INT64_MIN;
	s->user_purged[found] = s->removal_seq; /* a new row names no item yet */
	s->live_users++;
	s->admitted_users++;
	return place_user(s, found, false, index, errstr, errstr_size);
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory mapping user %s", id);
	return -1;
}

int state_item(struct state *state, const char *id, uint32_t *index, uint64_t *hash, char *errstr,
	       size_t errstr_size)
{
	struct state *s = state;
	size_t len = strlen(id);
	uint32_t found = idmap_find(s->items, id, len);
	*hash = XXH3_64bits(id, len);
	if (found == IDMAP_NONE && len > STATE_ID_MAX) {
		/* its key would not fit the ids family's (put_id()) */
		set_errstr(errstr, errstr_size, "item id of %zu bytes (at most %d)", len,
			   STATE_ID_MAX);
		return -1;
	}
	if (found == IDMAP_NONE) {
		/* a freed index first: nothing of its last item is left (state.h) */
		found = s->free_item_count > 0 ? s->free_items[s->free_item_count - 1]
					       : s->next_item;
		if (ensure_item_life(s, found) != 0 || idmap_put(s->items, id, len, found) != 0)
			goto out_nomem;
		if (remember(&s->new_items, &s->new_item_count, &s->new_item_capacity, found) !=
		    0) {
			idmap_remove(s->items, found);
			goto out_nomem;
		}
		if (s->free_item_count > 0) {
			s->free_item_count--;
			s->touched_ring[s->touched_items++ % STATE_TOUCHED_KEPT] = found;
		} else {
			s->next_item++;
		}
		s->item_live[found] = 1;
		s->item_last_seen[found] = INT64_MIN;
		s->live_items++;
		s->admitted_items++;
	}
	*index = found;
	return 0;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory mapping item %s", id);
	return -1;
}

/* A live item's newest activity moves to ts_ms; written with the next commit. */
static int note_item_seen(struct state *s, uint32_t item, int64_t ts_ms)
{
	if ((size_t)item >= s->item_life_capacity || !s->item_live[item])
		return 0;
	if (ts_ms > s->newest_event_ms)
		s->newest_event_ms = ts_ms;
	if (s->item_last_seen[item] != INT64_MIN && ts_ms <= s->item_last_seen[item])
		return 0;
	s->item_last_seen[item] = ts_ms;
	if (s->item_seen_changed[item])
		return 0;
	if (remember(&s->seen_items, &s->seen_item_count, &s->seen_item_capacity, item) != 0)
		return -1;
	s->item_seen_changed[item] = 1;
	return 0;
}

int state_item_seen(struct state *state, uint32_t item, int64_t ts_ms, char *errstr,
		    size_t errstr_size)
{
	if (note_item_seen(state, item, ts_ms) != 0) {
		set_errstr(errstr, errstr_size, "out of memory noting item %u's activity", item);
		return -1;
	}
	return 0;
}

bool state_item_too_old(const struct state *state, int64_t ts_ms, uint64_t item_ttl_ms)
{
	int64_t now = state->newest_event_ms;
	if (item_ttl_ms == 0 || now == INT64_MIN || ts_ms == INT64_MIN)
		return false;
	return ts_ms < now && (uint64_t)now - (uint64_t)ts_ms > item_ttl_ms;
}

uint64_t state_items_touched(const struct state *state)
{
	return state->touched_items;
}

uint32_t state_touched_item(const struct state *state, uint64_t n)
{
	return state->touched_ring[n % STATE_TOUCHED_KEPT];
}

size_t state_item_count(const struct state *state)
{
	return state->live_items;
}

bool state_item_live(const struct state *state, uint32_t item)
{
	return (size_t)item < state->item_life_capacity && state->item_live[item];
}

/*
 * Item admission (state_config.item_admit_after): whether item_id has an
 * index, or reaches its admit_after-th sighting now (counted in the item
 * sketch). A not-admitted item's sighting is remembered by the sketch (kept
 * with each commit), so nothing of it is lost that admission needs.
 */
static bool item_admitted(struct state *s, const char *item_id)
{
	size_t len = strlen(item_id);
	if (s->item_sketch == NULL || idmap_find(s->items, item_id, len) != IDMAP_NONE)
		return true;
	s->item_sketch_changed = true;
	return sketch_add(s->item_sketch, XXH3_64bits(item_id, len)) >= s->item_admit_after;
}

const char *state_user_id(const struct state *state, uint32_t index)
{
	uint32_t stable = usercache_user_of(state->cache, index);
	return stable != USERCACHE_NONE ? idmap_id(state->users, stable) : NULL;
}

uint32_t state_user_stable(const struct state *state, uint32_t slot)
{
	return usercache_user_of(state->cache, slot);
}

int state_user_by_stable(struct state *state, uint32_t stable, uint32_t *slot, char *errstr,
			 size_t errstr_size)
{
	if (idmap_id(state->users, stable) == NULL) {
		set_errstr(errstr, errstr_size, "no user with index %u", stable);
		return -1;
	}
	bool in_memory = usercache_slot_of(state->cache, stable) != USERCACHE_NONE;
	return place_user(state, stable, !in_memory, slot, errstr, errstr_size);
}

int state_user_pin(struct state *state, uint32_t stable, uint32_t *slot, char *errstr,
		   size_t errstr_size)
{
	if (state_user_by_stable(state, stable, slot, errstr, errstr_size) != 0)
		return -1;
	usercache_pin(state->cache, *slot);
	return 0;
}

void state_user_unpin_all(struct state *state)
{
	usercache_unpin_all(state->cache);
}

size_t state_user_pin_capacity(const struct state *state)
{
	return usercache_pin_capacity(state->cache);
}

const char *state_user_name(const struct state *state, uint32_t stable)
{
	return idmap_id(state->users, stable);
}

const char *state_item_id(const struct state *state, uint32_t index)
{
	return idmap_id(state->items, index);
}

uint32_t state_find_user(const struct state *state, const char *id)
{
	uint32_t found = idmap_find(state->users, id, strlen(id));
	return found == IDMAP_NONE ? UINT32_MAX : found;
}

uint32_t state_find_item(const struct state *state, const char *id)
{
	return idmap_find(state->items, id, strlen(id));
}

/* Whether a user id has a row (admitted, not removed): 1, 0, or -1 with
 * errstr filled (a read error). */
static int user_known(struct state *s, const char *id, char *errstr, size_t errstr_size)
{
	size_t len = strlen(id);
	unsigned char key[1 + STATE_ID_MAX];
	void *value = NULL;
	size_t value_len;
	char why[256];
	if (idmap_find(s->users, id, len) != IDMAP_NONE)
		return 1;
	if (len > STATE_ID_MAX || idmap_find(s->removed, id, len) != IDMAP_NONE ||
	    idmap_find(s->removed_inflight, id, len) != IDMAP_NONE)
		return 0; /* too long: state_user() reports it */
	key[0] = 'u';
	memcpy(key + 1, id, len);
	int found = store_get(s->store, STORE_IDS, key, len + 1, &value, &value_len, why, sizeof why);
	if (found < 0) {
		set_errstr(errstr, errstr_size, "user %s: %s", id, why);
		return -1;
	}
	free(value);
	return found;
}

/*
 * One event of user id against state_config.admit_after: a known user, or
 * one this sighting admits, is admitted; another sighting is counted
 * (unadmitted_events) and makes no user. @returns 1 admitted, 0 not, -1
 * with errstr filled.
 */
static int user_admitted(struct state *s, const char *id, char *errstr, size_t errstr_size)
{
	if (s->sketch == NULL)
		return 1;
	int known = user_known(s, id, errstr, errstr_size);
	if (known != 0)
		return known;
	s->sketch_changed = true;
	if (sketch_add(s->sketch, XXH3_64bits(id, strlen(id))) < s->admit_after) {
		s->unadmitted_events++;
		return 0;
	}
	return 1;
}

/* A live user's newest event time moves to ts_ms; written with the next commit. */
static int note_seen(struct state *s, uint32_t stable, int64_t ts_ms)
{
	if ((size_t)stable >= s->life_capacity || !s->live[stable])
		return 0;
	if (ts_ms > s->newest_event_ms)
		s->newest_event_ms = ts_ms;
	if (s->last_seen[stable] != INT64_MIN && ts_ms <= s->last_seen[stable])
		return 0;
	s->last_seen[stable] = ts_ms;
	if (s->seen_changed[stable])
		return 0;
	if (remember(&s->seen_users, &s->seen_user_count, &s->seen_user_capacity, stable) != 0)
		return -1;
	s->seen_changed[stable] = 1;
	return 0;
}

int state_learn(struct state *state, const char *user_id, const char *item_id,
		enum event_type type, int64_t ts_ms, uint32_t *user_stable, char *errstr,
		size_t errstr_size)
{
	return state_learn_for(state, user_id, item_id, type, ts_ms, UINT32_MAX, user_stable,
			       errstr, errstr_size);
}

int state_learn_for(struct state *state, const char *user_id, const char *item_id,
		    enum event_type type, int64_t ts_ms, uint32_t variants, uint32_t *user_stable,
		    char *errstr, size_t errstr_size)
{
	struct model_event event = {.type = type, .ts_ms = ts_ms};
	if (!item_admitted(state, item_id)) {
		/* counted in the sketch; no row, not listable, nothing learned */
		state->unadmitted_item_events++;
		if (user_stable != NULL)
			*user_stable = UINT32_MAX;
		return 0;
	}
	int admitted = user_admitted(state, user_id, errstr, errstr_size);
	if (admitted < 0)
		return -1;
	if (!admitted) {
		if (state_item(state, item_id, &event.item, &event.item_hash, errstr,
			       errstr_size) != 0)
			return -1;
		for (size_t v = 0; v < state->variant_count; v++)
			if ((variants >> v & 1) &&
			    model_count_item(state->models[v], event.item, event.item_hash, type,
					     ts_ms, errstr, errstr_size) != 0)
				return -1;
		/* an event of the item all the same: its last-seen time */
		if (note_item_seen(state, event.item, ts_ms) != 0) {
			set_errstr(errstr, errstr_size, "out of memory noting item %s's activity",
				   item_id);
			return -1;
		}
		state->touched_ring[state->touched_items++ % STATE_TOUCHED_KEPT] = event.item;
		if (user_stable != NULL)
			*user_stable = UINT32_MAX;
		return 0;
	}
	if (state_user(state, user_id, &event.user, &event.user_hash, errstr, errstr_size) != 0 ||
	    state_item(state, item_id, &event.item, &event.item_hash, errstr, errstr_size) != 0)
		return -1;
	for (size_t v = 0; v < state->variant_count; v++)
		if ((variants >> v & 1) && model_learn(state->models[v], &event, errstr, errstr_size) != 0)
			return -1;
	state->touched_ring[state->touched_items++ % STATE_TOUCHED_KEPT] = event.item;
	state->events_since_commit++;
	if (state->sealed != NULL)
		pay_sealed(state, state->pay_quota);
	uint32_t stable = state_user_stable(state, event.user);
	if (note_item_seen(state, event.item, ts_ms) != 0) {
		set_errstr(errstr, errstr_size, "out of memory noting item %s's activity", item_id);
		return -1;
	}
	if (note_seen(state, stable, ts_ms) != 0) {
		set_errstr(errstr, errstr_size, "out of memory noting user %s's activity", user_id);
		return -1;
	}
	if (user_stable != NULL)
		*user_stable = stable;
	return 0;
}

int state_search_for(struct state *state, const char *user_id, const float *query, int64_t ts_ms,
		     uint32_t variants, uint32_t *user_stable, uint32_t *applied, char *errstr,
		     size_t errstr_size)
{
	uint32_t user;
	uint64_t hash;
	*applied = 0;
	/* a search is one of the user's events: a sighting towards its
	 * admission, and no user before it (state_learn_for()) */
	int admitted = user_admitted(state, user_id, errstr, errstr_size);
	if (admitted <= 0) {
		if (user_stable != NULL)
			*user_stable = UINT32_MAX;
		return admitted;
	}
	if (state_user(state, user_id, &user, &hash, errstr, errstr_size) != 0)
		return -1;
	if (note_seen(state, state_user_stable(state, user), ts_ms) != 0) {
		set_errstr(errstr, errstr_size, "out of memory noting user %s's activity", user_id);
		return -1;
	}
	for (size_t v = 0; v < state->variant_count; v++) {
		if (!(variants >> v & 1))
			continue;
		long rc = model_search(state->models[v], user, hash, query, errstr, errstr_size);
		if (rc < 0)
			return -1;
		if (rc == 1)
			*applied |= 1u << v;
	}
	if (user_stable != NULL)
		*user_stable = state_user_stable(state, user);
	return 0;
}

int state_mark_offset(struct state *state, const char *topic, int32_t partition, int64_t offset)
{
	store_batch_set_offset(state->batch, topic, partition, offset);
	return 0;
}

/* Puts the two entries of a new id: name -> index and index -> name. */
static void put_id(struct store_batch *batch, char kind, const char *id, uint32_t index)
{
	unsigned char key[1 + STATE_ID_MAX], reverse[5], value[4];
	size_t len = strlen(id);
	key[0] = (unsigned char)kind;
	memcpy(key + 1, id, len);
	bytes_put_be32(value, index);
	store_batch_put(batch, STORE_IDS, key, len + 1, value, sizeof value);
	reverse[0] = (unsigned char)(kind - 'a' + 'A');
	bytes_put_be32(reverse + 1, index);
	store_batch_put(batch, STORE_IDS, reverse, sizeof reverse, id, len);
}

/* Notes that user stable's rows go into the batch being built. */
static void user_written(struct state *s, uint32_t stable)
{
	if (grow_array(&s->user_written_in, &s->user_written_capacity, (size_t)stable + 1,
		       sizeof *s->user_written_in, 1024) != 0) {
		/* unknown from now on: every restore waits for the writer, as before */
		free(s->user_written_in);
		s->user_written_in = NULL;
		s->user_written_capacity = 0;
		s->batch_number = 0;
		return;
	}
	s->user_written_in[stable] = s->batch_number;
}

/* With a user row: the removal its item references were checked against
 * (only once items were ever removed). */
static void put_user_purged(struct state *s, uint32_t stable)
{
	if (s->removal_seq == 0 || (size_t)stable >= s->life_capacity)
		return;
	unsigned char key[5] = {'P'}, value[8];
	bytes_put_be32(key + 1, stable);
	bytes_put_be64(value, s->user_purged[stable]);
	store_batch_put(s->batch, STORE_IDS, key, sizeof key, value, sizeof value);
}

static int put_pending_row(uint32_t stable, size_t variant, const void *row, size_t len, void *ctx)
{
	struct state *s = ctx;
	unsigned char key[5];
	state_key_row(key, stable, s->store_id[variant]);
	store_batch_put(s->batch, STORE_USER, key, sizeof key, row, len);
	user_written(s, stable);
	put_user_purged(s, stable);
	if (s->on_user_row != NULL)
		s->on_user_row(stable, variant, row, len, s->on_user_row_opaque);
	return 0;
}

/* The content map of a variant (model_export_content()): a key of its own,
 * written only when the map changed (it is about a megabyte). */
static int put_content_map(struct state *s, const struct model *m, unsigned char variant_id,
			   char *errstr, size_t errstr_size)
{
	unsigned char key[STATE_CONTENT_KEY_BYTES];
	size_t bytes = model_export_content(m, NULL, 0);
	unsigned char *buf = malloc(bytes ? bytes : 1);
	if (buf == NULL) {
		set_errstr(errstr, errstr_size, "out of memory writing the content map");
		return -1;
	}
	model_export_content(m, buf, bytes);
	state_key_content(key, variant_id);
	store_batch_put(s->batch, STORE_META, key, sizeof key, buf, bytes);
	free(buf);
	return 0;
}

/*
 * Room for count keys in s->order (and radix_sort_u32()'s scratch), for
 * putting a batch's row keys in key order: RocksDB inserts each key into a
 * skiplist memtable, and keys in order walk it along one path instead of
 * from the top each (`streamrec replay` of a 1M-item stream into a fresh
 * state: the commits' memtable inserts were 45% of the CPU with keys in the
 * order events touched them; 2M events took 63 s sorted, 94 s before). An
 * optimisation only: without memory the keys go as they are.
 */
static bool reserve_order(struct state *s, size_t count)
{
	return grow_scratch(&s->order, &s->order_capacity, count, sizeof *s->order) == 0 &&
	       grow_scratch(&s->order_scratch, &s->order_scratch_capacity, count,
			    sizeof *s->order_scratch) == 0;
}

/* Sorts keys[0..count) in place when there is memory for it. */
static void in_key_order(struct state *s, uint32_t *keys, size_t count)
{
	if (reserve_order(s, count))
		radix_sort_u32(keys, count, s->order_scratch);
}

/* How far ahead of the item it exports build_batch() starts loading a
 * counts row: the list headers and the other arrays, then the lists. */
#define COUNTS_AHEAD_FAR 16
#define COUNTS_AHEAD_NEAR 8

/* Moves every pending change into s->batch; afterwards nothing is pending.
 * Rows set aside by evictions go first: a user restored and changed since
 * is written again after them, newest last. */
static int build_batch(struct state *s, char *errstr, size_t errstr_size)
{
	unsigned char key[9];
	usercache_pending_foreach(s->cache, put_pending_row, s);
	usercache_pending_clear(s->cache);
	for (size_t k = 0; k < s->new_user_count; k++) {
		const char *id = idmap_id(s->users, s->new_users[k]);
		if (id != NULL && s->live[s->new_users[k]]) /* not removed since */
			put_id(s->batch, 'u', id, s->new_users[k]);
	}
	in_key_order(s, s->seen_users, s->seen_user_count);
	for (size_t k = 0; k < s->seen_user_count; k++) {
		uint32_t stable = s->seen_users[k];
		s->seen_changed[stable] = 0;
		if (!s->live[stable] || s->last_seen[stable] == INT64_MIN)
			continue;
		unsigned char seen_key[5] = {'T'}, seen[8];
		bytes_put_be32(seen_key + 1, stable);
		bytes_put_be64(seen, (uint64_t)s->last_seen[stable]);
		store_batch_put(s->batch, STORE_IDS, seen_key, sizeof seen_key, seen, sizeof seen);
	}
	s->seen_user_count = 0;
	if (s->sketch_changed) {
		sketch_export(s->sketch, s->row);
		store_batch_put(s->batch, STORE_META, STATE_SKETCH_KEY, sizeof STATE_SKETCH_KEY - 1,
				s->row, sketch_export_bytes());
		s->sketch_changed = false;
	}
	for (size_t k = 0; k < s->new_item_count; k++)
		if (s->item_live[s->new_items[k]]) /* not removed since */
			put_id(s->batch, 'i', idmap_id(s->items, s->new_items[k]), s->new_items[k]);
	in_key_order(s, s->seen_items, s->seen_item_count);
	for (size_t k = 0; k < s->seen_item_count; k++) {
		uint32_t item = s->seen_items[k];
		s->item_seen_changed[item] = 0;
		if (!s->item_live[item] || s->item_last_seen[item] == INT64_MIN)
			continue;
		unsigned char seen_key[5] = {'J'}, seen[8];
		bytes_put_be32(seen_key + 1, item);
		bytes_put_be64(seen, (uint64_t)s->item_last_seen[item]);
		store_batch_put(s->batch, STORE_IDS, seen_key, sizeof seen_key, seen, sizeof seen);
	}
	s->seen_item_count = 0;
	if (s->item_sketch_changed) {
		sketch_export(s->item_sketch, s->row);
		store_batch_put(s->batch, STORE_META, STATE_ITEM_SKETCH_KEY,
				sizeof STATE_ITEM_SKETCH_KEY - 1, s->row, sketch_export_bytes());
		s->item_sketch_changed = false;
	}
	for (size_t v = 0; v < s->variant_count; v++) {
		struct model *m = s->models[v];
		const uint32_t *ids;
		size_t n = model_dirty_users(m, &ids);
		/* saved under the stable index, in its order when there is memory
		 * for it (reserve_order()) */
		bool by_stable = reserve_order(s, n);
		if (by_stable) {
			for (size_t k = 0; k < n; k++)
				s->order[k] = usercache_user_of(s->cache, ids[k]);
			radix_sort_u32(s->order, n, s->order_scratch);
		}
		for (size_t k = 0; k < n; k++) {
			uint32_t slot = by_stable ? usercache_slot_of(s->cache, s->order[k]) : ids[k];
			if (slot == USERCACHE_NONE ||
			    (by_stable && k > 0 && s->order[k] == s->order[k - 1]))
				continue; /* gone, or listed twice (model_dirty_users()) */
			if (!model_user_is_dirty(m, slot))
				continue; /* evicted since: its row was set aside */
			size_t len = model_export_user(m, slot, s->row, ROW_BUFFER);
			if (len > ROW_BUFFER) {
				const char *id =
				    idmap_id(s->users, usercache_user_of(s->cache, slot));
				set_errstr(
				    errstr, errstr_size,
				    "user %.256s: row of %zu bytes, over the %u a row may hold",
				    id != NULL ? id : "(unknown)", len, ROW_BUFFER);
				store_batch_clear(s->batch);
				return -1;
			}
			uint32_t stable = usercache_user_of(s->cache, slot);
			state_key_row(key, stable, s->store_id[v]);
			store_batch_put(s->batch, STORE_USER, key, 5, s->row, len);
			user_written(s, stable);
			put_user_purged(s, stable);
			if (s->on_user_row != NULL)
				s->on_user_row(stable, v, s->row, len, s->on_user_row_opaque);
		}
		n = model_dirty_items(m, &ids);
		if (n > 0 && reserve_order(s, n)) {
			memcpy(s->order, ids, n * sizeof *ids);
			radix_sort_u32(s->order, n, s->order_scratch);
			ids = s->order;
		}
		for (size_t k = 0; k < n; k++) {
			/* the counts rows' reads are scattered: start them ahead */
			if (k + COUNTS_AHEAD_FAR < n &&
			    (model_item_dirty_parts(m, ids[k + COUNTS_AHEAD_FAR]) & MODEL_ITEM_COUNTS))
				model_prefetch_item_counts(m, ids[k + COUNTS_AHEAD_FAR], false);
			if (k + COUNTS_AHEAD_NEAR < n &&
			    (model_item_dirty_parts(m, ids[k + COUNTS_AHEAD_NEAR]) & MODEL_ITEM_COUNTS))
				model_prefetch_item_counts(m, ids[k + COUNTS_AHEAD_NEAR], true);
			if (!state_item_live(s, ids[k]))
				continue; /* removed: its row is deleted in this batch */
			/* two rows (model.h, "Item rows"): a learning step rewrites the
			 * vectors alone */
			unsigned parts = model_item_dirty_parts(m, ids[k]);
			state_key_row(key, ids[k], s->store_id[v]);
			/* owed: paid between the events after the commit (state_pay()) */
			if ((parts & (MODEL_ITEM_VECTOR | MODEL_ITEM_Y)) &&
			    !(s->writer_started && model_owe_item_vector(m, ids[k])))
				put_item_vector_rows(s->batch, m, ids[k], s->store_id[v], parts,
						     s->row);
			if (parts & MODEL_ITEM_COUNTS) {
				size_t len = model_export_item_counts(m, ids[k], s->row, ROW_BUFFER);
				store_batch_put(s->batch, STORE_COVIS, key, 5, s->row, len);
			}
		}
		memcpy(key, "globals/", 8);
		key[8] = s->store_id[v];
		store_batch_put(s->batch, STORE_META, key, 9, s->row,
				model_export_globals(m, s->row, ROW_BUFFER));
		if (model_content_dirty(m) && put_content_map(s, m, s->store_id[v], errstr,
							       errstr_size) != 0) {
			store_batch_clear(s->batch);
			return -1;
		}
	}
	for (size_t a = 0; a < s->aux_count; a++) {
		store_batch_put(s->batch, STORE_META, s->aux[a].key, strlen(s->aux[a].key),
				s->aux[a].data, s->aux[a].len);
		free(s->aux[a].data);
	}
	s->aux_count = 0;
	for (size_t v = 0; v < s->variant_count; v++)
		model_clear_dirty(s->models[v]);
	s->new_user_count = 0;
	s->new_item_count = 0;
	return 0;
}

int state_commit_async(struct state *state, char *errstr, size_t errstr_size)
{
	struct state *s = state;
	if (state_flush(s, errstr, errstr_size) != 0)
		return -1;
	/* the batch written before is durable now: the indices it freed are reusable */
	if (s->freed_inflight_count > 0) {
		if (grow_array(&s->free_users, &s->free_user_capacity,
			       s->free_user_count + s->freed_inflight_count, sizeof *s->free_users,
			       256) != 0)
			goto out_nomem;
		memcpy(s->free_users + s->free_user_count, s->freed_inflight,
		       s->freed_inflight_count * sizeof *s->freed_inflight);
		s->free_user_count += s->freed_inflight_count;
		s->freed_inflight_count = 0;
	}
	if (s->freed_items_inflight_count > 0) {
		if (grow_array(&s->free_items, &s->free_item_capacity,
			       s->free_item_count + s->freed_items_inflight_count,
			       sizeof *s->free_items, 256) != 0)
			goto out_nomem;
		memcpy(s->free_items + s->free_item_count, s->freed_items_inflight,
		       s->freed_items_inflight_count * sizeof *s->freed_items_inflight);
		s->free_item_count += s->freed_items_inflight_count;
		s->freed_items_inflight_count = 0;
	}
	if (idmap_count(s->removed) > 0 || idmap_count(s->removed_inflight) > 0) {
		struct idmap *fresh = idmap_new();
		if (fresh == NULL)
			goto out_nomem;
		idmap_free(s->removed_inflight);
		s->removed_inflight = s->removed;
		s->removed = fresh;
		s->removed_next = 0;
	}
	if (build_batch(s, errstr, errstr_size) != 0) {
		/* what it owed is dropped with the batch (pay_item_vector()
		 * writes nothing without a sealed batch) */
		for (size_t v = 0; v < s->variant_count; v++)
			model_pay_owed(s->models[v], SIZE_MAX);
		return -1;
	}
	/* the indices this batch frees are reusable once it is written */
	uint32_t *freed = s->freed_inflight;
	size_t freed_capacity = s->freed_inflight_capacity;
	s->freed_inflight = s->freed_pending;
	s->freed_inflight_capacity = s->freed_pending_capacity;
	s->freed_inflight_count = s->freed_pending_count;
	s->freed_pending = freed;
	s->freed_pending_capacity = freed_capacity;
	s->freed_pending_count = 0;
	uint32_t *freed_items = s->freed_items_inflight;
	size_t freed_items_capacity = s->freed_items_inflight_capacity;
	s->freed_items_inflight = s->freed_items_pending;
	s->freed_items_inflight_capacity = s->freed_items_pending_capacity;
	s->freed_items_inflight_count = s->freed_items_pending_count;
	s->freed_items_pending = freed_items;
	s->freed_items_pending_capacity = freed_items_capacity;
	s->freed_items_pending_count = 0;
	if (s->batch_number != 0)
		s->batch_number++;
	size_t owed = owed_rows(s);
	uint64_t events = s->events_since_commit;
	s->events_since_commit = 0;
	if (owed > 0) {
		/* sealed: paid over about a quarter of the events the last
		 * interval saw (at least 16 rows an event), then written */
		uint64_t spread = events / 4 > 256 ? events / 4 : 256;
		s->pay_quota = (size_t)((owed + spread - 1) / spread);
		if (s->pay_quota < 16)
			s->pay_quota = 16;
		s->sealed = s->batch;
		s->batch = s->spare;
		s->spare = NULL;
		return 0;
	}
	note_batch_size(s, s->batch);
	pthread_mutex_lock(&s->lock);
	struct store_batch *spare = s->inflight;
	s->inflight = s->batch;
	s->batch = spare;
	store_batch_clear(s->batch);
	s->busy = true;
	pthread_cond_broadcast(&s->wake);
	pthread_mutex_unlock(&s->lock);
	return 0;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory committing the state");
	return -1;
}

int state_commit(struct state *state, char *errstr, size_t errstr_size)
{
	return state_commit_async(state, errstr, errstr_size) != 0
		   ? -1
		   : state_flush(state, errstr, errstr_size);
}

int state_flush_memtables(struct state *state, uint64_t *flushed_bytes, char *errstr,
			  size_t errstr_size)
{
	if (state_flush(state, errstr, errstr_size) != 0)
		return -1;
	return store_flush_memtables(state->store, flushed_bytes, errstr, errstr_size);
}

int state_offset(struct state *state, const char *topic, int32_t partition, int64_t *offset,
		 char *errstr, size_t errstr_size)
{
	return store_offset(state->store, topic, partition, offset, errstr, errstr_size);
}

struct user_scan {
	struct state *state;
	char *errstr;
	size_t errstr_size;
	int failed;
};

static int load_user_id(const void *key, size_t key_len, const void *value, size_t value_len,
			void *ctx)
{
	struct user_scan *c = ctx;
	const unsigned char *k = key;
	if (key_len != 5 || k[0] != 'U')
		return 0;
	uint32_t index = bytes_get_be32(k + 1), slot;
	if ((size_t)index >= c->state->life_capacity || !c->state->live[index])
		return 0; /* removed: its deletion is not written yet */
	if (usercache_slot_of(c->state->cache, index) != USERCACHE_NONE)
		return 0; /* in memory already */
	if (idmap_id(c->state->users, index) == NULL &&
	    idmap_put(c->state->users, value, value_len, index) != 0) {
		set_errstr(c->errstr, c->errstr_size, "out of memory loading users");
		c->failed = 1;
		return 1;
	}
	if (place_user(c->state, index, true, &slot, c->errstr, c->errstr_size) != 0) {
		c->failed = 1;
		return 1;
	}
	return 0;
}

int state_load_all_users(struct state *state, char *errstr, size_t errstr_size)
{
	struct user_scan c = {state, errstr, errstr_size, 0};
	char why[256];
	if (store_foreach(state->store, STORE_IDS, load_user_id, &c, why, sizeof why) != 0) {
		if (!c.failed)
			set_errstr(errstr, errstr_size, "%s", why);
		return -1;
	}
	return c.failed ? -1 : 0;
}

int state_digest(struct state *state, uint64_t *digest, char *errstr, size_t errstr_size)
{
	struct state *s = state;
	size_t bound = usercache_max_slots(s->cache);
	usercache_set_max_slots(s->cache, 0); /* every user at once, beyond the bound */
	int rc = state_load_all_users(s, errstr, errstr_size);
	size_t made = usercache_slot_count(s->cache);
	/* keep the slots made; the sweep covers them all */
	usercache_set_max_slots(s->cache, bound > 0 && made > bound ? made : bound);
	if (rc != 0)
		return -1;
	XXH3_state_t *hash = XXH3_createState();
	if (hash == NULL) {
		set_errstr(errstr, errstr_size, "out of memory");
		return -1;
	}
	XXH3_64bits_reset(hash);
	for (size_t v = 0; v < s->variant_count; v++) {
		struct model *m = s->models[v];
		for (uint32_t u = 0; u < s->next_user; u++) {
			uint32_t slot = usercache_slot_of(s->cache, u);
			if (slot == USERCACHE_NONE || slot >= model_user_count(m) ||
			    !model_user_has_row(m, slot))
				continue;
			size_t n = model_export_user(m, slot, s->row, ROW_BUFFER);
			XXH3_64bits_update(hash, &u, sizeof u);
			XXH3_64bits_update(hash, s->row, n);
		}
		for (uint32_t i = 0; i < model_item_count(m); i++) {
			if (!state_item_live(s, i))
				continue; /* a freed index: no row on disk */
			size_t n = model_export_item(m, i, s->row, ROW_BUFFER);
			XXH3_64bits_update(hash, &i, sizeof i);
			XXH3_64bits_update(hash, s->row, n);
		}
		XXH3_64bits_update(hash, s->row, model_export_globals(m, s->row, ROW_BUFFER));
		uint64_t content_digest = model_content_digest(m);
		if (content_digest != 0) /* content on */
			XXH3_64bits_update(hash, &content_digest, sizeof content_digest);
	}
	*digest = XXH3_64bits_digest(hash);
	XXH3_freeState(hash);
	return 0;
}

int state_checkpoint(struct state *state, const char *dir, char *errstr, size_t errstr_size)
{
	return store_checkpoint(state->store, dir, errstr, errstr_size);
}

void state_user_restores(const struct state *state, uint64_t *restored, uint64_t *after_writer)
{
	*restored = state->restores;
	*after_writer = state->restores_after_writer;
}

void state_block_cache(struct state *state, size_t *capacity, size_t *usage)
{
	store_block_cache(state->store, capacity, usage);
}

uint64_t state_bytes(struct state *state)
{
	return store_state_bytes(state->store);
}

void state_written(const struct state *state, enum store_family family, uint64_t *rows,
		   uint64_t *bytes)
{
	store_written(state->store, family, rows, bytes);
}

long state_export(struct state *state, const char *path, char *errstr, size_t errstr_size)
{
	return statefile_export(state->store, path, errstr, errstr_size);
}

long state_copy_stored(const char *dir, const char *to, const char *export_to, char *errstr,
		       size_t errstr_size)
{
	struct store_config sc = {.path = dir, .must_exist = true};
	struct store *store = store_open(&sc, errstr, errstr_size);
	if (store == NULL)
		return -1;
	long rc = export_to != NULL ? statefile_export(store, export_to, errstr, errstr_size)
				    : store_checkpoint(store, to, errstr, errstr_size);
	store_close(store);
	return rc;
}

long state_import(const char *dir, const char *path, char *errstr, size_t errstr_size)
{
	return statefile_import(dir, path, errstr, errstr_size);
}

const char *state_variant_name(const struct state *state, size_t variant)
{
	return variant < state->variant_count ? state->variant_names[variant] : NULL;
}

int state_put_list(struct state *state, uint32_t stable, const void *record, size_t len)
{
	unsigned char key[STATE_LIST_KEY_BYTES];
	memcpy(key, STATE_LIST_PREFIX, sizeof STATE_LIST_PREFIX - 1);
	bytes_put_be32(key + sizeof STATE_LIST_PREFIX - 1, stable);
	store_batch_put(state->batch, STORE_META, key, sizeof key, record, len);
	return 0;
}

struct list_scan {
	int (*fn)(uint32_t stable, const void *record, size_t len, void *ctx);
	void *ctx;
};

static int scan_list(const void *key, size_t key_len, const void *value, size_t value_len,
		     void *ctx)
{
	const struct list_scan *scan = ctx;
	if (key_len != STATE_LIST_KEY_BYTES)
		return 0;
	return scan->fn(bytes_get_be32((const unsigned char *)key + sizeof STATE_LIST_PREFIX - 1), value,
			value_len, scan->ctx);
}

int state_lists_foreach(struct state *state,
			int (*fn)(uint32_t stable, const void *record, size_t len, void *ctx),
			void *ctx, char *errstr, size_t errstr_size)
{
	struct list_scan scan = {fn, ctx};
	return store_foreach_prefix(state->store, STORE_META, STATE_LIST_PREFIX,
				    sizeof STATE_LIST_PREFIX - 1, scan_list, &scan, errstr,
				    errstr_size);
}

size_t state_user_count(const struct state *state)
{
	return state->live_users;
}

/* Deletes every key of a live user in the pending batch and frees what it
 * holds in memory; its index becomes reusable once the deletion is durable.
 * removed_id gets the user's id ("" when the state has none).
 * @returns 0, or -1 with errstr filled (nothing changed). */
static int remove_user(struct state *s, uint32_t stable, char removed_id[STATE_USER_ID_MAX + 1],
		       char *errstr, size_t errstr_size)
{
	unsigned char key[1 + 256], reverse[5], row_key[STATE_ROW_KEY_BYTES];
	unsigned char list_key[STATE_LIST_KEY_BYTES];
	const char *id = idmap_id(s->users, stable);
	void *stored = NULL;
	size_t len = id != NULL ? strlen(id) : 0;
	char why[256];

	bytes_put_be32(reverse + 1, stable);
	if (id == NULL) {
		/* not met since the state opened: its id is on disk only */
		reverse[0] = 'U';
		int found = store_get(s->store, STORE_IDS, reverse, sizeof reverse, &stored, &len,
				      why, sizeof why);
		if (found < 0) {
			set_errstr(errstr, errstr_size, "removing user %u: %s", stable, why);
			return -1;
		}
		id = stored;
		if (found == 0)
			len = 0;
	}
	if (grow_array(&s->freed_pending, &s->freed_pending_capacity, s->freed_pending_count + 1,
		       sizeof *s->freed_pending, 256) != 0)
		goto out_nomem;
	removed_id[0] = '\0';
	if (len > 0 && len <= STATE_USER_ID_MAX) {
		memcpy(removed_id, id, len);
		removed_id[len] = '\0';
	}
	if (len > 0 && len <= 256) {
		if (idmap_put(s->removed, id, len, s->removed_next++) != 0)
			goto out_nomem;
		key[0] = 'u';
		memcpy(key + 1, id, len);
		store_batch_delete(s->batch, STORE_IDS, key, len + 1);
	}
	reverse[0] = 'U';
	store_batch_delete(s->batch, STORE_IDS, reverse, sizeof reverse);
	reverse[0] = 'T';
	store_batch_delete(s->batch, STORE_IDS, reverse, sizeof reverse);
	reverse[0] = 'P';
	store_batch_delete(s->batch, STORE_IDS, reverse, sizeof reverse);
	for (size_t v = 0; v < s->variant_count; v++) {
		state_key_row(row_key, stable, s->store_id[v]);
		store_batch_delete(s->batch, STORE_USER, row_key, sizeof row_key);
	}
	memcpy(list_key, STATE_LIST_PREFIX, sizeof STATE_LIST_PREFIX - 1);
	bytes_put_be32(list_key + sizeof STATE_LIST_PREFIX - 1, stable);
	store_batch_delete(s->batch, STORE_META, list_key, sizeof list_key);

	usercache_forget(s->cache, stable);
	idmap_remove(s->users, stable);
	s->live[stable] = 0;
	s->last_seen[stable] = INT64_MIN;
	s->live_users--;
	s->freed_pending[s->freed_pending_count++] = stable;
	free(stored);
	return 0;
out_nomem:
	free(stored);
	set_errstr(errstr, errstr_size, "out of memory removing user %u", stable);
	return -1;
}

static int by_last_seen(const void *a, const void *b);

/* Deletes every key of a live item in the pending batch (its ids both ways,
 * last-seen, each variant's row) and records the removal ("R" + u32, the
 * removal's number, kept for good: restored user rows are checked against
 * it). The model forgets the item in the sweep's one pass
 * (forget_removed_items()); its index becomes reusable once the deletion is
 * durable. @returns 0, or -1 with errstr filled (nothing changed). */
static int remove_item(struct state *s, uint32_t item, char *errstr, size_t errstr_size)
{
	unsigned char key[1 + 256], reverse[5], row_key[STATE_ROW_KEY_BYTES], seq[8];
	unsigned char y_key[STATE_Y_ROW_KEY_BYTES];
	const char *id = idmap_id(s->items, item);
	size_t len = id != NULL ? strlen(id) : 0;

	if (grow_array(&s->freed_items_pending, &s->freed_items_pending_capacity,
		       s->freed_items_pending_count + 1, sizeof *s->freed_items_pending, 256) != 0 ||
	    grow_array(&s->removed_items, &s->removed_item_capacity, s->removed_item_count + 1,
		       sizeof *s->removed_items, 256) != 0) {
		set_errstr(errstr, errstr_size, "out of memory removing item %u", item);
		return -1;
	}
	if (len > 0 && len <= 256) {
		key[0] = 'i';
		memcpy(key + 1, id, len);
		store_batch_delete(s->batch, STORE_IDS, key, len + 1);
	}
	bytes_put_be32(reverse + 1, item);
	reverse[0] = 'I';
	store_batch_delete(s->batch, STORE_IDS, reverse, sizeof reverse);
	reverse[0] = 'J';
	store_batch_delete(s->batch, STORE_IDS, reverse, sizeof reverse);
	s->removal_seq++;
	reverse[0] = 'R';
	bytes_put_be64(seq, s->removal_seq);
	store_batch_put(s->batch, STORE_IDS, reverse, sizeof reverse, seq, sizeof seq);
	for (size_t v = 0; v < s->variant_count; v++) {
		state_key_row(row_key, item, s->store_id[v]);
		store_batch_delete(s->batch, STORE_ITEM, row_key, sizeof row_key);
		store_batch_delete(s->batch, STORE_COVIS, row_key, sizeof row_key);
		state_key_y_row(y_key, item, s->store_id[v]);
		store_batch_delete(s->batch, STORE_ITEM, y_key, sizeof y_key);
	}
	idmap_remove(s->items, item);
	s->item_live[item] = 0;
	s->item_last_seen[item] = INT64_MIN;
	s->item_removed_seq[item] = s->removal_seq;
	s->live_items--;
	s->freed_items_pending[s->freed_items_pending_count++] = item;
	s->removed_items[s->removed_item_count++] = item;
	return 0;
}

/* The sweep's one pass over what refers to the items it removed: every
 * variant's model forgets them (model_forget_items(): rows, counts,
 * co-visitation lists of all items, rings and exclusions of the users in
 * memory), and the users in memory count as checked against this removal. */
static int forget_removed_items(struct state *s, char *errstr, size_t errstr_size)
{
	if (s->removed_item_count == 0)
		return 0;
	for (size_t v = 0; v < s->variant_count; v++)
		if (model_forget_items(s->models[v], s->removed_items, s->removed_item_count,
				       errstr, errstr_size) != 0)
			return -1;
	size_t slots = model_user_count(s->models[0]);
	for (size_t slot = 0; slot < slots; slot++) {
		uint32_t stable = usercache_user_of(s->cache, (uint32_t)slot);
		if (stable != USERCACHE_NONE && (size_t)stable < s->life_capacity)
			s->user_purged[stable] = s->removal_seq;
	}
	s->removed_item_count = 0;
	return 0;
}

/* One kind's life cycle as the sweep sees it: users and items alike. */
struct life_kind {
	const char *name; /* for messages: "user", "item" */
	uint32_t indices; /* handed out so far (next_user, next_item) */
	const uint8_t *live;
	int64_t *last_seen;
	uint8_t *seen_changed;
	uint32_t **seen; /* seen_changed ones, written with the next commit */
	size_t *seen_count, *seen_capacity;
	const size_t *live_count;
	uint64_t ttl_ms;
	size_t max;
	uint64_t *expired, *evicted;
	/* removes index i (and tells whoever asked); @returns 0 or -1 */
	int (*remove)(struct state *s, uint32_t i, void *opaque, char *errstr, size_t errstr_size);
	void *opaque;
};

/* Marks a live index of unknown last-seen (a state older than the life
 * cycle, never learned on, a catalogue record without a time) as seen now:
 * idle from now on. @returns 0 or -1. */
static int seen_from_now(const struct life_kind *k, uint32_t i, int64_t now)
{
	if (k->last_seen[i] != INT64_MIN)
		return 0;
	k->last_seen[i] = now;
	if (k->seen_changed[i])
		return 0;
	if (remember(k->seen, k->seen_count, k->seen_capacity, i) != 0)
		return -1;
	k->seen_changed[i] = 1;
	return 0;
}

/* One kind's sweep: the expired (idle past ttl_ms), then the least recently
 * active above max. @returns how many it removed, or -1. */
static long sweep_kind(struct state *s, const struct life_kind *k, int64_t now, char *errstr,
		       size_t errstr_size)
{
	long removed = 0;
	int64_t oldest_kept = INT64_MIN;
	if (k->ttl_ms > 0 && (uint64_t)now - (uint64_t)INT64_MIN > k->ttl_ms)
		oldest_kept = now - (int64_t)k->ttl_ms;
	for (uint32_t i = 0; i < k->indices; i++) {
		if (!k->live[i])
			continue;
		if (seen_from_now(k, i, now) != 0)
			goto out_nomem;
		if (k->last_seen[i] >= oldest_kept)
			continue;
		if (k->remove(s, i, k->opaque, errstr, errstr_size) != 0)
			return -1;
		(*k->expired)++;
		removed++;
	}
	if (k->max == 0 || *k->live_count <= k->max)
		return removed;
	if (grow_array(&s->sweep, &s->sweep_capacity, *k->live_count, sizeof *s->sweep, 1024) != 0)
		goto out_nomem;
	size_t n = 0;
	for (uint32_t i = 0; i < k->indices; i++)
		if (k->live[i])
			s->sweep[n++] = (struct sweep_entry){k->last_seen[i], i};
	qsort(s->sweep, n, sizeof *s->sweep, by_last_seen);
	size_t evict = *k->live_count - k->max;
	for (size_t e = 0; e < evict && e < n; e++) {
		if (k->remove(s, s->sweep[e].stable, k->opaque, errstr, errstr_size) != 0)
			return -1;
		(*k->evicted)++;
		removed++;
	}
	return removed;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory in the %s sweep", k->name);
	return -1;
}

static int sweep_remove_item(struct state *s, uint32_t i, void *opaque, char *errstr,
			     size_t errstr_size)
{
	const struct state_lifecycle *lifecycle = opaque;
	if (remove_item(s, i, errstr, errstr_size) != 0)
		return -1;
	if (lifecycle->on_item_removed != NULL)
		lifecycle->on_item_removed(i, lifecycle->opaque);
	return 0;
}

/* Who is told of a removed user, with its id. */
struct user_removal {
	void (*on_removed)(uint32_t stable, const char *user_id, void *opaque);
	void *opaque;
};

static int sweep_remove_user(struct state *s, uint32_t u, void *opaque, char *errstr,
			     size_t errstr_size)
{
	const struct user_removal *told = opaque;
	char removed_id[STATE_USER_ID_MAX + 1];
	if (remove_user(s, u, removed_id, errstr, errstr_size) != 0)
		return -1;
	if (told->on_removed != NULL)
		told->on_removed(u, removed_id, told->opaque);
	return 0;
}

static int by_last_seen(const void *a, const void *b)
{
	const struct sweep_entry *x = a, *y = b;
	if (x->last_seen != y->last_seen)
		return x->last_seen < y->last_seen ? -1 : 1;
	return x->stable < y->stable ? -1 : x->stable > y->stable;
}

long state_lifecycle_sweep(struct state *state, const struct state_lifecycle *lifecycle,
			   int64_t wall_ms,
			   void (*on_removed)(uint32_t stable, const char *user_id, void *opaque),
			   void *opaque, char *errstr, size_t errstr_size)
{
	struct state *s = state;
	int64_t now = s->newest_event_ms < wall_ms ? s->newest_event_ms : wall_ms;
	long removed = 0;
	if (now == INT64_MIN)
		return 0; /* nothing learned yet: no clock to measure idleness by */
	s->sweep_now_ms = now;
	if (lifecycle->item_ttl_ms > 0 || lifecycle->max_items > 0) {
		/* (the removal callback only reads the lifecycle) */
		struct life_kind items = {"item",
					  s->next_item,
					  s->item_live,
					  s->item_last_seen,
					  s->item_seen_changed,
					  &s->seen_items,
					  &s->seen_item_count,
					  &s->seen_item_capacity,
					  &s->live_items,
					  lifecycle->item_ttl_ms,
					  lifecycle->max_items,
					  &s->expired_items,
					  &s->evicted_items,
					  sweep_remove_item,
					  (void *)lifecycle};
		removed = sweep_kind(s, &items, now, errstr, errstr_size);
		if (removed < 0 || forget_removed_items(s, errstr, errstr_size) != 0)
			return -1;
	}
	if (lifecycle->user_ttl_ms == 0 && lifecycle->max_users == 0)
		return removed;
	struct user_removal told = {on_removed, opaque};
	struct life_kind users = {"user",
				  s->next_user,
				  s->live,
				  s->last_seen,
				  s->seen_changed,
				  &s->seen_users,
				  &s->seen_user_count,
				  &s->seen_user_capacity,
				  &s->live_users,
				  lifecycle->user_ttl_ms,
				  lifecycle->max_users,
				  &s->expired_users,
				  &s->evicted_users,
				  sweep_remove_user,
				  &told};
	long users_removed = sweep_kind(s, &users, now, errstr, errstr_size);
	return users_removed < 0 ? -1 : removed + users_removed;
}

void state_lifecycle_counts(const struct state *state, struct state_lifecycle_counts *counts)
{
	counts->admitted_users = state->admitted_users;
	counts->expired_users = state->expired_users;
	counts->evicted_users = state->evicted_users;
	counts->unadmitted_events = state->unadmitted_events;
	counts->live_users = state->live_users;
	counts->admitted_items = state->admitted_items;
	counts->expired_items = state->expired_items;
	counts->evicted_items = state->evicted_items;
	counts->unadmitted_item_events = state->unadmitted_item_events;
	counts->live_items = state->live_items;
	counts->now_ms = state->sweep_now_ms;
}

int64_t state_user_last_seen(const struct state *state, uint32_t stable)
{
	if ((size_t)stable >= state->life_capacity || !state->live[stable])
		return INT64_MIN;
	return state->last_seen[stable];
}

int state_put_aux(struct state *state, const char *name, const void *data, size_t len,
		  char *errstr, size_t errstr_size)
{
	char key[64];
	size_t a;
	if (snprintf(key, sizeof key, "aux/%s", name) >= (int)sizeof key) {
		set_errstr(errstr, errstr_size, "state: aux key '%s' too long", name);
		return -1;
	}
	for (a = 0; a < state->aux_count; a++)
		if (strcmp(state->aux[a].key, key) == 0)
			break;
	if (a == STATE_MAX_AUX) {
		set_errstr(errstr, errstr_size, "state: more than %d aux values", STATE_MAX_AUX);
		return -1;
	}
	uint8_t *copy = malloc(len ? len : 1);
	if (copy == NULL) {
		set_errstr(errstr, errstr_size, "state: out of memory for aux '%s'", name);
		return -1;
	}
	memcpy(copy, data, len);
	if (a == state->aux_count) {
		snprintf(state->aux[a].key, sizeof state->aux[a].key, "%s", key);
		state->aux_count++;
	} else {
		free(state->aux[a].data);
	}
	state->aux[a].data = copy;
	state->aux[a].len = len;
	return 0;
}

int state_get_aux(struct state *state, const char *name, void **data, size_t *len, char *errstr,
		  size_t errstr_size)
{
	char key[64], why[256];
	if (snprintf(key, sizeof key, "aux/%s", name) >= (int)sizeof key) {
		set_errstr(errstr, errstr_size, "state: aux key '%s' too long", name);
		return -1;
	}
	int found = store_get(state->store, STORE_META, key, strlen(key), data, len, why, sizeof why);
	if (found < 0)
		set_errstr(errstr, errstr_size, "state: %s: %s", key, why);
	return found;
}

int state_restore_user_row(struct state *state, const char *user_id, size_t variant,
			   const void *row, size_t len, uint32_t *stable, char *errstr,
			   size_t errstr_size)
{
	struct state *s = state;
	uint32_t slot;
	uint64_t hash;
	if (variant >= s->variant_count) {
		set_errstr(errstr, errstr_size, "user %s: no variant %zu", user_id, variant);
		return -1;
	}
	if (state_user(s, user_id, &slot, &hash, errstr, errstr_size) != 0)
		return -1;
	if (model_import_user(s->models[variant], slot, row, len, errstr, errstr_size) != 0)
		return -1;
	model_touch_user(s->models[variant], slot);
	if (stable != NULL)
		*stable = state_user_stable(s, slot);
	return 0;
}

int state_remove_user_id(struct state *state, const char *user_id, uint32_t *stable,
			 char *errstr, size_t errstr_size)
{
	struct state *s = state;
	size_t len = strlen(user_id);
	unsigned char key[1 + STATE_ID_MAX];
	void *value = NULL;
	size_t value_len = 0;
	char why[256];
	uint32_t found = idmap_find(s->users, user_id, len);
	if (found == IDMAP_NONE) {
		if (len == 0 || len > 256 || idmap_find(s->removed, user_id, len) != IDMAP_NONE ||
		    idmap_find(s->removed_inflight, user_id, len) != IDMAP_NONE)
			return 0;
		key[0] = 'u';
		memcpy(key + 1, user_id, len);
		int rc = store_get(s->store, STORE_IDS, key, len + 1, &value, &value_len, why,
				   sizeof why);
		if (rc < 0) {
			set_errstr(errstr, errstr_size, "user %s: %s", user_id, why);
			return -1;
		}
		if (rc > 0 && value_len == 4)
			found = bytes_get_be32(value);
		free(value);
	}
	if (found == IDMAP_NONE || (size_t)found >= s->life_capacity || !s->live[found])
		return 0;
	char removed_id[STATE_USER_ID_MAX + 1];
	if (remove_user(s, found, removed_id, errstr, errstr_size) != 0)
		return -1;
	*stable = found;
	return 1;
}

int state_item_everywhere(struct state *state, const char *id, uint32_t *index, char *errstr,
			  size_t errstr_size)
{
	uint64_t hash;
	if (state_item(state, id, index, &hash, errstr, errstr_size) != 0)
		return -1;
	for (size_t v = 0; v < state->variant_count; v++)
		if (model_add_item(state->models[v], *index, hash) != 0) {
			set_errstr(errstr, errstr_size, "out of memory for item %s", id);
			return -1;
		}
	return 0;
}
