#!/usr/bin/env python3
"""A stand-in for the cloud's sync endpoints (docs/SYNC.md "Up"), for the
cloudsync tests while the real endpoint is being written: register,
heartbeat, POST/GET /api/devices/{id}/sync with the high-water semantics
(skip seq <= high_water, 409 when the first seq is above high_water + 1,
the whole batch or nothing), plus faults on demand: connections closed
before or after applying a batch, TCP resets, 500 and 429 answers.

It checks what the device sends (shape, payload embedded as JSON, increasing
seq, batch bounds) and answers 400 to anything wrong, recording it.
GET /stub/state answers what it saw. Prints "PORT=<n>" once listening."""
import argparse
import base64
import datetime
import json
import random
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--pad", type=int, default=16)
ap.add_argument("--max-entries", type=int, default=1000)
ap.add_argument("--max-bytes", type=int, default=1024 * 1024)
ap.add_argument("--initial-hw", type=int, default=0)
ap.add_argument("--fault-rate", type=float, default=0.0)
ap.add_argument("--apply-then-409", type=int, default=0)
ap.add_argument("--hang", action="store_true")
ap.add_argument("--big-heartbeat", action="store_true", help="answer heartbeats with 2 MiB")
ap.add_argument("--refuse-heartbeat", action="store_true", help="answer heartbeats 400")
ap.add_argument("--seed", type=int, default=None)
ap.add_argument("--register-delay", type=float, default=0.0, help="seconds before answering a registration")
ap.add_argument("--heartbeat-500-after-409", type=int, default=0,
                help="answer this many heartbeats 500 after each 409")
ap.add_argument("--public-key", default=None, help="cloud_public_key to hand out (base64url)")
ap.add_argument("--issuer", default="stub-cloud")
ap.add_argument("--refuse-seq", type=int, default=0,
                help="answer 400 naming this entry (entries[i]) until POST /stub/accept")
ap.add_argument("--commands", default=None, help="file with the heartbeat's commands array (read on each heartbeat)")
ap.add_argument("--mqtt-port", type=int, default=0, help="hand out mqtt_config for a broker on 127.0.0.1:PORT")
ap.add_argument("--mqtt-password", default="", help="the device's broker password in mqtt_config")
ap.add_argument("--mqtt-file", default=None,
                help="file with the mqtt_config of rotation answers (JSON, read on each rotation)")
ap.add_argument("--token-life", type=int, default=30 * 86400, help="device token lifetime in seconds")
args = ap.parse_args()
rnd = random.Random(args.seed)

lock = threading.Lock()
DEVICE = str(uuid.uuid4())
CHAIN = str(uuid.uuid4())
BRANCH = str(uuid.uuid4())
TOPIC = "cartwise/%s/%s/devices/%s" % (CHAIN, BRANCH, DEVICE)
state = {
    "high_water": args.initial_hw, "applied": {}, "registrations": 0, "heartbeats": 0,
    "posts": 0, "gets": 0, "conflicts": 0, "skipped": 0, "errors": [], "faults": {},
    "auth_failures": 0, "max_batch_entries": 0, "max_batch_bytes": 0,
    "apply_then_409_left": args.apply_then_409, "heartbeat_500_left": 0, "heartbeats_500": 0,
    "rotations": 0,
    "refuse_seq": args.refuse_seq, "refused_posts": 0,
}


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def now_iso(delta_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def make_token():
    now = int(time.time())
    return ".".join([b64u(b'{"alg":"EdDSA","typ":"JWT"}'),
                     b64u(json.dumps({"iss": args.issuer, "aud": "cartwise-api", "typ": "device",
                                      "sub": DEVICE, "jti": str(uuid.uuid4()), "iat": now,
                                      "exp": now + args.token_life}).encode()),
                     b64u(b"\0" * 64)])


TOKEN = make_token()


def mqtt_config():
    if not args.mqtt_port:
        return None
    return {"broker": "127.0.0.1", "port": args.mqtt_port, "tls": False, "topic": TOPIC,
            "username": DEVICE, "password": args.mqtt_password}
ENTRY_KEYS = {"seq", "kind", "entity_type", "entity_id", "created_wall_ms", "clock_trusted",
              "payload"}


def fault(kind):
    state["faults"][kind] = state["faults"].get(kind, 0) + 1


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, msg):
        self.answer(code, {"error": {"code": "invalid" if code == 400 else "x", "message": msg}})

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def drop(self, reset):
        if reset:  # RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def authed(self):
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            with lock:
                state["auth_failures"] += 1
            self.error(401, "bad token")
            return False
        return True

    def do_GET(self):
        if args.hang:
            time.sleep(3600)
        if self.path == "/stub/state":
            with lock:
                ap_ = state["applied"]
                out = dict(state)
                out["applied"] = len(ap_)
                out["dupes"] = sum(1 for v in ap_.values() if v > 1)
                out["min"] = min(ap_) if ap_ else 0
                out["max"] = max(ap_) if ap_ else 0
                out["contiguous"] = (not ap_) or (max(ap_) - min(ap_) + 1 == len(ap_))
            return self.answer(200, out)
        if self.path == f"/api/devices/{DEVICE}/sync":
            if not self.authed():
                return
            with lock:
                state["gets"] += 1
                return self.answer(200, {"high_water": state["high_water"]})
        self.error(404, "no route")

    def do_POST(self):
        global TOKEN
        raw = self.body()
        if args.hang:
            time.sleep(3600)
        if self.path == "/stub/reset":  # an operator lowers the mark (sync/reset)
            with lock:
                state["high_water"] = json.loads(raw)["high_water"]
            return self.answer(200, {})
        if self.path == "/stub/accept":  # the operator fixed the cloud's side
            with lock:
                state["refuse_seq"] = 0
            return self.answer(200, {})
        if self.path == "/api/devices/register":
            with lock:
                state["registrations"] += 1
            time.sleep(args.register_delay)
            return self.answer(201, {
                "device_id": DEVICE, "branch_id": BRANCH, "chain_id": CHAIN,
                "device_token": TOKEN, "token_expires_at": now_iso(args.token_life),
                "cloud_public_key": args.public_key or b64u(bytes(32)), "mqtt_config": mqtt_config()})
        if self.path == f"/api/devices/{DEVICE}/token":
            if not self.authed():
                return
            with lock:
                state["rotations"] += 1
                TOKEN = make_token()
                tok = TOKEN
            ans = {"device_token": tok, "token_expires_at": now_iso(args.token_life)}
            if args.mqtt_file:
                with open(args.mqtt_file) as fh:
                    ans["mqtt_config"] = json.load(fh)
            return self.answer(200, ans)
        if self.path == f"/api/devices/{DEVICE}/heartbeat":
            if not self.authed():
                return
            with lock:
                state["heartbeats"] += 1
                state["firmware"] = json.loads(raw or b"{}").get("firmware_version")
                if state["heartbeat_500_left"] > 0:
                    state["heartbeat_500_left"] -= 1
                    state["heartbeats_500"] += 1
                    return self.error(500, "injected")
            if args.refuse_heartbeat:
                return self.error(400, "health: at most 2048 bytes of JSON")
            if args.big_heartbeat:
                return self.answer(200, {"status": "ok", "server_time": now_iso(),
                                         "commands": [], "junk": "x" * (2 * 1024 * 1024)})
            cmds = []
            if args.commands:
                try:
                    with open(args.commands) as fh:
                        cmds = json.load(fh)
                except (OSError, ValueError):
                    cmds = []
            return self.answer(200, {"status": "ok", "server_time": now_iso(), "commands": cmds})
        if self.path == f"/api/devices/{DEVICE}/sync":
            if not self.authed():
                return
            return self.sync(raw)
        self.error(404, "no route")

    def sync(self, raw):
        with lock:
            state["posts"] += 1
            state["max_batch_bytes"] = max(state["max_batch_bytes"], len(raw))
        f = None
        if rnd.random() < args.fault_rate:
            f = rnd.choice(["drop_before", "drop_after", "reset_before", "reset_after",
                            "http500", "http429"])
        if f in ("drop_before", "reset_before"):
            with lock:
                fault(f)
            return self.drop(f.startswith("reset"))
        if f in ("http500", "http429"):
            with lock:
                fault(f)
            return self.error(int(f[4:]), "injected")
        try:
            doc = json.loads(raw)
            assert isinstance(doc, dict) and set(doc) == {"entries"}, "body keys"
            ents = doc["entries"]
            assert isinstance(ents, list) and 1 <= len(ents) <= args.max_entries, "entry count"
            assert len(raw) <= args.max_bytes, "batch bytes %d" % len(raw)
            prev = None
            for i, e in enumerate(ents):
                assert isinstance(e, dict) and set(e) == ENTRY_KEYS, "entries[%d] keys" % i
                s = e["seq"]
                assert isinstance(s, int) and s > 0, "entries[%d].seq" % i
                assert prev is None or s == prev + 1, "entries[%d].seq not contiguous" % i
                prev = s
                p = e["payload"]
                assert isinstance(p, dict), "entries[%d].payload is not an object" % i
                assert p.get("n") == s, "entries[%d].payload.n" % i
                assert p.get("pad") == "a" * (args.pad + s % 97), "entries[%d].payload.pad" % i
                assert e["entity_id"] == "entity-%d" % s, "entries[%d].entity_id" % i
                assert e["clock_trusted"] is True and isinstance(e["created_wall_ms"], int)
        except (ValueError, AssertionError, KeyError, TypeError) as ex:
            with lock:
                state["errors"].append(str(ex) or "malformed")
            return self.error(400, str(ex) or "malformed")
        with lock:
            state["max_batch_entries"] = max(state["max_batch_entries"], len(ents))
            hw = state["high_water"]
            if ents[0]["seq"] > hw + 1:
                state["conflicts"] += 1
                state["heartbeat_500_left"] = args.heartbeat_500_after_409
                return self.error(409, "expected seq %d" % (hw + 1))
            for i, e in enumerate(ents):  # an entry the cloud refuses: nothing written
                if e["seq"] == state["refuse_seq"] and e["seq"] > hw:
                    state["refused_posts"] += 1
                    return self.error(400, "entries[%d].payload: refused by the stub" % i)
            skipped = 0
            for e in ents:  # one "transaction": under the lock, all or nothing
                if e["seq"] <= state["high_water"]:
                    state["skipped"] += 1
                    skipped += 1
                    continue
                state["applied"][e["seq"]] = state["applied"].get(e["seq"], 0) + 1
                state["high_water"] = e["seq"]
            hw = state["high_water"]
            if state["apply_then_409_left"] > 0:
                state["apply_then_409_left"] -= 1
                state["conflicts"] += 1
                return self.error(409, "expected seq %d" % (hw + 1))
        if f in ("drop_after", "reset_after"):  # applied, answer lost
            with lock:
                fault(f)
            return self.drop(f.startswith("reset"))
        self.answer(200, {"high_water": hw, "applied": len(ents) - skipped, "skipped": skipped})


srv = ThreadingHTTPServer(("127.0.0.1", args.port), H)
srv.daemon_threads = True
print("DEVICE=%s" % DEVICE, flush=True)
print("TOPIC=%s" % TOPIC, flush=True)
print("PORT=%d" % srv.server_address[1], flush=True)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
