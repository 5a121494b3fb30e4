/*
 * publish: the refresh's turns on the loop and the sending of lists.
 *
 * Refreshes run on the loop's idle turns, one batch per turn, alternating
 * with the consumer's batches: under load the queue grows between turns and
 * batches fill up (the matrix products get cheaper per user); when idle, a
 * user is refreshed at once. A time credit caps refreshing while events
 * wait (refresh.max_busy_share), so learning keeps up; the refresh timer
 * restarts the idle watcher when it stopped. Each list is encoded in
 * output.framing and sent to output.topic, keyed by user.
 *
 * Threads: the loop's only.
 */
#ifndef STREAMREC_PUBLISH_H
#define STREAMREC_PUBLISH_H

#include <stddef.h>

#include "daemon.h"

/** @brief refresh_publish_fn: encode rec and send it (opaque: the daemon). */
int publish_recommendation(const struct recommendation *rec, void *opaque, char *errstr,
			   size_t errstr_size);

/** @brief Arm the refresh timer and the idle watcher. */
void publish_start(struct daemon *d);

/** @brief The refresher's notify (any thread): a round's lists are ranked. */
void publish_notify(void *opaque);

/** @brief A user was marked: make sure a refresh turn comes. */
void publish_wake(struct daemon *d);

/** @brief Stop the timer and the idle watcher. */
void publish_stop(struct daemon *d);

/** @brief At shutdown: refresh and publish every user still due. */
void publish_drain(struct daemon *d);

#endif
