/* cw_fake_source.c - see the header. */
#include "cw_fake_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"

void fake_init(struct fake_source *f, int64_t entries, int pad)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	f->last_seq = entries;
	f->pad = pad;
}

void fake_add(struct fake_source *f, int64_t n)
{
	pthread_mutex_lock(&f->mu);
	f->last_seq += n;
	pthread_mutex_unlock(&f->mu);
}

int64_t fake_acked(struct fake_source *f)
{
	int64_t v;

	pthread_mutex_lock(&f->mu);
	v = f->acked;
	pthread_mutex_unlock(&f->mu);
	return v;
}

int fake_commands(struct fake_source *f)
{
	int v;

	pthread_mutex_lock(&f->mu);
	v = f->commands_run;
	pthread_mutex_unlock(&f->mu);
	return v;
}

/* Entry n's payload: {"n": n, "pad": "aaa…"}; the stub checks n and the
 * length, so a mixed-up or truncated payload is seen. */
static char *payload_of(const struct fake_source *f, int64_t seq)
{
	size_t pad = (size_t)f->pad + (size_t)(seq % 97);
	char *p = malloc(pad + 64);

	if (!p)
		return NULL;
	if (f->bad_payload_at_first && seq == f->acked + 1) {
		snprintf(p, pad + 64, "{\"n\": %lld, not json", (long long)seq);
		return p;
	}
	int n = snprintf(p, pad + 64, "{\"n\":%lld,\"pad\":\"", (long long)seq);
	memset(p + n, 'a', pad);
	memcpy(p + n + pad, "\"}", 3);
	return p;
}

static int f_read(void *ctx, int64_t after_seq, int max_entries, size_t max_bytes,
		  cw_sync_entry_fn fn, void *fctx)
{
	struct fake_source *f = ctx;
	int64_t from, last, sent_upto;
	size_t bytes = 0;
	int n = 0, rc = 0;
	char id[40];

	pthread_mutex_lock(&f->mu);
	f->read_calls++;
	from = (after_seq > f->acked ? after_seq : f->acked) + 1;
	last = f->last_seq;
	sent_upto = f->sent_upto;
	pthread_mutex_unlock(&f->mu);
	for (int64_t seq = from; seq <= last && n < max_entries; seq++) {
		char *p = payload_of(f, seq);
		if (!p)
			return CW_ERR_NOMEM;
		if (n > 0 && bytes + strlen(p) > max_bytes) {
			free(p);
			break;
		}
		bytes += strlen(p);
		snprintf(id, sizeof(id), "entity-%lld", (long long)seq);
		struct cw_sync_entry e = {.seq = seq,
					  .kind = "telemetry",
					  .entity_type = "telemetry",
					  .entity_id = id,
					  .payload = p,
					  .created_wall_ms = 1764320000000LL + seq,
					  .clock_trusted = true,
					  .attempts = seq <= sent_upto ? 1 : 0};
		rc = fn(fctx, &e);
		free(p);
		if (rc != 0)
			return rc;
		n++;
	}
	return n;
}

static int f_ack(void *ctx, int64_t upto)
{
	struct fake_source *f = ctx;

	pthread_mutex_lock(&f->mu);
	f->ack_calls++;
	if (upto < f->acked)
		f->ack_regressions++;
	else
		f->acked = upto > f->last_seq ? f->last_seq : upto;
	pthread_mutex_unlock(&f->mu);
	return CW_OK;
}

static int f_sent(void *ctx, int64_t first, int64_t last)
{
	struct fake_source *f = ctx;

	pthread_mutex_lock(&f->mu);
	f->sent_calls++;
	if (first != f->acked + 1 || last < first || last > f->last_seq)
		f->sent_regressions++;
	if (last > f->sent_upto)
		f->sent_upto = last;
	pthread_mutex_unlock(&f->mu);
	return CW_OK;
}

/* attempts are a prefix here (entries <= sent_upto were sent once) */
static int f_unsent(void *ctx, int64_t first, int64_t last)
{
	struct fake_source *f = ctx;

	pthread_mutex_lock(&f->mu);
	f->unsent_calls++;
	if (last >= f->sent_upto && first - 1 < f->sent_upto)
		f->sent_upto = first - 1;
	pthread_mutex_unlock(&f->mu);
	return CW_OK;
}

static int64_t f_depth(void *ctx)
{
	struct fake_source *f = ctx;
	int64_t d;

	pthread_mutex_lock(&f->mu);
	d = f->last_seq - f->acked;
	pthread_mutex_unlock(&f->mu);
	return d;
}

static void f_health(void *ctx, cJSON *obj)
{
	cJSON_AddNumberToObject(obj, "cpu_temp_c", 41.5);
	cJSON_AddNumberToObject(obj, "uptime_s", 1234);
	cJSON_AddBoolToObject(obj, "clock_trusted", true);
	cJSON_AddStringToObject(obj, "fake_marker", "cloudsync-test");
}

static int f_command(void *ctx, const struct cw_sync_command *cmd)
{
	struct fake_source *f = ctx;
	int rc = CW_OK;

	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < f->commands_run && i < FAKE_CMDS_MAX; i++)
		if (strcmp(f->cmd_ids[i], cmd->id) == 0) {
			f->commands_replayed++;
			rc = CW_ERR_CONFLICT;
			goto out;
		}
	if (f->commands_run < FAKE_CMDS_MAX) {
		snprintf(f->cmd_ids[f->commands_run], CW_SYNC_ID_MAX, "%s", cmd->id);
		snprintf(f->cmd_actions[f->commands_run], 64, "%s", cmd->action);
	}
	f->commands_run++;
out:
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static void f_server_time(void *ctx, int64_t wall_ms, int64_t mono_ms)
{
	struct fake_source *f = ctx;

	pthread_mutex_lock(&f->mu);
	f->server_time_calls++;
	f->server_wall_ms = wall_ms;
	pthread_mutex_unlock(&f->mu);
}

struct cw_sync_source fake_table(struct fake_source *f)
{
	return (struct cw_sync_source){.ctx = f,
				       .outbox_read = f_read,
				       .outbox_ack = f_ack,
				       .outbox_sent = f_sent,
				       .outbox_unsent = f_unsent,
				       .outbox_depth = f_depth,
				       .health = f_health,
				       .command = f_command,
				       .server_time = f_server_time};
}
