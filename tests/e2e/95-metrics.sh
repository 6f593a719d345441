#!/usr/bin/env bash
# /metrics: Prometheus text format accepted by promtool, counters that move with traffic, and labels
# that never carry topics or sensor ids.
. "$(dirname "$0")/lib.sh"

command -v promtool >/dev/null || fail "promtool missing (make deps installs prometheus)"
start_broker "$(free_port)"
write_config "route city/parking/+/counter facility_json"
start_daemon
wait_ready
pub -t city/parking/secret-sensor-42/counter -m '{"facility":"secret-sensor-42","total":10,"free":4}'
pub -t city/parking/secret-sensor-42/counter -m '{"facility":"secret-sensor-42","free":"x"}'
http /api/v1/parkings >/dev/null
http /nope >/dev/null
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/metrics | grep -q '^citypulse_readings_stored_total 2$'" ||
        fail "readings not counted: $(http /metrics | grep readings)"
http /metrics >"$T/metrics.txt"
promtool check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1 || fail "promtool: $(cat "$T/promtool.out")"
grep -q '^citypulse_mqtt_messages_total{driver="facility_json"} 2$' "$T/metrics.txt" || fail "messages"
grep -q '^citypulse_decode_errors_total{driver="facility_json",reason="wrong_type"} 1$' "$T/metrics.txt" || fail "decode errors"
grep -q '^citypulse_mqtt_connected 1$' "$T/metrics.txt" || fail "connected"
grep -q '^citypulse_http_requests_total{route="parkings",code="2xx"} 1$' "$T/metrics.txt" || fail "http by route"
grep -q '^citypulse_http_requests_total{route="other",code="4xx"} 1$' "$T/metrics.txt" || fail "http 404"
grep -q 'secret-sensor-42\|city/parking' "$T/metrics.txt" && fail "a sensor id or topic leaked into labels"
stop_daemon
echo OK
