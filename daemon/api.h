/*
 * api: the lookup API, GET /v1/recommendations/{user}, on a thread of its own.
 *
 * The API has its own address (api.listen), so the metrics port stays
 * internal, and its own thread with its own libev loop and HTTP server
 * (daemon/http.h, kept-alive connections, bounded, idle timeout): an answer
 * never waits behind the event loop's work (a consumer wake-up may learn for
 * 5 ms, a commit copies every changed row), which would otherwise be every
 * lookup's latency under load. It reads the users' lists through
 * daemon/lists.h, under that module's read lock; it touches nothing else of
 * the daemon. Also served there: /healthz.
 *
 * Threads: api_start() and api_stop() on the daemon's thread; everything in
 * between on the API's.
 */
#ifndef STREAMREC_API_H
#define STREAMREC_API_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "lists.h"

/** The route's prefix; the user id follows, percent-encoded. */
#define API_RECOMMENDATIONS_PATH "/v1/recommendations/"

struct api;

/**
 * @brief Bind config->listen (errors name config->key, or "api.listen") and start serving
 * `lists` (borrowed: it must outlive api_stop()) on a new thread.
 * @returns the API, or NULL with errstr filled.
 */
struct api *api_start(const struct http_config *config, struct lists *lists, char *errstr,
		      size_t errstr_size);

/** @brief Stop the thread, close every connection and the socket, free. NULL is allowed. */
void api_stop(struct api *api);

/** @returns the bound port (useful after asking for port 0). */
uint16_t api_port(const struct api *api);

/**
 * @brief The API thread's scheduling: SCHED_FIFO at priority (1..99), or
 * normal (SCHED_OTHER) for 0 (api.realtime_priority). Called on the daemon's
 * thread. @returns 0, or -1 with errstr naming the key and what the process
 * lacks.
 */
int api_set_priority(struct api *api, unsigned priority, char *errstr, size_t errstr_size);

#endif
