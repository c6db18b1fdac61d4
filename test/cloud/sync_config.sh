# shellcheck shell=bash
# Versioned device configuration (docs/SYNC.md "Down: configuration"), part of
# cloud_sync.sh (sourced after setup_world, so that it costs no second world):
# PUT by a chain admin or platform admin, GET by the device and by staff,
# ?have=N, the heartbeat's config_version, authorization, bad shapes,
# oversize bodies; the chain's customer_token_key (in every answer to the
# device's own pull, also with no version and unchanged; one per chain, never
# PUT) and kiosk_staff (issue 5).
CFG='{"rules":{"rental_minutes":90},"carts":[{"number":1,"bus":"bus0","board":1,"lock":0}],"revoked_tokens":["0190aaaa-0000-7000-8000-000000000001"]}'

note "nothing configured: version 0, config null, the chain's key all the same; heartbeat says 0"
AUTH=$DTOK_A1
api GET "/api/devices/$DEV_A1/config"; expect_code 200
[ "$(jq -c 'del(.customer_token_key)' "$T/resp.json")" = '{"version":0,"config":null}' ] || fail "empty: $(cat "$T/resp.json")"
SEED_A1=$(jqr .customer_token_key.seed)
[ "$(jq -c '.customer_token_key | keys' "$T/resp.json")" = '["seed"]' ] \
	&& [ "$(printf '%s' "$SEED_A1" | basenc --base64url -d 2>/dev/null | wc -c)" = 32 ] \
	&& [ "${#SEED_A1}" = 43 ] || fail "customer_token_key: not 32 bytes of unpadded base64url"
api POST "/api/devices/$DEV_A1/heartbeat" '{"status":"online"}'; expect_code 200
[ "$(jqr .config_version)" = 0 ] || fail "heartbeat config_version: $(cat "$T/resp.json")"

note "PUT: chain admin of the device's chain -> version 1, then 2"
AUTH=$TOK_ADMIN_A
api PUT "/api/devices/$DEV_A1/config" "$CFG"; expect_code 200
[ "$(jqr .version)" = 1 ] || fail "first version: $(cat "$T/resp.json")"
AUTH=$TOK_PLATFORM
api PUT "/api/devices/$DEV_A1/config" '{"rules":{"rental_minutes":60}}'; expect_code 200
[ "$(jqr .version)" = 2 ] || fail "second version: $(cat "$T/resp.json")"
# versions are per device
api PUT "/api/devices/$DEV_B1/config" '{}'; expect_code 200
[ "$(jqr .version)" = 1 ] || fail "other device's first version: $(cat "$T/resp.json")"

note "GET by the device: newest version; ?have= current -> unchanged; older -> whole config"
AUTH=$DTOK_A1
api GET "/api/devices/$DEV_A1/config"; expect_code 200
[ "$(jq -c 'del(.customer_token_key)' "$T/resp.json")" = '{"version":2,"config":{"rules":{"rental_minutes":60}}}' ] \
	&& [ "$(jqr .customer_token_key.seed)" = "$SEED_A1" ] || fail "device GET: $(cat "$T/resp.json")"
api GET "/api/devices/$DEV_A1/config?have=2"; expect_code 200
[ "$(jq -c 'del(.customer_token_key)' "$T/resp.json")" = '{"version":2,"unchanged":true}' ] || fail "have=2: $(cat "$T/resp.json")"
api GET "/api/devices/$DEV_A1/config?have=1"; expect_code 200
[ "$(jqr .version)" = 2 ] && [ "$(jqr .config.rules.rental_minutes)" = 60 ] || fail "have=1: $(cat "$T/resp.json")"
api GET "/api/devices/$DEV_A1/config?have=-1"; expect_error 400
api GET "/api/devices/$DEV_A1/config?have=x"; expect_error 400
api GET "/api/devices/$DEV_A1/config?hav=0"; expect_error 400
api POST "/api/devices/$DEV_A1/heartbeat" '{"status":"online"}'; expect_code 200
[ "$(jqr .config_version)" = 2 ] || fail "heartbeat config_version after PUT: $(cat "$T/resp.json")"

note "customer_token_key: one seed per chain, the same at every pull, with or without a version"
api GET "/api/devices/$DEV_A1/config?have=1"; expect_code 200
[ "$(jqr .customer_token_key.seed)" = "$SEED_A1" ] && [ "$(jqr '.config | has("customer_token_key")')" = false ] \
	|| fail "seed changed between pulls, or inside the version: $(jq -c '.config | keys' "$T/resp.json")"
# DEV_A9 has no configuration (nobody PUT one): the key all the same
AUTH=$DTOK_A9; api GET "/api/devices/$DEV_A9/config?have=0"; expect_code 200
[ "$(jq -c 'del(.customer_token_key)' "$T/resp.json")" = '{"version":0,"unchanged":true}' ] \
	&& [ "$(jqr .customer_token_key.seed)" = "$SEED_A1" ] || fail "two devices of chain A: $(jq -c 'del(.customer_token_key)' "$T/resp.json")"
AUTH=$DTOK_B1; api GET "/api/devices/$DEV_B1/config"; expect_code 200
SEED_B1=$(jqr .customer_token_key.seed)
[ "${#SEED_B1}" = 43 ] && [ "$SEED_B1" != "$SEED_A1" ] || fail "chain B got chain A's seed or none"
AUTH=$DTOK_A1; api POST "/api/devices/$DEV_A1/heartbeat" '{"status":"online"}'; expect_code 200
[ "$(jqr .config_version)" = 2 ] || fail "the key changed the version: $(cat "$T/resp.json")"

note "GET by staff who see the branch (never the chain's seed); the stored body round-trips"
AUTH=$TOK_MGR_A1
api GET "/api/devices/$DEV_A1/config"; expect_code 200
[ "$(jqr .version)" = 2 ] || fail "manager GET: $(cat "$T/resp.json")"
[ "$(jqr 'has("customer_token_key") or (.config | has("customer_token_key"))')" = false ] || fail "staff GET carries the seed"
AUTH=$TOK_PLATFORM; api GET "/api/devices/$DEV_A1/config"; expect_code 200
[ "$(jqr 'has("customer_token_key") or (.config | has("customer_token_key"))')" = false ] || fail "platform GET carries the seed"
assert_not_logged "$SEED_A1" "$SEED_B1"
AUTH=$TOK_ADMIN_A
api PUT "/api/devices/$DEV_A1/config" "$CFG"; expect_code 200; [ "$(jqr .version)" = 3 ] || fail v3
api GET "/api/devices/$DEV_A1/config"; expect_code 200
[ "$(jq -cS .config "$T/resp.json")" = "$(jq -cS . <<<"$CFG")" ] || fail "round trip: $(cat "$T/resp.json")"

note "kiosk_staff: PUT like rules, delivered to the device as stored"
H1='$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g'
STAFF=$(jq -nc --arg h "$H1" '{kiosk_staff: [{id: "s-1", name: "דנה", pin_hash: $h}, {id: "s_2", name: "Avi", pin_hash: $h}]}')
api PUT "/api/devices/$DEV_A1/config" "$STAFF"; expect_code 200; [ "$(jqr .version)" = 4 ] || fail v4
AUTH=$DTOK_A1; api GET "/api/devices/$DEV_A1/config?have=3"; expect_code 200
[ "$(jq -c .config.kiosk_staff "$T/resp.json")" = "$(jq -c .kiosk_staff <<<"$STAFF")" ] \
	&& [ "$(jqr .customer_token_key.seed)" = "$SEED_A1" ] || fail "kiosk_staff pull: $(cat "$T/resp.json")"
AUTH=$TOK_ADMIN_A

note "authorization: other tenant, branch manager, another device, no token"
AUTH=$TOK_ADMIN_B; api PUT "/api/devices/$DEV_A1/config" '{}'; expect_error 404
AUTH=$TOK_ADMIN_B; api GET "/api/devices/$DEV_A1/config"; expect_error 404
AUTH=$TOK_MGR_B1; api GET "/api/devices/$DEV_A1/config"; expect_error 404
AUTH=$TOK_MGR_A1; api PUT "/api/devices/$DEV_A1/config" '{}'; expect_error 403
AUTH=$DTOK_A1; api PUT "/api/devices/$DEV_A1/config" '{}'; expect_error 401
AUTH=$DTOK_B1; api GET "/api/devices/$DEV_A1/config"; expect_error 403
AUTH=; api GET "/api/devices/$DEV_A1/config"; expect_error 401
AUTH=$TOK_PLATFORM; api PUT "/api/devices/0190aaaa-0000-7000-8000-00000000dead/config" '{}'; expect_error 404
AUTH=$TOK_PLATFORM; api DELETE "/api/devices/$DEV_A1/config"; expect_error 405
AUTH=$TOK_PLATFORM; api PUT "/api/devices/$DEV_A1/config?have=1" '{}'; expect_error 400

note "bad shapes: unknown section, wrong types, bad token ids, not JSON"
AUTH=$TOK_ADMIN_A
bad() { # BODY WORD: 400 whose message names WORD
	api PUT "/api/devices/$DEV_A1/config" "$1"; expect_error 400 invalid
	grep -q -- "$2" <<<"$(jqr .error.message)" || fail "message does not name $2: $(cat "$T/resp.json")"
}
bad '{"api":{"port":1}}' "unknown field 'api'"
bad '{"rules":[]}' 'rules: expected an object'
bad '{"buses":{}}' 'buses: expected an array'
bad '{"carts":[1]}' 'carts\[0\]: expected an object'
bad '{"revoked_tokens":["ok",""]}' 'revoked_tokens\[1\]'
bad "{\"revoked_tokens\":[\"$(printf 'a%.0s' {1..65})\"]}" 'revoked_tokens\[0\]'
bad '{"rules":{},"rules":{}}' 'twice'
bad 'nope' 'not valid JSON'
bad '{"customer_token_key":{"seed":"x"}}' 'customer_token_key: generated by the cloud'
bad '{"kiosk_staff":{}}' 'kiosk_staff: expected an array'
bad '{"kiosk_staff":[1]}' 'kiosk_staff\[0\]: expected an object'
staff1() { jq -nc --arg h "$H1" "{kiosk_staff: [$1]}"; }
bad "$(staff1 '{id: "a b", name: "x", pin_hash: $h}')" 'kiosk_staff\[0\].id'
bad "$(staff1 '{id: "a", name: "", pin_hash: $h}')" 'kiosk_staff\[0\].name'
bad "$(staff1 '{id: "a", name: ("n" * 64), pin_hash: $h}')" 'kiosk_staff\[0\].name'
bad "$(staff1 '{id: "a", name: "x", pin_hash: "$argon2i$v=19$m=4096,t=3,p=1$abc"}')" 'kiosk_staff\[0\].pin_hash: expected an Argon2id'
bad "$(staff1 '{id: "a", name: "x", pin_hash: ($h + ("x" * 64))}')" 'kiosk_staff\[0\].pin_hash'
bad "$(staff1 '{id: "a", name: "x", pin_hash: $h, pin: "1234"}')" 'kiosk_staff\[0\].pin: unknown key'
bad "$(staff1 '{id: "a", name: "x", pin_hash: $h}, {id: "a", name: "y", pin_hash: $h}')" 'kiosk_staff\[1\].id: the same id'
bad "$(staff1 'range(0; 51) | {id: "s\(.)", name: "x", pin_hash: $h}')" 'kiosk_staff: at most 50'
api PUT "/api/devices/$DEV_A1/config"; expect_error 400

note "oversize: a body over 64 KiB is 413, nothing stored"
jq -nc '{carts: [range(0; 3000) | {number: (. + 1), bus: "bus0", board: 1, lock: 0}]}' >"$T/big.json"
[ "$(stat -c %s "$T/big.json")" -gt 65536 ] || fail "test body not big enough"
api_file PUT "/api/devices/$DEV_A1/config" "$T/big.json"; expect_error 413
AUTH=$DTOK_A1; api GET "/api/devices/$DEV_A1/config?have=4"; expect_code 200
[ "$(jqr .unchanged)" = true ] || fail "a refused PUT changed the version: $(cat "$T/resp.json")"
[ "$(db_sql "SELECT count(*) FROM device_configs")" = 5 ] || fail "rows: $(db_sql "SELECT count(*) FROM device_configs")"
AUTH=$TOK_PLATFORM
