#!/usr/bin/env bash
# Authorization matrix: two chains, branches in each, every role. Objects of
# another chain, or of a branch a manager does not manage, are refused (404
# when the caller may not know they exist, 403 when it may see but not
# change them) and never appear in lists or stats.
. "$(dirname "$0")/lib.sh"

setup_world

# a command on each device (commands are created by later endpoints)
mkcmd() { # mkcmd DEVICE BRANCH: prints the id
	local id
	id=$(new_uuid)
	if [ "$BACKEND" = postgres ]; then
		db_sql "INSERT INTO commands (id, device_id, branch_id, action, expires_at) VALUES ('$id', '$1', '$2', 'unlock', now() + interval '1 hour')"
	else
		db_sql "INSERT INTO commands (id, device_id, branch_id, action, created_ms, expires_ms) VALUES ('$id', '$1', '$2', 'unlock', 0, 99999999999999)"
	fi
	echo "$id"
}
CMD_A1=$(mkcmd "$DEV_A1" "$BR_A1")
CMD_B1=$(mkcmd "$DEV_B1" "$BR_B1")

declare -A TOK=([platform]=$TOK_PLATFORM [admin_a]=$TOK_ADMIN_A [admin_b]=$TOK_ADMIN_B
	[mgr_a1]=$TOK_MGR_A1 [mgr_b1]=$TOK_MGR_B1)
ROLES=(platform admin_a admin_b mgr_a1 mgr_b1)

# row "METHOD PATH [BODY]" CODE_platform CODE_admin_a CODE_admin_b CODE_mgr_a1 CODE_mgr_b1
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

note "chains"
#                                              platform admin_a admin_b mgr_a1 mgr_b1
row "GET /api/chains/$CHAIN_A"                  200 200 404 200 404
row "GET /api/chains/$CHAIN_B"                  200 404 200 404 200
row "PUT /api/chains/$CHAIN_A {\"name\":\"A\"}" 200 200 404 403 404
row "PUT /api/chains/$CHAIN_B {\"name\":\"B\"}" 200 404 200 404 403
row "PUT /api/chains/$CHAIN_A {\"slug\":\"a2\"}" 200 403 404 403 404
row "DELETE /api/chains/$CHAIN_A"               409 403 404 403 404
row "POST /api/chains {\"name\":\"X\",\"slug\":\"x-x\"}" 201 403 403 403 403

note "branches"
row "GET /api/branches/$BR_A1"                  200 200 404 200 404
row "GET /api/branches/$BR_A2"                  200 200 404 404 404
row "GET /api/branches/$BR_B1"                  200 404 200 404 200
row "GET /api/branches/$BR_A1/stats"            200 200 404 200 404
row "GET /api/branches/$BR_A2/stats"            200 200 404 404 404
row "GET /api/branches/$BR_B1/stats"            200 404 200 404 200
row "GET /api/branches?chain_id=$CHAIN_A"       200 200 404 200 404
row "GET /api/branches?chain_id=$CHAIN_B"       200 404 200 404 200
row "POST /api/branches/$BR_A1/enrollment-codes {}" 201 201 404 403 404
row "POST /api/branches/$BR_A2/enrollment-codes {}" 201 201 404 404 404
row "POST /api/branches/$BR_B1/enrollment-codes {}" 201 404 201 404 403
# creating a branch: the chain named in the body is what is authorised
n=0
for role in "${ROLES[@]}"; do
	n=$((n + 1))
	AUTH=${TOK[$role]}
	api POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"NEW-$n\",\"name\":\"n\"}"
	case $role in
	platform | admin_a) expect_code 201 ;;
	admin_b | mgr_b1) expect_error 404 ;;
	mgr_a1) expect_error 403 ;;
	esac
done

note "devices and commands"
row "GET /api/devices/$DEV_A1"                  200 200 404 200 404
row "GET /api/devices/$DEV_B1"                  200 404 200 404 200
row "GET /api/devices/$DEV_A1/status"           200 200 404 200 404
row "GET /api/devices/$DEV_B1/status"           200 404 200 404 200
row "PUT /api/devices/$DEV_A1/firmware {\"version\":\"2.0.0\"}" 202 202 404 403 404
row "PUT /api/devices/$DEV_B1/firmware {\"version\":\"2.0.0\"}" 202 404 202 404 403
row "GET /api/commands/$CMD_A1"                 200 200 404 200 404
row "GET /api/commands/$CMD_B1"                 200 404 200 404 200
# revoking: refusals only here (the success is in cloud_api and cloud_tokens)
for role in admin_b mgr_b1 mgr_a1; do
	AUTH=${TOK[$role]}
	api POST "/api/devices/$DEV_A1/revoke-tokens" '{}'
	case $role in
	mgr_a1) expect_error 403 ;;
	*) expect_error 404 ;;
	esac
done
AUTH=$DTOK_A1
api POST "/api/devices/$DEV_A1/heartbeat" '{}'
expect_code 200   # still valid: no refused revoke revoked anything

note "lists never carry another tenant's rows"
ids() { jqr '[.items[].id] | sort | join(" ")'; }
sorted() { printf '%s\n' "$@" | sort | paste -sd' '; }
AUTH=$TOK_ADMIN_A
api GET /api/chains; expect_code 200
[ "$(ids)" = "$CHAIN_A" ] || fail "admin A's chains: $(ids)"
AUTH=$TOK_MGR_B1
api GET /api/chains; expect_code 200
[ "$(ids)" = "$CHAIN_B" ] || fail "manager B1's chains: $(ids)"
AUTH=$TOK_MGR_A1
api GET /api/branches; expect_code 200
[ "$(ids)" = "$BR_A1" ] || fail "manager A1's branches: $(ids)"
api GET "/api/branches?chain_id=$CHAIN_A&limit=200"; expect_code 200
[ "$(ids)" = "$BR_A1" ] || fail "manager A1's branches of chain A: $(ids)"
AUTH=$TOK_ADMIN_B
api GET '/api/branches?limit=200'; expect_code 200
[ "$(ids)" = "$BR_B1" ] || fail "admin B's branches: $(ids)"
AUTH=$TOK_ADMIN_A
api GET '/api/branches?limit=200'; expect_code 200
jqr '.items[].chain_id' | grep -qv "$CHAIN_A" && fail "admin A sees a branch of another chain"
jqr '.items[].id' | grep -q "$BR_B1" && fail "admin A sees branch B1"
# a page cursor taken from another tenant's id does not leak rows either
api GET "/api/branches?cursor=$BR_B1&limit=200"; expect_code 200
jqr '.items[].chain_id' | grep -qv "$CHAIN_A" && fail "cursor leaked another chain"
AUTH=$TOK_PLATFORM
api GET '/api/chains?limit=200'; expect_code 200
[ "$(jqr '.items | length')" = 3 ] || fail "platform admin sees every chain"

note "dashboards (issue 7): branch edit, enrollment codes, devices, branch comparison, the caller"
AUTH=$TOK_PLATFORM
api POST "/api/branches/$BR_A1/enrollment-codes" '{}'; expect_code 201; EC_A1=$(jqr .id)
#                                                     platform admin_a admin_b mgr_a1 mgr_b1
row "PUT /api/branches/$BR_A1 {\"name\":\"A one\"}"     200 200 404 403 404
row "PUT /api/branches/$BR_A2 {\"active\":true}"        200 200 404 404 404
row "GET /api/branches/$BR_A1/enrollment-codes"       200 200 404 403 404
row "GET /api/branches/$BR_A2/enrollment-codes"       200 200 404 404 404
row "DELETE /api/enrollment-codes/$EC_A1"             204 204 404 403 404
row "GET /api/chains/$CHAIN_A/branch-stats"           200 200 404 200 404
row "GET /api/devices?chain_id=$CHAIN_A"              200 200 404 200 404
row "GET /api/devices?branch_id=$BR_A1"               200 200 404 200 404
row "GET /api/devices?branch_id=$BR_A2"               200 200 404 404 404
# the lists and the comparison carry only what the caller sees
AUTH=$TOK_ADMIN_A
api GET '/api/devices?limit=200'; [ "$(ids)" = "$DEV_A1" ] || fail "admin A's devices: $(ids)"
# a cursor before every device: the page after it still holds only chain A's
api GET "/api/devices?cursor=01890000-0000-7000-8000-000000000000&limit=200"; expect_code 200
[ "$(jqs '[.items[].id] | join(" ")' '.items | length')" = "$DEV_A1|1" ] || fail "a device cursor leaked another chain: $(ids)"
api GET "/api/chains/$CHAIN_A/branch-stats"
[ "$(jqr '[.items[].code] | join(" ")')" = "A-001 A-002 NEW-1 NEW-2" ] || fail "admin A's branch comparison: $(cat "$T/resp.json")"
api GET "/api/branches/$BR_A1/enrollment-codes?limit=200"
[ "$(jqr '[.items[].branch_id] | unique | join(" ")')" = "$BR_A1" ] || fail "codes of another branch listed"
AUTH=$TOK_MGR_A1
api GET /api/devices; [ "$(ids)" = "$DEV_A1" ] || fail "manager A1's devices: $(ids)"
api GET "/api/chains/$CHAIN_A/branch-stats"
[ "$(jqr '[.items[].branch_id] | join(" ")')" = "$BR_A1" ] || fail "manager A1's branch comparison: $(cat "$T/resp.json")"
api GET /api/auth/me
[ "$(jqs .user.role '.user.branch_ids | join(" ")')" = "branch-manager|$BR_A1" ] || fail "manager A1's auth/me: $(cat "$T/resp.json")"
AUTH=$TOK_MGR_B1
api GET /api/devices; [ "$(ids)" = "$DEV_B1" ] || fail "manager B1's devices: $(ids)"
AUTH=$TOK_PLATFORM
api GET /api/devices; [ "$(ids)" = "$(sorted "$DEV_A1" "$DEV_B1")" ] || fail "platform admin's devices: $(ids)"
api GET "/api/chains/$CHAIN_B/branch-stats"
[ "$(jqr '[.items[].branch_id] | join(" ")')" = "$BR_B1" ] || fail "chain B's branch comparison: $(cat "$T/resp.json")"

note "a deactivated user's token stops working"
db_sql "UPDATE staff_users SET active = $( [ "$BACKEND" = postgres ] && echo false || echo 0) WHERE email = 'mgr-a1@example.com'"
AUTH=$TOK_MGR_A1
api GET "/api/branches/$BR_A1"
expect_error 401
# and a manager that loses a branch loses it at once
db_sql "UPDATE staff_users SET active = $( [ "$BACKEND" = postgres ] && echo true || echo 1) WHERE email = 'mgr-a1@example.com'"
db_sql "DELETE FROM user_branches WHERE branch_id = '$BR_A1'"
api GET "/api/branches/$BR_A1"
expect_error 404

cloud_stop
check_logs
echo "ok"
