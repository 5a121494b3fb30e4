/*
 * refresh: the refresh scheduler and the making of each published list.
 *
 * Learning marks a user (refresher_mark) with the event time of its newest
 * event; refresher_run() takes up to refresh.batch marked users not
 * refreshed within refresh.min_interval_ms, newest mark first: under
 * overload the newest activity is served first and a user's list reflects
 * its newest event when it is made; a mark that waited beyond
 * refresh.staleness_target_ms is deferred (streamrec_refresh_deferred_total)
 * to a second lane served, newest first too, whenever no recent mark is
 * due. So overload leaves a measured backlog of the longest-deferred for
 * later instead of aging every list (a FIFO once held fifteen seconds of
 * lists while learning kept up).
 *
 * A run groups its users by the variant their id hashes to (model/assign),
 * computes their lists through the variant's engine (exact top-k, the
 * index, or the popularity control arm), and hands each list to the
 * publish callback. For a share of the index engine's users
 * (refresh.shadow_share, at most 16 a round, so that no round waits long
 * for it) the exact engine computes the same lists too and the index's
 * recall@k against it is exported (streamrec_index_recall). The index
 * retrains aside (model_view_train_aside): no round waits for its cells.
 * Kept between runs: the two lanes, each user's newest trigger time and
 * last refresh, the listable-item flags per variant, and each user's last
 * published list (id, items, explanations), for counting A/B hits and for
 * the lookup API's thread (daemon/lists.h), handed to the state after each
 * round (refresher_save_lists), written with its next commit and restored at
 * start, and the one before
 * it (id and items) for hits that name it.
 *
 * Every published list gets an id (16 hex digits: splitmix64 of a counter
 * seeded per refresher, so ids never repeat within an instance) and every
 * item an explanation (model_explain(), computed when the list is
 * published, on the loop's thread; the control arm's items are "popular").
 * Before that, each list goes through its variant's list rules
 * (model/listrules.h; README, "List rules"), read from the running
 * configuration when the list is published, so a reload applies at the
 * next list: the engine ranks listrules_fetch() candidates, and the rules,
 * with the catalogue's categories and the user's exclusions read on the
 * loop's thread, make the published k; an item a rule placed is explained
 * by the rule (pinned, explore, boosted).
 *
 * Users are held by their stable index (what survives cache eviction and
 * restarts); their model slots are pinned in the state's user cache for
 * the time their list is computed (state_user_pin), in sub-batches of at
 * most state_user_pin_capacity() users, so no lookup can hand one user's
 * slot to another while a list is made: a bounded cache smaller than a
 * batch once published users each other's lists.
 *
 * Nothing here knows Kafka: the publish callback gets a plain struct
 * recommendation (encoding and sending are the daemon's), so the scheduler
 * runs in a unit test on a real state with no broker.
 *
 * Threads: one thread (the loop's) calls every function; the state,
 * catalogue, metrics and experiment it borrows are used on that thread
 * only. With refresh.threads workers, a round is prepared on the loop's
 * thread (due users taken, the item view synced, each user's query copied
 * while its slot is pinned; cold users' and the control arm's lists made
 * at once), ranked by the workers while the loop goes on learning, and
 * published by the loop's thread when the workers are done (the notify
 * callback says so). Two rounds overlap: the run that finds a round ranked
 * takes in its lists, prepares and hands out the next round, and only then
 * publishes the ranked one, while the workers rank the next. The ownership
 * rule is model.h's (Lists on other threads): while a round is out its
 * views and queries are the workers'; the loop touches only what the
 * pool's mutex guards (a ranked round's lists are copies: publishing them
 * reads no view). So lists rank against the item side as of their round's
 * start, and learning never waits for a list. With no workers the round
 * runs inside refresher_run().
 */
#ifndef STREAMREC_REFRESH_H
#define STREAMREC_REFRESH_H

#include <stddef.h>
#include <stdint.h>

#include "assign.h"
#include "catalog.h"
#include "codec.h"
#include "config.h"
#include "event.h"
#include "experiment.h"
#include "metrics.h"
#include "model.h"
#include "state.h"
#include "topk.h"

/**
 * @brief Publish one list: encode and send it. rec and its strings are valid
 * during the call only. @returns 0; REFRESH_PUBLISH_LATER with errstr filled
 * when it cannot be taken now (the producer's queue full): the user is due
 * again and a later round makes and sends its list; or -1 with errstr filled
 * (refused: logged as not published, and the user's next event tries again).
 */
#define REFRESH_PUBLISH_LATER 1
typedef int (*refresh_publish_fn)(const struct recommendation *rec, void *opaque, char *errstr,
				  size_t errstr_size);

struct refresh_config {
	struct state *state;     /**< borrowed */
	struct topk *topk;       /**< borrowed */
	struct catalog *catalog; /**< borrowed: which items are listed */
	struct metrics *metrics; /**< borrowed: lists, freshness, hits */
	/** Borrowed, read at each run: refresh.batch, min_interval_ms,
	 * min_item_events, refresh.interval_ms, experiment.salt, each
	 * variant's k and policy (a reload may change the values, not the
	 * struct's address). */
	const struct config *config;
	const struct assign_variant *variants; /**< borrowed, variant_count of them */
	size_t variant_count;
	refresh_publish_fn publish;
	void *opaque;
	/** Borrowed, or NULL: every published list is an exposure of its user to
	 * its variant, every hit a hit of that variant (daemon/experiment). */
	struct experiment *experiment;
	/** Worker threads ranking lists (refresh.threads); 0: on the caller's. */
	size_t threads;
	/** The workers' nice increment over the process (refresh.nice, 0..19). */
	unsigned nice;
	/** Called on a worker thread when a round's lists are ranked (must be
	 * thread-safe: the daemon sends an ev_async); NULL: nobody is told. */
	void (*notify)(void *opaque);
	void *notify_opaque;
};

struct refresher;

/** @returns a refresher, or NULL with errstr filled (out of memory). */
struct refresher *refresher_new(const struct refresh_config *config, char *errstr,
				size_t errstr_size);

void refresher_free(struct refresher *refresher);

/**
 * @brief Queue a user for a refresh (once however often marked), keeping the
 * newest event time as the list's trigger; now_ms (wall clock) is when the
 * mark was made, which the staleness target is measured from.
 * @returns 0, or -1 when out of memory.
 */
int refresher_mark(struct refresher *refresher, uint32_t stable, int64_t trigger_ts_ms,
		   int64_t now_ms);

/**
 * @brief Publishes the round the workers finished, if any, and hands out
 * no new one: afterwards no round is out (refresher_busy() false).
 * @returns the users whose lists were published (0: none finished), or -1.
 */
long refresher_harvest(struct refresher *refresher, char *errstr, size_t errstr_size);

/**
 * @brief Whether learning is behind its input (the daemon tells before each
 * refresher_run()): a round then takes up to refresh.batch_behind users
 * instead of refresh.batch, so the rows moved since the last round are placed
 * in the index once for more lists.
 */
void refresher_set_behind(struct refresher *refresher, bool behind);

/** @returns whether a round is out with the workers (not yet published). */
bool refresher_busy(struct refresher *refresher);

/** @brief Blocks until the round out with the workers is ranked (shutdown, tests). */
void refresher_wait(struct refresher *refresher);

/**
 * @brief Forget a user (embedding life cycle: it was removed from the
 * state, and its stable index may go to another user): its mark, its
 * place in the lanes, its refresh times and its published lists. Call it
 * only while no round is out (refresher_busy() false): a round's users
 * are published by stable index.
 */
void refresher_forget(struct refresher *refresher, uint32_t stable);

/** @returns the users waiting for a refresh. */
size_t refresher_pending(const struct refresher *refresher);

/**
 * @brief Starts the next round with up to one batch of due users (with no
 * workers, ranks and publishes it at once). With a round out with the
 * workers: nothing until they finished it; then the next round is handed
 * out first and the finished one published while they rank it.
 * @param now_ms wall-clock time (min_interval and the listable cache's age)
 * @returns how many users were published (a finished round), or else taken
 * (0: nothing to do until users fall due or the workers finish), or -1 with
 * errstr filled on a fatal error (out of memory); a list that could not be
 * computed or published is logged and skipped.
 */
long refresher_run(struct refresher *refresher, int64_t now_ms, char *errstr,
		   size_t errstr_size);

/**
 * @brief A/B hits: a click, add-to-cart or purchase of an item of the list
 * the event came from counts for that list's variant, by type, by rank and
 * by attribution (README, "Hit attribution"). An event naming its list
 * (list_id not NULL) is attributed to that list ("exposed") when it is one
 * of the user's two last published lists, and otherwise counted as
 * naming an unknown list (metrics hits_unknown_list_total) and nothing else:
 * it is never re-attributed to another list. An event naming no list is
 * attributed to the user's last published list ("last_list"). The last
 * lists are kept in the state (refresher_save_lists), so after a restart a
 * hit on a user's last list counts too; the one before it does not survive
 * a restart.
 */
void refresher_count_hit(struct refresher *refresher, uint32_t stable, const char *item_id,
			 enum event_type type, const char *list_id);

/** A user's last published list (borrowed: valid until the next refresher call). */
struct refresh_list {
	size_t variant;
	size_t count;
	int64_t generated_at_ms, trigger_ts_ms;
	const struct topk_result *items; /**< item indices and scores, best first */
	char list_id[17];                /**< as published: 16 hex digits */
};

/**
 * @brief The list last published for a user (the lookup API), restored
 * from the state after a restart.
 * @returns true with *out filled, false when none was published.
 */
bool refresher_last_list(const struct refresher *refresher, uint32_t stable,
			 struct refresh_list *out);

/**
 * @brief Hand the lists published since the last call to the state
 * (state_put_list), to be written with its next commit: only changed lists,
 * one record of 30 + 13·k bytes plus the variant's name and the user's id each.
 * Each round's publishing calls it for its own lists; the commit for any left.
 * @returns how many were handed over.
 */
int refresher_save_lists(struct refresher *refresher);

/**
 * @brief At start, before consuming: builds the item index of every variant
 * ranked by the index engine over the items the state holds (at 1M items
 * several seconds of one core), so that the first round does not hold its
 * lists for it and the daemon is ready only once it can rank. Logs each.
 * @returns the indexes built, or -1 with errstr filled.
 */
long refresher_build_indexes(struct refresher *refresher, char *errstr, size_t errstr_size);

/**
 * @brief At start: every user's last published list from the state, so the
 * lookup API and A/B hit counting go on where they stopped. A stored list
 * of a variant no longer configured, or naming an item the state lacks, is
 * skipped (counted in *skipped when not NULL).
 * @returns the lists restored, or -1 with errstr filled.
 */
long refresher_restore_lists(struct refresher *refresher, size_t *skipped, char *errstr,
			     size_t errstr_size);

struct lists;

/**
 * @returns the users' last published lists (owned by the refresher), for the
 * lookup API's thread to read (daemon/lists.h says how).
 */
struct lists *refresher_lists(struct refresher *refresher);

/**
 * @brief Why the item at rank (0-based) of a user's last published list is
 * there (model.h, Explanations); *because_item is UINT32_MAX when no recent
 * item is behind it. @returns false when there is no such list or rank.
 */
bool refresher_last_explanation(const struct refresher *refresher, uint32_t stable, size_t rank,
				enum model_reason *reason, uint32_t *because_item);

/**
 * @brief After the state removed items (embedding life cycle): the kept
 * lists (lookup API, the state's copy) drop them and forget their ids, and
 * every list that changed is saved with the commit that removes them. An
 * item that takes a freed index later is then never shown by the removed
 * item's id. @returns 0, or -1 when out of memory.
 */
int refresher_forget_removed_items(struct refresher *refresher);

/** @brief The catalogue or min_item_events changed: recompute the listable flags. */
void refresher_listing_changed(struct refresher *refresher);

#endif
