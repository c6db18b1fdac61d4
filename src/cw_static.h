/* cw_static.h - a directory of web files served by libmicrohttpd: the edge's
 * kiosk page (kiosk.web_root) and the cloud's dashboard (web.dashboard_dir).
 *
 * Every GET or HEAD whose path is not an API route is answered from one
 * directory: "/" is index.html,
 * a path ending in "/" is that directory's index.html. Only plain names are
 * served: segments of [A-Za-z0-9_-] and dots, none starting with '.', no
 * "..", no symbolic link in any component (each opened with O_NOFOLLOW from
 * the directory before it), only regular files of a known
 * extension and at most CW_STATIC_MAX_FILE bytes. */
#ifndef CW_STATIC_H
#define CW_STATIC_H

#include <microhttpd.h>

#define CW_STATIC_MAX_FILE (2 * 1024 * 1024)

/* How one site's files are answered. */
struct cw_static_site {
	const char *root;       /* the directory; NULL or "" = nothing (404) */
	const char *csp;        /* Content-Security-Policy of every answer */
	const char *html_cache; /* Cache-Control of .html files (the rest: no-cache) */
};

/* The response for url (already percent-decoded, no query string) under
 * site->root, with its status in *status: 200 with the file and its
 * Content-Type, or a JSON error {"error": {"code", "message"}} (404 for
 * anything not servable, 500 for a file over the size bound or unreadable).
 * Every response carries site->csp, X-Content-Type-Options: nosniff,
 * X-Frame-Options: DENY and Referrer-Policy: no-referrer. NULL only when
 * out of memory. The caller queues and destroys it. */
struct MHD_Response *cw_static_site_response(const struct cw_static_site *site, const char *url,
					     unsigned *status);

/* The kiosk page's answer: cw_static_site_response with CSP "default-src
 * 'self'; img-src 'self' data:" and .html no-store (the kiosk must never
 * show a stale page after an update). */
struct MHD_Response *cw_static_response(const char *root, const char *url, unsigned *status);

/* The Content-Type for a file name by its extension; NULL: not served. */
const char *cw_static_type(const char *name);

#endif
