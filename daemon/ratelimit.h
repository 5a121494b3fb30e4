/*
 * ratelimit: at most `burst` log lines per key in each window of `window_s`
 * seconds, and an exact count of the lines held back, so a bad producer at
 * 10k messages/s cannot flood the journal while the metrics stay exact.
 *
 * Keys are small integers (a dead-letter reason). A key's window opens with
 * its first line and lasts window_s; lines past the burst are counted, not
 * logged. The count of a window that has ended is handed out once, by
 * ratelimit_allow() when the key's next line opens a new window or by
 * ratelimit_take_suppressed() from a timer, whichever comes first, so the
 * caller can log "N more <reason> suppressed".
 *
 * Time is passed in (seconds, any monotonic origin) so tests can drive it.
 * No locking: one thread owns a ratelimit.
 */
#ifndef STREAMREC_RATELIMIT_H
#define STREAMREC_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/**
 * @brief A limiter of `burst` (>= 1) lines per window of `window_s` (> 0)
 * seconds for each of keys 0 .. key_count-1.
 * @returns the limiter, or NULL with errstr filled.
 */
struct ratelimit *ratelimit_new(size_t key_count, double window_s, unsigned burst, char *errstr,
				size_t errstr_size);

void ratelimit_free(struct ratelimit *rl);

/**
 * @brief Whether one more line for `key` may be logged at now_s; when not, it
 * is counted as suppressed.
 * @param suppressed receives the not yet reported count of the key's previous
 * window when this line opens a new one (log it first), else 0.
 * @returns true to log the line. A key out of range is always allowed.
 */
bool ratelimit_allow(struct ratelimit *rl, size_t key, double now_s, uint64_t *suppressed);

/**
 * @brief The lines suppressed in `key`'s window if that window has ended by
 * now_s; each count is returned once. Call from a timer for every key.
 * @returns the count, or 0 (window still open, nothing suppressed, key out of range).
 */
uint64_t ratelimit_take_suppressed(struct ratelimit *rl, size_t key, double now_s);

#endif
