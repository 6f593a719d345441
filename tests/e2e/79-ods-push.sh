#!/usr/bin/env bash
# The Opendatasoft realtime push against a local receiver started by the test: live records and closed
# buckets arrive as JSON arrays on the per-dataset URL; the receiver fails (500, a wrong body, a hang
# past the timeout, down) and the records are retried from the durable queue, across a daemon restart,
# until they arrive; the push key is in the request, never in the log or /metrics.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
RPORT=$(free_port)
echo ok >"$T/mode"
python3 "$(dirname "$0")/ods_receiver.py" --port "$RPORT" --log "$T/recv.log" --control "$T/mode" >"$T/recv.out" 2>&1 &
RECV_PID=$!
PIDS+=("$RECV_PID")
wait_port "$RPORT" 10 || fail "receiver did not start"
KEY="s3cr3t-push-key-$$-$RANDOM"
echo "$KEY" >"$T/pushkey"
cat >"$T/facilities.csv" <<CSV
parking_id;name;total_spaces;lat;lon;city;operator
P1;Parking 1;100;48.8240;2.2700;Issy-les-Moulineaux;Ville
P2;Parking 2;1;48.8250;2.2710;Issy-les-Moulineaux;Ville
CSV
cat >"$T/sensors.csv" <<CSV
sensor_id;kind;parking_id;spot_id;district
P1;facility;P1;;
bay-1;spot;P2;B1;
CSV
write_config "route city/parking/+/counter facility_json" "registry.facilities $T/facilities.csv" \
        "registry.sensors $T/sensors.csv" "ods_push.url http://127.0.0.1:$RPORT/api/push/1.0/{dataset}/realtime/push/" \
        "ods_push.pushkey_file $T/pushkey"
start_daemon
wait_ready
counter() { # free epoch-ms
        pub -t city/parking/P1/counter -m "{\"facility\":\"P1\",\"free\":$1,\"total\":100,\"timestamp\":$2}"
}
now_ms() { date +%s%3N; }
counter 40 "$(now_ms)"
wait_for 10 grep -qs '"path":"/api/push/1.0/parking-availability/realtime/push/"' "$T/recv.log" ||
        fail "no live record pushed: $(cat "$T/recv.log" "$T/daemon.log" | tail -n 20)"
python3 - "$T/recv.log" "$KEY" <<'PY' || fail "live push: $(tail -n 3 "$T/recv.log")"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
r = [x for x in reqs if "parking-availability" in x["path"]][-1]
assert r["valid"] and r["params"]["pushkey"] == [sys.argv[2]] or r["params"]["pushkey"] == sys.argv[2], r["params"]
rec = [x for x in r["records"] if x["parking_id"] == "P1"][-1]
assert rec["parking_id"] == "P1" and rec["free_spaces"] == 40 and rec["geo_point_2d"] == "48.824,2.27", rec
assert rec["last_reported"].endswith("Z") or rec["last_reported"][-6] in "+-", rec
PY
# A spot that never reported is pushed once, as unknown (parking-spots), and not again while unchanged.
wait_for 10 grep -qs '"path":"/api/push/1.0/parking-spots/realtime/push/"' "$T/recv.log" || fail "no spot pushed"
sleep 2.5
python3 - "$T/recv.log" <<'PY' || fail "spot push: $(grep parking-spots "$T/recv.log")"
import json, sys
recs = [r for l in open(sys.argv[1]) if "parking-spots" in l for r in json.loads(l)["records"]]
assert len(recs) == 1 and recs[0]["spot_id"] == "B1" and recs[0]["status"] == "unknown", recs
PY
# A late reading closes buckets: they go through the durable queue, in the transaction that wrote them.
B=$(( ($(date +%s) - 3600) / 900 * 900 ))
counter 30 $((B * 1000))
wait_for 15 grep -qs '"path":"/api/push/1.0/parking-occupancy-15min/realtime/push/"' "$T/recv.log" ||
        fail "no bucket pushed: $(tail -n 5 "$T/recv.log")"
python3 - "$T/recv.log" "$B" <<'PY' || fail "bucket push: $(grep occupancy-15min "$T/recv.log" | head -n 2)"
import json, sys, datetime
reqs = [json.loads(l) for l in open(sys.argv[1]) if "parking-occupancy-15min" in l]
recs = [r for x in reqs for r in x["records"]]
b = datetime.datetime.fromtimestamp(int(sys.argv[2]), datetime.timezone.utc)
first = [r for r in recs if datetime.datetime.fromisoformat(r["bucket_start"].replace("Z", "+00:00")) == b]
# One reading holds live.stale_after (5 min) of the quarter: known a third of it, unknown at its end.
assert first and first[0]["parking_id"] == "P1" and first[0]["free_spaces_min"] == 30, first
assert first[0]["free_spaces_last"] is None and abs(first[0]["coverage"] - 1 / 3) < 1e-5, first[0]
assert first[0]["occupancy_rate_mean"] == 0.7 and "revision" in first[0] and "updated_at" in first[0], first[0]
PY
# The portal fails in every way; changes keep coming; nothing is lost.
for m in 500 badbody hang close; do
        echo "$m" >"$T/mode"
        counter $((50 + ${#m})) "$(now_ms)"
        sleep 2.5
done
grep -q 'ods_push: push failed' "$T/daemon.log" || fail "failures not logged"
curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -q '^citypulse_ods_push_failures_total [1-9]' || fail "failures not counted"
echo down >"$T/mode"
kill "$RECV_PID"
wait "$RECV_PID" 2>/dev/null
counter 77 "$(now_ms)"
sleep 2
# A restart with records still queued: they survive in SQLite.
stop_daemon
queued=$(sql "SELECT count(*) FROM push_queue")
[ "$queued" -ge 1 ] || fail "nothing queued across the restart"
log "$queued batches queued across the restart"
echo ok >"$T/mode"
python3 "$(dirname "$0")/ods_receiver.py" --port "$RPORT" --log "$T/recv.log" --control "$T/mode" >>"$T/recv.out" 2>&1 &
RECV_PID=$!
PIDS+=("$RECV_PID")
wait_port "$RPORT" 10 || fail "receiver did not restart"
start_daemon
wait_ready
wait_for 90 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db 'SELECT count(*) FROM push_queue')\" = 0 ]" ||
        fail "queue not drained: $(sql 'SELECT dataset, attempts, last_error FROM push_queue')"
python3 - "$T/recv.log" <<'PY' || fail "accepted records"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
ok = [x for x in reqs if x["status"] == 200 and x["mode"] in ("ok", "ok_lower") and x["valid"]]
free = [r["free_spaces"] for x in ok if "parking-availability" in x["path"] for r in x["records"] if r["parking_id"] == "P1"]
# Every state the facility went through reached the portal, the last one last.
for want in (40, 53, 57, 54, 55, 77):
    assert want in free, (want, free)
assert free[-1] == 77, free
PY
[ "$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -c -- "$KEY")" = 0 ] || fail "push key in /metrics"
grep -q -- "$KEY" "$T/daemon.log" && fail "push key in the log"
stop_daemon
echo OK
