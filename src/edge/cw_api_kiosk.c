/* cw_api_kiosk.c - the customer kiosk's routes of the edge API
 * (docs/KIOSK.md "API"): sign-in by SMS code or, offline, by a staff PIN;
 * rent with a customer token; the return flow; my rentals.
 *
 * Errors carry a stable "reason" besides the code, which the kiosk page
 * turns into a sentence the customer understands, and where it helps
 * "retry_after_s" (429s also send Retry-After) and "attempts_left".
 * Nothing here logs a phone number, a code or a token. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cw_api_int.h"
#include "cw_clock.h"
#include "cw_error.h"
#include "cw_kiosk.h"
#include "cw_log.h"
#include "cw_uuid.h"

#define MAX_CODE 16
#define MAX_PIN 16
#define ME_HISTORY 20

/* The kiosk's address for the per-kiosk limits: the client's IP. */
static void client_addr(struct MHD_Connection *c, char out[CW_KIOSK_ADDR_MAX])
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(out, CW_KIOSK_ADDR_MAX, "unknown");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
			  CW_KIOSK_ADDR_MAX);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  CW_KIOSK_ADDR_MAX);
}

/* {"error": {"code", "reason", "message", "retry_after_s"?, "attempts_left"?}} */
static enum MHD_Result send_why(struct MHD_Connection *c, struct req *r, int err,
				const char *reason, int retry_after_s, int attempts_left,
				const char *message)
{
	cJSON *root = cJSON_CreateObject(), *e;
	char ra[16];
	int status = err == CW_ERR_LIMIT ? MHD_HTTP_TOO_MANY_REQUESTS : cwa_status_of(err);

	if (root && (e = cJSON_AddObjectToObject(root, "error"))) {
		cJSON_AddStringToObject(e, "code", cw_errname(err));
		cJSON_AddStringToObject(e, "reason", reason ? reason : cw_errname(err));
		cJSON_AddStringToObject(e, "message", message);
		if (retry_after_s >= 0)
			cJSON_AddNumberToObject(e, "retry_after_s", retry_after_s);
		if (attempts_left >= 0)
			cJSON_AddNumberToObject(e, "attempts_left", attempts_left);
	}
	if (retry_after_s >= 0) {
		snprintf(ra, sizeof(ra), "%d", retry_after_s);
		return cwa_send_raw(c, r, status, root, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (status == MHD_HTTP_UNAUTHORIZED)
		return cwa_send_raw(c, r, status, root, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	return cwa_send_raw(c, r, status, root, NULL, NULL);
}

static const char *why_message(const char *reason)
{
	static const struct {
		const char *reason, *text;
	} texts[] = {
		{"invalid_phone", "not a mobile phone number this kiosk accepts"},
		{"too_many_requests", "too many requests; try again later"},
		{"too_many_attempts", "too many wrong tries; try again later"},
		{"sms_unreachable", "the SMS service cannot be reached right now; ask staff for "
				    "the offline sign-in"},
		{"wrong_code", "wrong code"},
		{"code_expired", "no valid code for this phone; ask for a new one"},
		{"wrong_pin", "wrong staff PIN"},
		{"signin_required", "sign in with your phone first"},
	};
	for (size_t i = 0; reason && i < sizeof(texts) / sizeof(texts[0]); i++)
		if (strcmp(texts[i].reason, reason) == 0)
			return texts[i].text;
	return "request refused";
}

static enum MHD_Result send_kiosk_err(struct MHD_Connection *c, struct req *r, int err,
				      const struct cw_kiosk_why *why)
{
	if (!why->reason)
		return cwa_send_engine_err(c, r, err, "kiosk");
	return send_why(c, r, err, why->reason, why->retry_after_s, why->attempts_left,
			why_message(why->reason));
}

enum MHD_Result cwa_kiosk_signin_required(struct MHD_Connection *c, struct req *r)
{
	return send_why(c, r, CW_ERR_AUTH, "signin_required", -1, -1,
			why_message("signin_required"));
}

static enum MHD_Result no_kiosk(struct MHD_Connection *c, struct req *r)
{
	return send_why(c, r, CW_ERR_OFFLINE, "kiosk_off", -1, -1,
			"the kiosk is not running on this device");
}

int cwa_customer_auth(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);

	r->customer = false;
	if (!a->hooks.kiosk || !h || strncasecmp(h, "Bearer ", 7) != 0)
		return CW_ERR_AUTH;
	h += 7;
	while (*h == ' ')
		h++;
	if (cw_kiosk_token_check(a->hooks.kiosk, h, r->cust_phone, r->cust_jti) != CW_OK)
		return CW_ERR_AUTH;
	r->customer = true;
	return CW_OK;
}

/* Required string field of 1..max bytes; NULL when absent or wrong. */
static const char *req_string(const cJSON *body, const char *key, size_t max)
{
	const char *v = NULL;

	if (cwa_opt_string(body, key, max, &v) != CW_OK || !v || !*v)
		return NULL;
	return v;
}

static cJSON *signin_json(const struct cw_kiosk_signin *s)
{
	cJSON *o = cJSON_CreateObject();
	char when[32];

	if (!o)
		return NULL;
	cw_wall_format(s->expires_wall_ms, when);
	cJSON_AddStringToObject(o, "token", s->token);
	cJSON_AddStringToObject(o, "token_type", "Bearer");
	cJSON_AddStringToObject(o, "expires_at", when);
	cJSON_AddStringToObject(o, "phone", s->phone);
	cJSON_AddStringToObject(o, "method", s->method);
	return o;
}

static enum MHD_Result h_info(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	cJSON *o;

	if (!a->hooks.kiosk)
		return no_kiosk(c, r);
	o = cw_kiosk_info_json(a->hooks.kiosk);
	if (!o)
		return cwa_send_engine_err(c, r, CW_ERR_NOMEM, "kiosk info");
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_otp_request(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const char *const keys[] = {"phone", "lang", NULL};
	struct cw_kiosk_why why;
	char phone[CW_PHONE_E164_MAX], addr[CW_KIOSK_ADDR_MAX];
	const char *p, *lang = NULL, *state = "queued";
	enum MHD_Result sent;
	cJSON *body, *o;
	int err;

	if (!a->hooks.kiosk)
		return no_kiosk(c, r);
	if (!(body = cwa_body_object(c, r, keys, false, &sent)))
		return sent;
	p = req_string(body, "phone", CW_PHONE_INPUT_MAX);
	if (!p || cwa_opt_string(body, "lang", 2, &lang) != CW_OK) {
		cJSON_Delete(body);
		return send_why(c, r, CW_ERR_INVAL, p ? "invalid" : "invalid_phone", -1, -1,
				p ? "lang: expected \"he\" or \"en\""
				  : "phone: expected a string of 1-32 characters");
	}
	client_addr(c, addr);
	err = cw_kiosk_otp_request(a->hooks.kiosk, p, lang, addr, phone, &state, &why);
	cJSON_Delete(body);
	if (err)
		return send_kiosk_err(c, r, err, &why);
	o = cJSON_CreateObject();
	if (o) {
		cJSON_AddStringToObject(o, "phone", phone);
		cJSON_AddNumberToObject(o, "expires_in_s",
					cw_kiosk_config(a->hooks.kiosk)->otp_ttl_s);
		cJSON_AddStringToObject(o, "sms", state);
	}
	return cwa_send_json(c, r, MHD_HTTP_ACCEPTED, o);
}

/* A sign-in: {"phone", <secret key>} checked by fn (the code or the staff
 * PIN); a token on success. */
struct signin_kind {
	const char *secret;    /* the body's field */
	size_t secret_max;
	const char *bad_reason; /* the field missing or not a string */
	const char *bad_msg;
	int (*fn)(struct cw_kiosk *k, const char *phone, const char *secret, const char *kiosk_addr,
		  struct cw_kiosk_signin *out, struct cw_kiosk_why *why);
};

static enum MHD_Result signin(struct cw_api *a, struct MHD_Connection *c, struct req *r,
			      const struct signin_kind *kind)
{
	const char *const keys[] = {"phone", kind->secret, NULL};
	struct cw_kiosk_signin s;
	struct cw_kiosk_why why;
	char addr[CW_KIOSK_ADDR_MAX];
	const char *p, *secret;
	enum MHD_Result sent;
	cJSON *body;
	int err;

	if (!a->hooks.kiosk)
		return no_kiosk(c, r);
	if (!(body = cwa_body_object(c, r, keys, false, &sent)))
		return sent;
	p = req_string(body, "phone", CW_PHONE_INPUT_MAX);
	secret = req_string(body, kind->secret, kind->secret_max);
	if (!p || !secret) {
		cJSON_Delete(body);
		return send_why(c, r, CW_ERR_INVAL, p ? kind->bad_reason : "invalid_phone", -1, -1,
				p ? kind->bad_msg : "phone: expected a string of 1-32 characters");
	}
	client_addr(c, addr);
	err = kind->fn(a->hooks.kiosk, p, secret, addr, &s, &why);
	cJSON_Delete(body);
	if (err)
		return send_kiosk_err(c, r, err, &why);
	sent = cwa_send_json(c, r, MHD_HTTP_OK, signin_json(&s));
	free(s.token);
	return sent;
}

static enum MHD_Result h_otp_verify(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const struct signin_kind otp = {"code", MAX_CODE, "wrong_code",
					       "code: expected the 6 digits from the SMS",
					       cw_kiosk_otp_verify};
	return signin(a, c, r, &otp);
}

static enum MHD_Result h_offline(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const struct signin_kind pin = {"staff_pin", MAX_PIN, "wrong_pin",
					       "staff_pin: expected 4-12 digits",
					       cw_kiosk_offline_signin};
	return signin(a, c, r, &pin);
}

enum MHD_Result cwa_kiosk_assign(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const char *const keys[] = {"phone", NULL};
	struct cw_rent_result res;
	char norm[CW_PHONE_E164_MAX], addr[CW_KIOSK_ADDR_MAX];
	const char *p = NULL, *reason = NULL, *msg = NULL;
	enum MHD_Result sent;
	cJSON *body;
	int err;

	if (!(body = cwa_body_object(c, r, keys, true, &sent)))
		return sent;
	/* A phone in the body must be the token's: a token is one customer. */
	if (cwa_opt_string(body, "phone", CW_PHONE_INPUT_MAX, &p) != CW_OK ||
	    (p && (cw_phone_normalize(p, true, norm) != CW_OK || strcmp(norm, r->cust_phone)))) {
		cJSON_Delete(body);
		return send_why(c, r, CW_ERR_AUTH, "signin_required", -1, -1,
				"the phone is not the signed-in customer's");
	}
	cJSON_Delete(body);
	memset(&res, 0, sizeof(res));
	err = cw_engine_rent(a->e, r->cust_phone, &res);
	switch (err) {
	case CW_OK:
		break;
	case CW_ERR_CONFLICT:
		reason = "already_renting";
		msg = "this phone already has a cart out; return it first";
		break;
	case CW_ERR_NOCART:
		reason = "no_cart";
		msg = "no cart is free right now";
		break;
	case CW_ERR_FAULT:
	case CW_ERR_STATE:
		reason = "lock_fault";
		msg = "the lock did not open; no rental was started. Please try again: another "
		      "cart will be offered";
		break;
	case CW_ERR_OFFLINE:
		reason = "board_offline";
		msg = "the cart locks do not answer right now; no rental was started";
		break;
	default:
		return cwa_send_engine_err(c, r, err, "assign");
	}
	if (err)
		return send_why(c, r, err, reason, -1, -1, msg);
	client_addr(c, addr);
	cw_kiosk_audit(a->hooks.kiosk, "rent", r->cust_phone, addr, r->cust_jti, res.rental_id, NULL);
	return cwa_send_json(c, r, MHD_HTTP_CREATED, cwa_rent_json(&res));
}

static enum MHD_Result h_me_rentals(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	cJSON *hist, *rentals, *it, *o, *open, *closed;
	int err = CW_OK;

	if (!r->customer) /* the admin token names no customer */
		return cwa_kiosk_signin_required(c, r);

	hist = cw_engine_rentals_history_json_ex(a->e, ME_HISTORY, NULL, r->cust_phone, &err);
	if (!hist)
		return cwa_send_engine_err(c, r, err ? err : CW_ERR_INTERNAL, "my rentals");
	o = cJSON_CreateObject();
	open = cJSON_AddArrayToObject(o, "open");
	closed = cJSON_AddArrayToObject(o, "history");
	cJSON_AddStringToObject(o, "phone", r->cust_phone);
	rentals = cJSON_DetachItemFromObjectCaseSensitive(hist, "rentals");
	cJSON_Delete(hist);
	while (rentals && (it = cJSON_DetachItemFromArray(rentals, 0))) {
		const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(it, "status"));
		bool is_open = st && (!strcmp(st, "active") || !strcmp(st, "overdue"));
		cJSON_AddItemToArray(is_open ? open : closed, it);
	}
	cJSON_Delete(rentals);
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_return(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const char *const keys[] = {"phone", NULL};
	struct cw_return_result res;
	struct cw_kiosk_why why;
	char phone[CW_PHONE_E164_MAX], addr[CW_KIOSK_ADDR_MAX];
	const char *p;
	enum MHD_Result sent;
	cJSON *body, *o;
	int err;

	if (!a->hooks.kiosk)
		return no_kiosk(c, r);
	if (!(body = cwa_body_object(c, r, keys, false, &sent)))
		return sent;
	p = req_string(body, "phone", CW_PHONE_INPUT_MAX);
	if (!p || cw_phone_normalize(p, cw_kiosk_config(a->hooks.kiosk)->allow_international,
				     phone) != CW_OK) {
		cJSON_Delete(body);
		return send_why(c, r, CW_ERR_INVAL, "invalid_phone", -1, -1,
				why_message("invalid_phone"));
	}
	cJSON_Delete(body);
	client_addr(c, addr);
	if ((err = cw_kiosk_count_kiosk(a->hooks.kiosk, addr, &why)))
		return send_kiosk_err(c, r, err, &why);
	memset(&res, 0, sizeof(res));
	err = cw_engine_return_begin(a->e, phone, &res);
	if (err == CW_ERR_NOTFOUND)
		return send_why(c, r, err, "no_open_rental", -1, -1,
				"this phone has no cart out");
	if (err == CW_ERR_NOCART)
		return send_why(c, r, err, "no_free_slot", -1, -1,
				"no free slot right now; please ask staff");
	if (err)
		return cwa_send_engine_err(c, r, err, "return");
	o = cJSON_CreateObject();
	if (o) {
		cJSON_AddStringToObject(o, "rental_id", res.rental_id);
		cJSON_AddNumberToObject(o, "slot_number", res.slot_number);
	}
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

/* The receipt side of the return flow: what the page polls. No phone. */
static enum MHD_Result h_rental(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const struct {
		const char *from, *to;
	} fields[] = {{"id", "rental_id"},         {"status", "state"},
		      {"cart_number", "cart_number"}, {"start_time", "started_at"},
		      {"actual_return", "ended_at"}, {"duration_s", "duration_s"},
		      {"return_slot", "return_slot"}, {"returned_to", "returned_to"}};
	const char *id = r->seg[3];
	cJSON *full, *o;
	int err = CW_OK;

	if (!cw_uuid_valid(id))
		return cwa_send_err(c, r, CW_ERR_NOTFOUND, "no such rental");
	full = cw_engine_rental_json(a->e, id, &err);
	if (!full && err == CW_ERR_NOTFOUND)
		return cwa_send_err(c, r, CW_ERR_NOTFOUND, "no such rental");
	if (!full)
		return cwa_send_engine_err(c, r, err, "rental");
	o = cJSON_CreateObject();
	for (size_t i = 0; o && i < sizeof(fields) / sizeof(fields[0]); i++) {
		cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(full, fields[i].from);
		cJSON_AddItemToObject(o, fields[i].to, v ? v : cJSON_CreateNull());
	}
	cJSON_Delete(full);
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

const struct route cwa_kiosk_routes[] = {
	{.pattern = {"api", "kiosk", "info"}, .method = "GET", .is_public = true, .fn = h_info},
	{.pattern = {"api", "auth", "otp", "request"},
	 .method = "POST", .is_public = true, .fn = h_otp_request},
	{.pattern = {"api", "auth", "otp", "verify"},
	 .method = "POST", .is_public = true, .fn = h_otp_verify},
	{.pattern = {"api", "auth", "offline"}, .method = "POST", .is_public = true, .fn = h_offline},
	{.pattern = {"api", "kiosk", "return"}, .method = "POST", .is_public = true, .fn = h_return},
	{.pattern = {"api", "kiosk", "rentals", "*"},
	 .method = "GET", .is_public = true, .fn = h_rental},
	{.pattern = {"api", "me", "rentals"}, .method = "GET", .customer = true, .fn = h_me_rentals},
};
const size_t cwa_kiosk_nroutes = sizeof(cwa_kiosk_routes) / sizeof(cwa_kiosk_routes[0]);
