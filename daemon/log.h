/*
 * log: the daemon's log lines, on stderr with a syslog priority prefix
 * ("<4>streamrecd: ..."), which journald reads as the line's priority.
 *
 * Each line is formatted into one buffer and written with one write(), so
 * lines from librdkafka's threads (log_kafka) never interleave with the
 * loop's. Lines less severe than the threshold (log.level, reloadable) are
 * dropped; the threshold is one atomic int, read by every thread.
 */
#ifndef STREAMREC_LOG_H
#define STREAMREC_LOG_H

#include "config.h"

/** Syslog priorities used by the daemon. */
enum log_priority {
	LOG_PRIORITY_ERROR = 3,
	LOG_PRIORITY_WARNING = 4,
	LOG_PRIORITY_NOTICE = 5,
	LOG_PRIORITY_INFO = 6,
	LOG_PRIORITY_DEBUG = 7,
};

/** @brief Log lines up to this configured level from now on (any thread). */
void log_set_level(enum config_log_level level);

/** @returns true when a line of this priority is written at the current level. */
bool log_enabled(int priority);

/** @brief One line at a syslog priority; lines over 4 KiB are cut. */
void log_line(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * @brief An error that stops the daemon before it runs (a bad configuration,
 * a text model that does not load): "streamrecd: ..." on stderr, as a
 * command line tool says it, with the error priority prefix ("<3>") when
 * stderr is the journal (systemd sets JOURNAL_STREAM to its device:inode),
 * so that journald files it as an error rather than as info.
 */
void log_start_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/**
 * @brief librdkafka's log callback (consumer_config.log, producer_config.log):
 * its levels are syslog severities already. Called on librdkafka's threads.
 */
void log_kafka(int level, const char *facility, const char *message, void *opaque);

#endif
