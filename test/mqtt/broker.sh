# shellcheck shell=bash
# broker.sh - a throwaway Mosquitto for tests: sourced, defines
#   broker_start DIR   writes DIR/mosquitto.conf, password and ACL files, starts
#                      mosquitto on a free loopback port; sets MQTT_PORT and BROKER_CONF
#   broker_user NAME PASSWORD   adds a user (before or after start; reloads)
#   broker_stop / broker_kill   SIGTERM / SIGKILL
# mosquitto runs as a daemon with DIR/mosquitto.pid, so that a test program
# can restart it too (BROKER_CONF names the configuration).
# The ACL is the production one (docs/SYNC.md "MQTT"): a device (user name =
# device id) may read only its own commands topic and write only its own
# status and telemetry; the user "cartwise-cloud" reads and writes cartwise/#.
command -v mosquitto >/dev/null || { echo "FAIL: mosquitto missing (scripts/test installs it)"; exit 1; }
command -v mosquitto_passwd >/dev/null || { echo "FAIL: mosquitto_passwd missing"; exit 1; }

BROKER_DIR=
# shellcheck source=../free_port.sh
. "$(dirname "${BASH_SOURCE[0]}")/../free_port.sh"
broker_free_port() { cw_free_port; }
broker_user() {
	[ -f "$BROKER_DIR/passwd" ] || : >"$BROKER_DIR/passwd"
	mosquitto_passwd -b "$BROKER_DIR/passwd" "$1" "$2" 2>/dev/null
	chmod 0600 "$BROKER_DIR/passwd"
	broker_pid >/dev/null && kill -HUP "$(broker_pid)"
	return 0
}
broker_pid() { [ -s "$BROKER_DIR/mosquitto.pid" ] && cat "$BROKER_DIR/mosquitto.pid"; }
broker_start() {
	BROKER_DIR=$1
	local fixed=${MQTT_PORT:-} tries=0
	MQTT_PORT=${MQTT_PORT:-$(broker_free_port)}
	[ -f "$BROKER_DIR/passwd" ] || : >"$BROKER_DIR/passwd"
	chmod 0600 "$BROKER_DIR/passwd"
	cat >"$BROKER_DIR/acl" <<ACL
user cartwise-cloud
topic readwrite cartwise/#

pattern read cartwise/+/+/devices/%u/commands
pattern write cartwise/+/+/devices/%u/status
pattern write cartwise/+/+/devices/%u/telemetry
ACL
	cat >"$BROKER_DIR/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous false
password_file $BROKER_DIR/passwd
acl_file $BROKER_DIR/acl
persistence false
user $(id -un)
pid_file $BROKER_DIR/mosquitto.pid
log_dest file $BROKER_DIR/mosquitto.log
log_type error
log_type warning
log_type notice
CONF
	BROKER_CONF=$BROKER_DIR/mosquitto.conf
	mosquitto -d -c "$BROKER_CONF"
	for _ in $(seq 100); do
		# another socket took the free port first (a listener, or an
		# outgoing connection's local port): try another one, unless the
		# caller chose it (a restart on the same port)
		if [ -z "$fixed" ] && grep -q 'Address already in use' "$BROKER_DIR/mosquitto.log" 2>/dev/null &&
			[ "$tries" -lt 5 ]; then
			: >"$BROKER_DIR/mosquitto.log"
			tries=$((tries + 1))
			MQTT_PORT=$(broker_free_port)
			sed -i "s/^listener [0-9]* /listener $MQTT_PORT /" "$BROKER_CONF"
			mosquitto -d -c "$BROKER_CONF"
			continue
		fi
		broker_pid >/dev/null && kill -0 "$(broker_pid)" 2>/dev/null &&
			ss -Hltn "sport = :$MQTT_PORT" | grep -q . && return 0
		sleep 0.05
	done
	echo "FAIL: mosquitto did not start on port $MQTT_PORT"; cat "$BROKER_DIR/mosquitto.log" 2>/dev/null
	exit 1
}
broker_signal() {
	local pid
	pid=$(broker_pid) || return 0
	kill "-$1" "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	rm -f "$BROKER_DIR/mosquitto.pid"
}
broker_stop() { broker_signal TERM; }
broker_kill() { broker_signal KILL; }
