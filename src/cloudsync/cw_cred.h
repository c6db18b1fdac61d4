/* cw_cred.h - the device's cloud credentials, <data_dir>/cloud.json.
 *
 * Written at enrollment and at every token rotation; read at start. The file
 * holds the device token (a secret): mode 0600, written as a temporary file in
 * the same directory, fsync'd, renamed over the old one, directory fsync'd, so
 * a power cut leaves the old file or the new one, never half of one. Loading
 * is strict (unknown, repeated or missing keys and wrong types are refused,
 * naming the key, never echoing a value); a file readable by group or others
 * is loaded with a warning. */
#ifndef CW_CRED_H
#define CW_CRED_H

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

#include "cw_jwt.h"
#include "cw_sync.h"

#define CW_CRED_FILE "cloud.json"
#define CW_CRED_FILE_MAX (64 * 1024)

struct cw_cred {
	char device_id[CW_SYNC_ID_MAX];
	char branch_id[CW_SYNC_ID_MAX];
	char chain_id[CW_SYNC_ID_MAX];
	char device_token[CW_JWT_MAX_LEN + 1];
	int64_t token_issued_ms;  /* the token's iat (0 = unknown) */
	int64_t token_expires_ms; /* token_expires_at of the cloud's answer */
	unsigned char cloud_pk[crypto_sign_PUBLICKEYBYTES]; /* "cloud_public_key", base64url */
	/* The cloud's token issuer ("iss" of the device token): command tokens
	 * are checked against it (docs/SYNC.md "Commands"). */
	char cloud_issuer[128];
	/* BLAKE2b of the enrollment code this device registered with (hex): a
	 * revoked device re-enrolls only with a different code. */
	char enrollment_code_hash[65];
	/* "mqtt" (docs/SYNC.md "MQTT"): the broker and the device's own
	 * credentials, handed out at registration and at every rotation. The
	 * link runs only with a user name and password (an older cloud gave
	 * neither: the next rotation brings them). */
	bool has_mqtt;
	char mqtt_broker[256];
	int mqtt_port;
	bool mqtt_tls;
	char mqtt_topic[256];    /* cartwise/{chain}/{branch}/devices/{device} */
	char mqtt_username[64];  /* the device id */
	char mqtt_password[128]; /* a secret: never logged */
};

/* path = <data_dir>/cloud.json into out (cap bytes). */
int cw_cred_path(const char *data_dir, char *out, size_t cap);

/* CW_OK, CW_ERR_NOTFOUND (no file: not enrolled), CW_ERR_CONFIG (a bad
 * file; err says which key), CW_ERR_IO, CW_ERR_TOOBIG. */
int cw_cred_load(const char *path, struct cw_cred *out, char *err, size_t errlen);
/* Atomic replace, mode 0600 (see above). */
int cw_cred_save(const char *path, const struct cw_cred *c);

/* True for a device id that can go into a URL path as it is: 1-63
 * characters of [0-9A-Za-z-] (the cloud's ids are UUIDs). */
bool cw_cred_id_ok(const char *id);

/* Hex BLAKE2b-256 of an enrollment code (lower-cased, as the cloud does). */
void cw_cred_code_hash(const char *code, char out[65]);

/* Reads the cloud's "mqtt_config" object (registration and rotation
 * answers) into out's mqtt fields (has_mqtt set): broker, port, topic
 * required; tls, username, password optional (user name and password both
 * or neither). Keys this device does not know are ignored (a newer cloud);
 * wrong types are refused with err naming the key ("mqtt_config.port: …"),
 * never a value. CW_OK or CW_ERR_CONFIG. */
int cw_cred_mqtt_from_json(const cJSON *m, struct cw_cred *out, char *err, size_t errlen);
/* True when a and b name the same broker with the same credentials. */
bool cw_cred_mqtt_same(const struct cw_cred *a, const struct cw_cred *b);

/* RFC 3339 UTC "2026-11-28T08:00:00.000Z" (fraction optional, "Z" or
 * "+00:00") → ms since the epoch; CW_ERR_INVAL otherwise. */
int cw_cred_parse_time(const char *s, int64_t *ms);

/* Reads the unverified claims "iss" and "iat" of a compact JWT (the device
 * token the cloud just handed us over verified TLS). */
int cw_cred_token_info(const char *token, char *iss, size_t iss_cap, int64_t *iat_ms);

#endif
