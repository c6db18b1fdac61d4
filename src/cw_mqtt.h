/* cw_mqtt.h - a small MQTT client on paho.mqtt.c's async API (MQTT 5).
 *
 * Shared by the device (src/cloudsync) and the cloud (src/cloud): connect in
 * the background and reconnect forever (1 s .. 60 s), persistent session
 * (clean start off, session kept for session_expiry_s), Last Will, QoS 1,
 * subscriptions remembered and renewed on every connect. The broker's
 * refusals (ACL: "not authorized") come back as CW_ERR_AUTH when the caller
 * waits for the answer. Callbacks run on paho's thread: keep them short.
 * Passwords are never logged. */
#ifndef CW_MQTT_H
#define CW_MQTT_H

#include <stdbool.h>
#include <stddef.h>

#define CW_MQTT_TOPIC_MAX 256
#define CW_MQTT_SUBS_MAX 8

struct cw_mqtt_config {
	char host[256];
	int port;              /* default 1883, 8883 with tls */
	bool tls;
	char ca_file[512];     /* "" = system CAs (tls only) */
	char client_id[64];    /* required: the persistent session is keyed by it */
	char username[64];     /* "" = none */
	char password[128];
	char will_topic[CW_MQTT_TOPIC_MAX]; /* "" = no Last Will */
	char will_payload[256];
	bool will_retained;
	int keepalive_s;       /* default 30 */
	int session_expiry_s;  /* 0 = the default, 604800 (7 days); -1 = the session ends at disconnect */
};

/* payload is not NUL-terminated; valid during the call only */
typedef void (*cw_mqtt_msg_fn)(void *ctx, const char *topic, const void *payload, size_t len);
/* connected = true after every (re)connect, false when the link is lost */
typedef void (*cw_mqtt_state_fn)(void *ctx, bool connected);

struct cw_mqtt;

int cw_mqtt_new(const struct cw_mqtt_config *cfg, cw_mqtt_msg_fn on_msg, cw_mqtt_state_fn on_state,
		void *ctx, struct cw_mqtt **out);
/* Remembers a subscription (QoS 0..1), renewed on every connect. If connected
 * and timeout_ms > 0, subscribes now and waits for the broker's answer:
 * CW_ERR_AUTH = refused (not authorised), CW_ERR_TIMEOUT, CW_ERR_OFFLINE. */
int cw_mqtt_subscribe(struct cw_mqtt *m, const char *filter, int qos, int timeout_ms);
/* Starts connecting in the background. */
int cw_mqtt_start(struct cw_mqtt *m);
bool cw_mqtt_connected(struct cw_mqtt *m);
/* Waits up to timeout_ms for a connection: CW_OK, CW_ERR_TIMEOUT, or
 * CW_ERR_AUTH when the broker refused the credentials. */
int cw_mqtt_wait_connected(struct cw_mqtt *m, int timeout_ms);
/* Publishes. Not connected: CW_ERR_OFFLINE (nothing queued: callers that
 * need durability have their own outbox). timeout_ms > 0 waits for the
 * broker's acknowledgement (QoS 1) or refusal (CW_ERR_AUTH). */
int cw_mqtt_publish(struct cw_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
		    bool retained, int timeout_ms);
/* Disconnects (no Last Will: a clean goodbye) and frees. NULL is fine.
 * Waits up to 12 s for a connect in flight, and without a deadline for
 * the callbacks running (warning every 5 s): never call it from one. */
void cw_mqtt_free(struct cw_mqtt *m);

#endif
