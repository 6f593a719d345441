#!/usr/bin/env bash
# tests/bench/run.sh - ingest benchmark: citypulsed against the same broker's delivery to a null
# subscriber, QoS 0 and QoS 1, in one run. The same publisher (citypulse-sim --mode flood, ~130-byte
# facility JSON over 1000 ids) feeds both; each rate is messages received / time from the first to
# the last one. The daemon's "stored" rate is readings committed to SQLite over the same clock.
# Usage: tests/bench/run.sh [seconds per run]   (make bench builds and calls it)
set -u
cd "$(dirname "$0")/../.."
SECS=${1:-${BENCH_SECS:-8}}
B=build
T=$(mktemp -d /tmp/cp-bench-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
[ -n "${BENCH_KEEP:-}" ] && trap - EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

start_broker() {
        PORT=$(free_port)
        mkdir -p "$T/b$PORT"
        printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser %s\nmax_queued_messages 1000000\nmax_inflight_messages 100\n' \
                "$PORT" "$(id -un)" >"$T/b$PORT/m.conf"
        mosquitto -c "$T/b$PORT/m.conf" >/dev/null 2>&1 &
        BROKER=$!
        PIDS+=("$BROKER")
        wait_port "$PORT"
}

flood() { # qos
        "$B/citypulse-sim" --port "$PORT" --qos "$1" --id "cp-bench-pub-$$" --clean --mode flood --rate 0 \
                --duration "$SECS" --sensors 1000 2>/dev/null | sed -n 's/^sent //p'
}

metric() { curl -s -m 5 "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1==m {print $2}'; }

baseline() { # qos -> rate
        start_broker
        "$B/bench/nullsub" 127.0.0.1 "$PORT" "$1" 'city/parking/+/counter' 100000000 3 >"$T/null.out" &
        local sub=$!
        sleep 0.5
        local sent
        sent=$(flood "$1")
        wait "$sub"
        kill "$BROKER"; wait "$BROKER" 2>/dev/null
        read -r _ n _ t0 _ t1 <"$T/null.out"
        python3 -c "import sys; n,t0,t1,s=map(float,sys.argv[1:]); print('%d %d %.0f' % (s, n, n/((t1-t0)/1000.0)))" "$n" "$t0" "$t1" "$sent"
}

daemon_run() { # qos -> "sent received rate stored_rate"
        start_broker
        HTTP=$(free_port)
        rm -rf "$T/data"
        printf 'mqtt.port %s\nmqtt.qos %s\nmqtt.client_id cp-bench-%s\nhttp.listen 127.0.0.1:%s\ndata_dir %s/data\nroute city/parking/+/counter facility_json\nlog.level warning\n' \
                "$PORT" "$1" "$$" "$HTTP" "$T" >"$T/c.conf"
        "$B/citypulsed" -c "$T/c.conf" 2>"$T/daemon.log" &
        local d=$!
        PIDS+=("$d")
        for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$HTTP/readyz" && break; sleep 0.1; done
        flood "$1" >"$T/sent" &
        local fl=$!
        # Sample the daemon's own counters: the rate is messages over the time from the first sample that
        # saw any to the last sample that saw the count grow; then wait for the store to drain.
        : >"$T/samples"
        while :; do
                echo "$(now_ms) $(metric 'citypulse_mqtt_messages_total{driver="facility_json"}') $(metric citypulse_readings_stored_total) $(metric citypulse_store_queue_segments)" >>"$T/samples"
                if ! kill -0 "$fl" 2>/dev/null; then
                        read -r _ a _ _ < <(tail -n 12 "$T/samples" | head -n 1)
                        read -r _ b st q < <(tail -n 1 "$T/samples")
                        [ "${a:-x}" = "${b:-y}" ] && [ "${q:-1}" = 0 ] && [ "$(metric citypulse_journal_bytes)" = 0 ] && break
                fi
                sleep 0.1
        done
        kill "$d"; wait "$d" 2>/dev/null
        kill "$BROKER"; wait "$BROKER" 2>/dev/null
        python3 - "$(cat "$T/sent")" "$T/samples" <<'PY'
import sys
sent = int(sys.argv[1])
rows = [l.split() for l in open(sys.argv[2]) if len(l.split()) == 4]
rows = [(int(t), int(n), int(s), int(q)) for t, n, s, q in rows]
first = next(t for t, n, s, q in rows if n > 0)
n_final = rows[-1][1]
last = next(t for t, n, s, q in rows if n == n_final)
stored_final = rows[-1][2]
stored_at = next(t for t, n, s, q in rows if s == stored_final)
prev = rows[[r[0] for r in rows].index(first) - 1][0] if rows[0][0] != first else first
print("%d %d %.0f %.0f" % (sent, n_final, n_final / ((last - prev) / 1000.0), stored_final / ((stored_at - prev) / 1000.0)))
PY
}

echo "ingest benchmark: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), ${SECS}s floods of facility JSON"
printf '%-5s %-28s %10s %10s %12s %14s %7s\n' qos who sent received msg/s readings/s ratio
for qos in ${BENCH_QOS:-0 1}; do
        read -r bs bn brate < <(baseline "$qos")
        read -r ds dn drate dstore < <(daemon_run "$qos")
        printf '%-5s %-28s %10s %10s %12s %14s %7s\n' "$qos" "mosquitto -> null subscriber" "$bs" "$bn" "$brate" "-" "1.00"
        printf '%-5s %-28s %10s %10s %12s %14s %7s\n' "$qos" "mosquitto -> citypulsed" "$ds" "$dn" "$drate" "$dstore" \
                "$(python3 -c "print('%.2f' % ($drate/$brate))")"
done
echo "goal: citypulsed >= 0.9 x the null subscriber's rate at each QoS (ratio column)"
