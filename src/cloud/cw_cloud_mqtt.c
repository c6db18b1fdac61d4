/* cw_cloud_mqtt.c - the cloud's side of the MQTT link (see the header). */
#include "cw_cloud_mqtt.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_cloud_api.h"
#include "cw_cloud_keys.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_mqtt.h"

/* mosquitto_passwd 2.0's defaults for "$7$" (PBKDF2-HMAC-SHA512): see
 * mosquitto's src/password_mosq.h (PW_DEFAULT_ITERATIONS, SALT_LEN) */
#define PW_ITERATIONS 101
#define PW_SALT_LEN 12
#define PW_HASH_LEN 64
#define PW_LINE_MAX 256
#define B64 sodium_base64_VARIANT_ORIGINAL
/* (device, topic, reason, field) already logged: each is logged once an
 * hour (the table is cleared); past this many distinct ones (a fleet of
 * 1,000 devices gone bad at once) the rest are dropped until the next
 * clearing rather than flood the log */
#define WARNED_MAX 1024
#define WARNED_RESET_MS 3600000
/* store errors are not per device (the database is down for all): at most
 * one line a minute, with the number left unlogged */
#define STORE_ERROR_EVERY_MS 60000

/* ---- password and ACL files ---- */

int cw_cloud_mqtt_password(const struct cw_cloud_config *cfg,
			   char out[CW_CLOUD_MQTT_PASSWORD_MAX + 1])
{
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int rc;

	out[0] = '\0';
	if (!cfg->mqtt_password_file[0])
		return CW_ERR_CONFIG;
	rc = cw_read_file(cfg->mqtt_password_file, CW_CLOUD_MQTT_PASSWORD_MAX + 3, &buf, &len);
	if (rc != CW_OK)
		return rc == CW_ERR_TOOBIG ? CW_ERR_CONFIG : CW_ERR_IO;
	if (stat(cfg->mqtt_password_file, &st) == 0 && (st.st_mode & 077))
		cw_warn("mqtt.password_permissions",
			"path=%s mode=%03o msg=\"the broker password file is readable by group or "
			"others; chmod 600 it\"",
			cfg->mqtt_password_file, (unsigned)(st.st_mode & 0777));
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	rc = CW_ERR_CONFIG;
	if (len >= 1 && len <= CW_CLOUD_MQTT_PASSWORD_MAX && !memchr(buf, '\n', len)) {
		memcpy(out, buf, len + 1);
		rc = CW_OK;
	}
	sodium_memzero(buf, len);
	free(buf);
	return rc;
}

int cw_mosquitto_passwd_line(const char *user, const char *password, char *out, size_t cap)
{
	unsigned char salt[PW_SALT_LEN], hash[PW_HASH_LEN];
	char salt64[sodium_base64_ENCODED_LEN(PW_SALT_LEN, B64)];
	char hash64[sodium_base64_ENCODED_LEN(PW_HASH_LEN, B64)];
	int n, rc = CW_ERR_IO;

	randombytes_buf(salt, sizeof(salt));
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)sizeof(salt),
			      PW_ITERATIONS, EVP_sha512(), (int)sizeof(hash), hash) != 1)
		goto out;
	sodium_bin2base64(salt64, sizeof(salt64), salt, sizeof(salt), B64);
	sodium_bin2base64(hash64, sizeof(hash64), hash, sizeof(hash), B64);
	n = snprintf(out, cap, "%s:$7$%d$%s$%s\n", user, PW_ITERATIONS, salt64, hash64);
	rc = n > 0 && (size_t)n < cap ? CW_OK : CW_ERR_TOOBIG;
out:
	sodium_memzero(hash, sizeof(hash));
	return rc;
}

struct text {
	char *buf;
	size_t len, cap;
};

static int text_add(struct text *t, const char *s)
{
	size_t n = strlen(s);

	if (t->len + n + 1 > t->cap) {
		size_t cap = (t->cap ? t->cap * 2 : 4096) + n;
		char *b = malloc(cap);
		if (!b)
			return CW_ERR_NOMEM;
		if (t->buf) {
			memcpy(b, t->buf, t->len);
			sodium_memzero(t->buf, t->cap);
			free(t->buf);
		}
		t->buf = b;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n + 1);
	t->len += n;
	return CW_OK;
}

static void text_free(struct text *t)
{
	if (t->buf) {
		sodium_memzero(t->buf, t->cap);
		free(t->buf);
	}
}

struct passwd_ctx {
	struct text t;
	const unsigned char *sk;
};

static int passwd_device(void *ctx, const char *device_id)
{
	struct passwd_ctx *p = ctx;
	char pw[CW_MQTT_PASSWORD_LEN + 1], line[PW_LINE_MAX];
	int rc;

	cw_mqtt_device_password(p->sk, device_id, pw);
	rc = cw_mosquitto_passwd_line(device_id, pw, line, sizeof(line));
	if (rc == CW_OK)
		rc = text_add(&p->t, line);
	sodium_memzero(pw, sizeof(pw));
	return rc;
}

/* The whole file: the cloud's user first, then the devices in id order. */
static int passwd_write(const struct cw_cloud_config *cfg, struct cw_store *s,
			const unsigned char *sk, const char *cloud_pw, const char *path)
{
	struct passwd_ctx p = {.sk = sk};
	char line[PW_LINE_MAX];
	int rc;

	if ((rc = cw_mosquitto_passwd_line(cfg->mqtt_username, cloud_pw, line, sizeof(line))) ||
	    (rc = text_add(&p.t, line)) ||
	    (rc = cw_store_devices_mqtt(s, cw_wall_ms(), passwd_device, &p)))
		goto out;
	rc = cw_file_replace(path, p.t.buf, p.t.len);
out:
	text_free(&p.t);
	return rc;
}

int cw_cloud_mqtt_write_passwd(const struct cw_cloud_config *cfg, struct cw_store *s,
			       const unsigned char sk[crypto_sign_SECRETKEYBYTES], const char *path)
{
	char pw[CW_CLOUD_MQTT_PASSWORD_MAX + 1];
	int rc = cw_cloud_mqtt_password(cfg, pw);

	if (rc == CW_OK)
		rc = passwd_write(cfg, s, sk, pw, path);
	sodium_memzero(pw, sizeof(pw));
	return rc;
}

/* The production ACL (docs/SYNC.md "MQTT"); %u is the user name, which is a
 * device's id: a device reads only its own commands and writes only its own
 * status and telemetry. */
static int acl_text(const struct cw_cloud_config *cfg, char *out, size_t cap)
{
	int n = snprintf(out, cap,
			 "# written by cartwise-cloud mqtt-acl (docs/CLOUD.md \"MQTT\")\n"
			 "user %s\n"
			 "topic readwrite cartwise/#\n"
			 "\n"
			 "pattern read cartwise/+/+/devices/%%u/commands\n"
			 "pattern write cartwise/+/+/devices/%%u/status\n"
			 "pattern write cartwise/+/+/devices/%%u/telemetry\n",
			 cfg->mqtt_username);
	return n > 0 && (size_t)n < cap ? n : -1;
}

void cw_cloud_mqtt_print_acl(const struct cw_cloud_config *cfg, FILE *f)
{
	char buf[1024];

	if (acl_text(cfg, buf, sizeof(buf)) > 0)
		fputs(buf, f);
}

int cw_cloud_mqtt_write_acl(const struct cw_cloud_config *cfg, const char *path)
{
	char buf[1024];
	int n = acl_text(cfg, buf, sizeof(buf));

	return n > 0 ? cw_file_replace(path, buf, (size_t)n) : CW_ERR_TOOBIG;
}

/* ---- the client ---- */

/* "device|topic kind|reason|field" */
#define WARNED_KEY_MAX 128

struct cw_cloud_mqtt {
	struct cw_cloud_config cfg;
	struct cw_store *store;
	struct cw_events *events; /* may be NULL */
	unsigned char sk[crypto_sign_SECRETKEYBYTES];
	char password[CW_CLOUD_MQTT_PASSWORD_MAX + 1];
	struct cw_mqtt *m;
	pthread_mutex_t mu;    /* the warned table */
	pthread_mutex_t pw_mu; /* one writer of passwd_out at a time */
	int nwarned;
	int64_t warned_since_ms; /* monotonic: the table was cleared */
	int64_t store_err_ms;    /* monotonic: the last store_error line, 0 = none */
	int store_err_quiet;     /* store errors not logged since */
	char warned[WARNED_MAX][WARNED_KEY_MAX];
};

/* Logs a refused message once an hour per (device, topic, reason, field): a
 * device sending garbage every few seconds must not flood the log. A store
 * error: at most one line a minute over all devices. The payload is never
 * logged (it may hold anything). */
static void refuse(struct cw_cloud_mqtt *m, const char *device, const char *kind,
		   const char *reason, const char *field)
{
	char key[WARNED_KEY_MAX];
	bool seen = false;
	int64_t now = cw_mono_ms();

	pthread_mutex_lock(&m->mu);
	if (strcmp(reason, "store_error") == 0) {
		int quiet = m->store_err_quiet;
		bool log = !m->store_err_ms || now - m->store_err_ms >= STORE_ERROR_EVERY_MS;
		if (log) {
			m->store_err_ms = now;
			m->store_err_quiet = 0;
		} else {
			m->store_err_quiet++;
		}
		pthread_mutex_unlock(&m->mu);
		if (log)
			cw_warn("mqtt.refused", "device=%s topic=%s reason=%s field=%s unlogged=%d "
				"msg=\"message ignored (store errors: one line a minute at most; "
				"unlogged = those since the last line)\"", device, kind, reason,
				field ? field : "", quiet);
		return;
	}
	if (now - m->warned_since_ms >= WARNED_RESET_MS) {
		m->nwarned = 0;
		m->warned_since_ms = now;
	}
	snprintf(key, sizeof(key), "%s|%s|%s|%s", device, kind, reason, field ? field : "");
	for (int i = 0; i < m->nwarned && !seen; i++)
		seen = strcmp(m->warned[i], key) == 0;
	if (!seen && m->nwarned < WARNED_MAX) {
		memcpy(m->warned[m->nwarned++], key, sizeof(key));
	} else if (!seen) {
		seen = true; /* table full: stay quiet rather than flood */
	}
	pthread_mutex_unlock(&m->mu);
	if (!seen)
		cw_warn("mqtt.refused", "device=%s topic=%s reason=%s%s%s msg=\"message ignored "
			"(logged once an hour per device and reason)\"", device, kind, reason,
			field ? " field=" : "", field ? field : "");
}

/* "cartwise/{chain}/{branch}/devices/{device}/{kind}": true with the three
 * ids (canonical UUIDs) and the kind. */
static bool topic_split(const char *topic, char chain[CW_UUID_STRLEN], char branch[CW_UUID_STRLEN],
			char device[CW_UUID_STRLEN], char kind[16])
{
	char copy[CW_MQTT_TOPIC_MAX], *rest = copy, *seg[7];
	int n = 0;

	if (strlen(topic) >= sizeof(copy))
		return false;
	memcpy(copy, topic, strlen(topic) + 1);
	while (rest && n < 7)
		seg[n++] = strsep(&rest, "/");
	if (n != 6 || rest || strcmp(seg[0], "cartwise") != 0 || strcmp(seg[3], "devices") != 0 ||
	    !cw_uuid_valid(seg[1]) || !cw_uuid_valid(seg[2]) || !cw_uuid_valid(seg[4]) ||
	    strlen(seg[5]) >= 16)
		return false;
	memcpy(chain, seg[1], CW_UUID_STRLEN);
	memcpy(branch, seg[2], CW_UUID_STRLEN);
	memcpy(device, seg[4], CW_UUID_STRLEN);
	memcpy(kind, seg[5], strlen(seg[5]) + 1);
	return true;
}

/* Printable ASCII of 1..max bytes. */
static bool printable(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n < 1 || n > max)
		return false;
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* Checks what status and telemetry share: only the given keys, "v": 1, "at"
 * optional text. Returns the offending field or NULL. */
static const char *check_common(const cJSON *o, const char *const *keys)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "v");
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "at");
	const cJSON *it;

	cJSON_ArrayForEach(it, o) {
		bool known = false;
		for (int i = 0; keys[i] && !known; i++)
			known = it->string && strcmp(it->string, keys[i]) == 0;
		if (!known)
			return "unknown_key"; /* its name is the device's text: not logged */
	}
	if (!cJSON_IsNumber(v) || v->valuedouble != 1)
		return "v";
	if (at && (!cJSON_IsString(at) || !printable(at->valuestring, 40)))
		return "at";
	return NULL;
}

static void on_status(struct cw_cloud_mqtt *m, const struct cw_device *d, const cJSON *o)
{
	const char *device = d->id;
	static const char *const keys[] = {"v", "status", "at", "firmware_version", NULL};
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "status");
	const cJSON *fw = cJSON_GetObjectItemCaseSensitive(o, "firmware_version");
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "at");
	const char *bad = check_common(o, keys);
	struct cw_heartbeat hb = {.now_ms = cw_wall_ms()};
	int64_t at_ms;
	bool online;
	int rc;

	if (!bad && (!cJSON_IsString(st) || (strcmp(st->valuestring, "online") != 0 &&
					     strcmp(st->valuestring, "offline") != 0)))
		bad = "status";
	if (!bad && fw &&
	    (!cJSON_IsString(fw) || !printable(fw->valuestring, CW_FIRMWARE_MAX - 1)))
		bad = "firmware_version";
	if (bad) {
		refuse(m, device, "status", "bad_field", bad);
		return;
	}
	/* online: like a heartbeat (last seen, and status offline -> online);
	 * offline (the Last Will, or a clean stop): the device reads as
	 * offline at once */
	online = strcmp(st->valuestring, "online") == 0;
	/* an online older than offline_after_s (the broker's retained one,
	 * replayed at every subscribe, of a device that may be long dead) is
	 * no sighting */
	if (online && at && cw_cloud_rfc3339_ms(at->valuestring, &at_ms) &&
	    hb.now_ms - at_ms > (int64_t)m->cfg.offline_after_s * 1000) {
		cw_debug("mqtt.status_stale", "device=%s status=online at=%s", device,
			 at->valuestring);
		return;
	}
	/* a reconnect's online does not hide what the last heartbeat said */
	hb.status = online && (strcmp(d->status, "degraded") == 0 ||
			       strcmp(d->status, "maintenance") == 0)
			    ? d->status
			    : st->valuestring;
	hb.firmware = fw && online ? fw->valuestring : NULL;
	rc = cw_store_device_heartbeat(m->store, device, &hb, NULL);
	if (rc != CW_OK) {
		refuse(m, device, "status", "store_error", cw_errname(rc));
		return;
	}
	cw_debug("mqtt.status", "device=%s status=%s", device, hb.status);
	cw_events_publish(m->events, d->branch_id, CW_EVENT_DEVICES);
}

static void on_telemetry(struct cw_cloud_mqtt *m, const struct cw_device *d, const cJSON *o)
{
	const char *device = d->id;
	static const char *const keys[] = {"v", "at", "health", NULL};
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "health");
	const char *bad = check_common(o, keys);
	char *text = NULL;
	int rc;

	if (!bad && !cJSON_IsObject(h))
		bad = "health";
	if (!bad && (!(text = cJSON_PrintUnformatted(h)) || strlen(text) > CW_JSON_IN_MAX))
		bad = "health";
	if (bad) {
		refuse(m, device, "telemetry", "bad_field", bad);
		goto out;
	}
	rc = cw_store_device_health(m->store, device, text, cw_wall_ms());
	if (rc != CW_OK)
		refuse(m, device, "telemetry", "store_error", cw_errname(rc));
	else
		cw_events_publish(m->events, d->branch_id, CW_EVENT_DEVICES);
out:
	cJSON_free(text);
}

/* paho's thread. The store is thread-safe (its SQLite writer connection is
 * taken under its own lock), so a message is recorded here directly: one
 * short UPDATE, no queue to lose on a crash. */
static void on_msg(void *ctx, const char *topic, const void *payload, size_t len)
{
	struct cw_cloud_mqtt *m = ctx;
	char chain[CW_UUID_STRLEN], branch[CW_UUID_STRLEN], device[CW_UUID_STRLEN], kind[16];
	char *copy = NULL;
	struct cw_device *d = NULL;
	cJSON *o = NULL;
	int rc;

	if (!topic_split(topic, chain, branch, device, kind) ||
	    (strcmp(kind, "status") != 0 && strcmp(kind, "telemetry") != 0)) {
		refuse(m, "-", "-", "bad_topic", NULL);
		return;
	}
	if (len > CW_CLOUD_MQTT_PAYLOAD_MAX) {
		refuse(m, device, kind, "too_big", NULL);
		return;
	}
	if (!(copy = malloc(len + 1)) || !(d = malloc(sizeof(*d)))) {
		refuse(m, device, kind, "no_memory", NULL);
		goto out;
	}
	memcpy(copy, payload, len);
	copy[len] = '\0';
	/* one JSON object and nothing after it; no NUL inside (cJSON would cut
	 * a string there), UTF-8 only (PostgreSQL's jsonb refuses anything else) */
	o = memchr(copy, '\0', len) || !cw_cloud_utf8_ok(copy) ? NULL
								: cJSON_ParseWithOpts(copy, NULL, true);
	if (!cJSON_IsObject(o)) {
		refuse(m, device, kind, "not_json_object", NULL);
		goto out;
	}
	/* the device must exist and sit where its topic says: a device can only
	 * write under its own id (the broker's ACL), but nothing stops it from
	 * naming another chain or branch in that topic */
	rc = cw_store_device_get(m->store, device, d);
	if (rc == CW_ERR_NOTFOUND) {
		refuse(m, device, kind, "unknown_device", NULL);
		goto out;
	}
	if (rc != CW_OK) {
		refuse(m, device, kind, "store_error", cw_errname(rc));
		goto out;
	}
	if (strcmp(d->chain_id, chain) != 0 || strcmp(d->branch_id, branch) != 0) {
		refuse(m, device, kind, "wrong_chain_or_branch", NULL);
		goto out;
	}
	if (strcmp(kind, "status") == 0)
		on_status(m, d, o);
	else
		on_telemetry(m, d, o);
out:
	cJSON_Delete(o);
	free(d);
	free(copy);
}

static void on_state(void *ctx, bool connected)
{
	struct cw_cloud_mqtt *m = ctx;

	if (connected)
		cw_info("mqtt.connected", "host=%s port=%d", m->cfg.mqtt_connect_host,
			m->cfg.mqtt_connect_port);
	else
		cw_warn("mqtt.disconnected", "host=%s port=%d msg=\"commands go by heartbeat until "
			"the link is back\"", m->cfg.mqtt_connect_host, m->cfg.mqtt_connect_port);
}

int cw_cloud_mqtt_new(const struct cw_cloud_config *cfg, struct cw_store *s,
		      const unsigned char sk[crypto_sign_SECRETKEYBYTES], struct cw_events *events,
		      struct cw_cloud_mqtt **out)
{
	struct cw_mqtt_config mc = {.tls = cfg->mqtt_tls};
	struct cw_cloud_mqtt *m;
	char host[64] = "";
	int rc;

	*out = NULL;
	if (!cfg->mqtt_host[0] || !cfg->mqtt_password_file[0]) {
		if (cfg->mqtt_host[0])
			cw_info("mqtt.off", "msg=\"mqtt.password_file not set: the cloud does not "
				"connect to the broker; commands go by heartbeat\"");
		return CW_OK;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return CW_ERR_NOMEM;
	pthread_mutex_init(&m->mu, NULL);
	pthread_mutex_init(&m->pw_mu, NULL);
	m->cfg = *cfg;
	m->store = s;
	m->events = events;
	m->warned_since_ms = cw_mono_ms();
	memcpy(m->sk, sk, sizeof(m->sk));
	rc = cw_cloud_mqtt_password(cfg, m->password);
	if (rc != CW_OK) {
		cw_error("mqtt.password", "path=%s msg=\"cannot read the broker password (one line "
			 "of 1..%d bytes)\"", cfg->mqtt_password_file, CW_CLOUD_MQTT_PASSWORD_MAX);
		goto fail;
	}
	if (cfg->mqtt_passwd_out[0]) {
		rc = passwd_write(cfg, s, sk, m->password, cfg->mqtt_passwd_out);
		if (rc != CW_OK)
			cw_error("mqtt.passwd_out", "path=%s msg=\"cannot write the broker's password "
				 "file (%s)\"", cfg->mqtt_passwd_out, cw_strerror(rc));
	}
	snprintf(mc.host, sizeof(mc.host), "%s", cfg->mqtt_connect_host);
	mc.port = cfg->mqtt_connect_port;
	snprintf(mc.ca_file, sizeof(mc.ca_file), "%s", cfg->mqtt_ca_file);
	/* one persistent session per host: a restarted cloud gets the QoS 1
	 * messages that arrived meanwhile */
	if (gethostname(host, sizeof(host) - 1) != 0 || !host[0]) {
		unsigned char r[6];
		randombytes_buf(r, sizeof(r));
		sodium_bin2hex(host, sizeof(host), r, sizeof(r));
	}
	snprintf(mc.client_id, sizeof(mc.client_id), "cartwise-cloud-%.40s", host);
	snprintf(mc.username, sizeof(mc.username), "%s", cfg->mqtt_username);
	snprintf(mc.password, sizeof(mc.password), "%s", m->password);
	rc = cw_mqtt_new(&mc, on_msg, on_state, m, &m->m);
	sodium_memzero(mc.password, sizeof(mc.password));
	if (rc != CW_OK ||
	    (rc = cw_mqtt_subscribe(m->m, "cartwise/+/+/devices/+/status", 1, 0)) ||
	    (rc = cw_mqtt_subscribe(m->m, "cartwise/+/+/devices/+/telemetry", 1, 0)) ||
	    (rc = cw_mqtt_start(m->m)))
		goto fail;
	*out = m;
	return CW_OK;
fail:
	cw_cloud_mqtt_free(m);
	return rc;
}

void cw_cloud_mqtt_free(struct cw_cloud_mqtt *m)
{
	if (!m)
		return;
	cw_mqtt_free(m->m);
	pthread_mutex_destroy(&m->mu);
	pthread_mutex_destroy(&m->pw_mu);
	sodium_memzero(m->sk, sizeof(m->sk));
	sodium_memzero(m->password, sizeof(m->password));
	free(m);
}

void cw_cloud_mqtt_command(struct cw_cloud_mqtt *m, const struct cw_command *cmd,
			   const char *element)
{
	char topic[CW_MQTT_TOPIC_MAX];
	int rc;

	if (!m || !element)
		return;
	snprintf(topic, sizeof(topic), "cartwise/%s/%s/devices/%s/commands", cmd->chain_id,
		 cmd->branch_id, cmd->device_id);
	/* no wait for the broker's PUBACK: an API request never waits on the
	 * broker, and the command stays pending for the heartbeat either way */
	rc = cw_mqtt_publish(m->m, topic, element, strlen(element), 1, false, 0);
	if (rc == CW_OK)
		cw_debug("mqtt.command_sent", "command=%s device=%s", cmd->id, cmd->device_id);
	else
		cw_info("mqtt.command_skipped", "command=%s device=%s reason=%s msg=\"the heartbeat "
			"hands it out\"", cmd->id, cmd->device_id, cw_strerror(rc));
}

void cw_cloud_mqtt_devices_changed(struct cw_cloud_mqtt *m)
{
	int rc;

	if (!m || !m->cfg.mqtt_passwd_out[0])
		return;
	pthread_mutex_lock(&m->pw_mu);
	rc = passwd_write(&m->cfg, m->store, m->sk, m->password, m->cfg.mqtt_passwd_out);
	pthread_mutex_unlock(&m->pw_mu);
	if (rc != CW_OK)
		cw_error("mqtt.passwd_out", "path=%s msg=\"cannot write the broker's password file "
			 "(%s)\"", m->cfg.mqtt_passwd_out, cw_strerror(rc));
}
