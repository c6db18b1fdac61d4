/* cw_syncer.c - the device's side of the cloud link: enrollment, outbox
 * batches, heartbeat, signed commands, token rotation (docs/SYNC.md).
 *
 * One thread does every exchange in turn over one reused libcurl handle.
 * The thread sleeps on a condition variable (monotonic clock) until the next
 * heartbeat, the end of a backoff, cw_syncer_notify or cw_syncer_free; a
 * transfer in flight is abandoned when the syncer stops (its socket is shut
 * down, and curl's progress callback checks the stop flag), so freeing never
 * waits for a network timeout. */
#include "cw_sync.h"

#include <dirent.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_cred.h"
#include "cw_error.h"
#include "cw_https.h"
#include "cw_jwt.h"
#include "cw_link.h"
#include "cw_log.h"
#include "cw_syncer_int.h"

/* The cloud refuses more (docs/SYNC.md "Up"). */
#define BATCH_ENTRIES_MAX 1000
#define BATCH_BYTES_MAX (1024 * 1024)
/* JSON around one entry's payload: keys, seq, time, quotes (an estimate on
 * the high side; the kind and ids are added exactly). */
#define ENTRY_OVERHEAD 160
/* While unenrolled without a code, or revoked: look again this often (the
 * configuration cannot change under us; this only bounds the sleep). */
#define IDLE_WAIT_MS (3600 * 1000)
#define REFUSED_RING 32
/* A rotation the cloud refused (not a 401) is tried again this much later. */
#define ROTATE_RETRY_MS (3600 * 1000)
/* Commands received over MQTT waiting for the syncer's thread; more are
 * dropped (the heartbeat hands them out again until they have a result). */
#define CMDQ_MAX 16

struct cw_syncer {
	struct cw_sync_config cfg;
	struct cw_sync_source src;
	char cred_path[600];
	struct cw_cred cred;
	bool enrolled;
	bool cred_dirty; /* a rotated token not yet saved (retried each turn) */
	/* Credentials the cloud issued (201) that could not be saved yet: only
	 * the save is retried, since registering again would spend another use
	 * of the enrollment code. */
	struct cw_cred pending;
	bool pending_save;
	/* CW_SYNC_GAP or CW_SYNC_CLOUD_AHEAD once seen (OK = none): batches stop
	 * until restart whatever happens to the state afterwards (heartbeats go
	 * on) -- cloud_ahead also until the cloud's mark is lowered
	 * (recheck_ahead); st.sync_stopped mirrors it. */
	enum cw_sync_state stopped;
	char stopped_msg[sizeof(((struct cw_sync_status *)0)->last_error)];
	/* An entry the cloud refuses (400): 0 = none. Not sticky: cleared when
	 * a batch including it is acknowledged. refused_msg is its last_error. */
	int64_t refused_seq;
	char refused_msg[sizeof(((struct cw_sync_status *)0)->last_error)];
	int batch_limit; /* > 0: the next batch takes at most this many entries */
	/* cloud_ahead: the first entry of the batch the cloud skipped; the
	 * state is left once the cloud's mark is at most this - 1 again (an
	 * operator lowered it, docs/OPERATIONS.md) */
	int64_t ahead_first;
	/* cw_syncer_reenroll (under mu): requested, with this code ("" = the
	 * configured one); cfg_has_code is fixed at cw_syncer_new */
	bool reenroll;
	char reenroll_code[CW_SYNC_CODE_MAX];
	bool cfg_has_code;
	struct cw_https *http;

	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool notified; /* under mu */
	atomic_bool stop;

	struct cw_sync_status st; /* under mu */
	int fails;                /* failures in a row, for the backoff */
	int64_t next_try_mono;    /* no exchange before this (backoff) */
	int64_t next_hb_mono;
	int64_t next_rotate_mono; /* after the cloud refused a rotation */
	int64_t acked; /* the last seq the cloud acknowledged to us */
	/* The cloud's clock, from the last heartbeat answer. */
	int64_t srv_wall_ms, srv_mono_ms;
	/* command ids already refused, so that each is logged once although
	 * the cloud hands it out in every heartbeat until it expires */
	char refused[REFUSED_RING][CW_SYNC_ID_MAX];
	int refused_next;
	/* the last failure logged; the same failure again is not logged until
	 * the operation that failed succeeds */
	char logged[sizeof(((struct cw_sync_status *)0)->last_error)];
	/* The MQTT link (cw_link), owned by this thread; NULL without a broker
	 * in the credentials. Its callbacks (paho's thread) only queue commands
	 * in cmdq and set st.mqtt, under mu, and wake the thread. */
	struct cw_link *link;
	struct cw_cred link_cred; /* what the link was started with */
	cJSON *cmdq[CMDQ_MAX];    /* under mu */
	int cmdq_n;               /* under mu */
	bool tel_due;             /* under mu: (re)connected, telemetry now */
	int64_t next_tel_mono;    /* next telemetry on the link */
	int64_t next_link_mono;   /* after cw_link_new failed */
	int64_t cfg_failed; /* configuration version whose pull failed (logged once) */
	bool key_refused;   /* the chain key was refused (logged once until taken) */
};

const char *cw_sync_state_name(enum cw_sync_state st)
{
	switch (st) {
	case CW_SYNC_UNENROLLED:
		return "unenrolled";
	case CW_SYNC_OK:
		return "ok";
	case CW_SYNC_BACKOFF:
		return "backoff";
	case CW_SYNC_REVOKED:
		return "revoked";
	case CW_SYNC_GAP:
		return "gap";
	case CW_SYNC_CLOUD_AHEAD:
		return "cloud_ahead";
	case CW_SYNC_ENTRY_REFUSED:
		return "entry_refused";
	}
	return "unknown";
}

const char *cw_sync_mqtt_state_name(enum cw_sync_mqtt_state st)
{
	switch (st) {
	case CW_SYNC_MQTT_OFF:
		return "not_configured";
	case CW_SYNC_MQTT_DOWN:
		return "disconnected";
	case CW_SYNC_MQTT_UP:
		return "connected";
	}
	return "unknown";
}

int64_t cw_sync_backoff_ms(int base_ms, int cap_ms, int n)
{
	int64_t lim = base_ms > 0 ? base_ms : 1;

	if (cap_ms < base_ms)
		cap_ms = base_ms;
	for (int i = 1; i < n && lim < cap_ms; i++)
		lim *= 2;
	if (lim > cap_ms)
		lim = cap_ms;
	/* full jitter (uniform over [0, lim]): retrying devices spread out
	 * instead of arriving together when the cloud comes back */
	return (int64_t)randombytes_uniform((uint32_t)lim + 1);
}

/* ---- state and logging ------------------------------------------------ */

/* Records a failure. The log line is written when the reason changes, so a
 * cloud that is down for an hour costs one line, not one per retry. */
static void failed(struct cw_syncer *s, enum cw_sync_state state, enum cw_log_level lvl,
		   const char *event, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void failed(struct cw_syncer *s, enum cw_sync_state state, enum cw_log_level lvl,
		   const char *event, const char *fmt, ...)
{
	char msg[sizeof(s->st.last_error)];
	int64_t delay = 0;
	bool changed;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (state == CW_SYNC_BACKOFF || state == CW_SYNC_UNENROLLED ||
	    state == CW_SYNC_ENTRY_REFUSED) {
		s->fails++;
		delay = cw_sync_backoff_ms(s->cfg.backoff_base_ms, s->cfg.backoff_cap_ms, s->fails);
		s->next_try_mono = cw_mono_ms() + delay;
	}
	/* the same failure is the same text up to " reason=" (libcurl's
	 * reasons carry timings: "after 3 ms") */
	{
		const char *r = strstr(msg, " reason=");
		int klen = r ? (int)(r - msg) : (int)strlen(msg);
		changed = strncmp(s->logged, msg, (size_t)klen) != 0 || s->logged[klen] != '\0';
		if (changed)
			snprintf(s->logged, sizeof(s->logged), "%.*s", klen, msg);
	}
	if (state == CW_SYNC_GAP || state == CW_SYNC_CLOUD_AHEAD) {
		s->stopped = state;
		snprintf(s->stopped_msg, sizeof(s->stopped_msg), "%s", msg);
	}
	pthread_mutex_lock(&s->mu);
	s->st.state = state;
	s->st.sync_stopped = s->stopped != CW_SYNC_OK || s->refused_seq > 0;
	s->st.refused_seq = s->refused_seq;
	snprintf(s->st.last_error, sizeof(s->st.last_error), "%s", msg);
	pthread_mutex_unlock(&s->mu);
	if (changed)
		cw_log(lvl, event, "%s retry_ms=%lld", msg, (long long)delay);
	else
		cw_debug(event, "%s retry_ms=%lld", msg, (long long)delay);
}

/* op: the operation that succeeded ("sync", "heartbeat", ...); its
 * logged failure is forgotten, so that it is logged again next time. */
static void succeeded(struct cw_syncer *s, const char *op)
{
	size_t n = strlen(op);
	bool was_failing;

	if (strncmp(s->logged, "op=", 3) == 0 && strncmp(s->logged + 3, op, n) == 0 &&
	    s->logged[3 + n] == ' ')
		s->logged[0] = '\0';

	s->fails = 0;
	s->next_try_mono = 0;
	pthread_mutex_lock(&s->mu);
	/* a stopped sync stays visible (state and last_error) until restart,
	 * a refused entry until the cloud takes it */
	{
		bool refused = s->stopped == CW_SYNC_OK && s->refused_seq > 0;
		enum cw_sync_state to = refused ? CW_SYNC_ENTRY_REFUSED : s->stopped;

		was_failing = s->st.state != CW_SYNC_OK && s->st.state != to;
		s->st.state = to;
		s->st.sync_stopped = s->stopped != CW_SYNC_OK || s->refused_seq > 0;
		s->st.refused_seq = s->refused_seq;
		if (s->refused_seq == 0)
			s->st.refused_code[0] = '\0';
		snprintf(s->st.last_error, sizeof(s->st.last_error), "%s",
			 refused ? s->refused_msg : s->stopped_msg);
	}
	s->st.last_ok_wall_ms = cw_wall_ms();
	pthread_mutex_unlock(&s->mu);
	if (was_failing)
		cw_info("cloud.connected", "device=%s", s->cred.device_id);
}

static enum cw_sync_state state_of(struct cw_syncer *s)
{
	enum cw_sync_state st;

	pthread_mutex_lock(&s->mu);
	st = s->st.state;
	pthread_mutex_unlock(&s->mu);
	return st;
}

/* ---- HTTP helpers ----------------------------------------------------- */

/* Sends one request to cfg.url + path. On CW_OK resp->status is the HTTP
 * status and *json the parsed body (NULL when it is not a JSON object). */
static int call(struct cw_syncer *s, const char *method, const char *path, const char *body,
		bool auth, struct cw_https_resp *resp, cJSON **json)
{
	char url[CW_SYNC_URL_MAX + 256];
	int rc;

	*json = NULL;
	snprintf(url, sizeof(url), "%s%s", s->cfg.url, path);
	rc = cw_https_request(s->http, method, url, auth ? s->cred.device_token : NULL, body,
			      body ? strlen(body) : 0, resp);
	if (rc != CW_OK)
		return rc;
	if (resp->body && resp->len) {
		*json = cJSON_ParseWithLength(resp->body, resp->len);
		if (*json && !cJSON_IsObject(*json)) {
			cJSON_Delete(*json);
			*json = NULL;
		}
	}
	return CW_OK;
}

/* The message of the cloud's {"error": {"code", "message"}}, bounded, for logs. */
static const char *err_msg(const cJSON *j)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");

	return cJSON_IsString(m) ? m->valuestring : "";
}

static bool get_str(const cJSON *o, const char *key, char *out, size_t cap)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
	size_t n;

	if (!cJSON_IsString(it) || !it->valuestring)
		return false;
	n = strlen(it->valuestring);
	if (n == 0 || n >= cap)
		return false;
	for (const char *p = it->valuestring; *p; p++)
		if ((unsigned char)*p < 0x20)
			return false;
	memcpy(out, it->valuestring, n + 1);
	return true;
}

static bool get_int64(const cJSON *o, const char *key, int64_t *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 9007199254740992.0 ||
	    it->valuedouble != (double)(int64_t)it->valuedouble)
		return false;
	*out = (int64_t)it->valuedouble;
	return true;
}

static bool get_time(const cJSON *o, const char *key, int64_t *ms)
{
	char buf[40];

	return get_str(o, key, buf, sizeof(buf)) && cw_cred_parse_time(buf, ms) == CW_OK;
}

/* Wall time as the cloud sees it: its last server_time plus the monotonic
 * time since, or our own clock before any heartbeat. */
static int64_t cloud_now_ms(const struct cw_syncer *s)
{
	if (s->srv_mono_ms > 0)
		return s->srv_wall_ms + (cw_mono_ms() - s->srv_mono_ms);
	return cw_wall_ms();
}

/* A transport failure, or an HTTP status other than the ones the caller
 * handles: backoff (or revoked for a 401). */
static void exchange_failed(struct cw_syncer *s, const char *what, int rc,
			    const struct cw_https_resp *resp, const cJSON *j)
{
	if (atomic_load(&s->stop))
		return; /* cw_syncer_free cut the request short: not a failure */
	if (rc != CW_OK) {
		failed(s, s->enrolled ? CW_SYNC_BACKOFF : CW_SYNC_UNENROLLED, CW_LOG_WARN,
		       "cloud.unreachable", "op=%s error=%s reason=\"%s\"", what, cw_errname(rc),
		       resp->err);
		return;
	}
	if (resp->status == 401 && s->enrolled) {
		failed(s, CW_SYNC_REVOKED, CW_LOG_ERROR, "cloud.revoked",
		       "op=%s device=%s reason=\"the cloud refused the device token; enroll again "
		       "with a new enrollment_code\"",
		       what, s->cred.device_id);
		return;
	}
	failed(s, s->enrolled ? CW_SYNC_BACKOFF : CW_SYNC_UNENROLLED, CW_LOG_WARN,
	       "cloud.refused", "op=%s status=%ld message=\"%.80s\"", what, resp->status,
	       err_msg(j));
}

/* ---- enrollment ------------------------------------------------------- */

/* MAC of the first non-loopback interface with a non-zero address, in name
 * order; interfaces backed by a device (eth0, wlan0) before virtual ones
 * (docker0, veth…), whose addresses change. */
static void default_mac(char out[18])
{
	struct dirent **names = NULL;
	int n = scandir("/sys/class/net", &names, NULL, alphasort);

	out[0] = '\0';
	for (int k = 0; k < 2 * n && !out[0]; k++) {
		const char *name = names[k % n]->d_name;
		bool physical_pass = k < n;
		char path[300], mac[32] = "";
		FILE *f;

		if (name[0] == '.' || strcmp(name, "lo") == 0)
			continue;
		snprintf(path, sizeof(path), "/sys/class/net/%s/device", name);
		if (physical_pass && access(path, F_OK) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/class/net/%s/address", name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(mac, sizeof(mac), f) && strlen(mac) >= 17 &&
		    strncmp(mac, "00:00:00:00:00:00", 17) != 0) {
			memcpy(out, mac, 17);
			out[17] = '\0';
		}
		fclose(f);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void default_serial(char *out, size_t cap)
{
	FILE *f = fopen("/proc/device-tree/serial-number", "re");
	size_t n;

	out[0] = '\0';
	if (!f)
		return;
	n = fread(out, 1, cap - 1, f);
	fclose(f);
	out[n] = '\0';
	/* device-tree strings end in NUL; keep printable characters only */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x21 || (unsigned char)out[i] > 0x7e) {
			out[i] = '\0';
			break;
		}
}

/* Saves s->pending (credentials from a 201) and takes them into use. On
 * failure they stay pending: the next turn retries the save only. */
static int enroll_finish(struct cw_syncer *s)
{
	int rc = cw_cred_save(s->cred_path, &s->pending);

	if (rc != CW_OK) {
		/* without the file a restart would register again: keep trying */
		failed(s, CW_SYNC_UNENROLLED, CW_LOG_ERROR, "cloud.credentials_save",
		       "path=%s error=%s", s->cred_path, cw_errname(rc));
		return rc;
	}
	s->cred = s->pending;
	sodium_memzero(&s->pending, sizeof(s->pending));
	s->pending_save = false;
	s->enrolled = true;
	s->acked = 0;
	pthread_mutex_lock(&s->mu);
	snprintf(s->st.device_id, sizeof(s->st.device_id), "%s", s->cred.device_id);
	s->st.state = CW_SYNC_OK;
	pthread_mutex_unlock(&s->mu);
	cw_info("cloud.enrolled", "device=%s branch=%s chain=%s mac=%s", s->cred.device_id,
		s->cred.branch_id, s->cred.chain_id, s->cfg.mac_address);
	succeeded(s, "register");
	return CW_OK;
}

static int enroll(struct cw_syncer *s)
{
	struct cw_https_resp resp;
	struct cw_cred c = {0};
	char pk64[80], *body = NULL;
	cJSON *req = cJSON_CreateObject(), *j = NULL;
	const cJSON *m;
	char err[160];
	size_t pklen = 0;
	int rc;

	if (s->pending_save) {
		cJSON_Delete(req);
		return enroll_finish(s);
	}
	if (!req) {
		failed(s, CW_SYNC_UNENROLLED, CW_LOG_ERROR, "cloud.register", "op=register error=%s",
		       cw_errname(CW_ERR_NOMEM));
		return CW_ERR_NOMEM;
	}
	cJSON_AddStringToObject(req, "mac_address", s->cfg.mac_address);
	if (s->cfg.serial_number[0])
		cJSON_AddStringToObject(req, "serial_number", s->cfg.serial_number);
	cJSON_AddStringToObject(req, "branch_code", s->cfg.branch_code);
	cJSON_AddStringToObject(req, "enrollment_code", s->cfg.enrollment_code);
	if (s->cfg.device_name[0])
		cJSON_AddStringToObject(req, "device_name", s->cfg.device_name);
	body = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	if (!body) {
		failed(s, CW_SYNC_UNENROLLED, CW_LOG_ERROR, "cloud.register", "op=register error=%s",
		       cw_errname(CW_ERR_NOMEM));
		return CW_ERR_NOMEM;
	}
	rc = call(s, "POST", "/api/devices/register", body, false, &resp, &j);
	sodium_memzero(body, strlen(body)); /* holds the enrollment code */
	cJSON_free(body);
	if (rc != CW_OK || resp.status != 201) {
		exchange_failed(s, "register", rc, &resp, j);
		rc = rc != CW_OK ? rc : CW_ERR_AUTH;
		goto out;
	}
	m = cJSON_GetObjectItemCaseSensitive(j, "mqtt_config");
	if (!get_str(j, "device_id", c.device_id, sizeof(c.device_id)) ||
	    !get_str(j, "branch_id", c.branch_id, sizeof(c.branch_id)) ||
	    !get_str(j, "chain_id", c.chain_id, sizeof(c.chain_id)) ||
	    !get_str(j, "device_token", c.device_token, sizeof(c.device_token)) ||
	    !get_time(j, "token_expires_at", &c.token_expires_ms) ||
	    !get_str(j, "cloud_public_key", pk64, sizeof(pk64)) ||
	    sodium_base642bin(c.cloud_pk, sizeof(c.cloud_pk), pk64, strlen(pk64), NULL, &pklen,
			      NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    pklen != sizeof(c.cloud_pk) ||
	    cw_cred_token_info(c.device_token, c.cloud_issuer, sizeof(c.cloud_issuer),
			       &c.token_issued_ms) != CW_OK) {
		failed(s, CW_SYNC_UNENROLLED, CW_LOG_ERROR, "cloud.register_bad_answer",
		       "reason=\"registration answer without the expected fields\"");
		rc = CW_ERR_PROTO;
		goto out;
	}
	if (!cw_cred_id_ok(c.device_id)) {
		failed(s, CW_SYNC_UNENROLLED, CW_LOG_ERROR, "cloud.register_bad_answer",
		       "reason=\"device_id is not a plain id\"");
		rc = CW_ERR_PROTO;
		goto out;
	}
	/* a bad mqtt_config costs the MQTT link, not the enrollment: HTTPS
	 * carries everything without it (the next rotation may bring a good one) */
	if (m && !cJSON_IsNull(m) && cw_cred_mqtt_from_json(m, &c, err, sizeof(err)) != CW_OK)
		cw_error("cloud.mqtt_config_bad", "op=register reason=\"%s\"", err);
	if (!c.token_issued_ms)
		c.token_issued_ms = cw_wall_ms();
	cw_cred_code_hash(s->cfg.enrollment_code, c.enrollment_code_hash);
	s->pending = c;
	s->pending_save = true;
	rc = enroll_finish(s);
out:
	sodium_memzero(&c, sizeof(c));
	cJSON_Delete(j);
	cw_https_resp_clear(&resp);
	return rc;
}

/* ---- token rotation --------------------------------------------------- */

static bool rotation_due(const struct cw_syncer *s)
{
	int64_t life = s->cred.token_expires_ms - s->cred.token_issued_ms;
	int64_t left = s->cred.token_expires_ms - cloud_now_ms(s);

	if (s->cred.token_issued_ms <= 0 || life <= 0)
		return left < 24LL * 3600 * 1000; /* unknown lifetime: the last day */
	return left < life / 3;
}

static int rotate(struct cw_syncer *s)
{
	char path[128];
	struct cw_https_resp resp;
	struct cw_cred c = s->cred;
	cJSON *j = NULL;
	const cJSON *m;
	char iss[sizeof(c.cloud_issuer)], err[160];
	int rc;

	snprintf(path, sizeof(path), "/api/devices/%s/token", s->cred.device_id);
	rc = call(s, "POST", path, NULL, true, &resp, &j);
	if (rc != CW_OK || resp.status != 200) {
		exchange_failed(s, "token", rc, &resp, j);
		rc = rc != CW_OK ? rc : resp.status == 401 ? CW_ERR_AUTH : CW_ERR_PROTO;
		goto out;
	}
	if (!get_str(j, "device_token", c.device_token, sizeof(c.device_token)) ||
	    !get_time(j, "token_expires_at", &c.token_expires_ms) ||
	    cw_cred_token_info(c.device_token, iss, sizeof(iss), &c.token_issued_ms) != CW_OK) {
		failed(s, CW_SYNC_BACKOFF, CW_LOG_ERROR, "cloud.token_bad_answer",
		       "reason=\"token answer without the expected fields\"");
		rc = CW_ERR_PROTO;
		goto out;
	}
	/* mqtt_config: absent (an older cloud) keeps ours, null drops it, an
	 * object replaces it (a broker configured later, a new password);
	 * a bad one keeps ours */
	m = cJSON_GetObjectItemCaseSensitive(j, "mqtt_config");
	if (cJSON_IsNull(m)) {
		c.has_mqtt = false;
	} else if (m) {
		struct cw_cred t = c;
		if (cw_cred_mqtt_from_json(m, &t, err, sizeof(err)) == CW_OK)
			c = t;
		else
			cw_error("cloud.mqtt_config_bad", "op=token reason=\"%s\"", err);
		sodium_memzero(&t, sizeof(t));
	}
	/* The old token stopped working when the cloud answered: use the new
	 * one from now on even if the file cannot be written yet. */
	s->cred = c;
	s->cred_dirty = true;
	rc = cw_cred_save(s->cred_path, &s->cred);
	if (rc == CW_OK)
		s->cred_dirty = false;
	else
		cw_error("cloud.credentials_save", "path=%s error=%s", s->cred_path,
			 cw_errname(rc));
	cw_info("cloud.token_rotated", "device=%s", s->cred.device_id);
	succeeded(s, "token");
	rc = CW_OK;
out:
	sodium_memzero(&c, sizeof(c));
	cJSON_Delete(j);
	cw_https_resp_clear(&resp);
	return rc;
}

/* ---- commands --------------------------------------------------------- */

int cw_sync_verify_command(const struct cw_cred *cred, const cJSON *cmd, int64_t now_ms,
			   struct cw_sync_command *out, cJSON **claims, const char **reason)
{
	struct cw_jwt_expect ex = {.iss = cred->cloud_issuer,
				   .aud = CW_SYNC_CMD_AUD,
				   .typ = CW_SYNC_CMD_TYP,
				   .now_s = now_ms / 1000,
				   .leeway_s = CW_SYNC_CMD_LEEWAY_S};
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(cmd, "token");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(cmd, "id");
	const cJSON *sub, *jti, *act, *args;
	int64_t iat = 0, exp = 0;
	cJSON *c = NULL;
	int rc;

	*claims = NULL;
	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(cmd) || !cJSON_IsString(id) || !id->valuestring[0] ||
	    strlen(id->valuestring) >= sizeof(out->id)) {
		*reason = "malformed";
		return CW_ERR_INVAL;
	}
	if (!cJSON_IsString(tok)) {
		*reason = "unsigned";
		return CW_ERR_AUTH;
	}
	rc = cw_jwt_verify(tok->valuestring, cred->cloud_pk, &ex, &c, reason);
	if (rc != CW_OK)
		return CW_ERR_AUTH;
	sub = cJSON_GetObjectItemCaseSensitive(c, "sub");
	jti = cJSON_GetObjectItemCaseSensitive(c, "jti");
	act = cJSON_GetObjectItemCaseSensitive(c, "act");
	args = cJSON_GetObjectItemCaseSensitive(c, "args");
	if (!cJSON_IsString(sub) || strcmp(sub->valuestring, cred->device_id) != 0) {
		*reason = "wrong_device";
		goto refuse;
	}
	if (!cJSON_IsString(jti) || strcmp(jti->valuestring, id->valuestring) != 0) {
		*reason = "id_mismatch";
		goto refuse;
	}
	/* cw_jwt allows CW_SYNC_CMD_LEEWAY_S past exp; a command does not get it */
	if (!get_int64(c, "exp", &exp) || !get_int64(c, "iat", &iat) || exp * 1000 <= now_ms) {
		*reason = "expired";
		goto refuse;
	}
	if (!args) {
		args = cJSON_AddObjectToObject(c, "args");
		if (!args) {
			*reason = "nomem";
			goto refuse;
		}
	}
	/* Signed for this device and not expired, but unusable: handed on all
	 * the same, for the source to record it refused (a replay is then
	 * refused and the cloud learns the outcome). */
	*reason = "ok";
	if (!cJSON_IsString(act) || !act->valuestring[0] ||
	    strlen(act->valuestring) >= sizeof(out->action))
		*reason = "bad_action";
	else if (!cJSON_IsObject(args))
		*reason = "bad_args";
	snprintf(out->id, sizeof(out->id), "%s", id->valuestring);
	snprintf(out->action, sizeof(out->action), "%s",
		 strcmp(*reason, "bad_action") != 0 ? act->valuestring : "");
	out->args = args;
	out->issued_ms = iat * 1000;
	out->expires_ms = exp * 1000;
	*claims = c;
	return CW_OK;
refuse:
	cJSON_Delete(c);
	return CW_ERR_AUTH;
}

static bool refused_before(struct cw_syncer *s, const char *id)
{
	for (int i = 0; i < REFUSED_RING; i++)
		if (strcmp(s->refused[i], id) == 0)
			return true;
	snprintf(s->refused[s->refused_next], sizeof(s->refused[0]), "%s", id);
	s->refused_next = (s->refused_next + 1) % REFUSED_RING;
	return false;
}

/* One command object, from a heartbeat answer or from MQTT (via names the
 * path in the log): verified, then run by the source at most once. */
static void run_command(struct cw_syncer *s, const cJSON *cmd, const char *via)
{
	struct cw_sync_command c;
	const cJSON *idj = cJSON_GetObjectItemCaseSensitive(cmd, "id");
	const char *id = cJSON_IsString(idj) ? idj->valuestring : "?";
	const char *why = "malformed";
	cJSON *claims = NULL;
	int rc = cw_sync_verify_command(&s->cred, cmd, cloud_now_ms(s), &c, &claims, &why);

	if (rc != CW_OK) {
		char key[CW_SYNC_ID_MAX];
		snprintf(key, sizeof(key), "%.*s", (int)sizeof(key) - 1, id);
		if (!refused_before(s, key))
			cw_warn("cloud.command_refused", "command=%.64s reason=%s via=%s", key, why,
				via);
		return;
	}
	if (strcmp(why, "ok") != 0 && !refused_before(s, c.id))
		cw_warn("cloud.command_malformed", "command=%s reason=%s via=%s note=\"recorded "
			"refused by the device\"", c.id, why, via);
	rc = s->src.command ? s->src.command(s->src.ctx, &c) : CW_ERR_INTERNAL;
	if (rc == CW_ERR_CONFLICT)
		cw_debug("cloud.command_seen", "command=%s via=%s", c.id, via);
	else if (rc != CW_OK)
		cw_warn("cloud.command_failed", "command=%s action=%s via=%s error=%s", c.id,
			c.action, via, cw_errname(rc));
	else
		cw_info("cloud.command", "command=%s action=%s via=%s", c.id, c.action, via);
	cJSON_Delete(claims);
}

static void run_commands(struct cw_syncer *s, const cJSON *arr)
{
	const cJSON *cmd;

	cJSON_ArrayForEach(cmd, arr)
		run_command(s, cmd, "heartbeat");
}

/* ---- configuration pull (docs/SYNC.md "Down: configuration") ---------- */

/* The chain's customer-token key an answer to the pull carried, to the
 * source (which ignores the one it holds already). Never logs the key. */
static void take_chain_key(struct cw_syncer *s, const cJSON *key)
{
	char err[256] = "";
	int rc = s->src.chain_key(s->src.ctx, key, err, sizeof(err));

	if (rc != CW_OK && !s->key_refused)
		cw_warn("cloud.chain_key", "error=%s reason=\"%s\"", cw_errname(rc),
			rc == CW_ERR_CONFIG ? err : "not taken now; again at the next pull");
	s->key_refused = rc != CW_OK;
}

/* The heartbeat said the cloud's newest configuration is version cv: pull it
 * unless the edge has it or refused it already, and whatever the version
 * while the edge has no chain key (every answer carries it). A failure is
 * logged once per version and tried again at the next heartbeat; it never
 * holds up the outbox. */
static void pull_config(struct cw_syncer *s, int64_t cv)
{
	char path[160], err[256] = "";
	struct cw_https_resp resp;
	int64_t have = 0, rejected = 0, version = 0;
	const cJSON *cfg, *key;
	cJSON *j = NULL;
	bool want_key = s->src.chain_key && !s->src.chain_key_held(s->src.ctx);
	int rc;

	s->src.config_versions(s->src.ctx, &have, &rejected);
	if ((cv == have || cv == rejected || cv < 1) && !want_key)
		return;
	snprintf(path, sizeof(path), "/api/devices/%s/config?have=%lld", s->cred.device_id,
		 (long long)have);
	rc = call(s, "GET", path, NULL, true, &resp, &j);
	if (rc != CW_OK || resp.status != 200 || !get_int64(j, "version", &version)) {
		if (cv != s->cfg_failed)
			cw_warn("cloud.config_pull", "version=%lld error=%s status=%ld",
				(long long)cv, cw_errname(rc), rc == CW_OK ? resp.status : 0L);
		s->cfg_failed = cv;
		goto out;
	}
	key = cJSON_GetObjectItemCaseSensitive(j, "customer_token_key");
	if (s->src.chain_key && key)
		take_chain_key(s, key);
	cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
	/* unchanged, version 0 (the edge keeps what it runs), or pulled for
	 * the key only: a version the edge refused is not offered again */
	if (version == have || version == rejected || !cJSON_IsObject(cfg))
		goto out;
	rc = s->src.config_apply(s->src.ctx, version, cfg, err, sizeof(err));
	if (rc == CW_OK)
		cw_info("cloud.config", "version=%lld", (long long)version);
	else if (rc == CW_ERR_CONFIG)
		cw_warn("cloud.config_rejected", "version=%lld error=\"%s\"", (long long)version,
			err);
	else if (version != s->cfg_failed)
		cw_warn("cloud.config_apply", "version=%lld error=%s", (long long)version,
			cw_errname(rc));
	s->cfg_failed = rc == CW_OK || rc == CW_ERR_CONFIG ? 0 : version;
out:
	cJSON_Delete(j);
	cw_https_resp_clear(&resp);
}

/* ---- heartbeat -------------------------------------------------------- */

/* The health object of the heartbeat and of MQTT telemetry; NULL when out
 * of memory. Caller frees. */
static cJSON *health_json(struct cw_syncer *s)
{
	cJSON *health = cJSON_CreateObject();

	if (!health)
		return NULL;
	if (s->src.health)
		s->src.health(s->src.ctx, health);
	if (s->src.outbox_depth && !cJSON_HasObjectItem(health, "outbox_depth"))
		cJSON_AddNumberToObject(health, "outbox_depth",
					(double)s->src.outbox_depth(s->src.ctx));
	/* the stopped state, not a transient backoff, is what an operator needs */
	cJSON_AddStringToObject(health, "sync_state", cw_sync_state_name(s->stopped != CW_SYNC_OK
									 ? s->stopped
									 : state_of(s)));
	return health;
}

static int heartbeat(struct cw_syncer *s)
{
	char path[128];
	struct cw_https_resp resp;
	cJSON *req = cJSON_CreateObject(), *health, *j = NULL;
	char *body = NULL;
	int64_t srv = 0, cfg_version = 0;
	int rc = CW_ERR_NOMEM;
	bool built = false; /* the request exists: failures from here are call()'s */

	if (!req)
		goto out;
	cJSON_AddStringToObject(req, "status", s->stopped != CW_SYNC_OK || s->refused_seq > 0
						       ? "degraded"
						       : "online");
	if (s->cfg.firmware_version[0])
		cJSON_AddStringToObject(req, "firmware_version", s->cfg.firmware_version);
	health = health_json(s);
	if (!health || !cJSON_AddItemToObject(req, "health", health)) {
		cJSON_Delete(health);
		goto out;
	}
	body = cJSON_PrintUnformatted(req);
	if (!body)
		goto out;
	snprintf(path, sizeof(path), "/api/devices/%s/heartbeat", s->cred.device_id);
	built = true;
	rc = call(s, "POST", path, body, true, &resp, &j);
	if (rc != CW_OK || resp.status != 200) {
		exchange_failed(s, "heartbeat", rc, &resp, j);
		rc = rc != CW_OK ? rc : resp.status == 401 ? CW_ERR_AUTH : CW_ERR_PROTO;
		goto out_resp;
	}
	/* server_time arrived over verified TLS from the cloud we enrolled with:
	 * a trusted clock for the edge (docs/SYNC.md "Commands") */
	if (get_time(j, "server_time", &srv)) {
		s->srv_wall_ms = srv;
		s->srv_mono_ms = cw_mono_ms();
		if (s->src.server_time)
			s->src.server_time(s->src.ctx, srv, s->srv_mono_ms);
	}
	succeeded(s, "heartbeat");
	if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "commands")))
		run_commands(s, cJSON_GetObjectItemCaseSensitive(j, "commands"));
	if (s->src.config_apply && get_int64(j, "config_version", &cfg_version))
		pull_config(s, cfg_version);
	rc = CW_OK;
out_resp:
	cJSON_Delete(j);
	cw_https_resp_clear(&resp);
out:
	/* out of memory: a failure like any other, else run() would try
	 * again at once, forever */
	if (rc == CW_ERR_NOMEM && !built)
		failed(s, CW_SYNC_BACKOFF, CW_LOG_ERROR, "cloud.nomem", "op=heartbeat error=%s",
		       cw_errname(rc));
	cJSON_free(body);
	cJSON_Delete(req);
	return rc;
}

/* ---- outbox batches --------------------------------------------------- */

struct batch {
	cJSON *entries;
	size_t bytes, max_bytes;
	int n;
	int64_t first, last;
	int64_t bad_seq; /* a payload that is not a JSON object */
	/* the first entry never sent before from this database (attempts 0 as
	 * read, before this POST's outbox_sent); 0 = none */
	int64_t first_fresh;
	int nomem;
};

enum { WALK_FULL = 1, WALK_BAD = 2, WALK_NOMEM = 3 };

static int add_entry(void *fctx, const struct cw_sync_entry *e)
{
	struct batch *b = fctx;
	size_t plen = e->payload ? strlen(e->payload) : 0;
	size_t size = plen + ENTRY_OVERHEAD + (e->kind ? strlen(e->kind) : 0) +
		      (e->entity_type ? strlen(e->entity_type) : 0) +
		      (e->entity_id ? strlen(e->entity_id) : 0);
	cJSON *o, *p;

	if (b->n > 0 && b->bytes + size > b->max_bytes)
		return WALK_FULL; /* this entry starts the next batch */
	if (b->n > 0 && e->seq <= b->last) {
		b->bad_seq = e->seq;
		return WALK_BAD;
	}
	/* the payload goes up as JSON, not as a string holding JSON */
	p = e->payload ? cJSON_ParseWithLength(e->payload, plen) : NULL;
	if (!p || !cJSON_IsObject(p) || !e->kind || !e->entity_type) {
		cJSON_Delete(p);
		b->bad_seq = e->seq;
		return WALK_BAD;
	}
	o = cJSON_CreateObject();
	if (!o || !cJSON_AddItemToArray(b->entries, o)) {
		cJSON_Delete(o);
		cJSON_Delete(p);
		b->nomem = 1;
		return WALK_NOMEM;
	}
	cJSON_AddNumberToObject(o, "seq", (double)e->seq);
	cJSON_AddStringToObject(o, "kind", e->kind);
	cJSON_AddStringToObject(o, "entity_type", e->entity_type);
	if (e->entity_id)
		cJSON_AddStringToObject(o, "entity_id", e->entity_id);
	else
		cJSON_AddNullToObject(o, "entity_id");
	cJSON_AddNumberToObject(o, "created_wall_ms", (double)e->created_wall_ms);
	cJSON_AddBoolToObject(o, "clock_trusted", e->clock_trusted);
	cJSON_AddItemToObject(o, "payload", p);
	if (b->n == 0)
		b->first = e->seq;
	if (e->attempts <= 0 && b->first_fresh == 0)
		b->first_fresh = e->seq;
	b->last = e->seq;
	b->n++;
	b->bytes += size;
	return 0;
}

static int ack(struct cw_syncer *s, int64_t hw)
{
	int rc = s->src.outbox_ack(s->src.ctx, hw);

	if (rc != CW_OK) {
		failed(s, CW_SYNC_BACKOFF, CW_LOG_ERROR, "cloud.outbox_ack", "op=sync upto=%lld error=%s",
		       (long long)hw, cw_errname(rc));
		return rc;
	}
	s->acked = hw;
	pthread_mutex_lock(&s->mu);
	s->st.high_water = hw;
	pthread_mutex_unlock(&s->mu);
	return CW_OK;
}

/* The cloud holds entry `fresh` (at or below its mark) although this
 * database never sent it: the edge database was replaced (moved away to
 * start over) while cloud.json stayed, so its seq restarted below the
 * cloud's mark and every entry up to the mark would be skipped and then
 * pruned here: lost. Nothing is acknowledged; batches stop until the cloud's
 * mark is lowered again (recheck_ahead) or the edge restarts (and then finds
 * the same state, the skipped entries counting as never sent). */
static int cloud_ahead(struct cw_syncer *s, const struct batch *b, int64_t hw, int64_t skipped)
{
	/* the skipped entries were not applied: they count as never sent
	 * again, so a restart finds the same state instead of letting the
	 * cloud skip them as entries sent before */
	if (s->src.outbox_unsent) {
		int rc = s->src.outbox_unsent(s->src.ctx, b->first, b->first + skipped - 1);
		if (rc != CW_OK)
			cw_error("cloud.outbox_unsent", "first=%lld last=%lld error=%s",
				 (long long)b->first, (long long)(b->first + skipped - 1),
				 cw_errname(rc));
	}
	s->ahead_first = b->first;
	failed(s, CW_SYNC_CLOUD_AHEAD, CW_LOG_ERROR, "cloud.sync_cloud_ahead",
	       "op=sync cloud_high_water=%lld never_sent_seq=%lld reset_to=%lld reason=\"edge.db "
	       "replaced or restored; lower the cloud's mark to reset_to (OPERATIONS.md)\"",
	       (long long)hw, (long long)b->first_fresh, (long long)(b->first - 1));
	return CW_ERR_CONFLICT;
}

/* In cloud_ahead, after each heartbeat: the cloud's mark again. At most
 * ahead_first - 1 (an operator lowered it): batches resume; a mark below
 * what this database holds as acknowledged is then a gap, found by the
 * next batch's 409 as usual. */
/* GET /api/devices/{id}/sync: the cloud's high-water mark of this device.
 * A failed exchange is reported (exchange_failed) and returns its error
 * (CW_ERR_AUTH for an HTTP refusal); an answer without high_water returns
 * CW_ERR_PROTO with *missing set, left to the caller to report. */
static int cloud_high_water(struct cw_syncer *s, int64_t *hw, bool *missing)
{
	char path[128];
	struct cw_https_resp resp;
	cJSON *j = NULL;
	int rc;

	*hw = 0;
	*missing = false;
	snprintf(path, sizeof(path), "/api/devices/%s/sync", s->cred.device_id);
	rc = call(s, "GET", path, NULL, true, &resp, &j);
	if (rc != CW_OK || resp.status != 200) {
		exchange_failed(s, "sync_status", rc, &resp, j);
		rc = rc != CW_OK ? rc : CW_ERR_AUTH;
	} else if (!get_int64(j, "high_water", hw)) {
		*missing = true;
		rc = CW_ERR_PROTO;
	}
	cJSON_Delete(j);
	cw_https_resp_clear(&resp);
	return rc;
}

static void recheck_ahead(struct cw_syncer *s)
{
	int64_t hw = 0;
	bool missing;
	int rc = cloud_high_water(s, &hw, &missing);

	if (rc != CW_OK && !missing)
		return;
	if (missing || hw > s->ahead_first - 1) {
		cw_debug("cloud.sync_cloud_ahead", "high_water=%lld first=%lld note=\"still ahead\"",
			 (long long)hw, (long long)s->ahead_first);
		return;
	}
	cw_warn("cloud.sync_ahead_resolved", "device=%s high_water=%lld first=%lld note=\"the "
		"cloud's mark was lowered; batches resume\"",
		s->cred.device_id, (long long)hw, (long long)s->ahead_first);
	s->stopped = CW_SYNC_OK;
	s->stopped_msg[0] = '\0';
	s->ahead_first = 0;
	succeeded(s, "sync");
}

/* After a 409: the cloud says our first entry is beyond its high-water mark
 * + 1. If it has moved on meanwhile, we lost an acknowledgement: take it,
 * but only as far as the refused batch goes (those entries reached the
 * cloud; anything above b->last is taken, or found ahead, by the next
 * batch's skipped count). If its mark is below what we hold as
 * acknowledged, it lost data. */
static int resolve_gap(struct cw_syncer *s, const struct batch *b)
{
	int64_t first = b->first, upto;
	int64_t hw = 0;
	bool missing;
	int rc = cloud_high_water(s, &hw, &missing);

	if (missing)
		failed(s, CW_SYNC_BACKOFF, CW_LOG_WARN, "cloud.sync_bad_answer",
		       "op=sync_status reason=\"no high_water\"");
	if (rc != CW_OK)
		return rc;
	if (hw >= first - 1) {
		cw_warn("cloud.sync_resumed", "device=%s high_water=%lld first=%lld",
			s->cred.device_id, (long long)hw, (long long)first);
		upto = hw < b->last ? hw : b->last;
		rc = upto > s->acked ? ack(s, upto) : CW_OK;
		if (rc == CW_OK)
			succeeded(s, "sync");
		return rc;
	}
	failed(s, CW_SYNC_GAP, CW_LOG_ERROR, "cloud.sync_gap",
	       "op=sync device=%s cloud_high_water=%lld first_unacknowledged=%lld reason=\"the cloud "
	       "lost entries it acknowledged; sync stopped until an operator acts\"",
	       s->cred.device_id, (long long)hw, (long long)first);
	return CW_ERR_CONFLICT;
}

/* 400 to a batch: the cloud refuses an entry of it, named in its message
 * ("entries[3]: ...", docs/SYNC.md "Up"), and wrote nothing. The entry is
 * never skipped (that would lose it): it stays first in the queue and is
 * sent again with backoff -- the cloud may take it once an operator has
 * fixed the cloud's side, or after an upgrade. The entries before it go on
 * in a batch of their own, so the queue waits exactly at it (an unnamed
 * entry: batches of one until it is found). State entry_refused with the
 * seq and the cloud's code, logged once per entry. */
static int entry_refused(struct cw_syncer *s, const struct batch *b, const cJSON *j)
{
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
	const char *msg = err_msg(j);
	long idx = -1;
	int64_t seq;
	bool known;

	if (strncmp(msg, "entries[", 8) == 0) {
		char *end = NULL;
		long v = strtol(msg + 8, &end, 10);
		if (end != msg + 8 && *end == ']' && v >= 0 && v < b->n)
			idx = v;
	}
	if (idx > 0)
		s->batch_limit = (int)idx; /* the entries before it */
	else if (idx < 0 && b->n > 1)
		s->batch_limit = 1;
	if (idx < 0 && b->n > 1) {
		/* not named: the batch's first entry is tried alone next */
		failed(s, CW_SYNC_BACKOFF, CW_LOG_WARN, "cloud.sync_refused",
		       "op=sync first=%lld last=%lld status=400 message=\"%.80s\"",
		       (long long)b->first, (long long)b->last, msg);
		return CW_ERR_INVAL;
	}
	if (idx > 0)
		return CW_ERR_INVAL; /* not the first: found when the ones before it went */
	seq = b->first;
	known = seq == s->refused_seq;
	s->refused_seq = seq;
	pthread_mutex_lock(&s->mu);
	snprintf(s->st.refused_code, sizeof(s->st.refused_code), "%s",
		 cJSON_IsString(code) ? code->valuestring : "");
	pthread_mutex_unlock(&s->mu);
	snprintf(s->refused_msg, sizeof(s->refused_msg), "op=sync seq=%lld code=%.31s "
		 "message=\"%.80s\"", (long long)seq, cJSON_IsString(code) ? code->valuestring : "",
		 msg);
	failed(s, CW_SYNC_ENTRY_REFUSED, known ? CW_LOG_DEBUG : CW_LOG_ERROR,
	       "cloud.sync_entry_refused", "%s reason=\"the cloud refuses this entry; it is kept "
	       "and sent again, the entries after it wait (docs/OPERATIONS.md)\"", s->refused_msg);
	return CW_ERR_INVAL;
}

/* Sends one batch. *sent = entries the cloud acknowledged (0 = nothing to
 * send). */
static int send_batch(struct cw_syncer *s, int *sent)
{
	char path[128];
	struct cw_https_resp resp;
	struct batch b = {.max_bytes = s->cfg.batch_max_bytes};
	cJSON *req = cJSON_CreateObject(), *j = NULL;
	char *body = NULL;
	int64_t hw = 0, skipped = 0;
	int rc, walk;
	bool posted = false; /* failures from here on are call()'s, already recorded */

	*sent = 0;
	b.entries = req ? cJSON_AddArrayToObject(req, "entries") : NULL;
	if (!b.entries) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	/* the source bounds payload bytes; ENTRY_OVERHEAD per entry on top.
	 * What stopped the walk is read from b, not from the return value:
	 * the source may return its count or fn's code. */
	walk = s->src.outbox_read(s->src.ctx, s->acked,
				  s->batch_limit > 0 && s->batch_limit < s->cfg.batch_max_entries
					  ? s->batch_limit
					  : s->cfg.batch_max_entries,
				  s->cfg.batch_max_bytes, add_entry, &b);
	s->batch_limit = 0;
	if (walk < 0) {
		failed(s, CW_SYNC_BACKOFF, CW_LOG_ERROR, "cloud.outbox_read", "op=sync error=%s",
		       cw_errname(walk));
		rc = walk;
		goto out;
	}
	if (b.nomem) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	if (b.n == 0) {
		if (b.bad_seq) {
			/* kept, not skipped: a stuck queue shows as outbox depth,
			 * a skipped entry would be lost without a trace */
			failed(s, CW_SYNC_BACKOFF, CW_LOG_ERROR, "cloud.outbox_bad_entry",
			       "op=sync seq=%lld reason=\"payload is not a JSON object or seq not "
			       "increasing; entry kept\"",
			       (long long)b.bad_seq);
			rc = CW_ERR_INVAL;
		} else {
			rc = CW_OK;
		}
		goto out;
	}
	body = cJSON_PrintUnformatted(req);
	if (!body) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	/* counted before the POST: the cloud may apply a batch whose answer
	 * is lost */
	rc = s->src.outbox_sent(s->src.ctx, b.first, b.last);
	if (rc != CW_OK) {
		failed(s, CW_SYNC_BACKOFF, CW_LOG_ERROR, "cloud.outbox_sent",
		       "op=sync first=%lld last=%lld error=%s", (long long)b.first,
		       (long long)b.last, cw_errname(rc));
		goto out;
	}
	snprintf(path, sizeof(path), "/api/devices/%s/sync", s->cred.device_id);
	posted = true;
	rc = call(s, "POST", path, body, true, &resp, &j);
	if (rc == CW_OK && resp.status == 409) {
		cw_https_resp_clear(&resp);
		cJSON_Delete(j);
		j = NULL;
		rc = resolve_gap(s, &b);
		goto out;
	}
	if (rc == CW_OK && resp.status == 400 && !atomic_load(&s->stop)) {
		rc = entry_refused(s, &b, j);
		goto out_resp;
	}
	if (rc != CW_OK || resp.status != 200) {
		exchange_failed(s, "sync", rc, &resp, j);
		rc = rc != CW_OK ? rc : CW_ERR_AUTH;
		goto out_resp;
	}
	/* 200 {"high_water": N, ...}: N below our last entry breaks the
	 * protocol (the cloud commits the whole batch or nothing) */
	if (!get_int64(j, "high_water", &hw) || hw < b.last || !get_int64(j, "skipped", &skipped) ||
	    skipped > b.n) {
		failed(s, CW_SYNC_BACKOFF, CW_LOG_WARN, "cloud.sync_bad_answer",
		       "op=sync last=%lld reason=\"high_water or skipped missing, or out of the "
		       "batch\"",
		       (long long)b.last);
		rc = CW_ERR_PROTO;
		goto out_resp;
	}
	/* The cloud skipped entries first..first+skipped-1 (seq <= its mark
	 * before this batch). It may only hold entries this database sent
	 * before; one it cannot have had from us means the database was
	 * replaced (docs/SYNC.md "The cloud ahead of the database"). */
	/* One exception: all skipped and the mark exactly our last seq is this
	 * very request applied once already: libcurl sends a request again by
	 * itself when a reused connection dies before any answer byte, and the
	 * cloud commits a batch whole, so a mark that ends exactly here is this
	 * batch's. (A replaced database whose cloud mark happens to be exactly
	 * this batch's last seq passes too; see docs/SYNC.md.) */
	if (skipped > 0 && b.first_fresh != 0 && b.first_fresh <= b.first + skipped - 1 &&
	    !(skipped == b.n && hw == b.last)) {
		rc = cloud_ahead(s, &b, hw, skipped);
		goto out_resp;
	}
	/* never above what was read from the outbox: entries above b.last
	 * are checked by the next batch */
	rc = ack(s, b.last);
	if (rc != CW_OK)
		goto out_resp;
	if (s->refused_seq > 0 && b.last >= s->refused_seq) {
		cw_info("cloud.sync_entry_accepted", "seq=%lld note=\"the cloud took the entry it "
			"refused; the queue moves again\"", (long long)s->refused_seq);
		s->refused_seq = 0;
		s->refused_msg[0] = '\0';
	}
	pthread_mutex_lock(&s->mu);
	s->st.batches_sent++;
	s->st.entries_sent += b.n;
	pthread_mutex_unlock(&s->mu);
	*sent = b.n;
	succeeded(s, "sync");
out_resp:
	cJSON_Delete(j);
	cw_https_resp_clear(&resp);
out:
	/* out of memory: a failure like any other, else run() would try
	 * again at once, forever */
	if (rc == CW_ERR_NOMEM && !posted)
		failed(s, CW_SYNC_BACKOFF, CW_LOG_ERROR, "cloud.nomem", "op=sync error=%s",
		       cw_errname(rc));
	cJSON_free(body);
	cJSON_Delete(req);
	return rc;
}

/* ---- the MQTT link ----------------------------------------------------- */

/* paho's thread: the command waits for the syncer's thread, which verifies
 * and runs it exactly as a heartbeat's (run_command); a full queue drops it
 * (the heartbeat hands it out again until it has a result). */
static void on_link_command(void *ctx, cJSON *cmd)
{
	struct cw_syncer *s = ctx;
	bool queued;

	pthread_mutex_lock(&s->mu);
	s->st.mqtt_commands++;
	queued = s->cmdq_n < CMDQ_MAX;
	if (queued) {
		s->cmdq[s->cmdq_n++] = cmd;
		s->notified = true;
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	if (!queued) {
		cw_warn("cloud.mqtt_command_dropped", "reason=queue_full max=%d", CMDQ_MAX);
		cJSON_Delete(cmd);
	}
}

/* paho's thread */
static void on_link_state(void *ctx, bool connected)
{
	struct cw_syncer *s = ctx;

	pthread_mutex_lock(&s->mu);
	s->st.mqtt = connected ? CW_SYNC_MQTT_UP : CW_SYNC_MQTT_DOWN;
	if (connected) {
		s->tel_due = true;
		s->notified = true;
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

static void set_mqtt_state(struct cw_syncer *s, enum cw_sync_mqtt_state st)
{
	pthread_mutex_lock(&s->mu);
	s->st.mqtt = st;
	pthread_mutex_unlock(&s->mu);
}

/* Publishes offline and disconnects (a clean stop). */
static void link_stop(struct cw_syncer *s)
{
	cw_link_free(s->link);
	s->link = NULL;
	sodium_memzero(&s->link_cred, sizeof(s->link_cred));
	set_mqtt_state(s, CW_SYNC_MQTT_OFF);
}

/* Keeps the link in step with the credentials: started when they name a
 * broker with a user name, restarted when a rotation changed any of it,
 * stopped when the device is revoked or enrolls again. Never waits for the
 * broker (cw_link connects in the background). */
static void link_tend(struct cw_syncer *s)
{
	bool want = s->enrolled && s->cred.has_mqtt && s->cred.mqtt_username[0] &&
		    state_of(s) != CW_SYNC_REVOKED;
	int rc;

	if (s->link && (!want || !cw_cred_mqtt_same(&s->link_cred, &s->cred))) {
		if (want)
			cw_info("cloud.mqtt_config_changed", "device=%s", s->cred.device_id);
		link_stop(s);
	}
	if (!want || s->link || cw_mono_ms() < s->next_link_mono)
		return;
	set_mqtt_state(s, CW_SYNC_MQTT_DOWN); /* before its callbacks can say up */
	rc = cw_link_new(&s->cred, s->cfg.ca_file, s->cfg.firmware_version, on_link_command,
			 on_link_state, s, &s->link);
	if (rc != CW_OK) {
		cw_warn("cloud.mqtt_failed", "device=%s broker=%s error=%s", s->cred.device_id,
			s->cred.mqtt_broker, cw_errname(rc));
		s->next_link_mono = cw_mono_ms() + IDLE_WAIT_MS / 60;
		set_mqtt_state(s, CW_SYNC_MQTT_OFF);
		return;
	}
	s->link_cred = s->cred;
	s->next_tel_mono = 0;
}

/* Runs the commands MQTT queued, and publishes telemetry when due. */
static void link_work(struct cw_syncer *s)
{
	cJSON *q[CMDQ_MAX];
	int n;
	bool tel;

	pthread_mutex_lock(&s->mu);
	n = s->cmdq_n;
	memcpy(q, s->cmdq, (size_t)n * sizeof(q[0]));
	s->cmdq_n = 0;
	tel = s->tel_due;
	s->tel_due = false;
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < n; i++) {
		/* no link: revoked or enrolling again since it was queued */
		if (s->link)
			run_command(s, q[i], "mqtt");
		cJSON_Delete(q[i]);
	}
	if (tel)
		s->next_tel_mono = 0;
	if (cw_link_connected(s->link) && cw_mono_ms() >= s->next_tel_mono) {
		cJSON *h = health_json(s);
		int rc = h ? cw_link_telemetry(s->link, h) : CW_ERR_NOMEM;
		if (rc != CW_OK)
			cw_debug("cloud.mqtt_telemetry_failed", "error=%s", cw_errname(rc));
		cJSON_Delete(h);
		s->next_tel_mono = cw_mono_ms() + (int64_t)s->cfg.heartbeat_s * 1000;
	}
}

/* until, or earlier when the link's telemetry is due. */
static int64_t link_deadline(struct cw_syncer *s, int64_t until)
{
	return cw_link_connected(s->link) && s->next_tel_mono < until ? s->next_tel_mono : until;
}

/* The thread applies a cw_syncer_reenroll: credentials moved aside and
 * forgotten, a fresh start as an unenrolled device. */
static void apply_reenroll(struct cw_syncer *s, const char *code)
{
	char old[sizeof(s->cred_path) + 32];

	snprintf(old, sizeof(old), "%s.replaced-%lld", s->cred_path, (long long)cw_wall_ms());
	if (rename(s->cred_path, old) == 0)
		cw_warn("cloud.reenroll", "device=%s kept=%s reason=\"operator request\"",
			s->cred.device_id[0] ? s->cred.device_id : "-", old);
	else
		cw_warn("cloud.reenroll", "device=%s reason=\"operator request\" note=\"no "
			"cloud.json to keep\"", s->cred.device_id[0] ? s->cred.device_id : "-");
	if (code[0])
		snprintf(s->cfg.enrollment_code, sizeof(s->cfg.enrollment_code), "%s", code);
	sodium_memzero(&s->cred, sizeof(s->cred));
	sodium_memzero(&s->pending, sizeof(s->pending));
	s->enrolled = false;
	s->pending_save = false;
	s->cred_dirty = false;
	s->stopped = CW_SYNC_OK;
	s->stopped_msg[0] = '\0';
	s->refused_seq = 0;
	s->refused_msg[0] = '\0';
	s->ahead_first = 0;
	s->batch_limit = 0;
	s->fails = 0;
	s->next_try_mono = 0;
	s->next_hb_mono = 0;
	s->next_rotate_mono = 0;
	s->logged[0] = '\0';
	pthread_mutex_lock(&s->mu);
	s->st.state = CW_SYNC_UNENROLLED;
	s->st.device_id[0] = '\0';
	s->st.sync_stopped = false;
	s->st.refused_seq = 0;
	s->st.refused_code[0] = '\0';
	s->st.last_error[0] = '\0';
	pthread_mutex_unlock(&s->mu);
}

/* ---- the thread ------------------------------------------------------- */

/* Sleeps until the monotonic time until_ms, a notify or stop. */
static void wait_until(struct cw_syncer *s, int64_t until_ms)
{
	struct timespec ts;

	pthread_mutex_lock(&s->mu);
	while (!atomic_load(&s->stop) && !s->notified && cw_mono_ms() < until_ms) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t left = until_ms - cw_mono_ms();
		if (left <= 0)
			break;
		ts.tv_sec += (time_t)(left / 1000);
		ts.tv_nsec += (long)(left % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	s->notified = false;
	pthread_mutex_unlock(&s->mu);
}

static void *run(void *arg)
{
	struct cw_syncer *s = arg;
	char hash[65];
	bool warned_nocode = false;

	s->next_hb_mono = 0; /* a heartbeat first: it brings the clock */
	while (!atomic_load(&s->stop)) {
		int64_t now = cw_mono_ms();
		int sent = 0, rc;
		char code[CW_SYNC_CODE_MAX];
		bool again;

		pthread_mutex_lock(&s->mu);
		again = s->reenroll;
		s->reenroll = false;
		memcpy(code, s->reenroll_code, sizeof(code));
		sodium_memzero(s->reenroll_code, sizeof(s->reenroll_code));
		pthread_mutex_unlock(&s->mu);
		if (again) {
			apply_reenroll(s, code);
			sodium_memzero(code, sizeof(code));
			continue;
		}

		/* before the backoff: MQTT works while HTTPS fails */
		link_tend(s);
		link_work(s);
		if (now < s->next_try_mono) {
			wait_until(s, link_deadline(s, s->next_try_mono));
			continue;
		}
		if (!s->enrolled || state_of(s) == CW_SYNC_REVOKED) {
			bool revoked = s->enrolled;
			bool may = s->cfg.enrollment_code[0] != '\0';
			if (may && revoked) {
				/* a revoked device comes back only with a new code */
				cw_cred_code_hash(s->cfg.enrollment_code, hash);
				may = strcmp(hash, s->cred.enrollment_code_hash) != 0;
			}
			if (!may) {
				if (!revoked && !warned_nocode)
					cw_warn("cloud.not_enrolled",
						"reason=\"no cloud.enrollment_code configured\"");
				warned_nocode = true;
				wait_until(s, link_deadline(s, now + IDLE_WAIT_MS));
				continue;
			}
			if (revoked)
				cw_info("cloud.reenroll", "device=%s", s->cred.device_id);
			s->enrolled = false;
			enroll(s);
			continue;
		}
		if (s->cred_dirty && cw_cred_save(s->cred_path, &s->cred) == CW_OK)
			s->cred_dirty = false;
		/* CW_ERR_PROTO below: the cloud answered but refused or answered
		 * something unexpected. The link works, so the other exchanges
		 * go on (a heartbeat the cloud refuses must not stop the outbox);
		 * anything else (no answer, 401) waits for the backoff. */
		if (rotation_due(s) && now >= s->next_rotate_mono) {
			rc = rotate(s);
			if (rc == CW_ERR_PROTO) /* the token still has a third of its life */
				s->next_rotate_mono = cw_mono_ms() + ROTATE_RETRY_MS;
			else if (rc != CW_OK)
				continue;
		}
		if (now >= s->next_hb_mono) {
			rc = heartbeat(s);
			if (rc != CW_OK && rc != CW_ERR_PROTO)
				continue;
			s->next_hb_mono = cw_mono_ms() + (int64_t)s->cfg.heartbeat_s * 1000;
			if (s->stopped == CW_SYNC_CLOUD_AHEAD)
				recheck_ahead(s);
		}
		if (state_of(s) == CW_SYNC_REVOKED)
			continue;
		if (s->stopped == CW_SYNC_OK && s->src.outbox_read && s->src.outbox_ack) {
			if (send_batch(s, &sent) != CW_OK)
				continue;
			if (sent > 0)
				continue; /* a backlog drains batch after batch */
		}
		wait_until(s, link_deadline(s, s->next_hb_mono));
	}
	return NULL;
}

/* ---- public ----------------------------------------------------------- */

int cw_syncer_reenroll(struct cw_syncer *s, const char *code)
{
	if (!s)
		return CW_ERR_INVAL;
	if (code && strlen(code) >= sizeof(s->reenroll_code))
		return CW_ERR_TOOBIG;
	if ((!code || !code[0]) && !s->cfg_has_code)
		return CW_ERR_CONFIG;
	pthread_mutex_lock(&s->mu);
	sodium_memzero(s->reenroll_code, sizeof(s->reenroll_code));
	snprintf(s->reenroll_code, sizeof(s->reenroll_code), "%s", code ? code : "");
	s->reenroll = true;
	s->notified = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return CW_OK;
}

int cw_syncer_new(const struct cw_sync_config *cfg, const struct cw_sync_source *src,
		  struct cw_syncer **out)
{
	struct cw_https_config hc = {0};
	pthread_condattr_t ca;
	struct cw_syncer *s;
	char err[256];
	size_t n;
	int rc;

	*out = NULL;
	if (!cfg || !src)
		return CW_ERR_INVAL;
	/* without outbox_sent the cloud's skips cannot be checked (docs/SYNC.md
	 * "The cloud ahead of the database") */
	if (src->outbox_read && (!src->outbox_ack || !src->outbox_sent))
		return CW_ERR_INVAL;
	if (!src->config_apply != !src->config_versions ||
	    !src->chain_key != !src->chain_key_held || (src->chain_key && !src->config_apply))
		return CW_ERR_INVAL;
	if (sodium_init() < 0)
		return CW_ERR_INTERNAL;
	if (strncmp(cfg->url, "https://", 8) != 0 &&
	    !(cfg->insecure_http && strncmp(cfg->url, "http://", 7) == 0)) {
		cw_error("cloud.config", "reason=\"cloud.url must start with https://\"");
		return CW_ERR_CONFIG;
	}
	if (!cfg->data_dir[0] || !cfg->branch_code[0])
		return CW_ERR_CONFIG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	s->cfg = *cfg;
	/* the cloud takes printable ASCII without spaces (heartbeat, MQTT status) */
	for (char *p = s->cfg.firmware_version; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			*p = '_';
	s->src = *src;
	s->stopped = CW_SYNC_OK; /* not stopped (calloc's 0 is UNENROLLED) */
	s->cfg_has_code = s->cfg.enrollment_code[0] != '\0';
	n = strlen(s->cfg.url);
	while (n > 0 && s->cfg.url[n - 1] == '/')
		s->cfg.url[--n] = '\0';
	if (s->cfg.heartbeat_s <= 0)
		s->cfg.heartbeat_s = 30;
	if (s->cfg.batch_max_entries <= 0 || s->cfg.batch_max_entries > BATCH_ENTRIES_MAX)
		s->cfg.batch_max_entries = s->cfg.batch_max_entries > 0 ? BATCH_ENTRIES_MAX : 500;
	if (s->cfg.batch_max_bytes == 0)
		s->cfg.batch_max_bytes = 512 * 1024;
	if (s->cfg.batch_max_bytes > BATCH_BYTES_MAX)
		s->cfg.batch_max_bytes = BATCH_BYTES_MAX;
	if (s->cfg.backoff_base_ms <= 0)
		s->cfg.backoff_base_ms = 1000;
	if (s->cfg.backoff_cap_ms <= 0)
		s->cfg.backoff_cap_ms = 60000;
	if (!s->cfg.mac_address[0])
		default_mac(s->cfg.mac_address);
	if (!s->cfg.serial_number[0])
		default_serial(s->cfg.serial_number, sizeof(s->cfg.serial_number));
	atomic_init(&s->stop, false);
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);

	rc = cw_cred_path(s->cfg.data_dir, s->cred_path, sizeof(s->cred_path));
	if (rc != CW_OK)
		goto fail;
	rc = cw_cred_load(s->cred_path, &s->cred, err, sizeof(err));
	if (rc == CW_OK) {
		s->enrolled = true;
		s->st.state = CW_SYNC_OK;
		snprintf(s->st.device_id, sizeof(s->st.device_id), "%s", s->cred.device_id);
	} else if (rc == CW_ERR_NOTFOUND) {
		s->st.state = CW_SYNC_UNENROLLED;
	} else {
		cw_error("cloud.credentials", "reason=\"%s\"", err);
		goto fail;
	}
	hc.ca_file = s->cfg.ca_file;
	hc.insecure_http = s->cfg.insecure_http;
	hc.connect_timeout_ms = 5000;
	hc.total_timeout_ms = 30000;
	hc.cancel = &s->stop;
	rc = cw_https_new(&hc, &s->http);
	if (rc != CW_OK)
		goto fail;
	*out = s;
	return CW_OK;
fail:
	cw_syncer_free(s);
	return rc;
}

int cw_syncer_start(struct cw_syncer *s)
{
	if (!s || s->started)
		return CW_ERR_STATE;
	if (pthread_create(&s->thread, NULL, run, s) != 0)
		return CW_ERR_IO;
	s->started = true;
	return CW_OK;
}

void cw_syncer_notify(struct cw_syncer *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->notified = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void cw_syncer_status(struct cw_syncer *s, struct cw_sync_status *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	pthread_mutex_unlock(&s->mu);
}

void cw_syncer_free(struct cw_syncer *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->mu);
		atomic_store(&s->stop, true);
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->mu);
		/* a request in flight fails now rather than at curl's next
		 * progress check (up to a second) */
		cw_https_abort(s->http);
		pthread_join(s->thread, NULL);
	}
	/* a credential the thread could not save yet (retried each turn): the
	 * next syncer (the edge's restart) would load the revoked token */
	if (s->pending_save || s->cred_dirty) {
		int rc = cw_cred_save(s->cred_path, s->pending_save ? &s->pending : &s->cred);

		if (rc != CW_OK)
			cw_error("cloud.credentials_save", "path=%s error=%s when=stop", s->cred_path,
				 cw_errname(rc));
	}
	/* the offline status, then no more callbacks: the queue is final */
	link_stop(s);
	for (int i = 0; i < s->cmdq_n; i++)
		cJSON_Delete(s->cmdq[i]);
	cw_https_free(s->http);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	sodium_memzero(&s->cred, sizeof(s->cred));
	sodium_memzero(&s->pending, sizeof(s->pending));
	free(s);
}
