#!/usr/bin/env bash
# MQTT republish: <prefix>/status retained online/offline (last will), retained live records per
# facility and per meter/district with observed_at, received_at and stale, sent only on change; a
# facility whose sensors go silent is republished as stale with no free count.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
S/1;Spots;2;48.8240;2.2700;Issy-les-Moulineaux;Ville
CSV
cat >"$T/sensors.csv" <<CSV
sensor_id;kind;parking_id;spot_id;district
spot-a;spot;S/1;A;
spot-b;spot;S/1;B;
m1;meter;;;D
CSV
write_config "route v3/+/devices/+/up ttn_v3" "route senml/+ senml" \
        "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv" "live.stale_after 4s"
start_daemon
wait_ready
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t 'citypulse/opendata/#' -v >"$T/live.out" 2>&1 &
PIDS+=($!)
sleep 0.5
ttn() { # device occupied
        local t
        t=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
        pub -t "v3/city@ttn/devices/$1/up" -m "{\"end_device_ids\":{\"device_id\":\"$1\",\"application_ids\":{\"application_id\":\"city\"},\"dev_eui\":\"70B3D5A4D0001234\"},\"received_at\":\"$t\",\"uplink_message\":{\"f_port\":1,\"f_cnt\":7,\"frm_payload\":\"lQ==\",\"decoded_payload\":{\"type\":\"parking_status\",\"occupied\":$2},\"received_at\":\"$t\"}}"
}
ttn spot-a true
ttn spot-b false
pub -t senml/m1 -m "[{\"bn\":\"m1:\",\"bt\":$(date +%s),\"n\":\"power\",\"u\":\"W\",\"v\":1500}]"
# The id's '/' is percent-encoded in the topic level.
wait_for 10 grep -q '^citypulse/opendata/parking/S%2F1 .*"free_spaces":1' "$T/live.out" ||
        fail "no live facility record: $(cat "$T/live.out")"
wait_for 10 grep -q '^citypulse/opendata/energy/D .*"power_w":1500' "$T/live.out" || fail "no district record: $(cat "$T/live.out")"
grep -q '^citypulse/opendata/energy/m1 .*"stale":false' "$T/live.out" || fail "no meter record: $(cat "$T/live.out")"
# Silence: the record is republished stale, with no number presented as live.
wait_for 10 grep -q '^citypulse/opendata/parking/S%2F1 .*"stale":true' "$T/live.out" || fail "not republished stale"
python3 - "$T/live.out" <<'PY' || fail "records: $(cat "$T/live.out")"
import json, sys
recs = [json.loads(l.split(" ", 1)[1]) for l in open(sys.argv[1]) if l.startswith("citypulse/opendata/parking/")]
assert [r["stale"] for r in recs] == [False, True], [r["stale"] for r in recs]  # only on change
fresh, stale = recs
assert fresh["observed_at"] and fresh["received_at"] and fresh["status"] == "open", fresh
assert stale["free_spaces"] is None and stale["status"] == "unknown", stale
PY
# Retained: a late subscriber gets the current records and the status at once.
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t 'citypulse/opendata/parking/#' -t citypulse/status -v -W 3 >"$T/late.out" 2>&1 || true
grep -q '^citypulse/opendata/parking/S%2F1 .*"stale":true' "$T/late.out" || fail "record not retained: $(cat "$T/late.out")"
grep -qx 'citypulse/status online' "$T/late.out" || fail "status not retained online: $(cat "$T/late.out")"
stop_daemon
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t citypulse/status -v -C 1 -W 3 >"$T/after.out" 2>&1 || true
grep -qx 'citypulse/status offline' "$T/after.out" || fail "status after stop: $(cat "$T/after.out")"
echo OK
