#!/usr/bin/env bash
# Bad input: a malformed config exits 1 with FILE:LINE; malformed payloads become rejects (table,
# counters, one warning per driver and reason) and change nothing else; bad HTTP paths get 4xx.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"

# --- config ---
printf 'mqtt.port 1883\nmqtt.hots x\nroute a/# nodriver\nlive.stale_after 5\n' >"$T/bad.conf"
out=$("$CITYPULSED" --check-config -c "$T/bad.conf" 2>&1) && fail "--check-config accepted a bad file"
echo "$out" | grep -qx "$T/bad.conf:2: unknown key 'mqtt.hots'" || fail "missing line 2 error: $out"
echo "$out" | grep -qx "$T/bad.conf:3: route: unknown driver 'nodriver'" || fail "missing line 3 error: $out"
echo "$out" | grep -q "^$T/bad.conf:4: live.stale_after: invalid value '5'" || fail "missing line 4 error: $out"
rc=0; "$CITYPULSED" -c "$T/bad.conf" 2>"$T/start.err" || rc=$?
[ "$rc" = 1 ] || fail "daemon started on a bad config (rc=$rc)"
grep -q "$T/bad.conf:2: unknown key" "$T/start.err" || fail "start error does not name FILE:LINE"
rc=0; "$CITYPULSED" --check-config -c "$T/missing.conf" 2>"$T/missing.err" || rc=$?
[ "$rc" = 1 ] && grep -q "missing.conf: cannot open" "$T/missing.err" || fail "missing config file"
printf 'parking_id;name;total_spaces;lat;lon;city;operator\nP1;x;-4;;;;\n' >"$T/f.csv"
printf 'registry.facilities %s\n' "$T/f.csv" >"$T/reg.conf"
out=$("$CITYPULSED" --check-config -c "$T/reg.conf" 2>&1) && fail "bad registry accepted"
echo "$out" | grep -qx "$T/f.csv:2: total_spaces '-4' is not a count 0..1000000" || fail "registry error: $out"
rc=0; "$CITYPULSED" --bogus >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "unknown option rc=$rc"
"$CITYPULSED" --version | grep -q '^citypulsed ' || fail "--version"
"$CITYPULSED" --help | grep -q -- '--check-config' || fail "--help"

# --- payloads ---
cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
p1;One;100;;;;
CSV
printf 'sensor_id;kind;parking_id;spot_id;district\ng1;facility;p1;;\n' >"$T/sensors.csv"
write_config "route city/parking/+/counter facility_json" "registry.facilities $T/facilities.csv" \
        "registry.sensors $T/sensors.csv" "mqtt.max_payload 1k" "rejects.max_payload 1k"
start_daemon
wait_ready
pub -t city/parking/g1/counter -m '{"facility":"g1","total":100,"free":40}'
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings/p1 | grep -q '\"free_spaces\":40'" || fail "first reading"

for i in $(seq 20); do pub -t city/parking/g1/counter -m '{"facility":"g1","free":'; done # truncated JSON x20
pub -t city/parking/g1/counter -m '{"facility":"g1","total":100,"free":130}'     # free > total
pub -t city/parking/g1/counter -m '{"facility":"g1","total":100,"free":"12"}'    # number as a string
pub -t city/parking/g1/counter -m ''                                            # empty
printf '\x00\x01\x02binary' | pub -t city/parking/g1/counter -s                 # binary
python3 -c 'print("{\"facility\":\"g1\",\"x\":\"" + "a"*2000 + "\"}")' | pub -t city/parking/g1/counter -s # too large
pub -t city/parking/g1/counter -m '{"facility":"g1","total":100,"free":1e400}'  # overflow
future=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
pub -t city/parking/g1/counter -m "{\"facility\":\"g1\",\"total\":100,\"free\":1,\"timestamp\":\"$future\"}"
pub -t city/parking/g1/counter -m '{"facility":"g1","total":100,"free":41}'      # good again

wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings/p1 | grep -q '\"free_spaces\":41'" || fail "good reading after bad ones"
stop_daemon
n=$(sql "SELECT count(*) FROM rejects")
[ "$n" = 27 ] || fail "expected 27 rejects, got $n: $(sql 'SELECT reason, detail FROM rejects')"
[ "$(sql "SELECT count(*) FROM rejects WHERE reason='bad_json'")" = 20 ] || fail "bad_json count"
sql "SELECT detail FROM rejects WHERE reason='inconsistent'" | grep -q 'facility_json: free 130 is greater than total 100' ||
        fail "inconsistent detail: $(sql "SELECT reason,detail FROM rejects")"
sql "SELECT detail FROM rejects WHERE reason='too_large'" | grep -q 'larger than mqtt.max_payload' || fail "too_large"
sql "SELECT count(*) FROM rejects WHERE reason='out_of_range'" | grep -qx 1 || fail "1e400 not out_of_range"
sql "SELECT detail FROM rejects WHERE reason='future_timestamp'" | grep -q 'ahead of the receive time' || fail "future"
[ "$(sql "SELECT length(payload) FROM rejects WHERE reason='too_large'")" = 1024 ] || fail "payload not cut at rejects.max_payload: $(sql "SELECT length(payload) FROM rejects WHERE reason='too_large'")"
# Only the good readings are stored, and the live value never saw a bad one.
[ "$(sql "SELECT group_concat(value) FROM (SELECT value FROM readings WHERE quantity='free_spaces' ORDER BY ts_ms)")" = "40.0,41.0" ] ||
        fail "readings: $(sql 'SELECT * FROM readings')"
# 20 identical bad_json rejects: one warning line, not twenty.
c=$(grep -c "payload rejected driver=facility_json reason=bad_json" "$T/daemon.log")
[ "$c" = 1 ] || fail "bad_json warned $c times"
grep -q "reason=inconsistent" "$T/daemon.log" || fail "no warning for inconsistent"
echo OK
