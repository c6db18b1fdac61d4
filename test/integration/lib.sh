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
	wait 2>/dev/null || true
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
note() { echo "-- $*"; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS COMMAND...: retries every 50 ms.
wait_until() {
	local limit=$1; shift
	local end=$((SECONDS + limit))
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.05
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
	wait_until 20 curl -sf "http://127.0.0.1:$API_PORT/api/health" -o /dev/null \
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
CODE=
api() {
	local method=$1 path=$2 body=${3:-}
	local args=(-s -o "$T/resp.json" -w '%{http_code}' -X "$method"
		-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT$path")
	if [ -n "$body" ]; then
		args+=(-H 'Content-Type: application/json' --data-binary "$body")
	fi
	CODE=$(curl "${args[@]}") || CODE=000
}
# jqr FILTER: reads the last response
jqr() { jq -r "$1" "$T/resp.json"; }
expect_code() {
	[ "$CODE" = "$1" ] || fail "expected HTTP $1, got $CODE: $(cat "$T/resp.json" 2>/dev/null)"
}
branch() { printf '/api/branches/%s%s' "$BRANCH" "$1"; }

cart_field() { # cart_field NUMBER FIELD
	api GET "$(branch "/carts/$1")"
	expect_code 200
	jqr ".$2"
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
