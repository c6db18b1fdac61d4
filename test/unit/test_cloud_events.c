/* Tests of the live event hub (cw_cloud_events) without HTTP: streams not
 * bound to a connection, read with cw_events_read. Hello first; changes of
 * the stream's branch only, coalesced into one event; forwarding to other
 * instances and what comes back from them; the cap; the keepalive and its
 * check; shutdown. The MHD side (suspend/resume) runs in
 * test/cloud/cloud_events.sh against the real server. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cw_cloud_events.h"
#include "cw_error.h"

#define BR_A "0192f0c4-7a10-7c3e-9f00-0a1b2c3d4e5f"
#define BR_B "0192f0c4-7a10-7c3e-9f00-0a1b2c3d4e60"

static char fwd[8][CW_EVENTS_PAYLOAD_MAX];
static int nfwd;

static void forward(void *ctx, const char *payload)
{
	(void)ctx;
	if (nfwd < 8)
		snprintf(fwd[nfwd++], sizeof(fwd[0]), "%s", payload);
}

static struct cw_events *hub(int max, int keepalive_ms)
{
	struct cw_events_params p = {.max_streams = max, .keepalive_ms = keepalive_ms,
				     .forward = forward};
	struct cw_events *h = NULL;

	nfwd = 0;
	ck_assert_int_eq(cw_events_new(&p, &h), CW_OK);
	return h;
}

/* The next event's text ("" when nothing is due; "END" when it ended). */
static const char *next(struct cw_event_stream *st)
{
	static char buf[512];
	ssize_t n = cw_events_read(st, buf, sizeof(buf) - 1);

	if (n < 0)
		return "END";
	buf[n] = '\0';
	return buf;
}

static struct cw_event_stream *open_stream(struct cw_events *h, const char *branch)
{
	struct cw_event_stream *st = NULL;

	ck_assert_int_eq(cw_events_open(h, branch, NULL, NULL, NULL, &st), CW_OK);
	return st;
}

START_TEST(hello_then_coalesced_changes)
{
	struct cw_events *h = hub(4, 0);
	struct cw_event_stream *a = open_stream(h, BR_A), *b = open_stream(h, BR_B);

	ck_assert_str_eq(next(a), "event: hello\ndata: {\"branch_id\":\"" BR_A "\"}\n\n");
	ck_assert_str_eq(next(a), "");
	ck_assert_str_eq(next(b), "event: hello\ndata: {\"branch_id\":\"" BR_B "\"}\n\n");
	/* three publishes before the reader runs: one event, kinds in bit order */
	cw_events_publish(h, BR_A, CW_EVENT_RENTALS);
	cw_events_publish(h, BR_A, CW_EVENT_CARTS);
	cw_events_publish(h, BR_A, CW_EVENT_RENTALS | CW_EVENT_TELEMETRY);
	ck_assert_str_eq(next(a), "event: change\ndata: {\"kinds\":[\"carts\",\"rentals\","
				  "\"telemetry\"]}\n\n");
	ck_assert_str_eq(next(a), "");
	/* another branch's change never reaches b's neighbour, and vice versa */
	ck_assert_str_eq(next(b), "");
	cw_events_publish(h, BR_B, CW_EVENT_DEVICES);
	ck_assert_str_eq(next(a), "");
	ck_assert_str_eq(next(b), "event: change\ndata: {\"kinds\":[\"devices\"]}\n\n");
	/* no kind: nothing */
	cw_events_publish(h, BR_A, 0);
	ck_assert_str_eq(next(a), "");
	cw_events_close(a);
	cw_events_close(b);
	ck_assert_int_eq(cw_events_count(h), 0);
	cw_events_free(h);
}
END_TEST

START_TEST(small_reads_drain_one_event)
{
	struct cw_events *h = hub(1, 0);
	struct cw_event_stream *a = open_stream(h, BR_A);
	char out[256] = "", buf[8];
	ssize_t n;

	next(a); /* hello */
	cw_events_publish(h, BR_A, CW_EVENT_COMMANDS);
	while ((n = cw_events_read(a, buf, 7)) > 0)
		strncat(out, buf, (size_t)n);
	ck_assert_str_eq(out, "event: change\ndata: {\"kinds\":[\"commands\"]}\n\n");
	cw_events_close(a);
	cw_events_free(h);
}
END_TEST

START_TEST(forward_and_remote)
{
	struct cw_events *h = hub(4, 0);
	struct cw_event_stream *a = open_stream(h, BR_A), *b = open_stream(h, BR_B);

	next(a);
	next(b);
	/* a local publish is forwarded as "<branch>:<kinds>" */
	cw_events_publish(h, BR_A, CW_EVENT_CARTS | CW_EVENT_COMMANDS);
	ck_assert_int_eq(nfwd, 1);
	ck_assert_str_eq(fwd[0], BR_A ":carts,commands");
	next(a);
	/* what comes back from another instance is delivered, not forwarded */
	cw_events_remote(h, BR_B ":rentals,telemetry,unknown-kind");
	ck_assert_int_eq(nfwd, 1);
	ck_assert_str_eq(next(a), "");
	ck_assert_str_eq(next(b), "event: change\ndata: {\"kinds\":[\"rentals\",\"telemetry\"]}\n\n");
	/* garbage is ignored */
	cw_events_remote(h, "nonsense");
	cw_events_remote(h, "short:carts");
	ck_assert_str_eq(next(a), "");
	ck_assert_str_eq(next(b), "");
	/* the link to the others came back: everyone refreshes everything */
	cw_events_remote(h, NULL);
	ck_assert_str_eq(next(a), "event: change\ndata: {\"kinds\":[\"carts\",\"rentals\","
				  "\"devices\",\"commands\",\"telemetry\"]}\n\n");
	ck_assert_str_eq(next(b), "event: change\ndata: {\"kinds\":[\"carts\",\"rentals\","
				  "\"devices\",\"commands\",\"telemetry\"]}\n\n");
	cw_events_close(a);
	cw_events_close(b);
	cw_events_free(h);
}
END_TEST

START_TEST(kinds_text_and_parse)
{
	char buf[64];

	ck_assert_uint_eq(cw_events_kinds_text(CW_EVENT_ALL, buf, sizeof(buf)),
			  strlen("carts,rentals,devices,commands,telemetry"));
	ck_assert_str_eq(buf, "carts,rentals,devices,commands,telemetry");
	ck_assert_uint_eq(cw_events_kinds_parse(buf), CW_EVENT_ALL);
	ck_assert_uint_eq(cw_events_kinds_text(0, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");
	ck_assert_uint_eq(cw_events_kinds_parse("devices,,x,carts"),
			  CW_EVENT_DEVICES | CW_EVENT_CARTS);
	ck_assert_uint_eq(cw_events_kinds_parse(""), 0);
}
END_TEST

START_TEST(cap_and_shutdown)
{
	struct cw_events *h = hub(2, 0);
	struct cw_event_stream *a = open_stream(h, BR_A), *b = open_stream(h, BR_A), *c = NULL;

	ck_assert_int_eq(cw_events_open(h, BR_A, NULL, NULL, NULL, &c), CW_ERR_LIMIT);
	ck_assert_ptr_null(c);
	cw_events_close(b);
	b = open_stream(h, BR_B); /* a place came free */
	ck_assert_int_eq(cw_events_count(h), 2);
	next(a);
	/* shutdown: every stream ends, no new one opens; it waits for the
	 * streams to be freed (here: nobody frees them, so it gives up) */
	cw_events_shutdown(h, 50);
	ck_assert_str_eq(next(a), "END");
	ck_assert_str_eq(next(b), "END");
	ck_assert_int_eq(cw_events_open(h, BR_A, NULL, NULL, NULL, &c), CW_ERR_STATE);
	cw_events_close(a);
	cw_events_close(b);
	cw_events_free(h);
	/* a cap of 0: no stream at all */
	h = hub(0, 0);
	ck_assert_int_eq(cw_events_open(h, BR_A, NULL, NULL, NULL, &c), CW_ERR_LIMIT);
	cw_events_free(h);
}
END_TEST

static int checks;
static bool check_ok;

static bool check(void *ctx)
{
	(void)ctx;
	checks++;
	return check_ok;
}

START_TEST(keepalive_runs_the_check)
{
	/* only reads right after an event expect "nothing yet": no assertion
	 * depends on a sleep being short (a loaded machine oversleeps) */
	struct cw_events *h = hub(2, 400);
	struct cw_event_stream *a = NULL, *b = NULL, *x = NULL;
	int *ctx = malloc(sizeof(*ctx)); /* freed with the stream (ASan sees a leak otherwise) */

	checks = 0;
	check_ok = true;
	ck_assert_int_eq(cw_events_open(h, BR_A, check, ctx, free, &a), CW_OK);
	next(a);
	ck_assert_str_eq(next(a), "");
	ck_assert_int_eq(checks, 0);
	usleep(450 * 1000);
	ck_assert_str_eq(next(a), ": keepalive\n\n");
	ck_assert_int_eq(checks, 1);
	ck_assert_str_eq(next(a), "");
	/* a change resets the keepalive's clock */
	cw_events_publish(h, BR_A, CW_EVENT_CARTS);
	ck_assert_str_eq(next(a), "event: change\ndata: {\"kinds\":[\"carts\"]}\n\n");
	ck_assert_str_eq(next(a), "");
	ck_assert_int_eq(checks, 1);
	/* the token expired (or the user lost access): the stream ends */
	check_ok = false;
	usleep(450 * 1000);
	ck_assert_str_eq(next(a), "END");
	ck_assert_int_eq(checks, 2);
	ck_assert_str_eq(next(a), "END");
	cw_events_close(a);
	/* a failed open frees the check's context too */
	ck_assert_int_eq(cw_events_open(h, BR_A, check, malloc(8), free, &a), CW_OK);
	ck_assert_int_eq(cw_events_open(h, BR_A, check, malloc(8), free, &b), CW_OK);
	ck_assert_int_eq(cw_events_open(h, BR_A, check, malloc(8), free, &x), CW_ERR_LIMIT);
	cw_events_shutdown(h, 10);
	cw_events_close(a);
	cw_events_close(b);
	cw_events_free(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cloud_events");
	TCase *tc = tcase_create("hub");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, hello_then_coalesced_changes);
	tcase_add_test(tc, small_reads_drain_one_event);
	tcase_add_test(tc, forward_and_remote);
	tcase_add_test(tc, kinds_text_and_parse);
	tcase_add_test(tc, cap_and_shutdown);
	tcase_add_test(tc, keepalive_runs_the_check);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
