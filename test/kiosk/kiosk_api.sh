#!/usr/bin/env bash
# The customer API of the kiosk (issue 5 item 1) against the real daemon and
# a fake SMS gateway (webhook provider): the code (format, lifetime, one use,
# attempts per code, failures per phone, brute force), the customer token
# (claims; forged, expired, other type, revoked refused), request limits per
# phone and per kiosk, no code in the log or the database. Phone numbers,
# rent / return / history and a second person at the kiosk are in
# kiosk_rent.sh; the SMS-down and offline (staff PIN) paths in
# kiosk_offline.sh.
#
# Each part uses its own client address (127.0.0.x): the edge counts
# requests per kiosk by client IP, so the parts do not share a kiosk budget.
. "$(dirname "$0")/lib.sh"
KTOOL=$B/test/kiosk_tool
[ -x "$KTOOL" ] || fail "$KTOOL was not built"

TTL=8       # kiosk.otp.ttl_s for the test (default 300, least 5)
PER_KIOSK=8 # kiosk.otp.max_requests_per_kiosk_hour for the test (default 60)
sms_start
kiosk_sim bus0 2
kiosk_config "$T/edge.json" "[$(kiosk_bus bus0 2)]" "{\"kiosk\":{\"otp\":{\"ttl_s\":$TTL,
  \"max_requests_per_kiosk_hour\":$PER_KIOSK}}}"
edge_start

note "kiosk info: SMS ok, the code's length and lifetime"
kapi GET /api/kiosk/info; expect 200
# no kiosk.staff in this config: no offline path offered (kiosk_offline.sh has
# one). (KIOSK_DESIGN.md also had "device_name"; docs/OPERATIONS.md has not.)
jq -e --arg br "$BRANCH" --argjson ttl $TTL '.sms == "ok" and .code_length == 6
	and .otp_ttl_s == $ttl and .default_language == "he" and .languages == ["he", "en"]
	and .idle_seconds == 60 and .branch_id == $br and .offline_signin == []' \
	"$T/resp.json" >/dev/null || fail "info: $BODY"

A=+972521234567 # the first customer
note "a code: 202 with the E.164 phone, one SMS with 6 digits to the E.164 number"
IPA=127.0.0.11
otp_request "052-123 4567" $IPA; expect 202
jq -e --arg p $A --argjson ttl $TTL '. == {phone: $p, expires_in_s: $ttl, sms: "sent"}' \
	"$T/resp.json" >/dev/null || fail "202 body (nothing but these): $BODY"
code=$(sms_code $A 0); CODES+=("$code")
[[ $(sms_text $A) == *"קוד"* ]] || fail "the default text is not Hebrew: $(sms_text $A)"
[ "$(sms_count $A)" = 1 ] || fail "$(sms_count $A) messages for one request"
[ "$(wc -l <"$SMS_OUT")" = 1 ] || fail "a message to another number: $(cat "$SMS_OUT")"
[ "$(tail -n 1 "$T/sms-stats.txt" | jq .unauthorized)" = 0 ] || fail "the gateway saw requests without the bearer token"

# a code left to expire (checked below, once ttl_s has passed)
Bp=+972531112222
otp_request 0531112222 127.0.0.12; expect 202
t_b=$(date +%s%N)
codeb=$(sms_code $Bp 0); CODES+=("$codeb")

note "verify: any form of the phone, the code -> a customer JWT (EdDSA, 30 days)"
otp_verify "+972 52-123-4567" "$code" $IPA; expect 200
TA=$(js token)
[ "$(js phone)" = $A ] && [ "$(js method)" = otp ] || fail "verify body: $BODY"
exp_at=$(js expires_at)
[ "$(jwt_part "$TA" 1 | jq -r .alg)" = EdDSA ] || fail "header: $(jwt_part "$TA" 1)"
jwt_claims "$TA" >"$T/claims.json"
now=$(date +%s)
jq -e --arg sub $A --argjson now "$now" --arg br "$BRANCH" '
	.typ == "customer" and .sub == $sub and .iss == "cartwise-edge" and .aud == "chain-test"
	and .amr == "otp" and .branch == $br and .dev == "rpi-test-1"
	and (.jti | test("^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"))
	and (.iat - $now | fabs) < 120 and (.exp - .iat) == 30 * 86400' "$T/claims.json" >/dev/null ||
	fail "claims: $(cat "$T/claims.json")"
# expires_at is the token's exp (RFC 3339, maybe with milliseconds)
[ "$(jq -rn --arg t "$exp_at" '$t | sub("\\.[0-9]+"; "") | fromdateiso8601')" = "$(jq .exp "$T/claims.json")" ] ||
	fail "expires_at $exp_at is not the token's exp $(jq .exp "$T/claims.json")"

note "a used code is gone"
otp_verify $A "$code" $IPA; expect 401 code_expired

note "customer token: my rentals; missing, garbage, forged, re-signed-free tokens -> 401 signin_required"
kapi -t "$TA" GET /api/me/rentals; expect 200
[ "$(js phone)" = $A ] && [ "$(jqr '.open | length')" = 0 ] || fail "me: $BODY"
# forged: one character of the signature changed (not the last one, whose low
# bits base64url may ignore); a payload with another phone and the old signature
IFS=. read -r h p s <<<"$TA"
mid=$(( ${#s} / 2 )); ch=${s:$mid:1}; [ "$ch" = A ] && nch=B || nch=A
forged_sig="$h.$p.${s:0:$mid}$nch${s:$((mid + 1))}"
other=$(jq -c '.sub = "+972529999999"' "$T/claims.json" | basenc --base64url -w0 | tr -d =)
forged_sub="$h.$other.$s"
alg_none="$(printf '{"alg":"none","typ":"JWT"}' | basenc --base64url -w0 | tr -d =).$p."
for bad in "" "garbage" "$forged_sig" "$forged_sub" "$alg_none"; do
	kapi -t "$bad" GET /api/me/rentals; expect 401 signin_required
	kapi -t "$bad" POST "$(branch /carts/assign)" '{}'; expect 401 signin_required
done
kapi -t "$TOKEN" GET /api/me/rentals; expect 401 signin_required # the admin is no customer

note "tokens signed with the edge's own key: right claims accepted; expired, other typ/aud/iss, national sub, revoked refused"
# line 1: the real token's claims with another jti (accepted: the signing
# key is the edge's); 2-9 each break one rule; 10: to be revoked
jq -c '(now | floor) as $now
	| (.jti = "0190a0b0-0000-7000-8000-000000000001"),
	  (.exp = $now - 120 | .iat = $now - 3600), (.typ = "staff"), (.typ = "device"),
	  (.aud = "chain-other"), (.iss = "cartwise-cloud"), (.sub = "0521234567"), del(.sub),
	  (.iat = $now + 3600 | .exp = $now + 7200),
	  (.jti = "0190a0b0-0000-7000-8000-0000000000ff")' "$T/claims.json" >"$T/mint.jsonl"
mapfile -t MINTED < <("$KTOOL" sign "$T/data" <"$T/mint.jsonl")
[ ${#MINTED[@]} = 10 ] || fail "kiosk_tool sign made ${#MINTED[@]} tokens"
kapi -t "${MINTED[0]}" GET /api/me/rentals; expect 200
[ "$(js phone)" = $A ] || fail "minted token: $BODY"
for i in 1 2 3 4 5 6 7 8; do
	kapi -t "${MINTED[$i]}" GET /api/me/rentals; expect 401 signin_required
done
revoked=${MINTED[9]}
kapi -t "$revoked" GET /api/me/rentals; expect 200
edge_sql_w "INSERT INTO revoked_tokens(jti, config_version) VALUES ('0190a0b0-0000-7000-8000-0000000000ff', 1)"
kapi -t "$revoked" GET /api/me/rentals; expect 401 signin_required

note "5 wrong guesses kill a code: the right one is refused afterwards"
C=+972541234567
otp_request 0541234567 127.0.0.13; expect 202
codec=$(sms_code $C 0); CODES+=("$codec")
for left in 4 3 2 1 0; do
	otp_verify $C "$(wrong_of "$codec")" 127.0.0.13; expect 401 wrong_code
	[ "$(jn attempts_left)" = $left ] || fail "attempts_left $(jn attempts_left), want $left"
done
otp_verify $C "$codec" 127.0.0.13; expect 401 code_expired

note "brute force: guessing in a loop, new codes requested, is stopped after <= 10 wrong guesses"
D=+972551234567
IPD=127.0.0.14
tries=0 locked=0 requests=0 coded= iter=0
while [ $iter -lt 60 ]; do
	iter=$((iter + 1))
	if [ -z "$coded" ]; then
		n=$(sms_count $D)
		otp_request $D $IPD
		if [ "$CODE" = 429 ]; then locked=1; break; fi
		expect 202; requests=$((requests + 1))
		coded=$(sms_code $D "$n"); CODES+=("$coded")
	fi
	guess=$(printf '%06d' $((tries * 7919 % 1000000)))
	[ "$guess" != "$coded" ] || guess=$(wrong_of "$coded")
	otp_verify $D "$guess" $IPD
	case $CODE/$(js reason) in
	401/wrong_code) tries=$((tries + 1)) ;;
	401/code_expired) coded= ;;
	429/too_many_attempts) locked=1; break ;;
	*) fail "guess answered $CODE: $BODY" ;;
	esac
done
[ $locked = 1 ] || fail "$tries wrong guesses and still guessing"
[ $tries -le 10 ] || fail "locked out only after $tries wrong guesses"
note "locked after $tries wrong guesses ($requests codes requested)"
[ "$(jn retry_after_s)" -gt 0 ] || fail "no retry_after_s: $BODY"
# the right code is refused now, also a fresh one (a new request never resets the count)
if [ -n "$coded" ]; then
	otp_verify $D "$coded" $IPD; expect 429 too_many_attempts
fi
n=$(sms_count $D)
otp_request $D $IPD
if [ "$CODE" = 202 ]; then
	coded=$(sms_code $D "$n"); CODES+=("$coded")
	otp_verify $D "$coded" $IPD; expect 429 too_many_attempts
	[ "$(jn retry_after_s)" -gt 0 ] || fail "no retry_after_s"
else
	expect 429
fi
# and from another kiosk: the limit is the phone's
otp_verify $D "${coded:-000000}" 127.0.0.15; expect 429 too_many_attempts

note "the code expires after ttl_s ($TTL s)"
left_ms=$((TTL * 1000 + 300 - ($(date +%s%N) - t_b) / 1000000))
[ $left_ms -le 0 ] || sleep "$(printf '%d.%03d' $((left_ms / 1000)) $((left_ms % 1000)))"
otp_verify $Bp "$codeb" 127.0.0.12; expect 401 code_expired

note "requests per phone: 5 an hour, whichever kiosk"
E=+972561234567
kapi -i 127.0.1.1 POST /api/auth/otp/request '{"phone":"0561234567","lang":"en"}'; expect 202
wait_until 10 sms_more $E 0 || fail "no text to $E"
[[ $(sms_text $E) == "Your CartWise code is "* ]] || fail "lang en: text $(sms_text $E)"
for i in 2 3 4 5; do
	otp_request 0561234567 "127.0.1.$i"; expect 202
done
otp_request 0561234567 127.0.1.6; expect 429 too_many_requests
[ "$(jn retry_after_s)" -gt 0 ] || fail "no retry_after_s: $BODY"
wait_until 10 test "$(sms_count $E)" = 5 || fail "$(sms_count $E) messages for 5 accepted requests"
while read -r t; do CODES+=("$(code_in "$t")"); done < <(jq -r --arg to $E 'select(.to == $to) | .text' "$SMS_OUT")

note "requests per kiosk: $PER_KIOSK an hour (test config), whichever phone"
K=127.0.2.1
for i in $(seq $PER_KIOSK); do
	otp_request "05700000$((10 + i))" $K; expect 202
done
otp_request 0570000099 $K; expect 429 too_many_requests
[ "$(jn retry_after_s)" -gt 0 ] || fail "no retry_after_s: $BODY"
[ "$(sms_count +972570000099)" = 0 ] || fail "a refused request sent a text"
# the kiosk is the connection's address, not a header the client chooses
CODE=$(curl -s -o /dev/null -w '%{http_code}' --interface $K -H 'X-Forwarded-For: 10.9.8.7' \
	-H 'X-Real-IP: 10.9.8.7' -H 'Content-Type: application/json' --data '{"phone":"0570000098"}' \
	"http://127.0.0.1:$API_PORT/api/auth/otp/request") || true
[ "$CODE" = 429 ] || fail "X-Forwarded-For got around the kiosk limit: HTTP $CODE"
otp_request 0570000099 127.0.2.2; expect 202 # another kiosk is not limited

note "parallel guessing: 20 wrong codes at once count one by one (at most 5, then the code is dead)"
P=+972591234567
otp_request 0591234567 127.0.2.3; expect 202
codep=$(sms_code $P 0); CODES+=("$codep")
pids=()
for i in $(seq 20); do
	curl -s -o "$T/par$i.json" -w '%{http_code}\n' --interface 127.0.2.3 -H 'Content-Type: application/json' \
		--data "{\"phone\":\"$P\",\"code\":\"$(wrong_of $((10#$codep + i)))\"}" \
		"http://127.0.0.1:$API_PORT/api/auth/otp/verify" >"$T/par$i.code" &
	pids+=($!)
done
wait "${pids[@]}" || fail "a parallel guess failed to connect"
# at most 5 guesses count (fewer if ttl_s ran out first on a loaded machine),
# every one of them recorded as a failure of the phone, the rest refused
nwrong=$(grep -l '"reason":"wrong_code"' "$T"/par*.json | wc -l)
[ "$nwrong" -ge 1 ] && [ "$nwrong" -le 5 ] || fail "$nwrong wrong_code answers: $(cat "$T"/par*.json)"
[ "$(grep -l '"reason":"code_expired"' "$T"/par*.json | wc -l)" = $((20 - nwrong)) ] ||
	fail "answers other than wrong_code / code_expired: $(cat "$T"/par*.json)"
[ "$(edge_sql "SELECT count(*) FROM kiosk_limits WHERE kind = 'otp_fail_phone' AND subject = '$P'")" = "$nwrong" ] ||
	fail "failures recorded for $P: $(edge_sql "SELECT count(*) FROM kiosk_limits WHERE subject = '$P'"), answered $nwrong"
otp_verify $P "$codep" 127.0.2.3; expect 401 code_expired


note "no code is logged or kept in the database"
assert_codes_secret 10
[ "$(jq -s 'map(.text | test("[0-9]{6}")) | all' "$SMS_OUT")" = true ] || fail "a text without a code"

check_logs
edge_stop
note "ok"
