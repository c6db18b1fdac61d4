#!/usr/bin/env bash
# Chain-wide telemetry stats, GET /api/chains/{id}/stats (issue 3), on one
# backend: exact counts by event type and UTC day across day boundaries
# (whole days come from the telemetry_daily rollup of migration 005, the
# partial first and last day from telemetry), empty ranges, the rollup kept
# exact by the triggers on insert (single rows and batches), delete and update,
# the migration's backfill, bad parameters, and tenancy: another chain is
# refused and its rows never counted, a branch manager counts only their
# branches. Telemetry rows are inserted straight into the database (the edge
# sync of issue 4 will write them).
. "$(dirname "$0")/lib.sh"

setup_world
DAY=86400000
HOUR=3600000
NOW=$(date +%s%3N)
TODAY=$((NOW - NOW % DAY))
D0=$((TODAY - 10 * DAY)) # a UTC midnight ten days ago

if [ "$BACKEND" = postgres ]; then
	ts() { echo "to_timestamp($1 / 1000.0)"; }
	TSCOL='"timestamp"'
	# ms since the epoch of the timestamp column, for the oracle below
	TSMS='(extract(epoch from "timestamp") * 1000)::bigint'
else
	ts() { echo "$1"; }
	TSCOL=ts_ms
	TSMS=ts_ms
fi
DEV_A2=$(new_uuid)
if [ "$BACKEND" = postgres ]; then
	db_sql "INSERT INTO devices (id, branch_id, device_name, mac_address) VALUES ('$DEV_A2', '$BR_A2', 'pi', '02:00:00:00:00:a2')"
else
	db_sql "INSERT INTO devices (id, branch_id, device_name, mac_address, created_ms, updated_ms) VALUES ('$DEV_A2', '$BR_A2', 'pi', '02:00:00:00:00:a2', 0, 0)"
fi

# values DEVICE BRANCH CHAIN TYPE TS: one row of a multi-row INSERT (seq NULL:
# it runs in a subshell, and UNIQUE (device_id, seq) lets NULLs repeat)
values() {
	if [ "$BACKEND" = postgres ]; then
		printf "('%s', '%s', '%s', NULL, '%s', %s)" "$1" "$2" "$3" "$4" "$(ts "$5")"
	else
		printf "('%s', '%s', '%s', NULL, '%s', %s, %s)" "$1" "$2" "$3" "$4" "$5" "$NOW"
	fi
}
# ins ROW...: one INSERT statement (one batch) of the rows given by values
ins() {
	local IFS=,
	if [ "$BACKEND" = postgres ]; then
		db_sql "INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, $TSCOL) VALUES $*"
	else
		db_sql "INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, $TSCOL, received_ms) VALUES $*"
	fi
}
a1() { values "$DEV_A1" "$BR_A1" "$CHAIN_A" "$@"; }
a2() { values "$DEV_A2" "$BR_A2" "$CHAIN_A" "$@"; }
b1() { values "$DEV_B1" "$BR_B1" "$CHAIN_B" "$@"; }
# iso MS: RFC 3339 with milliseconds
iso() { printf '%s.%03dZ' "$(date -u -d "@$(($1 / 1000))" +%Y-%m-%dT%H:%M:%S)" $(($1 % 1000)); }
day_of() { date -u -d "@$(($1 / 1000))" +%Y-%m-%d; }

note "fixtures: telemetry of chain A (branches A1, A2) and chain B around day boundaries"
# one batch with several branches, days and types (PostgreSQL: one statement
# trigger, one upsert per key), then single rows
ins "$(a1 lock $((D0 - 1)))" "$(a1 lock $D0)" "$(a1 unlock $D0)" "$(a1 lock $((D0 + 12 * HOUR)))" \
	"$(a1 unlock $((D0 + DAY - 1)))" "$(a2 lock $((D0 + 5 * HOUR)))" "$(a2 lock $((D0 + DAY)))" \
	"$(a2 door_open $((D0 + DAY + 1)))" "$(b1 lock $D0)" "$(b1 lock $((D0 + DAY + 7)))"
ins "$(a1 lock $((D0 + 2 * DAY + 3 * HOUR)))"
ins "$(a2 unlock $((D0 + 2 * DAY + 9 * HOUR)))"
ins "$(a1 heartbeat $((D0 + 3 * DAY + 2 * HOUR)))"
ins "$(a1 heartbeat $((D0 + 3 * DAY + 20 * HOUR)))"
ins "$(b1 unlock $((D0 + 2 * DAY + 3 * HOUR)))" "$(b1 heartbeat $((D0 + 3 * DAY + 2 * HOUR)))"
ins "$(a1 heartbeat $((NOW - HOUR)))" "$(a2 heartbeat $((NOW - 2 * HOUR)))" "$(b1 heartbeat $((NOW - HOUR)))"

# expected CHAIN FROM TO [BRANCH]: the answer counted straight from telemetry
# (the oracle), in the response's shape: {total, by_event_type, per_day}
expected() {
	local extra=""
	[ -z "${4:-}" ] || extra="AND branch_id = '$4'"
	db_sql "SELECT $TSMS / $DAY, event_type, count(*) FROM telemetry WHERE chain_id = '$1'
		AND $TSMS >= $2 AND $TSMS < $3 $extra GROUP BY 1, 2" |
		jq -R -s -c 'split("\n") | map(select(length > 0) | split("|")
			| {day: (.[0] | tonumber), type: .[1], n: (.[2] | tonumber)}) as $r
		| {total: ([$r[].n] | add // 0),
		   by_event_type: (reduce $r[] as $x ({}; .[$x.type] += $x.n)),
		   per_day: ($r | group_by(.day) | map({date: (.[0].day * 86400 | strftime("%Y-%m-%d")),
			total: ([.[].n] | add), by_event_type: (reduce .[] as $x ({}; .[$x.type] += $x.n))}))}'
}
# stats CHAIN FROM TO: GET with the current AUTH; 200 expected
stats() {
	api GET "/api/chains/$1/stats?from=$(iso "$2")&to=$(iso "$3")"
	expect_code 200
}
by_type() { jq -c '.telemetry.by_event_type | to_entries | sort_by(.key) | from_entries' "$T/resp.json"; }
by_day() { jq -c '[.telemetry.per_day[] | {date, n: .total}]' "$T/resp.json"; }
# check CHAIN FROM TO [BRANCH]: the response (chain_id, from, to echoed) is
# the oracle's answer exactly: total, types, days and each day's types
check() {
	local want
	want=$(expected "$@")
	jq -e --argjson w "$want" --arg c "$1" --arg f "$(iso "$2")" --arg t "$(iso "$3")" \
		'.chain_id == $c and .from == $f and .to == $t and .telemetry == $w' "$T/resp.json" >/dev/null ||
		fail "$(iso "$2")..$(iso "$3"): got $(jq -c .telemetry "$T/resp.json"), want $want"
}

AUTH=$TOK_PLATFORM
note "partial first day, two whole days, partial last day (exact, hand-counted)"
stats "$CHAIN_A" $((D0 - HOUR)) $((D0 + 3 * DAY + 6 * HOUR))
# D0-1: lock(A1); D0: lock, unlock, lock, unlock (A1) + lock (A2); D0+1: lock,
# door_open (A2); D0+2: lock (A1), unlock (A2); D0+3 before 06:00: heartbeat (A1)
[ "$(by_type)" = '{"door_open":1,"heartbeat":1,"lock":6,"unlock":3}' ] || fail "hand count: $(by_type)"
[ "$(by_day)" = "[{\"date\":\"$(day_of $((D0 - 1)))\",\"n\":1},{\"date\":\"$(day_of $D0)\",\"n\":5},{\"date\":\"$(day_of $((D0 + DAY)))\",\"n\":2},{\"date\":\"$(day_of $((D0 + 2 * DAY)))\",\"n\":2},{\"date\":\"$(day_of $((D0 + 3 * DAY)))\",\"n\":1}]" ] ||
	fail "hand count per day: $(by_day)"
[ "$(jqr .telemetry.total)" = 11 ] || fail "total 11: $(jqr .telemetry.total)"
check "$CHAIN_A" $((D0 - HOUR)) $((D0 + 3 * DAY + 6 * HOUR))

note "boundaries: [from, to) to the millisecond, whole days only, inside one day"
for r in "$D0 $((D0 + 2 * DAY))" "$((D0 - 1)) $((D0 + DAY))" "$((D0 + 1)) $((D0 + DAY))" \
	"$((D0 + HOUR)) $((D0 + 13 * HOUR))" "$((D0 + DAY - 1)) $((D0 + DAY + 2))" \
	"$((D0 + 12 * HOUR)) $((D0 + 2 * DAY + 12 * HOUR))"; do
	# shellcheck disable=SC2086
	stats "$CHAIN_A" $r
	# shellcheck disable=SC2086
	check "$CHAIN_A" $r
done
stats "$CHAIN_A" $D0 $((D0 + DAY))
[ "$(jqr .telemetry.total)" = 5 ] || fail "day D0 whole: 5 events, got $(jqr .telemetry.total)"
stats "$CHAIN_A" $((D0 + 1)) $((D0 + DAY - 1))
[ "$(jqr .telemetry.total)" = 2 ] || fail "D0 without its first and last ms: 2 events (A1 lock at 12:00, A2 lock at 05:00), got $(jqr .telemetry.total)"

note "empty ranges"
stats "$CHAIN_A" $D0 $D0
[ "$(jqr .telemetry.total)" = 0 ] && [ "$(jqr '.telemetry.per_day | length')" = 0 ] &&
	[ "$(jqr '.telemetry.by_event_type | length')" = 0 ] || fail "from = to: $(cat "$T/resp.json")"
stats "$CHAIN_A" $((D0 - 100 * DAY)) $((D0 - 50 * DAY))
[ "$(jqs .telemetry.total '.telemetry.per_day')" = "0|[]" ] || fail "a range without events: $(cat "$T/resp.json")"

note "default range: the last 30 UTC days, today included"
api GET "/api/chains/$CHAIN_A/stats"
expect_code 200
[ "$(jqr .from)" = "$(iso $((TODAY - 29 * DAY)))" ] && [ "$(jqr .to)" = "$(iso $((TODAY + DAY)))" ] ||
	fail "default range: $(jqr .from) .. $(jqr .to)"
check "$CHAIN_A" $((TODAY - 29 * DAY)) $((TODAY + DAY))
[ "$(jqr .telemetry.by_event_type.heartbeat)" = 4 ] || fail "default range heartbeats of A: 4, got $(jqr .telemetry.by_event_type.heartbeat)"

note "tenancy: chain B's rows never counted in A; chain admins and managers of B refused"
stats "$CHAIN_B" $((D0 - DAY)) $((D0 + 4 * DAY))
[ "$(by_type)" = '{"heartbeat":1,"lock":2,"unlock":1}' ] || fail "chain B alone: $(by_type)"
check "$CHAIN_B" $((D0 - DAY)) $((D0 + 4 * DAY))
for tok in "$TOK_ADMIN_B" "$TOK_MGR_B1"; do
	AUTH=$tok
	api GET "/api/chains/$CHAIN_A/stats"
	expect_error 404 not_found
done
AUTH=$TOK_ADMIN_A
api GET "/api/chains/$CHAIN_B/stats"
expect_error 404 not_found
stats "$CHAIN_A" $((D0 - HOUR)) $((D0 + 3 * DAY + 6 * HOUR))
check "$CHAIN_A" $((D0 - HOUR)) $((D0 + 3 * DAY + 6 * HOUR))
AUTH=
api GET "/api/chains/$CHAIN_A/stats"
expect_error 401
AUTH=$DTOK_A1
api GET "/api/chains/$CHAIN_A/stats"
[ "$CODE" = 401 ] || [ "$CODE" = 403 ] || fail "a device token: $CODE"
expect_error "$CODE"

note "a branch manager counts only their branches (A1, not A2)"
AUTH=$TOK_MGR_A1
for r in "$((D0 - HOUR)) $((D0 + 3 * DAY + 6 * HOUR))" "$((D0 + HOUR)) $((D0 + 13 * HOUR))"; do
	# shellcheck disable=SC2086
	stats "$CHAIN_A" $r
	# shellcheck disable=SC2086
	check "$CHAIN_A" $r "$BR_A1"
done
stats "$CHAIN_A" $D0 $((D0 + 2 * DAY))
[ "$(by_type)" = '{"lock":2,"unlock":2}' ] || fail "manager of A1, days D0 and D0+1: $(by_type)"

note "bad parameters: 400 with a JSON error, nothing else"
AUTH=$TOK_PLATFORM
for q in "from=yesterday" "to=2026-13-01T00:00:00Z" "from=$(iso $((D0 + DAY)))&to=$(iso $D0)" \
	"from=$(iso $((D0 - 367 * DAY)))&to=$(iso $D0)" "event_type=lock" "limit=5" \
	"from=1969-12-31T23:59:59Z"; do
	api GET "/api/chains/$CHAIN_A/stats?$q"
	expect_error 400
done
# 366 days is the maximum, like the rental stats
api GET "/api/chains/$CHAIN_A/stats?from=$(iso $((D0 - 366 * DAY)))&to=$(iso $D0)"
expect_code 200
for id in not-a-uuid "$(new_uuid)" "$CHAIN_A'--"; do
	api GET "/api/chains/$id/stats"
	expect_error 404 not_found
done
api POST "/api/chains/$CHAIN_A/stats" '{}'
expect_error 405

note "the rollup follows deletes and updates of telemetry (retention, fixes)"
rollup_sum() { db_sql "SELECT coalesce(sum(n), 0) FROM telemetry_daily WHERE chain_id = '$1'"; }
tel_count() { db_sql "SELECT count(*) FROM telemetry WHERE chain_id = '$1'"; }
[ "$(rollup_sum "$CHAIN_A")" = "$(tel_count "$CHAIN_A")" ] && [ "$(tel_count "$CHAIN_A")" = 14 ] ||
	fail "rollup of A: $(rollup_sum "$CHAIN_A"), telemetry: $(tel_count "$CHAIN_A")"
db_sql "DELETE FROM telemetry WHERE chain_id = '$CHAIN_A' AND $TSMS >= $D0 AND $TSMS < $((D0 + DAY)) AND event_type = 'unlock'"
db_sql "UPDATE telemetry SET $TSCOL = $(ts $((D0 + 2 * DAY + 1))) WHERE chain_id = '$CHAIN_A' AND $TSMS = $((D0 - 1))"
[ "$(rollup_sum "$CHAIN_A")" = 12 ] && [ "$(tel_count "$CHAIN_A")" = 12 ] || fail "after delete: rollup $(rollup_sum "$CHAIN_A")"
[ "$(db_sql "SELECT count(*) FROM telemetry_daily WHERE n = 0")" = 0 ] || fail "rows of 0 left in the rollup"
stats "$CHAIN_A" $((D0 - DAY)) $((D0 + 4 * DAY))
check "$CHAIN_A" $((D0 - DAY)) $((D0 + 4 * DAY))
[ "$(by_day)" = "[{\"date\":\"$(day_of $D0)\",\"n\":3},{\"date\":\"$(day_of $((D0 + DAY)))\",\"n\":2},{\"date\":\"$(day_of $((D0 + 2 * DAY)))\",\"n\":3},{\"date\":\"$(day_of $((D0 + 3 * DAY)))\",\"n\":2}]" ] ||
	fail "per day after delete and update: $(by_day)"

note "migration 005 backfills the rollup from existing telemetry"
cloud_stop
want=$(db_sql "SELECT chain_id || ' ' || branch_id || ' ' || day || ' ' || event_type || ' ' || n FROM telemetry_daily ORDER BY 1" | sort)
[ -n "$want" ] || fail "rollup empty"
# back to version 4: 005 and every later migration (006 device_configs, 007
# rentals_branch_return) are undone and run again at the start
if [ "$BACKEND" = postgres ]; then
	db_sql "SET client_min_messages = warning; DROP TABLE telemetry_daily; DROP FUNCTION cw_telemetry_daily_ins, cw_telemetry_daily_del,
		cw_telemetry_daily_upd, cw_telemetry_daily_truncate CASCADE; DROP TABLE device_configs;
		DROP INDEX rentals_branch_return; DELETE FROM cw_schema_migrations WHERE version >= 5"
else
	db_sql "DROP TABLE telemetry_daily; DROP TRIGGER telemetry_daily_ins; DROP TRIGGER telemetry_daily_del;
		DROP TRIGGER telemetry_daily_upd; DROP TABLE device_configs; DROP INDEX rentals_branch_return;
		PRAGMA user_version = 4"
fi
cloud_start
got=$(db_sql "SELECT chain_id || ' ' || branch_id || ' ' || day || ' ' || event_type || ' ' || n FROM telemetry_daily ORDER BY 1" | sort)
[ "$got" = "$want" ] || fail "backfill differs: got
$got
want
$want"
stats "$CHAIN_A" $((D0 - HOUR)) $((D0 + 3 * DAY + 6 * HOUR))
check "$CHAIN_A" $((D0 - HOUR)) $((D0 + 3 * DAY + 6 * HOUR))
if [ "$BACKEND" = postgres ]; then
	db_sql "TRUNCATE telemetry"
	[ "$(db_sql "SELECT count(*) FROM telemetry_daily")" = 0 ] || fail "TRUNCATE telemetry left rollup rows"
fi

check_logs
echo PASS
