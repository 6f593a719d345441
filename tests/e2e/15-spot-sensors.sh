#!/usr/bin/env bash
# Spot sensors through TTN v3 and ChirpStack v4 change a facility's availability over HTTP and in
# SQLite; a stale facility becomes unknown; rejects are republished on <prefix>/rejects/<driver>.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
rue;Rue de la République;3;48.8240;2.2700;Issy-les-Moulineaux;Ville
CSV
cat >"$T/sensors.csv" <<CSV
sensor_id;kind;parking_id;spot_id;district
nps-1;spot;rue;R-1;
nps-2;spot;rue;R-2;
a84041000181c061;spot;rue;R-3;
CSV
write_config "route v3/+/devices/+/up ttn_v3" "route application/+/device/+/event/up chirpstack_v4" \
        "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv" "live.stale_after 4s"
start_daemon
wait_ready
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t 'citypulse/rejects/#' -v -C 1 -W 20 >"$T/rejects.out" 2>&1 &
SUB_PID=$!
PIDS+=("$SUB_PID")
sleep 0.3

ttn() { # device occupied(true|false)
        local now
        now=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
        pub -t "v3/city-parking@ttn/devices/$1/up" -m "{\"end_device_ids\":{\"device_id\":\"$1\",\"application_ids\":{\"application_id\":\"city-parking\"},\"dev_eui\":\"70B3D5A4D0001234\"},\"received_at\":\"$now\",\"uplink_message\":{\"f_port\":1,\"f_cnt\":7,\"frm_payload\":\"lQ==\",\"decoded_payload\":{\"type\":\"parking_status\",\"occupied\":$2},\"received_at\":\"$now\"}}"
}
chirp() { # occupied(1.0|0.0)
        local now
        now=$(date -u +%Y-%m-%dT%H:%M:%S.%N+00:00)
        pub -t "application/5f0c1b9e-3c1d-4a6e-9d7c-2b8f1a0e4c11/device/a84041000181c061/event/up" -m "{\"deduplicationId\":\"3b1b0d8e-1f1c-4d8e-9e6a-0c2f5e7d9a10\",\"time\":\"$now\",\"deviceInfo\":{\"tenantId\":\"52f14cd4-c6f1-4fbd-8f87-4025e1d49242\",\"applicationId\":\"5f0c1b9e-3c1d-4a6e-9d7c-2b8f1a0e4c11\",\"deviceName\":\"spot-r3\",\"devEui\":\"a84041000181c061\"},\"fCnt\":12,\"fPort\":1,\"data\":\"AQ==\",\"object\":{\"occupied\":$1}}"
}

ttn nps-1 true
ttn nps-2 false
chirp 0.0
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings/rue | grep -q '\"free_spaces\":2'" ||
        fail "two free spots expected: $(http /api/v1/parkings/rue)"
chirp 1.0
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings/rue | grep -q '\"free_spaces\":1'" ||
        fail "one free spot expected after the ChirpStack sensor went occupied: $(http /api/v1/parkings/rue)"
http /api/v1/parkings/rue/spots | python3 -c '
import json,sys
d=json.load(sys.stdin)["data"]
s={x["spot_id"]:x["status"] for x in d["spots"]}
assert s=={"R-1":"occupied","R-2":"free","R-3":"occupied"}, s
' || fail "spots: $(http /api/v1/parkings/rue/spots)"
# A payload for the wrong device on a device's topic is rejected and republished.
pub -t "v3/city-parking@ttn/devices/nps-1/up" -m '{"end_device_ids":{"device_id":"nps-9"},"uplink_message":{"decoded_payload":{"occupied":true}}}'
wait "$SUB_PID" || fail "no reject republished: $(cat "$T/rejects.out")"
grep -q '^citypulse/rejects/ttn_v3 ' "$T/rejects.out" || fail "reject topic: $(cat "$T/rejects.out")"
grep -q '"reason":"id_mismatch"' "$T/rejects.out" || fail "reject body: $(cat "$T/rejects.out")"
# Silence: after live.stale_after the facility is unknown, never a stale number.
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings/rue | grep -q '\"status\":\"unknown\"'" ||
        fail "not unknown after silence: $(http /api/v1/parkings/rue)"
[ "$(http /api/v1/parkings/rue | jget 'd["data"]["parking"]["free_spaces"]')" = None ] || fail "stale number shown"
stop_daemon
[ "$(sql "SELECT count(*) FROM readings WHERE quantity='occupied'")" = 4 ] || fail "readings: $(sql 'SELECT * FROM readings')"
[ "$(sql "SELECT group_concat(value) FROM (SELECT value FROM readings WHERE sensor_id='a84041000181c061' AND quantity='occupied' ORDER BY ts_ms)")" = "0.0,1.0" ] ||
        fail "chirpstack readings"
[ "$(sql "SELECT reason FROM rejects WHERE driver='ttn_v3'")" = id_mismatch ] || fail "rejects: $(sql 'SELECT * FROM rejects')"
echo OK
