/* cw_cloud_mqtt.h - the cloud's side of the MQTT link (docs/SYNC.md "MQTT").
 *
 * Three things:
 *  - Mosquitto's password file for every device with a live token plus the
 *    cloud's own user (PBKDF2-SHA512 hashes made with OpenSSL's libcrypto, in
 *    the "$7$" format mosquitto_passwd writes), and the pattern ACL file;
 *  - a client (src/cw_mqtt) that publishes each new command at once on
 *    cartwise/{chain}/{branch}/devices/{device}/commands (QoS 1), and records
 *    the devices' status and telemetry messages in the store;
 *  - keeping mqtt.passwd_out up to date after registrations and revocations.
 *
 * Nothing here ever blocks an API request on the broker: a publish while the
 * link is down is skipped (the heartbeat hands the command out), and the
 * command is never marked delivered because of MQTT. */
#ifndef CW_CLOUD_MQTT_H
#define CW_CLOUD_MQTT_H

#include <stddef.h>
#include <stdio.h>
#include <sodium.h>

#include "cw_cloud_config.h"
#include "cw_cloud_events.h"
#include "cw_store.h"

/* Largest status or telemetry payload accepted from a device. */
#define CW_CLOUD_MQTT_PAYLOAD_MAX (16 * 1024)
/* Longest password the cloud's password file may hold. */
#define CW_CLOUD_MQTT_PASSWORD_MAX 127

/* Reads cfg->mqtt_password_file: one line (newline removed) of 1..127 bytes.
 * Warns when group or others can read it (like the signing key).
 * CW_ERR_CONFIG (not set, empty, too long), CW_ERR_IO. */
int cw_cloud_mqtt_password(const struct cw_cloud_config *cfg,
			   char out[CW_CLOUD_MQTT_PASSWORD_MAX + 1]);

/* One line of Mosquitto's password file, "user:$7$101$<salt>$<hash>\n"
 * (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte random salt, base64: the
 * format and defaults of mosquitto_passwd 2.0). CW_ERR_TOOBIG, CW_ERR_IO. */
int cw_mosquitto_passwd_line(const char *user, const char *password, char *out, size_t cap);

/* Writes Mosquitto's password file to path (cw_file_replace: 0600, atomic):
 * the cloud's user and every device with a live token at now. */
int cw_cloud_mqtt_write_passwd(const struct cw_cloud_config *cfg, struct cw_store *s,
			       const unsigned char sk[crypto_sign_SECRETKEYBYTES], const char *path);

/* The pattern ACL file (the same rules as test/mqtt/broker.sh's). */
void cw_cloud_mqtt_print_acl(const struct cw_cloud_config *cfg, FILE *f);
int cw_cloud_mqtt_write_acl(const struct cw_cloud_config *cfg, const char *path);

struct cw_cloud_mqtt;

/* Starts the client when cfg has an mqtt host and password_file (else *out
 * = NULL and CW_OK: the cloud then does not connect). Writes passwd_out once
 * when it is set. The store and the event hub (may be NULL; status and
 * telemetry messages publish "devices" to the device's branch) are borrowed
 * and must outlive the object. */
int cw_cloud_mqtt_new(const struct cw_cloud_config *cfg, struct cw_store *s,
		      const unsigned char sk[crypto_sign_SECRETKEYBYTES], struct cw_events *events,
		      struct cw_cloud_mqtt **out);
void cw_cloud_mqtt_free(struct cw_cloud_mqtt *m); /* NULL ok */

/* Publishes a new command (element = the heartbeat's JSON element of it,
 * token included) on its device's commands topic, without waiting. m may be
 * NULL. */
void cw_cloud_mqtt_command(struct cw_cloud_mqtt *m, const struct cw_command *cmd,
			   const char *element);
/* A device was registered or its tokens revoked: rewrites passwd_out (when
 * set). m may be NULL. */
void cw_cloud_mqtt_devices_changed(struct cw_cloud_mqtt *m);

#endif
