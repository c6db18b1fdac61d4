#!/usr/bin/env python3
"""fake_sms.py - a fake SMS gateway for the kiosk tests (the edge's "webhook"
SMS provider posts {"to": ..., "text": ...} JSON to it). Standard library only.

  fake_sms.py --port 0 --out FILE [--token TOKEN] [--control FILE] [--free-ports N]

POST any path with a JSON object holding the strings "to" and "text": one JSON
line {"to", "text", "path"} is appended to --out (flushed before the answer)
and the answer is 200 {"ok": true, "id": N}. A body that is not such an object
is 400; with --token, a request without "Authorization: Bearer TOKEN" is 401
(nothing written). Anything but POST is 405.

Failure control: --control names a file read at every request (absent or
empty = "ok"). Its first word:
  ok      accept (above);
  fail    answer 503 {"error": "gateway down"}, nothing written;
  close   close the connection without an answer, nothing written;
  hang    hold the request for 30 s (longer than the edge's timeout_s), then
          close it without an answer.
Write it with a rename (printf fail >x.tmp && mv x.tmp x) or plain echo: a
partial read is just "ok".

Counters (requests, accepted, refused, failed, closed, unauthorized) are
printed as one JSON line on stderr at every request.

Prints "ready port=N" on stdout once listening (so --port 0 needs no separate
free-port step). With --free-ports N the line also carries "free=P1,P2,...":
N more ports that were free at start (bound then closed), for the daemons of
the same test, which saves a Python start (slow on some machines) per port.
"""
import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024


class Gateway:
    def __init__(self, args):
        self.a = args
        self.lock = threading.Lock()
        self.n = 0
        self.stats = {k: 0 for k in ("requests", "accepted", "refused", "failed",
                                     "closed", "unauthorized")}

    def mode(self):
        if not self.a.control:
            return "ok"
        try:
            with open(self.a.control, encoding="utf-8") as f:
                words = f.read().split()
        except OSError:
            return "ok"
        return words[0] if words else "ok"

    def count(self, key):
        with self.lock:
            self.stats[key] += 1
            print(json.dumps(self.stats), file=sys.stderr, flush=True)

    def deliver(self, to, text, path):
        with self.lock:
            self.n += 1
            line = json.dumps({"to": to, "text": text, "path": path}, ensure_ascii=False)
            with open(self.a.out, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
            return self.n


def make_handler(gw):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: counters go to stderr instead
            pass

        def answer(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.count_and_refuse()

        def do_PUT(self):
            self.count_and_refuse()

        def count_and_refuse(self):
            gw.count("requests")
            gw.count("refused")
            self.answer(405, {"error": "POST only"})

        def do_POST(self):
            gw.count("requests")
            mode = gw.mode()
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                gw.count("refused")
                self.answer(400, {"error": "bad Content-Length"})
                return
            raw = self.rfile.read(length)
            if mode == "close" or mode == "hang":
                if mode == "hang":
                    time.sleep(30)
                gw.count("closed")
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if mode == "fail":
                gw.count("failed")
                self.answer(503, {"error": "gateway down"})
                return
            if gw.a.token is not None and \
                    self.headers.get("Authorization", "") != "Bearer " + gw.a.token:
                gw.count("unauthorized")
                self.answer(401, {"error": "bad or missing bearer token"})
                return
            if not self.headers.get("Content-Type", "").startswith("application/json"):
                gw.count("refused")
                self.answer(415, {"error": "Content-Type must be application/json"})
                return
            try:
                msg = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                msg = None
            if not isinstance(msg, dict) or not isinstance(msg.get("to"), str) \
                    or not isinstance(msg.get("text"), str) or not msg["to"] or not msg["text"]:
                gw.count("refused")
                self.answer(400, {"error": "want a JSON object with strings \"to\" and \"text\""})
                return
            n = gw.deliver(msg["to"], msg["text"], self.path)
            gw.count("accepted")
            self.answer(200, {"ok": True, "id": n})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--out", required=True, help="file the accepted messages are appended to")
    ap.add_argument("--token", help="require Authorization: Bearer TOKEN")
    ap.add_argument("--control", help="mode file: ok | fail | close | hang")
    ap.add_argument("--free-ports", type=int, default=0)
    args = ap.parse_args()

    open(args.out, "a").close()
    gw = Gateway(args)
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((args.bind, args.port), make_handler(gw))
    ready = "ready port=%d" % srv.server_address[1]
    if args.free_ports > 0:
        socks = []
        for _ in range(args.free_ports):
            s = socket.socket()
            s.bind((args.bind, 0))
            socks.append(s)
        ready += " free=" + ",".join(str(s.getsockname()[1]) for s in socks)
        for s in socks:
            s.close()
    print(ready, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
