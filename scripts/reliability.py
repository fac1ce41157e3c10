#!/usr/bin/env python3
"""Reliability harness: hostile clients, overload, a soak, and the two ways a daemon stops.
Prints figures (not a timed test); README "Reliability figures" holds a run's output.

    scripts/reliability.py --binary target/release/hailo-clip [--soak-seconds 600]

The daemon runs on 127.0.0.1 with the shipped config, the bundled test model and an
open-file limit of 1024 (as `ulimit -n 1024`, systemd's default soft limit). Probes:
  slowloris + flood   2,000 connections (half idle, half with half a request line):
                      /health latency meanwhile, and how many are closed within the header timeout
  stalled bodies      200 requests promising 1 MB and sending 10 bytes: answers and closes
  overload            10x the queue (320 closed-loop clients): status counts, slowest answer
  soak                steady classify load; RSS sampled every 5 s, growth after warm-up
  SIGTERM mid-load    every request in flight at the signal gets an answer
  SIGKILL + restart   a supervisor restarts the killed daemon: time until /health is 200
Python 3 standard library only.
"""
import argparse
import base64
import collections
import http.client
import json
import os
import pathlib
import resource
import signal
import socket
import subprocess
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, port):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    env = {k: v for k, v in os.environ.items() if k not in ("HAILO_CLIP_MODEL_DIR", "RUST_LOG", "NOTIFY_SOCKET")}
    env["HAILO_CLIP_CONFIG"] = str(ROOT / "config/hailo-clip.yaml")
    return subprocess.Popen(
        [binary, "--model-dir", str(ROOT / "assets/models/clip-tiny-random"), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=limit, env=env)


def get(port, path, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    return r.status


def wait_ready(port, timeout=120.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if get(port, "/health", 1.0) == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit("the daemon never became ready")


BODY = json.dumps({
    "image": base64.b64encode((ROOT / "assets/selftest/cat.jpg").read_bytes()).decode(),
    "prompts": ["cat", "dog", "rocket"],
})


def classify(port, timeout=60.0):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", "/v1/classify", BODY, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    except OSError as e:
        return e.__class__.__name__


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def closed(sock):
    try:
        sock.setblocking(False)
        return sock.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def probe_flood(port):
    socks = []
    for i in range(2000):
        s = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: lo")
        socks.append(s)
    latencies = []
    for _ in range(5):
        t = time.monotonic()
        status = get(port, "/health", 5.0)
        latencies.append((time.monotonic() - t) * 1000)
        assert status == 200, status
    time.sleep(10.5)  # the shipped server.header_timeout_ms is 10 s
    still_open = sum(not closed(s) for s in socks)
    for s in socks:
        s.close()
    print(f"slowloris + flood: 2000 connections (1000 idle, 1000 half a request line) under ulimit -n 1024:"
          f" /health 200 in {min(latencies):.1f}-{max(latencies):.1f} ms meanwhile;"
          f" {still_open} still open 10.5 s later (header timeout 10 s)")


def probe_stalled_bodies(port):
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/embed/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000\r\n\r\n{\"text\": ")
        socks.append(s)
    t0 = time.monotonic()
    answers = collections.Counter()
    for s in socks:
        s.settimeout(max(0.1, 15 - (time.monotonic() - t0)))
        try:
            data = s.recv(200)
            answers[data.split(b" ")[1].decode() if data else "closed"] += 1
        except OSError:
            answers["no answer"] += 1
        s.close()
    print(f"stalled bodies: 200 requests promising 1 MB, sending 10 bytes: {dict(answers)} within "
          f"{time.monotonic() - t0:.1f} s (body timeout 10 s)")


def load(port, clients, seconds, collect):
    stop = time.monotonic() + seconds

    def run():
        while time.monotonic() < stop:
            t = time.monotonic()
            status = classify(port)
            collect(status, time.monotonic() - t)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads


def probe_overload(port):
    counts = collections.Counter()
    slowest = [0.0]
    lock = threading.Lock()

    def collect(status, took):
        with lock:
            counts[status] += 1
            slowest[0] = max(slowest[0], took)

    for t in load(port, 320, 20, collect):
        t.join()
    print(f"overload: 320 closed-loop clients (10x the queue of 32) for 20 s: {dict(counts)}, slowest answer {slowest[0]:.2f} s")


def probe_soak(port, pid, seconds):
    counts = collections.Counter()
    lock = threading.Lock()

    def collect(status, _took):
        with lock:
            counts[status] += 1

    threads = load(port, 4, seconds, collect)
    samples = []
    t0 = time.monotonic()
    while any(t.is_alive() for t in threads):
        samples.append((time.monotonic() - t0, rss_mib(pid)))
        time.sleep(5)
    warm = [r for t, r in samples if t >= min(60, seconds / 5)]
    growth = (warm[-1] - warm[0]) if len(warm) > 1 else 0.0
    print(f"soak: {seconds:.0f} s of 4 clients, {sum(counts.values())} requests {dict(counts)};"
          f" RSS {samples[0][1]:.0f} MiB at start, {warm[0]:.0f} MiB after warm-up, {samples[-1][1]:.0f} MiB at the end"
          f" (growth after warm-up {growth:+.1f} MiB)")


def probe_sigterm(binary):
    port = free_port()
    daemon = start(binary, port)
    wait_ready(port)
    counts = collections.Counter()
    lock = threading.Lock()
    started = []

    def one():
        status = classify(port)
        with lock:
            counts[status] += 1

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
        started.append(t)
    time.sleep(0.05)
    daemon.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    code = daemon.wait(60)
    print(f"SIGTERM with 24 requests in flight: answers {dict(counts)}, exit code {code}")


def probe_sigkill(binary):
    port = free_port()
    daemon = start(binary, port)
    wait_ready(port)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    t0 = time.monotonic()
    # What systemd's Restart=on-failure does (RestartSec aside): start it again.
    daemon = start(binary, port)
    took = wait_ready(port)
    print(f"SIGKILL + restart: /health 200 again {took:.2f} s after the restart ({time.monotonic() - t0:.2f} s)")
    daemon.terminate()
    daemon.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--soak-seconds", type=float, default=600)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    daemon = start(args.binary, port)
    print(f"ready in {wait_ready(port):.2f} s; RSS {rss_mib(daemon.pid):.0f} MiB")
    probe_flood(port)
    probe_stalled_bodies(port)
    probe_overload(port)
    probe_soak(port, daemon.pid, args.soak_seconds)
    daemon.terminate()
    daemon.wait()
    probe_sigterm(args.binary)
    probe_sigkill(args.binary)


if __name__ == "__main__":
    main()
