#include "cw_clock.h"

#include "cw_log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>
#include <time.h>

/* 2026-01-01T00:00:00Z: a wall clock earlier than this is certainly wrong. */
#define CW_WALL_FLOOR_MS 1767225600000LL

static atomic_bool override_logged;

int64_t cw_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cw_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cw_boot_ms(void)
{
#ifdef CLOCK_BOOTTIME
	struct timespec ts;

	if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0)
		return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
	return -1;
}

bool cw_wall_trusted(void)
{
	const char *env = getenv("CW_CLOCK_TRUSTED");
	struct timex tx;

	if (env && *env) {
		bool trusted = strcmp(env, "0") != 0;

		/* Once per process: the override is a test/ops tool, and a
		 * device running with it should say so in its journal. */
		if (!atomic_exchange(&override_logged, true))
			cw_warn("clock.override",
				"var=CW_CLOCK_TRUSTED trusted=%d note=\"test/ops override, "
				"not for production\"",
				trusted ? 1 : 0);
		return trusted;
	}
	if (cw_wall_ms() < CW_WALL_FLOOR_MS)
		return false;
	memset(&tx, 0, sizeof(tx));
	if (adjtimex(&tx) == -1)
		return false;
	return (tx.status & STA_UNSYNC) == 0;
}

void cw_wall_format(int64_t wall_ms, char out[32])
{
	time_t secs = (time_t)(wall_ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&secs, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0 || n > 20) {
		out[0] = '\0';
		return;
	}
	/* snprintf is bounded; 5 more characters ".mmmZ" fit in 32. */
	snprintf(out + n, 32 - n, ".%03dZ", (int)(wall_ms % 1000));
}

void cw_sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

void cw_mono_deadline(int64_t ms, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	if (ms <= 0)
		return;
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}
