/*
 * embedpool: texts embedded by the bundled model (model/textembed.h) on
 * worker threads, so that the event loop never spends tens of milliseconds
 * on one text (README, "Text embeddings (bundled model)").
 *
 * A text is known by its kind (an item's passage or a search query) and its
 * exact bytes (the key is their 64-bit XXH3 hash; the text itself is
 * compared too, so a hash collision costs nothing but a second entry). The
 * loop submits a text; a worker embeds it with the same textembed call as
 * the synchronous path (textembed_passage() or textembed_query(), never the
 * batched call), so a vector is bit for bit the one the loop would have
 * computed; the loop takes the vector when the message that needs it is
 * delivered again.
 *
 * Memory is bounded: at most max_texts entries, queued, being embedded, or
 * done and not taken yet, each with its own copy of the text and, once done,
 * its vector (dim floats). A text waited for, submitted to a full pool,
 * evicts the oldest done entry nobody waits for (a look-ahead's); otherwise
 * a submission to a full pool is refused: the caller holds its message and
 * submits again later.
 *
 * Owners: every entry carries the caller's 64-bit owner tag (ingest: its
 * partition); embedpool_drop_owner() forgets an owner's entries at once (a
 * revoked partition), a text being embedded is discarded when done.
 *
 * Threads: every function but notify is for one thread (the loop's); the
 * workers call notify (from their own threads) each time a text is done.
 * One mutex guards the entries; the model is shared without a lock
 * (textembed calls are reentrant). embedpool_free() cancels what is queued
 * and joins the workers, each after at most the text it is embedding.
 */
#ifndef STREAMREC_EMBEDPOOL_H
#define STREAMREC_EMBEDPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "textembed.h"

/** What a text is to the model: its prefix ("passage: " or "query: "). */
enum embedpool_kind { EMBEDPOOL_PASSAGE, EMBEDPOOL_QUERY };

/** Where a text stands in the pool (embedpool_state()). */
enum embedpool_state {
	EMBEDPOOL_ABSENT,  /**< never submitted, taken, dropped or evicted */
	EMBEDPOOL_PENDING, /**< queued or being embedded */
	EMBEDPOOL_DONE     /**< its vector (or its failure) waits to be taken */
};

struct embedpool_config {
	struct textembed *model; /**< borrowed; outlives the pool */
	unsigned threads;        /**< workers, at least 1 */
	size_t max_texts;        /**< entries kept at most (queued, running, done); at least 1 */
	/** Called from a worker thread after each text is done; may be NULL. */
	void (*notify)(void *opaque);
	void *notify_opaque;
};

struct embedpool;

/**
 * @brief Start the workers.
 * @returns the pool (release with embedpool_free()), or NULL with errstr filled.
 */
struct embedpool *embedpool_new(const struct embedpool_config *config, char *errstr,
				size_t errstr_size);

/**
 * @brief Queue text (copied) for embedding, unless the pool already has it.
 * wanted: a held message waits for it (it is not evicted; it stays until
 * taken or dropped); a look-ahead submits with wanted false. An entry
 * already there becomes wanted when asked so.
 * @returns 1 queued, 0 already pending or done, -1 refused (the pool is
 * full: of texts waited for or in progress, or for a look-ahead of anything;
 * or out of memory).
 */
int embedpool_submit(struct embedpool *pool, enum embedpool_kind kind, const char *text,
		     uint64_t owner, bool wanted);

/** @returns where text stands (ABSENT, PENDING or DONE). */
enum embedpool_state embedpool_state(struct embedpool *pool, enum embedpool_kind kind,
				     const char *text);

/**
 * @brief Take a done text's vector out of the pool (the entry goes).
 * @returns 1 with *vector set: a malloc'd vector of the model's dimension
 * for the caller to free, or NULL when the model refused the text; 0 when
 * the text is not done (pending or absent; *vector untouched).
 */
int embedpool_take(struct embedpool *pool, enum embedpool_kind kind, const char *text,
		   float **vector);

/** @brief Forget owner's entries: queued and done ones now, one being embedded when done. */
void embedpool_drop_owner(struct embedpool *pool, uint64_t owner);

/** @brief Forget one text as embedpool_drop_owner() does (its held message was revoked). */
void embedpool_drop(struct embedpool *pool, enum embedpool_kind kind, const char *text);

/** @returns the texts queued or being embedded (the streamrec_text_embed_queue gauge). */
size_t embedpool_pending(struct embedpool *pool);

/** @returns the texts embedded so far and the seconds the workers spent on them, summed. */
uint64_t embedpool_embedded(struct embedpool *pool, double *seconds);

/** @brief Cancel what is queued, join the workers, free everything; NULL is allowed. */
void embedpool_free(struct embedpool *pool);

#endif
