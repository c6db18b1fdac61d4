/* cw_cloud_keys.h - the cloud's Ed25519 signing key file.
 *
 * The file holds the 64-byte libsodium secret key (seed + public key) as one
 * line of base64url (sodium_bin2base64, no padding). It is written with mode
 * 0600 as temp file + fsync + rename (+ fsync of the directory), and never
 * overwritten: losing the key would invalidate every token in the field. */
#ifndef CW_CLOUD_KEYS_H
#define CW_CLOUD_KEYS_H

#include <sodium.h>

/* Generates a new key pair into path. CW_ERR_CONFLICT if path exists,
 * CW_ERR_IO otherwise on failure. Requires sodium_init(). */
int cw_key_generate_file(const char *path);

/* Loads and checks the key (its public half must match its seed). Warns when
 * the file can be read by group or others. CW_ERR_IO, CW_ERR_CONFIG. */
int cw_key_load_file(const char *path, unsigned char sk[crypto_sign_SECRETKEYBYTES],
		     unsigned char pk[crypto_sign_PUBLICKEYBYTES]);

/* A device's MQTT password (docs/SYNC.md "MQTT"): keyed BLAKE2b of the
 * device id, keyed with a subkey (libsodium KDF, context "cwmqttpw") of the
 * signing key's seed; 32 bytes as base64url without padding. Deterministic,
 * so the broker's password file can be rebuilt at any time from the device
 * list; unguessable without the signing key. Never log it. */
#define CW_MQTT_PASSWORD_LEN 43
void cw_mqtt_device_password(const unsigned char sk[crypto_sign_SECRETKEYBYTES],
			     const char *device_id, char out[CW_MQTT_PASSWORD_LEN + 1]);

/* The chain's customer-token key (docs/SYNC.md "The chain's customer-token
 * key"): the Ed25519 seed every edge of the chain signs customer tokens
 * with. Keyed BLAKE2b (32 bytes) of "cartwise customer-token v1\0" followed
 * by chain_id, keyed with a subkey (KDF context "cwcusttk") of the signing
 * key's seed. Derived, not stored: the same for every device of the chain
 * and at every start, unguessable without the signing key. A rotation is a
 * new context or message ("v2"). Never log it. */
#define CW_CUSTOMER_SEED_BYTES 32
void cw_customer_token_seed(const unsigned char sk[crypto_sign_SECRETKEYBYTES],
			    const char *chain_id, unsigned char out[CW_CUSTOMER_SEED_BYTES]);

/* Replaces path with len bytes of data, mode 0600: temp file in the same
 * directory, fsync, rename, fsync of the directory, so that a reader sees the
 * old or the new file, never half of one. CW_ERR_INVAL, CW_ERR_IO. */
int cw_file_replace(const char *path, const void *data, size_t len);

#endif
