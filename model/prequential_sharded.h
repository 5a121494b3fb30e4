/*
 * prequential_sharded: what scale-out costs in accuracy, measured offline.
 *
 * Replays a stream test-then-train, as prequential.c does, through N models
 * at once the way N instances of a consumer group learn it: a user's events
 * go to the shard its id hashes to (as a keyed topic's partitions go to
 * instances), each shard ranks and learns only its users' events, and every
 * sync_every events each shard's item changes are folded into every other
 * shard (model_share_take() / model_share_fold(), as scaleout.item_updates_topic
 * does). Co-visitation, popularity and trending stay each shard's own, as in
 * the daemon. One shard is the single instance, so the same function gives
 * both sides of the comparison on the same test points.
 *
 * Test points: events of a positive weight other than VIEW (clicks, carts,
 * favourites, purchases), every test_every-th, after the warm-up, whose item
 * the user has not excluded; a hit when the item is in the owning shard's
 * top k (the exact engine).
 */
#ifndef STREAMREC_PREQUENTIAL_SHARDED_H
#define STREAMREC_PREQUENTIAL_SHARDED_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "prequential.h"

struct prequential_sharded_config {
	size_t shards;       /**< 1: one instance */
	uint64_t sync_every; /**< events between item exchanges; 0: never exchange */
	size_t k;
	uint64_t test_every;
	uint64_t warmup;
};

struct prequential_sharded_result {
	uint64_t tests, hits;
	double hit_rate;
	uint64_t exchanged; /**< item changes folded into other shards */
};

/** @returns 0, or -1 with errstr filled. */
int prequential_sharded_run(const struct model_config *model_config,
			    const struct prequential_stream *stream,
			    const struct prequential_sharded_config *config,
			    struct prequential_sharded_result *result, char *errstr,
			    size_t errstr_size);

#endif
