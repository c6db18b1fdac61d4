#!/usr/bin/env bash
# Carts, cart commands, rentals and telemetry (issue 3) on one backend:
# success and failure, the authorization matrix over two chains and their
# branches for every role (404/403, never another tenant's rows in lists,
# stats or telemetry), time ranges and bad input. Rows that the edge sync
# (issue 4) will bring are inserted straight into the database here.
. "$(dirname "$0")/lib.sh"

setup_world
NOW=$(date +%s%3N)
MIN=60000
HOUR=3600000
DAY=86400000

# ---- rows as the sync would write them (dialect-specific SQL) ----
if [ "$BACKEND" = postgres ]; then
	ts() { echo "to_timestamp($1 / 1000.0)"; }
	TRUE=true FALSE=false
else
	ts() { echo "$1"; }
	TRUE=1 FALSE=0
fi
# the fixtures' INSERTs are collected and run by one sqlite3/psql process
FIX=
fix_sql() { FIX+="$1;"$'\n'; }
ins_device() { # ID BRANCH MAC
	if [ "$BACKEND" = postgres ]; then
		fix_sql "INSERT INTO devices (id, branch_id, device_name, mac_address) VALUES ('$1', '$2', 'pi', '$3')"
	else
		fix_sql "INSERT INTO devices (id, branch_id, device_name, mac_address, created_ms, updated_ms) VALUES ('$1', '$2', 'pi', '$3', 0, 0)"
	fi
}
ins_controller() { # ID DEVICE
	if [ "$BACKEND" = postgres ]; then
		fix_sql "INSERT INTO controllers (id, device_id, controller_address) VALUES ('$1', '$2', 1)"
	else
		fix_sql "INSERT INTO controllers (id, device_id, controller_address, updated_ms) VALUES ('$1', '$2', 1, 0)"
	fi
}
ins_cart() { # ID BRANCH NUMBER CONTROLLER|null STATUS
	local ctl=null
	[ "$4" = null ] || ctl="'$4'"
	if [ "$BACKEND" = postgres ]; then
		fix_sql "INSERT INTO carts (id, branch_id, cart_number, locker_id, controller_id, status) VALUES ('$1', '$2', $3, $(($3 - 1)), $ctl, '$5')"
	else
		fix_sql "INSERT INTO carts (id, branch_id, cart_number, locker_id, controller_id, status, updated_ms) VALUES ('$1', '$2', $3, $(($3 - 1)), $ctl, '$5', $NOW)"
	fi
}
ins_rental() { # ID CART BRANCH PHONE START EXPECTED ACTUAL|null STATUS
	local act=null
	[ "$7" = null ] || act=$(ts "$7")
	if [ "$BACKEND" = postgres ]; then
		fix_sql "INSERT INTO rentals (id, cart_id, branch_id, user_phone, start_time, expected_return, actual_return, status) VALUES ('$1', '$2', '$3', '$4', $(ts "$5"), $(ts "$6"), $act, '$8')"
	else
		fix_sql "INSERT INTO rentals (id, cart_id, branch_id, user_phone, start_ms, expected_return_ms, actual_return_ms, status, created_ms, updated_ms) VALUES ('$1', '$2', '$3', '$4', $5, $6, $act, '$8', $5, $5)"
	fi
}
TSEQ=0
ins_tel() { # DEVICE BRANCH CHAIN TYPE TS DATA
	TSEQ=$((TSEQ + 1))
	if [ "$BACKEND" = postgres ]; then
		fix_sql "INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, event_data, \"timestamp\") VALUES ('$1', '$2', '$3', $TSEQ, '$4', '$6', $(ts "$5"))"
	else
		fix_sql "INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, event_data, ts_ms, received_ms) VALUES ('$1', '$2', '$3', $TSEQ, '$4', '$6', $5, $NOW)"
	fi
}

note "fixtures: a device in A2, controllers, carts, rentals, telemetry"
DEV_A2=$(new_uuid); ins_device "$DEV_A2" "$BR_A2" "02:00:00:00:00:a2"
CTL_A1=$(new_uuid); ins_controller "$CTL_A1" "$DEV_A1"
CTL_B1=$(new_uuid); ins_controller "$CTL_B1" "$DEV_B1"
CART_A1_1=$(new_uuid); ins_cart "$CART_A1_1" "$BR_A1" 1 "$CTL_A1" available
CART_A1_2=$(new_uuid); ins_cart "$CART_A1_2" "$BR_A1" 2 "$CTL_A1" rented
CART_A1_3=$(new_uuid); ins_cart "$CART_A1_3" "$BR_A1" 3 "$CTL_A1" maintenance
CART_A2_1=$(new_uuid); ins_cart "$CART_A2_1" "$BR_A2" 1 null available   # no controller
CART_B1_1=$(new_uuid); ins_cart "$CART_B1_1" "$BR_B1" 1 "$CTL_B1" available
# A1: on time, active-but-past-expected, overdue, returned (30 min),
# returned late (150 min, yesterday), cancelled
R_ONTIME=$(new_uuid); ins_rental "$R_ONTIME" "$CART_A1_2" "$BR_A1" "+972501111111" $((NOW - 10 * MIN)) $((NOW + 110 * MIN)) null active
R_PAST=$(new_uuid); ins_rental "$R_PAST" "$CART_A1_2" "$BR_A1" "+972502222222" $((NOW - 3 * HOUR)) $((NOW - HOUR)) null active
R_OVER=$(new_uuid); ins_rental "$R_OVER" "$CART_A1_3" "$BR_A1" "+972503333333" $((NOW - 4 * HOUR)) $((NOW - 2 * HOUR)) null overdue
R_RET=$(new_uuid); ins_rental "$R_RET" "$CART_A1_1" "$BR_A1" "+972501111111" $((NOW - 5 * HOUR)) $((NOW - 3 * HOUR)) $((NOW - 5 * HOUR + 30 * MIN)) returned
R_LATE=$(new_uuid); ins_rental "$R_LATE" "$CART_A1_1" "$BR_A1" "0501234567" $((NOW - DAY)) $((NOW - DAY + 120 * MIN)) $((NOW - DAY + 150 * MIN)) returned-late
R_CANC=$(new_uuid); ins_rental "$R_CANC" "$CART_A1_1" "$BR_A1" "0501234567" $((NOW - 6 * HOUR)) $((NOW - 4 * HOUR)) null cancelled
R_A2=$(new_uuid); ins_rental "$R_A2" "$CART_A2_1" "$BR_A2" "+972501111111" $((NOW - HOUR)) $((NOW - 30 * MIN)) null overdue
R_B1=$(new_uuid); ins_rental "$R_B1" "$CART_B1_1" "$BR_B1" "+972501111111" $((NOW - HOUR)) $((NOW - 30 * MIN)) null overdue
for i in 1 2 3 4 5; do
	type=device.health; [ $((i % 2)) = 0 ] && type=lock.fault
	ins_tel "$DEV_A1" "$BR_A1" "$CHAIN_A" $type $((NOW - i * HOUR)) "{\"n\": $i}"
done
ins_tel "$DEV_A2" "$BR_A2" "$CHAIN_A" device.health $((NOW - 30 * MIN)) '{"n": 20}'
ins_tel "$DEV_B1" "$BR_B1" "$CHAIN_B" device.health $((NOW - 30 * MIN)) '{"n": 100}'
ins_tel "$DEV_B1" "$BR_B1" "$CHAIN_B" lock.fault $((NOW - 90 * MIN)) '{"n": 101}'
db_sql "$FIX" >/dev/null

IDS='[.items[].id] | join(" ")'
ids() { jqr "$IDS"; }

note "carts: list, order, filter, pages, get"
AUTH=$TOK_PLATFORM
api GET "/api/branches/$BR_A1/carts"
expect_code 200
[ "$(ids)" = "$CART_A1_1 $CART_A1_2 $CART_A1_3" ] || fail "carts of A1 in number order: $(cat "$T/resp.json")"
[ "$(jqs .items[0].device_id .items[0].cart_number .items[0].is_locked .next_cursor)" = "$DEV_A1|1|true|null" ] \
	|| fail "cart body: $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A1/carts?status=rented"
expect_code 200
[ "$(ids)" = "$CART_A1_2" ] || fail "status filter: $(ids)"
api GET "/api/branches/$BR_A1/carts?limit=2"
[ "$(jqs '.items | length' .next_cursor)" = "2|$CART_A1_2" ] || fail "cart page 1"
api GET "/api/branches/$BR_A1/carts?limit=2&cursor=$CART_A1_2"
[ "$(jqs "$IDS" .next_cursor)" = "$CART_A1_3|null" ] || fail "cart page 2: $(ids)"
# a cursor of another branch positions nothing
api GET "/api/branches/$BR_A1/carts?cursor=$CART_B1_1"
expect_code 200
[ "$(jqr '.items | length')" = 0 ] || fail "foreign cursor: $(ids)"
api GET "/api/branches/$BR_A2/carts"
[ "$(jqs "$IDS" .items[0].device_id)" = "$CART_A2_1|null" ] || fail "carts of A2"
api GET "/api/branches/$BR_A1/carts/$CART_A1_3"
expect_code 200
[ "$(jqs .status .controller_id)" = "maintenance|$CTL_A1" ] || fail "cart get"
api GET "/api/branches/$BR_A1/carts/$CART_B1_1"
expect_error 404 not_found                       # a cart of another branch, under A1
api GET "/api/branches/$BR_A1/carts/01890000-0000-7000-8000-000000000000"
expect_error 404
api GET "/api/branches/$BR_A1/carts?status=lost"
expect_error 400
api GET "/api/branches/$BR_A1/carts?stauts=rented"
expect_error 400
[ "$(jqr .error.message)" = "unknown query parameter 'stauts'" ] || fail "unknown query parameter not named"
api POST "/api/branches/$BR_A1/carts" '{}'
expect_error 405
api DELETE "/api/branches/$BR_A1/carts/$CART_A1_1"
expect_error 405

note "cart assign/return: commands, 202, state readable, delivered by heartbeat"
api POST "/api/branches/$BR_A1/carts/assign" "{\"cart_id\":\"$CART_A1_1\",\"phone\":\"+972501234567\"}"
expect_code 202
IFS='|' read -r C_ASSIGN got exp cre < <(jqs .id \
	'[.action, .state, .device_id, .branch_id, .args.cart_id, .args.phone, .args.cart_number] | map(tostring) | join(" ")' \
	.expires_at .created_at)
[ "$got" = "cart_assign pending $DEV_A1 $BR_A1 $CART_A1_1 +972501234567 1" ] \
	|| fail "assign command: $(cat "$T/resp.json")"
{ read -r exp; read -r cre; } < <(printf '%s\n%s\n' "$exp" "$cre" | date -f - +%s)
[ $((exp - cre)) = 60 ] || fail "default command expiry is not 60 s"
api GET "/api/commands/$C_ASSIGN"
expect_code 200
[ "$(jqr .state)" = pending ] || fail "assign command state"
api POST "/api/branches/$BR_A1/carts/return" "{\"cart_id\":\"$CART_A1_2\",\"expires_in_s\":600}"
expect_code 202
IFS='|' read -r C_RETURN got < <(jqs .id '[.action, .args.phone] | map(tostring) | join(" ")')
[ "$got" = "cart_return null" ] || fail "return command: $(cat "$T/resp.json")"
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
expect_code 200
[ "$(jqr "[.commands[].id] | index(\"$C_ASSIGN\") != null and index(\"$C_RETURN\") != null")" = true ] \
	|| fail "cart commands not handed to the device: $(cat "$T/resp.json")"
AUTH=$TOK_PLATFORM
api GET "/api/commands/$C_RETURN"
[ "$(jqr .state)" = delivered ] || fail "return command not delivered"
# a command past its expiry reads as expired without any sweep
api POST "/api/branches/$BR_A1/carts/return" "{\"cart_id\":\"$CART_A1_2\",\"expires_in_s\":10}"
expect_code 202
C_OLD=$(jqr .id)
if [ "$BACKEND" = postgres ]; then
	db_sql "UPDATE commands SET expires_at = now() - interval '1 second' WHERE id = '$C_OLD'"
else
	db_sql "UPDATE commands SET expires_ms = $NOW - 1000 WHERE id = '$C_OLD'"
fi
api GET "/api/commands/$C_OLD"
[ "$(jqr .state)" = expired ] || fail "expired command reads as $(jqr .state)"
# and the device never receives it
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
[ "$(jqr "[.commands[].id] | index(\"$C_OLD\")")" = null ] || fail "an expired command was handed out"
AUTH=$TOK_PLATFORM
api GET "/api/commands/$C_OLD"
[ "$(jqr .state)" = expired ] || fail "expired command after the sweep"
# a cart without a device (no controller) cannot be commanded
api POST "/api/branches/$BR_A2/carts/assign" "{\"cart_id\":\"$CART_A2_1\",\"phone\":\"+972501234567\"}"
expect_error 409 conflict
# a cart of another branch, or none
api POST "/api/branches/$BR_A1/carts/assign" "{\"cart_id\":\"$CART_B1_1\",\"phone\":\"+972501234567\"}"
expect_error 404
api POST "/api/branches/$BR_A1/carts/return" '{"cart_id":"01890000-0000-7000-8000-000000000000"}'
expect_error 404
api GET "/api/branches/$BR_A1/carts/assign"
expect_error 405

note "cart commands: bad input changes nothing"
ncmd() { db_sql "SELECT count(*) FROM commands"; }
before=$(ncmd)
SQLI="x'); DROP TABLE commands; --"
sq=$(jq -Rn --arg s "$SQLI" '$s')
for body in 'not json' '[1]' "{\"cart_id\":\"$CART_A1_1\"} {}" \
	"{\"cart_id\":\"$CART_A1_1\",\"cart_id\":\"$CART_A1_1\",\"phone\":\"+97250\"}" \
	"{\"phone\":\"+972501234567\"}" "{\"cart_id\":\"$CART_A1_1\"}" \
	"{\"cart_id\":\"$CART_A1_1\",\"phone\":972501234567}" \
	"{\"cart_id\":\"$CART_A1_1\",\"phone\":\"call me\"}" \
	"{\"cart_id\":\"$CART_A1_1\",\"phone\":\"123\"}" \
	"{\"cart_id\":\"$CART_A1_1\",\"phone\":\"+97250123456789012345\"}" \
	"{\"cart_id\":\"$CART_A1_1\",\"phone\":$sq}" \
	"{\"cart_id\":$sq,\"phone\":\"+972501234567\"}" \
	"{\"cart_id\":\"$(echo "$CART_A1_1" | tr a-f A-F)\",\"phone\":\"+972501234567\"}" \
	"{\"cart_id\":7,\"phone\":\"+972501234567\"}" \
	"{\"cart_id\":\"$CART_A1_1\",\"phone\":\"+972501234567\",\"expires_in_s\":5}" \
	"{\"cart_id\":\"$CART_A1_1\",\"phone\":\"+972501234567\",\"expires_in_s\":\"60\"}" \
	"{\"cart_id\":\"$CART_A1_1\",\"phone\":\"+972501234567\",\"device_id\":\"$DEV_B1\"}"; do
	api POST "/api/branches/$BR_A1/carts/assign" "$body"
	expect_error 400
done
for body in '' "{\"cart_id\":\"$CART_A1_1\",\"phone\":\"+972501234567\"}" "{\"cart_id\":$sq}"; do
	api POST "/api/branches/$BR_A1/carts/return" "$body"
	expect_error 400
done
printf '{"cart_id":"%s","phone":"%s"}' "$CART_A1_1" "$(head -c 70000 /dev/zero | tr '\0' 1)" >"$T/big.json"
api_file POST "/api/branches/$BR_A1/carts/assign" "$T/big.json"
expect_error 413 too_big
[ "$(ncmd)" = "$before" ] || fail "bad input created commands"

note "rentals: active (overdue first, counted as open), pages"
api GET "/api/branches/$BR_A1/rentals/active"
expect_code 200
[ "$(ids)" = "$R_OVER $R_PAST $R_ONTIME" ] || fail "active rentals order: $(ids)"
IFS='|' read -r st ov body < <(jqs '[.items[].status] | join(" ")' '[.items[].overdue] | join(" ")' \
	'[.items[2] | .phone, .cart_number, .actual_return] | map(tostring) | join(" ")')
[ "$st $ov" = "overdue overdue active true true false" ] || fail "overdue flags: $(cat "$T/resp.json")"
# a platform admin sees phones masked (privacy.phone_visible_roles: chain admins)
[ "$body" = "+*********111 2 null" ] || fail "rental body: $(jqr '.items[2]')"
api GET "/api/branches/$BR_A1/rentals/active?limit=2"
[ "$(jqs "$IDS" .next_cursor)" = "$R_OVER $R_PAST|$R_PAST" ] || fail "active page 1"
api GET "/api/branches/$BR_A1/rentals/active?limit=2&cursor=$R_PAST"
[ "$(jqs "$IDS" .next_cursor)" = "$R_ONTIME|null" ] || fail "active page 2: $(ids)"
api GET "/api/branches/$BR_A1/rentals/active?cursor=$R_B1"
[ "$(jqr '.items | length')" = 0 ] || fail "foreign cursor on active rentals"
api GET "/api/branches/$BR_A1/rentals/active?from=2026-01-01T00:00:00Z"
expect_error 400                                   # not a parameter of this list

note "rentals: history (newest first, range, phone, status, pages)"
api GET "/api/branches/$BR_A1/rentals/history"
expect_code 200
[ "$(ids)" = "$R_ONTIME $R_PAST $R_OVER $R_RET $R_CANC $R_LATE" ] || fail "history order: $(ids)"
[ "$(jqr '.items[] | select(.id == "'"$R_RET"'") | .duration_minutes')" = 30 ] || fail "duration of a returned rental"
api GET "/api/branches/$BR_A1/rentals/history?phone=%2B972501111111"
[ "$(ids)" = "$R_ONTIME $R_RET" ] || fail "phone filter: $(ids)"
api GET "/api/branches/$BR_A1/rentals/history?phone=+972501111111"
[ "$(ids)" = "$R_ONTIME $R_RET" ] || fail "phone filter with an unencoded +: $(ids)"
api GET "/api/branches/$BR_A1/rentals/history?phone=0501234567&status=cancelled"
[ "$(ids)" = "$R_CANC" ] || fail "phone and status: $(ids)"
from=$(date -u -d "@$(((NOW - 5 * HOUR - MIN) / 1000))" +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d "@$(((NOW - 2 * HOUR) / 1000))" +%Y-%m-%dT%H:%M:%S+00:00)
api GET "/api/branches/$BR_A1/rentals/history?from=$from&to=${to/+/%2B}"
expect_code 200
[ "$(ids)" = "$R_PAST $R_OVER $R_RET" ] || fail "time range: $(ids)"
# the same instant with an offset
from_il=$(TZ=Asia/Jerusalem date -d "@$(((NOW - 5 * HOUR - MIN) / 1000))" +%Y-%m-%dT%H:%M:%S%:z)
api GET "/api/branches/$BR_A1/rentals/history?from=${from_il/+/%2B}&to=${to/+/%2B}"
[ "$(ids)" = "$R_PAST $R_OVER $R_RET" ] || fail "time range with an offset: $(ids)"
api GET "/api/branches/$BR_A1/rentals/history?limit=4"
[ "$(jqr .next_cursor)" = "$R_RET" ] || fail "history page 1"
api GET "/api/branches/$BR_A1/rentals/history?limit=4&cursor=$R_RET"
[ "$(jqs "$IDS" .next_cursor)" = "$R_CANC $R_LATE|null" ] || fail "history page 2: $(ids)"
for q in "from=yesterday" "from=2026-13-01T00:00:00Z" "from=2026-02-30T00:00:00Z" "to=2026-01-01" \
	"from=2026-01-01T00:00:00" "from=1969-12-31T23:59:59Z" "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z" \
	"phone=abc" "phone=%27%20OR%201%3D1%20--" "status=lost" "status=%27%3B%20DROP%20TABLE%20rentals%3B" \
	"limit=0" "cursor=1" "sort=phone"; do
	api GET "/api/branches/$BR_A1/rentals/history?$q"
	expect_error 400
done

note "rentals: stats"
api GET "/api/branches/$BR_A1/rentals/stats"
expect_code 200
IFS='|' read -r counts figures started late dates < <(jqs \
	'.counts | [.total, .active, .overdue, .returned, ."returned-late", .cancelled] | join(" ")' \
	'[.open, .average_duration_minutes, .overdue_rate] | map(tostring) | join(" ")' \
	'[.per_day[].started] | add' '[.per_day[].late] | add' \
	'[.per_day[].date] | (. == sort) and all(test("^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))')
[ "$counts" = "6 1 2 1 1 1" ] || fail "stats counts: $(cat "$T/resp.json")"
[ "$figures" = "3 90 0.6" ] || fail "stats figures: $(cat "$T/resp.json")"
[ "$started" = 6 ] || fail "per_day does not add up: $(jqr .per_day)"
[ "$late" = 3 ] || fail "late per day: $(jqr .per_day)"
[ "$dates" = true ] || fail "per_day dates: $(jqr .per_day)"
api GET "/api/branches/$BR_A1/rentals/stats?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z"
expect_code 200
[ "$(jqs .counts.total .average_duration_minutes .overdue_rate '.per_day | length')" = "0|null|null|0" ] \
	|| fail "empty range: $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A1/rentals/stats?from=2020-01-01T00:00:00Z&to=2022-01-01T00:00:00Z"
expect_error 400                                   # over 366 days
api GET "/api/branches/$BR_A1/rentals/stats?phone=1"
expect_error 400

note "a chain's branches compared (branch-stats), cart board fields of hand-made controllers"
AUTH=$DTOK_A1; api POST "/api/devices/$DEV_A1/heartbeat" '{}'; expect_code 200   # A1's device online
AUTH=$TOK_PLATFORM
CMP='[.items[] | [.code, .active, .rentals, .open, .overdue_rate, .average_duration_minutes, .carts, .devices, .devices_online] | map(tostring) | join(",")] | join(" ")'
api GET "/api/chains/$CHAIN_A/branch-stats"
expect_code 200
# A1 as its rental stats above (6 started, 3 open, 0.6, 90 min), 3 carts; A2: one overdue rental, a device never seen
[ "$(jqr "$CMP")" = "A-001,true,6,3,0.6,90,3,1,1 A-002,true,1,1,1,null,1,1,0" ] || fail "branch-stats: $(cat "$T/resp.json")"
[ "$(jqs .chain_id '.items[0].branch_id' '.items[0].name' '[.to, .from] | map(sub("\\.000Z$"; "Z") | fromdate) | .[0] - .[1]')" = "$CHAIN_A|$BR_A1|A one|$((30 * 86400))" ] \
	|| fail "branch-stats body: $(cat "$T/resp.json")"
# the range counts by start time: the last 2 hours hold A1's on-time rental and A2's
api GET "/api/chains/$CHAIN_A/branch-stats?from=$(date -u -d @$(((NOW - 2 * HOUR) / 1000)) +%FT%TZ)&to=$(date -u -d @$(((NOW + HOUR) / 1000)) +%FT%TZ)"
expect_code 200
[ "$(jqr "$CMP")" = "A-001,true,1,1,0,null,3,1,1 A-002,true,1,1,1,null,1,1,0" ] || fail "branch-stats of 2 hours: $(cat "$T/resp.json")"
api GET "/api/chains/$CHAIN_A/branch-stats?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z"
[ "$(jqr "$CMP")" = "A-001,true,0,0,null,null,3,1,1 A-002,true,0,0,null,null,1,1,0" ] || fail "branch-stats of an empty range: $(cat "$T/resp.json")"
AUTH=$TOK_MGR_A1
api GET "/api/chains/$CHAIN_A/branch-stats"
[ "$(jqr "$CMP")" = "A-001,true,6,3,0.6,90,3,1,1" ] || fail "a manager's branch-stats: $(cat "$T/resp.json")"
AUTH=$TOK_PLATFORM
for q in "from=2020-01-01T00:00:00Z&to=2022-01-01T00:00:00Z" "from=yesterday" "branch_id=$BR_A1" "limit=5"; do
	api GET "/api/chains/$CHAIN_A/branch-stats?$q"
	expect_error 400 invalid
done
api GET /api/chains/01890000-0000-7000-8000-000000000000/branch-stats; expect_error 404
api POST "/api/chains/$CHAIN_A/branch-stats" '{}'; expect_error 405
# carts of controllers made by hand: a board without a bus, never reported; no controller: all null
api GET "/api/branches/$BR_A1/carts/$CART_A1_1"
[ "$(jqs .bus_index .board .board_online)" = "null|1|null" ] || fail "cart of a hand-made controller: $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A2/carts"
[ "$(jqs .items[0].bus_index .items[0].board .items[0].board_online)" = "null|null|null" ] || fail "cart without a controller: $(cat "$T/resp.json")"

note "telemetry: device, branch, chain; filters; pages"
TN='[.items[].event_data.n] | join(" ")'
tn() { jqr "$TN"; }
api GET "/api/telemetry/devices/$DEV_A1"
expect_code 200
[ "$(tn)" = "1 2 3 4 5" ] || fail "device telemetry newest first: $(tn)"
[ "$(jqs .items[0].event_type .items[0].device_id .items[0].seq '.items[0].timestamp != null')" = "device.health|$DEV_A1|1|true" ] \
	|| fail "telemetry body: $(jqr '.items[0]')"
api GET "/api/telemetry/devices/$DEV_A1?event_type=lock.fault"
[ "$(tn)" = "2 4" ] || fail "event type filter: $(tn)"
from=$(date -u -d "@$(((NOW - 3 * HOUR - MIN) / 1000))" +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d "@$(((NOW - HOUR) / 1000))" +%Y-%m-%dT%H:%M:%S.000Z)
api GET "/api/telemetry/devices/$DEV_A1?from=$from&to=$to"
[ "$(tn)" = "2 3" ] || fail "telemetry time range: $(tn)"
api GET "/api/telemetry/devices/$DEV_A1?limit=2"
IFS='|' read -r got cur < <(jqs "$TN" .next_cursor)
[ "$got" = "1 2" ] || fail "telemetry page 1"
api GET "/api/telemetry/devices/$DEV_A1?limit=2&cursor=$cur"
IFS='|' read -r got cur < <(jqs "$TN" .next_cursor)
[ "$got" = "3 4" ] || fail "telemetry page 2: $(tn)"
api GET "/api/telemetry/devices/$DEV_A1?limit=2&cursor=$cur"
[ "$(jqs "$TN" .next_cursor)" = "5|null" ] || fail "telemetry page 3: $(tn)"
# a type and a cursor together (each list has four statements: with or
# without a type, with or without a cursor; cw_store_int.h)
api GET "/api/telemetry/devices/$DEV_A1?event_type=lock.fault&limit=1"
IFS='|' read -r got cur < <(jqs "$TN" .next_cursor)
[ "$got" = "2" ] || fail "typed page 1: $(tn)"
api GET "/api/telemetry/devices/$DEV_A1?event_type=lock.fault&limit=1&cursor=$cur"
[ "$(jqs "$TN" .next_cursor)" = "4|null" ] || fail "typed page 2: $(tn)"
api GET "/api/telemetry/branches/$BR_A1?event_type=device.health"
[ "$(tn)" = "1 3 5" ] || fail "branch telemetry: $(tn)"
api GET "/api/telemetry/branches/$BR_A1?event_type=device.health&limit=2"
api GET "/api/telemetry/branches/$BR_A1?event_type=device.health&limit=2&cursor=$(jqr .next_cursor)"
[ "$(tn)" = "5" ] || fail "branch typed page 2: $(tn)"
api GET "/api/telemetry/chains/$CHAIN_A?event_type=lock.fault"
[ "$(tn)" = "2 4" ] || fail "chain typed: $(tn)"
api GET "/api/telemetry/chains/$CHAIN_A?event_type=lock.fault&limit=1"
api GET "/api/telemetry/chains/$CHAIN_A?event_type=lock.fault&limit=1&cursor=$(jqr .next_cursor)"
[ "$(tn)" = "4" ] || fail "chain typed page 2: $(tn)"
api GET "/api/telemetry/chains/$CHAIN_A?event_type=no.such.type"
[ "$(jqr '.items | length')" = 0 ] || fail "absent type: $(tn)"
api GET "/api/telemetry/chains/$CHAIN_A"
[ "$(tn)" = "20 1 2 3 4 5" ] || fail "chain telemetry: $(tn)"
# a cursor of another chain's row positions nothing
bcur=$(db_sql "SELECT id FROM telemetry WHERE device_id = '$DEV_B1' ORDER BY id LIMIT 1")
api GET "/api/telemetry/chains/$CHAIN_A?cursor=$bcur"
[ "$(jqr '.items | length')" = 0 ] || fail "foreign telemetry cursor: $(tn)"
api GET "/api/telemetry/chains/01890000-0000-7000-8000-000000000000"
expect_error 404
for q in "cursor=abc" "cursor=-1" "cursor=0" "cursor=99999999999999999999" "event_type=a%20b" \
	"event_type=%27%20OR%20%271%27%3D%271" "from=now" "limit=201" "device_id=$DEV_B1"; do
	api GET "/api/telemetry/devices/$DEV_A1?$q"
	expect_error 400
done
api POST "/api/telemetry/devices/$DEV_A1" '{}'
expect_error 405

note "authorization matrix"
declare -A TOK=([platform]=$TOK_PLATFORM [admin_a]=$TOK_ADMIN_A [admin_b]=$TOK_ADMIN_B
	[mgr_a1]=$TOK_MGR_A1 [mgr_b1]=$TOK_MGR_B1)
ROLES=(platform admin_a admin_b mgr_a1 mgr_b1)
row() {
	local req=$1; shift
	local method=${req%% *} rest=${req#* } path body=
	path=${rest%% *}
	[ "$rest" = "$path" ] || body=${rest#* }
	for role in "${ROLES[@]}"; do
		AUTH=${TOK[$role]}
		if [ -n "$body" ]; then api "$method" "$path" "$body"; else api "$method" "$path"; fi
		[ "$CODE" = "$1" ] || fail "$role $method $path: expected $1, got $CODE: $(cat "$T/resp.json")"
		if [ "$CODE" -ge 400 ]; then
			expect_error "$CODE"
		fi
		shift
	done
}
#                                                         platform admin_a admin_b mgr_a1 mgr_b1
for br in "$BR_A1" "$BR_A2" "$BR_B1"; do
	case $br in
	"$BR_A1") want="200 200 404 200 404"; cmd="202 202 404 202 404"; cart=$CART_A1_1 ;;
	"$BR_A2") want="200 200 404 404 404"; cmd="409 409 404 404 404"; cart=$CART_A2_1 ;;
	"$BR_B1") want="200 404 200 404 200"; cmd="202 404 202 404 202"; cart=$CART_B1_1 ;;
	esac
	# shellcheck disable=SC2086
	{
		row "GET /api/branches/$br/carts" $want
		row "GET /api/branches/$br/carts/$cart" $want
		row "GET /api/branches/$br/rentals/active" $want
		row "GET /api/branches/$br/rentals/history" $want
		row "GET /api/branches/$br/rentals/stats" $want
		row "GET /api/telemetry/branches/$br" $want
		row "POST /api/branches/$br/carts/assign {\"cart_id\":\"$cart\",\"phone\":\"+972501234567\"}" $cmd
		row "POST /api/branches/$br/carts/return {\"cart_id\":\"$cart\"}" $cmd
	}
done
row "GET /api/telemetry/devices/$DEV_A1"            200 200 404 200 404
row "GET /api/telemetry/devices/$DEV_A2"            200 200 404 404 404
row "GET /api/telemetry/devices/$DEV_B1"            200 404 200 404 200
row "GET /api/telemetry/chains/$CHAIN_A"            200 200 404 200 404
row "GET /api/telemetry/chains/$CHAIN_B"            200 404 200 404 200
# a cart named under a branch the caller sees, but belonging to another
row "GET /api/branches/$BR_A1/carts/$CART_A2_1"     404 404 404 404 404
# commands created through carts are read under the same rule
AUTH=$TOK_MGR_B1
api POST "/api/branches/$BR_B1/carts/assign" "{\"cart_id\":\"$CART_B1_1\",\"phone\":\"+972509999999\"}"
expect_code 202
C_B1=$(jqr .id)
row "GET /api/commands/$C_B1"                       200 404 200 404 200
row "GET /api/commands/$C_ASSIGN"                   200 200 404 200 404

note "lists, stats and telemetry never carry another tenant's rows"
AUTH=$TOK_MGR_A1
api GET "/api/telemetry/chains/$CHAIN_A?limit=200"
[ "$(jqr '[.items[].branch_id] | unique | join(" ")')" = "$BR_A1" ] || fail "manager A1 sees telemetry of another branch"
AUTH=$TOK_ADMIN_A
api GET "/api/telemetry/chains/$CHAIN_A?limit=200"
[ "$(jqs '[.items[].device_id] | index("'"$DEV_B1"'")' '.items | length')" = "null|6" ] \
	|| fail "admin A's chain telemetry: $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A1/rentals/history?limit=200&phone=%2B972501111111"
[ "$(jqr '[.items[].branch_id] | unique | join(" ")')" = "$BR_A1" ] || fail "history leaked another branch"
api GET "/api/branches/$BR_A1/rentals/stats"
[ "$(jqr .counts.total)" = 6 ] || fail "stats counted another branch's rentals"

note "rentals: stats per hour, durations, utilisation on known data (branch A3)"
AUTH=$TOK_PLATFORM
api POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"A-003\",\"name\":\"A three\"}"
expect_code 201; BR_A3=$(jqr .id)
FIX=
T0=$(($(date -u -d 2025-03-10T00:00:00Z +%s) * 1000))
at() { echo $((T0 + $1)); } # at MS-after-midnight
hm() { echo $((${1%:*} * HOUR + 10#${1#*:} * MIN)); } # hm 8:40 -> ms
K1=$(new_uuid); K2=$(new_uuid); K3=$(new_uuid); K4=$(new_uuid); K5=$(new_uuid)
for k in "1 $K1" "2 $K2" "3 $K3" "4 $K4"; do ins_cart "${k#* }" "$BR_A3" "${k%% *}" null available; done
ins_cart "$K5" "$BR_A3" 5 null offline # removed: not counted among the carts
# rental CART START EXPECTED ACTUAL|- STATUS (times of 2025-03-10, UTC)
rent() {
	local act=null
	[ "$4" = - ] || act=$(at "$(hm "$4")")
	ins_rental "$(new_uuid)" "$1" "$BR_A3" "+972540000000" "$(at "$(hm "$2")")" "$(at "$(hm "$3")")" "$act" "$5"
}
# the range is [08:00, 12:00): 4 carts x 4 h = 57600 cart-seconds
rent "$K4" 7:00 8:00 8:00 returned         # ends at the range's start: 0 s
rent "$K2" 7:30 9:00 8:30 returned         # started before: 1800 s in the range
rent "$K1" 8:10 9:00 8:20 returned         # 10 min [0,15); 600 s
rent "$K2" 8:40 9:00 9:25 returned-late    # 45 min [30,60); 2700 s
rent "$K1" 9:00 12:00 11:30 returned       # 150 min [120,240); 9000 s
rent "$K2" 10:00 11:00 10:20 returned      # 20 min [15,30); 1200 s
rent "$K2" 10:30 11:00 10:45 returned      # 15 min exactly: [15,30); 900 s
rent "$K2" 11:00 12:00 16:00 returned-late # 300 min [240,inf); 3600 s (to 12:00)
rent "$K1" 11:45 12:00 - cancelled         # counted per hour, never rented time
rent "$K4" 11:50 12:30 - active            # open (overdue by now): 600 s (to 12:00)
rent "$K1" 12:00 12:30 12:30 returned      # starts at the range's end: outside
# open since the day before (status overdue): the whole range, 14400 s
ins_rental "$(new_uuid)" "$K3" "$BR_A3" "+972540000000" $((T0 - 4 * HOUR)) $((T0 - 2 * HOUR)) null overdue
db_sql "$FIX" >/dev/null
api GET "/api/branches/$BR_A3/rentals/stats?from=2025-03-10T08:00:00Z&to=2025-03-10T12:00:00Z"
expect_code 200
IFS='|' read -r counts hours buckets edges util < <(jqs \
	'.counts | [.total, .active, .overdue, .returned, ."returned-late", .cancelled] | join(" ")' \
	'[.per_hour[] | "\(.hour)=\(.count)"] | join(" ")' '[.durations.buckets[].count] | join(" ")' \
	'[.durations.buckets[] | "\(.min_minutes)-\(.max_minutes)"] | join(" ")' \
	'.utilisation | "\(.carts) \(.rented_seconds) \(.range_seconds) \((.ratio - 34800 / 57600) | fabs < 1e-12)"')
[ "$counts" = "8 0 1 4 2 1" ] || fail "A3 counts: $(cat "$T/resp.json")"
[ "$hours" = "2025-03-10T08:00:00Z=2 2025-03-10T09:00:00Z=1 2025-03-10T10:00:00Z=2 2025-03-10T11:00:00Z=3" ] \
	|| fail "per_hour: $hours"
[ "$buckets" = "1 2 1 0 1 1" ] || fail "duration buckets: $buckets"
[ "$edges" = "0-15 15-30 30-60 60-120 120-240 240-null" ] || fail "bucket edges: $edges"
[ "$util" = "4 34800 14400 true" ] || fail "utilisation: $(jq -c .utilisation "$T/resp.json")"
[ "$(jqr .average_duration_minutes)" = 90 ] || fail "average of the six finished: $(jqr .average_duration_minutes)"
# one hour inside a rental of the day before and one open since: 2 of 4 carts
api GET "/api/branches/$BR_A3/rentals/stats?from=2025-03-10T09:30:00Z&to=2025-03-10T10:30:00Z"
[ "$(jqs '.utilisation | "\(.rented_seconds) \(.range_seconds) \(.ratio)"' '.per_hour | length')" = "8400 3600 0.5833333333333334|1" ] \
	|| fail "utilisation of 09:30-10:30: $(cat "$T/resp.json")"
# a range that starts after now: nothing rented yet, no ratio
api GET "/api/branches/$BR_A3/rentals/stats?from=9000-01-01T00:00:00Z&to=9000-01-02T00:00:00Z"
[ "$(jqs '.utilisation | "\(.carts) \(.rented_seconds) \(.range_seconds) \(.ratio)"' '.per_hour | length' \
	'[.durations.buckets[].count] | add')" = "4 0 0 null|0|0" ] || fail "future range: $(cat "$T/resp.json")"
# the default range runs up to now: today's part only, A1's open rentals rented till now
api GET "/api/branches/$BR_A1/rentals/stats"
expect_code 200
IFS='|' read -r ok1 hsum < <(jqs '.utilisation | .carts == 3 and .rented_seconds > 0 and .ratio > 0
	and .ratio <= 1 and .range_seconds >= 29 * 86400 and .range_seconds <= 30 * 86400' '[.per_hour[].count] | add')
[ "$ok1" = true ] || fail "default range utilisation: $(jq -c .utilisation "$T/resp.json")"
[ "$hsum" = 6 ] || fail "per_hour of A1 adds up to $hsum, not 6"

note "faults per cart (telemetry lock.fault / lock.offline, cart from event_data)"
FIX=
fault() { ins_tel "$DEV_A1" "$BR_A1" "$CHAIN_A" "$1" "$2" "$3"; }
cj() { echo "{\"cart_id\": \"$1\", \"rental_id\": null}"; }
for i in 1 2 3; do fault lock.fault $((NOW - i * MIN)) "$(cj "$CART_A1_2")"; done
fault lock.offline $((NOW - 5 * MIN)) "$(cj "$CART_A1_2")"
fault lock.offline $((NOW - 6 * MIN)) "$(cj "$CART_A1_3")"
fault lock.offline $((NOW - 7 * MIN)) "$(cj "$CART_A1_3")"
fault lock.fault $((NOW - 8 * MIN)) "$(cj "$CART_A1_1")"
fault lock.fault $((NOW - 40 * DAY)) "$(cj "$CART_A1_1")"     # outside the default range
fault device.health $((NOW - 9 * MIN)) "$(cj "$CART_A1_1")"   # another type
fault lock.fault $((NOW - 9 * MIN)) "$(cj "$CART_B1_1")"      # not a cart of this branch
fault lock.fault $((NOW - 9 * MIN)) "$(cj not-a-uuid)"        # nothing to join (no cast error)
fault lock.fault $((NOW - 9 * MIN)) '{"cart_id": 7}'
fault lock.offline $((NOW - 9 * MIN)) '[1, 2]'
ins_tel "$DEV_B1" "$BR_B1" "$CHAIN_B" lock.fault $((NOW - 9 * MIN)) "$(cj "$CART_B1_1")"
db_sql "$FIX" >/dev/null
FT='[.items[] | "\(.cart_number):\(.lock_fault):\(.lock_offline)"] | join(" ")'
api GET "/api/branches/$BR_A1/faults"
expect_code 200
[ "$(jqr "$FT")" = "2:3:1 3:0:2 1:1:0" ] || fail "faults of A1: $(cat "$T/resp.json")"
[ "$(jqs '.items[0].cart_id' .branch_id '.from < .to')" = "$CART_A1_2|$BR_A1|true" ] || fail "faults body: $(cat "$T/resp.json")"
from=$(date -u -d "@$(((NOW - 41 * DAY) / 1000))" +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d "@$(((NOW - 6 * MIN) / 1000))" +%Y-%m-%dT%H:%M:%SZ)
api GET "/api/branches/$BR_A1/faults?from=$from&to=$to"
[ "$(jqr "$FT")" = "1:2:0 3:0:1" ] || fail "faults in a range: $(jqr "$FT")"
api GET "/api/branches/$BR_A3/faults"
[ "$(jqr '.items | length')" = 0 ] || fail "faults of A3"
api GET "/api/branches/$BR_B1/faults"
[ "$(jqr "$FT")" = "1:1:0" ] || fail "faults of B1: $(jqr "$FT")"
for q in "from=2020-01-01T00:00:00Z&to=2022-01-01T00:00:00Z" "cart_id=$CART_A1_1"; do
	api GET "/api/branches/$BR_A1/faults?$q"
	expect_error 400
done
api POST "/api/branches/$BR_A1/faults" '{}'
expect_error 405
#                                                         platform admin_a admin_b mgr_a1 mgr_b1
row "GET /api/branches/$BR_A1/faults"               200 200 404 200 404
row "GET /api/branches/$BR_A2/faults"               200 200 404 404 404
row "GET /api/branches/$BR_B1/faults"               200 404 200 404 200
AUTH=$TOK_PLATFORM

note "maintenance commands: 202 set_maintenance, args, 404/409, bad input"
api POST "/api/branches/$BR_A1/carts/$CART_A1_1/maintenance" '{"on":true,"note":"wheel wobbles"}'
expect_code 202
# args with sorted keys (PostgreSQL's jsonb orders them its own way)
ARGS='.args | to_entries | sort_by(.key) | from_entries | tojson'
IFS='|' read -r C_MAINT got < <(jqs .id "[.action, .state, .device_id, ($ARGS)] | join(\" \")")
[ "$got" = "set_maintenance pending $DEV_A1 {\"cart_id\":\"$CART_A1_1\",\"cart_number\":1,\"note\":\"wheel wobbles\",\"on\":true}" ] \
	|| fail "maintenance command: $(cat "$T/resp.json")"
api POST "/api/branches/$BR_A1/carts/$CART_A1_3/maintenance" '{"on":false,"expires_in_s":600}'
expect_code 202
[ "$(jqs "$ARGS" '[.expires_at, .created_at] | map(sub("\\.[0-9]+Z$"; "Z") | fromdate) | .[0] - .[1]')" = \
	"{\"cart_id\":\"$CART_A1_3\",\"cart_number\":3,\"on\":false}|600" ] || fail "maintenance off: $(cat "$T/resp.json")"
C_MAINT_OFF=$(jqr .id)
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
[ "$(jqr "[.commands[] | select(.id == \"$C_MAINT\" or .id == \"$C_MAINT_OFF\") | .action] | join(\" \")")" = \
	"set_maintenance set_maintenance" ] || fail "maintenance commands not handed out: $(cat "$T/resp.json")"
AUTH=$TOK_MGR_A1
api POST "/api/branches/$BR_A1/carts/$CART_A1_2/maintenance" '{"on":true}'
expect_code 202                                    # managers too
AUTH=$TOK_PLATFORM
api POST "/api/branches/$BR_A2/carts/$CART_A2_1/maintenance" '{"on":true}'
expect_error 409 conflict                          # no device
api POST "/api/branches/$BR_A1/carts/$CART_B1_1/maintenance" '{"on":true}'
expect_error 404
api POST "/api/branches/$BR_A1/carts/01890000-0000-7000-8000-000000000000/maintenance" '{"on":true}'
expect_error 404
api GET "/api/branches/$BR_A1/carts/$CART_A1_1/maintenance"
expect_error 405
before=$(ncmd)
long=$(head -c 201 /dev/zero | tr '\0' n)
for body in '' '{"note":"x"}' '{"on":"yes"}' "{\"on\":true,\"note\":\"$long\"}" \
	'{"on":true,"note":"a\u0001b"}' '{"on":true,"expires_in_s":5}' '{"on":true,"cart_id":"x"}' \
	"{\"on\":true,\"note\":$sq} x"; do
	api POST "/api/branches/$BR_A1/carts/$CART_A1_1/maintenance" "$body"
	expect_error 400
done
[ "$(ncmd)" = "$before" ] || fail "bad maintenance input created commands"
M='{"on":false}'
row "POST /api/branches/$BR_A1/carts/$CART_A1_1/maintenance $M"  202 202 404 202 404
row "POST /api/branches/$BR_A2/carts/$CART_A2_1/maintenance $M"  409 409 404 404 404
row "POST /api/branches/$BR_B1/carts/$CART_B1_1/maintenance $M"  202 404 202 404 202
AUTH=$TOK_PLATFORM
api POST "/api/branches/$BR_A1/carts/$CART_A1_1/maintenance" "{\"on\":true,\"note\":\"$(head -c 200 /dev/zero | tr '\0' n)\"}"
expect_code 202                                    # 200 bytes is the limit

note "phone masking by role (privacy.phone_visible_roles, default chain admins)"
phones() { jqr '[.items[] | "\(.phone):\(.phone_masked)"] | join(" ")'; }
AUTH=$TOK_ADMIN_A
api GET "/api/branches/$BR_A1/rentals/active"
[ "$(phones)" = "+972503333333:false +972502222222:false +972501111111:false" ] || fail "chain admin: $(phones)"
api GET "/api/commands/$C_ASSIGN"
[ "$(jqs .args.phone .args.phone_masked)" = "+972501234567|null" ] || fail "chain admin's command: $(jq -c .args "$T/resp.json")"
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1/rentals/active"
[ "$(phones)" = "+*********333:true +*********222:true +*********111:true" ] || fail "masked: $(phones)"
# search by the exact phone still works
MGR_A1_ID=$(db_sql "SELECT id FROM staff_users WHERE email = 'mgr-a1@example.com'")
audited() { grep -c "event=rentals.phone_search user=$MGR_A1_ID branch=$BR_A1\$" "$T/cloud.log" || true; }
n0=$(audited)
api GET "/api/branches/$BR_A1/rentals/history?phone=%2B972501111111"
[ "$(jqs "$IDS" '[.items[].phone] | unique | join(" ")')" = \
	"$R_ONTIME $R_RET|+*********111" ] || fail "search by phone, masked: $(cat "$T/resp.json")"
# each exact search is audited: who, where, never the number
[ "$(audited)" = $((n0 + 1)) ] || fail "phone search not audited once: $(grep phone_search "$T/cloud.log")"
assert_not_logged "+972501111111" "972501111111"
api GET "/api/branches/$BR_A1/rentals/history?phone=0501234567&status=cancelled"
[ "$(phones)" = "*******567:true" ] || fail "a phone without +: $(phones)"
api GET "/api/commands/$C_ASSIGN"
[ "$(jqs .args.phone .args.phone_masked .args.cart_id)" = "+*********567|true|$CART_A1_1" ] \
	|| fail "a manager's view of a cart_assign: $(jq -c .args "$T/resp.json")"
# a platform admin is not the chain's data controller (docs/CLOUD.md)
AUTH=$TOK_PLATFORM
api GET "/api/branches/$BR_A1/rentals/history?phone=%2B972501111111"
[ "$(phones)" = "+*********111:true +*********111:true" ] || fail "platform admin: $(phones)"
# a customer's phone in telemetry (the edge's kiosk.offline_signin) is masked
# as in rentals
FIX=
ins_tel "$DEV_A1" "$BR_A1" "$CHAIN_A" kiosk.offline_signin $((NOW - 2 * DAY)) \
	'{"staff_id": "s1", "phone": "+972504444444", "token_id": "j1", "kiosk": "k"}'
db_sql "$FIX" >/dev/null
tphone() { jqs '.items | length' '.items[0].event_data | [.phone, .phone_masked, .staff_id] | map(tostring) | join(" ")'; }
for who in TOK_PLATFORM TOK_MGR_A1; do
	AUTH=${!who}
	for path in "branches/$BR_A1" "devices/$DEV_A1" "chains/$CHAIN_A"; do
		api GET "/api/telemetry/$path?event_type=kiosk.offline_signin"
		[ "$(tphone)" = "1|+*********444 true s1" ] || fail "$who: telemetry phone of $path: $(cat "$T/resp.json")"
	done
done
AUTH=$TOK_ADMIN_A
api GET "/api/telemetry/chains/$CHAIN_A?event_type=kiosk.offline_signin"
[ "$(tphone)" = "1|+972504444444 null s1" ] || fail "chain admin: telemetry phone: $(cat "$T/resp.json")"
cloud_stop
cloud_config "$T/cloud.json" '{"privacy": {"phone_visible_roles": ["branch-manager"]}}'
cloud_start
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1/rentals/history?phone=%2B972501111111"
[ "$(phones)" = "+972501111111:false +972501111111:false" ] || fail "manager allowed by config: $(phones)"
AUTH=$TOK_ADMIN_A
api GET "/api/branches/$BR_A1/rentals/active"
[ "$(phones)" = "+*********333:true +*********222:true +*********111:true" ] || fail "chain admin not allowed: $(phones)"
cloud_stop
cloud_config "$T/cloud.json" '{"privacy": {"phone_visible_roles": "chain-admin"}}'
if timeout 10 "$CLOUD" --config "$T/cloud.json" >"$T/bad-config.out" 2>&1; then
	fail "a bad privacy config was accepted"
fi
grep -q 'privacy.phone_visible_roles: expected an array' "$T/bad-config.out" || fail "bad privacy config: $(cat "$T/bad-config.out")"

check_logs
assert_not_logged "+972501234567" "+972509999999"
echo "ok"
