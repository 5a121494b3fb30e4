/*
 * listrules: a variant's list rules, applied to a ranked list after
 * scoring and before it is published (README, "List rules").
 *
 *   exclude_categories  items of these categories never appear;
 *   max_per_category    at most this many items of one category (0: no cap);
 *   boost               item:ID=DELTA or category:NAME=DELTA: DELTA is added
 *                       to the fused score of the candidates it names, which
 *                       are then ranked again (additive, in score units: the
 *                       fused score is a log-odds and may be negative, so a
 *                       multiplier would push negative scores down);
 *   pin                 ID@RANK: the item at that rank (1-based);
 *   explore_share       a share of the k slots (rounded, at least one when
 *                       the share is above 0) given to new items: items with
 *                       fewer than explore_max_events positive events.
 *
 * Order, for one list of k: pins go first, at their ranks, when the item
 * may be shown at all (listable, not excluded for the user, not in an
 * excluded category; never twice); they count towards their category's cap
 * but are never dropped by it. Then each exploration slot (slot j of e at
 * rank floor((j + 1)·k / (e + 1)), 0-based, or the next free one) takes a
 * new item drawn uniformly from the caller's pool (and still new by the
 * caller's still_new, when the pool is a cache) with a generator seeded
 * per list (the same list id, the same draws): uniform rather than by the
 * model's score, because a new item's score rests on the few events the
 * exploration is there to collect; ranking new items by it would show the
 * same few and starve the rest. A drawn item must pass the same checks as a
 * pin and the cap; with no such item the slot falls to the ranking. Then
 * the remaining ranks take the candidates in boosted-score order, skipping
 * excluded categories, full categories, excluded and already placed items.
 * Ranks left empty (too few candidates) close up, so the list is shorter.
 *
 * What placed an item is its rule (enum listrules_rule), which the
 * explanations show: pinned, explore, boosted (a ranked item whose score a
 * boost changed), or none.
 *
 * model/ knows nothing of the catalogue: the caller resolves names to its
 * item and category indices (struct listrules_view). Memory: a scratch of
 * 12 bytes per candidate and 8 per listed item, kept between lists.
 * Threads: listrules_apply() reads the view only and writes the scratch:
 * one scratch per thread.
 */
#ifndef STREAMREC_LISTRULES_H
#define STREAMREC_LISTRULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topk.h"

#define LISTRULES_NO_CATEGORY UINT32_MAX
#define LISTRULES_NO_ITEM     UINT32_MAX
/** Entries of one list key (categories, boosts, pins) at most. */
#define LISTRULES_MAX_ENTRIES 256
/** Candidates ranked per list when filtering rules are on: this many times k. */
#define LISTRULES_FETCH_FACTOR 4

/** What placed a listed item. Kept in 4 bits of a stored list's reason byte. */
enum listrules_rule {
	LISTRULES_RANKED = 0, /**< the ranking alone */
	LISTRULES_BOOSTED,    /**< ranked, with a boost in its score */
	LISTRULES_PINNED,
	LISTRULES_EXPLORE,
	LISTRULES_RULE_COUNT
};

/** @returns the explanation's reason for a rule ("boosted", "pinned", "explore"), NULL for ranked.
 */
const char *listrules_rule_name(enum listrules_rule rule);

struct listrules_boost {
	bool category; /**< false: name is an item id */
	char *name;
	float delta;
};

struct listrules_pin {
	char *item;
	unsigned rank; /**< 1-based */
};

/** The rules as configured, by name. A zeroed struct has no rules. */
struct listrules {
	char **exclude_categories;
	size_t exclude_count;
	unsigned max_per_category;
	struct listrules_boost *boosts;
	size_t boost_count;
	struct listrules_pin *pins;
	size_t pin_count;
	double explore_share;        /**< [0, 1] */
	unsigned explore_max_events; /**< an item with fewer positive events is new */
};

/**
 * @brief Parse "NAME, NAME, ..." into rules->exclude_categories (replacing
 * them). Blanks around names are dropped; an empty text is no category.
 * @returns 0, or -1 with why naming the entry (empty, repeated, too many).
 */
int listrules_parse_categories(struct listrules *rules, const char *text, char *why,
			       size_t why_size);

/**
 * @brief Parse "item:ID=DELTA, category:NAME=DELTA, ..." into rules->boosts
 * (DELTA a finite number from -1000 to 1000, the last '=' separates it).
 * @returns 0, or -1 with why naming the entry and what is wrong.
 */
int listrules_parse_boosts(struct listrules *rules, const char *text, char *why, size_t why_size);

/**
 * @brief Parse "ID@RANK, ..." into rules->pins (RANK from 1 to 1000, the last
 * '@' separates it; one item per rank, one rank per item).
 * @returns 0, or -1 with why naming the entry and what is wrong.
 */
int listrules_parse_pins(struct listrules *rules, const char *text, char *why, size_t why_size);

/** @brief Checks the rules against the list length k (pins within it). @returns 0 or -1 with why.
 */
int listrules_check(const struct listrules *rules, size_t k, char *why, size_t why_size);

/** @brief Frees what the parse functions allocated and zeroes the struct. */
void listrules_clear(struct listrules *rules);

/** @returns whether any rule is set. */
bool listrules_any(const struct listrules *rules);

/**
 * @returns how many candidates to rank for a list of k so that the rules
 * still fill it: k, or LISTRULES_FETCH_FACTOR·k when categories are
 * excluded or capped or scores boosted (a boost re-ranks only what was
 * fetched), at most max.
 */
size_t listrules_fetch(const struct listrules *rules, size_t k, size_t max);

/** @returns the exploration slots of a list of k (see above). */
size_t listrules_explore_slots(const struct listrules *rules, size_t k);

/** The rules resolved to the caller's indices, for one or more lists. */
struct listrules_view {
	size_t k;
	/** per item (item_count of them): its category index, or LISTRULES_NO_CATEGORY */
	const uint32_t *item_category;
	size_t item_count;
	/** per category index (category_count): excluded (1) and boost; either may be NULL */
	const uint8_t *category_excluded;
	const float *category_boost;
	size_t category_count;
	/** boosted items, sorted ascending, and their deltas */
	const uint32_t *boost_items;
	const float *boost_deltas;
	size_t boost_item_count;
	/** pinned items (LISTRULES_NO_ITEM: not known, skipped) at 0-based ranks */
	const uint32_t *pin_items;
	const size_t *pin_ranks;
	size_t pin_count;
	unsigned max_per_category;
	size_t explore_slots;
	/** the new items exploration draws from; the pool may be older than the
	 * list (a cache), so a drawn item must also pass still_new (NULL: the
	 * pool is current) */
	const uint32_t *explore_pool;
	size_t explore_pool_count;
	bool (*still_new)(uint32_t item, void *opaque);
	/** items that may be listed at all (eligible_count flags); NULL: all */
	const uint8_t *eligible;
	size_t eligible_count;
	/** the user's exclusions (bought items, ...); NULL: none */
	bool (*user_excludes)(uint32_t item, void *opaque);
	void *opaque;
};

/** Storage of the names listrules_resolve() resolved; zeroed to start. */
struct listrules_resolved {
	uint8_t *category_excluded;
	float *category_boost;
	size_t excluded_capacity, boost_capacity;
	uint32_t *boost_items, *pin_items;
	float *boost_deltas;
	size_t *pin_ranks;
	size_t boost_items_capacity, pin_items_capacity, boost_deltas_capacity, pin_ranks_capacity;
};

/** Finds a name's index; LISTRULES_NO_ITEM (= LISTRULES_NO_CATEGORY) when unknown. */
typedef uint32_t (*listrules_find_fn)(const char *name, void *opaque);

/** The first name listrules_resolve() could not find. */
struct listrules_unknown {
	const char *key;  /**< "exclude_categories", "boost" or "pin"; NULL: every name found */
	const char *kind; /**< "category" or "item" */
	const char *name;
};

/**
 * @brief Resolves rules for lists of k into view: its category flags and
 * boosts (categories below category_count), boosted items (sorted), pins,
 * cap and exploration slots, in r's storage (valid until the next call).
 * The caller sets the rest (item categories, eligibility, the pool, the
 * user's exclusions). A name the finders do not know matches nothing (an
 * unknown pin is skipped); unknown, when not NULL, gets the first.
 * @returns 0, or -1 when out of memory.
 */
int listrules_resolve(const struct listrules *rules, size_t k, size_t category_count,
		      listrules_find_fn find_item, listrules_find_fn find_category, void *opaque,
		      struct listrules_resolved *r, struct listrules_view *view,
		      struct listrules_unknown *unknown);

void listrules_resolved_free(struct listrules_resolved *r);

/** Scratch of listrules_apply(); zeroed to start, listrules_scratch_free() after. */
struct listrules_scratch {
	struct topk_result *ranked;
	uint8_t *boosted;
	uint32_t *order;
	size_t ranked_capacity, boosted_capacity, order_capacity;
	uint32_t *categories, *category_counts; /* the list's categories so far */
	size_t categories_capacity, counts_capacity;
};

void listrules_scratch_free(struct listrules_scratch *scratch);

/**
 * @brief Applies the rules to candidates (best first, as ranked) into out
 * (room for view->k) and rule (the rule that placed each, enum
 * listrules_rule). Scores: a ranked item's is its score plus its boost; a
 * pinned or explored item's is its candidate score when it was a
 * candidate, else 0 (placed, not ranked).
 * @returns the list's length, or (size_t)-1 when out of memory.
 */
size_t listrules_apply(const struct listrules_view *view, const struct topk_result *candidates,
		       size_t candidate_count, uint64_t seed, struct listrules_scratch *scratch,
		       struct topk_result *out, uint8_t *rule);

#endif
