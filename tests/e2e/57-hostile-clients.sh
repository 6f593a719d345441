#!/usr/bin/env bash
# Hostile clients: 1000 idle HTTP connections and slow-header / slow-body clients do not stop others
# being served; oversized request lines, headers and bodies get 4xx; 100,000 distinct unknown sensor
# ids stay within registry.max_unregistered (stored, counted, not tracked).
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
write_config "route city/# facility_json" "registry.max_unregistered 1000" "http.max_connections 4096"
start_daemon
wait_ready
python3 - "$HTTP_PORT" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
idle = []
for _ in range(1000):                     # idle connections that never send a byte
    s = socket.create_connection(("127.0.0.1", port)); idle.append(s)
slow = socket.create_connection(("127.0.0.1", port))   # slow header: a byte a second
body = socket.create_connection(("127.0.0.1", port))   # slow body: announces 1 MB, sends little
body.sendall(b"POST /api/v1/parkings HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")
for c in b"GET /healthz HTTP/1.1\r\nHost: x":
    slow.sendall(bytes([c])); time.sleep(0.3)
time.sleep(8)
PY
HOSTILE=$!
PIDS+=("$HOSTILE")
sleep 2
# Others are still served, quickly, while all that is open.
for i in 1 2 3 4 5; do
        t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 "http://127.0.0.1:$HTTP_PORT/healthz")
        [ "${t%% *}" = 200 ] || fail "healthz while hostile clients are connected: $t"
done
# Oversized inputs get 4xx, not a crash or a hang.
big=$(python3 -c 'print("a" * 100000)')
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HTTP_PORT/api/v1/sensors/$big")
case $c in 4??) ;; *) fail "100 kB path got $c" ;; esac
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Big: $big" "http://127.0.0.1:$HTTP_PORT/healthz")
case $c in 4??) ;; *) fail "100 kB header got $c" ;; esac
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HTTP_PORT/api/v1/parkings?q=$big")
case $c in 4??) ;; *) fail "100 kB query string got $c" ;; esac
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HTTP_PORT/api/v1/sensors/a%zz")
[ "$c" = 400 ] || fail "bad percent-encoding got $c"
# A request announcing a 5 MB body is answered at once (no route takes a body), not after the body.
status=$(python3 - "$HTTP_PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
s.sendall(b"POST /api/v1/parkings HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\nabc")
print(s.recv(64).split(b"\r\n")[0].decode())
PY
) || fail "no answer to an oversized body"
case $status in "HTTP/1.1 405"*) ;; *) fail "oversized body got '$status'" ;; esac
[ "$(http_code /healthz)" = 200 ] || fail "not serving after oversized requests"

# 100,000 distinct unknown sensors: the live map stops at the cap, everything is still stored.
"$SIM" --host 127.0.0.1 --port "$BROKER_PORT" --qos 1 --id "cp-e2e-flood-$$" --mode flood --rate 0 \
        --duration 60 --count 100000 --sensors 100000 >"$T/flood.out" 2>"$T/flood.err" || fail "flood failed"
# What the broker acknowledged is what it must deliver (the flood stops without waiting for the rest).
sent=$(sed -n 's/.* \([0-9]*\) acknowledged.*/\1/p' "$T/flood.err" | tail -1)
[ "${sent:-0}" -ge 100000 ] || fail "the flood covered only ${sent:-0} of 100000 ids: $(cat "$T/flood.err")"
received() { http /metrics | sed -n 's/^citypulse_mqtt_messages_total{driver="facility_json"} //p'; }
# At least every message sent (QoS 1 may deliver a few twice).
wait_for 150 bash -c "[ \"\$(curl -s http://127.0.0.1:$HTTP_PORT/metrics | sed -n 's/^citypulse_mqtt_messages_total{driver=\"facility_json\"} //p')\" -ge $sent ]" ||
        fail "received $(received) of $sent"
http /metrics | grep -q '^citypulse_unregistered_sensors 1000$' || fail "cap not held: $(http /metrics | grep unregistered)"
http /metrics | grep -q '^citypulse_unregistered_over_cap_total [1-9]' || fail "over-cap not counted: $(http /metrics | grep unregistered)"
[ "$(http_code /api/v1/sensors/flood-00999)" = 200 ] || fail "a tracked sensor is not served"
[ "$(http_code /api/v1/sensors/flood-99999)" = 404 ] || fail "an untracked sensor is served live"
stop_daemon
[ "$(sql "SELECT count(DISTINCT sensor_id) FROM readings")" = 100000 ] || fail "untracked sensors not all stored: $(sql "SELECT count(DISTINCT sensor_id) FROM readings")"
grep -q 'too many unregistered sensors, new ones are stored but not tracked live' "$T/daemon.log" || fail "no cap warning"
kill "$HOSTILE" 2>/dev/null
echo OK
