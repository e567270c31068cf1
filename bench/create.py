#!/usr/bin/env python3
"""Create exactly N tasks over keep-alive connections from THREADS threads.
KEY may be @FILE: one key per line, used in turn (many users' creates).
Loopback only.   create.py URL KEY N [THREADS]"""
import http.client
import json
import sys
import threading
from urllib.parse import urlparse

url, key, n = urlparse(sys.argv[1]), sys.argv[2], int(sys.argv[3])
keys = [k.strip() for k in open(key[1:]) if k.strip()] if key.startswith("@") else [key]
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 16
assert url.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
counter = iter(range(n))
lock = threading.Lock()
failed = []


def work():
    conn = http.client.HTTPConnection(url.hostname, url.port)
    while True:
        with lock:
            i = next(counter, None)
        if i is None:
            return
        headers = {"Authorization": f"Bearer {keys[i % len(keys)]}", "Content-Type": "application/json"}
        body = json.dumps({"model": "sim-image", "input": {"prompt": f"in flight {i}", "size": "512x512"}})
        conn.request("POST", "/v1/tasks", body, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 202:
            failed.append(resp.status)


ts = [threading.Thread(target=work) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(f"created {n - len(failed)} of {n}")
sys.exit(1 if failed else 0)
