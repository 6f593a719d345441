#!/usr/bin/env bash
# tests/bench/rss.sh - memory of citypulsed against the size of its registry. For each N: a synthetic city
# of N sensors (tests/bench/fleet.c: N/500 facilities, ~98.8% spot sensors, 1 gate counter per 10
# facilities, N/100 meters and N/500 pv meters in 8 districts), a real mosquitto on a free loopback port,
# citypulsed with that registry; VmRSS once /readyz says 200, then one QoS 1 message per sensor through
# the broker (spots: json_map, counters: facility_json, meters: senml), and VmRSS/VmHWM once SQLite holds
# every reading. Figures are reported, not asserted. Goal: 1,000,000 registered sensors < 1 GiB RSS.
# Usage: tests/bench/rss.sh [N...]      (default 10000 100000 1000000)
#        CITYPULSED=path/to/citypulsed to measure another build; RSS_KEEP=1 keeps the temp directory;
#        RSS_AGE_MS=60000 stamps every reading that long before it is sent (default 0: stamped when sent), so
#        that they reach already closed 1-minute buckets (the late path of daemon/bucket.c).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
CITYPULSED=${CITYPULSED:-$ROOT/build/citypulsed}
FLEET=${FLEET:-$ROOT/build/bench/fleet}
STORE_WAIT=${STORE_WAIT:-300} # seconds to wait for SQLite to hold every reading
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 100000 1000000)
T=$(mktemp -d /tmp/cp-rss-XXXXXX)
PIDS=()
stop() { # pid: SIGTERM, wait up to 30 s, then SIGKILL
        kill -TERM "$1" 2>/dev/null || return 0
        for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
}
cleanup() { for p in "${PIDS[@]}"; do stop "$p"; done; [ -n "${RSS_KEEP:-}" ] && echo "kept $T" || rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 143' TERM INT
die() { echo "rss.sh: $*" >&2; [ -f "$T/daemon.log" ] && tail -n 20 "$T/daemon.log" >&2; exit 1; }

[ -x "$CITYPULSED" ] || die "no $CITYPULSED (make build/citypulsed)"
if [ ! -x "$FLEET" ] || [ tests/bench/fleet.c -nt "$FLEET" ]; then
        mkdir -p "$(dirname "$FLEET")"
        cc -std=gnu11 -O2 -Wall -Wextra -o "$FLEET" tests/bench/fleet.c $(pkg-config --cflags --libs libmosquitto) ||
                die "cannot build $FLEET"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
now_ms() { date +%s%3N; }
kib() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }   # pid field -> kB
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k/1024}'; }
metric() { curl -s -m 5 "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1==m {print $2}'; }
stored() { sqlite3 -batch -noheader "file:$T/data/citypulse.db?mode=ro" 'SELECT count(*) FROM readings' 2>/dev/null; }

ROWS=()
for N in "${SIZES[@]}"; do
        rm -rf "$T/reg" "$T/data" "$T/broker"
        mkdir -p "$T/reg" "$T/data" "$T/broker"
        read -r _ spots _ counters _ meters _ pv _ want < <("$FLEET" registry "$T/reg" "$N") || die "registry"
        PORT=$(free_port)
        HTTP=$(free_port)
        # The broker must hold all N messages for the daemon: they are acknowledged to the publisher faster
        # than the daemon commits them.
        printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser %s\nmax_queued_messages %s\nmax_inflight_messages 100\n' \
                "$PORT" "$(id -un)" "$((N + 10000))" >"$T/broker/m.conf"
        mosquitto -c "$T/broker/m.conf" >"$T/broker/log" 2>&1 &
        BROKER=$!
        PIDS+=("$BROKER")
        wait_port "$PORT" || die "broker did not start"
        cat >"$T/c.conf" <<EOF
mqtt.host 127.0.0.1
mqtt.port $PORT
mqtt.client_id cp-bench-rss-$$
mqtt.qos 1
http.listen 127.0.0.1:$HTTP
data_dir $T/data
registry.facilities $T/reg/facilities.csv
registry.sensors $T/reg/sensors.csv
# Every sensor is registered: unregistered ones are not expected (checked below), so a small cap.
registry.max_unregistered 1000
route bench/spot/+ json_map
route city/parking/+/counter facility_json
route bench/meter/+ senml
driver.json_map.id /id
driver.json_map.time /ts
driver.json_map.map.occupied /occupied
log.level notice
EOF
        t0=$(now_ms)
        "$CITYPULSED" -c "$T/c.conf" --log=plain >"$T/daemon.log" 2>&1 &
        D=$!
        PIDS+=("$D")
        for _ in $(seq 1200); do
                curl -sf -o /dev/null -m 1 "http://127.0.0.1:$HTTP/readyz" && break
                kill -0 "$D" 2>/dev/null || die "citypulsed exited"
                sleep 0.1
        done
        t_ready=$(($(now_ms) - t0))
        sleep 2 # let the first rrd sample and the store thread's start-up work settle
        rss_ready=$(kib "$D" VmRSS)
        hwm_ready=$(kib "$D" VmHWM)
        t1=$(now_ms)
        read -r _ sent _ acked _ pub_ms < <("$FLEET" publish 127.0.0.1 "$PORT" "$N" 1 "${RSS_AGE_MS:-0}") || die "publisher failed"
        [ "$acked" = "$N" ] || die "publisher: $acked of $N acknowledged"
        # Every reading decoded (live state updated) first, then every reading committed to SQLite.
        for _ in $(seq 3000); do
                [ "$(metric citypulse_journal_bytes)" = 0 ] && [ "$(curl -s -m 5 "http://127.0.0.1:$HTTP/metrics" |
                        awk '$1 ~ /^citypulse_readings_total/ {s += $2} END {print s + 0}')" -ge "$want" ] && break
                kill -0 "$D" 2>/dev/null || die "citypulsed exited"
                sleep 0.2
        done
        t_ingested=$(($(now_ms) - t1))
        got=0
        for _ in $(seq "$STORE_WAIT"); do
                got=$(stored)
                [ "${got:-0}" -ge "$want" ] && break
                kill -0 "$D" 2>/dev/null || die "citypulsed exited"
                sleep 1
        done
        t_stored=$(($(now_ms) - t1))
        if [ "${got:-0}" -lt "$want" ]; then
                echo "rss.sh: N=$N: only ${got:-0} of $want readings in SQLite after ${STORE_WAIT}s: the store thread is behind, RSS taken now" >&2
                t_stored=-1
        fi
        sleep 2
        rss_read=$(kib "$D" VmRSS)
        hwm=$(kib "$D" VmHWM)
        unreg=$(metric citypulse_unregistered_sensors)
        [ "${unreg:-0}" = 0 ] || echo "rss.sh: warning: $unreg unregistered sensors at N=$N" >&2
        broker_rss=$(kib "$BROKER" VmHWM)
        stop "$D"
        stop "$BROKER"
        ROWS+=("$(printf '%9s %7s %11s %11s %11s %9s %13s %8s %7s %9s %9s %10s' "$N" "$((N / 500))" \
                "$(mib "$rss_ready")" "$(mib "$rss_read")" "$(mib "$hwm")" \
                "$(awk -v r="$rss_read" -v n="$N" 'BEGIN {printf "%.0f", r*1024/n}')" \
                "$(awk -v r="$rss_ready" -v n="$N" 'BEGIN {printf "%.0f", r*1024/n}')" \
                "$(awk -v t="$t_ready" 'BEGIN {printf "%.1f", t/1000}')" \
                "$(awk -v t="$pub_ms" 'BEGIN {printf "%.1f", t/1000}')" \
                "$(awk -v t="$t_ingested" 'BEGIN {printf "%.1f", t/1000}')" \
                "$(awk -v t="$t_stored" 'BEGIN {if (t < 0) print "(behind)"; else printf "%.1f", t/1000}')" "$(mib "$broker_rss")")")
        echo "rss.sh: N=$N done: $want readings stored (${spots} spots, ${counters} counters, $((meters + pv)) meters); HWM at ready $(mib "$hwm_ready") MiB" >&2
done

echo "citypulsed memory vs registry size: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "one QoS 1 message per sensor through mosquitto; RSS in MiB (VmRSS, VmHWM of /proc/PID/status)"
printf '%9s %7s %11s %11s %11s %9s %13s %8s %7s %9s %9s %10s\n' sensors parks "RSS ready" "RSS 1/sens" "peak HWM" \
        "B/sensor" "B/sens ready" "ready s" "pub s" "ingest s" "stored s" "broker HWM"
for r in "${ROWS[@]}"; do echo "$r"; done
echo "RSS 1/sens: after one reading per sensor is in SQLite; B/sensor = that / sensors; times from exec (ready) or"
echo "from the first publish (pub: all acknowledged by the broker, ingest: all decoded, stored: all in SQLite)."
echo "goal: 1,000,000 registered sensors < 1024 MiB RSS"
