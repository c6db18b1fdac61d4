/* cw_api.h - the edge's local HTTP API on libmicrohttpd.
 *
 * Shaped like the seed's branch-scoped cloud API so pages and tools can talk
 * to either. Authorised by the local admin token (Authorization: Bearer) until
 * customer sign-in exists. Errors: {"error": {"code": ..., "message": ...}}. */
#ifndef CW_API_H
#define CW_API_H

#include <cjson/cJSON.h>

#include "cw_engine.h"

#define CW_API_MAX_BODY 16384

/* What the API needs from the daemon beyond the engine (buses). */
struct cw_api_hooks {
	/* [{name, port, protocol, boards:[{address, online, locks, counters...}], stats}] */
	cJSON *(*buses_json)(void *ctx);
	/* Scan addresses first..last on the named bus; returns CW_OK and a JSON
	 * array [{address, result: "ok"|"garbled"}] in *out.
	 * first = last = -1: the bus protocol's whole address range.
	 * CW_ERR_NOTFOUND: no such bus; CW_ERR_INVAL: range invalid for it. */
	int (*scan)(void *ctx, const char *bus, int first, int last, cJSON **out);
	/* The cloud link's state for the admin status ({state, device_id,
	 * high_water, last_ok, outbox_depth, ...}); NULL: no cloud configured
	 * (the status says "cloud": null). May be NULL. */
	cJSON *(*cloud_json)(void *ctx);
	/* `cartwisectl enroll`: drop the cloud credentials and register again
	 * with code (NULL: the configured one). CW_ERR_NOTFOUND: no cloud
	 * configured; CW_ERR_CONFIG: no code given and none configured. May be
	 * NULL. */
	int (*cloud_enroll)(void *ctx, const char *code);
	/* Directory of the kiosk page, served for every GET / HEAD outside
	 * /api/ (cw_static.h); NULL: the kiosk's config (kiosk.web_root), and
	 * without a kiosk CW_KIOSK_WEB_ROOT (meson: <datadir>/cartwise/kiosk).
	 * At most 511 bytes. */
	const char *web_root;
	void *ctx;
	/* The customer kiosk (docs/KIOSK.md); NULL: its routes answer 503. */
	struct cw_kiosk *kiosk;
};

struct cw_api;
/* Starts serving on bind_addr:port (port 0 = any free port). */
int cw_api_new(const char *bind_addr, int port, const char *admin_token, struct cw_engine *e,
	       const struct cw_api_hooks *hooks, struct cw_api **out);
int cw_api_port(const struct cw_api *api);
void cw_api_free(struct cw_api *api); /* NULL ok */

#endif
