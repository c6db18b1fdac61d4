/* cw_fake_source.h - an in-memory struct cw_sync_source for the cloudsync
 * tests: an outbox of generated entries, a command log, counters. Every
 * function is thread-safe (the syncer calls from its thread, the test reads
 * from another). */
#ifndef CW_FAKE_SOURCE_H
#define CW_FAKE_SOURCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cw_sync.h"

#define FAKE_CMDS_MAX 64

struct fake_source {
	pthread_mutex_t mu;
	int64_t last_seq;  /* entries 1..last_seq exist */
	int64_t acked;     /* entries <= acked are acknowledged */
	int64_t sent_upto; /* entries <= sent_upto were sent before (attempts 1) */
	int64_t sent_calls, sent_regressions; /* outbox_sent calls; ranges not following the acked */
	int64_t unsent_calls;

	int pad;           /* payload padding bytes (entry n: pad + n % 97) */
	bool bad_payload_at_first; /* the first entry's payload is not JSON */
	int64_t ack_calls, read_calls, ack_regressions;
	int commands_run, commands_replayed;
	char cmd_ids[FAKE_CMDS_MAX][CW_SYNC_ID_MAX];
	char cmd_actions[FAKE_CMDS_MAX][64];
	int64_t server_time_calls, server_wall_ms;
};

void fake_init(struct fake_source *f, int64_t entries, int pad);
/* Appends n entries (the edge's engine writing its outbox). */
void fake_add(struct fake_source *f, int64_t n);
/* The table for cw_syncer_new. */
struct cw_sync_source fake_table(struct fake_source *f);
/* Snapshot of a counter under the lock. */
int64_t fake_acked(struct fake_source *f);
int fake_commands(struct fake_source *f);

#endif
