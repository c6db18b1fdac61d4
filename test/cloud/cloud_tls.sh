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
cloud_stop

note "a missing certificate file is refused at start"
cloud_config "$T/bad.json" "{\"tls\":{\"cert_file\":\"$T/none.crt\",\"key_file\":\"$T/tls.key\"}}"
rc=0; timeout 10 "$CLOUD" --config "$T/bad.json" >"$T/bad.log" 2>&1 || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "started without its certificate ($rc)"
ALLOWED_ERRORS='event=cloud.tls'
check_logs
echo "ok"
