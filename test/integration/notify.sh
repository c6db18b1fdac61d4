#!/usr/bin/env bash
# systemd's Type=notify contract (docs/ARCHITECTURE.md "systemd: Type=notify
# and the watchdog"), without systemd: a listener on NOTIFY_SOCKET
# (notify_listen.py) records what the daemons send, with WATCHDOG_USEC set
# as systemd would (1.5 s: a feed every ~0.5 s expected).
#  * cartwise-edge: READY=1 (with STATUS) only once /api/health answers and
#    edge.db exists; WATCHDOG=1 >= 3 times within 3 s and never 1 s apart,
#    also while bus1's only board is offline in a 1 h backoff (its worker
#    sleeps: alive, not stuck); STOPPING=1 on SIGTERM.
#  * cartwise-cloud on SQLite: READY=1 once /api/health answers, watchdog,
#    STOPPING=1.
#  * cartwise-cloud with PostgreSQL on a closed port: STATUS=waiting for the
#    database and EXTEND_TIMEOUT_USEC every round, the watchdog fed, no READY.
# Runs the three at once (the watchdog needs seconds of watching).
# WATCHDOG_USEC set by hand is what systemd sets (sd_watchdog_enabled(3)).
. "$(dirname "$0")/lib.sh"
LISTEN=$CW_SOURCE_DIR/test/integration/notify_listen.py
CLOUD=$B/src/cloud/cartwise-cloud
[ -x "$CLOUD" ] || fail "$CLOUD was not built"
[ -x /usr/bin/python3 ] || fail "/usr/bin/python3 missing"
WD_USEC=1500000

# listen NAME [URL [FILE]]: socket $T/NAME.sock, datagrams in $T/NAME.notify
listen() {
	local name=$1; shift
	/usr/bin/python3 "$LISTEN" "$T/$name.sock" "$T/$name.notify" "$@" &
	PIDS+=($!)
	: >"$T/$name.notify"
	wait_until 5 test -S "$T/$name.sock" || fail "listener $name did not start"
}
# daemon NAME LOG PROGRAM ARGS...: PROGRAM as systemd would start it for a
# Type=notify unit with WatchdogSec; prints nothing, sets LAST_PID
daemon() {
	local name=$1 log=$2; shift 2
	NOTIFY_SOCKET=$T/$name.sock WATCHDOG_USEC=$WD_USEC "$@" >>"$T/$log" 2>&1 </dev/null &
	LAST_PID=$!
}
# the monotonic time of the first datagram of NAME matching the ERE, or ""
first_at() { grep -E " ($2)(\||$)" "$T/$1.notify" | head -1 | cut -d' ' -f1; }
has() { grep -qE " ($2)(\||$)" "$T/$1.notify"; }
# count NAME ERE [FROM [TO]]: datagrams matching ERE with FROM < t <= TO
count() {
	awk -v re=" ($2)(\\\\||\$)" -v from="${3:-0}" -v to="${4:-1e18}" \
		'$0 ~ re && $1 > from && $1 <= to { n++ } END { print n + 0 }' "$T/$1.notify"
}
# max_gap NAME ERE FROM TO: the longest pause (s) between datagrams matching
# ERE from FROM to TO (FROM to the first and the last to TO included)
max_gap() {
	awk -v re=" ($2)(\\\\||\$)" -v from="$3" -v to="$4" '
		BEGIN { prev = from }
		$1 > from && $1 <= to && $0 ~ re { if ($1 - prev > max) max = $1 - prev; prev = $1 }
		END { if (to - prev > max) max = to - prev; printf "%.3f\n", max }' "$T/$1.notify"
}
# ready_ok NAME STATUS: one READY=1, with STATUS=STATUS, and the listener's
# check made when it came found the API answering and the database file
ready_ok() {
	local lines
	[ "$(count "$1" 'READY=1')" = 1 ] || fail "$1: READY=1 more than once: $(grep READY "$T/$1.notify")"
	lines=$(grep -A1 -E ' READY=1(\||$)' "$T/$1.notify")
	printf '%s\n' "$lines" | head -1 | grep -qF " READY=1|STATUS=$2" ||
		fail "$1: READY=1 without STATUS=$2: $lines"
	printf '%s\n' "$lines" | sed -n 2p | grep -q ' CHECK listen=yes file=yes health=200$' ||
		fail "$1: at READY=1 the API did not answer or the database was missing: $lines"
}
stop_daemon() { # stop_daemon PID WHAT
	kill -TERM "$1"
	local rc=0
	wait "$1" || rc=$?
	[ $rc -eq 0 ] || fail "$2 exited $rc on SIGTERM"
}

note "start: edge (bus1's only board absent, 1 h backoff), cloud on SQLite, cloud on a closed PostgreSQL port"
sim_start bus0 modbus --board 1:2
sim_start bus1 modbus --board 5:1
edge_config "$T/edge.json" "[{\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"modbus\",
  \"boards\":[{\"address\":1,\"locks\":2}]},
  {\"name\":\"bus1\",\"port\":\"$T/bus1.tty\",\"protocol\":\"modbus\",\"response_timeout_ms\":20,
  \"offline_after\":1,\"offline_backoff_max_ms\":3600000,\"boards\":[{\"address\":9,\"locks\":1}]}]"
listen edge "http://127.0.0.1:$API_PORT/api/health" "$T/data/edge.db"

"$CLOUD" keygen --out "$T/cloud.key" >/dev/null
cloud_json() { # cloud_json FILE PORT DATABASE_JSON
	jq -n --argjson port "$2" --argjson db "$3" --arg key "$T/cloud.key" \
		'{listen: {address: "127.0.0.1", port: $port}, database: $db,
		  signing_key_file: $key, log_level: "info"}' >"$1"
}
CPORT=$(free_port)
cloud_json "$T/cloud.json" "$CPORT" "{\"backend\":\"sqlite\",\"path\":\"$T/cloud.db\"}"
listen cloud "http://127.0.0.1:$CPORT/api/health" "$T/cloud.db"
PGPORT_CLOSED=$(free_port)
cloud_json "$T/cloudpg.json" 0 \
	"{\"backend\":\"postgres\",\"conninfo\":\"host=127.0.0.1 port=$PGPORT_CLOSED dbname=none\"}"
listen cloudpg

daemon edge edge.log "$EDGE" --config "$T/edge.json"
EDGE_PID=$LAST_PID
daemon cloud cloud.log "$CLOUD" --config "$T/cloud.json"
CLOUD_PID=$LAST_PID
PIDS+=("$CLOUD_PID")
daemon cloudpg cloudpg.log "$CLOUD" --config "$T/cloudpg.json"
CLOUDPG_PID=$LAST_PID
PIDS+=("$CLOUDPG_PID")

note "edge: READY=1 after the API and the database"
wait_until 20 has edge 'READY=1' || fail "edge: no READY=1 (datagrams: $(cat "$T/edge.notify"))"
T_READY=$(first_at edge 'READY=1')
ready_ok edge "api=http://127.0.0.1:$API_PORT carts=3 buses=2"
grep -q 'event=edge.ready' "$T/edge.log" || fail "edge: no edge.ready line"

note "cloud (SQLite): READY=1 after /api/health answers"
wait_until 20 has cloud 'READY=1' || fail "cloud: no READY=1 (datagrams: $(cat "$T/cloud.notify"))"
ready_ok cloud "port=$CPORT backend=sqlite tls=off"

# bus1's board went offline at start; its re-probes come 250, 500, 1000,
# 2000, 4000 ms apart: a watchdog that took the worker's idle sleep for a
# hang would stop feeding within ~6 s of the start
mono() { /usr/bin/python3 -c 'import time; print("%.3f" % time.monotonic())'; }
note "watching the watchdog until 6.2 s after the edge's READY=1"
sleep "$(awk -v r="$T_READY" -v n="$(mono)" 'BEGIN { s = r + 6.2 - n; printf "%.3f\n", (s > 0 ? s : 0) }')"

T_NOW=$(mono)
n=$(count edge 'WATCHDOG=1' "$T_READY" "$(awk -v t="$T_READY" 'BEGIN { print t + 3 }')")
[ "$n" -ge 3 ] || fail "edge: $n WATCHDOG=1 within 3 s of READY=1 (expected >= 3 with WatchdogSec 1.5 s)"
gap=$(max_gap edge 'WATCHDOG=1' "$T_READY" "$T_NOW")
awk -v g="$gap" 'BEGIN { exit !(g > 0 && g <= 1.0) }' ||
	fail "edge: WATCHDOG=1 paused ${gap} s (expected about 0.5 s, systemd kills at 1.5 s)"
grep -q 'event=bus.board_offline bus=bus1' "$T/edge.log" || fail "edge: bus1's board not offline"
! grep -q 'event=edge.watchdog_starved' "$T/edge.log" ||
	fail "edge: watchdog starved: $(grep watchdog_starved "$T/edge.log")"
# WatchdogSec 1.5 s is shorter than a bus may block (an idle second, bus0's
# worst step (2*2+1)*(50+2) ms, 1 s of margin): said once per bus at start
grep -q 'level=warn event=edge.watchdog_too_short bus=bus0 need_ms=2260 watchdog_ms=1500 ' \
	"$T/edge.log" || fail "edge: no edge.watchdog_too_short for bus0: $(grep watchdog_too "$T/edge.log")"

n=$(count cloud 'WATCHDOG=1' "$(first_at cloud 'READY=1')")
[ "$n" -ge 6 ] || fail "cloud: $n WATCHDOG=1 in the seconds after READY=1 (expected ~10)"

note "cloud (PostgreSQL down): waiting, start timeout extended, watchdog fed, not ready"
n=$(count cloudpg 'STATUS=waiting for the database')
[ "$n" -ge 3 ] || fail "cloudpg: $n STATUS=waiting for the database (a round every 2 s; expected >= 3)"
n=$(count cloudpg 'EXTEND_TIMEOUT_USEC=15000000')
[ "$n" -ge 3 ] || fail "cloudpg: $n EXTEND_TIMEOUT_USEC=15000000 (expected one per round, >= 3)"
n=$(count cloudpg 'WATCHDOG=1')
[ "$n" -ge 6 ] || fail "cloudpg: $n WATCHDOG=1 while waiting for the database (expected ~12)"
! has cloudpg 'READY=1' || fail "cloudpg: READY=1 without a database"
grep -q 'event=cloud.database_wait' "$T/cloudpg.log" || fail "cloudpg: no cloud.database_wait line"

note "SIGTERM: STOPPING=1, exit 0"
stop_daemon "$EDGE_PID" cartwise-edge
EDGE_PID=
stop_daemon "$CLOUD_PID" "cartwise-cloud (sqlite)"
stop_daemon "$CLOUDPG_PID" "cartwise-cloud (postgres down)"
for name in edge cloud cloudpg; do
	has "$name" 'STOPPING=1' || fail "$name: no STOPPING=1 after SIGTERM: $(tail -n 3 "$T/$name.notify")"
	[ "$(tail -n 1 "$T/$name.notify" | cut -d' ' -f2-)" = STOPPING=1 ] ||
		fail "$name: a datagram after STOPPING=1: $(tail -n 2 "$T/$name.notify")"
done
check_logs
note "ok"
