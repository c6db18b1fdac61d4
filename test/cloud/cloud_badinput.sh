#!/usr/bin/env bash
# Bad input: malformed JSON, wrong types, missing / unknown / repeated fields,
# oversize bodies, quotes and SQL metacharacters in every string field. Every
# refusal is a 4xx with the error shape and changes nothing; free-text fields
# keep such characters as data.
. "$(dirname "$0")/lib.sh"

setup_world
SQLI="x'); DROP TABLE chains; --"
counts() {
	db_sql "SELECT (SELECT count(*) FROM chains) || '/' || (SELECT count(*) FROM branches) || '/' ||
		(SELECT count(*) FROM devices) || '/' || (SELECT count(*) FROM enrollment_codes) || '/' ||
		(SELECT count(*) FROM staff_users) || '/' || (SELECT count(*) FROM device_tokens) || '/' ||
		(SELECT count(*) FROM commands)"
}
before=$(counts)

# bad METHOD PATH BODY [TOKEN]: must be 400 with the error shape
bad() {
	AUTH=${4-$TOK_PLATFORM}
	api "$1" "$2" "$3"
	expect_error 400
}

note "malformed bodies on every endpoint that takes one"
for ep in "POST /api/chains" "PUT /api/chains/$CHAIN_A" "POST /api/branches" \
	"POST /api/branches/$BR_A1/enrollment-codes" "POST /api/devices/register" \
	"POST /api/auth/login" "PUT /api/devices/$DEV_A1/firmware"; do
	m=${ep%% *} p=${ep#* }
	for body in 'this is not json' '[1,2,3]' '{"name":"x"} {"name":"y"}' '{"name":"a","name":"b"}'; do
		bad "$m" "$p" "$body"
	done
	# no body at all (enrollment codes take their defaults from an empty body)
	if [ "${p%/enrollment-codes}" = "$p" ]; then
		AUTH=$TOK_PLATFORM
		api "$m" "$p"
		[ "$CODE" = 400 ] || fail "$ep without a body: $CODE"
	fi
	# a NUL byte inside the body
	printf '{"name":"a\0b"}' >"$T/nul.json"
	api_file "$m" "$p" "$T/nul.json"
	expect_error 400
done
# the other JSON values that are not an object, once
for body in '{"name":' '"a string"' '42' 'null' 'true'; do
	bad POST /api/chains "$body"
done
for body in 'this is not json' '[1]' '{"status":"online","status":"online"}'; do
	AUTH=$DTOK_A1
	api POST "/api/devices/$DEV_A1/heartbeat" "$body"
	expect_error 400
done

note "wrong types"
bad POST /api/chains '{"name":5,"slug":"t1"}'
bad POST /api/chains '{"name":"n","slug":"t1","active":"yes"}'
bad POST /api/chains '{"name":["n"],"slug":"t1"}'
bad POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"T1\",\"name\":\"n\",\"latitude\":\"31\",\"longitude\":35}"
bad POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":7,\"name\":\"n\"}"
bad POST /api/branches "{\"chain_id\":{\"id\":\"$CHAIN_A\"},\"code\":\"T1\",\"name\":\"n\"}"
bad POST "/api/branches/$BR_A1/enrollment-codes" '{"uses":"3"}'
bad POST "/api/branches/$BR_A1/enrollment-codes" '{"uses":2.5}'
bad POST /api/devices/register '{"mac_address":1,"branch_code":"A-001","enrollment_code":"x"}' ""
bad POST /api/auth/login '{"email":"admin@example.com","password":12345678901}' ""
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{"firmware_version":1}'
expect_error 400
api POST "/api/devices/$DEV_A1/heartbeat" '{"health":"fine"}'
expect_error 400

note "missing and unknown fields (the message names the unknown one)"
bad POST /api/chains '{"name":"n"}'
bad POST /api/chains '{"slug":"t2"}'
bad POST /api/chains '{"name":"n","slug":"t2","colour":"red"}'
[ "$(jqr .error.message)" = "unknown field 'colour'" ] || fail "unknown field not named: $(jqr .error.message)"
bad POST /api/branches "{\"code\":\"T2\",\"name\":\"n\"}"
bad POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"T2\",\"name\":\"n\",\"manager\":\"me\"}"
bad PUT "/api/chains/$CHAIN_A" '{"id":"01890000-0000-7000-8000-000000000000"}'
bad POST "/api/branches/$BR_A1/enrollment-codes" '{"branch_id":"x"}'
bad POST /api/devices/register '{"mac_address":"02:00:00:00:00:99","branch_code":"A-001"}' ""
bad POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:99\",\"branch_code\":\"A-001\",\"enrollment_code\":\"$CODE_A1\",\"role\":\"admin\"}" ""
bad POST /api/auth/login '{"email":"admin@example.com","password":"x","remember":true}' ""
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{"cpu":3}'
expect_error 400

note "oversize bodies: 413 on every endpoint that takes one"
printf '{"name":"%s","slug":"big"}' "$(head -c 70000 /dev/zero | tr '\0' x)" >"$T/big.json"
for ep in "POST /api/chains" "PUT /api/chains/$CHAIN_A" "POST /api/branches" \
	"POST /api/branches/$BR_A1/enrollment-codes" "POST /api/devices/register" \
	"POST /api/auth/login" "PUT /api/devices/$DEV_A1/firmware"; do
	AUTH=$TOK_PLATFORM
	api_file "${ep%% *}" "${ep#* }" "$T/big.json"
	expect_error 413 too_big
done
AUTH=$DTOK_A1
api_file POST "/api/devices/$DEV_A1/heartbeat" "$T/big.json"
expect_error 413
# a health object within the body limit but over its own limit
jq -nc '{health: ([range(400)] | map({key: "k\(.)", value: .}) | from_entries)}' >"$T/health.json"
api_file POST "/api/devices/$DEV_A1/heartbeat" "$T/health.json"
expect_error 413
# fields over their own bounds
bad POST /api/chains "{\"name\":\"$(head -c 300 /dev/zero | tr '\0' n)\",\"slug\":\"t3\"}"
bad POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"$(head -c 80 /dev/zero | tr '\0' C)\",\"name\":\"n\"}"

note "quotes and SQL metacharacters in every constrained string field: refused"
sq=$(jq -Rn --arg s "$SQLI" '$s')
bad POST /api/chains "{\"name\":\"n\",\"slug\":$sq}"
bad PUT "/api/devices/$DEV_A1/firmware" "{\"version\":$sq}"
bad PUT "/api/devices/$DEV_A1/firmware" "{\"version\":\"1\",\"url\":$sq}"
bad PUT "/api/devices/$DEV_A1/firmware" "{\"version\":\"1\",\"sha256\":$sq}"
bad POST /api/branches "{\"chain_id\":$sq,\"code\":\"T4\",\"name\":\"n\"}"
bad POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":$sq,\"name\":\"n\"}"
bad POST /api/devices/register "{\"mac_address\":$sq,\"branch_code\":\"A-001\",\"enrollment_code\":\"$CODE_A1\"}" ""
bad POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:98\",\"branch_code\":$sq,\"enrollment_code\":\"$CODE_A1\"}" ""
bad POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:98\",\"branch_code\":\"A-001\",\"enrollment_code\":$sq}" ""
bad POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:98\",\"serial_number\":\"a b\",\"branch_code\":\"A-001\",\"enrollment_code\":\"$CODE_A1\"}" ""
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" "{\"status\":$sq}"
expect_error 400
# login with metacharacters: just a failed login
AUTH=
api POST /api/auth/login "{\"email\":$sq,\"password\":$sq}"
expect_error 401
api POST /api/auth/login "{\"email\":\"admin@example.com' --\",\"password\":\"' OR '1'='1\"}"
expect_error 401
# query strings and paths
AUTH=$TOK_PLATFORM
api GET "/api/branches?chain_id=%27%20OR%201%3D1%20--"
expect_error 400
api GET "/api/branches?cursor=%27%20OR%201%3D1%20--"
expect_error 400
api GET "/api/branches?limit=1%3B%20DROP%20TABLE%20branches"
expect_error 400
api GET "/api/chains/%27%20OR%20%271%27%3D%271"
expect_error 404
api GET "/api/devices/%27%3B%20DROP%20TABLE%20devices%3B%20--/status"
expect_error 404
# control characters and invalid UTF-8 in free text
bad POST /api/chains '{"name":"a\u0001b","slug":"t5"}'
printf '{"name":"\xff\xfe","slug":"t6"}' >"$T/utf8.json"
AUTH=$TOK_PLATFORM
api_file POST /api/chains "$T/utf8.json"
expect_error 400

after=$(counts)
[ "$before" = "$after" ] || fail "bad input changed the database: $before -> $after"

note "free-text fields keep quotes, metacharacters and Hebrew as data"
AUTH=$TOK_PLATFORM
name="Levi's \"Best\" $SQLI רמי לוי"
api POST /api/chains "$(jq -nc --arg n "$name" '{name: $n, slug: "quotes"}')"
expect_code 201
id=$(jqr .id)
api GET "/api/chains/$id"
[ "$(jqr .name)" = "$name" ] || fail "chain name changed: $(jqr .name)"
api POST /api/branches "$(jq -nc --arg c "$CHAIN_A" --arg n "$name" '{chain_id: $c, code: "Q-1", name: $n, address: $n, city: "Be'"'"'er Sheva"}')"
expect_code 201
bid=$(jqr .id)
api GET "/api/branches/$bid"
[ "$(jqr .name)" = "$name" ] && [ "$(jqr .address)" = "$name" ] && [ "$(jqr .city)" = "Be'er Sheva" ] \
	|| fail "branch text changed: $(cat "$T/resp.json")"
AUTH=
api POST /api/devices/register "$(jq -nc --arg c "$CODE_A1" --arg n "$name" '{mac_address: "02:00:00:00:00:97", serial_number: "S'"'"'1;--\"x", branch_code: "A-001", enrollment_code: $c, device_name: $n}')"
expect_code 201
did=$(jqr .device_id)
dtok=$(jqr .device_token)
AUTH=$dtok
api POST "/api/devices/$did/heartbeat" "$(jq -nc --arg n "$name" '{firmware_version: "1.0'"'"';--", health: {note: $n}}')"
expect_code 200
AUTH=$TOK_PLATFORM
api GET "/api/devices/$did"
[ "$(jqr .device_name)" = "$name" ] && [ "$(jqr .serial_number)" = "S'1;--\"x" ] \
	&& [ "$(jqr .firmware_version)" = "1.0';--" ] && [ "$(jqr .health.note)" = "$name" ] \
	|| fail "device text changed: $(cat "$T/resp.json")"
# and every table is still there
db_sql "SELECT count(*) FROM chains" >/dev/null || fail "chains table gone"
db_sql "SELECT count(*) FROM devices" >/dev/null || fail "devices table gone"

cloud_stop
check_logs
echo "ok"
