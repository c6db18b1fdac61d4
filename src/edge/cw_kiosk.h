/* cw_kiosk.h - customer sign-in at the kiosk: one-time codes by SMS,
 * customer tokens, the staff-PIN offline path, rate limits and the audit
 * trail (docs/KIOSK.md, BRIEF.md §4 "what the old kiosk got wrong").
 *
 * Codes: 6 digits from randombytes_uniform, kept only as a keyed BLAKE2b
 * hash of phone and code, valid otp.ttl_s; at most otp.max_attempts_per_code
 * guesses per code and otp.max_failures_per_phone_hour wrong guesses per
 * phone in any hour, counted in the database so that neither a new code nor
 * a restart resets them. A code is never logged, never in an error.
 *
 * Customer tokens: EdDSA JWTs (src/cw_jwt.h) with typ "customer", sub the
 * phone in E.164, signed with the chain's customer-token key when the cloud
 * has sent one (every edge of the chain verifies them offline), else with
 * this device's own key; both are accepted. Revoked token ids are refused.
 *
 * Thread-safe: the database is the engine's, used under cw_engine_lock();
 * key material is guarded by the module's own mutex. */
#ifndef CW_KIOSK_H
#define CW_KIOSK_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "cw_engine.h"
#include "cw_jsoncfg.h"
#include "cw_phone.h"
#include "cw_staff.h"

#define CW_KIOSK_CODE_LEN 6
#define CW_KIOSK_ADDR_MAX 64

struct cw_kiosk_config {
	char web_root[512];         /* the kiosk page's files */
	char default_language[3];   /* "he" or "en" */
	int idle_seconds;           /* page resets after this long untouched */
	bool allow_international;   /* phones outside Israel */
	int token_days;             /* customer token lifetime (OTP sign-in) */
	int offline_token_minutes;  /* token lifetime after a staff-PIN sign-in */
	int otp_ttl_s;
	int max_attempts_per_code;
	int max_failures_per_phone_hour;
	int max_requests_per_phone_hour;
	int max_requests_per_kiosk_hour;
	int max_failures_per_kiosk_hour; /* wrong codes from one kiosk, any phone */
	int max_pin_failures;       /* per kiosk per pin_window_s */
	int pin_window_s;
	int nstaff;
	struct cw_staff staff[CW_STAFF_MAX]; /* kiosk.staff of the file */
};

void cw_kiosk_config_defaults(struct cw_kiosk_config *c);
/* Parses the "kiosk" object of the edge config (strict, key paths in errors). */
int cw_kiosk_config_parse(struct cw_jsoncfg *p, const cJSON *k, struct cw_kiosk_config *c);

/* How the kiosk sends a text (the daemon adapts src/edge/cw_sms to it; tests
 * pass a fake). send queues durably and waits up to wait_ms for the first
 * attempt: *state = "sent", "queued" (no outcome yet) or "failing". health:
 * "ok", "unreachable" or "off". */
struct cw_kiosk_sms {
	int (*send)(void *ctx, const char *to, const char *text, int64_t expires_wall_ms,
		    int wait_ms, const char **state);
	const char *(*health)(void *ctx);
	void *ctx;
};

struct cw_kiosk;

/* Reads or creates <data_dir>/kiosk.key (32 random bytes, mode 0600) from
 * which the device's own token key and the code-hashing key are derived.
 * cfg and sms are copied; sms may be NULL (no SMS: only the offline path). */
int cw_kiosk_new(const struct cw_kiosk_config *cfg, struct cw_engine *e,
		 const struct cw_kiosk_sms *sms, const char *data_dir, const char *chain_id,
		 const char *device_id, struct cw_kiosk **out);
void cw_kiosk_free(struct cw_kiosk *k); /* NULL ok */
const struct cw_kiosk_config *cw_kiosk_config(const struct cw_kiosk *k);

/* The chain's customer-token key from the cloud (a 32-byte Ed25519 seed);
 * NULL forgets it (tokens are then signed with the device's own key). */
void cw_kiosk_set_chain_seed(struct cw_kiosk *k, const unsigned char *seed);
/* Staff PINs from the cloud, used besides the config file's kiosk.staff. */
int cw_kiosk_set_cloud_staff(struct cw_kiosk *k, const struct cw_staff *staff, int n);

/* Why a call failed, for the kiosk page: reason is a stable identifier
 * (invalid_phone, too_many_requests, too_many_attempts, sms_unreachable,
 * wrong_code, code_expired, wrong_pin, signin_required); retry_after_s and
 * attempts_left are -1 when they do not apply. */
struct cw_kiosk_why {
	const char *reason;
	int retry_after_s;
	int attempts_left;
};

/* A signed-in customer. token is caller-freed (free()). */
struct cw_kiosk_signin {
	char phone[CW_PHONE_E164_MAX];
	char *token;
	int64_t expires_wall_ms;
	const char *method; /* "otp" or "staff_pin" */
};

/* kiosk_addr: the kiosk's address (client IP) for the per-kiosk limits.
 * lang: "he" or "en" (NULL = default) for the text.
 * Returns CW_OK with *sms_state "sent" or "queued"; CW_ERR_INVAL
 * (invalid_phone), CW_ERR_LIMIT (too_many_requests / too_many_attempts),
 * CW_ERR_OFFLINE (sms_unreachable: the code exists and the text stays
 * queued until the code expires), CW_ERR_DB. */
int cw_kiosk_otp_request(struct cw_kiosk *k, const char *phone, const char *lang,
			 const char *kiosk_addr, char phone_out[CW_PHONE_E164_MAX],
			 const char **sms_state, struct cw_kiosk_why *why);
/* CW_OK with *out filled; CW_ERR_INVAL (invalid_phone, or a code that is not
 * 6 digits), CW_ERR_AUTH (wrong_code, code_expired), CW_ERR_LIMIT
 * (too_many_attempts), CW_ERR_DB. */
int cw_kiosk_otp_verify(struct cw_kiosk *k, const char *phone, const char *code,
			const char *kiosk_addr, struct cw_kiosk_signin *out,
			struct cw_kiosk_why *why);
/* The offline path: a member of the branch staff types their PIN to vouch
 * for the customer. Short-lived token (offline_token_minutes), audit row and
 * a telemetry event kiosk.offline_signin. CW_ERR_AUTH (wrong_pin),
 * CW_ERR_LIMIT (too_many_attempts), CW_ERR_INVAL, CW_ERR_DB. */
int cw_kiosk_offline_signin(struct cw_kiosk *k, const char *phone, const char *pin,
			    const char *kiosk_addr, struct cw_kiosk_signin *out,
			    struct cw_kiosk_why *why);
/* Checks a customer token: signature (chain or own key), claims, not
 * revoked. CW_OK with the phone and the token id; CW_ERR_AUTH. */
int cw_kiosk_token_check(struct cw_kiosk *k, const char *token, char phone[CW_PHONE_E164_MAX],
			 char jti[64]);
/* Counts one kiosk action against max_requests_per_kiosk_hour (the return
 * flow, which needs no code). CW_OK or CW_ERR_LIMIT with why filled. */
int cw_kiosk_count_kiosk(struct cw_kiosk *k, const char *kiosk_addr, struct cw_kiosk_why *why);
/* Appends to the audit trail (kiosk_audit): event, and any of phone, the
 * kiosk's address, token id, rental id, detail (NULL = none). Failures are
 * logged only. */
void cw_kiosk_audit(struct cw_kiosk *k, const char *event, const char *phone, const char *kiosk_addr,
		    const char *jti, const char *rental_id, const char *detail);
/* {"default_language","languages","idle_seconds","sms","offline_signin",
 * "otp_ttl_s","code_length"} for GET /api/kiosk/info. */
cJSON *cw_kiosk_info_json(struct cw_kiosk *k);
/* Drops rate-limit rows older than an hour and expired codes (the daemon
 * calls it every minute or so). */
void cw_kiosk_tick(struct cw_kiosk *k);

#endif
