#!/usr/bin/env python3
"""bench_events.py - the measuring half of bench/cloud/bench_events.

Opens N event streams (GET /api/branches/{id}/events, a manager's token) on
one cloud instance, then sends M heartbeats of the branch's device, one at a
time, to an instance (the same or another on the same PostgreSQL). For each
heartbeat it records when the API's answer was read and when each stream had
its `event: change` line; the next heartbeat goes once every stream has its
change (so no two changes are coalesced). Everything runs in one process and
one selector loop: the heartbeat's connection and the streams are read as
their bytes arrive, so a stream that has its change before the answer shows a
negative delay. Prints one line: "count p50 p95 p99 max min late" (ms from
the answer; late = deliveries over 2000 ms or missing after 5 s), and with
--send the same from the heartbeat's send.
"""
import argparse
import selectors
import socket
import sys
import time

HB_BODY = (b'{"status":"online","firmware_version":"1.4.2",'
           b'"health":{"boards":2,"locks":32,"uptime_s":86400}}')


def recv_ready(sock):
    """What a non-blocking socket has: bytes, b"" at its end, None for nothing yet."""
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return None


class Stream:
    """One SSE stream over HTTP/1.1, chunked body decoded by hand: the line
    parser of a test client, not a second server (nothing of ours reads
    chunked bodies in Python)."""

    def __init__(self, port, path, token):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Authorization: Bearer {token}\r\n"
                           "Accept: text/event-stream\r\n\r\n").encode())
        self.sock.setblocking(False)
        self.raw = b""       # bytes not yet decoded (headers, chunk framing)
        self.body = b""      # decoded body not yet split into lines
        self.headers_done = False
        self.chunk_left = 0  # bytes of the current chunk still to come
        self.hello = False
        self.changes = []    # monotonic time of each `event: change` line
        self.closed = False

    def feed(self, now):
        data = recv_ready(self.sock)
        if data is None:
            return
        if not data:
            self.closed = True
            return
        self.raw += data
        if not self.headers_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.raw[:self.raw.find(b"\r\n")]
            if b" 200 " not in status:
                sys.exit(f"bench_events: stream refused: {status.decode(errors='replace')}")
            self.raw = self.raw[end + 4:]
            self.headers_done = True
        while self.raw:
            if self.chunk_left == 0:
                eol = self.raw.find(b"\r\n")
                if eol < 0:
                    break
                size = self.raw[:eol].split(b";")[0].strip()
                if not size:  # the CRLF after a chunk's data
                    self.raw = self.raw[eol + 2:]
                    continue
                self.chunk_left = int(size, 16)
                self.raw = self.raw[eol + 2:]
                if self.chunk_left == 0:
                    self.closed = True
                    return
            take = self.raw[:self.chunk_left]
            self.body += take
            self.raw = self.raw[len(take):]
            self.chunk_left -= len(take)
        *lines, self.body = self.body.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line == b"event: hello":
                self.hello = True
            elif line == b"event: change":
                self.changes.append(now)


class Heartbeat:
    """One keep-alive connection sending the device's heartbeats."""

    def __init__(self, port, device, token):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.req = (f"POST /api/devices/{device}/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(HB_BODY)}\r\n\r\n").encode() + HB_BODY
        self.sock.setblocking(False)
        self.buf = b""
        self.answered = None

    def send(self):
        self.buf = b""
        self.answered = None
        self.sock.setblocking(True)
        self.sock.sendall(self.req)
        self.sock.setblocking(False)

    def feed(self, now):
        data = recv_ready(self.sock)
        if data is None:
            return
        if not data:
            sys.exit("bench_events: the heartbeat connection was closed")
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode(errors="replace")
        length = 0
        for h in head.split("\r\n")[1:]:
            k, _, v = h.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v)
        if len(self.buf) >= end + 4 + length:
            if " 200 " not in head.split("\r\n")[0]:
                sys.exit(f"bench_events: heartbeat answered {head.splitlines()[0]}: {self.buf[end + 4:]!r}")
            self.answered = now


def pct(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    k = max(0, min(len(sorted_ms) - 1, int(round(p / 100.0 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[k]


def summary(ms, late):
    s = sorted(ms)
    return (f"{len(s)} {pct(s, 50):.1f} {pct(s, 95):.1f} {pct(s, 99):.1f} "
            f"{s[-1]:.1f} {s[0]:.1f} {late}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stream-port", type=int, required=True)
    ap.add_argument("--hb-port", type=int, required=True)
    ap.add_argument("--branch", required=True)
    ap.add_argument("--token", required=True, help="manager's staff token")
    ap.add_argument("--device", required=True)
    ap.add_argument("--device-token", required=True)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--gap-ms", type=float, default=20.0, help="pause between heartbeats")
    a = ap.parse_args()

    sel = selectors.DefaultSelector()
    streams = []
    for _ in range(a.streams):
        s = Stream(a.stream_port, f"/api/branches/{a.branch}/events", a.token)
        sel.register(s.sock, selectors.EVENT_READ, s)
        streams.append(s)
    hb = Heartbeat(a.hb_port, a.device, a.device_token)
    sel.register(hb.sock, selectors.EVENT_READ, hb)

    def pump(until, done):
        while not done():
            left = until - time.monotonic()
            if left <= 0:
                return False
            # the answer first: read after 200 ready streams, its time would be late
            for key, _ in sorted(sel.select(left), key=lambda kv: kv[0].data is not hb):
                key.data.feed(time.monotonic())
            if any(s.closed for s in streams):
                sys.exit("bench_events: a stream ended")
        return True

    if not pump(time.monotonic() + 10, lambda: all(s.hello for s in streams)):
        sys.exit(f"bench_events: {sum(s.hello for s in streams)} of {a.streams} streams had their hello after 10 s")
    time.sleep(0.2)  # anything left over from before (the registration) arrives now
    pump(time.monotonic() + 0.1, lambda: False)
    base = [len(s.changes) for s in streams]

    from_answer, from_send, late = [], [], 0
    for i in range(1, a.events + 1):
        sent = time.monotonic()
        hb.send()
        ok = pump(sent + 5, lambda: hb.answered is not None
                  and all(len(s.changes) - b >= i for s, b in zip(streams, base)))
        if hb.answered is None:
            sys.exit("bench_events: no answer to a heartbeat within 5 s")
        for k, (s, b) in enumerate(zip(streams, base)):
            if len(s.changes) - b < i:
                late += 1
                base[k] -= 1  # count it missing, keep the next ones aligned
                continue
            t = s.changes[b + i - 1]
            d = (t - hb.answered) * 1000.0
            from_answer.append(d)
            from_send.append((t - sent) * 1000.0)
            if d > 2000.0:
                late += 1
        if not ok:
            print(f"bench_events: heartbeat {i}: not every stream had its change within 5 s", file=sys.stderr)
        time.sleep(a.gap_ms / 1000.0)
        # a change that comes late for one heartbeat would be counted for the next:
        # drain, then every stream should have exactly i changes past its base
        pump(time.monotonic() + 0.001, lambda: False)
        for k, (s, b) in enumerate(zip(streams, base)):
            extra = len(s.changes) - b - i
            if extra > 0:
                base[k] += extra
    print(summary(from_answer, late))
    print(summary(from_send, late))
    for s in streams:
        s.sock.close()
    hb.sock.close()


if __name__ == "__main__":
    main()
