/* cw_edge_sync.h - the edge's side of the cloud link: the struct
 * cw_sync_source that src/cloudsync's syncer calls (cw_sync.h).
 *
 * The outbox is read and acknowledged on this module's OWN SQLite
 * connection to the edge database (WAL: readers never block the engine's
 * writer, and the engine's mutex is never taken for the outbox), so a rental
 * never waits for the sync. Health and commands go through the engine.
 * Every function is thread-safe (one mutex guards the connection). */
#ifndef CW_EDGE_SYNC_H
#define CW_EDGE_SYNC_H

#include <stdint.h>

#include "cw_cloudcfg.h"
#include "cw_engine.h"
#include "cw_sync.h"

/* Acknowledged outbox entries are kept this long for diagnosis, then
 * deleted (docs/SYNC.md "The edge's sender"). */
#define CW_EDGE_SYNC_KEEP_ACKED_MS (24LL * 3600 * 1000)

struct cw_edge_sync;

/* db_path: the engine's database (already opened and migrated by
 * cw_engine_new); data_dir: the directory whose free space health reports.
 * The engine must outlive the source. */
int cw_edge_sync_new(const char *db_path, const char *data_dir, struct cw_engine *e,
		     struct cw_edge_sync **out);
void cw_edge_sync_free(struct cw_edge_sync *s); /* NULL ok */

/* The configuration the cloud manages (must outlive s): its pull callbacks
 * and health fields. Set before cw_edge_sync_source; without it the source
 * has no configuration pull and health says config_version 0. */
void cw_edge_sync_set_cloudcfg(struct cw_edge_sync *s, struct cw_cloudcfg *c);

/* Fills the callback table for cw_syncer_new (ctx = s). */
void cw_edge_sync_source(struct cw_edge_sync *s, struct cw_sync_source *out);

/* The same operations, callable directly (tests, cartwisectl later). */
int cw_edge_sync_outbox_read(struct cw_edge_sync *s, int64_t after_seq, int max_entries,
			     size_t max_bytes, cw_sync_entry_fn fn, void *fctx);
int cw_edge_sync_outbox_ack(struct cw_edge_sync *s, int64_t upto_seq);
/* attempts + 1 and sent_wall_ms = now for the unacknowledged entries in
 * [first_seq, last_seq], one transaction (the syncer calls it before each
 * POST). */
int cw_edge_sync_outbox_sent(struct cw_edge_sync *s, int64_t first_seq, int64_t last_seq);
/* attempts - 1 (not below 0) for the unacknowledged entries in
 * [first_seq, last_seq]: the cloud skipped them unapplied (cloud_ahead). */
int cw_edge_sync_outbox_unsent(struct cw_edge_sync *s, int64_t first_seq, int64_t last_seq);
int64_t cw_edge_sync_outbox_depth(struct cw_edge_sync *s);
/* Deletes acknowledged entries acknowledged before now_wall_ms minus
 * CW_EDGE_SYNC_KEEP_ACKED_MS (or stamped more than that in the future: a
 * clock that was wrong). Returns the number deleted or a negative error.
 * outbox_ack runs it at most every ten minutes. */
int64_t cw_edge_sync_prune(struct cw_edge_sync *s, int64_t now_wall_ms);
void cw_edge_sync_health(struct cw_edge_sync *s, cJSON *obj);

#endif
