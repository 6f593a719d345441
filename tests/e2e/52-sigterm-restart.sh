#!/usr/bin/env bash
# SIGTERM of the daemon in the middle of a QoS 1 stream, then a restart: the daemon stops cleanly
# (exit 0, the journal imported and emptied), the broker keeps what it did not acknowledge for the
# persistent session, and after the restart every message the broker accepted is stored exactly once.
. "$(dirname "$0")/lib.sh"

N=${N:-4000}
start_broker "$(free_port)"
write_config "route city/parking/+/counter facility_json"
start_daemon
wait_ready
seq_stream st "$N"
sleep 1.5
log "SIGTERM the daemon mid-stream"
stop_daemon # expects exit 0
[ -z "$(ls "$T/data/journal")" ] || fail "journal not empty after a clean stop: $(ls "$T/data/journal")"
stored=$(sql "SELECT count(*) FROM readings WHERE sensor_id='st' AND quantity='entries_total'")
[ "$stored" -gt 0 ] && [ "$stored" -lt "$N" ] || fail "the stop did not hit mid-stream (stored $stored of $N)"
log "stopped with $stored of $N stored"
sleep 1
start_daemon
seq_wait_acked "$N"
seq_check_stored st "$N"
[ "$(http /api/v1/sensors/st | jget 'd["readings"]["entries_total"]["value"]')" = "$((N - 1)).0" ] ||
        fail "live value after restart: $(http /api/v1/sensors/st)"
grep -q 'main: stopped exit=0' "$T/daemon.log" || fail "no clean stop logged"
stop_daemon
seq_check_stored st "$N"
echo OK
