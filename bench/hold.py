#!/usr/bin/env python3
"""Open N connections to a server, send one request on each, read the
response head, then hold them all open (idle keep-alive or a live SSE stream)
until HOLD seconds pass. Prints how many are held. Loopback only.

  hold.py URL N HOLD_SECS [BEARER_KEY]
"""
import selectors
import socket
import sys
import time
from urllib.parse import urlparse

url, n, hold = urlparse(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
key = sys.argv[4] if len(sys.argv) > 4 else None
assert url.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
request = f"GET {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\n"
if key:
    request += f"Authorization: Bearer {key}\r\n"
request = (request + "\r\n").encode()

sel = selectors.DefaultSelector()
socks, heads = [], {}
for i in range(n):
    s = socket.socket()
    s.setblocking(True)
    s.connect((url.hostname, url.port))
    s.sendall(request)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
    heads[s] = b""
deadline = time.time() + 60
ok = 0
while ok < n and time.time() < deadline:
    for k, _ in sel.select(timeout=1):
        s = k.fileobj
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        if not data:
            sel.unregister(s)
            continue
        if heads[s] is not None:
            heads[s] += data
            if b"\r\n\r\n" in heads[s]:
                ok += heads[s].startswith(b"HTTP/1.1 200")
                heads[s] = None
print(f"held {ok} of {n}", flush=True)
end = time.time() + hold
while time.time() < end:
    for k, _ in sel.select(timeout=1):
        try:
            k.fileobj.recv(65536)  # keep-alive comments of SSE streams
        except (BlockingIOError, ConnectionError):
            pass
