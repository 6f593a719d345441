#!/usr/bin/env bash
# sd_notify: READY=1 once the HTTP listener answers and the broker connection was attempted,
# WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 at SIGTERM. A python3 datagram socket plays systemd.
. "$(dirname "$0")/lib.sh"

start_broker "$(free_port)"
write_config "route city/+ facility_json"
python3 - "$T/notify.sock" "$T/notify.log" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
with open(sys.argv[2], "a") as f:
    end = time.time() + 20
    while time.time() < end:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        for line in msg.split("\n"):
            f.write("%.3f %s\n" % (time.time(), line)); f.flush()
        if "STOPPING=1" in msg:
            break
PY
PY_PID=$!
PIDS+=("$PY_PID")
wait_for 5 test -S "$T/notify.sock" || fail "no notify socket"
NOTIFY_SOCKET=$T/notify.sock WATCHDOG_USEC=1000000 "$CITYPULSED" -c "$T/citypulse.conf" 2>>"$T/daemon.log" &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
wait_for 10 grep -q 'READY=1' "$T/notify.log" || fail "no READY=1"
# READY means the listener is there.
[ "$(http_code /healthz)" = 200 ] || fail "READY before the HTTP listener"
wait_for 5 grep -q 'WATCHDOG=1' "$T/notify.log" || fail "no WATCHDOG=1 with WATCHDOG_USEC=1s"
kill -HUP "$DAEMON_PID"
wait_for 5 grep -q 'RELOADING=1' "$T/notify.log" || fail "no RELOADING=1"
stop_daemon
wait_for 5 grep -q 'STOPPING=1' "$T/notify.log" || fail "no STOPPING=1"
grep -q 'STATUS=' "$T/notify.log" || fail "no STATUS="
echo OK
