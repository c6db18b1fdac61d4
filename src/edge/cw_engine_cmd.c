/* cw_engine_cmd.c - commands from the cloud, each run at most once
 * (BRIEF.md §5, docs/SYNC.md "Commands").
 *
 * The command id is the primary key of command_log. The row is inserted
 * (state executing) in the same transaction that starts the action, so:
 *  - a second delivery (MQTT and heartbeat) or a replay finds the row and
 *    does nothing (CW_ERR_CONFLICT);
 *  - a crash after that commit leaves the row executing; the next start
 *    reports it failed ("interrupted") and never runs it again: a late or
 *    repeated "unlock" must never release a second cart;
 *  - an outcome that cannot be written is reported failed
 *    ("result_not_recorded") by a smaller transaction, or by the tick;
 *  - a malformed command (signed, for this device) is recorded refused,
 *    so that it is refused again and the cloud learns why;
 *  - a command issued before this database was created is refused: a
 *    replaced database forgot the commands it ran.
 * Every outcome (done, failed, refused, expired) is written with its
 * command.result outbox entry in one transaction. */
#include "cw_engine_int.h"
#include "cw_phone.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_uuid.h"

#define CMD_ID_MAX 63
#define CMD_ARGS_MAX 4096
#define CMD_NOTE_MAX 256
#define CMD_CART_NUMBER_MAX 99999
#define CMD_MSG_MAX 160
#define CW_STR_(x) #x
#define CW_STR(x) CW_STR_(x)

/* The sensed state of a cart as the result of a command reports it. */
#define CART_STATE_JSON                                                                     \
	"json_object('cart_id', c.id, 'cart_number', c.cart_number, 'status', c.status, "     \
	"'board_online', c.board_online, 'cart_present', c.cart_present, "                   \
	"'hook_closed', c.hook_closed, 'is_locked', c.is_locked)"

enum action { A_UNLOCK, A_ASSIGN, A_RETURN, A_MAINT, A_FIRMWARE, A_UNKNOWN };

/* Issue 3's cloud names its cart commands cart_assign / cart_return;
 * docs/SYNC.md wrote cart.assign / cart.return: both are accepted. */
static enum action action_of(const char *a)
{
	if (strcmp(a, "unlock") == 0)
		return A_UNLOCK;
	if (strcmp(a, "cart_assign") == 0 || strcmp(a, "cart.assign") == 0)
		return A_ASSIGN;
	if (strcmp(a, "cart_return") == 0 || strcmp(a, "cart.return") == 0)
		return A_RETURN;
	if (strcmp(a, "set_maintenance") == 0)
		return A_MAINT;
	if (strcmp(a, "firmware_update") == 0)
		return A_FIRMWARE;
	return A_UNKNOWN;
}

static bool word_ok(const char *s, size_t max, bool dots)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		char ch = s[n];
		if (n >= max || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
				  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
				  (dots && ch == '.')))
			return false;
	}
	return n > 0;
}

/* {"error": code, "message": ...}; NULL only when out of memory. */
static cJSON *failure(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cJSON *failure(const char *code, const char *fmt, ...)
{
	cJSON *o = cJSON_CreateObject();
	char msg[CMD_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(o, "error", code);
	cJSON_AddStringToObject(o, "message", msg);
	return o;
}

/* The cart's sensed state as a JSON object (NULL if no such cart). */
static cJSON *cart_state(struct cw_engine *e, const char *cart_id)
{
	sqlite3_stmt *st = NULL;
	cJSON *o = NULL;

	if (cw_eq_prepare(e, &st, "SELECT " CART_STATE_JSON " FROM carts c WHERE c.id = ?", "t",
			  cart_id) != CW_OK)
		return NULL;
	if (cwe_step(e, st) == CW_OK && sqlite3_column_text(st, 0))
		o = cJSON_Parse((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return o;
}

/* Writes the command's outcome and its command.result outbox entry.
 * result is consumed. */
static int log_finish(struct cw_engine *e, const struct stamp *now, const char *id,
		      const char *state, cJSON *result)
{
	/* payload: docs/SYNC.md "What each kind does": a `command` snapshot like
	 * the `rental` and `cart` ones; state is what the cloud records
	 * (succeeded | failed), local_state the edge's own. */
	static const char box[] =
		"INSERT INTO outbox(kind, entity_type, entity_id, payload, created_wall_ms, "
		"clock_trusted) SELECT 'command.result', 'command', l.id, json_object('v', 1, "
		"'event', 'command.result', 'chain_id', ?1, 'branch_id', ?2, 'device_id', ?3, "
		"'at', ?4, 'clock_trusted', json(CASE WHEN ?5 THEN 'true' ELSE 'false' END), "
		"'command', json_object('id', l.id, 'action', l.action, "
		"'state', CASE WHEN l.state = 'done' THEN 'succeeded' ELSE 'failed' END, "
		"'local_state', l.state, 'result', json(coalesce(l.result, '{}')), "
		"'finished_at', ?4)), ?4, ?5 FROM command_log l WHERE l.id = ?6";
	char *txt = NULL;
	int rc;

	if (!result)
		result = cJSON_CreateObject();
	txt = result ? cJSON_PrintUnformatted(result) : NULL;
	cJSON_Delete(result);
	if (!txt)
		return CW_ERR_NOMEM;
	rc = cw_eq_exec(e, "UPDATE command_log SET state = ?, result = ?, updated_wall_ms = ? "
			   "WHERE id = ?", "ttit", state, txt, now->wall, id);
	free(txt);
	if (rc == CW_OK)
		rc = cw_eq_exec(e, box, "tttiit", e->chain_id, e->branch_id, e->device_id, now->wall,
				I64(now->trusted), id);
	if (rc == CW_OK)
		cwe_outbox_written(e);
	return rc;
}

/* log_finish plus the caller's outcome and one log line. */
static int conclude(struct cw_engine *e, const struct stamp *now,
		    const struct cw_engine_command *cmd, const char *state, cJSON *result,
		    struct cw_command_outcome *out)
{
	const char *code = "";
	cJSON *err = cJSON_GetObjectItemCaseSensitive(result, "error");

	if (cJSON_IsString(err))
		code = err->valuestring;
	snprintf(out->state, sizeof(out->state), "%s", state);
	snprintf(out->error, sizeof(out->error), "%s", code);
	if (*code)
		cw_warn("command.result", "command=%s action=%s state=%s error=%s", cmd->id,
			cmd->action, state, code);
	else
		cw_info("command.result", "command=%s action=%s state=%s", cmd->id, cmd->action,
			state);
	return log_finish(e, now, cmd->id, state, result);
}

static int report_unfinished(struct cw_engine *e, const struct stamp *now, const char *id,
			     const char *code, const char *message, const char *release);
#define UNRECORDED_CODE "result_not_recorded"
#define UNRECORDED_MSG                                                                      \
	"the device could not record this command's outcome (database error); it is not run " \
	"again"

/* ---------------------------------------------------------- arguments */

static bool arg_int(const cJSON *args, const char *key, long min, long max, long *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(args, key);
	double v;

	if (!cJSON_IsNumber(it))
		return false;
	v = it->valuedouble;
	/* range first: the cast below is then defined (NaN fails both) */
	if (!(v >= (double)min && v <= (double)max) || v != (double)(long)v)
		return false;
	*out = (long)v;
	return true;
}

/* The cart a command names: cart_id (the id both sides share, checked
 * first) and/or cart_number; both given must name the same cart. Errors:
 * CW_ERR_INVAL, CW_ERR_NOTFOUND (msg says why), CW_ERR_DB. */
static int resolve_cart(struct cw_engine *e, const cJSON *args, struct cart_row *c, char *msg,
			size_t cap)
{
	const cJSON *jid = cJSON_GetObjectItemCaseSensitive(args, "cart_id");
	const cJSON *jn = cJSON_GetObjectItemCaseSensitive(args, "cart_number");
	long number = 0;
	int rc;

	if (jn && !arg_int(args, "cart_number", 1, CMD_CART_NUMBER_MAX, &number)) {
		snprintf(msg, cap, "args.cart_number: expected an integer 1..%d",
			 CMD_CART_NUMBER_MAX);
		return CW_ERR_INVAL;
	}
	if (jid) {
		if (!cJSON_IsString(jid) || !cw_uuid_valid(jid->valuestring)) {
			snprintf(msg, cap, "args.cart_id: expected a UUID");
			return CW_ERR_INVAL;
		}
		rc = cwe_cart_load(e, c, "id = ?1 AND removed = 0", "t", jid->valuestring);
		if (rc == CW_ERR_NOTFOUND)
			snprintf(msg, cap, "no cart with this cart_id on this device");
		if (rc == CW_OK && jn && c->number != number) {
			snprintf(msg, cap, "cart_id is cart %d here, not cart %ld", c->number, number);
			return CW_ERR_INVAL;
		}
		return rc;
	}
	if (!jn) {
		snprintf(msg, cap, "args: cart_number or cart_id is required");
		return CW_ERR_INVAL;
	}
	rc = cwe_cart_load(e, c, "cart_number = ?1 AND removed = 0", "i", I64(number));
	if (rc == CW_ERR_NOTFOUND)
		snprintf(msg, cap, "no cart %ld on this device", number);
	return rc;
}

/* An engine error of an action as the result's error. */
static cJSON *action_failure(int rc, const char *msg)
{
	if (rc == CW_ERR_INVAL)
		return failure("invalid_args", "%s", msg);
	return failure(cw_errname(rc), "%s", msg && *msg ? msg : cw_strerror(rc));
}

/* --------------------------------------------------------- the actions
 * Each runs with the mutex held and the command's transaction open (its
 * row inserted), and returns with the mutex held and no transaction open. */

/* Only the database moves: the action and the outcome commit together;
 * a refused action is rolled back to its savepoint, the outcome kept. */
static int run_db_action(struct cw_engine *e, const struct stamp *now,
			 const struct cw_engine_command *cmd, enum action act,
			 struct cw_command_outcome *out)
{
	const cJSON *args = cmd->args;
	struct cart_row c;
	struct rental_row r;
	struct cw_eboard *b = NULL;
	bool cancelled = false, on = false;
	const char *note = NULL;
	char msg[CMD_MSG_MAX] = "";
	cJSON *res;
	int rc, arc;

	memset(&r, 0, sizeof(r));
	rc = cwe_savepoint(e);
	if (rc != CW_OK)
		return cwe_finish(e, rc);
	arc = resolve_cart(e, args, &c, msg, sizeof(msg));
	if (arc == CW_OK && act == A_MAINT) {
		const cJSON *jon = cJSON_GetObjectItemCaseSensitive(args, "on");
		const cJSON *jnote = cJSON_GetObjectItemCaseSensitive(args, "note");
		if (!cJSON_IsBool(jon)) {
			snprintf(msg, sizeof(msg), "args.on: expected true or false");
			arc = CW_ERR_INVAL;
		} else if (jnote && !cJSON_IsNull(jnote) &&
			   (!cJSON_IsString(jnote) || strlen(jnote->valuestring) > CMD_NOTE_MAX)) {
			snprintf(msg, sizeof(msg), "args.note: expected a string of at most %d bytes",
				 CMD_NOTE_MAX);
			arc = CW_ERR_INVAL;
		} else {
			on = cJSON_IsTrue(jon);
			note = cJSON_IsString(jnote) ? jnote->valuestring : NULL;
			arc = cwe_set_maintenance_tx(e, now, c.number, on, note);
			if (arc == CW_ERR_STATE)
				snprintf(msg, sizeof(msg), "cart %d is %s", c.number,
					 "rented, awaiting a return or moving its lock");
		}
	} else if (arc == CW_OK && act == A_RETURN) {
		/* The cart's open rental: rented from this slot, or sent back to it. */
		arc = cwe_rental_load(e, &r, "(cart_id = ?1 OR return_slot = ?1) AND " OPEN_SQL
					     " ORDER BY start_time DESC LIMIT 1", "t", c.id);
		if (arc == CW_ERR_NOTFOUND)
			snprintf(msg, sizeof(msg), "cart %d has no open rental", c.number);
		if (arc == CW_OK)
			arc = cwe_force_return_tx(e, now, r.id, "cart_return command from the cloud",
						  &cancelled, &b);
		if (arc == CW_ERR_STATE)
			snprintf(msg, sizeof(msg), "the rental's lock is moving; try again");
	}
	rc = cwe_savepoint_end(e, arc);
	if (rc != CW_OK)
		return cwe_finish(e, rc);
	if (arc != CW_OK) {
		rc = conclude(e, now, cmd, "failed", action_failure(arc, msg), out);
		return cwe_finish(e, rc);
	}
	res = cJSON_CreateObject();
	cJSON_AddNumberToObject(res, "cart_number", c.number);
	if (act == A_MAINT) {
		cJSON_AddBoolToObject(res, "maintenance", on);
	} else {
		cJSON_AddStringToObject(res, "rental_id", r.id);
		cJSON_AddStringToObject(res, "closed_as", cancelled ? "cancelled" : "returned");
	}
	cJSON_AddItemToObject(res, "cart", cart_state(e, c.id));
	rc = conclude(e, now, cmd, "done", res, out);
	rc = cwe_finish(e, rc);
	/* as cw_engine_force_return: what that lock did is unknown */
	if (rc == CW_OK && cancelled && b)
		b->need_reconcile = true;
	return rc;
}

/* The outcome's transaction failed after the lock moved (or did not): the
 * row is still executing. A smaller transaction reports it failed
 * (UNRECORDED_CODE, with what the release answered and the cart's last
 * recorded state); when even that fails, the tick tries again. The action
 * itself is never run again. Mutex held, no transaction open. Returns
 * CW_OK when the outcome is recorded. */
static int record_unrecorded(struct cw_engine *e, const struct cw_engine_command *cmd,
			     int hw_rc, struct cw_command_outcome *out)
{
	struct stamp now;
	int rc;

	cw_error("command.unrecorded", "command=%s action=%s release=%s note=\"the outcome's "
		 "transaction failed; reporting the command failed, never run again\"", cmd->id,
		 cmd->action, cw_errname(hw_rc));
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc == CW_OK)
		rc = report_unfinished(e, &now, cmd->id, UNRECORDED_CODE, UNRECORDED_MSG,
				       cw_errname(hw_rc));
	rc = cwe_finish(e, rc);
	if (rc != CW_OK) {
		e->cmd_unrecorded = true;
		return rc;
	}
	snprintf(out->state, sizeof(out->state), "failed");
	snprintf(out->error, sizeof(out->error), UNRECORDED_CODE);
	return CW_OK;
}

/* The lock moves: the command's row (executing) and the start of the
 * action commit first; the lock moves without the mutex; the outcome is a
 * second transaction. A crash in between leaves the row executing. */
static int run_lock_action(struct cw_engine *e, const struct stamp *now,
			   const struct cw_engine_command *cmd, enum action act,
			   struct cw_command_outcome *out)
{
	const cJSON *jphone = cJSON_GetObjectItemCaseSensitive(cmd->args, "phone");
	struct cw_rent_result rent;
	struct cart_row c, picked;
	struct cw_eboard *b;
	struct stamp end;
	char msg[CMD_MSG_MAX] = "";
	int64_t latency = 0;
	uint64_t token = 0;
	bool recheck = false;
	int rc, arc, hw_rc, result;
	cJSON *res;

	memset(&rent, 0, sizeof(rent));
	rc = cwe_savepoint(e);
	if (rc != CW_OK)
		return cwe_finish(e, rc);
	arc = resolve_cart(e, cmd->args, &c, msg, sizeof(msg));
	if (arc == CW_OK && act == A_UNLOCK) {
		arc = cwe_munlock_begin_tx(e, now, &c);
		if (arc == CW_ERR_STATE)
			snprintf(msg, sizeof(msg), "cart %d is rented, awaiting a return or moving its "
				 "lock", c.number);
	} else if (arc == CW_OK) {
		char canon[CW_PHONE_INPUT_MAX + 1];
		/* stored as the kiosk stores it (E.164), so that one customer is
		 * one phone for "one open rental per phone" */
		if (!cJSON_IsString(jphone) || cw_phone_canon(jphone->valuestring, canon) != CW_OK ||
		    !cwe_phone_valid(canon)) {
			snprintf(msg, sizeof(msg), "args.phone: expected an optional '+' and 7-15 digits");
			arc = CW_ERR_INVAL;
		} else {
			arc = cwe_rent_tx(e, now, canon, c.id, &picked, &rent);
			if (arc == CW_ERR_NOCART)
				snprintf(msg, sizeof(msg), "cart %d is not available (state, sensors, "
					 "board offline or its lock moving)", c.number);
			else if (arc == CW_ERR_CONFLICT)
				snprintf(msg, sizeof(msg), "this phone already has an open rental");
			c = picked;
		}
	}
	rc = cwe_savepoint_end(e, arc);
	if (rc != CW_OK)
		return cwe_finish(e, rc);
	if (arc != CW_OK) {
		rc = conclude(e, now, cmd, "failed", action_failure(arc, msg), out);
		return cwe_finish(e, rc);
	}
	rc = cwe_finish(e, CW_OK);
	if (rc != CW_OK)
		return rc; /* nothing committed: the command was not run */
	b = cwe_board_find(e, c.bus, c.board);
	if (b)
		token = cwe_inflight_begin(e, b, c.lock);
	e->cmd_running++; /* its row is executing on purpose until the outcome */
	cwe_unlock(e);

	/* The mutex is not held here: the bus worker reports sensors meanwhile. */
	hw_rc = e->hw.unlock(e->hw.ctx, c.bus, c.board, c.lock, &latency);

	pthread_mutex_lock(&e->mu);
	if (b) {
		cwe_inflight_end(b, c.lock, token);
		if (hw_rc == CW_ERR_OFFLINE)
			b->need_reconcile = true; /* maybe released, unanswered: read it afresh */
	}
	cwe_stamp_now(e, &end);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto unrecorded;
	result = hw_rc;
	if (act == A_UNLOCK)
		rc = cwe_munlock_end_tx(e, &end, &c, hw_rc);
	else
		rc = cwe_rent_end_tx(e, &end, &c, rent.rental_id, hw_rc, latency, &recheck, &result);
	if (rc == CW_OK) {
		if (result == CW_OK) {
			res = cJSON_CreateObject();
			cJSON_AddNumberToObject(res, "cart_number", c.number);
			cJSON_AddNumberToObject(res, "unlock_latency_ms",
						hw_rc == CW_OK ? (double)latency : 0);
			if (act == A_ASSIGN) {
				cJSON_AddStringToObject(res, "rental_id", rent.rental_id);
				cJSON_AddNumberToObject(res, "expected_return_ms",
							(double)rent.expected_return_wall_ms);
			}
		} else {
			res = failure(cw_errname(result), "%s",
				      result == CW_ERR_OFFLINE ? "the board did not answer: the "
								   "release is not confirmed"
				      : result == CW_ERR_STATE ? "the rental was closed while the "
								  "lock moved"
								: "the sensors did not confirm the "
								  "release");
			if (act == A_ASSIGN)
				cJSON_AddStringToObject(res, "rental_id", rent.rental_id);
		}
		cJSON_AddItemToObject(res, "cart", cart_state(e, c.id));
		rc = conclude(e, &end, cmd, result == CW_OK ? "done" : "failed", res, out);
	}
	rc = cwe_finish(e, rc);
	if (b && act == A_ASSIGN && (rc == CW_ERR_DB || recheck))
		b->need_reconcile = true;
unrecorded:
	if (rc != CW_OK)
		rc = record_unrecorded(e, cmd, hw_rc, out);
	e->cmd_running--;
	return rc;
}

/* When this database was created, by a trusted clock (ms), inside the
 * command's transaction (the clock is trusted now). Stored at the first
 * start (cwe_db_created_init); when the clock was not trusted then, it is
 * worked out now -- the monotonic clock since then when the machine has
 * not rebooted, else the time of this boot (created in an earlier one:
 * later than the truth, refuses more, never less), now without a boot
 * clock -- and stored as trusted. */
static int db_created(struct cw_engine *e, const struct stamp *now, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int64_t wall = 0, mono = 0, d, up;
	char boot[40] = "";
	bool trusted = false, same;
	int rc;

	rc = cw_eq_prepare(e, &st, "SELECT json_extract(value, '$.wall_ms'), "
				   "json_extract(value, '$.mono_ms'), json_extract(value, '$.boot'), "
				   "json_extract(value, '$.trusted') FROM settings WHERE key = "
				   "'db_created'", "");
	if (rc == CW_OK && (rc = cwe_step(e, st)) == CW_OK) {
		wall = sqlite3_column_int64(st, 0);
		mono = sqlite3_column_int64(st, 1);
		cwe_col_text(st, 2, boot, sizeof(boot));
		trusted = sqlite3_column_int(st, 3) != 0;
	}
	sqlite3_finalize(st);
	if (rc != CW_OK && rc != CW_ERR_NOTFOUND)
		return rc;
	if (rc == CW_OK && trusted) {
		*out = wall;
		return CW_OK;
	}
	d = cwe_elapsed_ms(e, now, wall, mono, rc == CW_OK ? boot : NULL, false, &same);
	if (same)
		*out = now->wall - d;
	else if (rc == CW_OK && (up = cw_boot_ms()) >= 0)
		*out = now->wall - up;
	else
		*out = now->wall;
	return cw_eq_exec(e, "INSERT OR REPLACE INTO settings(key, value) VALUES ('db_created', "
			     "json_object('wall_ms', ?1, 'mono_ms', ?2, 'boot', ?3, 'trusted', 1))",
			  "iit", *out, now->mono - (same ? d : 0), e->boot);
}

int cw_engine_command(struct cw_engine *e, const struct cw_engine_command *cmd,
		      struct cw_command_outcome *out)
{
	struct cw_command_outcome dummy;
	struct cw_engine_command c;
	struct stamp now;
	enum action act;
	char action[CMD_ID_MAX + 1];
	const char *bad = NULL; /* what is malformed: recorded refused */
	char *args = NULL;
	int64_t known = 0, created = 0;
	int rc;

	if (!out)
		out = &dummy;
	memset(out, 0, sizeof(*out));
	/* Without a usable id nothing can be recorded (the cloud's are UUIDs). */
	if (!e || !cmd || !word_ok(cmd->id, CMD_ID_MAX, false))
		return CW_ERR_INVAL;
	c = *cmd;
	snprintf(action, sizeof(action), "%s",
		 word_ok(cmd->action, CMD_ID_MAX, true) ? cmd->action : "invalid");
	if (!word_ok(cmd->action, CMD_ID_MAX, true))
		bad = "action: expected 1-63 letters, digits, '-', '_' or '.'";
	c.action = action;
	if (cmd->args && !cJSON_IsObject(cmd->args)) {
		bad = bad ? bad : "args: expected an object";
		args = strdup("{}");
	} else {
		args = cmd->args ? cJSON_PrintUnformatted(cmd->args) : strdup("{}");
		if (args && strlen(args) > CMD_ARGS_MAX) {
			free(args);
			args = strdup("{}");
			bad = bad ? bad : "args: longer than " CW_STR(CMD_ARGS_MAX) " bytes";
		}
	}
	if (!args)
		return CW_ERR_NOMEM;
	act = action_of(action);
	pthread_mutex_lock(&e->mu);
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto unlock;
	rc = cw_eq_int(e, &known, "SELECT count(*) FROM command_log WHERE id = ?", "t", c.id);
	if (rc == CW_OK && known > 0)
		rc = CW_ERR_CONFLICT;
	if (rc == CW_OK)
		rc = cw_eq_exec(e,
				"INSERT INTO command_log(id, action, args, issued_wall_ms, "
				"expires_wall_ms, received_wall_ms, received_trusted, state, "
				"updated_wall_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'executing', ?6)",
				"tttiiii", c.id, c.action, args, c.issued_wall_ms, c.expires_wall_ms,
				now.wall, I64(now.trusted));
	/* After the clock check: only a trusted clock tells the creation time. */
	if (rc == CW_OK && !bad && now.trusted)
		rc = db_created(e, &now, &created);
	if (rc != CW_OK) {
		cwe_finish(e, rc);
		if (rc == CW_ERR_CONFLICT)
			cw_info("command.duplicate", "command=%s action=%s note=\"already seen, "
				"not run again\"", c.id, c.action);
		goto unlock;
	}
	if (bad) {
		/* Signed for this device but unusable: recorded, so that a replay
		 * is refused, and reported, so that the cloud learns why. */
		rc = cwe_finish(e, conclude(e, &now, &c, "refused",
					    failure("malformed_command", "%s", bad), out));
	} else if (!now.trusted) {
		/* It cannot tell a late command from a fresh one (docs/SYNC.md). */
		rc = cwe_finish(e, conclude(e, &now, &c, "refused",
					    failure("clock_untrusted", "the device's clock is not "
						    "trusted: it cannot tell whether the command "
						    "expired"), out));
	} else if (c.expires_wall_ms <= 0 || now.wall >= c.expires_wall_ms) {
		rc = cwe_finish(e, conclude(e, &now, &c, "expired",
					    failure("expired", "expired %lld ms ago",
						    (long long)(now.wall - c.expires_wall_ms)),
					    out));
	} else if (c.issued_wall_ms < created / 1000 * 1000) {
		/* iat is in whole seconds. A command issued before this database
		 * existed may have run already in the one it replaced, whose
		 * command_log is gone (docs/RENTALS.md "Commands"). */
		rc = cwe_finish(e, conclude(e, &now, &c, "refused",
					    failure("issued_before_database", "issued %lld s before "
						    "this device's database was created; it may "
						    "have run in the database this one replaced",
						    (long long)((created - c.issued_wall_ms) / 1000)),
					    out));
	} else if (act == A_UNLOCK || act == A_ASSIGN) {
		rc = run_lock_action(e, &now, &c, act, out);
	} else if (act == A_MAINT || act == A_RETURN) {
		rc = run_db_action(e, &now, &c, act, out);
	} else if (act == A_FIRMWARE) {
		rc = cwe_finish(e, conclude(e, &now, &c, "failed",
					    failure("not_supported", "firmware_update is not "
						    "supported on the edge yet"), out));
	} else {
		rc = cwe_finish(e, conclude(e, &now, &c, "failed",
					    failure("unknown_action", "unknown action \"%.40s\"",
						    c.action), out));
	}
unlock:
	cwe_unlock(e);
	free(args);
	return rc;
}

/* Reports one command left executing as failed: code and message, the
 * last recorded state of the cart it named, and release (what the lock's
 * release answered, NULL when unknown). Inside the caller's transaction. */
static int report_unfinished(struct cw_engine *e, const struct stamp *now, const char *id,
			     const char *code, const char *message, const char *release)
{
	sqlite3_stmt *st = NULL;
	char result[1024] = "";
	cJSON *res;
	int rc;

	rc = cw_eq_prepare(
		e, &st,
		"SELECT json_object('error', ?2, 'message', ?3, 'cart', json((SELECT "
		CART_STATE_JSON " FROM carts c WHERE c.id = json_extract(l.args, '$.cart_id') "
		"OR (json_extract(l.args, '$.cart_id') IS NULL AND "
		"c.cart_number = json_extract(l.args, '$.cart_number')) LIMIT 1))) "
		"FROM command_log l WHERE l.id = ?1 AND l.state = 'executing'",
		"ttt", id, code, message);
	if (rc == CW_OK && (rc = cwe_step(e, st)) == CW_OK)
		cwe_col_text(st, 0, result, sizeof(result));
	sqlite3_finalize(st);
	if (rc != CW_OK)
		return rc == CW_ERR_NOTFOUND ? CW_OK : rc; /* recorded meanwhile */
	res = cJSON_Parse(result);
	if (!res)
		return CW_ERR_NOMEM;
	if (release)
		cJSON_AddStringToObject(res, "release", release);
	cw_warn("command.unfinished", "command=%s error=%s note=\"reported failed, never run "
		"again\"", id, code);
	return log_finish(e, now, id, "failed", res);
}

/* Every command left executing: report_unfinished. */
static int report_executing(struct cw_engine *e, const struct stamp *now, const char *code,
			    const char *message)
{
	sqlite3_stmt *st = NULL;
	char(*ids)[CMD_ID_MAX + 1] = NULL;
	int n = 0, cap = 0, rc;

	rc = cw_eq_prepare(e, &st, "SELECT id FROM command_log WHERE state = 'executing'", "");
	while (rc == CW_OK && (rc = cwe_step(e, st)) == CW_OK) {
		if (n == cap) {
			int ncap = cap ? cap * 2 : 8;
			char(*p)[CMD_ID_MAX + 1] = realloc(ids, (size_t)ncap * sizeof(*p));
			if (!p) {
				rc = CW_ERR_NOMEM;
				break;
			}
			ids = p;
			cap = ncap;
		}
		cwe_col_text(st, 0, ids[n++], CMD_ID_MAX + 1);
	}
	sqlite3_finalize(st);
	if (rc == CW_ERR_NOTFOUND)
		rc = CW_OK;
	for (int i = 0; rc == CW_OK && i < n; i++)
		rc = report_unfinished(e, now, ids[i], code, message, NULL);
	free(ids);
	return rc;
}

/* At start (inside the start transaction): commands a crash left
 * executing are reported failed "interrupted" with the sensed state of the
 * cart they named, as last recorded. Never run again. */
int cwe_commands_interrupted(struct cw_engine *e, const struct stamp *now)
{
	return report_executing(e, now, "interrupted", "the device stopped while running this "
				"command; it is not run again");
}

void cwe_commands_unrecorded(struct cw_engine *e)
{
	struct stamp now;
	int rc;

	if (!e->cmd_unrecorded || e->cmd_running > 0)
		return;
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc == CW_OK)
		rc = report_executing(e, &now, UNRECORDED_CODE, UNRECORDED_MSG);
	if (cwe_finish(e, rc) == CW_OK)
		e->cmd_unrecorded = false;
}

int cwe_db_created_init(struct cw_engine *e, const struct stamp *now)
{
	return cw_eq_exec(e, "INSERT OR IGNORE INTO settings(key, value) VALUES ('db_created', "
			     "json_object('wall_ms', ?1, 'mono_ms', ?2, 'boot', ?3, 'trusted', ?4))",
			  "iiti", now->wall, now->mono, e->boot, I64(now->trusted));
}
