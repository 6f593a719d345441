#!/usr/bin/env bash
# Buckets from a stream with explicit timestamps, through the broker: spot sensors over TTN and meters
# over SenML, values computed by hand; a late reading revises its bucket (revision 1, republished on
# <prefix>/buckets/...); a duplicate changes nothing.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
S;Spots;2;48.8240;2.2700;Issy-les-Moulineaux;Ville
CSV
cat >"$T/sensors.csv" <<CSV
sensor_id;kind;parking_id;spot_id;district
spot-a;spot;S;A;
spot-b;spot;S;B;
m1;meter;;;D
m2;meter;;;D
CSV
write_config "route v3/+/devices/+/up ttn_v3" "route senml/+ senml" \
        "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv" "live.stale_after 1h"
start_daemon
wait_ready
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t 'citypulse/buckets/#' -v >"$T/buckets.out" 2>&1 &
PIDS+=($!)
sleep 0.3

# B: a quarter hour that closed at least 30 minutes ago.
B=$(( ($(date +%s) - 3600) / 900 * 900 ))
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.000Z; }
ttn() { # device occupied(true|false) epoch-seconds
        local t
        t=$(iso "$3")
        pub -t "v3/city@ttn/devices/$1/up" -m "{\"end_device_ids\":{\"device_id\":\"$1\",\"application_ids\":{\"application_id\":\"city\"},\"dev_eui\":\"70B3D5A4D0001234\"},\"received_at\":\"$t\",\"uplink_message\":{\"f_port\":1,\"f_cnt\":7,\"frm_payload\":\"lQ==\",\"decoded_payload\":{\"type\":\"parking_status\",\"occupied\":$2},\"received_at\":\"$t\"}}"
}
senml() { # meter epoch-seconds power-W [energy-kWh]
        local e=""
        [ -n "${4:-}" ] && e=",{\"n\":\"energy\",\"u\":\"kWh\",\"s\":$4}"
        [ "$3" = - ] && pub -t "senml/$1" -m "[{\"bn\":\"$1:\",\"bt\":$2,\"n\":\"energy\",\"u\":\"kWh\",\"s\":$4}]" && return
        pub -t "senml/$1" -m "[{\"bn\":\"$1:\",\"bt\":$2,\"n\":\"power\",\"u\":\"W\",\"v\":$3}$e]"
}

# Spot a occupied at B, free at B+7m30s; spot b free at B.
ttn spot-a true "$B"
ttn spot-b false "$B"
ttn spot-a false $((B + 450))
# m1: 100 W then 200 W at B+5m; import 10.0, 10.5, 11.0 at B, +5m, +10m. m2: 50 W; import 100 then 5
# (a counter reset: counts 5).
senml m1 "$B" 100 10.0
senml m2 "$B" 50 100
senml m1 $((B + 300)) 200 10.5
senml m2 $((B + 300)) - 5
senml m1 $((B + 600)) - 11.0

BMS=$((B * 1000))
occ="SELECT occupancy_rate_mean, coverage, free_spaces_min, free_spaces_max, free_spaces_last, samples, revision FROM parking_occupancy_15min WHERE parking_id='S' AND bucket_start_ms=$BMS"
wait_for 15 bash -c "[ -n \"\$(sqlite3 $T/data/citypulse.db \"$occ\")\" ]" || fail "no 15-minute occupancy row"
# occupied 450 s of 1800 known spot-seconds = 0.25; free 1 then 2.
[ "$(sql "$occ")" = "0.25|1.0|1|2|2|3|0" ] || fail "occupancy row: $(sql "$occ")"
en="SELECT id, kind, energy_import_kwh, round(power_w_mean, 6), power_w_min, power_w_max, power_w_last, coverage FROM energy_15min WHERE bucket_start_ms=$BMS ORDER BY kind, id"
wait_for 10 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db \"SELECT count(*) FROM energy_15min WHERE bucket_start_ms=$BMS\")\" = 3 ]" ||
        fail "energy rows: $(sql "$en")"
# District: 150 W for 300 s, then 250 W for 600 s: 216.666667 W; energy 1.0 + 5 (reset).
want="D|district|6.0|216.666667|150.0|250.0|250.0|1.0
m1|meter|1.0|166.666667|100.0|200.0|200.0|1.0
m2|meter|5.0|50.0|50.0|50.0|50.0|1.0"
[ "$(sql "$en")" = "$want" ] || fail "energy rows: $(sql "$en")"
# Hourly and daily rows merge the quarters.
hq="SELECT count(*) FROM parking_occupancy_hourly WHERE parking_id='S' AND bucket_start_ms <= $BMS AND bucket_end_ms > $BMS"
wait_for 10 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db \"$hq\")\" = 1 ]" || fail "no hourly row"

# Late: spot b occupied at B+10m. (450 + 300) / 1800 = 0.416666...; revision 1, republished.
ttn spot-b true $((B + 600))
wait_for 10 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db \"SELECT revision FROM parking_occupancy_15min WHERE parking_id='S' AND bucket_start_ms=$BMS\")\" = 1 ]" ||
        fail "no revision: $(sql "$occ")"
[ "$(sql "$occ")" = "0.416667|1.0|1|2|1|4|1" ] || fail "revised row: $(sql "$occ")"
wait_for 10 grep -q '^citypulse/buckets/parking-occupancy-15min/S .*"revision":1' "$T/buckets.out" ||
        fail "revision not republished: $(head -c 2000 "$T/buckets.out")"
python3 - "$T/buckets.out" "$BMS" <<'PY' || fail "bucket messages"
import json, sys, datetime
seen = {}
for line in open(sys.argv[1]):
    topic, _, body = line.partition(" ")
    r = json.loads(body)
    assert topic.startswith("citypulse/buckets/"), topic
    ds = topic.split("/")[2]
    t = datetime.datetime.fromisoformat(r["bucket_start"].replace("Z", "+00:00"))
    seen.setdefault((ds, topic.split("/")[3], int(t.timestamp() * 1000)), []).append(r["revision"])
k = ("parking-occupancy-15min", "S", int(sys.argv[2]))
assert seen[k] == [0, 1], seen[k]
assert ("energy-15min", "D", int(sys.argv[2])) in seen, sorted(seen)
PY
# A duplicate (same sensor and time, other value) changes nothing.
ttn spot-b false $((B + 600))
sleep 3
[ "$(sql "$occ")" = "0.416667|1.0|1|2|1|4|1" ] || fail "a duplicate changed the row: $(sql "$occ")"
stop_daemon
# A clean restart recomputes nothing that was right.
start_daemon
wait_ready
sleep 3
[ "$(sql "$occ")" = "0.416667|1.0|1|2|1|4|1" ] || fail "restart changed the row: $(sql "$occ")"
# Only buckets still open may wait (the current quarter, hour and day).
[ "$(sql "SELECT count(*) FROM agg_dirty WHERE period = 0 OR (period IN (1, 2) AND t0 <= $BMS)")" = 0 ] ||
        fail "closed dirty buckets left: $(sql 'SELECT * FROM agg_dirty')"
stop_daemon
echo OK
