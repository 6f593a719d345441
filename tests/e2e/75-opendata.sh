#!/usr/bin/env bash
# Open data out: the Explore v2.1 subset (catalog, records with ODSQL, exports) and the import-ready
# files, read back by real consumers (Python's json and csv modules through check_export.py); bad
# queries and injection attempts answered 400 with the store intact; ETag/304; updated_since.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
S;"Spots ""quoted""; with semicolon";2;48.8240;2.2700;Issy-les-Moulineaux;Ville
far;Loin;50;48.9000;2.4000;Paris;Autre
CSV
cat >"$T/sensors.csv" <<CSV
sensor_id;kind;parking_id;spot_id;district
spot-a;spot;S;A;
spot-b;spot;S;B;
m1;meter;;;D
CSV
TOKEN=adm1n-t0ken-$$-$RANDOM-secret
echo "$TOKEN" >"$T/token"
write_config "route v3/+/devices/+/up ttn_v3" "route senml/+ senml" "http.admin_token_file $T/token" \
        "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv" "live.stale_after 1h"
start_daemon
wait_ready
CHECK="python3 $(dirname "$0")/check_export.py"
X="http://127.0.0.1:$HTTP_PORT/api/explore/v2.1/catalog/datasets"

B=$(( ($(date +%s) - 3600) / 900 * 900 ))
BMS=$((B * 1000))
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.000Z; }
ttn() { # device occupied(true|false) epoch-seconds
        local t
        t=$(iso "$3")
        pub -t "v3/city@ttn/devices/$1/up" -m "{\"end_device_ids\":{\"device_id\":\"$1\",\"application_ids\":{\"application_id\":\"city\"},\"dev_eui\":\"70B3D5A4D0001234\"},\"received_at\":\"$t\",\"uplink_message\":{\"f_port\":1,\"f_cnt\":7,\"frm_payload\":\"lQ==\",\"decoded_payload\":{\"type\":\"parking_status\",\"occupied\":$2},\"received_at\":\"$t\"}}"
}
ttn spot-a true "$B"
ttn spot-b false "$B"
ttn spot-a false $((B + 450))
for i in 0 1 2 3 4 5; do
        pub -t senml/m1 -m "[{\"bn\":\"m1:\",\"bt\":$((B + i * 300)),\"n\":\"power\",\"u\":\"W\",\"v\":$((100 + i))},{\"n\":\"energy\",\"u\":\"kWh\",\"s\":$((10 + i))}]"
done
# The live readings (now) for the live datasets.
ttn spot-b true "$(date +%s)"
ttn spot-a false "$(date +%s)"
q15="SELECT count(*) FROM parking_occupancy_15min WHERE parking_id='S' AND bucket_start_ms=$BMS"
wait_for 15 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db \"$q15\")\" = 1 ]" || fail "no bucket row"
wait_for 10 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db \"SELECT count(*) FROM energy_15min WHERE id='m1'\")\" -ge 2 ]" ||
        fail "no energy rows"

get() { curl -s --max-time 10 -G "$@"; }
code() { curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -G "$@"; }

# Catalog.
get "$X" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ids = [x["dataset_id"] for x in d["results"]]
want = ["parking-availability", "parking-spots", "parking-occupancy-15min", "parking-occupancy-hourly",
        "parking-occupancy-daily", "energy-live", "energy-15min", "energy-hourly", "energy-daily"]
assert d["total_count"] == 9 and ids == want, ids
' || fail "catalog: $(get "$X" | head -c 500)"
get "$X/parking-occupancy-15min" | python3 -c '
import json, sys
d = json.load(sys.stdin)
t = {f["name"]: f["type"] for f in d["fields"]}
assert t["geo_point_2d"] == "geo_point_2d" and t["bucket_start"] == "datetime" and t["samples"] == "int", t
assert d["metas"]["default"]["records_count"] >= 1, d["metas"]
assert d["keys"] == ["parking_id", "bucket_start"], d["keys"]
' || fail "dataset metadata: $(get "$X/parking-occupancy-15min" | head -c 500)"

# Records: where with a date literal, select, the hand-computed value.
get "$X/parking-occupancy-15min/records" --data-urlencode "where=parking_id = \"S\" AND bucket_start = date'$(iso "$B")'" \
        --data-urlencode "select=parking_id,occupancy_rate_mean,geo_point_2d" --data-urlencode "timezone=Europe/Paris" |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["total_count"] == 1, d
r = d["results"][0]
assert r == {"parking_id": "S", "occupancy_rate_mean": 0.25, "geo_point_2d": {"lon": 2.27, "lat": 48.824}}, r
' || fail "records"
# timezone renders datetimes with the zone's offset.
get "$X/parking-occupancy-15min/records" --data-urlencode "select=bucket_start" --data-urlencode "timezone=Europe/Paris" \
        --data-urlencode "limit=1" | grep -q '+01:00\|+02:00' || fail "timezone not applied"
# Geo on the live dataset: within 500 m of Issy's town hall and a bounding box.
get "$X/parking-availability/records" --data-urlencode "where=within_distance(geo_point_2d, geom'POINT(2.2705 48.8242)', 500m)" \
        --data-urlencode "select=parking_id" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert [r["parking_id"] for r in d["results"]] == ["S"], d
' || fail "within_distance"
get "$X/parking-availability/records" --data-urlencode "where=in_bbox(geo_point_2d, 48.95, 2.35, 48.85, 2.45)" \
        --data-urlencode "select=parking_id,status,free_spaces" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["results"] == [{"parking_id": "far", "status": "unknown", "free_spaces": None}], d
' || fail "in_bbox or a stale facility shown as a number"

# Bad queries: 400 with the ODS error shape, 404 for an unknown dataset; the store stays intact.
before=$(sql "SELECT count(*) FROM readings")
bad() { # expected-code args...
        local want=$1
        shift
        local got
        got=$(code "$X/parking-occupancy-15min/records" "$@")
        [ "$got" = "$want" ] || fail "$* answered $got, want $want: $(cat "$T/body")"
        [ "$want" != 400 ] || python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["error_code"] == "ODSQLError" and d["message"], d
' "$T/body" || fail "$*: error body $(cat "$T/body")"
}
bad 400 --data-urlencode "limit=101"
bad 400 --data-urlencode "limit=100" --data-urlencode "offset=9901"
bad 400 --data-urlencode "limit=ten"
bad 400 --data-urlencode "where=nosuchfield = 1"
bad 400 --data-urlencode "where=parking_id = 'S'; DROP TABLE readings; --"
bad 400 --data-urlencode "where=parking_id = \"S"
bad 400 --data-urlencode "where=$(printf '(%.0s' $(seq 1 200))parking_id = 'S'$(printf ')%.0s' $(seq 1 200))"
bad 400 --data-urlencode "where=parking_id LIKE"
bad 400 --data-urlencode "select=parking_id, nope"
bad 400 --data-urlencode "order_by=geo_point_2d"
bad 400 --data-urlencode "timezone=Mars/Olympus"
bad 400 --data-urlencode "where=in_bbox(parking_id, 1, 2, 3, 4)"
bad 200 --data-urlencode "where=parking_id = \"S'; DROP TABLE readings; --\""
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_count"])' "$T/body")" = 0 ] ||
        fail "an injection string matched rows"
[ "$(code "$X/nope/records")" = 404 ] || fail "unknown dataset: $(cat "$T/body")"
[ "$(sql "SELECT count(*) FROM readings")" = "$before" ] || fail "readings changed"
[ "$(sql "$q15")" = 1 ] || fail "bucket table damaged"

# Exports, read back by Python's json and csv modules.
for f in csv json jsonl geojson; do
        [ "$(code "$X/parking-occupancy-15min/exports/$f")" = 200 ] || fail "export $f: $(head -c 300 "$T/body")"
        $CHECK "$f" "$T/body" --key parking_id,bucket_start --bbox 48.8,2.2,48.95,2.45 >"$T/check.out" ||
                fail "export $f: $(cat "$T/check.out")"
        [ "$(code "http://127.0.0.1:$HTTP_PORT/exports/parking-occupancy-15min.$f")" = 200 ] || fail "/exports $f"
        $CHECK "$f" "$T/body" --key parking_id,bucket_start >"$T/check.out" || fail "/exports $f: $(cat "$T/check.out")"
done
[ "$(code "http://127.0.0.1:$HTTP_PORT/exports/parking-availability.csv")" = 200 ] || fail "live csv"
$CHECK csv "$T/body" --expect-rows 2 --key parking_id >"$T/check.out" || fail "live csv: $(cat "$T/check.out")"
head -c 3 "$T/body" | od -An -tx1 | grep -q 'ef bb bf' || fail "CSV without BOM"
python3 - "$T/body" <<'PY' || fail "CSV content"
import csv, io, sys
rows = list(csv.DictReader(io.open(sys.argv[1], encoding="utf-8-sig"), delimiter=";"))
s = [r for r in rows if r["parking_id"] == "S"][0]
assert s["name"] == 'Spots "quoted"; with semicolon', s
assert s["geo_point_2d"] == "48.824,2.27", s["geo_point_2d"]
PY
[ "$(code "http://127.0.0.1:$HTTP_PORT/exports/parking-occupancy-15min.xlsx")" = 404 ] || fail "unknown format"

# ETag and 304 on the import-ready file; a revision changes it.
curl -s -D "$T/h1" -o /dev/null "http://127.0.0.1:$HTTP_PORT/exports/parking-occupancy-15min.csv"
etag=$(grep -i '^etag:' "$T/h1" | cut -d' ' -f2 | tr -d '\r')
[ -n "$etag" ] || fail "no ETag"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "http://127.0.0.1:$HTTP_PORT/exports/parking-occupancy-15min.csv")" = 304 ] ||
        fail "no 304 for an unchanged export"
since=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 1
ttn spot-b true $((B + 600)) # late: revises the bucket
wait_for 10 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db \"SELECT revision FROM parking_occupancy_15min WHERE parking_id='S' AND bucket_start_ms=$BMS\")\" = 1 ]" ||
        fail "no revision"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "http://127.0.0.1:$HTTP_PORT/exports/parking-occupancy-15min.csv")" = 200 ] ||
        fail "304 after a revision"
[ "$(code "http://127.0.0.1:$HTTP_PORT/exports/parking-occupancy-15min.json" --data-urlencode "updated_since=$since")" = 200 ] ||
        fail "updated_since: $(cat "$T/body")"
# Only revised rows: the late reading's quarter and those its value holds into (live.stale_after 1h).
python3 -c '
import json, sys
rows = json.load(open(sys.argv[1]))
assert rows and all(r["revision"] >= 1 and r["parking_id"] == "S" for r in rows), rows
assert rows[0]["occupancy_rate_mean"] == 0.416667, rows[0]  # 0.75 / 1.8, published to 6 decimals
' "$T/body" || fail "updated_since rows: $(head -c 500 "$T/body")"
# The energy rows were not revised: none since then, all of them without the parameter.
[ "$(code "http://127.0.0.1:$HTTP_PORT/exports/energy-15min.json" --data-urlencode "updated_since=$since")" = 200 ] ||
        fail "updated_since: $(cat "$T/body")"
[ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/body")" = 0 ] ||
        fail "updated_since returned unrevised rows: $(head -c 300 "$T/body")"
[ "$(code "http://127.0.0.1:$HTTP_PORT/exports/energy-15min.json")" = 200 ] || fail "energy export"
[ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/body")" = "$(sql 'SELECT count(*) FROM energy_15min')" ] ||
        fail "energy export rows"
# gzip when asked (and only then), with its own ETag, and a 304 for it.
curl -s -D "$T/gh" --compressed -o "$T/body" "$X"
grep -qi '^content-encoding: gzip' "$T/gh" || fail "no gzip: $(cat "$T/gh")"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["total_count"] == 9' "$T/body" || fail "gzip body"
getag=$(grep -i '^etag:' "$T/gh" | cut -d' ' -f2 | tr -d '\r')
case "$getag" in *-gz\") ;; *) fail "gzip ETag: $getag" ;; esac
[ "$(curl -s -o /dev/null -w '%{http_code}' --compressed -H "If-None-Match: $getag" "$X")" = 304 ] || fail "no 304 for gzip"
curl -s -D "$T/ph" -o /dev/null "$X"
grep -qi '^content-encoding' "$T/ph" && fail "gzip without Accept-Encoding"

# History: one entity's buckets (keyset pages), a sensor's readings (pages), rejects (admin token).
H="http://127.0.0.1:$HTTP_PORT/api/v1"
get "$H/series" --data-urlencode dataset=energy-15min --data-urlencode id=m1 --data-urlencode limit=1 >"$T/p1"
python3 - "$T/p1" <<'PY' || fail "series page: $(cat "$T/p1")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["dataset"] == "energy-15min" and d["id"] == "m1" and len(d["data"]) == 1 and d["next_cursor"], d
r = d["data"][0]
assert r["kind"] == "meter" and r["bucket_start"][-6] in "+-" and "energy_import_kwh" in r, r  # city time with offset
PY
cur=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["next_cursor"])' "$T/p1")
get "$H/series" --data-urlencode dataset=energy-15min --data-urlencode id=m1 --data-urlencode "cursor=$cur" >"$T/p2"
python3 - "$T/p1" "$T/p2" "$(sql "SELECT count(*) FROM energy_15min WHERE id='m1'")" <<'PY' || fail "series pages"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rows = a["data"] + b["data"]
assert len(rows) == int(sys.argv[3]) and b["next_cursor"] is None, (len(rows), sys.argv[3], b)
assert len({r["bucket_start"] for r in rows}) == len(rows)
PY
[ "$(code "$H/series" --data-urlencode dataset=parking-availability --data-urlencode id=S)" = 400 ] || fail "series of a live dataset"
[ "$(code "$H/series" --data-urlencode dataset=energy-15min)" = 400 ] || fail "series without id"
[ "$(code "$H/series" --data-urlencode dataset=energy-15min --data-urlencode id=m1 --data-urlencode from=yesterday)" = 400 ] ||
        fail "series with a bad time"
n=0
cur=""
while :; do
        get "$H/sensors/m1/readings" --data-urlencode limit=4 ${cur:+--data-urlencode "cursor=$cur"} \
                --data-urlencode "from=$(iso $((B - 60)))" >"$T/r"
        n=$((n + $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["readings"]))' "$T/r")))
        cur=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["next_cursor"]; print(c or "")' "$T/r")
        [ -n "$cur" ] || break
done
[ "$n" = "$(sql "SELECT count(*) FROM readings WHERE sensor_id='m1'")" ] || fail "readings paged: $n"
[ "$(code "$H/sensors/m1/readings" --data-urlencode quantity=bananas)" = 400 ] || fail "unknown quantity"
pub -t senml/m1 -m 'not json at all'
wait_for 10 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db 'SELECT count(*) FROM rejects')\" -ge 1 ]" || fail "no reject stored"
[ "$(curl -s -o "$T/body" -D "$T/ah" -w '%{http_code}' "$H/rejects")" = 401 ] || fail "rejects without a token"
grep -qi '^www-authenticate: Bearer' "$T/ah" || fail "no WWW-Authenticate"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope-nope-nope-nope" "$H/rejects")" = 401 ] ||
        fail "rejects with a wrong token"
curl -s -H "Authorization: Bearer $TOKEN" "$H/rejects?driver=senml" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d["rejects"][0]
assert r["driver"] == "senml" and r["topic"] == "senml/m1" and r["payload"] == "not json at all" and r["reason"], r
' || fail "rejects: $(curl -s -H "Authorization: Bearer $TOKEN" "$H/rejects")"
curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -q -- "$TOKEN" && fail "token in /metrics"
grep -q -- "$TOKEN" "$T/daemon.log" && fail "token in the log"

# NGSI-LD: normalized with the context in a Link header, or in the body for application/ld+json.
N="http://127.0.0.1:$HTTP_PORT/ngsi-ld/v1/entities"
curl -s -D "$T/nh" -o "$T/body" "$N?type=OffStreetParking"
grep -qi '^link: <https://' "$T/nh" || fail "no Link header: $(cat "$T/nh")"
grep -qi '^content-type: application/json' "$T/nh" || fail "content type: $(cat "$T/nh")"
python3 - "$T/body" <<'PY' || fail "NGSI-LD parkings: $(head -c 600 "$T/body")"
import json, sys
es = json.load(open(sys.argv[1]))
by = {e["id"]: e for e in es}
s = by["urn:ngsi-ld:OffStreetParking:S"]
assert s["type"] == "OffStreetParking" and "@context" not in s, s
assert s["location"]["type"] == "GeoProperty" and s["location"]["value"]["coordinates"] == [2.27, 48.824], s["location"]
assert s["totalSpotNumber"]["value"] == 2, s
far = by["urn:ngsi-ld:OffStreetParking:far"]
assert "availableSpotNumber" not in far, far  # silent sensors: unknown, never a number
PY
curl -s -H 'Accept: application/ld+json' "$N/urn:ngsi-ld:OffStreetParking:S?options=keyValues" >"$T/body"
python3 - "$T/body" <<'PY' || fail "NGSI-LD keyValues: $(head -c 600 "$T/body")"
import json, sys
e = json.load(open(sys.argv[1]))
assert "@context" in e and e["id"] == "urn:ngsi-ld:OffStreetParking:S", e
assert isinstance(e["totalSpotNumber"], int), e
PY
curl -s "$N?type=ParkingSpot&options=keyValues" | python3 -c '
import json, sys
es = json.load(sys.stdin)
st = sorted((e["id"], e["status"]) for e in es)
assert st == [("urn:ngsi-ld:ParkingSpot:spot-a", "free"), ("urn:ngsi-ld:ParkingSpot:spot-b", "occupied")], st
' || fail "NGSI-LD spots"
curl -s "$N?type=ACMeasurement" | python3 -c '
import json, sys
ids = sorted(e["id"] for e in json.load(sys.stdin))
assert ids == ["urn:ngsi-ld:ACMeasurement:district:D", "urn:ngsi-ld:ACMeasurement:m1"], ids
' || fail "NGSI-LD energy"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$N")" = 400 ] || fail "NGSI-LD without type"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$N/urn:ngsi-ld:OffStreetParking:nope")" = 404 ] || fail "NGSI-LD unknown id"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$N/not-a-urn")" = 400 ] || fail "NGSI-LD bad id"
stop_daemon
echo OK
