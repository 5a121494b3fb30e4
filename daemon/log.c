#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The least severe priority written; info by default (notices included). */
static atomic_int threshold = LOG_PRIORITY_INFO;

void log_set_level(enum config_log_level level)
{
	static const int by_level[] = {
	    [CONFIG_LOG_ERROR] = LOG_PRIORITY_ERROR,
	    [CONFIG_LOG_WARNING] = LOG_PRIORITY_WARNING,
	    [CONFIG_LOG_INFO] = LOG_PRIORITY_INFO,
	    [CONFIG_LOG_DEBUG] = LOG_PRIORITY_DEBUG,
	};
	if ((unsigned)level < sizeof by_level / sizeof by_level[0])
		atomic_store(&threshold, by_level[level]);
}

bool log_enabled(int priority)
{
	return priority <= atomic_load(&threshold);
}

/* Writes prefix, then the formatted line, with one write(). */
static void emit(const char *prefix, const char *fmt, va_list ap)
{
	char line[4096];
	int head = snprintf(line, sizeof line, "%s", prefix);
	int body = vsnprintf(line + head, sizeof line - (size_t)head - 1, fmt, ap);
	size_t len = (size_t)head + (body < 0 ? 0 : (size_t)body);

	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	if (write(STDERR_FILENO, line, len) < 0)
		return; /* nowhere left to say so */
}

void log_line(int priority, const char *fmt, ...)
{
	char prefix[32];
	va_list ap;

	if (!log_enabled(priority))
		return;
	if (priority < 0 || priority > 7)
		priority = LOG_PRIORITY_ERROR;
	snprintf(prefix, sizeof prefix, "<%d>streamrecd: ", priority);
	va_start(ap, fmt);
	emit(prefix, fmt, ap);
	va_end(ap);
}

/* Whether stderr is the stream JOURNAL_STREAM names ("device:inode"). */
static bool stderr_is_journal(void)
{
	const char *stream = getenv("JOURNAL_STREAM");
	unsigned long long device, inode;
	struct stat st;

	if (stream == NULL || sscanf(stream, "%llu:%llu", &device, &inode) != 2 ||
	    fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == device && (unsigned long long)st.st_ino == inode;
}

void log_start_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(stderr_is_journal() ? "<3>streamrecd: " : "streamrecd: ", fmt, ap);
	va_end(ap);
}

void log_kafka(int level, const char *facility, const char *message, void *opaque)
{
	(void)opaque;
	log_line(level < 0 ? 0 : level > 7 ? 7 : level, "kafka %s: %s", facility, message);
}
