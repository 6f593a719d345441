#!/usr/bin/env bash
# SIGHUP: config and registry parsed fresh and swapped only when valid; subscriptions diffed; a key
# that needs a restart is named in a warning; an invalid file leaves the running config untouched.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
printf 'parking_id;name;total_spaces;lat;lon;city;operator\np1;One;100;;;;\n' >"$T/facilities.csv"
printf 'sensor_id;kind;parking_id;spot_id;district\ng1;facility;p1;;\n' >"$T/sensors.csv"
write_config "route city/a/+ facility_json" "registry.facilities $T/facilities.csv" "registry.sensors $T/sensors.csv"
start_daemon
wait_ready
[ "$(http /api/v1/parkings | jget 'len(d["data"]["parkings"])')" = 1 ] || fail "one facility"

# New facility, new sensor, a route swapped for another, and a restart-only key changed.
printf 'parking_id;name;total_spaces;lat;lon;city;operator\np1;One;100;;;;\np2;Two;50;;;;\n' >"$T/facilities.csv"
printf 'sensor_id;kind;parking_id;spot_id;district\ng1;facility;p1;;\ng2;facility;p2;;\n' >"$T/sensors.csv"
sed -i 's|^route city/a/+ facility_json|route city/b/+ facility_json|; s|^mqtt.client_id .*|mqtt.client_id changed-id|' "$T/citypulse.conf"
kill -HUP "$DAEMON_PID"
wait_for 10 grep -q "main: reloaded facilities=2 sensors=2 routes=1" "$T/daemon.log" || fail "no reload line"
grep -q "changed keys need a restart, keeping their running values keys=mqtt.client_id" "$T/daemon.log" || fail "no restart warning"
grep -q "mqtt: unsubscribing filter='city/a/+'" "$T/daemon.log" || fail "old route not unsubscribed"
[ "$(http /api/v1/parkings | jget 'len(d["data"]["parkings"])')" = 2 ] || fail "two facilities after reload"
sleep 0.3
pub -t city/b/g2 -m '{"facility":"g2","total":50,"free":7}'
pub -t city/a/g1 -m '{"facility":"g1","total":100,"free":9}' # no longer subscribed
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings/p2 | grep -q '\"free_spaces\":7'" || fail "new route not subscribed"
sleep 0.5
[ "$(http /api/v1/parkings/p1 | jget 'd["data"]["parking"]["free_spaces"]')" = None ] || fail "old route still delivered"

# An invalid config: refused, running config kept.
cp "$T/citypulse.conf" "$T/good.conf"
echo "live.stale_after banana" >>"$T/citypulse.conf"
kill -HUP "$DAEMON_PID"
wait_for 10 grep -q "reload refused, keeping the running configuration: $T/citypulse.conf:[0-9]*: live.stale_after: invalid value 'banana'" "$T/daemon.log" ||
        fail "invalid reload not refused by FILE:LINE"
[ "$(http /api/v1/parkings | jget 'len(d["data"]["parkings"])')" = 2 ] || fail "registry lost after a refused reload"
pub -t city/b/g2 -m '{"facility":"g2","total":50,"free":8}'
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/parkings/p2 | grep -q '\"free_spaces\":8'" || fail "ingest after refused reload"
# A broken registry file is refused the same way.
cp "$T/good.conf" "$T/citypulse.conf"
printf 'sensor_id;kind;parking_id;spot_id;district\ng3;facility;nowhere;;\n' >"$T/sensors.csv"
kill -HUP "$DAEMON_PID"
wait_for 10 grep -q "reload refused.*sensors.csv:2: facility sensor 'g3': parking_id 'nowhere' is not in the facilities file" "$T/daemon.log" ||
        fail "bad registry not refused"
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$HTTP_PORT/metrics)" = 200 ] || fail metrics
http /metrics | grep -q '^citypulse_reloads_total{result="failed"} 2$' || fail "reload failure counter: $(http /metrics | grep reloads)"
stop_daemon
echo OK
