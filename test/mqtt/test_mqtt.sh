#!/usr/bin/env bash
# The MQTT client (src/cw_mqtt) against a real Mosquitto with the production
# ACL (test/mqtt/broker.sh): test_mqtt (Check) does the work; this script
# starts the broker, creates the users and removes everything afterwards.
set -euo pipefail
B=${CW_BUILD_DIR:?run through meson test}
. "$(dirname "$0")/broker.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/cwmqtt.XXXXXX")
trap 'broker_kill; rm -rf "$T"' EXIT
trap 'exit 143' TERM INT
broker_start "$T"
broker_user cartwise-cloud cloud-pass-0123
broker_user dev-a pass-a-0123
broker_user dev-b pass-b-0123
sleep 0.2 # the HUP reload
# $1: the test_mqtt program (meson passes it). In a cross build meson test
# sets MESON_EXE_WRAPPER to the cross file's exe_wrapper to run it with
# (scripts/test-arm64: qemu-aarch64-static); unset natively.
read -r -a wrap <<<"${MESON_EXE_WRAPPER:-}"
CW_MQTT_PORT=$MQTT_PORT CW_MQTT_CONF=$BROKER_CONF CW_MQTT_PIDFILE=$T/mosquitto.pid \
	"${wrap[@]}" "${1:-$B/test/test_mqtt}" || { cat "$T/mosquitto.log"; exit 1; }
