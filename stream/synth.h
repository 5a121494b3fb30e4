/*
 * synth: a deterministic synthetic e-commerce event stream with planted
 * structure, for tests, benchmarks and demos that must show what each of
 * the model's signals is worth.
 *
 * The world (built once from the seed by synth_new()):
 * - items: `items` of them, dealt evenly to `clusters` taste categories in
 *   a seeded random order; within a cluster, item popularity is Zipf with
 *   exponent `zipf_exponent` over a random ranking;
 * - successors: every item has `successors` distinct successor items, each
 *   from the item's own cluster with probability `successor_same_cluster`,
 *   otherwise from any other cluster, uniformly (so successors carry
 *   information popularity does not);
 * - users: each has one main cluster (uniform), a second taste cluster with
 *   probability `second_cluster_user_share`, and an activity level
 *   (log-normal, mean 1, spread `activity_sigma`).
 *
 * The stream (synth_generate()): every user alternates sessions and pauses.
 * A session has `session_min_events`..`session_max_events` events (uniform)
 * and a cluster: with probability `intent_session_share` a uniformly random
 * cluster other than the user's main one (short-term intent), otherwise the
 * user's taste (the second cluster with probability
 * `second_cluster_session_share` when the user has one, else the main one);
 * with a single cluster every session is in it.
 * The session's first item is a popularity draw from its cluster; every next
 * item is, with probability `successor_prob`, a uniform pick among the
 * previous item's successors, otherwise a popularity draw from the session's
 * cluster; neither ever repeats the previous item. Event types are drawn
 * from `type_share`; right after an ADD_TO_CART, the next event is instead
 * a PURCHASE of the same item with probability `purchase_after_cart`, or a
 * REMOVE_FROM_CART of it with probability `remove_after_cart` (so an event
 * on the same item as the one before is always one of these two).
 *
 * Structures that the held-out real streams showed (all off by default,
 * so the default stream is unchanged):
 * - drift (`drift_period_events` > 0): every that many events, each
 *   cluster's popularity ranking turns by 61.8% of the cluster's size
 *   (item at rank r takes the popularity of rank r + shift, modulo the
 *   size), so the all-time counts point at yesterday's items and only a
 *   time-decayed count follows;
 * - repeats (`repeat_prob`): a session's next item is, with this
 *   probability, a re-view of one of the user's last 4 distinct items
 *   (never the previous one), before any other rule;
 * - pairs in both orders (`successor_reverse_share`): when the next item
 *   comes from the successor structure, with this probability it is a
 *   predecessor of the previous item (an item whose successors include it)
 *   instead of a successor, so the pair (a, b) shows up as "b after a" and
 *   as "a after b", and counting one direction sees half of it;
 * - short sessions: `session_min_events` = `session_max_events` = 1 or 2
 *   with many users gives streams of one or two events a user;
 * - new items keep arriving (`arrival_share` > 0): that share of each
 *   cluster's items (never its two most popular) is not on sale at the
 *   start; they launch one at a time at evenly spaced events through the
 *   stream, in a seeded random order. An item not launched yet is never
 *   drawn (a popularity draw draws again, a successor step becomes a
 *   popularity draw); once launched it is drawn like any other item of its
 *   rank. synth_item_launch() tells when.
 *
 * Time: the stream's mean gap between consecutive events is `mean_gap_ms`
 * (within a few percent). Gaps within a session lie in [w/4, 4w] with mean
 * about w = session_gap_ms; a pause is at least 8w. A user of activity a
 * should make a share a/users of the events; busy users cannot pause less
 * than 8w, so the others pause less than their share would say, and when
 * users are too few for the rate even with minimum pauses, w itself is
 * lowered (then synth_session_split_ms() reports it). So a gap of more than
 * synth_session_split_ms() (6w) between two events of one user always
 * separates two sessions, and a shorter one never does. Events of all users
 * are interleaved in time order (ties: lower user index first).
 *
 * Ids are "u<index>" and "i<index>", interned in index order before any
 * event, so user and item indexes in the log are the world's indexes and
 * user_count/item_count equal the configured sizes (an item may have no
 * event). item_category is the item's cluster, user_cluster the user's main
 * cluster.
 *
 * Same configuration, same seed, same build: the same log, bit for bit.
 * Time is O(events * log users); memory O(users + items * successors) for
 * the world, plus the log's 17 bytes per event.
 */
#ifndef STREAMREC_SYNTH_H
#define STREAMREC_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "eventlog.h"

struct synth_config {
	/** Default 1. */
	uint64_t seed;
	/** Default 10000. */
	uint32_t users;
	/** Default 5000; at least 2 per cluster. */
	uint32_t items;
	/** Taste categories, default 20. */
	uint32_t clusters;
	/** Default 1000000. */
	size_t events;
	/** Time of the stream's start, default 1700000000000 (2023-11-14). */
	int64_t start_ms;
	/** Mean gap between consecutive events of the whole stream, default 20. */
	double mean_gap_ms;
	/** Mean gap within a session, default 30000 (lowered when users are too few, see above). */
	double session_gap_ms;
	/** Events per session, uniform between these; default 2 and 15. */
	uint32_t session_min_events, session_max_events;
	/** Sessions in a random cluster other than the main one, default 0.3. */
	double intent_session_share;
	/** Users with a second taste cluster, default 0.25. */
	double second_cluster_user_share;
	/** Share of those users' taste sessions in the second cluster, default 0.3. */
	double second_cluster_session_share;
	/** Successors per item, default 4; below the smallest cluster's size. */
	uint32_t successors;
	/** Share of successors in the item's own cluster, default 0.9. */
	double successor_same_cluster;
	/** Probability that the next item is a successor of the previous one, default 0.5. */
	double successor_prob;
	/** Share of successor steps taken backwards (to a predecessor), default 0. */
	double successor_reverse_share;
	/** Probability that a session's next item re-views one of the user's last items, default 0. */
	double repeat_prob;
	/** Share of items launched during the stream instead of at its start; default 0. */
	double arrival_share;
	/** Events between two turns of every cluster's popularity ranking; 0 (default): no drift. */
	size_t drift_period_events;
	/** Zipf exponent of popularity within a cluster, default 1.0. */
	double zipf_exponent;
	/** Log-normal spread (sigma) of user activity, default 1.0. */
	double activity_sigma;
	/**
	 * Mix of drawn event types (normalised; need not sum to 1). Default
	 * IMPRESSION .40, VIEW .35, CLICK .14, ADD_TO_CART .05, REMOVE_FROM_CART 0,
	 * FAVORITE .05, PURCHASE .01; forced purchases and removals after a cart
	 * come on top (about .013 and .004 of all events by default).
	 */
	double type_share[EVENT_TYPE_COUNT];
	/** Probability of a PURCHASE of the item right after its ADD_TO_CART, default 0.3. */
	double purchase_after_cart;
	/** Probability of a REMOVE_FROM_CART of it instead, default 0.1. */
	double remove_after_cart;
};

struct synth;

/** @returns the default configuration (see struct synth_config). */
struct synth_config synth_config_default(void);

/**
 * @brief Check a configuration: sizes, probabilities, session bounds.
 * @returns 0, or -1 with errstr naming the field and its value.
 */
int synth_config_check(const struct synth_config *config, char *errstr, size_t errstr_size);

/**
 * @brief Build the world (clusters, popularity, successors, users) from the seed.
 * @returns the generator, or NULL with errstr filled (bad configuration, out of memory).
 */
struct synth *synth_new(const struct synth_config *config, char *errstr, size_t errstr_size);

/** @brief Free the generator; NULL is allowed. */
void synth_free(struct synth *synth);

/**
 * @brief Generate the configured number of events into a new log, in time
 * order. Every call gives the same log.
 * @returns 0 with *out set (the caller frees it with eventlog_free()), or -1 with errstr filled.
 */
int synth_generate(struct synth *synth, struct event_log **out, char *errstr, size_t errstr_size);

/** @returns the configuration the generator was built with. */
const struct synth_config *synth_config(const struct synth *synth);

/** @returns item's successor list (config->successors entries, item indexes); item must be < items.
 */
const uint32_t *synth_item_successors(const struct synth *synth, uint32_t item);

/** @returns the event (index into the generated log) from which item may be drawn; 0: from the
 * start. */
size_t synth_item_launch(const struct synth *synth, uint32_t item);

/** @returns user's second taste cluster, or EVENTLOG_NONE when it has none. */
uint32_t synth_user_second_cluster(const struct synth *synth, uint32_t user);

/**
 * @returns the gap, in ms, that separates sessions: two consecutive events of
 * one user belong to one session exactly when their gap is at most this.
 */
int64_t synth_session_split_ms(const struct synth *synth);

#endif
