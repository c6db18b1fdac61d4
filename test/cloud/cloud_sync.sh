#!/usr/bin/env bash
# Edge -> cloud sync (issue 4, docs/SYNC.md "Up") on one backend: batches in
# the edge's outbox format applied once (rows visible through the staff API),
# retried and overlapping batches, sequence gaps, the high-water mark, who may
# sync, malformed and hostile batches (400/413, nothing written), carts and
# rentals of another device refused, command results, signed commands in the
# heartbeat, versioned device configuration (sync_config.sh), and two
# identical batches at the same time.
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/sync_lib.sh"

C1=$(new_uuid); C2=$(new_uuid); R1=$(new_uuid)
note "a batch is applied: carts, rental, telemetry, health"
B1=$( { cart_e 1 cart.created "$C1" 1 available 1 0; cart_e 2 cart.created "$C2" 2 available 1 1
	rental_e 3 rental.created "$R1" "$C1" active "+972501111111"
	cart_e 4 cart.updated "$C1" 1 rented 1 0; tel_e 5 lock.fault "$C1"; health_e 6; } | batch)
sync "$DEV_A1" "$DTOK_A1" "$B1"
expect_code 200
[ "$(jq -c . "$T/resp.json")" = '{"high_water":6,"applied":6,"skipped":0}' ] || fail "first batch: $(cat "$T/resp.json")"
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1/carts"
expect_code 200
[ "$(jqr '[.items[] | "\(.cart_number):\(.status):\(.locker_id):\(.device_id)"] | join(" ")')" = \
	"1:rented:0:$DEV_A1 2:available:1:$DEV_A1" ] || fail "synced carts: $(cat "$T/resp.json")"
[ "$(jqr '.items[0].controller_id == .items[1].controller_id and .items[0].controller_id != null')" = true ] \
	|| fail "one controller per board"
api GET "/api/branches/$BR_A1/rentals/active"
expect_code 200
[ "$(jqr '[.items[] | "\(.id):\(.cart_id):\(.phone):\(.status)"] | join(" ")')" = \
	"$R1:$C1:+*********111:active" ] || fail "synced rental (a manager sees the phone masked): $(cat "$T/resp.json")"
api GET "/api/telemetry/devices/$DEV_A1"
expect_code 200
[ "$(jqr '[.items[] | "\(.event_type):\(.seq)"] | sort | join(" ")')" = "device.health:6 lock.fault:5" ] \
	|| fail "synced telemetry: $(cat "$T/resp.json")"
[ "$(jqr '.items[] | select(.event_type == "lock.fault") | "\(.event_data.n):\(.event_data.cart_id):\(.branch_id)"')" = "5:$C1:$BR_A1" ] \
	|| fail "telemetry row: $(cat "$T/resp.json")"
api GET "/api/devices/$DEV_A1"
[ "$(jqr .health.cpu_temp_c)" = 48.5 ] || fail "device health not updated: $(cat "$T/resp.json")"
S1=$(state)

note "the same batch again changes nothing"
sync "$DEV_A1" "$DTOK_A1" "$B1"
expect_code 200
[ "$(jq -c . "$T/resp.json")" = '{"high_water":6,"applied":0,"skipped":6}' ] || fail "retried batch: $(cat "$T/resp.json")"
[ "$(state)" = "$S1" ] || fail "a retried batch changed the database: $S1 -> $(state)"

note "an overlapping batch applies only what is new; unknown kinds become telemetry"
RET=$((NOW - 5 * MIN))
B2=$( { tel_e 5 lock.fault "$C1"; health_e 6
	rental_e 7 rental.returned "$R1" "$C1" returned "+972501111111" "$RET" "it's 'fine'; DROP TABLE rentals; -- \"q\""
	entry 8 lock.counters device "$DEV_A1" '{"v":7,"counters":{"unlocks":12}}'; } | batch)
sync "$DEV_A1" "$DTOK_A1" "$B2"
expect_code 200
[ "$(jq -c . "$T/resp.json")" = '{"high_water":8,"applied":2,"skipped":2}' ] || fail "overlap: $(cat "$T/resp.json")"
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1/rentals/history"
[ "$(jqr '.items[0].status')" = returned ] && [ "$(jqr '.items[0].duration_minutes')" = 30 ] \
	&& [ "$(jqr '.items[0].notes')" = "it's 'fine'; DROP TABLE rentals; -- \"q\"" ] \
	|| fail "returned rental: $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A1/rentals/active"
[ "$(jqr '.items | length')" = 0 ] || fail "a returned rental is still active"
api GET "/api/telemetry/devices/$DEV_A1?event_type=lock.counters"
[ "$(jqr '.items[0].event_data.counters.unlocks'):$(jqr '.items[0].seq')" = 12:8 ] || fail "unknown kind: $(cat "$T/resp.json")"
S2=$(state)

note "a gap is refused with the expected seq; GET answers the high-water mark"
sync "$DEV_A1" "$DTOK_A1" "$( { tel_e 10 x.y; tel_e 11 x.y; } | batch)"
expect_error 409 sequence_gap
[ "$(jqr .error.message)" = "expected seq 9" ] || fail "gap message: $(jqr .error.message)"
[ "$(state)" = "$S2" ] || fail "a refused gap wrote something"
AUTH=$DTOK_A1
api GET "/api/devices/$DEV_A1/sync"
expect_code 200
[ "$(jq -c . "$T/resp.json")" = '{"high_water":8}' ] || fail "high water: $(cat "$T/resp.json")"
AUTH=$DTOK_A9
api GET "/api/devices/$DEV_A9/sync"
[ "$(jq -c . "$T/resp.json")" = '{"high_water":0}' ] || fail "a new device's high water: $(cat "$T/resp.json")"
sync "$DEV_A1" "$DTOK_A1" '{"entries":[]}'
expect_code 200
[ "$(jqr .high_water)" = 8 ] || fail "empty batch"

note "only the device itself may sync"
NEXT=$( tel_e 9 x.y | batch)
for tok in "$TOK_PLATFORM" "$TOK_MGR_A1" "" "garbage"; do
	sync "$DEV_A1" "$tok" "$NEXT"; expect_error 401 unauthorized
	AUTH=$tok; api GET "/api/devices/$DEV_A1/sync"; expect_error 401
done
sync "$DEV_A1" "$DTOK_B1" "$NEXT"; expect_error 403 forbidden
sync "$DEV_A1" "$DTOK_A9" "$NEXT"; expect_error 403 forbidden
AUTH=$DTOK_B1; api GET "/api/devices/$DEV_A1/sync"; expect_error 403
AUTH=$DTOK_A1; api PUT "/api/devices/$DEV_A1/sync" '{}'; expect_error 405
[ "$(state)" = "$S2" ] || fail "a refused caller wrote something"

HW=8
note "unlock command: created, signed in the heartbeat, result reported by sync"
AUTH=$TOK_MGR_A1
api POST "/api/branches/$BR_A1/carts/$C1/unlock" ''
expect_code 202
CMD=$(jqr .id)
[ "$(jqr .action):$(jqr .device_id):$(jqr .args.cart_id):$(jqr .args.cart_number):$(jqr .state)" = \
	"unlock:$DEV_A1:$C1:1:pending" ] || fail "unlock command: $(cat "$T/resp.json")"
EXP=$(date -d "$(jqr .expires_at)" +%s)
api POST "/api/branches/$BR_A1/carts/$C1/unlock" '{"expires_in_s":5}'; expect_error 400
api POST "/api/branches/$BR_A1/carts/$C1/unlock" '{"cart":1}'; expect_error 400
api POST "/api/branches/$BR_A1/carts/$(new_uuid)/unlock" ''; expect_error 404
api GET "/api/branches/$BR_A1/carts/$C1/unlock"; expect_error 405
AUTH=$TOK_MGR_B1; api POST "/api/branches/$BR_A1/carts/$C1/unlock" ''; expect_error 404
AUTH=$DTOK_A1; api POST "/api/branches/$BR_A1/carts/$C1/unlock" ''; expect_error 401
AUTH=$TOK_MGR_A1
api POST "/api/branches/$BR_A1/carts/return" "{\"cart_id\":\"$C2\"}"; expect_code 202
CMD2=$(jqr .id)
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
expect_code 200
TOKEN=$(jqr ".commands[] | select(.id == \"$CMD\") | .token")
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || fail "no command token: $(cat "$T/resp.json")"
[ "$(jqr ".commands[] | select(.id == \"$CMD\") | .action")" = unlock ] || fail "plain fields missing"
claims=$("$JWT" verify "$PK" cartwise-cloud cartwise-device command "$TOKEN") || fail "command token does not verify"
echo "$claims" | jq -e --arg id "$CMD" --arg dev "$DEV_A1" --arg cart "$C1" --argjson exp "$EXP" '
	.typ == "command" and .iss == "cartwise-cloud" and .aud == "cartwise-device" and .jti == $id
	and .sub == $dev and .act == "unlock" and .args.cart_id == $cart and .args.cart_number == 1
	and .exp == $exp and (.iat | type == "number") and .iat <= .exp' >/dev/null \
	|| fail "command claims: $claims"
# it is a command token and nothing else: not a device token, not for another audience
! "$JWT" verify "$PK" cartwise-cloud cartwise-api command "$TOKEN" 2>/dev/null || fail "command token accepted for the API audience"
! "$JWT" verify "$PK" cartwise-cloud cartwise-device device "$TOKEN" 2>/dev/null || fail "command token accepted as a device token"
AUTH=$TOKEN; api GET "/api/devices/$DEV_A1/sync"; expect_error 401
# a tampered token fails
bad_tok="${TOKEN%?}A"; [ "$bad_tok" != "$TOKEN" ] || bad_tok="${TOKEN%?}B"
! "$JWT" verify "$PK" cartwise-cloud cartwise-device command "$bad_tok" 2>/dev/null || fail "tampered token verified"

# B1 reports A1's command: ignored; A1 reports an unknown one: ignored; then its own
sync "$DEV_B1" "$DTOK_B1" "$(result_e 1 "$CMD2" succeeded | batch)"
expect_code 200
[ "$(jqr .applied)" = 1 ] || fail "ignored result not acknowledged"
sync "$DEV_A1" "$DTOK_A1" "$( { result_e $((HW + 1)) "$(new_uuid)" failed; result_e $((HW + 2)) "$CMD" succeeded; } | batch)"
expect_code 200
[ "$(jqr .high_water)" = $((HW + 2)) ] || fail "results: $(cat "$T/resp.json")"
HW=$((HW + 2))
AUTH=$TOK_MGR_A1
api GET "/api/commands/$CMD"
[ "$(jqr .state):$(jqr .result.released):$(jqr .result.note)" = "succeeded:true:it's \"done\"" ] || fail "command result: $(cat "$T/resp.json")"
api GET "/api/commands/$CMD2"
[ "$(jqs .state .result)" = "delivered|null" ] || fail "another device changed a command: $(cat "$T/resp.json")"
# a second result for a finished command changes nothing
sync "$DEV_A1" "$DTOK_A1" "$(result_e $((HW + 1)) "$CMD" failed | batch)"
expect_code 200; HW=$((HW + 1))
AUTH=$TOK_MGR_A1; api GET "/api/commands/$CMD"
[ "$(jqr .state)" = succeeded ] || fail "a finished command was changed"
# the heartbeat no longer hands out the finished command
AUTH=$DTOK_A1; api POST "/api/devices/$DEV_A1/heartbeat" '{}'
[ "$(jqr "[.commands[].id] | index(\"$CMD\")")" = null ] || fail "a finished command handed out again"

. "$(dirname "$0")/sync_config.sh"

note "two identical batches at the same time are applied once"
for round in 1 2 3 4 5; do
	first=$((HW + 1))
	tel_batch "$first" $((first + 49)) race.test >"$T/race.json"
	before=$(db_sql "SELECT count(*) FROM telemetry WHERE device_id = '$DEV_A1'")
	racers=()
	for k in 1 2; do
		curl -s -o "$T/race$k.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $DTOK_A1" \
			-H 'Content-Type: application/json' --data-binary "@$T/race.json" \
			"http://127.0.0.1:$PORT/api/devices/$DEV_A1/sync" >"$T/race$k.code" &
		racers+=($!)
	done
	wait "${racers[@]}" # not a bare wait: the server is a child too
	for k in 1 2; do
		[ "$(cat "$T/race$k.code")" = 200 ] || fail "racing batch $k: $(cat "$T/race$k.code") $(cat "$T/race$k.out")"
	done
	sum=$(jq -s '[.[].applied] | add' "$T/race1.out" "$T/race2.out")
	skipped=$(jq -s '[.[].skipped] | add' "$T/race1.out" "$T/race2.out")
	[ "$sum:$skipped" = 50:50 ] || fail "round $round: applied $sum, skipped $skipped"
	after=$(db_sql "SELECT count(*) FROM telemetry WHERE device_id = '$DEV_A1'")
	[ $((after - before)) = 50 ] || fail "round $round: $((after - before)) rows for 50 entries"
	HW=$((HW + 50))
done
AUTH=$DTOK_A1; api GET "/api/devices/$DEV_A1/sync"
[ "$(jqr .high_water)" = "$HW" ] || fail "high water after the races: $(jqr .high_water), expected $HW"

note "an operator lowers a device's mark (edge.db restored): telemetry above it is kept, detached; the entries sent again are stored, not dropped"
# DEV_A9 sends 1..20, then its database is 'restored' to one that had acknowledged 10
AUTH=$DTOK_A9; tel_batch 1 20 before.restore >"$T/r1.json"
api_file POST "/api/devices/$DEV_A9/sync" "$T/r1.json"; expect_code 200
reset() { api POST "/api/devices/$DEV_A9/sync/reset" "$1"; }
AUTH=$DTOK_A9; reset '{"high_water":10}'; expect_code 401    # staff only
AUTH=$TOK_MGR_A1; reset '{"high_water":10}'; expect_code 403  # branch manager: no
AUTH=$TOK_ADMIN_B; reset '{"high_water":10}'; expect_code 404 # another chain's admin
AUTH=$TOK_ADMIN_A
reset '{"high_water":21}'; expect_error 400 invalid           # raising would skip entries
case "$(jqr .error.message)" in "high_water: 21 is above the current mark 20"*) ;; *) fail "raise: $(jqr .error.message)" ;; esac
reset '{}'; expect_error 400 invalid
reset '{"high_water":-1}'; expect_error 400 invalid
reset '{"high_water":10,"x":1}'; expect_error 400 invalid
AUTH=$DTOK_A9; api GET "/api/devices/$DEV_A9/sync"; [ "$(jqr .high_water)" = 20 ] || fail "a refused reset moved the mark"
AUTH=$TOK_ADMIN_A; reset '{"high_water":10}'; expect_code 200
[ "$(jq -c . "$T/resp.json")" = '{"high_water":10,"previous":20,"telemetry_detached":10}' ] || fail "reset: $(cat "$T/resp.json")"
grep -q "event=sync.reset device=$DEV_A9 by=.* role=chain-admin previous=20 high_water=10 telemetry_detached=10" "$T/cloud.log" \
	|| fail "the reset is not in the log"
AUTH=$DTOK_A9; tel_batch 11 25 after.restore >"$T/r2.json"
api_file POST "/api/devices/$DEV_A9/sync" "$T/r2.json"; expect_code 200
[ "$(jq -c . "$T/resp.json")" = '{"high_water":25,"applied":15,"skipped":0}' ] || fail "after reset: $(cat "$T/resp.json")"
[ "$(db_sql "SELECT count(*) FROM telemetry WHERE device_id = '$DEV_A9' AND event_type = 'after.restore' AND seq BETWEEN 11 AND 25")" = 15 ] \
	|| fail "entries sent again after the reset were not stored"
[ "$(db_sql "SELECT count(*) FROM telemetry WHERE device_id = '$DEV_A9' AND event_type = 'before.restore' AND seq IS NULL")" = 10 ] \
	|| fail "the old rows above the mark are not kept detached"
AUTH=$TOK_PLATFORM; reset '{"high_water":25}'; expect_code 200 # platform admin; the same mark is allowed

note "carts carry their board (bus, board, board_online from the sync); a board reported offline reads false"
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1/carts"
[ "$(jqr '[.items[] | [.cart_number, .bus_index, .board, .board_online] | map(tostring) | join(":")] | join(" ")')" = \
	"1:0:1:true 2:0:1:true" ] || fail "cart board fields: $(cat "$T/resp.json")"
# cart 2 now on board 2 of bus 0 (the edge's configuration changed), that board offline
sync "$DEV_A1" "$DTOK_A1" "$(cart_e $((HW + 1)) cart.sensors "$C2" 2 available 2 1 '' 0 | batch)"
expect_code 200; HW=$((HW + 1))
api GET "/api/branches/$BR_A1/carts/$C2"
[ "$(jqs .bus_index .board .board_online .device_id)" = "0|2|false|$DEV_A1" ] || fail "board offline: $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A1/carts?limit=1"
[ "$(jqr .items[0].board_online)" = true ] || fail "another board's cart changed: $(cat "$T/resp.json")"
sync "$DEV_A1" "$DTOK_A1" "$(cart_e $((HW + 1)) cart.sensors "$C2" 2 available 2 1 | batch)"
expect_code 200; HW=$((HW + 1))
api GET "/api/branches/$BR_A1/carts/$C2"
[ "$(jqr .board_online)" = true ] || fail "board back online: $(cat "$T/resp.json")"
# the device list shows the edge's health (outbox_depth) and only the branch's devices
api GET "/api/devices?branch_id=$BR_A1"
[ "$(jqr "[.items[].id] == ([\"$DEV_A1\", \"$DEV_A9\"] | sort) and (.items[] | select(.id == \"$DEV_A1\") | .health.outbox_depth == 3)")" = true ] \
	|| fail "device list of A1: $(cat "$T/resp.json")"

check_logs
assert_not_logged "$DTOK_A1" "$DTOK_A9" "$TOKEN"
note "ok"
