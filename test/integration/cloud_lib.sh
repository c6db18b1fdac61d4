# shellcheck shell=bash
# A real cartwise-cloud for the edge's integration tests (sync_e2e.sh,
# config_pull.sh), sourced after lib.sh with BACKEND set (sqlite | postgres):
# cloud_world starts it with a platform admin (token in CTOK), one chain
# (CHAIN), one branch E2E-1 (CBRANCH) and a one-use enrollment code (ECODE);
# edge_with_cloud MAC starts a simulator (bus0, board 1 of 4 locks) and an edge
# enrolling with that code. capi/cjq/cexpect talk to the cloud;
# cloud_start/cloud_stop restart it.
CLOUD=$B/src/cloud/cartwise-cloud
[ -x "$CLOUD" ] || fail "$CLOUD was not built"

case $BACKEND in
sqlite) DB_JSON="{\"backend\":\"sqlite\",\"path\":\"$T/cloud.db\"}" ;;
postgres)
	[ -n "${PGHOST:-}${PGPORT:-}" ] || { echo "SKIP: no PG* variables (run under pg_virtualenv)"; exit 77; }
	PGDB="cwe2e_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	psql -X -q -d postgres -c "CREATE DATABASE \"$PGDB\"" >/dev/null
	# keep the test's exit status for cw_cleanup (it reads $?): "set +e"
	# first, or "(exit 1)" ends the shell under set -e before the cleanup
	# ran (the daemons were left running after a failure); the cloud stops
	# first, or its pool reconnects while the database is dropped
	trap 'rc=$?; set +e; [ -z "$CLOUD_PID" ] || kill "$CLOUD_PID" 2>/dev/null; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$PGDB\" WITH (FORCE)" >/dev/null 2>&1; (exit $rc); cw_cleanup' EXIT
	DB_JSON="{\"backend\":\"postgres\",\"conninfo\":\"dbname=$PGDB\",\"pool_size\":4}"
	;;
*) fail "backend must be sqlite or postgres" ;;
esac

# ---- the cloud ----
"$CLOUD" keygen --out "$T/cloud.key" >/dev/null
CLOUD_PORT=$(free_port)
jq -n --argjson db "$DB_JSON" --arg key "$T/cloud.key" --argjson port "$CLOUD_PORT" \
	'{listen: {address: "127.0.0.1", port: $port}, database: $db, signing_key_file: $key}' >"$T/cloud.json"
CLOUD_PID=
cloud_start() {
	"$CLOUD" --config "$T/cloud.json" >>"$T/cloud.log" 2>&1 </dev/null &
	CLOUD_PID=$!
	PIDS+=("$CLOUD_PID")
	wait_until 20 curl -sf "http://127.0.0.1:$CLOUD_PORT/api/health" -o /dev/null ||
		fail "cartwise-cloud did not start"
}
cloud_stop() {
	kill -TERM "$CLOUD_PID"
	wait "$CLOUD_PID" || fail "cartwise-cloud exited badly on SIGTERM"
}
CTOK=
capi() { # METHOD PATH [BODY]: sets CODE, body in $T/cresp.json
	local args=(-s -o "$T/cresp.json" -w '%{http_code}' -X "$1")
	[ -z "$CTOK" ] || args+=(-H "Authorization: Bearer $CTOK")
	[ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
	CODE=$(curl "${args[@]}" "http://127.0.0.1:$CLOUD_PORT$2") || CODE=000
}
cjq() { jq -r "$1" "$T/cresp.json"; }
cexpect() { [ "$CODE" = "$1" ] || fail "cloud: expected HTTP $1, got $CODE: $(cat "$T/cresp.json")"; }

cloud_world() {
	local pw='e2e admin password 0123'
	printf '%s\n' "$pw" | "$CLOUD" --config "$T/cloud.json" admin create-user \
		--email admin@e2e.example --role platform-admin >/dev/null 2>>"$T/admin.log"
	cloud_start
	capi POST /api/auth/login "{\"email\":\"admin@e2e.example\",\"password\":\"$pw\"}"; cexpect 200
	CTOK=$(cjq .token)
	capi POST /api/chains '{"name":"E2E","slug":"e2e"}'; cexpect 201
	CHAIN=$(cjq .id)
	capi POST /api/branches "{\"chain_id\":\"$CHAIN\",\"code\":\"E2E-1\",\"name\":\"E2E branch\"}"; cexpect 201
	CBRANCH=$(cjq .id)
	capi POST "/api/branches/$CBRANCH/enrollment-codes" '{"uses":1}'; cexpect 201
	ECODE=$(cjq .code)
}


# edge_with_cloud MAC: cartwise-simlock on bus0 (board 1, 4 locks) and
# cartwise-edge with a cloud section for this cloud (heartbeat every 5 s),
# started, its 4 carts available.
edge_with_cloud() {
	sim_start bus0 modbus --board 1:4
	edge_config "$T/edge.json" "[{\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"modbus\",
	  \"boards\":[{\"address\":1,\"locks\":4}]}]" \
	  "{\"cloud\":{\"url\":\"http://127.0.0.1:$CLOUD_PORT\",\"insecure_http\":true,
	    \"branch_code\":\"E2E-1\",\"enrollment_code\":\"$ECODE\",\"heartbeat_s\":5,
	    \"mac_address\":\"$1\"}}"
	edge_start
	wait_until 10 cart_is 4 available || fail "carts not ready"
}
