/* cw_cloud_config.h - cartwise-cloud's JSON configuration.
 *
 * Strict like the edge's (BRIEF.md §2): unknown keys and bad values are
 * refused with a message naming the key path ("database.pool_size: expected
 * an integer 1..64, got 0"). String values are never echoed in messages (the
 * conninfo can hold a password). Every key is documented in docs/CLOUD.md. */
#ifndef CW_CLOUD_CONFIG_H
#define CW_CLOUD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "cw_store.h"

#define CW_CLOUD_CONFIG_MAX_BYTES (256 * 1024)
#define CW_CLOUD_TRUSTED_PROXIES_MAX 16

struct cw_cloud_config {
	/* listen */
	char listen_address[64]; /* default "127.0.0.1" */
	int listen_port;         /* default 8000; 0 = any free port */
	int threads;             /* HTTP thread pool, default 4 */
	int max_event_streams;   /* live event streams (SSE) open at once, default 256, 0..4096 */
	/* reverse proxies whose X-Forwarded-For is believed (16-byte form,
	 * IPv4 as ::ffff:a.b.c.d; see cw_cloud_addr_key) */
	int n_trusted_proxies;
	unsigned char trusted_proxies[CW_CLOUD_TRUSTED_PROXIES_MAX][16];
	/* database */
	enum cw_backend db_backend;
	char db_path[512];       /* sqlite */
	char db_conninfo[1024];  /* postgres; "" = PG* environment */
	int db_pool_size;        /* default 4 */
	bool migrate_on_start;   /* default true */
	/* tokens */
	char signing_key_file[512];
	char issuer[64];         /* default "cartwise-cloud" */
	char audience[64];       /* default "cartwise-api" */
	int staff_token_ttl_s;   /* default 43200 (12 h) */
	int device_token_ttl_s;  /* default 2592000 (30 days) */
	/* login rate limit: per (email, client address) */
	int login_max_attempts;  /* default 5 */
	int login_window_s;      /* default 900 */
	/* Argon2id cost of the password hashes the cloud writes (new users,
	 * password changes, the dummy hash of unknown emails); a stored hash
	 * keeps the cost it was made with. Defaults: libsodium's INTERACTIVE */
	int hash_ops;            /* login.hash_ops: passes, 1..10, default 2 */
	int hash_mem_kib;        /* login.hash_mem_kib: 8..1048576, default 65536 */
	/* devices */
	int offline_after_s;     /* default 90: three missed 30 s heartbeats */
	/* MQTT (docs/CLOUD.md "MQTT"): host, port and tls are handed to devices
	 * at registration and token rotation ("" = no broker); the rest is how
	 * the cloud itself connects, as user mqtt_username */
	char mqtt_host[256];
	int mqtt_port;           /* default 8883 */
	bool mqtt_tls;           /* default true */
	char mqtt_connect_host[256]; /* default mqtt_host */
	int mqtt_connect_port;   /* default mqtt_port */
	char mqtt_username[64];  /* default "cartwise-cloud" */
	char mqtt_password_file[512]; /* "" = the cloud does not connect */
	char mqtt_ca_file[512];  /* "" = system CAs (tls only) */
	char mqtt_passwd_out[512]; /* "" = none: Mosquitto's password file kept up to date */
	/* optional native TLS (both or neither) */
	char tls_cert_file[512];
	char tls_key_file[512];
	char log_level[8];       /* debug|info|warn|error, default info */
	/* privacy: the roles that see customers' phone numbers in full, one
	 * bit (1u << enum cw_role) each; default chain-admin only */
	unsigned phone_visible_roles;

	/* web.dashboard_dir: the dashboard's files (issue 7); default the install
	 * dir CW_DASHBOARD_DIR; "" = not served */
	char dashboard_dir[512];
};

/* Fills defaults, then parses. On error returns CW_ERR_CONFIG (or CW_ERR_IO /
 * CW_ERR_TOOBIG for the file) with a one-line reason naming the key. */
int cw_cloud_config_parse(const char *json, size_t len, struct cw_cloud_config *out, char *errbuf,
			  size_t errlen);
int cw_cloud_config_load(const char *path, struct cw_cloud_config *out, char *errbuf,
			 size_t errlen);

/* Whether login.hash_* is below OWASP's floor for Argon2id (2 passes over
 * 19 MiB): allowed (a test machine saves its CPU), warned about at start. */
bool cw_cloud_config_weak_hash(const struct cw_cloud_config *c);

/* A crypto_pwhash_str (Argon2id) of password at the configured cost into out
 * (cap: crypto_pwhash_STRBYTES at least, else CW_ERR_TOOBIG): CW_OK, or
 * CW_ERR_NOMEM when the memory cannot be had. */
int cw_cloud_hash_password(const struct cw_cloud_config *c, const char *password, size_t len,
			   char *out, size_t cap);

/* Parses an IPv4 or IPv6 address into its 16-byte form (IPv4 as the mapped
 * ::ffff:a.b.c.d, so both spellings of one address compare equal). */
bool cw_cloud_addr_key(const char *text, unsigned char out[16]);
/* Whether a 16-byte address is an IPv4 one (::ffff:a.b.c.d). */
bool cw_cloud_addr_is_v4(const unsigned char key[16]);

/* Reads a whole regular file of at most max bytes into a new NUL-terminated
 * buffer (caller frees). CW_ERR_IO, CW_ERR_TOOBIG, CW_ERR_NOMEM. */
int cw_read_file(const char *path, size_t max, char **out, size_t *len);

/* Whether a NUL-terminated text is well-formed UTF-8 (no overlong two-byte
 * forms, nothing past U+10FFFF's lead byte): what the API and the MQTT
 * subscriber accept from the network. */
bool cw_cloud_utf8_ok(const char *text);

#endif
