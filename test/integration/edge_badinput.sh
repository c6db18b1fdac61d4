#!/usr/bin/env bash
# Bad input of every kind gets a clear error and leaves the database as it was.
. "$(dirname "$0")/lib.sh"

note "bad configs are refused at start with a message naming the key"
cfg_err() { # cfg_err FILE EXPECTED_SUBSTRING
	local out rc=0
	out=$("$EDGE" --config "$1" 2>&1 </dev/null) || rc=$?
	[ $rc -ne 0 ] || fail "config $1 was accepted"
	grep -q -- "$2" <<<"$out" || fail "config error does not mention '$2': $out"
}
sim_start bus0 modbus --board 1:4
edge_config "$T/good.json" "[{\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"modbus\",\"boards\":[{\"address\":1,\"locks\":4}]}]"
jq '. + {colour: "red"}' "$T/good.json" >"$T/unknown.json"
cfg_err "$T/unknown.json" colour
jq '.buses[0].boards[0].locks = 40' "$T/good.json" >"$T/locks.json"
cfg_err "$T/locks.json" 'buses\[0\].boards\[0\].locks'
jq '.buses[0].protocol = "canbus"' "$T/good.json" >"$T/proto.json"
cfg_err "$T/proto.json" 'buses\[0\].protocol'
jq '.rules.rental_minutes = "long"' "$T/good.json" >"$T/type.json"
cfg_err "$T/type.json" 'rules.rental_minutes'
jq 'del(.branch_id)' "$T/good.json" >"$T/missing.json"
cfg_err "$T/missing.json" branch_id
head -c 60 "$T/good.json" >"$T/half.json"
cfg_err "$T/half.json" 'JSON'
cfg_err "$T/nonexistent.json" 'nonexistent.json'
jq --arg p "$T/no-such-port" '.buses[0].port = $p' "$T/good.json" >"$T/noport.json"
cfg_err "$T/noport.json" 'no-such-port'
"$EDGE" --help | grep -q -- --config || fail "--help does not document --config"

cp "$T/good.json" "$T/edge.json"
API_PORT=$(jq -r .api.port "$T/edge.json")
edge_start
wait_until 10 cart_is 4 available || fail "carts not ready"
api POST "$(branch /carts/assign)" '{"phone":"0521112222"}'
expect_code 201
# What bad input must not change: rentals, their outbox entries, cart states.
# (A board that misses polls on a loaded machine may add board-online entries,
# which are the truth about the hardware, not an effect of the request.)
snapshot() {
	edge_sql "SELECT (SELECT count(*) FROM rentals)||'/'||(SELECT group_concat(status) FROM rentals)||'/'||
		(SELECT count(*) FROM outbox WHERE kind LIKE 'rental.%')||'/'||
		(SELECT group_concat(cart_number||':'||status) FROM carts)"
}
before=$(snapshot)

note "auth"
CODE=$(curl -s -o "$T/resp.json" -w '%{http_code}' "http://127.0.0.1:$API_PORT$(branch /carts)")
expect_code 401
CODE=$(curl -s -o "$T/resp.json" -w '%{http_code}' -H 'Authorization: Bearer wrong-token-wrong-token' "http://127.0.0.1:$API_PORT$(branch /carts)")
expect_code 401
[ -n "$(jqr .error.message)" ] || fail "401 without an error message"

note "malformed requests"
api POST "$(branch /carts/assign)" 'this is not json'
expect_code 400
[ "$(jqr .error.code)" != null ] || fail "400 without error.code"
api POST "$(branch /carts/assign)" '{"phone": 521234567}'
expect_code 400
api POST "$(branch /carts/assign)" '{"phone":"0521234567","extra":1}'
expect_code 400
api POST "$(branch /carts/assign)" '{}'
expect_code 400
api POST "$(branch /carts/assign)" "{\"phone\":\"05'); DROP TABLE rentals; --\"}"
expect_code 400
api POST "$(branch /carts/assign)" "{\"phone\":\"$(head -c 20000 /dev/zero | tr '\0' 1)\"}"
expect_code 413
api GET /api/branches/other-branch/carts
expect_code 404
api GET "$(branch /carts/999)"
expect_code 404
api GET "$(branch "/carts/x'%20OR%201=1--")"
expect_code 404
api GET /api/nothing-here
expect_code 404
api DELETE "$(branch /carts)"
expect_code 405

note "state conflicts"
api POST "$(branch /carts/assign)" '{"phone":"0521112222"}'
expect_code 409
api POST "$(branch /carts/return)" '{"phone":"0529999999"}'
expect_code 404
api POST /api/admin/rentals/00000000-0000-7000-8000-000000000000/return '{}'
expect_code 404

after=$(snapshot)
[ "$before" = "$after" ] || fail "bad input changed the database: $before -> $after"

note "a board answering garbage"
SIM_ERR_OK=1 sim bus0 fault crc 1 on >/dev/null
wait_until 10 cart_is 2 offline || fail "garbage board not offline"
api POST "$(branch /carts/assign)" '{"phone":"0523334444"}'
[ "$CODE" = 409 ] || [ "$CODE" = 503 ] || fail "rent with only a garbage board: got $CODE"
after2=$(edge_sql "SELECT count(*) FROM rentals WHERE status IN ('active','overdue')")
[ "$after2" = 1 ] || fail "a rental was opened on a garbage board"

check_logs
edge_stop
note "ok"
