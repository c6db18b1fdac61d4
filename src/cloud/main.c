/* cartwise-cloud - the multi-tenant aggregator (issue 3).
 *
 *   cartwise-cloud --config FILE                  serve the API
 *   cartwise-cloud --config FILE migrate          apply migrations and exit
 *   cartwise-cloud --config FILE admin create-user --email E --role R
 *           [--chain ID] [--branch ID]... [--password-file F]
 *   cartwise-cloud --config FILE mqtt-passwd --out FILE   Mosquitto's password file
 *   cartwise-cloud --config FILE mqtt-acl [--out FILE]    Mosquitto's ACL file
 *   cartwise-cloud keygen --out FILE              new Ed25519 signing key (0600)
 *   cartwise-cloud routes                         the HTTP routes, one per line
 *
 * Passwords come from --password-file or stdin, never from argv (argv is
 * visible to every user in /proc). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <time.h>

#include "cw_clock.h"
#include "cw_cloud_api.h"
#include "cw_cloud_config.h"
#include "cw_cloud_events.h"
#include "cw_cloud_keys.h"
#include "cw_cloud_mqtt.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_service.h"
#include "cw_store.h"
#include "cw_uuid.h"
#include "cw_version.h"

#define EXIT_USAGE 2
#define EXIT_TEMPFAIL 75 /* sysexits.h EX_TEMPFAIL: database unreachable */
#define PASSWORD_MIN 10
#define PASSWORD_MAX 1024
#define MAX_BRANCHES 64
#define TLS_FILE_MAX (256 * 1024)
#define DB_RETRY_MS 2000
/* While the database is down at start, systemd is told to wait this much
 * more each round (EXTEND_TIMEOUT_USEC): a retry pause plus an attempt
 * (libpq's connect_timeout is 3 s per address of the host), with room. */
#define DB_WAIT_EXTEND_MS 15000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cartwise-cloud --config FILE                 serve the API\n"
		"       cartwise-cloud --config FILE migrate         apply database migrations\n"
		"       cartwise-cloud --config FILE admin create-user --email E --role ROLE\n"
		"              [--chain CHAIN_ID] [--branch BRANCH_ID]... [--password-file FILE]\n"
		"              ROLE: platform-admin | chain-admin | branch-manager\n"
		"              the password is read from FILE, or from stdin (one line)\n"
		"       cartwise-cloud --config FILE mqtt-passwd --out FILE\n"
		"              write Mosquitto's password file (every device with a live token\n"
		"              and the cloud's own user; 0600, replaced atomically)\n"
		"       cartwise-cloud --config FILE mqtt-acl [--out FILE]\n"
		"              print or write Mosquitto's ACL file\n"
		"       cartwise-cloud keygen --out FILE             write a new signing key (0600)\n"
		"       cartwise-cloud routes                        list the HTTP routes\n"
		"       cartwise-cloud --help | --version\n");
}

static int open_store(const struct cw_cloud_config *cfg, struct cw_store **s)
{
	struct cw_store_config sc = {.backend = cfg->db_backend,
				     .path = cfg->db_path,
				     .conninfo = cfg->db_conninfo,
				     .pool_size = cfg->db_pool_size};
	int rc = cw_store_new(&sc, s);

	if (rc == CW_OK && cfg->migrate_on_start)
		rc = cw_store_migrate(*s, NULL);
	if (rc != CW_OK) {
		cw_store_free(*s);
		*s = NULL;
	}
	return rc;
}

/* One line of at most PASSWORD_MAX bytes, newline removed. */
static int read_password(const char *file, char *out, size_t cap)
{
	FILE *f = file ? fopen(file, "r") : stdin;
	size_t n;
	int rc = CW_ERR_INVAL;

	if (!f)
		return CW_ERR_IO;
	if (fgets(out, (int)cap, f)) {
		n = strcspn(out, "\r\n");
		if (out[n] == '\0' && n == cap - 1)
			rc = CW_ERR_TOOBIG; /* no newline within the limit */
		else {
			out[n] = '\0';
			rc = n >= PASSWORD_MIN ? CW_OK : CW_ERR_INVAL;
		}
	}
	if (file)
		fclose(f);
	return rc;
}

static int cmd_create_user(const struct cw_cloud_config *cfg, int argc, char **argv)
{
	const char *email = NULL, *role_s = NULL, *chain = NULL, *pwfile = NULL;
	const char *branches[MAX_BRANCHES];
	char password[PASSWORD_MAX + 2];
	struct cw_store *s = NULL;
	struct cw_user u = {.active = true};
	struct cw_chain ch;
	int nb = 0, rc;

	for (int i = 0; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			goto usage;
		if (strcmp(argv[i], "--email") == 0)
			email = v;
		else if (strcmp(argv[i], "--role") == 0)
			role_s = v;
		else if (strcmp(argv[i], "--chain") == 0)
			chain = v;
		else if (strcmp(argv[i], "--password-file") == 0)
			pwfile = v;
		else if (strcmp(argv[i], "--branch") == 0 && nb < MAX_BRANCHES)
			branches[nb++] = v;
		else
			goto usage;
		i++;
	}
	if (!email || !role_s || cw_role_parse(role_s, &u.role) != CW_OK)
		goto usage;
	if (strlen(email) < 3 || strlen(email) >= sizeof(u.email) || !strchr(email, '@')) {
		fprintf(stderr, "cartwise-cloud: --email: expected an email address\n");
		return EXIT_USAGE;
	}
	for (size_t i = 0; email[i]; i++) {
		char c = email[i];
		if ((unsigned char)c <= 0x20 || c == 0x7f) {
			fprintf(stderr, "cartwise-cloud: --email: no spaces or control characters\n");
			return EXIT_USAGE;
		}
		u.email[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	if ((u.role == CW_ROLE_PLATFORM_ADMIN) != (chain == NULL)) {
		fprintf(stderr, "cartwise-cloud: --chain is required for chain-admin and "
				"branch-manager, and not allowed for platform-admin\n");
		return EXIT_USAGE;
	}
	if (nb && u.role != CW_ROLE_BRANCH_MANAGER) {
		fprintf(stderr, "cartwise-cloud: --branch is only for branch-manager\n");
		return EXIT_USAGE;
	}
	rc = read_password(pwfile, password, sizeof(password));
	if (rc != CW_OK) {
		fprintf(stderr, "cartwise-cloud: password: %s\n",
			rc == CW_ERR_IO ? "cannot read the password file"
					: "expected one line of 10..1024 bytes");
		return EXIT_USAGE;
	}
	if (cw_cloud_hash_password(cfg, password, strlen(password), u.password_hash,
				   sizeof(u.password_hash)) != CW_OK) {
		sodium_memzero(password, sizeof(password));
		fprintf(stderr, "cartwise-cloud: out of memory hashing the password\n");
		return EXIT_FAILURE;
	}
	sodium_memzero(password, sizeof(password));
	rc = open_store(cfg, &s);
	if (rc != CW_OK) {
		fprintf(stderr, "cartwise-cloud: database: %s\n", cw_strerror(rc));
		return rc == CW_ERR_OFFLINE ? EXIT_TEMPFAIL : EXIT_FAILURE;
	}
	if (chain) {
		rc = cw_store_chain_get(s, chain, &ch);
		if (rc != CW_OK) {
			fprintf(stderr, "cartwise-cloud: --chain: %s\n", cw_strerror(rc));
			goto out;
		}
		snprintf(u.chain_id, sizeof(u.chain_id), "%s", ch.id);
	}
	cw_uuid_v7(u.id);
	rc = cw_store_user_create(s, &u, cw_wall_ms());
	if (rc != CW_OK) {
		fprintf(stderr, "cartwise-cloud: create-user: %s\n",
			rc == CW_ERR_CONFLICT ? "a user with this email exists" : cw_strerror(rc));
		goto out;
	}
	for (int i = 0; i < nb && rc == CW_OK; i++) {
		rc = cw_store_user_add_branch(s, u.id, branches[i]);
		if (rc != CW_OK)
			fprintf(stderr, "cartwise-cloud: --branch %d: not a branch of the chain (%s)\n",
				i + 1, cw_strerror(rc));
	}
	if (rc == CW_OK) {
		printf("{\"id\":\"%s\",\"email\":\"%s\",\"role\":\"%s\"}\n", u.id, u.email,
		       cw_role_name(u.role));
		cw_info("admin.user_created", "user=%s role=%s", u.id, cw_role_name(u.role));
	}
out:
	cw_store_free(s);
	return rc == CW_OK ? EXIT_SUCCESS : EXIT_FAILURE;
usage:
	usage(stderr);
	return EXIT_USAGE;
}

static int cmd_migrate(const struct cw_cloud_config *cfg)
{
	struct cw_store_config sc = {.backend = cfg->db_backend,
				     .path = cfg->db_path,
				     .conninfo = cfg->db_conninfo,
				     .pool_size = 1};
	struct cw_store *s = NULL;
	int v = 0, rc = cw_store_new(&sc, &s);

	if (rc == CW_OK)
		rc = cw_store_migrate(s, &v);
	cw_store_free(s);
	if (rc != CW_OK) {
		fprintf(stderr, "cartwise-cloud: migrate: %s\n", cw_strerror(rc));
		return rc == CW_ERR_OFFLINE ? EXIT_TEMPFAIL : EXIT_FAILURE;
	}
	printf("schema version %d\n", v);
	return EXIT_SUCCESS;
}

static int cmd_mqtt_passwd(const struct cw_cloud_config *cfg, const char *out)
{
	unsigned char sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	struct cw_store *s = NULL;
	int rc;

	if (!cfg->mqtt_host[0] || !cfg->mqtt_password_file[0]) {
		fprintf(stderr, "cartwise-cloud: mqtt-passwd: the configuration needs mqtt.host and "
				"mqtt.password_file (the cloud's own broker user)\n");
		return EXIT_FAILURE;
	}
	rc = cw_key_load_file(cfg->signing_key_file, sk, pk);
	if (rc != CW_OK) {
		fprintf(stderr, "cartwise-cloud: mqtt-passwd: cannot load the signing key %s (%s)\n",
			cfg->signing_key_file, cw_strerror(rc));
		return EXIT_FAILURE;
	}
	rc = open_store(cfg, &s);
	if (rc != CW_OK) {
		fprintf(stderr, "cartwise-cloud: database: %s\n", cw_strerror(rc));
		sodium_memzero(sk, sizeof(sk));
		return rc == CW_ERR_OFFLINE ? EXIT_TEMPFAIL : EXIT_FAILURE;
	}
	rc = cw_cloud_mqtt_write_passwd(cfg, s, sk, out);
	sodium_memzero(sk, sizeof(sk));
	cw_store_free(s);
	if (rc != CW_OK) {
		if (rc == CW_ERR_CONFIG)
			fprintf(stderr, "cartwise-cloud: mqtt-passwd: mqtt.password_file: expected "
					"one line of 1..%d bytes\n", CW_CLOUD_MQTT_PASSWORD_MAX);
		else if (rc == CW_ERR_IO)
			fprintf(stderr, "cartwise-cloud: mqtt-passwd: cannot read mqtt.password_file "
					"or write %s\n", out);
		else
			fprintf(stderr, "cartwise-cloud: mqtt-passwd: %s\n", cw_strerror(rc));
		return rc == CW_ERR_OFFLINE ? EXIT_TEMPFAIL : EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

static int cmd_mqtt_acl(const struct cw_cloud_config *cfg, const char *out)
{
	if (!out) {
		cw_cloud_mqtt_print_acl(cfg, stdout);
		return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
	}
	if (cw_cloud_mqtt_write_acl(cfg, out) != CW_OK) {
		fprintf(stderr, "cartwise-cloud: mqtt-acl: %s: cannot write\n", out);
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

/* Waits up to ms (< 0: for ever) for SIGTERM/SIGINT in set, feeding
 * systemd's watchdog meanwhile. Returns the signal, or 0 after ms. */
static int wait_signal(const sigset_t *set, struct cw_watchdog *wd, int64_t ms)
{
	int64_t end = cw_mono_ms() + ms;

	for (;;) {
		int64_t left = ms < 0 ? INT64_MAX : end - cw_mono_ms();
		struct timespec ts;
		int sig;

		if (cw_watchdog_due(wd))
			cw_watchdog_feed(wd);
		if (left <= 0)
			return 0;
		left = cw_watchdog_wait_ms(wd, left);
		if (left == INT64_MAX) {
			sig = sigwaitinfo(set, NULL);
		} else {
			ts.tv_sec = (time_t)(left / 1000);
			ts.tv_nsec = (long)(left % 1000) * 1000000L;
			sig = sigtimedwait(set, NULL, &ts);
		}
		if (sig > 0)
			return sig;
	}
}

/* The hub's forward function: a change goes to the other instances after
 * the caller's commit, best effort (a lost one costs a stream at most a
 * refresh; the client refetches everything every 30 s anyway). */
static void forward_event(void *ctx, const char *payload)
{
	int rc = cw_store_notify(ctx, payload);

	if (rc != CW_OK)
		cw_debug("events.notify_failed", "err=%s", cw_errname(rc));
}

static int serve(const struct cw_cloud_config *cfg)
{
	unsigned char sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	char *cert = NULL, *key = NULL;
	size_t len;
	struct cw_store *s = NULL;
	struct cw_cloud_api *api = NULL;
	struct cw_cloud_mqtt *mqtt = NULL;
	struct cw_events *events = NULL;
	struct cw_watchdog wd;
	sigset_t set;
	int sig, rc, status = EXIT_FAILURE;

	if (cw_cloud_config_weak_hash(cfg))
		cw_warn("cloud.weak_password_hash",
			"ops=%d mem_kib=%d msg=\"login.hash_ops/hash_mem_kib below 2 passes over 19 "
			"MiB (OWASP's floor for Argon2id): for test machines only\"",
			cfg->hash_ops, cfg->hash_mem_kib);
	rc = cw_key_load_file(cfg->signing_key_file, sk, pk);
	if (rc != CW_OK) {
		cw_error("cloud.key", "path=%s msg=\"cannot load the signing key (%s); create one "
			 "with: cartwise-cloud keygen --out FILE\"", cfg->signing_key_file,
			 cw_strerror(rc));
		return EXIT_FAILURE;
	}
	if (cfg->tls_cert_file[0] &&
	    (cw_read_file(cfg->tls_cert_file, TLS_FILE_MAX, &cert, &len) != CW_OK ||
	     cw_read_file(cfg->tls_key_file, TLS_FILE_MAX, &key, &len) != CW_OK)) {
		cw_error("cloud.tls", "msg=\"cannot read tls.cert_file or tls.key_file\"");
		goto out;
	}
	/* Signals are taken by sigwait below; block them before any thread
	 * (libmicrohttpd's, libpq's) is created so that none receives them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* systemd's watchdog (Type=notify, docs/CLOUD.md): fed from here on by
	 * the waits of this thread, whose only work is waiting */
	cw_watchdog_init(&wd);
	/* A database that is down at start is waited for, not fatal; systemd
	 * is told so, or its start timeout would kill us meanwhile. */
	while ((rc = open_store(cfg, &s)) == CW_ERR_OFFLINE) {
		cw_warn("cloud.database_wait", "retry_ms=%d", DB_RETRY_MS);
		cw_service_status("waiting for the database");
		cw_service_extend_timeout(DB_WAIT_EXTEND_MS);
		sig = wait_signal(&set, &wd, DB_RETRY_MS);
		if (sig > 0) {
			cw_info("cloud.stopping", "signal=%d", sig);
			cw_service_stopping();
			status = EXIT_SUCCESS;
			goto out;
		}
	}
	if (rc != CW_OK) {
		cw_error("cloud.database", "msg=\"%s\"", cw_strerror(rc));
		goto out;
	}
	/* the live event hub: its publishes also go to the other instances
	 * through the database, and theirs come back (PostgreSQL LISTEN/NOTIFY;
	 * nothing on SQLite, which has one instance) */
	{
		struct cw_events_params ep = {.max_streams = cfg->max_event_streams,
					      .forward = forward_event, .forward_ctx = s};
		rc = cw_events_new(&ep, &events);
		if (rc == CW_OK)
			rc = cw_store_listen(s, cw_events_remote, events);
	}
	if (rc != CW_OK) {
		cw_error("cloud.events", "msg=\"cannot start the live event hub (%s)\"",
			 cw_strerror(rc));
		goto out;
	}
	/* the broker link never holds up the start: it connects in the background */
	rc = cw_cloud_mqtt_new(cfg, s, sk, events, &mqtt);
	if (rc != CW_OK) {
		cw_error("cloud.mqtt", "msg=\"cannot start the MQTT client (%s)\"", cw_strerror(rc));
		goto out;
	}
	{
		struct cw_cloud_api_params p = {.cfg = cfg, .store = s, .sk = sk,
						.tls_cert_pem = cert, .tls_key_pem = key,
						.mqtt = mqtt, .events = events};
		rc = cw_cloud_api_new(&p, &api);
	}
	if (rc != CW_OK)
		goto out;
	{
		char ready[128];

		snprintf(ready, sizeof(ready), "port=%d backend=%s tls=%s", cw_cloud_api_port(api),
			 cfg->db_backend == CW_BACKEND_SQLITE ? "sqlite" : "postgres",
			 cert ? "on" : "off");
		cw_info("cloud.ready", "version=%s %s", CW_VERSION, ready);
		cw_service_ready(ready);
	}
	sig = wait_signal(&set, &wd, -1);
	cw_info("cloud.stopping", "signal=%d", sig);
	cw_service_stopping();
	status = EXIT_SUCCESS;
out:
	/* the API ends its live streams; then nothing publishes any more and
	 * the listener, the hub's other feeder, stops before the hub goes */
	cw_cloud_api_free(api);
	cw_cloud_mqtt_free(mqtt);
	if (s)
		cw_store_unlisten(s);
	cw_events_free(events);
	cw_store_free(s);
	sodium_memzero(sk, sizeof(sk));
	if (key) {
		sodium_memzero(key, strlen(key));
		free(key);
	}
	free(cert);
	return status;
}

int main(int argc, char **argv)
{
	struct cw_cloud_config cfg;
	const char *config = NULL;
	char err[768];
	enum cw_log_level lvl;
	int i = 1;

	if (sodium_init() < 0) {
		fprintf(stderr, "cartwise-cloud: libsodium failed to initialise\n");
		return EXIT_FAILURE;
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return EXIT_SUCCESS;
	}
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("cartwise-cloud %s\n", CW_VERSION);
		return EXIT_SUCCESS;
	}
	if (argc == 2 && strcmp(argv[1], "routes") == 0) {
		cw_cloud_api_print_routes(stdout);
		return EXIT_SUCCESS;
	}
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0) {
		int rc;
		if (argc != 4 || strcmp(argv[2], "--out") != 0) {
			usage(stderr);
			return EXIT_USAGE;
		}
		rc = cw_key_generate_file(argv[3]);
		if (rc != CW_OK) {
			fprintf(stderr, "cartwise-cloud: keygen: %s: %s\n", argv[3],
				rc == CW_ERR_CONFLICT ? "exists already (never overwritten)"
						      : "cannot write");
			return EXIT_FAILURE;
		}
		return EXIT_SUCCESS;
	}
	if (argc >= 3 && strcmp(argv[1], "--config") == 0) {
		config = argv[2];
		i = 3;
	}
	if (!config) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (cw_cloud_config_load(config, &cfg, err, sizeof(err)) != CW_OK) {
		fprintf(stderr, "cartwise-cloud: %s\n", err);
		return EXIT_FAILURE;
	}
	if (cw_log_level_parse(cfg.log_level, &lvl) == CW_OK)
		cw_log_set_level(lvl);
	if (i == argc)
		return serve(&cfg);
	if (strcmp(argv[i], "migrate") == 0 && i + 1 == argc)
		return cmd_migrate(&cfg);
	if (strcmp(argv[i], "mqtt-passwd") == 0 && i + 3 == argc && strcmp(argv[i + 1], "--out") == 0)
		return cmd_mqtt_passwd(&cfg, argv[i + 2]);
	if (strcmp(argv[i], "mqtt-acl") == 0 && (i + 1 == argc ||
						  (i + 3 == argc && strcmp(argv[i + 1], "--out") == 0)))
		return cmd_mqtt_acl(&cfg, i + 1 == argc ? NULL : argv[i + 2]);
	if (strcmp(argv[i], "admin") == 0 && i + 1 < argc && strcmp(argv[i + 1], "create-user") == 0)
		return cmd_create_user(&cfg, argc - i - 2, argv + i + 2);
	usage(stderr);
	return EXIT_USAGE;
}
