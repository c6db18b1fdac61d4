# shellcheck shell=bash
# Helpers for the integration tests: run the real programs (cartwise-simlock
# on a pseudo-terminal, cartwise-edge, cartwisectl) and talk to them.
# Sourced by test/integration/*.sh; meson sets CW_BUILD_DIR and CW_SOURCE_DIR.
set -euo pipefail

B=${CW_BUILD_DIR:?run through meson test}
SIM=$B/src/simlock/cartwise-simlock
EDGE=$B/src/edge/cartwise-edge
CTL=$B/src/edge/cartwisectl
for prog in "$SIM" "$EDGE" "$CTL"; do
	[ -x "$prog" ] || { echo "FAIL: $prog was not built"; exit 1; }
done
command -v socat >/dev/null || { echo "FAIL: socat missing (scripts/test installs it)"; exit 1; }
command -v jq >/dev/null || { echo "FAIL: jq missing (scripts/test installs it)"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/cwit.XXXXXX")
TOKEN=test-admin-token-0123456789
BRANCH=branch-001
PIDS=()
EDGE_PID=
TEST_NAME=$(basename "$0" .sh)
# Error-level lines the test expects (grep -E pattern); any other fails it.
ALLOWED_ERRORS=${ALLOWED_ERRORS:-'^$'}

cw_cleanup() {
	local rc=$?
	for p in "${PIDS[@]}" $EDGE_PID; do
		kill "$p" 2>/dev/null || true
	done
	! declare -F cw_http_stop >/dev/null || cw_http_stop
	wait 2>/dev/null || true
	if [ -n "${PGDB:-}" ]; then # cloud_init's PostgreSQL database
		"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$PGDB\" WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	if [ $rc -ne 0 ] || [ -n "${CW_KEEP:-}" ]; then
		if [ -n "${CW_TEST_ARTIFACTS:-}" ]; then
			mkdir -p "$CW_TEST_ARTIFACTS/$TEST_NAME"
			cp -r "$T"/*.log "$T"/*.json "$CW_TEST_ARTIFACTS/$TEST_NAME/" 2>/dev/null || true
		fi
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "---- last lines of $(basename "$f")"
			tail -n 30 "$f"
		done
	fi
	rm -rf "$T"
	exit $rc
}
trap cw_cleanup EXIT
# a test stopped by meson (timeout) or by hand still stops its daemons
trap 'exit 143' TERM INT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- [${SECONDS}s] $*"; }

# shellcheck source=../free_port.sh
. "$(dirname "${BASH_SOURCE[0]}")/../free_port.sh"
free_port() { cw_free_port; }
# shellcheck source=../cw_python.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cw_python.sh"
# shellcheck source=../cw_psql.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cw_psql.sh"
# shellcheck source=../cw_http.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cw_http.sh"

# wait_until SECONDS COMMAND...: retries every 50 ms, after 3 s every 0.25 s
# (WAIT_LONG_PAUSE=S wait_until ...: every S seconds after 3 s).
wait_until() {
	local limit=$1; shift
	local start=$SECONDS pause=0.05
	until "$@"; do
		[ $SECONDS -lt $((start + limit)) ] || return 1
		# a long wait polls less often: each try of a curl+jq predicate
		# costs ~0.1 s of CPU, which the daemons under test need
		[ $SECONDS -lt $((start + 3)) ] || pause=${WAIT_LONG_PAUSE:-0.25}
		sleep "$pause"
	done
}

# sim_start NAME PROTOCOL [simlock args...]: link at $T/NAME.tty, control socket $T/NAME.sock
sim_start() {
	local name=$1 proto=$2; shift 2
	"$SIM" --protocol "$proto" --link "$T/$name.tty" --control "$T/$name.sock" "$@" \
		>"$T/$name.out" 2>"$T/$name.log" </dev/null &
	PIDS+=($!)
	wait_until 10 grep -q '^ready' "$T/$name.out" || fail "simulator $name did not become ready"
	wait_until 5 test -S "$T/$name.sock" || fail "simulator $name has no control socket"
}

# sim NAME COMMAND...: one control command; prints the answer; fails on "err" unless SIM_ERR_OK=1.
sim() {
	local name=$1; shift
	local ans
	ans=$(printf '%s\n' "$*" | socat -t 2 - "UNIX-CONNECT:$T/$name.sock" | head -n 1)
	if [ "${ans%% *}" != ok ] && [ -z "${SIM_ERR_OK:-}" ]; then
		fail "simulator $name: '$*' answered '$ans'"
	fi
	printf '%s\n' "$ans"
}

# edge_config FILE BUSES_JSON [extra top-level JSON merged in]
API_PORT=
edge_config() {
	local file=$1 buses=$2 extra=${3:-'{}'}
	API_PORT=$(free_port)
	jq -n --arg dd "$T/data" --argjson port "$API_PORT" --arg tok "$TOKEN" \
		--arg br "$BRANCH" --argjson buses "$buses" --argjson extra "$extra" '
		{chain_id: "chain-test", branch_id: $br, device_id: "rpi-test-1",
		 data_dir: $dd, log_level: "info",
		 api: {bind: "127.0.0.1", port: $port, admin_token: $tok},
		 rules: {rental_minutes: 120, grace_minutes: 10, take_timeout_s: 60},
		 buses: $buses} * $extra' >"$file"
}

edge_start() {
	local cfg=${1:-$T/edge.json}
	"$EDGE" --config "$cfg" >>"$T/edge.log" 2>&1 </dev/null &
	EDGE_PID=$!
	wait_until 20 cw_http_ok "http://127.0.0.1:$API_PORT/api/health" \
		|| fail "cartwise-edge did not answer /api/health"
}

edge_stop() {
	[ -n "$EDGE_PID" ] || return 0
	kill -TERM "$EDGE_PID"
	local rc=0
	wait "$EDGE_PID" || rc=$?
	EDGE_PID=
	[ $rc -eq 0 ] || fail "cartwise-edge exited $rc on SIGTERM"
}

# api METHOD PATH [BODY]: sets CODE and writes the body to $T/resp.json
# (an empty BODY: none; test/cw_http.sh makes the request)
CODE=
api() {
	if [ -n "${3:-}" ]; then
		cw_http "$1" "http://127.0.0.1:$API_PORT$2" "$T/resp.json" "$TOKEN" "$3"
	else
		cw_http "$1" "http://127.0.0.1:$API_PORT$2" "$T/resp.json" "$TOKEN"
	fi
}
# jqr FILTER: reads the last response
jqr() { cw_jq "$1" "$T/resp.json"; }
expect_code() {
	[ "$CODE" = "$1" ] || fail "expected HTTP $1, got $CODE: $(cat "$T/resp.json" 2>/dev/null)"
}
branch() { printf '/api/branches/%s%s' "$BRANCH" "$1"; }

cart_field() { # cart_field NUMBER FIELD
	api GET "$(branch "/carts/$1")"
	expect_code 200
	jqr ".$2"
}
# all_available N: all N carts of the branch available (each board comes
# online at its own first poll: one board's carts say nothing of another's)
all_available() {
	api GET "$(branch /carts)" && [ "$CODE" = 200 ] &&
		[ "$(jqr '[.[] | select(.status=="available")] | length')" = "$1" ]
}
cart_is() { [ "$(cart_field "$1" status)" = "$2" ]; }
# cart_has NUMBER FIELD VALUE: for wait_until (re-reads the cart every try)
cart_has() { [ "$(cart_field "$1" "$2")" = "$3" ]; }

# Fails when the daemon or a simulator logged an error-level line the test
# did not expect.
check_logs() {
	local bad
	bad=$(cat "$T"/*.log | grep 'level=error' | grep -Ev "$ALLOWED_ERRORS" || true)
	[ -z "$bad" ] || fail "unexpected error-level log lines:
$bad"
}

# SQL against the edge database (read-only, while the daemon may run).
edge_sql() { sqlite3 -readonly "$T/data/edge.db" "$1"; }

# ---- a real cartwise-cloud beside the edge (sync_e2e.sh, sync_faults.sh) ----
# cloud_init BACKEND (sqlite | postgres) [extra config JSON merged in]: the
# cloud's database (a file, or a fresh PostgreSQL database dropped at exit),
# its key and config on a free port, a platform admin (token in CTOK), a chain, a branch E2E-1 (CBRANCH)
# and a one-use enrollment code (ECODE); the cloud is left running.
CLOUD=$B/src/cloud/cartwise-cloud
CLOUD_PID=
CLOUD_PORT=
CLOUD_BACKEND=
PGDB=
CTOK=
# the platform admin cloud_init creates (the dashboard's tests sign in as it)
CLOUD_ADMIN_EMAIL=admin@e2e.example
CLOUD_ADMIN_PW='e2e admin password 0123'
cloud_init() {
	CLOUD_BACKEND=$1
	local extra=${2:-'{}'}
	[ -x "$CLOUD" ] || fail "$CLOUD was not built"
	local db_json
	case $CLOUD_BACKEND in
	sqlite) db_json="{\"backend\":\"sqlite\",\"path\":\"$T/cloud.db\"}" ;;
	postgres)
		[ -n "${PGHOST:-}${PGPORT:-}" ] || { echo "SKIP: no PG* variables (run under pg_virtualenv)"; exit 77; }
		PGDB="cwe2e_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
		"$PSQL" -X -q -d postgres -c "CREATE DATABASE \"$PGDB\"" >/dev/null # cw_cleanup drops it
		db_json="{\"backend\":\"postgres\",\"conninfo\":\"dbname=$PGDB\",\"pool_size\":4}"
		;;
	*) fail "backend must be sqlite or postgres" ;;
	esac
	"$CLOUD" keygen --out "$T/cloud.key" >/dev/null
	CLOUD_PORT=$(free_port)
	# login.hash_*: the cheapest Argon2id (test/cloud/lib.sh cloud_config)
	jq -n --argjson db "$db_json" --arg key "$T/cloud.key" --argjson port "$CLOUD_PORT" \
		--argjson extra "$extra" '{listen: {address: "127.0.0.1", port: $port}, database: $db,
		signing_key_file: $key, login: {hash_ops: 1, hash_mem_kib: 8}} * $extra' >"$T/cloud.json"
	printf '%s\n' "$CLOUD_ADMIN_PW" | "$CLOUD" --config "$T/cloud.json" admin create-user \
		--email "$CLOUD_ADMIN_EMAIL" --role platform-admin >/dev/null 2>>"$T/admin.log"
	cloud_start
	capi POST /api/auth/login "{\"email\":\"$CLOUD_ADMIN_EMAIL\",\"password\":\"$CLOUD_ADMIN_PW\"}"; cexpect 200
	CTOK=$(cjq .token)
	capi POST /api/chains '{"name":"E2E","slug":"e2e"}'; cexpect 201
	local chain; chain=$(cjq .id)
	capi POST /api/branches "{\"chain_id\":\"$chain\",\"code\":\"E2E-1\",\"name\":\"E2E branch\"}"; cexpect 201
	CBRANCH=$(cjq .id)
	capi POST "/api/branches/$CBRANCH/enrollment-codes" '{"uses":1}'; cexpect 201
	ECODE=$(cjq .code)
}
cloud_start() {
	"$CLOUD" --config "$T/cloud.json" >>"$T/cloud.log" 2>&1 </dev/null &
	CLOUD_PID=$!
	PIDS+=("$CLOUD_PID")
	wait_until 20 cw_http_ok "http://127.0.0.1:$CLOUD_PORT/api/health" ||
		fail "cartwise-cloud did not start"
}
cloud_stop() {
	kill -TERM "$CLOUD_PID"
	wait "$CLOUD_PID" || fail "cartwise-cloud exited badly on SIGTERM"
}
capi() { # METHOD PATH [BODY]: sets CODE, body in $T/cresp.json
	if [ $# -ge 3 ]; then
		cw_http "$1" "http://127.0.0.1:$CLOUD_PORT$2" "$T/cresp.json" "$CTOK" "$3"
	else
		cw_http "$1" "http://127.0.0.1:$CLOUD_PORT$2" "$T/cresp.json" "$CTOK"
	fi
}
cjq() { cw_jq "$1" "$T/cresp.json"; }
cexpect() { [ "$CODE" = "$1" ] || fail "cloud: expected HTTP $1, got $CODE: $(cat "$T/cresp.json")"; }
cloud_sql() { # SQL on the cloud database (read-only)
	if [ "$CLOUD_BACKEND" = sqlite ]; then
		sqlite3 -readonly "$T/cloud.db" "$1"
	else
		"$PSQL" -X -qtA -d "$PGDB" -c "$1"
	fi
}

# edge_with_cloud URL [extra cloud JSON] [extra bus JSON] [extra top-level
# JSON]: simulator bus0 (one Modbus board, 4 locks) and the edge with a cloud
# section at URL (heartbeat every 5 s, enrollment with ECODE); waits for the
# carts and the enrollment; sets DEV (the device id the cloud gave).
DEV=
edge_with_cloud() {
	local url=$1 cloud_extra=${2:-'{}'} bus_extra=${3:-'{}'} extra=${4:-'{}'} buses cloud
	sim_start bus0 modbus --board 1:4
	buses=$(jq -n --arg port "$T/bus0.tty" --argjson extra "$bus_extra" \
		'[{name: "bus0", port: $port, protocol: "modbus", boards: [{address: 1, locks: 4}]} * $extra]')
	cloud=$(jq -n --arg url "$url" --arg code "$ECODE" --argjson extra "$cloud_extra" \
		'{cloud: ({url: $url, insecure_http: true, branch_code: "E2E-1", enrollment_code: $code,
		  heartbeat_s: 5, mac_address: "02:e2:e0:00:00:01"} * $extra)}')
	edge_config "$T/edge.json" "$buses" "$(jq -n --argjson a "$cloud" --argjson b "$extra" '$a * $b')"
	edge_start
	wait_until 10 cart_is 4 available || fail "carts not ready"
	wait_until 30 state_is ok || fail "the edge did not enroll: state $(cloud_state)"
	DEV=$(jq -r .device_id "$T/data/cloud.json")
}
# edge_status: the JSON of `cartwisectl --json status` (GET /api/admin/status)
# read over HTTP: the predicates below are polled every 50 ms, and a
# cartwisectl start under ASan costs about three times a curl's CPU
# (ctl.sh tests cartwisectl status itself)
# (edge_status_get: the same into $T/status.json)
edge_status_get() { cw_http_ok "http://127.0.0.1:$API_PORT/api/admin/status" "$TOKEN" "$T/status.json"; }
edge_status() { edge_status_get && cat "$T/status.json"; }
cloud_state() { edge_status_get && cw_jq .cloud.state "$T/status.json"; }
outbox_empty() { [ "$(edge_status_get && cw_jq .cloud.outbox_depth "$T/status.json")" = 0 ]; }
state_is() { [ "$(cloud_state)" = "$1" ]; }

# outbox_fill N: at least N outbox entries, quickly: maintenance on/off of
# cart 4 (each change is a cart snapshot and a telemetry event) from one curl
# process, keep-alive, many requests. Prints how many entries were written.
outbox_fill() {
	local n=$1 before after
	before=$(edge_sql "SELECT coalesce(max(seq), 0) FROM outbox")
	: >"$T/many.curl"
	for _ in $(seq $((n / 4 + 1))); do
		for v in true false; do
			printf 'url = "http://127.0.0.1:%s/api/admin/carts/4/maintenance"\nrequest = "POST"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\ndata = "{\\"on\\":%s}"\noutput = "/dev/null"\nnext\n' \
				"$API_PORT" "$TOKEN" "$v" >>"$T/many.curl"
		done
	done
	sed -i '$ d' "$T/many.curl" # no "next" after the last request
	curl -s -K "$T/many.curl" || fail "the maintenance requests failed"
	after=$(edge_sql "SELECT max(seq) FROM outbox")
	[ $((after - before)) -ge "$n" ] || fail "only $((after - before)) outbox entries were written"
	echo $((after - before))
}

# outbox_fill_sql N: N more telemetry events and their outbox entries in one
# SQLite transaction beside the running edge (WAL; both sides wait for the
# other's lock), each a copy of the edge's last telemetry event: the rows the
# engine writes (cwe_telemetry's telemetry row and its outbox snapshot, built
# by the same json_object), without N requests of the daemon under ASan,
# each its own fsync'd transaction (~3 ms of wall time an entry). Needs one
# telemetry entry of the edge's own in the outbox (outbox_fill writes some).
# For a test whose point is the drain, not the writing (sync_e2e.sh).
outbox_fill_sql() {
	local n=$1 before after
	before=$(edge_sql "SELECT coalesce(max(seq), 0) FROM outbox")
	sqlite3 "$T/data/edge.db" ".timeout 10000" "
		BEGIN IMMEDIATE;
		CREATE TEMP TABLE tpl AS SELECT t.id AS tid,
			json_extract(o.payload, '\$.chain_id') AS chain_id,
			json_extract(o.payload, '\$.branch_id') AS branch_id,
			json_extract(o.payload, '\$.device_id') AS device_id
			FROM outbox o JOIN telemetry t ON t.id = CAST(o.entity_id AS INTEGER)
			WHERE o.kind = 'telemetry' ORDER BY o.seq DESC LIMIT 1;
		CREATE TEMP TABLE first AS SELECT coalesce(max(id), 0) + 1 AS id FROM telemetry;
		WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $n)
		INSERT INTO telemetry(event_type, cart_id, rental_id, event_data, wall_ms, clock_trusted)
			SELECT t.event_type, t.cart_id, t.rental_id, t.event_data, t.wall_ms + k.i, t.clock_trusted
			FROM k, telemetry t JOIN tpl ON t.id = tpl.tid ORDER BY k.i;
		INSERT INTO outbox(kind, entity_type, entity_id, payload, created_wall_ms, clock_trusted)
			SELECT 'telemetry', 'telemetry', CAST(t.id AS TEXT),
			json_object('v', 1, 'event', 'telemetry', 'chain_id', p.chain_id,
			'branch_id', p.branch_id, 'device_id', p.device_id, 'at', t.wall_ms,
			'clock_trusted', json(CASE WHEN t.clock_trusted THEN 'true' ELSE 'false' END),
			'telemetry', json_object('id', t.id, 'event_type', t.event_type,
			'cart_id', t.cart_id, 'rental_id', t.rental_id, 'event_data', json(t.event_data),
			'wall_ms', t.wall_ms, 'clock_trusted', t.clock_trusted)), t.wall_ms, t.clock_trusted
			FROM telemetry t, tpl p WHERE t.id >= (SELECT id FROM first) ORDER BY t.id;
		COMMIT;" || fail "the outbox could not be filled"
	after=$(edge_sql "SELECT max(seq) FROM outbox")
	[ $((after - before)) -ge "$n" ] || fail "only $((after - before)) outbox entries were written"
	echo $((after - before))
}

# assert_synced: the cloud's high-water mark reaches the edge's last seq (the
# edge may still write: board events), and up to that mark the cloud's rows
# equal the edge's: telemetry none lost, none duplicated, none above the mark.
cloud_hw() { cloud_sql "SELECT high_water FROM device_sync WHERE device_id = '$DEV'"; }
edge_seq() { edge_sql "SELECT max(seq) FROM outbox"; }
hw_is_edge_seq() { [ "$(cloud_hw)" = "$(edge_seq)" ]; }
assert_synced() {
	local edge_rows cloud_rows cloud_distinct hw
	wait_until 30 hw_is_edge_seq || fail "high water $(cloud_hw) is not the edge's last seq $(edge_seq)"
	hw=$(cloud_hw)
	edge_rows=$(edge_sql "SELECT count(*) FROM outbox WHERE kind = 'telemetry' AND seq <= $hw")
	cloud_rows=$(cloud_sql "SELECT count(*) FROM telemetry WHERE device_id = '$DEV' AND seq <= $hw")
	cloud_distinct=$(cloud_sql "SELECT count(DISTINCT seq) FROM telemetry WHERE device_id = '$DEV' AND seq <= $hw")
	[ "$edge_rows" = "$cloud_rows" ] || fail "telemetry up to seq $hw: edge $edge_rows, cloud $cloud_rows"
	# one statement: the mark and the rows from one snapshot (the edge syncs on)
	[ "$(cloud_sql "SELECT count(*) FROM telemetry t JOIN device_sync d ON d.device_id = t.device_id
		WHERE t.device_id = '$DEV' AND t.seq > d.high_water")" = 0 ] || fail "telemetry above the high-water mark"
	[ "$cloud_rows" = "$cloud_distinct" ] || fail "duplicate telemetry in the cloud"
}

# cloud_unlock CART_NUMBER: a manager's "unlock cart" on the cloud API; sets CMD
# (the command id). cmd_state: the command's state in the cloud.
CMD=
cloud_unlock() {
	local cid
	capi GET "/api/branches/$CBRANCH/carts"; cexpect 200
	cid=$(cjq ".items[] | select(.cart_number == $1) | .id")
	[ -n "$cid" ] || fail "cart $1 is not in the cloud"
	capi POST "/api/branches/$CBRANCH/carts/$cid/unlock" '{}'; cexpect 202
	CMD=$(cjq '.command_id // .id')
}
cmd_state() { capi GET "/api/commands/$CMD"; cexpect 200; cjq .state; }
cmd_state_is() { [ "$(cmd_state)" = "$1" ]; }

# rental_round_trip PHONE: a customer rents a cart, takes it from the
# simulator's slot, returns it and docks it; sets RID (the rental id).
RID=
rental_round_trip() {
	local cart slot
	api POST "$(branch /carts/assign)" "{\"phone\":\"$1\"}"; expect_code 201
	RID=$(jqr .rental_id); cart=$(jqr .cart_number)
	sim bus0 take 1 $((cart - 1)) >/dev/null
	wait_until 5 cart_has "$cart" cart_present false || fail "cart not taken"
	api POST "$(branch /carts/return)" "{\"phone\":\"$1\"}"; expect_code 200
	slot=$(jqr .slot_number)
	sim bus0 dock 1 $((slot - 1)) >/dev/null
	wait_until 5 cart_is "$slot" available || fail "the return did not close the rental"
}
# assert_cloud_rental_returned: rental RID reads returned in the cloud, which
# has the edge's 4 carts
assert_cloud_rental_returned() {
	capi GET "/api/branches/$CBRANCH/rentals/history?limit=10"; cexpect 200
	[ "$(cjq "[.items[] | select(.id == \"$RID\")][0].status")" = returned ] ||
		fail "the rental is not returned in the cloud: $(cat "$T/cresp.json")"
	capi GET "/api/branches/$CBRANCH/carts"; cexpect 200
	[ "$(cjq '.items | length')" = 4 ] || fail "the cloud has $(cjq '.items | length') carts, not 4"
	[ "$(cjq "[.items[] | select(.device_id == \"$DEV\")] | length")" = 4 ] || fail "carts without their device"
}
