#!/usr/bin/env bash
# A whole rental through the real daemon and the simulated lock boards on a
# pty: rent -> lock released (confirmed by sensor) -> cart taken -> return to
# a designated empty slot -> docked -> rental closed. Then a board goes silent
# and comes back. Usage: edge_journey.sh modbus|kerong
. "$(dirname "$0")/lib.sh"
PROTO=${1:?protocol}
if [ "$PROTO" = modbus ]; then A=1; Bd=2; else A=0; Bd=1; fi

sim_start bus0 "$PROTO" --board "$A:4" --board "$Bd:4" --baud 19200
edge_config "$T/edge.json" "[{\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"$PROTO\",
  \"boards\":[{\"address\":$A,\"locks\":4},{\"address\":$Bd,\"locks\":4}]}]"
edge_start

note "eight carts, all available with a cart docked"
# both boards: each comes online at its own first answered poll, so one
# board's carts being available says nothing of the other's
all_docked() {
	api GET "$(branch /carts)" && [ "$CODE" = 200 ] &&
		[ "$(jqr '[.[] | select(.status=="available" and .cart_present==true)] | length')" = 8 ]
}
wait_until 10 all_docked || fail "not all carts available: $(cat "$T/resp.json")"
[ "$(jqr 'length')" = 8 ] || fail "expected 8 carts, got $(jqr 'length')"

note "rent"
api POST "$(branch /carts/assign)" '{"phone":"0521234567"}'
expect_code 201
RID=$(jqr .rental_id)
C=$(jqr .cart_number)
[ "$C" -ge 1 ] && [ "$C" -le 8 ] || fail "bad cart number $C"
board=$A lock=$((C - 1))
if [ "$C" -gt 4 ]; then board=$Bd lock=$((C - 5)); fi
sim bus0 state "$board" "$lock" | grep -q 'hook=open' || fail "the lock of cart $C was not released"
cart_is "$C" rented || fail "cart $C is not rented"

note "one open rental per phone"
api POST "$(branch /carts/assign)" '{"phone":"0521234567"}'
expect_code 409

note "customer takes the cart"
sim bus0 take "$board" "$lock" >/dev/null
wait_until 5 cart_has "$C" cart_present false || fail "cart $C still reported present"
api GET "$(branch /rentals/active)"
expect_code 200
[ "$(jqr "[.[] | select(.id==\"$RID\")] | length")" = 1 ] || fail "rental not active: $(cat "$T/resp.json")"

note "return: sent to an empty slot"
api POST "$(branch /carts/return)" '{"phone":"0521234567"}'
expect_code 200
S=$(jqr .slot_number)
[ "$(jqr .rental_id)" = "$RID" ] || fail "return named another rental"
[ "$(cart_field "$S" cart_present)" = false ] || fail "sent to slot $S which holds a cart"
api POST "$(branch /carts/return)" '{"phone":"0521234567"}'
expect_code 200
[ "$(jqr .slot_number)" = "$S" ] || fail "a repeated return moved the customer to another slot"
sboard=$A slock=$((S - 1))
if [ "$S" -gt 4 ]; then sboard=$Bd slock=$((S - 5)); fi
sim bus0 dock "$sboard" "$slock" >/dev/null
wait_until 5 cart_is "$S" available || fail "slot $S did not become available after docking"
api GET "$(branch "/rentals/history?limit=10")"
expect_code 200
st=$(jq -r ".rentals | .[] | select(.id==\"$RID\") | .status" "$T/resp.json")
[ "$st" = returned ] || fail "rental status after docking is '$st'"
api GET "$(branch /rentals/stats)"
expect_code 200

note "a silent board goes offline, the other keeps renting"
sim bus0 fault silent "$Bd" on >/dev/null
wait_until 10 cart_is 5 offline || fail "cart 5 not shown offline"
api POST "$(branch /carts/assign)" '{"phone":"0527654321"}'
expect_code 201
[ "$(jqr .cart_number)" -le 4 ] || fail "rented a cart of the offline board"
sim bus0 fault silent "$Bd" off >/dev/null
wait_until 15 cart_is 5 available || fail "cart 5 did not come back"

check_logs
edge_stop
[ "$(sqlite3 "$T/data/edge.db" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"
note "ok"
