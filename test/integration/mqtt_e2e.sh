#!/usr/bin/env bash
# The MQTT link end to end, with real processes: cartwise-cloud (sqlite |
# postgres, the first argument) with its `mqtt` section, Mosquitto with the
# production ACL and the password file cartwise-cloud writes (`passwd_out`,
# then SIGHUP as the systemd path unit does in production), cartwise-simlock
# and cartwise-edge enrolled with the cloud (docs/SYNC.md "MQTT").
#  a. the edge enrolls, its MQTT link comes up, the cloud records it online
#     from its status message;
#  b. with a one-hour heartbeat, a manager's unlock on the cloud API opens the
#     lock within seconds (only MQTT can have carried it), once, and the
#     command reads succeeded; the cloud's cart assign (a customer's rental
#     of cart 4: its lock opens) and cart return (the rental closed) the same,
#     and its maintenance off / on of cart 1 (set_maintenance, with a note);
#  c. refused, no lock moves: a forged token (payload altered, signature
#     kept), a replay of b, another device's genuine command;
#  f. the edge killed with SIGKILL: its Last Will turns it offline in the
#     cloud (here, so that the cloud's link has not been through part e);
#  c. (cont.) a command that expired while the edge was down, published to
#     it once it is back: refused;
#  d. meanwhile, the device's own credentials cannot publish on another
#     device's status or on its own commands topic, nor read another
#     device's commands;
#  e. broker down: an unlock still arrives by heartbeat (the edge restarted
#     with a 5 s one), the edge reads the link disconnected; broker back: the
#     link reconnects.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../mqtt/broker.sh"
for prog in mosquitto_pub mosquitto_sub basenc; do
	command -v $prog >/dev/null || fail "$prog missing (scripts/test installs mosquitto-clients)"
done
# The edge's link logs a refused broker connection (its credentials reach the
# broker a moment after the enrollment) and the broker's absence in part e as
# warnings; nothing is expected at error level.
ALLOWED_ERRORS='^$'

# ---- broker and cloud ----
BROKER_DIR=$T/broker
mkdir -p "$BROKER_DIR"
MQTT_PORT=$(broker_free_port)
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$T/cloud-mqtt.pw"
chmod 600 "$T/cloud-mqtt.pw"
CLOUD_PW=$(cat "$T/cloud-mqtt.pw")
broker_up() { # (re)starts Mosquitto on MQTT_PORT; cw_cleanup stops it
	broker_start "$BROKER_DIR"
	PIDS+=("$(broker_pid)")
}
broker_hup() { kill -HUP "$(broker_pid)"; }
# the cloud writes the broker's password file at its start (passwd_out) and
# after each registration; debug level for its mqtt.status lines
cloud_init "${1:?usage: $0 sqlite|postgres}" "$(jq -n --arg pw "$T/cloud-mqtt.pw" \
	--arg out "$BROKER_DIR/passwd" --argjson port "$MQTT_PORT" '{log_level: "debug",
	mqtt: {host: "127.0.0.1", port: $port, tls: false, password_file: $pw, passwd_out: $out}}')"
grep -q '^cartwise-cloud:' "$BROKER_DIR/passwd" || fail "passwd_out has no cartwise-cloud user"
broker_up
wait_until 20 grep -q 'event=mqtt.connected' "$T/cloud.log" || fail "the cloud did not connect to the broker"
cloud_pub() { # TOPIC PAYLOAD: published as cartwise-cloud, QoS 1
	mosquitto_pub -V 5 -h 127.0.0.1 -p "$MQTT_PORT" -u cartwise-cloud -P "$CLOUD_PW" -q 1 \
		-t "$1" -m "$2" 2>"$T/pub.err" || fail "cartwise-cloud could not publish on $1"
	! grep -q . "$T/pub.err" || fail "publish on $1: $(cat "$T/pub.err")"
}
# every command the cloud publishes, seen as cartwise-cloud (the genuine
# tokens parts b and c replay and alter)
mosquitto_sub -V 5 -h 127.0.0.1 -p "$MQTT_PORT" -u cartwise-cloud -P "$CLOUD_PW" -i "e2e-watch-$$" \
	-q 1 -v -t 'cartwise/+/+/devices/+/commands' -t cartwise/e2e/probe >"$T/watch.out" 2>"$T/watch.err" &
PIDS+=($!)
watching() { cloud_pub cartwise/e2e/probe ready; sleep 0.1; grep -q '^cartwise/e2e/probe ready' "$T/watch.out"; }
wait_until 10 watching || fail "the watching subscriber did not start: $(cat "$T/watch.err")"
published() { # COMMAND_ID: the command's element as the cloud published it
	grep -F "\"id\":\"$1\"" "$T/watch.out" | head -n 1 | cut -d' ' -f2-
}

# ---- the edge: one-hour heartbeat, so that only MQTT delivers quickly ----
edge_with_cloud "http://127.0.0.1:$CLOUD_PORT" '{"heartbeat_s": 3600}'
TOPIC=$(jq -r .mqtt.topic "$T/data/cloud.json")
DPW=$(jq -r .mqtt.password "$T/data/cloud.json")
[ "$(jq -r .mqtt.username "$T/data/cloud.json")" = "$DEV" ] || fail "cloud.json mqtt: $(jq -c '.mqtt | del(.password)' "$T/data/cloud.json")"
mqtt_state() { edge_status | jq -r '.cloud.mqtt'; }
mqtt_is() { [ "$(mqtt_state)" = "$1" ]; }
edge_logged() { grep -q -- "$1" "$T/edge.log"; }
releases() { sim bus0 stats | sed -n 's/.* releases=\([0-9]*\).*/\1/p'; }
hook() { sim bus0 state 1 $(($1 - 1)) | sed -n 's/.* hook=\([a-z]*\).*/\1/p'; }
hook_is() { [ "$(hook "$1")" = "$2" ]; }
cart_cloud_id() {
	capi GET "/api/branches/$CBRANCH/carts"; cexpect 200
	cjq ".items[] | select(.cart_number == $1) | .id"
}
ms() { date +%s%3N; }

note "a. the link comes up; the cloud records the device online from its status"
# the production path unit's job: the cloud rewrote passwd_out at the
# registration, the broker re-reads it on SIGHUP
wait_until 10 grep -q "^$DEV:" "$BROKER_DIR/passwd" || fail "passwd_out has no line for the device"
broker_hup
wait_until 20 mqtt_is connected || fail "the edge's MQTT link is $(mqtt_state), not connected"
status_seen() { grep -q "event=mqtt.status device=$DEV status=online" "$T/cloud.log"; }
wait_until 10 status_seen || fail "the cloud did not record the device's online status"
capi GET "/api/devices/$DEV/status"; cexpect 200
[ "$(cjq .online)" = true ] || fail "the device is not online in the cloud: $(cat "$T/cresp.json")"

note "b. a manager's unlock arrives by MQTT (heartbeat: 1 h), opens the lock once"
rel0=$(releases)
t0=$(ms)
cloud_unlock 1
CMD_B=$CMD
wait_until 10 hook_is 1 open || fail "the lock of cart 1 did not open"
note "   lock open $(($(ms) - t0)) ms after the API request"
wait_until 20 cmd_state_is succeeded || fail "the command reads $(cmd_state), not succeeded"
edge_logged "event=cloud.command command=$CMD_B action=unlock via=mqtt" || fail "the unlock did not come by MQTT"
[ "$(releases)" = $((rel0 + 1)) ] || fail "releases: $rel0 before, $(releases) after one unlock"
[ "$(edge_sql "SELECT count(*) FROM command_log WHERE id = '$CMD_B'")" = 1 ] || fail "command_log of $CMD_B"
ELEM_B=$(published "$CMD_B")
[ -n "$ELEM_B" ] || fail "the watcher did not see command $CMD_B on $TOPIC/commands"

note "b2. the cloud's cart assign and return arrive by MQTT: a rental of cart 4 opened and closed"
rel0=$(releases)
CART4=$(cart_cloud_id 4)
open_rentals_of() { # PHONE: the edge's open rentals of that phone, on cart 4
	api GET "$(branch /rentals/active)"; expect_code 200
	jqr "[.[] | select(.cart_number == 4 and (.user_phone | tostring | test(\"$1\$\")))] | length"
}
capi POST "/api/branches/$CBRANCH/carts/assign" "{\"cart_id\":\"$CART4\",\"phone\":\"0541112233\"}"; cexpect 202
CMD=$(cjq '.command_id // .id'); CMD_ASSIGN=$CMD
wait_until 10 hook_is 4 open || fail "the lock of cart 4 did not open for the cloud's cart assign"
wait_until 20 cmd_state_is succeeded || fail "cart assign reads $(cmd_state), not succeeded"
edge_logged "event=cloud.command command=$CMD_ASSIGN action=cart_assign via=mqtt" || fail "the cart assign did not come by MQTT"
[ "$(open_rentals_of 541112233)" = 1 ] || fail "no open rental of cart 4 on the edge: $(cat "$T/resp.json")"
[ "$(releases)" = $((rel0 + 1)) ] || fail "releases: $rel0 before, $(releases) after the cart assign"
sim bus0 take 1 3 >/dev/null
wait_until 5 cart_has 4 cart_present false || fail "cart 4 not taken"
capi POST "/api/branches/$CBRANCH/carts/return" "{\"cart_id\":\"$CART4\"}"; cexpect 202
CMD=$(cjq '.command_id // .id'); CMD_RETURN=$CMD
wait_until 20 cmd_state_is succeeded || fail "cart return reads $(cmd_state), not succeeded"
edge_logged "event=cloud.command command=$CMD_RETURN action=cart_return via=mqtt" || fail "the cart return did not come by MQTT"
[ "$(open_rentals_of 541112233)" = 0 ] || fail "the rental of cart 4 is still open on the edge"
[ "$(releases)" = $((rel0 + 1)) ] || fail "the cart return released a lock"

note "b3. the cloud's maintenance off and on (set_maintenance) arrive by MQTT and change cart 1"
# b's staff unlock put the available cart 1 in maintenance (docs/RENTALS.md)
# and left its hook open: taken out and docked again it is locked, so that
# maintenance off leaves an available cart (not "hook open without rental")
cart_is 1 maintenance || fail "cart 1 is $(cart_field 1 status) after the staff unlock, not maintenance"
sim bus0 take 1 0 >/dev/null
wait_until 5 cart_has 1 cart_present false || fail "cart 1 not taken"
sim bus0 dock 1 0 >/dev/null
wait_until 5 cart_has 1 hook_closed true || fail "cart 1 not docked"
CART1=$(cart_cloud_id 1)
maint() { # BODY: a maintenance command for cart 1 that succeeds, by MQTT
	capi POST "/api/branches/$CBRANCH/carts/$CART1/maintenance" "$1"; cexpect 202
	CMD=$(cjq .id)
	wait_until 20 cmd_state_is succeeded || fail "set_maintenance $1 reads $(cmd_state), not succeeded"
	edge_logged "event=cloud.command command=$CMD action=set_maintenance via=mqtt" ||
		fail "set_maintenance did not come by MQTT"
}
maint '{"on":false}'
cart_is 1 available || fail "maintenance off left cart 1 $(cart_field 1 status)"
maint '{"on":true,"note":"wheel wobbles"}'
[ "$(cjq .result.maintenance)" = true ] || fail "set_maintenance result: $(cat "$T/cresp.json")"
cart_is 1 maintenance || fail "maintenance on left cart 1 $(cart_field 1 status)"
[ "$(edge_sql "SELECT maintenance_notes FROM carts WHERE cart_number = 1")" = "wheel wobbles" ] ||
	fail "the note did not reach the edge"

# refused_ok ID REASON_RE: the edge logged a refusal of command ID (matching
# REASON_RE), nothing ran: no command_log row, no lock released, cart 3 closed
refused_ok() {
	wait_until 10 edge_logged "event=cloud.command_refused command=$1 reason=$2" ||
		fail "the edge did not refuse command $1 (reason $2)"
	[ "$(edge_sql "SELECT count(*) FROM command_log WHERE id = '$1'")" = 0 ] || fail "command $1 is in command_log"
	[ "$(releases)" = "$rel" ] || fail "a lock was released ($rel before, $(releases) now)"
	hook_is 3 closed || fail "the lock of cart 3 opened"
}
b64url_decode() { local s=$1; while [ $((${#s} % 4)) -ne 0 ]; do s="$s="; done; basenc -d --base64url <<<"$s"; }
b64url_encode() { basenc --base64url -w 0 | tr -d '='; }

note "c. refused: a forged token (other cart, other id, signature kept)"
rel=$(releases)
CART3=$(cart_cloud_id 3)
FID=$(cat /proc/sys/kernel/random/uuid)
tok=$(jq -r .token <<<"$ELEM_B")
claims=$(b64url_decode "$(cut -d. -f2 <<<"$tok")" | jq -c --arg id "$FID" --arg cart "$CART3" \
	'.jti = $id | .args.cart_id = $cart | .args.cart_number = 3')
forged="$(cut -d. -f1 <<<"$tok").$(printf %s "$claims" | b64url_encode).$(cut -d. -f3 <<<"$tok")"
cloud_pub "$TOPIC/commands" "$(jq -c --arg id "$FID" --arg cart "$CART3" --arg tok "$forged" \
	'.id = $id | .args.cart_id = $cart | .args.cart_number = 3 | .token = $tok' <<<"$ELEM_B")"
refused_ok "$FID" bad_signature

note "   a replay of b's command: not run again"
cloud_pub "$TOPIC/commands" "$ELEM_B"
wait_until 10 edge_logged "event=command.duplicate command=$CMD_B" || fail "the replay was not seen as a duplicate"
[ "$(releases)" = "$rel" ] || fail "the replay released a lock"
[ "$(edge_sql "SELECT count(*) FROM command_log WHERE id = '$CMD_B'")" = 1 ] || fail "command_log of the replay"
[ "$(edge_sql "SELECT count(*) FROM outbox WHERE kind = 'command.result' AND entity_id = '$CMD_B'")" = 1 ] ||
	fail "the replay wrote a second result"

note "   another device's genuine command, published on this device's topic"
capi POST "/api/branches/$CBRANCH/enrollment-codes" '{"uses":1}'; cexpect 201
capi POST /api/devices/register "{\"mac_address\":\"02:e2:e0:00:00:02\",\"branch_code\":\"E2E-1\",\"enrollment_code\":\"$(cjq .code)\"}"
cexpect 201
DEV2=$(cjq .device_id); DTOK2=$(cjq .device_token)
DPW2=$(cjq .mqtt_config.password); TOPIC2=$(cjq .mqtt_config.topic)
capi PUT "/api/devices/$DEV2/firmware" '{"version":"9.9.9"}'; cexpect 202
FW=$(cjq .id)
curl -s -o "$T/hb2.json" -H "Authorization: Bearer $DTOK2" -H 'Content-Type: application/json' \
	--data-binary '{"status":"online"}' "http://127.0.0.1:$CLOUD_PORT/api/devices/$DEV2/heartbeat"
ELEM_FW=$(jq -c --arg id "$FW" '.commands[] | select(.id == $id)' "$T/hb2.json")
[ -n "$ELEM_FW" ] || fail "the second device's heartbeat has no command $FW: $(cat "$T/hb2.json")"
cloud_pub "$TOPIC/commands" "$ELEM_FW"
refused_ok "$FW" wrong_device

note "f. the edge killed (SIGKILL): its Last Will turns it offline in the cloud"
online_is() { capi GET "/api/devices/$DEV/status"; cexpect 200; [ "$(cjq .online)" = "$1" ]; }
online_is true || fail "the device is not online before the kill: $(cat "$T/cresp.json")"
offline_before=$(grep -c "event=mqtt.status device=$DEV status=offline" "$T/cloud.log" || true)
kill -KILL "$EDGE_PID"
wait "$EDGE_PID" 2>/dev/null || true
EDGE_PID=
wait_until 10 online_is false || fail "the device still reads online: $(cat "$T/cresp.json")"
[ "$(grep -c "event=mqtt.status device=$DEV status=offline" "$T/cloud.log")" -gt "$offline_before" ] ||
	fail "offline, but not through the Last Will"

note "c. (cont.) a command that expires while the edge is down (10 s to live)"
capi POST "/api/branches/$CBRANCH/carts/$CART3/unlock" '{"expires_in_s":10}'; cexpect 202
XID=$(cjq .id)
wait_until 10 test -n "$(published "$XID")" || fail "the watcher did not see command $XID"

note "d. the device's credentials, outside its own topics (while the command expires)"
wait_until 10 grep -q "^$DEV2:" "$BROKER_DIR/passwd" || fail "passwd_out has no line for the second device"
broker_hup
sleep 0.3
dev_pub() { # USER PASSWORD TOPIC PAYLOAD: MQTT 5, QoS 1; the broker's refusal comes in the PUBACK
	mosquitto_pub -V 5 -h 127.0.0.1 -p "$MQTT_PORT" -u "$1" -P "$2" -i "$1-e2e" -q 1 -t "$3" -m "$4" 2>&1 || true
}
out=$(dev_pub "$DEV2" "$DPW2" "$TOPIC2/status" '{"v":1,"status":"online"}')
[ -z "$out" ] || fail "the second device could not publish its own status: $out"
out=$(dev_pub "$DEV" "$DPW" "$TOPIC2/status" '{"v":1,"status":"offline"}')
grep -q 'Not authorized' <<<"$out" || fail "publishing another device's status was not refused: '$out'"
marker="e2e-forbidden-$RANDOM$RANDOM"
out=$(dev_pub "$DEV" "$DPW" "$TOPIC/commands" "$marker")
grep -q 'Not authorized' <<<"$out" || fail "publishing on its own commands topic was not refused: '$out'"
# the other device's commands topic: the second device gets what the cloud
# publishes there, the first nothing. Its subscription comes with one to its
# own commands topic: a probe received there shows both are in place (the
# restarted edge gets the probes too, from its session, and refuses them).
mosquitto_sub -V 5 -h 127.0.0.1 -p "$MQTT_PORT" -u "$DEV" -P "$DPW" -i "$DEV-spy" -q 1 -v \
	-t "$TOPIC2/commands" -t "$TOPIC/commands" >"$T/spy.out" 2>&1 &
spy=$!
PIDS+=("$spy")
spy_ready() { cloud_pub "$TOPIC/commands" e2e-probe; sleep 0.2; grep -q "^$TOPIC/commands e2e-probe" "$T/spy.out"; }
wait_until 10 spy_ready || fail "the device could not read its own commands topic: $(cat "$T/spy.out")"
mosquitto_sub -V 5 -h 127.0.0.1 -p "$MQTT_PORT" -u "$DEV2" -P "$DPW2" -i "$DEV2-e2e" -q 1 \
	-t "$TOPIC2/commands" -C 1 -W 15 >"$T/own.out" 2>&1 &
own=$!
PIDS+=("$own")
delivered() { cloud_pub "$TOPIC2/commands" "to-$DEV2"; sleep 0.2; grep -q "to-$DEV2" "$T/own.out"; }
wait_until 10 delivered || fail "the second device did not receive its own commands: $(cat "$T/own.out")"
cloud_pub "$TOPIC2/commands" "to-$DEV2"
sleep 0.3
kill "$spy"
grep -v "^$TOPIC/commands e2e-probe" "$T/spy.out" && fail "a device read another device's commands"
grep -q "$marker" "$T/watch.out" && fail "the broker delivered a device's publish on its commands topic"

note "   the expired command reaches the restarted edge (heartbeat now 5 s): refused"
expired() { capi GET "/api/commands/$XID"; [ "$(cjq .state)" = expired ]; }
wait_until 15 expired || fail "command $XID reads $(cjq .state), not expired"
jq '.cloud.heartbeat_s = 5' "$T/edge.json" >"$T/edge.json.new" && mv "$T/edge.json.new" "$T/edge.json"
edge_start
wait_until 20 mqtt_is connected || fail "the restarted edge's link is $(mqtt_state)"
# the broker kept it in the device's session; published once more all the same
cloud_pub "$TOPIC/commands" "$(published "$XID")"
refused_ok "$XID" expired
wait_until 10 online_is true || fail "the restarted device is not online in the cloud: $(cat "$T/cresp.json")"

note "e. broker down: the heartbeat delivers, the link reads disconnected; broker back"
lost_before=$(grep -c 'event=mqtt.connection_lost' "$T/cloud.log" || true)
old=$(broker_pid)
broker_kill
for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" != "$old" ] || unset "PIDS[$i]"; done
wait_until 10 mqtt_is disconnected || fail "with the broker down the link reads $(mqtt_state)"
# the cloud has seen it too: its publish is skipped, not queued for later
cloud_lost() { [ "$(grep -c 'event=mqtt.connection_lost' "$T/cloud.log")" -gt "$lost_before" ]; }
wait_until 10 cloud_lost || fail "the cloud did not notice the broker's absence"
rel=$(releases)
cloud_unlock 2
wait_until 10 grep -q "event=mqtt.command_skipped command=$CMD" "$T/cloud.log" ||
	fail "the cloud did not skip the publish of $CMD"
# back at once (the command was never published: only the heartbeat can
# bring it); the shorter the outage, the sooner the link's backoff retries
broker_up
wait_until 20 hook_is 2 open || fail "the lock of cart 2 did not open (heartbeat)"
note "   lock open; the link reads $(mqtt_state)"
wait_until 20 cmd_state_is succeeded || fail "the command reads $(cmd_state), not succeeded"
edge_logged "event=cloud.command command=$CMD action=unlock via=heartbeat" || fail "the unlock did not come by heartbeat"
[ "$(releases)" = $((rel + 1)) ] || fail "releases: $rel before, $(releases) after one unlock"
wait_until 30 mqtt_is connected || fail "the link did not reconnect: $(mqtt_state)"

for secret in "$DPW" "$DPW2" "$CLOUD_PW" "$DTOK2"; do
	if grep -qF -- "$secret" "$T"/*.log; then fail "a secret is in a log"; fi
done
check_logs
cloud_stop
note "ok"
