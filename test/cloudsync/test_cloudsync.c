/* Unit tests of src/cloudsync: the credential file, RFC 3339 times, the
 * backoff's bounds, and command verification with a key made by the
 * cloud's own `cartwise-cloud keygen`. */
#include <check.h>
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_cred.h"
#include "cw_error.h"
#include "cw_jwt.h"
#include "cw_log.h"
#include "cw_syncer_int.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define DEV "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

static char dir[256];

static void mk_tmpdir(void)
{
	snprintf(dir, sizeof(dir), "%s/cwsync.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tmpdir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void fill_cred(struct cw_cred *c)
{
	unsigned char sk[crypto_sign_SECRETKEYBYTES];

	memset(c, 0, sizeof(*c));
	snprintf(c->device_id, sizeof(c->device_id), DEV);
	snprintf(c->branch_id, sizeof(c->branch_id), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c");
	snprintf(c->chain_id, sizeof(c->chain_id), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d");
	snprintf(c->device_token, sizeof(c->device_token), "aaa.bbb.ccc");
	c->token_issued_ms = 1790000000000LL;
	c->token_expires_ms = 1792592000123LL;
	crypto_sign_keypair(c->cloud_pk, sk);
	snprintf(c->cloud_issuer, sizeof(c->cloud_issuer), "cartwise-cloud");
	cw_cred_code_hash("ABC-def", c->enrollment_code_hash);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

START_TEST(cred_roundtrip)
{
	struct cw_cred c, d;
	char path[400], err[256];
	struct stat st;
	DIR *dh;
	struct dirent *de;
	int files = 0;

	mk_tmpdir();
	ck_assert_int_eq(cw_cred_path(dir, path, sizeof(path)), CW_OK);
	ck_assert_int_eq(cw_cred_load(path, &d, err, sizeof(err)), CW_ERR_NOTFOUND);
	fill_cred(&c);
	c.has_mqtt = true;
	snprintf(c.mqtt_broker, sizeof(c.mqtt_broker), "mqtt.example.com");
	c.mqtt_port = 8883;
	c.mqtt_tls = true;
	snprintf(c.mqtt_topic, sizeof(c.mqtt_topic), "cartwise/a/b/devices/c");
	snprintf(c.mqtt_username, sizeof(c.mqtt_username), DEV);
	snprintf(c.mqtt_password, sizeof(c.mqtt_password), "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg");
	ck_assert_int_eq(cw_cred_save(path, &c), CW_OK);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(cw_cred_load(path, &d, err, sizeof(err)), CW_OK);
	ck_assert_str_eq(d.device_id, c.device_id);
	ck_assert_str_eq(d.branch_id, c.branch_id);
	ck_assert_str_eq(d.chain_id, c.chain_id);
	ck_assert_str_eq(d.device_token, c.device_token);
	ck_assert_int_eq(d.token_issued_ms, c.token_issued_ms);
	ck_assert_int_eq(d.token_expires_ms, c.token_expires_ms);
	ck_assert_mem_eq(d.cloud_pk, c.cloud_pk, sizeof(c.cloud_pk));
	ck_assert_str_eq(d.cloud_issuer, "cartwise-cloud");
	ck_assert_str_eq(d.enrollment_code_hash, c.enrollment_code_hash);
	ck_assert(d.has_mqtt);
	ck_assert_str_eq(d.mqtt_broker, "mqtt.example.com");
	ck_assert_int_eq(d.mqtt_port, 8883);
	ck_assert(d.mqtt_tls);
	ck_assert_str_eq(d.mqtt_topic, "cartwise/a/b/devices/c");
	ck_assert_str_eq(d.mqtt_username, DEV);
	ck_assert_str_eq(d.mqtt_password, c.mqtt_password);
	ck_assert(cw_cred_mqtt_same(&c, &d));
	/* saved again (rotation): replaced, still 0600, no temp file left */
	snprintf(c.device_token, sizeof(c.device_token), "ddd.eee.fff");
	c.has_mqtt = false;
	ck_assert_int_eq(cw_cred_save(path, &c), CW_OK);
	ck_assert_int_eq(cw_cred_load(path, &d, err, sizeof(err)), CW_OK);
	ck_assert_str_eq(d.device_token, "ddd.eee.fff");
	ck_assert(!d.has_mqtt);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	dh = opendir(dir);
	while ((de = readdir(dh)))
		if (de->d_name[0] != '.')
			files++;
	closedir(dh);
	ck_assert_int_eq(files, 1);
	/* a group-readable file is loaded (with a warning), not refused */
	chmod(path, 0644);
	ck_assert_int_eq(cw_cred_load(path, &d, err, sizeof(err)), CW_OK);
	/* the code hash ignores case, as the cloud does */
	{
		char h1[65], h2[65];
		cw_cred_code_hash("abc-DEF", h1);
		cw_cred_code_hash("ABC-def", h2);
		ck_assert_str_eq(h1, h2);
		cw_cred_code_hash("abc-deg", h2);
		ck_assert_str_ne(h1, h2);
	}
	rm_tmpdir();
}
END_TEST

/* Each bad file is refused with CW_ERR_CONFIG and a message naming the key,
 * never the token. */
START_TEST(cred_strict)
{
	static const struct {
		const char *edit; /* a textual change of the saved file (cJSON_Print: key, colon, tab) */
		const char *from, *to, *key;
	} cases[] = {
		{"unknown key", "\"chain_id\"", "\"chain\": 1, \"chain_id\"", "chain"},
		{"duplicate key", "\"chain_id\"", "\"device_id\": \"x\", \"chain_id\"", "device_id"},
		{"token not a string", "\"device_token\":\t\"aaa.bbb.ccc\"", "\"device_token\": 5",
		 "device_token"},
		{"missing token", "\"device_token\":\t\"aaa.bbb.ccc\",", "", "device_token"},
		{"bad time", "\"token_expires_at\":\t\"", "\"token_expires_at\": \"x", "token_expires_at"},
		{"bad key", "\"cloud_public_key\":\t\"", "\"cloud_public_key\": \"!!", "cloud_public_key"},
		{"mqtt port", "\"mqtt\":\tnull", "\"mqtt\": {\"broker\": \"b\", \"port\": 0, \"topic\": \"t\"}",
		 "mqtt.port"},
		{"mqtt tls", "\"mqtt\":\tnull",
		 "\"mqtt\": {\"broker\": \"b\", \"port\": 1883, \"tls\": 1, \"topic\": \"t\"}", "mqtt.tls"},
		{"mqtt unknown key", "\"mqtt\":\tnull",
		 "\"mqtt\": {\"broker\": \"b\", \"port\": 1883, \"topic\": \"t\", \"qos\": 1}", "mqtt.qos"},
		{"mqtt password without user", "\"mqtt\":\tnull",
		 "\"mqtt\": {\"broker\": \"b\", \"port\": 1883, \"topic\": \"t\", \"password\": \"sekrit-pw\"}",
		 "mqtt.username"},
		{"mqtt topic wildcard", "\"mqtt\":\tnull",
		 "\"mqtt\": {\"broker\": \"b\", \"port\": 1883, \"topic\": \"cartwise/#\"}", "mqtt.topic"},
		{"not json", "{", "{{", ""},
		{"device id with a slash", "\"device_id\":\t\"0190", "\"device_id\": \"../0190", "device_id"},
	};
	struct cw_cred c, d;
	char path[400], bad[400], err[256], *text, *p;
	size_t n;
	FILE *f;

	mk_tmpdir();
	ck_assert_int_eq(cw_cred_path(dir, path, sizeof(path)), CW_OK);
	fill_cred(&c);
	ck_assert_int_eq(cw_cred_save(path, &c), CW_OK);
	f = fopen(path, "r");
	text = calloc(1, 8192);
	n = fread(text, 1, 8191, f);
	fclose(f);
	ck_assert_uint_gt(n, 0);
	snprintf(bad, sizeof(bad), "%s/bad.json", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[8192];
		p = strstr(text, cases[i].from);
		ck_assert_msg(p, "case %s: pattern", cases[i].edit);
		snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - text), text, cases[i].to,
			 p + strlen(cases[i].from));
		write_text(bad, out, 0600);
		ck_assert_msg(cw_cred_load(bad, &d, err, sizeof(err)) == CW_ERR_CONFIG,
			      "case %s accepted", cases[i].edit);
		ck_assert_msg(strstr(err, cases[i].key), "case %s: message '%s'", cases[i].edit,
			      err);
		ck_assert_msg(!strstr(err, "aaa.bbb.ccc"), "token echoed: %s", err);
		ck_assert_msg(!strstr(err, "sekrit-pw"), "password echoed: %s", err);
	}
	free(text);
	rm_tmpdir();
}
END_TEST

/* The cloud's mqtt_config (registration and rotation answers): the same
 * names as cloud.json's "mqtt", unknown keys tolerated (a newer cloud),
 * wrong types refused naming the key and never the password. */
START_TEST(cred_mqtt_config)
{
	struct cw_cred c, d;
	char err[256];
	cJSON *m;

	fill_cred(&c);
	m = cJSON_Parse("{\"broker\": \"mqtt.example.com\", \"port\": 8883, \"tls\": true, "
			"\"topic\": \"cartwise/a/b/devices/" DEV "\", \"username\": \"" DEV "\", "
			"\"password\": \"sekrit-pw\", \"newer_key\": 1}");
	ck_assert_int_eq(cw_cred_mqtt_from_json(m, &c, err, sizeof(err)), CW_OK);
	ck_assert(c.has_mqtt && c.mqtt_tls);
	ck_assert_int_eq(c.mqtt_port, 8883);
	ck_assert_str_eq(c.mqtt_username, DEV);
	ck_assert_str_eq(c.mqtt_password, "sekrit-pw");
	d = c;
	ck_assert(cw_cred_mqtt_same(&c, &d));
	/* a rotation that changes only the password is a change */
	snprintf(d.mqtt_password, sizeof(d.mqtt_password), "other-pw");
	ck_assert(!cw_cred_mqtt_same(&c, &d));
	d.has_mqtt = false;
	ck_assert(!cw_cred_mqtt_same(&c, &d));
	cJSON_Delete(m);

	m = cJSON_Parse("{\"broker\": \"b\", \"port\": \"1883\", \"topic\": \"t\", "
			"\"username\": \"u\", \"password\": \"sekrit-pw\"}");
	ck_assert_int_eq(cw_cred_mqtt_from_json(m, &c, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "mqtt_config.port"), "message '%s'", err);
	ck_assert(!c.has_mqtt);
	cJSON_Delete(m);
	m = cJSON_Parse("{\"broker\": \"b\", \"port\": 1883, \"topic\": \"t\", \"username\": \"u\"}");
	ck_assert_int_eq(cw_cred_mqtt_from_json(m, &c, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "mqtt_config.password"), "message '%s'", err);
	cJSON_Delete(m);
	m = cJSON_Parse("{\"broker\": \"b\", \"port\": 1883, \"topic\": \"t\", \"username\": \"u\", "
			"\"password\": 7}");
	ck_assert_int_eq(cw_cred_mqtt_from_json(m, &c, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "mqtt_config.password"), "message '%s'", err);
	cJSON_Delete(m);
	m = cJSON_Parse("[]");
	ck_assert_int_eq(cw_cred_mqtt_from_json(m, &c, err, sizeof(err)), CW_ERR_CONFIG);
	cJSON_Delete(m);
	/* without user name and password: a broker, but no link (cw_syncer) */
	m = cJSON_Parse("{\"broker\": \"b\", \"port\": 1883, \"topic\": \"t\"}");
	ck_assert_int_eq(cw_cred_mqtt_from_json(m, &c, err, sizeof(err)), CW_OK);
	ck_assert(c.has_mqtt && !c.mqtt_tls && !c.mqtt_username[0] && !c.mqtt_password[0]);
	cJSON_Delete(m);
}
END_TEST

START_TEST(times)
{
	int64_t ms = 0;

	ck_assert_int_eq(cw_cred_parse_time("2026-11-28T08:00:00.000Z", &ms), CW_OK);
	ck_assert_int_eq(ms, 1795852800000LL);
	ck_assert_int_eq(cw_cred_parse_time("2026-11-28T08:00:00Z", &ms), CW_OK);
	ck_assert_int_eq(ms, 1795852800000LL);
	ck_assert_int_eq(cw_cred_parse_time("2026-11-28T08:00:00.5+00:00", &ms), CW_OK);
	ck_assert_int_eq(ms, 1795852800500LL);
	/* what cw_wall_format writes, read back */
	{
		char buf[32];
		cw_wall_format(1764320000123LL, buf);
		ck_assert_int_eq(cw_cred_parse_time(buf, &ms), CW_OK);
		ck_assert_int_eq(ms, 1764320000123LL);
	}
	ck_assert_int_eq(cw_cred_parse_time("2026-11-28 08:00:00Z", &ms), CW_ERR_INVAL);
	ck_assert_int_eq(cw_cred_parse_time("2026-11-28T08:00:00+02:00", &ms), CW_ERR_INVAL);
	ck_assert_int_eq(cw_cred_parse_time("2026-13-28T08:00:00Z", &ms), CW_ERR_INVAL);
	ck_assert_int_eq(cw_cred_parse_time("2026-11-28T08:00:00.Z", &ms), CW_ERR_INVAL);
	ck_assert_int_eq(cw_cred_parse_time("", &ms), CW_ERR_INVAL);
	ck_assert_int_eq(cw_cred_parse_time(NULL, &ms), CW_ERR_INVAL);
}
END_TEST

/* Full jitter: every delay in [0, min(cap, base * 2^(n-1))], spread over the
 * whole range (not stuck at 0 or at the bound). */
START_TEST(backoff_bounds)
{
	static const int bases[][2] = {{1000, 60000}, {20, 200}, {1, 1}, {500, 700}};

	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
		int base = bases[b][0], cap = bases[b][1];
		for (int n = 1; n <= 18; n++) {
			int64_t lim = base, max = -1, min = INT64_MAX;
			double sum = 0;
			for (int i = 1; i < n && lim < cap; i++)
				lim *= 2;
			if (lim > cap)
				lim = cap;
			for (int i = 0; i < 600; i++) {
				int64_t d = cw_sync_backoff_ms(base, cap, n);
				ck_assert_int_ge(d, 0);
				ck_assert_int_le(d, lim);
				max = d > max ? d : max;
				min = d < min ? d : min;
				sum += (double)d;
			}
			if (lim >= 20) {
				ck_assert_int_ge(max, lim * 9 / 10);
				ck_assert_int_le(min, lim / 10);
				ck_assert(sum / 600 > lim * 0.4 && sum / 600 < lim * 0.6);
			}
		}
	}
	/* the documented defaults: 1 s, 2 s, 4 s … capped at 60 s */
	for (int i = 0; i < 200; i++) {
		ck_assert_int_le(cw_sync_backoff_ms(1000, 60000, 1), 1000);
		ck_assert_int_le(cw_sync_backoff_ms(1000, 60000, 3), 4000);
		ck_assert_int_le(cw_sync_backoff_ms(1000, 60000, 1000000), 60000);
	}
}
END_TEST

/* ---- commands ---------------------------------------------------------- */

static unsigned char sk[crypto_sign_SECRETKEYBYTES], sk_other[crypto_sign_SECRETKEYBYTES];
static struct cw_cred cred;
static int64_t now_ms;

/* A secret key from `cartwise-cloud keygen` (one base64url line). */
static void keygen(const char *name, unsigned char out[crypto_sign_SECRETKEYBYTES])
{
	const char *b = getenv("CW_BUILD_DIR");
	char cmd[1024], path[400], line[256];
	size_t n = 0;
	FILE *f;

	ck_assert_ptr_nonnull(b);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(cmd, sizeof(cmd), "'%s/src/cloud/cartwise-cloud' keygen --out '%s' >/dev/null 2>&1",
		 b, path);
	ck_assert_int_eq(system(cmd), 0);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	ck_assert_int_eq(sodium_base642bin(out, crypto_sign_SECRETKEYBYTES, line, strlen(line), NULL,
					   &n, NULL, B64),
			 0);
	ck_assert_uint_eq(n, crypto_sign_SECRETKEYBYTES);
}

static void cmd_setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	mk_tmpdir();
	keygen("cloud.key", sk);
	keygen("other.key", sk_other);
	fill_cred(&cred);
	crypto_sign_ed25519_sk_to_pk(cred.cloud_pk, sk);
	now_ms = cw_wall_ms();
}

static void cmd_teardown(void)
{
	rm_tmpdir();
}

static cJSON *claims(const char *jti)
{
	cJSON *c = cJSON_CreateObject(), *a;

	cJSON_AddStringToObject(c, "typ", "command");
	cJSON_AddStringToObject(c, "iss", "cartwise-cloud");
	cJSON_AddStringToObject(c, "aud", "cartwise-device");
	cJSON_AddStringToObject(c, "jti", jti);
	cJSON_AddStringToObject(c, "sub", DEV);
	cJSON_AddStringToObject(c, "act", "unlock");
	a = cJSON_AddObjectToObject(c, "args");
	cJSON_AddNumberToObject(a, "cart_number", 7);
	cJSON_AddNumberToObject(c, "iat", (double)(now_ms / 1000 - 2));
	cJSON_AddNumberToObject(c, "exp", (double)(now_ms / 1000 + 60));
	return c;
}

static void set(cJSON *c, const char *key, cJSON *v)
{
	if (cJSON_HasObjectItem(c, key))
		cJSON_ReplaceItemInObjectCaseSensitive(c, key, v);
	else
		cJSON_AddItemToObject(c, key, v);
}

/* The heartbeat's command object {"id", "action", "args", "token"}. */
static cJSON *command(const char *id, cJSON *cl, const unsigned char *key)
{
	cJSON *o = cJSON_CreateObject();
	char *tok = NULL;

	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "action", "unlock");
	if (cl) {
		ck_assert_int_eq(cw_jwt_sign(cl, key, &tok), CW_OK);
		cJSON_AddStringToObject(o, "token", tok);
		free(tok);
		cJSON_Delete(cl);
	}
	return o;
}

static const char *verify(cJSON *cmd, int want)
{
	struct cw_sync_command out;
	cJSON *cl = NULL;
	const char *why = NULL;
	int rc = cw_sync_verify_command(&cred, cmd, now_ms, &out, &cl, &why);

	ck_assert_msg(rc == want, "rc %d want %d (%s)", rc, want, why);
	if (rc == CW_OK)
		ck_assert_ptr_nonnull(cl);
	else
		ck_assert_ptr_null(cl);
	cJSON_Delete(cl);
	cJSON_Delete(cmd);
	return why;
}

START_TEST(cmd_good)
{
	struct cw_sync_command out;
	cJSON *cmd = command("c1", claims("c1"), sk), *cl = NULL;
	const char *why = NULL;

	ck_assert_int_eq(cw_sync_verify_command(&cred, cmd, now_ms, &out, &cl, &why), CW_OK);
	ck_assert_str_eq(out.id, "c1");
	ck_assert_str_eq(out.action, "unlock");
	ck_assert(cJSON_IsObject(out.args));
	ck_assert_int_eq(cJSON_GetObjectItem(out.args, "cart_number")->valueint, 7);
	ck_assert_int_eq(out.expires_ms, (now_ms / 1000 + 60) * 1000);
	ck_assert_int_eq(out.issued_ms, (now_ms / 1000 - 2) * 1000);
	cJSON_Delete(cl);
	cJSON_Delete(cmd);
	/* no args claim: an empty object, never NULL */
	cJSON *c2 = claims("c2");
	cJSON_DeleteItemFromObject(c2, "args");
	cmd = command("c2", c2, sk);
	ck_assert_int_eq(cw_sync_verify_command(&cred, cmd, now_ms, &out, &cl, &why), CW_OK);
	ck_assert(cJSON_IsObject(out.args));
	cJSON_Delete(cl);
	cJSON_Delete(cmd);
}
END_TEST

START_TEST(cmd_refused)
{
	cJSON *c;
	char hdr[128], pay[2048], tok[4096];
	char *ptext;

	/* another key */
	ck_assert_str_eq(verify(command("c1", claims("c1"), sk_other), CW_ERR_AUTH), "bad_signature");
	/* alg none, no signature */
	c = claims("c1");
	ptext = cJSON_PrintUnformatted(c);
	cJSON_Delete(c);
	sodium_bin2base64(hdr, sizeof(hdr), (const unsigned char *)"{\"alg\":\"none\",\"typ\":\"JWT\"}",
			  strlen("{\"alg\":\"none\",\"typ\":\"JWT\"}"), B64);
	sodium_bin2base64(pay, sizeof(pay), (const unsigned char *)ptext, strlen(ptext), B64);
	free(ptext);
	snprintf(tok, sizeof(tok), "%s.%s.", hdr, pay);
	c = command("c1", NULL, NULL);
	cJSON_AddStringToObject(c, "token", tok);
	ck_assert_str_eq(verify(c, CW_ERR_AUTH), "bad_alg");
	/* tampered claims under a good signature */
	c = command("c1", claims("c1"), sk);
	{
		const char *t = cJSON_GetObjectItem(c, "token")->valuestring;
		char copy[4096];
		snprintf(copy, sizeof(copy), "%s", t);
		char *dot = strchr(copy, '.');
		dot[3] = dot[3] == 'A' ? 'B' : 'A';
		set(c, "token", cJSON_CreateString(copy));
	}
	ck_assert_str_eq(verify(c, CW_ERR_AUTH), "bad_signature");
	/* wrong device */
	c = claims("c1");
	set(c, "sub", cJSON_CreateString("0190a1b2-c3d4-7e5f-8a9b-000000000000"));
	ck_assert_str_eq(verify(command("c1", c, sk), CW_ERR_AUTH), "wrong_device");
	/* expired: by a second (inside cw_jwt's leeway: refused all the same) and long ago */
	c = claims("c1");
	set(c, "exp", cJSON_CreateNumber((double)(now_ms / 1000 - 1)));
	ck_assert_str_eq(verify(command("c1", c, sk), CW_ERR_AUTH), "expired");
	c = claims("c1");
	set(c, "iat", cJSON_CreateNumber((double)(now_ms / 1000 - 7200)));
	set(c, "exp", cJSON_CreateNumber((double)(now_ms / 1000 - 3600)));
	ck_assert_str_eq(verify(command("c1", c, sk), CW_ERR_AUTH), "expired");
	/* issued in the future beyond the leeway */
	c = claims("c1");
	set(c, "iat", cJSON_CreateNumber((double)(now_ms / 1000 + 30)));
	ck_assert_str_eq(verify(command("c1", c, sk), CW_ERR_AUTH), "issued_in_future");
	/* wrong typ, aud, iss */
	c = claims("c1");
	set(c, "typ", cJSON_CreateString("device"));
	ck_assert_str_eq(verify(command("c1", c, sk), CW_ERR_AUTH), "bad_typ");
	c = claims("c1");
	set(c, "aud", cJSON_CreateString("cartwise-api"));
	ck_assert_str_eq(verify(command("c1", c, sk), CW_ERR_AUTH), "bad_aud");
	c = claims("c1");
	set(c, "iss", cJSON_CreateString("someone-else"));
	ck_assert_str_eq(verify(command("c1", c, sk), CW_ERR_AUTH), "bad_iss");
	/* a valid token under another command id */
	ck_assert_str_eq(verify(command("c2", claims("c1"), sk), CW_ERR_AUTH), "id_mismatch");
	/* no act, args not an object: signed, so handed on (the source records
	 * them refused), with the reason */
	c = claims("c1");
	cJSON_DeleteItemFromObject(c, "act");
	ck_assert_str_eq(verify(command("c1", c, sk), CW_OK), "bad_action");
	c = claims("c1");
	set(c, "args", cJSON_CreateString("x"));
	ck_assert_str_eq(verify(command("c1", c, sk), CW_OK), "bad_args");
	{
		struct cw_sync_command out;
		cJSON *cl = NULL, *cmd;
		const char *why = NULL;

		c = claims("c1");
		set(c, "act", cJSON_CreateNumber(3));
		set(c, "args", cJSON_CreateString("x"));
		cmd = command("c1", c, sk);
		ck_assert_int_eq(cw_sync_verify_command(&cred, cmd, now_ms, &out, &cl, &why), CW_OK);
		ck_assert_str_eq(why, "bad_action");
		ck_assert_str_eq(out.action, "");
		ck_assert_str_eq(out.id, "c1");
		ck_assert(cJSON_IsString(out.args));
		cJSON_Delete(cl);
		cJSON_Delete(cmd);
	}
	/* unsigned (what this tree's cloud hands out today), malformed objects */
	ck_assert_str_eq(verify(command("c1", NULL, NULL), CW_ERR_AUTH), "unsigned");
	ck_assert_str_eq(verify(cJSON_CreateString("x"), CW_ERR_INVAL), "malformed");
	c = cJSON_CreateObject();
	cJSON_AddNumberToObject(c, "id", 5);
	ck_assert_str_eq(verify(c, CW_ERR_INVAL), "malformed");
	c = command("c1", NULL, NULL);
	cJSON_AddNumberToObject(c, "token", 5);
	ck_assert_str_eq(verify(c, CW_ERR_AUTH), "unsigned");
	c = command("c1", NULL, NULL);
	cJSON_AddStringToObject(c, "token", "garbage");
	ck_assert_int_eq(strcmp(verify(c, CW_ERR_AUTH), "ok") != 0, 1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("cloudsync");
	TCase *tc = tcase_create("cred");

	tcase_add_test(tc, cred_roundtrip);
	tcase_add_test(tc, cred_strict);
	tcase_add_test(tc, cred_mqtt_config);
	tcase_add_test(tc, times);
	suite_add_tcase(s, tc);
	tc = tcase_create("backoff");
	tcase_add_test(tc, backoff_bounds);
	suite_add_tcase(s, tc);
	tc = tcase_create("commands");
	tcase_add_checked_fixture(tc, cmd_setup, cmd_teardown);
	tcase_add_test(tc, cmd_good);
	tcase_add_test(tc, cmd_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	if (sodium_init() < 0)
		return 1;
	cw_log_set_level(CW_LOG_WARN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
