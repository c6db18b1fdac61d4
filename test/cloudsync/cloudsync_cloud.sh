#!/usr/bin/env bash
# The device's cloud link (src/cloudsync) against the real cartwise-cloud of
# this tree, on one backend (sqlite | postgres): enrollment writes cloud.json
# 0600 and survives a restart without a second registration; heartbeats
# reach the cloud (device status and health); a command the cloud signed
# reaches the source once; the cloud stopped and started again
# → the syncer recovers; token rotation at < 1/3 lifetime left (the old token
# is dead, the new one saved); revocation → state revoked, thread alive,
# re-enrollment only with a new code; on SQLite also native TLS with a CA
# file (verification on: without the CA the link fails). A fake in-memory
# source (test/cloudsync/cw_fake_source.c) stands in for the edge.
# shellcheck disable=SC2153,SC2034  # PORT, CODE and AUTH are lib.sh's globals
# shellcheck source=../cloud/lib.sh
. "$(dirname "$0")/../cloud/lib.sh"
DRIVER=$B/test/cloudsync/sync_driver
[ -x "$DRIVER" ] || fail "$DRIVER not built"

CPORT=$(free_port) || fail "no free port"
cloud_config "$T/cloud.json" "{\"listen\":{\"port\":$CPORT}}"
cloud_start
URL="http://127.0.0.1:$PORT"
mkuser admin@example.com platform-admin "$PW" >/dev/null
TOK_PLATFORM=$(login admin@example.com "$PW")
AUTH=$TOK_PLATFORM
api POST /api/chains '{"name":"Chain S","slug":"chain-s"}'; expect_code 201; CHAIN=$(jqr .id)
api POST /api/branches "{\"chain_id\":\"$CHAIN\",\"code\":\"TLV-001\",\"name\":\"Tel Aviv\"}"
expect_code 201; BRANCH=$(jqr .id)
api POST "/api/branches/$BRANCH/enrollment-codes" '{"uses":5}'; expect_code 201; CODE1=$(jqr .code)
api POST "/api/branches/$BRANCH/enrollment-codes" '{"uses":5}'; expect_code 201; CODE2=$(jqr .code)

D=$T/edge # the device's data directory
mkdir -p "$D"
DRIVER_PID=
# driver NAME [options]: in the foreground; drv NAME [options]: in the background
drv_args() {
	echo --url "$URL" --data-dir "$D" --branch-code TLV-001 --mac 02:00:00:00:5c:01 \
		--heartbeat-s 1 --backoff-base-ms 100 --backoff-cap-ms 1000 --status "$T/status.json"
}
driver() {
	local name=$1; shift
	# shellcheck disable=SC2046
	"$DRIVER" $(drv_args) --insecure "$@" 2>"$T/$name-driver.log"
}
drv() {
	local name=$1; shift
	# shellcheck disable=SC2046
	"$DRIVER" $(drv_args) --insecure "$@" 2>"$T/$name-driver.log" &
	DRIVER_PID=$!
	PIDS+=("$DRIVER_PID")
}
drv_stop() {
	kill -TERM "$DRIVER_PID"
	wait "$DRIVER_PID" || fail "driver exit status"
	DRIVER_PID=
}
st() { jq -r "$1" "$T/status.json" 2>/dev/null; }
# for wait_until (its arguments are evaluated once, so read the file inside)
state_is() { [ "$(st .state)" = "$1" ]; }
hb_calls_over() { [ "$(st .server_time_calls)" -gt "$1" ] 2>/dev/null; }
registrations() { grep -c 'event=device.registered' "$T/cloud.log" || true; }

note "first start: enrollment, cloud.json 0600, heartbeat reaches the cloud"
driver enroll --code "$CODE1" --until enrolled --seconds 60
DEV=$(st .device_id)
[ -n "$DEV" ] || fail "not enrolled: $(cat "$T/status.json")"
[ "$(stat -c %a "$D/cloud.json")" = 600 ] || fail "cloud.json mode $(stat -c %a "$D/cloud.json")"
[ "$(jq -r .device_id "$D/cloud.json")" = "$DEV" ] || fail "cloud.json device_id"
[ "$(jq -r .branch_id "$D/cloud.json")" = "$BRANCH" ] || fail "cloud.json branch_id"
[ "$(jq -r .chain_id "$D/cloud.json")" = "$CHAIN" ] || fail "cloud.json chain_id"
[ "$(jq -r .cloud_issuer "$D/cloud.json")" = cartwise-cloud ] || fail "cloud.json cloud_issuer"
for f in "$D"/*; do
	[ "$f" = "$D/cloud.json" ] || fail "left in the data directory: $f"
done
[ "$(registrations)" = 1 ] || fail "registrations: $(registrations)"
AUTH=$TOK_PLATFORM
api GET "/api/devices/$DEV/status"; expect_code 200
[ "$(jqr .online)" = true ] || fail "device not online: $(cat "$T/resp.json")"
[ "$(jqr .firmware_version)" = test-1.2.3 ] || fail "firmware_version: $(cat "$T/resp.json")"
[ "$(jqr .health.fake_marker)" = cloudsync-test ] || fail "health from the source: $(cat "$T/resp.json")"
[ "$(jqr .health.outbox_depth)" = 0 ] || fail "outbox_depth: $(cat "$T/resp.json")"
[ "$(st .server_time_calls)" -ge 1 ] || fail "server_time not passed to the source"
srv=$(st .server_wall_ms); now=$(($(date +%s%N) / 1000000))
if [ $((srv - now)) -ge 5000 ] || [ $((now - srv)) -ge 60000 ]; then fail "server_time $srv vs now $now"; fi

note "restart: the credentials are reused, no second registration"
driver restart --code "$CODE1" --until enrolled --seconds 60
[ "$(st .device_id)" = "$DEV" ] || fail "device id changed"
[ "$(registrations)" = 1 ] || fail "registered again"
grep -q 'event=cloud.enrolled' "$T/restart-driver.log" && fail "enrolled again"

note "a command the cloud signed reaches the source once (verified with the key from enrollment)"
AUTH=$TOK_PLATFORM
api PUT "/api/devices/$DEV/firmware" '{"version":"9.9.9"}'; expect_code 202
CMD=$(jqr .id)
driver cmd --code "$CODE1" --seconds 4
[ "$(st .commands)" = 1 ] || fail "the signed command did not reach the source exactly once: $(st .commands)"
! grep -q 'event=cloud.command_refused' "$T/cmd-driver.log" || fail "a signed command was refused: $(grep command_refused "$T/cmd-driver.log")"

note "the cloud goes away and comes back: backoff, then recovery"
drv outage --code "$CODE1" --seconds 90
wait_until 30 hb_calls_over 0 || fail "no heartbeat before the outage"
cloud_stop
wait_until 20 state_is backoff || fail "state $(st .state) while the cloud is down"
sleep 2
calls=$(st .server_time_calls)
cloud_spawn
cloud_wait_ready
[ "$PORT" = "$CPORT" ] || fail "cloud came back on another port"
wait_until 30 hb_calls_over "$calls" || fail "no heartbeat after the cloud came back: $(cat "$T/status.json")"
wait_until 10 state_is ok || fail "state $(st .state) after recovery"
[ "$(kill -0 "$DRIVER_PID" && echo alive)" = alive ] || fail "driver died"
drv_stop
[ "$(grep -c 'level=warn event=cloud.unreachable' "$T/outage-driver.log")" -le 2 ] \
	|| fail "outage logged once per retry instead of once"
grep -q 'event=cloud.connected' "$T/outage-driver.log" || fail "recovery not logged"

note "token rotation when less than a third of the lifetime is left"
OLD_TOKEN=$(jq -r .device_token "$D/cloud.json")
# the token seems to have been issued long ago: its remaining 30 days are
# less than a third of the lifetime the file now records
jq '.token_issued_at = "2020-01-01T00:00:00.000Z"' "$D/cloud.json" >"$T/cj" && cat "$T/cj" >"$D/cloud.json"
driver rotate --code "$CODE1" --until enrolled --seconds 60
NEW_TOKEN=$(jq -r .device_token "$D/cloud.json")
[ "$NEW_TOKEN" != "$OLD_TOKEN" ] || fail "token not rotated"
[ "$(jq -r .token_issued_at "$D/cloud.json")" != "2020-01-01T00:00:00.000Z" ] || fail "issued_at not renewed"
[ "$(stat -c %a "$D/cloud.json")" = 600 ] || fail "cloud.json mode after rotation"
grep -q 'event=cloud.token_rotated' "$T/rotate-driver.log" || fail "rotation not logged"
AUTH=$OLD_TOKEN; api POST "/api/devices/$DEV/heartbeat" '{}'; expect_code 401
AUTH=$NEW_TOKEN; api POST "/api/devices/$DEV/heartbeat" '{}'; expect_code 200
driver rotate2 --code "$CODE1" --until enrolled --seconds 60
[ "$(jq -r .device_token "$D/cloud.json")" = "$NEW_TOKEN" ] || fail "rotated again without need"

note "revocation: state revoked, thread alive, no more requests; the same code does not re-enroll"
drv revoke --code "$CODE1" --seconds 90
wait_until 30 hb_calls_over 0 || fail "no heartbeat"
AUTH=$TOK_PLATFORM
api POST "/api/devices/$DEV/revoke-tokens" ''; [ "$CODE" = 200 ] || [ "$CODE" = 204 ] || fail "revoke: $CODE"
wait_until 20 state_is revoked || fail "state $(st .state) after revocation"
hb=$(grep -c "route=/api/devices/{id}/heartbeat" "$T/cloud.log")
sleep 2.5
[ "$(kill -0 "$DRIVER_PID" && echo alive)" = alive ] || fail "driver died"
[ "$(st .state)" = revoked ] || fail "state left revoked by itself"
[ "$(grep -c "route=/api/devices/{id}/heartbeat" "$T/cloud.log")" = "$hb" ] || fail "heartbeats after revocation"
drv_stop
[ "$(grep -c 'level=error event=cloud.revoked' "$T/revoke-driver.log")" = 1 ] || fail "revocation not logged once"
driver revoked2 --code "$CODE1" --seconds 3
[ "$(st .state)" = revoked ] || fail "state $(st .state) with the old code"
[ "$(registrations)" = 1 ] || fail "re-enrolled with the code it was enrolled with"

note "a new enrollment code re-enrolls: same device id (same MAC), new token"
driver reenroll --code "$CODE2" --until enrolled --seconds 60
[ "$(st .state)" = ok ] || fail "state $(st .state) after re-enrollment"
[ "$(jq -r .device_id "$D/cloud.json")" = "$DEV" ] || fail "device id changed on re-enrollment"
[ "$(registrations)" = 2 ] || fail "registrations $(registrations)"
REENROLL_TOKEN=$(jq -r .device_token "$D/cloud.json")
AUTH=$REENROLL_TOKEN; api POST "/api/devices/$DEV/heartbeat" '{}'; expect_code 200

note "http:// is refused without insecure_http"
rc=0; "$DRIVER" --url "$URL" --data-dir "$D" --branch-code TLV-001 --seconds 1 2>"$T/nohttp-driver.log" || rc=$?
[ $rc = 1 ] || fail "http:// accepted without insecure_http ($rc)"
grep -q 'level=error event=cloud.config' "$T/nohttp-driver.log" || fail "http:// refusal not logged"

if [ "$BACKEND" = sqlite ] && command -v openssl >/dev/null; then
	note "native TLS: verified with the CA file; without it the link fails"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$T/tls.key" -out "$T/tls.crt" 2>"$T/openssl.out" || fail "openssl failed"
	cloud_stop
	cloud_config "$T/cloud.json" "{\"listen\":{\"port\":$CPORT},\"tls\":{\"cert_file\":\"$T/tls.crt\",\"key_file\":\"$T/tls.key\"}}"
	cloud_start
	URL="https://127.0.0.1:$PORT"
	# shellcheck disable=SC2046
	"$DRIVER" $(drv_args) --ca-file "$T/tls.crt" --until enrolled --seconds 60 2>"$T/tls-driver.log"
	[ "$(st .state)" = ok ] || fail "TLS with the CA file: $(cat "$T/status.json")"
	# shellcheck disable=SC2046
	"$DRIVER" $(drv_args) --seconds 3 2>"$T/tlsbad-driver.log"
	[ "$(st .server_time_calls)" = 0 ] || fail "heartbeat over an unverified certificate"
	grep -q 'error=unauthorized' "$T/tlsbad-driver.log" || fail "certificate failure not reported: $(st .last_error)"
fi

note "no secret in any log"
assert_not_logged "$OLD_TOKEN" "$NEW_TOKEN" "$REENROLL_TOKEN" "$CODE1" "$CODE2"
ALLOWED_ERRORS='event=cloud\.revoked|^level=error event=cloud\.config reason="cloud\.url must start with https://"$'
check_logs
echo ok
