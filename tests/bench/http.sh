#!/usr/bin/env bash
# tests/bench/http.sh - GET /api/v1/parkings (500 facilities) from citypulsed against nginx serving the
# same bytes as a static file, both measured with wrk in one run, both while the simulator floods the
# daemon with ~10k msg/s of facility JSON over the same 500 facilities (so the daemon's document
# changes while it is measured, and nginx competes for the same CPUs as the daemon does).
# Passes: identity, then Accept-Encoding: gzip (nginx gzip on, compressing per request; and nginx
# gzip_static serving a pre-compressed copy; the daemon serves its cached gzip variant).
# The ingest rate achieved during each pass comes from the daemon's /metrics counters.
# Usage: tests/bench/http.sh [seconds per wrk run]   (make bench calls it)
# Env: BENCH_RATE (msg/s, default 10000), BENCH_CONNS (default 64), BENCH_THREADS (wrk, default 2),
# BENCH_ROUNDS (default 3: every pass runs that many times, alternating servers; the best round is shown).
set -u
cd "$(dirname "$0")/../.." || exit 1
SECS=${1:-${BENCH_SECS:-10}}
RATE=${BENCH_RATE:-10000}
CONNS=${BENCH_CONNS:-64}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
NFAC=500
B=${BENCH_BUILD:-build}
for t in wrk nginx mosquitto curl python3; do
        command -v "$t" >/dev/null || { echo "http.sh: $t not found (make bench installs it)" >&2; exit 1; }
done
T=$(mktemp -d /tmp/cp-bench-http-XXXXXX)
chmod 755 "$T" # nginx workers (user www-data) read the static file
PIDS=()
cleanup() {
        local p
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
        if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
metric() { curl -s -m 5 "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1==m {print $2}'; }
now_ms() { date +%s%3N; }

# Registry: 500 gate counters, facility flood-NNNNN fed by the sensor of the same id.
{
        echo 'parking_id;name;total_spaces;lat;lon;city;operator'
        for i in $(seq 0 $((NFAC - 1))); do
                printf 'flood-%05d;Parking %d;500;48.%06d;2.%06d;Issy-les-Moulineaux;Bench\n' "$i" "$i" $((820000 + i * 37)) $((260000 + i * 41))
        done
} >"$T/facilities.csv"
{
        echo 'sensor_id;kind;parking_id;spot_id;district'
        for i in $(seq 0 $((NFAC - 1))); do printf 'flood-%05d;facility;flood-%05d;;\n' "$i" "$i"; done
} >"$T/sensors.csv"

# Broker, as the e2e tests configure it.
MQTT=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser %s\nmax_queued_messages 100000\nmax_inflight_messages 100\n' \
        "$MQTT" "$(id -un)" >"$T/mosquitto.conf"
mosquitto -c "$T/mosquitto.conf" >"$T/mosquitto.log" 2>&1 &
PIDS+=("$!")
wait_port "$MQTT" || { echo "mosquitto did not start" >&2; exit 1; }

HTTP=$(free_port)
cat >"$T/citypulse.conf" <<CONF
mqtt.port $MQTT
mqtt.client_id cp-bench-http-$$
http.listen 127.0.0.1:$HTTP
data_dir $T/data
registry.facilities $T/facilities.csv
registry.sensors $T/sensors.csv
route city/parking/+/counter facility_json
log.level warning
CONF
"$B/citypulsed" -c "$T/citypulse.conf" 2>"$T/daemon.log" &
DAEMON=$!
PIDS+=("$DAEMON")
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$HTTP/readyz" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$HTTP/readyz" || { echo "citypulsed not ready" >&2; tail "$T/daemon.log" >&2; exit 1; }

# Warm up: one second of traffic so every facility has a reading, then the document nginx serves.
"$B/citypulse-sim" --port "$MQTT" --qos 1 --id "cp-bench-warm-$$" --clean --mode flood --rate 5000 \
        --duration 1 --sensors "$NFAC" >/dev/null 2>&1
sleep 1
curl -sf -o "$T/www/parkings.json" --create-dirs "http://127.0.0.1:$HTTP/api/v1/parkings"
gzip -6 -k -c "$T/www/parkings.json" >"$T/www/parkings.json.gz"
chmod -R a+rX "$T/www"
BYTES=$(stat -c %s "$T/www/parkings.json")
GZBYTES=$(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$HTTP/api/v1/parkings" | wc -c)
NGZBYTES=$(stat -c %s "$T/www/parkings.json.gz")
KNOWN=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["data"]["parkings"]; print(sum(1 for x in p if x["free_spaces"] is not None), len(p))' "$T/www/parkings.json")

NGX=$(free_port)
mkdir -p "$T/nginx/logs"
cat >"$T/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $T/nginx/tmp;
    proxy_temp_path $T/nginx/tmp;
    fastcgi_temp_path $T/nginx/tmp;
    uwsgi_temp_path $T/nginx/tmp;
    scgi_temp_path $T/nginx/tmp;
    server {
        listen 127.0.0.1:$NGX;
        root $T/www;
        location = /api/v1/parkings {
            default_type application/json;
            try_files /parkings.json =404;
        }
        location = /gz/api/v1/parkings {
            default_type application/json;
            gzip on;
            gzip_types application/json;
            gzip_vary on;
            try_files /parkings.json =404;
        }
        location = /gzstatic/api/v1/parkings {
            default_type application/json;
            gzip_static on;
            gzip_vary on;
            try_files /parkings.json =404;
        }
    }
}
CONF
nginx -c "$T/nginx/nginx.conf" -p "$T/nginx" 2>"$T/nginx/stderr.log" &
PIDS+=("$!")
wait_port "$NGX" || { echo "nginx did not start" >&2; cat "$T/nginx/stderr.log" >&2; exit 1; }
for p in /api/v1/parkings /gz/api/v1/parkings /gzstatic/api/v1/parkings; do
        c=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H 'Accept-Encoding: gzip' "http://127.0.0.1:$NGX$p")
        [ "${c%% *}" = 200 ] || { echo "nginx $p: $c" >&2; exit 1; }
done

# One measurement: wrk against URL while the simulator floods; prints
# "req/s p50_ms p99_ms bytes_per_resp ingest_msg/s stored_readings/s etag_changes errors".
measure() { # name url [wrk header args...]
        local name=$1 url=$2; shift 2
        "$B/citypulse-sim" --port "$MQTT" --qos 1 --id "cp-bench-pub-$$" --clean --mode flood --rate "$RATE" \
                --duration $((SECS + 3)) --sensors "$NFAC" >/dev/null 2>"$T/sim.err" &
        local sim=$!
        PIDS+=("$sim")
        sleep 1
        local e0 m0 s0 t0 e1 m1 s1 t1
        e0=$(curl -s -D - -o /dev/null "http://127.0.0.1:$HTTP/api/v1/parkings" | awk 'tolower($1)=="etag:" {print $2}')
        m0=$(metric 'citypulse_mqtt_messages_total{driver="facility_json"}'); s0=$(metric citypulse_readings_stored_total); t0=$(now_ms)
        wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" >"$T/wrk-$name-$round.txt" 2>&1
        m1=$(metric 'citypulse_mqtt_messages_total{driver="facility_json"}'); s1=$(metric citypulse_readings_stored_total); t1=$(now_ms)
        e1=$(curl -s -D - -o /dev/null "http://127.0.0.1:$HTTP/api/v1/parkings" | awk 'tolower($1)=="etag:" {print $2}')
        wait "$sim" 2>/dev/null
        python3 - "$T/wrk-$name-$round.txt" "$m0" "$m1" "$s0" "$s1" "$t0" "$t1" "$e0" "$e1" <<'PY'
import re, sys
txt = open(sys.argv[1]).read()
m0, m1, s0, s1, t0, t1 = (float(x or 0) for x in sys.argv[2:8])
def ms(s):
    v, u = re.match(r"([\d.]+)([a-z]+)", s).groups()
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[u]
try:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", txt).group(1))
    reqs = int(re.search(r"(\d+) requests in", txt).group(1))
    rd = re.search(r"requests in [^,]+, ([\d.]+)(\w+) read", txt)
    rbytes = float(rd.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}[rd.group(2)]
    p50 = ms(re.search(r"^\s*50%\s+(\S+)", txt, re.M).group(1))
    p99 = ms(re.search(r"^\s*99%\s+(\S+)", txt, re.M).group(1))
except (AttributeError, ValueError, KeyError):
    sys.stderr.write("unexpected wrk output:\n" + txt)
    print("0 0 0 0 0 0 no wrk-failed")
    sys.exit(0)
err = re.search(r"Socket errors: (.*)", txt)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
errs = (err.group(1).replace(" ", "") if err else "0") + ("/non2xx=" + non2xx.group(1) if non2xx else "")
dt = (t1 - t0) / 1000.0
print("%.0f %.2f %.2f %.0f %.0f %.0f %s %s" % (rps, p50, p99, rbytes / max(reqs, 1), (m1 - m0) / dt, (s1 - s0) / dt,
      "yes" if sys.argv[8] != sys.argv[9] else "no", errs))
PY
}

echo "http benchmark: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "GET /api/v1/parkings, $NFAC facilities ($KNOWN known/total), $BYTES bytes (daemon gzip $GZBYTES, nginx gzip_static $NGZBYTES);"
echo "wrk -t$THREADS -c$CONNS -d${SECS}s --latency; citypulse-sim --mode flood --rate $RATE --sensors $NFAC --qos 1 during every run"
echo "$ROUNDS rounds, nginx and citypulsed alternating; each row is the round with the best req/s (all rounds' req/s in 'rounds')"
declare -A R ALL
run() { # key url [args]: keeps the best req/s of the rounds
        local r
        r=$(measure "$@")
        ALL[$1]="${ALL[$1]:+${ALL[$1]}/}${r%% *}"
        if [ -z "${R[$1]:-}" ] || [ "${r%% *}" -gt "${R[$1]%% *}" ]; then R[$1]=$r; fi
}
for round in $(seq "$ROUNDS"); do
        run nginx "http://127.0.0.1:$NGX/api/v1/parkings"
        run daemon "http://127.0.0.1:$HTTP/api/v1/parkings"
        run nginx_gz "http://127.0.0.1:$NGX/gz/api/v1/parkings" -H 'Accept-Encoding: gzip'
        run nginx_gzs "http://127.0.0.1:$NGX/gzstatic/api/v1/parkings" -H 'Accept-Encoding: gzip'
        run daemon_gz "http://127.0.0.1:$HTTP/api/v1/parkings" -H 'Accept-Encoding: gzip'
        kill -0 "$DAEMON" 2>/dev/null || { echo "citypulsed died" >&2; tail "$T/daemon.log" >&2; exit 1; }
done

ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
printf '\n%-9s %-34s %10s %8s %8s %8s %12s %11s %7s %-16s %s\n' encoding server req/s p50_ms p99_ms bytes ingest_msg/s stored_rd/s changed "ratio (errors)" rounds
row() { # encoding label key baseline_key
        read -r rps p50 p99 by mi st ch er <<<"${R[$3]}"
        read -r brps _ <<<"${R[$4]}"
        printf '%-9s %-34s %10s %8s %8s %8s %12s %11s %7s %-16s %s\n' "$1" "$2" "$rps" "$p50" "$p99" "$by" "$mi" "$st" "$ch" \
                "$(ratio "$rps" "$brps") ($er)" "${ALL[$3]}"
}
row identity "nginx static file" nginx nginx
row identity "citypulsed /api/v1/parkings" daemon nginx
row gzip "nginx gzip on (per request)" nginx_gz nginx_gz
row gzip "nginx gzip_static (precompressed)" nginx_gzs nginx_gz
row gzip "citypulsed cached gzip variant" daemon_gz nginx_gz
echo "ratio: req/s over the nginx row of the same encoding (goal: citypulsed >= 1.00 x nginx);"
echo "ingest_msg/s: MQTT messages the daemon decoded per second during wrk (target $RATE); stored_rd/s: readings"
echo "committed to SQLite per second; changed: the document's ETag differed before and after the run."
