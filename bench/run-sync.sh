#!/usr/bin/env bash
# run-sync.sh BUILD_DIR - the sync benchmarks of issue 4 (docs/BENCHMARKS.md,
# "Edge <-> cloud sync").
#
#  1. Backlog drain, on SQLite and on PostgreSQL: a real cartwise-edge
#     (cartwise-simlock behind it) enrolled in cartwise-cloud; the cloud is
#     stopped, the edge writes CW_BENCH_ENTRIES outbox entries (maintenance on
#     and off of one cart through its admin API: a cart snapshot and a
#     telemetry event each); the edge is stopped, the cloud started, the edge
#     started again, and the cloud's high-water mark of the device is polled
#     (GET /api/devices/{id}/sync, every 10 ms) until it is the edge's last
#     seq. Drain rate = entries after the first answered batch / time from
#     that batch to the last. In the same run, before and after the drain,
#     bench_sync_raw writes the same entries (read from the edge's outbox) to
#     the same database as another device, with the statements of the cloud's
#     sync apply, in transactions of the same batch size: the ceiling. The
#     figure is drain / the faster raw run.
#  2. A fleet on PostgreSQL: bench_fleet registers CW_BENCH_DEVICES devices
#     and, open loop, sends each one's heartbeats every H seconds and sync
#     batches every CW_BENCH_SYNC_S seconds for CW_BENCH_SECONDS: once at
#     the nominal H (CW_BENCH_HB_S) and once at the stress H
#     (CW_BENCH_STRESS_HB_S), each on a fresh database. With MQTT
#     (CW_BENCH_MQTT_S > 0, the default) each run also starts a Mosquitto
#     of its own (test/mqtt/broker.sh: the production ACL) and gives the
#     cloud its `mqtt` section (its user cartwise-cloud, passwd_out = the
#     broker's password file, log_level debug for its `mqtt.status` lines);
#     once bench_fleet has registered the devices the broker is reloaded
#     (SIGHUP: the production path unit's job), and every device connects
#     with its mqtt_config and publishes its retained status at connect and
#     every CW_BENCH_MQTT_S seconds (QoS 1, open loop; publish -> PUBACK).
#     At the end the cloud's log must hold one `mqtt.status` line for every
#     status the broker acknowledged (counted, with the devices they name).
#
# Prints figures and Markdown rows; never passes or fails on time. Builds
# build-bench itself only when BUILD_DIR is missing (meson setup BUILD
# --buildtype=release && ninja -C BUILD). Needs psql, sqlite3, jq, curl,
# python3 and pg_virtualenv (without PG* variables it re-runs itself under
# `pg_virtualenv -t -o fsync=on`: fsync on, as in production); mosquitto and
# mosquitto_passwd for the MQTT status.
#
# Knobs (environment):
#   CW_BENCH_PARTS        drain,fleet  which parts run
#   CW_BENCH_BACKENDS     sqlite,postgres  backends of the drain part
#   CW_BENCH_ENTRIES      30000  backlog of the drain (rounded up to even)
#   CW_BENCH_BATCH        500    the edge's batch_max_entries (= raw batch)
#   CW_BENCH_DEVICES      1000   devices of the fleet
#   CW_BENCH_HB_S         10     fleet heartbeat interval, nominal
#   CW_BENCH_STRESS_HB_S  2      fleet heartbeat interval, stress (0: skip)
#   CW_BENCH_SYNC_S       30     fleet sync batch interval
#   CW_BENCH_SYNC_ENTRIES 4      entries in each fleet batch
#   CW_BENCH_MQTT_S       10     fleet MQTT status interval (0: no MQTT)
#   CW_BENCH_SECONDS      60     fleet measuring window (after 10 s warm-up)
#   CW_BENCH_THREADS      4      cloud listen.threads = pool_size
#   CW_BENCH_KEEP         unset  1: keep the temporary directory (logs)
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
if [ ! -d "$1" ]; then
	meson setup "$1" "$SRC" --buildtype=release >&2
	ninja -C "$1" >&2
fi
B=$(realpath "$1")
CLOUD=$B/src/cloud/cartwise-cloud
EDGE=$B/src/edge/cartwise-edge
SIM=$B/src/simlock/cartwise-simlock
RAW=$B/bench/bench_sync_raw
FLEET=$B/bench/bench_fleet
PARTS=${CW_BENCH_PARTS:-drain,fleet}
BACKENDS=${CW_BENCH_BACKENDS:-sqlite,postgres}
ENTRIES=${CW_BENCH_ENTRIES:-30000}
BATCH=${CW_BENCH_BATCH:-500}
DEVICES=${CW_BENCH_DEVICES:-1000}
HB_S=${CW_BENCH_HB_S:-10}
STRESS_HB_S=${CW_BENCH_STRESS_HB_S:-2}
SYNC_S=${CW_BENCH_SYNC_S:-30}
SYNC_ENTRIES=${CW_BENCH_SYNC_ENTRIES:-4}
FLEET_SECONDS=${CW_BENCH_SECONDS:-60}
MQTT_S=${CW_BENCH_MQTT_S:-10}
THREADS=${CW_BENCH_THREADS:-4}

for prog in "$CLOUD" "$EDGE" "$SIM" "$RAW" "$FLEET"; do
	[ -x "$prog" ] || { echo "run-sync: $prog was not built (ninja -C $B)" >&2; exit 1; }
done
for tool in psql sqlite3 jq curl python3; do
	command -v "$tool" >/dev/null || { echo "run-sync: $tool is missing" >&2; exit 1; }
done
if jq -e '.[] | select(.name=="b_sanitize") | .value != "none"' \
	"$B/meson-info/intro-buildoptions.json" >/dev/null 2>&1; then
	echo "run-sync: warning: $B is a sanitizer build; figures are not representative" >&2
fi
if [[ ,$PARTS, == *,fleet,* ]] && [ "$MQTT_S" != 0 ]; then
	# broker_start, broker_user, broker_pid, broker_stop (exits if mosquitto is missing)
	. "$SRC/test/mqtt/broker.sh"
fi

# A PostgreSQL of our own, with fsync on (pg_virtualenv turns it off by default).
if [ -z "${PGHOST:-}${PGPORT:-}" ]; then
	exec pg_virtualenv -t -o fsync=on "$0" "$@"
fi

T=$(mktemp -d /var/tmp/cwsync.XXXXXX) # on disk: /tmp may be tmpfs elsewhere
PIDS=()
cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ -n "${CW_BENCH_KEEP:-}" ]; then
		echo "run-sync: kept $T" >&2
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
note() { echo "-- $(date -u +%H:%M:%S) $*" >&2; }
RESULTS=$T/results.md
: >"$RESULTS"
out() { printf '%s\n' "$*" | tee -a "$RESULTS"; }

wait_until() { # wait_until SECONDS COMMAND...
	local end=$((SECONDS + $1)); shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.05
	done
}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
pg_newdb() { # NAME: a fresh database
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
}

PW='bench password 0123456789'
"$CLOUD" keygen --out "$T/signing.key" >/dev/null

# ---- the cloud ----------------------------------------------------------

CLOUD_PID='' PORT='' CFG='' CLOG=''
# cloud_config DIR DB_JSON [EXTRA_JSON]: the cloud's config on a fixed free
# port; EXTRA_JSON's keys (an mqtt section, log_level) are added or replace
cloud_config() {
	local extra=${3:-}
	[ -n "$extra" ] || extra="{}"
	PORT=$(free_port)
	CFG=$1/cloud.json
	CLOG=$1/cloud.log
	jq -n --argjson db "$2" --arg key "$T/signing.key" --argjson th "$THREADS" \
		--argjson port "$PORT" --argjson extra "$extra" \
		'{listen: {address: "127.0.0.1", port: $port, threads: $th}, database: $db,
		  signing_key_file: $key, log_level: "info"} + $extra' >"$CFG"
}
cloud_start() {
	"$CLOUD" --config "$CFG" >>"$CLOG" 2>&1 </dev/null &
	CLOUD_PID=$!
	PIDS+=("$CLOUD_PID")
	wait_until 30 curl -sf "http://127.0.0.1:$PORT/api/health" -o /dev/null || {
		echo "run-sync: cartwise-cloud did not start:" >&2
		tail -n 20 "$CLOG" >&2
		exit 1
	}
}
cloud_stop() {
	kill -TERM "$CLOUD_PID"
	wait "$CLOUD_PID" || echo "run-sync: cartwise-cloud exited $? on SIGTERM" >&2
	CLOUD_PID=
}
api() { # METHOD PATH [BODY]: prints the body; AUTH may hold a token
	local args=(-sS -X "$1" "http://127.0.0.1:$PORT$2")
	[ -z "${AUTH:-}" ] || args+=(-H "Authorization: Bearer $AUTH")
	[ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
	curl "${args[@]}"
}
# bootstrap: platform admin, chain; leaves AUTH = the admin's token, CHAIN
bootstrap() {
	printf '%s\n' "$PW" | "$CLOUD" --config "$CFG" admin create-user \
		--email bench@example.com --role platform-admin >/dev/null 2>>"$CLOG"
	cloud_start
	AUTH=$(api POST /api/auth/login "{\"email\":\"bench@example.com\",\"password\":\"$PW\"}" | jq -r .token)
	CHAIN=$(api POST /api/chains '{"name":"Bench","slug":"bench"}' | jq -r .id)
	if [ -z "$CHAIN" ] || [ "$CHAIN" = null ]; then
		echo "run-sync: bootstrap failed" >&2
		exit 1
	fi
}
# branch CODE: creates it, prints its id
branch() {
	api POST /api/branches "{\"chain_id\":\"$CHAIN\",\"code\":\"$1\",\"name\":\"Bench $1\"}" | jq -r .id
}
# code BRANCH_ID USES: an enrollment code
code() {
	api POST "/api/branches/$1/enrollment-codes" "{\"uses\":$2}" | jq -r .code
}
# register BRANCH_CODE CODE MAC: prints the device id
register() {
	AUTH='' api POST /api/devices/register \
		"{\"mac_address\":\"$3\",\"branch_code\":\"$1\",\"enrollment_code\":\"$2\"}" | jq -r .device_id
}

# ---- part 1: backlog drain ------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
# proc_cpu_flt PID: "CPU-ms minor-faults" of the process so far (fields 14+15
# and 10 of /proc/PID/stat, counted after the command name's closing paren)
proc_cpu_flt() {
	local line rest
	read -r line <"/proc/$1/stat"
	rest=${line##*) }
	# shellcheck disable=SC2086
	set -- $rest
	echo "$(( (${12} + ${13}) * 1000 / CLK_TCK )) ${8}"
}

TOKEN=bench-admin-token-0123456789
# poll_drain DEVICE DEVICE_TOKEN LAST READY_FILE: reads the device's mark,
# creates READY_FILE, then polls the mark every 10 ms until it is LAST (300 s
# at most); prints "hw_first t_first t_done polls" (seconds since the poller
# started; t_first = when a mark above the starting one was first seen)
poll_drain() {
	python3 - "$PORT" "$1" "$2" "$3" "$4" <<'EOF'
import http.client, json, sys, time
port, dev, tok, last, ready = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
t0 = time.monotonic()
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
hdr = {"Authorization": "Bearer " + tok}
def mark():
    global conn
    try:
        conn.request("GET", "/api/devices/%s/sync" % dev, headers=hdr)
        r = conn.getresponse()
        body = r.read()
        return json.loads(body)["high_water"] if r.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError, KeyError):
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        return None
start = None
while start is None and time.monotonic() - t0 < 30:
    start = mark()
    time.sleep(0.01)
open(ready, "w").close()  # the edge may start now
hw_first = t_first = None
polls = 0
while time.monotonic() - t0 < 300:
    m = mark()
    polls += 1
    now = time.monotonic() - t0
    if m is not None and m > start and t_first is None:
        hw_first, t_first = m, now
    if m is not None and m >= last:
        print(hw_first, "%.4f" % t_first, "%.4f" % now, polls)
        sys.exit(0)
    time.sleep(0.01)
print("run-sync: the mark did not reach", last, file=sys.stderr)
sys.exit(1)
EOF
}

# raw_run DEVICE DB_ARGS...: bench_sync_raw writing the backlog as DEVICE;
# sets RAW_RATE and RAW_LINE
raw_run() {
	local dev=$1; shift
	local line
	line=$("$RAW" --edge-db "$D/data/edge.db" --after "$HW0" --upto "$LAST" --device "$dev" \
		--batch "$BATCH" "$@")
	note "  raw: $line"
	RAW_RATE=$(sed -n 's/.* entries_per_s=\([0-9]*\).*/\1/p' <<<"$line")
	RAW_CPU=$(sed -n 's/.* cpu_ms_per_batch=\([0-9.]*\).*/\1/p' <<<"$line")
	RAW_LINE=$line
}

drain_one() { # BACKEND
	local be=$1 db_json raw_args
	D=$T/drain-$be
	mkdir -p "$D"
	case $be in
	sqlite)
		db_json="{\"backend\":\"sqlite\",\"path\":\"$D/cloud.db\"}"
		raw_args=(--sqlite "$D/cloud.db")
		;;
	postgres)
		pg_newdb cwsync_drain
		db_json='{"backend":"postgres","conninfo":"dbname=cwsync_drain","pool_size":'"$THREADS"'}'
		raw_args=(--pg "dbname=cwsync_drain")
		;;
	esac
	note "drain on $be: bootstrap"
	cloud_config "$D" "$db_json"
	bootstrap
	local b1 b2 b3 c1 c2 c3 dev2 dev3
	b1=$(branch DR-1); b2=$(branch DR-2); b3=$(branch DR-3)
	c1=$(code "$b1" 1); c2=$(code "$b2" 1); c3=$(code "$b3" 1)
	dev2=$(register DR-2 "$c2" 02:dd:00:00:00:02)
	dev3=$(register DR-3 "$c3" 02:dd:00:00:00:03)

	# the edge: 1 board of 4 locks, enrolled in branch DR-1
	"$SIM" --protocol modbus --link "$D/bus0.tty" --control "$D/sim.sock" --board 1:4 \
		>"$D/sim.out" 2>"$D/sim.log" </dev/null &
	local sim_pid=$!
	PIDS+=("$sim_pid")
	wait_until 10 grep -q '^ready' "$D/sim.out" || { echo "run-sync: simulator not ready" >&2; exit 1; }
	local api_port
	api_port=$(free_port)
	jq -n --arg dd "$D/data" --argjson port "$api_port" --arg tok "$TOKEN" \
		--arg tty "$D/bus0.tty" --arg url "http://127.0.0.1:$PORT" --arg code "$c1" \
		--argjson batch "$BATCH" '
		{chain_id: "chain-bench", branch_id: "branch-bench", device_id: "rpi-bench-1",
		 data_dir: $dd, log_level: "info",
		 api: {bind: "127.0.0.1", port: $port, admin_token: $tok},
		 buses: [{name: "bus0", port: $tty, protocol: "modbus",
		          boards: [{address: 1, locks: 4}]}],
		 cloud: {url: $url, insecure_http: true, branch_code: "DR-1", enrollment_code: $code,
		         heartbeat_s: 60, batch_max_entries: $batch, mac_address: "02:dd:00:00:00:01"}}' \
		>"$D/edge.json"
	local edge_pid
	edge_start() {
		"$EDGE" --config "$D/edge.json" >>"$D/edge.log" 2>&1 </dev/null &
		edge_pid=$!
		PIDS+=("$edge_pid")
		wait_until 20 curl -sf "http://127.0.0.1:$api_port/api/health" -o /dev/null ||
			{ echo "run-sync: cartwise-edge did not start" >&2; tail -n 20 "$D/edge.log" >&2; exit 1; }
	}
	edge_stop() {
		kill -TERM "$edge_pid"
		wait "$edge_pid" || echo "run-sync: cartwise-edge exited $? on SIGTERM" >&2
	}
	edge_sql() { sqlite3 -readonly "$D/data/edge.db" "$1"; }
	edge_status() {
		curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$api_port/api/admin/status"
	}
	synced() { [ "$(edge_status | jq -r '"\(.cloud.state) \(.cloud.outbox_depth)"')" = "ok 0" ]; }
	edge_start
	wait_until 60 synced || { echo "run-sync: the edge did not enroll and sync" >&2; exit 1; }
	local dev dtok
	dev=$(jq -r .device_id "$D/data/cloud.json")
	dtok=$(jq -r .device_token "$D/data/cloud.json")

	note "drain on $be: cloud down, $ENTRIES entries on the edge"
	cloud_stop
	HW0=$(edge_sql "SELECT max(seq) FROM outbox")
	: >"$D/many.curl"
	local i
	for ((i = 0; i < (ENTRIES + 3) / 4; i++)); do
		for v in true false; do
			printf 'url = "http://127.0.0.1:%s/api/admin/carts/4/maintenance"\nrequest = "POST"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\ndata = "{\\"on\\":%s}"\noutput = "/dev/null"\nnext\n' \
				"$api_port" "$TOKEN" "$v" >>"$D/many.curl"
		done
	done
	sed -i '$ d' "$D/many.curl"
	local t0=$SECONDS
	curl -s -K "$D/many.curl"
	local last n kinds
	last=$(edge_sql "SELECT max(seq) FROM outbox")
	LAST=$last
	n=$((last - HW0))
	kinds=$(edge_sql "SELECT group_concat(kind || ' ' || c, ', ') FROM (SELECT kind, count(*) c FROM outbox WHERE seq > $HW0 GROUP BY kind)")
	note "  $n entries in $((SECONDS - t0)) s ($kinds)"
	edge_stop

	note "drain on $be: raw before"
	raw_run "$dev2" "${raw_args[@]}"
	local raw1=$RAW_RATE raw1_line=$RAW_LINE raw1_cpu=$RAW_CPU

	note "drain on $be: cloud up, edge started, polling the mark"
	cloud_start
	poll_drain "$dev" "$dtok" "$last" "$D/poll.ready" >"$D/poll.out" &
	local poll_pid=$!
	PIDS+=("$poll_pid")
	wait_until 30 test -e "$D/poll.ready" || { echo "run-sync: the poller did not start" >&2; exit 1; }
	local cloud0 cloud1 edge1
	cloud0=$(proc_cpu_flt "$CLOUD_PID")
	edge_start
	wait "$poll_pid" || { echo "run-sync: the backlog did not drain" >&2; exit 1; }
	cloud1=$(proc_cpu_flt "$CLOUD_PID")
	edge1=$(proc_cpu_flt "$edge_pid") # since its start: start-up included
	local hw_first t_first t_done polls
	read -r hw_first t_first t_done polls <"$D/poll.out"
	note "  mark $hw_first first seen after $t_first s, $last after $t_done s ($polls polls)"
	local batches
	batches=$(awk -v dev="device=$dev" -v hw0="$HW0" '$2 == "event=sync.applied" && $3 == dev {
		split($NF, kv, "="); if (kv[2] + 0 > hw0) n++ } END { print n + 0 }' "$CLOG")
	wait_until 20 synced || true
	edge_stop
	cloud_stop

	note "drain on $be: raw after"
	raw_run "$dev3" "${raw_args[@]}"
	local raw2=$RAW_RATE raw2_cpu=$RAW_CPU

	# nothing lost, nothing twice: telemetry rows of the device = edge's
	local edge_tel cloud_tel
	edge_tel=$(edge_sql "SELECT count(*) FROM outbox WHERE kind = 'telemetry'")
	if [ "$be" = sqlite ]; then
		cloud_tel=$(sqlite3 -readonly "$D/cloud.db" "SELECT count(*) || '/' || count(DISTINCT seq) FROM telemetry WHERE device_id = '$dev'")
	else
		cloud_tel=$(psql -X -qtA -d cwsync_drain -c "SELECT count(*) || '/' || count(DISTINCT seq) FROM telemetry WHERE device_id = '$dev'")
	fi
	[ "$cloud_tel" = "$edge_tel/$edge_tel" ] ||
		echo "run-sync: warning: telemetry edge $edge_tel, cloud (rows/distinct) $cloud_tel" >&2
	kill -TERM "$sim_pid" 2>/dev/null || true
	wait "$sim_pid" 2>/dev/null || true

	awk -v be="$be" -v n="$n" -v hw0="$HW0" -v last="$last" -v hwf="$hw_first" \
		-v tf="$t_first" -v td="$t_done" -v r1="$raw1" -v r2="$raw2" -v b="$BATCH" \
		-v batches="$batches" -v tel="$cloud_tel" -v c0="$cloud0" -v c1="$cloud1" \
		-v e1="$edge1" -v rc1="$raw1_cpu" -v rc2="$raw2_cpu" 'BEGIN {
		drained = last - hwf
		rate = (td > tf) ? drained / (td - tf) : 0
		raw = r1 > r2 ? r1 : r2
		split(c0, a, " "); split(c1, z, " "); split(e1, e, " ")
		nb = batches > 0 ? batches : 1
		printf "| %s | %d | %d | %d | %.2f | %.0f | %.2f | %.0f | %.0f | %.0f %% | %s | %.1f | %.1f | %.1f / %.1f | %.0f | %s |\n",
			be, n, b, batches, td - tf, rate, td, r1, r2, 100 * rate / raw,
			(100 * rate / raw >= 50 ? "met" : "MISSED"), 1000 * (td - tf) / (nb - 1 > 0 ? nb - 1 : 1),
			(z[1] - a[1]) / nb, rc1, rc2, (z[2] - a[2]) / nb, tel
		printf "edge CPU over its run (start-up included): %d ms, %.1f ms a batch\n", e[1], e[1] / nb >"/dev/stderr"
	}' >>"$D/row.md"
	cat "$D/row.md" >>"$T/drain.md"
	note "  $(cat "$D/row.md")"
	note "  raw before: $raw1_line"
	[ "$be" != postgres ] || psql -X -q -d postgres -c "DROP DATABASE cwsync_drain WITH (FORCE)" >/dev/null
}

# ---- part 2: fleet ----------------------------------------------------------

# mqtt_broker DIR: a fresh Mosquitto (production ACL) whose password file
# holds the cloud's user; sets MQTT_EXTRA, the cloud's extra config (its
# mqtt section)
MQTT_EXTRA=''
mqtt_broker() {
	BROKER_DIR=$1
	mkdir -p "$BROKER_DIR"
	head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$BROKER_DIR/cloud-mqtt.pw"
	chmod 600 "$BROKER_DIR/cloud-mqtt.pw"
	# the cloud's user first, so that its first connection succeeds
	broker_user cartwise-cloud "$(cat "$BROKER_DIR/cloud-mqtt.pw")"
	unset MQTT_PORT
	broker_start "$BROKER_DIR" >&2
	PIDS+=("$(broker_pid)")
	MQTT_EXTRA=$(jq -n --arg pw "$BROKER_DIR/cloud-mqtt.pw" --arg out "$BROKER_DIR/passwd" \
		--argjson port "$MQTT_PORT" \
		'{mqtt: {host: "127.0.0.1", port: $port, tls: false, password_file: $pw,
		         passwd_out: $out}, log_level: "debug"}')
}
# mqtt_recorded: "LINES DEVICES", the statuses the cloud recorded from MQTT
# (its debug lines `event=mqtt.status device=... status=online`)
mqtt_recorded() {
	awk '$2 == "event=mqtt.status" && $4 == "status=online" { n++; dev[$3] = 1 }
		END { printf "%d %d\n", n, length(dev) }' "$CLOG"
}

# fleet_one HB_S: fresh database, DEVICES devices, one bench_fleet run
fleet_one() {
	local hb=$1 d=$T/fleet-$1 codes="" bid ncodes extra="" mqtt_args=()
	mkdir -p "$d"
	pg_newdb cwsync_fleet
	if [ "$MQTT_S" != 0 ]; then
		mqtt_broker "$d/broker"
		extra=$MQTT_EXTRA
		mqtt_args=(--mqtt-status-s "$MQTT_S")
	fi
	cloud_config "$d" '{"backend":"postgres","conninfo":"dbname=cwsync_fleet","pool_size":'"$THREADS"'}' "$extra"
	bootstrap
	bid=$(branch FL-1)
	ncodes=$(( (DEVICES + 999) / 1000 ))
	for ((i = 0; i < ncodes; i++)); do
		codes+="${codes:+,}$(code "$bid" 1000)"
	done
	note "fleet: $DEVICES devices, heartbeat every $hb s, sync every $SYNC_S s ($SYNC_ENTRIES entries)${mqtt_args:+, MQTT status every $MQTT_S s}"
	local cpu0 cpu1 t0 t1
	"$FLEET" --url "http://127.0.0.1:$PORT" --branch-code FL-1 --enrollment-codes "$codes" \
		--devices "$DEVICES" --heartbeat-s "$hb" --sync-s "$SYNC_S" --entries "$SYNC_ENTRIES" \
		--seconds "$FLEET_SECONDS" --warmup 10 "${mqtt_args[@]}" >"$d/fleet.out" &
	local fpid=$!
	PIDS+=("$fpid") # stopped with the rest if this script fails meanwhile
	# the cloud's CPU over the whole run (registration included)
	cpu0=$(awk '{ print $14 + $15 }' "/proc/$CLOUD_PID/stat")
	t0=$(date +%s.%N)
	if [ "$MQTT_S" != 0 ]; then
		# registrations done: the cloud has written every device's broker
		# user to passwd_out; the broker reloads it (the path unit's job)
		until grep -q '^register ' "$d/fleet.out"; do
			kill -0 "$fpid" 2>/dev/null || break
			sleep 0.1
		done
		kill -HUP "$(broker_pid)"
		note "  registered; broker reloaded ($(($(wc -l <"$BROKER_DIR/passwd") - 1)) device users)"
		# the cloud's CPU from here: every registration rewrote passwd_out
		# (a PBKDF2 hash a device: O(devices^2) over the registrations),
		# which is not the sustained load
		cpu0=$(awk '{ print $14 + $15 }' "/proc/$CLOUD_PID/stat")
		t0=$(date +%s.%N)
	fi
	wait "$fpid" || { echo "run-sync: bench_fleet failed" >&2; cat "$d/fleet.out" >&2; exit 1; }
	cpu1=$(awk '{ print $14 + $15 }' "/proc/$CLOUD_PID/stat")
	t1=$(date +%s.%N)
	cat "$d/fleet.out" >&2
	# the statuses the cloud recorded from MQTT against those the broker
	# acknowledged (the cloud takes them from its subscription: a moment later)
	local acked=0 recorded="0 0"
	if [ "$MQTT_S" != 0 ]; then
		acked=$(sed -n 's/^mqtt .* acked_total=\([0-9]*\).*/\1/p' "$d/fleet.out")
		acked=${acked:-0}
		mqtt_done() { recorded=$(mqtt_recorded); [ "${recorded% *}" -ge "$acked" ]; }
		wait_until 15 mqtt_done ||
			echo "run-sync: warning: the cloud recorded ${recorded% *} MQTT statuses of $acked acknowledged" >&2
		note "  cloud: ${recorded% *} MQTT statuses recorded from ${recorded#* } devices" \
			"($acked acknowledged by the broker); $(grep -c 'event=mqtt.refused' "$CLOG" || true) refused"
	fi
	local hz
	hz=$(getconf CLK_TCK)
	local errs srv
	errs=$(grep -c 'level=error' "$CLOG" || true)
	# the server's own time per heartbeat (its http.request lines, whole run)
	srv=$(grep 'route=/api/devices/{id}/heartbeat ' "$CLOG" | sed 's/.* ms=//' | sort -n |
		awk '{ a[NR] = $1 } END { if (NR) printf "%s / %s", a[int((NR + 1) / 2)], a[int(NR * 0.99 + 0.999)] }')
	awk -v hb="$hb" -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
		-v errs="$errs" -v srv="$srv" -v acked="$acked" -v rec="$recorded" '
		{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[$1 "." kv[1]] = kv[2] } }
		END {
		e = "heartbeat.http_errors"; n = "heartbeat.net_errors"
		printf "| %s | %s s | %s s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %d+%d | %d | %s | %s | %s s | %.0f %% | %d | %s |",
			v["fleet.devices"], hb, v["fleet.sync_s"],
			v["heartbeat.rate_per_s"] + v["sync.rate_per_s"],
			v["heartbeat.p50_ms"], v["heartbeat.p95_ms"], v["heartbeat.p99_ms"],
			v["heartbeat.max_ms"], v["sync.p50_ms"], v["sync.p99_ms"], v["sync.max_ms"],
			v["fleet.entries_per_s"],
			v[e] + v["sync.http_errors"], v[n] + v["sync.net_errors"],
			v["heartbeat.unanswered"] + v["sync.unanswered"], srv,
			v["heartbeat.send_lag_p99_ms"], v["fleet.generator_cpu_s"],
			100 * (c1 - c0) / hz / (t1 - t0), errs,
			(v["heartbeat.p99_ms"] <= 50 && v[e] + v[n] + v["heartbeat.unanswered"] == 0) ? "met" : "MISSED"
		# the MQTT status, beside: publish -> PUBACK
		split(rec, r, " ")
		if ("mqtt.status_s" in v)
			printf " %s s | %s | %s | %s | %s | %d+%d | %d | %s | %d / %d (%d devices) |\n",
				v["mqtt.status_s"], v["mqtt_status.rate_per_s"], v["mqtt_status.p50_ms"],
				v["mqtt_status.p99_ms"], v["mqtt_status.max_ms"], v["mqtt_status.refused"],
				v["mqtt_status.failed"], v["mqtt_status.unanswered"],
				v["mqtt_status.send_lag_p99_ms"], r[1], acked, r[2]
		else
			printf " off | | | | | | | | |\n"
	}' "$d/fleet.out" >>"$T/fleet.md"
	note "  $(tail -n 1 "$T/fleet.md")"
	cloud_stop
	[ "$MQTT_S" = 0 ] || broker_stop
	psql -X -q -d postgres -c "DROP DATABASE cwsync_fleet WITH (FORCE)" >/dev/null
}

# ---- run ----------------------------------------------------------------------

out "# CartWise sync benchmarks (issue 4)"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(nproc) cores, $(uname -srm), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
out "- build: $B ($(jq -r '.[] | select(.name=="buildtype") | .value' "$B/meson-info/intro-buildoptions.json" 2>/dev/null || echo '?'))"
out "- PostgreSQL: $(psql -X -qtA -d postgres -c 'SHOW server_version') (fsync $(psql -X -qtA -d postgres -c 'SHOW fsync')), SQLite $(sqlite3 --version | cut -d' ' -f1)"
out "- load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
out "- commit: $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?') (plus uncommitted work, if any)"
out ""

if [[ ,$PARTS, == *,drain,* ]]; then
	: >"$T/drain.md"
	for be in ${BACKENDS//,/ }; do
		drain_one "$be"
	done
	out "## Backlog drain against the raw batched insert (batch = $BATCH entries)"
	out ""
	out "| backend | entries | batch | batches applied | drain s | drain entries/s | s from edge start | raw before entries/s | raw after entries/s | drain / faster raw | ≥ 50 % | drain ms a batch | cloud CPU ms a batch | raw CPU ms a batch (before / after) | cloud minor faults a batch | cloud telemetry rows/distinct seq |"
	out "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
	tee -a "$RESULTS" <"$T/drain.md"
	out ""
fi
if [[ ,$PARTS, == *,fleet,* ]]; then
	: >"$T/fleet.md"
	fleet_one "$HB_S"
	[ "$STRESS_HB_S" = 0 ] || fleet_one "$STRESS_HB_S"
	out "## Fleet on PostgreSQL: $FLEET_SECONDS s open loop after 10 s warm-up, $SYNC_ENTRIES entries a batch"
	out ""
	out "| devices | heartbeat every | sync every | requests/s | hb p50 ms | hb p95 ms | hb p99 ms | hb max ms | sync p50 ms | sync p99 ms | sync max ms | entries/s | errors http+net | unanswered | server's own hb ms p50 / p99 (its log) | generator send lag hb p99 ms | generator CPU | cloud CPU (of one core) | cloud error lines | hb p99 ≤ 50 ms | MQTT status every | status/s | status p50 ms | status p99 ms | status max ms | status refused+failed | status unanswered | generator send lag status p99 ms | cloud recorded / broker acked (devices) |"
	out "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|---:|---|"
	tee -a "$RESULTS" <"$T/fleet.md"
	out ""
fi
echo
echo "================ results ================"
cat "$RESULTS"
