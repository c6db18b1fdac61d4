/* cw_static.h - the kiosk page's files, served by the edge's HTTP API.
 *
 * Every GET or HEAD whose path is not under /api/ is answered from one
 * directory (kiosk.web_root, default CW_KIOSK_WEB_ROOT): "/" is index.html,
 * a path ending in "/" is that directory's index.html. Only plain names are
 * served: segments of [A-Za-z0-9_-] and dots, none starting with '.', no
 * "..", no symbolic link as the last component, only regular files of a known
 * extension and at most CW_STATIC_MAX_FILE bytes. */
#ifndef CW_STATIC_H
#define CW_STATIC_H

#include <microhttpd.h>

#define CW_STATIC_MAX_FILE (2 * 1024 * 1024)

/* The response for url (already percent-decoded, no query string) under
 * root, with its status in *status: 200 with the file and its Content-Type,
 * or a JSON error {"error": {"code", "message"}} (404 for anything not
 * servable, 500 for a file over the size bound or unreadable). Every
 * response carries Content-Security-Policy, X-Content-Type-Options,
 * X-Frame-Options and Referrer-Policy; .html is Cache-Control no-store, the
 * rest no-cache. NULL only when out of memory. The caller queues and
 * destroys it. */
struct MHD_Response *cw_static_response(const char *root, const char *url, unsigned *status);

/* The Content-Type for a file name by its extension; NULL: not served. */
const char *cw_static_type(const char *name);

#endif
