/*
 * status: the daemon's live status for people: /status.json (per variant:
 * freshness percentiles, throughput and hit rate over the last minute, and
 * the same per STATUS_HISTORY_STEP_S over the last hour) and /status, a
 * self-contained HTML page (no external scripts, styles or fonts) that polls
 * the JSON and /experiment.json every 2 s and renders them: the live table,
 * inline SVG charts of the last hour, and the A/B experiment's figures.
 *
 * "Live" figures come from the difference between the metrics now and a
 * snapshot about STATUS_WINDOW_S seconds old: status_tick() takes a snapshot
 * each second from the loop's timer, into a ring. The history is a second
 * ring of STATUS_HISTORY_POINTS points, each the figures of one step (the
 * difference between the snapshots at its two ends, so a percentile is the
 * step's own, not the hour's); the step under way is rendered as a last,
 * partial point. A percentile in the histogram's +Inf bucket is never a
 * number: it is null with "<p>_clipped": true, and the page shows it as
 * "> <last bound> s". The loop thread owns both rings.
 *
 * Memory: about 5 kB per second snapshot (61 of them) and 0.7 kB per history
 * point (121), about 0.4 MB in all, allocated once by status_new().
 */
#ifndef STREAMREC_STATUS_H
#define STREAMREC_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/** Seconds the live figures cover (at most; less right after the start). */
#define STATUS_WINDOW_S 60

/** Seconds one point of the history covers, and how many points it keeps
 * (an hour's worth, plus the step under way). */
#define STATUS_HISTORY_STEP_S 30
#define STATUS_HISTORY_S      3600
#define STATUS_HISTORY_POINTS (STATUS_HISTORY_S / STATUS_HISTORY_STEP_S)

struct status;

/** @returns a status for metrics (borrowed), or NULL when out of memory. */
struct status *status_new(const struct metrics *metrics);
void status_free(struct status *status);

/**
 * @brief Snapshot the metrics if a second has passed since the last one, and
 * close a history point if STATUS_HISTORY_STEP_S have passed since the last
 * one closed (a loop that stalled longer gives one longer point, never
 * invented ones).
 */
void status_tick(struct status *status, double now_s);

/**
 * @brief Render /status.json: the live figures and "history": {"step_s",
 * "span_s", "now_s", "points": [{"start_s", "end_s", "partial", "variants": [{"lists", "hits",
 * "hit_rate", "p50_ms", "p50_clipped", "p99_ms", "p99_clipped"}, ...]}]},
 * oldest first, points ending within the last STATUS_HISTORY_S only; times
 * are those given to status_tick() (the loop's clock, Unix seconds).
 * @param out receives a malloc'd, NUL-terminated JSON text.
 * @returns 0, or -1 when out of memory.
 */
int status_render_json(const struct status *status, double now_s, char **out, size_t *len);

/** The /status page, a constant NUL-terminated HTML text. */
extern const char status_page_html[];

#endif
