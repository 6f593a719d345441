#!/usr/bin/env bash
# A broker that is down at start is retried forever without busy-looping; /readyz says so; once the
# broker comes up the daemon connects, subscribes and ingests.
. "$(dirname "$0")/lib.sh"

BROKER_PORT=$(free_port)
write_config "route city/parking/+/counter facility_json"
start_daemon
[ "$(http_code /healthz)" = 200 ] || fail "healthz while the broker is down"
[ "$(http_code /readyz)" = 503 ] || fail "readyz not 503 while the broker is down"
http /readyz | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ready"] is False and d["mqtt"] in ("connecting","disconnected"), d' ||
        fail "readyz body: $(http /readyz)"
sleep 4
# No busy loop: a few seconds of retrying costs well under a second of CPU (ASan build included).
ticks=$(awk '{print $14 + $15}' /proc/$DAEMON_PID/stat)
hz=$(getconf CLK_TCK)
[ "$ticks" -lt $((hz * 2)) ] || fail "daemon used $ticks ticks of CPU while the broker was down"
start_broker "$BROKER_PORT"
wait_ready 30
pub -t city/parking/a/counter -m '{"facility":"a","total":10,"free":3}'
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/sensors/a | grep -q '\"free_spaces\"'" || fail "no ingest after connect"
stop_daemon
grep -q "mqtt: connected" "$T/daemon.log" || fail "no connected line"
echo OK
