/* cw_cred.c - <data_dir>/cloud.json (see the header). */
#include "cw_cred.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_file.h"
#include "cw_jsoncfg.h"
#include "cw_log.h"

#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

int cw_cred_path(const char *data_dir, char *out, size_t cap)
{
	int n;

	if (!data_dir || !*data_dir)
		return CW_ERR_CONFIG;
	n = snprintf(out, cap, "%s/%s", data_dir, CW_CRED_FILE);
	return n < 0 || (size_t)n >= cap ? CW_ERR_TOOBIG : CW_OK;
}

bool cw_cred_id_ok(const char *id)
{
	size_t n = 0;

	for (; id && id[n]; n++) {
		char ch = id[n];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      ch == '-'))
			return false;
	}
	return n > 0 && n < CW_SYNC_ID_MAX;
}

void cw_cred_code_hash(const char *code, char out[65])
{
	unsigned char h[32];
	char low[CW_SYNC_CODE_MAX];
	size_t n = strnlen(code, sizeof(low) - 1);

	/* the cloud compares codes case-insensitively (it lower-cases them) */
	for (size_t i = 0; i < n; i++)
		low[i] = (code[i] >= 'A' && code[i] <= 'Z') ? (char)(code[i] - 'A' + 'a') : code[i];
	crypto_generichash(h, sizeof(h), (const unsigned char *)low, n, NULL, 0);
	sodium_memzero(low, sizeof(low));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

static int two(const char *s, int *v)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	*v = (s[0] - '0') * 10 + (s[1] - '0');
	return 0;
}

int cw_cred_parse_time(const char *s, int64_t *ms)
{
	struct tm tm = {0};
	int y1, y2, mo, d, h, mi, se, frac = 0, digits = 0;
	time_t t;
	size_t i = 19;

	if (!s || strlen(s) < 20 || two(s, &y1) || two(s + 2, &y2) || s[4] != '-' ||
	    two(s + 5, &mo) || s[7] != '-' || two(s + 8, &d) || s[10] != 'T' || two(s + 11, &h) ||
	    s[13] != ':' || two(s + 14, &mi) || s[16] != ':' || two(s + 17, &se))
		return CW_ERR_INVAL;
	if (s[i] == '.') {
		for (i++; s[i] >= '0' && s[i] <= '9'; i++, digits++)
			if (digits < 3)
				frac = frac * 10 + (s[i] - '0');
		if (digits == 0)
			return CW_ERR_INVAL;
		for (; digits < 3; digits++)
			frac *= 10;
	}
	if (strcmp(s + i, "Z") != 0 && strcmp(s + i, "+00:00") != 0)
		return CW_ERR_INVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return CW_ERR_INVAL;
	tm.tm_year = y1 * 100 + y2 - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return CW_ERR_INVAL;
	*ms = (int64_t)t * 1000 + frac;
	return CW_OK;
}

int cw_cred_token_info(const char *token, char *iss, size_t iss_cap, int64_t *iat_ms)
{
	const char *d1 = token ? strchr(token, '.') : NULL;
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	unsigned char *bin = NULL;
	size_t plen, n = 0;
	cJSON *c = NULL;
	const cJSON *it;
	int rc = CW_ERR_INVAL;

	if (!d2 || (plen = (size_t)(d2 - d1 - 1)) == 0 || plen > CW_JWT_MAX_LEN)
		return CW_ERR_INVAL;
	bin = malloc(plen + 1);
	if (!bin)
		return CW_ERR_NOMEM;
	if (sodium_base642bin(bin, plen, d1 + 1, plen, NULL, &n, NULL, B64URL) != 0)
		goto out;
	c = cJSON_ParseWithLength((const char *)bin, n);
	it = cJSON_GetObjectItemCaseSensitive(c, "iss");
	if (!cJSON_IsString(it) || strlen(it->valuestring) >= iss_cap || !*it->valuestring)
		goto out;
	snprintf(iss, iss_cap, "%s", it->valuestring);
	it = cJSON_GetObjectItemCaseSensitive(c, "iat");
	*iat_ms = cJSON_IsNumber(it) && it->valuedouble > 0 ? (int64_t)it->valuedouble * 1000 : 0;
	rc = CW_OK;
out:
	cJSON_Delete(c);
	free(bin);
	return rc;
}

static int get_time(struct cw_jsoncfg *jc, const cJSON *root, const char *key, bool required,
		    int64_t *out)
{
	char buf[40] = "";
	int rc = cw_jsoncfg_get_str(jc, root, key, required ? CW_JSONCFG_REQUIRED : 0, buf,
				    sizeof(buf));

	if (rc != CW_OK)
		return rc;
	if (!buf[0]) {
		*out = 0;
		return CW_OK;
	}
	if (cw_cred_parse_time(buf, out) != CW_OK)
		return cw_jsoncfg_fail(jc, key, "expected an RFC 3339 UTC time");
	return CW_OK;
}

/* The "mqtt" object of cloud.json, or the cloud's "mqtt_config" (same
 * names). strict: unknown keys refused (our own file); the cloud's answer
 * may carry keys a newer cloud added. */
static int parse_mqtt(struct cw_jsoncfg *jc, const cJSON *m, bool strict, struct cw_cred *out)
{
	static const char *const keys[] = {"broker", "port", "tls", "topic", "username", "password",
					   NULL};
	int rc = CW_OK;

	out->has_mqtt = false;
	out->mqtt_tls = false;
	out->mqtt_username[0] = out->mqtt_password[0] = '\0';
	if (!cJSON_IsObject(m))
		return cw_jsoncfg_fail(jc, NULL, "expected an object or null");
	if (strict)
		rc = cw_jsoncfg_check_keys(jc, m, keys);
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(jc, m, "broker", CW_JSONCFG_REQUIRED, out->mqtt_broker,
					sizeof(out->mqtt_broker));
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_int(jc, m, "port", 1, 65535, true, &out->mqtt_port);
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_bool(jc, m, "tls", &out->mqtt_tls);
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(jc, m, "topic", CW_JSONCFG_REQUIRED, out->mqtt_topic,
					sizeof(out->mqtt_topic));
	/* the topic is a prefix of ours: no wildcards, room for "/telemetry" */
	if (rc == CW_OK && (strpbrk(out->mqtt_topic, "+#") || strlen(out->mqtt_topic) > 200))
		rc = cw_jsoncfg_fail(jc, "topic", "expected a topic of at most 200 bytes without + or #");
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(jc, m, "username", 0, out->mqtt_username,
					sizeof(out->mqtt_username));
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(jc, m, "password", 0, out->mqtt_password,
					sizeof(out->mqtt_password));
	if (rc == CW_OK && !out->mqtt_username[0] != !out->mqtt_password[0])
		rc = cw_jsoncfg_fail(jc, out->mqtt_username[0] ? "password" : "username",
				     "expected with %s", out->mqtt_username[0] ? "username" : "password");
	out->has_mqtt = rc == CW_OK;
	if (rc != CW_OK)
		sodium_memzero(out->mqtt_password, sizeof(out->mqtt_password));
	return rc;
}

int cw_cred_mqtt_from_json(const cJSON *m, struct cw_cred *out, char *err, size_t errlen)
{
	struct cw_jsoncfg jc;

	cw_jsoncfg_init(&jc, err, errlen);
	cw_jsoncfg_enter(&jc, "mqtt_config");
	return parse_mqtt(&jc, m, false, out);
}

bool cw_cred_mqtt_same(const struct cw_cred *a, const struct cw_cred *b)
{
	if (!a->has_mqtt || !b->has_mqtt)
		return a->has_mqtt == b->has_mqtt;
	return strcmp(a->mqtt_broker, b->mqtt_broker) == 0 && a->mqtt_port == b->mqtt_port &&
	       a->mqtt_tls == b->mqtt_tls && strcmp(a->mqtt_topic, b->mqtt_topic) == 0 &&
	       strcmp(a->mqtt_username, b->mqtt_username) == 0 &&
	       sodium_memcmp(a->mqtt_password, b->mqtt_password, sizeof(a->mqtt_password)) == 0;
}

int cw_cred_load(const char *path, struct cw_cred *out, char *err, size_t errlen)
{
	static const char *const keys[] = {"device_id", "branch_id", "chain_id", "device_token",
					   "token_issued_at", "token_expires_at",
					   "cloud_public_key", "cloud_issuer",
					   "enrollment_code_hash", "mqtt", NULL};
	char pk64[80];
	struct cw_jsoncfg jc;
	struct stat st;
	char *text = NULL;
	size_t len = 0, pklen = 0;
	cJSON *root = NULL;
	const cJSON *m;
	int rc;

	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			return CW_ERR_NOTFOUND;
		if (err)
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return CW_ERR_IO;
	}
	/* The file holds a live device token; say so when others can read it.
	 * Loaded anyway: refusing would stop a branch's sync over a chmod. */
	if (st.st_mode & 077)
		cw_warn("cloud.credentials_mode", "path=%s mode=%04o want=0600", path,
			(unsigned)(st.st_mode & 07777));
	rc = cw_jsoncfg_read_file(path, CW_CRED_FILE_MAX, &text, &len, err, errlen);
	if (rc != CW_OK)
		goto out;
	cw_jsoncfg_init(&jc, err, errlen);
	rc = cw_jsoncfg_parse(&jc, text, len, CW_CRED_FILE_MAX, CW_JSONCFG_PARSE_LINE_COL,
			      &root);
	if (rc == CW_OK)
		rc = cw_jsoncfg_check_keys(&jc, root, keys);
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(&jc, root, "device_id", CW_JSONCFG_REQUIRED, out->device_id,
					sizeof(out->device_id));
	if (rc == CW_OK && !cw_cred_id_ok(out->device_id))
		rc = cw_jsoncfg_fail(&jc, "device_id", "expected 1-63 characters [0-9A-Za-z-]");
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(&jc, root, "branch_id", CW_JSONCFG_REQUIRED, out->branch_id,
					sizeof(out->branch_id));
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(&jc, root, "chain_id", CW_JSONCFG_REQUIRED, out->chain_id,
					sizeof(out->chain_id));
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(&jc, root, "device_token", CW_JSONCFG_REQUIRED,
					out->device_token, sizeof(out->device_token));
	if (rc == CW_OK)
		rc = get_time(&jc, root, "token_issued_at", false, &out->token_issued_ms);
	if (rc == CW_OK)
		rc = get_time(&jc, root, "token_expires_at", true, &out->token_expires_ms);
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(&jc, root, "cloud_public_key", CW_JSONCFG_REQUIRED, pk64,
					sizeof(pk64));
	if (rc == CW_OK &&
	    (sodium_base642bin(out->cloud_pk, sizeof(out->cloud_pk), pk64, strlen(pk64), NULL,
			       &pklen, NULL, B64URL) != 0 ||
	     pklen != sizeof(out->cloud_pk)))
		rc = cw_jsoncfg_fail(&jc, "cloud_public_key", "expected a base64url Ed25519 key");
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(&jc, root, "cloud_issuer", CW_JSONCFG_REQUIRED,
					out->cloud_issuer, sizeof(out->cloud_issuer));
	if (rc == CW_OK)
		rc = cw_jsoncfg_get_str(&jc, root, "enrollment_code_hash", CW_JSONCFG_EMPTY_OK,
					out->enrollment_code_hash,
					sizeof(out->enrollment_code_hash));
	m = rc == CW_OK ? cJSON_GetObjectItemCaseSensitive(root, "mqtt") : NULL;
	if (m && !cJSON_IsNull(m)) {
		size_t mark = cw_jsoncfg_enter(&jc, "mqtt");
		rc = parse_mqtt(&jc, m, true, out);
		cw_jsoncfg_pop(&jc, mark);
	}
	if (rc != CW_OK && err)
		cw_jsoncfg_prefix(err, errlen, path);
out:
	cJSON_Delete(root);
	if (text) {
		sodium_memzero(text, len);
		free(text);
	}
	if (rc != CW_OK)
		sodium_memzero(out, sizeof(*out));
	return rc;
}

static void add_time(cJSON *o, const char *key, int64_t ms)
{
	char buf[32];

	if (ms <= 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	cw_wall_format(ms, buf);
	cJSON_AddStringToObject(o, key, buf);
}

int cw_cred_save(const char *path, const struct cw_cred *c)
{
	char pk64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, B64URL)];
	char *text = NULL, *buf = NULL;
	size_t len = 0;
	cJSON *o = NULL, *m;
	int rc = CW_ERR_NOMEM;

	if (!path)
		return CW_ERR_INVAL;
	o = cJSON_CreateObject();
	if (!o)
		goto out;
	sodium_bin2base64(pk64, sizeof(pk64), c->cloud_pk, sizeof(c->cloud_pk), B64URL);
	cJSON_AddStringToObject(o, "device_id", c->device_id);
	cJSON_AddStringToObject(o, "branch_id", c->branch_id);
	cJSON_AddStringToObject(o, "chain_id", c->chain_id);
	cJSON_AddStringToObject(o, "device_token", c->device_token);
	add_time(o, "token_issued_at", c->token_issued_ms);
	add_time(o, "token_expires_at", c->token_expires_ms);
	cJSON_AddStringToObject(o, "cloud_public_key", pk64);
	cJSON_AddStringToObject(o, "cloud_issuer", c->cloud_issuer);
	cJSON_AddStringToObject(o, "enrollment_code_hash", c->enrollment_code_hash);
	if (c->has_mqtt) {
		m = cJSON_AddObjectToObject(o, "mqtt");
		if (m) {
			cJSON_AddStringToObject(m, "broker", c->mqtt_broker);
			cJSON_AddNumberToObject(m, "port", c->mqtt_port);
			cJSON_AddBoolToObject(m, "tls", c->mqtt_tls);
			cJSON_AddStringToObject(m, "topic", c->mqtt_topic);
			if (c->mqtt_username[0]) {
				cJSON_AddStringToObject(m, "username", c->mqtt_username);
				cJSON_AddStringToObject(m, "password", c->mqtt_password);
			}
		}
	} else {
		cJSON_AddNullToObject(o, "mqtt");
	}
	text = cJSON_Print(o);
	if (!text)
		goto out;
	len = strlen(text);
	buf = malloc(len + 1);
	if (!buf)
		goto out;
	memcpy(buf, text, len);
	buf[len] = '\n';
	/* mode 0600, temp file + fsync + rename + directory fsync (cw_file) */
	rc = cw_file_replace(path, buf, len + 1);
out:
	if (buf) {
		sodium_memzero(buf, len + 1);
		free(buf);
	}
	if (text) {
		sodium_memzero(text, strlen(text));
		cJSON_free(text);
	}
	cJSON_Delete(o); /* its copy of the token is freed unwiped: cJSON owns it */
	return rc;
}
