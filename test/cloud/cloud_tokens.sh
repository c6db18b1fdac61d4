#!/usr/bin/env bash
# Token negatives against the real server: alg none, another algorithm, bad
# signature, tampering, expiry, wrong aud/iss/typ, staff tokens on device
# endpoints and the reverse, revoked device tokens.
. "$(dirname "$0")/lib.sh"

setup_world
KEY=$T/signing.key
"$CLOUD" keygen --out "$T/other.key"
ADMIN_ID=$(db_sql "SELECT id FROM staff_users WHERE email = 'admin@example.com'")
staff_claims() { # staff_claims [jq filter]: claims of a platform admin token
	jq -nc --arg sub "$ADMIN_ID" "{iss: \"cartwise-cloud\", aud: \"cartwise-api\", typ: \"staff\",
		sub: \$sub, iat: \"@now-10\", exp: \"@now+3600\"} | ${1:-.}"
}
b64url_json() { # the JSON of a base64url segment (no padding)
	local p=$1
	while [ $(( ${#p} % 4 )) -ne 0 ]; do p="$p="; done
	basenc -d --base64url <<<"$p"
}
device_jti=$(b64url_json "$(cut -d. -f2 <<<"$DTOK_A1")" | jq -r .jti)
device_claims() {
	jq -nc --arg sub "$DEV_A1" --arg jti "$device_jti" "{iss: \"cartwise-cloud\", aud: \"cartwise-api\",
		typ: \"device\", sub: \$sub, jti: \$jti, iat: \"@now-10\", exp: \"@now+3600\"} | ${1:-.}"
}
staff_get() { AUTH=$1; api GET "/api/branches/$BR_A1"; }
device_hb() { AUTH=$1; api POST "/api/devices/$DEV_A1/heartbeat" '{}'; }

note "positive controls: tokens made by the test tool with the real key work"
staff_get "$("$JWT" sign "$KEY" "$(staff_claims)")"
expect_code 200
device_hb "$("$JWT" sign "$KEY" "$(device_claims)")"
expect_code 200

note "no token, wrong scheme, garbage, oversize"
staff_get ""
expect_error 401 unauthorized
CODE=$(curl -s -o "$T/resp.json" -w '%{http_code}' -H "Authorization: Basic $TOK_PLATFORM" \
	"http://127.0.0.1:$PORT/api/branches/$BR_A1")
expect_error 401
staff_get "x.y.z"
expect_error 401
staff_get "$(head -c 5000 /dev/zero | tr '\0' a).b.c"
expect_error 401
staff_get "' OR 1=1 --"
expect_error 401

note "alg none and other algorithms"
staff_get "$("$JWT" unsigned '{"alg":"none","typ":"JWT"}' "$(staff_claims)")"
expect_error 401
staff_get "$("$JWT" forge "$KEY" '{"alg":"none","typ":"JWT"}' "$(staff_claims)")"
expect_error 401
staff_get "$("$JWT" forge "$KEY" '{"alg":"RS256","typ":"JWT"}' "$(staff_claims)")"
expect_error 401
# the classic confusion: HS256 keyed with the server's public key
staff_get "$("$JWT" hs256-pk "$KEY" "$(staff_claims)")"
expect_error 401
staff_get "$("$JWT" forge "$KEY" '{"alg":"EdDSA","typ":"JWT","crit":["x"]}' "$(staff_claims)")"
expect_error 401

note "bad signature and tampering"
staff_get "$("$JWT" sign "$T/other.key" "$(staff_claims)")"
expect_error 401
good=$("$JWT" sign "$KEY" "$(staff_claims)")
mgr_id=$(db_sql "SELECT id FROM staff_users WHERE email = 'mgr-b1@example.com'")
tampered_payload=$(staff_claims ".sub = \"$mgr_id\"" | basenc --base64url | tr -d '=\n')
staff_get "$(cut -d. -f1 <<<"$good").$tampered_payload.$(cut -d. -f3 <<<"$good")"
expect_error 401
staff_get "${good%?}$( [ "${good: -1}" = A ] && echo B || echo A)"
expect_error 401

note "expiry and times"
staff_get "$("$JWT" sign "$KEY" "$(staff_claims '.exp = "@now-120"')")"
expect_error 401
staff_get "$("$JWT" sign "$KEY" "$(staff_claims '.iat = "@now+600" | .exp = "@now+3600"')")"
expect_error 401
staff_get "$("$JWT" sign "$KEY" "$(staff_claims '.nbf = "@now+600"')")"
expect_error 401
staff_get "$("$JWT" sign "$KEY" "$(staff_claims 'del(.exp)')")"
expect_error 401

note "wrong aud, iss, typ, subject"
staff_get "$("$JWT" sign "$KEY" "$(staff_claims '.aud = "cartwise-edge"')")"
expect_error 401
staff_get "$("$JWT" sign "$KEY" "$(staff_claims '.iss = "evil"')")"
expect_error 401
staff_get "$("$JWT" sign "$KEY" "$(staff_claims '.typ = "customer"')")"
expect_error 401
staff_get "$("$JWT" sign "$KEY" "$(staff_claims '.sub = "01890000-0000-7000-8000-000000000000"')")"
expect_error 401
staff_get "$("$JWT" sign "$KEY" "$(staff_claims '.sub = "x'"'"' OR 1=1"')")"
expect_error 401

note "staff tokens never act as device tokens, and the reverse"
device_hb "$TOK_PLATFORM"
expect_error 401
device_hb "$TOK_MGR_A1"
expect_error 401
staff_get "$DTOK_A1"
expect_error 401
AUTH=$DTOK_A1
api GET /api/chains
expect_error 401
api GET "/api/devices/$DEV_A1"
expect_error 401
api POST "/api/branches/$BR_A1/enrollment-codes" '{}'
expect_error 401
# a device token names one device: another device's endpoint is refused
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_B1/heartbeat" '{}'
expect_error 403
# a well-signed device token whose jti was never issued
device_hb "$("$JWT" sign "$KEY" "$(device_claims '.jti = "01890000-0000-7000-8000-000000000000"')")"
expect_error 401
device_hb "$("$JWT" sign "$KEY" "$(device_claims 'del(.jti)')")"
expect_error 401

note "token rotation"
AUTH=$DTOK_B1
api POST "/api/devices/$DEV_B1/token"
expect_code 200
rot=$(jqr .device_token)
[ "$(jqr .device_id)" = "$DEV_B1" ] && [ "$rot" != "$DTOK_B1" ] || fail "rotation body"
api POST "/api/devices/$DEV_B1/token"
expect_error 401                                  # the old token is dead at once
AUTH=$rot
api POST "/api/devices/$DEV_B1/heartbeat" '{}'
expect_code 200
api POST "/api/devices/$DEV_B1/token" '{"ttl":1}'
expect_error 400
api POST "/api/devices/$DEV_A1/token"
expect_error 403                                  # another device's path
AUTH=$TOK_PLATFORM
api POST "/api/devices/$DEV_B1/token"
expect_error 401                                  # staff tokens are not device tokens
DTOK_B1=$rot

note "revoked device tokens"
device_hb "$DTOK_A1"
expect_code 200
AUTH=$TOK_ADMIN_A
api POST "/api/devices/$DEV_A1/revoke-tokens" '{}'
expect_code 200
device_hb "$DTOK_A1"
expect_error 401
# re-registration of the same device gives a new token; the old stays dead
AUTH=$TOK_ADMIN_A
api POST "/api/branches/$BR_A1/enrollment-codes" '{}'
code=$(jqr .code)
AUTH=
api POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:A1\",\"branch_code\":\"A-001\",\"enrollment_code\":\"$code\"}"
expect_code 201
[ "$(jqr .device_id)" = "$DEV_A1" ] || fail "re-registration made a new device"
new=$(jqr .device_token)
device_hb "$new"
expect_code 200
device_hb "$DTOK_A1"
expect_error 401
# other devices are untouched
AUTH=$DTOK_B1
api POST "/api/devices/$DEV_B1/heartbeat" '{}'
expect_code 200

cloud_stop
check_logs
assert_not_logged "$TOK_PLATFORM" "$DTOK_A1" "$new" "$code"
echo "ok"
