#!/usr/bin/env bash
# Logs for operators: journald priority prefixes when stderr is the journal, ISO timestamps otherwise,
# SIGUSR1 toggles debug, payloads only at debug, the MQTT password never appears.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
echo 's3cr3t-pa55word' >"$T/mqtt.password"
write_config "route city/+ facility_json" "mqtt.username citypulse" "mqtt.password_file $T/mqtt.password"
touch "$T/daemon.log"
# What systemd does: JOURNAL_STREAM names the device and inode of the stream on stderr.
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/daemon.log") "$CITYPULSED" -c "$T/citypulse.conf" 2>>"$T/daemon.log" &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
wait_port "$HTTP_PORT" 20 || fail "no listener"
wait_ready
pub -t city/x -m '{"facility":"x","free":"nope-payload-marker"}'
wait_for 5 grep -q 'payload rejected driver=facility_json reason=wrong_type' "$T/daemon.log" || fail "no reject warning"
kill -USR1 "$DAEMON_PID"
wait_for 5 grep -q 'log level changed level=debug' "$T/daemon.log" || fail "SIGUSR1 did not switch to debug"
pub -t city/x -m '{"facility":"x","free":"debug-payload-marker"}'
wait_for 5 grep -q 'debug-payload-marker' "$T/daemon.log" || fail "payload not logged at debug"
kill -USR1 "$DAEMON_PID"
wait_for 5 grep -q 'log level changed level=info' "$T/daemon.log" || fail "SIGUSR1 did not switch back"
stop_daemon
grep -q 'nope-payload-marker' "$T/daemon.log" && fail "payload logged at info"
grep -q 's3cr3t' "$T/daemon.log" && fail "password in the log"
# Every line: <priority>module: phrase ...
bad=$(grep -v -E '^<[3-7]>[a-z_]+: [a-z]' "$T/daemon.log" | head -3)
[ -z "$bad" ] || fail "lines without a journald prefix: $bad"
grep -q '^<5>main: started ' "$T/daemon.log" || fail "start is not notice"
grep -q '^<4>ingest: payload rejected driver=facility_json reason=wrong_type ' "$T/daemon.log" || fail "reject is not warning"
grep -q '^<7>ingest: rejected payload' "$T/daemon.log" || fail "payload line is not debug"

# Without JOURNAL_STREAM: ISO 8601 UTC timestamps and a level letter.
: >"$T/plain.log"
"$CITYPULSED" -c "$T/citypulse.conf" 2>>"$T/plain.log" &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
wait_port "$HTTP_PORT" 20 || fail "no listener (plain)"
stop_daemon
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z N main: started ' "$T/plain.log" || fail "plain format: $(head -2 "$T/plain.log")"
echo OK
