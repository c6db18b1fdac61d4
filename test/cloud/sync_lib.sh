# shellcheck shell=bash
# Helpers of the sync tests (cloud_sync.sh, cloud_sync_badinput.sh), sourced
# after lib.sh: a second device in branch A1 (DEV_A9, DTOK_A9), the cloud's
# public key as a device receives it (PK), and outbox entries in the edge's
# format.
setup_world "${SYNC_WORLD_EXTRA:-}"
NOW=$(date +%s%3N)
MIN=60000

# a second device in branch A1 (and the cloud's public key, as a device gets it)
AUTH=$TOK_PLATFORM
api POST "/api/branches/$BR_A1/enrollment-codes" '{"uses":1}'; expect_code 201
code=$(jqr .code)
AUTH=
api POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:a9\",\"branch_code\":\"A-001\",\"enrollment_code\":\"$code\"}"
expect_code 201
DEV_A9=$(jqr .device_id); DTOK_A9=$(jqr .device_token); PK=$(jqr .cloud_public_key)

# ---- entries in the edge's outbox format (src/edge/cw_engine.c cwe_outbox_*) ----
# One jq per entry: entry_jq SEQ KIND ENTITY_TYPE ENTITY_ID PAYLOAD_FILTER
# [jq arguments...]: the payload is a jq filter over the arguments (and $now).
entry_jq() {
	local seq=$1 kind=$2 et=$3 eid=$4 pl=$5
	shift 5
	jq -nc --argjson seq "$seq" --arg kind "$kind" --arg et "$et" --arg eid "$eid" \
		--argjson now "$NOW" "$@" '{seq: $seq, kind: $kind, entity_type: $et, entity_id: $eid,
		created_wall_ms: $now, clock_trusted: true, payload: ('"$pl"')}'
}
entry() { # SEQ KIND ENTITY_TYPE ENTITY_ID PAYLOAD (JSON)
	entry_jq "$1" "$2" "$3" "$4" '$pl' --argjson pl "$5"
}
cart_e() { # SEQ KIND CART NUMBER STATUS BOARD LOCK [NOTES] [BOARD_ONLINE (1)]
	entry_jq "$1" "$2" cart "$3" '{v: 1, event: "x", chain_id: "ignored", branch_id: "ignored",
		  device_id: "ignored", at: $now, clock_trusted: true,
		  cart: {id: $eid, cart_number: $n, status: $st, board_online: $bo, cart_present: 1,
		  hook_closed: 1, is_locked: 1, bus_index: 0, board_index: $board, lock_index: $lock,
		  removed: 0, fault_reason: null,
		  maintenance_notes: (if $notes == "" then null else $notes end),
		  reserved_for_rental: null, last_used: null, updated: $now}}' \
		--argjson n "$4" --arg st "$5" --argjson board "$6" --argjson lock "$7" --arg notes "${8:-}" \
		--argjson bo "${9:-1}"
}
rental_e() { # SEQ KIND RENTAL CART STATUS PHONE [ACTUAL] [NOTES]
	entry_jq "$1" "$2" rental "$3" '
		{v: 1, event: "x", chain_id: "x", branch_id: "x", device_id: "x", at: $now,
		 clock_trusted: true,
		 rental: {id: $eid, cart_id: $cart, cart_number: 1, user_phone: $phone, status: $st,
		 start_time: ($now - 600000), start_trusted: 1, expected_return: ($now + 600000),
		 actual_return: (if $act == "" then null else ($act | tonumber) end),
		 return_trusted: null, duration_s: (if $act == "" then null else 1800 end),
		 duration_trusted: null, release_confirmed: 1, unlock_latency_ms: 40, taken: 1,
		 return_slot: null, returned_to: null, end_reason: null,
		 notes: (if $notes == "" then null else $notes end), clock_trusted: 1,
		 updated: $now}}' \
		--arg cart "$4" --arg st "$5" --arg phone "$6" --arg act "${7:-}" --arg notes "${8:-}"
}
tel_e() { # SEQ EVENT_TYPE [CART]
	entry_jq "$1" telemetry telemetry "$1" '{v: 1, event: "telemetry", at: $now, clock_trusted: true,
		telemetry: {id: $seq, event_type: $t, cart_id: (if $cart == "" then null else $cart end),
		rental_id: null, event_data: {n: $seq}, wall_ms: $now, clock_trusted: 1}}' \
		--arg t "$2" --arg cart "${3:-}"
}
health_e() { # SEQ
	entry "$1" device.health device "$DEV_A1" '{"v":1,"health":{"cpu_temp_c":48.5,"outbox_depth":3,"clock_trusted":true}}'
}
result_e() { # SEQ COMMAND STATE
	entry_jq "$1" command.result command "$2" \
		'{v: 1, command: {id: $eid, state: $st, result: {released: true, note: "it'"'"'s \"done\""}}}' \
		--arg st "$3"
}
batch() { jq -sc '{entries: .}'; }
# sync DEVICE TOKEN BODY
sync() { local saved=$AUTH; AUTH=$2; api POST "/api/devices/$1/sync" "$3"; AUTH=$saved; }
state() {
	db_sql "SELECT (SELECT count(*) FROM rentals) || ',' || (SELECT count(*) FROM carts) || ',' ||
		(SELECT count(*) FROM telemetry) || ',' || (SELECT count(*) FROM controllers) || ',' ||
		(SELECT coalesce(sum(high_water), 0) FROM device_sync) || ',' ||
		(SELECT count(*) FROM commands WHERE state IN ('succeeded', 'failed')) || ',' ||
		(SELECT count(*) FROM devices WHERE health IS NOT NULL)"
}

# tel_batch FIRST LAST TYPE: a batch of telemetry entries FIRST..LAST (one jq)
tel_batch() {
	jq -nc --argjson a "$1" --argjson b "$2" --arg t "$3" --argjson now "$NOW" '
		{entries: [range($a; $b + 1) | {seq: ., kind: "telemetry", entity_type: "telemetry",
		 entity_id: (. | tostring), created_wall_ms: $now, clock_trusted: true,
		 payload: {v: 1, telemetry: {id: ., event_type: $t, cart_id: null, rental_id: null,
		 event_data: {n: .}, wall_ms: $now, clock_trusted: 1}}}]}'
}
