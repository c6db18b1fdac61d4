#!/usr/bin/env bash
# The edge with a "cloud" section: --check-config names it, the daemon starts
# its cloud link beside the rental engine (the cloud itself is absent here:
# nothing answers on the URL), rentals never wait for it, status shows the
# link, cart snapshots in the outbox carry their controller, and SIGTERM
# stops everything cleanly; then, against test/cloudsync's stub, an entry the
# cloud refuses shows in the status (entry_refused, the seq and the code), and
# `cartwisectl enroll` registers the device again.
. "$(dirname "$0")/lib.sh"
# Whatever cloudsync logs about the unreachable cloud is expected here, and
# the refused entry of the last part.
ALLOWED_ERRORS='event=(sync|cloudsync|syncer)[._]|event=cloud\.sync_entry_refused '

sim_start bus0 modbus --board 1:4
CLOUD_PORT=$(free_port) # nothing listens there
edge_config "$T/edge.json" "[{\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"modbus\",
  \"boards\":[{\"address\":1,\"locks\":4}]}]" \
  "{\"cloud\":{\"url\":\"http://127.0.0.1:$CLOUD_PORT\",\"insecure_http\":true,
    \"branch_code\":\"B-1\",\"enrollment_code\":\"enroll-secret-1\",\"heartbeat_s\":5}}"

out=$("$EDGE" --config "$T/edge.json" --check-config) || fail "check-config: $out"
grep -q "cloud=http://127.0.0.1:$CLOUD_PORT" <<<"$out" || fail "check-config does not name the cloud: $out"

edge_start
wait_until 10 cart_is 4 available || fail "carts not ready"
ctl() { "$CTL" --config "$T/edge.json" "$@"; }

note "status shows the cloud link"
st=$(ctl --json status) || fail "status failed"
[ "$(jq -r '.cloud | type' <<<"$st")" = object ] || fail "status has no cloud object: $st"
[ -n "$(jq -r '.cloud.state // empty' <<<"$st")" ] || fail "cloud.state missing: $st"
[ "$(jq -r '.cloud.outbox_depth | type' <<<"$st")" = number ] || fail "cloud.outbox_depth: $st"
jq -e '.cloud | has("device_id") and has("high_water") and has("last_ok")' <<<"$st" >/dev/null \
	|| fail "cloud status fields missing: $st"
# not enrolled (nothing answers): no cloud.json, so no broker to connect to
[ "$(jq -r '.cloud.mqtt' <<<"$st")" = not_configured ] || fail "cloud.mqtt: $st"
ctl status | grep -q '^cloud .*, mqtt not_configured, ' || fail "status text lacks the cloud line with mqtt"

note "a rental does not wait for the cloud"
api POST "$(branch /carts/assign)" '{"phone":"0541231234"}'
expect_code 201
[ "$(edge_sql "SELECT count(*) FROM outbox WHERE kind = 'rental.created' AND acked = 0")" = 1 ] \
	|| fail "rental.created not in the outbox"

note "cart snapshots carry their controller"
n=$(edge_sql "SELECT count(*) FROM outbox WHERE kind LIKE 'cart.%' AND
	json_extract(payload, '\$.cart.controller.protocol') = 'modbus' AND
	json_extract(payload, '\$.cart.controller.address') = 1 AND
	json_extract(payload, '\$.cart.controller.bus_name') = 'bus0'")
[ "$n" -ge 4 ] || fail "only $n cart snapshots with their controller"

note "the enrollment code is not logged"
if grep -q enroll-secret-1 "$T"/*.log; then fail "enrollment code in a log"; fi

edge_stop

note "a cloud that refuses an entry (400 naming it): status shows the queue waiting there"
# test/cloudsync's stub refuses the edge's first entry (its payload is not the
# stub's test pattern): entries[0] -> the edge's seq 1, code invalid
"$CW_PYTHON" "${CW_SOURCE_DIR:?}/test/cloudsync/sync_stub.py" --port "$CLOUD_PORT" \
	>"$T/stub.out" 2>"$T/stub.log" &
PIDS+=($!)
wait_until 10 grep -q '^PORT=' "$T/stub.out" || fail "stub did not start"
edge_start
refused() { [ "$(ctl --json status | jq -r .cloud.refused_seq)" = 1 ]; }
wait_until 20 refused || fail "no refused entry in the status: $(ctl --json status | jq -c .cloud)"
st=$(ctl --json status)
[ "$(jq -r '.cloud.state' <<<"$st")" = entry_refused ] || fail "state: $(jq -c .cloud <<<"$st")"
[ "$(jq -r '.cloud.refused_code' <<<"$st")" = invalid ] || fail "code: $(jq -c .cloud <<<"$st")"
[ "$(jq -r '.cloud.sync_stopped' <<<"$st")" = true ] || fail "sync_stopped: $(jq -c .cloud <<<"$st")"
ctl status | grep -q '^sync stopped: the cloud refuses outbox entry 1 (invalid)' \
	|| fail "status text: $(ctl status | head -3)"
[ "$(edge_sql "SELECT acked FROM outbox WHERE seq = 1")" = 0 ] || fail "the refused entry was acknowledged"
[ "$(grep -c 'level=error event=cloud.sync_entry_refused' "$T/edge.log")" = 1 ] \
	|| fail "the refused entry not logged exactly once"

note "cartwisectl enroll --code -: the old credentials are kept aside, the edge registers again; the code is never logged"
ctl enroll --help | grep -q '^Usage: cartwisectl enroll' || fail "enroll --help"
rc=0; ctl enroll extra >/dev/null 2>&1 || rc=$?; [ "$rc" = 2 ] || fail "bad usage exit $rc"
echo enroll-secret-2 | ctl enroll --code - >/dev/null || fail "enroll failed"
reg2() { [ "$(curl -sf "http://127.0.0.1:$CLOUD_PORT/stub/state" | jq .registrations)" = 2 ]; }
wait_until 20 reg2 || fail "no second registration"
wait_until 10 test -f "$T/data/cloud.json" || fail "no new cloud.json"
compgen -G "$T/data/cloud.json.replaced-*" >/dev/null || fail "the old credentials were not kept"
grep -q 'event=cloud.reenroll device=.* kept=' "$T/edge.log" || fail "re-enrollment not logged"
if grep -q enroll-secret-2 "$T"/*.log; then fail "the new code in a log"; fi

check_logs
edge_stop
note "ok"
