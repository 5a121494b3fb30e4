/*
 * wakeup: a librdkafka queue served from a libev loop (STYLE rule 3).
 *
 * librdkafka writes one byte to a non-blocking pipe when an element lands on
 * the queue while it is empty; an ev_io watcher on the pipe empties it and
 * calls the owner's serve() (zero-timeout polls, within the owner's bounds).
 * Because the pipe is only written on an empty -> non-empty transition, a
 * serve() that stops at its bound would strand what is left, so after each
 * serve() an ev_idle watcher runs while the queue is not empty. The consumer
 * and the producer both use it.
 */
#ifndef STREAMREC_WAKEUP_H
#define STREAMREC_WAKEUP_H

#include <stddef.h>

#include <ev.h>
#include <librdkafka/rdkafka.h>

struct wakeup {
	struct ev_loop *loop;
	rd_kafka_queue_t *queue;
	ev_io pipe_watcher;
	ev_idle backlog_watcher;
	int pipe_fds[2];
	void (*serve)(void *opaque);
	void *opaque;
};

/**
 * @brief Tie queue (borrowed: the caller destroys it after wakeup_detach)
 * to loop; nothing is served before wakeup_start().
 * @returns 0, or -1 with errstr filled (no pipe).
 */
int wakeup_attach(struct wakeup *wakeup, struct ev_loop *loop, rd_kafka_queue_t *queue,
		  void (*serve)(void *opaque), void *opaque, char *errstr, size_t errstr_size);

/** @brief Start serving; whatever was queued before is served on the next iteration. */
void wakeup_start(struct wakeup *wakeup);

/** @brief Stop serving, untie the queue and close the pipe. */
void wakeup_detach(struct wakeup *wakeup);

#endif
