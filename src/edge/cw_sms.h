/* cw_sms.h - text messages to customers (one-time codes): providers and a
 * durable queue in the edge database with a sender thread.
 *
 * cw_sms_enqueue commits a row of sms_outbox (schema/edge/004_sms.sql) on the
 * engine's connection under cw_engine_lock() and wakes the sender; the
 * sender sends due rows oldest first and retries a failed one with backoff
 * (1 s doubling to 30 s) until it is sent or its expiry passes. A sent or
 * expired row is deleted, with PRAGMA secure_delete on, so that the text
 * (it holds a one-time code) does not stay in the file. Rows left by a
 * previous run are picked up at start. The text is never logged; the log
 * says "id=N to=+972*******67 state=sent attempt=2".
 *
 * Providers (docs/OPERATIONS.md "SMS"): webhook (POST JSON {"to","text"},
 * optional bearer token), inforu (Inforu's XML HTTP API), log (development
 * only: appends lines to a file; refused when production), none. Secrets
 * are read from files named in the config, never written in it. */
#ifndef CW_SMS_H
#define CW_SMS_H

#include <stdbool.h>
#include <stdint.h>

#include "cw_engine.h"
#include "cw_jsoncfg.h"

enum cw_sms_provider { CW_SMS_NONE, CW_SMS_WEBHOOK, CW_SMS_INFORU, CW_SMS_LOG };

#define CW_SMS_INFORU_URL "https://uapi.inforu.co.il/SendMessageXml.ashx"
/* Longest text accepted by cw_sms_enqueue, in bytes (UTF-8). */
#define CW_SMS_TEXT_MAX 1000

struct cw_sms_config {
	enum cw_sms_provider provider; /* default none */
	bool production;               /* default true: "log" refused */
	int timeout_s;                 /* whole request, 1..60, default 5 */
	/* webhook */
	char webhook_url[512];
	char webhook_bearer_token_file[512]; /* "" = no Authorization header */
	/* inforu */
	char inforu_url[512]; /* default CW_SMS_INFORU_URL */
	char inforu_username[128];
	char inforu_api_token_file[512];
	char inforu_sender[32];
	/* log */
	char log_file[512]; /* default <data_dir>/sms-dev.log */
	/* Not in the config file: the unit tests send to a fake gateway on
	 * plain http:// at any address. Without it http:// is accepted for
	 * loopback hosts only (127.0.0.0/8, [::1], localhost). */
	bool insecure_http;
	/* Not in the config file: tests shorten the backoff (0 = 1000 ms). */
	int backoff_base_ms;
};

/* provider none, production, timeout 5 s, the Inforu URL; no log file
 * (cw_sms_config_parse fills it from data_dir). */
void cw_sms_config_defaults(struct cw_sms_config *c);
/* Parses the "sms" object over c, which holds the defaults (sms may be NULL:
 * only the log file's default is filled in). Strict: unknown
 * keys, wrong types and a provider without its section's required keys are
 * refused with the key path in the message, CW_ERR_CONFIG; a secret file
 * must be readable and hold one line (its content is never echoed). */
int cw_sms_config_parse(struct cw_jsoncfg *p, const cJSON *sms, const char *data_dir,
			struct cw_sms_config *c);
const char *cw_sms_provider_name(enum cw_sms_provider p);

struct cw_sms; /* opaque */

/* Reads the secret files, sets secure_delete on the engine's connection.
 * CW_ERR_CONFIG (a secret file unreadable or bad; logged without its
 * content), CW_ERR_DB, CW_ERR_NOMEM. */
int cw_sms_new(const struct cw_sms_config *c, struct cw_engine *e, struct cw_sms **out);
int cw_sms_start(struct cw_sms *s); /* sender thread */
void cw_sms_free(struct cw_sms *s); /* stops (aborts a request in flight), joins; NULL ok */

/* Queues durably (row committed before return) and wakes the sender.
 * to_e164: "+" and 8-15 digits; text: 1..CW_SMS_TEXT_MAX bytes;
 * expires_wall_ms: never sent after (wall clock, ms). CW_ERR_INVAL,
 * CW_ERR_TOOBIG, CW_ERR_OFFLINE (provider none: nothing is written),
 * CW_ERR_DB. */
int cw_sms_enqueue(struct cw_sms *s, const char *to_e164, const char *text,
		   int64_t expires_wall_ms, int64_t *id);

enum cw_sms_state {
	CW_SMS_QUEUED,
	CW_SMS_SENT,
	CW_SMS_FAILING /* last attempt failed, retrying */,
	CW_SMS_EXPIRED
};
const char *cw_sms_state_name(enum cw_sms_state st); /* queued|sent|failing|expired */

/* Waits up to timeout_ms for the first attempt's outcome: CW_OK with
 * *state SENT, FAILING or EXPIRED, or QUEUED when no attempt finished in
 * time. CW_ERR_NOTFOUND: no such message (never queued, or finished long
 * ago: the last 256 outcomes are remembered). */
int cw_sms_wait(struct cw_sms *s, int64_t id, int timeout_ms, enum cw_sms_state *state);

/* "ok" | "unreachable" (last attempt of any message failed) | "off"
 * (provider none). A static string. */
const char *cw_sms_health(struct cw_sms *s);

#endif
