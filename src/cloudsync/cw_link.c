/* cw_link.c - see cw_link.h. */
#include "cw_link.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_mqtt.h"

#define WILL "{\"v\":1,\"status\":\"offline\"}"
/* how long a clean stop waits for the broker to take the offline status */
#define OFFLINE_WAIT_MS 1000

struct cw_link {
	struct cw_mqtt *mqtt;
	cw_link_command_fn on_command;
	cw_link_state_fn on_state;
	void *ctx;
	char device_id[CW_SYNC_ID_MAX];
	char firmware[32];
	char t_status[CW_MQTT_TOPIC_MAX];
	char t_commands[CW_MQTT_TOPIC_MAX];
	char t_telemetry[CW_MQTT_TOPIC_MAX];
};

/* P/status: {"v":1,"status":S,"at":now[,"firmware_version":F]}, retained. */
static int publish_status(struct cw_link *l, const char *status, int timeout_ms)
{
	char at[32], body[192];
	int n;

	cw_wall_format(cw_wall_ms(), at);
	if (l->firmware[0])
		n = snprintf(body, sizeof(body),
			     "{\"v\":1,\"status\":\"%s\",\"at\":\"%s\",\"firmware_version\":\"%s\"}",
			     status, at, l->firmware);
	else
		n = snprintf(body, sizeof(body), "{\"v\":1,\"status\":\"%s\",\"at\":\"%s\"}", status,
			     at);
	if (n < 0 || (size_t)n >= sizeof(body))
		return CW_ERR_TOOBIG;
	return cw_mqtt_publish(l->mqtt, l->t_status, body, (size_t)n, 1, true, timeout_ms);
}

/* paho's thread: publish online (without waiting: this thread delivers
 * the answer) and tell the owner. */
static void on_mqtt_state(void *ctx, bool connected)
{
	struct cw_link *l = ctx;

	if (connected) {
		int rc = publish_status(l, "online", 0);
		if (rc != CW_OK)
			cw_warn("cloud.mqtt_status_failed", "device=%s error=%s", l->device_id,
				cw_errname(rc));
	}
	if (l->on_state)
		l->on_state(l->ctx, connected);
}

/* paho's thread: bound, parse and hand over; never verify or run here. */
static void on_mqtt_msg(void *ctx, const char *topic, const void *payload, size_t len)
{
	struct cw_link *l = ctx;
	cJSON *cmd;

	if (strcmp(topic, l->t_commands) != 0) {
		cw_warn("cloud.mqtt_refused", "reason=unexpected_topic bytes=%zu", len);
		return;
	}
	if (len > CW_LINK_CMD_MAX) {
		cw_warn("cloud.mqtt_refused", "reason=oversize bytes=%zu max=%d", len,
			CW_LINK_CMD_MAX);
		return;
	}
	cmd = cJSON_ParseWithLength(payload, len);
	if (!cJSON_IsObject(cmd)) {
		cw_warn("cloud.mqtt_refused", "reason=%s bytes=%zu",
			cmd ? "not_an_object" : "not_json", len);
		cJSON_Delete(cmd);
		return;
	}
	l->on_command(l->ctx, cmd);
}

static int topic_of(char *out, const char *prefix, const char *leaf)
{
	int n = snprintf(out, CW_MQTT_TOPIC_MAX, "%s/%s", prefix, leaf);

	return n < 0 || n >= CW_MQTT_TOPIC_MAX ? CW_ERR_TOOBIG : CW_OK;
}

int cw_link_new(const struct cw_cred *cred, const char *ca_file, const char *firmware_version,
		cw_link_command_fn on_command, cw_link_state_fn on_state, void *ctx,
		struct cw_link **out)
{
	struct cw_mqtt_config mc = {0};
	struct cw_link *l;
	int rc;

	*out = NULL;
	if (!cred->has_mqtt || !cred->mqtt_username[0] || !on_command)
		return CW_ERR_INVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return CW_ERR_NOMEM;
	l->on_command = on_command;
	l->on_state = on_state;
	l->ctx = ctx;
	snprintf(l->device_id, sizeof(l->device_id), "%s", cred->device_id);
	snprintf(l->firmware, sizeof(l->firmware), "%s", firmware_version ? firmware_version : "");
	/* the firmware version goes into JSON as it is: printable ASCII (the
	 * cloud refuses a status with anything else), no quotes */
	for (char *p = l->firmware; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ||
		    (unsigned char)*p >= 0x7f)
			*p = '_';
	if ((rc = topic_of(l->t_status, cred->mqtt_topic, "status")) != CW_OK ||
	    (rc = topic_of(l->t_commands, cred->mqtt_topic, "commands")) != CW_OK ||
	    (rc = topic_of(l->t_telemetry, cred->mqtt_topic, "telemetry")) != CW_OK)
		goto fail;
	snprintf(mc.host, sizeof(mc.host), "%s", cred->mqtt_broker);
	mc.port = cred->mqtt_port;
	mc.tls = cred->mqtt_tls;
	snprintf(mc.ca_file, sizeof(mc.ca_file), "%s", ca_file ? ca_file : "");
	/* client id = user name = device id (docs/SYNC.md "MQTT"): the broker's
	 * ACL patterns use %u, the persistent session is keyed by the id */
	snprintf(mc.client_id, sizeof(mc.client_id), "%s", cred->device_id);
	snprintf(mc.username, sizeof(mc.username), "%s", cred->mqtt_username);
	snprintf(mc.password, sizeof(mc.password), "%s", cred->mqtt_password);
	snprintf(mc.will_topic, sizeof(mc.will_topic), "%s", l->t_status);
	snprintf(mc.will_payload, sizeof(mc.will_payload), "%s", WILL);
	mc.will_retained = true;
	rc = cw_mqtt_new(&mc, on_mqtt_msg, on_mqtt_state, l, &l->mqtt);
	sodium_memzero(mc.password, sizeof(mc.password));
	if (rc != CW_OK)
		goto fail;
	if ((rc = cw_mqtt_subscribe(l->mqtt, l->t_commands, 1, 0)) != CW_OK ||
	    (rc = cw_mqtt_start(l->mqtt)) != CW_OK)
		goto fail;
	cw_info("cloud.mqtt_start", "device=%s broker=%s port=%d tls=%s", cred->device_id,
		cred->mqtt_broker, mc.port, mc.tls ? "yes" : "no");
	*out = l;
	return CW_OK;
fail:
	cw_mqtt_free(l->mqtt);
	free(l);
	return rc;
}

bool cw_link_connected(struct cw_link *l)
{
	return l && cw_mqtt_connected(l->mqtt);
}

int cw_link_telemetry(struct cw_link *l, const cJSON *health)
{
	char at[32];
	cJSON *o = cJSON_CreateObject(), *h = health ? cJSON_Duplicate(health, 1) : NULL;
	char *body = NULL;
	int rc = CW_ERR_NOMEM;

	if (!cw_link_connected(l)) {
		rc = CW_ERR_OFFLINE;
		goto out;
	}
	if (!o || !h)
		goto out;
	cw_wall_format(cw_wall_ms(), at);
	cJSON_AddNumberToObject(o, "v", 1);
	cJSON_AddStringToObject(o, "at", at);
	if (!cJSON_AddItemToObject(o, "health", h))
		goto out;
	h = NULL;
	body = cJSON_PrintUnformatted(o);
	if (body)
		rc = cw_mqtt_publish(l->mqtt, l->t_telemetry, body, strlen(body), 1, false, 0);
out:
	cJSON_free(body);
	cJSON_Delete(h);
	cJSON_Delete(o);
	return rc;
}

void cw_link_free(struct cw_link *l)
{
	if (!l)
		return;
	/* a clean stop says so; the Last Will covers every other end */
	if (cw_mqtt_connected(l->mqtt)) {
		int rc = publish_status(l, "offline", OFFLINE_WAIT_MS);
		if (rc != CW_OK)
			cw_warn("cloud.mqtt_status_failed", "device=%s status=offline error=%s",
				l->device_id, cw_errname(rc));
	}
	cw_mqtt_free(l->mqtt);
	cw_info("cloud.mqtt_stop", "device=%s", l->device_id);
	free(l);
}
