#!/usr/bin/env bash
# TLS to a real mosquitto TLS listener with certificates generated here (openssl), username and
# password from a file; a wrong CA is refused (and retried, never accepted); a wrong password is
# refused by the broker; the password never appears in the log or /metrics.
. "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || fail "openssl missing (make deps installs it)"
mkdir -p "$T/pki"
cd "$T/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=citypulse test CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other CA" -keyout other.key -out other.crt 2>/dev/null
chmod 644 ./*.key
cd - >/dev/null

BROKER_PORT=$(free_port)
mkdir -p "$T/broker"
echo 'S3cret-Broker-Pass' >"$T/mqtt.password"
mosquitto_passwd -c -b "$T/broker/passwd" citypulse "$(cat "$T/mqtt.password")"
mosquitto_passwd -b "$T/broker/passwd" tester testpass
cat >"$T/broker/mosquitto.conf" <<CONF
listener $BROKER_PORT 127.0.0.1
user $(id -un)
cafile $T/pki/ca.crt
certfile $T/pki/server.crt
keyfile $T/pki/server.key
allow_anonymous false
password_file $T/broker/passwd
max_queued_messages 100000
CONF
mosquitto -c "$T/broker/mosquitto.conf" >"$T/broker/log" 2>&1 &
PIDS+=($!)
wait_port "$BROKER_PORT" || fail "TLS broker did not start: $(cat "$T/broker/log")"
tpub() { mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$T/pki/ca.crt" -u tester -P testpass -q 1 "$@"; }

# The right CA and credentials: connected, ingesting.
write_config "route city/+ facility_json" "mqtt.tls.cafile $T/pki/ca.crt" "mqtt.username citypulse" \
        "mqtt.password_file $T/mqtt.password"
start_daemon
wait_ready 20
tpub -t city/tls -m '{"facility":"tls-gate","total":10,"free":4}'
wait_for 10 bash -c "curl -s http://127.0.0.1:$HTTP_PORT/api/v1/sensors/tls-gate | grep -q free_spaces" || fail "no ingest over TLS"
http /metrics | grep -q 'S3cret' && fail "password in /metrics"
stop_daemon

# A wrong CA: the handshake fails, the daemon keeps retrying and never becomes ready.
: >"$T/daemon.log"
write_config "route city/+ facility_json" "mqtt.tls.cafile $T/pki/other.crt" "mqtt.username citypulse" \
        "mqtt.password_file $T/mqtt.password"
start_daemon
sleep 3
[ "$(http_code /readyz)" = 503 ] || fail "ready with a wrong CA"
grep -q 'mqtt: cannot reach the broker, retrying' "$T/daemon.log" || fail "no warning for the TLS failure"
stop_daemon

# A wrong password: refused by the broker, said so, not ready.
: >"$T/daemon.log"
echo 'wrong-pass' >"$T/bad.password"
write_config "route city/+ facility_json" "mqtt.tls.cafile $T/pki/ca.crt" "mqtt.username citypulse" \
        "mqtt.password_file $T/bad.password"
start_daemon
wait_for 10 grep -q 'mqtt: broker refused the connection' "$T/daemon.log" || fail "no refusal line: $(cat "$T/daemon.log")"
[ "$(http_code /readyz)" = 503 ] || fail "ready with a wrong password"
stop_daemon
grep -q 'S3cret\|wrong-pass' "$T/daemon.log" && fail "a password appears in the log"
# A CA file that does not exist is a start-up error naming it.
write_config "route city/+ facility_json" "mqtt.tls.cafile $T/pki/missing.crt"
rc=0; "$CITYPULSED" -c "$T/citypulse.conf" 2>"$T/start.err" || rc=$?
[ "$rc" = 1 ] && grep -q "mqtt.tls.cafile $T/pki/missing.crt" "$T/start.err" || fail "missing CA: rc=$rc $(cat "$T/start.err")"
grep -q "Sanitizer" "$T/start.err" && fail "a failed start leaks or misbehaves: $(cat "$T/start.err")"
echo OK
