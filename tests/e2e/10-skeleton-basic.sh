#!/usr/bin/env bash
# A registered facility counter drives /api/v1/parkings; readings reach SQLite; ETag/304; sensors
# endpoint; SIGTERM exits 0 with everything stored.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
mairie;Parking de la Mairie;120;48.8245;2.2737;Issy-les-Moulineaux;SPL
gare;Parking de la Gare;80;48.8307;2.2640;Issy-les-Moulineaux;
CSV
cat >"$T/sensors.csv" <<CSV
sensor_id;kind;parking_id;spot_id;district
mairie-gate;facility;mairie;;
CSV
write_config "route city/parking/+/counter facility_json" \
        "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv"
"$CITYPULSED" --check-config -c "$T/citypulse.conf" || fail "--check-config refused a valid config"
start_daemon
wait_ready

[ "$(http /healthz | jget 'd["status"]')" = ok ] || fail "healthz"
# Before any reading every facility is unknown, with no number presented as live.
body=$(http /api/v1/parkings)
[ "$(echo "$body" | jget 'd["data"]["parkings"][0]["status"]')" = unknown ] || fail "not unknown at start: $body"
[ "$(echo "$body" | jget 'd["data"]["parkings"][0]["free_spaces"]')" = None ] || fail "free_spaces not null: $body"

now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
pub -t city/parking/mairie-gate/counter -m "{\"facility\":\"mairie-gate\",\"total\":120,\"free\":37,\"timestamp\":\"$now\"}"
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings | grep -q '\"free_spaces\":37'" ||
        fail "free_spaces 37 not visible: $(http /api/v1/parkings)"
body=$(http /api/v1/parkings)
echo "$body" | python3 -c '
import json,sys
d=json.load(sys.stdin)
assert set(d) == {"last_updated","ttl","version","data"}, d.keys()
p={x["parking_id"]:x for x in d["data"]["parkings"]}
m=p["mairie"]
assert m["status"]=="open" and m["free_spaces"]==37 and m["total_spaces"]==120, m
assert abs(m["occupancy_rate"]-0.692)<0.001, m
assert m["lat"]==48.8245 and m["lon"]==2.2737 and m["city"]=="Issy-les-Moulineaux", m
assert m["last_reported"].endswith(("+01:00","+02:00")), m
assert p["gare"]["status"]=="unknown" and p["gare"]["free_spaces"] is None, p["gare"]
assert d["ttl"]==10
' || fail "parkings body wrong: $body"

# ETag + Cache-Control + 304 + CORS.
hdrs=$(curl -s -D - -o /dev/null "http://127.0.0.1:$HTTP_PORT/api/v1/parkings")
etag=$(echo "$hdrs" | tr -d '\r' | sed -n 's/^ETag: //Ip')
[ -n "$etag" ] || fail "no ETag: $hdrs"
echo "$hdrs" | grep -qi '^Cache-Control: public, max-age=10' || fail "no Cache-Control: $hdrs"
echo "$hdrs" | grep -qi '^Access-Control-Allow-Origin: \*' || fail "no CORS: $hdrs"
[ "$(http_code /api/v1/parkings -H "If-None-Match: $etag")" = 304 ] || fail "no 304 for a matching ETag"
[ "$(http_code /api/v1/parkings -H 'If-None-Match: "nope"')" = 200 ] || fail "304 for a wrong ETag"

# One facility, its 404, and the sensor with its readings.
[ "$(http /api/v1/parkings/mairie | jget 'd["data"]["parking"]["free_spaces"]')" = 37 ] || fail "parking/mairie"
[ "$(http_code /api/v1/parkings/nowhere)" = 404 ] || fail "unknown parking not 404"
s=$(http /api/v1/sensors/mairie-gate)
echo "$s" | python3 -c '
import json,sys
d=json.load(sys.stdin)
assert d["sensor_id"]=="mairie-gate" and d["registered"] is True and d["kind"]=="facility", d
assert d["readings"]["free_spaces"]["value"]==37 and d["readings"]["total_spaces"]["value"]==120, d
assert "observed_at" in d["readings"]["free_spaces"] and "received_at" in d["readings"]["free_spaces"], d
' || fail "sensor body: $s"
[ "$(http_code /api/v1/sensors/unknown-sensor)" = 404 ] || fail "unknown sensor not 404"
[ "$(http_code /api/v1/parkings -X POST)" = 405 ] || fail "POST not 405"
[ "$(http_code /nope)" = 404 ] || fail "unknown path not 404"

# An unregistered sensor with a slash in its id is stored and served percent-encoded.
pub -t city/parking/x/counter -m '{"facility":"other/gate","free":5,"total":10}'
wait_for 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HTTP_PORT/api/v1/sensors/other%2Fgate)\" = 200 ]" ||
        fail "sensor with %2F not served"
[ "$(http /api/v1/sensors/other%2Fgate | jget 'd["registered"]')" = False ] || fail "registered flag"

stop_daemon
rows=$(sql "SELECT count(*) FROM readings WHERE sensor_id='mairie-gate'")
[ "$rows" = 2 ] || fail "expected 2 readings for mairie-gate (free, total), got $rows"
[ "$(sql "SELECT value FROM readings WHERE sensor_id='mairie-gate' AND quantity='free_spaces'")" = 37.0 ] || fail "value"
[ "$(sql "PRAGMA journal_mode")" = wal ] || fail "not WAL"
grep -q 'main: started' "$T/daemon.log" || fail "no start line"
grep -q 'main: stopped exit=0' "$T/daemon.log" || fail "no clean stop line"
echo OK
