#!/usr/bin/env python3
"""Router memory against request body size (the hardening issue's goal: for any accepted request,
peak memory at most a small multiple of its body plus a constant, given back afterwards).

For each router binary and each scenario, a fresh router is started in front of one
herd-fake-ollama, its idle RSS read, the scenario's requests sent, and its peak RSS (VmHWM) and
RSS a moment after read from /proc. Everything listens on 127.0.0.1.

  python3 scripts/body-memory.py [--bin-dir target/release] [--routers herd,herd-lite]
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

MB = 1 << 20
# Where the programs are (set from --bin-dir).
BIN_DIR = "target/release"


def kb(pid, field):
    """VmRSS or VmHWM of `pid`, kB, from /proc as herd-bench reads it (the one /proc reader)."""
    out = subprocess.run([os.path.join(BIN_DIR, "herd-bench"), "--proc", str(pid)], capture_output=True, text=True)
    if out.returncode != 0:
        return 0
    return json.loads(out.stdout)["rss_kb" if field == "VmRSS" else "hwm_kb"]


def spawn(argv, log):
    out = open(log + ".out", "w+")
    proc = subprocess.Popen(argv, stdout=out, stderr=open(log + ".err", "w"), stdin=subprocess.DEVNULL)
    for _ in range(300):
        out.seek(0)
        m = re.search(r"listening on (\S+)", out.read())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit(f"{argv[0]} did not start: " + open(log + ".err").read()[-500:])


def post(url, path, body, timeout=300):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data
    except (ConnectionError, OSError) as e:
        return 0, str(e).encode()
    finally:
        conn.close()


def wait_ready(url):
    host, port = url.removeprefix("http://").split(":")
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            conn.request("GET", "/fleet/status")
            nodes = json.loads(conn.getresponse().read())["nodes"]
            if nodes and nodes[0]["status"] == "online":
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    sys.exit(f"router at {url} never showed its node")


def messages_body(count, each_bytes, native=True):
    text = "a" * max(1, each_bytes)
    msgs = ",".join(['{"role":"user","content":"%s"}' % text] * count)
    head = '{"model":"qwen3:8b","stream":false,' if native else '{"model":"qwen3:8b",'
    return (head + '"messages":[' + msgs + "]}").encode()


def scenarios():
    return [
        ("1M one-letter messages (refused)", "/api/chat", messages_body(1_000_000, 1), 1),
        ("10k messages of 3.2 KB, native", "/api/chat", messages_body(10_000, 3300), 1),
        ("10k messages of 3.2 KB, OpenAI (translated)", "/v1/chat/completions", messages_body(10_000, 3300, False), 1),
        ("one 32 MB message, native", "/api/chat", messages_body(1, 32 * MB), 1),
        ("8 at once: one 24 MB message each", "/api/chat", messages_body(1, 24 * MB), 8),
    ]


def run(router_bin, fake_url, scenario, data):
    name, path, body, concurrent = scenario
    argv = [router_bin, "--host", "127.0.0.1", "--port", "0", "--node", fake_url, "--node-parallel", "8",
            "--no-mdns", "--max-body-mb", "64"]
    if os.path.basename(router_bin) == "herd":
        argv += ["--seed", "1", "--data-dir", os.path.join(data, "herd-data")]
    proc, url = spawn(argv, os.path.join(data, os.path.basename(router_bin)))
    try:
        wait_ready(url)
        time.sleep(0.5)
        idle = kb(proc.pid, "VmRSS")
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(post(url, path, body)[0])) for _ in range(concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(2)
        peak, after = kb(proc.pid, "VmHWM"), kb(proc.pid, "VmRSS")
    finally:
        proc.kill()
        proc.wait()
    body_mb = len(body) / MB
    grown = (peak - idle) / 1024
    ratio = grown / (body_mb * concurrent)
    status = ",".join(str(s) for s in sorted(set(statuses)))
    print(f"  {name:44s} body {body_mb:5.1f} MB x{concurrent}  status {status:7s} idle {idle / 1024:6.1f} MB  "
          f"peak +{grown:7.1f} MB ({ratio:4.2f}x body)  after {after / 1024:6.1f} MB", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--routers", default="herd,herd-lite")
    args = ap.parse_args()
    global BIN_DIR
    BIN_DIR = args.bin_dir
    with tempfile.TemporaryDirectory() as data:
        fake, fake_url = spawn([os.path.join(args.bin_dir, "herd-fake-ollama"), "--host", "127.0.0.1", "--port", "0",
                                "--timing", "fixed", "--models", "qwen3:8b", "--preload", "qwen3:8b",
                                "--num-parallel", "8", "--context-length", "131072", "--name", "memory"],
                               os.path.join(data, "fake"))
        try:
            for router in args.routers.split(","):
                print(f"{router} ({os.path.join(args.bin_dir, router)}):", flush=True)
                for s in scenarios():
                    run(os.path.join(args.bin_dir, router), fake_url, s, data)
        finally:
            fake.kill()


if __name__ == "__main__":
    main()
