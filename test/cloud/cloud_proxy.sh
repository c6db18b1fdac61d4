#!/usr/bin/env bash
# Behind a reverse proxy: X-Forwarded-For is believed only from the
# addresses of listen.trusted_proxies, and then only its rightmost entry
# that is not a trusted proxy (the rest could be written by the client).
# The address found is what the login rate limit counts and the log shows.
. "$(dirname "$0")/lib.sh"

PW='proxy test password 1'
cloud_config "$T/cloud.json" '{"login": {"max_attempts": 2, "window_s": 600}}'
mkuser admin@example.com platform-admin "$PW" >/dev/null
cloud_config "$T/proxied.json" \
	'{"listen": {"trusted_proxies": ["::1", "127.0.0.1"]}, "login": {"max_attempts": 2, "window_s": 600}}'

# login_from XFF EMAIL PASSWORD: sets CODE
login_from() {
	CODE=$(curl -s -o "$T/resp.json" -w '%{http_code}' -H 'Content-Type: application/json' \
		${1:+-H "X-Forwarded-For: $1"} --data-binary \
		"$(jq -n --arg e "$2" --arg p "$3" '{email: $e, password: $p}')" \
		"http://127.0.0.1:$PORT/api/auth/login") || CODE=000
}

note "trusted proxy: the client behind it is counted"
cloud_start "$T/proxied.json"
login_from 203.0.113.5 admin@example.com wrong1
expect_error 401
login_from "198.51.100.7, 203.0.113.5" admin@example.com wrong2  # .7 is client-written
expect_error 401
login_from 203.0.113.5 admin@example.com "$PW"
expect_error 429 rate_limited
login_from "203.0.113.5, 127.0.0.1" admin@example.com "$PW"      # through two proxies
expect_error 429 rate_limited
login_from "203.0.113.5,::1 , 127.0.0.1" admin@example.com "$PW" # spaces, IPv6 proxy
expect_error 429 rate_limited
# another client behind the same proxy is not blocked by the first
login_from 203.0.113.6 admin@example.com "$PW"
expect_code 200
# a client cannot escape by prepending addresses
login_from "203.0.113.9, 203.0.113.5" admin@example.com "$PW"
expect_error 429 rate_limited
# a header the client sent itself comes before the one the proxy adds
# (HAProxy adds a line): all of them are read, the rightmost entry wins
CODE=$(curl -s -o "$T/resp.json" -w '%{http_code}' -H 'Content-Type: application/json' \
	-H 'X-Forwarded-For: 198.51.100.77' -H 'X-Forwarded-For: 203.0.113.5' \
	--data-binary "$(jq -n --arg p "$PW" '{email: "admin@example.com", password: $p}')" \
	"http://127.0.0.1:$PORT/api/auth/login")
expect_error 429 rate_limited
# another spelling of the same address is the same client
login_from "::FFFF:203.0.113.5" admin@example.com "$PW"
expect_error 429 rate_limited
# an IPv6 client counts by its /64
login_from 2001:db8:1::1 admin@example.com wrong5
expect_error 401
login_from 2001:db8:1::2 admin@example.com wrong6
expect_error 401
login_from 2001:db8:1:0:ffff::3 admin@example.com "$PW"
expect_error 429 rate_limited
login_from 2001:db8:2::1 admin@example.com "$PW"
expect_code 200
# garbage in the header: the last address believed (the proxy) is counted
login_from "not-an-address" admin@example.com "$PW"
expect_code 200
grep -q 'event=auth.login_failed ip=203.0.113.5' "$T/cloud.log" ||
	fail "the log does not show the client behind the proxy: $(grep login_failed "$T/cloud.log")"
grep -q 'event=auth.rate_limited ip=203.0.113.5' "$T/cloud.log" || fail "rate_limited line"
cloud_stop

note "no trusted proxy configured: the header is ignored"
cloud_start "$T/cloud.json"
login_from 192.0.2.1 admin@example.com wrong3
expect_error 401
login_from 192.0.2.2 admin@example.com wrong4
expect_error 401
login_from 192.0.2.3 admin@example.com "$PW"
expect_error 429 rate_limited
grep -q 'event=auth.rate_limited ip=127.0.0.1' "$T/cloud.log" || fail "peer address not used"
! grep -q 'ip=192.0.2' "$T/cloud.log" || fail "an untrusted X-Forwarded-For was believed"
cloud_stop

note "bad trusted_proxies values are refused at start"
for bad in '["localhost"]' '["10.0.0.0/8"]' '[1]' '"127.0.0.1"'; do
	cloud_config "$T/bad.json" "{\"listen\": {\"trusted_proxies\": $bad}}"
	if "$CLOUD" --config "$T/bad.json" migrate >"$T/bad.out" 2>&1; then
		fail "trusted_proxies $bad accepted"
	fi
	grep -q 'listen.trusted_proxies' "$T/bad.out" || fail "message for $bad: $(cat "$T/bad.out")"
done
check_logs
echo "PASS"
