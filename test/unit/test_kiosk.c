/* test_kiosk.c - customer sign-in at the kiosk (src/edge/cw_kiosk.c), on a
 * real engine in a temporary directory with a fake SMS sender that records
 * the last text: one-time codes (6 digits in the text, only a keyed hash
 * stored, never in the database file or the log), wrong codes and the
 * attempt limits per code and per phone (not reset by a new code), request
 * limits per phone and per kiosk, expiry, single use; customer tokens (own
 * key, the chain key shared by the kiosks of a chain, tampering, expiry,
 * revocation, the key file across a restart); the staff-PIN offline sign-in
 * with its audit row and telemetry; SMS failures; the config section; and
 * pruning. Time is moved with cw_engine_test_advance_clock(), never slept.
 * Argon2id costs ~0.1 s a hash: the staff tests use few. */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_engine.h"
#include "cw_engine_test.h"
#include "cw_error.h"
#include "cw_jsoncfg.h"
#include "cw_kiosk.h"
#include "cw_log.h"
#include "cw_testutil.h"

#define PHONE "+972521234567"
#define KIOSK_A "10.0.0.1"
#define KIOSK_B "10.0.0.2"

/* ---- the fake SMS sender ---- */
struct fake_sms {
	int calls;
	char to[CW_PHONE_E164_MAX];
	char text[512];
	int64_t expires_wall_ms;
	bool failing; /* answer "failing" (the first attempt failed) */
	int rc;	      /* returned by send (CW_OK unless a test sets it) */
};

static int fake_send(void *ctx, const char *to, const char *text, int64_t expires_wall_ms,
		     int wait_ms, const char **state)
{
	struct fake_sms *f = ctx;

	ck_assert_int_gt(wait_ms, 0);
	f->calls++;
	snprintf(f->to, sizeof(f->to), "%s", to);
	snprintf(f->text, sizeof(f->text), "%s", text);
	f->expires_wall_ms = expires_wall_ms;
	*state = f->failing ? "failing" : "sent";
	return f->rc;
}

static const char *fake_health(void *ctx)
{
	return ((struct fake_sms *)ctx)->failing ? "unreachable" : "ok";
}

/* ---- one device: an engine and its kiosk in a directory of its own ---- */
struct dev {
	char dir[256];
	char db[300];
	char chain[64];
	char device[64];
	struct cw_engine *e;
	struct cw_kiosk *k;
	struct fake_sms sms;
};

static struct dev d1, d2, d3;
static struct cw_kiosk_config kc; /* what the next kiosk_open uses */

static int fake_unlock(void *ctx, int bus, int board, int lock, int64_t *latency_ms)
{
	(void)ctx, (void)bus, (void)board, (void)lock;
	*latency_ms = 1;
	return CW_OK;
}

static void kiosk_open(struct dev *d, bool with_sms)
{
	struct cw_kiosk_sms s = {.send = fake_send, .health = fake_health, .ctx = &d->sms};

	ck_assert_int_eq(cw_kiosk_new(&kc, d->e, with_sms ? &s : NULL, d->dir, d->chain, d->device,
				      &d->k),
			 CW_OK);
	ck_assert_ptr_nonnull(d->k);
}

static void kiosk_close(struct dev *d)
{
	cw_kiosk_free(d->k);
	d->k = NULL;
}

static void dev_open(struct dev *d, const char *chain, const char *device)
{
	struct cw_engine_hw hw = {.unlock = fake_unlock};
	struct cw_engine_config ec;

	memset(d, 0, sizeof(*d));
	ck_assert_int_eq(cw_test_tmpdir(d->dir, sizeof(d->dir)), CW_OK);
	snprintf(d->db, sizeof(d->db), "%s/edge.db", d->dir);
	snprintf(d->chain, sizeof(d->chain), "%s", chain);
	snprintf(d->device, sizeof(d->device), "%s", device);
	memset(&ec, 0, sizeof(ec));
	snprintf(ec.db_path, sizeof(ec.db_path), "%s", d->db);
	snprintf(ec.chain_id, sizeof(ec.chain_id), "%s", chain);
	snprintf(ec.branch_id, sizeof(ec.branch_id), "branch-1");
	snprintf(ec.device_id, sizeof(ec.device_id), "%s", device);
	cw_rules_defaults(&ec.rules);
	ck_assert_int_eq(cw_engine_new(&ec, &hw, &d->e), CW_OK);
	kiosk_open(d, true);
}

static void dev_close(struct dev *d)
{
	if (!d->e)
		return;
	kiosk_close(d);
	cw_engine_free(d->e);
	d->e = NULL;
	cw_test_rmrf(d->dir);
}

static void setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	cw_log_set_level(CW_LOG_WARN);
	cw_kiosk_config_defaults(&kc);
	dev_open(&d1, "chain-1", "device-1");
}

static void teardown(void)
{
	dev_close(&d1);
	dev_close(&d2);
	dev_close(&d3);
}

/* ---- helpers ---- */

static long long dbint(const struct dev *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static long long dbint(const struct dev *d, const char *fmt, ...)
{
	char sql[512];
	va_list ap;

	va_start(ap, fmt);
	ck_assert_int_lt(vsnprintf(sql, sizeof(sql), fmt, ap), (int)sizeof(sql));
	va_end(ap);
	return cw_test_db_int(d->db, sql);
}

/* First column of the first row of sql as text ("" when no row). */
static void dbtext(const struct dev *d, const char *sql, char *out, size_t cap)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;

	out[0] = '\0';
	ck_assert_int_eq(sqlite3_open_v2(d->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(h);
}

/* The one run of exactly six digits in the last text. */
static void code_of(const struct dev *d, char code[CW_KIOSK_CODE_LEN + 1])
{
	const char *t = d->sms.text;
	int found = 0;

	for (size_t i = 0; t[i];) {
		size_t n = strspn(t + i, "0123456789");
		if (n == CW_KIOSK_CODE_LEN) {
			memcpy(code, t + i, CW_KIOSK_CODE_LEN);
			code[CW_KIOSK_CODE_LEN] = '\0';
			found++;
		}
		i += n ? n : 1;
	}
	ck_assert_msg(found == 1, "expected one 6-digit code in the text, found %d", found);
}

/* Another 6-digit code than c. */
static void other_code(const char *c, char out[CW_KIOSK_CODE_LEN + 1])
{
	snprintf(out, CW_KIOSK_CODE_LEN + 1, "%s", c);
	out[0] = (char)('0' + (c[0] - '0' + 1) % 10);
}

static int request(struct dev *d, const char *phone, const char *lang, const char *kiosk,
		   struct cw_kiosk_why *why)
{
	char out[CW_PHONE_E164_MAX];
	const char *state = NULL;
	int rc = cw_kiosk_otp_request(d->k, phone, lang, kiosk, out, &state, why);

	ck_assert_ptr_nonnull(state);
	return rc;
}

/* Requests a code that must go out; returns it. */
static void request_ok(struct dev *d, const char *phone, char code[CW_KIOSK_CODE_LEN + 1])
{
	struct cw_kiosk_why why;
	int calls = d->sms.calls;

	ck_assert_int_eq(request(d, phone, "en", KIOSK_A, &why), CW_OK);
	ck_assert_ptr_null(why.reason);
	ck_assert_int_eq(d->sms.calls, calls + 1);
	code_of(d, code);
}

static int verify(struct dev *d, const char *phone, const char *code, struct cw_kiosk_why *why,
		  char **token)
{
	struct cw_kiosk_signin s;
	int rc = cw_kiosk_otp_verify(d->k, phone, code, KIOSK_A, &s, why);

	if (rc == CW_OK) {
		ck_assert_ptr_nonnull(s.token);
		ck_assert_str_eq(s.method, "otp");
		if (token)
			*token = s.token;
		else
			free(s.token);
	} else {
		ck_assert_ptr_null(s.token);
	}
	return rc;
}

static void expect_why(const struct cw_kiosk_why *why, const char *reason, int attempts_left)
{
	ck_assert_ptr_nonnull(why->reason);
	ck_assert_str_eq(why->reason, reason);
	ck_assert_int_eq(why->attempts_left, attempts_left);
}

/* A signed-in customer's token via the code. */
static char *signin(struct dev *d, const char *phone)
{
	char code[CW_KIOSK_CODE_LEN + 1], *token = NULL;
	struct cw_kiosk_why why;

	request_ok(d, phone, code);
	ck_assert_int_eq(verify(d, phone, code, &why, &token), CW_OK);
	return token;
}

static bool token_ok(struct dev *d, const char *token)
{
	char phone[CW_PHONE_E164_MAX], jti[64];
	int rc = cw_kiosk_token_check(d->k, token, phone, jti);

	if (rc != CW_OK) {
		ck_assert_int_eq(rc, CW_ERR_AUTH);
		ck_assert_str_eq(phone, "");
		ck_assert_str_eq(jti, "");
	}
	return rc == CW_OK;
}

/* The token's claims, decoded without checking the signature. */
static cJSON *claims_of(const char *token)
{
	const char *a = strchr(token, '.'), *b = a ? strchr(a + 1, '.') : NULL;
	unsigned char bin[1024];
	size_t len = 0;
	cJSON *c;

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(sodium_base642bin(bin, sizeof(bin) - 1, a + 1, (size_t)(b - a - 1), NULL,
					   &len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
			 0);
	bin[len] = '\0';
	c = cJSON_Parse((const char *)bin);
	ck_assert_ptr_nonnull(c);
	return c;
}

static const char *claim_str(const cJSON *c, const char *k)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, k));

	ck_assert_msg(s != NULL, "claim %s missing", k);
	return s;
}

static int64_t claim_int(const cJSON *c, const char *k)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(c, k);

	ck_assert_msg(cJSON_IsNumber(it), "claim %s missing", k);
	return (int64_t)it->valuedouble;
}

/* Whether the bytes of needle occur in the file. */
static bool file_has(const char *path, const char *needle)
{
	size_t len = strlen(needle);
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;
	bool hit = false;

	if (!f)
		return false;
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	for (long i = 0; i + (long)len <= n && !hit; i++)
		hit = memcmp(buf + i, needle, len) == 0;
	free(buf);
	return hit;
}

/* Whether code is in the database or its WAL. */
static bool db_has(const struct dev *d, const char *code)
{
	char p[320];

	snprintf(p, sizeof(p), "%s-wal", d->db);
	return file_has(d->db, code) || file_has(p, code);
}

/* ---- codes ---- */

START_TEST(code_in_text_only_hash_stored)
{
	char code[2][CW_KIOSK_CODE_LEN + 1], hash[80], want[80], logpath[320], out[CW_PHONE_E164_MAX];
	unsigned char h[crypto_generichash_BYTES];
	crypto_generichash_state st;
	const char *state = NULL;
	struct cw_kiosk_why why;
	int64_t now;
	int saved;
	bool in_db[2];

	/* the log goes to a file for this test: the code must not be in it */
	snprintf(logpath, sizeof(logpath), "%s/stderr.log", d1.dir);
	cw_log_set_level(CW_LOG_DEBUG);
	saved = cw_test_stderr_to(logpath);
	ck_assert_int_ge(saved, 0);

	/* Hebrew (the default language) */
	now = cw_engine_now_wall();
	ck_assert_int_eq(cw_kiosk_otp_request(d1.k, "052-123-4567", NULL, KIOSK_A, out, &state, &why),
			 CW_OK);
	ck_assert_str_eq(out, PHONE);
	ck_assert_str_eq(state, "sent");
	ck_assert_int_eq(d1.sms.calls, 1);
	ck_assert_str_eq(d1.sms.to, PHONE);
	ck_assert_ptr_nonnull(strstr(d1.sms.text, "קוד"));
	ck_assert_ptr_nonnull(strstr(d1.sms.text, "CartWise"));
	ck_assert_ptr_nonnull(strstr(d1.sms.text, " 5 ")); /* minutes */
	ck_assert_int_ge(d1.sms.expires_wall_ms, now + 300 * 1000);
	ck_assert_int_le(d1.sms.expires_wall_ms, now + 302 * 1000);
	code_of(&d1, code[0]);
	dbtext(&d1, "SELECT code_hash FROM otp_codes WHERE phone = '" PHONE "'", hash, sizeof(hash));
	ck_assert_int_eq(strlen(hash), 64);
	ck_assert_ptr_null(strstr(hash, code[0]));
	/* keyed: not the plain BLAKE2b of phone and code either */
	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)PHONE, sizeof(PHONE));
	crypto_generichash_update(&st, (const unsigned char *)code[0], CW_KIOSK_CODE_LEN);
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(want, sizeof(want), h, sizeof(h));
	ck_assert_str_ne(hash, want);
	in_db[0] = db_has(&d1, code[0]);

	/* English; an unknown language falls back to the default */
	ck_assert_int_eq(request(&d1, PHONE, "en", KIOSK_A, &why), CW_OK);
	ck_assert_ptr_nonnull(strstr(d1.sms.text, "Your CartWise code is "));
	ck_assert_ptr_nonnull(strstr(d1.sms.text, "valid for 5 minutes"));
	code_of(&d1, code[1]);
	ck_assert_ptr_nonnull(strstr(d1.sms.text, code[1]));
	in_db[1] = db_has(&d1, code[1]);
	/* A random code can occur in the file by chance (in a hex id, a
	 * time stamp); a stored code is there every time. */
	ck_assert_msg(!(in_db[0] && in_db[1]), "the codes are in the database file");
	ck_assert_int_eq(request(&d1, PHONE, "fr", KIOSK_A, &why), CW_OK);
	ck_assert_ptr_nonnull(strstr(d1.sms.text, "קוד"));
	code_of(&d1, code[1]);
	/* only the latest code counts */
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes"), 1);

	/* something that does log (a refused token), so the capture is seen to work */
	ck_assert(!token_ok(&d1, "x.y.z"));
	ck_assert_int_eq(cw_test_stderr_back(saved, logpath, NULL, 0), 0);
	ck_assert_msg(!file_has(logpath, code[0]) || !file_has(logpath, code[1]),
		      "the codes are in the log");
	/* the log did record the requests (so the check above saw something) */
	ck_assert(file_has(logpath, "event="));
}
END_TEST

START_TEST(wrong_code_counts_down)
{
	char code[CW_KIOSK_CODE_LEN + 1], wrong[CW_KIOSK_CODE_LEN + 1];
	struct cw_kiosk_why why;

	request_ok(&d1, PHONE, code);
	other_code(code, wrong);
	/* not a code at all: refused, no attempt used */
	ck_assert_int_eq(verify(&d1, PHONE, "12345", &why, NULL), CW_ERR_INVAL);
	ck_assert_int_eq(verify(&d1, PHONE, "1234567", &why, NULL), CW_ERR_INVAL);
	ck_assert_int_eq(verify(&d1, PHONE, "12a456", &why, NULL), CW_ERR_INVAL);
	ck_assert_int_eq(verify(&d1, PHONE, NULL, &why, NULL), CW_ERR_INVAL);
	ck_assert_int_eq(verify(&d1, "021234567", code, &why, NULL), CW_ERR_INVAL);
	expect_why(&why, "invalid_phone", -1);
	for (int left = kc.max_attempts_per_code - 1; left >= 0; left--) {
		ck_assert_int_eq(verify(&d1, "052-1234567", wrong, &why, NULL), CW_ERR_AUTH);
		expect_why(&why, "wrong_code", left);
	}
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_audit WHERE event = 'otp_failed'"),
			 kc.max_attempts_per_code);
	/* the code is dead: even the right one is refused now */
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "code_expired", -1);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes"), 0);
	/* a new code works */
	request_ok(&d1, PHONE, code);
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_OK);
}
END_TEST

START_TEST(failures_per_phone_outlive_new_codes)
{
	char code[CW_KIOSK_CODE_LEN + 1], wrong[CW_KIOSK_CODE_LEN + 1];
	struct cw_kiosk_why why;

	kiosk_close(&d1);
	kc.max_attempts_per_code = 3;
	kc.max_failures_per_phone_hour = 7;
	kc.max_requests_per_phone_hour = 10;
	kiosk_open(&d1, true);

	/* code 1: three wrong guesses kill it */
	request_ok(&d1, PHONE, code);
	other_code(code, wrong);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(verify(&d1, PHONE, wrong, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "wrong_code", 0);
	cw_engine_test_advance_clock(10 * 60 * 1000LL);
	/* code 2, ten minutes later: the phone's count goes on */
	request_ok(&d1, PHONE, code);
	other_code(code, wrong);
	ck_assert_int_eq(verify(&d1, PHONE, wrong, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "wrong_code", 2); /* per code: 2; phone: 7 - 4 = 3 */
	ck_assert_int_eq(verify(&d1, PHONE, wrong, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "wrong_code", 1);
	ck_assert_int_eq(verify(&d1, PHONE, wrong, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "wrong_code", 0);
	/* code 3: one guess left for the phone, whatever the code allows */
	request_ok(&d1, PHONE, code);
	other_code(code, wrong);
	ck_assert_int_eq(verify(&d1, PHONE, wrong, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "wrong_code", 0);
	/* seven failures in the hour: even the right code is refused */
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_ERR_LIMIT);
	ck_assert_str_eq(why.reason, "too_many_attempts");
	/* the oldest failures leave the window 50 minutes from now */
	ck_assert_int_ge(why.retry_after_s, 50 * 60 - 2);
	ck_assert_int_le(why.retry_after_s, 50 * 60);
	/* and a new code is refused up front */
	ck_assert_int_eq(request(&d1, PHONE, "en", KIOSK_A, &why), CW_ERR_LIMIT);
	ck_assert_str_eq(why.reason, "too_many_attempts");
	ck_assert_int_gt(why.retry_after_s, 0);
	/* another phone is not affected */
	request_ok(&d1, "0541234567", code);
	ck_assert_int_eq(verify(&d1, "0541234567", code, &why, NULL), CW_OK);
	/* just before the first three leave the window: still refused */
	cw_engine_test_advance_clock(50 * 60 * 1000LL - 5000);
	ck_assert_int_eq(request(&d1, PHONE, "en", KIOSK_A, &why), CW_ERR_LIMIT);
	ck_assert_int_le(why.retry_after_s, 5);
	/* then four failures remain in the hour: a new code, and the right
	 * code signs in */
	cw_engine_test_advance_clock(5000 + 1000);
	request_ok(&d1, PHONE, code);
	other_code(code, wrong);
	ck_assert_int_eq(verify(&d1, PHONE, wrong, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "wrong_code", 2); /* per code: 2; phone: 7 - 5 = 2 */
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_OK);
	/* an hour after the last failure everything is free again */
	cw_engine_test_advance_clock(3600 * 1000LL);
	request_ok(&d1, PHONE, code);
	other_code(code, wrong);
	ck_assert_int_eq(verify(&d1, PHONE, wrong, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "wrong_code", 2);
}
END_TEST

START_TEST(request_limits)
{
	char code[CW_KIOSK_CODE_LEN + 1], phone[32];
	struct cw_kiosk_why why;
	int calls;

	kiosk_close(&d1);
	kc.max_requests_per_kiosk_hour = 8;
	kiosk_open(&d1, true);

	/* per phone: 5 an hour (default) */
	for (int i = 0; i < 5; i++) {
		request_ok(&d1, PHONE, code);
		cw_engine_test_advance_clock(60 * 1000);
	}
	calls = d1.sms.calls;
	ck_assert_int_eq(request(&d1, "052 123 4567", "en", KIOSK_B, &why), CW_ERR_LIMIT);
	ck_assert_str_eq(why.reason, "too_many_requests");
	ck_assert_int_eq(why.attempts_left, -1);
	/* the first request (5 minutes ago) leaves the window in 55 minutes */
	ck_assert_int_ge(why.retry_after_s, 55 * 60 - 2);
	ck_assert_int_le(why.retry_after_s, 55 * 60);
	ck_assert_int_eq(d1.sms.calls, calls); /* no text */
	/* the refused request did not replace the pending code */
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_OK);

	/* per kiosk (client address): 8 an hour, over any phones; KIOSK_A has 5 */
	for (int i = 0; i < 3; i++) {
		snprintf(phone, sizeof(phone), "05%d1234567", i + 3);
		request_ok(&d1, phone, code);
	}
	ck_assert_int_eq(request(&d1, "0581234567", "en", KIOSK_A, &why), CW_ERR_LIMIT);
	ck_assert_str_eq(why.reason, "too_many_requests");
	ck_assert_int_ge(why.retry_after_s, 55 * 60 - 2);
	ck_assert_int_le(why.retry_after_s, 55 * 60);
	/* another kiosk may */
	ck_assert_int_eq(request(&d1, "0581234567", "en", KIOSK_B, &why), CW_OK);
	/* an hour on, the first kiosk may again */
	cw_engine_test_advance_clock(55 * 60 * 1000LL + 1000);
	ck_assert_int_eq(request(&d1, "0591234567", "en", KIOSK_A, &why), CW_OK);

	/* kiosk actions (the return flow) have a count of their own */
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(cw_kiosk_count_kiosk(d1.k, KIOSK_A, &why), CW_OK);
	ck_assert_int_eq(cw_kiosk_count_kiosk(d1.k, KIOSK_A, &why), CW_ERR_LIMIT);
	ck_assert_str_eq(why.reason, "too_many_requests");
	ck_assert_int_gt(why.retry_after_s, 3500);
	ck_assert_int_eq(cw_kiosk_count_kiosk(d1.k, KIOSK_B, &why), CW_OK);
}
END_TEST

START_TEST(invalid_phone_refused)
{
	struct cw_kiosk_why why;

	ck_assert_int_eq(request(&d1, "021234567", "en", KIOSK_A, &why), CW_ERR_INVAL);
	expect_why(&why, "invalid_phone", -1);
	ck_assert_int_eq(request(&d1, "+14155550123", "en", KIOSK_A, &why), CW_ERR_INVAL);
	ck_assert_int_eq(request(&d1, NULL, "en", KIOSK_A, &why), CW_ERR_INVAL);
	ck_assert_int_eq(d1.sms.calls, 0);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_limits"), 0);
	/* allowed by the config */
	kiosk_close(&d1);
	kc.allow_international = true;
	kiosk_open(&d1, true);
	ck_assert_int_eq(request(&d1, "0014155550123", "en", KIOSK_A, &why), CW_OK);
	ck_assert_str_eq(d1.sms.to, "+14155550123");
}
END_TEST

START_TEST(code_expires)
{
	char code[CW_KIOSK_CODE_LEN + 1];
	struct cw_kiosk_why why;

	request_ok(&d1, PHONE, code);
	cw_engine_test_advance_clock((kc.otp_ttl_s - 2) * 1000LL);
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_OK);
	request_ok(&d1, PHONE, code);
	cw_engine_test_advance_clock((kc.otp_ttl_s + 1) * 1000LL);
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "code_expired", -1);
	/* no code ever requested for this phone */
	ck_assert_int_eq(verify(&d1, "0501234567", code, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "code_expired", -1);
}
END_TEST

START_TEST(code_used_once)
{
	char code[CW_KIOSK_CODE_LEN + 1], *token = NULL, jti[64] = "", sql[200];
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;
	int64_t now;
	cJSON *c;

	request_ok(&d1, PHONE, code);
	now = cw_engine_now_wall();
	ck_assert_int_eq(cw_kiosk_otp_verify(d1.k, "0521234567", code, KIOSK_A, &s, &why), CW_OK);
	token = s.token;
	ck_assert_str_eq(s.phone, PHONE);
	ck_assert_str_eq(s.method, "otp");
	ck_assert_int_ge(s.expires_wall_ms, now + 30 * 86400 * 1000LL - 2000);
	ck_assert_int_le(s.expires_wall_ms, now + 30 * 86400 * 1000LL + 2000);
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_ERR_AUTH);
	expect_why(&why, "code_expired", -1);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes"), 0);

	/* the claims of the contract */
	c = claims_of(token);
	ck_assert_str_eq(claim_str(c, "iss"), "cartwise-edge");
	ck_assert_str_eq(claim_str(c, "aud"), "chain-1");
	ck_assert_str_eq(claim_str(c, "typ"), "customer");
	ck_assert_str_eq(claim_str(c, "sub"), PHONE);
	ck_assert_str_eq(claim_str(c, "amr"), "otp");
	ck_assert_str_eq(claim_str(c, "branch"), "branch-1");
	ck_assert_str_eq(claim_str(c, "dev"), "device-1");
	ck_assert_int_eq(strlen(claim_str(c, "jti")), 36);
	ck_assert_int_eq(claim_int(c, "exp") - claim_int(c, "iat"), 30 * 86400);
	ck_assert_int_eq(claim_int(c, "exp") * 1000, s.expires_wall_ms);
	snprintf(jti, sizeof(jti), "%s", claim_str(c, "jti"));
	cJSON_Delete(c);
	/* the audit trail has the token id, never the token */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM kiosk_audit WHERE event = 'otp_verified' AND phone = '" PHONE
		 "' AND kiosk = '" KIOSK_A "' AND token_id = '%s'",
		 jti);
	ck_assert_int_eq(cw_test_db_int(d1.db, sql), 1);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_audit WHERE detail LIKE '%%%s%%'",
			       token + strlen(token) - 20),
			 0);
	free(token);
}
END_TEST

/* ---- tokens ---- */

START_TEST(token_checks)
{
	char *token = signin(&d1, PHONE), *other, *bad, phone[CW_PHONE_E164_MAX], jti[64];
	const char *revoked[1];
	struct cw_rules rules;
	size_t n = strlen(token);
	cJSON *c = claims_of(token);

	ck_assert_int_eq(cw_kiosk_token_check(d1.k, token, phone, jti), CW_OK);
	ck_assert_str_eq(phone, PHONE);
	ck_assert_str_eq(jti, claim_str(c, "jti"));
	cJSON_Delete(c);

	/* tampered: a character of the claims, of the signature; cut short */
	bad = strdup(token);
	ck_assert_ptr_nonnull(bad);
	bad[strchr(bad, '.') - bad + 5] ^= 1;
	ck_assert(!token_ok(&d1, bad));
	snprintf(bad, n + 1, "%s", token);
	bad[n - 3] = bad[n - 3] == 'A' ? 'B' : 'A';
	ck_assert(!token_ok(&d1, bad));
	snprintf(bad, n + 1, "%s", token);
	bad[n - 10] = '\0';
	ck_assert(!token_ok(&d1, bad));
	ck_assert(!token_ok(&d1, ""));
	ck_assert(!token_ok(&d1, "a.b.c"));
	free(bad);

	/* a kiosk with another device key (another data dir) */
	dev_open(&d2, "chain-1", "device-2");
	ck_assert(!token_ok(&d2, token));
	other = signin(&d2, PHONE);
	ck_assert(token_ok(&d2, other));
	ck_assert(!token_ok(&d1, other));
	free(other);

	/* revoked by the chain: that token only */
	other = signin(&d1, "0541234567");
	revoked[0] = jti;
	cw_rules_defaults(&rules);
	ck_assert_int_eq(cw_engine_apply_config(d1.e, 1, &rules, revoked, 1), CW_OK);
	ck_assert(!token_ok(&d1, token));
	ck_assert(token_ok(&d1, other));
	ck_assert_int_eq(cw_engine_apply_config(d1.e, 2, &rules, NULL, 0), CW_OK);
	ck_assert(token_ok(&d1, token));

	/* expiry: token_days (30), plus the verifier's minute of leeway */
	cw_engine_test_advance_clock(30 * 86400 * 1000LL - 60 * 1000);
	ck_assert(token_ok(&d1, token));
	cw_engine_test_advance_clock(2 * 60 * 1000 + 1000);
	ck_assert(!token_ok(&d1, token));
	ck_assert(!token_ok(&d1, other));
	free(other);
	free(token);
}
END_TEST

START_TEST(chain_key_shared_by_the_chain)
{
	unsigned char seed[32], seed2[32];
	char *t1, *t2, *own1, *t3;

	dev_open(&d2, "chain-1", "device-2");
	dev_open(&d3, "chain-2", "device-3");
	/* without the chain key each kiosk knows only its own tokens */
	own1 = signin(&d1, PHONE);
	t2 = signin(&d2, PHONE);
	ck_assert(!token_ok(&d2, own1));
	ck_assert(!token_ok(&d1, t2));
	free(t2);

	randombytes_buf(seed, sizeof(seed));
	cw_kiosk_set_chain_seed(d1.k, seed);
	cw_kiosk_set_chain_seed(d2.k, seed);
	cw_kiosk_set_chain_seed(d3.k, seed);
	t1 = signin(&d1, PHONE);
	t2 = signin(&d2, "0541234567");
	ck_assert(token_ok(&d1, t1));
	ck_assert(token_ok(&d2, t1));
	ck_assert(token_ok(&d1, t2));
	ck_assert(token_ok(&d2, t2));
	/* the same key in another chain: the audience differs */
	ck_assert(!token_ok(&d3, t1));
	ck_assert(!token_ok(&d3, t2));
	t3 = signin(&d3, PHONE);
	ck_assert(!token_ok(&d1, t3));
	free(t3);
	/* the device's own tokens from before the key came stay good there */
	ck_assert(token_ok(&d1, own1));
	ck_assert(!token_ok(&d2, own1));
	/* a different chain key */
	randombytes_buf(seed2, sizeof(seed2));
	cw_kiosk_set_chain_seed(d2.k, seed2);
	ck_assert(!token_ok(&d2, t1));
	cw_kiosk_set_chain_seed(d2.k, seed);
	ck_assert(token_ok(&d2, t1));
	/* forgotten: signs with the device key again */
	cw_kiosk_set_chain_seed(d1.k, NULL);
	free(own1);
	own1 = signin(&d1, "0501234567");
	ck_assert(token_ok(&d1, own1));
	ck_assert(!token_ok(&d2, own1));
	free(own1);
	free(t1);
	free(t2);
}
END_TEST

START_TEST(local_key_persists)
{
	char path[320], *token;
	struct stat sb;
	FILE *f;

	token = signin(&d1, PHONE);
	snprintf(path, sizeof(path), "%s/kiosk.key", d1.dir);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_size, 32);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	/* a restart of the module reads the same key */
	kiosk_close(&d1);
	kiosk_open(&d1, true);
	ck_assert(token_ok(&d1, token));
	/* a new key file: the old tokens are no longer ours */
	kiosk_close(&d1);
	ck_assert_int_eq(unlink(path), 0);
	kiosk_open(&d1, true);
	ck_assert(!token_ok(&d1, token));
	free(token);
	/* a damaged key file is refused, not replaced */
	kiosk_close(&d1);
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	fputs("short", f);
	fclose(f);
	ck_assert_int_eq(cw_kiosk_new(&kc, d1.e, NULL, d1.dir, "chain-1", "device-1", &d1.k),
			 CW_ERR_IO);
	ck_assert_ptr_null(d1.k);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_size, 5);
}
END_TEST


/* Five guesses on each of many phones add up: the kiosk's own failure
 * count stops them, while another kiosk is not affected. */
START_TEST(failures_per_kiosk_across_phones)
{
	char code[CW_KIOSK_CODE_LEN + 1], wrong[CW_KIOSK_CODE_LEN + 1], phone[16];
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;

	kiosk_close(&d1);
	kc.max_failures_per_kiosk_hour = 4;
	kc.max_requests_per_kiosk_hour = 100;
	kiosk_open(&d1, true);
	for (int i = 0; i < 4; i++) {
		snprintf(phone, sizeof(phone), "05412345%02d", i);
		request_ok(&d1, phone, code);
		other_code(code, wrong);
		ck_assert_int_eq(verify(&d1, phone, wrong, &why, NULL), CW_ERR_AUTH);
		expect_why(&why, "wrong_code", 4);
	}
	/* a fifth phone: even its right code is refused from this kiosk */
	request_ok(&d1, "0541234599", code);
	ck_assert_int_eq(verify(&d1, "0541234599", code, &why, NULL), CW_ERR_LIMIT);
	expect_why(&why, "too_many_attempts", 0);
	ck_assert_int_gt(why.retry_after_s, 0);
	/* from another kiosk it works */
	ck_assert_int_eq(cw_kiosk_otp_verify(d1.k, "0541234599", code, KIOSK_B, &s, &why), CW_OK);
	free(s.token);
}
END_TEST

/* ---- the staff-PIN offline path ---- */

/* The one Argon2id hash of the tests, of STAFF_PIN, made once in main(). */
#define STAFF_PIN "4321"
static char staff_hash[crypto_pwhash_STRBYTES];

static int offline(struct dev *d, const char *phone, const char *pin, const char *kiosk,
		   struct cw_kiosk_signin *s, struct cw_kiosk_why *why)
{
	int rc = cw_kiosk_offline_signin(d->k, phone, pin, kiosk, s, why);

	if (rc != CW_OK)
		ck_assert_ptr_null(s->token);
	return rc;
}

START_TEST(staff_pin_signin)
{
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;
	char sql[600], jti[64];
	int64_t now, after;
	cJSON *c, *info;

	kiosk_close(&d1);
	kc.nstaff = 1;
	snprintf(kc.staff[0].id, sizeof(kc.staff[0].id), "s-17");
	snprintf(kc.staff[0].name, sizeof(kc.staff[0].name), "Dana");
	snprintf(kc.staff[0].pin_hash, sizeof(kc.staff[0].pin_hash), "%s", staff_hash);
	kiosk_open(&d1, true);
	info = cw_kiosk_info_json(d1.k);
	ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(info, "offline_signin"), 0)->valuestring,
			 "staff_pin");
	cJSON_Delete(info);

	/* the session starts between before and after: the Argon2id check of
	 * the PIN alone takes seconds under qemu (scripts/test-arm64) */
	now = cw_engine_now_wall();
	ck_assert_int_eq(offline(&d1, "052-1234567", STAFF_PIN, KIOSK_A, &s, &why), CW_OK);
	after = cw_engine_now_wall();
	ck_assert_ptr_null(why.reason);
	ck_assert_str_eq(s.method, "staff_pin");
	ck_assert_str_eq(s.phone, PHONE);
	ck_assert_int_ge(s.expires_wall_ms, now + 15 * 60 * 1000 - 2000);
	ck_assert_int_le(s.expires_wall_ms, after + 15 * 60 * 1000 + 2000);
	c = claims_of(s.token);
	ck_assert_str_eq(claim_str(c, "amr"), "staff_pin");
	ck_assert_str_eq(claim_str(c, "sub"), PHONE);
	ck_assert_int_eq(claim_int(c, "exp") - claim_int(c, "iat"), 15 * 60);
	snprintf(jti, sizeof(jti), "%s", claim_str(c, "jti"));
	cJSON_Delete(c);
	ck_assert(token_ok(&d1, s.token));
	/* audit row and telemetry for the chain */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM kiosk_audit WHERE event = 'offline_signin' AND staff_id = "
		 "'s-17' AND phone = '" PHONE "' AND token_id = '%s' AND kiosk = '" KIOSK_A "'",
		 jti);
	ck_assert_int_eq(cw_test_db_int(d1.db, sql), 1);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM outbox WHERE kind = 'telemetry' AND "
		 "json_extract(payload, '$.telemetry.event_type') = 'kiosk.offline_signin' AND "
		 "json_extract(payload, '$.telemetry.event_data.staff_id') = 's-17' AND "
		 "json_extract(payload, '$.telemetry.event_data.phone') = '" PHONE "' AND "
		 "json_extract(payload, '$.telemetry.event_data.token_id') = '%s'",
		 jti);
	ck_assert_int_eq(cw_test_db_int(d1.db, sql), 1);
	/* the PIN is in neither (nor its hash) */
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_audit WHERE detail LIKE '%%4321%%'"),
			 0);
	/* the short token ends with offline_token_minutes */
	cw_engine_test_advance_clock(15 * 60 * 1000 + 61 * 1000);
	ck_assert(!token_ok(&d1, s.token));
	free(s.token);

	/* an invalid phone is not a PIN failure */
	ck_assert_int_eq(offline(&d1, "12345", STAFF_PIN, KIOSK_A, &s, &why), CW_ERR_INVAL);
	expect_why(&why, "invalid_phone", -1);
	/* wrong PINs: one of the right shape (an Argon2 check), then
	 * malformed ones, which count the same (4-12 digits) */
	ck_assert_int_eq(offline(&d1, PHONE, "1234", KIOSK_A, &s, &why), CW_ERR_AUTH);
	expect_why(&why, "wrong_pin", 4);
	ck_assert_int_eq(offline(&d1, PHONE, "432", KIOSK_A, &s, &why), CW_ERR_AUTH);
	expect_why(&why, "wrong_pin", 3);
	ck_assert_int_eq(offline(&d1, PHONE, "4321x", KIOSK_A, &s, &why), CW_ERR_AUTH);
	expect_why(&why, "wrong_pin", 2);
	ck_assert_int_eq(offline(&d1, PHONE, "", KIOSK_A, &s, &why), CW_ERR_AUTH);
	expect_why(&why, "wrong_pin", 1);
	ck_assert_int_eq(offline(&d1, PHONE, NULL, KIOSK_A, &s, &why), CW_ERR_AUTH);
	expect_why(&why, "wrong_pin", 0);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_audit WHERE event = "
				    "'offline_refused'"),
			 5);
	/* five failures at this kiosk: the right PIN is refused too */
	ck_assert_int_eq(offline(&d1, PHONE, STAFF_PIN, KIOSK_A, &s, &why), CW_ERR_LIMIT);
	expect_why(&why, "too_many_attempts", 0);
	ck_assert_int_gt(why.retry_after_s, 890);
	ck_assert_int_le(why.retry_after_s, 900);
	/* per kiosk: the next kiosk is not limited */
	ck_assert_int_eq(offline(&d1, PHONE, STAFF_PIN, KIOSK_B, &s, &why), CW_OK);
	free(s.token);
	/* after pin_window_s the first kiosk may again */
	cw_engine_test_advance_clock(901 * 1000);
	ck_assert_int_eq(offline(&d1, PHONE, STAFF_PIN, KIOSK_A, &s, &why), CW_OK);
	free(s.token);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM outbox WHERE kind = 'telemetry' AND "
				    "json_extract(payload, '$.telemetry.event_type') = "
				    "'kiosk.offline_signin'"),
			 3);
}
END_TEST

/* Many kiosk addresses buy a PIN guesser no more than twice the per-kiosk
 * limit; every wrong PIN is reported to the cloud (kiosk.pin_refused). */
START_TEST(pin_failures_device_wide)
{
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;
	char kiosk[32];

	kiosk_close(&d1);
	kc.max_pin_failures = 2;
	kc.nstaff = 1;
	snprintf(kc.staff[0].id, sizeof(kc.staff[0].id), "s-1");
	snprintf(kc.staff[0].name, sizeof(kc.staff[0].name), "Dana");
	snprintf(kc.staff[0].pin_hash, sizeof(kc.staff[0].pin_hash), "%s", staff_hash);
	kiosk_open(&d1, true);
	for (int i = 0; i < 4; i++) { /* 4 kiosks, one wrong PIN each: 4 = 2 x 2 */
		snprintf(kiosk, sizeof(kiosk), "10.0.1.%d", i);
		ck_assert_int_eq(offline(&d1, PHONE, "9999", kiosk, &s, &why), CW_ERR_AUTH);
		expect_why(&why, "wrong_pin", 1);
	}
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM outbox WHERE kind = 'telemetry' AND "
				    "json_extract(payload, '$.telemetry.event_type') = 'kiosk.pin_refused'"),
			 4);
	/* a fifth kiosk, even with the right PIN */
	ck_assert_int_eq(offline(&d1, PHONE, STAFF_PIN, "10.0.1.9", &s, &why), CW_ERR_LIMIT);
	expect_why(&why, "too_many_attempts", 0);
}
END_TEST

START_TEST(staff_pin_from_cloud)
{
	struct cw_staff cloud[1];
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;
	cJSON *info;

	/* no staff at all: the offline path is not offered and refuses */
	info = cw_kiosk_info_json(d1.k);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(info, "offline_signin")), 0);
	cJSON_Delete(info);
	ck_assert_int_eq(offline(&d1, PHONE, STAFF_PIN, KIOSK_A, &s, &why), CW_ERR_AUTH);
	expect_why(&why, "wrong_pin", 4);

	memset(cloud, 0, sizeof(cloud));
	snprintf(cloud[0].id, sizeof(cloud[0].id), "c-1");
	snprintf(cloud[0].name, sizeof(cloud[0].name), "Avi");
	snprintf(cloud[0].pin_hash, sizeof(cloud[0].pin_hash), "%s", staff_hash);
	ck_assert_int_eq(cw_kiosk_set_cloud_staff(d1.k, cloud, 1), CW_OK);
	info = cw_kiosk_info_json(d1.k);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(info, "offline_signin")), 1);
	cJSON_Delete(info);
	ck_assert_int_eq(offline(&d1, PHONE, STAFF_PIN, KIOSK_A, &s, &why), CW_OK);
	ck_assert_str_eq(s.method, "staff_pin");
	ck_assert(token_ok(&d1, s.token));
	free(s.token);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_audit WHERE event = "
				    "'offline_signin' AND staff_id = '%s'",
			       "c-1"),
			 1);
	/* the cloud takes the list back */
	ck_assert_int_eq(cw_kiosk_set_cloud_staff(d1.k, NULL, 0), CW_OK);
	ck_assert_int_eq(offline(&d1, PHONE, STAFF_PIN, KIOSK_A, &s, &why), CW_ERR_AUTH);
	expect_why(&why, "wrong_pin", 3);
	ck_assert_int_eq(cw_kiosk_set_cloud_staff(d1.k, cloud, -1), CW_ERR_INVAL);
	ck_assert_int_eq(cw_kiosk_set_cloud_staff(d1.k, NULL, 1), CW_ERR_INVAL);
	ck_assert_int_eq(cw_kiosk_set_cloud_staff(d1.k, cloud, CW_STAFF_MAX + 1), CW_ERR_INVAL);
}
END_TEST

/* Guesses at one kiosk at the same time (the API has a thread per
 * connection): each is counted before its PIN is checked, so no more than
 * max_pin_failures wrong PINs are ever tried in a window. */
#define NGUESS 6
struct guess {
	pthread_barrier_t *go;
	int rc;
};

static void *guess_thread(void *arg)
{
	struct guess *g = arg;
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;

	pthread_barrier_wait(g->go);
	g->rc = cw_kiosk_offline_signin(d1.k, PHONE, "9999", KIOSK_A, &s, &why);
	free(s.token);
	return NULL;
}

START_TEST(concurrent_pin_guesses_limited)
{
	struct guess g[NGUESS];
	pthread_t th[NGUESS];
	pthread_barrier_t go;
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;
	int wrong = 0, limited = 0;

	kiosk_close(&d1);
	kc.max_pin_failures = 2;
	kc.nstaff = 1;
	snprintf(kc.staff[0].id, sizeof(kc.staff[0].id), "s-17");
	snprintf(kc.staff[0].pin_hash, sizeof(kc.staff[0].pin_hash), "%s", staff_hash);
	kiosk_open(&d1, true);
	pthread_barrier_init(&go, NULL, NGUESS);
	for (int i = 0; i < NGUESS; i++) {
		g[i].go = &go;
		g[i].rc = -1;
		ck_assert_int_eq(pthread_create(&th[i], NULL, guess_thread, &g[i]), 0);
	}
	for (int i = 0; i < NGUESS; i++) {
		pthread_join(th[i], NULL);
		wrong += g[i].rc == CW_ERR_AUTH;
		limited += g[i].rc == CW_ERR_LIMIT;
	}
	pthread_barrier_destroy(&go);
	ck_assert_int_eq(wrong + limited, NGUESS);
	ck_assert_int_eq(wrong, 2);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_limits WHERE kind = 'pin_fail_kiosk'"),
			 2);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_audit WHERE event = 'offline_refused'"),
			 2);
	/* the right PIN after the window: the success leaves no failure behind */
	cw_engine_test_advance_clock(901 * 1000);
	ck_assert_int_eq(offline(&d1, PHONE, STAFF_PIN, KIOSK_A, &s, &why), CW_OK);
	free(s.token);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_limits WHERE kind = 'pin_fail_kiosk' "
				    "AND at_ms > %lld",
			       (long long)cw_engine_now_wall() - 1000),
			 0);
}
END_TEST

/* ---- SMS trouble ---- */

START_TEST(sms_failing_code_still_verifies)
{
	char code[CW_KIOSK_CODE_LEN + 1], out[CW_PHONE_E164_MAX];
	const char *state = NULL;
	struct cw_kiosk_why why;
	cJSON *info;

	d1.sms.failing = true;
	ck_assert_int_eq(cw_kiosk_otp_request(d1.k, "0521234567", "he", KIOSK_A, out, &state, &why),
			 CW_ERR_OFFLINE);
	expect_why(&why, "sms_unreachable", -1);
	ck_assert_str_eq(out, PHONE);
	ck_assert_int_eq(d1.sms.calls, 1);
	info = cw_kiosk_info_json(d1.k);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(info, "sms")), "unreachable");
	cJSON_Delete(info);
	/* the text stays queued and may still arrive: its code works */
	code_of(&d1, code);
	ck_assert_int_eq(verify(&d1, PHONE, code, &why, NULL), CW_OK);

	/* the queue itself failed */
	d1.sms.failing = false;
	d1.sms.rc = CW_ERR_DB;
	cw_log_set_level(CW_LOG_ERROR);
	ck_assert_int_eq(request(&d1, PHONE, "en", KIOSK_A, &why), CW_ERR_OFFLINE);
	expect_why(&why, "sms_unreachable", -1);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes"), 1);
}
END_TEST

START_TEST(no_sms)
{
	char out[CW_PHONE_E164_MAX];
	const char *state = NULL;
	struct cw_kiosk_why why;
	cJSON *info;

	kiosk_close(&d1);
	kiosk_open(&d1, false);
	ck_assert_int_eq(cw_kiosk_otp_request(d1.k, "0521234567", "en", KIOSK_A, out, &state, &why),
			 CW_ERR_OFFLINE);
	expect_why(&why, "sms_unreachable", -1);
	ck_assert_str_eq(out, PHONE);
	/* the code exists (as a hash) */
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes WHERE phone = '%s'", PHONE), 1);
	info = cw_kiosk_info_json(d1.k);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(info, "sms")), "off");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(info, "default_language")), "he");
	ck_assert_int_eq(cJSON_GetObjectItem(info, "otp_ttl_s")->valueint, 300);
	ck_assert_int_eq(cJSON_GetObjectItem(info, "code_length")->valueint, 6);
	ck_assert_int_eq(cJSON_GetObjectItem(info, "idle_seconds")->valueint, 60);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(info, "branch_id")), "branch-1");
	cJSON_Delete(info);
	ck_assert_int_eq(d1.sms.calls, 0);
}
END_TEST

/* ---- config ---- */

static int parse(const char *json, struct cw_kiosk_config *c, char *err, size_t cap)
{
	struct cw_jsoncfg p;
	cJSON *j = cw_test_json(json);
	int rc;

	ck_assert_ptr_nonnull(j);
	cw_kiosk_config_defaults(c);
	cw_jsoncfg_init(&p, err, cap);
	rc = cw_kiosk_config_parse(&p, j, c);
	cJSON_Delete(j);
	return rc;
}

static void parse_fails(const char *json, const char *path_and_words)
{
	struct cw_kiosk_config c;
	char err[512] = "";

	ck_assert_int_eq(parse(json, &c, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, path_and_words) != NULL, "\"%s\" not in \"%s\"", path_and_words,
		      err);
}

START_TEST(config_parse)
{
	static struct cw_kiosk_config c;
	char err[512] = "", hash[128], json[1024];
	char *big;
	size_t n, cap;

	cw_kiosk_config_defaults(&c);
	ck_assert_str_eq(c.default_language, "he");
	ck_assert_int_eq(c.otp_ttl_s, 300);
	ck_assert_int_eq(c.max_attempts_per_code, 5);
	ck_assert_int_eq(c.max_failures_per_phone_hour, 10);
	ck_assert_int_eq(c.max_requests_per_phone_hour, 5);
	ck_assert_int_eq(c.max_requests_per_kiosk_hour, 60);
	ck_assert_int_eq(c.token_days, 30);
	ck_assert_int_eq(c.offline_token_minutes, 15);
	ck_assert_int_eq(c.max_pin_failures, 5);
	ck_assert_int_eq(c.pin_window_s, 900);
	ck_assert(!c.allow_international);

	/* a hash-like string (no real Argon2: the parser checks the prefix) */
	snprintf(hash, sizeof(hash), "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g");
	snprintf(json, sizeof(json),
		 "{'web_root':'/srv/kiosk','default_language':'en','idle_seconds':90,"
		 "'allow_international':true,'token_days':7,'offline_token_minutes':5,"
		 "'otp':{'ttl_s':120,'max_attempts_per_code':3,'max_failures_per_phone_hour':8,"
		 "'max_requests_per_phone_hour':4,'max_requests_per_kiosk_hour':100,"
		 "'max_pin_failures':4,'pin_window_s':600},"
		 "'staff':[{'id':'s-1','name':'Dana','pin_hash':'%s'},"
		 "{'id':'s-2','name':'Avi','pin_hash':'%s'}]}",
		 hash, hash);
	ck_assert_int_eq(parse(json, &c, err, sizeof(err)), CW_OK);
	ck_assert_str_eq(c.web_root, "/srv/kiosk");
	ck_assert_str_eq(c.default_language, "en");
	ck_assert_int_eq(c.idle_seconds, 90);
	ck_assert(c.allow_international);
	ck_assert_int_eq(c.token_days, 7);
	ck_assert_int_eq(c.offline_token_minutes, 5);
	ck_assert_int_eq(c.otp_ttl_s, 120);
	ck_assert_int_eq(c.max_attempts_per_code, 3);
	ck_assert_int_eq(c.max_failures_per_phone_hour, 8);
	ck_assert_int_eq(c.max_requests_per_phone_hour, 4);
	ck_assert_int_eq(c.max_requests_per_kiosk_hour, 100);
	ck_assert_int_eq(c.max_pin_failures, 4);
	ck_assert_int_eq(c.pin_window_s, 600);
	ck_assert_int_eq(c.nstaff, 2);
	ck_assert_str_eq(c.staff[1].id, "s-2");
	ck_assert_str_eq(c.staff[1].pin_hash, hash);
	ck_assert_int_eq(parse("{}", &c, err, sizeof(err)), CW_OK);
	ck_assert_int_eq(c.nstaff, 0);

	parse_fails("{'colour':'blue'}", "kiosk.colour: unknown key");
	parse_fails("{'otp':{'ttl':60}}", "kiosk.otp.ttl: unknown key");
	parse_fails("{'staff':[{'id':'a','name':'A','pin':'1234'}]}",
		    "kiosk.staff[0].pin: unknown key");
	parse_fails("{'default_language':'fr'}", "kiosk.default_language: ");
	parse_fails("{'default_language':'english'}", "kiosk.default_language");
	parse_fails("{'default_language':''}", "kiosk.default_language");
	parse_fails("{'staff':[{'id':'a','name':'A','pin_hash':'$argon2id$x'},{'id':'b','name':'B',"
		    "'pin_hash':'$argon2i$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA'}]}",
		    "kiosk.staff[1].pin_hash: expected an Argon2id hash");
	parse_fails("{'staff':[{'id':'a','name':'A','pin_hash':'1234'}]}",
		    "kiosk.staff[0].pin_hash");
	parse_fails("{'staff':[{'id':'a','name':'A'}]}", "kiosk.staff[0].pin_hash: missing");
	parse_fails("{'staff':[{'name':'A','pin_hash':'$argon2id$x'}]}", "kiosk.staff[0].id: missing");
	parse_fails("{'staff':[{'id':'a b','name':'A','pin_hash':'$argon2id$x'}]}",
		    "kiosk.staff[0].id");
	parse_fails("{'staff':[{'id':'a','name':'A','pin_hash':'$argon2id$x'},{'id':'a','name':'B',"
		    "'pin_hash':'$argon2id$y'}]}",
		    "kiosk.staff[1].id: the same id");
	parse_fails("{'staff':['x']}", "kiosk.staff[0]: expected an object");
	parse_fails("{'staff':{}}", "kiosk.staff");
	parse_fails("{'otp':{'ttl_s':1}}", "kiosk.otp.ttl_s");
	parse_fails("{'otp':{'max_attempts_per_code':0}}", "kiosk.otp.max_attempts_per_code");
	parse_fails("{'otp':{'pin_window_s':'900'}}", "kiosk.otp.pin_window_s");
	parse_fails("{'token_days':0}", "kiosk.token_days");
	parse_fails("{'allow_international':1}", "kiosk.allow_international");
	/* the message never echoes a hash */
	ck_assert_int_eq(parse("{'staff':[{'id':'a','name':'A','pin_hash':'$argon2i$secretish'}]}", &c,
			       err, sizeof(err)),
			 CW_ERR_CONFIG);
	ck_assert_ptr_null(strstr(err, "secretish"));

	/* at most CW_STAFF_MAX */
	cap = 64 + (CW_STAFF_MAX + 1) * 80;
	big = malloc(cap);
	ck_assert_ptr_nonnull(big);
	n = (size_t)snprintf(big, cap, "{'staff':[");
	for (int i = 0; i <= CW_STAFF_MAX; i++)
		n += (size_t)snprintf(big + n, cap - n,
				      "%s{'id':'s%d','name':'N','pin_hash':'$argon2id$x'}", i ? "," : "",
				      i);
	snprintf(big + n, cap - n, "]}");
	ck_assert_int_lt(strlen(big), cap - 1);
	parse_fails(big, "kiosk.staff: at most 50");
	free(big);
}
END_TEST

/* ---- pruning ---- */

START_TEST(tick_prunes)
{
	char code[CW_KIOSK_CODE_LEN + 1], wrong[CW_KIOSK_CODE_LEN + 1];
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;

	request_ok(&d1, PHONE, code);
	other_code(code, wrong);
	ck_assert_int_eq(verify(&d1, PHONE, wrong, &why, NULL), CW_ERR_AUTH);
	ck_assert_int_eq(offline(&d1, PHONE, "12", KIOSK_A, &s, &why), CW_ERR_AUTH);
	ck_assert_int_eq(cw_kiosk_count_kiosk(d1.k, KIOSK_A, &why), CW_OK);
	/* a request (phone, kiosk), a wrong code (phone, kiosk), a PIN, a return */
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_limits"), 6);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes"), 1);
	/* nothing is old yet */
	cw_kiosk_tick(d1.k);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_limits"), 6);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes"), 1);
	/* the code expired; the counts still matter */
	cw_engine_test_advance_clock((kc.otp_ttl_s + 1) * 1000LL);
	request_ok(&d1, "0541234567", code);
	cw_kiosk_tick(d1.k);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes WHERE phone = '%s'", PHONE), 0);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes"), 1);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_limits"), 8);
	/* an hour on, the first six rows are out of every window */
	cw_engine_test_advance_clock(3600 * 1000LL - (kc.otp_ttl_s + 1) * 1000LL + 1000);
	cw_kiosk_tick(d1.k);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM kiosk_limits"), 2);
	ck_assert_int_eq(dbint(&d1, "SELECT count(*) FROM otp_codes"), 0);
	/* the audit trail is kept */
	ck_assert_int_ge(dbint(&d1, "SELECT count(*) FROM kiosk_audit"), 4);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kiosk");
	TCase *tc = tcase_create("kiosk"), *tp = tcase_create("config");
	SRunner *sr;
	int failed;

	if (sodium_init() < 0 ||
	    crypto_pwhash_str(staff_hash, STAFF_PIN, strlen(STAFF_PIN),
			      crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		return EXIT_FAILURE;
	tcase_add_test(tp, config_parse);
	suite_add_tcase(s, tp);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, code_in_text_only_hash_stored);
	tcase_add_test(tc, wrong_code_counts_down);
	tcase_add_test(tc, failures_per_phone_outlive_new_codes);
	tcase_add_test(tc, failures_per_kiosk_across_phones);
	tcase_add_test(tc, request_limits);
	tcase_add_test(tc, invalid_phone_refused);
	tcase_add_test(tc, code_expires);
	tcase_add_test(tc, code_used_once);
	tcase_add_test(tc, token_checks);
	tcase_add_test(tc, chain_key_shared_by_the_chain);
	tcase_add_test(tc, local_key_persists);
	tcase_add_test(tc, staff_pin_signin);
	tcase_add_test(tc, staff_pin_from_cloud);
	tcase_add_test(tc, pin_failures_device_wide);
	tcase_add_test(tc, concurrent_pin_guesses_limited);
	tcase_add_test(tc, sms_failing_code_still_verifies);
	tcase_add_test(tc, no_sms);
	tcase_add_test(tc, tick_prunes);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
