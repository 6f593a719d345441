#!/usr/bin/env python3
"""startup_time.py - times one start of citypulsed, as systemd (Type=notify) sees it.

Usage: startup_time.py HTTP_PORT LOGFILE -- CITYPULSED ARGS...

Binds a unix datagram socket, starts the daemon with NOTIFY_SOCKET pointing at it, and measures from
just before exec to: the arrival of READY=1 (the precise definition of "ready"), the "main: started" log
line (its own timestamp), and the first 200 from /readyz (broker connected, store writable). Reads
VmRSS/VmHWM the moment READY=1 arrives, then stops the daemon with SIGTERM and waits for it.
Prints one line: ready_ms=.. started_ms=.. readyz_ms=.. rss_kib=.. hwm_kib=.. exit=..
"""
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def main():
    sep = sys.argv.index("--")
    port, logfile = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sep + 1:]
    tmp = tempfile.mkdtemp(prefix="cp-notify-")
    path = os.path.join(tmp, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    log = open(logfile, "ab")
    wall0 = time.time()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    ready_ms = rss = hwm = -1
    sock.settimeout(0.5)
    deadline = t0 + 120
    while ready_ms < 0 and time.monotonic() < deadline and proc.poll() is None:
        try:
            msg = sock.recv(4096).decode(errors="replace")
        except socket.timeout:
            continue
        if "READY=1" in msg.split("\n"):
            ready_ms = (time.monotonic() - t0) * 1000
            rss, hwm = status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "VmHWM")
    readyz_ms = -1
    while ready_ms >= 0 and time.monotonic() < deadline and proc.poll() is None:
        if readyz(port):
            readyz_ms = (time.monotonic() - t0) * 1000
            break
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    log.close()
    sock.close()
    os.unlink(path)
    os.rmdir(tmp)
    # "2026-03-01T10:00:00.123Z N main: started ..." (--log=plain); take the last start in the file.
    started_ms = -1
    with open(logfile, errors="replace") as f:
        for line in f:
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z \w main: started", line)
            if m:
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                started_ms = (t.replace(tzinfo=datetime.timezone.utc).timestamp() - wall0) * 1000
    print("ready_ms=%.1f started_ms=%.1f readyz_ms=%.1f rss_kib=%d hwm_kib=%d exit=%d"
          % (ready_ms, started_ms, readyz_ms, rss, hwm, rc))
    return 0 if ready_ms >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
