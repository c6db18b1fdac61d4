/* cw_log.h - one line per event, journald friendly.
 *
 * Format: "level=info event=rental.start rental=... cart=3" on stderr.
 * Never log secrets: tokens, passwords, OTP codes, keys. */
#ifndef CW_LOG_H
#define CW_LOG_H

enum cw_log_level { CW_LOG_DEBUG, CW_LOG_INFO, CW_LOG_WARN, CW_LOG_ERROR };

/* fmt holds the key=value fields after "event=<event>"; may be NULL. */
void cw_log(enum cw_log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define cw_debug(ev, ...) cw_log(CW_LOG_DEBUG, ev, __VA_ARGS__)
#define cw_info(ev, ...) cw_log(CW_LOG_INFO, ev, __VA_ARGS__)
#define cw_warn(ev, ...) cw_log(CW_LOG_WARN, ev, __VA_ARGS__)
#define cw_error(ev, ...) cw_log(CW_LOG_ERROR, ev, __VA_ARGS__)

void cw_log_set_level(enum cw_log_level min);
/* Parses "debug", "info", "warn", "error"; returns CW_ERR_INVAL otherwise. */
int cw_log_level_parse(const char *s, enum cw_log_level *out);
/* Number of error-level lines written so far (tests assert it). */
unsigned long cw_log_error_count(void);

#endif
