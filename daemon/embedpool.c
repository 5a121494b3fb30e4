/*
 * embedpool: worker threads embedding texts for the loop (embedpool.h).
 *
 * The entries are one fixed array of max_texts slots (a few hundred: a
 * linear scan costs nothing beside the tens of milliseconds a text takes),
 * each with a sequence number: workers take the oldest queued entry a held
 * message waits for first, then the oldest look-ahead; a text waited for
 * evicts the oldest done look-ahead (a look-ahead evicts nothing: it would
 * evict the texts the same partition needs next).
 */
#include "embedpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "clock.h"
#include "errstr.h"

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct slot {
	enum slot_state state;
	enum embedpool_kind kind;
	bool wanted;
	bool discard; /* dropped while being embedded: freed when done */
	uint64_t hash, owner, seq;
	char *text;
	float *vector; /* DONE: the vector, or NULL when the model refused the text */
};

struct embedpool {
	struct textembed *model;
	void (*notify)(void *opaque);
	void *notify_opaque;
	pthread_mutex_t lock;
	pthread_cond_t work; /* a slot was queued, or stopping */
	struct slot *slots;
	size_t slot_count;
	uint64_t next_seq;
	size_t pending; /* queued or running, discarded ones included */
	uint64_t embedded;
	double embed_seconds;
	bool stopping;
	pthread_t *threads;
	unsigned thread_count;
};

static void slot_clear(struct slot *s)
{
	free(s->text);
	free(s->vector);
	memset(s, 0, sizeof *s);
}

/* The slot holding kind/text, or NULL. Under the lock. */
static struct slot *find(struct embedpool *pool, enum embedpool_kind kind, const char *text,
			 uint64_t hash)
{
	for (size_t i = 0; i < pool->slot_count; i++) {
		struct slot *s = &pool->slots[i];
		if (s->state != SLOT_FREE && !s->discard && s->kind == kind && s->hash == hash &&
		    strcmp(s->text, text) == 0)
			return s;
	}
	return NULL;
}

/* A free slot, with evict the oldest done entry nobody waits for if need be; or NULL. */
static struct slot *free_slot(struct embedpool *pool, bool evict)
{
	struct slot *oldest = NULL;
	for (size_t i = 0; i < pool->slot_count; i++) {
		struct slot *s = &pool->slots[i];
		if (s->state == SLOT_FREE)
			return s;
		if (s->state == SLOT_DONE && !s->wanted && (oldest == NULL || s->seq < oldest->seq))
			oldest = s;
	}
	if (oldest == NULL || !evict)
		return NULL;
	slot_clear(oldest);
	return oldest;
}

static uint64_t text_hash(const char *text)
{
	return XXH3_64bits(text, strlen(text));
}

static void *worker(void *opaque)
{
	struct embedpool *pool = opaque;
	unsigned dim = textembed_dim(pool->model);
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct slot *next = NULL;
		for (size_t i = 0; i < pool->slot_count; i++) {
			struct slot *s = &pool->slots[i];
			if (s->state == SLOT_QUEUED &&
			    (next == NULL || s->wanted > next->wanted ||
			     (s->wanted == next->wanted && s->seq < next->seq)))
				next = s;
		}
		if (pool->stopping)
			break;
		if (next == NULL) {
			pthread_cond_wait(&pool->work, &pool->lock);
			continue;
		}
		next->state = SLOT_RUNNING;
		/* the text stays while the slot runs: dropping only marks it */
		const char *text = next->text;
		enum embedpool_kind kind = next->kind;
		pthread_mutex_unlock(&pool->lock);

		double started = clock_monotonic_s();
		float *vector = malloc(dim * sizeof *vector);
		int rc = -1;
		if (vector != NULL)
			rc = kind == EMBEDPOOL_QUERY ? textembed_query(pool->model, text, vector)
						     : textembed_passage(pool->model, text, vector);
		if (rc != 0) {
			free(vector);
			vector = NULL;
		}
		double seconds = clock_monotonic_s() - started;

		pthread_mutex_lock(&pool->lock);
		pool->pending--;
		pool->embedded++;
		pool->embed_seconds += seconds;
		if (next->discard) {
			free(vector);
			slot_clear(next);
		} else {
			next->state = SLOT_DONE;
			next->vector = vector;
			next->seq = pool->next_seq++;
		}
		pthread_mutex_unlock(&pool->lock);
		if (pool->notify != NULL)
			pool->notify(pool->notify_opaque);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

struct embedpool *embedpool_new(const struct embedpool_config *config, char *errstr,
				size_t errstr_size)
{
	if (config->model == NULL || config->threads == 0 || config->max_texts == 0) {
		set_errstr(errstr, errstr_size,
			   "text embedding pool: a model, threads and max_texts are required");
		return NULL;
	}
	struct embedpool *pool = calloc(1, sizeof *pool);
	if (pool == NULL)
		goto out_oom;
	pool->model = config->model;
	pool->notify = config->notify;
	pool->notify_opaque = config->notify_opaque;
	pool->slot_count = config->max_texts;
	pool->slots = calloc(pool->slot_count, sizeof *pool->slots);
	pool->threads = calloc(config->threads, sizeof *pool->threads);
	if (pool->slots == NULL || pool->threads == NULL)
		goto out_free;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->work, NULL);
	for (; pool->thread_count < config->threads; pool->thread_count++) {
		int rc = pthread_create(&pool->threads[pool->thread_count], NULL, worker, pool);
		if (rc != 0) {
			set_errstr(errstr, errstr_size, "text embedding pool: thread %u of %u: %s",
				   pool->thread_count + 1, config->threads, strerror(rc));
			embedpool_free(pool);
			return NULL;
		}
	}
	return pool;

out_free:
	free(pool->threads);
	free(pool->slots);
	free(pool);
out_oom:
	set_errstr(errstr, errstr_size, "text embedding pool: out of memory");
	return NULL;
}

int embedpool_submit(struct embedpool *pool, enum embedpool_kind kind, const char *text,
		     uint64_t owner, bool wanted)
{
	uint64_t hash = text_hash(text);
	int rc = -1;
	pthread_mutex_lock(&pool->lock);
	struct slot *s = find(pool, kind, text, hash);
	if (s != NULL) {
		s->wanted = s->wanted || wanted;
		rc = 0;
		goto out_unlock;
	}
	s = free_slot(pool, wanted);
	if (s == NULL)
		goto out_unlock;
	s->text = strdup(text);
	if (s->text == NULL)
		goto out_unlock;
	s->state = SLOT_QUEUED;
	s->kind = kind;
	s->wanted = wanted;
	s->hash = hash;
	s->owner = owner;
	s->seq = pool->next_seq++;
	pool->pending++;
	pthread_cond_signal(&pool->work);
	rc = 1;
out_unlock:
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

enum embedpool_state embedpool_state(struct embedpool *pool, enum embedpool_kind kind,
				     const char *text)
{
	uint64_t hash = text_hash(text);
	pthread_mutex_lock(&pool->lock);
	struct slot *s = find(pool, kind, text, hash);
	enum embedpool_state state = s == NULL               ? EMBEDPOOL_ABSENT
				     : s->state == SLOT_DONE ? EMBEDPOOL_DONE
							     : EMBEDPOOL_PENDING;
	pthread_mutex_unlock(&pool->lock);
	return state;
}

int embedpool_take(struct embedpool *pool, enum embedpool_kind kind, const char *text,
		   float **vector)
{
	uint64_t hash = text_hash(text);
	int rc = 0;
	pthread_mutex_lock(&pool->lock);
	struct slot *s = find(pool, kind, text, hash);
	if (s != NULL && s->state == SLOT_DONE) {
		*vector = s->vector;
		s->vector = NULL;
		slot_clear(s);
		rc = 1;
	}
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

/* Forgets a slot: at once, or when done if it is being embedded. Under the lock. */
static void drop_slot(struct embedpool *pool, struct slot *s)
{
	if (s->state == SLOT_RUNNING) {
		s->discard = true;
		return;
	}
	if (s->state == SLOT_QUEUED)
		pool->pending--;
	slot_clear(s);
}

void embedpool_drop_owner(struct embedpool *pool, uint64_t owner)
{
	pthread_mutex_lock(&pool->lock);
	for (size_t i = 0; i < pool->slot_count; i++)
		if (pool->slots[i].state != SLOT_FREE && pool->slots[i].owner == owner)
			drop_slot(pool, &pool->slots[i]);
	pthread_mutex_unlock(&pool->lock);
}

void embedpool_drop(struct embedpool *pool, enum embedpool_kind kind, const char *text)
{
	uint64_t hash = text_hash(text);
	pthread_mutex_lock(&pool->lock);
	struct slot *s = find(pool, kind, text, hash);
	if (s != NULL)
		drop_slot(pool, s);
	pthread_mutex_unlock(&pool->lock);
}

size_t embedpool_pending(struct embedpool *pool)
{
	pthread_mutex_lock(&pool->lock);
	size_t pending = pool->pending;
	pthread_mutex_unlock(&pool->lock);
	return pending;
}

uint64_t embedpool_embedded(struct embedpool *pool, double *seconds)
{
	pthread_mutex_lock(&pool->lock);
	uint64_t embedded = pool->embedded;
	*seconds = pool->embed_seconds;
	pthread_mutex_unlock(&pool->lock);
	return embedded;
}

void embedpool_free(struct embedpool *pool)
{
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned t = 0; t < pool->thread_count; t++)
		pthread_join(pool->threads[t], NULL);
	for (size_t i = 0; i < pool->slot_count; i++)
		slot_clear(&pool->slots[i]);
	pthread_cond_destroy(&pool->work);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool->slots);
	free(pool);
}
