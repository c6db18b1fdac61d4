#!/usr/bin/env bash
# Staff user management over HTTP (issue 3) on one backend: platform admins
# manage anyone; a chain admin manages its chain's users only and never
# makes a platform admin; branch managers manage nobody. Success, failure,
# the matrix over two chains, bad input, and that changes take effect at
# once (branches, deactivation, password).
. "$(dirname "$0")/lib.sh"

setup_world
PW2='another long passphrase'
declare -A TOK=([platform]=$TOK_PLATFORM [admin_a]=$TOK_ADMIN_A [admin_b]=$TOK_ADMIN_B
	[mgr_a1]=$TOK_MGR_A1 [mgr_b1]=$TOK_MGR_B1)
ROLES=(platform admin_a admin_b mgr_a1 mgr_b1)
row() {
	local req=$1; shift
	local method=${req%% *} rest=${req#* } path body=
	path=${rest%% *}
	[ "$rest" = "$path" ] || body=${rest#* }
	for role in "${ROLES[@]}"; do
		AUTH=${TOK[$role]}
		if [ -n "$body" ]; then api "$method" "$path" "$body"; else api "$method" "$path"; fi
		[ "$CODE" = "$1" ] || fail "$role $method $path: expected $1, got $CODE: $(cat "$T/resp.json")"
		if [ "$CODE" -ge 400 ]; then
			expect_error "$CODE"
		fi
		shift
	done
}
uid() { db_sql "SELECT id FROM staff_users WHERE email = '$1'"; }
ID_PLATFORM=$(uid admin@example.com)
ID_ADMIN_A=$(uid admin-a@example.com)
ID_MGR_A1=$(uid mgr-a1@example.com)
ID_MGR_B1=$(uid mgr-b1@example.com)
ids() { jqr '[.items[].id] | sort | join(" ")'; }
sorted() { printf '%s\n' "$@" | sort | paste -sd' '; }

note "create"
AUTH=$TOK_PLATFORM
api POST /api/users "$(jq -nc --arg p "$PW2" --arg c "$CHAIN_A" --arg b1 "$BR_A1" --arg b2 "$BR_A2" \
	'{email: "New.Manager@Example.com", password: $p, role: "branch-manager", chain_id: $c, branch_ids: [$b2, $b1]}')"
expect_code 201
NEW=$(jqr .id)
[ "$(jqr .email)" = new.manager@example.com ] && [ "$(jqr .role)" = branch-manager ] && [ "$(jqr .chain_id)" = "$CHAIN_A" ] \
	&& [ "$(jqr '.branch_ids | join(" ")')" = "$(sorted "$BR_A1" "$BR_A2")" ] && [ "$(jqs .active 'has("password") or has("password_hash")')" = "true|false" ] || fail "created user: $(cat "$T/resp.json")"
TOK_NEW=$(login new.manager@example.com "$PW2")
AUTH=$TOK_NEW
api GET /api/branches
[ "$(ids)" = "$(sorted "$BR_A1" "$BR_A2")" ] || fail "new manager's branches: $(ids)"
api GET /api/users
expect_error 403 forbidden                         # managers manage nobody
AUTH=$TOK_ADMIN_A
api POST /api/users "$(jq -nc --arg p "$PW2" --arg c "$CHAIN_A" '{email: "second-admin@example.com", password: $p, role: "chain-admin", chain_id: $c}')"
expect_code 201
ADMIN_A2=$(jqr .id)
api POST /api/users "$(jq -nc --arg p "$PW2" '{email: "root2@example.com", password: $p, role: "platform-admin"}')"
expect_error 403                                   # never a platform admin
api POST /api/users "$(jq -nc --arg p "$PW2" --arg c "$CHAIN_B" '{email: "spy@example.com", password: $p, role: "chain-admin", chain_id: $c}')"
expect_error 404                                   # another chain does not exist for it
api POST /api/users "$(jq -nc --arg p "$PW2" --arg c "$CHAIN_A" --arg b "$BR_B1" '{email: "mgr-x@example.com", password: $p, role: "branch-manager", chain_id: $c, branch_ids: [$b]}')"
expect_error 400                                   # a branch of another chain
api POST /api/users "$(jq -nc --arg p "$PW2" --arg c "$CHAIN_A" '{email: "ADMIN-A@example.com", password: $p, role: "chain-admin", chain_id: $c}')"
expect_error 409 conflict                          # email taken (case-insensitive)
AUTH=$TOK_PLATFORM
api POST /api/users "$(jq -nc --arg p "$PW2" '{email: "root2@example.com", password: $p, role: "platform-admin"}')"
expect_code 201
ROOT2=$(jqr .id)
[ "$(jqr .chain_id)" = null ] || fail "platform admin with a chain"
api POST /api/users "$(jq -nc --arg p "$PW2" '{email: "x@example.com", password: $p, role: "chain-admin", chain_id: "01890000-0000-7000-8000-000000000000"}')"
expect_error 404                                   # no such chain
for role in mgr_a1 mgr_b1; do
	AUTH=${TOK[$role]}
	api POST /api/users "$(jq -nc --arg p "$PW2" --arg c "$CHAIN_A" '{email: "m@example.com", password: $p, role: "branch-manager", chain_id: $c}')"
	expect_error 403
done

note "list and get: chain admins see their chain's users only"
AUTH=$TOK_PLATFORM
api GET '/api/users?limit=200'
expect_code 200
[ "$(jqr '.items | length')" = 8 ] || fail "platform admin's user list: $(jqr '.items | length')"
api GET "/api/users?chain_id=$CHAIN_B"
[ "$(ids)" = "$(sorted "$(uid admin-b@example.com)" "$ID_MGR_B1")" ] || fail "chain filter: $(ids)"
api GET '/api/users?limit=3'
[ "$(jqs '.items | length' '(.next_cursor) != null')" = "3|true" ] || fail "user page"
AUTH=$TOK_ADMIN_A
api GET '/api/users?limit=200'
[ "$(ids)" = "$(sorted "$ID_ADMIN_A" "$ID_MGR_A1" "$NEW" "$ADMIN_A2")" ] || fail "admin A's users: $(ids)"
[ "$(jqr '.items[] | select(.id == "'"$ID_MGR_A1"'") | .branch_ids | join(" ")')" = "$BR_A1" ] || fail "branch_ids in the list"
api GET "/api/users?chain_id=$CHAIN_B"
expect_error 404
api GET "/api/users?cursor=$ID_MGR_B1&limit=200"
[ "$(jqr '[.items[].chain_id] | unique | join(" ")')" = "$CHAIN_A" ] || fail "cursor leaked another chain's users"
api GET '/api/users?role=platform-admin'
expect_error 400
#                                               platform admin_a admin_b mgr_a1 mgr_b1
row "GET /api/users/$ID_MGR_A1"                  200 200 404 403 403
row "GET /api/users/$ID_MGR_B1"                  200 404 200 403 403
row "GET /api/users/$ID_PLATFORM"                200 404 404 403 403
row "GET /api/users/01890000-0000-7000-8000-000000000000" 404 404 404 403 403
row "PUT /api/users/$NEW {\"active\":true}"      200 200 404 403 403
row "PUT /api/users/$ROOT2 {\"active\":true}"    200 404 404 403 403
row "POST /api/users/$NEW {}"                    405 405 405 405 405

note "update: branches, role, email, password take effect at once"
AUTH=$TOK_ADMIN_A
api PUT "/api/users/$NEW" "{\"branch_ids\":[\"$BR_A2\"]}"
expect_code 200
[ "$(jqr '.branch_ids | join(" ")')" = "$BR_A2" ] || fail "branch_ids update: $(cat "$T/resp.json")"
AUTH=$TOK_NEW
api GET "/api/branches/$BR_A1"
expect_error 404                                   # lost at once
api GET "/api/branches/$BR_A2"
expect_code 200
AUTH=$TOK_ADMIN_A
api PUT "/api/users/$NEW" '{"role":"platform-admin","chain_id":null}'
expect_error 403
api PUT "/api/users/$NEW" "{\"chain_id\":\"$CHAIN_B\"}"
expect_error 404
api PUT "/api/users/$NEW" "{\"branch_ids\":[\"$BR_B1\"]}"
expect_error 400
api PUT "/api/users/$NEW" '{"email":"mgr-a1@example.com"}'
expect_error 409
api PUT "/api/users/$NEW" '{"role":"chain-admin"}'
expect_code 200
[ "$(jqs .role '.branch_ids | length')" = "chain-admin|0" ] || fail "role change keeps branches: $(cat "$T/resp.json")"
api PUT "/api/users/$NEW" "{\"role\":\"branch-manager\",\"branch_ids\":[\"$BR_A1\"],\"password\":\"$PW\"}"
expect_code 200
AUTH=
api POST /api/auth/login "$(jq -nc --arg p "$PW2" '{email: "new.manager@example.com", password: $p}')"
expect_error 401                                   # the old password stopped working
TOK_NEW=$(login new.manager@example.com "$PW")
AUTH=$TOK_ADMIN_B
api PUT "/api/users/$NEW" '{"active":false}'
expect_error 404

note "deactivate: DELETE keeps the row, the token stops at once; reactivate"
AUTH=$TOK_ADMIN_A
api DELETE "/api/users/$NEW"
expect_code 200
[ "$(jqr .active)" = false ] || fail "deactivated user: $(cat "$T/resp.json")"
AUTH=$TOK_NEW
api GET "/api/branches/$BR_A1"
expect_error 401
AUTH=
api POST /api/auth/login "$(jq -nc --arg p "$PW" '{email: "new.manager@example.com", password: $p}')"
expect_error 401
AUTH=$TOK_ADMIN_A
api PUT "/api/users/$NEW" '{"active":true}'
expect_code 200
AUTH=$TOK_NEW
api GET "/api/branches/$BR_A1"
expect_code 200

note "nobody locks themselves out"
AUTH=$TOK_ADMIN_A
api DELETE "/api/users/$ID_ADMIN_A"
expect_error 403
api PUT "/api/users/$ID_ADMIN_A" '{"role":"branch-manager"}'
expect_error 403
api PUT "/api/users/$ID_ADMIN_A" '{"email":"admin-a@example.com"}'
expect_code 200                                    # other changes to oneself are fine
AUTH=$TOK_PLATFORM
api PUT "/api/users/$ID_PLATFORM" '{"active":false}'
expect_error 403

note "bad input changes nothing"
counts() { db_sql "SELECT (SELECT count(*) FROM staff_users) || '/' || (SELECT count(*) FROM user_branches) || '/' || (SELECT count(*) FROM staff_users WHERE active = $( [ "$BACKEND" = postgres ] && echo true || echo 1))"; }
before=$(counts)
hash_before=$(db_sql "SELECT password_hash FROM staff_users WHERE id = '$NEW'")
SQLI="x'); DROP TABLE staff_users; --"
sq=$(jq -Rn --arg s "$SQLI" '$s')
good() { jq -nc --arg p "$PW2" --arg c "$CHAIN_A" '{email: "bad@example.com", password: $p, role: "branch-manager", chain_id: $c}'; }
AUTH=$TOK_PLATFORM
for body in 'not json' '[1]' '{} {}' "$(good | jq -c 'del(.email)')" "$(good | jq -c 'del(.password)')" \
	"$(good | jq -c 'del(.role)')" "$(good | jq -c 'del(.chain_id)')" "$(good | jq -c '. + {colour: "red"}')" \
	"$(good | jq -c '.email = 5')" "$(good | jq -c '.email = "no-at-sign"')" "$(good | jq -c ".email = $sq")" \
	"$(good | jq -c '.password = "short"')" "$(good | jq -c '.password = 1234567890123')" \
	"$(good | jq -c '.role = "root"')" "$(good | jq -c ".role = $sq")" "$(good | jq -c '.role = ["chain-admin"]')" \
	"$(good | jq -c ".chain_id = $sq")" "$(good | jq -c '.chain_id = "'"$(echo "$CHAIN_A" | tr a-f A-F)"'"')" \
	"$(good | jq -c '.active = "yes"')" "$(good | jq -c '.branch_ids = "x"')" "$(good | jq -c ".branch_ids = [$sq]")" \
	"$(good | jq -c --arg b "$BR_A1" '.branch_ids = [$b, $b]')" "$(good | jq -c '.branch_ids = [1]')" \
	"$(good | jq -c '.role = "platform-admin"')" "$(good | jq -c --arg b "$BR_A1" '.role = "chain-admin" | .branch_ids = [$b]')" \
	"$(good | jq -c '.email = "a\u0001b@example.com"')" \
	'{"email":"bad@example.com","email":"bad2@example.com","password":"0123456789","role":"chain-admin"}'; do
	api POST /api/users "$body"
	expect_error 400
done
for body in 'not json' '{"colour":1}' '{"password":"short"}' '{"active":1}' "{\"role\":$sq}" \
	"{\"email\":$sq}" '{"branch_ids":null}' '{"chain_id":"nope"}'; do
	api PUT "/api/users/$NEW" "$body"
	expect_error 400
done
printf '{"email":"big@example.com","password":"%s","role":"platform-admin"}' "$(head -c 70000 /dev/zero | tr '\0' x)" >"$T/big.json"
api_file POST /api/users "$T/big.json"
expect_error 413
api_file PUT "/api/users/$NEW" "$T/big.json"
expect_error 413
api GET "/api/users/%27%20OR%201%3D1%20--"
expect_error 404
api GET "/api/users?chain_id=%27%20OR%201%3D1%20--"
expect_error 400
[ "$(counts)" = "$before" ] || fail "bad input changed users: $before -> $(counts)"
[ "$(db_sql "SELECT password_hash FROM staff_users WHERE id = '$NEW'")" = "$hash_before" ] || fail "bad input changed a password"
# quotes are data in an email
api POST /api/users "$(jq -nc --arg p "$PW2" '{email: "o'"'"'brien+\"x\"@example.com", password: $p, role: "platform-admin"}')"
expect_code 201
[ "$(jqr .email)" = "o'brien+\"x\"@example.com" ] || fail "email text changed: $(jqr .email)"

cloud_stop
check_logs
assert_not_logged "$PW" "$PW2"
echo "ok"
