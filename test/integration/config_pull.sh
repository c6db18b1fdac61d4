#!/usr/bin/env bash
# Versioned configuration pull (docs/SYNC.md "Down: configuration"), with
# real processes: cartwise-cloud (sqlite | postgres, the first argument),
# cartwise-simlock and cartwise-edge.
#  0. before anyone PUT a configuration, the edge has the chain's
#     customer_token_key all the same (in cloud-config.json, at version 0),
#     and so has a second edge of the chain: a customer token issued at this
#     kiosk (staff-PIN sign-in) is accepted at the other one, and refused at
#     an edge of another chain;
#  1. new rules and revoked tokens from the cloud apply live: status shows the
#     version, a new rental takes the new duration, the jti is stored; the
#     kiosk's staff list is kept in cloud-config.json, the chain key stays;
#  2. an invalid version (a cart on a board that does not exist) is refused:
#     the edge keeps running the last good one, status names the key, and the
#     cloud's telemetry has config.rejected;
#  3. a changed cart list is applied by a restart of the engine inside the
#     daemon (same pid), at a safe point;
#  4. restarted with the cloud down, the edge runs the cloud's last version
#     from <data_dir>/cloud-config.json (0600).
. "$(dirname "$0")/lib.sh"
ALLOWED_ERRORS='^$'
cloud_init "${1:?usage: $0 sqlite|postgres}"
PIN=482913
PIN_HASH=$(printf '%s\n' $PIN | "$CTL" pin-hash)
edge_with_cloud "http://127.0.0.1:$CLOUD_PORT" '{"mac_address":"02:e2:e0:00:00:02"}' '{}' \
	"$(jq -n --arg h "$PIN_HASH" '{kiosk: {staff: [{id: "staff-1", name: "Dana", pin_hash: $h}]}}')"
PID0=$EDGE_PID
status() { edge_status; }
cfg_field() { status | jq -r ".cloud.$1"; }
cfg_is() { [ "$(cfg_field "$1" 2>/dev/null)" = "$2" ]; }
wait_until 20 cfg_is state ok || fail "the edge did not enroll: $(status | jq -c .cloud)"
DEV=$(jq -r .device_id "$T/data/cloud.json")
[ "$(cfg_field config_version)" = 0 ] || fail "config_version before any: $(status | jq -c .cloud)"
put_config() { capi PUT "/api/devices/$DEV/config" "$1"; cexpect 200; cjq .version; }

note "0. no configuration: the chain key all the same, a token of this kiosk valid at the chain's others"
# other_edge NAME BRANCH_CODE ENROLLMENT_CODE MAC: one more edge, this one's
# config with its own simulator, port and data dir, no kiosk staff; its API
# port in the variable NAME_PORT
other_edge() {
	local port; port=$(free_port)
	sim_start "$1-bus" modbus --board 1:4
	jq --arg dd "$T/$1-data" --argjson port "$port" --arg tty "$T/$1-bus.tty" --arg bc "$2" \
		--arg code "$3" --arg mac "$4" '.data_dir = $dd | .api.port = $port | .buses[0].port = $tty
		| .cloud.branch_code = $bc | .cloud.enrollment_code = $code | .cloud.mac_address = $mac
		| del(.kiosk)' "$T/edge.json" >"$T/$1.json"
	"$EDGE" --config "$T/$1.json" >>"$T/$1.log" 2>&1 </dev/null &
	PIDS+=($!)
	OTHER_EDGES+=($!)
	printf -v "$1_PORT" %s "$port"
}
OTHER_EDGES=()
# new_branch CODE CHAIN_ID: a branch with a one-use enrollment code (in cresp.json)
new_branch() {
	capi POST /api/branches "{\"chain_id\":\"$2\",\"code\":\"$1\",\"name\":\"$1\"}"; cexpect 201
	capi POST "/api/branches/$(cjq .id)/enrollment-codes" '{"uses":1}'; cexpect 201
}
capi GET "/api/branches/$CBRANCH"; cexpect 200
new_branch E2E-2 "$(cjq .chain_id)"
other_edge peer E2E-2 "$(cjq .code)" 02:e2:e0:00:00:03
capi POST /api/chains '{"name":"Other chain","slug":"other"}'; cexpect 201
new_branch OTH-1 "$(cjq .id)"
other_edge stranger OTH-1 "$(cjq .code)" 02:e2:e0:00:00:04
SEED=$(CTOK=$(jq -r .device_token "$T/data/cloud.json"); capi GET "/api/devices/$DEV/config"; cjq .customer_token_key.seed)
[ "${#SEED}" = 43 ] || fail "the device's pull has no seed: $(cat "$T/cresp.json")"
key_taken() { grep -q 'event=edge.chain_key action=stored' "$1"; }
wait_until 20 key_taken "$T/edge.log" || fail "the edge did not take the chain key"
[ "$(jq -c '[.version, .config, .customer_token_key.seed == $s]' --arg s "$SEED" "$T/data/cloud-config.json")" = '[0,null,true]' ] ||
	fail "cloud-config.json without a version: $(jq -c '.customer_token_key |= keys' "$T/data/cloud-config.json")"
[ "$(cfg_field config_version)" = 0 ] || fail "the key made a version: $(status | jq -c .cloud)"
# a customer signs in at this kiosk (a staff PIN: no SMS needed)
curl -s -o "$T/resp.json" -H 'Content-Type: application/json' \
	--data-binary "{\"phone\":\"0501234567\",\"staff_pin\":\"$PIN\"}" "http://127.0.0.1:$API_PORT/api/auth/offline"
CUST=$(jqr .token)
[ "$(jqr .method)" = staff_pin ] && [ -n "$CUST" ] || fail "offline sign-in: $(cat "$T/resp.json")"
me_rentals() { # PORT: the HTTP status of GET /api/me/rentals with the customer's token
	curl -s -o "$T/me.json" -w '%{http_code}' -H "Authorization: Bearer $CUST" "http://127.0.0.1:$1/api/me/rentals"
}
wait_until 20 key_taken "$T/peer.log" || fail "the chain's other edge did not take the key"
wait_until 20 key_taken "$T/stranger.log" || fail "the other chain's edge did not take its key"
[ "$(jq -r .customer_token_key.seed "$T/peer-data/cloud-config.json")" = "$SEED" ] ||
	fail "the chain's other edge holds another key"
[ "$(jq -r .customer_token_key.seed "$T/stranger-data/cloud-config.json")" != "$SEED" ] ||
	fail "another chain's edge holds this chain's key"
[ "$(me_rentals "$API_PORT")" = 200 ] || fail "the issuing kiosk refused its token: $(cat "$T/me.json")"
[ "$(me_rentals "$peer_PORT")" = 200 ] && [ "$(jq -r .phone "$T/me.json")" = +972501234567 ] ||
	fail "the chain's other kiosk refused the token: $(cat "$T/me.json")"
[ "$(me_rentals "$stranger_PORT")" = 401 ] || fail "another chain's kiosk accepted the token: $(cat "$T/me.json")"
! grep -qF "$SEED" "$T"/*.log || fail "the seed is in a log"
kill -TERM "${OTHER_EDGES[@]}"
for p in "${OTHER_EDGES[@]}"; do wait "$p" || fail "an edge exited badly on SIGTERM"; done

note "1. rules and a revoked token apply live"
JTI=0190aaaa-0000-7000-8000-0000000000aa
STAFF='[{"id":"s-1","name":"Dana","pin_hash":"$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA"}]'
v=$(put_config "{\"rules\":{\"rental_minutes\":45,\"grace_minutes\":5},\"revoked_tokens\":[\"$JTI\"],\"kiosk_staff\":$STAFF}")
[ "$v" = 1 ] || fail "first version $v"
wait_until 15 cfg_is config_version 1 || fail "version 1 not applied: $(status | jq -c .cloud)"
[ "$(jq -r .customer_token_key.seed "$T/data/cloud-config.json")" = "$SEED" ] &&
	[ "$(jq -c .config.kiosk_staff "$T/data/cloud-config.json")" = "$(jq -c . <<<"$STAFF")" ] ||
	fail "cloud-config.json lacks the kiosk's parts: $(jq -c 'keys, (.config | keys)' "$T/data/cloud-config.json")"
[ "$(cfg_field config_pending_version)" = null ] || fail "rules alone left a pending version"
{ [ "$EDGE_PID" = "$PID0" ] && kill -0 "$PID0"; } || fail "the daemon is not the same process"
[ "$(edge_sql "SELECT jti || ',' || config_version FROM revoked_tokens")" = "$JTI,1" ] ||
	fail "revoked tokens: $(edge_sql "SELECT * FROM revoked_tokens")"
api POST "$(branch /carts/assign)" '{"phone":"0541231234"}'; expect_code 201
RID=$(jqr .rental_id); CART=$(jqr .cart_number)
allowed=$(edge_sql "SELECT allowed_ms || ',' || grace_ms FROM rentals WHERE id = '$RID'")
[ "$allowed" = "$((45 * 60000)),$((5 * 60000))" ] || fail "the new rental's times: $allowed"
sim bus0 take 1 $((CART - 1)) >/dev/null
wait_until 5 cart_has "$CART" cart_present false || fail "cart not taken"
api POST "$(branch /carts/return)" '{"phone":"0541231234"}'; expect_code 200
SLOT=$(jqr .slot_number)
sim bus0 dock 1 $((SLOT - 1)) >/dev/null
wait_until 5 cart_is "$SLOT" available || fail "the return did not close the rental"

note "2. an invalid version is refused, the last good one keeps running"
v=$(put_config '{"rules":{"rental_minutes":30},"carts":[{"number":1,"bus":"bus0","board":9,"lock":0}]}')
[ "$v" = 2 ] || fail "second version $v"
wait_until 15 cfg_is config_rejected_version 2 || fail "version 2 not refused: $(status | jq -c .cloud)"
msg=$(cfg_field config_rejected_message)
grep -q 'carts\[0\].board' <<<"$msg" || fail "the message does not name the key: $msg"
[ "$(cfg_field config_version)" = 1 ] || fail "the running version changed: $(status | jq -c .cloud)"
api GET "$(branch /carts)"; expect_code 200
[ "$(jq length "$T/resp.json")" = 4 ] || fail "carts changed: $(cat "$T/resp.json")"
api POST "$(branch /carts/assign)" '{"phone":"0547654321"}'; expect_code 201
RID=$(jqr .rental_id); CART=$(jqr .cart_number)
sim bus0 take 1 $((CART - 1)) >/dev/null
[ "$(edge_sql "SELECT allowed_ms FROM rentals WHERE id = '$RID'")" = $((45 * 60000)) ] ||
	fail "a refused version changed the rules"
rejected_in_cloud() {
	capi GET "/api/telemetry/devices/$DEV?event_type=config.rejected"; [ "$CODE" = 200 ] &&
		[ "$(cjq '[.items[] | select(.event_data.version == 2)] | length')" = 1 ]
}
wait_until 15 rejected_in_cloud || fail "config.rejected not in the cloud: $(cat "$T/cresp.json")"
cjq '.items[0].event_data.message' | grep -q 'carts\[0\].board' || fail "cloud telemetry message: $(cat "$T/cresp.json")"

note "3. a new cart list: applied by an engine restart in the same process"
v=$(put_config '{"rules":{"rental_minutes":45,"grace_minutes":5},"carts":[{"number":1,"bus":"bus0","board":1,"lock":0},{"number":2,"bus":"bus0","board":1,"lock":1},{"number":7,"bus":"bus0","board":1,"lock":3}]}')
[ "$v" = 3 ] || fail "third version $v"
wait_until 20 cfg_is config_version 3 || fail "version 3 not applied: $(status | jq -c .cloud)"
kill -0 "$PID0" || fail "the daemon exited"
grep -q 'event=edge.restarting' "$T/edge.log" || fail "no engine restart logged"
# version 2 was not pulled again by the heartbeats since its refusal
[ "$(grep -c 'event=edge.cloud_config_rejected.*version=2' "$T/edge.log")" = 1 ] ||
	fail "version 2 was refused more than once"
wait_until 10 cart_has 7 cart_number 7 || fail "no cart 7 after the restart"
api GET "$(branch /carts)"; expect_code 200
[ "$(jq -c '[.[].cart_number]' "$T/resp.json")" = '[1,2,7]' ] || fail "carts after the restart: $(jq -c '[.[].cart_number]' "$T/resp.json")"
[ "$(edge_sql "SELECT count(*) FROM rentals WHERE id = '$RID' AND status = 'active'")" = 1 ] ||
	fail "the open rental did not survive the restart"

note "4. restarted with the cloud down: the cloud's last version runs"
[ "$(stat -c %a "$T/data/cloud-config.json")" = 600 ] || fail "cloud-config.json is not 0600"
[ "$(jq -c '[.version, .rejected.version]' "$T/data/cloud-config.json")" = '[3,2]' ] ||
	fail "cloud-config.json: $(cat "$T/data/cloud-config.json")"
cloud_stop
edge_stop
edge_start
wait_until 10 cart_has 7 cart_number 7 || fail "no cart 7 after a restart offline"
[ "$(cfg_field config_version)" = 3 ] || fail "offline restart: $(status | jq -c .cloud)"
[ "$(cfg_field config_rejected_version)" = 2 ] || fail "the refused version was forgotten"
[ "$(edge_sql "SELECT count(*) FROM revoked_tokens")" = 0 ] || fail "version 3 has no revoked tokens"

edge_stop
! grep -qF "$SEED" "$T"/*.log || fail "the seed is in a log"
check_logs
note "ok"
