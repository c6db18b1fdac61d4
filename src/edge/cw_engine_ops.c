/* cw_engine_ops.c - the rental engine's operations: rent, return, staff,
 * sensor input and reconciliation, periodic work. The state machine tables
 * and the transitions themselves are in cw_engine.c. */
#include "cw_engine_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_uuid.h"

/* ------------------------------------------------------------------ rent */

/* Picks the least recently used free cart on a reconciled, online board
 * whose lock has no release in flight (a slot freed by staff while its lock
 * still moves must not go to a second customer). */
static int pick_cart(struct cw_engine *e, const char *only_id, struct cart_row *out)
{
	sqlite3_stmt *st = NULL;
	int rc, src;

	rc = cw_eq_prepare(e, &st,
			   "SELECT " CART_COLS " FROM carts WHERE status = 'available' AND "
			   "cart_present = 1 AND hook_closed = 1 AND board_online = 1 AND removed = 0 "
			   "AND (?1 IS NULL OR id = ?1) "
			   "ORDER BY last_used_wall_ms IS NOT NULL, last_used_wall_ms, cart_number",
			   "t", only_id);
	if (rc != CW_OK)
		return rc;
	rc = CW_ERR_NOCART;
	while ((src = cwe_step(e, st)) == CW_OK) {
		struct cw_eboard *b;
		cwe_cart_from_row(st, out);
		b = cwe_board_find(e, out->bus, out->board);
		if (b && !b->need_reconcile && !cwe_inflight(b, out->lock)) {
			rc = CW_OK;
			break;
		}
	}
	if (src == CW_ERR_DB)
		rc = CW_ERR_DB;
	sqlite3_finalize(st);
	return rc;
}

int cwe_rent_tx(struct cw_engine *e, const struct stamp *now_, const char *phone,
		const char *only_cart_id, struct cart_row *c, struct cw_rent_result *out)
{
	const struct stamp now = *now_;
	struct rental_row r;
	int64_t allowed = I64(e->rules.rental_minutes) * 60000;
	int64_t grace = I64(e->rules.grace_minutes) * 60000;
	int rc;

	if (e->rules.one_per_phone) {
		rc = cwe_rental_load(e, &r, "user_phone = ?1 AND " OPEN_SQL, "t", phone);
		if (rc == CW_OK)
			return CW_ERR_CONFLICT;
		if (rc != CW_ERR_NOTFOUND)
			return rc;
	}
	rc = pick_cart(e, only_cart_id, c);
	if (rc != CW_OK)
		return rc;
	if (cw_uuid_v7(out->rental_id) != CW_OK)
		return CW_ERR_INTERNAL;
	rc = cw_eq_exec(e,
			"INSERT INTO rentals(id, cart_id, branch_id, user_phone, status, start_time, "
			"start_trusted, start_mono_ms, mono_boot, allowed_ms, grace_ms, expected_return, "
			"clock_trusted, created_wall_ms, updated_wall_ms) VALUES (?1, ?2, ?3, ?4, "
			"'active', ?5, ?6, ?7, ?8, ?9, ?10, ?5 + ?9, ?6, ?5, ?5)",
			"ttttiiitii", out->rental_id, c->id, e->branch_id, phone, now.wall,
			I64(now.trusted), now.mono, e->boot, allowed, grace);
	if (rc == CW_OK)
		rc = cwe_outbox_rental(e, &now, out->rental_id, "rental.created");
	if (rc == CW_OK)
		rc = cwe_cart_transition(e, &now, c->id, CS_RENTED, NULL);
	out->cart_number = c->number;
	out->expected_return_wall_ms = now.wall + allowed;
	return rc;
}

/* After hw.unlock: confirm, or cancel the rental so that the customer is
 * never left with a rental for a cart that did not open. *recheck: what the
 * lock did is unknown, the board must be read afresh before renting from it. */
int cwe_rent_end_tx(struct cw_engine *e, const struct stamp *now_, const struct cart_row *c,
		    const char *rental_id, int hw_rc, int64_t latency, bool *recheck, int *resultp)
{
	const struct stamp now = *now_;
	struct rental_row r;
	int result = hw_rc;
	int rc;

	*resultp = hw_rc;
	rc = cwe_rental_load(e, &r, "id = ?1", "t", rental_id);
	if (rc != CW_OK)
		return rc;
	if (!cwe_rental_open(&r)) {
		/* Closed while the lock was moving (the engine refuses that since
		 * force return and maintenance check the in-flight flag; kept for
		 * any other writer). The slot may now be available with the lock
		 * open and stale sensor bits: it is not offered again before a
		 * fresh status reconciles its board. */
		rc = cwe_telemetry(e, &now, "rental.closed_during_release", c->id, r.id,
			       cwe_jdata("unlock_result", cw_errname(hw_rc), NULL, NULL));
		*recheck = true;
		result = CW_ERR_STATE;
	} else if (hw_rc == CW_OK || r.taken) {
		/* A cart that already left its slot was released, whatever the bus said. */
		rc = cwe_confirm_release(e, &now, &r, latency, hw_rc == CW_OK);
		result = CW_OK;
	} else if (hw_rc == CW_ERR_OFFLINE) {
		/* The bus says "offline" also when the release was sent and not
		 * answered (cw_lockbus.c): the lock may have opened. The customer
		 * is not charged; the slot is rented out again only after a fresh
		 * status (reconciliation: hook open -> fault, cart gone -> missing). */
		rc = cwe_cancel_rental(e, &now, &r, "board offline, release not confirmed", NULL);
		if (rc == CW_OK)
			rc = cwe_telemetry(e, &now, "lock.offline", c->id, r.id, NULL);
		*recheck = true;
		result = CW_ERR_OFFLINE;
	} else {
		rc = cwe_cancel_rental(e, &now, &r, "release not confirmed", "release not confirmed");
		if (rc == CW_OK)
			rc = cwe_telemetry(e, &now, "lock.fault", c->id, r.id,
				       cwe_jdata("reason", "release not confirmed", "unlock_result",
					     cw_errname(hw_rc)));
		result = CW_ERR_FAULT;
	}
	*resultp = result;
	return rc;
}

static int rent_begin(struct cw_engine *e, const char *phone, struct cart_row *c,
		      struct cw_rent_result *out)
{
	struct stamp now;
	int rc;

	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		return rc;
	rc = cwe_rent_tx(e, &now, phone, NULL, c, out);
	return cwe_finish(e, rc);
}

static int rent_end(struct cw_engine *e, const struct cart_row *c, const char *rental_id,
		    int hw_rc, int64_t latency, bool *recheck)
{
	struct stamp now;
	int result = hw_rc, rc;

	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		return rc;
	rc = cwe_rent_end_tx(e, &now, c, rental_id, hw_rc, latency, recheck, &result);
	rc = cwe_finish(e, rc);
	return rc != CW_OK ? rc : result;
}

int cw_engine_rent(struct cw_engine *e, const char *phone, struct cw_rent_result *out)
{
	struct cart_row c;
	struct cw_eboard *b;
	int64_t latency = 0;
	uint64_t token = 0;
	bool recheck = false;
	int rc, hw_rc;

	if (!e || !out)
		return CW_ERR_INVAL;
	memset(out, 0, sizeof(*out));
	if (!cwe_phone_valid(phone))
		return CW_ERR_INVAL;
	pthread_mutex_lock(&e->mu);
	rc = rent_begin(e, phone, &c, out);
	if (rc != CW_OK) {
		cwe_unlock(e);
		if (rc == CW_ERR_CONFLICT || rc == CW_ERR_NOCART)
			cw_info("rental.refused", "reason=%s", cw_errname(rc));
		memset(out, 0, sizeof(*out));
		return rc;
	}
	b = cwe_board_find(e, c.bus, c.board);
	if (b)
		token = cwe_inflight_begin(e, b, c.lock);
	cwe_unlock(e);

	/* The mutex is not held here: the bus worker reports sensors meanwhile. */
	hw_rc = e->hw.unlock(e->hw.ctx, c.bus, c.board, c.lock, &latency);

	pthread_mutex_lock(&e->mu);
	if (b)
		cwe_inflight_end(b, c.lock, token);
	rc = rent_end(e, &c, out->rental_id, hw_rc, latency, &recheck);
	/* CW_ERR_DB: rule 4 settles the pending rental at the next status. */
	if (b && (rc == CW_ERR_DB || recheck))
		b->need_reconcile = true;
	cwe_unlock(e);
	if (rc == CW_OK) {
		out->unlock_latency_ms = hw_rc == CW_OK ? latency : 0;
		cw_info("rental.start", "rental=%s cart=%d latency_ms=%lld", out->rental_id,
			out->cart_number, (long long)out->unlock_latency_ms);
	} else {
		cw_warn("rental.failed", "rental=%s cart=%d reason=%s", out->rental_id, c.number,
			cw_errname(rc));
	}
	return rc;
}

/* ---------------------------------------------------------------- return */

static int pick_return_slot(struct cw_engine *e, const struct rental_row *r, struct cart_row *out)
{
	sqlite3_stmt *st = NULL;
	int rc, src;

	/* The rental's own slot first, if it is empty. */
	rc = cwe_cart_load(e, out, "id = ?1", "t", r->cart_id);
	if (rc == CW_OK && out->st == CS_RENTED && !out->present && out->online && !out->removed &&
	    cwe_board_usable(e, out->bus, out->board))
		return CW_OK;
	if (rc != CW_OK && rc != CW_ERR_NOTFOUND)
		return rc;
	rc = cw_eq_prepare(e, &st,
			   "SELECT " CART_COLS " FROM carts WHERE status = 'available' AND "
			   "cart_present = 0 AND reserved_for_rental IS NULL AND board_online = 1 AND "
			   "removed = 0 ORDER BY cart_number",
			   "");
	if (rc != CW_OK)
		return rc;
	rc = CW_ERR_NOCART;
	while ((src = cwe_step(e, st)) == CW_OK) {
		cwe_cart_from_row(st, out);
		if (cwe_board_usable(e, out->bus, out->board)) {
			rc = CW_OK;
			break;
		}
	}
	if (src == CW_ERR_DB)
		rc = CW_ERR_DB;
	sqlite3_finalize(st);
	return rc;
}

int cw_engine_return_begin(struct cw_engine *e, const char *phone, struct cw_return_result *out)
{
	struct stamp now;
	struct rental_row r;
	struct cart_row c;
	int rc;

	if (!e || !out)
		return CW_ERR_INVAL;
	memset(out, 0, sizeof(*out));
	if (!cwe_phone_valid(phone))
		return CW_ERR_INVAL;
	pthread_mutex_lock(&e->mu);
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto unlock;
	rc = cwe_rental_load(e, &r, "user_phone = ?1 AND " OPEN_SQL " ORDER BY start_time DESC LIMIT 1",
			 "t", phone);
	if (rc != CW_OK)
		goto out;
	if (!r.release_confirmed) {
		rc = CW_ERR_STATE; /* the release is still in progress */
		goto out;
	}
	/* Same call again: same slot, reservation renewed. */
	if (r.return_slot[0] &&
	    cwe_cart_load(e, &c, "id = ?1", "t", r.return_slot) == CW_OK && c.st == CS_AWAITING &&
	    strcmp(c.reserved, r.id) == 0) {
		rc = cw_eq_exec(e, "UPDATE carts SET reserved_wall_ms = ?, reserved_mono_ms = ?, "
				   "reserved_boot = ? WHERE id = ?",
				"iitt", now.wall, now.mono, e->boot, c.id);
		goto done;
	}
	rc = pick_return_slot(e, &r, &c);
	if (rc != CW_OK)
		goto out;
	rc = cwe_cart_transition(e, &now, c.id, CS_AWAITING, r.id);
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "UPDATE rentals SET return_slot = ?, updated_wall_ms = ? WHERE id = ?",
				"tit", c.id, now.wall, r.id);
	if (rc == CW_OK)
		rc = cwe_outbox_rental(e, &now, r.id, "rental.return_designated");
done:
	if (rc == CW_OK) {
		snprintf(out->rental_id, sizeof(out->rental_id), "%.36s", r.id);
		out->slot_number = c.number;
		cw_info("rental.return_slot", "rental=%s slot=%d", r.id, c.number);
	}
out:
	rc = cwe_finish(e, rc);
	if (rc != CW_OK)
		memset(out, 0, sizeof(*out));
unlock:
	cwe_unlock(e);
	return rc;
}

int cwe_force_return_tx(struct cw_engine *e, const struct stamp *now_, const char *rental_id,
			const char *note, bool *cancelledp, struct cw_eboard **board)
{
	const struct stamp now = *now_;
	struct rental_row r;
	struct cart_row c;
	struct cw_eboard *b = NULL;
	bool cancelled = false;
	char buf[300];
	int rc;

	*cancelledp = false;
	*board = NULL;
	snprintf(buf, sizeof(buf), "force return by staff%s%s", note && *note ? ": " : "",
		 note ? note : "");
	rc = cwe_rental_load(e, &r, "id = ?1", "t", rental_id);
	if (rc != CW_OK)
		return rc;
	if (!cwe_rental_open(&r))
		return CW_ERR_STATE;
	rc = cwe_cart_load(e, &c, "id = ?1", "t", r.cart_id);
	if (rc != CW_OK)
		return rc;
	b = cwe_board_find(e, c.bus, c.board);
	if (b && cwe_inflight(b, c.lock)) {
		/* The lock is moving: closing now would free a slot whose sensors
		 * are stale, and rent_end would find its rental gone. */
		return CW_ERR_STATE;
	}
	if (!r.release_confirmed) {
		/* Never confirmed (crash leftover not yet reconciled): the customer
		 * may never have had the cart, so it is no return. */
		cancelled = true;
		rc = cwe_rental_transition(e, &now, &r, RS_CANCELLED,
					   "force return by staff, release never confirmed", NULL, buf);
		if (rc == CW_OK)
			rc = cwe_release_slots(e, &now, &r, NULL);
	} else {
		rc = cwe_close_returned(e, &now, &r, NULL, "force return", buf);
	}
	if (rc == CW_OK)
		rc = cwe_telemetry(e, &now, "rental.force_return", r.cart_id, r.id,
			       cwe_jdata("note", note ? note : "", "closed_as",
				     cancelled ? "cancelled" : "returned"));
	*cancelledp = cancelled;
	*board = b;
	return rc;
}

int cw_engine_force_return(struct cw_engine *e, const char *rental_id, const char *note)
{
	struct stamp now;
	struct cw_eboard *b = NULL;
	bool cancelled = false;
	int rc;

	if (!e || !rental_id || !cw_uuid_valid(rental_id))
		return CW_ERR_INVAL;
	if (note && strlen(note) > 256)
		return CW_ERR_TOOBIG;
	pthread_mutex_lock(&e->mu);
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto unlock;
	rc = cwe_force_return_tx(e, &now, rental_id, note, &cancelled, &b);
	rc = cwe_finish(e, rc);
	/* What that lock did is unknown: read the board before renting from it. */
	if (rc == CW_OK && cancelled && b)
		b->need_reconcile = true;
unlock:
	cwe_unlock(e);
	return rc;
}

/* ------------------------------------------------------------ staff */

int cwe_set_maintenance_tx(struct cw_engine *e, const struct stamp *now_, int cart_number, bool on,
			   const char *note)
{
	const struct stamp now = *now_;
	struct cart_row c;
	struct cw_eboard *b;
	int rc;

	rc = cwe_cart_load(e, &c, "cart_number = ?1 AND removed = 0", "i", I64(cart_number));
	if (rc != CW_OK)
		return rc;
	b = cwe_board_find(e, c.bus, c.board);
	if (b && cwe_inflight(b, c.lock))
		return CW_ERR_STATE; /* its lock is moving (rent or maintenance unlock) */
	if (!on && c.st == CS_AVAILABLE)
		return CW_OK; /* not in maintenance: nothing written */
	if (on && c.st == CS_MAINT) {
		rc = cw_eq_exec(e, "UPDATE carts SET maintenance_notes = ?, updated_wall_ms = ? "
				   "WHERE id = ?", "tit", note, now.wall, c.id);
		if (rc == CW_OK)
			rc = cwe_outbox_cart(e, &now, c.id, "cart.updated");
	} else if (on) {
		rc = cwe_cart_transition(e, &now, c.id, CS_MAINT, note ? note : "");
	} else if (c.st == CS_MAINT || c.st == CS_FAULT) {
		rc = cwe_cart_transition(e, &now, c.id, CS_AVAILABLE, NULL);
	} else {
		rc = CW_ERR_STATE;
	}
	if (rc == CW_OK)
		rc = cwe_telemetry(e, &now, on ? "cart.maintenance_on" : "cart.maintenance_off", c.id, NULL,
			       cwe_jdata("note", note ? note : "", NULL, NULL));
	return rc;
}

int cw_engine_set_maintenance(struct cw_engine *e, int cart_number, bool on, const char *note)
{
	struct stamp now;
	int rc;

	if (!e || cart_number < 1)
		return CW_ERR_INVAL;
	if (note && strlen(note) > 256)
		return CW_ERR_TOOBIG;
	pthread_mutex_lock(&e->mu);
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc == CW_OK)
		rc = cwe_finish(e, cwe_set_maintenance_tx(e, &now, cart_number, on, note));
	cwe_unlock(e);
	return rc;
}

int cwe_munlock_begin_tx(struct cw_engine *e, const struct stamp *now, const struct cart_row *c)
{
	struct cw_eboard *b = cwe_board_find(e, c->bus, c->board);
	int rc = CW_OK;

	if (c->st == CS_RENTED || c->st == CS_AWAITING || (b && cwe_inflight(b, c->lock)))
		return CW_ERR_STATE; /* a customer's slot: use force return first */
	/* A slot opened by staff must be neither rented out nor flagged as a
	 * fault ("hook open without rental"): it goes to maintenance first. */
	if (c->st == CS_AVAILABLE)
		rc = cwe_cart_transition(e, now, c->id, CS_MAINT, "maintenance unlock");
	if (rc == CW_OK)
		rc = cwe_telemetry(e, now, "cart.maintenance_unlock", c->id, NULL, NULL);
	return rc;
}

int cwe_munlock_end_tx(struct cw_engine *e, const struct stamp *now, const struct cart_row *c,
		       int hw_rc)
{
	int rc = CW_OK;

	if (hw_rc == CW_OK) {
		rc = cw_eq_exec(e, "UPDATE carts SET is_locked = 0, updated_wall_ms = ? WHERE id = ? "
				   "AND is_locked = 1", "it", now->wall, c->id);
		if (rc == CW_OK && sqlite3_changes(e->h) > 0)
			rc = cwe_outbox_cart(e, now, c->id, "cart.updated");
	}
	if (rc == CW_OK)
		rc = cwe_telemetry(e, now, "cart.maintenance_unlock_result", c->id, NULL,
			       cwe_jdata("result", cw_errname(hw_rc), NULL, NULL));
	return rc;
}

int cw_engine_maintenance_unlock(struct cw_engine *e, int cart_number, int64_t *latency_ms)
{
	struct stamp now;
	struct cart_row c;
	struct cw_eboard *b = NULL;
	int64_t lat = 0;
	uint64_t token = 0;
	int rc, hw_rc;

	if (latency_ms)
		*latency_ms = 0;
	if (!e || cart_number < 1)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&e->mu);
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto unlock;
	rc = cwe_cart_load(e, &c, "cart_number = ?1 AND removed = 0", "i", I64(cart_number));
	if (rc == CW_OK)
		rc = cwe_munlock_begin_tx(e, &now, &c);
	b = rc == CW_OK ? cwe_board_find(e, c.bus, c.board) : NULL;
	rc = cwe_finish(e, rc);
	if (rc == CW_OK && b)
		token = cwe_inflight_begin(e, b, c.lock);
unlock:
	cwe_unlock(e);
	if (rc != CW_OK)
		return rc;

	hw_rc = e->hw.unlock(e->hw.ctx, c.bus, c.board, c.lock, &lat);

	pthread_mutex_lock(&e->mu);
	if (b) {
		cwe_inflight_end(b, c.lock, token);
		if (hw_rc == CW_ERR_OFFLINE)
			b->need_reconcile = true; /* maybe released, unanswered: read it afresh */
	}
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc == CW_OK)
		rc = cwe_finish(e, cwe_munlock_end_tx(e, &now, &c, hw_rc));
	cwe_unlock(e);
	if (latency_ms && hw_rc == CW_OK)
		*latency_ms = lat;
	return rc != CW_OK ? rc : hw_rc;
}

/* ---------------------------------------------------------- sensors */

/* Applies the sensor rules to one slot (docs/RENTALS.md "Sensor rules" and
 * "Reconciliation"). snap is the board's snapshot taken before this status:
 * only its sensor bits (the previous reading) are used. The slot's state and
 * reservation are read again here, because a rule applied to an earlier
 * slot of the same pass may have changed them (closing a rental frees its
 * own slot and its designated slot). present/hook are what the board
 * reports now. *findings counts reconciliation findings. */
static int slot_rules(struct cw_engine *e, const struct stamp *now, struct cw_eboard *b,
		      const struct cart_row *snap, bool present, bool hook, bool reconcile,
		      int *findings)
{
	struct rental_row r;
	struct cart_row cur;
	const struct cart_row *c = &cur;
	bool changed = present != snap->present || hook != snap->hook;
	bool inflight = cwe_inflight(b, snap->lock);
	const char *tag = reconcile ? "reconcile." : "sensor.";
	char ev[64];
	int rc;

	rc = cwe_cart_load(e, &cur, "id = ?1", "t", snap->id);
	if (rc == CW_ERR_NOTFOUND)
		return CW_OK;
	if (rc != CW_OK)
		return rc;
	cur.present = snap->present;
	cur.hook = snap->hook;
	switch (c->st) {
	case CS_AWAITING:
		rc = cwe_rental_load(e, &r, "id = ?1", "t", c->reserved);
		if (rc == CW_ERR_NOTFOUND || (rc == CW_OK && !cwe_rental_open(&r))) {
			/* A reservation for no open rental: free the slot. */
			rc = cwe_cart_transition(e, now, c->id, CS_AVAILABLE, NULL);
			if (rc == CW_OK)
				rc = cwe_telemetry(e, now, "reconcile.stale_reservation", c->id, NULL, NULL);
			(*findings)++;
			break;
		}
		if (rc != CW_OK)
			break;
		/* The designated slot reports the cart docked: the rental closes.
		 * At reconciliation a present cart is enough (rule 5). */
		if (present && (hook || reconcile)) {
			rc = cwe_close_returned(e, now, &r, c->id, "returned", NULL);
			if (rc == CW_OK && reconcile) {
				snprintf(ev, sizeof(ev), "%sreturn_closed", tag);
				rc = cwe_telemetry(e, now, ev, c->id, r.id,
					       cwe_jdata("hook", hook ? "closed" : "open", NULL, NULL));
				(*findings)++;
			}
		}
		break;
	case CS_RENTED:
		rc = cwe_rental_load(e, &r, "cart_id = ?1 AND " OPEN_SQL, "t", c->id);
		if (rc == CW_ERR_NOTFOUND) {
			/* Rented with no open rental: cannot happen through this engine;
			 * heal it (the slot goes back to available). */
			rc = cwe_cart_transition(e, now, c->id, CS_AVAILABLE, NULL);
			if (rc == CW_OK)
				rc = cwe_telemetry(e, now, "reconcile.orphan_rented", c->id, NULL, NULL);
			(*findings)++;
			break;
		}
		if (rc != CW_OK)
			break;
		if (!r.release_confirmed && inflight) {
			/* Release in progress: a cart that left is taken (and released). */
			if (!present && !r.taken)
				rc = cwe_mark_taken(e, now, &r);
			break;
		}
		if (!r.release_confirmed) {
			if (!reconcile)
				break; /* crash leftover: handled at this board's reconciliation */
			/* Rule 4: crash between the rental's commit and its confirmation. */
			(*findings)++;
			if (present && hook) {
				rc = cwe_cancel_rental(e, now, &r, "never released (recovered after restart)",
						   NULL);
				if (rc == CW_OK)
					rc = cwe_telemetry(e, now, "reconcile.pending_cancelled", c->id, r.id,
						       NULL);
			} else {
				rc = cwe_confirm_release(e, now, &r, 0, false);
				if (rc == CW_OK && !present)
					rc = cwe_mark_taken(e, now, &r);
				if (rc == CW_OK)
					rc = cwe_telemetry(e, now, "reconcile.pending_confirmed", c->id, r.id,
						       cwe_jdata("cart", present ? "present" : "gone", NULL,
							     NULL));
			}
			break;
		}
		if (!present && !r.taken) {
			rc = cwe_mark_taken(e, now, &r);
		} else if (present && hook && r.taken && (changed || reconcile)) {
			/* Rule 1: the cart came back to its own slot with no designated
			 * return here: the return is accepted where it happened. */
			rc = cwe_close_returned(e, now, &r, c->id, "returned to its own slot", NULL);
			if (rc == CW_OK) {
				snprintf(ev, sizeof(ev), "%sreturned_own_slot", tag);
				rc = cwe_telemetry(e, now, ev, c->id, r.id, NULL);
			}
			(*findings)++;
		}
		break;
	case CS_AVAILABLE:
		if (!present && c->present) {
			/* Rule 2: a cart left an available slot without a rental. The
			 * slot stays available but is not rentable while empty. */
			snprintf(ev, sizeof(ev), "cart.missing");
			rc = cwe_telemetry(e, now, ev, c->id, NULL,
				       cwe_jdata("found_by", reconcile ? "reconcile" : "sensor", NULL,
					     NULL));
			(*findings)++;
		} else if (present && !hook && (changed || reconcile)) {
			/* Rule 3: a cart in the slot with its hook open and no rental. */
			rc = cwe_cart_transition(e, now, c->id, CS_FAULT, "hook open without rental");
			if (rc == CW_OK)
				rc = cwe_telemetry(e, now, "cart.hook_open_without_rental", c->id, NULL,
					       cwe_jdata("found_by", reconcile ? "reconcile" : "sensor",
						     NULL, NULL));
			(*findings)++;
		}
		break;
	default:
		break; /* maintenance, fault: sensors recorded, no rule */
	}
	return rc;
}

static int board_status_tx(struct cw_engine *e, struct cw_eboard *b,
			   const struct cw_board_status *bs, bool reconcile)
{
	struct stamp now;
	struct cart_row *carts = NULL;
	sqlite3_stmt *st = NULL;
	int n = 0, cap = 0, findings = 0, nonline = 0;
	int rc;

	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		return rc;
	rc = cwe_set_online(e, &now, b->bus_index, b->board_index, true, &nonline);
	if (rc == CW_OK && nonline > 0) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddNumberToObject(d, "bus", b->bus_index);
		cJSON_AddNumberToObject(d, "board", b->board_index);
		rc = cwe_telemetry(e, &now, "board.online", NULL, NULL, d);
	}
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "UPDATE controllers SET status = 'online', last_seen_wall_ms = ? "
				   "WHERE bus_index = ? AND board_index = ?",
				"iii", now.wall, I64(b->bus_index), I64(b->board_index));
	/* Snapshot of the board's slots before any rule changes them. */
	if (rc == CW_OK)
		rc = cw_eq_prepare(e, &st, "SELECT " CART_COLS " FROM carts WHERE bus_index = ? AND "
					   "board_index = ? AND removed = 0 ORDER BY lock_index",
				   "ii", I64(b->bus_index), I64(b->board_index));
	while (rc == CW_OK && (rc = cwe_step(e, st)) == CW_OK) {
		if (n == cap) {
			int ncap = cap ? cap * 2 : 16;
			struct cart_row *p = realloc(carts, (size_t)ncap * sizeof(*p));
			if (!p) {
				rc = CW_ERR_NOMEM;
				break;
			}
			carts = p;
			cap = ncap;
		}
		cwe_cart_from_row(st, &carts[n++]);
	}
	sqlite3_finalize(st);
	if (rc == CW_ERR_NOTFOUND)
		rc = CW_OK; /* end of rows; CW_ERR_DB: the status is retried on the next poll */
	for (int i = 0; rc == CW_OK && i < n; i++) {
		const struct cart_row *c = &carts[i];
		bool present = (bs->present >> c->lock) & 1u;
		bool hook = (bs->hook_closed >> c->lock) & 1u;
		int before = findings, rrc;

		if (present != c->present || hook != c->hook) {
			rc = cw_eq_exec(e, "UPDATE carts SET cart_present = ?, hook_closed = ?, "
					   "is_locked = ?, updated_wall_ms = ? WHERE id = ?",
					"iiiit", I64(present), I64(hook), I64(hook), now.wall, c->id);
			if (rc == CW_OK)
				rc = cwe_outbox_cart(e, &now, c->id, "cart.sensors");
		}
		if (rc != CW_OK)
			break;
		/* Each slot's rules in a savepoint: a transition this slot cannot
		 * make (CW_ERR_STATE) skips this slot's rules instead of rolling the
		 * whole board back and retrying it forever. Its sensor fields stay
		 * recorded. Database errors still abort the board. */
		rc = cwe_savepoint(e);
		if (rc != CW_OK)
			break;
		rrc = slot_rules(e, &now, b, c, present, hook, reconcile, &findings);
		rc = cwe_savepoint_end(e, rrc);
		if (rc == CW_OK && rrc == CW_ERR_STATE) {
			findings = before;
			cw_warn("engine.slot_rules_skipped", "bus=%d board=%d cart=%d error=%s",
				b->bus_index, b->board_index, c->number, cw_errname(rrc));
		} else if (rc == CW_OK) {
			rc = rrc;
		}
	}
	if (rc == CW_OK && reconcile) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddNumberToObject(d, "bus", b->bus_index);
		cJSON_AddNumberToObject(d, "board", b->board_index);
		cJSON_AddNumberToObject(d, "slots", n);
		cJSON_AddNumberToObject(d, "findings", findings);
		rc = cwe_telemetry(e, &now, "reconcile.done", NULL, NULL, d);
	}
	free(carts);
	return cwe_finish(e, rc);
}

void cw_engine_on_board_status(struct cw_engine *e, int bus_index, int board_index,
			       const struct cw_board_status *st)
{
	struct cw_eboard *b;
	bool reconcile;

	if (!e || !st)
		return;
	pthread_mutex_lock(&e->mu);
	b = cwe_board_find(e, bus_index, board_index);
	if (!b)
		goto out;
	b->online = true;
	reconcile = b->need_reconcile;
	/* Nothing changed since the last committed status: nothing to do (the
	 * rules react to changes; timeouts are the tick's). */
	if (!reconcile && b->have_bits && b->hook == st->hook_closed && b->present == st->present)
		goto out;
	if (board_status_tx(e, b, st, reconcile) == CW_OK) {
		b->have_bits = true;
		b->hook = st->hook_closed;
		b->present = st->present;
		b->need_reconcile = false;
	} else {
		b->have_bits = false; /* retried on the next poll */
	}
out:
	cwe_unlock(e);
}

void cw_engine_on_board_offline(struct cw_engine *e, int bus_index, int board_index, bool offline)
{
	struct cw_eboard *b;
	struct stamp now;
	int rc, changed = 0;

	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	b = cwe_board_find(e, bus_index, board_index);
	if (!b)
		goto out;
	/* Whatever happened while it was away is compared at its next status. */
	b->need_reconcile = true;
	b->online = !offline;
	b->have_bits = false;
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto out;
	rc = cwe_set_online(e, &now, bus_index, board_index, !offline, &changed);
	if (rc == CW_OK && changed > 0) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddNumberToObject(d, "bus", bus_index);
		cJSON_AddNumberToObject(d, "board", board_index);
		rc = cwe_telemetry(e, &now, offline ? "board.offline" : "board.online", NULL, NULL, d);
	}
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "UPDATE controllers SET status = ? WHERE bus_index = ? AND "
				   "board_index = ?",
				"tii", offline ? "offline" : "online", I64(bus_index), I64(board_index));
	cwe_finish(e, rc);
out:
	cwe_unlock(e);
}

/* ------------------------------------------------------------------ tick */

static int collect_ids(struct cw_engine *e, const char *sql, char (**ids)[40], int *n)
{
	sqlite3_stmt *st = NULL;
	int cap = 0, rc;

	*ids = NULL;
	*n = 0;
	rc = cw_eq_prepare(e, &st, sql, "");
	while (rc == CW_OK && (rc = cwe_step(e, st)) == CW_OK) {
		if (*n == cap) {
			int ncap = cap ? cap * 2 : 16;
			char(*p)[40] = realloc(*ids, (size_t)ncap * sizeof(*p));
			if (!p) {
				rc = CW_ERR_NOMEM;
				break;
			}
			*ids = p;
			cap = ncap;
		}
		cwe_col_text(st, 0, (*ids)[*n], 40);
		(*n)++;
	}
	sqlite3_finalize(st);
	return rc == CW_ERR_NOTFOUND ? CW_OK : rc;
}

/* One open rental: take timeout, then overdue. */
static int tick_rental(struct cw_engine *e, const struct stamp *now, const char *id)
{
	int64_t take_ms = I64(e->rules.take_timeout_s) * 1000;
	struct rental_row r;
	int rc;

	rc = cwe_rental_load(e, &r, "id = ?1", "t", id);
	if (rc == CW_ERR_NOTFOUND)
		return CW_OK;
	if (rc != CW_OK || !cwe_rental_open(&r))
		return rc;
	if (r.release_confirmed && !r.taken &&
	    cwe_elapsed_ms(e, now, r.rel_wall, r.rel_mono, r.rel_boot, r.start_trusted, NULL) >=
		    take_ms) {
		rc = cwe_cancel_rental(e, now, &r, "cart never taken", NULL);
		if (rc == CW_OK)
			rc = cwe_telemetry(e, now, "rental.not_taken", r.cart_id, r.id, NULL);
		return rc;
	}
	if (r.st == RS_ACTIVE && cwe_rental_late(e, now, &r))
		rc = cwe_rental_transition(e, now, &r, RS_OVERDUE, NULL, NULL, NULL);
	return rc;
}

/* One awaiting-return slot: its reservation expires after return_timeout_s. */
static int tick_reservation(struct cw_engine *e, const struct stamp *now, const char *id)
{
	int64_t life_ms = I64(e->rules.return_timeout_s) * 1000;
	struct cart_row c;
	struct rental_row r;
	bool own;
	int rc;

	memset(&r, 0, sizeof(r));
	rc = cwe_cart_load(e, &c, "id = ?1", "t", id);
	if (rc == CW_ERR_NOTFOUND)
		return CW_OK;
	if (rc != CW_OK || c.st != CS_AWAITING)
		return rc;
	if (cwe_elapsed_ms(e, now, c.res_wall, c.res_mono, c.res_boot, true, NULL) < life_ms)
		return CW_OK;
	rc = cwe_rental_load(e, &r, "id = ?1", "t", c.reserved);
	own = rc == CW_OK && cwe_rental_open(&r) && strcmp(r.cart_id, c.id) == 0;
	if (rc != CW_OK && rc != CW_ERR_NOTFOUND)
		return rc;
	/* The rental's own slot stays its slot; any other goes back to available. */
	rc = cwe_cart_transition(e, now, c.id, own ? CS_RENTED : CS_AVAILABLE, NULL);
	if (rc == CW_OK && r.id[0])
		rc = cw_eq_exec(e, "UPDATE rentals SET return_slot = NULL, updated_wall_ms = ? "
				   "WHERE id = ? AND return_slot = ?",
				"itt", now->wall, c.reserved, c.id);
	if (rc == CW_OK)
		rc = cwe_outbox_rental(e, now, c.reserved, "rental.return_expired");
	if (rc == CW_OK)
		rc = cwe_telemetry(e, now, "return.reservation_expired", c.id, c.reserved, NULL);
	return rc;
}

/* Runs item() for every id of sql, each in its own savepoint: one item that
 * fails is rolled back alone (and logged), the others still commit. Only a
 * failure of the list or of the savepoint itself stops the tick. */
static int tick_each(struct cw_engine *e, const struct stamp *now, const char *what,
		     const char *sql,
		     int (*item)(struct cw_engine *, const struct stamp *, const char *))
{
	char(*ids)[40] = NULL;
	int n = 0, rc;

	rc = collect_ids(e, sql, &ids, &n);
	for (int i = 0; rc == CW_OK && i < n; i++) {
		int irc;

		rc = cwe_savepoint(e);
		if (rc != CW_OK)
			break;
		irc = item(e, now, ids[i]);
		rc = cwe_savepoint_end(e, irc);
		if (rc == CW_OK && irc != CW_OK)
			cw_warn("engine.tick_item_failed", "what=%s id=%s error=%s", what, ids[i],
				cw_errname(irc));
	}
	free(ids);
	return rc;
}

void cw_engine_tick(struct cw_engine *e)
{
	struct stamp now;
	int rc;

	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	cwe_commands_unrecorded(e);
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc == CW_OK) {
		rc = tick_each(e, &now, "rental", "SELECT id FROM rentals WHERE " OPEN_SQL, tick_rental);
		if (rc == CW_OK)
			rc = tick_each(e, &now, "reservation",
				       "SELECT id FROM carts WHERE status = 'awaiting-return'",
				       tick_reservation);
		cwe_finish(e, rc);
	}
	cwe_unlock(e);
}
