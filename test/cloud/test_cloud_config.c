/* Tests of cw_cloud_config: defaults, every section, and refusals that name the key;
 * and of the secrets derived from the signing key (MQTT passwords, the chains' customer-token
 * seeds). */
#include <check.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cw_cloud_config.h"
#include "cw_cloud_keys.h"
#include "cw_cloud_mqtt.h"
#include "cw_error.h"

static struct cw_cloud_config cfg;
static char err[512];

static int parse(const char *json)
{
	return cw_cloud_config_parse(json, strlen(json), &cfg, err, sizeof(err));
}

/* Asserts a refusal whose message contains want. */
static void refused(const char *json, const char *want)
{
	ck_assert_int_ne(parse(json), CW_OK);
	if (!strstr(err, want))
		ck_abort_msg("message '%s' does not contain '%s'", err, want);
}

#define MIN_SQLITE "\"signing_key_file\":\"/k\",\"database\":{\"backend\":\"sqlite\",\"path\":\"/x.db\"}"

START_TEST(minimal_and_defaults)
{
	ck_assert_int_eq(parse("{" MIN_SQLITE "}"), CW_OK);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(cfg.db_backend, CW_BACKEND_SQLITE);
	ck_assert_str_eq(cfg.db_path, "/x.db");
	ck_assert_str_eq(cfg.signing_key_file, "/k");
	ck_assert_str_eq(cfg.listen_address, "127.0.0.1");
	ck_assert_int_eq(cfg.listen_port, 8000);
	ck_assert_int_eq(cfg.threads, 4);
	ck_assert_int_eq(cfg.max_event_streams, 256);
	ck_assert_int_eq(cfg.db_pool_size, 4);
	ck_assert(cfg.migrate_on_start);
	ck_assert_str_eq(cfg.issuer, "cartwise-cloud");
	ck_assert_str_eq(cfg.audience, "cartwise-api");
	ck_assert_int_eq(cfg.staff_token_ttl_s, 43200);
	ck_assert_int_eq(cfg.device_token_ttl_s, 2592000);
	ck_assert_int_eq(cfg.login_max_attempts, 5);
	ck_assert_int_eq(cfg.login_window_s, 900);
	/* libsodium's INTERACTIVE Argon2id cost: 2 passes over 64 MiB */
	ck_assert_int_eq(cfg.hash_ops, 2);
	ck_assert_int_eq(cfg.hash_mem_kib, 65536);
	ck_assert(!cw_cloud_config_weak_hash(&cfg));
	ck_assert_int_eq(cfg.offline_after_s, 90);
	ck_assert_str_eq(cfg.mqtt_host, "");
	ck_assert_str_eq(cfg.tls_cert_file, "");
	ck_assert_str_eq(cfg.log_level, "info");
}
END_TEST

/* The hashes the cloud writes carry the configured cost; below OWASP's
 * floor the cost is allowed and reported as weak. */
START_TEST(password_hash_cost)
{
	char h[crypto_pwhash_STRBYTES], small[16];

	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"login\":{\"hash_ops\":1,\"hash_mem_kib\":8}}"),
			 CW_OK);
	ck_assert(cw_cloud_config_weak_hash(&cfg));
	ck_assert_int_eq(cw_cloud_hash_password(&cfg, "correct horse", 13, h, sizeof(h)), CW_OK);
	ck_assert_msg(strncmp(h, "$argon2id$v=19$m=8,t=1,p=1$", 27) == 0, "%s", h);
	ck_assert_int_eq(crypto_pwhash_str_verify(h, "correct horse", 13), 0);
	ck_assert_int_ne(crypto_pwhash_str_verify(h, "correct horsE", 13), 0);
	ck_assert_int_eq(cw_cloud_hash_password(&cfg, "x", 1, small, sizeof(small)), CW_ERR_TOOBIG);
	/* 19 MiB but one pass: still below the floor */
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"login\":{\"hash_ops\":1,\"hash_mem_kib\":19456}}"),
			 CW_OK);
	ck_assert(cw_cloud_config_weak_hash(&cfg));
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"login\":{\"hash_ops\":2,\"hash_mem_kib\":19455}}"),
			 CW_OK);
	ck_assert(cw_cloud_config_weak_hash(&cfg));
	ck_assert_int_eq(parse("{" MIN_SQLITE "}"), CW_OK);
	ck_assert_int_eq(cw_cloud_hash_password(&cfg, "correct horse", 13, h, sizeof(h)), CW_OK);
	ck_assert_msg(strncmp(h, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0, "%s", h);
}
END_TEST

START_TEST(web_section)
{
	const char *suffix = "/cartwise-cloud/dashboard";
	size_t n;

	/* default: the install dir compiled in (<prefix>/<datadir>/cartwise-cloud/dashboard) */
	ck_assert_int_eq(parse("{" MIN_SQLITE "}"), CW_OK);
	n = strlen(cfg.dashboard_dir);
	ck_assert(cfg.dashboard_dir[0] == '/' && n > strlen(suffix));
	ck_assert_str_eq(cfg.dashboard_dir + n - strlen(suffix), suffix);
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"web\":{\"dashboard_dir\":\"/srv/dash\"}}"), CW_OK);
	ck_assert_str_eq(cfg.dashboard_dir, "/srv/dash");
	/* "" turns the dashboard off */
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"web\":{\"dashboard_dir\":\"\"}}"), CW_OK);
	ck_assert_str_eq(cfg.dashboard_dir, "");
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"web\":{}}"), CW_OK);
	refused("{" MIN_SQLITE ",\"web\":{\"dashboard_dir\":1}}", "web.dashboard_dir");
	refused("{" MIN_SQLITE ",\"web\":{\"dashboard\":\"/x\"}}", "web.dashboard");
	refused("{" MIN_SQLITE ",\"web\":\"/x\"}", "web");
}
END_TEST

START_TEST(comments_allowed)
{
	/* an operator's file may hold // and block comments (docs/CLOUD.md) */
	ck_assert_int_eq(parse("// cartwise-cloud\n{ /* the key */ " MIN_SQLITE ",\n"
			       "  \"log_level\": \"debug\" // or info\n}"),
			 CW_OK);
	ck_assert_str_eq(cfg.log_level, "debug");
	/* named by line, as the edge does: the file is an operator's */
	refused("{" MIN_SQLITE ",\n\n  /* open", "the comment opened at line 3 column 3 (byte ");
	refused("{" MIN_SQLITE ",\n  \"log_level\" \"info\"}",
		"not valid JSON: error near line 2 column 15");
}
END_TEST

START_TEST(full_config)
{
	const char *j =
		"{\"listen\":{\"address\":\"0.0.0.0\",\"port\":0,\"threads\":8,\"max_event_streams\":0},"
		"\"database\":{\"backend\":\"postgres\",\"conninfo\":\"\",\"pool_size\":16,"
		"\"migrate_on_start\":false},"
		"\"signing_key_file\":\"/etc/cartwise/cloud.key\","
		"\"tokens\":{\"issuer\":\"i\",\"audience\":\"a\",\"staff_ttl_s\":600,\"device_ttl_s\":7200},"
		"\"login\":{\"max_attempts\":3,\"window_s\":60,\"hash_ops\":3,\"hash_mem_kib\":19456},"
		"\"devices\":{\"offline_after_s\":45},"
		"\"mqtt\":{\"host\":\"mqtt.example.com\",\"port\":8883},"
		"\"tls\":{\"cert_file\":\"/c.pem\",\"key_file\":\"/k.pem\"},"
		"\"log_level\":\"debug\"}";

	ck_assert_int_eq(parse(j), CW_OK);
	ck_assert_int_eq(cfg.db_backend, CW_BACKEND_POSTGRES);
	ck_assert_str_eq(cfg.db_conninfo, "");
	ck_assert_int_eq(cfg.db_pool_size, 16);
	ck_assert(!cfg.migrate_on_start);
	ck_assert_int_eq(cfg.listen_port, 0);
	ck_assert_int_eq(cfg.threads, 8);
	ck_assert_int_eq(cfg.max_event_streams, 0);
	ck_assert_str_eq(cfg.issuer, "i");
	ck_assert_int_eq(cfg.staff_token_ttl_s, 600);
	ck_assert_int_eq(cfg.device_token_ttl_s, 7200);
	ck_assert_int_eq(cfg.login_max_attempts, 3);
	ck_assert_int_eq(cfg.hash_ops, 3);
	ck_assert_int_eq(cfg.hash_mem_kib, 19456);
	ck_assert(!cw_cloud_config_weak_hash(&cfg)); /* OWASP's floor exactly */
	ck_assert_int_eq(cfg.offline_after_s, 45);
	ck_assert_str_eq(cfg.mqtt_host, "mqtt.example.com");
	ck_assert_str_eq(cfg.tls_key_file, "/k.pem");
	ck_assert_str_eq(cfg.log_level, "debug");
}
END_TEST

START_TEST(refusals_name_the_key)
{
	refused("{" MIN_SQLITE ",\"colour\":\"red\"}", "colour: unknown key");
	refused("{" MIN_SQLITE ",\"listen\":{\"port\":8000,\"bind\":\"x\"}}", "listen.bind: unknown key");
	refused("{" MIN_SQLITE ",\"listen\":{\"port\":70000}}", "listen.port");
	refused("{" MIN_SQLITE ",\"listen\":{\"port\":\"80\"}}", "listen.port: expected an integer");
	refused("{" MIN_SQLITE ",\"listen\":{\"port\":80.5}}", "listen.port");
	refused("{" MIN_SQLITE ",\"listen\":{\"address\":\"localhost\"}}", "listen.address");
	refused("{" MIN_SQLITE ",\"listen\":{\"threads\":0}}", "listen.threads");
	refused("{" MIN_SQLITE ",\"listen\":{\"max_event_streams\":4097}}", "listen.max_event_streams");
	refused("{\"signing_key_file\":\"/k\"}", "database: missing");
	refused("{\"database\":{\"backend\":\"sqlite\",\"path\":\"/x\"}}", "signing_key_file: missing");
	refused("{\"signing_key_file\":\"/k\",\"database\":{\"backend\":\"mysql\"}}", "database.backend");
	refused("{\"signing_key_file\":\"/k\",\"database\":{\"backend\":\"sqlite\"}}", "database.path: missing");
	refused("{\"signing_key_file\":\"/k\",\"database\":{\"backend\":\"sqlite\",\"path\":\"/x\","
		"\"conninfo\":\"\"}}", "database.conninfo: only for");
	refused("{\"signing_key_file\":\"/k\",\"database\":{\"backend\":\"postgres\",\"path\":\"/x\"}}",
		"database.path: only for");
	refused("{\"signing_key_file\":\"/k\",\"database\":{\"backend\":\"postgres\",\"pool_size\":0}}",
		"database.pool_size");
	refused("{\"signing_key_file\":\"/k\",\"database\":{\"backend\":\"postgres\","
		"\"migrate_on_start\":1}}", "database.migrate_on_start: expected true or false");
	refused("{" MIN_SQLITE ",\"tokens\":{\"staff_ttl_s\":1}}", "tokens.staff_ttl_s");
	refused("{" MIN_SQLITE ",\"tokens\":{\"issuer\":\"\"}}", "tokens.issuer");
	refused("{" MIN_SQLITE ",\"login\":{\"max_attempts\":0}}", "login.max_attempts");
	refused("{" MIN_SQLITE ",\"login\":{\"hash_ops\":0}}", "login.hash_ops");
	refused("{" MIN_SQLITE ",\"login\":{\"hash_ops\":11}}", "login.hash_ops");
	refused("{" MIN_SQLITE ",\"login\":{\"hash_mem_kib\":7}}", "login.hash_mem_kib");
	refused("{" MIN_SQLITE ",\"login\":{\"hash_mem_kib\":1048577}}", "login.hash_mem_kib");
	refused("{" MIN_SQLITE ",\"devices\":{\"offline_after\":3}}", "devices.offline_after: unknown key");
	refused("{" MIN_SQLITE ",\"mqtt\":{\"port\":1883}}", "mqtt.host: missing");
	refused("{" MIN_SQLITE ",\"tls\":{\"cert_file\":\"/c\"}}", "tls.key_file: missing");
	refused("{" MIN_SQLITE ",\"tls\":\"on\"}", "tls: expected an object");
	refused("{" MIN_SQLITE ",\"log_level\":\"loud\"}", "log_level");
	refused("{" MIN_SQLITE ",\"log_level\":\"info\",\"log_level\":\"debug\"}", "log_level: key given twice");
	refused("{" MIN_SQLITE ",\"tokens\":{\"issuer\":\"a\\nb\"}}", "tokens.issuer: control characters");
	refused("{" MIN_SQLITE "} {}", "not valid JSON");
	refused("{" MIN_SQLITE, "not valid JSON");
	refused("[1]", "JSON object");
	refused("", "empty");
}
END_TEST

START_TEST(mqtt_section)
{
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"mqtt.example.com\"}}"), CW_OK);
	ck_assert_int_eq(cfg.mqtt_port, 8883);
	ck_assert(cfg.mqtt_tls);
	ck_assert_str_eq(cfg.mqtt_connect_host, "mqtt.example.com");
	ck_assert_int_eq(cfg.mqtt_connect_port, 8883);
	ck_assert_str_eq(cfg.mqtt_username, "cartwise-cloud");
	ck_assert_str_eq(cfg.mqtt_password_file, "");
	ck_assert_str_eq(cfg.mqtt_passwd_out, "");
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"m\",\"port\":1883,\"tls\":false,"
			       "\"connect_host\":\"10.0.0.2\",\"connect_port\":1884,\"username\":\"cw\","
			       "\"password_file\":\"/p\",\"passwd_out\":\"/etc/mosquitto/passwd\"}}"),
			 CW_OK);
	ck_assert(!cfg.mqtt_tls);
	ck_assert_str_eq(cfg.mqtt_connect_host, "10.0.0.2");
	ck_assert_int_eq(cfg.mqtt_connect_port, 1884);
	ck_assert_str_eq(cfg.mqtt_username, "cw");
	ck_assert_str_eq(cfg.mqtt_password_file, "/p");
	ck_assert_str_eq(cfg.mqtt_passwd_out, "/etc/mosquitto/passwd");
	refused("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"m\",\"tls\":\"yes\"}}", "mqtt.tls");
	refused("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"m\",\"connect_port\":0}}", "mqtt.connect_port");
	refused("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"m\",\"username\":\"a:b\"}}", "mqtt.username");
	refused("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"m\",\"username\":\"\"}}", "mqtt.username");
	refused("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"m\",\"passwd_out\":\"/x\"}}",
		"mqtt.passwd_out: needs");
	refused("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"m\",\"tls\":false,\"ca_file\":\"/ca\"}}",
		"mqtt.ca_file");
	refused("{" MIN_SQLITE ",\"mqtt\":{\"host\":\"m\",\"password\":\"x\"}}",
		"mqtt.password: unknown key");
}
END_TEST

START_TEST(mqtt_passwords)
{
	unsigned char sk[crypto_sign_SECRETKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	char a[CW_MQTT_PASSWORD_LEN + 1], b[CW_MQTT_PASSWORD_LEN + 1], line[256], line2[256];
	const char *dev = "01890a5d-ac96-774b-bcce-b302099a8057";

	ck_assert_int_ge(sodium_init(), 0);
	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(pk, sk2);
	/* deterministic per (key, device), different across devices and keys */
	cw_mqtt_device_password(sk, dev, a);
	cw_mqtt_device_password(sk, dev, b);
	ck_assert_str_eq(a, b);
	ck_assert_uint_eq(strlen(a), CW_MQTT_PASSWORD_LEN);
	ck_assert_uint_eq(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
			  CW_MQTT_PASSWORD_LEN);
	cw_mqtt_device_password(sk, "01890a5d-ac96-774b-bcce-b302099a8058", b);
	ck_assert_str_ne(a, b);
	cw_mqtt_device_password(sk2, dev, b);
	ck_assert_str_ne(a, b);
	/* mosquitto_passwd's "$7$" line: 12-byte salt (16 base64 characters) and
	 * a 64-byte PBKDF2-SHA512 hash (88), a fresh salt each time (the real
	 * broker accepting it is test/cloud/cloud_mqtt.sh) */
	ck_assert_int_eq(cw_mosquitto_passwd_line(dev, a, line, sizeof(line)), CW_OK);
	ck_assert_int_eq(cw_mosquitto_passwd_line(dev, a, line2, sizeof(line2)), CW_OK);
	ck_assert_str_ne(line, line2);
	ck_assert_uint_eq(strlen(line), 36 + 1 + 7 + 16 + 1 + 88 + 1);
	ck_assert(strncmp(line, dev, 36) == 0);
	ck_assert(strncmp(line + 36, ":$7$101$", 8) == 0);
	ck_assert(line[36 + 8 + 16] == '$');
	ck_assert(line[strlen(line) - 1] == '\n');
	ck_assert_int_eq(cw_mosquitto_passwd_line(dev, a, line, 100), CW_ERR_TOOBIG);
}
END_TEST

START_TEST(customer_token_seed)
{
	/* computed independently (Python's hashlib.blake2b: the KDF subkey is
	 * BLAKE2b-256 keyed with the seed, salt = subkey id 1 little-endian,
	 * personal = "cwcusttk"; then BLAKE2b-256 keyed with the subkey over the
	 * label, its NUL and the chain id). Pinned: a change of the derivation
	 * would invalidate every customer token of every chain in the field. */
	static const char want[] =
		"e16f6c5ad933418d148450e0c17aa286606de1d837dab9097b3042c534d172f1";
	unsigned char seed[crypto_sign_SEEDBYTES], sk[crypto_sign_SECRETKEYBYTES];
	unsigned char pk[crypto_sign_PUBLICKEYBYTES], a[CW_CUSTOMER_SEED_BYTES];
	unsigned char b[CW_CUSTOMER_SEED_BYTES];
	char hex[2 * CW_CUSTOMER_SEED_BYTES + 1];

	ck_assert_int_ge(sodium_init(), 0);
	for (int i = 0; i < (int)sizeof(seed); i++)
		seed[i] = (unsigned char)i;
	crypto_sign_seed_keypair(pk, sk, seed);
	cw_customer_token_seed(sk, "0190aaaa-0000-7000-8000-000000000001", a);
	sodium_bin2hex(hex, sizeof(hex), a, sizeof(a));
	ck_assert_str_eq(hex, want);
	/* another chain, another key: another seed */
	cw_customer_token_seed(sk, "0190aaaa-0000-7000-8000-000000000002", b);
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
	seed[0] ^= 1;
	crypto_sign_seed_keypair(pk, sk, seed);
	cw_customer_token_seed(sk, "0190aaaa-0000-7000-8000-000000000001", b);
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
}
END_TEST

START_TEST(trusted_proxies)
{
	unsigned char k[16];

	ck_assert_int_eq(parse("{" MIN_SQLITE "}"), CW_OK);
	ck_assert_int_eq(cfg.n_trusted_proxies, 0);
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"listen\":{\"trusted_proxies\":"
			       "[\"10.0.0.5\",\"2001:db8::1\"]}}"), CW_OK);
	ck_assert_int_eq(cfg.n_trusted_proxies, 2);
	/* an IPv4 address and its IPv6-mapped spelling are the same key */
	ck_assert(cw_cloud_addr_key("::ffff:10.0.0.5", k));
	ck_assert_mem_eq(cfg.trusted_proxies[0], k, 16);
	ck_assert(cw_cloud_addr_key("2001:db8:0::1", k));
	ck_assert_mem_eq(cfg.trusted_proxies[1], k, 16);
	ck_assert(!cw_cloud_addr_key("10.0.0.5:80", k));
	ck_assert(!cw_cloud_addr_key("", k));
	refused("{" MIN_SQLITE ",\"listen\":{\"trusted_proxies\":[\"10.0.0.5\",\"proxy\"]}}",
		"listen.trusted_proxies[1]: expected an IPv4 or IPv6 address");
	refused("{" MIN_SQLITE ",\"listen\":{\"trusted_proxies\":[\"1\",\"2\",\"3\",\"4\",\"5\","
		"\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}}",
		"at most 16");
}
END_TEST

START_TEST(privacy_phone_roles)
{
	ck_assert_int_eq(parse("{" MIN_SQLITE "}"), CW_OK);
	ck_assert_uint_eq(cfg.phone_visible_roles, 1u << CW_ROLE_CHAIN_ADMIN);
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"privacy\":{\"phone_visible_roles\":"
			       "[\"branch-manager\",\"platform-admin\"]}}"), CW_OK);
	ck_assert_uint_eq(cfg.phone_visible_roles,
			  (1u << CW_ROLE_BRANCH_MANAGER) | (1u << CW_ROLE_PLATFORM_ADMIN));
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"privacy\":{\"phone_visible_roles\":[]}}"),
			 CW_OK);
	ck_assert_uint_eq(cfg.phone_visible_roles, 0);
	ck_assert_int_eq(parse("{" MIN_SQLITE ",\"privacy\":{}}"), CW_OK);
	ck_assert_uint_eq(cfg.phone_visible_roles, 1u << CW_ROLE_CHAIN_ADMIN);
	refused("{" MIN_SQLITE ",\"privacy\":{\"phone_visible_roles\":[\"chain-admin\",\"cashier\"]}}",
		"privacy.phone_visible_roles[1]: expected \"platform-admin\"");
	refused("{" MIN_SQLITE ",\"privacy\":{\"phone_visible_roles\":[\"chain-admin\",\"chain-admin\"]}}",
		"privacy.phone_visible_roles[1]: a role given twice");
	refused("{" MIN_SQLITE ",\"privacy\":{\"phone_visible_roles\":[1]}}",
		"privacy.phone_visible_roles[0]: expected");
	refused("{" MIN_SQLITE ",\"privacy\":{\"phone_visible_roles\":\"chain-admin\"}}",
		"privacy.phone_visible_roles: expected an array");
	refused("{" MIN_SQLITE ",\"privacy\":{\"phone_roles\":[]}}", "privacy.phone_roles: unknown key");
	refused("{" MIN_SQLITE ",\"privacy\":[]}", "privacy: expected an object");
}
END_TEST

START_TEST(secrets_never_echoed)
{
	/* a conninfo with a password that is too long: the message says how
	 * long, never what */
	char j[4096];
	char pw[1100];

	memset(pw, 'S', sizeof(pw) - 1);
	pw[sizeof(pw) - 1] = '\0';
	snprintf(j, sizeof(j), "{\"signing_key_file\":\"/k\",\"database\":{\"backend\":\"postgres\","
		 "\"conninfo\":\"password=%s\"}}", pw);
	refused(j, "database.conninfo");
	ck_assert_ptr_null(strstr(err, "SSSS"));
	ck_assert_ptr_null(strstr(err, "password="));
}
END_TEST

START_TEST(load_from_file)
{
	char dir[] = "/tmp/cwcfg.XXXXXX", path[128];
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cloud.json", dir);
	ck_assert_int_eq(cw_cloud_config_load(path, &cfg, err, sizeof(err)), CW_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err, path));
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{" MIN_SQLITE ",\"colour\":1}", f);
	fclose(f);
	ck_assert_int_eq(cw_cloud_config_load(path, &cfg, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, "colour"));
	f = fopen(path, "w");
	fputs("{" MIN_SQLITE "}\n", f);
	fclose(f);
	ck_assert_int_eq(cw_cloud_config_load(path, &cfg, err, sizeof(err)), CW_OK);
	unlink(path);
	ck_assert_int_eq(cw_cloud_config_load(dir, &cfg, err, sizeof(err)), CW_ERR_IO);
	rmdir(dir);
}
END_TEST

START_TEST(utf8_check)
{
	static const char *const good[] = {
		"", "plain", "\xc2\x80", "\xdf\xbf",      /* U+0080, U+07FF */
		"\xe0\xa0\x80", "\xed\x9f\xbf",          /* U+0800, U+D7FF */
		"\xee\x80\x80", "\xef\xbf\xbf",          /* U+E000, U+FFFF */
		"\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", /* U+10000, U+10FFFF */
		"caf\xc3\xa9 \xe2\x82\xac",
	};
	static const char *const bad[] = {
		"\xc0\x80", "\xc1\xbf",                     /* overlong 2-byte */
		"\xe0\x80\x80", "\xe0\x9f\xbf",          /* overlong 3-byte */
		"\xed\xa0\x80", "\xed\xbf\xbf",          /* surrogates */
		"\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", /* overlong 4-byte */
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", /* > U+10FFFF */
		"\x80", "\xc3", "\xe2\x82", "\xe2\x82x", "\xff",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(cw_cloud_utf8_ok(good[i]), "good[%zu] refused", i);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!cw_cloud_utf8_ok(bad[i]), "bad[%zu] accepted", i);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cloud_config");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, minimal_and_defaults);
	tcase_add_test(tc, full_config);
	tcase_add_test(tc, refusals_name_the_key);
	tcase_add_test(tc, trusted_proxies);
	tcase_add_test(tc, mqtt_section);
	tcase_add_test(tc, mqtt_passwords);
	tcase_add_test(tc, customer_token_seed);
	tcase_add_test(tc, secrets_never_echoed);
	tcase_add_test(tc, load_from_file);
	tcase_add_test(tc, utf8_check);
	tcase_add_test(tc, comments_allowed);
	tcase_add_test(tc, privacy_phone_roles);

	tcase_add_test(tc, web_section);
	tcase_add_test(tc, password_hash_cost);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
