#!/usr/bin/env bash
# Edge -> cloud sync (issue 4) on one backend, what must be refused: malformed
# and hostile batches (400 naming the entry and field), oversize ones (413;
# over 64 KiB only with the device's own token), and carts or rentals of
# another device (400); nothing is ever written by a refused batch.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sync_lib.sh"

C1=$(new_uuid); C2=$(new_uuid); R1=$(new_uuid)
note "a device's first batch: two carts and a rental"
sync "$DEV_A1" "$DTOK_A1" "$( { cart_e 1 cart.created "$C1" 1 available 1 0; cart_e 2 cart.created "$C2" 2 available 1 1
	rental_e 3 rental.created "$R1" "$C1" active "+972501111111"; cart_e 4 cart.updated "$C1" 1 rented 1 0
	tel_e 5 lock.fault "$C1"; health_e 6; entry 7 x.y device x '{}'; entry 8 x.y device x '{}'; } | batch)"
expect_code 200
[ "$(jqr .high_water)" = 8 ] || fail "first batch: $(cat "$T/resp.json")"
S2=$(state)

note "malformed batches: 400 naming the entry, nothing written"
SQLI="x'); DROP TABLE carts; --"
GOOD_T=$(tel_e 9 x.y)
bad() { # EXPECTED_MESSAGE_PREFIX BODY
	local msg
	sync "$DEV_A1" "$DTOK_A1" "$2"
	[ "$CODE" = 400 ] || fail "expected HTTP 400, got $CODE: $(cat "$T/resp.json")"
	# one jq: the error shape, the code and the message
	msg=$(jq -r 'if (keys == ["error"]) and (.error | keys == ["code", "message"])
		and .error.code == "invalid" then .error.message else "BAD-SHAPE" end' "$T/resp.json")
	case "$msg" in "$1"*) ;; *) fail "message '$msg' does not start with '$1'" ;; esac
}
bad "body is not valid JSON" 'not json'
bad "body must be exactly one JSON object" '[1]'
bad "body must be exactly one JSON object" '{"entries":[]} {}'
bad "unknown field 'extra'" '{"entries":[],"extra":1}'
bad "entries: expected an array" '{"entries":{}}'
bad "entries[0]: expected an object" '{"entries":[7]}'
bad "entries[0].seq: missing" "{\"entries\":[$(echo "$GOOD_T" | jq -c 'del(.seq)')]}"
bad "entries[0].seq: expected an integer" "{\"entries\":[$(echo "$GOOD_T" | jq -c '.seq = "9"')]}"
bad "entries[0].seq: expected an integer" "{\"entries\":[$(echo "$GOOD_T" | jq -c '.seq = 9.5')]}"
bad "entries[0].seq: expected an integer" "{\"entries\":[$(echo "$GOOD_T" | jq -c '.seq = 0')]}"
bad "entries[0]: unknown field 'priority'" "{\"entries\":[$(echo "$GOOD_T" | jq -c '.priority = 1')]}"
bad "entries[0].clock_trusted: expected true or false" "{\"entries\":[$(echo "$GOOD_T" | jq -c '.clock_trusted = "yes"')]}"
bad "entries[0].entity_type: not one of" "{\"entries\":[$(echo "$GOOD_T" | jq -c '.entity_type = "customer"')]}"
bad "entries[0].kind: only" "{\"entries\":[$(echo "$GOOD_T" | jq -c --arg s "$SQLI" '.kind = $s')]}"
bad "entries[0].entity_type: expected rental" "$( rental_e 9 rental.created "$(new_uuid)" "$C1" active "+972501111111" | jq -c '.entity_type = "cart"' | batch)"
bad "entries[1].seq: expected 10" "$( { tel_e 9 x.y; tel_e 9 x.y; } | batch)"
bad "entries[1].seq: expected 10" "$( { tel_e 9 x.y; tel_e 11 x.y; } | batch)"
bad "entries[1].seq: expected 10" "$( { tel_e 9 x.y; tel_e 8 x.y; } | batch)"
bad "entries[1].payload.rental.status: not one of" "$( { tel_e 9 x.y; rental_e 10 rental.created "$(new_uuid)" "$C1" lost "+972501111111"; } | batch)"
bad "entries[0].payload.rental.user_phone: only" "$( rental_e 9 rental.created "$(new_uuid)" "$C1" active "1' OR '1'='1" | batch)"
bad "entries[0].payload.rental.user_phone: expected 1 to 20" "$( rental_e 9 rental.created "$(new_uuid)" "$C1" active "+9725011111111111111111" | batch)"
bad "entries[0].payload.rental.id: differs" "$( rental_e 9 rental.created "$(new_uuid)" "$C1" active "+97250" | jq -c --arg x "$(new_uuid)" '.entity_id = $x' | batch)"
bad "entries[0].payload.rental.cart_id: only a lower-case UUID" "$( rental_e 9 rental.created "$(new_uuid)" "$(echo "$C1" | tr a-f A-F)" active "+97250" | batch)"
bad "entries[0].payload.rental: missing" "$( entry 9 rental.created rental "$R1" '{"v":1}' | batch)"
bad "entries[0].payload.v: expected an integer 1..1" "$( cart_e 9 cart.updated "$C1" 1 available 1 0 | jq -c '.payload.v = 2' | batch)"
bad "entries[0].payload.cart.cart_number: expected an integer 1.." "$( cart_e 9 cart.updated "$C1" 0 available 1 0 | batch)"
bad "entries[0].payload.cart.is_locked: expected true or false" "$( cart_e 9 cart.updated "$C1" 1 available 1 0 | jq -c '.payload.cart.is_locked = 2' | batch)"
bad "entries[0].payload.cart.board_index: expected an integer 0..255" "$( cart_e 9 cart.updated "$C1" 1 available 256 0 | batch)"
bad "entries[0].payload.cart.status: only" "$( cart_e 9 cart.updated "$C1" 1 "$SQLI" 1 0 | batch)"
bad "entries[0].payload.cart.maintenance_notes: only text" "$( cart_e 9 cart.updated "$C1" 1 available 1 0 "$(printf 'a\001b')" | batch)"
bad "entries[0].payload.command.state: not one of" "$( result_e 9 "$(new_uuid)" maybe | batch)"
bad "entries[0].payload.telemetry.event_type: only" "$( tel_e 9 "$SQLI" | batch)"
bad "entries[0].payload.health: expected an object" "$( entry 9 device.health device x '{"v":1,"health":[1]}' | batch)"
bad "an object has a field twice" "{\"entries\":[$(echo "$GOOD_T" | jq -c . | sed 's/"event_type":"x.y"/"event_type":"x.y","event_type":"a.b"/')]}"
bad "body is not valid UTF-8" "$(printf '{"entries":[],"x":"\xff"}')"
[ "$(state)" = "$S2" ] || fail "a malformed batch wrote something"

note "size limits: more than 1000 entries or 1 MiB is 413; over 64 KiB only for the device"
tel_batch 9 1009 x.y >"$T/big.json"
AUTH=$DTOK_A1; api_file POST "/api/devices/$DEV_A1/sync" "$T/big.json"; expect_error 413 too_big
jq -c '{entries: [.entries[0:1][] | .payload.pad = ("x" * 1100000)]}' "$T/big.json" >"$T/huge.json"
api_file POST "/api/devices/$DEV_A1/sync" "$T/huge.json"; expect_error 413 too_big
jq -c '{entries: .entries[0:300]}' "$T/big.json" >"$T/mid.json"
[ "$(stat -c %s "$T/mid.json")" -gt 65536 ] || fail "the mid-size batch is not over 64 KiB"
AUTH=$TOK_PLATFORM; api_file POST "/api/devices/$DEV_A1/sync" "$T/mid.json"; expect_error 413
AUTH=$DTOK_B1; api_file POST "/api/devices/$DEV_A1/sync" "$T/mid.json"; expect_error 413
[ "$(state)" = "$S2" ] || fail "an oversize batch wrote something"
AUTH=$DTOK_A1; api_file POST "/api/devices/$DEV_A1/sync" "$T/mid.json"; expect_code 200
[ "$(jq -c . "$T/resp.json")" = '{"high_water":308,"applied":300,"skipped":0}' ] || fail "300 entries: $(cat "$T/resp.json")"
HW=308
S3=$(state)

note "carts and rentals of another device are refused, nothing written"
# device A9 (same branch) and B1 (another chain) name A1's cart and rental
sync "$DEV_A9" "$DTOK_A9" "$(cart_e 1 cart.updated "$C1" 1 maintenance 1 0 | batch)"
expect_error 400 invalid
[ "$(jqr .error.message)" = "entries[0]: cart belongs to another branch or another device" ] || fail "foreign cart: $(jqr .error.message)"
sync "$DEV_B1" "$DTOK_B1" "$( { tel_e 1 x.y; cart_e 2 cart.updated "$C1" 1 maintenance 1 0; } | batch)"
expect_error 400 invalid
[ "$(jqr .error.message)" = "entries[1]: cart belongs to another branch or another device" ] || fail "foreign cart B1"
sync "$DEV_A9" "$DTOK_A9" "$(rental_e 1 rental.updated "$R1" "$C1" cancelled "+972501111111" | batch)"
expect_error 400 invalid
[ "$(jqr .error.message)" = "entries[0]: rental.cart_id is not a cart of this device (send its cart first)" ] || fail "rental of a foreign cart: $(jqr .error.message)"
# A9's own cart, but the rental id is A1's
C9=$(new_uuid)
sync "$DEV_A9" "$DTOK_A9" "$( { cart_e 1 cart.created "$C9" 9 available 1 0; rental_e 2 rental.updated "$R1" "$C9" cancelled "+972501111111"; } | batch)"
expect_error 400 invalid
[ "$(jqr .error.message)" = "entries[1]: rental belongs to another device" ] || fail "foreign rental: $(jqr .error.message)"
# a cart number another cart of the branch has
sync "$DEV_A9" "$DTOK_A9" "$(cart_e 1 cart.created "$C9" 1 available 1 0 | batch)"
expect_error 400 invalid
[ "$(jqr .error.message)" = "entries[0]: cart_number is taken by another cart of this branch" ] || fail "cart number: $(jqr .error.message)"
# a rental of a cart the cloud does not know
sync "$DEV_A1" "$DTOK_A1" "$(rental_e $((HW + 1)) rental.created "$(new_uuid)" "$(new_uuid)" active "+972501111111" | batch)"
expect_error 400 invalid
[ "$(state)" = "$S3" ] || fail "a refused batch wrote something: $S3 -> $(state)"
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1/carts/$C1"
[ "$(jqr .status):$(jqr .device_id)" = "rented:$DEV_A1" ] || fail "cart C1 changed"
# A9's own cart is fine, and a removed cart stays as offline
sync "$DEV_A9" "$DTOK_A9" "$( { cart_e 1 cart.created "$C9" 9 available 1 0; cart_e 2 cart.removed "$C9" 9 available 1 0; } | batch)"
expect_code 200
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1/carts/$C9"
[ "$(jqr .status):$(jqr .device_id)" = "offline:$DEV_A9" ] \
	&& [ "$(jqr .maintenance_notes)" = "removed from the device's configuration" ] || fail "removed cart: $(cat "$T/resp.json")"

note "a cart made by hand (no controller) is taken over by the first device of its branch; another device's snapshot of it is then refused"
CH=$(new_uuid)
if [ "$BACKEND" = postgres ]; then
	db_sql "INSERT INTO carts (id, branch_id, cart_number, locker_id) VALUES ('$CH', '$BR_A1', 77, 0)"
else
	db_sql "INSERT INTO carts (id, branch_id, cart_number, locker_id, updated_ms) VALUES ('$CH', '$BR_A1', 77, 0, 1)"
fi
next_seq() { # DEVICE TOKEN: the device's mark + 1
	local saved=$AUTH; AUTH=$2; api GET "/api/devices/$1/sync"; AUTH=$saved; echo $(($(jqr .high_water) + 1))
}
sync "$DEV_A9" "$DTOK_A9" "$(cart_e "$(next_seq "$DEV_A9" "$DTOK_A9")" cart.updated "$CH" 77 available 2 3 | batch)"
expect_code 200
S4=$(state)
sync "$DEV_A1" "$DTOK_A1" "$(cart_e "$(next_seq "$DEV_A1" "$DTOK_A1")" cart.updated "$CH" 77 maintenance 1 0 | batch)"
expect_error 400 invalid
[ "$(jqr .error.message)" = "entries[0]: cart belongs to another branch or another device" ] || fail "stolen cart: $(jqr .error.message)"
[ "$(state)" = "$S4" ] || fail "a refused snapshot wrote something"
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1/carts/$CH"
[ "$(jqr .status):$(jqr .device_id)" = "available:$DEV_A9" ] || fail "hand-made cart: $(cat "$T/resp.json")"

# the tables the hostile strings named are all still there
for t in rentals carts telemetry commands; do db_sql "SELECT count(*) FROM $t" >/dev/null || fail "table $t"; done
check_logs
assert_not_logged "$DTOK_A1" "$DTOK_A9"
note "ok"
