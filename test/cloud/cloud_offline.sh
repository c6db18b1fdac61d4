#!/usr/bin/env bash
# PostgreSQL going away: the server answers 503 (never hangs, never crashes),
# and recovers by itself when the database returns; a server started while
# the database is down waits for it. The database is reached through a TCP
# proxy (socat) that the test stops and starts.
. "$(dirname "$0")/lib.sh"
[ "$BACKEND" = postgres ] || { echo "SKIP: PostgreSQL only"; exit 77; }
command -v socat >/dev/null || { echo "FAIL: socat missing"; exit 1; }

PROXY_PORT=$(free_port)
PROXY_PID=
if [ "${PGHOST:-}" = "" ] || [ "${PGHOST#/}" != "$PGHOST" ]; then
	TARGET="UNIX-CONNECT:${PGHOST:-/var/run/postgresql}/.s.PGSQL.${PGPORT:-5432}"
else
	TARGET="TCP:$PGHOST:${PGPORT:-5432}"
fi
proxy_start() {
	socat "TCP-LISTEN:$PROXY_PORT,bind=127.0.0.1,fork,reuseaddr" "$TARGET" 2>>"$T/socat.log" &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	wait_until 5 bash -c "echo >/dev/tcp/127.0.0.1/$PROXY_PORT" 2>/dev/null || fail "proxy did not start"
}
proxy_stop() {
	# the forked children carry the open connections: end them too (all
	# are processes this test started)
	pkill -TERM -P "$PROXY_PID" 2>/dev/null || true
	kill "$PROXY_PID" 2>/dev/null || true
	wait "$PROXY_PID" 2>/dev/null || true
	PROXY_PID=
}

proxy_start
DB_JSON="{\"backend\":\"postgres\",\"conninfo\":\"host=127.0.0.1 port=$PROXY_PORT dbname=$PGDB\",\"pool_size\":2}"
setup_world

note "database up"
AUTH=$TOK_PLATFORM
api GET /api/chains
expect_code 200

note "database down: 503, fast"
proxy_stop
t0=$SECONDS
api GET /api/chains
expect_error 503 unavailable
api GET /api/health
expect_code 503
[ "$(jqr .database)" = unavailable ] || fail "health does not say the database is unavailable"
AUTH=
api POST /api/auth/login "{\"email\":\"admin@example.com\",\"password\":\"$PW\"}"
expect_error 503
# the login rate limit fails closed: a wrong password is not an uncounted 401
api POST /api/auth/login '{"email":"admin@example.com","password":"wrong password"}'
expect_error 503 unavailable
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
expect_error 503
curl -s "http://127.0.0.1:$PORT/metrics" | grep -qx 'cartwise_db_up 0' || fail "metrics do not say the database is down"
[ $((SECONDS - t0)) -le 20 ] || fail "503s took $((SECONDS - t0)) s"

note "database back: recovered without a restart"
proxy_start
AUTH=$TOK_PLATFORM
ok200() { api GET /api/chains; [ "$CODE" = 200 ]; }
wait_until 20 ok200 || fail "did not recover: $CODE $(cat "$T/resp.json")"
api GET /api/health
expect_code 200
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
expect_code 200

note "a server started while the database is down waits for it"
cloud_stop
proxy_stop
cloud_spawn
wait_until 10 grep -q 'event=cloud.database_wait' "$T/cloud.log" || fail "no database_wait"
kill -0 "$CLOUD_PID" || fail "the server gave up"
proxy_start
cloud_wait_ready 30
wait_until 20 curl -sf "http://127.0.0.1:$PORT/api/health" -o /dev/null || fail "never came up"
AUTH=$TOK_PLATFORM
api GET /api/chains
expect_code 200

cloud_stop
proxy_stop
check_logs
echo "ok"
