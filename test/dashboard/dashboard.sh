#!/usr/bin/env bash
# The staff dashboard end to end in headless chromium (test/dashboard/
# dashboard.mjs, docs/DASHBOARD.md "Tests"): cartwise-cloud on SQLite or
# PostgreSQL (the first argument; PostgreSQL under pg_virtualenv) serving the
# build's web/dashboard, with MQTT to a throwaway Mosquitto (commands);
# cartwise-simlock (one Modbus board, 4 carts) and cartwise-edge enrolled
# with a code of branch E2E-1; branch E2E-2 beside it; a branch manager of
# E2E-1 and a chain admin made through the API, their passwords generated.
# Screenshots: $CW_ARTIFACTS_DIR/<backend>/ (default
# $CW_TEST_ARTIFACTS/dashboard, else <build>/test-artifacts/dashboard), kept.
# Needs test/dashboard/node_modules: scripts/test runs `npm ci` there.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../mqtt/broker.sh"
BACKEND=${1:?usage: $0 sqlite|postgres}
DASH=$CW_SOURCE_DIR/test/dashboard
WEB=$B/web/dashboard
command -v node >/dev/null || fail "node missing (scripts/test installs nodejs)"
[ -d "$DASH/node_modules/playwright-core" ] ||
	fail "playwright-core missing: run 'npm ci' in test/dashboard (scripts/test does)"
[ -f "$WEB/index.html" ] && [ -f "$WEB/app.js" ] || fail "the dashboard is not built in $WEB"
ART=${CW_ARTIFACTS_DIR:-${CW_TEST_ARTIFACTS:+$CW_TEST_ARTIFACTS/dashboard}}
SHOTS=${ART:-$B/test-artifacts/dashboard}/$BACKEND
rm -rf "$SHOTS"
# The board made silent logs at warning level; nothing is expected at error.
ALLOWED_ERRORS='^$'

# chromium starts now, beside the daemons' start; it waits for $T/dash.json
# (the addresses and users), written below once everything is up
note "chromium (screenshots: $SHOTS)"
CW_DASH_CONFIG=$T/dash.json node "$DASH/dashboard.mjs" </dev/null &
NODE_PID=$!
PIDS+=("$NODE_PID")

note "cloud ($BACKEND) with the dashboard and MQTT, Mosquitto, simulator, edge"
BROKER_DIR=$T/broker
mkdir -p "$BROKER_DIR"
MQTT_PORT=$(broker_free_port)
(umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$T/cloud-mqtt.pw")
cloud_init "$BACKEND" "$(jq -n --arg web "$WEB" --arg pw "$T/cloud-mqtt.pw" \
	--arg out "$BROKER_DIR/passwd" --argjson port "$MQTT_PORT" '{web: {dashboard_dir: $web},
	mqtt: {host: "127.0.0.1", port: $port, tls: false, password_file: $pw, passwd_out: $out}}')"
broker_start "$BROKER_DIR"
PIDS+=("$(broker_pid)")
wait_until 20 grep -q 'event=mqtt.connected' "$T/cloud.log" || fail "the cloud did not connect to the broker"
# a 300 ms response timeout and 4 misses before the board counts as offline
# (defaults 50 ms and 3): on a loaded 2-core machine the ASan daemon and the
# simulator stall past 50 ms now and then, and a board that flaps offline on
# its own would pass step 1's board-offline check for the wrong reason
edge_with_cloud "http://127.0.0.1:$CLOUD_PORT" '{}' '{"response_timeout_ms": 300, "offline_after": 4}'
# the production path unit's job: the broker re-reads the password file the
# cloud rewrote at the registration
wait_until 10 grep -q "^$DEV:" "$BROKER_DIR/passwd" || fail "passwd_out has no line for the device"
kill -HUP "$(broker_pid)"
mqtt_up() { [ "$(edge_status | jq -r .cloud.mqtt)" = connected ]; }
wait_until 20 mqtt_up || fail "the edge's MQTT link did not come up"

note "branch E2E-2, a branch manager of E2E-1 and a chain admin"
capi GET "/api/branches/$CBRANCH"; cexpect 200
CHAIN=$(cjq .chain_id)
capi POST /api/branches "{\"chain_id\":\"$CHAIN\",\"code\":\"E2E-2\",\"name\":\"Other branch\"}"; cexpect 201
BRANCH_B=$(cjq .id)
genpw() { head -c 15 /dev/urandom | base64 | tr '+/' '-_'; }
MANAGER_PW=$(genpw)
CHAIN_ADMIN_PW=$(genpw)
capi POST /api/users "$(jq -nc --arg pw "$MANAGER_PW" --arg c "$CHAIN" --arg b "$CBRANCH" \
	'{email: "manager@e2e.example", password: $pw, role: "branch-manager", chain_id: $c, branch_ids: [$b]}')"
cexpect 201
capi POST /api/users "$(jq -nc --arg pw "$CHAIN_ADMIN_PW" --arg c "$CHAIN" \
	'{email: "chain@e2e.example", password: $pw, role: "chain-admin", chain_id: $c}')"
cexpect 201

note "the browser against http://127.0.0.1:$CLOUD_PORT/"
(umask 077; jq -n --arg cloud "http://127.0.0.1:$CLOUD_PORT" --arg edge "http://127.0.0.1:$API_PORT" \
	--arg etok "$TOKEN" --arg ebr "$BRANCH" --arg sock "$T/bus0.sock" --arg a "$CBRANCH" \
	--arg b "$BRANCH_B" --arg chain "$CHAIN" --arg dev "$DEV" --arg mpw "$MANAGER_PW" \
	--arg cpw "$CHAIN_ADMIN_PW" --arg aemail "$CLOUD_ADMIN_EMAIL" --arg apw "$CLOUD_ADMIN_PW" \
	--arg shots "$SHOTS" '{CLOUD_BASE: $cloud, EDGE_BASE: $edge, EDGE_TOKEN: $etok,
	EDGE_BRANCH: $ebr, SIM_SOCK: $sock, BRANCH_A: $a, BRANCH_B: $b, CHAIN_ID: $chain,
	DEVICE_ID: $dev, MANAGER_EMAIL: "manager@e2e.example", MANAGER_PW: $mpw,
	CHAIN_ADMIN_EMAIL: "chain@e2e.example", CHAIN_ADMIN_PW: $cpw, ADMIN_EMAIL: $aemail,
	ADMIN_PW: $apw, SHOTS_DIR: $shots}' >"$T/dash.json.tmp")
mv "$T/dash.json.tmp" "$T/dash.json"
wait "$NODE_PID" || fail "the browser test failed (screenshots so far: $SHOTS)"
note "screenshots kept: $SHOTS ($(find "$SHOTS" -name '*.png' | wc -l) views)"

note "the cloud served the page with its headers and logged no secret"
curl -sfI "http://127.0.0.1:$CLOUD_PORT/app.js" >"$T/head.txt" || fail "HEAD /app.js failed"
grep -qi "^content-security-policy: default-src 'self'" "$T/head.txt" || fail "app.js without the CSP: $(cat "$T/head.txt")"
grep -qi '^x-content-type-options: nosniff' "$T/head.txt" || fail "app.js without nosniff"
for secret in "$MANAGER_PW" "$CHAIN_ADMIN_PW" "$CLOUD_ADMIN_PW"; do
	! grep -qF -- "$secret" "$T"/*.log || fail "a password is in a log"
done
! grep -Eq 'eyJ[A-Za-z0-9_-]{10,}\.eyJ' "$T"/*.log || fail "a token is in a log"
check_logs
edge_stop
cloud_stop
note "ok"
