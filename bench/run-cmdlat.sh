#!/usr/bin/env bash
# run-cmdlat.sh BUILD_DIR - command latency over MQTT (issue 4,
# docs/BENCHMARKS.md "Issue 4: command latency over MQTT").
#
# Real processes on loopback: cartwise-cloud (SQLite on disk, or PostgreSQL
# with CW_BENCH_BACKEND=postgres under pg_virtualenv) with its `mqtt` section,
# Mosquitto with the production ACL and the password file the cloud writes,
# cartwise-simlock pacing its bytes at 19200 baud (one Modbus board of 16
# locks re-latching an untaken hook after 300 ms) and cartwise-edge enrolled
# with the cloud, heartbeat one hour (so every command goes by MQTT). Then
# bench_cmdlat unlocks CW_BENCH_UNLOCKS [200] carts through the cloud API,
# one at a time, and reads the moment each release was confirmed from the
# edge's command_log. The set-up reuses the integration tests' helpers
# (test/integration/lib.sh, test/mqtt/broker.sh).
#
# Builds nothing: meson setup build-bench --buildtype=release && ninja -C build-bench
# Figures only: the exit status says whether the run worked, not whether the
# target (p99 <= 100 ms) was met.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
DRIVER=$BUILD/bench/bench_cmdlat
UNLOCKS=${CW_BENCH_UNLOCKS:-200}
LOCKS=16
[ -x "$DRIVER" ] || { echo "run-cmdlat: $DRIVER is not built (ninja -C $BUILD)" >&2; exit 1; }
if jq -e '.[] | select(.name=="b_sanitize") | .value != "none"' \
	"$BUILD/meson-info/intro-buildoptions.json" >/dev/null 2>&1; then
	echo "run-cmdlat: warning: $BUILD is a sanitizer build; figures are not representative" >&2
fi

# the edge runs commands only with a trusted clock; this machine's is (the
# override is logged by the edge as a warning)
export CW_BUILD_DIR=$BUILD CW_CLOCK_TRUSTED=1
. "$SRC/test/integration/lib.sh"
. "$SRC/test/mqtt/broker.sh"

BROKER_DIR=$T/broker
mkdir -p "$BROKER_DIR"
MQTT_PORT=$(broker_free_port)
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$T/cloud-mqtt.pw"
chmod 600 "$T/cloud-mqtt.pw"
# the cloud's user first, so that its first connection succeeds
broker_user cartwise-cloud "$(cat "$T/cloud-mqtt.pw")"
broker_start "$BROKER_DIR"
PIDS+=("$(broker_pid)")
cloud_init "${CW_BENCH_BACKEND:-sqlite}" "$(jq -n --arg pw "$T/cloud-mqtt.pw" \
	--arg out "$BROKER_DIR/passwd" --argjson port "$MQTT_PORT" \
	'{mqtt: {host: "127.0.0.1", port: $port, tls: false, password_file: $pw, passwd_out: $out}}')"

sim_start bus0 modbus --board 1:$LOCKS --baud 19200 --relatch-ms 300
edge_config "$T/edge.json" "$(jq -n --arg port "$T/bus0.tty" --argjson locks $LOCKS \
	'[{name: "bus0", port: $port, protocol: "modbus", boards: [{address: 1, locks: $locks}]}]')" \
	"$(jq -n --arg url "http://127.0.0.1:$CLOUD_PORT" --arg code "$ECODE" \
	'{cloud: {url: $url, insecure_http: true, branch_code: "E2E-1", enrollment_code: $code,
	  heartbeat_s: 3600, mac_address: "02:e2:e0:00:00:0b"}}')"
edge_start
wait_until 30 state_is ok || fail "the edge did not enroll: state $(cloud_state)"
DEV=$(jq -r .device_id "$T/data/cloud.json")
wait_until 10 grep -q "^$DEV:" "$BROKER_DIR/passwd" || fail "passwd_out has no line for the device"
kill -HUP "$(broker_pid)" # the systemd path unit's job in production
link_up() { [ "$("$CTL" --config "$T/edge.json" --json status | jq -r .cloud.mqtt)" = connected ]; }
wait_until 30 link_up || fail "the edge's MQTT link did not come up"
wait_until 60 outbox_empty || fail "the edge's carts did not reach the cloud"

echo "# CartWise command latency over MQTT"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- machine: $(nproc) cores, $(uname -srm), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "- build: $BUILD ($(jq -r '.[] | select(.name=="buildtype") | .value' "$BUILD/meson-info/intro-buildoptions.json" 2>/dev/null || echo '?')), cloud on ${CW_BENCH_BACKEND:-sqlite}, $(mosquitto -h 2>/dev/null | head -n 1)"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- commit: $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?') (plus uncommitted work, if any)"
echo
CW_BENCH_TOKEN=$CTOK "$DRIVER" --cloud "http://127.0.0.1:$CLOUD_PORT" --branch "$CBRANCH" \
	--edge-db "$T/data/edge.db" --unlocks "$UNLOCKS" --locks $LOCKS --baud 19200
echo
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
via_mqtt=$(grep -c 'event=cloud.command .*via=mqtt' "$T/edge.log" || true)
echo "- commands the edge ran by MQTT: $via_mqtt, by heartbeat: $(grep -c 'event=cloud.command .*via=heartbeat' "$T/edge.log" || true)"
edge_stop
