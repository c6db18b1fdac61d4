#include "cw_log.h"
#include "cw_error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static _Atomic int min_level = CW_LOG_INFO;
static atomic_ulong error_count;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cw_log_set_level(enum cw_log_level min)
{
	min_level = (int)min;
}

int cw_log_level_parse(const char *s, enum cw_log_level *out)
{
	for (int i = 0; i <= CW_LOG_ERROR; i++) {
		if (s && strcmp(s, level_names[i]) == 0) {
			*out = (enum cw_log_level)i;
			return CW_OK;
		}
	}
	return CW_ERR_INVAL;
}

unsigned long cw_log_error_count(void)
{
	return atomic_load(&error_count);
}

void cw_log(enum cw_log_level level, const char *event, const char *fmt, ...)
{
	char line[1024];
	int n;

	if (level == CW_LOG_ERROR)
		atomic_fetch_add(&error_count, 1);
	if ((int)level < min_level)
		return;
	n = snprintf(line, sizeof(line), "level=%s event=%s", level_names[level], event);
	if (n < 0)
		return;
	if (fmt && *fmt && (size_t)n < sizeof(line) - 1) {
		va_list ap;
		line[n++] = ' ';
		va_start(ap, fmt);
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	/* One write per line so concurrent threads never interleave. */
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s\n", line);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}
