#!/usr/bin/env bash
# 20 kiosk sessions at once against one edge (issue 5 item 5), driven by
# kiosk_load.mjs (one Node process, HTTP from distinct kiosk addresses): each one
# requests a code, reads it from the fake SMS gateway, verifies it, rents with
# its customer token, takes the cart out (simulator), returns it at the kiosk,
# docks it in the slot it was sent to, and polls the receipt. Asserts no error
# anywhere and every rental closed; prints p50/p95 of every step.
#
# The sessions come from 4 kiosk addresses (127.0.6.1-4, 5 customers each);
# kiosk.otp.max_requests_per_kiosk_hour is set to 60 (the default) in the
# test config: a session makes 2 counted requests (code, return), 10 per
# kiosk. Two buses of 12 locks each (24 carts, 20 rented at once), so the
# unlocks of the 20 sessions share two serial lines like in a store (bus
# timing tolerant of a loaded machine: kiosk_bus in lib.sh).
. "$(dirname "$0")/lib.sh"
N=${KIOSK_SESSIONS:-20}

sms_start
kiosk_sim bus0 12
kiosk_sim bus1 12
kiosk_config "$T/edge.json" "[$(kiosk_bus bus0 12), $(kiosk_bus bus1 12)]" \
	'{"kiosk":{"otp":{"max_requests_per_kiosk_hour":60}}}'
edge_start
wait_until 15 cart_is 24 available || fail "carts not ready"
command -v node >/dev/null || fail "node missing (scripts/test installs it)"

note "$N sessions at once (test/kiosk/kiosk_load.mjs)"
rc=0
node "$KDIR/kiosk_load.mjs" --port "$API_PORT" --branch "$BRANCH" --admin-token "$TOKEN" \
	--sms-file "$SMS_OUT" --sim "bus0=$T/bus0.sock" --sim "bus1=$T/bus1.sock" \
	--sessions "$N" --kiosks 4 >"$T/load.json" 2>"$T/load.log" || rc=$?
cat "$T/load.log"
jq -r 'select(.ok | not) | "FAIL session \(.session): \(.error)"' "$T/load.json" >&2
[ $rc = 0 ] || fail "$(jq -s 'map(select(.ok | not)) | length' "$T/load.json") of $N sessions failed (driver exit $rc)"
[ "$(jq -s 'map(select(.ok)) | length' "$T/load.json")" = "$N" ] || fail "not $N sessions reported"

note "per step (ms), $N sessions:"
jq -rs '(.[0].steps | keys_unsorted) as $steps | ["step", "p50", "p95", "max"], ($steps[] as $s
	| [.[].steps[$s]] | sort | [$s, .[((length - 1) * 0.5 | floor)],
	  .[((length - 1) * 0.95 | ceil)], .[-1]]) | @tsv' "$T/load.json" | column -t

note "every rental closed, every cart back, one text per session"
[ "$(edge_sql "SELECT count(*) FROM rentals WHERE status = 'returned'")" = "$N" ] ||
	fail "rentals: $(edge_sql "SELECT status, count(*) FROM rentals GROUP BY status")"
[ "$(edge_sql "SELECT count(*) FROM rentals WHERE status IN ('active', 'overdue')")" = 0 ] ||
	fail "open rentals left"
wait_until 10 cart_is 24 available || fail "cart 24 not available"
api GET "$(branch /carts)"; expect_code 200
[ "$(jqr '[.[] | select(.status == "available" and .cart_present)] | length')" = 24 ] ||
	fail "carts after the run: $(jqr '[.[] | {cart_number, status, cart_present}]')"
[ "$(wc -l <"$SMS_OUT")" = "$N" ] || fail "$(wc -l <"$SMS_OUT") texts for $N sessions"
check_logs
edge_stop
note "ok"
