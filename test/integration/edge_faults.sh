#!/usr/bin/env bash
# Every scripted fault of the simulator against the real daemon:
# stuck lock, corrupt CRC/checksum, slow board, two boards on one address,
# spurious 0x00 byte, silent board. Usage: edge_faults.sh modbus|kerong
. "$(dirname "$0")/lib.sh"
PROTO=${1:?protocol}
if [ "$PROTO" = modbus ]; then A=1; Bd=2; else A=0; Bd=1; fi
# The stuck lock is a hardware fault the daemon must report at error level.
ALLOWED_ERRORS='release|unlock|fault|stuck|not confirmed'

sim_start bus0 "$PROTO" --board "$A:2" --board "$Bd:2" --baud 19200
edge_config "$T/edge.json" "[{\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"$PROTO\",
  \"confirm_timeout_ms\":600,
  \"boards\":[{\"address\":$A,\"locks\":2},{\"address\":$Bd,\"locks\":2}]}]"
edge_start
wait_until 10 all_available 4 || fail "carts not ready: $(cat "$T/resp.json")"

maint() { api POST "/api/admin/carts/$1/maintenance" "{\"on\":$2,\"note\":\"test\"}"; expect_code 200; }

note "stuck lock: the rental is cancelled, the cart marked fault, the customer told"
maint 2 true; maint 3 true; maint 4 true
sim bus0 fault stuck "$A" 0 on >/dev/null
api POST "$(branch /carts/assign)" '{"phone":"0520000001"}'
[ "$CODE" = 503 ] || fail "stuck lock: expected 503, got $CODE $(cat "$T/resp.json")"
[ "$(jqr .error.code)" = fault ] || fail "stuck lock: error code $(jqr .error.code)"
cart_is 1 fault || fail "cart 1 not marked fault"
api GET "$(branch /rentals/active)"
[ "$(jqr 'length')" = 0 ] || fail "a rental stayed open after a failed unlock"
[ "$(edge_sql "SELECT count(*) FROM rentals WHERE status='cancelled'")" = 1 ] || fail "no cancelled rental recorded"
sim bus0 fault stuck "$A" 0 off >/dev/null
api POST "$(branch /carts/assign)" '{"phone":"0520000001"}'
expect_code 409 # no other cart free: 1 is fault, 2-4 in maintenance
[ "$(jqr .error.code)" = no_cart ] || fail "expected no_cart, got $(jqr .error.code)"
maint 1 true; maint 1 false; maint 2 false; maint 3 false; maint 4 false
wait_until 5 cart_is 1 available || fail "cart 1 not back after maintenance"

note "corrupt checksum: the board is taken offline, then comes back"
sim bus0 fault crc "$Bd" on >/dev/null
wait_until 10 cart_is 3 offline || fail "crc fault: cart 3 not offline"
sim bus0 fault crc "$Bd" off >/dev/null
wait_until 15 cart_is 3 available || fail "crc fault: cart 3 not back"

note "slow board beyond the response timeout counts as silent; a little slow is fine"
sim bus0 fault slow "$Bd" 300 >/dev/null
wait_until 10 cart_is 3 offline || fail "slow board not offline"
sim bus0 fault slow "$Bd" 5 >/dev/null
wait_until 15 cart_is 3 available || fail "slow board not back"

note "spurious 0x00 before every reply is tolerated"
sim bus0 fault zero on >/dev/null
api POST "$(branch /carts/assign)" '{"phone":"0520000002"}'
expect_code 201
sim bus0 fault zero off >/dev/null

note "two boards on one address: the scan flags it"
sim bus0 fault dup "$A" on >/dev/null
api POST /api/admin/buses/bus0/scan "{\"first\":$A,\"last\":$Bd}"
expect_code 200
[ "$(jq -r ".[] | select(.address==$A) | .result" "$T/resp.json")" = garbled ] \
	|| fail "duplicate address not flagged: $(cat "$T/resp.json")"
[ "$(jq -r ".[] | select(.address==$Bd) | .result" "$T/resp.json")" = ok ] \
	|| fail "healthy board not listed: $(cat "$T/resp.json")"
sim bus0 fault dup "$A" off >/dev/null

note "silent board: the other board keeps renting"
sim bus0 fault silent "$A" on >/dev/null
wait_until 10 cart_is 1 offline || fail "silent board not offline"
api POST "$(branch /carts/assign)" '{"phone":"0520000003"}'
expect_code 201
[ "$(jqr .cart_number)" -ge 3 ] || fail "rented from the silent board"
api POST "/api/admin/carts/1/unlock" ''
[ "$CODE" = 503 ] || fail "unlock on an offline board: expected 503, got $CODE"
sim bus0 fault silent "$A" off >/dev/null

check_logs
edge_stop
note "ok"
