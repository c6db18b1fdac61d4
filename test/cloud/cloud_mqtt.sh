#!/usr/bin/env bash
# The cloud's side of the MQTT link (issue 4, docs/SYNC.md "MQTT") on one
# backend, against a real Mosquitto whose password file cartwise-cloud wrote
# (`mqtt-passwd`, then `mqtt.passwd_out` after a registration): mqtt_config
# with the device's derived password at registration and rotation; the broker
# refuses a wrong password; a staff unlock reaches the device's commands topic
# at once (signed token inside); status and telemetry published by the device
# show in GET /api/devices/{id}; garbage is logged once and ignored; with the
# broker down the API still answers and the heartbeat hands the command out.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../mqtt/broker.sh"
for prog in mosquitto_pub mosquitto_sub; do
	command -v $prog >/dev/null || fail "$prog missing (mosquitto-clients; scripts/test installs it)"
done
cw_cleanup_mqtt() { broker_kill; }
# set +e: under errexit the (exit $rc) that hands the status to cw_cleanup
# would end the trap, and a failed run would leave its cloud running
trap 'rc=$?; cw_cleanup_mqtt; set +e; (exit $rc); cw_cleanup' EXIT

mkdir -p "$T/broker"
BROKER_DIR=$T/broker
MQTT_PORT=$(broker_free_port)
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$T/cloud-mqtt.pw"
chmod 600 "$T/cloud-mqtt.pw"
CLOUD_PW=$(cat "$T/cloud-mqtt.pw")
cloud_config "$T/cloud.json" "$(jq -n --arg pw "$T/cloud-mqtt.pw" --arg out "$BROKER_DIR/passwd" \
	--argjson port "$MQTT_PORT" '{mqtt: {host: "mqtt.example.com", port: 8883, tls: false,
	connect_host: "127.0.0.1", connect_port: $port, password_file: $pw, passwd_out: $out}}')"

note "mqtt-acl prints the broker's ACL; mqtt-passwd writes its password file (0600)"
# group-readable on purpose: warned about (like the signing key), not refused
chmod 640 "$T/cloud-mqtt.pw"
"$CLOUD" --config "$T/cloud.json" mqtt-passwd --out "$BROKER_DIR/passwd" 2>"$T/perm.err" ||
	fail "mqtt-passwd failed: $(cat "$T/perm.err")"
grep -q 'event=mqtt.password_permissions' "$T/perm.err" || fail "no warning about a group-readable password file"
chmod 600 "$T/cloud-mqtt.pw"
[ "$(stat -c %a "$BROKER_DIR/passwd")" = 600 ] || fail "password file mode $(stat -c %a "$BROKER_DIR/passwd")"
grep -q '^cartwise-cloud:\$7\$101\$' "$BROKER_DIR/passwd" || fail "no cartwise-cloud user in the password file"
broker_start "$BROKER_DIR"
"$CLOUD" --config "$T/cloud.json" mqtt-acl >"$T/acl.out" || fail "mqtt-acl failed"
diff <(grep -v '^#' "$T/acl.out" | grep .) <(grep . "$BROKER_DIR/acl") ||
	fail "mqtt-acl differs from test/mqtt/broker.sh's ACL"
"$CLOUD" --config "$T/cloud.json" mqtt-acl --out "$T/acl.file" && cmp -s "$T/acl.file" "$T/acl.out" ||
	fail "mqtt-acl --out"

cloud_start
wait_until 10 grep -q 'event=mqtt.connected' "$T/cloud.log" || fail "the cloud did not connect to the broker"

# staff without Argon2id (slow under ASan): users inserted directly, their
# tokens signed with the signing key by the test tool
staff_token() { # USER_ID
	"$JWT" sign "$T/signing.key" "$(jq -nc --arg sub "$1" '{iss: "cartwise-cloud",
		aud: "cartwise-api", typ: "staff", sub: $sub, iat: "@now-10", exp: "@now+3600"}')"
}
insert_user() { # ID EMAIL ROLE CHAIN|null
	local chain=null
	[ "$4" = null ] || chain="'$4'"
	if [ "$BACKEND" = postgres ]; then
		db_sql "INSERT INTO staff_users (id, email, password_hash, role, chain_id) VALUES ('$1', '$2', 'x', '$3', $chain)"
	else
		db_sql "INSERT INTO staff_users (id, email, password_hash, role, chain_id, active, created_ms, updated_ms) VALUES ('$1', '$2', 'x', '$3', $chain, 1, 0, 0)"
	fi
}
ADMIN=$(new_uuid)
insert_user "$ADMIN" admin@example.com platform-admin null
ADMIN_TOK=$(staff_token "$ADMIN")
AUTH=$ADMIN_TOK
api POST /api/chains '{"name":"Chain A","slug":"chain-a"}'; expect_code 201; CHAIN=$(jqr .id)
api POST /api/branches "{\"chain_id\":\"$CHAIN\",\"code\":\"A-001\",\"name\":\"A one\"}"
expect_code 201; BR=$(jqr .id)
api POST /api/branches "{\"chain_id\":\"$CHAIN\",\"code\":\"A-002\",\"name\":\"A two\"}"
expect_code 201; BR2=$(jqr .id)
api POST "/api/branches/$BR/enrollment-codes" '{"uses":2}'; expect_code 201; ECODE=$(jqr .code)
MGR=$(new_uuid)
insert_user "$MGR" mgr@example.com branch-manager "$CHAIN"
db_sql "INSERT INTO user_branches (user_id, branch_id) VALUES ('$MGR', '$BR')"
STAFF=$(staff_token "$MGR")

note "registration: mqtt_config with the device's credentials"
AUTH=
api POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:a1\",\"branch_code\":\"A-001\",\"enrollment_code\":\"$ECODE\"}"
expect_code 201
DEV=$(jqr .device_id); DTOK=$(jqr .device_token)
TOPIC="cartwise/$CHAIN/$BR/devices/$DEV"
[ "$(jqr '.mqtt_config | "\(.broker):\(.port):\(.tls):\(.topic):\(.username)"')" = \
	"mqtt.example.com:8883:false:$TOPIC:$DEV" ] || fail "mqtt_config: $(jqr -c .mqtt_config)"
DPW=$(jqr .mqtt_config.password)
[[ $DPW =~ ^[A-Za-z0-9_-]{43}$ ]] || fail "device password is not 32 bytes of base64url"
AUTH=$DTOK
api POST "/api/devices/$DEV/token" ''
expect_code 200
DTOK=$(jqr .device_token)
[ "$(jqr .mqtt_config.password)" = "$DPW" ] && [ "$(jqr .mqtt_config.topic)" = "$TOPIC" ] ||
	fail "rotation: mqtt_config $(jqr -c '.mqtt_config | del(.password)')"

note "passwd_out now holds the device; the broker (SIGHUP) lets it in with that password only"
wait_until 5 grep -q "^$DEV:\\\$7\\\$" "$BROKER_DIR/passwd" || fail "passwd_out has no line for the device"
[ "$(stat -c %a "$BROKER_DIR/passwd")" = 600 ] || fail "passwd_out mode"
kill -HUP "$(broker_pid)"
sleep 0.3
dev_pub() { mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -u "$DEV" -P "$DPW" -i "$DEV-pub" -q 1 "$@"; }
if mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -u "$DEV" -P "${DPW}x" -q 1 -t "$TOPIC/status" \
	-m '{"v":1,"status":"online"}' 2>/dev/null; then
	fail "the broker accepted a wrong password"
fi
# a persistent session for the device (client id = device id), so that a
# command published while its subscriber is away waits in the broker
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -u "$DEV" -P "$DPW" -i "$DEV" -c -q 1 -t "$TOPIC/commands" -E ||
	fail "the device could not subscribe to its commands topic with its password"

note "a manager's unlock goes out on the device's commands topic at once"
CTL=$(new_uuid); CART=$(new_uuid)
if [ "$BACKEND" = postgres ]; then
	db_sql "INSERT INTO controllers (id, device_id, controller_address) VALUES ('$CTL', '$DEV', 1)"
	db_sql "INSERT INTO carts (id, branch_id, cart_number, locker_id, controller_id, status) VALUES ('$CART', '$BR', 7, 6, '$CTL', 'available')"
else
	db_sql "INSERT INTO controllers (id, device_id, controller_address, updated_ms) VALUES ('$CTL', '$DEV', 1, 0)"
	db_sql "INSERT INTO carts (id, branch_id, cart_number, locker_id, controller_id, status, updated_ms) VALUES ('$CART', '$BR', 7, 6, '$CTL', 'available', 0)"
fi
AUTH=$STAFF
api POST "/api/branches/$BR/carts/$CART/unlock" ''
expect_code 202
CMD=$(jqr .id)
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -u "$DEV" -P "$DPW" -i "$DEV" -c -q 1 -t "$TOPIC/commands" \
	-C 1 -W 10 >"$T/command.json" || fail "no command on $TOPIC/commands"
[ "$(jq -r '"\(.id):\(.action):\(.device_id):\(.args.cart_id):\(.args.cart_number)"' "$T/command.json")" = \
	"$CMD:unlock:$DEV:$CART:7" ] || fail "command payload: $(cat "$T/command.json")"
claims=$(jq -r .token "$T/command.json" | cut -d. -f2)
while [ $(( ${#claims} % 4 )) -ne 0 ]; do claims="$claims="; done
[ "$(basenc -d --base64url <<<"$claims" | jq -r '"\(.typ):\(.sub):\(.jti):\(.act)"')" = \
	"command:$DEV:$CMD:unlock" ] || fail "command token claims"
api GET "/api/commands/$CMD"
[ "$(jqr .state)" = pending ] || fail "a command sent by MQTT must stay pending for the heartbeat: $(jqr .state)"

api POST "/api/branches/$BR/carts/assign" "{\"cart_id\":\"$CART\",\"phone\":\"+972501234567\"}"
expect_code 202
CMD_A=$(jqr .id)
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -u "$DEV" -P "$DPW" -i "$DEV" -c -q 1 -t "$TOPIC/commands" \
	-C 1 -W 10 >"$T/command.json" || fail "no cart_assign command on $TOPIC/commands"
[ "$(jq -r '"\(.id):\(.action):\(.args.cart_id)"' "$T/command.json")" = "$CMD_A:cart_assign:$CART" ] ||
	fail "cart_assign payload: $(cat "$T/command.json")"

note "status and telemetry from the device show in GET /api/devices/{id}"
NOW=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
dev_pub -r -t "$TOPIC/status" -m "{\"v\":1,\"status\":\"online\",\"at\":\"$NOW\",\"firmware_version\":\"1.4.2\"}"
dev_pub -t "$TOPIC/telemetry" -m '{"v":1,"at":"2026-01-01T00:00:00.000Z","health":{"cpu_temp_c":51.5,"outbox_depth":0}}'
dev_status() { api GET "/api/devices/$DEV"; [ "$(jqr '"\(.status):\(.firmware_version):\(.health.cpu_temp_c)"')" = "$1" ]; }
wait_until 10 dev_status "online:1.4.2:51.5" || fail "device after status+telemetry: $(cat "$T/resp.json")"
dev_pub -r -t "$TOPIC/status" -m '{"v":1,"status":"offline"}'
wait_until 10 dev_status "offline:1.4.2:51.5" || fail "device after offline: $(cat "$T/resp.json")"
# an online older than offline_after_s (a retained one replayed) is no sighting
dev_pub -r -t "$TOPIC/status" -m '{"v":1,"status":"online","at":"2026-01-01T00:00:00.000Z","firmware_version":"9.9.9"}'
dev_pub -t "$TOPIC/telemetry" -m '{"v":1,"health":{"cpu_temp_c":51.6}}'
wait_until 10 dev_status "offline:1.4.2:51.6" || fail "a stale online was recorded: $(cat "$T/resp.json")"
dev_pub -r -t "$TOPIC/status" -m '{"v":1,"status":"online","firmware_version":"1.4.2"}'
wait_until 10 dev_status "online:1.4.2:51.6" || fail "device online again: $(cat "$T/resp.json")"
# a reconnect's online keeps a heartbeat's degraded (firmware still taken)
db_sql "UPDATE devices SET status = 'degraded' WHERE id = '$DEV'" >/dev/null
dev_pub -r -t "$TOPIC/status" -m "{\"v\":1,\"status\":\"online\",\"at\":\"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\",\"firmware_version\":\"1.4.3\"}"
wait_until 10 dev_status "degraded:1.4.3:51.6" || fail "online overwrote degraded: $(cat "$T/resp.json")"
db_sql "UPDATE devices SET status = 'online' WHERE id = '$DEV'" >/dev/null
dev_pub -r -t "$TOPIC/status" -m '{"v":1,"status":"online","firmware_version":"1.4.2"}'
wait_until 10 dev_status "online:1.4.2:51.6" || fail "device online after degraded: $(cat "$T/resp.json")"

note "garbage on the device's topics is refused (logged once per kind), nothing written"
{
	echo 'not json'
	echo 'not json'
	echo '{"v":1,"status":"onl'
	echo '[1,2]'
	echo '{"v":2,"status":"offline"}'
	echo '{"v":1,"status":"asleep"}'
	echo '{"v":1,"status":"offline","firmware_version":123}'
	echo '{"v":1,"status":"offline","extra":true}'
	echo '{"v":1,"status":"offline"} {"trailing":1}'
} | dev_pub -t "$TOPIC/status" -l
{
	echo '{"v":1,"health":"hot"}'
	echo '{"v":1,"health":{"cpu_temp_c":99},"at":5}'
	echo '{"v":"1","health":{"cpu_temp_c":99}}'
	printf '{"v":1,"health":{"s":"\xff\xfe"}}\n'
} | dev_pub -t "$TOPIC/telemetry" -l
head -c 20000 /dev/zero | tr '\0' ' ' | sed 's/^/{"v":1,"health":{"x":1}}/' | dev_pub -t "$TOPIC/telemetry" -s
# the device's ACL allows any chain/branch segment: the cloud checks them
dev_pub -t "cartwise/$CHAIN/$BR2/devices/$DEV/status" -m '{"v":1,"status":"offline"}'
# an unknown device id (published with the cloud's own user, which may)
UNKNOWN=$(new_uuid)
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -u cartwise-cloud -P "$CLOUD_PW" -q 1 \
	-t "cartwise/$CHAIN/$BR/devices/$UNKNOWN/status" -m '{"v":1,"status":"online"}'
# a good message after all of them: once it shows, the rest were handled
dev_pub -t "$TOPIC/telemetry" -m '{"v":1,"health":{"cpu_temp_c":52.5}}'
wait_until 10 dev_status "online:1.4.2:52.5" || fail "device after garbage: $(cat "$T/resp.json")"
for want in "reason=not_json_object" "reason=bad_field field=v" "reason=bad_field field=status" \
	"reason=bad_field field=firmware_version" "reason=bad_field field=unknown_key" \
	"reason=bad_field field=health" "reason=too_big" "reason=wrong_chain_or_branch"; do
	grep -F "event=mqtt.refused" "$T/cloud.log" | grep -F "device=$DEV" | grep -qF "$want" ||
		fail "no refusal logged for $want"
done
grep -F "event=mqtt.refused" "$T/cloud.log" | grep -qF "device=$DEV topic=telemetry reason=not_json_object" ||
	fail "invalid UTF-8 not refused"
grep -F "event=mqtt.refused" "$T/cloud.log" | grep -F "device=$UNKNOWN" | grep -qF reason=unknown_device ||
	fail "unknown device not refused"
[ "$(grep -F "event=mqtt.refused" "$T/cloud.log" | grep -F "device=$DEV topic=status reason=not_json_object" | wc -l)" = 1 ] ||
	fail "a repeated refusal was logged more than once"
n=$(db_sql "SELECT count(*) FROM devices")
[ "$n" = 1 ] || fail "a refused message created a device ($n)"
AUTH=
api GET /api/health
expect_code 200

note "broker down: the unlock API still answers at once, the heartbeat hands the command out"
broker_stop
AUTH=$STAFF
start=$(date +%s%N)
api POST "/api/branches/$BR/carts/$CART/unlock" ''
expect_code 202
CMD2=$(jqr .id)
[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 2000 ] || fail "the unlock API waited on the broker"
AUTH=$DTOK
api POST "/api/devices/$DEV/heartbeat" '{"status":"online"}'
expect_code 200
[ "$(jqr "[.commands[].id] | index(\"$CMD2\") != null and index(\"$CMD\") != null and index(\"$CMD_A\") != null")" = true ] ||
	fail "heartbeat commands: $(jqr -c '[.commands[].id]')"

note "revocation: passwd_out loses the device; the (restarted) broker refuses it"
AUTH=$ADMIN_TOK
api POST "/api/devices/$DEV/revoke-tokens" ''
expect_code 200
wait_until 5 bash -c "! grep -q '^$DEV:' '$BROKER_DIR/passwd'" || fail "passwd_out still has a revoked device"
grep -q '^cartwise-cloud:' "$BROKER_DIR/passwd" || fail "passwd_out lost the cloud's user"
connected_before=$(grep -c 'event=mqtt.connected' "$T/cloud.log")
broker_start "$BROKER_DIR"
if dev_pub -t "$TOPIC/status" -m '{"v":1,"status":"online"}' 2>/dev/null; then
	fail "the broker let a revoked device in"
fi
reconnected() { [ "$(grep -c 'event=mqtt.connected' "$T/cloud.log")" -gt "$connected_before" ]; }
wait_until 15 reconnected || fail "the cloud did not reconnect to the restarted broker"

assert_not_logged "$DPW" "$CLOUD_PW"
cloud_stop
check_logs
echo "PASS ($SECONDS s)"
