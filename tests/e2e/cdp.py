#!/usr/bin/env python3
"""cdp.py - drives headless Chromium over the DevTools protocol with only the standard library.

Usage: cdp.py CHROMIUM URL SCRIPT_JSON
SCRIPT_JSON is a list of steps:
  {"wait": "<JS expression>", "timeout": seconds}   poll until the expression is truthy
  {"run": "<shell command>"}                        run a command (e.g. publish a reading)
  {"screenshot": "<path.png>"}                      save a PNG of the page
  {"print": "<JS expression>"}                      print the value
Exit 0 when every step succeeded; 1 with the failing step and the page text otherwise."""
import base64, json, os, socket, subprocess, sys, tempfile, time, urllib.request


class CDP:
    def __init__(self, ws_url):
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.split(":")
        self.s = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += self.s.recv(1)
        if b" 101 " not in resp.split(b"\r\n")[0]:
            raise RuntimeError("websocket handshake failed: %r" % resp)
        self.next_id = 0

    def _send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        head = bytes([0x81])
        n = len(data)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("devtools connection closed")
            buf += chunk
        return buf

    def _recv(self):
        msg = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._recv_exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._recv_exact(8), "big")
            msg += self._recv_exact(n)
            if b0 & 0x80:
                return msg.decode()

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            m = json.loads(self._recv())
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m["result"]

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")


def main():
    chromium, url, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    prof = tempfile.mkdtemp(prefix="cp-chrome-")
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", "--remote-debugging-port=0", "--user-data-dir=" + prof,
                             "--window-size=1280,900", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(prof, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%s/json/list" % port, timeout=10))
        page = next(t for t in targets if t.get("type") == "page")
        cdp = CDP(page["webSocketDebuggerUrl"])
        for step in steps:
            if "wait" in step:
                deadline = time.time() + step.get("timeout", 10)
                while not cdp.eval(step["wait"]):
                    if time.time() > deadline:
                        print("FAIL: waited for", step["wait"])
                        print(cdp.eval("document.body ? document.body.innerText : ''"))
                        return 1
                    time.sleep(0.2)
            elif "run" in step:
                subprocess.run(step["run"], shell=True, check=True)
            elif "screenshot" in step:
                png = cdp.call("Page.captureScreenshot", format="png")["data"]
                with open(step["screenshot"], "wb") as f:
                    f.write(base64.b64decode(png))
            elif "print" in step:
                print(cdp.eval(step["print"]))
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["rm", "-rf", prof])


if __name__ == "__main__":
    sys.exit(main())
