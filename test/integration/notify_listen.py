#!/usr/bin/python3
"""systemd's side of sd_notify(3) for test/integration/notify.sh.

notify_listen.py SOCKET OUT [URL [FILE]]: binds an AF_UNIX datagram socket
at SOCKET (what NOTIFY_SOCKET names) and appends one line per datagram to
OUT: "<CLOCK_MONOTONIC seconds> <the datagram's lines joined by '|'>".

At a datagram with READY=1 it checks what must be true by then, and appends
"<t> CHECK listen=<yes|no> file=<yes|no> health=<HTTP code or error>". The
sender (its pid from SCM_CREDENTIALS, as systemd learns it) is stopped
(SIGSTOP) at once, so that it cannot catch up after the fact (a READY=1 sent
microseconds before the API listens may still pass; one sent before the
database or the buses are set up cannot): URL's port
accepts a TCP connection (the kernel completes it for a listening socket
even while the process is stopped), FILE exists; then it continues (SIGCONT)
and URL must answer a GET. Runs until killed."""
import os
import signal
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def listening(url):
    u = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((u.hostname, u.port), timeout=1):
            return "yes"
    except OSError:
        return "no"


def health(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return str(r.status)
    except urllib.error.HTTPError as e:
        return str(e.code)
    except OSError as e:
        return "error:" + type(e).__name__


def sender_pid(ancdata):
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return struct.unpack("=iII", data[:12])[0]
    return 0


def check(pid, url, path):
    """pid: already stopped by the caller (0: none)."""
    stopped = pid > 0
    try:
        lis = listening(url) if url else "none"
        present = "yes" if path and os.path.exists(path) else "no"
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
    code = health(url) if url else "none"
    return "CHECK listen=%s file=%s health=%s" % (lis, present, code)


def main():
    sock_path, out_path = sys.argv[1], sys.argv[2]
    url = sys.argv[3] if len(sys.argv) > 3 else ""
    path = sys.argv[4] if len(sys.argv) > 4 else ""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(sock_path)
    with open(out_path, "a", buffering=1) as out:
        while True:
            data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
            pid = 0
            # stop the sender first thing: the less it runs on after
            # READY=1, the less a READY=1 sent too early can hide
            if b"READY=1" in data:
                pid = sender_pid(anc)
                if pid > 0:
                    os.kill(pid, signal.SIGSTOP)
            now = time.monotonic()
            fields = [f for f in data.decode("utf-8", "replace").split("\n") if f]
            if "READY=1" in fields:
                line = check(pid, url, path)
                out.write("%.3f %s\n" % (now, "|".join(fields)))
                out.write("%.3f %s\n" % (time.monotonic(), line))
            else:
                out.write("%.3f %s\n" % (now, "|".join(fields)))


if __name__ == "__main__":
    main()
