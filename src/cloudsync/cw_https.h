/* cw_https.h - a small HTTPS JSON client on libcurl's easy interface.
 *
 * One struct cw_https per thread (a curl easy handle is not shareable); it
 * is reused for every request so that the connection stays open between
 * exchanges (keep-alive). TLS peer and host verification are always on; a CA
 * file replaces the system's CAs for a private cloud. Plain http:// is
 * refused unless insecure_http (tests only). Redirects are not followed.
 * Bearer tokens and bodies are never logged. */
#ifndef CW_HTTPS_H
#define CW_HTTPS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest response body accepted (a heartbeat with 100 commands is ~50 KiB). */
#define CW_HTTPS_BODY_MAX (1024 * 1024)

struct cw_https_config {
	const char *ca_file;   /* NULL or "" = system CAs */
	bool insecure_http;    /* allow http:// (tests) */
	long connect_timeout_ms; /* 0 = 5000 */
	long total_timeout_ms;   /* 0 = 30000 */
	size_t max_body;         /* 0 = CW_HTTPS_BODY_MAX */
	/* When not NULL and set, a transfer in progress is abandoned (curl's
	 * progress callback, at least once a second; cw_https_abort makes it
	 * immediate) and no new connection is opened. */
	const atomic_bool *cancel;
};

struct cw_https_resp {
	long status;  /* HTTP status, 0 when no answer */
	char *body;   /* NUL-terminated, caller frees with free(); may be NULL */
	size_t len;
	char err[128]; /* why a request failed (libcurl's text; never a secret) */
};

struct cw_https;

/* Copies what it needs from cfg. Calls curl_global_init once per process. */
int cw_https_new(const struct cw_https_config *cfg, struct cw_https **out);
void cw_https_free(struct cw_https *h);

/* method "GET" or "POST"; body may be NULL (no body; POST sends an empty one).
 * bearer may be NULL. Returns CW_OK when an HTTP answer arrived (any status,
 * in resp->status), else CW_ERR_OFFLINE (cannot connect, connection reset or
 * closed), CW_ERR_TIMEOUT, CW_ERR_TOOBIG (body over max_body), CW_ERR_AUTH
 * (TLS certificate not verified), CW_ERR_CONFIG (URL scheme not allowed),
 * CW_ERR_AGAIN (cancelled), CW_ERR_IO (anything else); resp->err says more.
 * Call cw_https_resp_clear on resp afterwards in every case. */
int cw_https_request(struct cw_https *h, const char *method, const char *url, const char *bearer,
		     const char *body, size_t body_len, struct cw_https_resp *resp);
void cw_https_resp_clear(struct cw_https_resp *resp);
/* POST with a body of another Content-Type ("application/x-www-form-urlencoded",
 * at most 100 characters) and "Accept: * / *" (without the spaces); otherwise as
 * cw_https_request. */
int cw_https_post(struct cw_https *h, const char *url, const char *bearer,
		  const char *content_type, const char *body, size_t body_len,
		  struct cw_https_resp *resp);

/* Callable from another thread while a request runs: shuts the request's
 * socket down so that it fails at once (CW_ERR_OFFLINE or, with cancel set,
 * CW_ERR_AGAIN) instead of at curl's next progress check. */
void cw_https_abort(struct cw_https *h);

#endif
