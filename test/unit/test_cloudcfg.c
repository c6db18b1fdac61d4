/* test_cloudcfg.c - the configuration the cloud manages (cw_cloudcfg): the
 * merge over the file, live application of rules and revoked tokens, refusal
 * of an invalid version (kept running on the last good one, remembered,
 * config.rejected in the outbox), buses/carts changes left for a restart,
 * a failed restart, no offer while a restart is under way,
 * cloud-config.json across a restart, the kiosk's staff (kiosk_staff):
 * checked, all or nothing with the rest, handed to the kiosk hooks live and
 * at start; and the chain's customer-token key, part of no version: checked,
 * kept in cloud-config.json with or without a version, handed to the kiosk
 * at once and at every start. */
#include <check.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_cloudcfg.h"
#include "cw_error.h"
#include "cw_jsoncfg.h"
#include "cw_testutil.h"

static char dir[256], path[400], saved[400], db[400];
static struct cw_edge_config cfg, next; /* big: off the stack */
static struct cw_engine *eng;
static struct cw_cloudcfg *cc;

/* Test JSON is written with ' for readability. */
static cJSON *jq(const char *s)
{
	cJSON *j = cw_test_json(s);

	ck_assert_ptr_nonnull(j);
	return j;
}

static int fake_unlock(void *ctx, int bus, int board, int lock, int64_t *latency_ms)
{
	(void)ctx, (void)bus, (void)board, (void)lock;
	*latency_ms = 1;
	return CW_OK;
}

/* One bus with two boards of 4 locks on /dev/null (a port that exists). */
static const char file_json[] =
	"{\"chain_id\":\"c1\",\"branch_id\":\"b1\",\"device_id\":\"d1\",\"data_dir\":\"%s\","
	"\"api\":{\"admin_token\":\"0123456789abcdef\"},"
	"\"rules\":{\"rental_minutes\":120},"
	"\"buses\":[{\"name\":\"bus0\",\"port\":\"/dev/null\",\"protocol\":\"modbus\","
	"\"boards\":[{\"address\":1,\"locks\":4},{\"address\":2,\"locks\":4}]}],"
	"\"cloud\":{\"url\":\"https://cloud.example\",\"branch_code\":\"B-1\"}}";

static void start_engine(void)
{
	struct cw_engine_hw hw = {.unlock = fake_unlock};
	struct cw_engine_config ec;
	char err[256];

	memset(&ec, 0, sizeof(ec));
	snprintf(ec.db_path, sizeof(ec.db_path), "%s", db);
	snprintf(ec.chain_id, sizeof(ec.chain_id), "c1");
	snprintf(ec.branch_id, sizeof(ec.branch_id), "b1");
	snprintf(ec.device_id, sizeof(ec.device_id), "d1");
	ck_assert_int_eq(cw_edge_config_load(path, &cfg, err, sizeof(err)), CW_OK);
	ck_assert_int_eq(cw_cloudcfg_new(path, dir, &cc), CW_OK);
	ck_assert_int_eq(cw_cloudcfg_start(cc, &cfg, err, sizeof(err)), CW_OK);
	ec.rules = cfg.rules;
	ec.ncarts = cfg.ncarts;
	ec.carts = cfg.carts;
	ck_assert_int_eq(cw_engine_new(&ec, &hw, &eng), CW_OK);
	ck_assert_int_eq(cw_cloudcfg_attach(cc, eng, &cfg), CW_OK);
}

static void stop_engine(void)
{
	cw_cloudcfg_attach(cc, NULL, NULL);
	cw_engine_free(eng);
	eng = NULL;
	cw_cloudcfg_free(cc);
	cc = NULL;
}

static void setup(void)
{
	FILE *f;

	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	snprintf(path, sizeof(path), "%s/edge.json", dir);
	snprintf(saved, sizeof(saved), "%s/%s", dir, CW_CLOUDCFG_FILE);
	snprintf(db, sizeof(db), "%s/edge.db", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, file_json, dir);
	fclose(f);
	start_engine();
}

static void teardown(void)
{
	stop_engine();
	cw_test_rmrf(dir);
}

static int64_t offer(int64_t v, const char *json, char *err, size_t errlen)
{
	cJSON *j = jq(json);
	int rc = cw_cloudcfg_offer(cc, v, j, err, errlen);

	cJSON_Delete(j);
	return rc;
}

static void versions(int64_t have, int64_t rejected)
{
	int64_t h = -1, r = -1;

	cw_cloudcfg_versions(cc, &h, &r);
	ck_assert_int_eq(h, have);
	ck_assert_int_eq(r, rejected);
}

static long long health_num(const char *key)
{
	cJSON *o = cJSON_CreateObject();
	const cJSON *it;
	long long v;

	cw_cloudcfg_health(cc, o);
	it = cJSON_GetObjectItemCaseSensitive(o, key);
	v = cJSON_IsNumber(it) ? (long long)it->valuedouble : -1; /* null: -1 */
	cJSON_Delete(o);
	return v;
}

START_TEST(merge_sections_over_the_file)
{
	/* with an operator's comments: parsed again as the base */
	static const char base[] =
		"// branch b1\n{\"chain_id\":\"c1\",\"branch_id\":\"b1\",\"device_id\":\"d1\","
		"\"data_dir\":\"/x\", /* the API */ \"api\":{\"admin_token\":\"0123456789abcdef\"},"
		"\"rules\":{\"rental_minutes\":120,\"grace_minutes\":3},"
		"\"buses\":[{\"name\":\"bus0\",\"port\":\"/dev/null\",\"protocol\":\"modbus\","
		"\"boards\":[{\"address\":1,\"locks\":4}]}]}";
	char err[256];
	cJSON *s;

	/* rules replaced as a whole section; identity, api, buses stay */
	s = jq("{'rules':{'rental_minutes':45}}");
	ck_assert_int_eq(cw_cloudcfg_merge(base, strlen(base), s, &next, err, sizeof(err)), CW_OK);
	cJSON_Delete(s);
	ck_assert_int_eq(next.rules.rental_minutes, 45);
	ck_assert_int_eq(next.rules.grace_minutes, 10); /* the default, not the file's 3 */
	ck_assert_str_eq(next.device_id, "d1");
	ck_assert_str_eq(next.admin_token, "0123456789abcdef");
	ck_assert_int_eq(next.ncarts, 4);
	/* carts given: only those */
	s = jq("{'carts':[{'number':9,'bus':'bus0','board':1,'lock':2}],'revoked_tokens':['a-1']}");
	ck_assert_int_eq(cw_cloudcfg_merge(base, strlen(base), s, &next, err, sizeof(err)), CW_OK);
	cJSON_Delete(s);
	ck_assert_int_eq(next.ncarts, 1);
	ck_assert_int_eq(next.carts[0].number, 9);
	ck_assert_int_eq(next.carts[0].lock, 2);
	/* refusals name the key */
	s = jq("{'carts':[{'number':1,'bus':'bus0','board':9,'lock':0}]}");
	ck_assert_int_eq(cw_cloudcfg_merge(base, strlen(base), s, &next, err, sizeof(err)),
			 CW_ERR_CONFIG);
	cJSON_Delete(s);
	ck_assert_ptr_nonnull(strstr(err, "carts[0].board"));
	s = jq("{'api':{'port':1}}");
	ck_assert_int_eq(cw_cloudcfg_merge(base, strlen(base), s, &next, err, sizeof(err)),
			 CW_ERR_CONFIG);
	cJSON_Delete(s);
	ck_assert_ptr_nonnull(strstr(err, "api"));
	s = jq("{'revoked_tokens':['ok','a b']}");
	ck_assert_int_eq(cw_cloudcfg_merge(base, strlen(base), s, &next, err, sizeof(err)),
			 CW_ERR_CONFIG);
	cJSON_Delete(s);
	ck_assert_ptr_nonnull(strstr(err, "revoked_tokens[1]"));
	s = jq("{'rules':{'rental_minutes':0}}");
	ck_assert_int_eq(cw_cloudcfg_merge(base, strlen(base), s, &next, err, sizeof(err)),
			 CW_ERR_CONFIG);
	cJSON_Delete(s);
	ck_assert_ptr_nonnull(strstr(err, "rules.rental_minutes"));
}
END_TEST

START_TEST(rules_and_tokens_apply_live)
{
	char err[256] = "";
	bool revoked = false;
	struct stat st;

	versions(0, 0);
	ck_assert_int_eq(health_num("config_version"), 0);
	ck_assert_int_eq(offer(1, "{'rules':{'rental_minutes':45},'revoked_tokens':['jti-1']}", err,
			       sizeof(err)),
			 CW_OK);
	versions(1, 0);
	ck_assert_int_eq(health_num("config_version"), 1);
	ck_assert_int_eq(health_num("config_pending_version"), -1);
	ck_assert(!cw_cloudcfg_pending(cc, &next));
	ck_assert_int_eq(cw_engine_token_revoked(eng, "jti-1", &revoked), CW_OK);
	ck_assert(revoked);
	ck_assert_int_eq(cw_engine_token_revoked(eng, "jti-2", &revoked), CW_OK);
	ck_assert(!revoked);
	ck_assert_int_eq(stat(saved, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(cw_test_db_int(db, "SELECT count(*) FROM telemetry WHERE event_type = "
					    "'config.applied'"),
			 1);
	/* the next version replaces the revoked list */
	ck_assert_int_eq(offer(2, "{'rules':{'rental_minutes':45}}", err, sizeof(err)), CW_OK);
	ck_assert_int_eq(cw_engine_token_revoked(eng, "jti-1", &revoked), CW_OK);
	ck_assert(!revoked);
}
END_TEST

START_TEST(invalid_version_is_refused_and_remembered)
{
	char err[256] = "";

	ck_assert_int_eq(offer(1, "{'rules':{'rental_minutes':45}}", err, sizeof(err)), CW_OK);
	ck_assert_int_eq(offer(2, "{'rules':{'rental_minutes':30},'carts':[{'number':1,"
				  "'bus':'bus0','board':9,'lock':0}]}",
			       err, sizeof(err)),
			 CW_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "carts[0].board"));
	versions(1, 2);
	ck_assert_int_eq(health_num("config_version"), 1);
	ck_assert_int_eq(health_num("config_rejected_version"), 2);
	/* one telemetry event, in the outbox for the cloud */
	ck_assert_int_eq(cw_test_db_int(db, "SELECT count(*) FROM outbox WHERE kind = 'telemetry' "
					    "AND json_extract(payload, '$.telemetry.event_type') = "
					    "'config.rejected' AND json_extract(payload, "
					    "'$.telemetry.event_data.version') = 2"),
			 1);
	/* a bus on a port that does not exist is refused too */
	ck_assert_int_eq(offer(3, "{'buses':[{'name':'bus0','port':'/nonexistent/tty',"
				  "'protocol':'modbus','boards':[{'address':1,'locks':4}]}]}",
			       err, sizeof(err)),
			 CW_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "buses[0].port"));
	versions(1, 3);
	/* restarted: version 1 runs from cloud-config.json, 3 stays refused */
	stop_engine();
	start_engine();
	versions(1, 3);
	ck_assert_int_eq(cfg.rules.rental_minutes, 45);
}
END_TEST

START_TEST(carts_change_waits_for_a_restart)
{
	char err[256] = "";

	ck_assert_int_eq(offer(1, "{'rules':{'rental_minutes':45}}", err, sizeof(err)), CW_OK);
	ck_assert_int_eq(offer(2, "{'rules':{'rental_minutes':50},'carts':[{'number':5,"
				  "'bus':'bus0','board':2,'lock':3}]}",
			       err, sizeof(err)),
			 CW_OK);
	versions(2, 0);
	ck_assert_int_eq(health_num("config_version"), 1);
	ck_assert_int_eq(health_num("config_pending_version"), 2);
	/* not applied live: not even the rules (all or nothing) */
	ck_assert_int_eq(cw_test_db_int(db, "SELECT count(*) FROM telemetry WHERE event_type = "
					    "'config.applied'"),
			 1);
	ck_assert(cw_cloudcfg_pending(cc, &next));
	ck_assert_int_eq(next.ncarts, 1);
	ck_assert_int_eq(next.carts[0].number, 5);
	ck_assert_int_eq(next.rules.rental_minutes, 50);
	/* the restart could not start it: version 1 again, 2 refused */
	cw_cloudcfg_restarted(cc, false, "the engine could not start with it");
	ck_assert(!cw_cloudcfg_pending(cc, &next));
	versions(1, 2);
	stop_engine();
	start_engine();
	versions(1, 2);
	ck_assert_int_eq(cfg.ncarts, 8);
	ck_assert_int_eq(cfg.rules.rental_minutes, 45);
	/* a good restart makes the pending version the running one */
	ck_assert_int_eq(offer(3, "{'carts':[{'number':5,'bus':'bus0','board':2,'lock':3}]}", err,
			       sizeof(err)),
			 CW_OK);
	ck_assert(cw_cloudcfg_pending(cc, &next));
	cw_cloudcfg_restarted(cc, true, NULL);
	versions(3, 2);
	ck_assert_int_eq(health_num("config_version"), 3);
	ck_assert_int_eq(health_num("config_pending_version"), -1);
	stop_engine();
	start_engine();
	ck_assert_int_eq(cfg.ncarts, 1);
	versions(3, 2);
}
END_TEST

START_TEST(no_offer_during_a_restart)
{
	char err[256] = "";

	/* two PUTs back to back: 1 changes carts, 2 changes them again */
	ck_assert_int_eq(offer(1, "{'carts':[{'number':5,'bus':'bus0','board':2,'lock':3}]}", err,
			       sizeof(err)),
			 CW_OK);
	ck_assert(cw_cloudcfg_pending(cc, &next)); /* the restart into 1 begins */
	/* 2 arrives during the restart: refused for now, neither pending nor
	 * applied, whether it changes the hardware or only the rules */
	ck_assert_int_eq(offer(2, "{'carts':[{'number':6,'bus':'bus0','board':2,'lock':2}]}", err,
			       sizeof(err)),
			 CW_ERR_STATE);
	ck_assert_int_eq(offer(2, "{'rules':{'rental_minutes':50}}", err, sizeof(err)),
			 CW_ERR_STATE);
	versions(1, 0);
	cw_cloudcfg_restarted(cc, true, NULL);
	/* the version recorded as running is the one restarted with */
	versions(1, 0);
	ck_assert_int_eq(health_num("config_version"), 1);
	ck_assert_int_eq(health_num("config_pending_version"), -1);
	/* at the next heartbeat 2 is offered again and accepted */
	ck_assert_int_eq(offer(2, "{'carts':[{'number':6,'bus':'bus0','board':2,'lock':2}]}", err,
			       sizeof(err)),
			 CW_OK);
	versions(2, 0);
	ck_assert_int_eq(health_num("config_pending_version"), 2);
}
END_TEST

START_TEST(saved_file_that_no_longer_fits)
{
	char err[256] = "";
	FILE *f;

	ck_assert_int_eq(offer(1, "{'carts':[{'number':5,'bus':'bus0','board':2,'lock':3}]}", err,
			       sizeof(err)),
			 CW_OK);
	cw_cloudcfg_restarted(cc, true, NULL);
	stop_engine();
	/* the technician removes board 2 from the file: the cloud's carts no
	 * longer fit, the file alone runs, version 1 counts as refused */
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "{\"chain_id\":\"c1\",\"branch_id\":\"b1\",\"device_id\":\"d1\",\"data_dir\":\"%s\","
		   "\"api\":{\"admin_token\":\"0123456789abcdef\"},\"buses\":[{\"name\":\"bus0\","
		   "\"port\":\"/dev/null\",\"protocol\":\"modbus\",\"boards\":[{\"address\":1,"
		   "\"locks\":4}]}],\"cloud\":{\"url\":\"https://cloud.example\",\"branch_code\":"
		   "\"B-1\"}}",
		dir);
	fclose(f);
	start_engine();
	ck_assert_int_eq(cfg.ncarts, 4);
	versions(0, 1);
}
END_TEST

/* ---- the kiosk's sections (issue 5) ---- */

#define HASH "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA"

/* What the kiosk hooks were handed. */
static struct {
	int seed_calls, staff_calls, staff_rc;
	bool has_seed;
	unsigned char seed[CW_CLOUDCFG_SEED_BYTES];
	int nstaff;
	struct cw_staff staff[CW_STAFF_MAX];
} got;

static void on_seed(void *ctx, const unsigned char *seed)
{
	ck_assert_ptr_eq(ctx, &got);
	got.seed_calls++;
	got.has_seed = seed != NULL;
	if (seed)
		memcpy(got.seed, seed, sizeof(got.seed));
}

static int on_staff(void *ctx, const struct cw_staff *s, int n)
{
	ck_assert_ptr_eq(ctx, &got);
	got.staff_calls++;
	if (got.staff_rc != CW_OK)
		return got.staff_rc;
	got.nstaff = n;
	memcpy(got.staff, s, (size_t)n * sizeof(*s));
	return CW_OK;
}

static const struct cw_cloudcfg_kiosk hooks = {.chain_seed = on_seed, .staff = on_staff,
					       .ctx = &got};

/* The seed of bytes first, first+1, ... in base64url into b64 (44 bytes). */
static void seed_b64(int first, char *b64, size_t cap)
{
	unsigned char s[CW_CLOUDCFG_SEED_BYTES];

	for (int i = 0; i < (int)sizeof(s); i++)
		s[i] = (unsigned char)(first + i);
	sodium_bin2base64(b64, cap, s, sizeof(s), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* A merge of a kiosk section alone over the test's file: its rc, err. */
static int merge_one(const char *json, char *err, size_t errlen)
{
	char *file = NULL;
	size_t len = 0;
	cJSON *s = jq(json);
	int rc;

	ck_assert_int_eq(cw_jsoncfg_read_file(path, 65536, &file, &len, NULL, 0), CW_OK);
	rc = cw_cloudcfg_merge(file, len, s, &next, err, errlen);
	cJSON_Delete(s);
	free(file);
	return rc;
}

static char last_err[256];

static void refused(const char *json, const char *word)
{
	ck_assert_msg(merge_one(json, last_err, sizeof(last_err)) == CW_ERR_CONFIG, "accepted: %s",
		      json);
	ck_assert_msg(strstr(last_err, word), "'%s' not in '%s'", word, last_err);
}

START_TEST(kiosk_sections_checked)
{
	char b64[64], json[4096], err[256];
	size_t n;

	seed_b64(0, b64, sizeof(b64));
	ck_assert_int_eq(merge_one("{'kiosk_staff':[{'id':'s-1','name':'Dana','pin_hash':'" HASH
				   "'}]}", err, sizeof(err)),
			 CW_OK);
	ck_assert_int_eq(merge_one("{'kiosk_staff':[]}", err, sizeof(err)), CW_OK);

	refused("{'kiosk_staff':{}}", "kiosk_staff: expected an array");
	refused("{'kiosk_staff':[1]}", "kiosk_staff[0]: expected an object");
	refused("{'kiosk_staff':[{'id':'a','name':'x'}]}", "kiosk_staff[0].pin_hash: missing");
	refused("{'kiosk_staff':[{'id':'a b','name':'x','pin_hash':'" HASH "'}]}",
		"kiosk_staff[0].id");
	refused("{'kiosk_staff':[{'id':'a','name':'','pin_hash':'" HASH "'}]}",
		"kiosk_staff[0].name");
	refused("{'kiosk_staff':[{'id':'a','name':'x','pin_hash':'$argon2i$v=19$m=1,t=1,p=1$x$y'}]}",
		"kiosk_staff[0].pin_hash: expected an Argon2id hash");
	refused("{'kiosk_staff':[{'id':'a','name':'x','pin_hash':'" HASH "','pin':'1234'}]}",
		"kiosk_staff[0].pin: unknown key");
	refused("{'kiosk_staff':[{'id':'a','name':'x','pin_hash':'" HASH "'},"
		"{'id':'a','name':'y','pin_hash':'" HASH "'}]}",
		"kiosk_staff[1].id: the same id as kiosk_staff[0]");
	n = (size_t)snprintf(json, sizeof(json), "{'kiosk_staff':[");
	for (int i = 0; i <= CW_STAFF_MAX; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, "%s{'id':'s%d','name':'x',"
				      "'pin_hash':'$argon2id$'}", i ? "," : "", i);
	ck_assert_uint_lt(n + 3, sizeof(json));
	snprintf(json + n, sizeof(json) - n, "]}");
	refused(json, "kiosk_staff: at most 50");

	/* the chain key is part of no version (cw_cloudcfg_offer_key) */
	snprintf(json, sizeof(json), "{'customer_token_key':{'seed':'%s'}}", b64);
	refused(json, "customer_token_key: unknown key");
	ck_assert_ptr_null(strstr(last_err, b64));
}
END_TEST

/* cw_cloudcfg_offer_key of json: its rc, err. */
static int offer_key(const char *json, char *err, size_t errlen)
{
	cJSON *j = jq(json);
	int rc = cw_cloudcfg_offer_key(cc, j, err, errlen);

	cJSON_Delete(j);
	return rc;
}

static void key_refused(const char *json, const char *word)
{
	ck_assert_msg(offer_key(json, last_err, sizeof(last_err)) == CW_ERR_CONFIG, "taken: %s",
		      json);
	ck_assert_msg(strstr(last_err, word), "'%s' not in '%s'", word, last_err);
}

/* cloud-config.json as text (caller frees). */
static char *saved_text(void)
{
	char *text = NULL;
	size_t len = 0;

	ck_assert_int_eq(cw_jsoncfg_read_file(saved, 65536, &text, &len, NULL, 0), CW_OK);
	return text;
}

START_TEST(chain_key_without_a_version)
{
	char b64[64], b64b[64], json[256], err[256] = "", *text;
	struct stat st;
	FILE *f;

	memset(&got, 0, sizeof(got));
	cw_cloudcfg_set_kiosk(cc, &hooks);
	ck_assert_int_eq(got.seed_calls, 1);
	ck_assert(!got.has_seed && !cw_cloudcfg_has_key(cc));

	/* malformed: refused, never echoed, nothing held or written */
	seed_b64(3, b64, sizeof(b64));
	key_refused("'x'", "customer_token_key: expected an object");
	key_refused("{}", "customer_token_key.seed: expected 32 bytes");
	key_refused("{'seed':1}", "customer_token_key.seed: expected 32 bytes");
	/* 31 bytes, padding, standard alphabet, an extra key */
	snprintf(json, sizeof(json), "{'seed':'%.42s'}", b64);
	key_refused(json, "customer_token_key.seed: expected 32 bytes");
	snprintf(json, sizeof(json), "{'seed':'%s='}", b64);
	key_refused(json, "customer_token_key.seed");
	ck_assert_ptr_null(strstr(last_err, b64));
	key_refused("{'seed':'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+/'}",
		    "customer_token_key.seed");
	snprintf(json, sizeof(json), "{'seed':'%s','kid':1}", b64);
	key_refused(json, "customer_token_key.kid: unknown key");
	ck_assert(!cw_cloudcfg_has_key(cc));
	ck_assert_int_eq(got.seed_calls, 1);
	ck_assert_int_ne(access(saved, F_OK), 0);

	/* at version 0: saved (0600) and handed to the kiosk, no version invented */
	snprintf(json, sizeof(json), "{'seed':'%s'}", b64);
	ck_assert_int_eq(offer_key(json, err, sizeof(err)), CW_OK);
	ck_assert(cw_cloudcfg_has_key(cc));
	ck_assert_int_eq(got.seed_calls, 2);
	ck_assert(got.has_seed);
	ck_assert_int_eq(got.seed[0], 3);
	ck_assert_int_eq(got.seed[31], 34);
	versions(0, 0);
	ck_assert_int_eq(health_num("config_version"), 0);
	ck_assert_int_eq(stat(saved, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	text = saved_text();
	ck_assert_ptr_nonnull(strstr(text, b64));
	ck_assert_ptr_nonnull(strstr(text, "\"version\":\t0"));
	ck_assert_ptr_nonnull(strstr(text, "\"config\":\tnull"));
	free(text);
	/* the same key again: nothing to do */
	ck_assert_int_eq(offer_key(json, err, sizeof(err)), CW_OK);
	ck_assert_int_eq(got.seed_calls, 2);

	/* versions come and go, the key stays */
	ck_assert_int_eq(offer(1, "{'rules':{'rental_minutes':45}}", err, sizeof(err)), CW_OK);
	ck_assert_int_eq(got.seed_calls, 3);
	ck_assert(got.has_seed);
	ck_assert_int_eq(got.seed[0], 3);
	text = saved_text();
	ck_assert_ptr_nonnull(strstr(text, b64));
	free(text);

	/* at start, from the file, offline */
	cw_cloudcfg_set_kiosk(cc, NULL);
	stop_engine();
	memset(&got, 0, sizeof(got));
	start_engine();
	ck_assert(cw_cloudcfg_has_key(cc));
	cw_cloudcfg_set_kiosk(cc, &hooks);
	ck_assert(got.has_seed);
	ck_assert_int_eq(got.seed[0], 3);
	versions(1, 0);

	/* another key (a rotation) replaces it; a bad one then leaves it */
	seed_b64(9, b64b, sizeof(b64b));
	snprintf(json, sizeof(json), "{'seed':'%s'}", b64b);
	ck_assert_int_eq(offer_key(json, err, sizeof(err)), CW_OK);
	ck_assert_int_eq(got.seed[0], 9);
	key_refused("{'seed':'x'}", "customer_token_key.seed");
	ck_assert_int_eq(got.seed[0], 9);
	text = saved_text();
	ck_assert_ptr_nonnull(strstr(text, b64b));
	ck_assert_ptr_null(strstr(text, b64));
	free(text);
	cw_cloudcfg_set_kiosk(cc, NULL);

	/* a damaged key in the file stops the start, naming it (not showing it) */
	stop_engine();
	f = fopen(saved, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "{\"v\":1,\"version\":0,\"config\":null,\"rejected\":null,"
		   "\"customer_token_key\":{\"seed\":\"%.40s\"}}", b64b);
	fclose(f);
	ck_assert_int_eq(cw_edge_config_load(path, &cfg, err, sizeof(err)), CW_OK);
	ck_assert_int_eq(cw_cloudcfg_new(path, dir, &cc), CW_OK);
	ck_assert_int_eq(cw_cloudcfg_start(cc, &cfg, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "customer_token_key.seed"));
	snprintf(json, sizeof(json), "%.40s", b64b);
	ck_assert_ptr_null(strstr(err, json));
	ck_assert(!cw_cloudcfg_has_key(cc));
	/* teardown stops what start_engine started: start it again on a good file */
	cw_cloudcfg_free(cc);
	ck_assert_int_eq(unlink(saved), 0);
	start_engine();
}
END_TEST

START_TEST(kiosk_sections_reach_the_kiosk)
{
	char b64[64], json[1024], err[256] = "", *text = NULL;
	size_t len = 0;
	struct stat st;

	memset(&got, 0, sizeof(got));
	/* connected at version 0: no chain key, no staff from the cloud */
	cw_cloudcfg_set_kiosk(cc, &hooks);
	ck_assert_int_eq(got.seed_calls, 1);
	ck_assert(!got.has_seed);
	ck_assert_int_eq(got.staff_calls, 1);
	ck_assert_int_eq(got.nstaff, 0);

	/* the chain key, then a version with staff: live, with the rules */
	seed_b64(7, b64, sizeof(b64));
	snprintf(json, sizeof(json), "{'seed':'%s'}", b64);
	ck_assert_int_eq(offer_key(json, err, sizeof(err)), CW_OK);
	ck_assert_int_eq(got.seed_calls, 2);
	ck_assert_int_eq(got.staff_calls, 1);
	snprintf(json, sizeof(json), "{'rules':{'rental_minutes':45},'kiosk_staff':[{'id':'s-1',"
		 "'name':'Dana','pin_hash':'" HASH "'},{'id':'s-2','name':'Avi','pin_hash':'" HASH
		 "'}]}");
	ck_assert_int_eq(offer(1, json, err, sizeof(err)), CW_OK);
	versions(1, 0);
	ck_assert_int_eq(got.seed_calls, 3);
	ck_assert(got.has_seed);
	ck_assert_int_eq(got.seed[0], 7);
	ck_assert_int_eq(got.seed[31], 38);
	ck_assert_int_eq(got.nstaff, 2);
	ck_assert_str_eq(got.staff[1].id, "s-2");
	ck_assert_str_eq(got.staff[1].name, "Avi");
	ck_assert_str_eq(got.staff[0].pin_hash, HASH);
	/* kept in cloud-config.json, which only the daemon's user may read */
	ck_assert_int_eq(stat(saved, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(cw_jsoncfg_read_file(saved, 65536, &text, &len, NULL, 0), CW_OK);
	ck_assert_ptr_nonnull(strstr(text, b64));
	free(text);

	/* all or nothing: good rules with a bad staff entry change nothing */
	ck_assert_int_eq(offer(2, "{'rules':{'rental_minutes':30},'kiosk_staff':[{'id':'s-1',"
				  "'name':'Dana','pin_hash':'plain-1234'}]}",
			       err, sizeof(err)),
			 CW_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "kiosk_staff[0].pin_hash"));
	versions(1, 2);
	ck_assert_int_eq(got.seed_calls, 3);
	ck_assert_int_eq(got.staff_calls, 2);

	/* a version without staff: no cloud staff; the chain key stays */
	ck_assert_int_eq(offer(3, "{'rules':{'rental_minutes':45}}", err, sizeof(err)), CW_OK);
	ck_assert_int_eq(got.seed_calls, 4);
	ck_assert(got.has_seed);
	ck_assert_int_eq(got.nstaff, 0);

	/* at start, from the stored file (before and after the engine) */
	ck_assert_int_eq(offer(4, json, err, sizeof(err)), CW_OK);
	cw_cloudcfg_set_kiosk(cc, NULL);
	stop_engine();
	memset(&got, 0, sizeof(got));
	start_engine();
	ck_assert_int_eq(got.seed_calls, 0); /* not connected */
	cw_cloudcfg_set_kiosk(cc, &hooks);
	ck_assert_int_eq(got.seed_calls, 1);
	ck_assert(got.has_seed);
	ck_assert_int_eq(got.seed[0], 7);
	ck_assert_int_eq(got.nstaff, 2);
	ck_assert_int_eq(cw_cloudcfg_attach(cc, eng, &cfg), CW_OK);
	ck_assert_int_eq(got.seed_calls, 2);
	ck_assert_int_eq(got.nstaff, 2);

	/* the kiosk could not take the staff list: saved, applied by a restart */
	got.staff_rc = CW_ERR_NOMEM;
	ck_assert_int_eq(offer(5, "{'kiosk_staff':[]}", err, sizeof(err)), CW_OK);
	ck_assert_int_eq(health_num("config_pending_version"), 5);
	got.staff_rc = CW_OK;
	ck_assert(cw_cloudcfg_pending(cc, &next));
	cw_cloudcfg_restarted(cc, true, NULL);
	ck_assert_int_eq(cw_cloudcfg_attach(cc, eng, &cfg), CW_OK);
	ck_assert_int_eq(got.nstaff, 0);
	ck_assert(got.has_seed);
	versions(5, 2);

	/* with a carts change: nothing reaches the kiosk before the restart */
	got.seed_calls = 0;
	ck_assert_int_eq(offer(6, "{'carts':[{'number':5,'bus':'bus0','board':2,'lock':3}],"
				  "'kiosk_staff':[{'id':'s-9','name':'Noa','pin_hash':'" HASH "'}]}",
			       err, sizeof(err)),
			 CW_OK);
	ck_assert_int_eq(got.seed_calls, 0);
	ck_assert_int_eq(got.nstaff, 0);
	ck_assert(cw_cloudcfg_pending(cc, &next));
	cw_cloudcfg_restarted(cc, true, NULL);
	ck_assert_int_eq(cw_cloudcfg_attach(cc, eng, &next), CW_OK);
	ck_assert_int_eq(got.nstaff, 1);
	ck_assert_str_eq(got.staff[0].id, "s-9");
	cw_cloudcfg_set_kiosk(cc, NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cloudcfg");
	TCase *tc = tcase_create("cloudcfg");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, merge_sections_over_the_file);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, rules_and_tokens_apply_live);
	tcase_add_test(tc, invalid_version_is_refused_and_remembered);
	tcase_add_test(tc, carts_change_waits_for_a_restart);
	tcase_add_test(tc, no_offer_during_a_restart);
	tcase_add_test(tc, saved_file_that_no_longer_fits);
	tcase_add_test(tc, kiosk_sections_checked);
	tcase_add_test(tc, kiosk_sections_reach_the_kiosk);
	tcase_add_test(tc, chain_key_without_a_version);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
