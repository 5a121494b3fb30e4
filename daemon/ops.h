/*
 * ops: operating streamrecd. Readiness (/readyz, READY=1), the watchdog
 * timer (WATCHDOG=1, STATUS=, the status page's ticks), the HTTP routes,
 * and the signals: TERM/INT stop gracefully (a second INT exits at once),
 * HUP reloads the configuration through each changed key's apply step,
 * USR1 writes a consistent checkpoint of the state.
 *
 * Threads: the loop's only (signals arrive as ev_signal watchers).
 */
#ifndef STREAMREC_OPS_H
#define STREAMREC_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"

/** @returns true when ready to serve: no fatal error, broker up, partitions assigned. */
bool ops_ready(void *opaque, char *reason, size_t reason_size);

/**
 * @brief Open the HTTP listener with its routes (when http.listen is set),
 * the lookup API's (when api.listen is set), start the watchdog timer and
 * the signal watchers.
 * @returns 0, or -1 with errstr filled.
 */
int ops_start(struct daemon *d, char *errstr, size_t errstr_size);

/** @brief Stop the watchdog timer (the signal watchers stay for a second SIGINT). */
void ops_stop(struct daemon *d);

/** @brief The state's per-variant decisions at open, as log lines (state_config.log). */
void ops_log_variant(const char *line, void *opaque);

#endif
