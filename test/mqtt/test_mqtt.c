/* Tests of cw_mqtt against the real Mosquitto started by test_mqtt.sh
 * (CW_MQTT_PORT; users cartwise-cloud, dev-a, dev-b; the production ACL of
 * test/mqtt/broker.sh). */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_mqtt.h"

#define CMD_A "cartwise/c1/b1/devices/dev-a/commands"
#define STATUS_A "cartwise/c1/b1/devices/dev-a/status"
#define CMD_B "cartwise/c1/b1/devices/dev-b/commands"
#define STATUS_B "cartwise/c1/b1/devices/dev-b/status"

struct inbox {
	pthread_mutex_t mu;
	int n;
	char topic[CW_MQTT_TOPIC_MAX];
	char payload[256];
	int ups, downs;
};

static void on_msg(void *ctx, const char *topic, const void *payload, size_t len)
{
	struct inbox *in = ctx;

	if (!in)
		return;
	pthread_mutex_lock(&in->mu);
	in->n++;
	snprintf(in->topic, sizeof(in->topic), "%s", topic);
	if (len >= sizeof(in->payload))
		len = sizeof(in->payload) - 1;
	memcpy(in->payload, payload, len);
	in->payload[len] = '\0';
	pthread_mutex_unlock(&in->mu);
}

static void on_state(void *ctx, bool up)
{
	struct inbox *in = ctx;

	if (!in)
		return;
	pthread_mutex_lock(&in->mu);
	if (up)
		in->ups++;
	else
		in->downs++;
	pthread_mutex_unlock(&in->mu);
}

static int inbox_count(struct inbox *in)
{
	int n;

	pthread_mutex_lock(&in->mu);
	n = in->n;
	pthread_mutex_unlock(&in->mu);
	return n;
}

/* waits until the inbox has more than `had` messages */
static bool wait_msg(struct inbox *in, int had, int timeout_ms)
{
	int64_t end = cw_mono_ms() + timeout_ms;

	while (cw_mono_ms() < end) {
		if (inbox_count(in) > had)
			return true;
		usleep(20000);
	}
	return false;
}

static struct cw_mqtt *client(const char *id, const char *user, const char *pass,
			      struct inbox *in)
{
	struct cw_mqtt_config c = {0};
	struct cw_mqtt *m = NULL;

	snprintf(c.host, sizeof(c.host), "127.0.0.1");
	c.port = atoi(getenv("CW_MQTT_PORT"));
	snprintf(c.client_id, sizeof(c.client_id), "%s", id);
	snprintf(c.username, sizeof(c.username), "%s", user);
	snprintf(c.password, sizeof(c.password), "%s", pass);
	c.session_expiry_s = 600;
	if (in)
		pthread_mutex_init(&in->mu, NULL);
	ck_assert_int_eq(cw_mqtt_new(&c, on_msg, on_state, in, &m), CW_OK);
	return m;
}

static struct cw_mqtt *connected(const char *id, const char *user, const char *pass,
				 struct inbox *in)
{
	struct cw_mqtt *m = client(id, user, pass, in);

	ck_assert_int_eq(cw_mqtt_start(m), CW_OK);
	ck_assert_int_eq(cw_mqtt_wait_connected(m, 5000), CW_OK);
	return m;
}

START_TEST(credentials)
{
	struct cw_mqtt *good = connected("t-good", "dev-a", "pass-a-0123", NULL);
	struct cw_mqtt *bad = client("t-bad", "dev-a", "wrong password", NULL);

	ck_assert(cw_mqtt_connected(good));
	ck_assert_int_eq(cw_mqtt_start(bad), CW_OK);
	ck_assert_int_eq(cw_mqtt_wait_connected(bad, 5000), CW_ERR_AUTH);
	ck_assert(!cw_mqtt_connected(bad));
	cw_mqtt_free(bad);
	cw_mqtt_free(good);
}
END_TEST

START_TEST(acl_own_topics_only)
{
	struct inbox in = {0};
	struct cw_mqtt *a = connected("dev-a", "dev-a", "pass-a-0123", &in);

	ck_assert_int_eq(cw_mqtt_subscribe(a, CMD_A, 1, 3000), CW_OK);
	ck_assert_int_eq(cw_mqtt_publish(a, STATUS_A, "{}", 2, 1, false, 3000), CW_OK);
	ck_assert_int_eq(cw_mqtt_publish(a, STATUS_B, "{}", 2, 1, false, 3000), CW_ERR_AUTH);
	/* its own commands topic is read-only for the device */
	ck_assert_int_eq(cw_mqtt_publish(a, CMD_A, "{}", 2, 1, false, 3000), CW_ERR_AUTH);
	cw_mqtt_free(a);
}
END_TEST

/* Mosquitto's file ACL (2.0) answers a SUBSCRIBE to a foreign topic with
 * success but never delivers that topic's messages (the read check is at
 * delivery): what matters is that dev-a never sees dev-b's commands. */
START_TEST(acl_foreign_commands_never_delivered)
{
	struct inbox ina = {0}, inb = {0};
	struct cw_mqtt *cloud = connected("cloud-4", "cartwise-cloud", "cloud-pass-0123", NULL);
	struct cw_mqtt *a = connected("dev-a-spy", "dev-a", "pass-a-0123", &ina);
	struct cw_mqtt *b = connected("dev-b", "dev-b", "pass-b-0123", &inb);
	int rc;

	rc = cw_mqtt_subscribe(a, CMD_B, 1, 3000);
	ck_assert(rc == CW_OK || rc == CW_ERR_AUTH);
	rc = cw_mqtt_subscribe(a, "cartwise/#", 1, 3000);
	ck_assert(rc == CW_OK || rc == CW_ERR_AUTH);
	ck_assert_int_eq(cw_mqtt_subscribe(b, CMD_B, 1, 3000), CW_OK);
	ck_assert_int_eq(cw_mqtt_publish(cloud, CMD_B, "{\"n\":9}", 7, 1, false, 3000), CW_OK);
	ck_assert(wait_msg(&inb, 0, 3000));
	ck_assert_str_eq(inb.payload, "{\"n\":9}");
	usleep(500000);
	ck_assert_int_eq(inbox_count(&ina), 0);
	cw_mqtt_free(b);
	cw_mqtt_free(a);
	cw_mqtt_free(cloud);
}
END_TEST

START_TEST(delivery_and_offline_queue)
{
	struct inbox in = {0};
	struct cw_mqtt *cloud = connected("cloud-1", "cartwise-cloud", "cloud-pass-0123", NULL);
	struct cw_mqtt *a = connected("dev-a", "dev-a", "pass-a-0123", &in);
	int had;

	ck_assert_int_eq(cw_mqtt_subscribe(a, CMD_A, 1, 3000), CW_OK);
	ck_assert_int_eq(cw_mqtt_publish(cloud, CMD_A, "{\"n\":1}", 7, 1, false, 3000), CW_OK);
	ck_assert(wait_msg(&in, 0, 3000));
	ck_assert_str_eq(in.topic, CMD_A);
	ck_assert_str_eq(in.payload, "{\"n\":1}");

	/* the device goes away cleanly; its session (subscription and QoS 1
	 * queue) stays on the broker */
	cw_mqtt_free(a);
	ck_assert_int_eq(cw_mqtt_publish(cloud, CMD_A, "{\"n\":2}", 7, 1, false, 3000), CW_OK);
	memset(&in, 0, sizeof(in));
	a = client("dev-a", "dev-a", "pass-a-0123", &in);
	had = inbox_count(&in);
	ck_assert_int_eq(cw_mqtt_start(a), CW_OK);
	ck_assert_int_eq(cw_mqtt_wait_connected(a, 5000), CW_OK);
	ck_assert_msg(wait_msg(&in, had, 3000), "the message sent while offline was not delivered");
	ck_assert_str_eq(in.payload, "{\"n\":2}");
	cw_mqtt_free(a);
	cw_mqtt_free(cloud);
}
END_TEST

START_TEST(last_will)
{
	struct inbox in = {0};
	struct cw_mqtt *cloud;
	int go[2], st;
	char b = 0;
	pid_t pid;

	/* the device is a child process, forked before this process starts
	 * paho's threads; it connects with a Last Will, waits for "go", and dies
	 * without DISCONNECT, like a crashed device */
	ck_assert_int_eq(pipe(go), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cw_mqtt_config c = {0};
		struct cw_mqtt *a = NULL;
		close(go[1]);
		snprintf(c.host, sizeof(c.host), "127.0.0.1");
		c.port = atoi(getenv("CW_MQTT_PORT"));
		snprintf(c.client_id, sizeof(c.client_id), "dev-b");
		snprintf(c.username, sizeof(c.username), "dev-b");
		snprintf(c.password, sizeof(c.password), "pass-b-0123");
		snprintf(c.will_topic, sizeof(c.will_topic), STATUS_B);
		snprintf(c.will_payload, sizeof(c.will_payload), "{\"status\":\"offline\"}");
		if (cw_mqtt_new(&c, NULL, NULL, NULL, &a) || cw_mqtt_start(a) ||
		    cw_mqtt_wait_connected(a, 5000))
			_exit(2);
		if (read(go[0], &b, 1) != 1)
			_exit(3);
		_exit(0);
	}
	close(go[0]);
	cloud = connected("cloud-2", "cartwise-cloud", "cloud-pass-0123", &in);
	ck_assert_int_eq(cw_mqtt_subscribe(cloud, "cartwise/+/+/devices/+/status", 1, 3000), CW_OK);
	ck_assert_int_eq(inbox_count(&in), 0);
	ck_assert_int_eq(write(go[1], &b, 1), 1);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	ck_assert_msg(wait_msg(&in, 0, 5000), "no Last Will after the device died");
	ck_assert_str_eq(in.topic, STATUS_B);
	ck_assert_str_eq(in.payload, "{\"status\":\"offline\"}");
	close(go[1]);
	cw_mqtt_free(cloud);
}
END_TEST

static void broker_restart(void)
{
	FILE *f = fopen(getenv("CW_MQTT_PIDFILE"), "r");
	char cmd[1024];
	int pid = 0;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%d", &pid), 1);
	fclose(f);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
		usleep(50000);
	ck_assert_int_ne(kill(pid, 0), 0);
	usleep(1500000); /* down for a while: the client must retry */
	snprintf(cmd, sizeof(cmd), "mosquitto -d -c '%s'", getenv("CW_MQTT_CONF"));
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(reconnects_after_broker_restart)
{
	struct inbox in = {0};
	struct cw_mqtt *a = connected("dev-a-r", "dev-a", "pass-a-0123", &in);
	struct cw_mqtt *cloud;
	int64_t end;
	int ups = 0, downs = 0;

	ck_assert_int_eq(cw_mqtt_subscribe(a, CMD_A, 1, 3000), CW_OK);
	broker_restart();
	/* it noticed the loss and came back by itself */
	/* (the state callback runs a moment after cw_mqtt_connected turns
	 * true: wait for both, or a busy machine sees ups == 1) */
	end = cw_mono_ms() + 15000;
	while (cw_mono_ms() < end) {
		pthread_mutex_lock(&in.mu);
		ups = in.ups;
		downs = in.downs;
		pthread_mutex_unlock(&in.mu);
		if (downs >= 1 && ups >= 2 && cw_mqtt_connected(a))
			break;
		usleep(50000);
	}
	ck_assert_int_ge(downs, 1);
	ck_assert_int_ge(ups, 2);
	ck_assert_int_eq(cw_mqtt_wait_connected(a, 1), CW_OK);
	/* and its subscription was renewed (the broker kept no session) */
	cloud = connected("cloud-3", "cartwise-cloud", "cloud-pass-0123", NULL);
	usleep(300000);
	ck_assert_int_eq(cw_mqtt_publish(cloud, CMD_A, "{\"n\":3}", 7, 1, false, 3000), CW_OK);
	ck_assert(wait_msg(&in, 0, 3000));
	ck_assert_str_eq(in.payload, "{\"n\":3}");
	ck_assert_int_eq(cw_mqtt_publish(cloud, STATUS_A, "x", 1, 1, false, 3000), CW_OK);
	cw_mqtt_free(cloud);
	cw_mqtt_free(a);
}
END_TEST

START_TEST(bad_arguments)
{
	struct cw_mqtt_config c = {0};
	struct cw_mqtt *m = NULL;
	char big[CW_MQTT_TOPIC_MAX + 8];

	ck_assert_int_eq(cw_mqtt_new(&c, NULL, NULL, NULL, &m), CW_ERR_INVAL); /* no host */
	snprintf(c.host, sizeof(c.host), "127.0.0.1");
	ck_assert_int_eq(cw_mqtt_new(&c, NULL, NULL, NULL, &m), CW_ERR_INVAL); /* no client id */
	snprintf(c.client_id, sizeof(c.client_id), "x");
	c.port = 1; /* nothing listens: never connects */
	ck_assert_int_eq(cw_mqtt_new(&c, NULL, NULL, NULL, &m), CW_OK);
	ck_assert_int_eq(cw_mqtt_publish(m, "a/b", "x", 1, 1, false, 100), CW_ERR_OFFLINE);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(cw_mqtt_publish(m, big, "x", 1, 1, false, 0), CW_ERR_INVAL);
	ck_assert_int_eq(cw_mqtt_subscribe(m, big, 1, 0), CW_ERR_INVAL);
	ck_assert_int_eq(cw_mqtt_subscribe(m, "a/b", 2, 0), CW_ERR_INVAL);
	/* a filter is remembered once: retrying never fills the table */
	for (int i = 0; i < 3 * CW_MQTT_SUBS_MAX; i++)
		ck_assert_int_eq(cw_mqtt_subscribe(m, "a/b", 1, 0), CW_OK);
	ck_assert_int_eq(cw_mqtt_subscribe(m, "a/c", 1, 0), CW_OK);
	ck_assert_int_eq(cw_mqtt_start(m), CW_OK);
	ck_assert_int_eq(cw_mqtt_wait_connected(m, 300), CW_ERR_TIMEOUT);
	cw_mqtt_free(m); /* stops promptly while retrying */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mqtt");
	TCase *tc = tcase_create("broker");
	SRunner *sr;
	int failed;

	if (!getenv("CW_MQTT_PORT")) {
		fprintf(stderr, "run through test_mqtt.sh (needs a broker)\n");
		return 1;
	}
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, credentials);
	tcase_add_test(tc, acl_own_topics_only);
	tcase_add_test(tc, acl_foreign_commands_never_delivered);
	tcase_add_test(tc, delivery_and_offline_queue);
	tcase_add_test(tc, last_will);
	tcase_add_test(tc, reconnects_after_broker_restart);
	tcase_add_test(tc, bad_arguments);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
