#!/usr/bin/env bash
# What an operator tailing the log sees through a bad day: the broker down at start and later lost,
# a storm of bad payloads, a reload. One line per event, bounded under the storm, "recovered" when
# it ends, a summary line per interval, and never a secret.
. "$(dirname "$0")/lib.sh"

BROKER_PORT=$(free_port)
echo 'pa55-s3cr3t-value' >"$T/mqtt.password"
write_config "route city/+ facility_json" "mqtt.username citypulse" "mqtt.password_file $T/mqtt.password" \
        "log.summary_interval 2s"
start_daemon
sleep 3
[ "$(grep -c 'mqtt: cannot reach the broker, retrying' "$T/daemon.log")" = 1 ] ||
        fail "broker down: want exactly one warning, got: $(grep mqtt: "$T/daemon.log")"
start_broker "$BROKER_PORT"
wait_ready 30
grep -q 'mqtt: recovered broker connection' "$T/daemon.log" || fail "no recovered line for the broker"

# A storm of 500 bad payloads: a bounded number of lines, then "recovered" with the count.
python3 -c 'print("\n".join("{\"facility\":\"x\",\"free\":" for _ in range(500)))' |
        mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -t city/x -l
wait_for 20 grep -q 'ingest: recovered payloads driver=facility_json reason=bad_json, suppressed=499' "$T/daemon.log" ||
        fail "no recovered line after the storm: $(grep ingest: "$T/daemon.log" | tail -3)"
n=$(grep -c 'payload rejected' "$T/daemon.log")
[ "$n" -le 2 ] || fail "the storm produced $n reject lines"
grep -q 'stats: summary messages=500 ' "$T/daemon.log" || fail "no summary line counting the storm"

kill -HUP "$DAEMON_PID"
wait_for 10 grep -q 'main: reloaded ' "$T/daemon.log" || fail "no reload line"
stop_broker
wait_for 10 grep -q 'mqtt: broker connection lost, reconnecting' "$T/daemon.log" || fail "no lost line"
start_broker "$BROKER_PORT"
wait_for 30 bash -c "[ \$(grep -c 'mqtt: connected ' $T/daemon.log) -ge 2 ]" || fail "no reconnect line"
stop_daemon

grep -q 's3cr3t' "$T/daemon.log" && fail "the password appears in the log"
total=$(wc -l <"$T/daemon.log")
[ "$total" -lt 80 ] || fail "$total lines for this scenario: $(cut -c26-90 "$T/daemon.log" | sort | uniq -c | sort -rn | head)"
# Every line: timestamp, level letter, "module: phrase".
bad=$(grep -v -E '^[0-9T:.-]+Z [EWNID] [a-z_]+: [a-z]' "$T/daemon.log" | head -3)
[ -z "$bad" ] || fail "malformed lines: $bad"
echo OK
