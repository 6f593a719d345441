#!/usr/bin/env bash
# kill -9 mid-stream, then a restart: the buckets are identical to those of an uninterrupted run.
# Two daemons subscribe to the same broker (each its own persistent session, so each gets every
# message): A is killed with SIGKILL while the simulated town replays 40 minutes of traffic at 120x
# speed and restarted; B runs through. Every closed 15-minute and hourly bucket must match, value for
# value (revision and updated_at may differ: they say when, not what).
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
"$SIM" --write-registry "$T/reg" >/dev/null || fail "simulator could not write the registry"
routes=("route city/parking/+/counter facility_json" "route v3/+/devices/+/up ttn_v3"
        "route application/+/device/+/event/up chirpstack_v4" "route tele/+/+ tasmota" "route +/events/rpc shelly_gen2")
write_config "${routes[@]}" "registry.facilities $T/reg/facilities.csv" "registry.sensors $T/reg/sensors.csv"
# The reference daemon B: same config, its own client id, port and data.
# Buckets that ended before the daemons started are closed in both from the start: those are compared.
W=$(( $(date +%s) / 60 * 60000 ))
B_PORT=$(free_port)
mkdir -p "$T/b/data"
sed -e "s|^mqtt.client_id .*|mqtt.client_id cp-e2e-b-$$|" -e "s|^http.listen .*|http.listen 127.0.0.1:$B_PORT|" \
        -e "s|^data_dir .*|data_dir $T/b/data|" "$T/citypulse.conf" >"$T/b/citypulse.conf"
"$CITYPULSED" -c "$T/b/citypulse.conf" --log=plain >>"$T/b/daemon.log" 2>&1 &
B_PID=$!
PIDS+=("$B_PID")
start_daemon
wait_ready
wait_for 20 curl -sf -o /dev/null "http://127.0.0.1:$B_PORT/readyz" || fail "daemon B not ready"

# 40 simulated minutes ending now, in 20 s.
"$SIM" --host 127.0.0.1 --port "$BROKER_PORT" --qos 1 --id "cp-e2e-sim-$$" --mode city --rate 400 --speed 120 \
        --duration 20 --seed 7 >"$T/sim.out" 2>"$T/sim.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")
sleep 8
log "kill -9 daemon A"
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
sleep 2
start_daemon
wait "$SIM_PID" || fail "simulator failed: $(tail -n 5 "$T/sim.err")"

# Both stored the same readings.
q="SELECT count(*), sum(value), sum(ts_ms % 100000) FROM readings"
wait_for 60 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db '$q')\" = \"\$(sqlite3 $T/b/data/citypulse.db '$q')\" ]" ||
        fail "readings differ: A $(sql "$q") B $(sqlite3 "$T/b/data/citypulse.db" "$q")"
log "both stored $(sql 'SELECT count(*) FROM readings') readings"

# Compare the closed buckets both have computed: those ending before both watermarks, once no
# 1-minute bucket waits in either.
settled() {
        for db in "$T/data/citypulse.db" "$T/b/data/citypulse.db"; do
                [ "$(sqlite3 "$db" "SELECT count(*) FROM agg_dirty WHERE period = 0 OR (period = 1 AND t0 + 900000 <= $W)")" = 0 ] ||
                        return 1
        done
}
sleep 3
wait_for 60 settled || fail "dirty buckets do not drain"
dump() { # db
        sqlite3 -batch "$1" "
SELECT 'occ15', parking_id, bucket_start_ms, occupancy_rate_mean, coverage, free_spaces_min, free_spaces_max,
       free_spaces_last, samples FROM parking_occupancy_15min WHERE bucket_end_ms <= $W
UNION ALL SELECT 'en15', id, bucket_start_ms, energy_import_kwh, energy_export_kwh, power_w_mean, power_w_min,
       power_w_max, samples FROM energy_15min WHERE bucket_end_ms <= $W
UNION ALL SELECT 'occ1m', parking_id, bucket_start_ms, occupancy_rate_mean, coverage, free_spaces_min,
       free_spaces_max, free_spaces_last, samples FROM parking_occupancy_1min WHERE bucket_end_ms <= $W
UNION ALL SELECT 'en1m', id, bucket_start_ms, energy_import_kwh, energy_export_kwh, power_w_mean, power_w_min,
       power_w_max, samples FROM energy_1min WHERE bucket_end_ms <= $W
ORDER BY 1, 2, 3"
}
dump "$T/data/citypulse.db" >"$T/a.buckets"
dump "$T/b/data/citypulse.db" >"$T/b.buckets"
n=$(wc -l <"$T/a.buckets")
[ "$n" -gt 100 ] || fail "too few buckets to compare: $n"
diff "$T/a.buckets" "$T/b.buckets" >"$T/buckets.diff" || fail "buckets differ after kill -9: $(head -20 "$T/buckets.diff")"
log "$n closed buckets identical ($(grep -c '^occ15' "$T/a.buckets") quarter-hour occupancy rows)"
grep -q 'journal: recovered left-over segment' "$T/daemon.log" || fail "the kill did not hit mid-stream"
stop_daemon
kill -TERM "$B_PID"
wait "$B_PID" || fail "daemon B exited with $?"
echo OK
