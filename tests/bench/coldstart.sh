#!/usr/bin/env bash
# tests/bench/coldstart.sh - start-up time of citypulsed on a database holding 30 days of history.
# The city is tests/bench/fleet.c's (10,000 sensors: spots, gate counters, meters, pv). The database is
# made the way an operator's would be: citypulsed creates the schema in an empty data_dir (then stops),
# then sqlite3 fills `readings` with one reading per signal every 10 minutes for 30 days ending now
# (spots: occupied; counters: free_spaces, total_spaces; meters and pv: power_w, energy_import_kwh), in
# one transaction in key order, and `latest`, `agg_carry` and the bucket watermark as the daemon leaves
# them (daemon/store.c, daemon/bucket.c). Bucket tables stay empty: start-up does not read them.
# Each run starts citypulsed under a NOTIFY_SOCKET listener (tests/bench/startup_time.py) and times, from
# exec: READY=1 (the definition), the "main: started" log line, and /readyz 200 (broker connected).
# A run against an empty data_dir with the same registry is the baseline. Figures are reported, not
# asserted. Goal: READY in < 5 s.
# Usage: tests/bench/coldstart.sh [runs]   (default 3)
#        SENSORS=10000 DAYS=30 STEP_MIN=10 change the history; CITYPULSED=path measures another build;
#        COLD_KEEP=1 keeps the temp directory.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=${1:-3}
SENSORS=${SENSORS:-10000}
DAYS=${DAYS:-30}
STEP_MIN=${STEP_MIN:-10}
CITYPULSED=${CITYPULSED:-$ROOT/build/citypulsed}
FLEET=${FLEET:-$ROOT/build/bench/fleet}
T=$(mktemp -d /tmp/cp-cold-XXXXXX)
PIDS=()
stop() { # pid: SIGTERM, wait up to 30 s, then SIGKILL
        kill -TERM "$1" 2>/dev/null || return 0
        for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
}
cleanup() { for p in "${PIDS[@]}"; do stop "$p"; done; [ -n "${COLD_KEEP:-}" ] && echo "kept $T" || rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 143' TERM INT
die() { echo "coldstart.sh: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
now_ms() { date +%s%3N; }
secs() { awk -v t="$1" 'BEGIN {printf "%.1f", t/1000}'; }

[ -x "$CITYPULSED" ] || die "no $CITYPULSED (make build/citypulsed)"
if [ ! -x "$FLEET" ] || [ tests/bench/fleet.c -nt "$FLEET" ]; then
        mkdir -p "$(dirname "$FLEET")"
        cc -std=gnu11 -O2 -Wall -Wextra -o "$FLEET" tests/bench/fleet.c $(pkg-config --cflags --libs libmosquitto) ||
                die "cannot build $FLEET"
fi

mkdir -p "$T/reg" "$T/broker"
"$FLEET" registry "$T/reg" "$SENSORS" >"$T/reg/counts" || die "registry"
PORT=$(free_port)
HTTP=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser %s\n' "$PORT" "$(id -un)" >"$T/broker/m.conf"
mosquitto -c "$T/broker/m.conf" >"$T/broker/log" 2>&1 &
BROKER=$!
PIDS+=("$BROKER")
wait_port "$PORT" || die "broker did not start"

config() { # data_dir
        cat <<EOF
mqtt.host 127.0.0.1
mqtt.port $PORT
mqtt.client_id cp-bench-cold-$$
http.listen 127.0.0.1:$HTTP
data_dir $1
registry.facilities $T/reg/facilities.csv
registry.sensors $T/reg/sensors.csv
# The history spans $DAYS days ending now: keep it all through the runs (retention prunes hourly).
store.retention.readings $((DAYS + 5))d
route bench/spot/+ json_map
route city/parking/+/counter facility_json
route bench/meter/+ senml
driver.json_map.id /id
driver.json_map.time /ts
driver.json_map.map.occupied /occupied
log.level notice
EOF
}

# --- the database ------------------------------------------------------------------------------------
config "$T/data" >"$T/c.conf"
config "$T/empty" >"$T/empty.conf"
python3 tests/bench/startup_time.py "$HTTP" "$T/create.log" -- "$CITYPULSED" -c "$T/c.conf" --log=plain >/dev/null ||
        die "citypulsed did not start on an empty data_dir: $(tail -n 5 "$T/create.log")"
STEP_MS=$((STEP_MIN * 60000))
STEPS=$((DAYS * 1440 / STEP_MIN))
NOW=$(now_ms)
TS_END=$((NOW / STEP_MS * STEP_MS))
TS0=$((TS_END - (STEPS - 1) * STEP_MS))
t0=$(now_ms)
sqlite3 -batch "$T/data/citypulse.db" >"$T/gen.out" 2>&1 <<EOF || die "generating the history: $(cat "$T/gen.out")"
.bail on
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
PRAGMA cache_size=-262144;
CREATE TEMP TABLE reg(sensor_id TEXT, kind TEXT, parking_id TEXT, spot_id TEXT, district TEXT);
.separator ";"
.import --skip 1 $T/reg/sensors.csv reg
.separator "|"
-- One row per signal, in key order (sensor_id, quantity) so that each time step appends to the B-tree.
CREATE TEMP TABLE sq(sid INTEGER PRIMARY KEY, id TEXT, q TEXT, k INTEGER);
INSERT INTO sq(id, q, k) SELECT id, q, k FROM (
        SELECT sensor_id AS id, 'occupied' AS q, 0 AS k FROM reg WHERE kind = 'spot'
        UNION ALL SELECT sensor_id, 'free_spaces', 1 FROM reg WHERE kind = 'facility'
        UNION ALL SELECT sensor_id, 'total_spaces', 2 FROM reg WHERE kind = 'facility'
        UNION ALL SELECT sensor_id, 'power_w', 3 FROM reg WHERE kind IN ('meter', 'pv')
        UNION ALL SELECT sensor_id, 'energy_import_kwh', 4 FROM reg WHERE kind IN ('meter', 'pv')) ORDER BY id, q;
CREATE TEMP TABLE steps(n INTEGER PRIMARY KEY);
WITH RECURSIVE t(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM t WHERE n + 1 < $STEPS) INSERT INTO steps SELECT n FROM t;
BEGIN;
INSERT INTO readings SELECT id, q, $TS0 + n * $STEP_MS,
        CASE k WHEN 0 THEN ((n * 7 + sid * 13) % 10 < 6) WHEN 1 THEN (n * 37 + sid) % 500 WHEN 2 THEN 500
               WHEN 3 THEN 100 + (n * 13 + sid * 7) % 3000 ELSE 1000 + n * 0.25 + sid * 0.001 END,
        $TS0 + n * $STEP_MS + 1500
        FROM steps CROSS JOIN sq;
-- As the daemon leaves them: the newest value per signal, the buckets' carry, their watermark.
DELETE FROM latest;
INSERT INTO latest SELECT sensor_id, quantity, ts_ms, value, received_ms FROM readings WHERE ts_ms = $TS_END;
DELETE FROM agg_carry;
INSERT INTO agg_carry(sensor_id, quantity, ts_ms, value, first_ts_ms)
        SELECT l.sensor_id, l.quantity, l.ts_ms, l.value, (SELECT min(ts_ms) FROM readings) FROM latest AS l;
INSERT OR REPLACE INTO agg_state VALUES('watermark_ms', $((NOW / 60000 * 60000)));
COMMIT;
PRAGMA journal_mode=WAL;
SELECT 'rows', count(*) FROM readings;
SELECT 'latest', count(*) FROM latest;
EOF
t_gen=$(($(now_ms) - t0))
ROWS=$(awk -F'|' '$1=="rows" {print $2}' "$T/gen.out")
LATEST=$(awk -F'|' '$1=="latest" {print $2}' "$T/gen.out")
DB_BYTES=$(stat -c %s "$T/data/citypulse.db")
echo "coldstart.sh: $ROWS readings ($LATEST signals x $STEPS steps) generated in $(secs "$t_gen") s, $((DB_BYTES / 1048576)) MiB" >&2

# --- the runs ------------------------------------------------------------------------------------------
measure() { # conf label -> lines "ready started readyz rss" in $T/<label>.runs
        : >"$T/$2.runs"
        for i in $(seq "$RUNS"); do
                python3 tests/bench/startup_time.py "$HTTP" "$T/$2.log" -- "$CITYPULSED" -c "$1" --log=plain >"$T/run.out" ||
                        die "run $i ($2) did not reach READY: $(tail -n 5 "$T/$2.log")"
                sed 's/[a-z_]*=//g' "$T/run.out" >>"$T/$2.runs"
                echo "coldstart.sh: $2 run $i: $(cat "$T/run.out")" >&2
        done
}
mkdir -p "$T/empty"
measure "$T/empty.conf" empty
measure "$T/c.conf" history

# best and median of column c (1 ready, 2 started, 3 readyz, 4 rss KiB)
stat_col() { sort -n -k"$2","$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {printf "%.0f %.0f", v[1], v[int((NR+1)/2)]}'; }
row() { # label runsfile rows db_bytes
        read -r rb rm < <(stat_col "$2" 1)
        read -r sb sm < <(stat_col "$2" 2)
        read -r zb zm < <(stat_col "$2" 3)
        read -r _ km < <(stat_col "$2" 4)
        printf '%-16s %12s %9s %14s %14s %14s %10s\n' "$1" "$3" "$4" "$rb / $rm" "$sb / $sm" "$zb / $zm" "$((km / 1024))"
}
echo "citypulsed start-up: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $SENSORS sensors" \
        "($(cat "$T/reg/counts")), $RUNS runs each, warm page cache"
echo "history: $DAYS days, one reading per signal every $STEP_MIN min; generated in $(secs "$t_gen") s"
printf '%-16s %12s %9s %14s %14s %14s %10s\n' "data_dir" "rows" "DB MiB" "READY=1 ms" "log started ms" "/readyz ms" "RSS MiB"
printf '%-16s %12s %9s %14s %14s %14s %10s\n' "" "" "" "best / median" "best / median" "best / median" "at READY"
row "empty" "$T/empty.runs" 0 "$(($(stat -c %s "$T/empty/citypulse.db") / 1048576))"
row "$DAYS days" "$T/history.runs" "$ROWS" "$((DB_BYTES / 1048576))"
echo "times from exec; READY=1 is the sd_notify datagram (the definition); goal: READY < 5000 ms"
