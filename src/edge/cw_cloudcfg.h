/* cw_cloudcfg.h - the configuration the cloud manages for this device
 * (docs/SYNC.md "Down: configuration").
 *
 * The cloud sends versioned sections of the edge configuration: buses,
 * carts, rules (the config file's format) and revoked_tokens (customer token
 * ids the kiosk must refuse). Each section it sends replaces the file's;
 * identity, api, cloud, data_dir and log_level always stay the file's. The
 * merged configuration is validated by the file's own parser
 * (cw_edge_config_parse) and applied all or nothing:
 *   - rules and revoked tokens alone: live, under the engine's lock;
 *   - a change of buses or carts: saved, then applied by a restart of the
 *     engine, buses, API and syncer inside cartwise-edge at a safe point (no
 *     release in flight), see docs/ARCHITECTURE.md;
 *   - invalid: refused, the last good configuration keeps running, a
 *     config.rejected telemetry event goes up, and the version is remembered
 *     so that it is not pulled again.
 * The last accepted version is kept in <data_dir>/cloud-config.json (0600,
 * replaced atomically) and merged over the file at every start.
 *
 * Thread-safe: the syncer's thread offers versions, the main thread starts
 * and restarts, the API thread reads health. */
#ifndef CW_CLOUDCFG_H
#define CW_CLOUDCFG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cw_config.h"
#include "cw_engine.h"

#define CW_CLOUDCFG_FILE "cloud-config.json"
/* revoked token ids in one configuration (the cloud's 64 KiB limit allows
 * about 1600 UUIDs) */
#define CW_CLOUDCFG_REVOKED_MAX 4096
#define CW_CLOUDCFG_ID_MAX 64

struct cw_cloudcfg;

/* config_path: the edge's config file, whose text is the base the cloud's
 * sections are merged over (read now: a later edit of the file counts from
 * the next start). data_dir: where cloud-config.json lives. */
int cw_cloudcfg_new(const char *config_path, const char *data_dir, struct cw_cloudcfg **out);
void cw_cloudcfg_free(struct cw_cloudcfg *c); /* NULL ok */

/* The file's text with the cloud's sections over it, parsed into *out by
 * cw_edge_config_parse. sections must be an object of buses, carts, rules
 * and revoked_tokens only; revoked_tokens is checked here (an array of at
 * most CW_CLOUDCFG_REVOKED_MAX ids of 1-64 [A-Za-z0-9_-]). CW_ERR_CONFIG with
 * a message naming the key ("carts[0].board: no board with address 9 on bus
 * \"bus0\""). No side effects (unit-tested alone). */
int cw_cloudcfg_merge(const char *file_json, size_t len, const cJSON *sections,
		      struct cw_edge_config *out, char *err, size_t errlen);

/* At start, *cfg holding the file's configuration: when cloud-config.json
 * holds a version that still fits the file, *cfg becomes the merged one;
 * otherwise *cfg stays the file's (logged; a file that cannot be read or
 * parsed is an error, CW_ERR_CONFIG with err). */
int cw_cloudcfg_start(struct cw_cloudcfg *c, struct cw_edge_config *cfg, char *err,
		      size_t errlen);

/* The engine now running *running (after every start and restart; NULL
 * before it is stopped). Brings the revoked_tokens table in line with the
 * running version. */
int cw_cloudcfg_attach(struct cw_cloudcfg *c, struct cw_engine *e,
		       const struct cw_edge_config *running);

/* A version pulled from the cloud (the syncer's config_apply). CW_OK:
 * accepted (applied live, or saved for a restart: see cw_cloudcfg_pending);
 * CW_ERR_CONFIG: refused with err, remembered; anything else (the file could
 * not be saved, no engine, a restart under way): nothing changed, try again
 * later. */
int cw_cloudcfg_offer(struct cw_cloudcfg *c, int64_t version, const cJSON *config, char *err,
		      size_t errlen);

/* The version accepted (applied or waiting for a restart) and the last one
 * refused (0 = none): the syncer pulls only a version that is neither. */
void cw_cloudcfg_versions(struct cw_cloudcfg *c, int64_t *have, int64_t *rejected);

/* A saved configuration waiting for a restart: copies it to *out and
 * returns true. From then until cw_cloudcfg_restarted, cw_cloudcfg_offer
 * returns CW_ERR_STATE, so that the version restarted with is the one
 * recorded as running: call it only to restart now (a restart given up
 * before stopping anything calls it again at the next try). */
bool cw_cloudcfg_pending(struct cw_cloudcfg *c, struct cw_edge_config *out);
/* The restart with the pending configuration: ok = it runs now (attach is
 * still called for it); !ok = it could not start (why: the reason), so the
 * previous configuration runs again, and the version counts as refused. */
void cw_cloudcfg_restarted(struct cw_cloudcfg *c, bool ok, const char *why);

/* config_version, config_pending_version, config_rejected_version and
 * config_rejected_message (null when none) into obj. */
void cw_cloudcfg_health(struct cw_cloudcfg *c, cJSON *obj);

#endif
