/* test_cloudcfg.c - the configuration the cloud manages (cw_cloudcfg): the
 * merge over the file, live application of rules and revoked tokens, refusal
 * of an invalid version (kept running on the last good one, remembered,
 * config.rejected in the outbox), buses/carts changes left for a restart,
 * a failed restart, no offer while a restart is under way, and
 * cloud-config.json across a restart. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cw_cloudcfg.h"
#include "cw_error.h"
#include "cw_testutil.h"

static char dir[256], path[400], saved[400], db[400];
static struct cw_edge_config cfg, next; /* big: off the stack */
static struct cw_engine *eng;
static struct cw_cloudcfg *cc;

/* Test JSON is written with ' for readability. */
static cJSON *jq(const char *s)
{
	char *o = strdup(s);
	cJSON *j;

	ck_assert_ptr_nonnull(o);
	for (char *c = o; *c; c++)
		if (*c == '\'')
			*c = '"';
	j = cJSON_Parse(o);
	free(o);
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
	static const char base[] =
		"{\"chain_id\":\"c1\",\"branch_id\":\"b1\",\"device_id\":\"d1\",\"data_dir\":\"/x\","
		"\"api\":{\"admin_token\":\"0123456789abcdef\"},\"rules\":{\"rental_minutes\":120,"
		"\"grace_minutes\":3},\"buses\":[{\"name\":\"bus0\",\"port\":\"/dev/null\","
		"\"protocol\":\"modbus\",\"boards\":[{\"address\":1,\"locks\":4}]}]}";
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
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
