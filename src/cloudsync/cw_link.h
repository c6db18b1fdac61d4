/* cw_link.h - the device's MQTT link to the cloud (docs/SYNC.md "MQTT"),
 * on src/cw_mqtt (paho.mqtt.c).
 *
 * With P = the topic of cloud.json's "mqtt" (cartwise/{chain}/{branch}/
 * devices/{device}): client id = the device id, user name and password from
 * cloud.json, persistent session, Last Will {"v":1,"status":"offline"}
 * (retained, QoS 1) on P/status; subscribes P/commands (QoS 1); publishes
 * {"v":1,"status":"online","at","firmware_version"} retained on P/status
 * after every (re)connect, and {"v":1,"status":"offline","at"} before a
 * clean stop (cw_link_free).
 *
 * Connecting happens in the background and never blocks the caller; a
 * broker that is down or refuses us leaves the link disconnected and the
 * HTTPS heartbeat delivers commands as before. The callbacks run on paho's
 * thread: on_command receives a parsed JSON object (the caller owns it) and
 * must only queue it; the command is verified and run elsewhere (the
 * syncer's thread). Payloads over CW_LINK_CMD_MAX bytes, not JSON or not an
 * object are refused here, one log line each. The password is never logged. */
#ifndef CW_LINK_H
#define CW_LINK_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "cw_cred.h"

#define CW_LINK_CMD_MAX (16 * 1024)

/* cmd: a JSON object, owned by the callee from here on (cJSON_Delete). */
typedef void (*cw_link_command_fn)(void *ctx, cJSON *cmd);
/* true after every (re)connect, false when the link is lost */
typedef void (*cw_link_state_fn)(void *ctx, bool connected);

struct cw_link;

/* cred must have has_mqtt and a user name (CW_ERR_INVAL otherwise);
 * ca_file ("" = system CAs) is used with tls. Starts connecting. */
int cw_link_new(const struct cw_cred *cred, const char *ca_file, const char *firmware_version,
		cw_link_command_fn on_command, cw_link_state_fn on_state, void *ctx,
		struct cw_link **out);
bool cw_link_connected(struct cw_link *l);
/* Publishes {"v":1,"at","health"} on P/telemetry (QoS 1, not retained)
 * without waiting. CW_ERR_OFFLINE when not connected. */
int cw_link_telemetry(struct cw_link *l, const cJSON *health);
/* Publishes the offline status (waits up to a second for the broker's
 * acknowledgement), disconnects without the Last Will, frees. NULL is fine. */
void cw_link_free(struct cw_link *l);

#endif
