/* cw_service.h - the daemons' side of systemd's Type=notify (sd_notify(3)):
 * readiness, status, stopping, start-up timeout extension and the watchdog.
 * Linked by cartwise-edge and cartwise-cloud only (libcwservice, libsystemd).
 * Without NOTIFY_SOCKET in the environment every call does nothing, and
 * without WATCHDOG_USEC the watchdog is off. */
#ifndef CW_SERVICE_H
#define CW_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

/* READY=1 with STATUS=status (status may be NULL). */
void cw_service_ready(const char *status);
/* STATUS=status: a line for `systemctl status`. */
void cw_service_status(const char *status);
/* STOPPING=1. */
void cw_service_stopping(void);
/* EXTEND_TIMEOUT_USEC: systemd waits ms more (from now) for READY=1. */
void cw_service_extend_timeout(int64_t ms);

/* The watchdog: WATCHDOG=1 every interval / 3 while the caller says it is
 * healthy. */
struct cw_watchdog {
	int64_t interval_ms; /* WatchdogSec (WATCHDOG_USEC), 0 = off */
	int64_t next_ms;     /* monotonic time the next feed is due */
};
/* Reads the interval (sd_watchdog_enabled); the first feed is due now. */
void cw_watchdog_init(struct cw_watchdog *w);
/* Milliseconds until the next feed is due (0 = due now), or `cap` when the
 * watchdog is off or the feed is further away than that. */
int64_t cw_watchdog_wait_ms(const struct cw_watchdog *w, int64_t cap);
/* Is a feed due? (always false when off) */
bool cw_watchdog_due(const struct cw_watchdog *w);
/* WATCHDOG=1 now; the next one is due interval / 3 later. */
void cw_watchdog_feed(struct cw_watchdog *w);
/* The caller is not healthy: no feed now, asks again interval / 10 later. */
void cw_watchdog_withhold(struct cw_watchdog *w);

#endif
