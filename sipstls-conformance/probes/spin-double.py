#!/usr/bin/env python3
"""A stand-in for echo-server for run-probes.sh --self-test: it takes echo-server's
arguments, listens on 127.0.0.1 on a port the kernel picks, answers nothing, and once a
connection has sent over 60,000 bytes, busy-loops in a thread forever (a spin the runner
must see after the client closes). The runner stops it by its PID."""
import socket
import sys
import threading

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print("echo-server: listening on 127.0.0.1:%d with spin-double" % srv.getsockname()[1],
      file=sys.stderr, flush=True)


def spin():
    while True:
        pass


def serve(conn):
    total = 0
    conn.settimeout(10)
    try:
        while total <= 60000:
            data = conn.recv(65536)
            if not data:
                break
            total += len(data)
        if total > 60000:
            threading.Thread(target=spin, daemon=True).start()
    except OSError:
        pass
    conn.close()


while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
