#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
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

void log_line(int priority, const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	if (!log_enabled(priority))
		return;
	if (priority < 0 || priority > 7)
		priority = LOG_PRIORITY_ERROR;
	int prefix = snprintf(line, sizeof line, "<%d>streamrecd: ", priority);
	va_start(ap, fmt);
	int body = vsnprintf(line + prefix, sizeof line - (size_t)prefix - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)prefix + (body < 0 ? 0 : (size_t)body);
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	if (write(STDERR_FILENO, line, len) < 0)
		return; /* nowhere left to say so */
}

void log_kafka(int level, const char *facility, const char *message, void *opaque)
{
	(void)opaque;
	log_line(level < 0 ? 0 : level > 7 ? 7 : level, "kafka %s: %s", facility, message);
}
