/* cw_api_int.h - internals of the edge's HTTP API shared by its files:
 * cw_api.c (server, routing, staff routes) and cw_api_kiosk.c (the
 * customer kiosk's routes). Not for use outside src/edge/cw_api*.c. */
#ifndef CW_API_INT_H
#define CW_API_INT_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "cw_api.h"
#include "cw_kiosk.h"

#define CW_API_MAX_CONNECTIONS 64
#define CW_API_CONN_TIMEOUT_S 30
#define CW_API_MAX_SEGS 8
#define CW_API_MAX_URL 512
#define CW_API_MAX_NOTE 256
#define CW_API_MAX_PHONE 32
#define CW_API_MAX_CURSOR 128
#define CW_API_HISTORY_DEFAULT 50
#define CW_API_HISTORY_MAX 200 /* the engine clamps to 200 */

struct cw_api {
	struct MHD_Daemon *d;
	struct cw_engine *e;
	struct cw_api_hooks hooks;
	char token[128];
	size_t token_len;
	char branch[64];
	char web_root[512]; /* the kiosk page's files (cw_static) */
	int port;
};

/* Per-request state (MHD's con_cls). */
struct req {
	int64_t t0;
	const struct route *route;
	const char *seg[CW_API_MAX_SEGS];
	char segbuf[CW_API_MAX_URL];
	int nseg;
	char body[CW_API_MAX_BODY + 1];
	size_t len;
	bool too_big;
	bool answered; /* a response was queued on the first call */
	char method[8];
	char logpath[128]; /* the URL path, made safe for the log line */
	/* a customer token accepted for this request (route.customer) */
	bool customer;
	char cust_phone[20];
	char cust_jti[64];
};

typedef enum MHD_Result (*handler_fn)(struct cw_api *a, struct MHD_Connection *c, struct req *r);

/* A route is a pattern of segments; "*" matches any one segment. */
struct route {
	const char *pattern[CW_API_MAX_SEGS];
	const char *method;
	bool is_public;   /* no token needed */
	bool branch;      /* segment 2 is a branch id to check */
	bool customer;    /* a customer token is accepted too (r->customer) */
	handler_fn fn;
	const char *const *query; /* allowed query parameters, NULL = none */
};

/* ---- helpers of cw_api.c used by cw_api_kiosk.c ---- */

int cwa_status_of(int err);
/* Queues body (consumed) with status and one optional extra header, and
 * writes the request's log line. */
enum MHD_Result cwa_send_raw(struct MHD_Connection *c, struct req *r, int status, cJSON *body,
			     const char *hname, const char *hval);
enum MHD_Result cwa_send_json(struct MHD_Connection *c, struct req *r, int status, cJSON *body);
enum MHD_Result cwa_send_err_h(struct MHD_Connection *c, struct req *r, int status, int err,
			       const char *hname, const char *hval, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
#define cwa_send_err(c, r, err, ...)                                                          \
	cwa_send_err_h(c, r, cwa_status_of(err), err, NULL, NULL, __VA_ARGS__)
/* An engine error with a message for people; what names the operation. */
enum MHD_Result cwa_send_engine_err(struct MHD_Connection *c, struct req *r, int err,
				    const char *what);
/* The body as a JSON object with only the allowed keys ({} for an empty
 * body when empty_ok); NULL with a 400 queued (*sent) otherwise. */
cJSON *cwa_body_object(struct MHD_Connection *c, struct req *r, const char *const *allowed,
		       bool empty_ok, enum MHD_Result *sent);
/* Optional string field of at most max bytes: CW_OK (NULL if absent) or
 * CW_ERR_INVAL. */
int cwa_opt_string(const cJSON *obj, const char *key, size_t max, const char **out);

/* 201 body of a rent: {"rental_id","cart_number","expected_return","unlock_latency_ms"}. */
cJSON *cwa_rent_json(const struct cw_rent_result *res);

/* ---- cw_api_kiosk.c ---- */

/* The kiosk's routes (public ones and those taking a customer token). */
extern const struct route cwa_kiosk_routes[];
extern const size_t cwa_kiosk_nroutes;
/* When the Authorization header holds a valid customer token: CW_OK with
 * the phone and token id in r. */
int cwa_customer_auth(struct cw_api *a, struct MHD_Connection *c, struct req *r);
/* POST .../carts/assign with a customer token (the phone is the token's). */
enum MHD_Result cwa_kiosk_assign(struct cw_api *a, struct MHD_Connection *c, struct req *r);
/* 401 {"error": {"code": "unauthorized", "reason": "signin_required"}}. */
enum MHD_Result cwa_kiosk_signin_required(struct MHD_Connection *c, struct req *r);

#endif
