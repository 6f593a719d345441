#!/usr/bin/env bash
# The dashboard at GET /: headless Chromium loads it against a running daemon; the page must show the
# facilities and the values published during the test, updated live through the SSE stream. The
# screenshot is kept as a test artifact in $BUILD/test-artifacts/dashboard.png.
. "$(dirname "$0")/lib.sh"

CHROMIUM=$(command -v chromium || command -v chromium-browser) || fail "chromium missing (make deps installs it)"
start_broker "$(free_port)"
cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
mairie;Parking de la Mairie;120;48.8245;2.2737;Issy-les-Moulineaux;SPL
gare;Parking de la Gare;80;48.8307;2.2640;Issy-les-Moulineaux;
CSV
printf 'sensor_id;kind;parking_id;spot_id;district\nmairie-gate;facility;mairie;;\n' >"$T/sensors.csv"
write_config "route city/parking/+/counter facility_json" "registry.facilities $T/facilities.csv" \
        "registry.sensors $T/sensors.csv" "rrd.step 1s"
export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0" # librrd's known leaks, see 87-graphs.sh
start_daemon
wait_ready
[ "$(http_code /)" = 200 ] || fail "GET / is not 200"
curl -s -D - -o /dev/null "http://127.0.0.1:$HTTP_PORT/" | grep -qi '^Content-Type: text/html' || fail "not HTML"

pub -t city/parking/mairie-gate/counter -m '{"facility":"mairie-gate","total":120,"free":37}'
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings/mairie | grep -q '\"free_spaces\":37'" || fail "first value"
mkdir -p "$BUILD/test-artifacts"
# The page loads the list, opens the stream, and a change published while it is open must reach it.
steps=$(python3 -c '
import json, sys
port, bport, shot = sys.argv[1:4]
cell = "document.querySelector(\"#p-mairie td.free\")"
print(json.dumps([
  {"wait": cell + " && " + cell + ".textContent === \"37\"", "timeout": 20},
  {"wait": "document.getElementById(\"conn\").className === \"ok\"", "timeout": 20},
  {"wait": "document.querySelector(\"#p-gare .status\").textContent === \"unknown\""},
  {"wait": "document.body.innerText.includes(\"Parking de la Mairie\") && document.body.innerText.includes(\"Issy-les-Moulineaux\")"},
  {"run": "mosquitto_pub -h 127.0.0.1 -p %s -q 1 -t city/parking/mairie-gate/counter -m \x27{\"facility\":\"mairie-gate\",\"total\":120,\"free\":58}\x27" % bport},
  {"wait": cell + ".textContent === \"58\"", "timeout": 20},
  {"wait": "document.querySelector(\"#p-mairie .status\").textContent === \"open\""},
  {"wait": "[...document.querySelectorAll(\"img.graph\")].length === 2 && [...document.querySelectorAll(\"img.graph\")].every(i => i.complete && i.naturalWidth > 0)", "timeout": 20},
  {"screenshot": shot},
]))' "$HTTP_PORT" "$BROKER_PORT" "$BUILD/test-artifacts/dashboard.png")
python3 "$ROOT/tests/e2e/cdp.py" "$CHROMIUM" "http://127.0.0.1:$HTTP_PORT/" "$steps" || fail "dashboard in chromium"
[ -s "$BUILD/test-artifacts/dashboard.png" ] || fail "no screenshot"
stop_daemon
echo OK
