/*
 * ingest: the input side of streamrecd. The consumer's callbacks decode
 * each message (bad input goes to the dead-letter topic, its log lines
 * rate-limited per reason), learn it in every variant, count A/B hits and
 * mark the user for a refresh; catalogue records (the items topic) set
 * listing and categories. Item texts and search queries without a vector
 * are embedded by the text threads (daemon/embedpool.h), their message held
 * meanwhile (its partition paused, its offset unmarked) and delivered again
 * when the vector is ready; content.text_threads 0 embeds them on the loop.
 * The commit timer writes the changed state and the
 * consumed offsets in one batch and commits the Kafka offsets only once that
 * batch is durable and every dead letter before it is delivered.
 *
 * Threads: the loop's only (librdkafka's callbacks arrive through the
 * consumer's queue on the loop).
 */
#ifndef STREAMREC_INGEST_H
#define STREAMREC_INGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"

/**
 * @brief Create the producer and the consumer ([kafka] properties for
 * both, then each role's own section on top) with the callbacks below.
 * @returns 0, or -1 with errstr filled.
 */
int ingest_connect(struct daemon *d, char *errstr, size_t errstr_size);

/** @brief Start the commit timer. */
void ingest_start(struct daemon *d);

/** @brief Stop the commit timer and the text threads' wakeup. */
void ingest_stop(struct daemon *d);

/**
 * @brief Join the text threads (content.text_threads; a text being embedded
 * is finished, queued ones are cancelled) and free what ingest_connect()
 * made for them. After the consumers are closed: the held messages were
 * never marked, so the next start reads them again.
 */
void ingest_free(struct daemon *d);

/**
 * @brief Commit now: state and offsets to the writer thread; with wait, until
 * durable and the Kafka offsets committed. Without wait (the timer), a
 * commit that would wait for the previous write, still going, is put off.
 * @returns 0, 1 when put off (only without wait), or -1 after daemon_fail()
 * (or when a fatal error already stopped the daemon).
 */
int ingest_commit(struct daemon *d, bool wait);

/**
 * @brief A user left the state (embedding life cycle, or a changelog
 * tombstone): what the daemon keeps by its stable index (refresh marks and
 * lists, A/B exposure, pre-exposure activity, changelog placement) goes too,
 * before the index can be handed out again. Only while no refresh round is
 * out (ingest_refresh_idle()).
 */
void ingest_forget_user(struct daemon *d, uint32_t stable);

/**
 * @brief Waits for the refresh round out with the workers, if any, and
 * publishes it. @returns 0, or -1 with errstr filled.
 */
int ingest_refresh_idle(struct daemon *d, char *errstr, size_t errstr_size);

/** @brief Log the dead-letter lines held back by the rate limit in windows that ended. */
void ingest_log_suppressed(struct daemon *d);

/** How long lists wait at the start for the catalogue to be read to its end. */
#define CATALOGUE_WAIT_S 60

/**
 * @brief Ends the start's wait for the catalogue (d->catalogue_loading):
 * complete when it was read to its end, else the wait was given up (logged
 * as a warning). Lists are made from then on.
 */
void ingest_catalogue_loaded(struct daemon *d, bool complete);

#endif
