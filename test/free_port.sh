# shellcheck shell=bash
# cw_free_port: a TCP port nothing listens on now. Below Linux's ephemeral
# range (32768..), where outgoing connections take their local ports; ss
# (iproute2), no python3 start per port. Another process may still take the
# port before the caller binds it: callers that can, retry (test/mqtt/broker.sh).
# Sourced by test/integration/lib.sh, test/cloud/lib.sh and test/mqtt/broker.sh.
cw_free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 12000))
		ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return 0; }
	done
	return 1
}
