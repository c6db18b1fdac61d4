#!/usr/bin/env python3
"""faultproxy.py - a TCP proxy that misbehaves at random, for the sync tests.

Sits between cartwise-edge and cartwise-cloud (the edge's cloud.url names the
proxy). Python standard library only.

Modes, read from the control file (--control, polled every 50 ms; write it
with a rename so it is never read half-written):
  pass    forward everything;
  faults  at random, for each request (the first bytes from the client on
          a connection or after an answer began):
          - drop:           close the connection (FIN), the request not
                            passed on;
          - reset_request:  forward a random part of its first chunk, then
                            reset both sides (SO_LINGER 0 -> RST);
          - reset_response: forward it, and a random part of the first chunk
                            of the answer (the server has done the work),
                            then reset both sides;
          - delay:          hold it for up to --max-delay-ms;
          - otherwise pass it on;
  hold    forward nothing until the mode changes (connections stay open: the
          client waits instead of counting a failure);
  slow    forward everything, each request held --slow-ms first (a backlog
          drains slowly enough for a test to act in the middle of it).

Randomness: every connection draws from its own generator, seeded with
(--seed, connection number), so a seed replays the same decisions per
connection and request. The seed is printed on the "ready" line.

Counters (connections, requests, drop, reset_request, reset_response,
delay, upstream_refused) are written as JSON to --stats after every change (temporary
file and rename). Prints "ready port=N seed=S" on stdout once listening.
"""
import argparse
import asyncio
import json
import os
import random
import signal
import socket
import struct
import sys

CHUNK = 65536


class Proxy:
    def __init__(self, args):
        self.a = args
        self.mode = args.mode
        self.conn_no = 0
        self.stats = {k: 0 for k in ("connections", "requests", "drop", "reset_request",
                                     "reset_response", "delay", "upstream_refused")}
        self.mode_changed = asyncio.Event()

    def count(self, key):
        self.stats[key] += 1
        self.write_stats()

    def write_stats(self):
        if not self.a.stats:
            return
        tmp = self.a.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(self.stats, mode=self.mode, seed=self.a.seed), f)
        os.replace(tmp, self.a.stats)

    async def watch_control(self):
        while True:
            try:
                with open(self.a.control) as f:
                    mode = f.read().strip()
            except FileNotFoundError:
                mode = self.mode
            if mode in ("pass", "faults", "hold", "slow") and mode != self.mode:
                self.mode = mode
                print(f"mode {mode}", file=sys.stderr, flush=True)
                self.mode_changed.set()
                self.mode_changed = asyncio.Event()
                self.write_stats()
            await asyncio.sleep(0.05)

    async def wait_not_held(self):
        while self.mode == "hold":
            await self.mode_changed.wait()

    @staticmethod
    def reset(*writers):
        for w in writers:
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            try:
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            w.transport.abort()

    async def cut(self, writer, data, frac, key, conn, *others):
        """Forwards the first frac of data, then resets every side."""
        n = int(frac * len(data))
        if n:
            writer.write(data[:n])
            await writer.drain()
        self.count(key)
        conn["done"] = True
        self.reset(writer, *others)

    async def pump_up(self, reader, writer, cwriter, rng, conn):
        """Client -> server. The first chunk of each request draws its fate."""
        p_rq, p_rs = self.a.p_reset_request, self.a.p_reset_response
        while True:
            data = await reader.read(CHUNK)
            if not data or conn["done"]:
                return not data
            await self.wait_not_held()
            if conn["new_request"]:
                conn["new_request"] = False
                self.count("requests")
                r, frac = rng.random(), rng.random()
                if self.mode == "slow":
                    await asyncio.sleep(self.a.slow_ms / 1000.0)
                if self.mode == "faults":
                    if r < self.a.p_drop:
                        # closed (FIN) without a word, the request never sent on
                        self.count("drop")
                        conn["done"] = True
                        cwriter.close()
                        writer.close()
                        return False
                    r -= self.a.p_drop
                    if r < p_rq:
                        await self.cut(writer, data, frac, "reset_request", conn, cwriter)
                        return False
                    if r < p_rq + p_rs:
                        conn["cut_response"] = frac
                    elif r < p_rq + p_rs + self.a.p_delay:
                        self.count("delay")
                        await asyncio.sleep(frac * self.a.max_delay_ms / 1000.0)
            if conn["done"]:
                return False
            writer.write(data)
            await writer.drain()

    async def pump_down(self, reader, writer, swriter, conn):
        """Server -> client: cuts the answer to a request whose fate says so."""
        while True:
            data = await reader.read(CHUNK)
            if not data or conn["done"]:
                return not data
            await self.wait_not_held()
            conn["new_request"] = True
            frac, conn["cut_response"] = conn["cut_response"], None
            if frac is not None and self.mode == "faults":
                # the server has done the work; the client never hears the whole answer
                await self.cut(writer, data, frac, "reset_response", conn, swriter)
                return False
            writer.write(data)
            await writer.drain()

    async def handle(self, creader, cwriter):
        self.conn_no += 1
        n = self.conn_no
        self.count("connections")
        rng = random.Random(f"{self.a.seed}:{n}")
        await self.wait_not_held()
        try:
            sreader, swriter = await asyncio.open_connection(self.a.upstream_host,
                                                             self.a.upstream_port)
        except OSError:
            self.count("upstream_refused")
            self.reset(cwriter)
            return
        conn = {"done": False, "new_request": True, "cut_response": None}
        up = asyncio.ensure_future(self.pump_up(creader, swriter, cwriter, rng, conn))
        down = asyncio.ensure_future(self.pump_down(sreader, cwriter, swriter, conn))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            first = done.pop()
            clean = not first.exception() and first.result()
            if clean and first is up:
                # the client finished sending: pass the half-close on, let the answer finish
                if swriter.can_write_eof():
                    swriter.write_eof()
                await asyncio.wait({down}, timeout=5)
            if not conn["done"]:
                conn["done"] = True
                for w in (cwriter, swriter):
                    w.close()
        except (OSError, asyncio.CancelledError):
            self.reset(cwriter, swriter)
        finally:
            for t in (up, down):
                if not t.done():
                    t.cancel()
            for t in (up, down):
                try:
                    await t
                except BaseException:
                    pass

    async def main(self):
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await asyncio.start_server(self.handle, "127.0.0.1", self.a.port)
        port = server.sockets[0].getsockname()[1]
        watcher = asyncio.ensure_future(self.watch_control())
        self.write_stats()
        print(f"ready port={port} seed={self.a.seed}", flush=True)
        await stop.wait()
        watcher.cancel()
        server.close()
        json.dump(self.stats, sys.stderr)
        print(file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (0: any)")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    p.add_argument("--seed", type=int, default=None, help="default: random, printed")
    p.add_argument("--control", required=True, help="file holding pass|faults|hold|slow")
    p.add_argument("--slow-ms", type=int, default=150, help="hold of each request in mode slow")
    p.add_argument("--mode", default="pass", choices=("pass", "faults", "hold", "slow"),
                   help="mode until the control file says otherwise")
    p.add_argument("--stats", help="JSON counters, rewritten after every change")
    p.add_argument("--p-drop", type=float, default=0.1, help="per request")
    p.add_argument("--p-reset-request", type=float, default=0.1, help="per request")
    p.add_argument("--p-reset-response", type=float, default=0.1, help="per request")
    p.add_argument("--p-delay", type=float, default=0.1, help="per request")
    p.add_argument("--max-delay-ms", type=int, default=300)
    a = p.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    a.upstream_host, _, port = a.upstream.rpartition(":")
    a.upstream_port = int(port)
    asyncio.run(Proxy(a).main())


if __name__ == "__main__":
    main()
