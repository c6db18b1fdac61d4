/* cw_service.c - sd_notify(3) for the daemons (see cw_service.h). */
#include "cw_service.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "cw_clock.h"

/* sd_notify sends nothing without NOTIFY_SOCKET and returns 0; a send that
 * fails (the manager went away) is not the daemon's problem: ignored. */
static void notify_status(const char *head, const char *status)
{
	if (status)
		sd_notifyf(0, "%sSTATUS=%s", head, status);
	else
		sd_notify(0, head);
}

void cw_service_ready(const char *status)
{
	notify_status("READY=1\n", status);
}

void cw_service_status(const char *status)
{
	notify_status("", status);
}

void cw_service_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void cw_service_extend_timeout(int64_t ms)
{
	sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%lld", (long long)ms * 1000);
}

void cw_watchdog_init(struct cw_watchdog *w)
{
	uint64_t usec = 0;

	w->interval_ms = 0;
	/* 0 = keep WATCHDOG_USEC/WATCHDOG_PID in the environment (unset_environment) */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		w->interval_ms = (int64_t)(usec / 1000);
		if (w->interval_ms < 3)
			w->interval_ms = 3;
	}
	w->next_ms = cw_mono_ms();
}

int64_t cw_watchdog_wait_ms(const struct cw_watchdog *w, int64_t cap)
{
	int64_t left;

	if (w->interval_ms <= 0)
		return cap;
	left = w->next_ms - cw_mono_ms();
	if (left < 0)
		left = 0;
	return left < cap ? left : cap;
}

bool cw_watchdog_due(const struct cw_watchdog *w)
{
	return w->interval_ms > 0 && cw_mono_ms() >= w->next_ms;
}

void cw_watchdog_feed(struct cw_watchdog *w)
{
	if (w->interval_ms <= 0)
		return;
	sd_notify(0, "WATCHDOG=1");
	w->next_ms = cw_mono_ms() + w->interval_ms / 3;
}

void cw_watchdog_withhold(struct cw_watchdog *w)
{
	w->next_ms = cw_mono_ms() + w->interval_ms / 10 + 1;
}
