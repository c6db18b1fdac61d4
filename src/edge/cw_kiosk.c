/* cw_kiosk.c - customer sign-in at the kiosk; see cw_kiosk.h and
 * docs/KIOSK.md. */
#include "cw_kiosk.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_edb.h"
#include "cw_error.h"
#include "cw_file.h"
#include "cw_jwt.h"
#include "cw_log.h"
#include "cw_uuid.h"

#ifndef CW_KIOSK_WEB_ROOT
#define CW_KIOSK_WEB_ROOT "/usr/share/cartwise/kiosk"
#endif

#define HOUR_MS (3600 * 1000LL)
/* Wrong staff PINs per window for the whole device: this many times the
 * per-kiosk limit. */
#define PIN_DEVICE_FACTOR 2
/* How long the OTP request waits for the first SMS attempt before it
 * answers "queued": the customer sees "sms unreachable" within seconds. */
#define SMS_WAIT_MS 4000
/* Token issuer and type (docs/KIOSK.md "Customer tokens"). */
#define TOKEN_ISS "cartwise-edge"
/* crypto_kdf context and subkey ids for <data_dir>/kiosk.key. */
#define KDF_CTX "cwkiosk1"
#define KDF_TOKEN 1
#define KDF_OTP 2

struct cw_kiosk {
	struct cw_kiosk_config cfg;
	struct cw_engine *e;
	struct cw_kiosk_sms sms;
	bool has_sms;
	char chain_id[64];
	char device_id[64];
	char branch_id[64];
	unsigned char otp_key[crypto_generichash_KEYBYTES];
	pthread_mutex_t mu; /* guards the keys below and the cloud staff list */
	unsigned char own_pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char own_sk[crypto_sign_SECRETKEYBYTES];
	bool has_chain;
	unsigned char chain_pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char chain_sk[crypto_sign_SECRETKEYBYTES];
	int ncloud_staff;
	struct cw_staff cloud_staff[CW_STAFF_MAX];
	/* one Argon2id check at a time: each takes 64 MiB (MEMLIMIT_INTERACTIVE) */
	pthread_mutex_t pin_mu;
};

/* ------------------------------------------------------------ config */

void cw_kiosk_config_defaults(struct cw_kiosk_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->web_root, sizeof(c->web_root), "%s", CW_KIOSK_WEB_ROOT);
	snprintf(c->default_language, sizeof(c->default_language), "he");
	c->idle_seconds = 60;
	c->token_days = 30;
	c->offline_token_minutes = 15;
	c->otp_ttl_s = 300;
	c->max_attempts_per_code = 5;
	c->max_failures_per_phone_hour = 10;
	c->max_requests_per_phone_hour = 5;
	c->max_requests_per_kiosk_hour = 60;
	c->max_failures_per_kiosk_hour = 30;
	c->max_pin_failures = 5;
	c->pin_window_s = 900;
}

int cw_kiosk_config_parse(struct cw_jsoncfg *p, const cJSON *k, struct cw_kiosk_config *c)
{
	static const char *const keys[] = {"web_root",  "default_language", "idle_seconds",
					   "allow_international", "token_days",
					   "offline_token_minutes", "otp", "staff", NULL};
	static const char *const otp_keys[] = {"ttl_s",
					       "max_attempts_per_code",
					       "max_failures_per_phone_hour",
					       "max_requests_per_phone_hour",
					       "max_requests_per_kiosk_hour",
					       "max_failures_per_kiosk_hour",
					       "max_pin_failures",
					       "pin_window_s",
					       NULL};
	size_t mark = cw_jsoncfg_push(p, "kiosk");
	const cJSON *otp = NULL, *staff = NULL;
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, k, keys)) ||
	    (rc = cw_jsoncfg_get_str(p, k, "web_root", 0, c->web_root, sizeof(c->web_root))) ||
	    (rc = cw_jsoncfg_get_str(p, k, "default_language", 0, c->default_language,
				     sizeof(c->default_language))))
		goto out;
	if (strcmp(c->default_language, "he") != 0 && strcmp(c->default_language, "en") != 0) {
		rc = cw_jsoncfg_fail(p, "default_language", "expected \"he\" or \"en\"");
		goto out;
	}
	if ((rc = cw_jsoncfg_get_int(p, k, "idle_seconds", 10, 3600, false, &c->idle_seconds)) ||
	    (rc = cw_jsoncfg_get_bool(p, k, "allow_international", &c->allow_international)) ||
	    (rc = cw_jsoncfg_get_int(p, k, "token_days", 1, 365, false, &c->token_days)) ||
	    (rc = cw_jsoncfg_get_int(p, k, "offline_token_minutes", 1, 24 * 60, false,
				     &c->offline_token_minutes)) ||
	    (rc = cw_jsoncfg_get_container(p, k, "otp", false, false, &otp)) ||
	    (rc = cw_jsoncfg_get_container(p, k, "staff", true, false, &staff)))
		goto out;
	if (otp) {
		size_t m2 = cw_jsoncfg_push(p, ".otp");
		if ((rc = cw_jsoncfg_check_keys(p, otp, otp_keys)) ||
		    (rc = cw_jsoncfg_get_int(p, otp, "ttl_s", 5, 3600, false, &c->otp_ttl_s)) ||
		    (rc = cw_jsoncfg_get_int(p, otp, "max_attempts_per_code", 1, 10, false,
					     &c->max_attempts_per_code)) ||
		    (rc = cw_jsoncfg_get_int(p, otp, "max_failures_per_phone_hour", 1, 50, false,
					     &c->max_failures_per_phone_hour)) ||
		    (rc = cw_jsoncfg_get_int(p, otp, "max_requests_per_phone_hour", 1, 50, false,
					     &c->max_requests_per_phone_hour)) ||
		    (rc = cw_jsoncfg_get_int(p, otp, "max_requests_per_kiosk_hour", 1, 10000, false,
					     &c->max_requests_per_kiosk_hour)) ||
		    (rc = cw_jsoncfg_get_int(p, otp, "max_failures_per_kiosk_hour", 1, 10000, false,
					     &c->max_failures_per_kiosk_hour)) ||
		    (rc = cw_jsoncfg_get_int(p, otp, "max_pin_failures", 1, 50, false,
					     &c->max_pin_failures)) ||
		    (rc = cw_jsoncfg_get_int(p, otp, "pin_window_s", 60, 86400, false,
					     &c->pin_window_s))) {
			cw_jsoncfg_pop(p, m2);
			goto out;
		}
		cw_jsoncfg_pop(p, m2);
	}
	if (staff)
		rc = cw_staff_parse(p, "staff", staff, c->staff, &c->nstaff);
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

/* ------------------------------------------------------------ keys */

/* Reads <data_dir>/kiosk.key, or creates it with 32 random bytes. */
static int load_master(const char *data_dir, unsigned char key[crypto_kdf_KEYBYTES])
{
	char path[600];
	ssize_t n = -1;
	int fd, rc;

	if (snprintf(path, sizeof(path), "%s/kiosk.key", data_dir) >= (int)sizeof(path))
		return CW_ERR_INVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, key, crypto_kdf_KEYBYTES);
		close(fd);
		if (n == crypto_kdf_KEYBYTES)
			return CW_OK;
		cw_error("kiosk.key", "path=%s err=\"short or unreadable key file\"", path);
		return CW_ERR_IO;
	}
	if (errno != ENOENT) {
		cw_error("kiosk.key", "path=%s err=\"%s\"", path, strerror(errno));
		return CW_ERR_IO;
	}
	crypto_kdf_keygen(key);
	rc = cw_file_replace(path, key, crypto_kdf_KEYBYTES);
	if (rc)
		cw_error("kiosk.key", "path=%s err=\"cannot write: %s\"", path, strerror(errno));
	else
		cw_info("kiosk.key", "path=%s created=1", path);
	return rc;
}

void cw_kiosk_set_chain_seed(struct cw_kiosk *k, const unsigned char *seed)
{
	pthread_mutex_lock(&k->mu);
	if (seed) {
		crypto_sign_seed_keypair(k->chain_pk, k->chain_sk, seed);
		k->has_chain = true;
	} else {
		sodium_memzero(k->chain_sk, sizeof(k->chain_sk));
		k->has_chain = false;
	}
	pthread_mutex_unlock(&k->mu);
}

int cw_kiosk_set_cloud_staff(struct cw_kiosk *k, const struct cw_staff *staff, int n)
{
	if (n < 0 || n > CW_STAFF_MAX || (n && !staff))
		return CW_ERR_INVAL;
	pthread_mutex_lock(&k->mu);
	if (n)
		memcpy(k->cloud_staff, staff, (size_t)n * sizeof(*staff));
	k->ncloud_staff = n;
	pthread_mutex_unlock(&k->mu);
	return CW_OK;
}

int cw_kiosk_new(const struct cw_kiosk_config *cfg, struct cw_engine *e,
		 const struct cw_kiosk_sms *sms, const char *data_dir, const char *chain_id,
		 const char *device_id, struct cw_kiosk **out)
{
	unsigned char master[crypto_kdf_KEYBYTES], seed[crypto_sign_SEEDBYTES];
	struct cw_kiosk *k;
	int rc;

	*out = NULL;
	if (!cfg || !e || !data_dir || !chain_id || !device_id)
		return CW_ERR_INVAL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return CW_ERR_NOMEM;
	k->cfg = *cfg;
	k->e = e;
	if (sms && sms->send) {
		k->sms = *sms;
		k->has_sms = true;
	}
	snprintf(k->chain_id, sizeof(k->chain_id), "%s", chain_id);
	snprintf(k->device_id, sizeof(k->device_id), "%s", device_id);
	snprintf(k->branch_id, sizeof(k->branch_id), "%s", cw_engine_branch_id(e));
	pthread_mutex_init(&k->mu, NULL);
	pthread_mutex_init(&k->pin_mu, NULL);
	rc = load_master(data_dir, master);
	if (rc)
		goto fail;
	crypto_kdf_derive_from_key(seed, sizeof(seed), KDF_TOKEN, KDF_CTX, master);
	crypto_sign_seed_keypair(k->own_pk, k->own_sk, seed);
	crypto_kdf_derive_from_key(k->otp_key, sizeof(k->otp_key), KDF_OTP, KDF_CTX, master);
	sodium_memzero(master, sizeof(master));
	sodium_memzero(seed, sizeof(seed));
	*out = k;
	return CW_OK;
fail:
	sodium_memzero(master, sizeof(master));
	cw_kiosk_free(k);
	return rc;
}

void cw_kiosk_free(struct cw_kiosk *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->mu);
	pthread_mutex_destroy(&k->pin_mu);
	sodium_memzero(k, sizeof(*k));
	free(k);
}

const struct cw_kiosk_config *cw_kiosk_config(const struct cw_kiosk *k)
{
	return &k->cfg;
}

/* ------------------------------------------------------------ database */

static void why_set(struct cw_kiosk_why *why, const char *reason, int retry_after_s,
		    int attempts_left)
{
	if (!why)
		return;
	why->reason = reason;
	why->retry_after_s = retry_after_s;
	why->attempts_left = attempts_left;
}

/* Events of kind for subject in the last window_ms; *retry_s = seconds until
 * the oldest of them leaves the window. Engine lock held. */
static int count_events(struct cw_kiosk *k, const char *kind, const char *subject,
			int64_t now, int64_t window_ms, int64_t *n, int *retry_s)
{
	sqlite3_stmt *st = NULL;
	int64_t oldest = 0;
	int rc;

	/* One query for both figures, on the (kind, subject, at_ms) index;
	 * subject NULL: every subject (the device as a whole). */
	*n = 0;
	if (subject)
		rc = cw_eq_prepare(k->e, &st,
				   "SELECT count(*), min(at_ms) FROM kiosk_limits WHERE kind = ?1 "
				   "AND at_ms > ?2 AND subject = ?3",
				   "tit", kind, now - window_ms, subject);
	else
		rc = cw_eq_prepare(k->e, &st,
				   "SELECT count(*), min(at_ms) FROM kiosk_limits WHERE kind = ?1 "
				   "AND at_ms > ?2",
				   "ti", kind, now - window_ms);
	if (rc == CW_OK && sqlite3_step(st) != SQLITE_ROW)
		rc = CW_ERR_DB;
	if (rc == CW_OK) {
		*n = sqlite3_column_int64(st, 0);
		oldest = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (rc == CW_OK && retry_s) {
		*retry_s = (int)((oldest + window_ms - now + 999) / 1000);
		if (*retry_s < 1)
			*retry_s = 1;
	}
	return rc;
}

static int add_event(struct cw_kiosk *k, const char *kind, const char *subject, int64_t now)
{
	return cw_eq_exec(k->e, "INSERT INTO kiosk_limits(kind, subject, at_ms) VALUES (?1, ?2, ?3)",
			  "tti", kind, subject, now);
}

/* Engine lock held. */
static int audit_locked(struct cw_kiosk *k, const char *event, const char *phone,
			const char *kiosk, const char *staff, const char *jti,
			const char *rental_id, const char *detail)
{
	return cw_eq_exec(k->e,
			  "INSERT INTO kiosk_audit(at_ms, clock_trusted, event, phone, kiosk, "
			  "staff_id, token_id, rental_id, detail) "
			  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
			  "iittttttt", cw_engine_now_wall(),
			  (int64_t)cw_engine_clock_trusted(k->e), event, phone, kiosk, staff, jti,
			  rental_id, detail);
}

void cw_kiosk_audit(struct cw_kiosk *k, const char *event, const char *phone, const char *kiosk_addr,
		    const char *jti, const char *rental_id, const char *detail)
{
	int rc;

	cw_engine_lock(k->e);
	rc = audit_locked(k, event, phone, kiosk_addr, NULL, jti, rental_id, detail);
	cw_engine_unlock(k->e);
	if (rc)
		cw_error("kiosk.audit", "event=%s err=%s", event, cw_errname(rc));
}

/* hex of keyed BLAKE2b(phone NUL code) */
static void code_hash(const struct cw_kiosk *k, const char *phone, const char *code,
		      char hex[2 * crypto_generichash_BYTES + 1])
{
	unsigned char h[crypto_generichash_BYTES];
	crypto_generichash_state st;

	crypto_generichash_init(&st, k->otp_key, sizeof(k->otp_key), sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)phone, strlen(phone) + 1);
	crypto_generichash_update(&st, (const unsigned char *)code, strlen(code));
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(hex, 2 * crypto_generichash_BYTES + 1, h, sizeof(h));
	sodium_memzero(h, sizeof(h));
}

/* ------------------------------------------------------------ tokens */

static int sign_token(struct cw_kiosk *k, const char *phone, const char *method,
		      const char *staff_id, int64_t lifetime_s, struct cw_kiosk_signin *out,
		      char jti[CW_UUID_STRLEN])
{
	int64_t now_s = cw_engine_now_wall() / 1000;
	cJSON *c = cJSON_CreateObject();
	int rc = CW_ERR_NOMEM;

	if (!c)
		return CW_ERR_NOMEM;
	cw_uuid_v7(jti);
	if (!cJSON_AddStringToObject(c, "iss", TOKEN_ISS) ||
	    !cJSON_AddStringToObject(c, "aud", k->chain_id) ||
	    !cJSON_AddStringToObject(c, "typ", CW_JWT_TYP_CUSTOMER) ||
	    !cJSON_AddStringToObject(c, "sub", phone) ||
	    !cJSON_AddStringToObject(c, "jti", jti) ||
	    !cJSON_AddNumberToObject(c, "iat", (double)now_s) ||
	    !cJSON_AddNumberToObject(c, "exp", (double)(now_s + lifetime_s)) ||
	    !cJSON_AddStringToObject(c, "amr", method) ||
	    !cJSON_AddStringToObject(c, "branch", k->branch_id) ||
	    !cJSON_AddStringToObject(c, "dev", k->device_id) ||
	    (staff_id && !cJSON_AddStringToObject(c, "staff", staff_id)))
		goto out;
	pthread_mutex_lock(&k->mu);
	rc = cw_jwt_sign(c, k->has_chain ? k->chain_sk : k->own_sk, &out->token);
	pthread_mutex_unlock(&k->mu);
	if (rc)
		goto out;
	snprintf(out->phone, sizeof(out->phone), "%s", phone);
	out->expires_wall_ms = (now_s + lifetime_s) * 1000;
	out->method = method;
out:
	cJSON_Delete(c);
	return rc;
}

int cw_kiosk_token_check(struct cw_kiosk *k, const char *token, char phone[CW_PHONE_E164_MAX],
			 char jti[64])
{
	struct cw_jwt_expect ex = {.iss = TOKEN_ISS,
				   .aud = k->chain_id,
				   .typ = CW_JWT_TYP_CUSTOMER,
				   .now_s = cw_engine_now_wall() / 1000,
				   .leeway_s = -1};
	unsigned char pk[2][crypto_sign_PUBLICKEYBYTES];
	const char *sub, *id, *reason = NULL;
	cJSON *claims = NULL;
	bool revoked = true;
	int npk = 0, rc = CW_ERR_AUTH;
	char norm[CW_PHONE_E164_MAX];

	phone[0] = jti[0] = '\0';
	pthread_mutex_lock(&k->mu);
	if (k->has_chain)
		memcpy(pk[npk++], k->chain_pk, sizeof(pk[0]));
	memcpy(pk[npk++], k->own_pk, sizeof(pk[0]));
	pthread_mutex_unlock(&k->mu);
	for (int i = 0; i < npk && !claims; i++) {
		if (cw_jwt_verify(token, pk[i], &ex, &claims, &reason) != CW_OK)
			claims = NULL;
	}
	if (!claims) {
		cw_info("kiosk.token", "accepted=0 reason=%s", reason ? reason : "unknown");
		return CW_ERR_AUTH;
	}
	sub = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(claims, "sub"));
	id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(claims, "jti"));
	/* The subject must already be in E.164: what we signed. */
	if (!sub || !id || strlen(id) >= 64 || cw_phone_normalize(sub, true, norm) != CW_OK ||
	    strcmp(norm, sub) != 0)
		goto out;
	if (cw_engine_token_revoked(k->e, id, &revoked) != CW_OK || revoked) {
		cw_info("kiosk.token", "accepted=0 reason=revoked");
		goto out;
	}
	snprintf(phone, CW_PHONE_E164_MAX, "%s", sub);
	snprintf(jti, 64, "%s", id);
	rc = CW_OK;
out:
	cJSON_Delete(claims);
	return rc;
}

/* ------------------------------------------------------------ codes */

static const char *sms_text(const char *lang, const char *code, int ttl_min, char *buf,
			    size_t cap)
{
	if (lang && strcmp(lang, "en") == 0)
		snprintf(buf, cap, "Your CartWise code is %s. It is valid for %d minutes. "
				   "Do not share it.", code, ttl_min);
	else
		snprintf(buf, cap, "קוד הכניסה שלך ל-CartWise: %s. בתוקף %d דקות. "
				   "אין למסור אותו לאיש.", code, ttl_min);
	return buf;
}

int cw_kiosk_otp_request(struct cw_kiosk *k, const char *phone, const char *lang,
			 const char *kiosk_addr, char phone_out[CW_PHONE_E164_MAX],
			 const char **sms_state, struct cw_kiosk_why *why)
{
	char p[CW_PHONE_E164_MAX], code[CW_KIOSK_CODE_LEN + 1], hex[65], text[256];
	int64_t now = cw_engine_now_wall(), n, expires;
	int rc, retry = 0;

	why_set(why, NULL, -1, -1);
	*sms_state = "queued";
	phone_out[0] = '\0';
	if (cw_phone_normalize(phone, k->cfg.allow_international, p) != CW_OK) {
		why_set(why, "invalid_phone", -1, -1);
		return CW_ERR_INVAL;
	}
	if (lang && strcmp(lang, "he") != 0 && strcmp(lang, "en") != 0)
		lang = NULL;
	if (!lang)
		lang = k->cfg.default_language;
	snprintf(phone_out, CW_PHONE_E164_MAX, "%s", p);
	expires = now + (int64_t)k->cfg.otp_ttl_s * 1000;
	cw_engine_lock(k->e);
	if ((rc = cw_edb_begin(cw_engine_edb(k->e))))
		goto unlock;
	if ((rc = count_events(k, "otp_request_kiosk", kiosk_addr, now, HOUR_MS, &n, &retry)))
		goto rollback;
	if (n >= k->cfg.max_requests_per_kiosk_hour) {
		why_set(why, "too_many_requests", retry, -1);
		rc = CW_ERR_LIMIT;
		goto rollback;
	}
	if ((rc = count_events(k, "otp_fail_phone", p, now, HOUR_MS, &n, &retry)))
		goto rollback;
	if (n >= k->cfg.max_failures_per_phone_hour) {
		/* a new code would be refused at verify anyway: say it now */
		why_set(why, "too_many_attempts", retry, 0);
		rc = CW_ERR_LIMIT;
		goto rollback;
	}
	if ((rc = count_events(k, "otp_request_phone", p, now, HOUR_MS, &n, &retry)))
		goto rollback;
	if (n >= k->cfg.max_requests_per_phone_hour) {
		why_set(why, "too_many_requests", retry, -1);
		rc = CW_ERR_LIMIT;
		goto rollback;
	}
	snprintf(code, sizeof(code), "%06u", (unsigned)randombytes_uniform(1000000));
	code_hash(k, p, code, hex);
	if ((rc = add_event(k, "otp_request_kiosk", kiosk_addr, now)) ||
	    (rc = add_event(k, "otp_request_phone", p, now)) ||
	    (rc = cw_eq_exec(k->e,
			     "INSERT INTO otp_codes(phone, code_hash, created_ms, expires_ms, "
			     "attempts) VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT(phone) DO UPDATE "
			     "SET code_hash = excluded.code_hash, created_ms = excluded.created_ms, "
			     "expires_ms = excluded.expires_ms, attempts = 0",
			     "ttii", p, hex, now, expires)) ||
	    (rc = audit_locked(k, "otp_requested", p, kiosk_addr, NULL, NULL, NULL, lang)) ||
	    (rc = cw_edb_commit(cw_engine_edb(k->e))))
		goto rollback;
	cw_engine_unlock(k->e);
	sodium_memzero(hex, sizeof(hex));

	if (!k->has_sms) {
		rc = CW_ERR_OFFLINE;
	} else {
		rc = k->sms.send(k->sms.ctx, p,
				 sms_text(lang, code, (k->cfg.otp_ttl_s + 59) / 60, text, sizeof(text)),
				 expires, SMS_WAIT_MS, sms_state);
		if (rc == CW_OK && strcmp(*sms_state, "failing") == 0)
			rc = CW_ERR_OFFLINE;
	}
	sodium_memzero(code, sizeof(code));
	sodium_memzero(text, sizeof(text));
	if (rc) {
		/* The code exists; a queued text still goes out if the gateway
		 * comes back before it expires. */
		if (rc != CW_ERR_OFFLINE)
			cw_warn("kiosk.sms", "queued=0 err=%s", cw_errname(rc));
		why_set(why, "sms_unreachable", -1, -1);
		return CW_ERR_OFFLINE;
	}
	return CW_OK;
rollback:
	cw_edb_rollback(cw_engine_edb(k->e));
unlock:
	cw_engine_unlock(k->e);
	sodium_memzero(hex, sizeof(hex));
	sodium_memzero(code, sizeof(code));
	return rc;
}

static bool six_digits(const char *s)
{
	size_t i = 0;

	for (; s && s[i]; i++)
		if (s[i] < '0' || s[i] > '9' || i >= CW_KIOSK_CODE_LEN)
			return false;
	return i == CW_KIOSK_CODE_LEN;
}

int cw_kiosk_otp_verify(struct cw_kiosk *k, const char *phone, const char *code,
			const char *kiosk_addr, struct cw_kiosk_signin *out,
			struct cw_kiosk_why *why)
{
	char p[CW_PHONE_E164_MAX], hex[65], jti[CW_UUID_STRLEN];
	int64_t now = cw_engine_now_wall(), fails = 0, kfails = 0, attempts;
	sqlite3_stmt *st = NULL;
	bool match = false, found = false;
	int rc, retry = 0, left;

	why_set(why, NULL, -1, -1);
	memset(out, 0, sizeof(*out));
	if (cw_phone_normalize(phone, k->cfg.allow_international, p) != CW_OK) {
		why_set(why, "invalid_phone", -1, -1);
		return CW_ERR_INVAL;
	}
	if (!six_digits(code)) {
		why_set(why, "wrong_code", -1, -1);
		return CW_ERR_INVAL;
	}
	code_hash(k, p, code, hex);
	cw_engine_lock(k->e);
	if ((rc = cw_edb_begin(cw_engine_edb(k->e))))
		goto unlock;
	if ((rc = count_events(k, "otp_fail_kiosk", kiosk_addr, now, HOUR_MS, &kfails, &retry)))
		goto rollback;
	/* per kiosk too: 5 guesses on each of many phones add up */
	if (kfails >= k->cfg.max_failures_per_kiosk_hour) {
		why_set(why, "too_many_attempts", retry, 0);
		rc = CW_ERR_LIMIT;
		goto rollback;
	}
	if ((rc = count_events(k, "otp_fail_phone", p, now, HOUR_MS, &fails, &retry)))
		goto rollback;
	if (fails >= k->cfg.max_failures_per_phone_hour) {
		why_set(why, "too_many_attempts", retry, 0);
		rc = CW_ERR_LIMIT;
		goto rollback;
	}
	if ((rc = cw_eq_prepare(k->e, &st,
				"SELECT code_hash, attempts FROM otp_codes WHERE phone = ?1 AND "
				"expires_ms > ?2",
				"ti", p, now)))
		goto rollback;
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *stored = (const char *)sqlite3_column_text(st, 0);
		found = true;
		attempts = sqlite3_column_int64(st, 1);
		match = stored && strlen(stored) == 64 && sodium_memcmp(stored, hex, 64) == 0;
	}
	sqlite3_finalize(st);
	if (!found) {
		why_set(why, "code_expired", -1, -1);
		rc = CW_ERR_AUTH;
		goto rollback;
	}
	if (!match) {
		attempts++;
		if ((rc = add_event(k, "otp_fail_phone", p, now)) ||
		    (rc = add_event(k, "otp_fail_kiosk", kiosk_addr, now)) ||
		    (rc = cw_eq_exec(k->e,
				     attempts >= k->cfg.max_attempts_per_code
					     ? "DELETE FROM otp_codes WHERE phone = ?1"
					     : "UPDATE otp_codes SET attempts = attempts + 1 WHERE "
					       "phone = ?1",
				     "t", p)) ||
		    (rc = audit_locked(k, "otp_failed", p, kiosk_addr, NULL, NULL, NULL, NULL)) ||
		    (rc = cw_edb_commit(cw_engine_edb(k->e))))
			goto rollback;
		cw_engine_unlock(k->e);
		left = (int)(k->cfg.max_attempts_per_code - attempts);
		if (k->cfg.max_failures_per_phone_hour - (fails + 1) < left)
			left = (int)(k->cfg.max_failures_per_phone_hour - (fails + 1));
		why_set(why, "wrong_code", -1, left < 0 ? 0 : left);
		return CW_ERR_AUTH;
	}
	if ((rc = sign_token(k, p, "otp", NULL, (int64_t)k->cfg.token_days * 86400, out, jti)) ||
	    (rc = cw_eq_exec(k->e, "DELETE FROM otp_codes WHERE phone = ?1", "t", p)) ||
	    (rc = audit_locked(k, "otp_verified", p, kiosk_addr, NULL, jti, NULL, NULL)) ||
	    (rc = cw_edb_commit(cw_engine_edb(k->e))))
		goto rollback;
	cw_engine_unlock(k->e);
	return CW_OK;
rollback:
	cw_edb_rollback(cw_engine_edb(k->e));
unlock:
	cw_engine_unlock(k->e);
	if (rc != CW_OK) {
		free(out->token);
		out->token = NULL;
	}
	return rc;
}

/* ------------------------------------------------------------ offline */

/* Finds the staff member whose PIN this is; id copied into staff_id. */
static bool pin_match(struct cw_kiosk *k, const char *pin, char staff_id[64])
{
	struct cw_staff *all;
	bool ok = false;
	int n;

	all = calloc(2 * CW_STAFF_MAX, sizeof(*all));
	if (!all)
		return false;
	pthread_mutex_lock(&k->mu);
	memcpy(all, k->cfg.staff, (size_t)k->cfg.nstaff * sizeof(*all));
	memcpy(all + k->cfg.nstaff, k->cloud_staff, (size_t)k->ncloud_staff * sizeof(*all));
	n = k->cfg.nstaff + k->ncloud_staff;
	pthread_mutex_unlock(&k->mu);
	pthread_mutex_lock(&k->pin_mu);
	for (int i = 0; i < n && !ok; i++) {
		if (crypto_pwhash_str_verify(all[i].pin_hash, pin, strlen(pin)) == 0) {
			snprintf(staff_id, 64, "%s", all[i].id);
			ok = true;
		}
	}
	pthread_mutex_unlock(&k->pin_mu);
	sodium_memzero(all, 2 * CW_STAFF_MAX * sizeof(*all));
	free(all);
	return ok;
}

static bool pin_shape_ok(const char *pin)
{
	size_t n = pin ? strlen(pin) : 0;

	if (n < 4 || n > 12)
		return false;
	for (size_t i = 0; i < n; i++)
		if (pin[i] < '0' || pin[i] > '9')
			return false;
	return true;
}

int cw_kiosk_offline_signin(struct cw_kiosk *k, const char *phone, const char *pin,
			    const char *kiosk_addr, struct cw_kiosk_signin *out,
			    struct cw_kiosk_why *why)
{
	char p[CW_PHONE_E164_MAX], staff[64] = "", jti[CW_UUID_STRLEN];
	int64_t now = cw_engine_now_wall(), n = 0, all = 0, slot = 0;
	int rc, retry = 0;
	bool ok;

	why_set(why, NULL, -1, -1);
	memset(out, 0, sizeof(*out));
	if (cw_phone_normalize(phone, k->cfg.allow_international, p) != CW_OK) {
		why_set(why, "invalid_phone", -1, -1);
		return CW_ERR_INVAL;
	}
	/* The attempt is counted as a failure before its PIN is checked, in
	 * the transaction that checks the count: guesses sent at the same
	 * time (a thread per connection) each take a place, so no more than
	 * max_pin_failures PINs are ever tried per window. A right PIN gives
	 * its place back. */
	cw_engine_lock(k->e);
	if ((rc = cw_edb_begin(cw_engine_edb(k->e))))
		goto unlock;
	if ((rc = count_events(k, "pin_fail_kiosk", kiosk_addr, now,
			       (int64_t)k->cfg.pin_window_s * 1000, &n, &retry)))
		goto rollback;
	if (n < k->cfg.max_pin_failures &&
	    (rc = count_events(k, "pin_fail_kiosk", NULL, now, (int64_t)k->cfg.pin_window_s * 1000,
			       &all, &retry)))
		goto rollback;
	/* Per kiosk, and for the device as a whole (PIN_DEVICE_FACTOR times
	 * as many): more kiosk addresses (other hosts of the LAN, IPv6) buy a
	 * guesser no more than that. */
	if (n >= k->cfg.max_pin_failures ||
	    all >= (int64_t)k->cfg.max_pin_failures * PIN_DEVICE_FACTOR) {
		cw_edb_rollback(cw_engine_edb(k->e));
		cw_engine_unlock(k->e);
		why_set(why, "too_many_attempts", retry, 0);
		return CW_ERR_LIMIT;
	}
	if ((rc = add_event(k, "pin_fail_kiosk", kiosk_addr, now)) ||
	    (rc = cw_eq_int(k->e, &slot, "SELECT last_insert_rowid()", "")) ||
	    (rc = cw_edb_commit(cw_engine_edb(k->e))))
		goto rollback;
	cw_engine_unlock(k->e);
	ok = pin_shape_ok(pin) && pin_match(k, pin, staff);
	cw_engine_lock(k->e);
	if ((rc = cw_edb_begin(cw_engine_edb(k->e))))
		goto unlock;
	if (!ok) {
		if ((rc = audit_locked(k, "offline_refused", p, kiosk_addr, NULL, NULL, NULL,
				       "wrong_pin")) ||
		    (rc = cw_edb_commit(cw_engine_edb(k->e))))
			goto rollback;
		cw_engine_unlock(k->e);
		/* the chain sees guessing as it happens (no PIN in it) */
		cJSON *d = cJSON_CreateObject();
		if (d)
			cJSON_AddStringToObject(d, "kiosk", kiosk_addr ? kiosk_addr : "");
		if (cw_engine_event(k->e, "kiosk.pin_refused", d) != CW_OK)
			cw_warn("kiosk.offline", "telemetry=0");
		why_set(why, "wrong_pin", -1, (int)(k->cfg.max_pin_failures - n - 1));
		return CW_ERR_AUTH;
	}
	if ((rc = cw_eq_exec(k->e, "DELETE FROM kiosk_limits WHERE rowid = ?1", "i", slot)) ||
	    (rc = sign_token(k, p, "staff_pin", staff, (int64_t)k->cfg.offline_token_minutes * 60,
			     out, jti)) ||
	    (rc = audit_locked(k, "offline_signin", p, kiosk_addr, staff, jti, NULL, NULL)) ||
	    (rc = cw_edb_commit(cw_engine_edb(k->e))))
		goto rollback;
	cw_engine_unlock(k->e);
	{
		/* The chain sees every offline sign-in (telemetry to the cloud). */
		cJSON *d = cJSON_CreateObject();
		if (d) {
			cJSON_AddStringToObject(d, "staff_id", staff);
			cJSON_AddStringToObject(d, "phone", p);
			cJSON_AddStringToObject(d, "token_id", jti);
			cJSON_AddStringToObject(d, "kiosk", kiosk_addr ? kiosk_addr : "");
		}
		if (cw_engine_event(k->e, "kiosk.offline_signin", d) != CW_OK)
			cw_warn("kiosk.offline", "telemetry=0");
	}
	cw_info("kiosk.offline", "signin=1 staff=%s", staff);
	return CW_OK;
rollback:
	cw_edb_rollback(cw_engine_edb(k->e));
unlock:
	cw_engine_unlock(k->e);
	free(out->token);
	out->token = NULL;
	return rc;
}

int cw_kiosk_count_kiosk(struct cw_kiosk *k, const char *kiosk_addr, struct cw_kiosk_why *why)
{
	int64_t now = cw_engine_now_wall(), n = 0;
	int rc, retry = 0;

	why_set(why, NULL, -1, -1);
	cw_engine_lock(k->e);
	rc = count_events(k, "kiosk_action", kiosk_addr, now, HOUR_MS, &n, &retry);
	if (rc == CW_OK && n >= k->cfg.max_requests_per_kiosk_hour) {
		why_set(why, "too_many_requests", retry, -1);
		rc = CW_ERR_LIMIT;
	} else if (rc == CW_OK) {
		rc = add_event(k, "kiosk_action", kiosk_addr, now);
	}
	cw_engine_unlock(k->e);
	return rc;
}

cJSON *cw_kiosk_info_json(struct cw_kiosk *k)
{
	cJSON *o = cJSON_CreateObject(), *langs, *off;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "branch_id", k->branch_id);
	cJSON_AddStringToObject(o, "default_language", k->cfg.default_language);
	langs = cJSON_AddArrayToObject(o, "languages");
	if (langs) {
		cJSON_AddItemToArray(langs, cJSON_CreateString("he"));
		cJSON_AddItemToArray(langs, cJSON_CreateString("en"));
	}
	cJSON_AddNumberToObject(o, "idle_seconds", k->cfg.idle_seconds);
	cJSON_AddStringToObject(o, "sms", k->has_sms && k->sms.health ? k->sms.health(k->sms.ctx)
								    : "off");
	off = cJSON_AddArrayToObject(o, "offline_signin");
	pthread_mutex_lock(&k->mu);
	if (off && k->cfg.nstaff + k->ncloud_staff > 0)
		cJSON_AddItemToArray(off, cJSON_CreateString("staff_pin"));
	pthread_mutex_unlock(&k->mu);
	cJSON_AddNumberToObject(o, "otp_ttl_s", k->cfg.otp_ttl_s);
	cJSON_AddNumberToObject(o, "code_length", CW_KIOSK_CODE_LEN);
	return o;
}

void cw_kiosk_tick(struct cw_kiosk *k)
{
	int64_t now = cw_engine_now_wall();
	int64_t window = HOUR_MS;
	int rc;

	if ((int64_t)k->cfg.pin_window_s * 1000 > window)
		window = (int64_t)k->cfg.pin_window_s * 1000;
	cw_engine_lock(k->e);
	rc = cw_eq_exec(k->e, "DELETE FROM kiosk_limits WHERE at_ms <= ?1", "i", now - window);
	if (rc == CW_OK)
		rc = cw_eq_exec(k->e, "DELETE FROM otp_codes WHERE expires_ms <= ?1", "i", now);
	cw_engine_unlock(k->e);
	if (rc)
		cw_warn("kiosk.tick", "err=%s", cw_errname(rc));
}
