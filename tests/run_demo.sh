#!/usr/bin/env bash
# tests/run_demo.sh - `make run`: a local mosquitto on 127.0.0.1:18830, citypulsed with
# config/demo/citypulse.conf, and the simulated city publishing into it. Ctrl-C stops all three.
set -u
cd "$(dirname "$0")/.."
DEMO=build/demo
BROKER_PORT=18830
mkdir -p "$DEMO/broker" "$DEMO/data"
cat >"$DEMO/broker/mosquitto.conf" <<CONF
# The broker's defaults (max_queued_messages 1000, max_inflight_messages 20) drop QoS 1 messages
# under load; these do not.
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
user $(id -un)
max_queued_messages 100000
max_inflight_messages 100
persistence true
persistence_location $PWD/$DEMO/broker/
log_dest file $PWD/$DEMO/broker/mosquitto.log
CONF

pids=()
stop() {
        trap - INT TERM EXIT
        echo
        echo "stopping..."
        for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
        echo "stopped. Data kept in $DEMO/data (citypulse.db)."
}
trap stop INT TERM EXIT

if (exec 3<>/dev/tcp/127.0.0.1/$BROKER_PORT) 2>/dev/null; then
        echo "port $BROKER_PORT is taken: is another 'make run' running?" >&2
        exit 1
fi
mosquitto -c "$DEMO/broker/mosquitto.conf" &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$BROKER_PORT) 2>/dev/null && break; sleep 0.05; done

build/citypulsed -c config/demo/citypulse.conf &
pids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:8080/healthz && break; sleep 0.1; done

build/citypulse-sim --host 127.0.0.1 --port $BROKER_PORT --mode city --rate 50 &
pids+=($!)

cat <<MSG

  citypulse is running (Ctrl-C stops the broker, the daemon and the simulator):

    Availability (drivers' app feed):  curl http://127.0.0.1:8080/api/v1/parkings
    One facility:                      curl http://127.0.0.1:8080/api/v1/parkings/<parking_id>
    A sensor's latest readings:        curl http://127.0.0.1:8080/api/v1/sensors/<sensor_id>
    Health / readiness / metrics:      curl http://127.0.0.1:8080/readyz  .../metrics
    Raw readings:                      sqlite3 $DEMO/data/citypulse.db 'select * from readings limit 10'
    Broker:                            mosquitto_sub -p $BROKER_PORT -t 'citypulse/#' -v

MSG
wait "${pids[1]}"
