#!/usr/bin/env bash
# The customer kiosk's rent and return (issue 5 item 1) against the real
# daemon, the simulated lock boards and a fake SMS gateway: phone numbers
# (every usual form -> one E.164; landline, garbage and foreign numbers
# refused), rent with a customer token (one open rental per phone, overdue
# counts as open), a second person typing the first one's phone at the same
# kiosk (a code prompt, never a cart), return at the kiosk and the receipt,
# my rentals. Codes and tokens: kiosk_api.sh.
. "$(dirname "$0")/lib.sh"

sms_start
kiosk_sim bus0 8
PER_KIOSK=10 # kiosk.otp.max_requests_per_kiosk_hour (default 60): returns count too
kiosk_config "$T/edge.json" "[$(kiosk_bus bus0 8)]" \
	"{\"kiosk\":{\"otp\":{\"max_requests_per_kiosk_hour\":$PER_KIOSK}}}"
edge_start
wait_until 10 cart_is 8 available || fail "carts not ready"

A=+972521234567 # the first customer, at kiosk IPA
IPA=127.0.0.11
note "sign in: code by SMS, customer token"
otp_request 0521234567 $IPA; expect 202
code=$(sms_code $A 0); CODES+=("$code")
otp_verify 0521234567 "$code" $IPA; expect 200
TA=$(js token)
# a customer token is no staff token
for req in "GET $(branch /carts)" "GET $(branch /rentals/history)" "POST $(branch /carts/return)" \
	"POST /api/admin/carts/1/unlock"; do
	kapi -t "$TA" ${req% *} "${req#* }" '{}'; expect 401
done

note "phones: refused forms are 400 invalid_phone, no text sent"
n=$(wc -l <"$SMS_OUT")
for bad in 031234567 +97231234567 0521234 05212345678 +14155550123 001415555012 abc "" \
	"+972-52-123-456a" "0521234567890123456789012345678901234"; do
	kapi -i 127.0.3.1 POST /api/auth/otp/request "{\"phone\":\"$bad\"}"; expect 400 invalid_phone
done
kapi -i 127.0.3.1 POST /api/auth/otp/request '{"phone":5}'; expect_code 400
kapi -i 127.0.3.1 POST /api/auth/otp/request '{}'; expect_code 400
kapi -i 127.0.3.1 POST /api/auth/otp/verify '{"phone":"abc","code":"123456"}'; expect 400 invalid_phone
[ "$(wc -l <"$SMS_OUT")" = "$n" ] || fail "a refused phone got a text"

note "rent with the customer token: 201, the lock opens; one open rental per phone"
rented_before=$(edge_sql "SELECT count(*) FROM rentals")
kapi -t "$TA" POST "$(branch /carts/assign)" '{}'; expect 201
RA=$(js rental_id); CA=$(jn cart_number)
[ -n "$(js expected_return)" ] || fail "assign: $BODY"
sim bus0 state 1 $((CA - 1)) | grep -q 'hook=open' || fail "the lock of cart $CA did not open"
[ "$(edge_sql "SELECT user_phone FROM rentals WHERE id = '$RA'")" = $A ] || fail "rental not in the token's phone"
kapi -t "$TA" POST "$(branch /carts/assign)" '{}'; expect 409 already_renting
kapi -t "$TA" POST "$(branch /carts/assign)" '{"phone":"0521234567"}'; expect 409 already_renting
# the staff routes store the same E.164: a staff rent for this customer, typed
# the national way, is the same phone (one open rental per phone)
api POST "$(branch /carts/assign)" '{"phone":"052-123-4567"}'; expect_code 409
api GET "$(branch "/rentals/history?phone=0521234567")"; expect_code 200
[ "$(jqr '[.rentals[] | .id] | join(",")')" = "$RA" ] || fail "staff history by national form: $(cat "$T/resp.json")"
kapi -t "$TA" POST "$(branch /carts/assign)" '{"phone":"0539998888"}' # not the token's phone
[ "$CODE" -ge 400 ] && [ "$CODE" -lt 500 ] || fail "assign for another phone answered $CODE"
[ "$(edge_sql "SELECT count(*) FROM rentals WHERE user_phone = '+972539998888'")" = 0 ] ||
	fail "a token rented for another phone"
sim bus0 take 1 $((CA - 1)) >/dev/null
wait_until 5 cart_has "$CA" cart_present false || fail "cart $CA not taken"
kapi GET "/api/kiosk/rentals/$RA"; expect 200
[ "$(js state)" = active ] && [ "$(jn cart_number)" = "$CA" ] && [[ $BODY == *'"ended_at":null'* ]] ||
	fail "rental: $BODY"
kapi -t "$TA" GET /api/me/rentals; expect 200
[ "$(jqr '[.open[] | .id] | join(",")')" = "$RA" ] || fail "me: $BODY"

note "a second person types the first one's phone at the same kiosk: a code prompt, never a cart"
nsms=$(sms_count $A)
otp_request 0521234567 $IPA; expect 202
jq -e --arg p $A --argjson ttl 300 '. == {phone: $p, expires_in_s: $ttl, sms: "sent"}' \
	"$T/resp.json" >/dev/null || fail "202 body (nothing but these): $BODY"
wait_until 10 sms_more $A "$nsms" || fail "no code went to the phone's owner"
CODES+=("$(code_in "$(sms_text $A)")")
kapi -i $IPA POST "$(branch /carts/assign)" '{}'; expect 401 signin_required
kapi -i $IPA POST "$(branch /carts/assign)" '{"phone":"0521234567"}'; expect 401 signin_required
kapi -i $IPA GET /api/me/rentals; expect 401 signin_required
otp_verify $A "$(wrong_of "$(code_in "$(sms_text $A)")")" $IPA; expect 401 wrong_code
kapi -i $IPA POST /api/kiosk/return '{"phone":"0521234567"}'; expect 200 # harmless: sends a cart back
[ "$(js rental_id)" = "$RA" ] || fail "return named $(js rental_id)"
[ "$(edge_sql "SELECT count(*) FROM rentals")" = $((rented_before + 1)) ] || fail "a rental was made"

note "overdue counts as open: still already_renting"
edge_sql_w "UPDATE rentals SET allowed_ms = 1, grace_ms = 0 WHERE id = '$RA'"
wait_until 10 rental_state "$RA" overdue || fail "rental never overdue: $BODY"
kapi -t "$TA" POST "$(branch /carts/assign)" '{}'; expect 409 already_renting

note "return at the kiosk: phone in any form -> the same rental and slot; docking closes it"
slot=
for form in 0521234567 "052-123-4567" "+972 52 123 4567" 00972521234567 972521234567 "(052) 123.4567"; do
	kapi -i 127.0.4.1 POST /api/kiosk/return "{\"phone\":\"$form\"}"; expect 200
	[ "$(js rental_id)" = "$RA" ] || fail "return of '$form' named $(js rental_id)"
	[ -z "$slot" ] || [ "$(jn slot_number)" = "$slot" ] || fail "'$form' moved the slot"
	slot=$(jn slot_number)
done
kapi -i 127.0.4.2 POST /api/kiosk/return '{"phone":"0529876543"}'; expect 404 no_open_rental
kapi -i 127.0.4.2 POST /api/kiosk/return '{"phone":"031234567"}'; expect 400 invalid_phone
sim bus0 dock 1 $((slot - 1)) >/dev/null
# KIOSK_DESIGN.md says "returned_late"; the engine's name is "returned-late"
wait_until 10 rental_state "$RA" "returned[-_]late" || fail "not returned_late: $BODY"
[ -n "$(js ended_at)" ] && [ "$(jn duration_s)" -ge 0 ] || fail "receipt: $BODY"
grep -q 972 "$T/resp.json" && fail "the public rental view shows the phone: $BODY"
kapi GET /api/kiosk/rentals/00000000-0000-7000-8000-000000000000; expect_code 404
kapi GET /api/kiosk/rentals/not-a-uuid; [ "$CODE" = 400 ] || [ "$CODE" = 404 ] || fail "bad id: $CODE"

note "rent again, return, dock: returned with a duration; history newest first"
kapi -t "$TA" POST "$(branch /carts/assign)" '{}'; expect 201
RA2=$(js rental_id); CA2=$(jn cart_number)
sim bus0 take 1 $((CA2 - 1)) >/dev/null
wait_until 5 cart_has "$CA2" cart_present false || fail "cart $CA2 not taken"
sleep 1
kapi -i 127.0.4.1 POST /api/kiosk/return '{"phone":"0521234567"}'; expect 200
[ "$(js rental_id)" = "$RA2" ] || fail "return named $(js rental_id)"
sim bus0 dock 1 $(($(jn slot_number) - 1)) >/dev/null
wait_until 10 rental_state "$RA2" returned || fail "not returned: $BODY"
[ "$(jn duration_s)" -ge 1 ] && [ "$(jn cart_number)" = "$CA2" ] && [ -n "$(js started_at)" ] ||
	fail "receipt: $BODY"
kapi -t "$TA" GET /api/me/rentals; expect 200
[ "$(jqr '[(.open | length), (.history[] | .id)] | join(",")')" = "0,$RA2,$RA" ] ||
	fail "me: open none, history newest first: $BODY"
kapi -i 127.0.4.3 POST /api/kiosk/return '{"phone":"0521234567"}'; expect 404 no_open_rental

note "returns per kiosk: $PER_KIOSK an hour (test config), then 429 too_many_requests"
for i in $(seq 2 $PER_KIOSK); do
	kapi -i 127.0.4.3 POST /api/kiosk/return '{"phone":"0521234567"}'; expect 404 no_open_rental
done
kapi -i 127.0.4.3 POST /api/kiosk/return '{"phone":"0521234567"}'; expect 429 too_many_requests
[ "$(jn retry_after_s)" -gt 0 ] || fail "no retry_after_s: $BODY"


note "no code is logged or kept in the database"
assert_codes_secret 2

check_logs
edge_stop
note "ok"
