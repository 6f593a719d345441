#!/usr/bin/env python3
"""ods_receiver.py - a stand-in for the Opendatasoft realtime push API, for tests (stdlib only).

    ods_receiver.py --port 0 --log FILE [--port-file FILE] [--control FILE] [--mode MODE]

Binds 127.0.0.1 (port 0 picks a free one; the port is printed on stdout and written to --port-file),
answers every POST according to the current mode, and appends one JSON line per request to --log:
    {"t": <unix s>, "method", "path", "query" (raw), "params" (decoded), "mode", "status" (sent, or
     null when none was), "len", "valid", "why", "records" (the body when it is a JSON array)}

A body is valid when it is a JSON array of objects shorter than 1 MB (1,000,000 bytes); in mode ok an
invalid body is answered 400.

Modes, switched at run time by writing the mode to the --control file (read on every request) or with
GET /__mode?set=MODE:
    ok       200 {"status": "OK"}
    ok_lower 200 {"status":"ok"} with extra whitespace (the older documented answer)
    500      500 {"error": "internal"}
    badbody  200 {"status": "ERROR", "message": "..."}
    hang     reads the request and never answers (the client times out)
    close    reads the request and closes the connection without answering
"""
import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1000000
MODES = ("ok", "ok_lower", "500", "badbody", "hang", "close")


class State:
    def __init__(self, args):
        self.log_path = args.log
        self.control = args.control
        self.mode = args.mode
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def current_mode(self):
        if self.control:
            try:
                with open(self.control) as f:
                    m = f.read().strip()
                if m in MODES:
                    return m
            except OSError:
                pass
        return self.mode

    def log(self, entry):
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self.lock:
            with open(self.log_path, "a") as f:
                f.write(line)
                f.flush()


def check_body(raw):
    if len(raw) >= MAX_BODY:
        return False, "body of %d bytes, not below 1 MB" % len(raw), None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return False, "not JSON: %s" % e, None
    if not isinstance(doc, list):
        return False, "not a JSON array", None
    if not all(isinstance(r, dict) for r in doc):
        return False, "an element is not an object", doc
    return True, "", doc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ods-receiver/1"

    def log_message(self, fmt, *args):  # keep the test output quiet
        pass

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/__mode":
            m = urllib.parse.parse_qs(url.query).get("set", [""])[0]
            if m not in MODES:
                self.answer(400, '{"error":"unknown mode"}')
                return
            st.mode = m
            if st.control:
                tmp = st.control + ".tmp"
                with open(tmp, "w") as f:
                    f.write(m)
                os.replace(tmp, st.control)
            self.answer(200, '{"mode":"%s"}' % m)
            return
        self.answer(404, '{"error":"not found"}')

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        valid, why, doc = check_body(raw)
        mode = st.current_mode()
        entry = {
            "t": time.time(),
            "method": "POST",
            "path": url.path,
            "query": url.query,
            "params": {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()},
            "content_type": self.headers.get("Content-Type"),
            "mode": mode,
            "status": None,
            "len": len(raw),
            "valid": valid,
            "why": why,
            "records": doc if isinstance(doc, list) else None,
        }
        if mode == "hang":
            st.log(entry)
            # Never answer; give up only when the client went away or the server stops.
            while not st.stop.wait(0.05):
                try:
                    if self.connection.recv(1, 0x40) == b"":  # MSG_DONTWAIT: b"" means closed
                        break
                except BlockingIOError:
                    continue
                except OSError:
                    break
            self.close_connection = True
            return
        if mode == "close":
            st.log(entry)
            self.close_connection = True
            return
        if mode in ("ok", "ok_lower") and not valid:
            status, body = 400, json.dumps({"error": why})
        elif mode == "ok":
            status, body = 200, '{"status": "OK"}'
        elif mode == "ok_lower":
            status, body = 200, ' {\n  "status" : "ok" }\n'
        elif mode == "500":
            status, body = 500, '{"error": "internal"}'
        else:
            status, body = 200, '{"status": "ERROR", "message": "push disabled"}'
        entry["status"] = status
        # Logged before the answer leaves, so a client that saw the answer finds the line.
        st.log(entry)
        self.answer(status, body)


def main():
    global st
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file")
    ap.add_argument("--control")
    ap.add_argument("--mode", default="ok", choices=MODES)
    args = ap.parse_args()
    st = State(args)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print(port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        st.stop.set()
        srv.server_close()
    return 0


st = None
if __name__ == "__main__":
    sys.exit(main())
