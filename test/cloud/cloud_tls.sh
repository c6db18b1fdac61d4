#!/usr/bin/env bash
# Native TLS: with tls.cert_file/key_file the API answers HTTPS only.
# (The backend does not matter here; run on SQLite.)
. "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || { echo "SKIP: openssl CLI missing (needed to make a test certificate)"; exit 77; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$T/tls.key" -out "$T/tls.crt" 2>"$T/openssl.log" || fail "openssl failed"
cloud_config "$T/cloud.json" "{\"tls\":{\"cert_file\":\"$T/tls.crt\",\"key_file\":\"$T/tls.key\"}}"
cloud_start
wait_until 20 curl -sf --cacert "$T/tls.crt" "https://127.0.0.1:$PORT/api/health" -o /dev/null \
	|| fail "no HTTPS answer"
grep -q 'event=cloud.ready.*tls=on' "$T/cloud.log" || fail "ready line does not say tls=on"
body=$(curl -s --cacert "$T/tls.crt" "https://127.0.0.1:$PORT/api/health")
[ "$(jq -r .status <<<"$body")" = ok ] || fail "health over TLS: $body"
# plain HTTP on the TLS port gets no API answer
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/api/health" || true)
[ "$code" != 200 ] || fail "plain HTTP answered on the TLS port"

note "a live event stream over TLS: hello, a change after a heartbeat (the connection suspended"
note "and resumed in between), and its end at SIGTERM"
S=(curl -sS --cacert "$T/tls.crt" -H 'Content-Type: application/json')
U=https://127.0.0.1:$PORT
mkuser admin@example.com platform-admin "$PW" >/dev/null
tok=$("${S[@]}" "$U/api/auth/login" -d "{\"email\":\"admin@example.com\",\"password\":\"$PW\"}" | jq -r .token)
chain=$("${S[@]}" -H "Authorization: Bearer $tok" "$U/api/chains" -d '{"name":"C","slug":"c"}' | jq -r .id)
branch=$("${S[@]}" -H "Authorization: Bearer $tok" "$U/api/branches" \
	-d "{\"chain_id\":\"$chain\",\"code\":\"B-1\",\"name\":\"B\"}" | jq -r .id)
code=$("${S[@]}" -H "Authorization: Bearer $tok" "$U/api/branches/$branch/enrollment-codes" -d '{}' | jq -r .code)
read -r dev dtok < <("${S[@]}" "$U/api/devices/register" -d "{\"mac_address\":\"02:00:00:00:00:01\",\"branch_code\":\"B-1\",\"enrollment_code\":\"$code\"}" |
	jq -r '"\(.device_id) \(.device_token)"')
[ -n "$dev" ] && [ "$dev" != null ] || fail "registration over TLS failed"
"${S[@]}" -N --max-time 20 -H "Authorization: Bearer $tok" "$U/api/branches/$branch/events" >"$T/tls.sse" &
sse=$!; PIDS+=("$sse")
tls_hello() { grep -q '^event: hello$' "$T/tls.sse"; }
wait_until 3 tls_hello || fail "no hello over TLS: $(cat "$T/tls.sse")"
sleep 0.3 # the stream is suspended now
"${S[@]}" -o /dev/null -H "Authorization: Bearer $dtok" "$U/api/devices/$dev/heartbeat" -d '{}'
tls_change() { grep -q '^data: {"kinds":\["devices"\]}$' "$T/tls.sse"; }
wait_until 2 tls_change || fail "no change over TLS: $(cat "$T/tls.sse")"
cloud_stop
wait_until 2 eval '! kill -0 '"$sse"' 2>/dev/null' || fail "the TLS stream did not end with the server"

note "a missing certificate file is refused at start"
cloud_config "$T/bad.json" "{\"tls\":{\"cert_file\":\"$T/none.crt\",\"key_file\":\"$T/tls.key\"}}"
rc=0; timeout 10 "$CLOUD" --config "$T/bad.json" >"$T/bad.log" 2>&1 || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "started without its certificate ($rc)"
ALLOWED_ERRORS='event=cloud.tls'
check_logs
echo "ok"
