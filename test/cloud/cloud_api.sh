#!/usr/bin/env bash
# Every endpoint of cartwise-cloud, success and failure, on one backend.
. "$(dirname "$0")/lib.sh"

note "subcommands: usage, keygen, migrate, bad config"
"$CLOUD" --help | grep -q -- '--config' || fail "--help does not document --config"
rc=0; "$CLOUD" >/dev/null 2>&1 || rc=$?; [ $rc -eq 2 ] || fail "no arguments: exit $rc, want 2"
rc=0; "$CLOUD" keygen --out "$T/signing.key" 2>/dev/null || rc=$?
[ $rc -ne 0 ] || fail "keygen overwrote an existing key"
[ "$(stat -c %a "$T/signing.key")" = 600 ] || fail "signing key is not 0600"
cloud_config "$T/cloud.json"
jq '. + {colour: "red"}' "$T/cloud.json" >"$T/bad.json"
out=$("$CLOUD" --config "$T/bad.json" migrate 2>&1) && fail "unknown key accepted"
grep -q colour <<<"$out" || fail "config error does not name the key: $out"
# the version is the number of migrations compiled in (schema/cloud/<dialect>/NNN_*.sql)
v1=$("$CLOUD" --config "$T/cloud.json" migrate) || fail "migrate"
grep -Eq '^schema version [1-9][0-9]*$' <<<"$v1" || fail "migrate: $v1"
v2=$("$CLOUD" --config "$T/cloud.json" migrate) || fail "migrate twice"
[ "$v1" = "$v2" ] || fail "migrate twice: $v1 then $v2"
# create-user: password never from argv; too short refused; bad role refused
rc=0; printf 'short\n' | "$CLOUD" --config "$T/cloud.json" admin create-user --email a@b.c \
	--role platform-admin >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "short password accepted ($rc)"
rc=0; printf '%s\n' "$PW" | "$CLOUD" --config "$T/cloud.json" admin create-user --email a@b.c \
	--role root >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "unknown role accepted ($rc)"
rc=0; printf '%s\n' "$PW" | "$CLOUD" --config "$T/cloud.json" admin create-user --email a@b.c \
	--role chain-admin >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "chain-admin without --chain accepted ($rc)"
printf '%s\n' "$PW" >"$T/pw"
"$CLOUD" --config "$T/cloud.json" admin create-user --email FILE@Example.com --role platform-admin \
	--password-file "$T/pw" | jq -e '.email == "file@example.com"' >/dev/null \
	|| fail "create-user with --password-file"
rc=0; "$CLOUD" --config "$T/cloud.json" admin create-user --email file@example.com \
	--role platform-admin --password-file "$T/pw" >/dev/null 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "duplicate email accepted ($rc)"
# the hash has the configured Argon2id cost (login.hash_*: test/cloud/lib.sh
# sets the cheapest; the default is checked by test_cloud_config)
[[ $(db_sql "SELECT password_hash FROM staff_users WHERE email = 'file@example.com'") == \
	'$argon2id$v=19$m=8,t=1,p=1$'* ]] || fail "create-user did not hash at login.hash_*"

# the dashboard's files (web.dashboard_dir, docs/DASHBOARD.md "Serving")
mkdir -p "$T/dash/sub"
printf '<!doctype html><title>dash</title>\n' >"$T/dash/index.html"
printf 'console.log(1);\n' >"$T/dash/app.js"
printf 'x\n' >"$T/dash/.hidden.js"
printf 'MZ\n' >"$T/dash/x.exe"                  # a real file of an unknown extension
ln -s "$T" "$T/dash/up"                          # a linked directory, out of the root
ln -s "$T/cloud.json" "$T/dash/link.js"          # a linked file
SETUP_WITH_CLI=1 setup_world "{\"web\":{\"dashboard_dir\":\"$T/dash\"}}"
grep -q 'level=warn event=cloud.weak_password_hash ops=1 mem_kib=8 ' "$T/cloud.log" ||
	fail "no warning about the cheap login.hash_* cost"

note "health"
AUTH=
api GET /api/health
expect_code 200
[ "$(jqs .database .backend)" = "ok|$BACKEND" ] || fail "health: $(cat "$T/resp.json")"
api POST /api/health '{}'
expect_error 405 method_not_allowed
api GET /api/nothing
expect_error 404 not_found
api GET /api/chains/x/y/z/w/v/u
expect_error 404

note "dashboard files"
dash() { # dash PATH [curl args]: status in CODE, headers in $T/dash.hdr, body in $T/dash.body
	local p=$1; shift
	CODE=$(curl -s --path-as-is -D "$T/dash.hdr" -o "$T/dash.body" -w '%{http_code}' "$@" \
		"http://127.0.0.1:$PORT$p") || CODE=000
}
hdr() { grep -i "^$1: " "$T/dash.hdr" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
for p in / /index.html '/?next=x'; do
	dash "$p"
	[ "$CODE" = 200 ] || fail "GET $p: $CODE"
	cmp -s "$T/dash.body" "$T/dash/index.html" || fail "GET $p: not index.html"
	[ "$(hdr content-type)" = 'text/html; charset=utf-8' ] || fail "GET $p: content type"
	[ "$(hdr content-security-policy)" = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'" ] \
		|| fail "GET $p: CSP $(hdr content-security-policy)"
	[ "$(hdr x-content-type-options)" = nosniff ] || fail "GET $p: nosniff"
	[ "$(hdr cache-control)" = no-cache ] || fail "GET $p: cache-control $(hdr cache-control)"
done
dash /app.js
[ "$CODE" = 200 ] && [ "$(hdr content-type)" = 'text/javascript; charset=utf-8' ] || fail "app.js: $CODE"
[ "$(hdr cache-control)" = no-cache ] || fail "app.js: cache-control"
dash / -I
[ "$CODE" = 200 ] && ! grep -q doctype "$T/dash.body" || fail "HEAD /: $CODE"
for p in /../signing.key /%2e%2e/cloud.json /sub/../../cloud.json /.hidden.js /nothing.js /sub/ /x.exe \
	/up/cloud.json /up/dash/app.js /link.js; do
	dash "$p"
	[ "$CODE" = 404 ] || fail "GET $p: $CODE, want 404"
	[ "$(hdr content-security-policy)" = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'" ] \
		|| fail "GET $p: no CSP on the 404"
done
dash / -X POST --data-binary '{}'
[ "$CODE" = 405 ] || fail "POST /: $CODE"

note "login"
api POST /api/auth/login "{\"email\":\"ADMIN@example.com\",\"password\":\"$PW\"}"
expect_code 200
[ "$(jqs .user.role .token_type)" = "platform-admin|Bearer" ] || fail "login body"
[ "$(jqr .user.chain_id)" = null ] || fail "platform admin has a chain"
api POST /api/auth/login "{\"email\":\"admin-a@example.com\",\"password\":\"$PW\"}"
expect_code 200
[ "$(jqr .user.chain_id)" = "$CHAIN_A" ] || fail "chain admin's chain"
api POST /api/auth/login '{"email":"admin@example.com","password":"wrong password"}'
expect_error 401 unauthorized
api POST /api/auth/login '{"email":"nobody@example.com","password":"wrong password"}'
expect_error 401 unauthorized
api POST /api/auth/login '{"email":"admin@example.com"}'
expect_error 400 invalid
api POST /api/auth/login '{"email":"admin@example.com","password":""}'
expect_error 400
api GET /api/auth/login
expect_error 405

note "login is rate limited per email and address"
for _ in 1 2 3 4 5; do
	api POST /api/auth/login '{"email":"mgr-b1@example.com","password":"guess guess"}'
	expect_code 401
done
api POST /api/auth/login "{\"email\":\"mgr-b1@example.com\",\"password\":\"$PW\"}"
expect_error 429 rate_limited
# other accounts are not affected
api POST /api/auth/login "{\"email\":\"mgr-a1@example.com\",\"password\":\"$PW\"}"
expect_code 200

note "chains"
AUTH=$TOK_PLATFORM
api GET /api/chains
expect_code 200
[ "$(jqs '.items | length' .next_cursor)" = "2|null" ] || fail "chain list: $(cat "$T/resp.json")"
api POST /api/chains '{"name":"Chain C","slug":"chain-c"}'
expect_code 201
CHAIN_C=$(jqr .id)
[ "$(jqs .active .slug)" = "true|chain-c" ] || fail "created chain"
api POST /api/chains '{"name":"Dup","slug":"chain-c"}'
expect_error 409 conflict
api GET "/api/chains/$CHAIN_C"
expect_code 200
[ "$(jqr .name)" = "Chain C" ] || fail "chain get"
api PUT "/api/chains/$CHAIN_C" '{"name":"Chain C renamed","active":false}'
expect_code 200
[ "$(jqs .name .active .slug)" = "Chain C renamed|false|chain-c" ] \
	|| fail "chain update: $(cat "$T/resp.json")"
api PUT "/api/chains/$CHAIN_C" '{"slug":"chain-a"}'
expect_error 409
api GET /api/chains/01890000-0000-7000-8000-000000000000
expect_error 404 not_found
api GET /api/chains/not-a-uuid
expect_error 404
# pagination
api GET '/api/chains?limit=2'
expect_code 200
[ "$(jqr '.items | length')" = 2 ] || fail "page 1"
cur=$(jqr .next_cursor)
[ "$cur" != null ] || fail "no next_cursor"
api GET "/api/chains?limit=2&cursor=$cur"
expect_code 200
[ "$(jqs '.items | length' .next_cursor)" = "1|null" ] || fail "page 2"
api GET '/api/chains?limit=0'
expect_error 400
api GET '/api/chains?limit=abc'
expect_error 400
api GET '/api/chains?cursor=nonsense'
expect_error 400
# delete: refused while it has branches; done when empty
api DELETE "/api/chains/$CHAIN_A"
expect_error 409
api DELETE "/api/chains/$CHAIN_C"
expect_code 200
api GET "/api/chains/$CHAIN_C"
expect_error 404
api DELETE "/api/chains/$CHAIN_C"
expect_error 404
api PATCH "/api/chains/$CHAIN_A" '{}'
expect_error 405

note "branches"
api GET /api/branches
expect_code 200
[ "$(jqr '.items | length')" = 3 ] || fail "branch list"
api GET "/api/branches?chain_id=$CHAIN_A"
expect_code 200
[ "$(jqr '[.items[].chain_id] | unique')" = "$(jq -nc --arg c "$CHAIN_A" '[$c]' | jq -r .)" ] \
	|| fail "branch filter: $(cat "$T/resp.json")"
[ "$(jqr '.items | length')" = 2 ] || fail "branch filter count"
api GET "/api/branches?chain_id=$CHAIN_A&limit=1"
[ "$(jqs '.items | length' '(.next_cursor) != null')" = "1|true" ] || fail "branch page"
api GET '/api/branches?chain_id=bogus'
expect_error 400
api POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"A-003\",\"name\":\"סניף תלפיות\",\"address\":\"Ha-Oman 1\",\"city\":\"Jerusalem\",\"latitude\":31.75,\"longitude\":35.21}"
expect_code 201
BR_A3=$(jqr .id)
[ "$(jqs .name .latitude)" = "סניף תלפיות|31.75" ] || fail "branch body: $(cat "$T/resp.json")"
api POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"A-003\",\"name\":\"dup\"}"
expect_error 409
api POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"A-004\",\"name\":\"x\",\"latitude\":1}"
expect_error 400
api POST /api/branches '{"chain_id":"01890000-0000-7000-8000-000000000000","code":"Z","name":"x"}'
expect_error 404
api GET "/api/branches/$BR_A3"
expect_code 200
[ "$(jqr .city)" = Jerusalem ] || fail "branch get"
api GET "/api/branches/$BR_A1/stats"
expect_code 200
[ "$(jqs .devices.total .devices.online .carts.total)" = "1|0|0" ] \
	|| fail "stats: $(cat "$T/resp.json")"
api GET /api/branches/01890000-0000-7000-8000-000000000000/stats
expect_error 404
api DELETE "/api/branches/$BR_A3"
expect_error 405

note "enrollment codes and registration"
api POST "/api/branches/$BR_A2/enrollment-codes" '{"uses":1,"expires_in_s":600}'
expect_code 201
CODE_A2=$(jqr .code)
[ "$(jqs .branch_code .uses)" = "A-002|1" ] || fail "code body"
[ "${#CODE_A2}" -ge 16 ] || fail "enrollment code too short"
api POST "/api/branches/$BR_A2/enrollment-codes" '{"uses":0}'
expect_error 400
api POST "/api/branches/$BR_A2/enrollment-codes" '{"expires_in_s":1}'
expect_error 400
AUTH=
reg() { api POST /api/devices/register "$1"; }
reg "{\"mac_address\":\"02:00:00:00:00:a2\",\"branch_code\":\"A-001\",\"enrollment_code\":\"$CODE_A2\"}"
expect_error 403 enrollment_refused       # the code of another branch
reg "{\"mac_address\":\"02:00:00:00:00:a2\",\"branch_code\":\"A-002\",\"enrollment_code\":\"0000000000000000\"}"
expect_error 403 enrollment_refused
reg "{\"mac_address\":\"02:00:00:00:00:a2\",\"serial_number\":\"RPI-A2\",\"branch_code\":\"A-002\",\"enrollment_code\":\"$CODE_A2\",\"device_name\":\"kiosk pi\"}"
expect_code 201
DEV_A2=$(jqr .device_id)
[ "$(jqs .branch_id .chain_id)" = "$BR_A2|$CHAIN_A" ] || fail "register body"
[ "$(jqr .mqtt_config)" = null ] || fail "mqtt_config without a broker configured"
pub=$(jqr .cloud_public_key)
[ "${#pub}" = 43 ] || fail "cloud_public_key is not 32 bytes of base64url"
reg "{\"mac_address\":\"02:00:00:00:00:a3\",\"branch_code\":\"A-002\",\"enrollment_code\":\"$CODE_A2\"}"
expect_error 403 enrollment_refused       # used up
# a MAC registered in another chain
reg "{\"mac_address\":\"02:00:00:00:00:a1\",\"branch_code\":\"B-001\",\"enrollment_code\":\"$CODE_B1\"}"
expect_error 409 conflict
reg '{"mac_address":"not a mac at all","branch_code":"A-001","enrollment_code":"x"}'
expect_error 400
reg "{\"mac_address\":\"02:00:00:00:00:a4\",\"branch_code\":\"A-001\"}"
expect_error 400
# an expired code (expiry moved into the past in the database)
AUTH=$TOK_PLATFORM
api POST "/api/branches/$BR_A2/enrollment-codes" '{"uses":3}'
CODE_X=$(jqr .code); CODE_X_ID=$(jqr .id)
if [ "$BACKEND" = postgres ]; then
	db_sql "UPDATE enrollment_codes SET expires_at = now() - interval '1 second' WHERE id = '$CODE_X_ID'"
else
	db_sql "UPDATE enrollment_codes SET expires_ms = 1 WHERE id = '$CODE_X_ID'"
fi
AUTH=
reg "{\"mac_address\":\"02:00:00:00:00:a5\",\"branch_code\":\"A-002\",\"enrollment_code\":\"$CODE_X\"}"
expect_error 403 enrollment_refused
# the codes themselves are stored only as keyed hashes
[ "$(db_sql "SELECT count(*) FROM enrollment_codes WHERE code_hash = '$CODE_A1' OR code_hash = '$CODE_X'")" = 0 ] \
	|| fail "an enrollment code is stored in clear"

note "heartbeat"
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{"status":"online","firmware_version":"1.4.2","health":{"cpu_temp_c":51.5,"outbox_depth":0}}'
expect_code 200
[ "$(jqs .status '.commands | length')" = "ok|0" ] || fail "heartbeat body"
api POST "/api/devices/$DEV_A1/heartbeat"
expect_code 200                                  # empty body: alive
api POST "/api/devices/$DEV_A1/heartbeat" '{"status":"exploded"}'
expect_error 400
api POST "/api/devices/$DEV_A1/heartbeat" '{"health":[1,2]}'
expect_error 400
api POST "/api/devices/$DEV_B1/heartbeat" '{}'
expect_error 403 forbidden                       # another device's path
api GET "/api/devices/$DEV_A1/heartbeat"
expect_error 405
# a pending command is handed out in the heartbeat response, then delivered
CMD=$(new_uuid)
if [ "$BACKEND" = postgres ]; then
	db_sql "INSERT INTO commands (id, device_id, branch_id, action, args, expires_at) VALUES ('$CMD', '$DEV_A1', '$BR_A1', 'unlock', '{\"cart\": 7}', now() + interval '1 hour')"
else
	db_sql "INSERT INTO commands (id, device_id, branch_id, action, args, created_ms, expires_ms) VALUES ('$CMD', '$DEV_A1', '$BR_A1', 'unlock', '{\"cart\": 7}', 0, 99999999999999)"
fi
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
expect_code 200
[ "$(jqs '.commands | length' '.commands[0].id' '.commands[0].args.cart')" = "1|$CMD|7" ] || fail "pending command not returned: $(cat "$T/resp.json")"

note "devices and commands (staff)"
AUTH=$TOK_PLATFORM
api GET "/api/devices/$DEV_A1"
expect_code 200
[ "$(jqs .status .firmware_version .health.cpu_temp_c .mac_address)" = "online|1.4.2|51.5|02:00:00:00:00:A1" ] || fail "device: $(cat "$T/resp.json")"
api GET "/api/devices/$DEV_A1/status"
expect_code 200
[ "$(jqr .online)" = true ] || fail "device status"
api GET "/api/devices/$DEV_A2/status"
expect_code 200
[ "$(jqs .status .online .last_heartbeat)" = "offline|false|null" ] \
	|| fail "never-seen device is not offline"
api GET /api/devices/01890000-0000-7000-8000-000000000000
expect_error 404
api GET "/api/commands/$CMD"
expect_code 200
[ "$(jqr .state)" = delivered ] || fail "command state: $(cat "$T/resp.json")"
api GET /api/commands/01890000-0000-7000-8000-000000000000
expect_error 404
api GET "/api/branches/$BR_A1/stats"
[ "$(jqr .devices.online)" = 1 ] || fail "stats after heartbeat"

note "firmware update: a command, 202, handed out by heartbeat"
sha=$(printf 'fw' | sha256sum | cut -d' ' -f1)
api PUT "/api/devices/$DEV_A1/firmware" "{\"version\":\"2.0.0\",\"url\":\"https://fw.example.com/2.0.0.deb\",\"sha256\":\"$sha\"}"
expect_code 202
FW=$(jqr .id)
[ "$(jqs .action .state .args.version .args.sha256)" = "firmware_update|pending|2.0.0|$sha" ] || fail "firmware command: $(cat "$T/resp.json")"
api PUT "/api/devices/$DEV_A1/firmware" '{"url":"https://x"}'
expect_error 400
api PUT "/api/devices/$DEV_A1/firmware" '{"version":"2.0.0","url":"http://fw.example.com/x"}'
expect_error 400
api PUT "/api/devices/$DEV_A1/firmware" '{"version":"2.0.0","sha256":"abc"}'
expect_error 400
api PUT /api/devices/01890000-0000-7000-8000-000000000000/firmware '{"version":"2.0.0"}'
expect_error 404
api GET "/api/devices/$DEV_A1/firmware"
expect_error 405
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
expect_code 200
[ "$(jqr "[.commands[].id] | index(\"$FW\")")" != null ] || fail "firmware command not handed out: $(cat "$T/resp.json")"
AUTH=$TOK_PLATFORM
api GET "/api/commands/$FW"
[ "$(jqr .state)" = delivered ] || fail "firmware command state"

note "metrics (Prometheus text)"
AUTH=
curl -s -D "$T/metrics.hdr" -o "$T/metrics.txt" "http://127.0.0.1:$PORT/metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/metrics.hdr" || fail "metrics content type"
m() { grep -F -- "$1 " "$T/metrics.txt" | grep -v '^#' | awk '{print $NF}'; }
[ "$(m 'cartwise_http_requests_total{route="/api/health",status="200"}')" -ge 1 ] || fail "health requests not counted"
[ "$(m 'cartwise_http_requests_total{route="/api/chains/{id}",status="404"}')" -ge 1 ] || fail "404s not counted"
[ "$(m 'cartwise_http_requests_total{route="unmatched",status="404"}')" -ge 1 ] || fail "unmatched not counted"
# the dashboard's files have their own route: served, refused, not API junk
[ "$(m 'cartwise_http_requests_total{route="dashboard",status="200"}')" -ge 5 ] || fail "dashboard files not counted"
[ "$(m 'cartwise_http_requests_total{route="dashboard",status="404"}')" -ge 10 ] || fail "dashboard 404s not counted"
[ "$(m 'cartwise_http_request_duration_seconds_count{route="dashboard"}')" -ge 15 ] || fail "dashboard latency not counted"
[ "$(m 'cartwise_devices_online')" = 1 ] || fail "devices online: $(m cartwise_devices_online)"
[ "$(m 'cartwise_db_up')" = 1 ] || fail "db_up"
[ "$(m 'cartwise_db_connections{state="total"}')" -ge 1 ] || fail "pool size"
# a latency histogram per route: cumulative buckets, +Inf = count = requests of the route
H=cartwise_http_request_duration_seconds
[ "$(m "${H}_bucket{route=\"/api/health\",le=\"+Inf\"}")" = "$(m "${H}_count{route=\"/api/health\"}")" ] \
	|| fail "histogram +Inf bucket differs from count"
[ "$(m "${H}_count{route=\"/api/health\"}")" = "$(grep -F 'cartwise_http_requests_total{route="/api/health",' "$T/metrics.txt" | awk '{s += $NF} END {print s}')" ] \
	|| fail "health histogram count differs from its requests"
[ "$(m "${H}_count{route=\"/api/devices/{id}/heartbeat\"}")" -ge 3 ] || fail "heartbeat latency not counted per route"
grep -E "^${H}_bucket\{route=\"/api/chains\",le=" "$T/metrics.txt" | awk '{print $NF}' | sort -n -c \
	|| fail "buckets are not cumulative"
[ "$(grep -c "^${H}_bucket{route=\"/api/chains\"," "$T/metrics.txt")" = 12 ] || fail "bucket count of a route"
grep -q "^${H}_bucket{le=" "$T/metrics.txt" && fail "a histogram series without its route"
[ "$(m 'cartwise_db_connections{state="idle"}')" -ge 0 ] || fail "idle connections gauge"
grep -q 'device_token\|password\|Bearer' "$T/metrics.txt" && fail "metrics carry a secret"
api POST /metrics '{}'
expect_error 405
AUTH=$TOK_PLATFORM

note "revoking a device's tokens"
api POST "/api/devices/$DEV_A2/revoke-tokens" '{}'
expect_code 200

note "dashboards: the caller (auth/me)"
me_check() { # TOKEN ROLE CHAIN|null BRANCH_IDS(json): and expires_at is the token's exp
	local saved=$AUTH payload exp
	AUTH=$1
	api GET /api/auth/me
	AUTH=$saved
	expect_code 200
	[ "$(jqs .user.role .user.chain_id '.user.branch_ids | tojson' '.user | keys | join(",")')" = \
		"$2|$3|$4|branch_ids,chain_id,email,id,role" ] || fail "auth/me: $(cat "$T/resp.json")"
	payload=${1#*.}; payload=${payload%%.*}; payload=$(tr '_-' '/+' <<<"$payload")
	while [ $((${#payload} % 4)) != 0 ]; do payload+='='; done
	exp=$(base64 -d <<<"$payload" | jq -r .exp)
	[ "$(date -u -d "$(jqr .expires_at)" +%s)" = "$exp" ] || fail "auth/me expires_at is not the token's exp $exp: $(jqr .expires_at)"
}
me_check "$TOK_PLATFORM" platform-admin null '[]'
me_check "$TOK_ADMIN_A" chain-admin "$CHAIN_A" '[]'
me_check "$TOK_MGR_A1" branch-manager "$CHAIN_A" "[\"$BR_A1\"]"
[ "$(jqr .user.email)" = mgr-a1@example.com ] || fail "auth/me email"
AUTH=; api GET /api/auth/me; expect_error 401 unauthorized
AUTH=$DTOK_A1; api GET /api/auth/me; expect_error 401     # a device token is not staff
AUTH=$TOK_PLATFORM; api POST /api/auth/me '{}'; expect_error 405

note "dashboards: device list (tenancy, filters, pages)"
api GET /api/devices
expect_code 200
[ "$(jqr '[.items[].id] | sort | join(" ")')" = "$(printf '%s\n' "$DEV_A1" "$DEV_A2" "$DEV_B1" | sort | paste -sd' ')" ] \
	|| fail "device list: $(cat "$T/resp.json")"
[ "$(jqr "[.items[] | select(.id == \"$DEV_A1\") | .online, .status, .health.cpu_temp_c, .firmware_version] | map(tostring) | join(\" \")")" = \
	"true online 51.5 1.4.2" ] || fail "device list item: $(cat "$T/resp.json")"
[ "$(jqr "[.items[] | select(.id == \"$DEV_A2\") | .online, .last_heartbeat] | map(tostring) | join(\" \")")" = \
	"false null" ] || fail "never-seen device in the list: $(cat "$T/resp.json")"
api GET "/api/devices/$DEV_A1"
[ "$(jqr .online)" = true ] || fail "GET /api/devices/{id} carries online"
api GET "/api/devices?chain_id=$CHAIN_A&limit=1"
expect_code 200
[ "$(jqr '.items | length')" = 1 ] && cur=$(jqr .next_cursor) && [ "$cur" != null ] || fail "device page 1: $(cat "$T/resp.json")"
first=$(jqr '.items[0].id')
api GET "/api/devices?chain_id=$CHAIN_A&limit=1&cursor=$cur"
[ "$(jqs '.items | length' '.items[0].chain_id' .next_cursor)" = "1|$CHAIN_A|null" ] && [ "$(jqr '.items[0].id')" != "$first" ] \
	|| fail "device page 2: $(cat "$T/resp.json")"
api GET "/api/devices?branch_id=$BR_A2"
[ "$(jqr '[.items[].id] | join(" ")')" = "$DEV_A2" ] || fail "devices of a branch: $(cat "$T/resp.json")"
api GET "/api/devices?chain_id=$CHAIN_B&branch_id=$BR_A2"
expect_code 200
[ "$(jqs '.items | length' .next_cursor)" = "0|null" ] || fail "a branch of another chain than chain_id"
api GET "/api/devices?branch_id=01890000-0000-7000-8000-000000000000"; expect_error 404 not_found
api GET "/api/devices?chain_id=01890000-0000-7000-8000-000000000000"
expect_code 200; [ "$(jqr '.items | length')" = 0 ] || fail "devices of an unknown chain"
api GET '/api/devices?branch_id=bogus'; expect_error 400 invalid
api GET '/api/devices?chain_id=A'; expect_error 400 invalid
api GET '/api/devices?status=online'; expect_error 400 invalid
[ "$(jqr .error.message)" = "unknown query parameter 'status'" ] || fail "unknown device list parameter not named"
api GET '/api/devices?limit=201'; expect_error 400
api POST /api/devices '{}'; expect_error 405

note "dashboards: editing and deactivating a branch"
api POST "/api/branches/$BR_A3/enrollment-codes" '{"uses":3}'; expect_code 201
CODE_A3=$(jqr .code)
api PUT "/api/branches/$BR_A3" '{"name":"Talpiot","city":null,"latitude":null,"longitude":null,"address":"Ha-Oman 2"}'
expect_code 200
[ "$(jqs .name .city .latitude .longitude .address .code .active)" = "Talpiot|null|null|null|Ha-Oman 2|A-003|true" ] \
	|| fail "branch PUT: $(cat "$T/resp.json")"
api PUT "/api/branches/$BR_A3" '{"code":"A-003b","latitude":32.1,"longitude":34.8}'
expect_code 200
[ "$(jqs .code .name .latitude .longitude)" = "A-003b|Talpiot|32.1|34.8" ] || fail "branch PUT code, location: $(cat "$T/resp.json")"
api PUT "/api/branches/$BR_A3" '{"code":"A-001"}'
expect_error 409 conflict                          # taken in the chain
api PUT "/api/branches/$BR_A3" '{"code":"B-001"}'
expect_code 200                                    # another chain's code is free here
api PUT "/api/branches/$BR_A3" '{"active":false}'
expect_code 200
[ "$(jqs .active .code .name)" = "false|B-001|Talpiot" ] || fail "deactivated: $(cat "$T/resp.json")"
api GET "/api/branches?chain_id=$CHAIN_A&limit=200"
[ "$(jqr ".items[] | select(.id == \"$BR_A3\") | .active")" = false ] || fail "an inactive branch is listed active:false"
api GET "/api/branches/$BR_A3"
[ "$(jqr .active)" = false ] || fail "inactive branch get"
AUTH=
reg "{\"mac_address\":\"02:00:00:00:00:a6\",\"branch_code\":\"B-001\",\"enrollment_code\":\"$CODE_A3\"}"
expect_error 403 enrollment_refused                # an inactive branch registers nothing
AUTH=$TOK_PLATFORM
api PUT "/api/branches/$BR_A3" '{"active":true,"code":"A-003"}'
expect_code 200
AUTH=
reg "{\"mac_address\":\"02:00:00:00:00:a6\",\"branch_code\":\"A-003\",\"enrollment_code\":\"$CODE_A3\"}"
expect_code 201                                    # active again: the code works (nothing was consumed)
AUTH=$TOK_PLATFORM
for body in '{"latitude":1}' '{"latitude":null,"longitude":1}' '{"name":null}' '{"code":null}' \
	'{"code":"a b"}' '{"name":""}' '{"active":"no"}' '{"chain_id":"x"}' '{"colour":"red"}' \
	'{"name":"x","name":"y"}' '[]' 'not json' '{"latitude":91,"longitude":0}'; do
	api PUT "/api/branches/$BR_A3" "$body"
	expect_error 400 invalid
done
api PUT "/api/branches/$BR_A3"
expect_error 400 invalid
api GET "/api/branches/$BR_A3"
[ "$(jqs .code .name .active .latitude)" = "A-003|Talpiot|true|32.1" ] || fail "a refused PUT changed the branch: $(cat "$T/resp.json")"
api PUT /api/branches/01890000-0000-7000-8000-000000000000 '{"name":"x"}'
expect_error 404

note "dashboards: enrollment codes listed (never the code) and revoked"
api GET "/api/branches/$BR_A2/enrollment-codes"
expect_code 200
[ "$(jqr '[.items[] | keys | join(",")] | unique | join(" ")')" = "active,branch_id,created_at,created_by,expires_at,id,uses_left" ] \
	|| fail "enrollment code fields: $(cat "$T/resp.json")"
grep -q "$CODE_A2\|$CODE_X" "$T/resp.json" && fail "a code is listed"
[ "$(jqr "[.items[] | select(.id == \"$CODE_X_ID\") | .uses_left, .active] | map(tostring) | join(\" \")")" = "3 false" ] \
	|| fail "an expired code is not inactive: $(cat "$T/resp.json")"
[ "$(jqr '[.items[] | select(.uses_left == 0) | .active] | map(tostring) | join(" ")')" = false ] \
	|| fail "a used-up code: $(cat "$T/resp.json")"
[ "$(jqr '[.items[].branch_id] | unique | join(" ")')" = "$BR_A2" ] || fail "codes of another branch listed"
api POST "/api/branches/$BR_A2/enrollment-codes" '{"uses":2}'; expect_code 201
CODE_R=$(jqr .code); CODE_R_ID=$(jqr .id)
api GET "/api/branches/$BR_A2/enrollment-codes?limit=200"
[ "$(jqr ".items[-1] | [.id, .uses_left, .active, .created_by == null] | map(tostring) | join(\" \")")" = "$CODE_R_ID 2 true false" ] \
	|| fail "a new code, last (creation order): $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A2/enrollment-codes?limit=1"
[ "$(jqs '.items | length' '.next_cursor != null')" = "1|true" ] || fail "enrollment code page: $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A2/enrollment-codes?uses=1"; expect_error 400 invalid
api DELETE "/api/enrollment-codes/$CODE_R_ID"
expect_code 204
[ ! -s "$T/resp.json" ] || fail "204 with a body"
api GET "/api/branches/$BR_A2/enrollment-codes?limit=200"
[ "$(jqr ".items[] | select(.id == \"$CODE_R_ID\") | [.uses_left, .active] | map(tostring) | join(\" \")")" = "0 false" ] \
	|| fail "a revoked code: $(cat "$T/resp.json")"
AUTH=
reg "{\"mac_address\":\"02:00:00:00:00:a7\",\"branch_code\":\"A-002\",\"enrollment_code\":\"$CODE_R\"}"
expect_error 403 enrollment_refused                # revoked: refused at registration
AUTH=$TOK_PLATFORM
api DELETE "/api/enrollment-codes/$CODE_R_ID"; expect_code 204          # again: still revoked
api DELETE /api/enrollment-codes/01890000-0000-7000-8000-000000000000; expect_error 404 not_found
api DELETE /api/enrollment-codes/nonsense; expect_error 404
api GET "/api/enrollment-codes/$CODE_R_ID"; expect_error 405
api GET /api/branches/01890000-0000-7000-8000-000000000000/enrollment-codes; expect_error 404
got=$(curl -s "http://127.0.0.1:$PORT/metrics" |
	grep -F 'cartwise_http_requests_total{route="/api/enrollment-codes/{id}",status="204"}' | awk '{print $NF}')
[ "$got" = 2 ] || fail "204 not counted in the metrics: $got"

note "stop"
cloud_stop
check_logs
assert_not_logged "$PW" "$CODE_A1" "$CODE_A2" "$CODE_B1" "$CODE_A3" "$CODE_R" "$DTOK_A1" "$TOK_PLATFORM" \
	"$(tr -d '\n' <"$T/signing.key")"
echo "ok"
