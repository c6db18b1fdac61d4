/* cw_clock.h - time.
 *
 * The Pi has no real-time clock: after a power cut without network the wall
 * clock can be wrong or jump. Durations are measured on CLOCK_MONOTONIC;
 * records carry wall time plus whether the wall clock was trusted. */
#ifndef CW_CLOCK_H
#define CW_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

int64_t cw_mono_ms(void);  /* CLOCK_MONOTONIC in milliseconds */
int64_t cw_wall_ms(void);  /* CLOCK_REALTIME in ms since the Unix epoch */
int64_t cw_boot_ms(void);  /* CLOCK_BOOTTIME (since boot, suspend included), -1 if none */

/* True when the kernel says the clock is NTP-synchronised (adjtimex has no
 * STA_UNSYNC) and the wall time is not before 2026-01-01.
 *
 * TEST/OPS OVERRIDE: CW_CLOCK_TRUSTED=1 (or 0) in the environment replaces the
 * kernel's answer. It exists for the test suites and for containers without
 * adjtimex; it must not be set on a production device, since it makes
 * records claim a trusted clock that nobody checked. When it is in effect the
 * first call logs a warning (event=clock.override) so it shows in the
 * journal. */
bool cw_wall_trusted(void);

/* Formats ms since the epoch as RFC 3339 UTC "2026-11-28T08:00:00.000Z".
 * out must hold 32 bytes. */
void cw_wall_format(int64_t wall_ms, char out[32]);

void cw_sleep_ms(int64_t ms);

struct timespec;
/* *ts = CLOCK_MONOTONIC now + ms (ms <= 0: now), for pthread_cond_timedwait
 * on a condition variable whose clock is CLOCK_MONOTONIC. */
void cw_mono_deadline(int64_t ms, struct timespec *ts);

#endif
