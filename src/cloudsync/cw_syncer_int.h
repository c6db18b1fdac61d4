/* cw_syncer_int.h - pieces of cw_syncer exposed for its unit tests only. */
#ifndef CW_SYNCER_INT_H
#define CW_SYNCER_INT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "cw_cred.h"
#include "cw_sync.h"

/* Audience and token type of a command token (docs/SYNC.md "Commands"). */
#define CW_SYNC_CMD_AUD "cartwise-device"
#define CW_SYNC_CMD_TYP "command"
/* Clock difference tolerated on "iat" (several cloud instances); "exp" is
 * checked without leeway: a command past its expiry is never run. */
#define CW_SYNC_CMD_LEEWAY_S 5

/* Delay before the next try after the n-th failure in a row (n >= 1): full
 * jitter, uniform in [0, min(cap_ms, base_ms * 2^(n-1))]. */
int64_t cw_sync_backoff_ms(int base_ms, int cap_ms, int n);

/* Verifies one command object of a heartbeat answer ({"id", "token", ...}):
 * the token's Ed25519 signature with the cloud's key, iss (the cloud's
 * issuer), aud, typ, sub = device_id, exp > now_ms, jti = the object's id,
 * act, args (an object; {} when absent). On CW_OK fills *out; out->args
 * points into *claims, which the caller frees with cJSON_Delete; *reason is
 * "ok", or "bad_action" / "bad_args" for a command that passed every check
 * above but whose act is not a string of 1-63 bytes (out->action "") or
 * whose args are not an object (out->args as found): the source records
 * it refused, so that the cloud learns the outcome and a replay is refused.
 * Otherwise CW_ERR_AUTH (or CW_ERR_INVAL for a malformed object) with
 * *reason a static string ("bad_signature", "expired", "wrong_device", ...). */
int cw_sync_verify_command(const struct cw_cred *cred, const cJSON *cmd, int64_t now_ms,
			   struct cw_sync_command *out, cJSON **claims, const char **reason);

#endif
