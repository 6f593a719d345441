#!/usr/bin/env bash
# rrdtool series and graphs: a facility and a district get their series; /graphs/{id}.png renders a
# PNG per period; unknown ids and bad periods are refused; the .rrd files hold the sampled values.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
printf 'parking_id;name;total_spaces;lat;lon;city;operator\nmairie;Mairie;100;;;;\n' >"$T/facilities.csv"
printf 'sensor_id;kind;parking_id;spot_id;district\ngate;facility;mairie;;\nm1;meter;;;Centre\n' >"$T/sensors.csv"
write_config "route city/parking/+/counter facility_json" "route tele/+/SENSOR tasmota" \
        "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv" "rrd.step 1s"
# librrd is built without frame pointers: only the slow unwinder sees rrd_graph_v() in the stacks of
# its known leaks (tests/lsan.supp), so this test, the one that renders graphs, pays for it.
export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
start_daemon
wait_ready
for i in 1 2 3 4; do
        pub -t city/parking/gate/counter -m "{\"facility\":\"gate\",\"total\":100,\"free\":$((20 + i))}"
        pub -t tele/m1/SENSOR -m "{\"Time\":\"$(TZ=Europe/Paris date +%Y-%m-%dT%H:%M:%S)\",\"ENERGY\":{\"Total\":$((100 + i)).5,\"Power\":$((1000 + i * 10))}}"
        sleep 1.1
done
wait_for 10 test -s "$T/data/rrd/mairie.rrd" || fail "no facility series: $(ls "$T/data/rrd")"
wait_for 10 test -s "$T/data/rrd/Centre.rrd" || fail "no district series"
for period in 1d 1w 1y; do
        curl -s -o "$T/g.png" -w '%{http_code} %{content_type}' "http://127.0.0.1:$HTTP_PORT/graphs/mairie.png?period=$period" >"$T/g.hdr"
        [ "$(cat "$T/g.hdr")" = "200 image/png" ] || fail "graph $period: $(cat "$T/g.hdr")"
        [ "$(head -c 8 "$T/g.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "not a PNG ($period)"
done
[ "$(http_code '/graphs/Centre.png?period=1d')" = 200 ] || fail "district graph"
[ "$(http_code '/graphs/nowhere.png')" = 404 ] || fail "unknown id not 404"
[ "$(http_code '/graphs/mairie.png?period=2d')" = 400 ] || fail "bad period not 400"
[ "$(http_code '/graphs/mairie.svg')" = 404 ] || fail "not .png not 404"
# Several clients at once: rendered one at a time, all answered.
cpids=()
for k in 1 2 3 4 5 6; do
        curl -s --max-time 20 -o "$T/p$k.png" "http://127.0.0.1:$HTTP_PORT/graphs/mairie.png?period=1m" &
        cpids+=($!)
done
wait "${cpids[@]}"
for k in 1 2 3 4 5 6; do [ -s "$T/p$k.png" ] || fail "concurrent graph $k empty"; done
stop_daemon
# The series hold what was sampled (rrdtool reads the file like an operator would).
rrdtool lastupdate "$T/data/rrd/mairie.rrd" | tail -1 | grep -qE '^[0-9]+: 0\.7[0-9]* 2[1-4]' ||
        fail "facility series: $(rrdtool lastupdate "$T/data/rrd/mairie.rrd")"
rrdtool lastupdate "$T/data/rrd/Centre.rrd" | tail -1 | grep -qE '^[0-9]+: 10[0-4]0' ||
        fail "district series: $(rrdtool lastupdate "$T/data/rrd/Centre.rrd")"
echo OK
