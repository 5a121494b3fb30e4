/*
 * status: the daemon's live status for people: /status.json (per variant:
 * freshness percentiles, throughput and hit rate over the last minute) and
 * /status, a self-contained HTML page (no external scripts, styles or fonts)
 * that polls the JSON every 2 s and renders it.
 *
 * "Live" figures come from the difference between the metrics now and a
 * snapshot about STATUS_WINDOW_S seconds old: status_tick() takes a snapshot
 * each second from the loop's timer, into a ring. The loop thread owns it.
 */
#ifndef STREAMREC_STATUS_H
#define STREAMREC_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/** Seconds the live figures cover (at most; less right after the start). */
#define STATUS_WINDOW_S 60

struct status;

/** @returns a status for metrics (borrowed), or NULL when out of memory. */
struct status *status_new(const struct metrics *metrics);
void status_free(struct status *status);

/** @brief Snapshot the metrics if a second has passed since the last one. */
void status_tick(struct status *status, double now_s);

/**
 * @brief Render /status.json.
 * @param out receives a malloc'd, NUL-terminated JSON text.
 * @returns 0, or -1 when out of memory.
 */
int status_render_json(const struct status *status, double now_s, char **out, size_t *len);

/** The /status page, a constant NUL-terminated HTML text. */
extern const char status_page_html[];

#endif
