#!/usr/bin/env bash
# The broker restarts in the middle of a QoS 1 stream: every message the broker acknowledged to the
# publisher is stored exactly once (keys compared in readings), and the daemon logs the reconnect.
. "$(dirname "$0")/lib.sh"

N=${N:-4000}
start_broker "$(free_port)"
write_config "route city/parking/+/counter facility_json"
start_daemon
wait_ready
seq_stream seqgate "$N"
sleep 1.5
log "restarting the broker"
stop_broker
sleep 0.5
start_broker "$BROKER_PORT"
seq_wait_acked "$N"
seq_check_stored seqgate "$N"
stop_daemon
seq_check_stored seqgate "$N"
grep -q "broker connection lost" "$T/daemon.log" || fail "no disconnect warning"
[ "$(grep -c 'mqtt: connected' "$T/daemon.log")" -ge 2 ] || fail "no reconnect"
grep -q "session_present=1" "$T/daemon.log" || fail "the broker did not keep the persistent session"
echo OK
