#include "prequential.h"

#include "clock.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topk.h"

struct tally {
	uint64_t tests, hits;
	double ndcg, rr;
	uint8_t *listed; /* per item: ever recommended */
	size_t listed_count;
};

static void tally_list(struct tally *t, const uint32_t *items, size_t n, uint32_t target)
{
	t->tests++;
	for (size_t r = 0; r < n; r++) {
		if (t->listed != NULL && !t->listed[items[r]]) {
			t->listed[items[r]] = 1;
			t->listed_count++;
		}
		if (items[r] == target) {
			t->hits++;
			t->ndcg += 1.0 / log2((double)r + 2.0);
			t->rr += 1.0 / ((double)r + 1.0);
		}
	}
}

static void tally_scores(const struct tally *t, size_t item_total, struct prequential_scores *out)
{
	double n = t->tests ? (double)t->tests : 1.0;
	out->tests = t->tests;
	out->hit_rate = (double)t->hits / n;
	out->ndcg = t->ndcg / n;
	out->mrr = t->rr / n;
	out->coverage = item_total ? (double)t->listed_count / (double)item_total : 0;
}

/* A ranking's tallies: whole (with coverage) and split. */
enum {
	SEG_ALL,
	SEG_DISCOVERY,
	SEG_REPEAT,
	SEG_WARM,
	SEG_COLD,
	SEG_NEW_ITEM,
	SEG_AFTER_SEARCH,
	SEGMENTS
};
struct split_tally {
	struct tally seg[SEGMENTS];
};

static void split_list(struct split_tally *t, const uint32_t *items, size_t n, uint32_t target,
		       bool repeat, bool warm, bool new_item, bool after_search)
{
	tally_list(&t->seg[SEG_ALL], items, n, target);
	if (new_item)
		tally_list(&t->seg[SEG_NEW_ITEM], items, n, target);
	if (after_search)
		tally_list(&t->seg[SEG_AFTER_SEARCH], items, n, target);
	tally_list(&t->seg[repeat ? SEG_REPEAT : SEG_DISCOVERY], items, n, target);
	tally_list(&t->seg[warm ? SEG_WARM : SEG_COLD], items, n, target);
}

static void split_scores(const struct split_tally *t, size_t item_total,
			 struct prequential_split *out)
{
	tally_scores(&t->seg[SEG_ALL], item_total, &out->all);
	tally_scores(&t->seg[SEG_DISCOVERY], 0, &out->discovery);
	tally_scores(&t->seg[SEG_REPEAT], 0, &out->repeat);
	tally_scores(&t->seg[SEG_WARM], 0, &out->warm);
	tally_scores(&t->seg[SEG_COLD], 0, &out->cold);
	tally_scores(&t->seg[SEG_NEW_ITEM], 0, &out->new_item);
	tally_scores(&t->seg[SEG_AFTER_SEARCH], 0, &out->after_search);
}

/* Hands a search's query vector to model when it takes vectors of the stream's dimension. */
static int give_search(struct model *model, const struct prequential_stream *stream,
		       uint32_t user, uint32_t query, char *errstr, size_t errstr_size)
{
	if (model_config(model)->content_dim != stream->content_dim)
		return 0;
	return model_search(model, user, stream->user_hash[user],
			    stream->item_content + (size_t)query * stream->content_dim, errstr,
			    errstr_size) < 0
		   ? -1
		   : 0;
}

/* Hands item's content vector to model when the model takes vectors of the stream's dimension. */
static int give_content(struct model *model, const struct prequential_stream *stream,
			uint32_t item, char *errstr, size_t errstr_size)
{
	if (model_config(model)->content_dim != stream->content_dim)
		return 0;
	return model_item_content(model, item, stream->item_hash[item],
				  stream->item_content + (size_t)item * stream->content_dim, errstr,
				  errstr_size) < 0
		   ? -1
		   : 0;
}

/* The (user, item) pairs seen so far: open addressing on user << 32 | item,
 * plus one (0 marks a free slot), at most half full. */
struct pair_set {
	uint64_t *slot;
	size_t capacity, count;
};

static size_t pair_home(uint64_t key, size_t capacity)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (size_t)key & (capacity - 1);
}

static bool pair_contains(const struct pair_set *set, uint32_t user, uint32_t item)
{
	uint64_t key = ((uint64_t)user << 32 | item) + 1;
	if (set->capacity == 0)
		return false;
	for (size_t at = pair_home(key, set->capacity);; at = (at + 1) & (set->capacity - 1)) {
		if (set->slot[at] == key)
			return true;
		if (set->slot[at] == 0)
			return false;
	}
}

static int pair_insert(struct pair_set *set, uint32_t user, uint32_t item)
{
	uint64_t key = ((uint64_t)user << 32 | item) + 1;
	if (2 * (set->count + 1) > set->capacity) {
		size_t capacity = set->capacity ? 2 * set->capacity : 4096;
		uint64_t *slot = calloc(capacity, sizeof *slot);
		if (slot == NULL)
			return -1;
		for (size_t k = 0; k < set->capacity; k++) {
			if (set->slot[k] == 0)
				continue;
			size_t at = pair_home(set->slot[k], capacity);
			while (slot[at] != 0)
				at = (at + 1) & (capacity - 1);
			slot[at] = set->slot[k];
		}
		free(set->slot);
		set->slot = slot;
		set->capacity = capacity;
	}
	size_t at = pair_home(key, set->capacity);
	for (; set->slot[at] != 0; at = (at + 1) & (set->capacity - 1))
		if (set->slot[at] == key)
			return 0;
	set->slot[at] = key;
	set->count++;
	return 0;
}

/* Exposure of new items: slots, new slots, and which items were shown while new. */
struct exposure_tally {
	uint64_t slots, new_slots, new_items;
	uint8_t *shown_new; /* per item */
};

static void tally_exposure(struct exposure_tally *t, const struct model *model,
			   const uint32_t *items, size_t n, unsigned new_events)
{
	for (size_t r = 0; r < n; r++) {
		t->slots++;
		if (model_item_count_of(model, items[r]) >= new_events)
			continue;
		t->new_slots++;
		if (!t->shown_new[items[r]]) {
			t->shown_new[items[r]] = 1;
			t->new_items++;
		}
	}
}

static void exposure_result(const struct exposure_tally *t, struct prequential_exposure *out)
{
	out->slots = t->slots;
	out->new_slots = t->new_slots;
	out->new_share = t->slots ? (double)t->new_slots / (double)t->slots : 0;
	out->new_items_shown = t->new_items;
}

/*
 * Exploration's pool: the items with 1 to new_events - 1 positive events,
 * kept as learning counts them (position[item] in the pool, or UINT32_MAX).
 */
struct new_pool {
	uint32_t *items, *position;
	size_t count;
};

static void pool_update(struct new_pool *p, const struct model *model, uint32_t item,
			unsigned new_events)
{
	uint64_t count = model_item_count_of(model, item);
	bool member = count >= 1 && count < new_events;
	if (member && p->position[item] == UINT32_MAX) {
		p->position[item] = (uint32_t)p->count;
		p->items[p->count++] = item;
	} else if (!member && p->position[item] != UINT32_MAX) {
		uint32_t at = p->position[item], last = p->items[--p->count];
		p->items[at] = last;
		p->position[last] = at;
		p->position[item] = UINT32_MAX;
	}
}

struct user_exclusions {
	const struct model *model;
	uint32_t user;
};

static bool excludes_item(uint32_t item, void *opaque)
{
	const struct user_exclusions *x = opaque;
	return model_user_excludes(x->model, x->user, item);
}

/* Ranks one arm's list for user into items. */
static int rank_arm(const struct prequential_arm *arm, struct topk *topk, uint32_t user, size_t k,
		    struct topk_result *list, uint32_t *items, size_t *n, char *errstr,
		    size_t errstr_size)
{
	switch (arm->ranker) {
	case PREQUENTIAL_RANK_POPULAR: *n = model_popular(arm->model, user, k, NULL, items); break;
	case PREQUENTIAL_RANK_TRENDING: *n = model_trending(arm->model, user, k, items); break;
	default:
		if (model_recommend(arm->model, topk, &user, 1, k, NULL, list, n, errstr,
				    errstr_size) != 0)
			return -1;
		for (size_t r = 0; r < *n; r++)
			items[r] = list[r].item;
	}
	return 0;
}

/* What the side-by-side run adds up across test points. */
struct both_totals {
	double exact_s, index_s;
	double recall_sum;
	uint64_t recall_count;
};

/* Ranks user's list with both engines, timing each, and adds the index
 * list's share of the exact list to the totals. */
static int rank_both(struct model *model, struct topk *topk, uint32_t user, size_t k,
		     struct topk_result *exact, size_t *exact_n, struct topk_result *index,
		     size_t *index_n, struct both_totals *totals, char *errstr, size_t errstr_size)
{
	double t0 = clock_monotonic_s(), t1, t2;
	if (model_recommend_with(model, topk, MODEL_RETRIEVAL_EXACT, &user, 1, k, NULL, exact,
				 exact_n, errstr, errstr_size) != 0)
		return -1;
	t1 = clock_monotonic_s();
	if (model_recommend_with(model, topk, MODEL_RETRIEVAL_INDEX, &user, 1, k, NULL, index,
				 index_n, errstr, errstr_size) != 0)
		return -1;
	t2 = clock_monotonic_s();
	totals->exact_s += t1 - t0;
	totals->index_s += t2 - t1;
	if (*exact_n > 0) {
		size_t found = 0;
		for (size_t a = 0; a < *exact_n; a++)
			for (size_t b = 0; b < *index_n; b++)
				if (index[b].item == exact[a].item) {
					found++;
					break;
				}
		totals->recall_sum += (double)found / (double)*exact_n;
		totals->recall_count++;
	}
	return 0;
}

/* ---- blocks (prequential_config.sync_every) ---------------------------------------- */

/* A test point whose model list waits for its block's ranking. */
struct block_test {
	uint32_t item;
	/* the batch's query (a warm user), or UINT32_MAX: cold, its list in `cold` */
	uint32_t warm_slot;
	size_t cold_count;
	bool repeat, new_item, after_search;
};

/* One block: the item side as of its start, its test points' queries. */
struct block {
	struct model_view_delta *delta;
	struct model_batch batch;
	struct block_test *tests;
	size_t test_count, test_capacity;
	struct topk_result *cold;    /* test_capacity × k */
	struct topk_result *results; /* per warm query, k */
	size_t *counts;
	size_t results_capacity;
	/* its search's chunks (under the pipeline's lock when threaded) */
	size_t chunk_count, next_chunk, chunks_done;
};

/* Lists ranked per search in a block: the unit its threads share out (and
 * for the exact engine, the bound of a topk_run() batch). */
#define BLOCK_CHUNK 32

/* Most threads of a replay in blocks: the replay's and its ranking threads. */
#define PIPELINE_MAX_THREADS 64

/*
 * Blocks in turn: the one the replay fills, the one being searched and one
 * handed over behind it. With two, a replay that reached a block's end
 * while the ranking threads were still on the block before waited for its
 * last chunks, and for the index's upkeep of its own block (no chunk to
 * take meanwhile). With a third it may start the next block then. Measured
 * on two cores (85k items): the replay's wait fell from 7-9% of the
 * replay to 6-7.5%; the rest is the upkeep, which one thread does.
 */
#define PIPELINE_BLOCKS 3

/* A thread that ranks: the replay's own (0) or a ranking thread (1 on; 1
 * also applies the deltas and prepares the index). */
struct ranker {
	struct pipeline *pipeline;
	pthread_t thread;
	bool started;
	struct topk *topk; /* the exact engine's */
	struct model_searcher *searcher;
	double seconds; /* ranking; written by its own thread only */
};

/*
 * PIPELINE_BLOCKS blocks take turns: the replay fills one while the others
 * are ranked. Captures, hand-overs, applications, searches and scorings are
 * numbered from 0; number n is always blocks[n % PIPELINE_BLOCKS]. The
 * replay captures delta n when it starts block n and hands block n over
 * when it ends, once block n + 1 - PIPELINE_BLOCKS is scored (its place is
 * the next block's). The view applies
 * delta n (the rows) once block n - 1 is searched, which is often before
 * block n is handed over; once it is handed over, the index is brought up
 * to date (if the block has lists to rank) and block n searched. So the view goes through the
 * same steps in the same order whatever the threads, and a block's lists
 * never see its test events. With one thread all of it runs at the
 * hand-over; with more, on ranking threads (the first applies and
 * prepares, all take chunks of the search), the replay taking chunks too
 * when it reaches a block's end before they are done.
 */
struct pipeline {
	struct model *model;
	struct model_view *view;
	struct ranker rankers[PIPELINE_MAX_THREADS];
	size_t threads;
	enum model_retrieval retrieval;
	size_t k;
	struct block blocks[PIPELINE_BLOCKS];
	uint64_t scored; /* blocks whose lists are tallied (the replay's own) */
	bool threaded;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* under the lock when threaded */
	uint64_t captured, handed, applied, prepared, searched;
	bool quit;
	int rc;
	char err[512];
	double wait_seconds; /* the replay waiting for the ranking threads */
};

static int grow_block(struct block *b, size_t k)
{
	size_t want = b->test_capacity ? 2 * b->test_capacity : 256;
	struct block_test *tests = realloc(b->tests, want * sizeof *tests);
	if (tests == NULL)
		return -1;
	b->tests = tests;
	struct topk_result *cold = realloc(b->cold, want * k * sizeof *cold);
	if (cold == NULL)
		return -1;
	b->cold = cold;
	b->test_capacity = want;
	return 0;
}

/* Makes room for block b's lists (the replay, before the hand-over). */
static int block_results_fit(struct block *b, size_t k, char *errstr, size_t errstr_size)
{
	size_t warm = b->batch.warm;

	if (warm <= b->results_capacity)
		return 0;
	free(b->results);
	free(b->counts);
	b->results = malloc(warm * k * sizeof *b->results);
	b->counts = malloc(warm * sizeof *b->counts);
	b->results_capacity = b->results && b->counts ? warm : 0;
	if (b->results_capacity == 0) {
		snprintf(errstr, errstr_size, "out of memory for %zu lists", warm);
		return -1;
	}
	return 0;
}

/* The index's upkeep before block b's searches: only when it has lists to
 * rank, as the plain replay prepares only for a warm user's list. */
static int prepare_block(struct pipeline *p, struct block *b, char *errstr, size_t errstr_size)
{
	if (p->retrieval == MODEL_RETRIEVAL_INDEX && b->batch.warm > 0)
		return model_view_prepare(p->view, errstr, errstr_size);
	return 0;
}

static size_t block_chunks(const struct block *b)
{
	return (b->batch.warm + BLOCK_CHUNK - 1) / BLOCK_CHUNK;
}

/* Ranks chunk c of block b's warm queries (any thread, its own searcher). */
static int rank_chunk(struct pipeline *p, struct block *b, struct model_searcher *searcher,
		      size_t c, char *errstr, size_t errstr_size)
{
	size_t first = c * BLOCK_CHUNK, k = p->k;
	size_t count = b->batch.warm - first < BLOCK_CHUNK ? b->batch.warm - first : BLOCK_CHUNK;

	return model_view_search(p->view, searcher, p->retrieval, &b->batch, first, count, NULL,
				 b->results + first * k, b->counts + first, errstr, errstr_size);
}

/* Block number n's place. */
static struct block *block_of(struct pipeline *p, uint64_t n)
{
	return &p->blocks[n % PIPELINE_BLOCKS];
}

/* Notes a failure (the first one wins); no chunk is taken after it. */
static void note_failure(struct pipeline *p, const char *errstr)
{
	struct block *b = block_of(p, p->searched);

	if (p->rc == 0) {
		p->rc = -1;
		snprintf(p->err, sizeof p->err, "%s", errstr);
	}
	b->chunks_done += b->chunk_count - b->next_chunk;
	b->next_chunk = b->chunk_count;
}

/* Whether block `searched` is handed over, its delta applied and the index prepared. */
static bool searchable(const struct pipeline *p)
{
	return p->searched < p->handed && p->prepared > p->searched;
}

/*
 * Takes chunks of the searchable block in turn until none is left (lock
 * held on entry and exit): the ranking thread, and the replay when it is
 * first at the block's end. Which thread ranks a chunk changes nothing: its
 * lists depend on its queries and the view alone.
 */
static void take_chunks(struct pipeline *p, struct model_searcher *searcher, double *seconds)
{
	struct block *b = block_of(p, p->searched);

	while (searchable(p) && b->next_chunk < b->chunk_count) {
		size_t c = b->next_chunk++;
		char err[512];
		pthread_mutex_unlock(&p->lock);
		double started = clock_monotonic_s();
		int rc = rank_chunk(p, b, searcher, c, err, sizeof err);
		*seconds += clock_monotonic_s() - started;
		pthread_mutex_lock(&p->lock);
		if (rc != 0)
			note_failure(p, err);
		b->chunks_done++;
		if (b->chunks_done == b->chunk_count)
			pthread_cond_broadcast(&p->cond);
	}
}

/* Runs step(p, b) for the lead ranking thread without the lock, timing it. */
static void lead_step(struct ranker *r, struct block *b,
		      int (*step)(struct pipeline *, struct block *, char *, size_t))
{
	struct pipeline *p = r->pipeline;
	char err[512];

	pthread_mutex_unlock(&p->lock);
	double started = clock_monotonic_s();
	int rc = step(p, b, err, sizeof err);
	r->seconds += clock_monotonic_s() - started;
	pthread_mutex_lock(&p->lock);
	if (rc != 0)
		note_failure(p, err);
}

static int apply_step(struct pipeline *p, struct block *b, char *errstr, size_t errstr_size)
{
	return model_view_apply(p->view, b->delta, errstr, errstr_size);
}

static void *ranking_main(void *arg)
{
	struct ranker *r = arg;
	struct pipeline *p = r->pipeline;
	bool lead = r == &p->rankers[1];

	pthread_mutex_lock(&p->lock);
	while (!p->quit) {
		struct block *b = block_of(p, p->searched);
		if (lead && p->applied < p->captured && p->applied == p->searched) {
			/* the view to the next block's start, ahead of its hand-over */
			lead_step(r, block_of(p, p->applied), apply_step);
			p->applied++;
		} else if (lead && p->searched < p->handed && p->applied > p->searched &&
			   p->prepared == p->searched) {
			lead_step(r, b, prepare_block);
			p->prepared++;
			pthread_cond_broadcast(&p->cond);
		} else if (searchable(p) && b->next_chunk < b->chunk_count) {
			take_chunks(p, r->searcher, &r->seconds);
		} else if (lead && searchable(p) && b->chunks_done == b->chunk_count) {
			p->searched++;
			pthread_cond_broadcast(&p->cond);
		} else {
			pthread_cond_wait(&p->cond, &p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Ends the ranking threads (every block searched, or on an error). */
static void pipeline_stop(struct pipeline *p)
{
	if (!p->threaded)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (size_t t = 1; t < p->threads; t++)
		if (p->rankers[t].started) {
			pthread_join(p->rankers[t].thread, NULL);
			p->rankers[t].started = false;
		}
}

static void pipeline_free(struct pipeline *p)
{
	pipeline_stop(p);
	if (p->threaded) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
	}
	for (int i = 0; i < PIPELINE_BLOCKS; i++) {
		struct block *b = &p->blocks[i];
		model_view_delta_free(b->delta);
		model_batch_free(&b->batch);
		free(b->tests);
		free(b->cold);
		free(b->results);
		free(b->counts);
	}
	for (size_t t = 0; t < p->threads; t++) {
		model_searcher_free(p->rankers[t].searcher);
		topk_free(p->rankers[t].topk);
	}
}

static int pipeline_init(struct pipeline *p, struct model *model, size_t k, unsigned threads,
			 char *errstr, size_t errstr_size)
{
	struct topk_config tc = {.max_batch = BLOCK_CHUNK, .max_k = k};

	memset(p, 0, sizeof *p);
	p->model = model;
	p->k = k;
	p->retrieval = model_config(model)->retrieval;
	p->threads = threads < 1 ? 1 : threads > PIPELINE_MAX_THREADS ? PIPELINE_MAX_THREADS : threads;
	for (size_t t = 0; t < p->threads; t++) {
		struct ranker *r = &p->rankers[t];
		r->pipeline = p;
		r->topk = topk_new(&tc, errstr, errstr_size);
		r->searcher = r->topk ? model_searcher_new(r->topk, errstr, errstr_size) : NULL;
		if (r->searcher == NULL)
			return -1;
	}
	p->view = model_view(model, true, errstr, errstr_size);
	if (p->view == NULL)
		return -1;
	/* a replay trains in line: its lists must not depend on the timing */
	model_view_train_aside(p->view, false);
	for (int i = 0; i < PIPELINE_BLOCKS; i++) {
		p->blocks[i].delta = model_view_delta_new();
		if (p->blocks[i].delta == NULL || grow_block(&p->blocks[i], k) != 0) {
			snprintf(errstr, errstr_size, "out of memory for evaluation");
			return -1;
		}
	}
	if (p->threads == 1)
		return 0;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		snprintf(errstr, errstr_size, "cannot set up the ranking threads");
		return -1;
	}
	if (pthread_cond_init(&p->cond, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		snprintf(errstr, errstr_size, "cannot set up the ranking threads");
		return -1;
	}
	p->threaded = true;
	for (size_t t = 1; t < p->threads; t++) {
		if (pthread_create(&p->rankers[t].thread, NULL, ranking_main, &p->rankers[t]) != 0) {
			snprintf(errstr, errstr_size, "cannot start ranking thread %zu of %zu", t,
				 p->threads - 1);
			return -1;
		}
		p->rankers[t].started = true;
	}
	return 0;
}

/* Seconds spent ranking on every thread (after pipeline_stop()). */
static double pipeline_rank_seconds(const struct pipeline *p)
{
	double seconds = 0;
	for (size_t t = 0; t < p->threads; t++)
		seconds += p->rankers[t].seconds;
	return seconds;
}

/* Waits for blocks [0, blocks) to be searched, taking chunks meanwhile. */
static int pipeline_wait(struct pipeline *p, uint64_t blocks, char *errstr, size_t errstr_size)
{
	int rc;

	if (!p->threaded)
		return 0;
	struct ranker *own = &p->rankers[0];
	double started = clock_monotonic_s(), helped = own->seconds;
	pthread_mutex_lock(&p->lock);
	while (p->searched < blocks) {
		take_chunks(p, own->searcher, &own->seconds);
		if (p->searched < blocks)
			pthread_cond_wait(&p->cond, &p->lock);
	}
	p->wait_seconds += clock_monotonic_s() - started - (own->seconds - helped);
	rc = p->rc;
	if (rc != 0)
		snprintf(errstr, errstr_size, "%s", p->err);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Hands the filled block over: ranked now with one thread, else by the
 * ranking threads. */
static int pipeline_hand_over(struct pipeline *p, char *errstr, size_t errstr_size)
{
	struct block *b = block_of(p, p->handed);

	if (block_results_fit(b, p->k, errstr, errstr_size) != 0)
		return -1;
	if (!p->threaded) {
		double started = clock_monotonic_s();
		int rc = model_view_apply(p->view, b->delta, errstr, errstr_size);
		if (rc == 0)
			rc = prepare_block(p, b, errstr, errstr_size);
		for (size_t c = 0; rc == 0 && c < block_chunks(b); c++)
			rc = rank_chunk(p, b, p->rankers[0].searcher, c, errstr, errstr_size);
		p->rankers[0].seconds += clock_monotonic_s() - started;
		p->searched = ++p->handed;
		return rc;
	}
	pthread_mutex_lock(&p->lock);
	b->chunk_count = block_chunks(b);
	/* after a failure no chunk is taken */
	b->next_chunk = b->chunks_done = p->rc != 0 ? b->chunk_count : 0;
	p->handed++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* Starts filling the next block: the item side as of now, no test yet. */
static int pipeline_begin_block(struct pipeline *p, char *errstr, size_t errstr_size)
{
	struct block *b = block_of(p, p->handed);

	b->test_count = 0;
	model_batch_begin(&b->batch, p->model, p->k);
	if (model_view_capture(p->model, b->delta, p->k, errstr, errstr_size) != 0)
		return -1;
	if (p->threaded) {
		pthread_mutex_lock(&p->lock);
		p->captured++;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	return 0;
}

/* Adds a test point's user (its query as of now) to the block being filled. */
static int pipeline_add(struct pipeline *p, uint32_t user, struct block_test test, char *errstr,
			size_t errstr_size)
{
	struct block *b = block_of(p, p->handed);
	size_t t = b->test_count;

	if (t == b->test_capacity && grow_block(b, p->k) != 0) {
		snprintf(errstr, errstr_size, "out of memory for evaluation");
		return -1;
	}
	int warm = model_batch_add(&b->batch, p->model, user, t, NULL, b->cold + t * p->k,
				   &test.cold_count, errstr, errstr_size);
	if (warm < 0)
		return -1;
	test.warm_slot = warm ? (uint32_t)(b->batch.warm - 1) : UINT32_MAX;
	b->tests[b->test_count++] = test;
	return 0;
}
/* Scores the next searched block's lists as the model's at its test points. */
static void score_block(struct pipeline *p, struct split_tally *ours, uint32_t *items)
{
	const struct block *b = block_of(p, p->scored++);
	size_t k = p->k;

	for (size_t t = 0; t < b->test_count; t++) {
		const struct block_test *test = &b->tests[t];
		bool warm = test->warm_slot != UINT32_MAX;
		const struct topk_result *list =
		    warm ? b->results + (size_t)test->warm_slot * k : b->cold + t * k;
		size_t n = warm ? b->counts[test->warm_slot] : test->cold_count;
		n = n < k ? n : k;
		for (size_t r = 0; r < n; r++)
			items[r] = list[r].item;
		split_list(ours, items, n, test->item, test->repeat, warm, test->new_item,
			   test->after_search);
	}
}

/* Scores the blocks before number `blocks` (once they are searched). */
static int pipeline_score(struct pipeline *p, uint64_t blocks, struct split_tally *ours,
			  uint32_t *items, char *errstr, size_t errstr_size)
{
	if (pipeline_wait(p, blocks, errstr, errstr_size) != 0)
		return -1;
	while (p->scored < blocks)
		score_block(p, ours, items);
	return 0;
}

/* At a block's end: it is handed over once the block whose place the next
 * one takes is scored. */
static int pipeline_boundary(struct pipeline *p, struct split_tally *ours, uint32_t *items,
			     char *errstr, size_t errstr_size)
{
	uint64_t reused = p->handed + 2 >= PIPELINE_BLOCKS ? p->handed + 2 - PIPELINE_BLOCKS : 0;

	if (pipeline_score(p, reused, ours, items, errstr, errstr_size) != 0)
		return -1;
	return pipeline_hand_over(p, errstr, errstr_size);
}

int prequential_run(struct model *model, struct topk *topk, const struct prequential_stream *stream,
		    const struct prequential_config *config, struct prequential_result *result,
		    char *errstr, size_t errstr_size)
{
	const struct model_config *mc = model_config(model);
	size_t k = config->k ? config->k : 20;
	uint64_t every = config->test_every ? config->test_every : 1, positives = 0;
	struct split_tally ours = {0}, popular = {0}, *arms = NULL;
	struct tally indexed = {0};
	struct pair_set seen = {0};
	struct both_totals both = {0};
	unsigned new_events = config->new_item_events ? config->new_item_events : 10;
	struct listrules_view rules_view =
	    config->rules ? *config->rules : (struct listrules_view){0};
	size_t fetch = k;
	if (config->rules != NULL &&
	    (rules_view.category_excluded != NULL || rules_view.max_per_category > 0 ||
	     rules_view.category_boost != NULL || rules_view.boost_item_count > 0))
		fetch = k * LISTRULES_FETCH_FACTOR > 1000 ? (k > 1000 ? k : 1000)
							  : k * LISTRULES_FETCH_FACTOR;
	struct split_tally ruled = {0};
	struct exposure_tally model_exposure = {0}, rules_exposure = {0};
	struct new_pool pool = {0};
	struct listrules_scratch scratch = {0};
	struct user_exclusions exclusions = {.model = model};
	struct topk_result *list = malloc(fetch * sizeof *list);
	struct topk_result *ruled_list = malloc(k * sizeof *ruled_list);
	uint8_t *rule_of = malloc(k);
	struct topk_result *index_list = malloc(k * sizeof *index_list);
	uint32_t *items = malloc(k * sizeof *items);
	uint8_t *content_given = NULL;
	uint8_t *searched = NULL; /* per user: searched since its last positive event */
	int rc = -1;
	double start = clock_monotonic_s();
	struct pipeline pipe_storage, *pipe = NULL;

	struct prequential_split *arm_results = result->arms;
	memset(result, 0, sizeof *result);
	result->arms = arm_results;
	ours.seg[SEG_ALL].listed = calloc(stream->item_total + 1, 1);
	popular.seg[SEG_ALL].listed = calloc(stream->item_total + 1, 1);
	indexed.listed = calloc(stream->item_total + 1, 1);
	arms = calloc(config->arm_count + 1, sizeof *arms);
	ruled.seg[SEG_ALL].listed = calloc(stream->item_total + 1, 1);
	model_exposure.shown_new = calloc(stream->item_total + 1, 1);
	rules_exposure.shown_new = calloc(stream->item_total + 1, 1);
	pool.items = malloc((stream->item_total + 1) * sizeof *pool.items);
	pool.position = malloc((stream->item_total + 1) * sizeof *pool.position);
	if (ruled.seg[SEG_ALL].listed == NULL || model_exposure.shown_new == NULL ||
	    rules_exposure.shown_new == NULL || pool.items == NULL || pool.position == NULL ||
	    ruled_list == NULL || rule_of == NULL) {
		snprintf(errstr, errstr_size, "out of memory for evaluation");
		goto out_free;
	}
	memset(pool.position, 0xff, (stream->item_total + 1) * sizeof *pool.position);
	if (list == NULL || index_list == NULL || items == NULL ||
	    ours.seg[SEG_ALL].listed == NULL || popular.seg[SEG_ALL].listed == NULL ||
	    indexed.listed == NULL || arms == NULL) {
		snprintf(errstr, errstr_size, "out of memory for evaluation");
		goto out_free;
	}
	if (stream->item_content != NULL && stream->content_dim > 0) {
		size_t users = 0;
		for (size_t e = 0; e < stream->count; e++)
			if ((size_t)stream->user[e] + 1 > users)
				users = (size_t)stream->user[e] + 1;
		content_given = calloc(stream->item_total + 1, 1);
		searched = calloc(users + 1, 1);
		if (content_given == NULL || searched == NULL) {
			snprintf(errstr, errstr_size, "out of memory for evaluation");
			goto out_free;
		}
	}
	for (size_t a = 0; a < config->arm_count; a++) {
		arms[a].seg[SEG_ALL].listed = calloc(stream->item_total + 1, 1);
		if (arms[a].seg[SEG_ALL].listed == NULL) {
			snprintf(errstr, errstr_size, "out of memory for evaluation");
			goto out_free;
		}
	}
	if (config->sync_every > 0) {
		if (config->both_engines || config->rules != NULL) {
			snprintf(errstr, errstr_size, "blocks of %zu events: not with %s",
				 config->sync_every,
				 config->both_engines ? "both engines side by side" : "list rules");
			goto out_free;
		}
		pipe = &pipe_storage;
		if (pipeline_init(pipe, model, k, config->threads, errstr, errstr_size) != 0 ||
		    pipeline_begin_block(pipe, errstr, errstr_size) != 0)
			goto out_free;
	}
	for (size_t e = 0; e < stream->count; e++) {
		uint32_t user = stream->user[e], item = stream->item[e];
		if (pipe != NULL && e > 0 && e % config->sync_every == 0 &&
		    (pipeline_boundary(pipe, &ours, items, errstr, errstr_size) != 0 ||
		     pipeline_begin_block(pipe, errstr, errstr_size) != 0))
			goto out_free;
		struct model_event event = {.user = user,
					    .item = item,
					    .user_hash = stream->user_hash[user],
					    .item_hash = stream->item_hash[item],
					    .type = (enum event_type)stream->type[e],
					    .ts_ms = stream->ts_ms[e]};
		if (item >= stream->item_total) {
			snprintf(errstr, errstr_size, "event %zu: item %u beyond catalogue of %zu",
				 e, item, stream->item_total);
			goto out_free;
		}
		if (stream->type[e] == EVENT_SEARCH) {
			/* a search: the query moves intent; nothing tested or learned */
			if (config->event_flags != NULL)
				config->event_flags[e] = 0;
			if (content_given == NULL || !stream->item_has_content[item])
				continue;
			result->searches++;
			searched[user] = 1;
			if (give_search(model, stream, user, item, errstr, errstr_size) != 0)
				goto out_free;
			for (size_t a = 0; a < config->arm_count; a++)
				if (give_search(config->arms[a].model, stream, user, item, errstr,
						errstr_size) != 0)
					goto out_free;
			continue;
		}
		if (content_given != NULL && !content_given[item] && stream->item_has_content[item]) {
			content_given[item] = 1;
			if (give_content(model, stream, item, errstr, errstr_size) != 0)
				goto out_free;
			for (size_t a = 0; a < config->arm_count; a++)
				if (give_content(config->arms[a].model, stream, item, errstr,
						 errstr_size) != 0)
					goto out_free;
		}
		bool test = e >= config->warmup && stream->type[e] < EVENT_TYPE_COUNT &&
			    mc->event_weight[stream->type[e]] > 0 && positives++ % every == 0;
		uint8_t flags = 0;
		if (test) {
			bool excluded = model_user_excludes(model, user, item);
			if (excluded) {
				result->skipped_excluded++;
				flags |= PREQUENTIAL_SKIPPED_EXCLUDED;
			} else {
				flags |= PREQUENTIAL_TESTED;
				size_t n;
				bool repeat = pair_contains(&seen, user, item);
				bool warm = model_user_has_history(model, user);
				bool new_item = model_item_count_of(model, item) < new_events;
				/* the user's first positive after a search */
				bool after_search = searched != NULL && searched[user];
				if (pipe != NULL) {
					struct block_test t = {.item = item,
							       .repeat = repeat,
							       .new_item = new_item,
							       .after_search = after_search};
					if (pipeline_add(pipe, user, t, errstr, errstr_size) != 0)
						goto out_free;
					n = 0; /* scored when its block is ranked */
				} else if (config->both_engines) {
					size_t index_n;
					if (rank_both(model, topk, user, k, list, &n, index_list,
						      &index_n, &both, errstr, errstr_size) != 0)
						goto out_free;
					for (size_t r = 0; r < index_n; r++)
						items[r] = index_list[r].item;
					tally_list(&indexed, items, index_n, item);
				} else if (model_recommend(model, topk, &user, 1, fetch, NULL, list,
							   &n, errstr, errstr_size) != 0)
					goto out_free;
				size_t fetched = n;
				n = n < k ? n : k;
				for (size_t r = 0; r < n; r++)
					items[r] = list[r].item;
				if (pipe == NULL) {
					split_list(&ours, items, n, item, repeat, warm, new_item,
						   after_search);
					tally_exposure(&model_exposure, model, items, n, new_events);
				}
				if (config->rules != NULL) {
					exclusions.user = user;
					rules_view.k = k;
					rules_view.explore_pool = pool.items;
					rules_view.explore_pool_count = pool.count;
					rules_view.user_excludes = excludes_item;
					rules_view.opaque = &exclusions;
					uint64_t seed = config->rules_seed ^
							((uint64_t)e * 0x9E3779B97F4A7C15ULL);
					size_t ruled_n =
					    listrules_apply(&rules_view, list, fetched, seed,
							    &scratch, ruled_list, rule_of);
					if (ruled_n == (size_t)-1) {
						snprintf(errstr, errstr_size,
							 "out of memory for evaluation");
						goto out_free;
					}
					for (size_t r = 0; r < ruled_n; r++)
						items[r] = ruled_list[r].item;
					split_list(&ruled, items, ruled_n, item, repeat, warm, new_item,
						   after_search);
					tally_exposure(&rules_exposure, model, items, ruled_n,
						       new_events);
				}
				n = model_popular(model, user, k, NULL, items);
				split_list(&popular, items, n, item, repeat, warm, new_item, after_search);
				for (size_t a = 0; a < config->arm_count; a++) {
					if (rank_arm(&config->arms[a], topk, user, k, list, items,
						     &n, errstr, errstr_size) != 0)
						goto out_free;
					split_list(&arms[a], items, n, item, repeat, warm, new_item,
						   after_search);
				}
			}
		}
		if (model_learn(model, &event, errstr, errstr_size) != 0)
			goto out_free;
		if (searched != NULL && stream->type[e] < EVENT_TYPE_COUNT &&
		    mc->event_weight[stream->type[e]] > 0)
			searched[user] = 0;
		pool_update(&pool, model, item, new_events);
		for (size_t a = 0; a < config->arm_count; a++)
			if (model_learn(config->arms[a].model, &event, errstr, errstr_size) != 0)
				goto out_free;
		if (stream->type[e] < EVENT_TYPE_COUNT && mc->event_weight[stream->type[e]] > 0 &&
		    pair_insert(&seen, user, item) != 0) {
			snprintf(errstr, errstr_size, "out of memory for evaluation");
			goto out_free;
		}
		if (config->event_flags != NULL) {
			if (model_user_excludes(model, user, item))
				flags |= PREQUENTIAL_EXCLUDES_ITEM;
			config->event_flags[e] = flags;
		}
	}
	if (pipe != NULL &&
	    (pipeline_boundary(pipe, &ours, items, errstr, errstr_size) != 0 ||
	     pipeline_score(pipe, pipe->handed, &ours, items, errstr, errstr_size) != 0))
		goto out_free;
	if (pipe != NULL) {
		pipeline_stop(pipe);
		for (size_t t = 0; t < pipe->threads; t++)
			model_view_collect(pipe->view, pipe->rankers[t].searcher);
		result->block_rank_seconds = pipeline_rank_seconds(pipe);
		result->block_wait_seconds = pipe->wait_seconds;
	}
	result->events = stream->count;
	split_scores(&ours, stream->item_total, &result->model_split);
	split_scores(&popular, stream->item_total, &result->popularity_split);
	result->model = result->model_split.all;
	result->popularity = result->popularity_split.all;
	for (size_t a = 0; a < config->arm_count && result->arms != NULL; a++)
		split_scores(&arms[a], stream->item_total, &result->arms[a]);
	split_scores(&ruled, stream->item_total, &result->rules_split);
	exposure_result(&model_exposure, &result->model_exposure);
	exposure_result(&rules_exposure, &result->rules_exposure);
	result->seconds = clock_monotonic_s() - start;
	result->events_per_s = result->seconds > 0 ? (double)stream->count / result->seconds : 0;
	if (config->both_engines) {
		double exact_alone = result->seconds - both.index_s;
		double index_alone = result->seconds - both.exact_s;
		tally_scores(&indexed, stream->item_total, &result->index);
		result->index_recall =
		    both.recall_count ? both.recall_sum / (double)both.recall_count : 1.0;
		result->exact_rank_seconds = both.exact_s;
		result->index_rank_seconds = both.index_s;
		result->exact_events_per_s =
		    exact_alone > 0 ? (double)stream->count / exact_alone : 0;
		result->index_events_per_s =
		    index_alone > 0 ? (double)stream->count / index_alone : 0;
	}
	rc = 0;
out_free:
	if (pipe != NULL)
		pipeline_free(pipe);
	free(ruled.seg[SEG_ALL].listed);
	free(model_exposure.shown_new);
	free(rules_exposure.shown_new);
	free(pool.items);
	free(pool.position);
	free(ruled_list);
	free(rule_of);
	listrules_scratch_free(&scratch);
	free(list);
	free(index_list);
	free(items);
	free(indexed.listed);
	free(ours.seg[SEG_ALL].listed);
	free(popular.seg[SEG_ALL].listed);
	for (size_t a = 0; arms != NULL && a < config->arm_count; a++)
		free(arms[a].seg[SEG_ALL].listed);
	free(arms);
	free(seen.slot);
	free(content_given);
	free(searched);
	return rc;
}
