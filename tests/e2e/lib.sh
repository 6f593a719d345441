# tests/e2e/lib.sh - helpers for end-to-end tests: a real mosquitto on a free loopback port, the real
# citypulsed, real clients. Every process started here is stopped by its PID on exit.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build/san}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
CITYPULSED=$BUILD/citypulsed
SIM=$BUILD/citypulse-sim
T=$(mktemp -d /tmp/cp-e2e-XXXXXX)
PIDS=()
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# librrd, pango and fontconfig keep caches until exit (tests/lsan.supp says which); ours must not leak.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}

cleanup() {
        local p
        for p in "${PIDS[@]}"; do
                kill -TERM "$p" 2>/dev/null
        done
        for p in "${PIDS[@]}"; do
                for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$p" 2>/dev/null
        done
        if [ "${KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

log() { echo "[$(date +%T.%N | cut -c1-12)] $*"; }
fail() {
        echo "FAIL: $*"
        if [ -f "$T/daemon.log" ]; then echo "--- daemon log (tail)"; tail -n 40 "$T/daemon.log"; fi
        exit 1
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # port [seconds]
        local i
        for i in $(seq $((${2:-10} * 20))); do
                (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
                sleep 0.05
        done
        return 1
}

# Polls a shell condition until true or timeout (seconds).
wait_for() { # seconds command...
        local secs=$1; shift
        local i
        for i in $(seq $((secs * 10))); do
                if "$@"; then return 0; fi
                sleep 0.1
        done
        return 1
}

# mosquitto with queues large enough not to drop QoS 1 under load, persistence for restarts.
start_broker() { # port
        BROKER_PORT=$1
        mkdir -p "$T/broker"
        cat >"$T/broker/mosquitto.conf" <<CONF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
# Run as whoever started the test (mosquitto would switch from root to "mosquitto", which cannot
# write to the test directory).
user $(id -un)
max_queued_messages 100000
max_inflight_messages 100
persistence true
persistence_location $T/broker/
autosave_interval 1
log_dest file $T/broker/broker.log
CONF
        mosquitto -c "$T/broker/mosquitto.conf" >>"$T/broker/stdout.log" 2>&1 &
        BROKER_PID=$!
        PIDS+=("$BROKER_PID")
        wait_port "$BROKER_PORT" 10 || fail "broker did not start on port $BROKER_PORT"
}

stop_broker() {
        kill -TERM "$BROKER_PID" 2>/dev/null
        wait "$BROKER_PID" 2>/dev/null
}

# Writes $T/citypulse.conf from the arguments (extra config lines) on top of test defaults.
write_config() {
        HTTP_PORT=${HTTP_PORT:-$(free_port)}
        mkdir -p "$T/data"
        {
                echo "mqtt.host 127.0.0.1"
                echo "mqtt.port $BROKER_PORT"
                echo "mqtt.client_id cp-e2e-$$"
                echo "mqtt.reconnect_max 2s"
                echo "http.listen 127.0.0.1:$HTTP_PORT"
                echo "data_dir $T/data"
                echo "log.level ${LOG_LEVEL:-info}"
                for l in "$@"; do echo "$l"; done
        } >"$T/citypulse.conf"
}

start_daemon() {
        "$CITYPULSED" -c "$T/citypulse.conf" --log=plain >>"$T/daemon.log" 2>&1 &
        DAEMON_PID=$!
        PIDS+=("$DAEMON_PID")
        wait_port "$HTTP_PORT" 20 || fail "daemon did not listen on $HTTP_PORT"
}

# Waits for /readyz to say 200 (broker connected, store writable).
wait_ready() {
        wait_for "${1:-20}" curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/readyz" || fail "daemon not ready"
}

# SIGTERM, then expects exit code 0 (ASan leak reports would make it non-zero).
stop_daemon() {
        kill -TERM "$DAEMON_PID"
        local rc=0
        wait "$DAEMON_PID" || rc=$?
        [ "$rc" = 0 ] || fail "daemon exited with $rc after SIGTERM"
}

http() { curl -s --max-time 5 "http://127.0.0.1:$HTTP_PORT$1"; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${@:2}" "http://127.0.0.1:$HTTP_PORT$1"; }
pub() { mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 "$@"; }
sql() { sqlite3 -batch -noheader "$T/data/citypulse.db" "$1"; }
# jq-like extraction without jq: python3 evaluates an expression on the parsed JSON "d".
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# Starts the simulator publishing N sequenced QoS 1 messages for facility SENSOR (sets SIM_PID);
# message i has entries_total = i and an observation time i seconds after a past start.
seq_stream() { # sensor count
        local start_ms=$(( ($(date +%s) - $2 - 60) * 1000 ))
        "$SIM" --host 127.0.0.1 --port "$BROKER_PORT" --qos 1 --id "cp-e2e-pub-$$" --mode seq --sensor "$1" \
                --count "$2" --rate 1000 --start-ms "$start_ms" --timeout 120 >"$T/sim.out" 2>"$T/sim.err" &
        SIM_PID=$!
        PIDS+=("$SIM_PID")
}

# Waits for the simulator to have every message acknowledged by the broker.
seq_wait_acked() { # count
        wait "$SIM_PID" || fail "simulator did not get every PUBACK: $(tail -n 3 "$T/sim.out" "$T/sim.err")"
        grep -qx "acked $1" "$T/sim.out" || fail "simulator: $(cat "$T/sim.out")"
}

# Waits until SQLite holds N entries_total readings of SENSOR, then checks they are exactly the
# sequence 0..N-1, once each.
seq_check_stored() { # sensor count
        local q="SELECT count(*) FROM readings WHERE sensor_id='$1' AND quantity='entries_total'"
        wait_for 60 bash -c "[ \"\$(sqlite3 $T/data/citypulse.db \"$q\" 2>/dev/null)\" = $2 ]" ||
                fail "stored $(sql "$q") of $2"
        local got want
        got=$(sql "SELECT count(*), count(DISTINCT ts_ms), min(value), max(value), sum(value) FROM readings WHERE sensor_id='$1' AND quantity='entries_total'")
        want="$2|$2|0.0|$(($2 - 1)).0|$(($2 * ($2 - 1) / 2)).0"
        [ "$got" = "$want" ] || fail "readings $got, want $want"
}
