#!/usr/bin/env bash
# The backup and restore of docs/OPERATIONS.md "Backing up and restoring",
# against the real daemon: while it runs, with a rental open and writes going
# on, the documented `sqlite3 ... ".backup ..."` command (taken from the doc
# itself, paths moved into the test's directory) makes a copy that passes
# PRAGMA integrity_check and holds the rental; the daemon is stopped, the
# copy restored as documented into a fresh data directory (0600, no stale
# -wal/-shm, kiosk.key beside it), and the daemon started on it still has
# the rental active and the cart rented.
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || fail "sqlite3 missing (scripts/test installs it)"
DOC=$CW_SOURCE_DIR/docs/OPERATIONS.md

# the documented command, exactly (after "sudo ", which tests do not need)
backup_cmd=$(grep -E '^sudo sqlite3 /var/lib/cartwise/edge\.db "\.backup ' "$DOC" | head -n 1)
[ -n "$backup_cmd" ] || fail "no sqlite3 .backup command in docs/OPERATIONS.md"
backup_cmd=${backup_cmd#sudo }
backup_cmd=${backup_cmd//\/var\/lib\/cartwise/$T/data}
backup_cmd=${backup_cmd//\/var\/backups\/cartwise/$T/backups}
note "documented command: $backup_cmd"

sim_start bus0 modbus --board 1:4 --no-pace
edge_config "$T/edge.json" "[{\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"modbus\",
  \"boards\":[{\"address\":1,\"locks\":4}]}]"
edge_start
wait_until 10 cart_is 4 available || fail "carts not ready"

note "a rental, its cart taken out of the slot"
api POST "$(branch /carts/assign)" '{"phone":"0521234567"}'
expect_code 201
RID=$(jqr .rental_id)
C=$(jqr .cart_number)
sim bus0 take 1 $((C - 1)) >/dev/null
wait_until 5 cart_has "$C" cart_present false || fail "cart $C still reported present"

note "backup while the daemon runs and writes (maintenance on/off of another cart)"
other=$((C % 4 + 1))
(
	while :; do
		for v in true false; do
			curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -d "{\"on\":$v}" \
				"http://127.0.0.1:$API_PORT/api/admin/carts/$other/maintenance" || exit 0
		done
	done
) &
WRITER=$!
PIDS+=("$WRITER")
sleep 0.2
mkdir -m 0700 "$T/backups"
eval "$backup_cmd" || fail "the documented backup command failed"
kill "$WRITER" 2>/dev/null || true
wait "$WRITER" || true
shopt -s nullglob
copies=("$T"/backups/edge-*.db)
[ ${#copies[@]} = 1 ] || fail "expected one backup file, found: ${copies[*]}"
COPY=${copies[0]}
[ ! -e "$COPY-wal" ] || fail "the backup has a -wal: not self-contained"
[ "$(sqlite3 "$COPY" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check of the backup is not ok"
[ "$(sqlite3 "$COPY" "SELECT status FROM rentals WHERE id = '$RID'")" = active ] ||
	fail "the backup does not hold the active rental $RID"
api GET /api/health
expect_code 200 # the daemon answered throughout

note "restore into a fresh data directory, as documented"
edge_stop
mkdir -m 0750 "$T/data2"
install -m 0600 "$COPY" "$T/data2/edge.db"
install -m 0600 "$T/data/kiosk.key" "$T/data2/kiosk.key"
rm -f "$T/data2/edge.db-wal" "$T/data2/edge.db-shm"
[ "$(sqlite3 "$T/data2/edge.db" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check after restore"
jq --arg dd "$T/data2" '.data_dir = $dd' "$T/edge.json" >"$T/edge2.json"
mv "$T/edge.log" "$T/edge-before.log" # check_logs reads both
edge_start "$T/edge2.json"
wait_until 10 cart_is "$C" rented || fail "cart $C is not rented after the restore: $(cart_field "$C" status)"
api GET "$(branch /rentals/active)"
expect_code 200
[ "$(jqr "[.[] | select(.id == \"$RID\" and .status == \"active\")] | length")" = 1 ] ||
	fail "rental $RID is not active after the restore: $(cat "$T/resp.json")"
grep -q 'event=kiosk.key.*created=1' "$T/edge.log" && fail "the restored kiosk.key was not used"
api POST "$(branch /carts/assign)" '{"phone":"0521234567"}'
expect_code 409 # still the phone's open rental
note "the customer brings the cart back to the restored device"
api POST "$(branch /carts/return)" '{"phone":"0521234567"}'
expect_code 200
S=$(jqr .slot_number)
sim bus0 dock 1 $((S - 1)) >/dev/null
wait_until 5 cart_is "$S" available || fail "slot $S did not close the restored rental"
edge_stop
check_logs
echo "backup: ok"
