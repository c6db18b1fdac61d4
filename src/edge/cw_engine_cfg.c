/* cw_engine_cfg.c - what a configuration from the cloud changes in the
 * running engine (docs/SYNC.md "Down: configuration"): rental rules and
 * revoked customer tokens live; carts and boards are not changed here (the
 * daemon restarts the engine for those, see docs/ARCHITECTURE.md). */
#include <stdlib.h>
#include <string.h>

#include "cw_engine_int.h"
#include "cw_error.h"
#include "cw_log.h"

int cw_engine_apply_config(struct cw_engine *e, int64_t version, const struct cw_rules *rules,
			   const char *const *revoked, int n)
{
	int rc;

	if (!e || !rules || n < 0 || (n > 0 && (!revoked || version < 1)))
		return CW_ERR_INVAL;
	pthread_mutex_lock(&e->mu);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto unlock;
	rc = cw_eq_exec(e, "DELETE FROM revoked_tokens", "");
	for (int i = 0; rc == CW_OK && i < n; i++)
		rc = cw_eq_exec(e, "INSERT OR IGNORE INTO revoked_tokens(jti, config_version) "
				   "VALUES (?, ?)", "ti", revoked[i], version);
	rc = cwe_finish(e, rc);
	if (rc == CW_OK)
		e->rules = *rules; /* under the mutex: every operation reads them under it */
unlock:
	cwe_unlock(e);
	return rc;
}

int cw_engine_token_revoked(struct cw_engine *e, const char *jti, bool *revoked)
{
	int64_t n = 0;
	int rc;

	*revoked = false;
	if (!e || !jti)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&e->mu);
	rc = cw_eq_int(e, &n, "SELECT count(*) FROM revoked_tokens WHERE jti = ?", "t", jti);
	cwe_unlock(e);
	if (rc == CW_OK)
		*revoked = n > 0;
	return rc;
}

int cw_engine_event(struct cw_engine *e, const char *type, cJSON *data)
{
	struct stamp now;
	int rc;

	if (!e || !type) {
		cJSON_Delete(data);
		return CW_ERR_INVAL;
	}
	pthread_mutex_lock(&e->mu);
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK) {
		cJSON_Delete(data);
		goto unlock;
	}
	rc = cwe_finish(e, cwe_telemetry(e, &now, type, NULL, NULL, data));
unlock:
	cwe_unlock(e);
	return rc;
}

bool cw_engine_releasing(struct cw_engine *e)
{
	bool busy = false;

	if (!e)
		return false;
	pthread_mutex_lock(&e->mu);
	for (int i = 0; i < e->nboards && !busy; i++)
		busy = e->boards[i].inflight != 0;
	pthread_mutex_unlock(&e->mu);
	return busy;
}
