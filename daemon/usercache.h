/*
 * usercache: which users' rows are in the models' memory, in which slot, and
 * the rows of changed users evicted since the last commit.
 *
 * A user is known by its stable index (what the ids family stores); the
 * models hold its row in a slot. With a bound (max_slots > 0), giving a slot
 * to a user who has none evicts another one by a CLOCK sweep. A pinned slot
 * is never evicted: a caller that holds several slots at once (a refresh
 * batch) pins them first, and takes no more users at once than
 * usercache_pin_capacity(). Evicting a changed (dirty) user never writes to
 * the store as a side effect: its rows are serialised (model_export_user)
 * into the pending buffer, which the next commit batch includes and from
 * which a user met again is restored first. The bound counts the slots; the
 * pending buffer holds at most the rows changed within one commit interval
 * and is reported by usercache_pending_bytes(). A slot freed by
 * usercache_drop() or usercache_forget() is reused before a new one is made,
 * so users that come and go keep the slots (and the models' rows) flat.
 *
 * Not thread-safe: one thread (the state's caller) owns the cache and the
 * models' user rows.
 */
#ifndef STREAMREC_USERCACHE_H
#define STREAMREC_USERCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define USERCACHE_NONE UINT32_MAX

struct usercache;

/**
 * @brief A cache over variant_count models (borrowed: they must outlive the
 * cache), holding at most max_slots users (0: no bound).
 * @returns the cache, or NULL when out of memory.
 */
struct usercache *usercache_new(struct model *const *models, size_t variant_count,
				size_t max_slots);

void usercache_free(struct usercache *cache);

/** @returns the bytes one cached user takes: each variant's user record, the
 * id map entry and the cache's own maps. */
size_t usercache_user_bytes(struct model *const *models, size_t variant_count);

/** @returns the slots a memory bound allows: bytes / usercache_user_bytes(), at least 1. */
size_t usercache_slots_for_bytes(struct model *const *models, size_t variant_count, size_t bytes);

/** @returns the bound in slots (0: none). */
size_t usercache_max_slots(const struct usercache *cache);

/** @brief Change the bound (0: none); slots already made beyond it are kept. */
void usercache_set_max_slots(struct usercache *cache, size_t max_slots);

/** @returns the slots in use (resident users). */
size_t usercache_slot_count(const struct usercache *cache);

/** @returns the slot of stable, or USERCACHE_NONE when not in memory. */
uint32_t usercache_slot_of(const struct usercache *cache, uint32_t stable);

/** @returns the stable index of the user in slot, or USERCACHE_NONE. */
uint32_t usercache_user_of(const struct usercache *cache, uint32_t slot);

/**
 * @brief A slot for stable: its own when resident (*placed false), else a
 * new or evicted one now holding stable (*placed true; the caller restores
 * the user's rows into it). Eviction skips pinned slots; a dirty victim's
 * rows go to the pending buffer.
 * @returns 0, or -1 with errstr filled (out of memory, every slot pinned).
 */
int usercache_place(struct usercache *cache, uint32_t stable, uint32_t *slot, bool *placed,
		    char *errstr, size_t errstr_size);

/** @brief Undo usercache_place() of stable after its restore failed. */
void usercache_drop(struct usercache *cache, uint32_t stable);

/**
 * @brief Forget stable for good (embedding life cycle: it expired or was
 * evicted from the state): its slot, when resident, is freed for reuse
 * (pinned or not) and its pending rows are discarded, so the next commit
 * writes nothing of it.
 */
void usercache_forget(struct usercache *cache, uint32_t stable);

/** @returns how many slots may be pinned at once (SIZE_MAX without a bound). */
size_t usercache_pin_capacity(const struct usercache *cache);

/** @brief Pin a resident slot: no eviction takes it until usercache_unpin_all(). */
void usercache_pin(struct usercache *cache, uint32_t slot);

void usercache_unpin_all(struct usercache *cache);

/** @returns true when slot is pinned. */
bool usercache_pinned(const struct usercache *cache, uint32_t slot);

/**
 * @brief The pending row of stable in variant, evicted since the last
 * usercache_pending_clear(): 1 with row and len set (valid until the next
 * call that evicts or clears), 0 when none is pending.
 * A user evicted before it had a row in a variant has none pending there
 * (*len 0 is never returned).
 */
int usercache_pending_row(const struct usercache *cache, uint32_t stable, size_t variant,
			  const void **row, size_t *len);

/** @returns true when rows of stable are pending. */
bool usercache_has_pending(const struct usercache *cache, uint32_t stable);

/**
 * @brief Calls fn for the newest pending row of each user and variant, in
 * eviction order; fn returns 0 to go on.
 * @returns 0, or the nonzero value fn returned to stop.
 */
int usercache_pending_foreach(const struct usercache *cache,
			      int (*fn)(uint32_t stable, size_t variant, const void *row,
					size_t len, void *ctx),
			      void *ctx);

/** @brief Forget every pending row (they are in a commit batch now). */
void usercache_pending_clear(struct usercache *cache);

/** @returns the bytes the pending rows take. */
size_t usercache_pending_bytes(const struct usercache *cache);

#endif
